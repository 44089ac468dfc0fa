/* TLS on memory BIOs for both roles. See tls.h for the contract. */
#include "core/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#define ERRMSG_MAX 512

/* Client role: resumable sessions per origin (opts.session_key). TLS 1.3
 * tickets are used once (RFC 8446 C.4: reuse would link connections), TLS
 * 1.2 sessions until the server replaces them. Bounded: SESS_KEYS origins,
 * the least recently used dropped first, SESS_PER_KEY sessions each. */
#define SESS_KEYS 256
#define SESS_PER_KEY 4

typedef struct {
    char *key; /* NULL: free slot */
    SSL_SESSION *s[SESS_PER_KEY];
    unsigned n;
    uint64_t used; /* ctx->tick of the last use */
} sess_slot_t;

struct reel_tls_ctx {
    SSL_CTX *ssl_ctx;
    reel_ca_t *ca; /* server role; borrowed */
    bool server;
    sess_slot_t *slots; /* client role: SESS_KEYS, allocated on first use */
    uint64_t tick;
};

struct reel_tls {
    reel_tls_ctx_t *ctx;
    SSL *ssl;
    BIO *rbio; /* network -> SSL; owned by ssl */
    BIO *wbio; /* SSL -> network; owned by ssl */
    bool server;
    bool insecure;
    bool done;
    bool failed;
    bool eof_fed;
    char eof_error[64]; /* the connection below broke with this ("": a clean end) */
    bool peer_closed;
    bool ended;              /* end of stream reported */
    bool closed_sent;        /* our close_notify queued */
    bool cert_requested;     /* client: the origin sent a CertificateRequest */
    bool has_identity;       /* client: a certificate to present (opts.identity) */
    char client_facts[400];  /* ... its facts, for ServerConn.client_cert */
    char *fallback_host;     /* server role */
    char *cert_host;         /* server: host of the leaf; client: opts.host */
    char *sni;               /* server: received; client: sent */
    char *alpn;              /* negotiated */
    bool offer_h2;           /* server: may choose "h2" */
    char *alpn_mirror;       /* server: the one protocol it may choose (NULL: HTTP's) */
    char *session_key;       /* client: cache key ("!" first when insecure) */
    char cb_err[ERRMSG_MAX]; /* set by the SNI callback */
    char cert_facts[600];    /* what the origin's certificate says, and where its chain failed */
    char peer_facts[400];    /* what its own (leaf) certificate says, for ServerConn.peer_cert */
    const char *verify_error; /* client: why the check failed (static), NULL: it did not */
    /* client, insecure: what the check found, which did not end the
     * handshake (static), NULL: nothing; set when the handshake is done */
    const char *unchecked_error;
    char errmsg[ERRMSG_MAX]; /* the failure, repeated on later calls */
};

/* ---- callbacks (server role) ---------------------------------------------- */

static int sni_cb(SSL *ssl, int *alert, void *arg) {
    reel_ca_t *ca = arg;
    reel_tls_t *t = SSL_get_app_data(ssl);
    if (t == NULL || t->cert_host != NULL) /* not ours, or already chosen */
        return SSL_TLSEXT_ERR_OK;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    reel_err_t err;
    reel_err_clear(&err);
    X509 *leaf = NULL;
    const char *host = NULL;
    if (name && name[0]) {
        free(t->sni);
        t->sni = reel_strdup(name);
        if (reel_ca_leaf(ca, name, &leaf, &err) == REEL_OK)
            host = name;
    }
    if (leaf == NULL && t->fallback_host) {
        if (reel_ca_leaf(ca, t->fallback_host, &leaf, &err) == REEL_OK)
            host = t->fallback_host;
    }
    if (leaf == NULL) {
        snprintf(t->cb_err, sizeof t->cb_err, "no certificate for the client: %.200s",
                 err.code != REEL_OK ? err.msg : "no SNI and no fallback host");
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    int ok = SSL_use_cert_and_key(ssl, leaf, reel_ca_leaf_key(ca), NULL, 1);
    X509_free(leaf);
    if (ok != 1) {
        unsigned long e = ERR_peek_last_error();
        const char *reason = e ? ERR_reason_error_string(e) : NULL;
        snprintf(t->cb_err, sizeof t->cb_err, "cannot use the leaf certificate: %s",
                 reason ? reason : "unknown OpenSSL error");
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    t->cert_host = reel_strdup(host);
    return SSL_TLSEXT_ERR_OK;
}

/* Selects "h2" when the client offers it and the connection may speak it
 * (reel_tls_offer_h2), else "http/1.1" if offered; otherwise no protocol
 * (the handshake goes on without ALPN). */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
    (void)arg;
    reel_tls_t *t = SSL_get_app_data(ssl);
    if (t && t->alpn_mirror) {
        /* the origin's choice, if the client offered it, and nothing else */
        size_t ml = strlen(t->alpn_mirror);
        for (unsigned int i = 0; ml > 0 && i < inlen;) {
            unsigned int l = in[i];
            if (l == 0 || l > inlen - i - 1)
                break;
            if (l == ml && memcmp(in + i + 1, t->alpn_mirror, ml) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)l;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + l;
        }
        return SSL_TLSEXT_ERR_NOACK;
    }
    bool h2 = t && t->offer_h2;
    const unsigned char *h1 = NULL;
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int l = in[i];
        if (l == 0 || l > inlen - i - 1)
            break;
        if (h2 && l == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0)
            h1 = in + i + 1;
        i += 1 + l;
    }
    if (h1) {
        *out = h1;
        *outlen = 8;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

void reel_tls_offer_h2(reel_tls_t *t, bool on) {
    t->offer_h2 = on;
}

void reel_tls_mirror_alpn(reel_tls_t *t, const char *proto) {
    free(t->alpn_mirror);
    t->alpn_mirror = proto ? reel_strdup(proto) : NULL;
}

/* ---- client session cache --------------------------------------------------- */

static void slot_clear(sess_slot_t *sl) {
    for (unsigned i = 0; i < sl->n; i++)
        SSL_SESSION_free(sl->s[i]);
    free(sl->key);
    memset(sl, 0, sizeof *sl);
}

/* The slot of key, or NULL; with create, a new (or the least recently
 * used, emptied) slot. */
static sess_slot_t *slot_find(reel_tls_ctx_t *ctx, const char *key, bool create) {
    if (ctx->slots == NULL) {
        if (!create)
            return NULL;
        ctx->slots = reel_calloc(SESS_KEYS, sizeof *ctx->slots);
    }
    sess_slot_t *victim = &ctx->slots[0];
    for (size_t i = 0; i < SESS_KEYS; i++) {
        sess_slot_t *sl = &ctx->slots[i];
        if (sl->key && strcmp(sl->key, key) == 0) {
            sl->used = ++ctx->tick;
            return sl;
        }
        if (victim->key && (sl->key == NULL || sl->used < victim->used))
            victim = sl;
    }
    if (!create)
        return NULL;
    slot_clear(victim);
    victim->key = reel_strdup(key);
    victim->used = ++ctx->tick;
    return victim;
}

/* OpenSSL hands over a new resumable session (after a handshake, or with a
 * TLS 1.3 ticket read later). The cache keeps a copy: the original stays
 * the connection's, and OpenSSL marks it not resumable when the connection
 * is freed without close_notify, which proxied connections often are. */
/* A cached client session's mark that its handshake presented the client
 * certificate an origin asked for (SSL_SESSION ex_data): a connection
 * resuming it is authenticated by that certificate, its origin asking
 * nothing (reel_tls_client_cert_asked). */
static int cert_sent_idx = -1;
static pthread_once_t cert_sent_once = PTHREAD_ONCE_INIT;

static void cert_sent_init(void) {
    cert_sent_idx = SSL_SESSION_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int cert_sent_index(void) {
    pthread_once(&cert_sent_once, cert_sent_init);
    return cert_sent_idx;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *orig) {
    reel_tls_t *t = SSL_get_app_data(ssl);
    if (t == NULL || t->session_key == NULL || !SSL_SESSION_is_resumable(orig))
        return 0;
    SSL_SESSION *sess = SSL_SESSION_dup(orig);
    if (sess == NULL) {
        ERR_clear_error();
        return 0;
    }
    if (t->cert_requested && t->has_identity && cert_sent_index() >= 0)
        SSL_SESSION_set_ex_data(sess, cert_sent_index(), (void *)1);
    sess_slot_t *sl = slot_find(t->ctx, t->session_key, true);
    if (sl->n == SESS_PER_KEY) {
        SSL_SESSION_free(sl->s[0]);
        memmove(sl->s, sl->s + 1, (SESS_PER_KEY - 1) * sizeof sl->s[0]);
        sl->n--;
    }
    sl->s[sl->n++] = sess;
    return 0; /* orig stays OpenSSL's */
}

/* Offers a cached session of t's origin, if there is one. */
static void session_offer(reel_tls_t *t) {
    sess_slot_t *sl = slot_find(t->ctx, t->session_key, false);
    if (sl == NULL || sl->n == 0)
        return;
    SSL_SESSION *sess = sl->s[sl->n - 1];
    if (SSL_set_session(t->ssl, sess) != 1) {
        ERR_clear_error();
        return;
    }
    if (SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION) {
        sl->n--;
        SSL_SESSION_free(sess); /* t->ssl holds its own reference */
    }
}

/* ---- contexts ----------------------------------------------------------------- */

static const char *ossl_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return reason ? reason : "unknown OpenSSL error";
}

static bool ctx_common(SSL_CTX *c) {
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1)
        return false;
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    return true;
}

reel_rc reel_tls_ctx_new_server(reel_ca_t *ca, reel_tls_ctx_t **out, reel_err_t *err) {
    *out = NULL;
    if (ca == NULL)
        return reel_err_set(err, REEL_INVALID, "TLS server context needs a CA");
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (c == NULL || !ctx_common(c)) {
        SSL_CTX_free(c);
        const char *reason = ossl_reason();
        return reel_err_set(err, REEL_ERROR, "cannot create the TLS server context: %s", reason);
    }
    SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* One TLS 1.3 session ticket per connection, not OpenSSL's two: each
     * is the session encoded, encrypted and sent after the handshake, and
     * a client resumes with one (Go's crypto/tls sends one too). The
     * second was about 2% of reel's CPU per new intercepted connection. */
    SSL_CTX_set_num_tickets(c, 1);
    SSL_CTX_set_tlsext_servername_callback(c, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(c, ca);
    SSL_CTX_set_alpn_select_cb(c, alpn_cb, NULL);
    reel_tls_ctx_t *ctx = reel_calloc(1, sizeof *ctx);
    ctx->ssl_ctx = c;
    ctx->ca = ca;
    ctx->server = true;
    *out = ctx;
    return REEL_OK;
}

bool reel_tls_ctx_share_tickets(reel_tls_ctx_t *to, const reel_tls_ctx_t *from) {
    unsigned char keys[80]; /* name, HMAC and AES keys: OpenSSL's layout, copied whole */
    bool ok = SSL_CTX_get_tlsext_ticket_keys(from->ssl_ctx, keys, sizeof keys) == 1 &&
              SSL_CTX_set_tlsext_ticket_keys(to->ssl_ctx, keys, sizeof keys) == 1;
    OPENSSL_cleanse(keys, sizeof keys);
    return ok;
}

/* 0 if path opens for reading and is not a directory, else the errno. */
static int unreadable(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    close(fd);
    return e;
}

/* The origin asked for a client certificate (CertificateRequest): noted,
 * for the record and to explain its refusal. Whatever reel presents
 * (opts.identity) is on the SSL already. */
static int cert_asked_cb(SSL *ssl, void *arg) {
    (void)arg;
    reel_tls_t *t = SSL_get_app_data(ssl);
    if (t)
        t->cert_requested = true;
    return 1;
}

/* The origin asked for a client certificate and reel has none to give:
 * it goes on without one. */
static int client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey) {
    (void)x509;
    (void)pkey;
    reel_tls_t *t = SSL_get_app_data(ssl);
    if (t)
        t->cert_requested = true;
    return 0;
}

/* ---- client certificates (upstream_client_certs) ---- */

static void cert_facts(X509 *x, char *out, size_t n);

struct reel_tls_identity {
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) * chain;
    char facts[400]; /* cert_facts */
};

struct reel_tls_identities {
    reel_tls_identity_t *all; /* a file's: for every origin (NULL: a directory) */
    /* a directory's, one per origin name, sorted by name */
    struct named_identity {
        char *name;
        reel_tls_identity_t *id;
    } * by_name;
    size_t n;
};

/* A key's passphrase is never asked for (the proxy has no one to ask): it
 * is the first line of the file FILE.pass beside the certificate's FILE,
 * if there is one (read when the certificates are loaded; the session
 * keeps only the certificates' path). */
static int give_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)rwflag;
    const char *pass = u;
    if (pass == NULL || size <= 0)
        return 0;
    size_t n = strlen(pass);
    if (n > (size_t)size)
        n = (size_t)size;
    memcpy(buf, pass, n);
    return (int)n;
}

/* The passphrase in path.pass: *pass (owned, NULL when there is no such
 * file); an error if it is there and cannot be read. */
static reel_rc passphrase_of(const char *path, char **pass, reel_err_t *err) {
    *pass = NULL;
    char *pf = reel_asprintf("%s.pass", path);
    FILE *f = fopen(pf, "re");
    if (f == NULL) {
        reel_rc rc = errno == ENOENT ? REEL_OK
                                     : reel_err_errno(err, REEL_IO, errno,
                                                      "upstream_client_certs: cannot read %s", pf);
        free(pf);
        return rc;
    }
    char line[1024];
    if (fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    fclose(f);
    free(pf);
    line[strcspn(line, "\r\n")] = '\0';
    *pass = reel_strdup(line);
    OPENSSL_cleanse(line, sizeof line);
    return REEL_OK;
}

static void pass_free(char *pass) {
    if (pass) {
        OPENSSL_cleanse(pass, strlen(pass));
        free(pass);
    }
}

static void identity_free(reel_tls_identity_t *id) {
    if (id == NULL)
        return;
    X509_free(id->cert);
    EVP_PKEY_free(id->key);
    sk_X509_pop_free(id->chain, X509_free);
    free(id);
}

/* Loaded once for the process, unloaded at its exit before OpenSSL's own
 * clean-up (registered earlier, so run after), which would leave them. */
static OSSL_PROVIDER *default_provider, *legacy_provider;

static void unload_providers(void) {
    if (legacy_provider)
        OSSL_PROVIDER_unload(legacy_provider);
    if (default_provider)
        OSSL_PROVIDER_unload(default_provider);
    legacy_provider = default_provider = NULL;
}

static void load_legacy_provider(void) {
    /* the default provider first: loading one by hand stops OpenSSL from
     * loading the default on its own */
    default_provider = OSSL_PROVIDER_load(NULL, "default");
    legacy_provider = OSSL_PROVIDER_load(NULL, "legacy");
    atexit(unload_providers);
}

/* A PKCS#12 file (.p12, .pfx) in f: its certificate, key and chain into
 * id; NULL, or why not. Files made with older algorithms (RC2, as Windows
 * and OpenSSL 1.1 export them) need OpenSSL's legacy provider, loaded
 * the first time one does. */
static const char *pkcs12_load(BIO *f, const char *pass, reel_tls_identity_t *id) {
    PKCS12 *p12 = d2i_PKCS12_bio(f, NULL);
    if (p12 == NULL)
        return "no certificate in it (PEM or PKCS#12)";
    bool mac_ok = !PKCS12_mac_present(p12) ||
                  (pass ? PKCS12_verify_mac(p12, pass, -1)
                        : PKCS12_verify_mac(p12, NULL, 0) || PKCS12_verify_mac(p12, "", 0));
    if (!mac_ok) {
        PKCS12_free(p12);
        return pass ? "a PKCS#12 file whose passphrase is not the one in its .pass file"
                    : "a PKCS#12 file with a passphrase: put it in a file named as this one with "
                      ".pass added, on its first line";
    }
    STACK_OF(X509) *ca = NULL;
    int ok = PKCS12_parse(p12, pass, &id->key, &id->cert, &ca);
    if (!ok) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        ERR_clear_error();
        pthread_once(&once, load_legacy_provider);
        ok = PKCS12_parse(p12, pass, &id->key, &id->cert, &ca);
    }
    PKCS12_free(p12);
    if (!ok) {
        unsigned long e = ERR_peek_last_error();
        const char *r = e ? ERR_reason_error_string(e) : NULL;
        snprintf(id->facts, sizeof id->facts, "a PKCS#12 file OpenSSL cannot read: %s",
                 r ? r : "unknown error");
        return id->facts;
    }
    for (int i = 0; ca && i < sk_X509_num(ca); i++) {
        X509 *x = sk_X509_value(ca, i);
        if (sk_X509_push(id->chain, x))
            X509_up_ref(x);
    }
    sk_X509_pop_free(ca, X509_free);
    return NULL;
}

/* Whether the PEM file f (read from its start) holds an encrypted
 * private key: PKCS#8's "ENCRYPTED PRIVATE KEY", or the older
 * "Proc-Type: 4,ENCRYPTED" header. */
static bool pem_key_encrypted(BIO *f) {
    char line[256];
    bool found = false;
    (void)BIO_reset(f);
    while (!found && BIO_gets(f, line, sizeof line) > 0)
        found = strstr(line, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
                strncmp(line, "Proc-Type: 4,ENCRYPTED", 22) == 0;
    return found;
}

/* A file of a certificate, its chain and its private key: PEM (the key
 * encrypted or not), or PKCS#12; an encrypted one's passphrase in
 * path.pass (passphrase_of). */
static reel_rc identity_load(const char *path, reel_tls_identity_t **out, reel_err_t *err) {
    *out = NULL;
    int e = unreadable(path);
    if (e)
        return reel_err_errno(err, REEL_IO, e, "upstream_client_certs: cannot read %s", path);
    char *pass = NULL;
    reel_rc rc = passphrase_of(path, &pass, err);
    if (rc != REEL_OK)
        return rc;
    BIO *f = BIO_new_file(path, "rb");
    if (f == NULL) {
        pass_free(pass);
        return reel_err_errno(err, REEL_IO, errno, "upstream_client_certs: cannot read %s", path);
    }
    reel_tls_identity_t *id = reel_calloc(1, sizeof *id);
    id->chain = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(f, NULL, give_passphrase, NULL)) != NULL) {
        if (id->cert == NULL)
            id->cert = x;
        else if (!sk_X509_push(id->chain, x))
            X509_free(x);
    }
    ERR_clear_error();
    const char *bad = NULL;
    bool encrypted = false;
    (void)BIO_reset(f);
    if (id->cert) {
        id->key = PEM_read_bio_PrivateKey(f, NULL, give_passphrase, pass);
        encrypted = id->key == NULL && pem_key_encrypted(f);
        ERR_clear_error();
    } else {
        bad = pkcs12_load(f, pass, id);
    }
    BIO_free(f);
    if (bad == NULL)
        bad = id->cert == NULL ? "no certificate in it (PEM or PKCS#12)"
              : id->key == NULL
                  ? (pass        ? "its private key is not read with the passphrase in its .pass "
                                   "file (or there is no private key in it)"
                     : encrypted ? "its private key is encrypted: put its passphrase in a file "
                                   "named as this one with .pass added, on its first line"
                                 : "no private key in it")
              : X509_check_private_key(id->cert, id->key) != 1
                  ? "its private key is not the certificate's"
                  : NULL;
    pass_free(pass);
    ERR_clear_error();
    if (bad) {
        rc = reel_err_set(err, REEL_INVALID, "upstream_client_certs: %s: %s", path, bad);
        identity_free(id);
        return rc;
    }
    cert_facts(id->cert, id->facts, sizeof id->facts);
    *out = id;
    return REEL_OK;
}

static int by_name_cmp(const void *a, const void *b) {
    return strcasecmp(((const struct named_identity *)a)->name,
                      ((const struct named_identity *)b)->name);
}

reel_rc reel_tls_identities_load(const char *path, reel_tls_identities_t **out, reel_err_t *err) {
    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return REEL_OK;
    reel_tls_identities_t *s = reel_calloc(1, sizeof *s);
    struct stat st;
    if (stat(path, &st) != 0) {
        free(s);
        return reel_err_errno(err, REEL_IO, errno, "upstream_client_certs: cannot read %s", path);
    }
    if (!S_ISDIR(st.st_mode)) {
        reel_rc rc = identity_load(path, &s->all, err);
        if (rc != REEL_OK) {
            free(s);
            return rc;
        }
        *out = s;
        return REEL_OK;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        free(s);
        return reel_err_errno(err, REEL_IO, errno, "upstream_client_certs: cannot read %s", path);
    }
    size_t cap = 0;
    reel_rc rc = REEL_OK;
    struct dirent *de;
    while (rc == REEL_OK && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        const char *ext = len > 4 ? de->d_name + len - 4 : "";
        if (de->d_name[0] == '.' || (strcasecmp(ext, ".pem") != 0 && strcasecmp(ext, ".p12") != 0 &&
                                     strcasecmp(ext, ".pfx") != 0))
            continue; /* NAME.pem, NAME.p12 or NAME.pfx only */
        char *file = reel_asprintf("%s/%s", path, de->d_name);
        reel_tls_identity_t *id = NULL;
        rc = identity_load(file, &id, err);
        free(file);
        if (rc != REEL_OK)
            break;
        if (s->n == cap) {
            cap = cap ? cap * 2 : 8;
            s->by_name = reel_realloc(s->by_name, cap * sizeof *s->by_name);
        }
        s->by_name[s->n].name = reel_strndup(de->d_name, len - 4);
        s->by_name[s->n++].id = id;
    }
    closedir(d);
    if (rc != REEL_OK) {
        reel_tls_identities_free(s);
        return rc;
    }
    if (s->n)
        qsort(s->by_name, s->n, sizeof *s->by_name, by_name_cmp);
    *out = s;
    return REEL_OK;
}

const reel_tls_identity_t *reel_tls_identities_find(const reel_tls_identities_t *s,
                                                    const char *host) {
    if (s == NULL || host == NULL)
        return NULL;
    if (s->all)
        return s->all;
    struct named_identity key = {.name = (char *)host};
    const struct named_identity *hit =
        s->n ? bsearch(&key, s->by_name, s->n, sizeof *s->by_name, by_name_cmp) : NULL;
    return hit ? hit->id : NULL;
}

void reel_tls_identities_free(reel_tls_identities_t *s) {
    if (s == NULL)
        return;
    identity_free(s->all);
    for (size_t i = 0; i < s->n; i++) {
        free(s->by_name[i].name);
        identity_free(s->by_name[i].id);
    }
    free(s->by_name);
    free(s);
}

bool reel_tls_client_cert_asked(const reel_tls_t *t, const char **cert) {
    bool asked = t->cert_requested;
    if (!asked && t->has_identity && t->done && SSL_session_reused(t->ssl) == 1) {
        /* resumed: asked and answered in the handshake that made the
         * session, which is authenticated by that certificate still */
        SSL_SESSION *s = SSL_get_session(t->ssl);
        asked = s && cert_sent_index() >= 0 && SSL_SESSION_get_ex_data(s, cert_sent_index());
    }
    if (cert)
        *cert = asked && t->has_identity ? t->client_facts : NULL;
    return asked;
}

reel_rc reel_tls_ctx_new_client(const char *extra_ca_file, bool no_system_store,
                                reel_tls_ctx_t **out, reel_err_t *err) {
    *out = NULL;
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (c == NULL || !ctx_common(c)) {
        SSL_CTX_free(c);
        const char *reason = ossl_reason();
        return reel_err_set(err, REEL_ERROR, "cannot create the TLS client context: %s", reason);
    }
    if (!no_system_store && SSL_CTX_set_default_verify_paths(c) != 1) {
        SSL_CTX_free(c);
        const char *reason = ossl_reason();
        return reel_err_set(err, REEL_ERROR, "cannot load the system trust store: %s", reason);
    }
    /* OpenSSL names only its library ("system lib") when the file cannot
     * be opened: the file is looked at first, for the errno's words */
    int e = extra_ca_file ? unreadable(extra_ca_file) : 0;
    if (e) {
        SSL_CTX_free(c);
        return reel_err_errno(err, REEL_IO, e, "cannot load trusted CA file %s", extra_ca_file);
    }
    if (extra_ca_file && SSL_CTX_load_verify_file(c, extra_ca_file) != 1) {
        SSL_CTX_free(c);
        const char *reason = ossl_reason();
        return reel_err_set(err, REEL_IO, "cannot load trusted CA file %s: %s", extra_ca_file,
                            reason);
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_cb(c, cert_asked_cb, NULL);
    SSL_CTX_set_client_cert_cb(c, client_cert_cb);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, new_session_cb);
    reel_tls_ctx_t *ctx = reel_calloc(1, sizeof *ctx);
    ctx->ssl_ctx = c;
    *out = ctx;
    return REEL_OK;
}

void reel_tls_ctx_free(reel_tls_ctx_t *ctx) {
    if (ctx == NULL)
        return;
    if (ctx->slots) {
        for (size_t i = 0; i < SESS_KEYS; i++)
            slot_clear(&ctx->slots[i]);
        free(ctx->slots);
    }
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* ---- connections ------------------------------------------------------------ */

static reel_rc conn_new(reel_tls_ctx_t *ctx, reel_tls_t **out, reel_err_t *err) {
    reel_tls_t *t = reel_calloc(1, sizeof *t);
    t->ctx = ctx;
    t->server = ctx->server;
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        const char *reason = ossl_reason();
        return reel_err_set(err, REEL_ERROR, "cannot create a TLS connection: %s", reason);
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "retry", not EOF */
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns both now */
    SSL_set_app_data(t->ssl, t);
    *out = t;
    return REEL_OK;
}

reel_rc reel_tls_new_server(reel_tls_ctx_t *ctx, const char *fallback_host, reel_tls_t **out,
                            reel_err_t *err) {
    *out = NULL;
    if (ctx == NULL || !ctx->server)
        return reel_err_set(err, REEL_INVALID, "not a TLS server context");
    reel_tls_t *t;
    reel_rc rc = conn_new(ctx, &t, err);
    if (rc != REEL_OK)
        return rc;
    t->fallback_host = reel_strdup(fallback_host);
    SSL_set_accept_state(t->ssl);
    *out = t;
    return REEL_OK;
}

/* Turns "h2,http/1.1" into ALPN wire format. */
static reel_rc alpn_wire(const char *list, reel_buf_t *w) {
    const char *p = list;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (n == 0 || n > 255)
            return REEL_INVALID;
        uint8_t l = (uint8_t)n;
        if (reel_buf_append(w, &l, 1) != REEL_OK || reel_buf_append(w, p, n) != REEL_OK)
            return REEL_LIMIT;
        p += n;
        if (*p == ',' && *++p == '\0')
            return REEL_INVALID; /* trailing comma */
    }
    return REEL_OK;
}

/* What the origin's certificate says, for the reason a check failed:
 * "certificate for NAMES, by ISSUER, valid FROM to TO"; the names are
 * its DNS and IP subjectAltNames (at most 4), else its CN. "" without one. */
static void cert_facts(X509 *x, char *out, size_t n) {
    out[0] = '\0';
    if (x == NULL)
        return;
    char names[200] = "";
    size_t used = 0;
    int shown = 0, total = 0;
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; g && i < sk_GENERAL_NAME_num(g); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, i);
        char ip[INET6_ADDRSTRLEN] = "";
        const char *s = NULL;
        if (gn->type == GEN_DNS) {
            s = (const char *)ASN1_STRING_get0_data(gn->d.dNSName);
        } else if (gn->type == GEN_IPADD) {
            int len = ASN1_STRING_length(gn->d.iPAddress);
            if (len == 4 || len == 16)
                s = inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(gn->d.iPAddress),
                              ip, sizeof ip);
        }
        if (s == NULL)
            continue;
        total++;
        if (shown < 4 && used < sizeof names) {
            int k = snprintf(names + used, sizeof names - used, "%s%.60s", shown ? ", " : "", s);
            used += k > 0 ? (size_t)k : 0;
            shown++;
        }
    }
    GENERAL_NAMES_free(g);
    if (total > shown && used < sizeof names)
        snprintf(names + used, sizeof names - used, " and %d more", total - shown);
    if (total == 0)
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, names, sizeof names);
    char issuer[80] = "?", from[32] = "?", to[32] = "?";
    X509_NAME_get_text_by_NID(X509_get_issuer_name(x), NID_commonName, issuer, sizeof issuer);
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1)
        strftime(from, sizeof from, "%Y-%m-%d", &tm);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        strftime(to, sizeof to, "%Y-%m-%d", &tm);
    snprintf(out, n, "certificate for %s, by %s, valid %s to %s", names[0] ? names : "?", issuer,
             from, to);
}

/* The CN of name, into out ("?" without one). */
static void cn_of(X509_NAME *name, char *out, int n) {
    if (X509_NAME_get_text_by_NID(name, NID_commonName, out, n) < 0)
        snprintf(out, (size_t)n, "?");
}

/* OpenSSL's verdict on each certificate of the origin's chain, unchanged.
 * At the first that fails, what the origin's own (leaf) certificate says
 * is kept for the flow's ServerConn (the peer certificate is not kept by
 * a handshake that failed) and for the error, which adds where the chain
 * failed when it is not at the leaf: the error and the recorded
 * certificate then describe the same certificate. Only on failure: a
 * check that passes costs nothing more. */
static int verify_note(int ok, X509_STORE_CTX *ctx) {
    SSL *ssl = X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    reel_tls_t *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (!ok && t && t->cert_facts[0] == '\0') {
        X509 *bad = X509_STORE_CTX_get_current_cert(ctx), *leaf = X509_STORE_CTX_get0_cert(ctx);
        cert_facts(leaf ? leaf : bad, t->peer_facts, sizeof t->peer_facts);
        if (leaf == NULL || bad == NULL || leaf == bad) {
            memcpy(t->cert_facts, t->peer_facts, sizeof t->cert_facts);
            return ok;
        }
        char issuer[80], top[80];
        cn_of(X509_get_issuer_name(leaf), issuer, sizeof issuer);
        int e = X509_STORE_CTX_get_error(ctx);
        if (e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN || e == X509_V_ERR_CERT_UNTRUSTED) {
            cn_of(X509_get_subject_name(bad), top, sizeof top); /* the root it sent */
            snprintf(t->cert_facts, sizeof t->cert_facts, "%s; %s chains to %s, not trusted",
                     t->peer_facts, issuer, top);
        } else if (e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                   e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) {
            cn_of(X509_get_issuer_name(bad), top, sizeof top); /* a root it did not send */
            snprintf(t->cert_facts, sizeof t->cert_facts,
                     "%s; %s chains to %s, which is not trusted", t->peer_facts, issuer, top);
        } else {
            char facts[300];
            cert_facts(bad, facts, sizeof facts);
            snprintf(t->cert_facts, sizeof t->cert_facts, "%s; in its chain, %.180s", t->peer_facts,
                     facts);
        }
    }
    return ok;
}

reel_rc reel_tls_new_client(reel_tls_ctx_t *ctx, const reel_tls_client_opts_t *opts,
                            reel_tls_t **out, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    reel_tls_t *t = NULL;
    reel_buf_t alpn;
    reel_buf_init(&alpn, 4096);
    *out = NULL;
    if (ctx == NULL || ctx->server)
        return reel_err_set(err, REEL_INVALID, "not a TLS client context");
    if (opts == NULL || opts->host == NULL || opts->host[0] == '\0')
        return reel_err_set(err, REEL_INVALID, "TLS client connection needs a host");
    const char *list = opts->alpn ? opts->alpn : "http/1.1";
    if (alpn_wire(list, &alpn) != REEL_OK) {
        rc = reel_err_set(err, REEL_INVALID, "bad ALPN list \"%s\"", list);
        goto out;
    }
    rc = conn_new(ctx, &t, err);
    if (rc != REEL_OK)
        goto out;
    t->insecure = opts->insecure;

    /* Strip IPv6 brackets; decide name vs IP literal. */
    const char *h = opts->host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
        t->cert_host = reel_strndup(h + 1, hl - 2);
    else
        t->cert_host = reel_strdup(h);
    unsigned char ip[16];
    bool is_ip =
        inet_pton(AF_INET, t->cert_host, ip) == 1 || inet_pton(AF_INET6, t->cert_host, ip) == 1;

    SSL_set_connect_state(t->ssl);
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok;
    if (is_ip) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(vp, t->cert_host);
    } else {
        t->sni = reel_strdup(t->cert_host);
        ok = X509_VERIFY_PARAM_set1_host(vp, t->cert_host, 0) == 1 &&
             SSL_set_tlsext_host_name(t->ssl, t->sni) == 1;
    }
    if (ok != 1) {
        const char *reason = ossl_reason();
        rc = reel_err_set(err, REEL_INVALID, "cannot use upstream host \"%.*s\": %s", 64,
                          opts->host, reason);
        goto out;
    }
    /* Off, the chain and the host name are checked all the same (OpenSSL
     * always does; SSL_VERIFY_NONE only lets the handshake go on): the
     * flow records what the check found (reel_tls_unchecked_error) */
    SSL_set_verify(t->ssl, opts->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, verify_note);
    const reel_tls_identity_t *id = opts->identity;
    if (id) { /* sent only if the origin asks */
        if (SSL_use_cert_and_key(t->ssl, id->cert, id->key, id->chain, 1) != 1) {
            const char *reason = ossl_reason();
            rc = reel_err_set(err, REEL_ERROR, "cannot use the client certificate: %s", reason);
            goto out;
        }
        t->has_identity = true;
        snprintf(t->client_facts, sizeof t->client_facts, "%s", id->facts);
    }
    if (opts->session_key) {
        /* a session made without verification never serves a verified
         * connection, nor one made with a client certificate another */
        t->session_key = reel_asprintf("%s%s%s%s", opts->insecure ? "!" : "", opts->session_key,
                                       id ? " as " : "", id ? id->facts : "");
        session_offer(t);
    }
    /* SSL_set_alpn_protos returns 0 on success. */
    if (alpn.len > 0 && SSL_set_alpn_protos(t->ssl, alpn.data, (unsigned)alpn.len) != 0) {
        const char *reason = ossl_reason();
        rc = reel_err_set(err, REEL_ERROR, "cannot set ALPN: %s", reason);
        goto out;
    }
out:
    reel_buf_free(&alpn);
    if (rc != REEL_OK) {
        reel_tls_free(t);
        return rc;
    }
    *out = t;
    return REEL_OK;
}

void reel_tls_free(reel_tls_t *t) {
    if (t == NULL)
        return;
    if (!t->server && t->done && !t->failed) {
        /* Proxied connections mostly end without close_notify. SSL_free
         * would then mark the connection's session not resumable, and
         * with TLS 1.2 that is the very session the cache offers to every
         * new connection to the origin: 4 in 10 handshakes were full ones
         * (certificate parsed and verified) under load. A connection that
         * failed is not covered: its session is rightly dropped. */
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN);
    }
    SSL_free(t->ssl); /* frees both BIOs */
    free(t->fallback_host);
    free(t->cert_host);
    free(t->sni);
    free(t->alpn);
    free(t->alpn_mirror);
    free(t->session_key);
    free(t);
}

/* ---- byte movement -------------------------------------------------------- */

reel_rc reel_tls_feed_cipher(reel_tls_t *t, const uint8_t *buf, size_t len, size_t *consumed) {
    size_t pending = BIO_ctrl_pending(t->rbio);
    size_t room = pending < REEL_TLS_CIPHER_IN_MAX ? REEL_TLS_CIPHER_IN_MAX - pending : 0;
    size_t k = len < room ? len : room;
    *consumed = 0;
    if (k == 0)
        return REEL_OK;
    int w = BIO_write(t->rbio, buf, (int)k); /* k <= 256 KiB fits an int */
    if (w > 0)
        *consumed = (size_t)w;
    return REEL_OK;
}

void reel_tls_feed_eof(reel_tls_t *t) {
    t->eof_fed = true;
    BIO_set_mem_eof_return(t->rbio, 0);
}

void reel_tls_feed_eof_error(reel_tls_t *t, const char *error) {
    reel_tls_feed_eof(t);
    if (error)
        snprintf(t->eof_error, sizeof t->eof_error, "%s", error);
}

reel_rc reel_tls_take_cipher(reel_tls_t *t, reel_buf_t *out) {
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (pending == 0)
        return REEL_OK;
    size_t max = out->max ? out->max : SIZE_MAX / 2;
    size_t room = max > out->len ? max - out->len : 0;
    size_t k = pending < room ? pending : room;
    if (k > INT_MAX)
        k = INT_MAX;
    if (k > 0 && reel_buf_reserve(out, k) == REEL_OK) {
        int r = BIO_read(t->wbio, out->data + out->len, (int)k);
        if (r > 0)
            out->len += (size_t)r;
        out->data[out->len] = '\0';
    }
    return BIO_ctrl_pending(t->wbio) > 0 ? REEL_LIMIT : REEL_OK;
}

size_t reel_tls_cipher_pending(const reel_tls_t *t) {
    return BIO_ctrl_pending(t->wbio);
}

/* ---- handshake, read, write ---------------------------------------------- */

static void note_done(reel_tls_t *t) {
    if (t->done || !SSL_is_init_finished(t->ssl))
        return;
    t->done = true;
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (p && n)
        t->alpn = reel_strndup((const char *)p, n);
    long v = t->server || !t->insecure ? X509_V_OK : SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        /* OpenSSL checked the chain and the name all the same (a resumed
         * session keeps the result of the handshake that made it, and its
         * certificate, but verify_note was not called for it) */
        t->unchecked_error = X509_verify_cert_error_string(v);
        if (t->peer_facts[0] == '\0')
            cert_facts(SSL_get0_peer_certificate(t->ssl), t->peer_facts, sizeof t->peer_facts);
    }
}

/* Records the failure of an SSL call into t->errmsg and err. */
static reel_rc fail(reel_tls_t *t, int ssl_err, reel_err_t *err) {
    if (t->failed)
        return reel_err_set(err, REEL_ERROR, "%s", t->errmsg);
    t->failed = true;
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    int rcode = e ? ERR_GET_REASON(e) : 0;
    const char *who = t->server ? "client" : "upstream";
    long v = t->server ? X509_V_OK : SSL_get_verify_result(t->ssl);

    if (t->cb_err[0]) {
        snprintf(t->errmsg, sizeof t->errmsg, "%s", t->cb_err);
    } else if (!t->server && !t->insecure && v != X509_V_OK &&
               rcode == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        t->verify_error = X509_verify_cert_error_string(v);
        snprintf(t->errmsg, sizeof t->errmsg, "upstream certificate verify failed: %s%s%.420s%s",
                 t->verify_error, t->cert_facts[0] ? " (" : "", t->cert_facts,
                 t->cert_facts[0] ? ")" : "");
        /* what the server had chosen before the check ended it, for the
         * flow's ServerConn (note_done does it for a handshake that ends) */
        const unsigned char *p = NULL;
        unsigned int pn = 0;
        SSL_get0_alpn_selected(t->ssl, &p, &pn);
        if (p && pn && t->alpn == NULL)
            t->alpn = reel_strndup((const char *)p, pn);
    } else if (t->eof_error[0] &&
               (rcode == SSL_R_UNEXPECTED_EOF_WHILE_READING || ssl_err == SSL_ERROR_SYSCALL)) {
        /* a reset, not a close: OpenSSL says only that the input ended */
        snprintf(t->errmsg, sizeof t->errmsg, "%s TLS %s failed: %s", who,
                 t->done ? "connection" : "handshake", t->eof_error);
    } else if (reason) {
        const char *hint = "";
        bool refused_cert =
            !t->server && t->cert_requested &&
            (rcode == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE ||
             rcode == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED ||
             rcode == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
             rcode == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN ||
             rcode == SSL_R_TLSV1_ALERT_ACCESS_DENIED || rcode == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
             rcode == SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE ||
             rcode == SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED ||
             rcode == SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED);
        char refused[520];
        if (refused_cert && t->has_identity) {
            snprintf(refused, sizeof refused,
                     ": the origin refused the client certificate reel presented "
                     "(upstream_client_certs: %.250s)",
                     t->client_facts);
            hint = refused;
        } else if (refused_cert)
            hint = ": the origin asked for a client certificate, which reel does not have: give "
                   "it one (upstream_client_certs), or put the host in ignore_hosts to pass it "
                   "through untouched";
        else if (t->server && (rcode == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
                               rcode == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
                               rcode == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN))
            hint = " (does the client trust the reel CA?)";
        snprintf(t->errmsg, sizeof t->errmsg, "%s TLS %s failed: %.120s%.330s", who,
                 t->done ? "connection" : "handshake", reason, hint);
    } else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN) {
        snprintf(t->errmsg, sizeof t->errmsg, "%s closed the connection during the TLS %s", who,
                 t->done ? "connection" : "handshake");
    } else {
        snprintf(t->errmsg, sizeof t->errmsg, "%s TLS %s failed (SSL error %d)", who,
                 t->done ? "connection" : "handshake", ssl_err);
    }
    ERR_clear_error();
    return reel_err_set(err, REEL_ERROR, "%s", t->errmsg);
}

reel_rc reel_tls_handshake(reel_tls_t *t, reel_err_t *err) {
    if (t->failed)
        return fail(t, 0, err);
    if (t->done)
        return REEL_OK;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        note_done(t);
        return REEL_OK;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return REEL_NEED_MORE;
    return fail(t, e, err);
}

reel_rc reel_tls_read_plain(reel_tls_t *t, uint8_t *out, size_t cap, size_t *n, reel_err_t *err) {
    *n = 0;
    if (t->failed)
        return fail(t, 0, err);
    if (t->ended)
        return REEL_OK;
    if (cap == 0)
        return reel_err_set(err, REEL_INVALID, "reel_tls_read_plain: no room");
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(t->ssl, out, cap, &got);
    note_done(t);
    if (r == 1) {
        *n = got;
        return REEL_OK;
    }
    int e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return REEL_NEED_MORE;
    case SSL_ERROR_ZERO_RETURN:
        t->peer_closed = true;
        t->ended = true;
        return REEL_OK;
    case SSL_ERROR_SSL:
    case SSL_ERROR_SYSCALL: {
        /* Network EOF without close_notify after the handshake: a truncated
         * but common end of stream (many servers skip close_notify), told
         * from a close_notify by reel_tls_peer_closed (OpenSSL 3 says
         * UNEXPECTED_EOF_WHILE_READING: SSL_OP_IGNORE_UNEXPECTED_EOF is
         * off, which would make it look like one). */
        unsigned long le = ERR_peek_last_error();
        bool eof = le == 0 || ERR_GET_REASON(le) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
        if (t->done && t->eof_fed && eof) {
            ERR_clear_error();
            t->ended = true;
            return REEL_OK;
        }
        return fail(t, e, err);
    }
    default:
        return fail(t, e, err);
    }
}

reel_rc reel_tls_write_plain(reel_tls_t *t, const uint8_t *buf, size_t len, size_t *n,
                             reel_err_t *err) {
    *n = 0;
    if (t->failed)
        return fail(t, 0, err);
    if (t->closed_sent) /* a caller bug, but reading may go on (half close) */
        return reel_err_set(err, REEL_ERROR, "TLS write after close_notify");
    if (!t->done) {
        reel_rc rc = reel_tls_handshake(t, err);
        if (rc != REEL_OK)
            return rc;
    }
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (len == 0 || pending >= REEL_TLS_CIPHER_OUT_MAX)
        return REEL_OK;
    size_t k = REEL_TLS_CIPHER_OUT_MAX - pending;
    if (k > len)
        k = len;
    ERR_clear_error();
    size_t w = 0;
    int r = SSL_write_ex(t->ssl, buf, k, &w);
    if (r == 1) {
        *n = w;
        return REEL_OK;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return REEL_NEED_MORE;
    return fail(t, e, err);
}

reel_rc reel_tls_close_notify(reel_tls_t *t, reel_err_t *err) {
    if (t->failed || !t->done)
        return REEL_OK; /* nothing meaningful to close */
    if (t->closed_sent)
        return REEL_OK;
    t->closed_sent = true;
    ERR_clear_error();
    int r = SSL_shutdown(t->ssl);
    if (r >= 0)
        return REEL_OK;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return REEL_OK;
    const char *reason = ossl_reason();
    return reel_err_set(err, REEL_ERROR, "cannot send close_notify: %s", reason);
}

/* ---- accessors ------------------------------------------------------------ */

bool reel_tls_handshake_done(const reel_tls_t *t) {
    return t->done;
}
bool reel_tls_peer_closed(const reel_tls_t *t) {
    return t->peer_closed;
}
bool reel_tls_is_server(const reel_tls_t *t) {
    return t->server;
}
const char *reel_tls_alpn(const reel_tls_t *t) {
    return t->alpn;
}
const char *reel_tls_sni(const reel_tls_t *t) {
    return t->sni;
}
const char *reel_tls_cert_host(const reel_tls_t *t) {
    return t->cert_host;
}

const char *reel_tls_version(const reel_tls_t *t) {
    return t->done || t->verify_error ? SSL_get_version(t->ssl) : NULL;
}

const char *reel_tls_cipher(const reel_tls_t *t) {
    const SSL_CIPHER *c = t->done || t->verify_error ? SSL_get_current_cipher(t->ssl) : NULL;
    if (c == NULL && t->verify_error) /* TLS 1.2 makes it current at ChangeCipherSpec */
        c = SSL_get_pending_cipher(t->ssl);
    return c ? SSL_CIPHER_get_name(c) : NULL;
}

const char *reel_tls_verify_error(const reel_tls_t *t, const char **cert) {
    if (t->verify_error && cert)
        *cert = t->peer_facts;
    return t->verify_error;
}

const char *reel_tls_unchecked_error(const reel_tls_t *t, const char **cert) {
    if (t->unchecked_error && cert)
        *cert = t->peer_facts;
    return t->unchecked_error;
}

bool reel_tls_resumed(const reel_tls_t *t) {
    return t->done && SSL_session_reused(t->ssl) == 1;
}

long reel_tls_verify_result(const reel_tls_t *t) {
    return t->server ? X509_V_OK : SSL_get_verify_result(t->ssl);
}

X509 *reel_tls_peer_cert(const reel_tls_t *t) {
    return SSL_get0_peer_certificate(t->ssl);
}
