/*
 * lint.c - what the engine tells about its rules (lint, stats) and the
 * amavisd-style X-Spam-Status report of a result.
 */
#include <math.h>
#include <stdio.h>

#include "internal.h"

/* Rules SpamAssassin itself would refuse (spamassassin --lint): the errors
 * that make spam_engine_new fail. Rules Sift merely skips (unknown eval:
 * functions, plugins it does not have) are warnings. */
size_t count_errors(const struct spam_engine *e)
{
	size_t n = 0;
	for (size_t i = 0; i < e->nlint; i++)
		n += e->lint[i].error;
	return n;
}

#define MAX_LISTED_ERRORS 20

/* The errors, one "file:line: what" per line, at most MAX_LISTED_ERRORS. */
char *format_errors(const struct spam_engine *e)
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
				    !hsgroup_db_of(&hm->g[r->group], hm->g[r->group].in_db[k]))
					/* native: left out for a check in C (native.c) */
					fprintf(out, "%s: %s: %s: %s\n", r->npf ? "native" : "pcre2-fallback",
						r->where, r->name, r->pattern);
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
		if (!r->disabled && !r->off)
			active++;
		if (!r->disabled && r->group >= 0) {
			nre += r->re != NULL;
			nexact += r->hs_exact;
		}
	}
	char regex[200];
	snprintf(regex, sizeof(regex), "%u PCRE2-JIT", nre);
#ifdef SPAM_HAVE_HS
	const struct hsmatch *hm = atomic_load(&((struct spam_engine *)e)->hs);
	if (hm)
		snprintf(
			regex, sizeof(regex),
			"%u through Hyperscan prefilters (%u of them with large repeats relaxed, %u tried at "
			"start offsets, %u in an ASCII form for ASCII lines), %u PCRE2-JIT only (%u of them "
			"after a native check)",
			hm->nhs, hm->nrelaxed, hm->nstarts, hm->nascii, hm->npcre, hm->nnative);
	else if (e->use_hs)
		snprintf(regex, sizeof(regex), "%u PCRE2-JIT until the Hyperscan databases are ready", nre);
#endif
	snprintf(buf, n,
		 "rules: %u active (header %u, body %u, rawbody %u, full %u, uri %u, mimeheader %u, meta %u, "
		 "symbol %u); %u disabled (%u unknown evals); not run: %u scored 0, %u __ rules nothing "
		 "reads; regexes: %s, %u Hyperscan exact",
		 active, counts[R_HEADER], counts[R_BODY], counts[R_RAWBODY], counts[R_FULL], counts[R_URI],
		 counts[R_MIMEHEADER], counts[R_META], counts[R_SYMBOL], e->stats_disabled,
		 e->stats_eval_unknown, e->stats_off, e->stats_unused, regex, nexact);
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
	sb_adds(&b, "] autolearn=");
	sb_adds(&b, r->autolearn ? r->autolearn : "no");
	sb_adds(&b, " autolearn_force=no");
	return b.d;
}

static int cmp_rule_ms(const void *a, const void *b, void *arg)
{
	const double *ms = arg;
	double x = ms[*(const size_t *)a], y = ms[*(const size_t *)b];
	return x < y ? 1 : x > y ? -1 : 0;
}

void spam_profile_print(const struct spam_engine *e, const struct spam_profile *p, FILE *out, int top)
{
	static const char *const kind[R_TMAX] = {
		[R_HEADER] = "header", [R_BODY] = "body", [R_RAWBODY] = "rawbody",
		[R_FULL] = "full",     [R_URI] = "uri",	  [R_MIMEHEADER] = "mimeheader"};
	double n = p->messages ? p->messages : 1;
	fprintf(out, "profile: %u messages, %.3f ms per message scoring (MIME parsing not included)\n",
		p->messages, p->total / n);
	fprintf(out, "%-12s %9s %9s %9s %9s   (ms per message)\n", "rule kind", "texts", "Hyperscan", "PCRE2",
		"total");
	double sum = 0;
	for (int t = 0; t < R_TMAX; t++) {
		if (!kind[t])
			continue;
		double all = p->texts[t] + p->hs[t] + p->pcre[t];
		sum += all;
		fprintf(out, "%-12s %9.3f %9.3f %9.3f %9.3f\n", kind[t], p->texts[t] / n, p->hs[t] / n,
			p->pcre[t] / n, all / n);
	}
	fprintf(out, "%-12s %39.3f\n", "native", p->native / n);
	fprintf(out, "%-12s %39.3f\n", "evals", p->evals / n);
	fprintf(out, "%-12s %39.3f\n", "metas", p->metas / n);
	fprintf(out, "%-12s %39.3f\n", "absent hdrs", p->headers / n);
	double rest = p->total - sum - p->native - p->evals - p->metas - p->headers;
	fprintf(out, "%-12s %39.3f\n", "the rest", (rest > 0 ? rest : 0) / n);
	size_t *idx = xcalloc(p->nrules + 1, sizeof(size_t));
	size_t k = 0;
	for (size_t i = 0; i < p->nrules && i < e->nrules; i++)
		if (p->rule_calls[i])
			idx[k++] = i;
	qsort_r(idx, k, sizeof(size_t), cmp_rule_ms, p->rule_ms);
	if (k)
		fprintf(out, "rules by PCRE2 time:\n%9s %9s  %s\n", "ms/msg", "calls/msg", "rule");
	for (size_t i = 0; i < k && (int)i < top; i++)
		fprintf(out, "%9.3f %9.1f  %s\n", p->rule_ms[idx[i]] / n, (double)p->rule_calls[idx[i]] / n,
			e->rules[idx[i]].name);
	k = 0;
	for (size_t i = 0; i < p->nrules && i < e->nrules; i++)
		if (p->eval_ms[i] > 0)
			idx[k++] = i;
	qsort_r(idx, k, sizeof(size_t), cmp_rule_ms, p->eval_ms);
	if (k)
		fprintf(out, "eval rules by time:\n%9s  %s\n", "ms/msg", "rule (function)");
	for (size_t i = 0; i < k && (int)i < top; i++)
		fprintf(out, "%9.3f  %s (%s)\n", p->eval_ms[idx[i]] / n, e->rules[idx[i]].name,
			e->rules[idx[i]].eval_fn ? e->rules[idx[i]].eval_fn : "?");
	free(idx);
}
