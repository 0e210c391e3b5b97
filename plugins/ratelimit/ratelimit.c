/*
 * ratelimit.c - message, recipient and byte rate limits in policyd, keyed
 * by client address (or its /24, /64 ...), SASL login, sender, sender
 * domain, recipient, recipient domain, or any combination, with counters in
 * the host's key-value store (memory: on one host, redis: across hosts).
 *
 * Stages (Postfix policy protocol):
 *   RCPT and DATA  check: would one more message (this recipient, the
 *                  declared SIZE) go over a limit? Early answer, no count.
 *   END-OF-MESSAGE count: every applicable counter is incremented atomically
 *                  by 1 message, recipient_count recipients and `size`
 *                  bytes, and the new values are compared with the limits.
 *                  A message counts once in each bucket of a rule it
 *                  touches (two recipients in one domain: one message in
 *                  that domain's bucket, two recipients); the RCPT and DATA
 *                  checks ask for what this count will add.
 *                  A message that went over is refused here and its
 *                  increments are taken back (kv_incr with -delta), so the
 *                  counters only ever hold accepted mail and exactly
 *                  `limit` messages pass, however many policyd threads or
 *                  hosts race: each increment is atomic in the store and the
 *                  decision is taken on the value that increment returned.
 *
 * Algorithm: sliding window approximated by two fixed windows (as
 * Cloudflare and nginx-style limiters do). Windows are aligned to the epoch
 * (wall clock, so that all hosts sharing a Redis agree); for a limit of L
 * per W, with `cur` counted in the current window and `prev` in the one
 * before, and a fraction f of the current window elapsed, the estimate is
 *     prev * (1 - f) + cur
 * and a request passes while estimate <= L. Two keys per counter, each with
 * a TTL of two windows. Within one window the limit is exact; across a
 * boundary the previous window's count decays linearly.
 *
 * Rules (ratelimit_rules): `{ name=... key=... messages=N/W ... }` blocks,
 * see README.md. Each rule has its own action (defer_if_permit, defer,
 * reject, hold, log) and an optional exemption map.
 *
 * Store failures: counted (an atomic counter, logged at most every 10s
 * with the total) and answered per ratelimit_store_failure: dunno (fail
 * open, the default) or tempfail. An increment that got no answer may have
 * counted (kv_incr -2): a message not accepted takes it back too, and a
 * take-back the store cannot be sent is kept and sent later (take_back).
 *
 * Daemons: in policyd (RCPT/DATA check, END-OF-MESSAGE count) or in
 * filterd (rcpt hook: check; eom hook: count). filterd's eom runs after
 * Postfix's smtpd_end_of_data_restrictions and, as the last plugin of the
 * chain, after every other plugin's verdict: counting there is the exact
 * configuration (a message refused at its end is never counted).
 *
 * Control requests (siftctl ratelimit): with ratelimit_control = yes the
 * plugin listens on a unix socket of its own (ratelimit_control_socket,
 * with its own mode and group), served by one thread: a request of
 * `command=show|reset|stats` and `key=[RULE:]VALUE` lines and an empty
 * line is answered with `action=INFO ratelimit ...` and an empty line.
 * Control requests on the policy socket (request=sift_ratelimit) are never
 * answered: any local process can reach that socket.
 *
 * Threading: the rules are built at init and read-only afterwards; the only
 * shared mutable state is the failure counter and the time of the last
 * failure log line (atomics). Per-request state lives on the stack.
 */
#include <stdarg.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sift/plugin.h"
#include "tool.h"

enum sel { S_CLIENT, S_SASL, S_SENDER, S_SENDER_DOMAIN, S_RCPT, S_RCPT_DOMAIN, S_GLOBAL, S_MAX };
static const char *const sel_names[S_MAX] = {"client_address", "sasl_username",	   "sender", "sender_domain",
					     "recipient",      "recipient_domain", "global"};

enum metric { M_MSG, M_RCPT, M_BYTES, M_MAX };
static const char *const metric_names[M_MAX] = {"messages", "recipients", "bytes"};
static const char metric_tag[M_MAX] = {'m', 'r', 'b'};

/* Ordered by strength: the strongest exceeded rule answers. */
enum action { A_LOG, A_HOLD, A_DEFER_IF_PERMIT, A_DEFER, A_REJECT };
static const char *const action_names[] = {"log", "hold", "defer_if_permit", "defer", "reject"};

enum prof_filter { PF_ANY, PF_INBOUND, PF_ORIGINATING };

#define MAX_SELS  4
#define MAX_RULES 64
#define MAX_VALUE 320

struct limit {
	long long max;	     /* 0 = no limit on this metric */
	long long window_ms; /* > 0 when max > 0 */
};

struct rule {
	char *name;
	enum sel sels[MAX_SELS];
	int nsels;
	bool per_rcpt; /* a selector is recipient or recipient_domain */
	struct limit lim[M_MAX];
	enum action action;
	char *text; /* NULL: the default text */
	const struct sift_map *exempt;
	int v4_prefix, v6_prefix;
	enum prof_filter profile;
	unsigned seen; /* settings given, by rule_settings index (parsing) */
};

struct rl_conf {
	/* parameters */
	const char *rules_spec;
	int store_failure; /* 0 dunno, 1 tempfail */
	long long ipv4_prefix, ipv6_prefix;
	const char *key_prefix;
	const char *rcpt_delim; /* Postfix's recipient_delimiter: a set, "" = off */
	int count;		/* no: check only, never increment */
	int control;
	const char *control_socket;
	const char *control_mode;
	const char *control_group;
	/* derived */
	struct rule *rules;
	size_t nrules;
	/* with control: the configuration attached before this one (under
	 * ctl_lock; see ctl_attach) */
	struct rl_conf *ctl_older;
};

static const struct sift_host *host;
static atomic_llong store_failures;
static atomic_llong last_failure_log; /* wall ms */
static atomic_llong over_limit_count;

#define OFF(f) offsetof(struct rl_conf, f)
static const struct sift_param params[] = {
	{"rules", SIFT_P_STRING, "", 0, 0, OFF(rules_spec), NULL,
	 "rate-limit rules: { name=N key=SEL[+SEL] messages=N/W recipients=N/W bytes=SIZE/W "
	 "action=A text=\"...\" exempt=MAP profile=P ipv4_prefix=N ipv6_prefix=N } ..."},
	{"store_failure", SIFT_P_ENUM, "dunno", 0, 0, OFF(store_failure), "dunno|tempfail",
	 "when the state store fails: dunno (fail open, logged and counted) or tempfail"},
	{"ipv4_prefix", SIFT_P_INT, "32", 8, 32, OFF(ipv4_prefix), NULL,
	 "default prefix length of client_address buckets for IPv4 clients"},
	{"ipv6_prefix", SIFT_P_INT, "64", 16, 128, OFF(ipv6_prefix), NULL,
	 "default prefix length of client_address buckets for IPv6 clients"},
	{"key_prefix", SIFT_P_STRING, "rl:", 0, 0, OFF(key_prefix), NULL,
	 "prefix of the counters' keys in the state store"},
	{"recipient_delimiter", SIFT_P_STRING, "", 0, 0, OFF(rcpt_delim), NULL,
	 "address extension delimiters, as Postfix's recipient_delimiter (a set of characters; empty: "
	 "none): sender and recipient buckets drop the extension (user+ext@ counts as user@)"},
	{"count", SIFT_P_BOOL, "yes", 0, 0, OFF(count), NULL,
	 "count accepted messages at their end (no: check only, for a daemon that shares its store with "
	 "another that counts, as policyd at RCPT with filterd)"},
	{"control", SIFT_P_BOOL, "no", 0, 0, OFF(control), NULL,
	 "answer siftctl ratelimit on ratelimit_control_socket (never on the policy socket)"},
	{"control_socket", SIFT_P_STRING, "/run/sift/ratelimit.sock", 0, 0, OFF(control_socket), NULL,
	 "unix socket for siftctl ratelimit (with ratelimit_control = yes)"},
	{"control_socket_mode", SIFT_P_STRING, "0660", 0, 0, OFF(control_mode), NULL,
	 "permissions of ratelimit_control_socket (octal)"},
	{"control_socket_group", SIFT_P_STRING, "", 0, 0, OFF(control_group), NULL,
	 "group of ratelimit_control_socket (empty: the daemon's)"},
	SIFT_PARAM_END,
};
#undef OFF

/* ---- rule parsing ------------------------------------------------------------ */

/* Parses "N/WINDOW" (N with k/m/g units for bytes; WINDOW a unit or a
 * number and a unit). */
static int parse_limit(const char *v, bool size_units, struct limit *l)
{
	const char *slash = strchr(v, '/');
	if (!slash || slash == v || !isdigit((unsigned char)*v))
		return -1;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (end == v || n <= 0 || errno == ERANGE)
		return -1;
	if (size_units && end < slash) {
		long long mult = 1;
		switch (tolower((unsigned char)*end)) {
		case 'k':
			mult = 1024LL;
			break;
		case 'm':
			mult = 1024LL * 1024;
			break;
		case 'g':
			mult = 1024LL * 1024 * 1024;
			break;
		default:
			return -1;
		}
		if (__builtin_mul_overflow(n, mult, &n))
			return -1;
		end++;
	}
	if (end != slash)
		return -1;
	const char *w = slash + 1;
	long long num = 1, unit = 1000;
	if (isdigit((unsigned char)*w)) {
		errno = 0;
		num = strtoll(w, &end, 10);
		if (errno == ERANGE)
			return -1;
		w = end;
	}
	if (strcmp(w, "s") == 0)
		unit = 1000;
	else if (strcmp(w, "ms") == 0)
		unit = 1;
	else if (strcmp(w, "m") == 0)
		unit = 60000;
	else if (strcmp(w, "h") == 0)
		unit = 3600000;
	else if (strcmp(w, "d") == 0)
		unit = 86400000;
	else if (strcmp(w, "w") == 0)
		unit = 7 * 86400000LL;
	else
		return -1; /* no unit ("10/", "10/5"): refused, not taken as seconds */
	if (num <= 0 || __builtin_mul_overflow(num, unit, &l->window_ms) || l->window_ms < 1000 ||
	    l->window_ms > 31LL * 86400000)
		return -1;
	l->max = n;
	return 0;
}

static bool valid_name(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return false;
	return true;
}

/* Reads one token: a bare word (braces nest, so inline:{ a=b } stays one
 * value) or a "quoted string". Returns a malloc'd string, NULL at '}' or the
 * end. */
static char *next_token(const char **pp, char **err_r)
{
	const char *p = *pp;
	while (*p && (isspace((unsigned char)*p) || *p == ','))
		p++;
	*pp = p;
	if (!*p || *p == '}')
		return NULL;
	size_t cap = strlen(p) + 1, n = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	int depth = 0;
	while (*p) {
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				out[n++] = *p++;
			}
			if (*p != '"') {
				*err_r = strdup("unterminated quoted string");
				free(out);
				return NULL;
			}
			p++;
			continue;
		}
		if (depth == 0 && (isspace((unsigned char)*p) || *p == '}' || *p == ','))
			break;
		if (*p == '{')
			depth++;
		else if (*p == '}')
			depth--;
		out[n++] = *p++;
	}
	out[n] = 0;
	*pp = p;
	return out;
}

static char *errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *errf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static void rule_free(struct rule *r)
{
	free(r->name);
	free(r->text);
}

static const char *const rule_settings[] = {"name",    "key",	      "messages",   "recipients",
					    "bytes",   "action",      "text",	    "exempt",
					    "profile", "ipv4_prefix", "ipv6_prefix"};

static int rule_option(struct rule *r, const char *name, const char *v, char **err_r)
{
	size_t si;
	for (si = 0; si < sizeof(rule_settings) / sizeof(rule_settings[0]); si++)
		if (strcmp(name, rule_settings[si]) == 0)
			break;
	if (si < sizeof(rule_settings) / sizeof(rule_settings[0])) {
		if (r->seen & (1u << si)) {
			*err_r = errf("%s= given twice%s", name, "");
			return -1;
		}
		r->seen |= 1u << si;
	}
	if (strcmp(name, "name") == 0) {
		if (!valid_name(v)) {
			*err_r = errf("bad rule name \"%s\"%s (letters, digits, _ - .)", v, "");
			return -1;
		}
		free(r->name);
		r->name = strdup(v);
	} else if (strcmp(name, "key") == 0) {
		char *copy = strdup(v), *save = NULL;
		r->nsels = 0;
		r->per_rcpt = false;
		for (char *t = strtok_r(copy, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
			int s;
			for (s = 0; s < S_MAX && strcmp(t, sel_names[s]) != 0; s++)
				;
			if (s == S_MAX || r->nsels == MAX_SELS) {
				*err_r = errf("bad key \"%s\" (%s)", v,
					      s == S_MAX ? "client_address, sasl_username, sender, "
							   "sender_domain, recipient, recipient_domain, "
							   "global"
							 : "at most 4 parts");
				free(copy);
				return -1;
			}
			r->sels[r->nsels++] = (enum sel)s;
			if (s == S_RCPT || s == S_RCPT_DOMAIN)
				r->per_rcpt = true;
		}
		free(copy);
		if (r->nsels == 0) {
			*err_r = strdup("empty key");
			return -1;
		}
	} else if (strcmp(name, "messages") == 0 || strcmp(name, "recipients") == 0 ||
		   strcmp(name, "bytes") == 0) {
		int m = name[0] == 'm' ? M_MSG : name[0] == 'r' ? M_RCPT : M_BYTES;
		if (parse_limit(v, m == M_BYTES, &r->lim[m]) < 0) {
			*err_r = errf("bad %s limit \"%s\" (want COUNT/WINDOW, e.g. 100/1h or 100/h; "
				      "units s m h d w, windows 1s..31d)",
				      name, v);
			return -1;
		}
	} else if (strcmp(name, "action") == 0) {
		size_t a;
		for (a = 0; a < sizeof(action_names) / sizeof(action_names[0]); a++)
			if (strcasecmp(v, action_names[a]) == 0)
				break;
		if (a == sizeof(action_names) / sizeof(action_names[0])) {
			*err_r = errf("bad action \"%s\"%s (defer_if_permit, defer, reject, hold, log)", v,
				      "");
			return -1;
		}
		r->action = (enum action)a;
	} else if (strcmp(name, "text") == 0) {
		for (const char *p = v; *p; p++)
			if ((unsigned char)*p < 0x20) {
				*err_r = strdup("control character in text");
				return -1;
			}
		free(r->text);
		r->text = strdup(v);
	} else if (strcmp(name, "exempt") == 0) {
		char *merr = NULL;
		r->exempt = host->map_open(v, &merr);
		if (!r->exempt) {
			*err_r = errf("exempt map %s: %s", v, merr ? merr : "cannot open");
			free(merr);
			return -1;
		}
	} else if (strcmp(name, "profile") == 0) {
		if (strcmp(v, "any") == 0)
			r->profile = PF_ANY;
		else if (strcmp(v, "inbound") == 0)
			r->profile = PF_INBOUND;
		else if (strcmp(v, "originating") == 0)
			r->profile = PF_ORIGINATING;
		else {
			*err_r = errf("bad profile \"%s\"%s (any, inbound, originating)", v, "");
			return -1;
		}
	} else if (strcmp(name, "ipv4_prefix") == 0 || strcmp(name, "ipv6_prefix") == 0) {
		char *end;
		long n = strtol(v, &end, 10);
		bool v6 = name[3] == '6';
		if (!*v || *end || n < (v6 ? 16 : 8) || n > (v6 ? 128 : 32)) {
			*err_r = errf("bad %s \"%s\"", name, v);
			return -1;
		}
		if (v6)
			r->v6_prefix = (int)n;
		else
			r->v4_prefix = (int)n;
	} else {
		*err_r = errf("unknown rule setting \"%s\"%s", name, "");
		return -1;
	}
	return 0;
}

static int parse_rules(struct rl_conf *c, char **err_r)
{
	const char *p = c->rules_spec;
	c->rules = calloc(MAX_RULES, sizeof(*c->rules));
	c->nrules = 0;
	if (!c->rules) {
		*err_r = strdup("out of memory");
		return -1;
	}
	for (;;) {
		while (*p && (isspace((unsigned char)*p) || *p == ','))
			p++;
		if (!*p)
			break;
		if (*p != '{') {
			*err_r = errf("ratelimit_rules: expected \"{\" at \"%.20s\"%s", p, "");
			return -1;
		}
		p++;
		if (c->nrules == MAX_RULES) {
			*err_r = strdup("ratelimit_rules: at most 64 rules");
			return -1;
		}
		struct rule *r = &c->rules[c->nrules++];
		r->v4_prefix = (int)c->ipv4_prefix;
		r->v6_prefix = (int)c->ipv6_prefix;
		r->action = A_DEFER_IF_PERMIT;
		char *tok, *terr = NULL;
		while ((tok = next_token(&p, &terr)) != NULL) {
			char *eq = strchr(tok, '=');
			char *oerr = NULL;
			if (!eq) {
				oerr = errf("setting without value: \"%s\"%s", tok, "");
			} else {
				*eq = 0;
				rule_option(r, tok, eq + 1, &oerr);
			}
			free(tok);
			if (oerr) {
				*err_r = errf("ratelimit_rules: rule %s: %s", r->name ? r->name : "(unnamed)",
					      oerr);
				free(oerr);
				return -1;
			}
		}
		if (terr) {
			*err_r = errf("ratelimit_rules: %s%s", terr, "");
			free(terr);
			return -1;
		}
		if (*p != '}') {
			*err_r = strdup("ratelimit_rules: missing \"}\"");
			return -1;
		}
		p++;
		char num[16];
		snprintf(num, sizeof(num), "%zu", c->nrules);
		if (!r->name) {
			*err_r = errf("ratelimit_rules: rule %s has no name=%s", num, "");
			return -1;
		}
		if (!r->nsels) {
			*err_r = errf("ratelimit_rules: rule %s has no key=%s", r->name, "");
			return -1;
		}
		if (!r->lim[M_MSG].max && !r->lim[M_RCPT].max && !r->lim[M_BYTES].max) {
			*err_r = errf("ratelimit_rules: rule %s has no messages=, recipients= or "
				      "bytes= limit%s",
				      r->name, "");
			return -1;
		}
		if (r->text) {
			/* The reply as answer() gives it: refused here, not
			 * replaced by the default reply at every message. */
			bool rej = r->action == A_REJECT;
			const char *why = host->reply_check(rej ? '5' : '4', rej ? "550" : "450",
							    rej ? "5.7.1" : "4.7.1", r->text);
			if (why) {
				*err_r = errf("ratelimit_rules: rule %s: text=: %s", r->name, why);
				return -1;
			}
		}
		for (size_t i = 0; i + 1 < c->nrules; i++)
			if (strcmp(c->rules[i].name, r->name) == 0) {
				*err_r = errf("ratelimit_rules: rule name %s used twice%s", r->name, "");
				return -1;
			}
	}
	return 0;
}

static void ctl_detach(struct rl_conf *c);
static int ctl_attach(struct rl_conf *c, char **err_r);
static int ctl_bind_early(const struct rl_conf *c, char **err_r);

static void rl_release(void *conf)
{
	struct rl_conf *c = conf;
	ctl_detach(c);
	for (size_t i = 0; i < c->nrules; i++)
		rule_free(&c->rules[i]);
	free(c->rules);
	c->rules = NULL;
}

/* As root, before the daemon drops its privileges: the control socket is
 * bound here, like the daemons' own sockets, so that it can live in a
 * directory the daemon user cannot write (/run/sift). */
static int rl_preinit(const struct sift_host *h, void *conf, char **err_r)
{
	host = h;
	const struct rl_conf *c = conf;
	return c->control ? ctl_bind_early(c, err_r) : 0;
}

static int rl_init(const struct sift_host *h, void *conf, char **err_r)
{
	host = h;
	struct rl_conf *c = conf;
	if (parse_rules(c, err_r) < 0) {
		rl_release(c);
		return -1;
	}
	if (strlen(c->key_prefix) > 64) {
		*err_r = strdup("ratelimit_key_prefix: at most 64 characters");
		rl_release(c);
		return -1;
	}
	if (c->control && ctl_attach(c, err_r) < 0) {
		rl_release(c);
		return -1;
	}
	return 0;
}

/* ---- buckets -------------------------------------------------------------------- */

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The client address masked to prefix bits, "192.0.2.0/24", in out[n];
 * false when it does not parse (out[n] then holds as much of the address
 * as fits; the whole address is its own bucket). */
static bool client_bucket(const char *addr, int v4p, int v6p, char *out, size_t n)
{
	unsigned char a[16];
	const char *s = addr;
	if (strncasecmp(s, "::ffff:", 7) == 0 && strchr(s + 7, '.'))
		s += 7;
	if (inet_pton(AF_INET, s, a) == 1) {
		if (v4p >= 32) {
			snprintf(out, n, "%s", s);
			return true;
		}
		uint32_t x = ((uint32_t)a[0] << 24) | ((uint32_t)a[1] << 16) | ((uint32_t)a[2] << 8) | a[3];
		x &= v4p ? ~((1u << (32 - v4p)) - 1) : 0;
		snprintf(out, n, "%u.%u.%u.%u/%d", x >> 24, (x >> 16) & 255, (x >> 8) & 255, x & 255, v4p);
		return true;
	}
	if (inet_pton(AF_INET6, s, a) == 1) {
		for (int i = 0; i < 16; i++) {
			int bits = v6p - i * 8;
			if (bits <= 0)
				a[i] = 0;
			else if (bits < 8)
				a[i] &= (unsigned char)(0xff << (8 - bits));
		}
		char t[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, a, t, sizeof(t));
		if (v6p >= 128)
			snprintf(out, n, "%s", t);
		else
			snprintf(out, n, "%s/%d", t, v6p);
		return true;
	}
	snprintf(out, n, "%s", addr);
	return false;
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : NULL;
}

/* Raw value of one selector (rcpt: the recipient in question). NULL when
 * it does not apply (not authenticated, null sender ...). */
static const char *sel_raw(struct sift_ctx *ctx, enum sel s, const char *rcpt)
{
	const char *v;
	switch (s) {
	case S_CLIENT:
		return host->get(ctx, SIFT_I_CLIENT_ADDR);
	case S_SASL:
		return host->get(ctx, SIFT_I_SASL_USERNAME);
	case S_SENDER:
		v = host->get(ctx, SIFT_I_SENDER);
		return v && *v ? v : NULL;
	case S_SENDER_DOMAIN:
		v = host->get(ctx, SIFT_I_SENDER);
		return v && *v ? domain_of(v) : NULL;
	case S_RCPT:
		return rcpt && *rcpt ? rcpt : NULL;
	case S_RCPT_DOMAIN:
		return rcpt && *rcpt ? domain_of(rcpt) : NULL;
	case S_GLOBAL:
		return "*";
	default:
		return NULL;
	}
}

/* The bucket value v[len] as it is stored: itself when it fits in out[n]
 * (and in MAX_VALUE * 2 bytes), else "sha256:" and the SHA-256 of v in
 * hex. false when the digest fails. */
static bool value_finish(const char *v, size_t len, char *out, size_t n)
{
	if (len < n && len < MAX_VALUE * 2) {
		memcpy(out, v, len);
		out[len] = 0;
		return true;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (n < sizeof("sha256:") + 64 || EVP_Digest(v, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		return false;
	size_t o = (size_t)snprintf(out, n, "sha256:");
	for (unsigned int k = 0; k < mdlen; k++)
		o += (size_t)snprintf(out + o, n - o, "%02x", md[k]);
	return true;
}

/* One part of a bucket value as it is counted, appended to v at *len:
 * lowercased (but a SASL login); domains without a trailing dot; sender
 * and recipient addresses without their extension when delimiters are
 * set (Postfix's recipient_delimiter: the local part up to the first
 * delimiter, unless the local part begins with one). */
static void add_part(const struct rl_conf *c, enum sel s, const char *p, char *v, size_t *len)
{
	size_t l = strlen(p), o = *len;
	const char *at = s == S_SENDER || s == S_RCPT ? strrchr(p, '@') : NULL;
	size_t cut = 0, cutlen = 0; /* the extension, [cut, cut + cutlen) */
	if (at && c->rcpt_delim && *c->rcpt_delim) {
		size_t local = (size_t)(at - p), d = strcspn(p, c->rcpt_delim);
		if (d > 0 && d < local) {
			cut = d;
			cutlen = local - d;
		}
	}
	if ((s == S_SENDER_DOMAIN || s == S_RCPT_DOMAIN || at) && l > 1 && p[l - 1] == '.' &&
	    (!at || at + 1 < p + l - 1))
		l--;
	for (size_t k = 0; k < l; k++) {
		if (cutlen && k == cut) {
			k += cutlen - 1;
			continue;
		}
		v[o++] = s == S_SASL ? p[k] : (char)tolower((unsigned char)p[k]);
	}
	v[o] = 0;
	*len = o;
}

/* The bucket value of rule r from its parts (raw values, one per
 * selector), as counted: see add_part() and value_finish(). */
static bool build_value(const struct rl_conf *c, const struct rule *r, const char *const *parts, char *out,
			size_t n)
{
	size_t total = 1;
	for (int i = 0; i < r->nsels; i++)
		total += strlen(parts[i]) + 1;
	char *v = malloc(total);
	if (!v)
		return false;
	size_t len = 0;
	v[0] = 0;
	for (int i = 0; i < r->nsels; i++) {
		if (i)
			v[len++] = '|';
		add_part(c, r->sels[i], parts[i], v, &len);
	}
	bool ok = value_finish(v, len, out, n);
	free(v);
	return ok;
}

/* Builds the bucket value of a rule: parts joined with '|' (see
 * build_value()). Returns false when the rule does not apply or is
 * exempt. */
static bool bucket_value(struct sift_ctx *ctx, const struct rule *r, const char *rcpt, char *out, size_t n,
			 bool *exempt_r, bool *err_r)
{
	const char *raws[MAX_SELS];
	char cb[MAX_SELS][INET6_ADDRSTRLEN + 16];
	out[0] = 0;
	for (int i = 0; i < r->nsels; i++) {
		const char *raw = sel_raw(ctx, r->sels[i], rcpt);
		if (!raw || !*raw)
			return false;
		if (r->exempt && r->sels[i] != S_GLOBAL) {
			char *res = NULL;
			int lr = host->map_lookup(r->exempt, raw, &res);
			if (lr < 0)
				*err_r = true;
			bool hit = lr > 0 && strcasecmp(res, "DUNNO") != 0 && strcasecmp(res, "no") != 0;
			free(res);
			if (hit) {
				*exempt_r = true;
				return false;
			}
		}
		if (r->sels[i] == S_CLIENT &&
		    client_bucket(raw, r->v4_prefix, r->v6_prefix, cb[i], sizeof(cb[i])))
			raw = cb[i];
		raws[i] = raw;
	}
	if (!build_value(host->conf(ctx), r, raws, out, n)) {
		*err_r = true;
		return false;
	}
	return true;
}

static void counter_key(const struct rl_conf *c, const struct rule *r, int m, long long idx,
			const char *value, char *out, size_t n)
{
	snprintf(out, n, "%s%s:%c:%lld:%lld:%s", c->key_prefix, r->name, metric_tag[m],
		 r->lim[m].window_ms / 1000, idx, value);
}

static void store_failed(struct sift_ctx *ctx, const char *what)
{
	long long n = atomic_fetch_add(&store_failures, 1) + 1;
	long long now = wall_ms(), last = atomic_load(&last_failure_log);
	if (now - last >= 10000 && atomic_compare_exchange_strong(&last_failure_log, &last, now))
		host->log(ctx, LOG_WARNING, "state store error (%s); %lld store failures so far", what, n);
}

/* Reads one integer counter: 0 ok, 1 missing (*v_r = 0), -1 error. */
static int read_counter(const char *key, long long *v_r)
{
	char *val = NULL;
	int rc = host->kv_get(key, &val);
	if (rc == 1) {
		*v_r = 0;
		return 1;
	}
	if (rc < 0)
		return -1;
	char *end;
	*v_r = strtoll(val, &end, 10);
	int ok = *val && !*end;
	free(val);
	if (*v_r < 0) /* see repair_counter */
		*v_r = 0;
	return ok ? 0 : -1;
}

/* A counter below zero holds a take-back (rollback) that landed after its
 * key had gone: expired, or evicted by a full store (memory: max_keys,
 * Redis maxmemory). It would let that many messages too many through, so
 * it is read as 0 and brought back to 0 by whoever sees it: *v is the
 * value an increment returned, set to what it is after the repair. */
static void repair_counter(const char *key, long long *v, long ttl)
{
	long long fixed;
	if (*v >= 0)
		return;
	if (host->kv_incr(key, -*v, ttl, &fixed) < 0)
		store_failed(NULL, "repair");
	else
		*v = fixed < 0 ? 0 : fixed;
}

/* Take-backs the store could not be sent (down, or stalled: a connection
 * to it cannot even be set up), kept for later: a message a store failure
 * deferred must not stay counted, or its retry counts it a second time.
 * Sent before the next check or count (flush_pending); one whose counter
 * has expired meanwhile is dropped. At most PENDING_MAX (the oldest go). */
#define PENDING_MAX 10000
struct pending {
	char *key;
	long long delta, expires; /* expires: wall ms */
	long ttl;
};
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pending *pending;
static size_t npending, cappending;
static atomic_size_t npending_hint; /* npending, read without the lock */

static void pending_add(const char *key, long long delta, long ttl)
{
	pthread_mutex_lock(&pending_lock);
	if (npending == PENDING_MAX) {
		free(pending[0].key);
		memmove(pending, pending + 1, --npending * sizeof(*pending));
	}
	if (npending == cappending) {
		size_t cap = cappending ? 2 * cappending : 16;
		struct pending *n = realloc(pending, cap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&pending_lock);
			return;
		}
		pending = n;
		cappending = cap;
	}
	char *k = strdup(key);
	if (k) {
		pending[npending++] = (struct pending){k, delta, wall_ms() + ttl, ttl};
		atomic_store(&npending_hint, npending);
	}
	pthread_mutex_unlock(&pending_lock);
}

/* Takes delta back from key, now or, when the store cannot be reached,
 * later. A take-back sent without an answer (-2) may still land: it is not
 * sent again. */
static void take_back(const char *key, long long delta, long ttl)
{
	long long v;
	int rc = host->kv_incr(key, -delta, ttl, &v);
	if (rc == 0) {
		repair_counter(key, &v, ttl);
		return;
	}
	store_failed(NULL, "rollback");
	if (rc != -2)
		pending_add(key, delta, ttl);
}

static void flush_pending(void)
{
	if (!atomic_load(&npending_hint))
		return;
	pthread_mutex_lock(&pending_lock);
	struct pending *list = pending;
	size_t n = npending;
	pending = NULL;
	npending = cappending = 0;
	atomic_store(&npending_hint, 0);
	pthread_mutex_unlock(&pending_lock);
	long long now = wall_ms();
	for (size_t i = 0; i < n; i++) {
		if (list[i].expires > now)
			take_back(list[i].key, list[i].delta, list[i].ttl);
		free(list[i].key);
	}
	free(list);
}

/* The estimate over the sliding window given the current count. */
static double estimate(long long prev, long long cur, long long now, long long window)
{
	double f = (double)(now % window) / (double)window;
	return (double)prev * (1.0 - f) + (double)cur;
}

/* ---- decisions -------------------------------------------------------------- */

struct over {
	const struct rule *rule;
	int metric;
	char value[MAX_VALUE * 2];
	double est;
};

/* One increment of END-OF-MESSAGE, to take back if the message is
 * refused. A message makes one per rule, recipient (of the per-recipient
 * rules) and limited metric: the list grows as needed (up to the host's
 * cap on recipients), its memory the message's. */
struct incr_rec {
	const char *key;
	long long delta;
	long ttl;
};

#define KEY_MAX (MAX_VALUE * 2 + 128)

/* filterd: the increments of a message counted at its end, taken back in
 * msg_end unless the MTA took the message (a later plugin of the chain
 * refused it, or it was answered with a temporary failure). */
struct rl_msg {
	struct incr_rec *recs;
	size_t nrecs;
};

static bool profile_applies(struct sift_ctx *ctx, const struct rule *r)
{
	if (r->profile == PF_ANY)
		return true;
	const char *p = host->get(ctx, SIFT_I_PROFILE);
	bool orig = p && strcmp(p, "originating") == 0;
	return r->profile == PF_ORIGINATING ? orig : !orig;
}

static void note_over(struct over *best, bool *have, const struct rule *r, int m, const char *value,
		      double est)
{
	if (*have && best->rule->action >= r->action)
		return;
	best->rule = r;
	best->metric = m;
	snprintf(best->value, sizeof(best->value), "%s", value);
	best->est = est;
	*have = true;
}

static void format_window(long long ms, char *out, size_t n)
{
	if (ms % 86400000 == 0)
		snprintf(out, n, "%lldd", ms / 86400000);
	else if (ms % 3600000 == 0)
		snprintf(out, n, "%lldh", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(out, n, "%lldm", ms / 60000);
	else
		snprintf(out, n, "%llds", ms / 1000);
}

static enum sift_verdict answer(struct sift_ctx *ctx, const struct over *o, const char *stage)
{
	const struct rule *r = o->rule;
	char win[32], text[768];
	format_window(r->lim[o->metric].window_ms, win, sizeof(win));
	if (r->text)
		snprintf(text, sizeof(text), "%s", r->text);
	else
		snprintf(text, sizeof(text), "Rate limit exceeded: %lld %s per %s", r->lim[o->metric].max,
			 metric_names[o->metric], win);
	atomic_fetch_add(&over_limit_count, 1);
	host->log(ctx, LOG_NOTICE, "rule %s: %s %s over %lld %s per %s (%.1f) at %s; action=%s", r->name,
		  "key", o->value, r->lim[o->metric].max, metric_names[o->metric], win, o->est, stage,
		  action_names[r->action]);
	char buf[800];
	switch (r->action) {
	case A_REJECT:
		host->reply(ctx, "550", "5.7.1", text);
		return SIFT_REJECT;
	case A_DEFER:
		host->reply(ctx, "450", "4.7.1", text);
		return SIFT_TEMPFAIL;
	case A_DEFER_IF_PERMIT:
		if (!host->get(ctx, SIFT_I_PROTOCOL_STATE)) { /* filterd: no later verdict to wait for */
			host->reply(ctx, "450", "4.7.1", text);
			return SIFT_TEMPFAIL;
		}
		snprintf(buf, sizeof(buf), "DEFER_IF_PERMIT 4.7.1 %s", text);
		host->policy_action(ctx, buf);
		return SIFT_DUNNO;
	case A_HOLD:
		host->hold(ctx, text);
		return SIFT_HOLD;
	case A_LOG:
	default:
		return SIFT_DUNNO;
	}
}

static enum sift_verdict failure_verdict(struct sift_ctx *ctx, const struct rl_conf *c)
{
	if (c->store_failure == 1) {
		host->reply(ctx, "451", "4.3.0", "Rate limit state unavailable, try again later");
		return SIFT_TEMPFAIL;
	}
	return SIFT_DUNNO;
}

static long long attr_ll(struct sift_ctx *ctx, enum sift_item it)
{
	const char *v = host->get(ctx, it);
	if (!v)
		return 0;
	char *end;
	long long x = strtoll(v, &end, 10);
	return (*end || x < 0) ? 0 : x;
}

/* The stages a rule is evaluated at. */
enum stage { ST_RCPT, ST_DATA, ST_EOM };

/* The recipients of the message at a stage, in a malloc'd array (*n_r
 * entries; NULL with 0). At RCPT: those accepted so far and the current
 * one (policyd keeps it in the list while the chain runs, filterd adds it
 * after: counted once either way). At DATA and END-OF-MESSAGE: the list,
 * or the request's recipient when there is none. */
static const char **msg_rcpts(struct sift_ctx *ctx, enum stage st, size_t *n_r)
{
	size_t n = host->rcpt_count(ctx);
	const char *cur = host->get(ctx, SIFT_I_RCPT);
	if (cur && !*cur)
		cur = NULL;
	bool add = false;
	if (st == ST_RCPT)
		add = cur && !(host->get(ctx, SIFT_I_PROTOCOL_STATE) && n > 0 &&
			       strcmp(host->rcpt(ctx, n - 1), cur) == 0);
	else
		add = n == 0 && cur;
	*n_r = 0;
	if (!n && !add)
		return NULL;
	const char **v = malloc((n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const char *x = host->rcpt(ctx, i);
		if (x && *x)
			v[k++] = x;
	}
	if (add)
		v[k++] = cur;
	*n_r = k;
	return v;
}

/* One bucket of a rule for one message: its value and the number of the
 * message's recipients in it. A message counts once in every bucket it
 * touches (messages, bytes); its recipients count in the bucket of each. */
struct bucket {
	char value[MAX_VALUE * 2];
	long long nrcpt;
};

static int bucket_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bucket *)a)->value, ((const struct bucket *)b)->value);
}

/* The distinct buckets of rule r for a message with recipients rcpts[n]
 * (nrcpt recipients for the rules without a recipient part), in a
 * malloc'd array; returns their number (0: the rule does not apply), -1
 * when out of memory. *merr_r is set when an exemption map failed. */
static long rule_groups(struct sift_ctx *ctx, const struct rule *r, const char *const *rcpts, size_t n,
			long long nrcpt, struct bucket **g_r, bool *merr_r)
{
	*g_r = NULL;
	size_t cap = r->per_rcpt ? n : 1;
	if (!cap)
		return 0;
	struct bucket *g = malloc(cap * sizeof(*g));
	if (!g)
		return -1;
	size_t k = 0;
	for (size_t i = 0; i < cap; i++) {
		bool exempt = false;
		if (!bucket_value(ctx, r, r->per_rcpt ? rcpts[i] : NULL, g[k].value, sizeof(g[k].value),
				  &exempt, merr_r))
			continue;
		g[k++].nrcpt = r->per_rcpt ? 1 : nrcpt;
	}
	if (k > 1) {
		qsort(g, k, sizeof(*g), bucket_cmp);
		size_t o = 0;
		for (size_t i = 1; i < k; i++) {
			if (strcmp(g[o].value, g[i].value) == 0)
				g[o].nrcpt += g[i].nrcpt;
			else
				g[++o] = g[i];
		}
		k = o + 1;
	}
	if (!k) {
		free(g);
		return 0;
	}
	*g_r = g;
	return (long)k;
}

/* RCPT / DATA: would this message go over? No counting. */
/* How many of the recipients rcpts[n] fall in bucket `value` of the
 * per-recipient rule r (as rule_groups counts them). */
static long long rcpts_in_bucket(struct sift_ctx *ctx, const struct rule *r, const char *const *rcpts,
				 size_t n, const char *value, bool *merr_r)
{
	long long k = 0;
	char v[MAX_VALUE * 2];
	for (size_t i = 0; i < n; i++) {
		bool exempt = false;
		if (bucket_value(ctx, r, rcpts[i], v, sizeof(v), &exempt, merr_r) && strcmp(v, value) == 0)
			k++;
	}
	return k;
}

static enum sift_verdict check(struct sift_ctx *ctx, const struct rl_conf *c, bool at_rcpt)
{
	flush_pending();
	long long now = wall_ms();
	long long size = attr_ll(ctx, SIFT_I_SIZE);
	size_t nlist = 0;
	const char **rcpts = msg_rcpts(ctx, at_rcpt ? ST_RCPT : ST_DATA, &nlist);
	/* At RCPT the recipients so far with the current one, whether or
	 * not the daemon has put it in the list yet (filterd adds it after
	 * the chain, policyd before). */
	long long nrcpt = at_rcpt ? (long long)nlist : attr_ll(ctx, SIFT_I_RCPT_COUNT);
	if (nrcpt <= 0)
		nrcpt = nlist ? (long long)nlist : 1;
	const char *cur_rcpt = host->get(ctx, SIFT_I_RCPT);
	struct over best;
	bool have = false, failed = false;
	for (size_t i = 0; i < c->nrules; i++) {
		const struct rule *r = &c->rules[i];
		if (!profile_applies(ctx, r))
			continue;
		/* Per-recipient rules: at RCPT the current recipient's bucket
		 * (with the recipients of the message already in it); at DATA
		 * every bucket of the transaction. */
		const char *only = NULL;
		char curval[MAX_VALUE * 2];
		bool exempt = false, merr = false;
		if (r->per_rcpt && at_rcpt) {
			if (!cur_rcpt || !*cur_rcpt ||
			    !bucket_value(ctx, r, cur_rcpt, curval, sizeof(curval), &exempt, &merr)) {
				if (merr)
					failed = true;
				continue;
			}
			only = curval;
		}
		struct bucket *g = NULL, one;
		long ng;
		if (only) {
			/* the current recipient's bucket alone, with the
			 * message's recipients in it (one pass, nothing
			 * sorted: RCPT comes once per recipient) */
			snprintf(one.value, sizeof(one.value), "%s", only);
			one.nrcpt =
				r->lim[M_RCPT].max ? rcpts_in_bucket(ctx, r, rcpts, nlist, only, &merr) : 1;
			g = &one;
			ng = one.nrcpt > 0 ? 1 : 0;
		} else {
			ng = rule_groups(ctx, r, rcpts, nlist, nrcpt, &g, &merr);
		}
		if (merr)
			failed = true;
		if (ng < 0) {
			failed = true;
			continue;
		}
		for (long gi = 0; gi < ng; gi++) {
			if (only && strcmp(g[gi].value, only) != 0)
				continue;
			for (int m = 0; m < M_MAX; m++) {
				if (!r->lim[m].max)
					continue;
				long long need = m == M_MSG ? 1 : m == M_RCPT ? g[gi].nrcpt : size;
				long long w = r->lim[m].window_ms, idx = now / w;
				char k1[KEY_MAX], k0[KEY_MAX];
				counter_key(c, r, m, idx, g[gi].value, k1, sizeof(k1));
				counter_key(c, r, m, idx - 1, g[gi].value, k0, sizeof(k0));
				long long cur, prev;
				if (read_counter(k1, &cur) < 0 || read_counter(k0, &prev) < 0) {
					store_failed(ctx, "read");
					failed = true;
					continue;
				}
				double est = estimate(prev, cur, now, w);
				if (est + (double)need > (double)r->lim[m].max + 1e-9)
					note_over(&best, &have, r, m, g[gi].value, est);
			}
		}
		if (g != &one)
			free(g);
	}
	free(rcpts);
	if (have)
		return answer(ctx, &best, at_rcpt ? "RCPT" : "DATA");
	if (failed)
		return failure_verdict(ctx, c);
	return SIFT_DUNNO;
}

static void rollback(struct incr_rec *recs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		take_back(recs[i].key, recs[i].delta, recs[i].ttl);
}

/* The message's size: policyd's size attribute; in filterd the header
 * section (as "Name: value" lines with CRLF) and the body. */
static long long msg_size(struct sift_ctx *ctx)
{
	if (host->get(ctx, SIFT_I_PROTOCOL_STATE))
		return attr_ll(ctx, SIFT_I_SIZE);
	long long n = host->body_size(ctx) + 2;
	for (size_t i = 0, k = host->header_count(ctx); i < k; i++) {
		const struct sift_header *h = host->header(ctx, i);
		if (h)
			n += (long long)(strlen(h->name) + strlen(h->value) + 4);
	}
	return n;
}

/* The counts of a message that goes on through the chain, for rl_msg_end:
 * a later plugin may still refuse it (filterd's chain, or a plugin after
 * this one in policyd's END-OF-MESSAGE answer). recs is message memory. */
static void keep_counted(struct sift_ctx *ctx, struct incr_rec *recs, size_t nrecs)
{
	struct rl_msg *m = host->msg(ctx);
	if (!m)
		return;
	m->recs = recs;
	m->nrecs = nrecs;
}

/* END-OF-MESSAGE: count, and refuse (taking the counts back) when over. */
static enum sift_verdict count(struct sift_ctx *ctx, const struct rl_conf *c)
{
	flush_pending();
	long long now = wall_ms();
	long long size = msg_size(ctx);
	size_t nlist = 0;
	const char **rcpts = msg_rcpts(ctx, ST_EOM, &nlist);
	long long nrcpt = attr_ll(ctx, SIFT_I_RCPT_COUNT);
	/* policyd: Postfix may have refused recipients after this plugin
	 * passed them (reject_unlisted_recipient after check_policy_service).
	 * When its recipient_count differs from the recipients tracked, the
	 * one recipient it names (recipient_count = 1) is the message's;
	 * otherwise which recipients stayed is unknown and the per-recipient
	 * rules do not count this message (the others count its messages,
	 * bytes and Postfix's recipient_count). */
	bool unmatched = false;
	if (nrcpt > 0 && (size_t)nrcpt != nlist) {
		const char *cur = host->get(ctx, SIFT_I_RCPT);
		const char **one = nrcpt == 1 && cur && *cur ? realloc(rcpts, sizeof(*rcpts)) : NULL;
		if (one) {
			rcpts = one;
			rcpts[0] = cur;
			nlist = 1;
		} else {
			unmatched = true;
			if (nlist) /* none: not asked at RCPT, nothing to say */
				host->log(
					ctx, LOG_INFO,
					"recipient_count=%lld but %zu recipients passed at RCPT: "
					"per-recipient rules not counted for this message "
					"(reject_unlisted_recipient before check_policy_service avoids this)",
					nrcpt, nlist);
		}
	}
	if (nrcpt <= 0)
		nrcpt = nlist ? (long long)nlist : 1;
	struct incr_rec *recs = NULL;
	size_t nrecs = 0, caprecs = 0;
	struct over best;
	bool have = false, failed = false;
	for (size_t i = 0; i < c->nrules && !failed; i++) {
		const struct rule *r = &c->rules[i];
		if (!profile_applies(ctx, r) || (r->per_rcpt && unmatched))
			continue;
		struct bucket *g = NULL;
		bool merr = false;
		long ng = rule_groups(ctx, r, rcpts, nlist, nrcpt, &g, &merr);
		for (long gi = 0; gi < ng && !failed; gi++) {
			const char *value = g[gi].value;
			for (int m = 0; m < M_MAX && !failed; m++) {
				if (!r->lim[m].max)
					continue;
				long long delta = m == M_MSG ? 1 : m == M_RCPT ? g[gi].nrcpt : size;
				if (delta <= 0)
					continue;
				if (nrecs == caprecs) {
					caprecs = caprecs ? 2 * caprecs : 64;
					struct incr_rec *n = host->msg_alloc(ctx, caprecs * sizeof(*n));
					if (nrecs)
						memcpy(n, recs, nrecs * sizeof(*n));
					recs = n;
				}
				long long w = r->lim[m].window_ms, idx = now / w;
				struct incr_rec *rec = &recs[nrecs];
				char key[KEY_MAX], k0[KEY_MAX];
				counter_key(c, r, m, idx, value, key, sizeof(key));
				counter_key(c, r, m, idx - 1, value, k0, sizeof(k0));
				size_t kl = strlen(key) + 1;
				rec->key = memcpy(host->msg_alloc(ctx, kl), key, kl);
				rec->delta = delta;
				rec->ttl = (long)(2 * w + 60000);
				long long cur, prev;
				int irc = host->kv_incr(rec->key, delta, rec->ttl, &cur);
				if (irc < 0) {
					store_failed(ctx, "increment");
					/* sent, unanswered (a timeout): it may have
					 * counted, so it is taken back with the others
					 * when the message is not accepted */
					if (irc == -2)
						nrecs++;
					failed = true;
					break;
				}
				nrecs++;
				long long fixed;
				if (cur < delta) { /* it held less than 0: see repair_counter */
					if (host->kv_incr(rec->key, delta - cur, rec->ttl, &fixed) < 0)
						store_failed(ctx, "repair");
					else
						cur = fixed;
				}
				if (read_counter(k0, &prev) < 0) {
					store_failed(ctx, "read");
					failed = true;
					break;
				}
				double est = estimate(prev, cur, now, w);
				if (est > (double)r->lim[m].max + 1e-9)
					note_over(&best, &have, r, m, value, est);
			}
		}
		free(g);
	}
	free(rcpts);
	/* a store failure after a rule found the message over its limit:
	 * the limit is answered, as check() does (store_failure = dunno must
	 * not let through what is known to be over) */
	if (failed && !have) {
		enum sift_verdict v = failure_verdict(ctx, c);
		if (v != SIFT_DUNNO)
			rollback(recs, nrecs);
		else
			keep_counted(ctx, recs, nrecs);
		return v;
	}
	if (!have) {
		keep_counted(ctx, recs, nrecs);
		return SIFT_DUNNO;
	}
	/* Mail that is not accepted leaves no trace in the counters. */
	if (best.rule->action >= A_DEFER_IF_PERMIT)
		rollback(recs, nrecs);
	else
		keep_counted(ctx, recs, nrecs);
	return answer(ctx, &best, "END-OF-MESSAGE");
}

/* How the message ended (filterd: the MTA's answer; policyd: its
 * END-OF-MESSAGE action) decides whether its counts stand. */
static void rl_msg_end(struct sift_ctx *ctx)
{
	struct rl_msg *m = host->msg(ctx);
	if (!m || !m->nrecs)
		return;
	if (host->struct_size < offsetof(struct sift_host, msg_outcome) + sizeof(host->msg_outcome))
		return;
	if (host->msg_outcome(ctx) != SIFT_DUNNO)
		rollback(m->recs, m->nrecs);
}

/* ---- control requests ------------------------------------------------------- */

/* A growing string for the control answers (the host's string buffer is
 * not part of the plugin interface). On allocation failure it keeps what
 * it had and sets oom. */
struct strbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct strbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int w = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (w < 0) {
			b->oom = true;
			return;
		}
		if (b->s && (size_t)w < b->cap - b->len) {
			b->len += (size_t)w;
			return;
		}
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + (size_t)w + 1)
			cap *= 2;
		char *n = realloc(b->s, cap);
		if (!n) {
			b->oom = true;
			return;
		}
		if (!b->s)
			n[0] = 0;
		b->s = n;
		b->cap = cap;
	}
}

/* The answer to one control request, "INFO ratelimit ...", in out. */
static void control_answer(const struct rl_conf *c, const char *cmd, const char *key, struct strbuf *out)
{
#define OUT(...) sb_printf(out, __VA_ARGS__)
	if (!c) {
		OUT("INFO ratelimit: control requests are disabled (ratelimit_control = no)");
		return;
	}
	if (cmd && strcmp(cmd, "stats") == 0) {
		OUT("INFO ratelimit: rules=%zu store_failures=%lld over_limit=%lld", c->nrules,
		    (long long)atomic_load(&store_failures), (long long)atomic_load(&over_limit_count));
		return;
	}
	if (!cmd || !key || !*key || (strcmp(cmd, "show") != 0 && strcmp(cmd, "reset") != 0)) {
		OUT("INFO ratelimit: usage: command=show|reset|stats key=[RULE:]VALUE");
		return;
	}
	/* RULE:VALUE when RULE names a rule; otherwise VALUE for all rules. */
	const char *value = key;
	const struct rule *only = NULL;
	const char *colon = strchr(key, ':');
	if (colon) {
		for (size_t i = 0; i < c->nrules; i++)
			if (strlen(c->rules[i].name) == (size_t)(colon - key) &&
			    strncmp(c->rules[i].name, key, (size_t)(colon - key)) == 0) {
				only = &c->rules[i];
				value = colon + 1;
			}
	}
	char lv[MAX_VALUE * 2];
	long long now = wall_ms();
	bool reset = strcmp(cmd, "reset") == 0, any = false, found = false;
	size_t vlen = strlen(value);
	char *v = malloc(vlen + 1);
	if (!v) {
		OUT("INFO ratelimit: out of memory");
		return;
	}
	OUT("INFO ratelimit");
	for (size_t i = 0; i < c->nrules; i++) {
		const struct rule *r = &c->rules[i];
		if (only && r != only)
			continue;
		/* The value as bucket_value() builds it from the parts of a
		 * combined key, separated by '|'. */
		memcpy(v, value, vlen + 1);
		const char *parts[MAX_SELS];
		char *part = v;
		for (int si = 0; si < r->nsels; si++) {
			parts[si] = part;
			char *bar = si + 1 < r->nsels ? strchr(part, '|') : NULL;
			if (bar) {
				*bar = 0;
				part = bar + 1;
			} else {
				part += strlen(part);
			}
		}
		if (!build_value(c, r, parts, lv, sizeof(lv))) {
			OUT(" ; %s: out of memory", r->name);
			continue;
		}
		for (int m = 0; m < M_MAX; m++) {
			if (!r->lim[m].max)
				continue;
			long long w = r->lim[m].window_ms, idx = now / w, cur = 0, prev = 0;
			char k1[KEY_MAX], k0[KEY_MAX], win[32];
			counter_key(c, r, m, idx, lv, k1, sizeof(k1));
			counter_key(c, r, m, idx - 1, lv, k0, sizeof(k0));
			format_window(w, win, sizeof(win));
			if (reset) {
				int a = host->kv_del(k1), b = host->kv_del(k0);
				if (a < 0 || b < 0) {
					OUT(" ; %s %s: store error", r->name, metric_names[m]);
					continue;
				}
				any = true;
				if (a == 0 || b == 0) {
					OUT(" ; %s %s %s: reset", r->name, metric_names[m], lv);
					found = true;
				}
				continue;
			}
			int a = read_counter(k1, &cur), b = a < 0 ? -1 : read_counter(k0, &prev);
			if (a < 0 || b < 0) {
				OUT(" ; %s %s: store error", r->name, metric_names[m]);
				continue;
			}
			if (a == 0 || b == 0)
				found = true;
			OUT(" ; %s %s %s: current=%lld previous=%lld estimate=%.1f limit=%lld/%s", r->name,
			    metric_names[m], lv, cur, prev, estimate(prev, cur, now, w), r->lim[m].max, win);
			any = true;
		}
	}
	free(v);
	if (any && !found)
		OUT(" ; not found: no counter for \"%s\"", key);
	if (!any)
		OUT(" ; no rule matches \"%s\"", key);
#undef OUT
}

/*
 * The control socket: bound once per process by the first generation with
 * ratelimit_control = yes, served by one thread for the life of the
 * process (the plugin pins itself in memory so that a reload that drops it
 * cannot unmap the thread's code). Each generation's init makes its
 * configuration the one answered; its release withdraws it.
 */
#define CTL_REQ_MAX	 4096
#define CTL_IO_TIMEOUT_S 5

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
/* The configurations with control on, newest first (linked by
 * ctl_older), under ctl_lock: the control socket answers for the newest.
 * A reload that fails after this plugin's init releases the newest, and
 * the one still in use answers again. */
static struct rl_conf *ctl_conf;
static int ctl_fd = -1;
static char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static dev_t ctl_dev;
static ino_t ctl_ino;

static void ctl_serve(int fd)
{
	struct timeval tv = {.tv_sec = CTL_IO_TIMEOUT_S};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char req[CTL_REQ_MAX + 1];
	size_t len = 0;
	for (;;) {
		if (len == CTL_REQ_MAX)
			return; /* too long: closed without an answer */
		ssize_t r = read(fd, req + len, CTL_REQ_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		len += (size_t)r;
		req[len] = 0;
		if (strstr(req, "\n\n"))
			break;
	}
	const char *cmd = NULL, *key = NULL;
	for (char *line = req, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		*nl = 0;
		if (nl > line && nl[-1] == '\r')
			nl[-1] = 0;
		if (!*line)
			break;
		if (strncmp(line, "command=", 8) == 0 && !cmd)
			cmd = line + 8;
		else if (strncmp(line, "key=", 4) == 0 && !key)
			key = line + 4;
	}
	struct strbuf out = {0};
	sb_printf(&out, "action=");
	pthread_mutex_lock(&ctl_lock);
	control_answer(ctl_conf, cmd, key, &out);
	pthread_mutex_unlock(&ctl_lock);
	if (out.oom) {
		free(out.s);
		out = (struct strbuf){0};
		sb_printf(&out, "action=INFO ratelimit: out of memory");
	}
	for (char *p = out.s; p && *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	sb_printf(&out, "\n\n");
	for (size_t off = 0; !out.oom && off < out.len;) {
		ssize_t w = write(fd, out.s + off, out.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	free(out.s);
}

static void *ctl_thread(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED) {
				host->log(NULL, LOG_ERR, "control socket %s: accept: %s", ctl_path,
					  strerror(errno));
				sleep(1);
			}
			continue;
		}
		ctl_serve(fd);
		close(fd);
	}
	return NULL;
}

static void ctl_unlink(void)
{
	struct stat st;
	if (ctl_fd >= 0 && lstat(ctl_path, &st) == 0 && st.st_dev == ctl_dev && st.st_ino == ctl_ino)
		unlink(ctl_path);
}

/* Binds the control socket and starts its thread. 1 when another process
 * serves the path already (siftctl check, -t while the daemon runs): nothing
 * is done. */
static int ctl_open(const struct rl_conf *c, char **err_r)
{
	const char *path = c->control_socket;
	char *end;
	long mode = strtol(c->control_mode, &end, 8);
	if (!*c->control_mode || *end || mode < 0 || mode > 0777) {
		*err_r = strdup("ratelimit_control_socket_mode: an octal mode such as 0660 expected");
		return -1;
	}
	gid_t gid = (gid_t)-1;
	if (*c->control_group) {
		struct group *gr = getgrnam(c->control_group);
		if (!gr) {
			char b[300];
			snprintf(b, sizeof(b), "ratelimit_control_socket_group: unknown group \"%.200s\"",
				 c->control_group);
			*err_r = strdup(b);
			return -1;
		}
		gid = gr->gr_gid;
	}
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (path[0] != '/' || strlen(path) >= sizeof(sun.sun_path)) {
		*err_r = strdup("ratelimit_control_socket: an absolute path of at most 107 bytes expected");
		return -1;
	}
	strcpy(sun.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			char b[300];
			snprintf(b, sizeof(b), "ratelimit_control_socket: %.200s exists and is not a socket",
				 path);
			*err_r = strdup(b);
			return -1;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0;
		if (probe >= 0)
			close(probe);
		if (live)
			return 1;
		unlink(path); /* stale, from a process that is gone */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char b[400];
	if (fd < 0)
		goto fail;
	/* Born with its mode (the umask around bind(); this runs in preinit,
	 * at start, before the daemon has other threads), and the group set
	 * through the socket itself: nothing by path, which root would follow
	 * through a symlink the daemon's user (who may own the directory, as
	 * /run/sift) put in the socket's place since bind(). */
	mode_t old = umask(~(mode_t)mode & 0777);
	int br = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (br < 0 || listen(fd, 16) < 0)
		goto fail;
	int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC), e = 0;
	if (pfd < 0 || fstat(pfd, &st) < 0)
		e = errno;
	else if (!S_ISSOCK(st.st_mode))
		e = ELOOP; /* replaced since bind(): not ours to change */
	else if (gid != (gid_t)-1 && fchownat(pfd, "", (uid_t)-1, gid, AT_EMPTY_PATH) < 0)
		e = errno;
	if (pfd >= 0)
		close(pfd);
	if (e) {
		unlink(path);
		errno = e;
		goto fail;
	}
	/* Pin the plugin: the thread outlives any generation. */
	Dl_info di;
	if (dladdr((void *)ctl_thread, &di) && di.dli_fname)
		(void)dlopen(di.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
	ctl_fd = fd;
	snprintf(ctl_path, sizeof(ctl_path), "%s", path);
	ctl_dev = st.st_dev;
	ctl_ino = st.st_ino;
	/* The thread takes no signals: the daemons handle them in their own
	 * threads. */
	sigset_t all, prev;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &prev);
	pthread_t t;
	int tr = pthread_create(&t, NULL, ctl_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &prev, NULL);
	if (tr != 0) {
		ctl_unlink();
		close(fd);
		ctl_fd = -1;
		errno = tr;
		fd = -1;
		goto fail;
	}
	pthread_detach(t);
	atexit(ctl_unlink);
	host->log(NULL, LOG_INFO, "control socket %s (mode %04lo%s%s)", path, mode,
		  gid != (gid_t)-1 ? ", group " : "", gid != (gid_t)-1 ? c->control_group : "");
	return 0;
fail:
	snprintf(b, sizeof(b), "ratelimit_control_socket %.200s: %s", path, strerror(errno));
	*err_r = strdup(b);
	if (fd >= 0)
		close(fd);
	return -1;
}

static int ctl_attach(struct rl_conf *c, char **err_r)
{
	int rc = 0;
	pthread_mutex_lock(&ctl_lock);
	if (ctl_fd < 0)
		rc = ctl_open(c, err_r);
	else if (strcmp(ctl_path, c->control_socket) != 0)
		host->log(NULL, LOG_WARNING, "ratelimit_control_socket: still %s (a restart moves it to %s)",
			  ctl_path, c->control_socket);
	if (rc >= 0) {
		c->ctl_older = ctl_conf;
		ctl_conf = c;
	}
	pthread_mutex_unlock(&ctl_lock);
	return rc < 0 ? -1 : 0;
}

static int ctl_bind_early(const struct rl_conf *c, char **err_r)
{
	int rc = 0;
	pthread_mutex_lock(&ctl_lock);
	if (ctl_fd < 0)
		rc = ctl_open(c, err_r);
	pthread_mutex_unlock(&ctl_lock);
	return rc < 0 ? -1 : 0;
}

static void ctl_detach(struct rl_conf *c)
{
	pthread_mutex_lock(&ctl_lock);
	for (struct rl_conf **pp = &ctl_conf; *pp; pp = &(*pp)->ctl_older)
		if (*pp == c) {
			*pp = c->ctl_older;
			break;
		}
	c->ctl_older = NULL;
	pthread_mutex_unlock(&ctl_lock);
}

/* ---- the hook ----------------------------------------------------------------- */

static enum sift_verdict rl_policy(struct sift_ctx *ctx)
{
	const struct rl_conf *c = host->conf(ctx);
	const char *req = host->macro(ctx, "request");
	if (req && strcmp(req, "sift_ratelimit") == 0) {
		/* Anyone who reaches the policy socket could send this. */
		host->log(ctx, LOG_WARNING,
			  "control request on the policy socket refused "
			  "(siftctl ratelimit uses ratelimit_control_socket)");
		return SIFT_DUNNO;
	}
	if (!c->nrules)
		return SIFT_DUNNO;
	const char *state = host->get(ctx, SIFT_I_PROTOCOL_STATE);
	if (!state)
		return SIFT_DUNNO;
	if (strcmp(state, "RCPT") == 0)
		return check(ctx, c, true);
	if (strcmp(state, "DATA") == 0)
		return check(ctx, c, false);
	if (strcmp(state, "END-OF-MESSAGE") == 0)
		return c->count ? count(ctx, c) : SIFT_DUNNO;
	return SIFT_DUNNO;
}

/* filterd: check at RCPT, count at the end of the message. */
static enum sift_verdict rl_rcpt(struct sift_ctx *ctx)
{
	const struct rl_conf *c = host->conf(ctx);
	return c->nrules ? check(ctx, c, true) : SIFT_DUNNO;
}

static enum sift_verdict rl_eom(struct sift_ctx *ctx)
{
	const struct rl_conf *c = host->conf(ctx);
	return c->nrules && c->count ? count(ctx, c) : SIFT_DUNNO;
}

int rl_conf_control(const void *conf)
{
	return ((const struct rl_conf *)conf)->control;
}

const char *rl_conf_control_socket(const void *conf)
{
	return ((const struct rl_conf *)conf)->control_socket;
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "ratelimit",
	.description = "message, recipient and byte rate limits (sliding window, shared store)",
	.daemons = SIFT_D_POLICYD | SIFT_D_FILTERD,
	.actions = SIFT_A_QUARANTINE,
	.params = params,
	.conf_size = sizeof(struct rl_conf),
	.msg_size = sizeof(struct rl_msg),
	.preinit = rl_preinit,
	.init = rl_init,
	.release = rl_release,
	.rcpt = rl_rcpt,
	.eom = rl_eom,
	.msg_end = rl_msg_end,
	.policy = rl_policy,
	.tools = rl_tools,
};
