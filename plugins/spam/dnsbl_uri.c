/*
 * dnsbl_uri.c - SpamAssassin's URI block lists (URIDNSBL.pm): the hosts of
 * the message's URIs looked up in DNS lists.
 *
 *   urirhsbl  NAME ZONE TYPE          the registered domain of each host
 *   urirhssub NAME ZONE TYPE SUBTEST  (or the host itself with tflags
 *                                      notrim; IPv4 hosts reversed unless
 *                                      domains_only; ips_only: those alone)
 *   uridnsbl  NAME ZONE TYPE          the addresses of the domain's name
 *   uridnssub NAME ZONE TYPE SUBTEST  servers (tflags a: of the host itself)
 *                                      reversed, in ZONE
 *   body NAME eval:check_uridnsbl('NAME')   hits when one answer passes
 *
 * SUBTEST as URIDNSBL's: an address (exact), a number (bit mask of an answer
 * in 127/8), "a-b" (range), "v/m" (value under mask); numbers may be
 * decimal, 0x hex or dotted quads. Without one, any A answer in 127/8 (any
 * TXT) counts. uridnsbl_skip_domain names registered domains or hosts
 * never looked up; e-mail addresses (mailto: and bare user@host) are not
 * looked up unless uridnsbl_skip_mailto is 0 (SpamAssassin 4's default);
 * skip_uribl_checks turns the URI lists off; at most uridnsbl_max_domains
 * hosts per message (in the order found). The registered domain follows
 * util_rb_2tld/util_rb_3tld (SpamAssassin's registry boundaries): one
 * label more than the longest listed suffix, else the last two labels.
 *
 * The evals and the planning share uri_names(): while answers are missing
 * (name servers, their addresses), planning starts the queries and the
 * next round of spam_net_wait continues from the answers.
 */
#include <arpa/inet.h>
#include <stdio.h>

#include "internal.h"

#define T_A  1
#define T_NS 2

/* ---- settings ---------------------------------------------------------------- */

static bool rrtype_of(const char *s, int *t)
{
	if (strcasecmp(s, "A") == 0)
		*t = 1;
	else if (strcasecmp(s, "TXT") == 0)
		*t = 16;
	else
		return false;
	return true;
}

/* uridnsbl/uridnssub/urirhsbl/urirhssub NAME ZONE TYPE [SUBTEST] */
static void uri_def(struct spam_engine *e, struct netconf *nc, char *args, bool rhs, bool sub,
		    const char *where)
{
	char *w[4] = {0};
	int nw = 0;
	for (char *t = strtok(args, " \t"); t && nw < 4; t = strtok(NULL, " \t"))
		w[nw++] = t;
	int type = T_A;
	if (nw < (sub ? 4 : 2) || (nw > 2 && !rrtype_of(w[2], &type))) {
		lint(e, true, "%s: bad URI list definition (want NAME ZONE TYPE%s)", where,
		     sub ? " SUBTEST" : "");
		return;
	}
	struct uridef *d = NULL;
	for (size_t i = 0; i < nc->nuri; i++)
		if (strcmp(nc->uri[i].rule, w[0]) == 0)
			d = &nc->uri[i];
	if (d) {
		free(d->zone);
		free(d->subtest);
	} else {
		nc->uri = xrealloc(nc->uri, (nc->nuri + 1) * sizeof(*nc->uri));
		d = &nc->uri[nc->nuri++];
		d->rule = xstrdup(w[0]);
	}
	size_t zl = strlen(w[1]);
	while (zl && w[1][zl - 1] == '.')
		zl--;
	d->zone = xstrndup(w[1], zl);
	d->rrtype = type;
	d->rhs = rhs;
	d->subtest = sub ? xstrdup(w[3]) : NULL;
}

static void lower_list(char ***list, size_t *n, char *args)
{
	for (char *t = strtok(args, " \t"); t; t = strtok(NULL, " \t")) {
		for (char *c = t; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		strlist_add(list, n, t, true);
	}
}

/* A SpamAssassin boolean: 1/0, yes/no (a missing value is no). */
static bool conf_bool(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return strncasecmp(s, "yes", 3) == 0 || strncasecmp(s, "on", 2) == 0 || atol(s) != 0;
}

bool uri_directive(struct spam_engine *e, struct netconf *nc, const char *d, char *args, const char *where)
{
	if (strcmp(d, "uridnsbl") == 0 || strcmp(d, "uridnssub") == 0)
		uri_def(e, nc, args, false, d[6] == 's', where);
	else if (strcmp(d, "urirhsbl") == 0 || strcmp(d, "urirhssub") == 0)
		uri_def(e, nc, args, true, d[6] == 's', where);
	else if (strcmp(d, "uridnsbl_skip_domain") == 0 || strcmp(d, "uridnsbl_skip_domains") == 0)
		lower_list(&nc->skip, &nc->nskip, args);
	else if (strcmp(d, "uridnsbl_skip_mailto") == 0)
		nc->skip_mailto = conf_bool(args);
	else if (strcmp(d, "skip_uribl_checks") == 0)
		nc->skip_uribl = conf_bool(args);
	else if (strcmp(d, "uridnsbl_max_domains") == 0)
		nc->max_domains = atol(args) > 0 ? atol(args) : 1;
	else if (strcmp(d, "util_rb_tld") == 0)
		lower_list(&nc->tld, &nc->ntld, args);
	else if (strcmp(d, "util_rb_2tld") == 0)
		lower_list(&nc->tld2, &nc->ntld2, args);
	else if (strcmp(d, "util_rb_3tld") == 0)
		lower_list(&nc->tld3, &nc->ntld3, args);
	else if (strcmp(d, "clear_util_rb") == 0) {
		for (size_t i = 0; i < nc->ntld; i++)
			free(nc->tld[i]);
		for (size_t i = 0; i < nc->ntld2; i++)
			free(nc->tld2[i]);
		for (size_t i = 0; i < nc->ntld3; i++)
			free(nc->tld3[i]);
		nc->ntld = nc->ntld2 = nc->ntld3 = 0;
	} else
		return false;
	return true;
}

/* The suffix of host with k labels (dots[] are its nd dots). */
static const char *suffix(const char *host, const char *const *dots, size_t nd, size_t k)
{
	return k > nd ? host : dots[nd - k] + 1;
}

/* The registered domain of a lower-case host name: a suffix of host. */
const char *registered_domain(const struct netconf *nc, const char *host)
{
	const char *dots[128];
	size_t nd = 0;
	for (const char *p = host; *p && nd < 128; p++)
		if (*p == '.')
			dots[nd++] = p;
	if (nc && nd >= 3 && strlist_has(nc->tld3, nc->ntld3, suffix(host, dots, nd, 3)))
		return suffix(host, dots, nd, 4);
	if (nc && nd >= 2 && strlist_has(nc->tld2, nc->ntld2, suffix(host, dots, nd, 2)))
		return suffix(host, dots, nd, 3);
	return suffix(host, dots, nd, 2);
}

bool domain_tld_valid(const struct netconf *nc, const char *dom)
{
	const char *dot = strrchr(dom, '.');
	if (!nc || !dot || strpbrk(dom, " \t\r\n"))
		return false;
	return strlist_has(nc->tld, nc->ntld, dot + 1);
}

/* ---- hosts and names --------------------------------------------------------------- */

static bool skipped(const struct netconf *nc, const char *host, const char *dom)
{
	return strlist_has(nc->skip, nc->nskip, dom) || strlist_has(nc->skip, nc->nskip, host);
}

/* An e-mail address among the URIs: "mailto:..." or a bare "user@host"
 * (SpamAssassin lists both as mailto: URIs). */
static bool is_mailto(const char *uri)
{
	if (strncasecmp(uri, "mailto:", 7) == 0)
		return true;
	const char *at = strchr(uri, '@');
	return at && !strstr(uri, "://") && !memchr(uri, '/', (size_t)(at - uri));
}

/* The distinct URI hosts of the message (at most uridnsbl_max_domains),
 * lower case, not skipped (uridnsbl_skip_domain; e-mail addresses with
 * uridnsbl_skip_mailto, the default, as SpamAssassin 4): those of its
 * URIs, then those of the domains its text names without a scheme
 * (bare); returns how many. */
static size_t uri_hosts(const struct netconf *nc, const struct sift_mime *mime, const struct bare_uris *bare,
			const char **out, size_t max)
{
	size_t n = 0, nm = mime ? mime->uri_count : 0, nb = bare ? bare->n : 0;
	for (size_t i = 0; i < nm + nb && n < max; i++) {
		const char *h = i < nm ? mime->uris[i].host : bare->host[i - nm];
		if (!h || !*h || (i < nm && nc->skip_mailto && is_mailto(mime->uris[i].uri)))
			continue;
		bool dup = false;
		for (size_t k = 0; k < n && !dup; k++)
			dup = strcmp(out[k], h) == 0;
		if (dup)
			continue;
		unsigned char b[4];
		if (inet_pton(AF_INET, h, b) != 1 &&
		    (!fqdn_ok(h) || skipped(nc, h, registered_domain(nc, h))))
			continue;
		out[n++] = h;
	}
	return n;
}

struct uriwalk {
	struct spam_net *plan; /* planning: start what is missing */
	const struct spam_net *net;
	name_fn final;
	void *arg;
};

static void zone_join(char *out, size_t n, const char *label, const char *zone)
{
	snprintf(out, n, "%s.%s", label, zone);
}

/* The addresses of name in the list (uridnsbl): after its A answer. */
static void addr_names(struct uriwalk *w, const struct uridef *d, const char *name)
{
	const struct sift_dns_result *r = net_answer(w->net, name, T_A);
	if (!r) {
		net_want_step(w->plan, name, T_A, true);
		return;
	}
	for (size_t i = 0; i < r->count; i++) {
		if (r->len[i] != 4)
			continue;
		char ip[20], rev[80], q[300];
		snprintf(ip, sizeof(ip), "%u.%u.%u.%u", r->rr[i][0], r->rr[i][1], r->rr[i][2], r->rr[i][3]);
		if (ip_private(ip) || !sift_dnsbl_name(ip, rev, sizeof(rev)))
			continue;
		zone_join(q, sizeof(q), rev, d->zone);
		w->final(w->arg, q, d->rrtype);
	}
}

/* A name in wire form (uncompressed, as the resolver gives rdata) as text. */
static bool wire_name(const unsigned char *p, size_t len, char *out, size_t n)
{
	size_t o = 0, i = 0;
	while (i < len && p[i]) {
		size_t l = p[i++];
		if (l > 63 || i + l > len || o + l + 2 > n)
			return false;
		if (o)
			out[o++] = '.';
		for (size_t k = 0; k < l; k++)
			out[o++] = (char)tolower(p[i + k]);
		i += l;
	}
	out[o] = 0;
	return o > 0;
}

/* Every name a rule's list is asked about for one host, to w->final. */
static void uri_names(struct uriwalk *w, const struct netconf *nc, const struct rule *r,
		      const struct uridef *d, const char *host)
{
	char q[300], rev[80];
	unsigned char b[4];
	bool ip = inet_pton(AF_INET, host, b) == 1;
	if (d->rhs) {
		if (ip ? (r->tflags & TF_DOMAINS_ONLY) || ip_private(host) : (r->tflags & TF_IPS_ONLY) != 0)
			return;
		if (ip && sift_dnsbl_name(host, rev, sizeof(rev)))
			zone_join(q, sizeof(q), rev, d->zone);
		else
			zone_join(q, sizeof(q), r->tflags & TF_NOTRIM ? host : registered_domain(nc, host),
				  d->zone);
		w->final(w->arg, q, d->rrtype);
		return;
	}
	if (ip)
		return;
	if (r->tflags & TF_A)
		addr_names(w, d, host);
	if ((r->tflags & TF_NS) || !(r->tflags & TF_A)) {
		const char *dom = registered_domain(nc, host);
		const struct sift_dns_result *ns = net_answer(w->net, dom, T_NS);
		if (!ns) {
			net_want_step(w->plan, dom, T_NS, true);
			return;
		}
		for (size_t i = 0; i < ns->count; i++) {
			char name[256];
			if (wire_name(ns->rr[i], ns->len[i], name, sizeof(name)))
				addr_names(w, d, name);
		}
	}
}

static const struct uridef *uri_def_of(const struct netconf *nc, const struct rule *r)
{
	const char *name = r->neval > 0 ? r->eval_args[0] : r->name;
	for (size_t i = 0; nc && i < nc->nuri; i++)
		if (strcmp(nc->uri[i].rule, name) == 0)
			return &nc->uri[i];
	return NULL;
}

static void want_final(void *a, const char *name, int type)
{
	net_want(a, name, type);
}

void spam_net_uris(struct spam_net *n, const struct spam_input *in)
{
	const struct spam_engine *e = n ? net_engine(n) : NULL;
	const struct netconf *nc = e ? e->net : NULL;
	if (!nc || !nc->nuri || nc->skip_uribl)
		return;
	/* the domains the rendered body names without a scheme: the body is
	 * rendered once for the message (net_bare), before scoring, which
	 * borrows it, so that the answers are on their way meanwhile */
	const struct bare_uris *bare = net_bare(n, in->mime);
	const char *hosts[256];
	size_t nh =
		uri_hosts(nc, in->mime, bare, hosts, nc->max_domains < 256 ? (size_t)nc->max_domains : 256);
	struct uriwalk w = {.plan = n, .net = n, .final = want_final, .arg = n};
	for (size_t ei = 0; ei < e->neval_rules; ei++) {
		const struct rule *r = &e->rules[e->eval_rules[ei]];
		const struct uridef *d =
			rule_kind(r) == NK_URI && net_rule_active(e, r) ? uri_def_of(nc, r) : NULL;
		for (size_t h = 0; d && h < nh; h++)
			uri_names(&w, nc, r, d, hosts[h]);
	}
}

/* ---- the eval --------------------------------------------------------------------- */

/* URIDNSBL's subtest forms as numbers: mask, range a-b or value/mask. */
static bool num_of(const char *s, size_t len, unsigned long *v)
{
	char buf[32];
	unsigned char b[4];
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = 0;
	if (inet_pton(AF_INET, buf, b) == 1) {
		*v = (unsigned long)b[0] << 24 | (unsigned long)b[1] << 16 | (unsigned long)b[2] << 8 | b[3];
		return true;
	}
	char *end;
	*v = strtoul(buf, &end, strncasecmp(buf, "0x", 2) == 0 ? 16 : 10);
	return !*end;
}

static bool uri_subtest_ok(const char *sub, const char *ans, bool is_a)
{
	if (!sub)
		return !is_a || strncmp(ans, "127.", 4) == 0;
	if (strcmp(sub, ans) == 0)
		return true;
	unsigned long a, n1, n2;
	if (!is_a || !num_of(ans, strlen(ans), &a))
		return false;
	size_t l1 = strcspn(sub, "-/");
	if (!num_of(sub, l1, &n1))
		return false;
	if (!sub[l1]) {
		if (strchr(sub, '.'))
			return a == n1;
		return (a & n1) && (a & 0xff000000ul) == 0x7f000000ul;
	}
	if (!num_of(sub + l1 + 1, strlen(sub + l1 + 1), &n2))
		return false;
	return sub[l1] == '-' ? a >= n1 && a <= n2 : (a & n2) == (n1 & n2);
}

struct urihit {
	const struct spam_net *net;
	const char *sub;
	int hit;
};

static void hit_fn(void *a_, const char *name, int type)
{
	struct urihit *a = a_;
	const struct sift_dns_result *r = net_answer(a->net, name, type);
	for (size_t i = 0; r && i < r->count && !a->hit; i++) {
		char ans[512];
		if (type == T_A) {
			if (r->len[i] != 4)
				continue;
			snprintf(ans, sizeof(ans), "%u.%u.%u.%u", r->rr[i][0], r->rr[i][1], r->rr[i][2],
				 r->rr[i][3]);
		} else {
			snprintf(ans, sizeof(ans), "%s", (const char *)r->rr[i]);
		}
		a->hit = uri_subtest_ok(a->sub, ans, type == T_A);
	}
}

int ev_net_uri(struct msgctx *m, const struct rule *r)
{
	const struct netconf *nc = m->e->net;
	const struct uridef *d = uri_def_of(nc, r);
	if (!m->in->net || !d || !spam_engine_net(m->e) || nc->skip_uribl)
		return 0;
	const char *hosts[256];
	size_t nh = uri_hosts(nc, m->mime, msg_bare_uris(m), hosts,
			      nc->max_domains < 256 ? (size_t)nc->max_domains : 256);
	struct urihit a = {.net = m->in->net, .sub = d->subtest};
	struct uriwalk w = {.plan = NULL, .net = m->in->net, .final = hit_fn, .arg = &a};
	for (size_t h = 0; h < nh && !a.hit; h++)
		uri_names(&w, nc, r, d, hosts[h]);
	return a.hit;
}
