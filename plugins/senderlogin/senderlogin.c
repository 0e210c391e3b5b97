/*
 * senderlogin.c - an authenticated client may only send as addresses its
 * SASL login owns: the envelope sender (policyd at MAIL/RCPT, or filterd at
 * MAIL) as Postfix's reject_authenticated_sender_login_mismatch does, and,
 * what Postfix cannot do, the header From and Sender addresses (filterd at
 * end of header).
 *
 * Owners come from a map in Postfix syntax with the semantics of
 * smtpd_sender_login_maps, so an existing login_maps.pcre works unchanged:
 * the result is a list of login names separated by commas and/or white
 * space; the lookups are the full address, then (with
 * senderlogin_recipient_delimiter) the address without its extension, then
 * "@domain" (a pcre, regexp or cidr map is asked for the full address
 * only, as Postfix does); the first lookup that finds something decides.
 * The login is compared case-insensitively. An address nobody owns is a mismatch too
 * (senderlogin_unknown_sender = reject, as reject_authenticated_sender_
 * login_mismatch) or is let through (dunno, as reject_known_sender_login_
 * mismatch). The reply is Postfix's:
 *   553 5.7.1 <bob@example.net>: Sender address rejected: not owned by user alice
 * (policyd answers "553 5.7.1 not owned by user alice" and Postfix adds
 * the "<bob@example.net>: Sender address rejected: " part itself when the
 * policy service is listed in smtpd_sender_restrictions).
 * The null sender is never checked (as Postfix).
 *
 * Optionally (senderlogin_unauthenticated_reject) an unauthenticated client
 * of the inbound profile (not in originating_networks, not on a submission
 * service) using a sender that has an owner, whose domain is in
 * senderlogin_local_domains, or that has no domain, is refused with Postfix's
 * reject_unauthenticated_sender_login_mismatch text "not logged in".
 *
 * Header check (filterd, EOH): every mailbox of every From and Sender field
 * (senderlogin_header_fields) is parsed with the core's RFC 5322 parser
 * (host->addrlist_parse: display names, comments, quoted local parts,
 * groups, RFC 2047 words; the one DKIM and the spam rules use too) and must
 * be owned by the login; with
 * senderlogin_display_name_check an address-like display name
 * ("bob@example.net" <alice@example.net>) that someone else owns is a
 * mismatch too. An unparseable field is a mismatch. The action is
 * senderlogin_header_action: reject, tempfail, hold, header (add a header
 * and accept) or log.
 *
 * Threading: the configuration is read-only after init; per-message state
 * (the envelope verdict, computed once per transaction) lives in host->msg.
 */
#include <stdarg.h>
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "sift/plugin.h"

#define MAX_ADDR 512 /* an address as shown in logs and replies */

enum act { ACT_REJECT, ACT_TEMPFAIL, ACT_HOLD, ACT_HEADER, ACT_LOG };

struct sl_conf {
	const struct sift_map *login_maps;
	const struct sift_map *header_maps;
	const char *recipient_delimiter;
	int unknown_sender; /* 0 reject, 1 dunno */
	int envelope_check;
	int envelope_action; /* reject|tempfail|hold|log */
	int unauthenticated_reject;
	const char *const *local_domains;
	int header_check;
	const char *const *header_fields;
	int header_action; /* reject|tempfail|hold|header|log */
	const char *header_name;
	int display_name_check;
};

struct sl_msg {
	bool env_done;
	enum sift_verdict env_verdict;
	char *env_text;	 /* msg_alloc'd reply text, Postfix's full wording */
	char *env_short; /* the same without "<addr>: Sender address rejected: " */
	const char *env_code, *env_xcode;
};

static const struct sift_host *host;

#define OFF(f) offsetof(struct sl_conf, f)
static const struct sift_param params[] = {
	{"login_maps", SIFT_P_MAP, "", 0, 0, OFF(login_maps), NULL,
	 "owners of sender addresses (as smtpd_sender_login_maps): address -> login[, login...]"},
	{"header_maps", SIFT_P_MAP, "", 0, 0, OFF(header_maps), NULL,
	 "owners of header From/Sender addresses (empty: senderlogin_login_maps)"},
	{"recipient_delimiter", SIFT_P_STRING, "", 0, 0, OFF(recipient_delimiter), NULL,
	 "address extension delimiters (as Postfix's recipient_delimiter, e.g. +)"},
	{"unknown_sender", SIFT_P_ENUM, "reject", 0, 0, OFF(unknown_sender), "reject|dunno",
	 "an address with no owner: reject (as reject_authenticated_sender_login_mismatch) or "
	 "dunno (as reject_known_sender_login_mismatch)"},
	{"envelope_check", SIFT_P_BOOL, "yes", 0, 0, OFF(envelope_check), NULL,
	 "check the envelope sender of authenticated clients"},
	{"envelope_action", SIFT_P_ENUM, "reject", 0, 0, OFF(envelope_action), "reject|tempfail|hold|log",
	 "what to do with an envelope sender the login does not own"},
	{"unauthenticated_reject", SIFT_P_BOOL, "no", 0, 0, OFF(unauthenticated_reject), NULL,
	 "refuse unauthenticated inbound clients using an owned sender or one of local_domains"},
	{"local_domains", SIFT_P_LIST, "", 0, 0, OFF(local_domains), NULL,
	 "our sender domains, for unauthenticated_reject"},
	{"header_check", SIFT_P_BOOL, "yes", 0, 0, OFF(header_check), NULL,
	 "filterd: check the header From/Sender addresses of authenticated mail"},
	{"header_fields", SIFT_P_LIST, "From, Sender", 0, 0, OFF(header_fields), NULL,
	 "header fields whose addresses the login must own"},
	{"header_action", SIFT_P_ENUM, "reject", 0, 0, OFF(header_action), "reject|tempfail|hold|header|log",
	 "what to do with a header address the login does not own"},
	{"header_name", SIFT_P_STRING, "X-Sift-Sender-Login", 0, 0, OFF(header_name), NULL,
	 "header added by header_action = header"},
	{"display_name_check", SIFT_P_BOOL, "yes", 0, 0, OFF(display_name_check), NULL,
	 "a display name that looks like an address owned by someone else is a mismatch"},
	SIFT_PARAM_END,
};
#undef OFF

static int sl_init(const struct sift_host *h, void *conf, char **err_r)
{
	host = h;
	struct sl_conf *c = conf;
	if (h->struct_size < offsetof(struct sift_host, addrlist_parse) + sizeof(h->addrlist_parse)) {
		*err_r = strdup("the host has no address parser (host->addrlist_parse): too old");
		return -1;
	}
	if (h->struct_size < offsetof(struct sift_host, map_is_pattern) + sizeof(h->map_is_pattern) ||
	    !h->map_is_pattern) {
		*err_r = strdup("the host cannot tell pattern maps (host->map_is_pattern): too old");
		return -1;
	}
	if (!c->login_maps && (c->envelope_check || c->header_check)) {
		*err_r = strdup("senderlogin_login_maps is not set");
		return -1;
	}
	if (!*c->header_name || strchr(c->header_name, ':') || strchr(c->header_name, ' ')) {
		*err_r = strdup("senderlogin_header_name: not a valid header name");
		return -1;
	}
	return 0;
}

/* ---- owner lookups ----------------------------------------------------------- */

/* The address as Postfix's trivial-rewrite makes it before its own login
 * check and before the mail is queued: one dot at the end of the domain
 * (bob@example.net.) is removed, unless it follows another dot or the '@'.
 * Returns addr itself or buf holding the shortened copy. */
static const char *canon_addr(const char *addr, char *buf, size_t n)
{
	size_t len = strlen(addr);
	const char *at = strrchr(addr, '@');
	if (!at || len < 2 || addr[len - 1] != '.' || addr[len - 2] == '.' || addr[len - 2] == '@' || len > n)
		return addr;
	memcpy(buf, addr, len - 1);
	buf[len - 1] = 0;
	return buf;
}

/* Looks up the owners of addr: 1 found (*owners_r malloc'd), 0 none, -1
 * map error. Keys: addr, addr without extension, @domain; a pattern map
 * (pcre, regexp, cidr) is asked for the whole address only, as Postfix's
 * smtpd_sender_login_maps lookup asks it. */
static int find_owners(const struct sl_conf *c, const struct sift_map *map, const char *addr, char **owners_r)
{
	char canon[600];
	addr = canon_addr(addr, canon, sizeof(canon));
	int rc = host->map_lookup(map, addr, owners_r);
	if (rc || host->map_is_pattern(map))
		return rc;
	const char *at = strrchr(addr, '@');
	const char *delim = c->recipient_delimiter;
	if (at && *delim) {
		size_t cut = strcspn(addr, delim);
		if (cut < (size_t)(at - addr) && cut > 0) {
			char buf[600];
			snprintf(buf, sizeof(buf), "%.*s%s", (int)cut, addr, at);
			if ((rc = host->map_lookup(map, buf, owners_r)) != 0)
				return rc;
		}
	}
	if (at && at[1])
		return host->map_lookup(map, at, owners_r);
	return 0;
}

static bool has_nonascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* Whether login is one of owners (a list separated by commas and white
 * space), compared as Postfix compares them (strcasecmp_utf8): folded
 * case, Unicode's when either has a non-ASCII octet. */
static bool owner_listed(const char *owners, const char *login)
{
	bool fold = (has_nonascii(login) || has_nonascii(owners)) &&
		    host->struct_size >= offsetof(struct sift_host, casefold) + sizeof(host->casefold);
	char *flogin = fold ? host->casefold(login) : NULL;
	size_t ll = strlen(login);
	bool found = false;
	const char *p = owners;
	while (*p && !found) {
		p += strspn(p, ", \t");
		size_t n = strcspn(p, ", \t");
		if (n && flogin) {
			char *tok = strndup(p, n), *ft = tok ? host->casefold(tok) : NULL;
			found = ft && strcmp(ft, flogin) == 0;
			free(ft);
			free(tok);
		} else if (n == ll && n && strncasecmp(p, login, n) == 0)
			found = true;
		p += n;
	}
	free(flogin);
	return found;
}

/* 1 owned, 0 not owned (*owners_r: what the map said, or NULL), -1 error. */
static int owned(const struct sl_conf *c, const struct sift_map *map, const char *addr, const char *login,
		 bool allow_unknown, char **owners_r)
{
	char *owners = NULL;
	*owners_r = NULL;
	int rc = find_owners(c, map, addr, &owners);
	if (rc < 0)
		return -1;
	if (rc == 0)
		return allow_unknown ? 1 : 0;
	bool ok = owner_listed(owners, login);
	*owners_r = owners;
	return ok ? 1 : 0;
}

static bool domain_listed(const struct sl_conf *c, const char *addr)
{
	char canon[600];
	addr = canon_addr(addr, canon, sizeof(canon));
	const char *at = strrchr(addr, '@');
	if (!at)
		return false;
	for (const char *const *d = c->local_domains; d && *d; d++)
		if (strcasecmp(*d, at + 1) == 0)
			return true;
	return false;
}

/* ---- envelope ------------------------------------------------------------------- */

/* The most of a login a reply quotes. */
#define REPLY_LOGIN 100

static char *msg_printf(struct sift_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *msg_printf(struct sift_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	size_t size = (size_t)(n < 0 ? 0 : n) + 1;
	char *s = host->msg_alloc(ctx, size);
	va_start(ap, fmt);
	if (n < 0 || vsnprintf(s, size, fmt, ap) < 0)
		*s = 0;
	va_end(ap);
	return s;
}

/* The envelope sender in Postfix's internal form, the one Postfix checks,
 * queues and gives a policy server: a milter sees the MAIL FROM argument as
 * the client wrote it, where a source route (@relay.example:bob@example.net)
 * and a quoted local part ("bob"@example.net) still hide bob@example.net.
 * The core's address parser reads such a sender as a path (<...>). Returns
 * s itself (a plain address, or one the parser refuses) or buf (n octets)
 * holding the internal form. */
static const char *internal_sender(const char *s, char *buf, size_t n)
{
	char path[512];
	size_t len = strlen(s);
	if ((*s != '@' && *s != '"') || len + 3 > sizeof(path))
		return s;
	snprintf(path, sizeof(path), "<%s>", s);
	struct sift_addrs *a = host->addrlist_parse(path);
	const char *r = s;
	if (a && a->count == 1 && strlen(a->mb[0].addr) < n) {
		strcpy(buf, a->mb[0].addr);
		r = buf;
	}
	free(a);
	return r;
}

static enum sift_verdict env_decide(struct sift_ctx *ctx, const struct sl_conf *c, struct sl_msg *m)
{
	const char *sender = host->get(ctx, SIFT_I_SENDER);
	const char *login = host->get(ctx, SIFT_I_SASL_USERNAME);
	if (!sender || !*sender)
		return SIFT_DUNNO; /* the null sender is not checked (as Postfix) */
	char internal[512];
	sender = internal_sender(sender, internal, sizeof(internal));
	/* Longer than an address may be (RFC 5321: 64 + 1 + 255): no map is
	 * asked; an authenticated client's has no owner, so it is refused
	 * unless senderlogin_unknown_sender = dunno. */
	bool too_long = strlen(sender) > 500;
	/* Without a domain (bob, example.net!bob, bob%example.net), Postfix
	 * completes the address before it queues the mail (myorigin,
	 * swap_bangpath, allow_percent_hack: bob@example.net), as its own
	 * login check sees it; policyd only sees what the client sent. Such a
	 * sender cannot be verified: from an authenticated client it is not
	 * owned (also with unknown_sender = dunno), from an outsider it counts
	 * as one of ours. */
	bool no_domain = !strchr(sender, '@');
	if (too_long && !(login && *login)) {
		host->log(ctx, LOG_WARNING, "sender address too long; not checked");
		return SIFT_DUNNO;
	}
	if (login && *login) {
		if (!c->envelope_check || !c->login_maps)
			return SIFT_DUNNO;
		char *owners = NULL;
		int rc = too_long ? c->unknown_sender == 1
			 : no_domain
				 ? 0
				 : owned(c, c->login_maps, sender, login, c->unknown_sender == 1, &owners);
		if (rc < 0) {
			free(owners);
			host->log(ctx, LOG_ERR, "login map lookup failed for <%s>", sender);
			return SIFT_ERROR;
		}
		if (rc == 1) {
			free(owners);
			return SIFT_DUNNO;
		}
		static const char *const an[] = {"reject", "tempfail", "hold", "log"};
		host->log(ctx, LOG_NOTICE, "login=%s sender=<%s> owners=%s: not owned; action=%s", login,
			  sender, owners ? owners : "(none)", an[c->envelope_action]);
		free(owners);
		/* the login in the reply at most REPLY_LOGIN octets: SASL
		 * names have no length limit, SMTP replies do */
		m->env_text = msg_printf(ctx, "<%s>: Sender address rejected: not owned by user %.*s", sender,
					 REPLY_LOGIN, login);
		m->env_short = msg_printf(ctx, "not owned by user %.*s%s", REPLY_LOGIN, login, "");
		switch (c->envelope_action) {
		case 0:
			m->env_code = "553";
			m->env_xcode = "5.7.1";
			return SIFT_REJECT;
		case 1:
			m->env_code = "450";
			m->env_xcode = "4.7.1";
			return SIFT_TEMPFAIL;
		case 2:
			return SIFT_HOLD;
		default:
			return SIFT_DUNNO;
		}
	}
	/* Not authenticated. */
	if (!c->unauthenticated_reject)
		return SIFT_DUNNO;
	const char *profile = host->get(ctx, SIFT_I_PROFILE);
	if (profile && strcmp(profile, "originating") == 0)
		return SIFT_DUNNO; /* originating network or submission service */
	bool ours = no_domain || domain_listed(c, sender);
	if (!ours && c->login_maps) {
		char *owners = NULL;
		int rc = find_owners(c, c->login_maps, sender, &owners);
		if (rc < 0) {
			host->log(ctx, LOG_ERR, "login map lookup failed for <%s>", sender);
			return SIFT_ERROR;
		}
		/* An empty owner list (the seed's pcre gives "" for "@dom")
		 * is no owner. */
		ours = rc == 1 && owners[strspn(owners, ", \t")] != 0;
		free(owners);
	}
	if (!ours)
		return SIFT_DUNNO;
	host->log(ctx, LOG_NOTICE, "unauthenticated client uses our sender <%s>; action=reject", sender);
	m->env_text = msg_printf(ctx, "<%s>: Sender address rejected: not logged in%s", sender, "");
	m->env_short = msg_printf(ctx, "not logged in%s%s", "", "");
	m->env_code = "553";
	m->env_xcode = "5.7.1";
	return SIFT_REJECT;
}

/* policy: Postfix itself prefixes a policy server's reject text with
 * "<sender>: Sender address rejected: " (check_policy_service in
 * smtpd_sender_restrictions), so policyd answers the short text and the
 * client sees Postfix's exact wording; a milter reply is used verbatim. */
static enum sift_verdict envelope(struct sift_ctx *ctx, bool policy)
{
	const struct sl_conf *c = host->conf(ctx);
	struct sl_msg *m = host->msg(ctx);
	if (!m->env_done) {
		m->env_verdict = env_decide(ctx, c, m);
		m->env_done = true;
	}
	if (m->env_verdict == SIFT_REJECT || m->env_verdict == SIFT_TEMPFAIL)
		host->reply(ctx, m->env_code, m->env_xcode, policy ? m->env_short : m->env_text);
	else if (m->env_verdict == SIFT_HOLD)
		host->hold(ctx, m->env_text);
	return m->env_verdict;
}

static enum sift_verdict sl_mail(struct sift_ctx *ctx)
{
	return envelope(ctx, false);
}

static enum sift_verdict sl_policy(struct sift_ctx *ctx)
{
	const char *state = host->get(ctx, SIFT_I_PROTOCOL_STATE);
	if (!state || (strcmp(state, "MAIL") != 0 && strcmp(state, "RCPT") != 0))
		return SIFT_DUNNO;
	return envelope(ctx, true);
}

/* ---- header From / Sender ------------------------------------------------------ */

struct mismatch {
	char field[64];
	char addr[MAX_ADDR];
	const char *why;
};

static bool local_char(unsigned char c)
{
	return isalnum(c) || (c && strchr("._%+-=!#$&'*/?^`{|}~", c));
}

/* Finds something shaped like an e-mail address (x@y.z) in a display name
 * and copies it (lower case) to out; true when found. */
static bool find_address_like(const char *text, char *out, size_t n)
{
	for (const char *at = strchr(text, '@'); at; at = strchr(at + 1, '@')) {
		const char *l = at;
		while (l > text && local_char((unsigned char)l[-1]))
			l--;
		const char *r = at + 1;
		bool dot = false;
		while (*r && (isalnum((unsigned char)*r) || *r == '.' || *r == '-')) {
			if (*r == '.' && r[1] && isalnum((unsigned char)r[1]))
				dot = true;
			r++;
		}
		while (r > at + 1 && r[-1] == '.')
			r--;
		if (l == at || !dot || (size_t)(r - l) + 1 > n)
			continue;
		size_t len = (size_t)(r - l);
		for (size_t i = 0; i < len; i++)
			out[i] = (char)tolower((unsigned char)l[i]);
		out[len] = 0;
		return true;
	}
	return false;
}

/* Checks the mailboxes of one field; fills *mm and returns 1 on a
 * mismatch, 0 fine, -1 map error. */
static int check_mailboxes(const struct sl_conf *c, const struct sift_addrs *a, const char *login,
			   struct mismatch *mm)
{
	const struct sift_map *map = c->header_maps ? c->header_maps : c->login_maps;
	for (size_t i = 0; i < a->count; i++) {
		const struct sift_mailbox *mb = &a->mb[i];
		char *owners = NULL;
		int rc = owned(c, map, mb->addr, login, c->unknown_sender == 1, &owners);
		free(owners);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			snprintf(mm->addr, sizeof(mm->addr), "%s", mb->addr);
			mm->why = "not owned";
			return 1;
		}
		char like[MAX_ADDR];
		if (c->display_name_check && mb->display[0] &&
		    find_address_like(mb->display, like, sizeof(like)) && strcasecmp(like, mb->addr) != 0) {
			/* Only addresses someone else owns count: a display name
			 * showing an outside address is not a forgery of ours. */
			rc = owned(c, map, like, login, true, &owners);
			free(owners);
			if (rc < 0)
				return -1;
			if (rc == 0) {
				snprintf(mm->addr, sizeof(mm->addr), "%s", like);
				mm->why = "display name shows an address not owned";
				return 1;
			}
		}
	}
	return 0;
}

/* Checks one field value; fills *mm and returns 1 on a mismatch, 0 fine,
 * -1 map error. */
static int check_field(const struct sl_conf *c, const char *field, const char *value, const char *login,
		       struct mismatch *mm)
{
	snprintf(mm->field, sizeof(mm->field), "%s", field);
	struct sift_addrs *a = host->addrlist_parse(value);
	int rc;
	if (a->error) {
		snprintf(mm->addr, sizeof(mm->addr), "(unparseable)");
		mm->why = a->error;
		rc = 1;
	} else
		rc = check_mailboxes(c, a, login, mm);
	free(a);
	return rc;
}

static enum sift_verdict sl_eoh(struct sift_ctx *ctx)
{
	const struct sl_conf *c = host->conf(ctx);
	const char *login = host->get(ctx, SIFT_I_SASL_USERNAME);
	if (!c->header_check || !login || !*login)
		return SIFT_DUNNO;
	size_t nh = host->header_count(ctx);
	struct mismatch mm;
	bool bad = false;
	for (size_t i = 0; i < nh && !bad; i++) {
		const struct sift_header *h = host->header(ctx, i);
		bool wanted = false;
		for (const char *const *f = c->header_fields; f && *f; f++)
			if (strcasecmp(*f, h->name) == 0)
				wanted = true;
		if (!wanted)
			continue;
		int rc = check_field(c, h->name, h->value, login, &mm);
		if (rc < 0) {
			host->log(ctx, LOG_ERR, "login map lookup failed for the %s header", h->name);
			return SIFT_ERROR;
		}
		bad = rc == 1;
	}
	if (!bad)
		return SIFT_DUNNO;
	static const char *const an[] = {"reject", "tempfail", "hold", "header", "log"};
	host->log(ctx, LOG_NOTICE, "login=%s header=%s address=<%s>: %s; action=%s", login, mm.field, mm.addr,
		  mm.why, an[c->header_action]);
	char text[MAX_ADDR + 200 + REPLY_LOGIN];
	snprintf(text, sizeof(text), "<%s>: %s header address rejected: not owned by user %.*s", mm.addr,
		 mm.field, REPLY_LOGIN, login);
	switch (c->header_action) {
	case ACT_REJECT:
		host->reply(ctx, "553", "5.7.1", text);
		return SIFT_REJECT;
	case ACT_TEMPFAIL:
		host->reply(ctx, "450", "4.7.1", text);
		return SIFT_TEMPFAIL;
	case ACT_HOLD:
		host->hold(ctx, text);
		return SIFT_HOLD;
	case ACT_HEADER: {
		char val[MAX_ADDR + 300];
		snprintf(val, sizeof(val), "mismatch; login=%s; header=%s; address=%s", login, mm.field,
			 mm.addr);
		/* No CR/LF from the address into the header. */
		for (char *p = val; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
		host->header_add(ctx, c->header_name, val);
		return SIFT_DUNNO;
	}
	default:
		return SIFT_DUNNO;
	}
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "senderlogin",
	.description = "SASL login must own the envelope sender and the header From/Sender",
	.daemons = SIFT_D_FILTERD | SIFT_D_POLICYD,
	.actions = SIFT_A_ADDHDRS | SIFT_A_QUARANTINE,
	.params = params,
	.conf_size = sizeof(struct sl_conf),
	.msg_size = sizeof(struct sl_msg),
	.init = sl_init,
	.mail = sl_mail,
	.eoh = sl_eoh,
	.policy = sl_policy,
};
