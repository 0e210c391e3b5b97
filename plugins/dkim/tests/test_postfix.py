#!/usr/bin/python3
"""dkim plugin through a real Postfix: filterd as smtpd_milters of a private
Postfix instance (tests/lib/sifttest.py) with a submission service that
sets {daemon_name}=ORIGINATING, and a real DNS server publishing the keys.

  1. mail submitted on the ORIGINATING service is delivered with an RSA and
     an Ed25519 signature that dkimpy verifies against the DNS server;
  2. inbound mail signed by dkimpy gets `Authentication-Results:
     mx.sift.test; dkim=pass ...` and a forged A-R with our authserv-id is
     removed; a tampered message gets dkim=fail and is still delivered;
  3. key rotation: the signing table is switched to a second selector and
     filterd reloaded (SIGUSR1): the next message carries exactly one
     signature, with the new selector;
  4. a DNS timeout while verifying gives dkim=temperror and the message is
     delivered, not lost;
  5. another plugin's edit of a signed header (testplug changing Subject
     at end of message, as the spam plugin's subject tag does), listed
     after dkim and arc (sealing originating mail): the message is
     delivered with the changed Subject, DKIM signatures and an ARC set
     over it that dkimpy verifies.

Run as root with SIFT_SRCDIR / SIFT_BUILDDIR set (meson test does).
"""

import base64
import os
import re
import shutil
import signal
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

OURS = 'example.net.test'
REMOTE = 'remote.test'


def dnsfunc_for(port):
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ['127.0.0.1']
    res.port = port

    def f(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        try:
            for r in res.resolve(n.rstrip('.'), 'TXT'):
                return b''.join(r.strings)
        except Exception:
            return None
    return f


def genkey(d, domain, sel, typ):
    out = subprocess.run([sifttest.program('siftctl'), 'dkim', 'genkey', '-d', domain, '-s', sel,
                          '-t', typ, '-D', d], check=True, stdout=subprocess.PIPE, text=True).stdout
    return os.path.join(d, '%s.%s.key' % (domain, sel)), ''.join(re.findall(r'"([^"]*)"', out.splitlines()[-1]))


def message(frm, subject, body='Hello from the DKIM test.\r\n', extra=b''):
    return extra + ('From: <%s>\r\nTo: <bob@sift.test>\r\nSubject: %s\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n'
                    'Message-ID: <%s.%f@client.sift.test>\r\nMIME-Version: 1.0\r\n'
                    'Content-Type: text/plain\r\n\r\n%s' % (frm, subject, subject.replace(' ', ''), time.time(),
                                                              body)).encode()


def main():
    d = tempfile.mkdtemp(prefix='sift-dkim-pf-')
    os.chmod(d, 0o755)
    rsa, rsa_rec = genkey(d, OURS, 'mail', 'rsa')
    ed, ed_rec = genkey(d, OURS, 'ed', 'ed25519')
    rsa2, rsa2_rec = genkey(d, OURS, 'mail2', 'rsa')
    subprocess.run(['openssl', 'genrsa', '-out', os.path.join(d, 'remote.pem'), '2048'], check=True,
                   stderr=subprocess.DEVNULL)
    remote_key = open(os.path.join(d, 'remote.pem'), 'rb').read()
    der = subprocess.run(['openssl', 'pkey', '-in', os.path.join(d, 'remote.pem'), '-pubout', '-outform', 'DER'],
                         check=True, stdout=subprocess.PIPE).stdout
    zones = {OURS: [{'name': 'mail._domainkey', 'type': 'TXT', 'data': rsa_rec},
                    {'name': 'ed._domainkey', 'type': 'TXT', 'data': ed_rec},
                    {'name': 'mail2._domainkey', 'type': 'TXT', 'data': rsa2_rec}],
             REMOTE: [{'name': 'sel._domainkey', 'type': 'TXT',
                       'data': 'v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode()},
                      {'name': 'slow._domainkey', 'type': 'TIMEOUT'}]}
    srv = dnsserver.DNSServer(zones)
    srv.start()
    with open(os.path.join(d, 'keytable'), 'w') as f:
        f.write('mail %s:mail:%s\ned %s:ed:%s\nmail2 %s:mail2:%s\n' % (OURS, rsa, OURS, ed, OURS, rsa2))
    st = os.path.join(d, 'signingtable')
    with open(st, 'w') as f:
        f.write('%s mail ed\n' % OURS)
    pdir = os.path.join(d, 'plugins')
    os.makedirs(pdir)
    os.chmod(pdir, 0o755)
    for so in (os.path.join(sifttest.plugin_directory(), 'dkim.so'), os.path.join(sifttest.plugin_directory(), 'arc.so'),
               os.path.join(sifttest.builddir(), 'tests', 'testplug.so')):
        shutil.copy(so, pdir)
    fd = pf = None
    try:
        fd = sifttest.start_daemon('filterd', d, {
            # arc seals nothing until section 5 sets arc_sign_profiles; its
            # key (readable by root only) is read at start
            'plugin_directory': pdir, 'inbound_plugins': 'dkim', 'originating_plugins': 'dkim arc',
            'arc_sign_key': 'mail',
            'dns_servers': '127.0.0.1:%d' % srv.port, 'dns_timeout': '1s', 'authserv_id': 'mx.sift.test',
            'dkim_key_table': 'texthash:%s/keytable' % d, 'dkim_signing_table': 'texthash:%s' % st, 'tmpdir': d})
        pf = sifttest.Postfix(submission=True, milters=['inet:127.0.0.1:%d' % fd.port])
        pf.start()
        run(pf, fd, srv, st, remote_key)
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


def delivered(pf, subject):
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for m in pf.maildir_messages():
            if m.header('Subject') == subject:
                return m
        time.sleep(0.05)
    return None


def run(pf, fd, srv, st, remote_key):
    dnsf = dnsfunc_for(srv.port)
    # 1. Originating: signed, verifiable.
    r = pf.send_submission('alice@%s' % OURS, ['bob@sift.test'], message('alice@%s' % OURS, 'out one'))
    check(r.code == 250, 'submission accepted', r)
    m = delivered(pf, 'out one')
    check(m is not None, 'delivered', pf.log()[-2000:])
    if not m:
        return
    sigs = m.headers('DKIM-Signature')
    check(len(sigs) == 2 and any('a=ed25519-sha256' in s for s in sigs)
          and any('a=rsa-sha256' in s for s in sigs), 'two signatures (RSA + Ed25519)', sigs)
    hb = m.header_block()
    check(hb.find('DKIM-Signature') < hb.find('Received:'), 'signatures above Postfix\'s Received header', hb)
    check(dkim.verify(m.raw.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n'), dnsfunc=dnsf),
          'dkimpy verifies the delivered message', m.raw[:1500])
    # Not ours on the submission port: not signed.
    r = pf.send_submission('mallory@elsewhere.test', ['bob@sift.test'], message('mallory@elsewhere.test', 'out two'))
    m = delivered(pf, 'out two')
    check(m is not None and not m.headers('DKIM-Signature'), 'foreign From on submission: delivered unsigned')

    # 2. Inbound: verified, A-R added, forged A-R removed.
    body = message('news@%s' % REMOTE, 'in one',
                   extra=b'Authentication-Results: mx.sift.test; dkim=pass header.d=bank.test\r\n')
    signed = dkim.sign(body, b'sel', REMOTE.encode(), remote_key) + body
    r = pf.send('news@%s' % REMOTE, ['bob@sift.test'], signed)
    check(r.code == 250, 'inbound accepted', r)
    m = delivered(pf, 'in one')
    ars = m.headers('Authentication-Results') if m else []
    check(len(ars) == 1 and re.match(
        r'mx\.sift\.test;\s+dkim=pass header\.d=remote\.test header\.i=@remote\.test header\.s=sel '
        r'header\.a=rsa-sha256 header\.b=', ars[0])
        is not None, 'inbound: one Authentication-Results, dkim=pass', ars)
    check(m is not None and 'bank.test' not in m.header_block(), 'inbound: forged A-R removed')
    check(m is not None and len(m.headers('DKIM-Signature')) == 1, 'inbound: not signed by us')
    # Every forged one goes, however many, and in the forms a reader
    # still takes for ours: white space before the colon, the id with
    # its root dot.
    forged = (b'Authentication-Results: mx.sift.test; dkim=pass header.d=bank.test\r\n' * 300
              + b'Authentication-Results : mx.sift.test; dkim=pass header.d=bank2.test\r\n'
              + b'Authentication-Results: mx.sift.test.; dkim=pass header.d=bank3.test\r\n'
              + b'Authentication-Results: other.test; dkim=pass header.d=theirs.test\r\n')
    body = message('news@%s' % REMOTE, 'in many', extra=forged)
    r = pf.send('news@%s' % REMOTE, ['bob@sift.test'], body)
    m = delivered(pf, 'in many')
    hb = m.header_block() if m else ''
    ars = m.headers('Authentication-Results') if m else []
    check(r.code == 250 and m is not None and 'bank.test' not in hb and 'bank2.test' not in hb
          and 'bank3.test' not in hb and len(ars) == 2 and 'theirs.test' in hb,
          'inbound: 302 forged A-R removed (spaced name, root dot too), another host\'s kept (%d left)'
          % len(ars), [a[:60] for a in ars][:5])
    check(len(re.findall(r'deleted 302 forged Authentication-Results', fd.log())) == 1,
          'inbound: one log line for the 302 forged A-R')
    tampered = signed.replace(b'Hello from', b'Hullo from')
    r = pf.send('news@%s' % REMOTE, ['bob@sift.test'], tampered.replace(b'in one', b'in two'))
    m = delivered(pf, 'in two')
    ars = m.headers('Authentication-Results') if m else []
    check(len(ars) == 1 and 'dkim=fail' in ars[0], 'inbound tampered: delivered with dkim=fail', ars)

    # 4. DNS timeout: temperror, delivered.
    body = message('news@%s' % REMOTE, 'in three')
    signed = dkim.sign(body, b'slow', REMOTE.encode(), remote_key) + body
    r = pf.send('news@%s' % REMOTE, ['bob@sift.test'], signed)
    m = delivered(pf, 'in three')
    ars = m.headers('Authentication-Results') if m else []
    check(r.code == 250 and len(ars) == 1 and 'dkim=temperror' in ars[0], 'DNS timeout: delivered with dkim=temperror',
          (r, ars))

    # 3. Rotation: switch the signing table to the second selector, reload.
    with open(st, 'w') as f:
        f.write('%s mail2\n' % OURS)
    mark = len(fd.log())
    fd.signal(signal.SIGUSR1)
    check(fd.wait_log(r'configuration reloaded', timeout=10, start=mark) is not None, 'filterd reloaded',
          fd.log_tail())
    r = pf.send_submission('alice@%s' % OURS, ['bob@sift.test'], message('alice@%s' % OURS, 'out three'))
    m = delivered(pf, 'out three')
    sigs = m.headers('DKIM-Signature') if m else []
    check(len(sigs) == 1 and 's=mail2;' in re.sub(r'\s+', '', sigs[0]).replace(';', '; ').replace('; ', ';'),
          'after rotation: exactly one signature, new selector', sigs)
    check(m is not None and dkim.verify(m.raw, dnsfunc=dnsf), 'after rotation: dkimpy verifies')

    # 4. simple/simple through Postfix: the signed text must be exactly what
    # Postfix delivers (header folding, the space after the colon).
    with open(st, 'w') as f:
        f.write('%s mail2 ed\n' % OURS)
    with open(fd.conf, 'a') as f:
        f.write('dkim_canonicalization = simple/simple\n')
    mark = len(fd.log())
    fd.signal(signal.SIGUSR1)
    check(fd.wait_log(r'configuration reloaded', timeout=10, start=mark) is not None, 'filterd reloaded (simple)',
          fd.log_tail())
    body = 'Trailing  white space  \r\n\r\n\tindented\r\n\r\n\r\n'
    r = pf.send_submission('alice@%s' % OURS, ['bob@sift.test'], message('alice@%s' % OURS, 'out four', body=body))
    m = delivered(pf, 'out four')
    sigs = m.headers('DKIM-Signature') if m else []
    check(len(sigs) == 2 and all('c=simple/simple' in re.sub(r'\s+', '', x) for x in sigs),
          'simple/simple: RSA and Ed25519 signatures', sigs)
    if m:
        raw = m.raw.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
        check(dkim.verify(raw, dnsfunc=dnsf), 'simple/simple: dkimpy verifies the delivered message', raw[:1500])
        d = dkim.DKIM(raw)
        oks = [d.verify(idx=i, dnsfunc=dnsf) for i in range(len(sigs))]
        check(oks == [True, True], 'simple/simple: both signatures verify', oks)

    # 5. A plugin after dkim and arc in the chain changes the Subject at
    # end of message (as the spam plugin tags it): dkim signs, and arc
    # seals, the Subject the message leaves with (DKIM simple/simple: byte
    # for byte).
    with open(fd.conf) as f:
        conf = f.read()
    conf = re.sub(r'(?m)^originating_plugins = .*$', 'originating_plugins = dkim arc testplug', conf)
    with open(fd.conf, 'w') as f:
        f.write(conf + 'testplug_change = Subject: ***SPAM*** out five\n'
                'arc_sign_profiles = originating\n')
    mark = len(fd.log())
    fd.signal(signal.SIGUSR1)
    check(fd.wait_log(r'configuration reloaded', timeout=10, start=mark) is not None, 'filterd reloaded (testplug)',
          fd.log_tail())
    r = pf.send_submission('alice@%s' % OURS, ['bob@sift.test'], message('alice@%s' % OURS, 'out five'))
    m = delivered(pf, '***SPAM*** out five')
    sigs = m.headers('DKIM-Signature') if m else []
    check(r.code == 250 and m is not None and len(sigs) == 2, 'Subject changed by testplug: delivered, signed twice',
          (r, sigs, pf.log()[-1500:]))
    if m:
        raw = m.raw.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
        d = dkim.DKIM(raw)
        oks = [d.verify(idx=i, dnsfunc=dnsf) for i in range(len(sigs))]
        check(oks == [True, True], 'Subject changed after dkim: dkimpy verifies both signatures', (oks, raw[:1500]))
        check(len(m.headers('ARC-Seal')) == 1, 'sealed: one ARC set', raw[:1500])
        cv, _, why = dkim.arc_verify(raw, dnsfunc=dnsf)
        check(cv == b'pass', 'Subject changed after arc: dkimpy verifies the ARC set', (cv, why))


if __name__ == '__main__':
    sys.exit(main())
