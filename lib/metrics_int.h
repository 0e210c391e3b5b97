/*
 * metrics_int.h - the counters of metrics.c shared with their renderers
 * (metrics_out.c) and the bench; not for plugins.
 */
#ifndef SIFT_METRICS_INT_H
#define SIFT_METRICS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sift.h"

#define METRICS_HISTORY	      60 /* one-minute points shown */
#define METRICS_HISTORY_SLOTS 61 /* snapshots kept: the window and the minute after */
#define METRICS_RECENT	      50
#define METRICS_RECENT_TO     4	 /* recipients kept per message */
#define METRICS_RECENT_SYMS   16 /* symbols kept per message */
#define METRICS_ADDR_LEN      256
#define METRICS_SYM_LEN	      64
#define METRICS_SYM_PROBES    32

struct mhist {
	atomic_ullong buckets[SIFT_METRICS_BUCKETS + 1]; /* per bucket (not cumulative), last = +Inf */
	atomic_ullong sum_ns;
};
struct mhist_view {
	unsigned long long buckets[SIFT_METRICS_BUCKETS + 1];
	unsigned long long count;
	double sum; /* seconds */
};

struct mplugin {
	char name[48];
	atomic_ullong verdicts[SIFT_VERDICT_MAX]; /* per message (filterd) or request (policyd) */
	atomic_ullong errors, tempfails;
	struct mhist latency;
};

struct msym {
	_Atomic uint64_t key; /* the name's hash; 0: free */
	atomic_int ready;     /* name written */
	char name[METRICS_SYM_LEN];
	atomic_ullong hits;
};
struct msym_view {
	char name[METRICS_SYM_LEN];
	unsigned long long hits;
};

struct msnap {
	atomic_llong minute; /* -1 while written */
	atomic_ullong counts[SIFT_MA_MAX];
};
struct mpoint {
	double t;
	unsigned long long c[SIFT_MA_MAX];
};

struct mrecent {
	atomic_flag busy;
	atomic_ullong seq; /* 0: empty */
	double time, score;
	unsigned char profile, action, nto, nsym;
	unsigned nto_all;
	char qid[32];
	char from[METRICS_ADDR_LEN];
	char to[METRICS_RECENT_TO][METRICS_ADDR_LEN];
	char sym[METRICS_RECENT_SYMS][METRICS_SYM_LEN];
};

struct mgauge {
	char plugin[24];
	char name[49];
	double value;
};

struct metrics {
	enum sift_daemon daemon;
	double started;
	pthread_mutex_t reg_lock; /* registration of plugins and gauges */
	atomic_int nplugins, ngauges;
	struct mplugin plugins[SIFT_METRICS_MAX_PLUGINS];
	struct mgauge gauges[SIFT_METRICS_MAX_GAUGES];
	atomic_ullong actions[SIFT_PROFILE_MAX][SIFT_MA_MAX];
	struct mhist whole;
	atomic_llong conn_current;
	atomic_ullong conn_total, generation, syms_dropped;
	struct msym syms[SIFT_METRICS_MAX_SYMBOLS];
	atomic_llong last_minute;
	struct msnap snaps[METRICS_HISTORY_SLOTS];
	atomic_ullong recent_seq;
	struct mrecent recent[METRICS_RECENT];
};
extern struct metrics M;

void metrics_hist_observe(struct mhist *h, long long ns);
void metrics_hist_read(struct mhist *h, struct mhist_view *v);
double metrics_hist_quantile(const struct mhist_view *v, double q);
bool metrics_gauge_get(const char *plugin, const char *name, double *v_r);
int metrics_gauges(struct mgauge *out); /* SIFT_METRICS_MAX_GAUGES room */
int metrics_history(double now, struct mpoint points[METRICS_HISTORY]);
int metrics_recent(struct mrecent *out, int max); /* newest first */
int metrics_top_symbols(struct msym_view *out, int max);

#define METRICS_QUAR_ITEMS 20
struct proc_info {
	long long rss, vsize, threads, fds, max_fds;
	double cpu, start;
};
void metrics_proc_read(struct proc_info *p);
struct quar_info {
	bool ok;
	long long count, bytes;
	size_t nitems;
	struct sift_qentry items[METRICS_QUAR_ITEMS]; /* newest first */
};
/* Calls fn with the quarantine's figures (read again when older than 10 s
 * or of another directory), under the cache's lock. */
void metrics_quar_with(const char *dir, void (*fn)(const struct quar_info *q, void *arg), void *arg);
double metrics_wall_now(void);

#endif
