/* The TLS filter: core/tls.c's memory-BIO TLS as a layer of a stack (see
 * core/filter.h). Cipher text goes down, plaintext up; `ready` once the
 * handshake is done; a failed handshake is the stack's `error` (the alert,
 * if any, is sent first). A TLS close_notify or a fatal record error ends
 * the stream upward as eof. */
#ifndef REEL_CORE_TLS_FILTER_H
#define REEL_CORE_TLS_FILTER_H

#include "core/filter.h"
#include "core/tls.h"

/** A filter speaking TLS over the layer below as t's role (server toward
 * a client, client toward an origin). Takes t (owned). A client starts its
 * handshake as soon as the layer below is open. */
reel_filter_t *reel_tls_filter_new(reel_tls_t *t);

/** The same, for the TLS to an upstream proxy itself (upstream_proxy
 * https://), under the filter that asks it for a tunnel: not the
 * origin's TLS, so neither reel_stack_has_tls nor the stack's TLS facts
 * (reel_stack_info) see it; its version goes to via_tls. */
reel_filter_t *reel_tls_filter_new_proxy(reel_tls_t *t);

#endif
