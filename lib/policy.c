/*
 * policy.c - the Postfix SMTP access policy delegation protocol codec
 * (SMTPD_POLICY_README; reference/protocols.md section 3).
 *
 * A request is a sequence of "name=value" lines, each ended by "\n" (a "\r"
 * before the "\n" is tolerated and removed), and is ended by an empty line.
 * The parser is strict, because a policy client that sends anything else is
 * broken or hostile and the right answer is to log and disconnect without
 * replying (Postfix then retries on a new connection):
 *   - a line longer than SIFT_POLICY_MAX_LINE bytes (not counting the "\n";
 *     a tolerated "\r" counts) is an error as soon as the limit is passed,
 *     without waiting for its end, so a 1 MB line costs at most 4 KB of
 *     buffering;
 *   - a request whose lines add up to more than SIFT_POLICY_MAX_REQUEST
 *     bytes is an error: a connection holds 64 KB of attributes at most
 *     (Postfix's requests are about 1 KB), not 128 lines of 4 KB;
 *   - more than SIFT_POLICY_MAX_ATTRS attributes, a line without '=', an
 *     empty attribute name, or a NUL byte anywhere in a line is an error;
 *   - an empty request (an empty line with no attribute before it) is an
 *     error: Postfix never sends one;
 *   - duplicate attributes: the FIRST occurrence wins. Postfix never sends
 *     duplicates and the protocol allows keeping either; keeping the first
 *     means a value cannot be overridden by something appended later.
 *     Later occurrences stay in p->req.attrs (so they count against
 *     SIFT_POLICY_MAX_ATTRS and cost no duplicate scan while parsing), but
 *     sift_policy_get, which scans from the start, never returns them.
 * Values are not interpreted (no xtext decoding, no trimming).
 *
 * Speed: this is policyd's hot path. Complete lines are located with
 * memchr and parsed in place from the caller's buffer; only a line split
 * across two feeds is copied into p->line. Each attribute costs one
 * allocation: name and value share one block "name\0value\0" (attr.name
 * points at the block, attr.value into it), freed by
 * sift_policy_parser_reset.
 *
 * Once sift_policy_feed returned -1 the parser stays in error (further feeds
 * return -1) until reset. After a feed returned 1 the caller uses p->req and
 * must reset the parser before feeding the rest of its input.
 *
 * Threading: a parser belongs to one connection and is used by one thread at
 * a time; there is no shared state.
 */
#include <stdlib.h>
#include <string.h>

#include "sift.h"

void sift_policy_parser_init(struct sift_policy_parser *p)
{
	p->req.n = 0;
	p->line_len = 0;
	p->req_bytes = 0;
	p->line[0] = 0;
	p->error[0] = 0;
}

void sift_policy_parser_reset(struct sift_policy_parser *p)
{
	for (size_t i = 0; i < p->req.n; i++) {
		free(p->req.attrs[i].name);
		p->req.attrs[i].name = p->req.attrs[i].value = NULL;
	}
	p->req.n = 0;
	p->line_len = 0;
	p->req_bytes = 0;
	p->error[0] = 0;
}

static int fail(struct sift_policy_parser *p, const char *why)
{
	size_t n = strlen(why);
	if (n >= sizeof(p->error))
		n = sizeof(p->error) - 1;
	memcpy(p->error, why, n);
	p->error[n] = 0;
	return -1;
}

/* One complete line without its "\n". Returns 1 at the end of the request,
 * 0 after an attribute line, -1 on error. */
static int parse_line(struct sift_policy_parser *p, const char *s, size_t len)
{
	if (len > 0 && s[len - 1] == '\r')
		len--;
	if (len == 0) {
		if (p->req.n == 0)
			return fail(p, "empty request");
		return 1;
	}
	if (memchr(s, '\0', len))
		return fail(p, "NUL byte in request");
	const char *eq = memchr(s, '=', len);
	if (!eq)
		return fail(p, "line without '='");
	size_t nlen = (size_t)(eq - s);
	if (nlen == 0)
		return fail(p, "empty attribute name");
	if (p->req.n >= SIFT_POLICY_MAX_ATTRS)
		return fail(p, "too many attributes");
	p->req_bytes += len + 1;
	if (p->req_bytes > SIFT_POLICY_MAX_REQUEST)
		return fail(p, "request too large");
	char *block = sift_malloc(len + 1);
	memcpy(block, s, len);
	block[len] = 0;
	block[nlen] = 0;
	p->req.attrs[p->req.n].name = block;
	p->req.attrs[p->req.n].value = block + nlen + 1;
	p->req.n++;
	return 0;
}

int sift_policy_feed(struct sift_policy_parser *p, const char *buf, size_t len, size_t *used_r)
{
	size_t pos = 0;
	int rc = 0;

	*used_r = 0;
	if (p->error[0])
		return -1;
	while (pos < len) {
		const char *start = buf + pos;
		const char *nl = memchr(start, '\n', len - pos);
		if (!nl) {
			size_t seg = len - pos;
			if (p->line_len + seg > SIFT_POLICY_MAX_LINE) {
				*used_r = pos;
				return fail(p, "line too long");
			}
			memcpy(p->line + p->line_len, start, seg);
			p->line_len += seg;
			*used_r = len;
			return 0;
		}
		size_t seg = (size_t)(nl - start);
		if (p->line_len + seg > SIFT_POLICY_MAX_LINE) {
			*used_r = pos;
			return fail(p, "line too long");
		}
		pos += seg + 1;
		if (p->line_len == 0) {
			rc = parse_line(p, start, seg);
		} else {
			memcpy(p->line + p->line_len, start, seg);
			rc = parse_line(p, p->line, p->line_len + seg);
			p->line_len = 0;
		}
		if (rc != 0) {
			*used_r = pos;
			return rc;
		}
	}
	*used_r = pos;
	return 0;
}

const char *sift_policy_get(const struct sift_policy_req *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->attrs[i].name, name) == 0)
			return r->attrs[i].value;
	return NULL;
}
