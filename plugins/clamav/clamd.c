/*
 * clamd.c - clamd mode: the message is streamed to an external clamd with
 * zINSTREAM (4-byte big-endian chunk lengths, a zero chunk ends the stream;
 * the reply is "stream: OK", "stream: <name> FOUND" or "<text> ERROR",
 * NUL-terminated).
 *
 * Servers are tried in order starting at a rotating index (load spread);
 * a server that cannot be connected to, or fails before answering, is
 * skipped and the next one tried while time is left (failover; each
 * attempt gets an equal share of the time left, the last all of it). Every
 * socket operation has a deadline (connect timeout, scan timeout, and the
 * MTA's time left, whichever is first). The number of concurrent streams is
 * bounded by a counting semaphore whose wait is also bounded: a scan that
 * cannot get a slot in time fails (the plugin's fail action).
 *
 * The socket helpers here are shared with notify.c. Sockets are
 * non-blocking, sends use MSG_NOSIGNAL (no SIGPIPE). Thread-safe: the client
 * is read-only after creation except for the semaphore, the rotation index
 * and the cached version, which are locked.
 */
#include <stdarg.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "clamav-int.h"

#define CHUNK (256 * 1024)

long long clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A clock_ms() deadline as the CLOCK_MONOTONIC timespec of the timed waits. */
static struct timespec deadline_ts(long long deadline)
{
	struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000L};
	return ts;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

int endpoint_parse(const char *spec, int default_port, struct endpoint *ep, char **err_r)
{
	memset(ep, 0, sizeof(*ep));
	const char *s = spec;
	bool is_unix = false;
	if (strncmp(s, "unix:", 5) == 0) {
		s += 5;
		is_unix = true;
	} else if (s[0] == '/')
		is_unix = true;
	else if (strncmp(s, "inet:", 5) == 0)
		s += 5;
	if (is_unix) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ep->sa;
		if (!*s || strlen(s) >= sizeof(un->sun_path)) {
			*err_r = dup_printf("bad unix socket path \"%s\"", spec);
			return -1;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, s);
		ep->family = AF_UNIX;
		ep->salen = sizeof(*un);
		ep->text = strdup(spec);
		return 0;
	}
	char host[256], port[16];
	const char *colon;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || (size_t)(close - s - 1) >= sizeof(host)) {
			*err_r = dup_printf("bad address \"%s\"", spec);
			return -1;
		}
		memcpy(host, s + 1, (size_t)(close - s - 1));
		host[close - s - 1] = 0;
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = strrchr(s, ':');
		size_t hl = colon ? (size_t)(colon - s) : strlen(s);
		if (hl == 0 || hl >= sizeof(host)) {
			*err_r = dup_printf("bad address \"%s\"", spec);
			return -1;
		}
		memcpy(host, s, hl);
		host[hl] = 0;
	}
	if (colon)
		snprintf(port, sizeof(port), "%s", colon + 1);
	else
		snprintf(port, sizeof(port), "%d", default_port);
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || !res) {
		*err_r = dup_printf("cannot resolve \"%s\": %s", spec, gai_strerror(rc));
		return -1;
	}
	memcpy(&ep->sa, res->ai_addr, res->ai_addrlen);
	ep->salen = res->ai_addrlen;
	ep->family = res->ai_family;
	freeaddrinfo(res);
	ep->text = strdup(spec);
	return 0;
}

void endpoint_free(struct endpoint *ep)
{
	free(ep->text);
	ep->text = NULL;
}

static int wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - clock_ms();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = {.fd = fd, .events = events};
		int rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

int sock_connect(const struct endpoint *ep, long long deadline)
{
	int fd = socket(ep->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int rc;
	while ((rc = connect(fd, (const struct sockaddr *)&ep->sa, ep->salen)) < 0) {
		/* A unix socket whose listen backlog is full: the connect did
		 * not start (nothing to wait for with poll). Try again while
		 * there is time: the server takes the waiting ones soon. */
		if (errno == EAGAIN && ep->family == AF_UNIX) {
			long long left = deadline - clock_ms();
			if (left <= 0) {
				close(fd);
				errno = EAGAIN;
				return -1;
			}
			struct timespec ts = {.tv_sec = 0, .tv_nsec = (left < 10 ? left : 10) * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		break;
	}
	if (rc == 0)
		return fd;
	if (errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (wait_fd(fd, POLLOUT, deadline) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
		close(fd);
		errno = soerr ? soerr : EIO;
		return -1;
	}
	return fd;
}

int sock_sendv_all(int fd, struct iovec *iov, int n, long long deadline)
{
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, deadline) < 0)
				return -1;
			continue;
		}
		if (w < 0)
			return -1;
		size_t done = (size_t)w;
		while (n > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

int sock_send_all(int fd, const void *p, size_t n, long long deadline)
{
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	return sock_sendv_all(fd, &iov, 1, deadline);
}

long sock_recv_until(int fd, char *buf, size_t n, char stop, long long deadline)
{
	size_t len = 0;
	while (len + 1 < n) {
		ssize_t r = recv(fd, buf + len, n - 1 - len, 0);
		if (r > 0) {
			bool done = memchr(buf + len, stop, (size_t)r) != NULL;
			len += (size_t)r;
			if (done)
				break;
			continue;
		}
		if (r == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (wait_fd(fd, POLLIN, deadline) < 0)
				return -1;
			continue;
		}
		return -1;
	}
	buf[len] = 0;
	return (long)len;
}

/* ---- the client ------------------------------------------------------------- */

struct clamd_client {
	struct endpoint *eps;
	size_t n;
	long long connect_timeout, scan_timeout, stream_wait;
	struct slots streams; /* streams in progress */

	pthread_mutex_t lock; /* next and version */
	size_t next;	      /* rotation */
	char version[64];
	long long version_tried;
	pthread_mutex_t fetch_lock; /* held while one scan asks for the version */
};

struct clamd_client *clamd_new(const char *const *servers, long long connect_timeout_ms,
			       long long scan_timeout_ms, long long max_streams, long long stream_wait_ms,
			       char **err_r)
{
	struct clamd_client *c = calloc(1, sizeof(*c));
	if (!c) {
		*err_r = strdup("out of memory");
		return NULL;
	}
	for (size_t i = 0; servers && servers[i]; i++)
		c->n++;
	if (!c->n) {
		free(c);
		*err_r = strdup("clamav_clamd_servers is empty");
		return NULL;
	}
	c->eps = calloc(c->n, sizeof(*c->eps));
	for (size_t i = 0; c->eps && i < c->n; i++)
		if (endpoint_parse(servers[i], 3310, &c->eps[i], err_r) < 0) {
			for (size_t j = 0; j < i; j++)
				endpoint_free(&c->eps[j]);
			free(c->eps);
			free(c);
			return NULL;
		}
	c->connect_timeout = connect_timeout_ms;
	c->scan_timeout = scan_timeout_ms;
	c->stream_wait = stream_wait_ms;
	slots_init(&c->streams, max_streams);
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->fetch_lock, NULL);
	return c;
}

void clamd_free(struct clamd_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		endpoint_free(&c->eps[i]);
	free(c->eps);
	slots_destroy(&c->streams);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->fetch_lock);
	free(c);
}

const char *clamd_version(struct clamd_client *c)
{
	pthread_mutex_lock(&c->lock);
	const char *v = c->version[0] ? c->version : NULL;
	pthread_mutex_unlock(&c->lock);
	return v; /* written once, never changed afterwards */
}

/* ---- bounded concurrency (clamd streams, library-mode scans) ---------- */

void cond_init_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
}

void slots_init(struct slots *s, long long max)
{
	s->max = max;
	s->active = 0;
	pthread_mutex_init(&s->lock, NULL);
	cond_init_monotonic(&s->cond);
}

void slots_set_max(struct slots *s, long long max)
{
	pthread_mutex_lock(&s->lock);
	s->max = max;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void slots_destroy(struct slots *s)
{
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

bool slots_take(struct slots *s, long long deadline)
{
	pthread_mutex_lock(&s->lock);
	while (s->active >= s->max) {
		long long left = deadline - clock_ms();
		if (left <= 0) {
			pthread_mutex_unlock(&s->lock);
			return false;
		}
		struct timespec ts = deadline_ts(deadline);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	s->active++;
	pthread_mutex_unlock(&s->lock);
	return true;
}

void slots_give(struct slots *s)
{
	pthread_mutex_lock(&s->lock);
	s->active--;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* The database version and build time after the engine's version in
 * clamd's VERSION reply ("/27000/Tue Dec  1 09:00:00 2026"), for the
 * daemon's metrics (host->gauge_set, in hosts that have it). */
static void report_database(const char *rest)
{
	const struct sift_host *h = clamav_host;
	if (h->struct_size < offsetof(struct sift_host, gauge_set) + sizeof(h->gauge_set) || !h->gauge_set ||
	    rest[0] != '/')
		return;
	char *end;
	long long version = strtoll(rest + 1, &end, 10);
	if (end == rest + 1 || *end != '/')
		return;
	h->gauge_set("clamav", "database_version", (double)version);
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *p = strptime(end + 1, "%a %b %e %H:%M:%S %Y", &tm);
	if (p) {
		tm.tm_isdst = -1; /* clamd writes its local time (ctime) */
		time_t t = mktime(&tm);
		if (t != (time_t)-1)
			h->gauge_set("clamav", "database_timestamp_seconds", (double)t);
	}
}

/* Asks one server for its version ("ClamAV 1.4.6/27000/..."), once a minute
 * at most until it is known. One scan asks at a time; the scans that end
 * meanwhile wait for its answer (within their deadline), so that the
 * first messages after a start carry the version in their header too. */
static void fetch_version(struct clamd_client *c, const struct endpoint *ep, long long deadline)
{
	pthread_mutex_lock(&c->lock);
	bool known = c->version[0] != 0;
	pthread_mutex_unlock(&c->lock);
	if (known)
		return;
	long long dl = clock_ms() + 2000;
	if (dl > deadline)
		dl = deadline;
	struct timespec ts = deadline_ts(dl);
	if (pthread_mutex_clocklock(&c->fetch_lock, CLOCK_MONOTONIC, &ts) != 0)
		return;
	pthread_mutex_lock(&c->lock);
	bool want = !c->version[0] && clock_ms() - c->version_tried > 60000;
	if (want)
		c->version_tried = clock_ms();
	pthread_mutex_unlock(&c->lock);
	int fd = want ? sock_connect(ep, dl) : -1;
	if (fd < 0) {
		pthread_mutex_unlock(&c->fetch_lock);
		return;
	}
	char reply[256];
	if (sock_send_all(fd, "zVERSION", 9, dl) == 0 &&
	    sock_recv_until(fd, reply, sizeof(reply), 0, dl) > 0 && strncmp(reply, "ClamAV ", 7) == 0) {
		size_t k = strcspn(reply + 7, "/");
		report_database(reply + 7 + k);
		pthread_mutex_lock(&c->lock);
		if (!c->version[0])
			snprintf(c->version, sizeof(c->version), "%.*s", (int)(k < 60 ? k : 60), reply + 7);
		pthread_mutex_unlock(&c->lock);
	}
	close(fd);
	pthread_mutex_unlock(&c->fetch_lock);
}

/* One attempt on one server. Returns 1 with a result, 0 to try the next
 * server (why in namebuf). */
static int scan_one(struct clamd_client *c, const struct endpoint *ep, const struct scan_src *src,
		    char *chunk, long long deadline, enum scan_result *res, char *namebuf, size_t namelen)
{
	long long cdl = clock_ms() + c->connect_timeout;
	int fd = sock_connect(ep, cdl < deadline ? cdl : deadline);
	if (fd < 0) {
		snprintf(namebuf, namelen, "clamd %s: connect: %s", ep->text, strerror(errno));
		return 0;
	}
	char reply[1024];
	/* One sendmsg per chunk: the command goes with the first chunk and the
	 * end marker with the last (a message under CHUNK is one write, so
	 * clamd wakes up once). Chunks are read from the message as they go. */
	bool sent = true;
	long long off = 0, len = src->size;
	do {
		long n = src_read(src, off, chunk, len - off < CHUNK ? (size_t)(len - off) : CHUNK);
		if (n < 0 || (n == 0 && off < len)) {
			close(fd);
			snprintf(namebuf, namelen, "cannot read the message");
			*res = SCAN_FAILED;
			return 1; /* not the server's fault: no failover */
		}
		uint32_t be = htonl((uint32_t)n), zero = 0;
		struct iovec iov[4];
		int k = 0;
		if (off == 0)
			iov[k++] = (struct iovec){.iov_base = (void *)"zINSTREAM", .iov_len = 10};
		if (n) {
			iov[k++] = (struct iovec){.iov_base = &be, .iov_len = 4};
			iov[k++] = (struct iovec){.iov_base = chunk, .iov_len = (size_t)n};
		}
		off += n;
		if (off >= len)
			iov[k++] = (struct iovec){.iov_base = &zero, .iov_len = 4};
		sent = sock_sendv_all(fd, iov, k, deadline) == 0;
	} while (sent && off < len);
	int send_errno = errno;
	/* Even after a failed send, clamd may have answered (size limit). */
	long long rdl = sent ? deadline : clock_ms() + 1000;
	long r = sock_recv_until(fd, reply, sizeof(reply), 0, rdl < deadline ? rdl : deadline);
	close(fd);
	if (r <= 0) {
		snprintf(namebuf, namelen, "clamd %s: %s", ep->text,
			 !sent	  ? strerror(send_errno)
			 : r == 0 ? "connection closed without a reply"
				  : strerror(errno));
		return 0;
	}
	reply[strcspn(reply, "\n")] = 0;
	size_t rl = strlen(reply);
	const char *p = reply;
	if (strncmp(p, "stream: ", 8) == 0)
		p += 8;
	if (strcmp(p, "OK") == 0 && !sent) {
		/* clamd answered before it had the whole message (the send
		 * failed): its "OK" is about a part of it. Only a virus found
		 * in that part or its size limit stand. */
		snprintf(namebuf, namelen, "clamd %s: answered \"%s\" before it had the whole message (%s)",
			 ep->text, reply, strerror(send_errno));
		return 0;
	}
	if (strcmp(p, "OK") == 0) {
		*res = SCAN_CLEAN;
		namebuf[0] = 0;
	} else if (rl > 6 && strcmp(reply + rl - 6, " FOUND") == 0) {
		/* the name lies between the prefix and " FOUND": none in
		 * "stream: FOUND", where the two overlap */
		const char *end = reply + rl - 6;
		size_t nl = end > p ? (size_t)(end - p) : 0;
		/* ExtendedDetectionInfo adds "(hash:size)" */
		const char *paren = memchr(p, '(', nl);
		if (paren)
			nl = (size_t)(paren - p);
		while (nl && p[nl - 1] == ' ')
			nl--;
		if (nl == 0) {
			/* clamd always names what it found: a broken answer */
			snprintf(namebuf, namelen, "clamd %s: FOUND without a name: %s", ep->text, reply);
			return 0;
		}
		snprintf(namebuf, namelen, "%.*s", (int)nl, p);
		if (alert_is_timeout(namebuf)) {
			/* clamd ran out of time (its MaxScanTime): the rest of
			 * the message was never scanned */
			snprintf(namebuf, namelen, "clamd %s: scan timeout (%.*s)", ep->text, (int)nl, p);
			*res = SCAN_FAILED;
		} else
			*res = (strncmp(namebuf, "Heuristics.Encrypted", 20) == 0 ||
				strncmp(namebuf, "Heuristics.Limits.Exceeded", 26) == 0)
				       ? SCAN_LIMIT
				       : SCAN_VIRUS;
	} else if (strstr(reply, "size limit exceeded")) {
		snprintf(namebuf, namelen, "clamd: %s", reply);
		*res = SCAN_LIMIT;
	} else {
		snprintf(namebuf, namelen, "clamd %s: %s", ep->text, reply);
		return 0;
	}
	fetch_version(c, ep, deadline);
	return 1;
}

enum scan_result clamd_scan(struct clamd_client *c, const struct scan_src *src, long long deadline,
			    char *namebuf, size_t namelen)
{
	long long sdl = clock_ms() + c->scan_timeout;
	if (sdl < deadline)
		deadline = sdl;
	long long wdl = clock_ms() + c->stream_wait;
	if (!slots_take(&c->streams, wdl < deadline ? wdl : deadline)) {
		snprintf(namebuf, namelen, "too many concurrent clamd streams (clamav_clamd_max_streams)");
		return SCAN_FAILED;
	}
	pthread_mutex_lock(&c->lock);
	size_t start = c->next++ % c->n;
	pthread_mutex_unlock(&c->lock);
	enum scan_result res = SCAN_FAILED;
	snprintf(namebuf, namelen, "no clamd server");
	char *chunk = malloc(CHUNK);
	if (!chunk) {
		slots_give(&c->streams);
		snprintf(namebuf, namelen, "out of memory");
		return SCAN_FAILED;
	}
	for (size_t k = 0; k < c->n; k++) {
		long long now = clock_ms();
		if (now >= deadline)
			break;
		/* Each attempt gets an equal share of the time left, the last
		 * one all of it: a server that accepts and then hangs leaves
		 * time for the others. */
		long long adl = now + (deadline - now) / (long long)(c->n - k);
		const struct endpoint *ep = &c->eps[(start + k) % c->n];
		if (scan_one(c, ep, src, chunk, adl, &res, namebuf, namelen))
			break;
		bool next = k + 1 < c->n && clock_ms() < deadline;
		clamav_host->log(NULL, LOG_WARNING, "clamav: %s%s", namebuf,
				 next ? ", trying the next server" : "");
		res = SCAN_FAILED;
	}
	free(chunk);
	slots_give(&c->streams);
	return res;
}
