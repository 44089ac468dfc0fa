/* libFuzzer harness: what speaks in a CONNECT tunnel and the TLS ClientHello
 * parser (src/core/sniff.h), the SOCKS5 messages (src/core/socks.h), and
 * an upstream proxy's answer to CONNECT (src/core/connect_filter.h). The
 * input is the first bytes a client (or that proxy) sent.
 *
 * Besides memory safety it checks what the header promises:
 * - reel_sniff: once an answer is given it does not change as bytes arrive
 *   (checked on prefixes), and it is given by REEL_SNIFF_MAX_BYTES;
 * - reel_clienthello_parse: the result is well formed (NUL-terminated
 *   strings, counts within their caps); a ClientHello that parses is also
 *   what reel_sniff calls TLS; its first `consumed` bytes parse the same on
 *   their own, and any shorter prefix of them is NEED_MORE;
 * - reel_clienthello_alpn on every ClientHello that parses: the kind the
 *   header's rules give (worked out here on their own from the names),
 *   the comma-separated list exactly for REEL_CH_ALPN_OTHER and empty
 *   otherwise; with a list smaller than the names need, no byte written
 *   past cap and no REEL_CH_ALPN_OTHER with a cut list;
 * - reel_sniff_wrong_proxy: TLS exactly where reel_sniff says TLS, SOCKS4
 *   only on bytes that can be one;
 * - the SOCKS5 parsers (core/socks.h): what they say they used is within
 *   the input, their strings end, a request they take has a host and a
 *   port, one they refuse a reply code that says why;
 * - reel_connect_answer: a head taken ends within the input, after a 2xx
 *   status line, and its bytes alone are taken the same; one refused says
 *   why in a bounded text; one not whole yet is within the head limit;
 * - reel_socks5_client_feed, the input as a SOCKS5 proxy's answers (with a
 *   username and password, and without): what it takes is within the
 *   input, a refusal says why, and the bytes it asks to send are the
 *   messages of its phase. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "core/connect_filter.h"
#include "core/sniff.h"
#include "core/socks.h"
#include "fuzz_util.h"

static void check_ch(const reel_clienthello_t *ch, reel_rc rc, size_t len) {
    FUZZ_CHECK(rc == REEL_OK || rc == REEL_NEED_MORE || rc == REEL_INVALID ||
                   rc == REEL_CORRUPT || rc == REEL_LIMIT,
               "clienthello rc %d", (int)rc);
    FUZZ_CHECK((rc == REEL_OK) == (ch->reason == NULL), "rc %d with reason %s", (int)rc,
               ch->reason ? ch->reason : "(null)");
    FUZZ_CHECK(memchr(ch->sni, 0, sizeof ch->sni) != NULL, "sni not terminated");
    if (rc != REEL_OK)
        return;
    FUZZ_CHECK(ch->consumed >= 6 && ch->consumed <= len, "consumed %zu of %zu", ch->consumed, len);
    FUZZ_CHECK(ch->records >= 1, "no records");
    if (ch->sni_status == REEL_CH_SNI_OK) {
        size_t n = strlen(ch->sni);
        FUZZ_CHECK(n >= 1 && n <= 253, "sni length %zu", n);
        FUZZ_CHECK(ch->sni_problem == NULL, "valid sni with a problem");
        for (size_t i = 0; i < n; i++) {
            char c = ch->sni[i];
            FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                           c == '-' || c == '_' || c == '.',
                       "sni byte 0x%02x", (unsigned char)c);
        }
    } else {
        FUZZ_CHECK(ch->sni[0] == '\0', "sni set with status %d", (int)ch->sni_status);
        FUZZ_CHECK((ch->sni_status == REEL_CH_SNI_INVALID) == (ch->sni_problem != NULL),
                   "sni_problem vs status %d", (int)ch->sni_status);
    }
    FUZZ_CHECK(ch->alpn_count <= REEL_CH_ALPN_MAX, "alpn_count %zu", ch->alpn_count);
    FUZZ_CHECK(ch->has_alpn || ch->alpn_count == 0, "alpn names without the extension");
    for (size_t i = 0; i < ch->alpn_count; i++) {
        FUZZ_CHECK(ch->alpn_len[i] <= REEL_CH_ALPN_NAME_MAX, "alpn_len %u", ch->alpn_len[i]);
        FUZZ_CHECK(ch->alpn[i][ch->alpn_len[i]] == '\0', "alpn name not terminated");
    }
    FUZZ_CHECK(!ch->tls13 || ch->has_supported_versions, "tls13 without supported_versions");
    FUZZ_CHECK(ch->has_supported_versions || ch->max_supported_version == 0,
               "max_supported_version without the extension");
}

/* The header's rule for an HTTP name, written out again. */
static int name_is_http(const char *s, size_t n) {
    if ((n == 2 && memcmp(s, "h2", 2) == 0) || (n == 3 && memcmp(s, "h2c", 3) == 0) ||
        (n == 2 && memcmp(s, "h3", 2) == 0))
        return 1;
    return (n >= 5 && memcmp(s, "http/", 5) == 0) || (n >= 3 && memcmp(s, "h2-", 3) == 0) ||
           (n >= 3 && memcmp(s, "h3-", 3) == 0);
}

/* reel_clienthello_alpn against the header: what kind, which list. */
static void check_alpn(const reel_clienthello_t *ch) {
    /* the expected answer, from the names */
    int http = 0, passable = ch->alpn_count > 0 && !ch->alpn_truncated;
    char want[REEL_CH_ALPN_LIST_MAX + 1];
    size_t wlen = 0;
    for (size_t i = 0; i < ch->alpn_count; i++) {
        const char *s = ch->alpn[i];
        size_t n = ch->alpn_len[i];
        if ((n == 8 && memcmp(s, "http/1.1", 8) == 0) || (n == 2 && memcmp(s, "h2", 2) == 0))
            http = 1;
        if (name_is_http(s, n) || memchr(s, ',', n) || memchr(s, '\0', n))
            passable = 0;
        if (wlen + (wlen > 0) + n <= REEL_CH_ALPN_LIST_MAX) {
            if (wlen)
                want[wlen++] = ',';
            memcpy(want + wlen, s, n);
            wlen += n;
        } else {
            passable = 0;
        }
    }
    reel_ch_alpn_kind expect = http       ? REEL_CH_ALPN_HTTP
                               : passable ? REEL_CH_ALPN_OTHER
                                          : REEL_CH_ALPN_UNKNOWN;

    char list[REEL_CH_ALPN_LIST_MAX];
    memset(list, 'x', sizeof list);
    reel_ch_alpn_kind k = reel_clienthello_alpn(ch, list, sizeof list);
    FUZZ_CHECK(k == expect, "alpn kind %d, the header's rules say %d (%zu names%s)", (int)k,
               (int)expect, ch->alpn_count, ch->alpn_truncated ? ", truncated" : "");
    size_t got = strnlen(list, sizeof list);
    FUZZ_CHECK(got < sizeof list, "alpn list not terminated");
    if (k == REEL_CH_ALPN_OTHER)
        FUZZ_CHECK(got == wlen && memcmp(list, want, wlen) == 0,
                   "alpn list '%s' is not the names joined by commas", list);
    else
        FUZZ_CHECK(got == 0, "alpn list '%s' for kind %d", list, (int)k);

    /* Lists smaller than the names need (and just big enough), in a buffer
     * of exactly cap bytes (ASan sees a write past it): a list that does
     * not fit is never passed on as OTHER. */
    size_t caps[7] = {0, 1, 2, 3, wlen / 2, wlen, wlen + 1};
    for (int i = 0; i < 7; i++) {
        size_t cap = caps[i];
        char *small = malloc(cap ? cap : 1);
        memset(small, 'x', cap ? cap : 1);
        reel_ch_alpn_kind ks = reel_clienthello_alpn(ch, small, cap);
        size_t sn = cap ? strnlen(small, cap) : 0;
        if (cap == 0) {
            FUZZ_CHECK(small[0] == 'x', "cap 0: a byte written");
            FUZZ_CHECK(ks == (k == REEL_CH_ALPN_OTHER ? REEL_CH_ALPN_UNKNOWN : k),
                       "cap 0: kind %d, with room %d", (int)ks, (int)k);
        } else if (cap > wlen) {
            FUZZ_CHECK(ks == k && sn == got && memcmp(small, list, got) == 0,
                       "cap %zu of %zu needed: kind %d, with room %d", cap, wlen + 1, (int)ks,
                       (int)k);
        } else {
            FUZZ_CHECK(sn == 0, "cap %zu: a list for kind %d", cap, (int)ks);
            FUZZ_CHECK(ks == (k == REEL_CH_ALPN_OTHER ? REEL_CH_ALPN_UNKNOWN : k),
                       "cap %zu of %zu needed: kind %d, with room %d", cap, wlen + 1, (int)ks,
                       (int)k);
        }
        free(small);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A copy of exactly size bytes: any read past the end is an ASan error. */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    reel_sniff_kind k = reel_sniff(buf, size);
    FUZZ_CHECK(k >= REEL_SNIFF_NEED_MORE && k <= REEL_SNIFF_OTHER, "kind %d", (int)k);
    FUZZ_CHECK(reel_sniff_kind_name(k) != NULL, "no name");
    FUZZ_CHECK(size < REEL_SNIFF_MAX_BYTES || k != REEL_SNIFF_NEED_MORE,
               "undecided after %zu bytes", size);
    FUZZ_CHECK(size > 0 || k == REEL_SNIFF_NEED_MORE, "decided on nothing");
    /* Answers on prefixes: every length up to 32, then a few spread out. */
    for (size_t i = 0; i < size; i++) {
        if (i > 32 && i % (size / 8 + 1) != 0)
            continue;
        reel_sniff_kind pk = reel_sniff(buf, i);
        FUZZ_CHECK(pk == REEL_SNIFF_NEED_MORE || pk == k,
                   "prefix of %zu bytes says %s, all %zu bytes say %s", i,
                   reel_sniff_kind_name(pk), size, reel_sniff_kind_name(k));
    }

    /* a client set for another kind of proxy: TLS exactly when the tunnel
     * sniff says so (at 6 bytes or more), SOCKS only from its version */
    reel_wrong_proxy w = reel_sniff_wrong_proxy(buf, size);
    FUZZ_CHECK(w >= REEL_WRONG_PROXY_NONE && w <= REEL_WRONG_PROXY_SOCKS4, "wrong proxy %d",
               (int)w);
    FUZZ_CHECK((w == REEL_WRONG_PROXY_TLS) == (size >= 6 && k == REEL_SNIFF_TLS),
               "wrong proxy %d, sniff %s", (int)w, reel_sniff_kind_name(k));
    FUZZ_CHECK(w != REEL_WRONG_PROXY_SOCKS4 || (buf[0] == 4 && size >= 9 && buf[size - 1] == 0),
               "SOCKS4 of %zu bytes", size);

    /* the SOCKS5 messages (core/socks.h), each from the first byte */
    size_t used;
    bool none, userpass;
    const char *why;
    reel_rc sr = reel_socks5_greeting(buf, size, &used, &none, &userpass, &why);
    FUZZ_CHECK(sr == REEL_OK ? used >= 3 && used <= size : used == 0, "greeting used %zu", used);
    FUZZ_CHECK((sr == REEL_INVALID) == (why != NULL), "greeting rc %d", (int)sr);
    char user[256], pass[256];
    sr = reel_socks5_userpass(buf, size, &used, user, pass, &why);
    FUZZ_CHECK(sr == REEL_OK ? used >= 3 && used <= size && user[0] != 0 : used == 0,
               "userpass used %zu", used);
    FUZZ_CHECK(strlen(user) < 256 && strlen(pass) < 256, "userpass strings");
    reel_socks5_request_t rq;
    uint8_t reply = 0xee;
    sr = reel_socks5_request(buf, size, &used, &rq, &reply, &why);
    FUZZ_CHECK(memchr(rq.host, 0, sizeof rq.host) != NULL, "request host not terminated");
    if (sr == REEL_OK)
        FUZZ_CHECK(used >= 8 && used <= size && rq.host[0] && rq.port > 0 && rq.port < 65536,
                   "request used %zu port %d", used, rq.port);
    if (sr == REEL_INVALID)
        FUZZ_CHECK(why != NULL &&
                       (reply == REEL_SOCKS5_FAILURE || reply == REEL_SOCKS5_BAD_ADDRESS),
                   "request refused with reply %u", (unsigned)reply);

    /* an upstream proxy's answer to CONNECT */
    reel_buf_t head;
    reel_buf_init(&head, 0);
    reel_buf_append(&head, buf, size);
    size_t end = 0;
    char *what = NULL;
    reel_rc cr = reel_connect_answer(&head, &end, &what);
    FUZZ_CHECK((cr == REEL_INVALID) == (what != NULL), "CONNECT answer rc %d", (int)cr);
    FUZZ_CHECK(what == NULL || strlen(what) < 300, "CONNECT refusal of %zu chars", strlen(what));
    if (cr == REEL_NEED_MORE)
        FUZZ_CHECK(size <= REEL_CONNECT_HEAD_MAX, "NEED_MORE at %zu bytes", size);
    if (cr == REEL_OK) {
        FUZZ_CHECK(end >= 14 && end <= size && memcmp(buf, "HTTP/1.", 7) == 0 && buf[9] == '2',
                   "CONNECT answer taken: end %zu", end);
        reel_buf_t alone;
        reel_buf_init(&alone, 0);
        reel_buf_append(&alone, buf, end);
        size_t end2 = 0;
        char *what2 = NULL;
        FUZZ_CHECK(reel_connect_answer(&alone, &end2, &what2) == REEL_OK && end2 == end,
                   "its head alone: end %zu", end2);
        free(what2);
        reel_buf_free(&alone);
    }
    free(what);
    reel_buf_free(&head);

    /* the input as a SOCKS5 proxy's answers, fed as they would come: what
     * is left after each message taken */
    for (int auth = 0; auth < 2; auth++) {
        reel_socks5_client_t sc;
        reel_buf_t out;
        reel_buf_init(&out, 0);
        reel_socks5_client_start(&sc, "example.test", 443, auth ? "ann" : NULL, "pw", &out);
        FUZZ_CHECK(out.len == (auth ? 4u : 3u), "greeting of %zu bytes", out.len);
        size_t at = 0;
        for (int round = 0; round < 4; round++) {
            size_t took = 0;
            char *refusal = NULL;
            reel_buf_reset(&out);
            reel_rc fr = reel_socks5_client_feed(&sc, buf + at, size - at, &took, &out, &refusal);
            FUZZ_CHECK(took <= size - at, "SOCKS5 answers: took %zu of %zu", took, size - at);
            FUZZ_CHECK((fr == REEL_INVALID) == (refusal != NULL), "SOCKS5 answers: rc %d", (int)fr);
            FUZZ_CHECK(refusal == NULL || strlen(refusal) < 200, "SOCKS5 refusal of %zu chars",
                       strlen(refusal));
            FUZZ_CHECK(fr != REEL_OK || sc.phase == 3, "open in phase %d", sc.phase);
            free(refusal);
            at += took;
            if (fr != REEL_NEED_MORE || took == 0)
                break;
        }
        reel_buf_free(&out);
    }

    reel_clienthello_t ch;
    memset(&ch, 0xa5, sizeof ch); /* zeroed by the parser */
    reel_rc rc = reel_clienthello_parse(buf, size, &ch);
    check_ch(&ch, rc, size);
    if (rc == REEL_OK) {
        check_alpn(&ch);
        FUZZ_CHECK(k == REEL_SNIFF_TLS, "a ClientHello that sniffs as %s", reel_sniff_kind_name(k));
        /* the ClientHello alone, in a buffer of its own size */
        size_t n = ch.consumed;
        uint8_t *own = malloc(n);
        memcpy(own, buf, n);
        reel_clienthello_t c2;
        reel_rc rc2 = reel_clienthello_parse(own, n, &c2);
        check_ch(&c2, rc2, n);
        FUZZ_CHECK(rc2 == REEL_OK, "ClientHello alone: rc %d (%s)", (int)rc2,
                   c2.reason ? c2.reason : "");
        check_alpn(&c2);
        FUZZ_CHECK(c2.consumed == n && c2.sni_status == ch.sni_status &&
                       strcmp(c2.sni, ch.sni) == 0 && c2.alpn_count == ch.alpn_count &&
                       c2.tls13 == ch.tls13 && c2.legacy_version == ch.legacy_version,
                   "ClientHello alone parses differently");
        /* shorter prefixes: need more */
        size_t cuts[3] = {n - 1, n / 2, 5};
        for (int i = 0; i < 3; i++) {
            if (cuts[i] >= n)
                continue;
            rc2 = reel_clienthello_parse(own, cuts[i], &c2);
            check_ch(&c2, rc2, cuts[i]);
            FUZZ_CHECK(rc2 == REEL_NEED_MORE, "prefix of %zu of %zu bytes: rc %d (%s)", cuts[i],
                       n, (int)rc2, c2.reason ? c2.reason : "");
        }
        free(own);
    }
    free(buf);
    return 0;
}
