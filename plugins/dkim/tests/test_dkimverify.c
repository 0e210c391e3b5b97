/*
 * test_dkimverify.c - the verifier (dkimverify.c) and the key cache
 * (dkimcache.c).
 *
 * - messages signed by the plugin's signer (RSA and Ed25519, every
 *   canonicalization) verify; a changed body fails on the body hash, a
 *   changed signed header on the signature;
 * - key records are checked as RFC 6376 3.6.1 says: v=, k=, h=, s=, t=s,
 *   an empty p= (revoked), undecodable keys, RSA under 1024 bits, Ed25519
 *   of the wrong length, a key type that does not match a=;
 * - malformed signatures (missing tags, h= without From, v=, i= outside d=,
 *   x= before t=, duplicate tags, unknown algorithm) and t=/x= checks;
 * - l=: only the first l= canonical body bytes are hashed;
 * - the cache: TTL, negative entries, the size bound, replacement while a
 *   key is in use (references), and 8 threads getting, replacing and
 *   verifying with shared parsed keys at once.
 * Interop with dkimpy and OpenDKIM is in test_dkim.py.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "dkimcache.h"
#include "dkimsign.h"
#include "dkimverify.h"
#include "t.h"

static const char *signhdrs[] = {"from", "to", "subject", "date", NULL};
static const char *oversign[] = {"from", "subject", NULL};
static const char *names[] = {"From", "To", "Subject", "Date", "Received"};
static const char *values[] = {" Alice <a@example.test>", " b@example.org", " Hello\r\n  there",
			       " Mon, 1 Jan 2024 00:00:00 +0000", " from x by y"};
static const char *body = "Hi Bob,\r\n\r\nsee  you.  \r\n\r\n\r\n";
#define NOW 1700000000

static EVP_PKEY *rsa_key, *ed_key;
static char *rsa_rec, *ed_rec;

static char *b64(const unsigned char *d, size_t n)
{
	char *o = malloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)o, d, (int)n);
	return o;
}

static char *record_of(EVP_PKEY *k, const char *prefix)
{
	unsigned char raw[64], *der = NULL;
	size_t rl = sizeof(raw);
	char *p;
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
		EVP_PKEY_get_raw_public_key(k, raw, &rl);
		p = b64(raw, rl);
	} else {
		int n = i2d_PUBKEY(k, &der);
		p = b64(der, (size_t)n);
		OPENSSL_free(der);
	}
	char *r = malloc(strlen(p) + strlen(prefix) + 8);
	sprintf(r, "%sp=%s", prefix, p);
	free(p);
	return r;
}

/* The DKIM-Signature value our signer makes for the message. */
static char *sign(EVP_PKEY *k, bool rh, bool rb, long long ttl)
{
	struct dks_params p = {.key = k,
			       .domain = "example.test",
			       .selector = "sel",
			       .relaxed_headers = rh,
			       .relaxed_body = rb,
			       .now = NOW,
			       .ttl_s = ttl,
			       .sign_headers = signhdrs,
			       .oversign_headers = oversign};
	struct dks *s = dks_new(&p);
	char *v = NULL;
	const char *err;
	dks_body(s, (const unsigned char *)body, strlen(body));
	dks_finish(s, 5, names, values, &v, &err);
	dks_free(s);
	/* as received: "DKIM-Signature: " + value, so the value starts with SP */
	char *r = malloc(strlen(v) + 2);
	sprintf(r, " %s", v);
	free(v);
	return r;
}

/* Verifies sigval over the message (with the body given) with the record. */
static enum dkv_result verify(const char *sigval, const char *rec, const char *b, const char *subject,
			      time_t now, const char **reason)
{
	struct dkv_sig s;
	dkv_sig_parse(sigval, &s);
	enum dkv_result r = DKV_PERMERROR;
	*reason = s.error;
	struct dkv_key *k = dkv_key_parse(rec);
	if (!s.error) {
		r = dkv_start(&s, k, now, 300, reason);
		if (r == DKV_NONE) {
			dks_body(s.body, (const unsigned char *)b, strlen(b));
			const char *vals[6], *nm[6];
			for (int i = 0; i < 5; i++)
				nm[i] = names[i], vals[i] = values[i];
			vals[2] = subject;
			nm[5] = "DKIM-Signature";
			vals[5] = sigval;
			r = dkv_finish(&s, k, 6, nm, vals, "DKIM-Signature", reason);
		}
	}
	dkv_key_free(k);
	dkv_sig_free(&s);
	return r;
}

static void test_roundtrip(void)
{
	const char *reason;
	for (int kt = 0; kt < 2; kt++)
		for (int c = 0; c < 4; c++) {
			EVP_PKEY *k = kt ? ed_key : rsa_key;
			const char *rec = kt ? ed_rec : rsa_rec;
			char *sv = sign(k, c & 1, c & 2, 864000);
			CHECK_INT(verify(sv, rec, body, values[2], NOW, &reason), DKV_PASS);
			CHECK_INT(verify(sv, rec, "Hi Bob,\r\nsee you!\r\n", values[2], NOW, &reason),
				  DKV_FAIL);
			CHECK_STR(reason, "body hash did not verify");
			CHECK_INT(verify(sv, rec, body, " Hello there!", NOW, &reason), DKV_FAIL);
			CHECK_STR(reason, "signature verification failed");
			/* the other key type */
			CHECK_INT(verify(sv, kt ? rsa_rec : ed_rec, body, values[2], NOW, &reason), DKV_FAIL);
			CHECK_STR(reason, "key type does not match the algorithm");
			/* x= passed (beyond the drift), t= in the future */
			CHECK_INT(verify(sv, rec, body, values[2], NOW + 864000 + 301, &reason), DKV_FAIL);
			CHECK_STR(reason, "signature expired");
			CHECK_INT(verify(sv, rec, body, values[2], NOW - 301, &reason), DKV_FAIL);
			CHECK_STR(reason, "signature timestamp in the future");
			CHECK_INT(verify(sv, rec, body, values[2], NOW - 299, &reason), DKV_PASS);
			free(sv);
		}
	/* relaxed body: white space changes pass */
	char *sv = sign(rsa_key, true, true, 0);
	CHECK_INT(verify(sv, rsa_rec, "Hi Bob,\r\n\r\nsee you. \r\n", values[2], NOW, &reason), DKV_PASS);
	free(sv);
}

/* fmt with every "%s" replaced by p. */
static void fill(char *out, size_t n, const char *fmt, const char *p)
{
	size_t k = 0;
	for (const char *f = fmt; *f && k + 1 < n; f++) {
		if (f[0] == '%' && f[1] == 's') {
			k += (size_t)snprintf(out + k, n - k, "%s", p);
			f++;
		} else
			out[k++] = *f;
	}
	out[k < n ? k : n - 1] = 0;
}

static void test_key_records(void)
{
	const char *p = strstr(rsa_rec, "p=") + 2;
	char rec[4096];
	struct {
		const char *fmt;
		bool ok;
		enum dkv_result err;
		const char *reason;
	} t[] = {
		{"v=DKIM1; k=rsa; p=%s", true, 0, NULL},
		{"p=%s", true, 0, NULL},
		{"v=DKIM1; h=sha1:sha256; s=email; t=y; p=%s", true, 0, NULL},
		{"v=DKIM1; s=*; n=note; p=%s", true, 0, NULL},
		{"v=DKIM1; k=rsa; p=", false, DKV_FAIL, "key revoked"},
		{"v=DKIM1; k=rsa; p= ;", false, DKV_FAIL, "key revoked"},
		{"k=rsa; v=DKIM1; p=%s", false, DKV_PERMERROR, "key syntax error (v=)"},
		{"v=DKIM2; p=%s", false, DKV_PERMERROR, "key syntax error (v=)"},
		{"v=DKIM1; k=dsa; p=%s", false, DKV_PERMERROR, "unknown key type"},
		{"v=DKIM1; h=sha1; p=%s", false, DKV_FAIL, "key does not allow sha256 (h=)"},
		{"v=DKIM1; s=tlsrpt; p=%s", false, DKV_PERMERROR, "key is not for email (s=)"},
		{"v=DKIM1; k=rsa", false, DKV_PERMERROR, "key syntax error (no p=)"},
		{"v=DKIM1; p=%s; p=%s", false, DKV_PERMERROR, "key syntax error"},
		{"v=DKIM1; p=AAAA", false, DKV_PERMERROR, "key decode failed"},
		{"v=DKIM1; p=!!!!", false, DKV_PERMERROR, "key decode failed"},
		{"v=DKIM1; k=ed25519; p=%s", false, DKV_PERMERROR, "key decode failed"},
		{"v=DKIM1; k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", false, DKV_PERMERROR,
		 "key decode failed"}, /* 31 bytes */
		{"v=DKIM1; \x01p=%s", false, DKV_PERMERROR, "key syntax error"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		fill(rec, sizeof(rec), t[i].fmt, p);
		struct dkv_key *k = dkv_key_parse(rec);
		if ((k->pk != NULL) != t[i].ok)
			fprintf(stderr, "record #%zu: %s\n", i, rec);
		CHECK_INT(k->pk != NULL, t[i].ok);
		if (!t[i].ok) {
			CHECK_INT(k->err, t[i].err);
			CHECK_STR(k->reason, t[i].reason);
		}
		dkv_key_free(k);
	}
	struct dkv_key *k = dkv_key_parse(ed_rec);
	CHECK(k->pk && k->ed25519 && !k->strict);
	dkv_key_free(k);
	snprintf(rec, sizeof(rec), "v=DKIM1; t=y:s; p=%s", p);
	k = dkv_key_parse(rec);
	CHECK(k->pk && k->strict && k->bits == 2048);
	dkv_key_free(k);
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	char *sr = record_of(small, "v=DKIM1; k=rsa; ");
	k = dkv_key_parse(sr);
	CHECK(!k->pk && k->err == DKV_FAIL);
	CHECK_STR(k->reason, "RSA key shorter than 1024 bits (RFC 8301)");
	dkv_key_free(k);
	free(sr);
	EVP_PKEY_free(small);
}

/* A signature value with one tag changed: tag=old replaced by repl. */
static char *edit(const char *sv, const char *old, const char *repl)
{
	const char *at = strstr(sv, old);
	if (!at)
		return strdup(sv);
	char *r = malloc(strlen(sv) + strlen(repl) + 1);
	sprintf(r, "%.*s%s%s", (int)(at - sv), sv, repl, at + strlen(old));
	return r;
}

static void test_signatures(void)
{
	char *sv = strdup(" v=1; a=rsa-sha256; c=relaxed/simple; d=example.test; s=sel;\r\n\tt=1700000000; "
			  "x=1700864000; h=from:to; bh=AAAA; b=AAAA");
	struct {
		const char *old, *repl, *reason;
	} t[] = {
		{"v=1;", "v=2;", "malformed signature (v=)"},
		{"v=1;", "", "malformed signature (v=)"},
		{"d=example.test;", "", "malformed signature (a required tag is missing)"},
		{"h=from:to;", "h=to;", "malformed signature (h= does not name From)"},
		{"h=from:to;", "h=:from:to;", "malformed signature (h= does not name From)"},
		{"h=from:to;", "h=from:to:;", "malformed signature (h= does not name From)"},
		{"b=AAAA", "b=", "malformed signature (b=)"},
		{"c=relaxed/simple;", "c=fancy/simple;", "malformed signature (c=)"},
		{"c=relaxed/simple;", "c=relaxed/x;", "malformed signature (c=)"},
		{"d=example.test;", "d=example.test; i=a@example.org;", "malformed signature (i= not in d=)"},
		{"d=example.test;", "d=example.test; i=a@badexample.test;",
		 "malformed signature (i= not in d=)"},
		{"d=example.test;", "d=example.test; q=http;", "malformed signature (q=)"},
		{"d=example.test;", "d=example.test; l=12x;", "malformed signature (l=)"},
		{"t=1700000000;", "t=1700000000; t=1;", "malformed signature"},
		{"t=1700000000;", "t=1800000000;", "malformed signature (x= before t=)"},
		{"a=rsa-sha256;", "a=rsa-sha512;", "unknown algorithm"},
		{"d=example.test;", "d=example.test; bogus;", "malformed signature"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *e = edit(sv, t[i].old, t[i].repl);
		struct dkv_sig s;
		dkv_sig_parse(e, &s);
		CHECK_STR(s.error, t[i].reason);
		dkv_sig_free(&s);
		free(e);
	}
	struct dkv_sig s;
	char *e = edit(sv, "a=rsa-sha256;", "a=rsa-sha1;");
	dkv_sig_parse(e, &s);
	CHECK(s.alg == DKV_A_RSA_SHA1);
	dkv_sig_free(&s);
	free(e);
	/* i= in a subdomain: passes, unless the key is strict (t=s) */
	const char *reason;
	e = edit(sv, "d=example.test;", "d=example.test; i=a@mail.example.test;");
	char *sv2 = e; /* the signature no longer covers its own text: sign again below */
	free(sv2);
	dkv_sig_parse(
		" v=1; a=rsa-sha256; d=example.test; i=@mail.example.test; s=sel; h=from; bh=AA==; b=AA==",
		&s);
	CHECK(s.error == NULL);
	struct dkv_key *k = dkv_key_parse(rsa_rec);
	CHECK_INT(dkv_start(&s, k, NOW, 300, &reason), DKV_NONE);
	dkv_sig_free(&s);
	dkv_key_free(k);
	char strict[4096];
	fill(strict, sizeof(strict), "v=DKIM1; t=s; p=%s", strstr(rsa_rec, "p=") + 2);
	k = dkv_key_parse(strict);
	dkv_sig_parse(
		" v=1; a=rsa-sha256; d=example.test; i=@mail.example.test; s=sel; h=from; bh=AA==; b=AA==",
		&s);
	CHECK_INT(dkv_start(&s, k, NOW, 300, &reason), DKV_FAIL);
	dkv_sig_free(&s);
	dkv_sig_parse(" v=1; a=rsa-sha256; d=example.test; i=x@Example.Test; s=sel; h=from; bh=AA==; b=AA==",
		      &s);
	CHECK_INT(dkv_start(&s, k, NOW, 300, &reason), DKV_NONE);
	dkv_sig_free(&s);
	dkv_key_free(k);
	free(sv);
}

static void test_body_limit(void)
{
	struct dks_params p = {.key = rsa_key, .has_body_limit = true, .body_limit = 9};
	struct dks *a = dks_new(&p);
	p.has_body_limit = false;
	struct dks *b = dks_new(&p);
	dks_body(a, (const unsigned char *)"Hi Bob,\r\nmore text\r\n", 20);
	dks_body(b, (const unsigned char *)"Hi Bob,\r\n", 9);
	char ha[64], hb[64];
	unsigned long long la = 0, lb = 0;
	CHECK(dks_body_hash(a, ha, &la) == 0 && dks_body_hash(b, hb, &lb) == 0);
	CHECK_STR(ha, hb);
	CHECK_INT(la, 20);
	CHECK_INT(lb, 9);
	dks_free(a);
	dks_free(b);
}

static struct dkv_key *newkey(const char *rec)
{
	struct dkv_key *k = dkv_key_parse(rec);
	k->refs = 1;
	return k;
}

static void test_cache(void)
{
	kc_clear();
	struct dkv_key *k = newkey(rsa_rec), *got = NULL;
	kc_put(10, "sel._domainkey.example.test", k, 60, NOW);
	CHECK_INT(k->refs, 2);
	CHECK_INT(kc_get("SEL._domainkey.Example.Test", NOW + 59, &got), 1);
	CHECK(got == k && k->refs == 3);
	kc_unref(got);
	CHECK_INT(kc_get("sel._domainkey.example.test", NOW + 60, &got), 0); /* TTL over */
	/* replaced (a rotated key) while in use: the old key lives on until
	 * its last user is done */
	struct dkv_key *k2 = newkey(ed_rec);
	kc_put(10, "sel._domainkey.example.test", k2, 60, NOW + 61);
	CHECK_INT(k->refs, 1);
	CHECK_INT(kc_get("sel._domainkey.example.test", NOW + 62, &got), 1);
	CHECK(got == k2);
	kc_unref(got);
	kc_unref(k);
	kc_unref(k2);
	/* negative entries */
	kc_put(10, "nokey._domainkey.example.test", NULL, 5, NOW);
	got = k;
	CHECK_INT(kc_get("nokey._domainkey.example.test", NOW + 1, &got), 1);
	CHECK(got == NULL);
	CHECK_INT(kc_get("nokey._domainkey.example.test", NOW + 5, &got), 0);
	/* no cache, no TTL */
	kc_put(0, "a", NULL, 5, NOW);
	kc_put(10, "b", NULL, 0, NOW);
	CHECK_INT(kc_get("a", NOW, &got) + kc_get("b", NOW, &got), 0);
	/* bounded: expired entries go first, then everything */
	kc_clear();
	char name[64];
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		kc_put(5, name, NULL, i == 0 ? 1 : 100, NOW);
	}
	CHECK_INT(kc_count(), 5);
	kc_put(5, "n5", NULL, 100, NOW + 2);
	CHECK_INT(kc_count(), 5);
	CHECK_INT(kc_get("n0", NOW + 2, &got), 0);
	CHECK_INT(kc_get("n1", NOW + 2, &got), 1);
	kc_put(5, "n6", NULL, 100, NOW + 2);
	CHECK_INT(kc_count(), 1);
	kc_clear();
	CHECK_INT(kc_count(), 0);
}

/* Threads: each gets a key from the cache, verifies a message with it and
 * gives it back, while others replace the entries. */
static char *thread_sig[2];
static int thread_bad;
static pthread_mutex_t bad_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
	long id = (long)arg;
	const char *name[2] = {"rsa._domainkey.example.test", "ed._domainkey.example.test"};
	for (int i = 0; i < 200; i++) {
		int w = (int)((id + i) % 2);
		struct dkv_key *k = NULL;
		if (kc_get(name[w], NOW, &k) != 1 || !k) {
			k = newkey(w ? ed_rec : rsa_rec);
			kc_put(4, name[w], k, 60, NOW);
		}
		if (i % 16 == (int)id) { /* a replacement racing the users */
			struct dkv_key *n = newkey(w ? ed_rec : rsa_rec);
			kc_put(4, name[w], n, 60, NOW);
			kc_unref(n);
		}
		struct dkv_sig s;
		const char *reason;
		dkv_sig_parse(thread_sig[w], &s);
		enum dkv_result r = dkv_start(&s, k, NOW, 300, &reason);
		if (r == DKV_NONE) {
			dks_body(s.body, (const unsigned char *)body, strlen(body));
			const char *nm[6] = {names[0], names[1], names[2],
					     names[3], names[4], "DKIM-Signature"};
			const char *vals[6] = {values[0], values[1], values[2],
					       values[3], values[4], thread_sig[w]};
			r = dkv_finish(&s, k, 6, nm, vals, "DKIM-Signature", &reason);
		}
		dkv_sig_free(&s);
		kc_unref(k);
		if (r != DKV_PASS) {
			pthread_mutex_lock(&bad_lock);
			thread_bad++;
			pthread_mutex_unlock(&bad_lock);
		}
	}
	return NULL;
}

static void test_threads(void)
{
	kc_clear();
	thread_sig[0] = sign(rsa_key, true, false, 864000);
	thread_sig[1] = sign(ed_key, false, true, 864000);
	pthread_t th[8];
	for (long i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, worker, (void *)i);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	CHECK_INT(thread_bad, 0);
	CHECK_INT(kc_count(), 2);
	kc_clear();
	free(thread_sig[0]);
	free(thread_sig[1]);
}

int main(void)
{
	rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	rsa_rec = record_of(rsa_key, "v=DKIM1; k=rsa; ");
	ed_rec = record_of(ed_key, "v=DKIM1; k=ed25519; ");
	test_roundtrip();
	test_key_records();
	test_signatures();
	test_body_limit();
	test_cache();
	test_threads();
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ed_key);
	free(rsa_rec);
	free(ed_rec);
	return t_done();
}
