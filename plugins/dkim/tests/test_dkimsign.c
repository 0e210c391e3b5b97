/*
 * test_dkimsign.c - the DKIM signer's canonicalization and output.
 *
 * - body hashes of empty bodies against the values RFC 6376 implies
 *   (SHA-256 of CRLF for simple, of nothing for relaxed);
 * - the streaming body canonicalization against a line-by-line reference
 *   written independently here, over thousands of random bodies made of the
 *   characters that matter (WSP, CR, LF, text), in both modes;
 * - the same message split into chunks at every position gives the same
 *   signature (RSA PKCS#1 v1.5 and Ed25519 are deterministic);
 * - the header field selection: h= lists signed fields in message order
 *   and the oversigned names once more, folding keeps lines <= 78 columns,
 *   and the signature verifies with OpenSSL against the canonical text built
 *   here (relaxed and simple headers, both key types).
 * Interop with dkimpy and OpenDKIM is in test_dkim.py.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "dkimsign.h"
#include "t.h"

static const char *signhdrs[] = {"from", "to", "subject", "date", NULL};
static const char *oversign[] = {"from", "subject", NULL};

static struct dks_params params(EVP_PKEY *k, bool rh, bool rb)
{
	struct dks_params p = {.key = k,
			       .domain = "example.test",
			       .selector = "sel",
			       .relaxed_headers = rh,
			       .relaxed_body = rb,
			       .now = 1700000000,
			       .ttl_s = 864000,
			       .sign_headers = signhdrs,
			       .oversign_headers = oversign};
	return p;
}

static char *sign_chunks(EVP_PKEY *k, bool rh, bool rb, const char *body, size_t len, size_t split, size_t nh,
			 const char *const *names, const char *const *values)
{
	struct dks_params p = params(k, rh, rb);
	struct dks *s = dks_new(&p);
	if (!s)
		return NULL;
	if (split > len)
		split = len;
	dks_body(s, (const unsigned char *)body, split);
	dks_body(s, (const unsigned char *)body + split, len - split);
	char *v = NULL;
	const char *err = NULL;
	int rc = dks_finish(s, nh, names, values, &v, &err);
	dks_free(s);
	return rc == 0 ? v : NULL;
}

/* The value of tag t in a tag list, white space removed (static buffer). */
static const char *tag(const char *v, const char *t)
{
	static char out[2048];
	size_t tl = strlen(t);
	const char *p = v;
	while (p && *p) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ';')
			p++;
		if (strncmp(p, t, tl) == 0 && p[tl] == '=') {
			size_t o = 0;
			for (p += tl + 1; *p && *p != ';' && o + 1 < sizeof(out); p++)
				if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
					out[o++] = *p;
			out[o] = 0;
			return out;
		}
		p = strchr(p, ';');
	}
	return NULL;
}

/* Reference body canonicalization: split into lines, transform each line,
 * drop trailing empty lines. */
static size_t ref_body(const char *in, size_t len, bool relaxed, char *out)
{
	size_t o = 0, start = 0, last_nonempty_end = 0;
	bool any_line = false;
	size_t i = 0;
	while (start < len) {
		/* a line ends at LF (a CR before it belongs to the ending) */
		i = start;
		while (i < len && in[i] != '\n')
			i++;
		size_t end = i;
		if (i < len && end > start && in[end - 1] == '\r')
			end--;
		size_t lo = o;
		if (relaxed) {
			bool wsp = false;
			for (size_t j = start; j < end; j++) {
				if (in[j] == ' ' || in[j] == '\t') {
					wsp = true;
					continue;
				}
				if (wsp)
					out[o++] = ' ';
				wsp = false;
				out[o++] = in[j];
			}
		} else {
			memcpy(out + o, in + start, end - start);
			o += end - start;
		}
		bool empty = o == lo;
		out[o++] = '\r';
		out[o++] = '\n';
		any_line = true;
		if (!empty)
			last_nonempty_end = o;
		start = i < len ? i + 1 : len;
	}
	(void)any_line;
	o = last_nonempty_end;
	if (o == 0 && !relaxed) {
		out[0] = '\r';
		out[1] = '\n';
		o = 2;
	}
	return o;
}

static void b64_sha256(const char *d, size_t n, char *out)
{
	unsigned char md[32];
	unsigned int l;
	EVP_Digest(d, n, md, &l, EVP_sha256(), NULL);
	EVP_EncodeBlock((unsigned char *)out, md, 32);
}

static EVP_PKEY *keygen(const char *type)
{
	if (strcmp(type, "RSA") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
}

static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 16;
}

/* Verifies value's b= over the given canonical header text + our field. */
static bool verify_sig(EVP_PKEY *k, const char *canon_hdrs, const char *value, bool relaxed)
{
	/* our field with b= emptied, canonicalized */
	char *copy = strdup(value);
	char *b = strstr(copy, "b=");
	while (b && b != copy && b[-1] != ' ' && b[-1] != '\t' && b[-1] != ';')
		b = strstr(b + 1, "b=");
	if (!b)
		return false;
	b[2] = 0;
	size_t cap = strlen(canon_hdrs) + strlen(copy) + 64;
	char *text = malloc(cap);
	strcpy(text, canon_hdrs);
	if (relaxed) {
		strcat(text, "dkim-signature:");
		char *o = text + strlen(text);
		bool wsp = false, started = false;
		for (const char *p = copy; *p; p++) {
			if (*p == '\r' || *p == '\n')
				continue;
			if (*p == ' ' || *p == '\t') {
				wsp = true;
				continue;
			}
			if (wsp && started)
				*o++ = ' ';
			wsp = false;
			started = true;
			*o++ = *p;
		}
		*o = 0;
	} else {
		strcat(text, "DKIM-Signature: ");
		strcat(text, copy);
	}
	unsigned char md[32];
	unsigned int ml;
	EVP_Digest(text, strlen(text), md, &ml, EVP_sha256(), NULL);
	unsigned char sig[1024];
	const char *sb = tag(value, "b");
	int sl = EVP_DecodeBlock(sig, (const unsigned char *)sb, (int)strlen(sb));
	size_t bl = strlen(sb);
	while (bl && sb[bl - 1] == '=') {
		sl--;
		bl--;
	}
	bool ok;
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
		EVP_MD_CTX *mc = EVP_MD_CTX_new();
		ok = EVP_DigestVerifyInit_ex(mc, NULL, NULL, NULL, NULL, k, NULL) == 1 &&
		     EVP_DigestVerify(mc, sig, (size_t)sl, md, 32) == 1;
		EVP_MD_CTX_free(mc);
	} else {
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
		ok = EVP_PKEY_verify_init(pc) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
		     EVP_PKEY_verify(pc, sig, (size_t)sl, md, 32) == 1;
		EVP_PKEY_CTX_free(pc);
	}
	free(copy);
	free(text);
	return ok;
}

int main(void)
{
	EVP_PKEY *rsa = keygen("RSA"), *ed = keygen("ED25519");
	CHECK(rsa != NULL && ed != NULL);
	const char *names[] = {"Received", "From", "To", "Subject", "X-Other", "To", "Date"};
	const char *values[] = {" by mx;\r\n\tSat, 1 Jan 2000",
				" Alice <a@example.test>",
				" b@x.test",
				"  Hello   there \t",
				" x",
				"\tc@y.test,\r\n d@y.test",
				" Sat, 1 Jan 2000 00:00:00 +0000"};
	size_t nh = sizeof(names) / sizeof(names[0]);

	/* empty bodies */
	char *v = sign_chunks(rsa, true, false, "", 0, 0, nh, names, values);
	CHECK(v != NULL);
	CHECK_STR(v ? tag(v, "bh") : NULL, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
	free(v);
	v = sign_chunks(rsa, true, true, "", 0, 0, nh, names, values);
	CHECK_STR(v ? tag(v, "bh") : NULL, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	free(v);
	v = sign_chunks(rsa, true, false, "\r\n\r\n\n", 5, 2, nh, names, values);
	CHECK_STR(v ? tag(v, "bh") : NULL, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
	free(v);
	v = sign_chunks(rsa, true, true, " \t\r\n \r\n", 7, 3, nh, names, values);
	CHECK_STR(v ? tag(v, "bh") : NULL, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	free(v);

	/* random bodies against the reference, split at a random point */
	static const char alphabet[] = "ab  \t\t\r\n\n\r\n";
	int mismatches = 0, runs = 0;
	for (int r = 0; r < 3000; r++) {
		char body[64], ref[256], want[64];
		size_t len = rnd() % sizeof(body);
		for (size_t i = 0; i < len; i++)
			body[i] = alphabet[rnd() % (sizeof(alphabet) - 1)];
		bool relaxed = r % 2;
		/* The reference treats a bare CR inside a line as content, and
		 * so does the signer. */
		size_t rl = ref_body(body, len, relaxed, ref);
		b64_sha256(ref, rl, want);
		struct dks_params p = params(ed, true, relaxed);
		struct dks *s = dks_new(&p);
		size_t split = len ? rnd() % (len + 1) : 0;
		dks_body(s, (const unsigned char *)body, split);
		dks_body(s, (const unsigned char *)body + split, len - split);
		char *val = NULL;
		const char *err;
		dks_finish(s, nh, names, values, &val, &err);
		dks_free(s);
		runs++;
		if (!val || strcmp(tag(val, "bh"), want) != 0) {
			if (mismatches++ < 3)
				fprintf(stderr, "body mismatch (%s) for %zu bytes at run %d\n",
					relaxed ? "relaxed" : "simple", len, r);
		}
		free(val);
	}
	CHECK_INT(mismatches, 0);
	CHECK_INT(runs, 3000);

	/* long bodies of mostly plain runs (words, base64-like lines), fed
	 * in random pieces: runs that cross the signer's 4 KiB buffer */
	static const char lalphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGH+/=0123456789  \t\r\n\r\n\n";
	mismatches = 0;
	for (int r = 0; r < 200; r++) {
		static char body[12000], ref[48000];
		char want[64];
		size_t len = rnd() % sizeof(body);
		for (size_t i = 0; i < len; i++)
			body[i] = (rnd() % 8) ? lalphabet[rnd() % 26]
					      : lalphabet[rnd() % (sizeof(lalphabet) - 1)];
		bool relaxed = r % 2;
		size_t rl = ref_body(body, len, relaxed, ref);
		b64_sha256(ref, rl, want);
		struct dks_params p = params(ed, true, relaxed);
		struct dks *s = dks_new(&p);
		for (size_t off = 0; off < len;) {
			size_t n = 1 + rnd() % 6000;
			if (n > len - off)
				n = len - off;
			dks_body(s, (const unsigned char *)body + off, n);
			off += n;
		}
		char *val = NULL;
		const char *err;
		dks_finish(s, nh, names, values, &val, &err);
		dks_free(s);
		if (!val || strcmp(tag(val, "bh"), want) != 0) {
			if (mismatches++ < 3)
				fprintf(stderr, "long body mismatch (%s) for %zu bytes at run %d\n",
					relaxed ? "relaxed" : "simple", len, r);
		}
		free(val);
	}
	CHECK_INT(mismatches, 0);

	/* every split point gives the same signature */
	const char *body = "Line  with  spaces \r\n\r\n\tTabbed\r\nbare LF\nCR\rinside\r\n\r\n\r\n";
	size_t bl = strlen(body);
	for (int k = 0; k < 2; k++)
		for (int mode = 0; mode < 4; mode++) {
			EVP_PKEY *key = k ? ed : rsa;
			char *first = sign_chunks(key, mode & 1, mode & 2, body, bl, 0, nh, names, values);
			int diff = 0;
			for (size_t sp = 1; sp <= bl; sp++) {
				char *o =
					sign_chunks(key, mode & 1, mode & 2, body, bl, sp, nh, names, values);
				diff += !o || !first || strcmp(o, first) != 0;
				free(o);
			}
			CHECK_INT(diff, 0);
			CHECK(first != NULL);
			if (!first)
				continue;
			/* h=: signed fields in message order, oversigned once more */
			CHECK_STR(tag(first, "h"), "From:To:Subject:To:Date:from:subject");
			CHECK_STR(tag(first, "d"), "example.test");
			CHECK_STR(tag(first, "s"), "sel");
			CHECK_STR(tag(first, "t"), "1700000000");
			CHECK_STR(tag(first, "x"), "1700864000");
			CHECK_STR(tag(first, "a"), k ? "ed25519-sha256" : "rsa-sha256");
			CHECK_STR(tag(first, "c"),
				  (mode & 1) ? ((mode & 2) ? "relaxed/relaxed" : "relaxed/simple")
					     : ((mode & 2) ? "simple/relaxed" : "simple/simple"));
			CHECK(tag(first, "l") == NULL);
			/* lines of at most 78 columns after "DKIM-Signature: " */
			size_t col = 16, maxcol = 0;
			for (const char *p = first; *p; p++) {
				if (*p == '\n')
					col = 0;
				else if (*p != '\r')
					col += *p == '\t' ? 8 : 1;
				if (col > maxcol)
					maxcol = col;
			}
			CHECK(maxcol <= 78);
			/* the canonical header text, built independently: h= picks
			 * the lowest unused instance of each name */
			char hdrs[2048] = "";
			if (mode & 1)
				strcat(hdrs, "from:Alice <a@example.test>\r\nto:c@y.test, d@y.test\r\n"
					     "subject:Hello there\r\nto:b@x.test\r\n"
					     "date:Sat, 1 Jan 2000 00:00:00 +0000\r\n");
			else
				strcat(hdrs, "From: Alice <a@example.test>\r\nTo:\tc@y.test,\r\n d@y.test\r\n"
					     "Subject:  Hello   there \t\r\nTo: b@x.test\r\n"
					     "Date: Sat, 1 Jan 2000 00:00:00 +0000\r\n");
			CHECK(verify_sig(key, hdrs, first, mode & 1));
			/* and a tampered header text does not verify */
			hdrs[1] ^= 1;
			CHECK(!verify_sig(key, hdrs, first, mode & 1));
			free(first);
		}

	/* a key of another type is refused */
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct dks_params p = params(ec, true, false);
	CHECK(dks_new(&p) == NULL);
	p.key = NULL;
	CHECK(dks_new(&p) == NULL);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ed);
	return t_done();
}
