#!/usr/bin/python3
"""test_dmarc.py - the dmarc plugin in filterd's inbound chain (spf, dkim,
dmarc), through `siftctl test --json` (the same chain and resolver filterd
runs, without an MTA), against the local DNS server (tests/lib/dnsserver.py)
publishing SPF, DKIM key and DMARC records. Messages are DKIM-signed with
dkimpy (python3-dkim) with keys made by `siftctl dkim genkey`.

Checks (each on the verdict, the reply, the DMARC_* symbol and the
dmarc= entry of the one Authentication-Results header, which holds the
spf, dkim and dmarc results in that order): p=reject with unaligned SPF and no
DKIM refused 550 5.7.1 naming the domain; aligned DKIM passes; SPF aligned
relaxed passes; strict adkim/aspf refuse a subdomain's identifiers and
accept the exact domain (also with a second signature of a subdomain);
a failing aligned signature does not pass; the organizational domain's
record (sub.example.co.uk -> example.co.uk through the Public Suffix List)
with sp=; pct=0 downgrades reject to quarantine; quarantine as hold, tag
and the quarantine store; p=none gives DMARC_SOFTFAIL and no action; no
record, several records, an invalid record; a dead DNS zone gives
temperror and never rejects (tempfail only with dmarc_temperror_action);
so does an aligned DKIM signature whose key lookup times out or gets
SERVFAIL, or an aligned SPF temperror, when nothing aligned passes (an
aligned pass still passes);
no From, several From fields (even of one domain), several From
domains, a malformed From field or a domain literal, also next to a valid
mailbox of another domain (permerror, never that domain's evaluation;
rejected with dmarc_bad_from_action = reject); dmarc_no_enforce_domains and
dmarc_reject_action overrides; a dmarc_no_enforce_domains lookup that fails
in a running filterd (a cdb table renamed away, through miltertest) gives
dmarc_error_action (451 4.7.1), not a reject or hold; a missing Public Suffix List refuses to
start. Prints "N passed, N failed".
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'lib'))
import dnsserver  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check, check_eq  # noqa: E402
import dkim  # noqa: E402

SIFTCTL = sifttest.program('siftctl')
FILTERD = sifttest.program('filterd')
CLIENT = '192.0.2.10'
SOA = {"name": ".", "type": "SOA", "data": "ns.root.test. hostmaster.root.test. 1 3600 600 86400 60"}


def txt(name, data):
    return {"name": name, "type": "TXT", "data": data}


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='sift-dmarc-')
        os.chmod(self.dir, 0o755)
        self.keys = {}

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def genkey(self, domain, sel='s1'):
        r = subprocess.run([SIFTCTL, 'dkim', 'genkey', '-d', domain, '-s', sel, '-t', 'rsa', '-b', '1024',
                            '-D', self.dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        rec = ''.join(re.findall(r'"([^"]*)"', out.splitlines()[-1]))
        with open(self.path('%s.%s.key' % (domain, sel)), 'rb') as f:
            self.keys[domain] = (sel, f.read())
        return txt('%s._domainkey.%s' % (sel, domain), rec)


def message(frm, extra=()):
    h = ['From: %s' % frm if frm is not None else None, 'To: Bob <bob@sift.test>', 'Subject: DMARC test',
         'Date: Mon, 01 Jan 2024 10:00:00 +0000', 'Message-ID: <1@client.test>']
    h = [x for x in h if x is not None] + list(extra)
    return ('\r\n'.join(h) + '\r\n\r\nHello.\r\n').encode()


def sign(env, data, domain, selector=None):
    sel, key = env.keys[domain]
    sel = selector or sel
    sig = dkim.sign(data, sel.encode(), domain.encode(), key, include_headers=[b'from', b'to', b'subject'])
    return sig.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n') + data


def run(env, data, sender, opts=()):
    return sifttest.siftctl_test(env.conf, data, ['--client', CLIENT, '--helo', 'client.test', '--from', sender,
                                                  '--to', 'bob@sift.test'], opts=opts, timeout=60)


def dsym(r):
    return [(s['name'], s.get('option')) for s in r.get('symbols') or [] if s['name'].startswith('DMARC_')]


def dmarc_ar(r):
    """The dmarc= entry of our Authentication-Results, '' when absent; checks
    that the message gets one header with our authserv-id and the spf, dkim
    and dmarc results in that order, one per folded line."""
    ars = [h['value'] for h in r.get('headers') or [] if h['name'] == 'Authentication-Results']
    check(len(ars) == 1 and ars[0].startswith('mx.sift.test; spf='), 'one A-R, our authserv-id', ars)
    if len(ars) != 1:
        return ''
    entries = ars[0].split('; ', 1)[1].split(';\r\n\t')
    methods = [e.split('=', 1)[0] for e in entries]
    check(methods[0] == 'spf' and methods[-1] == 'dmarc' and set(methods[1:-1]) == {'dkim'},
          'A-R entries: spf, dkim..., dmarc', ars[0])
    return entries[-1] if methods[-1] == 'dmarc' else ''


def expect(r, what, action, sym, ar, reply=None):
    check_eq(r.get('action'), action, what + ': action')
    check_eq([s[0] for s in dsym(r)], [sym], what + ': symbol')
    check_eq(dmarc_ar(r), ar, what + ': Authentication-Results')
    if reply is not None:
        check(reply in (r.get('reply') or ''), what + ': reply ' + reply, r.get('reply'))


def zones(env):
    recs = [SOA,
            # SPF: the test client may send for these
            txt('reject.test', 'v=spf1 ip4:%s -all' % CLIENT),
            txt('mail.reject.test', 'v=spf1 ip4:%s -all' % CLIENT),
            txt('other.test', 'v=spf1 ip4:%s -all' % CLIENT),
            txt('mail.strict.test', 'v=spf1 ip4:%s -all' % CLIENT),
            txt('strict.test', 'v=spf1 ip4:%s -all' % CLIENT),
            # DMARC
            txt('_dmarc.reject.test', 'v=DMARC1; p=reject; rua=mailto:dmarc@reject.test'),
            txt('_dmarc.strict.test', 'v=DMARC1; p=reject; adkim=s; aspf=s'),
            txt('_dmarc.example.co.uk', 'v=DMARC1; p=reject; sp=quarantine'),
            txt('_dmarc.pct.test', 'v=DMARC1; p=reject; pct=0'),
            txt('_dmarc.quar.test', 'v=DMARC1; p=quarantine'),
            txt('_dmarc.monitor.test', 'v=DMARC1; p=none'),
            txt('_dmarc.two.test', 'v=DMARC1; p=reject'), txt('_dmarc.two.test', 'v=DMARC1; p=none'),
            txt('_dmarc.bad.test', 'v=DMARC1; p=bogus'),
            txt('_dmarc.mixed.test', 'v=spf1 -all'),
            {"name": "_dmarc.dead.test", "type": "TIMEOUT"},
            # DKIM keys and an SPF record that cannot be had now
            {"name": "tmo._domainkey.reject.test", "type": "TIMEOUT"},
            {"name": "sf._domainkey.reject.test", "type": "SERVFAIL"},
            {"name": "spftmp.reject.test", "type": "TIMEOUT"},
            txt('nothing.test', 'v=spf1 -all')]
    for d in ('reject.test', 'mail.reject.test', 'strict.test', 'mail.strict.test', 'sub.example.co.uk'):
        recs.append(env.genkey(d))
    return {".": recs}


def one_ar(env):
    """One Authentication-Results for our authserv-id: incoming ones that
    claim it (any case, after a comment, several, at any position) are
    deleted by the host, highest index first and before our header is
    inserted at the top, whichever plugins run; spf, both DKIM signatures
    and dmarc are in our one header, in RFC 8601 form."""
    body = message('alice@reject.test')
    signed = sign(env, sign(env, body, 'reject.test'), 'mail.reject.test')
    forged = (b'Authentication-Results: mx.sift.test; dmarc=pass header.from=reject.test\r\n'
              b'Received: from a by b; Mon, 01 Jan 2024 10:00:00 +0000\r\n'
              b'Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n'
              b'Authentication-Results: (forged) MX.SIFT.TEST; dkim=pass header.d=reject.test\r\n'
              b'X-Filler: 1\r\n'
              b'Authentication-Results: "mx.sift.test"; spf=pass\r\n')
    want_dels = [('Authentication-Results', 4), ('Authentication-Results', 3), ('Authentication-Results', 1)]
    for chain in ('spf dkim dmarc', 'dmarc', 'spf'):
        # (dmarc alone fails the message: tagged, not refused, so that it gets headers)
        r = run(env, forged + signed, 'bounce@other.test',
                opts=['inbound_plugins=' + chain, 'dmarc_reject_action=tag'])
        edits = r.get('headers') or []
        dels = [(e['name'], e['index']) for e in edits if e['op'] == 'delete']
        check_eq(dels, want_dels, 'chain %s: forged A-R deleted, highest index first' % chain)
        first_ins = next((i for i, e in enumerate(edits) if e['op'] == 'insert'), len(edits))
        check(first_ins >= len(dels) and all(e['op'] == 'delete' for e in edits[:len(dels)]),
              'chain %s: the deletions come before our header' % chain, edits)
    r = run(env, forged + signed, 'bounce@other.test')
    ar = [e for e in r.get('headers') or [] if e['name'] == 'Authentication-Results' and e['op'] == 'insert']
    value = ar[0]['value'] if len(ar) == 1 else ''
    entries = value.split(';\r\n\t') if value else []
    check(len(ar) == 1 and ar[0]['index'] == 0 and value.startswith('mx.sift.test; spf=pass smtp.mailfrom=')
          and len(entries) == 4
          and re.match(r'dkim=pass header\.d=mail\.reject\.test (header\.i=\S+ )?header\.s=s1', entries[1])
          and re.match(r'dkim=pass header\.d=reject\.test (header\.i=\S+ )?header\.s=s1', entries[2])
          and entries[3] == 'dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=reject.test',
          'one A-R at the top: spf, dkim for each signature, dmarc', ar)
    # policyd's Received-SPF (spf_filterd_mode = header): its result in our one A-R, used by dmarc
    own = ('Received-SPF: pass (mx.sift.test: domain of bounce@mail.reject.test designates %s as permitted'
           ' sender)\r\n receiver=mx.sift.test; client-ip=%s; envelope-from="bounce@mail.reject.test";'
           ' helo=client.test;\r\n identity=mailfrom;\r\n'
           'Received: from client.test (client.test [%s]) by mx.sift.test (Postfix) with ESMTP id 4X\r\n'
           % (CLIENT, CLIENT, CLIENT)).encode()
    r = run(env, own + forged + body, 'bounce@mail.reject.test', opts=['spf_filterd_mode=header'])
    ar = [e['value'] for e in r.get('headers') or [] if e['name'] == 'Authentication-Results' and e['value']]
    check(len(ar) == 1 and ar[0].startswith('mx.sift.test; spf=pass smtp.mailfrom=bounce@mail.reject.test')
          and ar[0].endswith('dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=reject.test')
          and ('SPF_PASS', 'header') in [(x['name'], x.get('option')) for x in r.get('symbols') or []],
          "policyd's Received-SPF: spf=pass in our one A-R, dmarc=pass by it", (ar, r.get('symbols')))
    # a plugin's own authserv-id is ours too
    r = run(env, b'Authentication-Results: dmarc.sift.test; dmarc=pass\r\n' + signed, 'bounce@other.test',
            opts=['dmarc_authserv_id=dmarc.sift.test'])
    dels = [(e['name'], e['index']) for e in r.get('headers') or [] if e['op'] == 'delete']
    check_eq(dels, [('Authentication-Results', 1)], "a plugin's authserv-id: forged A-R with it deleted")


def dmarc_check(env, data, *opts):
    path = env.path('check.eml')
    with open(path, 'wb') as f:
        f.write(data)
    r = subprocess.run([SIFTCTL, '-c', env.conf, 'dmarc', 'check', path] + list(opts), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    out = r.stdout.decode()
    res = dict(line.split('=', 1) for line in out.splitlines() if re.match(r'^(dmarc|policy|disposition)=', line))
    res['out'] = out + r.stderr.decode()
    res['rc'] = r.returncode
    return res


def check_tool(env):
    """siftctl dmarc check: the plugin's decision from given SPF/DKIM
    results, or DKIM verified in the file by the dkim plugin."""
    table = [
        ('alice@reject.test', ['--spf', 'pass:reject.test'], 'pass', 'reject', '_dmarc.reject.test'),
        ('alice@reject.test', ['--spf', 'pass:other.test'], 'fail', 'reject', '_dmarc.reject.test'),
        ('alice@mail.reject.test', ['--dkim', 'pass:reject.test'], 'pass', 'reject', '_dmarc.reject.test'),
        ('alice@strict.test', ['--dkim', 'pass:mail.strict.test', '--spf', 'pass:strict.test'], 'pass', 'reject',
         'adkim=s; aspf=s'),
        ('alice@strict.test', ['--dkim', 'pass:mail.strict.test', '--dkim', 'fail:strict.test'], 'fail', 'reject',
         'adkim=s'),
        ('alice@sub.example.co.uk', ['--spf', 'fail:sub.example.co.uk'], 'fail', 'quarantine',
         '_dmarc.example.co.uk: v=DMARC1; p=reject; sp=quarantine'),
        ('alice@sub.example.co.uk', ['--dkim', 'pass:example.co.uk'], 'pass', 'quarantine', 'example.co.uk'),
        ('alice@quar.test', ['--dkim', 'fail:quar.test'], 'fail', 'quarantine', '_dmarc.quar.test'),
        ('alice@monitor.test', ['--spf', 'softfail:monitor.test'], 'fail', 'none', 'p=none'),
        ('alice@nothing.test', ['--spf', 'pass:nothing.test'], 'none', 'none', 'record: none'),
    ]
    for frm, opts, result, policy, rec in table:
        r = dmarc_check(env, message(frm), *opts)
        what = 'siftctl dmarc check %s %s' % (frm, ' '.join(opts))
        check(r['rc'] == 0 and r.get('dmarc') == result and r.get('policy') == policy and rec in r['out'],
              what + ': dmarc=%s policy=%s, the record used' % (result, policy), r['out'])
    # no options: the dkim plugin verifies the file's signature
    r = dmarc_check(env, sign(env, message('alice@reject.test'), 'mail.reject.test'))
    check(r.get('dmarc') == 'pass' and 'dkim: pass mail.reject.test aligned' in r['out'],
          'siftctl dmarc check without options: DKIM verified in the file', r['out'])
    r = dmarc_check(env, message('alice@reject.test'), '--dkim', 'bogus')
    check(r['rc'] == 2, 'siftctl dmarc check: a bad option refused', r['out'])


def identifier_temperror(env):
    """An aligned identifier that could not be checked (DKIM key lookup
    timed out or SERVFAIL, SPF temperror) with nothing aligned passing:
    dmarc=temperror, never a 550; tempfail with dmarc_temperror_action."""
    temp_ar = 'dmarc=temperror (p=REJECT sp=REJECT dis=NONE; aligned DKIM temperror) header.from=reject.test'
    for sel, what in (('tmo', 'timed out'), ('sf', 'SERVFAIL')):
        data = sign(env, message('alice@reject.test'), 'reject.test', sel)
        r = run(env, data, 'bounce@other.test')
        expect(r, 'aligned DKIM key lookup %s, unaligned SPF pass' % what, 'accept', 'DMARC_TEMPERROR', temp_ar)
        r = run(env, data, 'bounce@other.test', ['dmarc_temperror_action=tempfail'])
        expect(r, 'aligned DKIM key lookup %s, temperror_action=tempfail' % what, 'tempfail', 'DMARC_TEMPERROR',
               temp_ar, '451 4.7.1')
    r = run(env, message('alice@reject.test'), 'bounce@spftmp.reject.test', ['spf_temperror_action=prepend'])
    check(('SPF_TEMPERROR', 'check') in [(x['name'], x.get('option')) for x in r.get('symbols') or []],
          'SPF temperror for spftmp.reject.test', r.get('symbols'))
    expect(r, 'aligned SPF temperror', 'accept', 'DMARC_TEMPERROR',
           'dmarc=temperror (p=REJECT sp=REJECT dis=NONE; aligned SPF temperror) header.from=reject.test')
    # an aligned pass wins over another identifier's temperror
    data = sign(env, sign(env, message('alice@reject.test'), 'reject.test', 'tmo'), 'mail.reject.test')
    r = run(env, data, 'bounce@other.test')
    expect(r, 'aligned DKIM pass and an aligned DKIM temperror', 'accept', 'DMARC_PASS',
           'dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=reject.test')
    r = run(env, sign(env, message('alice@reject.test'), 'reject.test', 'tmo'), 'bounce@mail.reject.test')
    expect(r, 'aligned SPF pass and an aligned DKIM temperror', 'accept', 'DMARC_PASS',
           'dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=reject.test')
    # siftctl dmarc check: a DKIM temperror given
    r = dmarc_check(env, message('alice@reject.test'), '--dkim', 'temperror:reject.test', '--spf', 'pass:other.test')
    check(r['rc'] == 0 and r.get('dmarc') == 'temperror' and r.get('disposition') == 'none'
          and 'dkim: temperror reject.test' in r['out'], 'siftctl dmarc check --dkim temperror:', r['out'])


def bad_from(env):
    """A bad From part is never passed over for a good one: a From field
    the parser rejects, or a mailbox whose domain is not a DNS name, next
    to a valid mailbox of another domain (whose SPF passes) make the whole
    From bad; so do two From fields, even of one domain. permerror, not
    the other domain's evaluation; refused with dmarc_bad_from_action."""
    cases = [
        (['PayPal <alice@reject.test> x', 'x@other.test'], 'several From fields'),
        (['alice@reject.test (Alice', 'x@other.test'], 'several From fields'),
        (['x@other.test', 'PayPal <alice@reject.test> x'], 'several From fields'),
        (['alice@reject.test', 'alice@reject.test'], 'several From fields'),
        (['alice@[192.0.2.1], x@other.test'], 'From domain is not a DNS name'),
        (['x@other.test, alice@[192.0.2.1]'], 'From domain is not a DNS name'),
        (['PayPal <alice@reject.test> x'], 'malformed From field'),
        (['alice@reject.test (Alice'], 'malformed From field'),
        (['x@other.test x@reject.test'], 'malformed From field'),
        (['undisclosed-senders:;'], 'no From address'),
    ]
    for froms, reason in cases:
        data = message(froms[0], ['From: ' + f for f in froms[1:]])
        what = 'From %s' % ' + '.join(repr(f) for f in froms)
        r = run(env, data, 'bounce@other.test')
        expect(r, what, 'accept', 'DMARC_PERMERROR', 'dmarc=permerror (%s)' % reason)
        r = run(env, data, 'bounce@other.test', ['dmarc_bad_from_action=reject'])
        expect(r, what + ', bad_from_action=reject', 'reject', 'DMARC_PERMERROR', 'dmarc=permerror (%s)' % reason,
               '550 5.7.1')


MILTER_LUA = r"""
-- one message through filterd; prints RESULT <550|451|accept|...>
local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.25)
assert(conn, "cannot connect to filterd")
assert(mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", "mx.sift.test", "j", "mx.sift.test") == nil)
assert(mt.conninfo(conn, "client.test", client) == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "connect")
assert(mt.helo(conn, "client.test") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "helo")
assert(mt.mailfrom(conn, sender) == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "mail")
assert(mt.rcptto(conn, "bob@sift.test") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE, "rcpt")
for _, h in ipairs({{"From", from}, {"To", "bob@sift.test"}, {"Subject", "DMARC test"},
		{"Date", "Mon, 01 Jan 2024 10:00:00 +0000"}, {"Message-ID", "<1@client.test>"}}) do
	assert(mt.header(conn, h[1], h[2]) == nil)
end
assert(mt.eoh(conn) == nil)
if not mt.test_option(conn, SMFIP_NOBODY) then
	assert(mt.bodystring(conn, "Hello.\r\n") == nil)
end
assert(mt.macro(conn, string.byte("E"), "i", "4ABCDEF123") == nil)
assert(mt.eom(conn) == nil)
local r = mt.getreply(conn)
if r == SMFIR_REPLYCODE then
	if mt.eom_check(conn, MT_SMTPREPLY, "451", "4.7.1", "Temporary local problem, try again later") then
		print("RESULT 451")
	elseif mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Message rejected: DMARC policy of " .. domain) then
		print("RESULT 550")
	else
		print("RESULT other reply")
	end
elseif mt.eom_check(conn, MT_QUARANTINE) then
	print("RESULT hold")
elseif r == SMFIR_CONTINUE or r == SMFIR_ACCEPT then
	print("RESULT accept")
else
	print("RESULT " .. tostring(r))
end
mt.disconnect(conn)
"""


def no_enforce_failure(env):
    """A dmarc_no_enforce_domains lookup that fails in a running filterd (a
    cdb table whose file was renamed away after start) while the
    disposition is reject or quarantine: an internal error,
    dmarc_error_action (451 4.7.1 by default), never a 550 or a hold on a
    guess; a p=none domain is not affected. Through filterd with
    miltertest playing the MTA."""
    path = os.environ.get('PATH', '') + ':/usr/sbin:/usr/local/sbin'
    postmap, miltertest = shutil.which('postmap', path=path), shutil.which('miltertest', path=path)
    if not postmap or not miltertest:
        print('skip: no postmap or miltertest, dmarc_no_enforce_domains lookup failure not tested')
        return
    mc = env.path('postfix-conf')
    os.makedirs(mc, exist_ok=True)
    open(os.path.join(mc, 'main.cf'), 'w').close()
    table = env.path('noenf')
    with open(table, 'w') as f:
        f.write('reject.test yes\nquar.test yes\nmonitor.test yes\n')
    p = subprocess.run([postmap, 'cdb:' + table], env=dict(os.environ, MAIL_CONFIG=mc),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    check(p.returncode == 0 and os.path.exists(table + '.cdb'), 'postmap cdb:noenf', p.stdout)
    script = env.path('noenf.lua')
    with open(script, 'w') as f:
        f.write(MILTER_LUA)
    settings = dict(env.settings, dmarc_no_enforce_domains='cdb:' + table, filterd_pid_file=env.path('fd.pid'))
    fd = sifttest.start_daemon('filterd', env.dir, settings, name='filterd-noenf')

    def send(frm, domain):
        r = subprocess.run([miltertest, '-D', 'port=%d' % fd.port, '-D', 'client=' + CLIENT,
                            '-D', 'sender=bounce@other.test', '-D', 'from=' + frm, '-D', 'domain=' + domain,
                            '-s', script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode('utf-8', 'replace')
        m = re.search(r'^RESULT (.*)$', out, re.M)
        return m.group(1) if m else 'error: ' + out

    try:
        check_eq(send('alice@reject.test', 'reject.test'), 'accept', 'filterd, no_enforce_domains (cdb): p=reject')
        os.rename(table + '.cdb', table + '.cdb.away')
        check_eq(send('alice@reject.test', 'reject.test'), '451',
                 'filterd, no_enforce_domains lookup failed: p=reject gets dmarc_error_action (451)')
        check_eq(send('a@quar.test', 'quar.test'), '451',
                 'filterd, no_enforce_domains lookup failed: p=quarantine gets dmarc_error_action (451)')
        check_eq(send('a@monitor.test', 'monitor.test'), 'accept',
                 'filterd, no_enforce_domains lookup failed: p=none is not affected')
        log = fd.log()
        check('dmarc_no_enforce_domains cannot be read' in log, 'filterd logs the failed lookup', log[-2000:])
    finally:
        sifttest.stop_all([fd])
        if os.path.exists(table + '.cdb.away'):
            os.rename(table + '.cdb.away', table + '.cdb')


def tests(env):
    # p=reject, SPF passes for an unaligned domain, no DKIM: refused
    r = run(env, message('Alice <alice@reject.test>'), 'bounce@other.test')
    expect(r, 'unaligned SPF under p=reject', 'reject', 'DMARC_REJECT',
           'dmarc=fail (p=REJECT sp=REJECT dis=REJECT) header.from=reject.test', '550 5.7.1')
    check('reject.test' in (r.get('reply') or ''), 'the reply names the domain', r.get('reply'))
    check_eq(dsym(r)[0][1] if dsym(r) else None, 'reject.test', 'the symbol option is the From domain')

    # DKIM aligned (relaxed: a subdomain's signature), SPF aligned relaxed
    r = run(env, sign(env, message('alice@reject.test'), 'mail.reject.test'), 'bounce@other.test')
    expect(r, 'aligned DKIM (relaxed)', 'accept', 'DMARC_PASS',
           'dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=reject.test')
    r = run(env, message('alice@reject.test'), 'bounce@mail.reject.test')
    expect(r, 'aligned SPF (relaxed)', 'accept', 'DMARC_PASS',
           'dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=reject.test')

    # strict: a subdomain's SPF or DKIM does not align, the domain's does
    r = run(env, message('alice@strict.test'), 'bounce@mail.strict.test')
    expect(r, 'aspf=s refuses a subdomain', 'reject', 'DMARC_REJECT',
           'dmarc=fail (p=REJECT sp=REJECT dis=REJECT) header.from=strict.test')
    r = run(env, sign(env, message('alice@strict.test'), 'mail.strict.test'), 'bounce@other.test')
    expect(r, 'adkim=s refuses a subdomain', 'reject', 'DMARC_REJECT',
           'dmarc=fail (p=REJECT sp=REJECT dis=REJECT) header.from=strict.test')
    r = run(env, message('alice@strict.test'), 'bounce@strict.test')
    expect(r, 'aspf=s accepts the domain', 'accept', 'DMARC_PASS',
           'dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=strict.test')
    both = sign(env, sign(env, message('alice@strict.test'), 'strict.test'), 'mail.strict.test')
    r = run(env, both, 'bounce@other.test')
    expect(r, 'adkim=s with a subdomain and the domain signing', 'accept', 'DMARC_PASS',
           'dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=strict.test')
    broken = sign(env, message('alice@reject.test'), 'reject.test').replace(b'Hello.', b'Hullo.')
    r = run(env, broken, 'bounce@other.test')
    expect(r, 'a failing aligned signature', 'reject', 'DMARC_REJECT',
           'dmarc=fail (p=REJECT sp=REJECT dis=REJECT) header.from=reject.test')

    # the organizational domain's record (PSL: co.uk is a public suffix), sp=
    r = run(env, sign(env, message('a@sub.example.co.uk'), 'sub.example.co.uk'), 'bounce@other.test')
    expect(r, 'org-domain record, aligned', 'accept', 'DMARC_PASS',
           'dmarc=pass (p=REJECT sp=QUARANTINE dis=NONE) header.from=sub.example.co.uk')
    r = run(env, message('a@sub.example.co.uk'), 'bounce@other.test')
    expect(r, 'org-domain record: sp=quarantine, held', 'hold', 'DMARC_QUARANTINE',
           'dmarc=fail (p=REJECT sp=QUARANTINE dis=QUARANTINE) header.from=sub.example.co.uk')
    r = run(env, message('a@sub.example.co.uk'), 'bounce@other.test', ['dmarc_quarantine_action=tag'])
    expect(r, 'quarantine as tag', 'accept', 'DMARC_QUARANTINE',
           'dmarc=fail (p=REJECT sp=QUARANTINE dis=QUARANTINE) header.from=sub.example.co.uk')
    qdir = env.path('quarantine')
    os.makedirs(qdir, exist_ok=True)
    os.chmod(qdir, 0o755)
    r = run(env, message('a@quar.test'), 'bounce@other.test',
            ['dmarc_quarantine_action=quarantine', 'quarantine_directory=' + qdir])
    expect(r, 'quarantine store', 'discard', 'DMARC_QUARANTINE',
           'dmarc=fail (p=QUARANTINE sp=QUARANTINE dis=QUARANTINE) header.from=quar.test')
    stored = [f for _, _, fs in os.walk(qdir) for f in fs]
    check(len(stored) > 0, 'the message is in the quarantine store', stored)

    # pct=0: reject becomes quarantine (held)
    r = run(env, message('a@pct.test'), 'bounce@other.test')
    expect(r, 'pct=0', 'hold', 'DMARC_REJECT',
           'dmarc=fail (p=REJECT sp=REJECT dis=QUARANTINE override=sampled_out) header.from=pct.test')

    # p=none, no record, several records, invalid record, not a DMARC record
    r = run(env, message('a@monitor.test'), 'bounce@other.test')
    expect(r, 'p=none', 'accept', 'DMARC_SOFTFAIL',
           'dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=monitor.test')
    r = run(env, message('a@nothing.test'), 'bounce@other.test')
    expect(r, 'no record', 'accept', 'DMARC_NONE', 'dmarc=none (no DMARC record) header.from=nothing.test')
    r = run(env, message('a@two.test'), 'bounce@other.test')
    expect(r, 'several records', 'accept', 'DMARC_NONE',
           'dmarc=none (several DMARC records) header.from=two.test')
    r = run(env, message('a@bad.test'), 'bounce@other.test')
    expect(r, 'invalid record', 'accept', 'DMARC_PERMERROR',
           'dmarc=permerror (invalid DMARC record) header.from=bad.test')
    r = run(env, message('a@mixed.test'), 'bounce@other.test')
    expect(r, 'a TXT record that is not DMARC', 'accept', 'DMARC_NONE',
           'dmarc=none (no DMARC record) header.from=mixed.test')

    # a dead DNS zone: temperror, never a reject
    r = run(env, message('a@dead.test'), 'bounce@other.test')
    expect(r, 'dead DNS zone', 'accept', 'DMARC_TEMPERROR',
           'dmarc=temperror (DNS lookup failed) header.from=dead.test')
    r = run(env, message('a@dead.test'), 'bounce@other.test', ['dmarc_temperror_action=tempfail'])
    expect(r, 'dead DNS zone, temperror_action=tempfail', 'tempfail', 'DMARC_TEMPERROR',
           'dmarc=temperror (DNS lookup failed) header.from=dead.test', '451 4.7.1')

    identifier_temperror(env)

    # From problems (RFC 7489 6.6.1)
    r = run(env, message(None), 'bounce@other.test')
    expect(r, 'no From', 'accept', 'DMARC_PERMERROR', 'dmarc=permerror (no From address)')
    r = run(env, message('a@reject.test, b@other.test'), 'bounce@other.test')
    expect(r, 'several From domains', 'accept', 'DMARC_PERMERROR', 'dmarc=permerror (several From domains)')
    r = run(env, message('a@reject.test', ['From: b@other.test']), 'bounce@other.test',
            ['dmarc_bad_from_action=reject'])
    expect(r, 'two From fields, bad_from_action=reject', 'reject', 'DMARC_PERMERROR',
           'dmarc=permerror (several From fields)', '550 5.7.1')
    r = run(env, message('a@reject.test, b@Reject.test'), 'bounce@mail.reject.test',
            ['dmarc_bad_from_action=reject'])
    expect(r, 'several From addresses of one domain', 'accept', 'DMARC_PASS',
           'dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=reject.test')

    bad_from(env)

    # local overrides
    with open(env.path('noenforce'), 'w') as f:
        f.write('reject.test yes\n')
    r = run(env, message('alice@reject.test'), 'bounce@other.test',
            ['dmarc_no_enforce_domains=texthash:' + env.path('noenforce')])
    expect(r, 'no_enforce_domains', 'accept', 'DMARC_REJECT',
           'dmarc=fail (p=REJECT sp=REJECT dis=NONE override=local_policy) header.from=reject.test')
    no_enforce_failure(env)
    r = run(env, message('alice@reject.test'), 'bounce@other.test', ['dmarc_reject_action=quarantine'])
    expect(r, 'reject_action=quarantine', 'hold', 'DMARC_REJECT',
           'dmarc=fail (p=REJECT sp=REJECT dis=QUARANTINE override=site_policy) header.from=reject.test')
    r = run(env, message('alice@reject.test'), 'bounce@other.test', ['dmarc_reject_action=tag'])
    expect(r, 'reject_action=tag', 'accept', 'DMARC_REJECT',
           'dmarc=fail (p=REJECT sp=REJECT dis=NONE override=site_policy) header.from=reject.test')

    # the Public Suffix List is required
    p = subprocess.run([FILTERD, '-t', '-c', env.conf, '-o', 'filterd_user=' + sifttest.daemon_user(),
                        '-o', 'dmarc_public_suffix_list=' + env.path('missing.dat')],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode('utf-8', 'replace')
    check(p.returncode != 0 and 'dmarc_public_suffix_list' in out, 'a missing suffix list refuses to start', out)


def main():
    env = Env()
    srv = dnsserver.DNSServer(zones(env))
    srv.start()
    env.settings = {
        'plugin_directory': sifttest.plugin_directory(),
        'inbound_plugins': 'spf dkim dmarc', 'originating_plugins': 'dkim',
        'dns_servers': '127.0.0.1:%d' % srv.port, 'dns_timeout': '1s',
        'myhostname': 'mx.sift.test', 'authserv_id': 'mx.sift.test',
        'spf_filterd_mode': 'check', 'dkim_sign': 'no', 'tmpdir': env.dir}
    env.conf = sifttest.write_conf(env.path('filterd.conf'), env.settings)
    try:
        tests(env)
        check_tool(env)
        one_ar(env)
    finally:
        srv.stop()
        if sifttest.checks.failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(env.dir, ignore_errors=True)
        else:
            print('kept', env.dir)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
