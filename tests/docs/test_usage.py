#!/usr/bin/python3
"""siftctl's usage text against its manual page: siftctl(8) (man/siftctl.8)
describes every command `siftctl --help` lists (the quarantine commands,
which the page sends to `siftctl quarantine --help`, excepted), with every
option and every daemon operand the usage gives it, and says which
commands read policyd.conf by default. And for filterd and policyd: the
options of their -h are those of their manual page and of the command
line tables of README.md and docs/policyd.md.

Ends with "N passed, N failed".
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sifttest import check, done, srcdir, builddir  # noqa: E402


def usage_entries(text):
    """(command words, synopsis line) of each command of the usage text:
    the lines indented by two spaces that start with a lower-case word."""
    out = []
    for line in text.splitlines():
        m = re.match(r'^  ([a-z][a-z-]*(?: [a-z][a-z-]*)?)\b(.*)$', line)
        if m and not line.startswith('   '):
            out.append((m.group(1), line.strip()))
    return out


def man_text(path):
    """The page's text with the groff escapes a reader does not see taken
    out (\\-, \\fB, \\fI, \\fR, .B/.BR/.BI/.IR/.RB macros and quotes)."""
    with open(path, encoding='utf-8') as f:
        t = f.read()
    t = t.replace('\\-', '-')
    t = re.sub(r'\\f[BIRP]', '', t)
    t = re.sub(r'^\.(?:B|I|BR|BI|IB|IR|RB|RI)\s', '', t, flags=re.M)
    return t.replace('"', '')


def entries_of(man):
    """The .TP paragraphs of the page: the tag line, then the text."""
    return [p.strip() for p in re.split(r'^\.TP\s*$', man, flags=re.M)[1:]]


def main():
    src, build = srcdir(), builddir()
    r = subprocess.run([os.path.join(build, 'tools', 'siftctl'), '--help'], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0, 'siftctl --help exits 0', r.stderr)
    usage = r.stdout
    man = man_text(os.path.join(src, 'man', 'siftctl.8'))

    entries = [(c, s) for c, s in usage_entries(usage) if not c.startswith('quarantine')]
    check(len(entries) >= 15, 'commands read from siftctl --help', [c for c, _ in entries])
    for cmd, syn in entries:
        # "ratelimit show|reset" describes "ratelimit reset" too
        words = cmd.split()
        pat = r'\b%s\b' % re.escape(words[0]) + ''.join(r'[^\n]{0,40}\b%s\b' % re.escape(w) for w in words[1:])
        # the entry (.TP paragraph) whose tag names the command
        entry = [e for e in entries_of(man) if re.search(pat, e.split('\n', 1)[0])]
        check(entry, 'siftctl(8) describes "%s"' % cmd)
        text = ' '.join(' '.join(entry).split())
        opts = sorted(set(re.findall(r'--[a-z][a-z-]*', syn)))
        missing = [o for o in opts if o not in text]
        check(not missing, 'siftctl(8) gives "%s" its options' % cmd, missing)
        if '[filterd|policyd]' in syn:
            check(re.search(r'\b%s \[? ?filterd ?\| ?policyd' % re.escape(cmd), text) is not None,
                  'siftctl(8) gives "%s" its daemon operand' % cmd)

    # which commands read policyd.conf when asked about policyd
    m = re.search(r'-c FILE .*?\((.*?)\)\n  -o', usage, re.S)
    check(m is not None, 'the usage says what -c defaults to')
    daemon_cmds = [c for c, s in entries if '[filterd|policyd]' in s]
    if m:
        said = ' '.join(m.group(1).split())
        missing = [c for c in daemon_cmds if '%s policyd' % c not in said]
        check(not missing, 'the usage says which commands read policyd.conf', (missing, said))
    m = re.search(r'\.SH OPTIONS\s*\.TP\s*-c\s+file\s*(.*?)\.TP', man, re.S)
    said = ' '.join(m.group(1).split()) if m else ''
    missing = [c for c in daemon_cmds if '%s policyd' % c not in said]
    check(not missing, 'siftctl(8) says which commands read policyd.conf', (missing, said))

    # the daemons' options
    def letters(pattern, text):
        return set(re.findall(pattern, text, re.M))

    readme = open(os.path.join(src, 'README.md'), encoding='utf-8').read()
    m = re.search(r'^Command line, the same for (.*?):\n\n(\|.*?)\n\n', readme, re.S | re.M)
    check(m is not None, 'README.md has the daemons\' command line table')
    for d in ('filterd', 'policyd'):
        r = subprocess.run([os.path.join(build, d, d), '-h'], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, '%s -h exits 0' % d, r.stderr)
        got = letters(r'^  -(\w)\b', r.stdout) | letters(r'\[-(\w)[\] ]', r.stdout.split('\n')[0])
        page = open(os.path.join(src, 'man', d + '.8'), encoding='utf-8').read()
        opts = page.split('.SH OPTIONS', 1)[-1].split('\n.SH ', 1)[0]
        man = letters(r'^\.B[IR]? \\-(\w)\b', opts)
        check(got == man, '%s -h and %s(8) give the same options' % (d, d), (sorted(got), sorted(man)))
        if m:
            check(d in m.group(1), 'README.md\'s command line table is said to be %s\'s' % d, m.group(1))
            table = letters(r'^\| `-(\w)\b', m.group(2)) | {'h'}
            check(got == table, '%s -h and README.md\'s table give the same options' % d,
                  (sorted(got), sorted(table)))
    pd = open(os.path.join(src, 'docs', 'policyd.md'), encoding='utf-8').read()
    r = subprocess.run([os.path.join(build, 'policyd', 'policyd'), '-h'], capture_output=True, text=True,
                       timeout=60)
    got = letters(r'^  -(\w)\b', r.stdout)
    table = letters(r'^\| `-(\w)\b', pd)
    check(got == table, 'policyd -h and docs/policyd.md give the same options', (sorted(got), sorted(table)))
    syn = re.search(r'^policyd \[-c.*$', pd, re.M)
    check(syn is not None and letters(r'-(\w)\b', syn.group(0)) | {'h'} == got,
          'docs/policyd.md\'s synopsis gives policyd\'s options', syn and syn.group(0))
    return done()


if __name__ == '__main__':
    sys.exit(main())
