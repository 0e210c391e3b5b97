/*
 * rbl.c - weighted DNS block list checks of the SMTP client in policyd, as
 * Postfix's reject_rbl_client with postscreen's dnsbl_sites syntax:
 *
 *   rbl_sites = zen.spamhaus.org=127.0.0.[2..11]*3 bl.spamcop.net*2
 *               list.dnswl.org=127.0.[0..255].[1..3]*-2
 *
 * Each site is DOMAIN[=FILTER][*WEIGHT]. FILTER is a pattern of the four
 * octets of an A record: an octet is a number or a bracketed list of
 * numbers and ranges separated by ';' ("[2..11]", "[1;3;5..7]"); without a
 * filter any answer counts. Only A records in 127.0.0.0/8 count, filter or
 * not: every list answers there (RFC 5782), and another address is a
 * broken or hijacked list (a lapsed list domain whose new owner answers
 * every name), which must not refuse the world; a filter whose first octet
 * leaves out 127 is refused at start. WEIGHT (an
 * integer, default 1, negative for allow lists) is added once per site whose
 * filter matches one of the answers. A domain named by several sites is
 * queried once.
 *
 * At RCPT (protocol_state RCPT) the client address is looked up in every
 * list at once (host->dns_start), the answers collected against one
 * deadline (rbl_timeout), and the weights summed. A sum at or above
 * rbl_threshold (postscreen_dnsbl_threshold) rejects the recipient with
 * "554 5.7.1 Service unavailable; Client host [IP] blocked using LIST" (the
 * listed site of greatest weight), the reply of Postfix's reject_rbl_client.
 * A list that does not answer in time, or answers SERVFAIL, adds nothing:
 * when the sum stays under the threshold and a failed list's weight could
 * have brought it there, rbl_dns_error_action decides (dunno by default: a
 * DNS failure never rejects); a failed allow list, or one too light to
 * reach the threshold, changes nothing. So it
 * does when the sum reaches the threshold but an allow list (negative
 * weight) failed whose weight would have brought it under: the client
 * might have been allowed, and is not rejected on the other lists alone.
 * Clients in rbl_client_allow (a map of addresses or networks, cidr: say)
 * and private, loopback and link-local addresses are not looked up. Answers
 * are cached by the shared resolver with their TTL.
 *
 * Thread-safe: the configuration is read-only after init.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "sift/plugin.h"

#define RBL_MAX_SITES  64
#define RBL_MAX_WEIGHT 100000 /* 64 sites of it stay far from overflow */
#define DNS_T_A	       1

/* One octet of a reply filter: 256 bits. */
struct octet_set {
	unsigned char bits[32];
};

struct site {
	char *text;    /* as configured, for logs */
	size_t zone;   /* index into rbl_conf.zones */
	bool filtered; /* else any 127/8 answer */
	struct octet_set oct[4];
	long weight;
};

struct rbl_conf {
	const char *const *sites;
	long long threshold;
	long long timeout;
	const struct sift_map *client_allow;
	int dns_error_action;
	long long reject_code;
	/* derived */
	struct site *site;
	size_t nsites;
	char **zones; /* distinct domains, lower case, no final dot */
	size_t nzones;
};

enum { DNSERR_DUNNO, DNSERR_TEMPFAIL };

static const struct sift_host *host;

#define OFF(f) offsetof(struct rbl_conf, f)
static const struct sift_param params[] = {
	{"sites", SIFT_P_LIST, "", 0, 0, OFF(sites), NULL,
	 "DNS block/allow lists with reply filters and weights, as postscreen_dnsbl_sites "
	 "(zen.spamhaus.org=127.0.0.[2..11]*3)"},
	{"threshold", SIFT_P_INT, "1", -1000000, 1000000, OFF(threshold), NULL,
	 "sum of weights from which the recipient is rejected (postscreen_dnsbl_threshold)"},
	{"timeout", SIFT_P_TIME, "5s", 10, 60000, OFF(timeout), NULL,
	 "one deadline for all lookups of a request (a list answering later adds nothing)"},
	{"client_allow", SIFT_P_MAP, "", 0, 0, OFF(client_allow), NULL,
	 "clients never looked up: a map of addresses or networks (cidr:/etc/postfix/rbl_allow)"},
	{"dns_error_action", SIFT_P_ENUM, "dunno", 0, 0, OFF(dns_error_action), "dunno|tempfail",
	 "what a list that failed (timeout, SERVFAIL) gives when its weight could have changed the answer"},
	{"reject_code", SIFT_P_INT, "554", 500, 599, OFF(reject_code), NULL,
	 "SMTP code of the rejection (Postfix's rbl_reply_maps default code)"},
	SIFT_PARAM_END,
};
#undef OFF

/* ---- dnsbl_sites syntax ---------------------------------------------------- */

static char *fmt_err(const char *site, const char *why)
{
	size_t n = strlen(site) + strlen(why) + 32;
	char *e = malloc(n);
	if (e)
		snprintf(e, n, "rbl_sites: \"%s\": %s", site, why);
	return e;
}

/* A number 0..255 at *p; advances *p. */
static int parse_num(const char **p, unsigned *v)
{
	const char *s = *p;
	unsigned n = 0;
	size_t digits = 0;
	while (*s >= '0' && *s <= '9' && digits < 4) {
		n = n * 10 + (unsigned)(*s - '0');
		s++;
		digits++;
	}
	if (digits == 0 || digits > 3 || n > 255)
		return -1;
	*p = s;
	*v = n;
	return 0;
}

static void set_range(struct octet_set *o, unsigned a, unsigned b)
{
	for (unsigned i = a; i <= b; i++)
		o->bits[i / 8] |= (unsigned char)(1u << (i % 8));
}

/* One octet pattern: N or [N;N..M;...]. */
static int parse_octet(const char **p, struct octet_set *o)
{
	unsigned a, b;
	if (**p != '[') {
		if (parse_num(p, &a) < 0)
			return -1;
		set_range(o, a, a);
		return 0;
	}
	(*p)++;
	for (;;) {
		if (parse_num(p, &a) < 0)
			return -1;
		b = a;
		if ((*p)[0] == '.' && (*p)[1] == '.') {
			*p += 2;
			if (parse_num(p, &b) < 0 || b < a)
				return -1;
		}
		set_range(o, a, b);
		if (**p == ';') {
			(*p)++;
			continue;
		}
		if (**p != ']')
			return -1;
		(*p)++;
		return 0;
	}
}

static int parse_filter(const char *s, const char *end, struct site *st)
{
	const char *p = s;
	for (int i = 0; i < 4; i++) {
		if (i > 0) {
			if (p >= end || *p != '.')
				return -1;
			p++;
		}
		if (p >= end || parse_octet(&p, &st->oct[i]) < 0 || p > end)
			return -1;
	}
	return p == end ? 0 : -1;
}

/* The longest list domain: a query name is at most 253 octets, and an IPv6
 * client's name takes 63 of them and a dot (32 nibbles). */
#define RBL_MAX_DOMAIN (253 - 64)

/* NULL when d (n octets, no final dot) can be a list's domain, else why not. */
static const char *domain_error(const char *d, size_t n)
{
	if (n == 0)
		return "no domain before '=' or '*'";
	if (n > RBL_MAX_DOMAIN)
		return "the domain is longer than 189 octets (with an IPv6 client's 64 octets before it, "
		       "a query name would be over 253)";
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		char c = d[i];
		if (c == '.') {
			if (label == 0)
				return "not a domain name (an empty label)";
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			   c == '-' || c == '_') {
			if (c == '-' && label == 0)
				return "not a domain name (a label starts with '-')";
			if (++label > 63)
				return "not a domain name (a label is longer than 63 octets)";
		} else {
			return "not a domain name (letters, digits, '-' and '_' in labels between dots)";
		}
	}
	return NULL;
}

static bool domain_ok(const char *d, size_t n)
{
	return domain_error(d, n) == NULL;
}

/* Adds the zone (lower case) if new; its index. */
static size_t zone_index(struct rbl_conf *c, const char *d, size_t n)
{
	for (size_t i = 0; i < c->nzones; i++)
		if (strlen(c->zones[i]) == n && strncasecmp(c->zones[i], d, n) == 0)
			return i;
	char *z = malloc(n + 1);
	if (!z)
		abort();
	for (size_t i = 0; i < n; i++)
		z[i] = (char)(d[i] >= 'A' && d[i] <= 'Z' ? d[i] - 'A' + 'a' : d[i]);
	z[n] = 0;
	c->zones[c->nzones] = z;
	return c->nzones++;
}

/* One site: DOMAIN[=FILTER][*WEIGHT]. */
static int parse_site(struct rbl_conf *c, const char *text, char **err_r)
{
	const char *star = strrchr(text, '*');
	const char *end = star ? star : text + strlen(text);
	struct site st = {0};
	st.weight = 1;
	if (star) {
		char *e;
		const char *w = star + 1;
		errno = 0;
		long v = strtol(w, &e, 10);
		if (!*w || *e || (*w != '-' && *w != '+' && (*w < '0' || *w > '9'))) {
			*err_r = fmt_err(text, "the weight after '*' is not an integer");
			return -1;
		}
		if (errno == ERANGE || v < -RBL_MAX_WEIGHT || v > RBL_MAX_WEIGHT) {
			*err_r = fmt_err(text, "the weight after '*' is out of range (-100000..100000)");
			return -1;
		}
		st.weight = v;
	}
	const char *eq = memchr(text, '=', (size_t)(end - text));
	const char *dend = eq ? eq : end;
	size_t dn = (size_t)(dend - text);
	while (dn > 0 && text[dn - 1] == '.')
		dn--;
	if (!domain_ok(text, dn)) {
		*err_r = fmt_err(text, domain_error(text, dn));
		return -1;
	}
	if (eq) {
		if (parse_filter(eq + 1, end, &st) < 0) {
			*err_r = fmt_err(text, "bad reply filter (want d.d.d.d, an octet N or [N;N..M])");
			return -1;
		}
		if (!(st.oct[0].bits[127 / 8] & (1u << (127 % 8)))) {
			*err_r = fmt_err(text, "the reply filter never matches: lists answer in 127.0.0.0/8, "
					       "other answers never count");
			return -1;
		}
		st.filtered = true;
	}
	if (c->nsites >= RBL_MAX_SITES) {
		*err_r = fmt_err(text, "too many sites (at most 64)");
		return -1;
	}
	st.text = strdup(text);
	if (!st.text)
		abort();
	st.zone = zone_index(c, text, dn);
	c->site[c->nsites++] = st;
	return 0;
}

static void rbl_release(void *cp)
{
	struct rbl_conf *c = cp;
	for (size_t i = 0; i < c->nsites; i++)
		free(c->site[i].text);
	for (size_t i = 0; i < c->nzones; i++)
		free(c->zones[i]);
	free(c->site);
	free(c->zones);
	c->site = NULL;
	c->zones = NULL;
	c->nsites = c->nzones = 0;
}

/* Parses rbl_sites into the derived fields; -1 with *err_r. */
static int parse_sites(struct rbl_conf *c, char **err_r)
{
	c->site = calloc(RBL_MAX_SITES, sizeof(*c->site));
	c->zones = calloc(RBL_MAX_SITES, sizeof(*c->zones));
	if (!c->site || !c->zones)
		abort();
	for (const char *const *s = c->sites; s && *s; s++)
		if (parse_site(c, *s, err_r) < 0) {
			rbl_release(c);
			return -1;
		}
	return 0;
}

/* Does the answer (4 octets of an A record) pass the site's filter? */
static bool site_matches(const struct site *st, const unsigned char a[4])
{
	if (a[0] != 127)
		return false; /* a broken or hijacked list, filter or not */
	if (!st->filtered)
		return true;
	for (int i = 1; i < 4; i++)
		if (!(st->oct[i].bits[a[i] / 8] & (1u << (a[i] % 8))))
			return false;
	return true;
}

/* ---- lookups ------------------------------------------------------------- */

/* Addresses never looked up: loopback (v4 and v6) is looked up, as tests
 * and postscreen do; private and link-local networks are not. */
static bool skip_addr(const char *ip)
{
	unsigned a, b;
	if (strchr(ip, ':'))
		return strncasecmp(ip, "fe80:", 5) == 0 || strncasecmp(ip, "fc", 2) == 0 ||
		       strncasecmp(ip, "fd", 2) == 0;
	if (sscanf(ip, "%u.%u", &a, &b) != 2)
		return true;
	return a == 10 || (a == 172 && b >= 16 && b <= 31) || (a == 192 && b == 168) ||
	       (a == 169 && b == 254) || a == 0;
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The answers of every zone for rev: 1 listed answers in res[z], 0 not
 * listed, -1 failed; all queries in parallel, one deadline. */
static void lookup_all(struct sift_ctx *ctx, const struct rbl_conf *c, const char *rev,
		       struct sift_dns_result **res)
{
	struct sift_dns_pending *p[RBL_MAX_SITES];
	char name[300];
	for (size_t z = 0; z < c->nzones; z++) {
		snprintf(name, sizeof(name), "%s.%s", rev, c->zones[z]);
		p[z] = host->dns_start(name, DNS_T_A);
	}
	long long deadline = mono_ms() + c->timeout;
	/* 0: the request's time is gone already (a plugin before this one
	 * spent it), and the answers are not waited for at all */
	long left_mta = host->time_left_ms(ctx);
	if (left_mta >= 0 && mono_ms() + left_mta - 500 < deadline)
		deadline = mono_ms() + (left_mta > 1000 ? left_mta - 500 : left_mta / 2);
	for (size_t z = 0; z < c->nzones; z++) {
		long long left = deadline - mono_ms();
		res[z] = host->dns_wait(p[z], left > 0 ? (long)left : 0);
	}
}

/* Sums the weights; the listed site of greatest weight in *best_r. A list
 * that failed adds nothing; the weights of the sites it serves are summed
 * in *failed_pos_r (block lists that could have listed the client) and
 * *failed_neg_r (allow lists that could have allowed it). */
static long score_sites(const struct rbl_conf *c, struct sift_dns_result **res, const struct site **best_r,
			bool *failed_r, long *failed_pos_r, long *failed_neg_r)
{
	long sum = 0;
	*best_r = NULL;
	*failed_r = false;
	*failed_pos_r = *failed_neg_r = 0;
	for (size_t z = 0; z < c->nzones; z++)
		if (res[z]->status == SIFT_DNS_TEMPFAIL)
			*failed_r = true;
	for (size_t i = 0; i < c->nsites; i++) {
		const struct site *st = &c->site[i];
		const struct sift_dns_result *r = res[st->zone];
		if (r->status == SIFT_DNS_TEMPFAIL)
			*(st->weight < 0 ? failed_neg_r : failed_pos_r) += st->weight;
		if (r->status != SIFT_DNS_OK)
			continue;
		for (size_t k = 0; k < r->count; k++) {
			if (r->len[k] != 4 || !site_matches(st, r->rr[k]))
				continue;
			sum += st->weight;
			if (st->weight > 0 && (!*best_r || st->weight > (*best_r)->weight))
				*best_r = st;
			break;
		}
	}
	return sum;
}

static enum sift_verdict rbl_policy(struct sift_ctx *ctx)
{
	const struct rbl_conf *c = host->conf(ctx);
	const char *state = host->get(ctx, SIFT_I_PROTOCOL_STATE);
	const char *ip = host->get(ctx, SIFT_I_CLIENT_ADDR);
	if (c->nzones == 0 || !state || strcasecmp(state, "RCPT") != 0 || !ip || !*ip || skip_addr(ip))
		return SIFT_DUNNO;
	char rev[80];
	if (!sift_dnsbl_name(ip, rev, sizeof(rev)))
		return SIFT_DUNNO;
	if (c->client_allow) {
		char *val = NULL;
		int rc = host->map_lookup(c->client_allow, ip, &val);
		free(val);
		if (rc < 0) {
			host->log(ctx, LOG_WARNING, "rbl_client_allow: lookup of %s failed", ip);
			return SIFT_ERROR;
		}
		if (rc > 0)
			return SIFT_DUNNO;
	}
	struct sift_dns_result *res[RBL_MAX_SITES];
	lookup_all(ctx, c, rev, res);
	const struct site *best;
	bool failed;
	long failed_pos, failed_neg;
	long sum = score_sites(c, res, &best, &failed, &failed_pos, &failed_neg);
	for (size_t z = 0; z < c->nzones; z++)
		free(res[z]);
	/* An allow list that failed might have brought the sum under the
	 * threshold: no reject on the lists that answered alone, the DNS
	 * error action decides. */
	bool allow_failed = sum >= c->threshold && sum + failed_neg < c->threshold;
	if (sum >= c->threshold && best && !allow_failed) {
		char code[8], text[400];
		snprintf(code, sizeof(code), "%lld", c->reject_code);
		snprintf(text, sizeof(text), "Service unavailable; Client host [%s] blocked using %s", ip,
			 c->zones[best->zone]);
		host->log(ctx, LOG_INFO, "reject: client [%s] score %ld >= %lld (listed in %s)", ip, sum,
			  c->threshold, best->text);
		host->reply(ctx, code, "5.7.1", text);
		return SIFT_REJECT;
	}
	if (allow_failed) {
		host->log(ctx, LOG_NOTICE,
			  "client [%s]: score %ld >= %lld, but an allow list did not answer (its weight "
			  "%ld would bring it under)",
			  ip, sum, c->threshold, failed_neg);
		if (c->dns_error_action == DNSERR_TEMPFAIL) {
			host->reply(ctx, "451", "4.7.1",
				    "Service unavailable; DNS list lookup failed, try again later");
			return SIFT_TEMPFAIL;
		}
	} else if (failed && sum + failed_pos < c->threshold) {
		/* the lists that failed could not have brought the sum to the
		 * threshold (allow lists, or block lists too light): deferring
		 * would gain nothing */
		host->log(ctx, LOG_NOTICE,
			  "client [%s]: a DNS list did not answer (score %ld; its weight %ld could not reach "
			  "%lld)",
			  ip, sum, failed_pos, c->threshold);
	} else if (failed) {
		host->log(ctx, LOG_NOTICE, "client [%s]: a DNS list did not answer (score %ld)", ip, sum);
		if (c->dns_error_action == DNSERR_TEMPFAIL) {
			host->reply(ctx, "451", "4.7.1",
				    "Service unavailable; DNS list lookup failed, try again later");
			return SIFT_TEMPFAIL;
		}
	} else if (sum != 0) {
		host->log(ctx, LOG_INFO, "client [%s] score %ld < %lld", ip, sum, c->threshold);
	}
	return SIFT_DUNNO;
}

static int rbl_init(const struct sift_host *h, void *cp, char **err_r)
{
	struct rbl_conf *c = cp;
	host = h;
	if (h->struct_size < offsetof(struct sift_host, dns_wait) + sizeof(h->dns_wait)) {
		*err_r = strdup("host too old: no dns_start()/dns_wait()");
		return -1;
	}
	return parse_sites(c, err_r);
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "rbl",
	.description = "weighted DNS block list checks of the client (reject_rbl_client, dnsbl_sites)",
	.daemons = SIFT_D_POLICYD,
	.params = params,
	.conf_size = sizeof(struct rbl_conf),
	.init = rbl_init,
	.release = rbl_release,
	.policy = rbl_policy,
};
