/*
 * lib/html.h - the one HTML tokenizer: a single pass over a text/html part
 * (UTF-8) that renders its text as SpamAssassin's HTML.pm does (tags
 * removed, entities decoded, scripts and styles dropped, the title's text
 * kept, runs of white space as one space, the white space tags insert:
 * <br>/<div> a line break, <p>/<title>/<hr>/<pre>/<blockquote> a blank
 * line, table cells and list items a space; the content of <textarea>,
 * <xmp>, <iframe> and <plaintext> as text, tags and all, as HTML::Parser
 * reads it, and so CDATA sections), reports its links and
 * fills the statistics the spam rules' HTML evals use (struct sift_html in
 * sift/plugin.h: tags per name, unknown tags, closing tags in excess,
 * comments, title, anchor text, font sizes, text colours against their
 * background, image area, forms posting to mailto:).
 *
 * A tokenizer, not a tree builder: for body rules we need the visible text,
 * the links and a few statistics, not a DOM, and a tokenizer cannot blow up
 * on broken nesting. Linear in the input. Pure: thread-safe.
 */
#ifndef SIFT_HTML_H
#define SIFT_HTML_H

#include <stddef.h>

#include "sift.h"

/* What one pass gives: the statistics (their title, anchor and comments
 * pointers left NULL: the texts are in the buffers, for the caller to keep
 * where it keeps the rest) and the texts. */
struct sift_html_scan {
	struct sift_html stats;
	struct sift_buf title, anchor, comments;
	/* stats.nanchors anchors, each its href then its text, both
	 * NUL-terminated (stats.anchors is left NULL) */
	struct sift_buf anchors;
};

/* Called for each link found in an attribute (a/area/link/base href, img,
 * frame, iframe, embed, script, input src, form action, background ...);
 * value entity-decoded, trimmed and resolved as SpamAssassin's HTML.pm
 * resolves it (against the <base href> in force; an anchor's href also as
 * written when that differs), not NUL-terminated. */
typedef void (*sift_html_link_fn)(void *arg, const char *uri, size_t len);

/* Scans UTF-8 HTML t[0..n): the rendering is appended to text, *r is
 * filled (initialise it with {0}; free with sift_html_scan_free). */
void sift_html_scan(const char *t, size_t n, struct sift_buf *text, struct sift_html_scan *r,
		    sift_html_link_fn link, void *arg);
void sift_html_scan_free(struct sift_html_scan *r);

/* Decodes one character reference at s[0] == '&' of text into o (UTF-8)
 * as HTML::Parser does: numeric, or one of the HTML 4 entities (';'
 * optional for the Latin-1 ones, which may also start a longer name:
 * "&copyright"); returns the octets consumed, 0 when it is not one. */
size_t sift_html_entity(const char *s, size_t n, struct sift_buf *o);

#endif
