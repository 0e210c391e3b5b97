/*
 * fuzz_msg.c - libFuzzer target for the MIME parser (lib/mime.c). The input
 * is a whole message (headers, blank line, body); it is parsed with small
 * limits (so that bounds are exercised) and with the defaults, and the
 * result's invariants are checked: every part's parent precedes it, depths
 * grow by one, decoded text is NUL-terminated at its length, URIs have a
 * host string, HTML statistics exist for the rendered HTML leaves only and
 * agree with the part's. Single-threaded; replayed over tests/fuzz/corpus/msg/ in
 * every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailsyntax.h"
#include "mime.h"
#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct sift_mime *m, const struct sift_mime_limits *lim)
{
	if (m->part_count == 0)
		abort();
	if (lim && (m->part_count > lim->max_parts + 1 || m->uri_count > lim->max_uris))
		abort();
	for (size_t i = 0; i < m->header_count; i++)
		if (!m->headers[i].name || !m->headers[i].value || !m->headers[i].raw)
			abort();
	for (size_t i = 0; i < m->part_count; i++) {
		const struct sift_mime_part *p = &m->parts[i];
		if (i == 0 ? p->parent != -1 : (p->parent < 0 || (size_t)p->parent >= i))
			abort();
		if (i && p->depth != m->parts[p->parent].depth + 1)
			abort();
		if (lim && p->depth > lim->max_depth + 1)
			abort();
		if (!p->type || !p->charset || !p->encoding || !p->filename || !p->boundary || !p->html_title)
			abort();
		if (p->text && p->text[p->text_len] != 0)
			abort();
		if (p->data_len && !p->data)
			abort();
		for (size_t k = 0; k < p->header_count; k++)
			if (!p->headers[k].value)
				abort();
		/* HTML statistics exactly for the HTML leaves that were rendered */
		const struct sift_html *h = m->html[i];
		if (!!h != (p->text && (p->flags & SIFT_MIME_P_HTML)))
			abort();
		if (h && (!h->title || !h->anchor || !h->comments || h->bad_tags > h->tags ||
			  h->closed_extra > h->tags || h->ntagnames > SIFT_HTML_MAX_TAGNAMES ||
			  h->tags != p->html_tags || strcmp(h->title, p->html_title) != 0))
			abort();
	}
	for (size_t i = 0; i < m->uri_count; i++)
		if (!m->uris[i].uri || !m->uris[i].host || m->uris[i].part < 0 ||
		    (size_t)m->uris[i].part >= m->part_count)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sift_mime_limits small = {.max_depth = 4,
					 .max_parts = 16,
					 .max_headers = 32,
					 .max_header_len = 256,
					 .max_decoded = 65536,
					 .max_uris = 8};
	struct sift_mime *m = sift_mime_parse_message(data, size, &small);
	check(m, &small);
	sift_mime_free(m);
	m = sift_mime_parse_message(data, size, NULL);
	check(m, NULL);
	sift_mime_free(m);
	char *h = sift_strndup((const char *)data, size > 4096 ? 4096 : size);
	free(sift_header_decode(h));
	free(h);
	return 0;
}
