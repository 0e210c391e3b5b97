/*
 * compile.c - from parsed rules to a ruleset ready to scan: ReplaceTags
 * applied, regexes compiled with PCRE2 (JIT at first match), header targets, groups of
 * rules matched against the same texts, meta expressions in RPN and in
 * dependency order, the per-message rule lists.
 */
#include <stdint.h>

#include "internal.h"

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

/* The last octet of the escape or character class at pat[i] (i when
 * there is neither; SIZE_MAX for a class not closed): what the readers
 * below skip, since neither opens nor closes a group. */
static size_t skip_literal(const char *pat, size_t i)
{
	if (pat[i] == '\\')
		return pat[i + 1] ? i + 1 : i;
	if (pat[i] != '[')
		return i;
	const char *ce = regex_class_end(pat + i);
	return ce ? (size_t)(ce - pat) - 1 : SIZE_MAX;
}

/* A pattern PCRE2 finds too large often is a big group repeated,
 * "(?:G){5}": PCRE2 compiles G five times over (its compiled patterns are
 * limited to 64 KiB), Perl does not. This rewrites the largest such group
 * (at least 256 octets, repeated {n}, {n,} or {n,m} with n >= 1, not
 * possessive) as a named group called again: "(?<siftrepK>G)(?&siftrepK){4}"
 * matches the same (PCRE2 10.30 and later backtrack into subroutine calls
 * as Perl does). NULL when there is nothing to rewrite. */
static char *repeat_as_call(const char *pat, int k)
{
	size_t n = strlen(pat), stack[256], sp = 0;
	size_t best_s = 0, best_e = 0, best_q = 0;
	for (size_t i = 0; i < n; i++) {
		size_t skip = skip_literal(pat, i);
		if (skip == SIZE_MAX)
			return NULL;
		if (skip != i) {
			i = skip;
			continue;
		}
		if (pat[i] == '(' && sp < 256)
			stack[sp++] = i;
		else if (pat[i] == ')' && sp) {
			size_t st = stack[--sp];
			if (strncmp(pat + st, "(?:", 3) != 0 || i + 1 >= n || pat[i + 1] != '{' ||
			    !isdigit((unsigned char)pat[i + 2]) || pat[i + 2] == '0')
				continue;
			size_t q = i + 2;
			while (isdigit((unsigned char)pat[q]))
				q++;
			if (pat[q] == ',')
				for (q++; isdigit((unsigned char)pat[q]);)
					q++;
			if (pat[q] != '}' || pat[q + 1] == '+' || i - st < 256 || i - st <= best_e - best_s)
				continue;
			best_s = st, best_e = i, best_q = q;
		}
	}
	if (!best_e)
		return NULL;
	/* the quantifier less one: {n} -> {n-1}, {n,} -> {n-1,}, {n,m} -> {n-1,m-1} */
	char *end;
	long lo = strtol(pat + best_e + 2, &end, 10), hi = -1;
	bool open = *end == ',' && end[1] == '}';
	if (*end == ',' && !open)
		hi = strtol(end + 1, NULL, 10);
	char q[64];
	if (open)
		snprintf(q, sizeof(q), "{%ld,}", lo - 1);
	else if (hi >= 0)
		snprintf(q, sizeof(q), "{%ld,%ld}", lo - 1, hi - 1);
	else
		snprintf(q, sizeof(q), "{%ld}", lo - 1);
	return xasprintf("%.*s(?<siftrep%d>%.*s)(?&siftrep%d)%s%s", (int)best_s, pat, k,
			 (int)(best_e - best_s - 3), pat + best_s + 3, k, q, pat + best_q + 1);
}

/* The end of the group opened at pat[i] == '(' (the index of its ')'), 0
 * when it is not closed; *plain: whether nothing inside it captures, calls,
 * refers back or sets options (so that it may move elsewhere). */
static size_t group_end(const char *pat, size_t n, size_t i, bool *plain)
{
	int depth = 0;
	*plain = true;
	for (size_t j = i; j < n; j++) {
		char c = pat[j];
		if (c == '\\') {
			if (j + 1 < n && (isdigit((unsigned char)pat[j + 1]) || strchr("gkQ", pat[j + 1])))
				*plain = false;
			j++;
		} else if (c == '[') {
			const char *ce = regex_class_end(pat + j);
			if (!ce)
				return 0;
			j = (size_t)(ce - pat) - 1;
		} else if (c == '(') {
			if (j > i && (pat[j + 1] != '?' || !strchr(":=!<>", pat[j + 2]) ||
				      (pat[j + 2] == '<' && !strchr("=!", pat[j + 3]))))
				*plain = false;
			depth++;
		} else if (c == ')' && --depth == 0)
			return j;
	}
	return 0;
}

/* A regex that ReplaceTags made long holds the same large groups (the
 * look-alike letters of 25_replace.cf, 500 to 1000 octets each) hundreds
 * of times, and PCRE2 compiles each copy: the stock __MY_MALWARE, __PAY_ME,
 * __YOUR_PERSONAL ... come to 45-220 KB of pattern, over PCRE2's 64 KiB of
 * compiled code, which Perl does not limit. This writes every group of at
 * least 256 octets that appears twice or more once, as a named group of a
 * DEFINE at the end, and calls it where it was: "(?&siftgK)". PCRE2 10.30
 * and later backtrack into calls as into groups; the moved groups neither
 * capture nor refer back, and the pattern sets no options in its course,
 * so the calls match what the groups did. NULL when there is nothing to
 * rewrite. */
#define CALL_MIN_GROUP 256
static char *groups_as_calls(const char *pat)
{
	size_t n = strlen(pat);
	for (size_t i = 0; i + 2 < n; i++) /* options set mid-regex: left alone */
		if (pat[i] == '\\')
			i++;
		else if (pat[i] == '(' && pat[i + 1] == '?' && (strchr("imsxnJU-^'P|(", pat[i + 2])))
			return NULL;
	struct span {
		size_t s, e; /* pat[s] '(', pat[e] ')' */
		int def;     /* index of its definition + 1, 0 when kept */
	} *sp = NULL;
	size_t nsp = 0, cap = 0;
	for (size_t i = 0; i + 3 < n; i++) {
		size_t skip = skip_literal(pat, i);
		if (skip == SIZE_MAX)
			return NULL;
		if (skip != i) {
			i = skip;
			continue;
		}
		if (strncmp(pat + i, "(?:", 3) != 0)
			continue;
		bool plain;
		size_t e = group_end(pat, n, i, &plain);
		if (!e || !plain || e - i + 1 < CALL_MIN_GROUP)
			continue; /* the groups inside are looked at next */
		if (nsp == cap) {
			cap = cap ? cap * 2 : 16;
			sp = xrealloc(sp, cap * sizeof(*sp));
		}
		sp[nsp++] = (struct span){i, e, 0};
	}
	/* The spans of one text share a definition. In order of their
	 * starts, an outer group comes before those inside it: a text seen
	 * twice or more is called where it is not inside one called already. */
	int ndef = 0;
	size_t *def_of = xcalloc(nsp + 1, sizeof(size_t)); /* definition -> its first span */
	for (size_t a = 0; a < nsp; a++) {
		if (sp[a].def)
			continue;
		size_t len = sp[a].e - sp[a].s + 1;
		bool twice = false;
		for (size_t b = a + 1; b < nsp; b++)
			if (!sp[b].def && sp[b].e - sp[b].s + 1 == len &&
			    memcmp(pat + sp[a].s, pat + sp[b].s, len) == 0) {
				sp[b].def = ndef + 1;
				twice = true;
			}
		if (twice) {
			sp[a].def = ndef + 1;
			def_of[ndef++] = a;
		}
	}
	char *out = NULL;
	if (ndef) {
		struct sbuf o = {0};
		size_t at = 0;
		char call[32];
		bool *used = xcalloc((size_t)ndef, sizeof(bool));
		for (size_t a = 0; a < nsp; a++) {
			if (!sp[a].def || sp[a].s < at) /* unique, or inside a call */
				continue;
			sb_add(&o, pat + at, sp[a].s - at);
			snprintf(call, sizeof(call), "(?&siftg%d)", sp[a].def);
			sb_adds(&o, call);
			used[sp[a].def - 1] = true;
			at = sp[a].e + 1;
		}
		sb_add(&o, pat + at, n - at);
		sb_adds(&o, "(?(DEFINE)");
		for (int d = 0; d < ndef; d++) {
			if (!used[d])
				continue;
			const struct span *s = &sp[def_of[d]];
			snprintf(call, sizeof(call), "(?<siftg%d>", d + 1);
			sb_adds(&o, call);
			sb_add(&o, pat + s->s + 3, s->e - s->s - 3); /* without "(?:" */
			sb_adds(&o, ")");
		}
		sb_adds(&o, ")");
		out = xstrdup(sb_str(&o));
		free(o.d);
		free(used);
	}
	free(def_of);
	free(sp);
	return out;
}

/* A regex too large for PCRE2 as written (compiled with its repeated group
 * as calls) keeps the pattern PCRE2 compiled, for its anchored copy: these
 * are the regexes whose every attempt is costly, worth trying only at the
 * offsets where a match may start (hyperscan.c's starts databases). */
static void keep_pattern(struct rule *r, const char *pat, uint32_t fl)
{
	if (fl & PCRE2_UTF)
		return;
	free(r->pcre_pat);
	r->pcre_pat = xstrdup(pat);
	r->pcre_fl = fl;
	r->chain = prefilter_chain(r->pattern, r->flags);
}

/* r's regex with guards on its large alternations (guard.c), its
 * repeated group as calls if that is too large; NULL when it has none or
 * does not compile that way (then it is compiled as written). */
static pcre2_code *compile_guarded(const struct rule *r, uint32_t fl, bool *calls)
{
	char *pat = guard_pattern(r->pattern, r->flags), *next;
	if (!pat)
		return NULL;
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, fl, &ec, &eo, NULL);
	for (int k = 1;
	     !c && ec == PCRE2_ERROR_PATTERN_TOO_LARGE && k <= 4 && (next = repeat_as_call(pat, k)); k++) {
		free(pat);
		pat = next;
		c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, fl, &ec, &eo, NULL);
		*calls = c != NULL;
	}
	if (c && *calls)
		keep_pattern((struct rule *)r, pat, fl);
	free(pat);
	return c;
}

static int compile_pcre(struct spam_engine *e, struct rule *r)
{
	int ec;
	PCRE2_SIZE eo;
	uint32_t fl = pcre_flags(r->flags);
	bool calls = false;
	if ((r->re = compile_guarded(r, fl, &calls))) {
		if (calls)
			lint(e, false,
			     "%s: %s: too large for PCRE2 as written; compiled with its repeated group as "
			     "calls",
			     r->where, r->name);
		return 0;
	}
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
	if (!r->re && ec == PCRE2_ERROR_PATTERN_TOO_LARGE && !(fl & PCRE2_EXTENDED)) {
		char *pat = xstrdup(r->pattern), *next;
		for (int k = 1; !r->re && k <= 4 && (next = repeat_as_call(pat, k)); k++) {
			free(pat);
			pat = next;
			r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, fl, &ec, &eo, NULL);
		}
		if (r->re)
			keep_pattern(r, pat, fl);
		if (r->re)
			lint(e, false,
			     "%s: %s: too large for PCRE2 as written; compiled with its repeated group as "
			     "calls",
			     r->where, r->name);
		free(pat);
	}
	if (!r->re && ec == PCRE2_ERROR_PATTERN_TOO_LARGE && !(fl & PCRE2_EXTENDED)) {
		char *pat = groups_as_calls(r->pattern);
		if (pat)
			r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, fl, &ec, &eo, NULL);
		if (r->re)
			lint(e, false,
			     "%s: %s: too large for PCRE2 as written; compiled with its repeated groups as "
			     "calls",
			     r->where, r->name);
		free(pat);
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
	return 0;
}

/* One lock for the first match of every rule: r->re is JIT-compiled once,
 * then published. Nothing matches with r->re before that (rule_code), and
 * the rest of the engine reads only the pointer, so the JIT compile writes
 * into code no other thread reads. A JIT failure (no executable memory)
 * leaves the interpreter, which finds the same matches. */
static pthread_mutex_t jit_lock = PTHREAD_MUTEX_INITIALIZER;

pcre2_code *rule_jit(const struct rule *cr)
{
	struct rule *r = (struct rule *)cr;
	pthread_mutex_lock(&jit_lock);
	pcre2_code *c = atomic_load_explicit(&r->jit, memory_order_relaxed);
	if (!c) {
		c = r->re;
		pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
		atomic_store_explicit(&r->jit, c, memory_order_release);
	}
	pthread_mutex_unlock(&jit_lock);
	return c;
}

pcre2_code *rule_anchored(const struct rule *cr)
{
	struct rule *r = (struct rule *)cr;
	pcre2_code *c = atomic_load_explicit(&r->anch, memory_order_acquire);
	if (c || !r->pcre_pat)
		return c;
	pthread_mutex_lock(&jit_lock);
	c = atomic_load_explicit(&r->anch, memory_order_relaxed);
	if (!c) {
		int ec;
		PCRE2_SIZE eo;
		c = pcre2_compile((PCRE2_SPTR)r->pcre_pat, PCRE2_ZERO_TERMINATED, r->pcre_fl | PCRE2_ANCHORED,
				  &ec, &eo, NULL);
		/* it compiled unanchored: it compiles anchored (NULL: the
		 * caller searches unanchored) */
		if (c) {
			pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
			atomic_store_explicit(&r->anch, c, memory_order_release);
		}
	}
	pthread_mutex_unlock(&jit_lock);
	return c;
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
	if (strncmp(nm, "ALL", 3) == 0 && (nm[3] == '\0' || nm[3] == '-'))
		t->kind = TK_ALL;
	else if (strcasecmp(nm, "EnvelopeFrom") == 0)
		t->kind = TK_ENVFROM;
	else if (strncasecmp(nm, "X-Sift-", 7) == 0)
		t->kind = TK_SIFT;
	else if (strncasecmp(nm, "X-Spam-Relays-", 14) == 0)
		t->kind = TK_RELAYS;
	else {
		t->kind = TK_HEADER;
		const char *names[3];
		t->nnames = (unsigned char)target_header_names(nm, names);
		for (int k = 0; k < t->nnames; k++)
			t->nhash[k] = hname_hash(names[k]);
	}
	return (int)e->ntargets++;
}

static void finish_group(struct spam_engine *e, struct rgroup *g)
{
#ifdef SPAM_HAVE_HS
	if (e->use_hs)
		build_exact(e, g);
#endif
	g->pcre_only = xcalloc(g->n + 1, sizeof(int));
	struct native_pf **npf = xcalloc(g->n + 1, sizeof(*npf));
	size_t nnpf = 0;
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
		/* body lines: the text Hyperscan spends its time on; the whole
		 * message, for a long run (__LONGLINE) */
		if ((r->type == R_BODY || r->type == R_FULL) && r->re && !r->hs_exact && !r->utf) {
			if (r->tflags & TF_MULTIPLE)
				r->npf = native_counter(r->pattern, r->flags);
			if (!r->npf && (r->npf = native_prefilter(r->pattern, r->flags)))
				npf[nnpf++] = r->npf;
		}
		if (r->re)
			g->pcre_only[g->npcre++] = g->rules[i];
	}
	native_share(npf, nnpf);
	free(npf);
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
		if (e->rules[i].type != R_META || e->rules[i].disabled || e->rules[i].off || state[i])
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
				if (dep < 0 || e->rules[dep].type != R_META || e->rules[dep].disabled ||
				    e->rules[dep].off)
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

/* meta_order as one program (meta_code, meta_num). */
static void pack_metas(struct spam_engine *e)
{
	size_t n = 0, nnum = 0;
	for (size_t k = 0; k < e->nmeta; k++) {
		const struct rule *r = &e->rules[e->meta_order[k]];
		n += 3 + (size_t)r->nrpn;
		for (int t = 0; t < r->nrpn; t++)
			if (r->rpn[t] == OP_NUM)
				n++, nnum++;
	}
	e->meta_code = xmalloc((n + 1) * sizeof(int));
	e->meta_num = xmalloc((nnum + 1) * sizeof(double));
	size_t at = 0, num = 0;
	for (size_t k = 0; k < e->nmeta; k++) {
		const struct rule *r = &e->rules[e->meta_order[k]];
		e->meta_code[at++] = e->meta_order[k];
		e->meta_code[at++] = r->zero_sets;
		size_t len_at = at++;
		for (int t = 0; t < r->nrpn; t++) {
			e->meta_code[at++] = r->rpn[t];
			if (r->rpn[t] == OP_NUM) {
				e->meta_code[at++] = (int)num;
				e->meta_num[num++] = r->rpn_num[t];
			}
		}
		e->meta_code[len_at] = (int)(at - len_at - 1);
	}
	e->nmeta_code = at;
	/* the metas that read each rule */
	e->meta_dep_at = xcalloc(e->nrules + 1, sizeof(int));
	size_t ndep = 0;
	for (size_t k = 0; k < e->nmeta; k++) {
		const struct rule *r = &e->rules[e->meta_order[k]];
		for (int t = 0; t < r->nrpn; t++)
			if (r->rpn[t] >= 0 && (size_t)r->rpn[t] < e->nrules)
				e->meta_dep_at[r->rpn[t] + 1]++, ndep++;
	}
	for (size_t i = 0; i < e->nrules; i++)
		e->meta_dep_at[i + 1] += e->meta_dep_at[i];
	e->meta_dep = xmalloc((ndep + 1) * sizeof(int));
	int *fill = xmalloc((e->nrules + 1) * sizeof(int));
	memcpy(fill, e->meta_dep_at, (e->nrules + 1) * sizeof(int));
	for (size_t k = 0; k < e->nmeta; k++) {
		const struct rule *r = &e->rules[e->meta_order[k]];
		for (int t = 0; t < r->nrpn; t++)
			if (r->rpn[t] >= 0 && (size_t)r->rpn[t] < e->nrules)
				e->meta_dep[fill[r->rpn[t]]++] = (int)k;
	}
	free(fill);
	/* each meta's value with no rule hit, evaluated as scan.c evaluates
	 * the metas of a message, in each score set */
	e->meta_base = xcalloc(4 * e->nmeta + 1, 1);
	int *h0 = xmalloc((e->nrules + 1) * sizeof(int));
	for (int set = 0; set < 4; set++) {
		memset(h0, 0, (e->nrules + 1) * sizeof(int));
		const int *code = e->meta_code, *end = code + e->nmeta_code;
		for (size_t k = 0; code < end; k++) {
			int i = code[0], zero_sets = code[1], nt = code[2];
			code += 3;
			if (!(zero_sets >> set & 1))
				h0[i] = meta_value(h0, code, nt, e->meta_num) != 0;
			e->meta_base[(size_t)set * e->nmeta + k] = (unsigned char)h0[i];
			code += nt;
		}
	}
	free(h0);
}

/* A __ rule (regex or meta) that no rule which runs reads, directly or
 * through metas, cannot change a score: it is not compiled nor run (off,
 * counted in stats_unused). Evals stay: a check_rbl rule launches the
 * queries of its set's check_rbl_sub rules. */
static void mark_unused(struct spam_engine *e)
{
	bool *live = xcalloc(e->nrules, sizeof(bool));
	int *todo = xcalloc(e->nrules, sizeof(int));
	size_t n = 0;
	for (size_t i = 0; i < e->nrules; i++) {
		const struct rule *r = &e->rules[i];
		if (r->type == R_NONE || r->disabled || r->off)
			continue;
		if (strncmp(r->name, "__", 2) != 0 || r->eval_fn || r->type == R_SYMBOL) {
			live[i] = true;
			todo[n++] = (int)i;
		}
	}
	while (n) {
		const struct rule *r = &e->rules[todo[--n]];
		if (r->type != R_META || !r->rpn)
			continue;
		for (int t = 0; t < r->nrpn; t++) {
			int d = r->rpn[t];
			if (d >= 0 && !live[d] && !e->rules[d].off) {
				live[d] = true;
				todo[n++] = d;
			}
		}
	}
	for (size_t i = 0; i < e->nrules; i++) {
		struct rule *r = &e->rules[i];
		if (!live[i] && r->type != R_NONE && !r->disabled && !r->off) {
			r->off = true;
			e->stats_unused++;
		}
	}
	free(live);
	free(todo);
}

int finalize(struct spam_engine *e)
{
	/* replace tags: once per rule however often replace_rules names it
	 * (a set in SpamAssassin; a tag whose value holds tags would grow
	 * exponentially when applied again and again) */
	bool *replaced = xcalloc(e->nrules, sizeof(bool));
	for (size_t i = 0; i < e->nreplace; i++) {
		int k = rule_find(e, e->replace_rules[i]);
		if (k >= 0 && e->rules[k].pattern && !replaced[k]) {
			apply_replace_tags(e, &e->rules[k]);
			replaced[k] = true;
		}
	}
	free(replaced);
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
		/* the symbols of other plugins weighed 0 are ignored elsewhere */
		for (int s = 0; s < 4 && r->has_score && r->type != R_SYMBOL; s++)
			if (r->scores[s] == 0)
				r->zero_sets |= (unsigned char)(1u << s);
		int base = e->score_set & SPAM_SET_NET;
		if ((r->zero_sets >> base & 1) && (r->zero_sets >> (base | SPAM_SET_BAYES) & 1)) {
			r->off = true;
			e->stats_off++;
		}
	}
	for (size_t i = 0; i < e->nrules; i++)
		if (e->rules[i].type == R_META && !e->rules[i].disabled && !e->rules[i].off)
			compile_meta(e, &e->rules[i]);
	mark_unused(e);
	for (size_t i = 0; i < e->nrules; i++) {
		struct rule *r = &e->rules[i];
		if (r->type == R_NONE || r->disabled)
			continue;
		if (r->off) {
			/* not run, but a regex that does not compile is an error
			 * wherever it is: compiled once, then dropped */
			if (r->pattern && !r->eval_fn && !r->exists && r->type != R_META &&
			    r->type != R_SYMBOL && compile_pcre(e, r) == 0 && r->re) {
				pcre2_code_free(r->re);
				r->re = NULL;
				free(r->pcre_pat);
				r->pcre_pat = NULL;
			}
			continue;
		}
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
	order_metas(e);
	for (size_t i = 0; i < e->ngroups; i++)
		finish_group(e, &e->groups[i]);
	for (size_t i = 0; i < e->nrules; i++)
		if (e->rules[i].disabled && e->rules[i].type != R_NONE)
			e->stats_disabled++;
	/* bayes_ignore_header: 333 names in the stock ruleset, looked up for
	 * every header of every message */
	if (e->nbayes_ignore)
		qsort(e->bayes_ignore, e->nbayes_ignore, sizeof(char *), namecasecmp);
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
		freemail_compile(e);
	}
	e->bare_re = bare_uri_compile(e->net);
	pack_metas(e);
	e->post_hdr = xcalloc(e->nrules, sizeof(*e->post_hdr));
	e->eval_rules = xcalloc(e->nrules, sizeof(int));
	e->sym_rules = xcalloc(e->nrules, sizeof(int));
	for (int set = 0; set < 4; set++)
		e->notrun[set] = xcalloc(e->nrules, sizeof(int));
	for (size_t i = 0; i < e->nrules; i++) {
		const struct rule *r = &e->rules[i];
		if (r->disabled || r->off || r->type == R_NONE)
			continue;
		for (int set = 0; set < 4; set++)
			if (!rule_runs(r, set))
				e->notrun[set][e->nnotrun[set]++] = (int)i;
		if (r->eval_fn && r->eval_id >= 0)
			e->eval_rules[e->neval_rules++] = (int)i;
		else if (r->type == R_SYMBOL)
			e->sym_rules[e->nsym_rules++] = (int)i;
		else if ((r->type == R_HEADER || r->type == R_MIMEHEADER) && !r->eval_fn)
			e->post_hdr[e->npost_hdr++] = (struct post_hdr){.ri = (int)i,
									.target = r->target_idx,
									.zero_sets = r->zero_sets,
									.exists = r->exists,
									.neg = r->neg,
									.mime = r->type == R_MIMEHEADER,
									.re = r->re != NULL};
	}
#ifdef SPAM_HAVE_HS
	for (size_t i = 0; i < e->ngroups; i++)
		if (e->groups[i].exact_db &&
		    hs_alloc_scratch(e->groups[i].exact_db, &e->pool.proto) != HS_SUCCESS)
			return -1;
#endif
	return 0;
}
