/*
 * bayes_lmdb.c - the LMDB Bayes store (see bayes_store.c for the layout).
 * Readers take a read-only transaction per lookup (no lock: LMDB's reader
 * table); writers are serialised by LMDB. Each learned message is one
 * transaction (durable at commit), except in bulk mode where one write
 * transaction holds up to BULK_MAX messages or BULK_MS of writing: a
 * crash then loses at most the uncommitted batch, never the database's
 * consistency. Between batches the bulk learner leaves LMDB's writer lock
 * free until its next write (the next message is read and tokenized
 * first), so that another process's writer (filterd's autolearn) waits
 * about BULK_MS at most, not for the whole learn.
 *
 * The in-memory index: a daemon classifies many messages between writes,
 * and each LMDB lookup is a B-tree descent (about half a microsecond, a
 * few cache misses; a message looks up hundreds of tokens). So the token
 * table is also copied into an open-addressing hash (struct snap, one
 * cache miss per lookup), tagged with the id of the transaction it was
 * read in. A lookup uses the copy only when its own read transaction has
 * that id, so results are always those of the database. This process's
 * own writes (autolearn) are applied to the copy as they commit; another
 * process's (siftctl learn, expiry) leave it stale until it is read again,
 * which happens after SNAP_AFTER lookups on a stale copy and takes at
 * most 1/SNAP_DUTY of the time. A table too large for SNAP_SLOTS_MAX is
 * not copied: lookups then stay in LMDB.
 *
 * One environment per directory and process: LMDB forbids opening an
 * environment twice in one process (its locks on lock.mdb are fcntl locks,
 * which belong to the process: closing any descriptor of the file drops
 * them all, and a second opener re-initialises the reader table the first
 * one uses). A reload of filterd opens the store of the new configuration
 * while the old one is still open, so stores are kept in a registry keyed
 * by the directory's device and inode: an open of a directory this process
 * already has open shares that store (a reference more), and the
 * environment is closed when its last user closes it. A child process
 * (fork) does not share its parent's: it opens its own.
 */
#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bayes.h"
#include "internal.h"

#define MAP_SIZE       (4ull << 30) /* sparse: the file grows with the data */
#define BULK_MAX       2000
#define BULK_MS	       100	  /* a batch's writing: LMDB's writer lock held that long */
#define BULK_PAUSE_US  1000	  /* then a pause: 1% of a bulk learn's time */
#define SNAP_AFTER     16	  /* lookups on a stale copy before it is read again */
#define SNAP_DUTY      50	  /* a copy is read at most every SNAP_DUTY times its cost */
#define SNAP_SLOTS_MAX (1u << 21) /* 32 MiB: about 1.2 million tokens */

/* A copy of the token table at transaction txnid (0: none valid). A slot's
 * key is the token + 1 (0: empty); tokens whose counts fell to 0/0 keep
 * their slot with zeros, which reads as absent. At most 3/4 full. */
struct snap {
	uint64_t txnid;
	size_t mask, used;
	struct snap_slot {
		uint64_t key;
		uint32_t s, h;
	} * slot;
};

struct lmdb_store {
	struct bstore base;
	/* the registry (reg_lock): the directory, this process, its users */
	dev_t dev;
	ino_t ino;
	pid_t pid;
	unsigned refs;
	struct lmdb_store *next;
	MDB_env *env;
	MDB_dbi tok, seen, meta;
	MDB_txn *bulk; /* the open bulk write transaction, or NULL */
	/* set by a bulk learner (siftctl, one thread): readers then share the
	 * bulk transaction under bulk_lock; otherwise (filterd) they take
	 * none and read in parallel */
	_Atomic bool bulk_mode;
	bool bulk_on;  /* in bulk mode (bulk NULL: between two batches) */
	bool bulk_one; /* BSTORE_BULK_ONE: no commit before the end */
	unsigned bulk_n;
	long long bulk_t0; /* when the batch began */
	pthread_mutex_t bulk_lock;
	/* the in-memory index: snap under snap_lock; one reader of the table
	 * at a time (build_lock), not before next_build_ms */
	pthread_rwlock_t snap_lock;
	struct snap *snap;
	pthread_mutex_t build_lock;
	_Atomic unsigned stale_gets;
	_Atomic long long next_build_ms;
	unsigned long sweep_txns; /* write transactions of sweeps (tests) */
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

/* A seen entry's value: 's' or 'h', then the time it was written (uint32,
 * little-endian). Entries written before there was a time are the one
 * octet; l_expire_seen gives them one. */
#define SEEN_VAL 5

static void seen_val(unsigned char v[SEEN_VAL], char what, uint32_t t)
{
	v[0] = (unsigned char)what;
	for (int i = 0; i < 4; i++)
		v[1 + i] = (unsigned char)(t >> (8 * i));
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

static struct snap_slot *snap_find(struct snap *sn, btok t)
{
	uint64_t key = t + 1;
	size_t j = (size_t)t & sn->mask; /* the token is a SHA-1 slice: uniform */
	while (sn->slot[j].key && sn->slot[j].key != key)
		j = (j + 1) & sn->mask;
	return &sn->slot[j];
}

/* Sets a token's counts; false when the copy would be over 3/4 full. */
static bool snap_set(struct snap *sn, btok t, uint32_t s, uint32_t h)
{
	struct snap_slot *x = snap_find(sn, t);
	if (!x->key) {
		if ((sn->used + 1) * 4 > (sn->mask + 1) * 3)
			return false;
		x->key = t + 1;
		sn->used++;
	}
	x->s = s;
	x->h = h;
	return true;
}

static void snap_free(struct snap *sn)
{
	if (sn) {
		free(sn->slot);
		free(sn);
	}
}

/* The token table as txn sees it; NULL when it is too large or on error.
 * Room for a quarter more tokens, for the autolearned ones. */
static struct snap *snap_read(struct lmdb_store *l, MDB_txn *txn)
{
	MDB_stat st;
	if (mdb_stat(txn, l->tok, &st))
		return NULL;
	size_t want = (st.ms_entries + st.ms_entries / 4 + 1024) * 4 / 3, n = 1024;
	while (n < want && n < SNAP_SLOTS_MAX)
		n *= 2;
	if (n < want)
		return NULL;
	struct snap *sn = xcalloc(1, sizeof(*sn));
	sn->slot = calloc(n, sizeof(*sn->slot));
	sn->mask = n - 1;
	sn->txnid = mdb_txn_id(txn);
	MDB_cursor *cur;
	if (!sn->slot || mdb_cursor_open(txn, l->tok, &cur)) {
		snap_free(sn);
		return NULL;
	}
	MDB_val k, v;
	bool ok = true;
	for (int op = MDB_FIRST; ok && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
		struct bcounts c;
		val_of(&v, &c);
		if (k.mv_size == 5)
			ok = snap_set(sn, tok_of(k.mv_data), c.s, c.h);
	}
	mdb_cursor_close(cur);
	if (!ok) {
		snap_free(sn);
		return NULL;
	}
	return sn;
}

/* After a lookup in LMDB (no valid copy for txn): reads the table again
 * when the copy has been stale for SNAP_AFTER lookups and the last read
 * was long enough ago; one thread at a time, the others go on in LMDB. */
static void snap_refresh(struct lmdb_store *l, MDB_txn *txn)
{
	if (atomic_fetch_add(&l->stale_gets, 1) + 1 < SNAP_AFTER ||
	    now_ms() < atomic_load(&l->next_build_ms) || pthread_mutex_trylock(&l->build_lock))
		return;
	long long t0 = now_ms();
	struct snap *sn = snap_read(l, txn), *old;
	long long t1 = now_ms();
	pthread_rwlock_wrlock(&l->snap_lock);
	old = l->snap;
	l->snap = sn;
	pthread_rwlock_unlock(&l->snap_lock);
	snap_free(old);
	atomic_store(&l->stale_gets, 0);
	/* too large: try again in a minute (the table may have shrunk) */
	atomic_store(&l->next_build_ms, t1 + (sn ? (t1 - t0 + 1) * SNAP_DUTY : 60000));
	pthread_mutex_unlock(&l->build_lock);
}

/* Counts of n tokens from the copy when it is of txn's transaction. */
static bool snap_get(struct lmdb_store *l, MDB_txn *txn, const btok *t, size_t n, struct bcounts *out)
{
	uint64_t id = mdb_txn_id(txn);
	pthread_rwlock_rdlock(&l->snap_lock);
	struct snap *sn = l->snap;
	bool hit = sn && sn->txnid == id;
	for (size_t i = 0; hit && i < n; i++) {
		const struct snap_slot *x = snap_find(sn, t[i]);
		out[i] = (struct bcounts){x->s, x->h, 0};
	}
	pthread_rwlock_unlock(&l->snap_lock);
	return hit;
}

/* After this process's write transaction txnid committed, with the new
 * counts of n tokens: the copy of txnid - 1 becomes the copy of txnid.
 * Only after a transaction that wrote: one that changed nothing commits
 * nothing (txnid - 1 stays the last), and a copy marked txnid would then
 * never be used again (and another writer's txnid would not be its). */
static void snap_update(struct lmdb_store *l, uint64_t txnid, const btok *t, const struct bcounts *c,
			size_t n)
{
	pthread_rwlock_wrlock(&l->snap_lock);
	struct snap *sn = l->snap;
	if (sn && sn->txnid == txnid - 1) {
		bool ok = true;
		for (size_t i = 0; ok && i < n; i++)
			ok = snap_set(sn, t[i], c[i].s, c[i].h);
		sn->txnid = ok ? txnid : 0;
	}
	pthread_rwlock_unlock(&l->snap_lock);
}

/* In key order: neighbouring lookups share the B-tree's upper pages in
 * the cache. */
static int l_get(struct bstore *st, const btok *t, size_t n, struct bcounts *out)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	rlock(l);
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	int r = rtxn(l, &txn);
	if (r == 0 && txn != l->bulk && snap_get(l, txn, t, n, out)) {
		rdone(l, txn);
		runlock(l);
		return 0;
	}
	struct tokidx *ix = xmalloc((2 * n + 1) * sizeof(*ix));
	for (size_t i = 0; i < n; i++)
		ix[i] = (struct tokidx){t[i], i};
	tokidx_sort(ix, ix + n, n);
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
	if (r == 0 && txn != l->bulk)
		snap_refresh(l, txn);
	if (txn)
		rdone(l, txn);
	free(ix);
	runlock(l);
	return r;
}

/* A write transaction: the bulk one (begun for the next batch when
 * needed) or a new one. */
static int wtxn(struct lmdb_store *l, MDB_txn **txn)
{
	if (l->bulk_on && !l->bulk) {
		if (mdb_txn_begin(l->env, NULL, 0, &l->bulk))
			return -1;
		l->bulk_t0 = now_ms();
	}
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

/* Commits txn unless it is the bulk one (then every BULK_MAX messages or
 * BULK_MS; the next batch begins with the next write). */
static int wdone(struct lmdb_store *l, MDB_txn *txn, int rc)
{
	if (txn != l->bulk) {
		if (rc < 0) {
			mdb_txn_abort(txn);
			return -1;
		}
		return mdb_txn_commit(txn) ? -1 : 0;
	}
	if (rc < 0 || l->bulk_one || (++l->bulk_n < BULK_MAX && now_ms() - l->bulk_t0 < BULK_MS))
		return rc;
	l->bulk_n = 0;
	l->bulk = NULL;
	rc = mdb_txn_commit(txn) ? -1 : 0;
	/* a writer waiting for the lock gets it (LMDB's lock is not fair:
	 * the next batch could take it again at once) */
	usleep(BULK_PAUSE_US);
	return rc;
}

/* One token's count changed; its new counts in *nc (0/0: deleted). */
static int tok_add(struct lmdb_store *l, MDB_txn *txn, btok t, bool spam, int sign, uint32_t atime,
		   struct bcounts *nc)
{
	unsigned char kb[5];
	key_of(t, kb);
	MDB_val k = {5, kb}, v;
	struct bcounts c = {0, 0, 0};
	*nc = c;
	if (mdb_get(txn, l->tok, &k, &v) == 0)
		val_of(&v, &c);
	else if (sign < 0)
		return 0;
	uint32_t *x = spam ? &c.s : &c.h;
	*x = sign < 0 && *x == 0 ? 0 : *x + (uint32_t)sign;
	if (sign > 0 && atime > c.atime) /* never rolled back, as SpamAssassin */
		c.atime = atime;
	*nc = c;
	if (!c.s && !c.h) {
		int e = mdb_del(txn, l->tok, &k, NULL);
		return e && e != MDB_NOTFOUND ? -1 : 0;
	}
	MDB_val nv = {12, &c};
	return mdb_put(txn, l->tok, &k, &nv, 0) ? -1 : 0;
}

static int l_apply(struct bstore *st, const btok *t, size_t n, bool spam, int sign, uint32_t atime,
		   const char *msgid, char what, int expect)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	MDB_txn *txn, *bulk = NULL;
	int rc = wbegin(l, &txn);
	if (rc < 0)
		return -1;
	/* in bulk mode, the message in a nested transaction: a message that
	 * fails leaves the others of the batch, and nothing of its own */
	if (txn == l->bulk) {
		bulk = txn;
		if (mdb_txn_begin(l->env, bulk, 0, &txn)) {
			pthread_mutex_unlock(&l->bulk_lock);
			return -1;
		}
	}
	/* an autolearn called off while this waited for the writer lock */
	if (!bstore_gate()) {
		mdb_txn_abort(txn);
		pthread_mutex_unlock(&l->bulk_lock);
		return BSTORE_CALLED_OFF;
	}
	if (expect != BSTORE_ANY && msgid && *msgid) {
		/* the one writer: what another process wrote since the caller
		 * read the entry is here */
		MDB_val k = {strlen(msgid), (void *)msgid}, v;
		int cur = mdb_get(txn, l->seen, &k, &v) == 0 && v.mv_size >= 1 ? *(char *)v.mv_data : 0;
		if (cur != expect) {
			mdb_txn_abort(txn);
			pthread_mutex_unlock(&l->bulk_lock);
			return 1;
		}
	}
	struct bcounts *nc = xmalloc((n + 1) * sizeof(*nc));
	size_t done = 0;
	for (; done < n && sign && rc == 0; done++)
		rc = tok_add(l, txn, t[done], spam, sign, atime, &nc[done]);
	if (rc == 0 && sign) {
		const char *name = spam ? "nspam" : "nham";
		rc = meta_put(l, txn, name, meta_get(l, txn, name) + sign);
	}
	if (rc == 0 && msgid && *msgid) {
		unsigned char sv[SEEN_VAL];
		seen_val(sv, what, (uint32_t)time(NULL)); /* when learned: bayes_seen_ttl */
		MDB_val k = {strlen(msgid), (void *)msgid}, v = {SEEN_VAL, sv};
		int e = what ? mdb_put(txn, l->seen, &k, &v, 0) : mdb_del(txn, l->seen, &k, NULL);
		rc = e && e != MDB_NOTFOUND ? -1 : 0;
	}
	if (bulk) {
		if (rc == 0 && mdb_txn_commit(txn))
			rc = -1;
		else if (rc < 0)
			mdb_txn_abort(txn);
		txn = bulk;
	}
	bool own = txn != l->bulk;
	uint64_t id = mdb_txn_id(txn);
	rc = wdone(l, txn, rc);
	if (rc == 0 && own)
		snap_update(l, id, t, nc, done);
	pthread_mutex_unlock(&l->bulk_lock);
	free(nc);
	return rc;
}

/* Scans used n tokens: each present one's atime raised to atime[i]. The
 * counts do not change, so the in-memory copy follows the commit. */
static int l_touch(struct bstore *st, const btok *t, const uint32_t *atime, size_t n)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	MDB_txn *txn;
	if (wbegin(l, &txn) < 0)
		return -1;
	int rc = 0;
	size_t written = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		unsigned char kb[5];
		key_of(t[i], kb);
		MDB_val k = {5, kb}, v;
		struct bcounts c;
		if (mdb_get(txn, l->tok, &k, &v) != 0)
			continue; /* expired or forgotten since */
		val_of(&v, &c);
		if (atime[i] <= c.atime)
			continue;
		c.atime = atime[i];
		MDB_val nv = {12, &c};
		rc = mdb_put(txn, l->tok, &k, &nv, 0) ? -1 : 0;
		written++;
	}
	bool own = txn != l->bulk;
	uint64_t id = mdb_txn_id(txn);
	rc = wdone(l, txn, rc);
	if (rc == 0 && own && written)
		snap_update(l, id, NULL, NULL, 0);
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
		if (*msgid && mdb_get(txn, l->seen, &k, &v) == 0 && v.mv_size >= 1)
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

/* What a sweep does with one entry. */
enum sweep { SWEEP_KEEP, SWEEP_DEL, SWEEP_PUT };

/* Entries a sweep walks per write transaction: the writer lock is let go
 * between two (a whole table of 100,000s of seen entries or tokens in one
 * transaction would hold every learner and autolearn of every process
 * back for as long). */
#define SWEEP_CHUNK 1000

/* Walks table dbi, SWEEP_CHUNK entries per write transaction; decide()
 * says of each value whether the entry stays, goes, or takes the value it
 * sets in *nv. Entries deleted, or -1. */
static long long sweep(struct lmdb_store *l, MDB_dbi dbi,
		       enum sweep (*decide)(const MDB_val *v, void *arg, MDB_val *nv), void *arg)
{
	long long r = 0;
	/* where the next transaction goes on: the key after the last one
	 * walked (keys are at most LMDB's 511 octets; a longer one, cut,
	 * makes the next chunk walk some entries again, which decides the
	 * same) */
	unsigned char last[512];
	size_t nlast = 0;
	bool started = false, more = true;
	while (more) {
		MDB_txn *txn;
		MDB_cursor *cur;
		if (wbegin(l, &txn) < 0)
			return -1;
		l->sweep_txns++;
		more = false;
		int rc = mdb_cursor_open(txn, dbi, &cur) ? -1 : 0;
		MDB_val k = {nlast, last}, v, nv;
		int got =
			rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, started ? MDB_SET_RANGE : MDB_FIRST);
		if (got == 0 && started && k.mv_size == nlast && memcmp(k.mv_data, last, nlast) == 0)
			got = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		for (int n = 0; rc == 0 && got == 0; got = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (n++ == SWEEP_CHUNK) {
				more = true;
				break;
			}
			nlast = k.mv_size < sizeof(last) ? k.mv_size : sizeof(last);
			memcpy(last, k.mv_data, nlast);
			started = true;
			switch (decide(&v, arg, &nv)) {
			case SWEEP_DEL:
				rc = mdb_cursor_del(cur, 0) ? -1 : 0;
				r++;
				break;
			case SWEEP_PUT:
				rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT) ? -1 : 0;
				break;
			case SWEEP_KEEP:
				break;
			}
		}
		if (rc == 0)
			mdb_cursor_close(cur);
		rc = wdone(l, txn, rc);
		pthread_mutex_unlock(&l->bulk_lock);
		if (rc < 0)
			return -1;
	}
	return r;
}

static enum sweep token_old(const MDB_val *v, void *arg, MDB_val *nv)
{
	(void)nv;
	struct bcounts c;
	val_of(v, &c);
	return c.atime < *(const uint32_t *)arg ? SWEEP_DEL : SWEEP_KEEP;
}

static long long l_expire(struct bstore *st, uint32_t cutoff)
{
	return sweep((struct lmdb_store *)st, ((struct lmdb_store *)st)->tok, token_old, &cutoff);
}

struct seen_sweep {
	uint32_t now, ttl;
	unsigned char sv[SEEN_VAL];
};

/* The seen entries written before now - ttl go; the ones without a time
 * (written before seen entries had one) are given now: they then live a
 * whole ttl from this pass, never less than from their learning. */
static enum sweep seen_old(const MDB_val *v, void *arg, MDB_val *nv)
{
	struct seen_sweep *a = arg;
	const unsigned char *p = v->mv_data;
	if (v->mv_size < SEEN_VAL) {
		seen_val(a->sv, v->mv_size ? (char)p[0] : 0, a->now);
		*nv = (MDB_val){SEEN_VAL, a->sv};
		return SWEEP_PUT;
	}
	uint32_t t = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 | (uint32_t)p[4] << 24;
	return t < a->now && a->now - t > a->ttl ? SWEEP_DEL : SWEEP_KEEP;
}

static long long l_expire_seen(struct bstore *st, uint32_t now, uint32_t ttl)
{
	struct seen_sweep a = {.now = now, .ttl = ttl};
	return sweep((struct lmdb_store *)st, ((struct lmdb_store *)st)->seen, seen_old, &a);
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

static int l_bulk(struct bstore *st, int mode)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	pthread_mutex_lock(&l->bulk_lock);
	int rc = 0;
	if ((mode == BSTORE_BULK_BATCHES || mode == BSTORE_BULK_ONE) && !l->bulk_on) {
		rc = mdb_txn_begin(l->env, NULL, 0, &l->bulk) ? -1 : 0;
		atomic_store(&l->bulk_mode, rc == 0);
		l->bulk_on = rc == 0;
		l->bulk_one = mode == BSTORE_BULK_ONE;
		l->bulk_t0 = now_ms();
	} else if (mode == BSTORE_BULK_COMMIT || mode == BSTORE_BULK_ABORT) {
		if (l->bulk && mode == BSTORE_BULK_COMMIT)
			rc = mdb_txn_commit(l->bulk) ? -1 : 0;
		else if (l->bulk)
			mdb_txn_abort(l->bulk);
		l->bulk = NULL;
		l->bulk_on = false;
	}
	l->bulk_n = 0;
	pthread_mutex_unlock(&l->bulk_lock);
	return rc;
}

/* The open stores of this process (and, after a fork, of its parent:
 * those are skipped), by directory. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lmdb_store *reg_list;

static void l_free(struct lmdb_store *l)
{
	mdb_env_close(l->env);
	pthread_mutex_destroy(&l->bulk_lock);
	snap_free(l->snap);
	pthread_rwlock_destroy(&l->snap_lock);
	pthread_mutex_destroy(&l->build_lock);
	free(l);
}

static void l_close(struct bstore *st)
{
	struct lmdb_store *l = (struct lmdb_store *)st;
	pthread_mutex_lock(&reg_lock);
	if (--l->refs > 0) {
		pthread_mutex_unlock(&reg_lock);
		return;
	}
	for (struct lmdb_store **pp = &reg_list; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	pthread_mutex_unlock(&reg_lock);
	l_bulk(st, BSTORE_BULK_COMMIT);
	l_free(l);
}

/* The number of users of dir's store in this process (0: not open). */
unsigned bstore_lmdb_users(const char *dir)
{
	struct stat sb;
	unsigned n = 0;
	if (stat(dir, &sb) < 0)
		return 0;
	pthread_mutex_lock(&reg_lock);
	for (struct lmdb_store *l = reg_list; l; l = l->next)
		if (l->dev == sb.st_dev && l->ino == sb.st_ino && l->pid == getpid())
			n = l->refs;
	pthread_mutex_unlock(&reg_lock);
	return n;
}

static const struct bstore_ops lmdb_ops = {.totals = l_totals,
					   .get = l_get,
					   .apply = l_apply,
					   .seen = l_seen,
					   .put = l_put,
					   .expire = l_expire,
					   .expire_seen = l_expire_seen,
					   .each = l_each,
					   .close = l_close,
					   .bulk = l_bulk,
					   .touch = l_touch,
					   .gates = true};

static struct bstore *lmdb_open(const char *dir, char **err_r);

/* Run as root (an administrator's `siftctl spam learn`), the store would
 * be created root's, 0750 and 0640, and filterd, running as its own user,
 * could not open it: Bayes off. So root gives the store's directory and
 * files that root owns to the owner of the directory that holds it (the
 * daemon's state directory, /var/lib/sift), when that is not root; never
 * through a symbolic link. */
static void adopt_owner(const char *dir)
{
	if (geteuid() != 0)
		return;
	char *parent = xstrdup(dir);
	char *slash = strrchr(parent, '/');
	while (slash && slash > parent && slash[1] == 0) { /* "a/b/" */
		*slash = 0;
		slash = strrchr(parent, '/');
	}
	if (!slash)
		strcpy(parent, ".");
	else
		slash[slash == parent] = 0;
	struct stat ps;
	if (stat(parent, &ps) == 0 && ps.st_uid != 0) {
		static const char *const names[] = {"", "/data.mdb", "/lock.mdb"};
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			char *path = xasprintf("%s%s", dir, names[i]);
			struct stat st;
			if (lstat(path, &st) == 0 && st.st_uid == 0 && !S_ISLNK(st.st_mode) &&
			    fchownat(AT_FDCWD, path, ps.st_uid, ps.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
				fprintf(stderr, "warning: %s: chown to the owner of %s: %s\n", path, parent,
					strerror(errno));
			free(path);
		}
	}
	free(parent);
}

struct bstore *bstore_open_lmdb(const char *dir, char **err_r)
{
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		*err_r = xasprintf("%s: %s", dir, strerror(errno));
		return NULL;
	}
	struct stat sb;
	if (stat(dir, &sb) < 0) {
		*err_r = xasprintf("%s: %s", dir, strerror(errno));
		return NULL;
	}
	pid_t pid = getpid();
	pthread_mutex_lock(&reg_lock);
	for (struct lmdb_store *x = reg_list; x; x = x->next)
		if (x->dev == sb.st_dev && x->ino == sb.st_ino && x->pid == pid) {
			x->refs++;
			pthread_mutex_unlock(&reg_lock);
			return &x->base;
		}
	struct bstore *st = lmdb_open(dir, err_r);
	if (st) {
		adopt_owner(dir);
		struct lmdb_store *l = (struct lmdb_store *)st;
		l->dev = sb.st_dev;
		l->ino = sb.st_ino;
		l->pid = pid;
		l->refs = 1;
		l->next = reg_list;
		reg_list = l;
	}
	pthread_mutex_unlock(&reg_lock);
	return st;
}

/* A new environment on dir (held: reg_lock). */
static struct bstore *lmdb_open(const char *dir, char **err_r)
{
	struct lmdb_store *l = xcalloc(1, sizeof(*l));
	l->base.ops = &lmdb_ops;
	l->base.touches = true;
	pthread_mutex_init(&l->bulk_lock, NULL);
	pthread_rwlock_init(&l->snap_lock, NULL);
	pthread_mutex_init(&l->build_lock, NULL);
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
	if (!e && mdb_env_get_maxkeysize(l->env) < BAYES_SEEN_ID_MAX)
		e = MDB_BAD_VALSIZE; /* an LMDB built with shorter keys */
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
		l_free(l);
		return NULL;
	}
	return &l->base;
}
