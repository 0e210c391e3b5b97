/*
 * fuzz_ratelimit.c - libFuzzer target for the ratelimit plugin's rule
 * parser (plugins/ratelimit/ratelimit.c, compiled in here): the input is
 * the value of ratelimit_rules, `{ name=... key=... messages=N/W ... }`
 * blocks. The host is a stand-in whose map_open accepts static: and
 * inline: specs (no file is opened).
 *
 * A parse either fails with a message and leaves nothing allocated after
 * rl_release, or gives rules that keep the parser's promises: a unique
 * valid name, 1..4 known selectors, at least one limit, every limit
 * positive with a window of 1 s..31 d, prefixes in range, a known action,
 * no control character in a text. Every rule's counter key and the client
 * buckets of a few addresses at its prefixes are then built and checked.
 * Replayed over tests/fuzz/corpus/ratelimit/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/ratelimit/ratelimit.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* The host's reply check (lib/reply.c, in siftcore). */
const char *sift_reply_check(char cls, const char *code, const char *xcode, const char *text);

static const struct sift_map *fake_map_open(const char *spec, char **err_r)
{
	static const char the_map;
	if (strncmp(spec, "static:", 7) == 0 || strncmp(spec, "inline:{", 8) == 0)
		return (const struct sift_map *)&the_map;
	*err_r = strdup("not a map in this test");
	return NULL;
}

static struct sift_host fake_host = {
	.struct_size = sizeof(struct sift_host), .map_open = fake_map_open, .reply_check = sift_reply_check};

static void check_rule(const struct rl_conf *c, size_t i)
{
	const struct rule *r = &c->rules[i];
	if (!r->name || !valid_name(r->name) || r->nsels < 1 || r->nsels > MAX_SELS)
		abort();
	for (size_t j = 0; j < i; j++)
		if (strcmp(c->rules[j].name, r->name) == 0)
			abort();
	bool per_rcpt = false, any = false;
	for (int s = 0; s < r->nsels; s++) {
		if (r->sels[s] < 0 || r->sels[s] >= S_MAX)
			abort();
		per_rcpt |= r->sels[s] == S_RCPT || r->sels[s] == S_RCPT_DOMAIN;
	}
	if (per_rcpt != r->per_rcpt)
		abort();
	for (int m = 0; m < M_MAX; m++) {
		if (!r->lim[m].max)
			continue;
		any = true;
		if (r->lim[m].max < 0 || r->lim[m].window_ms < 1000 || r->lim[m].window_ms > 31LL * 86400000)
			abort();
	}
	if (!any || r->v4_prefix < 8 || r->v4_prefix > 32 || r->v6_prefix < 16 || r->v6_prefix > 128 ||
	    r->action < A_LOG || r->action > A_REJECT || r->profile < PF_ANY || r->profile > PF_ORIGINATING)
		abort();
	for (const char *p = r->text; p && *p; p++)
		if ((unsigned char)*p < 0x20)
			abort();
}

static void check_buckets(const struct rl_conf *c, size_t i)
{
	static const char *const addrs[] = {"192.0.2.77", "::ffff:198.51.100.9", "2001:db8:1:2:3:4:5:6",
					    "not-an-address", ""};
	const struct rule *r = &c->rules[i];
	for (size_t a = 0; a < sizeof(addrs) / sizeof(addrs[0]); a++) {
		char out[MAX_VALUE];
		client_bucket(addrs[a], r->v4_prefix, r->v6_prefix, out, sizeof(out));
		if (strlen(out) >= sizeof(out))
			abort();
		if (a == 0 && r->v4_prefix == 32 && strcmp(out, "192.0.2.77") != 0)
			abort();
		if (a < 2 && r->v4_prefix < 32 && !strchr(out, '/'))
			abort();
	}
	for (int m = 0; m < M_MAX; m++) {
		if (!r->lim[m].max)
			continue;
		char key[MAX_VALUE * 2 + 128];
		counter_key(c, r, m, 12345, "192.0.2.0/24", key, sizeof(key));
		if (strncmp(key, c->key_prefix, strlen(c->key_prefix)) != 0 ||
		    strncmp(key + strlen(c->key_prefix), r->name, strlen(r->name)) != 0)
			abort();
		double e = estimate(3, 4, 1700000000123LL, r->lim[m].window_ms);
		if (!(e >= 4 && e <= 7))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	char *spec = malloc(size + 1);
	memcpy(spec, data, size);
	spec[size] = 0;
	host = &fake_host;
	struct rl_conf c;
	memset(&c, 0, sizeof(c));
	c.rules_spec = spec;
	c.ipv4_prefix = 32;
	c.ipv6_prefix = 64;
	c.key_prefix = "rl:";
	char *err = NULL;
	if (parse_rules(&c, &err) == 0) {
		if (err || c.nrules > MAX_RULES)
			abort();
		for (size_t i = 0; i < c.nrules; i++) {
			check_rule(&c, i);
			check_buckets(&c, i);
		}
	} else if (!err || !*err) {
		abort();
	}
	free(err);
	rl_release(&c);
	if (c.rules || c.nrules > MAX_RULES)
		abort();
	free(spec);
	return 0;
}
