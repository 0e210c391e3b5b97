/*
 * dkimcache.h - the dkim plugin's key cache: key records parsed and checked
 * once (struct dkv_key, dkimverify.h), by DNS name, for their TTL.
 *
 * Process-wide (survives reloads: records do not depend on configuration),
 * a chained hash table under one mutex, bounded by the size given to
 * kc_put: when full, expired entries are dropped, then everything. A
 * negative entry (key NULL) remembers a missing key (NXDOMAIN, no TXT).
 * Parsed keys are shared read-only: kc_get hands out a reference, counted
 * under the cache's mutex, that the user gives back with kc_unref; a
 * replaced or purged entry's key is freed by its last user.
 *
 * Threading: every function may be called from any thread.
 */
#ifndef SIFT_DKIMCACHE_H
#define SIFT_DKIMCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "dkimverify.h"
#include "sift/plugin.h"

/* 1 found and not expired at now (*key_r referenced, NULL for a negative
 * entry), 0 not cached. */
int kc_get(const char *name, time_t now, struct dkv_key **key_r);

/* Caches key (NULL: negative) for ttl_s seconds from now, replacing any
 * entry of that name (names compare without case); keeps its own
 * reference, the caller keeps theirs. Nothing is cached when max_entries
 * or ttl_s is 0. */
void kc_put(size_t max_entries, const char *name, struct dkv_key *key, long ttl_s, time_t now);

/* Gives back a reference from kc_get (or one the caller owned with refs
 * counting it): the key is freed with its last reference. NULL is ignored. */
void kc_unref(struct dkv_key *key);

/* Entries cached (expired ones included until they are dropped). */
size_t kc_count(void);

/* Drops every entry (tests). */
void kc_clear(void);

/* A selector or domain usable in a key name (letters, digits, '-', '.', '_';
 * not empty). */
bool kc_name_ok(const char *s);

/* Limits of a key lookup (the plugin's settings, in milliseconds). */
struct kc_limits {
	long long dns_timeout_ms; /* 0: the resolver's default */
	long long cache_size;	  /* entries; 0: no cache */
	long long max_ttl_ms, negative_ttl_ms;
};

/* The parameters of a key lookup, for a plugin's parameter table: the
 * fields dns_timeout, key_cache_size, key_cache_max_ttl,
 * key_cache_negative_ttl and clock_drift (long long) of conf struct st. */
// clang-format off
#define KC_PARAMS(st)                                                                         \
	{"dns_timeout", SIFT_P_TIME, "0", 0, 60000, offsetof(st, dns_timeout), NULL,          \
	 "time limit of one key lookup; 0 = dns_timeout (bounded by the MTA's deadline)"},    \
	{"key_cache_size", SIFT_P_INT, "10000", 0, 10000000, offsetof(st, key_cache_size),    \
	 NULL, "key records kept in the cache; 0 = no cache"},                                \
	{"key_cache_max_ttl", SIFT_P_TIME, "1h", 1000, 604800000LL,                           \
	 offsetof(st, key_cache_max_ttl), NULL,                                               \
	 "longest time a key record is cached (the record's TTL when shorter)"},              \
	{"key_cache_negative_ttl", SIFT_P_TIME, "60s", 0, 0,                                  \
	 offsetof(st, key_cache_negative_ttl), NULL,                                          \
	 "how long a missing key (NXDOMAIN, no TXT) is remembered"},                          \
	{"clock_drift", SIFT_P_TIME, "300s", 0, 0, offsetof(st, clock_drift), NULL,           \
	 "clock difference tolerated for t= and x= when verifying"}
// clang-format on

/* The key record of selector sel in domain dom (sel._domainkey.dom): from
 * the cache, or through the shared resolver (host->dns_query, within the
 * MTA's deadline) and then cached. DKV_NONE with *key_r (a reference, given
 * back with kc_unref), or the result a signature gets without a usable
 * record (PERMERROR, TEMPERROR) with a static *reason_r. */
enum dkv_result kc_fetch(const struct sift_host *host, struct sift_ctx *ctx, const char *sel, const char *dom,
			 const struct kc_limits *limits, struct dkv_key **key_r, const char **reason_r);

#endif
