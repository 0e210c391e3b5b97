/*
 * dkim.c - DKIM signing and verification in filterd: verification with
 * libopendkim, signing with dkimsign.c (keys parsed once at init).
 *
 * Signing (profile originating, or clients in dkim_sign_networks): the From
 * header's address is looked up in dkim_signing_table (full address, domain,
 * then ".parent" domains, as Postfix's access maps), giving one or more key
 * names of dkim_key_table; each key makes one signature (so RSA + Ed25519
 * dual signing is two key names). Nothing is signed when the envelope
 * sender's domain is not in the signing table (dkim_sender_check), when the
 * From domain is not, or when the message already has a DKIM-Signature for
 * that domain. Signatures are inserted at the top of the header (index 0),
 * above everything a later filter adds. A signing failure returns
 * SIFT_ERROR, which the host turns into dkim_error_action (default
 * tempfail): mail is never sent unsigned by accident.
 *
 * Verification (profile inbound): every DKIM-Signature up to
 * dkim_max_signatures is verified; key records come from the shared resolver
 * (host->dns_query) through libopendkim's key-lookup callback — never from
 * libopendkim's own resolver, whose shared res_state leaks descriptors
 * under threads — and are cached with their TTL. rsa-sha1 signatures and RSA
 * keys under 1024 bits fail (RFC 8301). Results become symbols (DKIM_VALID,
 * DKIM_INVALID, DKIM_TEMPFAIL, DKIM_NONE, with the signing domains) and an
 * Authentication-Results header (RFC 8601) inserted at the top; forged
 * Authentication-Results carrying our authserv-id are deleted first, from
 * the highest index down.
 *
 * The header fields signed and verified are read from the host's copy of
 * the message as received (host->message_read, cut into fields by
 * dkimfields.c), byte-exact: leading white space and CRLF folding kept
 * (SIFT_F_HDR_LEADSPC); the body is fed to the signer or to libopendkim
 * chunk by chunk from the body hook, never held.
 *
 * Threading: the configuration block (keys, parsed EVP_PKEYs, DKIM_LIB,
 * lists) is read-only after init and shared; one DKIM_LIB per generation
 * is safe because its resolver is never used. The key cache is
 * process-wide, under a mutex. Per-message state (signers, the libopendkim
 * verification handle) lives in host->msg() and is freed in msg_end.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include <opendkim/dkim.h>

#include "dkimfields.h"
#include "dkimkeys.h"
#include "dkimsign.h"
#include "sift/plugin.h"

#define DK_MAX_SIGN   8	   /* signatures made per message */
#define DK_MAX_VERIFY 64   /* upper bound of dkim_max_signatures */
#define DK_TXT_MAX    4096 /* longest key record accepted */
#define DNS_T_TXT     16

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
	int strip_auth_results;
	long long dns_timeout;
	long long key_cache_size;
	long long key_cache_max_ttl;
	long long key_cache_negative_ttl;
	long long clock_drift;
	const char *valid_score, *invalid_score, *tempfail_score, *none_score;
	/* derived in init */
	struct dk_keytable keys;
	DKIM_LIB *lib;
	EVP_PKEY **pkeys; /* parsed keys, parallel to keys.keys */
	dkim_canon_t hcanon, bcanon;
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
	 "sign only when the envelope sender's domain is in the signing table too"},
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
	{"strip_auth_results", SIFT_P_BOOL, "yes", 0, 0, OFF(strip_auth_results), NULL,
	 "delete inbound Authentication-Results fields that carry our authserv-id"},
	{"dns_timeout", SIFT_P_TIME, "0", 0, 60000, OFF(dns_timeout), NULL,
	 "time limit of one key lookup; 0 = dns_timeout (bounded by the MTA's deadline)"},
	{"key_cache_size", SIFT_P_INT, "10000", 0, 10000000, OFF(key_cache_size), NULL,
	 "key records kept in the cache; 0 = no cache"},
	{"key_cache_max_ttl", SIFT_P_TIME, "1h", 1000, 604800000LL, OFF(key_cache_max_ttl), NULL,
	 "longest time a key record is cached (the record's TTL when shorter)"},
	{"key_cache_negative_ttl", SIFT_P_TIME, "60s", 0, 0, OFF(key_cache_negative_ttl), NULL,
	 "how long a missing key (NXDOMAIN, no TXT) is remembered"},
	{"clock_drift", SIFT_P_TIME, "300s", 0, 0, OFF(clock_drift), NULL,
	 "clock difference tolerated for t= and x= when verifying"},
	{"valid_score", SIFT_P_STRING, "-0.1", 0, 0, OFF(valid_score), NULL, "score of DKIM_VALID"},
	{"invalid_score", SIFT_P_STRING, "1.0", 0, 0, OFF(invalid_score), NULL, "score of DKIM_INVALID"},
	{"tempfail_score", SIFT_P_STRING, "0", 0, 0, OFF(tempfail_score), NULL, "score of DKIM_TEMPFAIL"},
	{"none_score", SIFT_P_STRING, "0", 0, 0, OFF(none_score), NULL, "score of DKIM_NONE"},
	SIFT_PARAM_END,
};
#undef OFF

enum dk_mode { M_NONE = 0, M_SIGN, M_VERIFY };

struct dk_lookup {
	DKIM_SIGINFO *sig;
	int dns; /* enum sift_dns_status of the key lookup */
};

struct dk_msg {
	struct sift_ctx *ctx;
	const struct dk_conf *conf;
	enum dk_mode mode;
	struct dks *sign[DK_MAX_SIGN];
	const struct dk_key *signkey[DK_MAX_SIGN];
	size_t nsign;
	bool failed; /* a signing step failed: SIFT_ERROR at eom */
	DKIM *vdkim;
	DKIM_STAT veoh;
	struct dk_lookup look[DK_MAX_VERIFY];
	size_t nlook;
};

static const struct sift_host *host;

/* ---- the key cache ----------------------------------------------------------
 * Process-wide (survives reloads: records do not depend on configuration),
 * a chained hash table under one mutex, bounded by dkim_key_cache_size:
 * when full, expired entries are dropped, then everything. */
struct kc_entry {
	char *name;
	char *record; /* NULL: negative entry (no key) */
	time_t expires;
	struct kc_entry *next;
};
#define KC_BUCKETS 4096
static struct kc_entry *kc_tab[KC_BUCKETS];
static size_t kc_count;
static pthread_mutex_t kc_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned kc_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)tolower((unsigned char)*s)) * 16777619u;
	return h % KC_BUCKETS;
}

static void kc_free_entry(struct kc_entry *e)
{
	free(e->name);
	free(e->record);
	free(e);
}

static void kc_purge(time_t now, bool all)
{
	for (size_t b = 0; b < KC_BUCKETS; b++) {
		struct kc_entry **pp = &kc_tab[b];
		while (*pp) {
			struct kc_entry *e = *pp;
			if (all || e->expires <= now) {
				*pp = e->next;
				kc_free_entry(e);
				kc_count--;
			} else
				pp = &e->next;
		}
	}
}

/* 1 found (*rec_r malloc'd, NULL for a negative entry), 0 not cached. */
static int kc_get(const char *name, char **rec_r)
{
	time_t now = time(NULL);
	int rc = 0;
	pthread_mutex_lock(&kc_lock);
	for (struct kc_entry *e = kc_tab[kc_hash(name)]; e; e = e->next)
		if (strcasecmp(e->name, name) == 0) {
			if (e->expires > now) {
				*rec_r = e->record ? strdup(e->record) : NULL;
				rc = e->record && !*rec_r ? 0 : 1;
			}
			break;
		}
	pthread_mutex_unlock(&kc_lock);
	return rc;
}

static void kc_put(const struct dk_conf *c, const char *name, const char *record, long ttl_s)
{
	if (c->key_cache_size <= 0 || ttl_s <= 0)
		return;
	time_t now = time(NULL);
	unsigned h = kc_hash(name);
	pthread_mutex_lock(&kc_lock);
	for (struct kc_entry **pp = &kc_tab[h]; *pp; pp = &(*pp)->next)
		if (strcasecmp((*pp)->name, name) == 0) {
			struct kc_entry *old = *pp;
			*pp = old->next;
			kc_free_entry(old);
			kc_count--;
			break;
		}
	if (kc_count >= (size_t)c->key_cache_size)
		kc_purge(now, false);
	if (kc_count >= (size_t)c->key_cache_size)
		kc_purge(now, true);
	struct kc_entry *e = calloc(1, sizeof(*e));
	if (e) {
		e->name = strdup(name);
		e->record = record ? strdup(record) : NULL;
		if (!e->name || (record && !e->record)) {
			kc_free_entry(e);
		} else {
			e->expires = now + ttl_s;
			e->next = kc_tab[h];
			kc_tab[h] = e;
			kc_count++;
		}
	}
	pthread_mutex_unlock(&kc_lock);
}

/* ---- key lookup through the shared resolver --------------------------------- */

static void note_lookup(struct dk_msg *m, DKIM_SIGINFO *sig, int status)
{
	for (size_t i = 0; i < m->nlook; i++)
		if (m->look[i].sig == sig) {
			m->look[i].dns = status;
			return;
		}
	if (m->nlook < DK_MAX_VERIFY) {
		m->look[m->nlook].sig = sig;
		m->look[m->nlook].dns = status;
		m->nlook++;
	}
}

static int lookup_status(const struct dk_msg *m, DKIM_SIGINFO *sig)
{
	for (size_t i = 0; i < m->nlook; i++)
		if (m->look[i].sig == sig)
			return m->look[i].dns;
	return -1;
}

static bool dns_label_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '.' || *s == '_'))
			return false;
	return true;
}

static DKIM_CBSTAT key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, unsigned char *buf, size_t buflen)
{
	struct dk_msg *m = dkim_get_user_context(dkim);
	const char *sel = (const char *)dkim_sig_getselector(sig);
	const char *dom = (const char *)dkim_sig_getdomain(sig);
	if (!m || !sel || !dom || !dns_label_ok(sel) || !dns_label_ok(dom)) {
		if (m)
			note_lookup(m, sig, SIFT_DNS_ERROR);
		return DKIM_CBSTAT_NOTFOUND;
	}
	char name[600];
	if ((size_t)snprintf(name, sizeof(name), "%s._domainkey.%s", sel, dom) >= sizeof(name) ||
	    strlen(name) > 253) {
		note_lookup(m, sig, SIFT_DNS_ERROR);
		return DKIM_CBSTAT_NOTFOUND;
	}
	const struct dk_conf *c = m->conf;
	char *rec = NULL;
	if (kc_get(name, &rec)) {
		note_lookup(m, sig, rec ? SIFT_DNS_OK : SIFT_DNS_NXDOMAIN);
		if (!rec)
			return DKIM_CBSTAT_NOTFOUND;
		snprintf((char *)buf, buflen, "%s", rec);
		free(rec);
		return DKIM_CBSTAT_CONTINUE;
	}
	long left = host->time_left_ms(m->ctx);
	long tmo = c->dns_timeout > 0 ? (long)c->dns_timeout : 0;
	if (left <= 100) {
		note_lookup(m, sig, SIFT_DNS_TEMPFAIL);
		return DKIM_CBSTAT_TRYAGAIN;
	}
	if (tmo == 0 || tmo > left - 100)
		tmo = tmo == 0 && left - 100 > 60000 ? 0 : left - 100;
	struct sift_dns_result *r = host->dns_query(name, DNS_T_TXT, tmo);
	if (!r) {
		note_lookup(m, sig, SIFT_DNS_TEMPFAIL);
		return DKIM_CBSTAT_TRYAGAIN;
	}
	DKIM_CBSTAT rc;
	note_lookup(m, sig, (int)r->status);
	switch (r->status) {
	case SIFT_DNS_OK: {
		/* Several TXT records: use the first that looks like a key. */
		const char *pick = NULL;
		for (size_t i = 0; i < r->count; i++) {
			const char *t = (const char *)r->rr[i];
			if (!pick || strstr(t, "p=")) {
				if (pick && strstr(pick, "p="))
					break;
				pick = t;
			}
		}
		if (!pick || strlen(pick) >= buflen || strlen(pick) > DK_TXT_MAX) {
			rc = DKIM_CBSTAT_NOTFOUND;
			break;
		}
		snprintf((char *)buf, buflen, "%s", pick);
		long ttl = (long)r->ttl;
		if (ttl * 1000 > c->key_cache_max_ttl)
			ttl = (long)(c->key_cache_max_ttl / 1000);
		kc_put(c, name, pick, ttl);
		rc = DKIM_CBSTAT_CONTINUE;
		break;
	}
	case SIFT_DNS_NXDOMAIN:
	case SIFT_DNS_NODATA:
		kc_put(c, name, NULL, (long)(c->key_cache_negative_ttl / 1000));
		rc = DKIM_CBSTAT_NOTFOUND;
		break;
	case SIFT_DNS_ERROR:
		rc = DKIM_CBSTAT_NOTFOUND;
		break;
	default:
		rc = DKIM_CBSTAT_TRYAGAIN;
		break;
	}
	free(r);
	return rc;
}

/* The a= tag as written ("rsa-sha256"), or NULL. dkim_sig_getsignalg
 * reports rsa-sha1 (0) for signatures whose tags were never parsed. */
static const char *sig_alg_text(DKIM_SIGINFO *s)
{
	return (const char *)dkim_sig_gettagvalue(s, 0, (unsigned char *)"a");
}

static bool is_sha1(DKIM_SIGINFO *s)
{
	const char *a = sig_alg_text(s);
	return a && strcasecmp(a, "rsa-sha1") == 0;
}

/* Ignores rsa-sha1 signatures (RFC 8301: never accepted; reported as fail
 * without a key lookup) and those beyond dkim_max_signatures. */
static DKIM_CBSTAT prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	struct dk_msg *m = dkim_get_user_context(dkim);
	long long max = m ? m->conf->max_signatures : 5;
	for (int i = 0; i < nsigs; i++)
		if (i >= max || is_sha1(sigs[i]))
			dkim_sig_ignore(sigs[i]);
	return DKIM_CBSTAT_CONTINUE;
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

static int parse_canon(const char *s, dkim_canon_t *h, dkim_canon_t *b)
{
	char hb[16] = "", bb[16] = "";
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	if (hl >= sizeof(hb) || (slash && strlen(slash + 1) >= sizeof(bb)))
		return -1;
	memcpy(hb, s, hl);
	strcpy(bb, slash ? slash + 1 : "simple");
	if (strcasecmp(hb, "simple") == 0)
		*h = DKIM_CANON_SIMPLE;
	else if (strcasecmp(hb, "relaxed") == 0)
		*h = DKIM_CANON_RELAXED;
	else
		return -1;
	if (strcasecmp(bb, "simple") == 0)
		*b = DKIM_CANON_SIMPLE;
	else if (strcasecmp(bb, "relaxed") == 0)
		*b = DKIM_CANON_RELAXED;
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
	if (c->lib)
		dkim_close(c->lib);
	c->lib = NULL;
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
	if (parse_canon(c->canonicalization, &c->hcanon, &c->bcanon) < 0) {
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
	if (*c->key_table) {
		/* Keys are loaded with the same rules as `siftctl dkim showkeys`;
		 * a key that only root can read comes from preinit. */
		struct dk_keytable kt;
		if (dk_keytable_load(c->key_table, false, &kt, err_r) < 0)
			return -1;
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

	c->lib = dkim_init(NULL, NULL);
	if (!c->lib) {
		*err_r = xasprintf("dkim_init failed");
		return -1;
	}
	unsigned int flags = DKIM_LIBFLAGS_BADSIGHANDLES;
	uint64_t drift = (uint64_t)(c->clock_drift / 1000);
	unsigned int minbits = 1024;
	c->signhdrs = hdr_array(c->sign_headers, true);
	c->oversignhdrs = hdr_array(c->oversign_headers, false);
	if (!c->signhdrs || !c->oversignhdrs ||
	    dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_CLOCKDRIFT, &drift, sizeof(drift)) !=
		    DKIM_STAT_OK ||
	    dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof(minbits)) !=
		    DKIM_STAT_OK ||
	    dkim_set_key_lookup(c->lib, key_lookup) != DKIM_STAT_OK ||
	    dkim_set_prescreen(c->lib, prescreen) != DKIM_STAT_OK) {
		*err_r = xasprintf("cannot configure libopendkim");
		dk_release(c);
		return -1;
	}
	return 0;
}

/* ---- helpers on the message ------------------------------------------------- */

static const char *skip_cfws(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '(')
			return p;
		int depth = 0;
		for (; *p; p++) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
		}
	}
}

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

struct feed {
	DKIM *d;
	DKIM_STAT st;
};

static int feed_one(void *arg, char *field, size_t len, size_t namelen)
{
	(void)namelen;
	struct feed *f = arg;
	f->st = dkim_header(f->d, (unsigned char *)field, len);
	return f->st != DKIM_STAT_OK;
}

/* Feeds every header field of the message as received to handle d. */
static DKIM_STAT feed_headers(struct sift_ctx *ctx, DKIM *d)
{
	struct feed f = {d, DKIM_STAT_OK};
	int rc = dk_fields(host, ctx, feed_one, &f);
	if (rc < 0)
		return DKIM_STAT_NORESOURCE;
	if (rc > 0)
		return f.st;
	return dkim_eoh(d);
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
			char *sres = NULL;
			int src = *sdom ? signing_lookup(c, NULL, sdom, &sres) : 0;
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
			.relaxed_headers = c->hcanon == DKIM_CANON_RELAXED,
			.relaxed_body = c->bcanon == DKIM_CANON_RELAXED,
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

/* Ends the signatures and queues them at index 0. The value is folded
 * with CRLF+TAB; it stays so inside Sift (the host's convention) and filterd
 * strips the CRs when it hands the header to libmilter. The header fields
 * signed are the ones received (edits queued by other plugins are not
 * applied yet), as they were at end of header. */
struct fieldlist {
	struct sift_ctx *ctx;
	const char **names, **values;
	size_t n, cap;
};

/* Keeps one field as name and value (what follows the colon, byte-exact)
 * in message memory. */
static int keep_field(void *arg, char *field, size_t len, size_t namelen)
{
	struct fieldlist *l = arg;
	if (namelen == len)
		return 0; /* no colon: not a field the signer can name */
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		const char **nn = host->msg_alloc(l->ctx, nc * sizeof(*nn));
		const char **nv = host->msg_alloc(l->ctx, nc * sizeof(*nv));
		if (l->n) {
			memcpy(nn, l->names, l->n * sizeof(*nn));
			memcpy(nv, l->values, l->n * sizeof(*nv));
		}
		l->names = nn;
		l->values = nv;
		l->cap = nc;
	}
	char *copy = host->msg_alloc(l->ctx, len + 1);
	memcpy(copy, field, len + 1);
	copy[namelen] = 0;
	l->names[l->n] = copy;
	l->values[l->n++] = copy + namelen + 1;
	return 0;
}

static enum sift_verdict finish_signing(struct sift_ctx *ctx, struct dk_msg *m)
{
	struct fieldlist fl = {.ctx = ctx};
	if (dk_fields(host, ctx, keep_field, &fl) < 0) {
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
		host->header_insert(ctx, 0, DKIM_SIGNHEADER, hdrs[i]);
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

/* The authserv-id of an Authentication-Results value into out. */
static bool ar_authserv_id(const char *value, char *out, size_t n)
{
	const char *p = skip_cfws(value);
	size_t k = 0;
	while (*p && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != '(' &&
	       k + 1 < n)
		out[k++] = *p++;
	out[k] = 0;
	return k > 0;
}

static void strip_forged(struct sift_ctx *ctx, const struct dk_conf *c)
{
	const char *id = our_authserv_id(ctx, c);
	size_t nh = host->header_count(ctx);
	unsigned idx = 0;
	unsigned forged[64];
	size_t nf = 0;
	for (size_t i = 0; i < nh; i++) {
		const struct sift_header *h = host->header(ctx, i);
		if (!h || strcasecmp(h->name, "Authentication-Results") != 0)
			continue;
		idx++;
		char a[256];
		if (ar_authserv_id(h->value, a, sizeof(a)) && strcasecmp(a, id) == 0 && nf < 64)
			forged[nf++] = idx;
	}
	/* From the highest index down, so earlier deletions do not shift the
	 * later ones. */
	for (size_t i = nf; i-- > 0;) {
		host->header_change(ctx, "Authentication-Results", forged[i], NULL);
		host->log(ctx, LOG_NOTICE,
			  "deleted forged Authentication-Results #%u carrying our authserv-id", forged[i]);
	}
}

static void start_verifying(struct sift_ctx *ctx, struct dk_msg *m)
{
	const struct dk_conf *c = m->conf;
	if (c->strip_auth_results)
		strip_forged(ctx, c);
	const char *jobid = host->get(ctx, SIFT_I_QUEUE_ID);
	DKIM_STAT st;
	DKIM *d = dkim_verify(c->lib, (const unsigned char *)(jobid ? jobid : "NOQUEUE"), NULL, &st);
	if (!d) {
		host->log(ctx, LOG_ERR, "dkim_verify: %s", dkim_getresultstr(st));
		m->veoh = DKIM_STAT_INTERNAL;
		return;
	}
	dkim_set_user_context(d, m);
	m->vdkim = d;
	m->veoh = feed_headers(ctx, d);
}

/* Appends to b (bounded): result of one signature for A-R. */
struct abuf {
	char s[8192];
	size_t n;
};
static void ab_add(struct abuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ab_add(struct abuf *b, const char *fmt, ...)
{
	if (b->n >= sizeof(b->s) - 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
	va_end(ap);
	if (k > 0)
		b->n = b->n + (size_t)k >= sizeof(b->s) ? sizeof(b->s) - 1 : b->n + (size_t)k;
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
static void acc_add(struct dk_symacc *a, const char *dom)
{
	a->count++;
	if (strstr(a->doms, dom))
		return;
	int k = snprintf(a->doms + a->n, sizeof(a->doms) - a->n, "%s%s", a->n ? "," : "", dom);
	if (k > 0 && a->n + (size_t)k < sizeof(a->doms))
		a->n += (size_t)k;
	else
		a->doms[a->n] = 0;
}

/* libopendkim gives up on the whole message when one key lookup must be
 * retried or when the signatures cannot be parsed at all: report each
 * DKIM-Signature field from its own tags. */
static int report_unlisted(struct sift_ctx *ctx, struct dk_msg *m, struct abuf *ar, struct dk_symacc *invalid,
			   struct dk_symacc *temp)
{
	const struct dk_conf *c = m->conf;
	bool tempfail = m->veoh == DKIM_STAT_CBTRYAGAIN || m->veoh == DKIM_STAT_KEYFAIL;
	for (size_t i = 0; i < m->nlook; i++)
		tempfail |= m->look[i].dns == SIFT_DNS_TEMPFAIL;
	int n = 0;
	size_t nh = host->header_count(ctx);
	for (size_t i = 0; i < nh && n < c->max_signatures; i++) {
		const struct sift_header *h = host->header(ctx, i);
		if (!h || strcasecmp(h->name, "DKIM-Signature") != 0)
			continue;
		char *d = dk_tag_value(h->value, "d"), *sl = dk_tag_value(h->value, "s"),
		     *a = dk_tag_value(h->value, "a");
		char dom[256] = "", sel[128] = "", al[32] = "";
		clean(dom, sizeof(dom), d, true);
		clean(sel, sizeof(sel), sl, true);
		clean(al, sizeof(al), a, true);
		free(d), free(sl), free(a);
		const char *reason = tempfail ? "key lookup failed temporarily" : "malformed signature";
		ab_add(ar, ";\r\n\tdkim=%s reason=\"%s\"", tempfail ? "temperror" : "permerror", reason);
		if (*dom && dns_label_ok(dom))
			ab_add(ar, " header.d=%s", dom);
		if (*sel && dns_label_ok(sel))
			ab_add(ar, " header.s=%s", sel);
		if (*al && dns_label_ok(al))
			ab_add(ar, " header.a=%s", al);
		acc_add(tempfail ? temp : invalid, *dom && dns_label_ok(dom) ? dom : "unknown");
		host->log(ctx, LOG_INFO, "d=%s: dkim=%s (%s)", *dom ? dom : "?",
			  tempfail ? "temperror" : "permerror", reason);
		n++;
	}
	return n;
}

static enum sift_verdict finish_verifying(struct sift_ctx *ctx, struct dk_msg *m)
{
	const struct dk_conf *c = m->conf;
	struct abuf ar = {.n = 0};
	ab_add(&ar, "%s", our_authserv_id(ctx, c));
	struct dk_symacc valid = {.n = 0}, invalid = {.n = 0}, temp = {.n = 0};
	int reported = 0;

	DKIM_SIGINFO **sigs = NULL;
	int nsigs = 0;
	if (m->vdkim) {
		/* eoh fails when no signature could be used (all malformed or
		 * ignored, key lookups failed): the list still describes them. */
		if (m->veoh == DKIM_STAT_OK)
			(void)dkim_eom(m->vdkim, NULL);
		if (dkim_getsiglist(m->vdkim, &sigs, &nsigs) != DKIM_STAT_OK)
			nsigs = 0;
	}
	for (int i = 0; i < nsigs && i < c->max_signatures; i++) {
		DKIM_SIGINFO *s = sigs[i];
		unsigned flags = dkim_sig_getflags(s);
		dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
		const char *atext = sig_alg_text(s);
		if (atext && strcasecmp(atext, "rsa-sha256") == 0)
			alg = DKIM_SIGN_RSASHA256;
		else if (atext && strcasecmp(atext, "ed25519-sha256") == 0)
			alg = DKIM_SIGN_ED25519SHA256;
		else if (atext && strcasecmp(atext, "rsa-sha1") == 0)
			alg = DKIM_SIGN_RSASHA1;
		const char *result, *reason = NULL;
		char rbuf[160];
		int err = dkim_sig_geterror(s);
		int dns = lookup_status(m, s);
		unsigned int bits = 0;
		if ((flags & DKIM_SIGFLAG_IGNORE) && alg == DKIM_SIGN_RSASHA1) {
			result = "fail";
			reason = "rsa-sha1 is not accepted (RFC 8301)";
		} else if (flags & DKIM_SIGFLAG_IGNORE) {
			continue;
		} else if (dns == SIFT_DNS_TEMPFAIL || err == DKIM_SIGERROR_KEYFAIL) {
			result = "temperror";
			reason = "key lookup failed temporarily";
		} else if (DKIM_SIG_CHECK(s)) {
			if (alg == DKIM_SIGN_RSASHA256 && dkim_sig_getkeysize(s, &bits) == DKIM_STAT_OK &&
			    bits < 1024) {
				result = "fail";
				reason = "RSA key shorter than 1024 bits (RFC 8301)";
			} else
				result = "pass";
		} else if ((err == DKIM_SIGERROR_OK || err == DKIM_SIGERROR_BADSIG) &&
			   dkim_sig_getbh(s) == DKIM_SIGBH_MISMATCH) {
			result = "fail";
			reason = "body hash did not verify";
		} else if (err == DKIM_SIGERROR_OK && !(flags & DKIM_SIGFLAG_PROCESSED)) {
			result = "permerror";
			reason = "signature not processed";
		} else {
			switch (err) {
			case DKIM_SIGERROR_OK:
			case DKIM_SIGERROR_BADSIG:
				result = "fail";
				reason = "signature verification failed";
				break;
			case DKIM_SIGERROR_EXPIRED:
			case DKIM_SIGERROR_FUTURE:
			case DKIM_SIGERROR_KEYTOOSMALL:
			case DKIM_SIGERROR_KEYREVOKED:
			case DKIM_SIGERROR_SUBDOMAIN:
			case DKIM_SIGERROR_KEYHASHMISMATCH:
			case DKIM_SIGERROR_MBSFAILED:
				result = "fail";
				break;
			default:
				result = "permerror";
				break;
			}
			if (!reason) {
				const char *es = dkim_sig_geterrorstr(err);
				reason = es ? es : "unknown error";
			}
		}
		char dom[256] = "", sel[128] = "", b[64] = "";
		clean(dom, sizeof(dom), (const char *)dkim_sig_getdomain(s), true);
		clean(sel, sizeof(sel), (const char *)dkim_sig_getselector(s), true);
		size_t bl = sizeof(b);
		if (dkim_get_sigsubstring(m->vdkim, s, b, &bl) != DKIM_STAT_OK)
			b[0] = 0;
		char bb[64];
		clean(bb, sizeof(bb), b, true);
		char aname[32];
		clean(aname, sizeof(aname), atext, true);
		ab_add(&ar, ";\r\n\tdkim=%s", result);
		if (reason) {
			clean(rbuf, sizeof(rbuf), reason, false);
			ab_add(&ar, " reason=\"%s\"", rbuf);
		}
		if (*dom)
			ab_add(&ar, " header.d=%s", dom);
		if (*sel)
			ab_add(&ar, " header.s=%s", sel);
		if (*aname)
			ab_add(&ar, " header.a=%s", aname);
		if (*bb)
			ab_add(&ar, " header.b=%s", bb);
		reported++;
		const char *sd = *dom ? dom : "unknown";
		if (strcmp(result, "pass") == 0)
			acc_add(&valid, sd);
		else if (strcmp(result, "temperror") == 0)
			acc_add(&temp, sd);
		else
			acc_add(&invalid, sd);
		host->log(ctx, LOG_INFO, "d=%s s=%s: dkim=%s%s%s%s", *dom ? dom : "?", *sel ? sel : "?",
			  result, reason ? " (" : "", reason ? reason : "", reason ? ")" : "");
	}
	if (!reported && m->vdkim && m->veoh != DKIM_STAT_OK && m->veoh != DKIM_STAT_NOSIG)
		reported = report_unlisted(ctx, m, &ar, &invalid, &temp);
	if (!reported) {
		ab_add(&ar, "; dkim=none");
		host->symbol(ctx, "DKIM_NONE", c->sc_none, NULL);
	}
	if (valid.count)
		host->symbol(ctx, "DKIM_VALID", c->sc_valid, valid.doms);
	if (invalid.count)
		host->symbol(ctx, "DKIM_INVALID", c->sc_invalid, invalid.doms);
	if (temp.count)
		host->symbol(ctx, "DKIM_TEMPFAIL", c->sc_tempfail, temp.doms);
	if (c->add_auth_results)
		host->header_insert(ctx, 0, "Authentication-Results", ar.s);
	return SIFT_DUNNO;
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
	} else if (m->mode == M_VERIFY && m->vdkim && m->veoh == DKIM_STAT_OK) {
		DKIM_STAT st = dkim_body(m->vdkim, (unsigned char *)buf, len);
		if (st != DKIM_STAT_OK && st != DKIM_STAT_NOSIG)
			m->veoh = st;
	}
	return SIFT_DUNNO;
}

static enum sift_verdict dk_eom(struct sift_ctx *ctx)
{
	struct dk_msg *m = host->msg(ctx);
	if (m->mode == M_SIGN)
		return m->failed ? SIFT_ERROR : finish_signing(ctx, m);
	if (m->mode == M_VERIFY)
		return finish_verifying(ctx, m);
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
	if (m->vdkim)
		dkim_free(m->vdkim);
	m->vdkim = NULL;
	m->mode = M_NONE;
}

const char *dk_conf_key_table(const void *conf)
{
	return ((const struct dk_conf *)conf)->key_table;
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "dkim",
	.description = "DKIM signing (originating) and verification (inbound, libopendkim)",
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
};
