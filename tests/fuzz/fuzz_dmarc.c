/*
 * fuzz_dmarc.c - libFuzzer target for the DMARC record parser and the
 * evaluation (plugins/dmarc/dmarcrec.c, compiled in here).
 *
 * The input is text, one item per line:
 *     RECORD
 *     FROM-DOMAIN
 *     SPF-RESULT SPF-DOMAIN        (a number 0..6 for enum dmarc_spf)
 *     [+|-|~]DKIM-DOMAIN ...       (one per line: + pass, - fail, ~ temperror)
 * Missing lines are empty. The record is parsed (checked: a record that
 * does not start with v=DMARC1 is never taken, policies and pct in range,
 * rua/ruf/fo NUL-terminated within their buffers), then the message is
 * evaluated with the record found at the From domain and at the
 * organizational domain, with samples 0 and 99 (checked: pass exactly when
 * an identifier aligned, an aligned identifier passed, no disposition for a
 * pass, the disposition never harsher than the policy, an override only
 * with a milder disposition). Organizational domains: the last two labels.
 * Replayed over tests/fuzz/corpus/dmarc/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/dmarc/dmarcrec.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool org2(void *arg, const char *d, char *out, size_t n)
{
	(void)arg;
	const char *p = d + strlen(d);
	int dots = 0;
	while (p > d) {
		p--;
		if (*p == '.' && ++dots == 2) {
			p++;
			break;
		}
	}
	snprintf(out, n, "%s", p);
	return dots >= 1;
}

static void check_record(const char *txt, const struct dmarc_record *r, enum dmarc_parse res)
{
	if (res != DMARC_REC_NOT_DMARC && !dmarc_is_record(txt))
		abort();
	if (res == DMARC_REC_NOT_DMARC)
		return;
	if ((unsigned)r->p > DMARC_P_REJECT || (unsigned)r->sp > DMARC_P_REJECT || r->pct < 0 || r->pct > 100)
		abort();
	if (memchr(r->rua, 0, sizeof(r->rua)) == NULL || memchr(r->ruf, 0, sizeof(r->ruf)) == NULL ||
	    memchr(r->fo, 0, sizeof(r->fo)) == NULL)
		abort();
	if (res == DMARC_REC_P_NONE_FALLBACK && (r->p != DMARC_P_NONE || !r->rua_valid))
		abort();
}

static void check_eval(const struct dmarc_eval *e)
{
	bool any = false;
	for (size_t i = 0; i < e->ndkim; i++) {
		if (e->dkim[i].aligned && e->dkim[i].result != DMARC_DKIM_PASS)
			abort();
		any |= e->dkim[i].aligned;
	}
	if (e->spf.aligned && e->spf.result != DMARC_SPF_PASS)
		abort();
	any |= e->spf.aligned;
	if (any != (e->dkim_aligned || e->spf_aligned))
		abort();
	if (e->have_record && (e->result == DMARC_R_PASS) != any)
		abort();
	if ((e->result == DMARC_R_PASS || e->result == DMARC_R_TEMPERROR) && e->disposition != DMARC_P_NONE)
		abort();
	if (e->disposition > e->policy || (e->override && e->disposition == e->policy))
		abort();
	if ((unsigned)e->result >= DMARC_R_MAX)
		abort();
}

static size_t next_line(const char *s, size_t len, size_t *pos, char *out, size_t n)
{
	size_t k = 0;
	while (*pos < len && s[*pos] != '\n') {
		if (k + 1 < n)
			out[k++] = s[*pos];
		(*pos)++;
	}
	if (*pos < len)
		(*pos)++;
	out[k] = 0;
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	const char *s = (const char *)data;
	size_t pos = 0;
	char line[2048];
	static struct dmarc_eval e;
	memset(&e, 0, sizeof(e));
	next_line(s, size, &pos, line, sizeof(line));
	enum dmarc_parse res = dmarc_record_parse(line, &e.rec);
	check_record(line, &e.rec, res);
	next_line(s, size, &pos, line, sizeof(line));
	dmarc_domain_norm(line, e.from_domain, sizeof(e.from_domain));
	org2(NULL, e.from_domain, e.org_domain, sizeof(e.org_domain));
	next_line(s, size, &pos, line, sizeof(line));
	char *sp = strchr(line, ' ');
	e.spf.result = (line[0] >= '0' && line[0] <= '6') ? line[0] - '0' : 0;
	if (sp)
		snprintf(e.spf.domain, sizeof(e.spf.domain), "%.255s", sp + 1);
	while (pos < size && e.ndkim < DMARC_MAX_DKIM) {
		next_line(s, size, &pos, line, sizeof(line));
		struct dmarc_auth *a = &e.dkim[e.ndkim++];
		a->result = line[0] == '+'   ? DMARC_DKIM_PASS
			    : line[0] == '~' ? DMARC_DKIM_TEMPERROR
					     : DMARC_DKIM_FAIL;
		snprintf(a->domain, sizeof(a->domain), "%.255s",
			 line[0] == '+' || line[0] == '-' || line[0] == '~' ? line + 1 : line);
	}
	struct dmarc_eval copy = e;
	for (int at_org = 0; at_org < 2; at_org++)
		for (int sample = 0; sample < 100; sample += 99) {
			e = copy;
			e.have_record = res == DMARC_REC_OK || res == DMARC_REC_P_NONE_FALLBACK;
			e.record_at_org = at_org;
			dmarc_evaluate(&e, sample, org2, NULL);
			check_eval(&e);
		}
	return 0;
}
