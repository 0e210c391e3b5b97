/*
 * metrics_out.c - the counters of metrics.c as the Prometheus text format
 * (0.0.4), as the status JSON document and as siftctl status's summary,
 * with what is read when asked: the process (/proc/self), the quarantine
 * (its directory, read at most every QUAR_CACHE_S seconds), the resolver's
 * counters and the reloads.
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sift.h"
#include "metrics_int.h"

#define QUAR_CACHE_S 10

double metrics_wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- what is read when asked ------------------------------------------------ */

void metrics_proc_read(struct proc_info *p)
{
	memset(p, 0, sizeof(*p));
	char *data = NULL;
	size_t len = 0;
	if (sift_read_file("/proc/self/stat", 4096, &data, &len) == 0) {
		/* fields after the command name's closing parenthesis */
		const char *s = strrchr(data, ')');
		unsigned long long ut = 0, st = 0, start = 0, vsize = 0;
		long long rss = 0, threads = 0;
		if (s && sscanf(s + 2,
				"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %lld "
				"%*d %llu %llu %lld",
				&ut, &st, &threads, &start, &vsize, &rss) == 6) {
			double hz = (double)sysconf(_SC_CLK_TCK);
			p->cpu = (double)(ut + st) / hz;
			p->threads = threads;
			p->vsize = (long long)vsize;
			p->rss = rss * sysconf(_SC_PAGESIZE);
			char *up = NULL;
			size_t ul = 0;
			double uptime = 0;
			if (sift_read_file("/proc/uptime", 256, &up, &ul) == 0)
				uptime = strtod(up, NULL);
			free(up);
			p->start = metrics_wall_now() - uptime + (double)start / hz;
		}
	}
	free(data);
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				p->fds++;
		closedir(d);
		p->fds--; /* the directory's own */
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		p->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (long long)rl.rlim_cur;
}

static struct {
	pthread_mutex_t lock;
	double when;
	char *dir;
	struct quar_info q;
} qcache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void quar_clear(struct quar_info *q)
{
	for (size_t i = 0; i < q->nitems; i++)
		sift_qentry_free(&q->items[i]);
	memset(q, 0, sizeof(*q));
}

/* Calls fn with the quarantine's figures (read again when older than
 * QUAR_CACHE_S seconds or of another directory), under the cache's lock. */
void metrics_quar_with(const char *dir, void (*fn)(const struct quar_info *q, void *arg), void *arg)
{
	pthread_mutex_lock(&qcache.lock);
	double now = metrics_wall_now();
	if (!qcache.dir || strcmp(qcache.dir, dir) != 0 || now - qcache.when > QUAR_CACHE_S) {
		quar_clear(&qcache.q);
		free(qcache.dir);
		qcache.dir = sift_strdup(dir);
		qcache.when = now;
		struct sift_qentry *list = NULL;
		size_t n = 0;
		char *err = NULL;
		if (sift_quarantine_list(dir, &list, &n, &err) == 0) {
			qcache.q.ok = true;
			qcache.q.count = (long long)n;
			for (size_t i = 0; i < n; i++) {
				qcache.q.bytes += list[i].size;
				/* the list is oldest first */
				if (n - i <= METRICS_QUAR_ITEMS)
					qcache.q.items[n - 1 - i] = list[i];
				else
					sift_qentry_free(&list[i]);
			}
			qcache.q.nitems = n < METRICS_QUAR_ITEMS ? n : METRICS_QUAR_ITEMS;
		}
		free(err);
		free(list);
	}
	fn(&qcache.q, arg);
	pthread_mutex_unlock(&qcache.lock);
}

/* ---- Prometheus ---------------------------------------------------------------- */

static const char *prefix(void)
{
	return M.daemon == SIFT_POLICYD ? "sift_policyd" : "sift_filterd";
}

static void prom_head(struct sift_buf *b, const char *name, const char *type, const char *help)
{
	sift_buf_printf(b, "# HELP %s_%s %s\n# TYPE %s_%s %s\n", prefix(), name, help, prefix(), name, type);
}

/* A label value: '\', '"' and newline escaped. */
static void prom_label(struct sift_buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			sift_buf_printf(b, "\\%c", *s);
		else if (*s == '\n')
			sift_buf_adds(b, "\\n");
		else
			sift_buf_add(b, s, 1);
	}
}

/* A sample value that reads back as the same double: a Unix time
 * (process_start_time_seconds, ..._last_reload_timestamp_seconds) keeps
 * its fraction (with "%.9g" it was rounded to 10 s). The shortest of
 * 15 and 17 significant digits that round-trips: 0.1 stays "0.1". */
static void prom_num(struct sift_buf *b, double v)
{
	if (v == floor(v) && fabs(v) < 1e15) {
		sift_buf_printf(b, "%.0f\n", v);
		return;
	}
	char s[40];
	snprintf(s, sizeof(s), "%.15g", v);
	if (isfinite(v) && strtod(s, NULL) != v)
		snprintf(s, sizeof(s), "%.17g", v);
	sift_buf_printf(b, "%s\n", s);
}

static void prom_hist(struct sift_buf *b, const char *name, const char *label, const char *value,
		      struct mhist *h)
{
	struct mhist_view v;
	metrics_hist_read(h, &v);
	unsigned long long cum = 0;
	for (int i = 0; i <= SIFT_METRICS_BUCKETS; i++) {
		cum += v.buckets[i];
		sift_buf_printf(b, "%s_%s_bucket{", prefix(), name);
		if (label) {
			sift_buf_printf(b, "%s=\"", label);
			prom_label(b, value);
			sift_buf_adds(b, "\",");
		}
		if (i < SIFT_METRICS_BUCKETS)
			sift_buf_printf(b, "le=\"%g\"} %llu\n", sift_metrics_bounds[i], cum);
		else
			sift_buf_printf(b, "le=\"+Inf\"} %llu\n", cum);
	}
	for (int k = 0; k < 2; k++) {
		sift_buf_printf(b, "%s_%s_%s", prefix(), name, k ? "count" : "sum");
		if (label) {
			sift_buf_printf(b, "{%s=\"", label);
			prom_label(b, value);
			sift_buf_adds(b, "\"}");
		}
		if (k)
			sift_buf_printf(b, " %llu\n", v.count);
		else
			sift_buf_printf(b, " %.9f\n", v.sum);
	}
}

static void prom_actions(struct sift_buf *b)
{
	bool pol = M.daemon == SIFT_POLICYD;
	const char *unit = pol ? "requests" : "messages";
	char name[32];
	snprintf(name, sizeof(name), "%s_total", unit);
	prom_head(b, name, "counter",
		  pol ? "Policy requests answered, by profile and action"
		      : "Messages ended, by profile and action (a quarantined message counts as quarantine)");
	for (int p = 0; p < SIFT_PROFILE_MAX; p++)
		for (int a = 0; a < SIFT_MA_MAX; a++) {
			unsigned long long v = atomic_load_explicit(&M.actions[p][a], memory_order_relaxed);
			sift_buf_printf(b, "%s_%s{profile=\"%s\",action=\"%s\"} %llu\n", prefix(), name,
					sift_profile_names[p], sift_maction_names[a], v);
		}
	snprintf(name, sizeof(name), "%s_duration_seconds", pol ? "request" : "message");
	prom_head(b, name, "histogram",
		  pol ? "Time the plugins took for a request" : "Time the plugins took for a message");
	prom_hist(b, name, NULL, NULL, &M.whole);
}

static void prom_plugins(struct sift_buf *b)
{
	int n = atomic_load(&M.nplugins);
	prom_head(b, "plugin_verdicts_total", "counter",
		  "Each plugin's verdict per message or request (dunno: it let it pass)");
	for (int i = 0; i < n; i++)
		for (int v = 0; v < SIFT_VERDICT_MAX; v++)
			sift_buf_printf(b, "%s_plugin_verdicts_total{plugin=\"%s\",verdict=\"%s\"} %llu\n",
					prefix(), M.plugins[i].name, sift_verdict_names[v],
					(unsigned long long)atomic_load(&M.plugins[i].verdicts[v]));
	prom_head(b, "plugin_errors_total", "counter", "Internal errors of each plugin");
	for (int i = 0; i < n; i++)
		sift_buf_printf(b, "%s_plugin_errors_total{plugin=\"%s\"} %llu\n", prefix(),
				M.plugins[i].name, (unsigned long long)atomic_load(&M.plugins[i].errors));
	prom_head(b, "plugin_tempfails_total", "counter",
		  "Temporary failures each plugin gave (its errors mapped to tempfail included)");
	for (int i = 0; i < n; i++)
		sift_buf_printf(b, "%s_plugin_tempfails_total{plugin=\"%s\"} %llu\n", prefix(),
				M.plugins[i].name, (unsigned long long)atomic_load(&M.plugins[i].tempfails));
	prom_head(b, "plugin_duration_seconds", "histogram",
		  "Time each plugin's hooks took per message or request");
	for (int i = 0; i < n; i++)
		prom_hist(b, "plugin_duration_seconds", "plugin", M.plugins[i].name, &M.plugins[i].latency);
}

static void prom_symbols(struct sift_buf *b, long top)
{
	if (top > SIFT_METRICS_MAX_SYMBOLS)
		top = SIFT_METRICS_MAX_SYMBOLS;
	struct msym_view *s = sift_malloc((size_t)(top > 0 ? top : 1) * sizeof(*s));
	int n = metrics_top_symbols(s, (int)top);
	prom_head(b, "symbol_hits_total", "counter",
		  "Hits of the most frequent symbols (metrics_symbols of them)");
	for (int i = 0; i < n; i++) {
		sift_buf_printf(b, "%s_symbol_hits_total{symbol=\"", prefix());
		prom_label(b, s[i].name);
		sift_buf_printf(b, "\"} %llu\n", s[i].hits);
	}
	free(s);
	prom_head(b, "symbols_dropped_total", "counter",
		  "Symbol hits not counted by name: the table of distinct symbols was full");
	sift_buf_printf(b, "%s_symbols_dropped_total %llu\n", prefix(),
			(unsigned long long)atomic_load(&M.syms_dropped));
}

static void prom_gauges(struct sift_buf *b)
{
	struct mgauge g[SIFT_METRICS_MAX_GAUGES];
	int n = metrics_gauges(g);
	for (int i = 0; i < n; i++) {
		char *name = sift_asprintf("%s_%s", g[i].plugin, g[i].name);
		prom_head(b, name, "gauge", "Reported by the plugin");
		sift_buf_printf(b, "%s_%s ", prefix(), name);
		prom_num(b, g[i].value);
		free(name);
	}
}

static void prom_quar(const struct quar_info *q, void *arg)
{
	struct sift_buf *b = arg;
	if (!q->ok)
		return;
	prom_head(b, "quarantine_messages", "gauge", "Messages in the quarantine");
	sift_buf_printf(b, "%s_quarantine_messages %lld\n", prefix(), q->count);
	prom_head(b, "quarantine_bytes", "gauge", "Size of the messages in the quarantine");
	sift_buf_printf(b, "%s_quarantine_bytes %lld\n", prefix(), q->bytes);
}

static void prom_simple(struct sift_buf *b, const char *name, const char *type, const char *help, double v)
{
	prom_head(b, name, type, help);
	sift_buf_printf(b, "%s_%s ", prefix(), name);
	prom_num(b, v);
}

static void prom_daemon(struct sift_buf *b)
{
	unsigned long long q, t, h;
	sift_dns_stats(&q, &t, &h);
	prom_simple(b, "dns_queries_total", "counter", "DNS queries asked (cache hits included)", (double)q);
	prom_simple(b, "dns_timeouts_total", "counter", "DNS queries that timed out", (double)t);
	prom_simple(b, "dns_cache_hits_total", "counter", "DNS answers from the cache", (double)h);
	struct sift_kv_stats kvs;
	sift_state_store_stats(&kvs);
	prom_simple(b, "state_store_keys", "gauge", "Keys held by a memory: state_store (0 for others)",
		    (double)kvs.keys);
	prom_simple(b, "state_store_evictions_total", "counter",
		    "Keys evicted from a full memory: state_store (max_keys) to make room",
		    (double)kvs.evictions);
	unsigned long reloads;
	double rtime;
	bool rok;
	char text[8];
	sift_control_reload_last(&reloads, &rtime, &rok, text, sizeof(text));
	prom_simple(b, "reloads_total", "counter", "Configuration reloads (failed ones included)",
		    (double)reloads);
	prom_simple(b, "last_reload_success", "gauge", "1 if the last reload succeeded (1 before any)",
		    reloads == 0 || rok ? 1 : 0);
	prom_simple(b, "last_reload_timestamp_seconds", "gauge", "When the last reload ended (0: none yet)",
		    rtime);
	prom_simple(b, "config_generation", "gauge", "Configurations made current since start (1 at start)",
		    (double)atomic_load(&M.generation));
	prom_simple(b, "connections", "gauge", "Connections open now", (double)atomic_load(&M.conn_current));
	prom_simple(b, "connections_total", "counter", "Connections accepted",
		    (double)atomic_load(&M.conn_total));
	struct proc_info p;
	metrics_proc_read(&p);
	prom_simple(b, "threads", "gauge", "Threads of the process", (double)p.threads);
	static const char *const names[] = {
		"resident_memory_bytes", "virtual_memory_bytes", "open_fds", "max_fds",
		"start_time_seconds",	 "cpu_seconds_total"};
	static const char *const helps[] = {"Resident memory size in bytes.",
					    "Virtual memory size in bytes.",
					    "Number of open file descriptors.",
					    "Maximum number of open file descriptors.",
					    "Start time of the process since unix epoch in seconds.",
					    "Total user and system CPU time spent in seconds."};
	double vals[] = {(double)p.rss, (double)p.vsize, (double)p.fds, (double)p.max_fds, p.start, p.cpu};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (i == 3 && p.max_fds < 0)
			continue;
		sift_buf_printf(b, "# HELP process_%s %s\n# TYPE process_%s %s\nprocess_%s ", names[i],
				helps[i], names[i], i == 5 ? "counter" : "gauge", names[i]);
		prom_num(b, vals[i]);
	}
}

void sift_metrics_prometheus(struct sift_buf *b, const char *quarantine_dir, long top_symbols)
{
	prom_head(b, "info", "gauge", "The daemon's version");
	sift_buf_printf(b, "%s_info{version=\"%s\"} 1\n", prefix(), SIFT_VERSION);
	prom_actions(b);
	prom_plugins(b);
	prom_symbols(b, top_symbols);
	prom_gauges(b);
	if (quarantine_dir && *quarantine_dir)
		metrics_quar_with(quarantine_dir, prom_quar, b);
	prom_daemon(b);
}
