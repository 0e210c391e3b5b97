#!/usr/bin/python3
"""dmarc plugin through a real Postfix: filterd (inbound_plugins = spf dkim
arc dmarc, SPF checked by filterd itself) as smtpd_milters of a private Postfix
instance (tests/lib/sifttest.py), with the local DNS server publishing SPF,
DKIM and DMARC records. The client is 127.0.0.1.

  1. reject.test publishes p=reject and an SPF record that allows nobody: an
     unsigned message from it is refused at end of data with 550 5.7.1
     naming the domain, and nothing is delivered;
  2. the same From, DKIM-signed by reject.test (dkimpy), is delivered with
     one Authentication-Results header holding spf=fail, dkim=pass and
     dmarc=pass;
     The same with three forged Authentication-Results claiming our
     authserv-id (at different positions), a foreign one and two
     signatures: the forged ones are gone, the foreign one kept, and our
     one header, at the top, holds spf, dkim for each signature, arc and
     dmarc;
  3. a p=quarantine failure (quar.test) is put in Postfix's hold queue;
  4. a dead DNS zone (_dmarc.dead.test never answers) gives temperror: the
     message is delivered with dmarc=temperror, not refused;
  5. the rows of reject.test's three messages (dmarc_report_store = file:)
     become an aggregate report, mailed by `siftctl dmarc report --send`
     with the private Postfix's sendmail to reject.test's rua= (bob@sift.test,
     an external destination verified by its _report._dmarc record) and
     delivered; the attached report validates against the schema.
  6. (the arc plugin, before dmarc) reject.test's unaligned mail forwarded
     by list.test, in arc_trusted_sealers, whose ARC set (dkimpy) says its
     first hop saw spf=pass for reject.test: accepted, delivered with one
     Authentication-Results from us holding arc=pass and dmarc=fail with
     the override recorded, and with our own ARC set i=2 (mail to sift.test
     is sealed by fwd.test), which dkimpy verifies;
  7. the same forwarded by other.test (a valid chain, not trusted): 550.

Run as root with SIFT_SRCDIR / SIFT_BUILDDIR set (meson test does).
"""

import email
import gzip
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'lib'))
import dnsserver  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check  # noqa: E402
import dkim  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'arc', 'tests'))
from test_arc import py_key  # noqa: E402


def genkey(d, domain, sel):
    out = subprocess.run([sifttest.program('siftctl'), 'dkim', 'genkey', '-d', domain, '-s', sel, '-t', 'rsa',
                          '-D', d], check=True, stdout=subprocess.PIPE, text=True).stdout
    with open(os.path.join(d, '%s.%s.key' % (domain, sel)), 'rb') as f:
        key = f.read()
    return key, ''.join(re.findall(r'"([^"]*)"', out.splitlines()[-1]))


def message(frm, subject):
    return ('From: <%s>\r\nTo: <bob@sift.test>\r\nSubject: %s\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n'
            'Message-ID: <%f@client.sift.test>\r\n\r\nHello from the DMARC test.\r\n'
            % (frm, subject, time.time())).encode()


def delivered(pf, subject, wait=20):
    end = time.monotonic() + wait
    while time.monotonic() < end:
        for m in pf.maildir_messages():
            if m.header('Subject') == subject:
                return m
        time.sleep(0.05)
    return None


def ar_text(m):
    return ' '.join(re.sub(r'\s+', ' ', h) for h in m.headers('Authentication-Results')) if m else ''


def forwarded(fwd, key, subject):
    """Alice's reject.test mail as forwarder fwd received and sealed it."""
    data = ('Authentication-Results: %s; spf=pass smtp.mailfrom=alice@reject.test\r\n' % fwd).encode() \
        + message('alice@reject.test', subject)
    return b''.join(dkim.arc_sign(data, b'py', fwd.encode(), key, fwd.encode())) + data


def run_arc(pf, keys, port):
    r = pf.send('list-bounce@list.test', ['bob@sift.test'], forwarded('list.test', keys['list.test'], 'arc one'))
    check(r.accepted, 'p=reject, unaligned, through a trusted ARC sealer: accepted', r)
    m = delivered(pf, 'arc one')
    ours = [h for h in (m.headers('Authentication-Results') if m else []) if h.split(';')[0].strip() == 'mx.sift.test']
    ar = re.sub(r'\s+', ' ', ours[0]) if ours else ''
    check(len(ours) == 1, 'ARC: one Authentication-Results from us', m.headers('Authentication-Results') if m else None)
    check('arc=pass (sets=1 trusted d=list.test) smtp.remote-ip=127.0.0.1 header.oldest-pass=0' in ar,
          'arc=pass with the trusted sealer, remote-ip and oldest-pass', ar)
    check('dmarc=fail (p=REJECT sp=REJECT dis=NONE override=local_policy; arc override: trusted sealer '
          'd=list.test i=1) header.from=reject.test' in ar, 'dmarc=fail with the ARC override recorded', ar)
    check('spf=none' in ar and ar.index('spf=') < ar.index('arc=') < ar.index('dmarc='),
          'spf, arc, dmarc in chain order', ar)
    raw = open(m.path, 'rb').read() if m else b''
    check(re.search(rb'ARC-Seal: i=2; a=rsa-sha256; t=\d+; cv=pass;\s+d=fwd.test; s=s1;', raw) is not None,
          'delivered with our ARC set i=2, cv=pass', raw[:400])
    cv, _, why = dkim.arc_verify(raw.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n'),
                                 dnsfunc=dnsserver.dkimpy_dnsfunc(port))
    check(cv == b'pass', 'our seal on delivered mail verifies with dkimpy', why)
    r = pf.send('other-bounce@other.test', ['bob@sift.test'], forwarded('other.test', keys['other.test'], 'arc two'))
    check(r.rejected_at() == 'eom' and r.eom[0] == 550 and 'reject.test' in r.eom[1],
          'the same through an untrusted ARC sealer: 550 at end of data', r)


def run(pf, key, key2):
    # 1. p=reject, SPF fail, no DKIM: refused at end of data
    r = pf.send('bounce@reject.test', ['bob@sift.test'], message('alice@reject.test', 'dmarc one'))
    check(r.rejected_at() == 'eom' and r.eom[0] == 550 and r.eom[1].startswith('5.7.1')
          and 'reject.test' in r.eom[1], 'p=reject, unaligned: 550 5.7.1 naming the domain', r)
    check(delivered(pf, 'dmarc one', wait=2) is None, 'p=reject, unaligned: not delivered')

    # 2. the same, signed by the From domain: delivered, dmarc=pass
    body = message('alice@reject.test', 'dmarc two')
    signed = dkim.sign(body, b's1', b'reject.test', key, include_headers=[b'from', b'to', b'subject']) + body
    r = pf.send('bounce@reject.test', ['bob@sift.test'], signed.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n'))
    check(r.accepted, 'aligned DKIM: accepted', r)
    m = delivered(pf, 'dmarc two')
    ar = ar_text(m)
    check('dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=reject.test' in ar and 'dkim=pass' in ar
          and 'spf=fail' in ar, 'aligned DKIM: delivered with dmarc=pass, dkim=pass, spf=fail', ar)
    ars = m.headers('Authentication-Results') if m else []
    check(len(ars) == 1 and ars[0].split(';')[0].strip() == 'mx.sift.test',
          'one Authentication-Results, with our authserv-id', ars)

    # 2b. forged Authentication-Results with our authserv-id (three, at
    # different positions) removed; a foreign one kept; two signatures: our
    # one header holds spf, dkim twice and dmarc
    body = message('alice@reject.test', 'dmarc two-b')
    signed = dkim.sign(body, b's1', b'reject.test', key, include_headers=[b'from', b'to', b'subject']) + body
    signed = dkim.sign(signed, b's2', b'reject.test', key2, include_headers=[b'from', b'subject']) + signed
    forged = (b'Authentication-Results: mx.sift.test; dmarc=pass header.from=reject.test\r\n'
              b'Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n'
              b'Authentication-Results: (forged) MX.sift.test; dkim=pass header.d=bank.test\r\n'
              b'X-Filler: 1\r\n'
              b'Authentication-Results: mx.sift.test; spf=pass smtp.mailfrom=forged@bank.test\r\n')
    data = (forged + signed).replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
    r = pf.send('bounce@reject.test', ['bob@sift.test'], data)
    m = delivered(pf, 'dmarc two-b')
    ars = [re.sub(r'\s+', ' ', h) for h in m.headers('Authentication-Results')] if m else []
    ours = [h for h in ars if h.split(';')[0].strip().lower() == 'mx.sift.test']
    check(r.accepted and len(ours) == 1 and 'bank.test' not in ' '.join(ars) and 'other.example' in ' '.join(ars),
          'delivered: forged A-R removed, the foreign one kept, one of ours', ars)
    res = [x.strip().split('=')[0] for x in ours[0].split(';')[1:]] if ours else []
    check(res == ['spf', 'dkim', 'dkim', 'arc', 'dmarc'] and 'header.s=s1' in ours[0] and 'header.s=s2' in ours[0],
          'delivered: our A-R holds spf, dkim for both signatures, arc, dmarc', ours)
    hdrs = m.header_block() if m else ''
    low = '\n' + hdrs.lower()
    check(-1 < low.find('\nauthentication-results: mx.sift.test') < low.find('\ndkim-signature:'),
          'delivered: our A-R above the signatures (inserted at the top)', hdrs[:2500])

    # 3. p=quarantine: held
    r = pf.send('bounce@quar.test', ['bob@sift.test'], message('alice@quar.test', 'dmarc three'))
    check(r.accepted, 'p=quarantine: accepted', r)
    end = time.monotonic() + 10
    q = []
    while time.monotonic() < end:
        q = [e for e in pf.queue() if e.get('queue_id') == r.queue_id]
        if q and q[0].get('queue_name') == 'hold':
            break
        time.sleep(0.1)
    check(q and q[0].get('queue_name') == 'hold', 'p=quarantine: in the hold queue', q)
    if r.queue_id:
        pf.postsuper('-d', r.queue_id)

    # 4. dead DNS zone: delivered with temperror
    r = pf.send('bounce@dead.test', ['bob@sift.test'], message('alice@dead.test', 'dmarc four'))
    m = delivered(pf, 'dmarc four')
    check(r.accepted and m is not None and 'dmarc=temperror' in ar_text(m),
          'dead DNS zone: delivered with dmarc=temperror', (r, ar_text(m)))


def report(pf, fd, d):
    """5. The aggregate report of reject.test's messages, mailed with the
    private Postfix's sendmail to its rua= (bob@sift.test, verified by
    reject.test._report._dmarc.sift.test) and delivered."""
    wrapper = os.path.join(d, 'sendmail')
    with open(wrapper, 'w') as f:
        f.write('#!/bin/sh\nMAIL_CONFIG=%s exec /usr/sbin/sendmail "$@"\n' % pf.config_dir)
    os.chmod(wrapper, 0o755)
    # today's rows as yesterday's: the reports of a day are sent once it
    # is over (siftctl refuses --send of today)
    today = time.strftime('%Y-%m-%d', time.gmtime())
    day = time.strftime('%Y-%m-%d', time.gmtime(time.time() - 86400))
    rows = os.path.join(d, 'rows')
    if os.path.exists(os.path.join(rows, today + '.rows')):
        os.rename(os.path.join(rows, today + '.rows'), os.path.join(rows, day + '.rows'))
    r = subprocess.run([sifttest.program('siftctl'), '-c', fd.conf, '-o', 'dmarc_report_sendmail=' + wrapper,
                        'dmarc', 'report', '--date', day, '--send'], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode()
    check(r.returncode == 0 and 'to bob@sift.test' in out, 'report --send through Postfix\'s sendmail', out)
    end = time.monotonic() + 20
    m = None
    while m is None and time.monotonic() < end:
        m = next((x for x in pf.maildir_messages() if ' '.join((x.header('Subject') or '').split()).startswith(
            'Report Domain: reject.test Submitter: ')), None)
        time.sleep(0.1)
    check(m is not None, 'the report delivered to the rua= address', out)
    if m is None:
        return
    msg = email.message_from_bytes(m.raw)
    gz = [p for p in msg.walk() if p.get_content_type() == 'application/gzip']
    xml = gzip.decompress(gz[0].get_payload(decode=True)) if gz else b''
    path = os.path.join(d, 'report.xml')
    with open(path, 'wb') as f:
        f.write(xml)
    v = subprocess.run(['xmllint', '--noout', '--schema', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                       'dmarc-rua.xsd'), path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    counts = sum(int(c) for c in re.findall(rb'<count>(\d+)</count>', xml))
    check(v.returncode == 0 and counts == 3, 'the delivered report: valid, the three reject.test messages',
          v.stdout.decode() + xml.decode('utf-8', 'replace')[:800])


def main():
    if os.geteuid() != 0:
        check(False, 'needs root (private Postfix)')
        return sifttest.done()
    d = tempfile.mkdtemp(prefix='sift-dmarc-pf-')
    os.chmod(d, 0o755)
    key, rec = genkey(d, 'reject.test', 's1')
    key2, rec2 = genkey(d, 'reject.test', 's2')
    _, fwd_rec = genkey(d, 'fwd.test', 's1')
    keys, recs = {}, {}
    for fwd in ('list.test', 'other.test'):
        keys[fwd], recs[fwd] = py_key(d, fwd)
    zones = {'.': [{"name": ".", "type": "SOA", "data": "ns.root.test. hostmaster.root.test. 1 3600 600 86400 60"},
                   {'name': 'reject.test', 'type': 'TXT', 'data': 'v=spf1 -all'},
                   {'name': 's1._domainkey.reject.test', 'type': 'TXT', 'data': rec},
                   {'name': 's2._domainkey.reject.test', 'type': 'TXT', 'data': rec2},
                   {'name': '_dmarc.reject.test', 'type': 'TXT',
                    'data': 'v=DMARC1; p=reject; rua=mailto:bob@sift.test'},
                   {'name': 'reject.test._report._dmarc.sift.test', 'type': 'TXT', 'data': 'v=DMARC1'},
                   {'name': 'quar.test', 'type': 'TXT', 'data': 'v=spf1 -all'},
                   {'name': '_dmarc.quar.test', 'type': 'TXT', 'data': 'v=DMARC1; p=quarantine'},
                   {'name': 'dead.test', 'type': 'TXT', 'data': 'v=spf1 ?all'},
                   {'name': '_dmarc.dead.test', 'type': 'TIMEOUT'},
                   {'name': 's1._domainkey.fwd.test', 'type': 'TXT', 'data': fwd_rec},
                   {'name': 'py._domainkey.list.test', 'type': 'TXT', 'data': recs['list.test']},
                   {'name': 'py._domainkey.other.test', 'type': 'TXT', 'data': recs['other.test']}]}
    rows = os.path.join(d, 'rows')
    os.mkdir(rows)
    os.chown(rows, pwd.getpwnam(sifttest.daemon_user()).pw_uid, -1)
    srv = dnsserver.DNSServer(zones)
    srv.start()
    fd = pf = None
    try:
        fd = sifttest.start_daemon('filterd', d, {
            'inbound_plugins': 'spf dkim arc dmarc', 'originating_plugins': '',
            'dns_servers': '127.0.0.1:%d' % srv.port, 'dns_timeout': '1s', 'authserv_id': 'mx.sift.test',
            'spf_filterd_mode': 'check', 'dkim_sign': 'no', 'tmpdir': d,
            'dmarc_report_store': 'file:' + rows,
            'dkim_key_table': 'inline:{ fwd = fwd.test:s1:%s/fwd.test.s1.key }' % d,
            'arc_sign_key': 'fwd', 'arc_sign_recipients': 'inline:{ sift.test=yes }',
            'arc_trusted_sealers': 'inline:{ list.test=yes }'})
        pf = sifttest.Postfix(milters=['inet:127.0.0.1:%d' % fd.port])
        pf.start()
        run(pf, key, key2)
        report(pf, fd, d)
        run_arc(pf, keys, srv.port)
    finally:
        sifttest.stop_all([srv, fd, pf])
        failed = sifttest.checks.failed
        if failed and fd:
            print('filterd log:\n' + fd.log_tail(40))
        if failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(d, ignore_errors=True)
        else:
            print('kept', d)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
