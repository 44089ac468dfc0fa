/* Import transactions. See importtx.h for the contract and docs/format.md
 * ("Imports") for the file and the rules of undoing.
 *
 * Undoing cuts the spool back first, then deletes the index rows, then
 * removes `import`: cutting first gives back the disk space a failed
 * import took (a full disk is one reason it failed), and until `import` is
 * gone every open of the session starts the undo again, each step being a
 * no-op the second time. Readers that do not take the lock may meanwhile
 * see rows of frames that are cut: they read the rest of the flow's records
 * as for damage, and the next moment the rows are gone. */
#include "session/importtx.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "session/index.h"
#include "session/spool.h"

/* First line of the file: its format and version. */
#define MAGIC "reel-import 1"

static char *point_path(const char *session_path) {
    return reel_asprintf("%s/%s", session_path, REEL_IMPORTTX_NAME);
}

/* fsync of a directory: a new or removed entry must survive a crash. */
static int sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static reel_rc write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return REEL_IO;
        p += w;
        n -= (size_t)w;
    }
    return REEL_OK;
}

reel_rc reel_importtx_begin(reel_session_t *s, const reel_importtx_point_t *p, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    const char *dir = reel_session_path(s);
    char *path = point_path(dir);
    char *tmp = reel_asprintf("%s.tmp", path);
    int fd = -1;
    reel_buf_t b;
    reel_buf_init(&b, 0);
    struct stat st;
    if (stat(path, &st) == 0) {
        rc = reel_err_set(err, REEL_EXISTS,
                          "%s exists: another import into session '%s' did not "
                          "finish",
                          path, reel_session_name(s));
        goto out;
    }
    reel_buf_printf(&b,
                    MAGIC "\nsegment %" PRIu32 "\noffset %" PRIu64 "\nfirst_id %" PRIu64
                          "\nstarted_us %" PRId64 "\npid %ld\ncreated %d\nfile ",
                    p->segment, p->offset, p->first_id, p->started_us, p->pid, p->created ? 1 : 0);
    for (const char *c = p->file; *c && b.len < 4000; c++) {
        unsigned char u = (unsigned char)*c;
        char ch = u < 0x20 || u == 0x7f ? '?' : (char)u;
        reel_buf_append(&b, &ch, 1);
    }
    reel_buf_puts(&b, "\n");
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0)
        reel_session_give(dir, fd, tmp); /* its owner's next open reads it */
    if (fd < 0 || write_all(fd, (const char *)b.data, b.len) != REEL_OK || fsync(fd) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot write %s", tmp);
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0 || sync_dir(dir) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot write %s", path);
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    if (rc != REEL_OK)
        unlink(tmp);
    reel_buf_free(&b);
    free(tmp);
    free(path);
    return rc;
}

/* Removes `import` (synced): the import is whole, or undone. */
static reel_rc remove_point(const char *dir, reel_err_t *err) {
    char *path = point_path(dir);
    reel_rc rc = REEL_OK;
    if ((unlink(path) != 0 && errno != ENOENT) || sync_dir(dir) != 0)
        rc = reel_err_errno(err, REEL_IO, errno, "cannot remove %s", path);
    free(path);
    return rc;
}

reel_rc reel_importtx_commit(reel_session_t *s, reel_err_t *err) {
    return remove_point(reel_session_path(s), err);
}

/* Parses the unsigned decimal after "key " in line into *v. */
static int field_u64(const char *line, const char *key, uint64_t *v) {
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0 || line[k] != ' ' || line[k + 1] < '0' || line[k + 1] > '9')
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(line + k + 1, &end, 10);
    if (errno != 0 || *end != '\0')
        return 0;
    *v = x;
    return 1;
}

reel_rc reel_importtx_read(const char *session_path, reel_importtx_point_t *p, int *found,
                           reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char *path = point_path(session_path);
    memset(p, 0, sizeof *p);
    *found = 0;
    char buf[8192];
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            rc = reel_err_errno(err, REEL_IO, errno, "cannot read %s", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = reel_err_errno(err, REEL_IO, errno, "cannot read %s", path);
            close(fd);
            goto out;
        }
        if (n == 0 || (len += (size_t)n) == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    *found = 1;
    int have = 0; /* bits: segment, offset, first_id */
    int line_no = 0;
    for (char *line = buf, *next; line && *line; line = next, line_no++) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        uint64_t v;
        if (line_no == 0) {
            if (strcmp(line, MAGIC) != 0)
                break;
            have |= 8;
        } else if (field_u64(line, "segment", &v) && v > 0 && v <= UINT32_MAX) {
            p->segment = (uint32_t)v;
            have |= 1;
        } else if (field_u64(line, "offset", &v) && v <= INT64_MAX) {
            p->offset = v;
            have |= 2;
        } else if (field_u64(line, "first_id", &v) && v > 0 && v <= INT64_MAX) {
            p->first_id = v;
            have |= 4;
        } else if (field_u64(line, "started_us", &v) && v <= INT64_MAX) {
            p->started_us = (int64_t)v;
        } else if (field_u64(line, "pid", &v) && v <= INT32_MAX) {
            p->pid = (long)v;
        } else if (field_u64(line, "created", &v)) {
            p->created = v != 0;
        } else if (strncmp(line, "file ", 5) == 0) {
            snprintf(p->file, sizeof p->file, "%s", line + 5);
        } /* other lines: a later version's, not needed to undo */
    }
    if (have != 15)
        rc = reel_err_set(err, REEL_CORRUPT,
                          "%s, left by an import that did not finish, is damaged or of another "
                          "version (it must begin with '%s' and give segment, offset and "
                          "first_id), so that import cannot be undone; remove the file to keep "
                          "the flows it recorded",
                          path, MAGIC);
out:
    free(path);
    return rc;
}

/* Cuts the spool back to the point: later segments removed, the point's
 * truncated, each synced. Counts what went into *u. */
static reel_rc cut_spool(const char *spool_dir, const reel_importtx_point_t *p,
                         reel_importtx_undone_t *u, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    DIR *d = opendir(spool_dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return REEL_OK; /* nothing was written */
        return reel_err_errno(err, REEL_IO, errno, "cannot read %s", spool_dir);
    }
    struct dirent *e;
    int changed = 0;
    while (rc == REEL_OK && (e = readdir(d)) != NULL) {
        uint32_t n;
        if (!reel_spool_segment_parse(e->d_name, &n) || n < p->segment)
            continue;
        char *path = reel_asprintf("%s/%s", spool_dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) {
            if (errno != ENOENT)
                rc = reel_err_errno(err, REEL_IO, errno, "cannot stat %s", path);
        } else if (n > p->segment) {
            if (unlink(path) != 0)
                rc = reel_err_errno(err, REEL_IO, errno, "cannot remove %s", path);
            u->bytes += (uint64_t)st.st_size;
            u->segments++;
            changed = 1;
        } else if ((uint64_t)st.st_size > p->offset) {
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || ftruncate(fd, (off_t)p->offset) != 0 || fdatasync(fd) != 0)
                rc = reel_err_errno(err, REEL_IO, errno, "cannot cut %s back to %" PRIu64 " bytes",
                                    path, p->offset);
            if (fd >= 0)
                close(fd);
            u->bytes += (uint64_t)st.st_size - p->offset;
        }
        free(path);
    }
    closedir(d);
    if (rc == REEL_OK && changed && sync_dir(spool_dir) != 0)
        rc = reel_err_errno(err, REEL_IO, errno, "cannot sync %s", spool_dir);
    return rc;
}

/* Runs sql with ?1 = first id, ?2 = segment, ?3 = offset; adds the rows it
 * changed to *changes (may be NULL). */
static reel_rc run(sqlite3 *db, const char *sql, const reel_importtx_point_t *p, uint64_t *changes,
                   reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    reel_rc rc = reel_index_prepare(db, sql, &st, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)p->first_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)p->segment);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)p->offset);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = reel_index_db_error(err, REEL_DB, db);
    else if (changes)
        *changes += (uint64_t)sqlite3_changes(db);
    sqlite3_finalize(st);
    return rc;
}

/* Deletes the index rows of the import's flows and frames in one
 * transaction; the user data goes through s's journaled connection. */
static reel_rc cut_index(sqlite3 *db, const reel_importtx_point_t *p, reel_importtx_undone_t *u,
                         reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    reel_rc rc = reel_index_prepare(
        db, "SELECT count(*), min(id), max(id) FROM flows WHERE id >= ?", &st, err);
    if (rc != REEL_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)p->first_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        u->flows = (uint64_t)sqlite3_column_int64(st, 0);
        u->first = (uint64_t)sqlite3_column_int64(st, 1);
        u->last = (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if ((rc = reel_index_exec(db, "BEGIN IMMEDIATE", err)) != REEL_OK)
        return rc;
    const char *user[] = {
        "DELETE FROM annotations WHERE flow_id >= ?1",
        "DELETE FROM tags WHERE flow_id >= ?1",
        "DELETE FROM marks WHERE flow_id >= ?1",
    };
    for (size_t i = 0; rc == REEL_OK && i < sizeof user / sizeof *user; i++)
        rc = run(db, user[i], p, &u->user_rows, err);
    const char *rows[] = {
        "DELETE FROM flow_frames WHERE flow_id >= ?1",
        "DELETE FROM flow_damage WHERE flow_id >= ?1",
        "DELETE FROM retired_flows WHERE flow_id >= ?1",
        "DELETE FROM flows WHERE id >= ?1",
        "DELETE FROM frames WHERE segment > ?2 OR (segment = ?2 AND offset >= ?3)",
        /* damage known before the import (a missing segment, a cut at or
         * after where the import began) stays: only the import's goes */
        ("DELETE FROM damage WHERE (segment > ?2 OR (segment = ?2 AND offset >= ?3)) AND "
         "reason NOT IN ('segment file missing', 'segment cut short')"),
        "DELETE FROM body_off WHERE lo >= ?1",
        "UPDATE body_off SET hi = ?1 - 1 WHERE hi >= ?1",
    };
    for (size_t i = 0; rc == REEL_OK && i < sizeof rows / sizeof *rows; i++)
        rc = run(db, rows[i], p, NULL, err);
    if (rc == REEL_OK)
        rc = reel_index_exec(db, "COMMIT", err);
    if (rc != REEL_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

reel_rc reel_importtx_undo(reel_session_t *s, const reel_importtx_point_t *p,
                           reel_importtx_undone_t *u, reel_err_t *err) {
    reel_importtx_undone_t local;
    if (u == NULL)
        u = &local;
    memset(u, 0, sizeof *u);
    reel_rc rc = cut_spool(reel_session_spool_dir(s), p, u, err);
    if (rc == REEL_OK)
        rc = cut_index(reel_session_db(s), p, u, err);
    if (rc == REEL_OK)
        rc = remove_point(reel_session_path(s), err);
    return rc;
}

void reel_importtx_describe(const reel_importtx_point_t *p, const reel_importtx_undone_t *u,
                            reel_buf_t *b) {
    char when[32] = "";
    time_t t = (time_t)(p->started_us / 1000000);
    struct tm tm;
    if (p->started_us > 0 && gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char file[sizeof p->file];
    size_t k = 0;
    for (; p->file[k] && k + 1 < sizeof file; k++) {
        unsigned char c = (unsigned char)p->file[k];
        file[k] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    file[k] = '\0';
    reel_buf_printf(b, "an import of '%s' (PID %ld, started %s) did not finish: ",
                    file[0] ? file : "?", p->pid, when[0] ? when : "at an unknown time");
    if (u->flows == 0 && u->bytes == 0) {
        reel_buf_puts(b, "it had recorded nothing");
        return;
    }
    reel_buf_puts(b, "rolled back, ");
    if (u->flows == 1)
        reel_buf_printf(b, "its flow (id %" PRIu64 ") removed", u->first);
    else if (u->flows)
        reel_buf_printf(b, "its %" PRIu64 " flows (ids %" PRIu64 "-%" PRIu64 ") removed", u->flows,
                        u->first, u->last);
    else
        reel_buf_puts(b, "none of its flows indexed yet");
    if (u->user_rows)
        reel_buf_printf(b, " with %" PRIu64 " of their annotations, tags and marks", u->user_rows);
    reel_buf_printf(b, ", %" PRIu64 " bytes cut from the spool", u->bytes);
    if (u->segments)
        reel_buf_printf(b, " (%" PRIu32 " segment%s removed)", u->segments,
                        u->segments == 1 ? "" : "s");
    if (p->created)
        reel_buf_puts(b, "; that import had made the session");
}
