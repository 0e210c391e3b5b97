/*
 * test_html.c - the one HTML tokenizer (lib/html.c): the rendered text
 * (tags removed, entities decoded, scripts and styles dropped, block tags
 * as line breaks), the links, and the statistics of the same pass (tags per
 * name, unknown tags, closing tags in excess, comments, title, anchor
 * text, font sizes, low-contrast text, image area, mailto: forms), with
 * quoted attribute values holding '>', the anchors (href and text), and
 * the obfuscation count (text glued to text across tags).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "sift.h"
#include "t.h"

struct links {
	struct sift_buf all;
};

static void on_link(void *arg, const char *uri, size_t len)
{
	struct links *l = arg;
	sift_buf_add(&l->all, uri, len);
	sift_buf_add(&l->all, " ", 1);
}

struct run {
	struct sift_buf text;
	struct sift_html_scan r;
	struct links l;
};

static void scan(struct run *x, const char *html)
{
	memset(x, 0, sizeof(*x));
	sift_html_scan(html, strlen(html), &x->text, &x->r, on_link, &x->l);
	sift_buf_str(&x->text);
	sift_buf_str(&x->r.title);
	sift_buf_str(&x->r.anchor);
	sift_buf_str(&x->r.comments);
	sift_buf_str(&x->l.all);
}

static void done_run(struct run *x)
{
	sift_buf_free(&x->text);
	sift_buf_free(&x->l.all);
	sift_html_scan_free(&x->r);
}

static const struct sift_html_tag *tagname(const struct sift_html *h, const char *name)
{
	for (size_t i = 0; i < h->ntagnames; i++)
		if (strcmp(h->tagnames[i].name, name) == 0)
			return &h->tagnames[i];
	return NULL;
}

static void rendering(void)
{
	struct run x;
	scan(&x, "<html><head><title>T &amp; t</title><style>p{}</style></head><body>"
		 "<script>var a = '<b>';</script><p>one &lt;two&gt;&nbsp;x</p>a &copy; b<br>c &#x41;&#66;"
		 "<!-- hidden --> 3 < 4</body></html>");
	/* SpamAssassin's white space: <title> and <p> a paragraph break at each
	 * end, <br> a line break, the title's text rendered too, runs of white
	 * space and no-break spaces as one space each */
	CHECK_STR(x.text.data, "\n\nT & t\n\n\n\none <two> x\n\na \xc2\xa9 b\nc AB 3 < 4");
	CHECK_STR(x.r.title.data, "T & t");
	CHECK_STR(x.r.comments.data, "<!-- hidden -->\n");
	/* html head title /title style /style body script /script p /p br /body /html */
	CHECK_INT(x.r.stats.tags, 15);
	CHECK_INT(x.r.stats.bad_tags, 0);
	CHECK_INT(x.r.stats.closed_extra, 0);
	CHECK(tagname(&x.r.stats, "script") && tagname(&x.r.stats, "script")->close == 1);
	done_run(&x);
}

static void statistics(void)
{
	struct run x;
	scan(&x, "<body text=\"#ffffff\" bgcolor=\"#ffffff\"><blink>x</blink></i></i><foo>"
		 "<a href=\"http://a.example/?q=1&amp;r=2\">click <img src=\"cid:1\" width=\"10\" "
		 "height=\"20\"></a>"
		 "<font size=\"+4\">big</font><font size=2>s</font>"
		 "<form action=\"MailTo:x@y.example\"></form><img width=5 height=5 src=x.png>");
	const struct sift_html *h = &x.r.stats;
	CHECK_INT(h->bad_tags, 1); /* blink is old but known, foo is not */
	CHECK_INT(h->closed_extra, 2);
	CHECK_INT(h->images, 2);
	CHECK_INT(h->links, 1);
	CHECK_INT(h->image_area, 225);
	CHECK_INT(h->max_font_size, 7);
	CHECK(h->form_mailto);
	CHECK(h->low_contrast);
	CHECK_STR(x.r.anchor.data, "click <img>");
	CHECK_STR(x.l.all.data, "http://a.example/?q=1&r=2 cid:1 MailTo:x@y.example x.png ");
	done_run(&x);
	/* SpamAssassin's count of open tags (inside): a closing tag with none
	 * open is one in excess and leaves the count at 0, so a later opening
	 * tag is open at the end; not opening minus closing tags */
	scan(&x, "</b><b>x</b></b><b><center>y</center></center><center></head>");
	const struct sift_html *s = &x.r.stats;
	CHECK_INT(s->closed_extra, 4);
	const struct sift_html_tag *b = tagname(s, "b"), *c = tagname(s, "center"), *hd = tagname(s, "head");
	CHECK(b && b->open == 2 && b->close == 3 && s->tag_inside[b - s->tagnames] == 1);
	CHECK(c && c->open == 2 && c->close == 2 && s->tag_inside[c - s->tagnames] == 1);
	CHECK(hd && hd->open == 0 && hd->close == 1 && s->tag_inside[hd - s->tagnames] == 0);
	done_run(&x);

	/* a huge relative size is a large font, not an int overflow */
	scan(&x, "<font size=\"+2147483647\">x</font><font size=-99999999999>y</font>");
	CHECK_INT(x.r.stats.max_font_size, 10003);
	done_run(&x);

	/* readable text: no low contrast; a style on a cell sets the colours */
	scan(&x, "<body><p>plain</p><table><tr><td style=\"color: #fefefe; background-color: white\">"
		 " \t</td></tr></table></body>");
	CHECK(!x.r.stats.low_contrast);
	done_run(&x);
	scan(&x, "<table><tr><td style=\"color: #fefefe; background-color: white\">hidden</td></tr></table>");
	CHECK(x.r.stats.low_contrast);
	done_run(&x);
	/* "&nbsp;" is no text to see, as white space (SpamAssassin makes it
	 * a space first), but any other no-break space is, a reference or
	 * in the source (checked with spamassassin -t) */
	static const struct {
		const char *html;
		bool low;
	} nb[] = {
		{"<font color=\"#FFFFFF\"><font size=-2>&nbsp;</font></font>", false},
		{"<font color=white>&nbsp;&nbsp; &#32;&#9;\t</font>", false},
		{"<font color=white>&#160;</font>", true},
		{"<font color=white>&nbsp</font>", true},
		{"<font color=white>\xc2\xa0</font>", true},
		{"<font color=white>&nbsp;x</font>", true},
		{"<font color=white>&#120;</font>", true},
		{"<font color=white>&amp;</font>", true},
	};
	for (size_t i = 0; i < sizeof(nb) / sizeof(nb[0]); i++) {
		scan(&x, nb[i].html);
		if (!x.r.stats.low_contrast != !nb[i].low)
			fprintf(stderr, "low contrast of %s: %d\n", nb[i].html, x.r.stats.low_contrast);
		CHECK(!x.r.stats.low_contrast == !nb[i].low);
		done_run(&x);
	}
}

static void quoting(void)
{
	/* '>' inside a quoted attribute value does not end the tag */
	struct run x;
	scan(&x, "<a title=\"a > b\" href='http://q.example/'>go</a><?xml version=\"1.0\"?>!");
	CHECK_STR(x.text.data, "go!");
	CHECK_STR(x.r.anchor.data, "go");
	CHECK_STR(x.l.all.data, "http://q.example/ ");
	CHECK_INT(x.r.stats.tags, 2);
	done_run(&x);
	/* an unclosed quote ends at the first '>' */
	scan(&x, "<img alt=\"x>after");
	CHECK_STR(x.text.data, "after");
	CHECK_INT(x.r.stats.images, 1);
	done_run(&x);
	/* white space between '=' and the quote: still a quoted value, its
	 * '>' no end of the tag (as browsers and HTML::Parser read it) */
	scan(&x, "<a href= \"http://x.example/>y\">z</a>after<a href =\n'http://w.example/>v' >u</a>");
	CHECK_STR(x.text.data, "zafteru");
	CHECK_STR(x.l.all.data, "http://x.example/>y http://w.example/>v ");
	CHECK_STR(x.r.anchor.data, "zu");
	done_run(&x);
	/* line breaks in a value are dropped, the text between them kept
	 * whole, entities decoded */
	scan(&x, "<a href=\"http://l.example/a\r\nb&amp;c\nd&e\r\">f</a>");
	CHECK_STR(x.l.all.data, "http://l.example/ab&cd&e ");
	done_run(&x);
	/* a script or style ends at its own closing tag only, not at one whose
	 * name it starts */
	scan(&x, "<script>a</scriptx>hidden</script>shown<style>p{}</style-x>hidden</style >!");
	CHECK_STR(x.text.data, "shown!");
	done_run(&x);
	/* an unterminated comment runs to the end */
	scan(&x, "a<!-- b");
	CHECK_STR(x.text.data, "a");
	CHECK_STR(x.r.comments.data, "<!-- b\n");
	done_run(&x);
}

/* Table cells and list items are spaces, rows and tables nothing: a form
 * laid out in a table is one line, as SpamAssassin renders it; source
 * line breaks in text are spaces; a space before inserted white space is
 * dropped, and one after it. */
static void whitespace(void)
{
	struct run x;
	scan(&x, "<table><tr><td>First Name:</td><td><input name=a></td></tr>\n"
		 "<tr><td>Last\n  Name: </td></tr></table><ul><li> one<li>two </ul><div>x</div>");
	CHECK_STR(x.text.data, " First Name:    Last Name:  one two\nx\n");
	done_run(&x);
	/* \v and \f are white space too; an \xc2 that starts no no-break
	 * space and a NUL octet are text */
	static const char raw[] = "a \v\fb\xc2x\xc2\xa0\xc2\xa0y\tz\0w\xc2";
	static const char want[] = "a b\xc2x  y z\0w\xc2"; /* each no-break space one */
	memset(&x, 0, sizeof(x));
	sift_html_scan(raw, sizeof(raw) - 1, &x.text, &x.r, on_link, &x.l);
	CHECK(x.text.len == sizeof(want) - 1 && memcmp(x.text.data, want, sizeof(want) - 1) == 0);
	done_run(&x);
}

/* The anchors: each <a href> with its text, the href trimmed; at most
 * SIFT_HTML_MAX_ANCHORS of them, each text cut at
 * SIFT_HTML_MAX_ANCHOR_TEXT octets on a character boundary; iframes with a
 * src. */
static void anchors(void)
{
	struct run x;
	scan(&x, "<a href=\" http://a.example/\xc2\xa0\">one <b>two</b> <img src=x></a>"
		 "<a name=n>no href</a><a href=b>x &amp; y<a href=c>z</a>after"
		 "<iframe src=f></iframe><iframe src=\" \"></iframe>");
	const char *b = x.r.anchors.data;
	CHECK_INT(x.r.stats.nanchors, 3);
	CHECK_STR(b, "http://a.example/");
	b += strlen(b) + 1;
	CHECK_STR(b, "one two <img>");
	b += strlen(b) + 1;
	CHECK_STR(b, "b");
	b += strlen(b) + 1;
	CHECK_STR(b, "x & y"); /* a new <a> ends the one before */
	b += strlen(b) + 1;
	CHECK_STR(b, "c");
	b += strlen(b) + 1;
	CHECK_STR(b, "z");
	CHECK_INT(x.r.stats.iframes, 1);
	done_run(&x);

	struct sift_buf h = {0};
	sift_buf_adds(&h, "<a href=long>x");
	for (int i = 0; i < 1100; i++)
		sift_buf_adds(&h, "\xc3\xa9"); /* two octets each */
	sift_buf_adds(&h, "</a>");
	for (int i = 0; i < SIFT_HTML_MAX_ANCHORS + 5; i++)
		sift_buf_adds(&h, "<a href=u>t</a>");
	sift_buf_str(&h);
	scan(&x, h.data);
	CHECK_INT(x.r.stats.nanchors, SIFT_HTML_MAX_ANCHORS);
	b = x.r.anchors.data + strlen("long") + 1;
	CHECK_INT(strlen(b), SIFT_HTML_MAX_ANCHOR_TEXT - 1); /* not half an é */
	CHECK(memcmp(b + SIFT_HTML_MAX_ANCHOR_TEXT - 3, "\xc3\xa9", 2) == 0);
	done_run(&x);
	sift_buf_free(&h);
}

/* Character references as SpamAssassin's HTML::Parser decodes them: all
 * the entities of HTML 4 (the zero-width joiners the stock rule
 * __UNICODE_OBFU_ZW looks for among them), ';' optional for the Latin-1
 * ones only, and in text a Latin-1 entity that starts a longer name. */
static void entities(void)
{
	struct run x;
	scan(&x, "V&zwnj;i&zwj;agra &hearts; &hearts &AElig;&zwnj &copyright &notit; &notin; "
		 "&lt&gtx &amp &thetasym;&thetasymx; &LT; &#65;&#x42");
	CHECK_STR(x.text.data, "V\xe2\x80\x8ci\xe2\x80\x8d"
			       "agra \xe2\x99\xa5 &hearts \xc3\x86&zwnj \xc2\xa9right \xc2\xacit; "
			       "\xe2\x88\x89 <>x & \xcf\x91&thetasymx; &LT; AB");
	done_run(&x);
	/* in an attribute, no prefix: "&ampx" stays */
	scan(&x, "<a href=\"http://x.example/?a=1&copy=2&ampx=3&amp=4&rarr;\">q</a>");
	CHECK_STR(x.l.all.data, "http://x.example/?a=1\xc2\xa9=2&ampx=3&=4\xe2\x86\x92 ");
	done_run(&x);
	/* "&#0;" and numbers beyond Unicode stay as written (HTML::Parser);
	 * a surrogate is U+FFFD */
	scan(&x, "a&#0;b&#x0;c&#00;d&#x110000;e&#99999999999;f&#xD800;g&#128;h");
	CHECK_STR(x.text.data, "a&#0;b&#x0;c&#00;d&#x110000;e&#99999999999;f\xef\xbf\xbdg\xc2\x80h");
	done_run(&x);
}

/* Links as SpamAssassin lists them: resolved against the <base href> in
 * force (its file name dropped), an anchor's href also as written, the
 * "." and ".." segments gone even without a base; mailto: and cid: as
 * they are. */
static void base_href(void)
{
	struct run x;
	scan(&x, "<a href=\"a/./b/../c.html\">0</a>"
		 "<base href=\" http://spam.example/dir/index.html \">"
		 "<a href=\"buy.html\">x</a><img src=\"/i.png\"><a href=\"../up/p?q=1\">u</a>"
		 "<a href=\"//other.example/o\">o</a><a href=\"mailto:a@b.example\">m</a>"
		 "<img src=\"cid:x\"><base href=\"/not/absolute/\"><img src=\"j.png\">");
	CHECK_STR(x.l.all.data,
		  "a/c.html a/./b/../c.html "
		  "http://spam.example/dir/index.html "
		  "http://spam.example/dir/buy.html buy.html http://spam.example/i.png "
		  "http://spam.example/up/p?q=1 ../up/p?q=1 http://other.example/o //other.example/o "
		  "mailto:a@b.example cid:x http://spam.example/not/absolute/ "
		  "http://spam.example/dir/j.png ");
	done_run(&x);
}

/* "</" then white space, '>' or the end: a comment up to the first '>',
 * as HTML::Parser reads it, not text; "< /p>" stays text. */
static void bogus_end_tags(void)
{
	struct run x;
	scan(&x, "<p>a</ b>c<b>x</ b>y< /p>z</p >w</>v</ q");
	CHECK_STR(x.text.data, "\n\nacxy< /p>z\n\nwv");
	CHECK_STR(x.r.comments.data, "</ b>\n</ b>\n</>\n</ q\n");
	done_run(&x);
}

/* HTML::Parser's literal elements: their text up to their own closing
 * tag is text, tags and all (entities decoded in <textarea> only), and
 * <plaintext> runs to the end; as SpamAssassin renders them. */
static void literal_elements(void)
{
	struct run x;
	scan(&x, "<p>a<textarea rows=2><b>buy</b> &amp; now</textarea >b<xmp><i>x</i> &amp; y</xmpx></xmp>c"
		 "<iframe "
		 "src=\"http://f.example/\">h<b>i</b>&amp;</iframe>j<plaintext>k<b>l</b>&amp;</plaintext>m");
	CHECK_STR(x.text.data, "\n\na<b>buy</b> & nowb\n\n<i>x</i> &amp; y</xmpx>\n\nch<b>i</b>&amp;j\n\n"
			       "k<b>l</b>&amp;</plaintext>m");
	CHECK_STR(x.l.all.data, "http://f.example/ ");
	CHECK(tagname(&x.r.stats, "b") == NULL && tagname(&x.r.stats, "i") == NULL);
	done_run(&x);
}

/* A CDATA section is text, not decoded, as HTML::Parser (marked sections
 * on) gives it to SpamAssassin; other "<![...]>" are comments. */
static void cdata(void)
{
	struct run x;
	scan(&x, "<p>a<![CDATA[hidden <b>text</b> &amp;]]>b<![ cdata [q]]>c<![if "
		 "x]>d<![CDATA[x]]b>]]>e<![CDATA[f");
	CHECK_STR(x.text.data, "\n\nahidden <b>text</b> &amp;bqcdx]]b>ef");
	CHECK_STR(x.r.comments.data, "<![if x]>\n");
	CHECK(tagname(&x.r.stats, "b") == NULL);
	done_run(&x);
}

/* Declarations as HTML::Parser reads them (checked with HTML::Parser
 * 3.81): "<!DOCTYPE ...>" and "<!ENTITY ...>", the name in any case,
 * are no comments, and a DOCTYPE counts as a tag (HTML.pm's
 * html_declaration); other names, a name run on or a lone '-' word make
 * a comment up to the first '>', an unclosed "--" or quote one to the
 * end. */
static void declarations(void)
{
	struct run x;
	scan(&x, "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.0 Transitional//EN\"><p>a<!doctype html>"
		 "<!ENTITY x \"y > z\"><!DocType a--b -- c > d -- 'e>' [f]>b");
	CHECK_STR(x.text.data, "\n\nab");
	CHECK_STR(x.r.comments.data, "");
	/* two DOCTYPEs, p; the ENTITY is no tag */
	CHECK_INT(x.r.stats.tags, 4);
	CHECK_INT(x.r.stats.bad_tags, 0);
	done_run(&x);
	scan(&x, "<!DOCTYPEhtml><!DOCTYPE a -x><!foo bar><!ELEMENT a><!DOCTYPE:a><p>q<!DOCTYPE a -- x-->r"
		 "<!DOCTYPE x \"y><p>z");
	CHECK_STR(x.r.comments.data,
		  "<!DOCTYPEhtml>\n<!DOCTYPE a -x>\n<!foo bar>\n<!ELEMENT a>\n<!DOCTYPE:a>\n"
		  "<!DOCTYPE x \"y><p>z\n");
	CHECK_STR(x.text.data, "\n\nqr");
	CHECK_INT(x.r.stats.tags, 2);
	done_run(&x);
	scan(&x, "<p>a<!DOCTYPE a -- x><p>z");
	CHECK_STR(x.r.comments.data, "<!DOCTYPE a -- x><p>z\n");
	CHECK_STR(x.text.data, "\n\na");
	CHECK_INT(x.r.stats.tags, 1);
	done_run(&x);
}

/* "&nbsp;" is a plain space, as SpamAssassin makes it before parsing: a
 * run of them and the white space around them one space, in the title,
 * in literal elements and in attribute values too; "&nbsp" (no ';') is
 * still a no-break space, "&NBSP;" no reference. */
static void nbsp(void)
{
	struct run x;
	scan(&x, "<title>T&nbsp;&nbsp;t</title><p>a&nbsp;&nbsp;b x &nbsp; y"
		 "<a href=\"http://x.example/&nbsp;q\">l</a><xmp>m&nbsp;n</xmp>&NBSP;&nbsp");
	CHECK_STR(x.text.data, "\n\nT t\n\n\n\na b x yl\n\nm n\n\n&NBSP; ");
	CHECK_STR(x.r.title.data, "T  t");
	CHECK_STR(x.l.all.data, "http://x.example/ q ");
	done_run(&x);
}

/* The HTML length is counted in characters, as SpamAssassin's HTML.pm
 * counts its decoded text (HTML_IMAGE_ONLY_*, __HTML_LENGTH_*). */
static void length_chars(void)
{
	struct run x;
	scan(&x, "<p>\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 caf\xc3\xa9</p>");
	CHECK_INT(x.r.stats.length, 18);
	done_run(&x);
}

/* Colours as SpamAssassin's name_to_rgb reads them: every name of its
 * table (all of CSS's), hex only after a '#' (cut to 6 digits, or to 3
 * between 3 and 6), rgb() in decimal or percent; a value it reads as
 * "invalid" gives no low-contrast text against white. */
static void colours(void)
{
	static const struct {
		const char *fg;
		bool low;
	} cc[] = {
		{"cornsilk", true},
		{"LemonChiffon", true},
		{" papayawhip ", true},
		{"fff", false},
		{"#fff", true},
		{"#fffe", true},
		{"#fefefe00", true},
		{"#zzz", false},
		{"rgb(254,254,254)", true},
		{"rgb(100%,100%,100%)", true},
		{"rgb( 255,255,255)", false},
		{"navy", false},
		{"lightgoldenrodyellow", true},
	};
	/* a style's color: holding "rgb" is its first three numbers, no
	 * percentages (HTML.pm's style handling, not name_to_rgb);
	 * transparent text is in its background's colour */
	static const struct {
		const char *style;
		bool low;
	} sc[] = {
		{"color:rgb(100%,100%,100%)", false},
		{"color: rgb(254, 254, 254)", true},
		{"color:rgb(999,999,999)", true},
		{"color: transparent", true},
		{"color: inherit", false},
		{"color: cornsilk !important", true},
	};
	for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++) {
		char h[128];
		snprintf(h, sizeof(h), "<p>text</p><span style=\"%s\">hidden text</span>", sc[i].style);
		struct run x;
		scan(&x, h);
		if (!x.r.stats.low_contrast != !sc[i].low)
			fprintf(stderr, "style %s\n", sc[i].style);
		CHECK(!x.r.stats.low_contrast == !sc[i].low);
		done_run(&x);
	}
	for (size_t i = 0; i < sizeof(cc) / sizeof(cc[0]); i++) {
		char h[128];
		snprintf(h, sizeof(h), "<font color=\"%s\">hidden text</font>", cc[i].fg);
		struct run x;
		scan(&x, h);
		if (!x.r.stats.low_contrast != !cc[i].low)
			fprintf(stderr, "colour %s\n", cc[i].fg);
		CHECK(!x.r.stats.low_contrast == !cc[i].low);
		done_run(&x);
	}
	/* visible text in a colour name_to_rgb calls "invalid" (HTML.pm's
	 * font_invalid_color); not for white space alone, and not when the
	 * text is low contrast first (both colours invalid: the same) */
	static const struct {
		const char *html;
		bool invalid, low;
	} ic[] = {
		{"<font color=\"nocolour\">seen</font>", true, false},
		{"<font color=\"nocolour\"> \n </font>", false, false},
		{"<font color=\"#123456\">seen</font>", false, false},
		{"<span style=\"color: nocolour; background-color: zz\">seen</span>", false, true},
		/* a bgcolor attribute changes no colour in HTML.pm */
		{"<body bgcolor=\"zz\"><font color=\"nocolour\">seen</font></body>", true, false},
	};
	for (size_t i = 0; i < sizeof(ic) / sizeof(ic[0]); i++) {
		struct run x;
		scan(&x, ic[i].html);
		if (!x.r.stats.font_invalid_color != !ic[i].invalid || !x.r.stats.low_contrast != !ic[i].low)
			fprintf(stderr, "invalid colour: %s\n", ic[i].html);
		CHECK(!x.r.stats.font_invalid_color == !ic[i].invalid);
		CHECK(!x.r.stats.low_contrast == !ic[i].low);
		done_run(&x);
	}
}

/* The image area as HTML.pm sums it (html_image_ratio): an <img> with both
 * a width and a height, a percentage of an 800x600 screen, 200 for a value
 * that is not digits or is 0. */
static void image_area(void)
{
	struct run x;
	scan(&x, "<img width=\"50%\" height=10><img width=0 height=5><img width=\"12px\" height=2>"
		 "<img width=10><img height=\"10%\" width=3>");
	CHECK_INT(x.r.stats.image_area, 4000 + 1000 + 400 + 180);
	CHECK_INT(x.r.stats.images, 5);
	done_run(&x);
}

/* HTML.pm's font_face_bad (a face that is not a list of font names, as
 * its regex says; the expectations are what perl gives that regex) and
 * embeds (an <object> or <embed> tag). */
static void font_faces(void)
{
	static const struct {
		const char *face;
		bool bad;
	} ff[] = {
		{"&quot;Tahoma&quot;, Verdana, Arial, sans-serif", false},
		{"'Montserrat', sans-serif", false},
		{"Arial,Helvetica,Sans-Serif;", false},
		{".SFUIDisplay", false},
		{"hirakakupro-w3", false},
		{"Times New Roman, serif", false},
		{" Arial", false},
		{"Arial\n", false},
		{"Arial MT\nBlack", true},
		{"Wingdings 2", true},
		{"", true},
		{"a", true},
		{"Arial,", true},
		{"1Arial", true},
		{"Arial;x", true},
		{"Arial-", true},
		{"-Arial", true},
		{"Arial , Verdana", true},
	};
	for (size_t i = 0; i < sizeof(ff) / sizeof(ff[0]); i++) {
		char h[160];
		snprintf(h, sizeof(h), "<p><font face=\"%s\">text</font></p>", ff[i].face);
		struct run x;
		scan(&x, h);
		if (!x.r.stats.font_face_bad != !ff[i].bad)
			fprintf(stderr, "font face: %s\n", ff[i].face);
		CHECK(!x.r.stats.font_face_bad == !ff[i].bad);
		CHECK(!x.r.stats.embeds);
		done_run(&x);
	}
	struct run x;
	scan(&x, "<p>text</p><object data=\"x.swf\"></object>");
	CHECK(x.r.stats.embeds && !x.r.stats.font_face_bad);
	done_run(&x);
	scan(&x, "<p>text</p><EMBED src=\"x.swf\">");
	CHECK(x.r.stats.embeds);
	done_run(&x);
	scan(&x, "<p>text</p></embed><font>x</font>");
	CHECK(!x.r.stats.embeds && !x.r.stats.font_face_bad);
	done_run(&x);
}

/* HTML.pm's obfuscation: text that starts with a word character right
 * after rendered text that ends with one, no white-space tag between them
 * (the expectations are HTML.pm's own counts for each snippet). */
static void obfuscation(void)
{
	static const struct {
		const char *html;
		unsigned obfuscation;
	} ob[] = {
		{"v<b></b>iagra", 1},
		{"v<b>i</b>a<i>g</i>ra", 4},
		{"a<br>b", 0},
		{"a<p>b</p>c", 0},
		{"a<td>b<td>c", 0},
		{"foo <b>bar</b> baz", 0},
		{"foo<b> bar</b>", 0},
		{"foo<b>. bar</b>x", 1},
		{"a<!-- c -->b", 1},
		{"a<title>t</title>b", 0},
		{"ab<script>x</script>cd", 1},
		{"ab<style>x</style>cd", 1},
		{"ab<span>&#160;</span>cd", 0},
		{"a<b>&#160;x</b>", 0},
		{"a<b>&nbsp;</b>b", 0},
		{"a<b>&amp;</b>b", 0},
		{"a<b>&eacute;</b>b", 2},
		{"\xc3\xa9<b>\xc3\xa9</b>", 1},
		{"a<b>&#8203;</b>b", 2},
		{"a<b>&#8200;</b>b", 0},
		{"a<b>&#12288;</b>b", 0},
		{"a<b>&#x1F600;</b>", 1},
		{"a<b>&#1;</b>", 1},
		{"a<b>_</b>b", 0},
		{"x < y<b>z</b>", 1},
		{"x <=5<b>z</b>", 1},
		{"a<o:p></o:p>b", 1},
		{"a<br/>b", 0},
		{"<textarea>a</textarea>b", 1},
		{"a<![CDATA[b]]>c", 2},
		{"a<!doctype html>b", 1},
		{"a<?xml x?>b", 1},
		{"a<b>\n</b>c", 0},
		{"a<b> </b>c", 0},
		{"<b>a</b><b>b</b><b>c</b><b>d</b>", 3},
		{"a<u>b<a href=\"x\">c</a>d</u>e", 4},
		{"a<div>b</div>c", 0},
		{"a<li>b", 0},
		{"a<h1>b</h1>c", 0},
		{"a<font color=red>b</font>c", 2},
		/* a curly double quote of the source is '"' to HTML.pm, one
		 * from an entity is not */
		{"a<b>\xe2\x80\x9cx</b>", 0},
		{"a\xe2\x80\x9d<b>x</b>", 0},
		{"a<b>&ldquo;x</b>", 1},
		{"a&rdquo;<b>x</b>", 1},
		{"\xe2\x80\x9c<b>\xe2\x80\x9d</b>", 0},
	};
	for (size_t i = 0; i < sizeof(ob) / sizeof(ob[0]); i++) {
		struct run x;
		scan(&x, ob[i].html);
		if (x.r.stats.obfuscation != ob[i].obfuscation)
			fprintf(stderr, "obfuscation: %s\n", ob[i].html);
		CHECK_INT(x.r.stats.obfuscation, ob[i].obfuscation);
		done_run(&x);
	}
}

int main(void)
{
	image_area();
	colours();
	length_chars();
	nbsp();
	cdata();
	declarations();
	literal_elements();
	bogus_end_tags();
	base_href();
	rendering();
	statistics();
	quoting();
	whitespace();
	anchors();
	entities();
	font_faces();
	obfuscation();
	return t_done();
}
