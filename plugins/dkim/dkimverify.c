/*
 * dkimverify.c - DKIM verification with keys parsed once (see
 * dkimverify.h).
 *
 * Signatures (RFC 6376 3.5): v=1, a=, b=, bh=, d=, h= (naming From) and s=
 * are required; c= defaults to simple/simple; i= must be in d= or a
 * subdomain; q= must offer dns/txt; t= and x= are decimal and x= must not
 * precede t=; a tag given twice, a character outside printable ASCII or a
 * tag without "=" makes the signature malformed (permerror). rsa-sha1 is
 * recognised only to be failed (RFC 8301).
 *
 * Key records (RFC 6376 3.6.1): v= if present is DKIM1 and first; k= is
 * rsa (default) or ed25519; h= if present must offer sha256; s= if
 * present must offer email or *; t=s makes the key strict; an empty p= is
 * a revoked key; RSA keys are SubjectPublicKeyInfo of at least 1024 bits,
 * Ed25519 keys 32 raw bytes.
 */
#include "dkimverify.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define DKV_MAX_TAGS 64
#define DKV_MAX_H    512
#define DKV_MINBITS  1024

struct tag {
	char name[16];
	char *value; /* white space removed, malloc'd */
};

static void tags_free(struct tag *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].value);
}

/* Splits a tag-list into tags. 0, or -1 (syntax error, duplicate tag, too
 * many tags or out of memory) with what was read so far in t[0..*n). */
static int parse_tags(const char *list, struct tag *t, size_t *n)
{
	*n = 0;
	for (const unsigned char *p = (const unsigned char *)list; *p; p++)
		if ((*p < 0x20 && *p != '\t' && *p != '\r' && *p != '\n') || *p > 0x7e)
			return -1;
	const char *p = list;
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			return 0;
		const char *name = p;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		size_t nl = (size_t)(p - name);
		while (isspace((unsigned char)*p))
			p++;
		if (nl == 0 || nl >= sizeof(t->name) || *p != '=' || !isalpha((unsigned char)*name) ||
		    *n == DKV_MAX_TAGS)
			return -1;
		p++;
		const char *v = p;
		while (*p && *p != ';')
			p++;
		char *val = malloc((size_t)(p - v) + 1), *o = val;
		if (!val)
			return -1;
		for (const char *q = v; q < p; q++)
			if (!isspace((unsigned char)*q))
				*o++ = *q;
		*o = 0;
		for (size_t i = 0; i < *n; i++)
			if (strlen(t[i].name) == nl && strncmp(t[i].name, name, nl) == 0) {
				free(val);
				return -1;
			}
		memcpy(t[*n].name, name, nl);
		t[*n].name[nl] = 0;
		t[*n].value = val;
		(*n)++;
		if (*p == ';')
			p++;
	}
}

static char *tag_take(struct tag *t, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0) {
			char *v = t[i].value;
			t[i].value = NULL;
			return v;
		}
	return NULL;
}

static const char *tag_peek(const struct tag *t, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return t[i].value;
	return NULL;
}

static bool parse_num(const char *v, unsigned long long *out)
{
	if (!v || !*v || strlen(v) > 19)
		return false;
	unsigned long long x = 0;
	for (; *v; v++) {
		if (!isdigit((unsigned char)*v))
			return false;
		x = x * 10 + (unsigned)(*v - '0');
	}
	*out = x;
	return true;
}

/* Decodes base64 (white space already removed). NULL on bad input. */
static unsigned char *unb64(const char *in, size_t *len_r)
{
	size_t n = strlen(in);
	if (n == 0 || n % 4 != 0)
		return NULL;
	unsigned char *out = malloc(n / 4 * 3 + 1);
	if (!out)
		return NULL;
	int k = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
	if (k < 0) {
		free(out);
		return NULL;
	}
	size_t pad = (in[n - 1] == '=') + (in[n - 2] == '=');
	*len_r = (size_t)k - pad;
	return out;
}

/* The value with the b= tag's value (and white space around it) removed. */
static char *strip_b(const char *value)
{
	size_t n = strlen(value);
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	const char *p = value;
	while (*p) {
		const char *start = p;
		while (*p && *p != ';' && *p != '=')
			p++;
		const char *ne = p, *ns = start;
		while (ns < ne && isspace((unsigned char)*ns))
			ns++;
		while (ne > ns && isspace((unsigned char)ne[-1]))
			ne--;
		bool isb = *p == '=' && ne - ns == 1 && *ns == 'b';
		while (*p && *p != ';')
			p++;
		if (isb) {
			const char *eq = strchr(start, '=');
			memcpy(o, start, (size_t)(eq + 1 - start));
			o += eq + 1 - start;
		} else {
			memcpy(o, start, (size_t)(p - start));
			o += p - start;
		}
		if (*p == ';')
			*o++ = *p++;
	}
	*o = 0;
	return out;
}

static bool split_h(struct dkv_sig *s, const char *h)
{
	bool from = false;
	s->h = calloc(DKV_MAX_H, sizeof(*s->h));
	if (!s->h)
		return false;
	const char *p = h;
	while (*p && s->nh < DKV_MAX_H) {
		size_t k = strcspn(p, ":");
		if (k == 0)
			return false;
		s->h[s->nh] = strndup(p, k);
		if (!s->h[s->nh])
			return false;
		from |= strcasecmp(s->h[s->nh], "from") == 0;
		s->nh++;
		p += k;
		if (*p == ':' && !*++p)
			return false;
	}
	return from && !*p;
}

static bool in_domain(const char *i, const char *d)
{
	const char *at = i ? strrchr(i, '@') : NULL;
	if (!at)
		return false;
	const char *id = at + 1;
	size_t il = strlen(id), dl = strlen(d);
	if (il == dl)
		return strcasecmp(id, d) == 0;
	return il > dl && id[il - dl - 1] == '.' && strcasecmp(id + il - dl, d) == 0;
}

/* ARC: i= is the instance (1..50); the seal has cv= and no h=/bh=. */
static const char *check_arc(struct dkv_sig *s, enum dkv_kind kind, struct tag *t, size_t n)
{
	unsigned long long inst = 0;
	if (!parse_num(s->i, &inst) || inst < 1 || inst > DKV_ARC_MAX)
		return "malformed ARC field (i=)";
	s->instance = (unsigned)inst;
	free(s->i);
	s->i = NULL;
	if (kind == DKV_K_AMS)
		return NULL;
	if (tag_peek(t, n, "h") || tag_peek(t, n, "bh"))
		return "malformed ARC-Seal (h= or bh=)";
	if (!(s->cv = tag_take(t, n, "cv")) ||
	    (strcmp(s->cv, "none") != 0 && strcmp(s->cv, "pass") != 0 && strcmp(s->cv, "fail") != 0))
		return "malformed ARC-Seal (cv=)";
	return NULL;
}

static const char *check_sig(struct dkv_sig *s, enum dkv_kind kind, const char *value, struct tag *t,
			     size_t n)
{
	const char *v = tag_peek(t, n, "v");
	if (kind == DKV_K_DKIM && (!v || strcmp(v, "1") != 0))
		return "malformed signature (v=)";
	const char *arc_err = kind != DKV_K_DKIM ? check_arc(s, kind, t, n) : NULL;
	if (arc_err)
		return arc_err;
	if (!s->d || !s->s || !s->a || !s->b || (kind != DKV_K_SEAL && (!s->bh || !tag_peek(t, n, "h"))))
		return "malformed signature (a required tag is missing)";
	if (!*s->d || !*s->s)
		return "malformed signature (d= or s=)";
	if (strcasecmp(s->a, "rsa-sha256") == 0)
		s->alg = DKV_A_RSA_SHA256;
	else if (strcasecmp(s->a, "ed25519-sha256") == 0)
		s->alg = DKV_A_ED25519_SHA256;
	else if (strcasecmp(s->a, "rsa-sha1") == 0)
		s->alg = DKV_A_RSA_SHA1;
	if (kind != DKV_K_SEAL && !split_h(s, tag_peek(t, n, "h")))
		return "malformed signature (h= does not name From)";
	const char *c = tag_peek(t, n, "c");
	if (c) {
		const char *sl = strchr(c, '/');
		size_t hl = sl ? (size_t)(sl - c) : strlen(c);
		const char *b = sl ? sl + 1 : "simple";
		if (hl == 7 && strncasecmp(c, "relaxed", 7) == 0)
			s->relaxed_h = true;
		else if (!(hl == 6 && strncasecmp(c, "simple", 6) == 0))
			return "malformed signature (c=)";
		if (strcasecmp(b, "relaxed") == 0)
			s->relaxed_b = true;
		else if (strcasecmp(b, "simple") != 0)
			return "malformed signature (c=)";
	}
	const char *q = tag_peek(t, n, "q");
	if (q && !strstr(q, "dns/txt"))
		return "malformed signature (q=)";
	if (s->i && !in_domain(s->i, s->d))
		return "malformed signature (i= not in d=)";
	if ((s->has_l = tag_peek(t, n, "l") != NULL) && !parse_num(tag_peek(t, n, "l"), &s->l))
		return "malformed signature (l=)";
	if ((s->has_t = tag_peek(t, n, "t") != NULL) && !parse_num(tag_peek(t, n, "t"), &s->t))
		return "malformed signature (t=)";
	if ((s->has_x = tag_peek(t, n, "x") != NULL) && !parse_num(tag_peek(t, n, "x"), &s->x))
		return "malformed signature (x=)";
	if (s->has_t && s->has_x && s->x < s->t)
		return "malformed signature (x= before t=)";
	if (s->alg == DKV_A_UNKNOWN)
		return "unknown algorithm";
	if (!(s->sig = unb64(s->b, &s->siglen)) || s->siglen == 0)
		return "malformed signature (b=)";
	if (!(s->stripped = strip_b(value)))
		return "out of memory";
	return NULL;
}

void dkv_sig_parse(const char *value, struct dkv_sig *s)
{
	dkv_sig_parse_kind(value, DKV_K_DKIM, s);
}

void dkv_sig_parse_kind(const char *value, enum dkv_kind kind, struct dkv_sig *s)
{
	memset(s, 0, sizeof(*s));
	struct tag t[DKV_MAX_TAGS];
	size_t n = 0;
	int rc = parse_tags(value, t, &n);
	s->d = tag_take(t, n, "d");
	s->s = tag_take(t, n, "s");
	s->a = tag_take(t, n, "a");
	s->i = tag_take(t, n, "i");
	s->b = tag_take(t, n, "b");
	s->bh = tag_take(t, n, "bh");
	if (s->a && strcasecmp(s->a, "rsa-sha1") == 0)
		s->alg = DKV_A_RSA_SHA1;
	if (rc < 0)
		s->error = "malformed signature";
	else
		s->error = check_sig(s, kind, value, t, n);
	tags_free(t, n);
}

void dkv_sig_free(struct dkv_sig *s)
{
	free(s->d);
	free(s->s);
	free(s->a);
	free(s->i);
	free(s->b);
	free(s->bh);
	free(s->stripped);
	free(s->cv);
	for (size_t i = 0; s->h && i < s->nh; i++)
		free(s->h[i]);
	free(s->h);
	free(s->sig);
	dks_free(s->body);
	memset(s, 0, sizeof(*s));
}

/* ---- key records ------------------------------------------------------------- */

static bool list_has(const char *list, const char *a, const char *b)
{
	const char *p = list;
	while (*p) {
		size_t k = strcspn(p, ":");
		if ((strlen(a) == k && strncasecmp(p, a, k) == 0) ||
		    (b && strlen(b) == k && strncasecmp(p, b, k) == 0))
			return true;
		p += k;
		if (*p)
			p++;
	}
	return false;
}

static void key_error(struct dkv_key *k, enum dkv_result r, const char *reason)
{
	k->err = r;
	k->reason = reason;
}

static void key_decode(struct dkv_key *k, const char *p)
{
	size_t len = 0;
	unsigned char *der = unb64(p, &len);
	if (!der) {
		key_error(k, DKV_PERMERROR, "key decode failed");
		return;
	}
	if (k->ed25519) {
		if (len == 32)
			k->pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, len);
		k->bits = 256;
	} else {
		const unsigned char *q = der;
		k->pk = d2i_PUBKEY(NULL, &q, (long)len);
		if (k->pk && EVP_PKEY_get_base_id(k->pk) != EVP_PKEY_RSA) {
			EVP_PKEY_free(k->pk);
			k->pk = NULL;
		}
		if (k->pk)
			k->bits = EVP_PKEY_get_bits(k->pk);
	}
	free(der);
	if (!k->pk)
		key_error(k, DKV_PERMERROR, "key decode failed");
	else if (!k->ed25519 && k->bits < DKV_MINBITS) {
		EVP_PKEY_free(k->pk);
		k->pk = NULL;
		key_error(k, DKV_FAIL, "RSA key shorter than 1024 bits (RFC 8301)");
	}
}

struct dkv_key *dkv_key_parse(const char *record)
{
	struct dkv_key *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	struct tag t[DKV_MAX_TAGS];
	size_t n = 0;
	const char *v, *kt, *h, *sv, *fl, *p;
	if (parse_tags(record, t, &n) < 0)
		key_error(k, DKV_PERMERROR, "key syntax error");
	else if ((v = tag_peek(t, n, "v")) && (strcmp(t[0].name, "v") != 0 || strcmp(v, "DKIM1") != 0))
		key_error(k, DKV_PERMERROR, "key syntax error (v=)");
	else if (!(p = tag_peek(t, n, "p")))
		key_error(k, DKV_PERMERROR, "key syntax error (no p=)");
	else if ((kt = tag_peek(t, n, "k")) && strcasecmp(kt, "rsa") != 0 && strcasecmp(kt, "ed25519") != 0)
		key_error(k, DKV_PERMERROR, "unknown key type");
	else if ((h = tag_peek(t, n, "h")) && !list_has(h, "sha256", NULL))
		key_error(k, DKV_FAIL, "key does not allow sha256 (h=)");
	else if ((sv = tag_peek(t, n, "s")) && !list_has(sv, "email", "*"))
		key_error(k, DKV_PERMERROR, "key is not for email (s=)");
	else if (!*p)
		key_error(k, DKV_FAIL, "key revoked");
	else {
		k->ed25519 = kt && strcasecmp(kt, "ed25519") == 0;
		fl = tag_peek(t, n, "t");
		k->strict = fl && list_has(fl, "s", NULL);
		k->sha256_ok = true;
		key_decode(k, p);
	}
	tags_free(t, n);
	return k;
}

void dkv_key_free(struct dkv_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pk);
	free(k);
}

/* ---- verification ------------------------------------------------------------ */

enum dkv_result dkv_sig_times(const struct dkv_sig *s, time_t now, long long drift_s, const char **reason_r)
{
	unsigned long long tnow = now > 0 ? (unsigned long long)now : 0;
	unsigned long long drift = drift_s > 0 ? (unsigned long long)drift_s : 0;
	if (s->has_t && s->t > tnow + drift) {
		*reason_r = "signature timestamp in the future";
		return DKV_FAIL;
	}
	if (s->has_x && s->x + drift < tnow) {
		*reason_r = "signature expired";
		return DKV_FAIL;
	}
	return DKV_NONE;
}

static enum dkv_result key_check(const struct dkv_sig *s, const struct dkv_key *k, time_t now,
				 long long drift_s, const char **reason_r)
{
	if (!k->pk) {
		*reason_r = k->reason;
		return k->err;
	}
	if (k->ed25519 != (s->alg == DKV_A_ED25519_SHA256)) {
		*reason_r = "key type does not match the algorithm";
		return DKV_FAIL;
	}
	if (k->strict && s->i) {
		const char *at = strrchr(s->i, '@');
		if (!at || strcasecmp(at + 1, s->d) != 0) {
			*reason_r = "i= is a subdomain of d= and the key is strict (t=s)";
			return DKV_FAIL;
		}
	}
	return dkv_sig_times(s, now, drift_s, reason_r);
}

enum dkv_result dkv_start(struct dkv_sig *s, const struct dkv_key *k, time_t now, long long drift_s,
			  const char **reason_r)
{
	enum dkv_result r = key_check(s, k, now, drift_s, reason_r);
	if (r != DKV_NONE)
		return r;
	struct dks_params p = {
		.key = k->pk, .relaxed_body = s->relaxed_b, .has_body_limit = s->has_l, .body_limit = s->l};
	if (!(s->body = dks_new(&p))) {
		*reason_r = "out of memory";
		return DKV_TEMPERROR;
	}
	return DKV_NONE;
}

static bool check_signature(const struct dkv_sig *s, const struct dkv_key *k, const unsigned char md[32])
{
	bool ok = false;
	if (k->ed25519) {
		EVP_MD_CTX *mc = EVP_MD_CTX_new();
		ok = mc && EVP_DigestVerifyInit_ex(mc, NULL, NULL, NULL, NULL, k->pk, NULL) == 1 &&
		     EVP_DigestVerify(mc, s->sig, s->siglen, md, 32) == 1;
		EVP_MD_CTX_free(mc);
	} else {
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, k->pk, NULL);
		ok = pc && EVP_PKEY_verify_init(pc) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
		     EVP_PKEY_verify(pc, s->sig, s->siglen, md, 32) == 1;
		EVP_PKEY_CTX_free(pc);
	}
	return ok;
}

/* The signature's check over the header digest md. */
static enum dkv_result digest_result(const struct dkv_sig *s, const struct dkv_key *k,
				     const unsigned char md[32], const char **reason_r)
{
	ERR_clear_error();
	if (!check_signature(s, k, md)) {
		ERR_clear_error();
		*reason_r = "signature verification failed";
		return DKV_FAIL;
	}
	*reason_r = NULL;
	return DKV_PASS;
}

enum dkv_result dkv_finish(struct dkv_sig *s, const struct dkv_key *k, size_t n, const char *const *names,
			   const char *const *values, const char *sig_name, const char **reason_r)
{
	char bh[64];
	unsigned long long clen = 0;
	if (!s->body || dks_body_hash(s->body, bh, &clen) < 0) {
		*reason_r = "body hash failed";
		return DKV_TEMPERROR;
	}
	if (s->has_l && s->l > clen) {
		*reason_r = "l= is longer than the body";
		return DKV_PERMERROR;
	}
	if (strcmp(bh, s->bh) != 0) {
		*reason_r = "body hash did not verify";
		return DKV_FAIL;
	}
	unsigned char md[32];
	if (dks_header_digest(s->relaxed_h, n, names, values, (const char *const *)s->h, s->nh, sig_name,
			      s->stripped, md) < 0) {
		*reason_r = "out of memory";
		return DKV_TEMPERROR;
	}
	return digest_result(s, k, md, reason_r);
}

enum dkv_result dkv_seal_check(const struct dkv_sig *s, const struct dkv_key *k, time_t now,
			       long long drift_s, size_t n, const char *const *names,
			       const char *const *values, const char *sig_name, const char **reason_r)
{
	enum dkv_result r = key_check(s, k, now, drift_s, reason_r);
	if (r != DKV_NONE)
		return r;
	unsigned char md[32];
	if (dks_fields_digest(true, n, names, values, sig_name, s->stripped, md) < 0) {
		*reason_r = "out of memory";
		return DKV_TEMPERROR;
	}
	return digest_result(s, k, md, reason_r);
}
