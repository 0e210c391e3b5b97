/*
 * addr.c - addresses in header values, as the spam rules see them: the
 * first address (":addr"), the display name (":name"), the first address
 * of a header or of the envelope sender for the evals.
 */
#include <stdio.h>

#include "internal.h"

/* First address of a header value (":addr"). */
void extract_addr(struct sbuf *b, const char *v)
{
	const char *lt = strchr(v, '<');
	if (lt) {
		const char *gt = strchr(lt, '>');
		if (gt) {
			sb_add(b, lt + 1, (size_t)(gt - lt - 1));
			return;
		}
	}
	/* strip comments and take the first word with @ or the whole */
	const char *at = strchr(v, '@');
	if (!at) {
		const char *p = v;
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " (,;");
		sb_add(b, p, n);
		return;
	}
	const char *s = at, *e = at;
	while (s > v && !strchr(" \t<>(),;:\"", s[-1]))
		s--;
	while (*e && !strchr(" \t<>(),;:\"", *e))
		e++;
	sb_add(b, s, (size_t)(e - s));
}

void extract_name(struct sbuf *b, const char *v)
{
	const char *lt = strchr(v, '<');
	if (lt) {
		const char *s = v;
		while (*s == ' ' || *s == '"')
			s++;
		const char *e = lt;
		while (e > s && (e[-1] == ' ' || e[-1] == '"'))
			e--;
		sb_add(b, s, (size_t)(e - s));
		return;
	}
	const char *lp = strchr(v, '(');
	if (lp) {
		const char *rp = strchr(lp, ')');
		if (rp)
			sb_add(b, lp + 1, (size_t)(rp - lp - 1));
	}
}

void first_addr(struct msgctx *m, const char *hdr, char *out, size_t n)
{
	out[0] = 0;
	const char *v = NULL;
	if (strcasecmp(hdr, "EnvelopeFrom") == 0)
		v = envelope_from(m);
	else {
		size_t st = 0;
		const struct sift_mime_header *h = mh(m->mime, hdr, &st);
		v = h ? h->value : NULL;
	}
	if (!v)
		return;
	struct sbuf b = {0};
	extract_addr(&b, v);
	snprintf(out, n, "%s", sb_str(&b));
	free(b.d);
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
}
