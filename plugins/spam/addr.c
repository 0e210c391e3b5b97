/*
 * addr.c - addresses in header values, as the spam rules see them: the
 * mailboxes' addresses (":addr") and display names (":name") through the
 * core's address-list parser (struct spam_input.addrlist_parse), the
 * envelope sender's path, the first address of a header or of the envelope
 * sender for the evals.
 */
#include <stdio.h>

#include "internal.h"

void first_mailbox(struct msgctx *m, struct sbuf *b, const char *v)
{
	struct sift_addrs *a = m->in->addrlist_parse ? m->in->addrlist_parse(v) : NULL;
	if (a && a->count)
		sb_adds(b, a->mb[0].addr);
	free(a);
}

size_t mailboxes(struct msgctx *m, struct sbuf *b, const char *v, bool name, size_t n)
{
	struct sift_addrs *a = m->in->addrlist_parse ? m->in->addrlist_parse(v) : NULL;
	for (size_t i = 0; a && i < a->count; i++) {
		const struct sift_mailbox *mb = &a->mb[i];
		const char *s = !name ? mb->addr : mb->display[0] ? mb->display : mb->comment;
		if (name && !*s)
			continue; /* no name: get() lists none for it */
		if (n++)
			sb_add(b, "\n", 1);
		sb_adds(b, s);
	}
	free(a);
	return n;
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
		first_mailbox(m, &b, v);
	snprintf(out, n, "%s", sb_str(&b));
	free(b.d);
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
}
