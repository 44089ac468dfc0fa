/* bench/ingest: records N synthetic flows into a new session through the
 * recorder API and measures, in one run:
 *
 *   1. the generator alone (building heads and reading body slices), so its
 *      share of the ingest time is visible;
 *   2. the baseline: ZSTD_compressCCtx at level 3, one thread, over the HTTP
 *      wire bytes of exactly the same flows cut into 64 KiB chunks (only the
 *      compress calls are timed);
 *   3. ingest: session create .. reel_recorder_close, with the resident set
 *      (VmHWM/VmRSS) sampled at 1k, 10k, 100k, 1M and N flows;
 *   4. bytes on disk (spool/ and session.db with its -wal/-shm);
 *   5. `reel show`, `reel flows --limit 50` and `reel flows '~d HOST & ~c 500'`
 *      run as child processes, median wall-clock time of several runs;
 *   6. `reel repair`, with the spool evicted from the page cache and again
 *      with it cached.
 *
 * Flows look like browser traffic (see gen_flow): ~200 hosts with Zipf
 * popularity, Chrome and Firefox headers, cookies, referers; request bodies of
 * 512..1535 bytes and response bodies of 4..16 KiB taken at random offsets of
 * a corpus of real text files (/usr/include, /usr/share/doc or --corpus-list).
 * The corpus is copied into an unlinked temporary file and bodies are read
 * from it with pread, so the corpus does not count in the resident set.
 *
 * Usage: ingest --flows N --home DIR [--reel PATH] [--fsync block|interval|never]
 *               [--corpus-list FILE] [--corpus-mb 64] [--runs 7] [--seed S]
 *               [--keep] [--no-repair] [--label TEXT] [--dump-wire FILE]
 *               [--capture-buffer-mb 16] [--zstd-level N (default: reel's)]
 *
 * The recorder's capture buffer is 16 MiB here, not reel's 256 MiB
 * default: with capture=lossless and a caller faster than the writer the
 * queue sits at its bound, so the peak RSS would show the buffer, not the
 * store (16 MiB was the default when the RSS goal was set).
 * Prints a markdown table and `key value` lines; see bench/README.md. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zstd.h>

#include "base/mem.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/spool.h"

extern char **environ;

#define MIB (1024.0 * 1024.0)
#define MB 1e6
#define N_HOSTS 200
#define N_CHECKPOINTS 8
#define CHUNK (64u * 1024u)
#define REQ_BODY_MAX 1536u
#define RESP_BODY_MAX (16u * 1024u)

/* ---- small helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "ingest: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static uint64_t parse_u64(const char *s, const char *opt) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0)
        die("bad number for", opt);
    return (uint64_t)v;
}

/* splitmix64: each flow seeds its own generator from (seed, index), so any
 * pass regenerates flow i byte for byte. */
typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t rng_below(rng_t *r, uint32_t n) {
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

static double rng_unit(rng_t *r) {
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t mix(uint64_t a, uint64_t b) {
    rng_t r = {a * 0x9e3779b97f4a7c15ull ^ b};
    return rng_next(&r);
}

/* Reads one "VmHWM:" style field of /proc/self/status in KiB. */
static long proc_status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0). Returns 0 on success. */
static int reset_hwm(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, "5", 1);
    close(fd);
    return w == 1 ? 0 : -1;
}

static void pread_all(int fd, void *buf, size_t len, uint64_t off) {
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("reading the corpus file", r < 0 ? strerror(errno) : "short read");
        p += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
}

static void write_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            die("write", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
}

/* ---- corpus: real text files copied into one unlinked file ---- */

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_push(strlist *l, char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = reel_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = s;
}

static int skip_name(const char *name) {
    static const char *const bad[] = {".gz",  ".bz2",  ".xz",  ".zst", ".zip",  ".lz",   ".png",
                                      ".jpg", ".jpeg", ".gif", ".ico", ".pdf",  ".woff", ".woff2",
                                      ".ttf", ".otf",  ".mo",  ".so",  ".a",    ".o",    ".bin",
                                      ".deb", ".jar",  ".pyc", ".db",  ".svgz", ".gch",  ".pcm"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t k = strlen(bad[i]);
        if (n >= k && strcmp(name + n - k, bad[i]) == 0)
            return 1;
    }
    return 0;
}

static void walk(const char *dir, strlist *out, int depth) {
    if (depth > 16)
        return;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *p = reel_asprintf("%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0) {
            free(p);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            walk(p, out, depth + 1);
            free(p);
        } else if (S_ISREG(st.st_mode) && st.st_size >= 256 && !skip_name(e->d_name)) {
            strlist_push(out, p);
        } else {
            free(p);
        }
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Text: no NUL, at most 1% control bytes other than \t \n \v \f \r ESC. */
static int is_text(const uint8_t *p, size_t n) {
    size_t ctl = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == 0)
            return 0;
        if (c < 0x20 && !(c >= 9 && c <= 13) && c != 0x1b)
            ctl++;
    }
    return ctl * 100 <= n;
}

typedef struct {
    int fd;
    uint64_t size;
    size_t files;
    uint64_t fnv; /* FNV-1a of the corpus bytes, to tell corpora apart */
} corpus_t;

/* Copies text files (shuffled, deterministic for a seed) into an unlinked
 * file under home until `budget` bytes. Streams through a 64 KiB buffer so
 * the corpus never sits in this process's memory. */
static void corpus_build(corpus_t *c, const char *home, const char *list_file, uint64_t budget,
                         uint64_t seed) {
    strlist files = {0};
    if (list_file) {
        FILE *f = fopen(list_file, "r");
        if (f == NULL)
            die("cannot open corpus list", list_file);
        char line[4096];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0])
                strlist_push(&files, reel_strdup(line));
        }
        fclose(f);
    } else {
        walk("/usr/include", &files, 0);
        walk("/usr/share/doc", &files, 0);
    }
    qsort(files.v, files.n, sizeof *files.v, cmp_str);
    rng_t r = {seed ^ 0xc0ffee};
    for (size_t i = files.n; i > 1; i--) {
        size_t j = rng_below(&r, (uint32_t)i);
        char *t = files.v[i - 1];
        files.v[i - 1] = files.v[j];
        files.v[j] = t;
    }
    c->fd = open(home, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        char *tmpl = reel_asprintf("%s/corpus-XXXXXX", home);
        c->fd = mkstemp(tmpl);
        if (c->fd < 0)
            die("cannot create the corpus file", strerror(errno));
        unlink(tmpl);
        free(tmpl);
    }
    c->size = 0;
    c->files = 0;
    uint8_t *buf = reel_malloc(CHUNK);
    for (size_t i = 0; i < files.n && c->size < budget; i++) {
        int fd = open(files.v[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        uint64_t start = c->size;
        int ok = 1;
        ssize_t n;
        while (c->size < budget && (n = read(fd, buf, CHUNK)) > 0) {
            size_t take = (size_t)n;
            if (!is_text(buf, take)) {
                ok = 0;
                break;
            }
            if (take > budget - c->size)
                take = (size_t)(budget - c->size);
            write_all(c->fd, buf, take);
            c->size += take;
        }
        close(fd);
        if (!ok) {
            if (ftruncate(c->fd, (off_t)start) != 0 || lseek(c->fd, (off_t)start, SEEK_SET) < 0)
                die("truncating the corpus file", strerror(errno));
            c->size = start;
        } else if (c->size > start) {
            c->files++;
        }
    }
    free(buf);
    for (size_t i = 0; i < files.n; i++)
        free(files.v[i]);
    free(files.v);
    if (c->size < 4 * RESP_BODY_MAX)
        die("corpus too small", "found too little text");
    c->fnv = 0xcbf29ce484222325ull;
    buf = reel_malloc(CHUNK);
    for (uint64_t off = 0; off < c->size; off += CHUNK) {
        size_t n = c->size - off < CHUNK ? (size_t)(c->size - off) : CHUNK;
        pread_all(c->fd, buf, n, off);
        for (size_t i = 0; i < n; i++)
            c->fnv = (c->fnv ^ buf[i]) * 0x100000001b3ull;
    }
    free(buf);
}

/* ---- browser-like flows ---- */

static const char *const sites[40] = {
    "newsdaily.com",  "shopmart.com",   "videohub.tv",    "socialnet.io",    "mailbox.net",
    "docsportal.org", "mapsnow.com",    "weatherly.net",  "bankfirst.com",   "travelbook.com",
    "musicstream.fm", "photoshare.app", "forumz.net",     "wikiverse.org",   "codehost.dev",
    "cloudstore.io",  "adserve.net",    "metricsly.com",  "fontcdn.net",     "jslibs.org",
    "recipebox.com",  "sportscore.tv",  "jobfinder.io",   "realestate.com",  "carsdirect.net",
    "gamezone.gg",    "learnhub.edu",   "healthline.org", "fashionista.com", "techreview.net",
    "petpals.com",    "homedecor.shop", "bookworm.store", "streamly.tv",     "chatapp.im",
    "payfast.com",    "ticketly.com",   "foodorder.app",  "cryptox.io",      "govservices.gov"};
static const char *const prefixes[5] = {"www", "static", "api", "cdn", "img"};

static const char *const uas[6] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0"};
static const char *const platforms[3] = {"\"Windows\"", "\"macOS\"", "\"Linux\""};
static const char *const langs[4] = {"en-US,en;q=0.9", "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7",
                                     "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
                                     "en-GB,en-US;q=0.9,en;q=0.8"};
static const char *const resources[10] = {"items",  "users", "orders",  "events",  "comments",
                                          "search", "cart",  "session", "metrics", "graphql"};
static const char *const req_types[4] = {"application/json", "application/x-www-form-urlencoded",
                                         "text/plain;charset=UTF-8", "multipart/form-data"};
static const char *const resp_types[5] = {
    "text/html; charset=utf-8", "application/json; charset=utf-8", "text/plain; charset=utf-8",
    "application/javascript; charset=utf-8", "text/css"};
static const char *const servers[8] = {"nginx", "nginx/1.24.0", "cloudflare", "Apache",
                                       "gws",   "AmazonS3",     "envoy",      "Microsoft-IIS/10.0"};
static const char *const cache_controls[4] = {"no-cache, no-store, must-revalidate",
                                              "public, max-age=31536000, immutable",
                                              "private, max-age=0", "max-age=600"};
static const char *const fetch_sites[3] = {"same-origin", "same-site", "cross-site"};

typedef struct {
    char hosts[N_HOSTS][64];
    double cdf[N_HOSTS];
    int64_t date0; /* fake clock for Date headers */
    uint64_t seed;
    const corpus_t *corpus;
} world_t;

static void world_init(world_t *w, const corpus_t *c, uint64_t seed) {
    memset(w, 0, sizeof *w);
    w->seed = seed;
    w->corpus = c;
    size_t k = 0;
    for (size_t s = 0; s < 40; s++)
        for (size_t p = 0; p < 5; p++, k++)
            snprintf(w->hosts[k], sizeof w->hosts[k], "%s.%s", prefixes[p], sites[s]);
    rng_t r = {seed ^ 0x4057};
    for (size_t i = N_HOSTS; i > 1; i--) { /* popularity rank = position */
        size_t j = rng_below(&r, (uint32_t)i);
        char t[64];
        memcpy(t, w->hosts[i - 1], sizeof t);
        memcpy(w->hosts[i - 1], w->hosts[j], sizeof t);
        memcpy(w->hosts[j], t, sizeof t);
    }
    double sum = 0;
    for (size_t i = 0; i < N_HOSTS; i++)
        sum += 1.0 / (double)(i + 1);
    double acc = 0;
    for (size_t i = 0; i < N_HOSTS; i++) {
        acc += 1.0 / (double)(i + 1) / sum;
        w->cdf[i] = acc;
    }
    w->cdf[N_HOSTS - 1] = 1.0;
    struct tm tm = {.tm_year = 2026 - 1900, .tm_mon = 10, .tm_mday = 24, .tm_hour = 9};
    w->date0 = (int64_t)timegm(&tm);
}

#define MAX_HEADERS 24

typedef struct {
    char arena[4096];
    size_t used;
    reel_header_t req_h[MAX_HEADERS], resp_h[MAX_HEADERS];
    size_t n_req, n_resp;
    const char *method, *host, *target, *reason;
    size_t host_idx;
    uint32_t status;
    uint64_t req_off, resp_off;
    size_t req_len, resp_len;
    reel_timings_t tm;
} flow_t;

/* Appends a formatted string to the flow's arena; returns it. */
static const char *fa(flow_t *f, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const char *fa(flow_t *f, size_t *len, const char *fmt, ...) {
    char *p = f->arena + f->used;
    size_t room = sizeof f->arena - f->used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        die("flow arena overflow", NULL);
    f->used += (size_t)n + 1;
    if (len)
        *len = (size_t)n;
    return p;
}

static void hdr(reel_header_t *v, size_t *n, const char *name, const char *value, size_t vlen) {
    if (*n >= MAX_HEADERS)
        die("too many headers", name);
    v[*n].name = name;
    v[*n].name_len = strlen(name);
    v[*n].value = value;
    v[*n].value_len = vlen;
    (*n)++;
}

/* value once: an argument such as fetch_sites[rng_below(&r, 3)] must not
 * draw twice (the pointer of one draw with the length of another put bytes
 * past a string's end into the recorded heads) */
static void hdrz(reel_header_t *v, size_t *n, const char *name, const char *value) {
    hdr(v, n, name, value, strlen(value));
}

#define REQ(name, value) hdrz(f->req_h, &f->n_req, name, value)
#define REQF(name, ...)                                                                            \
    do {                                                                                           \
        size_t l_;                                                                                 \
        const char *v_ = fa(f, &l_, __VA_ARGS__);                                                  \
        hdr(f->req_h, &f->n_req, name, v_, l_);                                                    \
    } while (0)
#define RESP(name, value) hdrz(f->resp_h, &f->n_resp, name, value)
#define RESPF(name, ...)                                                                           \
    do {                                                                                           \
        size_t l_;                                                                                 \
        const char *v_ = fa(f, &l_, __VA_ARGS__);                                                  \
        hdr(f->resp_h, &f->n_resp, name, v_, l_);                                                  \
    } while (0)

static void http_date(int64_t t, char out[40]) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Flow i of the run: same bytes in every pass. */
static void gen_flow(const world_t *w, uint64_t i, flow_t *f) {
    rng_t r = {mix(w->seed, i)};
    f->used = 0;
    f->n_req = f->n_resp = 0;
    double u = rng_unit(&r);
    size_t lo = 0, hi = N_HOSTS - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    f->host_idx = lo;
    f->host = w->hosts[lo];
    uint32_t client = rng_below(&r, 8); /* eight browser profiles */
    uint32_t ua = client % 6;
    int chrome = ua < 3;
    uint64_t epoch = i / 5000; /* session cookies rotate now and then */
    uint32_t m = rng_below(&r, 100);
    f->method = m < 80 ? "POST" : m < 92 ? "PUT" : m < 97 ? "PATCH" : "DELETE";
    uint32_t st = rng_below(&r, 1000);
    f->status = st < 895 ? 200 : st < 955 ? 304 : st < 965 ? 302 : st < 995 ? 404 : 500;
    f->reason = f->status == 200   ? "OK"
                : f->status == 304 ? "Not Modified"
                : f->status == 302 ? "Found"
                : f->status == 404 ? "Not Found"
                                   : "Internal Server Error";
    const char *res = resources[rng_below(&r, 10)];
    if (strcmp(res, "graphql") == 0)
        f->target = fa(f, NULL, "/graphql?op=%s%u", "Query", rng_below(&r, 400));
    else if (rng_below(&r, 3) == 0)
        f->target =
            fa(f, NULL, "/api/v%u/%s/%u?locale=%.5s&_=%" PRId64, 1 + rng_below(&r, 3), res,
               rng_below(&r, 5000000), langs[client % 4], (w->date0 + (int64_t)i / 50) * 1000);
    else
        f->target =
            fa(f, NULL, "/api/v%u/%s/%u", 1 + rng_below(&r, 3), res, rng_below(&r, 5000000));

    f->req_len = 512 + rng_below(&r, 1024);
    f->req_off = rng_next(&r) % (w->corpus->size - f->req_len);
    if (f->status == 304 || f->status == 302)
        f->resp_len = 0;
    else
        f->resp_len = 4096 + rng_below(&r, 12289);
    f->resp_off = f->resp_len ? rng_next(&r) % (w->corpus->size - f->resp_len) : 0;

    /* request headers, in the order the browser sends them */
    const char *rtype = req_types[rng_below(&r, 4)];
    const char *site = strchr(f->host, '.') + 1;
    REQ("Host", f->host);
    REQ("Connection", "keep-alive");
    REQF("Content-Length", "%zu", f->req_len);
    if (chrome) {
        REQF("sec-ch-ua",
             "\"Google Chrome\";v=\"%u\", \"Chromium\";v=\"%u\", \"Not_A Brand\";v=\"24\"",
             ua == 2 ? 130 : 131, ua == 2 ? 130 : 131);
        REQ("sec-ch-ua-mobile", "?0");
        REQ("sec-ch-ua-platform", platforms[ua]);
    }
    REQ("User-Agent", uas[ua]);
    if (strcmp(rtype, "multipart/form-data") == 0)
        REQF("Content-Type", "multipart/form-data; boundary=----WebKitFormBoundary%016" PRIx64,
             rng_next(&r));
    else
        REQ("Content-Type", rtype);
    REQ("Accept", "application/json, text/plain, */*");
    REQF("Origin", "https://www.%s", site);
    if (rng_below(&r, 4) == 0)
        REQF("X-CSRF-Token", "%016" PRIx64 "%016" PRIx64, mix(client, epoch), mix(epoch, client));
    REQ("Sec-Fetch-Site", fetch_sites[rng_below(&r, 3)]);
    REQ("Sec-Fetch-Mode", "cors");
    REQ("Sec-Fetch-Dest", "empty");
    REQF("Referer", "https://www.%s/%s/%u", site, resources[rng_below(&r, 10)],
         rng_below(&r, 100000));
    REQ("Accept-Encoding", "gzip, deflate, br, zstd");
    REQ("Accept-Language", langs[client % 4]);
    {
        uint64_t k = mix(client, f->host_idx * 1000 + epoch);
        int64_t ms = (w->date0 + (int64_t)i / 50) * 1000 + rng_below(&r, 1000);
        REQF("Cookie",
             "_ga=GA1.1.%010u.%010u; sid=%016" PRIx64 "%016" PRIx64
             "; theme=%s; _dd_s=rum=0&id=%08x-%04x-%04x&created=%" PRId64 "&expire=%" PRId64,
             (uint32_t)(mix(client, 1) % 4000000000u), (uint32_t)(mix(client, 2) % 2000000000u), k,
             mix(k, 7), (client & 1) ? "dark" : "light", (uint32_t)rng_next(&r),
             rng_below(&r, 65536), rng_below(&r, 65536), ms - 600000, ms + 900000);
    }
    if (!chrome) {
        REQ("Priority", "u=0");
        REQ("TE", "trailers");
    }

    /* response headers */
    char date[40];
    int64_t t = w->date0 + (int64_t)i / 50;
    http_date(t, date);
    uint32_t host_kind = (uint32_t)(mix(w->seed, f->host_idx) & 0xff);
    RESPF("Date", "%s", date);
    RESP("Content-Type", resp_types[(f->host_idx + rng_below(&r, 2)) % 5]);
    RESPF("Content-Length", "%zu", f->resp_len);
    RESP("Connection", "keep-alive");
    RESP("Server", servers[host_kind % 8]);
    RESP("Cache-Control", cache_controls[(host_kind / 8 + (f->status != 200)) % 4]);
    if (f->status == 200 || f->status == 304)
        RESPF("ETag", "W/\"%" PRIx64 "-%x\"", (uint64_t)(rng_next(&r) & 0xffffffffffull),
              (unsigned)(rng_next(&r) & 0xffffff));
    RESP("Vary", "Accept-Encoding, Origin");
    RESPF("X-Request-Id", "%08x-%04x-4%03x-%04x-%012" PRIx64, (uint32_t)rng_next(&r),
          rng_below(&r, 65536), rng_below(&r, 4096), 0x8000 | rng_below(&r, 16384),
          (uint64_t)(rng_next(&r) & 0xffffffffffffull));
    if (host_kind & 1)
        RESP("Strict-Transport-Security", "max-age=63072000; includeSubDomains; preload");
    RESPF("Access-Control-Allow-Origin", "https://www.%s", site);
    RESP("Access-Control-Allow-Credentials", "true");
    if (f->status == 302)
        RESPF("Location", "https://www.%s/login?next=%%2F%s", site, res);
    if (rng_below(&r, 100) < 15) {
        char exp[40];
        http_date(t + 86400 * 30, exp);
        RESPF("Set-Cookie",
              "sid=%016" PRIx64 "%016" PRIx64
              "; Path=/; Expires=%s; Secure; HttpOnly; SameSite=Lax",
              rng_next(&r), rng_next(&r), exp);
    }
    if (host_kind & 2) {
        RESPF("Age", "%u", rng_below(&r, 86400));
        RESP("X-Cache", rng_below(&r, 4) ? "HIT" : "MISS");
    }
    f->tm.blocked_us = rng_below(&r, 500);
    f->tm.dns_us = rng_below(&r, 8) ? -1 : (int64_t)rng_below(&r, 30000);
    f->tm.connect_us = f->tm.dns_us < 0 ? -1 : (int64_t)rng_below(&r, 40000);
    f->tm.ssl_us = f->tm.connect_us < 0 ? -1 : (int64_t)rng_below(&r, 30000);
    f->tm.send_us = rng_below(&r, 300);
    f->tm.wait_us = 2000 + rng_below(&r, 200000);
    f->tm.receive_us = rng_below(&r, 20000);
}

/* HTTP/1.1 wire bytes of the flow's heads (for the baseline). */
static size_t head_bytes(const flow_t *f) {
    size_t n = strlen(f->method) + 1 + strlen(f->target) + 1 + 8 + 2 + 2;
    for (size_t k = 0; k < f->n_req; k++)
        n += f->req_h[k].name_len + 2 + f->req_h[k].value_len + 2;
    n += 8 + 1 + 3 + 1 + strlen(f->reason) + 2 + 2;
    for (size_t k = 0; k < f->n_resp; k++)
        n += f->resp_h[k].name_len + 2 + f->resp_h[k].value_len + 2;
    return n;
}

/* ---- the baseline: zstd -3 over the wire bytes in 64 KiB chunks ---- */

typedef struct {
    ZSTD_CCtx *cctx;
    int dump_fd; /* -1, or where to copy the raw stream (--dump-wire) */
    uint8_t *in, *out;
    size_t in_len, out_cap;
    uint64_t in_total, out_total;
    double secs;
} zbase_t;

static void zb_flush(zbase_t *z) {
    if (z->in_len == 0)
        return;
    if (z->dump_fd >= 0)
        write_all(z->dump_fd, z->in, z->in_len);
    double t0 = now_s();
    size_t r = ZSTD_compressCCtx(z->cctx, z->out, z->out_cap, z->in, z->in_len, 3);
    z->secs += now_s() - t0;
    if (ZSTD_isError(r))
        die("zstd", ZSTD_getErrorName(r));
    z->in_total += z->in_len;
    z->out_total += r;
    z->in_len = 0;
}

static void zb_put(zbase_t *z, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        size_t take = CHUNK - z->in_len < n ? CHUNK - z->in_len : n;
        memcpy(z->in + z->in_len, b, take);
        z->in_len += take;
        b += take;
        n -= take;
        if (z->in_len == CHUNK)
            zb_flush(z);
    }
}

static void zb_puts(zbase_t *z, const char *s) {
    zb_put(z, s, strlen(s));
}

static void zb_headers(zbase_t *z, const reel_header_t *h, size_t n) {
    for (size_t k = 0; k < n; k++) {
        zb_put(z, h[k].name, h[k].name_len);
        zb_put(z, ": ", 2);
        zb_put(z, h[k].value, h[k].value_len);
        zb_put(z, "\r\n", 2);
    }
    zb_put(z, "\r\n", 2);
}

/* ---- child processes ---- */

typedef struct {
    double ms;
    size_t lines;
    int status;
} run_t;

/* Runs argv, counting stdout lines; returns wall time. */
static run_t run_cmd(char *const argv[], int quiet_stderr) {
    run_t res = {0, 0, -1};
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        die("pipe", strerror(errno));
    posix_spawn_file_actions_t fa_;
    posix_spawn_file_actions_init(&fa_);
    posix_spawn_file_actions_adddup2(&fa_, pfd[1], 1);
    if (quiet_stderr)
        posix_spawn_file_actions_addopen(&fa_, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    double t0 = now_s();
    int e = posix_spawn(&pid, argv[0], &fa_, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa_);
    close(pfd[1]);
    if (e != 0)
        die("cannot run", argv[0]);
    char buf[65536];
    ssize_t n;
    while ((n = read(pfd[0], buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (ssize_t k = 0; k < n; k++)
            res.lines += buf[k] == '\n';
    }
    close(pfd[0]);
    int ws;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    res.ms = (now_s() - t0) * 1000.0;
    res.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128;
    return res;
}

/* Runs argv `runs` times; returns the median, the lines of the last run. */
static run_t run_median(char *const argv[], int runs, double *min_ms, double *max_ms) {
    double t[64];
    run_t last = {0};
    if (runs > 64)
        runs = 64;
    for (int k = 0; k < runs; k++) {
        last = run_cmd(argv, 0);
        if (last.status != 0)
            die("command failed", argv[3]);
        t[k] = last.ms;
    }
    for (int a = 1; a < runs; a++)
        for (int b = a; b > 0 && t[b - 1] > t[b]; b--) {
            double x = t[b];
            t[b] = t[b - 1];
            t[b - 1] = x;
        }
    *min_ms = t[0];
    *max_ms = t[runs - 1];
    last.ms = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
    return last;
}

/* Runs argv, returning its stdout (owned, NUL-terminated). */
static char *capture(char *const argv[]) {
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        die("pipe", strerror(errno));
    posix_spawn_file_actions_t fa_;
    posix_spawn_file_actions_init(&fa_);
    posix_spawn_file_actions_adddup2(&fa_, pfd[1], 1);
    pid_t pid;
    if (posix_spawn(&pid, argv[0], &fa_, NULL, argv, environ) != 0)
        die("cannot run", argv[0]);
    posix_spawn_file_actions_destroy(&fa_);
    close(pfd[1]);
    reel_buf_t b;
    reel_buf_init(&b, 0);
    char buf[4096];
    ssize_t n;
    while ((n = read(pfd[0], buf, sizeof buf)) > 0)
        reel_buf_append(&b, buf, (size_t)n);
    close(pfd[0]);
    int ws;
    waitpid(pid, &ws, 0);
    char *s = reel_strndup(b.data ? (const char *)b.data : "", b.len);
    reel_buf_free(&b);
    return s;
}

/* ---- disk usage ---- */

typedef struct {
    uint64_t apparent, allocated;
    size_t files;
} du_t;

static void du_file(const char *path, du_t *d) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        d->apparent += (uint64_t)st.st_size;
        d->allocated += (uint64_t)st.st_blocks * 512u;
        d->files++;
    }
}

static void du_dir(const char *dir, du_t *d) {
    DIR *dp = opendir(dir);
    if (dp == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *p = reel_asprintf("%s/%s", dir, e->d_name);
        du_file(p, d);
        free(p);
    }
    closedir(dp);
}

/* Writes back and evicts every spool segment from the page cache. */
static void evict_dir(const char *dir) {
    DIR *dp = opendir(dir);
    if (dp == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *p = reel_asprintf("%s/%s", dir, e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (fdatasync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
                fprintf(stderr, "ingest: could not evict %s from the page cache\n", p);
            close(fd);
        }
        free(p);
    }
    closedir(dp);
}

/* CPU time of this process's threads, from /proc/self/task/TID/stat. */
typedef struct {
    long tid;
    unsigned long ut, st; /* clock ticks */
} tcpu_t;

#define MAX_THREADS 16

static size_t thread_cpu(tcpu_t *v) {
    DIR *dp = opendir("/proc/self/task");
    size_t n = 0;
    if (dp == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL && n < MAX_THREADS) {
        if (e->d_name[0] == '.')
            continue;
        char *p = reel_asprintf("/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(p, "r");
        free(p);
        if (f == NULL)
            continue;
        char line[1024];
        if (fgets(line, sizeof line, f)) {
            char *rp = strrchr(line, ')');
            /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
             * utime stime */
            if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                             &v[n].ut, &v[n].st) == 2) {
                v[n].tid = strtol(e->d_name, NULL, 10);
                n++;
            }
        }
        fclose(f);
    }
    closedir(dp);
    return n;
}

/* Formats the CPU each thread used since `before` (threads absent then
 * count from zero). */
static void thread_cpu_delta(const tcpu_t *before, size_t nb, const tcpu_t *after, size_t na,
                             long main_tid, char *out, size_t cap) {
    double hz = (double)sysconf(_SC_CLK_TCK);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < na; i++) {
        unsigned long ut = after[i].ut, st = after[i].st;
        for (size_t j = 0; j < nb; j++)
            if (before[j].tid == after[i].tid) {
                ut -= before[j].ut;
                st -= before[j].st;
            }
        int k = snprintf(out + used, cap - used, "%s%s: user %.2fs sys %.2fs", used ? "; " : "",
                         after[i].tid == main_tid ? "caller (main) thread" : "recorder thread",
                         (double)ut / hz, (double)st / hz);
        if (k > 0 && (size_t)k < cap - used)
            used += (size_t)k;
    }
}

/* ---- main ---- */

typedef struct {
    uint64_t flows;
    double secs;
    long hwm_kib, rss_kib;
} checkpoint_t;

static const char *fsync_name(reel_fsync_policy p) {
    return p == REEL_FSYNC_BLOCK ? "block" : p == REEL_FSYNC_INTERVAL ? "interval" : "never";
}

static const char *verdict(int ok) {
    return ok ? "met" : "**not met**";
}

int main(int argc, char **argv) {
    uint64_t n_flows = 1000000, corpus_mb = 64, seed = 1, runs = 7;
    const char *home = NULL, *corpus_list = NULL, *label = "", *dump_wire = NULL;
    const char *reel = getenv("REEL");
    int keep = 0, do_repair = 1;
    uint64_t queue_mb = 16, zstd_level = 0;
    reel_fsync_policy fsync_policy = REEL_FSYNC_BLOCK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--keep") == 0) {
            keep = 1;
            continue;
        }
        if (strcmp(a, "--no-repair") == 0) {
            do_repair = 0;
            continue;
        }
        if (v == NULL)
            die("missing value for", a);
        i++;
        if (strcmp(a, "--flows") == 0)
            n_flows = parse_u64(v, a);
        else if (strcmp(a, "--home") == 0)
            home = v;
        else if (strcmp(a, "--reel") == 0)
            reel = v;
        else if (strcmp(a, "--corpus-list") == 0)
            corpus_list = v;
        else if (strcmp(a, "--corpus-mb") == 0)
            corpus_mb = parse_u64(v, a);
        else if (strcmp(a, "--runs") == 0)
            runs = parse_u64(v, a);
        else if (strcmp(a, "--seed") == 0)
            seed = parse_u64(v, a);
        else if (strcmp(a, "--label") == 0)
            label = v;
        else if (strcmp(a, "--dump-wire") == 0)
            dump_wire = v;
        else if (strcmp(a, "--capture-buffer-mb") == 0)
            queue_mb = parse_u64(v, a);
        else if (strcmp(a, "--zstd-level") == 0)
            zstd_level = parse_u64(v, a);
        else if (strcmp(a, "--fsync") == 0) {
            if (strcmp(v, "block") == 0)
                fsync_policy = REEL_FSYNC_BLOCK;
            else if (strcmp(v, "interval") == 0)
                fsync_policy = REEL_FSYNC_INTERVAL;
            else if (strcmp(v, "never") == 0)
                fsync_policy = REEL_FSYNC_NEVER;
            else
                die("--fsync takes block, interval or never, not", v);
        } else
            die("unknown option", a);
    }
    if (home == NULL || reel == NULL || n_flows == 0 || runs == 0)
        die("usage: ingest --flows N --home DIR --reel PATH (or $REEL) [--fsync "
            "block|interval|never]"
            " [--corpus-list FILE] [--corpus-mb MB] [--runs R] [--seed S] [--keep] [--no-repair]"
            " [--label TEXT] [--dump-wire FILE] [--capture-buffer-mb MB] [--zstd-level N]",
            NULL);
    if (mkdir(home, 0700) != 0 && errno != EEXIST)
        die("cannot create home", strerror(errno));
    const char *name = "bench-ingest";

    /* corpus */
    double t0 = now_s();
    corpus_t corpus;
    corpus_build(&corpus, home, corpus_list, corpus_mb << 20, seed);
    double t_corpus = now_s() - t0;
    fprintf(stderr, "ingest: corpus %.1f MiB from %zu text files (%.1fs)\n",
            (double)corpus.size / MIB, corpus.files, t_corpus);
    world_t *w = reel_malloc(sizeof *w);
    world_init(w, &corpus, seed);
    flow_t *f = reel_malloc(sizeof *f);
    uint8_t *reqb = reel_malloc(REQ_BODY_MAX), *respb = reel_malloc(RESP_BODY_MAX);
    size_t query_host = 19;
    char filter[128];
    snprintf(filter, sizeof filter, "~d %s & ~c 500", w->hosts[query_host]);

    /* 1. generator alone, counting what the flows hold */
    uint64_t wire_bytes = 0, head_total = 0, req_body = 0, resp_body = 0, expect_match = 0,
             expect_500 = 0;
    uint64_t sink = 0;
    t0 = now_s();
    for (uint64_t i = 0; i < n_flows; i++) {
        gen_flow(w, i, f);
        pread_all(corpus.fd, reqb, f->req_len, f->req_off);
        if (f->resp_len)
            pread_all(corpus.fd, respb, f->resp_len, f->resp_off);
        sink += reqb[0] + (f->resp_len ? respb[f->resp_len - 1] : 0);
        size_t hb = head_bytes(f);
        head_total += hb;
        req_body += f->req_len;
        resp_body += f->resp_len;
        wire_bytes += hb + f->req_len + f->resp_len;
        expect_500 += f->status == 500;
        expect_match += f->status == 500 && f->host_idx == query_host;
    }
    double t_gen = now_s() - t0;
    for (size_t h = 0; h < N_HOSTS; h++)
        if (h != query_host && strstr(w->hosts[h], w->hosts[query_host]))
            die("query host is a substring of another host", w->hosts[h]);
    fprintf(stderr, "ingest: generator alone %.2fs for %" PRIu64 " flows (%.1f MB wire)%s\n", t_gen,
            n_flows, (double)wire_bytes / MB, sink == 0 ? " (empty bodies?)" : "");

    /* 2. baseline */
    zbase_t z = {0};
    z.cctx = ZSTD_createCCtx();
    z.dump_fd = -1;
    if (dump_wire &&
        (z.dump_fd = open(dump_wire, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        die("cannot create", dump_wire);
    z.in = reel_malloc(CHUNK);
    z.out_cap = ZSTD_compressBound(CHUNK);
    z.out = reel_malloc(z.out_cap);
    t0 = now_s();
    for (uint64_t i = 0; i < n_flows; i++) {
        gen_flow(w, i, f);
        char line[256];
        snprintf(line, sizeof line, "%s %s HTTP/1.1\r\n", f->method, f->target);
        zb_puts(&z, line);
        zb_headers(&z, f->req_h, f->n_req);
        pread_all(corpus.fd, reqb, f->req_len, f->req_off);
        zb_put(&z, reqb, f->req_len);
        snprintf(line, sizeof line, "HTTP/1.1 %u %s\r\n", f->status, f->reason);
        zb_puts(&z, line);
        zb_headers(&z, f->resp_h, f->n_resp);
        if (f->resp_len) {
            pread_all(corpus.fd, respb, f->resp_len, f->resp_off);
            zb_put(&z, respb, f->resp_len);
        }
    }
    zb_flush(&z);
    double t_base_wall = now_s() - t0;
    ZSTD_freeCCtx(z.cctx);
    if (z.dump_fd >= 0)
        close(z.dump_fd);
    free(z.in);
    free(z.out);
    if (z.in_total != wire_bytes)
        die("baseline saw different bytes than the generator pass", NULL);
    fprintf(stderr,
            "ingest: baseline zstd -3: %.2fs compressing (%.2fs with generation), %.1f MB/s\n",
            z.secs, t_base_wall, (double)wire_bytes / MB / z.secs);

    /* 3. ingest */
    int hwm_reset = reset_hwm() == 0;
    long rss_before = proc_status_kib("VmRSS");
    checkpoint_t cp[N_CHECKPOINTS];
    size_t n_cp = 0;
    reel_err_t err;
    reel_err_clear(&err);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    t0 = now_s();
    reel_session_t *s = NULL;
    if (reel_session_open(home, name, REEL_OPEN_CREATE | REEL_OPEN_NEW | REEL_OPEN_RECORD, &s,
                          &err) != REEL_OK)
        die("session open", reel_err_str(&err));
    reel_recorder_opts_t opts;
    reel_recorder_opts_default(&opts);
    opts.capture = REEL_CAPTURE_LOSSLESS;
    opts.body_limit = 1ull << 30;
    opts.fsync = fsync_policy;
    opts.queue_bytes = (size_t)queue_mb << 20;
    if (zstd_level)
        opts.zstd_level = (int)zstd_level;
    reel_recorder_t *rec = NULL;
    if (reel_recorder_open(s, &opts, &rec, &err) != REEL_OK)
        die("recorder open", reel_err_str(&err));
    reel_flow_info_t info = {
        .kind = REEL_FLOW_HTTP, .client_addr = "127.0.0.1:53124", .source = "proxy"};
    uint64_t next_cp = 1000;
    char threads[1024] = "";
    tcpu_t tc0[MAX_THREADS], tc1[MAX_THREADS];
    size_t ntc0 = thread_cpu(tc0);
    for (uint64_t i = 0; i < n_flows; i++) {
        gen_flow(w, i, f);
        char server[80];
        snprintf(server, sizeof server, "203.0.113.%zu:443", 1 + f->host_idx % 250);
        info.server_addr = server;
        reel_rflow_t *rf = reel_recorder_flow_start(rec, &info);
        reel_request_head_t rq = {.method = f->method,
                                  .scheme = "https",
                                  .host = f->host,
                                  .port = 443,
                                  .target = f->target,
                                  .http_version = "HTTP/1.1",
                                  .headers = f->req_h,
                                  .n_headers = f->n_req};
        reel_recorder_request_head(rf, &rq);
        pread_all(corpus.fd, reqb, f->req_len, f->req_off);
        reel_recorder_request_body(rf, reqb, f->req_len);
        reel_response_head_t rs = {.status = f->status,
                                   .reason = f->reason,
                                   .http_version = "HTTP/1.1",
                                   .headers = f->resp_h,
                                   .n_headers = f->n_resp};
        reel_recorder_response_head(rf, &rs);
        if (f->resp_len) {
            pread_all(corpus.fd, respb, f->resp_len, f->resp_off);
            reel_recorder_response_body(rf, respb, f->resp_len);
        }
        reel_recorder_flow_end(rf, &f->tm, 0, 0, 0);
        if (i + 1 == n_flows) {
            size_t ntc1 = thread_cpu(tc1);
            thread_cpu_delta(tc0, ntc0, tc1, ntc1, (long)getpid(), threads, sizeof threads);
        }
        if ((i + 1 == next_cp || i + 1 == n_flows) && n_cp < N_CHECKPOINTS) {
            cp[n_cp].flows = i + 1;
            cp[n_cp].secs = now_s() - t0;
            cp[n_cp].hwm_kib = proc_status_kib("VmHWM");
            cp[n_cp].rss_kib = proc_status_kib("VmRSS");
            fprintf(stderr, "ingest: %9" PRIu64 " flows %8.1fs VmHWM %6.1f MiB VmRSS %6.1f MiB\n",
                    cp[n_cp].flows, cp[n_cp].secs, (double)cp[n_cp].hwm_kib / 1024.0,
                    (double)cp[n_cp].rss_kib / 1024.0);
            n_cp++;
            if (i + 1 == next_cp)
                next_cp *= 10;
        }
    }
    if (reel_recorder_flush(rec, &err) != REEL_OK)
        die("recorder flush", reel_err_str(&err));
    reel_recorder_stats_t stats;
    reel_recorder_stats(rec, &stats);
    if (reel_recorder_close(rec, &err) != REEL_OK)
        die("recorder close", reel_err_str(&err));
    double t_ingest = now_s() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    long hwm_end = proc_status_kib("VmHWM");
    char *spool_dir = reel_strdup(reel_session_spool_dir(s));
    char *spath = reel_strdup(reel_session_path(s));
    reel_session_close(s);
    double cpu_ingest = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                        (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                        (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                        (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    double sys_ingest = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                        (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    fprintf(stderr, "ingest: %" PRIu64 " flows in %.2fs (cpu %.2fs, sys %.2fs); threads: %s\n",
            n_flows, t_ingest, cpu_ingest, sys_ingest, threads);

    /* 4. disk */
    du_t spool = {0}, index = {0};
    du_dir(spool_dir, &spool);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t k = 0; k < 3; k++) {
        char *p = reel_asprintf("%s/session.db%s", spath, suffix[k]);
        du_file(p, &index);
        free(p);
    }
    uint64_t disk = spool.allocated + index.allocated;
    uint64_t disk_apparent = spool.apparent + index.apparent;

    /* 5. queries */
    char *av_show[] = {(char *)reel, "--home", (char *)home, "show", (char *)name, NULL};
    char *av_list[] = {(char *)reel, "--home",  (char *)home, "flows",
                       (char *)name, "--limit", "50",         NULL};
    char *av_filt[] = {(char *)reel, "--home", (char *)home, "flows", (char *)name, filter, NULL};
    double mn_show, mx_show, mn_list, mx_list, mn_filt, mx_filt;
    run_t q_show = run_median(av_show, (int)runs, &mn_show, &mx_show);
    run_t q_list = run_median(av_list, (int)runs, &mn_list, &mx_list);
    run_t q_filt = run_median(av_filt, (int)runs, &mn_filt, &mx_filt);
    if (q_list.lines != (n_flows < 50 ? n_flows : 50))
        fprintf(stderr, "ingest: WARNING: flows --limit 50 printed %zu lines\n", q_list.lines);
    if (q_filt.lines != expect_match)
        fprintf(stderr, "ingest: WARNING: filter printed %zu lines, expected %" PRIu64 "\n",
                q_filt.lines, expect_match);

    /* 6. repair, cold then warm */
    double t_rep_cold = 0, t_rep_warm = 0;
    long long flows_after = -1;
    if (do_repair) {
        char *av_rep[] = {(char *)reel, "--home", (char *)home, "repair", (char *)name, NULL};
        evict_dir(spool_dir);
        run_t r1 = run_cmd(av_rep, 0);
        run_t r2 = run_cmd(av_rep, 0);
        if (r1.status != 0 || r2.status != 0)
            die("reel repair failed", NULL);
        t_rep_cold = r1.ms / 1000.0;
        t_rep_warm = r2.ms / 1000.0;
        char *av_json[] = {(char *)reel, "--home",     (char *)home, "show",
                           "--json",     (char *)name, NULL};
        char *out = capture(av_json);
        json_t *o = json_loads(out, 0, NULL);
        free(out);
        if (o)
            flows_after = (long long)json_integer_value(json_object_get(o, "flows"));
        json_decref(o);
        if (flows_after != (long long)n_flows)
            fprintf(stderr,
                    "ingest: WARNING: after repair the index holds %lld flows, not %" PRIu64 "\n",
                    flows_after, n_flows);
    }

    /* report */
    double mbps = (double)wire_bytes / MB / t_ingest;
    double base_mbps = (double)wire_bytes / MB / z.secs;
    double ratio = z.secs / t_ingest;
    double frac = (double)disk / (double)wire_bytes;
    double hwm_mib = (double)hwm_end / 1024.0;
    long hwm_10k = -1;
    for (size_t k = 0; k < n_cp; k++)
        if (cp[k].flows == 10000)
            hwm_10k = cp[k].hwm_kib;
    int flat = hwm_10k > 0 && (double)(hwm_end - hwm_10k) <= 0.10 * (double)hwm_10k;
    double spool_mb = (double)spool.apparent / MB;

    printf("\n### reel ingest, %" PRIu64 " flows, fsync=%s%s%s\n\n", n_flows,
           fsync_name(fsync_policy), label[0] ? ", " : "", label);
    printf("| measure | figure | goal | |\n|---|---|---|---|\n");
    printf("| wire bytes ingested (heads %.0f B + request body %.0f B + response body %.0f B per "
           "flow) "
           "| %.1f MB, %.0f B/flow | | |\n",
           (double)head_total / (double)n_flows, (double)req_body / (double)n_flows,
           (double)resp_body / (double)n_flows, (double)wire_bytes / MB,
           (double)wire_bytes / (double)n_flows);
    printf("| baseline: libzstd level 3, 1 thread, same wire bytes in 64 KiB chunks | %.1f MB/s "
           "(%.2f s, output %.3f of input) | | |\n",
           base_mbps, z.secs, (double)z.out_total / (double)wire_bytes);
    printf("| ingest throughput (session create .. recorder close) | %.1f MB/s, %.0f flows/s "
           "(%.2f s) | | |\n",
           mbps, (double)n_flows / t_ingest, t_ingest);
    printf("| ingest / baseline | **%.2f** | >= 0.7 | %s |\n", ratio, verdict(ratio >= 0.7));
    printf("| generator alone (inside the ingest time) | %.2f s (%.0f%% of ingest) | | |\n", t_gen,
           100.0 * t_gen / t_ingest);
    printf("| CPU during ingest (all threads) | %.2f s (%.2f s sys) = %.1f us/flow | | |\n",
           cpu_ingest, sys_ingest, 1e6 * cpu_ingest / (double)n_flows);
    printf("| recorder stats | %" PRIu64 " records, %" PRIu64 " frames (%" PRIu64
           " by the second compressor), raw %.1f MB -> spool %.1f MB "
           "(%.3f) | | |\n",
           stats.records, stats.frames, stats.helped_frames, (double)stats.raw_bytes / MB,
           (double)stats.spool_bytes / MB, (double)stats.spool_bytes / (double)stats.raw_bytes);
    printf("| capture queue at its fullest | %.1f MiB of records in %.1f MiB of chunks (budget "
           "%.0f MiB) | | |\n",
           (double)stats.queue_peak / MIB, (double)stats.queue_mem_peak / MIB, (double)queue_mb);
    printf("| on disk: spool | %.1f MB (%zu segment%s) | | |\n", (double)spool.allocated / MB,
           spool.files, spool.files == 1 ? "" : "s");
    printf("| on disk: session.db (+wal/shm) | %.1f MB | | |\n", (double)index.allocated / MB);
    printf("| on disk per flow (spool + index) | %.0f B | | |\n", (double)disk / (double)n_flows);
    printf("| on disk / wire bytes | **%.3f** (apparent size %.3f; vs recorder raw %.3f) | <= 0.25 "
           "| %s |\n",
           frac, (double)disk_apparent / (double)wire_bytes, (double)disk / (double)stats.raw_bytes,
           verdict(frac <= 0.25));
    printf("| resident set before the recorder (corpus not in memory) | %.1f MiB | | |\n",
           (double)rss_before / 1024.0);
    for (size_t k = 0; k < n_cp; k++)
        printf("| peak RSS (VmHWM) at %" PRIu64 " flows | %.1f MiB | | |\n", cp[k].flows,
               (double)cp[k].hwm_kib / 1024.0);
    printf("| peak RSS (VmHWM) at end | **%.1f MiB**%s | < 64 MiB | %s |\n", hwm_mib,
           hwm_reset ? "" : " (VmHWM reset failed: includes the baseline pass)",
           verdict(hwm_mib < 64.0));
    if (hwm_10k > 0)
        printf("| peak RSS flat from 10k to %" PRIu64
               " flows (growth <= 10%%) | %+.1f MiB | flat | %s |\n",
               n_flows, (double)(hwm_end - hwm_10k) / 1024.0, verdict(flat));
    printf("| `reel show` (median of %" PRIu64
           ", min..max) | **%.1f ms** (%.1f..%.1f) | < 100 ms | %s |\n",
           runs, q_show.ms, mn_show, mx_show, verdict(q_show.ms < 100));
    printf("| `reel flows --limit 50` | **%.1f ms** (%.1f..%.1f) | < 100 ms | %s |\n", q_list.ms,
           mn_list, mx_list, verdict(q_list.ms < 100));
    printf("| `reel flows '%s'` (%zu flows; expected %" PRIu64
           ") | **%.1f ms** (%.1f..%.1f) | < 200 ms | %s |\n",
           filter, q_filt.lines, expect_match, q_filt.ms, mn_filt, mx_filt,
           verdict(q_filt.ms < 200));
    if (do_repair) {
        double cold = spool_mb / t_rep_cold, warm = spool_mb / t_rep_warm;
        printf("| `reel repair`, spool evicted from page cache | **%.1f MB/s** (%.2f s) | >= 200 "
               "MB/s | %s |\n",
               cold, t_rep_cold, verdict(cold >= 200));
        printf(
            "| `reel repair`, spool in page cache | **%.1f MB/s** (%.2f s) | >= 200 MB/s | %s |\n",
            warm, t_rep_warm, verdict(warm >= 200));
        printf("| flows in the index after repair | %lld | %" PRIu64 " | %s |\n", flows_after,
               n_flows, verdict(flows_after == (long long)n_flows));
    }
    printf("\nRecorder options: defaults except capture=lossless, body_limit=1 GiB, "
           "capture buffer %" PRIu64 " MiB, zstd level %d, fsync=%s "
           "(default is block: fdatasync after every frame). Corpus: %.1f MiB of text from %zu "
           "files (%s; FNV-1a %016" PRIx64 "). %" PRIu64 " flows with status 500 in all.\n",
           queue_mb, zstd_level ? (int)zstd_level : REEL_SPOOL_LEVEL_DEFAULT,
           fsync_name(fsync_policy), (double)corpus.size / MIB, corpus.files,
           corpus_list ? corpus_list : "/usr/include, /usr/share/doc", corpus.fnv, expect_500);
    printf(
        "\nCPU per thread from session open until the last flow was handed to the recorder: %s\n",
        threads);

    printf("\nkv flows %" PRIu64 "\nkv fsync %s\nkv wire_bytes %" PRIu64 "\nkv base_s %.3f\n"
           "kv ingest_s %.3f\nkv ratio %.3f\nkv gen_s %.3f\nkv disk_bytes %" PRIu64 "\n"
           "kv frac %.4f\nkv hwm_kib %ld\nkv show_ms %.1f\nkv list_ms %.1f\nkv filter_ms %.1f\n"
           "kv repair_cold_s %.3f\nkv repair_warm_s %.3f\nkv spool_bytes %" PRIu64 "\n",
           n_flows, fsync_name(fsync_policy), wire_bytes, z.secs, t_ingest, ratio, t_gen, disk,
           frac, hwm_end, q_show.ms, q_list.ms, q_filt.ms, t_rep_cold, t_rep_warm, spool.apparent);
    fflush(stdout);

    if (!keep) {
        reel_err_clear(&err);
        if (reel_session_remove(home, name, &err) != REEL_OK)
            fprintf(stderr, "ingest: removing the session: %s\n", reel_err_str(&err));
    }
    close(corpus.fd);
    free(spool_dir);
    free(spath);
    free(reqb);
    free(respb);
    free(f);
    free(w);
    return 0;
}
