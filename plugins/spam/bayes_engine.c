/*
 * bayes_engine.c - Bayes in the rule engine: the tokens of the message
 * being scored (from the texts the body rules see, its URIs and headers),
 * eval:check_bayes for BAYES_00 ... BAYES_999, the score set, and
 * SpamAssassin's autolearn (Plugin/AutoLearnThreshold.pm and
 * PerMsgStatus::_get_autolearn_points): the points of the rules hit in the
 * score set without Bayes, leaving out rules with tflags noautolearn,
 * userconf and learn (the BAYES_ rules, counted apart as "learned
 * points"); below bayes_auto_learn_threshold_nonspam the message is
 * learned as ham, from bayes_auto_learn_threshold_spam on as spam if it
 * also has 3 header and 3 body points, Bayes did not say ham (learned
 * points >= -1) and it is spam by the ruleset's required_score; ham only
 * when Bayes did not say spam (learned points <= 1) and it is not spam.
 */
#include <math.h>
#include <stdio.h>

#include "bayes.h"
#include "bayes_engine.h"

int bayes_score_set(const struct spam_engine *e, const struct spam_input *in)
{
	int set = e->score_set & SPAM_SET_NET;
	if (in->bayes && bayes_ready(in->bayes))
		set |= SPAM_SET_BAYES;
	return set;
}

/* A date of a header as a store's atime; false when none or out of range. */
static bool atime_of(time_t t, uint32_t *at)
{
	if (t <= 0 || (unsigned long long)t > UINT32_MAX)
		return false;
	*at = (uint32_t)t;
	return true;
}

/* The message's receive date as SpamAssassin's (Util.pm, receive_date),
 * the atime its tokens get when learned: the date of the first Received
 * field after the local delivery's (a first one from localhost or a qmail
 * invocation followed by fetchmail's), else the local ones', the other
 * Received fields', Resent-Date, Date; 0 (the time of learning) when none
 * has one. The mbox "From " line it also reads is not part of the header
 * here. */
static uint32_t receive_date(struct msgctx *m)
{
	const char *rv[64];
	size_t nr = 0, st = 0, first = 0, nl = 0;
	const struct sift_mime_header *h;
	while ((h = mh(m->mime, "Received", &st)) && nr < 64)
		rv[nr++] = h->value;
	if (nr && (re_match_lit("\\bfrom (?:localhost\\s|(?:\\S+ ){1,2}\\S*\\b127\\.0\\.0\\.1\\b)", rv[0]) ||
		   re_match_lit("qmail \\d+ invoked by uid \\d+", rv[0])))
		nl = first = 1;
	if (first < nr && re_match_lit("\\bby localhost with \\w+ \\(fetchmail-[\\d.]+", rv[first])) {
		nl++;
		first++;
	} else if (nl)
		nl = first = 0;
	time_t t;
	uint32_t at;
	if (first < nr && received_date(rv[first], &t) == 0 && atime_of(t, &at))
		return at;
	for (size_t i = 0; i < nl; i++)
		if (received_date(rv[i], &t) == 0 && atime_of(t, &at))
			return at;
	for (size_t i = first + 1; i < nr; i++)
		if (received_date(rv[i], &t) == 0 && atime_of(t, &at))
			return at;
	static const char *const dated[] = {"Resent-Date", "Date"};
	for (size_t k = 0; k < 2; k++) {
		st = 0;
		if ((h = mh(m->mime, dated[k], &st)) && parse_rfc822_date(h->value, &t) == 0 &&
		    atime_of(t, &at))
			return at;
	}
	return 0;
}

static struct btoks *msg_tokens_cb(struct msgctx *m, void (*cb)(void *, const char *, size_t), void *arg)
{
	if (m->btoks)
		return m->btoks;
	if (!m->lines)
		build_body(m);
	struct relayinfo *ri = relays(m);
	const struct bare_uris *bare = msg_bare_uris(m);
	struct bayes_src src = {
		.mime = m->mime,
		.more_uris = bare->uri,
		.nmore_uris = bare->n,
		.lines = m->lines,
		.lens = m->lens,
		.nlines = m->nlines,
		.relays_trusted = ri ? ri->trusted_str : NULL,
		.relays_untrusted = ri ? ri->untrusted_str : NULL,
		.addrlist_parse = m->in->addrlist_parse,
		.ignore = m->e->bayes_ignore,
		.nignore = m->e->nbayes_ignore,
	};
	m->btoks = xcalloc(1, sizeof(*m->btoks));
	m->btoks->text_cb = cb;
	m->btoks->text_arg = arg;
	bayes_tokenize(&src, m->btoks);
	m->btoks->atime = receive_date(m);
	return m->btoks;
}

static struct btoks *msg_tokens(struct msgctx *m)
{
	return msg_tokens_cb(m, NULL, NULL);
}

static double msg_prob(struct msgctx *m)
{
	if (!m->bayes_done) {
		m->bayes_done = true;
		m->bayes_p = m->in->bayes && (m->set & SPAM_SET_BAYES)
				     ? bayes_classify(m->in->bayes, msg_tokens(m))
				     : -1;
	}
	return m->bayes_p;
}

int ev_check_bayes(struct msgctx *m, const struct rule *r)
{
	if (!m->in->bayes || r->neval < 2)
		return 0;
	double p = msg_prob(m);
	if (p < 0)
		return 0;
	double min = atof(r->eval_args[0]);
	bool nomax = strcmp(r->eval_args[1], "undef") == 0;
	double max = nomax ? 0 : atof(r->eval_args[1]);
	return (min == 0 || p > min) && (nomax || p <= max);
}

struct alpoints {
	double points, head, body, learned;
	bool force;
};

static const char *rtype_class(enum rtype t)
{
	switch (t) {
	case R_HEADER:
		return "head";
	case R_BODY:
	case R_RAWBODY:
	case R_URI:
		return "body";
	case R_META:
		return "meta";
	default:
		return "";
	}
}

/* A meta's points split between header and body by its direct
 * dependencies' types, each share rounded to 3 decimals. */
static void meta_points(const struct spam_engine *e, const struct rule *r, double sc, struct alpoints *a)
{
	int dh = 0, db = 0;
	for (int k = 0; k < r->nrpn; k++) {
		if (r->rpn[k] < 0)
			continue;
		const char *c = rtype_class(e->rules[r->rpn[k]].type);
		dh += strcmp(c, "head") == 0;
		db += strcmp(c, "body") == 0;
	}
	if (dh + db == 0)
		return;
	a->head += round(sc * dh / (dh + db) * 1000) / 1000;
	a->body += round(sc * db / (dh + db) * 1000) / 1000;
}

static void autolearn_points(struct msgctx *m, struct alpoints *a)
{
	const struct spam_engine *e = m->e;
	int base = m->set & ~SPAM_SET_BAYES;
	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < e->nrules; i++) {
		const struct rule *r = &e->rules[i];
		if (!m->hits[i] || r->disabled || r->type == R_NONE || r->type == R_SYMBOL ||
		    strncmp(r->name, "__", 2) == 0)
			continue;
		if (r->tflags & (TF_NOAUTOLEARN | TF_USERCONF))
			continue;
		if (r->tflags & TF_LEARN) {
			a->learned += rule_score(r, m->set);
			continue;
		}
		double sc = rule_score(r, base);
		if (sc == 0)
			continue;
		const char *c = rtype_class(r->type);
		if (strcmp(c, "head") == 0)
			a->head += sc;
		else if (strcmp(c, "body") == 0)
			a->body += sc;
		else if (strcmp(c, "meta") == 0)
			meta_points(e, r, sc, a);
		a->points += sc;
	}
	a->points = round(a->points * 1000) / 1000;
}

/* "ham", "spam" or "no" by SpamAssassin's rules. */
static const char *autolearn_verdict(struct msgctx *m, const struct spam_result *res)
{
	const struct bayes_opts *o = &m->in->bayes->o;
	struct alpoints a;
	autolearn_points(m, &a);
	bool is_spam = res->score >= m->e->required;
	if (a.points < o->autolearn_nonspam)
		return a.learned > 1.0 || is_spam ? "no" : "ham";
	if (a.points < o->autolearn_spam)
		return "no";
	if (a.body < 3 || a.head < 3 || a.learned < -1.0 || !is_spam)
		return "no";
	return "spam";
}

void bayes_after_check(struct msgctx *m, struct spam_result *res)
{
	res->score_set = m->set;
	res->bayes = m->bayes_done ? m->bayes_p : -1;
	if (!m->in->bayes) {
		res->autolearn = "no";
		return;
	}
	if (!m->in->bayes->o.auto_learn || res->timed_out) {
		res->autolearn = "disabled";
		return;
	}
	const char *v = autolearn_verdict(m, res);
	if (strcmp(v, "no") != 0) {
		/* bounded: a store busy with another writer does not hold up
		 * the message (BAYES_AUTOLEARN_WAIT_MS) */
		char *id = bayes_msgid(m->mime);
		int rc = bayes_autolearn(m->in->bayes, msg_tokens(m), id, strcmp(v, "spam") == 0,
					 BAYES_AUTOLEARN_WAIT_MS);
		free(id);
		if (rc < 0)
			v = "unavailable";
	}
	res->autolearn = v;
}

void bayes_msg_free(struct msgctx *m)
{
	if (m->btoks) {
		btoks_free(m->btoks);
		free(m->btoks);
		m->btoks = NULL;
	}
}

int spam_engine_learn(const struct spam_engine *e, const struct spam_input *in, bool spam, bool forget)
{
	struct msgctx m;
	msg_init(&m, e, in);
	char *id = bayes_msgid(in->mime);
	int rc = bayes_learn(in->bayes, msg_tokens(&m), id, spam, forget);
	free(id);
	msg_free(&m);
	return rc;
}

void spam_engine_tokens(const struct spam_engine *e, const struct spam_input *in,
			void (*cb)(void *arg, const char *tok, size_t len), void *arg)
{
	struct msgctx m;
	msg_init(&m, e, in);
	msg_tokens_cb(&m, cb, arg);
	msg_free(&m);
}
