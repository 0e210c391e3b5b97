/*
 * msg.c - one message as received: headers in order (byte-exact values) and
 * the body, kept in memory up to a limit and spooled beyond it to an
 * unlinked temporary file (O_TMPFILE where the file system has it). A
 * message belongs to one connection at a time; nothing here is locked.
 *
 * The core owns this one copy of the message; its users read it instead of
 * rebuilding it:
 *   - sift_msg_read() reads the message as received: the header block
 *     ("Name:value" CRLF per header, then an empty line), serialised once
 *     into the message when it is first asked for (again only if a header
 *     is added afterwards), followed by the body, from memory or from the
 *     spool file, at any offset and in chunks of the caller's size;
 *   - sift_msg_body_map() hands out the body's first bytes as one
 *     read-only buffer without copying them: the memory buffer itself, or
 *     the spool file mapped read-only. What it returns stays valid until
 *     sift_msg_free(): a memory body it has handed out is never moved again
 *     (more body goes to the spool file), and a spool mapping stays mapped
 *     while the file grows.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sift.h"
#include "mailsyntax.h"

struct sift_msg {
	struct sift_header *hdrs;
	size_t nhdr, hcap;
	long long hmem; /* what the headers hold, as sift_msg_header_memory() counts it */
	struct sift_buf mem;
	size_t mem_limit;
	char *tmpdir;
	int fd;			/* spool file, -1 until needed */
	long long size;		/* body bytes in all */
	long long spooled;	/* bytes in the file (the file holds the whole body) */
	struct sift_buf hblock; /* the header block, when hblock_ok */
	bool hblock_ok;
	bool mem_pinned; /* mem.data was handed out: never moved or freed early */
	void *map;	 /* read-only mapping of the spool file's start, or NULL */
	size_t map_len;
	const unsigned char *view; /* what sift_msg_body_map handed out */
	size_t view_len;
};

struct sift_msg *sift_msg_new(size_t mem_limit, const char *tmpdir)
{
	struct sift_msg *m = sift_calloc(1, sizeof(*m));
	m->mem_limit = mem_limit;
	m->tmpdir = sift_strdup(tmpdir && *tmpdir ? tmpdir : "/tmp");
	m->fd = -1;
	return m;
}

void sift_msg_free(struct sift_msg *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nhdr; i++) {
		free((char *)m->hdrs[i].name);
		free((char *)m->hdrs[i].value);
	}
	free(m->hdrs);
	sift_buf_free(&m->mem);
	sift_buf_free(&m->hblock);
	if (m->map)
		munmap(m->map, m->map_len);
	if (m->fd >= 0)
		close(m->fd);
	free(m->tmpdir);
	free(m);
}

/* A copy of v with every bare LF (a milter's fold) made CRLF. */
static char *crlf_copy(const char *v)
{
	size_t n = 0, bare = 0;
	for (; v[n]; n++)
		if (v[n] == '\n' && (n == 0 || v[n - 1] != '\r'))
			bare++;
	char *c = sift_malloc(n + bare + 1), *o = c;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r'))
			*o++ = '\r';
		*o++ = v[i];
	}
	*o = 0;
	return c;
}

const struct sift_header *sift_msg_add_header(struct sift_msg *m, const char *name, const char *value)
{
	if (m->nhdr == m->hcap) {
		m->hcap = m->hcap ? m->hcap * 2 : 32;
		m->hdrs = sift_realloc(m->hdrs, m->hcap * sizeof(*m->hdrs));
	}
	m->hdrs[m->nhdr].name = sift_strdup(name);
	m->hdrs[m->nhdr].value = crlf_copy(value ? value : "");
	m->hmem += sift_header_cost(name, m->hdrs[m->nhdr].value);
	m->hblock_ok = false; /* serialised again when next asked for */
	return &m->hdrs[m->nhdr++];
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int open_spool(struct sift_msg *m, char **err_r)
{
	int fd = open(m->tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		char *path = sift_asprintf("%s/sift.XXXXXX", m->tmpdir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
		free(path);
	}
	if (fd < 0) {
		*err_r = sift_asprintf("cannot create a spool file in %s: %s", m->tmpdir, strerror(errno));
		return -1;
	}
	m->fd = fd;
	return 0;
}

int sift_msg_add_body(struct sift_msg *m, const void *buf, size_t len, char **err_r)
{
	if (m->fd < 0 && !m->mem_pinned && m->mem.len + len <= m->mem_limit) {
		sift_buf_add(&m->mem, buf, len);
		m->size += (long long)len;
		return 0;
	}
	if (m->fd < 0) {
		if (open_spool(m, err_r) < 0)
			return -1;
		if (m->mem.len && write_all(m->fd, m->mem.data, m->mem.len) < 0)
			goto werr;
		m->spooled = (long long)m->mem.len;
		if (!m->mem_pinned)
			sift_buf_free(&m->mem);
	}
	if (write_all(m->fd, buf, len) < 0)
		goto werr;
	m->spooled += (long long)len;
	m->size += (long long)len;
	return 0;
werr:
	*err_r = sift_asprintf("writing the spool file: %s", strerror(errno));
	return -1;
}

long long sift_header_cost(const char *name, const char *value)
{
	return (long long)(strlen(name) + strlen(value ? value : "")) + 3 + SIFT_HEADER_OVERHEAD;
}

void sift_msg_count_header(struct sift_msg *m, const char *name, const char *value)
{
	m->hmem += sift_header_cost(name, value);
}

long long sift_msg_header_memory(const struct sift_msg *m)
{
	return m->hmem;
}

size_t sift_msg_header_count(const struct sift_msg *m)
{
	return m->nhdr;
}

const struct sift_header *sift_msg_header(const struct sift_msg *m, size_t i)
{
	return i < m->nhdr ? &m->hdrs[i] : NULL;
}

long long sift_msg_body_size(const struct sift_msg *m)
{
	return m->size;
}

long sift_msg_body_read(struct sift_msg *m, long long off, void *buf, size_t len)
{
	if (off < 0)
		return -1;
	if (off >= m->size)
		return 0;
	if ((long long)len > m->size - off)
		len = (size_t)(m->size - off);
	if (m->fd < 0) {
		memcpy(buf, m->mem.data + off, len);
		return (long)len;
	}
	ssize_t r;
	do
		r = pread(m->fd, buf, len, off);
	while (r < 0 && errno == EINTR);
	return (long)r;
}

/* Serialises the header block once: "Name:value" CRLF per header (a bare
 * LF in a value becomes CRLF, so that every line ends in CRLF), then the
 * empty line. */
static const struct sift_buf *header_block(struct sift_msg *m)
{
	if (m->hblock_ok)
		return &m->hblock;
	m->hblock.len = 0;
	for (size_t i = 0; i < m->nhdr; i++) {
		sift_buf_adds(&m->hblock, m->hdrs[i].name);
		sift_buf_add(&m->hblock, ":", 1);
		const char *val = m->hdrs[i].value, *v = val;
		for (const char *p = val; *p; p++)
			if (*p == '\n' && (p == val || p[-1] != '\r')) {
				sift_buf_add(&m->hblock, v, (size_t)(p - v));
				sift_buf_add(&m->hblock, "\r", 1);
				v = p; /* the LF goes with the next piece */
			}
		sift_buf_adds(&m->hblock, v);
		sift_buf_add(&m->hblock, "\r\n", 2);
	}
	sift_buf_add(&m->hblock, "\r\n", 2);
	m->hblock_ok = true;
	return &m->hblock;
}

long long sift_msg_header_size(struct sift_msg *m)
{
	return (long long)header_block(m)->len;
}

long long sift_msg_size(struct sift_msg *m)
{
	return sift_msg_header_size(m) + m->size;
}

long sift_msg_read(struct sift_msg *m, long long off, void *buf, size_t len)
{
	if (off < 0)
		return -1;
	const struct sift_buf *h = header_block(m);
	long long hl = (long long)h->len;
	if (len > (size_t)LONG_MAX)
		len = (size_t)LONG_MAX;
	size_t got = 0;
	if (off < hl) {
		got = (size_t)(hl - off) < len ? (size_t)(hl - off) : len;
		memcpy(buf, h->data + off, got);
	}
	if (got == len)
		return (long)got;
	long r = sift_msg_body_read(m, off + (long long)got - hl, (char *)buf + got, len - got);
	if (r < 0)
		return got ? (long)got : -1;
	return (long)got + r;
}

const unsigned char *sift_msg_body_map(struct sift_msg *m, size_t max, size_t *len_r)
{
	if (!m->view) {
		size_t n = m->size < (long long)max ? (size_t)m->size : max;
		if (m->fd < 0) {
			m->mem_pinned = true;
			m->view =
				m->mem.data ? (const unsigned char *)m->mem.data : (const unsigned char *)"";
		} else if (n == 0) {
			m->view = (const unsigned char *)"";
		} else {
			void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, m->fd, 0);
			if (p == MAP_FAILED)
				return NULL;
			m->map = p;
			m->map_len = n;
			m->view = p;
		}
		m->view_len = n;
	}
	*len_r = m->view_len;
	return m->view;
}

/* Adds one raw line (without its line end) to the body with CRLF. */
static int body_line(struct sift_msg *m, const char *line, size_t n, char **err_r)
{
	if (sift_msg_add_body(m, line, n, err_r) < 0)
		return -1;
	return sift_msg_add_body(m, "\r\n", 2, err_r);
}

int sift_msg_read_file(struct sift_msg *m, FILE *fp, char **err_r)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool in_header = true, first = true;
	struct sift_buf name = {0}, value = {0};
	bool have = false;
	int rc = 0;

	while ((n = getline(&line, &cap, fp)) >= 0) {
		size_t len = (size_t)n;
		if (len && line[len - 1] == '\n')
			len--;
		if (len && line[len - 1] == '\r')
			len--;
		if (first && len >= 5 && strncmp(line, "From ", 5) == 0) {
			first = false; /* mbox separator line */
			continue;
		}
		first = false;
		if (in_header) {
			if (len > 0 && (line[0] == ' ' || line[0] == '\t') && have) {
				sift_buf_add(&value, "\r\n", 2);
				sift_buf_add(&value, line, len);
				continue;
			}
			if (have) {
				sift_msg_add_header(m, sift_buf_str(&name), sift_buf_str(&value));
				have = false;
			}
			if (len == 0) {
				in_header = false;
				continue;
			}
			size_t colon, nlen = sift_header_name_len(line, len, &colon);
			if (!nlen) {
				/* Not a header: the body starts here (as Postfix does). */
				in_header = false;
				if (body_line(m, line, len, err_r) < 0) {
					rc = -1;
					break;
				}
				continue;
			}
			name.len = value.len = 0;
			sift_buf_add(&name, line, nlen);
			sift_buf_add(&value, line + colon + 1, len - colon - 1);
			have = true;
			continue;
		}
		if (body_line(m, line, len, err_r) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && have)
		sift_msg_add_header(m, sift_buf_str(&name), sift_buf_str(&value));
	if (rc == 0 && ferror(fp)) {
		*err_r = sift_asprintf("read error: %s", strerror(errno));
		rc = -1;
	}
	free(line);
	sift_buf_free(&name);
	sift_buf_free(&value);
	return rc;
}
