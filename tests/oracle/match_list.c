/*
 * Test oracle: Postfix's own match lists (libpostfix-util). Reads
 * "name<TAB>address" lines on stdin and prints "name<TAB>address<TAB>N<TAB>D" with N
 * the namadr_list answer (hostname, then address) and D the domain_list answer for the
 * name; each is 1, 0 or E (error).
 * Usage: MAIL_CONFIG=dir match_list parent(0|1) 'patterns'
 *
 * Postfix installs no headers, so the few declarations and flag values used here are
 * spelled out (values from Postfix 3.7's match_list.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct MATCH_LIST {
    char   *pname;
    int     flags;
    void   *patterns;
    int     match_count;
    void   *match_func;
    const char **match_args;
    void   *fold_buf;
    int     error;
} MATCH_LIST;
typedef int (*MATCH_FN) (MATCH_LIST *, const char *, const char *);

extern MATCH_LIST *match_list_init(const char *, int, const char *, int,...);
extern int match_list_match(MATCH_LIST *,...);
extern int match_hostname(MATCH_LIST *, const char *, const char *);
extern int match_hostaddr(MATCH_LIST *, const char *, const char *);
extern void mail_conf_read(void);
extern void mail_params_init(void);
extern int dict_allow_surrogate;

#define FLAG_PARENT	(1 << 0)
#define FLAG_RETURN	(1 << 1)

static char answer(MATCH_LIST *list, int rc)
{
    return list->error ? 'E' : rc ? '1' : '0';
}

int     main(int argc, char **argv)
{
    char    line[4096];
    MATCH_LIST *namadr;
    MATCH_LIST *domain;
    int     flags;

    if (argc != 3)
	return 2;
    mail_conf_read();
    mail_params_init();
    /* As namadr_list_init()/domain_list_init() do. */
    dict_allow_surrogate = 1;
    flags = FLAG_RETURN | (atoi(argv[1]) ? FLAG_PARENT : 0);
    namadr = match_list_init("list", flags, argv[2], 2,
			     (MATCH_FN) match_hostname, (MATCH_FN) match_hostaddr);
    domain = match_list_init("list", flags, argv[2], 1, (MATCH_FN) match_hostname);
    while (fgets(line, sizeof(line), stdin)) {
	char   *addr;
	int     n, d;

	line[strcspn(line, "\n")] = 0;
	if ((addr = strchr(line, '\t')) == 0)
	    continue;
	*addr++ = 0;
	n = match_list_match(namadr, line, addr);
	printf("%s\t%s\t%c\t", line, addr, answer(namadr, n));
	d = match_list_match(domain, line);
	printf("%c\n", answer(domain, d));
	fflush(stdout);
    }
    return 0;
}
