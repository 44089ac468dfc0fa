/* The hand-written records (src/session/pbhead.c) are byte for byte what
 * protobuf-c packs from the same heads and small records, over edge cases
 * and random values, and unpack back to them. */
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

/* modify_headers' changes as protobuf-c's messages (into store, at most
 * 16), as the hand encoder must write them */
static Reel__HeaderEdit **pb_edits(const reel_header_edit_t *e, size_t n, Reel__HeaderEdit *store) {
    assert_true(n <= 16);
    Reel__HeaderEdit **v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        reel__header_edit__init(&store[i]);
        store[i].name = bin(e[i].name);
        store[i].value = bin(e[i].value);
        store[i].removed = e[i].value == NULL;
        store[i].rule = (char *)(e[i].rule ? e[i].rule : "");
        v[i] = &store[i];
    }
    return v;
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
    rh.absolute_form = h->absolute_form != 0;
    rh.reverse = h->reverse != 0;
    rh.mapped_to = (char *)(h->mapped_to ? h->mapped_to : "");
    rh.original_dst = (char *)(h->original_dst ? h->original_dst : "");
    Reel__HeaderEdit estore[16];
    rh.n_modified = h->n_edits;
    rh.modified = pb_edits(h->edits, h->n_edits, estore);
    Reel__Record rec = REEL__RECORD__INIT;
    rec.flow_id = id;
    rec.time_us = t;
    rec.event_case = REEL__RECORD__EVENT_REQUEST_HEAD;
    rec.request_head = &rh;
    size_t want_len;
    uint8_t *want = packed(&rec, &want_len);
    reel_pbrec_plan_t pl;
    size_t len = reel_pbhead_request_size(id, t, h, &pl);
    uint8_t *got = room(len);
    same_bytes(got, len, reel_pbhead_request_write(got, id, t, h, &pl), want, want_len);
    free(got);
    free(want);
    free(rh.headers);
    free(rh.modified);
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
    rh.local_file = (char *)(h->local_file ? h->local_file : "");
    rh.blocked_by = (char *)(h->blocked_by ? h->blocked_by : "");
    Reel__HeaderEdit estore[16];
    rh.n_modified = h->n_edits;
    rh.modified = pb_edits(h->edits, h->n_edits, estore);
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
    reel_pbrec_plan_t pl;
    size_t len = reel_pbhead_response_size(id, t, h, interim, &pl);
    uint8_t *got = room(len);
    same_bytes(got, len, reel_pbhead_response_write(got, id, t, h, &pl), want, want_len);
    /* and it reads back as the head it was made from */
    Reel__Record *back = reel__record__unpack(NULL, len, got);
    assert_non_null(back);
    const Reel__ResponseHead *b = interim ? back->interim : back->response_head;
    assert_non_null(b);
    assert_int_equal(b->status, h->status);
    assert_int_equal(b->n_headers, h->n_headers);
    assert_int_equal(b->n_modified, h->n_edits);
    for (size_t i = 0; i < h->n_edits; i++)
        assert_int_equal(b->modified[i]->removed, h->edits[i].value == NULL);
    reel__record__free_unpacked(back, NULL);
    free(got);
    free(want);
    free(rh.headers);
    free(rh.modified);
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
    /* modify_headers' changes: set, removed (value NULL), an empty rule */
    reel_header_edit_t ed[] = {
        {"X-Debug", "on", "|X-Debug|on"}, {"User-Agent", NULL, "|User-Agent|"}, {"X-E", "", NULL}};
    rq.edits = rs.edits = ed;
    rq.n_edits = rs.n_edits = 3;
    check_request(9, 9, &rq);
    check_response(9, 9, &rs, 0);
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
                                  .body_decoded = (int)(next() % 2),
                                  .absolute_form = (int)(next() % 2),
                                  .reverse = (int)(next() % 2),
                                  .mapped_to = next() % 2 ? ta : NULL,
                                  .original_dst = next() % 2 ? ho : NULL};
        reel_header_edit_t ed[8];
        size_t ned = next() % 3 ? 0 : next() % 8;
        for (size_t i = 0; i < ned; i++)
            ed[i] = (reel_header_edit_t){next() % 2 ? ho : re, next() % 3 ? ta : NULL,
                                         next() % 4 ? m : NULL};
        rq.edits = ed;
        rq.n_edits = ned;
        check_request(id, t, &rq);
        reel_response_head_t rs = {.status = (uint32_t)(next() >> (next() % 64)),
                                   .reason = re,
                                   .http_version = ve,
                                   .headers = hs,
                                   .n_headers = n,
                                   .body_decoded = (int)(next() % 2),
                                   .generated = (int)(next() % 2),
                                   .local_file = next() % 2 ? ta : NULL,
                                   .blocked_by = next() % 2 ? re : NULL,
                                   .edits = ed,
                                   .n_edits = ned};
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

/* reel_pbrec_* against protobuf-c for one record, and back. */
static void check_small(const Reel__Record *rec) {
    size_t want_len = 0;
    uint8_t *want = packed(rec, &want_len);
    reel_pbrec_plan_t pl;
    size_t len = reel_pbrec_size(rec, &pl);
    uint8_t *got = room(len);
    same_bytes(got, len, reel_pbrec_write(got, rec, &pl), want, want_len);
    Reel__Record *back = reel__record__unpack(NULL, len, got);
    assert_non_null(back);
    assert_int_equal(back->event_case, rec->event_case);
    reel__record__free_unpacked(back, NULL);
    free(got);
    free(want);
}

/* A value of a random width, zero a quarter of the time (left out). */
static uint64_t rand_u64(void) {
    return next() % 4 == 0 ? 0 : next() >> (next() % 64);
}

static int64_t rand_i64(void) {
    return (int64_t)rand_u64() * (next() % 3 == 0 ? -1 : 1);
}

/* A string field: NULL, empty or random (NULL and "" are both left out). */
static char *rand_field(char **owned) {
    static const size_t lens[] = {0, 1, 36, 200, 5000};
    switch (next() % 5) {
    case 0:
        *owned = NULL;
        return NULL;
    case 1:
        *owned = NULL;
        return (char *)"";
    default:
        return *owned = rand_str(lens[next() % 5]);
    }
}

/* ct with random fields (their storage in own[0..3]); returns ct. */
static Reel__ClientTls *rand_client_tls(Reel__ClientTls *ct, char **own) {
    ct->sni = rand_field(&own[0]);
    ct->alpn = rand_field(&own[1]);
    ct->tls_version = rand_field(&own[2]);
    ct->cipher = rand_field(&own[3]);
    ct->resumed = (protobuf_c_boolean)(next() % 2);
    return ct;
}

static void test_small_records(void **state) {
    (void)state;
    /* nothing else: the encoder leaves other events to protobuf-c */
    Reel__FlowError fe = REEL__FLOW_ERROR__INIT;
    Reel__Record other = REEL__RECORD__INIT;
    other.event_case = REEL__RECORD__EVENT_ERROR;
    other.error = &fe;
    reel_pbrec_plan_t pl;
    assert_int_equal(reel_pbrec_size(&other, &pl), 0);
    assert_int_equal(reel_pbrec_write(NULL, &other, &pl), 0);
    for (int round = 0; round < 3000; round++) {
        char *own[21] = {NULL};
        Reel__Record rec = REEL__RECORD__INIT;
        rec.flow_id = rand_u64();
        rec.time_us = rand_i64();
        Reel__FlowStart st = REEL__FLOW_START__INIT;
        Reel__ReplayOf ro = REEL__REPLAY_OF__INIT;
        Reel__ClientTls ct = REEL__CLIENT_TLS__INIT;
        Reel__FlowEnd en = REEL__FLOW_END__INIT;
        Reel__Timings tm = REEL__TIMINGS__INIT;
        Reel__ServerConn sc = REEL__SERVER_CONN__INIT;
        Reel__BodyChunk bc = REEL__BODY_CHUNK__INIT;
        switch (round % 5) {
        case 0:
            st.uuid = rand_field(&own[0]);
            st.kind = (Reel__FlowKind)(next() % 4 == 0 ? -(int)(next() % 3) : (int)(next() % 3));
            st.client_addr = rand_field(&own[1]);
            st.server_addr = rand_field(&own[2]);
            st.source = rand_field(&own[3]);
            if (next() % 2) {
                ro.flow_id = rand_u64();
                ro.session = rand_field(&own[4]);
                ro.uuid = rand_field(&own[5]);
                st.replay_of = &ro;
            }
            st.client_conn = rand_u64();
            st.stream_id = (uint32_t)rand_u64();
            if (next() % 2)
                st.client_tls = rand_client_tls(&ct, own + 14);
            rec.event_case = REEL__RECORD__EVENT_START;
            rec.start = &st;
            break;
        case 1:
            en.request_body_size = rand_u64();
            en.response_body_size = rand_u64();
            en.request_truncated = (protobuf_c_boolean)(next() % 2);
            en.response_truncated = (protobuf_c_boolean)(next() % 2);
            if (next() % 3) {
                tm.blocked_us = rand_i64();
                tm.dns_us = rand_i64();
                tm.connect_us = rand_i64();
                tm.send_us = rand_i64();
                tm.wait_us = rand_i64();
                tm.receive_us = rand_i64();
                tm.ssl_us = rand_i64();
                en.timings = &tm;
            }
            en.request_end_us = rand_i64();
            en.response_start_us = rand_i64();
            en.request_body_dropped = rand_u64();
            en.response_body_dropped = rand_u64();
            en.server_addr = rand_field(&own[6]);
            en.messages_dropped = rand_u64();
            en.response_excess = rand_u64();
            if (next() % 2) /* (a TLS tunnel's, whose start could not say it) */
                en.client_tls = rand_client_tls(&ct, own + 14);
            rec.event_case = REEL__RECORD__EVENT_END;
            rec.end = &en;
            break;
        case 2:
            sc.conn_id = rand_u64();
            sc.address = rand_field(&own[7]);
            sc.sni = rand_field(&own[8]);
            sc.alpn = rand_field(&own[9]);
            sc.tls_version = rand_field(&own[10]);
            sc.cipher = rand_field(&own[11]);
            sc.reused = (protobuf_c_boolean)(next() % 2);
            sc.retried = (protobuf_c_boolean)(next() % 2);
            sc.unverified = (protobuf_c_boolean)(next() % 2);
            sc.verify_error = rand_field(&own[12]);
            sc.peer_cert = rand_field(&own[13]);
            sc.opened_us = rand_i64();
            sc.dns_us = rand_i64();
            sc.connect_us = rand_i64();
            sc.ssl_us = rand_i64();
            sc.via = rand_field(&own[18]);
            sc.via_forward = (protobuf_c_boolean)(next() % 2);
            sc.client_cert = rand_field(&own[19]);
            sc.client_cert_asked = (protobuf_c_boolean)(next() % 2);
            sc.resumed = (protobuf_c_boolean)(next() % 2);
            sc.dns_override = rand_field(&own[20]);
            rec.event_case = REEL__RECORD__EVENT_SERVER_CONN;
            rec.server_conn = &sc;
            break;
        default: {
            static const size_t lens[] = {0, 1, 100, 127, 128, 16384, 70000};
            size_t n = lens[next() % 7];
            bc.data.len = n;
            bc.data.data = reel_malloc(n ? n : 1);
            for (size_t i = 0; i < n; i++)
                bc.data.data[i] = (uint8_t)next();
            if (round % 5 == 3) {
                rec.event_case = REEL__RECORD__EVENT_REQUEST_BODY;
                rec.request_body = &bc;
            } else {
                rec.event_case = REEL__RECORD__EVENT_RESPONSE_BODY;
                rec.response_body = &bc;
            }
            break;
        }
        }
        check_small(&rec);
        free(bc.data.data);
        for (size_t i = 0; i < sizeof own / sizeof *own; i++)
            free(own[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_small_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
