/*
 * arc.c - the `arc` plugin: ARC (RFC 8617) in filterd. Verifies the ARC
 * chain of inbound mail and seals mail we forward, with the dkim plugin's
 * signer, verifier and key cache (the dkimcore library).
 *
 * Verification (inbound profile, and any message we seal): at end of
 * header the ARC fields are sorted into sets (arcchain.c) and every
 * ARC-Message-Signature's key is fetched (the shared resolver, the key
 * cache) and its body hash started; the body hook feeds them; at end of
 * message (RFC 8617 5.2) the newest AMS must verify, every AMS is checked
 * for the oldest-pass, then every ARC-Seal from the newest down, each over
 * the sets up to its own. The result is none|pass|fail|temperror: an ARC_*
 * symbol and `arc=RESULT smtp.remote-ip=... header.oldest-pass=N` in the
 * message's Authentication-Results (host->auth_result). temperror (a key
 * lookup failed temporarily, nothing failed for good) is never cv=fail: a
 * message we would seal gets an internal error instead (arc_error_action).
 *
 * Trusted sealers: when the chain passes and a set was sealed by a domain
 * in arc_trusted_sealers, the lowest such set's ARC-Authentication-Results
 * (the first hop seen by a sealer we trust) is read, and its spf/dkim passes
 * are given as the option of ARC_TRUSTED: "d=SEALER i=N spf=DOMAIN
 * dkim=D1,D2". The dmarc plugin, after arc in the profile, uses it to not
 * apply a failing DMARC policy when those identifiers align (local policy,
 * RFC 7489 6.7 and RFC 8617 7.2).
 *
 * Sealing (profiles in arc_sign_profiles, or a recipient in
 * arc_sign_recipients): decided at end of header, so the new
 * ARC-Message-Signature hashes the body as it arrives; at end of message
 * the set i=N+1 is made: ARC-Authentication-Results with the results the
 * plugins before arc gave for our authserv-id (host->auth_result_get, arc's
 * own included), ARC-Message-Signature, ARC-Seal with our cv=, inserted at
 * the top. No set is added to a chain whose newest seal already says
 * cv=fail, nor past 50 sets.
 *
 * Threading: the configuration block (the sealing key, lists) is read-only
 * after init; the key cache is dkimcore's, under its mutex. Per-message
 * state lives in host->msg() and is freed in msg_end.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "arc.h"
#include "dkimcache.h"
#include "dkimfields.h"
#include "dkimsign.h"

#define OFF(f) offsetof(struct arc_conf, f)
static const struct sift_param params[] = {
	{"authserv_id", SIFT_P_STRING, "$authserv_id", 0, 0, OFF(authserv_id), NULL,
	 "authserv-id of the Authentication-Results and of our ARC-Authentication-Results (empty: the host "
	 "name)"},
	{"verify", SIFT_P_BOOL, "yes", 0, 0, OFF(verify), NULL, "verify the ARC chain of inbound mail"},
	{"add_auth_results", SIFT_P_BOOL, "yes", 0, 0, OFF(add_auth_results), NULL,
	 "add the arc= result to the Authentication-Results header"},
	{"trusted_sealers", SIFT_P_MAP, "", 0, 0, OFF(trusted_sealers), NULL,
	 "ARC sealer domains (d=) whose passing chain lets dmarc use their first-hop results"},
	{"sign_profiles", SIFT_P_LIST, "", 0, 0, OFF(sign_profiles), NULL,
	 "profiles whose mail is sealed (inbound, originating)"},
	{"sign_recipients", SIFT_P_MAP, "", 0, 0, OFF(sign_recipients), NULL,
	 "recipient addresses or domains (.parent too) whose mail is sealed"},
	{"key_table", SIFT_P_STRING, "$dkim_key_table", 0, 0, OFF(key_table), NULL,
	 "key table (texthash:/path or inline:{}) of NAME = DOMAIN:SELECTOR:/path/to/key"},
	{"sign_key", SIFT_P_STRING, "", 0, 0, OFF(sign_key), NULL,
	 "name of the key in arc_key_table that seals (RSA or Ed25519)"},
	{"sign_headers", SIFT_P_LIST,
	 "From Sender Reply-To Subject Date Message-ID To Cc MIME-Version Content-Type "
	 "Content-Transfer-Encoding In-Reply-To References List-Id DKIM-Signature",
	 0, 0, OFF(sign_headers), NULL, "header fields the ARC-Message-Signature covers when present"},
	KC_PARAMS(struct arc_conf),
	{"score_pass", SIFT_P_STRING, "-0.1", 0, 0, OFF(score_text[AS_PASS]), NULL, "score of ARC_PASS"},
	{"score_fail", SIFT_P_STRING, "1.0", 0, 0, OFF(score_text[AS_FAIL]), NULL, "score of ARC_FAIL"},
	{"score_none", SIFT_P_STRING, "0", 0, 0, OFF(score_text[AS_NONE]), NULL, "score of ARC_NONE"},
	{"score_trusted", SIFT_P_STRING, "0", 0, 0, OFF(score_text[AS_TRUSTED]), NULL,
	 "score of ARC_TRUSTED (a passing chain sealed by a trusted sealer)"},
	{"score_temperror", SIFT_P_STRING, "0", 0, 0, OFF(score_text[AS_TEMPERROR]), NULL,
	 "score of ARC_TEMPERROR (the chain could not be verified: a key lookup failed temporarily)"},
	SIFT_PARAM_END,
};
#undef OFF

static const char *const sym_names[AS_MAX] = {"ARC_PASS", "ARC_FAIL", "ARC_NONE", "ARC_TRUSTED",
					      "ARC_TEMPERROR"};

static const struct sift_host *host;

/* ---- configuration ---------------------------------------------------------- */

/* The sealing key's PEM, read as root before the privilege drop and kept
 * for later generations (by path). */
static char *pre_path, *pre_pem;

/* Finds arc_sign_key in arc_key_table into k (strings owned by kt). */
static int find_key(const struct arc_conf *c, struct dk_keytable *kt, struct dk_key **k_r, char **err_r)
{
	if (dk_keytable_load(c->key_table, false, kt, err_r) < 0)
		return -1;
	*k_r = (struct dk_key *)dk_keytable_find(kt, c->sign_key);
	if (!*k_r) {
		*err_r = dk_printf("arc_sign_key: no key \"%s\" in arc_key_table", c->sign_key);
		dk_keytable_free(kt);
		return -1;
	}
	return 0;
}

static int arc_preinit(const struct sift_host *h, void *conf, char **err_r)
{
	const struct arc_conf *c = conf;
	host = h;
	if (!*c->sign_key || !*c->key_table)
		return 0;
	struct dk_keytable kt;
	struct dk_key *k;
	char *err = NULL;
	if (find_key(c, &kt, &k, &err) < 0) {
		free(err); /* init reports it */
		return 0;
	}
	if (dk_key_load(k, err_r) < 0) {
		dk_keytable_free(&kt);
		return -1;
	}
	free(pre_path);
	free(pre_pem);
	pre_path = strdup(k->path);
	pre_pem = strdup(k->pem);
	dk_keytable_free(&kt);
	return 0;
}

static int load_sign_key(struct arc_conf *c, char **err_r)
{
	struct dk_keytable kt;
	struct dk_key *k;
	if (find_key(c, &kt, &k, err_r) < 0)
		return -1;
	/* The file as it is now (a key replaced in place is used, a key made
	 * readable by others refused); the copy read before privileges were
	 * dropped only when the daemon user may not read it, as dkim does. */
	char *lerr = NULL;
	int rc = dk_key_load(k, &lerr);
	char *pem = NULL;
	if (rc < 0 && pre_path && pre_pem && strcmp(pre_path, k->path) == 0 && lerr &&
	    strstr(lerr, "Permission denied") && (pem = strdup(pre_pem))) {
		free(lerr);
		lerr = NULL;
		rc = dk_key_set_pem(k, pem, err_r);
	} else if (rc < 0) {
		*err_r = lerr;
		lerr = NULL;
	}
	free(lerr);
	if (rc == 0) {
		c->pkey = dks_load_key(k->pem);
		c->sign_domain = strdup(k->domain);
		c->sign_selector = strdup(k->selector);
		c->sign_ed25519 = k->type == DK_ED25519;
		if (!c->pkey || !c->sign_domain || !c->sign_selector) {
			*err_r = dk_printf("arc_sign_key %s: cannot load the key", c->sign_key);
			rc = -1;
		}
	}
	dk_keytable_free(&kt);
	return rc;
}

static int arc_init(const struct sift_host *h, void *conf, char **err_r)
{
	struct arc_conf *c = conf;
	host = h;
	if (h->struct_size < offsetof(struct sift_host, auth_result_get) + sizeof(h->auth_result_get)) {
		*err_r = dk_printf("this host has no auth_result_get: too old");
		return -1;
	}
	if (h->abi_minor < 9) {
		*err_r = dk_printf("this host does not run signers last (plugin ABI minor 9): too old");
		return -1;
	}
	for (int i = 0; i < AS_MAX; i++) {
		char *end;
		c->score[i] = strtod(c->score_text[i], &end);
		if (end == c->score_text[i] || *end) {
			*err_r = dk_printf("arc score of %s: not a number: %s", sym_names[i],
					   c->score_text[i]);
			return -1;
		}
	}
	for (const char *const *p = c->sign_profiles; p && *p; p++)
		if (strcmp(*p, "inbound") != 0 && strcmp(*p, "originating") != 0) {
			*err_r = dk_printf("arc_sign_profiles: unknown profile \"%s\"", *p);
			return -1;
		}
	bool sealing = (c->sign_profiles && *c->sign_profiles) || c->sign_recipients;
	if (sealing && !*c->sign_key) {
		*err_r = dk_printf("arc_sign_profiles/arc_sign_recipients need arc_sign_key");
		return -1;
	}
	if (*c->sign_key && load_sign_key(c, err_r) < 0)
		return -1;
	return 0;
}

static void arc_release(void *conf)
{
	struct arc_conf *c = conf;
	EVP_PKEY_free(c->pkey);
	free(c->sign_domain);
	free(c->sign_selector);
	c->pkey = NULL;
	c->sign_domain = c->sign_selector = NULL;
}

/* ---- hooks ------------------------------------------------------------------ */

const char *arc_authserv_id(struct sift_ctx *ctx, const struct arc_conf *c)
{
	if (*c->authserv_id)
		return c->authserv_id;
	const char *h = host->get(ctx, SIFT_I_MYHOSTNAME);
	return h && *h ? h : "localhost";
}

/* A recipient in arc_sign_recipients: the address, its domain, then its
 * parent domains with a leading dot (".example.org"). */
static bool map_has(const struct sift_map *map, const char *key)
{
	char *v = NULL;
	int rc = host->map_lookup(map, key, &v);
	free(v);
	return rc == 1;
}

static bool rcpt_listed(const struct arc_conf *c, const char *rcpt)
{
	char key[512];
	snprintf(key, sizeof(key), "%s", rcpt);
	for (char *p = key; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (map_has(c->sign_recipients, key))
		return true;
	const char *at = strrchr(key, '@');
	const char *d = at ? at + 1 : key;
	if (at && map_has(c->sign_recipients, d))
		return true;
	for (const char *p = strchr(d, '.'); p; p = strchr(p + 1, '.'))
		if (map_has(c->sign_recipients, p))
			return true;
	return false;
}

static bool want_seal(struct sift_ctx *ctx, const struct arc_conf *c)
{
	if (!c->pkey)
		return false;
	const char *profile = host->get(ctx, SIFT_I_PROFILE);
	for (const char *const *p = c->sign_profiles; p && *p && profile; p++)
		if (strcmp(*p, profile) == 0)
			return true;
	if (!c->sign_recipients)
		return false;
	size_t n = host->rcpt_count(ctx);
	for (size_t i = 0; i < n; i++) {
		const char *r = host->rcpt(ctx, i);
		if (r && rcpt_listed(c, r))
			return true;
	}
	return false;
}

static enum sift_verdict arc_eoh(struct sift_ctx *ctx)
{
	struct arc_msg *m = host->msg(ctx);
	const struct arc_conf *c = host->conf(ctx);
	m->ctx = ctx;
	m->conf = c;
	const char *profile = host->get(ctx, SIFT_I_PROFILE);
	bool inbound = !profile || strcmp(profile, "inbound") == 0;
	m->seal = want_seal(ctx, c);
	if (!m->seal && !(inbound && c->verify))
		return SIFT_DUNNO;
	if (dk_fields_list(host, ctx, &m->fields) < 0) {
		host->log(ctx, LOG_ERR, "cannot read the message's header");
		return SIFT_ERROR;
	}
	m->verifying = true;
	arc_verify_start(host, m);
	if (m->seal && arc_seal_start(host, m) < 0)
		return SIFT_ERROR;
	return SIFT_DUNNO;
}

static enum sift_verdict arc_body(struct sift_ctx *ctx, const unsigned char *buf, size_t len)
{
	struct arc_msg *m = host->msg(ctx);
	if (m->verifying)
		arc_verify_body(m, buf, len);
	if (m->signer && dks_body(m->signer, buf, len) < 0) {
		host->log(ctx, LOG_ERR, "sealing: body hash failed");
		return SIFT_ERROR;
	}
	return SIFT_DUNNO;
}

static void report(struct sift_ctx *ctx, struct arc_msg *m)
{
	const struct arc_conf *c = m->conf;
	enum arc_sym s = m->cv == ARC_CV_PASS	     ? AS_PASS
			 : m->cv == ARC_CV_FAIL	     ? AS_FAIL
			 : m->cv == ARC_CV_TEMPERROR ? AS_TEMPERROR
						     : AS_NONE;
	bool failed = m->cv == ARC_CV_FAIL || m->cv == ARC_CV_TEMPERROR;
	char opt[64];
	snprintf(opt, sizeof(opt), "i=%u", failed ? m->fail_i : m->chain ? m->chain->n : 0);
	host->symbol(ctx, sym_names[s], c->score[s], opt);
	if (m->trusted[0])
		host->symbol(ctx, sym_names[AS_TRUSTED], c->score[AS_TRUSTED], m->trusted);
	char v[600];
	int k = snprintf(v, sizeof(v), "arc=%s", arc_cv_names[m->cv]);
	if (failed)
		k += snprintf(v + k, sizeof(v) - (size_t)k, " (i=%u %s)", m->fail_i,
			      m->reason ? m->reason : "chain failed");
	else if (m->cv == ARC_CV_PASS)
		k += snprintf(v + k, sizeof(v) - (size_t)k, " (sets=%u%s%s)", m->chain->n,
			      m->trusted[0] ? " trusted " : "", m->trusted[0] ? m->trusted_d : "");
	const char *ip = host->get(ctx, SIFT_I_CLIENT_ADDR);
	if (ip && *ip && strspn(ip, "0123456789abcdefABCDEF.:") == strlen(ip))
		k += snprintf(v + k, sizeof(v) - (size_t)k, " smtp.remote-ip=%s", ip);
	if (m->cv == ARC_CV_PASS)
		snprintf(v + k, sizeof(v) - (size_t)k, " header.oldest-pass=%u", m->oldest_pass);
	host->log(ctx, LOG_INFO, "%s", v);
	if (c->add_auth_results || m->seal)
		host->auth_result(ctx, arc_authserv_id(ctx, c), v);
}

static enum sift_verdict arc_eom(struct sift_ctx *ctx)
{
	struct arc_msg *m = host->msg(ctx);
	if (!m->verifying)
		return SIFT_DUNNO;
	arc_verify_finish(host, m);
	report(ctx, m);
	return SIFT_DUNNO;
}

/* The seal, after every plugin's eom: its AMS covers the header fields as
 * the message leaves (the host shows them with the other plugins' edits
 * applied) and its AAR holds every result given for our authserv-id. */
static enum sift_verdict arc_sign(struct sift_ctx *ctx)
{
	struct arc_msg *m = host->msg(ctx);
	if (!m->verifying || !m->seal)
		return SIFT_DUNNO;
	struct dk_fieldlist now;
	if (dk_fields_list(host, ctx, &now) < 0) {
		host->log(ctx, LOG_ERR, "sealing: cannot read the message's header");
		return SIFT_ERROR;
	}
	return arc_seal_finish(host, m, &now);
}

static void arc_msg_end(struct sift_ctx *ctx)
{
	struct arc_msg *m = host->msg(ctx);
	if (!m)
		return;
	arc_verify_free(m);
	dks_free(m->signer);
	m->signer = NULL;
	m->verifying = m->seal = false;
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "arc",
	.description = "ARC (RFC 8617): chain verification (inbound) and sealing of forwarded mail",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS,
	.flags = SIFT_F_ALWAYS_RUN | SIFT_F_HDR_LEADSPC,
	.params = params,
	.conf_size = sizeof(struct arc_conf),
	.msg_size = sizeof(struct arc_msg),
	.preinit = arc_preinit,
	.init = arc_init,
	.release = arc_release,
	.eoh = arc_eoh,
	.body = arc_body,
	.eom = arc_eom,
	.msg_end = arc_msg_end,
	.tools = arc_tools,
	.sign = arc_sign,
};
