#!/usr/bin/python3
"""Parameter documentation check: the parameter tables (what `siftctl params
--list` prints: the common ones, filterd's and policyd's through -P, every
plugin's) against README.md and the plugins' READMEs.

- every parameter has a doc string (it is the line in sift.conf(5));
- every parameter named in a README parameter table (a table whose first
  column is headed "parameter" or "name", rows starting with "| `name`")
  exists (in a plugin's README, `name` stands for `<plugin>_name` when
  that exists);
- every common, filterd and policyd parameter is in README.md's tables,
  every plugin parameter in its plugin's README (<plugin>_error_action is
  covered by README.md's `<plugin>_error_action` row);
- the default column of those tables, where it starts with one value in
  backquotes or says the default is empty, gives the parameter's default,
  and so does every "`name = value` (default ...)" and "`name` (default
  `value`)" in the prose of README.md, docs/*.md and the plugins' READMEs
  (paths compared without the build's /usr/local and /var/local);
- docs/policyd.md's parameter table lists every policyd parameter;
- the generated sift.conf(5) names every parameter;
- every `name = value` line of a ```filterd.conf or ```policyd.conf block
  in README.md, docs/*.md and the plugins' READMEs (and of the part of a
  plain block under a "# filterd.conf" or "# policyd.conf" comment) names
  a parameter that daemon reads (common, its own, or one of a plugin that
  runs in it), and its inbound_plugins/originating_plugins lines name
  plugins that run in it (as the daemon's -t tells).

Ends with "N passed, N failed".
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from sifttest import check, done, srcdir, builddir  # noqa: E402

ROW = re.compile(r'^\|\s*`([^`]+)`\s*\|')
HEAD = re.compile(r'^\|\s*([A-Za-z]+)\s*\|')


def param_rows(path):
    """(line number, name, cells, header) of the rows of the parameter
    tables of a Markdown file: tables whose first column is headed
    "parameter" or "name" (lower-cased header cells), rows whose first
    cell is a `name`."""
    out = []
    head = None
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    for i, line in enumerate(lines):
        if not line.startswith('|'):
            head = None
            continue
        cells = [c.strip() for c in re.split(r'(?<!\\)\|', line.strip())[1:-1]]
        if head is None:
            m = HEAD.match(line)
            head = [c.lower() for c in cells] if m and m.group(1).lower() in ('parameter', 'name') else []
            continue
        m = ROW.match(line)
        if head and m:
            out.append((i + 1, m.group(1), cells, head))
    return out


def table_names(path):
    """Names in the first column of the parameter tables of a Markdown file,
    with their line numbers."""
    names = {}
    for n, name, _, _ in param_rows(path):
        names.setdefault(name, n)
    return names


def table_defaults(path):
    """(line number, name, default cell) of the rows of the parameter
    tables of a Markdown file that have a "default" column."""
    out = []
    for n, name, cells, head in param_rows(path):
        col = head.index('default') if 'default' in head else None
        if col is not None and col < len(cells):
            out.append((n, name, cells[col]))
    return out


PROSE_DEFAULTS = [re.compile(r'`([a-z][a-z0-9_]+) = ([^`]*)`\s*\((?:the )?default\b'),
                  re.compile(r'`([a-z][a-z0-9_]+)`\s*\(default:? `([^`]*)`'),
                  re.compile(r'`([a-z][a-z0-9_]+) = ([^`]*)`[^|`]*`[a-z][a-z0-9_]+ = [^`]*`\s*\(both the defaults'),
                  re.compile(r'`[a-z][a-z0-9_]+ = [^`]*`[^|`]*`([a-z][a-z0-9_]+) = ([^`]*)`\s*\(both the defaults')]


def prose_defaults(path):
    """(line number, name, value) of every default a document states in
    running text."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    out = []
    for pat in PROSE_DEFAULTS:
        for m in pat.finditer(text):
            out.append((text.count('\n', 0, m.start()) + 1, m.group(1), m.group(2)))
    return out


def unprefixed(value):
    """A default as the documents give it: the paths of the package
    (/usr/lib/<multiarch>/..., /var/lib/...), not those of a build under
    /usr/local."""
    value = re.sub(r'/usr/local/lib/[^/]*-linux-gnu[^/]*/', '/usr/lib/<multiarch>/', value)
    value = re.sub(r'/usr/local/lib/', '/usr/lib/<multiarch>/', value)
    return value.replace('/var/local/', '/var/').replace('/usr/local/', '/usr/')


def default_matches(cell, default):
    """Whether a documented default (a table cell or a prose value) states
    the parameter's default; None when the cell does not say (a
    description such as "the system's host name")."""
    cell = cell.strip()
    if re.match(r'^\(?empty\b', cell, re.I):
        return default == ''
    m = re.match(r'^`([^`]*)`', cell)
    if not m:
        return None
    doc = m.group(1)
    return doc == default or doc == unprefixed(default)


def conf_blocks(path):
    """(daemon, line number, name, value) of every setting in the
    ```filterd.conf and ```policyd.conf blocks of a Markdown file, and in
    the parts of unmarked blocks that a comment line "# filterd.conf" or
    "# policyd.conf" heads (a block showing both files)."""
    out = []
    fence = None  # the open block's info string
    daemon = None
    with open(path, encoding='utf-8') as f:
        for i, line in enumerate(f, 1):
            m = re.match(r'^\s*```(\S*)\s*$', line)
            if m:
                fence = m.group(1) if fence is None else None
                daemon = {'filterd.conf': 'filterd', 'policyd.conf': 'policyd'}.get(fence)
                continue
            if fence == '':
                m = re.match(r'^\s*#\s*(filterd|policyd)\.conf\b', line)
                if m:
                    daemon = m.group(1)
                    continue
            if daemon:
                m = re.match(r'^([A-Za-z0-9_]+)\s*=\s*(.*?)\s*$', line)
                if m:
                    out.append((daemon, i, m.group(1), m.group(2)))
    return out


def plugin_daemons(build, plugins):
    """{daemon: set of the plugins it runs}: each plugin given alone to
    each daemon's -t, which names a plugin that does not run there."""
    runs = {'filterd': set(), 'policyd': set()}
    with tempfile.TemporaryDirectory() as tmp:
        for d in runs:
            conf = os.path.join(tmp, d + '.conf')
            with open(conf, 'w') as f:
                f.write('plugin_directory = %s\n%s_user = root\n' % (os.path.join(build, 'plugins'), d))
            for pl in plugins:
                r = subprocess.run([os.path.join(build, d, d), '-c', conf, '-o', 'inbound_plugins=' + pl,
                                    '-t'], capture_output=True, text=True, timeout=120)
                if 'does not run in' not in r.stdout + r.stderr:
                    runs[d].add(pl)
    return runs


def main():
    src, build = srcdir(), builddir()
    argv = [os.path.join(build, 'tools', 'siftctl'), 'params', '--list',
            '--filterd', os.path.join(build, 'filterd', 'filterd'),
            '--policyd', os.path.join(build, 'policyd', 'policyd'),
            '--plugin-directory', os.path.join(build, 'plugins')]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, 'siftctl params --list runs', r.stderr)
    params = {}
    for line in r.stdout.splitlines():
        f = line.split('\t')
        if len(f) != 8:
            check(False, 'siftctl params line has 8 fields', line)
            continue
        params[f[1]] = {'scope': f[0], 'type': f[2], 'default': f[3], 'doc': f[7]}
    scopes = {p['scope'] for p in params.values()}
    check({'common', 'filterd', 'policyd'} <= scopes, 'common, filterd and policyd tables read',
          sorted(scopes))
    plugins = sorted(scopes - {'common', 'filterd', 'policyd'})
    check(len(plugins) >= 5, 'plugin tables read', plugins)

    undocumented = sorted(n for n, p in params.items() if not p['doc'].strip())
    check(not undocumented, 'every parameter has a doc string', undocumented)

    readme = os.path.join(src, 'README.md')
    top = table_names(readme)
    check('<plugin>_error_action' in top, 'README.md documents <plugin>_error_action')
    unknown = sorted('README.md:%d: %s' % (ln, n) for n, ln in top.items()
                     if n not in params and n != '<plugin>_error_action')
    check(not unknown, 'README.md names only existing parameters', unknown)
    missing = sorted(n for n, p in params.items()
                     if p['scope'] in ('common', 'filterd', 'policyd') and n not in top)
    check(not missing, 'README.md documents every common, filterd and policyd parameter', missing)

    for pl in plugins:
        path = os.path.join(src, 'plugins', pl, 'README.md')
        if not os.path.exists(path):
            check(False, 'plugins/%s/README.md exists' % pl)
            continue
        # a plugin README may leave out its prefix ("Every setting is
        # clamav_<name>"): a name means <plugin>_<name> when that exists
        names = {}
        for n, ln in table_names(path).items():
            names.setdefault(pl + '_' + n if pl + '_' + n in params else n, ln)
        rel = os.path.relpath(path, src)
        unknown = sorted('%s:%d: %s' % (rel, ln, n) for n, ln in names.items() if n not in params)
        check(not unknown, '%s names only existing parameters' % rel, unknown)
        missing = sorted(n for n, p in params.items() if p['scope'] == pl and n not in names
                         and n != pl + '_error_action')
        check(not missing, '%s documents every %s_ parameter' % (rel, pl), missing)

    docs = [readme] + sorted(glob.glob(os.path.join(src, 'docs', '*.md')) +
                             glob.glob(os.path.join(src, 'plugins', '*', 'README.md')))
    runs = plugin_daemons(build, plugins)
    check(runs['filterd'] and runs['policyd'] and runs['filterd'] != runs['policyd'],
          'which plugins run in which daemon', runs)
    settings = 0
    for path in docs:
        rel = os.path.relpath(path, src)
        wrong = []
        for daemon, ln, name, value in conf_blocks(path):
            settings += 1
            p = params.get(name)
            ok = p is not None and p['scope'] in ('common', daemon) + tuple(runs[daemon])
            ok = ok or any(name == pl + '_error_action' for pl in runs[daemon])
            if not ok:
                wrong.append('%s:%d: %s (%s)' % (rel, ln, name, daemon))
            if name in ('inbound_plugins', 'originating_plugins'):
                bad = [pl for pl in value.replace(',', ' ').split() if pl != '...' and pl not in runs[daemon]]
                if bad:
                    wrong.append('%s:%d: %s = %s: %s not a plugin of %s' % (rel, ln, name, value,
                                                                           ' '.join(bad), daemon))
        check(not wrong, '%s: its filterd.conf/policyd.conf blocks name only parameters and plugins '
              'of that daemon' % rel, wrong)
    check(settings >= 10, 'filterd.conf/policyd.conf blocks found in the documents', settings)

    # the defaults the documents state
    def param_of(name, pl):
        if pl and pl + '_' + name in params:
            return pl + '_' + name
        return name if name in params else None

    stated = 0
    for path in docs:
        rel = os.path.relpath(path, src)
        pl = os.path.basename(os.path.dirname(path)) if rel.startswith('plugins' + os.sep) else ''
        wrong = []
        for ln, name, cell in table_defaults(path):
            n = param_of(name, pl)
            if n is None:
                continue
            ok = default_matches(cell, params[n]['default'])
            if ok is not None:
                stated += 1
            if ok is False:
                wrong.append('%s:%d: %s: documented %s, the default is "%s"' % (rel, ln, n, cell,
                                                                                 params[n]['default']))
        for ln, name, value in prose_defaults(path):
            n = param_of(name, pl)
            if n is None:
                continue  # a Postfix parameter, a rule option, ...
            stated += 1
            if not default_matches('`%s`' % value, params[n]['default']):
                wrong.append('%s:%d: %s: documented "%s", the default is "%s"' % (rel, ln, n, value,
                                                                                   params[n]['default']))
        check(not wrong, '%s: the defaults it states are the defaults' % rel, wrong)
    check(stated >= 200, 'documented defaults found', stated)

    # docs/policyd.md describes policyd's own parameters
    pd = os.path.join(src, 'docs', 'policyd.md')
    names = table_names(pd)
    missing = sorted(n for n, p in params.items() if p['scope'] == 'policyd' and n not in names)
    check(not missing, 'docs/policyd.md documents every policyd parameter', missing)
    unknown = sorted('docs/policyd.md:%d: %s' % (ln, n) for n, ln in names.items()
                     if params.get(n, {}).get('scope') != 'policyd')
    check(not unknown, 'docs/policyd.md lists only policyd parameters', unknown)

    man = os.path.join(build, 'man', 'sift.conf.5')
    if os.path.exists(man):
        text = open(man, encoding='utf-8').read().replace('\\-', '-')
        absent = sorted(n for n in params if '\n.B %s\n' % n not in text)
        check(not absent, 'sift.conf(5) names every parameter', absent)
    else:
        check(False, 'sift.conf(5) was generated', man)
    return done()


if __name__ == '__main__':
    sys.exit(main())
