/* Transport filters: the byte-moving layers of one side of a connection,
 * stacked (curl's connection filters, in push form).
 *
 *   owner (peer: codec, exchange)   ▲ data/eof/ready/error/written/closed
 *   top filter       e.g. tls       │ recv ▲   ▼ send
 *   ...                             │
 *   bottom filter    tcp | mem      ▲ socket or test
 *
 * Bytes flow down with send() and up with recv(); a filter passes what it
 * produces to the next one with reel_filter_up / reel_filter_down. The
 * bottom filter owns the I/O (core/tcp.c is the only one with a socket;
 * core/memfilter.c is an in-memory bottom for tests). A filter may be
 * pushed on top while the connection runs (TLS after a CONNECT is
 * answered; STARTTLS later).
 *
 * Events reach the stack's owner through reel_stack_events_t. Order on one
 * read: any number of data calls, possibly eof, then read_done once. An
 * owner may close the stack from any event; filters are destroyed only
 * after the bottom's handles are closed (their libuv close callbacks), and
 * then `closed` is the last event, after which the owner may free the
 * stack's memory. No event is delivered after close except `closed` (and
 * `written`, never).
 *
 * Ownership: bytes passed up or down are borrowed for the call. A filter
 * keeps what it cannot pass on in its own bounded buffer and counts it in
 * queued(), which the owner adds up for back-pressure. */
#ifndef REEL_CORE_FILTER_H
#define REEL_CORE_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct reel_filter reel_filter_t;
typedef struct reel_stack reel_stack_t;

/** What a stack knows about its connection; each filter fills its part.
 * Strings are borrowed from the filters (valid until the stack closes). */
typedef struct {
    char local[64], remote[64];          /* "ip:port", "" unknown */
    int64_t t_dns0, t_dns1, t_connected; /* wall clock µs; 0: not (yet) */
    /* The set-up of the connection at the bottom, whoever it was set up
     * for (a ServerConn record's): DNS lookup begun and done, TCP
     * connected, TLS handshake done (wall clock µs; 0: not (yet), or no
     * such phase). The same times as t_dns0.. for a stack of its own; an
     * HTTP/2 stream's (core/h2up.c) are always its session's, where its
     * t_dns0.. are those of the stream that opened the session only (the
     * times its flow counts). */
    int64_t setup_dns0, setup_dns1, setup_connected, setup_tls_done;
    /* When the upstream proxy's tunnel opened (its 2xx to CONNECT, or
     * SOCKS5's success; wall clock µs; 0: no tunnel, or not yet): the
     * connection to the origin is made then, and the flow's `connect`
     * counts to it, TLS after it (a stream's: its session's) */
    int64_t setup_tunnel_open;
    bool tls;                            /* a TLS filter is in the stack */
    bool tls_done;                       /* ... and its handshake is done */
    bool tls_resumed;
    /* the peer's TLS stream has ended without its close_notify (a bare
     * TCP close, or an error): what was read until the close may be cut
     * short (RFC 9112 9.8) */
    bool tls_no_close_notify;
    /* sni: the name sent (toward an origin) or received (from a client),
     * also before the handshake is done; the others once it is */
    const char *alpn, *sni, *tls_version, *cipher;
    /* TLS toward an origin whose certificate failed the check (tls_done
     * false): why, and its certificate's facts; alpn, tls_version and
     * cipher then say what the server had chosen */
    const char *verify_error, *peer_cert;
    /* TLS toward an origin made with verification off (tls_done): what
     * the check found, which did not end it, and its certificate's facts
     * (NULL: the certificate passed) */
    const char *unchecked_error, *unchecked_cert;
    /* a client's TLS: the server asked for a client certificate, and the
     * facts of the one reel presented (NULL: none) */
    bool client_cert_asked;
    const char *client_cert;
    /* the upstream proxy the connection goes through ("host:port", its
     * CONNECT filter's: core/connect_filter.h); NULL: none */
    const char *via;
    bool via_open; /* ... and it has answered the CONNECT with a 2xx (or, via_forward,
                    * the connection to it is up) */
    /* TLS to the upstream proxy itself (https://) is in the stack, and
     * whether its handshake is done (core/tls_filter.c's proxy variant) */
    bool via_tls, via_tls_done;
    /* ... and the requests on it go to that proxy as they are, in
     * absolute form, instead of through a CONNECT tunnel (plain HTTP) */
    bool via_forward;
    /* the dns_overrides entry that gave the address connected to (the
     * TCP filter's; NULL: none) */
    const char *dns_override;
} reel_stack_info_t;

typedef struct {
    const char *name;
    /* Bottom, connect side: start connecting (once in its stack). Errors,
     * even immediate ones, are reported through reel_filter_fail. */
    void (*open)(reel_filter_t *f);
    /* Bytes from above, to go toward the wire. */
    void (*send)(reel_filter_t *f, const uint8_t *data, size_t len);
    /* Bytes from below. */
    void (*recv)(reel_filter_t *f, const uint8_t *data, size_t len);
    /* The layer below ended its stream (error: NULL for a clean end). */
    void (*recv_eof)(reel_filter_t *f, const char *error);
    /* The layer below can carry bytes now (connected, handshake done). */
    void (*below_open)(reel_filter_t *f);
    /* Orderly end of this layer's outgoing stream (TLS: close_notify; TCP:
     * shutdown of the write side). Not passed further down. */
    void (*shutdown)(reel_filter_t *f);
    /* Bytes held, not yet passed down. */
    size_t (*queued)(const reel_filter_t *f);
    /* Whether bytes sent now go out (rather than being refused). */
    bool (*is_open)(const reel_filter_t *f);
    /* Bottom only: start or stop reading. */
    void (*set_reading)(reel_filter_t *f, bool on);
    /* Bottom only: bytes that came and were not read yet (the kernel's,
     * for a socket); may be NULL (0). */
    size_t (*unread)(const reel_filter_t *f);
    /* Bottom only: bytes handed to the wire that the peer has not
     * acknowledged yet (the kernel's, for a socket: a reset drops them);
     * may be NULL (0). */
    size_t (*unsent)(const reel_filter_t *f);
    /* Bottom only: the peer reset the connection (the kernel's state, for
     * a socket: what was unsent is dropped, and unsent says 0); may be
     * NULL (false). */
    bool (*broken)(const reel_filter_t *f);
    /* Bottom only: the peer ended its side or reset the connection (the
     * kernel's state, for a socket), seen without reading; may be NULL
     * (false). */
    bool (*peer_ended)(const reel_filter_t *f);
    /* Adds what this layer knows. */
    void (*info)(const reel_filter_t *f, reel_stack_info_t *out);
    /* Bottom only: close the I/O; call reel_stack_closed_by_bottom once
     * every handle is closed (never from inside close itself). */
    void (*close)(reel_filter_t *f);
    /* Frees the filter (the stack calls it, after close completed). */
    void (*destroy)(reel_filter_t *f);
} reel_filter_ops_t;

struct reel_filter {
    const reel_filter_ops_t *ops;
    reel_stack_t *st;
    reel_filter_t *below, *above;
};

typedef struct {
    void (*data)(void *ud, const uint8_t *d, size_t n);
    void (*eof)(void *ud, const char *error);
    void (*read_done)(void *ud);
    void (*connected)(void *ud);              /* the bottom's connection is up (connect side) */
    void (*ready)(void *ud);                  /* the top filter is open: bytes can flow */
    void (*error)(void *ud, const char *why); /* connect, resolve or TLS failure */
    void (*written)(void *ud);                /* queued bytes went out */
    void (*closed)(void *ud);                 /* last event: the stack's memory may go */
} reel_stack_events_t;

struct reel_stack {
    reel_filter_t *top, *bottom;
    const reel_stack_events_t *ev;
    void *ud;
    bool closing, failed;
    bool reset; /* closing with a TCP reset (reel_stack_abort) */
};

/** Sets up an empty stack reporting to ev/ud (both borrowed; must outlive
 * the stack until `closed`). */
void reel_stack_init(reel_stack_t *st, const reel_stack_events_t *ev, void *ud);

/** Pushes f (owned from now) on top. If the stack is already open, f is
 * told (below_open). `initial` bytes (may be NULL) are then given to f as
 * if received from below: the bytes read before the filter existed, such
 * as a sniffed TLS ClientHello; read_done follows them. */
void reel_stack_push(reel_stack_t *st, reel_filter_t *f, const uint8_t *initial, size_t n);

/** Starts the bottom's connection (see ops->open). */
void reel_stack_connect(reel_stack_t *st);

void reel_stack_send(reel_stack_t *st, const void *data, size_t len);
size_t reel_stack_queued(const reel_stack_t *st);
/** Bytes that came to the stack's bottom and were not read yet. */
size_t reel_stack_unread(const reel_stack_t *st);
/** Bytes passed to the stack's bottom the peer has not acknowledged yet. */
size_t reel_stack_unsent(const reel_stack_t *st);
/** Whether the peer reset the stack's bottom connection (see `broken`). */
bool reel_stack_broken(const reel_stack_t *st);
/** Whether the peer ended or reset the stack's bottom connection, seen
 * without reading from it (see `peer_ended`). */
bool reel_stack_peer_ended(const reel_stack_t *st);
bool reel_stack_open(const reel_stack_t *st);
void reel_stack_set_reading(reel_stack_t *st, bool on);
void reel_stack_info(const reel_stack_t *st, reel_stack_info_t *out);
/** Ends the top layer's outgoing stream (TLS close_notify, or TCP
 * half-close when there is no TLS). */
void reel_stack_end(reel_stack_t *st);
/** Half-closes the bottom (TCP FIN) whatever runs above it. */
void reel_stack_end_transport(reel_stack_t *st);
/** Closes the stack: no more events but `closed`. Idempotent. */
void reel_stack_close(reel_stack_t *st);
/** Closes the stack as reel_stack_close does, but tells the peer the
 * connection broke: a TCP reset (no FIN, no close_notify), bytes not yet
 * sent dropped. A bottom without a socket closes as usual. */
void reel_stack_abort(reel_stack_t *st);
bool reel_stack_has_tls(const reel_stack_t *st);

/* For filters. */
void reel_filter_up(reel_filter_t *f, const uint8_t *data, size_t len);
void reel_filter_up_eof(reel_filter_t *f, const char *error);
void reel_filter_up_open(reel_filter_t *f);
void reel_filter_down(reel_filter_t *f, const uint8_t *data, size_t len);
/** The stack failed (resolve, connect, handshake): reported once. */
void reel_filter_fail(reel_filter_t *f, const char *why);
/* Bottom only. */
void reel_filter_read_done(reel_filter_t *f);
void reel_filter_connected(reel_filter_t *f);
void reel_filter_written(reel_filter_t *f);
void reel_stack_closed_by_bottom(reel_stack_t *st);
/** reel_stack_closed_by_bottom once (*done tracks it): for a bottom without
 * I/O of its own that completes its close from a deferred callback. */
void reel_stack_closed_once(reel_stack_t *st, bool *done);

#endif
