/*
 * sift/plugin.h - the Sift plugin contract. This is the only header a plugin
 * includes.
 *
 * A plugin is a shared object that exports one symbol, `sift_plugin_entry`, a
 * `struct sift_plugin`, and nothing else: whatever else the host reaches in
 * it (hooks, parameters, siftctl commands) is reached through that struct,
 * and whatever the plugin reaches in the host goes through `struct
 * sift_host` (a plugin never imports a host symbol). The host (filterd,
 * policyd or siftctl) loads it with
 * RTLD_NOW|RTLD_LOCAL, checks abi_major (must equal SIFT_ABI_MAJOR),
 * abi_minor (may be older than the host's) and struct_size, then:
 *
 *   1. parses every `<name>_<param>` setting of the configuration through the
 *      plugin's typed parameter table into a zeroed block of conf_size bytes
 *      (defaults first, then the configured values, checked against bounds);
 *   2. at a daemon's start only, calls preinit(host, conf, err) as root, before
 *      the daemon drops its privileges to <daemon>_user: for what needs root
 *      (reading a key only root may read); what it gets must be kept in a
 *      process-wide place, since later generations (reloads) skip preinit.
 *      Then calls init(host, conf, err) once per configuration generation,
 *      with the parameters filled in, as the daemon's user (at start, after
 *      the drop; at reloads; in `-t`): directories and files it creates
 *      belong to that user. init may build derived state in the rest of the
 *      conf block (conf_size covers the parameter fields and any private
 *      fields after them). From then on the conf block is read-only and shared
 *      by all threads;
 *   3. calls the hooks for every connection / message / policy request;
 *   4. calls release(conf) when the last connection using that generation is
 *      gone (after a reload, or at exit).
 *
 * Threading rules:
 *   - preinit, init and release are called from one thread, never together.
 *   - The hooks of one connection never overlap, but consecutive hooks of one
 *     connection may run on different threads: keep per-connection state in
 *     sift_conn_state(), never in thread-local storage.
 *   - Different connections run in parallel: anything a plugin shares between
 *     connections (caches, counters) must be locked by the plugin, or use the
 *     host's key-value store.
 *   - Plugins never fork, exit, install signal handlers, or block without a
 *     deadline (use host->time_left_ms()).
 *
 * The host pointer passed to preinit/init stays valid for the life of the
 * process: a plugin keeps it in a static variable to reach the host's
 * services from its hooks.
 *
 * Ownership rules:
 *   - Strings handed to a hook are owned by the host and valid until the hook
 *     returns, unless stated otherwise. Strings returned by accessors
 *     (host->get, host->macro, ...) live until the end of the message
 *     (message items) or the connection (connection items).
 *   - Strings a plugin passes to the host are copied by the host.
 *   - host->msg_alloc() memory lives until the end of the message.
 *   - map and DNS results documented as malloc'd are freed by the caller with
 *     free().
 *
 * Verdicts: every hook returns an enum sift_verdict. The host merges them:
 *   plugins run in the profile's configured order; the first REJECT, TEMPFAIL
 *   or DISCARD ends the phase (and the message); ACCEPT whitelists the
 *   message: later plugins are skipped unless they are marked
 *   SIFT_F_ALWAYS_RUN or SIFT_F_VIRUS_SCAN (as Postfix's OK never skips
 *   the content filter: a whitelisted, possibly forged, sender is still
 *   scanned for viruses); ERROR becomes `<name>_error_action` (default tempfail);
 *   HOLD asks for the message to be put on hold (Postfix's hold queue) and
 *   processing goes on. DUNNO means no opinion.
 *
 * Growing the ABI: fields are only ever appended to struct sift_plugin and
 * struct sift_host; abi_minor grows with each addition. A plugin built for
 * an older minor is accepted; fields past its struct_size read as absent.
 *
 * Minor versions:
 *   0  the first ABI;
 *   1  struct sift_plugin.tools (siftctl commands); struct sift_host:
 *      tool_message, message_size/message_read (the message as received),
 *      addrlist_parse/header_decode (mail syntax); struct sift_mime.html
 *      (HTML statistics). A plugin using them checks host->struct_size.
 *   2  struct sift_host: gauge_set (metrics), auth_result (one
 *      Authentication-Results header per authserv-id).
 *   3  struct sift_host: auth_result_get (the results so far, for ARC),
 *      kv_mget/kv_incr_many (key-value batches), dns_start/dns_wait (DNS
 *      queries in parallel).
 *   4  struct sift_host: policy_action_once (a policyd annotation that
 *      reaches Postfix once per transaction).
 *   5  struct sift_host: kv_write (several writes of the key-value store
 *      as one atomic unit: struct sift_kv_op).
 *   6  struct sift_host: map_is_pattern (whether a map is a pcre, regexp or
 *      cidr table, matched against whole keys only).
 *   7  struct sift_host: reply_check (the host's rules for a REJECT or
 *      TEMPFAIL reply, for replies configured ahead of use).
 *   8  flag SIFT_F_VIRUS_SCAN (a plugin that runs after an ACCEPT; an older
 *      host skips it there, as any plugin).
 *   9  struct sift_plugin.sign (a signer's hook, run at end of message
 *      after every plugin's eom, over the header as it will leave; an
 *      older host never calls it: a plugin that needs it checks
 *      host->abi_minor at init).
 *  10  struct sift_host: msg_outcome (how the message ended, for msg_end),
 *      casefold (Unicode case folding, as Postfix's with smtputf8).
 *  11  struct sift_html: tag_inside (the tags of each name left open, as
 *      SpamAssassin's HTML evals count them), font_invalid_color;
 *      closed_extra counted as SpamAssassin counts it.
 *  12  struct sift_html: font_face_bad, embeds, obfuscation; struct
 *      sift_mime flags SIFT_MIME_F_EPILOGUE, SIFT_MIME_F_NO_PART_HEADERS
 *      (set only by a host of minor 12 or later).
 */
#ifndef SIFT_PLUGIN_H
#define SIFT_PLUGIN_H

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SIFT_ABI_MAJOR 1
#define SIFT_ABI_MINOR 12

struct sift_ctx;	 /* one connection/message/request as seen by a plugin */
struct sift_dns_pending; /* a DNS query started by host->dns_start */
struct sift_map;	 /* a map in Postfix table syntax (type:name) */

enum sift_verdict {
	SIFT_DUNNO = 0, /* no opinion, continue */
	SIFT_ACCEPT,	/* whitelist: skip later plugins except always-run */
	SIFT_REJECT,	/* permanent failure (5xx) */
	SIFT_TEMPFAIL,	/* temporary failure (4xx) */
	SIFT_DISCARD,	/* accept and drop (the message; milter and policy) */
	SIFT_HOLD,	/* keep going, but put the message on hold */
	SIFT_ERROR,	/* internal error: the host applies <name>_error_action */
	SIFT_VERDICT_MAX
};

/* Which daemons a plugin runs in (struct sift_plugin.daemons). */
#define SIFT_D_FILTERD 0x01 /* the milter daemon, and siftctl test */
#define SIFT_D_POLICYD 0x02 /* the policy daemon */

/* Phases a plugin implements; the host derives them from the non-NULL hooks,
 * so a plugin never sets them itself. Exposed for logs and siftctl. */
enum sift_phase {
	SIFT_PH_CONNECT = 0,
	SIFT_PH_HELO,
	SIFT_PH_MAIL,
	SIFT_PH_RCPT,
	SIFT_PH_DATA,
	SIFT_PH_HEADER,
	SIFT_PH_EOH,
	SIFT_PH_BODY,
	SIFT_PH_EOM,
	SIFT_PH_POLICY,
	SIFT_PH_MAX
};

/* Message changes a plugin may make (struct sift_plugin.actions). The union
 * over the loaded plugins is what filterd asks the MTA for. */
#define SIFT_A_ADDHDRS	  0x01 /* add or insert headers */
#define SIFT_A_CHGHDRS	  0x02 /* change or delete headers */
#define SIFT_A_QUARANTINE 0x04 /* put the message on hold */
#define SIFT_A_CHGBODY	  0x08 /* replace the body (not yet offered) */

/* Plugin flags (struct sift_plugin.flags). */
#define SIFT_F_ALWAYS_RUN  0x01 /* run even after an earlier ACCEPT (signing) */
#define SIFT_F_NEED_BODY   0x02 /* needs the whole body at end of message */
#define SIFT_F_HDR_LEADSPC 0x04 /* needs header values byte-exact (DKIM) */
#define SIFT_F_VIRUS_SCAN \
	0x08 /* a virus scanner: runs after an earlier ACCEPT too (only a
				 * quarantine release is not scanned again) */

/* ---- Typed parameter tables ---------------------------------------------
 * Each entry describes one setting `<plugin>_<name>`. The host stores the
 * parsed value at `offset` in the conf block, as:
 *   SIFT_P_BOOL    int            (yes/no, true/false, on/off, 1/0)
 *   SIFT_P_INT     long long      (bounded by min..max)
 *   SIFT_P_TIME    long long      milliseconds; a bare number is seconds;
 *                                 units ms s m h d w
 *   SIFT_P_SIZE    long long      bytes; units k m g (1024-based)
 *   SIFT_P_STRING  const char *   (never NULL: "" when empty)
 *   SIFT_P_LIST    const char *const *  NULL-terminated; items separated by
 *                                 whitespace and/or commas
 *   SIFT_P_MAP     const struct sift_map *  NULL when the value is empty
 *   SIFT_P_ENUM    int            index into `choices` (a |-separated list)
 *   SIFT_P_RETIRED (nothing)      a setting no longer used: configurations
 *                                 that set it still load, any value is
 *                                 ignored, and the daemon logs a warning
 *                                 naming it and `doc` (which says what
 *                                 replaced it); offset is not used
 * min/max bound INT, TIME (ms) and SIZE values (0,0 = unbounded).
 */
enum sift_param_type {
	SIFT_P_BOOL = 1,
	SIFT_P_INT,
	SIFT_P_TIME,
	SIFT_P_SIZE,
	SIFT_P_STRING,
	SIFT_P_LIST,
	SIFT_P_MAP,
	SIFT_P_ENUM,
	SIFT_P_RETIRED,
};

struct sift_param {
	const char *name; /* without the plugin prefix; NULL ends the table */
	enum sift_param_type type;
	const char *def;     /* default, in config syntax ("" for none) */
	long long min, max;  /* bounds for INT/TIME/SIZE */
	size_t offset;	     /* where the value goes in the conf block */
	const char *choices; /* SIFT_P_ENUM: "reject|tempfail|accept" */
	const char *doc;     /* one line, shown by -p and in the docs check */
};

#define SIFT_PARAM_END                             \
	{                                          \
		NULL, 0, NULL, 0, 0, 0, NULL, NULL \
	}

/* Items a plugin can read with host->get(). Values are NULL when unknown. */
enum sift_item {
	SIFT_I_PROFILE = 0, /* "inbound" or "originating" */
	SIFT_I_CLIENT_ADDR, /* client IP address, text form */
	SIFT_I_CLIENT_NAME, /* verified client name or "unknown" */
	SIFT_I_CLIENT_PTR,  /* reverse (PTR) name or "unknown" */
	SIFT_I_CLIENT_PORT,
	SIFT_I_HELO,
	SIFT_I_SENDER,	      /* envelope sender without <>; "" for null sender */
	SIFT_I_RCPT,	      /* the current recipient (RCPT phase, policy) */
	SIFT_I_QUEUE_ID,      /* NULL before Postfix assigned one */
	SIFT_I_SASL_USERNAME, /* SASL login; NULL when not authenticated */
	SIFT_I_SASL_METHOD,
	SIFT_I_SASL_SENDER,
	SIFT_I_DAEMON_NAME,    /* filterd: {daemon_name}; policyd: policy_context */
	SIFT_I_MYHOSTNAME,     /* the MTA's host name (j) or our own */
	SIFT_I_PROTOCOL_STATE, /* policyd: CONNECT, RCPT, DATA, END-OF-MESSAGE ... */
	SIFT_I_INSTANCE,       /* policyd: the transaction's instance */
	SIFT_I_SIZE,	       /* policyd: size attribute, decimal */
	SIFT_I_RCPT_COUNT,     /* policyd: recipient_count attribute, decimal */
	SIFT_I_MAX
};

/* One header of the message as received. `value` is what followed the colon,
 * leading white space included, folded lines joined with "\r\n" (the host
 * converts the MTA's bare-LF folds once, when the header arrives; the
 * header hook and host->header() see the same stored value). */
struct sift_header {
	const char *name;
	const char *value;
};

/* A DNS answer, allocated by the host as one block; free() it. rr[i] points
 * at rdata in wire form except for TXT, which is the concatenated
 * character-strings, NUL-terminated; and for A/AAAA, the raw address. */
enum sift_dns_status {
	SIFT_DNS_OK = 0,   /* answers present */
	SIFT_DNS_NXDOMAIN, /* name does not exist */
	SIFT_DNS_NODATA,   /* name exists, no records of that type */
	SIFT_DNS_TEMPFAIL, /* SERVFAIL, timeout, network error */
	SIFT_DNS_ERROR,	   /* bad query */
};

struct sift_dns_result {
	enum sift_dns_status status;
	int rrtype;
	unsigned ttl;		  /* smallest TTL of the answer */
	int secure;		  /* DNSSEC validated */
	size_t count;		  /* number of records */
	const unsigned char **rr; /* record data */
	const size_t *len;	  /* record lengths */
};

/* The name of an address in a DNS list, to which the list's zone is
 * appended: "4.3.2.1" for 1.2.3.4, IPv6 as 32 reversed nibbles (out needs
 * 64 octets then); false when ip is not an address. */
static inline bool sift_dnsbl_name(const char *ip, char *out, size_t n)
{
	unsigned char b[16];
	if (inet_pton(AF_INET, ip, b) == 1)
		return snprintf(out, n, "%u.%u.%u.%u", b[3], b[2], b[1], b[0]) < (int)n;
	if (n < 64 || inet_pton(AF_INET6, ip, b) != 1)
		return false;
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (int i = 15; i >= 0; i--) {
		out[o++] = hex[b[i] & 15];
		out[o++] = '.';
		out[o++] = hex[b[i] >> 4];
		out[o++] = i ? '.' : 0;
	}
	return true;
}

/* ---- The parsed message (host->mime) ------------------------------------
 * A read-only view of the message's MIME structure, built by the host on the
 * first host->mime() call of a message and cached until the end of the
 * message (all pointers below live that long; never free them). Every
 * string is NUL-terminated; lengths are given where data may hold NULs.
 * The parse is bounded (depth, part count, header count, decoded sizes):
 * when a bound is hit the parse stops early and SIFT_MIME_F_TRUNCATED is
 * set. Malformed input never fails: it is parsed as well as possible and
 * flagged. One message belongs to one connection: the view is not shared
 * between threads. */
#define SIFT_MIME_F_TRUNCATED	     0x0001 /* a size/part/depth bound was hit */
#define SIFT_MIME_F_MISSING_BOUNDARY 0x0002 /* multipart without closing boundary */
#define SIFT_MIME_F_BAD_BASE64	     0x0004 /* invalid base64 in a part decoded */
#define SIFT_MIME_F_BAD_QP	     0x0008 /* invalid quoted-printable in a part decoded */
#define SIFT_MIME_F_8BIT_HEADER	     0x0010 /* raw 8-bit octets in a header */
#define SIFT_MIME_F_BAD_CHARSET	     0x0020 /* unknown charset or invalid octets */
#define SIFT_MIME_F_NO_BOUNDARY	     0x0040 /* multipart/ type without boundary= */
#define SIFT_MIME_F_BAD_HEADER	     0x0080 /* malformed header line in a part */
/* ABI minor 12: */
#define SIFT_MIME_F_EPILOGUE	    0x0100 /* text after a multipart's close delimiter */
#define SIFT_MIME_F_NO_PART_HEADERS 0x0200 /* a delimiter's next line is not a header */

struct sift_mime_header {
	const char *name;  /* as received */
	const char *raw;   /* value as received (folds kept, no leading space;
			    * the white space that followed the colon is kept
			    * in memory just before it, after a NUL: see
			    * sift_mime_header_lead) */
	const char *value; /* unfolded (a fold is one space), RFC 2047-decoded to
			    * UTF-8 (not in Received, Message-ID, Date,
			    * References, In-Reply-To, List-* and the like:
			    * sift_header_has_words), trimmed */
};

/* The raw value of a parsed header with the white space that followed the
 * colon ("\tMon, 1 Jan ..." for "Date:\tMon, 1 Jan ..."), as SpamAssassin's
 * :raw headers read it. */
static inline const char *sift_mime_header_lead(const struct sift_mime_header *h)
{
	const char *p = h->raw;
	while (p[-1] == ' ' || p[-1] == '\t')
		p--;
	return p;
}

#define SIFT_MIME_P_ATTACHMENT 0x01 /* Content-Disposition: attachment */
/* SIFT_MIME_P_HTML: text/html, text is the rendering. A leaf named *.html,
 * *.htm, *.shtml or *.shtm is read as text/html whatever its declared type
 * (SpamAssassin's effective type): decoded, rendered, flagged; its type
 * stays as declared. */
#define SIFT_MIME_P_HTML    0x02
#define SIFT_MIME_P_MESSAGE 0x04 /* message/rfc822 or message/global: its parts follow */

struct sift_mime_part {
	unsigned depth;				/* 0 = the message itself */
	long parent;				/* index in parts[], -1 for the root */
	unsigned flags;				/* SIFT_MIME_P_* */
	const struct sift_mime_header *headers; /* the part's own headers */
	size_t header_count;			/* (the root's are the message's) */
	const char *type;			/* lower case, "text/plain" by default */
	const char *charset;			/* lower case, "" when none */
	const char *encoding;			/* lower case Content-Transfer-Encoding, "7bit" */
	const char *filename;			/* decoded, "" when none */
	const char *boundary;			/* multipart: "" when none */
	const unsigned char *raw;
	size_t raw_len; /* body as received */
	/* transfer-decoded; NULL (data_len 0) for a base64 or quoted-
	 * printable leaf that is not text/, image/ or message/: not decoded,
	 * raw holds it */
	const unsigned char *data;
	size_t data_len;
	/* text/ leaves only (else NULL) but text/calendar and text/x-vcard,
	 * which SpamAssassin does not render (their data is decoded): the
	 * content in UTF-8 with LF line ends; for text/html the rendering as SpamAssassin's HTML.pm makes
	 * it (tags removed, entities decoded, scripts/styles dropped, runs of
	 * white space as one space, <br>/<div> a line break, <p>, <title>,
	 * <hr>, <pre> ... a blank line, cells and list items a space). */
	const char *text;
	size_t text_len;
	/* text/html leaves: a few statistics for HTML rules (all of them in
	 * struct sift_mime.html). */
	unsigned html_tags, html_images, html_links, html_bad_tags;
	unsigned long html_image_area; /* sum of width*height given in <img> */
	const char *html_title;	       /* "" when none */
};

/* Statistics of one text/html part (struct sift_mime.html), from the same
 * tokenizer pass that renders the part's text: what SpamAssassin's HTML
 * evals look at. */
#define SIFT_HTML_MAX_TAGNAMES 96
struct sift_html_tag {
	char name[16];	      /* lower case, at most 15 characters */
	unsigned open, close; /* opening and closing tags of that name */
};

/* One <a href> of a text/html part: where it points and what it shows
 * (SpamAssassin's uri_detail anchor_text, for the HTTPS mismatch evals). */
#define SIFT_HTML_MAX_ANCHORS	  256
#define SIFT_HTML_MAX_ANCHOR_TEXT 1024
struct sift_html_anchor {
	const char *href; /* the attribute, entity-decoded, spaces trimmed */
	const char *text; /* the text inside <a>...</a> (at most
			   * SIFT_HTML_MAX_ANCHOR_TEXT octets), "<img>" for an image */
};

struct sift_html {
	size_t length;		  /* characters of the HTML source (in UTF-8, LF line ends) */
	unsigned tags;		  /* tags, opening and closing */
	unsigned bad_tags;	  /* of those, names no HTML version defines */
	unsigned closed_extra;	  /* closing tags with none of the name open */
	unsigned images;	  /* <img> tags */
	unsigned links;		  /* <a> tags with an href */
	unsigned long image_area; /* sum of width*height given in <img> */
	int max_font_size;	  /* largest <font size=...> (3 = the default) */
	int form_mailto;	  /* a <form> whose action is a mailto: URI */
	int low_contrast;	  /* visible text in a colour close to its background */
	const char *title;	  /* text of <title>, entities decoded; "" when none */
	const char *anchor;	  /* text inside <a>...</a>, "<img>" for an image */
	const char *comments;	  /* each comment or declaration, then "\n" */
	size_t ntagnames;	  /* the first SIFT_HTML_MAX_TAGNAMES names seen: */
	struct sift_html_tag tagnames[SIFT_HTML_MAX_TAGNAMES];
	unsigned iframes;			/* <iframe> tags with a src */
	size_t nanchors;			/* the first SIFT_HTML_MAX_ANCHORS <a href>: */
	const struct sift_html_anchor *anchors; /* in order */
	/* characters of the rendered text that are not Unicode white space
	 * (SpamAssassin's non_space_len: html_image_ratio) */
	size_t non_space_len;
	/* ABI minor 11: per tagnames[i], the tags of that name open at the
	 * end as SpamAssassin counts them (its "inside"): one more for an
	 * opening tag, one less for a closing one, never below 0 (a closing
	 * tag with none open counts in closed_extra instead) */
	unsigned tag_inside[SIFT_HTML_MAX_TAGNAMES];
	/* ABI minor 11: visible text in a colour name_to_rgb does not know
	 * (SpamAssassin's font_invalid_color), when not low contrast */
	int font_invalid_color;
	/* ABI minor 12: a <font face> that is not a list of font names
	 * (SpamAssassin's font_face_bad); an <object> or <embed> tag */
	int font_face_bad;
	int embeds;
	/* ABI minor 12: text that starts with a word character (not white
	 * space nor ASCII punctuation) right after rendered text that ends
	 * with one, nothing but tags that insert no white space between them
	 * (SpamAssassin's obfuscation; obfuscation_ratio = obfuscation / tags) */
	unsigned obfuscation;
};

#define SIFT_URI_F_HTML 0x01 /* from an HTML attribute (href, src, ...) */
#define SIFT_URI_F_TEXT 0x02 /* found in plain text */

struct sift_mime_uri {
	const char *uri;  /* as found (entities decoded, trimmed) */
	const char *host; /* lower case host, "" when none (mailto: has the domain) */
	unsigned flags;	  /* SIFT_URI_F_* */
	long part;	  /* index of the part it was found in */
};

struct sift_mime {
	const struct sift_mime_header *headers; /* the message's, in order */
	size_t header_count;
	const struct sift_mime_part *parts; /* preorder; parts[0] = the message */
	size_t part_count;
	const struct sift_mime_uri *uris; /* distinct, in order found */
	size_t uri_count;
	unsigned flags; /* SIFT_MIME_F_* */
	const unsigned char *body;
	size_t body_len;    /* raw body (CRLF) as scanned */
	int body_truncated; /* body longer than the host's scan limit */
	/* Appended with host->addrlist_parse (read it only when
	 * host->struct_size covers that field): html[i] is the statistics of
	 * parts[i] when it is a text/html leaf (SIFT_MIME_P_HTML), else NULL. */
	const struct sift_html *const *html;
};

/* ---- Addresses (host->addrlist_parse) --------------------------------
 * An RFC 5322 address list (From, Sender, Reply-To, To, Cc) as parsed by the
 * core's one parser: mailboxes and name-addr, groups (their mailboxes are
 * listed, the group names dropped), nested comments, quoted strings and
 * quoted local parts, domain literals, the obsolete forms (routes, phrases
 * with dots, empty list elements), RFC 6532 UTF-8 and RFC 2047 display
 * names; three leniencies, read as mail clients and SpamAssassin do: an
 * unquoted '@' in a display name is part of the name, a group whose ';' is
 * missing at the end of the value ends there, and octets of a legacy 8-bit
 * local part that are not UTF-8 are taken as Latin-1. Anything else that is not
 * valid syntax (an unbalanced bracket, quote or comment, text after an
 * address, two addresses without a comma, a group in a group, invalid
 * UTF-8 in a domain, control characters) and anything over a bound (16 KiB of input,
 * 256 mailboxes, a local part over 256 or a domain over 255 octets) makes
 * the whole value invalid: count 0 and error set. */
struct sift_mailbox {
	const char *addr;    /* local@domain: local part unquoted, domain lower case */
	const char *local;   /* the local part, unquoted (may hold spaces, quotes, '@') */
	const char *domain;  /* lower case; a domain literal keeps its brackets */
	const char *display; /* display name, RFC 2047-decoded to UTF-8; "" when none */
	const char *comment; /* the old form "addr (Name)": the comment, decoded
			      * (a name to show, never an address); "" when none */
};

/* One malloc'd block (the strings included): the caller free()s it. */
struct sift_addrs {
	size_t count;	   /* mailboxes in mb[]; 0 when invalid or empty */
	const char *error; /* NULL when valid, else a static reason */
	struct sift_mailbox mb[];
};

/* ---- siftctl commands (struct sift_plugin.tools) ---------------------------
 * A plugin offers administrator commands through a table of struct
 * sift_tool, ended by an entry whose name is NULL:
 *
 *     siftctl [-c FILE] [-o name=value]... PLUGIN TOOL [ARGS]
 *
 * runs the tool TOOL of PLUGIN.so, found in plugin_directory of the
 * configuration (when the configuration file cannot be read: the build
 * tree's plugins for a siftctl run from its build tree, else the directory
 * siftctl was built for). `siftctl help` lists every plugin's tools (usage and
 * summary), `siftctl PLUGIN --help` the plugin's. Options of a tool may come
 * before its name (`siftctl ratelimit --socket PATH stats`).
 *
 * run(host, conf, argc, argv): argv[0] is the tool's name, argv[1..] its
 * arguments; the return value is siftctl's exit status (by convention 0
 * done, 1 failed, 2 bad usage). A tool runs in siftctl's only thread, prints
 * its output on stdout and its errors on stderr (prefixed "siftctl PLUGIN:"
 * or "siftctl PLUGIN TOOL:"); one that parses its options with getopt sets
 * argv[0] to "siftctl PLUGIN TOOL" first, so that getopt's own messages
 * ("siftctl dkim genkey: invalid option -- 'x'") name the command as
 * siftctl's do. It reaches the core only through host: the one passed to
 * run, which has the tool services below (host->tool_message); the daemons'
 * host has them NULL. What conf holds depends on the tool's flags:
 *   0                  the plugin's parameters as the configuration (-c, -o)
 *                      sets them, parsed into a conf block of conf_size
 *                      bytes as for init; neither preinit nor init ran (the
 *                      fields init derives are zero), and the DNS resolver
 *                      and the state store are not set up;
 *   SIFT_TOOL_INIT     the plugin initialised (preinit, init) as in a
 *                      daemon (filterd when it runs there, else policyd),
 *                      alone in both profiles, with the configuration's DNS
 *                      resolver and state store; release runs after the tool;
 *   SIFT_TOOL_NO_CONF  no configuration is read: conf is NULL;
 *   SIFT_TOOL_CONF_OPTIONAL (with 0) conf is NULL when the configuration
 *                      cannot be read, instead of an error.
 */
#define SIFT_TOOL_INIT		0x01
#define SIFT_TOOL_NO_CONF	0x02
#define SIFT_TOOL_CONF_OPTIONAL 0x04

struct sift_host;

struct sift_tool {
	const char *name;    /* the command word after the plugin's; NULL ends */
	const char *usage;   /* its arguments ("-d DOMAIN -s SELECTOR FILE") */
	const char *summary; /* what it does: one or a few lines, no indent */
	unsigned flags;	     /* SIFT_TOOL_* */
	int (*run)(const struct sift_host *host, void *conf, int argc, char **argv);
};

/* The largest message a siftctl command reads (a file, standard input, one
 * message of an mbox): far above what a Postfix takes by default
 * (message_size_limit, 10 MB), and a bound on what a tool holds in memory,
 * so that endless input (/dev/zero, a pipe that never ends) is an error, not
 * a siftctl that eats all memory. host->tool_message refuses a larger
 * message with an error naming it; a tool that reads another file whole
 * (the dmarc plugin's day of report rows) holds to the same bound. */
#define SIFT_TOOL_MESSAGE_MAX	   (128u << 20)
#define SIFT_TOOL_MESSAGE_MAX_TEXT "128 MiB"

/* The largest table file Sift reads (texthash:, pcre:, regexp:, cidr: and
 * the plugins' own tables such as dkim_key_table), and the longest logical
 * line in one (continuation lines included): a larger file, or endless
 * input (/dev/zero), is refused with an error naming it and the limit, not
 * read into memory without end. The core's maps (host->map_open, SIFT_P_MAP
 * parameters) and a plugin that reads a table itself hold to the same
 * limits. */
#define SIFT_TABLE_FILE_MAX	 (64u << 20)
#define SIFT_TABLE_FILE_MAX_TEXT "64 MiB"
#define SIFT_TABLE_LINE_MAX	 (64u << 10)
#define SIFT_TABLE_LINE_MAX_TEXT "64 KiB"

/* A stored message as host->tool_message hands it to a tool. */
struct sift_tool_message {
	const unsigned char *data; /* the message as read, NUL-terminated */
	size_t len;
	const struct sift_mime *mime; /* the whole message parsed as MIME */
	/* When a chain ran: its verdict (else SIFT_DUNNO) and the header edits
	 * it queued that set a value (adds, inserts, changes), in order. */
	enum sift_verdict verdict;
	const struct sift_header *headers;
	size_t header_count;
};

/* One write of a host->kv_write batch. */
enum sift_kv_op_type {
	SIFT_KV_COUNT, /* add delta, as kv_incr_many: ttl_ms (0: none) set at every
			* increment, the key deleted when it drops to 0 or below */
	SIFT_KV_SET,   /* set key to val, expiring in ttl_ms (0: never) */
	SIFT_KV_DEL,   /* delete key (absent: nothing to do) */
};
struct sift_kv_op {
	enum sift_kv_op_type op;
	const char *key;
	const char *val; /* SIFT_KV_SET */
	long long delta; /* SIFT_KV_COUNT */
	long ttl_ms;	 /* SIFT_KV_COUNT, SIFT_KV_SET */
};

/* The host's services, passed to preinit() and init(). Functions are only
 * ever appended. */
struct sift_host {
	unsigned abi_major, abi_minor;
	size_t struct_size;

	/* Logging: prefixes "<queue id>: <plugin>: " itself. level is a syslog
	 * priority (LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG).
	 * ctx may be NULL outside hooks (init). Never log secrets. */
	void (*log)(struct sift_ctx *ctx, int level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));

	/* State blocks of the calling plugin, zeroed by the host:
	 * conf: the read-only configuration block of this generation;
	 * conn: conn_size bytes, lives for the connection;
	 * msg:  msg_size bytes, lives for one message (or policy transaction,
	 *       keyed by `instance`). */
	void *(*conf)(struct sift_ctx *ctx);
	void *(*conn)(struct sift_ctx *ctx);
	void *(*msg)(struct sift_ctx *ctx);

	/* Connection / envelope data. */
	const char *(*get)(struct sift_ctx *ctx, enum sift_item item);
	size_t (*rcpt_count)(struct sift_ctx *ctx);
	const char *(*rcpt)(struct sift_ctx *ctx, size_t i);
	/* filterd: a milter macro ("{auth_authen}", "i"); policyd: a request
	 * attribute ("sasl_username"). NULL when absent. */
	const char *(*macro)(struct sift_ctx *ctx, const char *name);

	/* The message (filterd and siftctl test; at EOH/EOM). */
	size_t (*header_count)(struct sift_ctx *ctx);
	const struct sift_header *(*header)(struct sift_ctx *ctx, size_t i);
	/* The body after the blank line, CRLF line ends. Returns bytes copied,
	 * 0 at the end, -1 on error. */
	long long (*body_size)(struct sift_ctx *ctx);
	long (*body_read)(struct sift_ctx *ctx, long long off, void *buf, size_t len);

	/* Results. reply(): the SMTP reply for the REJECT/TEMPFAIL the hook is
	 * about to return (code "550", xcode "5.7.1"; text may be NULL; code
	 * and xcode NULL: the text alone, with the host's default code). The
	 * host checks it once, when the verdict is merged: a code of the
	 * verdict's class (5xx for REJECT, 4xx for TEMPFAIL; RFC 5321), an
	 * enhanced code of the same class (RFC 3463, or NULL), a text without
	 * control characters (CR, LF, ...), at most 980 bytes in all. An
	 * invalid reply is logged as an error naming the plugin and replaced
	 * by the default of the class (550 5.7.1 / 451 4.7.1). A '%' in the
	 * text is sent as it is (the host escapes it for the MTA). */
	void (*reply)(struct sift_ctx *ctx, const char *code, const char *xcode, const char *text);
	/* A named scored symbol (SPF_FAIL, DKIM_VALID). `option` may be NULL.
	 * A name added again (case-insensitive) keeps one entry with the new
	 * score: the message's score counts every symbol once. */
	void (*symbol)(struct sift_ctx *ctx, const char *name, double score, const char *option);
	double (*score)(struct sift_ctx *ctx);
	/* Queued header edits, applied at end of message in the order given.
	 * header_insert: index 0 = top of the header. header_change: idx is
	 * 1-based among headers of that name; value NULL deletes. Values are
	 * in the same form as received values without the leading space:
	 * folded lines joined with "\r\n" (the host writes them as the MTA
	 * wants them). */
	void (*header_add)(struct sift_ctx *ctx, const char *name, const char *value);
	void (*header_insert)(struct sift_ctx *ctx, unsigned idx, const char *name, const char *value);
	void (*header_change)(struct sift_ctx *ctx, const char *name, unsigned idx, const char *value);
	/* policyd: a non-final action (PREPEND header, WARN, INFO ...), used
	 * when no plugin gives a final one. Text after "action=". Postfix
	 * takes one action a reply: a final verdict or HOLD, else the first
	 * DEFER_IF_PERMIT/DEFER_IF_REJECT, else the first other action wins,
	 * and the others of that request are not sent (for an action that
	 * must reach Postfix once per transaction, see policy_action_once). */
	void (*policy_action)(struct sift_ctx *ctx, const char *action);
	/* Reason for HOLD (quarantine) verdicts. */
	void (*hold)(struct sift_ctx *ctx, const char *reason);

	/* Memory that lives until the end of the message. Never NULL. */
	void *(*msg_alloc)(struct sift_ctx *ctx, size_t size);

	/* Milliseconds left before the MTA gives up on this step. */
	long (*time_left_ms)(struct sift_ctx *ctx);

	/* Maps: 1 found (*result_r malloc'd), 0 not found, -1 error. */
	int (*map_lookup)(const struct sift_map *map, const char *key, char **result_r);
	/* Open a map by "type:name" at init time (for maps built from other
	 * settings); NULL + *err_r (malloc'd) on error; freed at release. */
	const struct sift_map *(*map_open)(const char *spec, char **err_r);

	/* DNS through the shared resolver. Returns NULL only on allocation
	 * failure; check ->status. timeout_ms 0 = the configured default. */
	struct sift_dns_result *(*dns_query)(const char *name, int rrtype, long timeout_ms);

	/* Key-value store (memory: or redis:). 0 ok, 1 not found, -1 error.
	 * kv_get: *val_r malloc'd. kv_incr: adds delta, sets the expiry only
	 * when the key is created, returns the new value in *val_r; -2 (an
	 * error too) when the store may have added it all the same (sent to
	 * Redis, no answer within its timeout): a caller that must not count
	 * it takes it back. */
	int (*kv_get)(const char *key, char **val_r);
	int (*kv_set)(const char *key, const char *val, long ttl_ms);
	int (*kv_incr)(const char *key, long long delta, long ttl_ms, long long *val_r);
	int (*kv_del)(const char *key);

	/* Stores the whole message (headers and body as received, envelope,
	 * reason and plugin in its metadata) in the quarantine store. 0 with
	 * *id_r (malloc'd; pass NULL if not wanted) or -1: the caller then
	 * answers TEMPFAIL, since a failed quarantine must never lose mail. */
	int (*quarantine)(struct sift_ctx *ctx, const char *reason, char **id_r);

	/* ---- appended later: check host->struct_size before use ----
	 * The message parsed as MIME (filterd at EOM and siftctl test): built
	 * on the first call of a message, cached by the host and freed at the
	 * end of the message. NULL outside a message or before the body is
	 * complete. The body is scanned up to 4 MiB (body_truncated set beyond);
	 * sift_mime.body points into the host's own copy of the message (its
	 * memory, or its spool file mapped read-only), not into a new copy. */
	const struct sift_mime *(*mime)(struct sift_ctx *ctx);
	/* Symbols added so far to this message by all plugins (in order), so
	 * that a plugin can weigh other plugins' results. symbol_get returns 0
	 * and fills the pointers (owned by the host, valid until the end of the
	 * message; option may be NULL), -1 when i is out of range. */
	size_t (*symbol_count)(struct sift_ctx *ctx);
	int (*symbol_get)(struct sift_ctx *ctx, size_t i, const char **name_r, double *score_r,
			  const char **option_r);

	/* ---- siftctl tools only (NULL in the daemons and in hooks) ----
	 * tool_message reads the message in `file` ("-": standard input) and
	 * parses it. When `chain` names a plugin, the message then runs
	 * through a chain made of that plugin alone, as `siftctl test` runs
	 * one (client 127.0.0.1 "localhost", null envelope sender, recipient
	 * postmaster@localhost), in `profile` ("inbound" or "originating"),
	 * with the configuration plus `settings` ("name = value" strings,
	 * NULL-terminated; NULL for none). Then done(arg, message) is called;
	 * everything it is given lives until done returns. Returns 0, or -1
	 * with *err_r (malloc'd) when the file cannot be read, is larger than
	 * SIFT_TOOL_MESSAGE_MAX, or the chain cannot be built. */
	int (*tool_message)(const char *file, const char *chain, const char *profile,
			    const char *const *settings,
			    void (*done)(void *arg, const struct sift_tool_message *message), void *arg,
			    char **err_r);

	/* The message as received, for scanners, signers and stores that need
	 * it whole (filterd and siftctl test): the header block, each header as
	 * "Name:value" (the value as struct sift_header gives it, byte-exact)
	 * with CRLF line ends, then the empty line ("\r\n"), followed by the
	 * body as body_read gives it. The header block is complete from EOH on,
	 * the body at EOM; the body starts at message_size() - body_size().
	 * The host keeps one copy of the message, the body in memory up to
	 * message_memory_limit and in a spool file beyond: read it in chunks of
	 * your own size (64 KiB is plenty) instead of copying it whole.
	 * message_size: bytes in all, -1 outside a message. message_read:
	 * copies up to len bytes from offset off into buf and returns how many
	 * (header and body pieces in one call; it may be fewer than len: go on
	 * from off + that count), 0 at or past the end, -1 on an error or a
	 * negative offset. */
	long long (*message_size)(struct sift_ctx *ctx);
	long (*message_read)(struct sift_ctx *ctx, long long off, void *buf, size_t len);

	/* Mail syntax from the core, so that every plugin reads headers the
	 * same way (no context needed: pure functions, callable from init and
	 * from any thread). addrlist_parse parses an address-list header value as
	 * received (struct sift_header.value: folds and RFC 2047 words are
	 * handled) into one malloc'd block the caller free()s; never NULL.
	 * header_decode returns the value unfolded, RFC 2047-decoded and
	 * converted to UTF-8, trimmed (malloc'd; the caller free()s it), as
	 * struct sift_mime_header.value is. */
	struct sift_addrs *(*addrlist_parse)(const char *value);
	char *(*header_decode)(const char *value);

	/* A value the plugin reports for monitoring (the daemon's /metrics
	 * and status, see README "Metrics and status"): sets the gauge `name`
	 * of plugin `plugin` (its own name) to value. Names are 1 to 48 of
	 * [a-z0-9_] and end in the unit (_seconds, _bytes, ...) when there is
	 * one; the daemon exports sift_<daemon>_<plugin>_<name>. At most 32
	 * gauges in all (further names are ignored). Thread-safe, callable
	 * from init and from the plugin's own threads; no context needed.
	 * The clamav plugin reports database_version and
	 * database_timestamp_seconds. */
	void (*gauge_set)(const char *plugin, const char *name, double value);

	/* Authentication results (RFC 8601) of the message, so that it carries
	 * one Authentication-Results header per authserv-id (filterd and
	 * siftctl test). resinfo is one result, or several separated by
	 * ";\r\n\t", without the authserv-id: "spf=pass smtp.mailfrom=a@b.example".
	 * The first result for an authserv-id queues the header as an insert
	 * at index 0 (host->header_insert); later ones are appended to that
	 * header, each on its own folded line, in the order given. The spf,
	 * dkim and dmarc plugins report through it. */
	void (*auth_result)(struct sift_ctx *ctx, const char *authserv_id, const char *resinfo);

	/* The results given so far for authserv_id through auth_result (by the
	 * plugins before the caller in the chain), as the header's value
	 * without the authserv-id: "spf=pass smtp.mailfrom=a@b.example;\r\n\t
	 * dkim=pass header.d=b.example"; NULL when there are none. Owned by the
	 * host, valid until the next auth_result call or the end of the
	 * message. The arc plugin copies them into ARC-Authentication-Results. */
	const char *(*auth_result_get)(struct sift_ctx *ctx, const char *authserv_id);
	/* Batches of the key-value store (for many keys per message, as the
	 * spam plugin's Bayes tokens): kv_mget reads n keys at once (one round
	 * trip on Redis): vals_r[i] malloc'd, or NULL when absent; 0, or -1
	 * (every vals_r[i] NULL). kv_incr_many adds deltas[i] to keys[i] all at
	 * once (one atomic script on Redis), sets each key's expiry to ttl_ms
	 * (0: none) at every increment, and deletes a key whose value drops to
	 * 0 or below; 0 or -1. */
	int (*kv_mget)(const char *const *keys, size_t n, char **vals_r);
	int (*kv_incr_many)(const char *const *keys, const long long *deltas, size_t n, long ttl_ms);
	/* DNS queries in parallel, through the shared resolver and its cache
	 * (as dns_query): dns_start launches a query and returns at once
	 * (never NULL); dns_wait waits at most timeout_ms (0: not at all) for
	 * its answer, releases the query and returns the answer as dns_query
	 * does (free() it; TEMPFAIL when none arrived in time). Every started
	 * query is given to dns_wait exactly once, at the latest in the
	 * plugin's msg_end or close hook. Callable from any thread. */
	struct sift_dns_pending *(*dns_start)(const char *name, int rrtype);
	struct sift_dns_result *(*dns_wait)(struct sift_dns_pending *p, long timeout_ms);
	/* policyd: as policy_action, for an annotation that must reach Postfix
	 * once in the mail transaction (the requests of one Postfix
	 * `instance`), as a header to PREPEND: the host adds it unless a reply
	 * of this transaction already carried it (the same text), and
	 * remembers it once a reply carries it. An annotation that lost to
	 * another action (a refusal of that recipient, a DEFER_IF_PERMIT, an
	 * earlier annotation) was not sent: give it at every request, and it
	 * goes out with the first reply that it wins, once. At most 64
	 * distinct ones are remembered per transaction. */
	void (*policy_action_once)(struct sift_ctx *ctx, const char *action);
	/* The n writes of ops, in order, as one unit (ABI minor 5): on Redis
	 * one Lua script, sent as one command, so that either all of them
	 * happen or none (a connection lost while sending it, a process
	 * killed), and no other client sees some without the others; it
	 * checks that every SIFT_KV_COUNT key holds an integer before it
	 * writes anything. On memory: each write is atomic, the batch is not
	 * (it lives and dies with the process). 0, or -1 (on Redis: none was
	 * made, unless the answer was lost after it ran). */
	int (*kv_write)(const struct sift_kv_op *ops, size_t n);
	/* Whether map is a pattern table (pcre:, regexp:, cidr:; ABI minor 6) rather than a
	 * table of fixed strings (hash:, texthash:, inline:, ...): its rules
	 * are matched against the whole key, so a plugin that looks a string
	 * up piece by piece as Postfix does (parent domains, user@, networks
	 * with octets removed) does that in fixed-string tables only, as
	 * Postfix does (access(5), "REGULAR EXPRESSION TABLES"). false for
	 * NULL. Pure, callable from init and from any thread. */
	bool (*map_is_pattern)(const struct sift_map *map);
	/* Whether the reply code/xcode/text would be accepted with a verdict
	 * of class cls ('5' REJECT, '4' TEMPFAIL) by reply() (ABI minor 7):
	 * NULL when valid, else why (a static string). For a reply text set
	 * in the configuration, to refuse it at init rather than replace it
	 * by the default at every message. Pure, callable from init and from
	 * any thread. */
	const char *(*reply_check)(char cls, const char *code, const char *xcode, const char *text);
	/* How the message ended (ABI minor 10), for a msg_end hook in filterd
	 * and siftctl test: SIFT_DUNNO when the MTA takes it (to deliver, or
	 * to hold), else SIFT_REJECT, SIFT_TEMPFAIL or SIFT_DISCARD as the MTA
	 * was answered. SIFT_ERROR when it ended without an answer (RSET, a
	 * lost connection, every recipient refused), before msg_end and in
	 * policyd. A message answered with TEMPFAIL comes again: a plugin
	 * that records each message once (a report row) records it then. */
	enum sift_verdict (*msg_outcome)(struct sift_ctx *ctx);
	/* s case-folded as Postfix folds lookup keys and compares a SASL
	 * login with an address's owners when smtputf8 is on (ABI minor 10):
	 * Unicode case folding of UTF-8 (ICU's, as Postfix's), ASCII lower
	 * case for ASCII text and for octets that are not UTF-8. A malloc'd
	 * copy: free() it. Pure, callable from init and from any thread. */
	char *(*casefold)(const char *s);
};

struct sift_plugin {
	unsigned abi_major, abi_minor; /* SIFT_ABI_MAJOR, SIFT_ABI_MINOR */
	size_t struct_size;	       /* sizeof(struct sift_plugin) */
	const char *name;	       /* = file name and parameter prefix */
	const char *description;
	unsigned daemons; /* SIFT_D_* */
	unsigned actions; /* SIFT_A_* */
	unsigned flags;	  /* SIFT_F_* */
	const struct sift_param *params;
	size_t conf_size, conn_size, msg_size;

	/* Lifecycle. Return 0, or -1 with *err_r set to a malloc'd message.
	 * preinit runs once, for the first generation, as root before the
	 * privilege drop (open keys here if they are readable only by root, and
	 * keep them process-wide: reloads skip preinit). init runs for every
	 * generation as the daemon's user, never as root unless
	 * <daemon>_user = root. */
	int (*preinit)(const struct sift_host *host, void *conf, char **err_r);
	int (*init)(const struct sift_host *host, void *conf, char **err_r);
	void (*release)(void *conf);

	/* Hooks; NULL = not interested. In filterd, a final verdict (reject,
	 * tempfail, discard) from header, eoh or body is given to the MTA at
	 * end of message, and no later hook runs for that message (msg_end
	 * still does). */
	enum sift_verdict (*connect)(struct sift_ctx *ctx);
	enum sift_verdict (*helo)(struct sift_ctx *ctx);
	enum sift_verdict (*mail)(struct sift_ctx *ctx);
	enum sift_verdict (*rcpt)(struct sift_ctx *ctx);
	enum sift_verdict (*data)(struct sift_ctx *ctx);
	enum sift_verdict (*header)(struct sift_ctx *ctx, const struct sift_header *h);
	enum sift_verdict (*eoh)(struct sift_ctx *ctx);
	enum sift_verdict (*body)(struct sift_ctx *ctx, const unsigned char *buf, size_t len);
	enum sift_verdict (*eom)(struct sift_ctx *ctx);
	/* End of a message that did not reach eom (RSET, reject): free msg state. */
	void (*abort)(struct sift_ctx *ctx);
	/* End of a message, after eom or abort: always called once per message. */
	void (*msg_end)(struct sift_ctx *ctx);
	/* End of the connection. */
	void (*close)(struct sift_ctx *ctx);
	/* policyd: one request; SIFT_I_PROTOCOL_STATE says which stage. */
	enum sift_verdict (*policy)(struct sift_ctx *ctx);

	/* ---- appended later: absent when struct_size does not cover it ----
	 * siftctl commands (see struct sift_tool); NULL = none. */
	const struct sift_tool *tools;
	/* A signer's end of message (ABI minor 9; NULL = not a signer): for a
	 * plugin that signs or seals the message (dkim, arc), whose signature
	 * must cover the header as it leaves. Called in filterd and siftctl
	 * test after the eom hooks of every plugin of the chain, wherever the
	 * plugin stands in it, when the message's verdict is not final (the
	 * signers among themselves in the chain's order; skipped after an
	 * ACCEPT as eom is, unless SIFT_F_ALWAYS_RUN). While it runs,
	 * host->header_count, host->header, host->message_size and
	 * host->message_read show the header with the edits queued so far
	 * (by every plugin's eom and by the signers before it, and the host's
	 * deletion of forged Authentication-Results) applied as the MTA will
	 * apply them: adds at the end, inserts at their index, changes and
	 * deletes of the idx-th header of the name, in the order queued (a
	 * change of a header that is not there adds it); edited values with
	 * the leading space the host writes for the MTA. The body and
	 * host->mime are the message as received. The edits the hook queues
	 * (its own signature) go to the MTA as any other. */
	enum sift_verdict (*sign)(struct sift_ctx *ctx);
};

/* Marks the entry symbol exported when plugins build with hidden visibility:
 *   SIFT_EXPORT const struct sift_plugin sift_plugin_entry = { ... }; */
#define SIFT_EXPORT __attribute__((visibility("default")))

#define SIFT_PLUGIN_INIT \
	.abi_major = SIFT_ABI_MAJOR, .abi_minor = SIFT_ABI_MINOR, .struct_size = sizeof(struct sift_plugin)

#ifdef __cplusplus
}
#endif
#endif
