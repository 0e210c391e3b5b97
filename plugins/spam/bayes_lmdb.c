/*
 * bayes_lmdb.c - the LMDB Bayes store (see bayes_store.c for the layout).
 * Readers take a read-only transaction per lookup (no lock: LMDB's reader
 * table); writers are serialised by LMDB. Each learned message is one
 * transaction (durable at commit), except in bulk mode where one write
 * transaction holds up to BULK_MAX messages: a crash then loses at most
 * the uncommitted batch, never the database's consistency.
 */
#include <lmdb.h>
#include <sys/stat.h>

#include "bayes.h"
#include "internal.h"

#define MAP_SIZE (4ull << 30) /* sparse: the file grows with the data */
#define BULK_MAX 2000

struct lmdb_store {
	struct bstore base;
	MDB_env *env;
	MDB_dbi tok, seen, meta;
	MDB_txn *bulk; /* the open bulk write transaction, or NULL */
	/* set by a bulk learner (siftctl, one thread): readers then share the
	 * bulk transaction under bulk_lock; otherwise (filterd) they take
	 * none and read in parallel */
	_Atomic bool bulk_mode;
	unsigned bulk_n;
	pthread_mutex_t bulk_lock;
};

static void key_of(btok t, unsigned char k[5])
{
	for (int i = 4; i >= 0; i--) {
		k[i] = (unsigned char)(t & 0xff);
		t >>= 8;
	}
}

static btok tok_of(const unsigned char *k)
{
	btok t = 0;
	for (int i = 0; i < 5; i++)
		t = (t << 8) | k[i];
	return t;
}

static void val_of(const MDB_val *v, struct bcounts *c)
{
	if (v->mv_size < 12) {
		*c = (struct bcounts){0, 0, 0};
		return;
	}
	memcpy(c, v->mv_data, 12);
}

static void rlock(struct lmdb_store *l)
{
	if (atomic_load(&l->bulk_mode))
		pthread_mutex_lock(&l->bulk_lock);
}

static void runlock(struct lmdb_store *l)
{
	if (atomic_load(&l->bulk_mode))
		pthread_mutex_unlock(&l->bulk_lock);
}

/* A read transaction, or the bulk one (held: bulk_lock). */
static int rtxn(struct lmdb_store *l, MDB_txn **txn)
{
	if (l->bulk) {
		*txn = l->bulk;
		return 0;
	}
	return mdb_txn_begin(l->env, NULL, MDB_RDONLY, txn) ? -1 : 0;
}

static void rdone(struct lmdb_store *l, MDB_txn *txn)
{
	if (txn != l->bulk)
		mdb_txn_abort(txn);
}

static long long meta_get(struct lmdb_store *l, MDB_txn *txn, const char *name)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	long long x = 0;
	if (mdb_get(txn, l->meta, &k, &v) == 0 && v.mv_size == sizeof(x))
		memcpy(&x, v.mv_data, sizeof(x));
	return x;
}

static int meta_put(struct lmdb_store *l, MDB_txn *txn, const char *name, long long x)
{
	if (x < 0)
		x = 0;
	MDB_val k = {strlen(name), (void *)name}, v = {sizeof(x), &x};
	return mdb_put(txn, l->meta, &k, &v, 0) ? -1 : 0;
}

static int l_totals(struct bstore *st, long long *ns, long long *nh, long long *nt)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	rlock(l);
	MDB_txn *txn;
	int r = rtxn(l, &txn);
	if (r == 0) {
		*ns = meta_get(l, txn, "nspam");
		*nh = meta_get(l, txn, "nham");
		MDB_stat s;
		*nt = mdb_stat(txn, l->tok, &s) == 0 ? (long long)s.ms_entries : 0;
		rdone(l, txn);
	}
	runlock(l);
	return r;
}

struct tokidx {
	btok t;
	size_t i;
};

/* Sorts a[0..n) by token (40 bits): a radix sort, one pass per octet,
 * through tmp (n entries); a message has hundreds of tokens. */
static void tokidx_sort(struct tokidx *a, struct tokidx *tmp, size_t n)
{
	struct tokidx *src = a, *dst = tmp;
	for (int shift = 0; shift < 40; shift += 8) {
		size_t count[257] = {0};
		for (size_t i = 0; i < n; i++)
			count[((src[i].t >> shift) & 0xff) + 1]++;
		for (int b = 0; b < 256; b++)
			count[b + 1] += count[b];
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i].t >> shift) & 0xff]++] = src[i];
		struct tokidx *x = src;
		src = dst;
		dst = x;
	}
	if (src != a) /* five passes: the result is in tmp */
		memcpy(a, src, n * sizeof(*a));
}

/* In key order: neighbouring lookups share the B-tree's upper pages in
 * the cache. */
static int l_get(struct bstore *st, const btok *t, size_t n, struct bcounts *out)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	struct tokidx *ix = xmalloc((2 * n + 1) * sizeof(*ix));
	for (size_t i = 0; i < n; i++)
		ix[i] = (struct tokidx){t[i], i};
	tokidx_sort(ix, ix + n, n);
	rlock(l);
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	int r = rtxn(l, &txn);
	if (r == 0 && mdb_cursor_open(txn, l->tok, &cur))
		r = -1;
	for (size_t j = 0; r == 0 && j < n; j++) {
		unsigned char kb[5];
		key_of(ix[j].t, kb);
		MDB_val k = {5, kb}, v;
		if (mdb_cursor_get(cur, &k, &v, MDB_SET) == 0)
			val_of(&v, &out[ix[j].i]);
		else
			out[ix[j].i] = (struct bcounts){0, 0, 0};
	}
	if (cur)
		mdb_cursor_close(cur);
	if (txn)
		rdone(l, txn);
	free(ix);
	runlock(l);
	return r;
}

/* A write transaction: the bulk one or a new one. */
static int wtxn(struct lmdb_store *l, MDB_txn **txn)
{
	if (l->bulk) {
		*txn = l->bulk;
		return 0;
	}
	return mdb_txn_begin(l->env, NULL, 0, txn) ? -1 : 0;
}

/* bulk_lock taken and a write transaction; on failure the lock is
 * released again. */
static int wbegin(struct lmdb_store *l, MDB_txn **txn)
{
	pthread_mutex_lock(&l->bulk_lock);
	if (wtxn(l, txn) < 0) {
		pthread_mutex_unlock(&l->bulk_lock);
		return -1;
	}
	return 0;
}

/* Commits txn unless it is the bulk one (then every BULK_MAX messages). */
static int wdone(struct lmdb_store *l, MDB_txn *txn, int rc)
{
	if (txn != l->bulk) {
		if (rc < 0) {
			mdb_txn_abort(txn);
			return -1;
		}
		return mdb_txn_commit(txn) ? -1 : 0;
	}
	if (rc < 0 || ++l->bulk_n < BULK_MAX)
		return rc;
	l->bulk_n = 0;
	l->bulk = NULL;
	if (mdb_txn_commit(txn) || mdb_txn_begin(l->env, NULL, 0, &l->bulk))
		return -1;
	return 0;
}

static int tok_add(struct lmdb_store *l, MDB_txn *txn, btok t, bool spam, int sign, uint32_t atime)
{
	unsigned char kb[5];
	key_of(t, kb);
	MDB_val k = {5, kb}, v;
	struct bcounts c = {0, 0, 0};
	if (mdb_get(txn, l->tok, &k, &v) == 0)
		val_of(&v, &c);
	else if (sign < 0)
		return 0;
	uint32_t *x = spam ? &c.s : &c.h;
	*x = sign < 0 && *x == 0 ? 0 : *x + (uint32_t)sign;
	if (sign > 0)
		c.atime = atime;
	if (!c.s && !c.h) {
		int e = mdb_del(txn, l->tok, &k, NULL);
		return e && e != MDB_NOTFOUND ? -1 : 0;
	}
	MDB_val nv = {12, &c};
	return mdb_put(txn, l->tok, &k, &nv, 0) ? -1 : 0;
}

static int l_apply(struct bstore *st, const btok *t, size_t n, bool spam, int sign, uint32_t atime,
		   const char *msgid, char what)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	MDB_txn *txn;
	int rc = wbegin(l, &txn);
	if (rc < 0)
		return -1;
	for (size_t i = 0; i < n && sign && rc == 0; i++)
		rc = tok_add(l, txn, t[i], spam, sign, atime);
	if (rc == 0 && sign) {
		const char *name = spam ? "nspam" : "nham";
		rc = meta_put(l, txn, name, meta_get(l, txn, name) + sign);
	}
	if (rc == 0 && msgid && *msgid) {
		MDB_val k = {strlen(msgid), (void *)msgid}, v = {1, &what};
		int e = what ? mdb_put(txn, l->seen, &k, &v, 0) : mdb_del(txn, l->seen, &k, NULL);
		rc = e && e != MDB_NOTFOUND ? -1 : 0;
	}
	rc = wdone(l, txn, rc);
	pthread_mutex_unlock(&l->bulk_lock);
	return rc;
}

static int l_seen(struct bstore *st, const char *msgid)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	rlock(l);
	MDB_txn *txn;
	int r = rtxn(l, &txn);
	if (r == 0) {
		MDB_val k = {strlen(msgid), (void *)msgid}, v;
		if (*msgid && mdb_get(txn, l->seen, &k, &v) == 0 && v.mv_size == 1)
			r = *(char *)v.mv_data;
		rdone(l, txn);
	}
	runlock(l);
	return r;
}

static int l_put(struct bstore *st, const btok *t, const struct bcounts *c, size_t n, long long ns,
		 long long nh)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	MDB_txn *txn;
	int rc = wbegin(l, &txn);
	if (rc < 0)
		return -1;
	for (size_t i = 0; i < n && rc == 0; i++) {
		unsigned char kb[5];
		key_of(t[i], kb);
		MDB_val k = {5, kb}, v = {12, (void *)&c[i]};
		rc = mdb_put(txn, l->tok, &k, &v, 0) ? -1 : 0;
	}
	if (rc == 0 && ns >= 0)
		rc = meta_put(l, txn, "nspam", ns);
	if (rc == 0 && nh >= 0)
		rc = meta_put(l, txn, "nham", nh);
	rc = wdone(l, txn, rc);
	pthread_mutex_unlock(&l->bulk_lock);
	return rc;
}

static long long l_expire(struct bstore *st, uint32_t cutoff)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	MDB_txn *txn;
	MDB_cursor *cur;
	long long r = 0;
	if (wbegin(l, &txn) < 0)
		return -1;
	int rc = mdb_cursor_open(txn, l->tok, &cur) ? -1 : 0;
	MDB_val k, v;
	for (int op = MDB_FIRST; rc == 0 && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
		struct bcounts c;
		val_of(&v, &c);
		if (c.atime < cutoff) {
			rc = mdb_cursor_del(cur, 0) ? -1 : 0;
			r++;
		}
	}
	if (rc == 0)
		mdb_cursor_close(cur);
	rc = wdone(l, txn, rc);
	pthread_mutex_unlock(&l->bulk_lock);
	return rc < 0 ? -1 : r;
}

static int l_each(struct bstore *st, int (*cb)(void *, btok, const struct bcounts *), void *arg)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	rlock(l);
	MDB_txn *txn = NULL;
	MDB_cursor *cur;
	int rc = rtxn(l, &txn);
	if (rc == 0 && mdb_cursor_open(txn, l->tok, &cur) == 0) {
		MDB_val k, v;
		for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
			struct bcounts c;
			val_of(&v, &c);
			if (k.mv_size == 5 && cb(arg, tok_of(k.mv_data), &c))
				break;
		}
		mdb_cursor_close(cur);
	} else if (rc == 0)
		rc = -1;
	if (txn)
		rdone(l, txn);
	runlock(l);
	return rc;
}

static int l_bulk(struct bstore *st, bool on)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	pthread_mutex_lock(&l->bulk_lock);
	int rc = 0;
	if (on && !l->bulk) {
		rc = mdb_txn_begin(l->env, NULL, 0, &l->bulk) ? -1 : 0;
		atomic_store(&l->bulk_mode, rc == 0);
	} else if (!on && l->bulk) {
		rc = mdb_txn_commit(l->bulk) ? -1 : 0;
		l->bulk = NULL;
	}
	l->bulk_n = 0;
	pthread_mutex_unlock(&l->bulk_lock);
	return rc;
}

static void l_close(struct bstore *st)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	l_bulk(st, false);
	mdb_env_close(l->env);
	pthread_mutex_destroy(&l->bulk_lock);
	free(l);
}

static const struct bstore_ops lmdb_ops = {l_totals, l_get,  l_apply, l_seen, l_put,
					   l_expire, l_each, l_close, l_bulk};

struct bstore *bstore_open_lmdb(const char *dir, char **err_r)
{
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		*err_r = xasprintf("%s: %s", dir, strerror(errno));
		return NULL;
	}
	struct lmdb_store *l = xcalloc(1, sizeof(*l));
	l->base.ops = &lmdb_ops;
	pthread_mutex_init(&l->bulk_lock, NULL);
	int e = mdb_env_create(&l->env);
	MDB_txn *txn = NULL;
	if (!e)
		e = mdb_env_set_maxdbs(l->env, 4);
	if (!e)
		e = mdb_env_set_mapsize(l->env, MAP_SIZE);
	if (!e)
		e = mdb_env_set_maxreaders(l->env, 512);
	if (!e)
		e = mdb_env_open(l->env, dir, MDB_NOTLS, 0640);
	if (!e)
		e = mdb_txn_begin(l->env, NULL, 0, &txn);
	if (!e)
		e = mdb_dbi_open(txn, "tok", MDB_CREATE, &l->tok);
	if (!e)
		e = mdb_dbi_open(txn, "seen", MDB_CREATE, &l->seen);
	if (!e)
		e = mdb_dbi_open(txn, "meta", MDB_CREATE, &l->meta);
	if (!e) {
		e = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (e) {
		if (txn)
			mdb_txn_abort(txn);
		*err_r = xasprintf("%s: %s", dir, mdb_strerror(e));
		mdb_env_close(l->env);
		pthread_mutex_destroy(&l->bulk_lock);
		free(l);
		return NULL;
	}
	return &l->base;
}
