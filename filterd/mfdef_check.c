/*
 * mfdef_check.c - built with the libmilter engine only: checks at compile
 * time that the protocol constants mproto.h defines for the native engine
 * are those of <libmilter/mfdef.h>. Generates no code.
 */
#include <libmilter/mfdef.h>

/* libmilter's values, before mproto.h defines the names again. */
enum {
	LM_SMFI_PROT_VERSION = SMFI_PROT_VERSION,
	LM_SMFI_V1_ACTS = SMFI_V1_ACTS,
	LM_SMFI_V2_ACTS = SMFI_V2_ACTS,
	LM_SMFI_CURR_ACTS = SMFI_CURR_ACTS,
	LM_SMFIA_UNKNOWN = SMFIA_UNKNOWN,
	LM_SMFIA_UNIX = SMFIA_UNIX,
	LM_SMFIA_INET = SMFIA_INET,
	LM_SMFIA_INET6 = SMFIA_INET6,
	LM_SMFIC_ABORT = SMFIC_ABORT,
	LM_SMFIC_BODY = SMFIC_BODY,
	LM_SMFIC_CONNECT = SMFIC_CONNECT,
	LM_SMFIC_MACRO = SMFIC_MACRO,
	LM_SMFIC_BODYEOB = SMFIC_BODYEOB,
	LM_SMFIC_HELO = SMFIC_HELO,
	LM_SMFIC_QUIT_NC = SMFIC_QUIT_NC,
	LM_SMFIC_HEADER = SMFIC_HEADER,
	LM_SMFIC_MAIL = SMFIC_MAIL,
	LM_SMFIC_EOH = SMFIC_EOH,
	LM_SMFIC_OPTNEG = SMFIC_OPTNEG,
	LM_SMFIC_QUIT = SMFIC_QUIT,
	LM_SMFIC_RCPT = SMFIC_RCPT,
	LM_SMFIC_DATA = SMFIC_DATA,
	LM_SMFIC_UNKNOWN = SMFIC_UNKNOWN,
	LM_SMFIR_ADDRCPT = SMFIR_ADDRCPT,
	LM_SMFIR_DELRCPT = SMFIR_DELRCPT,
	LM_SMFIR_ADDRCPT_PAR = SMFIR_ADDRCPT_PAR,
	LM_SMFIR_SHUTDOWN = SMFIR_SHUTDOWN,
	LM_SMFIR_ACCEPT = SMFIR_ACCEPT,
	LM_SMFIR_REPLBODY = SMFIR_REPLBODY,
	LM_SMFIR_CONTINUE = SMFIR_CONTINUE,
	LM_SMFIR_DISCARD = SMFIR_DISCARD,
	LM_SMFIR_CHGFROM = SMFIR_CHGFROM,
	LM_SMFIR_CONN_FAIL = SMFIR_CONN_FAIL,
	LM_SMFIR_ADDHEADER = SMFIR_ADDHEADER,
	LM_SMFIR_INSHEADER = SMFIR_INSHEADER,
	LM_SMFIR_SETSYMLIST = SMFIR_SETSYMLIST,
	LM_SMFIR_CHGHEADER = SMFIR_CHGHEADER,
	LM_SMFIR_PROGRESS = SMFIR_PROGRESS,
	LM_SMFIR_QUARANTINE = SMFIR_QUARANTINE,
	LM_SMFIR_REJECT = SMFIR_REJECT,
	LM_SMFIR_SKIP = SMFIR_SKIP,
	LM_SMFIR_TEMPFAIL = SMFIR_TEMPFAIL,
	LM_SMFIR_REPLYCODE = SMFIR_REPLYCODE,
	LM_SMFIP_NOCONNECT = SMFIP_NOCONNECT,
	LM_SMFIP_NOHELO = SMFIP_NOHELO,
	LM_SMFIP_NOMAIL = SMFIP_NOMAIL,
	LM_SMFIP_NORCPT = SMFIP_NORCPT,
	LM_SMFIP_NOBODY = SMFIP_NOBODY,
	LM_SMFIP_NOHDRS = SMFIP_NOHDRS,
	LM_SMFIP_NOEOH = SMFIP_NOEOH,
	LM_SMFIP_NR_HDR = SMFIP_NR_HDR,
	LM_SMFIP_NOUNKNOWN = SMFIP_NOUNKNOWN,
	LM_SMFIP_NODATA = SMFIP_NODATA,
	LM_SMFIP_SKIP = SMFIP_SKIP,
	LM_SMFIP_RCPT_REJ = SMFIP_RCPT_REJ,
	LM_SMFIP_NR_CONN = SMFIP_NR_CONN,
	LM_SMFIP_NR_HELO = SMFIP_NR_HELO,
	LM_SMFIP_NR_MAIL = SMFIP_NR_MAIL,
	LM_SMFIP_NR_RCPT = SMFIP_NR_RCPT,
	LM_SMFIP_NR_DATA = SMFIP_NR_DATA,
	LM_SMFIP_NR_UNKN = SMFIP_NR_UNKN,
	LM_SMFIP_NR_EOH = SMFIP_NR_EOH,
	LM_SMFIP_NR_BODY = SMFIP_NR_BODY,
	LM_SMFIP_HDR_LEADSPC = SMFIP_HDR_LEADSPC,
	LM_SMFIP_MDS_256K = SMFIP_MDS_256K,
	LM_SMFIP_MDS_1M = SMFIP_MDS_1M,
	LM_SMFI_V1_PROT = SMFI_V1_PROT,
	LM_SMFI_V2_PROT = SMFI_V2_PROT,
	LM_SMFI_CURR_PROT = SMFI_CURR_PROT,
	LM_SMFI_INTERNAL = SMFI_INTERNAL,
};

#undef SMFI_PROT_VERSION
#undef SMFI_V1_ACTS
#undef SMFI_V2_ACTS
#undef SMFI_CURR_ACTS
#undef SMFIA_UNKNOWN
#undef SMFIA_UNIX
#undef SMFIA_INET
#undef SMFIA_INET6
#undef SMFIC_ABORT
#undef SMFIC_BODY
#undef SMFIC_CONNECT
#undef SMFIC_MACRO
#undef SMFIC_BODYEOB
#undef SMFIC_HELO
#undef SMFIC_QUIT_NC
#undef SMFIC_HEADER
#undef SMFIC_MAIL
#undef SMFIC_EOH
#undef SMFIC_OPTNEG
#undef SMFIC_QUIT
#undef SMFIC_RCPT
#undef SMFIC_DATA
#undef SMFIC_UNKNOWN
#undef SMFIR_ADDRCPT
#undef SMFIR_DELRCPT
#undef SMFIR_ADDRCPT_PAR
#undef SMFIR_SHUTDOWN
#undef SMFIR_ACCEPT
#undef SMFIR_REPLBODY
#undef SMFIR_CONTINUE
#undef SMFIR_DISCARD
#undef SMFIR_CHGFROM
#undef SMFIR_CONN_FAIL
#undef SMFIR_ADDHEADER
#undef SMFIR_INSHEADER
#undef SMFIR_SETSYMLIST
#undef SMFIR_CHGHEADER
#undef SMFIR_PROGRESS
#undef SMFIR_QUARANTINE
#undef SMFIR_REJECT
#undef SMFIR_SKIP
#undef SMFIR_TEMPFAIL
#undef SMFIR_REPLYCODE
#undef SMFIP_NOCONNECT
#undef SMFIP_NOHELO
#undef SMFIP_NOMAIL
#undef SMFIP_NORCPT
#undef SMFIP_NOBODY
#undef SMFIP_NOHDRS
#undef SMFIP_NOEOH
#undef SMFIP_NR_HDR
#undef SMFIP_NOUNKNOWN
#undef SMFIP_NODATA
#undef SMFIP_SKIP
#undef SMFIP_RCPT_REJ
#undef SMFIP_NR_CONN
#undef SMFIP_NR_HELO
#undef SMFIP_NR_MAIL
#undef SMFIP_NR_RCPT
#undef SMFIP_NR_DATA
#undef SMFIP_NR_UNKN
#undef SMFIP_NR_EOH
#undef SMFIP_NR_BODY
#undef SMFIP_HDR_LEADSPC
#undef SMFIP_MDS_256K
#undef SMFIP_MDS_1M
#undef SMFI_V1_PROT
#undef SMFI_V2_PROT
#undef SMFI_CURR_PROT
#undef SMFI_INTERNAL

#include "mproto.h"

_Static_assert(LM_SMFI_PROT_VERSION == SMFI_PROT_VERSION,
	       "mproto.h: SMFI_PROT_VERSION differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFI_V1_ACTS == SMFI_V1_ACTS, "mproto.h: SMFI_V1_ACTS differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFI_V2_ACTS == SMFI_V2_ACTS, "mproto.h: SMFI_V2_ACTS differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFI_CURR_ACTS == SMFI_CURR_ACTS,
	       "mproto.h: SMFI_CURR_ACTS differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIA_UNKNOWN == SMFIA_UNKNOWN, "mproto.h: SMFIA_UNKNOWN differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIA_UNIX == SMFIA_UNIX, "mproto.h: SMFIA_UNIX differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIA_INET == SMFIA_INET, "mproto.h: SMFIA_INET differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIA_INET6 == SMFIA_INET6, "mproto.h: SMFIA_INET6 differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_ABORT == SMFIC_ABORT, "mproto.h: SMFIC_ABORT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_BODY == SMFIC_BODY, "mproto.h: SMFIC_BODY differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_CONNECT == SMFIC_CONNECT, "mproto.h: SMFIC_CONNECT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_MACRO == SMFIC_MACRO, "mproto.h: SMFIC_MACRO differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_BODYEOB == SMFIC_BODYEOB, "mproto.h: SMFIC_BODYEOB differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_HELO == SMFIC_HELO, "mproto.h: SMFIC_HELO differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_QUIT_NC == SMFIC_QUIT_NC, "mproto.h: SMFIC_QUIT_NC differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_HEADER == SMFIC_HEADER, "mproto.h: SMFIC_HEADER differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_MAIL == SMFIC_MAIL, "mproto.h: SMFIC_MAIL differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_EOH == SMFIC_EOH, "mproto.h: SMFIC_EOH differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_OPTNEG == SMFIC_OPTNEG, "mproto.h: SMFIC_OPTNEG differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_QUIT == SMFIC_QUIT, "mproto.h: SMFIC_QUIT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_RCPT == SMFIC_RCPT, "mproto.h: SMFIC_RCPT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_DATA == SMFIC_DATA, "mproto.h: SMFIC_DATA differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIC_UNKNOWN == SMFIC_UNKNOWN, "mproto.h: SMFIC_UNKNOWN differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_ADDRCPT == SMFIR_ADDRCPT, "mproto.h: SMFIR_ADDRCPT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_DELRCPT == SMFIR_DELRCPT, "mproto.h: SMFIR_DELRCPT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_ADDRCPT_PAR == SMFIR_ADDRCPT_PAR,
	       "mproto.h: SMFIR_ADDRCPT_PAR differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_SHUTDOWN == SMFIR_SHUTDOWN,
	       "mproto.h: SMFIR_SHUTDOWN differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_ACCEPT == SMFIR_ACCEPT, "mproto.h: SMFIR_ACCEPT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_REPLBODY == SMFIR_REPLBODY,
	       "mproto.h: SMFIR_REPLBODY differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_CONTINUE == SMFIR_CONTINUE,
	       "mproto.h: SMFIR_CONTINUE differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_DISCARD == SMFIR_DISCARD, "mproto.h: SMFIR_DISCARD differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_CHGFROM == SMFIR_CHGFROM, "mproto.h: SMFIR_CHGFROM differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_CONN_FAIL == SMFIR_CONN_FAIL,
	       "mproto.h: SMFIR_CONN_FAIL differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_ADDHEADER == SMFIR_ADDHEADER,
	       "mproto.h: SMFIR_ADDHEADER differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_INSHEADER == SMFIR_INSHEADER,
	       "mproto.h: SMFIR_INSHEADER differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_SETSYMLIST == SMFIR_SETSYMLIST,
	       "mproto.h: SMFIR_SETSYMLIST differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_CHGHEADER == SMFIR_CHGHEADER,
	       "mproto.h: SMFIR_CHGHEADER differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_PROGRESS == SMFIR_PROGRESS,
	       "mproto.h: SMFIR_PROGRESS differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_QUARANTINE == SMFIR_QUARANTINE,
	       "mproto.h: SMFIR_QUARANTINE differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_REJECT == SMFIR_REJECT, "mproto.h: SMFIR_REJECT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_SKIP == SMFIR_SKIP, "mproto.h: SMFIR_SKIP differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_TEMPFAIL == SMFIR_TEMPFAIL,
	       "mproto.h: SMFIR_TEMPFAIL differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIR_REPLYCODE == SMFIR_REPLYCODE,
	       "mproto.h: SMFIR_REPLYCODE differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NOCONNECT == SMFIP_NOCONNECT,
	       "mproto.h: SMFIP_NOCONNECT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NOHELO == SMFIP_NOHELO, "mproto.h: SMFIP_NOHELO differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NOMAIL == SMFIP_NOMAIL, "mproto.h: SMFIP_NOMAIL differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NORCPT == SMFIP_NORCPT, "mproto.h: SMFIP_NORCPT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NOBODY == SMFIP_NOBODY, "mproto.h: SMFIP_NOBODY differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NOHDRS == SMFIP_NOHDRS, "mproto.h: SMFIP_NOHDRS differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NOEOH == SMFIP_NOEOH, "mproto.h: SMFIP_NOEOH differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_HDR == SMFIP_NR_HDR, "mproto.h: SMFIP_NR_HDR differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NOUNKNOWN == SMFIP_NOUNKNOWN,
	       "mproto.h: SMFIP_NOUNKNOWN differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NODATA == SMFIP_NODATA, "mproto.h: SMFIP_NODATA differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_SKIP == SMFIP_SKIP, "mproto.h: SMFIP_SKIP differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_RCPT_REJ == SMFIP_RCPT_REJ,
	       "mproto.h: SMFIP_RCPT_REJ differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_CONN == SMFIP_NR_CONN, "mproto.h: SMFIP_NR_CONN differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_HELO == SMFIP_NR_HELO, "mproto.h: SMFIP_NR_HELO differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_MAIL == SMFIP_NR_MAIL, "mproto.h: SMFIP_NR_MAIL differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_RCPT == SMFIP_NR_RCPT, "mproto.h: SMFIP_NR_RCPT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_DATA == SMFIP_NR_DATA, "mproto.h: SMFIP_NR_DATA differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_UNKN == SMFIP_NR_UNKN, "mproto.h: SMFIP_NR_UNKN differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_EOH == SMFIP_NR_EOH, "mproto.h: SMFIP_NR_EOH differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_NR_BODY == SMFIP_NR_BODY, "mproto.h: SMFIP_NR_BODY differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_HDR_LEADSPC == SMFIP_HDR_LEADSPC,
	       "mproto.h: SMFIP_HDR_LEADSPC differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_MDS_256K == SMFIP_MDS_256K,
	       "mproto.h: SMFIP_MDS_256K differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFIP_MDS_1M == SMFIP_MDS_1M, "mproto.h: SMFIP_MDS_1M differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFI_V1_PROT == SMFI_V1_PROT, "mproto.h: SMFI_V1_PROT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFI_V2_PROT == SMFI_V2_PROT, "mproto.h: SMFI_V2_PROT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFI_CURR_PROT == SMFI_CURR_PROT,
	       "mproto.h: SMFI_CURR_PROT differs from <libmilter/mfdef.h>");
_Static_assert(LM_SMFI_INTERNAL == SMFI_INTERNAL, "mproto.h: SMFI_INTERNAL differs from <libmilter/mfdef.h>");
