/*
 * fuzz_milter.c - libFuzzer target for the native milter engine's wire
 * codec (filterd/mproto.c, compiled in here since filterd is a program, not
 * a library). The input is a stream of MTA packets: it is framed as the
 * engine frames a socket's bytes, every packet goes through the decoder of
 * its command (option negotiation, connect, strings, header, macros), the
 * macro store is queried as plugins would, the state machine is walked,
 * decoded strings are re-encoded and decoded again, and replies go through
 * the core's reply rules. Invariants are
 * checked with abort(). Replayed over tests/fuzz/corpus/milter/ in every
 * build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../filterd/mproto.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reencode(char cmd, const char *name, const char *value)
{
	struct sift_buf b = {0};
	mp_put_header(&b, cmd, 7, name, value);
	char c;
	const unsigned char *d;
	size_t dl, used, need;
	if (mp_frame((const unsigned char *)b.data, b.len, &c, &d, &dl, &used, &need) != 1 || used != b.len ||
	    c != cmd)
		abort();
	const char *n2, *v2, *why;
	if (cmd == SMFIR_ADDHEADER) {
		char *wire = mp_wire_value(value);
		if (mp_dec_header(d, dl, &n2, &v2, &why) < 0 || strcmp(n2, name) || strcmp(v2, wire) ||
		    strchr(v2, '\r') || v2[0] != ' ')
			abort();
		free(wire);
	} else if (dl < 4 || mp_dec_header(d + 4, dl - 4, &n2, &v2, &why) < 0 || strcmp(n2, name)) {
		abort();
	}
	sift_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mp_macros mac;
	memset(&mac, 0, sizeof(mac));
	int state = MP_ST_INIT;
	unsigned long pflags = size ? (unsigned long)data[0] << 12 | SMFIP_NOUNKNOWN : 0;
	size_t off = size ? 1 : 0;
	while (off < size) {
		char cmd;
		const unsigned char *d;
		size_t dl, used, need = 0;
		int rc = mp_frame(data + off, size - off, &cmd, &d, &dl, &used, &need);
		if (rc < 0)
			break;
		if (rc == 0) {
			if (need <= size - off)
				abort();
			break;
		}
		if (used != dl + 5 || used > size - off || used > MP_MAX_PACKET + 4)
			abort();
		off += used;
		const char *why = NULL;
		int ns = mp_cmd_state(cmd);
		if (ns >= 0) {
			if (!mp_trans_ok(state, ns, pflags))
				state = MP_ST_HELO;
			if (mp_trans_ok(state, ns, pflags))
				state = ns;
			(void)mp_nr_bit(state);
			(void)mp_cmd_ignores_error(cmd);
		}
		switch (cmd) {
		case SMFIC_OPTNEG: {
			struct mp_optneg o;
			if (mp_dec_optneg(d, dl, &o, &why) == 0 && o.version < 2)
				abort();
			mp_macros_clear(&mac, 0);
			break;
		}
		case SMFIC_CONNECT: {
			struct mp_connect c;
			if (mp_dec_connect(d, dl, &c, &why) == 0) {
				if (strlen(c.hostname) >= dl)
					abort();
				if (c.address && strlen(c.address) >= dl)
					abort();
			}
			mp_macros_clear(&mac, MP_HELO);
			break;
		}
		case SMFIC_HELO:
		case SMFIC_MAIL:
		case SMFIC_RCPT:
		case SMFIC_UNKNOWN: {
			const char *argv[64];
			size_t n = 0;
			if (mp_dec_strings(d, dl, argv, 64, &n, &why) == 0) {
				if (n < 1 || n > 64)
					abort();
				for (size_t i = 0; i < n; i++)
					if ((const unsigned char *)argv[i] < d ||
					    (const unsigned char *)argv[i] + strlen(argv[i]) >= d + dl)
						abort();
			}
			const char *first;
			if (mp_dec_first(d, dl, &first, &why) == 0) {
				if (first != (const char *)d || first + strlen(first) >= (const char *)d + dl)
					abort();
			}
			if (cmd == SMFIC_MAIL)
				mp_macros_clear(&mac, MP_RCPT);
			break;
		}
		case SMFIC_HEADER: {
			const char *n, *v;
			if (mp_dec_header(d, dl, &n, &v, &why) == 0) {
				if (!*n)
					abort();
				check_reencode(SMFIR_ADDHEADER, n, v);
				check_reencode(SMFIR_CHGHEADER, n, v);
				check_reencode(SMFIR_INSHEADER, n, v);
			}
			break;
		}
		case SMFIC_MACRO: {
			int mr = mp_macros_set(&mac, d, dl, &why);
			if (mr == 1 && mp_macro_stage(dl ? (char)d[0] : 0) >= 0)
				abort();
			if (mr == 0) {
				static const char *names[] = {
					"i", "{i}", "j", "{daemon_name}", "{auth_authen}", "_",
					"{", "{}",  "x"};
				for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
					(void)mp_macros_get(&mac, names[i]);
				int st = mp_macro_stage(dl ? (char)d[0] : 0);
				if (st < 0)
					abort();
				for (size_t j = 0; j < mac.st[st].n; j++)
					if (j % 2 == 0 && *mac.st[st].argv[j] &&
					    !mp_macros_get(&mac, mac.st[st].argv[j]))
						abort();
			} else if (mr < 0 && !why) {
				abort(); /* an error always says why */
			}
			break;
		}
		case SMFIC_QUIT:
		case SMFIC_QUIT_NC:
			mp_macros_clear(&mac, 0);
			break;
		case 'y': {
			/* reply formatting: code, xcode, text from the packet */
			const char *argv[3];
			size_t n = 0;
			if (mp_dec_strings(d, dl, argv, 3, &n, &why) == 0 && n == 3) {
				/* the core's reply rules (lib/reply.c) */
				char cls = argv[0][0];
				const char *x = *argv[1] ? argv[1] : NULL;
				if (!sift_reply_check(cls, argv[0], x, argv[2])) {
					char *r = sift_reply_format(argv[0], x, argv[2], true);
					if (strlen(r) < 4 || strlen(r) > SIFT_REPLY_MAX ||
					    strpbrk(r, "\r\n") || (r[0] != '4' && r[0] != '5') ||
					    (x && x[0] != r[0]))
						abort();
					free(r);
				}
			}
			break;
		}
		default:
			break;
		}
	}
	mp_macros_clear(&mac, 0);
	return 0;
}
