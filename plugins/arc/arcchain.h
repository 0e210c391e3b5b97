/*
 * arcchain.h - the ARC sets of a message (RFC 8617): which header fields
 * make up each instance, whether the chain's structure is valid, and what
 * an ARC-Authentication-Results says. No I/O and no cryptography: the
 * arc plugin (arc.c) checks the signatures with the dkim plugin's verifier
 * (dkimverify.c).
 *
 * Structure (RFC 8617 4.2.1 and 5.2 steps 1-2): every ARC field has an
 * instance i= from 1 to 50; each instance 1..N has exactly one
 * ARC-Authentication-Results, one ARC-Message-Signature and one ARC-Seal;
 * the seal of instance 1 has cv=none, every later one cv=pass (a cv=fail
 * anywhere means the chain failed where it says so).
 *
 * Threading: no state of its own; a struct arc_chain belongs to one thread.
 */
#ifndef SIFT_ARCCHAIN_H
#define SIFT_ARCCHAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "../dkim/dkimverify.h"

#define ARC_MAX DKV_ARC_MAX

/* ARC_CV_TEMPERROR: the chain could not be verified (a key lookup failed
 * temporarily, an internal error); the plugin's result only, never a
 * chain's structure nor a seal's cv=. */
enum arc_cv { ARC_CV_NONE = 0, ARC_CV_PASS, ARC_CV_FAIL, ARC_CV_TEMPERROR, ARC_CV_MAX };
extern const char *const arc_cv_names[ARC_CV_MAX];

struct arc_set {
	size_t aar, ams, as; /* field indexes (valid when the chain's structure is) */
	bool has_aar, has_ams, has_as;
	struct dkv_sig sig;  /* the ARC-Message-Signature, parsed */
	struct dkv_sig seal; /* the ARC-Seal, parsed */
};

struct arc_chain {
	unsigned n;			 /* sets: the highest instance */
	enum arc_cv cv;			 /* structure: NONE (no ARC field), PASS (valid), FAIL */
	unsigned fail_i;		 /* the instance that failed (0: the chain as a whole) */
	const char *reason;		 /* why it failed (static) */
	struct arc_set set[ARC_MAX + 1]; /* set[1..n] */
};

/* Reads the ARC fields among the n header fields (names, byte-exact values
 * as after the colon) into c (zeroed here) and checks the structure. Free
 * with arc_chain_free. */
void arc_chain_parse(size_t n, const char *const *names, const char *const *values, struct arc_chain *c);
void arc_chain_free(struct arc_chain *c);

/* The instance of an ARC-Authentication-Results value ("i=2; id; ..."),
 * or 0 when it has none that is valid. */
unsigned arc_aar_instance(const char *value);

/* What an ARC-Authentication-Results value says passed: the domain of an
 * spf=pass (smtp.mailfrom, its domain part, else smtp.helo) into spf[]
 * ("" when none), and the header.d= of each dkim=pass, comma-separated,
 * into dkim[] ("" when none). */
void arc_aar_passes(const char *value, char *spf, size_t spf_n, char *dkim, size_t dkim_n);

#endif
