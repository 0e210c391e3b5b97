/*
 * siftctl-dkim.c - `siftctl dkim ...`: DKIM keys and messages.
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
 * The key table is read with the plugin's own rules: dkimkeys.c (the
 * plugin's source file) is compiled into this file. Single-threaded.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "siftctl.h"

#include "../plugins/dkim/dkimkeys.c"

static const char dkim_usage[] =
	"  dkim genkey -d DOMAIN -s SELECTOR [-t rsa|ed25519] [-b BITS] [-D DIR] [-f FILE]\n"
	"       generate a private key (mode 0600) and print its DNS record\n"
	"  dkim showkeys    print the DNS TXT records of every key in dkim_key_table\n"
	"  dkim testkeys    check each key's DNS record against the key (exit 0 if all pass)\n"
	"  dkim verify [FILE...]   verify messages as filterd does (exit 0 if all pass)\n"
	"  dkim sign -d DOMAIN -s SELECTOR FILE   print the message signed with that key\n";

static struct sift_config *load_config(struct sift_opts *o)
{
	char *err = NULL;
	struct sift_config *cfg = sift_opts_config(o, "", NULL, &err);
	if (!cfg) {
		fprintf(stderr, "siftctl: %s\n", err);
		free(err);
	}
	return cfg;
}

static int load_keys(struct sift_opts *o, bool load, struct dk_keytable *kt, struct sift_config **cfg_r)
{
	struct sift_config *cfg = load_config(o);
	if (!cfg)
		return -1;
	char *err = NULL;
	char *spec = sift_config_get(cfg, "dkim_key_table", &err);
	if (!spec || !*spec) {
		fprintf(stderr, "siftctl dkim: dkim_key_table is not set in %s\n", o->config_file);
		free(spec);
		free(err);
		sift_config_free(cfg);
		return -1;
	}
	int rc = dk_keytable_load(spec, load, kt, &err);
	free(spec);
	if (rc < 0) {
		fprintf(stderr, "siftctl dkim: %s\n", err);
		free(err);
		sift_config_free(cfg);
		return -1;
	}
	if (cfg_r)
		*cfg_r = cfg;
	else
		sift_config_free(cfg);
	return 0;
}

static int cmd_genkey(int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL, *type = "rsa", *dir = ".", *file = NULL;
	int bits = 2048, c;
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
			fputs(dkim_usage, stderr);
			return 1;
		}
	}
	if (!domain || !selector || optind != argc) {
		fputs(dkim_usage, stderr);
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
	if (!domain_ok(domain) || !domain_ok(selector)) {
		fprintf(stderr, "siftctl dkim genkey: bad domain or selector\n");
		return 1;
	}
	char *path = file ? sift_strdup(file) : sift_asprintf("%s/%s.%s.key", dir, domain, selector);
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

static int cmd_showkeys(struct sift_opts *o)
{
	struct dk_keytable kt;
	if (load_keys(o, true, &kt, NULL) < 0)
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

static int cmd_testkeys(struct sift_opts *o)
{
	struct dk_keytable kt;
	struct sift_config *cfg = NULL;
	if (load_keys(o, true, &kt, &cfg) < 0)
		return 1;
	char *err = NULL;
	char *servers = sift_config_get(cfg, "dns_servers", &err);
	char *tmo = sift_config_get(cfg, "dns_timeout", &err);
	long long tmo_ms = 5000;
	if (tmo && *tmo && sift_parse_time_ms(tmo, &tmo_ms) < 0)
		tmo_ms = 5000;
	if (sift_dns_init(servers, (long)tmo_ms, &err) < 0) {
		fprintf(stderr, "siftctl dkim testkeys: %s\n", err);
		return 1;
	}
	int bad = 0;
	for (size_t i = 0; i < kt.n; i++) {
		const struct dk_key *k = &kt.keys[i];
		char *name = sift_asprintf("%s._domainkey.%s", k->selector, k->domain);
		struct sift_dns_result *r = sift_dns_query(name, 16, 0);
		const char *verdict = "error";
		char detail[200] = "";
		if (r && r->status == SIFT_DNS_OK) {
			verdict = "mismatch";
			for (size_t j = 0; j < r->count; j++) {
				char *p = dk_tag_value((const char *)r->rr[j], "p");
				char *kk = dk_tag_value((const char *)r->rr[j], "k");
				bool type_ok =
					!kk || strcasecmp(kk, k->type == DK_RSA ? "rsa" : "ed25519") == 0;
				if (p && !*p)
					snprintf(detail, sizeof(detail), " (revoked: empty p=)");
				else if (p && type_ok && strcmp(p, k->pub_b64) == 0)
					verdict = "pass";
				else if (!p)
					snprintf(detail, sizeof(detail), " (no p= in the record)");
				free(p);
				free(kk);
			}
		} else if (r && (r->status == SIFT_DNS_NXDOMAIN || r->status == SIFT_DNS_NODATA)) {
			verdict = "missing";
		} else {
			snprintf(detail, sizeof(detail), " (DNS lookup failed)");
		}
		printf("TESTING#%zu %s: %s => %s%s\n", i + 1, k->domain, name, verdict, detail);
		bad += strcmp(verdict, "pass") != 0;
		free(r);
		free(name);
	}
	free(servers);
	free(tmo);
	sift_config_free(cfg);
	dk_keytable_free(&kt);
	return bad ? 1 : 0;
}

/* Runs one stored message through the chain of a generation made for
 * siftctl with the given profile. Returns the verdict; *ctx_r stays open
 * for the caller to read the results (sift_ctx_free it). */
static int run_message(struct sift_gen *g, const char *file, enum sift_profile prof, const char *from,
		       enum sift_verdict *v_r, struct sift_ctx **ctx_r, struct sift_buf *raw)
{
	FILE *fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
	if (!fp) {
		fprintf(stderr, "siftctl dkim: %s: %s\n", file, strerror(errno));
		return -1;
	}
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		sift_buf_add(raw, chunk, n);
	if (fp != stdin)
		fclose(fp);
	FILE *mem = fmemopen(raw->data ? raw->data : (char *)"", raw->len, "rb");
	const struct sift_common_conf *cc = sift_gen_common(g);
	struct sift_msg *src = sift_msg_new((size_t)cc->message_memory_limit, cc->tmpdir);
	char *err = NULL;
	if (!mem || sift_msg_read_file(src, mem, &err) < 0) {
		fprintf(stderr, "siftctl dkim: %s: %s\n", file, err ? err : "cannot read");
		if (mem)
			fclose(mem);
		sift_msg_free(src);
		return -1;
	}
	fclose(mem);
	struct sift_ctx *ctx = sift_ctx_new(g, SIFT_SIFTCTL);
	sift_ctx_set(ctx, SIFT_I_CLIENT_ADDR, "127.0.0.1");
	sift_ctx_set(ctx, SIFT_I_CLIENT_NAME, "localhost");
	sift_ctx_force_profile(ctx, prof);
	enum sift_verdict v = sift_run(ctx, SIFT_PH_CONNECT);
	sift_ctx_msg_begin(ctx);
	sift_ctx_set(ctx, SIFT_I_QUEUE_ID, "SIFTCTL");
	sift_ctx_set(ctx, SIFT_I_SENDER, from ? from : "");
	if (v == SIFT_DUNNO)
		v = sift_run(ctx, SIFT_PH_MAIL);
	sift_ctx_set(ctx, SIFT_I_RCPT, "postmaster@localhost");
	if (v == SIFT_DUNNO && (v = sift_run(ctx, SIFT_PH_RCPT)) == SIFT_DUNNO)
		sift_ctx_add_rcpt(ctx, "postmaster@localhost");
	if (v == SIFT_DUNNO)
		v = sift_run(ctx, SIFT_PH_DATA);
	for (size_t i = 0; v == SIFT_DUNNO && i < sift_msg_header_count(src); i++) {
		const struct sift_header *h = sift_msg_header(src, i);
		v = sift_run_header(ctx, h->name, h->value);
	}
	if (v == SIFT_DUNNO)
		v = sift_run(ctx, SIFT_PH_EOH);
	long long off = 0;
	long r;
	while (v == SIFT_DUNNO && (r = sift_msg_body_read(src, off, chunk, sizeof(chunk))) > 0) {
		v = sift_run_body(ctx, chunk, (size_t)r);
		off += r;
	}
	if (v == SIFT_DUNNO)
		v = sift_run(ctx, SIFT_PH_EOM);
	sift_msg_free(src);
	*v_r = v;
	*ctx_r = ctx;
	return 0;
}

/* A generation with the dkim plugin alone in both profiles, plus extra
 * overrides. */
static struct sift_gen *dkim_gen(struct sift_opts *o, const char *const *extra)
{
	struct sift_opts x = *o;
	size_t ne = 0;
	while (extra && extra[ne])
		ne++;
	x.overrides = sift_calloc(o->n_overrides + ne + 3, sizeof(char *));
	for (size_t i = 0; i < o->n_overrides; i++)
		x.overrides[i] = o->overrides[i];
	x.n_overrides = o->n_overrides;
	x.overrides[x.n_overrides++] = (char *)"inbound_plugins = dkim";
	x.overrides[x.n_overrides++] = (char *)"originating_plugins = dkim";
	for (size_t i = 0; i < ne; i++)
		x.overrides[x.n_overrides++] = (char *)extra[i];
	return siftctl_load(&x, SIFT_SIFTCTL);
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
		char *item = sift_strndup(p, (size_t)(end - p));
		char *t = sift_trim(item);
		for (char *c = t; *c; c++)
			if (*c == '\r' || *c == '\n' || *c == '\t')
				*c = ' ';
		if (strncmp(t, "dkim=", 5) == 0) {
			n++;
			if (strncmp(t, "dkim=pass", 9) != 0)
				notpass++;
			printf("%s: %s\n", file, t);
		}
		free(item);
		p = *end ? end : NULL;
	}
	return n == 0 ? -1 : notpass;
}

static int cmd_verify(int argc, char **argv, struct sift_opts *o)
{
	static const char *const extra[] = {"dkim_verify = yes", "dkim_add_auth_results = yes", NULL};
	struct sift_gen *g = dkim_gen(o, extra);
	int status = 0;
	const char *stdin_only[] = {"-", NULL};
	char **files = argc > 1 ? argv + 1 : (char **)stdin_only;
	for (; *files; files++) {
		enum sift_verdict v;
		struct sift_ctx *ctx = NULL;
		struct sift_buf raw = {0};
		if (run_message(g, *files, SIFT_INBOUND, NULL, &v, &ctx, &raw) < 0) {
			status = 1;
			sift_buf_free(&raw);
			continue;
		}
		const struct sift_result *r = sift_ctx_result(ctx);
		const char *ar = NULL;
		for (const struct sift_edit *e = r->edits; e; e = e->next)
			if (e->value && strcasecmp(e->name, "Authentication-Results") == 0)
				ar = e->value;
		int bad = ar ? print_results(*files, ar) : -1;
		if (!ar)
			printf("%s: dkim=temperror reason=\"%s\"\n", *files, sift_verdict_names[v]);
		if (bad != 0)
			status = 1;
		sift_ctx_msg_end(ctx, v != SIFT_DUNNO);
		sift_ctx_free(ctx);
		sift_buf_free(&raw);
	}
	sift_gen_unref(g);
	return status;
}

static int cmd_sign(int argc, char **argv, struct sift_opts *o)
{
	const char *domain = NULL, *selector = NULL;
	int c;
	optind = 1;
	while ((c = getopt(argc, argv, "d:s:")) != -1) {
		if (c == 'd')
			domain = optarg;
		else if (c == 's')
			selector = optarg;
		else {
			fputs(dkim_usage, stderr);
			return 1;
		}
	}
	if (!domain || !selector || optind != argc - 1) {
		fputs(dkim_usage, stderr);
		return 1;
	}
	struct dk_keytable kt;
	if (load_keys(o, false, &kt, NULL) < 0)
		return 1;
	const struct dk_key *k = dk_keytable_find_ds(&kt, domain, selector);
	if (!k) {
		fprintf(stderr, "siftctl dkim sign: no key for d=%s s=%s in dkim_key_table\n", domain,
			selector);
		dk_keytable_free(&kt);
		return 1;
	}
	char *st = sift_asprintf("dkim_signing_table = static:%s", k->name);
	const char *extra[] = {st, "dkim_sender_check = no", "dkim_sign = yes", "dkim_sign_networks =", NULL};
	struct sift_gen *g = dkim_gen(o, extra);
	enum sift_verdict v;
	struct sift_ctx *ctx = NULL;
	struct sift_buf raw = {0};
	int status = 1;
	if (run_message(g, argv[optind], SIFT_ORIGINATING, NULL, &v, &ctx, &raw) == 0) {
		const struct sift_result *r = sift_ctx_result(ctx);
		bool crlf = raw.len && memmem(raw.data, raw.len, "\r\n", 2) != NULL;
		int nsig = 0;
		for (const struct sift_edit *e = r->edits; e; e = e->next) {
			if (!e->value || strcasecmp(e->name, "DKIM-Signature") != 0)
				continue;
			printf("%s: ", e->name);
			for (const char *p = e->value; *p; p++) {
				if (*p == '\r')
					continue;
				if (*p == '\n' && crlf)
					putchar('\r');
				putchar(*p);
			}
			fputs(crlf ? "\r\n" : "\n", stdout);
			nsig++;
		}
		if (v != SIFT_DUNNO || nsig == 0) {
			fprintf(stderr, "siftctl dkim sign: %s: not signed (%s; see the log above)\n",
				argv[optind],
				v != SIFT_DUNNO ? sift_verdict_names[v]
						: "no From header or nothing to sign");
		} else {
			fwrite(raw.data, 1, raw.len, stdout);
			status = 0;
		}
		sift_ctx_msg_end(ctx, v != SIFT_DUNNO);
		sift_ctx_free(ctx);
	}
	sift_buf_free(&raw);
	sift_gen_unref(g);
	free(st);
	dk_keytable_free(&kt);
	return status;
}

static int dkim_run(int argc, char **argv, struct sift_opts *o)
{
	if (argc < 2) {
		fputs(dkim_usage, stderr);
		return 1;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "genkey") == 0)
		return cmd_genkey(argc - 1, argv + 1);
	if (strcmp(sub, "showkeys") == 0)
		return cmd_showkeys(o);
	if (strcmp(sub, "testkeys") == 0)
		return cmd_testkeys(o);
	if (strcmp(sub, "verify") == 0)
		return cmd_verify(argc - 1, argv + 1, o);
	if (strcmp(sub, "sign") == 0)
		return cmd_sign(argc - 1, argv + 1, o);
	fprintf(stderr, "siftctl dkim: unknown command \"%s\"\n", sub);
	fputs(dkim_usage, stderr);
	return 1;
}

const struct siftctl_cmd siftctl_dkim_cmd = {"dkim", dkim_run, dkim_usage};
