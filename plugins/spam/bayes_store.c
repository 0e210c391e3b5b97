/*
 * bayes_store.c - where Bayes counts live:
 *   memory      a hash table in the process (tests);
 *   lmdb:DIR    an LMDB environment (the default, under the state
 *               directory): databases "tok" (5-octet token -> spam count,
 *               ham count, atime: three little-endian uint32), "seen" (msgid
 *               -> 's' or 'h' and the time it was written, little-endian
 *               uint32; an entry of one octet, without the time, is from
 *               before and gets one at the next expiry: bayes_lmdb.c's
 *               l_expire_seen) and "meta" ("nspam", "nham": int64). LMDB
 *               gives one writer and any number of lock-free readers, and
 *               copy-on-write pages keep the file consistent across a
 *               crash. A bulk learner (siftctl) keeps one write transaction
 *               open over many messages (bstore_bulk).
 *   redis       the host's state_store (host->kv_*), shared by every host
 *               using that Redis. Keys (after the store's prefix, "sift:"
 *               by default): "bayes:s:HEX" and "bayes:h:HEX" (HEX = the
 *               10 hex digits of a token) spam and ham counts,
 *               "bayes:nspam", "bayes:nham" the totals, "bayes:seen:MSGID"
 *               's' or 'h', "bayes:learning:MSGID" a learner's claim on
 *               the message (kv_claim). A learn or forget is one kv_write
 *               (one Lua script on Redis): its token counts, total and
 *               seen entry change together or not at all, by atomic
 *               increments, so any number of hosts learn at once and a
 *               lost connection leaves no half-learned message; a count
 *               that drops to 0 is deleted. Lookups read the
 *               counts of a message in one batch when the host has
 *               kv_mget. Tokens have no atime there: keys expire with the
 *               store's TTL (bayes_token_ttl), refreshed when learned; a
 *               seen entry expires bayes_seen_ttl after its message was
 *               learned (8 days by default, as SpamAssassin's Redis store),
 *               so that a shared database does not grow for ever.
 */
#include <lmdb.h>
#include <sys/stat.h>

#include "bayes.h"
#include "internal.h"

/* ---- memory -------------------------------------------------------------- */

struct mem_ent {
	btok t;
	struct bcounts c;
	bool used;
};

struct mem_seen {
	char *id;
	char what;
	struct mem_seen *next;
};

struct mem_store {
	struct bstore base;
	pthread_mutex_t lock;
	struct mem_ent *tab;
	size_t cap, n;
	long long ns, nh;
	struct mem_seen *seen;
};

static size_t mem_slot(const struct mem_store *m, btok t)
{
	size_t j = (size_t)((t * 0x9E3779B97F4A7C15ull) >> 17) & (m->cap - 1);
	while (m->tab[j].used && m->tab[j].t != t)
		j = (j + 1) & (m->cap - 1);
	return j;
}

static void mem_rehash(struct mem_store *m, size_t cap)
{
	struct mem_ent *old = m->tab;
	size_t oc = m->cap;
	m->tab = xcalloc(cap, sizeof(*m->tab));
	m->cap = cap;
	m->n = 0;
	for (size_t i = 0; i < oc; i++)
		if (old[i].used && (old[i].c.s || old[i].c.h)) {
			m->tab[mem_slot(m, old[i].t)] = old[i];
			m->n++;
		}
	free(old);
}

static int mem_totals(struct bstore *st, long long *ns, long long *nh, long long *nt)
{
	struct mem_store *m = (struct mem_store *)st;
	pthread_mutex_lock(&m->lock);
	*ns = m->ns;
	*nh = m->nh;
	*nt = 0;
	for (size_t i = 0; i < m->cap; i++)
		*nt += m->tab[i].used && (m->tab[i].c.s || m->tab[i].c.h);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int mem_get(struct bstore *st, const btok *t, size_t n, struct bcounts *out)
{
	struct mem_store *m = (struct mem_store *)st;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		size_t j = mem_slot(m, t[i]);
		out[i] = m->tab[j].used ? m->tab[j].c : (struct bcounts){0, 0, 0};
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static struct bcounts *mem_ent(struct mem_store *m, btok t)
{
	if ((m->n + 1) * 2 > m->cap)
		mem_rehash(m, m->cap * 2);
	size_t j = mem_slot(m, t);
	if (!m->tab[j].used) {
		m->tab[j] = (struct mem_ent){.t = t, .used = true};
		m->n++;
	}
	return &m->tab[j].c;
}

static void count_add(uint32_t *v, int d)
{
	*v = d < 0 && *v < (uint32_t)-d ? 0 : (uint32_t)((int64_t)*v + d);
}

static void mem_seen_set(struct mem_store *m, const char *id, char what)
{
	struct mem_seen **pp = &m->seen;
	while (*pp && strcmp((*pp)->id, id) != 0)
		pp = &(*pp)->next;
	if (*pp && !what) {
		struct mem_seen *x = *pp;
		*pp = x->next;
		free(x->id);
		free(x);
	} else if (*pp)
		(*pp)->what = what;
	else if (what) {
		struct mem_seen *x = xcalloc(1, sizeof(*x));
		x->id = xstrdup(id);
		x->what = what;
		x->next = m->seen;
		m->seen = x;
	}
}

static int mem_seen_of(const struct mem_store *m, const char *msgid)
{
	int r = 0;
	for (const struct mem_seen *x = m->seen; x; x = x->next)
		if (strcmp(x->id, msgid) == 0)
			r = x->what;
	return r;
}

static int mem_apply(struct bstore *st, const btok *t, size_t n, bool spam, int sign, uint32_t atime,
		     const char *msgid, char what, int expect)
{
	struct mem_store *m = (struct mem_store *)st;
	pthread_mutex_lock(&m->lock);
	if (expect != BSTORE_ANY && msgid && mem_seen_of(m, msgid) != expect) {
		pthread_mutex_unlock(&m->lock);
		return 1;
	}
	for (size_t i = 0; i < n && sign; i++) {
		struct bcounts *c = mem_ent(m, t[i]);
		count_add(spam ? &c->s : &c->h, sign);
		if (sign > 0 && atime > c->atime) /* never rolled back, as SpamAssassin */
			c->atime = atime;
	}
	if (sign)
		*(spam ? &m->ns : &m->nh) += sign;
	if (m->ns < 0)
		m->ns = 0;
	if (m->nh < 0)
		m->nh = 0;
	if (msgid)
		mem_seen_set(m, msgid, what);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int mem_touch(struct bstore *st, const btok *t, const uint32_t *atime, size_t n)
{
	struct mem_store *m = (struct mem_store *)st;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		struct mem_ent *e = &m->tab[mem_slot(m, t[i])];
		if (e->used && (e->c.s || e->c.h) && atime[i] > e->c.atime)
			e->c.atime = atime[i];
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int mem_seen(struct bstore *st, const char *msgid)
{
	struct mem_store *m = (struct mem_store *)st;
	pthread_mutex_lock(&m->lock);
	int r = mem_seen_of(m, msgid);
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_put(struct bstore *st, const btok *t, const struct bcounts *c, size_t n, long long ns,
		   long long nh)
{
	struct mem_store *m = (struct mem_store *)st;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++)
		*mem_ent(m, t[i]) = c[i];
	if (ns >= 0)
		m->ns = ns;
	if (nh >= 0)
		m->nh = nh;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static long long mem_expire(struct bstore *st, uint32_t cutoff)
{
	struct mem_store *m = (struct mem_store *)st;
	pthread_mutex_lock(&m->lock);
	long long r = 0;
	for (size_t i = 0; i < m->cap; i++)
		if (m->tab[i].used && (m->tab[i].c.s || m->tab[i].c.h) && m->tab[i].c.atime < cutoff) {
			m->tab[i].c = (struct bcounts){0, 0, 0};
			r++;
		}
	mem_rehash(m, m->cap);
	pthread_mutex_unlock(&m->lock);
	return r;
}

static int mem_each(struct bstore *st, int (*cb)(void *, btok, const struct bcounts *), void *arg)
{
	struct mem_store *m = (struct mem_store *)st;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->cap; i++)
		if (m->tab[i].used && (m->tab[i].c.s || m->tab[i].c.h) && cb(arg, m->tab[i].t, &m->tab[i].c))
			break;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void mem_close(struct bstore *st)
{
	struct mem_store *m = (struct mem_store *)st;
	while (m->seen) {
		struct mem_seen *x = m->seen;
		m->seen = x->next;
		free(x->id);
		free(x);
	}
	free(m->tab);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static const struct bstore_ops mem_ops = {.totals = mem_totals,
					  .get = mem_get,
					  .apply = mem_apply,
					  .seen = mem_seen,
					  .put = mem_put,
					  .expire = mem_expire,
					  .each = mem_each,
					  .close = mem_close,
					  .touch = mem_touch};

static struct bstore *mem_open(void)
{
	struct mem_store *m = xcalloc(1, sizeof(*m));
	m->base.ops = &mem_ops;
	m->base.touches = true;
	pthread_mutex_init(&m->lock, NULL);
	m->cap = 1024;
	m->tab = xcalloc(m->cap, sizeof(*m->tab));
	return &m->base;
}

/* ---- redis (the host's state_store) -------------------------------------- */

struct kv_store {
	struct bstore base;
	const struct sift_host *h;
	long ttl_ms, seen_ttl_ms;
};

static int kv_num(const struct sift_host *h, const char *key, long long *v)
{
	char *s = NULL;
	int rc = h->kv_get(key, &s);
	*v = rc == 0 && s ? atoll(s) : 0;
	free(s);
	return rc < 0 ? -1 : 0;
}

static int kv_totals(struct bstore *st, long long *ns, long long *nh, long long *nt)
{
	struct kv_store *k = (struct kv_store *)st;
	*nt = -1; /* not counted */
	return kv_num(k->h, "bayes:nspam", ns) < 0 || kv_num(k->h, "bayes:nham", nh) < 0 ? -1 : 0;
}

static char *tkey(char c, btok t)
{
	return xasprintf("bayes:%c:%010llx", c, (unsigned long long)t);
}

static int kv_tget(struct bstore *st, const btok *t, size_t n, struct bcounts *out)
{
	struct kv_store *k = (struct kv_store *)st;
	char **keys = xcalloc(2 * n + 1, sizeof(char *)), **vals = xcalloc(2 * n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		keys[2 * i] = tkey('s', t[i]);
		keys[2 * i + 1] = tkey('h', t[i]);
	}
	int rc = k->h->kv_mget((const char *const *)keys, 2 * n, vals);
	for (size_t i = 0; i < n; i++) {
		out[i].s = vals[2 * i] ? (uint32_t)atoll(vals[2 * i]) : 0;
		out[i].h = vals[2 * i + 1] ? (uint32_t)atoll(vals[2 * i + 1]) : 0;
		out[i].atime = 0;
	}
	for (size_t i = 0; i < 2 * n; i++) {
		free(keys[i]);
		free(vals[i]);
	}
	free(keys);
	free(vals);
	return rc < 0 ? -1 : 0;
}

/* One learn or forget is one kv_write: the token counts, the total and the
 * seen entry land together or not at all (a lost connection or a killed
 * process in between would leave tokens counted for a message not marked
 * seen, counted again by the next learn). */
static int kv_apply(struct bstore *st, const btok *t, size_t n, bool spam, int sign, uint32_t atime,
		    const char *msgid, char what, int expect)
{
	(void)atime;
	(void)expect; /* learners claim the message instead (kv_claim) */
	struct kv_store *k = (struct kv_store *)st;
	size_t nt = sign ? n : 0, nops = 0;
	struct sift_kv_op *ops = xcalloc(nt + 2, sizeof(*ops));
	char *seen_key = NULL, val[2] = {what, 0};
	for (size_t i = 0; i < nt; i++)
		ops[nops++] = (struct sift_kv_op){.op = SIFT_KV_COUNT,
						  .key = tkey(spam ? 's' : 'h', t[i]),
						  .delta = sign,
						  .ttl_ms = k->ttl_ms};
	if (sign)
		ops[nops++] = (struct sift_kv_op){
			.op = SIFT_KV_COUNT, .key = spam ? "bayes:nspam" : "bayes:nham", .delta = sign};
	if (msgid && *msgid) {
		seen_key = xasprintf("bayes:seen:%s", msgid);
		ops[nops++] = what ? (struct sift_kv_op){.op = SIFT_KV_SET,
							 .key = seen_key,
							 .val = val,
							 .ttl_ms = k->seen_ttl_ms}
				   : (struct sift_kv_op){.op = SIFT_KV_DEL, .key = seen_key};
	}
	int rc = nops && k->h->kv_write(ops, nops) < 0 ? -1 : 0;
	for (size_t i = 0; i < nt; i++)
		free((char *)ops[i].key);
	free(seen_key);
	free(ops);
	return rc;
}

static int kv_seen(struct bstore *st, const char *msgid)
{
	struct kv_store *k = (struct kv_store *)st;
	char *key = xasprintf("bayes:seen:%s", msgid), *v = NULL;
	int rc = k->h->kv_get(key, &v);
	free(key);
	int r = rc < 0 ? -1 : rc == 0 && v && (*v == 's' || *v == 'h') ? *v : 0;
	free(v);
	return r;
}

/* "bayes:learning:MSGID": the first increment claims the message. */
static int kv_claim(struct bstore *st, const char *msgid)
{
	struct kv_store *k = (struct kv_store *)st;
	char *key = xasprintf("bayes:learning:%s", msgid);
	long long v = 0;
	int rc = k->h->kv_incr(key, 1, BSTORE_CLAIM_MS, &v);
	free(key);
	return rc < 0 ? -1 : v == 1;
}

static void kv_release(struct bstore *st, const char *msgid)
{
	struct kv_store *k = (struct kv_store *)st;
	char *key = xasprintf("bayes:learning:%s", msgid);
	k->h->kv_del(key);
	free(key);
}

static int kv_put(struct bstore *st, const btok *t, const struct bcounts *c, size_t n, long long ns,
		  long long nh)
{
	struct kv_store *k = (struct kv_store *)st;
	for (size_t i = 0; i < n; i++)
		for (int w = 0; w < 2; w++) {
			uint32_t v = w ? c[i].h : c[i].s;
			if (!v)
				continue;
			char *key = tkey(w ? 'h' : 's', t[i]), val[16];
			snprintf(val, sizeof(val), "%u", v);
			int rc = k->h->kv_set(key, val, k->ttl_ms);
			free(key);
			if (rc < 0)
				return -1;
		}
	char val[24];
	snprintf(val, sizeof(val), "%lld", ns);
	if (ns >= 0 && k->h->kv_set("bayes:nspam", val, 0) < 0)
		return -1;
	snprintf(val, sizeof(val), "%lld", nh);
	if (nh >= 0 && k->h->kv_set("bayes:nham", val, 0) < 0)
		return -1;
	return 0;
}

static void kv_close(struct bstore *st)
{
	free(st);
}

/* Scans used n tokens: their keys' TTL set again (SpamAssassin's Redis
 * store does the same), by counting 0 onto each: a key present keeps its
 * count and gets spam_bayes_token_ttl, an absent one stays absent. In
 * writes of KV_TOUCH_BATCH tokens. */
#define KV_TOUCH_BATCH 512
static int kv_touch(struct bstore *st, const btok *t, const uint32_t *atime, size_t n)
{
	(void)atime;
	struct kv_store *k = (struct kv_store *)st;
	struct sift_kv_op ops[2 * KV_TOUCH_BATCH];
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i += KV_TOUCH_BATCH) {
		size_t m = n - i < KV_TOUCH_BATCH ? n - i : KV_TOUCH_BATCH;
		for (size_t j = 0; j < 2 * m; j++)
			ops[j] = (struct sift_kv_op){.op = SIFT_KV_COUNT,
						     .key = tkey(j & 1 ? 'h' : 's', t[i + j / 2]),
						     .ttl_ms = k->ttl_ms};
		rc = k->h->kv_write(ops, 2 * m) < 0 ? -1 : 0;
		for (size_t j = 0; j < 2 * m; j++)
			free((char *)ops[j].key);
	}
	return rc;
}

/* Redis keeps no atime: tokens expire by TTL; no scan. */
static const struct bstore_ops kv_ops = {.totals = kv_totals,
					 .get = kv_tget,
					 .apply = kv_apply,
					 .seen = kv_seen,
					 .put = kv_put,
					 .close = kv_close,
					 .claim = kv_claim,
					 .release = kv_release,
					 .touch = kv_touch};

struct bstore *bstore_open(const char *spec, const struct sift_host *host, long ttl_ms, long seen_ttl_ms,
			   char **err_r)
{
	if (strcmp(spec, "memory") == 0)
		return mem_open();
	if (strncmp(spec, "lmdb:", 5) == 0)
		return bstore_open_lmdb(spec + 5, err_r);
	if (strcmp(spec, "redis") == 0) {
		if (!host ||
		    host->struct_size < offsetof(struct sift_host, kv_write) + sizeof(host->kv_write) ||
		    !host->kv_mget || !host->kv_write) {
			*err_r = xstrdup("the host has no batched key-value functions (kv_mget, kv_write)");
			return NULL;
		}
		struct kv_store *k = xcalloc(1, sizeof(*k));
		k->base.ops = &kv_ops;
		k->base.touches = ttl_ms > 0; /* tokens that never expire: nothing to renew */
		k->h = host;
		k->ttl_ms = ttl_ms;
		k->seen_ttl_ms = seen_ttl_ms;
		return &k->base;
	}
	*err_r = xasprintf("unknown Bayes store \"%s\" (lmdb:DIR, redis or memory)", spec);
	return NULL;
}
