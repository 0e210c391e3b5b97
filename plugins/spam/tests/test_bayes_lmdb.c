/*
 * test_bayes_lmdb.c - the LMDB Bayes store's in-memory index: every lookup
 * gives what the database holds, whether it is answered from the copy or
 * from LMDB, while this process learns and forgets (the copy follows its
 * commits), while another process writes (the copy is stale and not used,
 * then read again), and when the table outgrows the copy. The memory
 * store, given the same operations, is the reference. Then three threads
 * read one message's tokens while it is learned again and again: every
 * read must see one whole transaction. Last, eight threads learn the same
 * messages at once (bayes_learn, both stores): each is counted once.
 * And the registry: a directory opened twice in one process (a reload)
 * shares one environment, whose lock on lock.mdb stays until the last
 * user closes it. Then message ids longer than LMDB's keys: learned,
 * skipped and forgotten under their hash, in every store, and in bulk
 * mode a message that fails leaves nothing of itself in the batch. Last, a
 * bulk learner lets another process's writer in between its batches, and
 * autolearn gives up on a store whose writer lock another process holds,
 * and what it gave up is never learned.
 * And seen entries expire after their TTL, the ones of the old format too.
 */
#include <pthread.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bayes.c"
#include "../bayes_lmdb.c"

static int failures, checks;

/* engine.c's, which this test does not link */
char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

#define CHECK(c, ...)                                                   \
	do {                                                            \
		checks++;                                               \
		if (!(c)) {                                             \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                   \
			fputc('\n', stderr);                            \
			failures++;                                     \
		}                                                       \
	} while (0)

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

#define NTOK 20000
static btok pool[NTOK]; /* the tokens the test draws from */

static void draw(btok *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		t[i] = pool[rnd() % NTOK];
}

/* n lookups of the same tokens in both stores agree (counts; the copy
 * does not keep atime). */
static bool same(struct bstore *db, struct bstore *ref, const btok *t, size_t n)
{
	struct bcounts a[512], b[512];
	if (db->ops->get(db, t, n, a) < 0 || ref->ops->get(ref, t, n, b) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (a[i].s != b[i].s || a[i].h != b[i].h)
			return false;
	return true;
}

/* The copy is of the database's current transaction (a lookup now uses it). */
static bool copy_current(struct lmdb_store *l)
{
	MDB_txn *txn;
	if (mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn))
		return false;
	uint64_t id = mdb_txn_id(txn);
	mdb_txn_abort(txn);
	return l->snap && l->snap->txnid == id;
}

/* Lookups until the copy is read (SNAP_AFTER stale lookups, no wait). */
static void lookups(struct bstore *db, struct bstore *ref, int rounds, const char *what)
{
	struct lmdb_store *l = (struct lmdb_store *)db;
	bool ok = true;
	for (int r = 0; r < rounds; r++) {
		btok t[400];
		draw(t, 400);
		atomic_store(&l->next_build_ms, 0);
		ok = ok && same(db, ref, t, 400);
	}
	CHECK(ok, "%s: lookups give the database's counts", what);
}

static void learn(struct bstore *db, struct bstore *ref, int sign, bool spam, size_t n, const char *id)
{
	btok t[512];
	draw(t, n);
	/* a message's tokens are distinct */
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		bool dup = false;
		for (size_t j = 0; j < m && !dup; j++)
			dup = t[j] == t[i];
		if (!dup)
			t[m++] = t[i];
	}
	CHECK(db->ops->apply(db, t, m, spam, sign, 1700000000, id, sign > 0 ? (spam ? 's' : 'h') : 0,
			     BSTORE_ANY) == 0 &&
		      ref->ops->apply(ref, t, m, spam, sign, 1700000000, id,
				      sign > 0 ? (spam ? 's' : 'h') : 0, BSTORE_ANY) == 0,
	      "apply %s", id);
	/* the message's own tokens read back at once */
	CHECK(same(db, ref, t, m), "%s: its tokens read back", id);
}

/* Threads reading while this process learns: one message's tokens, learned
 * again and again, must always read back with equal counts (each read sees
 * one whole transaction, from the copy or from LMDB). */
#define RACE_TOKENS 256
#define RACE_LEARNS 300
static btok race_tok[RACE_TOKENS];
static _Atomic bool race_stop;
static _Atomic int race_torn, race_reads;

static void *race_reader(void *arg)
{
	struct bstore *db = arg;
	struct lmdb_store *l = arg;
	struct bcounts c[RACE_TOKENS];
	while (!atomic_load(&race_stop)) {
		atomic_store(&l->next_build_ms, 0); /* read the copy again whenever it is stale */
		if (db->ops->get(db, race_tok, RACE_TOKENS, c) < 0) {
			atomic_fetch_add(&race_torn, 1);
			continue;
		}
		atomic_fetch_add(&race_reads, 1);
		for (size_t i = 1; i < RACE_TOKENS; i++)
			if (c[i].s != c[0].s || c[i].h != c[0].h) {
				atomic_fetch_add(&race_torn, 1);
				break;
			}
	}
	return NULL;
}

static void race(struct bstore *db)
{
	for (size_t i = 0; i < RACE_TOKENS; i++)
		race_tok[i] = ((rnd() & 0xffffffffffull) | 1) ^ 0x5a5a5a5a5aull;
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, race_reader, db);
	bool ok = true;
	for (int i = 0; i < RACE_LEARNS && ok; i++) {
		char id[32];
		snprintf(id, sizeof(id), "<race%d@test>", i);
		ok = db->ops->apply(db, race_tok, RACE_TOKENS, i % 2 == 0, +1, 1700000003, id,
				    i % 2 == 0 ? 's' : 'h', BSTORE_ANY) == 0;
	}
	atomic_store(&race_stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK(ok, "learning while threads read");
	CHECK(atomic_load(&race_reads) > 100, "the threads read (%d reads)", atomic_load(&race_reads));
	CHECK(atomic_load(&race_torn) == 0, "every read saw one whole transaction (%d did not, of %d)",
	      atomic_load(&race_torn), atomic_load(&race_reads));
	struct bcounts c[RACE_TOKENS];
	CHECK(db->ops->get(db, race_tok, RACE_TOKENS, c) == 0 && c[0].s == RACE_LEARNS / 2 &&
		      c[0].h == RACE_LEARNS / 2,
	      "the counts after the race");
}

/* One message sent as several SMTP transactions is autolearned by several
 * workers at the same moment: "already learned?" and the counts must be
 * one step, or each worker counts it. */
#define LEARNERS  8
#define LEARN_MSG 100
static struct bayes *learn_b;
static struct btoks learn_toks;
static pthread_barrier_t learn_bar;
static _Atomic int learn_done, learn_errors;

static void *learner(void *arg)
{
	(void)arg;
	for (int i = 0; i < LEARN_MSG; i++) {
		char id[32];
		snprintf(id, sizeof(id), "<same%d@test>", i);
		pthread_barrier_wait(&learn_bar);
		int rc = bayes_learn(learn_b, &learn_toks, id, true, false);
		if (rc < 0)
			learn_errors++;
		else
			learn_done += rc;
	}
	return NULL;
}

static void learn_together(struct bstore *st, const char *what)
{
	struct bayes b = {.st = st, .o = {.min_spam_num = 1, .min_ham_num = 1}};
	pthread_mutex_init(&b.learn_lock, NULL);
	static btok v[50];
	draw(v, 50);
	learn_toks = (struct btoks){.v = v, .n = 50};
	learn_b = &b;
	learn_done = learn_errors = 0;
	long long ns0 = 0, nh0 = 0, nt0 = 0, ns = 0, nh = 0, nt = 0;
	st->ops->totals(st, &ns0, &nh0, &nt0);
	pthread_barrier_init(&learn_bar, NULL, LEARNERS);
	pthread_t th[LEARNERS];
	for (int i = 0; i < LEARNERS; i++)
		pthread_create(&th[i], NULL, learner, NULL);
	for (int i = 0; i < LEARNERS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&learn_bar);
	st->ops->totals(st, &ns, &nh, &nt);
	CHECK(learn_errors == 0 && learn_done == LEARN_MSG && ns - ns0 == LEARN_MSG,
	      "%s: %d messages learned by %d threads at once: %d learned, %lld counted (%d errors)", what,
	      LEARN_MSG, LEARNERS, (int)learn_done, ns - ns0, (int)learn_errors);
	pthread_mutex_destroy(&b.learn_lock);
}

/* The same across processes (two filterd on one host, or siftctl while
 * filterd autolearns): the store reads the seen entry again in its write
 * transaction. */
#define PROCS 4

static void learn_processes(struct bstore *st, const char *dir)
{
	struct shared {
		pthread_barrier_t bar;
		int learned[PROCS], errors[PROCS];
	} *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		CHECK(false, "mmap");
		return;
	}
	memset(sh, 0, sizeof(*sh));
	pthread_barrierattr_t ba;
	pthread_barrierattr_init(&ba);
	pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
	pthread_barrier_init(&sh->bar, &ba, PROCS);
	static btok v[50];
	draw(v, 50);
	long long ns0 = 0, nh0 = 0, nt0 = 0, ns = 0, nh = 0, nt = 0;
	st->ops->totals(st, &ns0, &nh0, &nt0);
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		if (pids[p] != 0)
			continue;
		char *e = NULL;
		struct bstore *own = bstore_open_lmdb(dir, &e);
		struct bayes b = {.st = own, .o = {.min_spam_num = 1, .min_ham_num = 1}};
		pthread_mutex_init(&b.learn_lock, NULL);
		struct btoks toks = {.v = v, .n = 50};
		for (int i = 0; i < LEARN_MSG; i++) {
			char id[32];
			snprintf(id, sizeof(id), "<proc%d@test>", i);
			pthread_barrier_wait(&sh->bar);
			int rc = own ? bayes_learn(&b, &toks, id, true, false) : -1;
			if (rc < 0)
				sh->errors[p]++;
			else
				sh->learned[p] += rc;
		}
		if (own)
			own->ops->close(own);
		_exit(0);
	}
	int learned = 0, errors = 0;
	for (int p = 0; p < PROCS; p++) {
		int status;
		if (pids[p] < 0 || waitpid(pids[p], &status, 0) != pids[p] || !WIFEXITED(status))
			errors++;
		learned += sh->learned[p];
		errors += sh->errors[p];
	}
	st->ops->totals(st, &ns, &nh, &nt);
	CHECK(errors == 0 && learned == LEARN_MSG && ns - ns0 == LEARN_MSG,
	      "lmdb: %d messages learned by %d processes at once: %d learned, %lld counted (%d errors)",
	      LEARN_MSG, PROCS, learned, ns - ns0, errors);
	pthread_barrier_destroy(&sh->bar);
	munmap(sh, sizeof(*sh));
}

/* Whether another process could take LMDB's exclusive lock on dir's
 * lock.mdb (the lock an opener takes to initialise the reader table): not
 * while this process has the environment open. */
static bool excl_free(const char *dir)
{
	pid_t pid = fork();
	if (pid == 0) {
		char path[512];
		snprintf(path, sizeof(path), "%s/lock.mdb", dir);
		int fd = open(path, O_RDWR);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
		_exit(fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0 ? 0 : 1);
	}
	int status = 0;
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A reload: the new configuration opens the directory (by another name
 * too) while the old one has it open, then the old one closes it. */
static void registry(const char *top)
{
	char dir[512], alias[600];
	snprintf(dir, sizeof(dir), "%s/reg", top);
	snprintf(alias, sizeof(alias), "%s/../reg/.", dir);
	char *err = NULL;
	struct bstore *a = bstore_open_lmdb(dir, &err);
	CHECK(a && bstore_lmdb_users(dir) == 1, "registry: open (%s)", err ? err : "");
	if (!a)
		return;
	CHECK(!excl_free(dir), "registry: the lock on lock.mdb is held while open");
	struct bstore *b = bstore_open_lmdb(alias, &err);
	CHECK(b == a && bstore_lmdb_users(dir) == 2,
	      "registry: a second open of the directory shares the store");
	btok t[3] = {11, 22, 33};
	CHECK(a->ops->apply(a, t, 3, true, +1, 1700000000, "<reg@test>", 's', BSTORE_ANY) == 0,
	      "registry: learn");
	a->ops->close(a); /* the old generation goes */
	CHECK(bstore_lmdb_users(dir) == 1, "registry: one user left");
	CHECK(!excl_free(dir), "registry: the lock on lock.mdb is still held after the first close");
	long long ns = 0, nh = 0, nt = 0;
	struct bcounts c[3];
	CHECK(b && b->ops->totals(b, &ns, &nh, &nt) == 0 && ns == 1 && nt == 3 &&
		      b->ops->get(b, t, 3, c) == 0 && c[2].s == 1,
	      "registry: the remaining user reads the store (%lld spam, %lld tokens)", ns, nt);
	/* another process opens, learns and closes meanwhile */
	pid_t pid = fork();
	if (pid == 0) {
		char *e = NULL;
		struct bstore *o = bstore_open_lmdb(dir, &e);
		int rc = o && o->ops->apply(o, t, 3, false, +1, 1700000000, "<reg2@test>", 'h', BSTORE_ANY) ==
						 0
				 ? 0
				 : 1;
		if (o)
			o->ops->close(o);
		_exit(rc);
	}
	int status = 0;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "registry: another process learns");
	CHECK(b->ops->totals(b, &ns, &nh, &nt) == 0 && ns == 1 && nh == 1, "registry: its learning is read");
	b->ops->close(b);
	CHECK(bstore_lmdb_users(dir) == 0 && excl_free(dir),
	      "registry: the last close closes the environment");
}

/* Message ids over LMDB's key limit. */
static void long_ids(const char *top, struct bstore *mem)
{
	char dir[512], id[700], id2[700];
	snprintf(dir, sizeof(dir), "%s/long", top);
	memset(id, 'x', 600);
	memcpy(id, "<", 1);
	strcpy(id + 600, "@long.test>");
	strcpy(id2, id);
	id2[1] = 'y';
	char *a = bayes_seen_id(id), *b = bayes_seen_id(id2), *c = bayes_seen_id("<short@test>");
	memset(id2, 'z', BAYES_SEEN_ID_MAX);
	id2[BAYES_SEEN_ID_MAX] = 0;
	char *d = bayes_seen_id(id2);
	CHECK(strlen(a) == 53 && strcmp(a + 40, "@sift_long_id") == 0 && strcmp(a, b) != 0 &&
		      strcmp(c, "<short@test>") == 0 && strcmp(d, id2) == 0,
	      "seen ids: a long one hashed (%s), a short one and one of %d kept", a, BAYES_SEEN_ID_MAX);
	free(a);
	free(b);
	free(c);
	free(d);

	char *err = NULL;
	struct bstore *st = bstore_open_lmdb(dir, &err);
	CHECK(st != NULL, "long ids: open (%s)", err ? err : "");
	if (!st)
		return;
	btok t[3] = {101, 202, 303};
	long long ns = 0, nh = 0, nt = 0;
	struct bcounts cnt[3];
	/* in bulk mode, the store itself given a key LMDB refuses: that
	 * message fails, the ones around it stay */
	CHECK(st->ops->bulk(st, BSTORE_BULK_BATCHES) == 0, "bulk on");
	int r1 = st->ops->apply(st, t, 3, true, +1, 1700000000, "<before@test>", 's', 0);
	int r2 = st->ops->apply(st, t, 3, true, +1, 1700000000, id, 's', 0);
	int r3 = st->ops->apply(st, t, 3, true, +1, 1700000000, "<after@test>", 's', 0);
	CHECK(r1 == 0 && r2 < 0 && r3 == 0, "bulk: a key too long fails that message only (%d %d %d)", r1, r2,
	      r3);
	CHECK(st->ops->bulk(st, BSTORE_BULK_COMMIT) == 0, "bulk off");
	CHECK(st->ops->totals(st, &ns, &nh, &nt) == 0 && ns == 2 && st->ops->get(st, t, 3, cnt) == 0 &&
		      cnt[0].s == 2 && cnt[1].s == 2 && cnt[2].s == 2,
	      "bulk: the failed message left no counts (%lld spam, token counts %u %u %u)", ns, cnt[0].s,
	      cnt[1].s, cnt[2].s);

	/* bayes_learn: the long id is learned, then skipped, then forgotten,
	 * in bulk mode and not, in LMDB and in the memory store */
	struct bstore *stores[2] = {st, mem};
	for (int k = 0; k < 2; k++)
		for (int bulk = 0; bulk < 2; bulk++) {
			struct bstore *x = stores[k];
			if (bulk && !x->ops->bulk)
				continue;
			struct bayes by = {.st = x, .o = {.min_spam_num = 1, .min_ham_num = 1}};
			pthread_mutex_init(&by.learn_lock, NULL);
			struct btoks toks = {.v = t, .n = 3};
			long long ns0 = 0;
			x->ops->totals(x, &ns0, &nh, &nt);
			if (bulk)
				x->ops->bulk(x, BSTORE_BULK_BATCHES);
			int l1 = bayes_learn(&by, &toks, id, true, false);
			int l2 = bayes_learn(&by, &toks, id, true, false);
			if (bulk)
				x->ops->bulk(x, BSTORE_BULK_COMMIT);
			x->ops->totals(x, &ns, &nh, &nt);
			long long ns1 = ns;
			if (bulk)
				x->ops->bulk(x, BSTORE_BULK_BATCHES);
			int f1 = bayes_learn(&by, &toks, id, true, true);
			int f2 = bayes_learn(&by, &toks, id, true, true);
			if (bulk)
				x->ops->bulk(x, BSTORE_BULK_COMMIT);
			x->ops->totals(x, &ns, &nh, &nt);
			CHECK(l1 == 1 && l2 == 0 && ns1 == ns0 + 1 && f1 == 1 && f2 == 0 && ns == ns0,
			      "%s%s: a 611-octet id learned %d, again %d (spam %lld -> %lld), forgotten %d, "
			      "again %d "
			      "(-> %lld)",
			      k ? "memory" : "lmdb", bulk ? " bulk" : "", l1, l2, ns0, ns1, f1, f2, ns);
			pthread_mutex_destroy(&by.learn_lock);
		}
	st->ops->close(st);
}

/* A bulk learner leaves LMDB's writer lock between batches: another
 * process's writer (filterd autolearning) waits about BULK_MS, not for the
 * whole learn (1999 messages: under BULK_MAX, one batch before). */
static void bulk_yields(const char *top)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/yield", top);
	char *err = NULL;
	struct bstore *st = bstore_open_lmdb(dir, &err);
	struct shared {
		_Atomic int ready, phase; /* the other writer opened; 1 the bulk learn runs, 2 done */
		long long max_wait, writes;
	} *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(st && sh != MAP_FAILED, "bulk yields: open");
	if (!st || sh == MAP_FAILED)
		return;
	memset(sh, 0, sizeof(*sh));
	pid_t pid = fork();
	if (pid == 0) {
		struct bstore *own = bstore_open_lmdb(dir, &err);
		btok t[5] = {1, 2, 3, 4, 5};
		atomic_store(&sh->ready, 1);
		while (own && atomic_load(&sh->phase) == 0)
			usleep(1000);
		for (int i = 0; own && atomic_load(&sh->phase) == 1; i++) {
			char id[32];
			snprintf(id, sizeof(id), "<w%d@test>", i);
			long long t0 = now_ms();
			if (own->ops->apply(own, t, 5, false, +1, 1700000000, id, 'h', BSTORE_ANY) < 0)
				break;
			long long w = now_ms() - t0;
			sh->max_wait = w > sh->max_wait ? w : sh->max_wait;
			sh->writes++;
			usleep(5000);
		}
		if (own)
			own->ops->close(own);
		_exit(0);
	}
	static btok v[1000];
	while (pid > 0 && !atomic_load(&sh->ready))
		usleep(1000);
	long long t0 = now_ms();
	st->ops->bulk(st, BSTORE_BULK_BATCHES);
	atomic_store(&sh->phase, 1);
	int n = 0;
	for (; n < 1999; n++) {
		char id[32];
		snprintf(id, sizeof(id), "<b%d@test>", n);
		draw(v, 1000);
		if (st->ops->apply(st, v, 1000, true, +1, 1700000000, id, 's', BSTORE_ANY) < 0)
			break;
	}
	st->ops->bulk(st, BSTORE_BULK_COMMIT);
	long long took = now_ms() - t0;
	atomic_store(&sh->phase, 2);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(n == 1999 && sh->writes > 0 && sh->max_wait < 600 && sh->max_wait * 2 < took,
	      "bulk yields: another writer waited %lld ms at most (%lld writes) during a bulk learn of %d "
	      "messages in %lld ms",
	      sh->max_wait, sh->writes, n, took);
	fprintf(stderr, "bulk learn %lld ms, other writer: %lld writes, %lld ms at most\n", took, sh->writes,
		sh->max_wait);
	munmap(sh, sizeof(*sh));
	st->ops->close(st);
}

/* Autolearn while another process holds LMDB's writer lock (a bulk
 * learner, another filterd): the mail thread waits wait_ms, not for the
 * other writer; the message with the worker is called off (its header
 * says autolearn=unavailable: it must not be learned once the lock is
 * free), the ones that come meanwhile are skipped. */
static _Atomic int al_logged;

static void al_logger(int level, const char *msg)
{
	(void)level;
	(void)msg;
	atomic_fetch_add(&al_logged, 1);
}

static void autolearn_bounded(const char *top)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/al", top);
	char *err = NULL;
	struct bstore *st = bstore_open_lmdb(dir, &err);
	_Atomic int *held =
		mmap(NULL, sizeof(*held), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(st && held != MAP_FAILED, "autolearn: open");
	if (!st || held == MAP_FAILED)
		return;
	*held = 0;
	btok t[4] = {7, 8, 9, 10};
	pid_t pid = fork();
	if (pid == 0) {
		struct bstore *own = bstore_open_lmdb(dir, &err);
		int rc = own && own->ops->bulk(own, BSTORE_BULK_ONE) == 0 &&
					 own->ops->apply(own, t, 4, true, +1, 1700000000, "<holder@test>",
							 's', 0) == 0
				 ? 0
				 : 1;
		atomic_store(held, rc == 0 ? 1 : 2);
		usleep(1500000); /* the writer lock held 1.5 s */
		if (own) {
			own->ops->bulk(own, BSTORE_BULK_COMMIT);
			own->ops->close(own);
		}
		_exit(rc);
	}
	while (pid > 0 && !atomic_load(held))
		usleep(1000);
	struct bayes b = {.st = st, .o = {.min_spam_num = 1, .min_ham_num = 1}, .log = al_logger};
	pthread_mutex_init(&b.learn_lock, NULL);
	CHECK(bayes_autolearn_start(&b) == 0, "autolearn: worker started");
	struct btoks toks = {.v = t, .n = 4};
	long long t0 = now_ms();
	int r1 = bayes_autolearn(&b, &toks, "<al1@test>", true, 300);
	long long w1 = now_ms() - t0;
	t0 = now_ms();
	int r2 = bayes_autolearn(&b, &toks, "<al2@test>", true, 300);
	long long w2 = now_ms() - t0;
	CHECK(atomic_load(held) == 1 && r1 == -2 && w1 >= 250 && w1 < 1000 && r2 == -2 && w2 < 100 &&
		      atomic_load(&al_logged) == 2,
	      "autolearn: gives up after 300 ms (%d in %lld ms), then skips at once (%d in %lld ms), logged "
	      "(%d)",
	      r1, w1, r2, w2, atomic_load(&al_logged));
	int status = 0;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "autolearn: the other writer committed");
	/* the message with the worker was called off: once the lock is free
	 * the worker gets it and writes nothing (its header said
	 * autolearn=unavailable); the next message is learned */
	int r3 = -9;
	for (int i = 0; i < 300 && (r3 = bayes_autolearn(&b, &toks, "<al3@test>", true, 300)) == -2; i++)
		usleep(10000);
	long long ns = 0, nh = 0, nt = 0;
	st->ops->totals(st, &ns, &nh, &nt);
	int s1 = st->ops->seen(st, "<al1@test>");
	CHECK(s1 == 0 && st->ops->seen(st, "<al2@test>") == 0 && r3 == 1 && ns == 2,
	      "autolearn: the message that timed out is never learned, the skipped one not, the next "
	      "learned (seen %d, %d, %lld spam: the holder's and the next)",
	      s1, r3, ns);
	bayes_autolearn_stop(&b);
	pthread_mutex_destroy(&b.learn_lock);
	munmap((void *)held, sizeof(*held));
	st->ops->close(st);
}

/* Seen entries expire (SpamAssassin's bayes_seen_ttl): each records when
 * it was written; bayes_expire deletes the ones older than o.seen_ttl, at
 * most every BAYES_SEEN_EXPIRE_EVERY seconds; an entry of the format
 * before (one octet, no time) is given the time of the first pass. */
static uint32_t seen_time(struct lmdb_store *l, const char *id, size_t *size)
{
	MDB_txn *txn;
	MDB_val k = {strlen(id), (void *)id}, v;
	uint32_t t = 0;
	*size = 0;
	if (mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn))
		return 0;
	if (mdb_get(txn, l->seen, &k, &v) == 0) {
		*size = v.mv_size;
		for (size_t i = 1; i < v.mv_size && i < 5; i++)
			t |= (uint32_t)((unsigned char *)v.mv_data)[i] << (8 * (i - 1));
	}
	mdb_txn_abort(txn);
	return t;
}

/* A seen entry as one written `when`: learning stamps the time of the
 * learning, whatever the tokens' atime (the message's receive date). */
static void seen_backdate(struct lmdb_store *l, const char *id, char what, uint32_t when)
{
	MDB_txn *txn;
	unsigned char sv[SEEN_VAL];
	seen_val(sv, what, when);
	MDB_val k = {strlen(id), (void *)id}, v = {SEEN_VAL, sv};
	CHECK(mdb_txn_begin(l->env, NULL, 0, &txn) == 0 && mdb_put(txn, l->seen, &k, &v, 0) == 0 &&
		      mdb_txn_commit(txn) == 0,
	      "seen entry %s dated %u", id, when);
}

/* spam_bayes_seen_ttl's default */
#define SEEN_TTL (8 * 86400)

static void seen_expiry(const char *top)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/seen", top);
	char *err = NULL;
	struct bstore *st = bstore_open_lmdb(dir, &err);
	CHECK(st != NULL, "seen expiry: open (%s)", err ? err : "");
	if (!st)
		return;
	struct lmdb_store *l = (struct lmdb_store *)st;
	uint32_t now = (uint32_t)time(NULL), day = 86400;
	btok t[3] = {401, 402, 403};
	/* an entry as the store wrote them before: 's', no time */
	MDB_txn *txn;
	MDB_val k = {strlen("<old@test>"), "<old@test>"}, v = {1, "s"};
	CHECK(mdb_txn_begin(l->env, NULL, 0, &txn) == 0 && mdb_put(txn, l->seen, &k, &v, 0) == 0 &&
		      mdb_txn_commit(txn) == 0,
	      "seen expiry: an entry of the old format written");
	CHECK(st->ops->apply(st, t, 3, true, +1, now - 30 * day, "<stale@test>", 's', 0) == 0 &&
		      st->ops->apply(st, t, 3, false, +1, now - 30 * day, "<fresh@test>", 'h', 0) == 0,
	      "seen expiry: learned");
	size_t sz = 0;
	uint32_t ts = seen_time(l, "<stale@test>", &sz);
	CHECK(sz == 5 && ts >= now && ts <= now + 5,
	      "seen expiry: an entry records when it was learned, not the tokens' atime (%u, now %u)", ts,
	      now);
	seen_backdate(l, "<stale@test>", 's', now - 9 * day);
	seen_backdate(l, "<fresh@test>", 'h', now - 1 * day);
	ts = seen_time(l, "<stale@test>", &sz);
	CHECK(sz == 5 && ts == now - 9 * day && st->ops->seen(st, "<stale@test>") == 's' &&
		      st->ops->seen(st, "<old@test>") == 's',
	      "seen expiry: an entry records when it was written (%zu octets, %u); the old format reads", sz,
	      ts);

	struct bayes b = {.st = st, .o = {.min_spam_num = 1, .min_ham_num = 1, .seen_ttl = SEEN_TTL}};
	pthread_mutex_init(&b.learn_lock, NULL);
	bayes_expire(&b);
	uint32_t to = seen_time(l, "<old@test>", &sz);
	CHECK(st->ops->seen(st, "<stale@test>") == 0 && st->ops->seen(st, "<fresh@test>") == 'h' &&
		      st->ops->seen(st, "<old@test>") == 's' && sz == 5 && to >= now && to <= now + 5,
	      "seen expiry: the entry of 9 days goes, the one of 1 day stays, the old-format one is kept "
	      "and given the pass's time (%zu octets, %u, now %u)",
	      sz, to, now);
	/* the next pass waits BAYES_SEEN_EXPIRE_EVERY */
	CHECK(st->ops->apply(st, t, 3, true, +1, now, "<stale2@test>", 's', 0) == 0, "learn");
	seen_backdate(l, "<stale2@test>", 's', now - 10 * day);
	bayes_expire(&b);
	int s_wait = st->ops->seen(st, "<stale2@test>");
	atomic_store(&b.seen_next, 0);
	bayes_expire(&b);
	CHECK(s_wait == 's' && st->ops->seen(st, "<stale2@test>") == 0,
	      "seen expiry: at most one pass per %d s (%c before, then gone)", BAYES_SEEN_EXPIRE_EVERY,
	      s_wait ? s_wait : '0');
	/* an expired message is learned again */
	struct btoks toks = {.v = t, .n = 3};
	long long ns0 = 0, ns = 0, nh = 0, nt = 0;
	st->ops->totals(st, &ns0, &nh, &nt);
	int rl = bayes_learn(&b, &toks, "<stale@test>", true, false);
	st->ops->totals(st, &ns, &nh, &nt);
	CHECK(rl == 1 && ns == ns0 + 1, "seen expiry: an expired message is learned again (%d)", rl);
	/* 9 days on, everything of now is past the TTL, the stamped one too */
	long long n = st->ops->expire_seen(st, now + 9 * day, SEEN_TTL);
	CHECK(n == 3 && st->ops->seen(st, "<old@test>") == 0 && st->ops->seen(st, "<fresh@test>") == 0 &&
		      st->ops->seen(st, "<stale@test>") == 0,
	      "seen expiry: 9 days later the rest goes, the old-format entry too (%lld deleted)", n);
	/* a table larger than a sweep's chunk: walked in several write
	 * transactions (the writer lock let go between them), every entry
	 * decided once */
	enum { NCHUNKED = 2 * SWEEP_CHUNK + SWEEP_CHUNK / 2 };
	CHECK(mdb_txn_begin(l->env, NULL, 0, &txn) == 0, "seen expiry: a write transaction");
	int prc = 0;
	for (int i = 0; i < NCHUNKED && prc == 0; i++) {
		char id[40];
		unsigned char sv[SEEN_VAL];
		snprintf(id, sizeof(id), "<chunk-%05d@test>", i);
		seen_val(sv, i % 2 ? 'h' : 's', i % 2 ? now - 1 * day : now - 9 * day);
		MDB_val ck = {strlen(id), id}, cv = {SEEN_VAL, sv};
		prc = mdb_put(txn, l->seen, &ck, &cv, 0);
	}
	CHECK(prc == 0 && mdb_txn_commit(txn) == 0, "seen expiry: %d entries written", NCHUNKED);
	unsigned long txns0 = l->sweep_txns;
	n = st->ops->expire_seen(st, now, SEEN_TTL);
	int kept = 0;
	for (int i = 0; i < NCHUNKED; i++) {
		char id[40];
		snprintf(id, sizeof(id), "<chunk-%05d@test>", i);
		kept += st->ops->seen(st, id) == (i % 2 ? 'h' : 0);
	}
	CHECK(n == NCHUNKED / 2 && kept == NCHUNKED && l->sweep_txns - txns0 >= 3,
	      "seen expiry: %d entries swept in %lu write transactions of at most %d, %lld deleted, %d "
	      "as expected",
	      NCHUNKED, l->sweep_txns - txns0, SWEEP_CHUNK, n, kept);
	pthread_mutex_destroy(&b.learn_lock);
	st->ops->close(st);
}

/* Token expiry as SpamAssassin's: the cut is 12 h x 2^k before the newest
 * atime, the smallest k that takes no more than needed to come down to 75%
 * of max_db_size; tokens learned within 12 h (a bulk learn, in whatever
 * order) are not told apart, so none go. And learning gives the tokens the
 * message's receive date, never rolled back. */
static long long count_at(struct bstore *st, const btok *t, size_t n)
{
	struct bcounts c[4];
	long long k = 0;
	if (st->ops->get(st, t, n, c) == 0)
		for (size_t i = 0; i < n; i++)
			k += c[i].s || c[i].h;
	return k;
}

static void token_expiry(const char *top)
{
	char dir[512], *err = NULL;
	snprintf(dir, sizeof(dir), "%s/expiry", top);
	struct bstore *st = bstore_open_lmdb(dir, &err);
	CHECK(st != NULL, "token expiry: open (%s)", err ? err : "");
	if (!st)
		return;
	uint32_t now = (uint32_t)time(NULL), day = 86400;
	enum { OLD = 40000, MID = 60000, NEW = 60000 };
	static btok t[OLD + MID + NEW];
	static struct bcounts c[OLD + MID + NEW];
	/* a bulk learn: all within seconds, the spam first */
	for (size_t i = 0; i < OLD + MID + NEW; i++) {
		t[i] = 0x100000 + i;
		c[i] = (struct bcounts){i < OLD + MID ? 1u : 0u, i < OLD + MID ? 0u : 1u,
					now - 60 + (uint32_t)(i / 4000)};
	}
	CHECK(st->ops->put(st, t, c, OLD + MID + NEW, 100, 100) == 0, "token expiry: %d tokens",
	      OLD + MID + NEW);
	struct bayes b = {.st = st, .o = {.min_spam_num = 1, .min_ham_num = 1, .max_db_size = 150000}};
	pthread_mutex_init(&b.learn_lock, NULL);
	long long r = bayes_expire(&b), ns, nh, nt = 0;
	st->ops->totals(st, &ns, &nh, &nt);
	CHECK(r == 0 && nt == OLD + MID + NEW,
	      "token expiry: tokens learned within 12 h all stay, whatever came first (%lld expired, %lld "
	      "left)",
	      r, nt);
	/* received 300 days, 100 days and 0 days ago: the goal is 47,500 of
	 * 160,000; 128 days takes the 40,000 oldest, 64 days would take
	 * 100,000 */
	for (size_t i = 0; i < OLD + MID + NEW; i++)
		c[i].atime = i < OLD ? now - 300 * day : i < OLD + MID ? now - 100 * day : now;
	CHECK(st->ops->put(st, t, c, OLD + MID + NEW, 100, 100) == 0, "token expiry: dated");
	r = bayes_expire(&b);
	st->ops->totals(st, &ns, &nh, &nt);
	long long old_left = count_at(st, t, 4), mid_left = count_at(st, t + OLD, 4),
		  new_left = count_at(st, t + OLD + MID, 4);
	CHECK(r == OLD && nt == MID + NEW && old_left == 0 && mid_left == 4 && new_left == 4,
	      "token expiry: the tokens older than 128 days go, no more (%lld expired, %lld left; "
	      "%lld/%lld/%lld "
	      "of 4)",
	      r, nt, old_left, mid_left, new_left);
	/* learning: the receive date, not rolled back, the time of learning
	 * for one over a day ahead */
	btok lt[2] = {0x900001, 0x900002};
	struct btoks toks = {.v = lt, .n = 1, .atime = now - 50 * day};
	struct bcounts got[2];
	int l1 = bayes_learn(&b, &toks, "<dated@test>", true, false);
	toks.atime = now - 80 * day;
	int l2 = bayes_learn(&b, &toks, "<older@test>", true, false);
	toks.n = 2;
	toks.atime = now + 3 * day;
	int l3 = bayes_learn(&b, &toks, "<ahead@test>", false, false);
	CHECK(l1 == 1 && l2 == 1 && l3 == 1 && st->ops->get(st, lt, 2, got) == 0 && got[0].atime >= now &&
		      got[0].atime <= now + 5 && got[1].atime >= now && got[1].atime <= now + 5,
	      "token expiry: a message dated ahead is learned at the time of learning (%u %u, now %u)",
	      got[0].atime, got[1].atime, now);
	lt[0] = 0x900003;
	toks.n = 1;
	toks.atime = now - 50 * day;
	bayes_learn(&b, &toks, "<d2@test>", true, false);
	toks.atime = now - 80 * day;
	bayes_learn(&b, &toks, "<d3@test>", false, false);
	CHECK(st->ops->get(st, lt, 1, got) == 0 && got[0].atime == now - 50 * day,
	      "token expiry: a token's atime is its newest message's receive date, never rolled back (%u, "
	      "want %u)",
	      got[0].atime, now - 50 * day);
	pthread_mutex_destroy(&b.learn_lock);
	st->ops->close(st);
}

struct at_count {
	uint32_t atime;
	long long n;
};

static int count_atime(void *arg, btok t, const struct bcounts *c)
{
	(void)t;
	struct at_count *a = arg;
	a->n += c->atime == a->atime;
	return 0;
}

/* Scanning touches the tokens that decided (SpamAssassin's tok_touch_all):
 * their atime becomes the message's receive date when newer, written at
 * bayes_autolearn_stop (or by the worker); weak, unknown and newer tokens
 * are left as they are, and the expiry then keeps the touched ones. */
static void touches(const char *top)
{
	char dir[512], *err = NULL;
	snprintf(dir, sizeof(dir), "%s/touch", top);
	struct bstore *st = bstore_open_lmdb(dir, &err);
	CHECK(st != NULL, "touch: open (%s)", err ? err : "");
	if (!st)
		return;
	uint32_t now = (uint32_t)time(NULL), day = 86400;
	/* 0-1: strong (spam only), old; 2: weak (as much ham as spam), old;
	 * 3: strong, dated after the message; 4: not in the store; then
	 * 120,000 fillers dated 100 days ago, 40,000 of them 300 */
	enum { FILL = 160000 };
	static btok t[5 + FILL];
	static struct bcounts c[5 + FILL];
	for (size_t i = 0; i < 5 + FILL; i++) {
		t[i] = 0x200000 + i;
		c[i] = (struct bcounts){50, i == 2 ? 50u : 0u,
					now - (i < 5 || i >= 5 + 120000 ? 300 : 100) * day};
	}
	c[3].atime = now - day;
	CHECK(st->ops->put(st, t, c, 4, 100, 100) == 0 && st->ops->put(st, t + 5, c + 5, FILL, 100, 100) == 0,
	      "touch: %d tokens", 4 + FILL);
	struct bayes b = {.st = st, .o = {.min_spam_num = 1, .min_ham_num = 1, .max_db_size = 150000}};
	pthread_mutex_init(&b.learn_lock, NULL);
	pthread_mutex_init(&b.touch_lock, NULL);
	struct btoks toks = {.v = t, .n = 5, .atime = now - 10 * day};
	double p = bayes_classify(&b, &toks);
	struct bcounts got[5];
	st->ops->get(st, t, 5, got);
	CHECK(p > 0.9 && got[0].atime == now - 300 * day,
	      "touch: a scan's touches wait in memory (p %.3f, atime %u days old)", p,
	      (now - got[0].atime) / day);
	bayes_autolearn_stop(&b); /* no worker: written here */
	st->ops->get(st, t, 5, got);
	long long ns, nh, nt = 0;
	st->ops->totals(st, &ns, &nh, &nt);
	CHECK(got[0].atime == now - 10 * day && got[1].atime == now - 10 * day &&
		      got[2].atime == now - 300 * day && got[3].atime == now - day &&
		      got[4].s + got[4].h == 0 && got[0].s == 50 && nt == 4 + FILL,
	      "touch: the strong tokens get the message's date; the weak, the newer and the unknown "
	      "stay (ages in days %u %u %u %u; %lld tokens)",
	      (now - got[0].atime) / day, (now - got[1].atime) / day, (now - got[2].atime) / day,
	      (now - got[3].atime) / day, nt);
	/* a message dated ahead touches with the time of the scan */
	toks.atime = now + 3 * day;
	toks.n = 1;
	bayes_classify(&b, &toks);
	bayes_autolearn_stop(&b);
	st->ops->get(st, t, 1, got);
	CHECK(got[0].atime >= now && got[0].atime <= now + 5,
	      "touch: a message dated ahead touches at the "
	      "time of the scan (%u, now %u)",
	      got[0].atime, now);
	/* the expiry takes the 300-day-old fillers, not the touched tokens */
	long long r = bayes_expire(&b);
	st->ops->get(st, t, 5, got);
	CHECK(r == 40001 && got[0].s && got[1].s && !got[2].s,
	      "touch: the expiry keeps what scans used (%lld expired; %u %u %u)", r, got[0].s, got[1].s,
	      got[2].s);
	/* touches that change nothing write nothing: the in-memory copy stays
	 * the database's (it was marked with a transaction that never
	 * committed, and every lookup went to the B-tree after it) */
	struct lmdb_store *l = (struct lmdb_store *)st;
	for (int i = 0; i < 2 * SNAP_AFTER; i++) {
		toks = (struct btoks){.v = t + 5, .n = 5, .atime = now - 200 * day};
		bayes_classify(&b, &toks);
	}
	bool before = copy_current(l);
	toks = (struct btoks){.v = t, .n = 2, .atime = now - 20 * day};
	bayes_classify(&b, &toks);
	bayes_autolearn_stop(&b);
	CHECK(before && copy_current(l),
	      "touch: a write that changes nothing keeps the in-memory copy (%d %d)", before,
	      copy_current(l));
	/* a daemon's worker writes them once the journal is half full,
	 * without waiting for BAYES_TOUCH_EVERY */
	CHECK(bayes_autolearn_start(&b) == 0, "touch: the worker starts");
	enum { N = BAYES_TOUCH_MAX / 2 + 300 };
	for (size_t i = 0; i < N; i++) {
		t[i] = 0x300000 + i;
		c[i] = (struct bcounts){50, 0, now - 300 * day};
	}
	st->ops->put(st, t, c, N, 100, 100);
	for (size_t i = 0; i < N; i += 150) {
		toks = (struct btoks){.v = t + i, .n = N - i < 150 ? N - i : 150, .atime = now - 5 * day};
		bayes_classify(&b, &toks);
	}
	/* (read by each: lookups from the in-memory copy carry no atime) */
	struct at_count ac = {.atime = now - 5 * day};
	for (int w = 0; w < 100 && ac.n < BAYES_TOUCH_MAX / 2; w++) {
		usleep(50000);
		ac.n = 0;
		st->ops->each(st, count_atime, &ac);
	}
	long long done = ac.n;
	CHECK(done >= BAYES_TOUCH_MAX / 2, "touch: half full, the worker writes them at once (%lld of %d)",
	      done, N);
	bayes_autolearn_stop(&b);
	pthread_mutex_destroy(&b.learn_lock);
	pthread_mutex_destroy(&b.touch_lock);
	st->ops->close(st);
}

int main(void)
{
	char dir[] = "/tmp/sift-bayes-lmdb-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	for (size_t i = 0; i < NTOK; i++)
		pool[i] = rnd() & 0xffffffffffull;
	char *err = NULL;
	struct bstore *db = bstore_open_lmdb(dir, &err), *ref = bstore_open("memory", NULL, 0, 0, &err);
	if (!db || !ref) {
		fprintf(stderr, "open: %s\n", err ? err : "?");
		return 1;
	}
	struct lmdb_store *l = (struct lmdb_store *)db;

	/* an imported table: half of the pool */
	static btok t0[NTOK / 2];
	static struct bcounts c0[NTOK / 2];
	for (size_t i = 0; i < NTOK / 2; i++) {
		t0[i] = pool[2 * i];
		c0[i] = (struct bcounts){(uint32_t)(rnd() % 50), (uint32_t)(rnd() % 50) + 1, 1700000000};
	}
	CHECK(db->ops->put(db, t0, c0, NTOK / 2, 300, 300) == 0 &&
		      ref->ops->put(ref, t0, c0, NTOK / 2, 300, 300) == 0,
	      "import");

	/* no copy before SNAP_AFTER lookups; one after */
	lookups(db, ref, SNAP_AFTER - 1, "before the copy");
	CHECK(!l->snap, "no copy after %d lookups", SNAP_AFTER - 1);
	lookups(db, ref, 1, "the copy is read");
	CHECK(copy_current(l), "a copy after %d lookups", SNAP_AFTER);
	lookups(db, ref, 20, "from the copy");

	/* this process learns and forgets: the copy follows each commit */
	for (int i = 0; i < 30; i++) {
		char id[32];
		snprintf(id, sizeof(id), "<m%d@test>", i);
		learn(db, ref, +1, i % 3 == 0, 300, id);
	}
	CHECK(copy_current(l), "the copy follows this process's learning");
	lookups(db, ref, 10, "after learning");
	for (int i = 0; i < 10; i++) {
		char id[32];
		snprintf(id, sizeof(id), "<f%d@test>", i);
		learn(db, ref, -1, i % 2 == 0, 400, id); /* counts down to 0/0: deleted */
	}
	CHECK(copy_current(l), "the copy follows this process's forgetting");
	lookups(db, ref, 10, "after forgetting");

	/* another process writes: the copy is not used, then read again */
	uint64_t before = l->snap->txnid;
	btok ext[200];
	struct bcounts extc[200];
	draw(ext, 200);
	for (size_t i = 0; i < 200; i++)
		extc[i] = (struct bcounts){777, (uint32_t)i, 1700000001};
	pid_t pid = fork();
	if (pid == 0) {
		char *e = NULL;
		struct bstore *other = bstore_open_lmdb(dir, &e);
		int rc = other && other->ops->put(other, ext, extc, 200, -1, -1) == 0 ? 0 : 1;
		if (other)
			other->ops->close(other);
		_exit(rc);
	}
	int status = 0;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "another process writes");
	ref->ops->put(ref, ext, extc, 200, -1, -1);
	CHECK(!copy_current(l) && l->snap && l->snap->txnid == before,
	      "another process's write: the copy is stale");
	CHECK(same(db, ref, ext, 200), "another process's write is read");
	lookups(db, ref, SNAP_AFTER + 2, "after another process's write");
	CHECK(copy_current(l), "the copy is read again after another process's write");
	CHECK(same(db, ref, ext, 200), "another process's write, from the copy");

	/* the table grows past the copy's room: the copy is dropped, not wrong */
	btok big[512];
	for (int r = 0; r < 64 && copy_current(l); r++) {
		for (size_t i = 0; i < 512; i++)
			big[i] = (rnd() & 0xffffffffffull) | 1;
		char id[32];
		snprintf(id, sizeof(id), "<g%d@test>", r);
		CHECK(db->ops->apply(db, big, 512, true, +1, 1700000002, id, 's', BSTORE_ANY) == 0 &&
			      ref->ops->apply(ref, big, 512, true, +1, 1700000002, id, 's', BSTORE_ANY) == 0,
		      "apply %s", id);
		CHECK(same(db, ref, big, 512), "%s: new tokens read back", id);
	}
	CHECK(!copy_current(l), "a copy outgrown by new tokens is no longer used");
	lookups(db, ref, SNAP_AFTER + 2, "after the copy was outgrown");
	CHECK(copy_current(l), "a larger copy is read");

	race(db);
	learn_together(db, "lmdb");
	learn_together(ref, "memory");
	learn_processes(db, dir);
	registry(dir);
	long_ids(dir, ref);
	bulk_yields(dir);
	autolearn_bounded(dir);
	seen_expiry(dir);
	token_expiry(dir);
	touches(dir);

	db->ops->close(db);
	ref->ops->close(ref);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	/* the tally ./check adds up */
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}
