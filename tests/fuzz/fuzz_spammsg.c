/*
 * fuzz_spammsg.c - libFuzzer target for the spam engine's evals that read
 * the message itself (plugins/spam/evals_mime.c and the body, HTML, image
 * and header evals of evals.c): a fixed ruleset naming them scores the
 * input. The first octet chooses the form of the input:
 *   0-191    the rest is a whole message (headers, blank line, body);
 *   192-255  the rest is the data of an image (GIF, PNG or JPEG by the
 *            octet's value), sent base64-encoded as the second part of a
 *            multipart/mixed message, so that the image readers of
 *            pixel_coverage and image_to_text_ratio see arbitrary bytes;
 *            the readers also get the data alone in a buffer of its exact
 *            size, where AddressSanitizer sees any read past its end.
 * The result must be well formed (hits sorted by name, a status line).
 * Single-threaded; replayed over tests/fuzz/corpus/spammsg/ in every build
 * by replay.c.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/spam/internal.h"
#include "mailsyntax.h"
#include "mime.h"
#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char rules[] =
	"body     M_MADIFF     eval:multipart_alternative_difference('90', '100')\n"
	"body     M_MADIFF_CNT eval:multipart_alternative_difference_count('3', '1')\n"
	"body     M_BLANK      eval:check_blank_line_ratio('50', '100', '4')\n"
	"body     M_VERTICAL   eval:tvd_vertical_words('50', '100')\n"
	"body     M_UPPER      eval:check_for_uppercase('50', '100')\n"
	"body     M_MP_RATIO   eval:check_mime_multipart_ratio('0.0', '0.2')\n"
	"body     M_ASCII_ILL  eval:check_for_ascii_text_illegal()\n"
	"body     M_UNICODE    eval:check_abundant_unicode_ratio('0.02')\n"
	"body     M_B64_LEN    eval:check_base64_length('79')\n"
	"body     M_MA_NONTEXT eval:check_ma_non_text()\n"
	"body     M_STOCK      eval:check_stock_info('3')\n"
	"body     M_IMG_TEXT   eval:image_to_text_ratio('all', '0.000', '0.008')\n"
	"rawbody  M_IMG_RAW    eval:image_to_text_ratio('gif', '0.000', '0.015')\n"
	"body     M_GIF_AREA   eval:pixel_coverage('gif', '180000', '475000')\n"
	"body     M_PNG_AREA   eval:pixel_coverage('png', '180000')\n"
	"body     M_JPEG_AREA  eval:pixel_coverage('jpeg', '1', '300000')\n"
	"body     M_ICOUNT     eval:image_count('png', '1')\n"
	"body     M_BLEN       eval:check_body_length('500')\n"
	"body     M_MIME       eval:check_for_mime('mime_qp_long_line')\n"
	"body     M_HTML       eval:html_test('title_text')\n"
	"body     M_HIMG       eval:html_image_only('400', '1000')\n"
	"body     M_HRATIO     eval:html_image_ratio('0.0', '0.5')\n"
	"body     M_MHTML      eval:check_for_mime_html_only()\n"
	"header   M_CAPS       eval:subject_is_all_caps()\n"
	"header   M_ILLEGAL    eval:check_illegal_chars('Subject', '0.2', '2')\n"
	"header   M_PARSE      eval:check_msg_parse_flags('missing_mime_head_body_separator')\n"
	"full     M_ARC        eval:check_arc_signed()\n"
	"header   M_TITLE      eval:html_title_subject_ratio('2')\n"
	"body     M_WORDS      /\\bfree\\b/i\n"
	"rawbody  M_RAW        /<img/i\n"
	"uri      M_URI        /example/\n"
	"redirector_pattern m'^https?://[^/]+/r\\?u=(.*)$'i\n"
	"body     M_HTTPS      eval:check_https_http_mismatch('1', '10')\n"
	"body     M_IFRAME     eval:check_iframe_src()\n"
	"util_rb_tld com org net example\n"
	"freemail_domains example.org freemail.example\n"
	"header   M_FM_REPLY   eval:check_freemail_replyto('reply')\n"
	"header   M_DATE       eval:check_for_shifted_date('-96', 'undef')\n"
	"meta     M_META       M_IMG_TEXT && (M_GIF_AREA || M_PNG_AREA)\n";

static struct spam_engine *engine;

static void score(const unsigned char *msg, size_t len)
{
	struct sift_mime *mime = sift_mime_parse_message(msg, len, NULL);
	if (!mime)
		abort();
	struct spam_input in = {.mime = mime, .addrlist_parse = sift_addrlist_parse};
	struct spam_result r;
	if (spam_engine_check(engine, &in, &r) != 0)
		abort();
	for (size_t i = 1; i < r.nhits; i++)
		if (strcmp(r.hits[i - 1].name, r.hits[i].name) > 0)
			abort();
	char *status = spam_format_status(&r, 2, 5, r.score >= 5);
	if (!status)
		abort();
	free(status);
	spam_result_free(&r);
	sift_mime_free(mime);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!engine) {
		struct spam_engine_opts o = {.use_hyperscan = 0};
		char *err = NULL;
		engine = spam_engine_new_text(&o, "spammsg.cf", rules, sizeof(rules) - 1, &err);
		if (!engine || err)
			abort();
	}
	if (size == 0)
		return 0;
	if (data[0] < 192) {
		score(data + 1, size - 1);
		return 0;
	}
	static const char *const kinds[] = {"gif", "png", "jpeg", "jpg"};
	static const int kind_ids[] = {IMG_GIF, IMG_PNG, IMG_JPEG, IMG_JPEG};
	const char *kind = kinds[data[0] % 4];
	size_t n = size - 1;
	if (n > 1 << 20)
		n = 1 << 20;
	unsigned char *exact = malloc(n ? n : 1);
	if (!exact)
		return 0;
	memcpy(exact, data + 1, n);
	unsigned long long area = spam_image_area(kind_ids[data[0] % 4], exact, n);
	free(exact);
	if (kind_ids[data[0] % 4] != IMG_PNG && area > 65535ull * 65535ull) /* 16-bit sizes */
		abort();
	static const char head[] = "From: a@example.org\r\nSubject: picture\r\nMIME-Version: 1.0\r\n"
				   "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
				   "Content-Type: text/plain\r\n\r\nSee the picture.\r\n--b\r\n"
				   "Content-Transfer-Encoding: base64\r\nContent-Type: image/";
	static const char tail[] = "\r\n--b--\r\n";
	size_t b64 = 4 * ((n + 2) / 3);
	size_t cap = sizeof(head) + 16 + b64 + sizeof(tail);
	unsigned char *m = malloc(cap);
	if (!m)
		return 0;
	int k = snprintf((char *)m, cap, "%s%s\r\n\r\n", head, kind);
	size_t off = (size_t)k;
	off += (size_t)EVP_EncodeBlock(m + off, data + 1, (int)n);
	memcpy(m + off, tail, sizeof(tail) - 1);
	off += sizeof(tail) - 1;
	score(m, off);
	free(m);
	return 0;
}
