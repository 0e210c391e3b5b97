/*
 * sigrate.c - DKIM signatures (and verifications) per second on one core,
 * outside Postfix: Sift's signer (plugins/dkim/dkimsign.c, the key parsed
 * once) and libopendkim's (the key parsed per message, as OpenDKIM does),
 * both relaxed/simple with the plugin's default signed and oversigned header
 * lists and x= set; verification with libopendkim as the plugin does (key
 * records from a callback as from the plugin's cache).
 *
 *   sigrate KEYFILE rsa|ed25519 SECONDS MESSAGE...
 *
 * Signs the messages round robin for SECONDS with each signer, then
 * verifies the signed messages for SECONDS, and prints "sign N/s",
 * "sign-libopendkim N/s" and "verify N/s". Single-threaded; built and run
 * by bench/dkim/dkim-bench.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <opendkim/dkim.h>

#include "dkimsign.h"

static const char *signhdrs[] = {"from",
				 "sender",
				 "reply-to",
				 "subject",
				 "date",
				 "message-id",
				 "to",
				 "cc",
				 "mime-version",
				 "content-type",
				 "content-transfer-encoding",
				 "in-reply-to",
				 "references",
				 NULL};
static const char *oversign[] = {"from",     "to",	     "cc",	     "subject", "date",
				 "reply-to", "content-type", "mime-version", NULL};
static char record[4096];

static DKIM_CBSTAT lookup(DKIM *d, DKIM_SIGINFO *s, unsigned char *buf, size_t len)
{
	(void)d, (void)s;
	snprintf((char *)buf, len, "%s", record);
	return DKIM_CBSTAT_CONTINUE;
}

static char *slurp(const char *p, size_t *n)
{
	FILE *f = fopen(p, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long l = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)l + 1);
	*n = fread(b, 1, (size_t)l, f);
	b[*n] = 0;
	fclose(f);
	return b;
}

/* A message split into header fields (name, value after the colon with its
 * CRLF folding) and body, as filterd's message store holds it. */
struct split {
	char **names, **values;
	size_t n;
	const unsigned char *body;
	size_t blen;
};

static void split_message(const char *m, size_t len, struct split *s)
{
	const char *p = m, *end = m + len;
	s->names = calloc(1024, sizeof(char *));
	s->values = calloc(1024, sizeof(char *));
	while (p < end && *p != '\r' && *p != '\n' && s->n < 1024) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		if (!colon)
			break;
		const char *q = colon;
		for (;;) { /* the field ends at a line end not followed by WSP */
			const char *nl = memchr(q, '\n', (size_t)(end - q));
			if (!nl || nl + 1 >= end || (nl[1] != ' ' && nl[1] != '\t')) {
				q = nl ? nl : end;
				break;
			}
			q = nl + 1;
		}
		const char *ve = q > colon && q[-1] == '\r' ? q - 1 : q;
		s->names[s->n] = strndup(p, (size_t)(colon - p));
		s->values[s->n++] = strndup(colon + 1, (size_t)(ve - colon - 1));
		p = q < end ? q + 1 : end;
	}
	if (p < end && *p == '\r')
		p++;
	if (p < end && *p == '\n')
		p++;
	s->body = (const unsigned char *)p;
	s->blen = (size_t)(end - p);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: sigrate KEYFILE rsa|ed25519 SECONDS MESSAGE...\n");
		return 2;
	}
	size_t kl;
	char *key = slurp(argv[1], &kl);
	int ed = strcmp(argv[2], "ed25519") == 0;
	double secs = atof(argv[3]);
	int nm = argc - 4;
	char **msgs = calloc((size_t)nm, sizeof(char *));
	size_t *lens = calloc((size_t)nm, sizeof(size_t));
	for (int i = 0; i < nm; i++)
		msgs[i] = slurp(argv[4 + i], &lens[i]);
	snprintf(record, sizeof(record), "%s", getenv("SIGRATE_RECORD") ? getenv("SIGRATE_RECORD") : "");
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	uint64_t ttl = 864000;
	dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNATURETTL, &ttl, sizeof(ttl));
	dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, signhdrs, sizeof(signhdrs));
	dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, oversign, sizeof(oversign));
	dkim_set_key_lookup(lib, lookup);
	/* Sift's signer: header fields split once, as the host hands them over. */
	EVP_PKEY *pkey = dks_load_key(key);
	if (!pkey) {
		fprintf(stderr, "cannot parse %s\n", argv[1]);
		return 1;
	}
	struct split *sp = calloc((size_t)nm, sizeof(*sp));
	for (int i = 0; i < nm; i++)
		split_message(msgs[i], lens[i], &sp[i]);
	long ns = 0;
	double t0 = now(), t;
	do {
		struct split *m = &sp[ns % nm];
		struct dks_params p = {.key = pkey,
				       .domain = "example.test",
				       .selector = "s",
				       .relaxed_headers = true,
				       .now = time(NULL),
				       .ttl_s = 864000,
				       .sign_headers = signhdrs,
				       .oversign_headers = oversign};
		struct dks *d = dks_new(&p);
		char *v = NULL;
		const char *err = "cannot start";
		if (!d || dks_body(d, m->body, m->blen) < 0 ||
		    dks_finish(d, m->n, (const char *const *)m->names, (const char *const *)m->values, &v,
			       &err) < 0) {
			fprintf(stderr, "signing failed: %s\n", err);
			return 1;
		}
		free(v);
		dks_free(d);
		ns++;
		t = now();
	} while (t - t0 < secs || ns < nm);
	printf("sign %.0f/s (%ld signatures, %.3f ms each)\n", ns / (t - t0), ns, (t - t0) * 1000 / ns);

	char **signed_msgs = calloc((size_t)nm, sizeof(char *));
	size_t *slens = calloc((size_t)nm, sizeof(size_t));
	long n = 0;
	t0 = now();
	do {
		int i = (int)(n % nm);
		DKIM_STAT st;
		DKIM *d = dkim_sign(lib, (unsigned char *)"bench", NULL, (dkim_sigkey_t)key,
				    (unsigned char *)"s", (unsigned char *)"example.test",
				    ed ? DKIM_CANON_RELAXED : DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE,
				    ed ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256, -1, &st);
		if (!d || dkim_chunk(d, (unsigned char *)msgs[i], lens[i]) != DKIM_STAT_OK ||
		    dkim_chunk(d, NULL, 0) != DKIM_STAT_OK || dkim_eom(d, NULL) != DKIM_STAT_OK) {
			fprintf(stderr, "signing failed: %s\n", d ? dkim_geterror(d) : dkim_getresultstr(st));
			return 1;
		}
		unsigned char *h;
		size_t hl;
		dkim_getsighdr_d(d, 16, &h, &hl);
		if (!signed_msgs[i]) {
			signed_msgs[i] = malloc(hl + lens[i] + 32);
			int k = sprintf(signed_msgs[i], "DKIM-Signature: ");
			for (size_t j = 0; j < hl; j++)
				if (h[j] != '\r')
					signed_msgs[i][k++] = (char)h[j] == '\n' ? '\n' : (char)h[j];
			/* CRLF line ends inside the header */
			char *tmp = malloc((size_t)k * 2 + lens[i] + 8);
			size_t o = 0;
			for (int j = 0; j < k; j++) {
				if (signed_msgs[i][j] == '\n')
					tmp[o++] = '\r';
				tmp[o++] = signed_msgs[i][j];
			}
			tmp[o++] = '\r';
			tmp[o++] = '\n';
			memcpy(tmp + o, msgs[i], lens[i]);
			o += lens[i];
			free(signed_msgs[i]);
			signed_msgs[i] = tmp;
			slens[i] = o;
		}
		dkim_free(d);
		n++;
		t = now();
	} while (t - t0 < secs || n < nm);
	printf("sign-libopendkim %.0f/s (%ld signatures, %.3f ms each)\n", n / (t - t0), n,
	       (t - t0) * 1000 / n);
	long v = 0, ok = 0;
	t0 = now();
	do {
		int i = (int)(v % nm);
		DKIM_STAT st;
		DKIM *d = dkim_verify(lib, (unsigned char *)"bench", NULL, &st);
		dkim_chunk(d, (unsigned char *)signed_msgs[i], slens[i]);
		dkim_chunk(d, NULL, 0);
		if (dkim_eom(d, NULL) == DKIM_STAT_OK)
			ok++;
		dkim_free(d);
		v++;
		t = now();
	} while (t - t0 < secs || v < nm);
	printf("verify %.0f/s (%ld verifications, %ld passed, %.3f ms each)\n", v / (t - t0), v, ok,
	       (t - t0) * 1000 / v);
	return ok == v ? 0 : 1;
}
