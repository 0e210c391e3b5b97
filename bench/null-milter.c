/*
 * null-milter: a milter that does nothing, for the benchmarks' floor.
 *
 * Built on libmilter; it registers only the end-of-message callback (every
 * message is answered CONTINUE there) and lets libmilter negotiate every
 * other step away, so Postfix pays only the connection, the negotiation,
 * the macros it sends and the end of message.
 *
 *     null-milter -p unix:/path/to/socket | -p inet:PORT@127.0.0.1
 *                 [-t timeout-seconds]
 *
 * It runs in the foreground until SIGTERM or SIGINT.
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sfsistat null_eom(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE;
}

static struct smfiDesc null_desc = {
	.xxfi_name = "null-milter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = 0,
	.xxfi_eom = null_eom,
};

int main(int argc, char **argv)
{
	const char *conn = NULL;
	int timeout = 120;
	int c;

	while ((c = getopt(argc, argv, "p:t:")) != -1) {
		switch (c) {
		case 'p':
			conn = optarg;
			break;
		case 't':
			timeout = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: null-milter -p SOCKET [-t SECONDS]\n");
			return 2;
		}
	}
	if (conn == NULL) {
		fprintf(stderr, "usage: null-milter -p SOCKET [-t SECONDS]\n");
		return 2;
	}
	if (strncmp(conn, "unix:", 5) == 0 || strncmp(conn, "local:", 6) == 0)
		unlink(strchr(conn, ':') + 1);
	if (smfi_setconn((char *)conn) == MI_FAILURE || smfi_settimeout(timeout) == MI_FAILURE ||
	    smfi_register(null_desc) == MI_FAILURE) {
		fprintf(stderr, "null-milter: cannot set up %s\n", conn);
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
