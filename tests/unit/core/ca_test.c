/* CA tests: creation on first use (files, modes, reuse, loose key mode,
 * half-written directories, concurrent first use), leaf contents (SAN, CN,
 * validity, key usages, AKI), verification against the CA alone, and the
 * LRU leaf cache. Prints leaf minting time (not asserted). */
#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit/testutil.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/mem.h"
#include "core/ca.h"

static char *tmp_dir(void) {
    return reel_test_tmpdir("ca");
}

static void rm_rf(const char *path) {
    reel_test_rm_rf(path);
}

static reel_ca_t *open_ok(const char *dir) {
    reel_err_t err;
    reel_err_clear(&err);
    reel_ca_t *ca = NULL;
    reel_rc rc = reel_ca_open(dir, &ca, &err);
    if (rc != REEL_OK)
        fail_msg("reel_ca_open(%s): %s", dir, reel_err_str(&err));
    assert_non_null(ca);
    return ca;
}

static mode_t mode_of(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = reel_malloc(65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char *name_entry(X509_NAME *name, int nid) {
    char buf[256];
    int n = X509_NAME_get_text_by_NID(name, nid, buf, sizeof buf);
    return n < 0 ? NULL : reel_strdup(buf);
}

static int days_between(const ASN1_TIME *from, const ASN1_TIME *to) {
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, from, to), 1);
    return days;
}

/* ---- creation ------------------------------------------------------------- */

static void test_create(void **state) {
    (void)state;
    char *root = tmp_dir();
    char *dir = reel_asprintf("%s/data/reel", root); /* parents do not exist */
    reel_ca_t *ca = open_ok(dir);
    assert_true(reel_ca_created(ca));
    assert_null(reel_ca_warning(ca));
    assert_int_equal(mode_of(dir), 0700);
    assert_int_equal(mode_of(reel_ca_key_path(ca)), 0600);
    assert_int_equal(mode_of(reel_ca_cert_path(ca)), 0600);
    char *want = reel_asprintf("%s/reel-ca.pem", dir);
    assert_string_equal(reel_ca_cert_path(ca), want);
    free(want);

    /* PEM from the accessor is the file's content. */
    char *file = slurp(reel_ca_cert_path(ca));
    assert_string_equal(file, reel_ca_pem(ca));
    assert_non_null(strstr(file, "-----BEGIN CERTIFICATE-----"));
    free(file);
    char *key = slurp(reel_ca_key_path(ca));
    assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
    free(key);
    assert_int_equal(strlen(reel_ca_fingerprint(ca)), 32 * 3 - 1);

    /* The CA certificate itself. */
    X509 *x = reel_ca_cert(ca);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    char *cn = name_entry(X509_get_subject_name(x), NID_commonName);
    char *o = name_entry(X509_get_subject_name(x), NID_organizationName);
    assert_string_equal(cn, "reel CA");
    assert_string_equal(o, "reel");
    free(cn);
    free(o);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    char group[64];
    size_t glen = 0;
    assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof group, &glen), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(X509_verify(x, pub), 1);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);

    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    assert_int_equal(ASN1_STRING_length(serial), 16);

    uint32_t flags = X509_get_extension_flags(x);
    assert_true(flags & EXFLAG_CA);
    assert_int_equal(X509_get_pathlen(x), 0);
    assert_true(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_key_usage(x) & KU_CRL_SIGN);
    assert_false(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    assert_non_null(X509_get0_subject_key_id(x));
    int idx = X509_get_ext_by_NID(x, NID_basic_constraints, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
    idx = X509_get_ext_by_NID(x, NID_key_usage, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);

    assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
    assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
    int days = days_between(X509_get0_notBefore(x), X509_get0_notAfter(x));
    assert_in_range(days, 3650, 3652);

    /* No temporary files left behind. */
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
        else if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            fail_msg("left over: %s", e->d_name);
    closedir(d);
    assert_int_equal(n, 2);

    reel_ca_free(ca);
    free(dir);
    rm_rf(root);
    free(root);
}

static void test_reuse(void **state) {
    (void)state;
    char *dir = tmp_dir();
    reel_ca_t *a = open_ok(dir);
    char *fp = reel_strdup(reel_ca_fingerprint(a));
    reel_ca_free(a);
    reel_ca_t *b = open_ok(dir);
    assert_false(reel_ca_created(b));
    assert_null(reel_ca_warning(b));
    assert_string_equal(reel_ca_fingerprint(b), fp);
    reel_ca_free(b);
    free(fp);
    rm_rf(dir);
    free(dir);
}

static void test_loose_key_mode(void **state) {
    (void)state;
    char *dir = tmp_dir();
    reel_ca_t *a = open_ok(dir);
    char *fp = reel_strdup(reel_ca_fingerprint(a));
    assert_int_equal(chmod(reel_ca_key_path(a), 0644), 0);
    reel_ca_free(a);
    reel_ca_t *b = open_ok(dir); /* still loads */
    assert_string_equal(reel_ca_fingerprint(b), fp);
    const char *w = reel_ca_warning(b);
    assert_non_null(w);
    assert_non_null(strstr(w, "0644"));
    assert_non_null(strstr(w, "chmod 600"));
    assert_int_equal(mode_of(reel_ca_key_path(b)), 0644); /* not changed behind the user */
    reel_ca_free(b);
    free(fp);
    rm_rf(dir);
    free(dir);
}

static void test_cert_without_key(void **state) {
    (void)state;
    char *dir = tmp_dir();
    reel_ca_t *a = open_ok(dir);
    char *cert = slurp(reel_ca_cert_path(a));
    assert_int_equal(unlink(reel_ca_key_path(a)), 0);
    reel_ca_free(a);
    reel_err_t err;
    reel_err_clear(&err);
    reel_ca_t *b = NULL;
    assert_int_equal(reel_ca_open(dir, &b, &err), REEL_CORRUPT);
    assert_null(b);
    assert_non_null(strstr(err.msg, "its key"));
    char *again = reel_asprintf("%s/reel-ca.pem", dir);
    char *cert2 = slurp(again); /* untouched */
    assert_string_equal(cert, cert2);
    free(cert);
    free(cert2);
    free(again);
    rm_rf(dir);
    free(dir);
}

static void test_key_without_cert(void **state) {
    (void)state;
    char *dir = tmp_dir();
    reel_ca_t *a = open_ok(dir);
    char *key = slurp(reel_ca_key_path(a));
    assert_int_equal(unlink(reel_ca_cert_path(a)), 0);
    reel_ca_free(a);
    /* An interrupted creation left the key only: it is reused. */
    reel_ca_t *b = open_ok(dir);
    assert_true(reel_ca_created(b));
    char *key2 = slurp(reel_ca_key_path(b));
    assert_string_equal(key, key2);
    reel_ca_free(b);
    free(key);
    free(key2);

    /* An unreadable orphan key is refused, not overwritten. */
    char *kp = reel_asprintf("%s/reel-ca-key.pem", dir);
    char *cp = reel_asprintf("%s/reel-ca.pem", dir);
    assert_int_equal(unlink(cp), 0);
    FILE *f = fopen(kp, "w");
    assert_non_null(f);
    fputs("not a key\n", f);
    fclose(f);
    reel_err_t err;
    reel_err_clear(&err);
    reel_ca_t *c = NULL;
    assert_int_equal(reel_ca_open(dir, &c, &err), REEL_CORRUPT);
    assert_null(c);
    char *k3 = slurp(kp);
    assert_string_equal(k3, "not a key\n");
    free(k3);
    free(kp);
    free(cp);
    rm_rf(dir);
    free(dir);
}

static void test_mismatched_key(void **state) {
    (void)state;
    char *d1 = tmp_dir(), *d2 = tmp_dir();
    reel_ca_t *a = open_ok(d1), *b = open_ok(d2);
    assert_int_equal(rename(reel_ca_key_path(b), reel_ca_key_path(a)), 0);
    reel_ca_free(a);
    reel_ca_free(b);
    reel_err_t err;
    reel_err_clear(&err);
    reel_ca_t *c = NULL;
    assert_int_equal(reel_ca_open(d1, &c, &err), REEL_CORRUPT);
    assert_non_null(strstr(err.msg, "does not match"));
    rm_rf(d1);
    rm_rf(d2);
    free(d1);
    free(d2);
}

/* Several processes open a fresh directory at once: one CA results. */
static void test_concurrent_first_use(void **state) {
    (void)state;
    enum { N = 6 };
    char *root = tmp_dir();
    char *dir = reel_asprintf("%s/reel", root);
    int fds[N][2];
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(pipe(fds[i]), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(fds[i][0]);
            reel_err_t err;
            reel_err_clear(&err);
            reel_ca_t *ca = NULL;
            int ok = reel_ca_open(dir, &ca, &err) == REEL_OK;
            char line[256];
            int n = snprintf(line, sizeof line, "%s %d\n", ok ? reel_ca_fingerprint(ca) : err.msg,
                             ok ? (int)reel_ca_created(ca) : -1);
            if (write(fds[i][1], line, (size_t)n) != n)
                _exit(2);
            reel_ca_free(ca);
            _exit(ok ? 0 : 1);
        }
        close(fds[i][1]);
    }
    char first[256] = "";
    int creators = 0;
    for (int i = 0; i < N; i++) {
        char line[256] = "";
        ssize_t n = read(fds[i][0], line, sizeof line - 1);
        close(fds[i][0]);
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) != 0)
            fail_msg("child %d: %s", i, line);
        assert_true(n > 96);
        line[95] = '\0'; /* fingerprint only */
        creators += line[96] == '1';
        if (i == 0)
            memcpy(first, line, 96);
        else
            assert_string_equal(line, first);
    }
    assert_int_equal(creators, 1);
    reel_ca_t *ca = open_ok(dir);
    assert_string_equal(reel_ca_fingerprint(ca), first);
    reel_ca_free(ca);
    free(dir);
    rm_rf(root);
    free(root);
}

static void test_open_errors(void **state) {
    (void)state;
    reel_err_t err;
    reel_err_clear(&err);
    reel_ca_t *ca = NULL;
    assert_int_equal(reel_ca_open("", &ca, &err), REEL_INVALID);
    char *dir = tmp_dir();
    char *file = reel_asprintf("%s/file", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    char *sub = reel_asprintf("%s/file/reel", dir);
    reel_err_clear(&err);
    assert_int_equal(reel_ca_open(sub, &ca, &err), REEL_IO);
    assert_null(ca);
    reel_ca_free(NULL);
    free(sub);
    free(file);
    rm_rf(dir);
    free(dir);
}

/* ---- leaves ----------------------------------------------------------------- */

typedef struct {
    char *dir;
    reel_ca_t *ca;
} fixture_t;

static int setup_ca(void **state) {
    fixture_t *fx = reel_calloc(1, sizeof *fx);
    fx->dir = tmp_dir();
    fx->ca = open_ok(fx->dir);
    *state = fx;
    return 0;
}

static int teardown_ca(void **state) {
    fixture_t *fx = *state;
    reel_ca_free(fx->ca);
    rm_rf(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static X509 *leaf_ok(reel_ca_t *ca, const char *host) {
    reel_err_t err;
    reel_err_clear(&err);
    X509 *x = NULL;
    reel_rc rc = reel_ca_leaf(ca, host, &x, &err);
    if (rc != REEL_OK)
        fail_msg("reel_ca_leaf(%s): %s", host, reel_err_str(&err));
    assert_non_null(x);
    return x;
}

/* Verifies x against a store holding only the CA, as a TLS server cert. */
static int verify_with_ca(reel_ca_t *ca, X509 *x, const char *host, const char *ip) {
    X509_STORE *store = X509_STORE_new();
    assert_non_null(store);
    assert_int_equal(X509_STORE_add_cert(store, reel_ca_cert(ca)), 1);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
    X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(p, X509_PURPOSE_SSL_SERVER);
    if (host)
        X509_VERIFY_PARAM_set1_host(p, host, 0);
    if (ip)
        X509_VERIFY_PARAM_set1_ip_asc(p, ip);
    int ok = X509_verify_cert(ctx);
    int e = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok == 1 ? 0 : (e ? e : -1);
}

static GENERAL_NAMES *sans_of(X509 *x, int *crit) {
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, crit, NULL);
    assert_non_null(g);
    assert_int_equal(sk_GENERAL_NAME_num(g), 1);
    return g;
}

static void check_leaf_common(reel_ca_t *ca, X509 *x) {
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(
        X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(reel_ca_cert(ca))), 0);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(reel_ca_cert(ca))), 1);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), reel_ca_leaf_key(ca)), 1);
    uint32_t flags = X509_get_extension_flags(x);
    assert_false(flags & EXFLAG_CA);
    assert_true(flags & EXFLAG_BCONS); /* basicConstraints present (CA:FALSE) */
    assert_true(flags & EXFLAG_XKUSAGE);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
    assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(reel_ca_cert(ca));
    assert_non_null(aki);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki, ski), 0);
    assert_int_equal(ASN1_STRING_length(X509_get0_serialNumber(x)), 16);
    assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
    assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
    int days = days_between(X509_get0_notBefore(x), X509_get0_notAfter(x));
    assert_in_range(days, 365, 397);
    /* notBefore about a day ago (clock skew on the client). */
    time_t now = time(NULL);
    ASN1_TIME *t = ASN1_TIME_set(NULL, now);
    int ago = days_between(X509_get0_notBefore(x), t);
    ASN1_TIME_free(t);
    assert_int_equal(ago, 1);
}

static void test_leaf_dns(void **state) {
    fixture_t *fx = *state;
    X509 *x = leaf_ok(fx->ca, "WWW.Example.COM");
    check_leaf_common(fx->ca, x);
    char *cn = name_entry(X509_get_subject_name(x), NID_commonName);
    assert_string_equal(cn, "www.example.com");
    free(cn);
    int crit = -1;
    GENERAL_NAMES *g = sans_of(x, &crit);
    GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, 0);
    assert_int_equal(gn->type, GEN_DNS);
    assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.dNSName), "www.example.com");
    GENERAL_NAMES_free(g);
    assert_int_equal(X509_check_host(x, "www.example.com", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "other.example.com", 0, 0, NULL), 0);
    assert_int_equal(verify_with_ca(fx->ca, x, "www.example.com", NULL), 0);
    assert_int_equal(verify_with_ca(fx->ca, x, "evil.com", NULL), X509_V_ERR_HOSTNAME_MISMATCH);
    X509_free(x);

    /* Underscores occur in real names. */
    x = leaf_ok(fx->ca, "my_host.internal");
    X509_free(x);
}

static void test_leaf_verify_other_ca_fails(void **state) {
    fixture_t *fx = *state;
    char *dir = tmp_dir();
    reel_ca_t *other = open_ok(dir);
    X509 *x = leaf_ok(other, "example.com");
    int e = verify_with_ca(fx->ca, x, "example.com", NULL);
    assert_true(e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT);
    X509_free(x);
    reel_ca_free(other);
    rm_rf(dir);
    free(dir);
}

static void test_leaf_ip(void **state) {
    fixture_t *fx = *state;
    struct {
        const char *host, *ip;
        int len;
    } cases[] = {{"127.0.0.1", "127.0.0.1", 4},
                 {"::1", "::1", 16},
                 {"[::1]", "::1", 16},
                 {"2001:DB8::5", "2001:db8::5", 16}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509 *x = leaf_ok(fx->ca, cases[i].host);
        check_leaf_common(fx->ca, x);
        GENERAL_NAMES *g = sans_of(x, NULL);
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, 0);
        assert_int_equal(gn->type, GEN_IPADD);
        assert_int_equal(ASN1_STRING_length(gn->d.iPAddress), cases[i].len);
        GENERAL_NAMES_free(g);
        assert_int_equal(X509_check_ip_asc(x, cases[i].ip, 0), 1);
        assert_int_equal(X509_check_ip_asc(x, "10.0.0.1", 0), 0);
        assert_int_equal(verify_with_ca(fx->ca, x, NULL, cases[i].ip), 0);
        X509_free(x);
    }
    /* Same address with and without brackets: one cache entry. */
    X509 *a = leaf_ok(fx->ca, "::1"), *b = leaf_ok(fx->ca, "[::1]");
    assert_ptr_equal(a, b);
    X509_free(a);
    X509_free(b);
}

static void test_leaf_long_name(void **state) {
    fixture_t *fx = *state;
    char host[201];
    for (int i = 0; i < 200; i++)
        host[i] = (i % 40 == 39 && i < 199) ? '.' : 'a';
    host[200] = '\0';
    X509 *x = leaf_ok(fx->ca, host);
    /* past a CN's 64 characters: no subject (not the name cut into
     * another), and the SAN, critical then, names the host */
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    int crit = -1;
    GENERAL_NAMES *g = sans_of(x, &crit);
    assert_int_equal(crit, 1);
    GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, 0);
    assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.dNSName), host);
    GENERAL_NAMES_free(g);
    assert_int_equal(verify_with_ca(fx->ca, x, host, NULL), 0);
    X509_free(x);
    /* a name in its absolute form is the same name (and certificate) */
    X509 *a = leaf_ok(fx->ca, "Example.COM."), *b = leaf_ok(fx->ca, "example.com");
    assert_ptr_equal(a, b);
    g = sans_of(a, NULL);
    assert_string_equal((const char *)ASN1_STRING_get0_data(sk_GENERAL_NAME_value(g, 0)->d.dNSName),
                        "example.com");
    GENERAL_NAMES_free(g);
    X509_free(a);
    X509_free(b);
    /* 63 bytes is the longest label */
    char label[80];
    memset(label, 'b', 63);
    snprintf(label + 63, sizeof label - 63, ".test");
    X509_free(leaf_ok(fx->ca, label));
}

static void test_leaf_invalid(void **state) {
    fixture_t *fx = *state;
    char longhost[300];
    memset(longhost, 'a', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    char longlabel[80];
    memset(longlabel, 'b', 64);
    snprintf(longlabel + 64, sizeof longlabel - 64, ".test");
    const char *bad[] = {"",
                         "a b",
                         "example.com,DNS:evil.com",
                         "a/b",
                         "[]",
                         "x\ny",
                         "fe80::1%eth0",
                         "*.example.com",
                         "a..b",
                         ".example.com",
                         "example.com..",
                         ".",
                         longlabel,
                         longhost};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        X509 *x = (X509 *)1;
        assert_int_equal(reel_ca_leaf(fx->ca, bad[i], &x, &err), REEL_INVALID);
        assert_null(x);
        assert_non_null(strstr(err.msg, "cannot make a certificate"));
    }
    reel_err_t err;
    reel_err_clear(&err);
    X509 *x = NULL;
    assert_int_equal(reel_ca_leaf(fx->ca, NULL, &x, &err), REEL_INVALID);
}

/* The error shows the host (cut with "..." when long, one line) and says
 * what is wrong with it. */
static void test_leaf_invalid_reasons(void **state) {
    fixture_t *fx = *state;
    char longhost[300];
    memset(longhost, 'a', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    char longlabel[80];
    memset(longlabel, 'b', 64);
    snprintf(longlabel + 64, sizeof longlabel - 64, ".test");
    char longshown[128];
    snprintf(longshown, sizeof longshown, "\"%.80s...\": name over 253 bytes", longhost);
    char labelshown[120];
    snprintf(labelshown, sizeof labelshown, "\"%s\": label over 63 bytes", longlabel);
    const struct {
        const char *host, *msg;
    } cases[] = {
        {longlabel, labelshown},
        {longhost, longshown},
        {"", "\"\": empty name"},
        {"a..b", "\"a..b\": empty label"},
        {"example.com..", "\"example.com..\": empty label"},
        {"*.example.com", "\"*.example.com\": a wildcard is not a host"},
        {"x\ny", "\"x?y\": characters other than letters, digits"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reel_err_t err;
        reel_err_clear(&err);
        X509 *x = NULL;
        assert_int_equal(reel_ca_leaf(fx->ca, cases[i].host, &x, &err), REEL_INVALID);
        if (strstr(err.msg, cases[i].msg) == NULL)
            fail_msg("host %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].msg);
    }
}

static void test_lru(void **state) {
    (void)state;
    char *dir = tmp_dir();
    reel_ca_t *ca = open_ok(dir);
    reel_ca_set_cache_capacity(ca, 3);
    X509 *a = leaf_ok(ca, "a.test"), *b = leaf_ok(ca, "b.test"), *c = leaf_ok(ca, "c.test");
    assert_int_equal(reel_ca_cache_size(ca), 3);
    X509 *a2 = leaf_ok(ca, "A.TEST"); /* hit, and a becomes most recent */
    assert_ptr_equal(a, a2);
    size_t minted = 0, hits = 0;
    reel_ca_cache_stats(ca, &minted, &hits);
    assert_int_equal(minted, 3);
    assert_int_equal(hits, 1);

    X509 *d = leaf_ok(ca, "d.test"); /* evicts b, the least recently used */
    assert_int_equal(reel_ca_cache_size(ca), 3);
    X509 *c2 = leaf_ok(ca, "c.test");
    X509 *a3 = leaf_ok(ca, "a.test");
    assert_ptr_equal(c, c2);
    assert_ptr_equal(a, a3);
    X509 *b2 = leaf_ok(ca, "b.test"); /* minted again (evicts d) */
    assert_ptr_not_equal(b, b2);
    reel_ca_cache_stats(ca, &minted, &hits);
    assert_int_equal(minted, 5);
    assert_int_equal(hits, 3);
    /* The evicted leaf we still hold stays usable. */
    char *cn = name_entry(X509_get_subject_name(b), NID_commonName);
    assert_string_equal(cn, "b.test");
    free(cn);
    X509 *d2 = leaf_ok(ca, "d.test");
    assert_ptr_not_equal(d, d2);

    /* Shrinking evicts. */
    reel_ca_set_cache_capacity(ca, 1);
    assert_int_equal(reel_ca_cache_size(ca), 1);
    X509 *d3 = leaf_ok(ca, "d.test");
    assert_ptr_equal(d2, d3);

    /* Many hosts: the cache stays at capacity and grows its table. */
    reel_ca_set_cache_capacity(ca, 300);
    for (int i = 0; i < 500; i++) {
        char h[32];
        snprintf(h, sizeof h, "h%d.test", i);
        X509_free(leaf_ok(ca, h));
    }
    assert_int_equal(reel_ca_cache_size(ca), 300);
    for (int i = 200; i < 500; i++) { /* the newest 300 are all hits */
        char h[32];
        snprintf(h, sizeof h, "h%d.test", i);
        X509_free(leaf_ok(ca, h));
    }
    size_t m2 = 0, h2 = 0;
    reel_ca_cache_stats(ca, &m2, &h2);
    assert_int_equal(m2, minted + 1 + 500);
    assert_int_equal(h2, hits + 1 + 300);

    X509 *all[] = {a, b, c, a2, d, c2, a3, b2, d2, d3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        X509_free(all[i]);
    reel_ca_free(ca);
    rm_rf(dir);
    free(dir);
}

/* Writes a CA (certificate and key) valid from from_days to to_days
 * around now into dir, as reel_ca_open finds it. */
static void write_ca_bc(const char *dir, int from_days, int to_days, const char *bc) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    assert_non_null(x);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), (long)from_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), (long)to_days * 86400);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"old CA", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints, bc);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    char *cp = reel_asprintf("%s/%s", dir, REEL_CA_CERT_FILE);
    char *kp = reel_asprintf("%s/%s", dir, REEL_CA_KEY_FILE);
    FILE *f = fopen(kp, "w");
    assert_non_null(f);
    fchmod(fileno(f), 0600);
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    f = fopen(cp, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    free(cp);
    free(kp);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void write_ca(const char *dir, int from_days, int to_days) {
    write_ca_bc(dir, from_days, to_days, "critical,CA:TRUE");
}

/* A certificate that is not a CA's (CA:FALSE) with its key: refused at
 * open. It was taken, and every client then refused its leaves. */
static void test_not_a_ca(void **state) {
    (void)state;
    char *dir = tmp_dir();
    write_ca_bc(dir, -1, 30, "critical,CA:FALSE");
    reel_err_t err;
    reel_err_clear(&err);
    reel_ca_t *c = NULL;
    assert_int_equal(reel_ca_open(dir, &c, &err), REEL_CORRUPT);
    assert_null(c);
    assert_non_null(strstr(err.msg, "is not a CA certificate (no basicConstraints CA:TRUE"));
    rm_rf(dir);
    free(dir);
}

/* An expired CA: a warning that says so, and no leaf (one clamped to the
 * CA's end would end before it begins). */
static void test_expired_ca(void **state) {
    (void)state;
    char *dir = tmp_dir();
    write_ca(dir, -400, -2);
    reel_ca_t *ca = open_ok(dir);
    const char *w = reel_ca_warning(ca);
    assert_non_null(w);
    assert_non_null(strstr(w, "expired on 20"));
    assert_non_null(strstr(w, "move it and its key"));
    reel_err_t err;
    reel_err_clear(&err);
    X509 *x = (X509 *)1;
    assert_int_equal(reel_ca_leaf(ca, "example.com", &x, &err), REEL_INVALID);
    assert_null(x);
    assert_non_null(strstr(err.msg, "cannot make a certificate: the reel CA "));
    assert_non_null(strstr(err.msg, " expired on 20"));
    reel_ca_free(ca);
    rm_rf(dir);
    free(dir);
}

/* A CA that expires within 30 days: a warning, and leaves that end with it
 * (and after they begin). */
static void test_expiring_ca(void **state) {
    (void)state;
    char *dir = tmp_dir();
    write_ca(dir, -400, 10);
    reel_ca_t *ca = open_ok(dir);
    const char *w = reel_ca_warning(ca);
    assert_non_null(w);
    assert_non_null(strstr(w, "expires on 20"));
    assert_true(strstr(w, "(in 9 days)") || strstr(w, "(in 10 days)"));
    X509 *x = leaf_ok(ca, "example.com");
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(reel_ca_cert(ca))),
                     0);
    assert_true(ASN1_TIME_compare(X509_get0_notBefore(x), X509_get0_notAfter(x)) < 0);
    X509_free(x);
    reel_ca_free(ca);
    /* with a loose key mode too: one warning a line */
    char *kp = reel_asprintf("%s/%s", dir, REEL_CA_KEY_FILE);
    assert_int_equal(chmod(kp, 0644), 0);
    free(kp);
    ca = open_ok(dir);
    w = reel_ca_warning(ca);
    assert_non_null(strstr(w, "has mode 0644"));
    assert_non_null(strstr(w, "\nthe reel CA "));
    reel_ca_free(ca);
    /* a CA good for longer: no warning */
    rm_rf(dir);
    free(dir);
    dir = tmp_dir();
    write_ca(dir, -1, 60);
    ca = open_ok(dir);
    assert_null(reel_ca_warning(ca));
    reel_ca_free(ca);
    rm_rf(dir);
    free(dir);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_mint_time(void **state) {
    (void)state;
    char *dir = tmp_dir();
    double t0 = now_s();
    reel_ca_t *ca = open_ok(dir);
    double t1 = now_s();
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        char h[32];
        snprintf(h, sizeof h, "host%d.example", i);
        X509_free(leaf_ok(ca, h));
    }
    double t2 = now_s();
    for (int i = 0; i < N; i++) {
        char h[32];
        snprintf(h, sizeof h, "host%d.example", i);
        X509_free(leaf_ok(ca, h));
    }
    double t3 = now_s();
    print_message("CA create+open: %.2f ms; leaf mint: %.1f us each; cache hit: %.2f us each\n",
                  (t1 - t0) * 1e3, (t2 - t1) / N * 1e6, (t3 - t2) / N * 1e6);
    reel_ca_free(ca);
    rm_rf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_loose_key_mode),
        cmocka_unit_test(test_cert_without_key),
        cmocka_unit_test(test_key_without_cert),
        cmocka_unit_test(test_mismatched_key),
        cmocka_unit_test(test_concurrent_first_use),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test_setup_teardown(test_leaf_dns, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_leaf_verify_other_ca_fails, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_leaf_ip, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_leaf_long_name, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_leaf_invalid, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_leaf_invalid_reasons, setup_ca, teardown_ca),
        cmocka_unit_test(test_expired_ca),
        cmocka_unit_test(test_not_a_ca),
        cmocka_unit_test(test_expiring_ca),
        cmocka_unit_test(test_lru),
        cmocka_unit_test(test_mint_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
