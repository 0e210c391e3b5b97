/*
 * lib/html.c - the one HTML tokenizer (see html.h): one pass that renders
 * the text, reports links and fills the statistics of struct sift_html.
 *
 * The statistics follow SpamAssassin's HTML.pm where the spam rules
 * depend on them: tags counted opening and closing, a closing tag beyond
 * the opening ones of its name is "closed extra", unknown names are bad
 * tags, the text colour and background are tracked through a stack of the
 * tags that carry style (SpamAssassin's text_style) to find text close to
 * its background, and the anchor text shows "<img>" for an image.
 */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "html.h"
#include "mailsyntax.h"
#include "sift.h"

/* ---- entities, tag tables, attributes ------------------------------------ */

/* The character entities of HTML 4 (the 253 of Perl's HTML::Entities,
 * which SpamAssassin's HTML::Parser decodes), sorted by name for bsearch. */
static const struct entity {
	char name[10];
	unsigned cp;
} entities[] = {
	{"AElig", 0xc6},     {"Aacute", 0xc1},	 {"Acirc", 0xc2},    {"Agrave", 0xc0},	 {"Alpha", 0x391},
	{"Aring", 0xc5},     {"Atilde", 0xc3},	 {"Auml", 0xc4},     {"Beta", 0x392},	 {"Ccedil", 0xc7},
	{"Chi", 0x3a7},	     {"Dagger", 0x2021}, {"Delta", 0x394},   {"ETH", 0xd0},	 {"Eacute", 0xc9},
	{"Ecirc", 0xca},     {"Egrave", 0xc8},	 {"Epsilon", 0x395}, {"Eta", 0x397},	 {"Euml", 0xcb},
	{"Gamma", 0x393},    {"Iacute", 0xcd},	 {"Icirc", 0xce},    {"Igrave", 0xcc},	 {"Iota", 0x399},
	{"Iuml", 0xcf},	     {"Kappa", 0x39a},	 {"Lambda", 0x39b},  {"Mu", 0x39c},	 {"Ntilde", 0xd1},
	{"Nu", 0x39d},	     {"OElig", 0x152},	 {"Oacute", 0xd3},   {"Ocirc", 0xd4},	 {"Ograve", 0xd2},
	{"Omega", 0x3a9},    {"Omicron", 0x39f}, {"Oslash", 0xd8},   {"Otilde", 0xd5},	 {"Ouml", 0xd6},
	{"Phi", 0x3a6},	     {"Pi", 0x3a0},	 {"Prime", 0x2033},  {"Psi", 0x3a8},	 {"Rho", 0x3a1},
	{"Scaron", 0x160},   {"Sigma", 0x3a3},	 {"THORN", 0xde},    {"Tau", 0x3a4},	 {"Theta", 0x398},
	{"Uacute", 0xda},    {"Ucirc", 0xdb},	 {"Ugrave", 0xd9},   {"Upsilon", 0x3a5}, {"Uuml", 0xdc},
	{"Xi", 0x39e},	     {"Yacute", 0xdd},	 {"Yuml", 0x178},    {"Zeta", 0x396},	 {"aacute", 0xe1},
	{"acirc", 0xe2},     {"acute", 0xb4},	 {"aelig", 0xe6},    {"agrave", 0xe0},	 {"alefsym", 0x2135},
	{"alpha", 0x3b1},    {"amp", 0x26},	 {"and", 0x2227},    {"ang", 0x2220},	 {"apos", 0x27},
	{"aring", 0xe5},     {"asymp", 0x2248},	 {"atilde", 0xe3},   {"auml", 0xe4},	 {"bdquo", 0x201e},
	{"beta", 0x3b2},     {"brvbar", 0xa6},	 {"bull", 0x2022},   {"cap", 0x2229},	 {"ccedil", 0xe7},
	{"cedil", 0xb8},     {"cent", 0xa2},	 {"chi", 0x3c7},     {"circ", 0x2c6},	 {"clubs", 0x2663},
	{"cong", 0x2245},    {"copy", 0xa9},	 {"crarr", 0x21b5},  {"cup", 0x222a},	 {"curren", 0xa4},
	{"dArr", 0x21d3},    {"dagger", 0x2020}, {"darr", 0x2193},   {"deg", 0xb0},	 {"delta", 0x3b4},
	{"diams", 0x2666},   {"divide", 0xf7},	 {"eacute", 0xe9},   {"ecirc", 0xea},	 {"egrave", 0xe8},
	{"empty", 0x2205},   {"emsp", 0x2003},	 {"ensp", 0x2002},   {"epsilon", 0x3b5}, {"equiv", 0x2261},
	{"eta", 0x3b7},	     {"eth", 0xf0},	 {"euml", 0xeb},     {"euro", 0x20ac},	 {"exist", 0x2203},
	{"fnof", 0x192},     {"forall", 0x2200}, {"frac12", 0xbd},   {"frac14", 0xbc},	 {"frac34", 0xbe},
	{"frasl", 0x2044},   {"gamma", 0x3b3},	 {"ge", 0x2265},     {"gt", 0x3e},	 {"hArr", 0x21d4},
	{"harr", 0x2194},    {"hearts", 0x2665}, {"hellip", 0x2026}, {"iacute", 0xed},	 {"icirc", 0xee},
	{"iexcl", 0xa1},     {"igrave", 0xec},	 {"image", 0x2111},  {"infin", 0x221e},	 {"int", 0x222b},
	{"iota", 0x3b9},     {"iquest", 0xbf},	 {"isin", 0x2208},   {"iuml", 0xef},	 {"kappa", 0x3ba},
	{"lArr", 0x21d0},    {"lambda", 0x3bb},	 {"lang", 0x2329},   {"laquo", 0xab},	 {"larr", 0x2190},
	{"lceil", 0x2308},   {"ldquo", 0x201c},	 {"le", 0x2264},     {"lfloor", 0x230a}, {"lowast", 0x2217},
	{"loz", 0x25ca},     {"lrm", 0x200e},	 {"lsaquo", 0x2039}, {"lsquo", 0x2018},	 {"lt", 0x3c},
	{"macr", 0xaf},	     {"mdash", 0x2014},	 {"micro", 0xb5},    {"middot", 0xb7},	 {"minus", 0x2212},
	{"mu", 0x3bc},	     {"nabla", 0x2207},	 {"nbsp", 0xa0},     {"ndash", 0x2013},	 {"ne", 0x2260},
	{"ni", 0x220b},	     {"not", 0xac},	 {"notin", 0x2209},  {"nsub", 0x2284},	 {"ntilde", 0xf1},
	{"nu", 0x3bd},	     {"oacute", 0xf3},	 {"ocirc", 0xf4},    {"oelig", 0x153},	 {"ograve", 0xf2},
	{"oline", 0x203e},   {"omega", 0x3c9},	 {"omicron", 0x3bf}, {"oplus", 0x2295},	 {"or", 0x2228},
	{"ordf", 0xaa},	     {"ordm", 0xba},	 {"oslash", 0xf8},   {"otilde", 0xf5},	 {"otimes", 0x2297},
	{"ouml", 0xf6},	     {"para", 0xb6},	 {"part", 0x2202},   {"permil", 0x2030}, {"perp", 0x22a5},
	{"phi", 0x3c6},	     {"pi", 0x3c0},	 {"piv", 0x3d6},     {"plusmn", 0xb1},	 {"pound", 0xa3},
	{"prime", 0x2032},   {"prod", 0x220f},	 {"prop", 0x221d},   {"psi", 0x3c8},	 {"quot", 0x22},
	{"rArr", 0x21d2},    {"radic", 0x221a},	 {"rang", 0x232a},   {"raquo", 0xbb},	 {"rarr", 0x2192},
	{"rceil", 0x2309},   {"rdquo", 0x201d},	 {"real", 0x211c},   {"reg", 0xae},	 {"rfloor", 0x230b},
	{"rho", 0x3c1},	     {"rlm", 0x200f},	 {"rsaquo", 0x203a}, {"rsquo", 0x2019},	 {"sbquo", 0x201a},
	{"scaron", 0x161},   {"sdot", 0x22c5},	 {"sect", 0xa7},     {"shy", 0xad},	 {"sigma", 0x3c3},
	{"sigmaf", 0x3c2},   {"sim", 0x223c},	 {"spades", 0x2660}, {"sub", 0x2282},	 {"sube", 0x2286},
	{"sum", 0x2211},     {"sup", 0x2283},	 {"sup1", 0xb9},     {"sup2", 0xb2},	 {"sup3", 0xb3},
	{"supe", 0x2287},    {"szlig", 0xdf},	 {"tau", 0x3c4},     {"there4", 0x2234}, {"theta", 0x3b8},
	{"thetasym", 0x3d1}, {"thinsp", 0x2009}, {"thorn", 0xfe},    {"tilde", 0x2dc},	 {"times", 0xd7},
	{"trade", 0x2122},   {"uArr", 0x21d1},	 {"uacute", 0xfa},   {"uarr", 0x2191},	 {"ucirc", 0xfb},
	{"ugrave", 0xf9},    {"uml", 0xa8},	 {"upsih", 0x3d2},   {"upsilon", 0x3c5}, {"uuml", 0xfc},
	{"weierp", 0x2118},  {"xi", 0x3be},	 {"yacute", 0xfd},   {"yen", 0xa5},	 {"yuml", 0xff},
	{"zeta", 0x3b6},     {"zwj", 0x200d},	 {"zwnj", 0x200c},
};
#define ENTITY_NAME_MAX 8 /* "thetasym" */

static int entity_cmp(const void *key, const void *e)
{
	return strcmp(key, ((const struct entity *)e)->name);
}

/* The code point of the entity named s[0..len), -1 when none is. */
static long entity_find(const char *s, size_t len)
{
	if (len == 0 || len > ENTITY_NAME_MAX)
		return -1;
	char key[ENTITY_NAME_MAX + 1];
	memcpy(key, s, len);
	key[len] = 0;
	const struct entity *e = bsearch(key, entities, sizeof(entities) / sizeof(entities[0]),
					 sizeof(entities[0]), entity_cmp);
	return e ? (long)e->cp : -1;
}

/* One character reference at s[0] == '&', as HTML::Parser decodes it: a
 * named entity with its ';', or without it when the character is Latin-1
 * ("&copy 2026"); in text (prefix) also a Latin-1 entity that only starts
 * the name ("&copyright" is "\u00a9right"). Returns the octets consumed, 0
 * when it is no reference. */
static size_t entity(const char *s, size_t n, struct sift_buf *o, bool prefix)
{
	if (n < 3)
		return 0;
	if (s[1] == '#') {
		size_t i = 2;
		unsigned long cp = 0;
		bool hex = i < n && (s[i] == 'x' || s[i] == 'X');
		if (hex)
			i++;
		size_t st = i;
		while (i < n && (hex ? isxdigit((unsigned char)s[i]) : isdigit((unsigned char)s[i]))) {
			if (cp <= 0x10ffff) /* beyond, too large whatever follows */
				cp = cp * (hex ? 16 : 10) + (unsigned long)sift_hexval((unsigned char)s[i]);
			i++;
		}
		/* "&#0;" and numbers beyond Unicode are no references for
		 * HTML::Parser: they stay as written */
		if (i == st || cp == 0 || cp > 0x10ffff)
			return 0;
		if (i < n && s[i] == ';')
			i++;
		sift_put_utf8(o, cp);
		return i;
	}
	size_t e = 1;
	while (e < n && isalnum((unsigned char)s[e]))
		e++;
	size_t len = e - 1;
	bool semi = e < n && s[e] == ';';
	long cp = entity_find(s + 1, len);
	if (cp >= 0 && (semi || cp < 256)) {
		sift_put_utf8(o, (unsigned long)cp);
		return semi ? e + 1 : e;
	}
	if (prefix && len > 1)
		for (size_t k = len - 1 < ENTITY_NAME_MAX ? len - 1 : ENTITY_NAME_MAX; k > 0; k--) {
			cp = entity_find(s + 1, k);
			if (cp >= 0 && cp < 256) {
				sift_put_utf8(o, (unsigned long)cp);
				return 1 + k;
			}
		}
	return 0;
}

size_t sift_html_entity(const char *s, size_t n, struct sift_buf *o)
{
	return entity(s, n, o, true);
}

/* Tag names HTML (4, 5 and the old browsers' extensions) defines: others
 * are bad tags. */
static const char *const known_tags[] = {
	"a",	    "abbr",    "acronym",    "address",	 "applet",     "area",	   "b",		"base",
	"basefont", "bdo",     "big",	     "blink",	 "blockquote", "body",	   "br",	"button",
	"caption",  "center",  "cite",	     "code",	 "col",	       "colgroup", "dd",	"del",
	"dfn",	    "dir",     "div",	     "dl",	 "dt",	       "em",	   "embed",	"fieldset",
	"font",	    "form",    "frame",	     "frameset", "h1",	       "h2",	   "h3",	"h4",
	"h5",	    "h6",      "head",	     "hr",	 "html",       "i",	   "iframe",	"img",
	"input",    "ins",     "isindex",    "kbd",	 "label",      "layer",	   "legend",	"li",
	"link",	    "map",     "marquee",    "menu",	 "meta",       "nobr",	   "noframes",	"noscript",
	"object",   "ol",      "optgroup",   "option",	 "p",	       "param",	   "pre",	"q",
	"s",	    "samp",    "script",     "select",	 "small",      "span",	   "strike",	"strong",
	"style",    "sub",     "sup",	     "table",	 "tbody",      "td",	   "textarea",	"tfoot",
	"th",	    "thead",   "title",	     "tr",	 "tt",	       "u",	   "ul",	"var",
	"wbr",	    "xml",     "o:p",	     "section",	 "article",    "nav",	   "header",	"footer",
	"main",	    "figure",  "figcaption", "picture",	 "source",     "svg",	   "video",	"audio",
	"canvas",   "bgsound", "spacer",     "image",	 "xmp",	       "listing",  "plaintext", "st1:place",

	"ilayer",   "nolayer", "keygen",     "multicol", "comment",    "server",   NULL};

/* The white space a tag inserts in the rendering, at its opening and at
 * its closing tag (SpamAssassin's html_whitespace): a line break, a space,
 * or a paragraph break; other tags insert nothing. */
static const char *const ws_nl[] = {"br", "div", NULL};
static const char *const ws_sp[] = {"li", "th", "td", "dt", "dd", "embed", "h1",
				    "h2", "h3", "h4", "h5", "h6", NULL};
static const char *const ws_para[] = {"p",	   "hr",  "blockquote", "pre", "listing",
				      "plaintext", "xmp", "title",	NULL};

/* The tags that may set the text's colours (SpamAssassin's text_style) */
static const char *const style_tags[] = {"body",  "font",    "table", "tr", "th",  "td", "big",
					 "small", "marquee", "span",  "p",  "div", "a",	 NULL};

/* Every tag name of the lists above, found with one hash probe or a few
 * (a tag is looked up for each tag of every HTML part). Built once. */
#define TAG_SLOTS 512
static struct tagslot {
	const char *name;
	bool known;
	bool style; /* in style_tags */
	const char *ws;
} tag_slot[TAG_SLOTS];
static pthread_once_t tag_once = PTHREAD_ONCE_INIT;

/* Two names equal: the first octets compared inline, which settles most
 * of the comparisons of a tag's name with the names that matter. */
static inline bool same(const char *a, const char *b)
{
	return a[0] == b[0] && strcmp(a, b) == 0;
}

static unsigned tag_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct tagslot *tag_slot_of(const char *name)
{
	unsigned j = tag_hash(name) & (TAG_SLOTS - 1);
	while (tag_slot[j].name && !same(tag_slot[j].name, name))
		j = (j + 1) & (TAG_SLOTS - 1);
	return &tag_slot[j];
}

static void tag_table(void)
{
	for (const char *const *t = known_tags; *t; t++) {
		struct tagslot *x = tag_slot_of(*t);
		x->name = *t;
		x->known = true;
	}
	static const struct {
		const char *const *names;
		const char *ws;
	} ws[] = {{ws_nl, "\n"}, {ws_sp, " "}, {ws_para, "\n\n"}};
	for (size_t k = 0; k < sizeof(ws) / sizeof(ws[0]); k++)
		for (const char *const *t = ws[k].names; *t; t++) {
			struct tagslot *x = tag_slot_of(*t);
			x->name = *t;
			x->ws = ws[k].ws;
		}
	for (const char *const *t = style_tags; *t; t++) {
		struct tagslot *x = tag_slot_of(*t);
		x->name = *t;
		x->style = true;
	}
}

/* name's entry; NULL: not a known tag, nor one that renders space or sets colours */
static const struct tagslot *tag_find(const char *name)
{
	pthread_once(&tag_once, tag_table);
	const struct tagslot *x = tag_slot_of(name);
	return x->name ? x : NULL;
}

/* Finds attribute `name` in the attribute text a..e; copies its value
 * (entities decoded) into o. */
static bool html_attr(const char *a, const char *e, const char *name, struct sift_buf *o, bool lines)
{
	size_t nl = strlen(name);
	const char *p = a;
	while (p < e) {
		while (p < e && (isspace((unsigned char)*p) || *p == '/'))
			p++;
		const char *ns = p;
		while (p < e && !isspace((unsigned char)*p) && *p != '=' && *p != '>')
			p++;
		size_t len = (size_t)(p - ns);
		while (p < e && isspace((unsigned char)*p))
			p++;
		const char *vs = NULL, *ve = NULL;
		if (p < e && *p == '=') {
			p++;
			while (p < e && isspace((unsigned char)*p))
				p++;
			if (p < e && (*p == '"' || *p == '\'')) {
				char q = *p++;
				vs = p;
				while (p < e && *p != q)
					p++;
				ve = p;
				if (p < e)
					p++;
			} else {
				vs = p;
				while (p < e && !isspace((unsigned char)*p))
					p++;
				ve = p;
			}
		}
		if (len == 0 && p == ns) {
			p++;
			continue;
		}
		if (len == nl && strncasecmp(ns, name, nl) == 0 && vs) {
			for (const char *q = vs; q < ve;) {
				if (*q == '&' && ve - q >= 6 && memcmp(q, "&nbsp;", 6) == 0) {
					sift_buf_add(o, " ", 1); /* as in text */
					q += 6;
					continue;
				}
				if (*q == '&') {
					size_t k = entity(q, (size_t)(ve - q), o, false);
					if (k) {
						q += k;
						continue;
					}
				}
				if ((*q == '\r' || *q == '\n') && !lines) {
					q++;
					continue;
				}
				const char *run = q + 1;
				while (run < ve && *run != '&' && ((*run != '\r' && *run != '\n') || lines))
					run++;
				sift_buf_add(o, q, (size_t)(run - q));
				q = run;
			}
			return true;
		}
	}
	return false;
}

static const char *find_ci(const char *s, size_t n, const char *needle)
{
	size_t nl = strlen(needle);
	for (size_t i = 0; i + nl <= n; i++)
		if (strncasecmp(s + i, needle, nl) == 0)
			return s + i;
	return NULL;
}

/* ---- colours ---------------------------------------------------------------- */

struct tstyle {
	char tag[16];
	char fg[8], bg[8];
};

/* An <img> width or height as HTML.pm reads it: digits, or digits and
 * '%' (times pct: a percentage of an 800x600 screen), a line end allowed
 * after; 200 (its guess) for anything else or 0. At most 10^6 (the area
 * stays far from overflowing). */
static unsigned long img_dim(const char *v, size_t n, unsigned long pct)
{
	if (n && v[n - 1] == '\n')
		n--;
	size_t i = 0;
	unsigned long d = 0;
	while (i < n && isdigit((unsigned char)v[i])) {
		if (d < 1000000)
			d = d * 10 + (unsigned long)(v[i] - '0');
		i++;
	}
	if (i == 0)
		return 200;
	if (i < n && v[i] == '%' && i + 1 == n)
		d *= pct;
	else if (i != n)
		return 200;
	if (d > 1000000)
		d = 1000000;
	return d ? d : 200;
}

/* SpamAssassin's colour names (HTML.pm's %html_color: the HTML 4 colours
 * and the rest of CSS's), sorted for bsearch. */
static const struct cname {
	const char *n;
	unsigned long v;
} color_names[] = {
	{"aliceblue", 0xf0f8ff},
	{"antiquewhite", 0xfaebd7},
	{"aqua", 0x00ffff},
	{"aquamarine", 0x7fffd4},
	{"azure", 0xf0ffff},
	{"beige", 0xf5f5dc},
	{"bisque", 0xffe4c4},
	{"black", 0x000000},
	{"blanchedalmond", 0xffebcd},
	{"blue", 0x0000ff},
	{"blueviolet", 0x8a2be2},
	{"brown", 0xa52a2a},
	{"burlywood", 0xdeb887},
	{"cadetblue", 0x5f9ea0},
	{"chartreuse", 0x7fff00},
	{"chocolate", 0xd2691e},
	{"coral", 0xff7f50},
	{"cornflowerblue", 0x6495ed},
	{"cornsilk", 0xfff8dc},
	{"crimson", 0xdc143c},
	{"cyan", 0x00ffff},
	{"darkblue", 0x00008b},
	{"darkcyan", 0x008b8b},
	{"darkgoldenrod", 0xb8860b},
	{"darkgray", 0xa9a9a9},
	{"darkgreen", 0x006400},
	{"darkgrey", 0xa9a9a9},
	{"darkkhaki", 0xbdb76b},
	{"darkmagenta", 0x8b008b},
	{"darkolivegreen", 0x556b2f},
	{"darkorange", 0xff8c00},
	{"darkorchid", 0x9932cc},
	{"darkred", 0x8b0000},
	{"darksalmon", 0xe9967a},
	{"darkseagreen", 0x8fbc8f},
	{"darkslateblue", 0x483d8b},
	{"darkslategray", 0x2f4f4f},
	{"darkslategrey", 0x2f4f4f},
	{"darkturquoise", 0x00ced1},
	{"darkviolet", 0x9400d3},
	{"deeppink", 0xff1493},
	{"deepskyblue", 0x00bfff},
	{"dimgray", 0x696969},
	{"dimgrey", 0x696969},
	{"dodgerblue", 0x1e90ff},
	{"firebrick", 0xb22222},
	{"floralwhite", 0xfffaf0},
	{"forestgreen", 0x228b22},
	{"fuchsia", 0xff00ff},
	{"gainsboro", 0xdcdcdc},
	{"ghostwhite", 0xf8f8ff},
	{"gold", 0xffd700},
	{"goldenrod", 0xdaa520},
	{"gray", 0x808080},
	{"green", 0x008000},
	{"greenyellow", 0xadff2f},
	{"grey", 0x808080},
	{"honeydew", 0xf0fff0},
	{"hotpink", 0xff69b4},
	{"indianred", 0xcd5c5c},
	{"indigo", 0x4b0082},
	{"ivory", 0xfffff0},
	{"khaki", 0xf0e68c},
	{"lavender", 0xe6e6fa},
	{"lavenderblush", 0xfff0f5},
	{"lawngreen", 0x7cfc00},
	{"lemonchiffon", 0xfffacd},
	{"lightblue", 0xadd8e6},
	{"lightcoral", 0xf08080},
	{"lightcyan", 0xe0ffff},
	{"lightgoldenrodyellow", 0xfafad2},
	{"lightgray", 0xd3d3d3},
	{"lightgreen", 0x90ee90},
	{"lightgrey", 0xd3d3d3},
	{"lightpink", 0xffb6c1},
	{"lightsalmon", 0xffa07a},
	{"lightseagreen", 0x20b2aa},
	{"lightskyblue", 0x87cefa},
	{"lightslategray", 0x778899},
	{"lightslategrey", 0x778899},
	{"lightsteelblue", 0xb0c4de},
	{"lightyellow", 0xffffe0},
	{"lime", 0x00ff00},
	{"limegreen", 0x32cd32},
	{"linen", 0xfaf0e6},
	{"magenta", 0xff00ff},
	{"maroon", 0x800000},
	{"mediumaquamarine", 0x66cdaa},
	{"mediumblue", 0x0000cd},
	{"mediumorchid", 0xba55d3},
	{"mediumpurple", 0x9370db},
	{"mediumseagreen", 0x3cb371},
	{"mediumslateblue", 0x7b68ee},
	{"mediumspringgreen", 0x00fa9a},
	{"mediumturquoise", 0x48d1cc},
	{"mediumvioletred", 0xc71585},
	{"midnightblue", 0x191970},
	{"mintcream", 0xf5fffa},
	{"mistyrose", 0xffe4e1},
	{"moccasin", 0xffe4b5},
	{"navajowhite", 0xffdead},
	{"navy", 0x000080},
	{"oldlace", 0xfdf5e6},
	{"olive", 0x808000},
	{"olivedrab", 0x6b8e23},
	{"orange", 0xffa500},
	{"orangered", 0xff4500},
	{"orchid", 0xda70d6},
	{"palegoldenrod", 0xeee8aa},
	{"palegreen", 0x98fb98},
	{"paleturquoise", 0xafeeee},
	{"palevioletred", 0xdb7093},
	{"papayawhip", 0xffefd5},
	{"peachpuff", 0xffdab9},
	{"peru", 0xcd853f},
	{"pink", 0xffc0cb},
	{"plum", 0xdda0dd},
	{"powderblue", 0xb0e0e6},
	{"purple", 0x800080},
	{"red", 0xff0000},
	{"rosybrown", 0xbc8f8f},
	{"royalblue", 0x4169e1},
	{"saddlebrown", 0x8b4513},
	{"salmon", 0xfa8072},
	{"sandybrown", 0xf4a460},
	{"seagreen", 0x2e8b57},
	{"seashell", 0xfff5ee},
	{"sienna", 0xa0522d},
	{"silver", 0xc0c0c0},
	{"skyblue", 0x87ceeb},
	{"slateblue", 0x6a5acd},
	{"slategray", 0x708090},
	{"slategrey", 0x708090},
	{"snow", 0xfffafa},
	{"springgreen", 0x00ff7f},
	{"steelblue", 0x4682b4},
	{"tan", 0xd2b48c},
	{"teal", 0x008080},
	{"thistle", 0xd8bfd8},
	{"tomato", 0xff6347},
	{"turquoise", 0x40e0d0},
	{"violet", 0xee82ee},
	{"wheat", 0xf5deb3},
	{"white", 0xffffff},
	{"whitesmoke", 0xf5f5f5},
	{"yellow", 0xffff00},
	{"yellowgreen", 0x9acd32},
};

static int cname_cmp(const void *k, const void *e)
{
	return strcmp(k, ((const struct cname *)e)->n);
}

/* dec2hex(): at least two hex digits */
static void dec2hex(struct sift_buf *b, unsigned long long d)
{
	char t[24];
	int k = snprintf(t, sizeof(t), d < 16 ? "0%llx" : "%llx", d);
	sift_buf_add(b, t, (size_t)k);
}

/* Perl's \d+ at s[*i]: its value (saturated), false when no digit. */
static bool digits(const char *s, size_t n, size_t *i, unsigned long long *v)
{
	size_t k = *i;
	*v = 0;
	while (k < n && isdigit((unsigned char)s[k])) {
		unsigned long long d = (unsigned long long)(s[k] - '0');
		*v = *v > (ULLONG_MAX - d) / 10 ? ULLONG_MAX : *v * 10 + d;
		k++;
	}
	if (k == *i)
		return false;
	*i = k;
	return true;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	return i;
}

/* HTML.pm's rgb(N%, N%, N%) (pct) or rgb(N, N, N) at s[i] (just past
 * "rgb("): the three values. */
static bool rgb_args(const char *s, size_t n, size_t i, bool pct, unsigned long long v[3])
{
	for (int k = 0; k < 3; k++) {
		if (k)
			i = skip_ws(s, n, i);
		if (!digits(s, n, &i, &v[k]))
			return false;
		if (pct && (i >= n || s[i++] != '%'))
			return false;
		if (k < 2 && (i >= n || s[i++] != ','))
			return false;
	}
	i = skip_ws(s, n, i);
	return i < n && s[i] == ')';
}

/* SpamAssassin's name_to_rgb() (HTML.pm): "#rrggbb", "invalid", or what
 * else it returns for odd input ("#" for a lone '#'). A name from its
 * table; else, for a value made of '#', a-f and 0-9 only, or holding
 * rgb(...) of digits, '%', ',' and spaces: rgb(N%,N%,N%) and rgb(N,N,N)
 * turned into hex; then a value starting with '#' has its non-hex
 * characters dropped, is cut to 6 digits (to 3 if between 3 and 6),
 * padded to a multiple of 3 and a 3-digit one doubled. Anything else (a
 * hex value without its '#', an unknown name) is "invalid". */
static void name_to_rgb(const char *in, size_t n, char out[8])
{
	while (n && isspace((unsigned char)*in)) {
		in++;
		n--;
	}
	while (n && isspace((unsigned char)in[n - 1]))
		n--;
	char c[32];
	if (n < sizeof(c)) {
		for (size_t i = 0; i < n; i++)
			c[i] = (char)tolower((unsigned char)in[i]);
		c[n] = 0;
		const struct cname *e = bsearch(c, color_names, sizeof(color_names) / sizeof(color_names[0]),
						sizeof(color_names[0]), cname_cmp);
		if (e) {
			snprintf(out, 8, "#%06lx", e->v);
			return;
		}
	}
	bool hexclass = true, rgb = false;
	for (size_t i = 0; i < n; i++) {
		char ch = (char)tolower((unsigned char)in[i]);
		if (ch != '#' && !isdigit((unsigned char)ch) && !(ch >= 'a' && ch <= 'f'))
			hexclass = false;
	}
	struct sift_buf col = {0};
	for (size_t i = 0; !hexclass && i + 4 <= n; i++) {
		if (strncasecmp(in + i, "rgb(", 4) != 0)
			continue;
		size_t k = i + 4;
		while (k < n &&
		       (isdigit((unsigned char)in[k]) || in[k] == '%' || in[k] == ',' || in[k] == ' '))
			k++;
		if (k < n && in[k] == ')')
			rgb = true;
	}
	if (!hexclass && !rgb) {
		snprintf(out, 8, "invalid");
		return;
	}
	for (size_t i = 0; i < n; i++)
		sift_buf_add(&col, (char[]){(char)tolower((unsigned char)in[i])}, 1);
	if (rgb) {
		unsigned long long v[3];
		for (int pct = 1; pct >= 0; pct--)
			for (size_t i = 0; i + 4 <= col.len; i++)
				if (memcmp(col.data + i, "rgb(", 4) == 0 &&
				    rgb_args(col.data, col.len, i + 4, pct, v)) {
					col.len = 0;
					sift_buf_add(&col, "#", 1);
					for (int k = 0; k < 3; k++)
						dec2hex(&col,
							pct ? (unsigned long long)((double)v[k] / 100 * 255)
							    : v[k]);
					break;
				}
	}
	if (!col.len || col.data[0] != '#') {
		sift_buf_free(&col);
		snprintf(out, 8, "invalid");
		return;
	}
	char hex[7];
	size_t hl = 0;
	for (size_t i = 0; i < col.len && hl < 6; i++)
		if (isxdigit((unsigned char)col.data[i]))
			hex[hl++] = col.data[i];
	sift_buf_free(&col);
	if (hl > 3 && hl < 6)
		hl = 3;
	while (hl % 3)
		hex[hl++] = '0';
	hex[hl] = 0;
	if (hl == 3)
		snprintf(out, 8, "#%c%c%c%c%c%c", hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]);
	else
		snprintf(out, 8, "#%s", hex);
}

/* ---- text colours ---- */
/* A colour of a style's color: or background-color: (v, n: the value) as
 * HTML.pm's style handling reads it: 0 with the colour in out, 1 inherit
 * (no change), 2 transparent (the parent's background for a background,
 * the background for the text). A value holding "rgb" is read as its
 * digits and commas, "rgb(a,b,c)" the first three numbers (none 0, each
 * at most 255: not name_to_rgb, so no percentages); anything else is
 * name_to_rgb's. */
static int style_color(const char *v, size_t n, char out[8])
{
	while (n && isspace((unsigned char)*v))
		v++, n--;
	while (n && isspace((unsigned char)v[n - 1]))
		n--;
	if (n == 7 && strncasecmp(v, "inherit", 7) == 0)
		return 1;
	if (n == 11 && strncasecmp(v, "transparent", 11) == 0)
		return 2;
	bool rgb = false;
	for (size_t i = 0; i + 3 <= n && !rgb; i++)
		rgb = strncasecmp(v + i, "rgb", 3) == 0;
	if (!rgb) {
		name_to_rgb(v, n, out);
		return 0;
	}
	unsigned long c[3] = {0, 0, 0};
	int k = 0;
	for (size_t i = 0; i < n && k < 3; i++) {
		if (v[i] == ',')
			k++;
		else if (isdigit((unsigned char)v[i]))
			c[k] = c[k] > 255 ? c[k] : c[k] * 10 + (unsigned long)(v[i] - '0');
	}
	snprintf(out, 8, "#%02lx%02lx%02lx", c[0] > 255 ? 255 : c[0], c[1] > 255 ? 255 : c[1],
		 c[2] > 255 ? 255 : c[2]);
	return 0;
}

static void style_apply(struct tstyle *ns, const char *v, size_t n, const char *parent_bg)
{
	/* "color: x; background-color: y; background: z" */
	bool fg_transparent = false;
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && v[j] != ';')
			j++;
		const char *d = v + i;
		size_t dl = j - i;
		while (dl && isspace((unsigned char)*d))
			d++, dl--;
		const char *colon = memchr(d, ':', dl);
		if (colon) {
			size_t kl = (size_t)(colon - d);
			while (kl && isspace((unsigned char)d[kl - 1]))
				kl--;
			const char *val = colon + 1;
			size_t vl = dl - (size_t)(val - d);
			/* strip "!important" */
			for (size_t q = 0; q + 1 < vl; q++)
				if (val[q] == '!') {
					vl = q;
					break;
				}
			char out[8];
			if (kl == 5 && strncasecmp(d, "color", 5) == 0) {
				int k = style_color(val, vl, out);
				if (k == 0)
					memcpy(ns->fg, out, 8);
				fg_transparent = k == 2 ? true : k == 0 ? false : fg_transparent;
			} else if (kl == 16 && strncasecmp(d, "background-color", 16) == 0) {
				int k = style_color(val, vl, out);
				if (k == 0)
					memcpy(ns->bg, out, 8);
				else if (k == 2)
					memcpy(ns->bg, parent_bg, 8);
			} else if (kl == 10 && strncasecmp(d, "background", 10) == 0) {
				/* the first token that is a colour */
				size_t q = 0;
				while (q < vl) {
					while (q < vl && isspace((unsigned char)val[q]))
						q++;
					size_t s2 = q;
					while (q < vl && !isspace((unsigned char)val[q]))
						q++;
					if (q > s2) {
						name_to_rgb(val + s2, q - s2, out);
						if (strcmp(out, "invalid") != 0) {
							memcpy(ns->bg, out, 8);
							break;
						}
					}
				}
			}
		}
		i = j + 1;
	}
	if (fg_transparent) /* the text in its background's colour */
		memcpy(ns->fg, ns->bg, 8);
}

/* A colour's red, green and blue as sscanf's "#%02x%02x%02x" reads them:
 * name_to_rgb's "#rrggbb" without a call, anything else with one. */
static bool rgb_of(const char *c, unsigned v[3])
{
	bool hex = c[0] == '#' && strlen(c) == 7;
	for (int k = 1; k < 7 && hex; k++)
		hex = isxdigit((unsigned char)c[k]);
	if (hex) {
		for (int k = 0; k < 3; k++) {
			unsigned hi = (unsigned char)c[1 + 2 * k], lo = (unsigned char)c[2 + 2 * k];
			hi = isdigit(hi) ? hi - '0' : (hi | 0x20) - 'a' + 10;
			lo = isdigit(lo) ? lo - '0' : (lo | 0x20) - 'a' + 10;
			v[k] = hi << 4 | lo;
		}
		return true;
	}
	return sscanf(c, "#%02x%02x%02x", &v[0], &v[1], &v[2]) == 3;
}

static bool low_contrast(const char *fg, const char *bg)
{
	size_t fl = strlen(fg), bl = strlen(bg);
	if (strcmp(fg + (fl > 6 ? fl - 6 : 0), bg + (bl > 6 ? bl - 6 : 0)) == 0)
		return true;
	unsigned f[3], k[3];
	if (!rgb_of(fg, f) || !rgb_of(bg, k))
		return false;
	double r = (double)f[0] - k[0], g = (double)f[1] - k[1], b = (double)f[2] - k[2];
	double dist =
		sqrt((0.2126 * r) * (0.2126 * r) + (0.7152 * g) * (0.7152 * g) + (0.0722 * b) * (0.0722 * b));
	return dist < 12;
}

/* A tag name cut to the 15 octets the style stack and the tag counts
 * keep (sift_html_tag's name), NUL-terminated. */
static void tag_key(char key[16], const char *name)
{
	size_t n = strnlen(name, 15);
	memcpy(key, name, n);
	key[n] = 0;
}

/* ---- the pass ---------------------------------------------------------------- */

#define TAGNAME_SLOTS 128
_Static_assert(SIFT_HTML_MAX_TAGNAMES < TAGNAME_SLOTS && SIFT_HTML_MAX_TAGNAMES < 256,
	       "tag name slots: some empty, an index in an octet");

struct hs {
	const char *t;
	size_t n;
	struct sift_buf *text;
	struct sift_html_scan *r;
	struct sift_buf attr, run;
	struct sift_buf base, target; /* the <base href> in force ("" none), a link resolved */
	bool in_title, in_a;
	bool after_ws;	  /* the rendering ends with inserted white space */
	bool ends_word;	  /* the last text rendered ends with a word character (ob_word) */
	size_t chunk_at;  /* else with the text run that starts here */
	bool in_anchor;	  /* r->anchors holds an open anchor's text */
	size_t anchor_at; /* where that text starts in r->anchors */
	struct tstyle stack[64];
	int sp;
	/* r->stats.tagnames by name: index + 1 at the name's tag_hash, 0 empty
	 * (at most SIFT_HTML_MAX_TAGNAMES of TAGNAME_SLOTS used) */
	unsigned char tagname_at[TAGNAME_SLOTS];
	sift_html_link_fn link;
	void *arg;
};

/* Adds s[0..n) to the text of the anchor being recorded, up to
 * SIFT_HTML_MAX_ANCHOR_TEXT octets (cut at a character boundary; a NUL
 * octet as a space: the list is NUL-separated). */
static void anchor_text(struct hs *h, const char *s, size_t n)
{
	if (!h->in_anchor)
		return;
	struct sift_buf *b = &h->r->anchors;
	size_t used = b->len - h->anchor_at;
	if (used >= SIFT_HTML_MAX_ANCHOR_TEXT)
		return;
	if (n > SIFT_HTML_MAX_ANCHOR_TEXT - used) {
		n = SIFT_HTML_MAX_ANCHOR_TEXT - used;
		while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	size_t at = b->len;
	sift_buf_add(b, s, n);
	for (char *p = memchr(b->data + at, 0, n); p; p = memchr(p, 0, (size_t)(b->data + b->len - p)))
		*p = ' ';
}

/* Closes the anchor being recorded, if any. */
static void anchor_end(struct hs *h)
{
	if (h->in_anchor)
		sift_buf_add(&h->r->anchors, "", 1);
	h->in_anchor = false;
}

static bool attr(struct hs *h, size_t as, size_t ae, const char *name);

static bool href_space(const char *s, size_t n)
{
	return n && (isspace((unsigned char)s[0]) ||
		     (n >= 2 && (unsigned char)s[0] == 0xC2 && (unsigned char)s[1] == 0xA0));
}

/* canon_uri: white space and no-break spaces trimmed at both ends. */
static void trim_uri(const char **vp, size_t *np)
{
	const char *v = *vp;
	size_t n = *np;
	while (href_space(v, n)) {
		size_t k = isspace((unsigned char)v[0]) ? 1 : 2;
		v += k, n -= k;
	}
	for (;;) {
		if (n && isspace((unsigned char)v[n - 1]))
			n--;
		else if (n >= 2 && (unsigned char)v[n - 2] == 0xC2 && (unsigned char)v[n - 1] == 0xA0)
			n -= 2;
		else
			break;
	}
	*vp = v, *np = n;
}

/* An <a> whose attributes are t[as..ae): with an href, an anchor to record
 * (the first SIFT_HTML_MAX_ANCHORS), its href trimmed as SpamAssassin's
 * canon_uri does (white space and no-break spaces at both ends). */
static void anchor_begin(struct hs *h, size_t as, size_t ae)
{
	struct sift_html *st = &h->r->stats;
	if (st->nanchors >= SIFT_HTML_MAX_ANCHORS || !attr(h, as, ae, "href"))
		return;
	const char *v = h->attr.data;
	size_t n = strlen(v);
	trim_uri(&v, &n);
	if (!n)
		return;
	sift_buf_add(&h->r->anchors, v, n);
	sift_buf_add(&h->r->anchors, "", 1);
	h->anchor_at = h->r->anchors.len;
	h->in_anchor = true;
	st->nanchors++;
}

/* Text as SpamAssassin's display_text renders it: each run of white space
 * and each no-break space as one space, the leading space dropped right
 * after inserted white space. */
static void render_text(struct hs *h, const char *s, size_t n)
{
	/* 1: the white space display_text collapses (space, \t, \n, \v,
	 * \f, \r), 2: may start a no-break space */
	static const unsigned char cls[256] = {
		['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1, [0xc2] = 2};
	struct sift_buf *o = h->text;
	h->chunk_at = o->len;
	bool lead = h->after_ws; /* drop the leading space */
	h->after_ws = false;
	const unsigned char *u = (const unsigned char *)s;
	/* at most one octet out for each in: written in place */
	unsigned char *w0 = (unsigned char *)sift_buf_space(o, n), *w = w0;
	for (size_t k = 0; k < n;) {
		unsigned char c = u[k];
		if (cls[c] == 1) {
			while (k < n && cls[u[k]] == 1)
				k++;
		} else if (c == 0xc2 && k + 1 < n && u[k + 1] == 0xa0) {
			k += 2;
		} else {
			do
				*w++ = u[k++];
			while (k < n && !cls[u[k]]);
			lead = false;
			continue;
		}
		if (!lead)
			*w++ = ' ';
		lead = false;
	}
	o->len += (size_t)(w - w0);
	o->data[o->len] = 0;
}

/* White space a tag inserts: a space that ends the text run before it is
 * dropped (SpamAssassin's display_text with whitespace => 1). */
static void render_ws(struct hs *h, const char *ws)
{
	struct sift_buf *o = h->text;
	if (!h->after_ws && o->len > h->chunk_at && o->data[o->len - 1] == ' ')
		o->len--;
	sift_buf_adds(o, ws);
	h->after_ws = true;
	h->ends_word = false;
}

/* Whether the character at s[0..n) (UTF-8) is one HTML.pm's obfuscation
 * test counts: not white space as Perl's \s matches it in a character
 * string, nor ASCII punctuation ([^\s\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]).
 * ASCII letters and digits, control characters but white space, and any
 * other character of U+0080 and above are; but a curly double quote
 * (U+201C, U+201D) of the source, not from an entity (lit), which HTML.pm
 * turns into '"' before parsing. */
static bool ob_word(const unsigned char *s, size_t n, bool lit)
{
	static const unsigned char ascii_word[128] = {[0x00 ... 0x08] = 1, [0x0e ... 0x1f] = 1,
						      ['0' ... '9'] = 1,   ['A' ... 'Z'] = 1,
						      ['a' ... 'z'] = 1,   [0x7f] = 1};
	if (s[0] < 0x80)
		return ascii_word[s[0]];
	size_t l = sift_utf8_seq(s, n);
	unsigned long cp = 0;
	if (l == 2)
		cp = (s[0] & 0x1fUL) << 6 | (s[1] & 0x3fUL);
	else if (l == 3)
		cp = (s[0] & 0x0fUL) << 12 | (s[1] & 0x3fUL) << 6 | (s[2] & 0x3fUL);
	if (lit && (cp == 0x201c || cp == 0x201d))
		return false;
	return !(cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
		 cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000);
}

/* HTML.pm's obfuscation: a text event that starts with a word character
 * (ob_word) right after rendered text that ends with one, with no tag
 * that inserts white space between them (<b>, <span>, a comment may be
 * there: "v<b></b>iagra"). Text in <script> and <style> is not rendered
 * and does not count; text in <title> does. s[0..n) is the text decoded,
 * which starts (ent_first), ends (ent_last) with an entity or not. */
static void count_obfuscation(struct hs *h, const char *s, size_t n, bool ent_first, bool ent_last)
{
	if (!n)
		return; /* HTML::Parser reports no empty text */
	const unsigned char *u = (const unsigned char *)s;
	if (h->ends_word && ob_word(u, n, !ent_first))
		h->r->stats.obfuscation++;
	size_t k = n - 1;
	while (k > 0 && n - k < 4 && (u[k] & 0xc0) == 0x80)
		k--;
	h->ends_word = ob_word(u + k, n - k, !ent_last);
}

/* Text t[i..j) between tags: rendered (entities decoded) into the title,
 * or the text and the anchor; checked for visible low-contrast text and
 * for visible text in an invalid colour. */
static void text_run_as(struct hs *h, size_t i, size_t j, bool decode);

static void text_run(struct hs *h, size_t i, size_t j)
{
	text_run_as(h, i, j, true);
}

/* The same, entities decoded or not. */
static void text_run_as(struct hs *h, size_t i, size_t j, bool decode)
{
	const char *t = h->t;
	struct sift_html *st = &h->r->stats;
	h->run.len = 0;
	/* whether the text starts, ends with an entity decoded; whether it
	 * has more than white space (HTML.pm's test before
	 * html_font_invisible: "&nbsp;" is a space by then, but any other
	 * U+00A0 counts, a reference or in the source: its /\xc2\xa0/ never
	 * matches the characters SpamAssassin 4 parses) */
	bool ent_first = false, ent_last = false, visible = false;
	for (size_t k = i; k < j;) {
		if (t[k] == '&' && j - k >= 6 && memcmp(t + k, "&nbsp;", 6) == 0) {
			/* SpamAssassin turns each "&nbsp;" of the source into a
			 * plain space before parsing: a run of them is one space */
			sift_buf_add(&h->run, " ", 1);
			k += 6;
			ent_last = false;
			continue;
		}
		if (t[k] == '&' && decode) {
			size_t at = h->run.len, e = sift_html_entity(t + k, j - k, &h->run);
			if (e) {
				for (size_t q = at; q < h->run.len && !visible; q++)
					visible = !isspace((unsigned char)h->run.data[q]);
				k += e;
				ent_first = ent_first || !at;
				ent_last = true;
				continue;
			}
		}
		const char *amp = memchr(t + k + 1, '&', j - k - 1);
		size_t e = amp ? (size_t)(amp - t) : j;
		for (size_t q = k; q < e && !visible; q++)
			visible = !isspace((unsigned char)t[q]);
		sift_buf_add(&h->run, t + k, e - k);
		k = e;
		ent_last = false;
	}
	if (!st->low_contrast || !st->font_invalid_color) {
		/* html_font_invisible: low contrast, else a colour that is
		 * "invalid" (name_to_rgb) */
		const char *fg = h->stack[h->sp - 1].fg, *bg = h->stack[h->sp - 1].bg;
		if (visible && low_contrast(fg, bg))
			st->low_contrast = 1;
		else if (visible && (strcmp(fg, "invalid") == 0 || strcmp(bg, "invalid") == 0))
			st->font_invalid_color = 1;
	}
	if (h->in_title)
		sift_buf_add(&h->r->title, h->run.data, h->run.len);
	count_obfuscation(h, h->run.data, h->run.len, ent_first, ent_last);
	render_text(h, h->run.data, h->run.len);
	if (h->in_title)
		return;
	if (h->in_a)
		sift_buf_add(&h->r->anchor, h->run.data, h->run.len);
	anchor_text(h, h->run.data, h->run.len);
}

/* The comment t[i..end) kept in the comments. */
static void keep_comment(struct hs *h, size_t i, size_t end)
{
	if (h->r->comments.len < 65536)
		sift_buf_add(&h->r->comments, h->t + i, end - i);
	sift_buf_add(&h->r->comments, "\n", 1);
}

/* HTML::Parser's declaration at i ("<!DOCTYPE ...>", "<!ENTITY ...>", the
 * name in any case, then white space or '>'): its end in *end, 0 when t[i]
 * starts none and is a comment. After the name: quoted literals,
 * "--...--" comments and other words up to a '>' outside them. A word
 * starting with a lone '-' makes it a comment (0), and a quote or a
 * comment that does not close a comment that runs to the end (-1). A
 * DOCTYPE is 1, an ENTITY 2. */
static int declaration(const char *t, size_t n, size_t i, size_t *end)
{
	size_t j = i + 2, k = j;
	while (k < n &&
	       (isalnum((unsigned char)t[k]) || t[k] == '.' || t[k] == '-' || t[k] == '_' || t[k] == ':'))
		k++;
	int kind = k - j == 7 && strncasecmp(t + j, "doctype", 7) == 0	? 1
		   : k - j == 6 && strncasecmp(t + j, "entity", 6) == 0 ? 2
									: 0;
	if (!kind || k >= n || !(isspace((unsigned char)t[k]) || t[k] == '>'))
		return 0;
	for (j = k; j < n;) {
		if (isspace((unsigned char)t[j])) {
			j++;
		} else if (t[j] == '>') {
			*end = j + 1;
			return kind;
		} else if (t[j] == '"' || t[j] == '\'') {
			const char *q = memchr(t + j + 1, t[j], n - j - 1);
			if (!q)
				return -1;
			j = (size_t)(q - t) + 1;
		} else if (t[j] == '-') {
			if (j + 1 >= n || t[j + 1] != '-')
				return 0;
			const char *c = find_ci(t + j + 2, n - j - 2, "--");
			if (!c)
				return -1;
			j = (size_t)(c - t) + 2;
		} else {
			while (j < n && !isspace((unsigned char)t[j]) && t[j] != '>' && t[j] != '"' &&
			       t[j] != '\'')
				j++;
		}
	}
	return -1;
}

/* "<!--...-->" or "<!...>" at i, kept in the comments, a declaration
 * (a DOCTYPE counts as a tag, as HTML.pm's html_declaration has it), or a
 * CDATA section, rendered; returns the end. */
static size_t comment(struct hs *h, size_t i)
{
	const char *t = h->t;
	size_t n = h->n, end = n;
	int decl = declaration(t, n, i, &end);
	if (decl > 0) {
		if (decl == 1)
			h->r->stats.tags++;
		return end;
	}
	end = n;
	if (decl < 0) {
		keep_comment(h, i, n);
		return n;
	}
	if (n - i >= 3 && t[i + 2] == '[') {
		/* "<![CDATA[...]]>": its content is text, not decoded (a
		 * marked section, as HTML::Parser reads it for SpamAssassin) */
		size_t c = i + 3;
		while (c < n && isspace((unsigned char)t[c]))
			c++;
		if (n - c >= 5 && strncasecmp(t + c, "cdata", 5) == 0) {
			c += 5;
			while (c < n && isspace((unsigned char)t[c]))
				c++;
			if (c < n && t[c] == '[') {
				const char *e = find_ci(t + c + 1, n - c - 1, "]]>");
				size_t ce = e ? (size_t)(e - t) : n;
				text_run_as(h, c + 1, ce, false);
				return e ? ce + 3 : n;
			}
		}
	}
	if (n - i >= 4 && t[i + 2] == '-' && t[i + 3] == '-') {
		const char *e = find_ci(t + i + 4, n - i - 4, "-->");
		end = e ? (size_t)(e - t) + 3 : n;
	} else {
		const char *gt = memchr(t + i, '>', n - i);
		end = gt ? (size_t)(gt - t) + 1 : n;
	}
	keep_comment(h, i, end);
	return end;
}

/* Attribute `name` of the tag whose attributes are t[as..ae) into h->attr
 * (NUL-terminated), its line breaks left out; false when absent. */
static bool attr(struct hs *h, size_t as, size_t ae, const char *name)
{
	h->attr.len = 0;
	bool found = html_attr(h->t + as, h->t + ae, name, &h->attr, false);
	sift_buf_str(&h->attr);
	return found;
}

/* The same with its line breaks, as HTML::Parser gives the value. */
static bool attr_lines(struct hs *h, size_t as, size_t ae, const char *name)
{
	h->attr.len = 0;
	bool found = html_attr(h->t + as, h->t + ae, name, &h->attr, true);
	sift_buf_str(&h->attr);
	return found;
}

/* SpamAssassin's text_style: the colours in force, a stack of the tags
 * that may set them. */
static void text_style(struct hs *h, const struct tagslot *ti, const char *key, bool closing, size_t as,
		       size_t ae)
{
	if (!ti || !ti->style)
		return;
	const char *sname = same(key, "th") ? "td" : key;
	if (closing) {
		if (!same(sname, "body"))
			for (int k = h->sp - 1; k > 0; k--)
				if (same(h->stack[k].tag, sname)) {
					h->sp = k;
					break;
				}
		return;
	}
	if (same(sname, "td") || same(sname, "tr")) {
		/* close the previous cell/row of this table */
		for (int k = h->sp - 1; k > 0; k--) {
			if (same(h->stack[k].tag, "table"))
				break;
			if (same(h->stack[k].tag, sname) ||
			    (same(sname, "tr") && same(h->stack[k].tag, "td"))) {
				h->sp = k;
				break;
			}
		}
	}
	if (h->sp >= 64)
		return;
	struct tstyle nst = h->stack[h->sp - 1];
	memcpy(nst.tag, sname, strlen(sname) + 1);
	if (same(sname, "font") && attr(h, as, ae, "color"))
		name_to_rgb(h->attr.data, h->attr.len, nst.fg);
	if (same(sname, "body") && attr(h, as, ae, "text"))
		name_to_rgb(h->attr.data, h->attr.len, nst.fg);
	if (!same(sname, "font") && !same(sname, "body") && !same(sname, "big") && !same(sname, "small") &&
	    !same(sname, "marquee") && attr(h, as, ae, "style")) {
		style_apply(&nst, h->attr.data, h->attr.len, h->stack[h->sp - 1].bg);
	}
	h->stack[h->sp++] = nst;
}

/* The slot of tag name key in h->tagname_at: its own, or the empty one
 * where it goes. */
static unsigned tagname_slot(const struct hs *h, const char *key)
{
	unsigned j = tag_hash(key) & (TAGNAME_SLOTS - 1);
	while (h->tagname_at[j] && !same(h->r->stats.tagnames[h->tagname_at[j] - 1].name, key))
		j = (j + 1) & (TAGNAME_SLOTS - 1);
	return j;
}

/* Tag counts per name, unknown names, closing tags in excess. */
static void count_tag(struct hs *h, const struct tagslot *ti, const char *key, bool closing)
{
	struct sift_html *st = &h->r->stats;
	st->tags++;
	if (!ti || !ti->known)
		st->bad_tags++;
	struct sift_html_tag *tg = NULL;
	unsigned j = tagname_slot(h, key);
	if (h->tagname_at[j])
		tg = &st->tagnames[h->tagname_at[j] - 1];
	else if (st->ntagnames < SIFT_HTML_MAX_TAGNAMES) {
		tg = &st->tagnames[st->ntagnames++];
		memcpy(tg->name, key, strlen(key) + 1);
		h->tagname_at[j] = (unsigned char)st->ntagnames;
	}
	if (!tg)
		return;
	/* SpamAssassin's inside{name}: a closing tag with none open is one
	 * in excess, and leaves the count at 0 */
	unsigned *inside = &st->tag_inside[tg - st->tagnames];
	if (!closing) {
		tg->open++;
		++*inside;
	} else {
		tg->close++;
		if (*inside)
			--*inside;
		else
			st->closed_extra++;
	}
}

/* ---- relative links ------------------------------------------------------- */

/* A URI's parts as SpamAssassin's _parse_uri splits it (RFC 2396's
 * regular expression): each part present or not. */
struct uparts {
	const char *p[5]; /* scheme, authority, path, query, fragment */
	size_t n[5];
	bool has[5];
};
enum { U_SCHEME, U_AUTH, U_PATH, U_QUERY, U_FRAG };

static void uri_split(const char *u, size_t n, struct uparts *x)
{
	memset(x, 0, sizeof(*x));
	size_t i = 0, k = 0;
	while (k < n && !strchr(":/?#", u[k]))
		k++;
	if (k > 0 && k < n && u[k] == ':') {
		x->has[U_SCHEME] = true, x->p[U_SCHEME] = u, x->n[U_SCHEME] = k;
		i = k + 1;
	}
	if (n - i >= 2 && u[i] == '/' && u[i + 1] == '/') {
		i += 2;
		k = i;
		while (k < n && !strchr("/?#", u[k]))
			k++;
		x->has[U_AUTH] = true, x->p[U_AUTH] = u + i, x->n[U_AUTH] = k - i;
		i = k;
	}
	k = i;
	while (k < n && u[k] != '?' && u[k] != '#')
		k++;
	x->has[U_PATH] = true, x->p[U_PATH] = u + i, x->n[U_PATH] = k - i;
	i = k;
	if (i < n && u[i] == '?') {
		k = ++i;
		while (k < n && u[k] != '#')
			k++;
		x->has[U_QUERY] = true, x->p[U_QUERY] = u + i, x->n[U_QUERY] = k - i;
		i = k;
	}
	if (i < n && u[i] == '#')
		x->has[U_FRAG] = true, x->p[U_FRAG] = u + i + 1, x->n[U_FRAG] = n - i - 1;
}

/* RFC 2396bis 5.2.4 as SpamAssassin's _remove_dot_segments: the path
 * in[0..n) without its "." and ".." segments, appended to o. */
static void remove_dots(struct sift_buf *o, const char *in, size_t n)
{
	size_t o0 = o->len;
	if (n == 1 && in[0] == '0') /* Perl's false "0": SpamAssassin ends there */
		return;
	if (n >= 2 && in[0] == '.' && in[1] == '/') /* "./" becomes "/" */
		in += 1, n -= 1;
	else if (n >= 3 && in[0] == '.' && in[1] == '.' && in[2] == '/')
		in += 2, n -= 2;
	while (n) {
		if (n >= 2 && in[0] == '/' && in[1] == '.' && (n == 2 || in[2] == '/')) {
			/* "/." or "/./": "/" */
			if (n == 2) {
				in = "/", n = 1;
			} else
				in += 2, n -= 2;
		} else if (n >= 3 && in[0] == '/' && in[1] == '.' && in[2] == '.' &&
			   (n == 3 || in[3] == '/')) {
			/* "/.." or "/../": "/" and the last segment dropped */
			if (n == 3)
				in = "/", n = 1;
			else
				in += 3, n -= 3;
			size_t e = o->len;
			while (e > o0 && o->data[e - 1] != '/')
				e--;
			if (e > o0) /* and the '/' before it */
				e--;
			o->len = e;
		} else {
			size_t k = in[0] == '/' ? 1 : 0;
			while (k < n && in[k] != '/')
				k++;
			sift_buf_add(o, in, k);
			in += k, n -= k;
		}
	}
}

/* SpamAssassin's target_uri(): r[0..n) resolved against the base URI
 * (RFC 2396's steps, the scheme of a relative URI equal to the base's
 * dropped), into o. */
static void target_uri(struct sift_buf *o, const char *base, size_t bn, const char *r, size_t rn)
{
	struct uparts b, x, t;
	uri_split(base, bn, &b);
	uri_split(r, rn, &x);
	if (x.has[U_SCHEME] && b.has[U_SCHEME] && x.n[U_SCHEME] == b.n[U_SCHEME] &&
	    memcmp(x.p[U_SCHEME], b.p[U_SCHEME], x.n[U_SCHEME]) == 0)
		x.has[U_SCHEME] = false;
	struct sift_buf path = {0};
	memset(&t, 0, sizeof(t));
	if (x.has[U_SCHEME] || x.has[U_AUTH]) {
		for (int k = U_SCHEME; k <= U_AUTH; k++)
			t.has[k] = x.has[k], t.p[k] = x.p[k], t.n[k] = x.n[k];
		if (!x.has[U_SCHEME])
			t.has[U_SCHEME] = b.has[U_SCHEME], t.p[U_SCHEME] = b.p[U_SCHEME],
			t.n[U_SCHEME] = b.n[U_SCHEME];
		remove_dots(&path, x.p[U_PATH], x.n[U_PATH]);
		t.has[U_QUERY] = x.has[U_QUERY], t.p[U_QUERY] = x.p[U_QUERY], t.n[U_QUERY] = x.n[U_QUERY];
	} else {
		if (x.n[U_PATH] == 0) {
			sift_buf_add(&path, b.p[U_PATH], b.n[U_PATH]);
			struct uparts *q = x.has[U_QUERY] ? &x : &b;
			t.has[U_QUERY] = q->has[U_QUERY], t.p[U_QUERY] = q->p[U_QUERY],
			t.n[U_QUERY] = q->n[U_QUERY];
		} else {
			if (x.p[U_PATH][0] == '/')
				remove_dots(&path, x.p[U_PATH], x.n[U_PATH]);
			else {
				/* merged with the base's path: up to its last '/',
				 * or "/" when the base has an authority and no path */
				struct sift_buf m = {0};
				if (b.has[U_AUTH] && b.n[U_PATH] == 0)
					sift_buf_add(&m, "/", 1);
				else {
					size_t e = b.n[U_PATH];
					while (e && b.p[U_PATH][e - 1] != '/')
						e--;
					sift_buf_add(&m, b.p[U_PATH], e);
				}
				sift_buf_add(&m, x.p[U_PATH], x.n[U_PATH]);
				remove_dots(&path, m.data, m.len);
				sift_buf_free(&m);
			}
			t.has[U_QUERY] = x.has[U_QUERY], t.p[U_QUERY] = x.p[U_QUERY],
			t.n[U_QUERY] = x.n[U_QUERY];
		}
		t.has[U_AUTH] = b.has[U_AUTH], t.p[U_AUTH] = b.p[U_AUTH], t.n[U_AUTH] = b.n[U_AUTH];
		t.has[U_SCHEME] = b.has[U_SCHEME], t.p[U_SCHEME] = b.p[U_SCHEME],
		t.n[U_SCHEME] = b.n[U_SCHEME];
	}
	if (t.has[U_SCHEME] && t.n[U_SCHEME]) {
		sift_buf_add(o, t.p[U_SCHEME], t.n[U_SCHEME]);
		sift_buf_add(o, ":", 1);
	} else if (t.has[U_AUTH]) {
		/* unschemed: http: for www., ftp: for ftp. (not the RFC's) */
		const char *a = t.p[U_AUTH];
		size_t an = t.n[U_AUTH], d = 3;
		for (int s = 0; s < 2; s++) {
			const char *w = s ? "ftp" : "www";
			if (an >= 4 && strncasecmp(a, w, 3) == 0) {
				d = 3;
				while (d < an && isdigit((unsigned char)a[d]))
					d++;
				if (d < an && a[d] == '.') {
					sift_buf_adds(o, s ? "ftp:" : "http:");
					break;
				}
			}
		}
	}
	if (t.has[U_AUTH]) {
		sift_buf_add(o, "//", 2);
		sift_buf_add(o, t.p[U_AUTH], t.n[U_AUTH]);
	}
	sift_buf_add(o, path.data ? path.data : "", path.len);
	if (t.has[U_QUERY]) {
		sift_buf_add(o, "?", 1);
		sift_buf_add(o, t.p[U_QUERY], t.n[U_QUERY]);
	}
	if (x.has[U_FRAG]) {
		sift_buf_add(o, "#", 1);
		sift_buf_add(o, x.p[U_FRAG], x.n[U_FRAG]);
	}
	sift_buf_free(&path);
}

/* The link of an attribute value as SpamAssassin lists it: trimmed, then
 * resolved against the <base href> in force, if any (but data:, mailto:,
 * file:, cid: and tel:; without a base only the "." and ".." segments of
 * its path go); *out and *len_r point to it. */
static void link_of(struct hs *h, const char *v, size_t n, const char **out, size_t *len_r)
{
	trim_uri(&v, &n);
	*out = v, *len_r = n;
	static const char *const keep[] = {"data:", "mailto:", "file:", "cid:", "tel:"};
	for (size_t k = 0; k < sizeof(keep) / sizeof(keep[0]); k++)
		if (n >= strlen(keep[k]) && strncasecmp(v, keep[k], strlen(keep[k])) == 0)
			return;
	h->target.len = 0;
	target_uri(&h->target, h->base.data ? h->base.data : "", h->base.len, v, n);
	*out = h->target.data ? h->target.data : "", *len_r = h->target.len;
}

/* <base href>: an absolute http, https or ftp URI is the base of the links
 * after it, without its file name ("http://a.example/d/index.html" is
 * "http://a.example/d/"), ending in '/' (SpamAssassin's html_uri). */
static void set_base(struct hs *h, const char *v, size_t n)
{
	size_t i = 0;
	while (i < n && isalpha((unsigned char)v[i]))
		i++;
	size_t sl = i;
	if (!((sl == 4 && strncasecmp(v, "http", 4) == 0) || (sl == 5 && strncasecmp(v, "https", 5) == 0) ||
	      (sl == 3 && strncasecmp(v, "ftp", 3) == 0)) ||
	    i >= n || v[i] != ':')
		return;
	/* the file name: "[a-z]+:/{0,2}[^/]+/" then "name.ext" at the end,
	 * ext 2 to 4 characters, neither with '/' or '.' */
	size_t k = i + 1, end = n;
	for (int s = 0; s < 2 && k < n && v[k] == '/'; s++)
		k++;
	size_t hs0 = k;
	while (k < n && v[k] != '/')
		k++;
	if (k > hs0 && k < n) {
		size_t rest = k + 1, dot = n;
		while (dot > rest && v[dot - 1] != '.' && v[dot - 1] != '/')
			dot--;
		if (dot > rest && v[dot - 1] == '.' && n - dot >= 2 && n - dot <= 4) {
			size_t f = dot - 1;
			while (f > rest && v[f - 1] != '/' && v[f - 1] != '.')
				f--;
			if (f < dot - 1)
				end = f;
		}
	}
	h->base.len = 0;
	sift_buf_add(&h->base, v, end);
	if (v[end - 1] != '/')
		sift_buf_add(&h->base, "/", 1);
}

/* Links in the tag's attributes; images and their area; font sizes and
 * forms posting to mailto:. */
/* HTML.pm's font_face_bad: a face that is not
 * /^\s*["'.]?[a-z ][a-z -]*[a-z]\d?["']?(?:,\s*["']?[a-z][a-z -]*[a-z]\d?["']?)*;?$/i,
 * a list of font names. Each name is a maximal run of letters, spaces and
 * hyphens (what may follow it, a digit, a quote, ',' or ';', is none of
 * those), so the regex needs no backtracking: the run must be two octets
 * or more and end with a letter. */
static bool face_bad(const char *v, size_t n)
{
	const char *p = v, *e = v + n;
	while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
		p++;
	if (p < e && (*p == '"' || *p == '\'' || *p == '.'))
		p++;
	for (bool first = true;; first = false) {
		if (p == e || !(isalpha((unsigned char)*p) || (first && *p == ' ')))
			return true;
		const char *q = p;
		while (q < e && (isalpha((unsigned char)*q) || *q == ' ' || *q == '-'))
			q++;
		if (q - p < 2 || !isalpha((unsigned char)q[-1]))
			return true;
		p = q;
		if (p < e && isdigit((unsigned char)*p))
			p++;
		if (p < e && (*p == '"' || *p == '\''))
			p++;
		if (p == e || *p != ',')
			break;
		p++;
		while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
			p++;
		if (p < e && (*p == '"' || *p == '\''))
			p++;
	}
	if (p < e && *p == ';')
		p++;
	return !(p == e || (p + 1 == e && *p == '\n'));
}

static void tag_attributes(struct hs *h, const char *name, size_t as, size_t ae)
{
	static const struct {
		const char *tag, *attr;
	} links[] = {{"a", "href"},	   {"area", "href"},	   {"link", "href"},
		     {"base", "href"},	   {"img", "src"},	   {"frame", "src"},
		     {"iframe", "src"},	   {"embed", "src"},	   {"script", "src"},
		     {"form", "action"},   {"body", "background"}, {"table", "background"},
		     {"td", "background"}, {"input", "src"},	   {"img", "lowsrc"}};
	struct sift_html *st = &h->r->stats;
	for (size_t k = 0; k < sizeof(links) / sizeof(links[0]); k++) {
		if (!same(links[k].tag, name) || !attr(h, as, ae, links[k].attr) || !h->attr.len)
			continue;
		if (name[0] == 'a' && name[1] == 0)
			st->links++;
		const char *u;
		size_t ul;
		link_of(h, h->attr.data, h->attr.len, &u, &ul);
		if (h->link && ul)
			h->link(h->arg, u, ul);
		/* an anchor's href is listed as written too (SpamAssassin keys
		 * its anchor text by it) */
		const char *raw = h->attr.data;
		size_t rl = h->attr.len;
		trim_uri(&raw, &rl);
		if (h->link && rl && name[0] == 'a' && name[1] == 0 && (rl != ul || memcmp(raw, u, ul) != 0))
			h->link(h->arg, raw, rl);
		if (same(name, "base"))
			set_base(h, raw, rl);
		if (same(name, "form") && find_ci(h->attr.data, h->attr.len, "mailto:"))
			st->form_mailto = 1;
		if (same(name, "iframe")) {
			bool blank = true;
			for (size_t c = 0; c < h->attr.len && blank; c++)
				blank = isspace((unsigned char)h->attr.data[c]);
			if (!blank)
				st->iframes++;
		}
	}
	if (same(name, "img")) {
		st->images++;
		if (h->in_a)
			sift_buf_adds(&h->r->anchor, "<img>");
		anchor_text(h, "<img>", 5);
		/* HTML.pm: only an <img> with both a width and a height;
		 * each /^(\d+)(%)?$/ (a percentage of an 800x600 screen),
		 * 200 when it is not that or 0 */
		if (attr(h, as, ae, "width")) {
			unsigned long w = img_dim(h->attr.data, h->attr.len, 8);
			if (attr(h, as, ae, "height")) {
				unsigned long ht = img_dim(h->attr.data, h->attr.len, 6);
				st->image_area += w * ht;
			}
		}
	} else if (same(name, "font") && attr(h, as, ae, "size")) {
		const char *sz = h->attr.data;
		/* bounded: "+2147483647" is a large size, not an overflow */
		long n = strtol(*sz == '+' || *sz == '-' ? sz + 1 : sz, NULL, 10);
		if (n > 10000)
			n = 10000;
		if (n < -10000)
			n = -10000;
		int v = *sz == '+' ? 3 + (int)n : *sz == '-' ? 3 - (int)n : (int)n;
		if (v > st->max_font_size)
			st->max_font_size = v;
	}
	if (same(name, "font") && attr_lines(h, as, ae, "face") && face_bad(h->attr.data, h->attr.len))
		st->font_face_bad = 1;
	if (same(name, "object") || same(name, "embed"))
		st->embeds = 1;
}

/* Where the tag whose name ends at j ends (its '>', or n), quotes after
 * '=' honoured. */
static size_t tag_end(const struct hs *h, size_t j)
{
	const char *t = h->t;
	size_t n = h->n, as = j;
	char q = 0;
	for (; j < n; j++) {
		if (q) {
			if (t[j] == q)
				q = 0;
		} else if (t[j] == '"' || t[j] == '\'') {
			/* a value's quote: after '=', white space allowed
			 * between them (href= "..."), as html_attr reads it */
			size_t b = j;
			while (b > as && isspace((unsigned char)t[b - 1]))
				b--;
			if (b > as && t[b - 1] == '=')
				q = t[j];
		} else if (t[j] == '>')
			break;
	}
	if (j >= n && q) { /* unclosed quote: end at the first '>' */
		const char *gt = memchr(t + as, '>', n - as);
		j = gt ? (size_t)(gt - t) : n;
	}
	return j;
}

/* Where the content of the element `name` that starts at k ends: at its
 * closing tag, not one whose name only starts with it ("</scriptx>" is
 * script text, as for browsers and HTML::Parser), or at the end. */
static size_t literal_end(const struct hs *h, size_t k, const char *name)
{
	const char *t = h->t;
	size_t n = h->n;
	char endtag[16];
	int el = snprintf(endtag, sizeof(endtag), "</%.10s", name);
	while (k < n) {
		const char *e = find_ci(t + k, n - k, endtag);
		if (!e)
			break;
		size_t after = (size_t)(e - t) + (size_t)el;
		if (after >= n || !(isalnum((unsigned char)t[after]) || t[after] == ':' || t[after] == '-'))
			return (size_t)(e - t);
		k = after;
	}
	return n;
}

/* The elements whose content HTML::Parser reads as text, not tags (but
 * script and style, whose text is not rendered, and title). */
static bool literal_text(const char *name)
{
	return same(name, "textarea") || same(name, "xmp") || same(name, "iframe") || same(name, "plaintext");
}

/* The tag at t[i] == '<'; returns where scanning goes on. */
static size_t tag(struct hs *h, size_t i)
{
	const char *t = h->t;
	size_t n = h->n, j = i + 1;
	bool closing = j < n && t[j] == '/';
	if (closing)
		j++;
	size_t ns = j;
	if (closing && (j >= n || isspace((unsigned char)t[j]) || t[j] == '>')) {
		/* "</ b>", "</>": a comment up to the first '>' for
		 * SpamAssassin's HTML::Parser (and browsers), not text */
		const char *gt = memchr(t + j, '>', n - j);
		size_t end = gt ? (size_t)(gt - t) + 1 : n;
		keep_comment(h, i, end);
		return end;
	}
	while (j < n && (isalnum((unsigned char)t[j]) || t[j] == ':' || t[j] == '-'))
		j++;
	if (j == ns) {
		text_run(h, i, i + 1); /* not a tag: a literal '<' */
		return i + 1;
	}
	char name[24];
	size_t nl = j - ns < sizeof(name) - 1 ? j - ns : sizeof(name) - 1;
	for (size_t k = 0; k < nl; k++)
		name[k] = (char)tolower((unsigned char)t[ns + k]);
	name[nl] = 0;
	size_t as = j, ae = tag_end(h, j);
	size_t next = ae < n ? ae + 1 : n;
	/* the name's table entry, and the name as the counts and the style
	 * stack keep it */
	const struct tagslot *ti = tag_find(name);
	char key[16];
	tag_key(key, name);
	count_tag(h, ti, key, closing);
	text_style(h, ti, key, closing, as, ae);
	if (!closing && (same(name, "script") || same(name, "style")))
		return literal_end(h, next, name); /* the content is skipped; the closing tag is a tag */
	if (same(name, "title")) {
		render_ws(h, "\n\n");
		h->in_title = !closing;
		return next;
	}
	if (same(name, "a")) {
		h->in_a = !closing;
		anchor_end(h);
		if (!closing)
			anchor_begin(h, as, ae);
	}
	if (ti && ti->ws)
		render_ws(h, ti->ws);
	if (!closing)
		tag_attributes(h, name, as, ae);
	if (!closing && literal_text(name)) {
		/* text up to the closing tag (the end for <plaintext>), tags
		 * and all, entities decoded in <textarea> only: HTML::Parser's
		 * literal elements, whose text SpamAssassin renders */
		size_t e = same(name, "plaintext") ? n : literal_end(h, next, name);
		text_run_as(h, next, e, same(name, "textarea"));
		return e;
	}
	return next;
}

void sift_html_scan(const char *t, size_t n, struct sift_buf *text, struct sift_html_scan *r,
		    sift_html_link_fn link, void *arg)
{
	struct hs h = {.t = t,
		       .n = n,
		       .text = text,
		       .r = r,
		       .sp = 1,
		       .link = link,
		       .arg = arg,
		       .chunk_at = text->len};
	r->stats.max_font_size = 3;
	/* SpamAssassin's HTML length (HTML.pm's parse: length($text)) is in
	 * characters, its text decoded from the part's charset: the code
	 * points of t (UTF-8), not its octets nor the source's */
	r->stats.length = sift_utf8_chars(t, n);
	snprintf(h.stack[0].fg, 8, "#000000");
	snprintf(h.stack[0].bg, 8, "#ffffff");
	size_t i = 0;
	while (i < n) {
		if (t[i] != '<') {
			const char *lt = memchr(t + i, '<', n - i);
			size_t j = lt ? (size_t)(lt - t) : n;
			text_run(&h, i, j);
			i = j;
		} else if (i + 1 < n && t[i + 1] == '!')
			i = comment(&h, i);
		else if (i + 1 < n && t[i + 1] == '?') {
			const char *gt = memchr(t + i, '>', n - i); /* a processing instruction */
			i = gt ? (size_t)(gt - t) + 1 : n;
		} else
			i = tag(&h, i);
	}
	anchor_end(&h);
	sift_buf_free(&h.attr);
	sift_buf_free(&h.base);
	sift_buf_free(&h.target);
	sift_buf_free(&h.run);
}

void sift_html_scan_free(struct sift_html_scan *r)
{
	sift_buf_free(&r->title);
	sift_buf_free(&r->anchor);
	sift_buf_free(&r->comments);
	sift_buf_free(&r->anchors);
}
