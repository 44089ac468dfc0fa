/* SQLite index: migrations and the indexer.
 *
 * The indexer is the only code that turns spool records into flows rows. It
 * keeps the rows of flows touched by the current transaction in a hash map
 * and writes a row when the frame that finishes its flow has been read, or
 * at the commit if the flow is still open: one upsert per flow and
 * transaction, not one statement per record. */
#include "session/index.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "base/pace.h"
#include "flow.pb-c.h"
#include "session/bodyindex.h"
#include "session/pbwire.h"
#include "session/filter.h"
#include "session/journal.h"
#include "session/spool.h"

extern const char *const reel__schema_migrations[];
extern const size_t reel__schema_migration_count;

int reel_index_schema_version(void) {
    return (int)reel__schema_migration_count;
}

/* Before any SQLite call of the process (sqlite3_config must come before
 * sqlite3_initialize, which the first open runs): no memory statistics.
 * Debian's SQLite is built without its lookaside allocator, so every
 * statement step mallocs, and with the statistics on each malloc and free
 * also takes a process-wide mutex to count bytes that reel never reads.
 * A constructor, so that every program linking the index (reel, the
 * benchmarks, the tests) runs SQLite alike. */
__attribute__((constructor)) static void sqlite_setup(void) {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* REEL_CORRUPT when SQLite says the file is damaged, else REEL_DB. */
static reel_rc db_rc(int sqlite_rc) {
    int c = sqlite_rc & 0xff;
    return c == SQLITE_CORRUPT || c == SQLITE_NOTADB ? REEL_CORRUPT : REEL_DB;
}

/* An I/O error for which SQLite kept no errno (it reads errno when it
 * reports the error, after other calls may have reset it: a write past
 * the file-size limit then says "disk I/O error" alone): EFBIG when a
 * file of db's is within a few pages of the process's file-size limit,
 * ENOSPC when its file system has no room left; else 0. */
static int io_cause(sqlite3 *db) {
    const char *path = sqlite3_db_filename(db, "main");
    if (path == NULL || path[0] == '\0')
        return 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        static const char *const sfx[] = {"", "-wal", "-journal"};
        for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
            char *p = reel_asprintf("%s%s", path, sfx[i]);
            struct stat st;
            int near = stat(p, &st) == 0 && (uint64_t)st.st_size + 65536 > rl.rlim_cur;
            free(p);
            if (near)
                return EFBIG;
        }
    }
    struct statvfs vs;
    if (statvfs(path, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < 65536)
        return ENOSPC;
    return 0;
}

/* The errno behind db's last error src, which SQLite keeps for I/O errors
 * and files it could not open ("disk I/O error" alone does not say that
 * the disk is full), or io_cause's; 0 if there is none. */
static int db_errno(sqlite3 *db, int src) {
    int c = src & 0xff;
    if (db == NULL || (c != SQLITE_IOERR && c != SQLITE_CANTOPEN))
        return 0;
    int e = sqlite3_system_errno(db);
    return e != 0 || c != SQLITE_IOERR ? e : io_cause(db);
}

/* "session.db: " and db's last error, with its errno if SQLite kept one. */
reel_rc reel_index_db_error(reel_err_t *err, reel_rc rc, sqlite3 *db) {
    return reel_err_errno(err, rc, db_errno(db, sqlite3_extended_errcode(db)), "session.db: %s",
                          sqlite3_errmsg(db));
}

/* Whether SQLite's error src on opening or reading an index came from
 * around the file rather than from its bytes: a full file system (in
 * particular, no room to make session.db-shm or -wal beside it), a
 * file-size limit, an I/O error, a file it could not open. The index may
 * well be whole, so it must not be called damaged, nor a rebuild advised:
 * that would write more to a full disk and fix nothing. A short read is
 * a file shorter than its header says: that is damage. */
static int env_failure(int src) {
    int c = src & 0xff;
    if (src == SQLITE_IOERR_SHORT_READ)
        return 0;
    return c == SQLITE_FULL || c == SQLITE_IOERR || c == SQLITE_CANTOPEN || c == SQLITE_NOLFS ||
           c == SQLITE_NOMEM;
}

/* The error for an index that could not be opened or read for a reason
 * env_failure accepts: names the cause and what to do about it. */
static reel_rc env_error(reel_err_t *err, sqlite3 *db, const char *path, int src) {
    int e = db_errno(db, src);
    const char *todo = "an error of the file system, not damage found in the index: check the "
                       "disk (dmesg) and try again";
    if ((src & 0xff) == SQLITE_FULL || e == ENOSPC || e == EDQUOT)
        todo = "a full file system, not damage to the index: free some space and try again";
    else if (e == EFBIG)
        todo = "the file-size limit, not damage to the index: raise it and try again";
    else if (e == EACCES || e == EPERM || e == EROFS)
        todo = "a file system or permissions that keep reel from writing beside it, not damage "
               "to the index: copy the session somewhere writable, or fix its permissions";
    else if ((src & 0xff) == SQLITE_NOMEM || e == ENOMEM)
        todo = "a lack of memory, not damage to the index: try again";
    else if (e == EISDIR)
        todo = "a directory where the index should be, no file system error: remove or rename "
               "it, and 'reel repair' makes the index again from the spool";
    reel_err_t why;
    reel_err_clear(&why);
    reel_err_errno(&why, REEL_IO, e, "cannot open %s (%s)", path,
                   db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
    return reel_err_set(err, REEL_IO, "%s; that is %s", reel_err_str(&why), todo);
}

/* ---- a writer beside a recorder ---- */

static pthread_mutex_t writers_mu = PTHREAD_MUTEX_INITIALIZER;
static struct writer_fd {
    sqlite3 *db;
    int fd;
} * writers;
static size_t nwriters;

void reel_index_writer_signal(sqlite3 *db, int lock_fd) {
    pthread_mutex_lock(&writers_mu);
    size_t i = 0;
    while (i < nwriters && writers[i].db != db)
        i++;
    if (lock_fd < 0) {
        if (i < nwriters)
            writers[i] = writers[--nwriters];
        if (nwriters == 0) {
            free(writers);
            writers = NULL;
        }
    } else if (i < nwriters) {
        writers[i].fd = lock_fd;
    } else {
        writers = reel_realloc(writers, (nwriters + 1) * sizeof *writers);
        writers[nwriters++] = (struct writer_fd){db, lock_fd};
    }
    pthread_mutex_unlock(&writers_mu);
}

static int writer_fd_of(sqlite3 *db) {
    int fd = -1;
    pthread_mutex_lock(&writers_mu);
    for (size_t i = 0; i < nwriters; i++)
        if (writers[i].db == db)
            fd = writers[i].fd;
    pthread_mutex_unlock(&writers_mu);
    return fd;
}

static int writer_lock(int fd, int cmd, short type) {
    struct flock fl = {
        .l_type = type, .l_whence = SEEK_SET, .l_start = REEL_INDEX_WRITER_BYTE, .l_len = 1};
    int rc = fcntl(fd, cmd, &fl);
    return cmd == F_OFD_GETLK ? (rc == 0 && fl.l_type != F_UNLCK) : rc == 0;
}

int reel_index_writer_waiting(int lock_fd) {
    return lock_fd >= 0 && writer_lock(lock_fd, F_OFD_GETLK, F_RDLCK);
}

int reel_index_begin_write(sqlite3 *db) {
    int fd = writer_fd_of(db);
    if (fd < 0)
        return sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    /* Tried every millisecond, not with SQLite's growing sleeps: the
     * recorder lets go of the lock for a moment only. Another writer may
     * hold the byte already; it says the same. */
    sqlite3_busy_timeout(db, 0);
    int64_t until = reel_mono_ns() + 10 * 1000000000LL;
    int said = 0, src;
    while (((src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) & 0xff) == SQLITE_BUSY &&
           reel_mono_ns() < until) {
        if (!said)
            said = writer_lock(fd, F_OFD_SETLK, F_WRLCK);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (said)
        writer_lock(fd, F_OFD_SETLK, F_UNLCK);
    sqlite3_busy_timeout(db, 10000);
    return src;
}

reel_rc reel_index_exec(sqlite3 *db, const char *sql, reel_err_t *err) {
    char *msg = NULL;
    int src = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (src != SQLITE_OK && reel_journal_failed(db)) { /* not "constraint failed" */
        sqlite3_free(msg);
        return reel_err_set(err, REEL_IO, "%s", reel_journal_errmsg(db));
    }
    if (src != SQLITE_OK) {
        reel_rc rc = reel_err_errno(err, db_rc(src), db_errno(db, sqlite3_extended_errcode(db)),
                                    "session.db: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return rc;
    }
    return REEL_OK;
}

reel_rc reel_index_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, reel_err_t *err) {
    int src = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (src != SQLITE_OK)
        return reel_index_db_error(err, db_rc(src), db);
    return REEL_OK;
}

static int user_version(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static reel_rc migrate(sqlite3 *db, reel_err_t *err) {
    int v = user_version(db);
    if (v < 0 && env_failure(sqlite3_extended_errcode(db)))
        return env_error(err, db, sqlite3_db_filename(db, "main"), sqlite3_extended_errcode(db));
    if (v < 0)
        return reel_err_set(err, REEL_CORRUPT, "%s is damaged or not an SQLite database (%s)",
                            sqlite3_db_filename(db, "main"), sqlite3_errmsg(db));
    if (v > reel_index_schema_version())
        return reel_err_set(err, REEL_UNSUPPORTED,
                            "session.db has schema version %d, newer than this reel (%d); "
                            "upgrade reel to open it",
                            v, reel_index_schema_version());
    for (int i = v; i < reel_index_schema_version(); i++) {
        reel_rc rc = reel_index_exec(db, "BEGIN IMMEDIATE", err);
        if (rc != REEL_OK)
            return rc;
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", i + 1);
        if (reel_index_exec(db, reel__schema_migrations[i], err) != REEL_OK ||
            reel_index_exec(db, pragma, err) != REEL_OK) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return REEL_DB;
        }
        rc = reel_index_exec(db, "COMMIT", err);
        if (rc != REEL_OK)
            return rc;
    }
    return REEL_OK;
}

/* The indexes and triggers of flows as the schema makes them: schema/NNN_*.sql
 * applied once per process to an empty in-memory database. */
static struct {
    pthread_once_t once;
    reel_index_object_t *v;
    size_t n;
    reel_err_t err;
} flows_objects = {PTHREAD_ONCE_INIT, NULL, 0, {REEL_OK, ""}};

static void flows_objects_load(void) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        reel_err_set(&flows_objects.err, REEL_DB, "cannot open an in-memory database: %s",
                     db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    if (migrate(db, &flows_objects.err) != REEL_OK ||
        reel_index_prepare(db,
                           "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = "
                           "'flows' AND type IN ('index', 'trigger') AND sql IS NOT NULL "
                           "ORDER BY rowid",
                           &st, &flows_objects.err) != REEL_OK)
        goto out;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (flows_objects.n == cap)
            flows_objects.v =
                reel_realloc(flows_objects.v, (cap = cap ? cap * 2 : 16) * sizeof *flows_objects.v);
        flows_objects.v[flows_objects.n++] =
            (reel_index_object_t){reel_strdup((const char *)sqlite3_column_text(st, 0)),
                                  reel_strdup((const char *)sqlite3_column_text(st, 1)),
                                  reel_strdup((const char *)sqlite3_column_text(st, 2))};
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
}

const reel_index_object_t *reel_index_flows_objects(size_t *n, reel_err_t *err) {
    pthread_once(&flows_objects.once, flows_objects_load);
    *n = flows_objects.n;
    if (flows_objects.err.code != REEL_OK) {
        reel_err_set(err, flows_objects.err.code, "%s", reel_err_str(&flows_objects.err));
        *n = 0;
        return NULL;
    }
    return flows_objects.v;
}

/* Whether db has an object (index or trigger) of that name. */
static int has_object(sqlite3 *db, const char *name) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE name = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

reel_rc reel_index_flows_objects_missing(sqlite3 *db, reel_buf_t *names, size_t *missing,
                                         reel_err_t *err) {
    size_t n = 0;
    *missing = 0;
    const reel_index_object_t *o = reel_index_flows_objects(&n, err);
    if (o == NULL)
        return err ? err->code : REEL_DB;
    for (size_t i = 0; i < n; i++) {
        if (has_object(db, o[i].name))
            continue;
        if (names)
            reel_buf_printf(names, "%s%s", (*missing)++ ? ", " : "", o[i].name);
        else
            (*missing)++;
    }
    return REEL_OK;
}

reel_rc reel_index_flows_objects_restore(sqlite3 *db, size_t *made, reel_err_t *err) {
    size_t n = 0;
    reel_rc rc = REEL_OK;
    *made = 0;
    const reel_index_object_t *o = reel_index_flows_objects(&n, err);
    if (o == NULL)
        return err ? err->code : REEL_DB;
    for (size_t i = 0; i < n && rc == REEL_OK; i++) {
        if (has_object(db, o[i].name))
            continue;
        if ((rc = reel_index_exec(db, o[i].sql, err)) == REEL_OK)
            (*made)++;
    }
    return rc;
}

reel_rc reel_index_open(const char *path, int how, sqlite3 **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3 *db = NULL;
    int create = how & REEL_INDEX_CREATE;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) |
                (how & REEL_INDEX_ONE_THREAD ? SQLITE_OPEN_NOMUTEX : 0);
    if (create && strcmp(path, ":memory:") != 0) {
        /* made 0600 before SQLite opens it: its -wal and -shm copy the
         * database's mode when they are made, which is as soon as it is
         * opened (journal_mode=WAL), so a chmod after left them 0644 less
         * the umask for the whole first run, with URLs and notes in them */
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            *out = NULL;
            return reel_err_errno(err, REEL_IO, errno, "creating %s", path);
        }
        close(fd);
    }
    int osrc = sqlite3_open_v2(path, &db, flags, NULL);
    if (osrc != SQLITE_OK && !create && env_failure(osrc)) {
        rc = env_error(err, db, path, osrc);
        goto out;
    } else if (osrc != SQLITE_OK) {
        rc = reel_err_set(err, create ? REEL_DB : REEL_CORRUPT, "cannot open %s: %s", path,
                          db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 10000);
    if (!create && user_version(db) == 0) {
        /* An existing index has a schema. Migrating one without it would
         * quietly make a new, empty index: the caller decides. */
        sqlite3_stmt *st = NULL;
        int tables = -1;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) ==
                SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            tables = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        struct stat fst;
        if (tables == 0 && stat(path, &fst) == 0 && fst.st_size == 0) {
            rc = reel_err_set(err, REEL_CORRUPT, "%s is empty (0 bytes)", path);
            goto out;
        }
        if (tables == 0) {
            /* A database whose writes were all lost (WAL mode commits
             * are not synced: a power cut soon after creation). */
            rc = reel_err_set(err, REEL_NOTFOUND, "%s holds no reel index (no tables)", path);
            goto out;
        }
    }
    if (sqlite3_db_readonly(db, "main") == 1) {
        /* SQLite fell back to read-only: the file is not writable for us.
         * Opening a session writes (recovery, migrations, the WAL). */
        rc = reel_err_set(err, REEL_IO,
                          "%s is read-only for this user: reel opens a session for writing "
                          "(recovery on open); copy the session somewhere writable, or fix "
                          "its permissions",
                          path);
        goto out;
    }
    /* The spool is the source of truth and the index can be rebuilt from
     * it, so commits need not wait for fsync (synchronous=NORMAL in WAL). */
    rc = reel_index_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err);
    if (rc != REEL_OK) {
        reel_err_clear(err);
        int code = sqlite3_extended_errcode(db) & 0xff;
        if (code == SQLITE_READONLY || code == SQLITE_CANTOPEN || code == SQLITE_PERM) {
            rc = reel_err_set(err, REEL_IO,
                              "%s cannot be written (%s): reel opens a session for writing "
                              "and needs to create session.db-wal and -shm beside it; copy the "
                              "session somewhere writable, or fix its permissions",
                              path, sqlite3_errmsg(db));
            goto out;
        }
        /* Switching to WAL, or reading through it, makes session.db-shm
         * (and -wal) beside the file: on a full disk that fails first. */
        if (env_failure(sqlite3_extended_errcode(db))) {
            rc = env_error(err, db, path, sqlite3_extended_errcode(db));
            goto out;
        }
        rc = reel_err_set(err, REEL_CORRUPT, "%s is damaged or not an SQLite database (%s)", path,
                          sqlite3_errmsg(db));
        goto out;
    }
    rc = migrate(db, err);
    if (rc != REEL_OK)
        goto out;
    rc = reel_filter_register(db, err);
    reel_bodyindex_register(db);
out:
    if (rc != REEL_OK) {
        sqlite3_close(db);
        db = NULL;
    }
    *out = db;
    return rc;
}

/* A file: URI for path with SQLite's query parameter q appended
 * ('%', '?' and '#' escaped). Returns owned. */
static char *file_uri(const char *path, const char *q) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, "file:");
    for (const char *p = path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#') {
            char esc[4];
            snprintf(esc, sizeof esc, "%%%02X", (unsigned char)*p);
            reel_buf_puts(&b, esc);
        } else {
            reel_buf_append(&b, p, 1);
        }
    }
    reel_buf_puts(&b, "?");
    reel_buf_puts(&b, q);
    reel_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Opens path read-only through uri query q and reads its schema, so that
 * a failure shows here. Returns the SQLite code. */
static int open_ro(const char *path, const char *q, sqlite3 **out) {
    char *uri = file_uri(path, q);
    sqlite3 *db = NULL;
    int src = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    free(uri);
    if (src == SQLITE_OK)
        src = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        sqlite3_close(db);
        db = NULL;
    }
    *out = db;
    return src;
}

/* Copies db into a new in-memory database (for migrating an older schema
 * without writing the file). Returns the copy or NULL. */
static sqlite3 *copy_to_memory(sqlite3 *db) {
    sqlite3 *mem = NULL;
    if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(mem);
        return NULL;
    }
    sqlite3_backup *bk = sqlite3_backup_init(mem, "main", db, "main");
    int ok = bk && sqlite3_backup_step(bk, -1) == SQLITE_DONE;
    if (sqlite3_backup_finish(bk) != SQLITE_OK || !ok) {
        sqlite3_close(mem);
        return NULL;
    }
    return mem;
}

reel_rc reel_index_open_readonly(const char *path, int live, sqlite3 **out, char **note,
                                 reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3 *db = NULL;
    reel_buf_t nb;
    reel_buf_init(&nb, 0);
    *note = NULL;
    char *walpath = reel_asprintf("%s-wal", path);
    struct stat wst;
    int wal = stat(walpath, &wst) == 0 && wst.st_size > 0;
    int src = SQLITE_OK;
    if (live || wal) {
        /* Read through the WAL: needs its -shm file, which SQLite maps
         * read-only when it cannot write it. */
        src = open_ro(path, "mode=ro", &db);
        if (src != SQLITE_OK && wal) {
            reel_buf_printf(&nb,
                            "the %lld bytes of changes in %s (not yet in session.db) cannot be "
                            "read without writing beside it (its -shm file is missing or "
                            "unreadable): they are not shown",
                            (long long)wst.st_size, walpath);
        }
    }
    if (db == NULL) {
        /* Nothing writes this file: immutable reads it without any lock
         * or -shm file. */
        src = open_ro(path, "immutable=1", &db);
    }
    if (db == NULL) {
        int code = src & 0xff;
        int io = code == SQLITE_CANTOPEN || code == SQLITE_PERM || env_failure(src);
        rc = reel_err_set(err, io ? REEL_IO : REEL_CORRUPT, "cannot read %s: %s", path,
                          sqlite3_errstr(src));
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 10000);
    int v = user_version(db);
    if (v < 0 && env_failure(sqlite3_extended_errcode(db))) {
        rc = env_error(err, db, path, sqlite3_extended_errcode(db));
        goto out;
    }
    if (v < 0) {
        rc = reel_err_set(err, REEL_CORRUPT, "%s is damaged or not an SQLite database (%s)", path,
                          sqlite3_errmsg(db));
        goto out;
    }
    if (v == 0) {
        rc = reel_err_set(err, REEL_CORRUPT, "%s holds no reel index (no schema)", path);
        goto out;
    }
    if (v > reel_index_schema_version()) {
        rc = reel_err_set(err, REEL_UNSUPPORTED,
                          "session.db has schema version %d, newer than this reel (%d); "
                          "upgrade reel to open it",
                          v, reel_index_schema_version());
        goto out;
    }
    if (v < reel_index_schema_version()) {
        /* The query code reads the current schema: migrate a copy in
         * memory, the file stays as it is. */
        sqlite3 *mem = copy_to_memory(db);
        if (mem == NULL) {
            rc = reel_err_set(err, REEL_DB,
                              "session.db has schema version %d and cannot be written here to "
                              "upgrade it to %d, nor copied into memory: copy the session to a "
                              "writable directory and open it there",
                              v, reel_index_schema_version());
            goto out;
        }
        sqlite3_close(db);
        db = mem;
        sqlite3_extended_result_codes(db, 1);
        if ((rc = migrate(db, err)) != REEL_OK)
            goto out;
        if (nb.len)
            reel_buf_puts(&nb, "; ");
        reel_buf_printf(&nb,
                        "session.db has schema version %d (an older reel): upgraded in memory "
                        "to %d for reading, the file is left as it is",
                        v, reel_index_schema_version());
    }
    rc = reel_filter_register(db, err);
    reel_bodyindex_register(db);
out:
    free(walpath);
    if (rc != REEL_OK) {
        sqlite3_close(db);
        db = NULL;
        reel_buf_free(&nb);
    } else if (nb.len) {
        reel_buf_append(&nb, "", 1);
        *note = (char *)nb.data;
    } else {
        reel_buf_free(&nb);
    }
    *out = db;
    return rc;
}

char *reel_index_meta_get(sqlite3 *db, const char *key) {
    sqlite3_stmt *st = NULL;
    char *v = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = reel_strdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return v;
}

reel_rc reel_index_meta_set(sqlite3 *db, const char *key, const char *value, reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    reel_rc rc = reel_index_prepare(
        db, "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        &st, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = reel_index_db_error(err, REEL_DB, db);
    sqlite3_finalize(st);
    return rc;
}

static uint64_t query_u64(sqlite3 *db, const char *sql, int64_t arg, int has_arg) {
    sqlite3_stmt *st = NULL;
    uint64_t v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (has_arg)
            sqlite3_bind_int64(st, 1, arg);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

uint64_t reel_index_max_client_conn(sqlite3 *db) {
    return query_u64(db, "SELECT coalesce(max(conn), 0) FROM client_conns", 0, 0);
}

reel_rc reel_index_client_conns_remake(sqlite3 *db, reel_err_t *err) {
    reel_rc rc = reel_index_exec(
        db,
        "BEGIN IMMEDIATE; DELETE FROM client_conns;"
        "INSERT INTO client_conns(conn, first_flow, last_flow) " REEL_INDEX_CONN_RANGES "; COMMIT;",
        err);
    if (rc != REEL_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

uint64_t reel_index_max_flow_id(sqlite3 *db) {
    /* meta max_flow_id keeps the ids of flows that repair dropped (their
     * segment is missing) from being given to new flows. */
    return query_u64(db,
                     "SELECT max(coalesce((SELECT max(id) FROM flows), 0), "
                     "coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = "
                     "'max_flow_id'), 0))",
                     0, 0);
}

uint64_t reel_index_segment_end(sqlite3 *db, uint32_t segment) {
    /* The last frame by offset ends the segment (a primary-key lookup),
     * unless a range recovery or repair skipped (a mark of damage set
     * aside, section 6 of docs/format.md) ends later. The bytes a segment
     * lost when it was cut short are not in it any more. */
    return query_u64(db,
                     "SELECT max(coalesce((SELECT offset + clen FROM frames WHERE segment = ?1 "
                     "ORDER BY offset DESC LIMIT 1), 0), coalesce((SELECT max(offset + length) "
                     "FROM damage WHERE segment = ?1 AND reason NOT IN ('segment file missing', "
                     "'segment cut short')), 0))",
                     segment, 1);
}

uint32_t reel_index_last_segment(sqlite3 *db) {
    return (uint32_t)query_u64(
        db, "SELECT coalesce((SELECT segment FROM frames ORDER BY segment DESC LIMIT 1), 0)", 0, 0);
}

/* ---- the indexer ---- */

enum {
    C_UUID, C_KIND, C_SOURCE, C_STATE, C_CLIENT, C_SERVER, C_SCHEME, C_METHOD, C_HOST, C_PATH,
    C_URL, C_VERSION, C_REASON, C_REQ_CT, C_RESP_CT, C_ERROR, C_REPLAY_SESSION, C_NSTR
};
enum { I_START, I_REQ_END, I_RESP_START, I_END, I_PORT, I_STATUS, I_REQ_SIZE, I_RESP_SIZE,
       I_REQ_TRUNC, I_RESP_TRUNC, I_GENERATED, I_REQ_DROPPED, I_RESP_DROPPED, I_MESSAGES,
       I_REPLAY_OF, I_CLIENT_CONN, I_STREAM_ID, I_NINT };

/* One flows row being assembled. Integers use INT64_MIN for NULL. */
typedef struct frow {
    struct frow *next;
    uint64_t id;
    char *s[C_NSTR];
    uint32_t len[C_NSTR]; /* strlen(s[k]), handed to SQLite: its strlen of
                           * every bound string was 3% of the thread */
    int64_t i[I_NINT];
    int dirty;
    int in_db; /* the table has a row for it (loaded, or written by us) */
    int finished;
    int queued; /* in the indexer's list of rows to write after this frame */
    uint32_t last_seg;
    uint64_t last_off;
    int has_frame;
    /* its request was an RFC 8441 extended CONNECT for a WebSocket (a 2xx
     * answer makes it one, as a 101 does an HTTP/1.1 upgrade) */
    int ws_connect;
    /* its request was an HTTP/1.1 WebSocket handshake (Upgrade naming
     * websocket): an HTTP/2 origin's 2xx to it is the switch too, the
     * extended CONNECT reel made of it (core/h2up.c) answered, which the
     * record keeps as the origin's 200 (the client got a 101) */
    int ws_upgrade;
    /* A FlowError's records_lost and body bytes lost (request, response),
     * the body bytes stored before them, and when it was recorded:
     * flow_damage rows to write with the row (write_lost) */
    uint64_t lost[3];
    int64_t lost_at[2], lost_us;
    /* The strings live in pool while they fit (a flow's dozen strings had
     * a malloc and a free each); heap bit k: s[k] was allocated instead.
     * A replaced string's room in the pool is not reused. */
    uint32_t heap;
    uint32_t pool_used;
    char pool[448];
} frow;
_Static_assert(C_NSTR <= 32, "frow.heap has a bit per string column");

#define NUL64 INT64_MIN

static const size_t LINK_ROWS[4] = {64, 16, 4, 1};
/* Rows a frame finished are written by statements of UPSERT_ROWS[k] rows
 * each: running a statement per row cost about a fifth of writing it. */
static const size_t UPSERT_ROWS[3] = {16, 4, 1};
#define ROW_PARAMS ((size_t)(1 + C_NSTR + I_NINT))

/* The statements that write rows of flows come in four sets of three
 * (UPSERT_ROWS rows each; bound[set * 3 + k]):
 * - ROWS_UPSERT: upserts;
 * - ROWS_UPSERT_UNMARKED: the same with marked = 0 for new rows, used in
 *   transactions begun while the marks table was empty (marks_fixed:
 *   nothing else on this connection adds marks, and no other connection
 *   can while the transaction holds the write lock); the EXISTS on marks
 *   per row was a twentieth of the indexer's instructions per flow;
 * - ROWS_INSERT, ROWS_INSERT_UNMARKED: the same two as plain inserts, for
 *   rows the table does not have yet (every row of a live capture, once):
 *   an upsert may abort halfway through its rows, so SQLite kept a
 *   statement journal for it (opened, truncated and closed per statement:
 *   a twelfth of the indexer's instructions per flow), which INSERT OR
 *   FAIL does not need. */
enum { ROWS_UPSERT, ROWS_UPSERT_UNMARKED, ROWS_INSERT, ROWS_INSERT_UNMARKED };

struct reel_indexer {
    sqlite3 *db;
    sqlite3_stmt *load, *frame, *any_marks;
    /* The twelve statements that write rows (above). The one-row ones are
     * prepared with the indexer, so that a schema they do not fit fails
     * there; the others when first needed: compiling all twelve took a
     * few milliseconds, most of what an indexer for a small session (an
     * import, a recovery) cost. With each, what each of its parameters
     * holds since its last bind (bindings outlive sqlite3_reset): an
     * integer or NULL that did not change is not bound again. Most of a
     * row's columns are the same as the last row's (status 200, sizes,
     * zeros, NULLs), and a bind was a tenth of the thread's instructions. */
    struct bound {
        sqlite3_stmt *st;
        uint8_t *tag; /* per parameter: B_UNSET, B_NULL, B_INT, B_TEXT */
        int64_t *val; /* B_INT's value */
    } bound[12];
    int marks_fixed, no_marks;
    reel_pace_t pace; /* reel_indexer_pace */
    /* flow_frames: the flows with records in the frame being read, linked
     * to it when it ends, by statements of LINK_ROWS[k] rows each (one
     * statement per link cost a tenth of the indexer's CPU, most of it
     * running a statement rather than inserting) */
    sqlite3_stmt *link[4];
    uint64_t *links;
    size_t nlinks, caplinks;
    frow **buckets;
    size_t nbuckets, count;
    /* Unpacked records live in an arena that is reset after each one:
     * malloc and free of every header of every head were a tenth of the
     * CPU of a repair. */
    ProtobufCAllocator pa;
    uint8_t *arena;
    size_t arena_used;
    struct big *bigs; /* what did not fit in the arena */
    int in_tx;
    /* No flows row has an id above it (the highest at open, then the
     * highest written): a flow above it is new, and its row is not looked
     * up (a lookup per flow, 4% of the indexer's CPU, that never found
     * anything for a live capture). */
    uint64_t known_max;
    /* Rows that a frame finished: written as soon as the frame is read, so
     * that the work of a batch is spread over its frames instead of piling
     * up at its commit (where the writer thread would wait for it). */
    frow **fin;
    size_t nfin, capfin;
    /* Rows freed by map_clear, for map_get to use again (their malloc and
     * free were the most of a commit's own work): up to SPARE_ROWS. */
    frow *spare;
    size_t nspare;
    reel_bodyindex_t *bx; /* body_text, body_fts, body_todo */
    /* client_conns (schema 11): each new row that has a client_conn, as
     * (conn, id), merged into one upsert per connection at the commit;
     * not kept in bulk (a rebuild makes the table again at its end) */
    struct conn_flow {
        int64_t conn, id;
    } * conn_flows;
    size_t nconn_flows, capconn_flows;
    sqlite3_stmt *conn_upsert;
    int bulk;
};

static const char *const str_cols[C_NSTR] = {
    "uuid", "kind", "source", "state", "client_addr", "server_addr", "scheme", "method", "host",
    "path", "url", "http_version", "reason", "request_content_type", "response_content_type",
    "error", "replay_session"};
static const char *const int_cols[I_NINT] = {
    "start_us", "request_end_us", "response_start_us", "end_us", "port", "status",
    "request_body_size", "response_body_size", "request_truncated", "response_truncated",
    "response_generated", "request_body_dropped", "response_body_dropped", "messages",
    "replay_of", "client_conn", "stream_id"};

#define ARENA_SIZE (64u * 1024u)

struct big {
    struct big *next;
    max_align_t data[];
};

static void *arena_alloc(void *ctx, size_t n) {
    reel_indexer_t *ix = ctx;
    size_t a = (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    if (a >= n && a <= ARENA_SIZE - ix->arena_used) {
        void *p = ix->arena + ix->arena_used;
        ix->arena_used += a;
        return p;
    }
    struct big *b = malloc(sizeof *b + n);
    if (b == NULL)
        return NULL; /* protobuf-c fails the unpack */
    b->next = ix->bigs;
    ix->bigs = b;
    return b->data;
}

static void arena_free(void *ctx, void *p) {
    (void)ctx;
    (void)p; /* all of it goes at arena_reset */
}

static void arena_reset(reel_indexer_t *ix) {
    ix->arena_used = 0;
    while (ix->bigs) {
        struct big *b = ix->bigs;
        ix->bigs = b->next;
        free(b);
    }
}

/* The upsert of `rows` rows: row r's values are parameters r * ROW_PARAMS
 * + 1 (its id) .. (r + 1) * ROW_PARAMS. */
static char *build_upsert(size_t rows, int unmarked, int insert_only) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, insert_only ? "INSERT OR FAIL INTO flows(id" : "INSERT INTO flows(id");
    for (int k = 0; k < C_NSTR; k++)
        reel_buf_printf(&b, ", %s", str_cols[k]);
    for (int k = 0; k < I_NINT; k++)
        reel_buf_printf(&b, ", %s", int_cols[k]);
    reel_buf_puts(&b, ", marked) VALUES");
    for (size_t r = 0; r < rows; r++) {
        size_t id = r * ROW_PARAMS + 1;
        reel_buf_printf(&b, "%s(?%zu", r ? ", " : "", id);
        for (size_t k = 1; k < ROW_PARAMS; k++)
            reel_buf_printf(&b, ", ?%zu", id + k);
        if (unmarked)
            reel_buf_puts(&b, ", 0)");
        else
            reel_buf_printf(&b, ", EXISTS(SELECT 1 FROM marks WHERE flow_id = ?%zu))", id);
    }
    if (insert_only)
        return (char *)b.data;
    reel_buf_puts(&b, " ON CONFLICT(id) DO UPDATE SET ");
    for (int k = 0; k < C_NSTR; k++)
        reel_buf_printf(&b, "%s%s = excluded.%s", k ? ", " : "", str_cols[k], str_cols[k]);
    for (int k = 0; k < I_NINT; k++)
        reel_buf_printf(&b, ", %s = excluded.%s", int_cols[k], int_cols[k]);
    return (char *)b.data;
}

static char *build_load(void) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, "SELECT id");
    for (int k = 0; k < C_NSTR; k++)
        reel_buf_printf(&b, ", %s", str_cols[k]);
    for (int k = 0; k < I_NINT; k++)
        reel_buf_printf(&b, ", %s", int_cols[k]);
    reel_buf_puts(&b, " FROM flows WHERE id = ?");
    return (char *)b.data;
}

/* link[k], unless it is prepared already. */
static reel_rc prepare_link(reel_indexer_t *ix, size_t k, reel_err_t *err) {
    if (ix->link[k])
        return REEL_OK;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, "INSERT OR IGNORE INTO flow_frames(flow_id, segment, offset) VALUES");
    for (size_t i = 0; i < LINK_ROWS[k]; i++)
        reel_buf_printf(&b, "%s(?%zu, ?1, ?2)", i ? ", " : "", i + 3);
    reel_buf_append(&b, "", 1);
    reel_rc rc = reel_index_prepare(ix->db, (const char *)b.data, &ix->link[k], err);
    reel_buf_free(&b);
    return rc;
}

/* bound[k]'s statement, unless it is prepared already. */
static reel_rc prepare_rows(reel_indexer_t *ix, size_t k, reel_err_t *err) {
    struct bound *b = &ix->bound[k];
    if (b->st)
        return REEL_OK;
    size_t set = k / 3;
    char *sql =
        build_upsert(UPSERT_ROWS[k % 3], set == ROWS_UPSERT_UNMARKED || set == ROWS_INSERT_UNMARKED,
                     set >= ROWS_INSERT);
    reel_rc rc = reel_index_prepare(ix->db, sql, &b->st, err);
    free(sql);
    if (rc == REEL_OK) {
        size_t nparams = UPSERT_ROWS[k % 3] * ROW_PARAMS + 1; /* from 1 */
        b->tag = reel_calloc(nparams, 1);
        b->val = reel_calloc(nparams, sizeof(int64_t));
    }
    return rc;
}

/* The statement of set's k-th size that writes rows (run_batches' get). */
static sqlite3_stmt *row_stmt(reel_indexer_t *ix, size_t set, size_t k, reel_err_t *err) {
    return prepare_rows(ix, set * 3 + k, err) == REEL_OK ? ix->bound[set * 3 + k].st : NULL;
}

/* ... and the one of the k-th size that links flows to a frame. */
static sqlite3_stmt *link_stmt(reel_indexer_t *ix, size_t set, size_t k, reel_err_t *err) {
    (void)set;
    return prepare_link(ix, k, err) == REEL_OK ? ix->link[k] : NULL;
}

reel_rc reel_indexer_new(sqlite3 *db, reel_indexer_t **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_indexer_t *ix = reel_calloc(1, sizeof *ix);
    ix->db = db;
    ix->nbuckets = 1024;
    ix->buckets = reel_calloc(ix->nbuckets, sizeof *ix->buckets);
    ix->arena = reel_malloc(ARENA_SIZE);
    ix->pa = (ProtobufCAllocator){.alloc = arena_alloc, .free = arena_free, .allocator_data = ix};
    ix->known_max = reel_index_max_flow_id(db);
    char *load = build_load();
    for (size_t set = 0; set < 4 && rc == REEL_OK; set++) /* the one-row ones */
        rc = prepare_rows(ix, set * 3 + 2, err);
    if (rc == REEL_OK)
        rc = reel_index_prepare(db, "SELECT EXISTS(SELECT 1 FROM marks)", &ix->any_marks, err);
    if (rc != REEL_OK || (rc = reel_index_prepare(db, load, &ix->load, err)) != REEL_OK ||
        (rc = reel_index_prepare(
             db,
             "INSERT OR REPLACE INTO frames(segment, offset, clen, rlen, nrecords) "
             "VALUES(?, ?, ?, ?, ?)",
             &ix->frame, err)) != REEL_OK ||
        (rc = prepare_link(ix, 3, err)) != REEL_OK ||
        (rc = reel_bodyindex_new(db, reel_bodyindex_configured_max(db), &ix->bx, err)) != REEL_OK)
        goto out;
out:
    free(load);
    if (rc != REEL_OK) {
        reel_indexer_free(ix);
        ix = NULL;
    }
    *out = ix;
    return rc;
}

static void drop_str(frow *r, int col) {
    if (r->heap & (1u << col))
        free(r->s[col]);
    r->heap &= ~(1u << col);
    r->s[col] = NULL;
}

static void set_str(frow *r, int col, const char *v, size_t n) {
    drop_str(r, col);
    if (v == NULL)
        return;
    if (n < sizeof r->pool - r->pool_used) {
        char *d = r->pool + r->pool_used;
        memcpy(d, v, n);
        d[n] = '\0';
        r->pool_used += (uint32_t)n + 1;
        r->s[col] = d;
    } else {
        r->s[col] = reel_strndup(v, n);
        r->heap |= 1u << col;
    }
    /* up to a NUL, as the string was bound before it carried a length
     * (while its bytes are still in the cache) */
    r->len[col] = (uint32_t)strnlen(r->s[col], n);
}

#define SPARE_ROWS 4096

static void frow_free(reel_indexer_t *ix, frow *r) {
    for (int k = 0; k < C_NSTR; k++)
        drop_str(r, k);
    if (ix->nspare < SPARE_ROWS) {
        r->next = ix->spare;
        ix->spare = r;
        ix->nspare++;
    } else {
        free(r);
    }
}

static void map_clear(reel_indexer_t *ix, int only_finished) {
    for (size_t b = 0; b < ix->nbuckets; b++) {
        frow **pp = &ix->buckets[b];
        while (*pp) {
            frow *r = *pp;
            if (!only_finished || r->finished) {
                *pp = r->next;
                frow_free(ix, r);
                ix->count--;
            } else {
                r->has_frame = 0;
                pp = &r->next;
            }
        }
    }
}

void reel_indexer_free(reel_indexer_t *ix) {
    if (ix == NULL)
        return;
    if (ix->in_tx)
        reel_indexer_rollback(ix);
    map_clear(ix, 0);
    while (ix->spare) {
        frow *r = ix->spare;
        ix->spare = r->next;
        free(r);
    }
    free(ix->buckets);
    free(ix->fin);
    arena_reset(ix);
    free(ix->arena);
    for (size_t k = 0; k < 12; k++) {
        sqlite3_finalize(ix->bound[k].st);
        free(ix->bound[k].tag);
        free(ix->bound[k].val);
    }
    sqlite3_finalize(ix->any_marks);
    sqlite3_finalize(ix->load);
    sqlite3_finalize(ix->frame);
    for (size_t k = 0; k < 4; k++)
        sqlite3_finalize(ix->link[k]);
    free(ix->links);
    reel_bodyindex_free(ix->bx);
    sqlite3_finalize(ix->conn_upsert);
    free(ix->conn_flows);
    free(ix);
}

void reel_indexer_pace(reel_indexer_t *ix, int64_t ns) {
    reel_pace_init(&ix->pace, ns);
}

void reel_indexer_bulk(reel_indexer_t *ix) {
    reel_bodyindex_bulk(ix->bx);
    ix->bulk = 1;
}

void reel_indexer_marks_fixed(reel_indexer_t *ix) {
    ix->marks_fixed = 1;
}

reel_rc reel_indexer_begin(reel_indexer_t *ix, reel_err_t *err) {
    reel_rc rc = reel_index_exec(ix->db, "BEGIN IMMEDIATE", err);
    if (rc == REEL_OK)
        ix->in_tx = 1;
    ix->no_marks = 0;
    if (rc == REEL_OK && ix->marks_fixed) {
        ix->no_marks =
            sqlite3_step(ix->any_marks) == SQLITE_ROW && sqlite3_column_int(ix->any_marks, 0) == 0;
        sqlite3_reset(ix->any_marks);
    }
    return rc;
}

void reel_indexer_rollback(reel_indexer_t *ix) {
    sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
    ix->in_tx = 0;
    ix->nfin = 0;
    ix->nconn_flows = 0;
    map_clear(ix, 0); /* rows in memory may hold rolled-back changes */
    if (ix->bx)
        reel_bodyindex_rollback(ix->bx);
}

static size_t bucket_of(const reel_indexer_t *ix, uint64_t id) {
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 32) & (ix->nbuckets - 1);
}

/* Doubles the buckets (a bulk load holds the rows of a thousand frames). */
static void map_grow(reel_indexer_t *ix) {
    size_t old = ix->nbuckets;
    frow **ob = ix->buckets;
    ix->nbuckets = old * 2;
    ix->buckets = reel_calloc(ix->nbuckets, sizeof *ix->buckets);
    for (size_t k = 0; k < old; k++)
        for (frow *r = ob[k], *next; r; r = next) {
            next = r->next;
            size_t b = bucket_of(ix, r->id);
            r->next = ix->buckets[b];
            ix->buckets[b] = r;
        }
    free(ob);
}

static frow *map_get(reel_indexer_t *ix, uint64_t id) {
    size_t b = bucket_of(ix, id);
    for (frow *r = ix->buckets[b]; r; r = r->next)
        if (r->id == id)
            return r;
    frow *r = ix->spare;
    if (r) {
        ix->spare = r->next;
        ix->nspare--;
        memset(r, 0, offsetof(frow, pool)); /* the pool needs no zeros */
    } else {
        r = reel_calloc(1, sizeof *r);
    }
    r->id = id;
    for (int k = 0; k < I_NINT; k++)
        r->i[k] = NUL64;
    r->i[I_REQ_SIZE] = r->i[I_RESP_SIZE] = r->i[I_REQ_TRUNC] = r->i[I_RESP_TRUNC] = 0;
    r->i[I_GENERATED] = r->i[I_REQ_DROPPED] = r->i[I_RESP_DROPPED] = r->i[I_MESSAGES] = 0;
    /* A flow that started in an earlier transaction: continue from its row. */
    if (id <= ix->known_max) {
        sqlite3_bind_int64(ix->load, 1, (sqlite3_int64)id);
        if (sqlite3_step(ix->load) == SQLITE_ROW) {
            r->in_db = 1;
            for (int k = 0; k < C_NSTR; k++) {
                const char *t = (const char *)sqlite3_column_text(ix->load, 1 + k);
                set_str(r, k, t, t ? (size_t)sqlite3_column_bytes(ix->load, 1 + k) : 0);
            }
            for (int k = 0; k < I_NINT; k++)
                r->i[k] = sqlite3_column_type(ix->load, 1 + C_NSTR + k) == SQLITE_NULL
                              ? NUL64
                              : sqlite3_column_int64(ix->load, 1 + C_NSTR + k);
        }
        sqlite3_reset(ix->load);
    }
    if (ix->count >= 2 * ix->nbuckets) {
        map_grow(ix);
        b = bucket_of(ix, id);
    }
    r->next = ix->buckets[b];
    ix->buckets[b] = r;
    ix->count++;
    return r;
}

static void set_cstr(frow *r, int col, const char *v) {
    set_str(r, col, v, v ? strlen(v) : 0);
}

const ProtobufCBinaryData *reel_index_header(Reel__Header **h, size_t n, const char *name) {
    for (size_t k = 0; k < n; k++)
        if (h[k]->name.len == strlen(name) &&
            strncasecmp((const char *)h[k]->name.data, name, h[k]->name.len) == 0)
            return &h[k]->value;
    return NULL;
}

static int is_connect(const ProtobufCBinaryData *method) {
    return method->len == 7 && memcmp(method->data, "CONNECT", 7) == 0;
}

int reel_index_upgrade_is_websocket(const ProtobufCBinaryData *v) {
    if (v == NULL)
        return 0;
    const char *p = (const char *)v->data, *end = p + v->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *e = p;
        while (e < end && *e != ',' && *e != ' ' && *e != '\t' && *e != '/')
            e++;
        if (e - p == 9 && strncasecmp(p, "websocket", 9) == 0)
            return 1;
        while (e < end && *e != ',')
            e++;
        p = e;
    }
    return 0;
}

void reel_index_url(const Reel__RequestHead *h, reel_buf_t *out) {
    if (h->host.len == 0) {
        /* a request refused before reel knew its host (an absolute URL it
         * could not parse, a bad method): the target as the client sent
         * it, not a URL made up around it */
        reel_buf_append(out, h->target.data, h->target.len);
        return;
    }
    const char *scheme = h->scheme && h->scheme[0] ? h->scheme : "http";
    int def = (strcmp(scheme, "https") == 0 && h->port == 443) ||
              (strcmp(scheme, "http") == 0 && h->port == 80) || h->port == 0;
    int v6 = h->host.len && memchr(h->host.data, ':', h->host.len) != NULL;
    /* appends, not printf: once per flow on the index thread */
    reel_buf_puts(out, scheme);
    reel_buf_puts(out, v6 ? "://[" : "://");
    reel_buf_append(out, h->host.data, h->host.len);
    if (v6)
        reel_buf_puts(out, "]");
    if (!def) {
        char port[16], *p = port + sizeof port; /* ":4294967295" at most */
        uint32_t v = h->port;
        do
            *--p = (char)('0' + v % 10);
        while (v /= 10);
        *--p = ':';
        reel_buf_append(out, p, (size_t)(port + sizeof port - p));
    }
    if (h->target.len == 0)
        reel_buf_puts(out, "/");
    else if (!(h->target.len == 1 && h->target.data[0] == '*')) /* OPTIONS *: the origin's */
        reel_buf_append(out, h->target.data, h->target.len);
}

static void set_url(frow *r, const Reel__RequestHead *h) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_index_url(h, &b);
    set_str(r, C_URL, (const char *)b.data, b.len);
    reel_buf_free(&b);
}

/* What FlowEnd and FlowError both say (same field names) into a row. */
/* The request's end is the end record's, 0 included: 0 says the request
 * never ended (an early answer came first; docs/format.md). */
#define APPLY_END_FACTS(r, e)                                                                      \
    do {                                                                                           \
        (r)->i[I_REQ_END] = (e)->request_end_us ? (e)->request_end_us : NUL64;                     \
        if ((e)->response_start_us)                                                                \
            (r)->i[I_RESP_START] = (e)->response_start_us;                                         \
        (r)->i[I_REQ_DROPPED] = (int64_t)(e)->request_body_dropped;                                \
        (r)->i[I_RESP_DROPPED] = (int64_t)(e)->response_body_dropped;                              \
        if ((e)->server_addr && (e)->server_addr[0])                                               \
            set_cstr((r), C_SERVER, (e)->server_addr);                                             \
        (r)->finished = 1;                                                                         \
    } while (0)

static void apply(frow *r, const Reel__Record *rec) {
    r->dirty = 1;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START: {
        const Reel__FlowStart *s = rec->start;
        set_cstr(r, C_UUID, s->uuid);
        set_cstr(r, C_KIND, s->kind == REEL__FLOW_KIND__FLOW_KIND_TUNNEL ? "tunnel" : "http");
        set_cstr(r, C_SOURCE, s->source);
        set_cstr(r, C_STATE, "open");
        set_cstr(r, C_CLIENT, s->client_addr && s->client_addr[0] ? s->client_addr : NULL);
        set_cstr(r, C_SERVER, s->server_addr && s->server_addr[0] ? s->server_addr : NULL);
        r->i[I_START] = rec->time_us;
        if (s->client_conn)
            r->i[I_CLIENT_CONN] = (int64_t)s->client_conn;
        if (s->stream_id)
            r->i[I_STREAM_ID] = (int64_t)s->stream_id;
        if (s->replay_of && s->replay_of->flow_id) { /* reel replay made it */
            r->i[I_REPLAY_OF] = (int64_t)s->replay_of->flow_id;
            set_cstr(r, C_REPLAY_SESSION,
                     s->replay_of->session && s->replay_of->session[0] ? s->replay_of->session
                                                                       : NULL);
        }
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_HEAD: {
        const Reel__RequestHead *h = rec->request_head;
        set_str(r, C_METHOD, (const char *)h->method.data, h->method.len);
        set_cstr(r, C_SCHEME, h->scheme);
        set_str(r, C_HOST, (const char *)h->host.data, h->host.len);
        set_str(r, C_PATH, (const char *)h->target.data, h->target.len);
        set_cstr(r, C_VERSION, h->http_version);
        r->i[I_PORT] = h->port;
        if (h->host.len || h->target.len)
            set_url(r, h); /* one refused before any of it was known has none */
        const ProtobufCBinaryData *ct = reel_index_header(h->headers, h->n_headers, "content-type");
        set_str(r, C_REQ_CT, ct ? (const char *)ct->data : NULL, ct ? ct->len : 0);
        const ProtobufCBinaryData *proto = reel_index_header(h->headers, h->n_headers, ":protocol");
        r->ws_connect = is_connect(&h->method) && proto && proto->len == 9 &&
                        strncasecmp((const char *)proto->data, "websocket", 9) == 0;
        r->ws_upgrade =
            !is_connect(&h->method) &&
            reel_index_upgrade_is_websocket(reel_index_header(h->headers, h->n_headers, "upgrade"));
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_BODY:
        r->i[I_REQ_SIZE] += (int64_t)rec->request_body->data.len;
        break;
    case REEL__RECORD__EVENT_RESPONSE_HEAD: {
        const Reel__ResponseHead *h = rec->response_head;
        r->i[I_STATUS] = h->status;
        r->i[I_GENERATED] = h->generated;
        set_str(r, C_REASON, (const char *)h->reason.data, h->reason.len);
        if (r->i[I_RESP_START] == NUL64)
            r->i[I_RESP_START] = rec->time_us;
        /* the request's end is the end record's alone: a response head
         * can come before it (an early answer while the upload goes on) */
        const ProtobufCBinaryData *ct = reel_index_header(h->headers, h->n_headers, "content-type");
        set_str(r, C_RESP_CT, ct ? (const char *)ct->data : NULL, ct ? ct->len : 0);
        /* a flow whose upgrade to WebSocket succeeded is a WebSocket flow
         * from its 101 (an HTTP/2 extended CONNECT's 2xx, also one reel
         * made of an HTTP/1.1 client's handshake), whether or not a
         * message follows */
        int ok2xx = h->status >= 200 && h->status < 300;
        if (r->s[C_KIND] && strcmp(r->s[C_KIND], "http") == 0 &&
            ((h->status == 101 && reel_index_upgrade_is_websocket(
                                      reel_index_header(h->headers, h->n_headers, "upgrade"))) ||
             (r->ws_connect && ok2xx) ||
             (r->ws_upgrade && ok2xx && h->http_version &&
              strcmp(h->http_version, "HTTP/2.0") == 0)))
            set_cstr(r, C_KIND, "websocket");
        break;
    }
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        r->i[I_RESP_SIZE] += (int64_t)rec->response_body->data.len;
        break;
    case REEL__RECORD__EVENT_MESSAGE: {
        const Reel__Message *m = rec->message;
        if (m->continued)
            break;
        r->i[I_MESSAGES]++;
        r->i[m->from_client ? I_REQ_SIZE : I_RESP_SIZE] += (int64_t)m->length;
        if (m->opcode != 0 && r->s[C_KIND] && strcmp(r->s[C_KIND], "http") == 0)
            set_cstr(r, C_KIND, "websocket");
        break;
    }
    case REEL__RECORD__EVENT_SERVER_CONN: {
        const Reel__ServerConn *sc = rec->server_conn;
        if (sc->address && sc->address[0])
            set_cstr(r, C_SERVER, sc->address);
        break;
    }
    case REEL__RECORD__EVENT_END: {
        const Reel__FlowEnd *e = rec->end;
        set_cstr(r, C_STATE, "complete");
        r->i[I_END] = rec->time_us;
        r->i[I_REQ_SIZE] = (int64_t)e->request_body_size;
        r->i[I_RESP_SIZE] = (int64_t)e->response_body_size;
        r->i[I_REQ_TRUNC] = e->request_truncated;
        r->i[I_RESP_TRUNC] = e->response_truncated;
        APPLY_END_FACTS(r, e);
        break;
    }
    case REEL__RECORD__EVENT_GAP: {
        /* records lost to a disk outage, the flow still running: damaged
         * from here on (its damage written with this frame), its error
         * until its end says more */
        const Reel__CaptureGap *g = rec->gap;
        if (r->s[C_ERROR] == NULL || r->s[C_ERROR][0] == '\0')
            set_cstr(r, C_ERROR, g->message);
        r->lost[0] = g->records_lost ? g->records_lost : 1;
        r->lost[1] = g->request_body_lost;
        r->lost[2] = g->response_body_lost;
        r->lost_at[0] = r->i[I_REQ_SIZE];
        r->lost_at[1] = r->i[I_RESP_SIZE];
        r->lost_us = rec->time_us;
        break;
    }
    case REEL__RECORD__EVENT_ERROR: {
        const Reel__FlowError *e = rec->error;
        /* interrupted: recovery's end of a flow its run left open */
        set_cstr(r, C_STATE, e->interrupted ? "interrupted" : "error");
        set_cstr(r, C_ERROR, e->message);
        r->i[I_END] = rec->time_us;
        if (e->records_lost) { /* the recorder could not write them */
            r->lost[0] = e->records_lost;
            r->lost[1] = e->request_body_lost;
            r->lost[2] = e->response_body_lost;
            r->lost_at[0] = r->i[I_REQ_SIZE];
            r->lost_at[1] = r->i[I_RESP_SIZE];
            r->lost_us = rec->time_us;
        }
        if (e->request_body_size)
            r->i[I_REQ_SIZE] = (int64_t)e->request_body_size;
        if (e->response_body_size)
            r->i[I_RESP_SIZE] = (int64_t)e->response_body_size;
        r->i[I_REQ_TRUNC] = e->request_truncated;
        r->i[I_RESP_TRUNC] = e->response_truncated;
        APPLY_END_FACTS(r, e);
        break;
    }
    default:
        break;
    }
    /* A row must satisfy NOT NULL columns even if its start record was lost
     * (a corrupt frame skipped by repair). */
    if (r->s[C_UUID] == NULL)
        set_cstr(r, C_UUID, "");
    if (r->s[C_KIND] == NULL)
        set_cstr(r, C_KIND, "http");
    if (r->s[C_STATE] == NULL)
        set_cstr(r, C_STATE, "open");
    if (r->i[I_START] == NUL64)
        r->i[I_START] = rec->time_us;
}

static reel_rc write_rows(reel_indexer_t *ix, frow **rows, size_t n, reel_err_t *err);

/* Queues a row that a record finished, or one that lost records (its
 * damage is written with it), to be written after its frame. */
static void queue_finished(reel_indexer_t *ix, frow *row) {
    if ((!row->finished && !row->lost[0]) || row->queued)
        return;
    if (ix->nfin == ix->capfin) {
        ix->capfin = ix->capfin ? ix->capfin * 2 : 64;
        ix->fin = reel_realloc(ix->fin, ix->capfin * sizeof *ix->fin);
    }
    row->queued = 1;
    ix->fin[ix->nfin++] = row;
}

/* Forgets the queue (a frame that failed): the rows stay dirty, so the
 * commit still writes them if the transaction goes on. */
static void unqueue_finished(reel_indexer_t *ix) {
    for (size_t k = 0; k < ix->nfin; k++)
        ix->fin[k]->queued = 0;
    ix->nfin = 0;
}

/* A flow whose FlowError or CaptureGap says records were lost (row
 * written): damaged, with a flow_damage row for what was lost and one per
 * body hole, in place of those an earlier CaptureGap of the flow wrote
 * (its error record then says what was lost in all). Rare. */
static reel_rc write_lost(reel_indexer_t *ix, frow *r, reel_err_t *err) {
    static const char why[] = "capture was stopped by a disk error while the flow ran";
    static const char *const dirs[3] = {"request", "response", "flow"};
    sqlite3_stmt *ins = NULL, *upd = NULL, *del = NULL;
    reel_rc rc = REEL_OK;
    if (sqlite3_prepare_v2(ix->db,
                           "DELETE FROM flow_damage WHERE flow_id = ?1 AND (reason = ?2 OR "
                           "(direction = 'flow' AND reason LIKE '% of its records were not "
                           "recorded: ' || ?2))",
                           -1, &del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ix->db,
                           "INSERT INTO flow_damage(flow_id, direction, offset, length, reason, "
                           "found_us) VALUES(?, ?, ?, ?, ?, ?)",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ix->db, "UPDATE flows SET damaged = 1 WHERE id = ?", -1, &upd, NULL) !=
            SQLITE_OK) {
        rc = reel_index_db_error(err, REEL_DB, ix->db);
        goto out;
    }
    sqlite3_bind_int64(del, 1, (sqlite3_int64)r->id);
    sqlite3_bind_text(del, 2, why, -1, SQLITE_STATIC);
    if (sqlite3_step(del) != SQLITE_DONE)
        rc = reel_index_db_error(err, REEL_DB, ix->db);
    for (int d = 0; d < 3 && rc == REEL_OK; d++) {
        char text[160];
        if (d < 2 && r->lost[1 + d] == 0)
            continue;
        if (d == 2)
            snprintf(text, sizeof text, "%llu of its records were not recorded: %s",
                     (unsigned long long)r->lost[0], why);
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)r->id);
        sqlite3_bind_text(ins, 2, dirs[d], -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, d < 2 && r->lost_at[d] > 0 ? r->lost_at[d] : 0);
        sqlite3_bind_int64(ins, 4, d < 2 ? (sqlite3_int64)r->lost[1 + d] : -1);
        sqlite3_bind_text(ins, 5, d < 2 ? why : text, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 6, r->lost_us);
        if (sqlite3_step(ins) != SQLITE_DONE)
            rc = reel_index_db_error(err, REEL_DB, ix->db);
        sqlite3_reset(ins);
    }
    sqlite3_bind_int64(upd, 1, (sqlite3_int64)r->id);
    if (rc == REEL_OK && sqlite3_step(upd) != SQLITE_DONE)
        rc = reel_index_db_error(err, REEL_DB, ix->db);
out:
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    memset(r->lost, 0, sizeof r->lost);
    return rc;
}

/* Writes the rows the last frame finished. */
static reel_rc write_finished(reel_indexer_t *ix, reel_err_t *err) {
    size_t n = 0;
    for (size_t k = 0; k < ix->nfin; k++) {
        frow *row = ix->fin[k];
        row->queued = 0;
        if (row->dirty)
            ix->fin[n++] = row; /* in place: n <= k */
    }
    ix->nfin = 0;
    reel_rc rc = write_rows(ix, ix->fin, n, err);
    for (size_t k = 0; k < n && rc == REEL_OK; k++)
        if (ix->fin[k]->lost[0])
            rc = write_lost(ix, ix->fin[k], err);
    return rc;
}

/* Notes that flow fid has records in the frame being read. */
static void link_frame(reel_indexer_t *ix, frow *row, uint64_t fid, uint32_t segment,
                       uint64_t off) {
    if (row->has_frame && row->last_seg == segment && row->last_off == off)
        return;
    row->has_frame = 1;
    row->last_seg = segment;
    row->last_off = off;
    if (ix->nlinks == ix->caplinks) {
        ix->caplinks = ix->caplinks ? 2 * ix->caplinks : 256;
        ix->links = reel_realloc(ix->links, ix->caplinks * sizeof *ix->links);
    }
    ix->links[ix->nlinks++] = fid;
}

/* Binds items [first, first + count) of a batch to st. */
typedef void (*bind_batch_fn)(sqlite3_stmt *st, size_t first, size_t count, void *ctx);

/* Runs n items through the statements of set that get gives (row_stmt,
 * link_stmt: prepared when first used), the k-th of rows[k] rows each
 * (rows descending, the last 1): as many of the largest as fit, then
 * smaller. Returns REEL_OK, or REEL_DB with *at the first item of the
 * batch that failed (err set if its statement could not be prepared). */
static reel_rc run_batches(reel_indexer_t *ix,
                           sqlite3_stmt *(*get)(reel_indexer_t *, size_t, size_t, reel_err_t *),
                           size_t set, const size_t *rows, size_t nstmts, size_t n,
                           bind_batch_fn bind, void *ctx, size_t *at, reel_err_t *err) {
    size_t done = 0;
    for (size_t k = 0; k < nstmts; k++) {
        if (n - done < rows[k])
            continue;
        sqlite3_stmt *st = get(ix, set, k, err);
        if (st == NULL) {
            *at = done;
            return REEL_DB;
        }
        while (n - done >= rows[k]) {
            bind(st, done, rows[k], ctx);
            int s = sqlite3_step(st);
            sqlite3_reset(st);
            if (s != SQLITE_DONE) {
                *at = done;
                return REEL_DB;
            }
            done += rows[k];
            reel_pace(&ix->pace);
        }
    }
    return REEL_OK;
}

typedef struct {
    const reel_indexer_t *ix;
    uint32_t segment;
    uint64_t off;
} links_ctx;

static void bind_links(sqlite3_stmt *st, size_t first, size_t count, void *ctx) {
    const links_ctx *c = ctx;
    sqlite3_bind_int64(st, 1, c->segment);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)c->off);
    for (size_t i = 0; i < count; i++)
        sqlite3_bind_int64(st, (int)i + 3, (sqlite3_int64)c->ix->links[first + i]);
}

/* Writes the links noted for the frame at (segment, off). */
static reel_rc write_links(reel_indexer_t *ix, uint32_t segment, uint64_t off, reel_err_t *err) {
    links_ctx c = {ix, segment, off};
    size_t at = 0;
    reel_rc rc = run_batches(ix, link_stmt, 0, LINK_ROWS, 4, ix->nlinks, bind_links, &c, &at, err);
    ix->nlinks = 0;
    if (rc != REEL_OK)
        return reel_index_db_error(err, REEL_DB, ix->db);
    return REEL_OK;
}

/* Recognizes a Record whose event is request_body (12) or response_body
 * (14) without unpacking it, and returns its flow id and data length.
 * Returns 0 for anything else or anything unusual, which then takes the
 * full unpack path. */
static int peek_body(const uint8_t *p, const reel_spool_peek_t *pk, uint64_t *fid, int *response,
                     uint64_t *blen, const uint8_t **data) {
    if (pk == NULL || (pk->event != 12 && pk->event != 14))
        return 0;
    /* BodyChunk: exactly one field, data = 1 (bytes), or empty. */
    size_t q = pk->ev_off, end = pk->ev_off + pk->ev_len;
    uint64_t k2, dl;
    if (q == end) {
        *blen = 0;
        *data = p + q;
    } else if (!reel_spool_read_varint(p, end, &q, &k2) || k2 != ((1 << 3) | 2) ||
               !reel_spool_read_varint(p, end, &q, &dl) || dl != end - q) {
        return 0;
    } else {
        *blen = dl;
        *data = p + q;
    }
    *response = pk->event == 14;
    *fid = pk->flow_id;
    return 1;
}

/* A request or response head as apply() reads it, read in place. */
typedef struct {
    Reel__Record rec;
    Reel__RequestHead rq;
    Reel__ResponseHead rs;
    Reel__Header ct; /* the first content-type header, as reel_index_header finds it */
    Reel__Header up; /* a 101's first upgrade field, a CONNECT's first :protocol */
    Reel__Header *hdrs[2];
} head_t;

/* Copies a string field into the arena with its NUL, as unpacking does. */
static char *arena_str(reel_indexer_t *ix, const reel_pbwire_field_t *f) {
    char *s = arena_alloc(ix, f->val_len + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, f->val, f->val_len);
    s[f->val_len] = '\0';
    return s;
}

/* Reads a Record whose event is a request or response head into *h without
 * unpacking it: the fields apply() uses, the last occurrence of each as
 * protobuf-c keeps it, and of the headers only the first content-type and
 * the Upgrade or :protocol (the ones apply() looks up). Unpacking a head allocated and initialised
 * every header: a third of the indexer's unpacking per small flow. Only with the body index off
 * (on, it reads every header). Returns 0 for any other record, or one that unpacking would refuse
 * (the caller then unpacks it, and fails as before; not checked when trusted: the recorder's own
 * frames, reel_indexer_add_own_frame); call arena_reset first. */
static int head_in_place(reel_indexer_t *ix, const uint8_t *p, size_t len,
                         const reel_spool_peek_t *peek, head_t *h, int trusted) {
    if (peek == NULL ||
        (peek->event != REEL__RECORD__EVENT_REQUEST_HEAD &&
         peek->event != REEL__RECORD__EVENT_RESPONSE_HEAD) ||
        (!trusted && !reel_pbwire_check(&reel__record__descriptor, p, len)))
        return 0;
    const reel_spool_peek_t pk = *peek;
    h->rec = (Reel__Record)REEL__RECORD__INIT;
    h->rec.flow_id = pk.flow_id;
    size_t pos = 0;
    reel_pbwire_field_t f, g;
    while (reel_pbwire_next(p, len, &pos, &f))
        if (f.tag == 2) /* time_us: a varint (checked) */
            h->rec.time_us = (int64_t)reel_pbwire_u64(&f);
    int req = pk.event == REEL__RECORD__EVENT_REQUEST_HEAD;
    uint32_t hdr_tag = req ? 7 : 4;
    h->rq = (Reel__RequestHead)REEL__REQUEST_HEAD__INIT;
    h->rs = (Reel__ResponseHead)REEL__RESPONSE_HEAD__INIT;
    h->ct = (Reel__Header)REEL__HEADER__INIT;
    h->up = (Reel__Header)REEL__HEADER__INIT;
    int have_ct = 0, have_up = 0;
    pos = 0;
    while (reel_pbwire_next(p + pk.ev_off, pk.ev_len, &pos, &f)) {
        if (f.tag == hdr_tag) {
            /* the method and status come first (lower field numbers): most
             * heads need no more than their content-type; a CONNECT its
             * :protocol, a GET its Upgrade (a WebSocket handshake, which
             * an HTTP/2 origin's 2xx answers: apply), a 101 its Upgrade */
            int any = h->rq.method.len == 0, connect = is_connect(&h->rq.method),
                get = h->rq.method.len == 3 && memcmp(h->rq.method.data, "GET", 3) == 0;
            int want_up = !have_up &&
                          (req ? any || connect || get : h->rs.status == 0 || h->rs.status == 101);
            if (have_ct && !want_up)
                continue;
            ProtobufCBinaryData name = {0}, value = {0};
            size_t p2 = 0;
            while (reel_pbwire_next(f.val, f.val_len, &p2, &g)) {
                if (g.tag == 1)
                    name = (ProtobufCBinaryData){g.val_len, (uint8_t *)g.val};
                else if (g.tag == 2)
                    value = (ProtobufCBinaryData){g.val_len, (uint8_t *)g.val};
            }
            if (!have_ct && name.len == 12 &&
                strncasecmp((const char *)name.data, "content-type", 12) == 0) {
                h->ct.name = name;
                h->ct.value = value;
                have_ct = 1;
                continue;
            }
            int is_protocol = name.len == 9 && memcmp(name.data, ":protocol", 9) == 0;
            int is_upgrade =
                name.len == 7 && strncasecmp((const char *)name.data, "upgrade", 7) == 0;
            if (want_up && (req ? ((any || connect) && is_protocol) || ((any || get) && is_upgrade)
                                : is_upgrade)) {
                h->up.name = name;
                h->up.value = value;
                have_up = 1;
            }
            continue;
        }
        ProtobufCBinaryData b = {f.val_len, (uint8_t *)f.val};
        char *s = NULL;
        if (((req && (f.tag == 2 || f.tag == 6)) || (!req && f.tag == 3)) &&
            (s = arena_str(ix, &f)) == NULL)
            return 0;
        if (req) {
            switch (f.tag) {
            case 1: h->rq.method = b; break;
            case 2: h->rq.scheme = s; break;
            case 3: h->rq.host = b; break;
            case 4: h->rq.port = (uint32_t)reel_pbwire_u64(&f); break;
            case 5: h->rq.target = b; break;
            case 6: h->rq.http_version = s; break;
            case 8: h->rq.body_decoded = reel_pbwire_bool(&f); break;
            default: break;
            }
        } else {
            switch (f.tag) {
            case 1: h->rs.status = (uint32_t)reel_pbwire_u64(&f); break;
            case 2: h->rs.reason = b; break;
            case 3: h->rs.http_version = s; break;
            case 5: h->rs.body_decoded = reel_pbwire_bool(&f); break;
            case 6: h->rs.generated = reel_pbwire_bool(&f); break;
            default: break;
            }
        }
    }
    size_t nh = 0;
    if (have_ct)
        h->hdrs[nh++] = &h->ct;
    if (have_up)
        h->hdrs[nh++] = &h->up;
    if (req) {
        h->rq.headers = nh ? h->hdrs : NULL;
        h->rq.n_headers = nh;
        h->rec.event_case = REEL__RECORD__EVENT_REQUEST_HEAD;
        h->rec.request_head = &h->rq;
    } else {
        h->rs.headers = nh ? h->hdrs : NULL;
        h->rs.n_headers = nh;
        h->rec.event_case = REEL__RECORD__EVENT_RESPONSE_HEAD;
        h->rec.response_head = &h->rs;
    }
    return 1;
}

/* A start, end or server-connection record as apply() reads it, read in
 * place. */
typedef struct {
    Reel__Record rec;
    Reel__FlowStart st;
    Reel__ReplayOf ro;
    Reel__FlowEnd en;
    Reel__ServerConn sc;
} small_t;

/* Reads a Record whose event is a flow's start, end or server connection
 * into *h without unpacking it, as head_in_place does for heads: the
 * fields apply() uses (the last occurrence of each), strings copied into
 * the arena, absent ones "" as unpacking leaves them. Unpacking these three
 * was an eighth of the indexer's instructions per small flow. Returns 0
 * for any other record, one that unpacking would refuse (not checked when
 * trusted, as for heads), or one with a nested message given twice
 * (protobuf-c merges those): the caller then unpacks it. Call arena_reset
 * first. */
static int small_in_place(reel_indexer_t *ix, const uint8_t *p, size_t len,
                          const reel_spool_peek_t *peek, small_t *h, int trusted) {
    if (peek == NULL ||
        (peek->event != REEL__RECORD__EVENT_START && peek->event != REEL__RECORD__EVENT_END &&
         peek->event != REEL__RECORD__EVENT_SERVER_CONN) ||
        (!trusted && !reel_pbwire_check(&reel__record__descriptor, p, len)))
        return 0;
    const reel_spool_peek_t pk = *peek;
    h->rec = (Reel__Record)REEL__RECORD__INIT;
    h->rec.flow_id = pk.flow_id;
    size_t pos = 0;
    reel_pbwire_field_t f, g;
    while (reel_pbwire_next(p, len, &pos, &f))
        if (f.tag == 2) /* time_us: a varint (checked) */
            h->rec.time_us = (int64_t)reel_pbwire_u64(&f);
    const uint8_t *ev = p + pk.ev_off;
    int nested = 0;
    pos = 0;
    switch (pk.event) {
    case REEL__RECORD__EVENT_START:
        h->st = (Reel__FlowStart)REEL__FLOW_START__INIT;
        while (reel_pbwire_next(ev, pk.ev_len, &pos, &f)) {
            char *str = NULL;
            if ((f.tag == 1 || (f.tag >= 3 && f.tag <= 5)) && (str = arena_str(ix, &f)) == NULL)
                return 0;
            switch (f.tag) {
            case 1:
                h->st.uuid = str;
                break;
            case 2:
                h->st.kind = (Reel__FlowKind)(int32_t)(uint32_t)reel_pbwire_u64(&f);
                break;
            case 3:
                h->st.client_addr = str;
                break;
            case 4:
                h->st.server_addr = str;
                break;
            case 5:
                h->st.source = str;
                break;
            case 6: {
                if (nested++)
                    return 0;
                h->ro = (Reel__ReplayOf)REEL__REPLAY_OF__INIT;
                size_t p2 = 0;
                while (reel_pbwire_next(f.val, f.val_len, &p2, &g)) {
                    char *t = NULL;
                    if ((g.tag == 2 || g.tag == 3) && (t = arena_str(ix, &g)) == NULL)
                        return 0;
                    if (g.tag == 1)
                        h->ro.flow_id = reel_pbwire_u64(&g);
                    else if (g.tag == 2)
                        h->ro.session = t;
                    else if (g.tag == 3)
                        h->ro.uuid = t;
                }
                h->st.replay_of = &h->ro;
                break;
            }
            case 7:
                h->st.client_conn = reel_pbwire_u64(&f);
                break;
            case 8:
                h->st.stream_id = (uint32_t)reel_pbwire_u64(&f);
                break;
            default:
                break;
            }
        }
        h->rec.event_case = REEL__RECORD__EVENT_START;
        h->rec.start = &h->st;
        return 1;
    case REEL__RECORD__EVENT_END:
        h->en = (Reel__FlowEnd)REEL__FLOW_END__INIT;
        while (reel_pbwire_next(ev, pk.ev_len, &pos, &f)) {
            switch (f.tag) {
            case 1:
                h->en.request_body_size = reel_pbwire_u64(&f);
                break;
            case 2:
                h->en.response_body_size = reel_pbwire_u64(&f);
                break;
            case 3:
                h->en.request_truncated = reel_pbwire_bool(&f);
                break;
            case 4:
                h->en.response_truncated = reel_pbwire_bool(&f);
                break;
            case 5: /* timings: apply() does not read them */
                if (nested++)
                    return 0;
                break;
            case 6:
                h->en.request_end_us = (int64_t)reel_pbwire_u64(&f);
                break;
            case 7:
                h->en.response_start_us = (int64_t)reel_pbwire_u64(&f);
                break;
            case 8:
                h->en.request_body_dropped = reel_pbwire_u64(&f);
                break;
            case 9:
                h->en.response_body_dropped = reel_pbwire_u64(&f);
                break;
            case 10:
                if ((h->en.server_addr = arena_str(ix, &f)) == NULL)
                    return 0;
                break;
            case 11:
                h->en.messages_dropped = reel_pbwire_u64(&f);
                break;
            default:
                break;
            }
        }
        h->rec.event_case = REEL__RECORD__EVENT_END;
        h->rec.end = &h->en;
        return 1;
    default:
        h->sc = (Reel__ServerConn)REEL__SERVER_CONN__INIT;
        while (reel_pbwire_next(ev, pk.ev_len, &pos, &f)) {
            if (f.tag == 1)
                h->sc.conn_id = reel_pbwire_u64(&f);
            else if (f.tag == 2 && (h->sc.address = arena_str(ix, &f)) == NULL)
                return 0;
        }
        h->rec.event_case = REEL__RECORD__EVENT_SERVER_CONN;
        h->rec.server_conn = &h->sc;
        return 1;
    }
}

static reel_rc add_frame(reel_indexer_t *ix, uint32_t segment, uint64_t off, size_t clen,
                         const uint8_t *raw, size_t rlen, int trusted, reel_err_t *err);

int reel_indexer_vet_frame(const uint8_t *raw, size_t rlen, char reason[static 200]) {
    size_t pos = 0, len = 0, k = 0;
    const uint8_t *rec = NULL;
    reel_rc rc;
    for (; (rc = reel_spool_block_next(raw, rlen, &pos, &rec, &len)) == REEL_OK; k++) {
        if (!reel_pbwire_check(&reel__record__descriptor, rec, len)) {
            snprintf(reason, 200, "record %zu does not unpack as a Record (the checksum held)", k);
            return -1;
        }
    }
    if (rc != REEL_NOTFOUND) {
        snprintf(reason, 200, "bad record length inside the block");
        return -1;
    }
    return 0;
}

reel_rc reel_indexer_add_frame(reel_indexer_t *ix, uint32_t segment, uint64_t off, size_t clen,
                               const uint8_t *raw, size_t rlen, reel_err_t *err) {
    return add_frame(ix, segment, off, clen, raw, rlen, 0, err);
}

reel_rc reel_indexer_add_own_frame(reel_indexer_t *ix, uint32_t segment, uint64_t off, size_t clen,
                                   const uint8_t *raw, size_t rlen, reel_err_t *err) {
    return add_frame(ix, segment, off, clen, raw, rlen, 1, err);
}

static reel_rc add_frame(reel_indexer_t *ix, uint32_t segment, uint64_t off, size_t clen,
                         const uint8_t *raw, size_t rlen, int trusted, reel_err_t *err) {
    size_t pos = 0, len = 0, n = 0;
    const uint8_t *rec = NULL;
    reel_rc rc;
    ix->nlinks = 0; /* left by a frame that failed */
    while ((rc = reel_spool_block_next(raw, rlen, &pos, &rec, &len)) == REEL_OK) {
        if ((n & 31) == 31)
            reel_pace(&ix->pace);
        uint64_t fid = 0;
        int response = 0;
        uint64_t blen = 0;
        const uint8_t *bdata = NULL;
        /* the record's flow and event, read once for both fast paths */
        reel_spool_peek_t pk;
        const reel_spool_peek_t *peek = reel_spool_peek_record(rec, len, &pk) ? &pk : NULL;
        if (peek_body(rec, peek, &fid, &response, &blen, &bdata)) {
            /* Body chunks are most of the bytes: count them without
             * unpacking (and copying) the data. */
            n++;
            if (fid == 0)
                continue;
            reel_bodyindex_chunk(ix->bx, fid, response, bdata, (size_t)blen);
            frow *row = map_get(ix, fid);
            row->dirty = 1;
            row->i[response ? I_RESP_SIZE : I_REQ_SIZE] += (int64_t)blen;
            if (row->s[C_UUID] == NULL)
                set_cstr(row, C_UUID, "");
            if (row->s[C_KIND] == NULL)
                set_cstr(row, C_KIND, "http");
            if (row->s[C_STATE] == NULL)
                set_cstr(row, C_STATE, "open");
            if (row->i[I_START] == NUL64)
                row->i[I_START] = 0;
            link_frame(ix, row, fid, segment, off);
            continue;
        }
        arena_reset(ix);
        head_t head;
        small_t small;
        int in_place = !reel_bodyindex_on(ix->bx);
        Reel__Record *r = in_place && head_in_place(ix, rec, len, peek, &head, trusted) ? &head.rec
                          : in_place && small_in_place(ix, rec, len, peek, &small, trusted)
                              ? &small.rec
                              : reel__record__unpack(&ix->pa, len, rec);
        if (r == NULL) {
            unqueue_finished(ix);
            /* the records before it are indexed (the caller goes on) */
            if (write_links(ix, segment, off, err) != REEL_OK)
                return REEL_DB;
            return reel_err_set(err, REEL_CORRUPT,
                                "segment %u frame at %llu: record %zu is not a valid Record",
                                segment, (unsigned long long)off, n);
        }
        n++;
        if (r->flow_id != 0) {
            frow *row = map_get(ix, r->flow_id);
            apply(row, r);
            queue_finished(ix, row);
            if (reel_bodyindex_record(ix->bx, r, err) != REEL_OK) {
                unqueue_finished(ix);
                return REEL_DB;
            }
            link_frame(ix, row, r->flow_id, segment, off);
        }
    }
    if (rc != REEL_NOTFOUND) {
        unqueue_finished(ix);
        if (write_links(ix, segment, off, err) != REEL_OK)
            return REEL_DB;
        return reel_err_set(err, REEL_CORRUPT, "segment %u frame at %llu: bad record framing",
                            segment, (unsigned long long)off);
    }
    if (write_links(ix, segment, off, err) != REEL_OK) {
        unqueue_finished(ix);
        return REEL_DB;
    }
    if (write_finished(ix, err) != REEL_OK)
        return REEL_DB;
    sqlite3_bind_int64(ix->frame, 1, segment);
    sqlite3_bind_int64(ix->frame, 2, (sqlite3_int64)off);
    sqlite3_bind_int64(ix->frame, 3, (sqlite3_int64)clen);
    sqlite3_bind_int64(ix->frame, 4, (sqlite3_int64)rlen);
    sqlite3_bind_int64(ix->frame, 5, (sqlite3_int64)n);
    int s = sqlite3_step(ix->frame);
    sqlite3_reset(ix->frame);
    if (s != SQLITE_DONE)
        return reel_index_db_error(err, REEL_DB, ix->db);
    return REEL_OK;
}

enum { B_UNSET, B_NULL, B_INT, B_TEXT };

static void bind_null_once(struct bound *b, int p) {
    if (b->tag[p] != B_NULL) {
        sqlite3_bind_null(b->st, p);
        b->tag[p] = B_NULL;
    }
}

/* Binds row r's values to b's statement from parameter base + 1 on. Texts
 * are bound every time: they point into the row (SQLITE_STATIC). */
static void bind_row(struct bound *b, int base, const frow *r) {
    sqlite3_bind_int64(b->st, base + 1, (sqlite3_int64)r->id);
    for (int k = 0; k < C_NSTR; k++) {
        int p = base + 2 + k;
        if (r->s[k] == NULL) {
            bind_null_once(b, p);
        } else {
            sqlite3_bind_text(b->st, p, r->s[k], (int)r->len[k], SQLITE_STATIC);
            b->tag[p] = B_TEXT;
        }
    }
    for (int k = 0; k < I_NINT; k++) {
        int p = base + 2 + C_NSTR + k;
        if (r->i[k] == NUL64) {
            bind_null_once(b, p);
        } else if (b->tag[p] != B_INT || b->val[p] != r->i[k]) {
            sqlite3_bind_int64(b->st, p, r->i[k]);
            b->tag[p] = B_INT;
            b->val[p] = r->i[k];
        }
    }
}

typedef struct {
    reel_indexer_t *ix;
    frow **rows;
} rows_ctx;

static void bind_rows(sqlite3_stmt *st, size_t first, size_t count, void *ctx) {
    const rows_ctx *c = ctx;
    struct bound *b = c->ix->bound;
    while (b->st != st) /* one of the twelve */
        b++;
    for (size_t i = 0; i < count; i++)
        bind_row(b, (int)(i * ROW_PARAMS), c->rows[first + i]);
}

/* Writes rows[0..n) (reordered: the new ones first), in statements of up
 * to 16 rows: plain inserts for rows the table does not have, upserts for
 * the others. */
static reel_rc write_rows(reel_indexer_t *ix, frow **rows, size_t n, reel_err_t *err) {
    if (n == 0) /* rows may then be NULL, and NULL + 0 is undefined in C */
        return REEL_OK;
    size_t nnew = 0;
    for (size_t i = 0; i < n; i++)
        if (!rows[i]->in_db) {
            frow *t = rows[nnew];
            rows[nnew++] = rows[i];
            rows[i] = t;
        }
    size_t ins_set = ix->no_marks ? ROWS_INSERT_UNMARKED : ROWS_INSERT;
    size_t ups_set = ix->no_marks ? ROWS_UPSERT_UNMARKED : ROWS_UPSERT;
    size_t at = 0;
    rows_ctx c = {ix, rows};
    reel_rc rc = run_batches(ix, row_stmt, ins_set, UPSERT_ROWS, 3, nnew, bind_rows, &c, &at, err);
    if (rc != REEL_OK && sqlite3_extended_errcode(ix->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
        /* A row we did not know of (another writer?): the rows from that
         * statement on go by upsert, which writes the same values again
         * over the ones the statement had inserted before it failed. */
        size_t from = at;
        c.rows = rows + from;
        rc = run_batches(ix, row_stmt, ups_set, UPSERT_ROWS, 3, nnew - from, bind_rows, &c, &at,
                         err);
        at += from;
    }
    if (rc == REEL_OK) {
        c.rows = rows + nnew;
        rc = run_batches(ix, row_stmt, ups_set, UPSERT_ROWS, 3, n - nnew, bind_rows, &c, &at, err);
        at += nnew;
    }
    if (rc != REEL_OK)
        return reel_err_set(err, REEL_DB, "session.db: writing flows %llu..: %s",
                            (unsigned long long)rows[at]->id, sqlite3_errmsg(ix->db));
    for (size_t i = 0; i < n; i++) {
        rows[i]->dirty = 0;
        rows[i]->in_db = 1;
        if (rows[i]->id > ix->known_max)
            ix->known_max = rows[i]->id;
        /* (a new row's: one written before was noted then) */
        if (i < nnew && rows[i]->i[I_CLIENT_CONN] != NUL64 && !ix->bulk) {
            if (ix->nconn_flows == ix->capconn_flows)
                ix->conn_flows =
                    reel_realloc(ix->conn_flows, (ix->capconn_flows = ix->capconn_flows * 2 + 64) *
                                                     sizeof *ix->conn_flows);
            ix->conn_flows[ix->nconn_flows++] =
                (struct conn_flow){rows[i]->i[I_CLIENT_CONN], (int64_t)rows[i]->id};
        }
    }
    return REEL_OK;
}

static int conn_flow_cmp(const void *a, const void *b) {
    const struct conn_flow *x = a, *y = b;
    if (x->conn != y->conn)
        return x->conn < y->conn ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Widens client_conns' range of each connection the rows written since
 * the last commit came on: one upsert per connection. */
static reel_rc write_conns(reel_indexer_t *ix, reel_err_t *err) {
    size_t n = ix->nconn_flows;
    ix->nconn_flows = 0;
    if (n == 0)
        return REEL_OK;
    reel_rc rc = REEL_OK;
    if (ix->conn_upsert == NULL &&
        (rc = reel_index_prepare(ix->db,
                                 "INSERT INTO client_conns(conn, first_flow, last_flow) "
                                 "VALUES(?1, ?2, ?3) ON CONFLICT(conn) DO UPDATE SET "
                                 "first_flow = min(first_flow, excluded.first_flow), "
                                 "last_flow = max(last_flow, excluded.last_flow)",
                                 &ix->conn_upsert, err)) != REEL_OK)
        return rc;
    struct conn_flow *v = ix->conn_flows;
    qsort(v, n, sizeof *v, conn_flow_cmp);
    for (size_t i = 0; i < n && rc == REEL_OK;) {
        size_t j = i;
        while (j + 1 < n && v[j + 1].conn == v[i].conn)
            j++;
        sqlite3_bind_int64(ix->conn_upsert, 1, v[i].conn);
        sqlite3_bind_int64(ix->conn_upsert, 2, v[i].id);
        sqlite3_bind_int64(ix->conn_upsert, 3, v[j].id);
        if (sqlite3_step(ix->conn_upsert) != SQLITE_DONE)
            rc = reel_err_set(err, REEL_DB, "session.db: writing client_conns: %s",
                              sqlite3_errmsg(ix->db));
        sqlite3_reset(ix->conn_upsert);
        i = j + 1;
    }
    return rc;
}

static reel_rc write_row(reel_indexer_t *ix, frow *r, reel_err_t *err) {
    return write_rows(ix, &r, 1, err);
}

reel_rc reel_indexer_commit(reel_indexer_t *ix, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    for (size_t b = 0; b < ix->nbuckets && rc == REEL_OK; b++)
        for (frow *r = ix->buckets[b]; r && rc == REEL_OK; r = r->next)
            if (r->dirty)
                rc = write_row(ix, r, err);
    if (rc == REEL_OK)
        rc = write_conns(ix, err);
    if (rc == REEL_OK)
        rc = reel_bodyindex_fill(ix->bx, err);
    if (rc == REEL_OK)
        rc = reel_index_exec(ix->db, "COMMIT", err);
    if (rc != REEL_OK) {
        reel_indexer_rollback(ix);
        return rc;
    }
    ix->in_tx = 0;
    /* Finished flows are written for good; open ones stay for their next
     * records unless too many pile up (they reload from the row). */
    map_clear(ix, ix->count <= 4096);
    return REEL_OK;
}
