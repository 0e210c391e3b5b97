/*
 * status.c - the daemon's status: the JSON document served at
 * /status.json and by the control socket's "status" command, and the
 * terminal summary of `siftctl status` ("summary" command). Both are read
 * from the counters of metrics.c at the time of asking; every list is
 * bounded (60 history points, 50 recent messages, 20 symbols, 20
 * quarantine items) and every string JSON-escaped.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sift.h"
#include "metrics_int.h"

#define STATUS_SYMS 20

static void jnum(struct sift_buf *b, double v)
{
	if (!isfinite(v))
		sift_buf_adds(b, "null");
	else if (v == floor(v) && fabs(v) < 1e15)
		sift_buf_printf(b, "%.0f", v);
	else
		sift_buf_printf(b, "%.6f", v);
}

static void jkey(struct sift_buf *b, const char *key)
{
	sift_json_str(b, key);
	sift_buf_add(b, ":", 1);
}

/* {"accept": n, ...}: the actions with a count, or all with all. */
static void jactions(struct sift_buf *b, const unsigned long long c[SIFT_MA_MAX], bool all)
{
	sift_buf_add(b, "{", 1);
	bool first = true;
	for (int a = 0; a < SIFT_MA_MAX; a++) {
		if (!all && !c[a])
			continue;
		sift_buf_printf(b, "%s\"%s\":%llu", first ? "" : ",", sift_maction_names[a], c[a]);
		first = false;
	}
	sift_buf_add(b, "}", 1);
}

static void jlatency(struct sift_buf *b, struct mhist *h)
{
	struct mhist_view v;
	metrics_hist_read(h, &v);
	sift_buf_printf(b, "{\"count\":%llu,\"sum\":", v.count);
	jnum(b, v.sum);
	sift_buf_adds(b, ",\"p50\":");
	jnum(b, metrics_hist_quantile(&v, 0.5));
	sift_buf_adds(b, ",\"p99\":");
	jnum(b, metrics_hist_quantile(&v, 0.99));
	sift_buf_add(b, "}", 1);
}

static void j_head(struct sift_buf *b, double now)
{
	struct proc_info p;
	metrics_proc_read(&p);
	sift_buf_printf(b,
			"{\"daemon\":\"%s\",\"version\":", M.daemon == SIFT_POLICYD ? "policyd" : "filterd");
	sift_json_str(b, SIFT_VERSION);
	sift_buf_printf(b, ",\"pid\":%ld,\"started\":", (long)getpid());
	jnum(b, M.started);
	sift_buf_adds(b, ",\"now\":");
	jnum(b, now);
	unsigned long reloads;
	double rtime;
	bool rok;
	char text[1024];
	sift_control_reload_last(&reloads, &rtime, &rok, text, sizeof(text));
	sift_buf_printf(b, ",\"generation\":%llu,\"reloads\":%lu,\"last_reload\":",
			(unsigned long long)atomic_load(&M.generation), reloads);
	if (reloads) {
		sift_buf_adds(b, "{\"time\":");
		jnum(b, rtime);
		sift_buf_printf(b, ",\"ok\":%s,\"text\":", rok ? "true" : "false");
		sift_json_str(b, text);
		sift_buf_add(b, "}", 1);
	} else
		sift_buf_adds(b, "null");
	sift_buf_printf(b, ",\"rss_bytes\":%lld,\"threads\":%lld,\"fds\":%lld", p.rss, p.threads, p.fds);
	sift_buf_printf(b, ",\"connections\":{\"current\":%lld,\"total\":%llu}",
			(long long)atomic_load(&M.conn_current),
			(unsigned long long)atomic_load(&M.conn_total));
}

static void j_counts(struct sift_buf *b)
{
	unsigned long long tot[SIFT_MA_MAX] = {0};
	sift_buf_printf(b, ",\"unit\":\"%s\",\"profiles\":{",
			M.daemon == SIFT_POLICYD ? "requests" : "messages");
	for (int p = 0; p < SIFT_PROFILE_MAX; p++) {
		unsigned long long n = 0;
		for (int a = 0; a < SIFT_MA_MAX; a++) {
			unsigned long long v = atomic_load_explicit(&M.actions[p][a], memory_order_relaxed);
			tot[a] += v;
			n += v;
		}
		sift_buf_printf(b, "%s\"%s\":%llu", p ? "," : "", sift_profile_names[p], n);
	}
	sift_buf_adds(b, "},\"actions\":");
	jactions(b, tot, false);
	sift_buf_adds(b, ",\"latency\":{\"whole\":");
	jlatency(b, &M.whole);
	sift_buf_adds(b, ",\"plugins\":{");
	int n = atomic_load(&M.nplugins);
	for (int i = 0; i < n; i++) {
		if (i)
			sift_buf_add(b, ",", 1);
		jkey(b, M.plugins[i].name);
		jlatency(b, &M.plugins[i].latency);
	}
	sift_buf_adds(b, "}},\"plugins\":[");
	for (int i = 0; i < n; i++) {
		struct mplugin *mp = &M.plugins[i];
		sift_buf_printf(b, "%s{\"name\":", i ? "," : "");
		sift_json_str(b, mp->name);
		sift_buf_printf(b, ",\"errors\":%llu,\"tempfails\":%llu,\"verdicts\":{",
				(unsigned long long)atomic_load(&mp->errors),
				(unsigned long long)atomic_load(&mp->tempfails));
		bool first = true;
		for (int v = 0; v < SIFT_VERDICT_MAX; v++) {
			unsigned long long c = atomic_load(&mp->verdicts[v]);
			if (!c)
				continue;
			sift_buf_printf(b, "%s\"%s\":%llu", first ? "" : ",", sift_verdict_names[v], c);
			first = false;
		}
		sift_buf_adds(b, "}}");
	}
	sift_buf_add(b, "]", 1);
}

static void j_history(struct sift_buf *b, double now)
{
	struct mpoint pts[METRICS_HISTORY];
	int n = metrics_history(now, pts);
	sift_buf_adds(b, ",\"history\":{\"step\":60,\"points\":[");
	for (int i = 0; i < n; i++) {
		sift_buf_printf(b, "%s{\"t\":", i ? "," : "");
		jnum(b, pts[i].t);
		sift_buf_adds(b, ",\"actions\":");
		jactions(b, pts[i].c, false);
		sift_buf_add(b, "}", 1);
	}
	sift_buf_adds(b, "]},\"symbols\":[");
	struct msym_view syms[STATUS_SYMS];
	int ns = metrics_top_symbols(syms, STATUS_SYMS);
	for (int i = 0; i < ns; i++) {
		sift_buf_printf(b, "%s{\"name\":", i ? "," : "");
		sift_json_str(b, syms[i].name);
		sift_buf_printf(b, ",\"hits\":%llu}", syms[i].hits);
	}
	sift_buf_add(b, "]", 1);
}

static void j_recent(struct sift_buf *b)
{
	struct mrecent *r = sift_malloc(METRICS_RECENT * sizeof(*r));
	int n = metrics_recent(r, METRICS_RECENT);
	sift_buf_adds(b, ",\"recent\":[");
	for (int i = 0; i < n; i++) {
		sift_buf_printf(b, "%s{\"time\":", i ? "," : "");
		jnum(b, r[i].time);
		sift_buf_adds(b, ",\"queue_id\":");
		sift_json_str(b, r[i].qid);
		sift_buf_printf(b, ",\"profile\":\"%s\",\"from\":",
				sift_profile_names[r[i].profile < SIFT_PROFILE_MAX ? r[i].profile : 0]);
		sift_json_str(b, r[i].from);
		sift_buf_adds(b, ",\"to\":[");
		for (int k = 0; k < r[i].nto; k++) {
			if (k)
				sift_buf_add(b, ",", 1);
			sift_json_str(b, r[i].to[k]);
		}
		sift_buf_printf(b, "],\"to_count\":%u,\"action\":\"%s\",\"score\":", r[i].nto_all,
				sift_maction_names[r[i].action < SIFT_MA_MAX ? r[i].action : SIFT_MA_OTHER]);
		jnum(b, r[i].score);
		sift_buf_adds(b, ",\"symbols\":[");
		for (int k = 0; k < r[i].nsym; k++) {
			if (k)
				sift_buf_add(b, ",", 1);
			sift_json_str(b, r[i].sym[k]);
		}
		sift_buf_adds(b, "]}");
	}
	sift_buf_add(b, "]", 1);
	free(r);
}

static void j_quar(const struct quar_info *q, void *arg)
{
	struct sift_buf *b = arg;
	if (!q->ok) {
		sift_buf_adds(b, ",\"quarantine\":null");
		return;
	}
	sift_buf_printf(b, ",\"quarantine\":{\"count\":%lld,\"bytes\":%lld,\"items\":[", q->count, q->bytes);
	for (size_t i = 0; i < q->nitems; i++) {
		const struct sift_qentry *e = &q->items[i];
		sift_buf_printf(b, "%s{\"id\":", i ? "," : "");
		sift_json_str(b, e->id);
		sift_buf_printf(b, ",\"time\":%lld,\"queue_id\":", e->time);
		sift_json_str(b, e->queue_id);
		sift_buf_adds(b, ",\"from\":");
		sift_json_str(b, e->sender);
		sift_buf_adds(b, ",\"to\":[");
		for (size_t k = 0; k < e->n_rcpts && k < 20; k++) {
			if (k)
				sift_buf_add(b, ",", 1);
			sift_json_str(b, e->rcpts[k]);
		}
		sift_buf_printf(b, "],\"size\":%lld,\"reason\":", e->size);
		sift_json_str(b, e->reason);
		sift_buf_adds(b, ",\"plugin\":");
		sift_json_str(b, e->plugin);
		sift_buf_add(b, "}", 1);
	}
	sift_buf_adds(b, "]}");
}

static void j_tail(struct sift_buf *b, const char *quarantine_dir, double now)
{
	if (quarantine_dir && *quarantine_dir)
		metrics_quar_with(quarantine_dir, j_quar, b);
	else
		sift_buf_adds(b, ",\"quarantine\":null");
	double ver, ts;
	sift_buf_adds(b, ",\"clamav\":");
	if (metrics_gauge_get("clamav", "database_version", &ver)) {
		bool have_ts = metrics_gauge_get("clamav", "database_timestamp_seconds", &ts);
		sift_buf_adds(b, "{\"version\":");
		jnum(b, ver);
		sift_buf_adds(b, ",\"time\":");
		jnum(b, have_ts ? ts : NAN);
		sift_buf_adds(b, ",\"age\":");
		jnum(b, have_ts ? floor(now - ts) : NAN);
		sift_buf_add(b, "}", 1);
	} else
		sift_buf_adds(b, "null");
	unsigned long long q, t, h;
	sift_dns_stats(&q, &t, &h);
	sift_buf_printf(b, ",\"dns\":{\"queries\":%llu,\"timeouts\":%llu,\"cache_hits\":%llu}}", q, t, h);
}

void sift_metrics_status_json(struct sift_buf *b, const char *quarantine_dir)
{
	double now = metrics_wall_now();
	j_head(b, now);
	j_counts(b);
	j_history(b, now);
	j_recent(b);
	j_tail(b, quarantine_dir, now);
}

/* ---- the terminal summary ------------------------------------------------------ */

static void fmt_age(char *out, size_t n, double secs)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(out, n, "%.0fs", secs);
	else if (secs < 7200)
		snprintf(out, n, "%.0fm", secs / 60);
	else if (secs < 172800)
		snprintf(out, n, "%.1fh", secs / 3600);
	else
		snprintf(out, n, "%.1fd", secs / 86400);
}

static void t_quar(const struct quar_info *q, void *arg)
{
	struct sift_buf *b = arg;
	if (q->ok)
		sift_buf_printf(b, "quarantine:    %lld messages, %lld bytes\n", q->count, q->bytes);
}

static void t_health(struct sift_buf *b, const char *quarantine_dir, double now)
{
	struct proc_info p;
	metrics_proc_read(&p);
	char age[32];
	fmt_age(age, sizeof(age), now - M.started);
	sift_buf_printf(b, "%s %s, pid %ld, up %s, generation %llu\n",
			M.daemon == SIFT_POLICYD ? "policyd" : "filterd", SIFT_VERSION, (long)getpid(), age,
			(unsigned long long)atomic_load(&M.generation));
	unsigned long reloads;
	double rtime;
	bool rok;
	char text[256];
	sift_control_reload_last(&reloads, &rtime, &rok, text, sizeof(text));
	if (reloads) {
		fmt_age(age, sizeof(age), now - rtime);
		sift_buf_printf(b, "last reload:   %s ago, %s: %s (%lu reload%s since start)\n", age,
				rok ? "ok" : "FAILED", text, reloads, reloads == 1 ? "" : "s");
	} else
		sift_buf_adds(b, "last reload:   none since start\n");
	sift_buf_printf(b,
			"process:       rss %lld KiB, %lld threads, %lld fds; connections %lld now, %llu "
			"in all\n",
			p.rss / 1024, p.threads, p.fds, (long long)atomic_load(&M.conn_current),
			(unsigned long long)atomic_load(&M.conn_total));
	double ver, ts;
	if (metrics_gauge_get("clamav", "database_version", &ver)) {
		if (metrics_gauge_get("clamav", "database_timestamp_seconds", &ts))
			fmt_age(age, sizeof(age), now - ts);
		else
			snprintf(age, sizeof(age), "unknown");
		sift_buf_printf(b, "clamav:        database version %.0f, age %s\n", ver, age);
	}
	if (quarantine_dir && *quarantine_dir)
		metrics_quar_with(quarantine_dir, t_quar, b);
	unsigned long long q, t, h;
	sift_dns_stats(&q, &t, &h);
	sift_buf_printf(b, "dns:           %llu queries, %llu timeouts, %llu cache hits\n", q, t, h);
}

static void t_counts(struct sift_buf *b)
{
	unsigned long long tot[SIFT_MA_MAX] = {0}, all = 0;
	for (int p = 0; p < SIFT_PROFILE_MAX; p++)
		for (int a = 0; a < SIFT_MA_MAX; a++)
			tot[a] += atomic_load_explicit(&M.actions[p][a], memory_order_relaxed);
	for (int a = 0; a < SIFT_MA_MAX; a++)
		all += tot[a];
	sift_buf_printf(b, "%-14s %llu", M.daemon == SIFT_POLICYD ? "requests:" : "messages:", all);
	for (int a = 0; a < SIFT_MA_MAX; a++)
		if (tot[a])
			sift_buf_printf(b, ", %s %llu", sift_maction_names[a], tot[a]);
	struct mhist_view v;
	metrics_hist_read(&M.whole, &v);
	sift_buf_printf(b, "\nlatency:       p50 %.1f ms, p99 %.1f ms (plugins' time)\n",
			metrics_hist_quantile(&v, 0.5) * 1000, metrics_hist_quantile(&v, 0.99) * 1000);
	int n = atomic_load(&M.nplugins);
	if (n)
		sift_buf_adds(b, "plugins:       name          p50 ms   p99 ms   errors tempfails\n");
	for (int i = 0; i < n; i++) {
		struct mplugin *mp = &M.plugins[i];
		metrics_hist_read(&mp->latency, &v);
		sift_buf_printf(b, "               %-12s %7.2f  %7.2f  %7llu %9llu\n", mp->name,
				metrics_hist_quantile(&v, 0.5) * 1000, metrics_hist_quantile(&v, 0.99) * 1000,
				(unsigned long long)atomic_load(&mp->errors),
				(unsigned long long)atomic_load(&mp->tempfails));
	}
	struct msym_view syms[10];
	int ns = metrics_top_symbols(syms, 10);
	if (ns)
		sift_buf_adds(b, "top symbols:  ");
	for (int i = 0; i < ns; i++)
		sift_buf_printf(b, " %s %llu%s", syms[i].name, syms[i].hits, i + 1 < ns ? "," : "\n");
}

void sift_metrics_status_text(struct sift_buf *b, const char *quarantine_dir)
{
	double now = metrics_wall_now();
	t_health(b, quarantine_dir, now);
	t_counts(b);
}
