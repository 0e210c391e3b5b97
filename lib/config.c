/*
 * config.c - main.cf-style configuration files.
 *
 * A struct sift_config maps parameter names to their raw (unexpanded) values,
 * each with where it was set ("file:line", or the origin given to
 * sift_config_set, e.g. "-o"), plus the defaults registered from parameter
 * tables. Files follow Postfix's main.cf rules: `name = value`; a line that
 * starts with white space continues the logical line (the newline is
 * dropped, the white space kept, as Postfix's readllines does); blank lines
 * and lines whose first non-blank character is `#` are skipped, also inside
 * a continued line; a later setting replaces an earlier one.
 *
 * Values are expanded on lookup: `$name`, `${name}`, `$(name)`, `$$` for a
 * dollar, and Postfix's conditionals `${name?text}` (text when name is set
 * and non-empty), `${name:text}` (text when it is unset or empty) and
 * `${name?{text1}:{text2}}`. Undefined names expand to "". A reference loop,
 * references nested deeper than EXP_MAX_DEPTH, expansions (references and
 * conditionals together) nested deeper than EXP_MAX_NEST, more than
 * EXP_MAX_STEPS expansions, more than EXP_MAX_WORK bytes examined or a
 * result above EXP_MAX_OUT bytes is an error, so that a hostile or broken
 * file cannot make a lookup run away, overflow the stack or take quadratic
 * time: the bracket pairs of each value are found once, when it is set,
 * so a conditional's text is not rescanned at every level it is nested
 * in. A `$` not followed by a name is kept.
 *
 * Threading and ownership: one thread builds a config (load, set, defaults);
 * afterwards it is read-only and lookups may run from any thread. All
 * strings are owned by the config; sift_config_get/expand return malloc'd
 * copies.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sift.h"

#define CFG_MAX_FILE  (16u << 20) /* bytes per file */
#define CFG_MAX_LINE  (1u << 20)  /* bytes per logical line */
#define EXP_MAX_DEPTH 64	  /* nested $name references */
#define EXP_MAX_STEPS 100000L	  /* name expansions per lookup */
#define EXP_MAX_OUT   (1u << 20)  /* bytes of one expanded value */
#define EXP_MAX_NEST  256	  /* nested expansions: references and conditionals */
#define EXP_MAX_WORK  (64u << 20) /* bytes examined by one lookup */

/* The bracket pairs of a value: `at` an opening '{' or '(' and `to` the
 * matching closing one (counting only brackets of the same kind, as
 * Postfix does), sorted by `at`; an unmatched opening bracket is absent. */
struct brk {
	size_t at, to;
};
struct brackets {
	struct brk *v;
	size_t n;
};

struct centry {
	char *name;
	char *raw;			/* explicitly set value, or NULL */
	char *where;			/* where raw was set */
	char *def;			/* registered default, or NULL */
	struct brackets raw_br, def_br; /* their bracket pairs */
	bool known;			/* a known name without a default (sift_config_known) */
	size_t idx;			/* position in cfg->order, SIZE_MAX when never set */
	struct centry *next;
};

struct sift_config {
	struct centry **tab;
	size_t nbuckets, n;
	struct centry **order; /* explicitly set entries, first-set order */
	size_t norder, ocap;
	char **known_prefixes; /* every name starting with one is known */
	size_t nknown_prefixes;
};

/* ---- the table ----------------------------------------------------------- */

static int cmp_brk(const void *a, const void *b)
{
	size_t x = ((const struct brk *)a)->at, y = ((const struct brk *)b)->at;
	return x < y ? -1 : x > y;
}

/* Finds the bracket pairs of s[0..len) in one pass (replacing b's). */
static void brackets_find(struct brackets *b, const char *s, size_t len)
{
	free(b->v);
	b->v = NULL;
	b->n = 0;
	size_t opens = 0;
	for (size_t i = 0; i < len; i++)
		opens += s[i] == '{' || s[i] == '(';
	if (!opens)
		return;
	size_t *st = sift_malloc(2 * opens * sizeof(*st)), *curly = st, *round = st + opens;
	size_t ncurly = 0, nround = 0;
	b->v = sift_malloc(opens * sizeof(*b->v));
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '{')
			curly[ncurly++] = i;
		else if (s[i] == '(')
			round[nround++] = i;
		else if (s[i] == '}' && ncurly)
			b->v[b->n++] = (struct brk){curly[--ncurly], i};
		else if (s[i] == ')' && nround)
			b->v[b->n++] = (struct brk){round[--nround], i};
	}
	free(st);
	qsort(b->v, b->n, sizeof(*b->v), cmp_brk);
}

static size_t hash_name(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

static struct centry *find_n(const struct sift_config *cfg, const char *name, size_t len)
{
	struct centry *e = cfg->tab[hash_name(name, len) & (cfg->nbuckets - 1)];
	for (; e; e = e->next)
		if (strlen(e->name) == len && memcmp(e->name, name, len) == 0)
			return e;
	return NULL;
}

static struct centry *find(const struct sift_config *cfg, const char *name)
{
	return find_n(cfg, name, strlen(name));
}

static struct centry *find_or_add(struct sift_config *cfg, const char *name)
{
	struct centry *e = find(cfg, name);
	if (e)
		return e;
	if (cfg->n >= cfg->nbuckets) {
		size_t nb = cfg->nbuckets * 2;
		struct centry **t = sift_calloc(nb, sizeof(*t));
		for (size_t i = 0; i < cfg->nbuckets; i++) {
			struct centry *x = cfg->tab[i], *next;
			for (; x; x = next) {
				next = x->next;
				size_t h = hash_name(x->name, strlen(x->name)) & (nb - 1);
				x->next = t[h];
				t[h] = x;
			}
		}
		free(cfg->tab);
		cfg->tab = t;
		cfg->nbuckets = nb;
	}
	e = sift_calloc(1, sizeof(*e));
	e->name = sift_strdup(name);
	e->idx = SIZE_MAX;
	size_t h = hash_name(name, strlen(name)) & (cfg->nbuckets - 1);
	e->next = cfg->tab[h];
	cfg->tab[h] = e;
	cfg->n++;
	return e;
}

struct sift_config *sift_config_new(void)
{
	struct sift_config *cfg = sift_calloc(1, sizeof(*cfg));
	cfg->nbuckets = 64;
	cfg->tab = sift_calloc(cfg->nbuckets, sizeof(*cfg->tab));
	return cfg;
}

void sift_config_free(struct sift_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nbuckets; i++) {
		struct centry *e = cfg->tab[i], *next;
		for (; e; e = next) {
			next = e->next;
			free(e->name);
			free(e->raw);
			free(e->where);
			free(e->def);
			free(e->raw_br.v);
			free(e->def_br.v);
			free(e);
		}
	}
	free(cfg->tab);
	free(cfg->order);
	for (size_t i = 0; i < cfg->nknown_prefixes; i++)
		free(cfg->known_prefixes[i]);
	free(cfg->known_prefixes);
	free(cfg);
}

static bool name_char(int c)
{
	return isalnum(c) || c == '_';
}

static void set_value(struct sift_config *cfg, const char *name, const char *value, const char *where)
{
	struct centry *e = find_or_add(cfg, name);
	free(e->raw);
	free(e->where);
	e->raw = sift_strdup(value);
	e->where = sift_strdup(where);
	brackets_find(&e->raw_br, e->raw, strlen(e->raw));
	if (e->idx == SIZE_MAX) {
		if (cfg->norder == cfg->ocap) {
			cfg->ocap = cfg->ocap ? cfg->ocap * 2 : 32;
			cfg->order = sift_realloc(cfg->order, cfg->ocap * sizeof(*cfg->order));
		}
		e->idx = cfg->norder;
		cfg->order[cfg->norder++] = e;
	}
}

/* Splits "name = value" in place. Returns an error text or NULL. */
static const char *split_assignment(char *line, char **name_r, char **value_r)
{
	char *eq = strchr(line, '=');
	if (!eq)
		return "missing '=' after parameter name";
	*eq = 0;
	char *name = sift_trim(line), *value = sift_trim(eq + 1);
	if (!*name)
		return "missing parameter name before '='";
	for (const char *p = name; *p; p++)
		if (!name_char((unsigned char)*p))
			return "bad character in parameter name (use letters, digits and '_')";
	*name_r = name;
	*value_r = value;
	return NULL;
}

/* ---- files --------------------------------------------------------------- */

/* Reads a whole file (at most max bytes). 0 ok, -1 with errno set (EFBIG
 * when too large). */
static int load_file(struct sift_config *cfg, const char *path, bool optional, char **err_r)
{
	char *data;
	size_t len;
	if (sift_read_file(path, CFG_MAX_FILE, &data, &len) < 0) {
		if (optional && errno == ENOENT)
			return 0;
		if (err_r)
			*err_r = sift_asprintf("cannot read %s: %s", path,
					       errno == EFBIG	 ? "file too large"
					       : errno == ESPIPE ? "a FIFO or socket, not a file"
								 : strerror(errno));
		return -1;
	}
	const char *p = data, *end = data + len;
	int lineno = 0, first = 0, rc = 0, r, secret_line = 0;
	const char *why = NULL;
	struct sift_buf line = {0};
	while ((r = sift_next_logical_line(&p, end, &lineno, &line, &first, &why, CFG_MAX_LINE)) != 0) {
		char *name, *value;
		if (r < 0 || (why = split_assignment(line.data, &name, &value)) != NULL) {
			if (err_r)
				*err_r = sift_asprintf("%s:%d: %s", path, first, why);
			rc = -1;
			break;
		}
		char *where = sift_asprintf("%s:%d", path, first);
		set_value(cfg, name, value, where);
		free(where);
		if (!secret_line) {
			char *masked = sift_mask_secrets(value);
			if (sift_param_secret(sift_trim(name)) || strcmp(masked, value) != 0)
				secret_line = first;
			free(masked);
		}
	}
	sift_buf_free(&line);
	free(data);
	/* A password in a file every local user can read: said, not refused
	 * (the daemons still start; the administrator fixes the mode). */
	struct stat st;
	if (rc == 0 && secret_line && stat(path, &st) == 0 && (st.st_mode & S_IROTH))
		sift_log(LOG_WARNING,
			 "%s:%d: a password in a file readable by every user (mode %04o); "
			 "fix it with chmod o-r %s (group sift may keep read access)",
			 path, secret_line, (unsigned)(st.st_mode & 07777), path);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int sift_config_load(struct sift_config *cfg, const char *path, bool optional, char **err_r)
{
	if (load_file(cfg, path, optional, err_r) < 0)
		return -1;

	char *dir = sift_asprintf("%s.d", path);
	DIR *d = opendir(dir);
	if (!d) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR) {
			free(dir);
			return 0;
		}
		if (err_r)
			*err_r = sift_asprintf("cannot read directory %s: %s", dir, strerror(e));
		free(dir);
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".conf") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			names = sift_realloc(names, cap * sizeof(*names));
		}
		names[n++] = sift_strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		char *p = sift_asprintf("%s/%s", dir, names[i]);
		struct stat st;
		if (rc == 0 && stat(p, &st) == 0 && S_ISREG(st.st_mode))
			rc = load_file(cfg, p, false, err_r);
		free(p);
		free(names[i]);
	}
	free(names);
	free(dir);
	return rc;
}

/* An assignment for an error message: the value masked as -n masks it
 * (whole when the name is a secret's, else password=...), the name being
 * what comes before '=' or, without one, before the first white space. */
static char *shown_assignment(const char *a)
{
	const char *eq = strchr(a, '=');
	size_t nl = eq ? (size_t)(eq - a) : strcspn(a, " \t");
	const char *value = eq ? eq + 1 : a + nl + strspn(a + nl, " \t");
	char *name = sift_asprintf("%.*s", (int)nl, a);
	char *v = sift_param_shown(sift_trim(name), value);
	char *joined = sift_asprintf("%.*s%s", (int)(value - a), a, v);
	char *out = sift_mask_secrets(joined);
	free(joined);
	free(v);
	free(name);
	return out;
}

int sift_config_set(struct sift_config *cfg, const char *assignment, const char *origin, char **err_r)
{
	char *copy = sift_strdup(assignment), *name, *value;
	const char *why = NULL;
	if (strchr(copy, '\n') || strchr(copy, '\r'))
		why = "line break in value";
	else
		why = split_assignment(copy, &name, &value);
	if (why) {
		if (err_r) {
			char *shown = shown_assignment(assignment);
			*err_r = sift_asprintf("%s: \"%s\": %s", origin ? origin : "-o", shown, why);
			free(shown);
		}
		free(copy);
		return -1;
	}
	set_value(cfg, name, value, origin ? origin : "-o");
	free(copy);
	return 0;
}

void sift_config_defaults(struct sift_config *cfg, const char *prefix, const struct sift_param *tab)
{
	if (!tab)
		return;
	for (; tab->name; tab++) {
		char *name = sift_asprintf("%s%s", prefix ? prefix : "", tab->name);
		struct centry *e = find_or_add(cfg, name);
		free(e->def);
		e->def = sift_strdup(tab->def ? tab->def : "");
		brackets_find(&e->def_br, e->def, strlen(e->def));
		free(name);
	}
}

const char *sift_config_raw(const struct sift_config *cfg, const char *name, const char **where_r)
{
	struct centry *e = find(cfg, name);
	if (!e || !e->raw)
		return NULL;
	if (where_r)
		*where_r = e->where;
	return e->raw;
}

void sift_config_each(const struct sift_config *cfg,
		      void (*fn)(const char *name, const char *raw, const char *where, void *arg), void *arg)
{
	for (size_t i = 0; i < cfg->norder; i++)
		fn(cfg->order[i]->name, cfg->order[i]->raw, cfg->order[i]->where, arg);
}

/* ---- expansion ----------------------------------------------------------- */

struct exp {
	const struct sift_config *cfg;
	const char *stack[EXP_MAX_DEPTH];
	int depth;   /* $name references being expanded (stack) */
	int nest;    /* expand() calls in progress: references and conditionals */
	long steps;  /* $name and conditional expansions */
	size_t work; /* bytes examined */
	bool secret; /* the value is a secret: errors do not quote it */
	char *err;
};

/* Text being expanded: a value (or free text) and its bracket pairs. */
struct src {
	const char *s;
	const struct brackets *b;
};

static int expand(struct exp *x, const struct src *sc, size_t start, size_t end, struct sift_buf *out);

static const char *value_of(const struct centry *e)
{
	return !e ? NULL : e->raw ? e->raw : e->def;
}

/* The value of e and its bracket pairs, as value_of. */
static const char *value_src(const struct centry *e, struct src *sc)
{
	const char *v = value_of(e);
	sc->s = v;
	sc->b = !v ? NULL : e->raw ? &e->raw_br : &e->def_br;
	return v;
}

static int fail(struct exp *x, char *msg)
{
	if (!x->err)
		x->err = msg;
	else
		free(msg);
	return -1;
}

/* Counts n more bytes examined: the bound on one lookup's total work (a
 * value referred to many times is examined each time). */
static int charge(struct exp *x, size_t n)
{
	x->work += n;
	if (x->work > EXP_MAX_WORK)
		return fail(x, sift_asprintf("expansion examines more than %u MiB of text (too many "
					     "references to long values)",
					     EXP_MAX_WORK >> 20));
	return 0;
}

/* Up to 60 bytes of the text at s for a message, or the mask for a secret
 * (the caller also masks password=... in the message). */
static char *quoted(const struct exp *x, const char *s, size_t len)
{
	if (x->secret)
		return sift_strdup("********");
	return sift_asprintf("%.*s", (int)(len > 60 ? 60 : len), s);
}

static int expand_name(struct exp *x, const char *name, size_t nlen, struct sift_buf *out)
{
	if (++x->steps > EXP_MAX_STEPS)
		return fail(x, sift_strdup("too many $name expansions"));
	const struct centry *e = find_n(x->cfg, name, nlen);
	struct src sc;
	const char *v = value_src(e, &sc);
	if (!v)
		return 0;
	for (int i = 0; i < x->depth; i++)
		if (strcmp(x->stack[i], e->name) == 0)
			return fail(x, sift_asprintf("recursive reference to $%s", e->name));
	if (x->depth >= EXP_MAX_DEPTH)
		return fail(x, sift_asprintf("$%s: references nested too deeply", e->name));
	x->stack[x->depth++] = e->name;
	int rc = expand(x, &sc, 0, strlen(v), out);
	x->depth--;
	return rc;
}

/* Index of the bracket closing the one opening at s[i], or end when it is
 * not closed before end: looked up in the pairs found once per value
 * (brackets_find), not by scanning, so nested conditionals cost no
 * rescan of the text they enclose. */
static size_t closing(const struct src *sc, size_t i, size_t end)
{
	const struct brk *v = sc->b->v;
	size_t lo = 0, hi = sc->b->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].at < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < sc->b->n && v[lo].at == i && v[lo].to < end ? v[lo].to : end;
}

/* The inside of ${...} or $(...): s[start..end). */
static int expand_braced(struct exp *x, const struct src *sc, size_t start, size_t end, struct sift_buf *out)
{
	const char *s = sc->s;
	size_t i = start;
	while (i < end && isspace((unsigned char)s[i]))
		i++;
	size_t ns = i;
	while (i < end && name_char((unsigned char)s[i]))
		i++;
	size_t ne = i;
	while (i < end && isspace((unsigned char)s[i]))
		i++;
	if (charge(x, i - start + 1) < 0)
		return -1;
	if (ne == ns) {
		char *q = quoted(x, s + start, end - start);
		fail(x, sift_asprintf("empty or bad parameter name in \"${%s}\"", q));
		free(q);
		return -1;
	}
	if (i == end)
		return expand_name(x, s + ns, ne - ns, out);
	char op = s[i++];
	if (op != '?' && op != ':') {
		char *q = quoted(x, s + start, end - start);
		fail(x, sift_asprintf("bad character '%c' in \"${%s}\"", x->secret ? '*' : op, q));
		free(q);
		return -1;
	}
	if (++x->steps > EXP_MAX_STEPS)
		return fail(x, sift_strdup("too many $name expansions"));

	/* ${name?text}, ${name:text}, ${name?{t1}:{t2}}, ${name?{t1}} */
	size_t t1 = i, e1 = end, t2 = 0, e2 = 0;
	bool two = false;
	size_t j = i;
	while (j < end && isspace((unsigned char)s[j]))
		j++;
	if (j < end && s[j] == '{') {
		size_t c = closing(sc, j, end);
		if (c == end)
			return fail(x, sift_strdup("missing '}' in conditional"));
		t1 = j + 1;
		e1 = c;
		size_t k = c + 1;
		while (k < end && isspace((unsigned char)s[k]))
			k++;
		if (k < end && op == '?' && s[k] == ':') {
			k++;
			while (k < end && isspace((unsigned char)s[k]))
				k++;
			if (k == end || s[k] != '{')
				return fail(x, sift_strdup("expected '{' after ':' in conditional"));
			size_t c2 = closing(sc, k, end);
			if (c2 == end)
				return fail(x, sift_strdup("missing '}' in conditional"));
			t2 = k + 1;
			e2 = c2;
			two = true;
			k = c2 + 1;
			while (k < end && isspace((unsigned char)s[k]))
				k++;
		}
		if (k != end)
			return fail(x, sift_strdup("text after '}' in conditional"));
		if (charge(x, (j - i) + (k - c)) < 0)
			return -1;
	}
	const char *v = value_of(find_n(x->cfg, s + ns, ne - ns));
	bool set = v && *v;
	if (op == '?')
		return set ? expand(x, sc, t1, e1, out) : two ? expand(x, sc, t2, e2, out) : 0;
	return set ? 0 : expand(x, sc, t1, e1, out);
}

static int expand_text(struct exp *x, const struct src *sc, size_t start, size_t end, struct sift_buf *out)
{
	const char *s = sc->s;
	size_t i = start;
	while (i < end) {
		const char *d = memchr(s + i, '$', end - i);
		size_t lit = d ? (size_t)(d - s) - i : end - i;
		sift_buf_add(out, s + i, lit);
		i += lit;
		if (out->len > EXP_MAX_OUT)
			return fail(x, sift_strdup("expanded value too long"));
		if (charge(x, lit + 1) < 0)
			return -1;
		if (i >= end)
			break;
		/* s[i] == '$' */
		if (i + 1 == end) {
			sift_buf_add(out, "$", 1);
			i++;
		} else if (s[i + 1] == '$') {
			sift_buf_add(out, "$", 1);
			i += 2;
		} else if (s[i + 1] == '{' || s[i + 1] == '(') {
			size_t c = closing(sc, i + 1, end);
			if (c == end)
				return fail(x, sift_asprintf("missing '%c' after \"$%c\"",
							     s[i + 1] == '{' ? '}' : ')', s[i + 1]));
			if (expand_braced(x, sc, i + 2, c, out) < 0)
				return -1;
			i = c + 1;
		} else if (name_char((unsigned char)s[i + 1])) {
			size_t j = i + 1;
			while (j < end && name_char((unsigned char)s[j]))
				j++;
			if (charge(x, j - i) < 0 || expand_name(x, s + i + 1, j - i - 1, out) < 0)
				return -1;
			i = j;
		} else {
			sift_buf_add(out, "$", 1);
			i++;
		}
		if (out->len > EXP_MAX_OUT)
			return fail(x, sift_strdup("expanded value too long"));
	}
	return 0;
}

/* s[start..end): every nested expansion (a $name's value, a conditional's
 * text) goes through here and counts toward EXP_MAX_NEST, so that nesting
 * cannot exhaust the stack. */
static int expand(struct exp *x, const struct src *sc, size_t start, size_t end, struct sift_buf *out)
{
	if (x->nest >= EXP_MAX_NEST)
		return fail(x, sift_asprintf("expansions nested more than %d levels deep", EXP_MAX_NEST));
	x->nest++;
	int rc = expand_text(x, sc, start, end, out);
	x->nest--;
	return rc;
}

char *sift_config_expand(const struct sift_config *cfg, const char *text, char **err_r)
{
	struct exp x = {.cfg = cfg};
	struct sift_buf out = {0};
	struct brackets b = {0};
	size_t len = strlen(text);
	brackets_find(&b, text, len);
	struct src sc = {text, &b};
	int rc = expand(&x, &sc, 0, len, &out);
	free(b.v);
	if (rc < 0) {
		if (err_r)
			*err_r = sift_mask_secrets(x.err);
		free(x.err);
		sift_buf_free(&out);
		return NULL;
	}
	sift_buf_str(&out);
	return out.data;
}

char *sift_config_get(const struct sift_config *cfg, const char *name, char **err_r)
{
	const struct centry *e = find(cfg, name);
	struct src sc;
	const char *v = value_src(e, &sc);
	if (!v)
		return NULL;
	struct exp x = {.cfg = cfg, .secret = sift_param_secret(name)};
	struct sift_buf out = {0};
	x.stack[x.depth++] = e->name;
	if (expand(&x, &sc, 0, strlen(v), &out) < 0) {
		if (err_r) {
			char *masked = sift_mask_secrets(x.err);
			*err_r = sift_asprintf("%s: %s: %s", e->raw ? e->where : "default", name, masked);
			free(masked);
		}
		free(x.err);
		sift_buf_free(&out);
		return NULL;
	}
	sift_buf_str(&out);
	return out.data;
}

/* ---- unknown names ------------------------------------------------------- */

void sift_config_known(struct sift_config *cfg, const char *prefix, const struct sift_param *tab)
{
	if (!tab) {
		cfg->known_prefixes =
			sift_realloc(cfg->known_prefixes, (cfg->nknown_prefixes + 1) * sizeof(char *));
		cfg->known_prefixes[cfg->nknown_prefixes++] = sift_strdup(prefix ? prefix : "");
		return;
	}
	for (; tab->name; tab++) {
		char *name = sift_asprintf("%s%s", prefix ? prefix : "", tab->name);
		find_or_add(cfg, name)->known = true;
		free(name);
	}
}

/* Marks the set entries that text refers to with $name. */
static void mark_refs(const struct sift_config *cfg, const char *s, bool *used)
{
	for (const char *p = s; (p = strchr(p, '$')) != NULL;) {
		p++;
		if (*p == '$') {
			p++;
			continue;
		}
		const char *n = p;
		if (*n == '{' || *n == '(') {
			n++;
			while (isspace((unsigned char)*n))
				n++;
		}
		const char *e = n;
		while (name_char((unsigned char)*e))
			e++;
		if (e > n) {
			const struct centry *c = find_n(cfg, n, (size_t)(e - n));
			if (c && c->idx != SIZE_MAX)
				used[c->idx] = true;
		}
	}
}

static bool is_known(const struct sift_config *cfg, const struct centry *e)
{
	if (e->def || e->known)
		return true;
	for (size_t i = 0; i < cfg->nknown_prefixes; i++)
		if (strncmp(e->name, cfg->known_prefixes[i], strlen(cfg->known_prefixes[i])) == 0)
			return true;
	return false;
}

/* Registers the names of plugin `name` (plugin_dir/name.so) as known. */
static bool know_plugin(struct sift_config *cfg, const char *plugin_dir, const char *name, size_t len)
{
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(name[i] == '_' || name[i] == '-' || (name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= '0' && name[i] <= '9')))
			return false;
	char *path = sift_asprintf("%s/%.*s.so", plugin_dir, (int)len, name);
	struct stat st;
	const struct sift_plugin *p = NULL;
	char *err = NULL;
	if (stat(path, &st) == 0)
		p = sift_plugin_load(path, &err);
	free(err);
	free(path);
	if (!p || strlen(p->name) != len || memcmp(p->name, name, len) != 0)
		return false;
	char *prefix = sift_asprintf("%s_", p->name);
	sift_config_known(cfg, prefix, sift_plugin_common_params);
	if (p->params)
		sift_config_known(cfg, prefix, p->params);
	free(prefix);
	return true;
}

/* A name "<plugin>_<rest>" of a plugin in plugin_dir that this daemon does
 * not load: its table decides. */
static void resolve_by_plugin(struct sift_config *cfg, const char *plugin_dir, const char *name)
{
	for (const char *u = strchr(name, '_'); u; u = strchr(u + 1, '_'))
		know_plugin(cfg, plugin_dir, name, (size_t)(u - name));
}

/* The optimal string alignment distance (Damerau-Levenshtein with adjacent
 * transpositions), or max + 1 when above max. */
static size_t edit_distance(const char *a, const char *b, size_t max)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 128 || lb > 128 || (la > lb ? la - lb : lb - la) > max)
		return max + 1;
	size_t rows[3][129], *pp = rows[0], *prev = rows[1], *cur = rows[2];
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (prev[j - 1] + cost < v)
				v = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    pp[j - 2] + 1 < v)
				v = pp[j - 2] + 1;
			cur[j] = v;
		}
		size_t *t = pp;
		pp = prev;
		prev = cur;
		cur = t;
	}
	return prev[lb] > max ? max + 1 : prev[lb];
}

const char *sift_config_suggest(const struct sift_config *cfg, const char *name)
{
	size_t max = strlen(name) >= 12 ? 3 : 2, best_d = max + 1;
	const char *best = NULL;
	for (size_t i = 0; i < cfg->nbuckets; i++)
		for (const struct centry *e = cfg->tab[i]; e; e = e->next) {
			if (!(e->def || e->known) || strcmp(e->name, name) == 0)
				continue;
			size_t d = edit_distance(name, e->name, max);
			if (d < best_d || (d == best_d && best && strcmp(e->name, best) < 0)) {
				best_d = d;
				best = e->name;
			}
		}
	return best;
}

/* Every plugin file in plugin_dir, for suggestions. */
static void know_all_plugins(struct sift_config *cfg, const char *plugin_dir)
{
	DIR *d = opendir(plugin_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l > 3 && strcmp(de->d_name + l - 3, ".so") == 0)
			know_plugin(cfg, plugin_dir, de->d_name, l - 3);
	}
	closedir(d);
}

int sift_config_check_names(struct sift_config *cfg, const char *plugin_dir, char **err_r)
{
	bool *used = sift_calloc(cfg->norder + 1, sizeof(*used));
	for (size_t i = 0; i < cfg->nbuckets; i++)
		for (const struct centry *e = cfg->tab[i]; e; e = e->next) {
			if (e->raw)
				mark_refs(cfg, e->raw, used);
			if (e->def)
				mark_refs(cfg, e->def, used);
		}
	size_t *bad = sift_calloc(cfg->norder + 1, sizeof(*bad));
	size_t nbad = 0;
	for (size_t i = 0; i < cfg->norder; i++) {
		const struct centry *e = cfg->order[i];
		if (used[i] || is_known(cfg, e))
			continue;
		if (plugin_dir) {
			resolve_by_plugin(cfg, plugin_dir, e->name);
			if (is_known(cfg, e))
				continue;
		}
		bad[nbad++] = i;
	}
	if (nbad && plugin_dir)
		know_all_plugins(cfg, plugin_dir);
	struct sift_buf msg = {0};
	for (size_t k = 0; k < nbad; k++) {
		const struct centry *e = cfg->order[bad[k]];
		const char *hint = sift_config_suggest(cfg, e->name);
		sift_buf_printf(&msg, "%s%s: unknown parameter \"%s\"", k ? "; " : "", e->where, e->name);
		if (hint)
			sift_buf_printf(&msg, " (did you mean \"%s\"?)", hint);
	}
	if (nbad && err_r)
		*err_r = sift_strdup(sift_buf_str(&msg));
	sift_buf_free(&msg);
	free(bad);
	free(used);
	return (int)nbad;
}

char *sift_config_locate(const struct sift_config *cfg, const char *msg)
{
	/* The first "name:" or "name " in msg that names a set parameter. */
	for (const char *p = msg; *p; p++) {
		if (!name_char((unsigned char)*p) || (p > msg && name_char((unsigned char)p[-1])))
			continue;
		const char *q = p;
		while (name_char((unsigned char)*q))
			q++;
		const struct centry *e = find_n(cfg, p, (size_t)(q - p));
		if (e && e->raw && (*q == ':' || *q == ' ') && strchr(e->name, '_')) {
			if (strstr(msg, e->where))
				break;
			char *masked = sift_mask_secrets(msg);
			char *out = sift_asprintf("%s: %s", e->where, masked);
			free(masked);
			return out;
		}
		p = q - 1;
	}
	return sift_mask_secrets(msg);
}
