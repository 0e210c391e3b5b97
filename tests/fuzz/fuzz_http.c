/*
 * fuzz_http.c - libFuzzer target for the metrics listener's request parser
 * and credential check (lib/http.c). The input is a request head as a
 * client would send it; it is parsed whole (as the server does once it has
 * read up to the empty line) and, when it parses, its Authorization value
 * is checked against a fixed credential file. Checks the parser's
 * invariants: a status it may answer, a path that starts with '/' and holds
 * no query, bounded copies. Single-threaded; replayed over
 * tests/fuzz/corpus/http/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char auth_file[] = "# credentials\n"
				"token = s3cret-token\n"
				"basic = prom:pa:ss w0rd\n"
				"  basic=  other:x  \n"
				"junk line\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sift_http_req r;
	int st = sift_http_parse((const char *)data, size, &r);
	switch (st) {
	case 0: {
		if (r.path[0] != '/' || strchr(r.path, '?') || strlen(r.path) >= sizeof(r.path))
			abort();
		if (strlen(r.auth) >= sizeof(r.auth))
			abort();
		bool ok = sift_http_auth_ok(auth_file, r.auth);
		/* the only token that passes */
		const char *cred = r.auth + strcspn(r.auth, " ");
		cred += strspn(cred, " ");
		if (ok && strncasecmp(r.auth, "basic ", 6) != 0 && strcmp(cred, "s3cret-token") != 0)
			abort();
		static const char *const names[] = {"mx.example.org", NULL};
		if (strlen(r.host) >= sizeof(r.host) || strlen(r.origin) >= sizeof(r.origin))
			abort();
		/* a name the attacker can own is never allowed */
		if (strcasestr(r.host, "attacker") && sift_http_host_allowed(r.host, names))
			abort();
		if (strcasestr(r.origin, "attacker") && sift_http_origin_allowed(r.origin, names))
			abort();
		break;
	}
	case 400:
	case 405:
	case 414:
	case 431:
	case 505:
		break;
	default:
		abort();
	}
	/* the credential check on raw bytes, as a header value could be */
	if (size < 2048) {
		char *s = strndup((const char *)data, size);
		(void)sift_http_auth_ok(auth_file, s);
		free(s);
	}
	return 0;
}
