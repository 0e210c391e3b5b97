/*
 * test_host.c - the plugin host: loading checks (ABI, file mode), profile
 * choice, verdict merging (first final verdict wins, ACCEPT whitelists,
 * ERROR maps through <plugin>_error_action, RCPT rejects stay per
 * recipient), results (symbols, edits, replies, policy actions, once per
 * transaction for policy_action_once) and
 * generations (reference counts survive a swap).
 */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static char plugdir[256];

static struct sift_gen *gen(const char *text)
{
	struct sift_config *cfg = sift_config_new();
	sift_config_common_defaults(cfg);
	char *err = NULL;
	char *pd = sift_asprintf("plugin_directory=%s", plugdir);
	CHECK(sift_config_set(cfg, pd, "test", &err) == 0);
	free(pd);
	char *copy = sift_strdup(text), *save = NULL;
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (sift_config_set(cfg, l, "test", &err) < 0) {
			fprintf(stderr, "config: %s\n", err);
			free(err);
			err = NULL;
		}
	free(copy);
	struct sift_gen *g = sift_gen_new(SIFT_FILTERD, cfg, &err);
	if (!g) {
		fprintf(stderr, "gen: %s\n", err);
		free(err);
		sift_config_free(cfg);
	}
	return g;
}

static void link_plugin(const char *build, const char *rel, const char *name)
{
	char *src = sift_asprintf("%s/%s", build, rel);
	char *dst = sift_asprintf("%s/%s", plugdir, name);
	CHECK(symlink(src, dst) == 0);
	free(src);
	free(dst);
}

/* sift_path_trusted and the loader check every directory on the way, not
 * only the last one: whoever can change one of them can swap what is
 * below. */
static void trust_err(const char *path, unsigned flags, const char *want)
{
	char *err = NULL;
	int rc = sift_path_trusted("plugin_directory", path, flags, 0, &err);
	CHECK(rc < 0);
	if (rc < 0 && (!err || !strstr(err, want)))
		fprintf(stderr, "%s: got \"%s\", want \"%s\"\n", path, err ? err : "(null)", want);
	CHECK(err && strstr(err, want));
	free(err);
}

static void trust_ok(const char *path, unsigned flags)
{
	char *err = NULL;
	int rc = sift_path_trusted("plugin_directory", path, flags, 0, &err);
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", path, err);
	CHECK(rc == 0 && !err);
	free(err);
}

static void trust_tests(const char *build)
{
	const unsigned D = SIFT_TRUST_DIR | SIFT_TRUST_OWNER;
	char base[] = "/tmp/sift-test-trust-XXXXXX";
	CHECK(mkdtemp(base) != NULL);
	char *cmd = sift_asprintf(
		"set -e; cd %s; mkdir -m 0755 good ww ww/plugins st st/good; chmod 0777 ww; "
		"chmod 1777 st; cp %s/tests/testplug.so good/; cp good/testplug.so ww/plugins/; "
		"ln -s good ln-rel; ln -s %s/good ln-abs; ln -s ln-rel ln-ln; ln -s loop loop",
		base, build, base);
	CHECK(system(cmd) == 0);
	free(cmd);
	char *p;
#define TP(...) (free(p), p = sift_asprintf(__VA_ARGS__))
	p = sift_asprintf("%s/good", base);

	/* a root-owned directory under /tmp (sticky, root's): accepted, and
	 * so are root's symbolic links to it, relative, absolute, chained;
	 * a loop is cut at 40 links */
	trust_ok(p, D);
	TP("%s/st/good", base);
	trust_ok(p, D);
	TP("%s/ln-rel", base);
	trust_ok(p, D);
	TP("%s/ln-abs/", base);
	trust_ok(p, D);
	TP("%s/ln-ln/testplug.so", base);
	trust_ok(p, SIFT_TRUST_OWNER);
	TP("%s/good/../good/./testplug.so", base);
	trust_ok(p, SIFT_TRUST_OWNER);
	TP("%s/loop", base);
	trust_err(p, D, "more than 40 symbolic links");

	/* the parent world-writable, not sticky: refused, naming the parent
	 * and the fix, for the directory and for a plugin in it */
	TP("%s/ww/plugins", base);
	char *want =
		sift_asprintf("plugin_directory %s/ww/plugins: refusing the directory %s/ww on its path, "
			      "writable by group or others (mode 0777); fix it with chmod go-w %s/ww",
			      base, base, base);
	trust_err(p, D, want);
	free(want);
	TP("%s/ww/plugins/testplug.so", base);
	char *err = NULL;
	CHECK(sift_plugin_load(p, &err) == NULL);
	CHECK(err && strstr(err, "refusing the directory") && strstr(err, "/ww on its path"));
	free(err);
	err = NULL;
	/* a plugin straight in a sticky directory (its own directory): refused */
	TP("%s/st/testplug.so", base);
	cmd = sift_asprintf("cp %s/good/testplug.so %s", base, p);
	CHECK(system(cmd) == 0);
	free(cmd);
	CHECK(sift_plugin_load(p, &err) == NULL);
	CHECK(err && strstr(err, "/st on its path, writable by group or others (mode 1777)"));
	free(err);
	err = NULL;

	/* another user's link or directory in a sticky directory: they may
	 * flip it at will; refused */
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() == 0 && pw) {
		uid_t nobody = pw->pw_uid;
		TP("%s/st/plugins", base);
		char *target = sift_asprintf("%s/good", base);
		CHECK(symlink(target, p) == 0 && lchown(p, nobody, (gid_t)-1) == 0);
		free(target);
		want = sift_asprintf(
			"plugin_directory %s: refusing a symbolic link owned by uid %u (nobody), not "
			"by root; fix it with chown -h root %s",
			p, (unsigned)nobody, p);
		trust_err(p, D, want);
		free(want);
		TP("%s/st/plugins/testplug.so", base);
		CHECK(sift_plugin_load(p, &err) == NULL);
		CHECK(err && strstr(err, "/st/plugins on its path, owned by uid") &&
		      strstr(err, "refusing the symbolic link"));
		free(err);
		err = NULL;
		/* the same link as root's: accepted */
		TP("%s/st/plugins", base);
		CHECK(lchown(p, 0, (gid_t)-1) == 0);
		trust_ok(p, D);
		/* a directory of nobody's above a root-owned plugin directory */
		TP("%s/st/evil", base);
		CHECK(mkdir(p, 0755) == 0);
		TP("%s/st/evil/plugins", base);
		CHECK(mkdir(p, 0755) == 0);
		TP("%s/st/evil", base);
		CHECK(chown(p, nobody, (gid_t)-1) == 0);
		TP("%s/st/evil/plugins", base);
		want = sift_asprintf(
			"refusing the directory %s/st/evil on its path, owned by uid %u (nobody), "
			"not by root; fix it with chown root %s/st/evil",
			base, (unsigned)nobody, base);
		trust_err(p, D, want);
		free(want);
		/* ... unless nobody is the user we run as */
		char *err2 = NULL;
		CHECK(sift_path_trusted("plugin_directory", p, D, nobody, &err2) == 0);
		free(err2);
		/* a root-owned link to it in a sticky directory: its target
		 * is walked by the same rules */
		TP("%s/st/ln-evil", base);
		target = sift_asprintf("%s/st/evil/plugins", base);
		CHECK(symlink(target, p) == 0);
		free(target);
		trust_err(p, D, "/st/evil on its path, owned by uid");
	}
	free(p);
#undef TP
	cmd = sift_asprintf("rm -rf %s", base);
	CHECK(system(cmd) == 0);
	free(cmd);
}

int main(void)
{
	const char *build = getenv("SIFT_BUILDDIR");
	if (!build) {
		fprintf(stderr, "SIFT_BUILDDIR not set\n");
		return 1;
	}
	sift_log_init("test_host", true, LOG_ERR);
	snprintf(plugdir, sizeof(plugdir), "/tmp/sift-test-host-XXXXXX");
	CHECK(mkdtemp(plugdir) != NULL);
	link_plugin(build, "tests/testplug.so", "testplug.so");
	link_plugin(build, "tests/badabi.so", "badabi.so");
	link_plugin(build, "plugins/access.so", "access.so");

	char *err = NULL;
	/* Loader checks. */
	char *p = sift_asprintf("%s/badabi.so", plugdir);
	CHECK(sift_plugin_load(p, &err) == NULL);
	CHECK(err && strstr(err, "ABI"));
	free(err);
	err = NULL;
	free(p);
	char *copy = sift_asprintf("%s/writable.so", plugdir);
	char *cmd = sift_asprintf("cp %s/tests/testplug.so %s && chmod 666 %s", build, copy, copy);
	CHECK(system(cmd) == 0);
	CHECK(sift_plugin_load(copy, &err) == NULL);
	CHECK(err && strstr(err, "writable by group or others"));
	free(err);
	err = NULL;
	free(cmd);
	free(copy);
	/* two plugins loaded one after the other are two objects (each is
	 * loaded through a descriptor of the file checked) */
	p = sift_asprintf("%s/testplug.so", plugdir);
	const struct sift_plugin *p1 = sift_plugin_load(p, &err);
	free(p);
	p = sift_asprintf("%s/access.so", plugdir);
	const struct sift_plugin *p2 = sift_plugin_load(p, &err);
	free(p);
	CHECK(p1 && p2 && p1 != p2);
	CHECK_STR(p1 ? p1->name : NULL, "testplug");
	CHECK_STR(p2 ? p2->name : NULL, "access");
	free(err);
	err = NULL;
	p = sift_asprintf("%s/missing.so", plugdir);
	CHECK(sift_plugin_load(p, &err) == NULL);
	free(err);
	err = NULL;
	free(p);
	trust_tests(build);
	CHECK(gen("inbound_plugins = nosuchplugin") == NULL);
	CHECK(gen("inbound_plugins = testplug testplug") == NULL);
	CHECK(gen("inbound_plugins = testplug\ntestplug_verdict = nonsense") == NULL);

	/* A whole message with testplug adding a symbol and a header. */
	struct sift_gen *g = gen("inbound_plugins = testplug\ntestplug_symbol = T_SYM:2.5\n"
				 "testplug_header = X-T: yes\noriginating_plugins =\n");
	CHECK(g != NULL);
	if (!g)
		return t_done();
	CHECK(sift_gen_plugin_count(g) == 1);
	CHECK(sift_gen_actions(g) & SIFT_A_ADDHDRS);
	CHECK(sift_gen_phases(g) & (1u << SIFT_PH_EOM));
	CHECK(sift_gen_phases(g) & (1u << SIFT_PH_BODY));
	CHECK(!(sift_gen_phases(g) & (1u << SIFT_PH_DATA))); /* no data hook */
	struct sift_ctx *ctx = sift_ctx_new(g, SIFT_FILTERD);
	sift_ctx_set(ctx, SIFT_I_CLIENT_ADDR, "192.0.2.1");
	CHECK(sift_ctx_choose_profile(ctx) == SIFT_INBOUND);
	CHECK(sift_run(ctx, SIFT_PH_CONNECT) == SIFT_DUNNO);
	sift_ctx_msg_begin(ctx);
	sift_ctx_set(ctx, SIFT_I_SENDER, "a@example.org");
	CHECK(sift_run(ctx, SIFT_PH_MAIL) == SIFT_DUNNO);
	CHECK(sift_run_header(ctx, "Subject", " hi") == SIFT_DUNNO);
	CHECK(sift_run_body(ctx, "body\r\n", 6) == SIFT_DUNNO);
	CHECK(sift_run(ctx, SIFT_PH_EOM) == SIFT_DUNNO);
	const struct sift_result *r = sift_ctx_result(ctx);
	CHECK(r->symbols && strcmp(r->symbols->name, "T_SYM") == 0);
	CHECK(r->score > 2.49 && r->score < 2.51);
	CHECK(r->edits && r->edits->op == SIFT_EDIT_ADD && strcmp(r->edits->name, "X-T") == 0);
	CHECK_STR(r->edits ? r->edits->value : NULL, "yes");
	CHECK_INT(sift_msg_header_count(sift_ctx_msg(ctx)), 1);
	CHECK_INT(sift_msg_body_size(sift_ctx_msg(ctx)), 6);
	/* the message as received through the plugins' reader, and the MIME
	 * view over the same body */
	const struct sift_host *hh = &sift_host_table;
	char whole[64];
	CHECK_INT(hh->message_size(ctx), 21);
	CHECK_INT(hh->message_read(ctx, 0, whole, sizeof(whole)), 21);
	CHECK(memcmp(whole, "Subject: hi\r\n\r\nbody\r\n", 21) == 0);
	CHECK_INT(hh->message_read(ctx, 21, whole, sizeof(whole)), 0);
	const struct sift_mime *mm = hh->mime(ctx);
	CHECK(mm && mm->body_len == 6 && memcmp(mm->body, "body\r\n", 6) == 0 && !mm->body_truncated);
	/* host->auth_result: one Authentication-Results per authserv-id (the
	 * id compared case-insensitively), results appended in order; an
	 * authserv-id with white space or ';' is refused */
	hh->auth_result(ctx, "mx.test", "spf=pass smtp.mailfrom=a@example.org");
	hh->auth_result(ctx, "other.test", "dkim=none");
	hh->auth_result(ctx, "MX.test", "dkim=pass header.d=example.org");
	hh->auth_result(ctx, "bad id", "dmarc=none");
	hh->auth_result(ctx, "mx.test", "dmarc=pass header.from=example.org");
	const struct sift_edit *ar[3] = {NULL, NULL, NULL};
	size_t nar = 0;
	for (const struct sift_edit *e = sift_ctx_result(ctx)->edits; e; e = e->next)
		if (strcmp(e->name, "Authentication-Results") == 0 && nar < 3)
			ar[nar++] = e;
	CHECK_INT(nar, 2);
	CHECK(ar[0] && ar[0]->op == SIFT_EDIT_INSERT && ar[0]->idx == 0);
	CHECK_STR(ar[0] ? ar[0]->value : NULL,
		  "mx.test; spf=pass smtp.mailfrom=a@example.org;\r\n\t"
		  "dkim=pass header.d=example.org;\r\n\tdmarc=pass header.from=example.org");
	CHECK_STR(ar[1] ? ar[1]->value : NULL, "other.test; dkim=none");
	/* host->auth_result_get: the results so far, without the id */
	CHECK_STR(hh->auth_result_get(ctx, "MX.TEST"),
		  "spf=pass smtp.mailfrom=a@example.org;\r\n\t"
		  "dkim=pass header.d=example.org;\r\n\tdmarc=pass header.from=example.org");
	CHECK_STR(hh->auth_result_get(ctx, "other.test"), "dkim=none");
	CHECK(hh->auth_result_get(ctx, "mx") == NULL && hh->auth_result_get(ctx, "none.test") == NULL);
	char *sum = sift_ctx_summary(ctx, "accept");
	CHECK(strstr(sum, "action=accept, profile=inbound, from=<a@example.org>, rcpts=0, score=2.5, "
			  "symbols=T_SYM(2.5)") != NULL);
	free(sum);
	sift_ctx_msg_end(ctx, false);
	CHECK(sift_ctx_result(ctx)->symbols == NULL);
	CHECK_INT(hh->message_size(ctx), -1); /* outside a message */
	CHECK_INT(hh->message_read(ctx, 0, whole, sizeof(whole)), -1);
	CHECK(sift_host_table.get(ctx, SIFT_I_SENDER) == NULL);
	/* The profile follows SASL and the daemon name. */
	sift_ctx_set(ctx, SIFT_I_SASL_USERNAME, "alice");
	CHECK(sift_ctx_choose_profile(ctx) == SIFT_ORIGINATING);
	CHECK_STR(sift_host_table.get(ctx, SIFT_I_PROFILE), "originating");
	sift_ctx_set(ctx, SIFT_I_SASL_USERNAME, NULL);
	sift_ctx_set(ctx, SIFT_I_DAEMON_NAME, "ORIGINATING");
	CHECK(sift_ctx_choose_profile(ctx) == SIFT_ORIGINATING);
	/* Generations: the context keeps its own after a swap (set_current
	 * takes over a reference). */
	sift_gen_ref(g);
	sift_gen_set_current(g);
	struct sift_gen *g2 = gen("inbound_plugins =\n");
	CHECK(g2 != NULL);
	sift_gen_set_current(g2);
	CHECK(sift_ctx_gen(ctx) == g);
	CHECK(sift_gen_plugin_count(sift_ctx_gen(ctx)) == 1);
	sift_ctx_free(ctx);

	/* ERROR → error_action (default tempfail with 451). */
	static const char *const error_cases[][2] = {{"", "tempfail"},
						     {"testplug_error_action = reject", "reject"},
						     {"testplug_error_action = accept", "accept"},
						     {"testplug_error_action = dunno", "dunno"}};
	for (size_t i = 0; i < 4; i++) {
		char *text = sift_asprintf("inbound_plugins = testplug\ntestplug_phase = mail\n"
					   "testplug_verdict = error\n%s\n",
					   error_cases[i][0]);
		struct sift_gen *ge = gen(text);
		free(text);
		CHECK(ge != NULL);
		if (!ge)
			continue;
		ctx = sift_ctx_new(ge, SIFT_FILTERD);
		sift_ctx_msg_begin(ctx);
		enum sift_verdict v = sift_run(ctx, SIFT_PH_MAIL);
		const char *want = error_cases[i][1];
		if (!strcmp(want, "tempfail")) {
			CHECK(v == SIFT_TEMPFAIL);
			CHECK_STR(sift_ctx_result(ctx)->reply_code, "451");
		} else if (!strcmp(want, "reject"))
			CHECK(v == SIFT_REJECT);
		else if (!strcmp(want, "accept")) {
			CHECK(v == SIFT_DUNNO);
			CHECK(sift_ctx_result(ctx)->accepted);
		} else
			CHECK(v == SIFT_DUNNO && !sift_ctx_result(ctx)->accepted);
		sift_ctx_free(ctx);
		sift_gen_unref(ge);
	}

	/* A reject at RCPT concerns that recipient only; at MAIL it sticks. */
	struct sift_gen *gr = gen("inbound_plugins = testplug\ntestplug_phase = rcpt\n"
				  "testplug_verdict = reject\ntestplug_reply = 550 5.1.1 no such user\n");
	CHECK(gr != NULL);
	if (gr) {
		ctx = sift_ctx_new(gr, SIFT_FILTERD);
		sift_ctx_msg_begin(ctx);
		CHECK(sift_run(ctx, SIFT_PH_RCPT) == SIFT_REJECT);
		CHECK_STR(sift_ctx_result(ctx)->reply_xcode, "5.1.1");
		CHECK_STR(sift_ctx_result(ctx)->reply_text, "no such user");
		CHECK(sift_ctx_result(ctx)->verdict == SIFT_DUNNO);
		CHECK(sift_run(ctx, SIFT_PH_EOM) == SIFT_DUNNO);
		sift_ctx_free(ctx);
		sift_gen_unref(gr);
	}
	/* An invalid reply (wrong class) is replaced by the default. */
	gr = gen("inbound_plugins = testplug\ntestplug_phase = mail\ntestplug_verdict = reject\n"
		 "testplug_reply = 451 4.7.1 wrong class\n");
	CHECK(gr != NULL);
	if (gr) {
		ctx = sift_ctx_new(gr, SIFT_FILTERD);
		sift_ctx_msg_begin(ctx);
		CHECK(sift_run(ctx, SIFT_PH_MAIL) == SIFT_REJECT);
		CHECK(sift_ctx_result(ctx)->reply_code == NULL);
		CHECK(sift_run(ctx, SIFT_PH_EOM) == SIFT_REJECT); /* sticks */
		sift_ctx_free(ctx);
		sift_gen_unref(gr);
	}
	/* message_header_limit: the header that would pass it refuses the
	 * message (552 5.3.4) and is not stored; so do the bytes of many tiny
	 * headers (64 each besides their text). */
	gr = gen("inbound_plugins = testplug\nmessage_header_limit = 2k\n");
	CHECK(gr != NULL);
	if (gr) {
		ctx = sift_ctx_new(gr, SIFT_FILTERD);
		sift_ctx_msg_begin(ctx);
		char big[1100];
		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		CHECK(sift_run_header(ctx, "X-A", big) == SIFT_DUNNO);
		CHECK(sift_run_header(ctx, "X-B", big) == SIFT_REJECT);
		CHECK_STR(sift_ctx_result(ctx)->reply_code, "552");
		CHECK_STR(sift_ctx_result(ctx)->reply_xcode, "5.3.4");
		CHECK_INT(sift_msg_header_count(sift_ctx_msg(ctx)), 1);
		CHECK(sift_run(ctx, SIFT_PH_EOM) == SIFT_REJECT);
		sift_ctx_msg_end(ctx, true);
		sift_ctx_msg_begin(ctx);
		size_t n = 0;
		while (sift_run_header(ctx, "X", "") == SIFT_DUNNO && n < 1000)
			n++;
		CHECK_INT(n, 2048 / (1 + 3 + SIFT_HEADER_OVERHEAD));
		sift_ctx_free(ctx);
		sift_gen_unref(gr);
	}
	/* A reply belongs to the verdict that came with it: a refused last
	 * recipient's text is not the message's when a later plugin refuses
	 * without a reply of its own (the default is used). */
	char *rcpts = sift_asprintf("%s/rcpts", plugdir);
	FILE *rfp = fopen(rcpts, "w");
	fputs("bad@example.org REJECT no such user\n", rfp);
	fclose(rfp);
	static const enum sift_verdict late[] = {SIFT_REJECT, SIFT_TEMPFAIL};
	for (size_t i = 0; i < 2; i++) {
		char *rtext = sift_asprintf("inbound_plugins = access testplug\n"
					    "access_recipient_map = texthash:%s\ntestplug_phase = eom\n"
					    "testplug_verdict = %s\n",
					    rcpts, late[i] == SIFT_REJECT ? "reject" : "tempfail");
		gr = gen(rtext);
		free(rtext);
		CHECK(gr != NULL);
		if (!gr)
			continue;
		ctx = sift_ctx_new(gr, SIFT_FILTERD);
		sift_ctx_msg_begin(ctx);
		sift_ctx_set(ctx, SIFT_I_RCPT, "good@example.org");
		CHECK(sift_run(ctx, SIFT_PH_RCPT) == SIFT_DUNNO);
		sift_ctx_set(ctx, SIFT_I_RCPT, "bad@example.org");
		CHECK(sift_run(ctx, SIFT_PH_RCPT) == SIFT_REJECT);
		CHECK(sift_ctx_result(ctx)->reply_text &&
		      strstr(sift_ctx_result(ctx)->reply_text, "no such user"));
		CHECK(sift_run(ctx, SIFT_PH_EOM) == late[i]);
		CHECK(sift_ctx_result(ctx)->reply_code == NULL);
		CHECK(sift_ctx_result(ctx)->reply_text == NULL);
		sift_ctx_free(ctx);
		sift_gen_unref(gr);
	}
	free(rcpts);
	/* Recipients kept: 10,000 at most; policyd (any local process may be
	 * its client) also keeps 256 KB of them at most; a recipient dropped
	 * gives its bytes back. */
	{
		char long_rcpt[4000];
		memset(long_rcpt, 'r', sizeof(long_rcpt) - 1);
		long_rcpt[sizeof(long_rcpt) - 1] = 0;
		struct sift_ctx *pc = sift_ctx_new(g, SIFT_POLICYD), *fc = sift_ctx_new(g, SIFT_FILTERD);
		sift_ctx_msg_begin(pc);
		sift_ctx_msg_begin(fc);
		size_t kept = 0;
		while (kept < 200 && sift_ctx_add_rcpt(pc, long_rcpt))
			kept++;
		CHECK_INT(kept, 256 * 1024 / 4000);
		CHECK(sift_ctx_rcpts_full(pc));
		sift_ctx_drop_last_rcpt(pc);
		CHECK(sift_ctx_add_rcpt(pc, long_rcpt));
		CHECK(!sift_ctx_add_rcpt(pc, long_rcpt));
		for (kept = 0; kept < 200 && sift_ctx_add_rcpt(fc, long_rcpt);)
			kept++;
		CHECK_INT(kept, 200);
		size_t n = 0;
		while (n < 20000 && sift_ctx_add_rcpt(fc, "a@example.org"))
			n++;
		CHECK_INT(n, 10000 - 200);
		sift_ctx_msg_begin(pc); /* a new message starts from nothing */
		CHECK(sift_ctx_add_rcpt(pc, long_rcpt));
		sift_ctx_free(pc);
		sift_ctx_free(fc);
	}
	/* A message that reads short (its spool file cut behind the host's
	 * back) is not quarantined: a copy short of it would be stored, and
	 * the message, refused or discarded, lost. */
	char *qtext =
		sift_asprintf("inbound_plugins = testplug\nmessage_memory_limit = 0\ntmpdir = %s\n", plugdir);
	gr = gen(qtext);
	free(qtext);
	CHECK(gr != NULL);
	if (gr) {
		ctx = sift_ctx_new(gr, SIFT_FILTERD);
		sift_ctx_msg_begin(ctx);
		sift_ctx_add_rcpt(ctx, "b@example.org");
		CHECK(sift_run_header(ctx, "Subject", " cut") == SIFT_DUNNO);
		CHECK(sift_run_body(ctx, "a body of some length\r\n", 23) == SIFT_DUNNO);
		char *qdir = sift_asprintf("%s/q", plugdir), *id = NULL, *qerr = NULL;
		CHECK(mkdir(qdir, 0700) == 0);
		CHECK(sift_quarantine_store(qdir, ctx, "test", "testplug", &id, &qerr) == 0);
		free(id);
		id = NULL;
		/* the spool file: the descriptor of a deleted file in plugdir */
		int spool = -1;
		for (int fd = 3; fd < 1024 && spool < 0; fd++) {
			char link[64], target[512];
			snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
			ssize_t tl = readlink(link, target, sizeof(target) - 1);
			if (tl > 0) {
				target[tl] = 0;
				if (strncmp(target, plugdir, strlen(plugdir)) == 0 &&
				    strstr(target, "(deleted)"))
					spool = fd;
			}
		}
		CHECK(spool >= 0 && ftruncate(spool, 5) == 0);
		CHECK(sift_quarantine_store(qdir, ctx, "test", "testplug", &id, &qerr) < 0);
		CHECK(qerr && strstr(qerr, "the message ended at octet"));
		free(id);
		free(qerr);
		free(qdir);
		sift_ctx_free(ctx);
		sift_gen_unref(gr);
	}
	/* ACCEPT from access whitelists: testplug (not always-run) is skipped. */
	char *senders = sift_asprintf("%s/senders", plugdir);
	FILE *fp = fopen(senders, "w");
	fputs("good@example.org OK\nbad@example.org REJECT nope\n", fp);
	fclose(fp);
	char *text = sift_asprintf("inbound_plugins = access testplug\naccess_sender_map = texthash:%s\n"
				   "testplug_phase = eom\ntestplug_verdict = reject\n",
				   senders);
	gr = gen(text);
	free(text);
	CHECK(gr != NULL);
	if (gr) {
		ctx = sift_ctx_new(gr, SIFT_POLICYD);
		sift_ctx_msg_begin(ctx);
		sift_ctx_set(ctx, SIFT_I_SENDER, "good@example.org");
		CHECK(sift_run(ctx, SIFT_PH_MAIL) == SIFT_DUNNO);
		CHECK(sift_run(ctx, SIFT_PH_EOM) == SIFT_DUNNO);
		sift_ctx_msg_end(ctx, false);
		sift_ctx_msg_begin(ctx);
		sift_ctx_set(ctx, SIFT_I_SENDER, "other@example.org");
		CHECK(sift_run(ctx, SIFT_PH_MAIL) == SIFT_DUNNO);
		CHECK(sift_run(ctx, SIFT_PH_EOM) == SIFT_REJECT);
		sift_ctx_msg_end(ctx, true);
		/* policy replies */
		sift_ctx_set(ctx, SIFT_I_SENDER, "bad@example.org");
		sift_ctx_set(ctx, SIFT_I_PROTOCOL_STATE, "RCPT");
		sift_ctx_request_reset(ctx);
		CHECK(sift_run(ctx, SIFT_PH_POLICY) == SIFT_REJECT);
		char *act = sift_ctx_policy_action(ctx);
		CHECK_STR(act, "REJECT nope");
		free(act);
		/* policy_action_once: offered at every request until a reply
		 * carries it (a DEFER_IF_PERMIT or an earlier annotation wins
		 * over it), then never again in the transaction */
		static const struct {
			const char *before, *after, *want;
		} once[] = {
			{NULL, "DEFER_IF_PERMIT 4.7.1 later", "DEFER_IF_PERMIT 4.7.1 later"},
			{"PREPEND X-First: 1", NULL, "PREPEND X-First: 1"},
			{NULL, NULL, "PREPEND X-Once: 1"},
			{NULL, NULL, "DUNNO"},
			{"WARN w", NULL, "WARN w"},
			{"DEFER_IF_REJECT 4.7.1 soft", "DEFER_IF_PERMIT 4.7.1 over",
			 "DEFER_IF_PERMIT 4.7.1 over"},
		};
		sift_ctx_msg_begin(ctx);
		for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++) {
			sift_ctx_request_reset(ctx);
			if (once[i].before)
				hh->policy_action(ctx, once[i].before);
			hh->policy_action_once(ctx, "PREPEND X-Once: 1");
			hh->policy_action_once(ctx, "PREPEND X-Once: 1"); /* one a request */
			if (once[i].after)
				hh->policy_action(ctx, once[i].after);
			CHECK_INT(sift_ctx_result(ctx)->n_actions,
				  (i < 3) + (once[i].before != NULL) + (once[i].after != NULL));
			act = sift_ctx_policy_action(ctx);
			CHECK_STR(act, once[i].want);
			free(act);
		}
		/* OK is final: it wins over the actions added before it (an
		 * spf temperror's DEFER_IF_PERMIT, a header) */
		static const char *const before_ok[] = {"PREPEND X-Before: 1",
							"DEFER_IF_PERMIT 4.7.24 later"};
		for (size_t i = 0; i < 2; i++) {
			sift_ctx_msg_begin(ctx);
			sift_ctx_request_reset(ctx);
			hh->policy_action(ctx, before_ok[i]);
			sift_ctx_set(ctx, SIFT_I_SENDER, "good@example.org");
			sift_run(ctx, SIFT_PH_POLICY);
			CHECK(sift_ctx_result(ctx)->accepted);
			act = sift_ctx_policy_action(ctx);
			CHECK_STR(act, "OK");
			free(act);
		}
		/* a new transaction: offered again */
		sift_ctx_msg_end(ctx, false);
		sift_ctx_msg_begin(ctx);
		sift_ctx_request_reset(ctx);
		hh->policy_action_once(ctx, "PREPEND X-Once: 1");
		act = sift_ctx_policy_action(ctx);
		CHECK_STR(act, "PREPEND X-Once: 1");
		free(act);
		sift_ctx_free(ctx);
		sift_gen_unref(gr);
	}
	free(senders);
	sift_gen_set_current(NULL);
	sift_gen_unref(g);
	cmd = sift_asprintf("rm -rf %s", plugdir);
	CHECK(system(cmd) == 0);
	free(cmd);
	return t_done();
}
