/* Session directories: layout, the recorder lock, recovery, repair, verify.
 * Recovery rules are specified in docs/format.md ("Recovery"). */
#include "session/session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"
#include "session/decode.h"
#include "session/importtx.h"
#include "session/index.h"
#include "session/journal.h"
#include "session/retention.h"
#include "flow.pb-c.h"
#include "session/spool.h"
#include "session/store.h"

struct reel_session {
    char *name;
    char *path;
    char *spool_dir;
    sqlite3 *db;
    int lock_fd;
    int recording;
    reel_buf_t note;
    char *db_damage; /* why session.db did not open (REEL_OPEN_REPAIR), owned */
    int db_missing;  /* there is no session.db (REEL_OPEN_REPAIR) */
    int index_lost;  /* session.db had no tables: made anew, to rebuild */
    char *readonly;  /* why this user cannot write the session (opened read-only), owned */
    int rdlocked;    /* holds the readers' lock shared (readers_lock) */
    /* A rebuild's scan (prune_keep): the old rows of flows the scan found
     * again are dropped from rebuild_keep as it goes, those above
     * pruned_to next. */
    int pruning;
    uint64_t pruned_to;
    int live;        /* another process records into it (its index grows) */
    int excl;        /* holds it exclusively: nesting of reel__session_readers_exclude */
};

int64_t reel_now_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

char *reel_session_home(const char *override) {
    if (override && override[0])
        return reel_strdup(override);
    const char *env = getenv("REEL_HOME");
    if (env && env[0])
        return reel_strdup(env);
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && xdg[0] == '/')
        return reel_asprintf("%s/reel/sessions", xdg);
    const char *home = getenv("HOME");
    return reel_asprintf("%s/.local/share/reel/sessions", home && home[0] ? home : ".");
}

/* The one rule for names people give: 1..REEL_SESSION_NAME_MAX bytes of
 * ASCII letters, digits, '-', '_', '.' and the characters of `extra`, not
 * starting with '.' or '-'. The message names what is wrong and states the
 * rule, the same words as docs/format.md. */
static reel_rc name_rule(const char *what, const char *rule, const char *extra, const char *name,
                         reel_err_t *err) {
    size_t n = strlen(name), bad = n;
    for (size_t i = 0; i < n && bad == n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || (c && strchr(extra, c))))
            bad = i;
    }
    /* The name is quoted only when it is printable: it goes to a terminal. */
    int quote = n <= REEL_SESSION_NAME_MAX;
    for (size_t i = 0; i < n && quote; i++)
        quote = name[i] >= 0x20 && name[i] < 0x7f;
    char head[REEL_SESSION_NAME_MAX + 64];
    snprintf(head, sizeof head, "invalid %s%s%s%s", what, quote ? " '" : "", quote ? name : "",
             quote ? "'" : "");
    if (n == 0)
        return reel_err_set(err, REEL_INVALID, "%s: empty; %s", head, rule);
    if (n > REEL_SESSION_NAME_MAX)
        return reel_err_set(err, REEL_INVALID, "%s: %zu bytes, longer than %d; %s", head, n,
                            REEL_SESSION_NAME_MAX, rule);
    if (bad < n) {
        unsigned char c = (unsigned char)name[bad];
        char what_c[32];
        if (c > 0x20 && c < 0x7f)
            snprintf(what_c, sizeof what_c, "'%c'", c);
        else if (c == ' ')
            snprintf(what_c, sizeof what_c, "a space");
        else
            snprintf(what_c, sizeof what_c, "byte 0x%02x", c);
        return reel_err_set(err, REEL_INVALID, "%s: %s at position %zu is not allowed; %s", head,
                            what_c, bad + 1, rule);
    }
    if (name[0] == '.' || name[0] == '-')
        return reel_err_set(err, REEL_INVALID, "%s: starts with '%c'; %s", head, name[0], rule);
    return REEL_OK;
}

reel_rc reel_session_name_check(const char *name, reel_err_t *err) {
    return name_rule("session name",
                     "a session name is 1-128 letters, digits, '-', '_' and '.', not starting "
                     "with '.' or '-'",
                     "", name, err);
}

reel_rc reel_session_tag_check(const char *tag, reel_err_t *err) {
    return name_rule("tag",
                     "a tag is 1-128 letters, digits, '-', '_', '.', ':' and '/', not starting "
                     "with '.' or '-'",
                     ":/", tag, err);
}

static int mkdir_p(const char *path, mode_t mode) {
    char *p = reel_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, mode) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

void reel_session_give(const char *session_dir, int fd, const char *path) {
    struct stat ds, fs;
    if (geteuid() != 0 || stat(session_dir, &ds) != 0 || ds.st_uid == 0)
        return;
    if ((fd >= 0 ? fstat(fd, &fs) : lstat(path, &fs)) != 0 || fs.st_uid != 0)
        return;
    if ((fd >= 0 ? fchown(fd, ds.st_uid, ds.st_gid) : lchown(path, ds.st_uid, ds.st_gid)) != 0) {
        /* then it stays root's: the owner can still read what it may */
    }
}

/* reel_session_give for path, a file or directory of session s. */
static void give(const reel_session_t *s, int fd, const char *path) {
    reel_session_give(s->path, fd, path);
}

/* Root, done with (or opening) another user's session, gives that user
 * what root made in it and left root's: what reel_session_give is not
 * called for right where it is made (SQLite's files: SQLite gives -wal
 * and -shm the owner of session.db), and what a root process killed half
 * way, or an older reel, left. The session directory, spool/ and
 * recovered/, not deeper. */
static void give_all(const reel_session_t *s) {
    struct stat ds;
    if (geteuid() != 0 || stat(s->path, &ds) != 0 || ds.st_uid == 0)
        return;
    static const char *const dirs[] = {"", "/spool", "/recovered"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char *d = reel_asprintf("%s%s", s->path, dirs[i]);
        DIR *dir = opendir(d);
        for (struct dirent *e; dir && (e = readdir(dir)) != NULL;) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *p = reel_asprintf("%s/%s", d, e->d_name);
            give(s, -1, p);
            free(p);
        }
        if (dir)
            closedir(dir);
        free(d);
    }
}

static int index_sound(reel_session_t *s);
static reel_rc replay_journal(reel_session_t *s, sqlite3 *db, reel_err_t *err);
static void journal_catch_up(reel_session_t *s);
static reel_rc settle_drops(reel_session_t *s, int before_rebuild, reel_err_t *err);
static long rebuild_pid(sqlite3 *db, uint64_t *max);
static void note(reel_session_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(reel_session_t *s, const char *fmt, ...) {
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (s->note.len)
        reel_buf_puts(&s->note, "; ");
    reel_buf_puts(&s->note, line);
}

static long read_pid(int fd) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    return strtol(buf, NULL, 10);
}

/* Takes the lock. Returns REEL_OK, or REEL_LOCKED if another holds it. */
static reel_rc take_lock(reel_session_t *s, int wait_ms) {
    for (int waited = 0;; waited += 50) {
        if (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0)
            return REEL_OK;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return REEL_IO;
        if (waited >= wait_ms)
            return REEL_LOCKED;
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* The readers' lock (docs/format.md, section 5): an open file description
 * lock on the lock file (its first REEL_INDEX_WRITER_BYTE bytes; the byte
 * after them says a writer waits), which is independent of its flock.
 * A process that reads the index without holding the session's lock holds
 * it shared until it closes the session; a rebuild of the index holds it
 * exclusively, taking it once the readers that have it are done, so that
 * no reader sees an index that is half rebuilt. Returns fcntl's. */
static int readers_lock(int fd, short type) {
    struct flock fl = {
        .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = REEL_INDEX_WRITER_BYTE};
    return fcntl(fd, F_OFD_SETLK, &fl);
}

/* How long a rebuild waits for the readers that have the session open. */
#define READERS_WAIT_MS 60000

reel_rc reel__session_readers_exclude(reel_session_t *s, reel_err_t *err) {
    if (s->excl++ > 0 || s->lock_fd < 0)
        return REEL_OK;
    for (int waited = 0;; waited += 50) {
        if (readers_lock(s->lock_fd, F_WRLCK) == 0)
            return REEL_OK;
        if (errno == EINVAL)
            return REEL_OK; /* no such locks here: no reader takes one either */
        if (errno != EAGAIN && errno != EACCES && errno != EINTR) {
            s->excl--;
            return reel_err_errno(err, REEL_IO, errno, "locking %s/lock", s->path);
        }
        if (waited >= READERS_WAIT_MS) {
            s->excl--;
            return reel_err_set(err, REEL_LOCKED,
                                "session '%s' is being read by another process (reel flows, "
                                "show, verify, export, the web UI, ...) and has been for %d s: "
                                "its index is rebuilt only when no reader has it open, so that "
                                "none sees it half built; try again when they are done",
                                s->name, READERS_WAIT_MS / 1000);
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* The writes of a session this process does not record into say, while
 * they wait, that they wait (index.h): a recorder may be live, or start
 * while this process has it open. */
static void writes_signal(reel_session_t *s) {
    if (!s->recording && s->db != NULL && s->lock_fd >= 0)
        reel_index_writer_signal(s->db, s->lock_fd);
}

int reel__session_lock_fd(const reel_session_t *s) {
    return s->lock_fd;
}

void reel__session_readers_allow(reel_session_t *s) {
    if (s->excl == 0 || --s->excl > 0 || s->lock_fd < 0)
        return;
    readers_lock(s->lock_fd, s->rdlocked ? F_RDLCK : F_UNLCK);
}

/* PID in meta `rebuilding` of the session.db at dbpath, opened read-only
 * for a moment; 0 if none or it does not read. */
static long rebuild_pid_at(const char *dbpath) {
    sqlite3 *db = NULL;
    long pid = 0;
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 1000);
        pid = rebuild_pid(db, NULL);
    }
    sqlite3_close(db);
    return pid;
}

/* A reader refused: the index is being rebuilt (busy: a rebuild holds the
 * readers' lock; else meta says one began), by pid when known. REEL_LOCKED
 * while a process is at it (it passes: `reel ls` lists the session as busy),
 * REEL_CORRUPT when one stopped half way and this user cannot finish it. */
static reel_rc rebuilding_error(reel_session_t *s, long pid, int busy, reel_err_t *err) {
    char by[64] = "";
    if (pid > 0)
        snprintf(by, sizeof by, " by PID %ld", pid);
    if (busy || (s->readonly == NULL && s->lock_fd >= 0))
        return reel_err_set(err, REEL_LOCKED,
                            "session '%s' is being repaired: its index is being rebuilt from the "
                            "spool%s (reel repair, reel compact, or recovery on open), and reads "
                            "now would see part of it; try again when that is done",
                            s->name, by);
    /* nobody is at it: damage, until a user who can write repairs it */
    return reel_err_set(err, REEL_CORRUPT,
                        "session '%s': its index was left half rebuilt by a repair or compact%s "
                        "that stopped before it was done; 'reel repair %s' by a user who can write "
                        "the session rebuilds it",
                        s->name, by, s->name);
}

static reel_rc locked_error(reel_session_t *s, reel_err_t *err) {
    long pid = read_pid(s->lock_fd);
    if (pid > 0)
        return reel_err_set(err, REEL_LOCKED, "session '%s' is being recorded by PID %ld",
                            s->name, pid);
    return reel_err_set(err, REEL_LOCKED, "session '%s' is locked by another process", s->name);
}

long reel_session_recorder_pid(reel_session_t *s) {
    if (s->recording)
        return (long)getpid();
    char *lp = reel_asprintf("%s/lock", s->path);
    int fd = open(lp, O_RDONLY | O_CLOEXEC);
    free(lp);
    if (fd < 0)
        return 0;
    long pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        pid = read_pid(fd);
    close(fd);
    return pid;
}

int64_t reel_session_recorder_since(reel_session_t *s) {
    if (reel_session_recorder_pid(s) == 0)
        return 0;
    char *lp = reel_asprintf("%s/lock", s->path);
    struct stat st;
    int64_t us =
        stat(lp, &st) == 0 ? (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000 : 0;
    free(lp);
    return us;
}

int reel_session_open_segment(const reel_session_t *s, uint32_t n) {
    char name[16];
    reel_spool_segment_name(n, name);
    char *p = reel_asprintf("%s/%s", s->spool_dir, name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    free(p);
    return fd;
}

reel_segment_gone_t reel_session_segment_gone(const reel_session_t *s, uint32_t n) {
    struct stat st;
    if (stat(s->path, &st) != 0 && errno == ENOENT)
        return REEL_SEGMENT_REMOVED; /* reel rm renames the directory away first */
    char *dbpath = reel_asprintf("%s/session.db", s->path);
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int dropped = 0;
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_busy_timeout(db, 2000) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT 1 FROM retention WHERE segment = ?1", -1, &q, NULL) ==
            SQLITE_OK) {
        sqlite3_bind_int64(q, 1, n);
        dropped = sqlite3_step(q) == SQLITE_ROW;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    free(dbpath);
    return dropped ? REEL_SEGMENT_DROPPED : REEL_SEGMENT_MISSING;
}

/* Segment numbers present in spool/, sorted. */
/* Whether entry e of directory d is a file, or a link to one. */
static int regular_file(DIR *d, const struct dirent *e) {
    if (e->d_type == DT_REG)
        return 1;
    if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK)
        return 0;
    struct stat st;
    return fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode);
}

static uint32_t *list_segments(const reel_session_t *s, size_t *count) {
    *count = 0;
    DIR *d = opendir(s->spool_dir);
    if (d == NULL)
        return NULL;
    size_t cap = 16;
    uint32_t *v = reel_malloc(cap * sizeof *v);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint32_t n;
        if (!reel_spool_segment_parse(e->d_name, &n))
            continue;
        /* a directory (anything but a file) of that name holds no
         * segment: the segment is missing, and said so, rather than
         * every command stopping at reading it */
        if (!regular_file(d, e))
            continue;
        if (*count == cap)
            v = reel_realloc(v, (cap *= 2) * sizeof *v);
        v[(*count)++] = n;
    }
    closedir(d);
    for (size_t i = 1; i < *count; i++) /* insertion sort: few segments */
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            uint32_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v;
}

/* For the message that segment n is missing: "" when nothing has its
 * name, else what does, which list_segments passed over. */
static const char *segment_in_place(const reel_session_t *s, uint32_t n) {
    char name[16];
    reel_spool_segment_name(n, name);
    struct stat st;
    char *p = reel_asprintf("%s/%s", s->spool_dir, name);
    int there = stat(p, &st) == 0;
    free(p);
    if (!there || S_ISREG(st.st_mode))
        return "";
    return S_ISDIR(st.st_mode) ? " (a directory has its name)"
                               : " (something not a file has its name)";
}

static int has_segment(const uint32_t *segs, size_t nseg, uint32_t n) {
    for (size_t i = 0; i < nseg; i++)
        if (segs[i] == n)
            return 1;
    return 0;
}

/* Indexing frames found by a scan, committing every few hundred frames. */
typedef struct {
    reel_session_t *s;
    reel_indexer_t *ix;
    uint32_t segment;
    unsigned pending;
    uint64_t frames;
    uint64_t last_off; /* the last frame indexed, if have_last */
    uint64_t last_end; /* ... and where it ends */
    int have_last;
    uint64_t stop_at; /* stop after a frame that reaches this offset */
    int stopped;      /* ... and it did */
    reel_err_t *err;
    reel_rc rc;
} scan_ctx;

/* In a rebuild's scan, at the start of each of its transactions: the old
 * rows (rebuild_keep) of the flows the transactions before wrote again
 * with their start record are dropped. Only the flows the scan does not
 * find again (keep_user_flows, keep_vanished) or finds without their start
 * (keep_lost_starts) need their old row, and the pages freed take the new
 * rows, as the scan goes: kept to the end, the old rows made session.db
 * twice the size of its index, and the VACUUM that gave the pages back
 * was a sixth of a repair (0.6 s of 3.8 for 200,000 flows). A flow
 * written again later than its id's turn (open across transactions) keeps
 * its old row to the end; it is dropped with the table. */
static reel_rc prune_keep(reel_session_t *s, reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    reel_rc rc = reel_index_prepare(s->db,
                                    "DELETE FROM rebuild_keep WHERE id > ?1 AND id IN (SELECT id "
                                    "FROM flows WHERE id > ?1 AND uuid != '')",
                                    &st, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)s->pruned_to);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = reel_index_db_error(err, REEL_DB, s->db);
    sqlite3_finalize(st);
    st = NULL;
    /* (not reel_index_max_flow_id: meta's max_flow_id is the old index's) */
    if (rc == REEL_OK &&
        (rc = reel_index_prepare(s->db, "SELECT max(id) FROM flows", &st, err)) == REEL_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER)
        s->pruned_to = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* Frames per transaction of a scan. Its commit (and the pruning of the
 * old rows at the next one's start) runs on the scan's thread while the
 * decoders wait once they have AHEAD_MAX frames ready: at 1,024 frames the
 * decoders stood idle for about 50 ms at each commit, a fifth of a
 * repair's scan; at 64 a commit takes about as long as they take to fill
 * their queue. */
#define SCAN_TX_FRAMES 64

static int index_frame_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    scan_ctx *c = ctx;
    if (c->pending == 0 && (c->rc = reel_indexer_begin(c->ix, c->err)) != REEL_OK)
        return 1;
    if (c->pending == 0 && c->s->pruning && (c->rc = prune_keep(c->s, c->err)) != REEL_OK)
        return 1;
    /* every record of the frame unpacks (reel_indexer_vet_frame, on the
     * scan's threads; a frame with one that does not is salvaged) */
    c->rc = reel_indexer_add_own_frame(c->ix, c->segment, off, clen, raw, rlen, c->err);
    if (c->rc == REEL_CORRUPT) {
        /* (a record the vet passed and unpacking refused: index what the
         * frame says and move on; verify will name it) */
        reel_err_clear(c->err);
        c->rc = REEL_OK;
    }
    if (c->rc != REEL_OK)
        return 1;
    c->last_off = off;
    c->last_end = off + clen;
    c->have_last = 1;
    c->frames++;
    if (++c->pending >= SCAN_TX_FRAMES) {
        c->pending = 0;
        if ((c->rc = reel_indexer_commit(c->ix, c->err)) != REEL_OK)
            return 1;
    }
    if (c->last_end >= c->stop_at) {
        c->stopped = 1;
        return 1;
    }
    return 0;
}

static reel_rc scan_finish(scan_ctx *c) {
    if (c->rc == REEL_OK && c->pending) {
        c->pending = 0;
        c->rc = reel_indexer_commit(c->ix, c->err);
    }
    return c->rc;
}

/* The name in dir (recovered/) for bytes of segment `name` set aside at
 * off: NAME.OFF.EXT, or NAME.OFF.K.EXT when that is taken. A file there is
 * never overwritten: bytes set aside at the same offset before (a tail torn
 * again after the segment grew back past it, a salvage that a crash cut
 * short and that runs again on what it had begun to rewrite) keep theirs.
 * The caller creates it with O_EXCL and frees the name. */
static char *aside_name(const char *dir, const char *name, uint64_t off, const char *ext) {
    char *p = reel_asprintf("%s/%s.%llu.%s", dir, name, (unsigned long long)off, ext);
    for (unsigned k = 1; access(p, F_OK) == 0 && k < 10000; k++) {
        free(p);
        p = reel_asprintf("%s/%s.%llu.%u.%s", dir, name, (unsigned long long)off, k, ext);
    }
    return p;
}

/* Moves [off, EOF) of segment n aside into recovered/ (dst if given, else
 * a name of its own) and truncates. */
static reel_rc move_aside(reel_session_t *s, uint32_t n, uint64_t off, const char *reason,
                          const char *want, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char name[16];
    reel_spool_segment_name(n, name);
    char *seg = reel_asprintf("%s/%s", s->spool_dir, name);
    char *dir = reel_asprintf("%s/recovered", s->path);
    char *dst = want ? reel_strdup(want) : aside_name(dir, name, off, "torn");
    int in = -1, out = -1;
    uint8_t *buf = NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = reel_err_errno(err, REEL_IO, errno, "creating %s", dir);
        goto out;
    }
    give(s, -1, dir);
    in = open(seg, O_RDWR | O_CLOEXEC);
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out >= 0)
        give(s, out, dst);
    if (in < 0 || out < 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "moving the damaged tail of %s aside", seg);
        goto out;
    }
    buf = reel_malloc(1 << 16);
    off_t size = lseek(in, 0, SEEK_END);
    for (uint64_t pos = off; size >= 0 && pos < (uint64_t)size;) {
        /* holes stay holes: a sparse tail (a file extended by truncate)
         * was copied whole, as many bytes of zeros on the disk */
        off_t data = lseek(in, (off_t)pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;
        if (data > (off_t)pos) {
            pos = (uint64_t)data;
            continue;
        }
        ssize_t r = pread(in, buf, 1 << 16, (off_t)pos);
        if (r < 0) {
            rc = reel_err_errno(err, REEL_IO, errno, "reading %s", seg);
            goto out;
        }
        if (r == 0)
            break;
        if (pwrite(out, buf, (size_t)r, (off_t)(pos - off)) != r) {
            rc = reel_err_errno(err, REEL_IO, errno, "writing %s", dst);
            goto out;
        }
        pos += (uint64_t)r;
    }
    if (size < 0 || ftruncate(out, size - (off_t)off) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "writing %s", dst);
        goto out;
    }
    if (fsync(out) != 0 || ftruncate(in, (off_t)off) != 0 || fsync(in) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "truncating %s", seg);
        goto out;
    }
    note(s, "segment %s: %s at offset %llu; moved the bytes from there to the end aside to %s",
         name, reason, (unsigned long long)off, dst + strlen(s->path) + 1);
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    free(buf);
    free(seg);
    free(dir);
    free(dst);
    return rc;
}

/* ---- salvage: the whole records of a damaged or torn frame ---- */

/* Copies [off, end) of the segment at path to dst (created 0600, a file
 * that is not there: aside_name) and syncs it. */
static reel_rc copy_range(const reel_session_t *s, const char *path, uint64_t off, uint64_t end,
                          const char *dst, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out >= 0)
        give(s, out, dst);
    uint8_t *buf = reel_malloc(1 << 16);
    if (in < 0 || out < 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "copying damaged bytes to %s", dst);
        goto out;
    }
    for (uint64_t pos = off; pos < end;) {
        size_t want = end - pos < (1 << 16) ? (size_t)(end - pos) : (1 << 16);
        ssize_t r = pread(in, buf, want, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                break;
            rc = reel_err_errno(err, REEL_IO, errno, "reading %s", path);
            goto out;
        }
        if (write(out, buf, (size_t)r) != r) {
            rc = reel_err_errno(err, REEL_IO, errno, "writing %s", dst);
            goto out;
        }
        pos += (uint64_t)r;
    }
    if (fsync(out) != 0)
        rc = reel_err_errno(err, REEL_IO, errno, "syncing %s", dst);
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    free(buf);
    return rc;
}

/* Compresses the first `len` bytes of the salvaged records (whole records)
 * into out at the given level, in pieces as the writer does, or `whole`. */
static reel_rc salvage_encode(const uint8_t *recs, size_t len, int level, int whole,
                              reel_buf_t *out, reel_err_t *err) {
    reel_spool_enc_t *enc = reel_spool_enc_new(level);
    reel_rc rc = whole ? reel_spool_enc_frame_whole(enc, recs, len, out, err)
                       : reel_spool_enc_frame(enc, recs, len, out, err);
    reel_spool_enc_free(enc);
    return rc;
}

/* What a mark's text says of the records kept in the fresh frame before
 * it (docs/format.md section 6). It starts "<kind>: N record(s) kept",
 * the kind saying what stopped the decoding:
 *   "checksum failed"  the frame decoded whole, its checksum failed;
 *   "damaged"          a zstd block (or the header) did not decode, or the
 *                      frame ran into the next valid one or the end of an
 *                      older segment;
 *   "torn"             the newest segment ended inside the frame, nothing
 *                      valid after it (a write torn by a crash);
 *   "bad record"       its checksum held, a record did not unpack.
 * After the first two, the N records may hold bytes the damage changed,
 * and every flow with records in that frame is marked damaged. */
#define MARK_ESSENTIAL "%s: %zu record%s"

/* 1 if the mark whose scan reason is `reason` ("set aside: " and its text)
 * says the frame before it holds records kept from a damaged frame, which
 * may be wrong. A text cut before its count (written by an older reel,
 * which did not keep room for it) counts as such for "checksum failed",
 * as that reel read it. */
static int mark_unverified(const char *reason) {
    static const char *const kinds[] = {"checksum failed: ", "damaged: "};
    const char *t = strncmp(reason, "set aside: ", 11) == 0 ? reason + 11 : reason;
    for (size_t k = 0; k < 2; k++) {
        size_t kl = strlen(kinds[k]);
        if (strncmp(t, kinds[k], kl) != 0) {
            if (k == 0 && strncmp(t, "checksum f", 10) == 0 && strlen(t) < kl)
                return 1; /* cut short: the count is not there */
            continue;
        }
        const char *d = t + kl;
        unsigned long long n = 0;
        size_t nd = 0;
        while (d[nd] >= '0' && d[nd] <= '9' && nd < 12)
            n = n * 10 + (unsigned long long)(d[nd++] - '0');
        if (nd == 0 || strncmp(d + nd, " record", 7) != 0)
            return k == 0; /* the count is cut: as an older reel read it */
        return n > 0;
    }
    return 0;
}

/* Formats a mark's text into mark: the longest of its forms whose text and
 * NUL fit in `room` bytes (all of it if room is SIZE_MAX); the shortest is
 * the essential part a scan reads (MARK_ESSENTIAL). */
static void mark_text(reel_buf_t *mark, const char *kind, size_t kept, int checked, size_t after,
                      const char *where, const char *rel, size_t room) {
    for (int form = 0; form < 3; form++) {
        reel_buf_reset(mark);
        reel_buf_printf(mark, MARK_ESSENTIAL, kind, kept, kept == 1 ? "" : "s");
        if (form < 2)
            reel_buf_printf(mark, " kept %sin the frame before", checked ? "" : "unverified ");
        if (form < 2 && after)
            reel_buf_printf(mark, ", %zu in the frame after", after);
        if (form < 1)
            reel_buf_printf(mark, "; %s in %s", where, rel);
        if (mark->len + 1 <= room)
            return;
    }
}

/* The bytes a mark of k records takes at the least: its header and the
 * essential part of its text (MARK_ESSENTIAL) with the NUL. */
static uint64_t mark_min_len(const char *kind, size_t k) {
    char essential[64];
    int el = snprintf(essential, sizeof essential, MARK_ESSENTIAL, kind, k, k == 1 ? "" : "s");
    return REEL_SPOOL_SKIP_HDR + (uint64_t)el + 1;
}

/* How a fresh frame is compressed, in the order tried while it leaves no
 * room for the mark: level 3 in pieces as the writer makes them, 19, then
 * 19 in one piece. */
static const struct { int level, whole; } SALVAGE_TRIES[] = {{3, 0}, {19, 0}, {19, 1}};
#define N_SALVAGE_TRIES (sizeof SALVAGE_TRIES / sizeof *SALVAGE_TRIES)

/* The fresh frame of the first k salvaged records (ends[k - 1] bytes of
 * recs) into frame: at zstd level 3 in pieces as the writer makes them,
 * or, while that leaves no room, at 19, then at 19 in one piece (no
 * salvage of it later by the piece, but no records dropped for room);
 * *fits: it leaves room in `range` bytes for the mark's header and the
 * essential part of its text with its NUL. No records: an empty frame,
 * which fits. */
static reel_rc salvage_fit(const reel_buf_t *recs, const size_t *ends, size_t k, const char *kind,
                           uint64_t range, reel_buf_t *frame, int *fits, reel_err_t *err) {
    reel_buf_reset(frame);
    *fits = 1;
    if (k == 0)
        return REEL_OK;
    uint64_t mark = mark_min_len(kind, k);
    for (size_t t = 0; t < N_SALVAGE_TRIES; t++) {
        reel_rc rc = salvage_encode(recs->data, ends[k - 1], SALVAGE_TRIES[t].level,
                                    SALVAGE_TRIES[t].whole, frame, err);
        if (rc != REEL_OK)
            return rc;
        *fits = frame->len + mark <= range;
        if (*fits)
            break;
    }
    return REEL_OK;
}

/* When the records of a damaged frame, compressed again, leave no room for
 * the mark (bytes that do not compress, such as a body of random bytes,
 * shrink by nothing), the body bytes of the last record, if it is a body
 * chunk, are cut short by the few dozen bytes needed rather than the whole
 * record (up to REEL_SPOOL_CHUNK bytes) dropped. On success recs (k
 * records, ends[k - 1] its end) holds the shortened record, frame its fresh
 * frame, *cut the body bytes cut off; else nothing changes. */
static reel_rc salvage_trim(reel_buf_t *recs, size_t *ends, size_t k, const char *kind,
                            uint64_t range, reel_buf_t *frame, size_t *cut, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    *cut = 0;
    size_t start = k >= 2 ? ends[k - 2] : 0, pos = start, rl = 0;
    const uint8_t *rec = NULL;
    if (k == 0 || reel_spool_block_next(recs->data, ends[k - 1], &pos, &rec, &rl) != REEL_OK)
        return REEL_OK;
    Reel__Record *r = reel__record__unpack(NULL, rl, rec);
    ProtobufCBinaryData *data = NULL;
    if (r && r->event_case == REEL__RECORD__EVENT_REQUEST_BODY && r->request_body)
        data = &r->request_body->data;
    else if (r && r->event_case == REEL__RECORD__EVENT_RESPONSE_BODY && r->response_body)
        data = &r->response_body->data;
    size_t full = data ? data->len : 0;
    reel_buf_t trial, best;
    reel_buf_init(&trial, 0);
    reel_buf_init(&best, 0);
    uint64_t need = frame->len + mark_min_len(kind, k);
    size_t want = need > range ? (size_t)(need - range) + 8 : 8;
    for (int tries = 0; data && tries < 6 && want < full; tries++, want *= 2) {
        data->len = full - want;
        size_t n = reel__record__get_packed_size(r);
        uint8_t *packed = reel_malloc(n + 1);
        reel__record__pack(r, packed);
        reel_buf_reset(&trial);
        reel_buf_append(&trial, recs->data, start);
        rc = reel_spool_block_append(&trial, packed, n);
        free(packed);
        if (rc != REEL_OK)
            break;
        size_t save = ends[k - 1];
        ends[k - 1] = trial.len;
        int fits = 0;
        rc = salvage_fit(&trial, ends, k, kind, range, &best, &fits, err);
        if (rc != REEL_OK || !fits) {
            ends[k - 1] = save;
            if (rc != REEL_OK)
                break;
            continue;
        }
        reel_buf_reset(recs);
        reel_buf_append(recs, trial.data, trial.len);
        reel_buf_reset(frame);
        reel_buf_append(frame, best.data, best.len);
        *cut = want;
        break;
    }
    if (data)
        data->len = full; /* freed with the length it was unpacked with */
    reel__record__free_unpacked(r, NULL);
    reel_buf_free(&trial);
    reel_buf_free(&best);
    return rc;
}

/* The damaged frame at [off, end) of segment n (end: the next valid frame,
 * or the end of the file): its whole records are decoded as a stream up to
 * the damage and written as a fresh frame at off, followed by a skippable
 * frame that marks the damage (its content starts with what happened, as
 * text, then a NUL; mark_text). A torn tail (`tail`) is copied to
 * recovered/NNNNNNNN.zst.OFF.torn and the segment truncated at off before
 * the two frames are appended; in the middle of a segment the range is
 * copied to recovered/NNNNNNNN.zst.OFF.damaged and the frames written over
 * its start, the skippable one covering the rest of the range: the fresh
 * frame is compressed harder if it must be, and records are dropped from
 * its end only when it would still not leave room for the mark's header
 * and the essential part of its text. Sets *done if it rewrote anything;
 * the caller scans again from off. */
static reel_rc salvage_range(reel_session_t *s, uint32_t n, uint64_t off, uint64_t end, int tail,
                             const char *reason, int *done, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char name[16];
    reel_spool_segment_name(n, name);
    char *seg = reel_asprintf("%s/%s", s->spool_dir, name);
    char *dir = reel_asprintf("%s/recovered", s->path);
    char *dst = aside_name(dir, name, off, tail ? "torn" : "damaged");
    reel_buf_t comp, recs, frame, mark, after, aframe;
    reel_buf_init(&comp, 0);
    reel_buf_init(&recs, 0);
    reel_buf_init(&frame, 0);
    reel_buf_init(&mark, 0);
    reel_buf_init(&after, 0);
    reel_buf_init(&aframe, 0);
    size_t *ends = NULL;
    int fd = -1;
    *done = 0;
    uint64_t range = end - off;
    if (range < REEL_SPOOL_SKIP_HDR + 1)
        goto out; /* too small to hold a mark; it is skipped as before */
    fd = open(seg, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        goto out; /* not writable: skipped as before */
    size_t want = range < REEL_SPOOL_FRAME_MAX ? (size_t)range : REEL_SPOOL_FRAME_MAX;
    reel_buf_reserve(&comp, want);
    ssize_t got = pread(fd, comp.data, want, (off_t)off);
    if (got < 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "reading %s", seg);
        goto out;
    }
    reel_spool_salvage_t info;
    if (reel_spool_salvage(comp.data, (size_t)got, &recs, &info) != REEL_OK)
        goto out;
    /* The records after one that does not unpack (its frame's checksum
     * held), apart: written as a frame of their own after the mark, if it
     * fits (below). */
    reel_buf_append(&after, recs.data + recs.len - info.after_len, info.after_len);
    recs.len -= info.after_len;
    if (info.records == 0 && info.after == 0 && tail)
        goto out; /* nothing to keep: moved aside whole, as a torn write always was */
    /* What stopped the decoding, and whether the records kept may hold
     * bytes the damage changed (mark_text). Cut short by the end of the
     * newest segment, with nothing valid after it, it is a write torn by a
     * crash: the bytes decoded are as they were written. Cut short
     * anywhere else, something overwrote or cut the frame, and a damaged
     * block header can make a block decode to other bytes before the
     * input runs out. */
    const char *kind = info.bad_checksum ? "checksum failed"
                       : info.bad_block  ? "damaged"
                       : info.checked    ? "bad record"
                       : tail            ? "torn"
                                         : "damaged";
    int unverified = info.bad_checksum || strcmp(kind, "damaged") == 0;
    const char *where = tail ? "the bytes from there to the end" : "the original";
    const char *rel = dst + strlen(s->path) + 1;
    /* The end of each record kept: ends[k - 1] is the length of k records. */
    size_t all = info.records, kept = all;
    ends = reel_malloc((all + 1) * sizeof *ends);
    {
        size_t pos = 0, rl = 0, k = 0;
        const uint8_t *r = NULL;
        while (k < all && reel_spool_block_next(recs.data, recs.len, &pos, &r, &rl) == REEL_OK)
            ends[k++] = pos;
    }
    int fits = 0;
    if ((rc = salvage_fit(&recs, ends, kept, kind, tail ? UINT64_MAX : range, &frame, &fits,
                          err)) != REEL_OK)
        goto out;
    size_t cut = 0;
    /* (only where every flow of the frame is marked damaged anyway: the
     * flow whose body is cut short may not tell by its sizes) */
    if (!fits && unverified &&
        (rc = salvage_trim(&recs, ends, kept, kind, range, &frame, &cut, err)) != REEL_OK)
        goto out;
    if (cut)
        fits = 1;
    if (!fits) {
        /* The most records that fit: fewer never make a larger frame. */
        size_t lo = 0, hi = all - 1;
        while (lo < hi) {
            size_t mid = lo + (hi - lo + 1) / 2;
            if ((rc = salvage_fit(&recs, ends, mid, kind, range, &frame, &fits, err)) != REEL_OK)
                goto out;
            if (fits)
                lo = mid;
            else
                hi = mid - 1;
        }
        kept = lo;
        if ((rc = salvage_fit(&recs, ends, kept, kind, range, &frame, &fits, err)) != REEL_OK)
            goto out;
    }
    size_t dropped = all - kept;
    /* The records after the bad one, as a frame after the mark: the scan
     * then finds the flows the bad record belonged to open at the mark
     * (their records are on both sides of it) and marks what each lost,
     * as for any damaged range. Only when nothing before it was dropped
     * and the two frames and the mark fit where the old frame was;
     * otherwise they stay in the bytes set aside, as before. */
    size_t nafter = 0;
    if (info.after && dropped == 0 && cut == 0) {
        /* both frames compressed harder together, as salvage_fit does one */
        reel_buf_t before;
        reel_buf_init(&before, 0);
        for (size_t t = 0; rc == REEL_OK && t < N_SALVAGE_TRIES; t++) {
            int again = kept && t > 0; /* the first try's is frame */
            if (again && (rc = salvage_encode(recs.data, ends[kept - 1], SALVAGE_TRIES[t].level,
                                              SALVAGE_TRIES[t].whole, &before, err)) != REEL_OK)
                break;
            if ((rc = salvage_encode(after.data, after.len, SALVAGE_TRIES[t].level,
                                     SALVAGE_TRIES[t].whole, &aframe, err)) != REEL_OK)
                break;
            size_t blen = again ? before.len : frame.len;
            if (tail || blen + mark_min_len(kind, kept) + aframe.len <= range) {
                if (again) {
                    reel_buf_reset(&frame);
                    reel_buf_append(&frame, before.data, before.len);
                }
                nafter = info.after;
                break;
            }
        }
        reel_buf_free(&before);
        if (rc != REEL_OK)
            goto out;
    }
    if (nafter == 0)
        reel_buf_reset(&aframe);
    /* The mark: header, the text and a NUL, as far as the space allows
     * (in place, the rest of the range's old bytes stay its content). */
    mark_text(&mark, kind, kept, info.checked, nafter, where, rel,
              tail ? SIZE_MAX : (size_t)(range - frame.len - aframe.len - REEL_SPOOL_SKIP_HDR));
    uint64_t mark_len = tail ? REEL_SPOOL_SKIP_HDR + mark.len + 1 : range - frame.len - aframe.len;
    size_t text = mark.len + 1;
    if (REEL_SPOOL_SKIP_HDR + text > mark_len)
        text = (size_t)(mark_len - REEL_SPOOL_SKIP_HDR);
    uint8_t hdr[REEL_SPOOL_SKIP_HDR];
    reel_spool_skip_header(mark_len, hdr);
    reel_buf_t wr;
    reel_buf_init(&wr, 0);
    reel_buf_append(&wr, frame.data, frame.len);
    reel_buf_append(&wr, hdr, sizeof hdr);
    reel_buf_append(&wr, mark.data, text);
    if (tail) /* appended after the mark */
        reel_buf_append(&wr, aframe.data, aframe.len);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        rc = reel_err_errno(err, REEL_IO, errno, "creating %s", dir);
    give(s, -1, dir);
    if (rc == REEL_OK && tail) {
        close(fd);
        fd = -1;
        rc = move_aside(s, n, off, reason, dst, err);
        if (rc == REEL_OK && (fd = open(seg, O_RDWR | O_CLOEXEC)) < 0)
            rc = reel_err_errno(err, REEL_IO, errno, "opening %s", seg);
    } else if (rc == REEL_OK) {
        rc = copy_range(s, seg, off, end, dst, err);
    }
    /* In place, the frame after the mark goes first, at the end of the
     * range: a crash before the rest leaves the old frame there, failing
     * its checksum (salvaged again), and this one after it, valid. */
    if (rc == REEL_OK && !tail && aframe.len &&
        (pwrite(fd, aframe.data, aframe.len, (off_t)(end - aframe.len)) != (ssize_t)aframe.len ||
         fdatasync(fd) != 0))
        rc = reel_err_errno(err, REEL_IO, errno, "writing the salvaged records to %s", seg);
    if (rc == REEL_OK && (pwrite(fd, wr.data, wr.len, (off_t)off) != (ssize_t)wr.len ||
                          fdatasync(fd) != 0))
        rc = reel_err_errno(err, REEL_IO, errno, "writing the salvaged records to %s", seg);
    reel_buf_free(&wr);
    if (rc != REEL_OK)
        goto out;
    *done = 1;
    reel_buf_t extra;
    reel_buf_init(&extra, 0);
    if (dropped)
        reel_buf_printf(&extra, "; %zu more record%s dropped to leave room for the mark", dropped,
                        dropped == 1 ? "" : "s");
    if (cut)
        reel_buf_printf(&extra,
                        "; the last one's body bytes cut short by %zu to leave room for "
                        "the mark",
                        cut);
    if (nafter)
        reel_buf_printf(&extra, "; the %zu whole record%s after it, as a new frame after the mark",
                        nafter, nafter == 1 ? "" : "s");
    else if (info.after)
        reel_buf_printf(&extra,
                        "; the %zu whole record%s after it did not fit with the mark and "
                        "are only in recovered/",
                        info.after, info.after == 1 ? "" : "s");
    /* (the file named here: the mark's text names it too, but is cut to
     * the room the new frames leave it) */
    note(s,
         "segment %s: %s frame at offset %llu (%s): kept %zu whole record%s before the damage, "
         "rewritten as a new frame there%s (%s); %s are in %s",
         name, tail && !info.checked ? "torn" : "damaged", (unsigned long long)off, reason, kept,
         kept == 1 ? "" : "s", extra.len ? (const char *)extra.data : "",
         info.checked  ? "the frame's checksum held"
         : !unverified ? "unverified, as the file ends inside the frame, but as they were written"
         : info.bad_checksum
             ? "unverified: the frame's checksum failed, so their flows are marked damaged"
             : "unverified: a byte the damage changed may have decoded to others before "
               "zstd noticed, so their flows are marked damaged",
         !tail          ? "the original bytes"
         : info.checked ? "the bytes from there to the end"
                        : "the torn bytes",
         rel);
    reel_buf_free(&extra);
out:
    if (fd >= 0)
        close(fd);
    reel_buf_free(&comp);
    reel_buf_free(&recs);
    reel_buf_free(&frame);
    reel_buf_free(&mark);
    reel_buf_free(&after);
    reel_buf_free(&aframe);
    free(ends);
    free(seg);
    free(dir);
    free(dst);
    return rc;
}

static reel_rc scan_segment(reel_session_t *s, reel_indexer_t *ix, uint32_t n, uint64_t from,
                            int tail_aside, int cuts, uint64_t *frames, reel_err_t *err);

/* The error of a flow cut off by the end of the run that recorded it. */
#define INTERRUPTED_MSG "recording stopped before the flow ended"
/* ... and of one whose end record may have been lost to damage (dmg_flow
 * says where): not known to have been cut off by the end of its run. */
#define END_LOST_MSG                                                                               \
    "records lost: its end record may have been lost with damaged spool bytes (the flow may "      \
    "have finished)"
/* How a flow_damage row of dmg_flow's for a lost end starts. */
#define END_LOST_ROW "its end record may have been lost"

/* The time of the newest record of the last frame the index has: about when
 * the run that wrote it ended; now if it cannot be read. */
static int64_t last_record_us(reel_session_t *s) {
    int64_t t = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT segment, offset, clen FROM frames ORDER BY segment DESC, "
                           "offset DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        int fd = reel_session_open_segment(s, (uint32_t)sqlite3_column_int64(st, 0));
        reel_buf_t comp, raw;
        reel_buf_init(&comp, 0);
        reel_buf_init(&raw, 0);
        reel_err_t e2;
        reel_err_clear(&e2);
        if (fd >= 0 && reel_spool_read_frame(fd, (uint64_t)sqlite3_column_int64(st, 1),
                                             (size_t)sqlite3_column_int64(st, 2), &comp, &raw,
                                             &e2) == REEL_OK) {
            size_t pos = 0, rl = 0;
            const uint8_t *r = NULL;
            while (reel_spool_block_next(raw.data, raw.len, &pos, &r, &rl) == REEL_OK) {
                Reel__Record *rec = reel__record__unpack(NULL, rl, r);
                if (rec && rec->time_us > t)
                    t = rec->time_us;
                reel__record__free_unpacked(rec, NULL);
            }
        }
        if (fd >= 0)
            close(fd);
        reel_buf_free(&comp);
        reel_buf_free(&raw);
    }
    sqlite3_finalize(st);
    return t > 0 ? t : reel_now_us();
}

/* Whether s->db is another session's index: the start record of the
 * newest flow the spool and the index both have (searched in the last
 * frames the index lists) names another UUID than the flow's row. A
 * session.db copied over from another session would otherwise be taken
 * for this spool's: recovery would "salvage" the spool where the other
 * index's frames end, and user data would go with the wrong flows.
 * Returns what differs (owned), or NULL when they agree or nothing tells
 * (frames that do not read, flows with no row). */
static char *foreign_index(reel_session_t *s) {
    char *why = NULL;
    sqlite3_stmt *fq = NULL, *uq = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT segment, offset, clen FROM frames ORDER BY segment DESC, "
                           "offset DESC LIMIT 16",
                           -1, &fq, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "SELECT uuid FROM flows WHERE id = ?", -1, &uq, NULL) !=
            SQLITE_OK) {
        sqlite3_finalize(fq);
        return NULL; /* a damaged index says so elsewhere */
    }
    reel_buf_t comp, raw;
    reel_buf_init(&comp, 0);
    reel_buf_init(&raw, 0);
    int fd = -1, decided = 0;
    uint32_t fd_seg = UINT32_MAX;
    while (!decided && sqlite3_step(fq) == SQLITE_ROW) {
        uint32_t seg = (uint32_t)sqlite3_column_int64(fq, 0);
        if (seg != fd_seg) {
            if (fd >= 0)
                close(fd);
            fd = reel_session_open_segment(s, seg);
            fd_seg = seg;
        }
        uint64_t off = (uint64_t)sqlite3_column_int64(fq, 1);
        size_t clen = (size_t)sqlite3_column_int64(fq, 2), fl = 0;
        reel_err_t e2;
        reel_err_clear(&e2);
        if (fd < 0)
            continue;
        if (reel_spool_read_frame(fd, off, clen, &comp, &raw, &e2) != REEL_OK) {
            /* Another index's frame lengths: the spool's own frame there
             * tells as well. */
            ssize_t got;
            if (reel_buf_reserve(&comp, REEL_SPOOL_FRAME_MAX) != REEL_OK ||
                (got = pread(fd, comp.data, REEL_SPOOL_FRAME_MAX, (off_t)off)) <= 0 ||
                reel_spool_frame_size(comp.data, (size_t)got, &fl) != REEL_OK || fl == clen)
                continue;
            reel_err_clear(&e2);
            if (reel_spool_read_frame(fd, off, fl, &comp, &raw, &e2) != REEL_OK)
                continue;
        }
        size_t pos = 0, rl = 0;
        const uint8_t *r = NULL;
        while (!decided && reel_spool_block_next(raw.data, raw.len, &pos, &r, &rl) == REEL_OK) {
            reel_spool_peek_t pk;
            if (!reel_spool_peek_record(r, rl, &pk) || pk.event != REEL__RECORD__EVENT_START)
                continue;
            Reel__FlowStart *fs = reel__flow_start__unpack(NULL, pk.ev_len, r + pk.ev_off);
            if (fs == NULL)
                continue;
            sqlite3_reset(uq);
            sqlite3_bind_int64(uq, 1, (sqlite3_int64)pk.flow_id);
            if (sqlite3_step(uq) == SQLITE_ROW) {
                const char *u = (const char *)sqlite3_column_text(uq, 0);
                decided = 1;
                if (u && strcmp(u, fs->uuid) != 0) {
                    char name[16];
                    reel_spool_segment_name(seg, name);
                    why = reel_asprintf("session.db is not this session's index: flow %llu's "
                                        "UUID there is %.40s, and its start record in "
                                        "spool/%s says %.40s (a session.db copied from another "
                                        "session?)",
                                        (unsigned long long)pk.flow_id, u, name, fs->uuid);
                }
            }
            reel__flow_start__free_unpacked(fs, NULL);
        }
    }
    if (fd >= 0)
        close(fd);
    reel_buf_free(&comp);
    reel_buf_free(&raw);
    sqlite3_finalize(fq);
    sqlite3_finalize(uq);
    return why;
}

/* Appends the records of block (whole records) to the end of segment n as
 * frames, synced; *at: where they start. A failed write is cut back off. */
static reel_rc append_records(reel_session_t *s, uint32_t n, const reel_buf_t *block, uint64_t *at,
                              reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char name[16];
    reel_spool_segment_name(n, name);
    char *seg = reel_asprintf("%s/%s", s->spool_dir, name);
    reel_spool_enc_t *enc = reel_spool_enc_new(0);
    reel_buf_t frames, fr;
    reel_buf_init(&frames, 0);
    reel_buf_init(&fr, 0);
    /* frames of at most REEL_SPOOL_BLOCK_TARGET bytes of records each */
    size_t pos = 0, rl = 0, from = 0;
    const uint8_t *r = NULL;
    while (rc == REEL_OK && from < block->len) {
        size_t end = from;
        pos = from;
        while (reel_spool_block_next(block->data, block->len, &pos, &r, &rl) == REEL_OK) {
            if (end > from && pos - from > REEL_SPOOL_BLOCK_TARGET)
                break;
            end = pos;
        }
        if (end == from)
            break; /* not a record: cannot happen with the records made here */
        if ((rc = reel_spool_enc_frame(enc, block->data + from, end - from, &fr, err)) == REEL_OK)
            rc = reel_buf_append(&frames, fr.data, fr.len);
        from = end;
    }
    int fd = rc == REEL_OK ? open(seg, O_WRONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (rc == REEL_OK && (fd < 0 || fstat(fd, &st) != 0)) {
        rc = reel_err_errno(err, REEL_IO, errno, "opening %s", seg);
    } else if (rc == REEL_OK) {
        *at = (uint64_t)st.st_size;
        if (pwrite(fd, frames.data, frames.len, st.st_size) != (ssize_t)frames.len ||
            fdatasync(fd) != 0) {
            rc = reel_err_errno(err, REEL_IO, errno ? errno : ENOSPC, "writing to %s", seg);
            if (ftruncate(fd, st.st_size) == 0)
                fdatasync(fd);
        }
    }
    if (fd >= 0)
        close(fd);
    reel_spool_enc_free(enc);
    reel_buf_free(&frames);
    reel_buf_free(&fr);
    free(seg);
    return rc;
}

/* Step 5 of recovery (docs/format.md, section 6), once the whole spool has
 * been read and dmg_finish has run: the flows still open were cut off by
 * the end of the run that recorded them (its process died), or lost their
 * end record to damage. The spool does not say where a run ends, so a
 * later repair, reading it from the start, found them open at every
 * damaged range of every later run and marked them damaged for it. Their
 * end is therefore written into the spool here, after its last frame:
 * an `error` record with `interrupted` (state interrupted), which every
 * later scan finds where their run ended. If it cannot be written (the
 * disk is full, say), they are marked in the index only, as before, and
 * the note says so. */
static reel_rc mark_interrupted(reel_session_t *s, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3_stmt *st = NULL;
    reel_buf_t block;
    reel_buf_init(&block, 0);
    reel_indexer_t *ix = NULL;
    size_t n = 0;
    long long cut = 0, lost = 0;
    int64_t when = 0;
    if ((rc = reel_index_prepare(
             s->db,
             "SELECT id, request_body_size, response_body_size, "
             "request_body_dropped, response_body_dropped, EXISTS(SELECT 1 "
             "FROM flow_damage d WHERE d.flow_id = f.id AND d.reason LIKE '" END_LOST_ROW
             "%'), CASE WHEN error LIKE '" REEL_GAP_MSG "%' THEN error END FROM flows f WHERE "
             "state = 'open' ORDER BY id",
             &st, err)) != REEL_OK)
        goto out;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (when == 0)
            when = last_record_us(s);
        int end_lost = sqlite3_column_int(st, 5);
        /* a flow that lost records to a disk outage (its CaptureGap), and
         * whose run ended before the flow did: both, and damaged still */
        const char *gap = (const char *)sqlite3_column_text(st, 6);
        char *msg = gap ? reel_asprintf("%s; then the %s", gap, INTERRUPTED_MSG) : NULL;
        Reel__FlowError fe = REEL__FLOW_ERROR__INIT;
        fe.message = msg ? msg : end_lost ? END_LOST_MSG : INTERRUPTED_MSG;
        fe.request_body_size = (uint64_t)sqlite3_column_int64(st, 1);
        fe.response_body_size = (uint64_t)sqlite3_column_int64(st, 2);
        fe.request_body_dropped = (uint64_t)sqlite3_column_int64(st, 3);
        fe.response_body_dropped = (uint64_t)sqlite3_column_int64(st, 4);
        fe.interrupted = 1;
        Reel__Record rec = REEL__RECORD__INIT;
        rec.flow_id = (uint64_t)sqlite3_column_int64(st, 0);
        rec.time_us = when;
        rec.event_case = REEL__RECORD__EVENT_ERROR;
        rec.error = &fe;
        size_t len = reel__record__get_packed_size(&rec);
        uint8_t *packed = reel_malloc(len ? len : 1);
        reel__record__pack(&rec, packed);
        reel_spool_block_append(&block, packed, len);
        free(packed);
        free(msg);
        n++;
        if (end_lost)
            lost++;
        else
            cut++;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (n == 0)
        goto out;
    size_t nseg = 0;
    uint32_t *segs = list_segments(s, &nseg);
    uint32_t last = nseg ? segs[nseg - 1] : 0;
    free(segs);
    uint64_t at = 0;
    reel_err_t werr;
    reel_err_clear(&werr);
    reel_rc wrc = last ? append_records(s, last, &block, &at, &werr)
                       : reel_err_set(&werr, REEL_NOTFOUND, "no spool segment");
    if (wrc == REEL_OK && (rc = reel_indexer_new(s->db, &ix, err)) == REEL_OK)
        rc = scan_segment(s, ix, last, at, 0, 0, NULL, err);
    if (rc != REEL_OK)
        goto out;
    if (wrc != REEL_OK) {
        /* In the index only: a later repair finds them open again. */
        rc = reel_index_exec(s->db,
                             "UPDATE flows SET state = 'interrupted', error = coalesce(error, "
                             "CASE WHEN EXISTS(SELECT 1 FROM flow_damage d WHERE d.flow_id = "
                             "flows.id AND d.reason LIKE '" END_LOST_ROW "%') THEN '" END_LOST_MSG
                             "' ELSE '" INTERRUPTED_MSG "' END) WHERE state = 'open'",
                             err);
        if (rc != REEL_OK)
            goto out;
    }
    if (cut)
        note(s, "%lld flow%s cut off by the end of an earlier recording marked interrupted", cut,
             cut == 1 ? "" : "s");
    if (lost)
        note(s,
             "%lld flow%s whose end record may have been lost with damaged spool bytes marked "
             "interrupted",
             lost, lost == 1 ? "" : "s");
    if (wrc != REEL_OK)
        note(s,
             "their end could not be written into the spool (%s): marked in the index only, "
             "so a later repair may count them as touched by damage found after them",
             reel_err_str(&werr));
out:
    sqlite3_finalize(st);
    reel_indexer_free(ix);
    reel_buf_free(&block);
    return rc;
}

static void dmg_note(reel_session_t *s, uint32_t seg, uint64_t off, uint64_t len,
                     const char *why);
static void dmg_unverified(reel_session_t *s, uint32_t seg, uint64_t off, const char *why);

#define CUT_REASON "segment cut short"

/* The places where segment n was found cut short (damage rows with
 * CUT_REASON: offset, the file's length then, and length, the bytes after
 * it the index had seen), in order; owned, *n_cuts of them. */
static uint64_t (*segment_cuts(sqlite3 *db, uint32_t n, size_t *n_cuts))[2] {
    uint64_t(*v)[2] = NULL;
    size_t cap = 0;
    sqlite3_stmt *st = NULL;
    *n_cuts = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT offset, length FROM damage WHERE segment = ? AND reason = "
                           "'" CUT_REASON "' ORDER BY offset",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, n);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (*n_cuts == cap)
                v = reel_realloc(v, (cap = cap ? cap * 2 : 2) * sizeof *v);
            v[*n_cuts][0] = (uint64_t)sqlite3_column_int64(st, 0);
            v[(*n_cuts)++][1] = (uint64_t)sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_finalize(st);
    return v;
}

/* Scans segment n from `from`, indexing valid frames. A damaged frame is
 * salvaged (salvage_range: its whole records rewritten as a fresh frame,
 * followed by a skippable frame marking the damage) and the scan goes on
 * from it. A mark is recorded as damage and skipped, and so is a range that
 * could not be salvaged; damage that runs to the end of the file is moved
 * aside if `tail_aside` (the newest segment: a torn write). With `cuts`
 * (a rebuild, from the first byte), the flows open where the segment was
 * once found cut short are noted there as at a damaged range (dmg_note),
 * the scan stopping after the frame that reaches it. */
static reel_rc scan_segment(reel_session_t *s, reel_indexer_t *ix, uint32_t n, uint64_t from,
                            int tail_aside, int cuts, uint64_t *frames, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    int fd = reel_session_open_segment(s, n);
    if (fd < 0)
        return reel_err_errno(err, REEL_IO, errno, "opening spool segment %u", n);
    char name[16];
    reel_spool_segment_name(n, name);
    scan_ctx c = {.s = s, .ix = ix, .segment = n, .stop_at = UINT64_MAX, .err = err};
    uint64_t salvaged_at = UINT64_MAX; /* salvage a range once */
    size_t ncut = 0, k = 0;
    uint64_t(*cut)[2] = cuts ? segment_cuts(s->db, n, &ncut) : NULL;
    for (uint64_t pos = from;;) {
        for (; k < ncut && cut[k][0] <= pos; k++)
            dmg_note(s, n, cut[k][0], cut[k][1], CUT_REASON);
        c.stop_at = k < ncut ? cut[k][0] : UINT64_MAX;
        c.stopped = 0;
        reel_spool_scan_t sc;
        rc = reel_spool_scan_ahead_vet(fd, pos, index_frame_cb, reel_indexer_vet_frame, &c, &sc,
                                       err);
        if (rc == REEL_OK)
            rc = scan_finish(&c);
        if (rc != REEL_OK)
            break;
        if (c.stopped) {
            pos = c.last_end;
            continue;
        }
        if (sc.reason[0] == '\0')
            break; /* clean to EOF */
        uint64_t next = 0;
        if (sc.skip_len) {
            /* A mark of damage set aside earlier: the records salvaged
             * into the frame just before it may be wrong when the mark
             * says so (mark_unverified; not when it kept none, and that
             * frame is the intact one before the damage). */
            next = sc.bad_off + sc.skip_len;
            if (c.have_last && c.last_end == sc.bad_off && mark_unverified(sc.reason))
                dmg_unverified(s, n, c.last_off, sc.reason);
        } else {
            reel_rc r2 = reel_spool_resync(fd, sc.bad_off + 1, &next, err);
            if (r2 != REEL_OK && r2 != REEL_NOTFOUND) {
                rc = r2;
                break;
            }
            int tail = r2 == REEL_NOTFOUND && tail_aside;
            if (r2 == REEL_NOTFOUND)
                next = sc.file_size;
            if (sc.bad_off != salvaged_at) {
                int done = 0;
                salvaged_at = sc.bad_off;
                if ((rc = salvage_range(s, n, sc.bad_off, next, tail, sc.reason, &done, err)) !=
                    REEL_OK)
                    break;
                if (done) {
                    pos = sc.bad_off; /* the fresh frame, then its mark */
                    continue;
                }
            }
            if (tail) {
                close(fd);
                fd = -1;
                rc = move_aside(s, n, sc.bad_off, sc.reason, NULL, err);
                break;
            }
        }
        sqlite3_stmt *st = NULL;
        if (reel_index_prepare(s->db,
                               "INSERT OR REPLACE INTO damage(segment, offset, length, reason, "
                               "found_us) VALUES(?, ?, ?, ?, ?)",
                               &st, err) == REEL_OK) {
            sqlite3_bind_int64(st, 1, n);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)sc.bad_off);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)(next - sc.bad_off));
            sqlite3_bind_text(st, 4, sc.reason, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 5, reel_now_us());
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
        dmg_note(s, n, sc.bad_off, next - sc.bad_off, sc.reason);
        note(s, "segment %s: skipped %llu damaged bytes at offset %llu (%s)", name,
             (unsigned long long)(next - sc.bad_off), (unsigned long long)sc.bad_off, sc.reason);
        if (next >= sc.file_size)
            break;
        pos = next;
    }
    for (; rc == REEL_OK && k < ncut; k++) /* at or past the end of what is left */
        dmg_note(s, n, cut[k][0], cut[k][1], CUT_REASON);
    free(cut);
    if (fd >= 0)
        close(fd);
    if (frames)
        *frames += c.frames;
    return rc;
}

#define LOST_PREFIX "records lost: spool segment "

/* A run of missing segment numbers: first .. first + count - 1. */
typedef struct {
    uint32_t first, count;
} segrange;

static void range_add(segrange **v, size_t *n, size_t *cap, uint32_t first, uint32_t count) {
    if (count == 0)
        return;
    if (*n == *cap)
        *v = reel_realloc(*v, (*cap = *cap ? *cap * 2 : 8) * sizeof **v);
    (*v)[(*n)++] = (segrange){first, count};
}

static int range_cmp(const void *a, const void *b) {
    uint32_t x = ((const segrange *)a)->first, y = ((const segrange *)b)->first;
    return x < y ? -1 : x > y;
}

/* Sorts and merges overlapping or adjacent ranges. */
static void range_merge(segrange *v, size_t *n) {
    if (*n == 0)
        return;
    qsort(v, *n, sizeof *v, range_cmp);
    size_t k = 0;
    for (size_t i = 1; i < *n; i++) {
        uint64_t end = (uint64_t)v[k].first + v[k].count;
        if (v[i].first <= end) {
            uint64_t e2 = (uint64_t)v[i].first + v[i].count;
            if (e2 > end)
                v[k].count = (uint32_t)(e2 - v[k].first);
        } else {
            v[++k] = v[i];
        }
    }
    *n = k + 1;
}

/* Segment numbers the index knows of as missing or as holding frames:
 * indexed segments (one range each) and the damage table's missing runs. */
static segrange *known_segments(sqlite3 *db, size_t *n) {
    segrange *v = NULL;
    size_t cap = 0;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT segment, 1 FROM frames GROUP BY segment UNION ALL SELECT "
                           "segment, length FROM damage WHERE reason = 'segment file missing' "
                           "UNION ALL SELECT segment, 1 FROM retention",
                           -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            sqlite3_int64 first = sqlite3_column_int64(st, 0), count = sqlite3_column_int64(st, 1);
            if (first >= 1 && first <= UINT32_MAX && count >= 1 && count <= UINT32_MAX - first + 1)
                range_add(&v, n, &cap, (uint32_t)first, (uint32_t)count);
        }
    sqlite3_finalize(st);
    range_merge(v, n);
    return v;
}

/* Spool segments that should exist and do not, as runs: the gaps in the
 * numbering up to the newest segment present, and segments past it that
 * the index lists or an earlier repair recorded as missing. Owned. */
/* range_add for segments first .. first + count - 1 that retention did not
 * drop on purpose (those are not missing). */
static void range_add_unretired(sqlite3 *db, segrange **v, size_t *n, size_t *cap, uint32_t first,
                                uint32_t count) {
    uint32_t run = first;
    for (uint64_t k = first; k < (uint64_t)first + count; k++) {
        if (!reel_retention_is_retired(db, (uint32_t)k))
            continue;
        range_add(v, n, cap, run, (uint32_t)k - run);
        run = (uint32_t)k + 1;
    }
    range_add(v, n, cap, run, (uint32_t)((uint64_t)first + count - run));
}

static segrange *missing_segments(sqlite3 *db, const uint32_t *segs, size_t nseg, size_t *count) {
    segrange *v = NULL;
    size_t cap = 0, nknown = 0;
    *count = 0;
    uint32_t prev = 0;
    for (size_t i = 0; i < nseg; i++) {
        range_add_unretired(db, &v, count, &cap, prev + 1, segs[i] - prev - 1);
        prev = segs[i];
    }
    segrange *known = known_segments(db, &nknown);
    for (size_t i = 0; i < nknown; i++) {
        uint64_t end = (uint64_t)known[i].first + known[i].count;
        if (end <= (uint64_t)prev + 1)
            continue; /* below the newest segment: present, or in a gap above */
        uint32_t first = known[i].first > prev ? known[i].first : prev + 1;
        range_add_unretired(db, &v, count, &cap, first, (uint32_t)(end - first));
    }
    free(known);
    range_merge(v, count);
    return v;
}

/* "segment 00000002.zst" or "segments 00000002.zst to 00000005.zst". */
static void range_name(reel_buf_t *b, segrange r) {
    if (r.count == 1)
        reel_buf_printf(b, "segment %08u.zst", r.first);
    else
        reel_buf_printf(b, "segments %08u.zst to %08u.zst", r.first, r.first + r.count - 1);
}

/* In the transaction that empties the derived tables: remembers (in
 * rebuild_lost, which outlives a crash of the rebuild) the flows that have
 * records in a missing segment, by the index's own links and by the marks
 * an earlier repair left, so they can be marked again once rebuilt. A
 * rebuild that starts again (`resumed`) has the table already; a segment
 * lost since the one before it began is known by the links that one made
 * again before it died. */
static reel_rc remember_lost(reel_session_t *s, int resumed, const segrange *missing,
                             size_t nmissing, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    if (!resumed)
        rc = reel_index_exec(s->db,
                             "CREATE TABLE rebuild_lost(id INTEGER PRIMARY KEY, msg TEXT NOT "
                             "NULL, mark INTEGER NOT NULL DEFAULT 1);"
                             "INSERT OR IGNORE INTO rebuild_lost(id, msg) SELECT id, substr(error, "
                             "1, instr(error || ';', ';') - 1) FROM flows WHERE error LIKE "
                             "'" LOST_PREFIX "%';",
                             err);
    for (size_t i = 0; rc == REEL_OK && i < nmissing; i++) {
        sqlite3_stmt *st = NULL;
        rc = reel_index_prepare(
            s->db,
            "INSERT OR IGNORE INTO rebuild_lost(id, msg) SELECT flow_id, '" LOST_PREFIX
            "' || printf('%08d', min(segment)) || '.zst is missing' FROM "
            "flow_frames WHERE segment BETWEEN ?1 AND ?2 GROUP BY flow_id",
            &st, err);
        if (rc == REEL_OK) {
            sqlite3_bind_int64(st, 1, missing[i].first);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)missing[i].first + missing[i].count - 1);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = reel_index_db_error(err, REEL_DB, s->db);
        }
        sqlite3_finalize(st);
    }
    return rc;
}

/* Of the flows in rebuild_lost whose message is LIKE `like`: how many
 * have a row and are marked (*had), how many are gone. */
static void lost_counts(sqlite3 *db, const char *like, long long *had, long long *gone) {
    sqlite3_stmt *st = NULL;
    *had = *gone = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(CASE WHEN r.mark THEN f.id END), count(*) - count(f.id) "
                           "FROM rebuild_lost r LEFT JOIN flows f ON f.id = r.id WHERE r.msg "
                           "LIKE ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, like, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *had = sqlite3_column_int64(st, 0);
            *gone = sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_finalize(st);
}

/* The rebuild_lost message of the flows that had records past where
 * segment seg was found cut short, at off. */
static void cut_msg(char *buf, size_t size, uint32_t seg, uint64_t off) {
    snprintf(buf, size, LOST_PREFIX "%08u.zst was cut short at offset %llu", seg,
             (unsigned long long)off);
}

/* Says, for each place a segment was found cut short, what the flows
 * lost there. */
static void note_cuts(reel_session_t *s) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT segment, offset, length FROM damage WHERE reason = "
                           "'" CUT_REASON "' ORDER BY segment, offset",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint32_t seg = (uint32_t)sqlite3_column_int64(st, 0);
        uint64_t off = (uint64_t)sqlite3_column_int64(st, 1);
        long long len = sqlite3_column_int64(st, 2), had = 0, gone = 0;
        char msg[160];
        cut_msg(msg, sizeof msg, seg, off);
        lost_counts(s->db, msg, &had, &gone);
        note(s,
             "spool segment %08u.zst was cut short at offset %llu: the %lld byte%s after it, "
             "which the index had seen, are gone (known damage); %lld flow%s that had records "
             "there lost them (marked damaged, with an error), %lld flow%s that %s only there "
             "%s gone",
             seg, (unsigned long long)off, len, len == 1 ? "" : "s", had, had == 1 ? "" : "s", gone,
             gone == 1 ? "" : "s", gone == 1 ? "was" : "were", gone == 1 ? "is" : "are");
    }
    sqlite3_finalize(st);
}

/* After the rebuild's scan: marks damaged the flows that lost records in a
 * missing segment or past the place a segment was cut short (rebuild_lost,
 * and those with records on both sides of a run of missing segments); they
 * get their error in lost_errors. The runs and the cuts are in damage
 * already (rebuild_clear), so verify knows them. */
static reel_rc mark_lost(reel_session_t *s, const segrange *missing, size_t nmissing,
                         reel_err_t *err) {
    /* What the spool alone says of a gap, for when the old index cannot
     * (it is lost, or a second repair): flows with records on both sides
     * lost their middle; a flow still open whose last record comes before
     * the gap, with no other damage between, was open there and may have
     * lost the rest, its end included; a flow without a start record whose
     * nearest damage before its first record is the gap lost its start
     * there. Gaps in order: a flow is blamed on the first that fits. */
    static const char *const sql[] = {
        "INSERT OR IGNORE INTO rebuild_lost(id, msg) SELECT flow_id, '" LOST_PREFIX
        "' || printf('%08d', ?1) || '.zst is missing' FROM flow_frames GROUP BY flow_id "
        "HAVING min(segment) < ?1 AND max(segment) > ?2",
        /* positions as SQL_POS makes them */
        "INSERT OR IGNORE INTO rebuild_lost(id, msg) SELECT f.id, '" LOST_PREFIX
        "' || printf('%08d', ?1) || '.zst is missing' FROM flows f JOIN (SELECT flow_id, "
        "max(segment << 40 | offset) AS last FROM flow_frames GROUP BY flow_id) l ON "
        "l.flow_id = f.id WHERE f.state = 'open' AND l.last < (?1 << 40) AND NOT EXISTS "
        "(SELECT 1 FROM damage d WHERE (d.segment << 40 | d.offset) > l.last AND (d.segment "
        "<< 40 | d.offset) < (?1 << 40))",
        "INSERT OR IGNORE INTO rebuild_lost(id, msg) SELECT f.id, '" LOST_PREFIX
        "' || printf('%08d', ?1) || '.zst is missing' FROM flows f JOIN (SELECT flow_id, "
        "min(segment << 40 | offset) AS first FROM flow_frames GROUP BY flow_id) l ON "
        "l.flow_id = f.id WHERE f.uuid = '' AND l.first >= ((?2 + 1) << 40) AND NOT EXISTS "
        "(SELECT 1 FROM damage d WHERE (d.segment << 40 | d.offset) > (?1 << 40) AND "
        "(d.segment << 40 | d.offset) < l.first)",
    };
    reel_rc rc = REEL_OK;
    for (size_t i = 0; rc == REEL_OK && i < nmissing; i++) {
        sqlite3_int64 lo = missing[i].first, hi = lo + missing[i].count - 1;
        for (size_t q = 0; rc == REEL_OK && q < sizeof sql / sizeof *sql; q++) {
            sqlite3_stmt *st = NULL;
            rc = reel_index_prepare(s->db, sql[q], &st, err);
            if (rc == REEL_OK) {
                sqlite3_bind_int64(st, 1, lo);
                sqlite3_bind_int64(st, 2, hi);
                if (sqlite3_step(st) != SQLITE_DONE)
                    rc = reel_index_db_error(err, REEL_DB, s->db);
            }
            sqlite3_finalize(st);
        }
    }
    if (rc != REEL_OK)
        return rc;
    return reel_index_exec(s->db,
                           "UPDATE flows SET damaged = 1 WHERE id IN (SELECT id FROM "
                           "rebuild_lost WHERE mark);"
                           "INSERT INTO flow_damage(flow_id, direction, offset, length, reason, "
                           "found_us) SELECT r.id, 'flow', 0, -1, r.msg, "
                           "CAST(strftime('%s', 'now') AS INTEGER) * 1000000 FROM rebuild_lost r "
                           "JOIN flows f ON f.id = r.id WHERE r.mark",
                           err);
}

/* Runs sql (flow ids, ascending, one column) and says them as runs in b,
 * "85-98, 120" (the first 10 runs, then how many more ids); returns how
 * many ids there were. */
static long long ids_text(sqlite3 *db, const char *sql, reel_buf_t *b) {
    sqlite3_stmt *st = NULL;
    long long n = 0, more = 0;
    size_t runs = 0;
    sqlite3_int64 first = 0, last = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    for (int step = sqlite3_step(st);; step = sqlite3_step(st)) {
        sqlite3_int64 id = step == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        if (step == SQLITE_ROW && n && id == last + 1) {
            last = id;
            n++;
            continue;
        }
        if (n && runs < 10) {
            reel_buf_printf(b, "%s%lld", runs ? ", " : "", (long long)first);
            if (last > first)
                reel_buf_printf(b, "-%lld", (long long)last);
        } else if (n) {
            more += last - first + 1;
        }
        if (n)
            runs++;
        if (step != SQLITE_ROW)
            break;
        first = last = id;
        n++;
    }
    sqlite3_finalize(st);
    if (more)
        reel_buf_printf(b, " and %lld more", more);
    return n;
}

/* The flows that were only in the missing segments: those the old index
 * had there (rebuild_lost, without a row now) and, what the spool alone
 * tells when there is no old index (it is lost), the ids missing between
 * the last flow that started before a gap and the first that started
 * after it (ids are given in the order flows start). Into temp.gap_gone. */
static void gap_gone(reel_session_t *s, const segrange *missing, size_t nmissing) {
    sqlite3_exec(s->db,
                 "CREATE TEMP TABLE IF NOT EXISTS gap_gone(id INTEGER PRIMARY KEY);"
                 "DELETE FROM temp.gap_gone;"
                 "INSERT OR IGNORE INTO temp.gap_gone SELECT id FROM rebuild_lost WHERE msg LIKE "
                 "'%.zst is missing' AND id NOT IN (SELECT id FROM flows);"
                 "CREATE TEMP TABLE IF NOT EXISTS gap_span(id INTEGER PRIMARY KEY, lo, hi);"
                 "DELETE FROM temp.gap_span;"
                 "INSERT INTO temp.gap_span SELECT f.id, min(ff.segment), max(ff.segment) FROM "
                 "flows f JOIN flow_frames ff ON ff.flow_id = f.id WHERE f.uuid != '' GROUP BY "
                 "f.id;",
                 NULL, NULL, NULL);
    for (size_t i = 0; i < nmissing; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(
                s->db,
                "WITH a(v) AS (SELECT coalesce(max(id), 0) FROM temp.gap_span WHERE lo < ?1), "
                "b(v) AS (SELECT min(id) FROM temp.gap_span WHERE lo > ?2), "
                "r(id) AS (SELECT (SELECT v FROM a) + 1 UNION ALL SELECT id + 1 FROM r WHERE "
                "id + 1 < (SELECT v FROM b)) "
                "INSERT OR IGNORE INTO temp.gap_gone SELECT id FROM r WHERE id < (SELECT v FROM "
                "b) AND id NOT IN (SELECT id FROM flows)",
                -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, missing[i].first);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)missing[i].first + missing[i].count - 1);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
    }
}

/* After dmg_finish (which checks the flows open at a cut as they were
 * recorded): the flows mark_lost marked get the state `error` and its
 * message; says what was lost where. */
static reel_rc lost_errors(reel_session_t *s, const segrange *missing, size_t nmissing,
                           reel_err_t *err) {
    long long marked = 0, gone = 0;
    lost_counts(s->db, "%.zst is missing", &marked, &gone);
    reel_rc rc =
        reel_index_exec(s->db,
                        "UPDATE flows SET state = 'error', error = (SELECT msg FROM rebuild_lost r "
                        "WHERE r.id = flows.id) || coalesce('; ' || error, '') WHERE id IN "
                        "(SELECT id FROM rebuild_lost WHERE mark)",
                        err);
    if (rc != REEL_OK)
        return rc;
    note_cuts(s);
    if (nmissing == 0)
        return REEL_OK;
    reel_buf_t names;
    reel_buf_init(&names, 0);
    for (size_t i = 0; i < nmissing && i < 10; i++) {
        if (i)
            reel_buf_puts(&names, ", ");
        range_name(&names, missing[i]);
    }
    if (nmissing > 10)
        reel_buf_printf(&names, " and %zu more runs", nmissing - 10);
    reel_buf_t ids;
    reel_buf_init(&ids, 0);
    gap_gone(s, missing, nmissing);
    gone = ids_text(s->db, "SELECT id FROM temp.gap_gone ORDER BY id", &ids);
    note(s,
         "spool %s %s missing: %lld flow%s that had records there lost them (marked with an "
         "error), %lld flow%s that %s only there %s gone%s%s",
         (const char *)names.data, nmissing == 1 && missing[0].count == 1 ? "is" : "are", marked,
         marked == 1 ? "" : "s", gone, gone == 1 ? "" : "s", gone == 1 ? "was" : "were",
         gone == 1 ? "is" : "are", gone ? (gone == 1 ? ": id " : ": ids ") : "",
         gone ? (const char *)ids.data : "");
    reel_buf_free(&ids);
    reel_buf_free(&names);
    return REEL_OK;
}

/* ---- flows that lost records in a damaged spool range ---- */

/* SQL for a spool position that sorts as the spool does: segment, then
 * offset (offsets stay below 2^40). */
#define SQL_POS(seg, off) "((" seg ") << 40 | (" off "))"

/* What the index row and the spool say of one flow: enough to tell whether
 * it can have lost records. */
typedef struct {
    int has_start, http, has_req_head, has_resp_head, finished, complete;
    int64_t size[2], dropped[2];
    int truncated[2];
    uint64_t stored[2]; /* body bytes the spool holds */
    /* The body is stored without the Content-Encoding its head names (a
     * HAR import): its size, the wire's, says nothing of how many bytes
     * are stored. */
    int decoded[2];
} flow_facts;

/* The columns facts_load reads, in its order. An interrupted flow is not
 * finished: the end recovery wrote for it (mark_interrupted) says where its
 * run ended, not that records before it were all there; its sizes are
 * those stored then. */
#define FACTS_COLS                                                                                \
    "uuid != '', kind = 'http', method IS NOT NULL, status IS NOT NULL, state IN ('complete', "   \
    "'error'), state = 'complete', request_body_size, response_body_size, "                       \
    "request_body_dropped, response_body_dropped, request_truncated, response_truncated"
#define FACTS_NCOLS 12

static void facts_load(sqlite3_stmt *st, int col, flow_facts *f) {
    memset(f, 0, sizeof *f);
    f->has_start = sqlite3_column_int(st, col);
    f->http = sqlite3_column_int(st, col + 1);
    f->has_req_head = sqlite3_column_int(st, col + 2);
    f->has_resp_head = sqlite3_column_int(st, col + 3);
    f->finished = sqlite3_column_int(st, col + 4);
    f->complete = sqlite3_column_int(st, col + 5);
    for (int d = 0; d < 2; d++) {
        f->size[d] = sqlite3_column_int64(st, col + 6 + d);
        f->dropped[d] = sqlite3_column_int64(st, col + 8 + d);
        f->truncated[d] = sqlite3_column_int(st, col + 10 + d);
    }
}

/* The most body bytes of direction d (0 request, 1 response) the spool
 * should hold; *exact when it must hold exactly that many (a complete flow
 * whose body body_limit did not cut, or an empty body). A body stored
 * decoded can be shorter than its size on the wire without being cut
 * (docs/format.md): no length is recorded for it to be held to, so a
 * loss of its chunks shows only in the records around them. */
static uint64_t body_expected(const flow_facts *f, int d, int *exact) {
    if (f->decoded[d]) {
        *exact = 0;
        return 0;
    }
    int64_t e = f->size[d] - f->dropped[d];
    if (e < 0)
        e = 0;
    *exact = e == 0 || (f->complete && !f->truncated[d]);
    return (uint64_t)e;
}

/* Whether every record of the flow is accounted for: its start, its heads
 * if it completed, bodies as long as its end says, and its end. */
static int flow_intact(const flow_facts *f) {
    if (!f->has_start || !f->finished)
        return 0;
    if (f->complete && f->http && (!f->has_req_head || !f->has_resp_head))
        return 0;
    for (int d = 0; d < 2; d++) {
        int exact;
        if (f->stored[d] < body_expected(f, d, &exact))
            return 0;
    }
    return 1;
}

/* Starts collecting, for each damaged range a scan skips, the flows open
 * at it (recovery and repair). */
static reel_rc dmg_begin(reel_session_t *s, reel_err_t *err) {
    return reel_index_exec(s->db,
                           "CREATE TEMP TABLE IF NOT EXISTS dmg_open(segment INTEGER, offset "
                           "INTEGER, length INTEGER, flow_id INTEGER, req INTEGER, resp INTEGER, "
                           "why TEXT);"
                           "DELETE FROM temp.dmg_open;"
                           "CREATE TEMP TABLE IF NOT EXISTS dmg_unv(flow_id INTEGER, segment "
                           "INTEGER, offset INTEGER, why TEXT);"
                           "DELETE FROM temp.dmg_unv;"
                           "CREATE TEMP TABLE IF NOT EXISTS dmg_err(id INTEGER PRIMARY KEY, "
                           "msg TEXT);"
                           "DELETE FROM temp.dmg_err;",
                           err);
}

/* A scan skipped [off, off + len) of segment seg, with the index committed
 * up to it: the flows open there (started, not yet ended) may have had
 * records in it. Their body sizes in the index are still the bytes stored
 * so far, which is where a hole in their bodies begins. */
static void dmg_note(reel_session_t *s, uint32_t seg, uint64_t off, uint64_t len,
                     const char *why) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO temp.dmg_open SELECT ?1, ?2, ?3, id, request_body_size, "
                           "response_body_size, ?4 FROM flows WHERE state = 'open'",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, seg);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)off);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)len);
        sqlite3_bind_text(st, 4, why, -1, SQLITE_TRANSIENT);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
}

/* The frame at off of segment seg holds records salvaged from a frame whose
 * checksum failed or that did not decode (mark_unverified): every flow with
 * records in it is marked damaged (its bytes there are unverified), with
 * the index committed up to it. */
static void dmg_unverified(reel_session_t *s, uint32_t seg, uint64_t off, const char *why) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO temp.dmg_unv SELECT flow_id, ?1, ?2, ?3 FROM flow_frames "
                           "WHERE segment = ?1 AND offset = ?2",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, seg);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)off);
        sqlite3_bind_text(st, 3, why, -1, SQLITE_TRANSIENT);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
}

/* What the spool holds of one flow's bodies, per direction. */
typedef struct {
    uint64_t stored[2];
    uint8_t decoded[2]; /* as flow_facts.decoded */
} stored_ctx;

/* Whether a head with body_decoded set names a Content-Encoding other
 * than identity: only then is its stored body not the wire's (a HAR
 * import's response head says body_decoded whatever the headers say). */
static int decoded_body(protobuf_c_boolean body_decoded, Reel__Header *const *h, size_t n) {
    if (!body_decoded)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const ProtobufCBinaryData *nm = &h[i]->name, *v = &h[i]->value;
        if (nm->len == 16 && strncasecmp((const char *)nm->data, "content-encoding", 16) == 0 &&
            !reel_coding_is_identity((const char *)v->data, v->len))
            return 1;
    }
    return 0;
}

/* Stored bytes of each direction: bodies, and the payloads of WebSocket
 * and TCP messages, which a flow's sizes count too; and whether a body is
 * stored decoded. */
static void count_stored(const Reel__Record *rec, stored_ctx *c) {
    if (rec->event_case == REEL__RECORD__EVENT_REQUEST_BODY)
        c->stored[0] += rec->request_body->data.len;
    else if (rec->event_case == REEL__RECORD__EVENT_RESPONSE_BODY)
        c->stored[1] += rec->response_body->data.len;
    else if (rec->event_case == REEL__RECORD__EVENT_MESSAGE) {
        /* A payload body_limit cut counts whole, once (its first record;
         * the others repeat its length): the bytes it lacks were never
         * to be stored, as a cut body's (truncated) are not. */
        const Reel__Message *m = rec->message;
        c->stored[m->from_client ? 0 : 1] +=
            !m->truncated ? m->data.len : m->continued ? 0 : m->length;
    }
    else if (rec->event_case == REEL__RECORD__EVENT_REQUEST_HEAD)
        c->decoded[0] =
            (uint8_t)decoded_body(rec->request_head->body_decoded, rec->request_head->headers,
                                  rec->request_head->n_headers);
    else if (rec->event_case == REEL__RECORD__EVENT_RESPONSE_HEAD)
        c->decoded[1] =
            (uint8_t)decoded_body(rec->response_head->body_decoded, rec->response_head->headers,
                                  rec->response_head->n_headers);
}

static int stored_cb(void *ctx, const Reel__Record *rec) {
    count_stored(rec, ctx);
    return 0;
}

/* One damaged range that touched a flow, and the flow's stored body bytes
 * before it. */
typedef struct {
    uint32_t seg;
    uint64_t off, len;
    uint64_t at[2];
    char why[200]; /* the range's reason ("set aside: ..." for a salvaged frame) */
} dmg_hit;

static const char *const dmg_dir[3] = {"request", "response", "flow"};

static reel_rc dmg_row(sqlite3_stmt *ins, uint64_t id, int dir, uint64_t off, int64_t len,
                       const char *what, const dmg_hit *h, reel_err_t *err) {
    char reason[300];
    if (strncmp(h->why, "set aside: ", 11) == 0)
        snprintf(reason, sizeof reason, "%s with a damaged frame of spool segment %08u.zst (%s)",
                 what, h->seg, h->why + 11);
    else if (strcmp(h->why, CUT_REASON) == 0)
        snprintf(reason, sizeof reason,
                 "%s with the %llu bytes after offset %llu of spool segment %08u.zst, which was "
                 "cut short there",
                 what, (unsigned long long)h->len, (unsigned long long)h->off, h->seg);
    else
        snprintf(reason, sizeof reason,
                 "%s with the %llu damaged bytes at offset %llu of spool segment %08u.zst", what,
                 (unsigned long long)h->len, (unsigned long long)h->off, h->seg);
    sqlite3_bind_int64(ins, 1, (sqlite3_int64)id);
    sqlite3_bind_text(ins, 2, dmg_dir[dir], -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, (sqlite3_int64)off);
    sqlite3_bind_int64(ins, 4, len);
    sqlite3_bind_text(ins, 5, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(ins, 6, reel_now_us());
    int rc = sqlite3_step(ins);
    sqlite3_reset(ins);
    if (rc != SQLITE_DONE)
        return reel_err_set(err, REEL_DB, "session.db: flow_damage: %s",
                            sqlite3_errmsg(sqlite3_db_handle(ins)));
    return REEL_OK;
}

/* A flow that lost its start record or a head to damage is not what its
 * state says: without them it has no URL, method or status of its own,
 * and a `complete` that lists nothing reads as whole. As for a missing
 * segment (lost_errors), it gets an error naming what it lost and where
 * (with its body losses), kept in temp.dmg_err until dmg_errors, after
 * mark_interrupted, whose end record would set the error of an open flow
 * again. A flow that lost only body bytes or its end keeps its state: its
 * flow_damage rows say it, and mark_interrupted ends an open one. */
static void dmg_error(reel_session_t *s, uint64_t id, const flow_facts *f, const dmg_hit *h) {
    const char *parts[5];
    size_t n = 0;
    if (!f->has_start)
        parts[n++] = "its start record";
    if (f->complete && f->http && !f->has_req_head) {
        parts[n] = n ? "request head" : "its request head";
        n++;
    }
    if (f->complete && f->http && !f->has_resp_head) {
        parts[n] = n ? "response head" : "its response head";
        n++;
    }
    if (n == 0)
        return;
    for (int d = 0; d < 2; d++) {
        int exact;
        if (f->stored[d] < body_expected(f, d, &exact))
            parts[n++] = d ? "response body bytes" : "request body bytes";
    }
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_buf_puts(&b, "records lost: ");
    for (size_t i = 0; i < n; i++)
        reel_buf_printf(&b, "%s%s", i == 0 ? "" : i + 1 == n ? " and " : ", ", parts[i]);
    reel_buf_printf(&b, ", with the damaged spool bytes at offset %llu of segment %08u.zst",
                    (unsigned long long)h->off, h->seg);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO temp.dmg_err(id, msg) VALUES(?, ?)", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_text(st, 2, (const char *)b.data, (int)b.len, SQLITE_TRANSIENT);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    reel_buf_free(&b);
}

/* After mark_interrupted: the flows dmg_error noted get their error, before
 * any the spool gave them, and a complete one the state `error`, as a flow
 * that lost records in a missing segment does. */
static reel_rc dmg_errors(reel_session_t *s, reel_err_t *err) {
    return reel_index_exec(s->db,
                           "UPDATE flows SET state = CASE state WHEN 'complete' THEN 'error' "
                           "ELSE state END, error = (SELECT msg FROM temp.dmg_err e WHERE e.id "
                           "= flows.id) || coalesce('; ' || error, '') WHERE id IN (SELECT id "
                           "FROM temp.dmg_err);"
                           "DELETE FROM temp.dmg_err;",
                           err);
}

/* Records what flow id lost, given the damaged ranges that touched it
 * (hits, in spool order). Returns REEL_OK with *marked set if it is
 * damaged. */
static reel_rc dmg_flow(reel_session_t *s, sqlite3_stmt *facts_q, sqlite3_stmt *ins, uint64_t id,
                        const dmg_hit *hits, size_t nhits, int *marked, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    flow_facts f;
    *marked = 0;
    sqlite3_bind_int64(facts_q, 1, (sqlite3_int64)id);
    int step = sqlite3_step(facts_q);
    if (step == SQLITE_ROW)
        facts_load(facts_q, 0, &f);
    sqlite3_reset(facts_q);
    if (step != SQLITE_ROW)
        return REEL_OK; /* gone with the range */
    stored_ctx sc = {{0, 0}, {0, 0}};
    reel_err_t e2;
    reel_err_clear(&e2);
    reel_store_read_flow(s, id, stored_cb, &sc, &e2);
    for (int d = 0; d < 2; d++) {
        f.stored[d] = sc.stored[d];
        f.decoded[d] = sc.decoded[d];
    }
    if (flow_intact(&f))
        return REEL_OK;
    const dmg_hit *first = &hits[0], *last = &hits[nhits - 1];
    if (!f.has_start)
        rc = dmg_row(ins, id, 2, 0, -1, "its start record was lost", first, err);
    if (rc == REEL_OK && f.complete && f.http && !f.has_req_head)
        rc = dmg_row(ins, id, 2, 0, -1, "its request head was lost", first, err);
    if (rc == REEL_OK && f.complete && f.http && !f.has_resp_head)
        rc = dmg_row(ins, id, 2, 0, -1, "its response head was lost", first, err);
    for (int d = 0; d < 2 && rc == REEL_OK; d++) {
        int exact;
        uint64_t want = body_expected(&f, d, &exact);
        if (f.stored[d] >= want)
            continue;
        /* One range: the hole is there, and as long as what is missing.
         * Several: any of them may hold some of it. */
        for (size_t k = 0; k < nhits && rc == REEL_OK; k++) {
            if (exact && nhits == 1)
                rc = dmg_row(ins, id, d, hits[k].at[d], (int64_t)(want - f.stored[d]),
                             "body bytes lost", &hits[k], err);
            else
                rc = dmg_row(ins, id, d, hits[k].at[d], -1, "body bytes may have been lost",
                             &hits[k], err);
        }
    }
    if (rc == REEL_OK && !f.finished)
        rc = dmg_row(ins, id, 2, 0, -1,
                     "its end record may have been lost (the flow may have finished)", last,
                     err);
    if (rc == REEL_OK)
        dmg_error(s, id, &f, first);
    *marked = rc == REEL_OK;
    return rc;
}

/* After a scan: every flow that a damaged range it skipped may have taken
 * records from (the flows open at the range, and flows whose start record
 * is gone, from the nearest range before their first record) and that does
 * not check out whole is marked damaged, with a flow_damage row for each
 * known or possible hole. */
static reel_rc dmg_finish(reel_session_t *s, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    sqlite3_stmt *q = NULL, *facts_q = NULL, *ins = NULL, *upd = NULL;
    dmg_hit *hits = NULL;
    size_t nhits = 0, cap = 0;
    long long nmarked = 0;
    uint64_t cur = 0;
    /* Flows without a start record: the nearest range before their first. */
    rc = reel_index_exec(s->db,
                         "INSERT INTO temp.dmg_open SELECT d.segment, d.offset, d.length, f.id, "
                         "0, 0, d.reason FROM flows f JOIN damage d ON " SQL_POS("d.segment", "d.offset")
                         " = (SELECT max(" SQL_POS("d2.segment", "d2.offset") ") FROM damage d2 "
                         "WHERE d2.reason != 'segment file missing' AND "
                         SQL_POS("d2.segment", "d2.offset") " < (SELECT min("
                         SQL_POS("segment", "offset") ") FROM flow_frames WHERE flow_id = f.id)) "
                         "WHERE f.uuid = '' AND f.damaged = 0 AND NOT EXISTS (SELECT 1 FROM "
                         "temp.dmg_open o WHERE o.flow_id = f.id AND o.segment = d.segment AND "
                         "o.offset = d.offset)",
                         err);
    if (rc != REEL_OK ||
        (rc = reel_index_prepare(s->db,
                                 "SELECT flow_id, segment, offset, length, req, resp, why FROM "
                                 "temp.dmg_open ORDER BY flow_id, segment, offset",
                                 &q, err)) != REEL_OK ||
        (rc = reel_index_prepare(s->db, "SELECT " FACTS_COLS " FROM flows WHERE id = ?", &facts_q,
                                 err)) != REEL_OK ||
        (rc = reel_index_prepare(s->db,
                                 "INSERT INTO flow_damage(flow_id, direction, offset, length, "
                                 "reason, found_us) VALUES(?, ?, ?, ?, ?, ?)",
                                 &ins, err)) != REEL_OK ||
        (rc = reel_index_prepare(s->db, "UPDATE flows SET damaged = 1 WHERE id = ? AND damaged = 0",
                                 &upd, err)) != REEL_OK)
        goto out;
    for (int more = 1; more && rc == REEL_OK;) {
        int step = sqlite3_step(q);
        more = step == SQLITE_ROW;
        uint64_t id = more ? (uint64_t)sqlite3_column_int64(q, 0) : 0;
        if ((!more || id != cur) && nhits) {
            int marked = 0;
            if ((rc = dmg_flow(s, facts_q, ins, cur, hits, nhits, &marked, err)) != REEL_OK)
                break;
            if (marked) {
                sqlite3_bind_int64(upd, 1, (sqlite3_int64)cur);
                if (sqlite3_step(upd) != SQLITE_DONE)
                    rc = reel_index_db_error(err, REEL_DB, s->db);
                sqlite3_reset(upd);
                nmarked++;
            }
            nhits = 0;
        }
        if (!more)
            break;
        cur = id;
        if (nhits == cap)
            hits = reel_realloc(hits, (cap = cap ? cap * 2 : 8) * sizeof *hits);
        hits[nhits++] = (dmg_hit){.seg = (uint32_t)sqlite3_column_int64(q, 1),
                                  .off = (uint64_t)sqlite3_column_int64(q, 2),
                                  .len = (uint64_t)sqlite3_column_int64(q, 3),
                                  .at = {(uint64_t)sqlite3_column_int64(q, 4),
                                         (uint64_t)sqlite3_column_int64(q, 5)}};
        const unsigned char *why = sqlite3_column_text(q, 6);
        snprintf(hits[nhits - 1].why, sizeof hits[nhits - 1].why, "%s",
                 why ? (const char *)why : "");
    }
    if (rc == REEL_OK) {
        /* Flows with records salvaged, unverified, from a frame whose
         * checksum failed or that did not decode: their bytes there may
         * be wrong. */
        sqlite3_stmt *u = NULL;
        rc = reel_index_prepare(s->db,
                                "SELECT DISTINCT u.flow_id, u.segment, u.offset, u.why FROM "
                                "temp.dmg_unv u JOIN flows f ON f.id = u.flow_id",
                                &u, err);
        while (rc == REEL_OK && sqlite3_step(u) == SQLITE_ROW) {
            uint64_t id = (uint64_t)sqlite3_column_int64(u, 0);
            dmg_hit h = {.seg = (uint32_t)sqlite3_column_int64(u, 1),
                         .off = (uint64_t)sqlite3_column_int64(u, 2)};
            const unsigned char *why = sqlite3_column_text(u, 3);
            snprintf(h.why, sizeof h.why, "%s", why ? (const char *)why : "");
            rc = dmg_row(ins, id, 2, 0, -1,
                         strstr(h.why, "checksum f")
                             ? "its records in the frame salvaged from one whose checksum "
                               "failed are unverified (some bytes may be wrong)"
                             : "its records in the frame salvaged from one with a zstd block "
                               "that did not decode are unverified (some bytes may be wrong)",
                         &h, err);
            sqlite3_bind_int64(upd, 1, (sqlite3_int64)id);
            if (rc == REEL_OK && sqlite3_step(upd) != SQLITE_DONE)
                rc = reel_index_db_error(err, REEL_DB, s->db);
            if (rc == REEL_OK && sqlite3_changes(s->db) > 0)
                nmarked++;
            sqlite3_reset(upd);
        }
        sqlite3_finalize(u);
    }
    if (rc == REEL_OK && nmarked)
        note(s,
             "%lld flow%s lost records in the damaged ranges (marked damaged; 'reel flows %s "
             "~damaged' lists them, 'reel flow' shows what is missing)",
             nmarked, nmarked == 1 ? "" : "s", s->name);
out:
    sqlite3_finalize(q);
    sqlite3_finalize(facts_q);
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    free(hits);
    return rc;
}

/* ---- rebuilding the index ----
 *
 * A rebuild empties the derived tables in one transaction and fills them
 * again from the spool in many. Everything it must know from the old index
 * is saved in that same transaction, in tables that outlive a crash of the
 * process: rebuild_keep (the old rows of every flow), rebuild_lost
 * (flows that lost records in a missing segment or past a cut), the damage
 * rows of the missing segments and of the cuts, and meta `rebuilding`
 * ("PID MAX_FLOW_ID", set just before). The last
 * transaction of the rebuild drops the two tables and the meta key. A
 * rebuild that finds them (its predecessor died) starts again from the
 * first segment with what they say (docs/format.md, section 6). */

#define REBUILD_KEY "rebuilding"

/* Whether db has a table of that name. */
static int has_table(sqlite3 *db, const char *name) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

/* Whether sql prepares on db (the tables and columns it names exist). */
static int prepares(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    return ok;
}

/* The PID in meta `rebuilding`, and in *max (may be NULL) the highest flow
 * id the index knew before that rebuild began; 0 when there is none. */
static long rebuild_pid(sqlite3 *db, uint64_t *max) {
    char *v = reel_index_meta_get(db, REBUILD_KEY);
    long pid = 0;
    if (max)
        *max = 0;
    if (v) {
        char *end = NULL;
        pid = strtol(v, &end, 10);
        if (pid <= 0)
            pid = -1; /* there, without a PID */
        if (max && end)
            *max = strtoull(end, NULL, 10);
    }
    free(v);
    return pid;
}

/* Sets meta `rebuilding` to this process, keeping the highest flow id of
 * the marker there (an interrupted rebuild's: the index it left knows
 * fewer flows) or else taking the index's. *fresh: there was none. */
static reel_rc rebuild_mark(reel_session_t *s, uint64_t *old_max, int *fresh, reel_err_t *err) {
    uint64_t had = 0, cur = reel_index_max_flow_id(s->db);
    *fresh = rebuild_pid(s->db, &had) == 0;
    *old_max = had > cur ? had : cur;
    char v[64];
    snprintf(v, sizeof v, "%ld %llu", (long)getpid(), (unsigned long long)*old_max);
    return reel_index_meta_set(s->db, REBUILD_KEY, v, err);
}

/* The columns that flows and table t have in common, quoted and
 * comma-separated (owned; NULL on error): a table saved by an older reel
 * may lack columns that a migration added since. */
static char *shared_columns(sqlite3 *db, const char *t) {
    sqlite3_stmt *st = NULL;
    char *cols = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT group_concat('\"' || name || '\"', ', ') FROM "
                           "pragma_table_info(?1) WHERE name IN (SELECT name FROM "
                           "pragma_table_info('flows'))",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, t, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            cols = reel_strdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return cols;
}

reel_rc reel__session_rebuild_begin(reel_session_t *s, reel_err_t *err) {
    uint64_t old_max = 0;
    int fresh = 0;
    reel_rc rc = rebuild_mark(s, &old_max, &fresh, err);
    if (rc == REEL_OK && (rc = reel__session_readers_exclude(s, err)) != REEL_OK && fresh)
        sqlite3_exec(s->db, "DELETE FROM meta WHERE key = '" REBUILD_KEY "'", NULL, NULL, NULL);
    return rc;
}

void reel__session_rebuild_end(reel_session_t *s, int undo) {
    if (undo)
        sqlite3_exec(s->db, "DELETE FROM meta WHERE key = '" REBUILD_KEY "'", NULL, NULL, NULL);
    reel__session_readers_allow(s);
}

/* After a rebuild's scan: a flow with annotations, tags or a mark whose
 * records are all gone keeps a row (the old index's, from rebuild_keep,
 * else a bare one), marked damaged, so recovery and repair never drop user
 * data. */
static reel_rc keep_user_flows(reel_session_t *s, reel_err_t *err) {
    char *cols = shared_columns(s->db, "rebuild_keep");
    if (cols == NULL)
        return reel_err_set(err, REEL_DB, "session.db: rebuild_keep has no columns of flows");
    char *sql = reel_asprintf(
        "CREATE TEMP TABLE IF NOT EXISTS kept_ids(id INTEGER PRIMARY KEY);"
        "DELETE FROM temp.kept_ids;"
        "INSERT INTO temp.kept_ids SELECT flow_id FROM annotations UNION SELECT flow_id FROM "
        "tags UNION SELECT flow_id FROM marks EXCEPT SELECT id FROM flows;"
        "INSERT INTO flows(%s) SELECT %s FROM main.rebuild_keep WHERE id IN (SELECT id FROM "
        "temp.kept_ids);"
        "INSERT INTO flows(id, uuid, state, start_us) SELECT k.id, '', 'error', coalesce((SELECT "
        "min(created_us) FROM annotations a WHERE a.flow_id = k.id), (SELECT created_us FROM "
        "marks m WHERE m.flow_id = k.id), 0) FROM temp.kept_ids k WHERE k.id NOT IN (SELECT id "
        "FROM flows);"
        "UPDATE flows SET damaged = 1, state = CASE state WHEN 'open' THEN 'error' ELSE state "
        "END, error = coalesce(error, 'records lost: none of its records are left in the spool') "
        "WHERE id IN (SELECT id FROM temp.kept_ids);"
        "INSERT INTO flow_damage(flow_id, direction, offset, length, reason, found_us) SELECT id, "
        "'flow', 0, -1, 'none of its records are left in the spool; the row is what the index "
        "knew, kept for its annotations, tags or mark', CAST(strftime('%%s', 'now') AS INTEGER) "
        "* 1000000 FROM temp.kept_ids;",
        cols, cols);
    reel_rc rc = reel_index_exec(s->db, sql, err);
    free(sql);
    free(cols);
    long long n = 0;
    sqlite3_stmt *st = NULL;
    if (rc == REEL_OK &&
        sqlite3_prepare_v2(s->db, "SELECT count(*) FROM temp.kept_ids", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (n)
        note(s,
             "%lld flow%s with annotations, tags or a mark lost all %s records: kept in the index, "
             "marked damaged",
             n, n == 1 ? "" : "s", n == 1 ? "its" : "their");
    return rc;
}

/* After keep_user_flows: a flow the old index had whose records all went
 * with damaged spool bytes (a frame whose later zstd blocks did not decode,
 * records salvage had to drop for room, a range that could not be
 * salvaged) would otherwise leave the index without a word. It keeps the
 * old index's row (rebuild_keep), marked damaged with an error and a
 * `flow` row in flow_damage naming the damaged range nearest after where
 * its records began, and the report names it. Flows gone with a missing
 * segment or past a cut are counted apart (rebuild_lost), and the ones
 * retention dropped were not in the old index. */
static reel_rc keep_vanished(reel_session_t *s, reel_err_t *err) {
    if (!prepares(s->db, "SELECT rb_first, rb_why FROM rebuild_pos"))
        return REEL_OK; /* saved by an older reel that kept only flows with user data */
    char *cols = shared_columns(s->db, "rebuild_keep");
    if (cols == NULL)
        return reel_err_set(err, REEL_DB, "session.db: rebuild_keep has no columns of flows");
    char *sql = reel_asprintf(
        "CREATE TEMP TABLE IF NOT EXISTS vanished(id INTEGER PRIMARY KEY, why TEXT);"
        "DELETE FROM temp.vanished;"
        "INSERT INTO temp.vanished SELECT k.id, coalesce('none of its records are left in the "
        "spool: they were in ' || (SELECT CASE WHEN d.reason LIKE 'set aside: %%' "
        "THEN 'the damaged bytes set aside at offset ' || d.offset || ' of spool segment ' || "
        "printf('%%08d', d.segment) || '.zst (' || substr(d.reason, 12) || ')' ELSE 'the ' || "
        "d.length || ' damaged bytes at offset ' || d.offset || ' of spool segment ' || "
        "printf('%%08d', d.segment) || '.zst (' || d.reason || ')' END FROM damage d "
        "WHERE " SQL_POS(
            "d.segment",
            "d.offset") " >= p.rb_first AND d.reason NOT IN ('segment file "
                        "missing', '" CUT_REASON
                        "') ORDER BY d.segment, d.offset LIMIT 1) || '; the row is "
                        "what the index knew', p.rb_why, 'none of its records are left in the "
                        "spool: they were "
                        "lost with damaged spool bytes; the row is what the index knew') FROM "
                        "main.rebuild_keep "
                        "k LEFT JOIN main.rebuild_pos p ON p.id = k.id WHERE k.id NOT IN (SELECT "
                        "id FROM flows) AND k.id NOT IN (SELECT id "
                        "FROM "
                        "main.rebuild_lost) AND k.id NOT IN (SELECT flow_id FROM retired_flows);"
                        "INSERT INTO flows(%s) SELECT %s FROM main.rebuild_keep WHERE id IN "
                        "(SELECT id FROM "
                        "temp.vanished);"
                        "UPDATE flows SET damaged = 1, state = CASE state WHEN 'open' THEN 'error' "
                        "ELSE state "
                        "END, error = 'records lost: none of its records are left in the spool' || "
                        "coalesce('; "
                        "' || error, '') WHERE id IN (SELECT id FROM temp.vanished) AND "
                        "coalesce(error, '') NOT "
                        "LIKE 'records lost: none of its records%%';"
                        "INSERT INTO flow_damage(flow_id, direction, offset, length, reason, "
                        "found_us) SELECT id, "
                        "'flow', 0, -1, why, CAST(strftime('%%s', 'now') AS INTEGER) * 1000000 "
                        "FROM "
                        "temp.vanished;",
        cols, cols);
    reel_rc rc = reel_index_exec(s->db, sql, err);
    free(sql);
    free(cols);
    if (rc != REEL_OK)
        return rc;
    reel_buf_t ids;
    reel_buf_init(&ids, 0);
    long long n = ids_text(s->db, "SELECT id FROM temp.vanished ORDER BY id", &ids);
    if (n)
        note(s,
             "%lld flow%s that %s only in damaged spool bytes lost all %s records: kept in the "
             "index as the old index had %s, marked damaged: id%s %s",
             n, n == 1 ? "" : "s", n == 1 ? "was" : "were", n == 1 ? "its" : "their",
             n == 1 ? "it" : "them", n == 1 ? "" : "s", (const char *)ids.data);
    reel_buf_free(&ids);
    return REEL_OK;
}

/* After the rebuild has marked what each flow lost: a flow whose start
 * record is gone (to a damaged frame, a missing segment) would show no
 * URL, method, start or status, though the old index knew them, and the
 * report would not say what was kept. It takes the old index's row
 * (rebuild_keep) where the spool says nothing: a NULL column, and uuid,
 * start_us and kind, which without a start record hold '', 0 and the
 * default 'http'. What the spool still says (its end, a surviving head,
 * its body sizes) stays, as do the state, error and marks this rebuild
 * gave it. A later repair, which finds the start gone again, takes the
 * same row from the index this one leaves. */
static reel_rc keep_lost_starts(reel_session_t *s, reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    reel_buf_t set;
    reel_buf_init(&set, 0);
    reel_buf_puts(&set, "start_us = CASE flows.start_us WHEN 0 THEN k.start_us ELSE "
                        "flows.start_us END, kind = CASE flows.kind WHEN 'http' THEN k.kind "
                        "ELSE flows.kind END");
    /* nullable columns both tables have (one saved by an older reel may
     * lack some), but those this rebuild decides */
    if (sqlite3_prepare_v2(s->db,
                           "SELECT name FROM pragma_table_info('flows') WHERE NOT \"notnull\" AND "
                           "name NOT IN ('error', 'id') AND name IN (SELECT name FROM "
                           "pragma_table_info('rebuild_keep'))",
                           -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *c = (const char *)sqlite3_column_text(st, 0);
            reel_buf_printf(&set, ", \"%s\" = coalesce(flows.\"%s\", k.\"%s\")", c, c, c);
        }
    sqlite3_finalize(st);
    char *sql = reel_asprintf(
        "CREATE TEMP TABLE IF NOT EXISTS lost_start(id INTEGER PRIMARY KEY);"
        "DELETE FROM temp.lost_start;"
        "INSERT INTO temp.lost_start SELECT f.id FROM flows f JOIN main.rebuild_keep k ON k.id = "
        "f.id WHERE f.uuid = '' AND k.uuid != '';"
        "UPDATE flows SET %s, uuid = k.uuid FROM main.rebuild_keep k WHERE k.id = flows.id AND "
        "flows.id IN (SELECT id FROM temp.lost_start);",
        (const char *)set.data);
    reel_buf_free(&set);
    reel_rc rc = reel_index_exec(s->db, sql, err);
    free(sql);
    if (rc != REEL_OK)
        return rc;
    reel_buf_t ids;
    reel_buf_init(&ids, 0);
    long long n = ids_text(s->db, "SELECT id FROM temp.lost_start ORDER BY id", &ids);
    if (n)
        note(s,
             "%lld flow%s whose start record %s lost %s what the old index knew of %s (URL, "
             "start, status) where the spool says nothing: id%s %s",
             n, n == 1 ? "" : "s", n == 1 ? "was" : "were", n == 1 ? "keeps" : "keep",
             n == 1 ? "it" : "them", n == 1 ? "" : "s", (const char *)ids.data);
    reel_buf_free(&ids);
    return REEL_OK;
}

/* A segment found shorter than the index says: its file ends at `size`,
 * and the index had seen `end` bytes. */
typedef struct {
    uint32_t seg;
    uint64_t size, end;
} segcut;

/* The segments of segs[0..nseg) shorter than the index says; owned. */
static segcut *find_cuts(reel_session_t *s, const uint32_t *segs, size_t nseg, size_t *ncut) {
    segcut *v = NULL;
    *ncut = 0;
    for (size_t i = 0; i < nseg; i++) {
        char name[16];
        reel_spool_segment_name(segs[i], name);
        char *p = reel_asprintf("%s/%s", s->spool_dir, name);
        struct stat st;
        uint64_t end = reel_index_segment_end(s->db, segs[i]);
        if (stat(p, &st) == 0 && (uint64_t)st.st_size < end) {
            v = reel_realloc(v, (*ncut + 1) * sizeof *v);
            v[(*ncut)++] = (segcut){segs[i], (uint64_t)st.st_size, end};
        }
        free(p);
    }
    return v;
}

/* A rebuild that starts again after one died: the one before dropped the
 * old rows (rebuild_keep) of the flows it had written again (prune_keep),
 * which the scan finds again unless the spool changed since (a segment
 * lost, more damage). Their rows as that rebuild wrote them, from the
 * same records, go back into rebuild_keep, so that such a flow is kept,
 * or dropped, as by a rebuild that never died. */
static reel_rc keep_found_again(reel_session_t *s, reel_err_t *err) {
    char *cols = shared_columns(s->db, "rebuild_keep");
    if (cols == NULL)
        return reel_err_set(err, REEL_DB, "session.db: rebuild_keep has no columns of flows");
    char *sql = reel_asprintf("INSERT INTO main.rebuild_keep(%s) SELECT %s FROM flows WHERE uuid "
                              "!= '' AND id NOT IN (SELECT id FROM main.rebuild_keep)",
                              cols, cols);
    reel_rc rc = reel_index_exec(s->db, sql, err);
    free(sql);
    free(cols);
    return rc;
}

/* The transaction that empties the derived tables. Bulk load: the indexes
 * and triggers the schema puts on flows are dropped, and made again from
 * the schema's own definitions once the rows are in (much faster than
 * maintaining them row by row). Dropped before the old rows go: without
 * its trigger (which takes a flow's body text out of the FTS, row by row)
 * and its indexes, clearing flows is a truncation, not deletes row by row
 * (0.7 s of a 5.2 s repair of 200,000 flows). What the trigger did, for
 * every flow at once: the body tables are emptied here (the rebuild fills
 * them again). Unless `resumed` (an interrupted rebuild saved it already),
 * what the rebuild needs of the old index is saved first. */
static reel_rc rebuild_clear(reel_session_t *s, int resumed, const segrange *missing,
                             size_t nmissing, const segcut *cuts, size_t ncut, reel_err_t *err) {
    reel_rc rc = reel_index_exec(s->db, "BEGIN IMMEDIATE", err);
    if (rc != REEL_OK)
        return rc;
    /* The old rows stay for keep_user_flows and keep_vanished: the flows
     * table itself becomes rebuild_keep below (a rename, where a copy of
     * every row cost a repair a fifth more CPU), and rebuild_pos keeps,
     * narrow, where each flow's records began and why an earlier rebuild
     * kept its row without records. */
    char *flows_sql = NULL;
    if (!resumed) {
        rc = reel_index_exec(
            s->db,
            "DROP TABLE IF EXISTS rebuild_keep; DROP TABLE IF EXISTS rebuild_lost;"
            "DROP TABLE IF EXISTS rebuild_pos;"
            "CREATE TABLE rebuild_pos(id INTEGER PRIMARY KEY, rb_first INTEGER, rb_why TEXT);"
            "INSERT INTO rebuild_pos(id, rb_first) SELECT flow_id, min(" SQL_POS(
                "segment", "offset") ") FROM flow_frames GROUP BY flow_id;"
                                     "INSERT INTO rebuild_pos(id, rb_why) SELECT flow_id, "
                                     "min(reason) FROM flow_damage WHERE reason LIKE 'none of "
                                     "its records are left%' GROUP BY flow_id ON CONFLICT(id) "
                                     "DO UPDATE SET rb_why = excluded.rb_why;",
            err);
        sqlite3_stmt *st = NULL;
        if (rc == REEL_OK &&
            sqlite3_prepare_v2(s->db,
                               "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = "
                               "'flows'",
                               -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            flows_sql = reel_strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        if (rc == REEL_OK && flows_sql == NULL)
            rc = reel_err_set(err, REEL_DB, "session.db: the definition of flows cannot be read");
    }
    if (rc == REEL_OK && resumed)
        rc = keep_found_again(s, err);
    if (rc == REEL_OK)
        rc = remember_lost(s, resumed, missing, nmissing, err);
    /* A segment cut short lost the records the index had seen past the
     * cut: the flows that had records in the frames after it, by the
     * index's own links, are marked. A frame the cut goes through is
     * salvaged by the scan, which says what it kept: its flows (mark 0)
     * are only counted if none of their records is left. */
    for (size_t i = 0; rc == REEL_OK && i < ncut; i++) {
        sqlite3_stmt *st = NULL;
        char msg[160];
        cut_msg(msg, sizeof msg, cuts[i].seg, cuts[i].size);
        rc = reel_index_prepare(
            s->db,
            "INSERT OR IGNORE INTO rebuild_lost(id, msg, mark) SELECT ff.flow_id, ?3, "
            "max(f.offset >= ?2) FROM flow_frames ff JOIN frames f ON "
            "f.segment = ff.segment AND f.offset = ff.offset WHERE f.segment = "
            "?1 AND f.offset + f.clen > ?2 GROUP BY ff.flow_id",
            &st, err);
        if (rc == REEL_OK) {
            sqlite3_bind_int64(st, 1, cuts[i].seg);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)cuts[i].size);
            sqlite3_bind_text(st, 3, msg, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = reel_index_db_error(err, REEL_DB, s->db);
        }
        sqlite3_finalize(st);
    }
    size_t n = 0;
    const reel_index_object_t *o = rc == REEL_OK ? reel_index_flows_objects(&n, err) : NULL;
    if (rc == REEL_OK && o == NULL)
        rc = err->code;
    for (size_t i = 0; rc == REEL_OK && i < n; i++) {
        char *sql = reel_asprintf("DROP %s IF EXISTS \"%s\"", o[i].type, o[i].name);
        rc = reel_index_exec(s->db, sql, err);
        free(sql);
    }
    if (rc == REEL_OK)
        rc = reel_index_exec(s->db,
                             "DELETE FROM flow_frames; DELETE FROM frames;"
                             "DELETE FROM damage WHERE reason != '" CUT_REASON "';"
                             "DELETE FROM flow_damage; DELETE FROM body_off;"
                             "DELETE FROM client_conns;"
                             "INSERT INTO body_fts(body_fts) VALUES ('delete-all');"
                             "DELETE FROM body_text; DELETE FROM body_todo;",
                             err);
    /* the old rows become rebuild_keep, and flows is made again empty, as
     * its definition says (the indexes and the trigger went above); a
     * rebuild that starts again has its rebuild_keep already */
    if (rc == REEL_OK && flows_sql)
        rc = reel_index_exec(s->db, "ALTER TABLE flows RENAME TO rebuild_keep", err);
    if (rc == REEL_OK && flows_sql)
        rc = reel_index_exec(s->db, flows_sql, err);
    if (rc == REEL_OK && !flows_sql)
        rc = reel_index_exec(s->db, "DELETE FROM flows", err);
    free(flows_sql);
    /* The partial indexes are made now, on the empty table, and kept as
     * the scan writes rows: a row they leave out costs a test of its
     * WHERE, and each one made after the scan read the whole table again
     * (30 ms each for 200,000 flows, a twentieth of a repair). The others
     * hold every row, and are made faster at the end, sorted once. */
    for (size_t i = 0; rc == REEL_OK && i < n; i++)
        if (strcmp(o[i].type, "index") == 0 && strstr(o[i].sql, " WHERE "))
            rc = reel_index_exec(s->db, o[i].sql, err);
    /* Missing segments are known from here on by their damage rows alone:
     * a rebuild that starts again after a crash finds them there. */
    for (size_t i = 0; rc == REEL_OK && i < nmissing; i++) {
        sqlite3_stmt *st = NULL;
        rc = reel_index_prepare(s->db,
                                "INSERT OR REPLACE INTO damage(segment, offset, length, reason, "
                                "found_us) VALUES(?1, 0, ?2, 'segment file missing', ?3)",
                                &st, err);
        if (rc == REEL_OK) {
            sqlite3_bind_int64(st, 1, missing[i].first);
            sqlite3_bind_int64(st, 2, missing[i].count);
            sqlite3_bind_int64(st, 3, reel_now_us());
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = reel_index_db_error(err, REEL_DB, s->db);
        }
        sqlite3_finalize(st);
    }
    /* Where a segment was cut short, and how many bytes the index had seen
     * after it: kept by every later rebuild, which cannot find it in the
     * spool (nothing is left there), so that the flows open there are
     * checked again and verify knows it. Not in reel_index_segment_end. */
    for (size_t i = 0; rc == REEL_OK && i < ncut; i++) {
        sqlite3_stmt *st = NULL;
        rc = reel_index_prepare(s->db,
                                "INSERT OR REPLACE INTO damage(segment, offset, length, reason, "
                                "found_us) VALUES(?1, ?2, ?3, '" CUT_REASON "', ?4)",
                                &st, err);
        if (rc == REEL_OK) {
            sqlite3_bind_int64(st, 1, cuts[i].seg);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)cuts[i].size);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)(cuts[i].end - cuts[i].size));
            sqlite3_bind_int64(st, 4, reel_now_us());
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = reel_index_db_error(err, REEL_DB, s->db);
        }
        sqlite3_finalize(st);
    }
    if (rc == REEL_OK)
        rc = reel_index_exec(s->db, "COMMIT", err);
    if (rc != REEL_OK)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* The old rows of flows stay beside the new ones until the rebuild ends
 * (rebuild_keep): once dropped, their pages are free, and session.db kept
 * them, about as many as the index holds (a repaired index of 22 MB took
 * 41). While readers are still kept away, VACUUM gives them back when
 * they are more than a quarter of the file; it writes the index once
 * more. If it cannot (a full disk), the free pages stay, to be used by
 * the flows recorded next, and nothing is lost. */
static void give_back_pages(reel_session_t *s) {
    sqlite3_stmt *st = NULL;
    long long pages = 0, free_pages = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT * FROM pragma_page_count, pragma_freelist_count", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        pages = sqlite3_column_int64(st, 0);
        free_pages = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (free_pages > 0 && free_pages * 4 > pages)
        sqlite3_exec(s->db, "VACUUM", NULL, NULL, NULL);
}

/* PRAGMA secure_delete: sets it to FAST when to is negative, else back to
 * `to` (0 OFF, 1 ON, 2 FAST); returns what it was before (-1 if it cannot
 * be read). */
static int rebuild_secure_delete(sqlite3 *db, int to) {
    sqlite3_stmt *st = NULL;
    int was = -1;
    static const char *const names[] = {"OFF", "ON", "FAST"};
    char sql[40];
    snprintf(sql, sizeof sql, "PRAGMA secure_delete = %s", names[to >= 0 && to < 3 ? to : 2]);
    if (sqlite3_prepare_v2(db, "PRAGMA secure_delete", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        was = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_exec(db, sql, NULL, NULL, NULL);
    return was;
}

static reel_rc rebuild(reel_session_t *s, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_indexer_t *ix = NULL;
    size_t nseg = 0, nmissing = 0, ncut = 0;
    uint32_t *segs = list_segments(s, &nseg);
    segrange *missing = NULL;
    segcut *cuts = NULL;
    uint64_t frames = 0, old_max = 0;
    int cleared = 0, fresh = 0, excluded = 0, secure_delete = -1;
    /* rebuild_lost is made and dropped with the emptying of the derived
     * tables and the end of the rebuild: if it is there, a rebuild died
     * between the two, and the index holds only part of the spool. */
    int resumed = has_table(s->db, "rebuild_lost") && has_table(s->db, "rebuild_keep") &&
                  prepares(s->db, "SELECT id, msg, mark FROM rebuild_lost") &&
                  prepares(s->db, "SELECT id FROM rebuild_keep");
    missing = missing_segments(s->db, segs, nseg, &nmissing);
    /* An index that an interrupted rebuild left knows nothing to compare
     * with; the cuts found before it are in damage already. */
    if (!resumed)
        cuts = find_cuts(s, segs, nseg, &ncut);
    /* The key first, so that readers opening from now on stay away; then
     * the readers that have the index open are waited for. */
    if ((rc = rebuild_mark(s, &old_max, &fresh, err)) != REEL_OK ||
        (rc = reel__session_readers_exclude(s, err)) != REEL_OK)
        goto out;
    excluded = 1;
    /* Everything a rebuild deletes or drops was made from the spool and is
     * made from it again (the old rows of flows, the links, the body text),
     * or is kept (rebuild_keep's rows of flows with user data or without
     * records): none of it is data the session does not still hold. SQLite
     * built with SECURE_DELETE (Debian's) writes zeros over every page a
     * drop frees, which was a tenth of a repair's time (the old flows
     * table is as large as the new one), so the rebuild frees pages
     * without it (FAST: deleted cells are still zeroed in the pages that
     * are written anyway) and VACUUM then gives the pages back. */
    secure_delete = rebuild_secure_delete(s->db, -1);
    if ((rc = dmg_begin(s, err)) != REEL_OK)
        goto out;
    if ((rc = rebuild_clear(s, resumed, missing, nmissing, cuts, ncut, err)) != REEL_OK)
        goto out;
    cleared = 1;
    if ((rc = reel_indexer_new(s->db, &ix, err)) == REEL_OK)
        reel_indexer_bulk(ix);
    s->pruning = 1;
    s->pruned_to = 0;
    for (size_t i = 0; rc == REEL_OK && i < nseg; i++)
        rc = scan_segment(s, ix, segs[i], 0, i + 1 == nseg, 1, &frames, err);
    s->pruning = 0;
    if (rc == REEL_OK)
        rc = keep_user_flows(s, err);
    if (rc == REEL_OK)
        rc = keep_vanished(s, err);
    {
        /* Made again even after an error, so the schema stays whole. */
        size_t made = 0;
        reel_err_t e2;
        reel_err_clear(&e2);
        reel_rc r2 = reel_index_flows_objects_restore(s->db, &made, &e2);
        if (rc == REEL_OK && r2 != REEL_OK)
            rc = reel_err_set(err, r2, "%s", reel_err_str(&e2));
    }
    if (rc == REEL_OK) /* leftovers of flows retention dropped stay dropped */
        rc = reel_retention_reapply(s->db, err);
    if (rc == REEL_OK)
        rc = mark_lost(s, missing, nmissing, err);
    if (rc == REEL_OK)
        rc = dmg_finish(s, err);
    if (rc == REEL_OK)
        rc = lost_errors(s, missing, nmissing, err);
    if (rc == REEL_OK)
        rc = mark_interrupted(s, err);
    if (rc == REEL_OK)
        rc = dmg_errors(s, err);
    if (rc == REEL_OK) /* after everything that tells a lost start by uuid '' */
        rc = keep_lost_starts(s, err);
    if (rc == REEL_OK) /* the rows are all written: kept ones by SQL too */
        rc = reel_index_client_conns_remake(s->db, err);
    if (rc == REEL_OK && reel_index_max_flow_id(s->db) < old_max) {
        /* Flows that are gone keep their ids: a new flow must not inherit
         * their annotations, tags and marks. */
        char v[32];
        snprintf(v, sizeof v, "%llu", (unsigned long long)old_max);
        rc = reel_index_meta_set(s->db, "max_flow_id", v, err);
    }
    if (rc == REEL_OK)
        rc = reel_index_exec(s->db,
                             "BEGIN IMMEDIATE; DROP TABLE rebuild_keep; DROP TABLE rebuild_lost;"
                             "DROP TABLE IF EXISTS rebuild_pos;"
                             "DELETE FROM meta WHERE key = '" REBUILD_KEY "'; COMMIT;",
                             err);
    if (rc != REEL_OK)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc == REEL_OK) {
        sqlite3_stmt *st = NULL;
        long long nflows = 0;
        if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM flows", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            nflows = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        note(s, "index rebuilt from %zu segment%s, %llu frames, %lld flows", nseg,
             nseg == 1 ? "" : "s", (unsigned long long)frames, nflows);
        give_back_pages(s);
    }
out:
    if (rc != REEL_OK && !cleared && fresh) /* nothing was emptied: the index is as it was */
        sqlite3_exec(s->db, "DELETE FROM meta WHERE key = '" REBUILD_KEY "'", NULL, NULL, NULL);
    if (secure_delete >= 0)
        rebuild_secure_delete(s->db, secure_delete);
    if (excluded)
        reel__session_readers_allow(s);
    reel_indexer_free(ix);
    free(segs);
    free(missing);
    free(cuts);
    return rc;
}

/* An import that did not finish (its `import` file is left: it was
 * killed) is undone before recovery or repair looks at the spool; with the
 * lock held. */
static reel_rc undo_import(reel_session_t *s, reel_err_t *err) {
    reel_importtx_point_t p;
    reel_importtx_undone_t u;
    int found = 0;
    reel_rc rc = reel_importtx_read(s->path, &p, &found, err);
    if (rc != REEL_OK || !found)
        return rc;
    if ((rc = reel_importtx_undo(s, &p, &u, err)) != REEL_OK) {
        /* Nothing opens the session until the undo is done (readers would
         * see the import's flows): say so, and what usually stops it (the
         * disk that stopped the import is still full). Each step of the
         * undo can be repeated, so the next open goes on from here. */
        char why[REEL_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", reel_err_str(err));
        reel_err_clear(err); /* the first error set wins */
        return reel_err_set(err, rc,
                            "an import of '%s' (PID %ld) did not finish, and undoing it failed: "
                            "%s; the session opens once its undo can write (is the disk full?)",
                            p.file, p.pid, why);
    }
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_importtx_describe(&p, &u, &b);
    note(s, "%s", (const char *)b.data);
    reel_buf_free(&b);
    return REEL_OK;
}

/* Recovery on open, with the lock held. */
static reel_rc recover(reel_session_t *s, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_indexer_t *ix = NULL;
    size_t nseg = 0;
    /* A segment retention was dropping when the process died goes first. */
    if ((rc = reel_retention_finish(s->db, s->spool_dir, err)) != REEL_OK)
        return rc;
    uint64_t left_bytes = 0;
    unsigned left = reel_retention_compact_leftovers(s->spool_dir, &left_bytes);
    if (left)
        note(s,
             "removed %u new segment%s (%llu bytes) a compact left when it stopped before "
             "finishing",
             left, left == 1 ? "" : "s", (unsigned long long)left_bytes);
    uint32_t *segs = list_segments(s, &nseg);
    uint32_t last_indexed = reel_index_last_segment(s->db);
    int need_rebuild = 0;
    /* A rebuild that did not finish left the index part built: it is done
     * again. So is one that left flows without the indexes and triggers
     * the schema gives it (an older reel kept their definitions only in
     * memory while it rebuilt). */
    long pid = rebuild_pid(s->db, NULL);
    if (pid) {
        need_rebuild = 1;
        if (pid > 0)
            note(s,
                 "a repair or compact (PID %ld) stopped before it had rebuilt the index: "
                 "rebuilding it again from the spool",
                 pid);
        else
            note(s, "a repair or compact stopped before it had rebuilt the index: rebuilding it "
                    "again from the spool");
    } else {
        reel_buf_t names;
        reel_buf_init(&names, 0);
        size_t nobj = 0;
        rc = reel_index_flows_objects_missing(s->db, &names, &nobj, err);
        if (rc == REEL_OK && nobj) {
            need_rebuild = 1;
            note(s,
                 "the flows table lacks %s (dropped by a repair or compact that stopped before "
                 "it was done): rebuilding the index from the spool",
                 (const char *)names.data);
        }
        reel_buf_free(&names);
        if (rc != REEL_OK)
            goto out;
    }
    /* The index must not refer to spool bytes that are gone. */
    for (size_t i = 0; i < nseg && !need_rebuild; i++) {
        char name[16];
        reel_spool_segment_name(segs[i], name);
        char *p = reel_asprintf("%s/%s", s->spool_dir, name);
        struct stat st;
        if (stat(p, &st) == 0 && (uint64_t)st.st_size < reel_index_segment_end(s->db, segs[i]))
            need_rebuild = 1; /* the rebuild says what was lost */
        free(p);
    }
    if (!need_rebuild && last_indexed) {
        /* A missing segment is not a crash (segments are created, and
         * their directory entry synced, before anything refers to them):
         * someone deleted it. Rebuilding would quietly forget what the
         * index knows about it, so say so and leave it to repair. */
        sqlite3_stmt *st = NULL;
        rc = reel_index_prepare(s->db, "SELECT segment, count(*) FROM frames GROUP BY segment", &st,
                                err);
        while (rc == REEL_OK && sqlite3_step(st) == SQLITE_ROW) {
            uint32_t n = (uint32_t)sqlite3_column_int64(st, 0);
            if (!has_segment(segs, nseg, n))
                note(s,
                     "spool segment %08u.zst is missing%s: the index lists %lld frames of it, "
                     "whose flows cannot be read in full ('reel repair %s' drops them from the "
                     "index)",
                     n, segment_in_place(s, n), sqlite3_column_int64(st, 1), s->name);
        }
        sqlite3_finalize(st);
        if (rc != REEL_OK)
            goto out;
    }
    if (s->index_lost) {
        need_rebuild = 1;
        note(s, "session.db held no index (its writes never reached the disk, as after a power "
                "cut soon after it was made): rebuilding it from the spool, and the user data "
                "from the spool's journal");
    }
    if (need_rebuild) {
        /* The journal first, as repair does: the rebuild must know which
         * segments retention dropped, and which flows have user data. */
        if (s->index_lost && (rc = replay_journal(s, s->db, err)) == REEL_OK)
            rc = settle_drops(s, 1, err);
        if (rc == REEL_OK)
            rc = rebuild(s, err);
        if (rc == REEL_OK && s->index_lost)
            rc = settle_drops(s, 0, err);
        if (rc == REEL_OK && s->index_lost)
            rc = reel_index_exec(s->db,
                                 "UPDATE meta SET value = (SELECT min(start_us) FROM flows "
                                 "WHERE start_us > 0) WHERE key = 'created_us' AND EXISTS "
                                 "(SELECT 1 FROM flows WHERE start_us > 0)",
                                 err);
        goto out;
    }
    if ((rc = dmg_begin(s, err)) == REEL_OK)
        rc = reel_indexer_new(s->db, &ix, err);
    for (size_t i = 0; rc == REEL_OK && i < nseg; i++) {
        uint64_t end = reel_index_segment_end(s->db, segs[i]);
        char name[16];
        reel_spool_segment_name(segs[i], name);
        char *p = reel_asprintf("%s/%s", s->spool_dir, name);
        struct stat st;
        int grow = stat(p, &st) == 0 && (uint64_t)st.st_size > end;
        free(p);
        if (!grow)
            continue;
        uint64_t frames = 0;
        rc = scan_segment(s, ix, segs[i], end, 1, 0, &frames, err);
        if (rc == REEL_OK && frames)
            note(s, "indexed %llu frame%s of segment %s that the index had not seen",
                 (unsigned long long)frames, frames == 1 ? "" : "s", name);
    }
    if (rc == REEL_OK)
        rc = dmg_finish(s, err);
    if (rc == REEL_OK)
        rc = mark_interrupted(s, err);
    if (rc == REEL_OK)
        rc = dmg_errors(s, err);
out:
    if (rc == REEL_OK)
        journal_catch_up(s);
    reel_indexer_free(ix);
    free(segs);
    return rc;
}

/* A reel index names its format in meta; a damaged meta page, or a
 * database that is not a reel index, shows here before anything else. */
static reel_rc check_meta(sqlite3 *db, const char *dbpath, reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    reel_rc rc = REEL_OK;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'format'", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = reel_err_set(err, REEL_CORRUPT, "%s is damaged or not a reel index (%s)", dbpath,
                          sqlite3_errmsg(db));
        goto out;
    }
    int step = sqlite3_step(st);
    const char *v = step == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = reel_err_set(err, REEL_CORRUPT, "%s is damaged (%s)", dbpath, sqlite3_errmsg(db));
    else if (v == NULL || strncmp(v, "reel-session ", 13) != 0)
        rc = reel_err_set(err, REEL_CORRUPT,
                          "%s is damaged or not a reel index (no format in meta)", dbpath);
out:
    sqlite3_finalize(st);
    return rc;
}

static char *journal_path(const reel_session_t *s) {
    return reel_asprintf("%s/" REEL_JOURNAL_NAME, s->spool_dir);
}

/* Journals the user data s->db changes from now on. A journal that cannot
 * be started (for an index older than the journal) is said, not fatal:
 * then each change to user data fails instead. */
static reel_rc attach_journal(reel_session_t *s, reel_err_t *err) {
    char *jp = journal_path(s);
    reel_err_t e2;
    reel_err_clear(&e2);
    reel_rc rc = reel_journal_attach(s->db, jp, &e2);
    free(jp);
    if (rc == REEL_DB) /* no user-data tables to put triggers on */
        return reel_err_set(err, REEL_CORRUPT, "session.db is damaged or not a reel index (%s)",
                            reel_err_str(&e2));
    if (rc != REEL_OK)
        note(s, "%s", reel_err_str(&e2));
    return REEL_OK;
}

/* Puts the user data in the journal back into s->db (an index made anew);
 * notes what it did. */
static reel_rc replay_journal(reel_session_t *s, sqlite3 *db, reel_err_t *err) {
    char *jp = journal_path(s);
    reel_journal_stats_t st;
    reel_rc rc = reel_journal_replay(db, jp, &st, err);
    free(jp);
    if (rc != REEL_OK)
        return rc;
    if (st.drops) {
        long long segs = 0, compacted = 0, retired = 0;
        sqlite3_stmt *c = NULL;
        if (sqlite3_prepare_v2(db,
                               "SELECT (SELECT count(*) FROM retention), (SELECT count(*) FROM "
                               "retention WHERE reason = 'compact'), (SELECT count(*) FROM "
                               "retired_flows)",
                               -1, &c, NULL) == SQLITE_OK &&
            sqlite3_step(c) == SQLITE_ROW) {
            segs = sqlite3_column_int64(c, 0);
            compacted = sqlite3_column_int64(c, 1);
            retired = sqlite3_column_int64(c, 2);
        }
        sqlite3_finalize(c);
        note(s,
             "from spool/" REEL_JOURNAL_NAME ": %lld segment%s dropped on purpose (%lld by "
             "retention, %lld replaced by compact), and %lld flow%s retention dropped that left "
             "records in kept segments",
             segs, segs == 1 ? "" : "s", segs - compacted, compacted, retired,
             retired == 1 ? "" : "s");
    }
    if (st.records == 0 && st.bad_ranges == 0)
        return REEL_OK;
    long long n[5] = {0};
    static const char *const q[5] = {"annotations", "tags", "marks", "config_overlay",
                                     "config_history"};
    for (int k = 0; k < 5; k++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", q[k]);
        sqlite3_stmt *c = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &c, NULL) == SQLITE_OK && sqlite3_step(c) == SQLITE_ROW)
            n[k] = sqlite3_column_int64(c, 0);
        sqlite3_finalize(c);
    }
    note(s,
         "user data replayed from spool/" REEL_JOURNAL_NAME " (%llu change%s): %lld annotation%s, "
         "%lld tag%s, %lld mark%s, %lld config key%s set, %lld config change%s",
         (unsigned long long)st.records, st.records == 1 ? "" : "s", n[0], n[0] == 1 ? "" : "s",
         n[1], n[1] == 1 ? "" : "s", n[2], n[2] == 1 ? "" : "s", n[3], n[3] == 1 ? "" : "s", n[4],
         n[4] == 1 ? "" : "s");
    if (st.bad_ranges)
        note(s,
             "spool/" REEL_JOURNAL_NAME ": %llu damaged byte%s skipped (%s at offset %llu): the "
             "changes in them are lost",
             (unsigned long long)st.bad_bytes, st.bad_bytes == 1 ? "" : "s", st.reason,
             (unsigned long long)st.bad_off);
    return REEL_OK;
}

/* A segment listed in `retention` whose file is still there: its drop
 * was journaled or listed, and the process died before the file went
 * (reel_retention_settle). Notes what it did. */
static reel_rc settle_drops(reel_session_t *s, int before_rebuild, reel_err_t *err) {
    reel_retention_settled_t r = {0};
    reel_rc rc = reel_retention_settle(s->db, s->spool_dir, before_rebuild, &r, err);
    if (r.compacted)
        note(s,
             "removed %u old segment%s (%llu bytes) that a compact had replaced and listed, but "
             "not yet deleted when it stopped",
             r.compacted, r.compacted == 1 ? "" : "s", (unsigned long long)r.bytes);
    if (r.dropped)
        note(s,
             "finished %u drop%s by retention that stopped before the segment file was deleted "
             "(%llu bytes)",
             r.dropped, r.dropped == 1 ? "" : "s", (unsigned long long)r.bytes);
    if (r.kept)
        note(s,
             "kept %u segment%s retention was dropping when it stopped: a flow in %s has "
             "annotations, tags or a mark now",
             r.kept, r.kept == 1 ? "" : "s", r.kept == 1 ? "it" : "them");
    return rc;
}

/* Why this user cannot write session s (owned: the first path found not
 * writable, and why), or NULL if it can. */
static char *unwritable(const reel_session_t *s, const char *dbpath, const char *lockpath) {
    char *wal = reel_asprintf("%s-wal", dbpath);
    char *shm = reel_asprintf("%s-shm", dbpath);
    const char *paths[] = {s->path, s->spool_dir, dbpath, lockpath, wal, shm};
    char *why = NULL;
    for (size_t i = 0; i < sizeof paths / sizeof *paths && why == NULL; i++) {
        if (faccessat(AT_FDCWD, paths[i], W_OK, AT_EACCESS) != 0 && errno != ENOENT)
            why = reel_asprintf("%s: %s", paths[i], strerror(errno));
    }
    free(wal);
    free(shm);
    return why;
}

/* What recovery would do to s, said in a note instead (s is read-only). */
static void recovery_preview(reel_session_t *s) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    size_t nseg = 0;
    uint32_t *segs = list_segments(s, &nseg);
    int rebuild_needed = 0;
    for (size_t i = 0; i < nseg; i++) {
        char name[16];
        reel_spool_segment_name(segs[i], name);
        char *p = reel_asprintf("%s/%s", s->spool_dir, name);
        struct stat st;
        uint64_t end = reel_index_segment_end(s->db, segs[i]);
        if (stat(p, &st) == 0 && (uint64_t)st.st_size < end) {
            rebuild_needed = 1;
            reel_buf_printf(&b, "%srebuild the index from the spool (segment %s is shorter than "
                                "the index says)",
                            b.len ? "; " : "", name);
        } else if (stat(p, &st) == 0 && (uint64_t)st.st_size > end) {
            reel_buf_printf(&b, "%sindex the last %llu bytes of segment %s, which the index has "
                                "not seen",
                            b.len ? "; " : "", (unsigned long long)((uint64_t)st.st_size - end),
                            name);
        }
        free(p);
    }
    reel_importtx_point_t ip;
    int found = 0;
    reel_err_t ierr;
    reel_err_clear(&ierr);
    if (reel_importtx_read(s->path, &ip, &found, &ierr) != REEL_OK)
        reel_buf_printf(&b, "%sundo an import that did not finish, but %s", b.len ? "; " : "",
                        reel_err_str(&ierr));
    else if (found)
        reel_buf_printf(&b,
                        "%sundo an import of '%s' that did not finish: remove the flows from id "
                        "%llu on and cut the spool back to byte %llu of segment %08u.zst",
                        b.len ? "; " : "", ip.file, (unsigned long long)ip.first_id,
                        (unsigned long long)ip.offset, (unsigned)ip.segment);
    sqlite3_stmt *st = NULL;
    if (!rebuild_needed &&
        sqlite3_prepare_v2(s->db, "SELECT count(*) FROM flows WHERE state = 'open'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0) {
        long long n = sqlite3_column_int64(st, 0);
        reel_buf_printf(&b, "%smark %lld flow%s cut off by the end of a recording interrupted",
                        b.len ? "; " : "", n, n == 1 ? "" : "s");
    }
    sqlite3_finalize(st);
    if (b.len) {
        reel_buf_append(&b, "", 1);
        note(s, "recovery skipped (the session is read-only for this user); it would %s",
             (const char *)b.data);
    }
    reel_buf_free(&b);
    free(segs);
}

/* Opens s for reading only: no lock taken, no recovery, no journal, no
 * file made (docs/format.md, "Read-only sessions"). */
static reel_rc open_readonly(reel_session_t *s, const char *dbpath, const char *lockpath,
                             reel_err_t *err) {
    reel_rc rc = REEL_OK;
    int live = 0;
    s->lock_fd = open(lockpath, O_RDONLY | O_CLOEXEC);
    if (s->lock_fd >= 0) {
        if (flock(s->lock_fd, LOCK_SH | LOCK_NB) == 0)
            flock(s->lock_fd, LOCK_UN);
        else
            live = errno == EWOULDBLOCK;
        /* kept, for the readers' lock: no rebuild while this reads */
        if (readers_lock(s->lock_fd, F_RDLCK) == 0)
            s->rdlocked = 1;
        else if (errno == EAGAIN || errno == EACCES)
            return rebuilding_error(s, rebuild_pid_at(dbpath), 1, err);
    }
    char *dbnote = NULL;
    reel_err_t dberr;
    reel_err_clear(&dberr);
    rc = reel_index_open_readonly(dbpath, live, &s->db, &dbnote, &dberr);
    if (rc == REEL_OK)
        rc = check_meta(s->db, dbpath, &dberr);
    if (rc == REEL_CORRUPT) {
        rc = reel_err_set(err, rc,
                          "%s; the session is read-only for this user (%s): copy it to a "
                          "writable directory and run 'reel repair %s' there",
                          reel_err_str(&dberr), s->readonly, s->name);
        goto out;
    } else if (rc != REEL_OK) {
        rc = reel_err_set(err, rc, "%s", reel_err_str(&dberr));
        goto out;
    }
    long pid = rebuild_pid(s->db, NULL);
    if (pid) {
        rc = rebuilding_error(s, pid, live, err);
        goto out;
    }
    if (dbnote)
        note(s, "%s", dbnote);
    if (!live)
        recovery_preview(s);
out:
    free(dbnote);
    return rc;
}

/* nftw's callback that deletes a tree, depth first. */
static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

reel_rc reel_session_open(const char *home, const char *name, int flags, reel_session_t **out,
                          reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_session_t *s = NULL;
    int created = 0; /* this call made the session's directory */
    *out = NULL;
    if ((rc = reel_session_name_check(name, err)) != REEL_OK)
        return rc;
    s = reel_calloc(1, sizeof *s);
    s->lock_fd = -1;
    reel_buf_init(&s->note, 0);
    s->name = reel_strdup(name);
    s->path = reel_asprintf("%s/%s", home, name);
    s->spool_dir = reel_asprintf("%s/spool", s->path);
    char *dbpath = reel_asprintf("%s/session.db", s->path);
    char *lockpath = reel_asprintf("%s/lock", s->path);
    struct stat st;
    int exists = stat(s->path, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode)) {
        rc = reel_err_set(err, REEL_INVALID, "%s is not a directory", s->path);
        goto out;
    }
    if (exists && (flags & REEL_OPEN_NEW)) {
        rc = reel_err_set(err, REEL_EXISTS, "session '%s' already exists", name);
        goto out;
    }
    if (!exists && !(flags & REEL_OPEN_CREATE)) {
        rc = reel_err_set(err, REEL_NOTFOUND, "no session '%s' in %s", name, home);
        goto out;
    }
    if (exists)
        s->readonly = unwritable(s, dbpath, lockpath);
    if (!exists) {
        if (mkdir_p(home, 0700) != 0) {
            rc = reel_err_errno(err, REEL_IO, errno, "cannot create %s", home);
            goto out;
        }
        if (mkdir(s->path, 0700) != 0) {
            rc = reel_err_errno(err, errno == EEXIST ? REEL_EXISTS : REEL_IO, errno,
                                "cannot create %s", s->path);
            goto out;
        }
        created = 1;
    } else if (stat(dbpath, &st) != 0) {
        /* Without session.db but with a spool, it is a session whose index
         * is lost: repair rebuilds it. */
        struct stat sp;
        if (stat(s->spool_dir, &sp) != 0 || !S_ISDIR(sp.st_mode)) {
            rc = reel_err_set(err, REEL_CORRUPT, "%s is not a reel session (no session.db)",
                              s->path);
            goto out;
        }
        if (!(flags & REEL_OPEN_REPAIR)) {
            rc = reel_err_set(err, REEL_CORRUPT,
                              "session '%s' is damaged: session.db is missing; 'reel repair %s' "
                              "rebuilds it from the spool, with the annotations, tags, marks "
                              "and config kept in the spool's journal",
                              name, name);
            goto out;
        }
        s->db_missing = 1;
    } else if (s->readonly == NULL) {
        struct stat ds;
        if (stat(s->path, &ds) == 0 && (ds.st_mode & 077))
            note(s, "WARNING: the session directory has mode %04o, readable by others; "
                    "captured traffic may hold secrets (chmod 700 '%s')",
                 (unsigned)(ds.st_mode & 07777), s->path);
    }
    if (s->readonly && (flags & REEL_OPEN_READ)) {
        rc = open_readonly(s, dbpath, lockpath, err);
        goto out;
    }
    if (s->readonly && !(flags & REEL_OPEN_REMOVE)) {
        rc = reel_err_set(err, REEL_IO,
                          "session '%s' cannot be written by this user (%s), and this command "
                          "writes to it; copy it to a writable directory (cp -r) and use "
                          "--home there",
                          name, s->readonly);
        goto out;
    }
    if (!(flags & REEL_OPEN_REMOVE) && mkdir(s->spool_dir, 0700) != 0 && errno != EEXIST) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot create %s", s->spool_dir);
        goto out;
    }
    give_all(s);
    s->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0 && (flags & REEL_OPEN_REMOVE)) /* flock needs no write access */
        s->lock_fd = open(lockpath, O_RDONLY | O_CLOEXEC);
    /* Root opening another user's session makes the lock file theirs, as
     * SQLite does for the -wal and -shm files: a root-owned lock would keep
     * the owner to read-only opening. */
    struct stat ls, ds;
    if (s->lock_fd >= 0 && geteuid() == 0 && fstat(s->lock_fd, &ls) == 0 &&
        stat(s->path, &ds) == 0 && ls.st_uid != ds.st_uid &&
        fchown(s->lock_fd, ds.st_uid, ds.st_gid) != 0) {
        /* then the lock stays root's: reading still works for the owner */
    }
    if (s->lock_fd < 0) {
        /* A read-only copy of a session still opens for reading. */
        if ((flags & REEL_OPEN_RECORD) || (errno != EACCES && errno != EROFS)) {
            rc = reel_err_errno(err, REEL_IO, errno, "cannot open %s", lockpath);
            goto out;
        }
    }
    int have_lock = 0;
    if (s->lock_fd >= 0) {
        rc = take_lock(s, (flags & REEL_OPEN_RECORD) ? 3000 : 0);
        if (rc == REEL_OK) {
            have_lock = 1;
        } else if (rc == REEL_LOCKED && !(flags & REEL_OPEN_RECORD)) {
            /* A recorder is live: read its index as it stands. Unless it
             * is a rebuild (repair, compact, recovery), which holds the
             * readers' lock; it waits for this reader once it has it. */
            rc = REEL_OK;
            s->live = 1;
            if (readers_lock(s->lock_fd, F_RDLCK) == 0) {
                s->rdlocked = 1;
            } else if (errno == EAGAIN || errno == EACCES) {
                rc = rebuilding_error(s, rebuild_pid_at(dbpath), 1, err);
                goto out;
            }
        } else if (rc == REEL_LOCKED) {
            rc = locked_error(s, err);
            goto out;
        } else {
            rc = reel_err_errno(err, REEL_IO, errno, "locking %s", lockpath);
            goto out;
        }
    }
    if (flags & REEL_OPEN_REMOVE)
        goto out; /* the lock is all a removal needs */
    {
        reel_err_t dberr;
        reel_err_clear(&dberr);
        if (s->db_missing)
            rc = reel_err_set(&dberr, REEL_CORRUPT, "session.db is missing");
        else
            rc = reel_index_open(dbpath, created, &s->db, &dberr);
        if (rc == REEL_NOTFOUND && have_lock) {
            /* Nothing was in it to lose: make the schema, and recovery
             * rebuilds the rest from the spool. */
            reel_err_clear(&dberr);
            s->index_lost = 1;
            char now[32];
            snprintf(now, sizeof now, "%lld", (long long)reel_now_us());
            if ((rc = reel_index_open(dbpath, 1, &s->db, &dberr)) == REEL_OK &&
                (rc = reel_index_meta_set(s->db, "name", name, &dberr)) == REEL_OK &&
                (rc = reel_index_meta_set(s->db, "created_us", now, &dberr)) == REEL_OK)
                rc = reel_index_meta_set(s->db, "format", "reel-session 1", &dberr);
        } else if (rc == REEL_NOTFOUND) {
            rc = REEL_CORRUPT;
        }
        if (rc == REEL_OK && !created)
            rc = check_meta(s->db, dbpath, &dberr);
        if (rc == REEL_CORRUPT && (flags & REEL_OPEN_REPAIR)) {
            s->db_damage = reel_strdup(reel_err_str(&dberr));
            sqlite3_close(s->db);
            s->db = NULL;
            rc = REEL_OK;
        } else if (rc == REEL_CORRUPT) {
            rc = reel_err_set(err, rc,
                              "%s; 'reel repair %s' rebuilds the index from the spool "
                              "(and the annotations, tags, marks and config from its journal)",
                              reel_err_str(&dberr), name);
            goto out;
        } else if (rc != REEL_OK) {
            rc = reel_err_set(err, rc, "%s", reel_err_str(&dberr));
            goto out;
        }
    }
    if (!have_lock && s->db && rebuild_pid(s->db, NULL)) {
        /* A rebuild began (the process holding the lock is at it, or will
         * be) or was interrupted: the index may hold part of the spool. */
        rc = rebuilding_error(s, rebuild_pid(s->db, NULL), 0, err);
        goto out;
    }
    if (created && chmod(dbpath, 0600) != 0) {
        /* SQLite creates 0644 (less the umask); the -wal and -shm files
         * copy the database's mode, so this covers them too. */
        rc = reel_err_errno(err, REEL_IO, errno, "chmod %s", dbpath);
        goto out;
    }
    if (created) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)reel_now_us());
        if ((rc = reel_index_meta_set(s->db, "name", name, err)) != REEL_OK ||
            (rc = reel_index_meta_set(s->db, "created_us", buf, err)) != REEL_OK ||
            (rc = reel_index_meta_set(s->db, "format", "reel-session 1", err)) != REEL_OK)
            goto out;
    }
    if (s->db) {
        reel_err_t jerr;
        reel_err_clear(&jerr);
        if ((rc = attach_journal(s, &jerr)) != REEL_OK && (flags & REEL_OPEN_REPAIR)) {
            free(s->db_damage);
            s->db_damage = reel_strdup(reel_err_str(&jerr));
            sqlite3_close(s->db);
            s->db = NULL;
            rc = REEL_OK;
        } else if (rc != REEL_OK) {
            rc = reel_err_set(err, rc,
                              "%s; 'reel repair %s' rebuilds the index from the spool (and the "
                              "annotations, tags, marks and config from its journal)",
                              reel_err_str(&jerr), name);
            goto out;
        }
    }
    if (have_lock) {
        if (!(flags & REEL_OPEN_REPAIR)) {
            /* Before anything acts on what the index says about the
             * spool (an import's undo, retention's drops, recovery). */
            char *foreign = s->index_lost ? NULL : foreign_index(s);
            if (foreign) {
                rc = reel_err_set(err, REEL_CORRUPT,
                                  "session '%s': %s; 'reel repair %s' makes a new index from "
                                  "the spool (and the annotations, tags, marks and config from "
                                  "its journal), keeping this one in recovered/",
                                  name, foreign, name);
                free(foreign);
                goto out;
            }
            reel_err_t rerr;
            reel_err_clear(&rerr);
            if ((rc = undo_import(s, &rerr)) != REEL_OK) {
                rc = reel_err_set(err, rc, "session '%s': %s", name, reel_err_str(&rerr));
                goto out;
            }
            if ((rc = recover(s, &rerr)) != REEL_OK) {
                /* A database error here is most often a damaged index:
                 * quick_check (slow, but only on this path) tells. */
                if (rc == REEL_CORRUPT || (rc == REEL_DB && !index_sound(s)))
                    rc = reel_err_set(err, REEL_CORRUPT,
                                      "%s: the index is damaged; 'reel repair %s' rebuilds it "
                                      "from the spool (and the annotations, tags, marks and "
                                      "config from its journal)",
                                      reel_err_str(&rerr), name);
                else if (s->db && (sqlite3_extended_errcode(s->db) & 0xff) == SQLITE_FULL)
                    /* (recovery writes: a crashed session on a full disk) */
                    rc = reel_err_set(err, rc,
                                      "%s; that is a full file system, not damage to the index: "
                                      "free some space and try again",
                                      reel_err_str(&rerr));
                else
                    rc = reel_err_set(err, rc, "%s", reel_err_str(&rerr));
                goto out;
            }
        }
        if (flags & REEL_OPEN_RECORD) {
            char pid[32];
            int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, pid, (size_t)n, 0) != n) {
                rc = reel_err_errno(err, REEL_IO, errno, "writing %s", lockpath);
                goto out;
            }
            s->recording = 1;
        } else {
            /* A reader from now on: no rebuild until it closes. Taken
             * before the lock goes, so that none can begin in between. */
            if (readers_lock(s->lock_fd, F_RDLCK) == 0)
                s->rdlocked = 1;
            flock(s->lock_fd, LOCK_UN);
        }
    }
out:
    free(dbpath);
    free(lockpath);
    if (rc != REEL_OK) {
        /* A session this call began and could not finish (a full disk:
         * an empty session.db) goes again, or every later command would
         * list it as damaged and refuse its name as taken. Only what
         * this call made is in it. */
        char *path = created ? reel_strdup(s->path) : NULL;
        reel_session_close(s);
        s = NULL;
        if (path != NULL)
            nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        free(path);
    }
    if (s != NULL)
        writes_signal(s);
    *out = s;
    return rc;
}

void reel_session_close(reel_session_t *s) {
    if (s == NULL)
        return;
    if (s->db) {
        reel_index_writer_signal(s->db, -1);
        sqlite3_close_v2(s->db);
    }
    if (s->lock_fd >= 0 && s->readonly == NULL)
        give_all(s);
    if (s->lock_fd >= 0) {
        if (s->recording && ftruncate(s->lock_fd, 0) != 0) {
            /* stale PID text is harmless: the flock is what counts */
        }
        close(s->lock_fd);
    }
    reel_buf_free(&s->note);
    free(s->readonly);
    free(s->db_damage);
    free(s->name);
    free(s->path);
    free(s->spool_dir);
    free(s);
}

sqlite3 *reel_session_db(reel_session_t *s) {
    return s->db;
}
const char *reel_session_name(const reel_session_t *s) {
    return s->name;
}
const char *reel_session_path(const reel_session_t *s) {
    return s->path;
}
const char *reel_session_spool_dir(const reel_session_t *s) {
    return s->spool_dir;
}
int reel_session_is_recording(const reel_session_t *s) {
    return s->recording;
}
const char *reel_session_readonly(const reel_session_t *s) {
    return s->readonly;
}
const char *reel_session_recovery_note(const reel_session_t *s) {
    return s->note.len ? (const char *)s->note.data : "";
}

/* "3 annotations, 1 tag" for the counts n[0..4] (reel_journal_what). */
static void ud_counts(reel_buf_t *b, const uint64_t n[5]) {
    for (int k = 0; k < 5; k++)
        if (n[k])
            reel_buf_printf(b, "%s%llu %s%s", b->len ? ", " : "", (unsigned long long)n[k],
                            reel_journal_what[k], n[k] == 1 ? "" : "s");
}

/* Whether the index keeps its user data in the journal (meta journal). */
static int journal_kept(sqlite3 *db) {
    char *v = reel_index_meta_get(db, "journal");
    int on = v && strcmp(v, "1") == 0;
    free(v);
    return on;
}

/* Compares the journal at jp with s's index (*d), and totals the rows
 * the journal lacks and those it has over; 0 (and noted) if it could not. */
static int journal_diff(reel_session_t *s, const char *jp, reel_journal_diff_t *d,
                        uint64_t *lacking, uint64_t *extra) {
    reel_err_t e2;
    reel_err_clear(&e2);
    if (reel_journal_compare(s->db, jp, d, &e2) != REEL_OK) {
        note(s, "spool/" REEL_JOURNAL_NAME " could not be compared with the index: %s",
             reel_err_str(&e2));
        return 0;
    }
    *lacking = *extra = 0;
    for (int k = 0; k < 5; k++) {
        *lacking += d->lacking[k];
        *extra += d->extra[k];
    }
    return 1;
}

/* Replays the journal at jp into s's index, which lacks the rows counted
 * in extra; says so. */
static reel_rc apply_extras(reel_session_t *s, const char *jp, const uint64_t extra[5],
                            reel_err_t *err) {
    reel_buf_t x;
    reel_buf_init(&x, 0);
    ud_counts(&x, extra);
    reel_journal_stats_t st;
    reel_rc rc = reel_journal_replay(s->db, jp, &st, err);
    if (rc == REEL_OK)
        note(s,
             "spool/" REEL_JOURNAL_NAME " held %s that the index did not have (changes whose "
             "commit to the index did not reach the disk, or an index older than its journal): "
             "applied to the index",
             (const char *)x.data);
    reel_buf_free(&x);
    return rc;
}

/* Changes the journal has and the index lacks were acknowledged (the
 * journal is synced before the index commits): an index whose last
 * commits did not reach the disk (the end of its WAL lost to a power
 * cut), or one restored from an older copy. Recovery applies them, so
 * that the session does not run without them until a repair; the
 * journal's length when last compared (meta journal_seen) spares the
 * comparison while nothing was added. The comparison runs in a write
 * transaction, so that no other writer's change is in the journal and
 * not yet in the index; the replay after it gives the same rows again. */
static void journal_catch_up(reel_session_t *s) {
    if (!journal_kept(s->db))
        return;
    char *jp = journal_path(s);
    struct stat jst;
    char *seen = NULL;
    reel_err_t e2;
    reel_err_clear(&e2);
    if (stat(jp, &jst) != 0) /* missing: verify and repair say so */
        goto out;
    char len[32];
    snprintf(len, sizeof len, "%lld", (long long)jst.st_size);
    if ((seen = reel_index_meta_get(s->db, "journal_seen")) != NULL && strcmp(seen, len) == 0)
        goto out;
    reel_rc rc = reel_index_exec(s->db, "BEGIN IMMEDIATE", &e2);
    if (rc != REEL_OK)
        goto fail;
    reel_journal_diff_t d;
    uint64_t lacking = 0, extra = 0;
    /* (journal_diff notes why it could not compare: a damaged table) */
    int compared = stat(jp, &jst) == 0 && journal_diff(s, jp, &d, &lacking, &extra);
    snprintf(len, sizeof len, "%lld", (long long)jst.st_size);
    if (compared && extra == 0) /* else set by the next open, once applied */
        rc = reel_index_meta_set(s->db, "journal_seen", len, &e2);
    if (rc == REEL_OK)
        rc = reel_index_exec(s->db, "COMMIT", &e2);
    if (rc != REEL_OK)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    else if (compared && extra)
        rc = apply_extras(s, jp, d.extra, &e2);
fail:
    /* Not a reason to refuse the session: verify and repair tell more. */
    if (rc != REEL_OK)
        note(s, "spool/" REEL_JOURNAL_NAME " could not be checked against the index: %s",
             reel_err_str(&e2));
out:
    free(seen);
    free(jp);
}

/* A journal that is missing, or lacks user data the index holds (deleted,
 * or deleted and begun again by a later change), is written anew from the
 * index, so a rebuild gets it all back; says what. */
static reel_rc rewrite_journal(reel_session_t *s, reel_err_t *err) {
    if (!journal_kept(s->db))
        return REEL_OK;
    char *jp = journal_path(s);
    reel_journal_diff_t d;
    reel_rc rc = REEL_OK;
    uint64_t lacking, extra;
    if (!journal_diff(s, jp, &d, &lacking, &extra))
        goto out;
    if (extra) {
        /* As at an open (journal_catch_up): a replay of the whole journal
         * gives the same rows again. Before, they were thrown away with
         * the journal, which was written anew from the index. */
        if ((rc = apply_extras(s, jp, d.extra, err)) != REEL_OK ||
            !journal_diff(s, jp, &d, &lacking, &extra))
            goto out;
    }
    if (lacking == 0 && extra == 0)
        goto out;
    char *dir = reel_asprintf("%s/recovered", s->path);
    char *aside = reel_asprintf("%s/" REEL_JOURNAL_NAME ".%lld.incomplete", dir,
                                (long long)(reel_now_us() / 1000));
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        rc = reel_err_errno(err, REEL_IO, errno, "creating %s", dir);
    give(s, -1, dir);
    if (rc == REEL_OK)
        rc = reel_journal_write_from(s->db, jp, aside, err);
    if (rc == REEL_OK) {
        reel_buf_t b;
        reel_buf_init(&b, 0);
        ud_counts(&b, d.lacking);
        reel_buf_t x;
        reel_buf_init(&x, 0);
        ud_counts(&x, d.extra);
        if (d.missing)
            note(s,
                 "spool/" REEL_JOURNAL_NAME " was missing: written anew from the index's user "
                 "data (%s), which an index rebuilt from the spool gets back from it",
                 b.len ? (const char *)b.data : "none");
        else
            note(s,
                 "spool/" REEL_JOURNAL_NAME " lacked %s that the index holds%s%s: written anew "
                 "from the index's user data; the old journal is %s",
                 b.len ? (const char *)b.data : "nothing",
                 x.len ? ", and held changes the "
                         "index does not have: "
                       : "",
                 x.len ? (const char *)x.data : "", aside + strlen(s->path) + 1);
        reel_buf_free(&b);
        reel_buf_free(&x);
    }
    free(dir);
    free(aside);
out:
    free(jp);
    return rc;
}

/* Copies the user data that still reads from the old index (attached as
 * `old`) into the new one; notes what was kept and what was lost. The
 * column lists are schema version 1's. Returns 1 if the old index's user
 * data read in full (or it had no tables), else 0. */
static int salvage(reel_session_t *s, sqlite3 *nd, const char *oldpath) {
    static const struct {
        const char *table, *what, *sql;
    } parts[] = {
        {"meta", NULL,
         "INSERT OR REPLACE INTO main.meta(key, value) SELECT key, value FROM old.meta WHERE key "
         "NOT IN ('name', 'format')"},
        {"annotations", "annotation",
         "INSERT OR IGNORE INTO main.annotations(id, flow_id, created_us, text) SELECT id, "
         "flow_id, created_us, text FROM old.annotations"},
        {"tags", "tag",
         "INSERT OR IGNORE INTO main.tags(flow_id, tag) SELECT flow_id, tag FROM old.tags"},
        {"marks", "mark",
         "INSERT OR IGNORE INTO main.marks(flow_id, created_us) SELECT flow_id, created_us FROM "
         "old.marks"},
        {"config_overlay", "overlay key",
         "INSERT OR IGNORE INTO main.config_overlay(key, value, updated_us) SELECT key, value, "
         "updated_us FROM old.config_overlay"},
        {"config_history", "config change",
         "INSERT OR IGNORE INTO main.config_history(id, time_us, key, old_value, new_value, "
         "actor) SELECT id, time_us, key, old_value, new_value, actor FROM old.config_history"},
    };
    reel_buf_t kept, lost;
    reel_buf_init(&kept, 0);
    reel_buf_init(&lost, 0);
    sqlite3_stmt *st = NULL;
    int attached = sqlite3_prepare_v2(nd, "ATTACH ?1 AS old", -1, &st, NULL) == SQLITE_OK;
    if (attached) {
        sqlite3_bind_text(st, 1, oldpath, -1, SQLITE_STATIC);
        attached = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (attached &&
        sqlite3_prepare_v2(nd, "SELECT count(*) FROM old.sqlite_master", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0) {
        note(s, "the old index was empty: there was no user data to keep");
        sqlite3_finalize(st);
        sqlite3_exec(nd, "DETACH old", NULL, NULL, NULL);
        reel_buf_free(&kept);
        reel_buf_free(&lost);
        return 1;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; attached && i < sizeof parts / sizeof *parts; i++) {
        if (sqlite3_exec(nd, "SAVEPOINT salvage", NULL, NULL, NULL) != SQLITE_OK)
            break;
        if (sqlite3_exec(nd, parts[i].sql, NULL, NULL, NULL) == SQLITE_OK) {
            int n = sqlite3_changes(nd);
            sqlite3_exec(nd, "RELEASE salvage", NULL, NULL, NULL);
            if (parts[i].what && n)
                reel_buf_printf(&kept, "%s%d %s%s", kept.len ? ", " : "", n, parts[i].what,
                                n == 1 ? "" : "s");
        } else {
            reel_buf_printf(&lost, "%s%s (%s)", lost.len ? ", " : "", parts[i].table,
                            sqlite3_errmsg(nd));
            /* each on its own: a ROLLBACK TO that fails (a table that does
             * not read, SQLITE_CORRUPT) left the transaction open, and the
             * journal's replay then could not begin its own */
            sqlite3_exec(nd, "ROLLBACK TO salvage", NULL, NULL, NULL);
            sqlite3_exec(nd, "RELEASE salvage", NULL, NULL, NULL);
            if (!sqlite3_get_autocommit(nd))
                sqlite3_exec(nd, "ROLLBACK", NULL, NULL, NULL); /* (this part's alone) */
        }
    }
    if (attached)
        sqlite3_exec(nd, "DETACH old", NULL, NULL, NULL);
    if (!attached)
        note(s, "nothing in the old index could be read (its user data can only come from the "
                "journal)");
    else if (lost.len)
        note(s, "could not read from the old index (the journal has them, if it is whole): %s",
             (const char *)lost.data);
    if (attached)
        note(s, "user data kept: %s", kept.len ? (const char *)kept.data : "none (there was none)");
    int whole = attached && lost.len == 0;
    reel_buf_free(&kept);
    reel_buf_free(&lost);
    return whole;
}

/* Replaces a damaged session.db by a new index holding the user data that
 * still reads; the old file (and its -wal, -shm) goes to recovered/.
 * *created_lost: the old file gave no created_us (missing, empty, or not
 * readable that far): the new index holds the repair's time until the
 * caller sets the first flow's start, as for a missing file. */
static reel_rc replace_index(reel_session_t *s, int foreign, int *created_lost, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char *dbpath = reel_asprintf("%s/session.db", s->path);
    char *newpath = reel_asprintf("%s/session.db.new", s->path);
    char *dir = reel_asprintf("%s/recovered", s->path);
    char *aside = reel_asprintf("%s/session.db.%lld.%s", dir, (long long)(reel_now_us() / 1000),
                                foreign ? "foreign" : "damaged");
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    sqlite3 *nd = NULL;
    note(s, "%s", s->db_damage ? s->db_damage : "session.db is damaged");
    for (size_t i = 0; i < 4; i++) {
        char *p = reel_asprintf("%s%s", newpath, sfx[i]);
        unlink(p); /* a leftover of an interrupted repair */
        free(p);
    }
    if ((rc = reel_index_open(newpath, 1, &nd, err)) != REEL_OK)
        goto out;
    if (chmod(newpath, 0600) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "chmod %s", newpath);
        goto out;
    }
    give(s, -1, newpath); /* before its -wal and -shm: SQLite gives them the same owner */
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)reel_now_us());
    if ((rc = reel_index_meta_set(nd, "name", s->name, err)) != REEL_OK ||
        (rc = reel_index_meta_set(nd, "format", "reel-session 1", err)) != REEL_OK ||
        (rc = reel_index_meta_set(nd, "journal", "1", err)) != REEL_OK ||
        (rc = reel_index_meta_set(nd, "journal_drops", "1", err)) != REEL_OK)
        goto out;
    struct stat dst;
    int db_exists = stat(dbpath, &dst) == 0;
    /* (ATTACH would make the file.) Another session's index has no user
     * data of this one's flows: the journal has them all. */
    int read_old = db_exists && !foreign && salvage(s, nd, dbpath);
    /* created_us is the old file's when salvage read it, else set below. */
    char *old_created = reel_index_meta_get(nd, "created_us");
    *created_lost = old_created == NULL;
    free(old_created);
    if (*created_lost && (rc = reel_index_meta_set(nd, "created_us", now, err)) != REEL_OK)
        goto out;
    {
        /* Without the journal, what the old index did not give is lost:
         * say so rather than let an empty list pass for the truth. */
        char *jp = journal_path(s);
        struct stat jst;
        if (!read_old && stat(jp, &jst) != 0 && errno == ENOENT)
            note(s,
                 "spool/" REEL_JOURNAL_NAME " is missing%s: annotations, tags, marks and "
                 "config changes %scould not be restored, and are lost",
                 foreign     ? " and the old index is another session's"
                 : db_exists ? " and the old index could not be read in full"
                             : " and there is no old index",
                 db_exists && !foreign ? "that did not read from the old index "
                                       : "the session had ");
        free(jp);
    }
    /* Then everything the journal says (salvaged rows come back the same). */
    if ((rc = replay_journal(s, nd, err)) != REEL_OK)
        goto out;
    if (sqlite3_close(nd) != SQLITE_OK) {
        rc = reel_err_set(err, REEL_DB, "closing %s: %s", newpath, sqlite3_errmsg(nd));
        goto out;
    }
    nd = NULL;
    reel_index_writer_signal(s->db, -1);
    sqlite3_close_v2(s->db);
    s->db = NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = reel_err_errno(err, REEL_IO, errno, "creating %s", dir);
        goto out;
    }
    give(s, -1, dir);
    /* The old file stays reachable under session.db until the new one
     * replaces it in one rename; its WAL must go first, or SQLite would
     * read it as the new file's. */
    if (db_exists && link(dbpath, aside) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "keeping the damaged index as %s", aside);
        goto out;
    }
    for (size_t i = 1; i < 4; i++) {
        char *from = reel_asprintf("%s%s", dbpath, sfx[i]);
        char *to = reel_asprintf("%s%s", aside, sfx[i]);
        if (rename(from, to) != 0 && errno != ENOENT && rc == REEL_OK)
            rc = reel_err_errno(err, REEL_IO, errno, "moving %s aside", from);
        free(from);
        free(to);
    }
    if (rc != REEL_OK)
        goto out;
    if (rename(newpath, dbpath) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "replacing %s", dbpath);
        goto out;
    }
    if (db_exists)
        note(s, "moved the %s aside to %s and made a new one",
             foreign ? "other session's index" : "damaged index", aside + strlen(s->path) + 1);
    else
        note(s, "made a new index");
    int dfd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if ((rc = reel_index_open(dbpath, 0, &s->db, err)) == REEL_OK)
        rc = attach_journal(s, err);
    if (rc == REEL_OK)
        writes_signal(s);
out:
    if (nd)
        sqlite3_close(nd);
    free(dbpath);
    free(newpath);
    free(dir);
    free(aside);
    return rc;
}

/* Whether the open index passes SQLite's quick_check; if not, keeps the
 * first complaint in s->db_damage. */
static int index_sound(reel_session_t *s) {
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL) == SQLITE_OK) {
        int step = sqlite3_step(st);
        const char *t = step == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        ok = t && strcmp(t, "ok") == 0;
        if (!ok) {
            free(s->db_damage);
            s->db_damage = reel_asprintf("session.db is damaged (SQLite's quick_check: %.200s)",
                                         t ? t : sqlite3_errmsg(s->db));
            for (char *c = s->db_damage; *c; c++)
                if (*c == '\n')
                    *c = ' ';
        }
    } else {
        free(s->db_damage);
        s->db_damage = reel_asprintf("session.db is damaged (%s)", sqlite3_errmsg(s->db));
    }
    sqlite3_finalize(st);
    return ok;
}

/* A journal with damaged frames is written anew with the valid ones; the
 * old file goes to recovered/. */
static reel_rc repair_journal(reel_session_t *s, reel_err_t *err) {
    char *jp = journal_path(s);
    char *dir = reel_asprintf("%s/recovered", s->path);
    char *aside = reel_asprintf("%s/" REEL_JOURNAL_NAME ".%lld.damaged", dir,
                                (long long)(reel_now_us() / 1000));
    reel_journal_stats_t st;
    int fixed = 0;
    reel_rc rc = REEL_OK;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        rc = reel_err_errno(err, REEL_IO, errno, "creating %s", dir);
    give(s, -1, dir);
    if (rc == REEL_OK)
        rc = reel_journal_rewrite(jp, aside, &fixed, &st, err);
    if (rc == REEL_OK && fixed)
        note(s,
             "spool/" REEL_JOURNAL_NAME ": %llu damaged byte%s (%s at offset %llu) dropped, the "
             "changes in them are lost; the old file is %s",
             (unsigned long long)st.bad_bytes, st.bad_bytes == 1 ? "" : "s", st.reason,
             (unsigned long long)st.bad_off, aside + strlen(s->path) + 1);
    free(jp);
    free(dir);
    free(aside);
    return rc;
}

reel_rc reel_session_repair(reel_session_t *s, char **report, reel_err_t *err) {
    *report = NULL;
    int took = 0;
    if (s->readonly)
        return reel_err_set(err, REEL_IO, "session '%s' cannot be written by this user (%s)",
                            s->name, s->readonly);
    if (!s->recording) {
        if (s->lock_fd < 0)
            return reel_err_set(err, REEL_IO, "cannot lock session '%s' (read-only?)", s->name);
        if (take_lock(s, 3000) != REEL_OK)
            return locked_error(s, err);
        took = 1;
    }
    reel_buf_reset(&s->note);
    reel_rc rc = repair_journal(s, err);
    int missing = s->db_missing; /* no old file: created_us is not known */
    char *foreign = NULL;
    int sound = rc == REEL_OK && s->db && index_sound(s);
    if (sound && (foreign = foreign_index(s)) != NULL) {
        free(s->db_damage);
        s->db_damage = foreign;
    }
    if (rc == REEL_OK && (!sound || foreign))
        rc = replace_index(s, foreign != NULL, &missing, err);
    if (rc == REEL_OK)
        rc = undo_import(s, err);
    if (rc == REEL_OK)
        rc = settle_drops(s, 1, err);
    if (rc == REEL_OK)
        rc = rebuild(s, err);
    if (rc == REEL_OK)
        rc = settle_drops(s, 0, err);
    if (rc == REEL_OK)
        rc = rewrite_journal(s, err);
    if (rc == REEL_OK && missing) {
        /* Nothing else tells when the session was made (an unreadable
         * old file is as good as none, docs/format.md). A flow whose start
         * record was lost has start_us 0, which is no time at all: the
         * first start the spool still holds is. */
        rc = reel_index_exec(s->db,
                             "UPDATE meta SET value = (SELECT min(start_us) FROM flows WHERE "
                             "start_us > 0) WHERE key = 'created_us' AND EXISTS (SELECT 1 FROM "
                             "flows WHERE start_us > 0)",
                             err);
        s->db_missing = 0;
    }
    if (took)
        flock(s->lock_fd, LOCK_UN);
    *report = reel_strdup(reel_session_recovery_note(s));
    return rc;
}

/* ---- verify ---- */

typedef struct {
    reel_session_t *s;
    uint32_t segment;
    sqlite3_stmt *frame_q, *ff_q;
    reel_buf_t *report;
    uint64_t frames, problems;
    /* What the spool holds of each flow's bodies, for flows 1 .. max_id
     * (the index knows no others). */
    stored_ctx *stored;
    uint64_t max_id;
    uint64_t seg_end; /* end of the last valid frame of this segment */
    /* A session another process records into: the spool past what the
     * index (read in one snapshot) has indexed is not checked; *stopped
     * says the scan of this segment reached that point. */
    uint64_t live_end;
    int live_stopped;
    /* Segments not checked, sorted: dropped on purpose (listed in
     * `retention`, in the snapshot or since). A drop deletes a segment's
     * flow rows, then its frame rows, then the file, in separate
     * transactions (docs/format.md, section 6a): mid-drop, the snapshot
     * can hold frames whose flows are gone, and a file can go while this
     * runs. Flows with records in them are not checked either. */
    uint32_t *skip;
    size_t nskip, capskip;
    uint64_t dropped_meanwhile; /* of those, dropped after the snapshot */
} verify_ctx;

static void skip_add(verify_ctx *v, uint32_t seg) {
    size_t i = v->nskip;
    while (i > 0 && v->skip[i - 1] >= seg) {
        if (v->skip[i - 1] == seg)
            return;
        i--;
    }
    if (v->nskip == v->capskip)
        v->skip =
            reel_realloc(v->skip, (v->capskip = v->capskip ? v->capskip * 2 : 8) * sizeof *v->skip);
    memmove(v->skip + i + 1, v->skip + i, (v->nskip - i) * sizeof *v->skip);
    v->skip[i] = seg;
    v->nskip++;
}

/* Whether a skipped segment lies in first .. last. */
static int skipped_in(const verify_ctx *v, uint32_t first, uint32_t last) {
    for (size_t i = 0; i < v->nskip; i++)
        if (v->skip[i] >= first && v->skip[i] <= last)
            return 1;
    return 0;
}

/* A segment the snapshot knows, found gone: dropped by retention since
 * (skipped, not a problem) or not. */
static int dropped_since(verify_ctx *v, uint32_t seg) {
    if (reel_session_segment_gone(v->s, seg) != REEL_SEGMENT_DROPPED)
        return 0;
    skip_add(v, seg);
    v->dropped_meanwhile++;
    return 1;
}

static void problem(verify_ctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(verify_ctx *v, const char *fmt, ...) {
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    reel_buf_printf(v->report, "%s\n", line);
    v->problems++;
}

static int verify_frame_cb(void *ctx, uint64_t off, size_t clen, const uint8_t *raw, size_t rlen) {
    verify_ctx *v = ctx;
    if (off >= v->live_end) {
        v->live_stopped = 1;
        return 1; /* written, not indexed yet: a writer's, not a problem */
    }
    v->frames++;
    v->seg_end = off + clen;
    sqlite3_bind_int64(v->frame_q, 1, v->segment);
    sqlite3_bind_int64(v->frame_q, 2, (sqlite3_int64)off);
    if (sqlite3_step(v->frame_q) != SQLITE_ROW) {
        problem(v, "segment %08u.zst: frame at offset %llu is not in the index", v->segment,
                (unsigned long long)off);
    } else if ((uint64_t)sqlite3_column_int64(v->frame_q, 0) != clen ||
               (uint64_t)sqlite3_column_int64(v->frame_q, 1) != rlen) {
        problem(v, "segment %08u.zst: frame at offset %llu: index says %lld/%lld bytes, spool has "
                   "%zu/%zu",
                v->segment, (unsigned long long)off, sqlite3_column_int64(v->frame_q, 0),
                sqlite3_column_int64(v->frame_q, 1), clen, rlen);
    }
    sqlite3_reset(v->frame_q);
    /* Every record decodes and its flow is linked to this frame. */
    size_t pos = 0, len = 0, k = 0;
    const uint8_t *rec = NULL;
    uint64_t last = 0;
    while (reel_spool_block_next(raw, rlen, &pos, &rec, &len) == REEL_OK) {
        Reel__Record *r = reel__record__unpack(NULL, len, rec);
        if (r == NULL) {
            problem(v, "segment %08u.zst: frame at offset %llu: record %zu does not decode",
                    v->segment, (unsigned long long)off, k);
        } else if (r->flow_id && r->flow_id <= v->max_id) {
            count_stored(r, &v->stored[r->flow_id]);
        }
        if (r && r->flow_id && r->flow_id != last) {
            last = r->flow_id;
            sqlite3_bind_int64(v->ff_q, 1, (sqlite3_int64)r->flow_id);
            sqlite3_bind_int64(v->ff_q, 2, v->segment);
            sqlite3_bind_int64(v->ff_q, 3, (sqlite3_int64)off);
            if (sqlite3_step(v->ff_q) != SQLITE_ROW)
                problem(v, "segment %08u.zst: frame at offset %llu holds records of flow %llu "
                           "that the index does not link to it",
                        v->segment, (unsigned long long)off, (unsigned long long)r->flow_id);
            sqlite3_reset(v->ff_q);
        }
        reel__record__free_unpacked(r, NULL);
        k++;
    }
    return 0;
}

/* Verify: flows that lost records must say so. A complete flow whose body
 * has fewer bytes in the spool than its end record says, a flow without a
 * start record, and a flow that a known damaged range may have taken
 * records from (it was open there) and that does not check out whole are
 * problems unless the index marks them damaged; damaged flows are listed
 * as known damage. Flows with frames past what the scan read (a recorder
 * is appending) are left out. */
static void verify_flows(verify_ctx *v, const uint32_t *segs, const uint64_t *scanned,
                         size_t nseg) {
    sqlite3 *db = v->s->db;
    sqlite3_stmt *st = NULL;
    uint64_t *dpos = NULL;
    size_t nd = 0, cap = 0;
    long long known = 0, unreported = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT " SQL_POS("segment", "offset") " FROM damage WHERE reason != "
                           "'segment file missing' ORDER BY 1",
                           -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (nd == cap)
                dpos = reel_realloc(dpos, (cap = cap ? cap * 2 : 8) * sizeof *dpos);
            dpos[nd++] = (uint64_t)sqlite3_column_int64(st, 0);
        }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT f.id, f.damaged, ff.lo, ff.hi, " FACTS_COLS ", f.state = "
                           "'interrupted' FROM flows f "
                           "JOIN (SELECT flow_id, min(" SQL_POS("segment", "offset") ") AS lo, "
                           "max(" SQL_POS("segment", "offset") ") AS hi FROM flow_frames GROUP "
                           "BY flow_id) ff ON ff.flow_id = f.id",
                           -1, &st, NULL) != SQLITE_OK) {
        problem(v, "session.db: cannot read flows: %s", sqlite3_errmsg(db));
        goto out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
        int damaged = sqlite3_column_int(st, 1) != 0;
        uint64_t lo = (uint64_t)sqlite3_column_int64(st, 2);
        uint64_t hi = (uint64_t)sqlite3_column_int64(st, 3);
        if (damaged) {
            known++;
            continue;
        }
        /* Its last frame must be within what the scan read. */
        uint32_t hseg = (uint32_t)(hi >> 40);
        size_t a = 0, b = nseg;
        while (a < b) {
            size_t m = (a + b) / 2;
            if (segs[m] < hseg)
                a = m + 1;
            else
                b = m;
        }
        if (a == nseg || segs[a] != hseg || (hi & ((1ull << 40) - 1)) >= scanned[a] ||
            id > v->max_id || skipped_in(v, (uint32_t)(lo >> 40), hseg))
            continue;
        flow_facts f;
        facts_load(st, 4, &f);
        for (int d = 0; d < 2; d++) {
            f.stored[d] = v->stored[id].stored[d];
            f.decoded[d] = v->stored[id].decoded[d];
        }
        char what[300] = "";
        for (int d = 0; d < 2 && !what[0]; d++) {
            int exact;
            uint64_t want = body_expected(&f, d, &exact);
            if (exact && f.stored[d] < want)
                snprintf(what, sizeof what,
                         "its %s body has %llu of its %llu bytes in the spool (a hole)",
                         d ? "response" : "request", (unsigned long long)f.stored[d],
                         (unsigned long long)want);
        }
        if (!what[0] && !f.has_start)
            snprintf(what, sizeof what, "its start record is not in the spool");
        /* A flow cut off by the end of an earlier recording (interrupted
         * before the range was found) did not lose its end there. */
        int cut_off = sqlite3_column_int(st, 4 + FACTS_NCOLS);
        for (size_t k = 0; k < nd && !what[0]; k++)
            if (lo < dpos[k] && (hi > dpos[k] || (!f.finished && !cut_off)) &&
                !flow_intact(&f))
                snprintf(what, sizeof what,
                         "it was open at the damaged range at offset %llu of segment %08u.zst "
                         "and does not check out whole",
                         (unsigned long long)(dpos[k] & ((1ull << 40) - 1)),
                         (unsigned)(dpos[k] >> 40));
        if (!what[0])
            continue;
        if (++unreported <= 20)
            problem(v, "flow %llu lost records that the index does not record: %s",
                    (unsigned long long)id, what);
        else
            v->problems++;
    }
    if (unreported > 20)
        reel_buf_printf(v->report, "... and %lld more flows that lost records unrecorded\n",
                        unreported - 20);
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM flows WHERE damaged != 0", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        known = sqlite3_column_int64(st, 0); /* with those that have no records left */
    sqlite3_finalize(st);
    st = NULL;
    if (known == 0)
        goto out;
    /* Known damage: listed, not a failure. */
    long long shown = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT flow_id, direction, offset, length, reason FROM flow_damage "
                           "ORDER BY flow_id, rowid LIMIT 21",
                           -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW && ++shown <= 20) {
            long long off = sqlite3_column_int64(st, 2), len = sqlite3_column_int64(st, 3);
            const char *dir = (const char *)sqlite3_column_text(st, 1);
            const char *why = (const char *)sqlite3_column_text(st, 4);
            long long fid = sqlite3_column_int64(st, 0);
            int body = dir && strcmp(dir, "flow") != 0;
            if (body && len >= 0)
                reel_buf_printf(v->report, "flow %lld: known damage: %s body bytes %lld-%lld "
                                           "missing (%s)\n",
                                fid, dir, off, off + len - 1, why);
            else if (body)
                reel_buf_printf(v->report, "flow %lld: known damage: %s body bytes may be "
                                           "missing at %lld (%s)\n",
                                fid, dir, off, why);
            else
                reel_buf_printf(v->report, "flow %lld: known damage: %s\n", fid, why);
        }
    reel_buf_printf(v->report, "%lld flow%s marked damaged (known damage: 'reel flows %s "
                               "~damaged')\n",
                    known, known == 1 ? "" : "s", v->s->name);
out:
    sqlite3_finalize(st);
    free(dpos);
}

reel_rc reel_session_verify(reel_session_t *s, char **report, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_buf_t rep;
    reel_buf_init(&rep, 0);
    verify_ctx v = {.s = s, .report = &rep};
    sqlite3_stmt *dmg = NULL, *idx_frames = NULL;
    /* A live recorder's index moves on while this runs: every query reads
     * one snapshot of it, taken before the spool is read (the spool is
     * always ahead of the index), and the spool is checked up to it.
     * Segments are listed after it: every one it indexes is then there,
     * unless retention has dropped it since. */
    /* Also without a recorder: a CLI command, or a recorder started
     * meanwhile (this gave the lock back after recovery), may write while
     * this runs; frames indexed after the segments were listed looked like
     * missing segments. The journal's length before it: a change made while
     * this runs is not held against the index (see below). */
    reel_err_t snap_err;
    reel_err_clear(&snap_err);
    /* Its length taken with the write lock held: every frame appended
     * before it is then committed to the index too (they are appended in
     * the commit, under that lock), so a frame this snapshot lacks came
     * after, and the length differs at the end. Without the lock (a
     * read-only session, a writer holding it), not compared: -2. */
    char *jp0 = journal_path(s);
    struct stat jst0;
    long long jsize0 = -2;
    if (!s->readonly && sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK) {
        jsize0 = stat(jp0, &jst0) == 0 ? (long long)jst0.st_size : -1;
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    free(jp0);
    int snapshot =
        reel_index_exec(s->db, "BEGIN; SELECT count(*) FROM frames", &snap_err) == REEL_OK;
    /* And the spool past that snapshot is a writer's, not a problem, as
     * beside a recorder: this holds no lock that would keep one out (the
     * open's recovery indexed all there was), so every check below is the
     * one made beside a recorder. */
    size_t nseg = 0;
    uint32_t *segs = list_segments(s, &nseg);
    uint64_t *scanned = reel_calloc(nseg + 1, sizeof *scanned);
    v.max_id = reel_index_max_flow_id(s->db);
    if (v.max_id > (1u << 28))
        v.max_id = 1u << 28; /* ids above are not checked for holes */
    v.stored = reel_calloc(v.max_id + 1, sizeof *v.stored);
    if ((rc = reel_index_prepare(s->db,
                                 "SELECT clen, rlen FROM frames WHERE segment = ? AND offset = ?",
                                 &v.frame_q, err)) != REEL_OK ||
        (rc = reel_index_prepare(s->db,
                                 "SELECT 1 FROM flow_frames WHERE flow_id = ?1 AND segment = ?2 "
                                 "AND offset = ?3 UNION ALL SELECT 1 FROM retired_flows WHERE "
                                 "flow_id = ?1",
                                 &v.ff_q, err)) != REEL_OK ||
        (rc = reel_index_prepare(s->db,
                                 "SELECT offset + length FROM damage WHERE segment = ? AND offset "
                                 "= ? AND reason != '" CUT_REASON "'",
                                 &dmg, err)) != REEL_OK)
        goto out;
    /* Spool to index: every frame checks out and is indexed. */
    for (size_t i = 0; i < nseg; i++) {
        if (reel_retention_is_retired(s->db, segs[i])) {
            skip_add(&v, segs[i]); /* its drop is under way, or a crash stopped it */
            continue;
        }
        int fd = reel_session_open_segment(s, segs[i]);
        if (fd < 0) {
            int e = errno;
            if (e != ENOENT || !dropped_since(&v, segs[i]))
                problem(&v, "segment %08u.zst: cannot open: %s", segs[i], strerror(e));
            continue;
        }
        struct stat sst;
        uint64_t end = reel_index_segment_end(s->db, segs[i]);
        if (fstat(fd, &sst) == 0 && (uint64_t)sst.st_size < end)
            problem(&v,
                    "segment %08u.zst is shorter than the index says: it ends at byte %llu, the "
                    "index has seen %llu; the records after the cut are gone (recovery, or 'reel "
                    "repair %s', records it and marks the flows that lost them)",
                    segs[i], (unsigned long long)sst.st_size, (unsigned long long)end, s->name);
        size_t ncut = 0;
        uint64_t(*cut)[2] = segment_cuts(s->db, segs[i], &ncut);
        for (size_t k = 0; k < ncut; k++)
            reel_buf_printf(&rep,
                            "segment %08u.zst: known cut short at offset %llu (the %llu bytes "
                            "after it that the index had seen are gone; the flows that had "
                            "records there are marked)\n",
                            segs[i], (unsigned long long)cut[k][0], (unsigned long long)cut[k][1]);
        free(cut);
        v.segment = segs[i];
        v.seg_end = 0;
        v.live_end = end;
        v.live_stopped = 0;
        for (uint64_t pos = 0;;) {
            reel_spool_scan_t sc;
            if ((rc = reel_spool_scan_ahead(fd, pos, verify_frame_cb, &v, &sc, err)) != REEL_OK)
                break;
            /* (a frame past the snapshot that does not read whole is one
             * a writer is appending: its end not written yet, as the frames
             * after it are written and not yet indexed; it was "cut short
             * by the end of the file", a false problem) */
            if (sc.reason[0] == '\0' || v.live_stopped || sc.bad_off >= v.live_end)
                break;
            sqlite3_bind_int64(dmg, 1, segs[i]);
            sqlite3_bind_int64(dmg, 2, (sqlite3_int64)sc.bad_off);
            uint64_t next = 0;
            if (sqlite3_step(dmg) == SQLITE_ROW) {
                next = (uint64_t)sqlite3_column_int64(dmg, 0);
                reel_buf_printf(&rep,
                                "segment %08u.zst: known damage at offset %llu (%llu bytes, "
                                "skipped by repair)\n",
                                segs[i], (unsigned long long)sc.bad_off,
                                (unsigned long long)(next - sc.bad_off));
            } else if (sc.skip_len) {
                problem(&v, "segment %08u.zst: offset %llu: %s (not recorded in the index)",
                        segs[i], (unsigned long long)sc.bad_off, sc.reason);
                next = sc.bad_off + sc.skip_len;
            } else {
                if (reel_spool_resync(fd, sc.bad_off + 1, &next, err) != REEL_OK)
                    next = sc.file_size;
                /* What repair would keep of it. */
                reel_buf_t comp, recs;
                reel_buf_init(&comp, 0);
                reel_buf_init(&recs, 0);
                size_t want = next - sc.bad_off < REEL_SPOOL_FRAME_MAX
                                  ? (size_t)(next - sc.bad_off)
                                  : REEL_SPOOL_FRAME_MAX;
                reel_spool_salvage_t si = {0};
                reel_buf_reserve(&comp, want);
                ssize_t got = pread(fd, comp.data, want, (off_t)sc.bad_off);
                if (got > 0)
                    reel_spool_salvage(comp.data, (size_t)got, &recs, &si);
                problem(&v,
                        "segment %08u.zst: frame at offset %llu: %s; %zu whole record%s %s can "
                        "be salvaged (unverified%s), which 'reel repair' does",
                        segs[i], (unsigned long long)sc.bad_off, sc.reason, si.records,
                        si.records == 1 ? "" : "s",
                        si.bad_checksum ? "(all of its content)" : "before the damage",
                        si.bad_checksum || si.bad_block
                            ? ": their flows are then marked damaged, as some bytes may be wrong"
                            : "");
                reel_buf_free(&comp);
                reel_buf_free(&recs);
            }
            sqlite3_reset(dmg);
            if (next <= sc.bad_off || next >= sc.file_size)
                break;
            pos = next;
        }
        scanned[i] = v.seg_end;
        close(fd);
        if (rc != REEL_OK)
            goto out;
    }
    /* Index to spool: every indexed frame's segment exists, and every
     * segment number up to the newest does (segments are never skipped). */
    uint64_t indexed = 0;
    if ((rc = reel_index_prepare(s->db,
                                 "SELECT segment, count(*), (SELECT count(DISTINCT flow_id) FROM "
                                 "flow_frames ff WHERE ff.segment = f.segment) FROM frames f "
                                 "GROUP BY segment",
                                 &idx_frames, err)) != REEL_OK)
        goto out;
    while (sqlite3_step(idx_frames) == SQLITE_ROW) {
        uint32_t seg = (uint32_t)sqlite3_column_int64(idx_frames, 0);
        long long n = sqlite3_column_int64(idx_frames, 1);
        if (skipped_in(&v, seg, seg))
            continue;
        if (has_segment(segs, nseg, seg)) {
            indexed += (uint64_t)n;
            continue;
        }
        if (dropped_since(&v, seg))
            continue;
        problem(&v,
                "segment %08u.zst is missing%s: the index lists %lld frame%s of it, holding "
                "records of %lld flow%s that cannot be read in full",
                seg, segment_in_place(s, seg), n, n == 1 ? "" : "s",
                sqlite3_column_int64(idx_frames, 2),
                sqlite3_column_int64(idx_frames, 2) == 1 ? "" : "s");
    }
    {
        /* Runs repair recorded as missing are known damage; gaps in the
         * numbering that neither the index nor repair accounts for are
         * problems. */
        sqlite3_stmt *c = NULL;
        if (reel_index_prepare(s->db,
                               "SELECT segment, length FROM damage WHERE reason = 'segment file "
                               "missing' ORDER BY segment",
                               &c, err) == REEL_OK)
            while (sqlite3_step(c) == SQLITE_ROW) {
                segrange r = {(uint32_t)sqlite3_column_int64(c, 0),
                              (uint32_t)sqlite3_column_int64(c, 1)};
                if (r.count == 0)
                    r.count = 1;
                range_name(&rep, r);
                reel_buf_puts(&rep, ": known missing (repair dropped what the index had of it "
                                    "and marked the flows that lost records)\n");
            }
        sqlite3_finalize(c);
        size_t nknown = 0;
        segrange *known = known_segments(s->db, &nknown);
        uint32_t prev = 0;
        for (size_t i = 0; i < nseg; i++) {
            uint32_t lo = prev + 1, hi = segs[i]; /* the gap before segs[i]: [lo, hi) */
            prev = segs[i];
            /* Dropped since the snapshot, oldest first: not a gap. One
             * the snapshot lists as dropped was gone before this began
             * (known below), not "while this ran". */
            while (lo < hi && hi - lo <= 64 && !reel_retention_is_retired(s->db, lo) &&
                   dropped_since(&v, lo))
                lo++;
            for (size_t k = 0; k < nknown && lo < hi; k++) {
                uint64_t kend = (uint64_t)known[k].first + known[k].count;
                if (kend <= lo || known[k].first >= hi)
                    continue;
                if (known[k].first > lo) {
                    reel_buf_t b;
                    reel_buf_init(&b, 0);
                    range_name(&b, (segrange){lo, known[k].first - lo});
                    problem(&v, "%s %s missing (a gap in the numbering of the spool)",
                            (const char *)b.data, known[k].first - lo == 1 ? "is" : "are");
                    reel_buf_free(&b);
                }
                lo = kend >= hi ? hi : (uint32_t)kend;
            }
            if (lo < hi) {
                reel_buf_t b;
                reel_buf_init(&b, 0);
                range_name(&b, (segrange){lo, hi - lo});
                problem(&v, "%s %s missing (a gap in the numbering of the spool)",
                        (const char *)b.data, hi - lo == 1 ? "is" : "are");
                reel_buf_free(&b);
            }
        }
        free(known);
    }
    if (indexed > v.frames)
        problem(&v, "index lists %llu frames but the spool holds %llu valid ones",
                (unsigned long long)indexed, (unsigned long long)v.frames);
    {
        sqlite3_stmt *c = NULL;
        if (reel_index_prepare(s->db,
                               "SELECT id FROM flows WHERE damaged = 0 AND NOT EXISTS (SELECT 1 "
                               "FROM flow_frames ff WHERE ff.flow_id = flows.id) LIMIT 10",
                               &c, err) == REEL_OK)
            while (sqlite3_step(c) == SQLITE_ROW)
                problem(&v, "flow %lld has no records in the spool", sqlite3_column_int64(c, 0));
        sqlite3_finalize(c);
        /* client_conns (what ~conn reads): each connection's range covers
         * its flows (wider is no error: retention deletes flows in it) */
        if (reel_index_prepare(s->db,
                               "SELECT f.conn, f.lo, f.hi FROM (" REEL_INDEX_CONN_RANGES
                               ") f LEFT JOIN client_conns k ON k.conn = f.conn WHERE k.conn IS "
                               "NULL OR k.first_flow > f.lo OR k.last_flow < f.hi LIMIT 10",
                               &c, err) == REEL_OK)
            while (sqlite3_step(c) == SQLITE_ROW)
                problem(&v,
                        "session.db: client_conns does not cover client connection %lld's flows "
                        "%lld..%lld ('~conn %lld' misses some; 'reel repair %s' makes it again)",
                        sqlite3_column_int64(c, 0), sqlite3_column_int64(c, 1),
                        sqlite3_column_int64(c, 2), sqlite3_column_int64(c, 0), s->name);
        sqlite3_finalize(c);
        if (reel_index_prepare(s->db, "PRAGMA quick_check", &c, err) == REEL_OK)
            while (sqlite3_step(c) == SQLITE_ROW) {
                const char *t = (const char *)sqlite3_column_text(c, 0);
                if (t && strcmp(t, "ok") != 0)
                    problem(&v, "session.db is damaged (SQLite's quick_check: %s)", t);
            }
        sqlite3_finalize(c);
        /* The indexes and triggers of flows that the schema gives it
         * (recovery makes them again; a read-only session keeps what
         * it has). */
        reel_buf_t names;
        reel_buf_init(&names, 0);
        size_t nobj = 0;
        reel_err_t e2;
        reel_err_clear(&e2);
        if (reel_index_flows_objects_missing(s->db, &names, &nobj, &e2) != REEL_OK)
            problem(&v, "session.db: cannot check the indexes of flows (%s)", reel_err_str(&e2));
        else if (nobj)
            problem(&v,
                    "session.db: the flows table lacks %s (a repair or compact stopped before it "
                    "was done; 'reel repair %s' makes %s again)",
                    (const char *)names.data, s->name, nobj == 1 ? "it" : "them");
        reel_buf_free(&names);
        /* The full-text indexes against their tables (FTS5 integrity-check
         * with rank 1). It takes a write lock, so not while another process
         * records. */
        static const char *const fts[] = {"annotation_fts"};
        long holder = reel_session_recorder_pid(s);
        if (s->readonly)
            reel_buf_puts(&rep, "session.db: full-text indexes not checked (FTS5's check "
                                "writes, and the session is read-only)\n");
        int may_write = !s->readonly && (holder == 0 || holder == (long)getpid());
        for (size_t k = 0; may_write && k < sizeof fts / sizeof fts[0]; k++) {
            char sql[128];
            snprintf(sql, sizeof sql, "INSERT INTO %s(%s, rank) VALUES('integrity-check', 1)",
                     fts[k], fts[k]);
            if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK)
                continue;
            int code = sqlite3_errcode(s->db) & 0xff;
            if (code == SQLITE_BUSY || code == SQLITE_LOCKED) /* another writer: not a mismatch */
                reel_buf_printf(&rep,
                                "session.db: %s not checked (%s: another process "
                                "was writing)\n",
                                fts[k], sqlite3_errmsg(s->db));
            else
                problem(&v, "session.db: %s does not match what it indexes (%s)", fts[k],
                        sqlite3_errmsg(s->db));
        }
    }
    verify_flows(&v, segs, scanned, nseg);
    {
        char *jp = journal_path(s);
        reel_journal_stats_t js;
        reel_err_t e2;
        reel_err_clear(&e2);
        if (reel_journal_check(jp, &js, &e2) != REEL_OK)
            problem(&v, "spool/" REEL_JOURNAL_NAME ": %s", reel_err_str(&e2));
        else if (js.bad_ranges)
            problem(&v,
                    "spool/" REEL_JOURNAL_NAME ": %llu damaged byte%s in %llu place%s (first at "
                    "offset %llu: %s)",
                    (unsigned long long)js.bad_bytes, js.bad_bytes == 1 ? "" : "s",
                    (unsigned long long)js.bad_ranges, js.bad_ranges == 1 ? "" : "s",
                    (unsigned long long)js.bad_off, js.reason);
        else if (js.records || js.drops)
            reel_buf_printf(&rep, "spool/" REEL_JOURNAL_NAME ": %llu user-data change%s%s\n",
                            (unsigned long long)js.records, js.records == 1 ? "" : "s",
                            js.drops ? ", and the segments retention or compact dropped" : "");
        /* The index keeps its user data in the journal: a journal that is
         * missing or lacks some (deleted, or deleted and begun again by a
         * later change) would lose it to a rebuild. */
        reel_journal_diff_t jd;
        reel_err_clear(&e2);
        struct stat jst1;
        /* (compared first, its length looked at after: a change made while
         * the compare read it is in what it read) */
        int compared = jsize0 != -2 && journal_kept(s->db) &&
                       reel_journal_compare(s->db, jp, &jd, &e2) == REEL_OK;
        long long jsize1 = stat(jp, &jst1) == 0 ? (long long)jst1.st_size : -1;
        if (jsize0 == -2)
            reel_buf_puts(&rep, "spool/" REEL_JOURNAL_NAME " not compared with the index (the "
                                "index could not be held still for it: read-only, or another "
                                "process writing)\n");
        else if (jsize1 != jsize0)
            reel_buf_puts(&rep, "spool/" REEL_JOURNAL_NAME " changed while this ran (a note, tag "
                                "or config change made meanwhile): not compared with the index\n");
        else if (compared) {
            reel_buf_t b;
            reel_buf_init(&b, 0);
            ud_counts(&b, jd.lacking);
            if (b.len && jd.missing)
                problem(&v,
                        "spool/" REEL_JOURNAL_NAME " is missing, though the index keeps its user "
                        "data there: its %s would be lost if the index were rebuilt ('reel repair "
                        "%s' writes the journal anew)",
                        (const char *)b.data, s->name);
            else if (b.len)
                problem(&v,
                        "spool/" REEL_JOURNAL_NAME " lacks %s that the index holds (was it "
                        "deleted or replaced?): they would be lost if the index were rebuilt "
                        "('reel repair %s' writes the journal anew)",
                        (const char *)b.data, s->name);
            reel_buf_reset(&b);
            ud_counts(&b, jd.extra);
            /* (a change committed since this began would be in the journal
             * and not in what this reads of the index: the journal's length
             * did not change, above) */
            if (b.len)
                problem(&v,
                        "spool/" REEL_JOURNAL_NAME " holds %s that the index does not have "
                        "(changes whose commit to the index did not reach the disk, or an "
                        "index older than its journal) ('reel repair %s' applies them)",
                        (const char *)b.data, s->name);
            reel_buf_free(&b);
        }
        free(jp);
    }
    if (s->live && reel_session_recorder_pid(s) > 0) /* (not a command's brief lock) */
        reel_buf_puts(&rep, "the session is being recorded: checked as far as its index had "
                            "got when this began (the frames written since are not)\n");
    if (v.nskip)
        reel_buf_printf(&rep, "%zu segment%s not checked: dropped by retention (%s)\n", v.nskip,
                        v.nskip == 1 ? "" : "s",
                        v.dropped_meanwhile ? "while this ran"
                                            : "listed as dropped, the drop "
                                              "not finished yet");
    reel_buf_printf(&rep, "%zu segment%s, %llu frames checked, %llu problem%s\n", nseg,
                    nseg == 1 ? "" : "s", (unsigned long long)v.frames,
                    (unsigned long long)v.problems, v.problems == 1 ? "" : "s");
    if (v.problems)
        rc = REEL_CORRUPT;
out:
    if (snapshot)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_finalize(v.frame_q);
    sqlite3_finalize(v.ff_q);
    sqlite3_finalize(dmg);
    sqlite3_finalize(idx_frames);
    free(segs);
    free(scanned);
    free(v.skip);
    free(v.stored);
    *report = (char *)rep.data;
    if (*report == NULL)
        *report = reel_strdup("");
    return rc;
}

/* Finishes removals that were cut short (a reel rm killed while it
 * deleted): the hidden ".NAME.removing-PID" directories in home whose
 * lock nobody holds, which reel ls does not list and which would
 * otherwise keep their disk space for good. Returns how many were of
 * the session `name`. */
static int finish_removals(const char *home, const char *name) {
    DIR *d = opendir(home);
    if (d == NULL)
        return 0;
    int mine = 0;
    size_t nl = strlen(name);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *r = e->d_name[0] == '.' ? strstr(e->d_name, ".removing-") : NULL;
        if (r == NULL || r == e->d_name || strspn(r + 10, "0123456789") != strlen(r + 10) ||
            r[10] == '\0')
            continue;
        char *dir = reel_asprintf("%s/%s", home, e->d_name);
        char *lp = reel_asprintf("%s/lock", dir);
        int fd = open(lp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        /* a lock someone holds: that rm is still at work; with its lock
         * file deleted already, its pid tells (one reused since only
         * leaves the directory for a later rm) */
        long pid = strtol(r + 10, NULL, 10);
        int idle = fd >= 0 ? flock(fd, LOCK_EX | LOCK_NB) == 0
                           : lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && pid > 0 &&
                                 kill((pid_t)pid, 0) != 0 && errno == ESRCH;
        if (idle && nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0 &&
            (size_t)(r - e->d_name - 1) == nl && strncmp(e->d_name + 1, name, nl) == 0)
            mine++;
        if (fd >= 0)
            close(fd);
        free(lp);
        free(dir);
    }
    closedir(d);
    return mine;
}

/* The first directory under a tree that this user may not empty (no
 * write or search permission), for removable(). nftw has no context, and
 * the web server removes sessions on threads of its own. */
static __thread char unremovable[PATH_MAX];

static int removable_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    if ((flag == FTW_D || flag == FTW_DNR) && access(path, W_OK | X_OK | R_OK) != 0) {
        snprintf(unremovable, sizeof unremovable, "%s", path);
        return 1;
    }
    return 0;
}

/* Whether every directory of the session at path (and home, which its
 * name goes out of) lets this user delete what it holds: else a removal
 * would stop half way, having deleted some of its files (session.db)
 * and kept others (the segments of a spool/ it may not write), where
 * nothing finds them again. */
static reel_rc removable(const char *home, const char *path, const char *name, reel_err_t *err) {
    unremovable[0] = '\0';
    if (access(home, W_OK | X_OK) != 0)
        snprintf(unremovable, sizeof unremovable, "%s", home);
    else if (nftw(path, removable_cb, 16, FTW_PHYS) < 0)
        return reel_err_errno(err, REEL_IO, errno, "reading %s", path);
    if (unremovable[0] == '\0')
        return REEL_OK;
    return reel_err_set(err, REEL_IO,
                        "session '%s' cannot be removed by this user: %s is not writable (%s), "
                        "and nothing was removed",
                        name, unremovable, strerror(EACCES));
}

reel_rc reel_session_remove(const char *home, const char *name, reel_err_t *err) {
    reel_session_t *s = NULL;
    int finished = finish_removals(home, name);
    /* No recovery, and a damaged or missing session.db is no obstacle. */
    reel_rc rc = reel_session_open(home, name,
                                   REEL_OPEN_RECORD | REEL_OPEN_REPAIR | REEL_OPEN_REMOVE, &s, err);
    if (rc == REEL_NOTFOUND && finished) {
        reel_err_clear(err); /* its removal, cut short before, is now done */
        return REEL_OK;
    }
    if (rc == REEL_OK)
        rc = removable(home, reel_session_path(s), name, err);
    if (rc != REEL_OK) {
        reel_session_close(s);
        return rc;
    }
    char *path = reel_strdup(reel_session_path(s));
    /* Out of the way under a hidden name first (reel ls skips those), in
     * one step: a reader of the session (an export) then finds the whole
     * directory gone and says so, where deleting in place would have it
     * find one segment after another missing, as if damaged. The lock
     * (held while deleting, so no recorder starts meanwhile) goes along:
     * it is held on an open file. */
    const char *slash = strrchr(path, '/');
    char *aside = slash ? reel_asprintf("%.*s/.%s.removing-%ld", (int)(slash - path), path,
                                        slash + 1, (long)getpid())
                        : reel_asprintf(".%s.removing-%ld", path, (long)getpid());
    const char *victim = rename(path, aside) == 0 ? aside : path;
    if (nftw(victim, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0)
        rc = reel_err_errno(err, REEL_IO, errno, "removing %s", victim);
    free(aside);
    reel_session_close(s);
    free(path);
    return rc;
}

/* The size reel ls and the web UI show: every regular file directly in
 * the session directory (session.db with its -wal and -shm) and in spool/. */
unsigned long long reel_session_dir_bytes(const char *dir) {
    unsigned long long total = 0;
    const char *subs[] = {"", "/spool"};
    for (int k = 0; k < 2; k++) {
        char *p = reel_asprintf("%s%s", dir, subs[k]);
        DIR *d = opendir(p);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            char *f = reel_asprintf("%s/%s", p, e->d_name);
            struct stat st;
            if (lstat(f, &st) == 0 && S_ISREG(st.st_mode))
                total += (unsigned long long)st.st_size;
            free(f);
        }
        if (d)
            closedir(d);
        free(p);
    }
    return total;
}
