/*
 * policyd.c - the Sift policy daemon: a Postfix SMTP access policy
 * delegation server (check_policy_service) that runs each request through
 * the configured plugin chain and answers "action=...".
 *
 * Architecture: one event thread and a fixed pool of worker threads.
 *
 *   - The event thread owns the listening sockets, a signalfd (SIGHUP,
 *     SIGTERM, SIGINT) and every idle connection. It accepts, reads
 *     non-blocking (epoll, EPOLLONESHOT) and feeds the bytes to the strict
 *     protocol codec (lib/policy.c). It enforces the idle and request
 *     timeouts, the connection limit and the protocol rules: garbage, a NUL
 *     byte or an over-long line closes that one connection at once, without
 *     a reply (Postfix logs it and retries), and no other client notices.
 *   - A complete request moves its connection to the work queue. A worker
 *     takes it, runs the request through the plugin chain, writes the reply
 *     in one non-blocking write(2), and gives the connection back: in the
 *     common case (reply written, nothing received after the request, not
 *     stopping) it resets the connection for the next request and re-arms
 *     its epoll registration itself, so the event thread is not woken twice
 *     per request; otherwise it goes back through the return queue (an
 *     eventfd wakes the event thread), which closes it, writes the rest of
 *     the reply or feeds it the bytes that came after the request.
 *   - A worker never waits for a client to read: what the socket does not
 *     take of a reply (a client sending requests without reading the
 *     replies) stays in the connection's `out`, and the event thread writes
 *     it on EPOLLOUT. Until it is out nothing more is read from that
 *     connection, so it holds one reply at most; after WRITE_TIMEOUT_MS
 *     without the reply going out, the connection is closed. A handful of
 *     such clients could otherwise hold every worker in write(2).
 *
 * Why this shape: Postfix keeps one persistent connection per smtpd process
 * and sends one request at a time on it, waiting for the answer; so there
 * are many connections (hundreds), mostly idle, and each has at most one
 * request in flight. A thread per connection would park hundreds of threads
 * on idle sockets; a single event loop running the plugins would stall every
 * client whenever one plugin waits for DNS (SPF, DNSBL) or Redis. Here idle
 * connections cost no thread (just a struct and an epoll registration),
 * reading and parsing never block, and a plugin that blocks holds one worker
 * only, up to the per-request deadline; with policyd_workers workers, that
 * many requests can wait on DNS at once while the others keep being served.
 *
 * Ownership: a connection is owned by exactly one thread at a time. The
 * event thread owns it while it is idle or being read; once a request is
 * complete the event thread puts it on the work queue and does not touch it
 * (it only counts it, and skips it in timeout scans: `busy`) until a worker
 * puts it back on the return queue or re-arms it. Both queues are
 * mutex-protected lists, and the hand-over through them orders all
 * accesses. A worker re-arming a connection does so under the connection's
 * mutex `mu` (reset, busy = false, epoll_ctl), and the event thread takes
 * that mutex before it looks at a connection it was not handed (timeout
 * scan, shutdown) or that epoll reports, so it sees either a busy
 * connection or a fully reset one; `stopping` is read under the same mutex,
 * so a connection re-armed after the shutdown began is not missed. Closing a connection
 * is decided by the event thread; it closes the socket itself, but the
 * context (plugin close hooks, per-message state) is freed by a worker so
 * that no plugin code ever runs on the event thread.
 *
 * Per-message state: Postfix's `instance` attribute is the same for all
 * requests of one mail transaction on a connection. When it changes, the
 * previous message is ended (aborted, since END-OF-MESSAGE was not seen) and
 * a new one begins; an END-OF-MESSAGE request ends the message after its
 * reply has been written.
 *
 * Configuration generations: each connection's context holds the generation
 * (configuration + initialised plugins) that was current when it was
 * accepted. SIGHUP builds a new generation from the configuration file in
 * the event thread and makes it current; running connections keep theirs
 * until they close. A failed reload is logged and changes nothing. The
 * timeouts and the deadline change at once; the other policyd_* settings
 * take effect at the next restart, and a reload that changes one logs a
 * warning naming it (sift_params_restart_only, as filterd does).
 *
 * SIGTERM/SIGINT: stop accepting, close idle connections, let the requests
 * in progress finish and their replies go out, then exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sift.h"

#define DEFAULT_CONFIG	 SIFT_SYSCONFDIR "/policyd.conf"
#define READ_BUF	 16384
#define WRITE_TIMEOUT_MS 10000

/* ---- parameters ------------------------------------------------------------ */

struct policyd_conf {
	const char *const *listen;
	const char *user;
	const char *pid_file;
	const char *socket_mode;
	const char *socket_group;
	long long workers;
	long long max_connections;
	long long idle_timeout;	    /* ms */
	long long request_timeout;  /* ms */
	long long request_deadline; /* ms */
	const char *control_socket;
};

#define OFF(f) offsetof(struct policyd_conf, f)
static const struct sift_param policyd_params[] = {
	{"policyd_listen", SIFT_P_LIST, "inet:127.0.0.1:8892", 0, 0, OFF(listen), NULL,
	 "endpoints to listen on: unix:/path, inet:host:port, inet6:[addr]:port"},
	{"policyd_user", SIFT_P_STRING, "", 0, 0, OFF(user), NULL,
	 "user to run as after binding the sockets (required when started as root; root: stay root)"},
	{"policyd_pid_file", SIFT_P_STRING, "", 0, 0, OFF(pid_file), NULL,
	 "file to write the process id to, as root before the drop (empty: none)"},
	{"policyd_socket_mode", SIFT_P_STRING, "0660", 0, 0, OFF(socket_mode), NULL,
	 "permissions of the unix listening sockets (octal)"},
	{"policyd_socket_group", SIFT_P_STRING, "", 0, 0, OFF(socket_group), NULL,
	 "group of the unix listening sockets, e.g. postfix (empty: policyd_user's group)"},
	{"policyd_workers", SIFT_P_INT, "16", 1, 1024, OFF(workers), NULL,
	 "worker threads running requests through the plugins"},
	{"policyd_max_connections", SIFT_P_INT, "1000", 1, 1000000, OFF(max_connections), NULL,
	 "connections served at once; more are closed at once with a warning"},
	{"policyd_idle_timeout", SIFT_P_TIME, "600s", 1000, 86400000LL, OFF(idle_timeout), NULL,
	 "close a connection idle this long (above smtpd_policy_service_max_idle)"},
	{"policyd_request_timeout", SIFT_P_TIME, "30s", 100, 3600000LL, OFF(request_timeout), NULL,
	 "time allowed to receive the rest of a request once it started"},
	{"policyd_request_deadline", SIFT_P_TIME, "20s", 100, 3600000LL, OFF(request_deadline), NULL,
	 "time the plugins get for one request, from its arrival (host->time_left_ms)"},
	{"policyd_control_socket", SIFT_P_STRING, SIFT_POLICYD_CONTROL_SOCKET, 0, 0, OFF(control_socket),
	 NULL,
	 "unix socket for siftctl reload and status (made as root, mode 0600, then owned by policyd_user; "
	 "empty: none)"},
	SIFT_PARAM_END,
};
#undef OFF

/* ---- state ------------------------------------------------------------------ */

enum src_type { SRC_LISTENER, SRC_SIGNAL, SRC_WAKE, SRC_CONN };

/* Every epoll registration points at a struct starting with this. */
struct src {
	enum src_type type;
};

struct listener {
	struct src src;
	int fd;
	bool inet;
	char *endpoint;
};

struct conn {
	struct src src;
	int fd;
	pthread_mutex_t mu; /* see "Ownership" above */
	char peer[80];	    /* "inet:127.0.0.1:54321", "unix:/path" */
	struct sift_ctx *ctx;
	struct sift_policy_parser parser;
	char *pending; /* bytes received after the request */
	size_t pending_len;
	long long last_activity;  /* event thread: ms */
	long long request_start;  /* event thread: first byte of a partial request */
	long long request_ready;  /* when the request was complete: its deadline counts from there */
	bool busy;		  /* event thread: on the work queue / in a worker */
	bool closing;		  /* work item: free the context */
	bool failed;		  /* worker: the reply could not be written */
	char *out;		  /* the part of the reply the socket did not take */
	size_t out_len, out_off;  /* its length, how much of it is written */
	long long out_since;	  /* when the socket stopped taking it: ms */
	char *instance;		  /* worker: current message's instance */
	struct conn *prev, *next; /* event thread's list of connections */
	struct conn *qnext;	  /* work / return queue link */
};

struct queue {
	pthread_mutex_t lock;
	struct conn *head, **tail;
};

static struct sift_opts opts;
static struct policyd_conf pconf;
static atomic_llong request_deadline;

static int epfd = -1, sigfd = -1, wakefd = -1, spare_fd = -1;
static struct listener *listeners;
static size_t n_listeners;
static struct conn *conns;
static long n_conns;
static atomic_bool stopping;
static long long accept_paused_until; /* 0 = accepting */
static struct src sig_src = {SRC_SIGNAL}, wake_src = {SRC_WAKE};

/* The work queue's semaphore counts its items plus, at exit, one stop token
 * per worker: a semaphore rather than a condition variable because a woken
 * pthread_cond_wait re-takes its mutex as contended, which costs every
 * request one more futex call at the unlock. */
static struct queue work_q, ret_q;
static sem_t work_sem;
static bool workers_stop; /* under work_q.lock */
static pthread_t *workers;
static size_t n_workers;

/* ---- queues ------------------------------------------------------------------ */

static void queue_init(struct queue *q)
{
	pthread_mutex_init(&q->lock, NULL);
	q->head = NULL;
	q->tail = &q->head;
}

/* Appends c; returns true if the queue was empty. Caller holds the lock. */
static bool queue_push_locked(struct queue *q, struct conn *c)
{
	bool was_empty = q->head == NULL;
	c->qnext = NULL;
	*q->tail = c;
	q->tail = &c->qnext;
	return was_empty;
}

static struct conn *queue_pop_locked(struct queue *q)
{
	struct conn *c = q->head;
	if (c) {
		q->head = c->qnext;
		if (!q->head)
			q->tail = &q->head;
		c->qnext = NULL;
	}
	return c;
}

static void work_push(struct conn *c)
{
	pthread_mutex_lock(&work_q.lock);
	queue_push_locked(&work_q, c);
	pthread_mutex_unlock(&work_q.lock);
	/* After the unlock: the woken worker does not block on the lock. */
	sem_post(&work_sem);
}

/* Worker → event thread. The eventfd is written only when the queue was
 * empty: the event thread drains the whole queue on each wake-up. */
static void return_push(struct conn *c)
{
	pthread_mutex_lock(&ret_q.lock);
	bool wake = queue_push_locked(&ret_q, c);
	pthread_mutex_unlock(&ret_q.lock);
	if (wake) {
		uint64_t one = 1;
		ssize_t w = write(wakefd, &one, sizeof(one));
		(void)w;
	}
}

/* ---- connections (event thread) ------------------------------------------------ */

static void conn_free(struct conn *c)
{
	pthread_mutex_destroy(&c->mu);
	sift_policy_parser_reset(&c->parser);
	free(c->pending);
	free(c->out);
	free(c->instance);
	free(c);
}

static void conn_close(struct conn *c)
{
	close(c->fd); /* also removes it from the epoll set */
	c->fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	n_conns--;
	sift_metrics_conn(-1);
	if (c->ctx) {
		/* Plugin close hooks run on a worker, never here. */
		c->closing = true;
		c->busy = true;
		work_push(c);
	} else
		conn_free(c);
}

static void conn_arm(struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
		sift_log(LOG_ERR, "policy client %s: epoll: %s", c->peer, strerror(errno));
		conn_close(c);
	}
}

/* A reply the client has not taken yet: wait until it can be written. */
static void conn_arm_out(struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLOUT | EPOLLONESHOT, .data.ptr = c};
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
		sift_log(LOG_ERR, "policy client %s: epoll: %s", c->peer, strerror(errno));
		conn_close(c);
	}
}

/* Writes what it can of the connection's pending reply without blocking:
 * 1 all of it is written, 0 the socket takes no more now, -1 error. */
static int conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
		if (w > 0) {
			c->out_off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (w == 0)
			errno = EIO;
		return -1;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	return 1;
}

/* Feeds received bytes to the codec; dispatches a complete request, re-arms
 * the connection when more is needed, closes it on a protocol error. */
static void conn_input(struct conn *c, const char *buf, size_t len)
{
	size_t used = 0;
	int rc = sift_policy_feed(&c->parser, buf, len, &used);
	if (rc < 0) {
		sift_log(LOG_ERR,
			 "policy client %s: protocol error: %s; closing the connection without "
			 "reply",
			 c->peer, c->parser.error);
		conn_close(c);
		return;
	}
	if (rc == 0) {
		if (!c->request_start && (c->parser.line_len || c->parser.req.n))
			c->request_start = sift_now_ms();
		conn_arm(c);
		return;
	}
	/* A complete request. Postfix waits for the reply, so there is
	 * normally nothing after it; keep whatever there is for later. */
	size_t rest = len - used;
	char *pending = NULL;
	if (rest) {
		pending = sift_malloc(rest);
		memcpy(pending, buf + used, rest);
	}
	free(c->pending);
	c->pending = pending;
	c->pending_len = rest;
	c->request_ready = sift_now_ms();
	c->busy = true;
	work_push(c);
}

static void conn_readable(struct conn *c)
{
	static char buf[READ_BUF];
	ssize_t r = read(c->fd, buf, sizeof(buf));
	if (r > 0) {
		c->last_activity = sift_now_ms();
		conn_input(c, buf, (size_t)r);
		return;
	}
	if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
		conn_arm(c);
		return;
	}
	if (r < 0)
		sift_log(LOG_WARNING, "policy client %s: read: %s", c->peer, strerror(errno));
	else if (c->parser.line_len || c->parser.req.n)
		sift_log(LOG_WARNING, "policy client %s: connection closed in the middle of a request",
			 c->peer);
	else
		sift_log(LOG_DEBUG, "policy client %s: disconnected", c->peer);
	conn_close(c);
}

static void conn_next(struct conn *c);

/* A connection a worker is done with. */
static void conn_returned(struct conn *c)
{
	c->busy = false;
	c->last_activity = sift_now_ms();
	c->request_start = 0;
	sift_policy_parser_reset(&c->parser);
	if (c->failed) {
		conn_close(c);
		return;
	}
	if (c->out) {
		/* The client is not reading: the event thread writes the rest
		 * when the socket takes it, or closes the connection after
		 * WRITE_TIMEOUT_MS; nothing more is read from it meanwhile. */
		conn_arm_out(c);
		return;
	}
	if (stopping) {
		conn_close(c);
		return;
	}
	conn_next(c);
}

/* The reply is out: the next request, from what came after the last one
 * or from the socket. */
static void conn_next(struct conn *c)
{
	if (c->pending) {
		char *p = c->pending;
		size_t n = c->pending_len;
		c->pending = NULL;
		c->pending_len = 0;
		c->request_start = sift_now_ms();
		conn_input(c, p, n);
		free(p);
		return;
	}
	conn_arm(c);
}

/* The socket of a connection with a pending reply can take more. */
static void conn_writable(struct conn *c)
{
	int rc = conn_flush(c);
	if (rc < 0) {
		sift_log(LOG_WARNING, "policy client %s: writing the reply: %s", c->peer, strerror(errno));
		conn_close(c);
	} else if (rc == 0)
		conn_arm_out(c);
	else if (stopping)
		conn_close(c);
	else {
		c->last_activity = sift_now_ms();
		conn_next(c);
	}
}

static void format_peer(struct conn *c, const struct listener *l, const struct sockaddr_storage *ss)
{
	char addr[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
		snprintf(c->peer, sizeof(c->peer), "inet:%s:%u", addr, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
		snprintf(c->peer, sizeof(c->peer), "inet6:[%s]:%u", addr, ntohs(sin6->sin6_port));
	} else
		snprintf(c->peer, sizeof(c->peer), "%s", l->endpoint);
}

/* Stops polling the listeners for 100 ms: the last resort when accept
 * keeps failing (no spare descriptor left, no kernel memory), so that a
 * readable listener cannot make the event loop spin. */
static void accept_pause(void)
{
	for (size_t i = 0; i < n_listeners; i++) {
		struct epoll_event ev = {.events = 0, .data.ptr = &listeners[i].src};
		epoll_ctl(epfd, EPOLL_CTL_MOD, listeners[i].fd, &ev);
	}
	accept_paused_until = sift_now_ms() + 100;
}

static void accept_resume(void)
{
	accept_paused_until = 0;
	if (spare_fd < 0)
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (size_t i = 0; i < n_listeners; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listeners[i].src};
		if (listeners[i].fd >= 0)
			epoll_ctl(epfd, EPOLL_CTL_MOD, listeners[i].fd, &ev);
	}
}

static void accept_ready(struct listener *l)
{
	static long long last_full_warning;
	static long suppressed;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
				/* Out of descriptors: use the spare one to take
				 * the connection off the backlog and close it,
				 * instead of spinning on a readable listener. */
				static long long last_emfile_warning;
				long long t = sift_now_ms();
				if (t - last_emfile_warning >= 1000) {
					sift_log(LOG_WARNING, "accept on %s: %s; closing new connections",
						 l->endpoint, strerror(errno));
					last_emfile_warning = t;
				}
				close(spare_fd);
				spare_fd = -1;
				int x = accept(l->fd, NULL, NULL);
				if (x >= 0)
					close(x);
				spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				if (x < 0 || spare_fd < 0) {
					accept_pause();
					return;
				}
				continue;
			}
			sift_log(LOG_WARNING, "accept on %s: %s", l->endpoint, strerror(errno));
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				accept_pause();
			return;
		}
		struct conn *c = sift_calloc(1, sizeof(*c));
		c->src.type = SRC_CONN;
		c->fd = fd;
		format_peer(c, l, &ss);
		pthread_mutex_init(&c->mu, NULL);
		if (n_conns >= pconf.max_connections) {
			long long now = sift_now_ms();
			if (now - last_full_warning >= 1000) {
				sift_log(LOG_WARNING,
					 "too many connections (policyd_max_connections = %lld): "
					 "closing the connection from %s%s",
					 pconf.max_connections, c->peer,
					 suppressed ? " (and others not logged)" : "");
				last_full_warning = now;
				suppressed = 0;
			} else
				suppressed++;
			close(fd);
			pthread_mutex_destroy(&c->mu);
			free(c);
			continue;
		}
		if (l->inet) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		sift_policy_parser_init(&c->parser);
		struct sift_gen *g = sift_gen_current();
		c->ctx = sift_ctx_new(g, SIFT_POLICYD); /* takes its own reference */
		sift_gen_unref(g);
		c->last_activity = sift_now_ms();
		c->next = conns;
		if (conns)
			conns->prev = c;
		conns = c;
		n_conns++;
		sift_metrics_conn(1);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			sift_log(LOG_ERR, "epoll: %s", strerror(errno));
			conn_close(c);
			continue;
		}
		sift_log(LOG_DEBUG, "policy client %s: connected", c->peer);
	}
}

static void scan_timeouts(void)
{
	long long now = sift_now_ms();
	struct conn *next;
	for (struct conn *c = conns; c; c = next) {
		next = c->next;
		pthread_mutex_lock(&c->mu);
		bool busy = c->busy;
		pthread_mutex_unlock(&c->mu);
		if (busy)
			continue;
		if (c->out && now - c->out_since > WRITE_TIMEOUT_MS) {
			sift_log(LOG_WARNING,
				 "policy client %s: not reading its replies: %zu bytes of a reply not "
				 "taken after %lld ms; closing the connection",
				 c->peer, c->out_len - c->out_off, now - c->out_since);
			conn_close(c);
		} else if (c->request_start && now - c->request_start > pconf.request_timeout) {
			sift_log(LOG_WARNING,
				 "policy client %s: request not complete after %lld ms; closing the "
				 "connection without reply",
				 c->peer, now - c->request_start);
			conn_close(c);
		} else if (!c->request_start && now - c->last_activity > pconf.idle_timeout) {
			sift_log(LOG_INFO, "policy client %s: idle for %lld s; closing", c->peer,
				 (now - c->last_activity) / 1000);
			conn_close(c);
		}
	}
}

/* ---- requests (worker threads) -------------------------------------------------- */

static const char *attr_lookup(void *arg, const char *name)
{
	struct conn *c = arg;
	return sift_policy_get(&c->parser.req, name);
}

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

/* An action that refuses the recipient or message it answers: a 4xx/5xx
 * reply, REJECT, DEFER, DEFER_IF_PERMIT (a refusal unless a later
 * restriction rejects). DEFER_IF_REJECT refuses only what is rejected
 * anyway. */
static bool refuses(const char *a)
{
	if (a[0] == '4' || a[0] == '5' || strncasecmp(a, "REJECT", 6) == 0)
		return true;
	return strncasecmp(a, "DEFER", 5) == 0 && strncasecmp(a, "DEFER_IF_REJECT", 15) != 0;
}

/* The verdict an END-OF-MESSAGE action stands for. */
static enum sift_verdict outcome_of(const char *a)
{
	if (strncasecmp(a, "DISCARD", 7) == 0)
		return SIFT_DISCARD;
	if (!refuses(a))
		return SIFT_DUNNO;
	return a[0] == '4' || strncasecmp(a, "DEFER", 5) == 0 ? SIFT_TEMPFAIL : SIFT_REJECT;
}

static void handle_request(struct conn *c)
{
	struct sift_ctx *ctx = c->ctx;
	const struct sift_policy_req *r = &c->parser.req;
	const char *instance = sift_policy_get(r, "instance");
	const char *state = sift_policy_get(r, "protocol_state");
	/* Without an instance (Postfix always sends one; another client may
	 * not) a request is a transaction of its own: it shares nothing with
	 * the requests before it, such as another login's sender check. */
	bool alone = !instance || !*instance;
	if (alone)
		instance = "";

	/* A new instance: the previous transaction is over. */
	if (alone || !sift_ctx_in_msg(ctx) || !c->instance || strcmp(c->instance, instance) != 0) {
		if (sift_ctx_in_msg(ctx))
			sift_ctx_msg_end(ctx, true); /* no END-OF-MESSAGE was seen */
		sift_ctx_msg_begin(ctx);
		free(c->instance);
		c->instance = sift_strdup(instance);
	}

	static const struct {
		const char *attr;
		enum sift_item item;
		bool empty_is_null;
	} map[] = {
		{"client_address", SIFT_I_CLIENT_ADDR, true},
		{"client_name", SIFT_I_CLIENT_NAME, true},
		{"reverse_client_name", SIFT_I_CLIENT_PTR, true},
		{"client_port", SIFT_I_CLIENT_PORT, true},
		{"helo_name", SIFT_I_HELO, true},
		{"sender", SIFT_I_SENDER, false}, /* "" is the null sender */
		{"recipient", SIFT_I_RCPT, true},
		{"queue_id", SIFT_I_QUEUE_ID, true},
		{"sasl_username", SIFT_I_SASL_USERNAME, true},
		{"sasl_method", SIFT_I_SASL_METHOD, true},
		{"sasl_sender", SIFT_I_SASL_SENDER, true},
		{"policy_context", SIFT_I_DAEMON_NAME, true},
		{"protocol_state", SIFT_I_PROTOCOL_STATE, true},
		{"instance", SIFT_I_INSTANCE, true},
		{"size", SIFT_I_SIZE, true},
		{"recipient_count", SIFT_I_RCPT_COUNT, true},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		const char *v = sift_policy_get(r, map[i].attr);
		sift_ctx_set(ctx, map[i].item, map[i].empty_is_null ? nonempty(v) : v);
	}
	const char *rcpt = sift_policy_get(r, "recipient");
	bool rcpt_kept = state && strcmp(state, "RCPT") == 0 && rcpt && *rcpt && sift_ctx_add_rcpt(ctx, rcpt);
	sift_ctx_set_macro_fn(ctx, attr_lookup, c);

	sift_ctx_choose_profile(ctx);
	sift_ctx_request_reset(ctx);
	/* From the moment the request was complete, not from now: the time
	 * it waited for a free worker counts, since the client's timeout
	 * runs from when it sent it. */
	sift_ctx_set_deadline(ctx, c->request_ready + atomic_load(&request_deadline));
	sift_run(ctx, SIFT_PH_POLICY);
	char *action = sift_ctx_policy_action(ctx);
	sift_ctx_set_deadline(ctx, 0);
	/* A recipient refused here never gets the message: the later steps
	 * (END-OF-MESSAGE: ratelimit's per-recipient counts) do not see it. */
	if (rcpt_kept && refuses(action))
		sift_ctx_drop_last_rcpt(ctx);
	sift_metrics_record(ctx, action);

	/* One line: a control character would end the reply early. */
	for (char *p = action; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	/* Never blocks: what the socket does not take now (a client that
	 * does not read its replies) is left to the event thread. */
	c->out = sift_asprintf("action=%s\n\n", action);
	c->out_len = strlen(c->out);
	c->out_off = 0;
	int wrc = conn_flush(c);
	if (wrc < 0) {
		sift_log(LOG_WARNING, "policy client %s: writing the reply: %s", c->peer, strerror(errno));
		c->failed = true;
	} else if (wrc == 0)
		c->out_since = sift_now_ms();

	if (strcmp(action, "DUNNO") != 0) {
		const char *name = sift_policy_get(r, "client_name");
		const char *addr = sift_policy_get(r, "client_address");
		const char *from = sift_policy_get(r, "sender");
		const char *to = sift_policy_get(r, "recipient");
		sift_log_msg(LOG_INFO, sift_policy_get(r, "queue_id"), "policyd",
			     "action=%s protocol_state=%s client=%s[%s] from=<%s> to=<%s> profile=%s", action,
			     state ? state : "", name ? name : "unknown", addr ? addr : "", from ? from : "",
			     to ? to : "", sift_profile_names[sift_ctx_profile(ctx)]);
	}
	bool eom = state && strcmp(state, "END-OF-MESSAGE") == 0;
	/* How the message ended, for the plugins' msg_end (ratelimit takes
	 * back the counts of a message refused after it counted it). */
	if (eom)
		sift_ctx_msg_outcome(ctx, outcome_of(action));
	free(action);
	sift_ctx_set_macro_fn(ctx, NULL, NULL);

	if (eom || alone) {
		sift_ctx_msg_end(ctx, !eom);
		free(c->instance);
		c->instance = NULL;
	}
}

/* The worker's side of conn_returned, for the common case: the reply went
 * out, nothing came after the request and policyd is not stopping. Resets
 * the connection and re-arms it; false: the event thread must take it. */
static bool conn_rearm(struct conn *c)
{
	if (c->failed || c->pending || c->out)
		return false;
	bool ok = false;
	pthread_mutex_lock(&c->mu);
	if (!atomic_load(&stopping)) {
		sift_policy_parser_reset(&c->parser);
		c->last_activity = sift_now_ms();
		c->request_start = 0;
		c->busy = false;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
		ok = epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0;
		if (!ok)
			c->busy = true; /* conn_returned re-arms or closes it */
	}
	pthread_mutex_unlock(&c->mu);
	return ok;
}

/* The client closed its end (a Postfix that gave up waiting closes the
 * connection and answers the SMTP client itself): its request is not run,
 * since nobody would read the answer and a plugin would count a message
 * that never came (ratelimit) or look up DNS for nothing. Only a closed
 * unix socket says so (POLLHUP); on TCP a client's close looks like a
 * half close, after which a client such as `nc -N` still reads the
 * answer, so those requests are run. */
static bool client_gone(const struct conn *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

static void *worker_main(void *arg)
{
	(void)arg;
	for (;;) {
		while (sem_wait(&work_sem) < 0 && errno == EINTR)
			;
		pthread_mutex_lock(&work_q.lock);
		struct conn *c = queue_pop_locked(&work_q);
		bool stop = workers_stop;
		pthread_mutex_unlock(&work_q.lock);
		if (!c && stop)
			break;
		if (!c)
			continue;
		if (c->closing) {
			sift_ctx_free(c->ctx); /* ends the message, calls close hooks */
			conn_free(c);
			continue;
		}
		if (client_gone(c)) {
			sift_log(LOG_NOTICE,
				 "policy client %s: gone before its request could run (it waited %lld ms): "
				 "not run",
				 c->peer, sift_now_ms() - c->request_ready);
			c->failed = true;
		} else
			handle_request(c);
		if (!conn_rearm(c))
			return_push(c);
	}
	return NULL;
}

/* ---- configuration ------------------------------------------------------------ */

/* Builds a configuration and a generation; NULL + *err_r on failure. With
 * `first`, the generation is only prepared (the plugins' init runs after the
 * privilege drop: sift_gen_init). */
static struct sift_gen *build_generation(struct policyd_conf *pc_r, bool first, char **err_r)
{
	struct sift_config *cfg = sift_opts_config(&opts, "", policyd_params, err_r);
	if (!cfg)
		return NULL;
	memset(pc_r, 0, sizeof(*pc_r));
	if (sift_params_parse(cfg, "", policyd_params, pc_r, err_r) < 0) {
		sift_params_free(policyd_params, pc_r);
		sift_config_free(cfg);
		return NULL;
	}
	/* a reload checks what the next start will (check_start does at start) */
	char *e = NULL;
	if (!first &&
	    sift_start_settings_check("policyd", pc_r->user, pc_r->socket_mode, pc_r->socket_group, &e) < 0) {
		*err_r = sift_config_locate(cfg, e);
		free(e);
		sift_params_free(policyd_params, pc_r);
		sift_config_free(cfg);
		return NULL;
	}
	struct sift_gen *g = first ? sift_gen_prepare(SIFT_POLICYD, cfg, err_r)
				   : sift_gen_new(SIFT_POLICYD, cfg, err_r); /* owns cfg on success */
	if (!g) {
		sift_params_free(policyd_params, pc_r);
		sift_config_free(cfg);
		return NULL;
	}
	return g;
}

/* The control socket's request: the event loop reloads on SIGHUP. */
static int ask_reload(void)
{
	return kill(getpid(), SIGHUP);
}

static struct sift_gen *load_generation(struct policyd_conf *pc_r, char **err_r)
{
	return build_generation(pc_r, false, err_r);
}

static void reload(void)
{
	struct policyd_conf pc;
	char *err = NULL;
	unsigned long id = sift_control_reload_begin();
	struct sift_gen *g = load_generation(&pc, &err);
	if (!g) {
		sift_log(LOG_ERR, "reload failed: %s; keeping the current configuration", err);
		sift_control_reload_done(id, false, err);
		free(err);
		return;
	}
	size_t n_plugins = sift_gen_plugin_count(g);
	sift_gen_set_current(g); /* hands g over: not used after this */
	/* Keep the startup-only settings (with a warning naming each that
	 * changed); take the timeouts. */
	static const char *const live[] = {"policyd_idle_timeout", "policyd_request_timeout",
					   "policyd_request_deadline", NULL};
	sift_params_restart_only("policyd", policyd_params, &pconf, &pc, live);
	pconf.idle_timeout = pc.idle_timeout;
	pconf.request_timeout = pc.request_timeout;
	atomic_store(&request_deadline, pc.request_deadline);
	sift_params_free(policyd_params, &pc);
	char *text = sift_asprintf("reloaded the configuration from %s (%zu plugins)", opts.config_file,
				   n_plugins);
	sift_log(LOG_INFO, "%s", text);
	sift_control_reload_done(id, true, text);
	free(text);
}

/* ---- startup and main loop ------------------------------------------------------ */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: policyd [-c file] [-o name=value]... [-f] [-d] [-n | -p | -P | -t]\n"
		"  -c file          configuration file (default %s)\n"
		"  -o name=value    override a setting (repeatable)\n"
		"  -f               stay in the foreground and log to stderr\n"
		"  -d               log debug messages\n"
		"  -n               print the settings given explicitly (files, -o)\n"
		"  -p               print all settings\n"
		"  -P               print policyd's own parameter table (for siftctl params)\n"
		"  -t               check the configuration and the plugins, exit 0 or 1\n"
		"  -h               this help\n",
		DEFAULT_CONFIG);
}

static bool valid_endpoint(const char *e)
{
	return strncmp(e, "unix:/", 6) == 0 || strncmp(e, "local:/", 7) == 0 || strncmp(e, "inet:", 5) == 0 ||
	       strncmp(e, "inet6:", 6) == 0;
}

/* Who policyd runs as (policyd_user), resolved before the sockets exist. */
static struct sift_runas runas;

/* The settings that take effect at start only: checked before anything is
 * created. */
static int check_start(char **err_r)
{
	for (const char *const *e = pconf.listen; e && *e; e++)
		if (!valid_endpoint(*e)) {
			*err_r = sift_asprintf("policyd_listen: bad endpoint \"%s\" (want unix:/path or "
					       "inet:host:port)",
					       *e);
			return -1;
		}
	if (sift_runas_resolve("policyd_user", pconf.user, &runas, err_r) < 0 ||
	    sift_socket_opts_check("policyd", pconf.socket_mode, pconf.socket_group, err_r) < 0)
		return -1;
	return 0;
}

static void open_listeners(void)
{
	size_t n = 0;
	for (const char *const *e = pconf.listen; e && *e; e++)
		n++;
	if (n == 0)
		sift_fatal("policyd_listen is empty");
	listeners = sift_calloc(n, sizeof(*listeners));
	for (const char *const *e = pconf.listen; e && *e; e++) {
		char *err = NULL;
		if (!valid_endpoint(*e))
			sift_fatal("policyd_listen: bad endpoint \"%s\" (want unix:/path or "
				   "inet:host:port)",
				   *e);
		mode_t mode;
		if (sift_socket_mode("policyd", pconf.socket_mode, &mode, &err) < 0)
			sift_fatal("%s", err);
		int fd = sift_listen_mode(*e, 1024, mode, &err);
		if (fd < 0)
			sift_fatal("%s", err);
		const char *path = sift_endpoint_unix_path(*e);
		if (path && sift_socket_opts_apply("policyd", path, pconf.socket_mode, pconf.socket_group,
						   &runas, &err) < 0)
			sift_fatal("%s", err);
		int fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		struct listener *l = &listeners[n_listeners++];
		l->src.type = SRC_LISTENER;
		l->fd = fd;
		l->inet = strncmp(*e, "inet", 4) == 0;
		l->endpoint = sift_strdup(*e);
	}
}

static void close_listeners(void)
{
	for (size_t i = 0; i < n_listeners; i++) {
		struct listener *l = &listeners[i];
		if (l->fd < 0)
			continue;
		close(l->fd);
		l->fd = -1;
		const char *path = sift_endpoint_unix_path(l->endpoint);
		if (path)
			unlink(path);
	}
}

static void begin_shutdown(const char *why)
{
	if (stopping)
		return;
	stopping = true;
	sift_log(LOG_INFO, "%s: stopping (%ld connections)", why, n_conns);
	sift_notify("STOPPING=1");
	close_listeners();
	struct conn *next;
	for (struct conn *c = conns; c; c = next) {
		next = c->next;
		pthread_mutex_lock(&c->mu);
		bool busy = c->busy;
		pthread_mutex_unlock(&c->mu);
		/* A reply still going out gets its chance, within
		 * WRITE_TIMEOUT_MS (scan_timeouts). */
		if (!busy && !c->out)
			conn_close(c);
	}
}

/* Whether c is a connection still open (on the event thread's list). */
static bool conn_live(const struct src *s)
{
	for (const struct conn *c = conns; c; c = c->next)
		if (&c->src == s)
			return true;
	return false;
}

static void handle_signals(void)
{
	struct signalfd_siginfo si;
	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			if (!stopping)
				reload();
			break;
		case SIGTERM:
		case SIGINT:
			begin_shutdown(si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		default:
			break;
		}
	}
}

static void drain_returns(void)
{
	uint64_t v;
	ssize_t r = read(wakefd, &v, sizeof(v));
	(void)r;
	pthread_mutex_lock(&ret_q.lock);
	struct conn *list = ret_q.head;
	ret_q.head = NULL;
	ret_q.tail = &ret_q.head;
	pthread_mutex_unlock(&ret_q.lock);
	while (list) {
		struct conn *c = list;
		list = c->qnext;
		conn_returned(c);
	}
}

/* Whether an epoll event's source is a connection, decided without reading
 * it: the signal and wake sources and the listeners never move or go away,
 * a connection may be freed already. */
static bool src_is_conn(const struct src *s)
{
	if (s == &sig_src || s == &wake_src)
		return false;
	for (size_t i = 0; i < n_listeners; i++)
		if (s == &listeners[i].src)
			return false;
	return true;
}

static void event_loop(void)
{
	struct epoll_event evs[256];
	long long last_scan = sift_now_ms(), stop_deadline = 0;
	for (;;) {
		if (stopping) {
			if (n_conns == 0)
				return;
			long long grace = atomic_load(&request_deadline) + WRITE_TIMEOUT_MS;
			if (!stop_deadline)
				stop_deadline = sift_now_ms() + grace;
			else if (sift_now_ms() > stop_deadline) {
				sift_log(LOG_WARNING,
					 "%ld requests still running after %lld ms; "
					 "exiting anyway",
					 n_conns, grace);
				exit(0);
			}
		}
		int n = epoll_wait(epfd, evs, 256, accept_paused_until ? 100 : 1000);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			sift_fatal("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			struct src *s = evs[i].data.ptr;
			/* Once stopping, every idle connection was closed (and
			 * maybe freed) by begin_shutdown, possibly earlier in
			 * this very batch, and busy ones come back through the
			 * return queue: an event for a connection no longer on
			 * the list is stale and must not even be read. Those
			 * still on it are busy (no event) or writing the rest
			 * of a reply (EPOLLOUT). */
			if (stopping && src_is_conn(s) && !conn_live(s))
				continue;
			switch (s->type) {
			case SRC_LISTENER:
				if (!stopping)
					accept_ready((struct listener *)s);
				break;
			case SRC_SIGNAL:
				handle_signals();
				break;
			case SRC_WAKE:
				drain_returns();
				break;
			case SRC_CONN: {
				/* Orders what a worker did before re-arming it. */
				struct conn *c = (struct conn *)s;
				pthread_mutex_lock(&c->mu);
				pthread_mutex_unlock(&c->mu);
				if (c->out)
					conn_writable(c);
				else if (!stopping)
					conn_readable(c);
				break;
			}
			}
		}
		long long now = sift_now_ms();
		if (accept_paused_until && now >= accept_paused_until && !stopping)
			accept_resume();
		if (now - last_scan >= 1000) {
			last_scan = now;
			scan_timeouts();
		}
	}
}

static void epoll_add(int fd, struct src *s)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		sift_fatal("epoll_ctl: %s", strerror(errno));
}

/* Without -f: fork; the parent waits until the child is ready (or failed,
 * having logged why on stderr) and exits with its status. */
static int detach(void)
{
	int pfd[2];
	if (pipe(pfd) < 0)
		sift_fatal("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		sift_fatal("fork: %s", strerror(errno));
	if (pid > 0) {
		close(pfd[1]);
		char b;
		ssize_t r;
		while ((r = read(pfd[0], &b, 1)) < 0 && errno == EINTR)
			;
		_exit(r == 1 ? 0 : 1);
	}
	close(pfd[0]);
	setsid();
	return pfd[1];
}

static void detach_done(int fd)
{
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		if (null > 2)
			close(null);
	}
	sift_log_init("policyd", false, opts.debug ? LOG_DEBUG : LOG_INFO);
	if (null >= 0)
		dup2(0, 2);
	if (chdir("/") < 0)
		sift_log(LOG_WARNING, "chdir /: %s", strerror(errno));
	ssize_t w = write(fd, "", 1);
	(void)w;
	close(fd);
}

int main(int argc, char **argv)
{
	int optind_r = sift_opts_parse(argc, argv, &opts, DEFAULT_CONFIG);
	if (optind_r == -2) {
		usage(stdout);
		return 0;
	}
	if (optind_r < 0 || optind_r != argc) {
		usage(stderr);
		return 2;
	}
	sift_log_init("policyd", true, opts.debug ? LOG_DEBUG : LOG_INFO);
	bool one_shot = opts.test_only || opts.print_all || opts.print_nondefault;
	int ready_fd = -1;
	if (!opts.foreground && !one_shot)
		ready_fd = detach();

	/* Signals are handled by the event thread through a signalfd: block
	 * them before any thread exists (the resolver and plugins may start
	 * threads while the generation is built), so all threads inherit it. */
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGHUP);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);

	char *err = NULL;
	struct sift_gen *g = build_generation(&pconf, true, &err);
	if (!g) {
		if (one_shot)
			fprintf(stderr, "policyd: error: %s\n", err);
		else
			sift_log(LOG_CRIT, "%s", err);
		free(err);
		return 1;
	}
	if (opts.print_all || opts.print_nondefault) {
		bool all = opts.print_all;
		sift_params_print(stdout, sift_gen_config(g), "", policyd_params, all);
		sift_gen_print_params(stdout, g, all);
		sift_gen_unref(g);
		sift_params_free(policyd_params, &pconf);
		return 0;
	}
	/* Everything that could stop the start is checked before anything is
	 * created; -t also runs the plugins' init as the daemon will, as
	 * policyd_user. */
	int rc = check_start(&err);
	if (rc == 0 && opts.test_only &&
	    (sift_drop_privileges(&runas, &err) < 0 || sift_gen_init(g, &err) < 0))
		rc = -1;
	if (rc < 0 || opts.test_only) {
		if (rc < 0 && one_shot)
			fprintf(stderr, "policyd: error: %s\n", err);
		else if (rc < 0)
			sift_log(LOG_CRIT, "%s", err);
		else
			printf("policyd: configuration OK (%zu plugin%s)\n", sift_gen_plugin_count(g),
			       sift_gen_plugin_count(g) == 1 ? "" : "s");
		free(err);
		sift_gen_unref(g);
		sift_params_free(policyd_params, &pconf);
		sift_runas_free(&runas);
		return rc < 0 ? 1 : 0;
	}
	atomic_store(&request_deadline, pconf.request_deadline);

	/* As root: the listening sockets and the pid file; then the drop, then
	 * the plugins' init as policyd_user. */
	sift_metrics_init(SIFT_POLICYD);
	open_listeners();
	if (sift_control_start(pconf.control_socket, &runas, ask_reload, &err) < 0)
		sift_fatal("policyd_control_socket: %s", err);
	if (sift_http_start(sift_gen_common(g)->metrics_listen, &err) < 0) {
		close_listeners();
		sift_fatal("%s", err);
	}
	if (sift_write_pidfile(pconf.pid_file, &err) < 0)
		sift_fatal("%s", err);
	if (sift_drop_privileges(&runas, &err) < 0 || sift_gen_init(g, &err) < 0) {
		sift_remove_pidfile(pconf.pid_file);
		close_listeners();
		sift_fatal("%s", err);
	}
	/* What the start line says is read before g is handed over (the
	 * current generation's reference may be dropped by a reload). */
	size_t n_plugins = sift_gen_plugin_count(g);
	sift_gen_set_current(g);
	g = NULL;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	sigfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (epfd < 0 || sigfd < 0 || wakefd < 0)
		sift_fatal("epoll/signalfd/eventfd: %s", strerror(errno));
	for (size_t i = 0; i < n_listeners; i++)
		epoll_add(listeners[i].fd, &listeners[i].src);
	epoll_add(sigfd, &sig_src);
	epoll_add(wakefd, &wake_src);

	queue_init(&work_q);
	queue_init(&ret_q);
	sem_init(&work_sem, 0, 0);
	n_workers = (size_t)pconf.workers;
	workers = sift_calloc(n_workers, sizeof(*workers));
	for (size_t i = 0; i < n_workers; i++)
		if (pthread_create(&workers[i], NULL, worker_main, NULL) != 0)
			sift_fatal("pthread_create: %s", strerror(errno));

	if (ready_fd >= 0)
		detach_done(ready_fd);
	sift_notify("READY=1");
	sift_log(LOG_INFO, "starting: %zu listeners, %zu workers, %zu plugins, version %s", n_listeners,
		 n_workers, n_plugins, SIFT_VERSION);

	event_loop();

	/* All connections are closed; their close jobs may still be queued. */
	pthread_mutex_lock(&work_q.lock);
	workers_stop = true;
	pthread_mutex_unlock(&work_q.lock);
	for (size_t i = 0; i < n_workers; i++)
		sem_post(&work_sem);
	for (size_t i = 0; i < n_workers; i++)
		pthread_join(workers[i], NULL);
	free(workers);
	sift_gen_set_current(NULL); /* releases the plugins */
	sift_dns_shutdown();
	sift_remove_pidfile(pconf.pid_file);
	sift_control_stop();
	sift_runas_free(&runas);
	for (size_t i = 0; i < n_listeners; i++)
		free(listeners[i].endpoint);
	free(listeners);
	sift_params_free(policyd_params, &pconf);
	close(epfd);
	close(sigfd);
	close(wakefd);
	if (spare_fd >= 0)
		close(spare_fd);
	sift_log(LOG_INFO, "stopped");
	return 0;
}
