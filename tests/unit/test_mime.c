/*
 * test_mime.c - the MIME parser's part tree (lib/mime.c): multipart
 * delimiters as RFC 2046 5.1.1 defines them ("--" + boundary followed by
 * "--", transport padding or the line end, nothing else), a preamble line
 * that only starts with a delimiter, nested boundaries that prefix each
 * other, decoded headers, and which parts are transfer-decoded.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mime.h"
#include "sift.h"
#include "t.h"

static struct sift_mime *parse(const char *msg)
{
	return sift_mime_parse_message((const unsigned char *)msg, strlen(msg), NULL);
}

/* The text of the n-th text/plain leaf, or NULL. */
static const char *leaf_text(const struct sift_mime *m, int n)
{
	for (size_t i = 0; i < m->part_count; i++)
		if (strcmp(m->parts[i].type, "text/plain") == 0 && m->parts[i].text && n-- == 0)
			return m->parts[i].text;
	return NULL;
}

static void preamble(void)
{
	/* "--qq not a boundary" in the preamble and inside a part: text, not
	 * a delimiter of boundary "q". */
	struct sift_mime *m = parse("Content-Type: multipart/mixed; boundary=q\n\n"
				    "--qq not a boundary\n"
				    "--q\n\n"
				    "one\n--qq still text\n"
				    "--q \t\n\n"
				    "two\n"
				    "--q--\n");
	CHECK_INT(m->part_count, 3);
	CHECK_STR(leaf_text(m, 0), "one\n--qq still text");
	CHECK_STR(leaf_text(m, 1), "two");
	CHECK(!(m->flags & SIFT_MIME_F_MISSING_BOUNDARY));
	sift_mime_free(m);

	/* "--q" then white space then text, or "--q--" then text, is a line
	 * of the part: what follows stays in its text (a part hidden behind
	 * "--q x" would hide its text and URIs from the rules) */
	m = parse("Content-Type: multipart/mixed; boundary=q\n\n"
		  "--q\nContent-Type: text/plain\n\n"
		  "Hello\n--q x\nContent-Type: image/png\n\nBUY NOW http://spam.example/\n"
		  "--q-- y\nmore\n--q--\n");
	CHECK_INT(m->part_count, 2);
	CHECK_STR(leaf_text(m, 0), "Hello\n--q x\nContent-Type: image/png\n\nBUY NOW http://spam.example/\n"
				   "--q-- y\nmore");
	CHECK_INT(m->uri_count, 1);
	CHECK(!(m->flags & SIFT_MIME_F_MISSING_BOUNDARY));
	sift_mime_free(m);

	/* a multipart whose boundary never shows: its body is one text part
	 * (as SpamAssassin reads it), not a preamble the rules never see */
	m = parse("Content-Type: multipart/mixed; boundary=zz\n\nBUY PILLS http://spam.example/\n");
	CHECK_INT(m->part_count, 1);
	CHECK_STR(m->parts[0].type, "text/plain");
	CHECK_STR(leaf_text(m, 0), "BUY PILLS http://spam.example/\n");
	CHECK_INT(m->uri_count, 1);
	CHECK(m->flags & SIFT_MIME_F_MISSING_BOUNDARY);
	sift_mime_free(m);

	/* "--q" followed by other text never opens or closes a part. */
	m = parse("Content-Type: multipart/mixed; boundary=q\n\n--qx\n\nnot a part\n--q-x\n");
	CHECK_INT(m->part_count, 1);
	CHECK(m->flags & SIFT_MIME_F_MISSING_BOUNDARY);
	sift_mime_free(m);
}

static void nested_prefix(void)
{
	/* outer boundary "q", inner "qq": the inner delimiters belong to the
	 * inner multipart only. */
	struct sift_mime *m = parse("Content-Type: multipart/mixed; boundary=q\r\n\r\n"
				    "--q\r\n"
				    "Content-Type: multipart/alternative; boundary=qq\r\n\r\n"
				    "--qq\r\n\r\n"
				    "inner one\r\n"
				    "--qq\r\n\r\n"
				    "inner two\r\n"
				    "--qq--\r\n"
				    "--q\r\n\r\n"
				    "outer two\r\n"
				    "--q--\r\n");
	CHECK_INT(m->part_count, 5);
	if (m->part_count == 5) {
		CHECK_STR(m->parts[1].type, "multipart/alternative");
		CHECK_INT(m->parts[2].parent, 1);
		CHECK_INT(m->parts[3].parent, 1);
		CHECK_INT(m->parts[4].parent, 0);
		CHECK_INT(m->parts[4].depth, 1);
	}
	CHECK_STR(leaf_text(m, 0), "inner one");
	CHECK_STR(leaf_text(m, 1), "inner two");
	CHECK_STR(leaf_text(m, 2), "outer two");
	CHECK(!(m->flags & SIFT_MIME_F_MISSING_BOUNDARY));
	sift_mime_free(m);

	/* the reverse: outer "qq", inner "q" */
	m = parse("Content-Type: multipart/mixed; boundary=qq\n\n"
		  "--qq\nContent-Type: multipart/alternative; boundary=q\n\n"
		  "--q\n\na\n--q--\n"
		  "--qq\n\nb\n--qq--\n");
	CHECK_INT(m->part_count, 4);
	CHECK_STR(leaf_text(m, 0), "a");
	CHECK_STR(leaf_text(m, 1), "b");
	sift_mime_free(m);
}

static void headers(void)
{
	struct sift_mime *m = parse("Subject: =?utf-8?q?caf=C3=A9?=\n\t=?iso-8859-1?q?_cr=E8me?=\n\nbody\n");
	CHECK_INT(m->header_count, 1);
	CHECK_STR(m->headers[0].value, "caf\xc3\xa9 cr\xc3\xa8me");
	CHECK_STR(leaf_text(m, 0), "body\n");
	sift_mime_free(m);

	/* white space before the colon: the field's name without it (as
	 * lib/msg.c and Postfix read it), its value after the colon */
	m = parse("Content-Type : text/plain; charset=utf-8\nSubject\t: hi\n\nbody\n");
	CHECK_INT(m->header_count, 2);
	CHECK_STR(m->headers[0].name, "Content-Type");
	CHECK_STR(m->headers[1].name, "Subject");
	CHECK_STR(m->headers[1].value, "hi");
	CHECK_STR(leaf_text(m, 0), "body\n");
	sift_mime_free(m);

	/* no encoded words in Message-ID, References, Received, List-*
	 * (sift_header_has_words): unfolded only, as SpamAssassin reads
	 * them; the parse from a header list (filterd's) reads them alike */
	static const char ids[] = "Message-ID: <=?utf-8?q?a=C3=A9?=@example.test>\n"
				  "References: <=?utf-8?q?r?=@example.test>\n\t<x@example.test>\n"
				  "List-Id: =?utf-8?q?caf=C3=A9?= <l.example.test>\n"
				  "Received: from =?utf-8?q?h?= by x\n"
				  "X-Note: =?utf-8?q?caf=C3=A9?=\n\nbody\n";
	m = parse(ids);
	CHECK_INT(m->header_count, 5);
	CHECK_STR(m->headers[0].value, "<=?utf-8?q?a=C3=A9?=@example.test>");
	CHECK_STR(m->headers[1].value, "<=?utf-8?q?r?=@example.test> <x@example.test>");
	CHECK_STR(m->headers[2].value, "=?utf-8?q?caf=C3=A9?= <l.example.test>");
	CHECK_STR(m->headers[3].value, "from =?utf-8?q?h?= by x");
	CHECK_STR(m->headers[4].value, "caf\xc3\xa9");
	sift_mime_free(m);
	const struct sift_header hl[] = {{"Message-ID", " <=?utf-8?q?a?=@example.test>"},
					 {"Subject", " =?utf-8?q?caf=C3=A9?="}};
	m = sift_mime_parse(hl, 2, (const unsigned char *)"body\n", 5, NULL);
	CHECK_INT(m->header_count, 2);
	CHECK_STR(m->headers[0].value, "<=?utf-8?q?a?=@example.test>");
	CHECK_STR(m->headers[1].value, "caf\xc3\xa9");
	sift_mime_free(m);
}

/* A base64 part made of separately padded pieces: its text is all of
 * them, so the rules see what a mail client shows. */
static void base64_pieces(void)
{
	struct sift_mime *m = parse("Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
				    "SGVsbG8=\nIGJ1eSBwaWxscw==\n");
	CHECK_STR(leaf_text(m, 0), "Hello buy pills");
	CHECK(!(m->flags & SIFT_MIME_F_BAD_BASE64));
	sift_mime_free(m);
}

/* Only the parts someone reads are transfer-decoded: text and images (the
 * spam plugin measures images); an attachment stays as received, data NULL,
 * its octets not counted against max_decoded. */
static void decoded_parts(void)
{
	struct sift_mime *m =
		parse("Content-Type: multipart/mixed; boundary=b\n\n"
		      "--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
		      "SGVsbG8=\n"
		      "--b\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\n"
		      "R0lGODlhAQABAAAAACw=\n"
		      "--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
		      "JVBERi0xLjQK\n"
		      "--b\nContent-Type: application/octet-stream\n"
		      "Content-Transfer-Encoding: quoted-printable\n\nab=3Dcd\n"
		      "--b\nContent-Type: application/octet-stream\n\nplain\n"
		      "--b--\n");
	CHECK_INT(m->part_count, 6);
	CHECK_INT(m->parts[1].data_len, 5);
	CHECK(m->parts[1].data && memcmp(m->parts[1].data, "Hello", 5) == 0);
	CHECK_INT(m->parts[2].data_len, 14);
	CHECK(m->parts[2].data && memcmp(m->parts[2].data, "GIF89a", 6) == 0);
	CHECK(!m->parts[3].data);
	CHECK_INT(m->parts[3].data_len, 0);
	CHECK_INT(m->parts[3].raw_len, 12);
	CHECK(!m->parts[4].data);
	CHECK_INT(m->parts[4].data_len, 0);
	CHECK(m->parts[5].data && m->parts[5].data_len == 5 && memcmp(m->parts[5].data, "plain", 5) == 0);
	CHECK(!(m->flags & (SIFT_MIME_F_BAD_BASE64 | SIFT_MIME_F_BAD_QP | SIFT_MIME_F_TRUNCATED)));
	sift_mime_free(m);

	/* a large attachment does not use up max_decoded: the text after it
	 * is still decoded */
	struct sift_mime_limits lim = {.max_decoded = 970}; /* 960 + 8 + 5 * 2 */
	struct sift_buf b = {0};
	sift_buf_adds(&b, "Content-Type: multipart/mixed; boundary=b\n\n"
			  "--b\nContent-Type: application/zip\nContent-Transfer-Encoding: base64\n\n");
	for (int i = 0; i < 20; i++)
		sift_buf_adds(&b, "UEsDBBQAAAAIAAAAIQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
	sift_buf_adds(&b, "--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
			  "SGVsbG8=\n--b--\n");
	m = sift_mime_parse_message((const unsigned char *)b.data, b.len, &lim);
	CHECK_INT(m->part_count, 3);
	CHECK_STR(leaf_text(m, 0), "Hello");
	CHECK(!(m->flags & SIFT_MIME_F_TRUNCATED));
	sift_mime_free(m);
	sift_buf_free(&b);
}

/* A message/rfc822 part sent base64 or quoted-printable encoded is the
 * message it holds, its text and URIs scanned as SpamAssassin scans them. */
static void encoded_message(void)
{
	struct sift_mime *m =
		parse("Content-Type: multipart/mixed; boundary=b\n\n"
		      "--b\n\nhi\n"
		      "--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
		      "U3ViamVjdDogaW5uZXIKQ29udGVudC1UeXBlOiB0ZXh0L3BsYWluCgpCVVkgUElMTFMgaHR0\n"
		      "cDovL3NwYW0uZXhhbXBsZS8K\n"
		      "--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable\n\n"
		      "Subject: =3D?\n\nsecond=\n one\n"
		      "--b--\n");
	CHECK_INT(m->part_count, 6);
	if (m->part_count == 6) {
		CHECK(m->parts[2].flags & SIFT_MIME_P_MESSAGE);
		CHECK_INT(m->parts[3].parent, 2);
		CHECK_STR(m->parts[3].headers[0].value, "inner");
		CHECK_INT(m->parts[5].parent, 4);
	}
	CHECK_STR(leaf_text(m, 1), "BUY PILLS http://spam.example/\n");
	CHECK_STR(leaf_text(m, 2), "second one");
	CHECK_INT(m->uri_count, 1);
	sift_mime_free(m);

	/* message/global (RFC 6532) is a message too, as SpamAssassin parses
	 * it; message/delivery-status is not (a leaf, no text) */
	m = parse("Content-Type: multipart/mixed; boundary=b\n\n"
		  "--b\nContent-Type: message/global\n\n"
		  "Subject: caf\xc3\xa9\nContent-Type: text/plain\n\nBUY PILLS\n"
		  "--b\nContent-Type: message/delivery-status\n\n"
		  "Reporting-MTA: dns; x.example\n"
		  "--b--\n");
	CHECK_INT(m->part_count, 4);
	if (m->part_count == 4) {
		CHECK(m->parts[1].flags & SIFT_MIME_P_MESSAGE);
		CHECK_INT(m->parts[2].parent, 1);
		CHECK_STR(m->parts[2].headers[0].value, "caf\xc3\xa9");
		CHECK(!(m->parts[3].flags & SIFT_MIME_P_MESSAGE));
		CHECK(!m->parts[3].text);
	}
	CHECK_STR(leaf_text(m, 0), "BUY PILLS");
	sift_mime_free(m);
}

/* Two Content-Type or Content-Transfer-Encoding fields: the last one
 * counts, as SpamAssassin reads the part (its header() in scalar context),
 * so an HTML part is rendered and a base64 one decoded for the rules. */
static void repeated_fields(void)
{
	struct sift_mime *m = parse("Content-Type: text/plain\nContent-Transfer-Encoding: 7bit\n"
				    "Content-Type: text/html\nContent-Transfer-Encoding: base64\n\n"
				    "PHA+YnV5IDxiPnBpbGxzPC9iPjwvcD4=\n");
	CHECK_STR(m->parts[0].type, "text/html");
	CHECK_STR(m->parts[0].encoding, "base64");
	CHECK(m->parts[0].flags & SIFT_MIME_P_HTML);
	CHECK_STR(m->parts[0].text, "\n\nbuy pills\n\n");
	sift_mime_free(m);
}

/* CPU seconds of one parse of msg (the best of three). */
static double parse_cpu(const struct sift_buf *msg)
{
	double best = 1e9;
	for (int r = 0; r < 3; r++) {
		struct timespec a, b;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
		struct sift_mime *m =
			sift_mime_parse_message((const unsigned char *)msg->data, msg->len, NULL);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
		sift_mime_free(m);
		double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		if (s < best)
			best = s;
	}
	return best;
}

/* A text/plain message of about size octets: lead, then unit repeated. */
static void text_msg(struct sift_buf *b, const char *lead, const char *unit, size_t size)
{
	b->len = 0;
	sift_buf_adds(b, "Subject: t\nContent-Type: text/plain\n\n");
	sift_buf_adds(b, lead);
	while (b->len < size)
		sift_buf_adds(b, unit);
}

/* Hostile text costs what the same amount of text of the same kind costs,
 * not hundreds of times more: a URI repeated after 999 others as after
 * one other (each repeat found in the URI set, not compared with every URI
 * kept), and runs of "x@" and 300 dots as runs of 10 (the bare address
 * scan linear in them). A scan quadratic in them would cost 999 and 30
 * times more; a fixed cost per line gives the runs of 10 the larger share,
 * hence the bound of 3 times. */
static void linear_time(void)
{
	struct sift_buf lead = {0}, msg = {0};
	for (int i = 0; i < 999; i++)
		sift_buf_printf(&lead, "http://h%d.example/ ", i);
	sift_buf_adds(&lead, "\n");
	text_msg(&msg, "http://h0.example/\n", "http://h0.example/\n", 4000000);
	double one = parse_cpu(&msg);
	text_msg(&msg, lead.data, "http://h0.example/\n", 4000000);
	struct sift_mime *m = sift_mime_parse_message((const unsigned char *)msg.data, msg.len, NULL);
	CHECK_INT(m->uri_count, 999);
	CHECK_STR(m->uris[0].uri, "http://h0.example/");
	CHECK_STR(m->uris[998].uri, "http://h998.example/");
	sift_mime_free(m);
	double uris = parse_cpu(&msg);
	fprintf(stderr, "a URI repeated after one other %.3f s, after 999 others %.3f s\n", one, uris);
	CHECK(uris < 3 * one + 0.01);

	char unit[310] = "x@";
	memset(unit + 2, '.', 10);
	strcpy(unit + 12, "\n");
	text_msg(&msg, "", unit, 4000000);
	double ten = parse_cpu(&msg);
	memset(unit + 2, '.', 300);
	strcpy(unit + 302, "\n");
	text_msg(&msg, "", unit, 4000000);
	double dots = parse_cpu(&msg);
	fprintf(stderr, "x@ and 10 dots %.3f s, x@ and 300 dots %.3f s\n", ten, dots);
	CHECK(dots < 3 * ten + 0.01);
	sift_buf_free(&lead);
	sift_buf_free(&msg);
}

/* The URIs in the order first found, each once, with the flags of every
 * place it was found in. */
static void uri_set(void)
{
	struct sift_mime *m =
		parse("Content-Type: multipart/alternative; boundary=b\n\n"
		      "--b\nContent-Type: text/html\n\n"
		      "<a href=\"http://a.example/\">x</a><a href=\"http://b.example/\">y</a>\n"
		      "--b\n\nhttp://b.example/ http://c.example/ http://a.example/ http://c.example/\n"
		      "--b--\n");
	CHECK_INT(m->uri_count, 3);
	if (m->uri_count == 3) {
		CHECK_STR(m->uris[0].uri, "http://a.example/");
		CHECK_INT(m->uris[0].flags, SIFT_URI_F_HTML | SIFT_URI_F_TEXT);
		CHECK_STR(m->uris[1].uri, "http://b.example/");
		CHECK_INT(m->uris[1].flags, SIFT_URI_F_HTML | SIFT_URI_F_TEXT);
		CHECK_STR(m->uris[2].uri, "http://c.example/");
		CHECK_INT(m->uris[2].flags, SIFT_URI_F_TEXT);
	}
	sift_mime_free(m);
}

/* The URIs of plain text: http(s)://, ftp://, mailto: and www. (as
 * http://), in order, also at the start and at the very end of the text;
 * not inside a word or a host name, not without anything after the
 * scheme; bare addresses as mailto: first. */
static void text_uri_finder(void)
{
	static const char *const want[] = {
		"mailto:bob@h.example",	  "http://WWW.first.example", "http://www.a.example",
		"https://b.example/x",	  "ftp://c.example:21/p",     "mailto:d@e.example",
		"http://i.example/q?x=1", "https://j.example:8443/",  "http://z.example"};
	struct sift_mime *m =
		parse("Content-Type: text/plain\n\n"
		      "WWW.first.example begins; see www.a.example, then https://b.example/x and "
		      "ftp://c.example:21/p.\nxhttp://no.example and http:// alone, mailto:d@e.example; "
		      "f.www.g.example\nwrite to bob@h.example.\n(http://i.example/q?x=1) "
		      "https://j.example:8443/ www. ftp:/ mailto: x:y:z\nlast http://z.example");
	size_t n = sizeof(want) / sizeof(want[0]);
	CHECK_INT(m->uri_count, n);
	for (size_t i = 0; i < n && i < m->uri_count; i++)
		CHECK_STR(m->uris[i].uri, want[i]);
	sift_mime_free(m);
}

/* Quoted-printable body lines lose their trailing white space (RFC 2045
 * 6.7, SpamAssassin's qp_decode); "=20" and white space before a soft
 * line break stay, and so does white space at the end of the data. */
static void qp_trailing_space(void)
{
	struct sift_mime *m =
		parse("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
		      "line one   \nline two\t \r\nthree =20\nfour  =\n five \nsix \rx\nend  ");
	CHECK_STR(leaf_text(m, 0), "line one\nline two\nthree  \nfour   five\nsix \nx\nend  ");
	CHECK(!(m->flags & SIFT_MIME_F_BAD_QP));
	sift_mime_free(m);
}

/* A part whose first lines start with white space has no header: those
 * lines are its text (SpamAssassin's _parse_multipart reads them as body,
 * a line with no field to continue), not the continuation of a field
 * that is not there. In a message's header (message/rfc822) such a line
 * is still a broken field and skipped, as Message::new skips it. */
static void indented_part(void)
{
	struct sift_mime *m = parse("Content-Type: multipart/mixed; boundary=\"XX\"\n\n"
				    "--XX\n"
				    "   CALTEXT line one\n"
				    "\tviagra line two\n"
				    "Content-Type: text/html\n\n"
				    "line three\n"
				    "--XX\n"
				    "Content-Type: message/rfc822\n\n"
				    " stray\n"
				    "Subject: inner\n\n"
				    "inner body\n"
				    "--XX--\n");
	CHECK_INT(m->part_count, 4);
	CHECK_STR(leaf_text(m, 0),
		  "   CALTEXT line one\n\tviagra line two\nContent-Type: text/html\n\nline three");
	CHECK_STR(leaf_text(m, 1), "inner body");
	CHECK(m->flags & SIFT_MIME_F_BAD_HEADER);
	sift_mime_free(m);
}

/* Content-Type parameters are found without the ';' before them, as
 * SpamAssassin's parse_content_type finds them (/\bboundary\s*=/ anywhere in
 * the value): a multipart with "boundary" after a space still has parts,
 * and its base64 koi8-r part is decoded and converted. An unquoted value
 * that runs into a '"' is no value. */
static void params_without_semicolon(void)
{
	struct sift_mime *m = parse("Content-Type: multipart/mixed boundary=\"XX\"\n\n"
				    "--XX\n"
				    "Content-Type: text/plain charset=koi8-r\n"
				    "Content-Transfer-Encoding: base64\n\n"
				    "Q0FMVEVYVCD36eHn8uEK\n"
				    "--XX--\n");
	CHECK_INT(m->part_count, 2);
	CHECK(!(m->flags & SIFT_MIME_F_NO_BOUNDARY));
	CHECK_STR(m->parts[1 % m->part_count].charset, "koi8-r");
	CHECK_STR(leaf_text(m, 0), "CALTEXT \xd0\x92\xd0\x98\xd0\x90\xd0\x93\xd0\xa0\xd0\x90\n");
	sift_mime_free(m);

	m = parse("Content-Type: multipart/mixed; x=\"see; boundary=fake\"; boundary=\"real\"\n\n"
		  "--real\n\none\n--real--\n");
	CHECK_STR(m->parts[0].boundary, "real");
	CHECK_STR(leaf_text(m, 0), "one");
	sift_mime_free(m);
}

/* text/calendar and text/x-vcard are decoded but not rendered: no text,
 * no URIs (SpamAssassin's Node::rendered renders text/plain and text/html,
 * every other text/ type read as text/plain but these two). */
static void unrendered_text(void)
{
	struct sift_mime *m = parse("Content-Type: multipart/mixed; boundary=b\n\n"
				    "--b\nContent-Type: text/calendar\nContent-Transfer-Encoding: base64\n\n"
				    "Q0FMIGh0dHA6Ly9jYWwuZXhhbXBsZS8K\n"
				    "--b\nContent-Type: text/x-vcard\n\nVCARD http://vcard.example/\n"
				    "--b\nContent-Type: text/enriched\n\nENRICHED http://enriched.example/\n"
				    "--b--\n");
	CHECK_INT(m->part_count, 4);
	if (m->part_count == 4) {
		CHECK(!m->parts[1].text);
		CHECK(m->parts[1].data && m->parts[1].data_len == 24 &&
		      memcmp(m->parts[1].data, "CAL http://cal.example/\n", 24) == 0);
		CHECK(!m->parts[2].text);
		CHECK_STR(m->parts[3].text, "ENRICHED http://enriched.example/");
	}
	CHECK_INT(m->uri_count, 1);
	if (m->uri_count == 1)
		CHECK_STR(m->uris[0].uri, "http://enriched.example/");
	sift_mime_free(m);
}

/* A leaf named *.html, *.htm, *.shtml, *.shtm (any case) is rendered as
 * text/html whatever its declared type, as SpamAssassin's effective type
 * has it; its type stays as declared. Other names, and a message/rfc822
 * part so named, are not. */
static void html_named_parts(void)
{
	struct sift_mime *m =
		parse("Content-Type: multipart/mixed; boundary=b\n\n"
		      "--b\nContent-Type: application/octet-stream; name=\"page.HTML\"\n"
		      "Content-Transfer-Encoding: "
		      "base64\n\nPGh0bWw+PGJvZHk+PHA+UGFnZSA8YSBocmVmPSJodHRwOi8vcGFnZS5leGFtcGxlLyI+"
		      "aGVyZTwvYT48L3A+PC9ib2R5PjwvaHRtbD4K\n"
		      "--b\nContent-Type: application/octet-stream\n"
		      "Content-Disposition: attachment; filename=\"x.shtm\"\n\n<p>shtm</p>\n"
		      "--b\nContent-Type: application/octet-stream; name=\"x.htmx\"\n\n<p>not</p>\n"
		      "--b\nContent-Type: text/plain; name=\"notes.txt.htm\"\n\n<b>bold</b>\n"
		      "--b\nContent-Type: message/rfc822; name=\"m.html\"\n\nSubject: s\n\n<b>inner</b>\n"
		      "--b--\n");
	CHECK_INT(m->part_count, 7);
	if (m->part_count == 7) {
		CHECK_STR(m->parts[1].type, "application/octet-stream");
		CHECK(m->parts[1].flags & SIFT_MIME_P_HTML);
		CHECK_STR(m->parts[1].text, "\n\nPage here\n\n");
		CHECK(m->parts[2].flags & SIFT_MIME_P_HTML);
		CHECK_STR(m->parts[2].text, "\n\nshtm\n\n");
		CHECK(!(m->parts[3].flags & SIFT_MIME_P_HTML) && !m->parts[3].text);
		CHECK(m->parts[4].flags & SIFT_MIME_P_HTML);
		CHECK_STR(m->parts[4].text, "bold");
		CHECK(m->parts[5].flags & SIFT_MIME_P_MESSAGE);
		CHECK(!(m->parts[6].flags & SIFT_MIME_P_HTML));
		CHECK_STR(m->parts[6].text, "<b>inner</b>");
	}
	CHECK_INT(m->uri_count, 1);
	if (m->uri_count == 1)
		CHECK_STR(m->uris[0].uri, "http://page.example/");
	sift_mime_free(m);
}

/* RFC 2231 parameters: continuations joined by their number, whatever
 * their order; %XX-decoded only where marked '*'; the declared charset of
 * the first one converted to UTF-8; an extended value taken before a plain
 * one. */
static void rfc2231_filenames(void)
{
	struct sift_mime *m = parse(
		"Content-Type: multipart/mixed; boundary=XX\n\n"
		"--XX\nContent-Type: application/octet-stream\n"
		"Content-Disposition: attachment; filename*=koi8-r''%F7%E9%E1%E7%F2%E1.exe\n\nx\n"
		"--XX\nContent-Type: application/octet-stream\n"
		"Content-Disposition: attachment;\n filename*0*=utf-8''%E2%82;\n filename*1*=%AC.pdf;\n"
		" filename*2=\"%41.exe\"\n\nx\n"
		"--XX\nContent-Type: application/octet-stream\n"
		"Content-Disposition: attachment;\n filename*1=\"b.exe\"; filename*0=\"a\"\n\nx\n"
		"--XX\nContent-Type: application/octet-stream; name=\"plain.txt\"; name*=''%41%42.exe\n\nx\n"
		"--XX--\n");
	CHECK_INT(m->part_count, 5);
	if (m->part_count == 5) {
		CHECK_STR(m->parts[1].filename, "\xd0\x92\xd0\x98\xd0\x90\xd0\x93\xd0\xa0\xd0\x90.exe");
		CHECK_STR(m->parts[2].filename, "\xe2\x82\xac.pdf%41.exe");
		CHECK_STR(m->parts[3].filename, "ab.exe");
		CHECK_STR(m->parts[4].filename, "AB.exe");
	}
	sift_mime_free(m);
}

/* The decode budget (max_decoded) never drops a text part: nested encoded
 * messages that use it up leave the text after them readable, and a text
 * part longer than the budget allows is cut, not left without text (as
 * SpamAssassin renders every text part). */
static void decode_budget(void)
{
	/* two nested quoted-printable messages of 450 and 375 octets */
	struct sift_mime_limits lim = {.max_decoded = 1000};
	struct sift_buf b = {0};
	sift_buf_adds(&b, "Content-Type: multipart/mixed; boundary=b\n\n"
			  "--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable\n\n"
			  "Content-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable\n\n"
			  "Content-Type: image/gif\n\n");
	for (int i = 0; i < 7; i++)
		sift_buf_adds(&b, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
	sift_buf_adds(&b, "--b\nContent-Type: text/plain\n\nBUY PILLS NOW"
			  " and more text, and more text, and more text, and more text, and more text. Now!\n"
			  "--b--\n");
	struct sift_mime *m = sift_mime_parse_message((const unsigned char *)b.data, b.len, &lim);
	CHECK_STR(leaf_text(m, 0), "BUY PILLS NOW and more text, and more text, and more text, "
				   "and more text, and more text. Now!");
	sift_mime_free(m);
	sift_buf_free(&b);

	/* a text part over half the budget: its first lines, cut */
	sift_buf_adds(&b, "Content-Type: text/plain\n\n");
	for (int i = 0; i < 40; i++)
		sift_buf_adds(&b, "BUY PILLS NOW, BUY PILLS NOW, BUY PILLS NOW\n");
	m = sift_mime_parse_message((const unsigned char *)b.data, b.len, &lim);
	const char *t = leaf_text(m, 0);
	CHECK(t && strncmp(t, "BUY PILLS NOW, BUY", 18) == 0);
	CHECK(t && strlen(t) <= 500 && strlen(t) > 250);
	CHECK(m->flags & SIFT_MIME_F_TRUNCATED);
	sift_mime_free(m);
	sift_buf_free(&b);
}

/* An HTML part's length is its characters, not the octets of its source
 * (UTF-8 here, CRLF line ends), as SpamAssassin counts it. */
static void html_length(void)
{
	struct sift_mime *m = parse("Content-Type: text/html; charset=utf-8\r\n\r\n"
				    "<p>\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82</p>\r\n");
	CHECK(m->html[0] != NULL);
	if (m->html[0])
		CHECK_INT(m->html[0]->length, 14);
	sift_mime_free(m);

	/* html_image_ratio's text is the rendered characters that are not
	 * Unicode white space (SpamAssassin's non_space_len); a control
	 * character is one */
	m = parse("Content-Type: text/html; charset=utf-8\n\n"
		  "<p>a b&nbsp;c\xe3\x80\x80\xd0\x94\x01~</p>\n<img src=x.gif width=10 height=10>\n");
	CHECK(m->html[0] != NULL);
	if (m->html[0])
		CHECK_INT(m->html[0]->non_space_len, 6);
	sift_mime_free(m);
}

/* A text part's line ends as LF: CR LF and a lone CR (also one before a
 * NUL or at the end) each one LF, NULs dropped; the text between them
 * moved whole. */
static void line_ends(void)
{
	static const char msg[] = "Subject: t\nContent-Type: text/plain\n\n"
				  "one\r\ntwo\rthree\0four\r\0\r\n\0\0five\r";
	struct sift_mime *m = sift_mime_parse_message((const unsigned char *)msg, sizeof(msg) - 1, NULL);
	CHECK_STR(leaf_text(m, 0), "one\ntwo\nthreefour\n\nfive\n");
	sift_mime_free(m);
	m = parse("Subject: t\nContent-Type: text/plain\n\n\r\r\nend");
	CHECK_STR(leaf_text(m, 0), "\n\nend");
	sift_mime_free(m);
}

/* SpamAssassin's parse flags mime_epilogue_exists (a line with more
 * than white space and dots after a close delimiter, at any depth) and
 * missing_mime_headers (the line after a delimiter does not start a
 * header); each case as spamassassin -t flags it. */
static void parse_flags(void)
{
	static const struct {
		const char *body;
		bool epilogue, noheaders;
	} pf[] = {
		{"--q\nContent-Type: text/plain\n\none\n--q--\n", false, false},
		{"--q\nContent-Type: text/plain\n\none\n--q--\nthis is the epilogue\n", true, false},
		{"--q\nContent-Type: text/plain\n\none\n--q--\n.\n  \n", false, false},
		{"--q\n\none\n--q--\n", false, true},
		{"--q\nContent-Type: text/plain\n\none\n--q\ntwo\n--q--\n", false, true},
		{"--q\nContent-Type: multipart/alternative; boundary=r\n\n--r\nContent-Type: text/plain\n\n"
		 "one\n--r--\ninner epilogue\n--q--\n",
		 true, false},
	};
	for (size_t i = 0; i < sizeof(pf) / sizeof(pf[0]); i++) {
		char msg[512];
		snprintf(msg, sizeof(msg), "Content-Type: multipart/mixed; boundary=q\n\n%s", pf[i].body);
		struct sift_mime *m = parse(msg);
		bool e = m->flags & SIFT_MIME_F_EPILOGUE, nh = m->flags & SIFT_MIME_F_NO_PART_HEADERS;
		if (e != pf[i].epilogue || nh != pf[i].noheaders)
			fprintf(stderr, "parse flags: case %zu: epilogue %d, no headers %d\n", i, e, nh);
		CHECK(e == pf[i].epilogue);
		CHECK(nh == pf[i].noheaders);
		sift_mime_free(m);
	}
}

int main(void)
{
	line_ends();
	html_length();
	decode_budget();
	rfc2231_filenames();
	unrendered_text();
	html_named_parts();
	params_without_semicolon();
	indented_part();
	qp_trailing_space();
	uri_set();
	text_uri_finder();
	linear_time();
	preamble();
	nested_prefix();
	headers();
	base64_pieces();
	decoded_parts();
	repeated_fields();
	encoded_message();
	parse_flags();
	return t_done();
}
