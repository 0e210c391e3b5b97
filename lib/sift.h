/*
 * lib/sift.h - the shared core linked into filterd, policyd and siftctl.
 *
 * Conventions: public names start with sift_; fallible functions return 0 or
 * -1 and set *err_r to a malloc'd message (the caller frees it); allocation
 * never returns NULL (sift_malloc and friends log a fatal line and exit).
 * Each section names the .c file that implements it and its threading rules.
 */
#ifndef SIFT_CORE_H
#define SIFT_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <syslog.h>
#include <time.h>

#include "sift/plugin.h"

#define SIFT_VERSION "0.1.0"

/* ---- util.c: memory and strings (thread-safe) ---------------------------- */
void *sift_malloc(size_t n);
void *sift_calloc(size_t n, size_t size);
void *sift_realloc(void *p, size_t n);
char *sift_strdup(const char *s);
char *sift_strndup(const char *s, size_t n);
char *sift_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *sift_vasprintf(const char *fmt, va_list ap);
/* Lower-case an ASCII string in place; returns s. */
char *sift_lowercase(char *s);
/* A lookup key folded as Postfix folds table keys with smtputf8_enable =
 * yes (its default since compatibility_level 1; util/casefold.c): valid
 * UTF-8 with non-ASCII characters by Unicode full case folding (ICU's
 * ucasemap_utf8FoldCase, U_FOLD_CASE_DEFAULT: "MÜLLER" -> "müller",
 * "Straße" -> "strasse"), anything else by ASCII lower case. Malloc'd. */
char *sift_casefold(const char *s);
/* Trim leading/trailing white space in place; returns the start. */
char *sift_trim(char *s);
/* Monotonic clock in milliseconds; in nanoseconds. */
long long sift_now_ms(void);
/* SipHash-2-4 of data under the key (k0, k1): the hash of the hash tables
 * whose keys come from mail or clients, under a random key, so that keys
 * chosen to collide cannot turn lookups into scans. */
uint64_t sift_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len);
/* The time ms milliseconds from now on `clock`, for pthread_cond_timedwait
 * (CLOCK_REALTIME unless the condition was set to another clock). */
void sift_timespec_in(clockid_t clock, long long ms, struct timespec *ts);
long long sift_now_ns(void);

/* Writes all len bytes to fd (non-blocking, or one that may block: a
 * socket, a pipe) by deadline_ms (sift_now_ms clock), waiting in poll();
 * -1 with errno set (ETIMEDOUT when the time ran out). The caller ignores
 * SIGPIPE. */
int sift_write_by(int fd, const void *buf, size_t len, long long deadline_ms);

/* Reads a whole file (at most max bytes, NUL-terminated, malloc'd); -1 with
 * errno set (EFBIG when larger, EISDIR for a directory, ESPIPE for a FIFO
 * or a socket: reading one waits for a writer, so it is not opened for
 * reading at all). */
int sift_read_file(const char *path, size_t max, char **data_r, size_t *len_r);

/* A growable byte buffer. */
struct sift_buf {
	char *data;
	size_t len, cap;
};
void sift_buf_add(struct sift_buf *b, const void *p, size_t n);
/* Room for n more octets and the NUL after them: returns where they go
 * (data + len). The caller writes them, then adds what it wrote to len
 * and NUL-terminates. */
char *sift_buf_space(struct sift_buf *b, size_t n);
void sift_buf_adds(struct sift_buf *b, const char *s);
void sift_buf_printf(struct sift_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sift_buf_free(struct sift_buf *b);
/* NUL-terminates (not counted in len) and returns data. */
const char *sift_buf_str(struct sift_buf *b);
/* A JSON string: s quoted and escaped ('"', '\\', control characters);
 * octets that are not UTF-8 are written as the Latin-1 character (\u00XX)
 * so that the document is always valid UTF-8. NULL = "". */
void sift_json_str(struct sift_buf *b, const char *s);
/* Postfix's logical lines (main.cf and lookup tables): from *pp to end,
 * skipping blank and comment lines, joining lines that start with white
 * space. Returns 1 with the line in *b (its first line number in *first_r;
 * *lineno counts physical lines), 0 at the end, -1 with *why on a malformed
 * line (NUL byte, leading white space, longer than max_line). */
int sift_next_logical_line(const char **pp, const char *end, int *lineno, struct sift_buf *b, int *first_r,
			   const char **why, size_t max_line);

/* ---- log.c: Postfix maillog style logging (thread-safe) ------------------
 * Lines go to syslog (facility mail, ident = program name) or, with
 * foreground, to stderr as "<time> <prog>[pid]: <text>".
 * sift_log_msg prefixes "<qid>: " (qid NULL = "NOQUEUE") and, when plugin is
 * not NULL, "<plugin>: ". */
void sift_log_init(const char *progname, bool to_stderr, int max_level);
void sift_log_set_level(int max_level);
void sift_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sift_vlog(int level, const char *fmt, va_list ap);
void sift_log_msg(int level, const char *qid, const char *plugin, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void sift_vlog_msg(int level, const char *qid, const char *plugin, const char *fmt, va_list ap);
/* Logs at LOG_CRIT with "fatal: " and exits 1. Startup only. */
void sift_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- config.c: main.cf-style configuration files --------------------------
 * Syntax (as Postfix main.cf): `name = value`; lines starting with white
 * space continue the previous line; `#` at the start of a line (after white
 * space) is a comment; blank lines ignored; later settings override earlier.
 * After FILE, every `*.conf` in `FILE.d/` (e.g. filterd.conf.d/) is read in
 * name order. Values keep `$name`, `${name}`, `$(name)` references; they are
 * expanded on lookup (recursively, undefined names expand to the empty
 * string, loops are an error). Errors name "file:line".
 * A struct sift_config is built at startup or reload by one thread and is
 * read-only afterwards. */
struct sift_config;
struct sift_config *sift_config_new(void);
void sift_config_free(struct sift_config *cfg);
/* Reads path (and path.d/). Missing file: error unless optional. */
int sift_config_load(struct sift_config *cfg, const char *path, bool optional, char **err_r);
/* A "-o name=value" override; origin is used in messages ("-o"). */
int sift_config_set(struct sift_config *cfg, const char *assignment, const char *origin, char **err_r);
/* Registers the defaults of a parameter table (prefix prepended to names), so
 * that $name expansion and -p see them. */
void sift_config_defaults(struct sift_config *cfg, const char *prefix, const struct sift_param *tab);
/* The raw (unexpanded) value and where it came from; NULL if never set. */
const char *sift_config_raw(const struct sift_config *cfg, const char *name, const char **where_r);
/* Expanded value of a setting, or of its registered default, or NULL;
 * malloc'd. */
char *sift_config_get(const struct sift_config *cfg, const char *name, char **err_r);
/* Expands $name references in text against cfg (as sift_config_get does for
 * values); malloc'd, or NULL + *err_r on a loop or bad syntax. */
char *sift_config_expand(const struct sift_config *cfg, const char *text, char **err_r);
/* Calls fn for every explicitly set name, in first-set order. */
void sift_config_each(const struct sift_config *cfg,
		      void (*fn)(const char *name, const char *raw, const char *where, void *arg), void *arg);
/* Known names without a default: prefix + each name of tab, or, with tab
 * NULL, every name that starts with prefix (siftctl: the daemons' own
 * parameters, which only the daemons check). */
void sift_config_known(struct sift_config *cfg, const char *prefix, const struct sift_param *tab);
/* Unknown names are errors: a name set in a file or with -o that no
 * registered table knows (sift_config_defaults, sift_config_known) and that
 * no other value refers to as $name (a variable of the administrator's).
 * With plugin_dir, "<plugin>_..." names of a plugin file in plugin_dir that
 * is not loaded are checked against that plugin's table, so that a setting
 * for a plugin enabled in the other daemon is not an error. Returns the
 * number of unknown names and, with err_r, one message naming each
 * ("file:line: unknown parameter "x" (did you mean "y"?)", "; "-joined). */
int sift_config_check_names(struct sift_config *cfg, const char *plugin_dir, char **err_r);
/* The known name closest to name (edit distance at most 2, 3 for names of
 * 12 characters or more), or NULL. */
const char *sift_config_suggest(const struct sift_config *cfg, const char *name);
/* msg (e.g. a plugin's init error "spam_kill_level: not a number: abc")
 * prefixed with the place where the first parameter it names
 * ("name:" or "name ") was set, unless msg already says, with secrets
 * masked (sift_mask_secrets); malloc'd. */
char *sift_config_locate(const struct sift_config *cfg, const char *msg);

/* ---- param.c: typed parameter tables --------------------------------------
 * Fills `block` (zeroed by the caller) from cfg for every entry of tab, names
 * being prefix + entry name (prefix "" for the daemons' own tables, "dkim_"
 * for the dkim plugin). Checks types, bounds and choices; errors name the
 * parameter and where it was set. */
int sift_params_parse(const struct sift_config *cfg, const char *prefix, const struct sift_param *tab,
		      void *block, char **err_r);
/* Frees the strings, lists and maps sift_params_parse stored in block. */
void sift_params_free(const struct sift_param *tab, void *block);
/* Prints `name = value` lines: all parameters with their effective value
 * (all = true, for -p) or only those explicitly set (-n). */
void sift_params_print(FILE *out, const struct sift_config *cfg, const char *prefix,
		       const struct sift_param *tab, bool all);
/* At a reload, for the daemon's own table: logs a warning naming each
 * parameter whose value differs between the running block and the one just
 * loaded, except those listed in `live` (NULL-terminated names that the
 * reload applies): it takes effect at the next restart. Returns their
 * number. */
int sift_params_restart_only(const char *daemon, const struct sift_param *tab, const void *running,
			     const void *loaded, const char *const *live);
/* Value parsers, shared with other code. 0 ok, -1 bad syntax. */
int sift_parse_bool(const char *s, int *v_r);
int sift_parse_time_ms(const char *s, long long *v_r);
int sift_parse_size(const char *s, long long *v_r);
/* Splits a list value on white space and commas; NULL-terminated, one
 * allocation (free() the array). */
char **sift_split_list(const char *s);

/* Secrets never shown: text with the value after "password=", "passwd=" or
 * "secret=" replaced by "********" (malloc'd); sift_param_shown masks the
 * whole value of a parameter whose name ends in password, passwd or
 * secret, and otherwise as sift_mask_secrets. -n/-p and value errors use
 * them. */
char *sift_mask_secrets(const char *text);
char *sift_param_shown(const char *name, const char *value);
/* Whether a parameter's whole value is a secret (its name ends in password,
 * passwd or secret). */
bool sift_param_secret(const char *name);

/* ---- map.c: lookup tables in Postfix syntax --------------------------------
 * Types: texthash:/path (key value lines, case-insensitive keys), pcre:/path
 * and regexp:/path (/regex/flags result; if /regex/ ... endif; $1..$9
 * substitution), cidr:/path (network/prefix result; key is an IP address),
 * inline:{ key=value, { key = value with spaces } }, static:value
 * (static:{ value with spaces }), and postmap's indexed files hash:/path,
 * btree:/path (/path.db), lmdb:/path (/path.lmdb), cdb:/path (/path.cdb),
 * reopened by the lookup that finds them changed. Maps are safe to use from
 * any thread. Lookups fold the key to lower case for texthash, inline and
 * the indexed tables, as Postfix does. */
struct sift_map *sift_map_open(const char *spec, char **err_r);
void sift_map_free(struct sift_map *map);
/* 1 found (*result_r malloc'd), 0 not found, -1 error. */
int sift_map_lookup(const struct sift_map *map, const char *key, char **result_r);
const char *sift_map_spec(const struct sift_map *map);
/* Whether map is a pattern table (pcre, regexp, cidr), whose rules are
 * matched against the whole key, as Postfix's DICT_FLAG_PATTERN tables:
 * Postfix's partial lookups (parent domains, parent networks, user@,
 * address without extension) are made in the other, fixed-string tables
 * only. */
bool sift_map_is_pattern(const struct sift_map *map);

/* ---- addr.c: IP addresses and networks ------------------------------------ */
struct sift_net {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int prefix;
};
/* "192.0.2.0/24", "2001:db8::/32", "192.0.2.1" (= /32); the address or the
 * whole network may be in [] ("[2001:db8::]/32", "[2001:db8::/32]"). Host
 * bits must be 0 unless loose. */
int sift_net_parse(const char *s, bool loose, struct sift_net *net_r);
/* Parses an address (IPv4, IPv6, IPv4-mapped IPv6 becomes IPv4) into addr. */
int sift_addr_parse(const char *s, int *family_r, unsigned char addr_r[16]);
bool sift_net_match(const struct sift_net *net, int family, const unsigned char addr[16]);

/* ---- msg.c: the message as received ---------------------------------------
 * Headers in order, values byte-exact (leading white space kept, folded lines
 * joined with CRLF). The body (CRLF line ends) is kept in memory up to
 * mem_limit bytes and spooled to an unlinked temporary file in tmpdir beyond.
 * One message belongs to one connection: not thread-safe. */
struct sift_msg;
struct sift_msg *sift_msg_new(size_t mem_limit, const char *tmpdir);
void sift_msg_free(struct sift_msg *m);
/* Stores a header; the value's folds (LF or CRLF) are stored as CRLF, the
 * one form the core and plugins see. Returns the stored header. */
const struct sift_header *sift_msg_add_header(struct sift_msg *m, const char *name, const char *value);
/* What message_header_limit counts of one header: "Name:value" CRLF, plus
 * SIFT_HEADER_OVERHEAD for what holding it costs besides its bytes (so
 * that many tiny headers are bounded too); and the sum over a message's
 * headers so far. */
#define SIFT_HEADER_OVERHEAD 64
long long sift_header_cost(const char *name, const char *value);
long long sift_msg_header_memory(const struct sift_msg *m);
/* A header that is not stored (X-Sift-Release, which filterd removes)
 * counted in sift_msg_header_memory() as a stored one would be. */
void sift_msg_count_header(struct sift_msg *m, const char *name, const char *value);
int sift_msg_add_body(struct sift_msg *m, const void *buf, size_t len, char **err_r);
size_t sift_msg_header_count(const struct sift_msg *m);
const struct sift_header *sift_msg_header(const struct sift_msg *m, size_t i);
long long sift_msg_body_size(const struct sift_msg *m);
long sift_msg_body_read(struct sift_msg *m, long long off, void *buf, size_t len);
/* The message as received (host->message_read): the header block, each
 * header "Name:value" CRLF (a bare LF in a value written as CRLF) then an
 * empty line, serialised once; then the body. Sizes in bytes; read returns
 * the bytes copied (header and body pieces in one call), 0 at or past the
 * end, -1 on an error or a negative offset. */
long long sift_msg_header_size(struct sift_msg *m);
long long sift_msg_size(struct sift_msg *m);
long sift_msg_read(struct sift_msg *m, long long off, void *buf, size_t len);
/* The first min(body size, max) body bytes as one read-only buffer, not
 * copied: the memory body, or the spool file mapped. *len_r gets the length
 * (the first call fixes it; later calls return the same view). Valid until
 * sift_msg_free (the body is never moved afterwards). NULL when the mapping
 * fails (then read the body instead). */
const unsigned char *sift_msg_body_map(struct sift_msg *m, size_t max, size_t *len_r);
/* Parses a whole message (RFC 5322, LF or CRLF line ends) from fp.
 * Malformed header lines end the header block, as Postfix does. */
int sift_msg_read_file(struct sift_msg *m, FILE *fp, char **err_r);

/* ---- policy.c: Postfix policy delegation protocol codec --------------------
 * A request is name=value lines ended by an empty line. The parser is fed
 * bytes as they arrive and bounds line length, attribute count and the
 * request's size. */
#define SIFT_POLICY_MAX_LINE	4096
#define SIFT_POLICY_MAX_ATTRS	128
#define SIFT_POLICY_MAX_REQUEST (64 * 1024) /* all its lines */
struct sift_policy_attr {
	char *name, *value;
};
struct sift_policy_req {
	struct sift_policy_attr attrs[SIFT_POLICY_MAX_ATTRS];
	size_t n;
};
struct sift_policy_parser {
	struct sift_policy_req req;
	char line[SIFT_POLICY_MAX_LINE + 1];
	size_t line_len;
	size_t req_bytes; /* of the request's lines so far */
	char error[128];
};
void sift_policy_parser_init(struct sift_policy_parser *p);
/* Frees the attributes of the current request and starts a new one. */
void sift_policy_parser_reset(struct sift_policy_parser *p);
/* Consumes up to len bytes. Returns 1 when a request is complete (*used_r
 * says how many bytes were consumed; the rest belongs to the next request),
 * 0 when more input is needed (all consumed), -1 on a protocol error
 * (p->error says why: line too long, too many attributes, no '=', NUL). */
int sift_policy_feed(struct sift_policy_parser *p, const char *buf, size_t len, size_t *used_r);
/* First value of an attribute, or NULL. */
const char *sift_policy_get(const struct sift_policy_req *r, const char *name);

/* ---- dns.c: the shared resolver (libunbound) -------------------------------
 * One resolver for the whole process, with a cache. servers: NULL or empty =
 * the system's (/etc/resolv.conf); else "127.0.0.1:5353 192.0.2.53" (port
 * optional) as forwarders. Queries are thread-safe and bounded by timeout_ms
 * (0 = the default given here). */
int sift_dns_init(const char *servers, long default_timeout_ms, char **err_r);
void sift_dns_shutdown(void);
/* Returns NULL only on allocation failure (never, in practice: sift_malloc);
 * the result is one malloc'd block, free() it. Names over 253 octets, empty
 * or over-long labels and types outside 1..65535 give SIFT_DNS_ERROR;
 * timeouts, SERVFAIL and calls before init/after shutdown give TEMPFAIL. */
struct sift_dns_result *sift_dns_query(const char *name, int rrtype, long timeout_ms);
/* The same in two steps, for queries in parallel: start launches the query
 * (or takes the answer from the cache) and returns at once, never NULL;
 * wait waits at most timeout_ms (0: not at all) for the answer, releases
 * the query and returns the answer as sift_dns_query does (TEMPFAIL when
 * none came in time). Each started query goes to wait exactly once; a
 * shutdown waits for the started queries to be collected. */
struct sift_dns_pending;
struct sift_dns_pending *sift_dns_start(const char *name, int rrtype);
struct sift_dns_result *sift_dns_wait(struct sift_dns_pending *p, long timeout_ms);
/* Decodes an uncompressed wire-format name (as in the rdata of MX, PTR,
 * CNAME, NS records returned above) into text without the final dot ("."
 * for the root), escaping '.', '\' and non-printable octets as in zone
 * files. Returns the number of wire octets used, or -1 if the name is
 * malformed, compressed or does not fit in n bytes (NUL included). */
int sift_dns_name_from_wire(const unsigned char *wire, size_t len, char *name_r, size_t n);
/* Splits MX rdata into preference and exchange name (as above). 0 or -1. */
int sift_dns_mx_name(const unsigned char *rr, size_t len, unsigned *pref_r, char *name_r, size_t n);

/* Counters since start: queries asked (cache hits included), queries that
 * timed out, answers from the cache. */
void sift_dns_stats(unsigned long long *queries_r, unsigned long long *timeouts_r,
		    unsigned long long *cache_hits_r);

/* ---- kv.c: key-value store --------------------------------------------------
 * "memory:" (in-process, default) or "redis:..." where available. Thread-safe.
 * Return codes as struct sift_host's kv_* functions. */
struct sift_kv;
struct sift_kv *sift_kv_open(const char *spec, char **err_r);
void sift_kv_free(struct sift_kv *kv);
int sift_kv_get(struct sift_kv *kv, const char *key, char **val_r);
int sift_kv_set(struct sift_kv *kv, const char *key, const char *val, long ttl_ms);
int sift_kv_incr(struct sift_kv *kv, const char *key, long long delta, long ttl_ms, long long *val_r);
int sift_kv_del(struct sift_kv *kv, const char *key);
/* n keys read at once (one round trip on Redis): vals_r[i] malloc'd, or
 * NULL when absent. 0, or -1 (every vals_r[i] NULL). */
int sift_kv_mget(struct sift_kv *kv, const char *const *keys, size_t n, char **vals_r);
/* Adds deltas[i] to keys[i] (a missing key counts as 0), all at once (one
 * atomic script on Redis); each key's expiry is set to ttl_ms (0: none) at
 * every increment, and a key whose value drops to 0 or below is deleted
 * (counters that are counted down). 0 or -1. */
int sift_kv_incr_many(struct sift_kv *kv, const char *const *keys, const long long *deltas, size_t n,
		      long ttl_ms);
/* The n writes of ops as one unit (struct sift_kv_op in sift/plugin.h):
 * on Redis one atomic script, all or nothing; on memory each write is
 * atomic, the batch is not. 0 or -1. */
int sift_kv_write(struct sift_kv *kv, const struct sift_kv_op *ops, size_t n);
/* The store's counters (memory: only; all 0 for other stores): keys held
 * now, its max_keys (0: unbounded) and keys evicted since open to make
 * room for new ones when it held max_keys. Thread-safe. */
struct sift_kv_stats {
	unsigned long long keys, max_keys, evictions;
};
void sift_kv_stats(struct sift_kv *kv, struct sift_kv_stats *st);

/* ---- quarantine.c: the quarantine store -----------------------------------
 * One file per message in dir (the message as received, CRLF) plus a
 * metadata record (queue id, time, envelope sender and recipients, reason,
 * plugin). Writes are atomic (temp file, fsync, rename). Thread-safe. */
int sift_quarantine_store(const char *dir, struct sift_ctx *ctx, const char *reason, const char *plugin,
			  char **id_r, char **err_r);
/* Reading the store (siftctl). An entry's strings are malloc'd; rcpts has
 * n_rcpts items; data_off is where the message starts in the file at path. */
struct sift_qentry {
	char *id, *queue_id, *sender, *reason, *plugin, *path;
	char **rcpts;
	size_t n_rcpts;
	long long time, size, data_off;
	bool has_size; /* the record has a Size: line (size is then the message's length) */
};
void sift_qentry_free(struct sift_qentry *e);
/* Ids are [0-9A-Za-z-]{1,64}: anything else is refused. */
bool sift_quarantine_id_valid(const char *id);
/* Reads one entry's metadata; with fp_r, returns the file positioned at the
 * message (fclose it). */
int sift_quarantine_open(const char *dir, const char *id, struct sift_qentry *e_r, FILE **fp_r, char **err_r);
/* All entries, oldest first (unreadable files are logged and skipped);
 * free each with sift_qentry_free and the array with free(). */
int sift_quarantine_list(const char *dir, struct sift_qentry **list_r, size_t *n_r, char **err_r);
/* Removes a message. Unless held (the caller, a release, holds the lock on
 * the message's file), its lock is taken first: -2 when a release holds
 * it (nothing removed), -1 on other errors. */
int sift_quarantine_delete(const char *dir, const char *id, bool held, char **err_r);
/* Removes (unless dry_run) the temporary files of stores that never
 * finished (a crash between the write and the rename) once they are an
 * hour old, which a store in progress never is, and the release tokens
 * over a day old (refused by filterd: left by a killed release), and
 * reports each (its path, its age in seconds, 0 or the errno of a failed
 * removal, what it was). The number found, or -1 with *err_r. */
long sift_quarantine_purge_tmp(const char *dir, bool dry_run,
			       void (*report)(void *arg, const char *path, long long age, int err,
					      const char *what),
			       void *arg, char **err_r);
/* Refuses (-1, *err_r) an existing dir writable by group or others, or
 * owned by anyone but root and user (filterd_user, a name or a uid; empty
 * or unknown: the user we run as), who could plant release tokens or
 * replace messages there. filterd checks at start, -t and reload, siftctl
 * before it touches the store. A missing dir is not refused
 * here: storing into it fails (a tempfail). */
int sift_quarantine_dir_check(const char *dir, const char *user, char **err_r);
/* Release tokens (see quarantine.c): siftctl makes one for a release;
 * filterd checks (1 = valid, with the quarantine id) and consumes it. */
#define SIFT_RELEASE_HEADER "X-Sift-Release"
bool sift_quarantine_token_valid(const char *token);
int sift_quarantine_release_token(const char *dir, const char *id, char **token_r, char **err_r);
int sift_quarantine_release_check(const char *dir, const char *token, char **id_r);
int sift_quarantine_release_consume(const char *dir, const char *token);

/* ---- host.c: plugins, configuration generations, the plugin chain ----------
 * A generation is one parsed configuration with its plugins initialised; it
 * is reference-counted: every connection holds the generation it started
 * with, a reload builds a new one and swaps sift_gen_current(). */
enum sift_daemon { SIFT_FILTERD = 1, SIFT_POLICYD = 2, SIFT_SIFTCTL = 3 };
enum sift_profile { SIFT_INBOUND = 0, SIFT_ORIGINATING = 1, SIFT_PROFILE_MAX };
extern const char *const sift_profile_names[SIFT_PROFILE_MAX];
extern const char *const sift_verdict_names[SIFT_VERDICT_MAX];

/* The daemon's own parameters (lists, paths, ...) live in a struct that the
 * daemon parses itself; the generation keeps the common ones below. */
struct sift_common_conf {
	const char *plugin_directory;
	const char *const *inbound_plugins;
	const char *const *originating_plugins;
	const char *const *originating_daemons;
	const struct sift_map *originating_networks;
	const char *dns_servers;
	long long dns_timeout;
	const char *state_store;
	const char *myhostname;
	const char *authserv_id;
	const char *tmpdir;
	long long message_memory_limit;
	long long message_header_limit;
	const char *quarantine_directory;
	const char *metrics_listen;
	const char *metrics_auth_file;
	const char *const *metrics_trusted_networks;
	const char *const *metrics_allowed_hosts;
	long long metrics_symbols;
};
extern const struct sift_param sift_common_params[];
/* Registers the common parameters' defaults (myhostname = the system's). */
void sift_config_common_defaults(struct sift_config *cfg);

struct sift_gen;
/* Loads and initialises everything cfg asks for. The caller registered its
 * own tables' defaults already. Equivalent to sift_gen_prepare then
 * sift_gen_init; in a daemon that has sent READY=1 (a reload), it also
 * sends RELOADING=1 and READY=1 around the build. */
struct sift_gen *sift_gen_new(enum sift_daemon daemon, struct sift_config *cfg, char **err_r);
/* A daemon's first generation is built in two steps around the privilege
 * drop. prepare (as root): parses the common and plugin parameters, checks
 * and loads the plugin files, sets up DNS and the state store, and runs the
 * plugins' preinit (skipped once privileges were dropped). init (as the
 * daemon's user): runs the plugins' init. On a prepare failure the caller
 * still owns cfg; after a successful prepare the generation owns it (free
 * it with sift_gen_unref, also when init fails). */
struct sift_gen *sift_gen_prepare(enum sift_daemon daemon, struct sift_config *cfg, char **err_r);
int sift_gen_init(struct sift_gen *g, char **err_r);
void sift_gen_ref(struct sift_gen *g);
void sift_gen_unref(struct sift_gen *g);
/* The current generation, referenced (unref when done); NULL before the
 * first set. */
struct sift_gen *sift_gen_current(void);
/* Makes g current, taking over the caller's reference to it, and drops the
 * reference to the previous one. */
void sift_gen_set_current(struct sift_gen *g);
/* sift_kv_stats of the process's state_store (all 0 before it is open). */
void sift_state_store_stats(struct sift_kv_stats *st);
const struct sift_common_conf *sift_gen_common(const struct sift_gen *g);
const struct sift_config *sift_gen_config(const struct sift_gen *g);
/* Union of the loaded plugins' SIFT_A_* actions and SIFT_F_* flags; which
 * phases any plugin of any profile implements (bit i = enum sift_phase i). */
unsigned sift_gen_actions(const struct sift_gen *g);
unsigned sift_gen_flags(const struct sift_gen *g);
unsigned sift_gen_phases(const struct sift_gen *g);
/* For -p/-n: prints every loaded plugin's parameters. */
void sift_gen_print_params(FILE *out, const struct sift_gen *g, bool all);
size_t sift_gen_plugin_count(const struct sift_gen *g);
const struct sift_plugin *sift_gen_plugin(const struct sift_gen *g, size_t i);
/* The configuration block of plugin i (for siftctl's plugin tools). */
void *sift_gen_plugin_conf(const struct sift_gen *g, size_t i);

/* Checks a path the daemons trust (plugin files and plugin_directory,
 * quarantine_directory): a regular file, or a directory with SIFT_TRUST_DIR,
 * not writable by group or others, and with SIFT_TRUST_OWNER owned by root
 * or by uid `owner` (the plugins: the user we run as, geteuid(); the
 * quarantine: the daemon's user). So is every directory on the way, walked
 * from "/" on descriptors, except that one of root's with the sticky bit
 * (/tmp) may be writable by others; symbolic links are followed (40 at
 * most) when owned by root or `owner`, their targets checked alike. The
 * owner of the directories on the way is checked with SIFT_TRUST_OWNER,
 * and always for what sits in a sticky directory. 0, or -1 with *err_r
 * naming `what`, the path, the part refused, its owner or mode and the
 * fix. */
#define SIFT_TRUST_DIR	 1u
#define SIFT_TRUST_OWNER 2u
int sift_path_trusted(const char *what, const char *path, unsigned flags, uid_t owner, char **err_r);

/* Loads one plugin file with all checks (ABI, size, ownership and mode of
 * the file and of the path to it, as sift_path_trusted with
 * SIFT_TRUST_OWNER and geteuid()); what is loaded is the file checked
 * (dlopen of /proc/self/fd/N). Used by sift_gen_new; shared objects stay
 * loaded for the process life, cached by the path given. */
const struct sift_plugin *sift_plugin_load(const char *path, char **err_r);

/* A plugin linked into the program itself (the session fuzz target):
 * found by its name before plugin_directory is searched. Call before the
 * first generation; the struct stays the caller's. */
void sift_plugin_builtin(const struct sift_plugin *p);

/* The parameters every plugin has (<plugin>_error_action). */
extern const struct sift_param *const sift_plugin_common_params;

/* The host function table given to plugins. */
extern const struct sift_host sift_host_table;

/* A context: one connection (filterd), one policy connection (policyd), one
 * message (siftctl). Not thread-safe: one thread at a time. */
struct sift_ctx *sift_ctx_new(struct sift_gen *g, enum sift_daemon daemon);
void sift_ctx_free(struct sift_ctx *ctx);
struct sift_gen *sift_ctx_gen(struct sift_ctx *ctx);
/* Connection and envelope items (copied; NULL clears). Message items
 * (sender, recipients, queue id) are cleared by sift_ctx_msg_end. */
void sift_ctx_set(struct sift_ctx *ctx, enum sift_item item, const char *value);
/* An item as plugins read it (host->get). */
const char *sift_ctx_get(struct sift_ctx *ctx, enum sift_item item);
/* Sets the reply of the current message's REJECT/TEMPFAIL, as host->reply
 * does for a plugin (the daemon's own replies: checked by the caller). */
void sift_ctx_reply(struct sift_ctx *ctx, const char *code, const char *xcode, const char *text);
/* false: not kept (the message has SIFT_MAX_RCPTS already). */
bool sift_ctx_add_rcpt(struct sift_ctx *ctx, const char *rcpt);
/* A quarantine release: the message is accepted as an ACCEPT verdict
 * accepts it, and from here on only the SIFT_F_ALWAYS_RUN plugins
 * (signing) run, virus scanners (SIFT_F_VIRUS_SCAN) not either. */
void sift_ctx_accept_message(struct sift_ctx *ctx);
/* The recipient added last is taken off (policyd: its RCPT was refused). */
void sift_ctx_drop_last_rcpt(struct sift_ctx *ctx);
/* Where macro()/policy attribute lookups go. */
void sift_ctx_set_macro_fn(struct sift_ctx *ctx, const char *(*fn)(void *arg, const char *name), void *arg);
/* Deadline for the current step (ms since sift_now_ms epoch), 0 = none. */
void sift_ctx_set_deadline(struct sift_ctx *ctx, long long deadline_ms);
/* Chooses the profile from daemon name, SASL login and client address. */
enum sift_profile sift_ctx_choose_profile(struct sift_ctx *ctx);
enum sift_profile sift_ctx_profile(const struct sift_ctx *ctx);
/* siftctl --profile: fixes the profile for the context's life. */
void sift_ctx_force_profile(struct sift_ctx *ctx, enum sift_profile p);
/* Called once privileges are dropped: later generations skip preinit. */
void sift_host_privileges_dropped(void);

/* Message lifetime: begin creates the message store and per-message states;
 * end (after eom or abort) calls abort (if aborted) and msg_end hooks and
 * frees per-message data, edits, symbols and replies. */
void sift_ctx_msg_begin(struct sift_ctx *ctx);
void sift_ctx_msg_end(struct sift_ctx *ctx, bool aborted);
bool sift_ctx_in_msg(const struct sift_ctx *ctx);
/* The verdict the MTA was answered with, for host->msg_outcome in the
 * msg_end hooks: call before sift_ctx_msg_end(ctx, false). */
void sift_ctx_msg_outcome(struct sift_ctx *ctx, enum sift_verdict v);
struct sift_msg *sift_ctx_msg(struct sift_ctx *ctx);

/* Runs the chain for one phase and returns the merged verdict: DUNNO,
 * REJECT, TEMPFAIL or DISCARD (ERROR is mapped through <plugin>_error_action;
 * ACCEPT and HOLD are recorded in the result). A REJECT/TEMPFAIL at RCPT
 * concerns that recipient only and is not kept as the message's verdict;
 * at other phases the message's verdict sticks and later runs return it at
 * once: the result is the only owner of a message's verdict. A plugin's
 * reply for its REJECT/TEMPFAIL is checked here (reply.c). HEADER also
 * stores the header in the message (folds as CRLF) and gives the hooks the
 * stored header; BODY stores the chunk (a storage error is a TEMPFAIL). */
enum sift_verdict sift_run(struct sift_ctx *ctx, enum sift_phase ph);
enum sift_verdict sift_run_header(struct sift_ctx *ctx, const char *name, const char *value);
enum sift_verdict sift_run_body(struct sift_ctx *ctx, const void *buf, size_t len);

/* Results of the current message / request. */
struct sift_edit {
	enum { SIFT_EDIT_ADD, SIFT_EDIT_INSERT, SIFT_EDIT_CHANGE } op;
	unsigned idx;
	char *name, *value; /* value NULL: delete */
	bool auth_results;  /* host->auth_result's header: results are appended */
	struct sift_edit *next;
};
struct sift_symbol {
	char *name, *option;
	double score;
	struct sift_symbol *next;
};
struct sift_result {
	enum sift_verdict verdict;		     /* merged final verdict so far */
	char *reply_code, *reply_xcode, *reply_text; /* for REJECT/TEMPFAIL */
	const char *decided_by;			     /* plugin name that made the verdict */
	bool hold;
	char *hold_reason;
	bool accepted;		     /* an ACCEPT was seen: whitelisted */
	bool released;		     /* a quarantine release: not scanned again */
	struct sift_edit *edits;     /* in order */
	struct sift_symbol *symbols; /* in order */
	double score;
	char **actions;	   /* policyd non-final actions, in order */
	bool *action_once; /* actions[i] came from host->policy_action_once */
	size_t n_actions;
	/* policyd: the policy_action_once actions that a reply of this
	 * transaction carried (kept from request to request) */
	char **once_sent;
	size_t n_once_sent;
};
const struct sift_result *sift_ctx_result(const struct sift_ctx *ctx);
/* Policy requests: clears the per-request results (verdict, reply, actions)
 * but keeps message state keyed by instance. */
void sift_ctx_request_reset(struct sift_ctx *ctx);
/* policyd: the reply for the request just run, the text after "action="
 * (malloc'd): REJECT/TEMPFAIL become "<code> <xcode> <text>" (the checked
 * reply, sift_reply_format), or "REJECT text"/"DEFER text" when the plugin
 * gave no code (Postfix then adds its own), ACCEPT "OK", DISCARD "DISCARD text", HOLD
 * "HOLD text", otherwise the first non-final action (PREPEND ...) or "DUNNO".
 * An action of host->policy_action_once it returns is remembered as sent
 * for the rest of the transaction. */
char *sift_ctx_policy_action(struct sift_ctx *ctx);
/* Summary line for one message: "action=..., profile=..., score=..., symbols=..., time=...". */
char *sift_ctx_summary(struct sift_ctx *ctx, const char *action);

/* ---- session.c: one SMTP session through the plugin chain ------------------
 * The phase sequencing filterd runs for every MTA connection, driven by
 * filterd/session.c (both milter engines) and by `siftctl test`, so that
 * what siftctl test prints is what filterd does. Events come in the
 * milter's order: connect, helo, then per message mail, rcpt..., data,
 * header..., eoh, body..., eom, or abort at any point of a message; quit
 * ends the SMTP connection (a new connect may follow).
 *
 * Items the MTA sends as milter macros are read through `macro` (NULL:
 * none): {client_ptr}, {daemon_name} and j at connect; i (the queue id) at
 * mail, data, eoh and eom; {auth_authen}, {auth_type}, {auth_author} at
 * mail. Plugins' host->macro() reads the same function.
 *
 * Each event returns the verdict: DUNNO goes on; REJECT or TEMPFAIL (with
 * the reply of sift_result_reply) or DISCARD is final for the message
 * (at RCPT, REJECT/TEMPFAIL concern that recipient only; DISCARD is never
 * returned at connect or helo). A final verdict of a message stage sticks
 * until the message ends: later content stages skip their hooks and
 * return it, and eom returns it without running the eom hooks. Events
 * outside a message run no hook: TEMPFAIL before connect, DISCARD after a
 * message ended by DISCARD until the next MAIL or abort (libmilter keeps
 * the RCPT stage after a DISCARD at RCPT: an MTA may go on with more
 * recipients and the content, and none of it is accepted), DUNNO between
 * messages otherwise. When the MTA acts on a message's final verdict (or delivers
 * it after eom), the driver calls sift_session_end, which logs the
 * summary line and ends the message; abort ends it without a summary.
 * Header edits, HOLD and symbols are in sift_ctx_result() until then.
 *
 * Quarantine release: a message whose first header is X-Sift-Release with
 * a valid token runs no plugin; at eom sift_session_release_id() names it
 * and the driver delivers it as is (filterd removes the headers and
 * consumes the token). sift_session_release_headers() counts the
 * X-Sift-Release headers seen (filterd removes them from every message).
 * One session is used by one thread at a time. */
struct sift_session;
/* Takes its own reference to g. */
struct sift_session *sift_session_new(struct sift_gen *g, enum sift_daemon daemon,
				      const char *(*macro)(void *arg, const char *name), void *arg);
void sift_session_free(struct sift_session *s);
/* The plugins' deadlines (host->time_left_ms) for commands and for the
 * content stages, in ms; 0 = none. */
void sift_session_deadlines(struct sift_session *s, long long command_ms, long long content_ms);
/* siftctl --profile: the profile of every connection of the session. */
void sift_session_force_profile(struct sift_session *s, enum sift_profile p);
struct sift_gen *sift_session_gen(const struct sift_session *s);
/* The connection's context; NULL before connect and after quit. */
struct sift_ctx *sift_session_ctx(const struct sift_session *s);
/* hostname as the MTA sent it ("[ip]" when unverified); addr and port in
 * text form as the MTA sent them (NULL: unknown). */
enum sift_verdict sift_session_connect(struct sift_session *s, const char *hostname, const char *addr,
				       const char *port);
enum sift_verdict sift_session_helo(struct sift_session *s, const char *helo);
/* The address as in MAIL FROM/RCPT TO ("<a@b>" or bare); NULL = "<>". */
enum sift_verdict sift_session_mail(struct sift_session *s, const char *sender);
enum sift_verdict sift_session_rcpt(struct sift_session *s, const char *rcpt);
enum sift_verdict sift_session_data(struct sift_session *s);
/* value: what followed the colon; folds with LF or CRLF (stored and shown
 * to plugins with CRLF, see sift_msg_add_header). */
enum sift_verdict sift_session_header(struct sift_session *s, const char *name, const char *value);
enum sift_verdict sift_session_eoh(struct sift_session *s);
enum sift_verdict sift_session_body(struct sift_session *s, const void *buf, size_t len);
enum sift_verdict sift_session_eom(struct sift_session *s);
/* The content stages of a message read from src, as the MTA sends them:
 * every header, eoh, the body in chunks, eom (siftctl test and tools). */
enum sift_verdict sift_session_content(struct sift_session *s, struct sift_msg *src);
void sift_session_end(struct sift_session *s, enum sift_verdict v);
void sift_session_abort(struct sift_session *s);
/* Ends the SMTP connection: abort, then the plugins' close hooks. */
void sift_session_quit(struct sift_session *s);
/* The summary's action word for v: reject, tempfail, discard, hold or
 * accept. */
const char *sift_session_action(const struct sift_session *s, enum sift_verdict v);
const char *sift_session_release_id(const struct sift_session *s);
const char *sift_session_release_token(const struct sift_session *s);
unsigned sift_session_release_headers(const struct sift_session *s);

/* ---- reply.c: SMTP replies (thread-safe) ----------------------------------
 * One set of rules for the reply a REJECT or TEMPFAIL carries, whichever
 * daemon gives it to the MTA. A plugin's reply is checked once, when its
 * verdict is merged (sift_run): an invalid one is logged once, naming the
 * plugin, and dropped, so that the verdict gets the default reply of its
 * class (never a reply the MTA would refuse and turn into a bare reject).
 *   - code (RFC 5321 4.2): three digits, the first matching the verdict
 *     (5 for REJECT, 4 for TEMPFAIL), the second 0-5; NULL = the default;
 *   - xcode (RFC 3463): class.subject.detail, the class equal to the code's
 *     first digit, subject and detail 1 to 3 digits; NULL or "" = none; only
 *     with a code;
 *   - text: no control characters (CR, LF, ...); NULL = the default;
 *   - the reply as sent ("code xcode text", with '%' doubled for the
 *     milter) at most SIFT_REPLY_MAX bytes (libmilter's limit).
 * The defaults are "550 5.7.1 Message rejected" and "451 4.7.1 Try again
 * later". */
#define SIFT_REPLY_MAX 980
/* NULL when valid, else why (a static string). cls: '5' or '4'. */
const char *sift_reply_check(char cls, const char *code, const char *xcode, const char *text);
bool sift_reply_code_ok(char cls, const char *code);
bool sift_reply_xcode_ok(char cls, const char *xcode);
/* The default reply of a verdict's class (REJECT or TEMPFAIL). */
void sift_reply_default(enum sift_verdict v, const char **code_r, const char **xcode_r, const char **text_r);
/* The reply of a REJECT/TEMPFAIL result: its own parts (checked by
 * sift_run), the defaults for what it lacks (*xcode_r NULL: none). */
struct sift_result;
void sift_result_reply(const struct sift_result *r, enum sift_verdict v, const char **code_r,
		       const char **xcode_r, const char **text_r);
/* "code xcode text" (xcode and text may be NULL; code NULL: the text
 * alone), malloc'd; milter: '%' doubled, as the MTA reads the text as a
 * format. */
char *sift_reply_format(const char *code, const char *xcode, const char *text, bool milter);

/* ---- daemon.c: shared command line and process handling --------------------
 * Options common to filterd, policyd and siftctl: -c FILE, -o name=value
 * (repeatable), -f (foreground, log to stderr), -d (debug), -n, -p, -t. */
struct sift_opts {
	const char *config_file;
	char **overrides;
	size_t n_overrides;
	bool foreground, debug, print_nondefault, print_all, test_only;
	bool print_table; /* -P: sift_opts_config prints the table and exits */
};
/* Parses the common options with getopt ("+c:o:fdnpPth"); returns the index
 * of the first operand, -1 on a bad option, -2 for -h. */
int sift_opts_parse(int argc, char **argv, struct sift_opts *o, const char *default_conf);
/* Loads config_file and the overrides into a new config (registering the
 * common defaults and the given table's). */
struct sift_config *sift_opts_config(const struct sift_opts *o, const char *prefix,
				     const struct sift_param *tab, char **err_r);
/* Prints a parameter table, one parameter a line: name, type, default,
 * min, max, choices, doc, separated by tabs (what `siftctl params` reads
 * from `filterd -P` and `policyd -P`). */
void sift_params_dump(FILE *out, const char *prefix, const struct sift_param *tab);
/* The account a daemon runs as, from its <daemon>_user setting (a name or
 * a uid), resolved before anything is created for it:
 *   - started as root: the setting is required; "root" (or 0) keeps root
 *     (a warning is logged at the drop); an empty setting is an error
 *     naming it;
 *   - started as another user: the daemon runs as that user; a setting
 *     naming someone else is only warned about at the drop. */
struct sift_runas {
	const char *param; /* "filterd_user": for messages */
	char *name;	   /* NULL: stay who we are */
	uid_t uid;
	gid_t gid;
	bool change; /* setuid/setgid needed */
	bool root;   /* started as root and staying root */
};
int sift_runas_resolve(const char *param, const char *user, struct sift_runas *r, char **err_r);
/* The uid of a <daemon>_user setting (a name or a uid): 0, or -1 when
 * empty or unknown. */
int sift_user_uid(const char *user, uid_t *uid_r);
void sift_runas_free(struct sift_runas *r);
/* At a reload: the run-as user and the socket settings checked as at start
 * (an unknown user, a bad mode or group fails the reload instead of the
 * next start); nothing is changed. 0, or -1 with *err_r. */
int sift_start_settings_check(const char *daemon, const char *user, const char *mode, const char *group,
			      char **err_r);
/* Becomes r's user (groups, gid, uid; checked), logs a warning when staying
 * root, and marks the privileges dropped (later generations skip preinit). */
int sift_drop_privileges(const struct sift_runas *r, char **err_r);
/* Unix socket settings <daemon>_socket_mode (octal, e.g. 0660) and
 * <daemon>_socket_group (empty: the daemon user's primary group when it
 * runs unprivileged, else unchanged): check validates both values (for -t
 * and before any socket exists); sift_socket_mode parses the mode, which
 * the socket gets at bind() (sift_listen_mode, sift_bind_unix); apply sets
 * the owner (r's user) and group on a socket just bound, through a
 * descriptor of the socket itself (never following a symlink put in its
 * place), and refuses a path that no longer names a socket. */
int sift_socket_opts_check(const char *daemon, const char *mode, const char *group, char **err_r);
int sift_socket_mode(const char *daemon, const char *mode, mode_t *mode_r, char **err_r);
/* bind() of a unix socket that creates it with exactly mode (the umask
 * around bind(); at start only: umask is process-wide); errno as bind's. */
struct sockaddr_un;
int sift_bind_unix(int fd, const struct sockaddr_un *sa, mode_t mode);
int sift_socket_opts_apply(const char *daemon, const char *path, const char *mode, const char *group,
			   const struct sift_runas *r, char **err_r);
/* The path of a unix listen endpoint ("unix:/p" or "local:/p"), else NULL. */
const char *sift_endpoint_unix_path(const char *endpoint);
/* Writes the pid file as the user we are (root, before the drop): mode 0644,
 * written to PATH.tmp (O_EXCL, O_NOFOLLOW) and renamed. */
int sift_write_pidfile(const char *path, char **err_r);
/* Removes the pid file at exit; a directory we may no longer write to
 * (root-owned /run/sift after the drop) leaves it for the service manager
 * (systemd removes RuntimeDirectory at stop) or the next start. */
void sift_remove_pidfile(const char *path);
/* Parses a listen endpoint: "unix:/path", "inet:host:port", "inet:port"
 * (127.0.0.1), "inet6:[::1]:port"; returns a listening socket (unix
 * sockets are created with mode 0660, or mode with sift_listen_mode; a
 * stale socket is replaced). */
int sift_listen(const char *endpoint, int backlog, char **err_r);
int sift_listen_mode(const char *endpoint, int backlog, mode_t mode, char **err_r);
/* systemd readiness (sd_notify; no-op without libsystemd or NOTIFY_SOCKET):
 * "READY=1" once the listeners are open and the plugins initialised,
 * "STOPPING=1" at stop. Reloads send RELOADING=1/READY=1 (sift_gen_new). */
void sift_notify(const char *state);
bool sift_notify_was_ready(void);

/* ---- control.c: the daemons' control socket (siftctl reload) ---------------
 * Defaults of filterd_control_socket and policyd_control_socket. */
#define SIFT_FILTERD_CONTROL_SOCKET SIFT_RUNDIR "/filterd.ctl"
#define SIFT_POLICYD_CONTROL_SOCKET SIFT_RUNDIR "/policyd.ctl"
/* Daemon side, at startup as root before the privilege drop: creates the
 * socket at path (mode 0600, owner and group r's user when r changes user,
 * as sift_socket_opts_apply sets them; r NULL: left as bound; empty path:
 * none) and starts the thread that serves it. request() asks the daemon's
 * reload path for a reload (0, or -1 when it cannot now); it must not wait
 * for it. A missing directory or a socket that another live process
 * answers on is logged and skipped. */
int sift_control_start(const char *path, const struct sift_runas *r, int (*request)(void), char **err_r);
/* At stop: removes the socket sift_control_start bound, when it is still
 * the one at its path and the daemon's user may (its directory is
 * writable by it), as sift_remove_pidfile the pid file. */
void sift_control_stop(void);
/* The daemon's reload path (every reload, however asked for): begin when
 * it starts reading the configuration, done with the outcome (ok, and a
 * one-line text: what was loaded, or why it failed). Thread-safe. */
unsigned long sift_control_reload_begin(void);
void sift_control_reload_done(unsigned long id, bool ok, const char *text);
/* The reload outcomes so far (for the status): how many finished, the
 * last one's wall-clock time (0: none yet), outcome and text. */
void sift_control_reload_last(unsigned long *count_r, double *time_r, bool *ok_r, char *text, size_t n);
/* Client side (siftctl): asks the daemon at path to reload and waits at
 * most timeout_ms. 0 with *answer_r (the daemon's "ok" text), or -1 with
 * *err_r (the daemon's reason, or why it could not be asked). A listener
 * whose credentials (SO_PEERCRED) are neither root's nor the caller's is
 * not the daemon's: refused before anything is sent. */
int sift_control_reload(const char *path, long timeout_ms, char **answer_r, char **err_r);
/* Client side: the daemon's status, "status" (the JSON document of
 * sift_metrics_status_json) or "summary" (sift_metrics_status_text); the
 * same checks and rules as reload. 0 with *answer_r (malloc'd), -1 with
 * *err_r. */
int sift_control_query(const char *path, const char *command, long timeout_ms, char **answer_r, char **err_r);

/* ---- metrics.c: counters for /metrics and the status (thread-safe) --------
 * Counting costs no lock: every counter is an atomic of its own. Plugins
 * and symbols have fixed-size tables (SIFT_METRICS_MAX_PLUGINS names,
 * SIFT_METRICS_MAX_SYMBOLS distinct symbols; later ones are counted as
 * dropped). The daemon calls sift_metrics_init once at start. */
#define SIFT_METRICS_MAX_PLUGINS 64
#define SIFT_METRICS_MAX_SYMBOLS 1024
#define SIFT_METRICS_MAX_GAUGES	 32
#define SIFT_METRICS_BUCKETS	 16 /* latency histogram buckets, +Inf excluded */
extern const double sift_metrics_bounds[SIFT_METRICS_BUCKETS];
/* The actions counted: what happened to a message (filterd) or what a
 * request was answered (policyd). */
enum sift_maction {
	SIFT_MA_ACCEPT,
	SIFT_MA_REJECT,
	SIFT_MA_TEMPFAIL,
	SIFT_MA_DISCARD,
	SIFT_MA_HOLD,
	SIFT_MA_QUARANTINE,
	SIFT_MA_DEFER,
	SIFT_MA_DUNNO,
	SIFT_MA_PREPEND,
	SIFT_MA_OTHER,
	SIFT_MA_MAX
};
extern const char *const sift_maction_names[SIFT_MA_MAX];
void sift_metrics_init(enum sift_daemon daemon);
/* The slot of a plugin's counters (registered by name once; -1 when the
 * table is full). */
int sift_metrics_plugin_slot(const char *name);
/* A connection opened (+1) or closed (-1). */
void sift_metrics_conn(int delta);
/* A configuration generation was made current. */
void sift_metrics_generation(void);
/* filterd: a message's end, with the summary's action word ("reject",
 * ...; a message quarantined counts as "quarantine"); policyd: a
 * request's end, with the reply's action (the text after action=). Reads
 * the context's results and per-plugin times, then clears the times. */
void sift_metrics_record(struct sift_ctx *ctx, const char *action);
/* host->gauge_set. */
void sift_metrics_gauge_set(const char *plugin, const char *name, double value);
/* Renders: Prometheus text format 0.0.4; the status JSON document (see
 * README "Metrics and status"); a terminal summary. quarantine_dir: where
 * the quarantine is (NULL: none shown), top_symbols: symbols exported. */
void sift_metrics_prometheus(struct sift_buf *out, const char *quarantine_dir, long top_symbols);
void sift_metrics_status_json(struct sift_buf *out, const char *quarantine_dir);
void sift_metrics_status_text(struct sift_buf *out, const char *quarantine_dir);

/* Per-context figures the chain keeps for the metrics (host.c): for plugin
 * i of the context's generation, the time its hooks took since the last
 * sift_metrics_record and its last verdict other than DUNNO (SIFT_DUNNO:
 * none; SIFT_ERROR: an internal error), ran: whether a hook of it ran. */
struct sift_pstat {
	long long ns;
	unsigned char verdict, mapped; /* mapped: the verdict after <plugin>_error_action */
	bool ran;
};
size_t sift_ctx_pstats(struct sift_ctx *ctx, struct sift_pstat **stats_r);
bool sift_ctx_quarantined(const struct sift_ctx *ctx);
/* true: the message has more recipients than the context keeps (the
 * others were not kept: see sift_ctx_add_rcpt). */
bool sift_ctx_rcpts_full(const struct sift_ctx *ctx);
/* The metrics slot of plugin i of g. */
int sift_gen_plugin_slot(const struct sift_gen *g, size_t i);

/* ---- http.c: the metrics listener (GET /metrics, /status.json, /) -------
 * A small HTTP/1.1 server: GET (and HEAD) only, one request per
 * connection (Connection: close), a request head of at most
 * SIFT_HTTP_MAX_HEAD bytes and SIFT_HTTP_MAX_HEADERS header lines read
 * within SIFT_HTTP_TIMEOUT_S, at most SIFT_HTTP_MAX_CONN connections
 * served at once from clients in metrics_trusted_networks and as many
 * from others (more get 503). Clients in metrics_trusted_networks need
 * no credential; others need one of metrics_auth_file's (401). A request
 * whose Host (or Origin, when sent) names neither an IP address,
 * localhost nor a name of metrics_allowed_hosts gets 421, from every client
 * (DNS rebinding). With no current generation (plugins initialising at
 * start, or stopping), every request gets 503 with Retry-After:
 * SIFT_HTTP_RETRY_AFTER_S. */
#define SIFT_HTTP_MAX_HEAD	8192
#define SIFT_HTTP_MAX_HEADERS	64
#define SIFT_HTTP_MAX_CONN	8
#define SIFT_HTTP_TIMEOUT_S	10
#define SIFT_HTTP_RETRY_AFTER_S 5
struct sift_http_req {
	bool head;	 /* HEAD rather than GET */
	char path[256];	 /* the path without the query */
	char auth[1024]; /* the Authorization header's value ("" if none) */
	bool has_host;	 /* a Host header was sent (required of HTTP/1.1) */
	char host[256];	 /* its value */
	bool has_origin; /* an Origin header was sent */
	char origin[256];
};
/* Parses a request head (the bytes up to and including the empty line).
 * 0 with *r filled; else the HTTP status to answer (400, 405, 414, 431,
 * 501, 505). An HTTP/1.1 request without Host, or with two, is 400. */
int sift_http_parse(const char *head, size_t len, struct sift_http_req *r);
/* Whether a Host value (host[:port]) may be served: an IPv4 address, an
 * [IPv6] address, localhost or one of names (case-insensitive, a trailing
 * dot ignored), with any port. */
bool sift_http_host_allowed(const char *host, const char *const *names);
/* Whether an Origin value (scheme://host[:port], nothing after) names such a host
 * ("null" does not). */
bool sift_http_origin_allowed(const char *origin, const char *const *names);
/* Whether an Authorization value matches a credential of the auth file's
 * text ("token = T" and "basic = user:password" lines, # comments). */
bool sift_http_auth_ok(const char *file_text, const char *authorization);
/* Opens the listener (inet:HOST:PORT, inet6:[ADDR]:PORT; as root, before
 * the privilege drop) and starts its thread. 0 or -1 with *err_r. */
int sift_http_start(const char *endpoint, char **err_r);

#endif
