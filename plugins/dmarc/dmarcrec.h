/*
 * dmarcrec.h - DMARC (RFC 7489) without I/O: the policy record parser,
 * identifier alignment and the evaluation of one message, shared by the
 * filterd plugin (dmarc.c) and the fuzz target. Nothing here touches DNS or
 * the host: the caller fetches records and passes an organizational-domain
 * function.
 *
 * One message's evaluation is one struct dmarc_eval: the From domain, the
 * record used and where it was found, every authenticated identifier with
 * its result and alignment, the DMARC result and the disposition applied
 * with the reason it differs from the policy. It holds what an RFC 7489
 * Appendix C aggregate report row needs (policy_published, row/policy_evaluated,
 * identifiers, auth_results), so that a report store can record it as is.
 */
#ifndef SIFT_DMARCREC_H
#define SIFT_DMARCREC_H

#include <stdbool.h>
#include <stddef.h>

#define DMARC_DOMAIN_MAX 256 /* domain names, NUL included */
#define DMARC_URIS_MAX	 512 /* rua= / ruf= as given, NUL included */
#define DMARC_MAX_DKIM	 16  /* DKIM results evaluated per message */

enum dmarc_policy { DMARC_P_NONE = 0, DMARC_P_QUARANTINE, DMARC_P_REJECT };

/* A parsed record. Absent or invalid optional tags hold their defaults
 * (RFC 7489 6.3): adkim=r aspf=r pct=100 fo=0 rf=afrf ri=86400. */
struct dmarc_record {
	enum dmarc_policy p, sp; /* sp = p when not given */
	bool p_valid;		 /* a valid p= was present */
	bool sp_given;		 /* a valid sp= was present */
	bool sp_invalid;	 /* sp= present but not a valid policy */
	bool adkim_strict, aspf_strict;
	int pct; /* 0..100 */
	unsigned long ri;
	char fo[16];
	char rua[DMARC_URIS_MAX]; /* as published (for reports), "" when none */
	char ruf[DMARC_URIS_MAX];
	bool rua_valid; /* rua= holds at least one syntactically valid URI */
};

enum dmarc_parse {
	DMARC_REC_OK = 0,	  /* a usable record */
	DMARC_REC_NOT_DMARC,	  /* does not start with v=DMARC1: ignore it */
	DMARC_REC_INVALID,	  /* v=DMARC1 but no valid p= (or sp=) and no usable rua= */
	DMARC_REC_P_NONE_FALLBACK /* no valid p=/sp= but a valid rua=: act as p=none (6.6.3) */
};

/* Parses one TXT record (the concatenated strings). On DMARC_REC_OK and
 * DMARC_REC_P_NONE_FALLBACK, *r is filled (p=none in the latter). */
enum dmarc_parse dmarc_record_parse(const char *txt, struct dmarc_record *r);

/* True when txt starts with the v=DMARC1 tag (white space allowed around
 * '='), the test RFC 7489 6.6.3 step 3 applies to every TXT record. */
bool dmarc_is_record(const char *txt);

enum dmarc_result {
	DMARC_R_NONE = 0, /* no policy published (or several records) */
	DMARC_R_PASS,
	DMARC_R_FAIL,
	DMARC_R_TEMPERROR, /* a DNS lookup failed temporarily: the policy's, or, with no
			      aligned pass, an identifier's that would have aligned */
	DMARC_R_PERMERROR, /* unusable record, or no/several From domains */
	DMARC_R_MAX
};
extern const char *const dmarc_result_names[DMARC_R_MAX]; /* "none", "pass", ... */
extern const char *const dmarc_policy_names[3];		  /* "none", "quarantine", "reject" */

/* Why the disposition applied is milder than the policy (RFC 7489
 * Appendix C PolicyOverrideType, plus our own). */
enum dmarc_override {
	DMARC_O_NONE = 0,
	DMARC_O_SAMPLED_OUT,  /* pct= left the message out */
	DMARC_O_LOCAL_POLICY, /* a domain in dmarc_no_enforce_domains */
	DMARC_O_SITE_ACTION,  /* dmarc_reject_action downgraded reject */
};
extern const char *const dmarc_override_names[4];

/* SPF results as the spf plugin names them (symbols SPF_<RESULT>). */
enum dmarc_spf {
	DMARC_SPF_NONE = 0,
	DMARC_SPF_NEUTRAL,
	DMARC_SPF_PASS,
	DMARC_SPF_FAIL,
	DMARC_SPF_SOFTFAIL,
	DMARC_SPF_TEMPERROR,
	DMARC_SPF_PERMERROR,
	DMARC_SPF_MAX
};
extern const char *const dmarc_spf_names[DMARC_SPF_MAX];

/* DKIM results of one signature, from the dkim plugin's DKIM_VALID,
 * DKIM_INVALID and DKIM_TEMPFAIL (a key lookup that failed temporarily). */
enum dmarc_dkim { DMARC_DKIM_FAIL = 0, DMARC_DKIM_PASS = 1, DMARC_DKIM_TEMPERROR = 2, DMARC_DKIM_MAX };
extern const char *const dmarc_dkim_names[DMARC_DKIM_MAX]; /* "fail", "pass", "temperror" */

struct dmarc_auth {
	char domain[DMARC_DOMAIN_MAX];
	int result;   /* DKIM: enum dmarc_dkim; SPF: enum dmarc_spf */
	bool aligned; /* a pass whose domain aligns with the From domain */
};

/* The organizational domain of `domain` into out (lower case); returns
 * false when it cannot be determined (out then holds domain itself). */
typedef bool (*dmarc_orgdomain_fn)(void *arg, const char *domain, char *out, size_t n);

struct dmarc_eval {
	/* inputs, filled by the caller before dmarc_evaluate() */
	char from_domain[DMARC_DOMAIN_MAX];
	char org_domain[DMARC_DOMAIN_MAX]; /* of from_domain */
	struct dmarc_auth spf;		   /* domain "" when SPF gave nothing */
	struct dmarc_auth dkim[DMARC_MAX_DKIM];
	size_t ndkim;
	/* policy discovery, filled by the caller (the lookups) */
	bool have_record;
	bool record_at_org; /* found at org_domain, not at from_domain */
	struct dmarc_record rec;
	/* outputs of dmarc_evaluate() */
	enum dmarc_result result;
	bool dkim_aligned, spf_aligned;
	enum dmarc_policy policy;      /* p or sp, whichever applies */
	enum dmarc_policy disposition; /* what is done after pct and overrides */
	enum dmarc_override override;
	const char *reason; /* static text for temperror/permerror/none, or NULL */
};

/* Lower-cases and strips one trailing dot; false when not a plausible DNS
 * name (empty, over 253 octets, a label over 63, bad characters). */
bool dmarc_domain_norm(const char *in, char *out, size_t n);

/* Alignment of an authenticated domain with the From domain. */
bool dmarc_aligned(const char *auth_domain, const char *from_domain, bool strict, dmarc_orgdomain_fn org,
		   void *org_arg);

/* Computes alignment, the result and the policy from the inputs (with
 * have_record, rec and record_at_org set, or result preset to TEMPERROR /
 * PERMERROR / NONE by discovery, which is kept). An aligned pass gives
 * pass; else an SPF or DKIM temperror whose domain would have aligned gives
 * temperror (DMARCbis: the identifier's result is unknown, so is DMARC's),
 * with no disposition; else fail. sample is a number in 0..99 for pct=;
 * disposition is the policy or the pct downgrade (local overrides are the
 * caller's). */
void dmarc_evaluate(struct dmarc_eval *e, int sample, dmarc_orgdomain_fn org, void *org_arg);

#endif
