/* The protobuf wire format read in place: what a reader that wants a few
 * fields of many records (the filter's spool pass) uses instead of
 * unpacking each record, which allocates and copies every field.
 *
 * reel_pbwire_check() tells, without allocating, whether
 * protobuf_c_message_unpack() would accept a message; once it has, the
 * fields read with reel_pbwire_next() and the helpers below hold the values
 * unpacking would give (the last occurrence of a singular field wins, as in
 * protobuf-c; a oneof takes its last member). The rules follow protobuf-c
 * 1.4 (protobuf-c.c: parse_tag_and_wiretype, scan_length_prefixed_data,
 * parse_required_member, parse_boolean, parse_uint64); pbwire_test.c
 * checks them against the library on mutated records. */
#ifndef REEL_SESSION_PBWIRE_H
#define REEL_SESSION_PBWIRE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/** One field of a message on the wire. */
typedef struct {
    uint32_t tag;       /* field number */
    unsigned wire;      /* 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit */
    const uint8_t *raw; /* the bytes after the tag, a length prefix included */
    size_t raw_len;
    const uint8_t *val; /* wire 2: the payload after the prefix; else raw */
    size_t val_len;
} reel_pbwire_field_t;

/** Reads the field at data[*pos..len) into *f and moves *pos past it.
 * Returns 1, or 0 at the end of data or if the bytes there do not scan as a
 * field (a zero field number, a tag over 5 bytes, a varint over 10, a
 * length prefix over 5 bytes, past INT_MAX or past the end, wire types 3,
 * 4, 6, 7). f and data are borrowed: f points into data. Inline: the spool
 * pass calls it for every field of every record. */
static inline int reel_pbwire_next(const uint8_t *data, size_t len, size_t *pos,
                                   reel_pbwire_field_t *f) {
    if (*pos >= len)
        return 0;
    const uint8_t *at = data + *pos;
    size_t rem = len - *pos;
    /* the tag: at most 5 bytes, a field number other than 0 in the first */
    if ((at[0] & 0xf8) == 0)
        return 0;
    /* most fields: a 1-byte tag, then a 1-byte varint or length */
    if (at[0] < 0x80 && rem >= 2 && at[1] < 0x80 && ((at[0] & 7) == 0 || (at[0] & 7) == 2)) {
        size_t n = (at[0] & 7) == 0 ? 1 : 1 + (size_t)at[1];
        if (n < rem) {
            f->tag = (uint32_t)at[0] >> 3;
            f->wire = at[0] & 7;
            f->raw = at + 1;
            f->raw_len = n;
            f->val = f->wire == 2 ? at + 2 : at + 1;
            f->val_len = f->wire == 2 ? n - 1 : n;
            *pos += 1 + n;
            return 1;
        }
    }
    uint32_t tag = (uint32_t)(at[0] & 0x7f) >> 3;
    size_t used = 0;
    if (!(at[0] & 0x80)) {
        used = 1;
    } else {
        size_t max = rem > 5 ? 5 : rem;
        unsigned shift = 4;
        for (size_t i = 1; i < max; i++) {
            if (at[i] & 0x80) {
                tag |= (uint32_t)(at[i] & 0x7f) << shift;
                shift += 7;
            } else {
                tag |= (uint32_t)at[i] << shift;
                used = i + 1;
                break;
            }
        }
        if (used == 0)
            return 0;
    }
    f->tag = tag;
    f->wire = at[0] & 7;
    at += used;
    rem -= used;
    size_t n = 0, pref = 0;
    switch (f->wire) {
    case 0: {
        size_t max = rem < 10 ? rem : 10;
        while (n < max && (at[n] & 0x80))
            n++;
        if (n == max)
            return 0;
        n++;
        break;
    }
    case 1:
        if (rem < 8)
            return 0;
        n = 8;
        break;
    case 5:
        if (rem < 4)
            return 0;
        n = 4;
        break;
    case 2: {
        size_t max = rem < 5 ? rem : 5, val = 0;
        unsigned shift = 0;
        while (pref < max) {
            val |= ((size_t)at[pref] & 0x7f) << shift;
            shift += 7;
            if (!(at[pref++] & 0x80))
                break;
            if (pref == max)
                return 0;
        }
        if (pref == 0 || val > INT_MAX || pref + val > rem)
            return 0;
        n = pref + val;
        break;
    }
    default:
        return 0;
    }
    f->raw = at;
    f->raw_len = n;
    f->val = at + pref;
    f->val_len = n - pref;
    *pos += used + n;
    return 1;
}

/** 1 if protobuf_c_message_unpack(desc, NULL, len, data) would return a
 * message (memory permitting), 0 if it would fail: every field scans, each
 * known field's wire type suits its type (a bool takes any), packed
 * repeated fields hold whole elements, nested messages pass in turn.
 * Allocates nothing; recursion is bounded by the schema's nesting. */
int reel_pbwire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len);

/** The value of a varint field as protobuf-c reads a uint64 (f->wire 0). */
uint64_t reel_pbwire_u64(const reel_pbwire_field_t *f);

/** The value of a bool field as protobuf-c reads it, whatever its wire type:
 * 1 if any of its bytes (f->raw) has a low 7-bit part other than zero. */
int reel_pbwire_bool(const reel_pbwire_field_t *f);

#endif
