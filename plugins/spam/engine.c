/*
 * engine.c - SpamAssassin rule files: parsing, compilation and scoring.
 *
 * Parsing (once per configuration generation, in the init thread): the rule
 * files are read in SpamAssassin's order (*.pre of every configured
 * directory, then *.cf of each directory in list order) with `if`,
 * `ifplugin`, `else`, `endif`, `include`, `loadplugin` handled; rules
 * (`header`, `body`, `rawbody`, `full`, `uri`, `mimeheader`, `meta`) and
 * their attributes (`score`, `describe`, `tflags`, `priority`) are collected
 * by name (later definitions win, as in SpamAssassin). ReplaceTags
 * (`replace_tag`, `replace_rules` ...) is applied before compiling.
 *
 * Compilation: every regex is compiled with PCRE2 (JIT); regexes of one
 * kind (body, rawbody, full, uri, and header rules sharing a target) are
 * also compiled together into one Hyperscan database in prefilter mode, so
 * that one scan of a text finds the candidate rules and PCRE2 only confirms
 * them. Patterns Hyperscan cannot take are matched by PCRE2 alone (listed by
 * lint). Databases are cached on disk (spam_cache_directory), keyed by a
 * hash of the patterns and the Hyperscan version.
 *
 * Scoring (many threads at once): per message, the texts SpamAssassin
 * matches (decoded headers, rendered body lines, decoded raw body, the
 * pristine message, URIs) are built from the parsed MIME view, every rule
 * kind is scanned, native eval: functions run, then meta rules are evaluated
 * in dependency order. Scores are those of set 0 (no Bayes, no network).
 * Per-call Hyperscan scratch comes from a locked pool.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#ifdef SPAM_HAVE_HS
#include <hs.h>
#endif

#include "engine.h"

/* ---- small utilities ---------------------------------------------------- */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}
static void *xcalloc(size_t n, size_t s)
{
	void *p = calloc(n ? n : 1, s ? s : 1);
	if (!p)
		abort();
	return p;
}
static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}
static char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}
static char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}
static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

struct sbuf {
	char *d;
	size_t n, cap;
};
static void sb_add(struct sbuf *b, const void *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2 + 64;
		b->d = xrealloc(b->d, b->cap);
	}
	memcpy(b->d + b->n, p, n);
	b->n += n;
	b->d[b->n] = 0;
}
static void sb_adds(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}
static const char *sb_str(struct sbuf *b)
{
	if (!b->d)
		sb_add(b, "", 0);
	return b->d;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h;
}

/* ---- rules ----------------------------------------------------------------- */

enum rtype { R_NONE = 0, R_HEADER, R_BODY, R_RAWBODY, R_FULL, R_URI, R_MIMEHEADER, R_META, R_SYMBOL, R_TMAX };
static const char *const rtype_names[] __attribute__((unused)) = {
	"none", "header", "body", "rawbody", "full", "uri", "mimeheader", "meta", "symbol_score"};

#define TF_MULTIPLE    0x01
#define TF_NET	       0x02
#define TF_NICE	       0x04
#define TF_LEARN       0x08
#define TF_USERCONF    0x10
#define TF_NOAUTOLEARN 0x20

struct rule {
	char *name;
	enum rtype type;
	char *where; /* file:line of the definition */
	/* regex rules */
	char *pattern, *flags;
	bool neg;     /* !~ */
	bool exists;  /* header NAME exists:Hdr */
	char *target; /* header spec (Subject, ALL, From:addr ...) */
	char *unset;  /* [if-unset: ...] */
	int target_idx;
	pcre2_code *re;
	bool utf;
	bool hs_exact; /* PCRE2 refused it (too large): Hyperscan alone, exact mode */
	/* eval */
	char *eval_fn;
	char **eval_args;
	int neval;
	int eval_id;
	/* meta */
	char *meta_src;
	int *rpn; /* tokens: >=0 rule index; negative = operator/number codes */
	double *rpn_num;
	int nrpn;
	bool meta_done_order;
	/* attributes */
	double score;
	bool has_score;
	char *describe;
	unsigned tflags;
	int maxhits;
	int priority;
	bool disabled;
	char *why; /* why disabled */
	int group; /* index of the rgroup it belongs to, -1 none */
};

struct lintmsg {
	char *text;
	bool error;
};

/* A group of regex rules matched against the same texts. */
struct rgroup {
	enum rtype type;
	int target_idx; /* header groups */
	int *rules;	/* rule indexes */
	size_t n;
#ifdef SPAM_HAVE_HS
	hs_database_t *exact_db; /* rules PCRE2 cannot compile (hs_exact) */
#endif
	int *pcre_only; /* rules matched by PCRE2 alone in the base matcher */
	size_t npcre;
};

struct target {
	char *name; /* the header name or special name */
	bool raw, addr, nameonly, exists;
	char *spec; /* full spec text, for dedup */
};

struct scratch_pool {
	pthread_mutex_t lock;
#ifdef SPAM_HAVE_HS
	hs_scratch_t *proto;
	hs_scratch_t **free;
#endif
	size_t nfree, cap;
};

struct spam_engine {
	struct rule *rules;
	size_t nrules, rcap;
	/* name -> index hash */
	int *hash;
	size_t hcap;
	struct target *targets;
	size_t ntargets;
	struct rgroup *groups;
	size_t ngroups;
	int *meta_order; /* metas in evaluation order */
	size_t nmeta;
	double required;
	struct lintmsg *lint;
	size_t nlint;
	/* config state */
	char **plugins; /* loaded plugin modules */
	size_t nplugins;
	/* replace tags */
	char **tag_names, **tag_vals;
	size_t ntags;
	char **pre_names, **pre_vals, **inter_names, **inter_vals, **post_names, **post_vals;
	size_t npre, ninter, npost;
	char **replace_rules;
	size_t nreplace;
	char **freemail; /* freemail_domains: exact names, sorted after load */
	size_t nfreemail, freemail_cap;
	char **freemail_glob; /* entries with * or ? */
	size_t nfreemail_glob;
	/* rule index lists by what the per-message pass does with them */
	int *post_hdr, *eval_rules, *sym_rules;
	size_t npost_hdr, neval_rules, nsym_rules;
	size_t body_scan_size;
	bool use_hs;
	char *cache_dir;	  /* NULL: no cache */
	struct scratch_pool pool; /* for the exact databases */
#ifdef SPAM_HAVE_HS
	_Atomic(struct hsmatch *) hs; /* the Hyperscan matcher, once ready */
	/* its background compile */
	struct hsmatch *bg_match;
	bool *bg_need; /* per group: compiled by the child */
	pthread_t bg_thread;
	bool bg_thread_started, bg_cancel, from_cache;
	pthread_mutex_t bg_lock;
	pthread_cond_t bg_cond;
	pid_t bg_child;
	int bg_fd, bg_state;
	char *bg_err;
	long long bg_start;
	unsigned cache_errors;
	char *cache_why; /* why the cache directory is not used */
#endif
	unsigned stats_disabled, stats_eval_unknown;
	int include_depth;
	void (*log)(int level, const char *msg);
};

static void lint(struct spam_engine *e, bool error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void lint(struct spam_engine *e, bool error, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	if (e->nlint % 64 == 0)
		e->lint = xrealloc(e->lint, (e->nlint + 64) * sizeof(*e->lint));
	e->lint[e->nlint].text = s;
	e->lint[e->nlint].error = error;
	e->nlint++;
}

static uint64_t strhash(const char *s)
{
	return fnv1a(1469598103934665603ull, s, strlen(s));
}

static void hash_rebuild(struct spam_engine *e)
{
	free(e->hash);
	e->hcap = 1024;
	while (e->hcap < e->nrules * 3)
		e->hcap *= 2;
	e->hash = xmalloc(e->hcap * sizeof(int));
	for (size_t i = 0; i < e->hcap; i++)
		e->hash[i] = -1;
	for (size_t i = 0; i < e->nrules; i++) {
		size_t k = strhash(e->rules[i].name) & (e->hcap - 1);
		while (e->hash[k] >= 0)
			k = (k + 1) & (e->hcap - 1);
		e->hash[k] = (int)i;
	}
}

static int rule_find(const struct spam_engine *e, const char *name)
{
	if (!e->hash)
		return -1;
	size_t k = strhash(name) & (e->hcap - 1);
	while (e->hash[k] >= 0) {
		if (strcmp(e->rules[e->hash[k]].name, name) == 0)
			return e->hash[k];
		k = (k + 1) & (e->hcap - 1);
	}
	return -1;
}

static struct rule *rule_get(struct spam_engine *e, const char *name)
{
	int i = rule_find(e, name);
	if (i >= 0)
		return &e->rules[i];
	if (e->nrules == e->rcap) {
		e->rcap = e->rcap ? e->rcap * 2 : 1024;
		e->rules = xrealloc(e->rules, e->rcap * sizeof(*e->rules));
	}
	struct rule *r = &e->rules[e->nrules++];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(name);
	r->eval_id = -1;
	r->target_idx = -1;
	r->group = -1;
	if (e->nrules * 3 > e->hcap)
		hash_rebuild(e);
	else {
		size_t k = strhash(name) & (e->hcap - 1);
		while (e->hash[k] >= 0)
			k = (k + 1) & (e->hcap - 1);
		e->hash[k] = (int)(e->nrules - 1);
	}
	return r;
}

static void rule_clear_def(struct rule *r)
{
	free(r->pattern);
	free(r->flags);
	free(r->target);
	free(r->unset);
	free(r->eval_fn);
	for (int i = 0; i < r->neval; i++)
		free(r->eval_args[i]);
	free(r->eval_args);
	free(r->meta_src);
	free(r->where);
	r->pattern = r->flags = r->target = r->unset = r->eval_fn = r->meta_src = r->where = NULL;
	r->eval_args = NULL;
	r->neval = 0;
	r->neg = r->exists = false;
}

/* ---- evals (declared here, defined below) --------------------------------- */

struct msgctx;
typedef int (*eval_fn)(struct msgctx *m, const struct rule *r);
struct evaldef {
	const char *name;
	eval_fn fn;
};
static const struct evaldef evals[];
static int eval_lookup(const char *name);

/* ---- the `if` expression ---------------------------------------------------- */

struct ifp {
	const char *s;
	struct spam_engine *e;
	bool err;
};

static void if_ws(struct ifp *p)
{
	while (*p->s == ' ' || *p->s == '\t')
		p->s++;
}

static bool plugin_loaded(struct spam_engine *e, const char *name)
{
	for (size_t i = 0; i < e->nplugins; i++)
		if (strcmp(e->plugins[i], name) == 0)
			return true;
	return false;
}

static double if_or(struct ifp *p);
static double if_prim(struct ifp *p)
{
	if_ws(p);
	if (*p->s == '(') {
		p->s++;
		double v = if_or(p);
		if_ws(p);
		if (*p->s == ')')
			p->s++;
		else
			p->err = true;
		return v;
	}
	if (*p->s == '!') {
		p->s++;
		return !if_prim(p);
	}
	if (strncmp(p->s, "not ", 4) == 0) {
		p->s += 4;
		return !if_prim(p);
	}
	if (isdigit((unsigned char)*p->s) || *p->s == '.') {
		char *end;
		double v = strtod(p->s, &end);
		p->s = end;
		return v;
	}
	const char *w = p->s;
	while (isalnum((unsigned char)*p->s) || *p->s == '_')
		p->s++;
	size_t wl = (size_t)(p->s - w);
	if (wl == 7 && strncmp(w, "version", 7) == 0)
		return 4.000001;
	if (wl == 12 && strncmp(w, "perl_version", 12) == 0)
		return 5.036;
	if (wl == 4 && (strncmp(w, "true", 4) == 0))
		return 1;
	if_ws(p);
	if (*p->s == '(' && wl > 0) {
		const char *a = ++p->s;
		while (*p->s && *p->s != ')')
			p->s++;
		char *arg = xstrndup(a, (size_t)(p->s - a));
		if (*p->s == ')')
			p->s++;
		char *t = arg;
		while (*t == ' ')
			t++;
		size_t al = strlen(t);
		while (al && t[al - 1] == ' ')
			t[--al] = 0;
		double v = 0;
		if (wl == 6 && strncmp(w, "plugin", 6) == 0)
			v = plugin_loaded(p->e, t);
		else if (wl == 3 && strncmp(w, "can", 3) == 0)
			v = 1; /* every Conf feature of SpamAssassin 4.0 */
		else if (wl == 3 && strncmp(w, "has", 3) == 0)
			v = 1;
		else
			p->err = true;
		free(arg);
		return v;
	}
	p->err = true;
	return 0;
}

static double if_cmp(struct ifp *p)
{
	double a = if_prim(p);
	for (;;) {
		if_ws(p);
		const char *s = p->s;
		int op = 0;
		if (strncmp(s, ">=", 2) == 0)
			op = 1;
		else if (strncmp(s, "<=", 2) == 0)
			op = 2;
		else if (strncmp(s, "==", 2) == 0)
			op = 3;
		else if (strncmp(s, "!=", 2) == 0)
			op = 4;
		else if (*s == '>')
			op = 5;
		else if (*s == '<')
			op = 6;
		if (!op)
			return a;
		p->s += op <= 4 ? 2 : 1;
		double b = if_prim(p);
		switch (op) {
		case 1:
			a = a >= b;
			break;
		case 2:
			a = a <= b;
			break;
		case 3:
			a = a == b;
			break;
		case 4:
			a = a != b;
			break;
		case 5:
			a = a > b;
			break;
		default:
			a = a < b;
			break;
		}
	}
}

static double if_and(struct ifp *p)
{
	double a = if_cmp(p);
	for (;;) {
		if_ws(p);
		if (strncmp(p->s, "&&", 2) == 0)
			p->s += 2;
		else if (strncmp(p->s, "and ", 4) == 0)
			p->s += 4;
		else
			return a;
		double b = if_cmp(p);
		a = a && b;
	}
}

static double if_or(struct ifp *p)
{
	double a = if_and(p);
	for (;;) {
		if_ws(p);
		if (strncmp(p->s, "||", 2) == 0)
			p->s += 2;
		else if (strncmp(p->s, "or ", 3) == 0)
			p->s += 3;
		else
			return a;
		double b = if_and(p);
		a = a || b;
	}
}

static int if_eval(struct spam_engine *e, const char *expr)
{
	struct ifp p = {expr, e, false};
	double v = if_or(&p);
	if_ws(&p);
	if (p.err || *p.s)
		return -1;
	return v != 0;
}

/* ---- parsing ------------------------------------------------------------ */

/* Splits "/re/flags" or "m{re}flags" at s; returns the end or NULL. */
static const char *parse_regex(const char *s, char **pat_r, char **flags_r)
{
	char open, close;
	if (*s == 'm' && s[1] && !isalnum((unsigned char)s[1]) && !isspace((unsigned char)s[1])) {
		open = s[1];
		s += 2;
	} else if (*s == '/') {
		open = '/';
		s++;
	} else
		return NULL;
	close = open == '{' ? '}' : open == '(' ? ')' : open == '[' ? ']' : open == '<' ? '>' : open;
	int depth = 0;
	const char *p = s;
	for (; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (open != close && *p == open)
			depth++;
		else if (*p == close) {
			if (depth == 0)
				break;
			depth--;
		}
	}
	if (*p != close)
		return NULL;
	*pat_r = xstrndup(s, (size_t)(p - s));
	p++;
	const char *f = p;
	while (isalpha((unsigned char)*p))
		p++;
	*flags_r = xstrndup(f, (size_t)(p - f));
	return p;
}

/* eval:name(args) -> name and args (quotes removed). */
static int parse_eval(const char *s, struct rule *r)
{
	const char *p = s;
	while (isalnum((unsigned char)*p) || *p == '_')
		p++;
	if (p == s)
		return -1;
	r->eval_fn = xstrndup(s, (size_t)(p - s));
	while (*p == ' ')
		p++;
	if (*p != '(')
		return 0;
	p++;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == ')' || !*p)
			break;
		struct sbuf a = {0};
		if (*p == '\'' || *p == '"') {
			char q = *p++;
			while (*p && *p != q) {
				if (*p == '\\' && p[1] == q)
					p++;
				sb_add(&a, p, 1);
				p++;
			}
			if (*p)
				p++;
		} else {
			while (*p && *p != ',' && *p != ')') {
				sb_add(&a, p, 1);
				p++;
			}
			while (a.n && a.d[a.n - 1] == ' ')
				a.d[--a.n] = 0;
		}
		r->eval_args = xrealloc(r->eval_args, (size_t)(r->neval + 1) * sizeof(char *));
		r->eval_args[r->neval++] = a.d ? a.d : xstrdup("");
	}
	return 0;
}

static void add_plugin(struct spam_engine *e, const char *name)
{
	if (plugin_loaded(e, name))
		return;
	e->plugins = xrealloc(e->plugins, (e->nplugins + 1) * sizeof(char *));
	e->plugins[e->nplugins++] = xstrdup(name);
}

static void add_pair(char ***names, char ***vals, size_t *n, const char *name, const char *val)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*names)[i], name) == 0) {
			free((*vals)[i]);
			(*vals)[i] = xstrdup(val);
			return;
		}
	*names = xrealloc(*names, (*n + 1) * sizeof(char *));
	*vals = xrealloc(*vals, (*n + 1) * sizeof(char *));
	(*names)[*n] = xstrdup(name);
	(*vals)[*n] = xstrdup(val);
	(*n)++;
}

/* Directives we know and deliberately ignore (network, Bayes, lists and
 * reporting settings that do not change local scoring). */
static const char *const ignored[] = {"lang",
				      "def_whitelist_auth",
				      "def_welcomelist_auth",
				      "util_rb_tld",
				      "util_rb_2tld",
				      "util_rb_3tld",
				      "freemail_domains",
				      "bayes_ignore_header",
				      "reuse",
				      "url_shortener",
				      "enlist_uri_host",
				      "uridnsbl_skip_domain",
				      "def_whitelist_from_dkim",
				      "def_welcomelist_from_dkim",
				      "adsp_override",
				      "enlist_addrlist",
				      "dns_local_ports_avoid",
				      "test",
				      "urirhssub",
				      "urirhsbl",
				      "uridnsbl",
				      "uridnssub",
				      "require_version",
				      "report",
				      "redirector_pattern",
				      "askdns",
				      "def_whitelist_from_spf",
				      "def_welcomelist_from_spf",
				      "dns_block_rule",
				      "add_header",
				      "unsafe_report",
				      "clear_report_template",
				      "report_contact",
				      "report_safe",
				      "clear_headers",
				      "remove_header",
				      "rewrite_header",
				      "clear_unsafe_report_template",
				      "whitelist_from",
				      "welcomelist_from",
				      "blacklist_from",
				      "blocklist_from",
				      "whitelist_to",
				      "welcomelist_to",
				      "all_spam_to",
				      "more_spam_to",
				      "freemail_whitelist",
				      "freemail_welcomelist",
				      "freemail_import_whitelist_auth",
				      "freemail_import_welcomelist_auth",
				      "hashbl_acl_freemail",
				      "header_hashbl",
				      "body_hashbl",
				      "uri_block_cc",
				      "uri_block_cont",
				      "uri_block_cidr",
				      "asn_lookup",
				      "asn_lookup_ipv6",
				      "asn_prefix",
				      "clear_originating_ip_headers",
				      "originating_ip_headers",
				      "trusted_networks",
				      "internal_networks",
				      "msa_networks",
				      "use_bayes",
				      "use_auto_whitelist",
				      "bayes_auto_learn",
				      "use_razor2",
				      "use_pyzor",
				      "use_dcc",
				      "skip_rbl_checks",
				      "dns_available",
				      "envelope_sender_header",
				      "ok_locales",
				      "ok_languages",
				      "normalize_charset",
				      "textcat_max_languages",
				      "report_charset",
				      "fold_headers",
				      "pyzor_options",
				      "razor_config",
				      "dcc_home",
				      "bayes_path",
				      "auto_whitelist_path",
				      "bayes_file_mode",
				      "whitelist_auth",
				      "welcomelist_auth",
				      "blacklist_to",
				      "blocklist_to",
				      "def_whitelist_from_rcvd",
				      "def_welcomelist_from_rcvd",
				      "whitelist_from_rcvd",
				      "welcomelist_from_rcvd",
				      "unwhitelist_from",
				      "hashcash_accept",
				      "util_rb_tld",
				      "rbl_timeout",
				      "dns_server",
				      "dns_options",
				      "uridnsbl_max_domains",
				      "check_mx_attempts",
				      "check_mx_delay",
				      "lock_method",
				      "body_part_scan_size",
				      "rawbody_part_scan_size",
				      "tflags_net",
				      "dkim_timeout",
				      "whitelist_from_dkim",
				      "welcomelist_from_dkim",
				      "whitelist_from_spf",
				      "welcomelist_from_spf",
				      "spf_timeout",
				      "mimeheader_fold",
				      "shortcircuit",
				      "ifplugin_end",
				      "subjprefix",
				      "add_header_all",
				      "autolearn_force",
				      "bayes_min_spam_num",
				      "bayes_min_ham_num",
				      "bayes_auto_learn_threshold_spam",
				      "bayes_auto_learn_threshold_nonspam",
				      "pdfinfo_timeout",
				      "tld_enlist",
				      "dkim_minimum_key_bits",
				      "uri_country",
				      "uri_block_cc_header",
				      "whitelist_subject",
				      "welcomelist_subject",
				      "blacklist_subject",
				      "blocklist_subject",
				      "dmarc_save_reports",
				      "txrep_factor",
				      "use_txrep",
				      "auto_welcomelist_path",
				      "use_auto_welcomelist",
				      "hashbl_ignore",
				      "uridnsbl_skip_domains",
				      "parse_dkim_uris",
				      "util_rb_suffix",
				      "allow_user_rules",
				      "dns_query_restriction",
				      "url_shortener_get",
				      "url_shortener_cache_type",
				      "url_shortener_max",
				      "decode_short_url",
				      "unwelcomelist_from",
				      "blocklist_uri_host",
				      "blacklist_uri_host",
				      "whitelist_uri_host",
				      "welcomelist_uri_host",
				      "enable_compat",
				      "clear_util_rb",
				      NULL};

static bool is_ignored(const char *d)
{
	for (const char *const *p = ignored; *p; p++)
		if (strcmp(*p, d) == 0)
			return true;
	return strncmp(d, "bayes_", 6) == 0 || strncmp(d, "dcc_", 4) == 0 || strncmp(d, "razor_", 6) == 0 ||
	       strncmp(d, "pyzor_", 6) == 0 || strncmp(d, "dns_", 4) == 0 || strncmp(d, "util_rb", 7) == 0 ||
	       strncmp(d, "urirhs", 6) == 0 || strncmp(d, "dkim_", 5) == 0 || strncmp(d, "dmarc_", 6) == 0 ||
	       strncmp(d, "txrep_", 6) == 0 || strncmp(d, "auto_", 5) == 0 || strncmp(d, "ok_", 3) == 0 ||
	       strncmp(d, "spamcop_", 8) == 0 || strncmp(d, "askdns", 6) == 0 ||
	       strncmp(d, "freemail_", 9) == 0 || strncmp(d, "hashbl_", 7) == 0 ||
	       strncmp(d, "uridnsbl", 8) == 0 || strncmp(d, "short_url", 9) == 0 ||
	       strncmp(d, "url_shortener", 13) == 0 || strncmp(d, "def_", 4) == 0 ||
	       strncmp(d, "whitelist_", 10) == 0 || strncmp(d, "welcomelist_", 12) == 0 ||
	       strncmp(d, "blacklist_", 10) == 0 || strncmp(d, "blocklist_", 10) == 0 ||
	       strncmp(d, "report_", 7) == 0 || strncmp(d, "pdfinfo_", 8) == 0 ||
	       strncmp(d, "textcat_", 8) == 0 || strncmp(d, "uri_", 4) == 0 || strncmp(d, "tflags_", 7) == 0;
}

static int load_path(struct spam_engine *e, const char *path, bool pre_only, bool cf_only, char **err_r);

struct ifstate {
	bool active[64];
	bool taken[64];
	int depth;
};

static bool if_active(const struct ifstate *st)
{
	for (int i = 0; i < st->depth; i++)
		if (!st->active[i])
			return false;
	return true;
}

static void set_score(struct spam_engine *e, const char *name, const char *vals, const char *where)
{
	double v[4];
	int n = 0;
	const char *p = vals;
	while (n < 4) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			break;
		char *end;
		v[n] = strtod(p, &end);
		if (end == p) {
			lint(e, true, "%s: score %s: bad number", where, name);
			return;
		}
		p = end;
		if (*p == ')') /* "(2.0)" forms are not used; tolerate */
			p++;
		n++;
	}
	if (n == 0) {
		lint(e, true, "%s: score %s: no value", where, name);
		return;
	}
	struct rule *r = rule_get(e, name);
	r->score = v[0]; /* set 0: no Bayes, no network */
	r->has_score = true;
}

static void parse_line(struct spam_engine *e, char *line, const char *where, struct ifstate *st,
		       const char *dir)
{
	/* strip comments (# not escaped) and trailing blanks */
	for (char *p = line; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == '#') {
			*p = 0;
			break;
		}
	}
	size_t len = strlen(line);
	while (len && isspace((unsigned char)line[len - 1]))
		line[--len] = 0;
	char *s = line;
	while (isspace((unsigned char)*s))
		s++;
	if (!*s)
		return;
	char *d = s;
	while (*s && !isspace((unsigned char)*s))
		s++;
	if (*s)
		*s++ = 0;
	while (isspace((unsigned char)*s))
		s++;
	/* conditionals first */
	if (strcmp(d, "if") == 0 || strcmp(d, "ifplugin") == 0) {
		if (st->depth >= 63) {
			lint(e, true, "%s: conditionals nested too deep", where);
			return;
		}
		int v;
		if (d[2] == 'p')
			v = plugin_loaded(e, s);
		else {
			v = if_eval(e, s);
			if (v < 0) {
				lint(e, true, "%s: cannot evaluate 'if %s'", where, s);
				v = 0;
			}
		}
		st->active[st->depth] = v;
		st->depth++;
		return;
	}
	if (strcmp(d, "else") == 0) {
		if (st->depth > 0)
			st->active[st->depth - 1] = !st->active[st->depth - 1];
		else
			lint(e, true, "%s: else without if", where);
		return;
	}
	if (strcmp(d, "endif") == 0) {
		if (st->depth > 0)
			st->depth--;
		else
			lint(e, true, "%s: endif without if", where);
		return;
	}
	if (!if_active(st))
		return;
	if (strcmp(d, "loadplugin") == 0 || strcmp(d, "tryplugin") == 0) {
		char *sp = s;
		while (*sp && !isspace((unsigned char)*sp))
			sp++;
		*sp = 0;
		add_plugin(e, s);
		return;
	}
	if (strcmp(d, "include") == 0) {
		char *p = *s == '/' ? xstrdup(s) : xasprintf("%s/%s", dir, s);
		char *err = NULL;
		if (e->include_depth > 10)
			lint(e, true, "%s: include nested too deep", where);
		else if (load_path(e, p, false, false, &err) < 0) {
			lint(e, true, "%s: include %s: %s", where, p, err);
			free(err);
		}
		free(p);
		return;
	}
	if (strcmp(d, "freemail_domains") == 0) {
		for (char *t = strtok(s, " \t"); t; t = strtok(NULL, " \t")) {
			if (e->nfreemail == e->freemail_cap) {
				e->freemail_cap = e->freemail_cap ? e->freemail_cap * 2 : 1024;
				e->freemail = xrealloc(e->freemail, e->freemail_cap * sizeof(char *));
			}
			char *dd = xstrdup(t);
			for (char *c = dd; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			e->freemail[e->nfreemail++] = dd;
		}
		return;
	}
	if (strcmp(d, "required_score") == 0 || strcmp(d, "required_hits") == 0) {
		e->required = strtod(s, NULL);
		return;
	}
	/* directives with a rule name */
	char *name = s;
	while (*s && !isspace((unsigned char)*s))
		s++;
	if (*s)
		*s++ = 0;
	while (isspace((unsigned char)*s))
		s++;
	char *rest = s;
	if (strcmp(d, "score") == 0) {
		set_score(e, name, rest, where);
		return;
	}
	if (strcmp(d, "describe") == 0) {
		struct rule *r = rule_get(e, name);
		free(r->describe);
		r->describe = xstrdup(rest);
		return;
	}
	if (strcmp(d, "tflags") == 0) {
		struct rule *r = rule_get(e, name);
		r->tflags = 0;
		r->maxhits = 0;
		for (char *t = strtok(rest, " \t"); t; t = strtok(NULL, " \t")) {
			if (strcmp(t, "multiple") == 0)
				r->tflags |= TF_MULTIPLE;
			else if (strcmp(t, "net") == 0)
				r->tflags |= TF_NET;
			else if (strcmp(t, "nice") == 0)
				r->tflags |= TF_NICE;
			else if (strcmp(t, "learn") == 0)
				r->tflags |= TF_LEARN;
			else if (strcmp(t, "userconf") == 0)
				r->tflags |= TF_USERCONF;
			else if (strcmp(t, "noautolearn") == 0)
				r->tflags |= TF_NOAUTOLEARN;
			else if (strncmp(t, "maxhits=", 8) == 0) {
				r->tflags |= TF_MULTIPLE;
				r->maxhits = atoi(t + 8);
			}
		}
		return;
	}
	if (strcmp(d, "priority") == 0) {
		rule_get(e, name)->priority = atoi(rest);
		return;
	}
	if (strcmp(d, "replace_tag") == 0) {
		add_pair(&e->tag_names, &e->tag_vals, &e->ntags, name, rest);
		return;
	}
	if (strcmp(d, "replace_pre") == 0) {
		add_pair(&e->pre_names, &e->pre_vals, &e->npre, name, rest);
		return;
	}
	if (strcmp(d, "replace_inter") == 0) {
		add_pair(&e->inter_names, &e->inter_vals, &e->ninter, name, rest);
		return;
	}
	if (strcmp(d, "replace_post") == 0) {
		add_pair(&e->post_names, &e->post_vals, &e->npost, name, rest);
		return;
	}
	if (strcmp(d, "replace_rules") == 0) {
		/* name plus the rest: a list of rule names */
		char *all = xasprintf("%s %s", name, rest);
		for (char *t = strtok(all, " \t"); t; t = strtok(NULL, " \t")) {
			e->replace_rules = xrealloc(e->replace_rules, (e->nreplace + 1) * sizeof(char *));
			e->replace_rules[e->nreplace++] = xstrdup(t);
		}
		free(all);
		return;
	}
	if (strcmp(d, "replace_start") == 0 || strcmp(d, "replace_end") == 0)
		return; /* we use the default <> */
	if (strcmp(d, "symbol_score") == 0) {
		struct rule *r = rule_get(e, name);
		rule_clear_def(r);
		r->type = R_SYMBOL;
		r->where = xstrdup(where);
		set_score(e, name, rest, where);
		return;
	}
	enum rtype t = R_NONE;
	if (strcmp(d, "header") == 0)
		t = R_HEADER;
	else if (strcmp(d, "body") == 0)
		t = R_BODY;
	else if (strcmp(d, "rawbody") == 0)
		t = R_RAWBODY;
	else if (strcmp(d, "full") == 0)
		t = R_FULL;
	else if (strcmp(d, "uri") == 0)
		t = R_URI;
	else if (strcmp(d, "mimeheader") == 0)
		t = R_MIMEHEADER;
	else if (strcmp(d, "meta") == 0)
		t = R_META;
	if (t == R_NONE) {
		if (!is_ignored(d))
			lint(e, true, "%s: unknown directive '%s'", where, d);
		return;
	}
	if (!*name) {
		lint(e, true, "%s: %s without a rule name", where, d);
		return;
	}
	struct rule *r = rule_get(e, name);
	rule_clear_def(r);
	r->type = t;
	r->where = xstrdup(where);
	r->disabled = false;
	free(r->why);
	r->why = NULL;
	if (t == R_META) {
		r->meta_src = xstrdup(rest);
		return;
	}
	if (strncmp(rest, "eval:", 5) == 0) {
		if (parse_eval(rest + 5, r) < 0) {
			r->disabled = true;
			r->why = xstrdup("bad eval syntax");
			lint(e, true, "%s: %s: bad eval: %s", where, name, rest);
		}
		return;
	}
	if (t == R_HEADER || t == R_MIMEHEADER) {
		if (strncmp(rest, "exists:", 7) == 0) {
			r->exists = true;
			char *h = rest + 7;
			size_t hl = strcspn(h, " \t");
			r->target = xstrndup(h, hl);
			return;
		}
		char *h = rest;
		size_t hl = strcspn(h, " \t");
		r->target = xstrndup(h, hl);
		char *p = h + hl;
		while (isspace((unsigned char)*p))
			p++;
		if (strncmp(p, "=~", 2) == 0)
			r->neg = false;
		else if (strncmp(p, "!~", 2) == 0)
			r->neg = true;
		else {
			r->disabled = true;
			r->why = xstrdup("no =~ or !~ operator");
			lint(e, true, "%s: %s: header rule without =~/!~", where, name);
			return;
		}
		p += 2;
		while (isspace((unsigned char)*p))
			p++;
		const char *end = parse_regex(p, &r->pattern, &r->flags);
		if (!end) {
			r->disabled = true;
			r->why = xstrdup("bad regex syntax");
			lint(e, true, "%s: %s: cannot parse regex: %s", where, name, p);
			return;
		}
		const char *u = strstr(end, "[if-unset:");
		if (u) {
			u += 10;
			while (*u == ' ')
				u++;
			const char *ue = strrchr(u, ']');
			r->unset = xstrndup(u, ue ? (size_t)(ue - u) : strlen(u));
			size_t ul = strlen(r->unset);
			while (ul && r->unset[ul - 1] == ' ')
				r->unset[--ul] = 0;
		}
		return;
	}
	if (!parse_regex(rest, &r->pattern, &r->flags)) {
		r->disabled = true;
		r->why = xstrdup("bad regex syntax");
		lint(e, true, "%s: %s: cannot parse regex: %s", where, name, rest);
	}
}

static int load_file(struct spam_engine *e, const char *path, char **err_r)
{
	FILE *fp = fopen(path, "r");
	if (!fp) {
		*err_r = xasprintf("%s: %s", path, strerror(errno));
		return -1;
	}
	char *dir = xstrdup(path);
	char *sl = strrchr(dir, '/');
	if (sl)
		*sl = 0;
	else
		strcpy(dir, ".");
	struct ifstate st = {0};
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned lineno = 0;
	e->include_depth++;
	while ((n = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		char where[512];
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		parse_line(e, line, where, &st, dir);
	}
	e->include_depth--;
	if (st.depth)
		lint(e, true, "%s:%u: %d if/ifplugin without endif at the end of the file", path, lineno,
		     st.depth);
	free(line);
	free(dir);
	fclose(fp);
	return 0;
}

static int namecmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int load_dir(struct spam_engine *e, const char *path, const char *suffix, char **err_r)
{
	DIR *dh = opendir(path);
	if (!dh) {
		*err_r = xasprintf("%s: %s", path, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	size_t sl = strlen(suffix);
	while ((de = readdir(dh))) {
		size_t l = strlen(de->d_name);
		if (de->d_name[0] == '.' || l <= sl || strcmp(de->d_name + l - sl, suffix) != 0)
			continue;
		names = xrealloc(names, (n + 1) * sizeof(char *));
		names[n++] = xstrdup(de->d_name);
	}
	closedir(dh);
	if (n)
		qsort(names, n, sizeof(char *), namecmp);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		char *p = xasprintf("%s/%s", path, names[i]);
		if (rc == 0 && load_file(e, p, err_r) < 0)
			rc = -1;
		free(p);
		free(names[i]);
	}
	free(names);
	return rc;
}

static int load_path(struct spam_engine *e, const char *path, bool pre_only, bool cf_only, char **err_r)
{
	struct stat sb;
	if (stat(path, &sb) < 0) {
		*err_r = xasprintf("%s: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(sb.st_mode)) {
		if (!cf_only && load_dir(e, path, ".pre", err_r) < 0)
			return -1;
		if (!pre_only && load_dir(e, path, ".cf", err_r) < 0)
			return -1;
		return 0;
	}
	if (pre_only)
		return 0;
	return load_file(e, path, err_r);
}

/* ---- ReplaceTags -------------------------------------------------------- */

static const char *pair_get(char **names, char **vals, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return vals[i];
	return NULL;
}

static void apply_replace_tags(struct spam_engine *e, struct rule *r)
{
	const char *s = r->pattern;
	if (!strchr(s, '<'))
		return;
	/* pre/inter/post markers */
	const char *pre = "", *inter = "", *post = "";
	struct sbuf tmp = {0};
	for (const char *p = s; *p;) {
		if (*p == '\\' && p[1]) {
			sb_add(&tmp, p, 2);
			p += 2;
			continue;
		}
		if (*p == '<') {
			const char *gt = strchr(p, '>');
			char *inner = gt ? xstrndup(p + 1, (size_t)(gt - p - 1)) : NULL;
			if (inner) {
				const char *v = NULL;
				if (strncmp(inner, "pre ", 4) == 0 &&
				    (v = pair_get(e->pre_names, e->pre_vals, e->npre, inner + 4)))
					pre = v;
				else if (strncmp(inner, "inter ", 6) == 0 &&
					 (v = pair_get(e->inter_names, e->inter_vals, e->ninter, inner + 6)))
					inter = v;
				else if (strncmp(inner, "post ", 5) == 0 &&
					 (v = pair_get(e->post_names, e->post_vals, e->npost, inner + 5)))
					post = v;
				free(inner);
				if (v) {
					p = gt + 1;
					continue;
				}
			}
		}
		sb_add(&tmp, p, 1);
		p++;
	}
	struct sbuf out = {0};
	bool last_tag = false;
	const char *t = sb_str(&tmp);
	for (const char *p = t; *p;) {
		if (*p == '\\' && p[1]) {
			sb_add(&out, p, 2);
			p += 2;
			last_tag = false;
			continue;
		}
		if (*p == '<') {
			const char *q = p + 1;
			while (isalnum((unsigned char)*q) || *q == '_')
				q++;
			if (*q == '>' && q > p + 1) {
				char *nm = xstrndup(p + 1, (size_t)(q - p - 1));
				const char *v = pair_get(e->tag_names, e->tag_vals, e->ntags, nm);
				free(nm);
				if (v) {
					if (last_tag)
						sb_adds(&out, inter);
					sb_adds(&out, pre);
					sb_adds(&out, v);
					sb_adds(&out, post);
					last_tag = true;
					p = q + 1;
					continue;
				}
			}
		}
		last_tag = false;
		sb_add(&out, p, 1);
		p++;
	}
	free(tmp.d);
	free(r->pattern);
	r->pattern = out.d ? out.d : xstrdup("");
}

/* ---- compile -------------------------------------------------------------- */

static uint32_t pcre_flags(const char *f)
{
	uint32_t o = 0;
	for (; f && *f; f++) {
		if (*f == 'i')
			o |= PCRE2_CASELESS;
		else if (*f == 's')
			o |= PCRE2_DOTALL;
		else if (*f == 'm')
			o |= PCRE2_MULTILINE;
		else if (*f == 'x')
			o |= PCRE2_EXTENDED;
	}
	return o;
}

static int compile_pcre(struct spam_engine *e, struct rule *r)
{
	int ec;
	PCRE2_SIZE eo;
	uint32_t fl = pcre_flags(r->flags);
	r->re = pcre2_compile((PCRE2_SPTR)r->pattern, PCRE2_ZERO_TERMINATED, fl, &ec, &eo, NULL);
	if (!r->re) {
		/* code points above 255 (\x{263a}): UTF mode, tolerant of bad input */
		int ec2;
		PCRE2_SIZE eo2;
		r->re = pcre2_compile((PCRE2_SPTR)r->pattern, PCRE2_ZERO_TERMINATED,
				      fl | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec2, &eo2, NULL);
		if (r->re)
			r->utf = true;
	}
	if (!r->re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof(msg));
#ifdef SPAM_HAVE_HS
		/* PCRE2 refuses some huge alternations that Hyperscan compiles
		 * exactly: match those with Hyperscan alone */
		if (e->use_hs && !(r->tflags & TF_MULTIPLE)) {
			hs_expr_info_t *info = NULL;
			hs_compile_error_t *ce = NULL;
			unsigned f = HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
			for (const char *p = r->flags; p && *p; p++)
				f |= *p == 'i'	 ? HS_FLAG_CASELESS
				     : *p == 's' ? HS_FLAG_DOTALL
				     : *p == 'm' ? HS_FLAG_MULTILINE
						 : 0;
			char *pat = r->flags && strchr(r->flags, 'x') ? xasprintf("(?x)%s", r->pattern)
								      : xstrdup(r->pattern);
			if (hs_expression_info(pat, f, &info, &ce) == HS_SUCCESS) {
				free(info);
				free(pat);
				r->hs_exact = true;
				lint(e, false,
				     "%s: %s: PCRE2 cannot compile it (%s); matched by Hyperscan alone",
				     r->where, r->name, (char *)msg);
				return 0;
			}
			lint(e, false, "%s: %s: Hyperscan refuses it too: %s", r->where, r->name,
			     ce && ce->message ? ce->message : "?");
			hs_free_compile_error(ce);
			free(pat);
		}
#endif
		/* too large for PCRE2 but valid (SpamAssassin's Perl takes it):
		 * skipped when Hyperscan cannot take it either */
		bool valid = ec == PCRE2_ERROR_PATTERN_TOO_LARGE;
		lint(e, !valid, "%s: %s: regex does not compile (%s at %zu)%s: %.200s", r->where, r->name,
		     (char *)msg, (size_t)eo, valid ? ", rule skipped" : "", r->pattern);
		r->disabled = true;
		r->why = xstrdup("regex does not compile");
		return -1;
	}
	pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE);
	return 0;
}

/* Header target specs: "Subject", "From:addr", "ALL", "ToCc" ... */
static int target_index(struct spam_engine *e, const char *spec, bool exists)
{
	char key[300];
	snprintf(key, sizeof(key), "%s%s", exists ? "exists:" : "", spec);
	for (size_t i = 0; i < e->ntargets; i++)
		if (strcmp(e->targets[i].spec, key) == 0)
			return (int)i;
	e->targets = xrealloc(e->targets, (e->ntargets + 1) * sizeof(*e->targets));
	struct target *t = &e->targets[e->ntargets];
	memset(t, 0, sizeof(*t));
	t->spec = xstrdup(key);
	t->exists = exists;
	char *nm = xstrdup(spec);
	char *c = strchr(nm, ':');
	while (c) {
		*c = 0;
		char *mod = c + 1;
		char *next = strchr(mod, ':');
		if (next)
			*next = 0;
		if (strcmp(mod, "raw") == 0)
			t->raw = true;
		else if (strcmp(mod, "addr") == 0)
			t->addr = true;
		else if (strcmp(mod, "name") == 0)
			t->nameonly = true;
		c = next;
	}
	t->name = nm;
	return (int)e->ntargets++;
}

#ifdef SPAM_HAVE_HS
/* ---- Hyperscan ---------------------------------------------------------------
 *
 * Two matchers share the parsed rules. The base matcher is ready when
 * spam_engine_new returns: PCRE2-JIT for every regex, plus per group a small
 * exact database of the few patterns PCRE2 cannot compile (huge
 * alternations). The Hyperscan matcher adds per group a prefilter database
 * whose candidates PCRE2 confirms; it is loaded from the cache directory or
 * compiled by a child process in the background (a child, so that release
 * can stop a compile at once by killing it), then published with one atomic
 * store. A message reads the pointer once and uses that matcher from start
 * to end; both find the same hits, since the prefilter only narrows the
 * rules PCRE2 runs. The Hyperscan matcher lives until the engine is freed.
 */

struct hsgroup {
	hs_database_t *db;
	bool *in_db; /* per group position */
	int *pcre_only;
	size_t npcre;
	bool loaded; /* from the cache or the compiler */
};

struct hsmatch {
	struct hsgroup *g; /* per group */
	struct scratch_pool pool;
	unsigned nhs, npcre;
};

static void elog(const struct spam_engine *e, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void elog(const struct spam_engine *e, int level, const char *fmt, ...)
{
	if (!e->log)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) >= 0)
		e->log(level, s);
	va_end(ap);
	free(s);
}

static unsigned hs_flags_for(const struct rule *r)
{
	unsigned f = (r->hs_exact ? 0 : HS_FLAG_PREFILTER) | HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
	for (const char *p = r->flags; p && *p; p++) {
		if (*p == 'i')
			f |= HS_FLAG_CASELESS;
		else if (*p == 's')
			f |= HS_FLAG_DOTALL;
		else if (*p == 'm')
			f |= HS_FLAG_MULTILINE;
	}
	if (r->utf)
		f |= HS_FLAG_UTF8;
	return f;
}

static char *hs_pattern(const struct rule *r)
{
	if (r->flags && strchr(r->flags, 'x'))
		return xasprintf("(?x)%s", r->pattern);
	return xstrdup(r->pattern);
}

/* Compiles the rules of g marked in ok[] into one database. When the
 * compiler names a culprit, it leaves ok[] and the rest is compiled again;
 * with no culprit named, the whole group is given up (ok[] cleared). */
static hs_database_t *hs_build(const struct spam_engine *e, const struct rgroup *g, bool *ok)
{
	char **pats = xcalloc(g->n, sizeof(char *));
	unsigned *flags = xcalloc(g->n, sizeof(unsigned));
	unsigned *ids = xcalloc(g->n, sizeof(unsigned));
	hs_database_t *db = NULL;
	for (;;) {
		size_t m = 0;
		for (size_t i = 0; i < g->n; i++) {
			if (!ok[i])
				continue;
			const struct rule *r = &e->rules[g->rules[i]];
			pats[m] = hs_pattern(r);
			flags[m] = hs_flags_for(r);
			ids[m] = (unsigned)i;
			m++;
		}
		if (m == 0)
			break;
		hs_compile_error_t *ce = NULL;
		hs_error_t rc = hs_compile_multi((const char *const *)pats, flags, ids, (unsigned)m,
						 HS_MODE_BLOCK, NULL, &db, &ce);
		int bad = rc == HS_SUCCESS ? -1 : ce ? ce->expression : -1;
		if (ce)
			hs_free_compile_error(ce);
		for (size_t i = 0; i < m; i++)
			free(pats[i]);
		if (rc == HS_SUCCESS)
			break;
		db = NULL;
		if (bad < 0 || (size_t)bad >= m) {
			memset(ok, 0, g->n * sizeof(bool));
			break;
		}
		ok[ids[bad]] = false;
	}
	free(pats);
	free(flags);
	free(ids);
	return db;
}

/* Rules of a group that go to its prefilter database: PCRE2 confirms them. */
static bool hs_candidate(const struct rule *r)
{
	return r->re && !r->hs_exact;
}

static size_t hs_ncandidates(const struct spam_engine *e, const struct rgroup *g)
{
	size_t n = 0;
	for (size_t i = 0; i < g->n; i++)
		n += hs_candidate(&e->rules[g->rules[i]]);
	return n;
}

/* The cache file of a group, named by a hash of everything its database
 * depends on. */
static char *hs_cache_path(const struct spam_engine *e, const struct rgroup *g)
{
	uint64_t h = fnv1a(1469598103934665603ull, hs_version(), strlen(hs_version()));
	for (size_t i = 0; i < g->n; i++) {
		const struct rule *r = &e->rules[g->rules[i]];
		unsigned f = hs_flags_for(r) | (hs_candidate(r) ? 0x80000000u : 0);
		h = fnv1a(h, r->pattern, strlen(r->pattern) + 1);
		h = fnv1a(h, &f, sizeof(f));
	}
	return xasprintf("%s/spam-%s-%016llx.hsdb", e->cache_dir, rtype_names[g->type],
			 (unsigned long long)h);
}

/* A group's database as stored in the cache and sent by the compiler:
 * "SIFTHS2\n", the number of rules n (4 octets), n flags (1: in the
 * database), the serialized database (absent when none). */
#define HS_MAGIC "SIFTHS2\n"

static char *hs_blob(const bool *ok, size_t n, const hs_database_t *db, size_t *len_r)
{
	char *bytes = NULL;
	size_t blen = 0;
	if (db && hs_serialize_database(db, &bytes, &blen) != HS_SUCCESS)
		return NULL;
	size_t len = 8 + 4 + n + blen;
	char *b = xmalloc(len);
	memcpy(b, HS_MAGIC, 8);
	uint32_t n32 = (uint32_t)n;
	memcpy(b + 8, &n32, 4);
	for (size_t i = 0; i < n; i++)
		b[12 + i] = ok[i] ? 1 : 0;
	if (blen)
		memcpy(b + 12 + n, bytes, blen);
	free(bytes);
	*len_r = len;
	return b;
}

static int hs_unblob(const char *b, size_t len, const struct spam_engine *e, const struct rgroup *g,
		     struct hsgroup *hg)
{
	uint32_t n32;
	if (len < 12 || memcmp(b, HS_MAGIC, 8) != 0)
		return -1;
	memcpy(&n32, b + 8, 4);
	if (n32 != g->n || len < 12 + (size_t)n32)
		return -1;
	hs_database_t *db = NULL;
	size_t blen = len - 12 - n32;
	bool any = false;
	for (size_t i = 0; i < g->n; i++) {
		if (b[12 + i] > 1 || (b[12 + i] && !hs_candidate(&e->rules[g->rules[i]])))
			return -1;
		any |= b[12 + i];
	}
	if (any != (blen > 0))
		return -1;
	if (blen && hs_deserialize_database(b + 12 + n32, blen, &db) != HS_SUCCESS)
		return -1;
	hg->db = db;
	hg->in_db = xcalloc(g->n, sizeof(bool));
	for (size_t i = 0; i < g->n; i++)
		hg->in_db[i] = b[12 + i];
	hg->loaded = true;
	return 0;
}

/* Files and directories of the cache are trusted only when they belong to
 * root or to the user running the daemon and nobody else may write them. */
static const char *untrusted(const struct stat *st)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return "owned by another user";
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return "writable by group or others";
	return NULL;
}

/* Checks (and creates) the cache directory: NULL = usable, else why not
 * (malloc'd). */
static char *hs_cache_dir_bad(const struct spam_engine *e, int *level)
{
	struct stat st;
	*level = LOG_WARNING;
	if (stat(e->cache_dir, &st) < 0 &&
	    (errno != ENOENT || mkdir(e->cache_dir, 0755) < 0 || stat(e->cache_dir, &st) < 0)) {
		if (errno == ENOENT)
			*level = LOG_NOTICE; /* not installed: nothing wrong */
		return xasprintf("spam_cache_directory %s: %s", e->cache_dir, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return xasprintf("spam_cache_directory %s: not a directory", e->cache_dir);
	const char *why = untrusted(&st);
	if (why)
		return xasprintf("spam_cache_directory %s: %s (uid %u, mode %04o)", e->cache_dir, why,
				 (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	return NULL;
}

#define HS_MAX_BLOB (1024u * 1024 * 1024)

static int hs_cache_load(const struct spam_engine *e, const struct rgroup *g, struct hsgroup *hg)
{
	char *path = hs_cache_path(e, g);
	int rc = -1;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno != ENOENT)
			elog(e, LOG_WARNING, "Hyperscan cache %s: %s: ignored", path, strerror(errno));
		free(path);
		return -1;
	}
	struct stat st;
	const char *why = fstat(fd, &st) < 0	     ? strerror(errno)
			  : !S_ISREG(st.st_mode)     ? "not a regular file"
			  : st.st_size > HS_MAX_BLOB ? "too large"
						     : untrusted(&st);
	if (why) {
		elog(e, LOG_WARNING, "Hyperscan cache %s: %s (uid %u, mode %04o): ignored", path, why,
		     (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	char *b = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t k = read(fd, b + got, (size_t)st.st_size - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	if (got == (size_t)st.st_size && hs_unblob(b, got, e, g, hg) == 0)
		rc = 0;
	else
		elog(e, LOG_WARNING, "Hyperscan cache %s: unreadable or stale: compiled again", path);
	free(b);
out:
	close(fd);
	free(path);
	return rc;
}

/* Writes a temporary file that cannot be anything we did not create (mkstemp:
 * O_CREAT|O_EXCL, which never follows a symlink), then renames it. */
static int hs_cache_store(const struct spam_engine *e, const struct rgroup *g, const char *b, size_t len)
{
	char *path = hs_cache_path(e, g);
	char *tmp = xasprintf("%s/.spam-%s.XXXXXX", e->cache_dir, rtype_names[g->type]);
	int rc = -1;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		if (!e->cache_errors) /* once: the others fail alike */
			elog(e, LOG_WARNING, "Hyperscan cache %s: %s: databases not cached", tmp,
			     strerror(errno));
		goto out;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t k = write(fd, b + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	if (off != len || fchmod(fd, 0644) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		if (!e->cache_errors)
			elog(e, LOG_WARNING, "Hyperscan cache %s: cannot write: %s", path, strerror(errno));
		if (off != len)
			close(fd);
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(tmp);
	free(path);
	return rc;
}

static hs_scratch_t *pool_get(struct scratch_pool *p)
{
	hs_scratch_t *s = NULL;
	if (!p->proto)
		return NULL;
	pthread_mutex_lock(&p->lock);
	if (p->nfree)
		s = p->free[--p->nfree];
	pthread_mutex_unlock(&p->lock);
	if (!s && hs_clone_scratch(p->proto, &s) != HS_SUCCESS)
		s = NULL;
	return s;
}

static void pool_put(struct scratch_pool *p, hs_scratch_t *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->nfree == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 8;
		p->free = xrealloc(p->free, p->cap * sizeof(hs_scratch_t *));
	}
	p->free[p->nfree++] = s;
	pthread_mutex_unlock(&p->lock);
}

static void pool_free(struct scratch_pool *p)
{
	for (size_t i = 0; i < p->nfree; i++)
		hs_free_scratch(p->free[i]);
	free(p->free);
	if (p->proto)
		hs_free_scratch(p->proto);
	pthread_mutex_destroy(&p->lock);
}

static void hsmatch_free(const struct spam_engine *e, struct hsmatch *hm)
{
	if (!hm)
		return;
	for (size_t i = 0; i < e->ngroups; i++) {
		if (hm->g[i].db)
			hs_free_database(hm->g[i].db);
		free(hm->g[i].in_db);
		free(hm->g[i].pcre_only);
	}
	free(hm->g);
	pool_free(&hm->pool);
	free(hm);
}

/* Completes a matcher whose groups are all loaded: PCRE2 lists, scratch. */
static int hsmatch_finish(const struct spam_engine *e, struct hsmatch *hm)
{
	if (e->pool.proto && hs_clone_scratch(e->pool.proto, &hm->pool.proto) != HS_SUCCESS)
		return -1;
	for (size_t gi = 0; gi < e->ngroups; gi++) {
		const struct rgroup *g = &e->groups[gi];
		struct hsgroup *hg = &hm->g[gi];
		if (!hg->in_db)
			hg->in_db = xcalloc(g->n, sizeof(bool));
		hg->pcre_only = xcalloc(g->n + 1, sizeof(int));
		for (size_t i = 0; i < g->n; i++) {
			if (!e->rules[g->rules[i]].re)
				continue;
			if (hg->in_db[i] && hg->db)
				hm->nhs++;
			else {
				hg->pcre_only[hg->npcre++] = g->rules[i];
				hm->npcre++;
			}
		}
		if (hg->db && hs_alloc_scratch(hg->db, &hm->pool.proto) != HS_SUCCESS)
			return -1;
	}
	return 0;
}

/* The compiler, in a child process: one record per group it was asked for
 * (group index and length, 4 + 8 octets, then the blob), then a final
 * record with index UINT32_MAX. */
static bool write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = write(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		c += k;
		n -= (size_t)k;
	}
	return true;
}

static bool read_all(int fd, void *p, size_t n)
{
	char *c = p;
	while (n) {
		ssize_t k = read(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		c += k;
		n -= (size_t)k;
	}
	return true;
}

static void hs_compile_child(const struct spam_engine *e, const bool *need, int fd)
{
	for (size_t gi = 0; gi < e->ngroups; gi++) {
		if (!need[gi])
			continue;
		const struct rgroup *g = &e->groups[gi];
		bool *ok = xcalloc(g->n, sizeof(bool));
		for (size_t i = 0; i < g->n; i++) {
			const struct rule *r = &e->rules[g->rules[i]];
			if (!hs_candidate(r))
				continue;
			char *p = hs_pattern(r);
			hs_expr_info_t *info = NULL;
			hs_compile_error_t *ce = NULL;
			if (hs_expression_info(p, hs_flags_for(r), &info, &ce) == HS_SUCCESS)
				ok[i] = true;
			free(info);
			if (ce)
				hs_free_compile_error(ce);
			free(p);
		}
		hs_database_t *db = hs_build(e, g, ok);
		size_t len = 0;
		char *b = hs_blob(ok, g->n, db, &len);
		if (db)
			hs_free_database(db);
		uint32_t gi32 = (uint32_t)gi;
		uint64_t len64 = len;
		if (!b || !write_all(fd, &gi32, 4) || !write_all(fd, &len64, 8) || !write_all(fd, b, len))
			_exit(1);
		free(b);
		free(ok);
	}
	uint32_t end = UINT32_MAX;
	uint64_t zero = 0;
	_exit(write_all(fd, &end, 4) && write_all(fd, &zero, 8) ? 0 : 1);
}

enum { BG_NONE, BG_RUNNING, BG_DONE, BG_FAILED };

static void bg_finish(struct spam_engine *e, int state, char *err)
{
	pthread_mutex_lock(&e->bg_lock);
	e->bg_state = state;
	free(e->bg_err);
	e->bg_err = err;
	pthread_cond_broadcast(&e->bg_cond);
	pthread_mutex_unlock(&e->bg_lock);
}

static void *bg_main(void *arg)
{
	struct spam_engine *e = arg;
	struct hsmatch *hm = e->bg_match;
	bool complete = false;
	char *err = NULL;
	for (;;) {
		uint32_t gi;
		uint64_t len;
		if (!read_all(e->bg_fd, &gi, 4) || !read_all(e->bg_fd, &len, 8))
			break;
		if (gi == UINT32_MAX) {
			complete = true;
			break;
		}
		if (gi >= e->ngroups || hm->g[gi].loaded || len > HS_MAX_BLOB) {
			err = xstrdup("bad record from the compiler");
			break;
		}
		char *b = xmalloc(len ? (size_t)len : 1);
		if (!read_all(e->bg_fd, b, (size_t)len)) {
			free(b);
			break;
		}
		const struct rgroup *g = &e->groups[gi];
		if (hs_unblob(b, (size_t)len, e, g, &hm->g[gi]) < 0) {
			free(b);
			err = xstrdup("bad database from the compiler");
			break;
		}
		if (e->cache_dir && hs_cache_store(e, g, b, (size_t)len) < 0)
			e->cache_errors++;
		free(b);
	}
	close(e->bg_fd);
	e->bg_fd = -1;
	pthread_mutex_lock(&e->bg_lock);
	pid_t pid = e->bg_child;
	e->bg_child = 0;
	bool cancelled = e->bg_cancel;
	pthread_mutex_unlock(&e->bg_lock);
	int st = 0;
	if (pid > 0) {
		if (!complete)
			kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	if (cancelled) {
		free(err);
		bg_finish(e, BG_FAILED, xstrdup("stopped"));
		return NULL;
	}
	for (size_t gi = 0; complete && gi < e->ngroups; gi++)
		if (!hm->g[gi].loaded && e->bg_need[gi])
			complete = false;
	if (!complete || hsmatch_finish(e, hm) < 0) {
		if (!err)
			err = WIFSIGNALED(st) ? xasprintf("the compiler died of signal %d", WTERMSIG(st))
					      : xstrdup("the compiler failed");
		elog(e, LOG_WARNING, "Hyperscan: %s; matching stays on PCRE2-JIT", err);
		bg_finish(e, BG_FAILED, err);
		return NULL;
	}
	e->bg_match = NULL;
	atomic_store_explicit(&e->hs, hm, memory_order_release);
	elog(e, LOG_INFO,
	     "Hyperscan databases compiled in %lld ms, now in use: %u regexes in Hyperscan, %u PCRE2 only",
	     now_ms() - e->bg_start, hm->nhs, hm->npcre);
	free(err);
	bg_finish(e, BG_DONE, NULL);
	return NULL;
}

/* Loads what the cache has; starts the compiler for the rest. */
static void hs_start(struct spam_engine *e)
{
	struct hsmatch *hm = xcalloc(1, sizeof(*hm));
	pthread_mutex_init(&hm->pool.lock, NULL);
	hm->g = xcalloc(e->ngroups + 1, sizeof(*hm->g));
	e->bg_need = xcalloc(e->ngroups + 1, sizeof(bool));
	int level;
	char *bad = e->cache_dir ? hs_cache_dir_bad(e, &level) : NULL;
	if (bad) {
		elog(e, level, "%s: not used, Hyperscan databases are not cached", bad);
		e->cache_why = bad;
		free(e->cache_dir);
		e->cache_dir = NULL;
	}
	size_t missing = 0;
	for (size_t gi = 0; gi < e->ngroups; gi++) {
		const struct rgroup *g = &e->groups[gi];
		if (hs_ncandidates(e, g) < 2)
			continue; /* PCRE2 alone is as fast */
		if (e->cache_dir && hs_cache_load(e, g, &hm->g[gi]) == 0)
			continue;
		e->bg_need[gi] = true;
		missing++;
	}
	e->bg_start = now_ms();
	if (!missing) {
		if (hsmatch_finish(e, hm) < 0) {
			hsmatch_free(e, hm);
			e->bg_state = BG_FAILED;
			e->bg_err = xstrdup("cannot allocate Hyperscan scratch space");
			return;
		}
		atomic_store_explicit(&e->hs, hm, memory_order_release);
		e->bg_state = BG_DONE;
		e->from_cache = true;
		return;
	}
	e->bg_match = hm;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		e->bg_state = BG_FAILED;
		e->bg_err = xasprintf("pipe: %s", strerror(errno));
		return;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		e->bg_state = BG_FAILED;
		e->bg_err = xasprintf("fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		hs_compile_child(e, e->bg_need, fds[1]);
	}
	close(fds[1]);
	e->bg_child = pid;
	e->bg_fd = fds[0];
	e->bg_state = BG_RUNNING;
	if (pthread_create(&e->bg_thread, NULL, bg_main, e) != 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		close(fds[0]);
		e->bg_child = 0;
		e->bg_state = BG_FAILED;
		e->bg_err = xstrdup("cannot start a thread");
		return;
	}
	e->bg_thread_started = true;
	elog(e, LOG_INFO,
	     "Hyperscan: compiling %zu rule group(s) in the background (pid %d); PCRE2-JIT until then",
	     missing, (int)pid);
}

/* Stops a running compile (kills the child) and waits for the thread. */
static void hs_stop(struct spam_engine *e)
{
	if (!e->bg_thread_started)
		return;
	pthread_mutex_lock(&e->bg_lock);
	e->bg_cancel = e->bg_state == BG_RUNNING;
	if (e->bg_child > 0)
		kill(e->bg_child, SIGKILL);
	pthread_mutex_unlock(&e->bg_lock);
	pthread_join(e->bg_thread, NULL);
	e->bg_thread_started = false;
}

/* The exact databases of the base matcher: patterns PCRE2 cannot compile. */
static void build_exact(struct spam_engine *e, struct rgroup *g)
{
	bool *ok = xcalloc(g->n, sizeof(bool));
	bool any = false;
	for (size_t i = 0; i < g->n; i++)
		any |= ok[i] = e->rules[g->rules[i]].hs_exact;
	if (any)
		g->exact_db = hs_build(e, g, ok);
	for (size_t i = 0; i < g->n; i++)
		if (e->rules[g->rules[i]].hs_exact && !ok[i])
			e->rules[g->rules[i]].hs_exact = false; /* reported below */
	free(ok);
}
#endif

int spam_engine_hs_wait(const struct spam_engine *ce, char **err_r)
{
#ifdef SPAM_HAVE_HS
	struct spam_engine *e = (struct spam_engine *)ce;
	if (!e->use_hs) {
		*err_r = xstrdup("spam_hyperscan = no: nothing to compile");
		return -1;
	}
	if (!e->cache_dir) {
		*err_r = e->cache_why ? xasprintf("%s: not usable", e->cache_why)
				      : xstrdup("spam_cache_directory is empty: nothing to cache into");
		return -1;
	}
	pthread_mutex_lock(&e->bg_lock);
	while (e->bg_state == BG_RUNNING)
		pthread_cond_wait(&e->bg_cond, &e->bg_lock);
	int state = e->bg_state;
	*err_r = e->bg_err ? xstrdup(e->bg_err) : NULL;
	pthread_mutex_unlock(&e->bg_lock);
	if (state != BG_DONE)
		return -1;
	free(*err_r);
	*err_r = NULL;
	if (e->cache_errors) {
		*err_r =
			xasprintf("%u database(s) could not be written to %s", e->cache_errors, e->cache_dir);
		return -1;
	}
	return e->from_cache ? 1 : 0;
#else
	*err_r = xstrdup("built without Hyperscan");
	return -1;
#endif
}

static void finish_group(struct spam_engine *e, struct rgroup *g)
{
#ifdef SPAM_HAVE_HS
	if (e->use_hs)
		build_exact(e, g);
#endif
	g->pcre_only = xcalloc(g->n + 1, sizeof(int));
	for (size_t i = 0; i < g->n; i++) {
		struct rule *r = &e->rules[g->rules[i]];
		if (!r->hs_exact && !r->re) {
			/* neither engine can match it */
			r->disabled = true;
			r->why = xstrdup("regex does not compile");
			lint(e, true, "%s: %s: regex compiles neither with PCRE2 nor alone in Hyperscan",
			     r->where, r->name);
			continue;
		}
		if (r->re)
			g->pcre_only[g->npcre++] = g->rules[i];
	}
}

static struct rgroup *group_for(struct spam_engine *e, enum rtype t, int target)
{
	for (size_t i = 0; i < e->ngroups; i++)
		if (e->groups[i].type == t && e->groups[i].target_idx == target)
			return &e->groups[i];
	e->groups = xrealloc(e->groups, (e->ngroups + 1) * sizeof(*e->groups));
	struct rgroup *g = &e->groups[e->ngroups++];
	memset(g, 0, sizeof(*g));
	g->type = t;
	g->target_idx = target;
	return g;
}

/* meta: tokenize into RPN. Operators are coded as negative ints. */
enum {
	OP_NUM = -1,
	OP_NOT = -2,
	OP_MUL = -3,
	OP_DIV = -4,
	OP_ADD = -5,
	OP_SUB = -6,
	OP_LT = -7,
	OP_GT = -8,
	OP_LE = -9,
	OP_GE = -10,
	OP_EQ = -11,
	OP_NE = -12,
	OP_AND = -13,
	OP_OR = -14,
	OP_LP = -15,
	OP_NEG = -16,
	OP_UNKNOWN = -17
};

static int prec(int op)
{
	switch (op) {
	case OP_NOT:
	case OP_NEG:
		return 7;
	case OP_MUL:
	case OP_DIV:
		return 6;
	case OP_ADD:
	case OP_SUB:
		return 5;
	case OP_LT:
	case OP_GT:
	case OP_LE:
	case OP_GE:
		return 4;
	case OP_EQ:
	case OP_NE:
		return 3;
	case OP_AND:
		return 2;
	case OP_OR:
		return 1;
	}
	return 0;
}

static int compile_meta(struct spam_engine *e, struct rule *r)
{
	const char *s = r->meta_src;
	int *out = xcalloc(strlen(s) + 2, sizeof(int));
	double *num = xcalloc(strlen(s) + 2, sizeof(double));
	int *stack = xcalloc(strlen(s) + 2, sizeof(int));
	int no = 0, ns = 0;
	bool expect_operand = true;
	while (*s) {
		if (isspace((unsigned char)*s)) {
			s++;
			continue;
		}
		if (isalpha((unsigned char)*s) || *s == '_') {
			const char *b = s;
			while (isalnum((unsigned char)*s) || *s == '_')
				s++;
			char *nm = xstrndup(b, (size_t)(s - b));
			int idx = rule_find(e, nm);
			if (idx < 0 || e->rules[idx].type == R_NONE) {
				out[no] = OP_NUM; /* unknown rule: 0 */
				num[no++] = 0;
			} else
				out[no++] = idx;
			free(nm);
			expect_operand = false;
			continue;
		}
		if (isdigit((unsigned char)*s) || (*s == '.' && isdigit((unsigned char)s[1]))) {
			char *end;
			double v = strtod(s, &end);
			s = end;
			out[no] = OP_NUM;
			num[no++] = v;
			expect_operand = false;
			continue;
		}
		if (*s == '(') {
			stack[ns++] = OP_LP;
			s++;
			expect_operand = true;
			continue;
		}
		if (*s == ')') {
			while (ns > 0 && stack[ns - 1] != OP_LP)
				out[no++] = stack[--ns];
			if (ns == 0)
				goto bad;
			ns--;
			s++;
			expect_operand = false;
			continue;
		}
		int op = 0;
		if (strncmp(s, "&&", 2) == 0)
			op = OP_AND, s += 2;
		else if (strncmp(s, "||", 2) == 0)
			op = OP_OR, s += 2;
		else if (strncmp(s, "<=", 2) == 0)
			op = OP_LE, s += 2;
		else if (strncmp(s, ">=", 2) == 0)
			op = OP_GE, s += 2;
		else if (strncmp(s, "==", 2) == 0)
			op = OP_EQ, s += 2;
		else if (strncmp(s, "!=", 2) == 0)
			op = OP_NE, s += 2;
		else if (*s == '!')
			op = OP_NOT, s++;
		else if (*s == '<')
			op = OP_LT, s++;
		else if (*s == '>')
			op = OP_GT, s++;
		else if (*s == '+')
			op = expect_operand ? 0 : OP_ADD, s++;
		else if (*s == '-')
			op = expect_operand ? OP_NEG : OP_SUB, s++;
		else if (*s == '*')
			op = OP_MUL, s++;
		else if (*s == '/')
			op = OP_DIV, s++;
		else
			goto bad;
		if (op == 0)
			continue; /* unary plus */
		if (op == OP_NOT || op == OP_NEG) {
			stack[ns++] = op; /* right-assoc unary */
			expect_operand = true;
			continue;
		}
		while (ns > 0 && stack[ns - 1] != OP_LP && prec(stack[ns - 1]) >= prec(op))
			out[no++] = stack[--ns];
		stack[ns++] = op;
		expect_operand = true;
	}
	while (ns > 0) {
		if (stack[ns - 1] == OP_LP)
			goto bad;
		out[no++] = stack[--ns];
	}
	/* check stack balance */
	{
		int depth = 0;
		for (int i = 0; i < no; i++) {
			if (out[i] >= 0 || out[i] == OP_NUM)
				depth++;
			else if (out[i] == OP_NOT || out[i] == OP_NEG) {
				if (depth < 1)
					goto bad;
			} else {
				if (depth < 2)
					goto bad;
				depth--;
			}
		}
		if (depth != 1)
			goto bad;
	}
	r->rpn = out;
	r->rpn_num = num;
	r->nrpn = no;
	free(stack);
	return 0;
bad:
	free(out);
	free(num);
	free(stack);
	lint(e, true, "%s: meta %s: cannot parse expression: %s", r->where, r->name, r->meta_src);
	r->disabled = true;
	r->why = xstrdup("bad meta expression");
	return -1;
}

/* Orders metas so that dependencies come first; cycles are disabled. */
static void order_metas(struct spam_engine *e)
{
	int *state = xcalloc(e->nrules, sizeof(int)); /* 0 new, 1 visiting, 2 done */
	e->meta_order = xcalloc(e->nrules, sizeof(int));
	e->nmeta = 0;
	int *stack = xcalloc(e->nrules * 2 + 2, sizeof(int));
	for (size_t i = 0; i < e->nrules; i++) {
		if (e->rules[i].type != R_META || e->rules[i].disabled || state[i])
			continue;
		/* iterative DFS: stack of (rule, next token) */
		int sp = 0;
		stack[sp++] = (int)i;
		stack[sp++] = 0;
		state[i] = 1;
		while (sp > 0) {
			int ri = stack[sp - 2];
			int ti = stack[sp - 1];
			struct rule *r = &e->rules[ri];
			if (ti < r->nrpn) {
				stack[sp - 1]++;
				int dep = r->rpn[ti];
				if (dep < 0 || e->rules[dep].type != R_META || e->rules[dep].disabled)
					continue;
				if (state[dep] == 1) {
					lint(e, true, "%s: meta %s: dependency loop through %s", r->where,
					     r->name, e->rules[dep].name);
					e->rules[dep].disabled = true;
					continue;
				}
				if (state[dep] == 0) {
					state[dep] = 1;
					stack[sp++] = dep;
					stack[sp++] = 0;
				}
				continue;
			}
			state[ri] = 2;
			e->meta_order[e->nmeta++] = ri;
			sp -= 2;
		}
	}
	free(state);
	free(stack);
}

static int finalize(struct spam_engine *e)
{
	/* replace tags */
	for (size_t i = 0; i < e->nreplace; i++) {
		int k = rule_find(e, e->replace_rules[i]);
		if (k >= 0 && e->rules[k].pattern)
			apply_replace_tags(e, &e->rules[k]);
	}
	for (size_t i = 0; i < e->nrules; i++) {
		struct rule *r = &e->rules[i];
		if (r->type == R_NONE)
			continue;
		if (!r->has_score)
			r->score = strncmp(r->name, "__", 2) == 0   ? 0
				   : strncmp(r->name, "T_", 2) == 0 ? 0.01
				   : (r->tflags & TF_NICE)	    ? -1.0
								    : 1.0;
		if (r->disabled)
			continue;
		if (r->eval_fn) {
			r->eval_id = eval_lookup(r->eval_fn);
			if (r->eval_id < 0) {
				r->disabled = true;
				r->why = xasprintf("unknown eval:%s", r->eval_fn);
				e->stats_eval_unknown++;
				continue;
			}
			if (r->type == R_HEADER || r->type == R_MIMEHEADER)
				r->type = R_HEADER;
			continue;
		}
		if (r->type == R_META)
			continue;
		if (r->type == R_SYMBOL)
			continue;
		if (r->exists) {
			r->target_idx = target_index(e, r->target, true);
			continue;
		}
		if (compile_pcre(e, r) < 0)
			continue;
		int target = -1;
		if (r->type == R_HEADER)
			target = r->target_idx = target_index(e, r->target, false);
		if (r->type == R_MIMEHEADER)
			target = r->target_idx = target_index(e, r->target, false);
		struct rgroup *g = group_for(e, r->type, target);
		g->rules = xrealloc(g->rules, (g->n + 1) * sizeof(int));
		g->rules[g->n++] = (int)i;
		r->group = (int)(g - e->groups);
	}
	for (size_t i = 0; i < e->nrules; i++)
		if (e->rules[i].type == R_META && !e->rules[i].disabled)
			compile_meta(e, &e->rules[i]);
	order_metas(e);
	for (size_t i = 0; i < e->ngroups; i++)
		finish_group(e, &e->groups[i]);
	for (size_t i = 0; i < e->nrules; i++)
		if (e->rules[i].disabled && e->rules[i].type != R_NONE)
			e->stats_disabled++;
	/* freemail: globs apart, exact names sorted for bsearch */
	{
		size_t w = 0;
		for (size_t i = 0; i < e->nfreemail; i++) {
			if (strpbrk(e->freemail[i], "*?")) {
				e->freemail_glob =
					xrealloc(e->freemail_glob, (e->nfreemail_glob + 1) * sizeof(char *));
				e->freemail_glob[e->nfreemail_glob++] = e->freemail[i];
			} else
				e->freemail[w++] = e->freemail[i];
		}
		e->nfreemail = w;
		if (w)
			qsort(e->freemail, w, sizeof(char *), namecmp);
	}
	e->post_hdr = xcalloc(e->nrules, sizeof(int));
	e->eval_rules = xcalloc(e->nrules, sizeof(int));
	e->sym_rules = xcalloc(e->nrules, sizeof(int));
	for (size_t i = 0; i < e->nrules; i++) {
		const struct rule *r = &e->rules[i];
		if (r->disabled || r->type == R_NONE)
			continue;
		if (r->eval_fn && r->eval_id >= 0)
			e->eval_rules[e->neval_rules++] = (int)i;
		else if (r->type == R_SYMBOL)
			e->sym_rules[e->nsym_rules++] = (int)i;
		else if ((r->type == R_HEADER || r->type == R_MIMEHEADER) && !r->eval_fn)
			e->post_hdr[e->npost_hdr++] = (int)i;
	}
#ifdef SPAM_HAVE_HS
	for (size_t i = 0; i < e->ngroups; i++)
		if (e->groups[i].exact_db &&
		    hs_alloc_scratch(e->groups[i].exact_db, &e->pool.proto) != HS_SUCCESS)
			return -1;
#endif
	return 0;
}

static size_t count_errors(const struct spam_engine *e);
static char *format_errors(const struct spam_engine *e);

struct spam_engine *spam_engine_new(const struct spam_engine_opts *o, char **err_r)
{
	struct spam_engine *e = xcalloc(1, sizeof(*e));
	e->required = 5.0;
	e->use_hs = o->use_hyperscan;
	e->body_scan_size = o->body_scan_size ? o->body_scan_size : 50000;
	e->log = o->log;
#ifdef SPAM_HAVE_HS
	pthread_mutex_init(&e->pool.lock, NULL);
	pthread_mutex_init(&e->bg_lock, NULL);
	pthread_cond_init(&e->bg_cond, NULL);
	e->bg_fd = -1;
#else
	e->use_hs = false;
#endif
	hash_rebuild(e);
	if (!o->paths || !o->paths[0]) {
		*err_r = xstrdup("no rule files configured");
		spam_engine_free(e);
		return NULL;
	}
	/* SpamAssassin's order: every *.pre first, then the *.cf files */
	for (const char *const *p = o->paths; *p; p++)
		if (load_path(e, *p, true, false, err_r) < 0) {
			spam_engine_free(e);
			return NULL;
		}
	for (const char *const *p = o->paths; *p; p++)
		if (load_path(e, *p, false, true, err_r) < 0) {
			spam_engine_free(e);
			return NULL;
		}
	if (finalize(e) < 0) {
		*err_r = xstrdup("cannot allocate Hyperscan scratch space");
		spam_engine_free(e);
		return NULL;
	}
	if (count_errors(e)) {
		*err_r = format_errors(e);
		spam_engine_free(e);
		return NULL;
	}
	size_t active = 0;
	for (size_t i = 0; i < e->nrules; i++)
		active += e->rules[i].type != R_NONE && !e->rules[i].disabled;
	if (!active) {
		struct sbuf b = {0};
		sb_adds(&b, "no active rules in");
		for (const char *const *p = o->paths; *p; p++) {
			sb_adds(&b, " ");
			sb_adds(&b, *p);
		}
		*err_r = (char *)sb_str(&b);
		spam_engine_free(e);
		return NULL;
	}
#ifdef SPAM_HAVE_HS
	if (o->cache_dir && *o->cache_dir)
		e->cache_dir = xstrdup(o->cache_dir);
	if (e->use_hs)
		hs_start(e);
#endif
	return e;
}

void spam_engine_free(struct spam_engine *e)
{
	if (!e)
		return;
#ifdef SPAM_HAVE_HS
	hs_stop(e);
	hsmatch_free(e, e->bg_match);
	hsmatch_free(e, atomic_load(&e->hs));
	free(e->bg_need);
	free(e->bg_err);
	free(e->cache_why);
	pthread_mutex_destroy(&e->bg_lock);
	pthread_cond_destroy(&e->bg_cond);
#endif
	free(e->cache_dir);
	for (size_t i = 0; i < e->nrules; i++) {
		struct rule *r = &e->rules[i];
		rule_clear_def(r);
		free(r->name);
		free(r->describe);
		free(r->why);
		free(r->rpn);
		free(r->rpn_num);
		if (r->re)
			pcre2_code_free(r->re);
	}
	free(e->rules);
	free(e->hash);
	for (size_t i = 0; i < e->ntargets; i++) {
		free(e->targets[i].name);
		free(e->targets[i].spec);
	}
	free(e->targets);
	for (size_t i = 0; i < e->ngroups; i++) {
		free(e->groups[i].rules);
		free(e->groups[i].pcre_only);
#ifdef SPAM_HAVE_HS
		if (e->groups[i].exact_db)
			hs_free_database(e->groups[i].exact_db);
#endif
	}
	free(e->groups);
	free(e->meta_order);
	for (size_t i = 0; i < e->nlint; i++)
		free(e->lint[i].text);
	free(e->lint);
	for (size_t i = 0; i < e->nplugins; i++)
		free(e->plugins[i]);
	free(e->plugins);
#define FREEPAIRS(a, b, n)                  \
	for (size_t i = 0; i < e->n; i++) { \
		free(e->a[i]);              \
		free(e->b[i]);              \
	}                                   \
	free(e->a);                         \
	free(e->b);
	FREEPAIRS(tag_names, tag_vals, ntags)
	FREEPAIRS(pre_names, pre_vals, npre)
	FREEPAIRS(inter_names, inter_vals, ninter)
	FREEPAIRS(post_names, post_vals, npost)
#undef FREEPAIRS
	for (size_t i = 0; i < e->nreplace; i++)
		free(e->replace_rules[i]);
	free(e->replace_rules);
	for (size_t i = 0; i < e->nfreemail; i++)
		free(e->freemail[i]);
	free(e->freemail);
	for (size_t i = 0; i < e->nfreemail_glob; i++)
		free(e->freemail_glob[i]);
	free(e->freemail_glob);
	free(e->post_hdr);
	free(e->eval_rules);
	free(e->sym_rules);
#ifdef SPAM_HAVE_HS
	pool_free(&e->pool);
#endif
	free(e);
}

double spam_engine_required(const struct spam_engine *e)
{
	return e->required;
}

/* ---- per message ------------------------------------------------------------ */

struct msgctx {
	const struct spam_engine *e;
	const struct spam_input *in;
	const struct sift_mime *mime;
	int *hits;    /* per rule */
	bool *done;   /* per rule: hit and not multiple, skip further */
	char **tvals; /* per target: value or NULL (unset) */
	bool *tdone;
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	/* body texts */
	char **lines;
	size_t *lens;
	size_t nlines;
	char **raws;
	size_t *rawlens;
	size_t nraws;
	char *full;
	size_t full_len;
	char *subject;
	int cur_rule;
	/* candidates from a Hyperscan scan */
	int *cand;
	size_t ncand;
	unsigned *cand_mark;
	unsigned mark;
	long long deadline;
	bool timed_out;
	struct relayinfo *relays;
	struct htmlinfo *html;
#ifdef SPAM_HAVE_HS
	const struct hsmatch *hm; /* NULL: the base matcher */
	struct scratch_pool *pool;
	hs_scratch_t *scratch;
#endif
};

static const struct sift_mime_header *mh(const struct sift_mime *m, const char *name, size_t *start);
#include "msgmeta.c"

static const struct sift_mime_header *mh(const struct sift_mime *m, const char *name, size_t *start)
{
	for (size_t i = *start; i < m->header_count; i++)
		if (strcasecmp(m->headers[i].name, name) == 0) {
			*start = i + 1;
			return &m->headers[i];
		}
	return NULL;
}

/* SpamAssassin's raw unfolding: CR/LF + white space -> one space. */
static void add_raw_unfolded(struct sbuf *b, const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p == '\r' || *p == '\n') {
			const char *q = p;
			while (*q == '\r' || *q == '\n')
				q++;
			if (*q == ' ' || *q == '\t') {
				while (*q == ' ' || *q == '\t')
					q++;
				sb_add(b, " ", 1);
			}
			p = q - 1;
			continue;
		}
		sb_add(b, p, 1);
	}
}

/* First address of a header value (":addr"). */
static void extract_addr(struct sbuf *b, const char *v)
{
	const char *lt = strchr(v, '<');
	if (lt) {
		const char *gt = strchr(lt, '>');
		if (gt) {
			sb_add(b, lt + 1, (size_t)(gt - lt - 1));
			return;
		}
	}
	/* strip comments and take the first word with @ or the whole */
	const char *at = strchr(v, '@');
	if (!at) {
		const char *p = v;
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " (,;");
		sb_add(b, p, n);
		return;
	}
	const char *s = at, *e = at;
	while (s > v && !strchr(" \t<>(),;:\"", s[-1]))
		s--;
	while (*e && !strchr(" \t<>(),;:\"", *e))
		e++;
	sb_add(b, s, (size_t)(e - s));
}

static void extract_name(struct sbuf *b, const char *v)
{
	const char *lt = strchr(v, '<');
	if (lt) {
		const char *s = v;
		while (*s == ' ' || *s == '"')
			s++;
		const char *e = lt;
		while (e > s && (e[-1] == ' ' || e[-1] == '"'))
			e--;
		sb_add(b, s, (size_t)(e - s));
		return;
	}
	const char *lp = strchr(v, '(');
	if (lp) {
		const char *rp = strchr(lp, ')');
		if (rp)
			sb_add(b, lp + 1, (size_t)(rp - lp - 1));
	}
}

struct relayinfo;
static struct relayinfo *relays(struct msgctx *m);
static const char *lasthop_envfrom(struct msgctx *m);

/* true if a Received: header comes before the first `name` header */
static bool received_before(struct msgctx *m, const char *name)
{
	for (size_t i = 0; i < m->mime->header_count; i++) {
		if (strcasecmp(m->mime->headers[i].name, name) == 0)
			return false;
		if (strcasecmp(m->mime->headers[i].name, "Received") == 0)
			return true;
	}
	return false;
}

/* The envelope sender: the SMTP one when known (filterd), else as
 * SpamAssassin's get_envelope_from() infers it from the headers. */
static const char *envelope_from(struct msgctx *m)
{
	if (m->in->envelope_from)
		return m->in->envelope_from;
	const char *ef = lasthop_envfrom(m);
	if (ef)
		return ef;
	size_t st = 0;
	const struct sift_mime_header *h = mh(m->mime, "X-Sender", &st);
	if (h && strchr(h->value, '@')) {
		st = 0;
		const struct sift_mime_header *r;
		while ((r = mh(m->mime, "Received", &st)))
			if (strstr(r->value, "(fetchmail"))
				return NULL;
	}
	static const char *const hdrs[] = {"X-Envelope-From", "Envelope-Sender", "Return-Path", NULL};
	for (const char *const *n = hdrs; *n; n++) {
		st = 0;
		h = mh(m->mime, *n, &st);
		if (h)
			return received_before(m, *n) ? NULL : h->value;
	}
	return NULL;
}

/* The value a header rule matches, or NULL when the header is absent. */
static const char *target_value(struct msgctx *m, int ti)
{
	if (m->tdone[ti])
		return m->tvals[ti];
	m->tdone[ti] = true;
	const struct target *t = &m->e->targets[ti];
	const struct sift_mime *mm = m->mime;
	struct sbuf b = {0};
	bool found = false;
	if (strcmp(t->name, "ALL") == 0 || strncmp(t->name, "ALL-", 4) == 0) {
		for (size_t i = 0; i < mm->header_count; i++) {
			sb_adds(&b, mm->headers[i].name);
			sb_adds(&b, ": ");
			if (t->raw)
				add_raw_unfolded(&b, mm->headers[i].raw);
			else
				sb_adds(&b, mm->headers[i].value);
			sb_add(&b, "\n", 1);
		}
		found = true;
	} else if (strcasecmp(t->name, "EnvelopeFrom") == 0) {
		const char *ef = envelope_from(m);
		if (ef) {
			struct sbuf a = {0};
			extract_addr(&a, ef);
			sb_adds(&b, sb_str(&a));
			free(a.d);
			found = true;
		}
	} else if (strncasecmp(t->name, "X-Sift-", 7) == 0) {
		const char *v = strcasecmp(t->name, "X-Sift-Helo") == 0		 ? m->in->helo
				: strcasecmp(t->name, "X-Sift-Client-Addr") == 0 ? m->in->client_addr
				: strcasecmp(t->name, "X-Sift-Client-Name") == 0 ? m->in->client_name
										 : NULL;
		if (v) {
			sb_adds(&b, v);
			found = true;
		}
	} else if (strncasecmp(t->name, "X-Spam-Relays-", 14) == 0) {
		struct relayinfo *ri = relays(m);
		const char *which = t->name + 14;
		const char *v = strcasecmp(which, "Trusted") == 0 || strcasecmp(which, "Internal") == 0
					? ri->trusted_str
					: ri->untrusted_str;
		sb_adds(&b, v ? v : "");
		found = true;
	} else {
		const char *names[4] = {t->name, NULL, NULL, NULL};
		if (strcmp(t->name, "ToCc") == 0) {
			names[0] = "To";
			names[1] = "Cc";
		} else if (strcmp(t->name, "MESSAGEID") == 0) {
			names[0] = "Message-Id";
			names[1] = "Resent-Message-Id";
			names[2] = "X-Message-Id";
		}
		for (int k = 0; k < 4 && names[k]; k++) {
			size_t st = 0;
			const struct sift_mime_header *h;
			while ((h = mh(mm, names[k], &st))) {
				if (t->exists) {
					found = true;
					break;
				}
				if (t->addr || t->nameonly) {
					if (!found) {
						if (t->addr)
							extract_addr(&b, h->value);
						else
							extract_name(&b, h->value);
					}
				} else if (t->raw) {
					add_raw_unfolded(&b, h->raw);
					sb_add(&b, "\n", 1);
				} else {
					sb_adds(&b, h->value);
					sb_add(&b, "\n", 1);
				}
				found = true;
			}
		}
	}
	if (!found) {
		free(b.d);
		return NULL;
	}
	m->tvals[ti] = b.d ? b.d : xstrdup("");
	return m->tvals[ti];
}

static int pmatch(struct msgctx *m, const struct rule *r, const char *s, size_t len, size_t off)
{
	return pcre2_match(r->re, (PCRE2_SPTR)s, len, off, 0, m->md, m->mctx);
}

/* Counts matches of r in s (1 unless multiple). */
static int count_matches(struct msgctx *m, const struct rule *r, const char *s, size_t len)
{
	int rc = pmatch(m, r, s, len, 0);
	if (rc < 0)
		return 0;
	if (!(r->tflags & TF_MULTIPLE))
		return 1;
	int n = 1;
	int maxh = r->maxhits > 0 ? r->maxhits : 1000;
	for (;;) {
		if (n >= maxh)
			break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
		size_t off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
		if (off > len)
			break;
		if (pmatch(m, r, s, len, off) < 0)
			break;
		n++;
	}
	return n;
}

static void add_hits(struct msgctx *m, int ri, int n)
{
	const struct rule *r = &m->e->rules[ri];
	m->hits[ri] += n;
	if (!(r->tflags & TF_MULTIPLE))
		m->done[ri] = true;
	else if (r->maxhits > 0 && m->hits[ri] >= r->maxhits) {
		m->hits[ri] = r->maxhits;
		m->done[ri] = true;
	}
}

#ifdef SPAM_HAVE_HS
static int hs_cb(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	struct msgctx *m = ctx;
	m->cand[m->ncand++] = (int)id;
	return 0;
}
#endif

/* Scans one text with a group: exact matches and candidates from Hyperscan
 * (when the message has the Hyperscan matcher), then PCRE2. */
static void scan_group(struct msgctx *m, size_t gi, const char *s, size_t len)
{
	const struct rgroup *g = &m->e->groups[gi];
	const int *pcre_only = g->pcre_only;
	size_t npcre = g->npcre;
	if (m->timed_out)
		return;
#ifdef SPAM_HAVE_HS
	unsigned slen = (unsigned)(len > 0xffffffffu ? 0xffffffffu : len);
	if (g->exact_db && m->scratch) {
		m->ncand = 0;
		if (hs_scan(g->exact_db, s, slen, 0, m->scratch, hs_cb, m) == HS_SUCCESS)
			for (size_t k = 0; k < m->ncand; k++) {
				int ri = g->rules[m->cand[k]];
				if (!m->done[ri])
					add_hits(m, ri, 1);
			}
	}
	const struct hsgroup *hg = m->hm ? &m->hm->g[gi] : NULL;
	if (hg) {
		pcre_only = hg->pcre_only;
		npcre = hg->npcre;
	}
	if (hg && hg->db) {
		m->ncand = 0;
		if (m->scratch && hs_scan(hg->db, s, slen, 0, m->scratch, hs_cb, m) == HS_SUCCESS) {
			for (size_t k = 0; k < m->ncand; k++) {
				int ri = g->rules[m->cand[k]];
				if (m->done[ri])
					continue;
				int n = count_matches(m, &m->e->rules[ri], s, len);
				if (n)
					add_hits(m, ri, n);
			}
		} else {
			/* scan error: PCRE2 for the rules of the database */
			for (size_t k = 0; k < g->n; k++) {
				int ri = g->rules[k];
				if (m->done[ri] || !hg->in_db[k])
					continue;
				int n = count_matches(m, &m->e->rules[ri], s, len);
				if (n)
					add_hits(m, ri, n);
			}
		}
	}
#endif
	for (size_t k = 0; k < npcre; k++) {
		int ri = pcre_only[k];
		if (m->done[ri])
			continue;
		int n = count_matches(m, &m->e->rules[ri], s, len);
		if (n)
			add_hits(m, ri, n);
	}
	if (m->deadline && now_ms() > m->deadline)
		m->timed_out = true;
}

/* Body lines as SpamAssassin builds them (get_rendered_body_text_array). */
static void build_body(struct msgctx *m)
{
	const struct sift_mime *mm = m->mime;
	struct sbuf text = {0};
	bool any = false;
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (!p->text)
			continue;
		/* leaves only: skip containers */
		if (any || text.n)
			sb_add(&text, "\n", 1);
		size_t n = p->text_len;
		if (n > m->e->body_scan_size) {
			size_t cut = m->e->body_scan_size;
			const char *nl = memchr(p->text + cut, '\n', n - cut);
			n = nl && (size_t)(nl - p->text) - cut <= 1024 ? (size_t)(nl - p->text) + 1 : cut;
		}
		sb_add(&text, p->text, n);
		any = true;
	}
	/* whitespace: blank-line runs -> paragraph break, other runs -> space */
	struct sbuf w = {0};
	const char *t = sb_str(&text);
	size_t n = text.n;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)t[i];
		if (isspace(c)) {
			size_t j = i;
			int nl = 0;
			while (j < n && isspace((unsigned char)t[j])) {
				if (t[j] == '\n')
					nl++;
				j++;
			}
			sb_add(&w, nl >= 2 ? "\n" : " ", 1);
			i = j;
			continue;
		}
		/* UTF-8 NBSP (U+00A0) is Unicode white space in Perl */
		if (c == 0xc2 && i + 1 < n && (unsigned char)t[i + 1] == 0xa0) {
			sb_add(&w, " ", 1);
			i += 2;
			while (i < n && isspace((unsigned char)t[i]) && t[i] != '\n')
				i++;
			continue;
		}
		sb_add(&w, t + i, 1);
		i++;
	}
	free(text.d);
	/* subject line first */
	size_t st = 0;
	const struct sift_mime_header *sh = mh(mm, "Subject", &st);
	struct sbuf all = {0};
	if (sh && *sh->value) {
		sb_adds(&all, sh->value);
		sb_add(&all, "\n", 1);
	} else
		sb_add(&all, "\n", 1);
	sb_add(&all, sb_str(&w), w.n);
	free(w.d);
	/* split into lines (each keeps its \n) of at most 2048 octets */
	size_t cap = 16;
	m->lines = xmalloc(cap * sizeof(char *));
	m->lens = xmalloc(cap * sizeof(size_t));
	const char *a = sb_str(&all);
	size_t an = all.n;
	for (size_t i = 0; i < an;) {
		const char *nl = memchr(a + i, '\n', an - i);
		size_t le = nl ? (size_t)(nl - a) + 1 : an;
		while (le - i > 2048) {
			size_t k = 2048;
			while (k > 0 && a[i + k - 1] != ' ')
				k--;
			if (k == 0)
				k = 2048;
			if (m->nlines == cap) {
				cap *= 2;
				m->lines = xrealloc(m->lines, cap * sizeof(char *));
				m->lens = xrealloc(m->lens, cap * sizeof(size_t));
			}
			m->lines[m->nlines] = xstrndup(a + i, k);
			m->lens[m->nlines++] = k;
			i += k;
		}
		if (m->nlines == cap) {
			cap *= 2;
			m->lines = xrealloc(m->lines, cap * sizeof(char *));
			m->lens = xrealloc(m->lens, cap * sizeof(size_t));
		}
		m->lines[m->nlines] = xstrndup(a + i, le - i);
		m->lens[m->nlines++] = le - i;
		i = le;
	}
	free(all.d);
}

/* rawbody: decoded text parts (HTML not rendered), in paragraphs of
 * 2048..4096 octets. */
static void build_raw(struct msgctx *m)
{
	const struct sift_mime *mm = m->mime;
	size_t cap = 8;
	m->raws = xmalloc(cap * sizeof(char *));
	m->rawlens = xmalloc(cap * sizeof(size_t));
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (!p->text || strcmp(p->type, "text/calendar") == 0)
			continue;
		const char *s = (const char *)p->data;
		size_t n = p->data_len;
		if (n > 500000)
			n = 500000;
		size_t ofs = 0;
		while (ofs < n) {
			size_t j;
			if (n - ofs <= 4096)
				j = n;
			else {
				const char *nl = memchr(s + ofs + 2048, '\n', n - ofs - 2048);
				j = nl && (size_t)(nl - s) - ofs + 1 <= 4096 ? (size_t)(nl - s) + 1
									     : ofs + 2048;
			}
			if (m->nraws == cap) {
				cap *= 2;
				m->raws = xrealloc(m->raws, cap * sizeof(char *));
				m->rawlens = xrealloc(m->rawlens, cap * sizeof(size_t));
			}
			/* LF line ends */
			struct sbuf b = {0};
			for (size_t k = ofs; k < j; k++)
				if (!(s[k] == '\r' && k + 1 < j && s[k + 1] == '\n'))
					sb_add(&b, s + k, 1);
			m->raws[m->nraws] = b.d ? b.d : xstrdup("");
			m->rawlens[m->nraws++] = b.n;
			ofs = j;
		}
	}
}

static void build_full(struct msgctx *m)
{
	const struct sift_mime *mm = m->mime;
	struct sbuf b = {0};
	for (size_t i = 0; i < mm->header_count; i++) {
		sb_adds(&b, mm->headers[i].name);
		sb_adds(&b, ": ");
		for (const char *p = mm->headers[i].raw; *p; p++)
			if (*p != '\r')
				sb_add(&b, p, 1);
		sb_add(&b, "\n", 1);
	}
	sb_add(&b, "\n", 1);
	for (size_t i = 0; i < mm->body_len; i++)
		if (!(mm->body[i] == '\r' && i + 1 < mm->body_len && mm->body[i + 1] == '\n'))
			sb_add(&b, mm->body + i, 1);
	m->full = b.d;
	m->full_len = b.n;
}

static double meta_value(struct msgctx *m, const struct rule *r)
{
	double st[256];
	int sp = 0;
	for (int i = 0; i < r->nrpn; i++) {
		int t = r->rpn[i];
		if (t >= 0) {
			if (sp < 256)
				st[sp++] = m->hits[t];
			continue;
		}
		if (t == OP_NUM) {
			if (sp < 256)
				st[sp++] = r->rpn_num[i];
			continue;
		}
		if (t == OP_NOT) {
			st[sp - 1] = !st[sp - 1];
			continue;
		}
		if (t == OP_NEG) {
			st[sp - 1] = -st[sp - 1];
			continue;
		}
		if (sp < 2)
			return 0;
		double b = st[--sp], a = st[sp - 1], v = 0;
		switch (t) {
		case OP_MUL:
			v = a * b;
			break;
		case OP_DIV:
			v = b != 0 ? a / b : 0;
			break;
		case OP_ADD:
			v = a + b;
			break;
		case OP_SUB:
			v = a - b;
			break;
		case OP_LT:
			v = a < b;
			break;
		case OP_GT:
			v = a > b;
			break;
		case OP_LE:
			v = a <= b;
			break;
		case OP_GE:
			v = a >= b;
			break;
		case OP_EQ:
			v = a == b;
			break;
		case OP_NE:
			v = a != b;
			break;
		case OP_AND:
			v = a && b;
			break;
		case OP_OR:
			v = a || b;
			break;
		}
		st[sp - 1] = v;
	}
	return sp ? st[sp - 1] : 0;
}

static int hitcmp(const void *a, const void *b)
{
	return strcmp(((const struct spam_hit *)a)->name, ((const struct spam_hit *)b)->name);
}

int spam_engine_check(const struct spam_engine *e, const struct spam_input *in, struct spam_result *res)
{
	memset(res, 0, sizeof(*res));
	res->required = e->required;
	struct msgctx m = {0};
	m.e = e;
	m.in = in;
	m.mime = in->mime;
	m.deadline = in->deadline_ms;
	m.hits = xcalloc(e->nrules, sizeof(int));
	m.done = xcalloc(e->nrules, sizeof(bool));
	m.tvals = xcalloc(e->ntargets, sizeof(char *));
	m.tdone = xcalloc(e->ntargets, sizeof(bool));
	m.cand = xcalloc(e->nrules + 1, sizeof(int));
	m.md = pcre2_match_data_create(16, NULL);
	m.mctx = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(m.mctx, 200000);
	pcre2_set_depth_limit(m.mctx, 5000);
#ifdef SPAM_HAVE_HS
	/* one matcher for the whole message */
	struct spam_engine *me = (struct spam_engine *)e;
	m.hm = atomic_load_explicit(&me->hs, memory_order_acquire);
	m.pool = m.hm ? &((struct hsmatch *)m.hm)->pool : &me->pool;
	m.scratch = pool_get(m.pool);
#endif
	for (size_t gi = 0; gi < e->ngroups; gi++) {
		const struct rgroup *g = &e->groups[gi];
		switch (g->type) {
		case R_HEADER: {
			const char *v = target_value(&m, g->target_idx);
			if (v)
				scan_group(&m, gi, v, strlen(v));
			/* if-unset and absent headers: handled per rule below */
			break;
		}
		case R_MIMEHEADER: {
			const struct target *t = &e->targets[g->target_idx];
			for (size_t pi = 1; pi < m.mime->part_count; pi++) {
				const struct sift_mime_part *p = &m.mime->parts[pi];
				for (size_t hi = 0; hi < p->header_count; hi++)
					if (strcasecmp(p->headers[hi].name, t->name) == 0) {
						const char *v =
							t->raw ? p->headers[hi].raw : p->headers[hi].value;
						scan_group(&m, gi, v, strlen(v));
					}
			}
			break;
		}
		case R_BODY:
			if (!m.lines)
				build_body(&m);
			for (size_t i = 0; i < m.nlines; i++)
				scan_group(&m, gi, m.lines[i], m.lens[i]);
			break;
		case R_RAWBODY:
			if (!m.raws)
				build_raw(&m);
			for (size_t i = 0; i < m.nraws; i++)
				scan_group(&m, gi, m.raws[i], m.rawlens[i]);
			break;
		case R_FULL:
			if (!m.full)
				build_full(&m);
			scan_group(&m, gi, m.full, m.full_len);
			break;
		case R_URI:
			for (size_t i = 0; i < m.mime->uri_count; i++)
				scan_group(&m, gi, m.mime->uris[i].uri, strlen(m.mime->uris[i].uri));
			break;
		default:
			break;
		}
	}
	/* header rules: negation, if-unset, exists: */
	for (size_t pi = 0; pi < e->npost_hdr; pi++) {
		size_t i = (size_t)e->post_hdr[pi];
		const struct rule *r = &e->rules[i];
		if (r->disabled)
			continue;
		if (r->exists) {
			bool present = target_value(&m, r->target_idx) != NULL;
			m.hits[i] = present != r->neg;
			continue;
		}
		if (r->type == R_MIMEHEADER)
			continue;
		const char *v = target_value(&m, r->target_idx);
		if (!r->re) {
			/* Hyperscan-only: absent headers match nothing */
		} else if (!v && r->unset) {
			m.hits[i] = count_matches(&m, r, r->unset, strlen(r->unset));
		} else if (!v) {
			/* absent: matched as the empty string */
			m.hits[i] = pmatch(&m, r, "", 0, 0) >= 0;
		}
		if (r->neg)
			m.hits[i] = !m.hits[i];
	}
	/* evals */
	for (size_t ei = 0; ei < e->neval_rules; ei++) {
		size_t i = (size_t)e->eval_rules[ei];
		const struct rule *r = &e->rules[i];
		if (r->type == R_BODY && !m.lines)
			build_body(&m);
		if (r->type == R_RAWBODY && !m.raws)
			build_raw(&m);
		m.cur_rule = (int)i;
		m.hits[i] = evals[r->eval_id].fn(&m, r);
	}
	/* symbols of other plugins */
	for (size_t si = 0; si < e->nsym_rules; si++) {
		size_t i = (size_t)e->sym_rules[si];
		const struct rule *r = &e->rules[i];
		for (size_t k = 0; k < in->nsyms; k++)
			if (strcasecmp(in->sym_names[k], r->name) == 0)
				m.hits[i] = 1;
	}
	/* metas */
	for (size_t k = 0; k < e->nmeta; k++) {
		int i = e->meta_order[k];
		double v = meta_value(&m, &e->rules[i]);
		m.hits[i] = v != 0;
	}
	/* total */
	size_t cap = 16;
	res->hits = xmalloc(cap * sizeof(*res->hits));
	for (size_t i = 0; i < e->nrules; i++) {
		const struct rule *r = &e->rules[i];
		if (!m.hits[i] || r->disabled || r->type == R_NONE || r->score == 0 ||
		    strncmp(r->name, "__", 2) == 0)
			continue;
		if (res->nhits == cap) {
			cap *= 2;
			res->hits = xrealloc(res->hits, cap * sizeof(*res->hits));
		}
		res->hits[res->nhits].name = r->name;
		res->hits[res->nhits].score = r->score;
		res->hits[res->nhits].describe = r->describe;
		res->nhits++;
		res->score += r->score;
	}
	/* the other plugins' symbols that no symbol_score weighs count with
	 * their own scores: the message has one score, whoever computes it */
	for (size_t k = 0; k < in->nsyms; k++) {
		bool weighed = false;
		for (size_t si = 0; si < e->nsym_rules && !weighed; si++)
			weighed = strcasecmp(in->sym_names[k], e->rules[e->sym_rules[si]].name) == 0;
		for (size_t j = 0; j < k && !weighed; j++)
			weighed = strcasecmp(in->sym_names[k], in->sym_names[j]) == 0;
		if (weighed || in->sym_scores[k] == 0)
			continue;
		if (res->nhits == cap) {
			cap *= 2;
			res->hits = xrealloc(res->hits, cap * sizeof(*res->hits));
		}
		res->hits[res->nhits].name = in->sym_names[k];
		res->hits[res->nhits].score = in->sym_scores[k];
		res->hits[res->nhits].describe = NULL;
		res->nhits++;
		res->score += in->sym_scores[k];
	}
	qsort(res->hits, res->nhits, sizeof(*res->hits), hitcmp);
	res->timed_out = m.timed_out;
	/* cleanup */
#ifdef SPAM_HAVE_HS
	pool_put(m.pool, m.scratch);
#endif
	for (size_t i = 0; i < e->ntargets; i++)
		free(m.tvals[i]);
	for (size_t i = 0; i < m.nlines; i++)
		free(m.lines[i]);
	for (size_t i = 0; i < m.nraws; i++)
		free(m.raws[i]);
	free(m.lines);
	free(m.lens);
	free(m.raws);
	free(m.rawlens);
	free(m.full);
	relays_free(m.relays);
	html_free(m.html);
	free(m.tvals);
	free(m.tdone);
	free(m.hits);
	free(m.done);
	free(m.cand);
	pcre2_match_data_free(m.md);
	pcre2_match_context_free(m.mctx);
	return 0;
}

void spam_result_free(struct spam_result *r)
{
	free(r->hits);
	r->hits = NULL;
	r->nhits = 0;
}

/* ---- lint and stats --------------------------------------------------------- */

/* Rules SpamAssassin itself would refuse (spamassassin --lint): the errors
 * that make spam_engine_new fail. Rules Sift merely skips (unknown eval:
 * functions, plugins it does not have) are warnings. */
static size_t count_errors(const struct spam_engine *e)
{
	size_t n = 0;
	for (size_t i = 0; i < e->nlint; i++)
		n += e->lint[i].error;
	return n;
}

#define MAX_LISTED_ERRORS 20

/* The errors, one "file:line: what" per line, at most MAX_LISTED_ERRORS. */
static char *format_errors(const struct spam_engine *e)
{
	struct sbuf b = {0};
	size_t n = count_errors(e), shown = 0;
	char *head = xasprintf("%zu error(s) in the rules:", n);
	sb_adds(&b, head);
	free(head);
	for (size_t i = 0; i < e->nlint && shown < MAX_LISTED_ERRORS; i++) {
		if (!e->lint[i].error)
			continue;
		sb_adds(&b, "\n  ");
		sb_adds(&b, e->lint[i].text);
		shown++;
	}
	if (n > shown) {
		char *more = xasprintf("\n  ... and %zu more (siftctl spam lint lists them all)", n - shown);
		sb_adds(&b, more);
		free(more);
	}
	return (char *)sb_str(&b);
}

int spam_engine_lint(const struct spam_engine *e, FILE *out, int verbose)
{
	int errors = 0;
	for (size_t i = 0; i < e->nlint; i++) {
		if (e->lint[i].error)
			errors++;
		if (e->lint[i].error || verbose)
			fprintf(out, "%s: %s\n", e->lint[i].error ? "error" : "warning", e->lint[i].text);
	}
#ifdef SPAM_HAVE_HS
	const struct hsmatch *hm = atomic_load(&((struct spam_engine *)e)->hs);
#endif
	for (size_t i = 0; i < e->nrules; i++) {
		const struct rule *r = &e->rules[i];
		if (r->type == R_NONE)
			continue;
		if (r->disabled && r->eval_fn && r->eval_id < 0)
			fprintf(out, "unknown-eval: %s: %s (%s) disabled\n", r->where, r->name, r->why);
#ifdef SPAM_HAVE_HS
		if (hm && r->group >= 0 && r->re && verbose) {
			const struct rgroup *g = &e->groups[r->group];
			for (size_t k = 0; k < g->n; k++)
				if (g->rules[k] == (int)i &&
				    !(hm->g[r->group].db && hm->g[r->group].in_db[k]))
					fprintf(out, "pcre2-fallback: %s: %s: %s\n", r->where, r->name,
						r->pattern);
		}
#endif
	}
	char buf[512];
	spam_engine_stats(e, buf, sizeof(buf));
	fprintf(out, "%s\n", buf);
	return errors;
}

void spam_engine_stats(const struct spam_engine *e, char *buf, size_t n)
{
	unsigned counts[R_TMAX] = {0};
	unsigned active = 0, nre = 0, nexact = 0;
	for (size_t i = 0; i < e->nrules; i++) {
		const struct rule *r = &e->rules[i];
		if (r->type == R_NONE)
			continue;
		counts[r->type]++;
		if (!r->disabled)
			active++;
		if (!r->disabled && r->group >= 0) {
			nre += r->re != NULL;
			nexact += r->hs_exact;
		}
	}
	char regex[160];
	snprintf(regex, sizeof(regex), "%u PCRE2-JIT", nre);
#ifdef SPAM_HAVE_HS
	const struct hsmatch *hm = atomic_load(&((struct spam_engine *)e)->hs);
	if (hm)
		snprintf(regex, sizeof(regex), "%u through Hyperscan prefilters, %u PCRE2-JIT only", hm->nhs,
			 hm->npcre);
	else if (e->use_hs)
		snprintf(regex, sizeof(regex), "%u PCRE2-JIT until the Hyperscan databases are ready", nre);
#endif
	snprintf(buf, n,
		 "rules: %u active (header %u, body %u, rawbody %u, full %u, uri %u, mimeheader %u, meta %u, "
		 "symbol %u); %u disabled (%u unknown evals); regexes: %s, %u Hyperscan exact",
		 active, counts[R_HEADER], counts[R_BODY], counts[R_RAWBODY], counts[R_FULL], counts[R_URI],
		 counts[R_MIMEHEADER], counts[R_META], counts[R_SYMBOL], e->stats_disabled,
		 e->stats_eval_unknown, regex, nexact);
}

void spam_fmt_num(char *buf, size_t n, double v)
{
	if (fabs(v) < 0.0005)
		v = 0;
	snprintf(buf, n, "%.3f", v);
	char *dot = strchr(buf, '.');
	if (dot) {
		char *e = buf + strlen(buf) - 1;
		while (e > dot && *e == '0')
			*e-- = 0;
		if (e == dot)
			*e = 0;
	}
}

char *spam_format_status(const struct spam_result *r, double tag_level, double tag2_level, int is_spam)
{
	struct sbuf b = {0};
	char sc[32], t1[32], t2[32];
	spam_fmt_num(sc, sizeof(sc), r->score);
	spam_fmt_num(t1, sizeof(t1), tag_level);
	spam_fmt_num(t2, sizeof(t2), tag2_level);
	char *head = xasprintf("%s, score=%s tagged_above=%s required=%s tests=[", is_spam ? "Yes" : "No", sc,
			       t1, t2);
	sb_adds(&b, head);
	free(head);
	for (size_t i = 0; i < r->nhits; i++) {
		char v[32];
		spam_fmt_num(v, sizeof(v), r->hits[i].score);
		if (i)
			sb_adds(&b, ", ");
		sb_adds(&b, r->hits[i].name);
		sb_adds(&b, "=");
		sb_adds(&b, v);
	}
	sb_adds(&b, "] autolearn=no autolearn_force=no");
	return b.d;
}

#include "evals.c"
