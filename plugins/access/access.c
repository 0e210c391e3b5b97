/*
 * access.c - Postfix access(5) lookups in filterd and policyd.
 *
 * Four maps, as Postfix's check_client_access, check_helo_access,
 * check_sender_access and check_recipient_access, with Postfix's lookup
 * order, so that an existing access file works unchanged:
 *   client:    the client name, then its parent domains; then the address,
 *              then (IPv4) the address with octets stripped from the right,
 *              (IPv6) with 16-bit groups stripped;
 *   helo:      the HELO name, then its parent domains;
 *   sender and recipient: user+ext@domain, user@domain (extension removed
 *              with access_recipient_delimiter), domain, parent domains,
 *              user+ext@, user@; the null sender is looked up as "<>".
 * A ".example.com" key matches subdomains only; "example.com" matches the
 * domain and its subdomains (Postfix's parent_domain_matches_subdomains).
 * Those partial lookups are made in fixed-string tables only: a pcre:,
 * regexp: or cidr: table (host->map_is_pattern) sees each whole string
 * once, as in Postfix: the client name and the client address, the HELO
 * name, the whole sender or recipient address (access(5), "REGULAR
 * EXPRESSION TABLES": no parent domain search, user@domain and user+foo
 * are not broken up).
 *
 * Results as access(5): OK or a number (accept: later plugins are skipped
 * unless they always run), DUNNO, REJECT [text], DEFER [text], 4NN/5NN text,
 * DISCARD [text], HOLD [text], PREPEND header: value, WARN text, and in
 * policyd also DEFER_IF_REJECT, DEFER_IF_PERMIT, INFO, FILTER, REDIRECT,
 * BCC (passed through to Postfix). A result this plugin cannot honour is an
 * error (access_error_action, default tempfail), never silently ignored.
 *
 * In filterd the client map is consulted at CONNECT, helo at HELO, sender at
 * MAIL and recipient at RCPT. In policyd every request consults the maps
 * whose items it carries, in the order client, helo, sender, recipient
 * (the recipient only at RCPT), as Postfix evaluates them with
 * smtpd_delay_reject = yes. Thread-safe: the configuration is read-only.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "sift/plugin.h"

struct access_conf {
	const struct sift_map *client_map, *helo_map, *sender_map, *recipient_map;
	const char *recipient_delimiter;
	const char *null_sender_key;
	long long reject_code, defer_code;
	int parent_matches_subdomains;
};

static const struct sift_host *host;

#define OFF(f) offsetof(struct access_conf, f)
static const struct sift_param params[] = {
	{"client_map", SIFT_P_MAP, "", 0, 0, OFF(client_map), NULL,
	 "map for the client name and address (check_client_access)"},
	{"helo_map", SIFT_P_MAP, "", 0, 0, OFF(helo_map), NULL, "map for the HELO name (check_helo_access)"},
	{"sender_map", SIFT_P_MAP, "", 0, 0, OFF(sender_map), NULL,
	 "map for the envelope sender (check_sender_access)"},
	{"recipient_map", SIFT_P_MAP, "", 0, 0, OFF(recipient_map), NULL,
	 "map for the envelope recipient (check_recipient_access)"},
	{"recipient_delimiter", SIFT_P_STRING, "", 0, 0, OFF(recipient_delimiter), NULL,
	 "address extension delimiters (as Postfix's recipient_delimiter, e.g. +)"},
	{"null_sender_key", SIFT_P_STRING, "<>", 0, 0, OFF(null_sender_key), NULL,
	 "lookup key for the null sender (smtpd_null_access_lookup_key)"},
	{"reject_code", SIFT_P_INT, "554", 500, 599, OFF(reject_code), NULL,
	 "SMTP code of a REJECT result (access_map_reject_code)"},
	{"defer_code", SIFT_P_INT, "450", 400, 499, OFF(defer_code), NULL,
	 "SMTP code of a DEFER result (access_map_defer_code)"},
	{"parent_domain_matches_subdomains", SIFT_P_BOOL, "yes", 0, 0, OFF(parent_matches_subdomains), NULL,
	 "yes: an entry example.com matches its subdomains too (Postfix's default, smtpd_access_maps "
	 "in parent_domain_matches_subdomains); no: only .example.com entries match subdomains"},
	SIFT_PARAM_END,
};
#undef OFF

enum what { W_CLIENT, W_HELO, W_SENDER, W_RCPT };
static const char *const what_text[] = {"Client host rejected", "Helo command rejected",
					"Sender address rejected", "Recipient address rejected"};

/* One lookup; returns 1 with *res (malloc'd), 0 not found, -1 error. */
static int lookup(const struct sift_map *map, const char *key, char **res)
{
	return host->map_lookup(map, key, res);
}

/* A pcre:, regexp: or cidr: table: Postfix looks the whole string up in it
 * and makes none of its partial lookups (parent domains, parent networks,
 * user@domain broken up, the address without its extension): access(5),
 * "REGULAR EXPRESSION TABLES" and "CIDR TABLES". */
static bool whole_only(const struct sift_map *map)
{
	return host->map_is_pattern(map);
}

/* An IPv4 or IPv6 address written as a name (a HELO of 192.0.2.1). */
static bool numeric_name(const char *name)
{
	unsigned char a[16];
	return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* Looks up name, then its parent domains as Postfix's check_domain_access
 * does: "a.b.c", then "b.c", "c" (access_parent_domain_matches_subdomains
 * = yes, Postfix's default) or ".b.c", ".c" (no). Only name in a pattern
 * table, and for a numeric name ("192.0.2.1" has no parent domains). */
static int lookup_domain(const struct access_conf *c, const struct sift_map *map, const char *name,
			 char **res)
{
	int rc = lookup(map, name, res);
	if (rc || whole_only(map) || numeric_name(name))
		return rc;
	for (const char *p = strchr(name, '.'); p && p[1]; p = strchr(p + 1, '.')) {
		if ((rc = lookup(map, c->parent_matches_subdomains ? p + 1 : p, res)) != 0)
			return rc;
	}
	return 0;
}

static int lookup_client(const struct access_conf *c, const char *name, const char *addr, char **res)
{
	int rc;
	/* "unknown" (no verified name) too: Postfix's check_namadr_access
	 * looks it up like any name, so "unknown REJECT" works */
	if (name && *name && (rc = lookup_domain(c, c->client_map, name, res)) != 0)
		return rc;
	if (!addr || !*addr)
		return 0;
	if ((rc = lookup(c->client_map, addr, res)) != 0 || whole_only(c->client_map))
		return rc;
	char buf[64];
	if (strlen(addr) >= sizeof(buf))
		return 0;
	strcpy(buf, addr);
	char sep = strchr(buf, ':') ? ':' : '.';
	char *p;
	while ((p = strrchr(buf, sep)) != NULL) {
		*p = 0;
		if (!*buf)
			break;
		if ((rc = lookup(c->client_map, buf, res)) != 0)
			return rc;
	}
	return 0;
}

static int lookup_address(const struct access_conf *c, const struct sift_map *map, const char *addr,
			  char **res)
{
	int rc;
	if (!*addr)
		return lookup(map, c->null_sender_key, res);
	if ((rc = lookup(map, addr, res)) != 0 || whole_only(map))
		return rc;
	const char *at = strrchr(addr, '@');
	size_t local_len = at ? (size_t)(at - addr) : strlen(addr);
	/* Without the extension. */
	size_t base_len = local_len;
	if (*c->recipient_delimiter) {
		size_t k = strcspn(addr, c->recipient_delimiter);
		if (k < local_len && k > 0)
			base_len = k;
	}
	char *tmp = malloc(strlen(addr) + 2);
	if (!tmp)
		return -1;
	if (base_len < local_len) {
		sprintf(tmp, "%.*s%s", (int)base_len, addr, at ? at : "");
		if ((rc = lookup(map, tmp, res)) != 0)
			goto out;
	}
	if (at && at[1] && (rc = lookup_domain(c, map, at + 1, res)) != 0)
		goto out;
	sprintf(tmp, "%.*s@", (int)local_len, addr);
	if ((rc = lookup(map, tmp, res)) != 0)
		goto out;
	if (base_len < local_len) {
		sprintf(tmp, "%.*s@", (int)base_len, addr);
		if ((rc = lookup(map, tmp, res)) != 0)
			goto out;
	}
	rc = 0;
out:
	free(tmp);
	return rc;
}

static bool word_is(const char *s, const char *w, const char **rest)
{
	size_t n = strlen(w);
	if (strncasecmp(s, w, n) != 0 || (s[n] && !isspace((unsigned char)s[n])))
		return false;
	s += n;
	while (isspace((unsigned char)*s))
		s++;
	*rest = s;
	return true;
}

/* "4.7.1 text" → xcode and text; returns whether an enhanced code led. */
static bool split_xcode(const char *t, char *xcode, size_t n, const char **text)
{
	size_t len = strspn(t, "0123456789.");
	if (len >= 5 && len < n && (t[len] == ' ' || !t[len]) && t[1] == '.') {
		memcpy(xcode, t, len);
		xcode[len] = 0;
		t += len;
		while (*t == ' ')
			t++;
		*text = t;
		return true;
	}
	*text = t;
	return false;
}

static enum sift_verdict apply(struct sift_ctx *ctx, const struct access_conf *c, enum what w,
			       const char *key, const char *result, bool policy)
{
	const char *rest;
	const char *qid = host->get(ctx, SIFT_I_QUEUE_ID);
	(void)qid;
	char xcode[16];
	const char *text;

	if (word_is(result, "DUNNO", &rest))
		return SIFT_DUNNO;
	/* a number is OK, as in Postfix; an empty result is not (alldig("")
	 * is false there): it is unsupported, below */
	if (word_is(result, "OK", &rest) || (*result && strspn(result, "0123456789") == strlen(result)))
		return SIFT_ACCEPT;

	bool reject = word_is(result, "REJECT", &rest);
	bool defer = !reject && word_is(result, "DEFER", &rest);
	if (reject || defer) {
		if (policy) {
			/* Postfix adds its own "<key>: ... rejected:" prefix. */
			host->reply(ctx, NULL, NULL, *rest ? rest : NULL);
		} else {
			char code[4];
			snprintf(code, sizeof(code), "%lld", reject ? c->reject_code : c->defer_code);
			bool has_x = split_xcode(rest, xcode, sizeof(xcode), &text);
			char *msg = NULL;
			if (asprintf(&msg, "<%s>: %s: %s", key, what_text[w],
				     *text ? text : "Access denied") < 0)
				return SIFT_ERROR;
			host->reply(ctx, code, has_x ? xcode : (reject ? "5.7.1" : "4.7.1"), msg);
			free(msg);
		}
		host->log(ctx, LOG_INFO, "%s <%s>: %s", reject ? "reject" : "defer", key, result);
		return reject ? SIFT_REJECT : SIFT_TEMPFAIL;
	}
	if ((result[0] == '4' || result[0] == '5') && isdigit((unsigned char)result[1]) &&
	    isdigit((unsigned char)result[2]) && (result[3] == ' ' || !result[3])) {
		char code[4] = {result[0], result[1], result[2], 0};
		rest = result + 3;
		while (*rest == ' ')
			rest++;
		bool has_x = split_xcode(rest, xcode, sizeof(xcode), &text);
		if (has_x && xcode[0] != result[0])
			has_x = false;
		host->reply(ctx, code, has_x ? xcode : (result[0] == '5' ? "5.7.1" : "4.7.1"),
			    *text ? text : "Access denied");
		host->log(ctx, LOG_INFO, "%s <%s>: %s", result[0] == '5' ? "reject" : "defer", key, result);
		return result[0] == '5' ? SIFT_REJECT : SIFT_TEMPFAIL;
	}
	if (word_is(result, "DISCARD", &rest)) {
		host->log(ctx, LOG_INFO, "discard <%s>: %s", key, *rest ? rest : "");
		if (*rest)
			host->reply(ctx, NULL, NULL, rest);
		return SIFT_DISCARD;
	}
	if (word_is(result, "HOLD", &rest)) {
		host->log(ctx, LOG_INFO, "hold <%s>: %s", key, *rest ? rest : "");
		char *reason = NULL;
		if (asprintf(&reason, "<%s>: %s", key, *rest ? rest : what_text[w]) < 0)
			return SIFT_ERROR;
		host->hold(ctx, reason);
		free(reason);
		return SIFT_HOLD;
	}
	if (word_is(result, "PREPEND", &rest)) {
		const char *colon = strchr(rest, ':');
		if (!colon || colon == rest) {
			host->log(ctx, LOG_WARNING, "<%s>: bad PREPEND result \"%s\"", key, result);
			return SIFT_ERROR;
		}
		if (policy) {
			host->policy_action(ctx, result);
			return SIFT_DUNNO;
		}
		char *name = strndup(rest, (size_t)(colon - rest));
		const char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if (!name)
			return SIFT_ERROR;
		host->header_insert(ctx, 0, name, v);
		free(name);
		return SIFT_DUNNO;
	}
	if (word_is(result, "WARN", &rest)) {
		host->log(ctx, LOG_WARNING, "<%s>: %s", key, rest);
		if (policy)
			host->policy_action(ctx, result);
		return SIFT_DUNNO;
	}
	if (policy &&
	    (word_is(result, "DEFER_IF_REJECT", &rest) || word_is(result, "DEFER_IF_PERMIT", &rest) ||
	     word_is(result, "INFO", &rest) || word_is(result, "FILTER", &rest) ||
	     word_is(result, "REDIRECT", &rest) || word_is(result, "BCC", &rest))) {
		host->policy_action(ctx, result);
		return SIFT_DUNNO;
	}
	host->log(ctx, LOG_WARNING, "<%s>: unsupported access result \"%s\" in %s", key, result,
		  policy ? "policyd" : "filterd");
	return SIFT_ERROR;
}

static enum sift_verdict check(struct sift_ctx *ctx, enum what w, bool policy)
{
	const struct access_conf *c = host->conf(ctx);
	char *res = NULL;
	const char *key = NULL;
	int rc = 0;
	switch (w) {
	case W_CLIENT:
		if (!c->client_map)
			return SIFT_DUNNO;
		key = host->get(ctx, SIFT_I_CLIENT_ADDR);
		rc = lookup_client(c, host->get(ctx, SIFT_I_CLIENT_NAME), key, &res);
		break;
	case W_HELO:
		key = host->get(ctx, SIFT_I_HELO);
		if (!c->helo_map || !key || !*key)
			return SIFT_DUNNO;
		rc = lookup_domain(c, c->helo_map, key, &res);
		break;
	case W_SENDER:
		key = host->get(ctx, SIFT_I_SENDER);
		if (!c->sender_map || !key)
			return SIFT_DUNNO;
		rc = lookup_address(c, c->sender_map, key, &res);
		break;
	case W_RCPT:
		key = host->get(ctx, SIFT_I_RCPT);
		if (!c->recipient_map || !key || !*key)
			return SIFT_DUNNO;
		rc = lookup_address(c, c->recipient_map, key, &res);
		break;
	}
	if (rc < 0) {
		host->log(ctx, LOG_ERR, "map lookup failed for <%s>", key ? key : "");
		return SIFT_ERROR;
	}
	if (rc == 0)
		return SIFT_DUNNO;
	enum sift_verdict v = apply(ctx, c, w, key ? key : "", res, policy);
	free(res);
	return v;
}

static int access_init(const struct sift_host *h, void *conf, char **err_r)
{
	if (h->struct_size < offsetof(struct sift_host, map_is_pattern) + sizeof(h->map_is_pattern) ||
	    !h->map_is_pattern) {
		*err_r = strdup("this host cannot tell pattern tables from others "
				"(host->map_is_pattern): too old");
		return -1;
	}
	host = h;
	return 0;
}

static enum sift_verdict access_connect(struct sift_ctx *ctx)
{
	return check(ctx, W_CLIENT, false);
}
static enum sift_verdict access_helo(struct sift_ctx *ctx)
{
	return check(ctx, W_HELO, false);
}
static enum sift_verdict access_mail(struct sift_ctx *ctx)
{
	return check(ctx, W_SENDER, false);
}
static enum sift_verdict access_rcpt(struct sift_ctx *ctx)
{
	return check(ctx, W_RCPT, false);
}

static enum sift_verdict access_policy(struct sift_ctx *ctx)
{
	const char *state = host->get(ctx, SIFT_I_PROTOCOL_STATE);
	bool rcpt = state && strcasecmp(state, "RCPT") == 0;
	static const enum what order[] = {W_CLIENT, W_HELO, W_SENDER, W_RCPT};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (order[i] == W_RCPT && !rcpt)
			continue;
		enum sift_verdict v = check(ctx, order[i], true);
		if (v != SIFT_DUNNO)
			return v;
	}
	return SIFT_DUNNO;
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "access",
	.description = "Postfix access(5) lookups on client, HELO, sender and recipient",
	.daemons = SIFT_D_FILTERD | SIFT_D_POLICYD,
	.actions = SIFT_A_ADDHDRS | SIFT_A_QUARANTINE,
	.params = params,
	.conf_size = sizeof(struct access_conf),
	.init = access_init,
	.connect = access_connect,
	.helo = access_helo,
	.mail = access_mail,
	.rcpt = access_rcpt,
	.policy = access_policy,
};
