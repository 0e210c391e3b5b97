/*
 * mproto.h - the milter wire protocol (version 6, as Postfix speaks it):
 * framing, strict decoders for every MTA packet, the per-stage macro store
 * with libmilter's clearing and lookup rules, libmilter's command state
 * machine, and encoders for replies and modifications. No I/O and no
 * threads: the native engine (engine.c) and the fuzz target
 * (tests/fuzz/fuzz_milter.c) both use it. The protocol constants are
 * below (libmilter's names and values; filterd builds without libmilter).
 */
#ifndef FILTERD_MPROTO_H
#define FILTERD_MPROTO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sift.h"

/* Protocol constants: the wire values of Sendmail's <libmilter/mfdef.h>,
 * under the same names, defined here so that the native engine builds
 * without libmilter. When filterd is built with libmilter, mfdef_check.c
 * checks at compile time that every one equals the header's. */
/* versions and masks */
#define SMFI_PROT_VERSION 6
#define SMFI_V1_ACTS	  0x0000000FL
#define SMFI_V2_ACTS	  0x0000003FL
#define SMFI_CURR_ACTS	  0x000001FFL
/* address families (connect packet) */
#define SMFIA_UNKNOWN 'U'
#define SMFIA_UNIX    'L'
#define SMFIA_INET    '4'
#define SMFIA_INET6   '6'
/* commands (MTA to filter) */
#define SMFIC_ABORT   'A'
#define SMFIC_BODY    'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO   'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO    'H'
#define SMFIC_QUIT_NC 'K'
#define SMFIC_HEADER  'L'
#define SMFIC_MAIL    'M'
#define SMFIC_EOH     'N'
#define SMFIC_OPTNEG  'O'
#define SMFIC_QUIT    'Q'
#define SMFIC_RCPT    'R'
#define SMFIC_DATA    'T'
#define SMFIC_UNKNOWN 'U'
/* replies (filter to MTA) */
#define SMFIR_ADDRCPT	  '+'
#define SMFIR_DELRCPT	  '-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN	  '4'
#define SMFIR_ACCEPT	  'a'
#define SMFIR_REPLBODY	  'b'
#define SMFIR_CONTINUE	  'c'
#define SMFIR_DISCARD	  'd'
#define SMFIR_CHGFROM	  'e'
#define SMFIR_CONN_FAIL	  'f'
#define SMFIR_ADDHEADER	  'h'
#define SMFIR_INSHEADER	  'i'
#define SMFIR_SETSYMLIST  'l'
#define SMFIR_CHGHEADER	  'm'
#define SMFIR_PROGRESS	  'p'
#define SMFIR_QUARANTINE  'q'
#define SMFIR_REJECT	  'r'
#define SMFIR_SKIP	  's'
#define SMFIR_TEMPFAIL	  't'
#define SMFIR_REPLYCODE	  'y'
/* protocol option bits (option negotiation) */
#define SMFIP_NOCONNECT	  0x00000001L
#define SMFIP_NOHELO	  0x00000002L
#define SMFIP_NOMAIL	  0x00000004L
#define SMFIP_NORCPT	  0x00000008L
#define SMFIP_NOBODY	  0x00000010L
#define SMFIP_NOHDRS	  0x00000020L
#define SMFIP_NOEOH	  0x00000040L
#define SMFIP_NR_HDR	  0x00000080L
#define SMFIP_NOUNKNOWN	  0x00000100L
#define SMFIP_NODATA	  0x00000200L
#define SMFIP_SKIP	  0x00000400L
#define SMFIP_RCPT_REJ	  0x00000800L
#define SMFIP_NR_CONN	  0x00001000L
#define SMFIP_NR_HELO	  0x00002000L
#define SMFIP_NR_MAIL	  0x00004000L
#define SMFIP_NR_RCPT	  0x00008000L
#define SMFIP_NR_DATA	  0x00010000L
#define SMFIP_NR_UNKN	  0x00020000L
#define SMFIP_NR_EOH	  0x00040000L
#define SMFIP_NR_BODY	  0x00080000L
#define SMFIP_HDR_LEADSPC 0x00100000L
#define SMFIP_MDS_256K	  0x10000000L
#define SMFIP_MDS_1M	  0x20000000L
/* versions and masks */
#define SMFI_V1_PROT   0x0000003FL
#define SMFI_V2_PROT   0x0000007FL
#define SMFI_CURR_PROT 0x001FFFFFL
#define SMFI_INTERNAL  0x70000000L

/* Action flags (SMFIF_* in <libmilter/mfapi.h>, which only milter.c
 * includes; the wire values are the same). */
#define MP_A_ADDHDRS	0x01UL
#define MP_A_CHGBODY	0x02UL
#define MP_A_ADDRCPT	0x04UL
#define MP_A_DELRCPT	0x08UL
#define MP_A_CHGHDRS	0x10UL
#define MP_A_QUARANTINE 0x20UL

/* The no-reply steps libmilter can fake when the MTA lacks them. */
#define MP_NR_ALL                                                                                        \
	(SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | \
	 SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY)

/* Largest packet accepted (length field, command byte included). Postfix
 * sends body chunks of at most 65535 bytes; headers and macro values are
 * bounded by its own limits. */
#define MP_MAX_PACKET (1024 * 1024)

/* Framing: looks at buf[0..len). Returns 1 with *cmd, *data (into buf),
 * *dlen and *used (bytes of the whole packet) when a packet is complete,
 * 0 when more bytes are needed (*need_r = total bytes the packet needs, or
 * 4 for the length field), -1 on a bad length (0 or > MP_MAX_PACKET). */
/* A big-endian 32-bit number (packet lengths, option words). */
uint32_t mp_get32(const unsigned char *p);
int mp_frame(const unsigned char *buf, size_t len, char *cmd, const unsigned char **data, size_t *dlen,
	     size_t *used, size_t *need_r);

/* Decoders. All return 0 or -1 (malformed); strings point into data, which
 * must stay alive; *why_r says what is wrong. */
struct mp_optneg {
	uint32_t version, actions, protocol;
};
int mp_dec_optneg(const unsigned char *data, size_t len, struct mp_optneg *o, const char **why_r);

struct mp_connect {
	const char *hostname;
	char family;	     /* SMFIA_UNKNOWN, _UNIX, _INET, _INET6 */
	uint16_t port;	     /* host order */
	const char *address; /* NULL for SMFIA_UNKNOWN */
	/* The client's IP address as text, for the plugins: the packet's own
	 * text (checked to be an address of its family), the IPv4 part of an
	 * IPv4-mapped IPv6 address; NULL for SMFIA_UNIX and _UNKNOWN. */
	const char *ip;
};
/* A malformed packet, or an INET/INET6 address that is not one, is -1. */
int mp_dec_connect(const unsigned char *data, size_t len, struct mp_connect *c, const char **why_r);

/* Consecutive NUL-terminated strings filling data exactly (the last byte is
 * a NUL). At most max strings; *n_r gets the count (>= 1). */
int mp_dec_strings(const unsigned char *data, size_t len, const char **argv, size_t max, size_t *n_r,
		   const char **why_r);
/* The first of consecutive NUL-terminated strings filling data exactly
 * (HELO, MAIL, RCPT): any number of strings follows it, as libmilter reads
 * them (Postfix passes every ESMTP parameter of MAIL and RCPT, repeated ones
 * too). Only the NUL at the end is checked. */
int mp_dec_first(const unsigned char *data, size_t len, const char **first, const char **why_r);
/* Exactly two strings: a non-empty header name and a value. */
int mp_dec_header(const unsigned char *data, size_t len, const char **name, const char **value,
		  const char **why_r);

/* Macro stages, as libmilter indexes them. */
enum mp_stage { MP_CONN = 0, MP_HELO, MP_MAIL, MP_RCPT, MP_DATA, MP_EOH, MP_EOM, MP_NSTAGES };
/* The stage a 'D' packet's first byte names; -1 if none. */
int mp_macro_stage(char c);

#define MP_MAX_MACROS 256 /* name/value pairs per stage */
struct mp_macros {
	struct {
		char *buf;	   /* copy of the packet's strings */
		const char **argv; /* name, value, name, value ... */
		size_t n;	   /* strings in argv */
	} st[MP_NSTAGES];
};
/* Stores a 'D' packet's data (stage byte included); 0, 1 when the stage is
 * not one libmilter keeps (ignored, as libmilter does), or -1 (malformed:
 * strings not NUL-terminated, a name without value). */
int mp_macros_set(struct mp_macros *m, const unsigned char *data, size_t len, const char **why_r);
/* Forgets the macros of stage `from` and all later stages. */
void mp_macros_clear(struct mp_macros *m, int from);
/* smfi_getsymval: latest stage first; "x", "{x}" and long "{name}" forms. */
const char *mp_macros_get(const struct mp_macros *m, const char *name);

/* libmilter's command state machine (engine.c: states, allowed transitions,
 * steps the filter negotiated away may be skipped). */
enum mp_state {
	MP_ST_INIT = 0,
	MP_ST_OPTS,
	MP_ST_CONN,
	MP_ST_HELO,
	MP_ST_MAIL,
	MP_ST_RCPT,
	MP_ST_DATA,
	MP_ST_HDRS,
	MP_ST_EOHS,
	MP_ST_BODY,
	MP_ST_ENDM,
	MP_ST_QUIT,
	MP_ST_ABRT,
	MP_ST_UNKN,
	MP_ST_Q_NC,
	MP_ST_NONE = -1
};
#define MP_IN_MAIL(st) ((st) >= MP_ST_MAIL && (st) < MP_ST_ENDM)
/* The state a command leads to (MP_ST_NONE for 'D'); -2 for an unknown
 * command byte. */
int mp_cmd_state(char cmd);
/* Whether a REJECT/TEMPFAIL/DISCARD keeps the state (RCPT, unknown). */
bool mp_cmd_ignores_error(char cmd);
/* trans_ok(): pflags are the filter's protocol flags (SMFIP_NO* skips). */
bool mp_trans_ok(int from, int to, unsigned long pflags);
/* The SMFIP_NR_* bit of a state, 0 if none. */
unsigned long mp_nr_bit(int state);

/* Encoders (append one packet to b). */
void mp_put(struct sift_buf *b, char cmd, const void *data, size_t len);
void mp_put_optneg(struct sift_buf *b, uint32_t version, uint32_t actions, uint32_t protocol);
/* 'h' add (name, value), 'm' change (idx, name, value), 'i' insert
 * (idx, name, value). value is in the core's form (folds joined with CRLF,
 * no leading space) and is written in the wire form (mp_wire_value);
 * NULL = "" (delete for 'm'). */
void mp_put_header(struct sift_buf *b, char cmd, uint32_t idx, const char *name, const char *value);
/* A header value as the MTA takes it with SMFIP_HDR_LEADSPC: a leading
 * space, folds joined with a bare LF (CR dropped); malloc'd; NULL = "". */
char *mp_wire_value(const char *value);
#endif
