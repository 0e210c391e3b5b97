/*
 * replace.c - SpamAssassin's ReplaceTags: in the patterns of the rules
 * named by replace_rules, <NAME> becomes the replace_tag NAME, with the
 * <pre P>, <inter I>, <post Q> markers of the pattern around the values.
 */
#include "internal.h"

/* SpamAssassin's /<[^>]+>/: a value that holds something like a tag. */
static bool has_tag(const char *v)
{
	const char *lt = strchr(v, '<');
	return lt && lt[1] && lt[1] != '>' && strchr(lt + 1, '>');
}

static const char *pair_get(char **names, char **vals, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return vals[i];
	return NULL;
}

/* One pass over in into out: each <NAME> of a replace_tag becomes pre,
 * its value, post, with inter between two tags that follow each other.
 * Returns whether a tag was replaced; *again: whether a value put in holds
 * a tag itself. */
static bool expand_tags(const struct spam_engine *e, const char *in, struct sbuf *out, const char *pre,
			const char *inter, const char *post, bool *again)
{
	bool last_tag = false, any = false;
	for (const char *p = in; *p;) {
		if (*p == '\\' && p[1]) {
			sb_add(out, p, 2);
			p += 2;
			last_tag = false;
			continue;
		}
		if (*p == '<') {
			const char *q = p + 1;
			while (isalnum((unsigned char)*q) || *q == '_')
				q++;
			if (*q == '>' && q > p + 1) {
				char *nm = xstrndup(p + 1, (size_t)(q - p - 1));
				const char *v = pair_get(e->tag_names, e->tag_vals, e->ntags, nm);
				free(nm);
				if (v) {
					if (last_tag)
						sb_adds(out, inter);
					sb_adds(out, pre);
					sb_adds(out, v);
					sb_adds(out, post);
					last_tag = any = true;
					*again = *again || has_tag(v);
					p = q + 1;
					continue;
				}
			}
		}
		last_tag = false;
		sb_add(out, p, 1);
		p++;
	}
	return any;
}

void apply_replace_tags(struct spam_engine *e, struct rule *r)
{
	const char *s = r->pattern;
	if (!strchr(s, '<'))
		return;
	/* pre/inter/post markers */
	const char *pre = "", *inter = "", *post = "";
	struct sbuf tmp = {0};
	for (const char *p = s; *p;) {
		if (*p == '\\' && p[1]) {
			sb_add(&tmp, p, 2);
			p += 2;
			continue;
		}
		if (*p == '<') {
			const char *gt = strchr(p, '>');
			char *inner = gt ? xstrndup(p + 1, (size_t)(gt - p - 1)) : NULL;
			if (inner) {
				const char *v = NULL;
				if (strncmp(inner, "pre ", 4) == 0 &&
				    (v = pair_get(e->pre_names, e->pre_vals, e->npre, inner + 4)))
					pre = v;
				else if (strncmp(inner, "inter ", 6) == 0 &&
					 (v = pair_get(e->inter_names, e->inter_vals, e->ninter, inner + 6)))
					inter = v;
				else if (strncmp(inner, "post ", 5) == 0 &&
					 (v = pair_get(e->post_names, e->post_vals, e->npost, inner + 5)))
					post = v;
				free(inner);
				if (v) {
					p = gt + 1;
					continue;
				}
			}
		}
		sb_add(&tmp, p, 1);
		p++;
	}
	struct sbuf out = {0};
	bool again = false;
	expand_tags(e, sb_str(&tmp), &out, pre, inter, post, &again);
	free(tmp.d);
	/* tags inside the values: SpamAssassin runs up to 5 more passes while
	 * a value put in holds a tag (without the pre/post/inter markers,
	 * which the first pass consumed) */
	for (int pass = 0; pass < 5 && again && out.d; pass++) {
		struct sbuf next = {0};
		again = false;
		if (!expand_tags(e, out.d, &next, "", "", "", &again)) {
			free(next.d);
			break;
		}
		free(out.d);
		out = next;
	}
	free(r->pattern);
	r->pattern = out.d ? out.d : xstrdup("");
}
