/*
 * engine.h - the SpamAssassin-compatible rule engine of the spam plugin:
 * rule files parsed at init into an immutable ruleset (regexes compiled into
 * PCRE2-JIT, then Hyperscan prefilter databases from the cache or a
 * background compile), then scored per message against a parsed MIME
 * message (struct sift_mime).
 *
 * Threading: spam_engine_new/free run in one thread (init/release); a built
 * engine is read-only apart from the one-time switch to Hyperscan (an atomic
 * pointer read once per message) and spam_engine_check may run in many
 * threads at once (per-call scratch comes from a locked pool). spam_engine_free
 * stops a compile still running (it kills the compiler process). Ownership: results are
 * allocated by spam_engine_check and freed with spam_result_free.
 *
 * Also used by the plugin's siftctl tools (tool.c: `siftctl spam
 * check|lint|compile|mime`), with the engine of the conf block siftctl had
 * the plugin initialise.
 */
#ifndef SPAM_ENGINE_H
#define SPAM_ENGINE_H

#include <stdbool.h>
#include <stdio.h>

#include "sift/plugin.h"

struct spam_engine;
struct bayes;
struct spam_net; /* a message's DNS list lookups (dnsbl.c) */

#define SPAM_SET_NET   1
#define SPAM_SET_BAYES 2

struct spam_engine_opts {
	const char *const *paths; /* files or directories (*.pre, then *.cf) */
	const char *cache_dir;	  /* "" = no on-disk cache of compiled databases */
	int use_hyperscan;	  /* 0 = PCRE2-JIT only */
	size_t body_scan_size;	  /* per text part (SA body_part_scan_size) */
	/* SpamAssassin's score set, which of a rule's four scores count:
	 * SPAM_SET_NET (network tests enabled) | SPAM_SET_BAYES (Bayes usable);
	 * 0 = neither (set 0). */
	int score_set;
	/* how long the background Hyperscan compile may take before its child
	 * is killed (matching stays on PCRE2-JIT); 0 = no bound */
	long long compile_timeout_ms;
	/* how many rule groups the compiler builds at the same time (threads;
	 * at most the number of CPUs online); 0 = 1 */
	int compile_jobs;
	void (*log)(int level, const char *msg); /* may be NULL */
};

/* One message to score. */
struct spam_input {
	const struct sift_mime *mime;
	const char *envelope_from; /* NULL = from Return-Path */
	/* symbols of other plugins, for symbol_score and check_sift_symbol; the
	 * ones no symbol_score weighs count with their own score */
	size_t nsyms;
	const char *const *sym_names;
	const double *sym_scores;
	long deadline_ms; /* 0 = none; sift_now-style monotonic ms */
	/* connection data, as pseudo-headers X-Sift-Helo, X-Sift-Client-Addr,
	 * X-Sift-Client-Name (NULL = absent) */
	const char *helo, *client_addr, *client_name;
	/* The core's address-list parser (host->addrlist_parse; the plugin's
	 * tools get it from the host siftctl passes them): From:addr, :name and
	 * the recipient evals read addresses through it. NULL = no addresses. */
	struct sift_addrs *(*addrlist_parse)(const char *value);
	/* Bayes (bayes.h): BAYES_* rules, score sets 2/3 while it is usable,
	 * autolearn. NULL = none. */
	struct bayes *bayes;
	/* The message's DNS list answers (spam_net_wait done), NULL = none:
	 * the network rules do not hit. */
	const struct spam_net *net;
	/* where the scoring time goes, NULL = not measured */
	struct spam_profile *profile;
};

struct spam_hit {
	const char *name; /* owned by the engine, or by the input (another plugin's symbol) */
	double score;
	const char *describe;
};

struct spam_result {
	double score;
	struct spam_hit *hits; /* scored rules hit, sorted by name */
	size_t nhits;
	double required; /* required_score of the ruleset */
	int timed_out;
	double bayes;	       /* the Bayes probability, -1 when not computed */
	int score_set;	       /* the set the scores came from (0-3) */
	const char *autolearn; /* "ham", "spam", "no", "disabled" (static) */
};

/* NULL with *err_r (malloc'd) when the rules have errors: every error as
 * "\n  file:line: what" (at most 20) or no active rule. */
struct spam_engine *spam_engine_new(const struct spam_engine_opts *o, char **err_r);
/* The same from rules given as text (o->paths unused), read as the file
 * `name`; `include` is an error there (tests and fuzzing). */
struct spam_engine *spam_engine_new_text(const struct spam_engine_opts *o, const char *name, const char *text,
					 size_t len, char **err_r);
/* Waits for the Hyperscan databases: 0 compiled and cached, 1 the cache was
 * already complete, -1 with *err_r (compile failed, nothing cached). */
int spam_engine_hs_wait(const struct spam_engine *e, char **err_r);
void spam_engine_free(struct spam_engine *e);
int spam_engine_check(const struct spam_engine *e, const struct spam_input *in, struct spam_result *r);

/* Where scoring time goes (siftctl spam check --profile): a profile given
 * in spam_input.profile collects the times of every message checked with
 * it (monotonic clock; one message at a time). */
struct spam_profile *spam_profile_new(const struct spam_engine *e, bool patterns);
/* The report: milliseconds per message by rule kind (building the texts,
 * Hyperscan, PCRE2), evals and metas, and the top rules by PCRE2 time. */
void spam_profile_print(const struct spam_engine *e, const struct spam_profile *p, FILE *out, int top);
/* With patterns (spam_profile_new): each Hyperscan pattern compiled alone
 * and timed over the texts its group's database scanned, the costliest
 * first, beside the databases' own time over the same texts. Slow: a
 * compile per pattern. */
void spam_profile_patterns(const struct spam_engine *e, const struct spam_profile *p, FILE *out, int top);
void spam_profile_free(struct spam_profile *p);
void spam_result_free(struct spam_result *r);
/* Learns (or forgets) in->mime into in->bayes, tokenized as scoring does:
 * 1 done, 0 nothing to do (already learned so, or not learned), -1 error. */
int spam_engine_learn(const struct spam_engine *e, const struct spam_input *in, bool spam, bool forget);
/* Calls cb with the text of each Bayes token of in->mime (every one, before
 * duplicates are dropped). */
void spam_engine_tokens(const struct spam_engine *e, const struct spam_input *in,
			void (*cb)(void *arg, const char *tok, size_t len), void *arg);
/* Lint report: warnings (verbose), unknown evals, PCRE2 fallbacks, counts.
 * Returns the number of errors (an engine with errors is never built, so
 * 0: siftctl reports errors from spam_engine_new's message). */
int spam_engine_lint(const struct spam_engine *e, FILE *out, int verbose);
/* Rule counts and a summary line for logs. */
void spam_engine_stats(const struct spam_engine *e, char *buf, size_t n);
double spam_engine_required(const struct spam_engine *e);

/* For the siftctl tools (tool.c), from an initialised conf block of the
 * plugin (spam.c): its engine (NULL if none), and its levels
 * [profile][tag, tag2, kill] (INFINITY = off). */
extern const struct sift_tool spam_tools[];
const struct spam_engine *spam_tool_engine(const void *conf);
void spam_tool_levels(const void *conf, double out[2][3]);
struct bayes *spam_tool_bayes(const void *conf); /* NULL: use_bayes = no */
/* The Bayes tools (bayes_tool.c): learn/forget, stats, import. */
int spam_tool_learn(const struct sift_host *host, void *conf, int argc, char **argv);
int spam_tool_bayes_stats(const struct sift_host *host, void *conf, int argc, char **argv);
int spam_tool_import(const struct sift_host *host, void *conf, int argc, char **argv);
int spam_tool_dump(const struct sift_host *host, void *conf, int argc, char **argv);
int spam_tool_tokens(const struct sift_host *host, void *conf, int argc, char **argv);

/* ---- network tests (dnsbl.c) ----
 * A message's lookups, started as their data arrives and collected against
 * one deadline; the host's asynchronous resolver does the queries (start,
 * wait: host->dns_start, host->dns_wait). spam_net_new returns NULL when
 * the engine has no network tests (score set without SPAM_SET_NET,
 * skip_rbl_checks, dns_available no). One message, one thread at a time. */
int spam_engine_net(const struct spam_engine *e);
struct spam_net *spam_net_new(const struct spam_engine *e,
			      struct sift_dns_pending *(*start)(const char *, int),
			      struct sift_dns_result *(*wait)(struct sift_dns_pending *, long));
/* connect: the client address; end of header: in->mime holds the headers
 * (relays, senders), in->client_addr the client; end of message: the URIs
 * of in->mime. */
void spam_net_client(struct spam_net *n, const char *ip);
void spam_net_headers(struct spam_net *n, const struct spam_input *in);
void spam_net_uris(struct spam_net *n, const struct spam_input *in);
/* Collects the answers until timeout_ms after the last query started (or
 * in->deadline_ms when earlier); returns how many queries failed (timeout,
 * SERVFAIL). */
size_t spam_net_wait(struct spam_net *n, const struct spam_input *in, long timeout_ms);
size_t spam_net_count(const struct spam_net *n);
void spam_net_free(struct spam_net *n);

char *spam_format_status(const struct spam_result *r, double tag_level, double tag2_level, int is_spam);
/* %.3f with trailing zeros (and point) removed, as amavisd prints. */
void spam_fmt_num(char *buf, size_t n, double v);

#endif
