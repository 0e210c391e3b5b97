/*
 * dkimsign.c - DKIM signatures with a key parsed once (see dkimsign.h).
 *
 * Canonicalization follows RFC 6376 section 3.4:
 *   simple header   the field as it is: name ":" value CRLF;
 *   relaxed header  name in lower case, unfolded, runs of WSP reduced to one
 *                   SP, WSP around the colon and at the end removed;
 *   simple body     trailing empty lines removed, an empty body is one CRLF;
 *   relaxed body    runs of WSP reduced to one SP, WSP at line ends
 *                   removed, trailing empty lines removed, an empty body
 *                   stays empty.
 * The body is canonicalized as a stream (no line buffering): empty lines
 * are counted and written only when more content follows. A bare LF ends a
 * line as CRLF does (Postfix delivers it as CRLF).
 *
 * Header fields are chosen as RFC 6376 5.4.2 says: h= names every signed
 * field present, in message order, then each oversigned name once more;
 * each name in h= takes the lowest unused instance of that field. The
 * signature is over the SHA-256 of the canonical header fields and the
 * DKIM-Signature field with an empty b=: RSASSA-PKCS1-v1_5 for rsa-sha256,
 * PureEdDSA over that hash for ed25519-sha256 (RFC 8463).
 */
#include "dkimsign.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#define DKS_FOLD     78 /* longest line of our DKIM-Signature field */
#define DKS_SIG_NAME "DKIM-Signature"

struct dks {
	struct dks_params p;
	EVP_MD_CTX *body;
	/* body canonicalization state */
	size_t empty_lines; /* empty lines seen and not yet written */
	bool wsp;	    /* relaxed: WSP seen and not yet written */
	bool cr;	    /* a CR that may start a CRLF */
	bool content;	    /* the current line has content */
	bool hash_err;
	bool written;		      /* some byte went to the body hash */
	unsigned long long canon_len; /* canonical body bytes seen */
	unsigned char out[4096];
	size_t outn;
};

/* ---- growable string (dkimsign.h) ------------------------------------------- */

void dk_sb_add(struct dk_sbuf *b, const char *p, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			b->oom = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->n, p, n);
	b->n += n;
	b->s[b->n] = 0;
}

void dk_sb_str(struct dk_sbuf *b, const char *s)
{
	dk_sb_add(b, s, strlen(s));
}

/* ---- body -------------------------------------------------------------------- */

static void out_flush(struct dks *s)
{
	size_t take = s->outn;
	if (s->p.has_body_limit) {
		unsigned long long left = s->canon_len < s->p.body_limit ? s->p.body_limit - s->canon_len : 0;
		if (take > left)
			take = (size_t)left;
	}
	if (take && EVP_DigestUpdate(s->body, s->out, take) != 1)
		s->hash_err = true;
	s->canon_len += s->outn;
	s->outn = 0;
}

static void out_byte(struct dks *s, unsigned char c)
{
	if (s->outn == sizeof(s->out))
		out_flush(s);
	s->out[s->outn++] = c;
	s->written = true;
}

static void out_crlf(struct dks *s)
{
	out_byte(s, '\r');
	out_byte(s, '\n');
}

static void end_line(struct dks *s)
{
	s->wsp = false; /* relaxed: WSP at the end of a line goes */
	if (s->content)
		out_crlf(s);
	else
		s->empty_lines++;
	s->content = false;
}

static void content_byte(struct dks *s, unsigned char c)
{
	for (; s->empty_lines; s->empty_lines--)
		out_crlf(s);
	if (s->wsp) {
		out_byte(s, ' ');
		s->wsp = false;
	}
	out_byte(s, c);
	s->content = true;
}

/* Octets that end a run of plain content, in simple and in relaxed body
 * canonicalization. */
static const bool stop_simple[256] = {['\r'] = true, ['\n'] = true};
static const bool stop_relaxed[256] = {['\r'] = true, ['\n'] = true, [' '] = true, ['\t'] = true};

/* A run of plain content in a line with nothing pending: copied as is. */
static void out_run(struct dks *s, const unsigned char *p, size_t n)
{
	while (n) {
		if (s->outn == sizeof(s->out))
			out_flush(s);
		size_t k = sizeof(s->out) - s->outn;
		if (k > n)
			k = n;
		memcpy(s->out + s->outn, p, k);
		s->outn += k;
		p += k;
		n -= k;
	}
	s->written = s->content = true;
}

int dks_body(struct dks *s, const unsigned char *buf, size_t len)
{
	bool relaxed = s->p.relaxed_body;
	const bool *stop = relaxed ? stop_relaxed : stop_simple;
	for (size_t i = 0; i < len; i++) {
		if (!s->cr && !s->empty_lines && !s->wsp) {
			/* the common case: a run of octets that stay as they
			 * are (no CR or LF; in relaxed no HTAB and no SP but
			 * single ones between plain octets: a base64 line,
			 * words) is copied in one go */
			size_t j = i;
			for (;;) {
				while (j < len && !stop[buf[j]])
					j++;
				/* relaxed: one SP between two plain octets stays */
				if (!relaxed || j + 1 >= len || buf[j] != ' ' || stop[buf[j + 1]])
					break;
				j += 2;
			}
			if (j > i) {
				out_run(s, buf + i, j - i);
				i = j;
				if (i == len)
					break;
			}
		}
		unsigned char c = buf[i];
		if (s->cr) {
			s->cr = false;
			if (c == '\n') {
				end_line(s);
				continue;
			}
			content_byte(s, '\r');
		}
		if (c == '\r')
			s->cr = true;
		else if (c == '\n')
			end_line(s);
		else if (relaxed && (c == ' ' || c == '\t'))
			s->wsp = true;
		else if (!s->empty_lines && !s->wsp) {
			/* the common case: plain content in a line */
			if (s->outn == sizeof(s->out))
				out_flush(s);
			s->out[s->outn++] = c;
			s->written = s->content = true;
		} else
			content_byte(s, c);
	}
	return s->hash_err ? -1 : 0;
}

/* Ends the body: the last line gets its CRLF; an empty simple body is one
 * CRLF, an empty relaxed body stays empty. bh gets the base64 hash. */
static int body_end(struct dks *s, char bh[64])
{
	if (s->cr) {
		s->cr = false;
		content_byte(s, '\r');
	}
	s->wsp = false;
	if (s->content)
		out_crlf(s);
	if (!s->written && !s->p.relaxed_body)
		out_crlf(s);
	out_flush(s);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (s->hash_err || EVP_DigestFinal_ex(s->body, md, &mdlen) != 1)
		return -1;
	EVP_EncodeBlock((unsigned char *)bh, md, (int)mdlen);
	return 0;
}

int dks_body_hash(struct dks *s, char bh[64], unsigned long long *canon_len_r)
{
	int rc = body_end(s, bh);
	*canon_len_r = s->canon_len;
	return rc;
}

/* ---- header fields ------------------------------------------------------------ */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* One field, canonicalized, into b (with CRLF unless crlf is false). */
static void canon_field(struct dk_sbuf *b, bool relaxed, const char *name, const char *value, bool crlf)
{
	if (!relaxed) {
		dk_sb_str(b, name);
		dk_sb_add(b, ":", 1);
		dk_sb_str(b, value);
	} else {
		size_t nl = strlen(name);
		while (nl && is_wsp(name[nl - 1]))
			nl--;
		for (size_t i = 0; i < nl; i++) {
			char c = (char)tolower((unsigned char)name[i]);
			dk_sb_add(b, &c, 1);
		}
		dk_sb_add(b, ":", 1);
		bool wsp = false, started = false;
		for (const char *p = value; *p; p++) {
			if (*p == '\r' || *p == '\n')
				continue; /* unfolding */
			if (is_wsp(*p)) {
				wsp = true;
				continue;
			}
			if (wsp && started)
				dk_sb_add(b, " ", 1);
			wsp = false;
			started = true;
			const char *q = p;
			while (q[1] && !is_wsp(q[1]) && q[1] != '\r' && q[1] != '\n')
				q++;
			dk_sb_add(b, p, (size_t)(q - p) + 1);
			p = q;
		}
	}
	if (crlf)
		dk_sb_add(b, "\r\n", 2);
}

int dks_header_digest(bool relaxed, size_t n, const char *const *names, const char *const *values,
		      const char *const *h, size_t nh, const char *sig_name, const char *sig_value,
		      unsigned char md[32])
{
	bool *used = calloc(n + 1, sizeof(*used));
	struct dk_sbuf c = {0};
	int rc = -1;
	if (!used)
		return -1;
	for (size_t i = 0; i < nh; i++)
		for (size_t j = n; j-- > 0;)
			if (!used[j] && strcasecmp(names[j], h[i]) == 0) {
				used[j] = true;
				canon_field(&c, relaxed, names[j], values[j], true);
				break;
			}
	canon_field(&c, relaxed, sig_name, sig_value, false);
	unsigned int mdlen = 0;
	if (!c.oom && EVP_Digest(c.s ? c.s : "", c.n, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32)
		rc = 0;
	free(used);
	free(c.s);
	return rc;
}

static bool listed(const char *const *list, const char *name)
{
	for (; list && *list; list++)
		if (strcasecmp(*list, name) == 0)
			return true;
	return false;
}

/* Writes tokens of the DKIM-Signature value, folding before a token that
 * would pass DKS_FOLD columns. */
struct folder {
	struct dk_sbuf *b;
	size_t col;
};

static void fold_tok(struct folder *f, const char *tok, bool space)
{
	size_t n = strlen(tok);
	if (f->col + (space ? 1 : 0) + n > DKS_FOLD && f->col > 8) {
		dk_sb_add(f->b, "\r\n\t", 3);
		f->col = 8;
	} else if (space) {
		dk_sb_add(f->b, " ", 1);
		f->col++;
	}
	dk_sb_add(f->b, tok, n);
	f->col += n;
}

/* ---- the signature ------------------------------------------------------------- */

EVP_PKEY *dks_load_key(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"") : NULL;
	BIO_free(bio);
	return k;
}

static bool id_ed25519(EVP_PKEY *k)
{
	return EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519;
}

struct dks *dks_new(const struct dks_params *p)
{
	int id = p->key ? EVP_PKEY_get_base_id(p->key) : 0;
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519)
		return NULL;
	struct dks *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->p = *p;
	s->body = EVP_MD_CTX_new();
	if (!s->body || EVP_DigestInit_ex(s->body, EVP_sha256(), NULL) != 1) {
		dks_free(s);
		return NULL;
	}
	return s;
}

void dks_free(struct dks *s)
{
	if (!s)
		return;
	EVP_MD_CTX_free(s->body);
	free(s);
}

static int sign_digest(EVP_PKEY *key, const unsigned char *md, size_t mdlen, unsigned char *sig,
		       size_t *siglen)
{
	int ok = 0;
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
		EVP_MD_CTX *mc = EVP_MD_CTX_new();
		ok = mc && EVP_DigestSignInit_ex(mc, NULL, NULL, NULL, NULL, key, NULL) == 1 &&
		     EVP_DigestSign(mc, sig, siglen, md, mdlen) == 1;
		EVP_MD_CTX_free(mc);
	} else {
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
		ok = pc && EVP_PKEY_sign_init(pc) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
		     EVP_PKEY_sign(pc, sig, siglen, md, mdlen) == 1;
		EVP_PKEY_CTX_free(pc);
	}
	return ok ? 0 : -1;
}

int dks_sign_digest(EVP_PKEY *key, const unsigned char md[32], char **b64_r)
{
	*b64_r = NULL;
	size_t siglen = (size_t)EVP_PKEY_get_size(key);
	unsigned char *sig = malloc(siglen);
	if (!sig || sign_digest(key, md, 32, sig, &siglen) < 0) {
		free(sig);
		return -1;
	}
	char *b64 = malloc(4 * ((siglen + 2) / 3) + 1);
	if (b64)
		EVP_EncodeBlock((unsigned char *)b64, sig, (int)siglen);
	free(sig);
	*b64_r = b64;
	return b64 ? 0 : -1;
}

static void fold_b64(struct dk_sbuf *v, size_t col, const char *b64)
{
	size_t bl = strlen(b64);
	for (size_t o = 0; o < bl;) {
		size_t room = col < DKS_FOLD ? DKS_FOLD - col : 0;
		if (room < 8) {
			dk_sb_add(v, "\r\n\t", 3);
			col = 8;
			continue;
		}
		size_t take = bl - o < room ? bl - o : room;
		dk_sb_add(v, b64 + o, take);
		col += take;
		o += take;
	}
}

int dks_fold_b64(char **v, size_t col, const char *b64)
{
	struct dk_sbuf b = {.s = *v, .n = *v ? strlen(*v) : 0};
	b.cap = b.s ? b.n + 1 : 0;
	fold_b64(&b, col, b64);
	if (b.oom)
		return -1;
	*v = b.s;
	return 0;
}

int dks_fields_digest(bool relaxed, size_t n, const char *const *names, const char *const *values,
		      const char *sig_name, const char *sig_value, unsigned char md[32])
{
	struct dk_sbuf c = {0};
	for (size_t i = 0; i < n; i++)
		canon_field(&c, relaxed, names[i], values[i], true);
	canon_field(&c, relaxed, sig_name, sig_value, false);
	unsigned int mdlen = 0;
	int rc = !c.oom && EVP_Digest(c.s ? c.s : "", c.n, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32
			 ? 0
			 : -1;
	free(c.s);
	return rc;
}

int dks_finish(struct dks *s, size_t n, const char *const *names, const char *const *values, char **value_r,
	       const char **err_r)
{
	*value_r = NULL;
	char bh[64];
	if (body_end(s, bh) < 0) {
		*err_r = "body hash failed";
		return -1;
	}
	/* h=: the signed fields present, then the oversigned names. */
	size_t nh = 0;
	const char **h = calloc(n + 64, sizeof(*h));
	bool *used = calloc(n + 1, sizeof(*used));
	struct dk_sbuf v = {0}, c = {0};
	int rc = -1;
	*err_r = "out of memory";
	if (!h || !used)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (listed(s->p.sign_headers, names[i]) && nh < n + 63)
			h[nh++] = names[i];
	for (const char *const *o = s->p.oversign_headers; o && *o && nh < n + 63; o++)
		h[nh++] = *o;

	/* The value, b= empty. */
	const char *sig_name = s->p.sig_name ? s->p.sig_name : DKS_SIG_NAME;
	struct folder f = {&v, strlen(sig_name) + 2};
	char tok[512];
	if (s->p.arc_instance) {
		snprintf(tok, sizeof(tok), "i=%u;", s->p.arc_instance);
		fold_tok(&f, tok, false);
	} else
		fold_tok(&f, "v=1;", false);
	fold_tok(&f, id_ed25519(s->p.key) ? "a=ed25519-sha256;" : "a=rsa-sha256;", true);
	snprintf(tok, sizeof(tok), "c=%s/%s;", s->p.relaxed_headers ? "relaxed" : "simple",
		 s->p.relaxed_body ? "relaxed" : "simple");
	fold_tok(&f, tok, true);
	snprintf(tok, sizeof(tok), "d=%s;", s->p.domain);
	fold_tok(&f, tok, true);
	snprintf(tok, sizeof(tok), "s=%s;", s->p.selector);
	fold_tok(&f, tok, true);
	snprintf(tok, sizeof(tok), "t=%lld;", (long long)s->p.now);
	fold_tok(&f, tok, true);
	if (s->p.ttl_s > 0) {
		snprintf(tok, sizeof(tok), "x=%lld;", (long long)s->p.now + s->p.ttl_s);
		fold_tok(&f, tok, true);
	}
	for (size_t i = 0; i < nh; i++) {
		snprintf(tok, sizeof(tok), "%s%s%s", i == 0 ? "h=" : "", h[i], i + 1 < nh ? ":" : ";");
		fold_tok(&f, tok, i == 0);
	}
	snprintf(tok, sizeof(tok), "bh=%s;", bh);
	fold_tok(&f, tok, true);
	fold_tok(&f, "b=", true);
	if (v.oom)
		goto out;

	/* The header hash: chosen fields, then our field without CRLF. */
	for (size_t i = 0; i < nh; i++)
		for (size_t j = n; j-- > 0;)
			if (!used[j] && strcasecmp(names[j], h[i]) == 0) {
				used[j] = true;
				canon_field(&c, s->p.relaxed_headers, names[j], values[j], true);
				break;
			}
	if (s->p.relaxed_headers)
		canon_field(&c, true, sig_name, v.s, false);
	else {
		dk_sb_str(&c, sig_name);
		dk_sb_str(&c, ": ");
		dk_sb_add(&c, v.s, v.n);
	}
	if (c.oom)
		goto out;
	unsigned char md[32];
	unsigned int mdlen = 0;
	*err_r = "signing failed";
	if (EVP_Digest(c.s, c.n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		goto out;
	char *b64 = NULL;
	if (dks_sign_digest(s->p.key, md, &b64) < 0)
		goto out;
	/* b=, folded. */
	fold_b64(&v, f.col, b64);
	free(b64);
	*err_r = "out of memory";
	if (v.oom)
		goto out;
	*value_r = v.s;
	v.s = NULL;
	rc = 0;
	*err_r = NULL;
out:
	free(h);
	free(used);
	free(v.s);
	free(c.s);
	return rc;
}
