/* The hand-written head records (src/session/pbhead.c) are byte for byte
 * what protobuf-c packs from the same heads, over edge cases and random
 * heads, and unpack back to them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "flow.pb-c.h"
#include "session/pbhead.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static ProtobufCBinaryData bin(const char *s) {
    ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)s};
    return b;
}

static Reel__Header **pb_headers(const reel_header_t *h, size_t n, Reel__Header *store) {
    Reel__Header **v = reel_malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        reel__header__init(&store[i]);
        store[i].name = (ProtobufCBinaryData){h[i].name_len, (uint8_t *)h[i].name};
        store[i].value = (ProtobufCBinaryData){h[i].value_len, (uint8_t *)h[i].value};
        v[i] = &store[i];
    }
    return v;
}

/* protobuf-c's bytes of the record; owned. */
static uint8_t *packed(const Reel__Record *rec, size_t *len) {
    *len = reel__record__get_packed_size(rec);
    uint8_t *b = reel_malloc(*len ? *len : 1);
    assert_int_equal(reel__record__pack(rec, b), *len);
    return b;
}

/* A buffer of len bytes and one more, a sentinel after them. */
static uint8_t *room(size_t len) {
    uint8_t *got = reel_malloc(len + 1);
    got[len] = 0xAB;
    return got;
}

/* got holds the `written` bytes the hand encoder wrote into room(len):
 * its size was right, nothing went past it, and they are protobuf-c's. */
static void same_bytes(const uint8_t *got, size_t len, size_t written, const uint8_t *want,
                       size_t want_len) {
    assert_int_equal(len, want_len);
    assert_int_equal(written, len);
    assert_int_equal(got[len], 0xAB);
    assert_memory_equal(got, want, len);
}

static void check_request(uint64_t id, int64_t t, const reel_request_head_t *h) {
    Reel__Header store[64];
    Reel__RequestHead rh = REEL__REQUEST_HEAD__INIT;
    rh.method = bin(h->method);
    rh.scheme = (char *)h->scheme;
    rh.host = bin(h->host);
    rh.port = h->port;
    rh.target = bin(h->target);
    rh.http_version = (char *)h->http_version;
    rh.n_headers = h->n_headers;
    rh.headers = pb_headers(h->headers, h->n_headers, store);
    rh.body_decoded = h->body_decoded != 0;
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = id;
    rec.time_us = t;
    rec.event_case = REEL__RECORD__EVENT_REQUEST_HEAD;
    rec.request_head = &rh;
    size_t want_len;
    uint8_t *want = packed(&rec, &want_len);
    size_t len = reel_pbhead_request_size(id, t, h);
    uint8_t *got = room(len);
    same_bytes(got, len, reel_pbhead_request_write(got, id, t, h), want, want_len);
    free(got);
    free(want);
    free(rh.headers);
}

static void check_response(uint64_t id, int64_t t, const reel_response_head_t *h, int interim) {
    Reel__Header store[64];
    Reel__ResponseHead rh = REEL__RESPONSE_HEAD__INIT;
    rh.status = h->status;
    rh.reason = bin(h->reason);
    rh.http_version = (char *)h->http_version;
    rh.n_headers = h->n_headers;
    rh.headers = pb_headers(h->headers, h->n_headers, store);
    rh.body_decoded = h->body_decoded != 0;
    rh.generated = h->generated != 0;
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = id;
    rec.time_us = t;
    if (interim) {
        rec.event_case = REEL__RECORD__EVENT_INTERIM;
        rec.interim = &rh;
    } else {
        rec.event_case = REEL__RECORD__EVENT_RESPONSE_HEAD;
        rec.response_head = &rh;
    }
    size_t want_len;
    uint8_t *want = packed(&rec, &want_len);
    size_t len = reel_pbhead_response_size(id, t, h, interim);
    uint8_t *got = room(len);
    same_bytes(got, len, reel_pbhead_response_write(got, id, t, h, interim), want, want_len);
    /* and it reads back as the head it was made from */
    Reel__Record *back = reel__record__unpack(NULL, len, got);
    assert_non_null(back);
    const Reel__ResponseHead *b = interim ? back->interim : back->response_head;
    assert_non_null(b);
    assert_int_equal(b->status, h->status);
    assert_int_equal(b->n_headers, h->n_headers);
    reel__record__free_unpacked(back, NULL);
    free(got);
    free(want);
    free(rh.headers);
}

static void test_edges(void **state) {
    (void)state;
    reel_header_t hs[] = {{"Host", 4, "example.com", 11},
                          {"", 0, "", 0}, /* an empty header is kept */
                          {"X-Bin", 5, "a\0b\r\n\xff", 6},
                          {"content-type", 12, "text/html", 9}};
    reel_request_head_t rq = {.method = "GET",
                              .scheme = "https",
                              .host = "example.com",
                              .port = 443,
                              .target = "/a?b=c",
                              .http_version = "HTTP/1.1",
                              .headers = hs,
                              .n_headers = 4,
                              .body_decoded = 1};
    check_request(1, 1700000000000000, &rq);
    check_request(0, 0, &rq);           /* ids and times left out at 0 */
    check_request(UINT64_MAX, -1, &rq); /* 10-byte varints */
    check_request((uint64_t)1 << 35, INT64_MIN, &rq);
    reel_request_head_t empty = {.scheme = "", .http_version = ""};
    check_request(7, 7, &empty); /* every field at its default: an empty head */
    reel_request_head_t nul = {
        .method = NULL, .scheme = "http", .host = NULL, .target = NULL, .http_version = "HTTP/2.0"};
    check_request(7, 7, &nul);
    reel_response_head_t rs = {.status = 200,
                               .reason = "OK",
                               .http_version = "HTTP/1.1",
                               .headers = hs,
                               .n_headers = 4,
                               .generated = 1};
    check_response(3, 5, &rs, 0);
    check_response(3, 5, &rs, 1); /* interim: field 20, a two-byte tag */
    reel_response_head_t r0 = {.status = 0, .reason = NULL, .http_version = ""};
    check_response(3, 5, &r0, 0);
    check_response(3, 5, &r0, 1);
}

/* A random string of up to max bytes (any byte but NUL: heads hold C
 * strings for these fields). */
static char *rand_str(size_t max) {
    size_t n = max ? next() % (max + 1) : 0;
    char *s = reel_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(1 + next() % 255);
    s[n] = '\0';
    return s;
}

static void test_random(void **state) {
    (void)state;
    static const size_t lens[] = {0, 3, 40, 130, 300, 20000};
    for (int round = 0; round < 2000; round++) {
        size_t n = next() % 40;
        reel_header_t hs[40];
        char *bufs[80];
        for (size_t i = 0; i < n; i++) {
            bufs[2 * i] = rand_str(lens[next() % 5]);
            bufs[2 * i + 1] = rand_str(lens[next() % 6]);
            /* header bytes need not be NUL-free: use the lengths */
            hs[i] = (reel_header_t){bufs[2 * i], strlen(bufs[2 * i]), bufs[2 * i + 1],
                                    strlen(bufs[2 * i + 1])};
            if (hs[i].value_len > 2 && next() % 4 == 0)
                bufs[2 * i + 1][1] = '\0'; /* an embedded NUL, within value_len */
        }
        char *m = rand_str(lens[next() % 3]), *sc = rand_str(lens[next() % 3]),
             *ho = rand_str(lens[next() % 4]), *ta = rand_str(lens[next() % 6]),
             *ve = rand_str(lens[next() % 3]), *re = rand_str(lens[next() % 4]);
        uint64_t id = next() >> (next() % 64);
        int64_t t = (int64_t)(next() >> (next() % 64)) * (next() % 2 ? 1 : -1);
        reel_request_head_t rq = {.method = m,
                                  .scheme = sc,
                                  .host = ho,
                                  .port = (uint32_t)(next() >> (next() % 64)),
                                  .target = ta,
                                  .http_version = ve,
                                  .headers = hs,
                                  .n_headers = n,
                                  .body_decoded = (int)(next() % 2)};
        check_request(id, t, &rq);
        reel_response_head_t rs = {.status = (uint32_t)(next() >> (next() % 64)),
                                   .reason = re,
                                   .http_version = ve,
                                   .headers = hs,
                                   .n_headers = n,
                                   .body_decoded = (int)(next() % 2),
                                   .generated = (int)(next() % 2)};
        check_response(id, t, &rs, (int)(next() % 2));
        for (size_t i = 0; i < 2 * n; i++)
            free(bufs[i]);
        free(m);
        free(sc);
        free(ho);
        free(ta);
        free(ve);
        free(re);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
