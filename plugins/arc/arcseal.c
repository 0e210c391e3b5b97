/*
 * arcseal.c - the arc plugin's chain verification (RFC 8617 5.2) and
 * sealing (RFC 8617 5.1) of one message, with dkimcore's verifier, signer
 * and key cache. See arc.c for when each runs.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "arc.h"
#include "dkimcache.h"

#define AMS_NAME "ARC-Message-Signature"
#define AS_NAME	 "ARC-Seal"
#define AAR_NAME "ARC-Authentication-Results"

static struct kc_limits limits(const struct arc_conf *c)
{
	struct kc_limits l = {c->dns_timeout, c->key_cache_size, c->key_cache_max_ttl,
			      c->key_cache_negative_ttl};
	return l;
}

/* ---- verification ------------------------------------------------------------ */

void arc_verify_start(const struct sift_host *host, struct arc_msg *m)
{
	const struct arc_conf *c = m->conf;
	m->cv = ARC_CV_NONE;
	if (!(m->chain = calloc(1, sizeof(*m->chain)))) {
		m->cv = ARC_CV_TEMPERROR;
		m->reason = "out of memory";
		return;
	}
	struct arc_chain *ch = m->chain;
	arc_chain_parse(m->fields.n, m->fields.names, m->fields.values, ch);
	if (ch->cv != ARC_CV_PASS)
		return;
	struct kc_limits l = limits(c);
	time_t now = time(NULL);
	for (unsigned i = 1; i <= ch->n; i++) {
		struct arc_set *s = &ch->set[i];
		struct arc_vset *v = &m->v[i];
		/* rsa-sha1 is parsed only to be failed, by name and without a
		 * key lookup (RFC 8301; RFC 8617 signs with rsa-sha256): the
		 * verifier hashes with SHA-256 and would say "body hash did not
		 * verify" or "signature verification failed" instead. */
		if (s->sig.alg == DKV_A_RSA_SHA1) {
			v->ams_res = DKV_FAIL;
			v->ams_reason = AMS_NAME " a=rsa-sha1 not allowed (RFC 8301)";
		} else {
			v->ams_res =
				kc_fetch(host, m->ctx, s->sig.s, s->sig.d, &l, &v->ams_key, &v->ams_reason);
			if (v->ams_res == DKV_NONE)
				v->ams_res = dkv_start(&s->sig, v->ams_key, now, c->clock_drift / 1000,
						       &v->ams_reason);
		}
		v->started = v->ams_res == DKV_NONE;
		if (s->seal.alg == DKV_A_RSA_SHA1) {
			v->as_res = DKV_FAIL;
			v->as_reason = AS_NAME " a=rsa-sha1 not allowed (RFC 8301)";
		} else
			v->as_res =
				kc_fetch(host, m->ctx, s->seal.s, s->seal.d, &l, &v->as_key, &v->as_reason);
	}
}

void arc_verify_body(struct arc_msg *m, const unsigned char *buf, size_t len)
{
	if (!m->chain || m->chain->cv != ARC_CV_PASS)
		return;
	for (unsigned i = 1; i <= m->chain->n; i++) {
		struct arc_vset *v = &m->v[i];
		if (v->started && v->ams_res == DKV_NONE &&
		    dks_body(m->chain->set[i].sig.body, buf, len) < 0) {
			v->ams_res = DKV_TEMPERROR;
			v->ams_reason = "body hash failed";
		}
	}
}

static void fail_at(struct arc_msg *m, unsigned i, const char *reason)
{
	m->cv = ARC_CV_FAIL;
	m->fail_i = i;
	m->reason = reason;
}

/* A temporary failure (a key lookup that failed temporarily, an internal
 * error) at instance i: the chain cannot be said to pass nor to fail,
 * unless another check fails for good (fail_at wins). The first (newest)
 * one is kept. */
static void temp_at(struct arc_msg *m, unsigned i, const char *reason)
{
	if (m->cv == ARC_CV_TEMPERROR)
		return;
	m->cv = ARC_CV_TEMPERROR;
	m->fail_i = i;
	m->reason = reason;
}

/* Verifies the seal of instance i over the sets 1..i. */
static enum dkv_result check_seal(struct arc_msg *m, unsigned i, const char **reason_r)
{
	const struct arc_chain *ch = m->chain;
	const struct arc_vset *v = &m->v[i];
	if (v->as_res != DKV_NONE) {
		*reason_r = v->as_reason;
		return v->as_res;
	}
	const char *names[3 * ARC_MAX], *values[3 * ARC_MAX];
	size_t n = 0;
	const char *const *fn = m->fields.names, *const *fv = m->fields.values;
	for (unsigned j = 1; j <= i; j++) {
		const struct arc_set *s = &ch->set[j];
		size_t idx[3] = {s->aar, s->ams, s->as};
		for (int k = 0; k < (j < i ? 3 : 2); k++) {
			names[n] = fn[idx[k]];
			values[n++] = fv[idx[k]];
		}
	}
	return dkv_seal_check(&ch->set[i].seal, v->as_key, time(NULL), m->conf->clock_drift / 1000, n, names,
			      values, fn[ch->set[i].as], reason_r);
}

/* The lowest set sealed by a trusted sealer: its AAR's passes become
 * ARC_TRUSTED's option. */
static void trusted(const struct sift_host *host, struct arc_msg *m)
{
	const struct arc_conf *c = m->conf;
	const struct arc_chain *ch = m->chain;
	for (unsigned i = 1; c->trusted_sealers && i <= ch->n; i++) {
		char d[256];
		snprintf(d, sizeof(d), "%s", ch->set[i].seal.d);
		for (char *p = d; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		char *val = NULL;
		int rc = host->map_lookup(c->trusted_sealers, d, &val);
		free(val);
		if (rc < 0)
			host->log(m->ctx, LOG_WARNING, "arc_trusted_sealers lookup failed for %s", d);
		if (rc != 1 || !kc_name_ok(d))
			continue;
		char spf[128], dkim[256];
		arc_aar_passes(m->fields.values[ch->set[i].aar], spf, sizeof(spf), dkim, sizeof(dkim));
		for (char *p = spf; *p; p++)
			if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
				*p = '_';
		snprintf(m->trusted_d, sizeof(m->trusted_d), "d=%s", d);
		snprintf(m->trusted, sizeof(m->trusted), "d=%s i=%u spf=%s dkim=%s", d, i, *spf ? spf : "-",
			 *dkim ? dkim : "-");
		return;
	}
}

void arc_verify_finish(const struct sift_host *host, struct arc_msg *m)
{
	struct arc_chain *ch = m->chain;
	if (!ch || ch->cv != ARC_CV_PASS) {
		if (ch && ch->cv == ARC_CV_FAIL)
			fail_at(m, ch->fail_i, ch->reason);
		return;
	}
	const char *const *fn = m->fields.names;
	for (unsigned i = ch->n; i >= 1; i--) {
		struct arc_vset *v = &m->v[i];
		if (v->ams_res == DKV_NONE)
			v->ams_res = dkv_finish(&ch->set[i].sig, v->ams_key, m->fields.n, fn,
						m->fields.values, fn[ch->set[i].ams], &v->ams_reason);
	}
	const struct arc_vset *newest = &m->v[ch->n];
	if (newest->ams_res == DKV_TEMPERROR)
		temp_at(m, ch->n,
			newest->ams_reason ? newest->ams_reason : "ARC-Message-Signature temperror");
	else if (newest->ams_res != DKV_PASS) {
		fail_at(m, ch->n, newest->ams_reason ? newest->ams_reason : "ARC-Message-Signature failed");
		return;
	}
	/* oldest-pass: the lowest instance from which every AMS up to the
	 * newest verifies; 0 when all do (RFC 8617 5.2 step 5). */
	m->oldest_pass = 0;
	for (unsigned i = ch->n; i >= 1; i--)
		if (m->v[i].ams_res != DKV_PASS) {
			m->oldest_pass = i + 1;
			break;
		}
	/* Every seal: one that fails for good fails the chain even when
	 * another key could not be fetched; a temperror only leaves the
	 * result open (RFC 8601 2.7.1, never cv=fail). */
	for (unsigned i = ch->n; i >= 1; i--) {
		const char *reason = NULL;
		enum dkv_result r = check_seal(m, i, &reason);
		if (r == DKV_TEMPERROR)
			temp_at(m, i, reason ? reason : "ARC-Seal temperror");
		else if (r != DKV_PASS) {
			fail_at(m, i, reason ? reason : "ARC-Seal failed");
			return;
		}
	}
	if (m->cv == ARC_CV_TEMPERROR)
		return;
	m->cv = ARC_CV_PASS;
	trusted(host, m);
}

void arc_verify_free(struct arc_msg *m)
{
	for (unsigned i = 0; i <= ARC_MAX; i++) {
		kc_unref(m->v[i].ams_key);
		kc_unref(m->v[i].as_key);
	}
	memset(m->v, 0, sizeof(m->v));
	if (m->chain) {
		arc_chain_free(m->chain);
		free(m->chain);
		m->chain = NULL;
	}
}

/* ---- sealing --------------------------------------------------------------------- */

/* The instance of our set: one above the highest found; 0 when no set may
 * be added (50 sets, or the newest seal already says cv=fail). */
static unsigned next_instance(const struct arc_chain *ch)
{
	if (!ch)
		return 0;
	if (ch->n >= ARC_MAX)
		return 0;
	const struct arc_set *s = &ch->set[ch->n];
	if (ch->n && s->has_as && s->seal.cv && strcmp(s->seal.cv, "fail") == 0)
		return 0;
	return ch->n + 1;
}

int arc_seal_start(const struct sift_host *host, struct arc_msg *m)
{
	const struct arc_conf *c = m->conf;
	if (!m->chain) {
		host->log(m->ctx, LOG_ERR, "sealing: the ARC chain cannot be read: %s",
			  m->reason ? m->reason : "internal error");
		return -1;
	}
	unsigned inst = next_instance(m->chain);
	if (!inst) {
		host->log(m->ctx, LOG_NOTICE, "not sealing: %s",
			  m->chain && m->chain->n >= ARC_MAX ? "the chain has 50 sets"
							     : "the ARC chain failed upstream");
		m->seal = false;
		return 0;
	}
	struct dks_params p = {
		.key = c->pkey,
		.domain = c->sign_domain,
		.selector = c->sign_selector,
		.relaxed_headers = true,
		.relaxed_body = true,
		.now = time(NULL),
		.sign_headers = c->sign_headers,
		.sig_name = AMS_NAME,
		.arc_instance = inst,
	};
	if (!(m->signer = dks_new(&p))) {
		host->log(m->ctx, LOG_ERR, "sealing: cannot start the ARC-Message-Signature");
		return -1;
	}
	return 0;
}

/* The ARC-Seal value of instance inst over the previous sets and our new
 * AAR and AMS (malloc'd), or NULL. */
static char *make_seal(struct arc_msg *m, unsigned inst, const char *aar, const char *ams)
{
	const struct arc_conf *c = m->conf;
	if (m->cv == ARC_CV_TEMPERROR) /* never a cv= we could not establish */
		return NULL;
	const char *names[3 * ARC_MAX], *values[3 * ARC_MAX];
	size_t n = 0;
	const struct arc_chain *ch = m->chain;
	for (unsigned j = 1; j < inst; j++) {
		const struct arc_set *s = &ch->set[j];
		size_t idx[3] = {s->aar, s->ams, s->as};
		for (int k = 0; k < 3; k++) {
			names[n] = m->fields.names[idx[k]];
			values[n++] = m->fields.values[idx[k]];
		}
	}
	names[n] = AAR_NAME;
	values[n++] = aar;
	names[n] = AMS_NAME;
	values[n++] = ams;
	char *seal = NULL;
	if (asprintf(&seal, "i=%u; a=%s; t=%lld; cv=%s;\r\n\td=%s; s=%s; b=", inst,
		     c->sign_ed25519 ? "ed25519-sha256" : "rsa-sha256", (long long)time(NULL),
		     arc_cv_names[m->cv], c->sign_domain, c->sign_selector) < 0)
		return NULL;
	unsigned char md[32];
	char *b64 = NULL;
	if (dks_fields_digest(true, n, names, values, AS_NAME, seal, md) < 0 ||
	    dks_sign_digest(c->pkey, md, &b64) < 0 ||
	    dks_fold_b64(&seal, 8 + strlen(strrchr(seal, '\t') + 1), b64) < 0) {
		free(b64);
		free(seal);
		return NULL;
	}
	free(b64);
	return seal;
}

enum sift_verdict arc_seal_finish(const struct sift_host *host, struct arc_msg *m,
				  const struct dk_fieldlist *now)
{
	struct sift_ctx *ctx = m->ctx;
	if (!m->signer)
		return SIFT_DUNNO;
	if (m->cv == ARC_CV_TEMPERROR) {
		/* A seal records cv= for good: cv=fail would break the chain
		 * for every later hop although nothing failed, and a pass is
		 * not known. Not sealing and delivering would drop the chain's
		 * result silently: an internal error, so arc_error_action
		 * (tempfail by default: the client retries, the key lookup
		 * likely works then; accept/dunno: delivered without our set). */
		host->log(ctx, LOG_WARNING, "not sealing: the ARC chain could not be verified (i=%u %s)",
			  m->fail_i, m->reason ? m->reason : "temperror");
		return SIFT_ERROR;
	}
	unsigned inst = next_instance(m->chain);
	const char *id = arc_authserv_id(ctx, m->conf);
	const char *res = host->auth_result_get(ctx, id);
	char *aar = NULL, *ams = NULL, *seal = NULL;
	const char *err = "out of memory";
	if (asprintf(&aar, "i=%u; %s;\r\n\t%s", inst, id, res && *res ? res : "none") < 0)
		aar = NULL;
	if (aar && dks_finish(m->signer, now->n, now->names, now->values, &ams, &err) == 0) {
		err = "signing failed";
		seal = make_seal(m, inst, aar, ams);
	}
	if (!seal) {
		host->log(ctx, LOG_ERR, "sealing failed: %s", err);
		free(aar);
		free(ams);
		return SIFT_ERROR;
	}
	host->header_insert(ctx, 0, AAR_NAME, aar);
	host->header_insert(ctx, 0, AMS_NAME, ams);
	host->header_insert(ctx, 0, AS_NAME, seal);
	host->log(ctx, LOG_INFO, "sealed: i=%u cv=%s d=%s s=%s", inst, arc_cv_names[m->cv],
		  m->conf->sign_domain, m->conf->sign_selector);
	free(aar);
	free(ams);
	free(seal);
	return SIFT_DUNNO;
}
