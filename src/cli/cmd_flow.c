/* reel flow SESSION ID: one flow, heads and bodies.
 *
 * Output for people streams: records arrive one at a time from the spool,
 * bodies are decoded chunk by chunk and printed as they come, so memory stays
 * bounded whatever the body size (a 64 KiB replay buffer of stored bytes and
 * the 4 KiB sample that decides text or hex dump, per direction, plus the
 * decoders' fixed buffers). --json needs whole bodies in memory (base64 in
 * one JSON string) and refuses bodies above JSON_BODY_MAX. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/query.h"
#include "session/replay.h"
#include "session/decode.h"
#include "session/filter.h"
#include "session/flowread.h"
#include "session/index.h"
#include "session/store.h"
#include "session/view.h"

static const char usage[] =
    "usage: reel flow [--home DIR] [--json] [--raw] [--headers-only] [--view VIEW]\n"
    "                 [--proto FILE[:MESSAGE]] SESSION ID\n"
    "\n"
    "Shows one flow: a summary line (id, state, start time, duration), the\n"
    "request line and headers ('> '; an HTTP/2 request line in the absolute form,\n"
    "its scheme and authority being no header field), the request body, the\n"
    "status line and headers ('< '), the response body, and the error if the\n"
    "flow failed.\n"
    "\n"
    "Bodies are shown with their Content-Encoding (gzip, deflate, br, zstd,\n"
    "stacked) removed. Text is printed as it is; binary bodies, judged on their\n"
    "first 4 KiB, are printed as a hex dump. Bodies of any size are streamed.\n"
    "On a terminal, control characters in what was recorded (escape sequences\n"
    "a server could send to drive the terminal) are shown as \\xNN; into a pipe\n"
    "or a file every byte goes as recorded.\n"
    "\n"
    "  --raw            show bodies as stored: Content-Encoding not removed, and\n"
    "                   control characters not escaped even on a terminal\n"
    "  --headers-only   leave the bodies out\n"
    "  --view VIEW      show each body through a contentview: auto (picked from\n"
    "                   Content-Type and the first bytes), raw, hex, json, xml,\n"
    "                   html, css, javascript, urlencoded (a table), multipart\n"
    "                   (parts, headers, sizes), protobuf or grpc (no schema:\n"
    "                   field numbers and wire types), msgpack, image (format,\n"
    "                   size), websocket (each message through auto; any view\n"
    "                   applies to messages too). Content that does not read as\n"
    "                   the view is shown as hex with the reason. A view looks\n"
    "                   at the first 16 MiB of a body and says when it cut the\n"
    "                   rest. Colour on a terminal (not with NO_COLOR set).\n"
    "                   docs/views.md has the details\n"
    "  --proto FILE[:MESSAGE]\n"
    "                   decode protobuf and gRPC bodies with the messages of a\n"
    "                   .proto file (imports are not followed): MESSAGE for\n"
    "                   both bodies, or for gRPC the rpc the request path names;\n"
    "                   implies --view auto when no --view is given\n"
    "  --json           one JSON object: heads (header bytes that are not UTF-8\n"
    "                   appear as {\"b64\": ...}), bodies as stored in base64,\n"
    "                   sizes, timings; bodies above 256 MiB are refused\n";

enum { REQ = 0, RESP = 1 };

/** Bytes of decoded output looked at to tell text from binary: also how
 * few decoded bytes let a body that fails to decode be shown as stored from
 * its first byte, as ~b searches it (session/filter.h). */
#define PEEK_MAX REEL_FILTER_UNDECODED_OUT
/** Stored bytes kept so a body that fails to decode early can be shown as
 * stored from its first byte. */
#define REPLAY_MAX REEL_FILTER_UNDECODED_STORED
/** Largest body --json accepts. */
#define JSON_BODY_MAX ((size_t)256 * 1024 * 1024)

static const char *const dir_name[2] = {"request", "response"};

/* ---- the index row ---- */

typedef struct {
    int found;
    char state[16];
    char kind[16]; /* the index's: "websocket" once a message is recorded */
    long long start_us, end_us;
    int has_end;
    unsigned long long size[2];
    int truncated[2];
    unsigned long long dropped[2]; /* body bytes capture did not store */
    long long messages;            /* WebSocket / TCP messages: sizes count their bytes */
    char *error; /* owned, NULL if none */
    long long replay_of;  /* reel replay: the flow it re-sent, 0: none */
    char *replay_session; /* ... of that session (owned; NULL: this one) */
    uint64_t *replays;    /* flows of this session that re-sent it (owned) */
    size_t nreplays;
    /* What the start record said, as the index has it: repair keeps the
     * old index's when the record was lost (owned; NULL: none). */
    char *uuid, *source, *client_addr, *server_addr;
    long long client_conn, stream_id; /* 0: none */
} row_t;

static void row_free(row_t *r) {
    free(r->error);
    free(r->replay_session);
    free(r->replays);
    free(r->uuid);
    free(r->source);
    free(r->client_addr);
    free(r->server_addr);
}

static char *dup_set(const char *v) {
    return v && v[0] ? reel_strdup(v) : NULL;
}

static void row_load(reel_session_t *s, unsigned long long id, row_t *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->state, sizeof r->state, "unknown");
    reel_query_flow_t f;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_query_flow(s, (int64_t)id, &f, &err) != REEL_OK)
        return;
    r->found = 1;
    if (f.state)
        snprintf(r->state, sizeof r->state, "%s", f.state);
    if (f.kind)
        snprintf(r->kind, sizeof r->kind, "%s", f.kind);
    r->start_us = f.start_us == REEL_QUERY_NULL ? 0 : f.start_us;
    r->has_end = f.end_us != REEL_QUERY_NULL;
    r->end_us = r->has_end ? f.end_us : 0;
    r->size[REQ] = (unsigned long long)f.request_body_size;
    r->size[RESP] = (unsigned long long)f.response_body_size;
    r->truncated[REQ] = f.request_truncated;
    r->truncated[RESP] = f.response_truncated;
    r->dropped[REQ] = (unsigned long long)f.request_body_dropped;
    r->dropped[RESP] = (unsigned long long)f.response_body_dropped;
    r->messages = f.messages;
    if (f.error && f.error[0])
        r->error = reel_strdup(f.error);
    r->replay_of = f.replay_of == REEL_QUERY_NULL ? 0 : f.replay_of;
    if (f.replay_session)
        r->replay_session = reel_strdup(f.replay_session);
    r->uuid = dup_set(f.uuid);
    r->source = dup_set(f.source);
    r->client_addr = dup_set(f.client_addr);
    r->server_addr = dup_set(f.server_addr);
    r->client_conn = f.client_conn == REEL_QUERY_NULL ? 0 : f.client_conn;
    r->stream_id = f.stream_id == REEL_QUERY_NULL ? 0 : f.stream_id;
    reel_query_flow_clear(&f);
    uint64_t of = 0;
    char *of_session = NULL;
    if (reel_replay_links(s, (uint64_t)id, &of, &of_session, &r->replays, &r->nreplays, &err) !=
        REEL_OK) {
        r->replays = NULL;
        r->nreplays = 0;
    }
    free(of_session);
}

/* ---- helpers on recorded heads ---- */

static int bytes_ieq(ProtobufCBinaryData b, const char *s) {
    size_t n = strlen(s);
    if (b.len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = b.data[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)s[i])
            return 0;
    }
    return 1;
}

/* All Content-Encoding values joined with ", " (the list syntax allows
 * several header lines), owned; NULL when there is none. NUL bytes become
 * '?' so the decoder sees, and names, the whole value. */
static char *content_encoding(Reel__Header **h, size_t n) {
    reel_buf_t b;
    reel_buf_init(&b, 64 * 1024);
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (!bytes_ieq(h[i]->name, "content-encoding"))
            continue;
        if (any)
            reel_buf_puts(&b, ", ");
        any = 1;
        for (size_t k = 0; k < h[i]->value.len; k++) {
            uint8_t c = h[i]->value.data[k] ? h[i]->value.data[k] : '?';
            if (reel_buf_append(&b, &c, 1) != REEL_OK)
                break;
        }
    }
    if (!any) {
        reel_buf_free(&b);
        return NULL;
    }
    char *s = reel_strndup(b.data ? (const char *)b.data : "", b.len);
    reel_buf_free(&b);
    return s;
}

/* The first Content-Type value, owned; NULL when there is none. */
static char *content_type(Reel__Header **h, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (bytes_ieq(h[i]->name, "content-type"))
            return reel_strndup((const char *)h[i]->value.data, h[i]->value.len);
    return NULL;
}

static void fmt_duration(long long us, char out[static 32]) {
    if (us < 0)
        us = 0;
    if (us < 1000)
        snprintf(out, 32, "%lld us", us);
    else if (us < 1000000)
        snprintf(out, 32, "%.1f ms", (double)us / 1e3);
    else if (us < 60 * 1000000LL)
        snprintf(out, 32, "%.2f s", (double)us / 1e6);
    else
        snprintf(out, 32, "%lldm%02llds", us / 60000000, (us / 1000000) % 60);
}

/* ---- output for people ---- */

enum { MODE_UNDECIDED, MODE_TEXT, MODE_BINARY };
enum { DEC_UNSET, DEC_ON, DEC_OFF };

typedef struct view view_t;

typedef struct {
    view_t *v;
    int dir;
    int head;    /* head printed */
    int body;    /* a body chunk was seen */
    int closed;  /* body finished (decoder ended, notes printed) */
    int decoded; /* head's body_decoded flag */
    char *encoding;
    reel_decoder_t *dec;
    int dec_state;
    reel_buf_t replay; /* stored bytes while nothing of the body is shown */
    int replay_ok;
    uint64_t dec_out; /* bytes the decoder gave */
    uint64_t stored; /* stored bytes seen */
    /* presenter: decoded (or stored) bytes to stdout */
    reel_buf_t peek;
    int mode;
    uint64_t pos; /* bytes taken by the presenter: the hex dump offset */
    reel_hexdump_t hd;
    int at_bol;         /* text output ends at the start of a line */
    reel_cli_esc_t esc; /* text bodies for people */
    /* --view: the body gathered (at most REEL_VIEW_MAX) and shown at its end */
    reel_buf_t vbuf;
    int vcut;
    char *ctype; /* Content-Type, owned, NULL if none */
    int pmsg;    /* --proto: the schema's message for this body, -1 if none */
    char *edit;  /* modify_body's line for this body, owned, said where it ends; NULL: none */
    /* ... and the body as the other side got it, shown under that line
     * (sent_known: the record kept it; sent_cut: its first bytes only) */
    reel_buf_t sent;
    int sent_known, sent_cut;
} dir_t;

struct view {
    reel_cli_t *cli;
    FILE *out;
    int escape; /* REEL_CLI_ESC when out is a terminal: control bytes as \xNN */
    unsigned long long id;
    int raw, headers_only;
    int view; /* a reel_view_kind, or -1 without --view */
    const reel_proto_t *proto; /* --proto, or NULL */
    int proto_fixed;           /* --proto FILE:MESSAGE named the message */
    row_t *row;
    int summary_done;
    int tunnel;
    int https; /* the request's scheme */
    char *source;
    uint64_t client_conn; /* FlowStart's */
    uint32_t stream_id;
    int client_tls_shown; /* its "~ client TLS" line is out */
    int gap;     /* a blank line is due before the next section */
    int in_messages; /* message lines have begun */
    int msg_mode;    /* content of the message being shown: 0 none, 1 text, 2 hex, 3 --view */
    int msg_open;    /* a message's line is out: its length and bytes stored so far */
    uint64_t msg_len, msg_stored;
    int msg_cut;
    reel_buf_t msg_vbuf; /* --view: the message gathered (at most REEL_VIEW_MAX) */
    int msg_vcut;
    int msg_at_bol;
    reel_cli_esc_t msg_esc;
    reel_hexdump_t msg_hex;
    int current; /* direction printed last, -1 at first */
    uint32_t resp_status; /* the final response's, 0 before it */
    int have_end;
    int read_failed; /* the spool could not be read to the flow's end */
    uint64_t end_size[2];
    int end_truncated[2];
    uint64_t end_dropped[2]; /* *_body_dropped of the end or error record */
    /* A truncated request body: its stored bytes in all (req_stored_known),
     * so that a response head recorded before the last of them does not
     * end it with a note that names too few */
    uint64_t req_stored;
    int req_stored_known;
    dir_t d[2];
};

static void gap(view_t *v) {
    if (v->gap)
        fputc('\n', v->out);
    v->gap = 0;
}

static void note(view_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes one line of recorded (or recorded-derived) bytes: on a terminal,
 * control characters are shown as \xNN (reel_cli_esc_write), so hostile
 * traffic cannot drive the terminal; into a pipe they go as is. */
static void put_raw(view_t *v, const void *p, size_t n) {
    reel_cli_esc_t e = {.flags = v->escape};
    reel_cli_esc_write(&e, v->out, p, n);
    reel_cli_esc_end(&e, v->out);
}

static void put_str(view_t *v, const char *s) {
    if (s)
        put_raw(v, s, strlen(s));
}

/* A line of reel's own words that may quote recorded bytes (an encoding
 * name, a decoder's message): escaped as a whole. */
static void note(view_t *v, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    if (vasprintf(&line, fmt, ap) < 0)
        abort(); /* out of memory */
    va_end(ap);
    put_str(v, line);
    free(line);
    fputc('\n', v->out);
}

static void put_bytes(view_t *v, ProtobufCBinaryData b) {
    if (b.len)
        put_raw(v, b.data, b.len);
}

static void summary(view_t *v) {
    if (v->summary_done)
        return;
    v->summary_done = 1;
    char t[32], dur[32];
    fprintf(v->out, "flow %llu  %s", v->id, v->row->state);
    if (v->tunnel)
        fputs("  tunnel", v->out);
    if (v->row->found && v->row->start_us <= 0) {
        fputs("  start unknown (its start record was lost)", v->out);
    } else if (v->row->found) {
        reel_cli_time(v->row->start_us, t);
        fprintf(v->out, "  %s", t);
        if (v->row->has_end) {
            fmt_duration(v->row->end_us - v->row->start_us, dur);
            fprintf(v->out, "  %s", dur);
        }
    }
    if (v->source && v->source[0] && strcmp(v->source, "proxy") != 0) {
        fputs("  (", v->out);
        put_str(v, v->source);
        fputc(')', v->out);
    }
    if (v->client_conn)
        fprintf(v->out, "  client conn #%llu", (unsigned long long)v->client_conn);
    if (v->stream_id)
        fprintf(v->out, " stream %u", (unsigned)v->stream_id);
    if (v->row->replay_of) {
        fprintf(v->out, "  replay of #%lld", v->row->replay_of);
        if (v->row->replay_session) {
            fputs(" in ", v->out);
            put_str(v, v->row->replay_session);
        }
    }
    for (size_t i = 0; i < v->row->nreplays && i < 10; i++)
        fprintf(v->out, "%s#%llu", i ? ", " : "  replayed as ",
                (unsigned long long)v->row->replays[i]);
    if (v->row->nreplays > 10)
        fprintf(v->out, " and %zu more", v->row->nreplays - 10);
    fputc('\n', v->out);
    v->gap = 1;
}

static void emit_out(dir_t *d, const uint8_t *p, size_t n) {
    if (n == 0)
        return;
    d->pos += n;
    if (d->mode == MODE_TEXT) {
        reel_cli_esc_write(&d->esc, d->v->out, p, n);
        d->at_bol = p[n - 1] == '\n';
    } else {
        reel_hexdump_feed(&d->hd, p, n);
    }
}

static void drop_replay(dir_t *d) {
    reel_buf_free(&d->replay);
    d->replay_ok = 0;
}

/* Settles text or binary on what has been gathered and shows it (whole:
 * it is all there is, and a character cut by its end makes it binary: a
 * 5-byte body ending in a lead byte was printed as text, not UTF-8). */
static void decide(dir_t *d, int whole) {
    d->mode = (whole ? reel_looks_text_whole : reel_looks_text)(d->peek.data, d->peek.len)
                  ? MODE_TEXT
                  : MODE_BINARY;
    d->at_bol = 1;
    memset(&d->esc, 0, sizeof d->esc);
    d->esc.flags = (d->v->raw ? 0 : d->v->escape) | REEL_CLI_ESC_LINES;
    if (d->mode == MODE_BINARY) {
        reel_hexdump_init(&d->hd, d->v->out);
        d->hd.offset = d->pos;
    }
    drop_replay(d); /* something is shown: no going back to the stored bytes */
    emit_out(d, d->peek.data, d->peek.len);
    reel_buf_free(&d->peek);
}

static void show(dir_t *d, const uint8_t *p, size_t n) {
    if (d->v->view >= 0) {
        size_t room = REEL_VIEW_MAX - d->vbuf.len;
        if (n > room)
            d->vcut = 1;
        reel_buf_append(&d->vbuf, p, n > room ? room : n);
        return;
    }
    if (d->mode == MODE_UNDECIDED) {
        size_t k = PEEK_MAX - d->peek.len;
        if (k > n)
            k = n;
        reel_buf_append(&d->peek, p, k);
        p += k;
        n -= k;
        if (d->peek.len < PEEK_MAX)
            return;
        decide(d, 0);
    }
    emit_out(d, p, n);
}

/* Flushes the presenter: the undecided sample, the last hex line, a final
 * newline after text. Later bytes go on in the same mode and offsets unless
 * the caller resets mode and pos. */
static void show_flush(dir_t *d) {
    if (d->v->view >= 0)
        return; /* shown by view_flush when the body ends */
    if (d->mode == MODE_UNDECIDED && d->peek.len > 0)
        decide(d, 1); /* (what did not fill the sample is all of it) */
    if (d->mode == MODE_BINARY) {
        reel_hexdump_finish(&d->hd);
    } else if (d->mode == MODE_TEXT) {
        reel_cli_esc_end(&d->esc, d->v->out);
    }
    if (d->mode == MODE_TEXT && !d->at_bol) {
        fputc('\n', d->v->out);
        d->at_bol = 1;
    }
    if (d->mode != MODE_UNDECIDED)
        d->v->gap = 1;
}

/* --view: escaping on a terminal (not with --raw), colour unless NO_COLOR. */
static int view_flags(const view_t *v) {
    int flags = 0;
    if (v->escape && !v->raw) {
        flags |= REEL_VIEW_TERM;
        const char *nc = getenv("NO_COLOR");
        if (nc == NULL || nc[0] == '\0')
            flags |= REEL_VIEW_COLOR;
    }
    return flags;
}

/* --view: the gathered body through its view. */
static void view_flush(dir_t *d) {
    view_t *v = d->v;
    if (v->view < 0 || (d->vbuf.len == 0 && !d->vcut))
        return;
    reel_view_schema_t schema = {.proto = v->proto, .message = d->pmsg};
    reel_view_render_schema((reel_view_kind)v->view, d->ctype, d->vbuf.data, d->vbuf.len, d->vcut,
                            view_flags(v), &schema, v->out);
    reel_buf_reset(&d->vbuf);
    d->vcut = 0;
    d->mode = MODE_UNDECIDED;
    v->gap = 1;
}

static int dec_sink(void *ctx, const uint8_t *data, size_t len) {
    ((dir_t *)ctx)->dec_out += len;
    show(ctx, data, len);
    return 0;
}

static void dec_start(dir_t *d) {
    view_t *v = d->v;
    d->dec_state = DEC_OFF;
    if (v->raw || d->decoded || d->encoding == NULL)
        return;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_decoder_new(d->encoding, dec_sink, d, &d->dec, &err) != REEL_OK) {
        note(v, "(not decoded: %s; the body follows as stored)", reel_err_str(&err));
        return;
    }
    d->dec_state = DEC_ON;
    d->dec_out = 0;
    d->replay_ok = 1;
    reel_buf_init(&d->replay, REPLAY_MAX);
}

/* The decoder failed on the chunk p[0..n) that starts at stored offset off:
 * what follows is what ~b searches (session/filter.h says which bytes). */
static void dec_failed(dir_t *d, const reel_err_t *err, const uint8_t *p, size_t n, uint64_t off) {
    view_t *v = d->v;
    reel_decoder_free(d->dec);
    d->dec = NULL;
    d->dec_state = DEC_OFF;
    /* (without --view, nothing is shown while the replay is kept, and the
     * mode is undecided while fewer than PEEK_MAX bytes were decoded) */
    if (d->replay_ok && d->dec_out < PEEK_MAX) {
        /* Nothing shown yet: show the whole body as stored instead. */
        reel_buf_free(&d->peek);
        reel_buf_reset(&d->vbuf); /* --view: the stored bytes instead */
        d->vcut = 0;
        note(v, "(could not decode Content-Encoding '%s': %s; the body follows as stored)",
             d->encoding, reel_err_str(err));
        reel_buf_t replay = d->replay;
        d->replay_ok = 0;
        memset(&d->replay, 0, sizeof d->replay);
        d->pos = 0;
        show(d, replay.data, replay.len);
        reel_buf_free(&replay);
        return;
    }
    drop_replay(d);
    show_flush(d);
    note(v,
         "(could not decode Content-Encoding '%s' past this point: %s; the rest of the body, "
         "from stored byte %llu, follows as stored)",
         d->encoding, reel_err_str(err), (unsigned long long)off);
    d->mode = MODE_UNDECIDED;
    d->pos = off;
    show(d, p, n);
}

/* Prints what introduces body bytes of d when they do not simply follow
 * its head. */
static void body_marker(view_t *v, dir_t *d) {
    char c = d->dir == REQ ? '>' : '<';
    gap(v);
    if (v->tunnel && !d->head)
        fprintf(v->out, "%c (%s)\n", c, d->dir == REQ ? "client to server" : "server to client");
    else if (!d->head && !d->body)
        fprintf(v->out, "%c (%s body without a recorded head)\n", c, dir_name[d->dir]);
    else if (!d->body)
        fprintf(v->out, "%c (%s body)\n", c, dir_name[d->dir]);
    else
        fprintf(v->out, "%c (%s body, continued)\n", c, dir_name[d->dir]);
}

static void close_body(view_t *v, dir_t *d);

static void body_chunk(view_t *v, int dir, const uint8_t *p, size_t n) {
    dir_t *d = &v->d[dir];
    dir_t *other = &v->d[!dir];
    summary(v);
    if (v->headers_only) {
        d->body = 1;
        d->stored += n;
        return;
    }
    if (d->closed) {
        /* Body bytes after the body was closed (a request body that goes on
         * after the response began): shown as stored from where they are. */
        d->closed = 0;
        d->dec_state = DEC_OFF;
        d->mode = MODE_UNDECIDED;
        d->pos = d->stored;
    }
    if (v->current != dir) {
        if (other->body && !other->closed)
            show_flush(other);
        if (n > 0)
            body_marker(v, d);
    } else if (!d->body) {
        gap(v);
    }
    v->current = dir;
    d->body = 1;
    uint64_t off = d->stored;
    d->stored += n;
    if (n == 0)
        return;
    if (d->dec_state == DEC_UNSET)
        dec_start(d);
    if (d->dec_state == DEC_OFF) {
        show(d, p, n);
        return;
    }
    if (d->replay_ok && reel_buf_append(&d->replay, p, n) != REEL_OK) {
        /* Too much stored data before the text/binary decision: decide now
         * on what there is, and give up showing it all as stored. */
        if (d->mode == MODE_UNDECIDED && d->peek.len > 0)
            decide(d, 0);
        drop_replay(d);
    }
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_decoder_feed(d->dec, p, n, &err) != REEL_OK)
        dec_failed(d, &err, p, n, off);
}

static uint64_t wire_size(const view_t *v, int dir) {
    return v->have_end ? v->end_size[dir] : v->row->size[dir];
}

/* Why a truncated body is cut, as its flow's records say: bytes the
 * recorder left out because capture fell behind the disk (the end's
 * *_body_dropped; it says truncated then too), the rest by body_limit; a
 * flow imported from a HAR was cut before the HAR was written (an import
 * stores every byte given) by reel's body_limit, a browser's own limit,
 * ...: the record does not say which. */
static const char *cut_cause(const view_t *v, const dir_t *d) {
    uint64_t dropped = v->have_end ? v->end_dropped[d->dir] : v->row->dropped[d->dir];
    uint64_t wire = wire_size(v, d->dir);
    uint64_t missing = wire > d->stored ? wire - d->stored : 0;
    if (dropped && missing > dropped)
        return ": capture fell behind the disk, and body_limit cut the rest";
    if (dropped)
        return ": capture fell behind the disk";
    if (v->source && strcmp(v->source, "har-import") == 0)
        return ": the HAR it was imported from held no more";
    return " by body_limit";
}

/* The body the other side got, under modify_body's line: text as text
 * (escaped on a terminal unless --raw), else a hex dump; through --view's
 * view when one is asked for. */
static void sent_show(view_t *v, dir_t *d) {
    const uint8_t *p = d->sent.data;
    size_t n = d->sent.len;
    if (v->view >= 0) {
        reel_view_schema_t schema = {.proto = v->proto, .message = d->pmsg};
        reel_view_render_schema((reel_view_kind)v->view, d->ctype, p, n, d->sent_cut, view_flags(v),
                                &schema, v->out);
    } else if ((d->sent_cut ? reel_looks_text : reel_looks_text_whole)(p, n)) {
        reel_cli_esc_t esc = {.flags = (v->raw ? 0 : v->escape) | REEL_CLI_ESC_LINES};
        reel_cli_esc_write(&esc, v->out, p, n);
        reel_cli_esc_end(&esc, v->out);
        if (p[n - 1] != '\n')
            fputc('\n', v->out);
    } else {
        reel_hexdump_t hd;
        reel_hexdump_init(&hd, v->out);
        reel_hexdump_feed(&hd, p, n);
        reel_hexdump_finish(&hd);
    }
    if (d->sent_cut)
        fprintf(v->out, "  (the first %zu bytes: the record keeps no more)\n", n);
    v->gap = 1;
}

/* Says the modify_body line held for d, once, and what it sent. */
static void edit_say(view_t *v, dir_t *d) {
    if (d->edit == NULL)
        return;
    int body = d->sent_known && d->sent.len && !v->headers_only;
    note(v, "%s%s", d->edit, body ? ":" : "");
    free(d->edit);
    d->edit = NULL;
    if (body)
        sent_show(v, d);
    reel_buf_free(&d->sent);
    d->sent_known = 0;
}

static void close_body(view_t *v, dir_t *d) {
    if (d->closed)
        return;
    d->closed = 1;
    int truncated = v->row->truncated[d->dir] || (v->have_end && v->end_truncated[d->dir]);
    if (d->dec_state == DEC_ON) {
        reel_err_t err;
        reel_err_clear(&err);
        reel_rc rc = reel_decoder_finish(d->dec, &err);
        reel_decoder_free(d->dec);
        d->dec = NULL;
        d->dec_state = DEC_OFF;
        show_flush(d);
        if (rc != REEL_OK && !truncated && !v->read_failed)
            note(v, "(could not decode Content-Encoding '%s' to the end: %s)", d->encoding,
                 reel_err_str(&err));
    } else {
        show_flush(d);
    }
    if (v->view >= 0 && (d->vbuf.len || d->vcut) && v->current >= 0 && v->current != d->dir) {
        /* --view shows a body at its end: after the other body's bytes (a
         * request body recorded after the response began), say whose */
        gap(v);
        fprintf(v->out, "%c (%s body)\n", d->dir == REQ ? '>' : '<', dir_name[d->dir]);
        v->current = d->dir;
    }
    view_flush(d);
    drop_replay(d);
    /* The note follows its body's bytes; after the other body's (a request
     * body recorded after the response), it names its body */
    const char *which = v->current == d->dir ? "" : d->dir == REQ ? "request " : "response ";
    if (truncated && !v->headers_only && wire_size(v, d->dir) > d->stored)
        note(v, "(%sbody truncated at %llu of %llu bytes%s)", which, (unsigned long long)d->stored,
             (unsigned long long)wire_size(v, d->dir), cut_cause(v, d));
    else if (truncated && !v->headers_only) /* its size on the wire is not known */
        note(v, "(%sbody truncated at %llu bytes%s)", which, (unsigned long long)d->stored,
             cut_cause(v, d));
    edit_say(v, d);
    if (d->body)
        v->gap = 1;
}

static void print_headers(view_t *v, char c, Reel__Header **h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        fprintf(v->out, "%c ", c);
        put_bytes(v, h[i]->name);
        fputs(": ", v->out);
        put_bytes(v, h[i]->value);
        fputc('\n', v->out);
    }
}

/* modify_headers' changes to a head as reel sent it on: the fields above
 * are as they came */
static void print_edits(view_t *v, const char *what, Reel__HeaderEdit **e, size_t n) {
    if (n == 0)
        return;
    note(v,
         "~ modify_headers changed the %s reel sent on (the fields above are as they came):", what);
    for (size_t i = 0; i < n; i++)
        if (e[i]->removed)
            note(v, "~   removed %.*s  (rule '%s')", (int)e[i]->name.len,
                 (const char *)e[i]->name.data, e[i]->rule);
        else
            note(v, "~   set %.*s: %.*s  (rule '%s')", (int)e[i]->name.len,
                 (const char *)e[i]->name.data, (int)e[i]->value.len,
                 (const char *)e[i]->value.data, e[i]->rule);
}

static void request_head(view_t *v, const Reel__RequestHead *h) {
    dir_t *d = &v->d[REQ];
    v->https = h->scheme && strcmp(h->scheme, "https") == 0;
    summary(v);
    gap(v);
    fputs("> ", v->out);
    put_bytes(v, h->method);
    fputc(' ', v->out);
    if (h->target.len == 0 && h->host.len > 0) {
        /* A tunnel's head: no target, the authority it was opened to. */
        int v6 = memchr(h->host.data, ':', h->host.len) != NULL;
        if (v6)
            fputc('[', v->out);
        put_bytes(v, h->host);
        fprintf(v->out, "%s:%u", v6 ? "]" : "", h->port);
    } else if (h->host.len && (h->absolute_form ||
                               (h->http_version && strncmp(h->http_version, "HTTP/2", 6) == 0 &&
                                !reel_index_header(h->headers, h->n_headers, "host")))) {
        /* The absolute form, as the client sent it (a proxy request), and
         * for HTTP/2, which names scheme and authority in pseudo-header
         * fields, not in a Host field (as mitmproxy shows them) */
        reel_buf_t b;
        reel_buf_init(&b, 0);
        reel_index_url(h, &b);
        put_bytes(v, (ProtobufCBinaryData){.len = b.len, .data = b.data});
        reel_buf_free(&b);
    } else {
        put_bytes(v, h->target);
    }
    if (h->http_version && h->http_version[0]) {
        fputc(' ', v->out);
        put_str(v, h->http_version);
    }
    fputc('\n', v->out);
    print_headers(v, '>', h->headers, h->n_headers);
    if (h->reverse) {
        /* the Host above is the client's; the origin got its own */
        int v6 = memchr(h->host.data, ':', h->host.len) != NULL;
        unsigned def = v->https ? 443 : 80;
        char port[16] = "";
        if (h->port != def)
            snprintf(port, sizeof port, ":%u", h->port);
        note(v, "~ reel as a reverse proxy (reverse_to): the origin got Host: %s%.*s%s%s",
             v6 ? "[" : "", (int)h->host.len, (const char *)h->host.data, v6 ? "]" : "", port);
    }
    if (h->mapped_to && h->mapped_to[0])
        note(v, "~ map_remote sent it to %s (Host from it)", h->mapped_to);
    print_edits(v, "request", h->modified, h->n_modified);
    if (h->original_dst && h->original_dst[0])
        note(v,
             "~ came transparently (redirected to reel by the OS): it went to %s, where the "
             "client had connected",
             h->original_dst);
    const uint8_t *q = h->target.len ? memchr(h->target.data, '?', h->target.len) : NULL;
    if (v->proto && !v->proto_fixed && h->target.len) {
        /* gRPC: the rpc the path names gives both bodies their messages */
        size_t plen = q ? (size_t)(q - h->target.data) : h->target.len;
        const reel_pt_rpc_t *rpc = reel_proto_rpc(v->proto, (const char *)h->target.data, plen);
        v->d[REQ].pmsg = rpc ? rpc->in : -1;
        v->d[RESP].pmsg = rpc ? rpc->out : -1;
    }
    if (v->view >= 0 && q) {
        /* --view: the query string as a table too */
        fputs("\n> (query)\n", v->out);
        reel_view_render(REEL_VIEW_URLENCODED, NULL, q + 1,
                         h->target.len - (size_t)(q + 1 - h->target.data), 0, view_flags(v),
                         v->out);
    }
    v->gap = 1;
    v->current = REQ;
    d->head = 1;
    d->decoded = h->body_decoded;
    free(d->encoding);
    d->encoding = content_encoding(h->headers, h->n_headers);
    free(d->ctype);
    d->ctype = content_type(h->headers, h->n_headers);
}

/* A response's status line and fields, after the request's body; `mark`
 * follows the status line. A final head ends the request body (bytes of it
 * recorded later are shown after it as "continued"); an interim one does
 * not: after "100 Continue" the client sends its body, so what came of it
 * is only flushed, and the body is closed, with its truncation note, where
 * it ends. Neither does a final head recorded before the last stored byte
 * of a truncated request body, whose note must name all of them. */
static void status_and_headers(view_t *v, const Reel__ResponseHead *h, const char *mark,
                               int interim) {
    dir_t *req = &v->d[REQ];
    summary(v);
    if (!interim && !(v->req_stored_known && req->stored < v->req_stored)) {
        close_body(v, req);
    } else {
        /* a 1xx, or a final head before the last stored bytes of the
         * request body (an origin that answers before it has read it all) */
        if (req->body && !req->closed) {
            show_flush(req);
            view_flush(req); /* --view: what came so far, before the head */
        }
        v->current = RESP; /* the request's next bytes come under a marker */
    }
    gap(v);
    fputs("< ", v->out);
    put_str(v, h->http_version);
    fprintf(v->out, " %u", h->status);
    if (h->reason.len) {
        fputc(' ', v->out);
        put_bytes(v, h->reason);
    }
    fputs(mark, v->out);
    fputc('\n', v->out);
    print_headers(v, '<', h->headers, h->n_headers);
    v->gap = 1;
}

/* A 1xx answer before the final one (103 Early Hints, 100 Continue). */
static void interim_head(view_t *v, const Reel__ResponseHead *h) {
    status_and_headers(v, h, "   [interim]", 1);
}

/* The trailer fields of a body, after it. */
static void trailers_show(view_t *v, const Reel__Trailers *t) {
    int dir = t->response ? RESP : REQ;
    close_body(v, &v->d[dir]);
    gap(v);
    if (t->not_passed_on)
        note(v,
             "~ %s trailers, which reel could not pass on: the HTTP/1.1 request it made of the "
             "client's HTTP/2 stream, framed by its content-length, has no place for them:",
             t->response ? "response" : "request");
    else
        note(v, "~ %s trailers:", t->response ? "response" : "request");
    print_headers(v, t->response ? '<' : '>', t->headers, t->n_headers);
    v->gap = 1;
}

static void response_head(view_t *v, const Reel__ResponseHead *h) {
    dir_t *d = &v->d[RESP];
    status_and_headers(v, h, h->generated ? "   [sent by reel, not by the server]" : "", 0);
    if (h->local_file && h->local_file[0])
        note(v, "~ map_local answered from %s (no origin got the request)", h->local_file);
    if (h->blocked_by && h->blocked_by[0])
        note(v, "~ block_list rule '%s' answered (no origin got the request)", h->blocked_by);
    print_edits(v, "response", h->modified, h->n_modified);
    v->resp_status = h->status;
    v->current = RESP;
    d->head = 1;
    d->decoded = h->body_decoded;
    free(d->encoding);
    d->encoding = content_encoding(h->headers, h->n_headers);
    free(d->ctype);
    d->ctype = content_type(h->headers, h->n_headers);
}

/* "~ timings: dns 1.2 ms, connect 0.3 ms, ..." for the phases that
 * happened, then the server address and body bytes capture dropped. */
static void print_end_facts(view_t *v, const Reel__Timings *t, const char *server_addr,
                            uint64_t dropped_req, uint64_t dropped_resp, uint64_t lost_msgs,
                            uint64_t excess) {
    if (t) {
        const struct {
            const char *name;
            int64_t us;
        } ph[] = {{"blocked", t->blocked_us}, {"dns", t->dns_us},   {"connect", t->connect_us},
                  {"ssl", t->ssl_us},         {"send", t->send_us}, {"wait", t->wait_us},
                  {"receive", t->receive_us}};
        int n = 0;
        for (size_t i = 0; i < sizeof ph / sizeof ph[0]; i++) {
            if (ph[i].us < 0)
                continue;
            char d[32];
            fmt_duration(ph[i].us, d);
            fprintf(v->out, "%s%s %s", n++ ? ", " : "~ timings: ", ph[i].name, d);
        }
        if (n)
            fputc('\n', v->out);
    }
    if (server_addr && server_addr[0])
        fprintf(v->out, "~ server: %s\n", server_addr);
    for (int dir = 0; dir < 2; dir++) {
        uint64_t n = dir == REQ ? dropped_req : dropped_resp;
        if (n)
            fprintf(v->out, "! %llu bytes of the %s body were not stored (capture fell behind)\n",
                    (unsigned long long)n, dir_name[dir]);
    }
    if (lost_msgs)
        fprintf(v->out, "! %llu message%s not stored at all (capture fell behind)\n",
                (unsigned long long)lost_msgs, lost_msgs == 1 ? " was" : "s were");
    if (excess)
        fprintf(v->out,
                "! the origin sent %llu byte%s more after the end of its response (as its "
                "framing said): not passed on, its connection closed\n",
                (unsigned long long)excess, excess == 1 ? "" : "s");
}

/* Unknown opcodes read "opcode?" here. */
static const char *opcode_name(uint32_t op) {
    const char *n = reel_store_opcode_name(op);
    return n ? n : "opcode?";
}

/* Ends the content of the message being shown. */
static void message_close(view_t *v) {
    if (v->msg_mode == 1) {
        reel_cli_esc_end(&v->msg_esc, v->out);
        if (!v->msg_at_bol)
            fputc('\n', v->out);
    } else if (v->msg_mode == 2) {
        reel_hexdump_finish(&v->msg_hex);
    } else if (v->msg_mode == 3) {
        /* --view websocket (or auto): each message as auto picks; any
         * other view: that one */
        reel_view_kind k = v->view == REEL_VIEW_WEBSOCKET ? REEL_VIEW_AUTO : v->view;
        reel_view_render(k, NULL, v->msg_vbuf.data, v->msg_vbuf.len, v->msg_vcut, view_flags(v),
                         v->out);
        reel_buf_reset(&v->msg_vbuf);
        v->msg_vcut = 0;
    }
    v->msg_mode = 0;
    /* fewer bytes than its length, not cut by body_limit: its later
     * records are not in the spool */
    if (v->msg_open && !v->msg_cut && v->msg_stored < v->msg_len)
        fprintf(v->out,
                "  (incomplete: %llu of its %llu bytes are in the spool; the flow is still being "
                "written, or the rest was lost)\n",
                (unsigned long long)v->msg_stored, (unsigned long long)v->msg_len);
    v->msg_open = 0;
}

/* A message as a turn of the conversation: a line with time, direction,
 * kind and length, then its stored payload, text as text (escaped on a
 * terminal unless --raw) and anything else as a hex dump. A payload longer
 * than one record continues in the next records. */
static void message_show(view_t *v, int64_t time_us, const Reel__Message *m) {
    if (!m->continued) {
        message_close(v);
        v->msg_open = 1;
        v->msg_len = m->length;
        v->msg_stored = 0;
        v->msg_cut = m->truncated;
    }
    v->msg_stored += m->data.len;
    if (!m->continued) {
        summary(v);
        close_body(v, &v->d[REQ]);
        close_body(v, &v->d[RESP]);
        if (!v->in_messages) {
            gap(v);
            v->in_messages = 1;
        }
        char t[32];
        reel_cli_time(time_us, t);
        const char *clock = strchr(t, ' ') ? strchr(t, ' ') + 1 : t;
        fprintf(v->out, "%c %s %s %llu B%s%s", m->from_client ? '>' : '<', clock,
                opcode_name(m->opcode), (unsigned long long)m->length,
                m->compressed ? ", deflate" : "", m->truncated ? ", cut by body_limit" : "");
        if (m->opcode == 8) {
            fprintf(v->out, ", code %u", m->close_code);
            if (m->data.len > 2) {
                fputs(": ", v->out);
                put_raw(v, m->data.data + 2, m->data.len - 2);
            }
            fputc('\n', v->out);
            return;
        }
        fputc('\n', v->out);
        if (v->headers_only || m->data.len == 0)
            return;
        if (v->view >= 0 && m->opcode != 8) { /* a close's reason is on its line */
            v->msg_mode = 3;
        } else {
            /* (all of it here: a character cut by its end is not text) */
            bool whole = !m->truncated && m->data.len == m->length;
            v->msg_mode = m->opcode == 1 || (whole ? reel_looks_text_whole
                                                   : reel_looks_text)(m->data.data, m->data.len)
                              ? 1
                              : 2;
        }
        if (v->msg_mode == 1) {
            v->msg_esc = (reel_cli_esc_t){.flags = (v->raw ? 0 : v->escape) | REEL_CLI_ESC_LINES};
            v->msg_at_bol = 1;
        } else if (v->msg_mode == 2) {
            reel_hexdump_init(&v->msg_hex, v->out);
        }
    }
    if (m->data.len == 0 || v->msg_mode == 0)
        return;
    if (v->msg_mode == 3) {
        size_t room = REEL_VIEW_MAX - v->msg_vbuf.len;
        if (m->data.len > room)
            v->msg_vcut = 1;
        reel_buf_append(&v->msg_vbuf, m->data.data, m->data.len > room ? room : m->data.len);
        return;
    }
    if (v->msg_mode == 1) {
        reel_cli_esc_write(&v->msg_esc, v->out, m->data.data, m->data.len);
        v->msg_at_bol = m->data.data[m->data.len - 1] == '\n';
    } else {
        reel_hexdump_feed(&v->msg_hex, m->data.data, m->data.len);
    }
}

/* "~ connection set up: dns 1.0 ms, connect 0.2 ms, ssl 3.1 ms, begun 4.5 ms
 * before this flow": what the connection's set-up took, which the flow's
 * timings count only when it was opened for this flow (not for a reused
 * one, nor one set up before the request came). Nothing when not known. */
static void conn_setup_line(view_t *v, const Reel__ServerConn *sc) {
    if (sc->opened_us == 0)
        return;
    const struct {
        const char *name;
        int64_t us;
    } ph[] = {{"dns", sc->dns_us}, {"connect", sc->connect_us}, {"ssl", sc->ssl_us}};
    char line[160];
    size_t n = 0;
    for (size_t i = 0; i < sizeof ph / sizeof ph[0]; i++) {
        if (ph[i].us < 0)
            continue;
        char d[32];
        fmt_duration(ph[i].us, d);
        int k = snprintf(line + n, sizeof line - n, "%s%s %s", n ? ", " : "", ph[i].name, d);
        if (k > 0 && (size_t)k < sizeof line - n)
            n += (size_t)k;
    }
    long long start = v->row ? v->row->start_us : 0;
    char when[96] = "";
    if (start) {
        char d[32];
        long long off = (long long)sc->opened_us - start;
        fmt_duration(off < 0 ? -off : off, d);
        snprintf(when, sizeof when, "%sbegun %s %s this flow", n ? ", " : "", d,
                 off < 0 ? "before" : "after the start of");
    }
    if (n || when[0])
        note(v, "~ connection set up: %s%s", n ? line : "", when);
}

/* What modify_body rules did to a body, said where that body ends (after
 * its bytes, before the response for a request's): the record comes after
 * the body's last chunk, or after the head when reel knew then that the
 * rules would not apply, and the body's bytes may not all be out yet. */
static void body_edit_line(view_t *v, const Reel__BodyEdit *b) {
    dir_t *d = &v->d[b->response ? RESP : REQ];
    const char *who = b->response ? "the client" : "the origin";
    reel_buf_t rules, line;
    reel_buf_init(&rules, 0);
    reel_buf_init(&line, 0);
    for (size_t i = 0; i < b->n_rules; i++)
        reel_buf_printf(&rules, "%s'%s'", i ? ", " : "", b->rules[i]);
    if (b->not_applied[0])
        reel_buf_printf(&line, "~ modify_body: %s not applied (%s): %s got the body as it came",
                        rules.len ? (const char *)rules.data : "the rules", b->not_applied, who);
    else
        reel_buf_printf(&line,
                        "~ modify_body: %llu replacement%s by %s; %s got %llu bytes%s, with a "
                        "Content-Length",
                        (unsigned long long)b->replacements, b->replacements == 1 ? "" : "s",
                        rules.len ? (const char *)rules.data : "no rule", who,
                        (unsigned long long)b->sent_size,
                        b->decoded ? ", decoded from its Content-Encoding" : "");
    if (b->answered_continue) /* (the head went with the body) */
        reel_buf_puts(&line, "; reel answered its Expect: 100-continue itself");
    free(d->edit);
    d->edit = reel_strdup((const char *)line.data);
    reel_buf_reset(&d->sent);
    d->sent_known = reel_body_edit_sent_kept(b);
    d->sent_cut = b->sent_body_truncated;
    if (d->sent_known)
        reel_buf_append(&d->sent, b->sent_body.data, b->sent_body.len);
    reel_buf_free(&rules);
    reel_buf_free(&line);
    if (d->closed) { /* (its end was said already) */
        message_close(v);
        edit_say(v, d);
    }
}

static void server_conn_line(view_t *v, const Reel__ServerConn *sc) {
    message_close(v);
    summary(v);
    gap(v);
    /* through an upstream proxy: its address, the name it was given when
     * that is another, and the tunnel it opened */
    bool via = sc->via[0] != '\0', named = via && strcmp(sc->via, sc->address) != 0;
    note(v, "~ connection #%llu%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s", (unsigned long long)sc->conn_id,
         sc->address[0] ? (via ? " to the upstream proxy " : " to ") : "", sc->address,
         named ? " (" : "", named ? sc->via : "", named ? ")" : "",
         !via              ? ""
         : sc->via_forward ? ", which the request went to as it came (absolute form, no CONNECT)"
         : strncmp(sc->via, "socks5", 6) == 0 ? ", a SOCKS5 tunnel to the origin"
                                              : ", a CONNECT tunnel to the origin",
         sc->tls_version[0] ? ", " : "", sc->tls_version, sc->cipher[0] ? " " : "", sc->cipher,
         sc->alpn[0] ? ", ALPN " : "", sc->alpn, sc->sni[0] ? ", SNI " : "", sc->sni,
         sc->resumed ? ", resumed session" : "",
         sc->unverified ? ", certificate NOT verified (upstream_cert_verify was off)" : "",
         /* no address: a retry's connection that never connected */
         sc->retried && !sc->address[0]
             ? " (reel opened it to send the request again: the kept-alive one closed before "
               "answering; it could not connect)"
         /* an address but no handshake: that TLS failed, nothing was sent */
         : sc->retried && v->https && sc->ssl_us < 0
             ? " (reel opened it to send the request again: the kept-alive one closed before "
               "answering; its TLS handshake failed)"
         : sc->retried ? " (the request was sent again on this new connection: the kept-alive "
                         "one closed before answering)"
         : sc->reused  ? " (kept alive from an earlier flow)"
                       : "");
    if (sc->dns_override && sc->dns_override[0])
        note(v,
             "~ its address from dns_overrides '%s', not from DNS (SNI and the certificate "
             "check kept the name)",
             sc->dns_override);
    if (sc->verify_error[0] && sc->unverified) /* found by a check that ended nothing */
        note(v, "~ certificate would have FAILED verification (reel went on): %s; %s",
             sc->verify_error,
             sc->peer_cert[0] ? sc->peer_cert : "the certificate could not be read");
    else if (sc->verify_error[0]) /* a handshake the check of the certificate ended */
        note(v, "~ certificate verify FAILED: %s; %s", sc->verify_error,
             sc->peer_cert[0] ? sc->peer_cert : "the certificate could not be read");
    if (sc->client_cert_asked && sc->client_cert[0])
        note(v,
             "~ the origin asked for a client certificate: reel presented %s "
             "(upstream_client_certs)",
             sc->client_cert);
    else if (sc->client_cert_asked)
        note(v, "~ the origin asked for a client certificate: reel had none for it, and went on "
                "without");
    conn_setup_line(v, sc);
}

/* "~ client TLS: ...", from the start record, else (a TLS tunnel whose
 * client's handshake came after its flow began) from the end's. */
static void client_tls_line(view_t *v, const Reel__ClientTls *t) {
    if (t == NULL || v->client_tls_shown)
        return;
    v->client_tls_shown = 1;
    note(v, "~ client TLS: %s%s%s%s%s%s%s%s", t->tls_version, t->cipher[0] ? " " : "", t->cipher,
         t->alpn[0] ? ", ALPN " : "", t->alpn, t->sni[0] ? ", SNI " : ", no SNI", t->sni,
         t->resumed ? ", resumed session" : "");
}

static int view_record(void *ctx, const Reel__Record *rec) {
    view_t *v = ctx;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START:
        v->tunnel = rec->start->kind == REEL__FLOW_KIND__FLOW_KIND_TUNNEL;
        free(v->source);
        v->source = reel_strdup(rec->start->source);
        v->client_conn = rec->start->client_conn;
        v->stream_id = rec->start->stream_id;
        summary(v);
        client_tls_line(v, rec->start->client_tls);
        break;
    case REEL__RECORD__EVENT_REQUEST_HEAD:
        request_head(v, rec->request_head);
        break;
    case REEL__RECORD__EVENT_REQUEST_BODY:
        body_chunk(v, REQ, rec->request_body->data.data, rec->request_body->data.len);
        break;
    case REEL__RECORD__EVENT_RESPONSE_HEAD:
        response_head(v, rec->response_head);
        break;
    case REEL__RECORD__EVENT_INTERIM:
        interim_head(v, rec->interim);
        break;
    case REEL__RECORD__EVENT_TRAILERS:
        trailers_show(v, rec->trailers);
        break;
    case REEL__RECORD__EVENT_MESSAGE:
        message_show(v, rec->time_us, rec->message);
        break;
    case REEL__RECORD__EVENT_SERVER_CONN:
        server_conn_line(v, rec->server_conn);
        break;
    case REEL__RECORD__EVENT_BODY_EDIT:
        body_edit_line(v, rec->body_edit);
        break;
    case REEL__RECORD__EVENT_RESPONSE_BODY:
        body_chunk(v, RESP, rec->response_body->data.data, rec->response_body->data.len);
        break;
    case REEL__RECORD__EVENT_END:
        message_close(v);
        v->have_end = 1;
        v->end_size[REQ] = rec->end->request_body_size;
        v->end_size[RESP] = rec->end->response_body_size;
        v->end_truncated[REQ] = rec->end->request_truncated;
        v->end_truncated[RESP] = rec->end->response_truncated;
        v->end_dropped[REQ] = rec->end->request_body_dropped;
        v->end_dropped[RESP] = rec->end->response_body_dropped;
        summary(v);
        close_body(v, &v->d[REQ]);
        close_body(v, &v->d[RESP]);
        gap(v);
        client_tls_line(v, rec->end->client_tls);
        print_end_facts(v, rec->end->timings, rec->end->server_addr, rec->end->request_body_dropped,
                        rec->end->response_body_dropped, rec->end->messages_dropped,
                        rec->end->response_excess);
        /* A complete flow whose request never ended (docs/format.md): the
         * final response came first, an early 413 or an answer to Expect:
         * 100-continue, and the exchange ended without the rest */
        if (!v->tunnel && v->d[REQ].head && v->d[RESP].head && v->resp_status != 101 &&
            rec->end->request_end_us == 0)
            fprintf(v->out,
                    "~ the request was not sent whole: the final response came before its body "
                    "ended, and the exchange ended with %llu byte%s of it (RFC 9110 10.1.1 lets "
                    "a client stop sending)\n",
                    (unsigned long long)rec->end->request_body_size,
                    rec->end->request_body_size == 1 ? "" : "s");
        break;
    case REEL__RECORD__EVENT_ERROR:
        message_close(v);
        v->have_end = 1;
        v->end_size[REQ] = rec->error->request_body_size;
        v->end_size[RESP] = rec->error->response_body_size;
        v->end_truncated[REQ] = rec->error->request_truncated;
        v->end_truncated[RESP] = rec->error->response_truncated;
        v->end_dropped[REQ] = rec->error->request_body_dropped;
        v->end_dropped[RESP] = rec->error->response_body_dropped;
        summary(v);
        close_body(v, &v->d[REQ]);
        close_body(v, &v->d[RESP]);
        gap(v);
        fputs("! error: ", v->out);
        put_str(v, rec->error->message);
        fputc('\n', v->out);
        client_tls_line(v, rec->error->client_tls);
        print_end_facts(v, rec->error->timings, rec->error->server_addr,
                        rec->error->request_body_dropped, rec->error->response_body_dropped,
                        rec->error->messages_dropped, rec->error->response_excess);
        break;
    default:
        break;
    }
    return ferror(v->out) ? 1 : 0;
}

/* The known holes in the flow's record (repair and recovery find them), one
 * line each; nothing for an intact flow. */
static void print_damage(FILE *out, reel_session_t *s, unsigned long long id) {
    reel_store_damage_t *dm = NULL;
    size_t n = 0;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_store_flow_damage(s, id, &dm, &n, &err) != REEL_OK)
        fprintf(out, "! damage: cannot be read: %s\n", reel_err_str(&err));
    for (size_t i = 0; i < n; i++) {
        if (dm[i].direction < 2 && dm[i].length >= 0)
            fprintf(out, "! damaged: %s body bytes %lld-%lld are missing (%s)\n",
                    reel_store_damage_direction(dm[i].direction), (long long)dm[i].offset,
                    (long long)(dm[i].offset + dm[i].length - 1), dm[i].reason);
        else if (dm[i].direction < 2)
            fprintf(out, "! damaged: %s body bytes may be missing after byte %lld (%s)\n",
                    reel_store_damage_direction(dm[i].direction), (long long)dm[i].offset,
                    dm[i].reason);
        else
            fprintf(out, "! damaged: %s\n", dm[i].reason);
    }
    free(dm);
}

/* Adds the stored request body bytes of the flow's records to *ctx (a
 * uint64_t), up to its end record. */
static int count_request_body(void *ctx, const Reel__Record *rec) {
    uint64_t *n = ctx;
    if (rec->event_case == REEL__RECORD__EVENT_REQUEST_BODY)
        *n += rec->request_body->data.len;
    return rec->event_case == REEL__RECORD__EVENT_END ||
           rec->event_case == REEL__RECORD__EVENT_ERROR;
}

static int run_view(reel_cli_t *cli, reel_session_t *s, unsigned long long id, int raw,
                    int headers_only, int view, const reel_proto_t *proto, int pmsg,
                    row_t *row) {
    view_t v;
    memset(&v, 0, sizeof v);
    v.cli = cli;
    v.out = stdout;
    v.escape = reel_cli_escaping();
    v.id = id;
    v.raw = raw;
    v.headers_only = headers_only;
    v.view = view;
    v.proto = proto;
    v.proto_fixed = pmsg >= 0;
    v.row = row;
    v.current = -1;
    for (int i = 0; i < 2; i++) {
        v.d[i].v = &v;
        v.d[i].dir = i;
        v.d[i].at_bol = 1;
        reel_buf_init(&v.d[i].vbuf, REEL_VIEW_MAX);
        v.d[i].pmsg = pmsg;
    }
    reel_buf_init(&v.msg_vbuf, REEL_VIEW_MAX);
    reel_err_t err;
    reel_err_clear(&err);
    if (!headers_only && row->truncated[REQ]) {
        /* Rare (body_limit, capture falling behind or a cut import), and
         * read once more only for these: where the request body ends */
        v.req_stored_known =
            reel_store_read_flow(s, id, count_request_body, &v.req_stored, &err) == REEL_OK;
        reel_err_clear(&err);
    }
    reel_rc rc = reel_store_read_flow(s, id, view_record, &v, &err);
    v.read_failed = rc != REEL_OK;
    message_close(&v);
    summary(&v);
    close_body(&v, &v.d[REQ]);
    close_body(&v, &v.d[RESP]);
    print_damage(v.out, s, id);
    int exit_code = REEL_EXIT_OK;
    if (fflush(v.out) != 0 || ferror(v.out)) {
        exit_code = reel_cli_fail(cli, "writing the flow: %s", strerror(errno));
        clearerr(v.out);            /* (said: not again at the exit) */
    } else if (rc == REEL_NOTFOUND) /* the index has it: repair kept its row */
        exit_code = reel_cli_fail(cli,
                                  "flow %lld: none of its records are left in the spool; the "
                                  "index keeps what it knew of it, and its damage says why",
                                  (long long)id);
    else if (rc != REEL_OK)
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
    for (int i = 0; i < 2; i++) {
        reel_decoder_free(v.d[i].dec);
        free(v.d[i].encoding);
        reel_buf_free(&v.d[i].replay);
        reel_buf_free(&v.d[i].peek);
        reel_buf_free(&v.d[i].vbuf);
        free(v.d[i].ctype);
        free(v.d[i].edit);
        reel_buf_free(&v.d[i].sent);
    }
    reel_buf_free(&v.msg_vbuf);
    free(v.source);
    return exit_code;
}

/* ---- --json ---- */


static json_t *b64_json(const uint8_t *p, size_t n) {
    return reel_json_b64(p, n);
}

static json_t *bytes_json(const uint8_t *p, size_t n) {
    return reel_json_bytes(p, n);
}

static json_t *pbytes_json(ProtobufCBinaryData b) {
    return bytes_json(b.data, b.len);
}

/* A proto3 string field: null when empty if empty_null, b64 if not UTF-8. */
static json_t *str_json(const char *s, int empty_null) {
    if (s == NULL || s[0] == '\0')
        return empty_null ? json_null() : json_string("");
    return bytes_json((const uint8_t *)s, strlen(s));
}

static json_t *headers_json(Reel__Header **h, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("[o,o]", pbytes_json(h[i]->name), pbytes_json(h[i]->value)));
    return a;
}

static json_t *url_json(const Reel__RequestHead *h) {
    reel_buf_t b;
    reel_buf_init(&b, 0);
    reel_index_url(h, &b);
    json_t *j = bytes_json(b.data, b.len);
    reel_buf_free(&b);
    return j;
}

typedef struct {
    int headers_only;
    json_t *start; /* uuid, kind, source, client_addr, server_addr */
    long long start_us;
    int has_start;
    long long end_us;
    int has_end_time;
    json_t *error;
    json_t *dir[2]; /* request / response objects, NULL until seen */
    int decoded[2];
    reel_buf_t body[2];
    uint64_t seen[2]; /* body bytes seen (kept or not) */
    int have_sizes;
    uint64_t size[2];
    int truncated[2];
    json_t *timings;
    long long request_end_us, response_start_us;
    char *server_addr;    /* from end/error: known once the origin was reached */
    uint64_t dropped[2];  /* body bytes capture dropped */
    uint64_t excess;      /* bytes the origin sent past its response's end */
    json_t *messages;     /* WebSocket / TCP messages, NULL until one is read */
    json_t *msg;          /* the last one, its data still being gathered */
    reel_buf_t msg_data;
    size_t msg_total;     /* message bytes put into the JSON so far */
    uint64_t msg_stored;  /* the current message's bytes in the spool */
    json_t *server_conn;  /* the last ServerConn record */
    json_t *body_edit[2]; /* each body's BodyEdit record (modify_body), NULL: none */
    json_t *interim;      /* 1xx heads before the final one, NULL until one */
    json_t *trailers[2];  /* trailer fields of each body, NULL: none */
    int trailers_held[2]; /* ... which did not reach the other side (not_passed_on) */
    int too_big; /* direction + 1 whose body exceeded JSON_BODY_MAX */
} jview_t;

/* Puts the gathered data of the last message into it. Message data shares
 * the JSON_BODY_MAX budget; past it, data_b64 is null and data_omitted
 * true (reel flow without --json shows every message). */
static void json_msg_done(jview_t *j) {
    if (j->msg == NULL)
        return;
    /* fewer bytes than its length, not cut by body_limit: its later
     * records are not in the spool (yet, while the flow is written) */
    if (!json_is_true(json_object_get(j->msg, "truncated")) &&
        j->msg_stored < (uint64_t)json_integer_value(json_object_get(j->msg, "length")))
        json_object_set_new(j->msg, "incomplete", json_true());
    if (j->headers_only) {
        json_object_set_new(j->msg, "data_b64", json_null());
    } else if (j->msg_total + j->msg_data.len > JSON_BODY_MAX) {
        json_object_set_new(j->msg, "data_b64", json_null());
        json_object_set_new(j->msg, "data_omitted", json_true());
    } else {
        j->msg_total += j->msg_data.len;
        json_object_set_new(j->msg, "data_b64", b64_json(j->msg_data.data, j->msg_data.len));
    }
    reel_buf_reset(&j->msg_data);
    j->msg = NULL;
}

static void json_message(jview_t *j, int64_t time_us, const Reel__Message *m) {
    if (!m->continued) {
        json_msg_done(j);
        if (j->messages == NULL)
            j->messages = json_array();
        j->msg = json_pack("{s:I, s:b, s:i, s:s, s:I, s:b, s:b}", "time_us", (json_int_t)time_us,
                           "from_client", m->from_client, "opcode", (int)m->opcode, "type",
                           opcode_name(m->opcode), "length", (json_int_t)m->length,
                           "truncated", m->truncated, "compressed", m->compressed);
        if (m->opcode == 8)
            json_object_set_new(j->msg, "close_code", json_integer(m->close_code));
        json_array_append_new(j->messages, j->msg);
        j->msg_stored = 0;
    }
    j->msg_stored += m->data.len;
    if (j->msg && !j->headers_only && j->msg_total + j->msg_data.len <= JSON_BODY_MAX)
        reel_buf_append(&j->msg_data, m->data.data, m->data.len);
}

static json_t *jdir(jview_t *j, int dir) {
    if (j->dir[dir] == NULL) {
        /* Body bytes without a head (tunnels): head fields are null. */
        if (dir == REQ)
            j->dir[dir] = json_pack("{s:n, s:n, s:n, s:n, s:n, s:n, s:n, s:n}", "method", "scheme",
                                    "host", "port", "target", "url", "http_version", "headers");
        else
            j->dir[dir] =
                json_pack("{s:n, s:n, s:n, s:n}", "status", "reason", "http_version", "headers");
    }
    return j->dir[dir];
}

/* What an end or error record says besides sizes. */
static void json_end_facts(jview_t *j, const Reel__Timings *t, int64_t request_end_us,
                           int64_t response_start_us, const char *server_addr,
                           uint64_t dropped_req, uint64_t dropped_resp) {
    j->request_end_us = request_end_us;
    j->response_start_us = response_start_us;
    if (server_addr && server_addr[0]) {
        free(j->server_addr);
        j->server_addr = reel_strdup(server_addr);
    }
    j->dropped[REQ] = dropped_req;
    j->dropped[RESP] = dropped_resp;
    if (t) {
        json_decref(j->timings);
        j->timings = json_pack(
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "blocked_us", (json_int_t)t->blocked_us,
            "dns_us", (json_int_t)t->dns_us, "connect_us", (json_int_t)t->connect_us, "send_us",
            (json_int_t)t->send_us, "wait_us", (json_int_t)t->wait_us, "receive_us",
            (json_int_t)t->receive_us, "ssl_us", (json_int_t)t->ssl_us);
    }
}

/* The client's TLS from the end record, when the start had none (a TLS
 * tunnel whose client's handshake came after its flow began). */
static void json_late_client_tls(jview_t *j, const Reel__ClientTls *t) {
    if (t && j->start && json_is_null(json_object_get(j->start, "client_tls")))
        json_object_set_new(j->start, "client_tls", reel_json_client_tls(t));
}

static int json_record(void *ctx, const Reel__Record *rec) {
    jview_t *j = ctx;
    switch (rec->event_case) {
    case REEL__RECORD__EVENT_START: {
        const Reel__FlowStart *s = rec->start;
        json_decref(j->start);
        /* client_conn and stream_id 0 (an imported flow, HTTP/1, a
         * tunnel) mean none: null, as the index and reel flows --json
         * have them */
        j->start = json_pack(
            "{s:o, s:s, s:o, s:o, s:o, s:o, s:o}", "uuid", str_json(s->uuid, 0), "kind",
            s->kind == REEL__FLOW_KIND__FLOW_KIND_TUNNEL ? "tunnel" : "http", "source",
            str_json(s->source, 1), "client_addr", str_json(s->client_addr, 1), "server_addr",
            str_json(s->server_addr, 1), "client_conn",
            s->client_conn ? json_integer((json_int_t)s->client_conn) : json_null(), "stream_id",
            s->stream_id ? json_integer((json_int_t)s->stream_id) : json_null());
        json_object_set_new(j->start, "client_tls", reel_json_client_tls(s->client_tls));
        j->start_us = rec->time_us;
        j->has_start = 1;
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_HEAD: {
        const Reel__RequestHead *h = rec->request_head;
        json_decref(j->dir[REQ]);
        j->dir[REQ] = json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o}", "method",
                                /* none parsed: null, as the flows list (the index) has it */
                                h->method.len ? pbytes_json(h->method) : json_null(), "scheme",
                                str_json(h->scheme, 1), "host", pbytes_json(h->host), "port",
                                (json_int_t)h->port, "target", pbytes_json(h->target), "url",
                                url_json(h), "http_version", str_json(h->http_version, 1),
                                "headers", headers_json(h->headers, h->n_headers));
        json_object_set_new(j->dir[REQ], "absolute_form", json_boolean(h->absolute_form));
        json_object_set_new(j->dir[REQ], "reverse", json_boolean(h->reverse));
        json_object_set_new(j->dir[REQ], "mapped_to", str_json(h->mapped_to, 1));
        json_object_set_new(j->dir[REQ], "original_dst", str_json(h->original_dst, 1));
        json_object_set_new(j->dir[REQ], "modified",
                            reel_json_header_edits(h->modified, h->n_modified));
        j->decoded[REQ] = h->body_decoded;
        break;
    }
    case REEL__RECORD__EVENT_RESPONSE_HEAD: {
        const Reel__ResponseHead *h = rec->response_head;
        json_decref(j->dir[RESP]);
        j->dir[RESP] =
            json_pack("{s:I, s:o, s:o, s:o, s:b}", "status", (json_int_t)h->status, "reason",
                      pbytes_json(h->reason), "http_version", str_json(h->http_version, 1),
                      "headers", headers_json(h->headers, h->n_headers), "generated",
                      h->generated);
        json_object_set_new(j->dir[RESP], "local_file", str_json(h->local_file, 1));
        json_object_set_new(j->dir[RESP], "blocked_by", str_json(h->blocked_by, 1));
        json_object_set_new(j->dir[RESP], "modified",
                            reel_json_header_edits(h->modified, h->n_modified));
        j->decoded[RESP] = h->body_decoded;
        break;
    }
    case REEL__RECORD__EVENT_MESSAGE:
        json_message(j, rec->time_us, rec->message);
        break;
    case REEL__RECORD__EVENT_INTERIM: {
        const Reel__ResponseHead *h = rec->interim;
        if (j->interim == NULL)
            j->interim = json_array();
        json_array_append_new(
            j->interim, json_pack("{s:I, s:I, s:o, s:o, s:o}", "time_us", (json_int_t)rec->time_us,
                                  "status", (json_int_t)h->status, "reason",
                                  pbytes_json(h->reason), "http_version",
                                  str_json(h->http_version, 1), "headers",
                                  headers_json(h->headers, h->n_headers)));
        break;
    }
    case REEL__RECORD__EVENT_TRAILERS: {
        const Reel__Trailers *t = rec->trailers;
        int dir = t->response ? RESP : REQ;
        json_decref(j->trailers[dir]);
        j->trailers[dir] = headers_json(t->headers, t->n_headers);
        j->trailers_held[dir] = t->not_passed_on;
        break;
    }
    case REEL__RECORD__EVENT_SERVER_CONN: {
        const Reel__ServerConn *sc = rec->server_conn;
        json_decref(j->server_conn);
        j->server_conn = json_pack(
            "{s:I, s:s, s:o, s:o, s:o, s:o, s:b, s:b, s:b}", "conn_id", (json_int_t)sc->conn_id,
            "address", sc->address, "sni", str_json(sc->sni, 1), "alpn", str_json(sc->alpn, 1),
            "tls_version", str_json(sc->tls_version, 1), "cipher", str_json(sc->cipher, 1),
            "reused", sc->reused, "retried", sc->retried, "unverified", sc->unverified);
        json_object_set_new(j->server_conn, "verify_error", str_json(sc->verify_error, 1));
        json_object_set_new(j->server_conn, "peer_cert", str_json(sc->peer_cert, 1));
        json_object_set_new(j->server_conn, "via", str_json(sc->via, 1));
        json_object_set_new(j->server_conn, "via_forward", json_boolean(sc->via_forward));
        json_object_set_new(j->server_conn, "client_cert_asked",
                            json_boolean(sc->client_cert_asked));
        json_object_set_new(j->server_conn, "client_cert", str_json(sc->client_cert, 1));
        json_object_set_new(j->server_conn, "resumed", json_boolean(sc->resumed));
        json_object_set_new(j->server_conn, "dns_override", str_json(sc->dns_override, 1));
        reel_json_conn_setup(j->server_conn, sc);
        break;
    }
    case REEL__RECORD__EVENT_BODY_EDIT: {
        int dir = rec->body_edit->response ? RESP : REQ;
        json_decref(j->body_edit[dir]);
        j->body_edit[dir] = reel_json_body_edit(rec->body_edit);
        break;
    }
    case REEL__RECORD__EVENT_REQUEST_BODY:
    case REEL__RECORD__EVENT_RESPONSE_BODY: {
        int dir = rec->event_case == REEL__RECORD__EVENT_REQUEST_BODY ? REQ : RESP;
        const Reel__BodyChunk *c = dir == REQ ? rec->request_body : rec->response_body;
        jdir(j, dir);
        j->seen[dir] += c->data.len;
        if (!j->headers_only &&
            reel_buf_append(&j->body[dir], c->data.data, c->data.len) != REEL_OK) {
            j->too_big = dir + 1;
            return 1;
        }
        break;
    }
    case REEL__RECORD__EVENT_END: {
        const Reel__FlowEnd *e = rec->end;
        j->end_us = rec->time_us;
        j->has_end_time = 1;
        j->have_sizes = 1;
        j->size[REQ] = e->request_body_size;
        j->size[RESP] = e->response_body_size;
        j->truncated[REQ] = e->request_truncated;
        j->truncated[RESP] = e->response_truncated;
        json_end_facts(j, e->timings, e->request_end_us, e->response_start_us, e->server_addr,
                       e->request_body_dropped, e->response_body_dropped);
        j->excess = e->response_excess;
        json_late_client_tls(j, e->client_tls);
        break;
    }
    case REEL__RECORD__EVENT_ERROR: {
        const Reel__FlowError *e = rec->error;
        j->end_us = rec->time_us;
        j->has_end_time = 1;
        j->have_sizes = 1;
        j->size[REQ] = e->request_body_size;
        j->size[RESP] = e->response_body_size;
        j->truncated[REQ] = e->request_truncated;
        j->truncated[RESP] = e->response_truncated;
        json_decref(j->error);
        j->error = str_json(e->message, 0);
        json_end_facts(j, e->timings, e->request_end_us, e->response_start_us, e->server_addr,
                       e->request_body_dropped, e->response_body_dropped);
        j->excess = e->response_excess;
        json_late_client_tls(j, e->client_tls);
        break;
    }
    default:
        break;
    }
    return 0;
}

static void json_finish_dir(jview_t *j, int dir, const row_t *row) {
    json_t *o = j->dir[dir];
    if (o == NULL)
        return;
    reel_buf_t *b = &j->body[dir];
    if (j->headers_only)
        json_object_set_new(o, "body_b64", json_null());
    else
        json_object_set_new(o, "body_b64", b64_json(b->data, b->len));
    uint64_t size = j->have_sizes ? j->size[dir] : row->found ? row->size[dir] : 0;
    /* the stored bytes count as seen on the wire but for a body stored
     * decoded (a HAR import), whose end record has the wire's size */
    if (size < j->seen[dir] && !(j->decoded[dir] && j->have_sizes))
        size = j->seen[dir];
    json_object_set_new(o, "body_size", json_integer((json_int_t)size));
    json_object_set_new(o, "body_truncated",
                        json_boolean(j->truncated[dir] || row->truncated[dir]));
    json_object_set_new(o, "body_decoded", json_boolean(j->decoded[dir]));
    json_object_set_new(o, "body_dropped", json_integer((json_int_t)j->dropped[dir]));
    if (dir == RESP)
        json_object_set_new(o, "body_excess", json_integer((json_int_t)j->excess));
    reel_buf_free(b);
}

/* "damage": the known holes in the flow's record, [] for an intact flow. */
static json_t *damage_json(reel_session_t *s, unsigned long long id) {
    reel_store_damage_t *dm = NULL;
    size_t n = 0;
    reel_err_t err;
    reel_err_clear(&err);
    json_t *arr = json_array();
    reel_store_flow_damage(s, id, &dm, &n, &err);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:I, s:I, s:s}", "direction",
                           reel_store_damage_direction(dm[i].direction), "offset",
                           (json_int_t)dm[i].offset, "length", (json_int_t)dm[i].length, "reason",
                           dm[i].reason));
    free(dm);
    return arr;
}

static int run_json(reel_cli_t *cli, reel_session_t *s, unsigned long long id, int headers_only,
                    const row_t *row) {
    if (!headers_only) {
        /* Known too big from the index: refuse before reading anything. The
         * index knows the stored size only of a complete flow that
         * body_limit did not cut (the bytes seen less those not stored);
         * other bodies are refused by what is read. */
        for (int dir = 0; dir < 2; dir++)
            if (row->found && row->messages == 0 && strcmp(row->state, "complete") == 0 &&
                !row->truncated[dir] &&
                row->size[dir] > row->dropped[dir] &&
                row->size[dir] - row->dropped[dir] > JSON_BODY_MAX)
                return reel_cli_fail(cli,
                                     "flow %llu: the %s body is larger than %zu MiB, too big "
                                     "for --json; 'reel flow' without --json streams any size",
                                     id, dir_name[dir], JSON_BODY_MAX >> 20);
    }
    jview_t j;
    memset(&j, 0, sizeof j);
    j.headers_only = headers_only;
    for (int i = 0; i < 2; i++)
        reel_buf_init(&j.body[i], headers_only ? 0 : JSON_BODY_MAX);
    reel_buf_init(&j.msg_data, 0);
    reel_err_t err;
    reel_err_clear(&err);
    reel_rc rc = reel_store_read_flow(s, id, json_record, &j, &err);
    int exit_code = REEL_EXIT_OK;
    if (j.too_big) {
        exit_code = reel_cli_fail(cli,
                                  "flow %llu: the %s body is larger than %zu MiB, too big for "
                                  "--json; 'reel flow' without --json streams any size",
                                  id, dir_name[j.too_big - 1], JSON_BODY_MAX >> 20);
        goto out;
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)id));
    if (j.start == NULL && row->found)
        /* Its start record was lost: what the index knows of it (repair
         * kept the old index's), as reel flows --json shows it. */
        j.start = json_pack(
            "{s:o, s:s, s:o, s:o, s:o, s:o, s:o}", "uuid", str_json(row->uuid, 1), "kind", "http",
            "source", str_json(row->source, 1), "client_addr", str_json(row->client_addr, 1),
            "server_addr", str_json(row->server_addr, 1), "client_conn",
            row->client_conn ? json_integer(row->client_conn) : json_null(), "stream_id",
            row->stream_id ? json_integer(row->stream_id) : json_null());
    static const char *const start_keys[] = {"uuid",        "kind",        "source",
                                             "state",       "client_addr", "server_addr",
                                             "client_conn", "stream_id",   "client_tls"};
    for (size_t k = 0; k < sizeof start_keys / sizeof *start_keys; k++) {
        json_t *val = j.start ? json_object_get(j.start, start_keys[k]) : NULL;
        if (strcmp(start_keys[k], "state") == 0)
            json_object_set_new(o, "state", row->found ? json_string(row->state) : json_null());
        else if (strcmp(start_keys[k], "kind") == 0 && row->kind[0])
            /* as reel flows and the web UI say it: a WebSocket's start
             * record says "http", its kind came with the 101 and messages */
            json_object_set_new(o, "kind", json_string(row->kind));
        else
            json_object_set(o, start_keys[k], val ? val : json_null());
    }
    if (j.has_start)
        json_object_set_new(o, "start_us", json_integer(j.start_us));
    else
        json_object_set_new(o, "start_us", row->found ? json_integer(row->start_us) : json_null());
    if (j.has_end_time)
        json_object_set_new(o, "end_us", json_integer(j.end_us));
    else
        json_object_set_new(o, "end_us", row->has_end ? json_integer(row->end_us) : json_null());
    json_object_set_new(o, "request_end_us",
                        j.request_end_us ? json_integer(j.request_end_us) : json_null());
    json_object_set_new(o, "response_start_us",
                        j.response_start_us ? json_integer(j.response_start_us) : json_null());
    if (j.error)
        json_object_set(o, "error", j.error);
    else
        json_object_set_new(o, "error", row->error ? str_json(row->error, 1) : json_null());
    for (int dir = 0; dir < 2; dir++) {
        json_finish_dir(&j, dir, row);
        json_object_set(o, dir_name[dir], j.dir[dir] ? j.dir[dir] : json_null());
    }
    json_object_set(o, "timings", j.timings ? j.timings : json_null());
    json_object_set_new(o, "replay_of",
                        row->replay_of ? json_integer(row->replay_of) : json_null());
    if (row->replay_session)
        json_object_set_new(o, "replay_session", json_string(row->replay_session));
    json_t *ra = json_array();
    for (size_t i = 0; i < row->nreplays; i++)
        json_array_append_new(ra, json_integer((json_int_t)row->replays[i]));
    json_object_set_new(o, "replayed_as", ra);
    json_msg_done(&j);
    json_object_set(o, "server_conn", j.server_conn ? j.server_conn : json_null());
    json_object_set(o, "request_body_edit", j.body_edit[REQ] ? j.body_edit[REQ] : json_null());
    json_object_set(o, "response_body_edit", j.body_edit[RESP] ? j.body_edit[RESP] : json_null());
    json_object_set(o, "interim", j.interim ? j.interim : json_null());
    json_object_set(o, "request_trailers", j.trailers[REQ] ? j.trailers[REQ] : json_null());
    json_object_set(o, "response_trailers", j.trailers[RESP] ? j.trailers[RESP] : json_null());
    json_object_set_new(o, "request_trailers_not_passed_on", json_boolean(j.trailers_held[REQ]));
    json_object_set_new(o, "response_trailers_not_passed_on", json_boolean(j.trailers_held[RESP]));
    json_object_set(o, "messages", j.messages ? j.messages : json_null());
    json_object_set_new(o, "damage", damage_json(s, id));
    if (j.server_addr) /* the end knows it when the start did not */
        json_object_set_new(o, "server_addr", json_string(j.server_addr));
    if (rc == REEL_NOTFOUND) { /* the index has it: repair kept its row */
        reel_err_clear(&err);
        reel_err_set(&err, rc,
                     "flow %lld: none of its records are left in the spool; the index keeps "
                     "what it knew of it, and its damage says why",
                     (long long)id);
    }
    if (rc != REEL_OK)
        json_object_set_new(o, "read_error", json_string(reel_err_str(&err)));
    exit_code = reel_cli_json_out(o);
    if (rc != REEL_OK)
        exit_code = reel_cli_fail(cli, "%s", reel_err_str(&err));
out:
    json_decref(j.start);
    json_decref(j.error);
    json_decref(j.timings);
    json_decref(j.messages);
    json_decref(j.server_conn);
    json_decref(j.body_edit[0]);
    json_decref(j.body_edit[1]);
    json_decref(j.interim);
    json_decref(j.trailers[0]);
    json_decref(j.trailers[1]);
    reel_buf_free(&j.msg_data);
    free(j.server_addr);
    for (int i = 0; i < 2; i++) {
        json_decref(j.dir[i]);
        reel_buf_free(&j.body[i]);
    }
    return exit_code;
}

/* ---- entry point ---- */

/** Largest .proto file --proto reads. */
#define PROTO_FILE_MAX ((size_t)4 * 1024 * 1024)

/* --proto FILE[:MESSAGE]: the schema, and the message both bodies are
 * (-1: gRPC bodies take theirs from the rpc the request path names). */
static int load_proto(reel_cli_t *cli, const char *arg, reel_proto_t **out, int *msg) {
    char *path = reel_strdup(arg);
    char *message = NULL;
    char *colon = strrchr(path, ':');
    if (colon && colon[1] && !strchr(colon, '/')) {
        *colon = '\0';
        message = colon + 1;
    }
    int rc = -1;
    char *text = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        reel_cli_fail(cli, "--proto %s: %s", path, strerror(errno));
        goto out;
    }
    text = reel_malloc(PROTO_FILE_MAX + 1);
    size_t n = fread(text, 1, PROTO_FILE_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n > PROTO_FILE_MAX) {
        reel_cli_fail(cli, "--proto %s: %s", path,
                      rerr ? "cannot be read" : "larger than 4 MiB");
        goto out;
    }
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_proto_parse(text, n, out, &err) != REEL_OK) {
        reel_cli_fail(cli, "--proto %s: %s", path, reel_err_str(&err));
        goto out;
    }
    *msg = -1;
    if (message) {
        *msg = reel_proto_message(*out, message);
        if (*msg < 0) {
            reel_cli_fail(cli, "--proto %s: no message '%s' in it (or more than one by that name)",
                          path, message);
            reel_proto_free(*out);
            *out = NULL;
            goto out;
        }
    }
    rc = 0;
out:
    free(text);
    free(path);
    return rc;
}

int reel_cmd_flow(reel_cli_t *cli, int argc, char **argv) {
    enum { OPT_RAW = 0x2001, OPT_HEADERS_ONLY, OPT_VIEW, OPT_PROTO };
    static const struct option opts[] = {{"raw", no_argument, NULL, OPT_RAW},
                                         {"headers-only", no_argument, NULL, OPT_HEADERS_ONLY},
                                         {"view", required_argument, NULL, OPT_VIEW},
                                         {"proto", required_argument, NULL, OPT_PROTO},
                                         REEL_CLI_COMMON_OPTS,
                                         {0}};
    int raw = 0, headers_only = 0, view = -1;
    const char *proto_arg = NULL;
    int c;
    while ((c = reel_cli_getopt(argc, argv, "h", opts)) != -1) {
        if (c == OPT_RAW) {
            raw = 1;
            continue;
        }
        if (c == OPT_HEADERS_ONLY) {
            headers_only = 1;
            continue;
        }
        if (c == OPT_PROTO) {
            proto_arg = optarg;
            continue;
        }
        if (c == OPT_VIEW) {
            view = reel_view_parse(optarg);
            if (view < 0)
                return reel_cli_usage(cli, "unknown view '%s' (auto, raw, hex, json, xml, html, "
                                           "css, javascript, urlencoded, multipart, protobuf, "
                                           "grpc, msgpack, image, websocket)",
                                      optarg);
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    if (argc - optind != 2)
        return reel_cli_usage(cli, "expected SESSION and flow ID");
    const char *name = argv[optind];
    unsigned long long id = reel_cli_flow_id(cli, argv[optind + 1]);
    if (id == 0)
        return REEL_EXIT_USAGE;
    reel_proto_t *proto = NULL;
    int pmsg = -1;
    if (proto_arg) {
        if (load_proto(cli, proto_arg, &proto, &pmsg) != 0)
            return REEL_EXIT_ERROR;
        if (view < 0)
            view = REEL_VIEW_AUTO;
    }
    reel_session_t *s = reel_cli_open(cli, name, REEL_OPEN_READ);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    int rc = REEL_EXIT_ERROR;
    row_t row;
    memset(&row, 0, sizeof row);
    if (!reel_cli_flow_exists(cli, s, id))
        goto out;
    row_load(s, id, &row);
    if (cli->json)
        rc = run_json(cli, s, id, headers_only, &row);
    else
        rc = run_view(cli, s, id, raw, headers_only, view, proto, pmsg, &row);
out:
    reel_proto_free(proto);
    row_free(&row);
    reel_session_close(s);
    return rc;
}
