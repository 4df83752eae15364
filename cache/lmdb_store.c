/*
 * The LMDB store: one environment per model, rows keyed (table, row) big-endian (so
 * a table's rows are adjacent and in order, and sorted puts append), values the row
 * records, and a "meta" database with the format, the table layout, the initialiser
 * and the step of the last checkpoint.
 *
 * Durability comes from LMDB's own MVCC: every write between two checkpoints goes into
 * one write transaction that stays open, and each block of writes (one prepare, one
 * flush) into a transaction nested inside it. A checkpoint commits the outer one with
 * a durable sync. So a process killed at any moment leaves exactly the last
 * checkpoint on disk, and a block that fails (map full) is aborted alone, leaving the
 * outer transaction and the cache's rows as they were. LMDB ties a write transaction
 * to the thread that began it: every call here comes from the cache's worker thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "cache/cache_internal.h"
#include "engine/internal.h"

#ifdef EMBER_HAVE_LMDB
#include <lmdb.h>

#define STORE_MAGIC "EMBRCACH"
#define STORE_VERSION 1u

struct ember__lmdb {
    MDB_env *env;
    MDB_txn *txn;   /* the outer transaction, open between checkpoints */
    MDB_txn *block; /* nested transaction of the current block, or NULL */
    MDB_dbi rows, meta;
    char *path;
    int broken; /* the outer transaction was lost (failed commit) */
};

/* An LMDB return code as an ember status; message "fn: what at path: LMDB's text". */
static ember_status lmdb_status(int rc, const char *fn, const char *what, const char *path) {
    ember_status st;
    const char *hint = "";
    switch (rc) {
    case MDB_MAP_FULL:
        st = EMBER_ERR_STORE_FULL;
        hint = " (the store reached its map size: give ember_cache_config.map_size more room)";
        break;
    case MDB_TXN_FULL:
        st = EMBER_ERR_STORE_FULL;
        hint = " (too many rows written since the last checkpoint: checkpoint more often)";
        break;
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_VERSION_MISMATCH:
    case MDB_BAD_VALSIZE:
        st = EMBER_ERR_FORMAT;
        hint = " (not an LMDB environment, or a corrupt one)";
        break;
    case ENOENT: st = EMBER_ERR_NOT_FOUND; break;
    case EACCES:
    case EPERM:
    case EIO:
    case ENOSPC:
    case ENOTDIR:
    case EROFS: st = EMBER_ERR_IO; break;
    default: st = EMBER_ERR_LMDB; break;
    }
    return ember__error(st, "%s: %s at %s: %s%s", fn, what, path ? path : "?", mdb_strerror(rc), hint);
}

static void key_of(unsigned char k[12], int table, int64_t id) {
    uint32_t t = (uint32_t)table;
    uint64_t r = (uint64_t)id;
    for (int i = 0; i < 4; i++) k[i] = (unsigned char)(t >> (24 - 8 * i));
    for (int i = 0; i < 8; i++) k[4 + i] = (unsigned char)(r >> (56 - 8 * i));
}

static uint64_t fnv1a(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* The layout blob: version, optimizer, table count, per table the layout fields, then
   an FNV-1a checksum of all that. */
typedef struct layout_head {
    uint32_t version, optim, num_tables, pad;
} layout_head;

static size_t layout_bytes(int nt) {
    return sizeof(layout_head) + (size_t)nt * sizeof(ember__store_table) + sizeof(uint64_t);
}

static void layout_fill(const ember__lmdb_params *p, unsigned char *blob) {
    layout_head h = {STORE_VERSION, (uint32_t)p->optim, (uint32_t)p->num_tables, 0};
    memcpy(blob, &h, sizeof h);
    for (int t = 0; t < p->num_tables; t++) {
        ember__store_table st = p->tables[t];
        memcpy(blob + sizeof h + (size_t)t * sizeof st, &st, sizeof st);
    }
    size_t body = layout_bytes(p->num_tables) - sizeof(uint64_t);
    uint64_t sum = fnv1a(blob, body);
    memcpy(blob + body, &sum, sizeof sum);
}

static ember_status meta_get(ember__lmdb *db, const char *key, MDB_val *v, int *found) {
    MDB_val k = {strlen(key), (void *)key};
    int rc = mdb_get(db->txn, db->meta, &k, v);
    *found = rc == 0;
    if (rc == MDB_NOTFOUND) return EMBER_OK;
    if (rc) return lmdb_status(rc, "ember_cache_create", "reading the store's meta data", db->path);
    return EMBER_OK;
}

static ember_status meta_put(ember__lmdb *db, MDB_txn *txn, const char *key, const void *val,
                             size_t n, const char *fn) {
    MDB_val k = {strlen(key), (void *)key}, v = {n, (void *)val};
    int rc = mdb_put(txn, db->meta, &k, &v, 0);
    if (rc) return lmdb_status(rc, fn, "writing the store's meta data", db->path);
    return EMBER_OK;
}

static const char *format_name(int f) {
    static const char *names[] = {"f32", "f16", "bf16", "int8_rowwise"};
    return f >= 0 && f < 4 ? names[f] : "invalid";
}

/* Compare a stored layout with the expected one; a clear message on the first difference. */
static ember_status layout_check(const ember__lmdb_params *p, const MDB_val *v, const char *path) {
    static const char fn[] = "ember_cache_create";
    const unsigned char *b = v->mv_data;
    layout_head h;
    if (v->mv_size < sizeof h + sizeof(uint64_t))
        return ember__error(EMBER_ERR_FORMAT, "%s: store %s: layout record of %zu B is truncated", fn,
                            path, v->mv_size);
    memcpy(&h, b, sizeof h);
    size_t need = layout_bytes((int)(h.num_tables > 4096 ? 4096 : h.num_tables));
    if (h.num_tables > 4096 || v->mv_size != need)
        return ember__error(EMBER_ERR_FORMAT, "%s: store %s: layout record of %zu B for %u tables is "
                            "corrupt", fn, path, v->mv_size, h.num_tables);
    uint64_t sum;
    memcpy(&sum, b + need - sizeof sum, sizeof sum);
    if (sum != fnv1a(b, need - sizeof sum))
        return ember__error(EMBER_ERR_FORMAT, "%s: store %s: layout record fails its checksum (corrupt "
                            "store)", fn, path);
    if (h.version != STORE_VERSION)
        return ember__error(EMBER_ERR_FORMAT, "%s: store %s has layout version %u; this ember reads %u",
                            fn, path, h.version, STORE_VERSION);
    if ((int)h.num_tables != p->num_tables)
        return ember__error(EMBER_ERR_FORMAT, "%s: store %s holds %u tables; the config has %d", fn, path,
                            h.num_tables, p->num_tables);
    if ((int)h.optim != p->optim)
        return ember__error(EMBER_ERR_FORMAT, "%s: store %s holds optimizer state of %s; the config asks "
                            "for %s", fn, path, ember_sparse_optim_name((ember_sparse_optim)h.optim),
                            ember_sparse_optim_name((ember_sparse_optim)p->optim));
    for (int t = 0; t < p->num_tables; t++) {
        ember__store_table s;
        memcpy(&s, b + sizeof h + (size_t)t * sizeof s, sizeof s);
        const ember__store_table *e = &p->tables[t];
        if (s.rows != e->rows)
            return ember__error(EMBER_ERR_FORMAT, "%s: store %s: table %d has %lld rows; the config "
                                "has %lld", fn, path, t, (long long)s.rows, (long long)e->rows);
        if (s.dim != e->dim)
            return ember__error(EMBER_ERR_FORMAT, "%s: store %s: table %d has dim %d; the config has %d",
                                fn, path, t, s.dim, e->dim);
        if (s.format != e->format)
            return ember__error(EMBER_ERR_FORMAT, "%s: store %s: table %d stores %s rows; the config "
                                "has %s", fn, path, t, format_name(s.format), format_name(e->format));
        if (s.record_bytes != e->record_bytes || s.state_offset != e->state_offset ||
            s.state_floats != e->state_floats)
            return ember__error(EMBER_ERR_FORMAT, "%s: store %s: table %d has %llu-byte records "
                                "(state at %llu, %d floats); the config makes %llu-byte records (state "
                                "at %llu, %d floats)", fn, path, t, (unsigned long long)s.record_bytes,
                                (unsigned long long)s.state_offset, s.state_floats,
                                (unsigned long long)e->record_bytes,
                                (unsigned long long)e->state_offset, e->state_floats);
    }
    return EMBER_OK;
}

static int file_exists(const char *dir, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", dir, name);
    struct stat sb;
    return stat(buf, &sb) == 0;
}

static ember_status begin_outer(ember__lmdb *db, const char *fn) {
    int rc = mdb_txn_begin(db->env, NULL, 0, &db->txn);
    if (rc) {
        db->txn = NULL;
        db->broken = 1;
        return lmdb_status(rc, fn, "beginning the write transaction", db->path);
    }
    return EMBER_OK;
}

ember_status ember__lmdb_open(const ember__lmdb_params *p, ember__lmdb **out, int *created,
                              int64_t *step, ember__store_init *init) {
    static const char fn[] = "ember_cache_create";
    *out = NULL;
    *created = 0;
    *step = -1;
    memset(init, 0, sizeof *init);
    if (!p->path || !*p->path)
        return ember__error(EMBER_ERR_INVALID_ARGUMENT, "%s: the LMDB store needs a path", fn);
    const char *path = p->path;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            return ember__error(EMBER_ERR_IO, "%s: store %s: %s", fn, path, strerror(errno));
        if (p->open == EMBER_CACHE_OPEN_EXISTING)
            return ember__error(EMBER_ERR_NOT_FOUND, "%s: no store at %s (the directory does not exist)",
                                fn, path);
        if (mkdir(path, 0755) != 0)
            return ember__error(errno == ENOENT ? EMBER_ERR_NOT_FOUND : EMBER_ERR_IO,
                                "%s: cannot create the store directory %s: %s", fn, path, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        return ember__error(EMBER_ERR_IO, "%s: store %s is not a directory", fn, path);
    }
    char fbuf[4096];
    int exists = file_exists(path, "data.mdb", fbuf, sizeof fbuf);
    if (exists && p->open == EMBER_CACHE_OPEN_CREATE)
        return ember__error(EMBER_ERR_STATE, "%s: %s already holds a store (open it, or remove it first)",
                            fn, path);
    if (!exists && p->open == EMBER_CACHE_OPEN_EXISTING)
        return ember__error(EMBER_ERR_NOT_FOUND, "%s: no store at %s (no data.mdb)", fn, path);

    ember__lmdb *db = calloc(1, sizeof *db);
    if (!db) return ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: store handle", fn);
    db->path = strdup(path);
    ember_status st = EMBER_OK;
    int rc = mdb_env_create(&db->env);
    if (rc) {
        db->env = NULL;
        st = lmdb_status(rc, fn, "creating the environment", path);
        goto fail;
    }
    mdb_env_set_maxdbs(db->env, 4);
    rc = mdb_env_set_mapsize(db->env, p->map_size);
    if (!rc) rc = mdb_env_open(db->env, path, MDB_NORDAHEAD, 0644);
    if (rc) {
        st = lmdb_status(rc, fn, "opening the environment", path);
        goto fail;
    }
    st = begin_outer(db, fn);
    if (st != EMBER_OK) goto fail;
    db->broken = 0;
    size_t lb = layout_bytes(p->num_tables);
    unsigned char *blob = malloc(lb);
    if (!blob) {
        st = ember__error(EMBER_ERR_OUT_OF_MEMORY, "%s: layout record", fn);
        goto fail;
    }
    layout_fill(p, blob);
    rc = mdb_dbi_open(db->txn, "meta", exists ? 0 : MDB_CREATE, &db->meta);
    if (rc == MDB_NOTFOUND) {
        st = ember__error(EMBER_ERR_FORMAT, "%s: %s is an LMDB environment but not an ember store "
                          "(no meta database)", fn, path);
    } else if (rc) {
        st = lmdb_status(rc, fn, "opening the meta database", path);
    }
    if (st == EMBER_OK) {
        rc = mdb_dbi_open(db->txn, "rows", exists ? 0 : MDB_CREATE, &db->rows);
        if (rc == MDB_NOTFOUND)
            st = ember__error(EMBER_ERR_FORMAT, "%s: store %s has no rows database (corrupt store)", fn,
                              path);
        else if (rc)
            st = lmdb_status(rc, fn, "opening the rows database", path);
    }
    if (st == EMBER_OK && !exists) {
        unsigned char fmt[12];
        memcpy(fmt, STORE_MAGIC, 8);
        uint32_t ver = STORE_VERSION;
        memcpy(fmt + 8, &ver, 4);
        st = meta_put(db, db->txn, "format", fmt, sizeof fmt, fn);
        if (st == EMBER_OK) st = meta_put(db, db->txn, "layout", blob, lb, fn);
        if (st == EMBER_OK) {
            rc = mdb_txn_commit(db->txn);
            db->txn = NULL;
            if (rc) st = lmdb_status(rc, fn, "committing the new store", path);
        }
        if (st == EMBER_OK) st = begin_outer(db, fn);
        if (st == EMBER_OK) *created = 1;
    } else if (st == EMBER_OK) {
        MDB_val v;
        int found;
        st = meta_get(db, "format", &v, &found);
        if (st == EMBER_OK && (!found || v.mv_size != 12 || memcmp(v.mv_data, STORE_MAGIC, 8) != 0))
            st = ember__error(EMBER_ERR_FORMAT, "%s: %s is not an ember store (format record %s)", fn, path,
                              found ? "has the wrong magic" : "missing");
        if (st == EMBER_OK) {
            uint32_t ver;
            memcpy(&ver, (const char *)v.mv_data + 8, 4);
            if (ver != STORE_VERSION)
                st = ember__error(EMBER_ERR_FORMAT, "%s: store %s has format version %u; this ember reads %u",
                                  fn, path, ver, STORE_VERSION);
        }
        if (st == EMBER_OK) st = meta_get(db, "layout", &v, &found);
        if (st == EMBER_OK && !found)
            st = ember__error(EMBER_ERR_FORMAT, "%s: store %s has no layout record (corrupt store)", fn, path);
        if (st == EMBER_OK) st = layout_check(p, &v, path);
        if (st == EMBER_OK) st = meta_get(db, "init", &v, &found);
        if (st == EMBER_OK && found) {
            if (v.mv_size != sizeof *init)
                st = ember__error(EMBER_ERR_FORMAT, "%s: store %s: initialiser record of %zu B is corrupt",
                                  fn, path, v.mv_size);
            else
                memcpy(init, v.mv_data, sizeof *init);
        }
        if (st == EMBER_OK) st = meta_get(db, "step", &v, &found);
        if (st == EMBER_OK && found) {
            if (v.mv_size != sizeof *step)
                st = ember__error(EMBER_ERR_FORMAT, "%s: store %s: step record of %zu B is corrupt", fn,
                                  path, v.mv_size);
            else
                memcpy(step, v.mv_data, sizeof *step);
        }
    }
    free(blob);
    if (st != EMBER_OK) goto fail;
    *out = db;
    return EMBER_OK;
fail:
    ember__lmdb_close(db);
    return st;
}

void ember__lmdb_close(ember__lmdb *db) {
    if (!db) return;
    if (db->block) mdb_txn_abort(db->block);
    if (db->txn) mdb_txn_abort(db->txn);
    if (db->env) mdb_env_close(db->env);
    free(db->path);
    free(db);
}

const char *ember__lmdb_path(const ember__lmdb *db) { return db ? db->path : ""; }

static ember_status usable(ember__lmdb *db, const char *fn) {
    if (db->broken || !db->txn)
        return ember__error(EMBER_ERR_STATE, "%s: store %s lost its open transaction (a failed "
                            "commit); reopen it to resume from the last checkpoint", fn, db->path);
    return EMBER_OK;
}

ember_status ember__lmdb_block_begin(ember__lmdb *db) {
    EMBER_TRY(usable(db, "ember_cache"));
    EMBER_ASSERT(db->block == NULL);
    int rc = mdb_txn_begin(db->env, db->txn, 0, &db->block);
    if (rc) {
        db->block = NULL;
        return lmdb_status(rc, "ember_cache", "beginning a nested transaction", db->path);
    }
    return EMBER_OK;
}

ember_status ember__lmdb_block_end(ember__lmdb *db, int commit) {
    if (!db->block) return EMBER_OK;
    MDB_txn *b = db->block;
    db->block = NULL;
    if (!commit) {
        mdb_txn_abort(b);
        return EMBER_OK;
    }
    int rc = mdb_txn_commit(b);
    if (rc) return lmdb_status(rc, "ember_cache", "committing a block of rows", db->path);
    return EMBER_OK;
}

static MDB_txn *cur(ember__lmdb *db) { return db->block ? db->block : db->txn; }

ember_status ember__lmdb_put(ember__lmdb *db, int table, int64_t id, const void *rec, size_t bytes) {
    unsigned char k[12];
    key_of(k, table, id);
    MDB_val key = {sizeof k, k}, val = {bytes, (void *)rec};
    int rc = mdb_put(cur(db), db->rows, &key, &val, 0);
    if (rc) {
        char what[96];
        snprintf(what, sizeof what, "writing table %d row %lld", table, (long long)id);
        return lmdb_status(rc, "ember_cache", what, db->path);
    }
    return EMBER_OK;
}

ember_status ember__lmdb_get(ember__lmdb *db, int table, int64_t id, size_t bytes, const void **rec) {
    unsigned char k[12];
    key_of(k, table, id);
    MDB_val key = {sizeof k, k}, val;
    int rc = mdb_get(cur(db), db->rows, &key, &val);
    if (rc == MDB_NOTFOUND) return EMBER_ERR_NOT_FOUND;
    if (rc) {
        char what[96];
        snprintf(what, sizeof what, "reading table %d row %lld", table, (long long)id);
        return lmdb_status(rc, "ember_cache", what, db->path);
    }
    if (val.mv_size != bytes)
        return ember__error(EMBER_ERR_FORMAT, "ember_cache: store %s: table %d row %lld holds %zu B; "
                            "records are %zu B (corrupt store)", db->path, table, (long long)id,
                            val.mv_size, bytes);
    *rec = val.mv_data;
    return EMBER_OK;
}

ember_status ember__lmdb_reset(ember__lmdb *db, const ember__store_init *init) {
    static const char fn[] = "ember_cache_init_uniform";
    EMBER_TRY(usable(db, fn));
    int rc = mdb_drop(db->txn, db->rows, 0);
    if (rc) return lmdb_status(rc, fn, "dropping the stored rows", db->path);
    return meta_put(db, db->txn, "init", init, sizeof *init, fn);
}

ember_status ember__lmdb_checkpoint(ember__lmdb *db, int64_t step) {
    static const char fn[] = "ember_cache_checkpoint";
    EMBER_TRY(usable(db, fn));
    EMBER_TRY(meta_put(db, db->txn, "step", &step, sizeof step, fn));
    int rc = mdb_txn_commit(db->txn);
    db->txn = NULL;
    if (rc) {
        db->broken = 1;
        return lmdb_status(rc, fn, "committing the checkpoint", db->path);
    }
    rc = mdb_env_sync(db->env, 1);
    if (rc) {
        ember_status st = lmdb_status(rc, fn, "syncing the checkpoint to disk", db->path);
        (void)begin_outer(db, fn);
        return st;
    }
    return begin_outer(db, fn);
}

#else /* !EMBER_HAVE_LMDB */

struct ember__lmdb {
    int unused;
};

ember_status ember__lmdb_open(const ember__lmdb_params *p, ember__lmdb **out, int *created,
                              int64_t *step, ember__store_init *init) {
    (void)p;
    (void)init;
    *out = NULL;
    *created = 0;
    *step = -1;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_cache_create: the LMDB store needs ember built "
                        "with LMDB (install liblmdb-dev and reconfigure)");
}
void ember__lmdb_close(ember__lmdb *db) { (void)db; }
const char *ember__lmdb_path(const ember__lmdb *db) {
    (void)db;
    return "";
}
ember_status ember__lmdb_block_begin(ember__lmdb *db) {
    (void)db;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_cache: LMDB not built");
}
ember_status ember__lmdb_block_end(ember__lmdb *db, int commit) {
    (void)db;
    (void)commit;
    return EMBER_OK;
}
ember_status ember__lmdb_put(ember__lmdb *db, int table, int64_t id, const void *rec, size_t bytes) {
    (void)db, (void)table, (void)id, (void)rec, (void)bytes;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_cache: LMDB not built");
}
ember_status ember__lmdb_get(ember__lmdb *db, int table, int64_t id, size_t bytes, const void **rec) {
    (void)db, (void)table, (void)id, (void)bytes, (void)rec;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_cache: LMDB not built");
}
ember_status ember__lmdb_reset(ember__lmdb *db, const ember__store_init *init) {
    (void)db, (void)init;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_cache: LMDB not built");
}
ember_status ember__lmdb_checkpoint(ember__lmdb *db, int64_t step) {
    (void)db, (void)step;
    return ember__error(EMBER_ERR_UNSUPPORTED, "ember_cache: LMDB not built");
}
#endif
