/*
 * fuzz_session.c - libFuzzer target for filterd's session logic: random
 * milter command sequences (mostly well-formed packets: negotiation,
 * connect, helo, mail, rcpt, data, header, eoh, body, end of message,
 * abort, quit, macros, and raw packets) go through the native engine's
 * command handler (filterd/engine.c, with mproto.c and session.c compiled
 * in here, since filterd is a program) and the core's session
 * (lib/session.c) to two plugins linked into the target, whose verdicts,
 * replies and header edits come from the input. The engine writes to a
 * socket pair; what it sends is read back and checked.
 *
 * Input: one byte n, then a tape of n bytes (each hook call takes the next
 * one, cyclically: verdict, reply, edits), then operations (an op byte and
 * its arguments) until the input ends.
 *
 * Invariants (abort() when broken):
 *   - every reply the engine sends is valid by the core's rules
 *     (lib/reply.c), '%' doubled; a bare reject or tempfail is only sent
 *     at connect (where libmilter allows no text);
 *   - header modifications carry no CR (the wire form);
 *   - within a message, no hook runs after a final verdict, except abort
 *     and msg_end; no message hook runs outside a message;
 *   - msg_end runs exactly once per message and plugin, abort only inside
 *     a message, close never inside one.
 * Replayed over tests/fuzz/corpus/session/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../filterd/mproto.c"
#define fconf session_fconf
#include "../../filterd/session.c"
#undef fconf
#include "../../filterd/engine.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* engine.c's unix-socket setup is not run here */
int filterd_socket_perms(const struct filterd_conf *conf, const char *path, char **err_r)
{
	*err_r = sift_strdup("not in the fuzz target");
	return -1;
}

/* ---- the plugins: fz1 (first, always run, error = tempfail) and fz2
 * (error = dunno) ---- */

static const struct sift_host *fz_host;
static struct {
	const uint8_t *tape;
	size_t tape_len, tape_pos;
	bool in_msg[2]; /* a message is open for plugin i */
	bool final;	/* the open message has a final verdict */
} fz;

static char long_text[SIFT_REPLY_MAX + 8];
static const char *const replies[][3] = {
	{NULL, NULL, NULL},
	{"550", "5.7.1", "fuzz says no"},
	{"451", "4.7.1", "later"},
	{"554", NULL, "100% spam"},
	{NULL, NULL, "text alone"},
	{"550", "5..1", "bad enhanced code"},
	{"451", "5.7.1", "classes differ"},
	{"550", "5.7.1", "line\r\nbreak"},
	{"5x0", "5.7.1", "not a code"},
	{"250", "2.0.0", "not a failure"},
	{NULL, "5.7.1", NULL},
	{"550", "5.7.1", long_text},
	{"421", "4.3.2", "%s%n%%"},
};
#define N_REPLIES (sizeof(replies) / sizeof(replies[0]))

static const enum sift_verdict verdicts[8] = {SIFT_DUNNO,    SIFT_DUNNO,   SIFT_ACCEPT, SIFT_REJECT,
					      SIFT_TEMPFAIL, SIFT_DISCARD, SIFT_HOLD,	SIFT_ERROR};

static bool final_verdict(enum sift_verdict v)
{
	return v == SIFT_REJECT || v == SIFT_TEMPFAIL || v == SIFT_DISCARD;
}

static enum sift_verdict fz_hook(struct sift_ctx *ctx, enum sift_phase ph, int pl)
{
	if (ph == SIFT_PH_MAIL && pl == 0) {
		/* fz1 runs first and always: its mail hook starts every message */
		if (fz.in_msg[0] || fz.in_msg[1])
			abort(); /* the previous message did not end */
		fz.in_msg[0] = fz.in_msg[1] = true;
		fz.final = false;
	} else if (ph >= SIFT_PH_MAIL && ph <= SIFT_PH_EOM) {
		if (!fz.in_msg[pl])
			abort(); /* a message hook outside a message */
		if (fz.final)
			abort(); /* a hook after the message's final verdict */
	}
	uint8_t b = fz.tape_len ? fz.tape[fz.tape_pos++ % fz.tape_len] : 0;
	enum sift_verdict v = verdicts[b & 7];
	const char *const *r = replies[(b >> 3) % N_REPLIES];
	if (r[0] || r[1] || r[2])
		fz_host->reply(ctx, r[0], r[1], r[2]);
	if (v == SIFT_HOLD && (b & 0x40))
		fz_host->hold(ctx, "fuzz 100% hold");
	if (b & 0x80) {
		fz_host->header_add(ctx, pl ? "X-Fz2" : "X-Fz1", "folded\r\n\tvalue");
		fz_host->header_change(ctx, "Subject", 1, (b & 0x40) ? NULL : "changed");
		fz_host->symbol(ctx, "FZ", 1.0, NULL);
	}
	(void)fz_host->get(ctx, SIFT_I_CLIENT_ADDR);
	(void)fz_host->macro(ctx, "{fz}");
	enum sift_verdict eff = v == SIFT_ERROR ? (pl == 0 ? SIFT_TEMPFAIL : SIFT_DUNNO) : v;
	if (fz.in_msg[pl] &&
	    ((ph != SIFT_PH_RCPT && final_verdict(eff)) || (ph == SIFT_PH_RCPT && eff == SIFT_DISCARD)))
		fz.final = true;
	return v;
}

static void fz_abort(int pl)
{
	if (!fz.in_msg[pl])
		abort();
}

static void fz_msg_end(int pl)
{
	if (!fz.in_msg[pl])
		abort(); /* msg_end twice, or without a message */
	fz.in_msg[pl] = false;
}

static void fz_close(int pl)
{
	if (fz.in_msg[pl])
		abort();
}

static int fz_init(const struct sift_host *h, void *conf, char **err_r)
{
	fz_host = h;
	return 0;
}

#define FZ_HOOKS(N, I)                                                                          \
	static enum sift_verdict N##_connect(struct sift_ctx *c)                                \
	{                                                                                       \
		return fz_hook(c, SIFT_PH_CONNECT, I);                                          \
	}                                                                                       \
	static enum sift_verdict N##_helo(struct sift_ctx *c)                                   \
	{                                                                                       \
		return fz_hook(c, SIFT_PH_HELO, I);                                             \
	}                                                                                       \
	static enum sift_verdict N##_mail(struct sift_ctx *c)                                   \
	{                                                                                       \
		return fz_hook(c, SIFT_PH_MAIL, I);                                             \
	}                                                                                       \
	static enum sift_verdict N##_rcpt(struct sift_ctx *c)                                   \
	{                                                                                       \
		return fz_hook(c, SIFT_PH_RCPT, I);                                             \
	}                                                                                       \
	static enum sift_verdict N##_data(struct sift_ctx *c)                                   \
	{                                                                                       \
		return fz_hook(c, SIFT_PH_DATA, I);                                             \
	}                                                                                       \
	static enum sift_verdict N##_header(struct sift_ctx *c, const struct sift_header *h)    \
	{                                                                                       \
		if (strchr(h->value, '\n') && !strstr(h->value, "\r\n"))                        \
			abort(); /* folds reach the plugins with CRLF */                        \
		return fz_hook(c, SIFT_PH_HEADER, I);                                           \
	}                                                                                       \
	static enum sift_verdict N##_eoh(struct sift_ctx *c)                                    \
	{                                                                                       \
		return fz_hook(c, SIFT_PH_EOH, I);                                              \
	}                                                                                       \
	static enum sift_verdict N##_body(struct sift_ctx *c, const unsigned char *b, size_t l) \
	{                                                                                       \
		return fz_hook(c, SIFT_PH_BODY, I);                                             \
	}                                                                                       \
	static enum sift_verdict N##_eom(struct sift_ctx *c)                                    \
	{                                                                                       \
		return fz_hook(c, SIFT_PH_EOM, I);                                              \
	}                                                                                       \
	static void N##_abort(struct sift_ctx *c)                                               \
	{                                                                                       \
		fz_abort(I);                                                                    \
	}                                                                                       \
	static void N##_msg_end(struct sift_ctx *c)                                             \
	{                                                                                       \
		fz_msg_end(I);                                                                  \
	}                                                                                       \
	static void N##_close(struct sift_ctx *c)                                               \
	{                                                                                       \
		fz_close(I);                                                                    \
	}                                                                                       \
	static const struct sift_plugin N##_plugin = {                                          \
		SIFT_PLUGIN_INIT,                                                               \
		.name = #N,                                                                     \
		.description = "session fuzz plugin",                                           \
		.daemons = SIFT_D_FILTERD,                                                      \
		.actions = SIFT_A_ADDHDRS | SIFT_A_CHGHDRS | SIFT_A_QUARANTINE,                 \
		.flags = I == 0 ? SIFT_F_ALWAYS_RUN : 0,                                        \
		.init = fz_init,                                                                \
		.connect = N##_connect,                                                         \
		.helo = N##_helo,                                                               \
		.mail = N##_mail,                                                               \
		.rcpt = N##_rcpt,                                                               \
		.data = N##_data,                                                               \
		.header = N##_header,                                                           \
		.eoh = N##_eoh,                                                                 \
		.body = N##_body,                                                               \
		.eom = N##_eom,                                                                 \
		.abort = N##_abort,                                                             \
		.msg_end = N##_msg_end,                                                         \
		.close = N##_close,                                                             \
	};
FZ_HOOKS(fz1, 0)
FZ_HOOKS(fz2, 1)

static void setup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	memset(long_text, 'x', sizeof(long_text) - 1);
	sift_log_init("fuzz_session", true, LOG_CRIT);
	sift_plugin_builtin(&fz1_plugin);
	sift_plugin_builtin(&fz2_plugin);
	struct sift_config *cfg = sift_config_new();
	sift_config_common_defaults(cfg);
	static const char *const lines[] = {
		"plugin_directory = /nonexistent/sift-fuzz",
		"inbound_plugins = fz1 fz2",
		"originating_plugins = fz1",
		"fz1_error_action = tempfail",
		"fz2_error_action = dunno",
		"quarantine_directory = /nonexistent/sift-fuzz",
		"message_memory_limit = 4k",
		"tmpdir = /tmp",
		"dns_servers = 127.0.0.1:9",
	};
	char *err = NULL;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (sift_config_set(cfg, lines[i], "fuzz", &err) < 0)
			abort();
	struct sift_gen *g = sift_gen_new(SIFT_FILTERD, cfg, &err);
	if (!g) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	sift_gen_set_current(g);
	static struct filterd_conf conf = {.command_deadline = 10000, .content_deadline = 20000};
	fd_session_setup(&conf);
}

/* ---- the engine's output ---- */

/* A 'y' packet: "code[ xcode][ text]" with '%' doubled. */
static void check_replycode(const unsigned char *d, size_t len)
{
	if (!len || d[len - 1] != 0)
		abort();
	const char *s = (const char *)d;
	if (strlen(s) < 3 || (s[3] && s[3] != ' '))
		abort();
	char code[4] = {s[0], s[1], s[2], 0};
	const char *rest = s[3] ? s + 4 : NULL;
	char xcode[16] = "";
	if (rest) {
		size_t xl = strcspn(rest, " ");
		if (xl < sizeof(xcode)) {
			memcpy(xcode, rest, xl);
			xcode[xl] = 0;
		}
		if (sift_reply_xcode_ok(code[0], xcode))
			rest = rest[xl] ? rest + xl + 1 : NULL;
		else
			xcode[0] = 0;
	}
	struct sift_buf text = {0};
	for (const char *p = rest; p && *p; p++) {
		if (*p == '%' && *++p != '%')
			abort(); /* a single '%' the MTA would eat */
		sift_buf_add(&text, p, 1);
	}
	if (sift_reply_check(code[0], code, *xcode ? xcode : NULL, rest ? sift_buf_str(&text) : NULL))
		abort();
	sift_buf_free(&text);
}

static void check_output(int fd, char cmd)
{
	static unsigned char buf[1 << 16];
	static size_t have;
	for (;;) {
		ssize_t r = recv(fd, buf + have, sizeof(buf) - have, MSG_DONTWAIT);
		if (r <= 0)
			break;
		have += (size_t)r;
		size_t off = 0;
		for (;;) {
			char c;
			const unsigned char *d;
			size_t dl, used, need;
			int rc = mp_frame(buf + off, have - off, &c, &d, &dl, &used, &need);
			if (rc < 0)
				abort();
			if (rc == 0)
				break;
			off += used;
			const char *n, *v, *why;
			switch (c) {
			case SMFIR_REPLYCODE:
				check_replycode(d, dl);
				break;
			case SMFIR_REJECT:
			case SMFIR_TEMPFAIL:
				if (cmd != SMFIC_CONNECT)
					abort(); /* a bare reject: the plugin's reply was lost */
				break;
			case SMFIR_ADDHEADER:
				if (mp_dec_header(d, dl, &n, &v, &why) < 0 || strchr(v, '\r'))
					abort();
				break;
			case SMFIR_CHGHEADER:
			case SMFIR_INSHEADER:
				if (dl < 4 || mp_dec_header(d + 4, dl - 4, &n, &v, &why) < 0 ||
				    strchr(v, '\r'))
					abort();
				break;
			default:
				break;
			}
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	have = 0;
}

/* ---- the input ---- */

struct in {
	const uint8_t *p, *end;
};

static uint8_t byte(struct in *in)
{
	return in->p < in->end ? *in->p++ : 0;
}

/* Up to max bytes of the input, as they are (NULs included). */
static void take(struct in *in, struct sift_buf *b, size_t max)
{
	size_t n = byte(in) % (max + 1);
	if (n > (size_t)(in->end - in->p))
		n = (size_t)(in->end - in->p);
	sift_buf_add(b, in->p, n);
	in->p += n;
}

static const char *pick(struct in *in, const char *const *list, size_t n)
{
	return list[byte(in) % n];
}
#define PICK(in, list) pick(in, list, sizeof(list) / sizeof(list[0]))

static const char *const hostnames[] = {"client.example", "[192.0.2.1]", "", "unknown"};
static const char *const addrs[] = {"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.7", "1.2.3.999",
				    "/run/x",	 "::1",		"0.0.0.0",	    "fe80::1%eth0"};
static const char families[] = {SMFIA_INET, SMFIA_INET6, SMFIA_UNIX, SMFIA_UNKNOWN, 'X'};
static const char *const addresses[] = {"<alice@example.org>", "<>", "bob@example.com", "<a@b>", ""};
static const char *const hnames[] = {"Subject", "From", "X-Sift-Release", "To", "Received", ""};
static const char stages[] = {SMFIC_CONNECT, SMFIC_HELO,    SMFIC_MAIL,	  SMFIC_RCPT, SMFIC_DATA,
			      SMFIC_EOH,     SMFIC_BODYEOB, SMFIC_HEADER, 'Z'};
static const char *const macro_names[] = {
	"i", "{i}", "j", "{daemon_name}", "{auth_authen}", "{auth_type}", "{client_ptr}", "{fz}"};
static const char *const macro_values[] = {"4ABCDEF", "ORIGINATING", "alice", "", "mx.example"};
static const char cmds[] = {SMFIC_OPTNEG, SMFIC_CONNECT, SMFIC_HELO,	SMFIC_MAIL,  SMFIC_RCPT,
			    SMFIC_DATA,	  SMFIC_HEADER,	 SMFIC_EOH,	SMFIC_BODY,  SMFIC_BODYEOB,
			    SMFIC_ABORT,  SMFIC_QUIT,	 SMFIC_QUIT_NC, SMFIC_MACRO, SMFIC_UNKNOWN};

static void put_str(struct sift_buf *b, const char *s)
{
	sift_buf_add(b, s, strlen(s) + 1);
}

/* One packet's command and data from an op; returns the command byte. */
static char build(struct in *in, struct sift_buf *b)
{
	uint8_t op = byte(in);
	if (op >= 0xf0) { /* raw: any command byte, any data */
		char c = (char)byte(in);
		take(in, b, 64);
		return c;
	}
	char cmd = cmds[op % sizeof(cmds)];
	unsigned char w[12];
	switch (cmd) {
	case SMFIC_OPTNEG:
		put32(w, op & 0x10 ? 2 : 6);
		put32(w + 4, 0x1ff);
		put32(w + 8, (uint32_t)byte(in) << 12 | (uint32_t)byte(in) << 4 | SMFIP_HDR_LEADSPC);
		sift_buf_add(b, w, 12);
		break;
	case SMFIC_CONNECT: {
		put_str(b, PICK(in, hostnames));
		char fam = families[byte(in) % sizeof(families)];
		sift_buf_add(b, &fam, 1);
		if (fam != SMFIA_UNKNOWN) {
			unsigned char port[2] = {byte(in), 25};
			sift_buf_add(b, port, 2);
			put_str(b, PICK(in, addrs));
		}
		break;
	}
	case SMFIC_HELO:
	case SMFIC_UNKNOWN:
		take(in, b, 16);
		sift_buf_add(b, "", 1);
		break;
	case SMFIC_MAIL:
	case SMFIC_RCPT:
		put_str(b, PICK(in, addresses));
		if (op & 0x10)
			put_str(b, "SIZE=100");
		break;
	case SMFIC_HEADER:
		put_str(b, PICK(in, hnames));
		sift_buf_add(b, " ", 1);
		take(in, b, 48); /* the value: LF folds, NULs, anything */
		sift_buf_add(b, "", 1);
		break;
	case SMFIC_BODY:
	case SMFIC_BODYEOB:
		take(in, b, cmd == SMFIC_BODY ? 200 : 8);
		if (cmd == SMFIC_BODY && b->len == 0)
			sift_buf_add(b, "x\r\n", 3);
		break;
	case SMFIC_MACRO: {
		char st = stages[byte(in) % sizeof(stages)];
		sift_buf_add(b, &st, 1);
		for (unsigned n = byte(in) % 3; n; n--) {
			put_str(b, PICK(in, macro_names));
			put_str(b, PICK(in, macro_values));
		}
		break;
	}
	default:
		break;
	}
	return cmd;
}

static struct conn *conn_new(int *peer)
{
	struct conn *c = sift_calloc(1, sizeof(*c));
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	c->fd = sv[0];
	*peer = sv[1];
	snprintf(c->peer, sizeof(c->peer), "fuzz");
	c->state = MP_ST_INIT;
	fd_session_init(&c->s, &native_out, c);
	return c;
}

/* As conn_finish (engine.c) ends a connection. */
static void conn_end(struct conn *c, int peer)
{
	if (MP_IN_MAIL(c->state))
		fd_session_abort(&c->s);
	fd_session_free(&c->s);
	mp_macros_clear(&c->mac, 0);
	free(c->reply);
	sift_buf_free(&c->out);
	close(c->fd);
	close(peer);
	free(c);
	if (fz.in_msg[0] || fz.in_msg[1])
		abort(); /* the connection ended inside a message */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	memset(&fz, 0, sizeof(fz));
	struct in in = {data, data + size};
	size_t tl = byte(&in) % 64;
	if (tl > size - 1)
		tl = size ? size - 1 : 0;
	fz.tape = in.p;
	fz.tape_len = tl;
	in.p += tl;
	int peer;
	struct conn *c = conn_new(&peer);
	struct sift_buf b = {0};
	while (in.p < in.end) {
		b.len = 0;
		char cmd = build(&in, &b);
		int rc = command(c, cmd, (const unsigned char *)b.data, b.len);
		check_output(peer, cmd);
		if (rc <= 0) {
			conn_end(c, peer);
			c = conn_new(&peer);
		}
	}
	sift_buf_free(&b);
	conn_end(c, peer);
	return 0;
}
