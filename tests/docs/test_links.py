#!/usr/bin/python3
"""Links between the documents: every relative link of README.md,
docs/*.md and the plugins' READMEs names a file of the tree, and its
#fragment a heading of that file (GitHub's anchors: lower case, spaces
to hyphens, punctuation dropped).

Ends with "N passed, N failed".
"""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sifttest import check, done, srcdir  # noqa: E402


def anchors(path):
    out = set()
    fence = False
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.lstrip().startswith('```'):
                fence = not fence
                continue
            m = re.match(r'^#+\s+(.*?)\s*#*\s*$', line)
            if m and not fence:
                text = re.sub(r'[^\w\- ]', '', m.group(1).strip().lower())
                out.add(text.replace(' ', '-'))
    return out


def main():
    src = srcdir()
    docs = [os.path.join(src, 'README.md')] + sorted(
        glob.glob(os.path.join(src, 'docs', '*.md')) + glob.glob(os.path.join(src, 'plugins', '*', 'README.md')))
    links = 0
    for path in docs:
        rel = os.path.relpath(path, src)
        with open(path, encoding='utf-8') as f:
            text = f.read()
        bad = []
        for m in re.finditer(r'\]\(([^)\s]+)\)', text):
            target = m.group(1)
            if re.match(r'[a-z][a-z0-9+.-]*:', target):
                continue  # https:, mailto:
            links += 1
            ln = text.count('\n', 0, m.start()) + 1
            name, _, frag = target.partition('#')
            dest = os.path.normpath(os.path.join(os.path.dirname(path), name)) if name else path
            if not os.path.exists(dest):
                bad.append('%s:%d: %s: no such file' % (rel, ln, target))
            elif frag and dest.endswith('.md') and frag not in anchors(dest):
                bad.append('%s:%d: %s: no such heading' % (rel, ln, target))
        check(not bad, '%s: its links lead somewhere' % rel, bad)
    check(links >= 10, 'links found', links)
    return done()


if __name__ == '__main__':
    sys.exit(main())
