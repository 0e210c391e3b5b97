/*
 * control.c - a daemon's control socket, through which `siftctl reload`
 * asks for a reload and learns its outcome.
 *
 * The daemon creates the unix socket as root before dropping privileges
 * (born with mode 0600 by the umask at bind(), never chmod()ed by path:
 * the run directory is the daemon user's), then gives it to the daemon's
 * user through a descriptor of the socket itself (sift_socket_opts_apply):
 * only root, and the daemon's own user, may connect; accept() on the bound
 * socket needs no permission after the drop. Each client is served by a
 * thread of its own, CTL_MAX_CLIENTS at a time (one more is told the
 * socket is busy), so a reload being waited for, or a client that sends its
 * line slowly, holds up no other: the client sends one line, "reload"; the peer's
 * credentials (SO_PEERCRED) must be uid 0 or the daemon's own uid; the
 * thread asks the daemon's reload path for a reload (the daemon's request
 * function: a byte to filterd's reload thread, SIGHUP to policyd's event
 * loop) and waits until a reload that began after the request has finished
 * (sift_control_reload_begin/done, called by the reload path), then answers
 * "ok TEXT" or "error TEXT" and closes. Reloads asked for by signals report
 * through the same calls, so a client always gets the outcome of a reload
 * that read the configuration after it asked.
 *
 * The "status" and "summary" commands (same peer rules) answer "ok "
 * followed by the status JSON document (one line) or the terminal summary
 * (lines), read from the metrics at once.
 *
 * Bounds: a request line of 64 bytes read within CTL_READ_TIMEOUT (one
 * deadline for the whole line, however it trickles in), the answer written
 * within CTL_READ_TIMEOUT too, a reload awaited for at most
 * CTL_RELOAD_TIMEOUT, an answer of at most CTL_MAX_ANSWER bytes read by the
 * client. At start, the look at a socket already at the path (another
 * instance's?) waits CTL_PROBE_TIMEOUT at most.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sift.h"

#define CTL_READ_TIMEOUT_S   5
#define CTL_PROBE_TIMEOUT_S  1
#define CTL_RELOAD_TIMEOUT_S 600
#define CTL_MAX_ANSWER	     (4 << 20)
#define CTL_MAX_CLIENTS	     8

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned long begun, done; /* reload ids: begun counts, done is the last finished */
	bool ok;
	unsigned long finished; /* reloads that ended */
	double finished_at;	/* wall clock */
	char text[1024];
	int (*request)(void);
	int fd;
	char *path;
	dev_t dev; /* the socket bound at path, for sift_control_stop */
	ino_t ino;
} ctl = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .fd = -1};

unsigned long sift_control_reload_begin(void)
{
	pthread_mutex_lock(&ctl.lock);
	unsigned long id = ++ctl.begun;
	pthread_mutex_unlock(&ctl.lock);
	return id;
}

void sift_control_reload_done(unsigned long id, bool ok, const char *text)
{
	pthread_mutex_lock(&ctl.lock);
	ctl.done = id;
	ctl.ok = ok;
	ctl.finished++;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ctl.finished_at = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	snprintf(ctl.text, sizeof(ctl.text), "%s", text ? text : "");
	for (char *p = ctl.text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	pthread_cond_broadcast(&ctl.cond);
	pthread_mutex_unlock(&ctl.lock);
}

void sift_control_reload_last(unsigned long *count_r, double *time_r, bool *ok_r, char *text, size_t n)
{
	pthread_mutex_lock(&ctl.lock);
	*count_r = ctl.finished;
	*time_r = ctl.finished_at;
	*ok_r = ctl.ok;
	if (n)
		snprintf(text, n, "%s", ctl.text);
	pthread_mutex_unlock(&ctl.lock);
}

/* Writes the answer within CTL_READ_TIMEOUT in all: a client that reads
 * slowly holds its thread that long at most. */
static void answer(int fd, bool ok, const char *text)
{
	char *line = sift_asprintf("%s %s\n", ok ? "ok" : "error", text);
	size_t len = strlen(line), off = 0;
	long long deadline = sift_now_ms() + CTL_READ_TIMEOUT_S * 1000;
	while (off < len) {
		ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			long long left = deadline - sift_now_ms();
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			int pr = left > 0 ? poll(&pfd, 1, (int)left) : 0;
			if (pr > 0 || (pr < 0 && errno == EINTR))
				continue;
			break;
		}
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	free(line);
}

/* Asks for a reload and waits for its outcome. */
static void do_reload(int fd)
{
	pthread_mutex_lock(&ctl.lock);
	unsigned long after = ctl.begun;
	pthread_mutex_unlock(&ctl.lock);
	if (ctl.request() < 0) {
		answer(fd, false, "the daemon cannot take a reload now (starting or stopping)");
		return;
	}
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += CTL_RELOAD_TIMEOUT_S;
	pthread_mutex_lock(&ctl.lock);
	int rc = 0;
	while (ctl.done <= after && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&ctl.cond, &ctl.lock, &until);
	bool done = ctl.done > after, ok = ctl.ok;
	char text[sizeof(ctl.text)];
	memcpy(text, ctl.text, sizeof(text));
	pthread_mutex_unlock(&ctl.lock);
	if (!done) {
		char why[64];
		snprintf(why, sizeof(why), "no outcome of the reload within %d s", CTL_RELOAD_TIMEOUT_S);
		answer(fd, false, why);
	} else
		answer(fd, ok, text);
}

static void serve(int fd)
{
	/* Who asks is known at connect(): a client that may not control the
	 * daemon is answered at once, before anything is read from it. */
	struct ucred cr = {.uid = (uid_t)-1};
	socklen_t crl = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0 || (cr.uid != 0 && cr.uid != geteuid())) {
		sift_log(LOG_WARNING, "control socket %s: refusing uid %u (only root or uid %u)", ctl.path,
			 (unsigned)cr.uid, (unsigned)geteuid());
		answer(fd, false, "permission denied: only root or the daemon's user may control it");
		return;
	}
	/* One deadline for the whole line: a client that sends a byte now
	 * and then holds the thread CTL_READ_TIMEOUT at most, not that much
	 * for every byte. */
	long long deadline = sift_now_ms() + CTL_READ_TIMEOUT_S * 1000;
	char buf[65];
	size_t n = 0;
	bool late = false;
	while (n < sizeof(buf) - 1 && !memchr(buf, '\n', n)) {
		long long left = deadline - sift_now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			late = true;
		if (pr <= 0)
			break;
		ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = 0;
	char *nl = strchr(buf, '\n');
	if (!nl) {
		char why[64];
		if (late)
			snprintf(why, sizeof(why), "expected one command line within %d s",
				 CTL_READ_TIMEOUT_S);
		else
			snprintf(why, sizeof(why), "expected one command line");
		answer(fd, false, why);
		return;
	}
	*nl = 0;
	if (nl > buf && nl[-1] == '\r')
		nl[-1] = 0;
	if (strcmp(buf, "reload") == 0) {
		sift_log(LOG_INFO, "control socket: reload asked by uid %u (pid %d)", (unsigned)cr.uid,
			 (int)cr.pid);
		do_reload(fd);
	} else if (strcmp(buf, "status") == 0 || strcmp(buf, "summary") == 0) {
		struct sift_gen *g = sift_gen_current();
		const char *qdir = g ? sift_gen_common(g)->quarantine_directory : NULL;
		struct sift_buf b = {0};
		if (buf[1] == 't')
			sift_metrics_status_json(&b, qdir);
		else
			sift_metrics_status_text(&b, qdir);
		sift_gen_unref(g);
		answer(fd, true, sift_buf_str(&b));
		sift_buf_free(&b);
	} else
		answer(fd, false, "unknown command (known: reload, status, summary)");
}

static atomic_int clients; /* being served */

static void *client_thread(void *arg)
{
	int fd = (int)(intptr_t)arg;
	serve(fd);
	close(fd);
	atomic_fetch_sub(&clients, 1);
	return NULL;
}

static void *control_thread(void *arg)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		int fd = accept4(ctl.fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				sleep(1);
				continue;
			}
			sift_log(LOG_ERR, "control socket %s: accept: %s", ctl.path, strerror(errno));
			break;
		}
		pthread_t th;
		if (atomic_fetch_add(&clients, 1) >= CTL_MAX_CLIENTS) {
			atomic_fetch_sub(&clients, 1);
			char why[96];
			snprintf(why, sizeof(why), "busy: %d control requests are being served; try again",
				 CTL_MAX_CLIENTS);
			answer(fd, false, why);
		} else if (pthread_create(&th, &attr, client_thread, (void *)(intptr_t)fd) == 0)
			continue; /* the thread closes fd */
		else {
			atomic_fetch_sub(&clients, 1);
			answer(fd, false, "cannot serve the request now (no thread); try again");
		}
		close(fd);
	}
	pthread_attr_destroy(&attr);
	return arg;
}

/* 1 when another daemon listens on path, 0 when nothing that counts does
 * (a stale socket, or a listener that is not one) and the path may be
 * taken over. Bounded: connect() to a unix socket whose listener never
 * accepts waits while its backlog is full, for as long as the socket's
 * send timeout (SO_SNDTIMEO; a non-blocking connect() would only say
 * EAGAIN at once, with nothing to poll for). */
static int in_use(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct timeval tv = {.tv_sec = CTL_PROBE_TIMEOUT_S};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int rc;
	while ((rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa))) < 0 && errno == EINTR)
		;
	if (rc < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS)
			/* A daemon of ours accepts at once: this one holds
			 * connections unanswered. */
			sift_log(LOG_WARNING,
				 "control socket %s: something listens there but took no connection within "
				 "%d s; replacing it",
				 sa->sun_path, CTL_PROBE_TIMEOUT_S);
		close(fd);
		return 0;
	}
	/* A daemon listens as root (or as the user starting us): a listener
	 * of anybody else's, such as the daemon user, who may write to the
	 * socket's directory, is not one. */
	struct ucred cr = {.uid = (uid_t)-1};
	socklen_t crl = sizeof(cr);
	bool ours = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) == 0 &&
		    (cr.uid == 0 || cr.uid == geteuid());
	close(fd);
	if (!ours)
		sift_log(LOG_WARNING,
			 "control socket %s: a process of uid %u listens there, not a daemon; replacing it",
			 sa->sun_path, (unsigned)cr.uid);
	return ours;
}

int sift_control_start(const char *path, const struct sift_runas *r, int (*request)(void), char **err_r)
{
	if (!path || !*path)
		return 0;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
		*err_r = sift_asprintf("control socket \"%s\": want an absolute path of at most %zu bytes",
				       path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	strcpy(sa.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*err_r = sift_asprintf("control socket %s: exists and is not a socket", path);
			return -1;
		}
		if (in_use(&sa)) {
			/* Another instance answers there: leave it alone, run
			 * without ours (mail still flows; say so). */
			sift_log(LOG_WARNING,
				 "control socket %s is in use by another process; running without "
				 "one (siftctl reload will reach the other process)",
				 path);
			return 0;
		}
		unlink(path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err_r = sift_asprintf("control socket %s: %s", path, strerror(errno));
		return -1;
	}
	/* Born with mode 0600 (no chmod by path afterwards: the run
	 * directory belongs to the daemon's user, who could have replaced
	 * the socket with a symlink by then). */
	if (sift_bind_unix(fd, &sa, 0600) < 0) {
		int e = errno;
		close(fd);
		if (e == ENOENT || e == EADDRINUSE) {
			/* The run directory is missing (a start outside the
			 * units), or another instance bound the path since the
			 * check above: mail flows, only siftctl reload cannot. */
			sift_log(LOG_WARNING, "control socket %s: %s; running without one", path,
				 strerror(e));
			return 0;
		}
		*err_r = sift_asprintf("control socket %s: %s", path, strerror(e));
		return -1;
	}
	/* The daemon's user may use it too (siftctl run as that user): owner
	 * and group become the user's, as for the daemon's other unix
	 * sockets; the mode stays 0600. */
	if (r && sift_socket_opts_apply("control", path, "0600", NULL, r, err_r) < 0) {
		close(fd);
		return -1;
	}
	if (listen(fd, 8) < 0) {
		*err_r = sift_asprintf("control socket %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	ctl.fd = fd;
	ctl.request = request;
	ctl.path = sift_strdup(path);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		ctl.dev = st.st_dev;
		ctl.ino = st.st_ino;
	}
	pthread_t th;
	if (pthread_create(&th, NULL, control_thread, NULL) != 0) {
		*err_r = sift_asprintf("control socket %s: cannot start its thread", path);
		close(fd);
		unlink(path);
		ctl.fd = -1;
		return -1;
	}
	pthread_detach(th);
	return 0;
}

void sift_control_stop(void)
{
	if (ctl.fd < 0 || !ctl.path)
		return;
	/* Only the socket bound at start: one another instance has put at
	 * the path since (it found ours stale) stays. */
	struct stat st;
	if (lstat(ctl.path, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_dev != ctl.dev || st.st_ino != ctl.ino)
		return;
	if (unlink(ctl.path) < 0 && errno != ENOENT)
		sift_log(errno == EACCES || errno == EPERM ? LOG_DEBUG : LOG_WARNING, "control socket %s: %s",
			 ctl.path, strerror(errno));
}

/* The socket's send and receive timeouts: what is left until deadline; -1
 * with errno EAGAIN when nothing is. */
static int set_timeouts(int fd, const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long left_us = (long long)(deadline->tv_sec - now.tv_sec) * 1000000 +
			    (deadline->tv_nsec - now.tv_nsec) / 1000;
	if (left_us <= 0) {
		errno = EAGAIN;
		return -1;
	}
	struct timeval tv = {.tv_sec = (time_t)(left_us / 1000000),
			     .tv_usec = (suseconds_t)(left_us % 1000000)};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return 0;
}

/* Sends one command and reads the answer: 0 with the text after "ok " (the
 * first line only with first_line), -1 with *err_r. */
static int command(const char *path, const char *cmd, long timeout_ms, bool first_line, char **answer_r,
		   char **err_r)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (!path || path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
		*err_r = sift_asprintf("control socket \"%s\": not an absolute path", path ? path : "");
		return -1;
	}
	strcpy(sa.sun_path, path);
	/* One deadline for the whole exchange: connect() too waits (a daemon
	 * that does not accept, its backlog full, blocks it), and so does a
	 * daemon that answers a byte at a time. */
	struct timespec deadline;
	sift_timespec_in(CLOCK_MONOTONIC, timeout_ms, &deadline);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		set_timeouts(fd, &deadline);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (e == EAGAIN)
			*err_r = sift_asprintf(
				"control socket %s: the daemon did not accept the connection in time", path);
		else if (e == EACCES || e == EPERM)
			*err_r = sift_asprintf(
				"control socket %s: %s: only root or the daemon's user may use it", path,
				strerror(e));
		else
			*err_r = sift_asprintf("control socket %s: %s (is the daemon running?)", path,
					       strerror(e));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* Who listens there: the daemon listens before it drops its
	 * privileges, so its listener's credentials are root's (or, started
	 * as another user, that user's). The socket's directory is the daemon
	 * user's, who can swap another socket in at any time: which socket
	 * the path named, or who owns it, says nothing; the peer's
	 * credentials of the connection itself do. */
	struct ucred cr = {.uid = (uid_t)-1};
	socklen_t crl = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0 || (cr.uid != 0 && cr.uid != geteuid())) {
		if (geteuid() == 0)
			*err_r = sift_asprintf("control socket %s: answered by uid %u, not root: not the "
					       "daemon's; refusing it",
					       path, (unsigned)cr.uid);
		else
			*err_r = sift_asprintf("control socket %s: answered by uid %u, neither root nor uid "
					       "%u: not the daemon's; refusing it",
					       path, (unsigned)cr.uid, (unsigned)geteuid());
		close(fd);
		return -1;
	}
	/* A failed send is not the end: the daemon may have answered already. */
	char *line_out = sift_asprintf("%s\n", cmd);
	(void)send(fd, line_out, strlen(line_out), MSG_NOSIGNAL);
	free(line_out);
	struct sift_buf b = {0};
	char buf[512];
	for (;;) {
		ssize_t r = set_timeouts(fd, &deadline) < 0 ? -1 : recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		/* The daemon answers a refusal at once, without reading the
		 * request: its close() with the request unread resets the
		 * connection, after the answer. */
		if (r < 0 && errno == ECONNRESET && b.len)
			break;
		if (r < 0) {
			*err_r = sift_asprintf("control socket %s: %s", path,
					       errno == EAGAIN ? "no answer in time" : strerror(errno));
			sift_buf_free(&b);
			close(fd);
			return -1;
		}
		if (r == 0 || b.len > CTL_MAX_ANSWER)
			break;
		sift_buf_add(&b, buf, (size_t)r);
	}
	close(fd);
	const char *line = b.len ? sift_buf_str(&b) : "";
	size_t l = first_line ? strcspn(line, "\n") : strlen(line);
	if (!first_line && l && line[l - 1] == '\n')
		l--;
	int rc;
	if (strncmp(line, "ok ", 3) == 0) {
		*answer_r = sift_strndup(line + 3, l - 3);
		rc = 0;
	} else if (strncmp(line, "error ", 6) == 0) {
		*err_r = sift_strndup(line + 6, strcspn(line + 6, "\n"));
		rc = -1;
	} else {
		*err_r = sift_asprintf(
			"control socket %s: the daemon closed the connection without an answer", path);
		rc = -1;
	}
	sift_buf_free(&b);
	return rc;
}

int sift_control_reload(const char *path, long timeout_ms, char **answer_r, char **err_r)
{
	return command(path, "reload", timeout_ms, true, answer_r, err_r);
}

int sift_control_query(const char *path, const char *cmd, long timeout_ms, char **answer_r, char **err_r)
{
	return command(path, cmd, timeout_ms, false, answer_r, err_r);
}
