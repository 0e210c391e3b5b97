/*
 * dkimsign.h - making DKIM signatures (RFC 6376, RFC 8463) with a private
 * key parsed once.
 *
 * libopendkim takes the private key as PEM text and parses it again for
 * every message; with OpenSSL 3 that parse and the first use of the fresh
 * key cost about 0.5 ms, more than the RSA-2048 signature itself. This
 * signer keeps an EVP_PKEY per key table entry (parsed at init, read-only
 * afterwards, shared by all threads) and does the canonicalization and
 * hashing itself; verification stays with libopendkim.
 *
 * Use: dks_new() per signature, dks_body() for every body chunk (CRLF or
 * bare LF line ends), dks_finish() with the message's header fields in
 * order, dks_free(). Header fields are given as name and value, the value
 * byte-exact as it follows the colon (leading white space and CRLF folding
 * included). The result is the DKIM-Signature value, folded with CRLF+TAB,
 * for a field written as "DKIM-Signature: " + value (the hash covers
 * exactly that text, so simple header canonicalization works too).
 *
 * Threading: a struct dks belongs to one thread at a time; the EVP_PKEY is
 * only read. No global state.
 */
#ifndef SIFT_DKIMSIGN_H
#define SIFT_DKIMSIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

struct dks;

/* A growable string (NUL-terminated s, NULL while empty); oom once an
 * allocation failed: what was added since is lost, the caller checks. */
struct dk_sbuf {
	char *s;
	size_t n, cap;
	bool oom;
};
void dk_sb_add(struct dk_sbuf *b, const char *p, size_t n);
void dk_sb_str(struct dk_sbuf *b, const char *s);

struct dks_params {
	EVP_PKEY *key; /* RSA or Ed25519 private key */
	const char *domain, *selector;
	bool relaxed_headers, relaxed_body;
	time_t now;	 /* t= */
	long long ttl_s; /* x= = t= + ttl_s; 0 = no x= */
	/* header fields signed when present (lower or mixed case), and those
	 * listed once more in h= (oversigned); NULL-terminated */
	const char *const *sign_headers;
	const char *const *oversign_headers;
	/* verification (dks_body_hash): hash only the first body_limit
	 * canonical bytes (l=) */
	bool has_body_limit;
	unsigned long long body_limit;
	/* ARC (RFC 8617): the field's name (NULL: DKIM-Signature) and, for an
	 * ARC-Message-Signature, its instance (i=, written instead of v=1) */
	const char *sig_name;
	unsigned arc_instance;
};

/* NULL when out of memory or the key type is not RSA/Ed25519. */
struct dks *dks_new(const struct dks_params *p);
/* Body bytes as they arrive. 0, or -1 on a hashing error. */
int dks_body(struct dks *s, const unsigned char *buf, size_t len);
/* Computes the signature over the n header fields (message order) and the
 * body seen; *value_r is malloc'd. 0, or -1 with a static *err_r. */
int dks_finish(struct dks *s, size_t n, const char *const *names, const char *const *values, char **value_r,
	       const char **err_r);
void dks_free(struct dks *s);

/* For verification: ends the body and gives its base64 SHA-256 (bh=, at
 * most l= bytes when has_body_limit) and the length of the whole canonical
 * body. 0, or -1 on a hashing error. */
int dks_body_hash(struct dks *s, char bh[64], unsigned long long *canon_len_r);

/* SHA-256 of the header fields named by h[0..nh) (each name takes the
 * last unused instance of the field, RFC 6376 5.4.2; absent ones add
 * nothing), then of sig_name ":" sig_value without its CRLF, canonicalized
 * simple or relaxed. 0, or -1 when out of memory. */
int dks_header_digest(bool relaxed, size_t n, const char *const *names, const char *const *values,
		      const char *const *h, size_t nh, const char *sig_name, const char *sig_value,
		      unsigned char md[32]);

/* SHA-256 of the n header fields as given (in that order, no selection),
 * then of sig_name ":" sig_value without its CRLF, canonicalized simple or
 * relaxed: what an ARC-Seal covers (RFC 8617 5.1.1). 0, or -1 when out of
 * memory. */
int dks_fields_digest(bool relaxed, size_t n, const char *const *names, const char *const *values,
		      const char *sig_name, const char *sig_value, unsigned char md[32]);

/* Signs a SHA-256 digest with key (RSASSA-PKCS1-v1_5 or PureEdDSA over the
 * digest, as DKIM does); *b64_r is the base64 signature (malloc'd). 0 or
 * -1. */
int dks_sign_digest(EVP_PKEY *key, const unsigned char md[32], char **b64_r);

/* Appends b64 to the folded field value *v (malloc'd, grown) whose last
 * line is col characters long, folding with CRLF+TAB as dks_finish does.
 * 0 or -1 (out of memory). */
int dks_fold_b64(char **v, size_t col, const char *b64);

/* PEM text -> EVP_PKEY (NULL on error). */
EVP_PKEY *dks_load_key(const char *pem);

#endif
