/*
 * bayes_tok.c - the Bayes tokenizer, following SpamAssassin 4.0's
 * Plugin/Bayes.pm (tokenize, _tokenize_line, _tokenize_headers and the
 * _pre_chew_* functions) with its default constants: body lines and URIs
 * as regions 1 and 2, headers as region 0 with the prefix "H<name>:" (the
 * compressed names *F, *r, *ct ... and the mapped groups *Ad, *MI, *UA),
 * the last two Received headers, tokens of 3 octets or more, the English
 * stop words, long tokens as "sk:" + 7 characters (headers and body) or
 * their 3/4-octet UTF-8 characters ("u8:"), mail addresses and domains
 * split into U*, D* and UD: tokens, and decomposed body tokens. Each token
 * is hashed to the last 5 octets of its SHA-1, as SpamAssassin stores them.
 * Not made: the invisible-text tokens ("I*:") of HTML parts, which the
 * shared MIME view does not keep apart.
 */
/* SHA1_Init/Update/Final: OpenSSL 3's one-shot SHA1() fetches the
 * algorithm under a global lock at every call, a third of the tokenizer's
 * time; the low-level functions hash directly. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <pthread.h>

#include "bayes.h"
#include "internal.h"

#define MAX_TOKEN_LEN	  15
#define MAX_BODY_TOKENS	  50000
#define MAX_URI_TOKENS	  10000
#define MAX_HEADER_TOKENS 10000
#define MAX_HEADER_GROUPS 256

btok bayes_hash(const char *s, size_t n)
{
	unsigned char d[SHA_DIGEST_LENGTH];
	SHA_CTX c;
	SHA1_Init(&c);
	SHA1_Update(&c, s, n);
	SHA1_Final(d, &c);
	btok t = 0;
	for (int i = SHA_DIGEST_LENGTH - 5; i < SHA_DIGEST_LENGTH; i++)
		t = (t << 8) | d[i];
	return t;
}

static void set_grow(struct btoks *o)
{
	size_t nc = o->setcap ? o->setcap * 2 : 1024;
	btok *ns = xcalloc(nc, sizeof(btok));
	for (size_t i = 0; i < o->n; i++) {
		btok k = o->v[i] ? o->v[i] : 1;
		size_t j = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (nc - 1);
		while (ns[j])
			j = (j + 1) & (nc - 1);
		ns[j] = k;
	}
	free(o->set);
	o->set = ns;
	o->setcap = nc;
}

static void emit(struct btoks *o, const char *a, size_t an, const char *b, size_t bn)
{
	char buf[512];
	size_t n = an + bn;
	if (n == 0)
		return;
	char *p = n <= sizeof(buf) ? buf : xmalloc(n);
	memcpy(p, a, an);
	memcpy(p + an, b, bn);
	if (o->text_cb)
		o->text_cb(o->text_arg, p, n);
	btok t = bayes_hash(p, n);
	if (p != buf)
		free(p);
	if ((o->n + 1) * 2 > o->setcap)
		set_grow(o);
	btok k = t ? t : 1;
	size_t j = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (o->setcap - 1);
	while (o->set[j]) {
		if (o->set[j] == k)
			return;
		j = (j + 1) & (o->setcap - 1);
	}
	o->set[j] = k;
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 512;
		o->v = xrealloc(o->v, o->cap * sizeof(btok));
	}
	o->v[o->n++] = t;
}

static void emits(struct btoks *o, const char *pfx, const char *s, size_t n)
{
	emit(o, pfx, strlen(pfx), s, n);
}

void btoks_free(struct btoks *t)
{
	free(t->v);
	free(t->set);
	t->v = t->set = NULL;
	t->n = t->cap = t->setcap = 0;
}

/* ---- regexes (compiled once) ------------------------------------------- */

enum {
	RX_MID_OE,
	RX_MID_EXIM,
	RX_MID_SENDMAIL,
	RX_RCVD_1,
	RX_RCVD_2,
	RX_RCVD_3,
	RX_RCVD_4,
	RX_RCVD_DATE,
	RX_RCVD_IP,
	RX_RCVD_WORDS,
	RX_CT_WORDS,
	RX_RELAY_WORDS,
	RX_N
};

static const struct {
	const char *pat, *repl;
	uint32_t opts;
} rx_def[RX_N] = {
	[RX_MID_OE] =
		{"<([0-9a-f]{4})[0-9a-f]{4}[0-9a-f]{4}\\$([0-9a-f]{4})[0-9a-f]{4}\\$([0-9a-f]{8})@(\\S+)>",
		 " OEA$1 OEB$2 OEC$3 $4 ", 0},
	[RX_MID_EXIM] = {"<[A-Za-z0-9]{7}-[A-Za-z0-9]{6}-0[A-Za-z0-9]@", "", 0},
	[RX_MID_SENDMAIL] = {"<20\\d\\d[01]\\d[0123]\\d[012]\\d[012345]\\d[012345]\\d\\.[A-F0-9]{10,12}@", "",
			     0},
	[RX_RCVD_1] = {"\\swith\\sSMTP\\sid\\sg[\\dA-Z]{10,12}\\s", " ", 0},
	[RX_RCVD_2] = {"\\swith\\sESMTP\\sid\\s[\\dA-F]{10,12}\\s", " ", 0},
	[RX_RCVD_3] = {"\\bid\\s[a-zA-Z0-9]{7,20}\\b", " ", 0},
	[RX_RCVD_4] = {"\\bid\\s[A-Za-z0-9]{7}-[A-Za-z0-9]{6}-0[A-Za-z0-9]", " ", 0},
	[RX_RCVD_DATE] =
		{"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\\s)?[0-3\\s]?[0-9]\\s(?:Jan|Feb|Ma[ry]|Apr|Ju[nl]|Aug|"
		 "Sep|Oct|Nov|Dec)\\s(?:19|20)?[0-9]{2}\\s[0-2][0-9](?:\\:[0-5][0-9]){1,2}\\s(?:\\s*\\(|\\)|"
		 "\\s*(?:[+-][0-9]{4})|\\s*(?:UT|[A-Z]{2,3}T))*",
		 "", 0},
	/* SpamAssassin's test for 10/8 and 192.168/16 compares "10." with
	 * "10" and never holds: every address is cut to its /24 */
	[RX_RCVD_IP] = {"\\b(\\d{1,3}\\.)(\\d{1,3}\\.)(\\d{1,3})(\\.\\d{1,3})\\b", "$1$2$3 ip*$1$2$3$4 ", 0},
	[RX_RCVD_WORDS] = {"\\b(?:with|from|for|SMTP|ESMTP)\\b", " ", 0},
	[RX_CT_WORDS] = {"\\b(?:text|charset)\\b", " ", 0},
	[RX_RELAY_WORDS] = {" [a-z]+=", " ", 0},
};

static pcre2_code *rx[RX_N];
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static void rx_init(void)
{
	for (int i = 0; i < RX_N; i++) {
		int err;
		PCRE2_SIZE off;
		rx[i] = pcre2_compile((PCRE2_SPTR)rx_def[i].pat, PCRE2_ZERO_TERMINATED, rx_def[i].opts, &err,
				      &off, NULL);
		if (!rx[i])
			abort(); /* fixed patterns: a bug */
		pcre2_jit_compile(rx[i], PCRE2_JIT_COMPLETE);
	}
}

/* s with every match of regex i replaced (malloc'd; s freed). */
static char *resub(int i, char *s)
{
	size_t n = strlen(s), cap = n * 2 + 64;
	for (;;) {
		char *o = xmalloc(cap);
		PCRE2_SIZE olen = cap;
		int rc = pcre2_substitute(rx[i], (PCRE2_SPTR)s, n, 0,
					  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, NULL,
					  NULL, (PCRE2_SPTR)rx_def[i].repl, PCRE2_ZERO_TERMINATED,
					  (PCRE2_UCHAR *)o, &olen);
		if (rc == PCRE2_ERROR_NOMEMORY) {
			free(o);
			cap = olen + 1;
			continue;
		}
		if (rc < 0) { /* match limit: leave the value as it is */
			free(o);
			return s;
		}
		free(s);
		return o;
	}
}

/* SpamAssassin's English stop words (bayes_stopword_en of
 * 60_bayes_stopwords.cf, the default language), matched without case. */
static const char *const stopwords[] = {
	"able",	   "all",  "already", "and",	     "any",	"are",	  "because", "both", "can",
	"come",	   "each", "email",   "even",	     "few",	"first",  "for",     "from", "give",
	"has",	   "have", "http",    "information", "into",	"it's",	  "just",    "know", "like",
	"long",	   "look", "made",    "mail",	     "mailing", "mailto", "make",    "many", "more",
	"most",	   "much", "need",    "not",	     "now",	"number", "off",     "one",  "only",
	"out",	   "own",  "people",  "place",	     "right",	"same",	  "see",     "such", "that",
	"the",	   "this", "through", "time",	     "using",	"web",	  "where",   "why",  "with",
	"without", "work", "world",   "year",	     "years",	"you",	  "you're",  "your",
};

/* The stop words in an open-addressing table (filled once, by
 * bayes_tokenize): a token is hashed once instead of compared in a binary
 * search. */
#define SW_SLOTS 512
static const char *sw_table[SW_SLOTS];
static pthread_once_t sw_once = PTHREAD_ONCE_INIT;

static unsigned sw_hash(const char *s, size_t n)
{
	unsigned h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h & (SW_SLOTS - 1);
}

static void sw_init(void)
{
	for (size_t i = 0; i < sizeof(stopwords) / sizeof(stopwords[0]); i++) {
		unsigned j = sw_hash(stopwords[i], strlen(stopwords[i]));
		while (sw_table[j])
			j = (j + 1) & (SW_SLOTS - 1);
		sw_table[j] = stopwords[i];
	}
}

static bool stopword(const char *t, size_t n)
{
	if (n > 11) /* "information" is the longest */
		return false;
	char low[12];
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)t[i]);
	for (unsigned j = sw_hash(low, n); sw_table[j]; j = (j + 1) & (SW_SLOTS - 1))
		if (strncmp(sw_table[j], low, n) == 0 && sw_table[j][n] == 0)
			return true;
	return false;
}

/* ---- one line ------------------------------------------------------------ */

/* Character classes of the tokenizer, one table lookup per octet (the
 * "C" locale's: Perl's \w and the tokenizer's kept ASCII). */
enum { CC_WORD = 1, CC_KEEP = 2 };
static unsigned char cclass[256];
static pthread_once_t cclass_once = PTHREAD_ONCE_INIT;

static void cclass_init(void)
{
	for (int c = 0; c < 128; c++) {
		bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (alnum || c == '_')
			cclass[c] |= CC_WORD;
		if (c && (alnum || strchr(",@*!_'\"$. -", c)))
			cclass[c] |= CC_KEEP;
	}
}

static bool isw(unsigned char c)
{
	return cclass[c] & CC_WORD;
}

static bool keep_ascii(unsigned char c)
{
	return cclass[c] & CC_KEEP;
}

static bool cont(unsigned char c)
{
	return c >= 0x80 && c <= 0xBF;
}

/* The octets a token may hold; anything else becomes a space. */
static size_t map_chars(const unsigned char *s, size_t n, char *o)
{
	size_t w = 0;
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t k = 0;
		if (c < 0x80)
			k = c && keep_ascii(c) ? 1 : 0;
		else if (c >= 0xC0 && c <= 0xDF && i + 1 < n && cont(s[i + 1]))
			k = 2;
		else if (c >= 0xE0 && c <= 0xEF && i + 2 < n && cont(s[i + 1]) && cont(s[i + 2]))
			k = 3;
		else if (c >= 0xF0 && c <= 0xF4 && i + 3 < n && cont(s[i + 1]) && cont(s[i + 2]) &&
			 cont(s[i + 3]))
			k = 4;
		else if (c >= 0xA1)
			k = 1;
		if (k) {
			memcpy(o + w, s + i, k);
			w += k;
			i += k;
		} else {
			o[w++] = ' ';
			i++;
		}
	}
	return w;
}

/* s/(\w)(\.{3,6})(\w)/$1 $2 $3/g and the same for -{2,6}. */
static size_t split_runs(const char *s, size_t n, char *o, char ch, size_t lo, size_t hi)
{
	size_t w = 0, i = 0;
	char run[8];
	memset(run, ch, lo); /* lo <= 6 */
	const char *first = memmem(s, n, run, lo);
	if (!first) { /* most lines: no run long enough */
		memcpy(o, s, n);
		return n;
	}
	if (first > s + 1) { /* the octets before the first ch's word character */
		w = i = (size_t)(first - s) - 1;
		memcpy(o, s, w);
	}
	while (i < n) {
		if (isw((unsigned char)s[i])) {
			size_t k = 0;
			while (i + 1 + k < n && s[i + 1 + k] == ch)
				k++;
			if (k >= lo && k <= hi && i + 1 + k < n && isw((unsigned char)s[i + 1 + k])) {
				o[w++] = s[i];
				o[w++] = ' ';
				memcpy(o + w, s + i + 1, k);
				w += k;
				o[w++] = ' ';
				o[w++] = s[i + 1 + k];
				i += k + 2;
				continue;
			}
		}
		o[w++] = s[i++];
	}
	return w;
}

/* s/(?:^|\.\s+)([A-Z])([^A-Z]+)(?:\s|$)/' '.lc($1).$2.' '/ge on a line
 * whose only white space is ' ', into o (which has room for 2n octets). */
static size_t title_case(const char *s, size_t n, char *o)
{
	size_t i = 0, w = 0;
	while (i < n) {
		size_t cap = (size_t)-1;
		if (i == 0 && isupper((unsigned char)s[0]))
			cap = 0;
		else if (s[i] == '.' && i + 1 < n && s[i + 1] == ' ') {
			size_t j = i + 1;
			while (j < n && s[j] == ' ')
				j++;
			if (j < n && isupper((unsigned char)s[j]))
				cap = j;
		}
		if (cap != (size_t)-1) {
			size_t k = cap + 1;
			while (k < n && !isupper((unsigned char)s[k]))
				k++;
			/* the end e of [^A-Z]+ in (cap+1, k]: the end of the line
			 * or a space */
			size_t e = k;
			while (e > cap + 1 && e < n && s[e] != ' ')
				e--;
			if (e > cap + 1 && (e == n || s[e] == ' ')) {
				o[w++] = ' ';
				o[w++] = (char)tolower((unsigned char)s[cap]);
				memcpy(o + w, s + cap + 1, e - cap - 1);
				w += e - cap - 1;
				o[w++] = ' ';
				i = e < n ? e + 1 : e;
				continue;
			}
		}
		o[w++] = s[i++];
	}
	return w;
}

struct tokctx {
	struct btoks *o;
	pcre2_match_data *md;
	size_t count; /* tokens made in the current region */
};

static void mail_addr_tokens(struct tokctx *c, const char *t, size_t n)
{
	const char *at = NULL;
	for (size_t i = n; i-- > 1;)
		if (t[i] == '@') {
			at = t + i;
			break;
		}
	if (!at || at + 1 >= t + n)
		return;
	emits(c->o, "U*", t, (size_t)(at - t));
	const char *d = at + 1, *end = t + n;
	emits(c->o, "D*", d, (size_t)(end - d));
	for (;;) {
		const char *dot = memchr(d, '.', (size_t)(end - d));
		if (!dot || dot == d || dot + 1 >= end)
			break;
		d = dot + 1;
		emits(c->o, "D*", d, (size_t)(end - d));
	}
}

static bool has_upper(const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (isupper((unsigned char)t[i]))
			return true;
	return false;
}

static bool odd_char(unsigned char c)
{
	return !isw(c) && c != ':' && c != '*';
}

/* The long-token forms; true when the token was replaced by u8: tokens. */
static bool long_token(struct tokctx *c, const char *pfx, int region, char *t, size_t *np)
{
	size_t n = *np;
	bool twocont = false;
	for (size_t i = 0; i + 1 < n && !twocont; i++)
		twocont = cont((unsigned char)t[i]) && cont((unsigned char)t[i + 1]);
	if (twocont) {
		bool any = false;
		for (size_t i = 0; i < n;) {
			unsigned char a = (unsigned char)t[i];
			size_t k = 0;
			if (a >= 0xE0 && a <= 0xEF && i + 2 < n && cont((unsigned char)t[i + 1]) &&
			    cont((unsigned char)t[i + 2]))
				k = 3;
			else if (a >= 0xF0 && a <= 0xF4 && i + 3 < n && cont((unsigned char)t[i + 1]) &&
				 cont((unsigned char)t[i + 2]) && cont((unsigned char)t[i + 3]))
				k = 4;
			if (k) {
				char p[64];
				snprintf(p, sizeof(p), "%su8:", pfx);
				emits(c->o, p, t + i, k);
				any = true;
				i += k;
			} else
				i++;
		}
		if (any)
			return true;
	}
	if (region == 2)
		return false;
	/* 7 characters (UTF-8 sequences count as one) followed by 2+ octets */
	size_t i = 0;
	for (int ch = 0; ch < 7 && i < n; ch++) {
		unsigned char a = (unsigned char)t[i];
		size_t k = 1;
		if (a >= 0xC0 && a <= 0xDF && i + 1 < n && cont((unsigned char)t[i + 1]))
			k = 2;
		else if (a >= 0xE0 && a <= 0xEF && i + 2 < n && cont((unsigned char)t[i + 1]) &&
			 cont((unsigned char)t[i + 2]))
			k = 3;
		else if (a >= 0xF0 && a <= 0xF4 && i + 3 < n && cont((unsigned char)t[i + 1]) &&
			 cont((unsigned char)t[i + 2]) && cont((unsigned char)t[i + 3]))
			k = 4;
		i += k;
	}
	if (i <= n && n - i >= 2) {
		memmove(t + 3, t, i);
		memcpy(t, "sk:", 3);
		*np = i + 3;
	}
	return false;
}

/* The decomposed forms of a body token ("Foo!" -> "Foo", "foo!", "foo"). */
static void decompose(struct tokctx *c, const char *pfx, const char *t, size_t n)
{
	char a[512], b[512];
	if (n > sizeof(a))
		return;
	bool odd = false;
	for (size_t i = 0; i < n && !odd; i++)
		odd = odd_char((unsigned char)t[i]);
	size_t an = 0;
	if (odd) {
		for (size_t i = 0; i < n; i++)
			if (!odd_char((unsigned char)t[i]))
				a[an++] = t[i];
		emits(c->o, pfx, a, an);
	}
	if (has_upper(t, n)) {
		for (size_t i = 0; i < n; i++)
			b[i] = (char)tolower((unsigned char)t[i]);
		emits(c->o, pfx, b, n);
		if (odd) {
			for (size_t i = 0; i < an; i++)
				a[i] = (char)tolower((unsigned char)a[i]);
			emits(c->o, pfx, a, an);
		}
	}
}

static bool trim_char(char ch)
{
	return ch == '-' || ch == '\'' || ch == '"' || ch == '.' || ch == ',';
}

static void one_token(struct tokctx *c, const char *pfx, int region, char *t, size_t n)
{
	while (n && trim_char(*t))
		t++, n--;
	while (n && trim_char(t[n - 1]))
		n--;
	/* the magic tokens of SpamAssassin's DBM store */
	if (n > 2 && t[0] == '*' && t[1] == '*') {
		bool magic = true;
		for (size_t i = 2; i < n && magic; i++)
			magic = t[i] >= 'A' && t[i] <= 'Z';
		if (magic)
			return;
	}
	if (n < 3 || stopword(t, n))
		return;
	if (region) {
		bool mail = false, dom = false;
		for (size_t i = 1; i + 1 < n && !mail; i++)
			mail = t[i] == '@';
		for (size_t i = 1; i + 1 < n && !mail && !dom; i++)
			dom = t[i] == '.' && isalpha((unsigned char)t[i + 1]);
		if (mail)
			mail_addr_tokens(c, t, n);
		else if (dom) {
			emits(c->o, "UD:", t, n);
			const char *d = t, *end = t + n;
			for (;;) {
				const char *dot = memchr(d, '.', (size_t)(end - d));
				if (!dot || dot == d || dot + 1 >= end)
					break;
				d = dot + 1;
				emits(c->o, "UD:", d, (size_t)(end - d));
			}
		}
	}
	if (n > MAX_TOKEN_LEN && !memchr(t, '*', n) && long_token(c, pfx, region, t, &n))
		return;
	if (region)
		decompose(c, pfx, t, n);
	emits(c->o, pfx, t, n);
}

/* _tokenize_line: region 0 headers, 1 body, 2 URIs. */
static void tokenize_line(struct tokctx *c, const char *s, size_t n, const char *pfx, int region)
{
	if (n > 1 << 20)
		n = 1 << 20;
	char sa[8192], sb[8192];
	bool small = n * 4 + 16 <= sizeof(sa);
	char *a = small ? sa : xmalloc(n * 4 + 16), *b = small ? sb : xmalloc(n * 4 + 16);
	char *fa = a, *fb = b;
	size_t m = map_chars((const unsigned char *)s, n, a);
	m = split_runs(a, m, b, '.', 3, 6);
	m = split_runs(b, m, a, '-', 2, 6);
	if (region) {
		m = title_case(a, m, b);
		char *x = a;
		a = b;
		b = x;
	}
	size_t before = c->o->n;
	for (size_t i = 0; i < m;) {
		while (i < m && a[i] == ' ')
			i++;
		size_t j = i;
		while (j < m && a[j] != ' ')
			j++;
		if (j > i) {
			memcpy(b, a + i, j - i);
			one_token(c, pfx, region, b, j - i);
		}
		i = j;
	}
	c->count += c->o->n - before;
	if (!small) {
		free(fa);
		free(fb);
	}
}

/* ---- headers ---------------------------------------------------------- */

static const char *const ignored_hdrs =
	"^(?:(?:X-)?Sender|Delivered-To|Delivery-Date|(?:X-)?Envelope-To|X-MIME-Auto[Cc]onverted|"
	"X-Converted-To-Plain-Text|Subject|Date|X-List|(?:X-)?Mailing-List|(?:X-)?List-(?:Archive|Help|Id|"
	"Owner|"
	"Post|Subscribe|Unsubscribe|Host|Id|Manager|Admin|Comment|Name|Url)|X-Unsub(?:scribe)?|X-Mailman-"
	"Version|"
	"X-Been[Tt]here|X-Loop|Mail-Followup-To|X-eGroups-(?:Return|From)|X-MDMailing-List|X-XEmacs-List|"
	"X-Sympa-To|(?:X-)?Resent-(?:From|To|Date)|(?:X-)?Original-(?:From|To|Date)|X-MailScanner(?:-"
	"SpamCheck)?|"
	"X-Spam(?:-(?:Status|Level|Flag|Report|Hits|Score|Checker-Version))?|X-Antispam|X-RBL-Warning|"
	"X-Mailscanner|X-MDaemon-Deliver-To|X-Virus-Scanned|X-Mass-Check-Id|X-Pyzor|X-DCC-\\S{2,25}-Metrics|"
	"X-Filtered-B[Yy]|X-Scanned-By|X-Scanner|X-AP-Spam-(?:Score|Status)|X-RIPE-Spam-Status|X-SpamCop-[^:]"
	"+|"
	"X-SMTPD|(?:X-)?Spam-Apparently-To|SPAM|X-Perlmx-Spam|X-Bogosity|Content-Class|Thread-(?:Index|Topic)"
	"|"
	"X-Original[Aa]rrival[Tt]ime|(?:X-)?Status|X-Flags|X-Keywords|Replied|Forwarded|Lines|Content-Length|"
	"X-UIDL?|X-IMAPbase|X-Bugzilla-[^:]+|X-VM-(?:Bookmark|(?:POP|IMAP)-Retrieved|Labels|Last-Modified|"
	"Summary-Format|VHeader|v\\d-Data|Message-Order)|X-Gnus-Mail-Source|Xref)$";
static const char *const presence_hdrs =
	"^(?:X-Face|X-(?:Gnu-?PG|PGP|GPG)(?:-Key)?-Fingerprint|D(?:KIM|omainKey)-"
	"Signature|X-Google-DKIM-Signature|ARC-(?:Message-Signature|Seal)|"
	"Autocrypt)$";
static pcre2_code *rx_ignored, *rx_presence, *rx_boundary;
static pthread_once_t hdr_once = PTHREAD_ONCE_INIT;

static void hdr_init(void)
{
	int err;
	PCRE2_SIZE off;
	rx_ignored = pcre2_compile((PCRE2_SPTR)ignored_hdrs, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &err,
				   &off, NULL);
	rx_presence = pcre2_compile((PCRE2_SPTR)presence_hdrs, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &err,
				    &off, NULL);
	rx_boundary = pcre2_compile((PCRE2_SPTR) "boundary=[\"'](.*?)[\"']", PCRE2_ZERO_TERMINATED,
				    PCRE2_CASELESS | PCRE2_DOTALL, &err, &off, NULL);
	if (!rx_ignored || !rx_presence || !rx_boundary)
		abort();
}

static const struct {
	const char *name, *as;
} hdr_compress[] = {
	{"Message-Id", "*m"},
	{"Message-ID", "*M"},
	{"Received", "*r"},
	{"User-Agent", "*u"},
	{"References", "*f"},
	{"In-Reply-To", "*i"},
	{"From", "*F"},
	{"Reply-To", "*R"},
	{"Return-Path", "*p"},
	{"Return-path", "*rp"},
	{"X-Mailer", "*x"},
	{"X-Authentication-Warning", "*a"},
	{"Organization", "*o"},
	{"Organisation", "*o"},
	{"Content-Type", "*ct"},
	{"Content-Disposition", "*cd"},
	{"Content-Transfer-Encoding", "*ce"},
	{"x-spam-relays-trusted", "*RT"},
	{"x-spam-relays-untrusted", "*RU"},
};

/* The header groups: prefix -> value, values of one prefix joined by ' '. */
struct hgroups {
	char *name[MAX_HEADER_GROUPS];
	struct sbuf val[MAX_HEADER_GROUPS];
	size_t n;
};

static void hg_add(struct hgroups *g, const char *name, const char *v)
{
	size_t i = 0;
	while (i < g->n && strcmp(g->name[i], name) != 0)
		i++;
	if (i == g->n) {
		if (g->n == MAX_HEADER_GROUPS)
			return;
		g->name[g->n] = xstrdup(name);
		memset(&g->val[g->n], 0, sizeof(g->val[0]));
		g->n++;
	} else
		sb_add(&g->val[i], " ", 1);
	sb_adds(&g->val[i], v);
}

static bool rx_is(pcre2_code *re, pcre2_match_data *md, const char *s)
{
	return pcre2_match(re, (PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, 0, 0, md, re_limits()) >= 0;
}

/* U*local D*domain D*parent ... as _tokenize_mail_addrs, as text. */
static void addr_words(struct sbuf *b, const char *addr)
{
	const char *at = strrchr(addr, '@');
	if (!at || at == addr || !at[1])
		return;
	sb_adds(b, " U*");
	sb_add(b, addr, (size_t)(at - addr));
	const char *d = at + 1;
	sb_adds(b, " D*");
	sb_adds(b, d);
	for (;;) {
		const char *dot = strchr(d, '.');
		if (!dot || dot == d || !dot[1])
			break;
		d = dot + 1;
		sb_adds(b, " D*");
		sb_adds(b, d);
	}
}

static char *chew_addr(const struct bayes_src *src, const char *raw)
{
	struct sbuf b = {0};
	struct sift_addrs *a = src->addrlist_parse ? src->addrlist_parse(raw) : NULL;
	for (size_t i = 0; a && i < a->count; i++) {
		const char *ph = a->mb[i].display;
		while (ph && *ph) {
			while (*ph == ' ' || *ph == '\t')
				ph++;
			size_t k = strcspn(ph, " \t");
			if (k) {
				sb_adds(&b, " N*");
				sb_add(&b, ph, k);
			}
			ph += k;
		}
		/* the address as written (the parser lower-cases domains) */
		const char *ad = a->mb[i].addr, *in = strcasestr(raw, ad);
		char *orig = in ? xstrndup(in, strlen(ad)) : NULL;
		addr_words(&b, orig ? orig : ad);
		free(orig);
	}
	free(a);
	char *r = xstrdup(sb_str(&b));
	free(b.d);
	return r;
}

static char *chew_content_type(pcre2_match_data *md, char *v)
{
	struct sbuf b = {0}, bound = {0};
	size_t off = 0, n = strlen(v);
	bool found = false;
	while (off <= n && pcre2_match(rx_boundary, (PCRE2_SPTR)v, n, off, 0, md, re_limits()) >= 0) {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		sb_add(&b, v + off, ov[0] - off);
		sb_add(&b, " ", 1);
		bound.n = 0;
		sb_add(&bound, v + ov[2], ov[3] - ov[2]);
		found = true;
		off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	if (off < n)
		sb_add(&b, v + off, n - off);
	if (found) {
		const char *s = sb_str(&bound);
		for (size_t i = 0; s[i];) {
			if (strchr("-_.=", s[i])) {
				size_t k = strspn(s + i, "-_.=");
				sb_add(&b, " ", 1);
				sb_add(&b, s + i, k);
				sb_add(&b, " ", 1);
				i += k;
			} else {
				sb_adds(&b, isxdigit((unsigned char)s[i]) ? "H" : (char[]){s[i], 0});
				i++;
			}
		}
	}
	free(bound.d);
	free(v);
	char *r = xstrdup(sb_str(&b));
	free(b.d);
	return resub(RX_CT_WORDS, r);
}

static bool name_is(const char *n, const char *const *list)
{
	for (; *list; list++)
		if (strcasecmp(n, *list) == 0)
			return true;
	return false;
}

/* One header as _tokenize_headers prepares it. */
static void one_header(const struct bayes_src *src, struct hgroups *g, pcre2_match_data *md, const char *name,
		       const char *value, const char *raw)
{
	static const char *const mid[] = {"Message-Id", "X-Message-Id", "Resent-Message-Id", NULL};
	static const char *const addr[] = {"Return-Path",
					   "From",
					   "To",
					   "Cc",
					   "Reply-To",
					   "Errors-To",
					   "Mail-Followup-To",
					   "Sender",
					   "X-Return-Path",
					   "X-From",
					   "X-To",
					   "X-Cc",
					   "X-Reply-To",
					   "X-Errors-To",
					   "X-Mail-Followup-To",
					   "X-Sender",
					   "Resent-Return-Path",
					   "Resent-From",
					   "Resent-To",
					   "Resent-Cc",
					   "Resent-Reply-To",
					   "Resent-Errors-To",
					   "Resent-Mail-Followup-To",
					   "Resent-Sender",
					   NULL};
	char *v = xstrdup(value);
	if (name_is(name, mid)) {
		v = resub(RX_MID_OE, v);
		v = resub(RX_MID_EXIM, v);
		v = resub(RX_MID_SENDMAIL, v);
		for (char *p = v; *p; p++)
			if (!isalnum((unsigned char)*p) && *p != '_')
				*p = ' ';
	} else if (name_is(name, addr)) {
		free(v);
		v = chew_addr(src, raw ? raw : value);
	} else if (strcmp(name, "Received") == 0) {
		for (int i = RX_RCVD_1; i <= RX_RCVD_WORDS; i++)
			v = resub(i, v);
	} else if (strcmp(name, "Content-Type") == 0) {
		v = chew_content_type(md, v);
	} else if (strcmp(name, "MIME-Version") == 0) {
		char *p = strstr(v, "1.0");
		if (p)
			memmove(p, p + 3, strlen(p + 3) + 1);
	} else if (rx_is(rx_presence, md, name)) {
		free(v);
		v = xstrdup("1");
	} else if (strncmp(name, "x-spam-relays-", 14) == 0) {
		v = resub(RX_RELAY_WORDS, v);
	}
	static const char *const mi[] = {"In-Reply-To", "References", "Message-ID", NULL};
	static const char *const ad[] = {"From", "To", "Cc", NULL};
	static const char *const ua[] = {"X-Mailer", "User-Agent", NULL};
	if (name_is(name, mi))
		hg_add(g, "*MI", v);
	if (name_is(name, ad))
		hg_add(g, "*Ad", v);
	if (name_is(name, ua))
		hg_add(g, "*UA", v);
	const char *as = name;
	for (size_t i = 0; i < sizeof(hdr_compress) / sizeof(hdr_compress[0]); i++)
		if (strcmp(name, hdr_compress[i].name) == 0)
			as = hdr_compress[i].as;
	hg_add(g, as, v);
	free(v);
}

static bool ignored(const struct bayes_src *src, const char *name)
{
	return src->nignore && bsearch(&name, src->ignore, src->nignore, sizeof(char *), namecasecmp);
}

static void tokenize_headers(const struct bayes_src *src, struct tokctx *c)
{
	struct hgroups *g = xcalloc(1, sizeof(*g));
	const struct sift_mime *m = src->mime;
	const struct sift_mime_header *rcvd[2] = {NULL, NULL};
	for (size_t i = 0; i < m->header_count; i++) {
		const struct sift_mime_header *h = &m->headers[i];
		if (strcasecmp(h->name, "Received") == 0) {
			rcvd[0] = rcvd[1];
			rcvd[1] = h;
			continue;
		}
		if (!h->value || !h->value[strspn(h->value, " \t\r\n")] ||
		    rx_is(rx_ignored, c->md, h->name) || ignored(src, h->name))
			continue;
		one_header(src, g, c->md, h->name, h->value, h->raw);
	}
	/* the metadata: relays (internal = trusted and external = untrusted
	 * while no internal_networks are set) */
	const char *meta[4][2] = {{"x-spam-relays-trusted", src->relays_trusted},
				  {"x-spam-relays-untrusted", src->relays_untrusted},
				  {"x-spam-relays-internal", src->relays_trusted},
				  {"x-spam-relays-external", src->relays_untrusted}};
	for (int k = 0; k < 4; k++)
		if (meta[k][1] && *meta[k][1])
			one_header(src, g, c->md, meta[k][0], meta[k][1], NULL);
	for (int k = 1; k >= 0 && !ignored(src, "Received"); k--)
		if (rcvd[k] && rcvd[k]->value[strspn(rcvd[k]->value, " \t\r\n")])
			one_header(src, g, c->md, rcvd[k]->name, rcvd[k]->value, rcvd[k]->raw);
	c->count = 0;
	for (size_t i = 0; i < g->n; i++) {
		if (c->count < MAX_HEADER_TOKENS) {
			char pfx[300];
			snprintf(pfx, sizeof(pfx), "H%s:", g->name[i]);
			tokenize_line(c, sb_str(&g->val[i]), g->val[i].n, pfx, 0);
		}
		free(g->name[i]);
		free(g->val[i].d);
	}
	free(g);
}

static int hexval(char ch)
{
	return ch >= '0' && ch <= '9'	? ch - '0'
	       : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
	       : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
					: -1;
}

/* A URI and, as SpamAssassin's canonical URI list has it, its
 * %-decoded form when that differs. */
static void uri_tokens(struct tokctx *c, const char *u)
{
	size_t n = strlen(u);
	tokenize_line(c, u, n, "", 2);
	if (!memchr(u, '%', n))
		return;
	char *d = xmalloc(n + 1);
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		int h1, h2;
		if (u[i] == '%' && i + 2 < n && (h1 = hexval(u[i + 1])) >= 0 &&
		    (h2 = hexval(u[i + 2])) >= 0) {
			d[w++] = (char)(h1 * 16 + h2);
			i += 2;
		} else
			d[w++] = u[i];
	}
	if (w != n)
		tokenize_line(c, d, w, "", 2);
	free(d);
}

void bayes_tokenize(const struct bayes_src *src, struct btoks *out)
{
	pthread_once(&rx_once, rx_init);
	pthread_once(&hdr_once, hdr_init);
	pthread_once(&cclass_once, cclass_init);
	pthread_once(&sw_once, sw_init);
	struct tokctx c = {.o = out, .md = pcre2_match_data_create(8, NULL)};
	for (size_t i = 0; i < src->nlines && c.count < MAX_BODY_TOKENS; i++)
		tokenize_line(&c, src->lines[i], src->lens[i], "", 1);
	c.count = 0;
	for (size_t i = 0; src->mime && i < src->mime->uri_count && c.count < MAX_URI_TOKENS; i++)
		uri_tokens(&c, src->mime->uris[i].uri);
	for (size_t i = 0; i < src->nmore_uris && c.count < MAX_URI_TOKENS; i++)
		uri_tokens(&c, src->more_uris[i]);
	if (src->mime)
		tokenize_headers(src, &c);
	pcre2_match_data_free(c.md);
}
