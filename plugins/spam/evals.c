/*
 * evals.c - native implementations of SpamAssassin eval: functions (on the
 * per-message context of scan.c). Each returns the rule's hit
 * count (0 or 1). Functions that need the network, Bayes, or external
 * checkers (DNSBLs, URIBLs, DKIM/SPF/DMARC inside SpamAssassin, Razor,
 * Pyzor, DCC) are known and never hit: their rules have score 0 in score
 * set 0 anyway; in Sift those results come from the spf/dkim plugins'
 * symbols (see check_sift_symbol and symbol_score). Welcome/block-list evals
 * never hit since the lists (welcomelist_from ...) are not supported.
 * Anything else is unknown: the rule is disabled and lint reports it.
 * Thread-safe: only the per-message context is written.
 */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>

#include "bayes_engine.h"
#include "internal.h"

static int ev_never(struct msgctx *m, const struct rule *r)
{
	return 0;
}

/* Whether host is in the URI host list u: the first of host and its
 * parent domains (at most the last 11 of those) that the list names gives
 * the verdict; an address literal or an IPv4 address is looked up as
 * itself (WLBLEval's _check_uri_host_listed); a name that does not end in
 * a TLD of util_rb_tld ("#top" has the host "top") is no URI host there. */
static bool urilist_has(const struct netconf *nc, const struct urilist *u, const char *host)
{
	char lit[64];
	const char *keys[11];
	size_t nk = 0;
	size_t hl = strlen(host);
	int dots = 0;
	for (const char *c = host; *c; c++)
		dots += *c == '.';
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		snprintf(lit, sizeof(lit), "%.*s", (int)(hl - 2), host + 1);
		keys[nk++] = lit;
	} else if (dots == 3 && strspn(host, "0123456789.") == hl) {
		keys[nk++] = host;
	} else if (domain_tld_valid(nc, host)) { /* uri_to_domain keeps no other */
		for (const char *h = host;;) {
			if (nk == 11) { /* the tail kept */
				memmove(keys, keys + 1, 10 * sizeof(keys[0]));
				nk--;
			}
			keys[nk++] = h;
			const char *dot = strchr(h, '.');
			if (!dot)
				break;
			h = dot + 1;
		}
	}
	for (size_t k = 0; k < nk; k++)
		for (size_t i = 0; i < u->n; i++)
			if (strcmp(u->host[i], keys[k]) == 0)
				return u->verdict[i];
	return false;
}

/* WLBLEval check_uri_host_listed(NAME): a host of the message's URIs
 * (mailto: ones left out; the domains the text names without a scheme
 * included) in the list NAME (enlist_uri_host). */
static bool uri_host_listed(struct msgctx *m, const char *name)
{
	const struct urilist *u = NULL;
	for (size_t i = 0; i < m->e->nurilists && !u; i++)
		if (strcmp(m->e->urilists[i].name, name) == 0)
			u = &m->e->urilists[i];
	if (!u || !u->n)
		return false;
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; i < mm->uri_count; i++)
		if (mm->uris[i].host && strncasecmp(mm->uris[i].uri, "mailto:", 7) != 0 &&
		    urilist_has(m->e->net, u, mm->uris[i].host))
			return true;
	const struct bare_uris *b = msg_bare_uris(m);
	for (size_t i = 0; b && i < b->n; i++)
		if (urilist_has(m->e->net, u, b->host[i]))
			return true;
	return false;
}

static int ev_uri_host_listed(struct msgctx *m, const struct rule *r)
{
	return uri_host_listed(m, eval_arg(r, 0));
}

static int ev_uri_host_blocklist(struct msgctx *m, const struct rule *r)
{
	return uri_host_listed(m, "BLOCK");
}

static int ev_uri_host_welcomelist(struct msgctx *m, const struct rule *r)
{
	return uri_host_listed(m, "WELCOME");
}

static int ev_sift_symbol(struct msgctx *m, const struct rule *r)
{
	for (size_t k = 0; k < m->in->nsyms; k++)
		if (strcasecmp(m->in->sym_names[k], eval_arg(r, 0)) == 0)
			return 1;
	return 0;
}

static size_t header_count(struct msgctx *m, const char *name)
{
	size_t n = 0, st = 0;
	while (mh(m->mime, name, &st))
		n++;
	return n;
}

static int ev_header_count_range(struct msgctx *m, const struct rule *r)
{
	size_t n = header_count(m, eval_arg(r, 0));
	return n >= (size_t)atol(eval_arg(r, 1)) && n <= (size_t)atol(eval_arg(r, 2));
}

/* BodyEval check_body_length(MIN): the body as received (pristine_body:
 * every octet after the blank line, line ends as they came) is at most
 * MIN octets long. */
static int ev_body_length(struct msgctx *m, const struct rule *r)
{
	return m->mime->part_count && m->mime->parts[0].raw_len <= (size_t)atol(eval_arg(r, 0));
}

/* HeaderEval subject_is_all_caps: the subject trimmed and without its
 * Re:/Fwd:/... prefixes has white space, at least 10 characters, letters
 * and no lower-case one, and is not encoded in a charset whose text reads
 * as capitals (CHARSETS_LIKELY_TO_FP_AS_CAPS). */
static int ev_subject_all_caps(struct msgctx *m, const struct rule *r)
{
	size_t st = 0;
	const struct sift_mime_header *h = mh(m->mime, "Subject", &st);
	if (!h)
		return 0;
	const char *s = h->value;
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	static const char *const pfx[] = {"Re", "Fwd", "Fw", "Aw", "Antwort", "WG",
					  "SV", "VB",  "VS", "VL", NULL};
	for (bool again = true; again;) {
		again = false;
		for (const char *const *p = pfx; *p && !again; p++) {
			size_t l = strlen(*p);
			if (n > l && strncasecmp(s, *p, l) == 0 && s[l] == ':') {
				s += l + 1, n -= l + 1;
				while (n && isspace((unsigned char)*s))
					s++, n--;
				again = true;
			}
		}
	}
	bool space = false;
	size_t letters = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		space = space || isspace(c);
		if (c >= 'a' && c <= 'z')
			return 0;
		letters += c >= 'A' && c <= 'Z';
	}
	if (!space || n < 10 || !letters)
		return 0;
	return !re_match_lit(
		"(?i)=\\?[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|georgianps|pt154|"
		"tis)[-_a-z0-9]*\\?",
		h->raw);
}

/* check_illegal_chars(header, ratio, count): 8-bit characters in headers. */
static int ev_illegal_chars(struct msgctx *m, const struct rule *r)
{
	const char *name = eval_arg(r, 0);
	double ratio = atof(eval_arg(r, 1));
	long count = atol(eval_arg(r, 2));
	size_t total = 0, bad = 0;
	for (size_t i = 0; i < m->mime->header_count; i++) {
		const struct sift_mime_header *h = &m->mime->headers[i];
		if (strcmp(name, "ALL") == 0) {
			if (strcasecmp(h->name, "Subject") == 0 || strcasecmp(h->name, "From") == 0)
				continue;
		} else if (strcasecmp(h->name, name) != 0)
			continue;
		/* raw value: RFC 2047 words are fine, 8-bit octets are not */
		for (const unsigned char *p = (const unsigned char *)h->raw; *p; p++) {
			total++;
			if (*p >= 0x80)
				bad++;
		}
	}
	if (!total)
		return 0;
	return (double)bad / (double)total > ratio && (long)bad >= count;
}

static int ev_msg_parse_flags(struct msgctx *m, const struct rule *r)
{
	const char *f = eval_arg(r, 0);
	unsigned fl = m->mime->flags;
	if (strcmp(f, "mime_missing_boundary") == 0)
		return (fl & SIFT_MIME_F_MISSING_BOUNDARY) != 0;
	if (strcmp(f, "truncated_header") == 0)
		return 0;
	if (strcmp(f, "mime_epilogue_exists") == 0)
		return (fl & SIFT_MIME_F_EPILOGUE) != 0;
	if (strcmp(f, "missing_mime_headers") == 0)
		return (fl & SIFT_MIME_F_NO_PART_HEADERS) != 0;
	if (strcmp(f, "missing_head_body_separator") == 0 ||
	    strcmp(f, "missing_mime_head_body_separator") == 0)
		return (fl & SIFT_MIME_F_BAD_HEADER) != 0;
	return 0;
}

/* MIMEEval check_for_mime(test) */
static int ev_for_mime(struct msgctx *m, const struct rule *r)
{
	const char *t = eval_arg(r, 0);
	const struct sift_mime *mm = m->mime;
	int b64 = 0, qp = 0, html = 0, textp = 0, b64text = 0, html_nocs = 0, b64_noname = 0, qp_long = 0;
	bool alt = false, attachment = false;
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (strcmp(p->type, "multipart/alternative") == 0)
			alt = true;
		for (size_t k = 0; k < p->header_count; k++) /* every part, as MIMEEval */
			if (strcasecmp(p->headers[k].name, "Content-Disposition") == 0 &&
			    strcasestr(p->headers[k].value, "attachment"))
				attachment = true;
		if (strncmp(p->type, "multipart/", 10) == 0 || (p->flags & SIFT_MIME_P_MESSAGE))
			continue;
		bool isb64 = strcmp(p->encoding, "base64") == 0;
		if (isb64) {
			b64++;
			bool ascii = !*p->charset || strstr(p->charset, "ascii") ||
				     strcmp(p->charset, "us") == 0 || strstr(p->charset, "646") ||
				     strstr(p->charset, "367") || strcmp(p->charset, "iso-ir-6") == 0;
			bool disp = false;
			for (size_t k = 0; k < p->header_count; k++)
				if (strcasecmp(p->headers[k].name, "Content-Disposition") == 0 &&
				    (strncasecmp(p->headers[k].value, "attachment", 10) == 0 ||
				     strncasecmp(p->headers[k].value, "inline", 6) == 0))
					disp = true;
			if (strncmp(p->type, "text/", 5) == 0 && ascii && !disp)
				b64text++;
			if (!*p->filename && strncmp(p->type, "text/", 5) != 0)
				b64_noname++;
		}
		if (strcmp(p->encoding, "quoted-printable") == 0) {
			qp++;
			/* a line over 78 characters (RFC 5322's limit, not RFC
			 * 2045's 76: MIMEEval's bug 5491), not one starting
			 * "SPAM: ", its line end left out */
			size_t len = 0, start = 0;
			for (size_t k = 0; k <= p->raw_len; k++) {
				if (k == p->raw_len || p->raw[k] == '\n') {
					if (len > 78 &&
					    !(k - start >= 6 && memcmp(p->raw + start, "SPAM: ", 6) == 0))
						qp_long = 1;
					len = 0;
					start = k + 1;
				} else if (p->raw[k] != '\r' || k + 1 >= p->raw_len || p->raw[k + 1] != '\n')
					len++; /* a CR counts but the one of a CRLF */
			}
		}
		if (strcmp(p->type, "text/html") == 0) {
			html++;
			if (!*p->charset)
				html_nocs++;
		} else if (strncmp(p->type, "text", 4) == 0)
			textp++;
	}
	if (strcmp(t, "mime_base64_count") == 0)
		return b64 > 0;
	if (strcmp(t, "mime_base64_encoded_text") == 0)
		return b64text > 0;
	if (strcmp(t, "mime_body_html_count") == 0)
		return html > 0;
	if (strcmp(t, "mime_body_text_count") == 0)
		return textp > 0;
	if (strcmp(t, "mime_html_no_charset") == 0)
		return html_nocs > 0;
	if (strcmp(t, "mime_missing_boundary") == 0)
		return (mm->flags & SIFT_MIME_F_MISSING_BOUNDARY) != 0;
	if (strcmp(t, "mime_multipart_alternative") == 0)
		return alt;
	if (strcmp(t, "mime_qp_count") == 0)
		return qp > 0;
	if (strcmp(t, "mime_qp_long_line") == 0)
		return qp_long;
	if (strcmp(t, "mime_base64_no_name") == 0)
		return b64_noname > 0;
	if (strcmp(t, "mime_attachment") == 0)
		return attachment;
	return 0;
}

/* ---- relays (relay.c) ---- */
static int ev_all_trusted(struct msgctx *m, const struct rule *r)
{
	struct relayinfo *ri = relays(m);
	return ri->ntrusted > 0 && ri->ntrusted == ri->n && ri->unparseable == 0;
}

static int ev_no_relays(struct msgctx *m, const struct rule *r)
{
	return relays(m)->n == 0;
}

static int ev_relays_unparseable(struct msgctx *m, const struct rule *r)
{
	return relays(m)->unparseable > 0;
}

/* ---- dates ---- */
/* HeaderEval _get_date_header_time: the first Resent-Date, else Date,
 * field that parses. */
static bool date_header_time(struct msgctx *m, time_t *t)
{
	static const char *const names[] = {"Resent-Date", "Date"};
	for (size_t n = 0; n < 2; n++) {
		size_t st = 0;
		const struct sift_mime_header *h;
		while ((h = mh(m->mime, names[n], &st)))
			if (*h->value && parse_rfc822_date(h->value, t) == 0)
				return true;
	}
	return false;
}

/* HeaderEval _check_date_diff: the Date time minus each Received time
 * (a local delivery line and a fetchmail line at the top skipped as
 * SpamAssassin does), the last difference dropped when it is 0, the one
 * nearest to 0. */
static bool date_diff(struct msgctx *m, double *diff_r)
{
	time_t dt;
	if (!date_header_time(m, &dt))
		return false;
	const char *rv[64];
	size_t nr = 0, st = 0;
	const struct sift_mime_header *h;
	while ((h = mh(m->mime, "Received", &st)) && nr < 64)
		if (strspn(h->value, " \t\r\n") < strlen(h->value))
			rv[nr++] = h->value;
	size_t first = 0;
	bool local = nr && (re_match_lit("\\bfrom (?:localhost\\s|(?:\\S+ ){1,2}\\S*\\b127\\.0\\.0\\.1\\b)",
					 rv[0]) ||
			    re_match_lit("qmail \\d+ invoked by uid \\d+", rv[0]));
	static const char fetchmail[] = "\\bby localhost with \\w+ \\(fetchmail-[\\d.]+";
	if (local && nr > 1 && re_match_lit(fetchmail, rv[1]))
		first = 2; /* both are the local delivery's */
	else if (!local && nr && re_match_lit(fetchmail, rv[0]))
		first = 1;
	double diffs[64];
	size_t nd = 0;
	for (size_t i = first; i < nr; i++) {
		time_t rt;
		if (received_date(rv[i], &rt) == 0)
			diffs[nd++] = difftime(dt, rt);
	}
	if (nd == 0)
		return false;
	if (nd > 1 && diffs[nd - 1] == 0)
		nd--;
	double best = diffs[0];
	for (size_t i = 1; i < nd; i++)
		if (fabs(diffs[i]) < fabs(best))
			best = diffs[i];
	*diff_r = best;
	return true;
}

static int ev_shifted_date(struct msgctx *m, const struct rule *r)
{
	if (!m->ev.date_diff)
		m->ev.date_diff = date_diff(m, &m->ev.date_diff_s) ? 1 : -1;
	double d = m->ev.date_diff > 0 ? m->ev.date_diff_s : 0;
	const char *mn = eval_arg(r, 0), *mx = eval_arg(r, 1);
	return (strcmp(mn, "undef") == 0 || d >= 3600.0 * atof(mn)) &&
	       (strcmp(mx, "undef") == 0 || d < 3600.0 * atof(mx));
}

static int ev_outlook_msgid(struct msgctx *m, const struct rule *r)
{
	size_t st = 0;
	const struct sift_mime_header *h = mh(m->mime, "Message-Id", &st);
	if (!h)
		return 0;
	const char *id = h->value;
	/* ^<[0-9a-f]{4}([0-9a-f]{8})\$[0-9a-f]{8}\$[0-9a-f]{8}\@ */
	if (id[0] != '<')
		return 0;
	for (int i = 1; i <= 12; i++)
		if (!isxdigit((unsigned char)id[i]) || isupper((unsigned char)id[i]))
			return 0;
	if (id[13] != '$')
		return 0;
	for (int i = 14; i < 22; i++)
		if (!isxdigit((unsigned char)id[i]) || isupper((unsigned char)id[i]))
			return 0;
	if (id[22] != '$')
		return 0;
	for (int i = 23; i < 31; i++)
		if (!isxdigit((unsigned char)id[i]) || isupper((unsigned char)id[i]))
			return 0;
	if (id[31] != '@')
		return 0;
	char tok[9];
	memcpy(tok, id + 5, 8);
	tok[8] = 0;
	double timetoken = (double)strtoul(tok, NULL, 16);
	const double x = 0.0023283064365387, y = 27111902.8329849;
	st = 0;
	const struct sift_mime_header *dh = mh(m->mime, "Date", &st);
	time_t t = 0;
	if (!dh || parse_rfc822_date(dh->value, &t) < 0)
		t = 0;
	double expected = floor((double)t * x + y);
	if (fabs(timetoken - expected) < 250)
		return 0;
	st = 0;
	const struct sift_mime_header *rh = mh(m->mime, "Received", &st);
	t = 0;
	if (rh) {
		const char *semi = strrchr(rh->value, ';');
		if (!semi || parse_rfc822_date(semi + 1, &t) < 0)
			t = 0;
	}
	expected = floor((double)t * x + y);
	return fabs(timetoken - expected) >= 250;
}

/* ---- addresses, freemail ---- */

/* s (case ignored) starts with prefix: the rest, else NULL. */
static const char *after_ci(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncasecmp(s, prefix, n) == 0 ? s + n : NULL;
}

/* FreeMail's default welcome list: role and bounce addresses are never
 * freemail. */
static const char fm_welcome_re[] =
	"(?i)^(?:abuse|support|sales|info|helpdesk|contact|kontakt"
	"|(?:post|host|domain)master|undisclosed.*|request-[a-f0-9]{16}|bounced?-"
	"|[a-f0-9]{8}(?:\\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})"
	"|.+=.+=.+)@";

/* FreeMail's wildcard domains: '*' is any run of characters but '.',
 * '?' any one character; the whole name must match. */
static bool label_glob(const char *g, const char *s)
{
	for (; *g; g++, s++) {
		if (*g == '*') {
			for (const char *t = s;; t++) {
				if (label_glob(g + 1, t))
					return true;
				if (!*t || *t == '.')
					return false;
			}
		}
		if (!*s || (*g != '?' && *g != *s))
			return false;
	}
	return !*s;
}

static bool is_freemail(const struct spam_engine *e, const char *addr)
{
	const char *at = strrchr(addr, '@');
	if (!at || !at[1] || re_match_lit(fm_welcome_re, addr))
		return false;
	char dom[256];
	snprintf(dom, sizeof(dom), "%s", at + 1);
	for (char *c = dom; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	const char *key = dom;
	if (e->nfreemail && bsearch(&key, e->freemail, e->nfreemail, sizeof(char *), namecmp))
		return true;
	for (size_t i = 0; i < e->nfreemail_glob; i++)
		if (label_glob(e->freemail_glob[i], dom))
			return true;
	return false;
}

static void two_labels(const char *addr, char *out, size_t n)
{
	const char *at = strrchr(addr, '@');
	snprintf(out, n, "%s", at ? at + 1 : "");
	size_t l = strlen(out);
	int dots = 0;
	for (size_t i = l; i > 0; i--)
		if (out[i - 1] == '.' && ++dots == 2) {
			memmove(out, out + i, l - i + 1);
			break;
		}
}

static int ev_equal_from_domains(struct msgctx *m, const struct rule *r)
{
	char from[256], env[256], fd[256], ed[256];
	first_addr(m, "From", from, sizeof(from));
	first_addr(m, "EnvelopeFrom", env, sizeof(env));
	two_labels(from, fd, sizeof(fd));
	two_labels(env, ed, sizeof(ed));
	if (!fd[0] || !ed[0])
		return 0;
	return strcasecmp(fd, ed) != 0;
}

static pcre2_match_context *re_limits_ctx;
static pthread_once_t re_limits_once = PTHREAD_ONCE_INIT;

static void re_limits_init(void)
{
	re_limits_ctx = pcre2_match_context_create(NULL);
	if (!re_limits_ctx)
		abort();
	pcre2_set_match_limit(re_limits_ctx, RE_MATCH_LIMIT);
	pcre2_set_depth_limit(re_limits_ctx, RE_DEPTH_LIMIT);
}

pcre2_match_context *re_limits(void)
{
	pthread_once(&re_limits_once, re_limits_init);
	return re_limits_ctx;
}

bool re_match_str(const char *re, const char *s)
{
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
	if (!c)
		return false;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(c, NULL);
	int rc = pcre2_match(c, (PCRE2_SPTR)s, strlen(s), 0, 0, md, re_limits());
	pcre2_match_data_free(md);
	pcre2_code_free(c);
	return rc >= 0;
}

/* The fixed patterns of the eval functions, compiled (and JIT-compiled)
 * once per process: a bounded table (they are string constants, so it never
 * fills up) that threads read without a lock; an entry is complete before
 * re_ncache counts it, and entries are never changed or removed. */
#define RE_CACHE_MAX 128
static struct {
	const char *key, *re; /* the pointer first seen; a copy of the pattern */
	pcre2_code *code;
} re_cache[RE_CACHE_MAX];
static _Atomic size_t re_ncache;
static pthread_mutex_t re_lock = PTHREAD_MUTEX_INITIALIZER;

/* by_text: any entry of the same text; else the same pointer first (the
 * same constant, mostly; a rule's argument may reuse a freed one's address,
 * hence the text is compared too) */
static pcre2_code *re_cached(const char *re, size_t n, bool by_text)
{
	for (size_t i = 0; i < n; i++)
		if ((by_text || re_cache[i].key == re) && strcmp(re_cache[i].re, re) == 0)
			return re_cache[i].code;
	return NULL;
}

bool re_match_lit(const char *re, const char *s)
{
	size_t n = atomic_load_explicit(&re_ncache, memory_order_acquire);
	pcre2_code *c = re_cached(re, n, false);
	if (!c)
		c = re_cached(re, n, true);
	if (!c) {
		pthread_mutex_lock(&re_lock);
		n = atomic_load_explicit(&re_ncache, memory_order_relaxed);
		c = re_cached(re, n, true);
		if (!c && n < RE_CACHE_MAX) {
			int ec;
			PCRE2_SIZE eo;
			c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
			if (c) {
				pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
				re_cache[n].key = re;
				re_cache[n].re = xstrdup(re);
				re_cache[n].code = c;
				atomic_store_explicit(&re_ncache, n + 1, memory_order_release);
			}
		}
		pthread_mutex_unlock(&re_lock);
	}
	if (!c)
		return re_match_str(re, s);
	/* one pair: only whether it matches is asked (0: matched, no room) */
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	int rc = pcre2_match(c, (PCRE2_SPTR)s, strlen(s), 0, 0, md, re_limits());
	pcre2_match_data_free(md);
	return rc >= 0;
}

static size_t all_addrs(struct msgctx *m, const char *hdr, char (*out)[256], size_t max);

/* PerMsgStatus all_from_addrs: the addresses of Resent-From when it has
 * any, else those of From, Envelope-Sender, Resent-Sender,
 * X-Envelope-From and the envelope sender, runs of dots squeezed. */
static size_t all_from_addrs(struct msgctx *m, char (*out)[256], size_t max)
{
	size_t n = all_addrs(m, "Resent-From", out, max);
	if (!n) {
		static const char *const hdrs[] = {"From", "Envelope-Sender", "Resent-Sender",
						   "X-Envelope-From"};
		for (size_t h = 0; h < 4 && n < max; h++)
			n += all_addrs(m, hdrs[h], out + n, max - n);
		if (n < max) {
			first_addr(m, "EnvelopeFrom", out[n], 256);
			n += out[n][0] != 0;
		}
	}
	for (size_t i = 0; i < n; i++) {
		char *w = out[i];
		for (const char *c = out[i]; *c; c++)
			if (*c != '.' || w == out[i] || w[-1] != '.')
				*w++ = *c;
		*w = 0;
	}
	return n;
}

static int ev_freemail_from(struct msgctx *m, const struct rule *r)
{
	char a[16][256];
	size_t n = all_from_addrs(m, a, 16);
	for (size_t i = 0; i < n; i++)
		if (a[i][0] && is_freemail(m->e, a[i]) &&
		    (r->neval == 0 || re_match_lit(eval_arg(r, 0), a[i])))
			return 1;
	return 0;
}

/* FreeMail's check_freemail_header(HEADER [, REGEX]): any freemail address
 * (that matches REGEX) among get("HEADER:addr"), which is every address of
 * every instance of the header. Modifiers in HEADER ("Reply-To:addr") add
 * nothing to the :addr asked. */
static int ev_freemail_header(struct msgctx *m, const struct rule *r)
{
	char hdr[128], a[16][256];
	snprintf(hdr, sizeof(hdr), "%s", eval_arg(r, 0));
	hdr[strcspn(hdr, ":")] = 0;
	size_t n;
	if (strcasecmp(hdr, "EnvelopeFrom") == 0) {
		first_addr(m, hdr, a[0], sizeof(a[0]));
		n = a[0][0] != 0;
	} else
		n = all_addrs(m, hdr, a, 16);
	for (size_t i = 0; i < n; i++)
		if (a[i][0] && is_freemail(m->e, a[i]) &&
		    (r->neval < 2 || re_match_lit(eval_arg(r, 1), a[i])))
			return 1;
	return 0;
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The alternation of the sorted strings s[0..n) (all with the same first
 * `at` characters) from their character `at` on, as a prefix tree. */
static void tld_trie(struct sbuf *re, char **s, size_t n, size_t at)
{
	size_t nalt = 0;
	bool empty = false;
	for (size_t i = 0; i < n;) {
		if (!s[i][at]) { /* ends here (duplicates too) */
			empty = true;
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < n && s[j][at] == s[i][at])
			j++;
		nalt++;
		i = j;
	}
	if (!nalt)
		return;
	bool group = nalt > 1 || empty;
	if (group)
		sb_adds(re, "(?:");
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		if (!s[i][at]) {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < n && s[j][at] == s[i][at])
			j++;
		if (k++)
			sb_add(re, "|", 1);
		sb_add(re, &s[i][at], 1);
		tld_trie(re, s + i, j - i, at + 1);
		i = j;
	}
	if (group)
		sb_adds(re, empty ? ")?" : ")");
}

#define FM_LOCAL "[a-z0-9!#$%&'*+/=?^_`{|}~-]"

void valid_tlds_re(struct sbuf *re, const struct netconf *nc)
{
	sb_adds(re, "(?<![a-z0-9-])(?:");
	/* the TLDs as a prefix tree (c(?:at|om?)): the same strings, so the
	 * same matches (the label must end where the TLD does), found
	 * character by character instead of trying each TLD in turn */
	char **tld = xcalloc(nc->ntld ? nc->ntld : 1, sizeof(char *));
	size_t ntld = 0;
	for (size_t i = 0; i < nc->ntld; i++) {
		struct sbuf t = {0};
		for (const char *c = nc->tld[i]; *c; c++) /* names: letters, digits, '-' */
			if (isalnum((unsigned char)*c) || *c == '-') {
				char l = (char)tolower((unsigned char)*c);
				sb_add(&t, &l, 1);
			}
		tld[ntld++] = (char *)sb_str(&t);
	}
	qsort(tld, ntld, sizeof(char *), strp_cmp);
	tld_trie(re, tld, ntld, 0);
	for (size_t i = 0; i < ntld; i++)
		free(tld[i]);
	free(tld);
	sb_adds(re, ")(?!(?:[a-z0-9-]|\\.[a-z0-9]))");
}

void freemail_compile(struct spam_engine *e)
{
	const struct netconf *nc = e->net;
	if (!nc || !nc->ntld || (!e->nfreemail && !e->nfreemail_glob))
		return;
	/* FreeMail's email_regex, with RegistryBoundaries' valid_tlds_re */
	struct sbuf re = {0};
	sb_adds(&re, "(?=.{0,64}@)(?<!" FM_LOCAL ")(" FM_LOCAL "+(?:\\." FM_LOCAL
		     "+)*@(?:[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?\\.){1,4}");
	valid_tlds_re(&re, nc);
	sb_adds(&re, ")");
	struct sbuf ctx = {0};
	sb_adds(&ctx, "<?(?<!mailto:)");
	sb_add(&ctx, re.d, re.n);
	sb_adds(&ctx, "(?:>|\\s{1,10}(?!(?:fa(?:x|csi)|tel|phone|e?-?mail))[a-z]{2,11}:)");
	int ec;
	PCRE2_SIZE eo;
	e->fm_email = pcre2_compile((PCRE2_SPTR)re.d, re.n, PCRE2_CASELESS, &ec, &eo, NULL);
	e->fm_email_ctx = pcre2_compile((PCRE2_SPTR)ctx.d, ctx.n, PCRE2_CASELESS, &ec, &eo, NULL);
	e->fm_url_at = pcre2_compile((PCRE2_SPTR) "<?https?://\\S{0,255}(?:@|%40)\\S{0,255}",
				     PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec, &eo, NULL);
	pcre2_code *all[] = {e->fm_email, e->fm_email_ctx, e->fm_url_at};
	for (size_t i = 0; i < 3; i++)
		if (all[i])
			pcre2_jit_compile(all[i], PCRE2_JIT_COMPLETE);
	free(re.d);
	free(ctx.d);
}

/* s with every match of re replaced by a space, into out. */
static void fm_blank(pcre2_code *re, pcre2_match_data *md, pcre2_match_context *mctx, const char *s, size_t n,
		     struct sbuf *out)
{
	out->n = 0;
	size_t at = 0;
	while (at <= n && pcre2_match(re, (PCRE2_SPTR)s, n, at, 0, md, mctx) >= 0) {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		if (ov[1] == ov[0]) /* none of FreeMail's patterns matches empty */
			break;
		sb_add(out, s + at, ov[0] - at);
		sb_add(out, " ", 1);
		at = ov[1];
	}
	if (at < n)
		sb_add(out, s + at, n - at);
	sb_str(out);
}

static bool fm_seen(char (*list)[256], size_t n, const char *a)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], a) == 0)
			return true;
	return false;
}

/* FreeMail's _parse_body: the addresses of <a href="mailto:..."> and of
 * the body text (not in URLs, not followed by "fax:"-like labels), at most
 * 20 and 40; 5 distinct addresses or 3 freemail ones skip the body check
 * (freemail_max_body_emails, _freemails, freemail_skip_when_over_max).
 * Fills m->ev.fm; false when skipped. */
static bool fm_body(struct msgctx *m)
{
	if (m->ev.fm_body)
		return m->ev.fm_body > 0;
	const struct spam_engine *e = m->e;
	m->ev.fm_body = -1;
	if (!e->fm_email || !e->fm_email_ctx || !e->fm_url_at)
		return false;
	char(*found)[256] = xcalloc(60, 256);
	size_t nf = 0;
	pcre2_match_data *md = pcre2_match_data_create(4, NULL);
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; mm->html && i < mm->part_count && nf < 20; i++) {
		const struct sift_html *hi = mm->html[i];
		for (size_t k = 0; hi && k < hi->nanchors && nf < 20; k++) {
			const char *h = after_ci(hi->anchors[k].href, "mailto:");
			if (!h || pcre2_match(e->fm_email, (PCRE2_SPTR)h, strlen(h), 0, PCRE2_ANCHORED, md,
					      m->mctx) < 0)
				continue;
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			char a[256];
			snprintf(a, sizeof(a), "%.*s", (int)(ov[3] - ov[2]), h + ov[2]);
			for (char *c = a; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			if (!fm_seen(found, nf, a))
				snprintf(found[nf++], 256, "%s", a);
		}
	}
	if (!m->lines)
		build_body(m);
	struct sbuf t1 = {0}, t2 = {0};
	size_t limit = 40;
	for (size_t i = 0; i < m->nlines && nf < limit; i++) {
		/* every address FreeMail's email_regex finds has its '@': a line
		 * without one has none (whatever the blanking takes out) */
		if (!memchr(m->lines[i], '@', m->lens[i]))
			continue;
		if (msg_late(m))
			break;
		fm_blank(e->fm_url_at, md, m->mctx, m->lines[i], m->lens[i], &t1);
		fm_blank(e->fm_email_ctx, md, m->mctx, t1.d, t1.n, &t2);
		size_t at = 0;
		while (nf < limit && at < t2.n &&
		       pcre2_match(e->fm_email, (PCRE2_SPTR)t2.d, t2.n, at, 0, md, m->mctx) >= 0) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			char a[256];
			snprintf(a, sizeof(a), "%.*s", (int)(ov[3] - ov[2]), t2.d + ov[2]);
			for (char *c = a; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			if (!fm_seen(found, nf, a))
				snprintf(found[nf++], 256, "%s", a);
			at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
		}
	}
	free(t1.d);
	free(t2.d);
	pcre2_match_data_free(md);
	bool ok = true;
	size_t fm = 0;
	for (size_t i = 0; i < nf && ok; i++) {
		if (i + 1 == 5) /* freemail_max_body_emails */
			ok = false;
		else if (is_freemail(e, found[i])) {
			if (++fm == 3) /* freemail_max_body_freemails */
				ok = false;
			else
				snprintf(m->ev.fm[m->ev.nfm++], 256, "%s", found[i]);
		}
	}
	free(found);
	m->ev.fm_body = ok ? 1 : -1;
	return ok;
}

/* The addresses of every `hdr` field (SpamAssassin's get("hdr:addr") in
 * list context), lower case; returns how many (at most max). */
static size_t all_addrs(struct msgctx *m, const char *hdr, char (*out)[256], size_t max)
{
	size_t n = 0, st = 0;
	const struct sift_mime_header *h;
	while (n < max && (h = mh(m->mime, hdr, &st))) {
		struct sift_addrs *a = m->in->addrlist_parse ? m->in->addrlist_parse(h->raw) : NULL;
		for (size_t k = 0; a && k < a->count && n < max; k++) {
			snprintf(out[n], 256, "%s", a->mb[k].addr);
			for (char *c = out[n]; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			n++;
		}
		free(a);
	}
	return n;
}

/* One of check_freemail_replyto's two questions, once From's and
 * Reply-To's addresses are known. */
static int fm_replyto(struct msgctx *m, bool reply, char (*from)[256], size_t nfrom, char (*rt)[256],
		      size_t nrt, bool fromfm, bool rtfm)
{
	if (!reply && !rtfm)
		return 0;
	if (reply && ((nrt && !rtfm) || !fromfm))
		return 0;
	if (!fm_body(m))
		return 0;
	char(*cmp)[256] = !reply || rtfm ? rt : from;
	size_t ncmp = !reply || rtfm ? nrt : nfrom;
	for (size_t b = 0; b < m->ev.nfm; b++)
		for (size_t k = 0; k < ncmp; k++)
			if (strcmp(m->ev.fm[b], cmp[k]) != 0)
				return 1;
	return 0;
}

/* FreeMail's check_freemail_replyto('replyto' | 'reply'): the stock
 * ruleset asks both; the addresses are parsed once for the two. */
static int ev_freemail_replyto(struct msgctx *m, const struct rule *r)
{
	bool reply = strcmp(eval_arg(r, 0), "reply") == 0;
	if (m->ev.fm_replyto[reply])
		return m->ev.fm_replyto[reply] - 1;
	int res[2] = {0, 0};
	char env[256];
	first_addr(m, "EnvelopeFrom", env, sizeof(env));
	if (!env[0] ||
	    !re_match_lit("(?i)(?:^(?:post|host|domain)master|^double-bounce"
			  "|^(?:sentto|owner|return|(?:gr)?bounced?)-.+|-(?:request|bounces?|admin|owner)"
			  "|\\b(?:do[._-t]?)?no[._-t]?repl(?:y|ies)|.+=.+)@",
			  env)) { /* else freemail_skip_bulk_envfrom */
		char from[8][256], rt[8][256];
		size_t nfrom = all_addrs(m, "From", from, 8), nrt = all_addrs(m, "Reply-To", rt, 8);
		bool fromfm = false, rtfm = false, from_in_rt = false;
		for (size_t i = 0; i < nfrom; i++) {
			fromfm = fromfm || is_freemail(m->e, from[i]);
			from_in_rt = from_in_rt || fm_seen(rt, nrt, from[i]);
		}
		for (size_t i = 0; i < nrt; i++)
			rtfm = rtfm || is_freemail(m->e, rt[i]);
		for (int q = 0; q < 2; q++)
			res[q] = fromfm && rtfm && !from_in_rt
					 ? 1
					 : fm_replyto(m, q == 1, from, nfrom, rt, nrt, fromfm, rtfm);
	}
	m->ev.fm_replyto[0] = 1 + res[0];
	m->ev.fm_replyto[1] = 1 + res[1];
	return res[reply];
}

/* HeaderEval check_for_missing_to_header: no To: field (nor
 * Apparently-To:). A field with an empty value is there: SpamAssassin's
 * get() keeps its line end, so the value is not ''. */
static int ev_missing_to(struct msgctx *m, const struct rule *r)
{
	size_t st = 0;
	if (mh(m->mime, "To", &st))
		return 0;
	st = 0;
	return mh(m->mime, "Apparently-To", &st) == NULL;
}

/* ---- MIME and HTML ---- */
static void mime_counts(struct msgctx *m, int *html, int *text)
{
	*html = *text = 0;
	for (size_t i = 0; i < m->mime->part_count; i++) {
		/* by type, rendered or not (text/calendar counts), as
		 * MIMEEval's mime_body_html_count and mime_body_text_count */
		const struct sift_mime_part *p = &m->mime->parts[i];
		if (strncmp(p->type, "text/", 5) != 0)
			continue;
		if (strcmp(p->type, "text/html") == 0)
			(*html)++;
		else
			(*text)++;
	}
}

static int ev_mime_html(struct msgctx *m, const struct rule *r)
{
	if (strncmp(m->mime->parts[0].type, "text/html", 9) == 0)
		return 1;
	int h, t;
	mime_counts(m, &h, &t);
	return h > 0;
}

static int ev_mime_html_only(struct msgctx *m, const struct rule *r)
{
	if (strncmp(m->mime->parts[0].type, "text/html", 9) == 0)
		return 1;
	int h, t;
	mime_counts(m, &h, &t);
	return h > 0 && t == 0;
}

/* The statistics of the message's HTML parts (the core's HTML tokenizer),
 * one after the other: *i starts at 0; NULL after the last. HTMLEval
 * tests each part's results (html_all): a test holds when one part meets
 * it. */
static const struct sift_html *html_next(struct msgctx *m, size_t *i)
{
	const struct sift_mime *mm = m->mime;
	for (; mm->html && *i < mm->part_count; (*i)++)
		if ((mm->parts[*i].flags & SIFT_MIME_P_HTML) && mm->html[*i])
			return mm->html[(*i)++];
	return NULL;
}

static bool html_value(const struct sift_html *hi, const char *test, double *v)
{
	if (!hi)
		return false;
	if (strcmp(test, "length") == 0)
		*v = (double)hi->length;
	else if (strcmp(test, "max_size") == 0)
		*v = hi->max_font_size;
	else if (strcmp(test, "bad_tag_ratio") == 0)
		*v = hi->tags ? (double)hi->bad_tags / hi->tags : 0;
	else if (strcmp(test, "closed_extra_ratio") == 0)
		*v = hi->tags ? (double)hi->closed_extra / hi->tags : 0;
	else if (strcmp(test, "obfuscation_ratio") == 0) {
		/* HTML.pm sets it only when both counts exist (are not 0); a
		 * part without it meets no html_range nor html_eval */
		if (!hi->tags || !hi->obfuscation)
			return false;
		*v = (double)hi->obfuscation / hi->tags;
	} else
		return false;
	return true;
}

static double numarg(const char *s)
{
	if (strcmp(s, "inf") == 0)
		return INFINITY;
	if (strcmp(s, "-inf") == 0)
		return -INFINITY;
	return atof(s);
}

static int ev_html_range(struct msgctx *m, const struct rule *r)
{
	double v;
	const struct sift_html *hi;
	for (size_t i = 0; (hi = html_next(m, &i));)
		if (html_value(hi, eval_arg(r, 0), &v) && v > numarg(eval_arg(r, 1)) &&
		    v <= numarg(eval_arg(r, 2)))
			return 1;
	return 0;
}

static bool cmp_expr(double v, const char *expr)
{
	while (*expr == ' ')
		expr++;
	const char *op = expr;
	size_t ol = strspn(op, "<>=!");
	double rhs = atof(op + ol);
	if (ol == 1 && *op == '<')
		return v < rhs;
	if (ol == 1 && *op == '>')
		return v > rhs;
	if (ol == 2 && op[0] == '<')
		return v <= rhs;
	if (ol == 2 && op[0] == '>')
		return v >= rhs;
	if (ol == 2 && op[0] == '=')
		return v == rhs;
	if (ol == 2 && op[0] == '!')
		return v != rhs;
	return false;
}

static int ev_html_eval(struct msgctx *m, const struct rule *r)
{
	double v;
	const struct sift_html *hi;
	for (size_t i = 0; (hi = html_next(m, &i));)
		if (html_value(hi, eval_arg(r, 0), &v) && cmp_expr(v, eval_arg(r, 1)))
			return 1;
	return 0;
}

/* A tag of the name seen, opening or closing (exists $html->{inside}{tag}) */
/* Whether a tag of the name was seen in the part, opening or closing
 * (HTML.pm's exists $inside{name}). */
static bool tag_seen(const struct sift_html *hi, const char *name)
{
	for (size_t k = 0; k < hi->ntagnames; k++)
		if (strcasecmp(hi->tagnames[k].name, name) == 0)
			return true;
	return false;
}

static int ev_html_tag_exists(struct msgctx *m, const struct rule *r)
{
	const struct sift_html *hi;
	for (size_t i = 0; (hi = html_next(m, &i));)
		if (tag_seen(hi, eval_arg(r, 0)))
			return 1;
	return 0;
}

/* The tags of the name left open (tag_inside) against the expression */
static int ev_html_tag_balance(struct msgctx *m, const struct rule *r)
{
	const struct sift_html *hi;
	for (size_t i = 0; (hi = html_next(m, &i));)
		for (size_t k = 0; k < hi->ntagnames; k++)
			if (strcasecmp(hi->tagnames[k].name, eval_arg(r, 0)) == 0 &&
			    cmp_expr((double)hi->tag_inside[k], eval_arg(r, 1)))
				return 1;
	return 0;
}

static int ev_html_text_match(struct msgctx *m, const struct rule *r)
{
	const char *w = eval_arg(r, 0);
	const struct sift_html *hi;
	for (size_t i = 0; (hi = html_next(m, &i));) {
		const char *src = strcmp(w, "comment") == 0  ? hi->comments
				  : strcmp(w, "title") == 0  ? hi->title
				  : strcmp(w, "anchor") == 0 ? hi->anchor
							     : NULL;
		if (src && *src && re_match_lit(eval_arg(r, 1), src))
			return 1;
	}
	return 0;
}

static int ev_html_image_ratio(struct msgctx *m, const struct rule *r)
{
	const struct sift_html *hi;
	for (size_t i = 0; (hi = html_next(m, &i));) {
		if (hi->image_area == 0)
			continue;
		double ratio = (double)hi->non_space_len / (double)hi->image_area;
		if (ratio > atof(eval_arg(r, 0)) && ratio <= atof(eval_arg(r, 1)))
			return 1;
	}
	return 0;
}

static int ev_image_count(struct msgctx *m, const struct rule *r)
{
	const char *t = eval_arg(r, 0);
	int n = 0;
	for (size_t i = 0; i < m->mime->part_count; i++) {
		const char *ty = m->mime->parts[i].type;
		if (strncmp(ty, "image/", 6) != 0)
			continue;
		if (strcmp(ty + 6, t) == 0 ||
		    (strcmp(t, "jpeg") == 0 && (strcmp(ty + 6, "jpg") == 0 || strcmp(ty + 6, "pjpeg") == 0)))
			n++;
	}
	if (n < atoi(eval_arg(r, 1)))
		return 0;
	if (r->neval > 2 && n > atoi(eval_arg(r, 2)))
		return 0;
	return 1;
}

/* ---- more relay checks ---- */
static int ev_no_rdns_dotcom_helo(struct msgctx *m, const struct rule *r)
{
	struct relayinfo *ri = relays(m);
	int res = 0;
	for (size_t i = ri->ntrusted; i < ri->n; i++) {
		const struct relay *rl = &ri->r[i];
		if (rl->priv)
			continue;
		res = 0;
		static const char *const doms[] = {"lycos.com",	    "lycos.co.uk", "hotmail.com",
						   "localhost.com", "excite.com",  "caramail.com",
						   "cs.com",	    "aol.com",	   "msn.com",
						   "yahoo.com",	    "drizzle.com", NULL};
		size_t hl = strlen(rl->helo);
		for (const char *const *d = doms; *d; d++) {
			size_t dl = strlen(*d);
			if (hl >= dl && strcasecmp(rl->helo + hl - dl, *d) == 0 &&
			    (hl == dl || rl->helo[hl - dl - 1] == '.'))
				res = rl->rdns[0] == 0 && rl->looked_up;
		}
	}
	return res;
}

static int ev_helo_ip_mismatch(struct msgctx *m, const struct rule *r)
{
	struct relayinfo *ri = relays(m);
	for (size_t i = ri->ntrusted; i < ri->n; i++) {
		const struct relay *rl = &ri->r[i];
		unsigned a, b, c, d;
		char tail;
		if (sscanf(rl->helo, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || ip_private(rl->helo))
			continue;
		if (strchr(rl->ip, ':') || rl->priv || strcmp(rl->helo, rl->ip) == 0)
			continue;
		char pre[32];
		snprintf(pre, sizeof(pre), "%u.%u.%u.", a, b, c);
		if (strncmp(rl->ip, pre, strlen(pre)) != 0)
			return 1;
	}
	return 0;
}

static void all_received(struct msgctx *m, struct sbuf *b)
{
	size_t st = 0;
	const struct sift_mime_header *h;
	while ((h = mh(m->mime, "Received", &st))) {
		sb_adds(b, h->value);
		sb_add(b, "\n", 1);
	}
}

static int ev_forged_yahoo(struct msgctx *m, const struct rule *r)
{
	char from[256];
	first_addr(m, "From", from, sizeof(from));
	size_t fl = strlen(from);
	if (fl < 9 || strcasecmp(from + fl - 9, "yahoo.com") != 0 ||
	    (fl > 9 && isalnum((unsigned char)from[fl - 10])))
		return 0;
	struct sbuf rc = {0};
	all_received(m, &rc);
	if (!rc.n) { /* gated through a Received remover */
		free(rc.d);
		return 0;
	}
	struct relayinfo *ri = relays(m);
	int res = 1;
	if ((ri->trusted_str && re_match_lit(" rdns=\\S+\\.yahoo\\.com ", ri->trusted_str)) ||
	    (ri->untrusted_str && re_match_lit("^[^\\]]+ rdns=\\S+\\.yahoo\\.com ", ri->untrusted_str)) ||
	    re_match_lit("by web\\S+\\.mail\\S*\\.yahoo\\.com via HTTP", rc.d) ||
	    re_match_lit("by sonic\\S+\\.consmr\\.mail\\S*\\.yahoo\\.com with HTTP", rc.d) ||
	    re_match_lit("by smtp\\S+\\.yahoo\\.com with SMTP", rc.d) ||
	    re_match_lit("from \\[[0-9.]+\\] by \\S+\\.(?:groups|scd|dcn)\\.yahoo\\.com with NNFMP", rc.d) ||
	    (re_match_lit("\\bmailer\\d+\\.bulk\\.scd\\.yahoo\\.com\\b", rc.d) &&
	     re_match_lit("(?i)\\@reply\\.yahoo\\.com$", from)) ||
	    re_match_lit("by \\w+\\.\\w+\\.yahoo\\.com \\(\\d+\\.\\d+\\.\\d+/\\d+\\.\\d+\\.\\d+\\)(?: with "
			 "ESMTP)? id \\w+",
			 rc.d))
		res = 0;
	free(rc.d);
	return res;
}

/* ---- recipients (HeaderEval _check_recipients) ---- */
static size_t recipient_list(struct msgctx *m, char addrs[][128], size_t max)
{
	static const char *const hdrs[] = {"To", "Cc", "Bcc", NULL};
	size_t n = 0;
	for (const char *const *hn = hdrs; *hn && n < max; hn++) {
		size_t st = 0;
		const struct sift_mime_header *h;
		while ((h = mh(m->mime, *hn, &st)) && n < max) {
			struct sift_addrs *a = m->in->addrlist_parse ? m->in->addrlist_parse(h->raw) : NULL;
			for (size_t k = 0; a && k < a->count && n < max; k++) {
				snprintf(addrs[n], 128, "%s", a->mb[k].addr);
				if (n == 0 || strcasecmp(addrs[n], addrs[n - 1]) != 0)
					n++;
			}
			free(a);
		}
		if (n >= 5 && **hn == 'C')
			break;
	}
	return n;
}

static int ev_similar_recipients(struct msgctx *m, const struct rule *r)
{
	char(*a)[128] = xmalloc(256 * 128); /* only the n filled are read */
	size_t n = recipient_list(m, a, 256);
	double sim = 0;
	if (n >= 5) {
		size_t hits = 0, comb = 0;
		for (size_t i = 0; i < n; i++)
			for (size_t j = i + 1; j < n; j++) {
				const char *hi = strchr(a[i], '@'), *hj = strchr(a[j], '@');
				if (strncmp(a[i], a[j], 2) == 0)
					hits++;
				if (hi && hj && strncmp(hi + 1, hj + 1, 2) == 0 &&
				    strcmp(hi + 1, hj + 1) != 0)
					hits++;
				comb++;
			}
		sim = comb ? (double)hits / (double)comb : 0;
	}
	free(a);
	const char *mn = eval_arg(r, 0), *mx = eval_arg(r, 1);
	return (strcmp(mn, "undef") == 0 || sim >= atof(mn)) && (strcmp(mx, "undef") == 0 || sim < atof(mx));
}

static int ev_sorted_recipients(struct msgctx *m, const struct rule *r)
{
	char(*a)[128] = xmalloc(256 * 128); /* only the n filled are read */
	size_t n = recipient_list(m, a, 256);
	int sorted = n >= 7;
	for (size_t i = 1; i < n && sorted; i++)
		if (strcmp(a[i - 1], a[i]) > 0)
			sorted = 0;
	free(a);
	return sorted;
}

/* HTMLEval html_test(name): the few tests we keep statistics for. */
static int ev_html_test(struct msgctx *m, const struct rule *r)
{
	const char *t = eval_arg(r, 0);
	const struct sift_html *hi;
	for (size_t i = 0; (hi = html_next(m, &i));) {
		if (strcmp(t, "html") == 0)
			return 1;
		if (strcmp(t, "form_action_mailto") == 0 && hi->form_mailto)
			return 1;
		if (strcmp(t, "font_low_contrast") == 0 && hi->low_contrast)
			return 1;
		if (strcmp(t, "font_invalid_color") == 0 && hi->font_invalid_color)
			return 1;
		if ((strcmp(t, "html_unknown_tag") == 0 || strcmp(t, "bad_tag") == 0) && hi->bad_tags > 0)
			return 1;
		if (strcmp(t, "font_face_bad") == 0 && hi->font_face_bad)
			return 1;
		if (strcmp(t, "embeds") == 0 && hi->embeds)
			return 1;
	}
	return 0;
}

static int ev_html_image_only(struct msgctx *m, const struct rule *r)
{
	const struct sift_html *hi;
	for (size_t i = 0; (hi = html_next(m, &i));) {
		double len = (double)hi->length;
		/* an <img> tag seen, opening or closing (exists $inside{img}) */
		if ((hi->images || tag_seen(hi, "img")) && len > atof(eval_arg(r, 0)) &&
		    len <= atof(eval_arg(r, 1)))
			return 1;
	}
	return 0;
}

/* ---- anchors and frames (URIEval, HTTPSMismatch, HTMLEval) ---- */

/* An IPv4 address written as \d+\.\d+\.\d+\.\d+ at the start of s. */
static bool dotted_quad_at(const char *s)
{
	for (int k = 0; k < 4; k++) {
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
		if (k < 3 && *s++ != '.')
			return false;
	}
	return true;
}

/* After "scheme:": slashes, an optional userinfo ([^@/]+@: up to the first
 * '@' before any '/'), then \d+\.\d+\.\d+\.\d+. */
static bool ip_authority(const char *p)
{
	while (*p == '/')
		p++;
	const char *q = p + strcspn(p, "@/");
	return (*q == '@' && q > p && dotted_quad_at(q + 1)) || dotted_quad_at(p);
}

static bool is_ipv4(const char *s)
{
	unsigned char b[4];
	return inet_pton(AF_INET, s, b) == 1;
}

/* check_https_ip_mismatch: an anchor to http(s)://IP whose text shows an
 * https: URI that is not to an IP address. */
static int ev_https_ip_mismatch(struct msgctx *m, const struct rule *r)
{
	(void)r;
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; mm->html && i < mm->part_count; i++) {
		const struct sift_html *hi = mm->html[i];
		for (size_t k = 0; hi && k < hi->nanchors; k++) {
			const char *h = hi->anchors[k].href, *t = hi->anchors[k].text;
			const char *rest = after_ci(h, "https:");
			if (!rest)
				rest = after_ci(h, "http:");
			if (!rest || !ip_authority(rest))
				continue;
			const char *ts = after_ci(t, "https:");
			if (ts && ip_authority(ts))
				continue;
			if (strcasestr(t, "https:"))
				return 1;
		}
	}
	return 0;
}

/* The host of "https?://HOST" (HOST up to '/', ':', '?', '#', or white
 * space when ws) into out, lower case; false when none. */
static bool uri_host(const char *p, bool ws, char *out, size_t n)
{
	size_t k = 0;
	for (; *p && !strchr("/:?#", *p) && !(ws && isspace((unsigned char)*p)); p++)
		if (k + 1 < n)
			out[k++] = (char)tolower((unsigned char)*p);
	out[k] = 0;
	return k > 0;
}

/* The registered domain of a host as HTTPSMismatch compares them: an IP
 * address as is (keep_ip), else trimmed to the registry boundary and only
 * when its TLD is valid. */
static const char *mismatch_domain(const struct netconf *nc, const char *host, bool keep_ip)
{
	if (is_ipv4(host))
		return keep_ip ? host : NULL;
	const char *d = registered_domain(nc, host);
	return domain_tld_valid(nc, d) ? d : NULL;
}

/* check_https_http_mismatch([min, max]): in one HTML part, an anchor to
 * an http(s) host whose text shows an https:// URI to another registered
 * domain, with min <= (distinct http(s) hrefs with a valid domain) < max. */
static int ev_https_http_mismatch(struct msgctx *m, const struct rule *r)
{
	const struct sift_mime *mm = m->mime;
	const struct netconf *nc = m->e->net;
	const char *mn = eval_arg(r, 0), *mx = eval_arg(r, 1);
	long minanchors = *mn && strcmp(mn, "undef") != 0 ? atol(mn) : 0;
	if (minanchors == 0)
		minanchors = 1;
	bool has_max = *mx && strcmp(mx, "undef") != 0;
	long maxanchors = has_max ? atol(mx) : 0;
	for (size_t i = 0; mm->html && i < mm->part_count; i++) {
		const struct sift_html *hi = mm->html[i];
		if (!hi)
			continue;
		long anchors = 0;
		bool hit = false;
		for (size_t k = 0; k < hi->nanchors; k++) {
			const char *href = hi->anchors[k].href;
			bool first = true;
			for (size_t j = 0; j < k && first; j++)
				first = strcmp(hi->anchors[j].href, href) != 0;
			const char *rest = after_ci(href, "http://");
			if (!rest)
				rest = after_ci(href, "https://");
			char host[256], th[256];
			const char *dom;
			if (!first || !rest || !uri_host(rest, false, host, sizeof(host)) ||
			    !(dom = mismatch_domain(nc, host, false)))
				continue;
			anchors++;
			for (size_t j = k; j < hi->nanchors && !hit; j++) {
				if (strcmp(hi->anchors[j].href, href) != 0)
					continue;
				const char *t = strcasestr(hi->anchors[j].text, "https://");
				if (!t || !uri_host(t + 8, true, th, sizeof(th)))
					continue;
				const char *td = mismatch_domain(nc, th, true);
				hit = td && strcmp(td, dom) != 0;
			}
		}
		if (hit && anchors >= minanchors && (!has_max || anchors < maxanchors))
			return 1;
	}
	return 0;
}

/* check_iframe_src: an <iframe> with a src. */
static int ev_iframe_src(struct msgctx *m, const struct rule *r)
{
	(void)r;
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; mm->html && i < mm->part_count; i++)
		if (mm->html[i] && mm->html[i]->iframes)
			return 1;
	return 0;
}

const struct evaldef evals[] = {
	{"check_sift_symbol", ev_sift_symbol},
	{"check_header_count_range", ev_header_count_range},
	{"check_body_length", ev_body_length},
	{"subject_is_all_caps", ev_subject_all_caps},
	{"check_illegal_chars", ev_illegal_chars},
	{"check_msg_parse_flags", ev_msg_parse_flags},
	{"check_for_mime", ev_for_mime},
	{"html_test", ev_html_test},
	{"html_image_only", ev_html_image_only},
	{"check_https_ip_mismatch", ev_https_ip_mismatch},
	{"check_https_http_mismatch", ev_https_http_mismatch},
	{"check_iframe_src", ev_iframe_src},
	{"check_all_trusted", ev_all_trusted},
	{"check_no_relays", ev_no_relays},
	{"check_relays_unparseable", ev_relays_unparseable},
	{"check_for_shifted_date", ev_shifted_date},
	{"check_outlook_message_id", ev_outlook_msgid},
	{"check_equal_from_domains", ev_equal_from_domains},
	{"check_freemail_from", ev_freemail_from},
	{"check_freemail_header", ev_freemail_header},
	{"check_freemail_replyto", ev_freemail_replyto},
	{"check_for_missing_to_header", ev_missing_to},
	{"check_for_mime_html", ev_mime_html},
	{"check_for_mime_html_only", ev_mime_html_only},
	{"html_range", ev_html_range},
	{"html_eval", ev_html_eval},
	{"html_tag_exists", ev_html_tag_exists},
	{"html_tag_balance", ev_html_tag_balance},
	{"html_text_match", ev_html_text_match},
	{"html_image_ratio", ev_html_image_ratio},
	{"image_count", ev_image_count},
	{"check_for_no_rdns_dotcom_helo", ev_no_rdns_dotcom_helo},
	{"helo_ip_mismatch", ev_helo_ip_mismatch},
	{"check_for_forged_yahoo_received_headers", ev_forged_yahoo},
	{"similar_recipients", ev_similar_recipients},
	{"sorted_recipients", ev_sorted_recipients},
	/* network, Bayes and external checkers: never hit without them */
	{"check_rbl", ev_net_rbl},
	{"check_rbl_sub", ev_net_rbl_sub},
	{"check_rbl_txt", ev_net_rbl},
	{"check_rbl_from_host", ev_net_rbl},
	{"check_rbl_from_domain", ev_net_rbl},
	{"check_rbl_headers", ev_net_rbl},
	{"check_rbl_envfrom", ev_net_rbl},
	{"check_rbl_ns_from", ev_never},
	{"check_rbl_rcvd", ev_net_rbl},
	{"check_rbl_accreditor", ev_never},
	{"check_dns_sender", ev_never},
	{"check_uridnsbl", ev_net_uri},
	{"check_uri_host_listed", ev_uri_host_listed},
	{"check_bayes", ev_check_bayes},
	{"check_razor2", ev_never},
	{"check_razor2_range", ev_never},
	{"check_pyzor", ev_never},
	{"check_dcc", ev_never},
	{"check_dcc_reputation_range", ev_never},
	{"check_dkim_valid", ev_never},
	{"check_dkim_valid_author_sig", ev_never},
	{"check_dkim_signed", ev_never},
	{"check_dkim_dependable", ev_never},
	{"check_dkim_adsp", ev_never},
	{"check_dkim_testing", ev_never},
	{"check_dkim_valid_envelopefrom", ev_never},
	{"check_for_dkim_whitelist_from", ev_never},
	{"check_for_dkim_welcomelist_from", ev_never},
	{"check_for_def_dkim_whitelist_from", ev_never},
	{"check_for_def_dkim_welcomelist_from", ev_never},
	{"check_for_spf_pass", ev_never},
	{"check_for_spf_neutral", ev_never},
	{"check_for_spf_none", ev_never},
	{"check_for_spf_fail", ev_never},
	{"check_for_spf_softfail", ev_never},
	{"check_for_spf_permerror", ev_never},
	{"check_for_spf_temperror", ev_never},
	{"check_for_spf_helo_pass", ev_never},
	{"check_for_spf_helo_neutral", ev_never},
	{"check_for_spf_helo_none", ev_never},
	{"check_for_spf_helo_fail", ev_never},
	{"check_for_spf_helo_softfail", ev_never},
	{"check_for_spf_helo_permerror", ev_never},
	{"check_for_spf_helo_temperror", ev_never},
	{"check_for_spf_whitelist_from", ev_never},
	{"check_for_spf_welcomelist_from", ev_never},
	{"check_for_def_spf_whitelist_from", ev_never},
	{"check_for_def_spf_welcomelist_from", ev_never},
	{"check_dmarc_pass", ev_never},
	{"check_dmarc_reject", ev_never},
	{"check_dmarc_quarantine", ev_never},
	{"check_dmarc_none", ev_never},
	{"check_dmarc_missing", ev_never},
	{"check_hashbl_emails", ev_never},
	{"check_hashbl_uris", ev_never},
	{"check_hashbl_bodyre", ev_never},
	{"check_hashbl_tag", ev_never},
	{"check_hashbl_attachments", ev_never},
	{"askdns", ev_never},
	{"check_senders_reputation", ev_never},
	{"check_shortcircuit", ev_never},
	{"check_uri_truncated", ev_never},
	/* welcome/block lists: not configured, never hit */
	{"check_from_in_list", ev_never},
	{"check_to_in_list", ev_never},
	{"check_replyto_in_list", ev_never},
	{"check_from_in_whitelist", ev_never},
	{"check_from_in_welcomelist", ev_never},
	{"check_from_in_blacklist", ev_never},
	{"check_from_in_blocklist", ev_never},
	{"check_to_in_whitelist", ev_never},
	{"check_to_in_welcomelist", ev_never},
	{"check_to_in_blacklist", ev_never},
	{"check_to_in_blocklist", ev_never},
	{"check_to_in_all_spam", ev_never},
	{"check_to_in_more_spam", ev_never},
	{"check_from_in_default_whitelist", ev_never},
	{"check_from_in_default_welcomelist", ev_never},
	{"check_forged_in_whitelist", ev_never},
	{"check_forged_in_welcomelist", ev_never},
	{"check_forged_in_default_whitelist", ev_never},
	{"check_forged_in_default_welcomelist", ev_never},
	{"check_uri_host_in_whitelist", ev_uri_host_welcomelist},
	{"check_uri_host_in_welcomelist", ev_uri_host_welcomelist},
	{"check_uri_host_in_blacklist", ev_uri_host_blocklist},
	{"check_uri_host_in_blocklist", ev_uri_host_blocklist},
	{"check_subject_in_whitelist", ev_never},
	{"check_subject_in_welcomelist", ev_never},
	{"check_subject_in_blacklist", ev_never},
	{"check_subject_in_blocklist", ev_never},
	{"check_whitelist_bounce_relays", ev_never},
	{"check_welcomelist_bounce_relays", ev_never},
	{NULL, NULL},
};

/* The tables; an id is table * EVAL_TABLE_SIZE + index. */
#define EVAL_TABLE_SIZE 1000
static const struct evaldef *const eval_tables[] = {evals, evals_mime, evals_relay, NULL};

int eval_lookup(const char *name)
{
	for (int t = 0; eval_tables[t]; t++)
		for (int i = 0; eval_tables[t][i].name; i++)
			if (strcmp(eval_tables[t][i].name, name) == 0)
				return t * EVAL_TABLE_SIZE + i;
	return -1;
}

eval_fn eval_get(int id)
{
	return eval_tables[id / EVAL_TABLE_SIZE][id % EVAL_TABLE_SIZE].fn;
}
