/*
 * milter.c - the libmilter engine (filterd_engine = libmilter): the only
 * file that includes <libmilter/mfapi.h>. Each MTA connection gets a struct
 * fd_session (session.c holds what filterd does at each event, shared with
 * the native engine in engine.c), stored with smfi_setpriv: Debian's
 * libmilter hands consecutive callbacks of one connection to different
 * worker threads, so nothing lives in thread-local storage. This file only
 * maps libmilter's callbacks and functions onto the session's.
 *
 * Stopping: on SIGTERM smfi_main() returns (libmilter's listener waits in
 * poll() 5 s at a time before it looks at its stop flag: filterd cuts that
 * wait short, see stop_poll below). Callbacks already running finish, but libmilter reads
 * no further command: a message whose next step (its body, its end) comes
 * after the stop gets no answer, and the MTA, seeing the connection close,
 * applies milter_default_action (the native engine lets such messages
 * finish). Every callback is counted in and out (busy); once stopping is
 * set, only the callbacks of a connection inside a message (between MAIL
 * and end of message) still run filterd's code, the others answer tempfail
 * without it. The main thread waits filterd_shutdown_timeout for the
 * running callbacks to return before the generation is dropped and exit()
 * runs its handlers (OpenSSL's, libclamav's); past it, filterd_milter_run
 * returns 1 and main() leaves with _exit(0), as with the native engine.
 */
#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filterd.h"
#include "mproto.h"
#include "session.h"

static const char *lm_getsymval(void *arg, const char *name)
{
	return smfi_getsymval((SMFICTX *)arg, (char *)name);
}

static int lm_setreply(void *arg, const char *code, const char *xcode, const char *text)
{
	char *t = sift_reply_format(NULL, NULL, text, true);
	int rc = smfi_setreply((SMFICTX *)arg, (char *)code, (char *)xcode, t) == MI_SUCCESS ? 0 : -1;
	free(t);
	return rc;
}

/* Header values: the core's form in, the MTA's out (mproto.h). */
static int lm_addheader(void *arg, const char *name, const char *value)
{
	char *v = mp_wire_value(value);
	int rc = smfi_addheader((SMFICTX *)arg, (char *)name, v) == MI_SUCCESS ? 0 : -1;
	free(v);
	return rc;
}

static int lm_insheader(void *arg, int idx, const char *name, const char *value)
{
	char *v = mp_wire_value(value);
	int rc = smfi_insheader((SMFICTX *)arg, idx, (char *)name, v) == MI_SUCCESS ? 0 : -1;
	free(v);
	return rc;
}

static int lm_chgheader(void *arg, const char *name, int idx, const char *value)
{
	char *v = value ? mp_wire_value(value) : NULL;
	int rc = smfi_chgheader((SMFICTX *)arg, (char *)name, idx, v) == MI_SUCCESS ? 0 : -1;
	free(v);
	return rc;
}

static int lm_quarantine(void *arg, const char *reason)
{
	return smfi_quarantine((SMFICTX *)arg, (char *)reason) == MI_SUCCESS ? 0 : -1;
}

static const struct fd_out lm_out = {
	.getsymval = lm_getsymval,
	.setreply = lm_setreply,
	.addheader = lm_addheader,
	.insheader = lm_insheader,
	.chgheader = lm_chgheader,
	.quarantine = lm_quarantine,
};

/* A connection: its session and whether it is inside a message. */
struct lm_conn {
	struct fd_session s;
	bool in_msg;
};

static atomic_bool stopping;
static atomic_int busy;		  /* callbacks in filterd's code */
static atomic_int msgs;		  /* connections inside a message */
static long long stop_timeout_ms; /* filterd_shutdown_timeout */

/* A callback begins: its connection (created at the first callback:
 * libmilter may call close without anything before it), or NULL when
 * filterd is stopping and the connection is not inside a message. */
static struct lm_conn *enter(SMFICTX *m)
{
	atomic_fetch_add(&busy, 1);
	struct lm_conn *c = smfi_getpriv(m);
	if (atomic_load(&stopping) && !(c && c->in_msg)) {
		atomic_fetch_sub(&busy, 1);
		return NULL;
	}
	if (!c) {
		c = sift_malloc(sizeof(*c));
		fd_session_init(&c->s, &lm_out, m);
		c->in_msg = false;
		smfi_setpriv(m, c);
	}
	return c;
}

static void set_in_msg(struct lm_conn *c, bool on)
{
	if (c->in_msg != on) {
		c->in_msg = on;
		atomic_fetch_add(&msgs, on ? 1 : -1);
	}
}

static sfsistat leave(sfsistat r)
{
	atomic_fetch_sub(&busy, 1);
	return r;
}

static sfsistat st(enum fd_status v)
{
	switch (v) {
	case FD_REJECT:
		return SMFIS_REJECT;
	case FD_TEMPFAIL:
		return SMFIS_TEMPFAIL;
	case FD_DISCARD:
		return SMFIS_DISCARD;
	case FD_NOREPLY:
		return SMFIS_NOREPLY;
	default:
		return SMFIS_CONTINUE;
	}
}

static sfsistat cb_negotiate(SMFICTX *m, unsigned long f0, unsigned long f1, unsigned long f2,
			     unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
			     unsigned long *pf3)
{
	struct lm_conn *c = enter(m);
	*pf2 = *pf3 = 0;
	if (!c)
		return SMFIS_REJECT; /* stopping: no new connection */
	const char *refused = fd_session_negotiate(&c->s, f0, f1, pf0, pf1);
	if (refused) {
		sift_log(LOG_ERR, "MTA connection refused: %s", refused);
		return leave(SMFIS_REJECT);
	}
	return leave(SMFIS_CONTINUE);
}

/* libmilter hands a sockaddr: the address becomes text here, once, as the
 * native engine gets it from the packet. */
static sfsistat cb_connect(SMFICTX *m, char *hostname, _SOCK_ADDR *sa)
{
	char addr[INET6_ADDRSTRLEN] = "", port[8] = "";
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
		snprintf(port, sizeof(port), "%u", ntohs(sin->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], addr, sizeof(addr));
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
		snprintf(port, sizeof(port), "%u", ntohs(sin6->sin6_port));
	}
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	return leave(st(fd_session_connect(&c->s, hostname, *addr ? addr : NULL, *port ? port : NULL)));
}

/* Callbacks after connect: without a session there is no context either
 * (the session functions then answer tempfail, as before). */
static sfsistat cb_helo(SMFICTX *m, char *helo)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	return leave(st(fd_session_helo(&c->s, helo)));
}

static sfsistat cb_envfrom(SMFICTX *m, char **argv)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	sfsistat r = st(fd_session_envfrom(&c->s, argv ? argv[0] : NULL));
	/* inside a message whether MAIL was answered or, negotiated away
	 * (no plugin hooks it), not */
	set_in_msg(c, r == SMFIS_CONTINUE || r == SMFIS_NOREPLY);
	return leave(r);
}

static sfsistat cb_envrcpt(SMFICTX *m, char **argv)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	return leave(st(fd_session_envrcpt(&c->s, argv ? argv[0] : NULL)));
}

static sfsistat cb_data(SMFICTX *m)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	return leave(st(fd_session_data(&c->s)));
}

static sfsistat cb_header(SMFICTX *m, char *name, char *value)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	return leave(st(fd_session_header(&c->s, name, value)));
}

static sfsistat cb_eoh(SMFICTX *m)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	return leave(st(fd_session_eoh(&c->s)));
}

static sfsistat cb_body(SMFICTX *m, unsigned char *buf, size_t len)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	return leave(st(fd_session_body(&c->s, buf, len)));
}

static sfsistat cb_eom(SMFICTX *m)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_TEMPFAIL;
	sfsistat r = st(fd_session_eom(&c->s));
	set_in_msg(c, false);
	return leave(r);
}

static sfsistat cb_abort(SMFICTX *m)
{
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_CONTINUE;
	fd_session_abort(&c->s);
	set_in_msg(c, false);
	return leave(SMFIS_CONTINUE);
}

static sfsistat cb_close(SMFICTX *m)
{
	if (!smfi_getpriv(m))
		return SMFIS_CONTINUE;
	struct lm_conn *c = enter(m);
	if (!c)
		return SMFIS_CONTINUE; /* stopping: left to exit */
	set_in_msg(c, false);
	fd_session_free(&c->s);
	free(c);
	smfi_setpriv(m, NULL);
	return leave(SMFIS_CONTINUE);
}

/* "inet:127.0.0.1:8891" (Postfix's form) becomes "inet:8891@127.0.0.1"
 * (libmilter's); libmilter's own forms pass through. */
static char *milter_endpoint(const char *spec)
{
	const char *rest = NULL;
	const char *kind = NULL;
	if (strncmp(spec, "inet:", 5) == 0)
		kind = "inet", rest = spec + 5;
	else if (strncmp(spec, "inet6:", 6) == 0)
		kind = "inet6", rest = spec + 6;
	if (!rest || strchr(rest, '@'))
		return sift_strdup(spec);
	const char *colon = strrchr(rest, ':');
	if (!colon)
		return sift_asprintf("%s:%s@127.0.0.1", kind, rest);
	char *host = sift_strndup(rest, (size_t)(colon - rest));
	if (host[0] == '[') {
		char *h = sift_strndup(host + 1, strlen(host) > 2 ? strlen(host) - 2 : 0);
		free(host);
		host = h;
	}
	char *r = sift_asprintf("%s:%s@%s", kind, colon + 1, host);
	free(host);
	return r;
}

int filterd_milter_setup(const struct filterd_conf *conf, char **err_r)
{
	fd_session_setup(conf);
	stop_timeout_ms = conf->shutdown_timeout;

	static struct smfiDesc desc = {
		.xxfi_name = "sift-filterd",
		.xxfi_version = SMFI_VERSION,
		.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGBODY,
		.xxfi_connect = cb_connect,
		.xxfi_helo = cb_helo,
		.xxfi_envfrom = cb_envfrom,
		.xxfi_envrcpt = cb_envrcpt,
		.xxfi_header = cb_header,
		.xxfi_eoh = cb_eoh,
		.xxfi_body = cb_body,
		.xxfi_eom = cb_eom,
		.xxfi_abort = cb_abort,
		.xxfi_close = cb_close,
		.xxfi_data = cb_data,
		.xxfi_negotiate = cb_negotiate,
	};
	char *ep = milter_endpoint(conf->listen);
	if (smfi_setconn(ep) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS) {
		*err_r = sift_asprintf("cannot set up the milter on %s", conf->listen);
		free(ep);
		return -1;
	}
	smfi_setbacklog((int)conf->backlog);
	smfi_settimeout((int)(conf->milter_timeout / 1000));
	/* libmilter applies its timeout only when it looks for old sessions,
	 * every DT_CHECK_OLD_SESSIONS (600 s), not on each read. */
	if (conf->milter_timeout < 600000)
		sift_log(LOG_WARNING,
			 "filterd_milter_timeout (%lld ms) is enforced by libmilter only at its session "
			 "check, "
			 "every 600 s: an idle or stalled MTA connection stays open up to that long "
			 "(filterd_engine = native applies it to each read)",
			 conf->milter_timeout);
	/* A unix socket is born with filterd_socket_mode (see sift_bind_unix):
	 * nothing changes its mode by path afterwards. */
	mode_t mode;
	if (sift_socket_mode("filterd", conf->socket_mode, &mode, err_r) < 0) {
		free(ep);
		return -1;
	}
	mode_t old = umask(~mode & 0777);
	int rc = smfi_opensocket(true);
	umask(old);
	if (rc != MI_SUCCESS) {
		*err_r = sift_asprintf("cannot listen on %s (%s)", conf->listen, ep);
		free(ep);
		return -1;
	}
	const char *path = NULL;
	if (strncmp(ep, "unix:", 5) == 0)
		path = ep + 5;
	else if (strncmp(ep, "local:", 6) == 0)
		path = ep + 6;
	if (path && filterd_socket_perms(conf, path, err_r) < 0) {
		free(ep);
		return -1;
	}
	free(ep);
	return 0;
}

#ifdef FILTERD_HAVE_MI_STOP
/* stop_poll: libmilter's listener (the thread in smfi_main) accepts in a loop
 * that looks at libmilter's stop flag, which its signal thread raises at
 * SIGTERM, only between waits of MI_CHK_TIME (5 s) in poll(): a stop took up
 * to 5 s before anything else happened. filterd links libmilter statically
 * and wraps poll (ld --wrap, as tcpfix.c wraps accept, read and close): in
 * that thread a wait longer than STOP_STEP_MS is made of waits of
 * STOP_STEP_MS, and ends as a timeout once the flag (libmilter's mi_stop(),
 * a function of its own it does not declare in mfapi.h) is up, so the
 * listener sees it at once. Every other call reaches poll() itself. */
#define STOP_STEP_MS 50
int mi_stop(void);
int __real_poll(struct pollfd *fds, nfds_t n, int timeout);
int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout);
static pthread_t listener;
static atomic_bool listener_known;

int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (timeout <= STOP_STEP_MS || !atomic_load_explicit(&listener_known, memory_order_acquire) ||
	    !pthread_equal(pthread_self(), listener))
		return __real_poll(fds, n, timeout);
	long long end = sift_now_ms() + timeout;
	for (;;) {
		long long left = end - sift_now_ms();
		if (left <= 0)
			return 0;
		int r = __real_poll(fds, n, left < STOP_STEP_MS ? (int)left : STOP_STEP_MS);
		if (r != 0 || mi_stop() != 0)
			return r;
	}
}
#endif

/* 0 or -1 as smfi_main(); 1 when messages or callbacks were still running
 * after filterd_shutdown_timeout (see the top of this file). */
int filterd_milter_run(void)
{
#ifdef FILTERD_HAVE_MI_STOP
	listener = pthread_self();
	atomic_store_explicit(&listener_known, true, memory_order_release);
#endif
	int rc = smfi_main() == MI_SUCCESS ? 0 : -1;
#ifdef FILTERD_HAVE_MI_STOP
	atomic_store(&listener_known, false);
#endif
	atomic_store(&stopping, true);
	long long deadline = sift_now_ms() + stop_timeout_ms;
	while (atomic_load(&busy) && sift_now_ms() < deadline)
		usleep(10000);
	int n = atomic_load(&msgs), b = atomic_load(&busy);
	if (b) {
		sift_log(LOG_WARNING,
			 "%d callbacks still running after filterd_shutdown_timeout; exiting anyway", b);
		return 1;
	}
	if (n) /* libmilter reads nothing more from them */
		sift_log(LOG_WARNING,
			 "%d MTA connections were inside a message at the stop: libmilter serves them no "
			 "further, the MTA applies milter_default_action (filterd_engine = native lets "
			 "them finish)",
			 n);
	return rc;
}
