/*
 * kv.c - the key-value store behind host->kv_get/kv_set/kv_incr/kv_del
 * (rate limits, greylisting, counters).
 *
 * A struct sift_kv is a thin front end over a backend chosen by the type
 * prefix of the spec ("memory:", "redis:"). A backend is a small
 * table of functions (struct kv_backend below: open/get/set/incr/del/free
 * and the batches incr_many, write, mget); adding one means writing those
 * functions (as lib/kv_redis.c does) and
 * listing the table in kv_backends[]. struct kv_backend lives in
 * lib/kv_impl.h, shared by the backends.
 *
 * The "memory:" backend keeps everything in this process:
 *   spec  "memory", "memory:" or "memory:max_keys=N" (N = 0: unbounded;
 *         default 1000000).
 *   - A hash table split into KV_STRIPES independent sub-tables, each with
 *     its own mutex and its own bucket array (which doubles as it fills), so
 *     threads working on different keys rarely contend. Keys are hashed
 *     with SipHash-2-4 under a random per-store key, so that senders cannot
 *     choose keys that all collide.
 *   - Expiry is lazy: an expired entry is removed when it is looked at, and
 *     every write also sweeps a few buckets of its stripe (a bounded,
 *     amortised sweep) so that never-read keys do not pile up.
 *   - The number of keys is bounded by max_keys. When a new key would go
 *     over, expired entries are swept from its stripe, then (with no lock
 *     held, at most once a second) from the whole table, one stripe lock at
 *     a time. If that does not free a slot, one live key is evicted the way
 *     Redis's volatile-ttl policy does it: a few entries of the key's stripe
 *     (KV_EVICT_SAMPLES, found from a bucket picked by the new key's hash)
 *     are looked at and the one that expires soonest goes, keys without
 *     expiry last; an empty stripe hands over to the next one. So a full
 *     store costs each new key a bounded amount of work and never fails the
 *     write: a flood of new keys (a sender making up recipients) would
 *     otherwise turn every rate limit or greylisting check into a store
 *     error. Evictions are counted (sift_kv_stats) and logged at most once
 *     a minute. Stripe locks never nest.
 *   - Times come from the monotonic clock (sift_now_ms).
 *
 * Threading: every sift_kv_* function may be called from any thread once
 * sift_kv_open has returned; sift_kv_free must not race with other calls.
 * kv_incr is atomic (read, add, write under the stripe lock).
 *
 * Ownership: keys and values are copied in; sift_kv_get returns a malloc'd
 * copy that the caller frees. Return codes: 0 ok, 1 not found, -1 error.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "kv_impl.h"
#include "sift.h"

struct sift_kv {
	const struct kv_backend *be;
	void *impl;
};

/* ---- memory: backend --------------------------------------------------- */

#define KV_STRIPES	 64 /* power of two */
#define KV_MIN_BUCKETS	 16 /* per stripe, power of two */
#define KV_SWEEP_BUCKETS 4  /* buckets examined per write */
#define KV_DEFAULT_MAX	 1000000
#define KV_EVICT_SAMPLES 8     /* entries looked at per eviction */
#define KV_EVICT_BUCKETS 64    /* buckets walked at most to find them */
#define KV_SWEEP_ALL_MS	 1000  /* whole-table sweeps of a full store: at most this often */
#define KV_EVICT_LOG_MS	 60000 /* "full, evicting" warnings: at most this often */

struct kv_entry {
	struct kv_entry *next;
	uint64_t hash;
	long long expires; /* sift_now_ms() deadline, 0 = never */
	char *val;
	char key[];
};

struct kv_stripe {
	pthread_mutex_t mu;
	struct kv_entry **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
	size_t sweep_pos;
} __attribute__((aligned(64)));

struct kv_mem {
	struct kv_stripe stripes[KV_STRIPES];
	uint64_t k0, k1;     /* SipHash key */
	size_t max_keys;     /* 0 = unbounded */
	atomic_size_t count; /* keys in all stripes */
	atomic_ullong evictions;
	atomic_llong sweep_all_ms; /* when the last whole-table sweep began */
	atomic_llong warned_ms;	   /* when evictions were last logged */
};

/* SipHash-2-4 of the key string. */
static uint64_t kv_hash(const struct kv_mem *m, const char *s, size_t len)
{
	return sift_siphash(m->k0, m->k1, s, len);
}

static int parse_mem_params(const char *params, size_t *max_r, char **err_r)
{
	*max_r = KV_DEFAULT_MAX;
	char *copy = sift_strdup(params), *save = NULL;
	int rc = 0;
	for (char *it = strtok_r(copy, ", \t", &save); it && rc == 0; it = strtok_r(NULL, ", \t", &save)) {
		if (strncmp(it, "max_keys=", 9) == 0) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(it + 9, &end, 10);
			if (it[9] < '0' || it[9] > '9' || *end || errno || v > SIZE_MAX) {
				*err_r = sift_asprintf("memory: bad max_keys value \"%s\"", it + 9);
				rc = -1;
			} else {
				*max_r = (size_t)v;
			}
		} else {
			*err_r = sift_asprintf("memory: unknown parameter \"%s\"", it);
			rc = -1;
		}
	}
	free(copy);
	return rc;
}

static void *mem_open(const char *params, char **err_r)
{
	size_t max;
	if (parse_mem_params(params, &max, err_r) < 0)
		return NULL;
	struct kv_mem *m;
	if (posix_memalign((void **)&m, 64, sizeof(*m)) != 0)
		sift_fatal("out of memory allocating %zu bytes", sizeof(*m));
	memset(m, 0, sizeof(*m));
	m->max_keys = max;
	atomic_init(&m->count, 0);
	atomic_init(&m->evictions, 0);
	atomic_init(&m->sweep_all_ms, LLONG_MIN);
	atomic_init(&m->warned_ms, LLONG_MIN);
	uint64_t seed[2];
	if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
		/* No entropy yet (early boot): fall back to something varying. */
		seed[0] = (uint64_t)sift_now_ms() ^ (uint64_t)(uintptr_t)m;
		seed[1] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	}
	m->k0 = seed[0];
	m->k1 = seed[1];
	for (size_t i = 0; i < KV_STRIPES; i++) {
		struct kv_stripe *s = &m->stripes[i];
		pthread_mutex_init(&s->mu, NULL);
		s->nbuckets = KV_MIN_BUCKETS;
		s->buckets = sift_calloc(s->nbuckets, sizeof(*s->buckets));
	}
	return m;
}

static void entry_free(struct kv_entry *e)
{
	free(e->val);
	free(e);
}

static void mem_free(void *impl)
{
	struct kv_mem *m = impl;
	for (size_t i = 0; i < KV_STRIPES; i++) {
		struct kv_stripe *s = &m->stripes[i];
		for (size_t b = 0; b < s->nbuckets; b++) {
			struct kv_entry *e = s->buckets[b], *next;
			for (; e; e = next) {
				next = e->next;
				entry_free(e);
			}
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->mu);
	}
	free(m);
}

static struct kv_stripe *stripe_of(struct kv_mem *m, uint64_t h)
{
	return &m->stripes[h & (KV_STRIPES - 1)];
}

/* Bucket index inside a stripe: the stripe used the low bits. */
static size_t bucket_of(const struct kv_stripe *s, uint64_t h)
{
	return (size_t)(h >> 6) & (s->nbuckets - 1);
}

static bool expired(const struct kv_entry *e, long long now)
{
	return e->expires != 0 && e->expires <= now;
}

/* Unlinks *pp (stripe locked). */
static void unlink_entry(struct kv_mem *m, struct kv_stripe *s, struct kv_entry **pp)
{
	struct kv_entry *e = *pp;
	*pp = e->next;
	entry_free(e);
	s->count--;
	atomic_fetch_sub(&m->count, 1);
}

/* Removes the expired entries of `n` buckets from the sweep cursor on (all
 * of them with n = SIZE_MAX). Stripe locked. */
static void sweep_stripe(struct kv_mem *m, struct kv_stripe *s, size_t n, long long now)
{
	if (n > s->nbuckets)
		n = s->nbuckets;
	for (size_t i = 0; i < n; i++) {
		size_t b = (s->sweep_pos + i) & (s->nbuckets - 1);
		struct kv_entry **pp = &s->buckets[b];
		while (*pp) {
			if (expired(*pp, now))
				unlink_entry(m, s, pp);
			else
				pp = &(*pp)->next;
		}
	}
	s->sweep_pos = (s->sweep_pos + n) & (s->nbuckets - 1);
}

/* Finds the link pointing at key's entry, dropping it if expired. Returns
 * NULL if absent. Stripe locked. */
static struct kv_entry **find(struct kv_mem *m, struct kv_stripe *s, const char *key, uint64_t h,
			      long long now)
{
	struct kv_entry **pp = &s->buckets[bucket_of(s, h)];
	for (; *pp; pp = &(*pp)->next) {
		struct kv_entry *e = *pp;
		if (e->hash == h && strcmp(e->key, key) == 0) {
			if (expired(e, now)) {
				unlink_entry(m, s, pp);
				return NULL;
			}
			return pp;
		}
	}
	return NULL;
}

static void grow(struct kv_stripe *s)
{
	size_t nb = s->nbuckets * 2;
	struct kv_entry **nbk = sift_calloc(nb, sizeof(*nbk));
	for (size_t b = 0; b < s->nbuckets; b++) {
		struct kv_entry *e = s->buckets[b], *next;
		for (; e; e = next) {
			next = e->next;
			size_t i = (size_t)(e->hash >> 6) & (nb - 1);
			e->next = nbk[i];
			nbk[i] = e;
		}
	}
	free(s->buckets);
	s->buckets = nbk;
	s->nbuckets = nb;
	s->sweep_pos = 0;
}

/* Reserves room for one more key in the global count. */
static bool reserve(struct kv_mem *m)
{
	if (m->max_keys == 0) {
		atomic_fetch_add(&m->count, 1);
		return true;
	}
	size_t c = atomic_load(&m->count);
	while (c < m->max_keys)
		if (atomic_compare_exchange_weak(&m->count, &c, c + 1))
			return true;
	return false;
}

/* Sweeps every stripe, taking one stripe lock at a time (the caller holds
 * none). */
static void sweep_all(struct kv_mem *m)
{
	for (size_t i = 0; i < KV_STRIPES; i++) {
		struct kv_stripe *s = &m->stripes[i];
		pthread_mutex_lock(&s->mu);
		sweep_stripe(m, s, SIZE_MAX, sift_now_ms());
		pthread_mutex_unlock(&s->mu);
	}
}

/* True if this caller is to sweep the whole table now (the last sweep began
 * KV_SWEEP_ALL_MS ago or more): with the store full of live keys, a sweep
 * per new key would cost max_keys steps each. */
static bool sweep_all_due(struct kv_mem *m, long long now)
{
	long long last = atomic_load(&m->sweep_all_ms);
	return (last == LLONG_MIN || now - last >= KV_SWEEP_ALL_MS) &&
	       atomic_compare_exchange_strong(&m->sweep_all_ms, &last, now);
}

/* Whether entry a is a better eviction victim than b: it expires sooner,
 * entries without expiry (0) last. */
static bool evicts_before(const struct kv_entry *a, const struct kv_entry *b)
{
	if (a->expires == 0)
		return false;
	return b->expires == 0 || a->expires < b->expires;
}

/* Evicts one entry of s (locked): of up to KV_EVICT_SAMPLES entries found in
 * at most KV_EVICT_BUCKETS buckets from the one `pick` selects, the one that
 * expires soonest. False if none was found (an empty or sparse stripe). */
static bool evict_one(struct kv_mem *m, struct kv_stripe *s, uint64_t pick)
{
	if (s->count == 0)
		return false;
	struct kv_entry **victim = NULL;
	size_t seen = 0, nb = s->nbuckets < KV_EVICT_BUCKETS ? s->nbuckets : KV_EVICT_BUCKETS;
	size_t start = (size_t)pick & (s->nbuckets - 1);
	for (size_t i = 0; i < nb && seen < KV_EVICT_SAMPLES; i++) {
		struct kv_entry **pp = &s->buckets[(start + i) & (s->nbuckets - 1)];
		for (; *pp && seen < KV_EVICT_SAMPLES; pp = &(*pp)->next, seen++)
			if (!victim || evicts_before(*pp, *victim))
				victim = pp;
	}
	if (!victim)
		return false;
	unlink_entry(m, s, victim);
	atomic_fetch_add(&m->evictions, 1);
	return true;
}

/* Logs that the store is full and evicting, at most once a minute (with no
 * lock held). */
static void evict_warn(struct kv_mem *m, long long now)
{
	long long last = atomic_load(&m->warned_ms);
	if ((last != LLONG_MIN && now - last < KV_EVICT_LOG_MS) ||
	    !atomic_compare_exchange_strong(&m->warned_ms, &last, now))
		return;
	sift_log(LOG_WARNING,
		 "state store full: memory: holds max_keys=%zu keys; evicting the keys that expire "
		 "soonest to make room (%llu evicted so far; their counts start again); raise it with "
		 "state_store = memory:max_keys=N (0: unbounded) or use redis:",
		 m->max_keys, (unsigned long long)atomic_load(&m->evictions));
}

/* Links a new entry (key known to be absent, room reserved; stripe locked).
 * Takes ownership of val. */
static void insert(struct kv_stripe *s, const char *key, uint64_t h, char *val, long ttl_ms, long long now)
{
	size_t klen = strlen(key);
	struct kv_entry *e = sift_malloc(sizeof(*e) + klen + 1);
	memcpy(e->key, key, klen + 1);
	e->hash = h;
	e->val = val;
	e->expires = ttl_ms > 0 ? now + ttl_ms : 0;
	if (s->count + 1 > s->nbuckets * 2)
		grow(s);
	size_t b = bucket_of(s, h);
	e->next = s->buckets[b];
	s->buckets[b] = e;
	s->count++;
}

static int mem_get(void *impl, const char *key, char **val_r)
{
	struct kv_mem *m = impl;
	uint64_t h = kv_hash(m, key, strlen(key));
	struct kv_stripe *s = stripe_of(m, h);
	pthread_mutex_lock(&s->mu);
	struct kv_entry **pp = find(m, s, key, h, sift_now_ms());
	if (pp)
		*val_r = sift_strdup((*pp)->val);
	pthread_mutex_unlock(&s->mu);
	return pp ? 0 : 1;
}

/* Strict decimal integer: optional sign, digits, nothing else. */
static int parse_ll(const char *s, long long *v_r)
{
	if (!*s || !(*s == '-' || *s == '+' || (*s >= '0' && *s <= '9')))
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || end == s)
		return -1;
	*v_r = v;
	return 0;
}

/* set (val != NULL) or incr (val == NULL: add delta, *v_r = new value).
 * counter: incr as sift_kv_incr_many does it, in the same locked step: a
 * value that drops to 0 or below is deleted (a missing key is not created
 * for it), and a ttl_ms > 0 restarts the expiry. When the store is full,
 * sweeps its stripe; if that is not enough, drops the lock, sweeps the
 * whole table (when due) and tries again; then evicts a key of the
 * stripe, or with the lock dropped of the next non-empty stripe, and tries
 * again. Fails only if other threads keep taking the room made. */
static int mem_write(struct kv_mem *m, const char *key, const char *val, long long delta, long ttl_ms,
		     bool counter, long long *v_r)
{
	uint64_t h = kv_hash(m, key, strlen(key));
	struct kv_stripe *s = stripe_of(m, h);
	bool swept_all = false, evicted = false;
	for (int attempt = 0;; attempt++) {
		int rc = 0;
		pthread_mutex_lock(&s->mu);
		long long now = sift_now_ms();
		sweep_stripe(m, s, KV_SWEEP_BUCKETS, now);
		struct kv_entry **pp = find(m, s, key, h, now);
		if (pp && val) {
			free((*pp)->val);
			(*pp)->val = sift_strdup(val);
			(*pp)->expires = ttl_ms > 0 ? now + ttl_ms : 0;
		} else if (pp) {
			long long old, v;
			if (parse_ll((*pp)->val, &old) < 0 || __builtin_add_overflow(old, delta, &v)) {
				rc = -1;
			} else if (counter && v <= 0) {
				unlink_entry(m, s, pp);
				*v_r = v;
			} else {
				char buf[32];
				snprintf(buf, sizeof(buf), "%lld", v);
				free((*pp)->val);
				(*pp)->val = sift_strdup(buf);
				if (counter && ttl_ms > 0)
					(*pp)->expires = now + ttl_ms;
				*v_r = v;
			}
		} else if (counter && delta <= 0) {
			*v_r = delta;
		} else {
			if (!reserve(m)) {
				sweep_stripe(m, s, SIZE_MAX, now);
				bool ok = reserve(m);
				if (!ok && !swept_all && sweep_all_due(m, now)) {
					pthread_mutex_unlock(&s->mu);
					sweep_all(m);
					swept_all = true;
					continue;
				}
				if (!ok && evict_one(m, s, h >> 32)) {
					evicted = true;
					ok = reserve(m);
				}
				if (!ok) {
					pthread_mutex_unlock(&s->mu);
					if (attempt >= KV_STRIPES)
						return -1;
					/* s was empty (or its room went to another
					 * thread): evict from the next stripes, one
					 * lock at a time. */
					for (size_t i = 1; i < KV_STRIPES; i++) {
						struct kv_stripe *o = &m->stripes[(h + i) & (KV_STRIPES - 1)];
						pthread_mutex_lock(&o->mu);
						bool done = evict_one(m, o, h >> 32);
						pthread_mutex_unlock(&o->mu);
						if (done) {
							evicted = true;
							break;
						}
					}
					continue;
				}
			}
			insert(s, key, h, val ? sift_strdup(val) : sift_asprintf("%lld", delta), ttl_ms, now);
			if (!val)
				*v_r = delta;
		}
		pthread_mutex_unlock(&s->mu);
		if (evicted)
			evict_warn(m, now);
		return rc;
	}
}

static int mem_set(void *impl, const char *key, const char *val, long ttl_ms)
{
	return mem_write(impl, key, val, 0, ttl_ms, false, NULL);
}

static int mem_incr(void *impl, const char *key, long long delta, long ttl_ms, long long *val_r)
{
	long long v = 0;
	int rc = mem_write(impl, key, NULL, delta, ttl_ms, false, &v);
	if (rc == 0 && val_r)
		*val_r = v;
	return rc;
}

/* Each key in one locked step (mem_write's counter): two threads counting
 * the same key never lose an increment, nor delete one made meanwhile. */
static int mem_incr_many(void *impl, const char *const *keys, const long long *deltas, size_t n, long ttl_ms)
{
	for (size_t i = 0; i < n; i++) {
		long long v;
		if (mem_write(impl, keys[i], NULL, deltas[i], ttl_ms, true, &v) < 0)
			return -1;
	}
	return 0;
}

static int mem_del(void *impl, const char *key);

/* Each write in one locked step, in order; the batch is not atomic (the
 * store lives and dies with the process, so nothing outlives a half-done
 * batch but a concurrent reader may see one). */
static int mem_write_ops(void *impl, const struct sift_kv_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct sift_kv_op *o = &ops[i];
		long long v;
		int rc = o->op == SIFT_KV_COUNT ? mem_write(impl, o->key, NULL, o->delta, o->ttl_ms, true, &v)
			 : o->op == SIFT_KV_SET ? mem_write(impl, o->key, o->val, 0, o->ttl_ms, false, NULL)
						: mem_del(impl, o->key);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int mem_del(void *impl, const char *key)
{
	struct kv_mem *m = impl;
	uint64_t h = kv_hash(m, key, strlen(key));
	struct kv_stripe *s = stripe_of(m, h);
	pthread_mutex_lock(&s->mu);
	struct kv_entry **pp = find(m, s, key, h, sift_now_ms());
	if (pp)
		unlink_entry(m, s, pp);
	pthread_mutex_unlock(&s->mu);
	return pp ? 0 : 1;
}

static void mem_stats(void *impl, struct sift_kv_stats *st)
{
	struct kv_mem *m = impl;
	st->keys = atomic_load(&m->count);
	st->max_keys = m->max_keys;
	st->evictions = atomic_load(&m->evictions);
}

static const struct kv_backend kv_memory = {
	.type = "memory",
	.open = mem_open,
	.get = mem_get,
	.set = mem_set,
	.incr = mem_incr,
	.del = mem_del,
	.free = mem_free,
	.incr_many = mem_incr_many,
	.write = mem_write_ops,
	.stats = mem_stats,
};

/* ---- front end ------------------------------------------------------------- */

static const struct kv_backend *const kv_backends[] = {
	&kv_memory,
#ifdef SIFT_HAVE_REDIS
	&sift_kv_redis,
#endif
};

struct sift_kv *sift_kv_open(const char *spec, char **err_r)
{
	if (!spec || !*spec)
		spec = "memory:";
	const char *colon = strchr(spec, ':');
	size_t tlen = colon ? (size_t)(colon - spec) : strlen(spec);
	const char *params = colon ? colon + 1 : "";
	for (size_t i = 0; i < sizeof(kv_backends) / sizeof(kv_backends[0]); i++) {
		const struct kv_backend *be = kv_backends[i];
		if (strlen(be->type) != tlen || strncmp(be->type, spec, tlen) != 0)
			continue;
		void *impl = be->open(params, err_r);
		if (!impl)
			return NULL;
		struct sift_kv *kv = sift_malloc(sizeof(*kv));
		kv->be = be;
		kv->impl = impl;
		return kv;
	}
	if (tlen == 5 && strncmp(spec, "redis", 5) == 0)
		*err_r = sift_strdup("key-value store type \"redis\" is not available in this build");
	else
		*err_r = sift_asprintf("unknown key-value store type \"%.*s\" in \"%s\"", (int)tlen, spec,
				       spec);
	return NULL;
}

void sift_kv_free(struct sift_kv *kv)
{
	if (!kv)
		return;
	kv->be->free(kv->impl);
	free(kv);
}

int sift_kv_get(struct sift_kv *kv, const char *key, char **val_r)
{
	if (!kv || !key || !val_r)
		return -1;
	return kv->be->get(kv->impl, key, val_r);
}

int sift_kv_set(struct sift_kv *kv, const char *key, const char *val, long ttl_ms)
{
	if (!kv || !key || !val)
		return -1;
	return kv->be->set(kv->impl, key, val, ttl_ms);
}

int sift_kv_incr(struct sift_kv *kv, const char *key, long long delta, long ttl_ms, long long *val_r)
{
	if (!kv || !key)
		return -1;
	return kv->be->incr(kv->impl, key, delta, ttl_ms, val_r);
}

int sift_kv_del(struct sift_kv *kv, const char *key)
{
	if (!kv || !key)
		return -1;
	return kv->be->del(kv->impl, key);
}

int sift_kv_mget(struct sift_kv *kv, const char *const *keys, size_t n, char **vals_r)
{
	if (!kv || (n && (!keys || !vals_r)))
		return -1;
	if (kv->be->mget)
		return kv->be->mget(kv->impl, keys, n, vals_r);
	for (size_t i = 0; i < n; i++) {
		vals_r[i] = NULL;
		int rc = kv->be->get(kv->impl, keys[i], &vals_r[i]);
		if (rc < 0) {
			for (size_t j = 0; j <= i; j++) {
				free(vals_r[j]);
				vals_r[j] = NULL;
			}
			return -1;
		}
		if (rc == 1)
			vals_r[i] = NULL;
	}
	return 0;
}

int sift_kv_incr_many(struct sift_kv *kv, const char *const *keys, const long long *deltas, size_t n,
		      long ttl_ms)
{
	if (!kv || (n && (!keys || !deltas)))
		return -1;
	return kv->be->incr_many(kv->impl, keys, deltas, n, ttl_ms);
}

void sift_kv_stats(struct sift_kv *kv, struct sift_kv_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (kv && kv->be->stats)
		kv->be->stats(kv->impl, st);
}

int sift_kv_write(struct sift_kv *kv, const struct sift_kv_op *ops, size_t n)
{
	if (!kv || (n && !ops))
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct sift_kv_op *o = &ops[i];
		if (!o->key || (o->op != SIFT_KV_COUNT && o->op != SIFT_KV_SET && o->op != SIFT_KV_DEL) ||
		    (o->op == SIFT_KV_SET && !o->val))
			return -1;
	}
	return kv->be->write(kv->impl, ops, n);
}
