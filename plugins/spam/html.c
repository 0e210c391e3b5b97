/*
 * html.c - the HTML analysis the HTML evals use (SpamAssassin's
 * HTML.pm, as far as the stock rules need it): of the first text/html
 * part, the tags opened and closed (and unknown ones), comments, the
 * title and anchor text, font sizes, form mailto:, images, text in a
 * colour too close to its background.
 */
#include <math.h>
#include <stdio.h>

#include "html.h"
static struct htmltag *htag(struct htmlinfo *hi, const char *name)
{
	for (int i = 0; i < hi->ntags; i++)
		if (strcmp(hi->tags[i].name, name) == 0)
			return &hi->tags[i];
	if (hi->ntags == 96)
		return NULL;
	struct htmltag *t = &hi->tags[hi->ntags++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

static const char *const html_known[] = {
	"a",	     "abbr",   "acronym",  "address",  "applet",     "area",	 "b",	     "base",
	"basefont",  "bdo",    "big",	   "blink",    "blockquote", "body",	 "br",	     "button",
	"caption",   "center", "cite",	   "code",     "col",	     "colgroup", "dd",	     "del",
	"dfn",	     "dir",    "div",	   "dl",       "dt",	     "em",	 "embed",    "fieldset",
	"font",	     "form",   "frame",	   "frameset", "h1",	     "h2",	 "h3",	     "h4",
	"h5",	     "h6",     "head",	   "hr",       "html",	     "i",	 "iframe",   "img",
	"input",     "ins",    "isindex",  "kbd",      "label",	     "layer",	 "legend",   "li",
	"link",	     "map",    "marquee",  "menu",     "meta",	     "nobr",	 "noframes", "noscript",
	"object",    "ol",     "optgroup", "option",   "p",	     "param",	 "pre",	     "q",
	"s",	     "samp",   "script",   "select",   "small",	     "span",	 "strike",   "strong",
	"style",     "sub",    "sup",	   "table",    "tbody",	     "td",	 "textarea", "tfoot",
	"th",	     "thead",  "title",	   "tr",       "tt",	     "u",	 "ul",	     "var",
	"wbr",	     "xml",    "bgsound",  "spacer",   "ilayer",     "nolayer",	 "xmp",	     "listing",
	"plaintext", "image",  "keygen",   "multicol", "comment",    "server",	 "o:p",	     NULL};

/* SpamAssassin's name_to_rgb(): "#rrggbb", or "invalid". */
static void name_to_rgb(const char *in, size_t n, char out[8])
{
	static const struct {
		const char *n, *v;
	} names[] = {{"black", "000000"},	{"white", "ffffff"},	 {"red", "ff0000"},
		     {"green", "008000"},	{"blue", "0000ff"},	 {"yellow", "ffff00"},
		     {"gray", "808080"},	{"grey", "808080"},	 {"silver", "c0c0c0"},
		     {"maroon", "800000"},	{"navy", "000080"},	 {"purple", "800080"},
		     {"teal", "008080"},	{"olive", "808000"},	 {"lime", "00ff00"},
		     {"aqua", "00ffff"},	{"fuchsia", "ff00ff"},	 {"orange", "ffa500"},
		     {"whitesmoke", "f5f5f5"},	{"snow", "fffafa"},	 {"ivory", "fffff0"},
		     {"beige", "f5f5dc"},	{"linen", "faf0e6"},	 {"lightgrey", "d3d3d3"},
		     {"lightgray", "d3d3d3"},	{"darkgray", "a9a9a9"},	 {"darkgrey", "a9a9a9"},
		     {"darkblue", "00008b"},	{"darkred", "8b0000"},	 {"darkgreen", "006400"},
		     {"gold", "ffd700"},	{"pink", "ffc0cb"},	 {"brown", "a52a2a"},
		     {"cyan", "00ffff"},	{"magenta", "ff00ff"},	 {"ghostwhite", "f8f8ff"},
		     {"floralwhite", "fffaf0"}, {"azure", "f0ffff"},	 {"mintcream", "f5fffa"},
		     {"honeydew", "f0fff0"},	{"aliceblue", "f0f8ff"}, {"seashell", "fff5ee"},
		     {"lavender", "e6e6fa"},	{"oldlace", "fdf5e6"},	 {"lightyellow", "ffffe0"},
		     {"lightcyan", "e0ffff"},	{"gainsboro", "dcdcdc"}};
	char c[64];
	size_t k = 0;
	while (n && isspace((unsigned char)*in)) {
		in++;
		n--;
	}
	while (n && isspace((unsigned char)in[n - 1]))
		n--;
	for (size_t i = 0; i < n && k < sizeof(c) - 1; i++)
		c[k++] = (char)tolower((unsigned char)in[i]);
	c[k] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(c, names[i].n) == 0) {
			snprintf(out, 8, "#%.6s", names[i].v);
			return;
		}
	unsigned r, g, b;
	if (sscanf(c, "rgb(%u,%u,%u)", &r, &g, &b) == 3 ||
	    sscanf(c, "rgb( %u , %u , %u )", &r, &g, &b) == 3) {
		snprintf(out, 8, "#%02x%02x%02x", r > 255 ? 255 : r, g > 255 ? 255 : g, b > 255 ? 255 : b);
		return;
	}
	const char *h = c[0] == '#' ? c + 1 : c;
	char hex[8];
	size_t hl = 0;
	bool all_hex = *h != 0;
	for (const char *q = h; *q; q++)
		if (!isxdigit((unsigned char)*q))
			all_hex = false;
	if (!all_hex) {
		snprintf(out, 8, "invalid");
		return;
	}
	for (const char *q = h; *q && hl < 6; q++)
		hex[hl++] = *q;
	hex[hl] = 0;
	if (hl > 3 && hl < 6)
		hl = 3, hex[3] = 0;
	while (hl % 3)
		hex[hl++] = '0', hex[hl] = 0;
	if (hl == 3)
		snprintf(out, 8, "#%c%c%c%c%c%c", hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]);
	else
		snprintf(out, 8, "#%.6s", hex);
}

struct tstyle {
	char tag[16];
	char fg[8], bg[8];
};

/* value of attribute `name` in t[a..e) (quotes removed), or 0 */
static size_t attr_value(const char *t, size_t a, size_t e, const char *name, const char **v)
{
	size_t nl = strlen(name);
	for (size_t k = a; k + nl < e; k++) {
		if (strncasecmp(t + k, name, nl) != 0 || (k > a && !isspace((unsigned char)t[k - 1])))
			continue;
		size_t j = k + nl;
		while (j < e && isspace((unsigned char)t[j]))
			j++;
		if (j >= e || t[j] != '=')
			continue;
		j++;
		while (j < e && isspace((unsigned char)t[j]))
			j++;
		char q = 0;
		if (j < e && (t[j] == '"' || t[j] == '\''))
			q = t[j++];
		size_t st = j;
		while (j < e && (q ? t[j] != q : !isspace((unsigned char)t[j])))
			j++;
		*v = t + st;
		return j - st;
	}
	return 0;
}

static void style_apply(struct tstyle *ns, const char *v, size_t n, const char *parent_bg)
{
	/* "color: x; background-color: y; background: z" */
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
				name_to_rgb(val, vl, out);
				if (!(vl >= 7 && strncasecmp(val, "inherit", 7) == 0))
					memcpy(ns->fg, out, 8);
			} else if (kl == 16 && strncasecmp(d, "background-color", 16) == 0) {
				name_to_rgb(val, vl, out);
				if (!(vl >= 7 && strncasecmp(val, "inherit", 7) == 0))
					memcpy(ns->bg, out, 8);
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
	(void)parent_bg;
}

static bool low_contrast(const char *fg, const char *bg)
{
	size_t fl = strlen(fg), bl = strlen(bg);
	if (strcmp(fg + (fl > 6 ? fl - 6 : 0), bg + (bl > 6 ? bl - 6 : 0)) == 0)
		return true;
	unsigned r1, g1, b1, r2, g2, b2;
	if (sscanf(fg, "#%02x%02x%02x", &r1, &g1, &b1) != 3 ||
	    sscanf(bg, "#%02x%02x%02x", &r2, &g2, &b2) != 3)
		return false;
	double r = (double)r1 - r2, g = (double)g1 - g2, b = (double)b1 - b2;
	double dist =
		sqrt((0.2126 * r) * (0.2126 * r) + (0.7152 * g) * (0.7152 * g) + (0.0722 * b) * (0.0722 * b));
	return dist < 12;
}

static bool text_style_tag(const char *n)
{
	static const char *const t[] = {"body",	 "font",    "table", "tr", "th",  "td", "big",
					"small", "marquee", "span",  "p",  "div", "a",	NULL};
	for (const char *const *p = t; *p; p++)
		if (strcmp(*p, n) == 0)
			return true;
	return false;
}

/* A tag's effect on the text style stack (SpamAssassin's text_style): t[j,
 * ae) are its attributes. */
static void style_tag(struct tstyle *stack, int *spp, const char *name, bool closing, const char *t, size_t j,
		      size_t ae)
{
	int sp = *spp;
	char sname[16];
	snprintf(sname, sizeof(sname), "%s", strcmp(name, "th") == 0 ? "td" : name);
	if (text_style_tag(sname)) {
		if (!closing) {
			if ((strcmp(sname, "td") == 0 || strcmp(sname, "tr") == 0)) {
				/* close the previous cell/row of this table */
				for (int k = sp - 1; k > 0; k--) {
					if (strcmp(stack[k].tag, "table") == 0)
						break;
					if (strcmp(stack[k].tag, sname) == 0 ||
					    (strcmp(sname, "tr") == 0 && strcmp(stack[k].tag, "td") == 0)) {
						sp = k;
						break;
					}
				}
			}
			if (sp < 64) {
				struct tstyle nst = stack[sp - 1];
				snprintf(nst.tag, sizeof(nst.tag), "%s", sname);
				const char *v;
				size_t vl;
				if ((strcmp(sname, "font") == 0) && (vl = attr_value(t, j, ae, "color", &v)))
					name_to_rgb(v, vl, nst.fg);
				if ((strcmp(sname, "body") == 0) && (vl = attr_value(t, j, ae, "text", &v)))
					name_to_rgb(v, vl, nst.fg);
				if (strcmp(sname, "font") != 0 && strcmp(sname, "body") != 0 &&
				    strcmp(sname, "big") != 0 && strcmp(sname, "small") != 0 &&
				    strcmp(sname, "marquee") != 0 &&
				    (vl = attr_value(t, j, ae, "style", &v))) {
					style_apply(&nst, v, vl, stack[sp - 1].bg);
					if (strcmp(nst.bg, "transparent") == 0)
						memcpy(nst.bg, stack[sp - 1].bg, 8);
				}
				stack[sp++] = nst;
			}
		} else if (strcmp(sname, "body") != 0) {
			for (int k = sp - 1; k > 0; k--)
				if (strcmp(stack[k].tag, sname) == 0) {
					sp = k;
					break;
				}
		}
	}
	*spp = sp;
}

static void html_analyze(struct htmlinfo *hi, const char *t, size_t n)
{
	bool in_a = false, in_title = false;
	hi->max_font_size = 3;
	struct tstyle stack[64];
	int sp = 1;
	memset(&stack[0], 0, sizeof(stack[0]));
	snprintf(stack[0].fg, 8, "#000000");
	snprintf(stack[0].bg, 8, "#ffffff");
	for (size_t i = 0; i < n;) {
		if (t[i] != '<') {
			size_t j = i;
			while (j < n && t[j] != '<')
				j++;
			struct sbuf *dst = in_title ? &hi->title : in_a ? &hi->anchor : NULL;
			if (dst)
				sb_add(dst, t + i, j - i);
			if (!hi->low_contrast) {
				bool visible = false;
				for (size_t k = i; k < j && !visible; k++)
					if (!isspace((unsigned char)t[k]) && t[k] != '\xa0' &&
					    !(t[k] == '&' && j - k >= 6 &&
					      strncasecmp(t + k, "&nbsp;", 6) == 0))
						visible = true;
				if (visible && low_contrast(stack[sp - 1].fg, stack[sp - 1].bg))
					hi->low_contrast = true;
			}
			i = j;
			continue;
		}
		if (i + 1 < n && t[i + 1] == '!') {
			const char *e;
			size_t end;
			if (i + 3 < n && t[i + 2] == '-' && t[i + 3] == '-') {
				e = NULL;
				for (size_t k = i + 4; k + 2 < n; k++)
					if (t[k] == '-' && t[k + 1] == '-' && t[k + 2] == '>') {
						e = t + k + 3;
						break;
					}
				end = e ? (size_t)(e - t) : n;
			} else {
				const char *gt = memchr(t + i, '>', n - i);
				end = gt ? (size_t)(gt - t) + 1 : n;
			}
			if (hi->comments.n < 65536)
				sb_add(&hi->comments, t + i, end - i);
			sb_add(&hi->comments, "\n", 1);
			i = end;
			continue;
		}
		size_t j = i + 1;
		bool closing = false;
		if (j < n && t[j] == '/') {
			closing = true;
			j++;
		}
		size_t ns = j;
		while (j < n && (isalnum((unsigned char)t[j]) || t[j] == ':'))
			j++;
		if (j == ns) {
			i++;
			continue;
		}
		char name[16];
		size_t nl = j - ns < 15 ? j - ns : 15;
		for (size_t k = 0; k < nl; k++)
			name[k] = (char)tolower((unsigned char)t[ns + k]);
		name[nl] = 0;
		const char *gt = memchr(t + j, '>', n - j);
		size_t ae = gt ? (size_t)(gt - t) : n;
		hi->total_tags++;
		bool known = false;
		for (const char *const *k = html_known; *k; k++)
			if (strcmp(*k, name) == 0) {
				known = true;
				break;
			}
		if (!known)
			hi->bad_tags++;
		struct htmltag *tg = htag(hi, name);
		if (tg) {
			if (closing) {
				tg->close++;
				if (tg->close > tg->open)
					hi->closed_extra++;
			} else
				tg->open++;
		}
		/* text style stack (SpamAssassin's text_style) */
		style_tag(stack, &sp, name, closing, t, j, ae);
		if (!closing && (strcmp(name, "script") == 0 || strcmp(name, "style") == 0)) {
			char endtag[20];
			snprintf(endtag, sizeof(endtag), "</%s", name);
			size_t k = gt ? ae + 1 : n;
			size_t el = strlen(endtag);
			while (k + el <= n && strncasecmp(t + k, endtag, el) != 0)
				k++;
			i = k < n ? k : n;
			continue;
		}
		if (strcmp(name, "a") == 0)
			in_a = !closing;
		else if (strcmp(name, "title") == 0)
			in_title = !closing;
		else if (!closing && strcmp(name, "img") == 0) {
			hi->img = true;
			if (in_a)
				sb_adds(&hi->anchor, "<img>");
		} else if (!closing && strcmp(name, "font") == 0) {
			const char *sz = NULL;
			for (size_t k = j; k + 5 < ae; k++)
				if (strncasecmp(t + k, "size=", 5) == 0) {
					sz = t + k + 5;
					break;
				}
			if (sz) {
				if (*sz == '"' || *sz == '\'')
					sz++;
				int v;
				if (*sz == '+')
					v = 3 + atoi(sz + 1);
				else if (*sz == '-')
					v = 3 - atoi(sz + 1);
				else
					v = atoi(sz);
				if (v > hi->max_font_size)
					hi->max_font_size = v;
			}
		} else if (!closing && strcmp(name, "form") == 0) {
			for (size_t k = j; k + 7 < ae; k++)
				if (strncasecmp(t + k, "mailto:", 7) == 0)
					hi->form_mailto = true;
		}
		i = gt ? ae + 1 : n;
	}
}

struct htmlinfo *html_info(struct msgctx *m)
{
	if (m->html)
		return m->html;
	struct htmlinfo *hi = xcalloc(1, sizeof(*hi));
	m->html = hi;
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (!(p->flags & SIFT_MIME_P_HTML))
			continue;
		hi->present = true;
		html_analyze(hi, (const char *)p->data, p->data_len > 500000 ? 500000 : p->data_len);
		/* SpamAssassin's "length" is that of the HTML source */
		hi->length = (double)p->data_len;
		hi->image_area += (double)p->html_image_area;
		break; /* SpamAssassin keeps the first HTML part's results */
	}
	return hi;
}

void html_free(struct htmlinfo *hi)
{
	if (!hi)
		return;
	free(hi->comments.d);
	free(hi->title.d);
	free(hi->anchor.d);
	free(hi);
}
