/*
 * dkimverify.h - verifying DKIM signatures (RFC 6376, RFC 8301, RFC 8463)
 * with public keys parsed once per key record.
 *
 * libopendkim decodes the public key from the DNS record again for every
 * signature it checks (with OpenSSL 3 that decode is most of the cost of a
 * verification); here a key record is parsed and checked once
 * (dkv_key_parse) and the result, an EVP_PKEY or the reason the record
 * cannot be used, is what the plugin's cache keeps. Canonicalization and
 * hashing are the signer's (dkimsign.c).
 *
 * Use: dkv_sig_parse() on each DKIM-Signature value, dkv_key_parse() on its
 * key record (or a cached one), dkv_start() to begin the body hash,
 * dks_body() on every body chunk, dkv_finish() with the header fields.
 *
 * Threading: a struct dkv_key is read-only after dkv_key_parse and may be
 * shared by threads (the plugin counts its references under the cache's
 * lock); a struct dkv_sig belongs to one thread. No global state.
 */
#ifndef SIFT_DKIMVERIFY_H
#define SIFT_DKIMVERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "dkimsign.h"

enum dkv_result { DKV_NONE = 0, DKV_PASS, DKV_FAIL, DKV_PERMERROR, DKV_TEMPERROR };
enum dkv_alg { DKV_A_UNKNOWN = 0, DKV_A_RSA_SHA256, DKV_A_ED25519_SHA256, DKV_A_RSA_SHA1 };

/* A parsed DKIM-Signature. Strings are malloc'd (NULL when absent). */
struct dkv_sig {
	char *d, *s, *a, *i, *b, *bh, *stripped;
	char **h; /* h= names */
	size_t nh;
	enum dkv_alg alg;
	bool relaxed_h, relaxed_b;
	bool has_l, has_t, has_x;
	unsigned long long l, t, x;
	unsigned char *sig; /* b= decoded */
	size_t siglen;
	const char *error; /* why the signature is malformed (permerror), or NULL */
	unsigned instance; /* ARC: i= (1..50) */
	char *cv;	   /* ARC-Seal: cv= (none, pass or fail) */
	struct dks *body;  /* body hash in progress (dkv_start) */
};

/* Parses a DKIM-Signature value (byte-exact, as after the colon). Always
 * fills what it can (d, s, a for reports); s->error is set when the
 * signature is malformed or uses an unknown algorithm. */
void dkv_sig_parse(const char *value, struct dkv_sig *s);
void dkv_sig_free(struct dkv_sig *s);

/* ARC (RFC 8617) fields: an ARC-Message-Signature is a DKIM-Signature
 * without v= whose i= is the instance; an ARC-Seal has i=, a=, b=, cv=, d=,
 * s= and t= and neither h= nor bh=. Parsed into the same structure, i= into
 * instance (i stays NULL). */
enum dkv_kind { DKV_K_DKIM = 0, DKV_K_AMS, DKV_K_SEAL };
#define DKV_ARC_MAX 50 /* most ARC sets in a chain (RFC 8617 4.2.1) */
void dkv_sig_parse_kind(const char *value, enum dkv_kind kind, struct dkv_sig *s);

/* A key record, parsed and checked (RFC 6376 3.6.1). */
struct dkv_key {
	EVP_PKEY *pk;	     /* NULL when the record cannot be used */
	enum dkv_result err; /* DKV_FAIL or DKV_PERMERROR when pk is NULL */
	const char *reason;  /* static */
	bool ed25519, strict, sha256_ok;
	int bits;
	unsigned refs; /* for the plugin's cache */
};

/* NULL only when out of memory. */
struct dkv_key *dkv_key_parse(const char *record);
void dkv_key_free(struct dkv_key *k);

/* Checks the key against the signature (type, h=, t=s, size, t=, x=) and
 * starts the body hash. DKV_NONE when verification goes on, else the
 * result with *reason_r. */
/* The signature's t= and x= against now (drift_s tolerated): DKV_FAIL
 * (future t=, expired x=) with the reason, else DKV_NONE. Needs no key, so
 * it is checked before the key is looked up. */
enum dkv_result dkv_sig_times(const struct dkv_sig *s, time_t now, long long drift_s, const char **reason_r);

enum dkv_result dkv_start(struct dkv_sig *s, const struct dkv_key *k, time_t now, long long drift_s,
			  const char **reason_r);

/* Ends the body hash and checks the body hash and the signature over the
 * message's n header fields (names, byte-exact values); sig_name and
 * sig_value are the DKIM-Signature field being verified. */
enum dkv_result dkv_finish(struct dkv_sig *s, const struct dkv_key *k, size_t n, const char *const *names,
			   const char *const *values, const char *sig_name, const char **reason_r);

/* ARC-Seal: checks the key against the seal as dkv_start does (without a
 * body), then the signature over the n fields given, in that order, and
 * sig_name ":" the seal's value with b= empty, relaxed (RFC 8617 5.1.1). */
enum dkv_result dkv_seal_check(const struct dkv_sig *s, const struct dkv_key *k, time_t now,
			       long long drift_s, size_t n, const char *const *names,
			       const char *const *values, const char *sig_name, const char **reason_r);

#endif
