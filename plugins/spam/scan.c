/*
 * scan.c - scoring one message: every rule group scanned over its texts
 * (Hyperscan candidates or exact matches, PCRE2 confirming), then header
 * rules' negations and defaults, eval: functions, other plugins' symbols,
 * metas in dependency order, and the result. Many threads at once: only
 * the per-message context is written.
 */
#include "bayes_engine.h"
#include "internal.h"

static int pmatch_code(struct msgctx *m, const struct rule *r, pcre2_code *code, const char *s, size_t len,
		       size_t off)
{
	if (!m->prof)
		return pcre2_match(code, (PCRE2_SPTR)s, len, off, 0, m->md, m->mctx);
	double t0 = prof_now();
	int rc = pcre2_match(code, (PCRE2_SPTR)s, len, off, 0, m->md, m->mctx);
	double dt = prof_now() - t0;
	size_t ri = (size_t)(r - m->e->rules);
	m->prof->rule_ms[ri] += dt;
	m->prof->rule_calls[ri]++;
	m->prof->pcre[r->type] += dt;
	return rc;
}

static int pmatch(struct msgctx *m, const struct rule *r, const char *s, size_t len, size_t off)
{
	return pmatch_code(m, r, rule_code(r), s, len, off);
}

/* hs_scan, timed when profiling */
#ifdef SPAM_HAVE_HS
static hs_error_t hscan(struct msgctx *m, const struct rgroup *g, const hs_database_t *db, const char *s,
			unsigned len, match_event_handler cb)
{
	if (!m->prof)
		return hs_scan(db, s, len, 0, m->scratch, cb, m);
	double t0 = prof_now();
	hs_error_t rc = hs_scan(db, s, len, 0, m->scratch, cb, m);
	m->prof->hs[g->type] += prof_now() - t0;
	return rc;
}
#endif

/* r's native check (native.c) on s, timed when profiling (the passes:
 * timing every answer from the memo would cost more than the answers) */
static bool native_check(struct msgctx *m, const struct rule *r, const char *s, size_t len)
{
	if (!m->prof || native_memoized(r->npf, &m->nat))
		return native_possible(r->npf, s, len, &m->nat);
	double t0 = prof_now();
	bool ok = native_possible(r->npf, s, len, &m->nat);
	m->prof->native += prof_now() - t0;
	return ok;
}

/* Counts matches of r in s (1 unless multiple). */
static int count_matches(struct msgctx *m, const struct rule *r, const char *s, size_t len)
{
	if (r->npf && r->npf->nalt) { /* native.c counts: the same count, no PCRE2 */
		double t0 = m->prof ? prof_now() : 0;
		int n = native_count(r->npf, s, len, r->maxhits > 0 ? r->maxhits : 1000);
		if (m->prof)
			m->prof->native += prof_now() - t0;
		return n;
	}
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

#ifdef SPAM_HAVE_HS
/* Start offsets: at most this many per text and group, else the regexes
 * are searched whole. */
#define STARTS_MAX 4096

static int starts_cb(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	struct msgctx *m = ctx;
	if (m->nst == m->st_cap) {
		if (m->st_cap >= STARTS_MAX) {
			m->st_over = true;
			return 1; /* stop the scan */
		}
		m->st_cap = m->st_cap ? m->st_cap * 2 : 64;
		m->st_id = xrealloc(m->st_id, m->st_cap * sizeof(unsigned));
		m->st_end = xrealloc(m->st_end, m->st_cap * sizeof(unsigned));
		m->st_tmp = xrealloc(m->st_tmp, m->st_cap * sizeof(unsigned));
	}
	m->st_id[m->nst] = id;
	m->st_end[m->nst++] = (unsigned)to;
	return 0;
}

static int ucmp(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
	return x < y ? -1 : x > y;
}

/* count_matches for a rule with start offsets (HS_STARTS): the group's
 * starts database scans the text reversed once, then the rule's anchored
 * regex is tried at its offsets left to right. The leftmost offset where
 * it matches is where the unanchored search would find its match (that
 * search tries the offsets left to right, and no match starts elsewhere),
 * so the count is the same; with no offset, it is 0. */
static int count_from_starts(struct msgctx *m, const struct hsgroup *hg, size_t gi, unsigned k,
			     const struct rule *r, const char *s, size_t len)
{
	if (len > 0xffffffffu)
		return count_matches(m, r, s, len);
	if (m->st_text != s || m->st_gi != gi) {
		if (len > m->st_revcap) {
			m->st_revcap = len;
			m->st_rev = xrealloc(m->st_rev, len);
		}
		for (size_t i = 0; i < len; i++)
			m->st_rev[i] = s[len - 1 - i];
		m->nst = 0;
		m->st_over = false;
		double t0 = m->prof ? prof_now() : 0;
		if (hs_scan(hg->starts_db, m->st_rev, (unsigned)len, 0, m->scratch, starts_cb, m) !=
		    HS_SUCCESS)
			m->st_over = true;
		if (m->prof)
			m->prof->hs[r->type] += prof_now() - t0;
		m->st_text = s;
		m->st_gi = gi;
	}
	if (m->st_over)
		return count_matches(m, r, s, len);
	size_t nat = 0;
	for (size_t j = 0; j < m->nst; j++)
		if (m->st_id[j] == k)
			m->st_tmp[nat++] = (unsigned)len - m->st_end[j];
	if (!nat)
		return 0;
	pcre2_code *a = rule_anchored(r);
	if (!a)
		return count_matches(m, r, s, len);
	qsort(m->st_tmp, nat, sizeof(unsigned), ucmp);
	size_t nd = 0; /* without repeats */
	for (size_t j = 0; j < nat; j++)
		if (!nd || m->st_tmp[j] != m->st_tmp[nd - 1])
			m->st_tmp[nd++] = m->st_tmp[j];
	/* (?:G){n}: a match needs r->chain offsets after its own */
	nat = nd > r->chain ? nd - r->chain : 0;
	int n = 0, maxh = !(r->tflags & TF_MULTIPLE) ? 1 : r->maxhits > 0 ? r->maxhits : 1000;
	size_t off = 0;
	for (size_t j = 0; j < nat && n < maxh; j++) {
		if (m->st_tmp[j] < off)
			continue;
		if (pmatch_code(m, r, a, s, len, m->st_tmp[j]) < 0)
			continue;
		n++;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
		off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
		if (off > len)
			break;
	}
	return n;
}
#endif

static void add_hits(struct msgctx *m, int ri, int n)
{
	const struct rule *r = &m->e->rules[ri];
	if (m->in_subject && (r->tflags & TF_NOSUBJECT))
		return;
	m->hits[ri] += n;
	if (!(r->tflags & TF_MULTIPLE))
		m->done[ri] = true;
	else if (r->maxhits > 0 && m->hits[ri] >= r->maxhits) {
		m->hits[ri] = r->maxhits;
		m->done[ri] = true;
	}
}

#ifdef SPAM_HAVE_HS
/* --profile-patterns: a copy of a text group gi's database scanned. */
static void prof_keep(struct spam_profile *p, size_t gi, const char *s, unsigned len)
{
	if (gi >= p->ngroups || len > PROF_TEXTS_MAX - p->tbytes) {
		p->tcapped = true;
		return;
	}
	struct prof_texts *t = &p->gtexts[gi];
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		t->s = xrealloc(t->s, t->cap * sizeof(char *));
		t->len = xrealloc(t->len, t->cap * sizeof(unsigned));
	}
	t->s[t->n] = xstrndup(s, len);
	t->len[t->n++] = len;
	p->tbytes += len;
}

/* A rule's first report in a scan makes it a candidate; its later ones
 * (patterns without HS_FLAG_SINGLEMATCH report every match) are dropped. */
static int hs_cb(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	struct msgctx *m = ctx;
	if (m->cand_mark[id] == m->mark)
		return 0;
	m->cand_mark[id] = m->mark;
	m->cand[m->ncand++] = (int)id;
	return 0;
}

/* Starts a scan's candidates: none, and no rule reported yet. */
static void cand_reset(struct msgctx *m)
{
	m->ncand = 0;
	if (++m->mark == 0) { /* wrapped: the old marks could match */
		memset(m->cand_mark, 0, (m->e->nrules + 1) * sizeof(unsigned));
		m->mark = 1;
	}
}

/* The candidates of one of a group's prefilter databases (holding the
 * the rules with flag in their in_db flags) in s, confirmed by PCRE2.
 * Not fresh: the rules the previous database reported for s are not
 * counted again. */
static void scan_db(struct msgctx *m, size_t gi, const struct hsgroup *hg, const hs_database_t *db,
		    unsigned char flag, bool fresh, const char *s, size_t len)
{
	const struct rgroup *g = &m->e->groups[gi];
	if (!db)
		return;
	if (fresh)
		cand_reset(m);
	else /* the rules the last scan of s made candidates are counted */
		m->ncand = 0;
	unsigned slen = (unsigned)(len > 0xffffffffu ? 0xffffffffu : len);
	if (m->scratch && hscan(m, g, db, s, slen, hs_cb) == HS_SUCCESS) {
		for (size_t k = 0; k < m->ncand; k++) {
			unsigned pos = (unsigned)m->cand[k];
			int ri = g->rules[pos];
			if (m->done[ri])
				continue;
			int n = count_matches(m, &m->e->rules[ri], s, len);
			if (n)
				add_hits(m, ri, n);
		}
		return;
	}
	/* scan error: PCRE2 for the rules of the database */
	for (size_t k = 0; k < g->n; k++) {
		int ri = g->rules[k];
		if (m->done[ri] || !(hg->in_db[k] & flag) || (!fresh && m->cand_mark[k] == m->mark))
			continue;
		int n = count_matches(m, &m->e->rules[ri], s, len);
		if (n)
			add_hits(m, ri, n);
	}
}
#endif

#ifdef SPAM_HAVE_HS
/* The rules of the starts database alone (HS_STARTS): counted from the
 * offsets where their matches may start, none where none may
 * (count_from_starts scans s reversed once, for all of them). */
static void scan_starts(struct msgctx *m, size_t gi, const struct hsgroup *hg, const char *s, size_t len)
{
	const struct rgroup *g = &m->e->groups[gi];
	for (size_t j = 0; j < hg->nstarts; j++) {
		unsigned pos = hg->starts[j];
		int ri = g->rules[pos];
		if (m->done[ri])
			continue;
		int n = count_from_starts(m, hg, gi, pos, &m->e->rules[ri], s, len);
		if (n)
			add_hits(m, ri, n);
	}
}

/* No octet of 0x80 or above and no '&' in s: a line the ASCII forms of
 * the prefilters cover (prefilter_ascii). */
static bool ascii_text(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned char high = 0;
	bool amp = false;
	for (size_t i = 0; i < len; i++) {
		high |= p[i];
		amp |= p[i] == '&';
	}
	return !(high & 0x80) && !amp;
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
		cand_reset(m);
		if (hscan(m, g, g->exact_db, s, slen, hs_cb) == HS_SUCCESS)
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
	if (hg && (hg->db || hg->starts_db)) {
		m->st_text = NULL; /* start offsets are for this text only */
		if (m->prof && m->prof->gtexts)
			prof_keep(m->prof, gi, s, slen);
		scan_db(m, gi, hg, hg->db, HS_IN_DB, true, s, len);
		/* the rules in db as their ASCII forms need their whole
		 * prefilters where a line is not ASCII text; those db reported
		 * are counted already */
		if (hg->full_db && !ascii_text(s, len))
			scan_db(m, gi, hg, hg->full_db, HS_ASCII, false, s, len);
		scan_starts(m, gi, hg, s, len);
	}
#endif
	m->nat.lead = NULL; /* native.c's answers are for another text */
	for (size_t k = 0; k < npcre; k++) {
		int ri = pcre_only[k];
		const struct rule *r = &m->e->rules[ri];
		if (m->done[ri])
			continue;
		if (r->npf && !native_check(m, r, s, len))
			continue;
		int n = count_matches(m, r, s, len);
		if (n)
			add_hits(m, ri, n);
	}
	msg_late(m);
}

/* One meta's value: its n tokens of meta_code (see internal.h). */
double meta_value(const int *hits, const int *code, int n, const double *num)
{
	double st[256];
	int sp = 0;
	for (int i = 0; i < n; i++) {
		int t = code[i];
		if (t >= 0) {
			if (sp < 256)
				st[sp++] = hits[t];
			continue;
		}
		if (t == OP_NUM) {
			i++;
			if (sp < 256)
				st[sp++] = num[code[i]];
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

void msg_init(struct msgctx *m, const struct spam_engine *e, const struct spam_input *in)
{
	memset(m, 0, sizeof(*m));
	m->e = e;
	m->in = in;
	m->mime = in->mime;
	m->deadline = in->deadline_ms;
	msg_late(m); /* spent before the scoring starts: nothing is scanned */
	m->prof = in->profile;
	m->set = bayes_score_set(e, in);
	m->hits = xcalloc(e->nrules, sizeof(int));
	m->done = xcalloc(e->nrules, sizeof(bool));
	m->tvals = xcalloc(e->ntargets, sizeof(char *));
	m->tdone = xcalloc(e->ntargets, sizeof(bool));
	m->cand = xmalloc((e->nrules + 1) * sizeof(int)); /* written before read */
	m->cand_mark = xcalloc(e->nrules + 1, sizeof(unsigned));
	/* rules scored 0 in this message's score set are not run: done, no hit */
	for (size_t k = 0; k < e->nnotrun[m->set]; k++)
		m->done[e->notrun[m->set][k]] = true;
	m->md = pcre2_match_data_create(16, NULL);
	m->mctx = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(m->mctx, RE_MATCH_LIMIT);
	pcre2_set_depth_limit(m->mctx, RE_DEPTH_LIMIT);
#ifdef SPAM_HAVE_HS
	/* one matcher for the whole message */
	struct spam_engine *me = (struct spam_engine *)e;
	m->hm = atomic_load_explicit(&me->hs, memory_order_acquire);
	m->pool = m->hm ? &((struct hsmatch *)m->hm)->pool : &me->pool;
	m->scratch = pool_get(m->pool);
#endif
}

void msg_free(struct msgctx *m)
{
#ifdef SPAM_HAVE_HS
	pool_put(m->pool, m->scratch);
#endif
	for (size_t i = 0; i < m->e->ntargets; i++)
		free(m->tvals[i]);
	if (!m->lines_borrowed) {
		for (size_t i = 0; i < m->nlines; i++)
			free(m->lines[i]);
		free(m->lines);
		free(m->lens);
	}
	for (size_t i = 0; i < m->nraws; i++)
		free(m->raws[i]);
	free(m->raws);
	free(m->rawlens);
	free(m->full);
	relays_free(m->relays);
	free(m->envfrom);
	uris_free(m);
	bare_uris_free(&m->bare);
	bayes_msg_free(m);
	free(m->tvals);
	free(m->tdone);
	free(m->hhash);
	free(m->hits);
	free(m->done);
	free(m->cand);
	free(m->cand_mark);
	free(m->st_rev);
	free(m->st_id);
	free(m->st_end);
	free(m->st_tmp);
	pcre2_match_data_free(m->md);
	pcre2_match_context_free(m->mctx);
}

/* mimeheader: every part's header, the message's own (the root's) first,
 * as SpamAssassin's find_parts(qr/./) lists them. */
static void scan_mimeheaders(struct msgctx *m, size_t gi)
{
	const struct target *t = &m->e->targets[m->e->groups[gi].target_idx];
	struct sbuf b = {0};
	for (size_t pi = 0; pi < m->mime->part_count; pi++)
		if (part_header_value(&b, t, &m->mime->parts[pi]))
			scan_group(m, gi, sb_str(&b), b.n);
	free(b.d);
}

void build_text(struct msgctx *m, enum rtype t)
{
	bool built = t == R_BODY      ? m->lines != NULL
		     : t == R_RAWBODY ? m->raws != NULL
		     : t == R_FULL    ? m->full != NULL
		     : t == R_URI     ? m->uris != NULL
				      : true;
	if (built)
		return;
	if (t == R_URI) /* the domains the body names (msg_bare_uris): its time is the body's */
		build_text(m, R_BODY);
	double t0 = m->prof ? prof_now() : 0;
	if (t == R_BODY)
		build_body(m);
	else if (t == R_RAWBODY)
		build_raw(m);
	else if (t == R_FULL)
		build_full(m);
	else
		build_uris(m);
	if (m->prof)
		m->prof->texts[t] += prof_now() - t0;
}

/* Every group against its texts, built on first use. */
static void scan_groups(struct msgctx *m)
{
	const struct spam_engine *e = m->e;
	for (size_t gi = 0; gi < e->ngroups; gi++) {
		const struct rgroup *g = &e->groups[gi];
		build_text(m, g->type);
		switch (g->type) {
		case R_HEADER: {
			const char *v = target_value(m, g->target_idx);
			if (v)
				scan_group(m, gi, v, strlen(v));
			/* if-unset and absent headers: handled per rule (post_headers) */
			break;
		}
		case R_MIMEHEADER:
			scan_mimeheaders(m, gi);
			break;
		case R_BODY:
			for (size_t i = 0; i < m->nlines; i++) {
				m->in_subject = i == 0;
				scan_group(m, gi, m->lines[i], m->lens[i]);
			}
			m->in_subject = false;
			break;
		case R_RAWBODY:
			for (size_t i = 0; i < m->nraws; i++)
				scan_group(m, gi, m->raws[i], m->rawlens[i]);
			break;
		case R_FULL:
			scan_group(m, gi, m->full, m->full_len);
			break;
		case R_URI:
			for (size_t i = 0; i < m->nuris; i++)
				scan_group(m, gi, m->uris[i], strlen(m->uris[i]));
			break;
		default:
			break;
		}
	}
}

/* Header rules: negation, if-unset, exists:. */
static void post_headers(struct msgctx *m)
{
	const struct spam_engine *e = m->e;
	for (size_t pi = 0; pi < e->npost_hdr; pi++) {
		struct post_hdr *p = &e->post_hdr[pi];
		int i = p->ri;
		if (p->zero_sets >> m->set & 1) /* rule_runs() */
			continue;
		if (p->exists) {
			bool present = target_value(m, p->target) != NULL;
			m->hits[i] = present != p->neg;
			continue;
		}
		if (p->mime)
			continue;
		if (p->re && !target_value(m, p->target)) {
			/* absent: the if-unset text, else the empty string, is
			 * matched (Hyperscan-only rules: absent matches nothing);
			 * the same answer for every message, found once */
			int a = atomic_load_explicit(&p->absent_hits, memory_order_relaxed);
			if (!a) {
				const struct rule *r = &e->rules[i];
				a = 1 + (r->unset ? count_matches(m, r, r->unset, strlen(r->unset))
						  : pmatch(m, r, "", 0, 0) >= 0);
				atomic_store_explicit(&p->absent_hits, a, memory_order_relaxed);
			}
			m->hits[i] = a - 1;
		}
		if (p->neg)
			m->hits[i] = !m->hits[i];
	}
}

/* eval: rules, then the symbols of other plugins, then metas. */
static void evals_symbols_metas(struct msgctx *m)
{
	const struct spam_engine *e = m->e;
	for (size_t ei = 0; ei < e->neval_rules; ei++) {
		size_t i = (size_t)e->eval_rules[ei];
		const struct rule *r = &e->rules[i];
		if (!rule_runs(r, m->set))
			continue;
		if (msg_late(m)) /* not scored: the rest need not run */
			break;
		if (r->type == R_BODY || r->type == R_RAWBODY)
			build_text(m, r->type);
		m->cur_rule = (int)i;
		if (!m->prof) {
			m->hits[i] = eval_get(r->eval_id)(m, r);
			continue;
		}
		double t0 = prof_now();
		m->hits[i] = eval_get(r->eval_id)(m, r);
		t0 = prof_now() - t0;
		m->prof->eval_ms[i] += t0;
		m->prof->evals += t0;
	}
	for (size_t si = 0; si < e->nsym_rules; si++) {
		size_t i = (size_t)e->sym_rules[si];
		const struct rule *r = &e->rules[i];
		for (size_t k = 0; k < m->in->nsyms; k++)
			if (strcasecmp(m->in->sym_names[k], r->name) == 0)
				m->hits[i] = 1;
	}
	double t0 = m->prof ? prof_now() : 0;
	/* A meta is evaluated when one of the rules it reads differs from
	 * what that rule is when no rule hits (0, or a meta's meta_base):
	 * most read only rules that did not hit. */
	const unsigned char *base = e->meta_base + (size_t)m->set * e->nmeta;
	unsigned char *dirty = xcalloc(e->nmeta + 1, 1);
	for (size_t i = 0; i < e->nrules; i++)
		if (m->hits[i])
			for (int d = e->meta_dep_at[i]; d < e->meta_dep_at[i + 1]; d++)
				dirty[e->meta_dep[d]] = 1;
	const int *code = e->meta_code, *end = code + e->nmeta_code;
	for (size_t k = 0; code < end; k++) {
		int i = code[0], zero_sets = code[1], n = code[2];
		code += 3;
		/* rule_runs(): not run in a score set that scores it 0 */
		if (!(zero_sets >> m->set & 1)) {
			int v = dirty[k] ? meta_value(m->hits, code, n, e->meta_num) != 0 : base[k];
			m->hits[i] = v;
			if (v != base[k])
				for (int d = e->meta_dep_at[i]; d < e->meta_dep_at[i + 1]; d++)
					dirty[e->meta_dep[d]] = 1;
		}
		code += n;
	}
	free(dirty);
	if (m->prof)
		m->prof->metas += prof_now() - t0;
}

static void result_add(struct spam_result *res, size_t *cap, const char *name, double score,
		       const char *describe)
{
	if (res->nhits == *cap) {
		*cap *= 2;
		res->hits = xrealloc(res->hits, *cap * sizeof(*res->hits));
	}
	res->hits[res->nhits].name = name;
	res->hits[res->nhits].score = score;
	res->hits[res->nhits].describe = describe;
	res->nhits++;
	res->score += score;
}

/* The scored rules hit, the other plugins' symbols, the total. */
static void make_result(struct msgctx *m, struct spam_result *res)
{
	const struct spam_engine *e = m->e;
	const struct spam_input *in = m->in;
	size_t cap = 16;
	res->hits = xmalloc(cap * sizeof(*res->hits));
	for (size_t i = 0; i < e->nrules; i++) {
		if (!m->hits[i]) /* most: the rule is not read */
			continue;
		const struct rule *r = &e->rules[i];
		double sc = rule_score(r, m->set);
		if (r->disabled || r->type == R_NONE || sc == 0 || strncmp(r->name, "__", 2) == 0)
			continue;
		result_add(res, &cap, r->name, sc, r->describe);
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
		result_add(res, &cap, in->sym_names[k], in->sym_scores[k], NULL);
	}
	qsort(res->hits, res->nhits, sizeof(*res->hits), hitcmp);
	res->timed_out = m->timed_out;
}

int spam_engine_check(const struct spam_engine *e, const struct spam_input *in, struct spam_result *res)
{
	memset(res, 0, sizeof(*res));
	res->required = e->required;
	struct msgctx m;
	double t0 = in->profile ? prof_now() : 0;
	msg_init(&m, e, in);
	scan_groups(&m);
	double t1 = in->profile ? prof_now() : 0, re1 = 0;
	if (in->profile)
		re1 = in->profile->pcre[R_HEADER];
	post_headers(&m);
	if (in->profile) /* its PCRE2 time is counted as the header rules' */
		in->profile->headers += prof_now() - t1 - (in->profile->pcre[R_HEADER] - re1);
	evals_symbols_metas(&m);
	msg_late(&m);
	make_result(&m, res);
	bayes_after_check(&m, res);
	msg_free(&m);
	if (in->profile) {
		in->profile->total += prof_now() - t0;
		in->profile->messages++;
	}
	return 0;
}

struct spam_profile *spam_profile_new(const struct spam_engine *e, bool patterns)
{
	struct spam_profile *p = xcalloc(1, sizeof(*p));
	p->nrules = e->nrules;
	if (patterns) {
		p->ngroups = e->ngroups;
		p->gtexts = xcalloc(e->ngroups + 1, sizeof(*p->gtexts));
	}
	p->rule_ms = xcalloc(e->nrules + 1, sizeof(double));
	p->rule_calls = xcalloc(e->nrules + 1, sizeof(unsigned long));
	p->eval_ms = xcalloc(e->nrules + 1, sizeof(double));
	return p;
}

void spam_profile_free(struct spam_profile *p)
{
	if (!p)
		return;
	free(p->rule_ms);
	free(p->rule_calls);
	free(p->eval_ms);
	for (size_t g = 0; p->gtexts && g < p->ngroups; g++) {
		for (size_t i = 0; i < p->gtexts[g].n; i++)
			free(p->gtexts[g].s[i]);
		free(p->gtexts[g].s);
		free(p->gtexts[g].len);
	}
	free(p->gtexts);
	free(p);
}

void spam_result_free(struct spam_result *r)
{
	free(r->hits);
	r->hits = NULL;
	r->nhits = 0;
}
