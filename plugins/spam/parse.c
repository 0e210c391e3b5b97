/*
 * parse.c - rule files: SpamAssassin's *.pre and *.cf read line by line,
 * each line dispatched through a table of directives (one handler each);
 * directives that only matter to SpamAssassin's network tests, Bayes,
 * reports or lists are known and ignored.
 */
#include <dirent.h>
#include <glob.h>
#include <stdio.h>
#include <sys/stat.h>

#include "internal.h"

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
				      "freemail_domains",
				      "bayes_ignore_header",
				      "reuse",
				      "url_shortener",
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

/* One line being parsed: "directive args", or for the directives that
 * define or qualify a rule, "directive name rest". */
struct pline {
	struct spam_engine *e;
	const char *where; /* file:line */
	const char *dir;   /* of the file, for include; NULL for rules given as text */
	struct ifstate *st;
	const char *d; /* the directive */
	char *args;
	char *name, *rest; /* args split (D_NAMED) */
	int arg;	   /* the table's argument */
};

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
	/* One value counts in every set; with fewer than four, the last one
	 * given stands for the sets after it. */
	struct rule *r = rule_get(e, name);
	for (int i = 0; i < 4; i++)
		r->scores[i] = v[i < n ? i : n - 1];
	r->score = r->scores[e->score_set];
	r->has_score = true;
}

/* ---- directives without a rule name ---- */

static void d_if(struct pline *l)
{
	struct ifstate *st = l->st;
	if (st->depth >= 63) {
		lint(l->e, true, "%s: conditionals nested too deep", l->where);
		return;
	}
	int v;
	if (l->arg) /* ifplugin */
		v = plugin_loaded(l->e, l->args);
	else {
		v = if_eval(l->e, l->args);
		if (v < 0) {
			lint(l->e, true, "%s: cannot evaluate 'if %s'", l->where, l->args);
			v = 0;
		}
	}
	st->active[st->depth] = v;
	st->depth++;
}

static void d_else(struct pline *l)
{
	if (l->st->depth > 0)
		l->st->active[l->st->depth - 1] = !l->st->active[l->st->depth - 1];
	else
		lint(l->e, true, "%s: else without if", l->where);
}

static void d_endif(struct pline *l)
{
	if (l->st->depth > 0)
		l->st->depth--;
	else
		lint(l->e, true, "%s: endif without if", l->where);
}

static void d_loadplugin(struct pline *l)
{
	char *sp = l->args;
	while (*sp && !isspace((unsigned char)*sp))
		sp++;
	*sp = 0;
	add_plugin(l->e, l->args);
}

static void d_include(struct pline *l)
{
	struct spam_engine *e = l->e;
	const char *s = l->args;
	if (!l->dir) {
		lint(e, true, "%s: include %s: not available in rules given as text", l->where, s);
		return;
	}
	char *p = *s == '/' ? xstrdup(s) : xasprintf("%s/%s", l->dir, s);
	char *err = NULL;
	if (e->include_depth > 10)
		lint(e, true, "%s: include nested too deep", l->where);
	else if (load_path(e, p, false, false, &err) < 0) {
		lint(e, true, "%s: include %s: %s", l->where, p, err);
		free(err);
	}
	free(p);
}

static void d_redirector(struct pline *l)
{
	redirector_directive(l->e, l->args, l->where);
}

static void d_freemail_domains(struct pline *l)
{
	struct spam_engine *e = l->e;
	for (char *t = strtok(l->args, " \t"); t; t = strtok(NULL, " \t")) {
		if (e->nfreemail == e->freemail_cap) {
			e->freemail_cap = e->freemail_cap ? e->freemail_cap * 2 : 1024;
			e->freemail = xrealloc(e->freemail, e->freemail_cap * sizeof(char *));
		}
		char *dd = xstrdup(t);
		for (char *c = dd; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		e->freemail[e->nfreemail++] = dd;
	}
}

/* The URI host list name, created when new. */
static struct urilist *urilist_get(struct spam_engine *e, const char *name)
{
	for (size_t i = 0; i < e->nurilists; i++)
		if (strcmp(e->urilists[i].name, name) == 0)
			return &e->urilists[i];
	e->urilists = xrealloc(e->urilists, (e->nurilists + 1) * sizeof(*e->urilists));
	struct urilist *u = &e->urilists[e->nurilists++];
	*u = (struct urilist){.name = xstrdup(name)};
	return u;
}

/* Reads "(NAME)" at the start of args: the name (in args, cut), the rest
 * in *rest; NULL without one. */
static char *list_name(char *args, char **rest)
{
	while (*args == ' ' || *args == '\t')
		args++;
	if (*args != '(')
		return NULL;
	char *close = strchr(args, ')');
	if (!close || close == args + 1)
		return NULL;
	*close = 0;
	*rest = close + 1;
	return args + 1;
}

/* enlist_uri_host (NAME) [!]HOST..., and with arg the list named so
 * (blocklist_uri_host: BLOCK, welcomelist_uri_host: WELCOME); host names
 * in lower case, a later entry replacing an earlier one. */
static void d_enlist_uri_host(struct pline *l)
{
	struct spam_engine *e = l->e;
	char *rest = l->args;
	const char *name = l->arg == 1 ? "BLOCK" : l->arg == 2 ? "WELCOME" : list_name(l->args, &rest);
	if (!name) {
		lint(e, true, "%s: enlist_uri_host needs a list name in parentheses", l->where);
		return;
	}
	struct urilist *u = urilist_get(e, name);
	for (char *t = strtok(rest, " \t"); t; t = strtok(NULL, " \t")) {
		unsigned char v = *t != '!';
		if (!v)
			t++;
		if (!*t)
			continue;
		for (char *c = t; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		size_t i = 0;
		while (i < u->n && strcmp(u->host[i], t) != 0)
			i++;
		if (i == u->n) {
			u->host = xrealloc(u->host, (u->n + 1) * sizeof(char *));
			u->verdict = xrealloc(u->verdict, u->n + 1);
			u->host[u->n++] = xstrdup(t);
		}
		u->verdict[i] = v;
	}
}

/* delist_uri_host [(NAME)] HOST...: the hosts out of that list, or of
 * every list. */
static void d_delist_uri_host(struct pline *l)
{
	struct spam_engine *e = l->e;
	char *rest = l->args;
	const char *name = list_name(l->args, &rest);
	for (char *t = strtok(rest, " \t"); t; t = strtok(NULL, " \t")) {
		if (*t == '!')
			t++;
		for (char *c = t; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		for (size_t k = 0; k < e->nurilists; k++) {
			struct urilist *u = &e->urilists[k];
			if (name && strcmp(u->name, name) != 0)
				continue;
			for (size_t i = 0; i < u->n; i++)
				if (strcmp(u->host[i], t) == 0) {
					free(u->host[i]);
					u->host[i] = u->host[u->n - 1];
					u->verdict[i] = u->verdict[u->n - 1];
					u->n--;
					break;
				}
		}
	}
}

/* bayes_ignore_header NAME...: headers Bayes does not tokenize. */
static void d_bayes_ignore_header(struct pline *l)
{
	struct spam_engine *e = l->e;
	for (char *t = strtok(l->args, " \t"); t; t = strtok(NULL, " \t")) {
		e->bayes_ignore = xrealloc(e->bayes_ignore, (e->nbayes_ignore + 1) * sizeof(char *));
		e->bayes_ignore[e->nbayes_ignore++] = xstrdup(t);
	}
}

static void d_required_score(struct pline *l)
{
	l->e->required = strtod(l->args, NULL);
}

/* ---- attributes of a rule ---- */

static void d_score(struct pline *l)
{
	set_score(l->e, l->name, l->rest, l->where);
}

static void d_describe(struct pline *l)
{
	struct rule *r = rule_get(l->e, l->name);
	free(r->describe);
	r->describe = xstrdup(l->rest);
}

static void d_tflags(struct pline *l)
{
	struct rule *r = rule_get(l->e, l->name);
	r->tflags = 0;
	r->maxhits = 0;
	for (char *t = strtok(l->rest, " \t"); t; t = strtok(NULL, " \t")) {
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
		else if (strcmp(t, "domains_only") == 0)
			r->tflags |= TF_DOMAINS_ONLY;
		else if (strcmp(t, "ips_only") == 0)
			r->tflags |= TF_IPS_ONLY;
		else if (strcmp(t, "a") == 0)
			r->tflags |= TF_A;
		else if (strcmp(t, "ns") == 0)
			r->tflags |= TF_NS;
		else if (strcmp(t, "notrim") == 0)
			r->tflags |= TF_NOTRIM;
		else if (strcmp(t, "nosubject") == 0)
			r->tflags |= TF_NOSUBJECT;
		else if (strncmp(t, "maxhits=", 8) == 0) {
			r->tflags |= TF_MULTIPLE;
			r->maxhits = atoi(t + 8);
		}
	}
}

static void d_priority(struct pline *l)
{
	rule_get(l->e, l->name)->priority = atoi(l->rest);
}

/* ---- ReplaceTags definitions (applied by replace.c) ---- */

enum { TAG_TAG, TAG_PRE, TAG_INTER, TAG_POST };

static void d_replace_tag(struct pline *l)
{
	struct spam_engine *e = l->e;
	switch (l->arg) {
	case TAG_TAG:
		add_pair(&e->tag_names, &e->tag_vals, &e->ntags, l->name, l->rest);
		break;
	case TAG_PRE:
		add_pair(&e->pre_names, &e->pre_vals, &e->npre, l->name, l->rest);
		break;
	case TAG_INTER:
		add_pair(&e->inter_names, &e->inter_vals, &e->ninter, l->name, l->rest);
		break;
	default:
		add_pair(&e->post_names, &e->post_vals, &e->npost, l->name, l->rest);
		break;
	}
}

static void d_replace_rules(struct pline *l)
{
	struct spam_engine *e = l->e;
	/* name plus the rest: a list of rule names */
	char *all = xasprintf("%s %s", l->name, l->rest);
	for (char *t = strtok(all, " \t"); t; t = strtok(NULL, " \t")) {
		e->replace_rules = xrealloc(e->replace_rules, (e->nreplace + 1) * sizeof(char *));
		e->replace_rules[e->nreplace++] = xstrdup(t);
	}
	free(all);
}

static void d_nothing(struct pline *l)
{
	(void)l; /* replace_start, replace_end: we use the default <> */
}

/* ---- rule definitions ---- */

static void d_symbol_score(struct pline *l)
{
	struct rule *r = rule_get(l->e, l->name);
	rule_clear_def(r);
	r->type = R_SYMBOL;
	r->where = xstrdup(l->where);
	set_score(l->e, l->name, l->rest, l->where);
}

static void rule_bad(struct rule *r, const char *why)
{
	r->disabled = true;
	r->why = xstrdup(why);
}

/* header NAME Hdr =~ /re/flags [if-unset: text], header NAME exists:Hdr */
static void header_rule(struct pline *l, struct rule *r)
{
	char *rest = l->rest;
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
		rule_bad(r, "no =~ or !~ operator");
		lint(l->e, true, "%s: %s: header rule without =~/!~", l->where, l->name);
		return;
	}
	p += 2;
	while (isspace((unsigned char)*p))
		p++;
	const char *end = parse_regex(p, &r->pattern, &r->flags);
	if (!end) {
		rule_bad(r, "bad regex syntax");
		lint(l->e, true, "%s: %s: cannot parse regex: %s", l->where, l->name, p);
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
}

/* header, body, rawbody, full, uri, mimeheader, meta (arg: the type) */
static void d_rule(struct pline *l)
{
	enum rtype t = (enum rtype)l->arg;
	const char *name = l->name, *rest = l->rest;
	if (!*name) {
		lint(l->e, true, "%s: %s without a rule name", l->where, l->d);
		return;
	}
	struct rule *r = rule_get(l->e, name);
	rule_clear_def(r);
	r->type = t;
	r->where = xstrdup(l->where);
	r->disabled = false;
	free(r->why);
	r->why = NULL;
	if (t == R_META) {
		r->meta_src = xstrdup(rest);
		return;
	}
	if (strncmp(rest, "eval:", 5) == 0) {
		if (parse_eval(rest + 5, r) < 0) {
			rule_bad(r, "bad eval syntax");
			lint(l->e, true, "%s: %s: bad eval: %s", l->where, name, rest);
		}
		return;
	}
	if (t == R_HEADER || t == R_MIMEHEADER) {
		header_rule(l, r);
		return;
	}
	if (!parse_regex(rest, &r->pattern, &r->flags)) {
		rule_bad(r, "bad regex syntax");
		lint(l->e, true, "%s: %s: cannot parse regex: %s", l->where, name, rest);
	}
}

/* trusted_networks, internal_networks, msa_networks (arg 0, 1, 2) and
 * their clear_ directives (arg + 3) */
static void d_networks(struct pline *l)
{
	struct spam_engine *e = l->e;
	struct netset *ns = l->arg % 3 == 0   ? &e->trusted_nets
			    : l->arg % 3 == 1 ? &e->internal_nets
					      : &e->msa_nets;
	bool *conf = l->arg % 3 == 0 ? &e->trusted_conf : l->arg % 3 == 1 ? &e->internal_conf : NULL;
	if (l->arg >= 3) {
		netset_clear(ns);
		if (conf)
			*conf = false;
		return;
	}
	char *bad = NULL;
	if (netset_add(ns, l->args, &bad) < 0)
		lint(e, true, "%s: %s: bad network '%s'", l->where, l->d, bad);
	free(bad);
	if (conf)
		*conf = true;
}

/* ---- the table ---- */

#define D_COND	0x01 /* runs in inactive branches too */
#define D_NAMED 0x02 /* args are a rule name and the rest */

static const struct directive {
	const char *name;
	void (*fn)(struct pline *l);
	int arg;
	unsigned flags;
} directives[] = {
	{"if", d_if, 0, D_COND},
	{"ifplugin", d_if, 1, D_COND},
	{"else", d_else, 0, D_COND},
	{"endif", d_endif, 0, D_COND},
	{"loadplugin", d_loadplugin, 0, 0},
	{"tryplugin", d_loadplugin, 0, 0},
	{"include", d_include, 0, 0},
	{"freemail_domains", d_freemail_domains, 0, 0},
	{"enlist_uri_host", d_enlist_uri_host, 0, 0},
	{"delist_uri_host", d_delist_uri_host, 0, 0},
	{"blocklist_uri_host", d_enlist_uri_host, 1, 0},
	{"blacklist_uri_host", d_enlist_uri_host, 1, 0},
	{"welcomelist_uri_host", d_enlist_uri_host, 2, 0},
	{"whitelist_uri_host", d_enlist_uri_host, 2, 0},
	{"redirector_pattern", d_redirector, 0, 0},
	{"bayes_ignore_header", d_bayes_ignore_header, 0, 0},
	{"required_score", d_required_score, 0, 0},
	{"required_hits", d_required_score, 0, 0},
	{"score", d_score, 0, D_NAMED},
	{"describe", d_describe, 0, D_NAMED},
	{"tflags", d_tflags, 0, D_NAMED},
	{"priority", d_priority, 0, D_NAMED},
	{"replace_tag", d_replace_tag, TAG_TAG, D_NAMED},
	{"replace_pre", d_replace_tag, TAG_PRE, D_NAMED},
	{"replace_inter", d_replace_tag, TAG_INTER, D_NAMED},
	{"replace_post", d_replace_tag, TAG_POST, D_NAMED},
	{"replace_rules", d_replace_rules, 0, D_NAMED},
	{"replace_start", d_nothing, 0, D_NAMED},
	{"replace_end", d_nothing, 0, D_NAMED},
	{"symbol_score", d_symbol_score, 0, D_NAMED},
	{"trusted_networks", d_networks, 0, 0},
	{"internal_networks", d_networks, 1, 0},
	{"msa_networks", d_networks, 2, 0},
	{"clear_trusted_networks", d_networks, 3, 0},
	{"clear_internal_networks", d_networks, 4, 0},
	{"clear_msa_networks", d_networks, 5, 0},
	{"header", d_rule, R_HEADER, D_NAMED},
	{"body", d_rule, R_BODY, D_NAMED},
	{"rawbody", d_rule, R_RAWBODY, D_NAMED},
	{"full", d_rule, R_FULL, D_NAMED},
	{"uri", d_rule, R_URI, D_NAMED},
	{"mimeheader", d_rule, R_MIMEHEADER, D_NAMED},
	{"meta", d_rule, R_META, D_NAMED},
	{NULL, NULL, 0, 0},
};

/* Cuts the first word of s (NUL after it); returns what follows, blanks
 * skipped. */
static char *cut_word(char *s)
{
	while (*s && !isspace((unsigned char)*s))
		s++;
	if (*s)
		*s++ = 0;
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

static void parse_line(struct pline *l, char *line)
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
	l->d = s;
	l->args = cut_word(s);
	const struct directive *dt = directives;
	while (dt->name && strcmp(dt->name, l->d) != 0)
		dt++;
	if (!(dt->flags & D_COND) && !if_active(l->st))
		return;
	if (!dt->name) {
		if (net_directive(l->e, l->d, l->args, l->where))
			return;
		if (!is_ignored(l->d))
			lint(l->e, true, "%s: unknown directive '%s'", l->where, l->d);
		return;
	}
	if (dt->flags & D_NAMED) {
		l->name = l->args;
		l->rest = cut_word(l->args);
	}
	l->arg = dt->arg;
	dt->fn(l);
}

/* ---- files ---- */

/* The lines of fp, read as the file `path` of the directory dir (NULL:
 * rules given as text). */
static void load_stream(struct spam_engine *e, FILE *fp, const char *path, const char *dir)
{
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
		struct pline l = {.e = e, .where = where, .dir = dir, .st = &st};
		parse_line(&l, line);
	}
	e->include_depth--;
	if (st.depth)
		lint(e, true, "%s:%u: %d if/ifplugin without endif at the end of the file", path, lineno,
		     st.depth);
	free(line);
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
	load_stream(e, fp, path, dir);
	free(dir);
	fclose(fp);
	return 0;
}

void load_text(struct spam_engine *e, const char *name, const char *text, size_t len)
{
	if (!len)
		return;
	FILE *fp = fmemopen((void *)text, len, "r");
	if (!fp)
		abort();
	load_stream(e, fp, name, NULL);
	fclose(fp);
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

/* A spam_rules entry with *, ? or [: every match in name order, each as
 * an entry of its own; a pattern matching nothing is an error. */
static int load_glob(struct spam_engine *e, const char *pattern, bool pre_only, bool cf_only, char **err_r)
{
	glob_t g;
	int rc = glob(pattern, GLOB_ERR, NULL, &g);
	if (rc == GLOB_NOMATCH) {
		*err_r = xasprintf("%s: no file matches", pattern);
		return -1;
	}
	if (rc != 0) {
		*err_r = xasprintf("%s: %s", pattern, rc == GLOB_NOSPACE ? "out of memory" : strerror(errno));
		return -1;
	}
	rc = 0;
	for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
		rc = load_path(e, g.gl_pathv[i], pre_only, cf_only, err_r);
	globfree(&g);
	return rc;
}

int load_path(struct spam_engine *e, const char *path, bool pre_only, bool cf_only, char **err_r)
{
	if (strpbrk(path, "*?["))
		return load_glob(e, path, pre_only, cf_only, err_r);
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
	/* a file: a *.pre with the *.pre files, any other with the *.cf */
	size_t l = strlen(path);
	bool pre = l > 4 && strcmp(path + l - 4, ".pre") == 0;
	if (pre ? cf_only : pre_only)
		return 0;
	return load_file(e, path, err_r);
}
