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
 *
 * Temporary files: ClamAV's mail parser writes every decoded MIME part (and
 * archive members) to temporary files, in a directory it creates for each
 * scan. They go into a private directory of this manager,
 * <base>/sift-clamav.<pid>.<random>, mode 0700, where <base> is
 * clamav_tmpdir (default: /dev/shm when it is a tmpfs, else $TMPDIR or
 * /tmp). The name is chosen at init; the directory is created by the first
 * scan (scans run after the daemon has dropped its privileges, so it belongs
 * to the user that writes into it), checked (a directory, not a link, ours,
 * mode 0700) and created again after a scan that reported an error (removed
 * by a cleaner, say). It is removed with what is left in it when the
 * manager is destroyed.
 *
 * Stale directories (a filterd killed by SIGKILL leaves its directory, on a
 * tmpfs, until a reboot) are removed when a manager is created, and only
 * those whose owner provably is gone: the owner holds an exclusive flock()
 * on <dir>/.lock for as long as it uses the directory, and a cleaner
 * removes a directory only while it holds that lock itself. The kernel
 * drops a flock when the last descriptor of its open file goes, whatever
 * killed the process, and a flock is the same in every PID namespace that
 * shares the file system. The PID in the name is not evidence: another
 * filterd in a container sharing /dev/shm has its own PID numbers, and
 * kill(pid, 0) there says nothing about this process (a live directory
 * was removed that way). A boot id + PID-namespace name would still need a
 * liveness test inside each namespace; the lock needs none. A directory
 * without a .lock (its owner between mkdir and creating the lock, or an
 * older Sift) is left alone: never remove what cannot be proved dead.
 *
 * Errors inside a scan: libclamav reports some failures only through its
 * message callback and still returns CL_CLEAN (its per-scan directory
 * cannot be created, a temporary file cannot be written: a full tmpfs).
 * Every libclamav message goes to the host's log, and a scan during which
 * libclamav reported an error is a failed scan (the plugin's fail action),
 * never a clean one nor a limit result (libclamav goes on after the error
 * and may then stop at a limit: the limit action would pass the message);
 * only a virus found stands. The callback finds the scan's state through
 * the scan context, or, for messages issued before libclamav has set the
 * context up, through a thread-local pointer set around
 * cl_scanmap_callback() (a scan runs on one thread).
 *
 * Limits: libclamav scans the message as one file, so its file size limit
 * (clamav_max_filesize) applies to the message itself: a larger message is
 * not scanned at all, and libclamav answers CL_CLEAN, or, with the
 * heuristic alerts on, CL_VIRUS without a virus name (the name,
 * Heuristics.Limits.Exceeded.MaxFileSize, goes only to the virus-found
 * callback). Both are a limit result (the plugin's limit action), never
 * "clean" nor a virus: such a message is checked against the engine's limit
 * before the scan, and an unnamed CL_VIRUS is a limit. Only a named
 * signature is a virus.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <clamav.h>

#include "clamav-int.h"

struct engine_mgr {
	struct engine_settings s; /* strings owned */
	int refs;		  /* generations using it (under slot_lock) */
	char *privdir;		  /* the private temporary directory (engine's TMPDIR) */
	struct engine_mgr *next;  /* all managers (under slot_lock) */
	bool dir_ok;		  /* privdir exists and was checked (under lock) */
	int lock_fd;		  /* flock()ed privdir/.lock, or -1 (under lock) */
	unsigned dir_logged;	  /* its path was logged (under lock) */

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
static struct engine_mgr *all;	/* every live manager, for the exit cleanup */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static cl_error_t init_rc;

/* State of one scan, for the message and virus-found callbacks. */
struct scan_state {
	unsigned errors, logged;
	char first[200]; /* the first error message */
	char alert[128]; /* the first name given to the virus-found callback */
	bool timeout;	 /* one of the names was the MaxScanTime alert */
};
#define MAX_LOGGED 3 /* libclamav messages logged per scan */
static _Thread_local struct scan_state *cur_scan;

static void msg_cb(enum cl_msg severity, const char *fullmsg, const char *msg, void *context)
{
	(void)fullmsg;
	if (severity < CL_MSG_WARN || !clamav_host)
		return;
	struct scan_state *st = context ? context : cur_scan;
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		n--;
	if (severity >= CL_MSG_ERROR && st) {
		if (!st->errors++)
			snprintf(st->first, sizeof(st->first), "%.*s", (int)n, msg);
	}
	if (st && st->logged++ >= MAX_LOGGED)
		return;
	clamav_host->log(NULL, severity >= CL_MSG_ERROR ? LOG_ERR : LOG_WARNING, "clamav: libclamav: %.*s",
			 (int)n, msg);
}

/* libclamav names what it found to this callback, also when its answer
 * carries no name: a file over its size limit (the whole message, when it
 * is over CL_ENGINE_MAX_FILESIZE) is CL_VIRUS with the virus name left
 * NULL, the callback alone hearing "Heuristics.Limits.Exceeded.MaxFileSize". */
static void virus_cb(int fd, const char *virname, void *context)
{
	(void)fd;
	struct scan_state *st = context ? context : cur_scan;
	if (st && virname && !st->alert[0])
		snprintf(st->alert, sizeof(st->alert), "%s", virname);
	if (st && virname && alert_is_timeout(virname))
		st->timeout = true;
}

static void do_cl_init(void)
{
	cl_set_clcb_msg(msg_cb);
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
static struct cl_engine *build_engine(const struct engine_settings *s, const char *tmpdir, unsigned *sigs_r)
{
	struct cl_engine *e = cl_engine_new();
	if (!e) {
		clamav_host->log(NULL, LOG_ERR, "clamav: cl_engine_new failed");
		return NULL;
	}
	cl_error_t rc = cl_engine_set_str(e, CL_ENGINE_TMPDIR, tmpdir);
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
	cl_engine_set_clcb_virus_found(e, virus_cb);
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

/* The loaded database's version and build time, for the daemon's metrics
 * (host->gauge_set, in hosts that have it). */
static void report_database(struct cl_engine *e)
{
	const struct sift_host *h = clamav_host;
	if (h->struct_size < offsetof(struct sift_host, gauge_set) + sizeof(h->gauge_set) || !h->gauge_set)
		return;
	int err = 0;
	long long version = cl_engine_get_num(e, CL_ENGINE_DB_VERSION, &err);
	if (err == CL_SUCCESS)
		h->gauge_set("clamav", "database_version", (double)version);
	long long when = cl_engine_get_num(e, CL_ENGINE_DB_TIME, &err);
	if (err == CL_SUCCESS && when > 0) /* 0: no signed database (.cvd/.cld) loaded */
		h->gauge_set("clamav", "database_timestamp_seconds", (double)when);
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
			struct cl_engine *e = build_engine(&m->s, m->privdir, &sigs);
			if (e) {
				pthread_mutex_lock(&m->lock);
				struct cl_engine *old = m->engine;
				m->engine = e;
				m->sigs = sigs;
				m->loads++;
				pthread_cond_broadcast(&m->cond);
				pthread_mutex_unlock(&m->lock);
				report_database(e);
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

/* ---- the private temporary directory ------------------------------------ */

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

/* The base directory: clamav_tmpdir, or /dev/shm when it is a tmpfs, or
 * $TMPDIR, or /tmp. It must be an existing directory. */
static int choose_base(const char *conf, char *out, size_t outlen, char **err_r)
{
	struct statfs fs;
	struct stat st;
	const char *base = conf;
	if (!*base) {
		const char *env = getenv("TMPDIR");
		if (statfs("/dev/shm", &fs) == 0 && fs.f_type == TMPFS_MAGIC && stat("/dev/shm", &st) == 0 &&
		    S_ISDIR(st.st_mode))
			base = "/dev/shm";
		else
			base = env && *env == '/' ? env : "/tmp";
	}
	int rc = stat(base, &st);
	if (rc < 0 || !S_ISDIR(st.st_mode)) {
		char buf[600];
		snprintf(buf, sizeof(buf), "clamav_tmpdir %.500s: %s", base,
			 rc < 0 ? strerror(errno) : "not a directory");
		*err_r = strdup(buf);
		return -1;
	}
	size_t n = strlen(base);
	while (n > 1 && base[n - 1] == '/')
		n--;
	if (n + 64 > outlen || n + 64 > 4000) {
		*err_r = strdup("clamav_tmpdir: path too long");
		return -1;
	}
	snprintf(out, outlen, "%.*s", (int)n, base);
	return 0;
}

#define LOCK_NAME ".lock"

/* True if fd is the file named name in directory dfd (same inode). */
static bool same_file_at(int fd, int dfd, const char *name)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && fstatat(dfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Takes the owner's lock on path/.lock, which must stay held for as long as
 * the directory is used. A cleaner may have opened the file between its
 * creation and our flock() and be removing the directory: the lock is ours
 * only if, once held, the name still leads to it. Returns the descriptor or
 * -1 + errno (EAGAIN: a cleaner kept taking it). */
static int take_dir_lock(const char *path)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0)
			return -1;
		int fd = openat(dfd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			int e = errno;
			close(dfd);
			errno = e;
			return -1;
		}
		bool held = flock(fd, LOCK_EX | LOCK_NB) == 0 && same_file_at(fd, dfd, LOCK_NAME);
		close(dfd);
		if (held)
			return fd;
		close(fd);
		usleep(2000);
		/* The cleaner removed the directory: make it again. */
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -1;
	}
	errno = EAGAIN;
	return -1;
}

/* Creates (if needed) and checks the manager's private directory and holds
 * its lock (under m->lock). 0 or -1 + errno (EPERM when it exists but is
 * not ours / not private). */
static int make_privdir(struct engine_mgr *m)
{
	const char *path = m->privdir;
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -1;
	struct stat st;
	if (lstat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
		errno = EPERM;
		return -1;
	}
	if (m->lock_fd >= 0) {
		char lp[4300];
		snprintf(lp, sizeof(lp), "%s/" LOCK_NAME, path);
		if (same_file_at(m->lock_fd, AT_FDCWD, lp))
			return 0;
		close(m->lock_fd); /* the directory was removed behind our back */
		m->lock_fd = -1;
	}
	m->lock_fd = take_dir_lock(path);
	return m->lock_fd < 0 ? -1 : 0;
}

/* Removes dirfd/name and, if it is a directory, what it holds; never
 * follows a symbolic link. depth bounds the recursion. */
static void rm_tree_at(int parent, const char *name, int depth)
{
	if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
		return;
	if (depth <= 0)
		return;
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_tree_at(fd, de->d_name, depth - 1);
	closedir(d);
	unlinkat(parent, name, AT_REMOVEDIR);
}

static void remove_privdir(const char *path)
{
	if (!path || rmdir(path) == 0 || errno == ENOENT)
		return;
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
		return;
	rm_tree_at(AT_FDCWD, path, 16);
}

/* Takes the lock of base/name (a private directory of another manager or
 * process) if its owner is gone: the descriptor, held while the directory
 * is removed, or -1 when the directory has no lock file or its owner holds
 * it. */
static int stale_lock(int basefd, const char *name)
{
	int dfd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	int fd = openat(dfd, LOCK_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st, dst, nst;
	bool stale = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		     flock(fd, LOCK_EX | LOCK_NB) == 0 && same_file_at(fd, dfd, LOCK_NAME) &&
		     fstat(dfd, &dst) == 0 && fstatat(basefd, name, &nst, AT_SYMLINK_NOFOLLOW) == 0 &&
		     dst.st_dev == nst.st_dev && dst.st_ino == nst.st_ino;
	close(dfd);
	if (!stale && fd >= 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Directories whose owner is gone (a crash, SIGKILL): named
 * sift-clamav.<pid>.<16 hex>, with a lock file nobody holds (see the top of
 * this file: the PID is not looked at). What ClamAV was writing when the
 * process died would stay in memory (tmpfs) until a reboot. */
static void remove_stale(const char *base)
{
	DIR *d = opendir(base);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		long pid = 0;
		char hex[17];
		int used = 0;
		if (sscanf(de->d_name, "sift-clamav.%ld.%16[0-9a-f]%n", &pid, hex, &used) != 2 ||
		    de->d_name[used] || strlen(hex) != 16 || pid <= 0)
			continue;
		int lfd = stale_lock(dirfd(d), de->d_name);
		if (lfd < 0)
			continue;
		char path[4400];
		snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
		clamav_host->log(NULL, LOG_INFO, "clamav: removing %s (its owner is gone)", path);
		rm_tree_at(dirfd(d), de->d_name, 16);
		close(lfd);
	}
	closedir(d);
}

/* At exit (filterd does not release the last configuration generation) and
 * when the plugin is unloaded: remove the private directories. */
__attribute__((destructor)) static void remove_all_privdirs(void)
{
	if (pthread_mutex_trylock(&slot_lock) != 0)
		return;
	for (struct engine_mgr *m = all; m; m = m->next) {
		remove_privdir(m->privdir);
		if (m->lock_fd >= 0)
			close(m->lock_fd);
		m->lock_fd = -1;
	}
	pthread_mutex_unlock(&slot_lock);
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
	remove_privdir(m->privdir);
	if (m->lock_fd >= 0)
		close(m->lock_fd); /* after the removal: no cleaner takes a live directory */
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free((char *)m->s.dbdir);
	free((char *)m->s.tmpdir);
	free(m->privdir);
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
	char base[4096];
	if (choose_base(s->tmpdir, base, sizeof(base), err_r) < 0) {
		pthread_mutex_unlock(&slot_lock);
		return NULL;
	}
	unsigned char rnd[8];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		pthread_mutex_unlock(&slot_lock);
		*err_r = strdup("getrandom failed");
		return NULL;
	}
	char priv[4200];
	snprintf(priv, sizeof(priv), "%s/sift-clamav.%ld.%02x%02x%02x%02x%02x%02x%02x%02x", base,
		 (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	struct engine_mgr *m = calloc(1, sizeof(*m));
	if (!m || !(m->privdir = strdup(priv))) {
		free(m);
		pthread_mutex_unlock(&slot_lock);
		*err_r = strdup("out of memory");
		return NULL;
	}
	m->s = *s;
	m->s.dbdir = strdup(s->dbdir);
	m->s.tmpdir = strdup(s->tmpdir);
	m->refs = 1;
	m->lock_fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	cond_init_monotonic(&m->cond);
	int rc = pthread_create(&m->thread, NULL, watcher, m);
	if (rc != 0) {
		pthread_mutex_unlock(&slot_lock);
		*err_r = strdup("cannot start the database watcher thread");
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
		free((char *)m->s.dbdir);
		free((char *)m->s.tmpdir);
		free(m->privdir);
		free(m);
		return NULL;
	}
	/* The previous slot holder stays alive for the generations using it. */
	slot = m;
	m->next = all;
	all = m;
	remove_stale(base);
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
	if (last)
		for (struct engine_mgr **pp = &all; *pp; pp = &(*pp)->next)
			if (*pp == m) {
				*pp = m->next;
				break;
			}
	pthread_mutex_unlock(&slot_lock);
	if (last)
		mgr_destroy(m);
}

/* libclamav's pread: the map's pages are read from the host's copy of the
 * message as the scan reaches them. */
static off_t map_pread(void *handle, void *buf, size_t count, off_t offset)
{
	long n = src_read(handle, (long long)offset, buf, count);
	if (n < 0)
		errno = EIO;
	return (off_t)n;
}

enum scan_result engine_scan(struct engine_mgr *m, const struct scan_src *src, unsigned heuristic,
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
	int dir_errno = 0;
	if (e && !m->dir_ok) {
		if (make_privdir(m) == 0) {
			m->dir_ok = true;
			if (!m->dir_logged++)
				clamav_host->log(NULL, LOG_INFO, "clamav: temporary files in %s (mode 0700)",
						 m->privdir);
		} else
			dir_errno = errno;
	}
	if (e && !dir_errno)
		cl_engine_addref(e);
	pthread_mutex_unlock(&m->lock);
	if (!e) {
		snprintf(namebuf, namelen, "virus database not loaded yet");
		return SCAN_FAILED;
	}
	if (dir_errno) {
		snprintf(namebuf, namelen, "temporary directory %s: %s", m->privdir,
			 dir_errno == EPERM ? "exists but is not a private directory of this user"
					    : strerror(dir_errno));
		return SCAN_FAILED;
	}

	/* libclamav treats the whole message as one file: over its file size
	 * limit it is not scanned at all (CL_CLEAN, or an unnamed CL_VIRUS
	 * with the heuristic alerts on). That is a limit, never clean and
	 * never a virus. The plugin checks clamav_max_filesize before; this is
	 * the engine's own value (libclamav's default for 0, its clamping). */
	int gerr = 0;
	long long max_file = cl_engine_get_num(e, CL_ENGINE_MAX_FILESIZE, &gerr);
	if (gerr == CL_SUCCESS && max_file > 0 && src->size > max_file) {
		cl_engine_free(e);
		snprintf(namebuf, namelen, "scanned size %lld over ClamAV's file size limit %lld", src->size,
			 max_file);
		return SCAN_LIMIT;
	}

	struct cl_scan_options opts;
	memset(&opts, 0, sizeof(opts));
	opts.parse = ~0u;
	if (heuristic & CL_HEUR_ENCRYPTED)
		opts.heuristic |= CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE | CL_SCAN_HEURISTIC_ENCRYPTED_DOC;
	/* Always asked for, whatever clamav_alert_exceeds_max says: without
	 * it, libclamav answers "clean" for a scan that ran out of time
	 * (MaxScanTime), which must be a failure. The other limit alerts are
	 * dropped below when the setting is off; they never stop the scan (a
	 * signature found after one of them still wins). */
	opts.heuristic |= CL_SCAN_HEURISTIC_EXCEEDS_MAX;
	opts.general = CL_SCAN_GENERAL_HEURISTICS;
	enum scan_result res;
	/* Aging on: libclamav drops the pages it read longest ago when a map
	 * holds more than a few MiB, so a large message is never resident
	 * whole. */
	cl_fmap_t *map = cl_fmap_open_handle((void *)src, 0, (size_t)src->size, map_pread, 1);
	if (!map) {
		cl_engine_free(e);
		snprintf(namebuf, namelen, "cl_fmap_open_handle failed");
		return SCAN_FAILED;
	}
	const char *virname = NULL;
	unsigned long scanned = 0;
	struct scan_state st;
	cl_error_t rc;
	for (int attempt = 0;; attempt++) {
		memset(&st, 0, sizeof(st));
		cur_scan = &st;
		rc = cl_scanmap_callback(map, NULL, &virname, &scanned, e, &opts, &st);
		cur_scan = NULL;
		if (!st.errors)
			break;
		/* Check (and create again) the directory before the next scan;
		 * if it had vanished (a cleaner removed it), scan once more. */
		struct stat dst;
		bool gone = lstat(m->privdir, &dst) < 0 && errno == ENOENT;
		pthread_mutex_lock(&m->lock);
		m->dir_ok = false;
		bool again = gone && attempt == 0 && make_privdir(m) == 0;
		if (again)
			m->dir_ok = true;
		pthread_mutex_unlock(&m->lock);
		if (!again)
			break;
		clamav_host->log(NULL, LOG_WARNING,
				 "clamav: temporary directory %s had vanished: created again", m->privdir);
		virname = NULL;
		scanned = 0;
	}
	switch (rc) {
	case CL_CLEAN:
		res = SCAN_CLEAN;
		namebuf[0] = 0;
		break;
	case CL_VIRUS:
		/* A signature always has a name; libclamav leaves the name out
		 * only for a limit (the file size limit of the message itself),
		 * named to the virus-found callback if at all. */
		if (!virname || !*virname)
			virname = st.alert[0] ? st.alert : NULL;
		if (!virname) {
			snprintf(namebuf, namelen, "Heuristics.Limits.Exceeded (unnamed ClamAV alert)");
			res = SCAN_LIMIT;
			break;
		}
		snprintf(namebuf, namelen, "%s", virname);
		if (alert_is_timeout(namebuf)) {
			st.timeout = true;
			res = SCAN_FAILED;
		} else if (strncmp(namebuf, "Heuristics.Limits.Exceeded", 26) == 0 &&
			   !(heuristic & CL_HEUR_EXCEEDS)) {
			/* not asked for (clamav_alert_exceeds_max = no): what
			 * libclamav answers without the alert */
			res = SCAN_CLEAN;
			namebuf[0] = 0;
		} else
			res = (strncmp(namebuf, "Heuristics.Encrypted", 20) == 0 ||
			       strncmp(namebuf, "Heuristics.Limits.Exceeded", 26) == 0)
				      ? SCAN_LIMIT
				      : SCAN_VIRUS;
		break;
	case CL_ETIMEOUT:
		st.timeout = true;
		res = SCAN_FAILED;
		break;
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
	if (st.timeout && res != SCAN_VIRUS) {
		/* Out of time (clamav_max_scantime), also when the answer
		 * named another limit or nothing: the rest of the message was
		 * never scanned. Only a virus found stands. */
		snprintf(namebuf, namelen, "scan timeout: over clamav_max_scantime");
		res = SCAN_FAILED;
	} else if (st.errors && (res == SCAN_CLEAN || res == SCAN_LIMIT)) {
		/* libclamav could not look at all of the message and went on:
		 * neither "clean" nor a limit it reached afterwards
		 * (Heuristics.Limits.Exceeded.MaxFiles, a timeout ...) says
		 * what is in the part it skipped. Only a virus found stands. */
		snprintf(namebuf, namelen, "scan error: %s", st.first);
		res = SCAN_FAILED;
	}
	cl_fmap_close(map);
	cl_engine_free(e); /* virname was copied above: it points into e */
	return res;
}
