/* Tests for src/session/pbwire.c: reel_pbwire_check() accepts exactly what
 * protobuf_c_message_unpack() accepts, and the fields read in place hold
 * what unpacking gives, on records the recorder would write, on hand-made
 * oddities and on many random mutations of both; a hand-made descriptor
 * covers the types schema/flow.proto does not use (fixed, double, sint,
 * packed repeated, string). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "flow.pb-c.h"
#include "session/pbwire.h"

/* ---- records ---------------------------------------------------------------- */

static size_t pack(const Reel__Record *r, uint8_t *out) {
    size_t n = reel__record__get_packed_size(r);
    assert_true(n < 4096);
    reel__record__pack(r, out);
    return n;
}

/* A few records of every kind the filter reads, and some it skips. */
static size_t sample(int k, uint8_t *out) {
    Reel__Record r = REEL__RECORD__INIT;
    r.flow_id = 300 + (uint64_t)k;
    r.time_us = 1700000000000000 + k;
    Reel__Header h[3] = {REEL__HEADER__INIT, REEL__HEADER__INIT, REEL__HEADER__INIT};
    Reel__Header *hp[3] = {&h[0], &h[1], &h[2]};
    h[0].name = (ProtobufCBinaryData){4, (uint8_t *)"Host"};
    h[0].value = (ProtobufCBinaryData){6, (uint8_t *)"a.test"};
    h[1].name = (ProtobufCBinaryData){16, (uint8_t *)"Content-Encoding"};
    h[1].value = (ProtobufCBinaryData){4, (uint8_t *)"gzip"};
    h[2].name = (ProtobufCBinaryData){1, (uint8_t *)"X"};
    Reel__RequestHead rq = REEL__REQUEST_HEAD__INIT;
    Reel__ResponseHead rs = REEL__RESPONSE_HEAD__INIT;
    Reel__BodyChunk bc = REEL__BODY_CHUNK__INIT;
    Reel__Message m = REEL__MESSAGE__INIT;
    Reel__FlowEnd end = REEL__FLOW_END__INIT;
    Reel__Timings tm = REEL__TIMINGS__INIT;
    Reel__FlowStart st = REEL__FLOW_START__INIT;
    Reel__ReplayOf ro = REEL__REPLAY_OF__INIT;
    switch (k % 7) {
    case 0:
        rq.method = (ProtobufCBinaryData){3, (uint8_t *)"GET"};
        rq.scheme = "https";
        rq.port = 443;
        rq.headers = hp;
        rq.n_headers = 3;
        rq.body_decoded = k % 2;
        r.event_case = REEL__RECORD__EVENT_REQUEST_HEAD;
        r.request_head = &rq;
        break;
    case 1:
        rs.status = 200;
        rs.headers = hp + 1;
        rs.n_headers = 2;
        rs.body_decoded = 1;
        r.event_case = REEL__RECORD__EVENT_RESPONSE_HEAD;
        r.response_head = &rs;
        break;
    case 2:
    case 3:
        bc.data = (ProtobufCBinaryData){11, (uint8_t *)"hello body!"};
        r.event_case =
            k % 7 == 2 ? REEL__RECORD__EVENT_REQUEST_BODY : REEL__RECORD__EVENT_RESPONSE_BODY;
        r.request_body = &bc; /* the oneof's union */
        break;
    case 4:
        m.from_client = 1;
        m.opcode = 1;
        m.data = (ProtobufCBinaryData){5, (uint8_t *)"ws hi"};
        m.length = 5;
        r.event_case = REEL__RECORD__EVENT_MESSAGE;
        r.message = &m;
        break;
    case 5:
        end.request_body_size = 12345;
        end.timings = &tm;
        tm.wait_us = -1;
        end.server_addr = "192.0.2.1:443";
        r.event_case = REEL__RECORD__EVENT_END;
        r.end = &end;
        break;
    default:
        st.uuid = "0b7a2f0e-0000-4000-8000-000000000000";
        st.replay_of = &ro;
        ro.flow_id = 7;
        r.event_case = REEL__RECORD__EVENT_START;
        r.start = &st;
        break;
    }
    return pack(&r, out);
}

/* What the filter reads of a record, in place (as filter.c does) or from
 * its unpacked form. */
typedef struct {
    uint64_t flow_id;
    unsigned event;
    bool decoded, from_client;
    size_t nh;
    char text[2048]; /* headers as "name=value;", or the data */
    size_t tlen;
} seen_t;

static void add(seen_t *s, const uint8_t *p, size_t n) {
    if (n > sizeof s->text - s->tlen)
        n = sizeof s->text - s->tlen;
    if (n)
        memcpy(s->text + s->tlen, p, n);
    s->tlen += n;
}

static void last_bytes(const reel_pbwire_field_t *m, uint32_t tag, seen_t *s) {
    const uint8_t *d = NULL;
    size_t n = 0;
    size_t pos = 0;
    reel_pbwire_field_t f;
    while (reel_pbwire_next(m->val, m->val_len, &pos, &f)) {
        if (f.tag == tag) {
            d = f.val;
            n = f.val_len;
        }
    }
    add(s, d, n);
}

static void seen_wire(const uint8_t *rec, size_t len, seen_t *s) {
    memset(s, 0, sizeof *s);
    reel_pbwire_field_t f, ev = {0};
    size_t pos = 0;
    while (reel_pbwire_next(rec, len, &pos, &f)) {
        if (f.tag == 1) {
            s->flow_id = reel_pbwire_u64(&f);
        } else {
            const ProtobufCFieldDescriptor *fd =
                protobuf_c_message_descriptor_get_field(&reel__record__descriptor, f.tag);
            if (fd && (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                ev = f;
        }
    }
    s->event = ev.tag;
    uint32_t htag = ev.tag == 11 ? 7 : 4, dtag = ev.tag == 11 ? 8 : 5;
    pos = 0;
    switch (ev.tag) {
    case 11:
    case 13:
        while (reel_pbwire_next(ev.val, ev.val_len, &pos, &f)) {
            if (f.tag == dtag) {
                s->decoded = reel_pbwire_bool(&f);
            } else if (f.tag == htag) {
                s->nh++;
                last_bytes(&f, 1, s);
                add(s, (const uint8_t *)"=", 1);
                last_bytes(&f, 2, s);
                add(s, (const uint8_t *)";", 1);
            }
        }
        break;
    case 12:
    case 14:
        last_bytes(&ev, 1, s);
        break;
    case 19:
        while (reel_pbwire_next(ev.val, ev.val_len, &pos, &f)) {
            if (f.tag == 1)
                s->from_client = reel_pbwire_bool(&f);
        }
        last_bytes(&ev, 3, s);
        break;
    default:
        break;
    }
}

static void seen_unpacked(const Reel__Record *r, seen_t *s) {
    memset(s, 0, sizeof *s);
    s->flow_id = r->flow_id;
    s->event = (unsigned)r->event_case;
    Reel__Header **h = NULL;
    size_t nh = 0;
    switch (r->event_case) {
    case REEL__RECORD__EVENT_REQUEST_HEAD:
        h = r->request_head->headers;
        nh = r->request_head->n_headers;
        s->decoded = r->request_head->body_decoded;
        break;
    case REEL__RECORD__EVENT_RESPONSE_HEAD:
        h = r->response_head->headers;
        nh = r->response_head->n_headers;
        s->decoded = r->response_head->body_decoded;
        break;
    case REEL__RECORD__EVENT_REQUEST_BODY:
        add(s, r->request_body->data.data, r->request_body->data.len);
        break;
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        add(s, r->response_body->data.data, r->response_body->data.len);
        break;
    case REEL__RECORD__EVENT_MESSAGE:
        s->from_client = r->message->from_client;
        add(s, r->message->data.data, r->message->data.len);
        break;
    default:
        break;
    }
    s->nh = nh;
    for (size_t i = 0; i < nh; i++) {
        add(s, h[i]->name.data, h[i]->name.len);
        add(s, (const uint8_t *)"=", 1);
        add(s, h[i]->value.data, h[i]->value.len);
        add(s, (const uint8_t *)";", 1);
    }
}

/* Asserts that the check agrees with unpacking and, when both accept, that
 * the fields read in place are those unpacked; returns 1 if accepted. */
static int agree(const uint8_t *p, size_t len) {
    Reel__Record *r = reel__record__unpack(NULL, len, p);
    int ok = reel_pbwire_check(&reel__record__descriptor, p, len);
    if (ok != (r != NULL)) {
        char hex[3 * 64 + 1] = "";
        for (size_t i = 0; i < len && i < 64; i++)
            snprintf(hex + 3 * i, 4, "%02x ", p[i]);
        fail_msg("check %d, unpack %s, on %zu bytes: %s", ok, r ? "ok" : "failed", len, hex);
    }
    if (r != NULL) {
        seen_t a, b;
        seen_wire(p, len, &a);
        seen_unpacked(r, &b);
        assert_int_equal(a.flow_id, b.flow_id);
        assert_int_equal(a.event, b.event);
        assert_int_equal(a.decoded, b.decoded);
        assert_int_equal(a.from_client, b.from_client);
        assert_int_equal(a.nh, b.nh);
        assert_int_equal(a.tlen, b.tlen);
        assert_memory_equal(a.text, b.text, a.tlen);
        reel__record__free_unpacked(r, NULL);
    }
    return ok;
}

static void test_records(void **state) {
    (void)state;
    uint8_t buf[4096];
    for (int k = 0; k < 14; k++) {
        size_t n = sample(k, buf);
        assert_true(agree(buf, n));
        /* every cut: most are no longer records */
        for (size_t cut = 0; cut < n; cut++)
            agree(buf, cut);
    }
}

/* Appends the bytes of a hex string ("0a 01") to b at *n. */
static void hex(uint8_t *b, size_t *n, const char *s) {
    while (*s) {
        unsigned v;
        int used;
        if (sscanf(s, " %2x%n", &v, &used) != 1)
            break;
        b[(*n)++] = (uint8_t)v;
        s += used;
    }
}

/* A hand-made input and whether unpacking takes it. */
typedef struct {
    const char *hex;
    int ok;
} case_t;

static void test_oddities(void **state) {
    (void)state;
    static const case_t cases[] = {
        {"", 1},                                    /* a record with nothing set */
        {"08 05 08 07", 1},                         /* flow id twice: the last */
        {"08 05 62 03 0a 01 41 72 00", 1},          /* a request body, an empty response body */
        {"08 05 72 00 62 03 0a 01 41", 1},          /* the other way round */
        {"08 05 62 03 0a 01 41 62 03 0a 01 42", 1}, /* one member twice: the last */
        {"08 05 62 06 0a 01 41 0a 01 42", 1},       /* data twice in a chunk: the last */
        {"08 05 62 05 0a 01 41 10 01", 1},          /* an unknown varint in the chunk */
        {"08 05 62 05 0a 01 41 12 00", 1},          /* an unknown length-delimited field */
        {"08 05 62 05 0a 01 41 1b 1c", 0},          /* wire type 3 (a group) */
        {"08 05 62 08 0a 01 41 1d 00 00 00 00", 1}, /* an unknown fixed32 */
        {"08 05 62 05 0a 01 41 1d 00 00 00 00", 0}, /* cut by its chunk's length */
        {"08 05 62 0c 0a 01 41 19 00 00 00 00 00 00 00 00", 1}, /* an unknown fixed64 */
        {"00 05", 0},                                           /* field 0 */
        {"0a 01 05", 0},                                        /* flow id length-delimited */
        {"08 80 80 80 80 80 80 80 80 80 01", 1},                /* a 10-byte varint */
        {"08 80 80 80 80 80 80 80 80 80 80 01", 0},             /* 11 bytes */
        {"08 ff ff ff ff ff ff ff ff ff 7f", 1},                /* bits past 64 */
        {"98 01 00", 0},                                        /* a message (19) as a varint */
        {"9a 01 00", 1},                                        /* an empty message */
        {"9a 01 02 08 02", 1},                                  /* from_client 2 */
        {"9a 01 02 0a 00", 1},                                  /* from_client length-delimited */
        {"9a 01 03 0a 01 00", 1},                               /* the same, zero */
        {"9a 01 05 0d 00 00 00 00", 1},                         /* from_client as a fixed32 zero */
        {"9a 01 05 0d 00 01 00 00", 1},                         /* as a fixed32 not zero */
        {"9a 01 03 08 80 00", 1},                               /* from_client 0 in two bytes */
        {"5a 04 3a 02 0a 00", 1},                /* a request head, a header named "" */
        {"5a 04 3a 02 08 01", 0},                /* a header name as a varint */
        {"5a 02 38 01", 0},                      /* headers as a varint */
        {"5a 02 40 02", 1},                      /* body_decoded 2 */
        {"5a 06 3a 04 0a 02 41 42", 1},          /* a header named "AB" */
        {"5a 09 3a 03 0a 01 41 3a 02 12 00", 1}, /* two headers */
        {"5a 0a 3a 04 0a 01 41 3a 02 12 00", 0}, /* a header cut inside a field */
        {"6a 03 22 01 00", 0},                   /* a response head's header: field 0 */
        {"6a 02 20 01", 0},                      /* its headers as a varint */
        {"7a 02 2a 00", 1},                      /* an end with empty timings */
        {"7a 02 2a 01", 0},                      /* timings cut */
        {"7a 04 2a 02 08 01", 1},                /* timings.blocked_us */
        {"7a 04 2a 02 0a 00", 0},                /* blocked_us as bytes */
        {"52 04 32 02 08 01", 1},                /* a start's replay_of.flow_id */
        {"52 03 12 01 ff", 0},                   /* a start's kind as bytes */
        {"52 02 10 ff", 0},                      /* kind, its varint cut */
        {"f8 ff ff ff 0f 00", 1},                /* a 5-byte tag: an unknown field */
        {"f8 ff ff ff 7f 00", 1},                /* one past 2^31 */
        {"f8 ff ff ff ff 00", 0},                /* a 6-byte tag */
        {"62 80 80 80 80 08", 0},                /* a length of 2^31 */
        {"62 ff ff ff ff 07", 0},                /* INT_MAX, past the end */
        {"62 80 80 80 80 80 01", 0},             /* a 6-byte length prefix */
        {"92 01 00 08 09", 1},                   /* a server_conn, then the flow id */
    };
    uint8_t b[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = 0;
        hex(b, &n, cases[i].hex);
        if (agree(b, n) != cases[i].ok)
            fail_msg("\"%s\": %s", cases[i].hex, cases[i].ok ? "refused" : "taken");
    }
}

static uint32_t rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

/* Mutates p (length *n, capacity cap) a few times: flipped bits, bytes set
 * to edge values, bytes cut out, bytes inserted, a slice duplicated. */
static void mutate(uint64_t *s, uint8_t *p, size_t *n, size_t cap) {
    int times = 1 + (int)(rnd(s) % 3);
    for (int t = 0; t < times; t++) {
        size_t at = *n ? rnd(s) % *n : 0;
        switch (rnd(s) % 6) {
        case 0:
            if (*n)
                p[at] ^= (uint8_t)(1u << (rnd(s) % 8));
            break;
        case 1: {
            static const uint8_t edge[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12,
                                           0x1a, 0x22, 0x3a, 0x62, 0x9a, 0x02, 0x05, 0x03};
            if (*n)
                p[at] = edge[rnd(s) % sizeof edge];
            break;
        }
        case 2: {
            size_t k = 1 + rnd(s) % 3;
            if (at + k <= *n) {
                memmove(p + at, p + at + k, *n - at - k);
                *n -= k;
            }
            break;
        }
        case 3:
            if (*n < cap) {
                memmove(p + at + 1, p + at, *n - at);
                p[at] = (uint8_t)rnd(s);
                (*n)++;
            }
            break;
        case 4: { /* a slice repeated at the end: fields given twice */
            size_t k = 1 + rnd(s) % 12;
            if (at + k <= *n && *n + k <= cap) {
                memcpy(p + *n, p + at, k);
                *n += k;
            }
            break;
        }
        default:
            *n = at; /* cut */
            break;
        }
    }
}

static void test_mutations(void **state) {
    (void)state;
    uint64_t seed = 42;
    uint8_t base[4096], p[4200];
    int accepted = 0, total = 0;
    for (int k = 0; k < 14; k++) {
        size_t bn = sample(k, base);
        for (int i = 0; i < 3000; i++) {
            size_t n = bn;
            memcpy(p, base, bn);
            mutate(&seed, p, &n, sizeof p);
            accepted += agree(p, n);
            total++;
        }
    }
    print_message("%d of %d mutated records still decode\n", accepted, total);
    /* both outcomes are exercised */
    assert_true(accepted > total / 20 && accepted < total - total / 20);
}

/* ---- a hand-made descriptor: the types flow.proto does not use ---------- */

typedef struct {
    ProtobufCMessage base;
    uint32_t f32;
    double d;
    size_t n_nums;
    int32_t *nums;
    protobuf_c_boolean b;
    size_t n_fx;
    uint64_t *fx;
    int64_t s64;
    char *str;
    size_t n_bs;
    protobuf_c_boolean *bs;
    float fl;
} odd_t;

static const ProtobufCFieldDescriptor odd_fields[] = {
    {"f32", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FIXED32, 0, offsetof(odd_t, f32), NULL, NULL,
     0, 0, NULL, NULL},
    {"d", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_DOUBLE, 0, offsetof(odd_t, d), NULL, NULL, 0, 0,
     NULL, NULL},
    {"nums", 3, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_INT32, offsetof(odd_t, n_nums),
     offsetof(odd_t, nums), NULL, NULL, 0, 0, NULL, NULL},
    {"b", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_BOOL, 0, offsetof(odd_t, b), NULL, NULL, 0, 0,
     NULL, NULL},
    {"fx", 5, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_FIXED64, offsetof(odd_t, n_fx),
     offsetof(odd_t, fx), NULL, NULL, PROTOBUF_C_FIELD_FLAG_PACKED, 0, NULL, NULL},
    {"s64", 6, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_SINT64, 0, offsetof(odd_t, s64), NULL, NULL,
     0, 0, NULL, NULL},
    {"str", 7, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, offsetof(odd_t, str), NULL, NULL,
     0, 0, NULL, NULL},
    {"bs", 8, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BOOL, offsetof(odd_t, n_bs),
     offsetof(odd_t, bs), NULL, NULL, 0, 0, NULL, NULL},
    {"fl", 9, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FLOAT, 0, offsetof(odd_t, fl), NULL, NULL, 0,
     0, NULL, NULL},
};
/* by name: b bs d f32 fl fx nums s64 str */
static const unsigned odd_by_name[] = {3, 7, 1, 0, 8, 4, 2, 5, 6};
static const ProtobufCIntRange odd_ranges[] = {{1, 0}, {0, 9}};
static const ProtobufCMessageDescriptor odd_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                    "t.Odd",
                                                    "Odd",
                                                    "Odd",
                                                    "t",
                                                    sizeof(odd_t),
                                                    9,
                                                    odd_fields,
                                                    odd_by_name,
                                                    1,
                                                    odd_ranges,
                                                    NULL,
                                                    NULL,
                                                    NULL,
                                                    NULL};

static int odd_agree(const uint8_t *p, size_t len) {
    ProtobufCMessage *m = protobuf_c_message_unpack(&odd_desc, NULL, len, p);
    int ok = reel_pbwire_check(&odd_desc, p, len);
    if (ok != (m != NULL)) {
        char hex[3 * 64 + 1] = "";
        for (size_t i = 0; i < len && i < 64; i++)
            snprintf(hex + 3 * i, 4, "%02x ", p[i]);
        fail_msg("odd: check %d, unpack %s, on %zu bytes: %s", ok, m ? "ok" : "failed", len, hex);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return ok;
}

static void test_other_types(void **state) {
    (void)state;
    static const case_t cases[] = {
        {"0d 01 02 03 04", 1},                   /* fixed32 */
        {"08 01", 0},                            /* fixed32 as a varint */
        {"11 00 00 00 00 00 00 f0 3f", 1},       /* double */
        {"15 00 00 00 00", 0},                   /* double as a fixed32 */
        {"18 05 18 06", 1},                      /* repeated int32, not packed */
        {"1a 03 01 02 03", 1},                   /* packed */
        {"1a 02 01 80", 0},                      /* packed, the last varint cut */
        {"1a 00", 1},                            /* packed, none */
        {"1d 00 00 00 00", 0},                   /* an int32 as a fixed32 */
        {"2a 08 01 00 00 00 00 00 00 00", 1},    /* packed fixed64 */
        {"2a 07 01 00 00 00 00 00 00", 0},       /* not a multiple of 8 */
        {"29 01 00 00 00 00 00 00 00", 1},       /* one fixed64, not packed */
        {"28 01", 0},                            /* fixed64 as a varint */
        {"30 03", 1},                            /* sint64 */
        {"32 00", 0},                            /* sint64 (not repeated) as bytes */
        {"3a 02 68 69", 1},                      /* string */
        {"38 01", 0},                            /* string as a varint */
        {"20 00 22 00 25 00 00 00 00", 1},       /* a bool in any wire type */
        {"42 03 01 00 80", 0},                   /* packed bools, cut */
        {"42 02 01 00", 1},                      /* packed bools */
        {"40 01 41 00 00 00 00 00 00 00 00", 1}, /* repeated bools, any wire type */
        {"4d 00 00 80 3f", 1},                   /* float */
        {"49 00 00 00 00 00 00 00 00", 0},       /* float as a fixed64 */
        {"50 01", 1},                            /* unknown field 10 */
    };
    uint8_t b[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = 0;
        hex(b, &n, cases[i].hex);
        if (odd_agree(b, n) != cases[i].ok)
            fail_msg("odd \"%s\": %s", cases[i].hex, cases[i].ok ? "refused" : "taken");
    }
    uint64_t seed = 7;
    uint8_t p[128];
    int accepted = 0, total = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int k = 0; k < 2000; k++) {
            size_t n = 0;
            hex(p, &n, cases[i].hex);
            /* whole cases end to end, then mutated */
            size_t j = (i + 1 + rnd(&seed)) % (sizeof cases / sizeof *cases);
            hex(p, &n, cases[j].hex);
            mutate(&seed, p, &n, sizeof p);
            accepted += odd_agree(p, n);
            total++;
        }
    }
    print_message("%d of %d mutated messages decode\n", accepted, total);
    assert_true(accepted > total / 20 && accepted < total - total / 20);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_oddities),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_other_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
