/*
 * spf_eval.c - a compact RFC 7208 SPF evaluator.
 *
 * check_host() as RFC 7208 §4-§7 defines it:
 *   - initial processing (§4.3): a malformed or single-label domain, a
 *     domain literal or an empty identity give "none" without a lookup;
 *   - record selection (§4.5): TXT only; records starting "v=spf1" followed
 *     by a space or the end, case-insensitively; two or more: permerror;
 *   - the whole record is parsed and checked before any term is evaluated
 *     (§4.6): ASCII 0x20-0x7e only, terms separated by spaces, the ABNF of
 *     every mechanism and modifier (domain-spec with its domain-end,
 *     macro syntax, dual CIDR lengths without leading zeros, /0 allowed),
 *     redirect= and exp= at most once; any error is permerror;
 *   - mechanisms all, include, a, mx, ptr, ip4, ip6, exists (§5) and the
 *     modifiers redirect= and exp= (§6); unknown modifiers are ignored
 *     after their macro-string is checked;
 *   - limits (§4.6.4): max_lookups DNS-querying terms (include, a, mx, ptr,
 *     exists, redirect), max_void terms whose lookup came back NXDOMAIN or
 *     empty, max_names MX names (more is permerror) and PTR names (the rest
 *     are ignored); %{p} is looked up once per evaluation - one PTR
 *     query and at most max_names address queries, however many %{p} the
 *     records hold - and is not counted as a DNS-querying term (its term
 *     is); an expansion stops at MAX_EXPAND, before any further macro; the
 *     overall deadline makes any later lookup a temperror;
 *   - macros (§7): s l o d i p h v, plus c r t in explanations; digit and
 *     "r" transformers, delimiters, URL escaping for upper-case letters;
 *     expanded domains longer than 253 octets lose labels on the left;
 *   - explanations (§6.2): on "fail", the TXT record named by exp= of the
 *     record that gave the result (not of included records), expanded; a
 *     lookup error, several records, non-ASCII text or a syntax error give
 *     the configured default explanation instead.
 * %{i} of an IPv6 client is written with upper-case nibbles, as the
 * openspf test suite expects (DNS names are case-insensitive).
 *
 * Threading: no globals; everything lives in one struct eval per call.
 * Memory: the record text is copied per check_host() level and freed on the
 * way out; the expansion buffers are bounded (MAX_EXPAND).
 */
#include "spf_eval.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define T_A    1
#define T_PTR  12
#define T_MX   15
#define T_TXT  16
#define T_AAAA 28

#define MAX_EXPAND 8192 /* bytes of one macro expansion */
#define MAX_DEPTH  32	/* include/redirect nesting (lookup limit stops earlier) */

const char *const spf_result_names[SPF_RESULT_MAX] = {
	"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror",
};

long long spf_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int spf_parse_ip(const char *s, int *family_r, unsigned char addr_r[16])
{
	memset(addr_r, 0, 16);
	if (!s)
		return -1;
	if (inet_pton(AF_INET, s, addr_r) == 1) {
		*family_r = AF_INET;
		return 0;
	}
	unsigned char a6[16];
	if (inet_pton(AF_INET6, s, a6) != 1)
		return -1;
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(a6, mapped, 12) == 0) {
		memcpy(addr_r, a6 + 12, 4);
		*family_r = AF_INET;
		return 0;
	}
	memcpy(addr_r, a6, 16);
	*family_r = AF_INET6;
	return 0;
}

void spf_res_free(struct spf_res *res)
{
	free(res->explanation);
	res->explanation = NULL;
}

/* ---- small bounded string buffer ----------------------------------------- */

struct sb {
	char *p;
	size_t len, cap;
	bool over; /* exceeded MAX_EXPAND */
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
	if (b->over)
		return;
	if (b->len + n + 1 > MAX_EXPAND) {
		b->over = true;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->over = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}
static void sb_adds(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}
static void sb_addc(struct sb *b, char c)
{
	sb_add(b, &c, 1);
}
static const char *sb_str(struct sb *b)
{
	return b->p ? b->p : "";
}
static void sb_reset(struct sb *b)
{
	b->len = 0;
	b->over = false;
	if (b->p)
		b->p[0] = 0;
}
static void sb_free(struct sb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- evaluation state ------------------------------------------------------ */

enum { E_OK = 0, E_TEMP = -1, E_PERM = -2 };

struct eval {
	const struct spf_req *q;
	struct spf_res *res;
	const char *sender; /* effective sender */
	const char *local;  /* %{l} */
	size_t local_len;
	const char *sdomain; /* %{o} */
	const char *helo;    /* %{h} */
	char ip_dots[80];    /* %{i} */
	char ip_text[64];    /* %{c} */
	int lookups, voids;
	char problem[160];
	/* %{p}: the client's PTR names (p_n < 0: none) and, per name, 1
	 * validated, 0 not, -1 not yet asked. Looked up at the first %{p}
	 * and kept for the whole evaluation, so that any number of %{p}
	 * costs one PTR query and at most max_names address queries. */
	bool p_looked;
	int p_n;
	char (*p_names)[256];
	signed char *p_valid;
};

static void problem(struct eval *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct eval *e, const char *fmt, ...)
{
	if (e->problem[0])
		return; /* keep the first one */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->problem, sizeof(e->problem), fmt, ap);
	va_end(ap);
}

/* Answer used when the deadline passed or the resolver gave nothing. */
static const struct sift_dns_result tempfail_result = {.status = SIFT_DNS_TEMPFAIL};

/* One DNS query bounded by the deadline; never NULL; release with dfree(). */
static struct sift_dns_result *dnsq(struct eval *e, const char *name, int type)
{
	const struct spf_req *q = e->q;
	long t = q->dns_timeout_ms;
	struct sift_dns_result *r = NULL;
	if (q->deadline_ms) {
		long long left = q->deadline_ms - spf_now_ms();
		if (left <= 0)
			goto tempfail;
		if (t <= 0 || t > left)
			t = (long)left;
	}
	r = q->dns(q->dns_arg, name, type, t);
	if (r)
		return r;
tempfail:
	return (struct sift_dns_result *)&tempfail_result;
}

/* Frees a result of dnsq(). */
static void dfree(struct sift_dns_result *r)
{
	if (r != &tempfail_result)
		free(r);
}

/* Decodes an uncompressed wire name; 0 or -1 (malformed, or a label with a
 * dot or a control character, which no host name has). */
static int wire_name(const unsigned char *w, size_t len, char *out, size_t n)
{
	size_t o = 0, k = 0;
	for (;;) {
		if (o >= len)
			return -1;
		size_t l = w[o++];
		if (l == 0)
			break;
		if (l > 63 || l > len - o)
			return -1;
		if (k && k + 1 < n)
			out[k++] = '.';
		for (size_t i = 0; i < l; i++) {
			unsigned char c = w[o + i];
			if (c <= 0x20 || c >= 0x7f || c == '.')
				return -1;
			if (k + 1 >= n)
				return -1;
			out[k++] = (char)c;
		}
		o += l;
	}
	out[k] = 0;
	return 0;
}

static bool addr_match(const struct eval *e, const unsigned char *a, int prefix)
{
	const unsigned char *c = e->q->addr;
	int bytes = prefix / 8, bits = prefix % 8;
	if (memcmp(a, c, (size_t)bytes) != 0)
		return false;
	if (bits) {
		unsigned char m = (unsigned char)(0xff << (8 - bits));
		if ((a[bytes] & m) != (c[bytes] & m))
			return false;
	}
	return true;
}

static bool is_void(const struct sift_dns_result *r)
{
	return r->status == SIFT_DNS_NXDOMAIN || r->status == SIFT_DNS_NODATA;
}

/* Counts a void lookup; E_PERM past the limit. */
static int count_void(struct eval *e, const char *name)
{
	if (++e->voids > e->q->max_void) {
		problem(e, "void lookup limit of %d exceeded at %s", e->q->max_void, name);
		return E_PERM;
	}
	return E_OK;
}

static int count_lookup(struct eval *e)
{
	if (++e->lookups > e->q->max_lookups) {
		problem(e, "more than %d DNS-querying terms", e->q->max_lookups);
		return E_PERM;
	}
	return E_OK;
}

/* ---- names and syntax ------------------------------------------------------ */

static bool name_ok(const char *d)
{
	size_t len = strlen(d);
	if (len && d[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || d[0] == '[')
		return false;
	size_t label = 0, labels = 0;
	for (size_t i = 0; i < len; i++) {
		if (d[i] == '.') {
			if (label == 0)
				return false;
			labels++;
			label = 0;
		} else if (++label > 63) {
			return false;
		}
	}
	if (label == 0)
		return false;
	return labels >= 1; /* at least two labels */
}

static bool is_delim(char c)
{
	return strchr(".-+,/_=", c) != NULL && c;
}

/* Checks a macro-string (RFC 7208 §7.1). explain: SP and c r t allowed.
 * *ends_macro: the text ends with a macro-expand. */
static bool macro_ok(const char *s, size_t n, bool explain, bool *ends_macro)
{
	size_t i = 0;
	bool last_macro = false;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c != '%') {
			if (!(c >= 0x21 && c <= 0x7e) && !(explain && c == ' '))
				return false;
			last_macro = false;
			i++;
			continue;
		}
		if (i + 1 >= n)
			return false;
		char m = s[i + 1];
		if (m == '%' || m == '_' || m == '-') {
			i += 2;
			last_macro = true;
			continue;
		}
		if (m != '{' || i + 2 >= n)
			return false;
		char l = (char)tolower((unsigned char)s[i + 2]);
		if (!strchr("slodiphv", l) && !(explain && strchr("crt", l)))
			return false;
		size_t j = i + 3;
		while (j < n && isdigit((unsigned char)s[j]))
			j++;
		if (j < n && (s[j] == 'r' || s[j] == 'R'))
			j++;
		while (j < n && is_delim(s[j]))
			j++;
		if (j >= n || s[j] != '}')
			return false;
		i = j + 1;
		last_macro = true;
	}
	if (ends_macro)
		*ends_macro = last_macro;
	return true;
}

static bool toplabel_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] == '-' || s[n - 1] == '-')
		return false;
	bool alpha = false, dash = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isalpha(c))
			alpha = true;
		else if (c == '-')
			dash = true;
		else if (!isdigit(c))
			return false;
	}
	return alpha || dash;
}

/* domain-spec = macro-string domain-end (§7.1). */
static bool domain_spec_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	if (s[n - 1] == '.')
		n--;
	bool ends_macro = false;
	if (n == 0 || !macro_ok(s, n, false, &ends_macro))
		return false;
	if (ends_macro)
		return true;
	size_t i = n;
	while (i > 0 && s[i - 1] != '.')
		i--;
	if (i == 0)
		return false;
	return toplabel_ok(s + i, n - i);
}

/* "0" / %x31-39 0*DIGIT, value <= max; -1 if bad. */
static int parse_cidr(const char *s, size_t n, int max)
{
	if (n == 0 || n > 3)
		return -1;
	if (s[0] == '0' && n > 1)
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v > max ? -1 : v;
}

static bool parse_ip4(const char *s, size_t n, unsigned char out[4])
{
	int part = 0;
	size_t i = 0;
	while (part < 4) {
		size_t st = i;
		int v = 0;
		while (i < n && isdigit((unsigned char)s[i]) && i - st < 3)
			v = v * 10 + (s[i++] - '0');
		if (i == st || v > 255 || (i - st > 1 && s[st] == '0'))
			return false;
		out[part++] = (unsigned char)v;
		if (part < 4) {
			if (i >= n || s[i] != '.')
				return false;
			i++;
		}
	}
	return i == n;
}

/* ---- records --------------------------------------------------------------- */

enum mtype { M_ALL, M_INCLUDE, M_A, M_MX, M_PTR, M_IP4, M_IP6, M_EXISTS };

struct term {
	enum mtype type;
	enum spf_result qual;
	const char *spec; /* domain-spec or NULL */
	size_t spec_len;
	int cidr4, cidr6;
	unsigned char net[16];
	const char *text;
	size_t text_len;
};

struct record {
	char *buf;
	struct term *t;
	size_t n;
	const char *redirect, *exp;
	size_t redirect_len, exp_len;
};

static void record_free(struct record *r)
{
	free(r->buf);
	free(r->t);
	memset(r, 0, sizeof(*r));
}

static bool name_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

/* Parses one mechanism term; false on a syntax error. */
static bool parse_mech(const char *s, size_t n, struct term *t)
{
	static const struct {
		const char *name;
		enum mtype type;
	} names[] = {{"all", M_ALL}, {"include", M_INCLUDE}, {"a", M_A},     {"mx", M_MX},
		     {"ptr", M_PTR}, {"ip4", M_IP4},	     {"ip6", M_IP6}, {"exists", M_EXISTS}};
	memset(t, 0, sizeof(*t));
	t->text = s;
	t->text_len = n;
	t->cidr4 = t->cidr6 = -1;
	t->qual = SPF_PASS;
	size_t i = 0;
	switch (s[0]) {
	case '+':
		i = 1;
		break;
	case '-':
		t->qual = SPF_FAIL;
		i = 1;
		break;
	case '~':
		t->qual = SPF_SOFTFAIL;
		i = 1;
		break;
	case '?':
		t->qual = SPF_NEUTRAL;
		i = 1;
		break;
	default:
		break;
	}
	size_t ns = i;
	while (i < n && isalnum((unsigned char)s[i]))
		i++;
	size_t nl = i - ns;
	bool found = false;
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
		if (strlen(names[k].name) == nl && strncasecmp(names[k].name, s + ns, nl) == 0) {
			t->type = names[k].type;
			found = true;
		}
	if (!found)
		return false;
	const char *r = s + i;
	size_t rl = n - i;
	switch (t->type) {
	case M_ALL:
		return rl == 0;
	case M_INCLUDE:
	case M_EXISTS:
		if (rl < 2 || r[0] != ':')
			return false;
		t->spec = r + 1;
		t->spec_len = rl - 1;
		return domain_spec_ok(t->spec, t->spec_len);
	case M_PTR:
		if (rl == 0)
			return true;
		if (r[0] != ':')
			return false;
		t->spec = r + 1;
		t->spec_len = rl - 1;
		return domain_spec_ok(t->spec, t->spec_len);
	case M_A:
	case M_MX: {
		/* Dual CIDR at the end: "/N", "//M" or "/N//M". */
		size_t e = rl;
		size_t d = e;
		while (d > 0 && isdigit((unsigned char)r[d - 1]))
			d--;
		if (d < e && d > 0 && r[d - 1] == '/') {
			if (d > 1 && r[d - 2] == '/') {
				if ((t->cidr6 = parse_cidr(r + d, e - d, 128)) < 0)
					return false;
				e = d - 2;
				d = e;
				while (d > 0 && isdigit((unsigned char)r[d - 1]))
					d--;
				if (d < e && d > 0 && r[d - 1] == '/') {
					if ((t->cidr4 = parse_cidr(r + d, e - d, 32)) < 0)
						return false;
					e = d - 1;
				}
			} else {
				if ((t->cidr4 = parse_cidr(r + d, e - d, 32)) < 0)
					return false;
				e = d - 1;
			}
		}
		if (e == 0)
			return true;
		if (r[0] != ':')
			return false;
		t->spec = r + 1;
		t->spec_len = e - 1;
		return domain_spec_ok(t->spec, t->spec_len);
	}
	case M_IP4:
	case M_IP6: {
		if (rl < 2 || r[0] != ':')
			return false;
		const char *a = r + 1;
		size_t al = rl - 1;
		const char *slash = memchr(a, '/', al);
		size_t addr_len = slash ? (size_t)(slash - a) : al;
		int max = t->type == M_IP4 ? 32 : 128;
		int c = max;
		if (slash && (c = parse_cidr(slash + 1, al - addr_len - 1, max)) < 0)
			return false;
		if (t->type == M_IP4) {
			t->cidr4 = c;
			return parse_ip4(a, addr_len, t->net);
		}
		t->cidr6 = c;
		char tmp[64];
		if (addr_len == 0 || addr_len >= sizeof(tmp))
			return false;
		memcpy(tmp, a, addr_len);
		tmp[addr_len] = 0;
		return inet_pton(AF_INET6, tmp, t->net) == 1;
	}
	}
	return false;
}

/* Parses and checks a whole record (text of len bytes, starting "v=spf1");
 * E_OK or E_PERM with the problem noted. */
static int parse_record(struct eval *e, const char *text, size_t len, struct record *rec)
{
	memset(rec, 0, sizeof(*rec));
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c < 0x20 || c > 0x7e) {
			problem(e, "invalid character 0x%02x in record", c);
			return E_PERM;
		}
	}
	rec->buf = malloc(len + 1);
	rec->t = calloc(len / 2 + 1, sizeof(struct term));
	if (!rec->buf || !rec->t) {
		problem(e, "out of memory");
		return E_TEMP;
	}
	memcpy(rec->buf, text, len);
	rec->buf[len] = 0;
	size_t i = 6; /* after "v=spf1" */
	while (i < len) {
		while (i < len && rec->buf[i] == ' ')
			i++;
		if (i >= len)
			break;
		size_t st = i;
		while (i < len && rec->buf[i] != ' ')
			i++;
		const char *s = rec->buf + st;
		size_t n = i - st;
		/* Modifier: name "=" ... with name = ALPHA *(ALPHA/DIGIT/-/_/.) */
		size_t k = 0;
		if (isalpha((unsigned char)s[0])) {
			k = 1;
			while (k < n && name_char(s[k]))
				k++;
		}
		if (k > 0 && k < n && s[k] == '=') {
			const char *v = s + k + 1;
			size_t vl = n - k - 1;
			if (k == 8 && strncasecmp(s, "redirect", 8) == 0) {
				if (rec->redirect) {
					problem(e, "redirect= twice");
					return E_PERM;
				}
				if (!domain_spec_ok(v, vl)) {
					problem(e, "bad redirect= domain: %.*s", (int)(vl > 60 ? 60 : vl), v);
					return E_PERM;
				}
				rec->redirect = v;
				rec->redirect_len = vl;
			} else if (k == 3 && strncasecmp(s, "exp", 3) == 0) {
				if (rec->exp) {
					problem(e, "exp= twice");
					return E_PERM;
				}
				if (!domain_spec_ok(v, vl)) {
					problem(e, "bad exp= domain: %.*s", (int)(vl > 60 ? 60 : vl), v);
					return E_PERM;
				}
				rec->exp = v;
				rec->exp_len = vl;
			} else if (!macro_ok(v, vl, true, NULL) || memchr(v, ' ', vl)) {
				problem(e, "bad modifier: %.*s", (int)(n > 60 ? 60 : n), s);
				return E_PERM;
			}
			continue;
		}
		if (!parse_mech(s, n, &rec->t[rec->n])) {
			problem(e, "bad term: %.*s", (int)(n > 60 ? 60 : n), s);
			return E_PERM;
		}
		rec->n++;
	}
	return E_OK;
}

/* Fetches the SPF record of domain. E_OK with *rec parsed, 1 = no record,
 * E_TEMP, E_PERM. */
static int fetch_record(struct eval *e, const char *domain, struct record *rec)
{
	memset(rec, 0, sizeof(*rec));
	struct sift_dns_result *r = dnsq(e, domain, T_TXT);
	int rc = 1;
	if (r->status == SIFT_DNS_TEMPFAIL) {
		problem(e, "DNS error looking up TXT %s", domain);
		rc = E_TEMP;
	} else if (r->status == SIFT_DNS_OK) {
		size_t found = 0, which = 0;
		for (size_t i = 0; i < r->count; i++) {
			const char *t = (const char *)r->rr[i];
			if (r->len[i] >= 6 && strncasecmp(t, "v=spf1", 6) == 0 &&
			    (r->len[i] == 6 || t[6] == ' ')) {
				found++;
				which = i;
			}
		}
		if (found > 1) {
			problem(e, "%zu SPF records for %s", found, domain);
			rc = E_PERM;
		} else if (found == 1) {
			rc = parse_record(e, (const char *)r->rr[which], r->len[which], rec);
			if (rc != E_OK)
				record_free(rec);
		}
	}
	dfree(r);
	return rc;
}

/* ---- macros ------------------------------------------------------------------ */

static void addr_text(const struct eval *e, char *out, size_t n);

/* Validated host names of the client (for ptr and %{p}): calls fn for up to
 * max_names PTR names whose forward lookup includes the client address. */
static bool validate_name(struct eval *e, const char *name)
{
	struct sift_dns_result *r = dnsq(e, name, e->q->family == AF_INET ? T_A : T_AAAA);
	bool ok = false;
	size_t alen = e->q->family == AF_INET ? 4 : 16;
	if (r->status == SIFT_DNS_OK)
		for (size_t i = 0; i < r->count && !ok; i++)
			if (r->len[i] == alen && memcmp(r->rr[i], e->q->addr, alen) == 0)
				ok = true;
	dfree(r);
	return ok;
}

static void reverse_name(const struct eval *e, char *out, size_t n)
{
	const unsigned char *a = e->q->addr;
	if (e->q->family == AF_INET) {
		snprintf(out, n, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
		return;
	}
	size_t k = 0;
	for (int i = 15; i >= 0; i--) {
		k += (size_t)snprintf(out + k, n - k, "%x.%x.", a[i] & 15, a[i] >> 4);
	}
	snprintf(out + k, n - k, "ip6.arpa");
}

/* Domain match: name equals dom or is a subdomain of it (case-insensitive). */
static bool dom_match(const char *name, const char *dom)
{
	size_t nl = strlen(name), dl = strlen(dom);
	if (nl && name[nl - 1] == '.')
		nl--;
	if (dl && dom[dl - 1] == '.')
		dl--;
	if (nl == dl)
		return strncasecmp(name, dom, nl) == 0;
	return nl > dl && name[nl - dl - 1] == '.' && strncasecmp(name + nl - dl, dom, dl) == 0;
}

/* PTR names of the client, up to max_names, in *names (one malloc'd block
 * of 256-byte slots). Returns the count, or -1 on a DNS error, -2 void. */
static int ptr_names(struct eval *e, char (**names)[256])
{
	char rev[128];
	reverse_name(e, rev, sizeof(rev));
	struct sift_dns_result *r = dnsq(e, rev, T_PTR);
	*names = NULL;
	if (r->status != SIFT_DNS_OK) {
		int rc = is_void(r) ? -2 : -1;
		dfree(r);
		return rc;
	}
	size_t max = r->count < (size_t)e->q->max_names ? r->count : (size_t)e->q->max_names;
	*names = calloc(max + 1, 256);
	if (!*names) {
		dfree(r);
		return -1;
	}
	int n = 0;
	for (size_t i = 0; i < max; i++)
		if (wire_name(r->rr[i], r->len[i], (*names)[n], 256) == 0)
			n++;
	dfree(r);
	return n;
}

/* %{p}: a validated name, preferring domain or its subdomains. The PTR
 * names and their validation are looked up once per evaluation (struct
 * eval); later %{p}, for this or another domain, use what was found. */
static void macro_p(struct eval *e, const char *domain, struct sb *out)
{
	if (!e->p_looked) {
		e->p_looked = true;
		e->p_n = ptr_names(e, &e->p_names);
		if (e->p_n > 0) {
			e->p_valid = malloc((size_t)e->p_n);
			if (e->p_valid)
				memset(e->p_valid, -1, (size_t)e->p_n);
			else
				e->p_n = 0;
		}
	}
	const char *best = NULL;
	for (int pass = 0; pass < 2 && !best; pass++)
		for (int i = 0; i < e->p_n && !best; i++) {
			if ((pass == 0) != dom_match(e->p_names[i], domain))
				continue;
			if (e->p_valid[i] < 0)
				e->p_valid[i] = validate_name(e, e->p_names[i]) ? 1 : 0;
			if (e->p_valid[i])
				best = e->p_names[i];
		}
	sb_adds(out, best ? best : "unknown");
}

/* Expands one macro value with transformers into out. */
static void transform(const char *val, size_t vl, int digits, bool rev, const char *delims, size_t dl,
		      bool escape, struct sb *out)
{
	/* Split into parts on the delimiters. */
	const char *parts[256];
	size_t plen[256];
	size_t np = 0, st = 0;
	for (size_t i = 0; i <= vl; i++) {
		bool d = i == vl;
		if (!d) {
			if (dl == 0)
				d = val[i] == '.';
			else
				d = memchr(delims, val[i], dl) != NULL;
		}
		if (d) {
			if (np < 256) {
				parts[np] = val + st;
				plen[np] = i - st;
				np++;
			}
			st = i + 1;
		}
	}
	if (rev)
		for (size_t i = 0; i < np / 2; i++) {
			const char *tp = parts[i];
			size_t tl = plen[i];
			parts[i] = parts[np - 1 - i];
			plen[i] = plen[np - 1 - i];
			parts[np - 1 - i] = tp;
			plen[np - 1 - i] = tl;
		}
	size_t first = 0;
	if (digits > 0 && (size_t)digits < np)
		first = np - (size_t)digits;
	for (size_t i = first; i < np; i++) {
		if (i > first)
			sb_addc(out, '.');
		if (!escape) {
			sb_add(out, parts[i], plen[i]);
			continue;
		}
		for (size_t k = 0; k < plen[i]; k++) {
			unsigned char c = (unsigned char)parts[i][k];
			if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
				sb_addc(out, (char)c);
			} else {
				char hex[4];
				snprintf(hex, sizeof(hex), "%%%02X", c);
				sb_adds(out, hex);
			}
		}
	}
}

/* Expands a macro-string. explain: exp text (c r t allowed, no truncation).
 * E_OK or E_PERM (syntax error, expansion too long). */
static int expand(struct eval *e, const char *s, size_t n, const char *domain, bool explain, struct sb *out)
{
	if (!macro_ok(s, n, explain, NULL)) {
		problem(e, "macro syntax error in %.*s", (int)(n > 60 ? 60 : n), s);
		return E_PERM;
	}
	sb_reset(out);
	struct sb val = {0};
	size_t i = 0;
	/* Once the output is over MAX_EXPAND the expansion is a permerror:
	 * no further macro is evaluated (%{p} would query the DNS). */
	while (i < n && !out->over) {
		if (s[i] != '%') {
			size_t j = i;
			while (j < n && s[j] != '%')
				j++;
			sb_add(out, s + i, j - i);
			i = j;
			continue;
		}
		char m = s[i + 1];
		if (m == '%' || m == '_' || m == '-') {
			sb_adds(out, m == '%' ? "%" : m == '_' ? " " : "%20");
			i += 2;
			continue;
		}
		char letter = s[i + 2];
		size_t j = i + 3;
		int digits = 0;
		bool have_digits = false;
		while (isdigit((unsigned char)s[j])) {
			if (digits < 1000)
				digits = digits * 10 + (s[j] - '0');
			have_digits = true;
			j++;
		}
		bool rev = false;
		if (s[j] == 'r' || s[j] == 'R') {
			rev = true;
			j++;
		}
		size_t ds = j;
		while (s[j] != '}')
			j++;
		if (have_digits && digits == 0) {
			problem(e, "macro with zero digits");
			sb_free(&val);
			return E_PERM;
		}
		sb_reset(&val);
		char tmp[32];
		switch (tolower((unsigned char)letter)) {
		case 's':
			sb_adds(&val, e->sender);
			break;
		case 'l':
			sb_add(&val, e->local, e->local_len);
			break;
		case 'o':
			sb_adds(&val, e->sdomain);
			break;
		case 'd':
			sb_adds(&val, domain);
			break;
		case 'i':
			sb_adds(&val, e->ip_dots);
			break;
		case 'p':
			macro_p(e, domain, &val);
			break;
		case 'h':
			sb_adds(&val, e->helo && *e->helo ? e->helo : "unknown");
			break;
		case 'v':
			sb_adds(&val, e->q->family == AF_INET ? "in-addr" : "ip6");
			break;
		case 'c':
			sb_adds(&val, e->ip_text);
			break;
		case 'r':
			sb_adds(&val, e->q->receiver && *e->q->receiver ? e->q->receiver : "unknown");
			break;
		case 't':
			snprintf(tmp, sizeof(tmp), "%lld", (long long)time(NULL));
			sb_adds(&val, tmp);
			break;
		default:
			break;
		}
		transform(sb_str(&val), val.len, digits, rev, s + ds, j - ds,
			  isupper((unsigned char)letter) != 0, out);
		i = j + 1;
	}
	sb_free(&val);
	if (out->over) {
		problem(e, "macro expansion too long");
		return E_PERM;
	}
	if (!explain) {
		/* A domain: no final dot; over 253 octets loses left labels. */
		if (out->len && out->p[out->len - 1] == '.')
			out->p[--out->len] = 0;
		size_t off = 0;
		while (out->len - off > 253) {
			char *dot = memchr(out->p + off, '.', out->len - off);
			if (!dot)
				break;
			off = (size_t)(dot - out->p) + 1;
		}
		if (off) {
			memmove(out->p, out->p + off, out->len - off + 1);
			out->len -= off;
		}
	}
	return E_OK;
}

/* The target domain of a term: its expanded domain-spec, or domain. */
static int target(struct eval *e, const char *spec, size_t len, const char *domain, struct sb *out)
{
	if (!spec) {
		sb_reset(out);
		sb_adds(out, domain);
		return E_OK;
	}
	return expand(e, spec, len, domain, false, out);
}

/* ---- check_host -------------------------------------------------------------- */

static enum spf_result check_host(struct eval *e, const char *domain, int depth, bool in_include);

static enum spf_result err_result(int rc)
{
	return rc == E_TEMP ? SPF_TEMPERROR : SPF_PERMERROR;
}

/* Evaluates one mechanism: 1 match, 0 no match, E_TEMP, E_PERM. */
static int mech_match(struct eval *e, const struct term *t, const char *domain, int depth)
{
	struct sb name = {0};
	int rc = 0;
	const struct spf_req *q = e->q;
	switch (t->type) {
	case M_ALL:
		return 1;
	case M_IP4:
		return q->family == AF_INET && addr_match(e, t->net, t->cidr4);
	case M_IP6:
		return q->family == AF_INET6 && addr_match(e, t->net, t->cidr6);
	default:
		break;
	}
	if ((rc = count_lookup(e)) != E_OK)
		return rc;
	if ((rc = target(e, t->spec, t->spec_len, domain, &name)) != E_OK)
		goto out;
	const char *tn = sb_str(&name);
	int cidr = q->family == AF_INET ? (t->cidr4 < 0 ? 32 : t->cidr4) : (t->cidr6 < 0 ? 128 : t->cidr6);
	int atype = q->family == AF_INET ? T_A : T_AAAA;
	size_t alen = q->family == AF_INET ? 4 : 16;
	switch (t->type) {
	case M_INCLUDE: {
		enum spf_result r = check_host(e, tn, depth + 1, true);
		switch (r) {
		case SPF_PASS:
			rc = 1;
			break;
		case SPF_FAIL:
		case SPF_SOFTFAIL:
		case SPF_NEUTRAL:
			rc = 0;
			break;
		case SPF_TEMPERROR:
			rc = E_TEMP;
			break;
		case SPF_NONE:
			problem(e, "include:%s has no SPF record", tn);
			rc = E_PERM;
			break;
		default:
			rc = E_PERM;
			break;
		}
		break;
	}
	case M_A:
	case M_EXISTS: {
		struct sift_dns_result *r = dnsq(e, tn, t->type == M_EXISTS ? T_A : atype);
		if (r->status == SIFT_DNS_TEMPFAIL) {
			problem(e, "DNS error looking up %s", tn);
			rc = E_TEMP;
		} else if (is_void(r)) {
			rc = count_void(e, tn);
		} else if (r->status == SIFT_DNS_OK) {
			if (t->type == M_EXISTS)
				rc = r->count > 0;
			else
				for (size_t i = 0; i < r->count && rc == 0; i++)
					if (r->len[i] == alen && addr_match(e, r->rr[i], cidr))
						rc = 1;
		}
		dfree(r);
		break;
	}
	case M_MX: {
		struct sift_dns_result *r = dnsq(e, tn, T_MX);
		if (r->status == SIFT_DNS_TEMPFAIL) {
			problem(e, "DNS error looking up MX %s", tn);
			rc = E_TEMP;
		} else if (is_void(r)) {
			rc = count_void(e, tn);
		} else if (r->status == SIFT_DNS_OK) {
			if (r->count > (size_t)q->max_names) {
				problem(e, "more than %d MX records for %s", q->max_names, tn);
				rc = E_PERM;
			}
			for (size_t i = 0; i < r->count && rc == 0; i++) {
				char mx[256];
				if (r->len[i] < 3 ||
				    wire_name(r->rr[i] + 2, r->len[i] - 2, mx, sizeof(mx)) < 0)
					continue;
				struct sift_dns_result *a = dnsq(e, mx[0] ? mx : ".", atype);
				if (a->status == SIFT_DNS_TEMPFAIL) {
					problem(e, "DNS error looking up %s", mx);
					rc = E_TEMP;
				} else if (a->status == SIFT_DNS_OK) {
					for (size_t k = 0; k < a->count && rc == 0; k++)
						if (a->len[k] == alen && addr_match(e, a->rr[k], cidr))
							rc = 1;
				}
				dfree(a);
			}
		}
		dfree(r);
		break;
	}
	case M_PTR: {
		char(*names)[256];
		int n = ptr_names(e, &names);
		if (n == -2)
			rc = count_void(e, "PTR");
		for (int i = 0; i < n && rc == 0; i++)
			if (dom_match(names[i], tn) && validate_name(e, names[i]))
				rc = 1;
		free(names);
		break;
	}
	default:
		break;
	}
out:
	sb_free(&name);
	return rc;
}

/* The explanation for a fail from this record (§6.2). */
static void explain(struct eval *e, const struct record *rec, const char *domain)
{
	struct sb name = {0}, text = {0};
	char *exp = NULL;
	char saved[sizeof(e->problem)];
	memcpy(saved, e->problem, sizeof(saved));
	if (rec->exp && expand(e, rec->exp, rec->exp_len, domain, false, &name) == E_OK) {
		struct sift_dns_result *r = dnsq(e, sb_str(&name), T_TXT);
		if (r->status == SIFT_DNS_OK && r->count == 1) {
			const char *t = (const char *)r->rr[0];
			size_t len = r->len[0];
			bool ascii = true;
			for (size_t i = 0; i < len; i++)
				if ((unsigned char)t[i] < 0x20 || (unsigned char)t[i] > 0x7e)
					ascii = false;
			if (ascii && expand(e, t, len, domain, true, &text) == E_OK)
				exp = strdup(sb_str(&text));
		}
		dfree(r);
	}
	if (!exp && e->q->default_exp && *e->q->default_exp) {
		const char *d = e->q->default_exp;
		if (expand(e, d, strlen(d), domain, true, &text) == E_OK)
			exp = strdup(sb_str(&text));
		else
			exp = strdup(d);
	}
	memcpy(e->problem, saved, sizeof(saved)); /* explanation trouble is no problem */
	free(e->res->explanation);
	e->res->explanation = exp;
	sb_free(&name);
	sb_free(&text);
}

static enum spf_result check_host(struct eval *e, const char *domain, int depth, bool in_include)
{
	if (depth > MAX_DEPTH) {
		problem(e, "nesting too deep");
		return SPF_PERMERROR;
	}
	if (!name_ok(domain))
		return SPF_NONE;
	struct record rec;
	int rc = fetch_record(e, domain, &rec);
	if (rc == 1)
		return SPF_NONE;
	if (rc != E_OK)
		return err_result(rc);
	enum spf_result result = SPF_NEUTRAL;
	bool matched = false;
	for (size_t i = 0; i < rec.n; i++) {
		rc = mech_match(e, &rec.t[i], domain, depth);
		if (rc < 0) {
			result = err_result(rc);
			goto out;
		}
		if (rc == 1) {
			matched = true;
			result = rec.t[i].qual;
			if (!in_include)
				snprintf(e->res->mechanism, sizeof(e->res->mechanism), "%.*s",
					 (int)rec.t[i].text_len, rec.t[i].text);
			break;
		}
	}
	if (!matched && rec.redirect) {
		struct sb name = {0};
		if ((rc = count_lookup(e)) != E_OK ||
		    (rc = expand(e, rec.redirect, rec.redirect_len, domain, false, &name)) != E_OK) {
			result = err_result(rc);
		} else {
			result = check_host(e, sb_str(&name), depth + 1, in_include);
			if (result == SPF_NONE) {
				problem(e, "redirect=%s has no SPF record", sb_str(&name));
				result = SPF_PERMERROR;
			}
		}
		sb_free(&name);
		goto out; /* the target's explanation applies, not ours */
	}
	if (!matched && !in_include)
		snprintf(e->res->mechanism, sizeof(e->res->mechanism), "default");
	if (result == SPF_FAIL && !in_include)
		explain(e, &rec, domain);
out:
	record_free(&rec);
	return result;
}

static void addr_text(const struct eval *e, char *out, size_t n)
{
	if (!inet_ntop(e->q->family, e->q->addr, out, (socklen_t)n))
		snprintf(out, n, "unknown");
}

void spf_eval(const struct spf_req *q, struct spf_res *res)
{
	memset(res, 0, sizeof(*res));
	struct eval e;
	memset(&e, 0, sizeof(e));
	e.q = q;
	e.res = res;
	e.helo = q->helo ? q->helo : "";
	addr_text(&e, e.ip_text, sizeof(e.ip_text));
	if (q->family == AF_INET) {
		snprintf(e.ip_dots, sizeof(e.ip_dots), "%u.%u.%u.%u", q->addr[0], q->addr[1], q->addr[2],
			 q->addr[3]);
	} else {
		size_t k = 0;
		for (int i = 0; i < 16; i++)
			k += (size_t)snprintf(e.ip_dots + k, sizeof(e.ip_dots) - k, "%s%X.%X", i ? "." : "",
					      q->addr[i] >> 4, q->addr[i] & 15);
	}

	/* The identity: MAIL FROM, or postmaster@HELO. */
	const char *sender = q->sender ? q->sender : "";
	res->identity = q->identity;
	int n;
	if (q->identity == SPF_ID_HELO || !*sender) {
		res->identity = SPF_ID_HELO;
		n = snprintf(res->sender, sizeof(res->sender), "postmaster@%s", e.helo);
	} else {
		const char *at = strrchr(sender, '@');
		if (!at)
			n = snprintf(res->sender, sizeof(res->sender), "postmaster@%s", sender);
		else if (at == sender)
			n = snprintf(res->sender, sizeof(res->sender), "postmaster%s", at);
		else
			n = snprintf(res->sender, sizeof(res->sender), "%s", sender);
	}
	/* An identity that does not fit is no valid address (RFC 5321 allows
	 * 64 octets of local part and 255 of domain); truncated, it could
	 * lose its '@' or name another domain. */
	if (n < 0 || (size_t)n >= sizeof(res->sender)) {
		res->sender[0] = 0;
		res->result = SPF_NONE;
		return;
	}
	const char *at = strrchr(res->sender, '@');
	e.sender = res->sender;
	e.local = res->sender;
	e.local_len = (size_t)(at - res->sender);
	e.sdomain = at + 1;
	snprintf(res->domain, sizeof(res->domain), "%s", e.sdomain);
	size_t dl = strlen(res->domain);
	if (dl && res->domain[dl - 1] == '.')
		res->domain[dl - 1] = 0;

	if (!*e.sdomain || !name_ok(res->domain)) {
		res->result = SPF_NONE;
		snprintf(res->problem, sizeof(res->problem), "no valid domain in the identity");
	} else {
		res->result = check_host(&e, res->domain, 0, false);
		memcpy(res->problem, e.problem, sizeof(res->problem));
	}
	if (res->result != SPF_FAIL)
		spf_res_free(res);
	if (res->result != SPF_TEMPERROR && res->result != SPF_PERMERROR)
		res->problem[0] = 0;
	res->lookups = e.lookups;
	res->voids = e.voids;
	free(e.p_names);
	free(e.p_valid);
}
