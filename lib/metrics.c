/*
 * metrics.c - the counters behind /metrics, /status.json and siftctl
 * status: what the daemon did (messages or requests by profile and action,
 * per-plugin verdicts, errors and latency, symbols, connections, reloads),
 * with the last minutes' history and the last messages.
 *
 * The hot path takes no lock: every counter is an atomic of its own,
 * added to with relaxed order (a reader sees each counter exact, the set
 * of them a moment apart). Tables have fixed sizes: plugins and gauges are
 * registered by name under a mutex (at generation build and at a plugin's
 * report, not per message); symbols go into an open-addressing table whose
 * entries are claimed by compare-and-swap.
 *
 * History: the cumulative action totals are copied into the slot of the
 * current minute by the first message of every minute (before it counts
 * itself). A minute's count is then the difference between the snapshot
 * of the first minute after it that has one and its own (the current
 * totals stand for the minute to come). That is exact but for the
 * messages of the new minute that other threads count while the first
 * one copies the totals (microseconds): they count in the minute before.
 *
 * The last messages: a ring of fixed-size slots; a writer claims the next
 * slot and holds it with a flag while it copies (bounded strings, no
 * allocation); a reader holds each slot the same way while it copies it
 * out. A writer that finds its slot held (a reader copying it) drops its
 * entry rather than wait.
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sift.h"
#include "metrics_int.h"

const char *const sift_maction_names[SIFT_MA_MAX] = {"accept",	   "reject", "tempfail", "discard", "hold",
						     "quarantine", "defer",  "dunno",	 "prepend", "other"};
const double sift_metrics_bounds[SIFT_METRICS_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct metrics M = {.reg_lock = PTHREAD_MUTEX_INITIALIZER};

void sift_metrics_init(enum sift_daemon daemon)
{
	M.daemon = daemon;
	M.started = metrics_wall_now();
}

int sift_metrics_plugin_slot(const char *name)
{
	pthread_mutex_lock(&M.reg_lock);
	int slot = -1;
	int n = atomic_load(&M.nplugins);
	for (int i = 0; i < n; i++)
		if (strcmp(M.plugins[i].name, name) == 0)
			slot = i;
	if (slot < 0 && n < SIFT_METRICS_MAX_PLUGINS) {
		snprintf(M.plugins[n].name, sizeof(M.plugins[n].name), "%s", name);
		slot = n;
		atomic_store(&M.nplugins, n + 1);
	}
	pthread_mutex_unlock(&M.reg_lock);
	return slot;
}

void sift_metrics_conn(int delta)
{
	atomic_fetch_add_explicit(&M.conn_current, delta, memory_order_relaxed);
	if (delta > 0)
		atomic_fetch_add_explicit(&M.conn_total, 1, memory_order_relaxed);
}

void sift_metrics_generation(void)
{
	atomic_fetch_add_explicit(&M.generation, 1, memory_order_relaxed);
}

static void add(atomic_ullong *c, unsigned long long n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void metrics_hist_observe(struct mhist *h, long long ns)
{
	double s = ns / 1e9;
	int b = 0;
	while (b < SIFT_METRICS_BUCKETS && s > sift_metrics_bounds[b])
		b++;
	add(&h->buckets[b], 1);
	add(&h->sum_ns, ns > 0 ? (unsigned long long)ns : 0);
}

/* The index of an action word: filterd's summary words, policyd's reply
 * (OK, DUNNO, REJECT or 5xx, DEFER or 4xx, DISCARD, HOLD, PREPEND, ...). */
static enum sift_maction action_index(const char *a)
{
	static const struct {
		const char *word;
		enum sift_maction ma;
	} words[] = {
		{"accept", SIFT_MA_ACCEPT},
		{"ok", SIFT_MA_ACCEPT},
		{"reject", SIFT_MA_REJECT},
		{"tempfail", SIFT_MA_TEMPFAIL},
		{"defer", SIFT_MA_DEFER},
		{"defer_if_permit", SIFT_MA_DEFER},
		{"defer_if_reject", SIFT_MA_DEFER},
		{"discard", SIFT_MA_DISCARD},
		{"hold", SIFT_MA_HOLD},
		{"quarantine", SIFT_MA_QUARANTINE},
		{"dunno", SIFT_MA_DUNNO},
		{"prepend", SIFT_MA_PREPEND},
	};
	if (!a || !*a)
		return SIFT_MA_OTHER;
	if (a[0] == '5')
		return SIFT_MA_REJECT;
	if (a[0] == '4')
		return SIFT_MA_DEFER;
	size_t n = strcspn(a, " \t");
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strlen(words[i].word) == n && strncasecmp(a, words[i].word, n) == 0)
			return words[i].ma;
	return SIFT_MA_OTHER;
}

/* The history snapshot of the minute now is in, taken by the first
 * message of that minute before it counts itself. Only forward: a thread
 * that read the clock in minute m and ran after another took minute m+1
 * must not move the history back and overwrite m's snapshot. */
static void history_tick(long long minute)
{
	long long last = atomic_load_explicit(&M.last_minute, memory_order_relaxed);
	do {
		if (minute <= last)
			return;
	} while (!atomic_compare_exchange_weak(&M.last_minute, &last, minute));
	struct msnap *sn = &M.snaps[minute % METRICS_HISTORY_SLOTS];
	atomic_store(&sn->minute, -1);
	for (int a = 0; a < SIFT_MA_MAX; a++) {
		unsigned long long t = 0;
		for (int p = 0; p < SIFT_PROFILE_MAX; p++)
			t += atomic_load_explicit(&M.actions[p][a], memory_order_relaxed);
		atomic_store_explicit(&sn->counts[a], t, memory_order_relaxed);
	}
	atomic_store(&sn->minute, minute);
}

static uint64_t sym_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h ? h : 1;
}

/* One hit of a symbol: found or claimed in a bounded probe. */
static void symbol_hit(const char *name)
{
	size_t n = strnlen(name, METRICS_SYM_LEN - 1);
	uint64_t h = sym_hash(name, n);
	for (unsigned k = 0; k < METRICS_SYM_PROBES; k++) {
		struct msym *e = &M.syms[(h + k) & (SIFT_METRICS_MAX_SYMBOLS - 1)];
		uint64_t key = atomic_load_explicit(&e->key, memory_order_acquire);
		if (key == 0) {
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong(&e->key, &zero, h)) {
				memcpy(e->name, name, n);
				e->name[n] = 0;
				add(&e->hits, 1);
				atomic_store_explicit(&e->ready, 1, memory_order_release);
				return;
			}
			key = zero; /* claimed meanwhile: by this symbol? */
		}
		if (key == h) {
			add(&e->hits, 1);
			return;
		}
	}
	add(&M.syms_dropped, 1);
}

/* Copies src into dst (size octets), cut if longer at a character
 * boundary: a UTF-8 sequence (an SMTPUTF8 address) is not split, so the
 * status page does not show the first octets of a cut character. */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = src ? strnlen(src, size - 1) : 0;
	if (n == size - 1 && src[n])
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	if (n)
		memcpy(dst, src, n);
	dst[n] = 0;
}

/* Copies the message into the next slot of the ring of recent messages. */
static void recent_add(struct sift_ctx *ctx, enum sift_maction a, double now)
{
	unsigned long long seq = atomic_fetch_add_explicit(&M.recent_seq, 1, memory_order_relaxed) + 1;
	struct mrecent *e = &M.recent[seq % METRICS_RECENT];
	if (atomic_flag_test_and_set_explicit(&e->busy, memory_order_acquire))
		return; /* a reader holds it: drop this one */
	const struct sift_result *r = sift_ctx_result(ctx);
	e->time = now;
	e->profile = (unsigned char)sift_ctx_profile(ctx);
	e->action = (unsigned char)a;
	e->score = r->score;
	copy_str(e->qid, sizeof(e->qid), sift_ctx_get(ctx, SIFT_I_QUEUE_ID));
	copy_str(e->from, sizeof(e->from), sift_ctx_get(ctx, SIFT_I_SENDER));
	const struct sift_host *h = &sift_host_table;
	if (M.daemon == SIFT_POLICYD) {
		/* a request: its own recipient, if it has one */
		const char *rcpt = sift_ctx_get(ctx, SIFT_I_RCPT);
		e->nto = e->nto_all = rcpt ? 1 : 0;
		if (rcpt)
			copy_str(e->to[0], sizeof(e->to[0]), rcpt);
	} else {
		size_t nr = h->rcpt_count(ctx);
		e->nto = 0;
		for (size_t i = 0; i < nr && i < METRICS_RECENT_TO; i++)
			copy_str(e->to[e->nto++], sizeof(e->to[0]), h->rcpt(ctx, i));
		e->nto_all = (unsigned)nr;
	}
	e->nsym = 0;
	for (const struct sift_symbol *s = r->symbols; s && e->nsym < METRICS_RECENT_SYMS; s = s->next)
		copy_str(e->sym[e->nsym++], sizeof(e->sym[0]), s->name);
	atomic_store_explicit(&e->seq, seq, memory_order_relaxed);
	atomic_flag_clear_explicit(&e->busy, memory_order_release);
}

void sift_metrics_record(struct sift_ctx *ctx, const char *action)
{
	enum sift_maction a = action_index(action);
	if (sift_ctx_quarantined(ctx) && M.daemon != SIFT_POLICYD)
		a = SIFT_MA_QUARANTINE;
	enum sift_profile pr = sift_ctx_profile(ctx);
	if ((unsigned)pr >= SIFT_PROFILE_MAX)
		pr = SIFT_INBOUND;
	double now = metrics_wall_now();
	history_tick((long long)(now / 60));
	add(&M.actions[pr][a], 1);

	struct sift_pstat *ps;
	size_t n = sift_ctx_pstats(ctx, &ps);
	struct sift_gen *g = sift_ctx_gen(ctx);
	long long whole = 0;
	for (size_t i = 0; i < n; i++) {
		if (!ps[i].ran)
			continue;
		whole += ps[i].ns;
		int slot = sift_gen_plugin_slot(g, i);
		if (slot >= 0) {
			struct mplugin *mp = &M.plugins[slot];
			unsigned v = ps[i].verdict < SIFT_VERDICT_MAX ? ps[i].verdict : SIFT_ERROR;
			add(&mp->verdicts[v], 1);
			if (v == SIFT_ERROR)
				add(&mp->errors, 1);
			if (ps[i].mapped == SIFT_TEMPFAIL)
				add(&mp->tempfails, 1);
			metrics_hist_observe(&mp->latency, ps[i].ns);
		}
	}
	memset(ps, 0, n * sizeof(*ps));
	metrics_hist_observe(&M.whole, whole);
	for (const struct sift_symbol *s = sift_ctx_result(ctx)->symbols; s; s = s->next)
		symbol_hit(s->name);
	recent_add(ctx, a, now);
}

static bool gauge_name_ok(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_') ||
		    n >= max)
			return false;
	return n > 0;
}

void sift_metrics_gauge_set(const char *plugin, const char *name, double value)
{
	if (!plugin || !name || !gauge_name_ok(plugin, sizeof(M.gauges[0].plugin) - 1) ||
	    !gauge_name_ok(name, sizeof(M.gauges[0].name) - 1) || !isfinite(value))
		return;
	pthread_mutex_lock(&M.reg_lock);
	int n = atomic_load(&M.ngauges), i;
	for (i = 0; i < n; i++)
		if (strcmp(M.gauges[i].plugin, plugin) == 0 && strcmp(M.gauges[i].name, name) == 0)
			break;
	if (i == n && n < SIFT_METRICS_MAX_GAUGES) {
		snprintf(M.gauges[n].plugin, sizeof(M.gauges[n].plugin), "%s", plugin);
		snprintf(M.gauges[n].name, sizeof(M.gauges[n].name), "%s", name);
		atomic_store(&M.ngauges, n + 1);
	}
	if (i < SIFT_METRICS_MAX_GAUGES)
		M.gauges[i].value = value;
	pthread_mutex_unlock(&M.reg_lock);
}

/* ---- reading ---------------------------------------------------------------- */

bool metrics_gauge_get(const char *plugin, const char *name, double *v_r)
{
	bool found = false;
	pthread_mutex_lock(&M.reg_lock);
	int n = atomic_load(&M.ngauges);
	for (int i = 0; i < n && !found; i++)
		if (strcmp(M.gauges[i].plugin, plugin) == 0 && strcmp(M.gauges[i].name, name) == 0) {
			*v_r = M.gauges[i].value;
			found = true;
		}
	pthread_mutex_unlock(&M.reg_lock);
	return found;
}

int metrics_gauges(struct mgauge *out)
{
	pthread_mutex_lock(&M.reg_lock);
	int n = atomic_load(&M.ngauges);
	memcpy(out, M.gauges, (size_t)n * sizeof(*out));
	pthread_mutex_unlock(&M.reg_lock);
	return n;
}

void metrics_hist_read(struct mhist *h, struct mhist_view *v)
{
	v->count = 0;
	for (int b = 0; b <= SIFT_METRICS_BUCKETS; b++) {
		v->buckets[b] = atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
		v->count += v->buckets[b];
	}
	v->sum = atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9;
}

/* A quantile estimated from the buckets (linear within a bucket; the
 * +Inf bucket gives its lower bound). */
double metrics_hist_quantile(const struct mhist_view *v, double q)
{
	if (v->count == 0)
		return 0;
	double rank = q * (double)v->count, cum = 0;
	for (int b = 0; b <= SIFT_METRICS_BUCKETS; b++) {
		double c = (double)v->buckets[b];
		if (cum + c >= rank && c > 0) {
			if (b == SIFT_METRICS_BUCKETS)
				return sift_metrics_bounds[SIFT_METRICS_BUCKETS - 1];
			double lo = b ? sift_metrics_bounds[b - 1] : 0, hi = sift_metrics_bounds[b];
			return lo + (hi - lo) * ((rank - cum) / c);
		}
		cum += c;
	}
	return sift_metrics_bounds[SIFT_METRICS_BUCKETS - 1];
}

/* The action totals of every profile. */
static void action_totals(unsigned long long t[SIFT_MA_MAX])
{
	for (int a = 0; a < SIFT_MA_MAX; a++) {
		t[a] = 0;
		for (int p = 0; p < SIFT_PROFILE_MAX; p++)
			t[a] += atomic_load_explicit(&M.actions[p][a], memory_order_relaxed);
	}
}

int metrics_history(double now, struct mpoint points[METRICS_HISTORY])
{
	long long cur = (long long)(now / 60);
	struct {
		long long minute;
		unsigned long long c[SIFT_MA_MAX];
	} snaps[METRICS_HISTORY_SLOTS];
	int ns = 0;
	for (int i = 0; i < METRICS_HISTORY_SLOTS; i++) {
		struct msnap *sn = &M.snaps[i];
		long long m1 = atomic_load(&sn->minute);
		if (m1 < cur - METRICS_HISTORY + 1 || m1 > cur)
			continue;
		for (int a = 0; a < SIFT_MA_MAX; a++)
			snaps[ns].c[a] = atomic_load_explicit(&sn->counts[a], memory_order_relaxed);
		if (atomic_load(&sn->minute) != m1)
			continue; /* rewritten meanwhile */
		snaps[ns++].minute = m1;
	}
	unsigned long long totals[SIFT_MA_MAX];
	action_totals(totals);
	/* S(m): the earliest snapshot at or after minute m, else the totals. */
	for (int k = 0; k < METRICS_HISTORY; k++) {
		long long m = cur - METRICS_HISTORY + 1 + k;
		const unsigned long long *s0 = totals, *s1 = totals;
		long long b0 = LLONG_MAX, b1 = LLONG_MAX;
		for (int i = 0; i < ns; i++) {
			if (snaps[i].minute >= m && snaps[i].minute < b0) {
				b0 = snaps[i].minute;
				s0 = snaps[i].c;
			}
			if (snaps[i].minute >= m + 1 && snaps[i].minute < b1) {
				b1 = snaps[i].minute;
				s1 = snaps[i].c;
			}
		}
		points[k].t = (double)(m * 60);
		for (int a = 0; a < SIFT_MA_MAX; a++)
			points[k].c[a] = s1[a] >= s0[a] ? s1[a] - s0[a] : 0;
	}
	return METRICS_HISTORY;
}

int metrics_recent(struct mrecent *out, int max)
{
	unsigned long long top = atomic_load(&M.recent_seq);
	int n = 0;
	for (unsigned long long k = 0; k < METRICS_RECENT && k < top && n < max; k++) {
		struct mrecent *e = &M.recent[(top - k) % METRICS_RECENT];
		int spins = 0;
		while (atomic_flag_test_and_set_explicit(&e->busy, memory_order_acquire))
			if (++spins > 1000) {
				sched_yield();
				spins = 0;
			}
		unsigned long long seq = atomic_load(&e->seq);
		if (seq && seq + METRICS_RECENT > top) {
			memcpy(&out[n], e, sizeof(*e));
			out[n].seq = seq;
			n++;
		}
		atomic_flag_clear_explicit(&e->busy, memory_order_release);
	}
	/* newest first */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && out[j].seq > out[j - 1].seq; j--) {
			struct mrecent t;
			memcpy(&t, &out[j], sizeof(t));
			memcpy(&out[j], &out[j - 1], sizeof(t));
			memcpy(&out[j - 1], &t, sizeof(t));
		}
	return n;
}

static int sym_cmp(const void *a, const void *b)
{
	const struct msym_view *x = a, *y = b;
	if (x->hits != y->hits)
		return x->hits < y->hits ? 1 : -1;
	return strcmp(x->name, y->name);
}

int metrics_top_symbols(struct msym_view *out, int max)
{
	struct msym_view *all = sift_malloc(SIFT_METRICS_MAX_SYMBOLS * sizeof(*all));
	int n = 0;
	for (int i = 0; i < SIFT_METRICS_MAX_SYMBOLS; i++) {
		struct msym *e = &M.syms[i];
		if (!atomic_load_explicit(&e->ready, memory_order_acquire))
			continue;
		memcpy(all[n].name, e->name, sizeof(all[n].name));
		all[n].hits = atomic_load_explicit(&e->hits, memory_order_relaxed);
		n++;
	}
	qsort(all, (size_t)n, sizeof(*all), sym_cmp);
	if (n > max)
		n = max;
	memcpy(out, all, (size_t)n * sizeof(*out));
	free(all);
	return n;
}
