/*
 * fuzz_spf.c - libFuzzer target for the SPF evaluator (plugins/spf/spf_eval.c,
 * compiled in here): record parsing, the mechanisms, include/redirect,
 * the lookup and void limits, macro expansion in domain-specs and in
 * explanations.
 *
 * The input is text. Its first line is the request:
 *     CLIENT-IP SENDER HELO [DEFAULT-EXPLANATION...]
 * ("-" for an empty sender or HELO). Every further line is one DNS record
 * served to the evaluator:
 *     NAME TYPE DATA
 * TYPE is TXT (DATA: the rest of the line, one record per line), A or AAAA
 * (an address), MX (PREFERENCE HOST), PTR (HOST), or NX / TEMP / NODATA
 * (DATA ignored: the name gives NXDOMAIN, a temporary failure or no
 * records of any type). A name without a line of the queried type is
 * NODATA when it has other records, NXDOMAIN when it has none.
 *
 * The request is evaluated for MAIL FROM and for HELO, with the default
 * limits and with tight ones; results are checked (a known result, an
 * explanation only for fail, NUL-terminated fields, lookup counts within
 * the limit, a problem only for temperror/permerror). Replayed over
 * tests/fuzz/corpus/spf/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../plugins/spf/spf_eval.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS 256

struct zrec {
	char name[256];
	int type; /* T_* or a negative status */
	unsigned char rdata[1024];
	size_t len;
};

#define Z_NX	 (-1)
#define Z_TEMP	 (-2)
#define Z_NODATA (-3)

struct zone {
	struct zrec rec[MAX_RECORDS];
	size_t n;
	int queries;
};

static bool same_name(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la && a[la - 1] == '.')
		la--;
	if (lb && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* HOST -> uncompressed wire name; false when it does not fit or has an
 * empty label. */
static bool to_wire(const char *host, unsigned char *out, size_t cap, size_t *len_r)
{
	size_t o = 0;
	const char *p = host;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l == 0 || l > 63 || o + l + 2 > cap)
			return false;
		out[o++] = (unsigned char)l;
		memcpy(out + o, p, l);
		o += l;
		p += l;
		if (*p == '.')
			p++;
	}
	if (o + 1 > cap)
		return false;
	out[o++] = 0;
	*len_r = o;
	return true;
}

static void add_record(struct zone *z, const char *name, const char *type, const char *rd)
{
	if (z->n == MAX_RECORDS || strlen(name) >= sizeof(z->rec[0].name))
		return;
	struct zrec *r = &z->rec[z->n];
	memset(r, 0, sizeof(*r));
	strcpy(r->name, name);
	if (strcasecmp(type, "TXT") == 0) {
		r->type = T_TXT;
		r->len = strlen(rd);
		if (r->len >= sizeof(r->rdata))
			return;
		memcpy(r->rdata, rd, r->len + 1);
	} else if (strcasecmp(type, "A") == 0 || strcasecmp(type, "AAAA") == 0) {
		bool v6 = strcasecmp(type, "AAAA") == 0;
		r->type = v6 ? T_AAAA : T_A;
		r->len = v6 ? 16 : 4;
		if (inet_pton(v6 ? AF_INET6 : AF_INET, rd, r->rdata) != 1)
			return;
	} else if (strcasecmp(type, "MX") == 0) {
		char *end;
		unsigned long pref = strtoul(rd, &end, 10);
		while (*end == ' ')
			end++;
		r->type = T_MX;
		r->rdata[0] = (unsigned char)(pref >> 8);
		r->rdata[1] = (unsigned char)pref;
		if (!to_wire(end, r->rdata + 2, sizeof(r->rdata) - 2, &r->len))
			return;
		r->len += 2;
	} else if (strcasecmp(type, "PTR") == 0) {
		r->type = T_PTR;
		if (!to_wire(rd, r->rdata, sizeof(r->rdata), &r->len))
			return;
	} else if (strcasecmp(type, "NX") == 0) {
		r->type = Z_NX;
	} else if (strcasecmp(type, "TEMP") == 0) {
		r->type = Z_TEMP;
	} else if (strcasecmp(type, "NODATA") == 0) {
		r->type = Z_NODATA;
	} else {
		return;
	}
	z->n++;
}

/* The resolver: one malloc'd block, as the host's dns_query returns. */
static struct sift_dns_result *zone_query(void *arg, const char *name, int rrtype, long timeout_ms)
{
	struct zone *z = arg;
	(void)timeout_ms;
	if (!name || strlen(name) > 1024 || ++z->queries > 1000)
		abort(); /* the evaluator bounds names and lookups */
	enum sift_dns_status st = SIFT_DNS_NXDOMAIN;
	size_t count = 0, bytes = 0;
	for (size_t i = 0; i < z->n; i++) {
		const struct zrec *r = &z->rec[i];
		if (!same_name(r->name, name))
			continue;
		if (r->type == Z_NX || r->type == Z_TEMP) {
			st = r->type == Z_NX ? SIFT_DNS_NXDOMAIN : SIFT_DNS_TEMPFAIL;
			count = 0;
			break;
		}
		st = SIFT_DNS_NODATA;
		if (r->type == rrtype) {
			count++;
			bytes += r->len + 1;
		}
	}
	if (count)
		st = SIFT_DNS_OK;
	size_t size = sizeof(struct sift_dns_result) + count * (sizeof(char *) + sizeof(size_t)) + bytes;
	struct sift_dns_result *res = calloc(1, size);
	if (!res)
		abort();
	res->status = st;
	res->rrtype = rrtype;
	res->ttl = 300;
	res->count = count;
	const unsigned char **rr = (const unsigned char **)(res + 1);
	size_t *len = (size_t *)(rr + count);
	unsigned char *d = (unsigned char *)(len + count);
	size_t k = 0;
	for (size_t i = 0; i < z->n && k < count; i++) {
		const struct zrec *r = &z->rec[i];
		if (!same_name(r->name, name) || r->type != rrtype)
			continue;
		memcpy(d, r->rdata, r->len);
		d[r->len] = 0;
		rr[k] = d;
		len[k] = r->len;
		d += r->len + 1;
		k++;
	}
	res->rr = rr;
	res->len = len;
	return res;
}

static void check_res(const struct spf_req *q, const struct spf_res *res)
{
	if (res->result < 0 || res->result >= SPF_RESULT_MAX)
		abort();
	if (res->explanation && res->result != SPF_FAIL)
		abort();
	if (memchr(res->sender, 0, sizeof(res->sender)) == NULL ||
	    memchr(res->domain, 0, sizeof(res->domain)) == NULL ||
	    memchr(res->mechanism, 0, sizeof(res->mechanism)) == NULL ||
	    memchr(res->problem, 0, sizeof(res->problem)) == NULL)
		abort();
	if (res->problem[0] && res->result != SPF_TEMPERROR && res->result != SPF_PERMERROR)
		abort();
	/* one lookup over the limit is counted before permerror stops */
	if (res->lookups > q->max_lookups + 1 || res->voids > q->max_void + 1)
		abort();
	if (res->explanation && strlen(res->explanation) >= MAX_EXPAND)
		abort();
}

static void run(struct zone *z, struct spf_req *q)
{
	static const int limits[2][3] = {{10, 2, 10}, {2, 0, 1}};
	for (int id = 0; id < 2; id++)
		for (int l = 0; l < 2; l++) {
			q->identity = id ? SPF_ID_HELO : SPF_ID_MAILFROM;
			q->max_lookups = limits[l][0];
			q->max_void = limits[l][1];
			q->max_names = limits[l][2];
			z->queries = 0;
			struct spf_res res;
			spf_eval(q, &res);
			check_res(q, &res);
			spf_res_free(&res);
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	for (size_t i = 0; i < size; i++)
		if (text[i] == 0 || text[i] == '\r')
			text[i] = ' ';

	struct zone *z = calloc(1, sizeof(*z));
	char *save = NULL, *line = strtok_r(text, "\n", &save);
	char *fields[4] = {NULL, NULL, NULL, NULL};
	if (line) {
		/* the request: three words, then the default explanation */
		char *p = line;
		for (int i = 0; i < 3 && p; i++) {
			while (*p == ' ')
				p++;
			fields[i] = p;
			p = strchr(p, ' ');
			if (p)
				*p++ = 0;
		}
		fields[3] = p;
	}
	for (char *l = strtok_r(NULL, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char *name = l, *type = strchr(l, ' ');
		if (!type)
			continue;
		*type++ = 0;
		char *rd = strchr(type, ' ');
		if (rd)
			*rd++ = 0;
		add_record(z, name, type, rd ? rd : "");
	}

	struct spf_req q;
	memset(&q, 0, sizeof(q));
	if (!fields[0] || spf_parse_ip(fields[0], &q.family, q.addr) < 0) {
		q.family = AF_INET;
		memcpy(q.addr, "\xc0\x00\x02\x01", 4);
	}
	q.sender = fields[1] && strcmp(fields[1], "-") != 0 ? fields[1] : "";
	q.helo = fields[2] && strcmp(fields[2], "-") != 0 ? fields[2] : NULL;
	q.receiver = "receiver.example";
	q.dns = zone_query;
	q.dns_arg = z;
	q.default_exp = fields[3];
	run(z, &q);

	free(z);
	free(text);
	return 0;
}
