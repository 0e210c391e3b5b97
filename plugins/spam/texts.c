/*
 * texts.c - per message, the texts rules match, built from the parsed MIME
 * view as SpamAssassin builds them: header values by target (decoded, raw,
 * :addr, :name, ALL, ToCc, MESSAGEID, EnvelopeFrom, X-Spam-Relays-*, the
 * X-Sift-* connection pseudo-headers), the rendered body lines, the raw
 * body paragraphs and the pristine message.
 */
#include "internal.h"

/* Room for n more octets (and the terminating NUL) in b. */
static void sb_reserve(struct sbuf *b, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = b->n + n + 1;
		b->d = xrealloc(b->d, b->cap);
		b->d[b->n] = 0;
	}
}

/* s[0..n) copied in runs without its CRs: every CR when all_cr, else only
 * those that a LF follows inside s (the CRLF -> LF of SpamAssassin's texts). */
static void sb_add_uncr(struct sbuf *b, const char *s, size_t n, bool all_cr)
{
	sb_reserve(b, n);
	const char *p = s, *end = s + n;
	while (p < end) {
		const char *r = memchr(p, '\r', (size_t)(end - p));
		if (!r) {
			sb_add(b, p, (size_t)(end - p));
			break;
		}
		bool drop = all_cr || (r + 1 < end && r[1] == '\n');
		sb_add(b, p, (size_t)(r - p) + (drop ? 0 : 1));
		p = r + 1;
	}
}

/* SpamAssassin's raw unfolding: CR/LF + white space -> one space. */
static void add_raw_unfolded(struct sbuf *b, const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p == '\r' || *p == '\n') {
			const char *q = p;
			while (*q == '\r' || *q == '\n')
				q++;
			if (*q == ' ' || *q == '\t') {
				while (*q == ' ' || *q == '\t')
					q++;
				sb_add(b, " ", 1);
			}
			p = q - 1;
			continue;
		}
		sb_add(b, p, 1);
	}
}

/* true if a `name` header comes after a Received: header (SpamAssassin's
 * /^Received:.*?^name:/sm over all the headers: any of them, not only the
 * first, makes the header untrustworthy) */
static bool received_before(struct msgctx *m, const char *name)
{
	bool rcvd = false;
	for (size_t i = 0; i < m->mime->header_count; i++) {
		if (rcvd && strcasecmp(m->mime->headers[i].name, name) == 0)
			return true;
		if (strcasecmp(m->mime->headers[i].name, "Received") == 0)
			rcvd = true;
	}
	return false;
}

/* The envelope sender: the SMTP one when known (filterd), else as
 * SpamAssassin's get_envelope_from() infers it from the Received headers
 * and the others. */
const char *envelope_from(struct msgctx *m)
{
	if (m->in->envelope_from)
		return m->in->envelope_from;
	const char *ef = lasthop_envfrom(m);
	if (ef)
		return ef;
	size_t st = 0;
	const struct sift_mime_header *h = mh(m->mime, "X-Sender", &st);
	if (h && strchr(h->value, '@')) {
		st = 0;
		const struct sift_mime_header *r;
		while ((r = mh(m->mime, "Received", &st)))
			if (strstr(r->value, "(fetchmail"))
				return NULL;
	}
	if (m->envfrom_done)
		return m->envfrom;
	m->envfrom_done = true;
	/* get("NAME:first:addr"): the first address of the first such
	 * header; one without any is passed over. After a Received: header,
	 * X-Envelope-From and Return-Path mean no envelope sender is known,
	 * Envelope-Sender only is passed over. */
	static const char *const hdrs[] = {"X-Envelope-From", "Envelope-Sender", "Return-Path", NULL};
	for (const char *const *n = hdrs; *n; n++) {
		st = 0;
		h = mh(m->mime, *n, &st);
		struct sbuf b = {0};
		if (h)
			first_mailbox(m, &b, h->raw);
		if (!b.n) {
			free(b.d);
			continue;
		}
		if (received_before(m, *n)) {
			free(b.d);
			if (n == hdrs + 1)
				continue;
			return NULL;
		}
		m->envfrom = b.d;
		return m->envfrom;
	}
	return NULL;
}

/* The headers [*from, *to) of ALL-TRUSTED, ALL-INTERNAL, ALL-UNTRUSTED or
 * ALL-EXTERNAL (which: the part after "ALL-"), as SpamAssassin's
 * get_all_hdrs_in_rcvd_index_range: the trusted (internal) ones run from
 * the top through the Received: header after the last one a trusted
 * (internal) relay added, which that relay wrote; the untrusted (external)
 * ones from that Received: header to the end. */
static void all_range(struct msgctx *m, const char *which, size_t *from, size_t *to)
{
	struct relayinfo *ri = relays(m);
	bool trust = strcasecmp(which, "TRUSTED") == 0 || strcasecmp(which, "UNTRUSTED") == 0;
	bool head = strcasecmp(which, "TRUSTED") == 0 || strcasecmp(which, "INTERNAL") == 0;
	int edge = (trust ? ri->last_trusted_idx : ri->last_internal_idx) + 1;
	const struct sift_mime *mm = m->mime;
	size_t at = mm->header_count; /* the Received: header number edge */
	int k = -1;
	for (size_t i = 0; i < mm->header_count; i++)
		if (strcasecmp(mm->headers[i].name, "Received") == 0 && ++k == edge) {
			at = i;
			break;
		}
	if (head) {
		*from = 0;
		*to = at < mm->header_count ? at + 1 : at;
	} else {
		*from = at;
		*to = mm->header_count;
	}
}

int target_header_names(const char *name, const char *names[3])
{
	if (strcmp(name, "ToCc") == 0) {
		names[0] = "To";
		names[1] = "Cc";
		return 2;
	}
	if (strcmp(name, "MESSAGEID") == 0) {
		names[0] = "Message-Id";
		names[1] = "Resent-Message-Id";
		names[2] = "X-Message-Id";
		return 3;
	}
	names[0] = name;
	return 1;
}

/* Whether the message has a header whose name hashes as t's k-th: when
 * not, it has no such header (hname_hash), found without reading the
 * target's name nor the message's header names. */
static bool may_have(struct msgctx *m, const struct target *t, int k)
{
	const struct sift_mime *mm = m->mime;
	if (!m->hhash) {
		m->hhash = xmalloc((mm->header_count + 1) * sizeof(uint32_t));
		for (size_t i = 0; i < mm->header_count; i++)
			m->hhash[i] = hname_hash(mm->headers[i].name);
	}
	for (size_t i = 0; i < mm->header_count; i++)
		if (m->hhash[i] == t->nhash[k])
			return true;
	return false;
}

/* The value a header rule matches, or NULL when the header is absent. */
const char *target_value(struct msgctx *m, int ti)
{
	if (m->tdone[ti])
		return m->tvals[ti];
	m->tdone[ti] = true;
	const struct target *t = &m->e->targets[ti];
	const struct sift_mime *mm = m->mime;
	struct sbuf b = {0};
	bool found = false;
	switch (t->kind) {
	case TK_ALL: {
		size_t from = 0, to = mm->header_count;
		if (t->name[3] == '-')
			all_range(m, t->name + 4, &from, &to);
		for (size_t i = from; i < to; i++) {
			sb_adds(&b, mm->headers[i].name);
			if (t->raw) {
				sb_adds(&b, ":");
				add_raw_unfolded(&b, sift_mime_header_lead(&mm->headers[i]));
			} else {
				sb_adds(&b, ": ");
				sb_adds(&b, mm->headers[i].value);
			}
			sb_add(&b, "\n", 1);
		}
		found = from < to;
		break;
	}
	case TK_ENVFROM: {
		const char *ef = envelope_from(m);
		if (ef) {
			envelope_path(&b, ef);
			found = true;
		}
		break;
	}
	case TK_SIFT: {
		const char *v = strcasecmp(t->name, "X-Sift-Helo") == 0		 ? m->in->helo
				: strcasecmp(t->name, "X-Sift-Client-Addr") == 0 ? m->in->client_addr
				: strcasecmp(t->name, "X-Sift-Client-Name") == 0 ? m->in->client_name
										 : NULL;
		if (v) {
			sb_adds(&b, v);
			found = true;
		}
		break;
	}
	case TK_RELAYS: {
		struct relayinfo *ri = relays(m);
		const char *which = t->name + 14;
		const char *v = strcasecmp(which, "Trusted") == 0    ? ri->trusted_str
				: strcasecmp(which, "Internal") == 0 ? ri->internal_str
				: strcasecmp(which, "External") == 0 ? ri->external_str
								     : ri->untrusted_str;
		sb_adds(&b, v ? v : "");
		found = true;
		break;
	}
	default: {
		const char *names[3];
		int nn = 0;
		for (int k = 0; k < t->nnames; k++)
			if (may_have(m, t, k)) {
				nn = target_header_names(t->name, names);
				break;
			}
		/* :addr, :name: every mailbox of every instance, one a line,
		 * as SpamAssassin's header rules join get()'s list; none is
		 * the header unset */
		size_t nmb = 0;
		for (int k = 0; k < nn; k++) {
			size_t st = 0;
			const struct sift_mime_header *h;
			while ((h = mh(mm, names[k], &st))) {
				if (t->exists) {
					found = true;
					break;
				}
				if (t->addr || t->nameonly) {
					nmb = mailboxes(m, &b, h->raw, !t->addr, nmb);
					found = nmb > 0;
					continue;
				} else if (t->raw) {
					add_raw_unfolded(&b, sift_mime_header_lead(h));
					sb_add(&b, "\n", 1);
				} else {
					sb_adds(&b, h->value);
					sb_add(&b, "\n", 1);
				}
				found = true;
			}
		}
	}
	}
	if (!found) {
		free(b.d);
		return NULL;
	}
	m->tvals[ti] = b.d ? b.d : xstrdup("");
	return m->tvals[ti];
}

/* A mimeheader rule's text in one part, as SpamAssassin's MIMEHeader
 * plugin reads it (get_header in scalar context): the last instance of the
 * header in that part, decoded and ending in a newline, or with :raw
 * unfolded; false when the part has none. */
bool part_header_value(struct sbuf *b, const struct target *t, const struct sift_mime_part *p)
{
	const struct sift_mime_header *last = NULL;
	for (size_t i = 0; i < p->header_count; i++)
		if (strcasecmp(p->headers[i].name, t->name) == 0)
			last = &p->headers[i];
	if (!last)
		return false;
	b->n = 0;
	if (t->raw)
		add_raw_unfolded(b, sift_mime_header_lead(last));
	else
		sb_adds(b, last->value);
	sb_add(b, "\n", 1);
	return true;
}

/* Body lines as SpamAssassin builds them (get_rendered_body_text_array):
 * the parts with a text, the ones SpamAssassin renders (text/plain and
 * text/html, every text/ type but text/calendar and text/x-vcard read as
 * text/plain; lib/mime.c leaves those two without a text). */
void body_lines(const struct spam_engine *e, const struct sift_mime *mm, char ***lines_r, size_t **lens_r,
		size_t *n_r)
{
	struct sbuf text = {0};
	bool any = false;
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (!p->text)
			continue;
		/* leaves only: skip containers */
		if (any || text.n)
			sb_add(&text, "\n", 1);
		size_t n = p->text_len;
		if (n > e->body_scan_size) {
			size_t cut = e->body_scan_size;
			const char *nl = memchr(p->text + cut, '\n', n - cut);
			n = nl && (size_t)(nl - p->text) - cut <= 1024 ? (size_t)(nl - p->text) + 1 : cut;
		}
		sb_add(&text, p->text, n);
		any = true;
	}
	/* White space as SpamAssassin's s/\n+\s*\n+/\0/gs, then s/\s+/ /gs:
	 * in a run of white space with two newlines or more, the span from
	 * its first newline to its last is a paragraph break, and what is
	 * before and after that span becomes a space each ("a \n\n b" ->
	 * "a \n b"); any other run becomes one space. */
	struct sbuf w = {0};
	const unsigned char *t = (const unsigned char *)sb_str(&text);
	size_t n = text.n;
	sb_reserve(&w, n); /* the output is never longer */
	/* 1: white space (isspace in the C locale), 2: may start a NBSP */
	static const unsigned char cls[256] = {
		['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1, [0xc2] = 2};
	for (size_t i = 0; i < n;) {
		unsigned char c = t[i];
		/* UTF-8 NBSP (U+00A0) is Unicode white space in Perl */
		if (cls[c] == 1 || (c == 0xc2 && i + 1 < n && t[i + 1] == 0xa0)) {
			size_t j = i;
			int nl = 0;
			bool before = false, after = false;
			for (;;) {
				size_t k;
				if (j < n && cls[t[j]] == 1)
					k = 1;
				else if (j + 1 < n && t[j] == 0xc2 && t[j + 1] == 0xa0)
					k = 2;
				else
					break;
				if (t[j] == '\n') {
					nl++;
					after = false;
				} else if (nl) {
					after = true;
				} else {
					before = true;
				}
				j += k;
			}
			if (nl >= 2) {
				if (before)
					w.d[w.n++] = ' ';
				w.d[w.n++] = '\n';
				if (after)
					w.d[w.n++] = ' ';
			} else {
				w.d[w.n++] = ' ';
			}
			i = j;
			continue;
		}
		/* a run of other octets, and of single spaces between them (a
		 * run of white space that is one space is kept as it is), at
		 * once */
		size_t j = i + 1;
		for (;;) {
			while (j < n && !cls[t[j]])
				j++;
			if (j + 1 < n && t[j] == ' ' && !cls[t[j + 1]])
				j += 2;
			else
				break;
		}
		memcpy(w.d + w.n, t + i, j - i);
		w.n += j - i;
		i = j;
	}
	w.d[w.n] = 0;
	free(text.d);
	/* subject line first */
	size_t st = 0;
	const struct sift_mime_header *sh = mh(mm, "Subject", &st);
	struct sbuf all = {0};
	if (sh && *sh->value) {
		sb_adds(&all, sh->value);
		sb_add(&all, "\n", 1);
	} else
		sb_add(&all, "\n", 1);
	sb_add(&all, sb_str(&w), w.n);
	free(w.d);
	/* split into lines (each keeps its \n) of at most 2048 octets */
	size_t cap = 16, nlines = 0;
	char **lines = xmalloc(cap * sizeof(char *));
	size_t *lens = xmalloc(cap * sizeof(size_t));
	const char *a = sb_str(&all);
	size_t an = all.n;
	for (size_t i = 0; i < an;) {
		const char *nl = memchr(a + i, '\n', an - i);
		size_t le = nl ? (size_t)(nl - a) + 1 : an;
		while (le - i > 2048) {
			size_t k = 2048;
			while (k > 0 && a[i + k - 1] != ' ')
				k--;
			if (k == 0)
				k = 2048;
			if (nlines == cap) {
				cap *= 2;
				lines = xrealloc(lines, cap * sizeof(char *));
				lens = xrealloc(lens, cap * sizeof(size_t));
			}
			lines[nlines] = xstrndup(a + i, k);
			lens[nlines++] = k;
			i += k;
		}
		if (nlines == cap) {
			cap *= 2;
			lines = xrealloc(lines, cap * sizeof(char *));
			lens = xrealloc(lens, cap * sizeof(size_t));
		}
		lines[nlines] = xstrndup(a + i, le - i);
		lens[nlines++] = le - i;
		i = le;
	}
	free(all.d);
	*lines_r = lines;
	*lens_r = lens;
	*n_r = nlines;
}

void build_body(struct msgctx *m)
{
	const struct bare_uris *bare;
	if (m->in && net_body(m->in->net, m->mime, &m->lines, &m->lens, &m->nlines, &bare)) {
		m->lines_borrowed = true;
		m->bare_of = bare;
		return;
	}
	body_lines(m->e, m->mime, &m->lines, &m->lens, &m->nlines);
}

/* rawbody: decoded text parts (HTML not rendered), in paragraphs of
 * 2048..4096 octets: every text/ leaf but text/calendar, as
 * get_decoded_body_text_array takes them (text/x-vcard, which has no
 * text, is rawbody text; text/calendar has none either). */
void build_raw(struct msgctx *m)
{
	const struct sift_mime *mm = m->mime;
	size_t cap = 8;
	m->raws = xmalloc(cap * sizeof(char *));
	m->rawlens = xmalloc(cap * sizeof(size_t));
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (!p->text && strcmp(p->type, "text/x-vcard") != 0)
			continue;
		const char *s = (const char *)p->data;
		size_t n = p->data_len;
		if (n > 500000)
			n = 500000;
		size_t ofs = 0;
		while (ofs < n) {
			size_t j;
			if (n - ofs <= 4096)
				j = n;
			else {
				const char *nl = memchr(s + ofs + 2048, '\n', n - ofs - 2048);
				j = nl && (size_t)(nl - s) - ofs + 1 <= 4096 ? (size_t)(nl - s) + 1
									     : ofs + 2048;
			}
			if (m->nraws == cap) {
				cap *= 2;
				m->raws = xrealloc(m->raws, cap * sizeof(char *));
				m->rawlens = xrealloc(m->rawlens, cap * sizeof(size_t));
			}
			/* LF line ends */
			struct sbuf b = {0};
			sb_add_uncr(&b, s + ofs, j - ofs, false);
			m->raws[m->nraws] = b.d ? b.d : xstrdup("");
			m->rawlens[m->nraws++] = b.n;
			ofs = j;
		}
	}
}

void build_full(struct msgctx *m)
{
	const struct sift_mime *mm = m->mime;
	size_t need = mm->body_len + 2;
	for (size_t i = 0; i < mm->header_count; i++)
		need += strlen(mm->headers[i].name) + strlen(mm->headers[i].raw) + 3;
	struct sbuf b = {0};
	sb_reserve(&b, need);
	for (size_t i = 0; i < mm->header_count; i++) {
		sb_adds(&b, mm->headers[i].name);
		sb_adds(&b, ": ");
		sb_add_uncr(&b, mm->headers[i].raw, strlen(mm->headers[i].raw), true);
		sb_add(&b, "\n", 1);
	}
	sb_add(&b, "\n", 1);
	sb_add_uncr(&b, mm->body, mm->body_len, false);
	m->full = b.d;
	m->full_len = b.n;
}
