/*
 * engine.c - the native milter engine (filterd_engine = native, the
 * default; libmilter is the other choice): filterd speaks the milter
 * protocol (version 6, as Postfix's src/milter/milter8.c does) itself
 * instead of through libmilter. What
 * filterd does at each event is in session.c, shared with the libmilter
 * engine (milter.c); the wire codec, macro store and libmilter's command
 * state machine are in mproto.c (fuzzed by tests/fuzz/fuzz_milter.c).
 *
 * Why: Debian's libmilter is built with a worker pool. A poll() controller
 * thread hands each readable session to a worker thread and takes it back
 * after every command, so every milter round trip costs two thread
 * handoffs (wake-ups through a pipe and condition variables), and it writes
 * each modification and each reply as a separate packet (a write(2) each).
 * Through a real Postfix 3.7 on 2 cores that put a do-nothing libmilter
 * milter at ~75% of Postfix alone at concurrency 1; filterd on libmilter
 * was at that floor. This engine:
 *
 *   - has one acceptor thread per listening socket (Postfix's endpoint
 *     syntax, via sift_listen; libmilter's inet:PORT@HOST is converted) and
 *     one thread per MTA connection, which reads with plain blocking recv()
 *     bounded by filterd_milter_timeout (SO_RCVTIMEO/SO_SNDTIMEO): a round
 *     trip is one recv() and one send() on the same thread, no handoff.
 *     Postfix opens a milter connection per SMTP session, so a thread that
 *     finished its connection waits a while for the next one instead of
 *     exiting (a worker pool that grows on demand): a new connection costs
 *     a wake-up, not a thread's creation and exit. The last worker to
 *     finish a connection takes the next one (next_conn).
 *     Connections are bounded by filterd_max_connections: at the limit,
 *     the negotiated connection that has waited longest between messages
 *     is closed (logged) to make room for the new one, as it may hold its
 *     slot for filterd_milter_timeout (7210 s by default, libmilter's);
 *     with none, the new connection is refused with a logged warning
 *     (Postfix then applies milter_default_action to that session);
 *   - reads through a per-connection buffer: the macro packet and the
 *     command Postfix writes back to back usually arrive in one recv();
 *   - writes every reply with one send(): at end of message all the
 *     modification packets (h, i, m, q) and the final reply go out in one
 *     write;
 *   - on TCP sets TCP_NODELAY once and re-arms TCP_QUICKACK after every
 *     read (filterd_tcp_tuning), like tcpfix.c does for libmilter;
 *   - parses strictly: a packet longer than 1 MB (MP_MAX_PACKET), of an
 *     unknown command, or malformed (missing NULs, short fields, bad
 *     addresses) closes that connection with a logged
 *     error; nothing is read past a packet's end;
 *   - answers negotiation exactly as libmilter does for filterd's
 *     xxfi_negotiate (version min(6, MTA's), the actions and steps session.c
 *     computes; no-reply steps the MTA does not offer are faked by sending
 *     'c'), keeps macros per stage with libmilter's clearing rules
 *     (connect macros live for the connection, a stage clears the later
 *     ones), and follows libmilter's state machine (a command out of order
 *     aborts the message in progress and is handled from HELO, or ignored).
 *
 * Stopping (SIGTERM/SIGINT through filterd.c's signal thread): the
 * listening sockets stop accepting; connections waiting between messages
 * are closed at once; connections inside a message are given up to
 * filterd_shutdown_timeout to finish it; then run() returns. SIGHUP and
 * SIGUSR1 reload.
 *
 * Measured figures (both engines, unix and inet sockets) are in README.md,
 * section "Milter engines": the native engine is level with libmilter over
 * unix sockets, ahead over TCP, and uses less CPU per message (no thread
 * handoffs), which is why it is the default.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "mproto.h"
#include "session.h"

#define RBUF_MIN 16384

struct conn {
	int fd;
	bool tcp;
	char peer[INET6_ADDRSTRLEN + 8];
	struct fd_session s;
	struct mp_macros mac;
	int state;		  /* enum mp_state */
	unsigned long aflags;	  /* actions negotiated */
	unsigned long pflags;	  /* our protocol flags (incl. faked no-reply steps) */
	unsigned long mta_pflags; /* what the MTA offered */
	bool negotiated;
	long long born; /* sift_now_ms() at accept */
	char *reply;	/* smfi_setreply's text, until used */
	struct sift_buf out;
	unsigned char *rbuf;
	size_t roff, rlen, rcap;
	bool idle;	   /* blocked between messages (under reg_lock) */
	bool evictable;	   /* idle and negotiated (under reg_lock) */
	bool evicted;	   /* closed for a new connection (under reg_lock) */
	long long idle_ms; /* when it became idle (under reg_lock) */
	struct conn *prev, *next;
};

static const struct filterd_conf *fconf;
static int listen_fd = -1;
static int wake_pipe[2] = {-1, -1}; /* wakes the acceptor at stop */
static char *unix_path;
static pthread_t acceptor;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cond = PTHREAD_COND_INITIALIZER;
static struct conn *conns;
static long long n_conns;
static unsigned long idle_gen; /* times n_conns fell to 0 */
static bool stopping;

/* Workers between connections (under reg_lock): n_waiting of them wait,
 * each on its own condition variable, in `waiters`, the one that finished
 * its connection last first. A new connection goes to that one (last in,
 * first out): its stack, its malloc arena and the data it touched are the
 * likeliest to be in the cache, and under a steady load the workers the
 * load does not need are never woken, so they end after WORKER_IDLE_MS
 * and give their memory back (a condition variable shared by all would
 * wake the one waiting longest: every worker kept alive, each connection
 * on the coldest). At most WORKERS_WAITING_MAX wait. */
#define WORKERS_WAITING_MAX 64
#define WORKER_IDLE_MS	    60000
struct waiter {
	pthread_cond_t cond;
	struct conn *conn; /* handed to it, NULL until then */
	struct waiter *next;
};
static struct waiter *waiters;
static int n_waiting;

/* Workers are joinable, so that the shutdown can wait until each has
 * really ended: thread-local destructors (OpenSSL's per-thread random
 * state, for one) run after the thread function returns, and exit() must
 * not race them. Under reg_lock: n_threads started and not yet ended;
 * `ended` the ones whose function returned, to join (the acceptor joins
 * them before it starts another, the shutdown joins the rest). */
struct ended {
	pthread_t th;
	struct ended *next;
};
static long n_threads;
static struct ended *ended;

/* ---- the session's output primitives ---- */

static const char *n_getsymval(void *arg, const char *name)
{
	struct conn *c = arg;
	return mp_macros_get(&c->mac, name);
}

static int n_setreply(void *arg, const char *code, const char *xcode, const char *text)
{
	struct conn *c = arg;
	free(c->reply);
	c->reply = sift_reply_format(code, xcode, text, true);
	return 0;
}

/* libmilter's mi_sendok: the action was negotiated and we are at EOM. */
static bool sendok(struct conn *c, unsigned long flag)
{
	return (c->aflags & flag) && c->state == MP_ST_ENDM;
}

static int n_addheader(void *arg, const char *name, const char *value)
{
	struct conn *c = arg;
	if (!name || !*name || !value || !sendok(c, MP_A_ADDHDRS))
		return -1;
	mp_put_header(&c->out, SMFIR_ADDHEADER, 0, name, value);
	return 0;
}

static int n_insheader(void *arg, int idx, const char *name, const char *value)
{
	struct conn *c = arg;
	if (idx < 0 || !name || !*name || !value || !sendok(c, MP_A_ADDHDRS))
		return -1;
	mp_put_header(&c->out, SMFIR_INSHEADER, (uint32_t)idx, name, value);
	return 0;
}

static int n_chgheader(void *arg, const char *name, int idx, const char *value)
{
	struct conn *c = arg;
	if (idx < 0 || !name || !*name || !sendok(c, MP_A_CHGHDRS))
		return -1;
	mp_put_header(&c->out, SMFIR_CHGHEADER, (uint32_t)idx, name, value);
	return 0;
}

static int n_quarantine(void *arg, const char *reason)
{
	struct conn *c = arg;
	if (!reason || !*reason || !sendok(c, MP_A_QUARANTINE))
		return -1;
	mp_put(&c->out, SMFIR_QUARANTINE, reason, strlen(reason) + 1);
	return 0;
}

static const struct fd_out native_out = {
	.getsymval = n_getsymval,
	.setreply = n_setreply,
	.addheader = n_addheader,
	.insheader = n_insheader,
	.chgheader = n_chgheader,
	.quarantine = n_quarantine,
};

/* ---- I/O ---- */

static void conn_error(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_error(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = sift_vasprintf(fmt, ap);
	va_end(ap);
	sift_log(LOG_ERR, "milter connection from %s: %s; closing it", c->peer, m);
	free(m);
}

static void quickack(struct conn *c)
{
	if (c->tcp) {
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	}
}

/* Sends c->out in one write (more only if the socket buffer is full). */
static int flush(struct conn *c)
{
	size_t off = 0;
	while (off < c->out.len) {
		ssize_t w = send(c->fd, c->out.data + off, c->out.len - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			conn_error(c, "write: %s", errno == EAGAIN ? "timed out" : strerror(errno));
			c->out.len = 0;
			return -1;
		}
		off += (size_t)w;
	}
	c->out.len = 0;
	return 0;
}

/* Makes sure `need` bytes are buffered from roff. 1 ok, 0 end of file, -1
 * error or timeout (logged). */
static int fill(struct conn *c, size_t need)
{
	if (c->rlen - c->roff >= need)
		return 1;
	if (c->roff) {
		memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
		c->rlen -= c->roff;
		c->roff = 0;
	}
	if (need > c->rcap) {
		size_t cap = c->rcap;
		while (cap < need)
			cap *= 2;
		c->rbuf = sift_realloc(c->rbuf, cap);
		c->rcap = cap;
	}
	/* Part of a packet here, or no negotiation yet: the rest comes within
	 * filterd_milter_packet_timeout (Postfix writes a packet at once and
	 * negotiates as it connects), not filterd_milter_timeout per read, so
	 * that a client trickling bytes or saying nothing does not keep one
	 * of filterd_max_connections. */
	long long deadline = 0;
	while (c->rlen < need) {
		if (c->rlen > 0 || !c->negotiated) {
			long long now = sift_now_ms();
			if (!deadline)
				deadline = (c->negotiated ? now : c->born) + fconf->packet_timeout;
			struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
			int pr = deadline > now ? poll(&pfd, 1, (int)(deadline - now)) : 0;
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr <= 0) {
				if (pr == 0)
					conn_error(c, "%s",
						   c->negotiated ? "a packet not complete within "
								   "filterd_milter_packet_timeout"
								 : "no negotiation within "
								   "filterd_milter_packet_timeout");
				else
					conn_error(c, "poll: %s", strerror(errno));
				return -1;
			}
		}
		ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
		if (r > 0) {
			c->rlen += (size_t)r;
			quickack(c);
			continue;
		}
		if (r == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			conn_error(c, "%s", "no command within filterd_milter_timeout");
		else if (errno != ECONNRESET)
			conn_error(c, "read: %s", strerror(errno));
		return -1;
	}
	return 1;
}

/* Between messages: tell a stopping engine that this connection may be
 * closed, and conn_register that it may be closed for a new connection.
 * Returns false when the engine is stopping, or the connection was closed
 * for a new one. */
static bool set_idle(struct conn *c, bool idle)
{
	pthread_mutex_lock(&reg_lock);
	bool ok = (!stopping || !idle) && !c->evicted;
	c->idle = idle && ok;
	c->evictable = c->idle && c->negotiated;
	if (c->idle)
		c->idle_ms = sift_now_ms();
	pthread_mutex_unlock(&reg_lock);
	return ok;
}

/* ---- commands ---- */

static void put_reply(struct conn *c, enum fd_status r)
{
	unsigned long bit = mp_nr_bit(c->state);
	if (bit && (c->pflags & bit) && r != FD_NOREPLY) {
		if (r != FD_CONTINUE)
			sift_log(LOG_ERR,
				 "milter connection from %s: a verdict at a no-reply stage (%d) "
				 "was dropped",
				 c->peer, c->state);
		r = FD_NOREPLY;
	}
	switch (r) {
	case FD_CONTINUE:
		mp_put(&c->out, SMFIR_CONTINUE, NULL, 0);
		break;
	case FD_REJECT:
	case FD_TEMPFAIL:
		if (c->reply && *c->reply == (r == FD_REJECT ? '5' : '4')) {
			mp_put(&c->out, SMFIR_REPLYCODE, c->reply, strlen(c->reply) + 1);
		} else {
			mp_put(&c->out, r == FD_REJECT ? SMFIR_REJECT : SMFIR_TEMPFAIL, NULL, 0);
		}
		break;
	case FD_DISCARD:
		mp_put(&c->out, SMFIR_DISCARD, NULL, 0);
		break;
	case FD_NOREPLY:
		/* a no-reply step the MTA did not offer: libmilter fakes it */
		if (bit && (c->pflags & bit) && !(c->mta_pflags & bit))
			mp_put(&c->out, SMFIR_CONTINUE, NULL, 0);
		break;
	}
	/* A reply text belongs to the answer it was set for (as libmilter's
	 * smfi_setreply): one set for a verdict dropped at a no-reply stage,
	 * or of the other class, is not kept for a later refusal. */
	free(c->reply);
	c->reply = NULL;
}

static int negotiate(struct conn *c, const unsigned char *data, size_t len)
{
	struct mp_optneg o;
	const char *why;
	if (mp_dec_optneg(data, len, &o, &why) < 0) {
		conn_error(c, "%s", why);
		return -1;
	}
	mp_macros_clear(&c->mac, 0);
	unsigned long mta_a = o.actions ? o.actions : SMFI_V1_ACTS;
	unsigned long mta_p = o.protocol ? o.protocol : SMFI_V1_PROT;
	mta_p &= ~(unsigned long)SMFI_INTERNAL;
	c->mta_pflags = mta_p;
	unsigned long pf0 = 0, pf1 = 0;
	const char *refused = fd_session_negotiate(&c->s, mta_a, mta_p | MP_NR_ALL, &pf0, &pf1);
	if (refused) {
		conn_error(c, "%s", refused);
		return -1;
	}
	c->aflags = pf0;
	c->pflags = pf1;
	/* no-reply steps the MTA lacks are faked, not asked for */
	unsigned long to_mta = pf1 & ~(MP_NR_ALL & ~mta_p);
	if ((pf0 & mta_a) != pf0) {
		conn_error(c, "%s", "the MTA does not offer the actions filterd needs");
		return -1;
	}
	if ((mta_p & to_mta) != to_mta) {
		if (!(mta_p & SMFIP_NODATA))
			to_mta &= ~(unsigned long)SMFIP_NODATA;
		if (!(mta_p & SMFIP_NOUNKNOWN))
			to_mta &= ~(unsigned long)SMFIP_NOUNKNOWN;
	}
	if ((mta_p & to_mta) != to_mta) {
		conn_error(c, "%s", "the MTA does not offer the protocol steps filterd needs");
		return -1;
	}
	to_mta &= ~(unsigned long)SMFI_INTERNAL;
	c->negotiated = true;
	mp_put_optneg(&c->out, o.version < SMFI_PROT_VERSION ? o.version : SMFI_PROT_VERSION, (uint32_t)pf0,
		      (uint32_t)to_mta);
	return flush(c);
}

static int do_connect(struct conn *c, const unsigned char *data, size_t len, enum fd_status *r)
{
	struct mp_connect ci;
	const char *why;
	if (mp_dec_connect(data, len, &ci, &why) < 0) {
		conn_error(c, "%s", why);
		return -1;
	}
	char port[8] = "";
	if (ci.family == SMFIA_INET || ci.family == SMFIA_INET6)
		snprintf(port, sizeof(port), "%u", (unsigned)ci.port);
	*r = fd_session_connect(&c->s, ci.hostname, ci.ip, port);
	return 0;
}

/* The first of a packet's strings (MAIL, RCPT, HELO): the address or
 * name. The ESMTP parameters after it are not used, and any number of them
 * is accepted (a MAIL with 64 times BODY=7BIT is what Postfix passes on). */
static int first_string(struct conn *c, const unsigned char *data, size_t len, const char **s)
{
	const char *why;
	if (mp_dec_first(data, len, s, &why) < 0) {
		conn_error(c, "%s", why);
		return -1;
	}
	return 0;
}

/* One command. Returns 1 to go on, 0 to end the connection quietly (QUIT),
 * -1 to close it after an error. */
static int command(struct conn *c, char cmd, const unsigned char *data, size_t len)
{
	const char *why;
	int newstate = mp_cmd_state(cmd);
	if (newstate == -2) {
		char b[8];
		snprintf(b, sizeof(b), "0x%02x", (unsigned char)cmd);
		conn_error(c, "unknown command %s", b);
		return -1;
	}
	if (cmd == SMFIC_MACRO) {
		int mr = mp_macros_set(&c->mac, data, len, &why);
		if (mr < 0) {
			conn_error(c, "%s", why);
			return -1;
		}
		if (mr == 1)
			sift_log(LOG_DEBUG, "milter connection from %s: macros for stage 0x%02x ignored",
				 c->peer, (unsigned char)data[0]);
		return 1;
	}
	if (!mp_trans_ok(c->state, newstate, c->pflags)) {
		/* out of order: abort the message in progress, and go on from
		 * HELO if the command makes sense there (libmilter) */
		if (MP_IN_MAIL(c->state))
			fd_session_abort(&c->s);
		c->state = MP_ST_HELO;
		if (!mp_trans_ok(c->state, newstate, c->pflags)) {
			sift_log(LOG_DEBUG, "milter connection from %s: command '%c' out of order, ignored",
				 c->peer, cmd);
			return 1;
		}
	}
	c->state = newstate;
	enum fd_status r = FD_CONTINUE;
	const char *s1, *s2;
	switch (cmd) {
	case SMFIC_OPTNEG:
		return negotiate(c, data, len) < 0 ? -1 : 1;
	case SMFIC_CONNECT:
		mp_macros_clear(&c->mac, MP_HELO);
		if (do_connect(c, data, len, &r) < 0)
			return -1;
		break;
	case SMFIC_HELO:
		mp_macros_clear(&c->mac, MP_MAIL);
		if (first_string(c, data, len, &s1) < 0)
			return -1;
		r = fd_session_helo(&c->s, s1);
		break;
	case SMFIC_MAIL:
		mp_macros_clear(&c->mac, MP_RCPT);
		if (first_string(c, data, len, &s1) < 0)
			return -1;
		r = fd_session_envfrom(&c->s, s1);
		break;
	case SMFIC_RCPT:
		mp_macros_clear(&c->mac, MP_DATA);
		if (first_string(c, data, len, &s1) < 0)
			return -1;
		r = fd_session_envrcpt(&c->s, s1);
		break;
	case SMFIC_DATA:
		r = fd_session_data(&c->s);
		break;
	case SMFIC_HEADER:
		if (mp_dec_header(data, len, &s1, &s2, &why) < 0) {
			conn_error(c, "%s", why);
			return -1;
		}
		r = fd_session_header(&c->s, s1, s2);
		break;
	case SMFIC_EOH:
		r = fd_session_eoh(&c->s);
		break;
	case SMFIC_BODY:
		if (len == 0) {
			conn_error(c, "%s", "empty body packet");
			return -1;
		}
		r = fd_session_body(&c->s, data, len);
		break;
	case SMFIC_BODYEOB:
		if (len > 0) {
			/* a last body chunk with end of body (libmilter) */
			r = fd_session_body(&c->s, data, len);
			if (r != FD_CONTINUE && r != FD_NOREPLY)
				break;
		}
		r = fd_session_eom(&c->s);
		break;
	case SMFIC_ABORT:
		fd_session_abort(&c->s);
		return 1; /* no reply */
	case SMFIC_QUIT:
	case SMFIC_QUIT_NC:
		/* the connection's context ends (QUIT_NC: a new SMTP
		 * connection follows on this milter connection, with the
		 * negotiation and generation kept) */
		fd_session_quit(&c->s);
		mp_macros_clear(&c->mac, 0);
		return cmd == SMFIC_QUIT ? 0 : 1;
	case SMFIC_UNKNOWN:
		if (len == 0 || data[len - 1] != 0) {
			conn_error(c, "%s", "unknown-command packet not NUL-terminated");
			return -1;
		}
		r = FD_CONTINUE; /* no plugin sees unknown commands */
		break;
	}
	put_reply(c, r);
	if ((r == FD_REJECT || r == FD_TEMPFAIL || r == FD_DISCARD) && !mp_cmd_ignores_error(cmd))
		c->state = MP_ST_HELO;
	if (c->out.len && flush(c) < 0)
		return -1;
	return 1;
}

/* The MTA closed the connection. Between packets outside a message is the
 * normal end; a packet cut short (the MTA's side died or a client is
 * broken) or a message left unfinished is said, and the message in
 * progress is aborted by conn_finish(). */
static void log_eof(struct conn *c, size_t need)
{
	size_t have = c->rlen - c->roff;
	if (have)
		sift_log(LOG_WARNING,
			 "milter connection from %s: closed in the middle of a packet (%zu of %zu "
			 "bytes)%s",
			 c->peer, have, need,
			 MP_IN_MAIL(c->state) ? "; the message in progress is dropped" : "");
	else if (MP_IN_MAIL(c->state))
		sift_log(LOG_NOTICE,
			 "milter connection from %s: closed in the middle of a message; the message "
			 "is dropped",
			 c->peer);
}

static void serve(struct conn *c)
{
	for (;;) {
		char cmd;
		const unsigned char *data;
		size_t dlen, used, need = 4;
		int fr = mp_frame(c->rbuf + c->roff, c->rlen - c->roff, &cmd, &data, &dlen, &used, &need);
		if (fr < 0) {
			char b[32];
			snprintf(b, sizeof(b), "%u", (unsigned)mp_get32(c->rbuf + c->roff));
			conn_error(c, "bad packet length %s (at most 1 MB)", b);
			return;
		}
		if (fr == 0) {
			/* about to block: between messages a stopping engine
			 * may close this connection */
			bool between = c->rlen == c->roff && !MP_IN_MAIL(c->state);
			if (between && !set_idle(c, true))
				return;
			if (c->rlen == c->roff && c->rcap > 4 * RBUF_MIN) {
				free(c->rbuf); /* drop a buffer grown for a big packet */
				c->rcap = RBUF_MIN;
				c->rbuf = sift_malloc(c->rcap);
				c->roff = c->rlen = 0;
			}
			int rc = fill(c, need);
			if (between && !set_idle(c, false))
				return; /* closed for a new connection */
			if (rc == 0)
				log_eof(c, need);
			if (rc <= 0)
				return;
			continue;
		}
		c->roff += used;
		int rc = command(c, cmd, data, dlen);
		if (rc <= 0)
			return;
	}
}

/* glibc keeps the memory that messages freed for reuse, in the arenas of
 * the threads that served them, and gives back only what is at the top of
 * a heap: after a burst of large messages RSS stayed at the burst's peak
 * (1.4 GB after 100 concurrent 10 MB messages with libclamav, whose heap in
 * use was then 2 MB: bench/memory.py). malloc_trim() returns the free
 * pages: once filterd has had no connection for TRIM_IDLE_MS (next_conn),
 * and while busy at most every TRIM_BUSY_MS, from the thread that ends a
 * connection. Not at the end of every last connection: an MX at low
 * concurrency is "idle" between most sessions, and each trim's madvise()
 * (a TLB shootdown on every CPU) and the page faults that fill the same
 * pages again for the next message cost about 0.2 ms per message. */
#define TRIM_IDLE_MS 500
#define TRIM_BUSY_MS 10000
static _Atomic long long last_trim;

static void trim_now(const char *why)
{
#ifdef __GLIBC__
	atomic_store(&last_trim, sift_now_ms());
	malloc_trim(0);
	sift_log(LOG_DEBUG, "free heap given back to the system (%s)", why);
#else
	(void)why;
#endif
}

static void trim_busy(void)
{
	long long now = sift_now_ms(), t = atomic_load(&last_trim);
	if (now - t >= TRIM_BUSY_MS && atomic_compare_exchange_strong(&last_trim, &t, now))
		trim_now("busy");
}

/* The end of a connection: libmilter calls abort for a message in
 * progress, then close. True when it was the last one (filterd idle). */
static bool conn_finish(struct conn *c)
{
	if (MP_IN_MAIL(c->state))
		fd_session_abort(&c->s);
	fd_session_free(&c->s);
	mp_macros_clear(&c->mac, 0);
	free(c->reply);
	sift_buf_free(&c->out);
	free(c->rbuf);
	pthread_mutex_lock(&reg_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	n_conns--;
	bool idle = n_conns == 0;
	if (idle)
		idle_gen++;
	pthread_cond_broadcast(&reg_cond);
	pthread_mutex_unlock(&reg_lock);
	free(c);
	if (!idle)
		trim_busy();
	return idle;
}

/* The next connection for a worker that finished one: it waits (as one of
 * n_waiting) up to WORKER_IDLE_MS for the acceptor to hand it one. NULL:
 * the worker ends (too many waiting already, idle too long, stopping).
 * idle: its connection was the last one; if no other connection starts and
 * ends in the next TRIM_IDLE_MS, this worker gives the free heap back. */
static struct conn *next_conn(bool idle)
{
	pthread_mutex_lock(&reg_lock);
	if (stopping || n_waiting >= WORKERS_WAITING_MAX) {
		bool trim = idle && !stopping;
		pthread_mutex_unlock(&reg_lock);
		if (trim)
			trim_now("idle");
		return NULL;
	}
	struct waiter w = {.conn = NULL, .next = waiters};
	pthread_cond_init(&w.cond, NULL);
	waiters = &w;
	n_waiting++;
	unsigned long gen = idle_gen;
	struct timespec end, trim_at;
	sift_timespec_in(CLOCK_REALTIME, WORKER_IDLE_MS, &end);
	sift_timespec_in(CLOCK_REALTIME, TRIM_IDLE_MS, &trim_at);
	while (!w.conn && !stopping) {
		if (pthread_cond_timedwait(&w.cond, &reg_lock, idle ? &trim_at : &end) != ETIMEDOUT)
			continue;
		if (!idle)
			break;
		idle = false;
		if (n_conns == 0 && idle_gen == gen) {
			pthread_mutex_unlock(&reg_lock);
			trim_now("idle");
			pthread_mutex_lock(&reg_lock);
		}
	}
	if (!w.conn) { /* still in waiters (a handoff takes it out) */
		struct waiter **pp = &waiters;
		while (*pp != &w)
			pp = &(*pp)->next;
		*pp = w.next;
		n_waiting--;
	}
	pthread_mutex_unlock(&reg_lock);
	pthread_cond_destroy(&w.cond);
	return w.conn;
}

/* A worker: serves one MTA connection after the other, so that a new
 * connection usually costs a condition-variable wake-up rather than a
 * thread's creation and exit. */
static void *conn_thread(void *arg)
{
	for (struct conn *c = arg; c;) {
		serve(c);
		c = next_conn(conn_finish(c));
	}
	struct ended *e = sift_malloc(sizeof(*e));
	e->th = pthread_self();
	pthread_mutex_lock(&reg_lock);
	e->next = ended;
	ended = e;
	n_threads--;
	pthread_cond_broadcast(&reg_cond);
	pthread_mutex_unlock(&reg_lock);
	return NULL;
}

/* Joins the workers that ended. */
static void reap_threads(void)
{
	pthread_mutex_lock(&reg_lock);
	struct ended *e = ended;
	ended = NULL;
	pthread_mutex_unlock(&reg_lock);
	while (e) {
		struct ended *next = e->next;
		pthread_join(e->th, NULL);
		free(e);
		e = next;
	}
}

/* A new connection's state, sockets options set. */
static struct conn *conn_accepted(int fd, const struct sockaddr_storage *ss)
{
	struct conn *c = sift_calloc(1, sizeof(*c));
	c->fd = fd;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		snprintf(c->peer, sizeof(c->peer), "%s:%u", a, ntohs(sin->sin_port));
		c->tcp = true;
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		char a[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", a, ntohs(sin6->sin6_port));
		c->tcp = true;
	} else {
		snprintf(c->peer, sizeof(c->peer), "unix");
	}
	struct timeval tv = {.tv_sec = (time_t)(fconf->milter_timeout / 1000),
			     .tv_usec = (suseconds_t)(fconf->milter_timeout % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (c->tcp && fconf->tcp_tuning) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	} else {
		c->tcp = false; /* no QUICKACK re-arming either */
	}
	c->rcap = RBUF_MIN;
	c->rbuf = sift_malloc(c->rcap);
	c->state = MP_ST_INIT;
	c->born = sift_now_ms();
	fd_session_init(&c->s, &native_out, c);
	return c;
}

/* Frees a connection that was never registered. */
static void conn_drop(struct conn *c)
{
	fd_session_free(&c->s);
	free(c->rbuf);
	close(c->fd);
	free(c);
}

enum reg { REG_STOPPING, REG_REFUSED, REG_HANDED, REG_NEED_THREAD };

/* What conn_register closed to make room (for the log line). */
struct evicted {
	char peer[INET6_ADDRSTRLEN + 8];
	long long idle_ms; /* 0: none */
};

/* At filterd_max_connections (under reg_lock): the negotiated connection
 * that has waited longest between messages is shut down (its worker sees
 * the end and frees it; set_idle tells it if data came meanwhile), so that
 * an MTA's idle connections, which may each wait filterd_milter_timeout,
 * do not refuse new sessions. None (every one in a message, or not yet
 * negotiated, which filterd_milter_packet_timeout bounds): false. */
static bool evict_idlest(struct evicted *ev)
{
	struct conn *v = NULL;
	for (struct conn *o = conns; o; o = o->next)
		if (o->evictable && (!v || o->idle_ms < v->idle_ms))
			v = o;
	if (!v)
		return false;
	v->evicted = true;
	v->idle = v->evictable = false;
	shutdown(v->fd, SHUT_RDWR);
	snprintf(ev->peer, sizeof(ev->peer), "%s", v->peer);
	long long now = sift_now_ms();
	ev->idle_ms = now > v->idle_ms ? now - v->idle_ms : 1;
	return true;
}

/* Registers c (one critical section) and gives it to a waiting worker if
 * there is one. At the limit, an idle connection may be closed for it
 * (ev). */
static enum reg conn_register(struct conn *c, struct evicted *ev)
{
	pthread_mutex_lock(&reg_lock);
	enum reg r = REG_NEED_THREAD;
	ev->idle_ms = 0;
	if (stopping) {
		r = REG_STOPPING;
	} else if (n_conns >= fconf->max_connections && !evict_idlest(ev)) {
		r = REG_REFUSED;
	} else {
		n_conns++;
		c->next = conns;
		if (conns)
			conns->prev = c;
		conns = c;
		if (waiters) {
			struct waiter *w = waiters;
			waiters = w->next;
			n_waiting--;
			w->conn = c;
			/* under the lock: w lives on the worker's stack, which
			 * it may leave as soon as it sees w->conn */
			pthread_cond_signal(&w->cond);
			r = REG_HANDED;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	return r;
}

/* A new thread for c; false (logged, c unregistered and freed) on failure. */
static bool conn_spawn(struct conn *c)
{
	reap_threads();
	pthread_mutex_lock(&reg_lock);
	n_threads++;
	pthread_mutex_unlock(&reg_lock);
	pthread_t th;
	int err = pthread_create(&th, NULL, conn_thread, c);
	if (err == 0)
		return true;
	sift_log(LOG_ERR, "cannot create a thread for %s: %s", c->peer, strerror(err));
	pthread_mutex_lock(&reg_lock);
	n_threads--;
	if (c->next)
		c->next->prev = c->prev;
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	n_conns--;
	pthread_mutex_unlock(&reg_lock);
	conn_drop(c);
	return false;
}

/* accept() failed: true to go on, false to stop accepting. */
static bool accept_error(long long *last_warn)
{
	if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EWOULDBLOCK)
		return true;
	long long now = sift_now_ms();
	if (now - *last_warn > 1000) {
		sift_log(LOG_ERR, "accept: %s", strerror(errno));
		*last_warn = now;
	}
	if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
		return true;
	}
	return errno != EINVAL && errno != EBADF;
}

static void *accept_thread(void *arg)
{
	long long last_warn = 0;
	for (;;) {
		struct pollfd pfd[2] = {{.fd = listen_fd, .events = POLLIN},
					{.fd = wake_pipe[0], .events = POLLIN}};
		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			sift_log(LOG_ERR, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break; /* stopping */
		if (!pfd[0].revents)
			continue;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		/* blocking (not inherited from listen_fd), bounded by
		 * SO_RCVTIMEO/SO_SNDTIMEO (conn_accepted) */
		int fd = accept4(listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0) {
			if (!accept_error(&last_warn))
				break;
			continue;
		}
		struct conn *c = conn_accepted(fd, &ss);
		struct evicted ev;
		enum reg r = conn_register(c, &ev);
		if (ev.idle_ms)
			sift_log(LOG_NOTICE,
				 "filterd_max_connections (%lld) reached: closing the milter connection "
				 "from %s, idle between messages for %.1f s, for %s",
				 fconf->max_connections, ev.peer, (double)ev.idle_ms / 1000, c->peer);
		if (r == REG_STOPPING) {
			conn_drop(c);
			break;
		}
		if (r == REG_REFUSED) {
			long long now = sift_now_ms();
			if (now - last_warn > 1000) {
				sift_log(LOG_WARNING,
					 "too many MTA connections (filterd_max_connections = %lld): "
					 "refusing %s",
					 fconf->max_connections, c->peer);
				last_warn = now;
			}
			conn_drop(c);
			continue;
		}
		if (r == REG_NEED_THREAD)
			conn_spawn(c);
	}
	return arg;
}

/* Postfix's endpoint syntax; libmilter's inet:PORT@HOST is converted. */
static char *native_endpoint(const char *spec)
{
	const char *rest = NULL, *kind = NULL;
	if (strncmp(spec, "inet:", 5) == 0)
		kind = "inet", rest = spec + 5;
	else if (strncmp(spec, "inet6:", 6) == 0)
		kind = "inet6", rest = spec + 6;
	const char *at = rest ? strchr(rest, '@') : NULL;
	if (!at)
		return sift_strdup(spec);
	const char *host = at + 1;
	bool v6 = strchr(host, ':') != NULL && host[0] != '[';
	return sift_asprintf("%s:%s%s%s:%.*s", kind, v6 ? "[" : "", host, v6 ? "]" : "", (int)(at - rest),
			     rest);
}

int filterd_native_setup(const struct filterd_conf *conf, char **err_r)
{
	fconf = conf;
	fd_session_setup(conf);
	char *ep = native_endpoint(conf->listen);
	mode_t mode;
	if (sift_socket_mode("filterd", conf->socket_mode, &mode, err_r) < 0) {
		free(ep);
		return -1;
	}
	listen_fd = sift_listen_mode(ep, (int)conf->backlog, mode, err_r);
	if (listen_fd < 0) {
		free(ep);
		return -1;
	}
	const char *path = NULL;
	if (strncmp(ep, "unix:", 5) == 0)
		path = ep + 5;
	else if (strncmp(ep, "local:", 6) == 0)
		path = ep + 6;
	if (path) {
		unix_path = sift_strdup(path);
		if (filterd_socket_perms(conf, path, err_r) < 0) {
			free(ep);
			return -1;
		}
	}
	free(ep);
	if (pipe2(wake_pipe, O_CLOEXEC) < 0) {
		*err_r = sift_asprintf("pipe: %s", strerror(errno));
		return -1;
	}
	int fl = fcntl(listen_fd, F_GETFL);
	fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);
	return 0;
}

int filterd_native_run(void)
{
	if (pthread_create(&acceptor, NULL, accept_thread, NULL) != 0) {
		sift_log(LOG_ERR, "cannot create the acceptor thread");
		return -1;
	}
	pthread_join(acceptor, NULL);
	/* stopping: close the connections waiting between messages, give the
	 * others filterd_shutdown_timeout to finish their message */
	long long deadline = sift_now_ms() + fconf->shutdown_timeout;
	pthread_mutex_lock(&reg_lock);
	for (;;) {
		for (struct conn *c = conns; c; c = c->next)
			if (c->idle)
				shutdown(c->fd, SHUT_RDWR);
		long long left = deadline - sift_now_ms();
		if (n_conns == 0 || left <= 0)
			break;
		struct timespec ts;
		sift_timespec_in(CLOCK_REALTIME, left < 100 ? left : 100, &ts);
		pthread_cond_timedwait(&reg_cond, &reg_lock, &ts);
	}
	bool busy = n_conns > 0;
	if (busy)
		sift_log(LOG_WARNING,
			 "%lld MTA connections still in a message after "
			 "filterd_shutdown_timeout; exiting anyway",
			 n_conns);
	/* the idle workers were woken by filterd_native_stop: they end now */
	while (n_conns == 0 && n_threads > 0) {
		struct timespec ts;
		sift_timespec_in(CLOCK_REALTIME, 1000, &ts);
		if (pthread_cond_timedwait(&reg_cond, &reg_lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&reg_lock);
	reap_threads();
	close(listen_fd);
	if (unix_path)
		unlink(unix_path);
	return busy ? 1 : 0;
}

void filterd_native_stop(void)
{
	pthread_mutex_lock(&reg_lock);
	stopping = true;
	for (struct waiter *w = waiters; w; w = w->next)
		pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&reg_lock);
	ssize_t w = write(wake_pipe[1], "s", 1);
	(void)w;
}
