/* TLS for both sides of an intercepted connection, sans I/O.
 *
 * OpenSSL runs on a pair of memory BIOs and never touches a socket. The
 * caller moves bytes:
 *
 *   network ──reel_tls_feed_cipher──▶ [SSL] ──reel_tls_read_plain──▶ proxy
 *   proxy ──reel_tls_write_plain──▶ [SSL] ──reel_tls_take_cipher──▶ network
 *
 * After every call (handshake, read, write, close, even a failed one: an
 * alert may be waiting) the caller should take the pending cipher bytes and
 * send them.
 *
 * Roles:
 * - server (toward the client, intercepting): certificate minted by the CA
 *   for the client's SNI, or for a fallback host (the CONNECT target) when
 *   the client sends none; ALPN accepts "http/1.1" (and "h2" when
 *   offered, reel_tls_offer_h2), or exactly what the origin chose when
 *   mirrored (reel_tls_mirror_alpn); nothing else is selected.
 * - client (toward the origin): the system trust store plus an optional
 *   extra CA file; the certificate and host name (or IP) are verified unless
 *   turned off per connection; SNI sent for names, not IP literals; ALPN
 *   offers "http/1.1"; sessions are resumed per origin when asked to.
 * Both: TLS 1.2 or newer, renegotiation off.
 *
 * Buffers are bounded: at most REEL_TLS_CIPHER_IN_MAX cipher bytes wait
 * inside for reading, and write_plain accepts no more plaintext while
 * REEL_TLS_CIPHER_OUT_MAX cipher bytes wait to be taken. */
#ifndef REEL_CORE_TLS_H
#define REEL_CORE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "base/error.h"
#include "base/mem.h"
#include "core/ca.h"

/** Most cipher bytes buffered for reading (fed, not yet decrypted). */
#define REEL_TLS_CIPHER_IN_MAX (256 * 1024)
/** Most cipher bytes waiting to be taken before write_plain stops. */
#define REEL_TLS_CIPHER_OUT_MAX (256 * 1024)

/** Shared configuration of one role (an SSL_CTX): make one per proxy and
 * role, not per connection (loading the system store is slow). */
typedef struct reel_tls_ctx reel_tls_ctx_t;

/** One TLS connection. */
typedef struct reel_tls reel_tls_t;

/** Makes the server-role context whose leaves come from ca (borrowed: must
 * outlive the context and its connections). Returns REEL_OK and an owned
 * context in *out, or REEL_ERROR with err filled. */
reel_rc reel_tls_ctx_new_server(reel_ca_t *ca, reel_tls_ctx_t **out, reel_err_t *err);

/** Makes server-role context to use the session ticket keys of from, so
 * that a client resumes with either (the proxy's workers each have their
 * own context, and a client's next connection may land on another).
 * Returns false if OpenSSL refused. */
bool reel_tls_ctx_share_tickets(reel_tls_ctx_t *to, const reel_tls_ctx_t *from);

/** Makes the client-role context: trusts the system store (unless
 * no_system_store) plus, when extra_ca_file is not NULL, the PEM
 * certificates in that file (upstream_trusted_ca). Returns REEL_OK and an
 * owned context in *out; REEL_IO when extra_ca_file cannot be loaded
 * (the system's reason when it cannot be opened, "No such file or
 * directory"), REEL_ERROR otherwise, with err filled. */
reel_rc reel_tls_ctx_new_client(const char *extra_ca_file, bool no_system_store,
                                reel_tls_ctx_t **out, reel_err_t *err);

/** Frees a context. Connections made from it must be freed first. Accepts
 * NULL. */
void reel_tls_ctx_free(reel_tls_ctx_t *ctx);

/** Starts a server-role connection. fallback_host (borrowed, may be NULL) is
 * the name the certificate is made for when the client sends no SNI or an
 * SNI the CA cannot use; with neither the handshake fails. Returns REEL_OK
 * and an owned connection in *out, or REEL_ERROR with err filled. */
reel_rc reel_tls_new_server(reel_tls_ctx_t *ctx, const char *fallback_host, reel_tls_t **out,
                            reel_err_t *err);
/** Server: whether ALPN may choose "h2" (preferred over "http/1.1" when the
 * client offers both); off by default. */
void reel_tls_offer_h2(reel_tls_t *t, bool on);
/** Server: ALPN mirrored from the origin (TLS that is not HTTP, relayed
 * as is: core/tunnel.c): proto (copied), the protocol the origin chose, is
 * selected if the client offers it, and no other protocol is; "" selects
 * none; NULL goes back to the HTTP choice above. Call before the
 * handshake. */
void reel_tls_mirror_alpn(reel_tls_t *t, const char *proto);

/** Options of a client-role connection. Zero-initialize: verification is on
 * by default. */
typedef struct {
    /** Host name or IP literal of the origin (required; borrowed). Sent as
     * SNI when it is a name; the certificate must match it. */
    const char *host;
    /** True: finish the handshake whatever the certificate (the verify
     * result is still available from reel_tls_verify_result). */
    bool insecure;
    /** ALPN protocols to offer, comma-separated ("h2,http/1.1"); NULL offers
     * "http/1.1", "" offers none. */
    const char *alpn;
    /** The origin ("host:port", borrowed) under which resumable sessions
     * are kept in the context and offered to later connections to it, so
     * they skip certificate verification and most of the handshake; NULL:
     * no resumption. Sessions of insecure connections are kept apart. */
    const char *session_key;
    /** The certificate and key to present if the origin asks for one
     * (borrowed; NULL: none, reel goes on without). */
    const struct reel_tls_identity *identity;
} reel_tls_client_opts_t;

/** A client certificate with its chain and private key
 * (upstream_client_certs). */
typedef struct reel_tls_identity reel_tls_identity_t;
/** Client certificates by origin: one for every origin (a file), or one
 * per origin name (a directory of NAME.pem, NAME.p12 or NAME.pfx files). */
typedef struct reel_tls_identities reel_tls_identities_t;

/** Loads path: a PEM file holding a certificate, the certificates of its
 * chain and its private key, or a PKCS#12 file, or a directory of such
 * files named for the origins they are for ("api.example.com.pem",
 * "api.example.com.p12"). The passphrase of an encrypted key or PKCS#12
 * file is the first line of the file FILE.pass beside it, if there is one.
 * *out NULL for NULL or "". REEL_INVALID or REEL_IO naming the file and
 * what is wrong with it (no certificate, no key, an encrypted one without
 * its .pass file or with a wrong passphrase, a key not the certificate's). */
reel_rc reel_tls_identities_load(const char *path, reel_tls_identities_t **out, reel_err_t *err);
/** The certificate for host (a name or an address, no brackets): its
 * file's in a directory, else the one file's; NULL: none. */
const reel_tls_identity_t *reel_tls_identities_find(const reel_tls_identities_t *s,
                                                    const char *host);
void reel_tls_identities_free(reel_tls_identities_t *s);

/** Starts a client-role connection. Returns REEL_OK and an owned connection
 * in *out; REEL_INVALID for a missing host or bad ALPN list, REEL_ERROR if
 * OpenSSL fails; err filled. */
reel_rc reel_tls_new_client(reel_tls_ctx_t *ctx, const reel_tls_client_opts_t *opts,
                            reel_tls_t **out, reel_err_t *err);

/** Frees a connection (no close_notify is sent). Accepts NULL. */
void reel_tls_free(reel_tls_t *t);

/** Feeds cipher bytes received from the network. *consumed (never NULL)
 * gets how many were taken: fewer than len when REEL_TLS_CIPHER_IN_MAX bytes
 * already wait, in which case the caller reads plaintext (or runs the
 * handshake) and feeds the rest later. Returns REEL_OK. */
reel_rc reel_tls_feed_cipher(reel_tls_t *t, const uint8_t *buf, size_t len, size_t *consumed);

/** Tells the connection the network reached end of stream: once the fed
 * bytes are used up, reads report end of stream (see reel_tls_read_plain)
 * and a handshake in progress fails. */
void reel_tls_feed_eof(reel_tls_t *t);
/** The same, the connection below having broken with error (a reset): a
 * handshake it cuts fails saying that rather than OpenSSL's "unexpected eof
 * while reading", which reads as a close. */
void reel_tls_feed_eof_error(reel_tls_t *t, const char *error);

/** Runs the handshake as far as the fed bytes allow. Returns REEL_OK once it
 * is complete (and on every later call), REEL_NEED_MORE when it waits for
 * the peer, or REEL_ERROR with err filled: for the client role a
 * certificate problem reads "upstream certificate verify failed: <OpenSSL
 * reason> (<the origin's own certificate, as reel_tls_verify_error gives
 * it>[; where its chain failed])" (e.g. "self-signed certificate",
 * "hostname mismatch"); when the origin had asked for a client
 * certificate (reel never has one) and then ends the connection with an
 * alert, here or at the first read (TLS 1.3), the error says so. After an
 * error the connection is dead; take and send its pending alert. */
reel_rc reel_tls_handshake(reel_tls_t *t, reel_err_t *err);

/** Decrypts up to cap bytes of plaintext into out; *n gets the count. Runs
 * the handshake first if it is not complete. Returns REEL_OK with *n > 0 for
 * data; REEL_OK with *n == 0 at end of stream (close_notify, or network EOF
 * after feed_eof: reel_tls_peer_closed tells which); REEL_NEED_MORE when
 * more cipher bytes are needed; REEL_ERROR with err filled on a protocol or
 * handshake failure. */
reel_rc reel_tls_read_plain(reel_tls_t *t, uint8_t *out, size_t cap, size_t *n, reel_err_t *err);

/** Encrypts up to len bytes of plaintext; *n gets how many were accepted
 * (0 when REEL_TLS_CIPHER_OUT_MAX cipher bytes wait to be taken). Returns
 * REEL_OK; REEL_NEED_MORE while the handshake is not complete (nothing
 * accepted: feed cipher and retry); REEL_ERROR with err filled when the
 * connection failed or was closed. */
reel_rc reel_tls_write_plain(reel_tls_t *t, const uint8_t *buf, size_t len, size_t *n,
                             reel_err_t *err);

/** Appends the pending cipher bytes to out, as many as out's maximum allows
 * (the rest stays pending). Returns REEL_OK, or REEL_LIMIT when out is full
 * and bytes remain. */
reel_rc reel_tls_take_cipher(reel_tls_t *t, reel_buf_t *out);

/** Number of cipher bytes waiting to be taken. */
size_t reel_tls_cipher_pending(const reel_tls_t *t);

/** Queues a close_notify alert (take it with reel_tls_take_cipher). Further
 * writes fail. Returns REEL_OK, or REEL_ERROR with err filled. */
reel_rc reel_tls_close_notify(reel_tls_t *t, reel_err_t *err);

/** True once the handshake completed. */
bool reel_tls_handshake_done(const reel_tls_t *t);

/** True once the peer's close_notify was received. */
bool reel_tls_peer_closed(const reel_tls_t *t);

/** True for the server role. */
bool reel_tls_is_server(const reel_tls_t *t);

/** Negotiated ALPN protocol ("http/1.1"), or NULL when none was selected.
 * Valid until reel_tls_free. */
const char *reel_tls_alpn(const reel_tls_t *t);

/** Server role: the SNI the client sent, or NULL. Client role: the host name
 * sent as SNI, or NULL for an IP literal. Valid until reel_tls_free. */
const char *reel_tls_sni(const reel_tls_t *t);

/** Server role: the host the certificate was made for (SNI or fallback), or
 * NULL before the ClientHello. Client role: opts.host. Valid until
 * reel_tls_free. */
const char *reel_tls_cert_host(const reel_tls_t *t);

/** Negotiated protocol version ("TLSv1.3"), or NULL before the handshake
 * completed (or failed the certificate check: reel_tls_verify_error).
 * Static storage. */
const char *reel_tls_version(const reel_tls_t *t);

/** Negotiated cipher suite name, or NULL before the handshake completed
 * (or failed the certificate check). Static storage. */
const char *reel_tls_cipher(const reel_tls_t *t);

/** Client role: why the handshake failed the check of the origin's
 * certificate (OpenSSL's text, static storage), or NULL when it did not
 * fail so. Then *cert (if cert is not NULL) is set to the facts of the
 * origin's own certificate ("certificate for NAMES, by ISSUER, valid FROM
 * to TO"; "" if it could not be read), valid until reel_tls_free; and the
 * protocol version, cipher and ALPN the server had chosen are available
 * as after a completed handshake. */
const char *reel_tls_verify_error(const reel_tls_t *t, const char **cert);

/** Client role, made with verification off (opts.insecure), once the
 * handshake is done: what the check of the origin's certificate found,
 * which did not end the handshake (OpenSSL's text for its first failure,
 * as reel_tls_verify_error would give it with verification on: chain,
 * dates and host name; static storage), or NULL when the certificate
 * passed (and always with verification on, or before the handshake is
 * done). Then *cert (if cert is not NULL) is set as reel_tls_verify_error
 * sets it. A resumed session reports the result of the handshake that
 * made it. */
const char *reel_tls_unchecked_error(const reel_tls_t *t, const char **cert);

/** Client role: whether the origin asked for a client certificate (a
 * CertificateRequest; for a resumed session, in the handshake that made
 * it, when reel presented one then); *cert (if not NULL) then the facts
 * of the one reel presented ("certificate for NAMES, by ISSUER, valid
 * FROM to TO"), NULL when it had none. */
bool reel_tls_client_cert_asked(const reel_tls_t *t, const char **cert);

/** True when the handshake resumed a cached session (client role: see
 * reel_tls_client_opts_t.session_key). */
bool reel_tls_resumed(const reel_tls_t *t);

/** Client role: the X509_V_* result of verifying the peer's certificate
 * (X509_V_OK == 0), also computed when verification is off. Server role:
 * X509_V_OK. */
long reel_tls_verify_result(const reel_tls_t *t);

/** Client role: the peer's certificate, or NULL; borrowed, valid until
 * reel_tls_free. */
X509 *reel_tls_peer_cert(const reel_tls_t *t);

#endif
