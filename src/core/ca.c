/* reel's certificate authority: files, creation, leaf minting, leaf cache.
 * See ca.h for the contract. */
#include "core/ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/mem.h"

#define DAY_SECONDS 86400L
#define CA_VALID_DAYS 3650
#define LEAF_VALID_DAYS 365
#define PEM_FILE_MAX (64 * 1024)
#define CN_MAX 64
#define EXPIRY_WARN_DAYS 30
#define HOST_SHOWN_MAX 80 /* of a refused host, in its error */

typedef struct leaf {
    char *host; /* normalized: lowercase, no brackets */
    uint64_t hash;
    X509 *cert;
    struct leaf *hnext;               /* hash chain */
    struct leaf *lru_prev, *lru_next; /* lru_prev toward most recent */
} leaf_t;

struct reel_ca {
    char *dir;
    char *cert_path;
    char *key_path;
    char *pem;
    char fingerprint[32 * 3];
    char *warning; /* lines joined by '\n' */
    bool created;
    bool expired; /* at open: no leaf can be minted */
    X509 *cert;
    EVP_PKEY *key;
    EVP_PKEY *leaf_key;

    pthread_mutex_t mu;
    leaf_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    size_t capacity;
    leaf_t *mru, *lru; /* list ends */
    size_t minted, hits;
};

/* ---- OpenSSL error text -------------------------------------------------- */

/* The reason of OpenSSL's most recent error (static storage), then clears
 * OpenSSL's error queue. */
static const char *ossl_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return reason ? reason : "unknown OpenSSL error";
}

/* Sets err to "msg: <OpenSSL reason>". */
static reel_rc ossl_fail(reel_err_t *err, reel_rc rc, const char *msg) {
    const char *reason = ossl_reason();
    return reel_err_set(err, rc, "%s: %s", msg, reason);
}

/* Adds a line to ca->warning. */
static void add_warning(reel_ca_t *ca, char *line) {
    if (ca->warning == NULL) {
        ca->warning = line;
        return;
    }
    char *both = reel_asprintf("%s\n%s", ca->warning, line);
    free(ca->warning);
    free(line);
    ca->warning = both;
}

/* ---- files -------------------------------------------------------------- */

static reel_rc mkdir_p(const char *dir, reel_err_t *err) {
    char *p = reel_strdup(dir);
    reel_rc rc = REEL_OK;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (*s == '/' || end) {
            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                rc = reel_err_errno(err, REEL_IO, errno, "cannot create directory %s", p);
                goto out;
            }
            if (end)
                break;
            *s = '/';
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = reel_err_set(err, REEL_IO, "%s is not a directory", dir);
out:
    free(p);
    return rc;
}

/* Reads a whole (small) file. *mode gets its permission bits. Returns
 * REEL_NOTFOUND if it does not exist. */
static reel_rc read_small_file(const char *path, reel_buf_t *out, mode_t *mode, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return REEL_NOTFOUND;
        return reel_err_errno(err, REEL_IO, errno, "cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot stat %s", path);
        goto out;
    }
    if (mode)
        *mode = st.st_mode & 07777;
    reel_buf_init(out, PEM_FILE_MAX);
    for (;;) {
        if (reel_buf_reserve(out, 4096) != REEL_OK) {
            rc = reel_err_set(err, REEL_CORRUPT, "%s is larger than %d bytes", path, PEM_FILE_MAX);
            goto out;
        }
        ssize_t r = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = reel_err_errno(err, REEL_IO, errno, "cannot read %s", path);
            goto out;
        }
        if (r == 0)
            break;
        out->len += (size_t)r;
    }
    out->data[out->len] = '\0';
out:
    close(fd);
    return rc;
}

static reel_rc write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return REEL_IO;
        }
        c += w;
        n -= (size_t)w;
    }
    return REEL_OK;
}

/* Writes data to a 0600 temporary file beside path, fsyncs it and renames it
 * over path. */
static reel_rc write_file_atomic(const char *path, const char *data, size_t len, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    const char *slash = strrchr(path, '/');
    char *tmp = slash ? reel_asprintf("%.*s/.%s.XXXXXX", (int)(slash - path), path, slash + 1)
                      : reel_asprintf(".%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot create %s", tmp);
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != REEL_OK || fsync(fd) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot write %s", tmp);
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot write %s", tmp);
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = reel_err_errno(err, REEL_IO, errno, "cannot rename %s to %s", tmp, path);
        unlink(tmp);
        goto out;
    }
out:
    free(tmp);
    return rc;
}

static void fsync_dir(int dfd) {
    (void)fsync(dfd); /* best effort: the files themselves are fsynced */
}

/* ---- certificate building blocks --------------------------------------- */

static bool set_random_serial(X509 *x) {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return false;
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40); /* positive, always 16 bytes */
    BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL);
    if (bn == NULL)
        return false;
    bool ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

static bool add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return false;
    bool ok = X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static bool set_validity(X509 *x, long days) {
    return X509_gmtime_adj(X509_getm_notBefore(x), -DAY_SECONDS) != NULL &&
           X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) != NULL;
}

static reel_rc make_ca_cert(EVP_PKEY *key, X509 **out, reel_err_t *err) {
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1 || !set_random_serial(x) ||
        !set_validity(x, CA_VALID_DAYS))
        goto fail;
    name = X509_NAME_new();
    if (name == NULL ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"reel CA", -1,
                                   -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"reel", -1, -1,
                                   0) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
        X509_set_pubkey(x, key) != 1)
        goto fail;
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, &ctx, NID_subject_key_identifier, "hash"))
        goto fail;
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        goto fail;
    X509_NAME_free(name);
    *out = x;
    return REEL_OK;
fail:
    X509_NAME_free(name);
    X509_free(x);
    return ossl_fail(err, REEL_ERROR, "cannot create the CA certificate");
}

static char *pem_of(int (*fn)(BIO *, void *), void *obj) {
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b == NULL)
        return NULL;
    if (fn(b, obj) == 1) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0)
            s = reel_strndup(p, (size_t)n);
    }
    BIO_free(b);
    return s;
}

static int write_cert(BIO *b, void *x) {
    return PEM_write_bio_X509(b, x);
}

static int write_key(BIO *b, void *k) {
    return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

/* ---- loading and creation ----------------------------------------------- */

static reel_rc load_key(reel_ca_t *ca, reel_err_t *err) {
    reel_buf_t buf = {0};
    mode_t mode = 0;
    reel_rc rc = read_small_file(ca->key_path, &buf, &mode, err);
    if (rc != REEL_OK)
        goto out;
    BIO *b = BIO_new_mem_buf(buf.data, (int)buf.len);
    ca->key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (ca->key == NULL) {
        const char *reason = ossl_reason();
        rc = reel_err_set(err, REEL_CORRUPT, "cannot read the CA key %s: %s", ca->key_path, reason);
        goto out;
    }
    if (mode & 077) {
        char *word = reel_shell_word(ca->key_path);
        add_warning(ca, reel_asprintf("CA key %s has mode %04o, should be 0600 (run: chmod 600 %s)",
                                      ca->key_path, (unsigned)mode, word));
        free(word);
    }
out:
    OPENSSL_cleanse(buf.data, buf.len);
    reel_buf_free(&buf);
    return rc;
}

/* Loads cert and key. REEL_NOTFOUND (err untouched) when the certificate
 * file does not exist. */
static reel_rc load_ca(reel_ca_t *ca, reel_err_t *err) {
    reel_buf_t buf = {0};
    reel_err_t local;
    reel_err_clear(&local);
    reel_rc rc = read_small_file(ca->cert_path, &buf, NULL, &local);
    if (rc == REEL_NOTFOUND)
        goto out;
    if (rc != REEL_OK) {
        reel_err_set(err, rc, "%s", local.msg);
        goto out;
    }
    BIO *b = BIO_new_mem_buf(buf.data, (int)buf.len);
    ca->cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (ca->cert == NULL) {
        const char *reason = ossl_reason();
        rc = reel_err_set(err, REEL_CORRUPT, "cannot read the CA certificate %s: %s", ca->cert_path,
                          reason);
        goto out;
    }
    rc = load_key(ca, &local);
    if (rc == REEL_NOTFOUND) {
        rc = reel_err_set(err, REEL_CORRUPT,
                          "CA certificate %s exists but its key %s does not; "
                          "move the certificate away to create a new CA",
                          ca->cert_path, ca->key_path);
        goto out;
    }
    if (rc != REEL_OK) {
        reel_err_set(err, rc, "%s", local.msg);
        goto out;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        rc = reel_err_set(err, REEL_CORRUPT, "CA key %s does not match certificate %s",
                          ca->key_path, ca->cert_path);
        goto out;
    }
    if (X509_check_ca(ca->cert) == 0) {
        /* its leaves would be refused by every client ("invalid CA
         * certificate"), each flow's error then suggesting that the client
         * does not trust a CA it does trust */
        rc = reel_err_set(err, REEL_CORRUPT,
                          "%s is not a CA certificate (no basicConstraints CA:TRUE, or its key "
                          "usage lacks keyCertSign): it cannot sign the leaf certificates; "
                          "move %s and %s away and reel makes a new CA",
                          ca->cert_path, ca->cert_path, ca->key_path);
        goto out;
    }
out:
    reel_buf_free(&buf);
    if (rc != REEL_OK) {
        X509_free(ca->cert);
        ca->cert = NULL;
        EVP_PKEY_free(ca->key);
        ca->key = NULL;
    }
    return rc;
}

/* Creates the CA files; called with the directory lock held and no
 * certificate file present. A key left alone by an interrupted creation is
 * reused rather than overwritten. */
static reel_rc create_ca(reel_ca_t *ca, int dfd, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char *key_pem = NULL, *cert_pem = NULL;
    reel_err_t local;
    reel_err_clear(&local);
    rc = load_key(ca, &local);
    if (rc != REEL_OK && rc != REEL_NOTFOUND) {
        rc = reel_err_set(err, rc,
                          "%s; CA key %s exists without its certificate and is unreadable, "
                          "move it away to create a new CA",
                          local.msg, ca->key_path);
        goto out;
    }
    bool new_key = rc == REEL_NOTFOUND;
    rc = REEL_OK;
    if (new_key) {
        ca->key = EVP_EC_gen("P-256");
        if (ca->key == NULL) {
            rc = ossl_fail(err, REEL_ERROR, "cannot generate the CA key");
            goto out;
        }
    }
    rc = make_ca_cert(ca->key, &ca->cert, err);
    if (rc != REEL_OK)
        goto out;
    cert_pem = pem_of(write_cert, ca->cert);
    if (new_key)
        key_pem = pem_of(write_key, ca->key);
    if (cert_pem == NULL || (new_key && key_pem == NULL)) {
        rc = ossl_fail(err, REEL_ERROR, "cannot encode the CA");
        goto out;
    }
    /* Key first: a certificate is never visible without its key. */
    if (new_key) {
        rc = write_file_atomic(ca->key_path, key_pem, strlen(key_pem), err);
        if (rc != REEL_OK)
            goto out;
    }
    rc = write_file_atomic(ca->cert_path, cert_pem, strlen(cert_pem), err);
    if (rc != REEL_OK)
        goto out;
    fsync_dir(dfd);
    ca->created = true;
out:
    if (key_pem) {
        OPENSSL_cleanse(key_pem, strlen(key_pem));
        free(key_pem);
    }
    free(cert_pem);
    if (rc != REEL_OK) {
        X509_free(ca->cert);
        ca->cert = NULL;
        EVP_PKEY_free(ca->key);
        ca->key = NULL;
    }
    return rc;
}

static reel_rc make_fingerprint(reel_ca_t *ca) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(ca->cert, EVP_sha256(), md, &n) != 1 || n != 32)
        return REEL_ERROR;
    static const char hex[] = "0123456789ABCDEF";
    for (unsigned i = 0; i < n; i++) {
        ca->fingerprint[i * 3] = hex[md[i] >> 4];
        ca->fingerprint[i * 3 + 1] = hex[md[i] & 15];
        ca->fingerprint[i * 3 + 2] = i + 1 < n ? ':' : '\0';
    }
    return REEL_OK;
}

/* "2026-01-31" for t, into out. */
static void day_of(const ASN1_TIME *t, char *out, size_t n) {
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(out, n, "%Y-%m-%d", &tm) == 0)
        snprintf(out, n, "?");
}

/* An expired CA can only mint leaves that no client accepts (and a leaf
 * clamped to its end would end before it begins): it is flagged, minting
 * refuses, and the warning says how to get a new one. One about to expire
 * is only warned about. */
static void check_expiry(reel_ca_t *ca) {
    const ASN1_TIME *end = X509_get0_notAfter(ca->cert);
    char day[32];
    day_of(end, day, sizeof day);
    int days = 0, secs = 0;
    if (X509_cmp_current_time(end) <= 0) {
        ca->expired = true;
        add_warning(ca, reel_asprintf("the reel CA %s expired on %s: HTTPS cannot be intercepted "
                                      "(reel makes no certificate with it); move it and its key "
                                      "%s away to create a new CA, then trust the new one",
                                      ca->cert_path, day, ca->key_path));
    } else if (ASN1_TIME_diff(&days, &secs, NULL, end) == 1 && days < EXPIRY_WARN_DAYS) {
        add_warning(ca,
                    reel_asprintf("the reel CA %s expires on %s (in %d day%s): then HTTPS "
                                  "cannot be intercepted; move it and its key %s away to "
                                  "create a new CA, then trust the new one",
                                  ca->cert_path, day, days, days == 1 ? "" : "s", ca->key_path));
    }
}

reel_rc reel_ca_open(const char *dir, reel_ca_t **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    int dfd = -1;
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return reel_err_set(err, REEL_INVALID, "no CA directory given");
    reel_ca_t *ca = reel_calloc(1, sizeof *ca);
    pthread_mutex_init(&ca->mu, NULL);
    ca->capacity = REEL_CA_CACHE_DEFAULT;
    ca->nbuckets = 64;
    ca->buckets = reel_calloc(ca->nbuckets, sizeof *ca->buckets);
    ca->dir = reel_strdup(dir);
    ca->cert_path = reel_asprintf("%s/%s", dir, REEL_CA_CERT_FILE);
    ca->key_path = reel_asprintf("%s/%s", dir, REEL_CA_KEY_FILE);

    rc = mkdir_p(dir, err);
    if (rc != REEL_OK)
        goto out;
    rc = load_ca(ca, err);
    if (rc == REEL_NOTFOUND) {
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            rc = reel_err_errno(err, REEL_IO, errno, "cannot open %s", dir);
            goto out;
        }
        while (flock(dfd, LOCK_EX) != 0) {
            if (errno != EINTR) {
                rc = reel_err_errno(err, REEL_IO, errno, "cannot lock %s", dir);
                goto out;
            }
        }
        /* Someone may have created it while we waited for the lock. */
        rc = load_ca(ca, err);
        if (rc == REEL_NOTFOUND)
            rc = create_ca(ca, dfd, err);
        flock(dfd, LOCK_UN);
    }
    if (rc != REEL_OK)
        goto out;
    check_expiry(ca);
    ca->leaf_key = EVP_EC_gen("P-256");
    if (ca->leaf_key == NULL) {
        rc = ossl_fail(err, REEL_ERROR, "cannot generate the leaf key");
        goto out;
    }
    ca->pem = pem_of(write_cert, ca->cert);
    if (ca->pem == NULL || make_fingerprint(ca) != REEL_OK) {
        rc = ossl_fail(err, REEL_ERROR, "cannot encode the CA certificate");
        goto out;
    }
out:
    if (dfd >= 0)
        close(dfd);
    if (rc != REEL_OK) {
        reel_ca_free(ca);
        return rc;
    }
    *out = ca;
    return REEL_OK;
}

/* ---- leaf cache ----------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static void lru_unlink(reel_ca_t *ca, leaf_t *e) {
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        ca->mru = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        ca->lru = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(reel_ca_t *ca, leaf_t *e) {
    e->lru_prev = NULL;
    e->lru_next = ca->mru;
    if (ca->mru)
        ca->mru->lru_prev = e;
    ca->mru = e;
    if (ca->lru == NULL)
        ca->lru = e;
}

static leaf_t *cache_find(reel_ca_t *ca, const char *host, uint64_t h) {
    for (leaf_t *e = ca->buckets[h & (ca->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->host, host) == 0)
            return e;
    return NULL;
}

static void leaf_free(leaf_t *e) {
    X509_free(e->cert);
    free(e->host);
    free(e);
}

static void cache_remove(reel_ca_t *ca, leaf_t *e) {
    leaf_t **pp = &ca->buckets[e->hash & (ca->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(ca, e);
    ca->count--;
    leaf_free(e);
}

static void cache_evict(reel_ca_t *ca) {
    while (ca->count > ca->capacity && ca->lru)
        cache_remove(ca, ca->lru);
}

static void cache_grow(reel_ca_t *ca) {
    size_t nb = ca->nbuckets * 2;
    leaf_t **b = reel_calloc(nb, sizeof *b);
    for (size_t i = 0; i < ca->nbuckets; i++) {
        leaf_t *e = ca->buckets[i];
        while (e) {
            leaf_t *next = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(ca->buckets);
    ca->buckets = b;
    ca->nbuckets = nb;
}

static void cache_insert(reel_ca_t *ca, char *host, uint64_t h, X509 *cert) {
    leaf_t *e = reel_calloc(1, sizeof *e);
    e->host = host;
    e->hash = h;
    e->cert = cert;
    if (ca->count + 1 > ca->nbuckets)
        cache_grow(ca);
    size_t i = h & (ca->nbuckets - 1);
    e->hnext = ca->buckets[i];
    ca->buckets[i] = e;
    lru_push_front(ca, e);
    ca->count++;
    cache_evict(ca);
}

void reel_ca_set_cache_capacity(reel_ca_t *ca, size_t capacity) {
    pthread_mutex_lock(&ca->mu);
    ca->capacity = capacity ? capacity : 1;
    cache_evict(ca);
    pthread_mutex_unlock(&ca->mu);
}

size_t reel_ca_cache_size(const reel_ca_t *ca) {
    reel_ca_t *m = (reel_ca_t *)ca;
    pthread_mutex_lock(&m->mu);
    size_t n = m->count;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void reel_ca_cache_stats(const reel_ca_t *ca, size_t *minted, size_t *hits) {
    reel_ca_t *m = (reel_ca_t *)ca;
    pthread_mutex_lock(&m->mu);
    if (minted)
        *minted = m->minted;
    if (hits)
        *hits = m->hits;
    pthread_mutex_unlock(&m->mu);
}

/* ---- leaves ------------------------------------------------------------- */

/* Normalizes host into a new string (lowercase, IPv6 brackets removed) and
 * tells whether it is an IP literal (ip/iplen get its bytes). NULL if it is
 * not a usable name, *why then saying what is wrong with it (static). */
static char *normalize_host(const char *host, unsigned char ip[16], int *iplen, const char **why) {
    size_t n = strlen(host);
    *iplen = 0;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0) {
        *why = "empty name";
        return NULL;
    }
    /* an absolute name may carry one more byte, its final dot */
    if (n > REEL_CA_HOST_MAX + (host[n - 1] == '.')) {
        *why = "name over 253 bytes";
        return NULL;
    }
    char *h = reel_strndup(host, n);
    if (inet_pton(AF_INET, h, ip) == 1) {
        *iplen = 4;
        return h;
    }
    if (inet_pton(AF_INET6, h, ip) == 1) {
        *iplen = 16;
        return h;
    }
    /* a name in its absolute form ("example.com.") is the same name */
    if (n > 1 && h[n - 1] == '.')
        h[--n] = '\0';
    size_t label = 0;
    for (char *c = h; *c; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
        else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' ||
                   *c == '_')) {
            *why = *c == '*' ? "a wildcard is not a host"
                             : "characters other than letters, digits, '-', '.' and '_'";
            free(h);
            return NULL;
        }
        /* no empty label, none over 63 bytes (RFC 1035 2.3.4): no origin
         * has a certificate for such a name, and a dNSName must not hold
         * one (RFC 5280 4.2.1.6) */
        if (*c == '.' && label == 0) {
            *why = "empty label";
            free(h);
            return NULL;
        }
        label = *c == '.' ? 0 : label + 1;
        if (label > 63) {
            *why = "label over 63 bytes";
            free(h);
            return NULL;
        }
    }
    if (label == 0) { /* ended on a dot: an empty last label */
        *why = "empty label";
        free(h);
        return NULL;
    }
    return h;
}

/* host as an error shows it: at most HOST_SHOWN_MAX bytes, then "...";
 * bytes that are not printable ASCII as '?', so that the message stays
 * one line. */
static void show_host(const char *host, char *out, size_t n) {
    size_t len = strlen(host), k = 0;
    for (; k < len && k < HOST_SHOWN_MAX && k + 4 < n; k++)
        out[k] = host[k] > ' ' && host[k] < 0x7f ? host[k] : '?';
    if (k < len && k + 4 <= n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

static bool add_san(X509 *x, const char *host, const unsigned char *ip, int iplen, bool critical) {
    bool ok = false;
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (names == NULL || gn == NULL)
        goto out;
    if (iplen) {
        ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
        if (os == NULL || ASN1_OCTET_STRING_set(os, ip, iplen) != 1) {
            ASN1_OCTET_STRING_free(os);
            goto out;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
    } else {
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (s == NULL || ASN1_STRING_set(s, host, -1) != 1) {
            ASN1_IA5STRING_free(s);
            goto out;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    }
    if (sk_GENERAL_NAME_push(names, gn) <= 0)
        goto out;
    gn = NULL;
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, names, critical, X509V3_ADD_DEFAULT) == 1;
out:
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(names);
    return ok;
}

/* NULL on failure, *expired telling that it is the CA's end (else
 * OpenSSL's error queue says why). */
static X509 *mint_leaf(reel_ca_t *ca, const char *host, const unsigned char *ip, int iplen,
                       bool *expired) {
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    /* A CN holds at most 64 characters (RFC 5280's ub-common-name): a
     * longer name is not cut into another one, the leaf has no subject and
     * its SAN, then critical, names it (RFC 5280 4.2.1.6) */
    bool cn = strlen(host) <= CN_MAX;
    if (x == NULL || name == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        !set_random_serial(x) || !set_validity(x, LEAF_VALID_DAYS))
        goto fail;
    const ASN1_TIME *ca_end = X509_get0_notAfter(ca->cert);
    if (ASN1_TIME_compare(X509_get0_notAfter(x), ca_end) > 0 && X509_set1_notAfter(x, ca_end) != 1)
        goto fail;
    /* a CA that expired after open (reel_ca_open flags one already
     * expired) would give a leaf that ends before it begins */
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notBefore(x)) <= 0 ||
        X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        *expired = true;
        goto fail;
    }
    if ((cn && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host,
                                          -1, -1, 0) != 1) ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
        X509_set_pubkey(x, ca->leaf_key) != 1)
        goto fail;
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
    if (!add_ext(x, &ctx, NID_basic_constraints, "CA:FALSE") ||
        !add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") ||
        !add_ext(x, &ctx, NID_authority_key_identifier, "keyid,issuer") ||
        !add_san(x, host, ip, iplen, !cn))
        goto fail;
    if (X509_sign(x, ca->key, EVP_sha256()) <= 0)
        goto fail;
    X509_NAME_free(name);
    return x;
fail:
    X509_NAME_free(name);
    X509_free(x);
    return NULL;
}

static reel_rc expired_fail(reel_ca_t *ca, reel_err_t *err) {
    char day[32];
    day_of(X509_get0_notAfter(ca->cert), day, sizeof day);
    return reel_err_set(err, REEL_INVALID,
                        "cannot make a certificate: the reel CA %s expired on %s "
                        "(move it and its key away to create a new one)",
                        ca->cert_path, day);
}

reel_rc reel_ca_leaf(reel_ca_t *ca, const char *host, X509 **cert_out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    unsigned char ip[16];
    int iplen = 0;
    *cert_out = NULL;
    const char *why = "no host";
    char *h = host ? normalize_host(host, ip, &iplen, &why) : NULL;
    if (h == NULL) {
        char shown[HOST_SHOWN_MAX + 8];
        show_host(host ? host : "", shown, sizeof shown);
        return reel_err_set(err, REEL_INVALID, "cannot make a certificate for host \"%s\": %s",
                            shown, why);
    }
    if (ca->expired) {
        free(h);
        return expired_fail(ca, err);
    }
    uint64_t hv = hash_str(h);
    pthread_mutex_lock(&ca->mu);
    leaf_t *e = cache_find(ca, h, hv);
    if (e) {
        lru_unlink(ca, e);
        lru_push_front(ca, e);
        X509_up_ref(e->cert);
        *cert_out = e->cert;
        ca->hits++;
        free(h);
        goto out;
    }
    bool expired = false;
    X509 *x = mint_leaf(ca, h, ip, iplen, &expired);
    if (x == NULL) {
        free(h);
        rc = expired ? expired_fail(ca, err)
                     : ossl_fail(err, REEL_ERROR, "cannot mint a leaf certificate");
        goto out;
    }
    ca->minted++;
    X509_up_ref(x);
    *cert_out = x;
    cache_insert(ca, h, hv, x); /* takes h and one reference */
out:
    pthread_mutex_unlock(&ca->mu);
    return rc;
}

/* ---- accessors ---------------------------------------------------------- */

void reel_ca_free(reel_ca_t *ca) {
    if (ca == NULL)
        return;
    while (ca->lru)
        cache_remove(ca, ca->lru);
    free(ca->buckets);
    pthread_mutex_destroy(&ca->mu);
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    EVP_PKEY_free(ca->leaf_key);
    free(ca->pem);
    free(ca->warning);
    free(ca->dir);
    free(ca->cert_path);
    free(ca->key_path);
    free(ca);
}

bool reel_ca_created(const reel_ca_t *ca) {
    return ca->created;
}
const char *reel_ca_warning(const reel_ca_t *ca) {
    return ca->warning;
}
const char *reel_ca_cert_path(const reel_ca_t *ca) {
    return ca->cert_path;
}
const char *reel_ca_key_path(const reel_ca_t *ca) {
    return ca->key_path;
}
const char *reel_ca_pem(const reel_ca_t *ca) {
    return ca->pem;
}
const char *reel_ca_fingerprint(const reel_ca_t *ca) {
    return ca->fingerprint;
}
X509 *reel_ca_cert(const reel_ca_t *ca) {
    return ca->cert;
}
EVP_PKEY *reel_ca_leaf_key(const reel_ca_t *ca) {
    return ca->leaf_key;
}
