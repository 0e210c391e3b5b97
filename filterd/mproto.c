/*
 * mproto.c - the milter wire protocol codec; see mproto.h. Every decoder
 * checks lengths and NUL termination itself, so that a malformed packet is
 * reported, never read past.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "mproto.h"

uint32_t mp_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

int mp_frame(const unsigned char *buf, size_t len, char *cmd, const unsigned char **data, size_t *dlen,
	     size_t *used, size_t *need_r)
{
	if (len < 4) {
		*need_r = 4;
		return 0;
	}
	uint32_t n = mp_get32(buf);
	if (n == 0 || n > MP_MAX_PACKET)
		return -1;
	if (len < 4 + (size_t)n) {
		*need_r = 4 + (size_t)n;
		return 0;
	}
	*cmd = (char)buf[4];
	*data = buf + 5;
	*dlen = n - 1;
	*used = 4 + (size_t)n;
	return 1;
}

int mp_dec_optneg(const unsigned char *data, size_t len, struct mp_optneg *o, const char **why_r)
{
	/* v6 MTAs may append nothing else; libmilter ignores extra bytes */
	if (len < 12) {
		*why_r = "option negotiation packet too short";
		return -1;
	}
	o->version = mp_get32(data);
	o->actions = mp_get32(data + 4);
	o->protocol = mp_get32(data + 8);
	if (o->version < 2) {
		*why_r = "protocol version too old";
		return -1;
	}
	return 0;
}

/* The length of the NUL-terminated string at data[off], or -1 if there is
 * no NUL before len. */
static long str_at(const unsigned char *data, size_t len, size_t off)
{
	if (off >= len)
		return -1;
	const unsigned char *z = memchr(data + off, 0, len - off);
	return z ? (long)(z - (data + off)) : -1;
}

/* The text of an INET/INET6 address, checked (inet_pton into scratch
 * space): the plugins get the MTA's text as it is. */
static int connect_ip(struct mp_connect *c, const char **why_r)
{
	unsigned char scratch[16];
	c->ip = NULL;
	if (c->family == SMFIA_INET) {
		if (inet_pton(AF_INET, c->address, scratch) != 1) {
			*why_r = "connect packet: bad IPv4 address";
			return -1;
		}
		c->ip = c->address;
	} else if (c->family == SMFIA_INET6) {
		if (inet_pton(AF_INET6, c->address, scratch) != 1) {
			*why_r = "connect packet: bad IPv6 address";
			return -1;
		}
		c->ip = c->address;
		/* ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1 */
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		const char *dot = strchr(c->address, '.'), *colon = strrchr(c->address, ':');
		if (memcmp(scratch, mapped, 12) == 0 && dot && colon && colon < dot)
			c->ip = colon + 1;
	}
	return 0;
}

int mp_dec_connect(const unsigned char *data, size_t len, struct mp_connect *c, const char **why_r)
{
	long hl = str_at(data, len, 0);
	if (hl < 0 || (size_t)hl + 1 >= len) {
		*why_r = "connect packet: no host name or family";
		return -1;
	}
	c->hostname = (const char *)data;
	size_t i = (size_t)hl + 1;
	c->family = (char)data[i++];
	c->port = 0;
	c->address = NULL;
	c->ip = NULL;
	if (c->family == SMFIA_UNKNOWN)
		return 0; /* libmilter ignores anything after it too */
	if (c->family != SMFIA_INET && c->family != SMFIA_INET6 && c->family != SMFIA_UNIX) {
		*why_r = "connect packet: unknown address family";
		return -1;
	}
	if (i + 2 >= len) {
		*why_r = "connect packet: truncated port or address";
		return -1;
	}
	c->port = (uint16_t)(data[i] << 8 | data[i + 1]);
	i += 2;
	long al = str_at(data, len, i);
	if (al < 0 || i + (size_t)al + 1 != len) {
		*why_r = "connect packet: address not NUL-terminated at the end";
		return -1;
	}
	c->address = (const char *)data + i;
	return connect_ip(c, why_r);
}

int mp_dec_strings(const unsigned char *data, size_t len, const char **argv, size_t max, size_t *n_r,
		   const char **why_r)
{
	if (len == 0 || data[len - 1] != 0) {
		*why_r = "strings not NUL-terminated";
		return -1;
	}
	size_t n = 0, off = 0;
	while (off < len) {
		if (n >= max) {
			*why_r = "too many strings";
			return -1;
		}
		long l = str_at(data, len, off);
		argv[n++] = (const char *)data + off;
		off += (size_t)l + 1;
	}
	*n_r = n;
	return 0;
}

int mp_dec_first(const unsigned char *data, size_t len, const char **first, const char **why_r)
{
	if (len == 0 || data[len - 1] != 0) {
		*why_r = "strings not NUL-terminated";
		return -1;
	}
	*first = (const char *)data;
	return 0;
}

int mp_dec_header(const unsigned char *data, size_t len, const char **name, const char **value,
		  const char **why_r)
{
	const char *v[2];
	size_t n;
	if (mp_dec_strings(data, len, v, 2, &n, why_r) < 0 || n != 2) {
		*why_r = "header packet: want name and value";
		return -1;
	}
	if (!*v[0]) {
		*why_r = "header packet: empty name";
		return -1;
	}
	*name = v[0];
	*value = v[1];
	return 0;
}

int mp_macro_stage(char c)
{
	switch (c) {
	case SMFIC_CONNECT:
		return MP_CONN;
	case SMFIC_HELO:
		return MP_HELO;
	case SMFIC_MAIL:
		return MP_MAIL;
	case SMFIC_RCPT:
		return MP_RCPT;
	case SMFIC_DATA:
		return MP_DATA;
	case SMFIC_EOH:
		return MP_EOH;
	case SMFIC_BODYEOB:
		return MP_EOM;
	default:
		return -1;
	}
}

static void free_stage(struct mp_macros *m, int i)
{
	free(m->st[i].buf);
	free(m->st[i].argv);
	m->st[i].buf = NULL;
	m->st[i].argv = NULL;
	m->st[i].n = 0;
}

int mp_macros_set(struct mp_macros *m, const unsigned char *data, size_t len, const char **why_r)
{
	if (len < 1) {
		*why_r = "macro packet: empty";
		return -1;
	}
	int st = mp_macro_stage((char)data[0]);
	static const size_t max = 2 * MP_MAX_MACROS;
	const char **argv = sift_malloc(max * sizeof(*argv));
	size_t n = 0;
	if (len > 1 && mp_dec_strings(data + 1, len - 1, argv, max, &n, why_r) < 0) {
		free(argv);
		return -1;
	}
	if (n % 2) {
		free(argv);
		*why_r = "macro packet: name without value";
		return -1;
	}
	if (st < 0) {
		/* libmilter ignores macros for other commands (Postfix sends
		 * them for 'U', unknown SMTP commands): so do we */
		free(argv);
		return 1;
	}
	/* a new packet for a stage replaces that stage's macros only */
	free_stage(m, st);
	if (n) {
		char *copy = sift_malloc(len - 1);
		memcpy(copy, data + 1, len - 1);
		for (size_t i = 0; i < n; i++)
			argv[i] = copy + (argv[i] - (const char *)(data + 1));
		m->st[st].buf = copy;
		m->st[st].argv = argv;
		m->st[st].n = n;
	} else {
		free(argv);
	}
	return 0;
}

void mp_macros_clear(struct mp_macros *m, int from)
{
	for (int i = from < 0 ? 0 : from; i < MP_NSTAGES; i++)
		free_stage(m, i);
}

const char *mp_macros_get(const struct mp_macros *m, const char *name)
{
	if (!name || !*name)
		return NULL;
	size_t nl = strlen(name);
	char one[2] = "", braces[4] = "";
	if (nl == 3 && name[0] == '{' && name[2] == '}') {
		one[0] = name[1];
		one[1] = 0;
	}
	if (nl == 1) {
		braces[0] = '{';
		braces[1] = name[0];
		braces[2] = '}';
		braces[3] = 0;
	}
	for (int i = MP_NSTAGES - 1; i >= 0; i--) {
		const char **a = m->st[i].argv;
		for (size_t j = 0; j + 1 < m->st[i].n; j += 2) {
			if (strcmp(a[j], name) == 0 || (one[0] && strcmp(a[j], one) == 0) ||
			    (braces[0] && strcmp(a[j], braces) == 0))
				return a[j + 1];
		}
	}
	return NULL;
}

/* ---- libmilter's state machine (libmilter/engine.c) ---- */
#define MASK(s) (1u << (s))
static const unsigned next_states[] = {
	[MP_ST_INIT] = MASK(MP_ST_OPTS),
	[MP_ST_OPTS] = MASK(MP_ST_CONN) | MASK(MP_ST_UNKN),
	[MP_ST_CONN] = MASK(MP_ST_HELO) | MASK(MP_ST_MAIL) | MASK(MP_ST_UNKN),
	[MP_ST_HELO] = MASK(MP_ST_HELO) | MASK(MP_ST_MAIL) | MASK(MP_ST_UNKN),
	[MP_ST_MAIL] = MASK(MP_ST_RCPT) | MASK(MP_ST_ABRT) | MASK(MP_ST_UNKN),
	[MP_ST_RCPT] = MASK(MP_ST_HDRS) | MASK(MP_ST_EOHS) | MASK(MP_ST_DATA) | MASK(MP_ST_BODY) |
		       MASK(MP_ST_ENDM) | MASK(MP_ST_RCPT) | MASK(MP_ST_ABRT) | MASK(MP_ST_UNKN),
	[MP_ST_DATA] = MASK(MP_ST_EOHS) | MASK(MP_ST_HDRS) | MASK(MP_ST_ABRT),
	[MP_ST_HDRS] = MASK(MP_ST_EOHS) | MASK(MP_ST_HDRS) | MASK(MP_ST_ABRT),
	[MP_ST_EOHS] = MASK(MP_ST_BODY) | MASK(MP_ST_ENDM) | MASK(MP_ST_ABRT),
	[MP_ST_BODY] = MASK(MP_ST_ENDM) | MASK(MP_ST_BODY) | MASK(MP_ST_ABRT),
	[MP_ST_ENDM] = MASK(MP_ST_QUIT) | MASK(MP_ST_MAIL) | MASK(MP_ST_UNKN) | MASK(MP_ST_Q_NC),
	[MP_ST_QUIT] = 0,
	[MP_ST_ABRT] = 0,
	[MP_ST_UNKN] = MASK(MP_ST_HELO) | MASK(MP_ST_MAIL) | MASK(MP_ST_RCPT) | MASK(MP_ST_ABRT) |
		       MASK(MP_ST_DATA) | MASK(MP_ST_BODY) | MASK(MP_ST_UNKN) | MASK(MP_ST_QUIT) |
		       MASK(MP_ST_Q_NC),
	[MP_ST_Q_NC] = MASK(MP_ST_CONN) | MASK(MP_ST_UNKN),
};
#define N_STATES (sizeof(next_states) / sizeof(next_states[0]))

/* States the filter may skip: those whose step it negotiated away (fix_stm). */
static bool skippable(int st, unsigned long pflags)
{
	switch (st) {
	case MP_ST_CONN:
		return pflags & SMFIP_NOCONNECT;
	case MP_ST_HELO:
		return pflags & SMFIP_NOHELO;
	case MP_ST_MAIL:
		return pflags & SMFIP_NOMAIL;
	case MP_ST_RCPT:
		return pflags & SMFIP_NORCPT;
	case MP_ST_HDRS:
		return pflags & SMFIP_NOHDRS;
	case MP_ST_EOHS:
		return pflags & SMFIP_NOEOH;
	case MP_ST_BODY:
		return pflags & SMFIP_NOBODY;
	case MP_ST_DATA:
		return pflags & SMFIP_NODATA;
	case MP_ST_UNKN:
		return pflags & SMFIP_NOUNKNOWN;
	default:
		return false;
	}
}

bool mp_trans_ok(int from, int to, unsigned long pflags)
{
	if (from < 0 || to < 0 || (size_t)from >= N_STATES || (size_t)to >= N_STATES)
		return false;
	for (int s = from;;) {
		if (MASK(to) & next_states[s])
			return true;
		int n = s + 1;
		if ((size_t)n >= N_STATES || !skippable(n, pflags))
			return false;
		s = n;
	}
}

int mp_cmd_state(char cmd)
{
	switch (cmd) {
	case SMFIC_ABORT:
		return MP_ST_ABRT;
	case SMFIC_MACRO:
		return MP_ST_NONE;
	case SMFIC_BODY:
		return MP_ST_BODY;
	case SMFIC_CONNECT:
		return MP_ST_CONN;
	case SMFIC_BODYEOB:
		return MP_ST_ENDM;
	case SMFIC_HELO:
		return MP_ST_HELO;
	case SMFIC_HEADER:
		return MP_ST_HDRS;
	case SMFIC_MAIL:
		return MP_ST_MAIL;
	case SMFIC_OPTNEG:
		return MP_ST_OPTS;
	case SMFIC_EOH:
		return MP_ST_EOHS;
	case SMFIC_QUIT:
		return MP_ST_QUIT;
	case SMFIC_DATA:
		return MP_ST_DATA;
	case SMFIC_RCPT:
		return MP_ST_RCPT;
	case SMFIC_UNKNOWN:
		return MP_ST_UNKN;
	case SMFIC_QUIT_NC:
		return MP_ST_Q_NC;
	default:
		return -2;
	}
}

bool mp_cmd_ignores_error(char cmd)
{
	return cmd == SMFIC_RCPT || cmd == SMFIC_UNKNOWN;
}

unsigned long mp_nr_bit(int state)
{
	switch (state) {
	case MP_ST_CONN:
		return SMFIP_NR_CONN;
	case MP_ST_HELO:
		return SMFIP_NR_HELO;
	case MP_ST_MAIL:
		return SMFIP_NR_MAIL;
	case MP_ST_RCPT:
		return SMFIP_NR_RCPT;
	case MP_ST_DATA:
		return SMFIP_NR_DATA;
	case MP_ST_UNKN:
		return SMFIP_NR_UNKN;
	case MP_ST_HDRS:
		return SMFIP_NR_HDR;
	case MP_ST_EOHS:
		return SMFIP_NR_EOH;
	case MP_ST_BODY:
		return SMFIP_NR_BODY;
	default:
		return 0;
	}
}

/* ---- encoders ---- */
void mp_put(struct sift_buf *b, char cmd, const void *data, size_t len)
{
	unsigned char hdr[5];
	put32(hdr, (uint32_t)(len + 1));
	hdr[4] = (unsigned char)cmd;
	sift_buf_add(b, hdr, 5);
	if (len)
		sift_buf_add(b, data, len);
}

void mp_put_optneg(struct sift_buf *b, uint32_t version, uint32_t actions, uint32_t protocol)
{
	unsigned char d[12];
	put32(d, version);
	put32(d + 4, actions);
	put32(d + 8, protocol);
	mp_put(b, SMFIC_OPTNEG, d, sizeof(d));
}

/* Appends value in the wire form (see mp_wire_value), NUL included. */
static void put_wire_value(struct sift_buf *b, const char *value)
{
	if (value) {
		sift_buf_add(b, " ", 1);
		for (const char *p = value; *p; p++)
			if (*p != '\r')
				sift_buf_add(b, p, 1);
	}
	sift_buf_add(b, "", 1);
}

static size_t wire_len(const char *value)
{
	size_t n = 0;
	if (value) {
		n = 1;
		for (const char *p = value; *p; p++)
			n += *p != '\r';
	}
	return n;
}

char *mp_wire_value(const char *value)
{
	struct sift_buf b = {0};
	put_wire_value(&b, value);
	return b.data;
}

void mp_put_header(struct sift_buf *b, char cmd, uint32_t idx, const char *name, const char *value)
{
	size_t nl = strlen(name) + 1, vl = wire_len(value) + 1;
	bool has_idx = cmd != SMFIR_ADDHEADER;
	unsigned char hdr[9];
	put32(hdr, (uint32_t)(1 + (has_idx ? 4 : 0) + nl + vl));
	hdr[4] = (unsigned char)cmd;
	put32(hdr + 5, idx);
	sift_buf_add(b, hdr, has_idx ? 9 : 5);
	sift_buf_add(b, name, nl);
	put_wire_value(b, value);
}
