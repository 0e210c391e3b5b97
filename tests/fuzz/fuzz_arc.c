/*
 * fuzz_arc.c - libFuzzer target for the ARC header parsing of the arc
 * plugin (plugins/arc/arcchain.c, with the ARC-Message-Signature and
 * ARC-Seal parsers of plugins/dkim/dkimverify.c, compiled in here).
 *
 * The input is a header block: "Name: value" lines, a line starting with
 * white space continuing the previous field (the fold kept as CRLF, as the
 * host hands values over). The fields go through arc_chain_parse, checked:
 * cv is none only without ARC fields; a passing structure has 1..50 sets,
 * each with one field of each kind at indexes naming fields of that kind,
 * parsed without error, with cv=none at instance 1 and cv=pass above; a
 * failure names an instance in 0..50 and a reason. Every value also goes
 * through arc_aar_instance (0 or 1..50) and arc_aar_passes (results
 * NUL-terminated within their buffers, domains in lower case).
 * Replayed over tests/fuzz/corpus/arc/ in every build by replay.c.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../plugins/arc/arcchain.c"
#include "../../plugins/dkim/dkimsign.c"
#include "../../plugins/dkim/dkimverify.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXF 256

static void check_chain(size_t n, char **names, struct arc_chain *c)
{
	bool any = false;
	for (size_t i = 0; i < n; i++)
		any |= arc_kind(names[i]) != 0;
	if ((c->cv == ARC_CV_NONE) != !any)
		abort();
	if (c->cv == ARC_CV_FAIL && (c->fail_i > ARC_MAX || !c->reason))
		abort();
	if (c->cv != ARC_CV_PASS)
		return;
	if (c->n < 1 || c->n > ARC_MAX)
		abort();
	for (unsigned i = 1; i <= c->n; i++) {
		const struct arc_set *s = &c->set[i];
		if (!s->has_aar || !s->has_ams || !s->has_as || s->aar >= n || s->ams >= n || s->as >= n)
			abort();
		if (arc_kind(names[s->aar]) != F_AAR || arc_kind(names[s->ams]) != F_AMS ||
		    arc_kind(names[s->as]) != F_AS)
			abort();
		if (s->sig.error || s->seal.error || s->sig.instance != i || s->seal.instance != i ||
		    !s->seal.cv)
			abort();
		if (strcmp(s->seal.cv, i == 1 ? "none" : "pass") != 0)
			abort();
	}
}

static void check_aar(const char *v)
{
	unsigned i = arc_aar_instance(v);
	if (i > ARC_MAX)
		abort();
	char spf[64], dkim[96];
	memset(spf, 'x', sizeof(spf));
	memset(dkim, 'x', sizeof(dkim));
	arc_aar_passes(v, spf, sizeof(spf), dkim, sizeof(dkim));
	if (!memchr(spf, 0, sizeof(spf)) || !memchr(dkim, 0, sizeof(dkim)))
		abort();
	for (const char *p = spf; *p; p++)
		if (isupper((unsigned char)*p))
			abort();
	for (const char *p = dkim; *p; p++)
		if (isupper((unsigned char)*p))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	char *text = malloc(size * 2 + 1), *o = text;
	if (!text)
		return 0;
	/* bare LF to CRLF; NUL to space (header values are strings) */
	for (size_t i = 0; i < size; i++) {
		char ch = data[i] ? (char)data[i] : ' ';
		if (ch == '\n' && (o == text || o[-1] != '\r'))
			*o++ = '\r';
		*o++ = ch;
	}
	*o = 0;
	char *names[MAXF], *values[MAXF];
	size_t n = 0;
	char *p = text;
	while (*p && n < MAXF) {
		char *end = p;
		/* a field ends at a CRLF not followed by white space */
		while (*end && !(end[0] == '\r' && end[1] == '\n' && end[2] != ' ' && end[2] != '\t'))
			end++;
		char *next = *end ? end + 2 : end;
		*end = 0;
		char *colon = strchr(p, ':');
		if (colon) {
			*colon = 0;
			names[n] = p;
			values[n++] = colon + 1;
		}
		p = next;
	}
	struct arc_chain *c = calloc(1, sizeof(*c));
	if (c) {
		arc_chain_parse(n, (const char *const *)names, (const char *const *)values, c);
		check_chain(n, names, c);
		arc_chain_free(c);
		free(c);
	}
	for (size_t i = 0; i < n; i++)
		check_aar(values[i]);
	free(text);
	return 0;
}
