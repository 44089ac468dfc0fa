/* map_local: requests answered from local files instead of their origin
 * (Charles's Map Local, mitmproxy's map_local). The rules are
 * session/maprule.h's; this is the answer. Its flow records the request
 * as the client sent it, and reel's response marked generated, with the
 * file it came from (ResponseHead.local_file); no origin is asked, and the
 * flow ends as any flow does, once the client has the whole response.
 *
 * A file is read as the client takes it (LOCAL_CHUNK at a time while
 * less than HIGH_WATER is queued toward it), so a large one costs no more
 * memory than a large response from an origin. Part of the proxy; see
 * core/conn.h. */

#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cond.h"
#include "core/conn.h"
#include "session/maprule.h"

#define LOCAL_CHUNK (64u << 10)

struct reel_local {
    int fd;
    uint64_t off;  /* where the bytes sent begin (a range's first byte) */
    uint64_t size; /* how many are sent: the Content-Length */
    uint64_t sent; /* bytes of them sent so far */
    char *path;
    bool pumping;
};

/* The extensions /etc/mime.types names (Debian's media-types, which
 * Python's mimetypes reads too), loaded once for every worker: each with
 * its type, sorted by extension. */
typedef struct {
    char *ext, *type;
    size_t line; /* its place in the file */
} mime_ext_t;

static mime_ext_t *mime_exts;
static size_t n_mime_exts;
static pthread_once_t mime_once = PTHREAD_ONCE_INIT;

static int mime_cmp(const void *a, const void *b) {
    return strcasecmp(((const mime_ext_t *)a)->ext, ((const mime_ext_t *)b)->ext);
}

/* by extension, then by place in the file: the first line naming an
 * extension gives its type */
static int mime_order(const void *a, const void *b) {
    const mime_ext_t *x = a, *y = b;
    int c = mime_cmp(x, y);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

static void mime_load(void) {
    FILE *f = fopen("/etc/mime.types", "re");
    if (f == NULL)
        return; /* the table in content_type only */
    size_t cap = 0;
    char *line = NULL, *save = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *type = strtok_r(line, " \t\r\n", &save);
        /* a type is "x/y" of printable bytes: a line that is not is
         * skipped, never sent to a client as a field value */
        bool printable = type != NULL && strchr(type, '/') != NULL && strlen(type) <= 127;
        for (const char *p = type; printable && *p; p++)
            printable = *p > 0x20 && *p < 0x7f;
        if (!printable)
            continue;
        for (char *e; (e = strtok_r(NULL, " \t\r\n", &save)) != NULL;) {
            if (n_mime_exts == cap) {
                cap = cap ? cap * 2 : 1024;
                mime_exts = reel_realloc(mime_exts, cap * sizeof *mime_exts);
            }
            mime_exts[n_mime_exts].ext = reel_strdup(e);
            mime_exts[n_mime_exts].type = reel_strdup(type);
            mime_exts[n_mime_exts].line = n_mime_exts;
            n_mime_exts++;
        }
    }
    free(line);
    fclose(f);
    if (n_mime_exts)
        qsort(mime_exts, n_mime_exts, sizeof *mime_exts, mime_order);
}

/* The Content-Type of a file, by its name's extension: the common ones as
 * Python's mimetypes (which mitmproxy's map_local uses) gives them, with
 * a charset for text; then /etc/mime.types; else application/octet-stream. */
static const char *content_type(const char *path) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"},
        {"xml", "application/xml"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"avif", "image/avif"},
        {"ico", "image/vnd.microsoft.icon"},
        {"wasm", "application/wasm"},
        {"pdf", "application/pdf"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},
        {"otf", "font/otf"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
        {"mp3", "audio/mpeg"},
        {"ogg", "audio/ogg"},
        {"wav", "audio/wav"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
        {"yaml", "application/yaml"},
        {"yml", "application/yaml"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot == NULL || dot[1] == '\0')
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0)
            return types[i].type;
    pthread_once(&mime_once, mime_load);
    const mime_ext_t key = {.ext = (char *)(dot + 1)};
    const mime_ext_t *m = bsearch(&key, mime_exts, n_mime_exts, sizeof *mime_exts, mime_cmp);
    while (m && m > mime_exts && mime_cmp(m - 1, m) == 0)
        m--; /* the first line's */
    return m ? m->type : "application/octet-stream";
}

/* Opens path if it is a regular file: the descriptor, with *size; else
 * -errno (-EISDIR for a directory, -ENOENT for any other kind of file).
 * O_NONBLOCK: a FIFO named by mistake must not stop the loop. */
static int open_regular(const char *path, uint64_t *size, struct timespec *mtime) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? -EISDIR : -ENOENT;
    }
    *size = (uint64_t)st.st_size;
    *mtime = st.st_mtim;
    return fd;
}

/* The file a rule names for a URL: its PATH when that is a file, else
 * the one suffix names in the directory, or that name's index.html (the
 * directory's own for no suffix). The descriptor (*file: its name,
 * owned), or -errno with *file the name looked for (-ENOENT: none of
 * them is a file). suffix NULL: the URL's name would leave the directory
 * (-EPERM, *file the directory). */
static int find_file(const char *base, const char *suffix, char **file, uint64_t *size,
                     struct timespec *mtime) {
    *file = reel_strdup(base);
    int fd = open_regular(base, size, mtime);
    if (fd != -EISDIR)
        return fd;
    if (suffix == NULL)
        return -EPERM;
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/')
        bl--;
    char *cand[2] = {
        suffix[0] ? reel_asprintf("%.*s/%s", (int)bl, base, suffix)
                  : reel_asprintf("%.*s/index.html", (int)bl, base),
        suffix[0] ? reel_asprintf("%.*s/%s/index.html", (int)bl, base, suffix) : NULL,
    };
    free(*file);
    *file = cand[0];
    for (int i = 0; i < 2 && cand[i]; i++) {
        fd = open_regular(cand[i], size, mtime);
        if (fd == -EISDIR || fd == -ENOTDIR)
            fd = -ENOENT; /* a directory without index.html; a file's name under a file */
        if (fd == -ENOENT)
            continue;
        if (i == 1) { /* found there, or failed otherwise: that name */
            free(cand[0]);
            *file = cand[1];
            cand[1] = NULL;
        }
        break;
    }
    free(cand[1]);
    return fd;
}

/* Sends the head (and records it, and the body if given): status, with a
 * Content-Length of len and type, and the fields extra, for the request h. */
static void send_head(conn_t *c, const reel_h1_head_t *h, int status, const char *type,
                      uint64_t len, const char *file, const char *body, const reel_field_t *extra,
                      size_t nextra) {
    char clen[24];
    snprintf(clen, sizeof clen, "%llu", (unsigned long long)len);
    bool close = c->client_close && !c->lane;
    /* (a 204 or 304 has no body, and says no length) */
    bool bodiless = status == 204 || status == 304;
    /* an HTTP/2 client's stream gets the head as core/h2front.c writes
     * it: no reason, names in lower case, no Connection; the record says
     * what the client got */
    bool stream = c->lane && !c->lane_tunnel;
    enum { MAX_FIELDS = 10 };
    reel_field_t hs[MAX_FIELDS];
    char lower[MAX_FIELDS][32];
    size_t n = 0;
    if (!bodiless) {
        hs[n++] = (reel_field_t){"Content-Type", 12, type, strlen(type)};
        hs[n++] = (reel_field_t){"Content-Length", 14, clen, strlen(clen)};
    }
    for (size_t i = 0; i < nextra && n < MAX_FIELDS - 1; i++)
        hs[n++] = extra[i];
    if (close)
        hs[n++] = (reel_field_t){"Connection", 10, "close", 5};
    reel_buf_t out;
    reel_buf_init(&out, 0); /* (a maximum: a body naming a long path must fit) */
    reel_buf_printf(&out, "HTTP/1.1 %d %s\r\n", status, reel__status_text(status));
    reel_msg_head_t rs = {.status = (uint32_t)status,
                          .reason = stream ? "" : reel__status_text(status),
                          .version = stream ? "HTTP/2.0" : "HTTP/1.1",
                          .fields = hs,
                          .nfields = n,
                          .local_file = file,
                          .blocked_by = c->ex.blocked_by};
    /* modify_headers' changes, as to an origin's response (the rules
     * name no field reel frames the answer with: maprule.c) */
    size_t nedits = 0;
    reel_header_edit_t *edits = reel__response_edits(c, &rs, &nedits);
    rs.edits = edits;
    rs.nedits = nedits;
    reel_field_t *sent = reel_malloc((n + nedits + 1) * sizeof *sent);
    memcpy(sent, hs, n * sizeof *hs);
    size_t nsent = reel__fields_edit(sent, n, edits, nedits);
    for (size_t i = 0; i < nsent; i++)
        reel_buf_printf(&out, "%.*s: %.*s\r\n", (int)sent[i].name_len, sent[i].name,
                        (int)sent[i].value_len, sent[i].value);
    reel_buf_puts(&out, "\r\n");
    free(sent);
    for (size_t i = 0; stream && i < n; i++)
        if (hs[i].name_len < sizeof lower[i]) {
            for (size_t k = 0; k < hs[i].name_len; k++)
                lower[i][k] = (char)tolower((unsigned char)hs[i].name[k]);
            hs[i].name = lower[i];
        }
    if (bodiless)
        body = NULL;
    int64_t now = reel__now_us();
    c->ex.resp_first_us = now;
    c->ex.resp_head_sent = true;
    reel_capture_response(c->ex.flow, &rs, true, now);
    free(edits);
    if (body && !h->is_head) {
        reel_capture_body(c->ex.flow, true, body, strlen(body));
        reel_buf_append(&out, body, strlen(body));
    }
    reel__peer_write(&c->client, out.data, out.len);
    reel_buf_free(&out);
}

/* Answers with reel's own text (a refusal, a missing file, a failed
 * condition), which takes body (and file, if any): the whole response. */
static void send_text(conn_t *c, const reel_h1_head_t *h, int status, char *file, char *body,
                      const reel_field_t *extra, size_t nextra) {
    send_head(c, h, status, "text/plain; charset=utf-8", strlen(body), file, body, extra, nextra);
    c->ex.blocked_by = NULL; /* (block_list's rule, recorded with the head) */
    free(body);
    free(file);
    c->ex.resp_done = true;
    reel__exchange_maybe_finish(c);
}

static void local_free(reel_local_t *l) {
    if (l == NULL)
        return;
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l);
}

void reel__local_free(conn_t *c) {
    local_free(c->ex.local);
    c->ex.local = NULL;
}

/* The response is whole: the exchange ends once the request is too. */
static void local_done(conn_t *c) {
    reel__local_free(c);
    c->ex.resp_done = true;
    reel__exchange_maybe_finish(c);
}

bool reel__block_answer(conn_t *c, const reel_h1_head_t *h, bool https, int port, const char *path,
                        const reel_filter_request_t *rq) {
    const char *rule = NULL;
    int status = reel_block_match(c->p->block_list, rq, &rule);
    if (status == 0)
        return false;
    reel__upstream_close(c); /* (as for map_local's answers) */
    reel__exchange_start_local(c, h, https, rq->host, port, path);
    if (status == 444) {
        /* nginx's and mitmproxy's: the connection closed, no answer */
        char *why = reel_asprintf(
            "blocked by block_list rule '%s' (444): reel %s without an "
            "answer",
            rule, c->lane && !c->lane_tunnel ? "reset the HTTP/2 stream" : "closed the connection");
        reel__finish_flow(c, why);
        free(why);
        reel__conn_close(c);
        return true;
    }
    c->state = C_REQ_BODY; /* the request's body, if any, is read and recorded */
    char *body = reel_asprintf("reel: blocked (block_list rule '%s')\n", rule);
    c->ex.blocked_by = rule;
    send_text(c, h, status, NULL, body, NULL, 0);
    return true;
}

bool reel__local_answer(conn_t *c, const reel_h1_head_t *h, bool https, int port, const char *path,
                        const reel_filter_request_t *rq) {
    const char *base;
    char *suffix;
    if (reel_map_local_match(c->p->map_local, rq->url, rq, &base, &suffix) == 0)
        return false;
    /* no origin: an upstream connection kept from the exchange before
     * would be left idle under this one, its close or its bytes taken for
     * this exchange's; it goes (the next request to it opens another) */
    reel__upstream_close(c);
    reel__exchange_start_local(c, h, https, rq->host, port, path);
    c->state = C_REQ_BODY; /* the request's body, if any, is read and recorded */
    char *file = NULL;
    uint64_t size = 0;
    struct timespec mtime = {0};
    int fd = find_file(base, suffix, &file, &size, &mtime);
    free(suffix);
    if (fd < 0) {
        int status = fd == -ENOENT || fd == -ENOTDIR ? 404
                     : fd == -EACCES || fd == -EPERM ? 403
                                                     : 500;
        char *body =
            fd == -EPERM ? reel_asprintf("reel: map_local: the URL names a file outside %s\n", file)
            : status == 404
                ? reel_asprintf("reel: map_local: no file %s\n", file)
                : reel_asprintf("reel: map_local: cannot read %s: %s\n", file, strerror(-fd));
        send_text(c, h, status, file, body, NULL, 0);
        return true;
    }
    /* The file's validators, as nginx makes them (its time and size), and
     * what the request's conditions and Range make of them: core/cond.h */
    char etag[64], lastmod[30], range[64], method[16];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)size,
             (unsigned long long)mtime.tv_sec * 1000000000ull + (unsigned long long)mtime.tv_nsec);
    reel_http_date_format(mtime.tv_sec, lastmod);
    snprintf(method, sizeof method, "%.*s", (int)h->method_len, h->method);
    reel_cond_repr_t repr = {
        .size = size, .mtime = mtime.tv_sec, .etag = etag, .now = reel__now_us() / 1000000};
    reel_cond_answer_t a;
    reel_cond_evaluate(method, h->headers, h->nheaders, &repr, &a);
    reel_field_t extra[4];
    size_t nx = 0;
    if (a.status == 206)
        snprintf(range, sizeof range, "bytes %llu-%llu/%llu", (unsigned long long)a.first,
                 (unsigned long long)(a.first + a.length - 1), (unsigned long long)size);
    else
        snprintf(range, sizeof range, "bytes */%llu", (unsigned long long)size);
    if (a.status == 206 || a.status == 416)
        extra[nx++] = (reel_field_t){"Content-Range", 13, range, strlen(range)};
    if (a.status == 200 || a.status == 206)
        extra[nx++] = (reel_field_t){"Accept-Ranges", 13, "bytes", 5};
    if (a.status == 200 || a.status == 206 || a.status == 304) {
        extra[nx++] = (reel_field_t){"Last-Modified", 13, lastmod, strlen(lastmod)};
        extra[nx++] = (reel_field_t){"ETag", 4, etag, strlen(etag)};
    }
    if (a.status == 412 || a.status == 416) {
        close(fd);
        char *body = a.status == 412
                         ? reel_asprintf("reel: map_local: a precondition of the request fails "
                                         "for %s (ETag %s, Last-Modified %s)\n",
                                         file, etag, lastmod)
                         : reel_asprintf("reel: map_local: the range asked for is not in %s "
                                         "(%llu bytes)\n",
                                         file, (unsigned long long)size);
        send_text(c, h, a.status, file, body, extra, nx);
        return true;
    }
    reel_local_t *l = reel_calloc(1, sizeof *l);
    l->fd = fd;
    l->off = a.first;
    l->size = a.length;
    l->path = file;
    c->ex.local = l;
    send_head(c, h, a.status, content_type(file), a.length, file, NULL, extra, nx);
    if (h->is_head || a.length == 0) {
        local_done(c);
        return true;
    }
    reel__local_pump(c);
    return true;
}

void reel__local_pump(conn_t *c) {
    reel_local_t *l = c->ex.local;
    if (l == NULL || l->pumping || c->client.closing)
        return;
    l->pumping = true;
    uint8_t *buf = reel_malloc(LOCAL_CHUNK);
    char *cut = NULL;
    while (l->sent < l->size && reel__peer_queued(&c->client) < HIGH_WATER && !c->client.closing) {
        uint64_t want = l->size - l->sent;
        ssize_t n = pread(l->fd, buf, want < LOCAL_CHUNK ? (size_t)want : LOCAL_CHUNK,
                          (off_t)(l->off + l->sent));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* the file changed under reel (cut shorter) or failed: what
             * the client got is no whole response, and the record says so */
            cut = n < 0 ? reel_asprintf("map_local could not read %s after %llu of its %llu "
                                        "bytes: %s",
                                        l->path, (unsigned long long)l->sent,
                                        (unsigned long long)l->size, strerror(errno))
                        : reel_asprintf("map_local's file %s ended after %llu of the %llu bytes "
                                        "its Content-Length said (it was cut while reel sent it)",
                                        l->path, (unsigned long long)l->sent,
                                        (unsigned long long)l->size);
            break;
        }
        l->sent += (uint64_t)n;
        reel_capture_body(c->ex.flow, true, buf, (size_t)n);
        reel__peer_write(&c->client, buf, (size_t)n);
        if (c->ex.local != l)
            break; /* (not expected: the conn let go of it meanwhile) */
    }
    free(buf);
    if (c->ex.local != l)
        return;
    l->pumping = false;
    if (cut) {
        reel__local_free(c);
        reel__exchange_cut(c, cut);
        free(cut);
    } else if (l->sent == l->size) {
        local_done(c);
    }
}
