/*
 * session.h - what filterd does at each milter event, independent of the
 * engine that speaks the protocol (libmilter in milter.c, the native one in
 * engine.c). An engine owns a struct fd_session per MTA connection, calls
 * fd_session_<event>() for each command and turns the returned status into
 * its reply; the session calls back into the engine (struct fd_out) to
 * read macros, set the reply text, and send modifications at end of
 * message.
 */
#ifndef FILTERD_SESSION_H
#define FILTERD_SESSION_H
#include <stdbool.h>
#include <stddef.h>

#include "filterd.h"

enum fd_status { FD_CONTINUE = 0, FD_REJECT, FD_TEMPFAIL, FD_DISCARD, FD_NOREPLY };

/* The engine's primitives; each returns 0, or -1 when the request cannot be
 * made (libmilter: MI_FAILURE). Header values are in the core's form
 * (folds joined with CRLF, no leading space): the engine writes them as
 * the MTA wants them (mproto.h, mp_wire_value). The reply was checked
 * (lib/reply.c); the engine formats it for the milter
 * (sift_reply_format: '%' doubled). */
struct fd_out {
	const char *(*getsymval)(void *arg, const char *name);
	int (*setreply)(void *arg, const char *code, const char *xcode, const char *text);
	int (*addheader)(void *arg, const char *name, const char *value);
	int (*insheader)(void *arg, int idx, const char *name, const char *value);
	int (*chgheader)(void *arg, const char *name, int idx, const char *value);
	int (*quarantine)(void *arg, const char *reason);
};

/* What filterd adds to the core's session (lib/session.c): the protocol
 * steps negotiated and the engine's primitives. */
struct fd_session {
	struct sift_session *ss;
	unsigned long nr; /* SMFIP_NR_* steps negotiated: no reply is expected */
	const struct fd_out *out;
	void *arg;
	bool counted; /* in the connections open (sift_metrics_conn) */
};

/* Takes conf's deadlines for the sessions that start from now on (at start,
 * and again at each reload). */
void fd_session_setup(const struct filterd_conf *conf);
/* Starts a session on the current generation. */
void fd_session_init(struct fd_session *s, const struct fd_out *out, void *arg);
/* Ends the connection (close hooks) and frees the session. */
void fd_session_free(struct fd_session *s);

/* f0/f1: actions and protocol steps offered (libmilter adds the no-reply
 * steps it can fake); pf0 and pf1: what filterd asks for. The connection
 * counts as open (metrics, status) from its first negotiation until
 * fd_session_free, whichever the engine: one that never negotiates (a
 * silent client, one refused at filterd_max_connections) is not counted.
 * Returns NULL, or why the connection must be refused: an MTA that does
 * not offer SMFIP_HDR_LEADSPC (milter protocol 2) when headers are read
 * or edited. */
const char *fd_session_negotiate(struct fd_session *s, unsigned long f0, unsigned long f1, unsigned long *pf0,
				 unsigned long *pf1);
/* hostname as the MTA sent it ("[ip]" when unverified); addr and port in
 * text form, as the milter packet carries them (NULL when unknown). */
enum fd_status fd_session_connect(struct fd_session *s, const char *hostname, const char *addr,
				  const char *port);
enum fd_status fd_session_helo(struct fd_session *s, const char *helo);
/* argv0: the address in <>, NULL = "<>". */
enum fd_status fd_session_envfrom(struct fd_session *s, const char *argv0);
enum fd_status fd_session_envrcpt(struct fd_session *s, const char *argv0);
enum fd_status fd_session_data(struct fd_session *s);
enum fd_status fd_session_header(struct fd_session *s, const char *name, const char *value);
enum fd_status fd_session_eoh(struct fd_session *s);
enum fd_status fd_session_body(struct fd_session *s, const unsigned char *buf, size_t len);
enum fd_status fd_session_eom(struct fd_session *s);
void fd_session_abort(struct fd_session *s);
/* QUIT, QUIT_NC: the SMTP connection ends (a new one may follow). */
void fd_session_quit(struct fd_session *s);
#endif
