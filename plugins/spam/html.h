/*
 * html.h - the spam engine's HTML analysis (html.c) for the HTML evals.
 */
#ifndef SPAM_HTML_H
#define SPAM_HTML_H

#include "internal.h"

struct htmltag {
	char name[16];
	int open, close;
};

struct htmlinfo {
	bool present;
	struct htmltag tags[96];
	int ntags;
	int total_tags, bad_tags, closed_extra;
	int max_font_size;
	bool form_mailto;
	struct sbuf comments; /* each comment followed by \n */
	struct sbuf title, anchor;
	double length; /* length of the HTML source (as SpamAssassin) */
	double image_area;
	bool img;
	bool low_contrast;
};

/* The analysis of the message's first text/html part, made once (cached in
 * m). */
struct htmlinfo *html_info(struct msgctx *m);
void html_free(struct htmlinfo *hi);

#endif
