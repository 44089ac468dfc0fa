/* libFuzzer harness: the tnetstring reader (src/session/tnetstring.h) and
 * the mitmproxy flow file checker built on it (src/session/mitm.h).
 *
 * Input: 2 control bytes, then a stream of tnetstrings (a flow file).
 *   c[0] bits 0-1  max_depth: 0 (default), 2, 5 or 64
 *        bits 2-3  max_nodes: 0 (default), 1, 16 or 1000
 *   c[1]           seeds the lengths of the pieces the stream is cut into
 * Checks, besides memory safety (every parse gets a heap buffer of exactly
 * the bytes it may read):
 * - the stream parsed value after value, whole, and fed in pieces to a
 *   reader that buffers until reel_tns_frame says a value is complete,
 *   gives the same values and the same final outcome;
 * - a parsed value re-serializes (literals as parsed) to exactly the bytes
 *   it consumed, which equal what reel_tns_frame said; its nodes' offsets
 *   lie inside it; dicts have pairs; strings are valid UTF-8 by contract;
 * - every proper prefix of a parsed value is NEED_MORE, never an error;
 * - errors are REEL_CORRUPT or REEL_LIMIT with a "byte N" message;
 * - reel_mitm_parse on the stream returns OK or a documented error with
 *   the file name and flow in its message, and never a half result. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "fuzz_util.h"
#include "session/mitm.h"
#include "session/tnetstring.h"

static void dump(const reel_tns_t *t, size_t lo, size_t hi, reel_buf_t *b) {
    static const char tags[] = {'~', '!', '#', '^', ',', ';', ']', '}'};
    FUZZ_CHECK(t->off >= lo && t->off < hi, "node offset %zu outside [%zu, %zu)", t->off, lo, hi);
    reel_buf_t inner = {0};
    if (t->type == REEL_TNS_LIST || t->type == REEL_TNS_DICT) {
        size_t n = t->type == REEL_TNS_DICT ? 2 * t->n : t->n;
        FUZZ_CHECK(n == 0 || t->item != NULL, "container without items");
        for (size_t i = 0; i < n; i++)
            dump(&t->item[i], t->off, hi, &inner);
    } else {
        reel_buf_append(&inner, t->data, t->len);
    }
    reel_buf_printf(b, "%zu:", inner.len);
    reel_buf_append(b, inner.data, inner.len);
    reel_buf_append(b, &tags[t->type], 1);
    reel_buf_free(&inner);
}

/* Parses the value at the start of p[0..n) from an exact-size heap copy;
 * appends "rc" and, when parsed, the re-serialized value to trace. */
static reel_rc parse_one(const uint8_t *p, size_t n, const reel_tns_limits_t *lim, size_t *used,
                         reel_buf_t *trace) {
    uint8_t *copy = reel_malloc(n ? n : 1);
    memcpy(copy, p, n);
    reel_tns_t *t = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    *used = 0;
    reel_rc rc = reel_tns_parse(copy, n, 0, lim, &t, used, &err);
    if (rc == REEL_OK) {
        FUZZ_CHECK(t != NULL && *used > 0 && *used <= n, "parse: used %zu of %zu", *used, n);
        size_t total = 0;
        FUZZ_CHECK(reel_tns_frame(copy, n, &total, &err) == REEL_OK && total == *used,
                   "frame %zu != parsed %zu", total, *used);
        reel_buf_t b = {0};
        dump(t, 0, *used, &b);
        FUZZ_CHECK(b.len == *used && memcmp(b.data, copy, b.len) == 0,
                   "re-serialized value differs (%zu vs %zu bytes)", b.len, *used);
        reel_buf_append(trace, b.data, b.len);
        reel_buf_free(&b);
        reel_tns_free(t);
    } else {
        FUZZ_CHECK(t == NULL, "failed parse returned a tree");
        FUZZ_CHECK(rc == REEL_NEED_MORE || rc == REEL_CORRUPT || rc == REEL_LIMIT, "parse rc %d",
                   (int)rc);
        if (rc != REEL_NEED_MORE)
            FUZZ_CHECK(strncmp(reel_err_str(&err), "byte ", 5) == 0, "message '%s'",
                       reel_err_str(&err));
    }
    reel_buf_printf(trace, "|%d\n", (int)rc);
    free(copy);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    static const size_t depths[] = {0, 2, 5, 64}, nodes[] = {0, 1, 16, 1000};
    reel_tns_limits_t lim = {.max_depth = depths[data[0] & 3],
                             .max_nodes = nodes[(data[0] >> 2) & 3]};
    unsigned seed = data[1];
    data += 2;
    size -= 2;

    /* whole: value after value until an error or the end */
    reel_buf_t whole = {0};
    size_t off = 0, used;
    reel_rc last = REEL_OK;
    while (off < size) {
        last = parse_one(data + off, size - off, &lim, &used, &whole);
        if (last != REEL_OK)
            break;
        /* every proper prefix of the value needs more (a few cuts) */
        for (size_t k = 0; k < used; k += 1 + used / 7) {
            reel_buf_t scratch = {0};
            size_t u2;
            reel_rc rc = parse_one(data + off, k, &lim, &u2, &scratch);
            FUZZ_CHECK(rc == REEL_NEED_MORE, "prefix %zu of a %zu-byte value: rc %d", k, used,
                       (int)rc);
            reel_buf_free(&scratch);
        }
        off += used;
    }

    /* in pieces: buffer, frame, parse what is complete */
    reel_buf_t pieces = {0}, in = {0};
    size_t pos = 0;
    reel_rc plast = REEL_OK;
    int stop = 0;
    while (pos < size && !stop) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % 97;
        if (n > size - pos)
            n = size - pos;
        reel_buf_append(&in, data + pos, n);
        pos += n;
        for (;;) {
            size_t total = 0;
            reel_err_t err;
            reel_err_clear(&err);
            reel_rc rc = reel_tns_frame(in.data, in.len, &total, &err);
            if (rc == REEL_NEED_MORE || (rc == REEL_OK && total > in.len && pos < size))
                break;
            /* a bad prefix, a complete value, or the end of the input */
            plast = parse_one(in.data, in.len, &lim, &used, &pieces);
            if (plast != REEL_OK) {
                stop = 1;
                break;
            }
            reel_buf_consume(&in, used);
            if (in.len == 0)
                break;
        }
    }
    if (!stop && in.len > 0) /* the input ended inside a length prefix */
        plast = parse_one(in.data, in.len, &lim, &used, &pieces);
    FUZZ_CHECK(plast == last, "whole ended %d, pieces %d", (int)last, (int)plast);
    FUZZ_CHECK(pieces.len == whole.len &&
                   (whole.len == 0 || memcmp(pieces.data, whole.data, whole.len) == 0),
               "whole and pieces traces differ");
    reel_buf_free(&whole);
    reel_buf_free(&pieces);
    reel_buf_free(&in);

    /* the flow file checker */
    uint8_t *copy = reel_malloc(size ? size : 1);
    memcpy(copy, data, size);
    reel_mitm_t *m = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_mitm_parse(copy, size, "fuzz.mitm", &m, &err);
    if (rc == REEL_OK) {
        FUZZ_CHECK(m != NULL, "parse OK without a result");
        reel_mitm_free(m);
    } else {
        FUZZ_CHECK(m == NULL, "failed parse returned a result");
        FUZZ_CHECK(rc == REEL_CORRUPT || rc == REEL_LIMIT || rc == REEL_INVALID ||
                       rc == REEL_UNSUPPORTED,
                   "mitm rc %d", (int)rc);
        FUZZ_CHECK(strncmp(reel_err_str(&err), "fuzz.mitm: flow ", 16) == 0, "message '%s'",
                   reel_err_str(&err));
    }
    return 0;
}
