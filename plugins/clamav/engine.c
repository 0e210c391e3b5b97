/*
 * engine.c - library mode: libclamav in process.
 *
 * One compiled engine is shared by every scanning thread (libclamav's scan
 * functions are thread-safe on a compiled engine). A manager owns the
 * current engine and a watcher thread, started when the manager is created
 * (plugin init) and joined when the last configuration generation using it
 * is released. The watcher:
 *   - loads the first engine (new, limits, cl_load, compile) without
 *     blocking init: until it is ready scans wait at most their configured
 *     wait and then report SCAN_FAILED ("not ready"), which the plugin turns
 *     into its fail action (tempfail by default);
 *   - polls the database directory every check interval with
 *     cl_statchkdir(); on a change it builds a new engine in the background
 *     and swaps the pointer under the manager's lock. Scanners take a
 *     reference (cl_engine_addref) under the same lock and drop it with
 *     cl_engine_free after the scan, so the old engine is freed when its last
 *     scan ends; no scan waits for a reload and none is lost. A failed reload
 *     keeps the old engine and is retried at the next interval.
 *
 * Managers are shared between configuration generations with identical
 * settings (a filterd reload does not load the database again). The watcher
 * thread never forks nor touches signals; it is the only plugin-owned thread
 * besides the notifier's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <clamav.h>

#include "clamav-int.h"

struct engine_mgr {
	struct engine_settings s; /* strings owned */
	int refs;		  /* generations using it (under slot_lock) */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* engine became ready; stop requested */
	struct cl_engine *engine;
	unsigned sigs;
	unsigned long loads;
	bool stop;
	pthread_t thread;
};

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static struct engine_mgr *slot; /* the most recent manager, for sharing */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static cl_error_t init_rc;

static void do_cl_init(void)
{
	init_rc = cl_init(CL_INIT_DEFAULT);
}

const char *engine_version(void)
{
	return cl_retver();
}

static bool same_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_settings(const struct engine_settings *a, const struct engine_settings *b)
{
	return same_str(a->dbdir, b->dbdir) && same_str(a->tmpdir, b->tmpdir) &&
	       a->check_interval_ms == b->check_interval_ms && a->max_scansize == b->max_scansize &&
	       a->max_filesize == b->max_filesize && a->max_recursion == b->max_recursion &&
	       a->max_files == b->max_files && a->max_scantime == b->max_scantime &&
	       a->official_only == b->official_only && a->pua == b->pua;
}

static void abs_deadline(struct timespec *ts, long long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Builds a compiled engine; NULL on error (logged). */
static struct cl_engine *build_engine(const struct engine_settings *s, unsigned *sigs_r)
{
	struct cl_engine *e = cl_engine_new();
	if (!e) {
		clamav_host->log(NULL, LOG_ERR, "clamav: cl_engine_new failed");
		return NULL;
	}
	cl_error_t rc = CL_SUCCESS;
	if (*s->tmpdir)
		rc = cl_engine_set_str(e, CL_ENGINE_TMPDIR, s->tmpdir);
	if (rc == CL_SUCCESS && s->max_scansize)
		rc = cl_engine_set_num(e, CL_ENGINE_MAX_SCANSIZE, s->max_scansize);
	if (rc == CL_SUCCESS && s->max_filesize)
		rc = cl_engine_set_num(e, CL_ENGINE_MAX_FILESIZE, s->max_filesize);
	if (rc == CL_SUCCESS && s->max_recursion)
		rc = cl_engine_set_num(e, CL_ENGINE_MAX_RECURSION, s->max_recursion);
	if (rc == CL_SUCCESS && s->max_files)
		rc = cl_engine_set_num(e, CL_ENGINE_MAX_FILES, s->max_files);
	if (rc == CL_SUCCESS && s->max_scantime)
		rc = cl_engine_set_num(e, CL_ENGINE_MAX_SCANTIME, s->max_scantime);
	if (rc != CL_SUCCESS) {
		clamav_host->log(NULL, LOG_ERR, "clamav: engine settings: %s", cl_strerror(rc));
		cl_engine_free(e);
		return NULL;
	}
	unsigned sigs = 0;
	unsigned opts =
		CL_DB_STDOPT | (s->official_only ? CL_DB_OFFICIAL_ONLY : 0) | (s->pua ? CL_DB_PUA : 0);
	long long t0 = clock_ms();
	rc = cl_load(s->dbdir, e, &sigs, opts);
	if (rc == CL_SUCCESS && sigs == 0) {
		clamav_host->log(NULL, LOG_ERR, "clamav: no signatures in %s", s->dbdir);
		cl_engine_free(e);
		return NULL;
	}
	if (rc == CL_SUCCESS)
		rc = cl_engine_compile(e);
	if (rc != CL_SUCCESS) {
		clamav_host->log(NULL, LOG_ERR, "clamav: loading the database %s: %s", s->dbdir,
				 cl_strerror(rc));
		cl_engine_free(e);
		return NULL;
	}
	clamav_host->log(NULL, LOG_INFO, "clamav: database %s loaded: %u signatures in %lld ms", s->dbdir,
			 sigs, clock_ms() - t0);
	*sigs_r = sigs;
	return e;
}

static void *watcher(void *arg)
{
	struct engine_mgr *m = arg;
	struct cl_stat st;
	memset(&st, 0, sizeof(st));
	bool have_stat = false, need_load = true;
	for (;;) {
		pthread_mutex_lock(&m->lock);
		bool stop = m->stop;
		pthread_mutex_unlock(&m->lock);
		if (stop)
			break;
		if (have_stat && !need_load && cl_statchkdir(&st) == 1) {
			clamav_host->log(NULL, LOG_INFO, "clamav: database %s changed, reloading",
					 m->s.dbdir);
			need_load = true;
		}
		if (need_load) {
			/* Snapshot the directory before loading, so a change
			 * during the load is seen at the next check. */
			if (have_stat)
				cl_statfree(&st);
			memset(&st, 0, sizeof(st));
			have_stat = cl_statinidir(m->s.dbdir, &st) == CL_SUCCESS;
			unsigned sigs = 0;
			struct cl_engine *e = build_engine(&m->s, &sigs);
			if (e) {
				pthread_mutex_lock(&m->lock);
				struct cl_engine *old = m->engine;
				m->engine = e;
				m->sigs = sigs;
				m->loads++;
				pthread_cond_broadcast(&m->cond);
				pthread_mutex_unlock(&m->lock);
				if (old) {
					cl_engine_free(old); /* freed when its last scan ends */
					clamav_host->log(NULL, LOG_INFO,
							 "clamav: new engine in use (reload %lu)",
							 m->loads - 1);
				}
				need_load = false;
			}
		}
		struct timespec ts;
		abs_deadline(&ts, m->s.check_interval_ms);
		pthread_mutex_lock(&m->lock);
		while (!m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&m->lock);
	}
	if (have_stat)
		cl_statfree(&st);
	return NULL;
}

static void mgr_destroy(struct engine_mgr *m)
{
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	if (m->engine)
		cl_engine_free(m->engine);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free((char *)m->s.dbdir);
	free((char *)m->s.tmpdir);
	free(m);
}

struct engine_mgr *engine_mgr_get(const struct engine_settings *s, char **err_r)
{
	pthread_once(&init_once, do_cl_init);
	if (init_rc != CL_SUCCESS) {
		*err_r = strdup(cl_strerror(init_rc));
		return NULL;
	}
	pthread_mutex_lock(&slot_lock);
	if (slot && same_settings(&slot->s, s)) {
		slot->refs++;
		struct engine_mgr *m = slot;
		pthread_mutex_unlock(&slot_lock);
		return m;
	}
	struct engine_mgr *m = calloc(1, sizeof(*m));
	if (!m) {
		pthread_mutex_unlock(&slot_lock);
		*err_r = strdup("out of memory");
		return NULL;
	}
	m->s = *s;
	m->s.dbdir = strdup(s->dbdir);
	m->s.tmpdir = strdup(s->tmpdir);
	m->refs = 1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	int rc = pthread_create(&m->thread, NULL, watcher, m);
	if (rc != 0) {
		pthread_mutex_unlock(&slot_lock);
		*err_r = strdup("cannot start the database watcher thread");
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
		free((char *)m->s.dbdir);
		free((char *)m->s.tmpdir);
		free(m);
		return NULL;
	}
	/* The previous slot holder stays alive for the generations using it. */
	slot = m;
	pthread_mutex_unlock(&slot_lock);
	return m;
}

void engine_mgr_put(struct engine_mgr *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&slot_lock);
	bool last = --m->refs == 0;
	if (last && slot == m)
		slot = NULL;
	pthread_mutex_unlock(&slot_lock);
	if (last)
		mgr_destroy(m);
}

enum scan_result engine_scan(struct engine_mgr *m, const char *buf, size_t len, unsigned heuristic,
			     long wait_ms, char *namebuf, size_t namelen)
{
	pthread_mutex_lock(&m->lock);
	if (!m->engine && wait_ms > 0) {
		struct timespec ts;
		abs_deadline(&ts, wait_ms);
		while (!m->engine && !m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &ts) != ETIMEDOUT)
			;
	}
	struct cl_engine *e = m->engine;
	if (e)
		cl_engine_addref(e);
	pthread_mutex_unlock(&m->lock);
	if (!e) {
		snprintf(namebuf, namelen, "virus database not loaded yet");
		return SCAN_FAILED;
	}

	struct cl_scan_options opts;
	memset(&opts, 0, sizeof(opts));
	opts.parse = ~0u;
	if (heuristic & CL_HEUR_ENCRYPTED)
		opts.heuristic |= CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE | CL_SCAN_HEURISTIC_ENCRYPTED_DOC;
	if (heuristic & CL_HEUR_EXCEEDS)
		opts.heuristic |= CL_SCAN_HEURISTIC_EXCEEDS_MAX;
	if (opts.heuristic)
		opts.general = CL_SCAN_GENERAL_HEURISTICS;
	enum scan_result res;
	cl_fmap_t *map = cl_fmap_open_memory(buf, len);
	if (!map) {
		cl_engine_free(e);
		snprintf(namebuf, namelen, "cl_fmap_open_memory failed");
		return SCAN_FAILED;
	}
	const char *virname = NULL;
	unsigned long scanned = 0;
	cl_error_t rc = cl_scanmap_callback(map, NULL, &virname, &scanned, e, &opts, NULL);
	switch (rc) {
	case CL_CLEAN:
		res = SCAN_CLEAN;
		namebuf[0] = 0;
		break;
	case CL_VIRUS:
		snprintf(namebuf, namelen, "%s", virname ? virname : "unknown");
		res = (strncmp(namebuf, "Heuristics.Encrypted", 20) == 0 ||
		       strncmp(namebuf, "Heuristics.Limits.Exceeded", 26) == 0)
			      ? SCAN_LIMIT
			      : SCAN_VIRUS;
		break;
	case CL_ETIMEOUT:
	case CL_EMAXSIZE:
	case CL_EMAXREC:
	case CL_EMAXFILES:
		snprintf(namebuf, namelen, "%s", cl_strerror(rc));
		res = SCAN_LIMIT;
		break;
	default:
		snprintf(namebuf, namelen, "scan error: %s", cl_strerror(rc));
		res = SCAN_FAILED;
		break;
	}
	cl_fmap_close(map);
	cl_engine_free(e); /* virname was copied above: it points into e */
	return res;
}
