/*
 * bayes.c - Bayes probabilities, learning and the import of SpamAssassin
 * dumps, as Mail::SpamAssassin::Plugin::Bayes and Bayes::CombineChi do:
 *   a token's probability is Robinson's f(w) = (s*x + n*p) / (s + n) with
 *   p = s*nh / (h*ns + s*nh), s = 0.030 and x = 0.538; tokens whose
 *   |f(w) - 0.5| is below 0.346 are ignored; the 150 strongest are combined
 *   with Fisher's chi-squared method, weighted by the spam/ham ratio.
 * A message is learned once: learning it again as the same is a no-op,
 * learning it as the other class forgets it first (its msgid is kept in the
 * store's seen list, as SpamAssassin's bayes_seen).
 */
#include <errno.h>
#include <math.h>
#include <openssl/sha.h>
#include <syslog.h>
#include <unistd.h>

#include "bayes.h"
#include "internal.h"

#define FW_X		  0.538
#define FW_S		  0.030
#define MIN_PROB_STRENGTH 0.346
#define N_SIGNIFICANT	  150

static double chi2q(double x2, size_t halfv)
{
	double m = x2 / 2.0, term = exp(-m), sum = term;
	for (size_t i = 1; i < halfv; i++) {
		term *= m / (double)i;
		sum += term;
	}
	return sum < 1.0 ? sum : 1.0;
}

double bayes_combine(long long ns, long long nh, const double *p, size_t n)
{
	if (!n || ns + nh == 0)
		return -1;
	double S = (double)ns / (double)(ns + nh), H = (double)nh / (double)(ns + nh);
	int se = 0, he = 0;
	for (size_t i = 0; i < n; i++) {
		S *= 1.0 - p[i];
		H *= p[i];
		if (S < 1e-200) {
			int e;
			S = frexp(S, &e);
			se += e;
		}
		if (H < 1e-200) {
			int e;
			H = frexp(H, &e);
			he += e;
		}
	}
	S = log(S) + se * M_LN2;
	H = log(H) + he * M_LN2;
	S = 1.0 - chi2q(-2.0 * S, n);
	H = 1.0 - chi2q(-2.0 * H, n);
	return ((S - H) + 1.0) / 2.0;
}

/* A token's probability and its place in the message's token list. */
struct tprob {
	double p;
	size_t i;
};

/* Strongest first; equal strengths in token order (Perl's sort is stable). */
static int strength_cmp(const void *a, const void *b)
{
	const struct tprob *u = a, *v = b;
	double x = fabs(u->p - 0.5), y = fabs(v->p - 0.5);
	if (x != y)
		return x < y ? 1 : -1;
	return u->i < v->i ? -1 : u->i > v->i;
}

bool bayes_ready(struct bayes *b)
{
	long long ns, nh, nt;
	if (b->st->ops->totals(b->st, &ns, &nh, &nt) < 0)
		return false;
	return ns >= b->o.min_spam_num && nh >= b->o.min_ham_num && ns > 0 && nh > 0;
}

/* ---- touches (SpamAssassin's tok_touch_all) ----------------------------- */

/* An open-addressing table: key token + 1 (0: free), the newest atime. */
struct bayes_touch {
	uint64_t key[BAYES_TOUCH_MAX];
	uint32_t atime[BAYES_TOUCH_MAX];
	size_t used;
};

static bool touch_half_full(const struct bayes_touch *j)
{
	return j && j->used * 2 >= BAYES_TOUCH_MAX;
}

static void touch_wake(struct bayes *b);

/* Notes the tokens v[p[0].i] ... v[p[n - 1].i] as used by a scan at atime. */
static void touch_add(struct bayes *b, const btok *v, const struct tprob *p, size_t n, uint32_t atime)
{
	pthread_mutex_lock(&b->touch_lock);
	if (!b->touch)
		b->touch = calloc(1, sizeof(*b->touch));
	struct bayes_touch *j = b->touch;
	bool was_half = touch_half_full(j);
	for (size_t i = 0; j && i < n; i++) {
		uint64_t key = v[p[i].i] + 1;
		size_t x = (size_t)v[p[i].i] & (BAYES_TOUCH_MAX - 1); /* a SHA-1 slice */
		while (j->key[x] && j->key[x] != key)
			x = (x + 1) & (BAYES_TOUCH_MAX - 1);
		if (!j->key[x]) {
			if ((j->used + 1) * 4 > (size_t)BAYES_TOUCH_MAX * 3)
				break; /* full until the next write: dropped */
			j->key[x] = key;
			j->used++;
		}
		if (atime > j->atime[x])
			j->atime[x] = atime;
	}
	bool wake = !was_half && touch_half_full(j);
	pthread_mutex_unlock(&b->touch_lock);
	if (wake)
		touch_wake(b);
}

static bool touch_pending(struct bayes *b)
{
	pthread_mutex_lock(&b->touch_lock);
	bool r = b->touch && b->touch->used;
	pthread_mutex_unlock(&b->touch_lock);
	return r;
}

long bayes_touch_flush(struct bayes *b)
{
	if (!b->st->touches)
		return 0;
	pthread_mutex_lock(&b->touch_lock);
	struct bayes_touch *j = b->touch;
	b->touch = NULL;
	pthread_mutex_unlock(&b->touch_lock);
	if (!j)
		return 0;
	btok *t = xmalloc((j->used + 1) * sizeof(*t));
	uint32_t *at = xmalloc((j->used + 1) * sizeof(*at));
	size_t n = 0;
	for (size_t x = 0; x < BAYES_TOUCH_MAX; x++)
		if (j->key[x]) {
			t[n] = j->key[x] - 1;
			at[n++] = j->atime[x];
		}
	free(j);
	int rc = n ? b->st->ops->touch(b->st, t, at, n) : 0;
	free(t);
	free(at);
	return rc < 0 ? -1 : (long)n;
}

double bayes_classify(struct bayes *b, const struct btoks *t)
{
	long long ns, nh, nt;
	if (!t->n || b->st->ops->totals(b->st, &ns, &nh, &nt) < 0)
		return -1;
	if (ns < b->o.min_spam_num || nh < b->o.min_ham_num || !ns || !nh)
		return -1;
	struct bcounts *c = xmalloc(t->n * sizeof(*c));
	if (b->st->ops->get(b->st, t->v, t->n, c) < 0) {
		free(c);
		return -1;
	}
	struct tprob *p = xmalloc(t->n * sizeof(*p));
	size_t np = 0;
	for (size_t i = 0; i < t->n; i++) {
		double s = c[i].s, h = c[i].h;
		if (s + h < 1)
			continue;
		double pr = (s * (double)nh) / (h * (double)ns + s * (double)nh);
		pr = (FW_S * FW_X + (s + h) * pr) / (FW_S + s + h);
		/* SpamAssassin sorts every probability by strength, keeps the
		 * first N_SIGNIFICANT and of those the ones of MIN_PROB_STRENGTH:
		 * the same as keeping the strong ones, sorting only those and
		 * cutting at N_SIGNIFICANT (most tokens are weak). */
		if (fabs(pr - 0.5) >= MIN_PROB_STRENGTH)
			p[np++] = (struct tprob){pr, i};
	}
	free(c);
	qsort(p, np, sizeof(*p), strength_cmp);
	size_t k = np > N_SIGNIFICANT ? N_SIGNIFICANT : np;
	double sig[N_SIGNIFICANT];
	for (size_t j = 0; j < k; j++)
		sig[j] = p[j].p;
	double r = k ? bayes_combine(ns, nh, sig, k) : -1;
	if (r >= 0 && b->st->touches) {
		uint32_t now = (uint32_t)time(NULL);
		touch_add(b, t->v, p, k, t->atime && t->atime <= now ? t->atime : now);
	}
	free(p);
	return r;
}

/* ---- calling off an autolearn ------------------------------------------ */

enum { AL_QUEUED, AL_RUNNING, AL_DONE };

struct al_job {
	btok *v;
	size_t n;
	uint32_t atime; /* the message's receive date (btoks.atime) */
	char *id;
	bool spam;
	int state, rc;
	bool abandoned; /* its waiter gave up: the worker frees it */
	bool cancelled; /* its waiter gave up before it wrote: it must not */
	bool landing;	/* it passed the gate: its writes are going in */
	struct al_job *next;
};

/* The autolearn job this thread (the worker) is learning, if any. */
static _Thread_local struct al_job *al_cur;
static _Thread_local pthread_mutex_t *al_cur_lock;

bool bstore_gate(void)
{
	struct al_job *j = al_cur;
	if (!j)
		return true;
	pthread_mutex_lock(al_cur_lock);
	bool go = !j->cancelled;
	j->landing = j->landing || go;
	pthread_mutex_unlock(al_cur_lock);
	return go;
}

/* ops->apply behind the gate: a store with gates passes it itself, once
 * it holds its writer lock; for the others it is passed here. */
static int gated_apply(struct bayes *b, const btok *t, size_t n, bool spam, int sign, uint32_t atime,
		       const char *msgid, char what, int expect)
{
	const struct bstore_ops *ops = b->st->ops;
	if (!ops->gates && !bstore_gate())
		return BSTORE_CALLED_OFF;
	return ops->apply(b->st, t, n, spam, sign, atime, msgid, what, expect);
}

/* One try at learning or forgetting a message: as bayes_learn, or 2 when
 * another process changed its seen entry between the read and the write. */
static int learn_try(struct bayes *b, const struct btoks *t, const char *msgid, bool spam, bool forget)
{
	const struct bstore_ops *ops = b->st->ops;
	int seen = ops->seen(b->st, msgid);
	if (seen < 0)
		return -1;
	uint32_t now = (uint32_t)time(NULL);
	int r;
	if (forget) {
		if (!seen)
			return 0;
		r = gated_apply(b, t->v, t->n, seen == 's', -1, now, msgid, 0, seen);
		return r == BSTORE_CALLED_OFF ? -3 : r < 0 ? -1 : r == 1 ? 2 : 1;
	}
	char what = spam ? 's' : 'h';
	if (seen == what)
		return 0;
	if (seen && (r = gated_apply(b, t->v, t->n, seen == 's', -1, now, msgid, 0, seen)) != 0)
		return r == BSTORE_CALLED_OFF ? -3 : r < 0 ? -1 : 2;
	/* as SpamAssassin: the tokens' atime is the message's receive date,
	 * the time of learning for a message dated over a day ahead */
	uint32_t atime = t->atime && t->atime <= now + 86400u ? t->atime : now;
	r = gated_apply(b, t->v, t->n, spam, 1, atime, msgid, what, 0);
	return r == BSTORE_CALLED_OFF ? -3 : r < 0 ? -1 : r == 1 ? 2 : 1;
}

/* A store with claim: waits this long at most for another process's
 * claim on the same message (its learning takes milliseconds). */
#define CLAIM_TRIES   40
#define CLAIM_WAIT_US 25000

static int learn_locked(struct bayes *b, const struct btoks *t, const char *msgid, bool spam, bool forget)
{
	const struct bstore_ops *ops = b->st->ops;
	bool claimed = false;
	if (ops->claim && msgid && *msgid) {
		int c;
		for (int i = 0; (c = ops->claim(b->st, msgid)) == 0 && i < CLAIM_TRIES; i++)
			usleep(CLAIM_WAIT_US);
		if (c <= 0)
			return -1;
		claimed = true;
	}
	int rc = 2;
	for (int i = 0; rc == 2 && i < 8; i++)
		rc = learn_try(b, t, msgid, spam, forget);
	if (claimed)
		ops->release(b->st, msgid);
	return rc == 2 ? -1 : rc;
}

int bayes_learn(struct bayes *b, const struct btoks *t, const char *msgid, bool spam, bool forget)
{
	char *id = bayes_seen_id(msgid);
	pthread_mutex_lock(&b->learn_lock);
	int rc = learn_locked(b, t, id, spam, forget);
	pthread_mutex_unlock(&b->learn_lock);
	free(id);
	return rc;
}

/* ---- autolearn off the mail threads ----------------------------------- */

#define AL_QUEUE_MAX 64
/* A job whose writes are going in when its wait ends: waited for this much
 * longer at most (a local commit, unless another writer takes the lock
 * between the two transactions of a message learned as the other class). */
#define AL_LANDING_WAIT_MS 5000

struct bayes_al {
	pthread_mutex_t lock;
	pthread_cond_t work, done; /* done: CLOCK_MONOTONIC */
	struct al_job *head, *tail;
	size_t queued;
	bool stop, stalled; /* stalled: a job whose waiter gave up runs */
	bool touch_wake;    /* the touches are half full: write them */
	pthread_t thread;
};

static void touch_wake(struct bayes *b)
{
	struct bayes_al *a = b->al;
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->touch_wake = true;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->lock);
}

static void al_log(struct bayes *b, const char *fmt, ...);

static void touch_flush_logged(struct bayes *b)
{
	if (bayes_touch_flush(b) < 0)
		al_log(b, "Bayes: cannot write the atimes of the tokens scans used (the store refused "
			  "the write)");
}

static void al_free(struct al_job *j)
{
	free(j->v);
	free(j->id);
	free(j);
}

static void *al_main(void *arg)
{
	struct bayes *b = arg;
	struct bayes_al *a = b->al;
	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (!a->head && !a->stop) {
			if (!touch_pending(b)) {
				pthread_cond_wait(&a->work, &a->lock);
				continue;
			}
			/* touches waiting: written every BAYES_TOUCH_EVERY
			 * seconds, or at once when half full */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += BAYES_TOUCH_EVERY;
			int w = 0;
			while (!a->head && !a->stop && !a->touch_wake && w != ETIMEDOUT)
				w = pthread_cond_timedwait(&a->work, &a->lock, &ts);
			if (a->stop)
				break;
			if (w == ETIMEDOUT || a->touch_wake) {
				a->touch_wake = false;
				pthread_mutex_unlock(&a->lock);
				touch_flush_logged(b);
				pthread_mutex_lock(&a->lock);
			}
		}
		if (a->stop)
			break;
		struct al_job *j = a->head;
		a->head = j->next;
		if (!a->head)
			a->tail = NULL;
		a->queued--;
		j->state = AL_RUNNING;
		pthread_mutex_unlock(&a->lock);
		struct btoks t = {.v = j->v, .n = j->n, .atime = j->atime};
		al_cur = j;
		al_cur_lock = &a->lock;
		int rc = bayes_learn(b, &t, j->id, j->spam, false);
		al_cur = NULL;
		pthread_mutex_lock(&a->lock);
		j->rc = rc;
		j->state = AL_DONE;
		if (j->abandoned) {
			a->stalled = false;
			al_free(j);
		}
		pthread_cond_broadcast(&a->done);
		/* the expiry after the message's wait, not in it; the
		 * touches written first, so that it sees them */
		if (rc == 1) {
			pthread_mutex_unlock(&a->lock);
			touch_flush_logged(b);
			bayes_expire(b);
			pthread_mutex_lock(&a->lock);
		}
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int bayes_autolearn_start(struct bayes *b)
{
	struct bayes_al *a = xcalloc(1, sizeof(*a));
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->work, &ca);
	pthread_cond_init(&a->done, &ca);
	pthread_condattr_destroy(&ca);
	b->al = a;
	if (pthread_create(&a->thread, NULL, al_main, b) != 0) {
		b->al = NULL;
		pthread_cond_destroy(&a->work);
		pthread_cond_destroy(&a->done);
		pthread_mutex_destroy(&a->lock);
		free(a);
		return -1;
	}
	return 0;
}

void bayes_autolearn_stop(struct bayes *b)
{
	struct bayes_al *a = b->al;
	if (!a) {
		touch_flush_logged(b);
		return;
	}
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	while (a->head) {
		struct al_job *j = a->head;
		a->head = j->next;
		al_free(j);
	}
	pthread_cond_destroy(&a->work);
	pthread_cond_destroy(&a->done);
	pthread_mutex_destroy(&a->lock);
	free(a);
	b->al = NULL;
	touch_flush_logged(b);
}

static void al_log(struct bayes *b, const char *fmt, ...)
{
	if (!b->log)
		return;
	va_list ap;
	char buf[256];
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	b->log(LOG_WARNING, buf);
}

int bayes_autolearn(struct bayes *b, const struct btoks *t, const char *msgid, bool spam, long wait_ms)
{
	struct bayes_al *a = b->al;
	if (!a) {
		int rc = bayes_learn(b, t, msgid, spam, false);
		if (rc == 1)
			bayes_expire(b);
		return rc;
	}
	pthread_mutex_lock(&a->lock);
	if (a->stalled || a->queued >= AL_QUEUE_MAX) {
		pthread_mutex_unlock(&a->lock);
		al_log(b, "Bayes autolearn skipped: the store is busy (a learn waits for its writer lock)");
		return -2;
	}
	struct al_job *j = xcalloc(1, sizeof(*j));
	j->v = xmalloc((t->n + 1) * sizeof(btok));
	memcpy(j->v, t->v, t->n * sizeof(btok));
	j->n = t->n;
	j->atime = t->atime;
	j->id = xstrdup(msgid ? msgid : "");
	j->spam = spam;
	if (a->tail)
		a->tail->next = j;
	else
		a->head = j;
	a->tail = j;
	a->queued++;
	pthread_cond_signal(&a->work);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += wait_ms / 1000;
	ts.tv_nsec += (wait_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (j->state != AL_DONE && !j->landing && pthread_cond_timedwait(&a->done, &a->lock, &ts) == 0)
		;
	/* Its writes are going in: the header says what happened. Otherwise
	 * it is called off below and never written. */
	if (j->state != AL_DONE && j->landing) {
		ts.tv_sec += AL_LANDING_WAIT_MS / 1000;
		while (j->state != AL_DONE && pthread_cond_timedwait(&a->done, &a->lock, &ts) == 0)
			;
	}
	int rc = -2, state = j->state;
	bool landing = j->landing;
	if (state == AL_DONE) {
		rc = j->rc;
		al_free(j);
	} else if (state == AL_QUEUED) {
		struct al_job **pp = &a->head, *prev = NULL;
		while (*pp != j) {
			prev = *pp;
			pp = &(*pp)->next;
		}
		*pp = j->next;
		if (a->tail == j)
			a->tail = prev;
		a->queued--;
		al_free(j);
	} else {
		/* waiting for the store's writer lock: called off (the store
		 * passes the gate, bstore_gate, once it has the lock) */
		j->cancelled = true;
		j->abandoned = true;
		a->stalled = true;
	}
	pthread_mutex_unlock(&a->lock);
	if (rc == -2)
		al_log(b, "Bayes autolearn: the store did not take the message within %ld ms; %s", wait_ms,
		       landing ? "it was being written and may still be learned" : "not learned");
	return rc;
}

struct atimes {
	uint32_t *a;
	size_t n, cap;
};

static int collect_atime(void *arg, btok t, const struct bcounts *c)
{
	(void)t;
	struct atimes *at = arg;
	if (at->n == at->cap) {
		at->cap = at->cap ? at->cap * 2 : 65536;
		at->a = xrealloc(at->a, at->cap * sizeof(uint32_t));
	}
	at->a[at->n++] = c->atime;
	return 0;
}

/* The seen entries past o.seen_ttl, once every BAYES_SEEN_EXPIRE_EVERY
 * seconds (a pass reads the whole seen table). */
static void expire_seen(struct bayes *b)
{
	long long now = (long long)time(NULL), next = atomic_load(&b->seen_next);
	if (b->o.seen_ttl <= 0 || !b->st->ops->expire_seen || now < next ||
	    !atomic_compare_exchange_strong(&b->seen_next, &next, now + BAYES_SEEN_EXPIRE_EVERY))
		return;
	uint32_t ttl = b->o.seen_ttl > UINT32_MAX ? UINT32_MAX : (uint32_t)b->o.seen_ttl;
	if (b->st->ops->expire_seen(b->st, (uint32_t)now, ttl) < 0 && b->log)
		b->log(LOG_WARNING, "Bayes: the expiry of seen entries failed");
}

long long bayes_expire(struct bayes *b)
{
	long long ns, nh, nt;
	expire_seen(b);
	if (b->o.max_db_size <= 0 || !b->st->ops->each || b->st->ops->totals(b->st, &ns, &nh, &nt) < 0 ||
	    nt <= b->o.max_db_size)
		return 0;
	/* SpamAssassin's expiry (BayesStore.pm, expire_old_tokens_trapped,
	 * its first pass): at least 100,000 tokens stay, and 75% of
	 * max_db_size; the tokens go whose atime (their newest message's
	 * receive date) is older than the newest one's by 12 h x 2^k, for
	 * the smallest k <= 9 that does not take more than that; nothing
	 * when that is under 1,000 tokens or the atimes span under 12 h. */
	if (nt <= BAYES_EXPIRE_KEEP_MIN)
		return 0;
	struct atimes at = {0};
	if (b->st->ops->each(b->st, collect_atime, &at) < 0) {
		free(at.a);
		return -1;
	}
	uint32_t now = (uint32_t)time(NULL), newest = 0, oldest = UINT32_MAX;
	for (size_t i = 0; i < at.n; i++) {
		newest = at.a[i] > newest ? at.a[i] : newest;
		oldest = at.a[i] < oldest ? at.a[i] : oldest;
	}
	if (newest > now)
		newest = now;
	long long keep = b->o.max_db_size * 3 / 4, r = 0;
	if (keep < BAYES_EXPIRE_KEEP_MIN)
		keep = BAYES_EXPIRE_KEEP_MIN;
	long long goal = (long long)at.n - keep;
	if (at.n && oldest < newest && newest - oldest >= BAYES_EXPIRE_PERIOD && goal >= 1000) {
		long long gone[BAYES_EXPIRE_MAX_EXP + 2] = {0}; /* gone[k]: older than period << k */
		for (size_t i = 0; i < at.n; i++) {
			uint64_t age = at.a[i] < newest ? newest - at.a[i] : 0;
			for (int k = 0;
			     k <= BAYES_EXPIRE_MAX_EXP && age >= (uint64_t)BAYES_EXPIRE_PERIOD << k; k++)
				gone[k]++;
		}
		int k = 0;
		for (int j = BAYES_EXPIRE_MAX_EXP; j >= 0; j--)
			if (gone[j] > goal) {
				k = j + 1;
				break;
			}
		if (k <= BAYES_EXPIRE_MAX_EXP && gone[k] >= 1000) {
			uint64_t d = (uint64_t)BAYES_EXPIRE_PERIOD << k;
			r = b->st->ops->expire(b->st, d < newest ? (uint32_t)(newest - d) : 0);
		}
	}
	free(at.a);
	return r;
}

/* ---- sa-learn --backup ------------------------------------------------- */

/* A count of a dump: decimal digits, at most 2^32 - 1 (what the store
 * keeps), or -1: a count that would wrap is refused, not cut. */
static int parse_u32(const char *s, uint32_t *v)
{
	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 10)
		return -1;
	unsigned long long x = strtoull(s, NULL, 10);
	if (x > UINT32_MAX)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

static int import_line(char *line, btok *t, struct bcounts *c, long long *ns, long long *nh, int *what)
{
	line[strcspn(line, "\r\n")] = 0;
	char *f[6] = {0};
	int nf = 0;
	for (char *p = line; nf < 6;) {
		f[nf++] = p;
		char *tab = strchr(p, '\t');
		if (!tab)
			break;
		*tab = 0;
		p = tab + 1;
	}
	*what = 0;
	if (nf >= 3 && strcmp(f[0], "v") == 0) {
		if (strncmp(f[2], "db_version", 10) == 0 && atoi(f[1]) != 3)
			return -1;
		uint32_t v = 0;
		bool count = strcmp(f[2], "num_spam") == 0 || strcmp(f[2], "num_nonspam") == 0;
		if (count && parse_u32(f[1], &v) < 0)
			return -1;
		if (strcmp(f[2], "num_spam") == 0)
			*ns = v;
		else if (strcmp(f[2], "num_nonspam") == 0)
			*nh = v;
		return 0;
	}
	if (nf >= 5 && strcmp(f[0], "t") == 0) {
		if (strlen(f[4]) != 10)
			return -1;
		char *end;
		*t = strtoull(f[4], &end, 16);
		if (*end)
			return -1;
		if (parse_u32(f[1], &c->s) < 0 || parse_u32(f[2], &c->h) < 0 ||
		    parse_u32(f[3], &c->atime) < 0)
			return -1;
		*what = 't';
		return 0;
	}
	if (nf >= 3 && strcmp(f[0], "s") == 0) {
		*what = 's';
		return 0;
	}
	return nf == 1 && !*f[0] ? 0 : -1;
}

/* The longest line of a dump: a token line is some 40 bytes, a seen line
 * a Message-ID's hash. */
#define IMPORT_LINE_MAX 4096

/* The next line of f into line (NUL-terminated, newline kept): its length,
 * 0 at the end, -1 when it is longer than IMPORT_LINE_MAX. */
static ssize_t import_getline(FILE *f, char line[IMPORT_LINE_MAX + 1])
{
	size_t n = 0;
	int c;
	while ((c = getc_unlocked(f)) != EOF) {
		if (n == IMPORT_LINE_MAX)
			return -1;
		line[n++] = (char)c;
		if (c == '\n')
			break;
	}
	line[n] = 0;
	return (ssize_t)n;
}

long long bayes_import(struct bayes *b, FILE *f, char **err_r)
{
	char *line = xmalloc(IMPORT_LINE_MAX + 1);
	long long ns = 0, nh = 0, n = 0, lineno = 0;
	size_t bn = 0, bcap = 4096;
	btok *tv = xmalloc(bcap * sizeof(btok));
	struct bcounts *cv = xmalloc(bcap * sizeof(struct bcounts));
	int rc = 0;
	ssize_t got;
	while ((got = import_getline(f, line)) != 0) {
		lineno++;
		if (got < 0) {
			if (asprintf(err_r, "line %lld: longer than %d bytes: not an sa-learn --backup line",
				     lineno, IMPORT_LINE_MAX) < 0)
				*err_r = NULL;
			rc = -1;
			break;
		}
		int what;
		if (import_line(line, &tv[bn], &cv[bn], &ns, &nh, &what) < 0) {
			if (asprintf(err_r, "line %lld: not an sa-learn --backup line (db_version 3)",
				     lineno) < 0)
				*err_r = NULL;
			rc = -1;
			break;
		}
		if (what == 't' && ++bn == bcap) {
			if (b->st->ops->put(b->st, tv, cv, bn, -1, -1) < 0) {
				rc = -1;
				break;
			}
			n += (long long)bn;
			bn = 0;
		} else if (what == 's') {
			/* "s\tFLAG\tMSGID": remembered as learned */
			char *fl = line + 2, *id = bayes_seen_id(strchr(fl, 0) + 1);
			int r = b->st->ops->apply(b->st, NULL, 0, *fl == 's', 0, 0, id,
						  *fl == 's' ? 's' : 'h', BSTORE_ANY);
			free(id);
			if (r < 0) {
				rc = -1;
				break;
			}
		}
	}
	if (rc == 0 && b->st->ops->put(b->st, tv, cv, bn, ns, nh) < 0)
		rc = -1;
	if (rc == 0)
		n += (long long)bn;
	if (rc < 0 && !*err_r && asprintf(err_r, "cannot write to the Bayes store") < 0)
		*err_r = NULL;
	free(line);
	free(tv);
	free(cv);
	return rc < 0 ? -1 : n;
}

static void sha1_hex(const void *d, size_t n, char hex[41])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	SHA1(d, n, md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

char *bayes_seen_id(const char *msgid)
{
	size_t n = msgid ? strlen(msgid) : 0;
	if (n <= BAYES_SEEN_ID_MAX)
		return xstrdup(msgid ? msgid : "");
	char hex[41];
	sha1_hex(msgid, n, hex);
	return xasprintf("%s@sift_long_id", hex);
}

char *bayes_msgid(const struct sift_mime *mime)
{
	const char *to = "", *date = "";
	for (size_t i = 0; i < mime->header_count; i++) {
		const struct sift_mime_header *h = &mime->headers[i];
		if (strcasecmp(h->name, "Message-ID") == 0 && h->value[0])
			return xstrdup(h->value);
		if (!*to && strcasecmp(h->name, "To") == 0)
			to = h->value;
		if (!*date && strcasecmp(h->name, "Date") == 0)
			date = h->value;
	}
	unsigned char bd[SHA_DIGEST_LENGTH], d[SHA_DIGEST_LENGTH];
	SHA1(mime->body ? mime->body : (const unsigned char *)"", mime->body_len, bd);
	char bhex[41];
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(bhex + 2 * i, 3, "%02x", bd[i]);
	char *s = xasprintf("%s%c%s%c%s", to, 0, date, 0, bhex);
	size_t n = strlen(to) + strlen(date) + 2 + 40;
	SHA1((const unsigned char *)s, n, d);
	free(s);
	char hex[41];
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	return xasprintf("%s@sa_generated", hex);
}
