/*
 * fuzz_rbl.c - libFuzzer target for the rbl plugin's rbl_sites parser
 * (plugins/rbl/rbl.c, compiled in here): the input is the value of
 * rbl_sites, split into items at blanks and commas as the host splits a
 * list parameter.
 *
 * A parse either fails with a message naming rbl_sites and leaves nothing
 * allocated, or gives sites that keep the parser's promises: at most 64,
 * each with its configured text, a zone index in range, a zone that is a
 * valid lower-case domain without a final dot, a weight in range, and
 * distinct zones. Every site's filter is then run over a few answers, and
 * the first item is also read as a client address and reversed.
 * Replayed over tests/fuzz/corpus/rbl/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/rbl/rbl.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_sites(const struct rbl_conf *c)
{
	if (c->nsites > RBL_MAX_SITES || c->nzones > c->nsites)
		abort();
	for (size_t i = 0; i < c->nsites; i++) {
		const struct site *st = &c->site[i];
		if (!st->text || st->zone >= c->nzones || st->weight < -100000 || st->weight > 100000)
			abort();
	}
	for (size_t z = 0; z < c->nzones; z++) {
		const char *d = c->zones[z];
		size_t n = strlen(d);
		if (!domain_ok(d, n) || d[n - 1] == '.')
			abort();
		for (const char *p = d; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				abort();
		for (size_t k = 0; k < z; k++)
			if (strcmp(c->zones[k], d) == 0)
				abort();
	}
	static const unsigned char answers[][4] = {{127, 0, 0, 2},	 {127, 0, 0, 11}, {127, 0, 5, 3},
						   {127, 255, 255, 254}, {10, 0, 0, 2},	  {0, 0, 0, 0}};
	for (size_t i = 0; i < c->nsites; i++)
		for (size_t a = 0; a < sizeof(answers) / sizeof(answers[0]); a++) {
			bool m = site_matches(&c->site[i], answers[a]);
			if (!c->site[i].filtered && m != (answers[a][0] == 127))
				abort();
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	/* items at blanks and commas, as SIFT_P_LIST */
	const char *items[130];
	size_t n = 0;
	for (char *save = NULL, *t = strtok_r(text, " \t\r\n,", &save); t && n < 128;
	     t = strtok_r(NULL, " \t\r\n,", &save))
		items[n++] = t;
	items[n] = NULL;
	struct rbl_conf c = {.sites = items};
	char *err = NULL;
	if (parse_sites(&c, &err) < 0) {
		if (!err || strncmp(err, "rbl_sites: ", 11) != 0 || c.site || c.zones || c.nsites || c.nzones)
			abort();
		free(err);
	} else {
		if (err)
			abort();
		check_sites(&c);
		rbl_release(&c);
	}
	if (n > 0) {
		char rev[80];
		if (sift_dnsbl_name(items[0], rev, sizeof(rev)) && strlen(rev) >= sizeof(rev))
			abort();
	}
	free(text);
	return 0;
}
