/*
 * spf_eval.h - a compact RFC 7208 SPF evaluator (check_host()).
 *
 * The evaluator is pure computation on top of a DNS query function given by
 * the caller (the plugin passes host->dns_query, the shared resolver). It
 * keeps no global state: every call to spf_eval() has its own counters and
 * buffers, so it is safe to call from many threads at once. Nothing in it
 * aborts: every failure becomes temperror or permerror as the RFC says.
 *
 * Ownership: the request's strings belong to the caller for the duration of
 * the call; spf_res.explanation is malloc'd (free with spf_res_free()).
 */
#ifndef SPF_EVAL_H
#define SPF_EVAL_H

#include <stddef.h>

#include "sift/plugin.h"

enum spf_result {
	SPF_NONE = 0,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
	SPF_RESULT_MAX
};
extern const char *const spf_result_names[SPF_RESULT_MAX];

enum spf_identity { SPF_ID_MAILFROM = 0, SPF_ID_HELO };

typedef struct sift_dns_result *(*spf_dns_fn)(void *arg, const char *name, int rrtype, long timeout_ms);

struct spf_req {
	int family;		    /* AF_INET or AF_INET6 (IPv4-mapped: use AF_INET) */
	unsigned char addr[16];	    /* 4 or 16 bytes */
	const char *sender;	    /* MAIL FROM without <>; "" = null sender */
	const char *helo;	    /* HELO/EHLO argument; NULL or "" when unknown */
	const char *receiver;	    /* %{r}: our host name; NULL = "unknown" */
	enum spf_identity identity; /* MAILFROM (HELO when sender is null) or HELO */
	spf_dns_fn dns;
	void *dns_arg;
	long long deadline_ms;	 /* absolute, spf_now_ms() clock; 0 = none */
	long dns_timeout_ms;	 /* cap per query; 0 = resolver default or what is left */
	int max_lookups;	 /* DNS-querying terms (10) */
	int max_void;		 /* void lookups (2) */
	int max_names;		 /* MX / PTR names per term (10) */
	const char *default_exp; /* explanation when exp= gives none (macros ok) */
};

struct spf_res {
	enum spf_result result;
	enum spf_identity identity; /* the identity actually checked */
	char sender[512];	    /* the checked sender (postmaster@helo for HELO) */
	char domain[256];	    /* the checked domain */
	char mechanism[128];	    /* matching term ("-all"), "default" or "" */
	char problem[160];	    /* why temperror/permerror */
	char *explanation;	    /* fail only, malloc'd, may be NULL */
	int lookups, voids;
};

/* Parses an IP address; IPv4-mapped IPv6 becomes IPv4. 0 or -1. */
int spf_parse_ip(const char *s, int *family_r, unsigned char addr_r[16]);
long long spf_now_ms(void);
void spf_eval(const struct spf_req *req, struct spf_res *res);
void spf_res_free(struct spf_res *res);

#endif
