/*
 * received.c - one Received: header into a relay, as SpamAssassin's
 * Message::Metadata::Received parse_received_line does it: a cascade of
 * format-specific patterns (Microsoft, XMail, ecelerity, Exim, Postfix,
 * Lotus Domino, sendmail, qmail, ...) tried in SpamAssassin's order, then
 * the handovers that are known to carry nothing useful (skipped), then a
 * general fall-back (an "[IP]" and a "by" name), else unparseable. The
 * fields then go through the same clean-up (address prefixes and zone ids
 * removed, characters that cannot appear in the relay string replaced by
 * "!").
 *
 * The patterns are PCRE2, compiled once (JIT when available) and run with
 * a match limit: a header that drives one to its limit is unparseable.
 */
#include <pthread.h>

#include "internal.h"

/* SpamAssassin's IP_ADDRESS (IPv4, IPv4-mapped IPv6, IPv6) and LOCALHOST */
#define V4O "(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)"
#define H4  "[a-f0-9]{1,4}"
#define IPA                                                                                                 \
	"(?i:(?:\\b(?<!:)" V4O "\\." V4O "\\." V4O "\\." V4O "\\b|(?:IPv6:|(?<![a-f0-9:]))(?:(?:(?:" H4     \
	":){6}|::(?:" H4 ":){0,5}|(?:" H4 ":){1,5}:|" H4 "::(?:" H4 ":){1,4}|(?:" H4 ":){2}:(?:" H4         \
	":){1,3}|(?:" H4 ":){3}:(?:" H4 ":){1,2}|(?:" H4 ":){4}:" H4 ":)" V4O "\\." V4O "\\." V4O "\\." V4O \
	"|(?:" H4 ":){7}" H4 "|:(?::" H4 "){1,7}|(?:" H4 ":){1,7}:|" H4 ":(?::" H4 "){1,6}|(?:" H4          \
	":){2}(?::" H4 "){1,5}|(?:" H4 ":){3}(?::" H4 "){1,4}|(?:" H4 ":){4}(?::" H4 "){1,3}|(?:" H4        \
	":){5}(?::" H4 "){1,2}|(?:" H4 ":){6}:" H4 "|::)(?![a-f0-9:])))"
#define Z4 "0{1,4}"
#define LH                                                                                                 \
	"(?i:(?:localhost(?:\\.localdomain)?|\\b(?<!:)127\\.0\\.0\\.1\\b|(?:IPv6:|(?<![a-f0-9:]))(?:(?:(?" \
	":" Z4 ":){5}ffff:|::(?:" Z4 ":){0,4}ffff:|(?:" Z4 ":){1,4}:ffff:|" Z4 "::(?:" Z4                  \
	":){1,3}ffff:|(?:" Z4 ":){2}:0{1,2}:ffff:|(?:" Z4 ":){3}:0:ffff:|(?:" Z4                           \
	":){4}:ffff:)127\\.0\\.0\\.1|(?:" Z4 ":){7}0{0,3}1|:(?::" Z4 "){0,6}:0{0,3}1|" Z4 ":(?::" Z4       \
	"){0,5}:0{0,3}1|(?:" Z4 ":){2}(?::" Z4 "){0,4}:0{0,3}1|(?:" Z4 ":){3}(?::" Z4                      \
	"){0,3}:0{0,3}1|(?:" Z4 ":){4}(?::" Z4 "){0,2}:0{0,3}1|(?:" Z4 ":){5}(?::" Z4                      \
	"){0,1}:0{0,3}1|(?:" Z4 ":){6}:0{0,3}1)(?![a-f0-9:])))"
/* the characters of a HELO argument */
#define HC "-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\\\/"

enum {
	R_FROM_ANY,
	R_LOCAL_FOR,
	R_FROM_BY_SEMI,
	R_BRACKET_V4,
	R_DATE,
	R_ID,
	R_HELO_EQ,
	R_HELO_KW,
	R_BY,
	R_ENVFROM,
	R_SQUIRREL,
	R_SQUIRREL1,
	R_AOL,
	R_AOL_HTTP,
	R_AOL1,
	R_SMTPSVC,
	R_SMTPSVC1,
	R_SMTPSVC_PICKUP,
	R_MSSMTP,
	R_MSSMTP1,
	R_XMAIL,
	R_XMAIL1,
	R_XMAIL_ID,
	R_XMAIL_FROM,
	R_ECEL,
	R_ECEL1,
	R_ECEL2,
	R_EXIM,
	R_EXIM_LOCAL,
	R_EXIM1,
	R_SUB_HELO,
	R_SUB_IDENT,
	R_EXIM2,
	R_EXIM3,
	R_EXIM_W1,
	R_EXIM_HELO,
	R_EXIM_IP,
	R_EXIM_BY,
	R_POSTFIX,
	R_POSTFIX1,
	R_POSTFIX2,
	R_SCALIX,
	R_SCALIX1,
	R_DOMINO,
	R_DOMINO1,
	R_WITH_HTTP,
	R_HTTP1,
	R_QMAIL_LDAP,
	R_SENDMAIL,
	R_IDENT_PFX,
	R_IDENT_AT,
	R_IMS,
	R_HELO_EQ2,
	R_ATTBI_UNKNOWN,
	R_ATTBI,
	R_IDENT_BRACKET,
	R_HOTMAIL,
	R_IP_START,
	R_QPSMTPD,
	R_LHLO,
	R_GMX,
	R_SMTPD,
	R_QMAIL,
	R_QMAIL1,
	R_QMAIL2,
	R_QMAIL3,
	R_QMAIL4,
	R_VIA_HTTP,
	R_VIA_HTTP1,
	R_SPACE_BRACKET,
	R_PAREN_HELO,
	R_BRACKET_BY,
	R_PAREN_IP_BY,
	R_MDAEMON,
	R_MDAEMON2,
	R_SENDMAIL_NOHELO,
	R_SENDMAIL2,
	R_IP_PORT,
	R_SENDMAIL_AUTH,
	R_FETCHER,
	R_QMAILISH1,
	R_QMAILISH2,
	R_HTTP_FOR,
	R_HTTP_FOR1,
	R_SMAP,
	R_SMAP1,
	R_SMAP2,
	R_POST,
	R_POST1,
	R_ARGO,
	R_ARGO1,
	R_SMTPL,
	R_BSMTP,
	R_BSMTP1,
	R_SPIKE,
	R_YAHOO_HELO,
	R_CGP_ACCOUNT,
	R_CGP,
	R_CGP1,
	R_CIPHERTRUST,
	R_IRONPORT,
	R_CONTENT_TECH,
	R_TWO_IPS,
	R_IP_BY_WITH,
	R_ATTBI2,
	R_FSECURE,
	R_IP_HELO,
	R_OEM,
	R_NODNS,
	R_MAILGATE,
	R_UNVERIFIED,
	R_IP_COMMENT,
	R_BRACKET_SUB,
	R_IDENT_IP_WITH,
	R_OBTUSE,
	R_YAHOO_LOGIN,
	R_XOIP,
	R_I_LOCAL_IDENT,
	R_I_LOCAL_ESMTP,
	R_I_AVG,
	R_I_UID,
	R_I_AT_BY,
	R_I_UNKNOWN_LOCAL,
	R_I_LOCALHOST,
	R_I_PAREN_LOCALHOST,
	R_I_IDENT_LOCALHOST,
	R_I_AUTH,
	R_I_UNIX,
	R_I_AMAZON,
	R_I_GROUPWISE,
	R_I_NONAME,
	R_QSCANNER,
	R_I_WITH_LOCAL,
	R_I_CYRUS,
	R_I_BY_WITH,
	R_I_WITH_BY,
	R_I_SENDGRID,
	R_I_OPENSMTPD,
	R_I_LSMTP,
	R_I_MAILENABLE,
	R_I_FACEBOOK,
	R_I_GMAILAPI,
	R_I_ID_ONLY,
	R_I_JETSEND,
	R_HELO_GUESS,
	R_SIMTA,
	R_NAVGW,
	R_SUBMIT,
	R_JQUEUE,
	R_ANY_BRACKET_IP,
	R_V4MAPPED,
	/* the authentication tokens and their guards */
	R_A_BY,
	R_A_RFC,
	R_A_GMAIL,
	R_A_GMAIL_TLS,
	R_A_COURIER,
	R_A_AUTHD,
	R_A_SENDMAIL,
	R_A_GMX,
	R_A_CP_GUARD,
	R_A_CP,
	R_A_POSTFIX,
	R_A_CGP_GUARD,
	R_A_CGP,
	R_A_DAV,
	R_A_VIA_HTTP,
	R_N
};

static const struct {
	const char *re;
	bool nocase;
} rx_def[R_N] = {
	[R_FROM_ANY] = {"^\\(?from ", true},
	[R_LOCAL_FOR] = {"\\bwith local for\\b", false},
	[R_FROM_BY_SEMI] = {"^from (\\S+) by [^\\s;]+ ?;", true},
	[R_BRACKET_V4] = {"^\\[[\\d.]+\\]$", false},
	[R_DATE] = {"[\\s;]+(?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\\d+ "
		    "(?:J(?:an|u[nl])|Feb|Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \\d+ \\d+:\\d+(?::\\d+)? \\S+$",
		    false},
	[R_ID] = {" id <?([^\\s<>;]{3,})", false},
	[R_HELO_EQ] = {"\\bhelo=([" HC "]+)(?:[^" HC "]|$)", false},
	[R_HELO_KW] = {"\\b(?:HELO|EHLO) ([" HC "]+)(?:[^" HC "]|$)", false},
	[R_BY] = {" by (\\S+)(?:[^-A-Za-z0-9\\;\\.]|$)", false},
	[R_ENVFROM] = {"(?:return-path:? |envelope-(?:sender|from)[ =])(\\S+)\\b", true},
	[R_SQUIRREL] = {" \\((?:SquirrelMail|NaSMail) authenticated user ", false},
	[R_SQUIRREL1] = {"(" IPA ")\\b(?![.-]).{10,80}by (\\S+) with HTTP", false},
	[R_AOL] = {"aol\\.com", false},
	[R_AOL_HTTP] = {"with HTTP \\(WebMailUI\\)", false},
	[R_AOL1] = {"(" IPA ") by (\\S+) \\(" IPA "\\) with HTTP \\(WebMailUI\\)", false},
	[R_SMTPSVC] = {" SMTPSVC", false},
	[R_SMTPSVC1] = {"^(\\S*) \\(\\[(" IPA ")\\][^\\)]{0,40}\\) by (\\S+) with Microsoft SMTPSVC", false},
	[R_SMTPSVC_PICKUP] = {"^mail pickup service by (\\S+) with Microsoft SMTPSVC$", false},
	[R_MSSMTP] = {" with (?:Microsoft SMTP Server|mapi id) (?:\\([^\\)]+\\) "
		      ")?\\d+\\.\\d+\\.\\d+\\.\\d+(?:$| )",
		      false},
	[R_MSSMTP1] = {"^(\\S+) \\(\\[?(" IPA ")(?:%[A-Z0-9._~-]*)?\\]?\\) by (\\S+) ", false},
	[R_XMAIL] = {"\\[XMail ", false},
	[R_XMAIL1] = {"^(\\S+) \\((\\[?" IPA "\\]?)(?::\\d+)\\) by (\\S+)(?: \\(\\S+\\))? with \\[XMail",
		      false},
	[R_XMAIL_ID] = {" id <(\\S+)>", false},
	[R_XMAIL_FROM] = {" from <(\\S+)>", false},
	[R_ECEL] = {"\\(ecelerity\\b", false},
	[R_ECEL1] = {"^\\(\\[(" IPA "):\\d+\\] helo=(\\S+)\\) by (\\S+) ", false},
	[R_ECEL2] = {"^\\S+ \\(\\[(" IPA "):\\d+\\]\\) by (\\S+) ", false},
	[R_EXIM] = {"Exim", false},
	[R_EXIM_LOCAL] = {"\\bwith local(?:-\\S+)? ", false},
	[R_EXIM1] = {"^\\[(" IPA ")\\] \\((.*?)\\) by (\\S+) ", false},
	[R_SUB_HELO] = {"helo=(\\S+)", false},
	[R_SUB_IDENT] = {"ident=(\\S*)", false},
	[R_EXIM2] = {"^(\\S+) \\(\\[(" IPA ")\\](.*?)\\) by (\\S+) ", false},
	[R_EXIM3] = {"^(\\S+) \\[(" IPA ")\\](:\\d+)? by (\\S+) ", false},
	[R_EXIM_W1] = {"^(\\S+) ", false},
	[R_EXIM_HELO] = {" \\((\\S+)\\) ", false},
	[R_EXIM_IP] = {" \\[(" IPA ")(?:\\.\\d+)?\\] ", false},
	[R_EXIM_BY] = {"by (\\S+) ", false},
	[R_POSTFIX] = {" \\(Postfix\\) with", false},
	[R_POSTFIX1] = {"^(\\S+) \\((\\S+) \\[(" IPA ")\\]\\) by (\\S+) ", false},
	[R_POSTFIX2] = {"^(\\S+) \\((\\S+)\\[(" IPA ")\\]\\) by (\\S+) ", false},
	[R_SCALIX] = {"\\(Scalix SMTP Relay", false},
	[R_SCALIX1] = {"^(\\S+) \\( ?(" IPA ")\\) by (\\S+)", false},
	[R_DOMINO] = {" \\(Lotus Domino ", false},
	[R_DOMINO1] = {"^(\\S+) \\(\\[(" IPA ")\\]\\) by (\\S+) \\(Lotus", false},
	[R_WITH_HTTP] = {"\\bwith HTTP\\b", false},
	[R_HTTP1] = {"^(" IPA ") \\(\\[" IPA "\\]\\) by (\\S+)", false},
	[R_QMAIL_LDAP] = {" by \\S+ \\(qmail-\\S+\\) with ", false},
	[R_SENDMAIL] = {"^(\\S+) \\((\\S+) \\[(" IPA ")\\].*\\) by (\\S+) \\(", false},
	[R_IDENT_PFX] = {"^IDENT:([^\\@]*)\\@", false},
	[R_IDENT_AT] = {"^([^\\@]*)\\@", false},
	[R_IMS] = {"^(\\S+) \\((\\S+) \\[(" IPA ")\\]\\) by (\\S+) with \\S+ \\(", false},
	[R_HELO_EQ2] = {"^(\\S+) \\(\\[(" IPA ")\\] helo=(\\S+)\\) by (\\S+) with ", false},
	[R_ATTBI_UNKNOWN] = {"^(\\S+) \\(<unknown\\S*>\\[(" IPA ")\\]\\) by (\\S+) ", false},
	[R_ATTBI] = {"^(\\S+) \\((\\S+\\.\\S+)\\[(" IPA ")\\]\\) by (\\S+) ", false},
	[R_IDENT_BRACKET] = {"^(\\S+) \\((\\S*)\\@\\[(" IPA ")\\].*\\) by (\\S+) \\(", false},
	[R_HOTMAIL] = {"by (\\S+\\.hotmail\\.msn\\.com) ", false},
	[R_IP_START] = {"^(" IPA ") ", false},
	[R_QPSMTPD] = {"^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((" IPA
		       ")\\) by (\\S+) \\(qpsmtpd\\/\\S+\\) with "
		       "(?:ESMTP|SMTP)",
		       false},
	[R_LHLO] = {"^(\\S+) \\(LHLO (\\S*)\\) \\((" IPA ")\\) by (\\S+) with LMTP", false},
	[R_GMX] = {"^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\[(" IPA
		   ")\\] by (\\S+) \\([^\\)]+\\) with (?:ESMTP|SMTP)",
		   false},
	[R_SMTPD] = {"^(\\S+) \\(\\[(" IPA ")\\]\\) by (\\S+) via smtpd \\(for \\S+\\) with SMTP\\(", false},
	[R_QMAIL] =
		{"^\\S+( \\((?:HELO|EHLO) \\S*\\))? \\((\\S+\\@)?\\[?" IPA
		 "\\]?\\)( \\(envelope-sender <\\S+>\\))? by \\S+( \\(.+\\))* with (.* )?(SMTP|QMQP)(?! id )",
		 false},
	[R_QMAIL1] = {"^(\\S+) \\((?:HELO|EHLO) ([^ \\(\\)]*)\\) \\((\\S*)\\@\\[?(" IPA
		      ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)",
		      false},
	[R_QMAIL2] = {"^(\\S+) \\((?:HELO|EHLO) ([^ \\(\\)]*)\\) \\(\\[?(" IPA
		      ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)",
		      false},
	[R_QMAIL3] = {"^(\\S+) \\((\\S*)\\@\\[?(" IPA ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)",
		      false},
	[R_QMAIL4] = {"^(\\S+) \\(\\[?(" IPA ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)", false},
	[R_VIA_HTTP] = {" via HTTP$", false},
	[R_VIA_HTTP1] = {"^\\[(" IPA ")\\] by (\\S+) via HTTP$", false},
	[R_SPACE_BRACKET] = {"^(\\S+) \\( \\[(" IPA ")\\]\\).*? by (\\S+) ", false},
	[R_PAREN_HELO] = {"^\\((\\S+) \\[(" IPA ")\\]\\) by (\\S+) ", false},
	[R_BRACKET_BY] = {"^\\[(" IPA ")\\] by (\\S+) ", false},
	[R_PAREN_IP_BY] = {"^\\(\\[?(" IPA ")\\]?\\) by (\\S+) ", false},
	[R_MDAEMON] = {"^(\\S+) \\[(" IPA ")\\] by (\\S+) \\[" IPA "\\] with ", false},
	[R_MDAEMON2] = {"^(\\S+) \\[\\((" IPA ")\\)\\] by (\\S+) \\(" IPA "\\) ", false},
	[R_SENDMAIL_NOHELO] = {"^(\\S+) \\(\\[(" IPA ")\\]\\) by (\\S+) \\(", false},
	[R_SENDMAIL2] = {"^(\\S+) \\((\\S+) \\[(" IPA ")\\]\\).*? by (\\S+)\\b", false},
	[R_IP_PORT] = {"^(\\S+) \\(\\[(" IPA ")(?:[.:]\\d+)?\\]\\).*? by (\\S+) ", false},
	[R_SENDMAIL_AUTH] = {"^(\\S+) \\((\\S+) \\[(" IPA
			     ")\\]\\)(?: \\(authenticated bits=\\d+\\))? by (\\S+) \\(",
			     false},
	[R_FETCHER] = {"with (?:POP3|IMAP)", false},
	[R_QMAILISH1] = {"^(\\S+) \\((?:HELO|EHLO) ([^\\)]*)\\) \\((\\S*@)?\\[?(" IPA ")\\]?\\).* by (\\S+) ",
			 false},
	[R_QMAILISH2] = {"^(\\S+) \\((\\S*@)?\\[?(" IPA ")\\]?\\).* by (\\S+) ", false},
	[R_HTTP_FOR] = {" with http for ", false},
	[R_HTTP_FOR1] = {"^\\[(" IPA ")\\] by (\\S+) with http for ", false},
	[R_SMAP] = {" via smap ", false},
	[R_SMAP1] = {"^(\\S+)\\((" IPA ")\\) by (\\S+) via smap ", false},
	[R_SMAP2] = {"^(\\S+)\\((" IPA "), (?:HELO|EHLO) (\\S*)\\) by (\\S+) via smap ", false},
	[R_POST] = {" \\(Post", false},
	[R_POST1] = {"^\\[(" IPA ")\\] by (\\S+) \\(Post", false},
	[R_ARGO] = {" \\(ArGoSoft", false},
	[R_ARGO1] = {"^\\[(" IPA ")\\] by (\\S+) \\(ArGoSoft", false},
	[R_SMTPL] = {"^(" IPA ") by (\\S+) \\((?:SMTPL|InterScan)\\b", false},
	[R_BSMTP] = {" with BSMTP", false},
	[R_BSMTP1] = {"^\\S+ by \\S+ with BSMTP", false},
	[R_SPIKE] = {"^(\\S+) \\((\\S+) \\[(" IPA ")\\]\\) by (\\S+) with ", false},
	[R_YAHOO_HELO] = {"^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((?:(\\S+)\\@)?(" IPA
			  ").*?\\) by (\\S+) with ",
			  false},
	[R_CGP_ACCOUNT] = {"^\\[(" IPA ")\\] \\((?:account \\S+ )?(?:HELO|EHLO) (\\S*)\\) by (\\S+) \\(",
			   false},
	[R_CGP] = {" \\(CommuniGate Pro", false},
	[R_CGP1] = {"^(\\S+) \\(\\[(" IPA ")\\] verified\\) by (\\S+) \\(", false},
	[R_CIPHERTRUST] = {"^\\(\\[(" IPA ")\\]\\) by (\\S+) with ", false},
	[R_IRONPORT] = {"^([^\\d]\\S+) \\((" IPA ")\\) by (\\S+) ", false},
	[R_CONTENT_TECH] = {"^\\S+ \\(\\S+\\) by \\S+ \\(Content Technologies ", false},
	[R_TWO_IPS] = {"^(\\S+) \\(\\[(" IPA ")\\] \\[(\\S+)\\]\\) by (\\S+) with ", false},
	[R_IP_BY_WITH] = {"^(" IPA ") by (\\S+) with ", false},
	[R_ATTBI2] = {"^(\\S+) \\((\\S+)\\[(" IPA ")\\]\\) by (\\S+) ", false},
	[R_FSECURE] = {"^\\[(" IPA ")\\]\\S+ \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ", false},
	[R_IP_HELO] = {"^(" IPA ") \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ", false},
	[R_OEM] = {"^(\\S+) \\[(" IPA ")\\] by (\\S+) ", false},
	[R_NODNS] = {"^(\\S+)\\((" IPA ")\\) by (\\S+) ", false},
	[R_MAILGATE] = {"^\\[(" IPA ")\\] by (\\S+) \\(MailGate ", false},
	[R_UNVERIFIED] = {"^(\\S+) \\(unverified \\[(" IPA ")\\]\\) by (\\S+) ", false},
	[R_IP_COMMENT] = {"^(" IPA ") \\([A-Za-z][^\\)]+\\) by (\\S+) with ", false},
	[R_BRACKET_SUB] = {"^\\[(" IPA ")\\] \\(([^\\)]+)\\) by (\\S+) ", false},
	[R_IDENT_IP_WITH] = {"^(\\S+) \\((?:\\S+\\@)?(" IPA ")\\) by (\\S+) with ", false},
	[R_OBTUSE] = {"^(\\S+)\\((" IPA ")\\)(?:, claiming to be \"(\\S+)\")? via \\S+ by (\\S+),", false},
	[R_YAHOO_LOGIN] = {"^(\\S+) \\((\\S+)@(" IPA ") with login\\) by (\\S+\\.yahoo\\.com) with SMTP",
			   false},
	[R_XOIP] = {"^X-Originating-IP: (" IPA ")$", false},
	[R_I_LOCAL_IDENT] = {"^\\S+ \\([^\\s\\@]+\\@" LH "\\) by \\S+ \\(", false},
	[R_I_LOCAL_ESMTP] = {"^\\S+ \\S+ by \\S+ with local-e?smtp ", false},
	[R_I_AVG] = {"^127\\.0\\.0\\.1 \\(AVG SMTP \\S+ \\[\\S+\\]\\)", false},
	[R_I_UID] = {"^\\S+\\@\\S+ by \\S+ by uid \\S+ ", false},
	[R_I_AT_BY] = {"^\\S+\\@\\S+ by \\S+ ", false},
	[R_I_UNKNOWN_LOCAL] = {"^Unknown\\/Local \\(", false},
	[R_I_LOCALHOST] = {"^" LH " \\((?:\\S+\\@)?" LH "[\\)\\[]", false},
	[R_I_PAREN_LOCALHOST] = {"^\\S+ \\((?:\\S+\\@)?" LH "\\) ", false},
	[R_I_IDENT_LOCALHOST] = {"^\\S+ \\(\\S+\\@\\S+ \\[" LH "\\]\\) ", false},
	[R_I_AUTH] = {"^\\(AUTH: \\S+\\) by \\S+ with ", false},
	[R_I_UNIX] = {"^localhost \\(localhost \\[\\[UNIX: localhost\\]\\]\\) by ", false},
	[R_I_AMAZON] = {"^\\S+\\.amazon\\.com by \\S+\\.amazon\\.com with ESMTP \\(peer crosscheck: ", false},
	[R_I_GROUPWISE] = {"^[^\\.]+ by \\S+ with Novell_GroupWise", false},
	[R_I_NONAME] = {"^no\\.name\\.available by \\S+ via smtpd \\(for ", false},
	[R_QSCANNER] = {"^\\S+ by \\S+ \\(.{0,100}\\) with qmail-scanner", false},
	[R_I_WITH_LOCAL] = {"^\\S+ by \\S+ with local", false},
	[R_I_CYRUS] =
		{"^\\S+ \\(\\[unix socket\\]\\) by \\S+ \\(Cyrus v[0-9]*?\\.[0-9]*?\\.[0-9]*?\\) with LMTPA",
		 false},
	[R_I_BY_WITH] = {"^\\S+ by \\S+ (?:with|via|for|\\()", false},
	[R_I_WITH_BY] = {"^\\S+ (?:(?:with|via|for) \\S+|\\(unverified\\)) by\\b", false},
	[R_I_SENDGRID] = {"^\\S+ \\(unknown\\) by \\S+ \\(SG\\) with \\b", false},
	[R_I_OPENSMTPD] = {"^\\S+ \\(\\S+ \\[local\\]\\) by \\S+ \\(OpenSMTPD\\) with \\b", false},
	[R_I_LSMTP] = {"\\(LSMTP for", false},
	[R_I_MAILENABLE] = {"^\\(\\[" LH "\\]\\) with MailEnable ", false},
	[R_I_FACEBOOK] = {"^facebook\\.com \\([^\\)]+\\) by facebook\\.com with Thrift id \\S+$", false},
	[R_I_GMAILAPI] = {"^\\S+ named \\S+ by gmailapi\\.google\\.com with HTTPREST$", false},
	[R_I_ID_ONLY] = {"^\\S+ id \\S+$", false},
	[R_I_JETSEND] = {"^\\[<.*? \\(Jetsend", false},
	[R_HELO_GUESS] = {"^(\\S+)[^-A-Za-z0-9\\.]", false},
	[R_SIMTA] = {"^(\\S+) \\((\\S+) \\[(" IPA
		     ")\\]\\) BY (\\S+) (?:\\([^\\)]+\\) WITH SMTP )?ID <?(\\S+?)>?"
		     "(?: FOR <[^>]+>)?$",
		     false},
	[R_NAVGW] = {"^(\\S*) \\[(" IPA ")\\]\\) by (\\S+) \\(NAVGW .*?\\) with ", false},
	[R_SUBMIT] = {"^\\S+\\@localhost\\) by \\S+ ", false},
	[R_JQUEUE] = {"^[^\\s\\@]+\\@[^)]+\\) by \\S+\\(jqueuemail\\) id [^\\s;]+", false},
	[R_ANY_BRACKET_IP] = {"\\[(" IPA ")\\]", false},
	[R_V4MAPPED] = {"^0*:0*:(?:0*:)*ffff:(\\d+\\.\\d+\\.\\d+\\.\\d+)$", true},
	[R_A_BY] = {" by ", false},
	/* RFC 3848 and 6531 (ESMTPA, ESMTPSA, LMTPA, ...), ASMTP, webmail */
	[R_A_RFC] = {" with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)", true},
	/* Gmail's submission, which says ESMTPS */
	[R_A_GMAIL] = {" by mx\\.google\\.com with ESMTPS id "
		       "[a-z0-9]{1,4}sm[0-9]{2,9}[a-z]{3}\\.[0-9]{1,3}\\.[0-9]{4}\\."
		       "(?:[0-6][0-9]\\.){4}[0-6][0-9]",
		       false},
	[R_A_GMAIL_TLS] = {"\\(version=([^ ]+) cipher=([^\\)]+)\\)", false},
	[R_A_COURIER] = {"^from .*?(?:\\]\\)|\\)\\]) \\(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) \\S+(?:, "
			 ".*?)?\\) by ",
			 false},
	/* Sendmail, MDaemon, webmail servers */
	[R_A_AUTHD] = {"authenticated", false},
	[R_A_SENDMAIL] = {"^from .*?(?:\\](?: \\([^)]*\\))?\\)|\\)\\]) .*?\\(.*?authenticated.*?\\).*? by",
			  false},
	[R_A_GMX] =
		{"from \\S* \\((?:HELO|EHLO) (\\S*)\\) \\[([0-9a-fA-F:.]+)\\] by (mail\\.gmx\\.(?:net|com)) "
		 "\\([^\\)]+\\) with ((?:ESMTP|SMTP))",
		 false},
	/* Critical Path */
	[R_A_CP_GUARD] = {" \\(authenticated as ", false},
	[R_A_CP] = {"\\) by .+ \\(\\d{1,2}\\.\\d\\.\\d{3}(?:\\.\\d{1,3})?\\) \\(authenticated as .+\\) id ",
		    false},
	/* Postfix with smtpd_sasl_authenticated_header = yes */
	[R_A_POSTFIX] = {"\\) \\(Authenticated sender: \\S+\\) by \\S+ \\(([^\\)]+)\\) with ", false},
	/* CommuniGate Pro */
	[R_A_CGP_GUARD] = {" \\(account ", false},
	[R_A_CGP] = {"CommuniGate Pro (HTTP|SMTP|XIMSS|IMAP)", false},
	/* Microsoft Exchange */
	[R_A_DAV] = {" with Microsoft Exchange Server HTTP-DAV\\b", false},
	/* "(via HTTP)" */
	[R_A_VIA_HTTP] = {" \\(via (HTTP.?)\\)(?: |;|$)", true},
};

static pcre2_code *rx[R_N];
static pcre2_match_context *rx_mctx;
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static void rx_init(void)
{
	for (int i = 0; i < R_N; i++) {
		int err;
		PCRE2_SIZE off;
		rx[i] = pcre2_compile((PCRE2_SPTR)rx_def[i].re, PCRE2_ZERO_TERMINATED,
				      rx_def[i].nocase ? PCRE2_CASELESS : 0, &err, &off, NULL);
		if (!rx[i])
			abort(); /* fixed patterns: a bug */
		pcre2_jit_compile(rx[i], PCRE2_JIT_COMPLETE);
	}
	rx_mctx = pcre2_match_context_create(NULL);
	if (!rx_mctx)
		abort();
	pcre2_set_match_limit(rx_mctx, 100000);
	pcre2_set_depth_limit(rx_mctx, 10000);
}

/* One parse: the subject of the last match and its groups. */
struct rcv {
	const char *subj;
	pcre2_match_data *md;
	bool limit; /* a match gave up at its limit */
};

/* Pattern id against s[0..n); a match that reaches its limit counts as
 * none and marks the parse. */
static bool mt(struct rcv *c, int id, const char *s, size_t n)
{
	int rc = pcre2_match(rx[id], (PCRE2_SPTR)s, n, 0, 0, c->md, rx_mctx);
	if (rc >= 0) {
		c->subj = s;
		return true;
	}
	if (rc != PCRE2_ERROR_NOMATCH)
		c->limit = true;
	return false;
}

static bool m(struct rcv *c, int id, const char *s)
{
	return mt(c, id, s, strlen(s));
}

/* Whether group g took part in the last match. */
static bool gset(const struct rcv *c, int g)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
	return g < (int)pcre2_get_ovector_count(c->md) && ov[2 * g] != PCRE2_UNSET;
}

/* Group g of the last match into out (truncated to n), "" when unset. */
static void grp(const struct rcv *c, int g, char *out, size_t n)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
	out[0] = 0;
	if (!gset(c, g))
		return;
	size_t l = ov[2 * g + 1] - ov[2 * g];
	if (l >= n)
		l = n - 1;
	memcpy(out, c->subj + ov[2 * g], l);
	out[l] = 0;
}

#define G(c, g, f) grp(c, g, f, sizeof(f))

/* Removes the whole of the last match from s (a string the match was run
 * on). */
static void cut_match(const struct rcv *c, char *s)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
	memmove(s + ov[0], s + ov[1], strlen(s + ov[1]) + 1);
}

/* Exim's "(helo=X ident=Y)" comment: each taken out as it is found. */
static void exim_sub(struct rcv *c, char *sub, struct relay *rl)
{
	if (m(c, R_SUB_HELO, sub)) {
		G(c, 1, rl->helo);
		cut_match(c, sub);
	}
	if (m(c, R_SUB_IDENT, sub)) {
		G(c, 1, rl->ident);
		cut_match(c, sub);
	}
}

/* Characters that cannot stand in the relay string become "!". */
static void strip_chars(char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s) || strchr("#[]()<>|", *s))
			*s = '!';
}

static void clean_envfrom(char *e)
{
	size_t i = 0;
	while (isspace((unsigned char)e[i]))
		i++;
	while (e[i] == '<')
		i++;
	memmove(e, e + i, strlen(e + i) + 1);
	size_t n = strlen(e);
	while (n && isspace((unsigned char)e[n - 1]))
		n--;
	while (n && e[n - 1] == '>')
		n--;
	e[n] = 0;
	strip_chars(e);
}

/* The field clean-up of a parsed line. */
static void finish(struct rcv *c, struct relay *rl)
{
	size_t n = strlen(rl->rdns);
	while (n && rl->rdns[n - 1] == '.')
		rl->rdns[--n] = 0;
	if (strcasecmp(rl->rdns, "unknown") == 0 || rl->rdns[0] == '[')
		rl->rdns[0] = 0;
	char *ip = rl->ip;
	if (strncasecmp(ip, "ipv6:", 5) == 0)
		memmove(ip, ip + 5, strlen(ip + 5) + 1);
	if (ip[0] == '[')
		memmove(ip, ip + 1, strlen(ip));
	n = strlen(ip);
	if (n && ip[n - 1] == ']')
		ip[--n] = 0;
	char *pct = strrchr(ip, '%');
	if (pct && strspn(pct + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-") ==
			   strlen(pct + 1))
		*pct = 0;
	if (m(c, R_V4MAPPED, ip)) {
		char v4[64];
		G(c, 1, v4);
		snprintf(ip, sizeof(rl->ip), "%s", v4);
	}
	n = strlen(rl->by);
	if (n && rl->by[n - 1] == ';')
		rl->by[n - 1] = 0;
	strip_chars(rl->ip);
	strip_chars(rl->rdns);
	strip_chars(rl->helo);
	strip_chars(rl->by);
	strip_chars(rl->ident);
	clean_envfrom(rl->envfrom);
}

/* The tokens by which Received.pm knows a relay that authenticated its
 * client, in its order (the first that holds wins): two patterns that must
 * both match (first -1: the second alone), auth= from the second's groups:
 * "$1" its first group, else a fixed name or a format of the groups. */
static const struct {
	int first, second;
	const char *name;
} auth_tab[] = {
	{R_A_BY, R_A_RFC, "$1"},      {R_A_GMAIL, R_A_GMAIL_TLS, "gmail"},
	{-1, R_A_COURIER, "$1"},      {R_A_AUTHD, R_A_SENDMAIL, "Sendmail"},
	{-1, R_A_GMX, "gmx"},	      {R_A_CP_GUARD, R_A_CP, "CriticalPath"},
	{-1, R_A_POSTFIX, "postfix"}, {R_A_CGP_GUARD, R_A_CGP, "Communigate"},
	{-1, R_A_DAV, "HTTP-DAV"},    {R_A_BY, R_A_VIA_HTTP, "$1"},
};

/* auth= of the Received value w (from "from ..."), "" when none. */
static void relay_auth(struct rcv *c, const char *w, char *auth, size_t n)
{
	auth[0] = 0;
	for (size_t i = 0; i < sizeof(auth_tab) / sizeof(auth_tab[0]); i++) {
		if (auth_tab[i].first >= 0 && !m(c, auth_tab[i].first, w))
			continue;
		if (!m(c, auth_tab[i].second, w))
			continue;
		const char *name = auth_tab[i].name;
		char a[48], b[48];
		if (strcmp(name, "$1") == 0) {
			grp(c, 1, auth, n);
		} else if (strcmp(name, "gmail") == 0) {
			G(c, 1, a);
			G(c, 2, b);
			snprintf(auth, n, "GMail - transport=%s cipher=%s", a, b);
		} else if (strcmp(name, "gmx") == 0) {
			G(c, 4, a);
			G(c, 3, b);
			snprintf(auth, n, "GMX (%s / %s)", a, b);
		} else if (strcmp(name, "postfix") == 0) {
			G(c, 1, a);
			if (strcmp(a, "Postfix") == 0)
				snprintf(auth, n, "Postfix");
			else
				snprintf(auth, n, "Postfix (%s)", a);
		} else {
			snprintf(auth, n, "%s", name);
		}
		return;
	}
}

/* Field f of the relay from group g of the last match. */
#define SET(f, g) G(c, g, rl->f)

/* The fields of the last match's groups 1, 2, ... in order, one letter
 * each: h helo, r rdns, i ip, b by, d ident, e envfrom, n id, x none. */
static void take(struct rcv *c, struct relay *rl, const char *order)
{
	for (int g = 1; order[g - 1]; g++)
		switch (order[g - 1]) {
		case 'h':
			SET(helo, g);
			break;
		case 'r':
			SET(rdns, g);
			break;
		case 'i':
			SET(ip, g);
			break;
		case 'b':
			SET(by, g);
			break;
		case 'd':
			SET(ident, g);
			break;
		case 'e':
			SET(envfrom, g);
			break;
		case 'n':
			SET(id, g);
			break;
		}
}

static int parse(struct rcv *c, char *w, struct relay *rl, int *kind)
{
	/* white space runs as one space, none at the ends */
	size_t n = 0;
	for (size_t k = 0; w[k]; k++) {
		char ch = isspace((unsigned char)w[k]) ? ' ' : w[k];
		if (ch == ' ' && (n == 0 || w[n - 1] == ' '))
			continue;
		w[n++] = ch;
	}
	if (n && w[n - 1] == ' ')
		n--;
	w[n] = 0;
	/* a stray semicolon at the end */
	while (n && w[n - 1] == ';') {
		w[--n] = 0;
		if (n && isspace((unsigned char)w[n - 1]))
			w[--n] = 0;
	}
	if (!m(c, R_FROM_ANY, w))
		return 0;
	if (m(c, R_LOCAL_FOR, w))
		return 0;
	if (m(c, R_FROM_BY_SEMI, w)) {
		char f1[256];
		G(c, 1, f1);
		if (!m(c, R_BRACKET_V4, f1))
			return 0;
	}
	/* the date at the end */
	if (m(c, R_DATE, w)) {
		cut_match(c, w);
	}
	char *pb = strstr(w, ")by ");
	if (pb) {
		memmove(pb + 2, pb + 1, strlen(pb + 1) + 1);
		pb[1] = ' ';
	}
	if (m(c, R_ID, w))
		SET(id, 1);
	if (m(c, R_HELO_EQ, w) || m(c, R_HELO_KW, w))
		SET(helo, 1);
	if (m(c, R_BY, w))
		SET(by, 1);
	relay_auth(c, w, rl->auth, sizeof(rl->auth));

	bool looked = false;
	char *s;
	if (strncmp(w, "from ", 5) == 0) {
		s = w + 5;
		if (m(c, R_ENVFROM, s))
			SET(envfrom, 1);
		if (m(c, R_SQUIRREL, s) && m(c, R_SQUIRREL1, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_AOL, s) && m(c, R_AOL_HTTP, s) && m(c, R_AOL1, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_SMTPSVC, s)) {
			if (m(c, R_SMTPSVC1, s)) {
				take(c, rl, "hib");
				goto enough;
			}
			if (m(c, R_SMTPSVC_PICKUP, s))
				return 0;
		} else if (m(c, R_MSSMTP, s)) {
			if (m(c, R_MSSMTP1, s)) {
				take(c, rl, "hib");
				rl->id[0] = 0;
				goto enough;
			}
		} else if (m(c, R_XMAIL, s)) {
			if (m(c, R_XMAIL1, s)) {
				take(c, rl, "hib");
				if (m(c, R_XMAIL_ID, s))
					SET(id, 1);
				if (m(c, R_XMAIL_FROM, s))
					SET(envfrom, 1);
				goto enough;
			}
		} else if (m(c, R_ECEL, s)) {
			if (m(c, R_ECEL1, s)) {
				take(c, rl, "ihb");
				goto enough;
			}
			if (m(c, R_ECEL2, s)) {
				take(c, rl, "ib");
				goto enough;
			}
		} else if (m(c, R_EXIM, s)) {
			char sub[256];
			if (m(c, R_EXIM_LOCAL, s))
				return 0;
			if (m(c, R_EXIM1, s)) {
				SET(ip, 1);
				G(c, 2, sub);
				SET(by, 3);
				exim_sub(c, sub, rl);
				goto enough;
			}
			if (m(c, R_EXIM2, s)) {
				take(c, rl, "ri");
				G(c, 3, sub);
				SET(by, 4);
				snprintf(rl->helo, sizeof(rl->helo), "%s", rl->rdns);
				exim_sub(c, sub, rl);
				goto enough;
			}
			if (m(c, R_EXIM3, s)) {
				SET(rdns, 1);
				SET(ip, 2);
				SET(helo, 1);
				SET(by, 4);
				goto enough;
			}
			if (m(c, R_EXIM_W1, s))
				SET(rdns, 1);
			if (m(c, R_EXIM_HELO, s))
				SET(helo, 1);
			if (m(c, R_EXIM_IP, s))
				SET(ip, 1);
			if (m(c, R_EXIM_BY, s)) {
				SET(by, 1);
				if (rl->ip[0])
					goto enough;
			}
		} else if (m(c, R_POSTFIX, s)) {
			if (m(c, R_POSTFIX1, s) || m(c, R_POSTFIX2, s)) {
				looked = true;
				take(c, rl, "hrib");
				if (strcmp(rl->rdns, "unknown") == 0)
					rl->rdns[0] = 0;
				goto enough;
			}
		} else if (m(c, R_SCALIX, s)) {
			if (m(c, R_SCALIX1, s)) {
				take(c, rl, "hib");
				goto enough;
			}
		} else if (m(c, R_DOMINO, s)) {
			if (m(c, R_DOMINO1, s)) {
				take(c, rl, "hib");
				goto enough;
			}
		}
		if (m(c, R_WITH_HTTP, s) && m(c, R_HTTP1, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (!m(c, R_QMAIL_LDAP, s) && m(c, R_SENDMAIL, s)) {
			looked = true;
			take(c, rl, "hrib");
			if (m(c, R_IDENT_PFX, rl->rdns)) {
				SET(ident, 1);
				cut_match(c, rl->rdns);
			}
			if (m(c, R_IDENT_AT, rl->rdns)) {
				SET(ident, 1);
				cut_match(c, rl->rdns);
			}
			goto enough;
		}
		if (m(c, R_IMS, s)) {
			looked = true;
			take(c, rl, "hrib");
			goto enough;
		}
		if (m(c, R_HELO_EQ2, s)) {
			take(c, rl, "rihb");
			goto enough;
		}
		if (m(c, R_ATTBI_UNKNOWN, s)) {
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_ATTBI, s)) {
			looked = true;
			take(c, rl, "hrib");
			goto enough;
		}
		if (m(c, R_IDENT_BRACKET, s)) {
			looked = true;
			take(c, rl, "hdib");
			goto enough;
		}
		if (m(c, R_HOTMAIL, s)) {
			SET(by, 1);
			if (m(c, R_IP_START, s))
				SET(ip, 1);
			goto enough;
		}
		if (m(c, R_QPSMTPD, s) || m(c, R_LHLO, s) || m(c, R_GMX, s)) {
			take(c, rl, "rhib");
			goto enough;
		}
		if (m(c, R_SMTPD, s)) {
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_QMAIL, s)) {
			if (m(c, R_QMAIL1, s)) {
				take(c, rl, "rhdixb");
			} else if (m(c, R_QMAIL2, s)) {
				take(c, rl, "rhixb");
			} else if (m(c, R_QMAIL3, s)) {
				SET(helo, 1);
				SET(rdns, 1);
				SET(ident, 2);
				SET(ip, 3);
				SET(by, 5);
			} else if (m(c, R_QMAIL4, s)) {
				SET(helo, 1);
				SET(rdns, 1);
				SET(ip, 2);
				SET(by, 4);
			}
			if (strcmp(rl->rdns, "unknown") != 0)
				looked = true;
			else
				rl->rdns[0] = 0;
			goto enough;
		}
		if (m(c, R_VIA_HTTP, s) && m(c, R_VIA_HTTP1, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_SPACE_BRACKET, s)) {
			take(c, rl, "xib");
			goto enough;
		}
		if (m(c, R_PAREN_HELO, s)) {
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_BRACKET_BY, s) || m(c, R_PAREN_IP_BY, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_MDAEMON, s)) {
			looked = true;
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_MDAEMON2, s)) {
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_SENDMAIL_NOHELO, s)) {
			looked = true;
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_SENDMAIL2, s)) {
			char r2[256];
			G(c, 2, r2);
			/* couriertcpd's "softdnserr": no lookup */
			if (strcmp(r2, "softdnserr") != 0) {
				looked = true;
				snprintf(rl->rdns, sizeof(rl->rdns), "%s", r2);
			}
			take(c, rl, "hxib");
			goto enough;
		}
		if (m(c, R_IP_PORT, s)) {
			looked = true;
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_SENDMAIL_AUTH, s)) {
			looked = true;
			take(c, rl, "hrib");
			goto enough;
		}
		if (m(c, R_FETCHER, s)) {
			*kind = RCV_FETCHER;
			return 0;
		}
		if (m(c, R_QMAILISH1, s)) {
			looked = true;
			take(c, rl, "rhdib");
			size_t l = strlen(rl->ident);
			if (l && rl->ident[l - 1] == '@')
				rl->ident[l - 1] = 0;
			goto enough;
		}
		if (m(c, R_QMAILISH2, s)) {
			looked = true;
			SET(rdns, 1);
			SET(helo, 1);
			SET(ident, 2);
			SET(ip, 3);
			SET(by, 4);
			size_t l = strlen(rl->ident);
			if (l && rl->ident[l - 1] == '@')
				rl->ident[l - 1] = 0;
			goto enough;
		}
		if ((m(c, R_HTTP_FOR, s) && m(c, R_HTTP_FOR1, s))) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_SMAP, s) && m(c, R_SMAP1, s)) {
			looked = true;
			take(c, rl, "rib");
			goto enough;
		}
		if (m(c, R_SMAP2, s)) {
			looked = true;
			take(c, rl, "rihb");
			goto enough;
		}
		if ((m(c, R_POST, s) && m(c, R_POST1, s)) || (m(c, R_ARGO, s) && m(c, R_ARGO1, s)) ||
		    m(c, R_SMTPL, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_BSMTP, s) && m(c, R_BSMTP1, s))
			return 0;
		if (m(c, R_SPIKE, s)) {
			looked = true;
			take(c, rl, "hrib");
			goto enough;
		}
		if (m(c, R_YAHOO_HELO, s)) {
			looked = true;
			take(c, rl, "rhxib");
			if (gset(c, 3))
				SET(ident, 3);
			goto enough;
		}
		if (m(c, R_CGP_ACCOUNT, s)) {
			take(c, rl, "ihb");
			goto enough;
		}
		if (m(c, R_CGP, s) && m(c, R_CGP1, s)) {
			looked = true;
			SET(rdns, 1);
			SET(helo, 1);
			SET(ip, 2);
			SET(by, 3);
			goto enough;
		}
		if (m(c, R_CIPHERTRUST, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_IRONPORT, s)) {
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_CONTENT_TECH, s))
			return 0;
		if (m(c, R_TWO_IPS, s)) {
			take(c, rl, "hixb");
			goto enough;
		}
		if (m(c, R_IP_BY_WITH, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_ATTBI2, s)) {
			looked = true;
			take(c, rl, "hrib");
			goto enough;
		}
		if (m(c, R_FSECURE, s) || m(c, R_IP_HELO, s)) {
			take(c, rl, "ihb");
			goto enough;
		}
		if (m(c, R_OEM, s)) {
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_NODNS, s)) {
			take(c, rl, "rib");
			goto enough;
		}
		if (m(c, R_MAILGATE, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_UNVERIFIED, s)) {
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_IP_COMMENT, s)) {
			take(c, rl, "ib");
			goto enough;
		}
		if (m(c, R_BRACKET_SUB, s)) {
			char sub[256];
			SET(ip, 1);
			G(c, 2, sub);
			SET(by, 3);
			exim_sub(c, sub, rl);
			goto enough;
		}
		if (m(c, R_IDENT_IP_WITH, s)) {
			take(c, rl, "rib");
			goto enough;
		}
		if (m(c, R_OBTUSE, s)) {
			take(c, rl, "rihb");
			if (strcmp(rl->rdns, "UNKNOWN") != 0)
				looked = true;
			goto enough;
		}
		if (m(c, R_YAHOO_LOGIN, s)) {
			take(c, rl, "hxib");
			goto enough;
		}
		if (m(c, R_XOIP, s)) {
			SET(ip, 1);
			rl->by[0] = 0;
			goto enough;
		}
		/* handovers known to carry nothing to use */
		static const int ignore[] = {
			R_I_LOCAL_IDENT,     R_I_LOCAL_ESMTP,	R_I_AVG,       R_I_UID,
			R_I_AT_BY,	     R_I_UNKNOWN_LOCAL, R_I_LOCALHOST, R_I_PAREN_LOCALHOST,
			R_I_IDENT_LOCALHOST, R_I_AUTH,		R_I_UNIX,      R_I_AMAZON,
			R_I_GROUPWISE,	     R_I_NONAME,
		};
		for (size_t k = 0; k < sizeof(ignore) / sizeof(ignore[0]); k++)
			if (m(c, ignore[k], s))
				return 0;
		if (m(c, R_QSCANNER, s)) {
			/* qmail-scanner's own line: its envelope sender
			 * belongs to the next (older) handover */
			clean_envfrom(rl->envfrom);
			*kind = RCV_QSCANNER;
			return 0;
		}
		static const int ignore2[] = {
			R_I_WITH_LOCAL, R_I_CYRUS,     R_I_BY_WITH, R_I_WITH_BY,
			R_I_SENDGRID,	R_I_OPENSMTPD, R_I_LSMTP,   R_I_MAILENABLE,
			R_I_FACEBOOK,	R_I_GMAILAPI,  R_I_ID_ONLY, R_I_JETSEND,
		};
		for (size_t k = 0; k < sizeof(ignore2) / sizeof(ignore2[0]); k++)
			if (m(c, ignore2[k], s))
				return 0;
		if (!rl->helo[0] && m(c, R_HELO_GUESS, s))
			SET(helo, 1);
	} else if (strncmp(w, "FROM ", 5) == 0) {
		s = w + 5;
		if (m(c, R_SIMTA, s)) {
			looked = true;
			take(c, rl, "hribn");
			if (strcmp(rl->rdns, "unverified") == 0)
				rl->rdns[0] = 0;
			goto enough;
		}
	} else if (strncmp(w, "(from ", 6) == 0) {
		s = w + 6;
		if (m(c, R_NAVGW, s)) {
			take(c, rl, "hib");
			goto enough;
		}
		if (m(c, R_SUBMIT, s) || m(c, R_JQUEUE, s))
			return 0;
	} else {
		s = w;
	}
	if (!rl->ip[0] && m(c, R_ANY_BRACKET_IP, s))
		SET(ip, 1);
	if (!rl->ip[0] || !rl->by[0])
		return -1;
enough:
	rl->looked_up = looked;
	finish(c, rl);
	return 1;
}

int received_parse(const char *v, struct relay *rl, int *kind)
{
	pthread_once(&rx_once, rx_init);
	memset(rl, 0, sizeof(*rl));
	*kind = RCV_NONE;
	size_t n = strlen(v);
	char *w = malloc(n + 2);
	struct rcv c = {.md = pcre2_match_data_create(16, NULL)};
	if (!w || !c.md) {
		free(w);
		pcre2_match_data_free(c.md);
		return -1;
	}
	memcpy(w, v, n + 1);
	int rc = parse(&c, w, rl, kind);
	free(w);
	pcre2_match_data_free(c.md);
	if (c.limit) {
		memset(rl, 0, sizeof(*rl));
		*kind = RCV_NONE;
		return -1;
	}
	return rc;
}
