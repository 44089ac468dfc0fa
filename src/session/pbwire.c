#include "session/pbwire.h"

#include <limits.h>

/* A varint as protobuf-c scans one in a packed field: 0 if it does not end
 * within 10 bytes and the data. */
static size_t scan_varint(const uint8_t *p, size_t len) {
    size_t max = len < 10 ? len : 10;
    for (size_t i = 0; i < max; i++) {
        if (!(p[i] & 0x80))
            return i + 1;
    }
    return 0;
}

/* A packed repeated field of type t (its payload p[0..len)). */
static int packed_ok(ProtobufCType t, const uint8_t *p, size_t len) {
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return len % 4 == 0;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return len % 8 == 0;
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_BOOL:
        while (len > 0) {
            size_t s = scan_varint(p, len);
            if (s == 0)
                return 0;
            p += s;
            len -= s;
        }
        return 1;
    default: /* strings, bytes and messages are never packed */
        return 0;
    }
}

/* One occurrence of a known field, as parse_required_member takes it. */
static int member_ok(const ProtobufCFieldDescriptor *fd, const reel_pbwire_field_t *f) {
    switch (fd->type) {
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_SINT64:
        return f->wire == 0;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return f->wire == 5;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return f->wire == 1;
    case PROTOBUF_C_TYPE_BOOL:
        return 1; /* protobuf-c reads a bool from any wire type */
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
        return f->wire == 2;
    case PROTOBUF_C_TYPE_MESSAGE:
        return f->wire == 2 && reel_pbwire_check(fd->descriptor, f->val, f->val_len);
    default:
        return 0;
    }
}

/* The field numbered tag of d, NULL if unknown: the first range of field
 * numbers (often the only one) looked up directly, the others as
 * protobuf-c does. */
static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *d, uint32_t tag) {
    if (d->n_field_ranges > 0) {
        const ProtobufCIntRange *r = d->field_ranges;
        uint32_t start = (uint32_t)r[0].start_value;
        uint32_t count = (uint32_t)(r[1].orig_index - r[0].orig_index);
        if (tag >= start && tag - start < count)
            return &d->fields[(uint32_t)r[0].orig_index + (tag - start)];
    }
    return protobuf_c_message_descriptor_get_field(d, tag);
}

/* 1 if a field numbered tag occurs in data (which scans). */
static int has_field(const uint8_t *data, size_t len, uint32_t tag) {
    size_t pos = 0;
    reel_pbwire_field_t f;
    while (reel_pbwire_next(data, len, &pos, &f)) {
        if (f.tag == tag)
            return 1;
    }
    return 0;
}

int reel_pbwire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len) {
    size_t pos = 0;
    reel_pbwire_field_t f;
    while (pos < len) {
        if (!reel_pbwire_next(data, len, &pos, &f))
            return 0;
        const ProtobufCFieldDescriptor *fd = field_of(desc, f.tag);
        if (fd == NULL)
            continue; /* an unknown field: kept as bytes */
        if (fd->label == PROTOBUF_C_LABEL_REPEATED && f.wire == 2 &&
            ((fd->flags & PROTOBUF_C_FIELD_FLAG_PACKED) ||
             (fd->type != PROTOBUF_C_TYPE_STRING && fd->type != PROTOBUF_C_TYPE_BYTES &&
              fd->type != PROTOBUF_C_TYPE_MESSAGE))) {
            if (!packed_ok(fd->type, f.val, f.val_len))
                return 0;
        } else if (!member_ok(fd, &f)) {
            return 0;
        }
    }
    /* proto2's required fields (none in schema/flow.proto) */
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &desc->fields[i];
        if (fd->label == PROTOBUF_C_LABEL_REQUIRED && fd->default_value == NULL &&
            !has_field(data, len, fd->id))
            return 0;
    }
    return 1;
}

uint64_t reel_pbwire_u64(const reel_pbwire_field_t *f) {
    uint64_t v = 0;
    for (size_t i = 0; i < f->raw_len && i < 10; i++)
        v |= (uint64_t)(f->raw[i] & 0x7f) << (7 * i);
    return v;
}

int reel_pbwire_bool(const reel_pbwire_field_t *f) {
    for (size_t i = 0; i < f->raw_len; i++) {
        if (f->raw[i] & 0x7f)
            return 1;
    }
    return 0;
}
