/* reel's certificate authority: the CA that signs intercepted connections.
 *
 * On disk, in one directory (the CLI passes $XDG_DATA_HOME/reel):
 *   reel-ca.pem       the CA certificate (PEM), what users install
 *   reel-ca-key.pem   its private key (PEM, PKCS#8), mode 0600
 *
 * The CA is created on first use: EC P-256 key, self-signed X.509v3,
 * subject "CN=reel CA, O=reel", random 128-bit serial, valid from one day
 * ago for ten years, basicConstraints critical CA:TRUE pathlen:0, keyUsage
 * critical keyCertSign+cRLSign, subjectKeyIdentifier. Both files are written
 * to 0600 temporary files, fsynced, and renamed into place key first, so a
 * certificate is never visible without its key. Creation runs under an
 * flock(2) on the directory itself: two processes opening a fresh directory
 * at once end up with one CA (the second waits, then reads the first's
 * files), and a crash never leaves a stale lock behind.
 *
 * Leaf certificates are minted per host name or IP literal and kept in an
 * in-memory LRU cache. All leaves share one EC P-256 key generated when the
 * CA is opened, so minting a leaf costs one ECDSA signature and a TLS
 * connection to a host already in the cache costs no key work at all.
 *
 * A reel_ca_t is safe to use from several threads (the cache has a mutex),
 * though the proxy uses it from its loop thread only. */
#ifndef REEL_CORE_CA_H
#define REEL_CORE_CA_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

#include "base/error.h"

/** File names inside the CA directory. */
#define REEL_CA_CERT_FILE "reel-ca.pem"
#define REEL_CA_KEY_FILE "reel-ca-key.pem"

/** Default capacity of the leaf certificate cache. */
#define REEL_CA_CACHE_DEFAULT 1000

/** Longest host name reel_ca_leaf accepts (DNS limit). */
#define REEL_CA_HOST_MAX 253

typedef struct reel_ca reel_ca_t;

/** Opens the CA stored in dir, creating dir (0700, parents too) and the CA
 * files when they do not exist. Loading checks that the key matches the
 * certificate. A key file readable or writable by group or others is still
 * loaded; reel_ca_warning then says so. A certificate without its key (or the
 * reverse with an unreadable key) is refused with REEL_CORRUPT rather than
 * overwritten. Returns REEL_OK and an owned CA in *out (free with
 * reel_ca_free), or REEL_IO / REEL_CORRUPT / REEL_ERROR with err filled and
 * *out NULL. dir is borrowed. */
reel_rc reel_ca_open(const char *dir, reel_ca_t **out, reel_err_t *err);

/** Frees ca and its cache. Leaves returned earlier stay valid (they hold
 * their own reference). Accepts NULL. */
void reel_ca_free(reel_ca_t *ca);

/** True if this reel_ca_open created the CA files (first use). */
bool reel_ca_created(const reel_ca_t *ca);

/** Warnings about the CA found on open, one per line ('\n' between them,
 * none at the end): a key file with loose mode ("CA key ... has mode 0644,
 * should be 0600 ..."), a CA that has expired (reel_ca_leaf then refuses
 * every host) or expires within 30 days. NULL when there is none. Valid
 * until reel_ca_free. */
const char *reel_ca_warning(const reel_ca_t *ca);

/** Path of the CA certificate file; valid until reel_ca_free. */
const char *reel_ca_cert_path(const reel_ca_t *ca);

/** Path of the CA key file; valid until reel_ca_free. */
const char *reel_ca_key_path(const reel_ca_t *ca);

/** The CA certificate in PEM (NUL-terminated); valid until reel_ca_free. */
const char *reel_ca_pem(const reel_ca_t *ca);

/** SHA-256 fingerprint of the CA certificate as colon-separated uppercase
 * hex ("AB:CD:..."); valid until reel_ca_free. */
const char *reel_ca_fingerprint(const reel_ca_t *ca);

/** The CA certificate; borrowed, valid until reel_ca_free. */
X509 *reel_ca_cert(const reel_ca_t *ca);

/** The private key shared by every leaf; borrowed, valid until
 * reel_ca_free. */
EVP_PKEY *reel_ca_leaf_key(const reel_ca_t *ca);

/** Returns in *cert_out a leaf certificate for host, signed by the CA:
 * SAN DNS:host, or IP:addr when host is an IPv4 or IPv6 literal (brackets
 * around IPv6 are accepted), CN host (first 64 characters), random serial,
 * valid from one day ago for one year (never past the CA's own expiry:
 * with a CA that has expired it makes none, see below),
 * extendedKeyUsage serverAuth, basicConstraints CA:FALSE, keyUsage
 * digitalSignature, authorityKeyIdentifier, SHA-256 signature. Its key is
 * reel_ca_leaf_key. Host names are matched case-insensitively; the cache
 * keeps the most recently used leaves. The caller owns one reference
 * (X509_free). Returns REEL_INVALID for an empty, too long (name over 253
 * bytes, label over 63) or malformed host (characters outside letters,
 * digits, '-', '.', '_'; empty labels), the message showing the host (cut
 * with "..." past 80 bytes) and the reason; REEL_INVALID too when the CA
 * has expired; REEL_ERROR if OpenSSL fails; err filled, *cert_out NULL. */
reel_rc reel_ca_leaf(reel_ca_t *ca, const char *host, X509 **cert_out, reel_err_t *err);

/** Sets the leaf cache capacity (>= 1), evicting the least recently used
 * leaves beyond it. */
void reel_ca_set_cache_capacity(reel_ca_t *ca, size_t capacity);

/** Number of leaves in the cache. */
size_t reel_ca_cache_size(const reel_ca_t *ca);

/** Counters: leaves minted (cache misses) and cache hits since open. */
void reel_ca_cache_stats(const reel_ca_t *ca, size_t *minted, size_t *hits);

#endif
