/*
 * tool.c - the dkim plugin's siftctl tools (`siftctl dkim ...`): DKIM keys
 * and messages.
 *
 *   genkey -d DOMAIN -s SELECTOR [-t rsa|ed25519] [-b BITS] [-D DIR] [-f FILE]
 *       writes a new private key (mode 0600, never over an existing file)
 *       and prints its key table line and DNS record;
 *   showkeys   zone-file TXT records of every key in dkim_key_table;
 *   testkeys   queries DNS for every key and compares (pass / mismatch /
 *              missing / error), as `amavisd testkeys`;
 *   verify [FILE...]  runs each message through the dkim plugin (inbound
 *              profile, same code and resolver as filterd) and prints one
 *              line per signature; exit 0 only if every signature passes;
 *   sign -d DOMAIN -s SELECTOR FILE  prints the message signed by the dkim
 *              plugin with that key of the key table.
 *
 * Key tables are read by the plugin's own dkimkeys.c; verify and sign run
 * the message through a chain of the dkim plugin alone (host->tool_message)
 * with the configuration plus the settings they need. Single-threaded (in
 * siftctl).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dkimkeys.h"
#include "dkimverify.h"
#include "sift/plugin.h"

static const char genkey_usage[] = "-d DOMAIN -s SELECTOR [-t rsa|ed25519] [-b BITS] [-D DIR] [-f FILE]";
static const char sign_usage[] = "-d DOMAIN -s SELECTOR FILE";

static const char *const verdict_names[] = {"dunno",   "accept", "reject", "tempfail",
					    "discard", "hold",	 "error"};

static const char *verdict_name(enum sift_verdict v)
{
	return (unsigned)v < sizeof(verdict_names) / sizeof(verdict_names[0]) ? verdict_names[v] : "?";
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		perror("siftctl dkim");
		exit(1);
	}
	return s;
}

/* The key table of the configuration (dkim_key_table), with the key files
 * read when load; -1 after a message. */
static int load_keys(const void *conf, bool load, struct dk_keytable *kt)
{
	const char *spec = conf ? dk_conf_key_table(conf) : NULL;
	if (!spec || !*spec) {
		fprintf(stderr, "siftctl dkim: dkim_key_table is not set in the configuration\n");
		return -1;
	}
	char *err = NULL;
	if (dk_keytable_load(spec, load, kt, &err) < 0) {
		fprintf(stderr, "siftctl dkim: %s\n", err);
		free(err);
		return -1;
	}
	return 0;
}

static int tool_genkey(const struct sift_host *host, void *conf, int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL, *type = "rsa", *dir = ".", *file = NULL;
	int bits = 2048, c;
	/* getopt's messages start with argv[0], as siftctl's own commands' do */
	argv[0] = (char *)"siftctl dkim genkey";
	optind = 1;
	while ((c = getopt(argc, argv, "d:s:t:b:D:f:")) != -1) {
		switch (c) {
		case 'd':
			domain = optarg;
			break;
		case 's':
			selector = optarg;
			break;
		case 't':
			type = optarg;
			break;
		case 'b':
			bits = atoi(optarg);
			break;
		case 'D':
			dir = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		default:
			fprintf(stderr, "usage: siftctl dkim genkey %s\n", genkey_usage);
			return 1;
		}
	}
	if (!domain || !selector || optind != argc) {
		fprintf(stderr, "usage: siftctl dkim genkey %s\n", genkey_usage);
		return 1;
	}
	enum dk_keytype t;
	if (strcmp(type, "rsa") == 0)
		t = DK_RSA;
	else if (strcmp(type, "ed25519") == 0)
		t = DK_ED25519;
	else {
		fprintf(stderr, "siftctl dkim genkey: -t rsa or ed25519\n");
		return 1;
	}
	if (!dk_domain_ok(domain) || !dk_domain_ok(selector)) {
		fprintf(stderr, "siftctl dkim genkey: bad domain or selector\n");
		return 1;
	}
	/* -D names the key directory: made (root's, 0755) when it is missing
	 * and its parent exists, as /etc/sift/dkim for a source install. */
	if (!file && mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "siftctl dkim genkey: cannot make the directory %s: %s\n", dir,
			strerror(errno));
		return 1;
	}
	char *path = file ? xasprintf("%s", file) : xasprintf("%s/%s.%s.key", dir, domain, selector);
	struct dk_key k = {0};
	char *err = NULL;
	mode_t old = umask(077);
	int rc = dk_key_generate(path, t, bits, &k, &err);
	umask(old);
	if (rc < 0) {
		fprintf(stderr, "siftctl dkim genkey: %s\n", err);
		free(err);
		free(path);
		return 1;
	}
	char *zs = dk_record_zone_strings(k.record);
	printf("; %s, %d-bit %s key for d=%s s=%s (mode 0600: chown it to the filterd user)\n", path, k.bits,
	       t == DK_RSA ? "RSA" : "Ed25519", domain, selector);
	printf("; dkim_key_table line:\n;   %s._domainkey.%s  %s:%s:%s\n", selector, domain, domain, selector,
	       path);
	printf("%s._domainkey.%s.\t3600\tIN\tTXT\t( %s )\n", selector, domain, zs);
	free(zs);
	dk_key_clear(&k);
	free(path);
	return 0;
}

static int tool_showkeys(const struct sift_host *host, void *conf, int argc, char **argv)
{
	struct dk_keytable kt;
	if (argc > 1) {
		fprintf(stderr, "usage: siftctl dkim showkeys\n");
		return 1;
	}
	if (load_keys(conf, true, &kt) < 0)
		return 1;
	for (size_t i = 0; i < kt.n; i++) {
		const struct dk_key *k = &kt.keys[i];
		char *zs = dk_record_zone_strings(k->record);
		printf("; key#%zu %s: %d-bit %s, d=%s, s=%s, %s\n", i + 1, k->name, k->bits,
		       k->type == DK_RSA ? "RSA" : "Ed25519", k->domain, k->selector, k->path);
		printf("%s._domainkey.%s.\t3600\tIN\tTXT\t( %s )\n", k->selector, k->domain, zs);
		free(zs);
	}
	dk_keytable_free(&kt);
	return 0;
}

/* "pass", "mismatch", "missing" or "error" for key k against the DNS
 * answer r, with a detail for the line. */
static const char *compare_record(const struct dk_key *k, const struct sift_dns_result *r, char *detail,
				  size_t n)
{
	if (!r ||
	    (r->status != SIFT_DNS_OK && r->status != SIFT_DNS_NXDOMAIN && r->status != SIFT_DNS_NODATA)) {
		snprintf(detail, n, " (DNS lookup failed)");
		return "error";
	}
	if (r->status != SIFT_DNS_OK)
		return "missing";
	const char *verdict = "mismatch";
	for (size_t j = 0; j < r->count; j++) {
		char *p = dk_tag_value((const char *)r->rr[j], "p");
		char *kk = dk_tag_value((const char *)r->rr[j], "k");
		/* no k= means rsa (RFC 6376 3.6.1) */
		bool type_ok = strcasecmp(kk ? kk : "rsa", k->type == DK_RSA ? "rsa" : "ed25519") == 0;
		if (p && !*p)
			snprintf(detail, n, " (revoked: empty p=)");
		else if (p && strcmp(p, k->pub_b64) == 0 && !type_ok)
			snprintf(detail, n, " (k= is not %s)", k->type == DK_RSA ? "rsa" : "ed25519");
		else if (p && strcmp(p, k->pub_b64) == 0) {
			/* The record as verifiers read it (the plugin's own
			 * parser): v=, h=, s= must not make it unusable. */
			struct dkv_key *pk = dkv_key_parse((const char *)r->rr[j]);
			if (pk && pk->pk)
				verdict = "pass";
			else
				snprintf(detail, n, " (%s)", pk ? pk->reason : "out of memory");
			dkv_key_free(pk);
		} else if (!p)
			snprintf(detail, n, " (no p= in the record)");
		free(p);
		free(kk);
	}
	return verdict;
}

static int tool_testkeys(const struct sift_host *host, void *conf, int argc, char **argv)
{
	struct dk_keytable kt;
	if (argc > 1) {
		fprintf(stderr, "usage: siftctl dkim testkeys\n");
		return 1;
	}
	if (load_keys(conf, true, &kt) < 0)
		return 1;
	int bad = 0;
	for (size_t i = 0; i < kt.n; i++) {
		const struct dk_key *k = &kt.keys[i];
		char *name = xasprintf("%s._domainkey.%s", k->selector, k->domain);
		struct sift_dns_result *r = host->dns_query(name, 16, 0);
		char detail[200] = "";
		const char *verdict = compare_record(k, r, detail, sizeof(detail));
		printf("TESTING#%zu %s: %s => %s%s\n", i + 1, k->domain, name, verdict, detail);
		bad += strcmp(verdict, "pass") != 0;
		free(r);
		free(name);
	}
	dk_keytable_free(&kt);
	return bad ? 1 : 0;
}

/* Copies s[0..n) with white space around it removed and CR, LF and TAB
 * inside it made spaces. */
static char *clean_item(const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	char *t = strndup(s, n);
	if (!t) {
		perror("siftctl dkim");
		exit(1);
	}
	for (char *c = t; *c; c++)
		if (*c == '\r' || *c == '\n' || *c == '\t')
			*c = ' ';
	return t;
}

/* Prints one line per dkim= result of an Authentication-Results value;
 * returns the number of results that are not "pass" (-1: none at all). */
static int print_results(const char *file, const char *ar)
{
	int notpass = 0, n = 0;
	const char *p = strchr(ar, ';');
	while (p) {
		p++;
		const char *end = p;
		bool q = false;
		for (; *end && (q || *end != ';'); end++)
			if (*end == '"')
				q = !q;
		char *t = clean_item(p, (size_t)(end - p));
		if (strncmp(t, "dkim=", 5) == 0) {
			n++;
			if (strncmp(t, "dkim=pass", 9) != 0)
				notpass++;
			printf("%s: %s\n", file, t);
		}
		free(t);
		p = *end ? end : NULL;
	}
	return n == 0 ? -1 : notpass;
}

struct verify_state {
	const char *file;
	int status;
};

static void verify_done(void *arg, const struct sift_tool_message *m)
{
	struct verify_state *st = arg;
	const char *ar = NULL;
	for (size_t i = 0; i < m->header_count; i++)
		if (strcasecmp(m->headers[i].name, "Authentication-Results") == 0)
			ar = m->headers[i].value;
	int bad = ar ? print_results(st->file, ar) : -1;
	if (!ar)
		printf("%s: dkim=temperror reason=\"%s\"\n", st->file, verdict_name(m->verdict));
	if (bad != 0)
		st->status = 1;
}

static int tool_verify(const struct sift_host *host, void *conf, int argc, char **argv)
{
	static const char *const extra[] = {"dkim_verify = yes", "dkim_sign = no",
					    "dkim_add_auth_results = yes", NULL};
	int status = 0;
	char *stdin_only[] = {(char *)"-", NULL};
	char **files = argc > 1 ? argv + 1 : stdin_only;
	for (; *files; files++) {
		struct verify_state st = {*files, 0};
		char *err = NULL;
		if (host->tool_message(*files, "dkim", "inbound", extra, verify_done, &st, &err) < 0) {
			fprintf(stderr, "siftctl dkim: %s\n", err);
			free(err);
			st.status = 1;
		}
		if (st.status)
			status = 1;
	}
	return status;
}

struct sign_state {
	const char *file;
	int status;
};

static void sign_done(void *arg, const struct sift_tool_message *m)
{
	struct sign_state *st = arg;
	bool crlf = m->len && memmem(m->data, m->len, "\r\n", 2) != NULL;
	int nsig = 0;
	for (size_t i = 0; i < m->header_count; i++) {
		const struct sift_header *h = &m->headers[i];
		if (strcasecmp(h->name, "DKIM-Signature") != 0)
			continue;
		printf("%s: ", h->name);
		for (const char *p = h->value; *p; p++) {
			if (*p == '\r')
				continue;
			if (*p == '\n' && crlf)
				putchar('\r');
			putchar(*p);
		}
		fputs(crlf ? "\r\n" : "\n", stdout);
		nsig++;
	}
	if (m->verdict != SIFT_DUNNO || nsig == 0) {
		fprintf(stderr, "siftctl dkim sign: %s: not signed (%s; see the log above)\n", st->file,
			m->verdict != SIFT_DUNNO ? verdict_name(m->verdict)
						 : "no From header or nothing to sign");
	} else {
		fwrite(m->data, 1, m->len, stdout);
		st->status = 0;
	}
}

static int tool_sign(const struct sift_host *host, void *conf, int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL;
	int c;
	/* getopt's messages start with argv[0], as siftctl's own commands' do */
	argv[0] = (char *)"siftctl dkim sign";
	optind = 1;
	while ((c = getopt(argc, argv, "d:s:")) != -1) {
		if (c == 'd')
			domain = optarg;
		else if (c == 's')
			selector = optarg;
		else {
			fprintf(stderr, "usage: siftctl dkim sign %s\n", sign_usage);
			return 1;
		}
	}
	if (!domain || !selector || optind != argc - 1) {
		fprintf(stderr, "usage: siftctl dkim sign %s\n", sign_usage);
		return 1;
	}
	struct dk_keytable kt;
	if (load_keys(conf, false, &kt) < 0)
		return 1;
	const struct dk_key *k = dk_keytable_find_ds(&kt, domain, selector);
	if (!k) {
		fprintf(stderr, "siftctl dkim sign: no key for d=%s s=%s in dkim_key_table\n", domain,
			selector);
		dk_keytable_free(&kt);
		return 1;
	}
	char *table = xasprintf("dkim_signing_table = static:%s", k->name);
	const char *extra[] = {table, "dkim_sender_check = no", "dkim_sign = yes",
			       "dkim_sign_networks =", NULL};
	struct sign_state st = {argv[optind], 1};
	char *err = NULL;
	if (host->tool_message(argv[optind], "dkim", "originating", extra, sign_done, &st, &err) < 0) {
		fprintf(stderr, "siftctl dkim: %s\n", err);
		free(err);
	}
	free(table);
	dk_keytable_free(&kt);
	return st.status;
}

const struct sift_tool dk_tools[] = {
	{"genkey", genkey_usage, "generate a private key (mode 0600) and print its DNS record",
	 SIFT_TOOL_NO_CONF, tool_genkey},
	{"showkeys", "", "print the DNS TXT records of every key in dkim_key_table", 0, tool_showkeys},
	{"testkeys", "", "check each key's DNS record against the key (exit 0 if all pass)", SIFT_TOOL_INIT,
	 tool_testkeys},
	{"verify", "[FILE...]", "verify messages as filterd does (exit 0 if all pass)", 0, tool_verify},
	{"sign", sign_usage, "print the message signed with that key of dkim_key_table", 0, tool_sign},
	{NULL, NULL, NULL, 0, NULL},
};
