/*
 * Test oracle: asks Postfix's own mail_addr_find_opt() (from Debian's
 * libpostfix-global) for each "strategy<TAB>address" line on stdin and prints
 * "address<TAB>result<TAB>extension", with (none) or (error) when nothing was found.
 * Usage: MAIL_CONFIG=dir mail_addr_find 'type:table ...'
 *
 * Postfix installs no headers, so the few declarations and flag values used here are
 * spelled out (values from Postfix 3.7's dict.h and mail_addr_form.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct MAPS {
    char   *title;
    void   *argv;
    int     error;
} MAPS;

extern MAPS *maps_create(const char *, const char *, int);
extern const char *mail_addr_find_opt(MAPS *, const char *, char **, int, int, int, int);
extern void mail_conf_read(void);
extern void mail_params_init(void);
extern void myfree(void *);

#define FLAG_LOCK		(1 << 6)
#define FLAG_FOLD_FIX		(1 << 14)
#define FLAG_UTF8_REQUEST	(1 << 19)
#define FORM_INTERNAL		1
#define FORM_EXTERNAL		2
#define FORM_EXTERNAL_FIRST	3

int     main(int argc, char **argv)
{
    char    line[4096];
    MAPS   *maps;

    if (argc != 2)
	return 2;
    mail_conf_read();
    mail_params_init();
    maps = maps_create("oracle", argv[1],
		       FLAG_LOCK | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST);
    while (fgets(line, sizeof(line), stdin)) {
	char   *addr;
	char   *ext = 0;
	const char *res;

	line[strcspn(line, "\n")] = 0;
	if ((addr = strchr(line, '\t')) == 0)
	    continue;
	*addr++ = 0;
	/* The legacy forms that mail_addr_find() uses. */
	res = mail_addr_find_opt(maps, addr, &ext, FORM_INTERNAL,
				 FORM_EXTERNAL_FIRST, FORM_EXTERNAL, atoi(line));
	printf("%s\t%s\t%s\n", addr,
	       res ? res : maps->error ? "(error)" : "(none)", ext ? ext : "");
	if (ext)
	    myfree(ext);
    }
    return 0;
}
