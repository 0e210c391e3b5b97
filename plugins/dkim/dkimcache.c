/*
 * dkimcache.c - the dkim plugin's key cache (see dkimcache.h).
 */
#include "dkimcache.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct kc_entry {
	char *name;
	struct dkv_key *key; /* NULL: negative entry (no key) */
	time_t expires;
	struct kc_entry *next;
};
#define KC_BUCKETS 4096
static struct kc_entry *kc_tab[KC_BUCKETS];
static size_t kc_n;
static pthread_mutex_t kc_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned kc_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)tolower((unsigned char)*s)) * 16777619u;
	return h % KC_BUCKETS;
}

/* Drops one reference; the caller holds kc_lock. */
static void unref_locked(struct dkv_key *k)
{
	if (k && --k->refs == 0)
		dkv_key_free(k);
}

void kc_unref(struct dkv_key *k)
{
	if (!k)
		return;
	pthread_mutex_lock(&kc_lock);
	unref_locked(k);
	pthread_mutex_unlock(&kc_lock);
}

static void free_entry(struct kc_entry *e)
{
	free(e->name);
	unref_locked(e->key);
	free(e);
}

static void purge(time_t now, bool all)
{
	for (size_t b = 0; b < KC_BUCKETS; b++) {
		struct kc_entry **pp = &kc_tab[b];
		while (*pp) {
			struct kc_entry *e = *pp;
			if (all || e->expires <= now) {
				*pp = e->next;
				free_entry(e);
				kc_n--;
			} else
				pp = &e->next;
		}
	}
}

int kc_get(const char *name, time_t now, struct dkv_key **key_r)
{
	int rc = 0;
	pthread_mutex_lock(&kc_lock);
	for (struct kc_entry *e = kc_tab[kc_hash(name)]; e; e = e->next)
		if (strcasecmp(e->name, name) == 0) {
			if (e->expires > now) {
				*key_r = e->key;
				if (e->key)
					e->key->refs++;
				rc = 1;
			}
			break;
		}
	pthread_mutex_unlock(&kc_lock);
	return rc;
}

void kc_put(size_t max_entries, const char *name, struct dkv_key *key, long ttl_s, time_t now)
{
	if (max_entries == 0 || ttl_s <= 0)
		return;
	unsigned h = kc_hash(name);
	pthread_mutex_lock(&kc_lock);
	for (struct kc_entry **pp = &kc_tab[h]; *pp; pp = &(*pp)->next)
		if (strcasecmp((*pp)->name, name) == 0) {
			struct kc_entry *old = *pp;
			*pp = old->next;
			free_entry(old);
			kc_n--;
			break;
		}
	if (kc_n >= max_entries)
		purge(now, false);
	if (kc_n >= max_entries)
		purge(now, true);
	struct kc_entry *e = calloc(1, sizeof(*e));
	if (e && (e->name = strdup(name)) != NULL) {
		e->key = key;
		if (key)
			key->refs++;
		e->expires = now + ttl_s;
		e->next = kc_tab[h];
		kc_tab[h] = e;
		kc_n++;
	} else
		free(e);
	pthread_mutex_unlock(&kc_lock);
}

size_t kc_count(void)
{
	pthread_mutex_lock(&kc_lock);
	size_t n = kc_n;
	pthread_mutex_unlock(&kc_lock);
	return n;
}

void kc_clear(void)
{
	pthread_mutex_lock(&kc_lock);
	purge(0, true);
	pthread_mutex_unlock(&kc_lock);
}

/* ---- key lookup through the shared resolver --------------------------------- */

#define KC_TXT_MAX 4096 /* longest key record accepted */
#define DNS_T_TXT  16

bool kc_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '-' || *s == '.' || *s == '_'))
			return false;
	return true;
}

/* The first TXT record that looks like a key, or NULL. */
static const char *pick_record(const struct sift_dns_result *r)
{
	const char *pick = NULL;
	for (size_t i = 0; i < r->count; i++) {
		const char *t = (const char *)r->rr[i];
		if (!pick || strstr(t, "p=")) {
			if (pick && strstr(pick, "p="))
				break;
			pick = t;
		}
	}
	return pick && strlen(pick) <= KC_TXT_MAX ? pick : NULL;
}

/* The answer r for name: the key parsed and cached, or the reason. */
static enum dkv_result kc_answer(const struct kc_limits *c, const char *name, struct sift_dns_result *r,
				 struct dkv_key **key_r, const char **reason_r)
{
	const char *pick;
	switch (r ? r->status : SIFT_DNS_TEMPFAIL) {
	case SIFT_DNS_OK:
		if (!(pick = pick_record(r))) {
			*reason_r = "no key for signature";
			return DKV_PERMERROR;
		}
		if (!(*key_r = dkv_key_parse(pick))) {
			*reason_r = "out of memory";
			return DKV_TEMPERROR;
		}
		(*key_r)->refs = 1;
		long ttl = (long)r->ttl;
		if (ttl * 1000 > c->max_ttl_ms)
			ttl = (long)(c->max_ttl_ms / 1000);
		kc_put((size_t)c->cache_size, name, *key_r, ttl, time(NULL));
		return DKV_NONE;
	case SIFT_DNS_NXDOMAIN:
	case SIFT_DNS_NODATA:
		kc_put((size_t)c->cache_size, name, NULL, (long)(c->negative_ttl_ms / 1000), time(NULL));
		*reason_r = "no key for signature";
		return DKV_PERMERROR;
	case SIFT_DNS_ERROR:
		*reason_r = "key lookup failed";
		return DKV_PERMERROR;
	default:
		*reason_r = "key lookup failed temporarily";
		return DKV_TEMPERROR;
	}
}

enum dkv_result kc_fetch(const struct sift_host *host, struct sift_ctx *ctx, const char *sel, const char *dom,
			 const struct kc_limits *c, struct dkv_key **key_r, const char **reason_r)
{
	char name[600];
	*key_r = NULL;
	if (!sel || !dom || !kc_name_ok(sel) || !kc_name_ok(dom) ||
	    (size_t)snprintf(name, sizeof(name), "%s._domainkey.%s", sel, dom) >= sizeof(name) ||
	    strlen(name) > 253) {
		*reason_r = "bad key name";
		return DKV_PERMERROR;
	}
	if (kc_get(name, time(NULL), key_r)) {
		if (*key_r)
			return DKV_NONE;
		*reason_r = "no key for signature";
		return DKV_PERMERROR;
	}
	long left = host->time_left_ms(ctx);
	long tmo = c->dns_timeout_ms > 0 ? (long)c->dns_timeout_ms : 0;
	struct sift_dns_result *r = NULL;
	if (left > 100) {
		if (tmo == 0 || tmo > left - 100)
			tmo = tmo == 0 && left - 100 > 60000 ? 0 : left - 100;
		r = host->dns_query(name, DNS_T_TXT, tmo);
	}
	enum dkv_result res = kc_answer(c, name, r, key_r, reason_r);
	free(r);
	return res;
}
