/*
 * arc.h - the arc plugin's configuration and message state, shared by its
 * hooks (arc.c), its verifier and sealer (arcseal.c) and its siftctl tools
 * (tool.c).
 */
#ifndef SIFT_ARC_H
#define SIFT_ARC_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "arcchain.h"
#include "dkimfields.h"
#include "dkimkeys.h"
#include "dkimsign.h"
#include "dkimverify.h"
#include "sift/plugin.h"

enum arc_sym { AS_PASS, AS_FAIL, AS_NONE, AS_TRUSTED, AS_TEMPERROR, AS_MAX };

struct arc_conf {
	/* parameters */
	const char *authserv_id;
	int verify, add_auth_results;
	const struct sift_map *trusted_sealers;
	const char *const *sign_profiles;
	const struct sift_map *sign_recipients;
	const char *key_table, *sign_key;
	const char *const *sign_headers;
	long long dns_timeout, key_cache_size, key_cache_max_ttl, key_cache_negative_ttl, clock_drift;
	const char *score_text[AS_MAX];
	/* derived in init */
	double score[AS_MAX];
	EVP_PKEY *pkey; /* the sealing key, NULL when not sealing */
	char *sign_domain, *sign_selector;
	bool sign_ed25519;
};

/* One instance being verified: the keys of its AMS and seal. */
struct arc_vset {
	struct dkv_key *ams_key, *as_key; /* references from the key cache */
	enum dkv_result ams_res;	  /* DKV_NONE while the body is hashed */
	const char *ams_reason;
	enum dkv_result as_res; /* DKV_NONE when as_key is there */
	const char *as_reason;
	bool started; /* the AMS body hash runs */
};

struct arc_msg {
	struct sift_ctx *ctx;
	const struct arc_conf *conf;
	bool verifying, seal;
	struct dk_fieldlist fields; /* the header fields as received */
	struct arc_chain *chain;    /* malloc'd while verifying */
	struct arc_vset v[ARC_MAX + 1];
	/* the result */
	enum arc_cv cv;
	unsigned fail_i, oldest_pass;
	const char *reason;
	char trusted[800];   /* ARC_TRUSTED's option, "" when none */
	char trusted_d[300]; /* "d=SEALER" of it */
	/* sealing */
	struct dks *signer; /* the new ARC-Message-Signature */
};

/* arcseal.c */
void arc_verify_start(const struct sift_host *host, struct arc_msg *m);
void arc_verify_body(struct arc_msg *m, const unsigned char *buf, size_t len);
void arc_verify_finish(const struct sift_host *host, struct arc_msg *m);
void arc_verify_free(struct arc_msg *m);
int arc_seal_start(const struct sift_host *host, struct arc_msg *m);
/* Seals with the AMS over `now`, the header fields as the message leaves
 * (read in the sign hook; the previous sets come from m->fields). */
enum sift_verdict arc_seal_finish(const struct sift_host *host, struct arc_msg *m,
				  const struct dk_fieldlist *now);

/* arc.c */
const char *arc_authserv_id(struct sift_ctx *ctx, const struct arc_conf *c);

/* tool.c */
extern const struct sift_tool arc_tools[];

#endif
