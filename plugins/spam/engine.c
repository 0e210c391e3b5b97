/*
 * engine.c - the ruleset: rules by name (a hash of their names), lint
 * messages, and the engine's life: spam_engine_new (load, finalize, start
 * Hyperscan) and spam_engine_free.
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
 * Compilation: every regex is compiled with PCRE2 (JIT-compiled at its first match); regexes of one
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
#include <stdio.h>

#include "internal.h"

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

void lint(struct spam_engine *e, bool error, const char *fmt, ...)
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

int rule_find(const struct spam_engine *e, const char *name)
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

struct rule *rule_get(struct spam_engine *e, const char *name)
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

void rule_clear_def(struct rule *r)
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

bool plugin_loaded(struct spam_engine *e, const char *name)
{
	for (size_t i = 0; i < e->nplugins; i++)
		if (strcmp(e->plugins[i], name) == 0)
			return true;
	return false;
}

static struct spam_engine *engine_alloc(const struct spam_engine_opts *o)
{
	struct spam_engine *e = xcalloc(1, sizeof(*e));
	e->required = 5.0;
	e->use_hs = o->use_hyperscan;
#ifdef SPAM_HAVE_HS
	e->bg_timeout_ms = o->compile_timeout_ms;
	e->bg_jobs = o->compile_jobs;
#endif
	e->body_scan_size = o->body_scan_size ? o->body_scan_size : 50000;
	e->score_set = o->score_set & 3;
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
	return e;
}

/* The loaded rules compiled into a ready engine, or NULL (e freed) with
 * *err_r. names: where the rules came from, for the error without rules. */
static struct spam_engine *engine_build(struct spam_engine *e, const struct spam_engine_opts *o,
					const char *const *names, char **err_r)
{
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
		for (const char *const *p = names; *p; p++) {
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

struct spam_engine *spam_engine_new(const struct spam_engine_opts *o, char **err_r)
{
	struct spam_engine *e = engine_alloc(o);
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
	return engine_build(e, o, o->paths, err_r);
}

struct spam_engine *spam_engine_new_text(const struct spam_engine_opts *o, const char *name, const char *text,
					 size_t len, char **err_r)
{
	struct spam_engine *e = engine_alloc(o);
	load_text(e, name, text, len);
	const char *names[] = {name, NULL};
	return engine_build(e, o, names, err_r);
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
		free(r->pcre_pat);
		native_free(r->npf);
		pcre2_code_free(atomic_load(&r->anch));
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
	free(e->meta_code);
	free(e->meta_num);
	free(e->meta_base);
	free(e->meta_dep_at);
	free(e->meta_dep);
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
	for (size_t i = 0; i < e->nbayes_ignore; i++)
		free(e->bayes_ignore[i]);
	free(e->bayes_ignore);
	for (size_t i = 0; i < e->nfreemail_glob; i++)
		free(e->freemail_glob[i]);
	free(e->freemail_glob);
	for (size_t i = 0; i < e->nurilists; i++) {
		for (size_t k = 0; k < e->urilists[i].n; k++)
			free(e->urilists[i].host[k]);
		free(e->urilists[i].host);
		free(e->urilists[i].verdict);
		free(e->urilists[i].name);
	}
	free(e->urilists);
	pcre2_code_free(e->fm_email);
	pcre2_code_free(e->fm_email_ctx);
	pcre2_code_free(e->fm_url_at);
	pcre2_code_free(e->bare_re);
	for (size_t i = 0; i < e->nredir; i++)
		pcre2_code_free(e->redir[i]);
	free(e->redir);
	netset_clear(&e->trusted_nets);
	netset_clear(&e->internal_nets);
	netset_clear(&e->msa_nets);
	free(e->post_hdr);
	free(e->eval_rules);
	free(e->sym_rules);
	for (int set = 0; set < 4; set++)
		free(e->notrun[set]);
	net_free(e->net);
#ifdef SPAM_HAVE_HS
	pool_free(&e->pool);
#endif
	free(e);
}

double spam_engine_required(const struct spam_engine *e)
{
	return e->required;
}
