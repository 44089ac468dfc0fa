/* Configuration: the option table, validation into canonical form, the
 * layers (default < user file < session overlay < command line) and the
 * overlay's storage in session.db. See config.h. */
#include "session/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/mem.h"
#include "base/noproxy.h"
#include "session/maprule.h"
#include "base/dnsmap.h"
#include "session/index.h"
#include "session/journal.h"
#include "session/session.h"
#include "session/spool.h"

/* Largest user file read, in bytes. */
#define USER_FILE_MAX (1u << 20)
/* Longest value shown in an error message before it is cut with "...". */
#define SHOW_MAX 64

static reel_rc check_listen_host(const char *v, reel_err_t *err);
static reel_rc check_regex(const char *v, reel_err_t *err);
static reel_rc check_proxyauth(const char *v, reel_err_t *err);
static reel_rc check_upstream_proxy(const char *v, reel_err_t *err);
static reel_rc check_upstream_proxyauth(const char *v, reel_err_t *err);
static reel_rc check_no_proxy(const char *v, reel_err_t *err);
static reel_rc check_reverse_to(const char *v, reel_err_t *err);
static reel_rc check_insecure_hosts(const char *v, reel_err_t *err);
static reel_rc check_map_rule(const char *v, reel_err_t *err);
static reel_rc check_hostports(const char *v, reel_err_t *err);

#define KIB INT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

static const reel_option_t options[] = {
    {"listen_host", REEL_OPT_STRING, "127.0.0.1", "address the proxy listens on", NULL, 0, 0,
     check_listen_host},
    {"listen_port", REEL_OPT_INT, "8080", "TCP port the proxy listens on", NULL, 0, 65535, NULL},
    {"body_limit", REEL_OPT_SIZE, "67108864",
     "bytes of each body stored in the spool; the rest is counted", NULL, 0, INT64_C(1) << 62,
     NULL},
    {"body_index_max", REEL_OPT_SIZE, "0",
     "bytes of each decoded text body put in the body search index (reel search, ~b WORDS "
     "answered from an index); the rest of a longer body is found by reading the spool. 0 (the "
     "default) = no index: it costs ingest CPU and disk (docs/filters.md); 1m is a good value. "
     "Read from the user file and the session overlay (not --set) when recording starts and "
     "by reel repair",
     NULL, 0, INT64_C(1) << 40, NULL},
    {"ignore_hosts", REEL_OPT_LIST, "[]",
     "regexes of host:port passed through uninspected (not decrypted, not recorded)", NULL, 0, 0,
     check_regex},
    {"upstream_cert_verify", REEL_OPT_BOOL, "true", "verify the certificates of upstream servers",
     NULL, 0, 0, NULL},
    {"intercept_starttls", REEL_OPT_BOOL, "true",
     "intercept the TLS an SMTP, IMAP, POP3 or FTP session in a plain TCP tunnel starts with "
     "STARTTLS (STLS, AUTH TLS), or a PostgreSQL client with its SSLRequest: reel's leaf to "
     "the client, TLS verified to the server, the messages after it recorded decrypted; "
     "false: relayed as they come",
     NULL, 0, 0, NULL},
    {"upstream_insecure_hosts", REEL_OPT_STRING, "",
     "origins whose certificates reel does not verify although upstream_cert_verify is on, "
     "named as upstream_no_proxy names hosts (comma-separated: a name, which covers the names "
     "under it; an address; a range such as 10.0.0.0/8); their flows say unverified, and what "
     "the check would have found; empty = none",
     NULL, 0, 0, check_insecure_hosts},
    {"http2", REEL_OPT_BOOL, "true",
     "speak HTTP/2 with clients that offer it (ALPN h2 on intercepted TLS, the h2c "
     "prior-knowledge preface on plain HTTP), and with their origins when those choose h2 "
     "(ALPN mirrored); false: HTTP/1.1 on both sides",
     NULL, 0, 0, NULL},
    {"h2c_upstreams", REEL_OPT_STRING, "",
     "plain-HTTP origins (host:port, comma-separated) that get prior-knowledge HTTP/2 (h2c) "
     "from reel, whatever the client speaks; empty = none",
     NULL, 0, 0, check_hostports},
    {"upstream_trusted_ca", REEL_OPT_STRING, "",
     "extra CA file (PEM) for upstream verification; empty = none", NULL, 0, 0, NULL},
    {"upstream_client_certs", REEL_OPT_STRING, "",
     "client certificates for origins that ask for one (mutual TLS): a PEM file with the "
     "certificate, its chain and its private key, or a PKCS#12 file (.p12, .pfx), presented "
     "to every origin that asks, or a directory of such files named for the origins they are "
     "for (api.example.com.pem, api.example.com.p12); an encrypted key's passphrase is the "
     "first line of FILE.pass beside it; flows record it; empty = none",
     NULL, 0, 0, NULL},
    {"capture", REEL_OPT_ENUM, "on",
     "on: record; if the disk falls behind for longer than capture_buffer lasts, store some "
     "bodies in part or not at all (their flows say how many bytes; one warning); lossless: "
     "slow traffic down instead; off: record nothing",
     "on|off|lossless", 0, 0, NULL},
    {"capture_buffer", REEL_OPT_SIZE, "268435456",
     "memory for records waiting for the disk, to absorb bursts; with capture=on, body bytes "
     "that do not fit in 7/8 of it are not stored (their flows say how many)",
     NULL, MIB, 64 * GIB, NULL},
    {"fsync", REEL_OPT_ENUM, "block",
     "durability of spool writes: block: a block counts as recorded once an fdatasync covers "
     "it (one covers every block written meanwhile); interval: every fsync_interval_ms; never",
     "block|interval|never", 0, 0, NULL},
    {"fsync_interval_ms", REEL_OPT_INT, "1000", "milliseconds between fsyncs when fsync=interval",
     NULL, 10, 60000, NULL},
    {"segment_size", REEL_OPT_SIZE, "134217728", "size at which a spool segment is rolled over",
     NULL, MIB, 4 * GIB, NULL},
    {"spool_block_size", REEL_OPT_SIZE, "4194304",
     "records a spool frame holds before it is written (or 100 ms after its first): larger "
     "frames compress better (4 MiB: about 15% less on disk than 256 KiB); smaller ones cost "
     "less memory and decompress faster when one flow is read; at most a quarter of "
     "segment_size is used",
     NULL, 64 * KIB, 4 * MIB, NULL},
    {"zstd_level", REEL_OPT_INT, "3",
     "zstd level of the spool's blocks: higher levels store less and cost more CPU per "
     "recorded byte (2: about 9% larger than 3, for 20% less CPU compressing)",
     NULL, 1, 19, NULL},
    {"retention_max_bytes", REEL_OPT_SIZE, "0",
     "drop the oldest spool segments (and their flows) while the spool is larger than this; "
     "segments holding open, marked, tagged or annotated flows are kept (0 = no limit)",
     NULL, 0, INT64_C(1) << 62, NULL},
    {"retention_max_age", REEL_OPT_INT, "0",
     "drop spool segments (and their flows) last written more than this many seconds ago; "
     "segments holding open, marked, tagged or annotated flows are kept (0 = no limit)",
     NULL, 0, INT64_C(1) << 40, NULL},
    {"retention_max_flows", REEL_OPT_INT, "0",
     "drop the oldest spool segments (and their flows) while the session holds more flows; "
     "segments holding open, marked, tagged or annotated flows are kept (0 = no limit)",
     NULL, 0, INT64_C(1) << 62, NULL},
    {"on_segment_closed", REEL_OPT_STRING, "",
     "shell command run with the path of each spool segment once it is closed (to ship it "
     "elsewhere), off the capture path; its failures are logged (empty = none)",
     NULL, 0, 0, NULL},
    {"proxyauth", REEL_OPT_STRING, "",
     "\"user:pass\" clients must send as proxy authentication (HTTP Basic, or SOCKS5's "
     "username and password); empty = none",
     NULL, 0, 0, check_proxyauth},
    {"upstream_proxy", REEL_OPT_STRING, "",
     "an HTTP proxy (host:port or http://host:port; https://host:port to speak TLS to the "
     "proxy itself, verified as an origin is) or a SOCKS5 one (socks5://host:port) that "
     "reel's own connections to origins go through: to an HTTP proxy plain-HTTP requests are "
     "sent as they came (absolute form) and every other connection is a tunnel it opens with "
     "CONNECT; through a SOCKS5 proxy every connection is a tunnel, the proxy resolving names "
     "(socks5:// as socks5h://); empty = none (direct)",
     NULL, 0, 0, check_upstream_proxy},
    {"upstream_proxyauth", REEL_OPT_STRING, "",
     "\"user:pass\" reel sends to upstream_proxy as its proxy authentication (HTTP Basic, or "
     "SOCKS5's username and password); empty = none",
     NULL, 0, 0, check_upstream_proxyauth},
    {"reverse_to", REEL_OPT_STRING, "",
     "an origin (http://host[:port] or https://host[:port]) reel is a reverse proxy for: every "
     "request it receives goes there, whatever it names, and clients talk to reel as to that "
     "server, in plain HTTP or TLS (a leaf certificate from reel's CA for the name they ask "
     "for); empty = a forward proxy (the default)",
     NULL, 0, 0, check_reverse_to},
    {"transparent", REEL_OPT_BOOL, "false",
     "also take connections the OS redirected to reel (iptables or nftables REDIRECT, DNAT): "
     "each goes to the address its client connected to (SO_ORIGINAL_DST), intercepted as a "
     "CONNECT tunnel there would be; connections made to reel's own address are served as "
     "before. Not with reverse_to",
     NULL, 0, 0, NULL},
    {"upstream_no_proxy", REEL_OPT_STRING, "",
     "hosts reached directly although upstream_proxy is set, as curl's NO_PROXY names them "
     "(comma-separated: a name, which covers the names under it; an address; a range such as "
     "10.0.0.0/8; * for all); names are not resolved; empty = none",
     NULL, 0, 0, check_no_proxy},
    {"idle_timeout", REEL_OPT_INT, "300", "seconds a connection may stay idle before it is closed",
     NULL, 1, 86400, NULL},
    {"head_timeout", REEL_OPT_INT, "30",
     "seconds allowed to receive a complete request or response head", NULL, 1, 3600, NULL},
    /* at most REEL_SPOOL_HEAD_MAX: a head is recorded as one spool record,
     * and a larger one could not be (spool.h) */
    {"max_head_size", REEL_OPT_SIZE, "65536",
     "largest request head (or request trailer section) accepted, in bytes on the wire; a "
     "larger one is answered 431. At most 248 KiB, so that every head accepted fits in one "
     "spool record (response heads are held to 64 KiB: 502 beyond)",
     NULL, KIB, REEL_SPOOL_HEAD_MAX, NULL},
    {"upstream_timeout", REEL_OPT_INT, "60",
     "seconds an upstream server may take to connect, to read the request or to send the next "
     "bytes of its response; then 504, or the client connection is cut once the response has "
     "started",
     NULL, 1, 86400, NULL},
    {"workers", REEL_OPT_INT, "0",
     "event loops (threads) the proxy runs, each accepting connections on the listen address "
     "(SO_REUSEPORT) and recording into the same session; 0 = one per core. Read when "
     "recording starts",
     NULL, 0, 1024, NULL},
    {"max_client_conns", REEL_OPT_INT, "0",
     "open connections allowed from one client address; more are answered 429 and closed "
     "(0 = no limit)",
     NULL, 0, 1000000, NULL},
    {"map_remote", REEL_OPT_LIST, "[]",
     "rules sending requests to another URL than the one their client asked for, each "
     "\"|regex|replacement\" (the first character separates; the first rule whose PCRE2 regex "
     "matches the request's URL applies, $1 and ${name} in the replacement), or "
     "\"|filter|regex|replacement\" for the requests a flow filter matches (~m POST ...); the "
     "flow records the client's URL and where reel sent it (mapped_to)",
     NULL, 0, 0, check_map_rule},
    {"map_local", REEL_OPT_LIST, "[]",
     "rules answering requests from local files instead of their origin, each "
     "\"|regex|/path\" or \"|filter|regex|/path\" (the first rule whose PCRE2 regex matches "
     "the request's URL, and whose flow filter the request, applies; "
     "a directory serves the file the rest of the URL, or the regex's first group, names in "
     "it, index.html for a directory; none: 404; byte ranges and conditional requests are "
     "answered); reel's answer is marked generated, naming the file (local_file)",
     NULL, 0, 0, reel_map_local_check},
    {"block_list", REEL_OPT_LIST, "[]",
     "rules answering requests with a status instead of sending them on, each \"|filter|status\" "
     "(the first character separates; the first rule whose flow filter matches the request "
     "applies: ~d telemetry\\.example, ~m DELETE ...; status 200..599, or 444 to close the "
     "connection without an answer); reel's answer is marked generated, naming the rule "
     "(blocked_by)",
     NULL, 0, 0, reel_block_rule_check},
    {"modify_headers", REEL_OPT_LIST, "[]",
     "rules setting or removing a header field in what reel sends on, each \"|name|value\" or "
     "\"|filter|name|value\" (the first character separates; every rule whose flow filter "
     "matches applies, to requests and to their responses: ~q the request only, ~s the "
     "response, ~c 404 ...; the fields of that name are removed and the value added, an empty "
     "value only removes); the flow records the heads as they came and each change (modified)",
     NULL, 0, 0, reel_header_rule_check},
    {"modify_body", REEL_OPT_LIST, "[]",
     "rules replacing text in the bodies of requests and responses reel passes on, each "
     "\"|regex|replacement\" or \"|filter|regex|replacement\" (every rule whose flow filter "
     "matches the request, or the response, applies, in order; ~q: requests only, ~s: "
     "responses only; every match of its PCRE2 regex replaced, $1 and ${name} in the "
     "replacement; a body up to 8 MiB, decoded from its Content-Encoding first; at most 64 "
     "rules); the flow records each body as it came, what the rules did and the first 256 KiB "
     "of the body as it went (body_edit)",
     NULL, 0, 0, reel_body_rule_check},
    {"dns_overrides", REEL_OPT_LIST, "[]",
     "host names reel connects to at an address of yours instead of their DNS answer, each "
     "\"NAME[:PORT]=ADDRESS[:PORT]\" (api.example.com=10.0.0.5, *.example.com=::1 for the names "
     "under it, api.example.com:443=[::1]:8443 for that port only and to another; the first "
     "that matches applies); the request's Host, the TLS server name and the certificate check "
     "keep the name; not through upstream_proxy, which resolves names itself; the flow's "
     "server_conn names the entry (dns_override)",
     NULL, 0, 0, reel_dns_override_check},
    {"redact_headers", REEL_OPT_LIST, "[]",
     "reel export --redact: more header names whose whole value is replaced (beside "
     "Authorization, Cookie, ...)",
     NULL, 0, 0, NULL},
    {"redact_keys", REEL_OPT_LIST, "[]",
     "reel export --redact: more key words; query, form and JSON keys and header names "
     "containing one (any case) have their values replaced",
     NULL, 0, 0, NULL},
    {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
};

#define NOPT (sizeof options / sizeof options[0] - 1)

struct reel_config {
    char *value[NOPT];
    reel_layer layer[NOPT];
};

const char *reel_layer_name(reel_layer l) {
    switch (l) {
    case REEL_LAYER_DEFAULT:
        return "default";
    case REEL_LAYER_USER:
        return "user";
    case REEL_LAYER_SESSION:
        return "session";
    case REEL_LAYER_CLI:
        return "cli";
    }
    return "unknown";
}

const reel_option_t *reel_options(void) {
    return options;
}

static int option_index(const char *name) {
    for (size_t i = 0; i < NOPT; i++)
        if (strcmp(options[i].name, name) == 0)
            return (int)i;
    return -1;
}

const reel_option_t *reel_option_find(const char *name) {
    int i = option_index(name);
    return i < 0 ? NULL : &options[i];
}

static reel_rc unknown_option(const char *name, reel_err_t *err);

const reel_option_t *reel_option_lookup(const char *name, reel_err_t *err) {
    const reel_option_t *o = reel_option_find(name);
    if (o == NULL)
        unknown_option(name, err);
    return o;
}

/* ---- messages ---- */

/* Copies v into out for an error message: control characters escaped, cut
 * with "..." after SHOW_MAX bytes (at a UTF-8 character boundary). */
static const char *show(const char *v, char out[static SHOW_MAX + 8]) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (o >= SHOW_MAX && ((*p & 0xC0) != 0x80 || o >= SHOW_MAX + 3)) {
            memcpy(out + o, "...", 4);
            return out;
        }
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(out + o, 5, "\\x%02x", *p);
            o += 4;
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return out;
}

/* Formats n as "1048576 (1 MiB)" (or "1 MiB" when short) when it is a whole
 * number of KiB or more, else as "1000". */
static const char *size_text(int64_t n, int short_form, char out[static 48]) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = -1;
    int64_t v = n;
    while (v != 0 && v % 1024 == 0 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(out, 48, "%lld", (long long)n);
    else if (short_form)
        snprintf(out, 48, "%lld %s", (long long)v, units[u]);
    else
        snprintf(out, 48, "%lld (%lld %s)", (long long)n, (long long)v, units[u]);
    return out;
}

char *reel_option_describe(const reel_option_t *o) {
    char lo[48], hi[48];
    switch (o->type) {
    case REEL_OPT_BOOL:
        return reel_strdup("true|false");
    case REEL_OPT_INT:
        return reel_asprintf("integer %lld..%lld", (long long)o->min, (long long)o->max);
    case REEL_OPT_SIZE:
        return reel_asprintf("size %s..%s", size_text(o->min, 1, lo), size_text(o->max, 1, hi));
    case REEL_OPT_STRING:
        return reel_strdup("text");
    case REEL_OPT_LIST:
        return reel_strdup("list (JSON array or comma-separated)");
    case REEL_OPT_ENUM:
        return reel_strdup(o->choices);
    }
    return reel_strdup("?");
}

/* Damerau-Levenshtein distance (optimal string alignment) of two short
 * strings, capped: anything above 3 is reported as 3. */
static int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63)
        return 3;
    int d[64][64];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m] > 3 ? 3 : d[n][m];
}

/* Is option name `opt` near what the user typed (`typed`, already lowered
 * with '-' turned into '_')? Within edit distance 2 and as close as the
 * closest option (`best`), or one name contains the other. */
static int is_near(const char *typed, const char *opt, int best) {
    int d = edit_distance(typed, opt);
    if (d <= 2 && d == best)
        return 1;
    if (strlen(typed) >= 3 && strstr(opt, typed) != NULL)
        return 1;
    return strstr(typed, opt) != NULL;
}

static reel_rc unknown_option(const char *name, reel_err_t *err) {
    char shown[SHOW_MAX + 8];
    char typed[64];
    size_t n = 0;
    for (; name[n] && n < sizeof typed - 1; n++)
        typed[n] = name[n] == '-' ? '_' : (char)tolower((unsigned char)name[n]);
    typed[n] = '\0';
    reel_buf_t b;
    reel_buf_init(&b, 0);
    int near = 0, best = 3;
    for (size_t i = 0; i < NOPT; i++) {
        int d = edit_distance(typed, options[i].name);
        best = d < best ? d : best;
    }
    for (size_t i = 0; i < NOPT; i++) {
        if (name[n] == '\0' && is_near(typed, options[i].name, best)) {
            reel_buf_printf(&b, "%s%s", near ? ", " : "", options[i].name);
            near++;
        }
    }
    if (near) {
        reel_err_set(err, REEL_NOTFOUND, "unknown option '%s'; did you mean: %s?",
                     show(name, shown), (char *)b.data);
    } else {
        for (size_t i = 0; i < NOPT; i++)
            reel_buf_printf(&b, "%s%s", i ? ", " : "", options[i].name);
        reel_err_set(err, REEL_NOTFOUND, "unknown option '%s'; valid options: %s",
                     show(name, shown), (char *)b.data);
    }
    reel_buf_free(&b);
    return REEL_NOTFOUND;
}

/* "invalid value 'v' for name: " prefix; proxyauth values are not echoed. */
static reel_rc bad_value(reel_err_t *err, const reel_option_t *o, const char *v, const char *what,
                         const char *detail) {
    char shown[SHOW_MAX + 8];
    if (o->check == check_proxyauth || o->check == check_upstream_proxyauth)
        return reel_err_set(err, REEL_INVALID, "invalid value for %s: %s%s", o->name, what,
                            detail ? detail : "");
    return reel_err_set(err, REEL_INVALID, "invalid value '%s' for %s: %s%s", show(v, shown),
                        o->name, what, detail ? detail : "");
}

/* ---- per-option checks ---- */

/* A host name as RFC 1123 2.1 has them: dot-separated labels of letters,
 * digits and hyphens (not first or last; and _, found in practice), 1..63
 * bytes, 253 in all, the last not all digits (that would be an IPv4
 * address, and inet_pton said it is not one). */
static bool is_host_name(const char *v) {
    size_t n = strlen(v), label = 0;
    bool digits = true, ok = n > 0 && n <= 253;
    for (size_t i = 0; ok && i <= n; i++) {
        char ch = v[i];
        if (ch == '.' || ch == '\0') {
            ok = label > 0 && v[i - 1] != '-';
            if (ch == '\0' && digits)
                ok = false;
            label = 0;
            digits = true;
            continue;
        }
        if (!isalnum((unsigned char)ch) && ch != '-' && ch != '_')
            return false;
        if (ch == '-' && label == 0)
            return false;
        if (!isdigit((unsigned char)ch))
            digits = false;
        if (++label > 63)
            return false;
    }
    return ok;
}

static reel_rc check_listen_host(const char *v, reel_err_t *err) {
    char shown[SHOW_MAX + 8];
    unsigned char addr[16];
    char v6[64];
    const char *zone = strchr(v, '%'); /* fe80::1%eth0: a link-local one's interface */
    if (zone && (size_t)(zone - v) < sizeof v6 && zone[1] && strlen(zone + 1) < 16 &&
        strspn(zone + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
            strlen(zone + 1)) {
        memcpy(v6, v, (size_t)(zone - v));
        v6[zone - v] = '\0';
        if (inet_pton(AF_INET6, v6, addr) == 1)
            return REEL_OK;
    }
    if (inet_pton(AF_INET, v, addr) == 1 || inet_pton(AF_INET6, v, addr) == 1 || is_host_name(v))
        return REEL_OK;
    return reel_err_set(err, REEL_INVALID,
                        "invalid value '%s' for listen_host: expected a host name or IP "
                        "address (0.0.0.0 or :: for every interface)",
                        show(v, shown));
}

/* "host:port, host:port" (h2c_upstreams): each item names a port, as the
 * proxy compares "host:port" whole. */
static reel_rc check_hostports(const char *v, reel_err_t *err) {
    for (const char *at = v; *at;) {
        while (*at == ',' || *at == ' ')
            at++;
        size_t n = strcspn(at, ", ");
        if (n == 0)
            break;
        const char *colon = NULL;
        for (size_t i = 0; i < n; i++)
            if (at[i] == ':')
                colon = at + i;
        long port = 0;
        size_t digits = colon ? (size_t)(at + n - colon - 1) : 0;
        for (size_t i = 1; i <= digits && port <= 65535; i++)
            port = colon[i] >= '0' && colon[i] <= '9' ? port * 10 + (colon[i] - '0') : 70000;
        if (colon == NULL || colon == at || digits == 0 || port < 1 || port > 65535)
            return reel_err_set(err, REEL_INVALID,
                                "invalid value for h2c_upstreams: '%.*s' is not host:port", (int)n,
                                at);
        at += n;
    }
    return REEL_OK;
}

static reel_rc check_regex(const char *v, reel_err_t *err) {
    int code = 0;
    PCRE2_SIZE off = 0;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)v, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &off, NULL);
    if (re != NULL) {
        pcre2_code_free(re);
        return REEL_OK;
    }
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
        snprintf((char *)msg, sizeof msg, "error %d", code);
    char shown[SHOW_MAX + 8];
    return reel_err_set(err, REEL_INVALID,
                        "invalid value for ignore_hosts: bad regex '%s': %s at offset %zu",
                        show(v, shown), (const char *)msg, (size_t)off);
}

static reel_rc check_userpass(const char *name, const char *v, reel_err_t *err) {
    if (v[0] != '\0' && (strchr(v, ':') == NULL || v[0] == ':'))
        return reel_err_set(err, REEL_INVALID,
                            "invalid value for %s: expected \"user:pass\" or empty", name);
    return REEL_OK;
}

static reel_rc check_proxyauth(const char *v, reel_err_t *err) {
    return check_userpass("proxyauth", v, err);
}

static reel_rc check_upstream_proxyauth(const char *v, reel_err_t *err) {
    return check_userpass("upstream_proxyauth", v, err);
}

/* "http://host[:port][/]" or "https://host[:port][/]", or empty. */
static reel_rc check_reverse_to(const char *v, reel_err_t *err) {
    if (v[0] == '\0')
        return REEL_OK;
    char shown[SHOW_MAX + 8];
    size_t skip = strncmp(v, "http://", 7) == 0 ? 7 : strncmp(v, "https://", 8) == 0 ? 8 : 0;
    const char *a = v + skip;
    size_t n = strlen(a);
    if (n && a[n - 1] == '/')
        n--;
    const char *bad = skip == 0 ? "expected http://host[:port] or https://host[:port]" : NULL;
    if (bad == NULL && n == 0)
        bad = "no host";
    for (size_t i = 0; bad == NULL && i < n; i++)
        if ((unsigned char)a[i] <= ' ' || strchr("/@?#", a[i]))
            bad = "a path, user or query is not taken: only the origin (scheme, host, port)";
    if (bad == NULL) {
        /* the port, if any: after the last ':' outside an IPv6 literal's brackets */
        const char *end = a + n, *colon = NULL;
        for (const char *q = a; q < end; q++)
            if (*q == ':')
                colon = q;
        if (a[0] == '[') {
            const char *rb = memchr(a, ']', n);
            if (rb == NULL)
                bad = "an IPv6 address without its ']'";
            else if (colon && colon < rb)
                colon = NULL;
        }
        if (bad == NULL && colon) {
            long port = 0;
            for (const char *d = colon + 1; d < end && bad == NULL; d++) {
                if (*d < '0' || *d > '9')
                    bad = "the port is not a number";
                else if ((port = port * 10 + (*d - '0')) > 65535)
                    bad = "the port is not 1..65535";
            }
            if (bad == NULL && (colon + 1 == end || port < 1))
                bad = "the port is not 1..65535";
        }
    }
    if (bad)
        return reel_err_set(err, REEL_INVALID, "invalid value '%s' for reverse_to: %s",
                            show(v, shown), bad);
    return REEL_OK;
}

static reel_rc check_host_list(const char *name, const char *v, reel_err_t *err) {
    reel_err_t e;
    reel_err_clear(&e);
    if (reel_no_proxy_check(v, &e) != REEL_OK)
        return reel_err_set(err, REEL_INVALID, "invalid value for %s: %s", name, reel_err_str(&e));
    return REEL_OK;
}

static reel_rc check_no_proxy(const char *v, reel_err_t *err) {
    return check_host_list("upstream_no_proxy", v, err);
}

static reel_rc check_insecure_hosts(const char *v, reel_err_t *err) {
    return check_host_list("upstream_insecure_hosts", v, err);
}

static reel_rc check_map_rule(const char *v, reel_err_t *err) {
    return reel_map_rule_check(v, err);
}

/* "host:port", "http://host:port[/]", "socks5://host:port[/]" or
 * "socks5h://host:port[/]", or empty; the port 1..65535. An https:// or
 * socks4 proxy is refused by name. */
static reel_rc check_upstream_proxy(const char *v, reel_err_t *err) {
    if (v[0] == '\0')
        return REEL_OK;
    const char *scheme_end = strstr(v, "://");
    char shown[SHOW_MAX + 8];
    bool known =
        scheme_end && (strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0 ||
                       strncmp(v, "socks5://", 9) == 0 || strncmp(v, "socks5h://", 10) == 0);
    if (scheme_end && !known)
        return reel_err_set(err, REEL_INVALID,
                            "invalid value '%s' for upstream_proxy: only an HTTP proxy "
                            "(http://host:port, or https://host:port over TLS) or a SOCKS5 one "
                            "(socks5://host:port) is supported, not %.*s",
                            show(v, shown), (int)(scheme_end - v + 3), v);
    const char *a = scheme_end ? scheme_end + 3 : v;
    size_t n = strlen(a);
    if (n && a[n - 1] == '/')
        n--;
    const char *colon = NULL;
    for (size_t i = 0; i < n; i++)
        if (a[i] == ':')
            colon = a + i;
    const char *bad = n == 0 || colon == NULL || colon == a ? "expected host:port" : NULL;
    long port = 0;
    if (bad == NULL) {
        for (const char *d = colon + 1; d < a + n; d++) {
            if (*d < '0' || *d > '9' || port > 65535) {
                bad = "the port is not a number";
                break;
            }
            port = port * 10 + (*d - '0');
        }
        if (bad == NULL && (colon + 1 == a + n || port < 1 || port > 65535))
            bad = "the port is not 1..65535";
        for (const char *h = a; bad == NULL && h < colon; h++)
            if ((unsigned char)*h <= ' ' || strchr("/@?#", *h))
                bad = "a user or path is not taken (upstream_proxyauth holds the credentials)";
    }
    if (bad)
        return reel_err_set(err, REEL_INVALID, "invalid value '%s' for upstream_proxy: %s",
                            show(v, shown), bad);
    return REEL_OK;
}

/* ---- validation ---- */

static void trim(const char *v, const char **start, size_t *len) {
    while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\n' || v[n - 1] == '\r'))
        n--;
    *start = v;
    *len = n;
}

static int has_control(const char *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return 1;
    return 0;
}

/* Parses the digits at *p into *out; 0 if there is none or it overflows
 * int64. Advances *p past them. */
static int parse_digits(const char **p, size_t *left, int64_t *out) {
    int64_t v = 0;
    size_t k = 0;
    const char *s = *p;
    while (k < *left && s[k] >= '0' && s[k] <= '9') {
        int d = s[k] - '0';
        if (v > (INT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        k++;
    }
    if (k == 0)
        return 0;
    *p += k;
    *left -= k;
    *out = v;
    return 1;
}

static reel_rc validate_bool(const reel_option_t *o, const char *v, char **canonical,
                             reel_err_t *err) {
    static const char *const yes[] = {"true", "on", "yes", "1"};
    static const char *const no[] = {"false", "off", "no", "0"};
    const char *s;
    size_t n;
    trim(v, &s, &n);
    for (int i = 0; i < 4; i++) {
        if (n == strlen(yes[i]) && strncasecmp(s, yes[i], n) == 0) {
            *canonical = reel_strdup("true");
            return REEL_OK;
        }
        if (n == strlen(no[i]) && strncasecmp(s, no[i], n) == 0) {
            *canonical = reel_strdup("false");
            return REEL_OK;
        }
    }
    return bad_value(err, o, v, "expected true or false (or on/off, yes/no, 1/0)", NULL);
}

static reel_rc validate_int(const reel_option_t *o, const char *v, char **canonical,
                            reel_err_t *err) {
    const char *s;
    size_t n;
    trim(v, &s, &n);
    int neg = n > 0 && s[0] == '-';
    if (neg) {
        s++;
        n--;
    }
    int64_t x = 0;
    if (!parse_digits(&s, &n, &x) || n != 0 || (neg ? -x : x) < o->min || (neg ? -x : x) > o->max) {
        char range[96];
        snprintf(range, sizeof range, "expected an integer from %lld to %lld", (long long)o->min,
                 (long long)o->max);
        return bad_value(err, o, v, range, NULL);
    }
    *canonical = reel_asprintf("%lld", (long long)(neg ? -x : x));
    return REEL_OK;
}

static reel_rc validate_size(const reel_option_t *o, const char *v, char **canonical,
                             reel_err_t *err) {
    static const struct {
        const char *suffix;
        int shift;
    } suffixes[] = {
        {"", 0},     {"b", 0},   {"k", 10},   {"kb", 10},  {"kib", 10}, {"m", 20},   {"mb", 20},
        {"mib", 20}, {"g", 30},  {"gb", 30},  {"gib", 30}, {"t", 40},   {"tb", 40},  {"tib", 40},
        {"p", 50},   {"pb", 50}, {"pib", 50}, {"e", 60},   {"eb", 60},  {"eib", 60},
    };
    const char *s;
    size_t n;
    trim(v, &s, &n);
    int64_t x = 0;
    int ok = parse_digits(&s, &n, &x);
    while (ok && n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    int shift = -1;
    for (size_t i = 0; ok && i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (n == strlen(suffixes[i].suffix) && strncasecmp(s, suffixes[i].suffix, n) == 0)
            shift = suffixes[i].shift;
    if (shift < 0 || (shift > 0 && x > (INT64_MAX >> shift)))
        ok = 0;
    else
        x = (int64_t)((uint64_t)x << shift);
    if (!ok || x < o->min || x > o->max) {
        char lo[48], hi[48], range[192];
        const char *t;
        size_t tn;
        trim(v, &t, &tn);
        snprintf(range, sizeof range, "%sexpected a size in bytes from %s to %s",
                 tn > 0 && t[0] == '-' ? "a size cannot be negative; " : "",
                 size_text(o->min, 0, lo), size_text(o->max, 0, hi));
        return bad_value(err, o, v, range, "; suffixes k, m, g, t, p, e (1024-based) are accepted");
    }
    *canonical = reel_asprintf("%lld", (long long)x);
    return REEL_OK;
}

static reel_rc validate_enum(const reel_option_t *o, const char *v, char **canonical,
                             reel_err_t *err) {
    const char *s;
    size_t n;
    trim(v, &s, &n);
    char list[128];
    size_t ln = 0;
    for (const char *c = o->choices; *c;) {
        size_t k = strcspn(c, "|");
        if (k == n && strncasecmp(c, s, n) == 0) {
            *canonical = reel_strndup(c, k);
            return REEL_OK;
        }
        ln += (size_t)snprintf(list + ln, sizeof list - ln, "%s%.*s", ln ? ", " : "", (int)k, c);
        if (ln >= sizeof list)
            ln = sizeof list - 1;
        c += k + (c[k] == '|');
    }
    return bad_value(err, o, v, "expected one of ", list);
}

static reel_rc validate_string(const reel_option_t *o, const char *v, char **canonical,
                               reel_err_t *err) {
    if (has_control(v, strlen(v)))
        return bad_value(err, o, v, "control characters are not allowed", NULL);
    if (o->check != NULL) {
        reel_rc rc = o->check(v, err);
        if (rc != REEL_OK)
            return rc;
    }
    *canonical = reel_strdup(v);
    return REEL_OK;
}

/* Checks one list item and appends it to arr. */
static reel_rc list_item(const reel_option_t *o, json_t *arr, const char *item, reel_err_t *err) {
    char shown[SHOW_MAX + 8];
    if (item[0] == '\0')
        return reel_err_set(err, REEL_INVALID, "invalid value for %s: empty list item", o->name);
    if (has_control(item, strlen(item)))
        return reel_err_set(err, REEL_INVALID,
                            "invalid value for %s: item '%s' contains a control character", o->name,
                            show(item, shown));
    json_t *js = json_string(item);
    if (js == NULL)
        return reel_err_set(err, REEL_INVALID, "invalid value for %s: item '%s' is not UTF-8",
                            o->name, show(item, shown));
    json_array_append_new(arr, js);
    if (o->check != NULL)
        return o->check(item, err);
    return REEL_OK;
}

static reel_rc validate_list(const reel_option_t *o, const char *v, char **canonical,
                             reel_err_t *err) {
    reel_rc rc = REEL_OK;
    json_t *arr = json_array();
    const char *s;
    size_t n;
    trim(v, &s, &n);
    if (n > 0 && s[0] == '[') {
        json_error_t jerr;
        json_t *in = json_loadb(s, n, 0, &jerr);
        if (in == NULL || !json_is_array(in)) {
            char detail[200];
            snprintf(detail, sizeof detail, " (%s)", in ? "not an array" : jerr.text);
            json_decref(in);
            rc = bad_value(err, o, v, "expected a JSON array of strings or comma-separated text",
                           detail);
            goto out;
        }
        size_t i;
        json_t *e;
        json_array_foreach(in, i, e) {
            if (!json_is_string(e)) {
                rc = bad_value(err, o, v, "expected a JSON array of strings", NULL);
                break;
            }
            if ((rc = list_item(o, arr, json_string_value(e), err)) != REEL_OK)
                break;
        }
        json_decref(in);
        if (rc != REEL_OK)
            goto out;
    } else {
        const char *p = s, *end = s + n;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *q = comma ? comma : end;
            const char *a = p, *b = q;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            if (b > a) {
                char *item = reel_strndup(a, (size_t)(b - a));
                rc = list_item(o, arr, item, err);
                free(item);
                if (rc != REEL_OK)
                    goto out;
            }
            p = comma ? comma + 1 : end;
        }
    }
    *canonical = json_dumps(arr, JSON_COMPACT); /* malloc'd, like reel_malloc */
    if (*canonical == NULL)
        abort(); /* jansson fails here only when out of memory */
out:
    json_decref(arr);
    return rc;
}

static reel_rc validate_opt(const reel_option_t *o, const char *v, char **canonical,
                            reel_err_t *err) {
    size_t n = strlen(v);
    if (n > REEL_CONFIG_VALUE_MAX)
        return reel_err_set(err, REEL_INVALID, "invalid value for %s: %zu bytes, at most %d",
                            o->name, n, REEL_CONFIG_VALUE_MAX);
    switch (o->type) {
    case REEL_OPT_BOOL:
        return validate_bool(o, v, canonical, err);
    case REEL_OPT_INT:
        return validate_int(o, v, canonical, err);
    case REEL_OPT_SIZE:
        return validate_size(o, v, canonical, err);
    case REEL_OPT_STRING:
        return validate_string(o, v, canonical, err);
    case REEL_OPT_LIST:
        return validate_list(o, v, canonical, err);
    case REEL_OPT_ENUM:
        return validate_enum(o, v, canonical, err);
    }
    return reel_err_set(err, REEL_INVALID, "option %s has an unknown type", o->name);
}

reel_rc reel_config_validate(const char *name, const char *value, char **canonical,
                             reel_err_t *err) {
    const reel_option_t *o = reel_option_lookup(name, err);
    return o ? validate_opt(o, value, canonical, err) : REEL_NOTFOUND;
}

/* upstream_trusted_ca names a file the proxy reads when it starts: checks
 * now that it is a readable file of PEM certificates, and makes its path
 * absolute (the proxy may start in another directory). Replaces *canon. */
static reel_rc check_ca_file(char **canon, reel_err_t *err) {
    const char *path = *canon;
    if (path[0] == '\0')
        return REEL_OK;
    char *real = realpath(path, NULL);
    struct stat st;
    FILE *f = NULL;
    int n = 0;
    reel_rc rc = REEL_OK;
    if (real == NULL || stat(real, &st) != 0) {
        rc = reel_err_set(err, REEL_INVALID, "invalid value '%s' for upstream_trusted_ca: %s", path,
                          strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = reel_err_set(err, REEL_INVALID,
                          "invalid value '%s' for upstream_trusted_ca: not a file", path);
        goto out;
    }
    if ((f = fopen(real, "r")) == NULL) {
        rc = reel_err_set(err, REEL_INVALID,
                          "invalid value '%s' for upstream_trusted_ca: cannot read it: %s", path,
                          strerror(errno));
        goto out;
    }
    ERR_clear_error();
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        X509_free(x);
        n++;
    }
    unsigned long e = ERR_peek_last_error();
    int clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    if (n == 0 || !clean_end) {
        char why[256] = "";
        if (e && !clean_end)
            ERR_error_string_n(e, why, sizeof why);
        rc = reel_err_set(err, REEL_INVALID, "invalid value '%s' for upstream_trusted_ca: %s%s%s",
                          path,
                          n == 0 ? "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
                                 : "a certificate in it does not parse",
                          why[0] ? ": " : "", why);
        goto out;
    }
    free(*canon);
    *canon = real;
    real = NULL;
out:
    ERR_clear_error();
    if (f)
        fclose(f);
    free(real);
    return rc;
}

/* upstream_client_certs names a file or a directory the proxy reads (it
 * says what is wrong with the certificates in it when it applies them):
 * checks that it is there, and makes its path absolute, as
 * check_ca_file does. Replaces *canon. */
static reel_rc check_client_certs(char **canon, reel_err_t *err) {
    const char *path = *canon;
    if (path[0] == '\0')
        return REEL_OK;
    char *real = realpath(path, NULL);
    struct stat st;
    if (real == NULL || stat(real, &st) != 0) {
        reel_rc rc =
            reel_err_set(err, REEL_INVALID, "invalid value '%s' for upstream_client_certs: %s",
                         path, strerror(errno));
        free(real);
        return rc;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        free(real);
        return reel_err_set(err, REEL_INVALID,
                            "invalid value '%s' for upstream_client_certs: not a file or a "
                            "directory",
                            path);
    }
    free(*canon);
    *canon = real;
    return REEL_OK;
}

reel_rc reel_config_validate_set(const char *name, const char *value, char **canonical,
                                 reel_err_t *err) {
    char *canon = NULL;
    reel_rc rc = reel_config_validate(name, value, &canon, err);
    if (rc == REEL_OK && strcmp(name, "upstream_trusted_ca") == 0)
        rc = check_ca_file(&canon, err);
    if (rc == REEL_OK && strcmp(name, "upstream_client_certs") == 0)
        rc = check_client_certs(&canon, err);
    if (rc == REEL_OK)
        *canonical = canon;
    else
        free(canon);
    return rc;
}

/* ---- the effective config ---- */

reel_config_t *reel_config_new(void) {
    reel_config_t *c = reel_calloc(1, sizeof *c);
    for (size_t i = 0; i < NOPT; i++) {
        c->value[i] = reel_strdup(options[i].def);
        c->layer[i] = REEL_LAYER_DEFAULT;
    }
    return c;
}

void reel_config_free(reel_config_t *c) {
    if (c == NULL)
        return;
    for (size_t i = 0; i < NOPT; i++)
        free(c->value[i]);
    free(c);
}

/* Moves the non-NULL values of pending into c at layer l. */
static void apply(reel_config_t *c, char *pending[NOPT], reel_layer l) {
    for (size_t i = 0; i < NOPT; i++) {
        if (pending[i] == NULL)
            continue;
        free(c->value[i]);
        c->value[i] = pending[i];
        c->layer[i] = l;
        pending[i] = NULL;
    }
}

static void pending_free(char *pending[NOPT]) {
    for (size_t i = 0; i < NOPT; i++) {
        free(pending[i]);
        pending[i] = NULL;
    }
}

char *reel_config_user_path(void) {
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && xdg[0] == '/')
        return reel_asprintf("%s/reel/config.yaml", xdg);
    const char *home = getenv("HOME");
    return reel_asprintf("%s/.config/reel/config.yaml", home && home[0] ? home : ".");
}

/* Reads path whole into b (capped). *missing is set when it does not exist. */
static reel_rc read_file(const char *path, reel_buf_t *b, int *missing, reel_err_t *err) {
    *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            *missing = 1;
            return REEL_OK;
        }
        return reel_err_errno(err, REEL_IO, errno, "%s", path);
    }
    reel_rc rc = REEL_OK;
    for (;;) {
        if (reel_buf_reserve(b, 4096) != REEL_OK) {
            rc = reel_err_set(err, REEL_LIMIT, "%s: larger than %u bytes", path, USER_FILE_MAX);
            break;
        }
        ssize_t r = read(fd, b->data + b->len, 4096);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = reel_err_errno(err, REEL_IO, errno, "%s", path);
            break;
        }
        if (r == 0)
            break;
        b->len += (size_t)r;
        b->data[b->len] = 0;
    }
    close(fd);
    return rc;
}

static int is_yaml_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static size_t line_of(const yaml_node_t *n) {
    return n->start_mark.line + 1;
}

/* Text of a scalar node; NULL if it holds a NUL byte. */
static const char *scalar_text(const yaml_node_t *n) {
    const char *v = (const char *)n->data.scalar.value;
    return strlen(v) == n->data.scalar.length ? v : NULL;
}

/* Turns one mapping value into text for validate (owned), or fails. */
static reel_rc yaml_value(yaml_document_t *doc, const char *path, const reel_option_t *o,
                          yaml_node_t *v, char **out, reel_err_t *err) {
    if (v->type == YAML_SCALAR_NODE) {
        const char *t = is_yaml_null(v) ? "" : scalar_text(v);
        if (t == NULL)
            return reel_err_set(err, REEL_INVALID, "%s:%zu: value of '%s' contains a NUL byte",
                                path, line_of(v), o->name);
        *out = reel_strdup(t);
        return REEL_OK;
    }
    if (v->type != YAML_SEQUENCE_NODE || o->type != REEL_OPT_LIST)
        return reel_err_set(err, REEL_INVALID, "%s:%zu: option '%s' takes a single value, not %s",
                            path, line_of(v), o->name,
                            v->type == YAML_SEQUENCE_NODE ? "a list" : "a mapping");
    json_t *arr = json_array();
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        const char *t = item && item->type == YAML_SCALAR_NODE && !is_yaml_null(item)
                            ? scalar_text(item)
                            : NULL;
        json_t *js = t ? json_string(t) : NULL;
        if (js == NULL) {
            json_decref(arr);
            return reel_err_set(err, REEL_INVALID,
                                "%s:%zu: items of '%s' must be non-empty strings", path,
                                line_of(item ? item : v), o->name);
        }
        json_array_append_new(arr, js);
    }
    *out = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (*out == NULL)
        abort(); /* out of memory */
    return REEL_OK;
}

static reel_rc load_yaml(const char *path, const reel_buf_t *b, char *pending[NOPT],
                         reel_err_t *err) {
    reel_rc rc = REEL_OK;
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_doc = 0;
    size_t seen[NOPT] = {0};
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, b->data ? b->data : (const unsigned char *)"", b->len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = reel_err_set(err, REEL_INVALID, "%s:%zu: invalid YAML: %s%s%s", path,
                          parser.problem_mark.line + 1,
                          parser.problem ? parser.problem : "parse error",
                          parser.context ? " " : "", parser.context ? parser.context : "");
        goto out;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || is_yaml_null(root))
        goto out;
    if (root->type != YAML_MAPPING_NODE) {
        rc = reel_err_set(err, REEL_INVALID, "%s:%zu: expected a mapping of option names to values",
                          path, line_of(root));
        goto out;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        const char *name = k && k->type == YAML_SCALAR_NODE ? scalar_text(k) : NULL;
        if (name == NULL || v == NULL) {
            rc = reel_err_set(err, REEL_INVALID, "%s:%zu: option names must be plain strings", path,
                              k ? line_of(k) : 1);
            goto out;
        }
        int i = option_index(name);
        if (i < 0) {
            reel_err_t e;
            reel_err_clear(&e);
            unknown_option(name, &e);
            rc = reel_err_set(err, REEL_INVALID, "%s:%zu: %s", path, line_of(k), e.msg);
            goto out;
        }
        if (seen[i]) {
            rc = reel_err_set(err, REEL_INVALID,
                              "%s:%zu: option '%s' given twice (first on line %zu)", path,
                              line_of(k), name, seen[i]);
            goto out;
        }
        seen[i] = line_of(k);
        char *text = NULL;
        if ((rc = yaml_value(&doc, path, &options[i], v, &text, err)) != REEL_OK)
            goto out;
        reel_err_t e;
        reel_err_clear(&e);
        rc = validate_opt(&options[i], text, &pending[i], &e);
        free(text);
        if (rc != REEL_OK) {
            rc = reel_err_set(err, REEL_INVALID, "%s:%zu: %s", path, line_of(v), e.msg);
            goto out;
        }
    }
    /* A second document is a mistake (a stray "---"), not something to ignore. */
    yaml_document_delete(&doc);
    have_doc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = reel_err_set(err, REEL_INVALID, "%s:%zu: invalid YAML: %s", path,
                          parser.problem_mark.line + 1,
                          parser.problem ? parser.problem : "parse error");
        goto out;
    }
    have_doc = 1;
    root = yaml_document_get_root_node(&doc);
    if (root != NULL)
        rc = reel_err_set(err, REEL_INVALID,
                          "%s:%zu: more than one YAML document; put every option in one mapping",
                          path, line_of(root));
out:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

reel_rc reel_config_load_user(reel_config_t *c, const char *path, reel_err_t *err) {
    char *owned = path ? NULL : reel_config_user_path();
    const char *p = path ? path : owned;
    char *pending[NOPT] = {0};
    reel_buf_t b;
    reel_buf_init(&b, USER_FILE_MAX);
    int missing = 0;
    reel_rc rc = read_file(p, &b, &missing, err);
    if (rc != REEL_OK || missing)
        goto out;
    if ((rc = load_yaml(p, &b, pending, err)) != REEL_OK)
        goto out;
    apply(c, pending, REEL_LAYER_USER);
out:
    pending_free(pending);
    reel_buf_free(&b);
    free(owned);
    return rc;
}

reel_rc reel_config_load_overlay(reel_config_t *c, sqlite3 *db, char **warnings, reel_err_t *err) {
    reel_rc rc = REEL_OK;
    char *pending[NOPT] = {0};
    reel_buf_t warn;
    reel_buf_init(&warn, 0);
    sqlite3_stmt *st = NULL;
    if (warnings)
        *warnings = NULL;
    if (sqlite3_prepare_v2(db, "SELECT key, value FROM config_overlay ORDER BY key", -1, &st,
                           NULL) != SQLITE_OK) {
        rc = reel_err_set(err, REEL_DB, "reading the config overlay: %s", sqlite3_errmsg(db));
        goto out;
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        const char *val = (const char *)sqlite3_column_text(st, 1);
        if (key == NULL)
            continue;
        reel_err_t e;
        reel_err_clear(&e);
        char *canon = NULL;
        if (reel_config_validate(key, val ? val : "", &canon, &e) != REEL_OK) {
            char shown[SHOW_MAX + 8];
            reel_buf_printf(&warn, "%ssession overlay: ignoring '%s': %s", warn.len ? "\n" : "",
                            show(key, shown), e.msg);
            continue;
        }
        int i = option_index(key);
        free(pending[i]);
        pending[i] = canon;
    }
    if (s != SQLITE_DONE) {
        rc = reel_err_set(err, REEL_DB, "reading the config overlay: %s", sqlite3_errmsg(db));
        goto out;
    }
    apply(c, pending, REEL_LAYER_SESSION);
    if (warnings && warn.len)
        *warnings = reel_strdup((char *)warn.data);
out:
    sqlite3_finalize(st);
    pending_free(pending);
    reel_buf_free(&warn);
    return rc;
}

reel_rc reel_config_set_cli(reel_config_t *c, const char *assignment, reel_err_t *err) {
    const char *eq = strchr(assignment, '=');
    if (eq == NULL) {
        char shown[SHOW_MAX + 8];
        return reel_err_set(err, REEL_INVALID, "expected KEY=VALUE, got '%s'",
                            show(assignment, shown));
    }
    char *key = reel_strndup(assignment, (size_t)(eq - assignment));
    char *canon = NULL;
    reel_rc rc = reel_config_validate(key, eq + 1, &canon, err);
    if (rc == REEL_OK) {
        int i = option_index(key);
        free(c->value[i]);
        c->value[i] = canon;
        c->layer[i] = REEL_LAYER_CLI;
    }
    free(key);
    return rc;
}

static int must_index(const char *name) {
    int i = option_index(name);
    if (i < 0) {
        fprintf(stderr, "reel: internal error: unknown config option '%s'\n", name);
        abort();
    }
    return i;
}

static int must_typed(const char *name, reel_opt_type t1, reel_opt_type t2) {
    int i = must_index(name);
    if (options[i].type != t1 && options[i].type != t2) {
        fprintf(stderr, "reel: internal error: config option '%s' read with the wrong type\n",
                name);
        abort();
    }
    return i;
}

const char *reel_config_get(const reel_config_t *c, const char *name, reel_layer *layer) {
    int i = must_index(name);
    if (layer)
        *layer = c->layer[i];
    return c->value[i];
}

int64_t reel_config_get_int(const reel_config_t *c, const char *name) {
    int i = must_typed(name, REEL_OPT_INT, REEL_OPT_SIZE);
    const char *p = c->value[i];
    size_t n = strlen(p);
    int neg = p[0] == '-';
    if (neg) {
        p++;
        n--;
    }
    int64_t v = 0;
    parse_digits(&p, &n, &v); /* canonical: always a valid number */
    return neg ? -v : v;
}

int reel_config_get_bool(const reel_config_t *c, const char *name) {
    int i = must_typed(name, REEL_OPT_BOOL, REEL_OPT_BOOL);
    return strcmp(c->value[i], "true") == 0;
}

char **reel_config_get_list(const reel_config_t *c, const char *name, size_t *n) {
    int i = must_typed(name, REEL_OPT_LIST, REEL_OPT_LIST);
    json_t *arr = json_loads(c->value[i], 0, NULL);
    size_t count = json_is_array(arr) ? json_array_size(arr) : 0;
    size_t bytes = (count + 1) * sizeof(char *);
    for (size_t k = 0; k < count; k++)
        bytes += strlen(json_string_value(json_array_get(arr, k))) + 1;
    char **out = reel_malloc(bytes);
    char *text = (char *)(out + count + 1);
    for (size_t k = 0; k < count; k++) {
        const char *s = json_string_value(json_array_get(arr, k));
        size_t len = strlen(s) + 1;
        memcpy(text, s, len);
        out[k] = text;
        text += len;
    }
    out[count] = NULL;
    if (n)
        *n = count;
    json_decref(arr);
    return out;
}

/* ---- overlay storage ---- */

char *reel_config_actor(void) {
    const char *user = getenv("USER");
    char pwbuf[1024];
    struct passwd pw, *res = NULL;
    if ((user == NULL || user[0] == '\0') &&
        getpwuid_r(geteuid(), &pw, pwbuf, sizeof pwbuf, &res) == 0 && res != NULL)
        user = res->pw_name;
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    return reel_asprintf("%s@%s pid %ld", user && user[0] ? user : "unknown", host, (long)getpid());
}

static reel_rc db_fail(sqlite3 *db, reel_err_t *err, const char *what) {
    int code = sqlite3_errcode(db);
    if (reel_journal_failed(db)) /* not SQLite's "constraint failed" */
        return reel_err_set(err, REEL_IO, "%s: %s", what, reel_journal_errmsg(db));
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
        return reel_err_set(err, REEL_LOCKED, "%s: session database is busy: %s", what,
                            sqlite3_errmsg(db));
    return reel_err_set(err, REEL_DB, "%s: %s", what, sqlite3_errmsg(db));
}

static reel_rc exec(sqlite3 *db, const char *sql, reel_err_t *err, const char *what) {
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(db, err, what);
    return REEL_OK;
}

/* Reads the overlay's value for key into *old (owned, NULL if unset). */
static reel_rc overlay_get(sqlite3 *db, const char *key, char **old, reel_err_t *err) {
    sqlite3_stmt *st = NULL;
    reel_rc rc = REEL_OK;
    *old = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM config_overlay WHERE key = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(db, err, "reading the config overlay");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        *old = reel_strdup(v ? v : "");
    } else if (s != SQLITE_DONE) {
        rc = db_fail(db, err, "reading the config overlay");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs sql with text parameters ?1.. (NULL binds NULL) and, if it has one,
 * the int64 parameter :time, which must come after them in the text (SQLite
 * numbers a named parameter after the highest index seen before it). */
static reel_rc run(sqlite3 *db, const char *sql, const char *const *params, int nparams,
                   int64_t time_us, reel_err_t *err, const char *what) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, what);
    for (int k = 0; k < nparams; k++) {
        if (params[k])
            sqlite3_bind_text(st, k + 1, params[k], -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, k + 1);
    }
    int t = sqlite3_bind_parameter_index(st, ":time");
    if (t > 0)
        sqlite3_bind_int64(st, t, time_us);
    int s = sqlite3_step(st);
    reel_rc rc = s == SQLITE_DONE ? REEL_OK : db_fail(db, err, what);
    sqlite3_finalize(st);
    return rc;
}

static const char history_sql[] = "INSERT INTO config_history (key, old_value, new_value, "
                                  "actor, time_us) VALUES (?1, ?2, ?3, ?4, :time)";

reel_rc reel_overlay_set(sqlite3 *db, const char *key, const char *value, const char *actor,
                         reel_err_t *err) {
    char *canon = NULL, *old = NULL, *own_actor = NULL;
    int in_txn = 0;
    reel_rc rc = reel_config_validate(key, value, &canon, err);
    if (rc != REEL_OK)
        goto out;
    if (actor == NULL)
        actor = own_actor = reel_config_actor();
    if (reel_index_begin_write(db) != SQLITE_OK) {
        rc = db_fail(db, err, "setting a config option");
        goto out;
    }
    in_txn = 1;
    if ((rc = overlay_get(db, key, &old, err)) != REEL_OK)
        goto out;
    if (old == NULL || strcmp(old, canon) != 0) {
        int64_t now = reel_now_us();
        const char *row[] = {key, canon};
        rc = run(db,
                 "INSERT OR REPLACE INTO config_overlay (key, value, updated_us) "
                 "VALUES (?1, ?2, :time)",
                 row, 2, now, err, "setting a config option");
        if (rc != REEL_OK)
            goto out;
        const char *hist[] = {key, old, canon, actor};
        if ((rc = run(db, history_sql, hist, 4, now, err, "recording config history")) != REEL_OK)
            goto out;
    }
    if ((rc = exec(db, "COMMIT", err, "setting a config option")) != REEL_OK)
        goto out;
    in_txn = 0;
out:
    if (in_txn)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    free(canon);
    free(old);
    free(own_actor);
    return rc;
}

reel_rc reel_overlay_unset(sqlite3 *db, const char *key, const char *actor, reel_err_t *err) {
    char *old = NULL, *own_actor = NULL;
    int in_txn = 0;
    reel_rc rc = REEL_OK;
    if (actor == NULL)
        actor = own_actor = reel_config_actor();
    if (reel_index_begin_write(db) != SQLITE_OK) {
        rc = db_fail(db, err, "unsetting a config option");
        goto out;
    }
    in_txn = 1;
    if ((rc = overlay_get(db, key, &old, err)) != REEL_OK)
        goto out;
    if (old == NULL) {
        char shown[SHOW_MAX + 8];
        if (reel_option_find(key) == NULL)
            rc = unknown_option(key, err);
        else
            rc = reel_err_set(err, REEL_NOTFOUND,
                              "option '%s' is not set in this session's overlay", show(key, shown));
        goto out;
    }
    int64_t now = reel_now_us();
    const char *row[] = {key};
    if ((rc = run(db, "DELETE FROM config_overlay WHERE key = ?1", row, 1, now, err,
                  "unsetting a config option")) != REEL_OK)
        goto out;
    const char *hist[] = {key, old, NULL, actor};
    if ((rc = run(db, history_sql, hist, 4, now, err, "recording config history")) != REEL_OK)
        goto out;
    if ((rc = exec(db, "COMMIT", err, "unsetting a config option")) != REEL_OK)
        goto out;
    in_txn = 0;
out:
    if (in_txn)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    free(old);
    free(own_actor);
    return rc;
}

/* The running proxy's --set assignments (meta "cli_sets"), or NULL. */
static json_t *running_sets(sqlite3 *db) {
    char *v = reel_index_meta_get(db, "cli_sets");
    json_t *a = v ? json_loads(v, 0, NULL) : NULL;
    free(v);
    if (a && !json_is_array(a)) {
        json_decref(a);
        a = NULL;
    }
    return a;
}

void reel_config_apply_running(reel_config_t *c, sqlite3 *db, int recording) {
    if (!recording)
        return;
    json_t *sets = running_sets(db), *v;
    size_t k;
    json_array_foreach(sets, k, v) {
        reel_err_t err;
        reel_err_clear(&err);
        if (json_string_value(v))
            reel_config_set_cli(c, json_string_value(v), &err);
    }
    json_decref(sets);
    char *listen = reel_index_meta_get(db, "listen");
    char *colon = listen ? strrchr(listen, ':') : NULL;
    if (colon == NULL || colon == listen) {
        free(listen);
        return;
    }
    *colon = '\0';
    char *host = listen;
    size_t n = strlen(host);
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
        host[n - 1] = '\0';
        host++;
    }
    const char *keys[2] = {"listen_host", "listen_port"};
    const char *vals[2] = {host, colon + 1};
    for (int i = 0; i < 2; i++) {
        if (strcmp(reel_config_get(c, keys[i], NULL), vals[i]) == 0)
            continue;
        char *a = reel_asprintf("%s=%s", keys[i], vals[i]);
        reel_err_t err;
        reel_err_clear(&err);
        reel_config_set_cli(c, a, &err); /* a value it does not take is left out */
        free(a);
    }
    free(listen);
}

/* Options a running proxy applies within a second of a change: the ones
 * reel_proxy_configure (src/core/proxy.c) and reel_recorder_set_limits,
 * called from the config timer of src/daemon/daemon.c, take. Every other
 * option is read once, when the proxy starts. */
static const char *const hot_options[] = {
    "body_limit",
    "capture",
    "ignore_hosts",
    "upstream_cert_verify",
    "intercept_starttls",
    "proxyauth",
    "http2",
    "h2c_upstreams",
    "idle_timeout",
    "upstream_proxy",
    "upstream_proxyauth",
    "head_timeout",
    "max_head_size",
    "upstream_timeout",
    "retention_max_bytes",
    "retention_max_age",
    "retention_max_flows",
    "on_segment_closed",
    "upstream_no_proxy",
    "upstream_insecure_hosts",
    "upstream_client_certs",
    "map_remote",
    "map_local",
    "block_list",
    "modify_headers",
    "modify_body",
    "dns_overrides",
    NULL,
};

int reel_option_is_hot(const char *name) {
    for (const char *const *h = hot_options; *h; h++)
        if (strcmp(*h, name) == 0)
            return 1;
    return 0;
}
