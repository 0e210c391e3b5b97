/*
 * internal.h - what the files of the spam rule engine share (not for the
 * plugin's users: they see engine.h). The engine's rooms:
 *   engine.c     the ruleset (rules by name), spam_engine_new/free
 *   parse.c      rule files: loading, the directive table
 *   ifexpr.c     `if` expressions
 *   replace.c    ReplaceTags
 *   compile.c    PCRE2 compilation, rule groups, metas, finalization
 *   hyperscan.c  Hyperscan databases: cache, background compile, scratch
 *   prefix.c     shorter prefilters for the regexes Hyperscan scans slowly
 *   guard.c      first-character guards on the branches of large alternations
 *   scan.c       per message: scanning the groups, metas, the result
 *   texts.c      per message: the texts rules match (headers, body ...)
 *   relay.c      Received: headers (relays) and RFC 2822 dates
 *   nets.c       trusted_networks, internal_networks, msa_networks
 *   addr.c       addresses in header values
 *   evals.c      eval: functions
 *   lint.c       lint, stats and the X-Spam-Status report
 * Hot paths (per match or per octet) are static inline here or static in
 * the one file that runs them.
 */
#ifndef SPAM_INTERNAL_H
#define SPAM_INTERNAL_H

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#ifdef SPAM_HAVE_HS
#include <hs.h>
#endif

#include "engine.h"

/* ---- small utilities ---------------------------------------------------- */

static inline void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}
static inline void *xcalloc(size_t n, size_t s)
{
	void *p = calloc(n ? n : 1, s ? s : 1);
	if (!p)
		abort();
	return p;
}
static inline void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}
static inline char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}
static inline char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct sbuf {
	char *d;
	size_t n, cap;
};
static inline void sb_add(struct sbuf *b, const void *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2 + 64;
		b->d = xrealloc(b->d, b->cap);
	}
	memcpy(b->d + b->n, p, n);
	b->n += n;
	b->d[b->n] = 0;
}
static inline void sb_adds(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}
static inline const char *sb_str(struct sbuf *b)
{
	if (!b->d)
		sb_add(b, "", 0);
	return b->d;
}

static inline long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h;
}

/* ---- rules ----------------------------------------------------------------- */

enum rtype { R_NONE = 0, R_HEADER, R_BODY, R_RAWBODY, R_FULL, R_URI, R_MIMEHEADER, R_META, R_SYMBOL, R_TMAX };
static const char *const rtype_names[] __attribute__((unused)) = {
	"none", "header", "body", "rawbody", "full", "uri", "mimeheader", "meta", "symbol_score"};

#define TF_MULTIPLE    0x01
#define TF_NET	       0x02
#define TF_NICE	       0x04
#define TF_LEARN       0x08
#define TF_USERCONF    0x10
#define TF_NOAUTOLEARN 0x20
/* network rules (dnsbl.c, dnsbl_uri.c) */
#define TF_DOMAINS_ONLY 0x40
#define TF_IPS_ONLY	0x80
#define TF_A		0x100
#define TF_NS		0x200
#define TF_NOTRIM	0x400
#define TF_NOSUBJECT	0x800 /* body: not the subject line (the first) */

struct rule {
	char *name;
	enum rtype type;
	char *where; /* file:line of the definition */
	/* regex rules */
	char *pattern, *flags;
	bool neg;     /* !~ */
	bool exists;  /* header NAME exists:Hdr */
	char *target; /* header spec (Subject, ALL, From:addr ...) */
	char *unset;  /* [if-unset: ...] */
	int target_idx;
	pcre2_code *re;		   /* compiled at load; matched only through rule_code() */
	_Atomic(pcre2_code *) jit; /* re once JIT-compiled (at its first match) */
	/* a regex too large for PCRE2 as written: the pattern re was compiled
	 * from (its repeated group as calls) and its options, for the anchored
	 * copy that is tried at the offsets where Hyperscan says a match may
	 * start (rule_anchored); NULL for the others */
	char *pcre_pat;
	uint32_t pcre_fl;
	/* for those: prefilter_chain(pattern), the offsets of the starts
	 * database that must follow one where a match starts */
	unsigned chain;
	_Atomic(pcre2_code *) anch;
	bool utf;
	bool hs_exact; /* PCRE2 refused it (too large): Hyperscan alone, exact mode */
	/* a check in C that every subject the regex matches passes, for a
	 * shape Hyperscan scans slowly (native.c): PCRE2 is tried only on
	 * the texts that pass; NULL for most rules */
	struct native_pf *npf;
	/* eval */
	char *eval_fn;
	char **eval_args;
	int neval;
	int eval_id;
	/* meta */
	char *meta_src;
	int *rpn; /* tokens: >=0 rule index; negative = operator/number codes */
	double *rpn_num;
	int nrpn;
	bool meta_done_order;
	/* attributes */
	double score;	  /* the score of the engine's score set */
	double scores[4]; /* `score NAME s0 s1 s2 s3`: one per score set */
	bool has_score;
	char *describe;
	unsigned tflags;
	int maxhits;
	int priority;
	bool disabled;
	char *why; /* why disabled */
	int group; /* index of the rgroup it belongs to, -1 none */
	/* SpamAssassin runs no rule whose score is 0 in the score set in use
	 * (a rule not run is false in metas): bit s of zero_sets is set when
	 * `score` gives the rule 0 in set s; off: 0 in both sets the engine
	 * can use (with and without Bayes), or a __ rule that nothing which
	 * runs reads: the rule is never compiled nor run. */
	unsigned char zero_sets;
	bool off;
};

/* trusted_networks & co (nets.c) */
struct netmask {
	unsigned char a[16];
	int bits;
	bool v6, neg;
};
struct netset {
	struct netmask *n;
	size_t count;
};
/* Adds the networks of a directive's value; -1 (and *bad, the first bad
 * entry, to free) when one does not parse. */
int netset_add(struct netset *ns, const char *list, char **bad);
void netset_clear(struct netset *ns);
/* As SpamAssassin's NetSet: the first entry containing ip decides (a `!`
 * entry excludes); 127.0.0.0/8 and ::1 are always in. */
bool netset_contains(const struct netset *ns, const char *ip);

struct lintmsg {
	char *text;
	bool error;
};

/* A group of regex rules matched against the same texts. */
struct rgroup {
	enum rtype type;
	int target_idx; /* header groups */
	int *rules;	/* rule indexes */
	size_t n;
#ifdef SPAM_HAVE_HS
	hs_database_t *exact_db; /* rules PCRE2 cannot compile (hs_exact) */
#endif
	int *pcre_only; /* rules matched by PCRE2 alone in the base matcher */
	size_t npcre;
};

/* What a target reads: headers of the message, or a text made for it */
enum tkind { TK_HEADER, TK_ALL, TK_ENVFROM, TK_SIFT, TK_RELAYS };

struct target {
	char *name; /* the header name or special name */
	bool raw, addr, nameonly, exists;
	char *spec; /* full spec text, for dedup */
	/* set when the rules load, read without reading name: its kind, and
	 * for TK_HEADER the hname_hash of each header name it reads (ToCc
	 * two, MESSAGEID three) */
	unsigned char kind, nnames;
	uint32_t nhash[3];
};

/* A header name's hash, the same for names strcasecmp finds equal (ASCII
 * letters folded): two names of different hashes differ. */
static inline uint32_t hname_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ ((unsigned char)*s | 0x20)) * 16777619u;
	return h;
}

struct scratch_pool {
	pthread_mutex_t lock;
#ifdef SPAM_HAVE_HS
	hs_scratch_t *proto;
	hs_scratch_t **free;
#endif
	size_t nfree, cap;
};

/* A header rule as post_headers reads it (without reading the rule: a
 * message touches every one of them, and the rules are far apart). */
struct post_hdr {
	int ri, target;
	unsigned char zero_sets;
	bool exists, neg, mime, re;
	/* 1 + the hits of an absent header (the if-unset text's matches, or
	 * a match of the empty string), the same for every message; 0 until
	 * a message first needs it */
	_Atomic int absent_hits;
};

struct spam_engine {
	struct rule *rules;
	size_t nrules, rcap;
	/* name -> index hash */
	int *hash;
	size_t hcap;
	struct target *targets;
	size_t ntargets;
	struct rgroup *groups;
	size_t ngroups;
	int *meta_order; /* metas in evaluation order */
	size_t nmeta;
	/* the metas of meta_order as one program, read front to back per
	 * message (a rule's own rpn arrays are scattered in memory): per meta
	 * its rule index, zero_sets and token count, then the tokens, an
	 * OP_NUM followed by its number's index in meta_num */
	int *meta_code;
	size_t nmeta_code;
	double *meta_num;
	/* each meta's value when no rule hits, per score set ([set * nmeta
	 * + k] for meta_order[k]), and the metas that read each rule (the
	 * positions in meta_order from meta_dep_at[rule] to meta_dep_at[rule
	 * + 1] in meta_dep): a meta none of whose inputs differs from its
	 * value there has that value, and is not evaluated */
	unsigned char *meta_base;
	int *meta_dep_at, *meta_dep;
	double required;
	struct lintmsg *lint;
	size_t nlint;
	/* config state */
	char **plugins; /* loaded plugin modules */
	size_t nplugins;
	/* replace tags */
	char **tag_names, **tag_vals;
	size_t ntags;
	char **pre_names, **pre_vals, **inter_names, **inter_vals, **post_names, **post_vals;
	size_t npre, ninter, npost;
	char **replace_rules;
	size_t nreplace;
	char **freemail; /* freemail_domains: exact names, sorted after load */
	size_t nfreemail, freemail_cap;
	char **bayes_ignore; /* bayes_ignore_header names, sorted after load (namecasecmp) */
	size_t nbayes_ignore;
	char **freemail_glob; /* entries with * or ? */
	size_t nfreemail_glob;
	/* enlist_uri_host (NAME) [!]HOST...: the URI host lists, each host
	 * with its verdict (0 for "!HOST", an exception); blocklist_uri_host
	 * and welcomelist_uri_host fill BLOCK and WELCOME */
	struct urilist {
		char *name;
		char **host;
		unsigned char *verdict;
		size_t n;
	} * urilists;
	size_t nurilists;
	/* FreeMail's body address patterns (freemail_compile), NULL without
	 * freemail_domains or util_rb_tld: an address, an address with what
	 * marks it as not a reply address, a URL holding an '@' */
	pcre2_code *fm_email, *fm_email_ctx, *fm_url_at;
	pcre2_code **redir;  /* redirector_pattern (uris.c) */
	pcre2_code *bare_re; /* URIs in text, for those without a scheme (uris.c) */
	size_t nredir;
	/* rule index lists by what the per-message pass does with them */
	struct post_hdr *post_hdr; /* header rules, after the scan (post_headers) */
	int *eval_rules, *sym_rules;
	size_t npost_hdr, neval_rules, nsym_rules;
	/* per score set: the rules it scores 0, which are not run (and are
	 * run in another set, else they are off) */
	int *notrun[4];
	size_t nnotrun[4];
	size_t body_scan_size;
	/* trusted_networks, internal_networks, msa_networks (_conf: configured) */
	struct netset trusted_nets, internal_nets, msa_nets;
	bool trusted_conf, internal_conf;
	int score_set; /* 0-3: SpamAssassin's score sets (bit 0 network, bit 1 Bayes) */
	bool use_hs;
	char *cache_dir;	  /* NULL: no cache */
	struct scratch_pool pool; /* for the exact databases */
#ifdef SPAM_HAVE_HS
	_Atomic(struct hsmatch *) hs; /* the Hyperscan matcher, once ready */
	/* its background compile */
	struct hsmatch *bg_match;
	bool *bg_need; /* per group: compiled by the child */
	pthread_t bg_thread;
	bool bg_thread_started, bg_cancel, from_cache;
	pthread_mutex_t bg_lock;
	pthread_cond_t bg_cond;
	pid_t bg_child;
	int bg_fd, bg_state;
	char *bg_err;
	long long bg_start, bg_timeout_ms; /* bg_timeout_ms: 0 = no bound */
	int bg_jobs;			   /* groups compiled at the same time */
	unsigned cache_errors;
	char *cache_why; /* why the cache directory is not used */
#endif
	unsigned stats_disabled, stats_eval_unknown, stats_off, stats_unused;
	int include_depth;
	void (*log)(int level, const char *msg);
	struct netconf *net; /* network test settings (dnsbl.c); NULL: defaults */
};

#ifdef SPAM_HAVE_HS
/* The Hyperscan matcher (hyperscan.c): per group a prefilter, a starts and a
 * full database. */
struct hsgroup {
	hs_database_t *db; /* the HS_IN_DB rules */
	/* per group position: HS_IN_DB (a prefilter in db; HS_RELAXED
	 * added: an exact pattern of the rule relaxed, prefix.c; HS_ASCII
	 * added: its ASCII form), HS_STARTS (in the starts database only), 0
	 * (in none) */
	unsigned char *in_db;
	/* the reversed regexes of some long rules (HS_STARTS), all matches
	 * reported: where their matches may start (scan.c). A line with no
	 * such offset has no match of the rule, so these rules are in no
	 * other database */
	hs_database_t *starts_db;
	unsigned *starts; /* their group positions */
	size_t nstarts;
	/* the body rules whose pattern in db is its form for the lines of
	 * ASCII text (HS_ASCII, prefilter_ascii), whole: scanned on the lines
	 * with an octet of 0x80 or above or a '&' */
	hs_database_t *full_db;
	int *pcre_only;
	size_t npcre;
	bool loaded; /* from the cache or the compiler */
};

struct hsmatch {
	struct hsgroup *g; /* per group */
	struct scratch_pool pool;
	unsigned nhs, npcre, nrelaxed, nstarts, nascii, nnative;
};
#define HS_IN_DB   1
#define HS_RELAXED 2
#define HS_STARTS  4
#define HS_ASCII   8

/* The database of hg holding a rule whose in_db flags are f, or NULL. */
static inline const hs_database_t *hsgroup_db_of(const struct hsgroup *hg, unsigned char f)
{
	if (f & HS_ASCII) /* in db as its ASCII form, if that can match */
		return hg->full_db;
	return (f & HS_IN_DB) ? hg->db : f == HS_STARTS ? hg->starts_db : NULL;
}
#endif

/* meta: tokenize into RPN. Operators are coded as negative ints. */
enum {
	OP_NUM = -1,
	OP_NOT = -2,
	OP_MUL = -3,
	OP_DIV = -4,
	OP_ADD = -5,
	OP_SUB = -6,
	OP_LT = -7,
	OP_GT = -8,
	OP_LE = -9,
	OP_GE = -10,
	OP_EQ = -11,
	OP_NE = -12,
	OP_AND = -13,
	OP_OR = -14,
	OP_LP = -15,
	OP_NEG = -16,
	OP_UNKNOWN = -17
};

/* ---- per message ------------------------------------------------------------ */

/* The code a match of r runs: r->re, JIT-compiled at its first use (most
 * rules of a ruleset never reach PCRE2 once Hyperscan prefilters them, and
 * JIT code is most of PCRE2's memory). Many threads at once. */
pcre2_code *rule_jit(const struct rule *r);
static inline pcre2_code *rule_code(const struct rule *r)
{
	pcre2_code *c = atomic_load_explicit(&r->jit, memory_order_acquire);
	return c ? c : rule_jit(r);
}
/* r's regex compiled anchored (PCRE2_ANCHORED; JIT does not take the
 * option at match time), made at its first use; NULL when r has none. */
pcre2_code *rule_anchored(const struct rule *r);

/* ImageInfo (evals_mime.c): the pixel area of decoded image data of a
 * kind, as SpamAssassin reads its size; 0 when it finds none. */
enum { IMG_ALL, IMG_GIF, IMG_PNG, IMG_JPEG, IMG_KINDS };
unsigned long long spam_image_area(int kind, const unsigned char *d, size_t n);

/* ---- native prefilters (native.c) -------------------------------------------- */

/* A top-level repeat of a class this long or longer makes a run check. */
#define NATIVE_MIN_RUN 8
/* A counter: at most this many alternatives of at most this many octets. */
#define NATIVE_COUNT_ALTS 32
#define NATIVE_COUNT_LEN  4
/* The words checks of a group with the same classes share one pass. */
#define NATIVE_MAX_SHARED 8
/* A sequence check's positions share 64-bit words, this many per pass
 * (a multiple of 4: vectors of 256 bits). */
#define NATIVE_SEQ_WORDS 12
/* The octets that enter and that keep each position of sequence checks:
 * bit b of word w is position 64 * w + b. */
struct native_seqtab {
	uint64_t enter[256][NATIVE_SEQ_WORDS], stay[256][NATIVE_SEQ_WORDS];
	uint64_t first[NATIVE_SEQ_WORDS]; /* each check's first position */
	unsigned used;			  /* the next free position */
};
struct native_pf {
	/* octet -> NATIVE_IN: in the class, NATIVE_SEP: a separator */
	unsigned char kind[256];
	unsigned min;	/* the run's length; each word's */
	unsigned words; /* words in a row; 0 for a run */
	/* words: the check whose pass finds this one's answer too (itself
	 * when first), this one's bit in its answers; on the first, the
	 * checks it answers for */
	const struct native_pf *lead;
	unsigned slot;
	const struct native_pf *shared[NATIVE_MAX_SHARED];
	unsigned nshared;
	/* a sequence: its positions (0: another shape), its table (on a lead,
	 * every check it answers for side by side; NULL on the others once
	 * shared) and its last position's bit in its lead's table (slot) */
	unsigned seq;
	struct native_seqtab *tab;
	/* a counter (native_counter): its alternatives in order, each of
	 * alen[] octets, octet k of alternative a in aset[a *
	 * NATIVE_COUNT_LEN + k]; afirst: octet -> the alternatives it may
	 * begin, as bits (0 alternatives: another shape) */
	unsigned nalt;
	unsigned char alen[NATIVE_COUNT_ALTS];
	struct fset *aset;
	uint32_t *afirst;
};
#define NATIVE_IN  1
#define NATIVE_SEP 2
/* The answers of the last shared pass, for one text: reset (lead NULL)
 * before each text. */
struct native_memo {
	const struct native_pf *lead;
	uint64_t bits[NATIVE_SEQ_WORDS];
};
/* The native prefilter of a rule's regex (malloc'd), NULL when it has none
 * of the shapes native.c knows. */
struct native_pf *native_prefilter(const char *pat, const char *flags);
/* A counter for a multiple rule whose regex is an alternation of short
 * fixed sequences of octets (__LOWER_E's e, __E_LIKE_LETTER's e or its
 * look-alikes in UTF-8): native_count gives what PCRE2's count would,
 * without PCRE2. Malloc'd; NULL for any other regex. */
struct native_pf *native_counter(const char *pat, const char *flags);
/* The matches of n's regex in s, as count_matches finds them (leftmost,
 * the first alternative that matches there, the next search from its
 * end), at most max. */
int native_count(const struct native_pf *n, const char *s, size_t len, int max);
/* Links the words checks of one group (n of them in v) that can share a
 * pass. */
void native_share(struct native_pf *const *v, size_t n);
void native_free(struct native_pf *n);
/* Whether s may hold a match of the regex n was made for: false only
 * where it cannot. */
bool native_possible(const struct native_pf *n, const char *s, size_t len, struct native_memo *memo);
/* Whether native_possible answers n from memo, without a pass of its own. */
bool native_memoized(const struct native_pf *n, const struct native_memo *memo);

/* URIs found without a scheme (uris.c: bare_uris_find) */
struct bare_uris {
	char **uri;  /* "http://" + what was found */
	char **host; /* its domain, lower case */
	size_t n, cap;
};

struct msgctx {
	const struct spam_engine *e;
	const struct spam_input *in;
	const struct sift_mime *mime;
	int *hits;    /* per rule */
	bool *done;   /* per rule: hit and not multiple, skip further */
	char **tvals; /* per target: value or NULL (unset) */
	bool *tdone;
	uint32_t *hhash; /* the hname_hash of each of the message's headers */
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	/* body texts */
	char **lines;
	size_t *lens;
	size_t nlines;
	char **raws;
	size_t *rawlens;
	size_t nraws;
	char *full;
	size_t full_len;
	char *subject;
	int cur_rule;
	struct spam_profile *prof; /* in->profile */
	/* candidates from a Hyperscan scan: group positions, each once (a
	 * position's cand_mark is the scan's mark once it is in cand) */
	int *cand;
	size_t ncand;
	unsigned *cand_mark;
	unsigned mark;
	struct native_memo nat; /* native.c's answers for the text being scanned */
	/* start offsets of the HS_STARTS rules in one text of one group
	 * (scan.c): (group position, end offset in the reversed text) */
	const char *st_text;
	size_t st_gi;
	char *st_rev;
	size_t st_revcap;
	unsigned *st_id, *st_end, *st_tmp;
	size_t nst, st_cap;
	bool st_over; /* more than STARTS_MAX, or a scan error: search whole */
	long long deadline;
	bool timed_out;
	bool in_subject;		 /* scanning the body's first line, the subject */
	char **uris;			 /* what the uri rules see (uris.c), NULL until built */
	struct bare_uris bare;		 /* msg_bare_uris, when not the net's */
	const struct bare_uris *bare_of; /* msg_bare_uris: &bare or the net's */
	bool lines_borrowed;		 /* lines, lens: in->net's (net_body) */
	size_t nuris;
	struct relayinfo *relays;
	/* envelope_from() from a header: its address (malloc'd), found once */
	char *envfrom;
	bool envfrom_done;
	/* evals_mime.c's statistics, computed once per message */
	struct {
		bool stats_done, madiff_done, upper_done;
		int ascii_illegal;
		double unicode_ratio, multipart_ratio, madiff, upper;
		size_t base64_len, madiff_html, madiff_text;
		bool img_done;
		unsigned long long img_area[IMG_KINDS]; /* by IMG_* */
		int date_diff;	    /* HeaderEval's date_diff: 0 not yet, 1 known, -1 none */
		double date_diff_s; /* its value */
		int fm_body;	    /* FreeMail's body parse: 0 not yet, 1 done, -1 skipped */
		size_t nfm;	    /* the freemail addresses it found: */
		char fm[2][256];
		/* check_freemail_replyto's answers ('replyto', 'reply'):
		 * 0 not yet, else 1 + the answer */
		int fm_replyto[2];
		int hotmail; /* hotmail_check's answer: 0 not yet, else 1 + it */
	} ev;
	/* Bayes (bayes_engine.c) */
	struct btoks *btoks;
	double bayes_p;
	bool bayes_done;
	int set; /* the score set of this message */
#ifdef SPAM_HAVE_HS
	const struct hsmatch *hm; /* NULL: the base matcher */
	struct scratch_pool *pool;
	hs_scratch_t *scratch;
#endif
};

/* Whether the message's scoring deadline (m->deadline, now_ms(); 0 = none)
 * has passed: then m->timed_out is set, and the message is not scored
 * (spam_result's timed_out). The long evals ask between steps. */
static inline bool msg_late(struct msgctx *m)
{
	if (!m->timed_out && m->deadline && now_ms() >= m->deadline)
		m->timed_out = true;
	return m->timed_out;
}

/* The next header `name` from index *start on (advanced past it). */
static inline const struct sift_mime_header *mh(const struct sift_mime *m, const char *name, size_t *start)
{
	/* the first octets compared first, case folded (equal under
	 * strcasecmp implies equal after | 0x20): most names differ there */
	unsigned char c0 = (unsigned char)name[0] | 0x20;
	for (size_t i = *start; i < m->header_count; i++)
		if (((unsigned char)m->headers[i].name[0] | 0x20) == c0 &&
		    strcasecmp(m->headers[i].name, name) == 0) {
			*start = i + 1;
			return &m->headers[i];
		}
	return NULL;
}

/* A hit count per rule: eval: functions (evals.c). */
typedef int (*eval_fn)(struct msgctx *m, const struct rule *r);
struct evaldef {
	const char *name;
	eval_fn fn;
};
extern const struct evaldef evals[];
extern const struct evaldef evals_mime[];  /* evals_mime.c */
extern const struct evaldef evals_relay[]; /* evals_relay.c */
/* An eval's id (>= 0; -1 unknown) and its function. */
int eval_lookup(const char *name);
eval_fn eval_get(int id);
static inline const char *eval_arg(const struct rule *r, int i)
{
	return i < r->neval ? r->eval_args[i] : "";
}
/* s matches the PCRE2 pattern re: compiled for this call (re_match_str,
 * for patterns made per message), or once per process (re_match_lit, for
 * the fixed patterns of the eval functions) */
bool re_match_str(const char *re, const char *s);
bool re_match_lit(const char *re, const char *s);
/* A match context with the per-message match and depth limits (msg_init's
 * m->mctx), shared, for the matches made without the message's: a match
 * that reaches them fails (no match) instead of running on. */
pcre2_match_context *re_limits(void);
#define RE_MATCH_LIMIT 200000
#define RE_DEPTH_LIMIT 5000

/* A rule's score in score set `set` (0-3). */
static inline double rule_score(const struct rule *r, int set)
{
	return r->has_score ? r->scores[set] : r->score;
}

/* Whether r runs for a message scored with score set `set`. */
static inline bool rule_runs(const struct rule *r, int set)
{
	return !(r->zero_sets >> set & 1);
}

/* The per-message context (scan.c). */
void msg_init(struct msgctx *m, const struct spam_engine *e, const struct spam_input *in);
void msg_free(struct msgctx *m);

/* ---- relays (relay.c) ------------------------------------------------------- */

struct relay {
	char ip[64], rdns[256], helo[256], by[256], ident[64], envfrom[256], id[128], auth[128];
	bool priv;
	bool looked_up; /* the MTA's format shows it looked up rDNS */
	bool intl, msa; /* internal; an msa_networks relay */
};

/* The relays, newest first, as SpamAssassin's Received metadata: trusted
 * relays are r[0..ntrusted), internal ones r[0..nintl) (both prefixes);
 * trust follows trusted_networks/internal_networks/msa_networks when
 * configured, else SpamAssassin's inference (private addresses and
 * authenticated hops are trusted and internal). last_trusted_idx and
 * last_internal_idx are SpamAssassin's last_*_relay_index: the index among
 * the Received: headers (from the top, 0-based; -1 none) of the last one
 * added by a trusted (internal) relay, for the ALL-TRUSTED & co pseudo
 * headers. */
struct relayinfo {
	struct relay *r;
	size_t n, ntrusted, nintl;
	int unparseable;
	int last_trusted_idx, last_internal_idx;
	char *trusted_str, *untrusted_str, *internal_str, *external_str;
};

int parse_rfc822_date(const char *s, time_t *t);
int received_date(const char *v, time_t *t);
/* 1 parsed, 0 not a relay line or a handover skipped, -1 unparseable. */
int parse_received(const char *v, struct relay *rl);
/* received.c: one Received: value into *rl (all but priv) as
 * SpamAssassin's parse_received_line; returns as parse_received, and
 * *kind tells the skipped lines that matter to the relay list: a mail
 * fetcher's handover, qmail-scanner's (rl->envfrom holds its sender). */
enum { RCV_NONE, RCV_FETCHER, RCV_QSCANNER };
int received_parse(const char *v, struct relay *rl, int *kind);
/* The message's relays, parsed once (cached in m). */
struct relayinfo *relays(struct msgctx *m);
/* White space runs of v (in place) as one space; returns v. */
char *ws_fold(char *v);
const char *lasthop_envfrom(struct msgctx *m);
void relays_free(struct relayinfo *ri);
/* Private, loopback, link-local or unspecified. */
bool ip_private(const char *ip);

/* ---- the ruleset (engine.c) -------------------------------------------------- */

void lint(struct spam_engine *e, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int rule_find(const struct spam_engine *e, const char *name);
struct rule *rule_get(struct spam_engine *e, const char *name);
void rule_clear_def(struct rule *r);
bool plugin_loaded(struct spam_engine *e, const char *name);

static inline int namecmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* the same, ignoring case (header names) */
static inline int namecasecmp(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- loading (parse.c, ifexpr.c, replace.c) ------------------------------- */

/* A file or directory (*.pre only, *.cf only or both); -1 with *err_r. */
int load_path(struct spam_engine *e, const char *path, bool pre_only, bool cf_only, char **err_r);
/* Rules given as text, as the file `name` (include is an error there). */
void load_text(struct spam_engine *e, const char *name, const char *text, size_t len);
/* 1 true, 0 false, -1 cannot evaluate. */
int if_eval(struct spam_engine *e, const char *expr);
void apply_replace_tags(struct spam_engine *e, struct rule *r);

/* ---- compilation (compile.c, hyperscan.c) --------------------------------- */

/* ReplaceTags, PCRE2, groups, metas, per-message lists; -1 when Hyperscan
 * scratch space cannot be allocated. */
int finalize(struct spam_engine *e);
#ifdef SPAM_HAVE_HS
/* The exact database of g: patterns PCRE2 cannot compile. */
void build_exact(struct spam_engine *e, struct rgroup *g);
/* Loads what the cache has; starts the background compile for the rest. */
void hs_start(struct spam_engine *e);
/* Stops a running compile and waits for it. */
void hs_stop(struct spam_engine *e);
void hsmatch_free(const struct spam_engine *e, struct hsmatch *hm);
hs_scratch_t *pool_get(struct scratch_pool *p);
void pool_put(struct scratch_pool *p, hs_scratch_t *s);
void pool_free(struct scratch_pool *p);
#endif

/* ---- shorter prefilters (prefix.c) ------------------------------------------ */

/* The octet after the character class that starts at p ('['), or NULL
 * when it is not closed. */
const char *regex_class_end(const char *p);
/* The octet after the escape that starts at p ('\\'), or NULL when this
 * reader does not know it (\Q, \E, an unclosed \x{...}). */
const char *regex_escape_end(const char *p);
/* The octet after the group that starts at p ('('), or NULL. */
const char *regex_group_end(const char *p);
/* Past the quantifier at p (p itself when there is none, with 1 and 1):
 * its least and greatest counts (ULONG_MAX: no bound). */
const char *regex_quantifier(const char *p, unsigned long *lo, unsigned long *hi);

/* A set of octets. */
struct fset {
	uint64_t w[4];
};
static inline bool fs_has(const struct fset *s, unsigned c)
{
	return s->w[c >> 6] >> (c & 63) & 1;
}
static inline int fs_count(const struct fset *s)
{
	int n = 0;
	for (int i = 0; i < 4; i++)
		n += __builtin_popcountll(s->w[i]);
	return n;
}
/* The octets the class that starts at p ('[') matches, both cases of
 * every letter with caseless (guard.c). A POSIX class is taken as every
 * octet. False for a class this reader does not take. */
bool regex_class_set(const char *p, bool caseless, struct fset *out);
/* A top-level item of a regex: every octet any of its matches may consume
 * (both cases of every letter), and whether it may match the empty string
 * (a lookaround, an anchor, a quantifier that allows none). */
struct regex_item {
	struct fset all;
	bool nullable;
};
/* The top-level items of pat in order (at most max), as guard.c reads
 * PCRE syntax; -1 for a top-level alternation, more than max items or
 * anything that reader does not take (guard.c). */
int regex_items(const char *pat, struct regex_item *items, int max);

/* A pattern with at least PREFIX_MIN_REPEATED top-level items that must
 * match and may repeat (a{1,2}, [a-z]+) is prefiltered by its items up to
 * the PREFIX_ITEMS-th that must match. */
#define PREFIX_ITEMS	    3
#define PREFIX_MIN_REPEATED 5
/* Cut points tried for a pattern Hyperscan refuses whole. */
#define PREFIX_MAX_FALLBACK 64
/* The length of the prefix of pat that Hyperscan prefilters it with, or 0
 * for the whole pattern. */
size_t prefilter_prefix(const char *pat, const char *flags);
/* The ends of pat's first top-level items that must match (at most max, in
 * cuts[], shortest first): the prefixes Hyperscan may prefilter a pattern
 * with that it refuses whole. Their count; 0 when pat is left whole. */
int prefilter_cuts(const char *pat, const char *flags, size_t *cuts, int max);
/* pat with every repeat counting min_count or more made unbounded: it
 * matches wherever pat does, and a long pattern Hyperscan refuses exactly
 * may fit an exact database that way. Malloc'd; NULL when nothing changes
 * or the pattern is one this reader leaves alone (negative lookarounds,
 * conditionals, verbs, extended mode). */
char *prefilter_relax(const char *pat, const char *flags, unsigned min_count);
/* The reverse of pat (malloc'd), matching at least the reversed text of
 * every match of pat: scanned backwards over a line, it reports where the
 * matches of pat may start. NULL for what this reader refuses
 * (backreferences, calls, conditionals, verbs, options set mid-regex,
 * extended mode). */
char *prefilter_reverse(const char *pat, const char *flags);
/* For a regex that is one group repeated at least n times, (?:G){n}, G
 * never matching nothing (the form rules): how many more offsets the
 * starts database (hs_starts: the reverse of pat relaxed with
 * RELAX_COUNT_2, where {n} becomes + and G a looser G') reports after the
 * first offset of a match. Each repetition of G starts at an offset of its
 * own, later than the one before, and each but the last few (as many as
 * the relaxed repeat's lower bound, less one) is reported, so an offset
 * with fewer reported after it starts no match. 0 for any other regex. */
unsigned prefilter_chain(const char *pat, const char *flags);
/* pat with every class that takes an octet of 0x80 or above taking all of
 * them, and such an escape outside a class made that class: a cheaper
 * prefilter for the look-alike letters of 25_replace.cf. Malloc'd; NULL
 * when nothing changes or in extended mode. */
char *prefilter_widen(const char *pat, const char *flags);
/* pat as the alternatives of its longest top-level group, one pattern a
 * line: "P(?:A|B)S" becomes "P(?:A)S\nP(?:B)S", which match together
 * wherever it does, for a prefilter Hyperscan refuses whole (too large an
 * automaton) but takes in pieces. Malloc'd; NULL when there is no such
 * group (or it is quantified, has more than SPLIT_MAX_PIECES alternatives,
 * or extended mode, or pat refers to a group: a backreference, a call, a
 * conditional). */
char *prefilter_split(const char *pat, const char *flags);
/* At most this many pieces: each is compiled alone to see whether
 * Hyperscan takes it. */
#define SPLIT_MAX_PIECES 64
/* pat for the lines with no octet of 0x80 or above and no '&' (where
 * look-alike letters in UTF-8 and character references cannot match):
 * such items and the alternatives that need them left out. It matches
 * wherever pat does on such a line. Malloc'd; "" when pat cannot match
 * such a line, NULL when nothing changes, in extended mode or when a
 * capturing group goes from a pat that refers to groups (a backreference,
 * a call, a conditional). */
char *prefilter_ascii(const char *pat, const char *flags);
/* A regex this long or longer (octets) may be slow enough for PCRE2 and
 * too large enough for Hyperscan to be worth a relaxed prefilter and
 * start offsets. */
#define LONG_REGEX 300
/* The counts tried, in order: the first whose pattern Hyperscan takes
 * exactly is used. */
#define RELAX_COUNT_1 8
#define RELAX_COUNT_2 3
/* Any other regex Hyperscan prefilters has its repeats counting this many
 * or more made unbounded: fewer automaton states to run over every octet
 * (8 made too many lines candidates, on the MX mix's body lines). */
#define RELAX_PREFILTER_COUNT 16

/* ---- profile (scan.c, lint.c) ---------------------------------------------- */

/* Milliseconds, summed over the messages checked. */
struct prof_texts {
	char **s;
	unsigned *len;
	size_t n, cap;
};

struct spam_profile {
	unsigned messages;
	double total, evals, metas, headers;		/* headers: absent ones, exists:, negations */
	double native;					/* native.c's checks */
	double texts[R_TMAX], hs[R_TMAX], pcre[R_TMAX]; /* by rule kind */
	double *rule_ms;				/* PCRE2, per rule */
	unsigned long *rule_calls;
	double *eval_ms; /* eval: rules, per rule */
	size_t nrules;
	/* --profile-patterns: per group, the texts its Hyperscan database
	 * scanned (copies, PROF_TEXTS_MAX octets in all); NULL otherwise */
	struct prof_texts *gtexts;
	size_t ngroups, tbytes;
	bool tcapped; /* texts left out past PROF_TEXTS_MAX */
};
#define PROF_TEXTS_MAX (256u << 20)

static inline double prof_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ---- alternation guards (guard.c) ----------------------------------------- */

/* pat with a first-octet lookahead before each branch of its large
 * alternations that cannot match empty (same matches, fewer dead ends for
 * PCRE2), to free; NULL when there is none to add or the pattern has
 * syntax guard.c does not read. */
char *guard_pattern(const char *pat, const char *flags);

/* ---- per message (texts.c, addr.c) ----------------------------------------- */

/* The value a header rule matches, or NULL when the header is absent. */
const char *target_value(struct msgctx *m, int ti);
bool part_header_value(struct sbuf *b, const struct target *t, const struct sift_mime_part *p);
/* The headers a TK_HEADER target named name reads (ToCc: To and Cc;
 * MESSAGEID: Message-Id, Resent-Message-Id, X-Message-Id): how many. */
int target_header_names(const char *name, const char *names[3]);
const char *envelope_from(struct msgctx *m);
/* The rendered body (Subject first) in lines of at most 2048 octets, as
 * the body rules see it: body_lines for any message, build_body for m's
 * (m->lines). */
void body_lines(const struct spam_engine *e, const struct sift_mime *mm, char ***lines_r, size_t **lens_r,
		size_t *n_r);
void build_body(struct msgctx *m);
void build_raw(struct msgctx *m);
void build_full(struct msgctx *m);
/* The first mailbox of an address-list value as the core's parser reads it
 * (in->addrlist_parse, the parser senderlogin and DKIM use): its address;
 * nothing when the value is not a valid address list or has no mailbox. */
void first_mailbox(struct msgctx *m, struct sbuf *b, const char *v);
/* Every mailbox of the value, as SpamAssassin's get("NAME:addr") lists
 * them: its address, or with name its display name (the comment of the
 * old form "addr (Name)" when there is none; a mailbox with neither is
 * left out). Each is appended to b after a line break when n, the number
 * appended before, is not 0; returns n and those appended. */
size_t mailboxes(struct msgctx *m, struct sbuf *b, const char *v, bool name, size_t n);
/* The envelope sender (an SMTP path, from filterd or from Return-Path and
 * the like): what is inside "<...>", else the first word, as SpamAssassin
 * shows EnvelopeFrom (a path is no address list: "yyyy" stays "yyyy"). */
void envelope_path(struct sbuf *b, const char *v);
/* The first address of header `hdr` (or EnvelopeFrom), lower case. */
void first_addr(struct msgctx *m, const char *hdr, char *out, size_t n);
/* uris.c: the message's URIs with SpamAssassin's canonical variants into
 * m->uris; redirector_pattern. */
void build_uris(struct msgctx *m);
/* Builds the text a group of type t reads, unless built (scan.c; timed
 * when profiling). */
void build_text(struct msgctx *m, enum rtype t);
/* A meta's value: its n tokens of meta_code over hits (scan.c). */
double meta_value(const int *hits, const int *code, int n, const double *num);
/* The URIs SpamAssassin finds in the rendered body without a scheme or a
 * www./ftp. prefix: domains of a valid TLD (util_rb_tld), as "http://"
 * URIs with their hosts. The uri rules, the URI DNSBLs and Bayes read
 * them beside the message's other URIs. bare_re compiles the regex
 * (NULL without TLDs: none are found); msg_bare_uris finds them once per
 * message. */
pcre2_code *bare_uri_compile(const struct netconf *nc);
void bare_uris_find(const struct spam_engine *e, char *const *lines, const size_t *lens, size_t nlines,
		    struct bare_uris *out);
void bare_uris_free(struct bare_uris *b);
const struct bare_uris *msg_bare_uris(struct msgctx *m);
/* RegistryBoundaries' valid_tlds_re (evals.c), appended to re */
void valid_tlds_re(struct sbuf *re, const struct netconf *nc);
void uris_free(struct msgctx *m);
bool redirector_directive(struct spam_engine *e, const char *args, const char *where);
/* Compiles e->fm_* once the rules are loaded (evals.c). */
void freemail_compile(struct spam_engine *e);

/* ---- network tests (dnsbl.c, dnsbl_uri.c) ------------------------------------ */

struct uridef {
	char *rule, *zone, *subtest; /* subtest NULL: any answer */
	int rrtype;
	bool rhs; /* urirhsbl/urirhssub: names; else uridnsbl: name server addresses */
};

struct netconf {
	bool skip_rbl;	    /* skip_rbl_checks */
	bool dns_available; /* dns_available (test counts as yes) */
	long num_check_received, max_domains;
	bool skip_uribl;  /* skip_uribl_checks */
	bool skip_mailto; /* uridnsbl_skip_mailto (default yes) */
	char **orig;	  /* originating_ip_headers */
	size_t norig;
	struct uridef *uri;
	size_t nuri;
	char **skip, **tld, **tld2, **tld3; /* sorted: uridnsbl_skip_domain, util_rb_tld/2tld/3tld */
	size_t nskip, ntld, ntld2, ntld3;
};

enum netkind {
	NK_NONE,
	NK_RBL,
	NK_RBL_TXT,
	NK_RBL_SUB,
	NK_FROM_HOST,
	NK_FROM_DOMAIN,
	NK_ENVFROM,
	NK_HEADERS,
	NK_RCVD,
	NK_URI
};
typedef void (*name_fn)(void *arg, const char *name, int rrtype);

/* A directive of the network tests: true when it was one (parse.c calls
 * it for directives not in its table). */
bool net_directive(struct spam_engine *e, const char *d, char *args, const char *where);
bool uri_directive(struct spam_engine *e, struct netconf *nc, const char *d, char *args, const char *where);
void net_free(struct netconf *n);
/* Sorted string lists (bsearch); sorted=false appends. */
void strlist_add(char ***list, size_t *n, const char *s, bool sorted);
bool strlist_has(char *const *list, size_t n, const char *s);
enum netkind rule_kind(const struct rule *r);
bool net_rule_active(const struct spam_engine *e, const struct rule *r);
bool fqdn_ok(const char *h);
const char *registered_domain(const struct netconf *nc, const char *host);
/* RegistryBoundaries is_domain_valid: the name has a dot and ends in a TLD
 * of util_rb_tld. */
bool domain_tld_valid(const struct netconf *nc, const char *dom);
/* Starts a query of the message once (n may be NULL); its answer when it
 * came (OK answers only), else NULL. */
void net_want(struct spam_net *n, const char *name, int type);
/* step: a query whose answer leads to list queries (collected first). */
void net_want_step(struct spam_net *n, const char *name, int type, bool step);
const struct sift_dns_result *net_answer(const struct spam_net *n, const char *name, int type);
const struct spam_engine *net_engine(const struct spam_net *n);
/* The rendered body of mime (body_lines) and the domains it names without a
 * scheme (bare_uris_find), made once for the message's URI lookups, which
 * run before scoring and again at each uridnsbl step; scoring borrows them
 * (net_body) while the net lives. net_bare: NULL when the engine finds no
 * such domains (no util_rb_tld). */
const struct bare_uris *net_bare(struct spam_net *n, const struct sift_mime *mime);
/* n's body lines for mime, if made: true, and the lines stay n's. */
bool net_body(const struct spam_net *n, const struct sift_mime *mime, char ***lines_r, size_t **lens_r,
	      size_t *n_r, const struct bare_uris **bare_r);
int ev_net_rbl(struct msgctx *m, const struct rule *r);
int ev_net_rbl_sub(struct msgctx *m, const struct rule *r);
int ev_net_uri(struct msgctx *m, const struct rule *r);
bool re_match_str(const char *re, const char *s);

/* ---- lint (lint.c) ------------------------------------------------------------ */

size_t count_errors(const struct spam_engine *e);
/* The errors, one "file:line: what" per line, at most 20 (malloc'd). */
char *format_errors(const struct spam_engine *e);

#endif
