/*
 * test_access.c - the access plugin through a fake host: a host table whose
 * functions read and record plain variables, so that Postfix's lookup order
 * (parent domains, address octets, address extensions, null sender) and the
 * access(5) result forms can be checked one by one, in both daemons' modes.
 * Also an existing Postfix table built with postmap (hash:), used unchanged,
 * rebuilt while in use, and removed while in use.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static const char *items[SIFT_I_MAX];
static void *conf_block;
static char *reply_code, *reply_xcode, *reply_text, *action, *hdr_name, *hdr_value, *hold_reason;
static char *lookups; /* every key looked up, space-separated */

static void reset(void)
{
	free(reply_code), free(reply_xcode), free(reply_text), free(action), free(hdr_name);
	free(hdr_value), free(hold_reason), free(lookups);
	reply_code = reply_xcode = reply_text = action = hdr_name = hdr_value = hold_reason = NULL;
	lookups = sift_strdup("");
	memset(items, 0, sizeof(items));
}

static void f_log(struct sift_ctx *c, int l, const char *fmt, ...)
{
}
static void *f_conf(struct sift_ctx *c)
{
	return conf_block;
}
static const char *f_get(struct sift_ctx *c, enum sift_item i)
{
	return items[i];
}
static void f_reply(struct sift_ctx *c, const char *code, const char *x, const char *t)
{
	reply_code = code ? sift_strdup(code) : NULL;
	reply_xcode = x ? sift_strdup(x) : NULL;
	reply_text = t ? sift_strdup(t) : NULL;
}
static void f_insert(struct sift_ctx *c, unsigned idx, const char *n, const char *v)
{
	hdr_name = sift_strdup(n);
	hdr_value = sift_strdup(v);
}
static void f_action(struct sift_ctx *c, const char *a)
{
	action = sift_strdup(a);
}
static void f_hold(struct sift_ctx *c, const char *r)
{
	hold_reason = sift_strdup(r);
}
static int f_lookup(const struct sift_map *m, const char *key, char **res)
{
	char *l = sift_asprintf("%s%s%s", lookups, *lookups ? " " : "", key);
	free(lookups);
	lookups = l;
	return sift_map_lookup(m, key, res);
}

static struct sift_host fake = {
	.abi_major = SIFT_ABI_MAJOR,
	.abi_minor = SIFT_ABI_MINOR,
	.struct_size = sizeof(struct sift_host),
	.log = f_log,
	.conf = f_conf,
	.get = f_get,
	.reply = f_reply,
	.header_insert = f_insert,
	.policy_action = f_action,
	.hold = f_hold,
	.map_lookup = f_lookup,
	.map_is_pattern = sift_map_is_pattern,
};

/* Writes dir/name and runs `postmap hash:dir/name` on it (with an empty
 * main.cf in dir); 0 on success. */
static int postmap_hash(const char *dir, const char *name, const char *text)
{
	free(t_write_file(dir, "main.cf", ""));
	char *path = t_write_file(dir, name, text);
	char *cmd = sift_asprintf("MAIL_CONFIG='%s' postmap hash:'%s'", dir, path);
	int st = system(cmd);
	free(cmd);
	free(path);
	return st == 0 ? 0 : -1;
}

/* The seed configuration's form: a sender access table that postmap made
 * into a Berkeley DB file, named as in main.cf (hash:/path). */
static void test_hash_table(const struct sift_plugin *p, const char *dir)
{
	CHECK_INT(postmap_hash(dir, "sender_access",
			       "# Postfix sender access table\n"
			       "Spammer@Example.COM   REJECT go away\n"
			       "spam.example          REJECT\n"
			       "partner.example       OK\n"),
		  0);
	char *file = sift_asprintf("%s/sender_access", dir);
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	char *spec = sift_asprintf("access_sender_map=hash:%s", file);
	CHECK(sift_config_set(cfg, spec, "t", &err) == 0);
	free(spec);
	void *conf = sift_calloc(1, p->conf_size);
	CHECK(sift_params_parse(cfg, "access_", p->params, conf, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err);
	conf_block = conf;
	CHECK(p->init(&fake, conf, &err) == 0);

	reset();
	items[SIFT_I_SENDER] = "spammer@example.com";
	CHECK(p->mail(NULL) == SIFT_REJECT);
	CHECK_STR(reply_code, "554");
	CHECK_STR(reply_text, "<spammer@example.com>: Sender address rejected: go away");
	reset();
	items[SIFT_I_SENDER] = "anyone@mx.SPAM.example";
	CHECK(p->mail(NULL) == SIFT_REJECT);
	CHECK_STR(lookups, "anyone@mx.SPAM.example mx.SPAM.example SPAM.example");
	reset();
	items[SIFT_I_SENDER] = "a@partner.example";
	CHECK(p->mail(NULL) == SIFT_ACCEPT);
	reset();
	items[SIFT_I_SENDER] = "someone@elsewhere.test";
	CHECK(p->mail(NULL) == SIFT_DUNNO);

	/* edited and rebuilt with postmap: the next message sees it */
	CHECK_INT(postmap_hash(dir, "sender_access",
			       "spammer@example.com   REJECT still not welcome\n"
			       "elsewhere.test        REJECT\n"),
		  0);
	reset();
	items[SIFT_I_SENDER] = "spammer@example.com";
	CHECK(p->mail(NULL) == SIFT_REJECT);
	CHECK_STR(reply_text, "<spammer@example.com>: Sender address rejected: still not welcome");
	reset();
	items[SIFT_I_SENDER] = "someone@elsewhere.test";
	CHECK(p->mail(NULL) == SIFT_REJECT);
	reset();
	items[SIFT_I_SENDER] = "a@partner.example";
	CHECK(p->mail(NULL) == SIFT_DUNNO);

	/* the .db file gone: an error (access_error_action, tempfail by
	 * default), not a pass */
	char *db = sift_asprintf("%s.db", file);
	CHECK_INT(unlink(db), 0);
	reset();
	items[SIFT_I_SENDER] = "a@partner.example";
	CHECK(p->mail(NULL) == SIFT_ERROR);

	reset();
	p->release ? p->release(conf) : (void)0;
	sift_params_free(p->params, conf);
	free(conf);
	sift_config_free(cfg);

	/* no .db file at start: the parameter is refused, naming the file */
	cfg = sift_config_new();
	spec = sift_asprintf("access_sender_map=hash:%s", file);
	CHECK(sift_config_set(cfg, spec, "t", &err) == 0);
	free(spec);
	conf = sift_calloc(1, p->conf_size);
	err = NULL;
	int rc = sift_params_parse(cfg, "access_", p->params, conf, &err);
	if (rc == 0) {
		conf_block = conf;
		rc = p->init(&fake, conf, &err);
	}
	CHECK(rc < 0);
	CHECK(err && strstr(err, db) && strstr(err, "No such file or directory"));
	fprintf(stderr, "  expected error: %s\n", err ? err : "(none)");
	free(err);
	sift_params_free(p->params, conf);
	free(conf);
	sift_config_free(cfg);
	free(db);
	free(file);
}

/* A regular-expression table whose result comes out empty ($1 of an empty
 * match): not OK (Postfix's alldig() is false for ""), an unsupported
 * result, so an error (tempfail by default), never an accept that would
 * skip the later checks. */
static void test_empty_result(const struct sift_plugin *p, const char *dir)
{
	char *file = sift_asprintf("%s/empty.pcre", dir);
	FILE *fp = fopen(file, "w");
	fputs("/^([0-9]*)x@tagged\\.test$/ $1\n", fp);
	fclose(fp);
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	char *spec = sift_asprintf("access_sender_map=pcre:%s", file);
	CHECK(sift_config_set(cfg, spec, "t", &err) == 0);
	free(spec);
	void *conf = sift_calloc(1, p->conf_size);
	CHECK(sift_params_parse(cfg, "access_", p->params, conf, &err) == 0);
	conf_block = conf;
	CHECK(p->init(&fake, conf, &err) == 0);
	reset();
	items[SIFT_I_SENDER] = "123x@tagged.test";
	CHECK(p->mail(NULL) == SIFT_ACCEPT); /* "123": all digits, OK */
	reset();
	items[SIFT_I_SENDER] = "x@tagged.test";
	CHECK(p->mail(NULL) == SIFT_ERROR); /* "" */
	reset();
	p->release ? p->release(conf) : (void)0;
	sift_params_free(p->params, conf);
	free(conf);
	sift_config_free(cfg);
	free(file);
}

/* Builds the plugin's conf from "name=value" settings (NULL-terminated)
 * and runs init; NULL on failure. */
static void *setup(const struct sift_plugin *p, struct sift_config **cfg_r, const char *const *settings)
{
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	for (size_t i = 0; settings[i]; i++)
		CHECK(sift_config_set(cfg, settings[i], "t", &err) == 0);
	void *conf = sift_calloc(1, p->conf_size);
	CHECK(sift_params_parse(cfg, "access_", p->params, conf, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err);
	conf_block = conf;
	CHECK(p->init(&fake, conf, &err) == 0);
	free(err);
	*cfg_r = cfg;
	return conf;
}

static void teardown(const struct sift_plugin *p, struct sift_config *cfg, void *conf)
{
	reset();
	p->release ? p->release(conf) : (void)0;
	sift_params_free(p->params, conf);
	free(conf);
	sift_config_free(cfg);
}

/* pcre: and regexp: tables are matched against the whole string only, as
 * Postfix's check_*_access do (access(5), "REGULAR EXPRESSION TABLES"):
 * no parent domains, user@domain not broken up, the extension not
 * removed, no address octets removed. The same holds for cidr:. */
static void test_pattern_tables(const struct sift_plugin *p, const char *dir, const char *type)
{
	char *helo = sift_asprintf("%s/helo.%s", dir, type);
	char *sender = sift_asprintf("%s/sender.%s", dir, type);
	char *client = sift_asprintf("%s/client.%s", dir, type);
	char *rcpt = sift_asprintf("%s/rcpt.%s", dir, type);
	free(t_write_file(dir, strrchr(helo, '/') + 1, "/^example\\.com$/ REJECT You are not me\n"));
	free(t_write_file(dir, strrchr(sender, '/') + 1,
			  "/^[^@]*$/ REJECT sender address needs a domain\n"
			  "/^alice@$/ REJECT local part alone\n"
			  "/^example\\.net$/ REJECT parent domain\n"));
	free(t_write_file(dir, strrchr(client, '/') + 1,
			  "/^example\\.org$/ REJECT parent of the client name\n"
			  "/^192\\.0\\.2$/ REJECT octets removed\n"
			  "/^mx\\.bad\\.test$/ REJECT bad name\n"
			  "/^203\\.0\\.113\\.9$/ REJECT bad address\n"));
	free(t_write_file(dir, strrchr(rcpt, '/') + 1,
			  "/^bob@example\\.org$/ REJECT extension removed\n"
			  "/^carol\\+tag@example\\.org$/ REJECT whole address\n"));
	char *s1 = sift_asprintf("access_helo_map=%s:%s", type, helo);
	char *s2 = sift_asprintf("access_sender_map=%s:%s", type, sender);
	char *s3 = sift_asprintf("access_client_map=%s:%s", type, client);
	char *s4 = sift_asprintf("access_recipient_map=%s:%s", type, rcpt);
	const char *const settings[] = {s1, s2, s3, s4, "access_recipient_delimiter=+", NULL};
	struct sift_config *cfg;
	void *conf = setup(p, &cfg, settings);

	/* HELO: the name only, not example.com for mail.example.com */
	reset();
	items[SIFT_I_HELO] = "mail.example.com";
	CHECK(p->helo(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "mail.example.com");
	reset();
	items[SIFT_I_HELO] = "example.com";
	CHECK(p->helo(NULL) == SIFT_REJECT);
	CHECK_STR(reply_text, "<example.com>: Helo command rejected: You are not me");

	/* sender: the whole address, never its domain or its local part */
	reset();
	items[SIFT_I_SENDER] = "alice@example.org";
	CHECK(p->mail(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "alice@example.org");
	reset();
	items[SIFT_I_SENDER] = "bob@mx.example.net";
	CHECK(p->mail(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "bob@mx.example.net");
	reset();
	items[SIFT_I_SENDER] = "alice";
	CHECK(p->mail(NULL) == SIFT_REJECT);
	CHECK_STR(reply_text, "<alice>: Sender address rejected: sender address needs a domain");
	/* the null sender is still looked up as <> */
	reset();
	items[SIFT_I_SENDER] = "";
	CHECK(p->mail(NULL) == SIFT_REJECT);
	CHECK_STR(lookups, "<>");

	/* recipient: the extension is not removed */
	reset();
	items[SIFT_I_RCPT] = "bob+tag@example.org";
	CHECK(p->rcpt(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "bob+tag@example.org");
	reset();
	items[SIFT_I_RCPT] = "carol+tag@example.org";
	CHECK(p->rcpt(NULL) == SIFT_REJECT);

	/* client: the name, then the address, each whole */
	reset();
	items[SIFT_I_CLIENT_NAME] = "mx.example.org";
	items[SIFT_I_CLIENT_ADDR] = "192.0.2.7";
	CHECK(p->connect(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "mx.example.org 192.0.2.7");
	reset();
	items[SIFT_I_CLIENT_NAME] = "mx.bad.test";
	items[SIFT_I_CLIENT_ADDR] = "192.0.2.7";
	CHECK(p->connect(NULL) == SIFT_REJECT);
	reset();
	items[SIFT_I_CLIENT_NAME] = "mx.example.org";
	items[SIFT_I_CLIENT_ADDR] = "203.0.113.9";
	CHECK(p->connect(NULL) == SIFT_REJECT);
	CHECK_STR(lookups, "mx.example.org 203.0.113.9");

	/* policyd: the same lookups */
	reset();
	items[SIFT_I_PROTOCOL_STATE] = "RCPT";
	items[SIFT_I_CLIENT_NAME] = "mx.example.org";
	items[SIFT_I_CLIENT_ADDR] = "192.0.2.7";
	items[SIFT_I_HELO] = "mail.example.com";
	items[SIFT_I_SENDER] = "alice@example.org";
	items[SIFT_I_RCPT] = "bob+tag@example.org";
	CHECK(p->policy(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "mx.example.org 192.0.2.7 mail.example.com alice@example.org bob+tag@example.org");

	teardown(p, cfg, conf);
	free(s1), free(s2), free(s3), free(s4);
	free(helo), free(sender), free(client), free(rcpt);
}

/* A cidr: client table sees the client name (not an address: not found)
 * and the address, never the address with octets removed. */
static void test_cidr_client(const struct sift_plugin *p, const char *dir)
{
	char *file = t_write_file(dir, "client.cidr", "192.0.2.0/24 REJECT bad network\n");
	char *s1 = sift_asprintf("access_client_map=cidr:%s", file);
	const char *const settings[] = {s1, NULL};
	struct sift_config *cfg;
	void *conf = setup(p, &cfg, settings);
	reset();
	items[SIFT_I_CLIENT_NAME] = "mx.example.org";
	items[SIFT_I_CLIENT_ADDR] = "192.0.2.7";
	CHECK(p->connect(NULL) == SIFT_REJECT);
	CHECK_STR(lookups, "mx.example.org 192.0.2.7");
	reset();
	items[SIFT_I_CLIENT_NAME] = "mx.example.org";
	items[SIFT_I_CLIENT_ADDR] = "198.51.100.7";
	CHECK(p->connect(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "mx.example.org 198.51.100.7");
	reset();
	items[SIFT_I_CLIENT_ADDR] = "2001:db8::1";
	CHECK(p->connect(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "2001:db8::1");
	teardown(p, cfg, conf);
	free(s1);
	free(file);
}

/* A host older than ABI minor 6 (no map_is_pattern) is refused at init,
 * rather than looking pattern tables up piece by piece. */
static void test_old_host(const struct sift_plugin *p)
{
	struct sift_host old = fake;
	old.struct_size = offsetof(struct sift_host, map_is_pattern);
	void *conf = sift_calloc(1, p->conf_size);
	char *err = NULL;
	CHECK(p->init(&old, conf, &err) < 0);
	CHECK(err && strstr(err, "map_is_pattern"));
	free(err);
	free(conf);
}

int main(void)
{
	char *path = sift_asprintf("%s/plugins/access.so", getenv("SIFT_BUILDDIR"));
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	CHECK(h != NULL);
	if (!h)
		return t_done();
	const struct sift_plugin *p = dlsym(h, "sift_plugin_entry");
	CHECK(p && strcmp(p->name, "access") == 0);

	char dir[] = "/tmp/sift-test-access-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *file = sift_asprintf("%s/access", dir);
	FILE *fp = fopen(file, "w");
	fputs("example.com REJECT\n"
	      ".sub.example.net HOLD held for review\n"
	      "192.0.2 REJECT no network 192.0.2 here\n"
	      "2001:db8:1 DISCARD\n"
	      "user@ OK\n"
	      "alice@example.org DUNNO\n"
	      "bob@example.org 452 4.2.2 mailbox full\n"
	      "carol@example.org PREPEND X-Access: matched\n"
	      "dave@example.org WARN suspicious\n"
	      "erin@example.org DEFER_IF_PERMIT try later\n"
	      "frank@example.org FILTER smtp:[127.0.0.1]:10025\n"
	      "grace@example.org DEFER 4.7.9 go slow\n"
	      "<> REJECT no bounces\n"
	      "eve@example.org OK\n",
	      fp);
	fclose(fp);
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	char *spec = sift_asprintf("access_client_map=texthash:%s", file);
	CHECK(sift_config_set(cfg, spec, "t", &err) == 0);
	free(spec);
	spec = sift_asprintf("access_sender_map=texthash:%s", file);
	CHECK(sift_config_set(cfg, spec, "t", &err) == 0);
	free(spec);
	spec = sift_asprintf("access_recipient_map=texthash:%s", file);
	CHECK(sift_config_set(cfg, spec, "t", &err) == 0);
	free(spec);
	CHECK(sift_config_set(cfg, "access_recipient_delimiter=+", "t", &err) == 0);
	conf_block = sift_calloc(1, p->conf_size);
	CHECK(sift_params_parse(cfg, "access_", p->params, conf_block, &err) == 0);
	CHECK(p->init(&fake, conf_block, &err) == 0);

	/* client: name with parent domains, then address octets */
	reset();
	items[SIFT_I_CLIENT_NAME] = "mx.example.com";
	items[SIFT_I_CLIENT_ADDR] = "198.51.100.1";
	CHECK(p->connect(NULL) == SIFT_REJECT);
	CHECK_STR(lookups, "mx.example.com example.com");
	CHECK_STR(reply_code, "554");
	CHECK_STR(reply_xcode, "5.7.1");
	CHECK_STR(reply_text, "<198.51.100.1>: Client host rejected: Access denied");
	reset();
	items[SIFT_I_CLIENT_NAME] = "unknown";
	items[SIFT_I_CLIENT_ADDR] = "192.0.2.77";
	CHECK(p->connect(NULL) == SIFT_REJECT);
	/* a client without a verified name is looked up as "unknown", as
	 * Postfix does */
	CHECK_STR(lookups, "unknown 192.0.2.77 192.0.2");
	CHECK_STR(reply_text, "<192.0.2.77>: Client host rejected: no network 192.0.2 here");
	reset();
	items[SIFT_I_CLIENT_ADDR] = "2001:db8:1:2::5";
	CHECK(p->connect(NULL) == SIFT_DISCARD);
	CHECK_STR(lookups, "2001:db8:1:2::5 2001:db8:1:2: 2001:db8:1:2 2001:db8:1");
	/* Postfix's default parent_domain_matches_subdomains: the parents
	 * are looked up without a leading dot, so ".sub.example.net" never
	 * matches */
	reset();
	items[SIFT_I_CLIENT_NAME] = "a.sub.example.net";
	CHECK(p->connect(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "a.sub.example.net sub.example.net example.net net");

	/* sender: address, without extension, domain, parents, user@ */
	reset();
	items[SIFT_I_SENDER] = "user+tag@nowhere.test";
	CHECK(p->mail(NULL) == SIFT_ACCEPT);
	CHECK_STR(lookups, "user+tag@nowhere.test user@nowhere.test nowhere.test test user+tag@ user@");
	reset();
	items[SIFT_I_SENDER] = "alice@example.org";
	CHECK(p->mail(NULL) == SIFT_DUNNO);
	reset();
	items[SIFT_I_SENDER] = "";
	CHECK(p->mail(NULL) == SIFT_REJECT);
	CHECK_STR(lookups, "<>");
	reset();
	items[SIFT_I_RCPT] = "bob@example.org";
	CHECK(p->rcpt(NULL) == SIFT_TEMPFAIL);
	CHECK_STR(reply_code, "452");
	CHECK_STR(reply_xcode, "4.2.2");
	CHECK_STR(reply_text, "mailbox full");
	reset();
	items[SIFT_I_RCPT] = "grace@example.org";
	CHECK(p->rcpt(NULL) == SIFT_TEMPFAIL);
	CHECK_STR(reply_code, "450");
	CHECK_STR(reply_xcode, "4.7.9");
	CHECK_STR(reply_text, "<grace@example.org>: Recipient address rejected: go slow");
	reset();
	items[SIFT_I_SENDER] = "carol@example.org";
	CHECK(p->mail(NULL) == SIFT_DUNNO);
	CHECK_STR(hdr_name, "X-Access");
	CHECK_STR(hdr_value, "matched");
	reset();
	items[SIFT_I_SENDER] = "dave@example.org";
	CHECK(p->mail(NULL) == SIFT_DUNNO);
	/* results filterd cannot honour are errors, never ignored */
	reset();
	items[SIFT_I_SENDER] = "erin@example.org";
	CHECK(p->mail(NULL) == SIFT_ERROR);
	reset();
	items[SIFT_I_SENDER] = "frank@example.org";
	CHECK(p->mail(NULL) == SIFT_ERROR);

	/* policyd: pass-through actions, Postfix adds the reject prefix */
	reset();
	items[SIFT_I_PROTOCOL_STATE] = "RCPT";
	items[SIFT_I_SENDER] = "erin@example.org";
	CHECK(p->policy(NULL) == SIFT_DUNNO);
	CHECK_STR(action, "DEFER_IF_PERMIT try later");
	reset();
	items[SIFT_I_PROTOCOL_STATE] = "RCPT";
	items[SIFT_I_SENDER] = "carol@example.org";
	CHECK(p->policy(NULL) == SIFT_DUNNO);
	CHECK_STR(action, "PREPEND X-Access: matched");
	reset();
	items[SIFT_I_PROTOCOL_STATE] = "RCPT";
	items[SIFT_I_SENDER] = "x@example.com";
	CHECK(p->policy(NULL) == SIFT_REJECT);
	CHECK(reply_code == NULL);
	/* the recipient map is used at RCPT only; client before sender */
	reset();
	items[SIFT_I_PROTOCOL_STATE] = "MAIL";
	items[SIFT_I_CLIENT_ADDR] = "203.0.113.9";
	items[SIFT_I_SENDER] = "eve@example.org";
	items[SIFT_I_RCPT] = "bob@example.org";
	CHECK(p->policy(NULL) == SIFT_ACCEPT);
	CHECK_STR(lookups, "203.0.113.9 203.0.113 203.0 203 eve@example.org");

	reset();
	p->release ? p->release(conf_block) : (void)0;
	sift_params_free(p->params, conf_block);
	free(conf_block);

	/* access_parent_domain_matches_subdomains = no: parents with a
	 * leading dot, so ".sub.example.net" matches subdomains only */
	CHECK(sift_config_set(cfg, "access_parent_domain_matches_subdomains=no", "t", &err) == 0);
	spec = sift_asprintf("access_helo_map=texthash:%s", file);
	CHECK(sift_config_set(cfg, spec, "t", &err) == 0);
	free(spec);
	conf_block = sift_calloc(1, p->conf_size);
	CHECK(sift_params_parse(cfg, "access_", p->params, conf_block, &err) == 0);
	CHECK(p->init(&fake, conf_block, &err) == 0);
	reset();
	items[SIFT_I_CLIENT_NAME] = "sub.example.net";
	CHECK(p->connect(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "sub.example.net .example.net .net");
	reset();
	items[SIFT_I_CLIENT_NAME] = "a.sub.example.net";
	CHECK(p->connect(NULL) == SIFT_HOLD);
	CHECK_STR(hold_reason, "<>: held for review");
	/* a numeric HELO has no parent domains (in either style) */
	reset();
	items[SIFT_I_HELO] = "192.0.2.1";
	CHECK(p->helo(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "192.0.2.1");
	reset();
	items[SIFT_I_HELO] = "mail.example.org";
	CHECK(p->helo(NULL) == SIFT_DUNNO);
	CHECK_STR(lookups, "mail.example.org .example.org .org");
	reset();
	p->release ? p->release(conf_block) : (void)0;
	sift_params_free(p->params, conf_block);
	free(conf_block);
	sift_config_free(cfg);

	test_hash_table(p, dir);
	test_empty_result(p, dir);
	test_pattern_tables(p, dir, "pcre");
	test_pattern_tables(p, dir, "regexp");
	test_cidr_client(p, dir);
	test_old_host(p);

	char *cmd = sift_asprintf("rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	free(cmd);
	free(file);
	free(path);
	return t_done();
}
