/*
 * dkimkeys.c - DKIM key tables and key files (see dkimkeys.h).
 *
 * Parses enumerable key tables (texthash: files with Postfix's syntax:
 * "key value" lines, '#' comments, lines starting with white space continue
 * the previous one; inline:{ k=v, { k = v } }), reads PEM private keys with
 * OpenSSL (refusing files readable by group/others, encrypted keys, RSA
 * keys outside 1024..4096 bits and other algorithms), derives the DNS
 * record and generates keys for `siftctl dkim genkey`.
 *
 * No global state: thread-safe on distinct arguments. All strings are
 * malloc'd and owned by the structures; dk_keytable_free frees them.
 */
#include "dkimkeys.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define DK_MAX_KEYFILE 65536

char *dk_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s)
		abort();
	return s;
}

static char *dk_strndup(const char *s, size_t n)
{
	char *r = strndup(s, n);
	if (!r)
		abort();
	return r;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

void dk_key_clear(struct dk_key *k)
{
	free(k->name);
	free(k->domain);
	free(k->selector);
	free(k->path);
	if (k->pem) {
		explicit_bzero(k->pem, strlen(k->pem));
		free(k->pem);
	}
	free(k->record);
	free(k->pub_b64);
	memset(k, 0, sizeof(*k));
}

void dk_keytable_free(struct dk_keytable *kt)
{
	for (size_t i = 0; i < kt->n; i++)
		dk_key_clear(&kt->keys[i]);
	free(kt->keys);
	kt->keys = NULL;
	kt->n = 0;
}

const struct dk_key *dk_keytable_find(const struct dk_keytable *kt, const char *name)
{
	for (size_t i = 0; i < kt->n; i++)
		if (strcasecmp(kt->keys[i].name, name) == 0)
			return &kt->keys[i];
	return NULL;
}

const struct dk_key *dk_keytable_find_ds(const struct dk_keytable *kt, const char *domain,
					 const char *selector)
{
	for (size_t i = 0; i < kt->n; i++)
		if (strcasecmp(kt->keys[i].domain, domain) == 0 &&
		    strcmp(kt->keys[i].selector, selector) == 0)
			return &kt->keys[i];
	return NULL;
}

bool dk_domain_ok(const char *d)
{
	if (!*d || strlen(d) > 253)
		return false;
	for (; *d; d++)
		if (!(isalnum((unsigned char)*d) || *d == '-' || *d == '.' || *d == '_'))
			return false;
	return true;
}

/* Copies s[0..n) with surrounding white space removed (malloc'd). */
static char *dup_trim(const char *s, size_t n)
{
	while (n && isspace((unsigned char)*s))
		s++, n--;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	return dk_strndup(s, n);
}

/* Adds one "NAME DOMAIN:SELECTOR:PATH" entry. */
static int add_entry(struct dk_keytable *kt, const char *where, const char *name, const char *value,
		     char **err_r)
{
	const char *c1 = strchr(value, ':');
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || !c2 || c1 == value || c2 == c1 + 1 || !c2[1]) {
		*err_r = dk_printf("%s: key %s: value \"%s\" is not DOMAIN:SELECTOR:KEYFILE", where, name,
				   value);
		return -1;
	}
	char *dom = dup_trim(value, (size_t)(c1 - value));
	char *sel = dup_trim(c1 + 1, (size_t)(c2 - c1 - 1));
	char *path = dup_trim(c2 + 1, strlen(c2 + 1));
	lower(dom);
	int rc = 0;
	if (!dk_domain_ok(dom) || !dk_domain_ok(sel) || !*path) {
		*err_r = dk_printf("%s: key %s: bad domain, selector or file in \"%s\"", where, name, value);
		rc = -1;
	}
	for (size_t i = 0; rc == 0 && i < kt->n; i++)
		if (strcasecmp(kt->keys[i].name, name) == 0) {
			*err_r = dk_printf("%s: key %s is defined twice", where, name);
			rc = -1;
		}
	if (rc < 0) {
		free(dom);
		free(sel);
		free(path);
		return -1;
	}
	struct dk_key *nk = realloc(kt->keys, (kt->n + 1) * sizeof(*nk));
	if (!nk)
		abort();
	kt->keys = nk;
	struct dk_key *k = &kt->keys[kt->n++];
	memset(k, 0, sizeof(*k));
	k->name = dk_strndup(name, strlen(name));
	lower(k->name);
	k->domain = dom;
	k->selector = sel;
	k->path = path;
	return 0;
}

/* Reads a key table file whole, at most SIFT_TABLE_FILE_MAX bytes: a
 * larger file, or endless input (/dev/zero), is refused, not read into
 * memory without end. malloc'd, NUL-terminated; 0, or -1 with *err_r. */
static int read_table(const char *file, char **data_r, size_t *len_r, char **err_r)
{
	/* O_NONBLOCK: a FIFO without a writer would hold open(2) */
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
		close(fd);
		*err_r = dk_printf("key table %s: a FIFO or socket, not a file", file);
		return -1;
	}
	int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	FILE *fp = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!fp) {
		*err_r = dk_printf("key table %s: %s", file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	size_t len = 0, cap = 0;
	char *data = NULL;
	int rc = 0;
	for (;;) {
		if (len == cap) {
			/* one byte over the limit tells a file of exactly the
			 * limit from a larger one */
			size_t ncap = cap ? 2 * cap : 65536;
			if (ncap > (size_t)SIFT_TABLE_FILE_MAX + 1)
				ncap = (size_t)SIFT_TABLE_FILE_MAX + 1;
			char *nd = realloc(data, ncap + 1);
			if (!nd)
				abort();
			data = nd;
			cap = ncap;
		}
		size_t want = cap - len, got = fread(data + len, 1, want, fp);
		len += got;
		if (len > SIFT_TABLE_FILE_MAX) {
			*err_r = dk_printf(
				"key table %s: larger than %s, the largest table Sift reads; not read", file,
				SIFT_TABLE_FILE_MAX_TEXT);
			rc = -1;
			break;
		}
		if (got < want) /* the end, or an error */
			break;
	}
	if (rc == 0 && ferror(fp)) {
		*err_r = dk_printf("key table %s: %s", file, strerror(errno));
		rc = -1;
	}
	fclose(fp);
	if (rc < 0) {
		free(data);
		return -1;
	}
	data[len] = 0;
	*data_r = data;
	*len_r = len;
	return 0;
}

static int parse_texthash(const char *file, struct dk_keytable *kt, char **err_r)
{
	char *data;
	size_t len;
	if (read_table(file, &data, &len, err_r) < 0)
		return -1;
	const char *p = data, *end = data + len;
	char *line = NULL, *logical = NULL;
	size_t lineno = 0, startline = 0;
	int rc = 0;
	for (;;) {
		/* the next physical line, as a string (a NUL byte ends it) */
		const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
		size_t n = p < end ? (size_t)((nl ? nl : end) - p) : 0;
		bool more = p < end;
		free(line);
		line = more ? dk_strndup(p, n) : NULL;
		p = nl ? nl + 1 : end;
		bool cont = more && (line[0] == ' ' || line[0] == '\t');
		char *t = more ? trim(line) : NULL;
		if (more)
			lineno++;
		if (more && (!*t || *t == '#'))
			continue;
		if (more && (n > SIFT_TABLE_LINE_MAX ||
			     (cont && logical && strlen(logical) + 1 + strlen(t) > SIFT_TABLE_LINE_MAX))) {
			*err_r = dk_printf("%s:%zu: line longer than %s", file,
					   cont && logical ? startline : lineno, SIFT_TABLE_LINE_MAX_TEXT);
			rc = -1;
			break;
		}
		if (more && cont && logical) {
			char *nlog = dk_printf("%s %s", logical, t);
			free(logical);
			logical = nlog;
			continue;
		}
		if (logical) {
			/* Finish the previous logical line. */
			char *q = logical;
			size_t kl = strcspn(q, " \t");
			char *key = dk_strndup(q, kl);
			char *val = trim(q + kl);
			char where[512];
			snprintf(where, sizeof(where), "%s:%zu", file, startline);
			if (!*val) {
				*err_r = dk_printf("%s: key %s has no value", where, key);
				rc = -1;
			} else
				rc = add_entry(kt, where, key, val, err_r);
			free(key);
			free(logical);
			logical = NULL;
			if (rc < 0)
				break;
		}
		if (!more)
			break;
		if (cont) {
			*err_r =
				dk_printf("%s:%zu: continuation line without a preceding line", file, lineno);
			rc = -1;
			break;
		}
		logical = dk_strndup(t, strlen(t));
		startline = lineno;
	}
	free(logical);
	free(line);
	free(data);
	return rc;
}

static int parse_inline(const char *spec, struct dk_keytable *kt, char **err_r)
{
	const char *s = spec + strlen("inline:");
	while (isspace((unsigned char)*s))
		s++;
	size_t len = strlen(s);
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	if (len < 2 || s[0] != '{' || s[len - 1] != '}') {
		*err_r = dk_printf("key table %s: expected inline:{ name=value, ... }", spec);
		return -1;
	}
	char *body = dk_strndup(s + 1, len - 2);
	char *p = body;
	int rc = 0;
	while (*p && rc == 0) {
		while (isspace((unsigned char)*p) || *p == ',')
			p++;
		if (!*p)
			break;
		char *item;
		if (*p == '{') {
			char *end = strchr(p, '}');
			if (!end) {
				*err_r = dk_printf("key table %s: unbalanced {", spec);
				rc = -1;
				break;
			}
			*end = 0;
			item = p + 1;
			p = end + 1;
		} else {
			item = p;
			size_t k = strcspn(p, ",");
			p += k;
			if (*p)
				*p++ = 0;
		}
		char *eq = strchr(item, '=');
		if (!eq) {
			*err_r = dk_printf("key table %s: \"%s\" has no '='", spec, trim(item));
			rc = -1;
			break;
		}
		*eq = 0;
		char *key = trim(item), *val = trim(eq + 1);
		if (!*key || !*val) {
			*err_r = dk_printf("key table %s: empty name or value", spec);
			rc = -1;
			break;
		}
		rc = add_entry(kt, "key table inline", key, val, err_r);
	}
	free(body);
	return rc;
}

int dk_keytable_load(const char *spec, bool load, struct dk_keytable *kt, char **err_r)
{
	memset(kt, 0, sizeof(*kt));
	int rc;
	if (strncmp(spec, "texthash:", 9) == 0)
		rc = parse_texthash(spec + 9, kt, err_r);
	else if (strncmp(spec, "inline:", 7) == 0)
		rc = parse_inline(spec, kt, err_r);
	else {
		*err_r = dk_printf("key table \"%s\": must be texthash:/path or inline:{...} "
				   "(the whole table is loaded at startup)",
				   spec);
		rc = -1;
	}
	for (size_t i = 0; rc == 0 && load && i < kt->n; i++)
		rc = dk_key_load(&kt->keys[i], err_r);
	if (rc < 0)
		dk_keytable_free(kt);
	return rc;
}

static char *b64(const unsigned char *d, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (!out)
		abort();
	EVP_EncodeBlock((unsigned char *)out, d, (int)n);
	return out;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* Fills type, bits, record and pub_b64 from a private key. */
static int describe(EVP_PKEY *pk, struct dk_key *k, const char *what, char **err_r)
{
	int id = EVP_PKEY_get_base_id(pk);
	unsigned char *der = NULL;
	if (id == EVP_PKEY_RSA) {
		k->type = DK_RSA;
		k->bits = EVP_PKEY_get_bits(pk);
		if (k->bits < 1024 || k->bits > 4096) {
			*err_r = dk_printf("%s: RSA key of %d bits (1024 to 4096 allowed, RFC 8301)", what,
					   k->bits);
			return -1;
		}
		int n = i2d_PUBKEY(pk, &der);
		if (n <= 0) {
			*err_r = dk_printf("%s: cannot encode the public key", what);
			return -1;
		}
		k->pub_b64 = b64(der, (size_t)n);
		OPENSSL_free(der);
		k->record = dk_printf("v=DKIM1; k=rsa; p=%s", k->pub_b64);
	} else if (id == EVP_PKEY_ED25519) {
		k->type = DK_ED25519;
		k->bits = 256;
		unsigned char raw[64];
		size_t rl = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(pk, raw, &rl) != 1 || rl != 32) {
			*err_r = dk_printf("%s: cannot extract the Ed25519 public key", what);
			return -1;
		}
		k->pub_b64 = b64(raw, rl);
		k->record = dk_printf("v=DKIM1; k=ed25519; p=%s", k->pub_b64);
	} else {
		*err_r = dk_printf("%s: unsupported key type (RSA or Ed25519 only)", what);
		return -1;
	}
	return 0;
}

int dk_key_load(struct dk_key *k, char **err_r)
{
	char what[1024];
	snprintf(what, sizeof(what), "key %s (%s._domainkey.%s): %s", k->name, k->selector, k->domain,
		 k->path);
	/* O_NONBLOCK: a FIFO (or a device) named as the key is refused below
	 * instead of blocking start-up until someone writes to it. */
	int fd = open(k->path, O_RDONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		*err_r = dk_printf("%s: %s", what, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*err_r = dk_printf("%s: not a regular file", what);
		close(fd);
		return -1;
	}
	if (st.st_mode & 077) {
		*err_r = dk_printf("%s: refusing a private key accessible by group or others (mode %04o; "
				   "chmod 600 it)",
				   what, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	if (st.st_size <= 0 || st.st_size > DK_MAX_KEYFILE) {
		*err_r = dk_printf("%s: empty or oversized key file", what);
		close(fd);
		return -1;
	}
	char *pem = malloc((size_t)st.st_size + 1);
	if (!pem)
		abort();
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, pem + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	pem[got] = 0;
	return dk_key_set_pem(k, pem, err_r);
}

int dk_key_set_pem(struct dk_key *k, char *pem, char **err_r)
{
	char what[1024];
	snprintf(what, sizeof(what), "key %s (%s._domainkey.%s): %s", k->name, k->selector, k->domain,
		 k->path);
	size_t got = strlen(pem);
	BIO *bio = BIO_new_mem_buf(pem, (int)got);
	EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
	BIO_free(bio);
	if (!pk) {
		*err_r = dk_printf("%s: not a PEM private key (or an encrypted one)", what);
		explicit_bzero(pem, got);
		free(pem);
		return -1;
	}
	int rc = describe(pk, k, what, err_r);
	EVP_PKEY_free(pk);
	if (rc < 0) {
		explicit_bzero(pem, got);
		free(pem);
		return -1;
	}
	k->pem = pem;
	return 0;
}

int dk_key_generate(const char *path, enum dk_keytype type, int bits, struct dk_key *k, char **err_r)
{
	EVP_PKEY *pk = NULL;
	if (type == DK_RSA) {
		if (bits < 1024 || bits > 4096) {
			*err_r = dk_printf("RSA keys are 1024 to 4096 bits");
			return -1;
		}
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	} else
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!pk) {
		*err_r = dk_printf("key generation failed");
		return -1;
	}
	if (describe(pk, k, path, err_r) < 0) {
		EVP_PKEY_free(pk);
		return -1;
	}
	BIO *mem = BIO_new(BIO_s_mem());
	if (!mem || PEM_write_bio_PrivateKey(mem, pk, NULL, NULL, 0, NULL, NULL) != 1) {
		BIO_free(mem);
		EVP_PKEY_free(pk);
		*err_r = dk_printf("cannot encode the private key");
		return -1;
	}
	EVP_PKEY_free(pk);
	char *data;
	long len = BIO_get_mem_data(mem, &data);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		*err_r = dk_printf("%s: %s", path, strerror(errno));
		BIO_free(mem);
		return -1;
	}
	bool ok = fchmod(fd, 0600) == 0 && write(fd, data, (size_t)len) == (ssize_t)len && fsync(fd) == 0;
	int e = errno;
	ok = close(fd) == 0 && ok;
	k->pem = dk_strndup(data, (size_t)len);
	BIO_free(mem);
	if (!ok) {
		*err_r = dk_printf("%s: %s", path, strerror(e));
		unlink(path);
		return -1;
	}
	return 0;
}

char *dk_record_zone_strings(const char *record)
{
	size_t n = strlen(record);
	size_t cap = n + 4 * (n / 255 + 2) + 16;
	char *out = malloc(cap), *o = out;
	if (!out)
		abort();
	for (size_t off = 0; off < n || off == 0; off += 255) {
		size_t k = n - off < 255 ? n - off : 255;
		if (off)
			*o++ = ' ';
		*o++ = '"';
		memcpy(o, record + off, k);
		o += k;
		*o++ = '"';
		if (n == 0)
			break;
	}
	*o = 0;
	return out;
}

char *dk_tag_value(const char *list, const char *tag)
{
	size_t tl = strlen(tag);
	const char *p = list;
	while (p && *p) {
		while (isspace((unsigned char)*p) || *p == ';')
			p++;
		const char *name = p;
		while (*p && *p != '=' && *p != ';')
			p++;
		const char *ne = p;
		while (ne > name && isspace((unsigned char)ne[-1]))
			ne--;
		if (*p != '=') {
			continue;
		}
		p++;
		const char *v = p;
		while (*p && *p != ';')
			p++;
		if ((size_t)(ne - name) == tl && strncasecmp(name, tag, tl) == 0) {
			char *out = malloc((size_t)(p - v) + 1), *o = out;
			if (!out)
				abort();
			for (const char *q = v; q < p; q++)
				if (!isspace((unsigned char)*q))
					*o++ = *q;
			*o = 0;
			return out;
		}
	}
	return NULL;
}
