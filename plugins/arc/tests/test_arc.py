#!/usr/bin/python3
"""arc plugin interop with dkimpy (python3-dkim), keys served by the local
DNS server (tests/lib/dnsserver.py) to both sides:

  1. a set sealed by `siftctl arc sign` (RSA, then Ed25519) verifies with
     dkimpy's arc_verify, and with `siftctl arc verify` (cv=pass sets=1);
  2. a set sealed by dkimpy verifies in Sift;
  3. three hops, dkimpy / Sift / dkimpy, and two hops Sift / dkimpy: both
     verifiers say pass, Sift reports the number of sets (Ed25519 seals
     verify in Sift only: RFC 8617 defines rsa-sha256, and dkimpy's ARC
     knows nothing else);
  4. tampering: a changed body fails the newest AMS (instance 3), a changed
     first-hop ARC-Authentication-Results fails the newest seal (instance
     3), a missing ARC-Seal of instance 2 and an instance gap fail at 2, an
     i=1 seal claiming cv=pass fails at 1; dkimpy agrees that each fails;
  5. a message without ARC fields is cv=none; a set signed with rsa-sha1
     fails with a reason naming the algorithm (RFC 8301);
  6. `siftctl test` through the arc plugin: ARC_PASS / ARC_TRUSTED with the
     first hop's spf/dkim passes when the sealer is in arc_trusted_sealers,
     and arc=pass with smtp.remote-ip and header.oldest-pass in
     Authentication-Results;
  7. a sealer's key lookup that fails temporarily (SERVFAIL, or no answer
     within dns_timeout) is arc=temperror, never fail: no ARC_FAIL, and no
     set with cv=fail is added. When we seal, arc_error_action decides
     (tempfail by default: 451, the client retries; accept: delivered
     without our set). A real failure (a changed body) still fails, even
     with another key failing temporarily, and our seal says cv=fail.

Run with SIFT_SRCDIR / SIFT_BUILDDIR set (meson test does).
"""

import base64
import logging
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

SIFTCTL = sifttest.program('siftctl')
SRV = 'mx.sift.test'
logging.disable(logging.CRITICAL)


def run(argv, inp=None):
    r = subprocess.run(argv, input=inp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    return r.returncode, r.stdout, r.stderr.decode('utf-8', 'replace')


def message(subject):
    return ('From: Alice <alice@orig.test>\r\nTo: list@list.test\r\nSubject: %s\r\n'
            'Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%f@orig.test>\r\n'
            'MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello,\r\n\r\nthe ARC test.\r\n'
            % (subject, time.time())).encode()


def py_key(d, domain):
    """An RSA key for dkimpy (PKCS#1 PEM) in directory d, and its DKIM record
    (1024 bits, the shortest both accept: quick to make)."""
    p = os.path.join(d, 'py-%s.pem' % domain)
    subprocess.run(['openssl', 'genrsa', '-traditional', '-out', p, '1024'], check=True, stderr=subprocess.DEVNULL)
    der = subprocess.run(['openssl', 'rsa', '-in', p, '-pubout', '-outform', 'DER'], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    with open(p, 'rb') as f:
        return f.read(), 'v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode()


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='sift-arc-')
        os.chmod(self.dir, 0o755)
        self.zone = [{"name": ".", "type": "SOA", "data": "ns.root.test. hostmaster.root.test. 1 3600 600 86400 60"}]
        self.keys = {}
        self.dns = None

    def path(self, name):
        return os.path.join(self.dir, name)

    def genkey(self, domain, sel, typ):
        rc, out, err = run([SIFTCTL, 'dkim', 'genkey', '-d', domain, '-s', sel, '-t', typ, '-b', '1024',
                            '-D', self.dir])
        assert rc == 0, err
        rec = ''.join(re.findall(r'"([^"]*)"', out.decode().splitlines()[-1]))
        self.zone.append({'name': '%s._domainkey.%s' % (sel, domain), 'type': 'TXT', 'data': rec})
        p = self.path('%s.%s.key' % (domain, sel))
        self.keys['%s-%s' % (domain, sel)] = '%s:%s:%s' % (domain, sel, p)
        return p

    def py_key(self, domain, sel):
        pem, rec = py_key(self.dir, domain)
        self.zone.append({'name': '%s._domainkey.%s' % (sel, domain), 'type': 'TXT', 'data': rec})
        return pem

    def start(self):
        self.dns = dnsserver.DNSServer({'.': self.zone})
        self.dns.start()
        with open(self.path('keytable'), 'w') as f:
            for name, v in self.keys.items():
                f.write('%s %s\n' % (name, v))
        return sifttest.write_conf(self.path('filterd.conf'), {
            'plugin_directory': sifttest.plugin_directory(),
            'inbound_plugins': 'arc', 'originating_plugins': '',
            'dns_servers': '127.0.0.1:%d' % self.dns.port, 'dns_timeout': '2s',
            'myhostname': SRV, 'authserv_id': SRV,
            'dkim_key_table': 'texthash:%s' % self.path('keytable'),
            'arc_trusted_sealers': 'inline:{ list.test=yes }',
            'tmpdir': self.dir})

    def dnsfunc(self):
        return dnsserver.dkimpy_dnsfunc(self.dns.port)


def py_verify(env, data):
    cv, _, why = dkim.arc_verify(data, dnsfunc=env.dnsfunc())
    return (cv or b'fail').decode(), why


def py_seal(env, data, key, domain, results):
    """A dkimpy hop: its Authentication-Results (with the arc= result it
    found) on top, then its ARC set."""
    cv, _ = py_verify(env, data)
    ar = 'Authentication-Results: %s; %s%s\r\n' % (domain, results, '' if cv == 'none' else ';\r\n arc=%s' % cv)
    data = ar.encode() + data
    sig = dkim.arc_sign(data, b'py', domain.encode(), key, domain.encode())
    return b''.join(sig) + data


def sift_seal(conf, data, domain, sel):
    p = os.path.join(os.path.dirname(conf), 'in.eml')
    with open(p, 'wb') as f:
        f.write(data)
    rc, out, err = run([SIFTCTL, '-c', conf, 'arc', 'sign', p, '--domain', domain, '--selector', sel])
    check(rc == 0 and out.startswith(b'ARC-Seal: i='), 'siftctl arc sign d=%s s=%s' % (domain, sel), err)
    return out


def sift_verify(conf, data):
    p = os.path.join(os.path.dirname(conf), 'v.eml')
    with open(p, 'wb') as f:
        f.write(data)
    rc, out, err = run([SIFTCTL, '-c', conf, 'arc', 'verify', p])
    line = out.decode().strip()
    return line.split(': ', 1)[1] if ': ' in line else line + err


def interop(env, conf, pykey, k2):
    # 1. Sift seals (RSA, Ed25519): dkimpy and Sift verify
    for dom, sel in (('fwd.test', 's1'), ('ed.test', 's2')):
        sealed = sift_seal(conf, message('sift seal ' + dom), dom, sel)
        cv, why = py_verify(env, sealed)
        if dom == 'fwd.test':
            check(cv == 'pass', 'Sift-sealed (d=%s) verifies with dkimpy' % dom, why)
        else:  # RFC 8617 defines rsa-sha256 only; dkimpy's ARC knows nothing else
            check(cv == 'fail' and 'ed25519' in why, 'Ed25519 seal: dkimpy does not know the algorithm', why)
        check(sift_verify(conf, sealed) == 'cv=pass sets=1 oldest-pass=0', 'Sift-sealed (d=%s) verifies in Sift'
              % dom, sift_verify(conf, sealed))
    # 2. dkimpy seals: Sift verifies
    one = py_seal(env, message('py seal'), pykey, 'list.test', 'spf=pass smtp.mailfrom=alice@orig.test')
    check(py_verify(env, one)[0] == 'pass', 'dkimpy-sealed verifies with dkimpy')
    check(sift_verify(conf, one) == 'cv=pass sets=1 oldest-pass=0', 'dkimpy-sealed verifies in Sift',
          sift_verify(conf, one))
    # 3. three hops dkimpy / Sift / dkimpy; two hops Sift / dkimpy
    two = sift_seal(conf, one, 'fwd.test', 's1')
    check(b'ARC-Seal: i=2;' in two and b'cv=pass' in two.split(b'ARC-Message-Signature')[0],
          'Sift seals i=2 with cv=pass', two[:300])
    three = py_seal(env, two, k2, 'list2.test', 'dkim=pass header.d=list.test')
    check(py_verify(env, three)[0] == 'pass', 'three hops (dkimpy, Sift, dkimpy) verify with dkimpy',
          py_verify(env, three))
    check(sift_verify(conf, three) == 'cv=pass sets=3 oldest-pass=0', 'three hops verify in Sift',
          sift_verify(conf, three))
    mixed = py_seal(env, sift_seal(conf, message('mixed'), 'fwd.test', 's1'), pykey, 'list.test', 'spf=none')
    check(py_verify(env, mixed)[0] == 'pass' and sift_verify(conf, mixed) == 'cv=pass sets=2 oldest-pass=0',
          'two hops (Sift, dkimpy) verify in both', (py_verify(env, mixed), sift_verify(conf, mixed)))
    return three


def tampered(env, conf, three):
    """All cases verified by one `siftctl arc verify` run."""
    cases = [
        ('changed body', three.replace(b'the ARC test.', b'the ARC test!'), 3),
        ('changed first-hop AAR', re.sub(rb'(ARC-Authentication-Results: i=1; list.test;[^\r]*)spf=pass',
                                          rb'\1spf=fail', three), 3),
        ('ARC-Seal i=2 missing', re.sub(rb'ARC-Seal: i=2;.*?\r\n(?=\S)', b'', three, flags=re.S), 2),
        ('instance gap (2 -> 4)', re.sub(rb'ARC-Seal: i=2;', b'ARC-Seal: i=4;', three), 2),
        ('i=1 seal with cv=pass', re.sub(rb'(ARC-Seal: i=1;[^\r]*?)cv=none', rb'\1cv=pass', three), 1),
        ('i=2 seal with cv=bogus', re.sub(rb'(ARC-Seal: i=2;[^\r]*?)cv=pass', rb'\1cv=bogus', three), 2),
    ]
    # the whole reason, its own parentheses included
    reasons = {'i=2 seal with cv=bogus': 'reason="malformed ARC-Seal (cv=)"'}
    files = []
    for k, (what, data, inst) in enumerate(cases):
        check(data != three, 'tampered (%s): the message changed' % what)
        check(py_verify(env, data)[0] != 'pass', 'tampered (%s): dkimpy does not pass it either' % what)
        files.append(os.path.join(env.dir, 't%d.eml' % k))
        with open(files[-1], 'wb') as f:
            f.write(data)
    files.append(os.path.join(env.dir, 'plain.eml'))
    with open(files[-1], 'wb') as f:
        f.write(message('plain'))
    rc, out, err = run([SIFTCTL, '-c', conf, 'arc', 'verify'] + files)
    got = dict(line.split(': ', 1) for line in out.decode().splitlines() if ': ' in line)
    check(rc == 1, 'siftctl arc verify: exit 1 when a chain fails', (rc, err))
    for (what, data, inst), f in zip(cases, files):
        check(got.get(f, '').startswith('cv=fail instance=%d ' % inst),
              'tampered (%s): cv=fail at instance %d' % (what, inst), got.get(f))
        if what in reasons:
            check(got.get(f, '').endswith(' ' + reasons[what]), 'tampered (%s): %s' % (what, reasons[what]),
                  got.get(f))
    check(got.get(files[-1]) == 'cv=none', 'no ARC fields: cv=none', got.get(files[-1]))


def rsa_sha1(env, conf, pykey):
    """A set signed with rsa-sha1 (dkimpy's ARC signer with that algorithm;
    its arc_sign knows rsa-sha256 only) fails by name, not as a body hash or
    signature that did not verify."""
    data = b'Authentication-Results: list.test; spf=pass smtp.mailfrom=alice@orig.test\r\n' + message('sha1')
    sealed = b''.join(dkim.ARC(data, signature_algorithm=b'rsa-sha1').sign(b'py', b'list.test', pykey,
                                                                            b'list.test')) + data
    check(re.search(rb'ARC-Seal: i=1; cv=none; a=rsa-sha1;', sealed) and b'a=rsa-sha1; c=' in sealed,
          'dkimpy seals with a=rsa-sha1', sealed[:400])
    got = sift_verify(conf, sealed)
    check(got == 'cv=fail instance=1 reason="ARC-Message-Signature a=rsa-sha1 not allowed (RFC 8301)"',
          'an rsa-sha1 ARC set: cv=fail, the reason names the algorithm', got)
    # an rsa-sha256 chain whose seal claims a=rsa-sha1
    one = py_seal(env, message('sha1 seal'), pykey, 'list.test', 'spf=pass smtp.mailfrom=alice@orig.test')
    seal_sha1 = re.sub(rb'(ARC-Seal: i=1;[^\r]*?)a=rsa-sha256', rb'\1a=rsa-sha1', one)
    check(seal_sha1 != one and sift_verify(conf, one) == 'cv=pass sets=1 oldest-pass=0',
          'an rsa-sha256 chain, then its seal changed to a=rsa-sha1', sift_verify(conf, one))
    got = sift_verify(conf, seal_sha1)
    check(got == 'cv=fail instance=1 reason="ARC-Seal a=rsa-sha1 not allowed (RFC 8301)"',
          'an ARC-Seal with a=rsa-sha1: the reason names the algorithm', got)


def chain(conf, one):
    r = sifttest.siftctl_test(conf, one, ['--profile', 'inbound'])
    syms = {s['name']: s for s in r.get('symbols', [])}
    check('ARC_PASS' in syms, 'siftctl test: ARC_PASS', r)
    t = syms.get('ARC_TRUSTED', {}).get('option') or ''
    check(t == 'd=list.test i=1 spf=orig.test dkim=-', 'ARC_TRUSTED names the sealer and the first-hop passes', t)
    ar = ' '.join(v for n, v in r.get('headers', []) if n == 'Authentication-Results') \
        if r.get('headers') and isinstance(r['headers'][0], list) else str(r.get('headers'))
    check(re.search(r'arc=pass \(sets=1 trusted d=list.test\) smtp.remote-ip=127.0.0.1 header.oldest-pass=0',
                    ar) is not None, 'Authentication-Results: arc=pass with remote-ip and oldest-pass', ar)
    # the stock ARC rules of the spam plugin, after arc in the chain
    rules = os.path.join(os.path.dirname(conf), 'arc-rules.cf')
    with open(rules, 'w') as f:
        f.write('full ARC_SIGNED eval:check_arc_signed()\nscore ARC_SIGNED 0.001\n'
                'full ARC_VALID eval:check_arc_valid()\nscore ARC_VALID -0.1\n'
                'meta ARC_INVALID ARC_SIGNED && !ARC_VALID\nscore ARC_INVALID 0.1\n')
    opts = ['inbound_plugins=arc spam', 'spam_rules=' + rules, 'spam_cache_directory=', 'spam_use_bayes=no']
    broken = one.replace(b'\r\n\r\n', b'\r\n\r\nChanged after sealing.\r\n', 1)
    for what, data, hit, miss in (('passing chain', one, 'ARC_VALID', 'ARC_INVALID'),
                                  ('failing chain', broken, 'ARC_INVALID', 'ARC_VALID')):
        r = sifttest.siftctl_test(conf, data, ['--profile', 'inbound'], opts=opts)
        syms = {s['name'] for s in r.get('symbols', [])}
        check(hit in syms and miss not in syms and 'ARC_SIGNED' in syms,
              'spam after arc, %s: %s and ARC_SIGNED hit, %s not' % (what, hit, miss), r)


def arc_headers(r):
    return [h for h in r.get('headers', []) if h.get('name', '').lower().startswith('arc-')]


def auth_results(r):
    return ' '.join(h['value'] for h in r.get('headers', []) if h.get('name') == 'Authentication-Results')


def temperror(env, conf, pykey, flaky, slow):
    """A sealer's key lookup fails temporarily: arc=temperror, no ARC_FAIL,
    never a seal with cv=fail."""
    one = py_seal(env, message('flaky'), flaky, 'flaky.test', 'spf=pass smtp.mailfrom=alice@orig.test')
    timeout = py_seal(env, message('slow'), slow, 'slow.test', 'spf=pass smtp.mailfrom=alice@orig.test')
    good = py_seal(env, message('good then flaky'), pykey, 'list.test', 'spf=pass smtp.mailfrom=alice@orig.test')
    second = py_seal(env, good, flaky, 'flaky.test', 'dkim=pass header.d=list.test')
    bad = py_seal(env, one, pykey, 'list.test', 'spf=none')
    bad = bad.replace(b'the ARC test.', b'the ARC test!')
    cases = [('SERVFAIL on the only sealer\'s key', one, 'cv=temperror instance=1 '),
             ('no answer for the only sealer\'s key (timeout)', timeout, 'cv=temperror instance=1 '),
             ('SERVFAIL on the newest sealer\'s key, i=1 good', second, 'cv=temperror instance=2 '),
             ('changed body, i=1 key SERVFAIL: still a failure', bad, 'cv=fail instance=2 ')]
    files = []
    for k, (what, data, want) in enumerate(cases):
        files.append(os.path.join(env.dir, 'tmp%d.eml' % k))
        with open(files[-1], 'wb') as f:
            f.write(data)
    rc, out, err = run([SIFTCTL, '-c', conf, 'arc', 'verify'] + files)
    got = dict(line.split(': ', 1) for line in out.decode().splitlines() if ': ' in line)
    for (what, data, want), f in zip(cases, files):
        check(got.get(f, '').startswith(want), 'siftctl arc verify, %s: %s' % (what, want.strip()), got.get(f))
    check(rc == 1, 'siftctl arc verify: exit 1 when a chain cannot be verified', (rc, err))
    check('key lookup failed temporarily' in got.get(files[0], ''), 'the reason says the lookup failed temporarily',
          got.get(files[0]))

    # verifying only (inbound): delivered, arc=temperror, ARC_TEMPERROR (score 0), no ARC_FAIL
    for what, data, inst in (('SERVFAIL', one, 1), ('timeout', timeout, 1), ('SERVFAIL at i=2', second, 2)):
        r = sifttest.siftctl_test(conf, data, ['--profile', 'inbound'])
        syms = {s['name']: s for s in r.get('symbols', [])}
        ar = auth_results(r)
        check(r.get('action') == 'accept', 'verifying, %s: the message is accepted' % what, r)
        check('ARC_FAIL' not in syms and 'ARC_TRUSTED' not in syms and 'ARC_PASS' not in syms,
              'verifying, %s: no ARC_FAIL (nor ARC_PASS)' % what, r)
        check(syms.get('ARC_TEMPERROR', {}).get('option') == 'i=%d' % inst and r.get('score') == 0,
              'verifying, %s: ARC_TEMPERROR i=%d, score 0' % (what, inst), r)
        check(re.search(r'(^|; )arc=temperror \(i=%d key lookup failed temporarily\) smtp.remote-ip=127.0.0.1$'
                        % inst, ar) is not None and 'arc=fail' not in ar,
              'verifying, %s: Authentication-Results arc=temperror (not fail)' % what, ar)

    # sealing: never a set on a temperror; arc_error_action decides
    seal = ['arc_sign_key=fwd.test-s1', 'arc_sign_profiles=inbound']
    r = sifttest.siftctl_test(conf, one, ['--profile', 'inbound'], opts=seal)
    check(r.get('action') == 'tempfail' and (r.get('reply') or '').startswith('451 4.7.1')
          and r.get('decided_by') == 'arc', 'sealing, SERVFAIL: 451 4.7.1 by arc (arc_error_action = tempfail)', r)
    check(arc_headers(r) == [] and 'ARC_FAIL' not in {s['name'] for s in r.get('symbols', [])},
          'sealing, SERVFAIL: no ARC set added, no ARC_FAIL', r)
    for action in ('accept', 'dunno'):
        r = sifttest.siftctl_test(conf, one, ['--profile', 'inbound'], opts=seal + ['arc_error_action=' + action])
        check(r.get('action') == 'accept' and arc_headers(r) == [] and 'arc=temperror' in auth_results(r),
              'sealing, SERVFAIL, arc_error_action = %s: delivered with arc=temperror and without our set'
              % action, r)
    rc, out, err = run([SIFTCTL, '-c', conf, 'arc', 'sign', files[0], '--domain', 'fwd.test', '--selector', 's1'])
    check(rc != 0 and b'ARC-Seal' not in out and 'could not be verified' in err,
          'siftctl arc sign on a temperror: nothing sealed', (rc, out[:200], err))

    # a real failure still seals cv=fail (and says ARC_FAIL)
    broken = good.replace(b'the ARC test.', b'the ARC test!')
    r = sifttest.siftctl_test(conf, broken, ['--profile', 'inbound'], opts=seal)
    seals = [h['value'] for h in arc_headers(r) if h['name'] == 'ARC-Seal']
    check(r.get('action') == 'accept' and len(seals) == 1 and re.match(r'i=2; .*cv=fail;', seals[0], re.S),
          'sealing a changed body: our set i=2 says cv=fail', r)
    check('ARC_FAIL' in {s['name'] for s in r.get('symbols', [])} and 'arc=fail (i=1' in auth_results(r),
          'sealing a changed body: ARC_FAIL, arc=fail', r)


def reload_key(env, conf):
    """filterd sealing with its own arc_key_table: the key (0600, root's)
    is read before the privilege drop; at a reload the file is looked at
    again, so a key made readable by others is refused (the running
    configuration stays), as at start."""
    keyp = env.genkey('seal.test', 's9', 'rsa')
    table = env.path('arc-keytable')
    with open(table, 'w') as f:
        f.write('sealer %s\n' % env.keys['seal.test-s9'])
    fd = sifttest.start_daemon('filterd', env.dir, {
        'inbound_plugins': 'arc', 'originating_plugins': '', 'dns_servers': '127.0.0.1:%d' % env.dns.port,
        'myhostname': SRV, 'authserv_id': SRV, 'arc_key_table': 'texthash:' + table, 'arc_sign_key': 'sealer',
        'arc_sign_profiles': 'inbound', 'tmpdir': env.dir}, name='filterd-arc')
    try:
        os.kill(fd.pid, signal.SIGHUP)
        check(fd.wait_log(r'configuration reloaded', timeout=20) is not None,
              'a reload with the key unchanged (0600, not readable by the daemon user) works', fd.log_tail(10))
        os.chmod(keyp, 0o644)
        os.kill(fd.pid, signal.SIGHUP)
        check(fd.wait_log(r'reload failed.*(readable|permission|mode)', timeout=20) is not None,
              'the key made readable by others: the reload is refused', fd.log_tail(10))
    finally:
        os.chmod(keyp, 0o600)
        fd.stop()


def main():
    env = Env()
    for dom, sel, typ in (('fwd.test', 's1', 'rsa'), ('ed.test', 's2', 'ed25519')):
        env.genkey(dom, sel, typ)
    pykey = env.py_key('list.test', 'py')
    k2 = env.py_key('list2.test', 'py')
    check(pykey != k2, 'two dkimpy keys')
    # sealers whose key lookups fail temporarily: SERVFAIL, no answer
    flaky, _ = py_key(env.dir, 'flaky.test')
    slow, _ = py_key(env.dir, 'slow.test')
    env.zone.append({'name': 'py._domainkey.flaky.test', 'type': 'SERVFAIL'})
    env.zone.append({'name': 'py._domainkey.slow.test', 'type': 'TIMEOUT'})
    conf = env.start()
    try:
        three = interop(env, conf, pykey, k2)
        tampered(env, conf, three)
        rsa_sha1(env, conf, pykey)
        chain(conf, py_seal(env, message('trusted'), pykey, 'list.test',
                            'spf=pass smtp.mailfrom=alice@orig.test'))
        temperror(env, conf, pykey, flaky, slow)
        reload_key(env, conf)
    finally:
        env.dns.stop()
        if sifttest.checks.failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(env.dir, ignore_errors=True)
        else:
            print('kept', env.dir)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
