/*
 * fuzz_dkim.c - libFuzzer target for the DKIM plugin's own parsing and
 * writing code (verification itself is libopendkim's): tag=value lists
 * (dk_tag_value, as used on DKIM-Signature fields and key records), key
 * records split for zone files (dk_record_zone_strings), key tables
 * (inline:{...} and texthash: files, without loading the key files) and
 * the signer (plugins/dkim/dkimsign.c: header and body canonicalization,
 * the folded DKIM-Signature value). plugins/dkim/dkimkeys.c and dkimsign.c
 * are compiled in here.
 *
 * The whole input is used by every part:
 *   - as a tag list: every tag of RFC 6376 §3.5 and §3.6.1 is looked up and
 *     the answer compared with a separate reading of the same rules (split
 *     at ';', the name before the first '=' with white space trimmed,
 *     names compared without case, the first match wins, white space
 *     removed from the value);
 *   - as a record: the zone strings must join back to it;
 *   - as the inside of inline:{...} and as a texthash: file (a memfd read
 *     through /proc/self/fd/N): every key found must be found again by
 *     name and by domain and selector;
 *   - as a message (header fields up to the first empty line, the body
 *     after, in pieces sized by the first byte), signed with an Ed25519 key
 *     for the first key table entry's domain and selector (or fixed ones):
 *     the signature's tags must give back v, a, c, d, s, h and a bh and b of
 *     the right form, and the verifier (plugins/dkim/dkimverify.c, compiled
 *     in too) must pass it, the body in one piece, whenever h= names From;
 *   - as a DKIM-Signature value and as a key record for the verifier's
 *     parsers: a signature without error has every required tag, a key
 *     record gives a key or a reason.
 * Replayed over tests/fuzz/corpus/dkim/ in every build by replay.c.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../plugins/dkim/dkimkeys.c"
#include "../../plugins/dkim/dkimsign.c"
#include "../../plugins/dkim/dkimverify.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
			      "MC4CAQAwBQYDK2VwBCIEICjA1n5s5fJEzbfjK8MGtSsJNMDY17NylHQNciv0Q1ia\n"
			      "-----END PRIVATE KEY-----\n";

static const char *const tags[] = {"v", "a", "b", "bh", "c", "d", "h", "i", "l", "q", "s", "t",
				   "x", "z", "k", "p",	"n", "g", "D", "S", "",	 " ", "=", ";"};

/* The reference reading of a tag list (see the comment at the top). */
static char *ref_tag_value(const char *list, const char *tag)
{
	const char *p = list;
	while (*p) {
		const char *semi = strchr(p, ';');
		const char *end = semi ? semi : p + strlen(p);
		const char *s = p;
		while (s < end && isspace((unsigned char)*s))
			s++;
		const char *eq = memchr(s, '=', (size_t)(end - s));
		if (eq) {
			const char *ne = eq;
			while (ne > s && isspace((unsigned char)ne[-1]))
				ne--;
			if ((size_t)(ne - s) == strlen(tag) && strncasecmp(s, tag, strlen(tag)) == 0) {
				char *out = malloc((size_t)(end - eq)), *o = out;
				for (const char *q = eq + 1; q < end; q++)
					if (!isspace((unsigned char)*q))
						*o++ = *q;
				*o = 0;
				return out;
			}
		}
		p = semi ? semi + 1 : end;
	}
	return NULL;
}

static void check_tags(const char *text)
{
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		char *got = dk_tag_value(text, tags[i]), *want = ref_tag_value(text, tags[i]);
		if ((got == NULL) != (want == NULL) || (got && strcmp(got, want) != 0))
			abort();
		if (got && (strchr(got, ';') || strlen(got) > strlen(text)))
			abort();
		free(got);
		free(want);
	}
}

/* The zone strings: "..." "..." with at most 255 bytes each. */
static void check_zone_strings(const char *text)
{
	char *z = dk_record_zone_strings(text);
	size_t n = strlen(text), off = 0;
	const char *p = z;
	for (;;) {
		if (*p++ != '"')
			abort();
		size_t k = n - off < 255 ? n - off : 255;
		if (memcmp(p, text + off, k) != 0 || p[k] != '"')
			abort();
		p += k + 1;
		off += k;
		if (off == n)
			break;
		if (*p++ != ' ')
			abort();
	}
	if (*p)
		abort();
	free(z);
}

static void check_table(const struct dk_keytable *kt)
{
	for (size_t i = 0; i < kt->n; i++) {
		const struct dk_key *k = &kt->keys[i];
		if (!k->name || !k->domain || !k->selector || !k->path || !*k->path)
			abort();
		if (dk_keytable_find(kt, k->name) != k || !dk_keytable_find_ds(kt, k->domain, k->selector) ||
		    !dk_domain_ok(k->domain) || !dk_domain_ok(k->selector))
			abort();
		for (const char *c = k->domain; *c; c++)
			if (isupper((unsigned char)*c))
				abort();
	}
}

static void load_tables(const char *text, size_t size, struct dk_keytable *first)
{
	struct dk_keytable kt;
	char *err = NULL;
	char *spec = malloc(size + 16);
	snprintf(spec, size + 16, "inline:{%s}", text);
	if (dk_keytable_load(spec, false, &kt, &err) == 0) {
		check_table(&kt);
		*first = kt;
	} else {
		if (!err || kt.n || kt.keys)
			abort();
		free(err);
	}
	free(spec);

	int fd = memfd_create("keytable", 0);
	if (fd < 0)
		return;
	if (write(fd, text, size) == (ssize_t)size) {
		char path[64];
		snprintf(path, sizeof(path), "texthash:/proc/self/fd/%d", fd);
		err = NULL;
		if (dk_keytable_load(path, false, &kt, &err) == 0) {
			check_table(&kt);
			dk_keytable_free(&kt);
		} else {
			if (!err)
				abort();
			free(err);
		}
	}
	close(fd);
}

#define MAX_FIELDS 64

/* Splits the message into header fields (name, value as after the colon,
 * folding kept) and the body. */
static size_t split_message(char *msg, char **names, char **values, char **body_r)
{
	size_t n = 0;
	char *p = msg;
	while (*p && *p != '\n' && !(p[0] == '\r' && p[1] == '\n')) {
		char *start = p;
		do {
			char *nl = strchr(p, '\n');
			p = nl ? nl + 1 : p + strlen(p);
		} while (*p == ' ' || *p == '\t');
		char *colon = memchr(start, ':', (size_t)(p - start));
		if (p[-1] == '\n')
			p[-1] = 0;
		if (p - 2 >= start && p[-2] == '\r')
			p[-2] = 0;
		if (colon && n < MAX_FIELDS) {
			*colon = 0;
			names[n] = start;
			values[n] = colon + 1;
			n++;
		}
	}
	if (*p == '\r')
		p++;
	if (*p == '\n')
		p++;
	*body_r = p;
	return n;
}

/* Our own signature must verify (when h= names From, as the verifier
 * requires). */
static void check_verify(const char *value, size_t n, char **names, char **values, const char *body,
			 EVP_PKEY *key, bool from)
{
	unsigned char raw[32];
	size_t rl = sizeof(raw);
	char rec[128] = "v=DKIM1; k=ed25519; p=";
	if (EVP_PKEY_get_raw_public_key(key, raw, &rl) != 1)
		abort();
	EVP_EncodeBlock((unsigned char *)rec + strlen(rec), raw, (int)rl);
	struct dkv_key *k = dkv_key_parse(rec);
	char *sv = malloc(strlen(value) + 2);
	sprintf(sv, " %s", value);
	const char *nm[MAX_FIELDS + 1], *vl[MAX_FIELDS + 1];
	for (size_t i = 0; i < n; i++)
		nm[i] = names[i], vl[i] = values[i];
	nm[n] = "DKIM-Signature";
	vl[n] = sv;
	struct dkv_sig s;
	dkv_sig_parse(sv, &s);
	const char *reason = NULL;
	enum dkv_result r = s.error ? DKV_PERMERROR : dkv_start(&s, k, 1700000000, 0, &reason);
	if (r == DKV_NONE) {
		if (dks_body(s.body, (const unsigned char *)body, strlen(body)) < 0)
			abort();
		r = dkv_finish(&s, k, n + 1, nm, vl, "DKIM-Signature", &reason);
	}
	if (!k || !k->pk || (r == DKV_PASS) != from)
		abort();
	dkv_sig_free(&s);
	dkv_key_free(k);
	free(sv);
}

/* The verifier's parsers on the input as a signature value and a record. */
static void check_verify_parsers(const char *text)
{
	struct dkv_sig s;
	dkv_sig_parse(text, &s);
	if (!s.error && (!s.d || !s.s || !s.a || !s.b || !s.bh || !s.nh || !s.siglen || !s.stripped))
		abort();
	dkv_sig_free(&s);
	struct dkv_key *k = dkv_key_parse(text);
	if (!k || (k->pk == NULL) == (k->reason == NULL))
		abort();
	dkv_key_free(k);
}

static void check_sign(const char *text, uint8_t mode, const struct dk_keytable *kt, EVP_PKEY *key)
{
	static const char *const sign_headers[] = {"From", "To", "Subject", "Date", "Message-ID", "Cc", NULL};
	static const char *const oversign[] = {"From", NULL};
	char *msg = strdup(text);
	char *names[MAX_FIELDS], *values[MAX_FIELDS], *body;
	size_t n = split_message(msg, names, values, &body);
	struct dks_params p = {
		.key = key,
		.domain = kt->n ? kt->keys[0].domain : "example.com",
		.selector = kt->n ? kt->keys[0].selector : "sel",
		.relaxed_headers = mode & 1,
		.relaxed_body = mode & 2,
		.now = 1700000000,
		.ttl_s = (mode & 4) ? 86400 : 0,
		.sign_headers = sign_headers,
		.oversign_headers = (mode & 8) ? oversign : NULL,
	};
	struct dks *s = dks_new(&p);
	if (!s)
		abort();
	size_t blen = strlen(body), piece = (size_t)(mode >> 4) + 1;
	for (size_t off = 0; off < blen; off += piece)
		if (dks_body(s, (const unsigned char *)body + off, blen - off < piece ? blen - off : piece) <
		    0)
			abort();
	char *value = NULL;
	const char *err = NULL;
	if (dks_finish(s, n, (const char *const *)names, (const char *const *)values, &value, &err) < 0)
		abort();
	dks_free(s);

	/* the expected h=: the signed fields present, then the oversigned */
	struct {
		char s[4096];
		size_t n;
	} h = {{0}, 0};
	for (size_t i = 0; i < n; i++)
		if (listed(sign_headers, names[i]))
			h.n += (size_t)snprintf(h.s + h.n, sizeof(h.s) - h.n, "%s%s", h.n ? ":" : "",
						names[i]);
	for (const char *const *o = p.oversign_headers; o && *o; o++)
		h.n += (size_t)snprintf(h.s + h.n, sizeof(h.s) - h.n, "%s%s", h.n ? ":" : "", *o);
	char c[32];
	snprintf(c, sizeof(c), "%s/%s", p.relaxed_headers ? "relaxed" : "simple",
		 p.relaxed_body ? "relaxed" : "simple");
	const char *want[][2] = {{"v", "1"},	  {"a", "ed25519-sha256"}, {"c", c},
				 {"d", p.domain}, {"s", p.selector},	   {"t", "1700000000"}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char *got = dk_tag_value(value, want[i][0]);
		if (!got || strcmp(got, want[i][1]) != 0)
			abort();
		free(got);
	}
	char *hv = dk_tag_value(value, "h"), *bh = dk_tag_value(value, "bh"), *b = dk_tag_value(value, "b"),
	     *x = dk_tag_value(value, "x");
	if ((h.n == 0) != (hv == NULL) || (hv && strcmp(hv, h.s) != 0))
		abort();
	if (!bh || strlen(bh) != 44 || !b || strlen(b) != 88 || (x != NULL) != (p.ttl_s > 0))
		abort();
	bool from = false;
	for (size_t i = 0; i < n; i++)
		from |= listed(sign_headers, names[i]) && strcasecmp(names[i], "from") == 0;
	from |= p.oversign_headers != NULL;
	check_verify(value, n, names, values, body, key, from);
	free(hv);
	free(bh);
	free(b);
	free(x);
	free(value);
	free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EVP_PKEY *key;
	if (!key && !(key = dks_load_key(key_pem)))
		abort();
	if (size > 65536)
		return 0;
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0;
	size_t len = strlen(text); /* C strings: the parsers never see past a NUL */

	check_tags(text);
	check_zone_strings(text);
	check_verify_parsers(text);
	struct dk_keytable first = {NULL, 0};
	load_tables(text, len, &first);
	check_sign(text, size ? data[0] : 0, &first, key);
	dk_keytable_free(&first);
	free(text);
	return 0;
}
