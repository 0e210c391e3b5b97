/*
 * ifexpr.c - SpamAssassin's `if` expressions: numbers, version,
 * perl_version, plugin(NAME), can(...), has(...), comparisons, !, not,
 * &&, and, ||, or, parentheses.
 */
#include "internal.h"

/* Parentheses and negations nest at most this deep (the parser recurses). */
#define IF_MAX_DEPTH 200

struct ifp {
	const char *s;
	struct spam_engine *e;
	bool err;
	int depth;
};

/* can(Package::method): a plugin's method exists only when the plugin is
 * loaded (Perl's can() on a package never required); every other feature
 * (Mail::SpamAssassin::Conf::...) of SpamAssassin 4.0 exists. */
static double can_method(struct spam_engine *e, const char *t)
{
	static const char pfx[] = "Mail::SpamAssassin::Plugin::";
	if (strncmp(t, pfx, sizeof(pfx) - 1) != 0)
		return 1;
	const char *last = strrchr(t, ':');
	if (!last || last - t <= (long)sizeof(pfx))
		return 1;
	char *mod = xstrndup(t, (size_t)(last - 1 - t));
	double v = plugin_loaded(e, mod);
	free(mod);
	return v;
}

static void if_ws(struct ifp *p)
{
	while (*p->s == ' ' || *p->s == '\t')
		p->s++;
}

static double if_or(struct ifp *p);
static double if_prim(struct ifp *p);

static double if_nested(struct ifp *p, bool paren)
{
	if (p->depth >= IF_MAX_DEPTH) {
		p->err = true;
		return 0;
	}
	p->depth++;
	double v = paren ? if_or(p) : !if_prim(p);
	p->depth--;
	return v;
}

static double if_prim(struct ifp *p)
{
	if_ws(p);
	if (*p->s == '(') {
		p->s++;
		double v = if_nested(p, true);
		if_ws(p);
		if (*p->s == ')')
			p->s++;
		else
			p->err = true;
		return v;
	}
	if (*p->s == '!') {
		p->s++;
		return if_nested(p, false);
	}
	if (strncmp(p->s, "not ", 4) == 0) {
		p->s += 4;
		return if_nested(p, false);
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
			v = can_method(p->e, t);
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

int if_eval(struct spam_engine *e, const char *expr)
{
	struct ifp p = {expr, e, false, 0};
	double v = if_or(&p);
	if_ws(&p);
	if (p.err || *p.s)
		return -1;
	return v != 0;
}
