#!/usr/bin/python3
"""The hostile From/Sender/Reply-To table (hostile_rows.py): every value goes
through the core's address-list parser and through the three plugins that
decide on addresses, and each must agree with the row's one answer.

- the parser (addrlist_dump, linked with lib/): the whole mailbox list, or
  invalid;
- senderlogin (`siftctl test --auth alice`, a login map in which alice owns
  nothing, senderlogin_header_action = header): the address of the first
  mismatch it reports is the first mailbox of From, "(unparseable)" for an
  invalid value, no report when the list has no mailbox;
- DKIM's signing-domain choice (profile originating, a signing table that
  names a key after the domain it is asked for, so that the plugin logs
  `signing table names key "DOMAIN"`): the domain of From's one mailbox;
  nothing when From has no mailbox, several, an invalid value or a domain
  literal (DKIM signs for one domain name);
- the spam engine's From:addr, Sender:addr and Reply-To:addr (one rule per
  row and header matching the expected value exactly): every mailbox's
  address, one a line (SpamAssassin 4's header rules join get()'s list),
  "" for an invalid value or one with no mailbox.

Each message carries the row's value in From, Sender and Reply-To.
Prints "N passed, N failed"."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402
from hostile_rows import ROWS, INVALID  # noqa: E402

SIFTCTL = sifttest.program('siftctl')
DUMP = os.path.join(sifttest.builddir(), 'tests', 'addrlist_dump')
HEADERS = (('From', 'F'), ('Sender', 'S'), ('Reply-To', 'R'))


def raw(value):
    return value if isinstance(value, bytes) else value.encode('utf-8')


def regex_literal(s):
    """s as a PCRE literal: ASCII punctuation escaped, / too."""
    out = []
    for ch in s:
        out.append('\\' + ch if ord(ch) < 128 and not ch.isalnum() else ch)
    return ''.join(out)


def show(value):
    v = raw(value)
    return repr(v[:80] + (b'...' if len(v) > 80 else b''))


def parser_rows(tmp):
    path = os.path.join(tmp, 'values')
    with open(path, 'wb') as f:
        f.write(b'\x1e'.join(raw(v) for v, _ in ROWS))
    r = subprocess.run([DUMP, path], capture_output=True, timeout=60)
    lines = r.stdout.decode('utf-8', 'surrogateescape').split('\n')[:-1]
    check(r.returncode == 0 and len(lines) == len(ROWS), 'parser: one answer per row', r.stderr)
    for (value, want), line in zip(ROWS, lines):
        f = line.split('\x1f')
        got = INVALID if f[0] == 'INVALID' else f[1:]
        check(got == want, 'parser: %s' % show(value), 'got %r, want %r' % (got, want))


def setup(tmp):
    rules = os.path.join(tmp, 'rules.cf')
    with open(rules, 'wb') as f:
        for i, (value, want) in enumerate(ROWS):
            every = '\\n'.join(regex_literal(a) for a in want) if want else ''
            for hdr, tag in HEADERS:
                f.write(('header R%d%s %s:addr =~ /^%s$/\nscore R%d%s 0.001\n' % (
                    i, tag, hdr, every, i, tag)).encode('utf-8'))
    with open(os.path.join(tmp, 'signing.pcre'), 'w') as f:
        f.write('/^([^@]+)$/ $1\n')
    with open(os.path.join(tmp, 'logins'), 'w') as f:
        f.write('bob@nowhere.example bob\n')
    r = subprocess.run([SIFTCTL, 'dkim', 'genkey', '-d', 'sign.example', '-s', 's1', '-t', 'ed25519',
                        '-D', tmp], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, 'a DKIM key', r.stderr)
    return sifttest.write_conf(os.path.join(tmp, 'filterd.conf'), {
        'plugin_directory': sifttest.plugin_directory(),
        'inbound_plugins': 'senderlogin spam dkim', 'originating_plugins': 'senderlogin spam dkim',
        'myhostname': 'mx.sift.test', 'filterd_user': sifttest.daemon_user(),
        'quarantine_directory': os.path.join(tmp, 'quarantine'), 'tmpdir': tmp,
        'senderlogin_login_maps': 'texthash:%s' % os.path.join(tmp, 'logins'),
        'senderlogin_envelope_check': 'no', 'senderlogin_header_action': 'header',
        'senderlogin_header_name': 'X-Login-Mismatch',
        'spam_rules': rules, 'spam_hyperscan': 'no', 'spam_cache_directory': '',
        'spam_tag_level': '1000', 'spam_tag2_level': '1000', 'spam_kill_level': '1000',
        'dkim_key_table': 'inline:{ {k = sign.example:s1:%s} }' % os.path.join(tmp, 'sign.example.s1.key'),
        'dkim_signing_table': 'pcre:%s' % os.path.join(tmp, 'signing.pcre'),
        'dkim_error_action': 'dunno'})


def consumers(tmp, conf, i, value, want):
    msg = os.path.join(tmp, 'm.eml')
    with open(msg, 'wb') as f:
        for hdr, _ in HEADERS:
            f.write(hdr.encode() + b': ' + raw(value) + b'\r\n')
        f.write(b'To: bob@example.com\r\nSubject: row %d\r\n\r\nHello.\r\n' % i)
    r = subprocess.run([SIFTCTL, '-c', conf, 'test', '--json', '--profile', 'originating', '--auth', 'alice',
                        '--from', 'alice@sign.example', '--to', 'bob@example.com', msg],
                       capture_output=True, timeout=120)
    import json
    try:
        res = json.loads(r.stdout.decode('utf-8', 'surrogateescape'))
    except ValueError:
        check(False, 'row %d: siftctl test' % i, r.stdout + r.stderr)
        return
    err = r.stderr.decode('utf-8', 'surrogateescape')
    what = show(value)
    # senderlogin
    marks = [h['value'] for h in res.get('headers', []) if h.get('name') == 'X-Login-Mismatch']
    got = None
    if marks:
        got = marks[0].split('; address=', 1)[1] if '; address=' in marks[0] else marks[0]
    exp = '(unparseable)' if want is INVALID else (want[0] if want else None)
    if exp is not None:
        exp = ''.join(' ' if ord(c) < 0x20 else c for c in exp)
    check(got == exp, 'senderlogin: %s' % what, 'got %r, want %r' % (got, exp))
    # DKIM
    key = 'signing table names key "'
    got = None
    for line in err.splitlines():
        if key in line:
            got = line.split(key, 1)[1].rsplit('"', 1)[0]
    exp = None
    if want is not INVALID and len(want) == 1 and not want[0].rsplit('@', 1)[1].startswith('['):
        exp = want[0].rsplit('@', 1)[1]
    check(got == exp, 'dkim: %s' % what, 'got %r, want %r\n%s' % (got, exp, err))
    # spam
    syms = {s['name'] for s in res.get('symbols', [])}
    for _, tag in HEADERS:
        check('R%d%s' % (i, tag) in syms, 'spam %s:addr: %s' % (tag, what),
              'want %r; symbols %s' % ('\n'.join(want) if want else '', sorted(syms)))


def main():
    tmp = sifttest.scratch('sift-hostile-')
    os.chmod(tmp, 0o755)
    check(len(ROWS) >= 150, 'at least 150 rows (%d)' % len(ROWS))
    parser_rows(tmp)
    conf = setup(tmp)
    only = os.environ.get('HOSTILE_ROWS')
    for i, (value, want) in enumerate(ROWS):
        if only is None or str(i) in only.split(','):
            consumers(tmp, conf, i, value, want)
    return done()


if __name__ == '__main__':
    sys.exit(main())
