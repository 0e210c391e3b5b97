/*
 * dnsbl.c - SpamAssassin's network tests on DNS block lists (DNSEval.pm,
 * Dns.pm): the settings, the message's lookups and the evals.
 *
 * Settings (net_directive, from the rule files): skip_rbl_checks,
 * dns_available, originating_ip_headers / clear_originating_ip_headers,
 * num_check_received, and for URIs (dnsbl_uri.c) uridnsbl, uridnssub,
 * urirhsbl, urirhssub, uridnsbl_skip_domain, uridnsbl_skip_mailto,
 * skip_uribl_checks, uridnsbl_max_domains and the
 * registry boundaries util_rb_tld/2tld/3tld.
 *
 * Per message (struct spam_net, owned by the plugin): the queries are
 * started as soon as their data is known, all in parallel through the
 * host's asynchronous resolver (whose cache keeps answers for their TTL):
 * the client address at connect (spam_net_client), the relays and sender
 * addresses at end of header (spam_net_headers), the URIs at end of message
 * (spam_net_uris, with the name server and address steps of uridnsbl
 * rules). spam_net_wait collects them against one deadline counted from
 * the last query started before it (so end of message waits at most the
 * timeout, however long the client took to send the message: a deadline
 * counted from the connect would have passed for a slow client, whose
 * header and URI lookups would then never be waited for). The evals then
 * read the answers: a query that did not answer (timeout, SERVFAIL) makes
 * no rule hit, as in SpamAssassin.
 *
 * The names a rule queries are computed by one function for both uses
 * (rule_names): planning starts them, the eval reads their answers, so the
 * two cannot disagree.
 *
 * Which relays count (_check_rbl_backend): the untrusted relays (the SMTP
 * client first when its address is public: the MTA's own Received line,
 * which SpamAssassin reads, is not shown to a milter), plus the addresses of
 * originating_ip_headers; private addresses never, nor a client in
 * trusted_networks; sets named
 * "-lastexternal" take the first external relay, "-notfirsthop" all but the
 * originating one, "-firsttrusted" the relay our trusted network received
 * from, "-untrusted" all but that one; at most num_check_received.
 * External = untrusted here (internal_networks = trusted_networks).
 */
#include <arpa/inet.h>
#include <stdio.h>

#include "internal.h"

#define T_A   1
#define T_NS  2
#define T_TXT 16

/* ---- settings ---------------------------------------------------------------- */

static struct netconf *netconf_get(struct spam_engine *e)
{
	if (!e->net) {
		e->net = xcalloc(1, sizeof(*e->net));
		e->net->dns_available = 1;
		e->net->num_check_received = 9;
		e->net->max_domains = 20;
		e->net->skip_mailto = true;
		static const char *const orig[] = {"X-Yahoo-Post-IP", "X-Originating-IP", "X-Apparently-From",
						   "X-SenderIP"};
		for (size_t i = 0; i < 4; i++)
			strlist_add(&e->net->orig, &e->net->norig, orig[i], false);
	}
	return e->net;
}

void strlist_add(char ***list, size_t *n, const char *s, bool sorted)
{
	if (sorted) {
		size_t lo = 0, hi = *n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			int c = strcmp((*list)[mid], s);
			if (c == 0)
				return;
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		*list = xrealloc(*list, (*n + 1) * sizeof(char *));
		memmove(*list + lo + 1, *list + lo, (*n - lo) * sizeof(char *));
		(*list)[lo] = xstrdup(s);
		(*n)++;
		return;
	}
	*list = xrealloc(*list, (*n + 1) * sizeof(char *));
	(*list)[(*n)++] = xstrdup(s);
}

bool strlist_has(char *const *list, size_t n, const char *s)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(list[mid], s);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static void strlist_free(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

bool net_directive(struct spam_engine *e, const char *d, char *args, const char *where)
{
	if (strcmp(d, "skip_rbl_checks") == 0) {
		netconf_get(e)->skip_rbl = atoi(args) != 0;
		return true;
	}
	if (strcmp(d, "dns_available") == 0) {
		/* yes, no, test[: names...]: a test counts as yes */
		netconf_get(e)->dns_available = strncasecmp(args, "no", 2) != 0;
		return true;
	}
	if (strcmp(d, "clear_originating_ip_headers") == 0) {
		struct netconf *n = netconf_get(e);
		strlist_free(n->orig, n->norig);
		n->orig = NULL;
		n->norig = 0;
		return true;
	}
	if (strcmp(d, "originating_ip_headers") == 0) {
		struct netconf *n = netconf_get(e);
		for (char *t = strtok(args, " \t"); t; t = strtok(NULL, " \t"))
			strlist_add(&n->orig, &n->norig, t, false);
		return true;
	}
	if (strcmp(d, "num_check_received") == 0) {
		netconf_get(e)->num_check_received = atol(args) > 0 ? atol(args) : 1;
		return true;
	}
	return uri_directive(e, netconf_get(e), d, args, where);
}

void net_free(struct netconf *n)
{
	if (!n)
		return;
	strlist_free(n->orig, n->norig);
	strlist_free(n->skip, n->nskip);
	strlist_free(n->tld, n->ntld);
	strlist_free(n->tld2, n->ntld2);
	strlist_free(n->tld3, n->ntld3);
	for (size_t i = 0; i < n->nuri; i++) {
		free(n->uri[i].rule);
		free(n->uri[i].zone);
		free(n->uri[i].subtest);
	}
	free(n->uri);
	free(n);
}

int spam_engine_net(const struct spam_engine *e)
{
	return (e->score_set & SPAM_SET_NET) && !(e->net && (e->net->skip_rbl || !e->net->dns_available));
}

/* ---- the message's queries -------------------------------------------------- */

struct netq {
	char *name;
	int type;
	struct sift_dns_pending *p; /* started, not collected */
	struct sift_dns_result *r;  /* collected */
	bool step;		    /* a step towards list queries (uridnsbl) */
};

struct spam_net {
	const struct spam_engine *e;
	struct sift_dns_pending *(*start)(const char *name, int rrtype);
	struct sift_dns_result *(*wait)(struct sift_dns_pending *p, long timeout_ms);
	struct netq *q;
	size_t n, cap;
	size_t started;	  /* queries started (cache hits included) */
	long long t_last; /* the latest start, now_ms() */
	char client[64];
	/* net_bare: the rendered body of body_mime and its bare domains */
	const struct sift_mime *body_mime;
	char **lines;
	size_t *lens, nlines;
	struct bare_uris bare;
};

struct spam_net *spam_net_new(const struct spam_engine *e,
			      struct sift_dns_pending *(*start)(const char *, int),
			      struct sift_dns_result *(*wait)(struct sift_dns_pending *, long))
{
	if (!spam_engine_net(e) || !start || !wait)
		return NULL;
	struct spam_net *n = xcalloc(1, sizeof(*n));
	n->e = e;
	n->start = start;
	n->wait = wait;
	return n;
}

static struct netq *net_find(const struct spam_net *n, const char *name, int type)
{
	for (size_t i = 0; i < n->n; i++)
		if (n->q[i].type == type && strcasecmp(n->q[i].name, name) == 0)
			return &n->q[i];
	return NULL;
}

void net_want(struct spam_net *n, const char *name, int type)
{
	net_want_step(n, name, type, false);
}

void net_want_step(struct spam_net *n, const char *name, int type, bool step)
{
	if (!n || net_find(n, name, type))
		return;
	if (n->n == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 32;
		n->q = xrealloc(n->q, n->cap * sizeof(*n->q));
	}
	n->t_last = now_ms();
	struct netq *q = &n->q[n->n++];
	q->name = xstrdup(name);
	q->type = type;
	q->r = NULL;
	q->step = step;
	q->p = n->start(name, type);
	n->started++;
}

const struct sift_dns_result *net_answer(const struct spam_net *n, const char *name, int type)
{
	const struct netq *q = n ? net_find(n, name, type) : NULL;
	return q && q->r && q->r->status == SIFT_DNS_OK ? q->r : NULL;
}

/* Collects what was started (steps_only: the steps alone); false when
 * nothing was waiting. */
static bool collect(struct spam_net *n, long long deadline, bool steps_only)
{
	bool any = false;
	for (size_t i = 0; i < n->n; i++) {
		struct netq *q = &n->q[i];
		if (!q->p || (steps_only && !q->step))
			continue;
		long long left = deadline - now_ms();
		q->r = n->wait(q->p, left > 0 ? (long)left : 0);
		q->p = NULL;
		any = true;
	}
	return any;
}

size_t spam_net_wait(struct spam_net *n, const struct spam_input *in, long timeout_ms)
{
	if (!n)
		return 0;
	long long deadline = (n->started ? n->t_last : now_ms()) + timeout_ms;
	if (in->deadline_ms > 0 && in->deadline_ms < deadline)
		deadline = in->deadline_ms;
	/* uridnsbl rules go name servers -> addresses -> list: the steps
	 * first (a slow list must not eat their time), then everything */
	for (int round = 0; round < 4 && collect(n, deadline, true); round++)
		if (in->mime)
			spam_net_uris(n, in);
	collect(n, deadline, false);
	size_t failed = 0;
	for (size_t i = 0; i < n->n; i++)
		if (n->q[i].r && n->q[i].r->status == SIFT_DNS_TEMPFAIL)
			failed++;
	return failed;
}

static void net_body_free(struct spam_net *n)
{
	for (size_t i = 0; i < n->nlines; i++)
		free(n->lines[i]);
	free(n->lines);
	free(n->lens);
	bare_uris_free(&n->bare);
	n->lines = NULL;
	n->lens = NULL;
	n->nlines = 0;
	n->body_mime = NULL;
}

const struct bare_uris *net_bare(struct spam_net *n, const struct sift_mime *mime)
{
	if (n->body_mime != mime) {
		net_body_free(n);
		n->body_mime = mime;
		if (n->e->bare_re && mime) {
			body_lines(n->e, mime, &n->lines, &n->lens, &n->nlines);
			bare_uris_find(n->e, n->lines, n->lens, n->nlines, &n->bare);
		}
	}
	return &n->bare;
}

bool net_body(const struct spam_net *n, const struct sift_mime *mime, char ***lines_r, size_t **lens_r,
	      size_t *n_r, const struct bare_uris **bare_r)
{
	if (!n || !n->lines || n->body_mime != mime)
		return false;
	*lines_r = n->lines;
	*lens_r = n->lens;
	*n_r = n->nlines;
	*bare_r = &n->bare;
	return true;
}

void spam_net_free(struct spam_net *n)
{
	if (!n)
		return;
	net_body_free(n);
	for (size_t i = 0; i < n->n; i++) {
		if (n->q[i].p)
			free(n->wait(n->q[i].p, 0));
		free(n->q[i].r);
		free(n->q[i].name);
	}
	free(n->q);
	free(n);
}

const struct spam_engine *net_engine(const struct spam_net *n)
{
	return n->e;
}

size_t spam_net_count(const struct spam_net *n)
{
	return n ? n->n : 0;
}

/* ---- addresses ------------------------------------------------------------------ */

/* SpamAssassin's IP_PRIVATE: ip_private() plus carrier-grade NAT. */
static bool ip_skip(const char *ip)
{
	unsigned a, b;
	if (ip_private(ip))
		return true;
	return sscanf(ip, "%u.%u", &a, &b) == 2 && a == 100 && b >= 64 && b <= 127;
}

struct iplist {
	char ip[24][64];
	size_t n;
};

static void ip_add(struct iplist *l, const char *ip)
{
	if (!ip || !*ip || ip_skip(ip) || l->n >= 24)
		return;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->ip[i], ip) == 0)
			return;
	snprintf(l->ip[l->n++], sizeof(l->ip[0]), "%s", ip);
}

/* Is ip in trusted_networks (internal_networks when only that is set), as
 * the relay parser classifies a Received hop? False when neither is
 * configured: then trust is inferred, and a public address is untrusted. */
static bool ip_trusted(const struct spam_engine *e, const char *ip)
{
	if (!e->trusted_conf && !e->internal_conf)
		return false;
	return netset_contains(e->trusted_conf ? &e->trusted_nets : &e->internal_nets, ip);
}

/* The untrusted relays, most recent first (the client first when public
 * and not in trusted_networks: the MTA's own Received line, which would
 * say so, is not shown to a milter). */
static void untrusted_ips(struct msgctx *m, struct iplist *l)
{
	struct relayinfo *ri = relays(m);
	const char *client = m->in->client_addr;
	size_t from = ri->ntrusted;
	if (client && !ip_skip(client) && !ip_trusted(m->e, client) &&
	    !(ri->n && strcmp(ri->r[0].ip, client) == 0)) {
		ip_add(l, client);
		from = 0; /* a public client breaks the trust chain at once */
	}
	for (size_t i = from; i < ri->n; i++)
		ip_add(l, ri->r[i].ip);
}

/* IPv4 addresses in the originating_ip_headers. */
static void originating_ips(struct msgctx *m, struct iplist *l)
{
	const struct netconf *nc = m->e->net;
	for (size_t k = 0; nc && k < nc->norig; k++) {
		size_t st = 0;
		const struct sift_mime_header *h;
		while ((h = mh(m->mime, nc->orig[k], &st))) {
			for (const char *p = h->value; *p; p++) {
				if (!isdigit((unsigned char)*p) ||
				    (p > h->value && (isalnum((unsigned char)p[-1]) || p[-1] == '.')))
					continue;
				size_t len = strspn(p, "0123456789.");
				char ip[20];
				unsigned char b[4];
				if (len < sizeof(ip)) {
					memcpy(ip, p, len);
					ip[len] = 0;
					if (inet_pton(AF_INET, ip, b) == 1)
						ip_add(l, ip);
				}
				p += len - 1;
			}
		}
	}
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The addresses check_rbl looks up for set (SpamAssassin's order). */
static void set_ips(struct msgctx *m, const char *set, struct iplist *out)
{
	struct iplist u = {0};
	untrusted_ips(m, &u);
	out->n = 0;
	if (ends_with(set, "-lastexternal") || ends_with(set, "-notfirsthop")) {
		*out = u;
		if (ends_with(set, "-lastexternal"))
			out->n = out->n ? 1 : 0;
		else if (out->n > 1)
			out->n--;
	} else {
		originating_ips(m, &u);
		if (ends_with(set, "-firsttrusted")) {
			*out = u;
			out->n = out->n ? 1 : 0;
		} else if (ends_with(set, "-untrusted")) {
			for (size_t i = 1; i < u.n; i++)
				strcpy(out->ip[out->n++], u.ip[i]);
		} else {
			for (size_t i = u.n; i-- > 0;)
				strcpy(out->ip[out->n++], u.ip[i]);
		}
	}
	long max = m->e->net ? m->e->net->num_check_received : 9;
	if ((long)out->n > max)
		out->n = (size_t)max;
}

/* ---- what a rule queries ------------------------------------------------------ */

static const char *arg(const struct rule *r, int i)
{
	return i < r->neval ? r->eval_args[i] : NULL;
}

static void zone_name(char *out, size_t n, const char *label, const char *zone)
{
	size_t zl = strlen(zone);
	while (zl && zone[zl - 1] == '.')
		zl--;
	snprintf(out, n, "%s.%.*s", label, (int)zl, zone);
}

/* A domain name worth asking a list about, as SpamAssassin's
 * Util::is_fqdn_valid (ASCII) judges it: trailing dots aside, at most 253
 * octets in two labels or more, each of 1 to 63 letters, digits, '-' and
 * '_', with no '-' at either end, and no '_' in the last two. */
bool fqdn_ok(const char *h)
{
	size_t n = strlen(h);
	while (n && h[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	size_t nlabels = 1;
	for (size_t i = 0; i < n; i++)
		nlabels += h[i] == '.';
	if (nlabels < 2)
		return false;
	size_t label = 0, start = 0; /* label: its number from the left */
	for (size_t i = 0; i <= n; i++) {
		if (i < n && h[i] != '.')
			continue;
		size_t len = i - start;
		if (len < 1 || len > 63 || h[start] == '-' || h[i - 1] == '-')
			return false;
		bool last_two = label + 2 >= nlabels;
		for (size_t k = start; k < i; k++) {
			unsigned char c = (unsigned char)h[k];
			if (!isalnum(c) && c != '-' && (c != '_' || last_two))
				return false;
		}
		label++;
		start = i + 1;
	}
	return true;
}

/* A host (or address) of an address, queried in zone. */
static void host_name(struct msgctx *m, const struct rule *r, const char *host, const char *zone, name_fn fn,
		      void *arg_)
{
	char name[300], rev[80];
	unsigned char b[16];
	if (inet_pton(AF_INET, host, b) == 1) {
		if (r->tflags & TF_DOMAINS_ONLY || !sift_dnsbl_name(host, rev, sizeof(rev)))
			return;
		zone_name(name, sizeof(name), rev, zone);
	} else {
		if (r->tflags & TF_IPS_ONLY || !fqdn_ok(host))
			return;
		zone_name(name, sizeof(name), host, zone);
	}
	fn(arg_, name, T_A);
}

/* The domain of an address (after '@'), lower case, dots squashed. */
static void addr_host(const char *addr, char *out, size_t n)
{
	out[0] = 0;
	const char *at = strrchr(addr, '@');
	if (!at)
		return;
	const char *p = at + 1;
	while (*p == '.')
		p++;
	size_t o = 0;
	for (; *p && o + 1 < n; p++) {
		if (*p == '.' && o && out[o - 1] == '.')
			continue;
		out[o++] = (char)tolower((unsigned char)*p);
	}
	while (o && out[o - 1] == '.')
		o--;
	out[o] = 0;
}

static void addr_rule(struct msgctx *m, const struct rule *r, const char *hdr, bool domain, name_fn fn,
		      void *a)
{
	char addr[512], host[256];
	first_addr(m, hdr, addr, sizeof(addr));
	addr_host(addr, host, sizeof(host));
	if (!host[0] || !strchr(host, '.'))
		return;
	host_name(m, r, domain ? registered_domain(m->e->net, host) : host, arg(r, 1), fn, a);
}

/* check_rbl_from_host/_domain: SpamAssassin's all_from_addrs, the
 * Resent-From address when there is one, else those of From,
 * Envelope-Sender, Resent-Sender, X-Envelope-From and the envelope sender
 * (each host asked once). */
static void from_rule(struct msgctx *m, const struct rule *r, bool domain, name_fn fn, void *a)
{
	static const char *const hdrs[] = {"From", "Envelope-Sender", "Resent-Sender", "X-Envelope-From",
					   "EnvelopeFrom"};
	char addr[512], hosts[6][256];
	size_t nh = 0;
	first_addr(m, "Resent-From", addr, sizeof(addr));
	bool resent = strchr(addr, '@') != NULL;
	for (size_t i = 0; i < (resent ? 1 : sizeof(hdrs) / sizeof(hdrs[0])); i++) {
		if (!resent)
			first_addr(m, hdrs[i], addr, sizeof(addr));
		char host[256];
		addr_host(addr, host, sizeof(host));
		if (!host[0] || !strchr(host, '.'))
			continue;
		const char *h = domain ? registered_domain(m->e->net, host) : host;
		bool seen = false;
		for (size_t k = 0; k < nh && !seen; k++)
			seen = strcmp(hosts[k], h) == 0;
		if (seen)
			continue;
		snprintf(hosts[nh++], sizeof(hosts[0]), "%s", h);
		host_name(m, r, h, arg(r, 1), fn, a);
	}
}

/* check_rbl_headers: addresses, addresses or host names of headers. */
static void headers_rule(struct msgctx *m, const struct rule *r, name_fn fn, void *a)
{
	const char *list = arg(r, 3) && *arg(r, 3) ? arg(r, 3)
						   : "EnvelopeFrom,Reply-To,Disposition-Notification-To,"
						     "X-WebmailclientIP,X-Source-IP";
	char *copy = xstrdup(list), *save = NULL;
	for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
		while (*h == ' ')
			h++;
		char addr[512];
		first_addr(m, h, addr, sizeof(addr));
		if (strchr(addr, '@')) {
			char host[256];
			addr_host(addr, host, sizeof(host));
			if (strchr(host, '.'))
				host_name(m, r, host, arg(r, 1), fn, a);
			continue;
		}
		size_t st = 0;
		const struct sift_mime_header *v = mh(m->mime, h, &st);
		if (!v)
			continue;
		char host[256];
		snprintf(host, sizeof(host), "%s", v->value);
		host[strcspn(host, " \t\r\n")] = 0;
		for (char *c = host; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		host_name(m, r, host, arg(r, 1), fn, a);
	}
	free(copy);
}

/* check_rbl_rcvd: the last untrusted relay's address, by, helo and rdns. */
static void rcvd_rule(struct msgctx *m, const struct rule *r, name_fn fn, void *a)
{
	struct relayinfo *ri = relays(m);
	if (ri->n <= ri->ntrusted)
		return;
	const struct relay *rl = &ri->r[ri->n - 1];
	const char *v[4] = {rl->ip, rl->by, rl->helo, rl->rdns};
	for (int i = 0; i < 4; i++) {
		bool seen = false;
		for (int k = 0; k < i; k++)
			seen |= strcmp(v[k], v[i]) == 0;
		if (!seen && v[i][0])
			host_name(m, r, v[i], arg(r, 1), fn, a);
	}
}

enum netkind rule_kind(const struct rule *r)
{
	static const struct {
		const char *fn;
		enum netkind k;
	} kinds[] = {{"check_rbl", NK_RBL},
		     {"check_rbl_txt", NK_RBL_TXT},
		     {"check_rbl_sub", NK_RBL_SUB},
		     {"check_rbl_from_host", NK_FROM_HOST},
		     {"check_rbl_from_domain", NK_FROM_DOMAIN},
		     {"check_rbl_envfrom", NK_ENVFROM},
		     {"check_rbl_headers", NK_HEADERS},
		     {"check_rbl_rcvd", NK_RCVD},
		     {"check_uridnsbl", NK_URI}};
	if (!r->eval_fn || r->eval_id < 0)
		return NK_NONE;
	eval_fn f = eval_get(r->eval_id); /* most evals are not ours: no strcmp */
	if (f != ev_net_rbl && f != ev_net_rbl_sub && f != ev_net_uri)
		return NK_NONE;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(r->eval_fn, kinds[i].fn) == 0)
			return kinds[i].k;
	return NK_NONE;
}

/* Every name a check_rbl* rule (not a _sub) queries, to fn. */
static void rule_names(struct msgctx *m, const struct rule *r, name_fn fn, void *a)
{
	enum netkind k = rule_kind(r);
	if (!arg(r, 1) || !*arg(r, 1))
		return;
	switch (k) {
	case NK_RBL:
	case NK_RBL_TXT: {
		struct iplist ips;
		set_ips(m, arg(r, 0), &ips);
		char name[300], rev[80];
		for (size_t i = 0; i < ips.n; i++)
			if (sift_dnsbl_name(ips.ip[i], rev, sizeof(rev))) {
				zone_name(name, sizeof(name), rev, arg(r, 1));
				fn(a, name, k == NK_RBL ? T_A : T_TXT);
			}
		break;
	}
	case NK_FROM_HOST:
		from_rule(m, r, false, fn, a);
		break;
	case NK_FROM_DOMAIN:
		from_rule(m, r, true, fn, a);
		break;
	case NK_ENVFROM:
		addr_rule(m, r, "EnvelopeFrom", false, fn, a);
		break;
	case NK_HEADERS:
		headers_rule(m, r, fn, a);
		break;
	case NK_RCVD:
		rcvd_rule(m, r, fn, a);
		break;
	default:
		break;
	}
}

static void want_fn(void *a, const char *name, int type)
{
	net_want(a, name, type);
}

/* Does a rule run? SpamAssassin skips rules scored 0 except sub-rules
 * (__NAME); a check_rbl rule runs for its set's scored check_rbl_sub too. */
bool net_rule_active(const struct spam_engine *e, const struct rule *r)
{
	if (r->score != 0 || strncmp(r->name, "__", 2) == 0)
		return true;
	enum netkind k = rule_kind(r);
	if ((k != NK_RBL && k != NK_RBL_TXT) || r->neval < 1)
		return false;
	for (size_t ei = 0; ei < e->neval_rules; ei++) {
		const struct rule *b = &e->rules[e->eval_rules[ei]];
		if (b->score != 0 && b->neval > 0 && rule_kind(b) == NK_RBL_SUB &&
		    strcmp(b->eval_args[0], r->eval_args[0]) == 0)
			return true;
	}
	return false;
}

/* A message context good enough for relays and addresses, from the
 * headers alone (the body is not there yet). */
static void plan_rules(struct spam_net *n, const struct spam_input *in)
{
	struct msgctx m = {.e = n->e, .in = in, .mime = in->mime};
	for (size_t ei = 0; ei < n->e->neval_rules; ei++) {
		const struct rule *r = &n->e->rules[n->e->eval_rules[ei]];
		enum netkind k = rule_kind(r);
		if (k != NK_NONE && k != NK_RBL_SUB && k != NK_URI && net_rule_active(n->e, r))
			rule_names(&m, r, want_fn, n);
	}
	relays_free(m.relays);
}

void spam_net_client(struct spam_net *n, const char *ip)
{
	if (!n || !ip || ip_skip(ip))
		return;
	snprintf(n->client, sizeof(n->client), "%s", ip);
	struct sift_mime none = {0};
	struct spam_input in = {.mime = &none, .client_addr = n->client};
	plan_rules(n, &in);
}

void spam_net_headers(struct spam_net *n, const struct spam_input *in)
{
	if (n)
		plan_rules(n, in);
}

/* ---- the evals -------------------------------------------------------------------- */

/* Does an answer (A as "a.b.c.d" or TXT text) pass a check_rbl subtest:
 * none, a regex, a bit mask or an exact address. */
static bool subtest_ok(const char *sub, const char *ans, bool is_a)
{
	if (!sub || !*sub)
		return true;
	size_t digits = strspn(sub, "0123456789");
	unsigned char b[4];
	if (digits && !sub[digits]) {
		if (!is_a || strncmp(ans, "127.", 4) != 0 || inet_pton(AF_INET, ans, b) != 1)
			return false;
		unsigned long v =
			(unsigned long)b[0] << 24 | (unsigned long)b[1] << 16 | (unsigned)b[2] << 8 | b[3];
		return (v & strtoul(sub, NULL, 10)) != 0;
	}
	if (inet_pton(AF_INET, sub, b) == 1 && strspn(sub, "0123456789.") == strlen(sub))
		return strcmp(sub, ans) == 0;
	return re_match_str(sub, ans);
}

struct evalarg {
	struct msgctx *m;
	const char *sub;
	int hit;
};

static void check_fn(void *a_, const char *name, int type)
{
	struct evalarg *a = a_;
	const struct sift_dns_result *r = net_answer(a->m->in->net, name, type);
	for (size_t i = 0; r && i < r->count && !a->hit; i++) {
		char ans[512];
		if (type == T_A) {
			if (r->len[i] != 4)
				continue;
			const unsigned char *d = r->rr[i];
			snprintf(ans, sizeof(ans), "%u.%u.%u.%u", d[0], d[1], d[2], d[3]);
			if (d[0] != 127)
				continue;
		} else {
			snprintf(ans, sizeof(ans), "%s", (const char *)r->rr[i]);
		}
		if (subtest_ok(a->sub, ans, type == T_A))
			a->hit = 1;
	}
}

static bool net_on(struct msgctx *m)
{
	return m->in->net && spam_engine_net(m->e);
}

int ev_net_rbl(struct msgctx *m, const struct rule *r)
{
	if (!net_on(m))
		return 0;
	struct evalarg a = {.m = m, .sub = arg(r, 2)};
	rule_names(m, r, check_fn, &a);
	return a.hit;
}

int ev_net_rbl_sub(struct msgctx *m, const struct rule *r)
{
	if (!net_on(m) || !arg(r, 0))
		return 0;
	struct evalarg a = {.m = m, .sub = arg(r, 1)};
	if (!a.sub || !*a.sub)
		return 0; /* SpamAssassin: "missing subtest" */
	for (size_t ei = 0; ei < m->e->neval_rules && !a.hit; ei++) {
		const struct rule *b = &m->e->rules[m->e->eval_rules[ei]];
		enum netkind k = rule_kind(b);
		if ((k == NK_RBL || k == NK_RBL_TXT) && b->neval > 0 &&
		    strcmp(b->eval_args[0], arg(r, 0)) == 0)
			rule_names(m, b, check_fn, &a);
	}
	return a.hit;
}
