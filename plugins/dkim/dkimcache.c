/*
 * dkimcache.c - the dkim plugin's key cache (see dkimcache.h).
 */
#include "dkimcache.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
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
