/*
 * dkim.c - DKIM signing and verification in filterd: signing with
 * dkimsign.c (keys parsed once at init), verification with dkimverify.c
 * (public keys parsed once per key record and cached).
 *
 * Signing (profile originating, or clients in dkim_sign_networks): the From
 * header's address is looked up in dkim_signing_table (full address, domain,
 * then ".parent" domains, as Postfix's access maps), giving one or more key
 * names of dkim_key_table; each key makes one signature (so RSA + Ed25519
 * dual signing is two key names). Nothing is signed when the envelope
 * sender is not in the signing table (dkim_sender_check), when the
 * From domain is not, or when the message already has a DKIM-Signature for
 * that domain. Signatures are inserted at the top of the header (index 0),
 * above everything a later filter adds. A signing failure returns
 * SIFT_ERROR, which the host turns into dkim_error_action (default
 * tempfail): mail is never sent unsigned by accident.
 *
 * Verification (profile inbound): every DKIM-Signature up to
 * dkim_max_signatures is verified; key records come from the shared resolver
 * (host->dns_query) at end of header and are cached parsed (the EVP_PKEY)
 * with their TTL. rsa-sha1 signatures and RSA
 * keys under 1024 bits fail (RFC 8301). Results become symbols (DKIM_VALID,
 * DKIM_INVALID, DKIM_TEMPFAIL, DKIM_NONE, with the signing domains) and an
 * entry in the message's Authentication-Results header (RFC 8601, written
 * by the host, which also deletes forged ones carrying our authserv-id).
 *
 * The header fields signed and verified are read from the host's copy of
 * the message (host->message_read, cut into fields by dkimfields.c),
 * byte-exact: leading white space and CRLF folding kept
 * (SIFT_F_HDR_LEADSPC): as received for verification (at eoh), as it will
 * leave for signing (in the sign hook, which the host runs after every
 * plugin's eom with their header edits applied); the body is fed to the
 * signers or verifiers chunk by chunk from the body hook, never held.
 *
 * Threading: the configuration block (keys, parsed EVP_PKEYs, lists)
 * is read-only after init and shared. The key cache is process-wide, under
 * a mutex; its parsed keys are shared read-only, with a reference count
 * under that mutex. Per-message state (signers, verifiers and their key
 * references) lives in host->msg() and is freed in msg_end.
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

#include "dkimcache.h"
#include "dkimfields.h"
#include "dkimkeys.h"
#include "dkimsign.h"
#include "dkimverify.h"
#include "sift/plugin.h"

#define DK_MAX_SIGN   8	 /* signatures made per message */
#define DK_MAX_VERIFY 64 /* upper bound of dkim_max_signatures */

struct dk_conf {
	/* parameters */
	const char *key_table;
	const struct sift_map *signing_table;
	int sign, verify;
	const struct sift_map *sign_networks;
	int sender_check;
	const char *canonicalization;
	const char *const *sign_headers;
	const char *const *oversign_headers;
	long long signature_ttl;
	long long max_signatures;
	const char *authserv_id;
	int add_auth_results;
	long long dns_timeout;
	long long key_cache_size;
	long long key_cache_max_ttl;
	long long key_cache_negative_ttl;
	long long clock_drift;
	const char *valid_score, *invalid_score, *tempfail_score, *none_score;
	/* derived in init */
	struct dk_keytable keys;
	EVP_PKEY **pkeys; /* parsed keys, parallel to keys.keys */
	bool relaxed_h, relaxed_b;
	double sc_valid, sc_invalid, sc_tempfail, sc_none;
	const char **signhdrs, **oversignhdrs;
};

#define OFF(f) offsetof(struct dk_conf, f)
static const struct sift_param params[] = {
	{"key_table", SIFT_P_STRING, "", 0, 0, OFF(key_table), NULL,
	 "keys: texthash:/path or inline:{} of NAME = DOMAIN:SELECTOR:/path/to/key"},
	{"signing_table", SIFT_P_MAP, "", 0, 0, OFF(signing_table), NULL,
	 "From address/domain/.parent -> key names (several = several signatures)"},
	{"sign", SIFT_P_BOOL, "yes", 0, 0, OFF(sign), NULL, "sign originating mail"},
	{"verify", SIFT_P_BOOL, "yes", 0, 0, OFF(verify), NULL, "verify inbound mail"},
	{"sign_networks", SIFT_P_MAP, "", 0, 0, OFF(sign_networks), NULL,
	 "client addresses (e.g. cidr:) whose inbound-profile mail is signed too"},
	{"sender_check", SIFT_P_BOOL, "yes", 0, 0, OFF(sender_check), NULL,
	 "sign only when the envelope sender is in the signing table too"},
	{"canonicalization", SIFT_P_STRING, "relaxed/simple", 0, 0, OFF(canonicalization), NULL,
	 "header/body canonicalization of our signatures (simple or relaxed)"},
	{"sign_headers", SIFT_P_LIST,
	 "From Sender Reply-To Subject Date Message-ID To Cc MIME-Version Content-Type "
	 "Content-Transfer-Encoding Content-ID Content-Description Resent-Date Resent-From "
	 "Resent-Sender Resent-To Resent-Cc Resent-Message-ID In-Reply-To References List-Id "
	 "List-Help List-Unsubscribe List-Subscribe List-Post List-Owner List-Archive",
	 0, 0, OFF(sign_headers), NULL, "header fields signed when present (From is always signed)"},
	{"oversign_headers", SIFT_P_LIST, "From To Cc Subject Date Reply-To Content-Type MIME-Version", 0, 0,
	 OFF(oversign_headers), NULL, "header fields listed once more in h= so none can be added later"},
	{"signature_ttl", SIFT_P_TIME, "10d", 0, 0, OFF(signature_ttl), NULL,
	 "x= expiry of our signatures after t=; 0 = no x="},
	{"max_signatures", SIFT_P_INT, "5", 1, DK_MAX_VERIFY, OFF(max_signatures), NULL,
	 "DKIM-Signature fields verified per message (others are ignored)"},
	{"authserv_id", SIFT_P_STRING, "$authserv_id", 0, 0, OFF(authserv_id), NULL,
	 "authserv-id of our Authentication-Results (empty: the host name)"},
	{"add_auth_results", SIFT_P_BOOL, "yes", 0, 0, OFF(add_auth_results), NULL,
	 "add an Authentication-Results header with the verification results"},
	KC_PARAMS(struct dk_conf),
	{"valid_score", SIFT_P_STRING, "-0.1", 0, 0, OFF(valid_score), NULL, "score of DKIM_VALID"},
	{"invalid_score", SIFT_P_STRING, "1.0", 0, 0, OFF(invalid_score), NULL, "score of DKIM_INVALID"},
	{"tempfail_score", SIFT_P_STRING, "0", 0, 0, OFF(tempfail_score), NULL, "score of DKIM_TEMPFAIL"},
	{"none_score", SIFT_P_STRING, "0", 0, 0, OFF(none_score), NULL, "score of DKIM_NONE"},
	SIFT_PARAM_END,
};
#undef OFF

enum dk_mode { M_NONE = 0, M_SIGN, M_VERIFY };

/* One DKIM-Signature being verified. */
struct dk_vsig {
	struct dkv_sig sig;
	struct dkv_key *key; /* a reference from the cache (or our own) */
	enum dkv_result res; /* DKV_NONE while the body is hashed */
	const char *reason;
	const char *name; /* the field's name as received */
	size_t field;	  /* its index among the header fields */
};

struct dk_msg {
	struct sift_ctx *ctx;
	const struct dk_conf *conf;
	enum dk_mode mode;
	struct dks *sign[DK_MAX_SIGN];
	const struct dk_key *signkey[DK_MAX_SIGN];
	size_t nsign;
	bool failed;	   /* a signing step failed: SIFT_ERROR at eom */
	struct dk_vsig *v; /* message memory, nv of them */
	size_t nv;
	const char **fnames, **fvalues; /* the header fields as received */
	size_t nfields;
};

static const struct sift_host *host;

/* ---- key lookup through the shared resolver --------------------------------- */

/* Sets v->key (a reference) or v->res and v->reason. */
static void key_lookup(struct dk_msg *m, struct dk_vsig *v)
{
	const struct dk_conf *c = m->conf;
	struct kc_limits lim = {c->dns_timeout, c->key_cache_size, c->key_cache_max_ttl,
				c->key_cache_negative_ttl};
	v->res = kc_fetch(host, m->ctx, v->sig.s, v->sig.d, &lim, &v->key, &v->reason);
}

/* ---- configuration ---------------------------------------------------------- */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s ? s : strdup("out of memory");
}

static int parse_canon(const char *s, bool *h, bool *b)
{
	char hb[16] = "", bb[16] = "";
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	if (hl >= sizeof(hb) || (slash && strlen(slash + 1) >= sizeof(bb)))
		return -1;
	memcpy(hb, s, hl);
	strcpy(bb, slash ? slash + 1 : "simple");
	if (strcasecmp(hb, "simple") == 0)
		*h = false;
	else if (strcasecmp(hb, "relaxed") == 0)
		*h = true;
	else
		return -1;
	if (strcasecmp(bb, "simple") == 0)
		*b = false;
	else if (strcasecmp(bb, "relaxed") == 0)
		*b = true;
	else
		return -1;
	return 0;
}

static int parse_score(const char *s, const char *name, double *v, char **err_r)
{
	char *end;
	*v = strtod(s, &end);
	if (end == s || *end) {
		*err_r = xasprintf("dkim_%s: \"%s\" is not a number", name, s);
		return -1;
	}
	return 0;
}

/* A NULL-terminated copy of a list in lower case, with "from" added. */
static const char **hdr_array(const char *const *list, bool add_from)
{
	size_t n = 0;
	for (const char *const *p = list; p && *p; p++)
		n++;
	const char **a = calloc(n + 2, sizeof(*a));
	if (!a)
		return NULL;
	size_t k = 0;
	bool has_from = false;
	for (const char *const *p = list; p && *p; p++) {
		char *s = strdup(*p);
		if (!s)
			continue;
		for (char *q = s; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		has_from |= strcmp(s, "from") == 0;
		a[k++] = s;
	}
	if (add_from && !has_from)
		a[k++] = strdup("from");
	return a;
}

static void free_array(const char **a)
{
	for (const char **p = a; p && *p; p++)
		free((void *)*p);
	free(a);
}

static void dk_release(void *conf)
{
	struct dk_conf *c = conf;
	for (size_t i = 0; c->pkeys && i < c->keys.n; i++)
		EVP_PKEY_free(c->pkeys[i]);
	free(c->pkeys);
	c->pkeys = NULL;
	dk_keytable_free(&c->keys);
	free_array(c->signhdrs);
	free_array(c->oversignhdrs);
	c->signhdrs = c->oversignhdrs = NULL;
}

/* Private keys readable only by root are read here, before privileges are
 * dropped, and kept for later generations (by path). */
struct pre_key {
	char *path, *pem;
	struct pre_key *next;
};
static struct pre_key *pre_keys;

static int dk_preinit(const struct sift_host *h, void *conf, char **err_r)
{
	struct dk_conf *c = conf;
	host = h;
	if (h->struct_size < offsetof(struct sift_host, addrlist_parse) + sizeof(h->addrlist_parse)) {
		*err_r = xasprintf("the host has no address parser (host->addrlist_parse): too old");
		return -1;
	}
	if (!*c->key_table)
		return 0;
	struct dk_keytable kt;
	char *err = NULL;
	if (dk_keytable_load(c->key_table, false, &kt, &err) < 0) {
		free(err); /* init reports it (with the same rules) */
		return 0;
	}
	for (size_t i = 0; i < kt.n; i++) {
		/* A key refused here (mode, size, not a key) is refused with
		 * the reason: init, after the drop, could only say that it
		 * cannot read it. */
		if (dk_key_load(&kt.keys[i], err_r) < 0) {
			dk_keytable_free(&kt);
			return -1;
		}
		struct pre_key *p = calloc(1, sizeof(*p));
		if (!p)
			break;
		p->path = strdup(kt.keys[i].path);
		p->pem = strdup(kt.keys[i].pem);
		p->next = pre_keys;
		pre_keys = p;
	}
	dk_keytable_free(&kt);
	return 0;
}

static int dk_init(const struct sift_host *h, void *conf, char **err_r)
{
	struct dk_conf *c = conf;
	host = h;
	if (h->struct_size < offsetof(struct sift_host, message_read) + sizeof(h->message_read)) {
		*err_r = xasprintf("this host has no message reader (host->message_read): too old");
		return -1;
	}
	if (h->abi_minor < 9) {
		*err_r = xasprintf("this host does not run signers last (plugin ABI minor 9): too old");
		return -1;
	}
	if (parse_canon(c->canonicalization, &c->relaxed_h, &c->relaxed_b) < 0) {
		*err_r = xasprintf("dkim_canonicalization: \"%s\" is not simple|relaxed[/simple|relaxed]",
				   c->canonicalization);
		return -1;
	}
	if (parse_score(c->valid_score, "valid_score", &c->sc_valid, err_r) < 0 ||
	    parse_score(c->invalid_score, "invalid_score", &c->sc_invalid, err_r) < 0 ||
	    parse_score(c->tempfail_score, "tempfail_score", &c->sc_tempfail, err_r) < 0 ||
	    parse_score(c->none_score, "none_score", &c->sc_none, err_r) < 0)
		return -1;
	if (c->signature_ttl > 0 && c->signature_ttl < 1000) {
		*err_r = xasprintf("dkim_signature_ttl: at least 1s (or 0 for no x=)");
		return -1;
	}
	/* Signing without keys or without a table to choose them would send
	 * every message unsigned without a word: refused, naming the setting. */
	if (c->sign && !*c->key_table) {
		*err_r = xasprintf("dkim_key_table is not set: signing (dkim_sign = yes) needs the keys "
				   "(siftctl dkim genkey); set dkim_sign = no to verify only");
		return -1;
	}
	if (*c->key_table) {
		/* Keys are loaded with the same rules as `siftctl dkim showkeys`;
		 * a key that only root can read comes from preinit. */
		struct dk_keytable kt;
		char *kerr = NULL;
		if (dk_keytable_load(c->key_table, false, &kt, &kerr) < 0) {
			*err_r = xasprintf("dkim_key_table: %s", kerr);
			free(kerr);
			return -1;
		}
		for (size_t i = 0; i < kt.n; i++) {
			char *err = NULL;
			if (dk_key_load(&kt.keys[i], &err) == 0)
				continue;
			struct pre_key *p = pre_keys;
			while (p && strcmp(p->path, kt.keys[i].path) != 0)
				p = p->next;
			bool denied = strstr(err, "Permission denied") != NULL;
			if (!p || !denied) {
				*err_r = err;
				dk_keytable_free(&kt);
				return -1;
			}
			free(err);
			/* The copy read before privileges were dropped, with
			 * the same checks. */
			char *pem = strdup(p->pem);
			if (!pem || dk_key_set_pem(&kt.keys[i], pem, err_r) < 0) {
				dk_keytable_free(&kt);
				return -1;
			}
		}
		c->keys = kt;
		/* Parsed once here: the signer shares them read-only. */
		c->pkeys = calloc(kt.n ? kt.n : 1, sizeof(*c->pkeys));
		for (size_t i = 0; c->pkeys && i < kt.n; i++)
			if (!(c->pkeys[i] = dks_load_key(kt.keys[i].pem))) {
				*err_r = xasprintf("key %s: cannot parse %s", kt.keys[i].name,
						   kt.keys[i].path);
				dk_release(c);
				return -1;
			}
		if (!c->pkeys) {
			*err_r = xasprintf("out of memory");
			dk_release(c);
			return -1;
		}
	}
	if (c->signing_table && !c->keys.n) {
		*err_r = xasprintf("dkim_signing_table is set but dkim_key_table has no keys");
		dk_release(c);
		return -1;
	}
	if (c->sign && !c->signing_table) {
		*err_r = xasprintf("dkim_signing_table is not set: signing (dkim_sign = yes) needs the "
				   "table of which mail each key signs; set dkim_sign = no to verify only");
		dk_release(c);
		return -1;
	}

	c->signhdrs = hdr_array(c->sign_headers, true);
	c->oversignhdrs = hdr_array(c->oversign_headers, false);
	if (!c->signhdrs || !c->oversignhdrs) {
		*err_r = xasprintf("out of memory");
		dk_release(c);
		return -1;
	}
	return 0;
}

/* ---- helpers on the message ------------------------------------------------- */

/* Looks `addr` (or just its domain when addr is NULL) up in the signing
 * table: address, domain, then ".parent" domains. 1 found (*res_r),
 * 0 not found, -1 error. */
static int signing_lookup(const struct dk_conf *c, const char *addr, const char *domain, char **res_r)
{
	int rc;
	if (addr && *addr && (rc = host->map_lookup(c->signing_table, addr, res_r)) != 0)
		return rc;
	if ((rc = host->map_lookup(c->signing_table, domain, res_r)) != 0)
		return rc;
	for (const char *p = strchr(domain, '.'); p && p[1]; p = strchr(p + 1, '.'))
		if ((rc = host->map_lookup(c->signing_table, p, res_r)) != 0)
			return rc;
	return 0;
}

/* d= of a DKIM-Signature value (lower case) into out. */
static bool sig_domain(const char *value, char *out, size_t n)
{
	char *d = dk_tag_value(value, "d");
	if (!d)
		return false;
	snprintf(out, n, "%s", d);
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	free(d);
	return *out != 0;
}

static bool client_in(const struct sift_map *map, const char *addr)
{
	if (!map || !addr)
		return false;
	char *res = NULL;
	int rc = host->map_lookup(map, addr, &res);
	free(res);
	return rc == 1;
}

/* ---- signing ---------------------------------------------------------------- */

static enum sift_verdict start_signing(struct sift_ctx *ctx, struct dk_msg *m)
{
	const struct dk_conf *c = m->conf;
	size_t nh = host->header_count(ctx);
	const char *from = NULL;
	int nfrom = 0;
	for (size_t i = 0; i < nh; i++) {
		const struct sift_header *h = host->header(ctx, i);
		if (h && strcasecmp(h->name, "From") == 0) {
			from = h->value;
			nfrom++;
		}
	}
	/* The signing domain is the domain of the From header's one mailbox,
	 * as the core's address parser reads it (the parser senderlogin and
	 * the spam rules use): no guess from the last '<' in the value. */
	struct sift_addrs *fa = nfrom == 1 ? host->addrlist_parse(from) : NULL;
	if (nfrom != 1 || fa->count != 1 || fa->mb[0].domain[0] == '[') {
		host->log(ctx, LOG_INFO, "not signing: %s",
			  nfrom == 0  ? "no From header"
			  : nfrom > 1 ? "several From headers"
				      : "no usable address in From");
		free(fa);
		return SIFT_DUNNO;
	}
	char fdom[256], faddr[512];
	snprintf(fdom, sizeof(fdom), "%s", fa->mb[0].domain);
	snprintf(faddr, sizeof(faddr), "%s", fa->mb[0].addr);
	free(fa);
	char *keys = NULL;
	int rc = signing_lookup(c, faddr, fdom, &keys);
	if (rc < 0) {
		host->log(ctx, LOG_ERR, "signing table lookup failed for %s", faddr);
		return SIFT_ERROR;
	}
	if (rc == 0) {
		host->log(ctx, LOG_INFO, "not signing: From domain %s is not in the signing table", fdom);
		return SIFT_DUNNO;
	}
	if (c->sender_check) {
		const char *sender = host->get(ctx, SIFT_I_SENDER);
		const char *at = sender ? strrchr(sender, '@') : NULL;
		if (sender && *sender) {
			char sdom[256];
			snprintf(sdom, sizeof(sdom), "%s", at ? at + 1 : "");
			for (char *p = sdom; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			/* The same lookups as for From (address, domain,
			 * parents): a table keyed on addresses (a pcre: one
			 * such as /@example\.net$/, or user@domain entries
			 * only) must accept its own senders too. */
			char *sres = NULL;
			int src = *sdom ? signing_lookup(c, sender, sdom, &sres) : 0;
			free(sres);
			if (src < 0) {
				free(keys);
				return SIFT_ERROR;
			}
			if (src == 0) {
				host->log(ctx, LOG_INFO, "not signing: sender <%s> is not one of our domains",
					  sender);
				free(keys);
				return SIFT_DUNNO;
			}
		}
	}
	/* Domains that already signed this message. */
	char signed_doms[8][256];
	size_t nsd = 0;
	for (size_t i = 0; i < nh && nsd < 8; i++) {
		const struct sift_header *h = host->header(ctx, i);
		if (h && strcasecmp(h->name, "DKIM-Signature") == 0 &&
		    sig_domain(h->value, signed_doms[nsd], sizeof(signed_doms[nsd])))
			nsd++;
	}
	char *save = NULL;
	for (char *name = strtok_r(keys, " ,\t", &save); name; name = strtok_r(NULL, " ,\t", &save)) {
		const struct dk_key *k = dk_keytable_find(&c->keys, name);
		if (!k) {
			host->log(ctx, LOG_ERR,
				  "signing table names key \"%s\", which is not in dkim_key_table", name);
			m->failed = true;
			break;
		}
		bool already = false;
		for (size_t i = 0; i < nsd; i++)
			already |= strcmp(signed_doms[i], k->domain) == 0;
		if (already) {
			host->log(ctx, LOG_INFO, "not signing with %s: already signed by d=%s", k->name,
				  k->domain);
			continue;
		}
		if (m->nsign >= DK_MAX_SIGN) {
			host->log(ctx, LOG_WARNING, "more than %d signing keys; ignoring %s", DK_MAX_SIGN,
				  k->name);
			continue;
		}
		struct dks_params sp = {
			.key = c->pkeys[k - c->keys.keys],
			.domain = k->domain,
			.selector = k->selector,
			.relaxed_headers = c->relaxed_h,
			.relaxed_body = c->relaxed_b,
			.now = time(NULL),
			.ttl_s = c->signature_ttl / 1000,
			.sign_headers = c->signhdrs,
			.oversign_headers = c->oversignhdrs,
		};
		struct dks *d = dks_new(&sp);
		if (!d) {
			host->log(ctx, LOG_ERR, "signing with key %s: cannot start a signature", k->name);
			m->failed = true;
			break;
		}
		m->sign[m->nsign] = d;
		m->signkey[m->nsign] = k;
		m->nsign++;
	}
	free(keys);
	if (m->failed)
		return SIFT_ERROR;
	return SIFT_DUNNO;
}

/* Ends the signatures and queues them at index 0 (from the sign hook). The
 * value is folded with CRLF+TAB; it stays so inside Sift (the host's
 * convention) and filterd strips the CRs when it hands the header to
 * libmilter. The header fields signed are the ones the message leaves
 * with: the host shows them with the edits the other plugins queued
 * already applied (struct sift_plugin.sign). */
static enum sift_verdict finish_signing(struct sift_ctx *ctx, struct dk_msg *m)
{
	struct dk_fieldlist fl;
	if (dk_fields_list(host, ctx, &fl) < 0) {
		host->log(ctx, LOG_ERR, "signing: cannot read the message's header");
		return SIFT_ERROR;
	}
	const char **names = fl.names, **values = fl.values;
	size_t n = fl.n;
	/* Insert in reverse so the first key's signature ends on top. */
	char *hdrs[DK_MAX_SIGN] = {0};
	for (size_t i = 0; i < m->nsign; i++) {
		const char *err = NULL;
		if (dks_finish(m->sign[i], n, names, values, &hdrs[i], &err) < 0) {
			host->log(ctx, LOG_ERR, "signing with key %s failed: %s", m->signkey[i]->name, err);
			for (size_t k = 0; k < i; k++)
				free(hdrs[k]);
			return SIFT_ERROR;
		}
	}
	for (size_t i = m->nsign; i-- > 0;) {
		host->header_insert(ctx, 0, "DKIM-Signature", hdrs[i]);
		host->log(ctx, LOG_INFO, "signed: d=%s s=%s a=%s", m->signkey[i]->domain,
			  m->signkey[i]->selector,
			  m->signkey[i]->type == DK_ED25519 ? "ed25519-sha256" : "rsa-sha256");
		free(hdrs[i]);
	}
	return SIFT_DUNNO;
}

/* ---- verification ----------------------------------------------------------- */

static const char *our_authserv_id(struct sift_ctx *ctx, const struct dk_conf *c)
{
	if (*c->authserv_id)
		return c->authserv_id;
	const char *h = host->get(ctx, SIFT_I_MYHOSTNAME);
	return h && *h ? h : "localhost";
}

/* Parses the signatures (up to dkim_max_signatures), fetches their keys
 * and starts the body hashes of those that can still pass. */
static void start_verifying(struct sift_ctx *ctx, struct dk_msg *m)
{
	const struct dk_conf *c = m->conf;
	struct dk_fieldlist fl;
	if (dk_fields_list(host, ctx, &fl) < 0) {
		host->log(ctx, LOG_ERR, "verifying: cannot read the message's header");
		return;
	}
	m->fnames = fl.names;
	m->fvalues = fl.values;
	m->nfields = fl.n;
	size_t nsig = 0;
	for (size_t i = 0; i < fl.n; i++)
		nsig += strcasecmp(fl.names[i], "DKIM-Signature") == 0;
	if (nsig > (size_t)c->max_signatures)
		nsig = (size_t)c->max_signatures;
	if (!nsig)
		return;
	m->v = host->msg_alloc(ctx, nsig * sizeof(*m->v));
	memset(m->v, 0, nsig * sizeof(*m->v));
	time_t now = time(NULL);
	for (size_t i = 0; i < fl.n && m->nv < nsig; i++) {
		if (strcasecmp(fl.names[i], "DKIM-Signature") != 0)
			continue;
		struct dk_vsig *v = &m->v[m->nv++];
		v->name = fl.names[i];
		v->field = i;
		dkv_sig_parse(fl.values[i], &v->sig);
		if (v->sig.alg == DKV_A_RSA_SHA1) {
			v->res = DKV_FAIL;
			v->reason = "rsa-sha1 is not accepted (RFC 8301)";
		} else if (v->sig.error) {
			v->res = DKV_PERMERROR;
			v->reason = v->sig.error;
		} else if ((v->res = dkv_sig_times(&v->sig, now, c->clock_drift / 1000, &v->reason)) ==
			   DKV_NONE)
			key_lookup(m, v); /* an expired signature costs no DNS wait */
		if (v->res == DKV_NONE)
			v->res = dkv_start(&v->sig, v->key, now, c->clock_drift / 1000, &v->reason);
	}
}

/* The parts of one signature's resinfo in Authentication-Results, cut to
 * these sizes (NUL included) by clean(). */
#define AR_DOM	  256
#define AR_SEL	  128
#define AR_ALG	  32
#define AR_B	  64
#define AR_REASON 96
#define AR_I	  112 /* header.i is given only when it fits whole */
/* The longest resinfo, separator included: a whole one always fits on its
 * own folded line (RFC 5322's 998), and dkim_max_signatures of them stay far
 * below Postfix's header_size_limit (102400 by default) with the spf, arc
 * and dmarc results of the same header. */
#define AR_RESINFO_MAX                                                                                   \
	(sizeof(";\r\n\tdkim=temperror reason=\"\" header.d= header.i= header.s= header.a= header.b=") + \
	 AR_DOM + AR_I + AR_SEL + AR_ALG + AR_B + AR_REASON)
_Static_assert(AR_RESINFO_MAX < 998, "a dkim resinfo fits on one line");
#define AR_VALUE_MAX (AR_RESINFO_MAX * DK_MAX_VERIFY)
_Static_assert(AR_VALUE_MAX <= 48 * 1024, "the dkim results stay well within header_size_limit");

/* Appends to the Authentication-Results value b (grown as needed; oom
 * when an allocation failed: the value is then not used). Each piece is
 * under AR_RESINFO_MAX. */
static void ab_add(struct dk_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ab_add(struct dk_sbuf *b, const char *fmt, ...)
{
	char piece[AR_RESINFO_MAX];
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(piece, sizeof(piece), fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= sizeof(piece))
		b->oom = true; /* never a cut result */
	else
		dk_sb_add(b, piece, (size_t)k);
}

/* A value safe inside an A-R property or quoted reason. */
static void clean(char *out, size_t n, const char *in, bool token)
{
	size_t k = 0;
	for (; in && *in && k + 1 < n; in++) {
		unsigned char ch = (unsigned char)*in;
		if (ch < 0x21 || ch > 0x7e) {
			if (token)
				continue;
			ch = ' ';
		}
		if (ch == '"' || ch == '\\' || ch == ';' || (token && (ch == '(' || ch == ')')))
			continue;
		out[k++] = (char)ch;
	}
	out[k] = 0;
}

struct dk_symacc {
	char doms[1024];
	size_t n;
	int count;
};
/* Adds dom to the comma-separated list unless it is already an item of it
 * (a whole item: "example.com" is not in "mail.example.com"). */
static void acc_add(struct dk_symacc *a, const char *dom)
{
	a->count++;
	size_t dl = strlen(dom);
	for (const char *p = a->doms; *p;) {
		const char *e = strchr(p, ',');
		size_t il = e ? (size_t)(e - p) : strlen(p);
		if (il == dl && strncmp(p, dom, dl) == 0)
			return;
		p = e ? e + 1 : p + il;
	}
	int k = snprintf(a->doms + a->n, sizeof(a->doms) - a->n, "%s%s", a->n ? "," : "", dom);
	if (k > 0 && a->n + (size_t)k < sizeof(a->doms))
		a->n += (size_t)k;
	else
		a->doms[a->n] = 0;
}

/* header.b: the shortest prefix of b= (at least 8 characters) that no
 * other signature of the message shares. */
static void b_prefix(const struct dk_msg *m, size_t k, char *out, size_t n)
{
	const char *b = m->v[k].sig.b;
	size_t len = b ? strlen(b) : 0, want = len < 8 ? len : 8;
	for (size_t j = 0; j < m->nv; j++) {
		const char *o = m->v[j].sig.b;
		if (j == k || !o)
			continue;
		while (want < len && strncmp(o, b, want) == 0)
			want++;
	}
	if (want >= n)
		want = n - 1;
	clean(out, want + 1, b ? b : "", true);
}

/* i= as an A-R pvalue: [local-part] "@" domain, a plain local part. */
static bool identity_ok(const char *i)
{
	const char *at = i ? strchr(i, '@') : NULL;
	if (!at || strlen(i) >= AR_I || !kc_name_ok(at + 1))
		return false;
	for (const char *p = i; p < at; p++)
		if (!isalnum((unsigned char)*p) && !strchr(".-_+", *p))
			return false;
	return true;
}

static const char *const result_name[] = {"none", "pass", "fail", "permerror", "temperror"};

/* Our results in the message's one Authentication-Results header
 * (host->auth_result), or a header of its own from an older host. */
static void auth_result(struct sift_ctx *ctx, const char *id, const char *resinfo)
{
	if (host->struct_size >= offsetof(struct sift_host, auth_result) + sizeof(host->auth_result) &&
	    host->auth_result) {
		host->auth_result(ctx, id, resinfo);
		return;
	}
	char *v = xasprintf("%s;\r\n\t%s", id, resinfo);
	host->header_insert(ctx, 0, "Authentication-Results", v);
	free(v);
}

static enum sift_verdict finish_verifying(struct sift_ctx *ctx, struct dk_msg *m)
{
	const struct dk_conf *c = m->conf;
	struct dk_sbuf ar = {.n = 0};
	enum sift_verdict verdict = SIFT_DUNNO;
	struct dk_symacc valid = {.n = 0}, invalid = {.n = 0}, temp = {.n = 0};
	for (size_t i = 0; i < m->nv; i++) {
		struct dk_vsig *v = &m->v[i];
		if (v->res == DKV_NONE)
			v->res = dkv_finish(&v->sig, v->key, m->nfields, m->fnames, m->fvalues, v->name,
					    &v->reason);
		const char *result = result_name[v->res];
		char dom[AR_DOM] = "", sel[AR_SEL] = "", aname[AR_ALG] = "", bb[AR_B] = "", rbuf[AR_REASON];
		clean(dom, sizeof(dom), v->sig.d, true);
		clean(sel, sizeof(sel), v->sig.s, true);
		clean(aname, sizeof(aname), v->sig.a, true);
		b_prefix(m, i, bb, sizeof(bb));
		ab_add(&ar, "%sdkim=%s", ar.n ? ";\r\n\t" : "", result);
		if (v->reason) {
			clean(rbuf, sizeof(rbuf), v->reason, false);
			ab_add(&ar, " reason=\"%s\"", rbuf);
		}
		if (*dom && kc_name_ok(dom))
			ab_add(&ar, " header.d=%s", dom);
		if (identity_ok(v->sig.i))
			ab_add(&ar, " header.i=%s", v->sig.i);
		if (*sel && kc_name_ok(sel))
			ab_add(&ar, " header.s=%s", sel);
		if (*aname && kc_name_ok(aname))
			ab_add(&ar, " header.a=%s", aname);
		if (*bb)
			ab_add(&ar, " header.b=%s", bb);
		const char *sd = *dom && kc_name_ok(dom) ? dom : "unknown";
		if (v->res == DKV_PASS)
			acc_add(&valid, sd);
		else if (v->res == DKV_TEMPERROR)
			acc_add(&temp, sd);
		else
			acc_add(&invalid, sd);
		host->log(ctx, LOG_INFO, "d=%s s=%s: dkim=%s%s%s%s", *dom ? dom : "?", *sel ? sel : "?",
			  result, v->reason ? " (" : "", v->reason ? v->reason : "", v->reason ? ")" : "");
	}
	if (!m->nv) {
		ab_add(&ar, "dkim=none");
		host->symbol(ctx, "DKIM_NONE", c->sc_none, NULL);
	}
	if (valid.count)
		host->symbol(ctx, "DKIM_VALID", c->sc_valid, valid.doms);
	if (invalid.count)
		host->symbol(ctx, "DKIM_INVALID", c->sc_invalid, invalid.doms);
	if (temp.count)
		host->symbol(ctx, "DKIM_TEMPFAIL", c->sc_tempfail, temp.doms);
	if (c->add_auth_results && (ar.oom || !ar.s)) {
		/* never a partial or missing result delivered as if complete */
		host->log(ctx, LOG_ERR, "cannot build the Authentication-Results value: out of memory");
		verdict = SIFT_ERROR;
	} else if (c->add_auth_results)
		auth_result(ctx, our_authserv_id(ctx, c), ar.s);
	free(ar.s);
	return verdict;
}

/* ---- hooks ------------------------------------------------------------------ */

static enum sift_verdict dk_eoh(struct sift_ctx *ctx)
{
	struct dk_msg *m = host->msg(ctx);
	const struct dk_conf *c = host->conf(ctx);
	m->ctx = ctx;
	m->conf = c;
	const char *profile = host->get(ctx, SIFT_I_PROFILE);
	bool originating = profile && strcmp(profile, "originating") == 0;
	bool ours = originating || client_in(c->sign_networks, host->get(ctx, SIFT_I_CLIENT_ADDR));
	if (ours) {
		if (!c->sign || !c->signing_table)
			return SIFT_DUNNO;
		m->mode = M_SIGN;
		enum sift_verdict v = start_signing(ctx, m);
		if (!m->nsign && v == SIFT_DUNNO)
			m->mode = M_NONE;
		return v;
	}
	if (!c->verify)
		return SIFT_DUNNO;
	m->mode = M_VERIFY;
	start_verifying(ctx, m);
	return SIFT_DUNNO;
}

static enum sift_verdict dk_body(struct sift_ctx *ctx, const unsigned char *buf, size_t len)
{
	struct dk_msg *m = host->msg(ctx);
	if (m->mode == M_SIGN) {
		for (size_t i = 0; i < m->nsign; i++) {
			if (dks_body(m->sign[i], buf, len) < 0) {
				host->log(ctx, LOG_ERR, "signing body: hashing failed");
				m->failed = true;
				return SIFT_ERROR;
			}
		}
	} else if (m->mode == M_VERIFY) {
		for (size_t i = 0; i < m->nv; i++)
			if (m->v[i].res == DKV_NONE && dks_body(m->v[i].sig.body, buf, len) < 0) {
				m->v[i].res = DKV_TEMPERROR;
				m->v[i].reason = "body hash failed";
			}
	}
	return SIFT_DUNNO;
}

/* Verification ends at eom, in the chain's order (dmarc and spam read its
 * symbols); signing in the sign hook, after every plugin's eom. */
static enum sift_verdict dk_eom(struct sift_ctx *ctx)
{
	struct dk_msg *m = host->msg(ctx);
	if (m->mode == M_VERIFY)
		return finish_verifying(ctx, m);
	return SIFT_DUNNO;
}

static enum sift_verdict dk_sign(struct sift_ctx *ctx)
{
	struct dk_msg *m = host->msg(ctx);
	if (m->mode == M_SIGN)
		return m->failed ? SIFT_ERROR : finish_signing(ctx, m);
	return SIFT_DUNNO;
}

static void dk_msg_end(struct sift_ctx *ctx)
{
	struct dk_msg *m = host->msg(ctx);
	if (!m)
		return;
	for (size_t i = 0; i < m->nsign; i++)
		dks_free(m->sign[i]);
	m->nsign = 0;
	for (size_t i = 0; i < m->nv; i++) {
		dkv_sig_free(&m->v[i].sig);
		kc_unref(m->v[i].key);
	}
	m->v = NULL;
	m->nv = 0;
	m->mode = M_NONE;
}

const char *dk_conf_key_table(const void *conf)
{
	return ((const struct dk_conf *)conf)->key_table;
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "dkim",
	.description = "DKIM signing (originating) and verification (inbound)",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS | SIFT_A_CHGHDRS,
	.flags = SIFT_F_ALWAYS_RUN | SIFT_F_HDR_LEADSPC,
	.params = params,
	.conf_size = sizeof(struct dk_conf),
	.msg_size = sizeof(struct dk_msg),
	.preinit = dk_preinit,
	.init = dk_init,
	.release = dk_release,
	.eoh = dk_eoh,
	.body = dk_body,
	.eom = dk_eom,
	.msg_end = dk_msg_end,
	.tools = dk_tools,
	.sign = dk_sign,
};
