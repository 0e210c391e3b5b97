#!/usr/bin/python3
"""arc and dmarc through a real Postfix: filterd (inbound_plugins = spf dkim
arc dmarc, arc_trusted_sealers = list.test, mail to sift.test sealed by
fwd.test) as smtpd_milters of one private Postfix instance, with the local
DNS server publishing the records. reject.test publishes p=reject and an
SPF record that allows nobody; its mail comes through forwarders that
sealed it with dkimpy, their first-hop Authentication-Results saying
spf=pass for reject.test:

  1. through list.test (trusted): accepted, delivered with one
     Authentication-Results from us holding arc=pass and dmarc=fail with
     the override recorded (override=local_policy; arc override: trusted
     sealer d=list.test), and with our ARC set i=2 (cv=pass), which
     dkimpy verifies;
  2. through other.test (a valid chain, not trusted): refused at end of
     data with 550 5.7.1.

Run as root with SIFT_SRCDIR / SIFT_BUILDDIR set (meson test does).
"""

import base64
import logging
import os
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
import dns.resolver  # noqa: E402

logging.disable(logging.CRITICAL)


def py_key(d, domain):
    p = os.path.join(d, 'py-%s.pem' % domain)
    subprocess.run(['openssl', 'genrsa', '-traditional', '-out', p, '2048'], check=True, stderr=subprocess.DEVNULL)
    der = subprocess.run(['openssl', 'rsa', '-in', p, '-pubout', '-outform', 'DER'], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    with open(p, 'rb') as f:
        return f.read(), 'v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode()


def forwarded(fwd, key, subject):
    """Alice's reject.test mail as forwarder fwd received and sealed it."""
    body = ('From: <alice@reject.test>\r\nTo: <bob@sift.test>\r\nSubject: %s\r\n'
            'Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%f@reject.test>\r\n\r\n'
            'Hello through the forwarder.\r\n' % (subject, time.time())).encode()
    data = ('Authentication-Results: %s; spf=pass smtp.mailfrom=alice@reject.test\r\n' % fwd).encode() + body
    return b''.join(dkim.arc_sign(data, b'py', fwd.encode(), key, fwd.encode())) + data


def delivered(pf, subject, wait=20):
    end = time.monotonic() + wait
    while time.monotonic() < end:
        for m in pf.maildir_messages():
            if m.header('Subject') == subject:
                return m
        time.sleep(0.05)
    return None


def dnsfunc(port):
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ['127.0.0.1']
    res.port = port
    res.lifetime = 3

    def f(name, timeout=5):
        try:
            a = res.resolve((name.decode() if isinstance(name, bytes) else name).rstrip('.'), 'TXT')
        except Exception:
            return None
        return b''.join(next(iter(a)).strings)
    return f


def run(pf, keys, port):
    r = pf.send('list-bounce@list.test', ['bob@sift.test'], forwarded('list.test', keys['list.test'], 'arc one'))
    check(r.accepted, 'p=reject, unaligned, through a trusted ARC sealer: accepted', r)
    m = delivered(pf, 'arc one')
    ours = [h for h in (m.headers('Authentication-Results') if m else []) if h.split(';')[0].strip() == 'mx.sift.test']
    ar = re.sub(r'\s+', ' ', ours[0]) if ours else ''
    check(len(ours) == 1, 'one Authentication-Results from us', m.headers('Authentication-Results') if m else None)
    check('arc=pass (sets=1 trusted d=list.test) smtp.remote-ip=127.0.0.1 header.oldest-pass=0' in ar,
          'arc=pass with the trusted sealer, remote-ip and oldest-pass', ar)
    check('dmarc=fail (p=REJECT sp=REJECT dis=NONE override=local_policy; arc override: trusted sealer '
          'd=list.test i=1) header.from=reject.test' in ar, 'dmarc=fail with the ARC override recorded', ar)
    check('spf=none' in ar and ar.index('spf=') < ar.index('arc=') < ar.index('dmarc='),
          'spf, arc, dmarc in chain order', ar)
    raw = open(m.path, 'rb').read() if m else b''
    seal = re.search(rb'ARC-Seal: i=2; a=rsa-sha256; t=\d+; cv=pass;\s+d=fwd.test; s=s1;', raw)
    check(seal is not None, 'delivered with our ARC set i=2, cv=pass', raw[:400])
    cv, _, why = dkim.arc_verify(raw.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n'), dnsfunc=dnsfunc(port))
    check(cv == b'pass', 'our seal on delivered mail verifies with dkimpy', why)

    r = pf.send('other-bounce@other.test', ['bob@sift.test'], forwarded('other.test', keys['other.test'], 'arc two'))
    check(r.rejected_at() == 'eom' and r.eom[0] == 550 and 'reject.test' in r.eom[1],
          'the same through an untrusted sealer: 550 at end of data', r)


def main():
    if os.geteuid() != 0:
        check(False, 'needs root (private Postfix)')
        return sifttest.done()
    d = tempfile.mkdtemp(prefix='sift-arc-pf-')
    os.chmod(d, 0o755)
    out = subprocess.run([sifttest.program('siftctl'), 'dkim', 'genkey', '-d', 'fwd.test', '-s', 's1', '-t', 'rsa',
                          '-D', d], check=True, stdout=subprocess.PIPE, text=True).stdout
    ours = ''.join(re.findall(r'"([^"]*)"', out.splitlines()[-1]))
    keys, recs = {}, {}
    for fwd in ('list.test', 'other.test'):
        keys[fwd], recs[fwd] = py_key(d, fwd)
    zones = {'.': [{"name": ".", "type": "SOA", "data": "ns.root.test. hostmaster.root.test. 1 3600 600 86400 60"},
                   {'name': 'reject.test', 'type': 'TXT', 'data': 'v=spf1 -all'},
                   {'name': '_dmarc.reject.test', 'type': 'TXT', 'data': 'v=DMARC1; p=reject'},
                   {'name': 's1._domainkey.fwd.test', 'type': 'TXT', 'data': ours},
                   {'name': 'py._domainkey.list.test', 'type': 'TXT', 'data': recs['list.test']},
                   {'name': 'py._domainkey.other.test', 'type': 'TXT', 'data': recs['other.test']}]}
    srv = dnsserver.DNSServer(zones)
    srv.start()
    fd = pf = None
    try:
        fd = sifttest.start_daemon('filterd', d, {
            'inbound_plugins': 'spf dkim arc dmarc', 'originating_plugins': '',
            'dns_servers': '127.0.0.1:%d' % srv.port, 'dns_timeout': '1s', 'authserv_id': 'mx.sift.test',
            'spf_filterd_mode': 'check', 'dkim_sign': 'no', 'tmpdir': d,
            'dkim_key_table': 'inline:{ fwd = fwd.test:s1:%s/fwd.test.s1.key }' % d,
            'arc_sign_key': 'fwd', 'arc_sign_recipients': 'inline:{ sift.test=yes }',
            'arc_trusted_sealers': 'inline:{ list.test=yes }'})
        pf = sifttest.Postfix(milters=['inet:127.0.0.1:%d' % fd.port])
        pf.start()
        run(pf, keys, srv.port)
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
