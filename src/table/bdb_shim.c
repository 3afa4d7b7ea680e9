/*
 * Read-only access to Berkeley DB hash/btree files as written by postmap.
 * Kept in C because <db.h> is a C API with function pointers in structs;
 * the Rust side sees four plain functions.
 */
#include <db.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

/* Keep Berkeley DB from writing its own diagnostics to stderr; callers report errors. */
static void quiet(const DB_ENV *env, const char *pfx, const char *msg)
{
    (void) env;
    (void) pfx;
    (void) msg;
}

/* Open PATH read-only; BTREE selects DB_BTREE, else DB_HASH. Returns 0 or an errno/DB code. */
int outpost_bdb_open(const char *path, int btree, void **handle)
{
    DB *db = 0;
    int rc;

    *handle = 0;
    if ((rc = db_create(&db, 0, 0)) != 0)
        return rc;
    db->set_errcall(db, quiet);
    rc = db->open(db, 0, path, 0, btree ? DB_BTREE : DB_HASH, DB_RDONLY, 0644);
    if (rc != 0) {
        db->close(db, 0);
        return rc;
    }
    *handle = db;
    return 0;
}

/* Look up KEY; 0 = found (value copied out by pointer), 1 = not found, else an error code. */
int outpost_bdb_get(void *handle, const void *key, size_t klen,
                    const void **val, size_t *vlen)
{
    DB *db = handle;
    DBT k, v;
    int rc;

    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    k.data = (void *) key;
    k.size = (u_int32_t) klen;
    rc = db->get(db, 0, &k, &v, 0);
    if (rc == DB_NOTFOUND)
        return 1;
    if (rc != 0)
        return rc == 1 ? EIO : rc;
    *val = v.data;
    *vlen = v.size;
    return 0;
}

const char *outpost_bdb_strerror(int code)
{
    return db_strerror(code);
}

void outpost_bdb_close(void *handle)
{
    DB *db = handle;

    if (db)
        db->close(db, 0);
}
