/*
 * addr.c - addresses in header values, as the spam rules see them: the
 * first mailbox's address (":addr") and display name (":name") through the
 * core's address-list parser (struct spam_input.addrlist_parse), the
 * envelope sender's path, the first address of a header or of the envelope
 * sender for the evals.
 */
#include <stdio.h>

#include "internal.h"

void first_mailbox(struct msgctx *m, struct sbuf *b, const char *v, bool name)
{
	struct sift_addrs *a = m->in->addrlist_parse ? m->in->addrlist_parse(v) : NULL;
	if (a && a->count)
		sb_adds(b, !name ? a->mb[0].addr : a->mb[0].display[0] ? a->mb[0].display : a->mb[0].comment);
	free(a);
}

void envelope_path(struct sbuf *b, const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v == '<') {
		v++;
		sb_add(b, v, strcspn(v, ">"));
	} else
		sb_add(b, v, strcspn(v, " \t\r\n"));
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
		v = h ? h->raw : NULL;
	}
	if (!v)
		return;
	struct sbuf b = {0};
	if (strcasecmp(hdr, "EnvelopeFrom") == 0)
		envelope_path(&b, v);
	else
		first_mailbox(m, &b, v, false);
	snprintf(out, n, "%s", sb_str(&b));
	free(b.d);
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
}
