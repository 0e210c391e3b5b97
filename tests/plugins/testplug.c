/*
 * testplug.c - a plugin for the tests: returns a configured verdict at a
 * configured phase, adds a symbol and a header, changes one, and records
 * what it saw, so that the host's merging, error mapping and edits can be
 * checked through filterd, policyd and siftctl alike.
 *
 * Stall point (the fault tests): with testplug_stall_phase and
 * testplug_stall_file set, the first call at that phase that finds the
 * file removes it, logs "stalled at phase P" and sleeps testplug_stall_time,
 * so that a test can kill the daemon at a known milter or policy stage.
 * Only the call that removed the file stalls: one stall per file created.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "sift/plugin.h"

struct tp_conf {
	int phase;   /* index into the phase names below */
	int verdict; /* enum sift_verdict */
	const char *reply;
	const char *symbol;
	const char *header;
	int always_run;
	const char *dns_txt;
	const char *uid_file;
	long long init_delay;
	const char *init_fail;
	int stall_phase; /* 0: none, else SIFT_PH_* + 1 */
	const char *stall_file;
	long long stall_time;
	const char *change;
	const char *protocol_state;
};

static const struct sift_host *host;
#define OFF(f) offsetof(struct tp_conf, f)
static const struct sift_param params[] = {
	{"phase", SIFT_P_ENUM, "eom", 0, 0, OFF(phase),
	 "connect|helo|mail|rcpt|data|header|eoh|body|eom|policy", "phase at which to return the verdict"},
	{"verdict", SIFT_P_ENUM, "dunno", 0, 0, OFF(verdict),
	 "dunno|accept|reject|tempfail|discard|hold|error", "verdict to return"},
	{"reply", SIFT_P_STRING, "", 0, 0, OFF(reply), NULL, "reply \"CODE XCODE text\""},
	{"symbol", SIFT_P_STRING, "", 0, 0, OFF(symbol), NULL, "symbol NAME:SCORE to add at eom/policy"},
	{"header", SIFT_P_STRING, "", 0, 0, OFF(header), NULL, "header NAME: VALUE to add at eom"},
	{"change", SIFT_P_STRING, "", 0, 0, OFF(change), NULL,
	 "header NAME: VALUE: the first header NAME changed to VALUE at eom"},
	{"dns_txt", SIFT_P_STRING, "", 0, 0, OFF(dns_txt), NULL,
	 "name whose TXT record is looked up at eom and added as X-Testplug-DNS"},
	{"uid_file", SIFT_P_STRING, "", 0, 0, OFF(uid_file), NULL,
	 "file opened by preinit (before the privilege drop) where preinit and init append their euid"},
	{"init_delay", SIFT_P_TIME, "0", 0, 60000, OFF(init_delay), NULL,
	 "time init takes (ms), before it records its euid"},
	{"init_fail", SIFT_P_STRING, "", 0, 0, OFF(init_fail), NULL,
	 "init fails with this message (a generation that a later plugin refuses)"},
	{"stall_phase", SIFT_P_ENUM, "none", 0, 0, OFF(stall_phase),
	 "none|connect|helo|mail|rcpt|data|header|eoh|body|eom|policy",
	 "phase at which a call stalls when stall_file exists"},
	{"stall_file", SIFT_P_STRING, "", 0, 0, OFF(stall_file), NULL,
	 "file whose existence arms the stall (removed by the call that stalls)"},
	{"stall_time", SIFT_P_TIME, "30s", 0, 600000, OFF(stall_time), NULL, "how long a stall lasts (ms)"},
	{"protocol_state", SIFT_P_STRING, "", 0, 0, OFF(protocol_state), NULL,
	 "policy: the verdict only for requests of this protocol_state (empty: every request)"},
	SIFT_PARAM_END,
};

/* uid_file: opened once, by preinit (as root, before the drop), and kept
 * for the process's life, as a plugin keeps a root-only key. */
static int uid_fd = -1;

static void record_uid(const char *what)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%s euid=%u egid=%u\n", what, (unsigned)geteuid(),
			 (unsigned)getegid());
	if (uid_fd >= 0 && write(uid_fd, line, (size_t)n) != n)
		host->log(NULL, LOG_ERR, "uid_file: write failed");
}

static int tp_preinit(const struct sift_host *h, void *conf, char **err_r)
{
	const struct tp_conf *c = conf;
	host = h;
	if (*c->uid_file && uid_fd < 0) {
		uid_fd = open(c->uid_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (uid_fd < 0) {
			*err_r = strdup("testplug_uid_file: cannot open");
			return -1;
		}
	}
	record_uid("preinit");
	return 0;
}

static int tp_init(const struct sift_host *h, void *conf, char **err_r)
{
	const struct tp_conf *c = conf;
	host = h;
	if (c->init_delay > 0)
		usleep((useconds_t)(c->init_delay * 1000));
	record_uid("init");
	if (*c->init_fail) {
		*err_r = strdup(c->init_fail);
		return -1;
	}
	return 0;
}

static void maybe_stall(struct sift_ctx *ctx, const struct tp_conf *c, int phase)
{
	if (c->stall_phase != phase + 1 || !*c->stall_file || unlink(c->stall_file) < 0)
		return;
	host->log(ctx, LOG_INFO, "stalled at phase %d", phase);
	for (long long left = c->stall_time; left > 0; left -= 10)
		usleep(10000);
}

static enum sift_verdict at(struct sift_ctx *ctx, int phase)
{
	const struct tp_conf *c = host->conf(ctx);
	maybe_stall(ctx, c, phase);
	if (phase == SIFT_PH_EOM || phase == SIFT_PH_POLICY) {
		if (*c->symbol) {
			char name[64];
			double score = 0;
			if (sscanf(c->symbol, "%63[^:]:%lf", name, &score) >= 1)
				host->symbol(ctx, name, score, NULL);
		}
		if (*c->dns_txt && phase == SIFT_PH_EOM) {
			struct sift_dns_result *r = host->dns_query(c->dns_txt, 16, 0);
			if (!r || r->status == SIFT_DNS_TEMPFAIL) {
				free(r);
				return SIFT_ERROR; /* no answer: tempfail, never a guess */
			}
			const char *txt =
				r->status == SIFT_DNS_OK && r->count ? (const char *)r->rr[0] : "none";
			host->header_add(ctx, "X-Testplug-DNS", txt);
			free(r);
		}
		if (*c->header && phase == SIFT_PH_EOM) {
			const char *colon = strchr(c->header, ':');
			if (colon) {
				char *n = strndup(c->header, (size_t)(colon - c->header));
				host->header_add(ctx, n, colon + 2);
				free(n);
			}
		}
		if (*c->change && phase == SIFT_PH_EOM) {
			const char *colon = strchr(c->change, ':');
			if (colon) {
				char *n = strndup(c->change, (size_t)(colon - c->change));
				host->header_change(ctx, n, 1, colon + 2);
				free(n);
			}
		}
	}
	if (phase != c->phase)
		return SIFT_DUNNO;
	const char *state = host->get(ctx, SIFT_I_PROTOCOL_STATE);
	if (phase == SIFT_PH_POLICY && *c->protocol_state &&
	    (!state || strcmp(state, c->protocol_state) != 0))
		return SIFT_DUNNO;
	if (*c->reply) {
		char code[4] = "", xcode[16] = "";
		int off = 0;
		if (sscanf(c->reply, "%3s %15s %n", code, xcode, &off) >= 2)
			host->reply(ctx, code, xcode, c->reply + off);
	}
	if (c->verdict == SIFT_HOLD)
		host->hold(ctx, "testplug hold");
	host->log(ctx, LOG_INFO, "verdict %d at phase %d", c->verdict, phase);
	return (enum sift_verdict)c->verdict;
}

#define HOOK(n, ph)                                           \
	static enum sift_verdict tp_##n(struct sift_ctx *ctx) \
	{                                                     \
		return at(ctx, ph);                           \
	}
HOOK(connect, SIFT_PH_CONNECT)
HOOK(helo, SIFT_PH_HELO)
HOOK(mail, SIFT_PH_MAIL)
HOOK(rcpt, SIFT_PH_RCPT)
HOOK(eoh, SIFT_PH_EOH)
HOOK(eom, SIFT_PH_EOM)
HOOK(policy, SIFT_PH_POLICY)

/* Every call logs its verdict ("verdict N at phase P"), so a test sees
 * how often the header and body hooks ran. */
static enum sift_verdict tp_header(struct sift_ctx *ctx, const struct sift_header *h)
{
	(void)h;
	return at(ctx, SIFT_PH_HEADER);
}

static enum sift_verdict tp_body(struct sift_ctx *ctx, const unsigned char *buf, size_t len)
{
	(void)buf;
	(void)len;
	return at(ctx, SIFT_PH_BODY);
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "testplug",
	.description = "test plugin",
	.daemons = SIFT_D_FILTERD | SIFT_D_POLICYD,
	.actions = SIFT_A_ADDHDRS | SIFT_A_CHGHDRS | SIFT_A_QUARANTINE,
	.params = params,
	.conf_size = sizeof(struct tp_conf),
	.preinit = tp_preinit,
	.init = tp_init,
	.connect = tp_connect,
	.helo = tp_helo,
	.mail = tp_mail,
	.rcpt = tp_rcpt,
	.header = tp_header,
	.eoh = tp_eoh,
	.body = tp_body,
	.eom = tp_eom,
	.policy = tp_policy,
};
