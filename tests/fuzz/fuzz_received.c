/*
 * fuzz_received.c - libFuzzer target for the spam engine's Received:
 * header parsing (relays, trust, envelope sender of the last hop) and its
 * RFC 2822 date parsing (plugins/spam/relay.c), with the evals built on
 * them, with trust inferred or from trusted/internal/msa_networks (by the
 * input's length). The input is lines: the first is a Date: value, every other one a
 * Received: value (a line starting with a blank continues the previous
 * header, as a fold). Replayed over tests/fuzz/corpus/received/ in every
 * build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/spam/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEADERS 200

static const char *const relay_evals[] = {"check_all_trusted",
					  "check_no_relays",
					  "check_relays_unparseable",
					  "check_for_shifted_date",
					  "check_for_no_rdns_dotcom_helo",
					  "helo_ip_mismatch",
					  "check_for_forged_yahoo_received_headers",
					  "check_for_forged_received_trail",
					  "check_for_fake_aol_relay_in_rcvd",
					  NULL};

/* trust inferred (no networks), or from trusted/internal/msa networks */
static struct spam_engine inferred, configured;

static void engines_init(void)
{
	char *bad = NULL;
	if (configured.trusted_conf)
		return;
	netset_add(&configured.trusted_nets, "192.0.2.0/24 !10.1.0.0/16 10.0.0.0/8 2001:db8::/32", &bad);
	netset_add(&configured.internal_nets, "10.", &bad);
	netset_add(&configured.msa_nets, "192.0.2.25", &bad);
	configured.trusted_conf = configured.internal_conf = true;
	free(bad);
}

static void check_relays(struct relayinfo *ri)
{
	if (ri->ntrusted > ri->n || ri->n > 64)
		abort();
	for (size_t i = 0; i < ri->n; i++) {
		const struct relay *r = &ri->r[i];
		if (!memchr(r->ip, 0, sizeof(r->ip)) || !memchr(r->rdns, 0, sizeof(r->rdns)) ||
		    !memchr(r->helo, 0, sizeof(r->helo)) || !memchr(r->by, 0, sizeof(r->by)) || !r->ip[0])
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	struct sift_mime_header h[MAX_HEADERS];
	size_t n = 0;
	for (char *line = text; line && n < MAX_HEADERS;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		if (n > 0 && (*line == ' ' || *line == '\t'))
			line[-1] = ' '; /* a fold: joined to the previous line */
		else {
			h[n].name = n == 0 ? "Date" : "Received";
			h[n].raw = h[n].value = line;
			n++;
		}
		line = nl ? nl + 1 : NULL;
	}
	/* one header at a time */
	for (size_t i = 0; i < n; i++) {
		struct relay rl;
		time_t t;
		int rc = parse_received(h[i].value, &rl);
		if (rc < -1 || rc > 1)
			abort();
		parse_rfc822_date(h[i].value, &t);
	}
	/* the message's relays and the evals on them */
	struct sift_mime mime = {.headers = h, .header_count = n};
	struct spam_input in = {.mime = &mime};
	engines_init();
	struct msgctx m = {.e = size % 2 ? &configured : &inferred, .in = &in, .mime = &mime};
	check_relays(relays(&m));
	lasthop_envfrom(&m);
	envelope_from(&m);
	struct rule r = {.name = "R", .eval_id = -1};
	for (const char *const *ev = relay_evals; *ev; ev++) {
		int id = eval_lookup(*ev);
		if (id < 0)
			abort();
		int hit = eval_get(id)(&m, &r);
		if (hit < 0 || hit > 1)
			abort();
	}
	relays_free(m.relays);
	free(text);
	return 0;
}
