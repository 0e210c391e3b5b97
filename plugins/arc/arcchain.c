/*
 * arcchain.c - the ARC sets of a message and what an
 * ARC-Authentication-Results says (see arcchain.h).
 */
#include "arcchain.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const arc_cv_names[ARC_CV_MAX] = {"none", "pass", "fail", "temperror"};

enum { F_AAR = 1, F_AMS, F_AS };

static int arc_kind(const char *name)
{
	if (strcasecmp(name, "ARC-Authentication-Results") == 0)
		return F_AAR;
	if (strcasecmp(name, "ARC-Message-Signature") == 0)
		return F_AMS;
	if (strcasecmp(name, "ARC-Seal") == 0)
		return F_AS;
	return 0;
}

unsigned arc_aar_instance(const char *value)
{
	const char *p = value;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (p[0] != 'i' && p[0] != 'I')
		return 0;
	p++;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p++ != '=')
		return 0;
	while (*p == ' ' || *p == '\t')
		p++;
	unsigned v = 0;
	int digits = 0;
	for (; isdigit((unsigned char)*p) && digits < 3; p++, digits++)
		v = v * 10 + (unsigned)(*p - '0');
	while (*p == ' ' || *p == '\t')
		p++;
	if (!digits || *p != ';' || v < 1 || v > ARC_MAX)
		return 0;
	return v;
}

static void fail(struct arc_chain *c, unsigned i, const char *reason)
{
	if (c->cv == ARC_CV_FAIL)
		return;
	c->cv = ARC_CV_FAIL;
	c->fail_i = i;
	c->reason = reason;
}

/* Files one ARC field under its instance; a duplicate fails the chain. */
static void add_field(struct arc_chain *c, int kind, size_t idx, const char *value)
{
	unsigned i = 0;
	struct dkv_sig tmp;
	if (kind == F_AAR)
		i = arc_aar_instance(value);
	else {
		dkv_sig_parse_kind(value, kind == F_AMS ? DKV_K_AMS : DKV_K_SEAL, &tmp);
		i = tmp.instance;
	}
	if (!i) {
		if (kind != F_AAR)
			dkv_sig_free(&tmp);
		fail(c, 0, "ARC field without a valid instance (i=)");
		return;
	}
	struct arc_set *s = &c->set[i];
	bool *has = kind == F_AAR ? &s->has_aar : kind == F_AMS ? &s->has_ams : &s->has_as;
	if (*has) {
		if (kind != F_AAR)
			dkv_sig_free(&tmp);
		fail(c, i, "two ARC fields of one kind in one instance");
		return;
	}
	*has = true;
	if (kind == F_AAR)
		s->aar = idx;
	else if (kind == F_AMS) {
		s->ams = idx;
		s->sig = tmp;
	} else {
		s->as = idx;
		s->seal = tmp;
	}
	if (i > c->n)
		c->n = i;
}

/* RFC 8617 5.2 steps 1 and 2 on the sets found. */
static void check_structure(struct arc_chain *c)
{
	for (unsigned i = 1; i <= c->n; i++) {
		const struct arc_set *s = &c->set[i];
		if (!s->has_aar || !s->has_ams || !s->has_as) {
			fail(c, i, "ARC set incomplete or instances not 1..N");
			return;
		}
		if (s->sig.error || s->seal.error) {
			fail(c, i, s->seal.error ? s->seal.error : s->sig.error);
			return;
		}
	}
	/* The newest seal's cv=fail: the chain failed upstream. */
	if (strcmp(c->set[c->n].seal.cv, "fail") == 0) {
		fail(c, c->n, "the newest ARC-Seal says cv=fail");
		return;
	}
	for (unsigned i = 1; i <= c->n; i++) {
		const char *want = i == 1 ? "none" : "pass";
		if (strcmp(c->set[i].seal.cv, want) != 0) {
			fail(c, i, i == 1 ? "ARC-Seal i=1 without cv=none" : "ARC-Seal without cv=pass");
			return;
		}
	}
}

void arc_chain_parse(size_t n, const char *const *names, const char *const *values, struct arc_chain *c)
{
	memset(c, 0, sizeof(*c));
	bool any = false;
	for (size_t k = 0; k < n; k++) {
		int kind = arc_kind(names[k]);
		if (!kind)
			continue;
		any = true;
		add_field(c, kind, k, values[k]);
	}
	if (!any)
		return; /* cv none */
	if (c->cv != ARC_CV_FAIL)
		c->cv = ARC_CV_PASS;
	if (c->cv == ARC_CV_PASS)
		check_structure(c);
}

void arc_chain_free(struct arc_chain *c)
{
	for (unsigned i = 0; i <= ARC_MAX; i++) {
		dkv_sig_free(&c->set[i].sig);
		dkv_sig_free(&c->set[i].seal);
	}
	c->n = 0;
}

/* ---- ARC-Authentication-Results --------------------------------------------- */

/* The value without comments (RFC 5322 CFWS, nested) and with folds as
 * spaces; quoted strings kept. malloc'd. */
static char *strip_comments(const char *v)
{
	char *out = malloc(strlen(v) + 1), *o = out;
	if (!out)
		return NULL;
	int depth = 0;
	bool quoted = false;
	for (const char *p = v; *p; p++) {
		char ch = *p == '\r' || *p == '\n' || *p == '\t' ? ' ' : *p;
		if (*p == '\\' && p[1]) {
			if (!depth) {
				*o++ = p[0];
				*o++ = p[1];
			}
			p++;
			continue;
		}
		if (quoted) {
			quoted = ch != '"';
			*o++ = ch;
		} else if (ch == '(')
			depth++;
		else if (ch == ')' && depth)
			depth--;
		else if (!depth) {
			quoted = ch == '"';
			*o++ = ch;
		}
	}
	*o = 0;
	return out;
}

/* The value of property `prop` ("smtp.mailfrom") in one resinfo, quotes
 * removed, into out. */
static bool prop_value(const char *res, const char *prop, char *out, size_t n)
{
	size_t pl = strlen(prop);
	for (const char *p = res; (p = strcasestr(p, prop)) != NULL; p += pl) {
		if ((p != res && p[-1] != ' ') || p[pl] != '=')
			continue;
		const char *v = p + pl + 1;
		bool q = *v == '"';
		v += q;
		size_t k = 0;
		while (*v && k + 1 < n && (q ? *v != '"' : *v != ' ' && *v != ';'))
			out[k++] = *v++;
		out[k] = 0;
		return k > 0;
	}
	return false;
}

static void list_add(char *list, size_t n, const char *item)
{
	size_t l = strlen(list);
	snprintf(list + l, n - l, "%s%s", l ? "," : "", item);
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* One resinfo ("spf=pass smtp.mailfrom=a@b.example"). */
static void one_result(const char *r, char *spf, size_t spf_n, char *dkim, size_t dkim_n)
{
	while (*r == ' ')
		r++;
	char v[256];
	if (strncasecmp(r, "spf=pass", 8) == 0 && (r[8] == ' ' || !r[8])) {
		if (prop_value(r, "smtp.mailfrom", v, sizeof(v)) ||
		    prop_value(r, "smtp.helo", v, sizeof(v))) {
			const char *at = strrchr(v, '@');
			snprintf(spf, spf_n, "%s", at ? at + 1 : v);
			lower(spf);
		}
	} else if (strncasecmp(r, "dkim=pass", 9) == 0 && (r[9] == ' ' || !r[9])) {
		if (prop_value(r, "header.d", v, sizeof(v))) {
			lower(v);
			list_add(dkim, dkim_n, v);
		}
	}
}

void arc_aar_passes(const char *value, char *spf, size_t spf_n, char *dkim, size_t dkim_n)
{
	spf[0] = dkim[0] = 0;
	char *s = strip_comments(value);
	if (!s)
		return;
	/* i=N; authserv-id; resinfo; resinfo ... */
	char *save = NULL;
	int k = 0;
	for (char *r = strtok_r(s, ";", &save); r; r = strtok_r(NULL, ";", &save), k++)
		if (k >= 2)
			one_result(r, spf, spf_n, dkim, dkim_n);
	free(s);
}
