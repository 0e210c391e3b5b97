/*
 * param.c - typed parameter tables (struct sift_param) and value parsers.
 *
 * sift_params_parse() fills a caller-zeroed block from a configuration: for
 * every entry `prefix + name` it takes the expanded configured value (or the
 * registered default, or the table's default), parses it by type, checks
 * bounds and choices and stores it at entry->offset. Errors name the place
 * the value came from ("file:line", "-o" or "default"), the parameter and
 * the offending value. On error everything stored so far is freed again, so
 * the block is all zero pointers and sift_params_free() is safe either way.
 *
 * Ownership: strings, lists (one allocation each) and maps stored in the
 * block belong to it and are released by sift_params_free(), which also
 * resets the pointers (calling it twice is harmless). The parsers and
 * sift_split_list() are pure and thread-safe; parse/free/print run in the
 * single thread that builds a configuration generation.
 *
 * Secrets: what is printed (-n, -p) or put in an error message is masked:
 * the whole value of a parameter whose name ends in "password", "passwd"
 * or "secret", and within any value the text after "password=", "passwd="
 * or "secret=" (up to the next ',' or white space: a secret may hold any
 * other character), as in state_store = redis:HOST:PORT,password=... .
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sift.h"

int sift_parse_bool(const char *s, int *v_r)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	if (!s)
		return -1;
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*v_r = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*v_r = 0;
			return 0;
		}
	}
	return -1;
}

/* Unsigned decimal digits at *sp into *v_r; advances *sp. */
static int parse_digits(const char **sp, long long *v_r)
{
	const char *s = *sp;
	if (!isdigit((unsigned char)*s))
		return -1;
	long long v = 0;
	for (; isdigit((unsigned char)*s); s++) {
		int d = *s - '0';
		if (v > (LLONG_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*sp = s;
	*v_r = v;
	return 0;
}

static int mul_ok(long long v, long long m, long long *r)
{
	if (v > LLONG_MAX / m)
		return -1;
	*r = v * m;
	return 0;
}

int sift_parse_time_ms(const char *s, long long *v_r)
{
	long long v;
	if (!s || parse_digits(&s, &v) < 0)
		return -1;
	long long m;
	if (*s == 0 || strcmp(s, "s") == 0)
		m = 1000;
	else if (strcmp(s, "ms") == 0)
		m = 1;
	else if (strcmp(s, "m") == 0)
		m = 60 * 1000LL;
	else if (strcmp(s, "h") == 0)
		m = 3600 * 1000LL;
	else if (strcmp(s, "d") == 0)
		m = 86400 * 1000LL;
	else if (strcmp(s, "w") == 0)
		m = 7 * 86400 * 1000LL;
	else
		return -1;
	return mul_ok(v, m, v_r);
}

int sift_parse_size(const char *s, long long *v_r)
{
	long long v;
	if (!s || parse_digits(&s, &v) < 0)
		return -1;
	long long m;
	if (*s == 0)
		m = 1;
	else if (s[1] != 0)
		return -1;
	else if (*s == 'k' || *s == 'K')
		m = 1024;
	else if (*s == 'm' || *s == 'M')
		m = 1024 * 1024;
	else if (*s == 'g' || *s == 'G')
		m = 1024 * 1024 * 1024;
	else
		return -1;
	return mul_ok(v, m, v_r);
}

static int parse_int(const char *s, long long *v_r)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || end == s)
		return -1;
	*v_r = v;
	return 0;
}

static bool list_sep(char c)
{
	return c == ',' || isspace((unsigned char)c);
}

char **sift_split_list(const char *s)
{
	if (!s)
		s = "";
	size_t n = 0, chars = 0;
	for (const char *p = s; *p;) {
		while (*p && list_sep(*p))
			p++;
		if (!*p)
			break;
		const char *b = p;
		while (*p && !list_sep(*p))
			p++;
		n++;
		chars += (size_t)(p - b) + 1;
	}
	char **v = sift_malloc((n + 1) * sizeof(char *) + chars);
	char *out = (char *)(v + n + 1);
	size_t i = 0;
	for (const char *p = s; *p;) {
		while (*p && list_sep(*p))
			p++;
		if (!*p)
			break;
		const char *b = p;
		while (*p && !list_sep(*p))
			p++;
		size_t l = (size_t)(p - b);
		memcpy(out, b, l);
		out[l] = 0;
		v[i++] = out;
		out += l + 1;
	}
	v[i] = NULL;
	return v;
}

/* "90000" ms -> "90s", "1048576" -> "1m": for messages. */
static void fmt_time(char *buf, size_t n, long long ms)
{
	static const struct {
		long long m;
		const char *u;
	} units[] = {
		{7 * 86400000LL, "w"}, {86400000LL, "d"}, {3600000LL, "h"}, {60000LL, "m"}, {1000LL, "s"}};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (ms != 0 && ms % units[i].m == 0) {
			snprintf(buf, n, "%lld%s", ms / units[i].m, units[i].u);
			return;
		}
	snprintf(buf, n, "%lldms", ms);
}

static void fmt_size(char *buf, size_t n, long long v)
{
	if (v != 0 && v % (1LL << 30) == 0)
		snprintf(buf, n, "%lldg", v >> 30);
	else if (v != 0 && v % (1LL << 20) == 0)
		snprintf(buf, n, "%lldm", v >> 20);
	else if (v != 0 && v % 1024 == 0)
		snprintf(buf, n, "%lldk", v >> 10);
	else
		snprintf(buf, n, "%lld", v);
}

static void fmt_value(char *buf, size_t n, enum sift_param_type t, long long v)
{
	if (t == SIFT_P_TIME)
		fmt_time(buf, n, v);
	else if (t == SIFT_P_SIZE)
		fmt_size(buf, n, v);
	else
		snprintf(buf, n, "%lld", v);
}

/* Index of value among the |-separated choices, or -1. */
static int find_choice(const char *choices, const char *value)
{
	if (!choices)
		return -1;
	size_t vl = strlen(value);
	int idx = 0;
	for (const char *p = choices;; idx++) {
		const char *bar = strchr(p, '|');
		size_t l = bar ? (size_t)(bar - p) : strlen(p);
		if (l == vl && strncasecmp(p, value, l) == 0)
			return idx;
		if (!bar)
			return -1;
		p = bar + 1;
	}
}

/* ---- secrets -------------------------------------------------------------- */

#define SECRET_MASK "********"

static bool secret_key_at(const char *s, const char *p, size_t *klen_r)
{
	static const char *const keys[] = {"password=", "passwd=", "secret="};
	if (p > s && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
		return false;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strncasecmp(p, keys[i], strlen(keys[i])) == 0) {
			*klen_r = strlen(keys[i]);
			return true;
		}
	return false;
}

char *sift_mask_secrets(const char *text)
{
	struct sift_buf b = {0};
	for (const char *p = text; *p;) {
		size_t kl;
		if (secret_key_at(text, p, &kl)) {
			sift_buf_add(&b, p, kl);
			p += kl;
			if (*p == '"' || *p == '\'') { /* a quoted value: up to its quote */
				const char *q = strchr(p + 1, *p);
				sift_buf_add(&b, p, 1);
				sift_buf_adds(&b, SECRET_MASK);
				p = q ? q : p + strlen(p);
				continue;
			}
			/* up to a comma or white space: a secret may hold any
			 * other character (a redis: password ends only at ',') */
			size_t vl = strcspn(p, ", \t\r\n");
			if (vl)
				sift_buf_adds(&b, SECRET_MASK);
			p += vl;
		} else
			sift_buf_add(&b, p++, 1);
	}
	sift_buf_str(&b);
	if (!b.data)
		return sift_strdup("");
	return b.data;
}

bool sift_param_secret(const char *name)
{
	size_t l = strlen(name);
	static const char *const ends[] = {"password", "passwd", "secret"};
	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		size_t el = strlen(ends[i]);
		if (l >= el && strcasecmp(name + l - el, ends[i]) == 0)
			return true;
	}
	return false;
}

char *sift_param_shown(const char *name, const char *value)
{
	if (sift_param_secret(name))
		return sift_strdup(*value ? SECRET_MASK : "");
	return sift_mask_secrets(value);
}

static char *bad_value(const char *where, const char *name, const char *raw, const char *why)
{
	char *value = sift_param_shown(name, raw);
	int vl = (int)strlen(value);
	/* why may quote the value too (a map's error) */
	char *w = sift_param_secret(name) ? sift_strdup("bad value") : sift_mask_secrets(why);
	char *msg = sift_asprintf("%s: %s = \"%.*s%s\": %s", where, name, vl > 100 ? 100 : vl, value,
				  vl > 100 ? "..." : "", w);
	free(w);
	free(value);
	return msg;
}

static void free_one(const struct sift_param *p, void *block)
{
	void *slot = (char *)block + p->offset;
	switch (p->type) {
	case SIFT_P_STRING:
	case SIFT_P_LIST: {
		void *v;
		memcpy(&v, slot, sizeof(v));
		free(v);
		v = NULL;
		memcpy(slot, &v, sizeof(v));
		break;
	}
	case SIFT_P_MAP: {
		struct sift_map *m;
		memcpy(&m, slot, sizeof(m));
		sift_map_free(m);
		m = NULL;
		memcpy(slot, &m, sizeof(m));
		break;
	}
	default:
		break;
	}
}

void sift_params_free(const struct sift_param *tab, void *block)
{
	if (!tab || !block)
		return;
	for (; tab->name; tab++)
		free_one(tab, block);
}

/* Parses one value and stores it. Returns 0, or -1 with *err_r. */
static int parse_one(const struct sift_param *p, const char *name, const char *value, const char *where,
		     void *block, char **err_r)
{
	void *slot = (char *)block + p->offset;
	long long v = 0;
	switch (p->type) {
	case SIFT_P_BOOL: {
		int b;
		if (sift_parse_bool(value, &b) < 0) {
			*err_r = bad_value(where, name, value, "expected yes or no");
			return -1;
		}
		memcpy(slot, &b, sizeof(b));
		return 0;
	}
	case SIFT_P_INT:
		if (parse_int(value, &v) < 0) {
			*err_r = bad_value(where, name, value, "expected an integer");
			return -1;
		}
		break;
	case SIFT_P_TIME:
		if (sift_parse_time_ms(value, &v) < 0) {
			*err_r = bad_value(where, name, value,
					   "expected a time: a number with an optional unit "
					   "ms, s (default), m, h, d or w");
			return -1;
		}
		break;
	case SIFT_P_SIZE:
		if (sift_parse_size(value, &v) < 0) {
			*err_r = bad_value(where, name, value,
					   "expected a size: bytes, or a number with unit k, m or g");
			return -1;
		}
		break;
	case SIFT_P_STRING: {
		const char *s = sift_strdup(value);
		memcpy(slot, &s, sizeof(s));
		return 0;
	}
	case SIFT_P_LIST: {
		char **l = sift_split_list(value);
		memcpy(slot, &l, sizeof(l));
		return 0;
	}
	case SIFT_P_MAP: {
		struct sift_map *m = NULL;
		if (*value) {
			char *merr = NULL;
			m = sift_map_open(value, &merr);
			if (!m) {
				*err_r = bad_value(where, name, value, merr ? merr : "cannot open map");
				free(merr);
				return -1;
			}
		}
		memcpy(slot, &m, sizeof(m));
		return 0;
	}
	case SIFT_P_ENUM: {
		int idx = find_choice(p->choices, value);
		if (idx < 0) {
			char *why = sift_asprintf("expected one of %s", p->choices ? p->choices : "(none)");
			*err_r = bad_value(where, name, value, why);
			free(why);
			return -1;
		}
		memcpy(slot, &idx, sizeof(idx));
		return 0;
	}
	case SIFT_P_RETIRED:
		return 0;
	default:
		*err_r = sift_asprintf("%s: parameter table entry has unknown type %d", name, (int)p->type);
		return -1;
	}

	/* INT, TIME, SIZE: bounds. */
	if ((p->min || p->max) && (v < p->min || v > p->max)) {
		char lo[32], hi[32], why[96];
		fmt_value(lo, sizeof(lo), p->type, p->min);
		fmt_value(hi, sizeof(hi), p->type, p->max);
		snprintf(why, sizeof(why), "out of range (%s..%s)", lo, hi);
		*err_r = bad_value(where, name, value, why);
		return -1;
	}
	memcpy(slot, &v, sizeof(v));
	return 0;
}

/* The effective expanded value of one parameter (malloc'd) and where it was
 * set, or NULL with *err_r. */
static char *effective(const struct sift_config *cfg, const char *name, const struct sift_param *p,
		       const char **where_r, char **err_r)
{
	const char *where = NULL;
	if (!sift_config_raw(cfg, name, &where))
		where = "default";
	*where_r = where;
	char *err = NULL;
	char *v = sift_config_get(cfg, name, &err);
	if (!v && !err) { /* table not registered: use its default */
		char *e2 = NULL;
		v = sift_config_expand(cfg, p->def ? p->def : "", &e2);
		if (!v)
			err = sift_asprintf("default: %s: %s", name, e2 ? e2 : "bad default");
		free(e2);
	}
	if (!v) {
		if (err_r)
			*err_r = err;
		else
			free(err);
	}
	return v;
}

int sift_params_parse(const struct sift_config *cfg, const char *prefix, const struct sift_param *tab,
		      void *block, char **err_r)
{
	if (!tab)
		return 0;
	for (const struct sift_param *p = tab; p->name; p++) {
		char *name = sift_asprintf("%s%s", prefix ? prefix : "", p->name);
		const char *where;
		char *err = NULL;
		char *value = effective(cfg, name, p, &where, &err);
		int rc = value ? parse_one(p, name, value, where, block, &err) : -1;
		if (p->type == SIFT_P_RETIRED && strcmp(where, "default") != 0)
			sift_log(LOG_WARNING, "%s: %s is no longer used and is ignored: %s", where, name,
				 p->doc ? p->doc : "");
		free(value);
		free(name);
		if (rc < 0) {
			/* undo what was stored, so the block holds no pointers */
			for (const struct sift_param *q = tab; q < p; q++)
				free_one(q, block);
			if (err_r)
				*err_r = err ? err : sift_strdup("bad parameter");
			else
				free(err);
			return -1;
		}
	}
	return 0;
}

/* Whether parameter p holds the same value in blocks a and b. */
static bool same_value(const struct sift_param *p, const void *a, const void *b)
{
	const char *sa = (const char *)a + p->offset, *sb = (const char *)b + p->offset;
	switch (p->type) {
	case SIFT_P_BOOL:
	case SIFT_P_ENUM:
		return memcmp(sa, sb, sizeof(int)) == 0;
	case SIFT_P_INT:
	case SIFT_P_TIME:
	case SIFT_P_SIZE:
		return memcmp(sa, sb, sizeof(long long)) == 0;
	case SIFT_P_STRING: {
		const char *x, *y;
		memcpy(&x, sa, sizeof(x));
		memcpy(&y, sb, sizeof(y));
		return strcmp(x ? x : "", y ? y : "") == 0;
	}
	case SIFT_P_LIST: {
		char **x, **y;
		memcpy(&x, sa, sizeof(x));
		memcpy(&y, sb, sizeof(y));
		for (; x && y && *x && *y; x++, y++)
			if (strcmp(*x, *y) != 0)
				return false;
		return !(x && *x) && !(y && *y);
	}
	default: /* maps, retired: not compared */
		return true;
	}
}

int sift_params_restart_only(const char *daemon, const struct sift_param *tab, const void *running,
			     const void *loaded, const char *const *live)
{
	int n = 0;
	for (const struct sift_param *p = tab; p && p->name; p++) {
		bool is_live = false;
		for (const char *const *l = live; l && *l; l++)
			is_live |= strcmp(*l, p->name) == 0;
		if (is_live || same_value(p, running, loaded))
			continue;
		sift_log(LOG_WARNING,
			 "%s changed: it takes effect when %s restarts; the reload keeps the running value",
			 p->name, daemon);
		n++;
	}
	return n;
}

void sift_params_print(FILE *out, const struct sift_config *cfg, const char *prefix,
		       const struct sift_param *tab, bool all)
{
	if (!tab)
		return;
	for (const struct sift_param *p = tab; p->name; p++) {
		char *name = sift_asprintf("%s%s", prefix ? prefix : "", p->name);
		const char *raw = sift_config_raw(cfg, name, NULL);
		if (all || raw) {
			const char *where;
			char *value = effective(cfg, name, p, &where, NULL);
			char *v = sift_param_shown(name, value ? value : raw ? raw : p->def ? p->def : "");
			fprintf(out, "%s =%s%s\n", name, *v ? " " : "", v);
			free(v);
			free(value);
		}
		free(name);
	}
}
