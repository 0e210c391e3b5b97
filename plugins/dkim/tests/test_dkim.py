#!/usr/bin/python3
"""dkim plugin tests without an MTA: key tools, signing, verification and
interoperability with dkimpy (python3-dkim) and OpenDKIM.

Everything runs against a real DNS server on 127.0.0.1 (tests/lib/
dnsserver.py) that publishes the keys; messages go through the plugin with
`siftctl test` and `siftctl dkim sign|verify` (the same code and resolver as
filterd); `filterd -t` checks start-up refusals. OpenDKIM verifies with
`opendkim -t` and the same records given as TestPublicKeys (its test-mode
key source), and signs with `opendkim-testmsg`.

Run: SIFT_SRCDIR=... SIFT_BUILDDIR=... /usr/bin/python3 test_dkim.py
Prints one line per check and "N passed, M failed"; exits 1 on failure.
"""

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

SIFTCTL = sifttest.program('siftctl')
FILTERD = sifttest.program('filterd')
# filterd -t runs the plugins' init as filterd_user, as the daemon does.
AS_USER = ['-o', 'filterd_user=' + sifttest.daemon_user()]
OURS = 'example.net.test'
REMOTE = 'remote.test'


def run(argv, inp=None, check_rc=None, timeout=120):
    r = subprocess.run(argv, input=inp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode('utf-8', 'replace'), r.stderr.decode('utf-8', 'replace')


def msg(frm='Alice <alice@%s>' % OURS, subject='Quarterly report', body='Hello Bob,\r\n\r\nSee you.\r\n',
        extra=()):
    h = ['From: %s' % frm, 'To: Bob <bob@sift.test>', 'Subject: %s' % subject,
         'Date: Mon, 01 Jan 2024 10:00:00 +0000', 'Message-ID: <%f@client.sift.test>' % time.time(),
         'MIME-Version: 1.0', 'Content-Type: text/plain; charset=us-ascii']
    h.extend(extra)
    return ('\r\n'.join(h) + '\r\n\r\n' + body).encode()


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='sift-dkim-')
        os.chmod(self.dir, 0o755)
        self.records = {}  # name -> record text
        self.extra = {}    # name -> record dict overrides
        self.ttls = {}     # name -> TTL (default 300)

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def genkey(self, domain, sel, typ='rsa', bits=2048):
        rc, out, err = run([SIFTCTL, 'dkim', 'genkey', '-d', domain, '-s', sel, '-t', typ, '-b', str(bits),
                            '-D', self.dir])
        assert rc == 0, err
        rec = ''.join(re.findall(r'"([^"]*)"', out.splitlines()[-1]))
        return self.path('%s.%s.key' % (domain, sel)), rec, out

    def zones(self):
        z = {OURS: [], REMOTE: []}
        for name, rec in self.records.items():
            zone = OURS if name.endswith(OURS) else REMOTE
            if rec in ('TIMEOUT', 'SERVFAIL'):
                z[zone].append({'name': name, 'type': rec})
            else:
                z[zone].append({'name': name, 'type': 'TXT', 'ttl': self.ttls.get(name, 300), 'data': rec})
        return z

    def publish(self):
        self.dns.set_zones(self.zones())
        with open(self.path('pubkeys'), 'w') as f:
            for name, rec in self.records.items():
                if rec not in ('TIMEOUT', 'SERVFAIL'):
                    f.write('%s %s\n' % (name, rec))

    def conf(self):
        p = self.path('filterd.conf')
        return sifttest.write_conf(p, {
            'plugin_directory': sifttest.plugin_directory(),
            'inbound_plugins': 'dkim', 'originating_plugins': 'dkim',
            'dns_servers': '127.0.0.1:%d' % self.dns.port, 'dns_timeout': '2s',
            'myhostname': 'mx.sift.test', 'authserv_id': 'mx.sift.test',
            'dkim_key_table': 'texthash:%s' % self.path('keytable'),
            'dkim_signing_table': 'texthash:%s' % self.path('signingtable'),
            'tmpdir': self.dir})

    def write(self, name, data, mode=0o644):
        p = self.path(name)
        with open(p, 'wb' if isinstance(data, bytes) else 'w') as f:
            f.write(data)
        os.chmod(p, mode)
        return p


def dnsfunc_for(port):
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ['127.0.0.1']
    res.port = port
    res.lifetime = 3

    def f(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        try:
            a = res.resolve(n.rstrip('.'), 'TXT')
        except Exception:
            return None
        for r in a:
            return b''.join(r.strings)
        return None
    return f


def siftctl_test(conf, data, profile, sender='alice@%s' % OURS, opts=()):
    r = sifttest.siftctl_test(conf, data, ['--profile', profile, '--from', sender], opts=opts, timeout=120)
    assert 'error' not in r, r['error']
    return r


def sift_sign(env, conf, data, domain, sel, opts=()):
    p = env.write('tosign.eml', data)
    argv = [SIFTCTL, '-c', conf] + [x for o in opts for x in ('-o', o)] + ['dkim', 'sign', '-d', domain,
                                                                           '-s', sel, p]
    rc, out, err = run(argv)
    return rc, out.encode(), err


def sift_verify(env, conf, datas, opts=()):
    paths = []
    for i, d in enumerate(datas):
        paths.append(env.write('verify%d.eml' % i, d))
    argv = [SIFTCTL, '-c', conf] + [x for o in opts for x in ('-o', o)] + ['dkim', 'verify'] + paths
    rc, out, err = run(argv)
    return rc, out, err


def opendkim_verify(env, data):
    """OpenDKIM's own verification (opendkim -t), keys from the same records."""
    p = env.write('od.eml', data)
    c = env.write('od.conf', 'Mode v\nSyslog no\nTestPublicKeys %s\nMinimumKeyBits 1024\n' %
                  env.path('pubkeys'))
    rc, out, err = run(['opendkim', '-x', c, '-t', p, '-vv'])
    text = out + err
    return 'verification' not in text or 'failed' not in text, text


def opendkim_sign(env, data, sel, keyfile, alg, canon):
    """The message signed by OpenDKIM itself (opendkim -t in sign mode)."""
    p = env.write('ods.eml', data)
    c = env.write('ods.conf', 'Mode s\nSyslog no\nDomain %s\nSelector %s\nKeyFile %s\nRequireSafeKeys no\n'
                  'SignatureAlgorithm %s\nCanonicalization %s\n' % (REMOTE, sel, keyfile, alg, canon))
    rc, out, err = run(['opendkim', '-x', c, '-t', p, '-vvv'])
    m = re.search(r"### INSHEADER: idx=0 hname='DKIM-Signature' hvalue='(.*?)'\s*$", out + err, re.S | re.M)
    if not m:
        return data
    v = m.group(1).replace('\r\n', '\n').replace('\n', '\r\n')
    return ('DKIM-Signature: %s\r\n' % v).encode() + data


def headers_of(result, name):
    return [e for e in result['headers'] if e['name'].lower() == name.lower()]


def apply_inserts(data, result):
    """The message as the MTA would deliver it: inserts at index 0 on top
    (later inserts above earlier ones), values with CRLF folding."""
    top = b''
    for e in result['headers']:
        if e['op'] == 'insert' and e['index'] == 0:
            v = e['value'].replace('\r\n', '\n').replace('\n', '\r\n')
            top = ('%s: %s\r\n' % (e['name'], v)).encode() + top
    return top + data


def main():
    env = Env()
    env.dns = dnsserver.DNSServer(env.zones())
    env.dns.start()
    try:
        tests(env)
    finally:
        env.dns.stop()
        if sifttest.checks.failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(env.dir, ignore_errors=True)
        else:
            print('kept', env.dir)
    return sifttest.done()


def tests(env):
    # ---- keys ----------------------------------------------------------------
    rsa_path, rsa_rec, out = env.genkey(OURS, 'rsa1')
    check(rsa_rec.startswith('v=DKIM1; k=rsa; p=MII'), 'genkey rsa prints a TXT record', out)
    check((os.stat(rsa_path).st_mode & 0o777) == 0o600, 'genkey writes mode 0600')
    rc, _, err = run([SIFTCTL, 'dkim', 'genkey', '-d', OURS, '-s', 'rsa1', '-D', env.dir])
    check(rc != 0 and 'exists' in err, 'genkey refuses to overwrite', err)
    ed_path, ed_rec, _ = env.genkey(OURS, 'ed1', 'ed25519')
    check(re.match(r'v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$', ed_rec) is not None, 'genkey ed25519 record', ed_rec)
    rsa2_path, rsa2_rec, _ = env.genkey(OURS, 'rsa2', 'rsa', 1024)
    big_path, big_rec, _ = env.genkey(OURS, 'big', 'rsa', 4096)
    rc, _, err = run([SIFTCTL, 'dkim', 'genkey', '-d', OURS, '-s', 'tiny', '-b', '512', '-D', env.dir])
    check(rc != 0, 'genkey refuses RSA under 1024 bits', err)
    newdir = env.path('newkeys')
    rc, out, err = run([SIFTCTL, 'dkim', 'genkey', '-d', OURS, '-s', 'nd', '-D', newdir])
    check(rc == 0 and os.path.isfile(os.path.join(newdir, '%s.nd.key' % OURS)) and
          (os.stat(newdir).st_mode & 0o777) == 0o755, 'genkey -D makes a missing key directory (0755)', err)
    rc, _, err = run([SIFTCTL, 'dkim', 'genkey', '-d', OURS, '-s', 'nd', '-D', env.path('no', 'such')])
    check(rc != 0 and 'cannot make the directory' in err and env.path('no', 'such') in err,
          'genkey -D whose parent is missing: an error naming the directory', err)
    env.write('keytable', 'rsa1 %s:rsa1:%s\ned1 %s:ed1:%s\n# rotation target\nrsa2 %s:rsa2:%s\n'
              'big\n  %s:big:%s\n' % (OURS, rsa_path, OURS, ed_path, OURS, rsa2_path, OURS, big_path))
    env.write('signingtable', '%s rsa1, ed1\n.%s rsa1\nsolo@%s rsa2\n' % (OURS, OURS, OURS))
    for sel, rec in (('rsa1', rsa_rec), ('ed1', ed_rec), ('rsa2', rsa2_rec), ('big', big_rec)):
        env.records['%s._domainkey.%s' % (sel, OURS)] = rec
    # Remote signers: dkimpy (RSA, Ed25519, a 512-bit RSA key, a wrong key,
    # a revoked one), OpenDKIM (opendkim-testmsg).
    subprocess.run(['openssl', 'genrsa', '-out', env.path('py.pem'), '2048'], check=True,
                   stderr=subprocess.DEVNULL)
    subprocess.run(['openssl', 'genrsa', '-out', env.path('small.pem'), '512'], check=True,
                   stderr=subprocess.DEVNULL)
    subprocess.run(['openssl', 'genrsa', '-out', env.path('other.pem'), '2048'], check=True,
                   stderr=subprocess.DEVNULL)

    def pubrec(pem, k='rsa'):
        der = subprocess.run(['openssl', 'pkey', '-in', pem, '-pubout', '-outform', 'DER'], check=True,
                             stdout=subprocess.PIPE).stdout
        import base64
        return 'v=DKIM1; k=%s; p=%s' % (k, base64.b64encode(der).decode())
    py_key = open(env.path('py.pem'), 'rb').read()
    small_key = open(env.path('small.pem'), 'rb').read()
    other_key = open(env.path('other.pem'), 'rb').read()
    import base64
    import nacl.signing
    sk = nacl.signing.SigningKey.generate()
    ed_seed = base64.b64encode(bytes(sk))
    ed_pub = base64.b64encode(bytes(sk.verify_key)).decode()
    R = lambda s: '%s._domainkey.%s' % (s, REMOTE)  # noqa: E731
    env.records[R('py')] = pubrec(env.path('py.pem'))
    env.records[R('pyed')] = 'v=DKIM1; k=ed25519; p=%s' % ed_pub
    env.records[R('small')] = pubrec(env.path('small.pem'))
    env.records[R('wrong')] = pubrec(env.path('other.pem'))
    env.records[R('revoked')] = 'v=DKIM1; k=rsa; p='
    env.records[R('strict')] = pubrec(env.path('py.pem')) + '; t=s'
    env.records[R('unknownk')] = 'v=DKIM1; k=foo; p=AAAA'
    env.records[R('od')] = pubrec(env.path('py.pem'))
    env.records[R('slow')] = 'TIMEOUT'
    env.records[R('broken')] = 'SERVFAIL'
    env.publish()
    conf = env.conf()

    rc, out, err = run([SIFTCTL, '-c', conf, 'dkim', 'showkeys'])
    recs = {}
    for line in out.splitlines():
        if line and not line.startswith(';'):
            strs = re.findall(r'"([^"]*)"', line)
            recs[line.split()[0]] = strs
    check(rc == 0 and len(recs) == 4, 'showkeys lists every key', out + err)
    check(all(len(s) <= 255 for v in recs.values() for s in v) and len(recs['big._domainkey.%s.' % OURS]) > 2,
          'showkeys splits into <=255-byte strings')
    check(''.join(recs.get('rsa1._domainkey.%s.' % OURS, [])) == rsa_rec, 'showkeys record equals genkey record')
    rc, out, err = run([SIFTCTL, '-c', conf, 'dkim', 'testkeys'])
    check(rc == 0 and out.count('=> pass') == 4, 'testkeys: all pass', out + err)
    env.records['rsa2._domainkey.%s' % OURS] = rsa_rec
    del env.records['big._domainkey.%s' % OURS]
    env.publish()
    rc, out, err = run([SIFTCTL, '-c', conf, 'dkim', 'testkeys'])
    check(rc == 1 and 'rsa2._domainkey.%s => mismatch' % OURS in out
          and 'big._domainkey.%s => missing' % OURS in out and out.count('=> pass') == 2,
          'testkeys: mismatch and missing reported', out)
    # Records with the right p= that verifiers cannot use: an Ed25519 key
    # without k=ed25519 (read as RSA), an RSA key limited to h=sha1.
    env.records['ed1._domainkey.%s' % OURS] = ed_rec.replace('k=ed25519; ', '')
    env.records['rsa1._domainkey.%s' % OURS] = rsa_rec.replace('k=rsa; ', 'k=rsa; h=sha1; ')
    env.publish()
    rc, out, err = run([SIFTCTL, '-c', conf, 'dkim', 'testkeys'])
    check(rc == 1 and 'ed1._domainkey.%s => mismatch' % OURS in out
          and 'rsa1._domainkey.%s => mismatch' % OURS in out and 'sha256' in out,
          'testkeys: a record verifiers cannot use (no k=ed25519, h=sha1) is not a pass', out)
    env.records['ed1._domainkey.%s' % OURS] = ed_rec
    env.records['rsa1._domainkey.%s' % OURS] = rsa_rec
    env.records['rsa2._domainkey.%s' % OURS] = rsa2_rec
    env.records['big._domainkey.%s' % OURS] = big_rec
    env.publish()

    # ---- start-up refusals (filterd -t) ------------------------------------
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-t'])
    check(rc == 0, 'filterd -t accepts the good configuration', out + err)
    os.chmod(rsa_path, 0o640)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-t'])
    check(rc != 0 and 'group or others' in out + err, 'filterd -t refuses a group-readable key', out + err)
    os.chmod(rsa_path, 0o604)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-t'])
    check(rc != 0 and 'mode 0604' in out + err, 'filterd -t refuses an other-readable key', out + err)
    os.chmod(rsa_path, 0o600)
    # signing without its tables is refused, naming the setting (never a
    # silent no-sign); dkim_sign = no verifies without them
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=', '-o', 'dkim_signing_table=', '-t'])
    check(rc != 0 and 'dkim_key_table is not set' in out + err, 'filterd -t refuses signing without dkim_key_table',
          out + err)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_signing_table=', '-t'])
    check(rc != 0 and 'dkim_signing_table is not set' in out + err,
          'filterd -t refuses signing without dkim_signing_table', out + err)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=texthash:' + env.path('nonexistent'),
                        '-t'])
    check(rc != 0 and 'dkim_key_table: key table %s: No such file' % env.path('nonexistent') in out + err,
          'filterd -t names dkim_key_table when the table is missing', out + err)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=', '-o', 'dkim_signing_table=',
                        '-o', 'dkim_sign=no', '-t'])
    check(rc == 0, 'filterd -t accepts dkim_sign = no without tables (verify only)', out + err)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=inline:{ {k = %s:s:/nonexistent/key} }' % OURS,
                        '-o', 'dkim_signing_table=', '-t'])
    check(rc != 0 and 'No such file' in out + err, 'filterd -t refuses a missing key file', out + err)
    env.write('garbage.key', 'not a key\n', 0o600)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=inline:{ {k = %s:s:%s} }' % (
        OURS, env.path('garbage.key')), '-o', 'dkim_signing_table=', '-t'])
    check(rc != 0 and 'not a PEM private key' in out + err, 'filterd -t refuses a file that is no key', out + err)
    env.write('small.key', small_key, 0o600)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=inline:{ {k = %s:s:%s} }' % (
        OURS, env.path('small.key')), '-o', 'dkim_signing_table=', '-t'])
    check(rc != 0 and '512 bits' in out + err, 'filterd -t refuses a 512-bit RSA key', out + err)
    fifo = env.path('fifo.key')
    os.mkfifo(fifo, 0o600)
    try:
        rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o',
                            'dkim_key_table=inline:{ f = %s:f:%s }' % (OURS, fifo), '-t'], timeout=20)
    except subprocess.TimeoutExpired:
        rc, out, err = 0, 'timed out', ''
    check(rc != 0 and 'not a regular file' in out + err, 'filterd -t refuses a FIFO as key file (no hang)',
          out + err)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=pcre:/x', '-t'])
    check(rc != 0 and 'texthash' in out + err, 'filterd -t refuses a key table that cannot be listed', out + err)
    # the key table is read up to 64 MiB, lines up to 64 KiB: endless input,
    # a larger file or a longer line is refused with its name and the limit
    big = env.path('big.keytable')
    with open(big, 'wb') as f:  # sparse
        f.truncate((64 << 20) + 1)
    env.write('longline.keytable', 'k %s:s:/%s\n' % (OURS, 'a' * (64 << 10)))
    env.write('longcont.keytable', 'k %s:s:/x\n' % OURS + (' %s\n' % ('a' * 1000)) * 66)
    too_big = 'larger than 64 MiB, the largest table Sift reads; not read'
    for table, says in (('/dev/zero', 'key table /dev/zero: ' + too_big),
                        (big, 'key table %s: %s' % (big, too_big)),
                        (env.path('longline.keytable'), '%s:1: line longer than 64 KiB' % env.path('longline.keytable')),
                        (env.path('longcont.keytable'), '%s:1: line longer than 64 KiB' % env.path('longcont.keytable'))):
        rc, out, err = sifttest.bounded_run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=texthash:' + table, '-t'])
        check(rc == 1 and 'dkim_key_table: ' + says in out + err,
              'filterd -t refuses the key table %s at the limit' % os.path.basename(table), (rc, out + err))
    rc, out, err = sifttest.bounded_run([SIFTCTL, '-c', conf, '-o', 'dkim_key_table=texthash:/dev/zero', 'dkim', 'showkeys'])
    check(rc == 1 and 'key table /dev/zero: ' + too_big in err, 'siftctl dkim showkeys refuses an endless key table',
          (rc, err))
    os.unlink(big)
    # a FIFO without a writer: refused at once, not waited on in open(2)
    fifo = env.path('fifo.keytable')
    os.mkfifo(fifo, 0o644)
    rc, out, err = sifttest.bounded_run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_key_table=texthash:' + fifo, '-t'],
                                        limit_s=10)
    check(rc == 1 and 'key table %s: a FIFO or socket, not a file' % fifo in out + err,
          'filterd -t refuses a FIFO as the key table at once', (rc, out + err))
    os.unlink(fifo)
    rc, out, err = run([FILTERD, *AS_USER, '-c', conf, '-o', 'dkim_canonicalization=loose/simple', '-t'])
    check(rc != 0 and 'canonicalization' in out + err, 'filterd -t refuses a bad canonicalization', out + err)

    # ---- signing decisions ----------------------------------------------------
    m = msg()
    r = siftctl_test(conf, m, 'originating')
    sigs = headers_of(r, 'DKIM-Signature')
    check(len(sigs) == 2 and all(e['op'] == 'insert' and e['index'] == 0 for e in sigs)
          and 'a=rsa-sha256' in sigs[1]['value'] and 'a=ed25519-sha256' in sigs[0]['value'],
          'dual signing: RSA and Ed25519 signatures inserted at index 0', r)
    v = sigs[1]['value'] if sigs else ''
    tags = {t.split('=', 1)[0].strip(): re.sub(r'\s+', '', t.split('=', 1)[1]) for t in v.split(';') if '=' in t}
    check(tags.get('c') == 'relaxed/simple', 'default c=relaxed/simple', v)
    check(int(tags.get('x', 0)) - int(tags.get('t', 0)) == 864000, 'x= is t= + 10 days', v)
    check('l' not in tags, 'no l= tag', v)
    h = tags.get('h', '').lower().split(':')
    check(h.count('from') == 2 and h.count('subject') == 2 and h.count('to') == 2 and h.count('cc') == 1
          and h.count('reply-to') == 1 and h.count('mime-version') == 2,
          'oversigning: from, subject, to ... listed once more than present', tags.get('h'))
    signed = apply_inserts(m, r)
    check(dkim.verify(signed, dnsfunc=dnsfunc_for(env.dns.port)), 'dkimpy verifies the filterd-signed message')
    r = siftctl_test(conf, msg(frm='Eve <eve@elsewhere.test>'), 'originating')
    check(not headers_of(r, 'DKIM-Signature')
          and r['action'] == 'accept', 'From domain not in the signing table: not signed', r)
    r = siftctl_test(conf, m, 'originating', sender='bounce@elsewhere.test')
    check(not headers_of(r, 'DKIM-Signature'), 'envelope sender not ours: not signed', r)
    r = siftctl_test(conf, m, 'originating', sender='')
    check(len(headers_of(r, 'DKIM-Signature')) == 2, 'null sender (bounce) from our domain: signed', r)
    r = siftctl_test(conf, msg(frm='x@sub.%s' % OURS), 'originating', sender='x@sub.%s' % OURS)
    s1 = headers_of(r, 'DKIM-Signature')
    check(len(s1) == 1 and 's=rsa1' in s1[0]['value'], 'subdomain wildcard .domain signs with its key', r)
    r = siftctl_test(conf, msg(frm='solo@%s' % OURS), 'originating', sender='solo@%s' % OURS)
    s1 = headers_of(r, 'DKIM-Signature')
    check(len(s1) == 1 and 's=rsa2' in s1[0]['value'], 'address entry wins over the domain entry', r)
    r = siftctl_test(conf, signed, 'originating')
    check(not headers_of(r, 'DKIM-Signature'), 'already signed by our domain: not signed again', r)
    # A table keyed on addresses (OpenDKIM's refile "*@domain" written as
    # pcre:) answers for the envelope sender as it does for From.
    env.write('signing.pcre', '/@%s$/ rsa1\n' % re.escape(OURS))
    pcre_opts = ['dkim_signing_table=pcre:%s' % env.path('signing.pcre')]
    r = siftctl_test(conf, m, 'originating', opts=pcre_opts)
    s1 = headers_of(r, 'DKIM-Signature')
    check(len(s1) == 1 and 's=rsa1' in s1[0]['value'],
          'pcre: signing table keyed on addresses: signed (sender check by address)', r)
    r = siftctl_test(conf, m, 'originating', sender='bounce@elsewhere.test', opts=pcre_opts)
    check(not headers_of(r, 'DKIM-Signature'), 'pcre: signing table: envelope sender not ours: not signed', r)
    r = siftctl_test(conf, m, 'inbound', opts=['dkim_add_auth_results=yes'])
    check(not headers_of(r, 'DKIM-Signature')
          and headers_of(r, 'Authentication-Results'), 'inbound profile: no signature, verification instead', r)
    r = siftctl_test(conf, m, 'inbound', opts=['dkim_sign_networks=inline:{127.0.0.1=yes}'])
    check(len(headers_of(r, 'DKIM-Signature')) == 2,
          'dkim_sign_networks: a chosen relay is signed in the inbound profile', r)
    r = siftctl_test(conf, m, 'originating', opts=['dkim_signing_table=inline:{%s=nosuchkey}' % OURS])
    check(r['action'] == 'tempfail'
          and not headers_of(r, 'DKIM-Signature'), 'signing error (unknown key name) tempfails by default', r)
    r = siftctl_test(conf, m, 'originating', opts=['dkim_signing_table=inline:{%s=nosuchkey}' % OURS,
                                                   'dkim_error_action=accept'])
    check(r['action'] == 'accept', 'dkim_error_action=accept lets it through', r)
    r = siftctl_test(conf, msg(extra=['From: Mallory <m@%s>' % OURS]), 'originating')
    check(not headers_of(r, 'DKIM-Signature'), 'two From headers: not signed', r)
    r = siftctl_test(conf, m, 'originating', opts=['dkim_signature_ttl=0'])
    check('x=' not in headers_of(r, 'DKIM-Signature')[0]['value'], 'dkim_signature_ttl=0: no x=', r)

    # ---- interop: every algorithm and canonicalization -------------------------
    dnsf = dnsfunc_for(env.dns.port)
    for canon in ('simple/simple', 'simple/relaxed', 'relaxed/simple', 'relaxed/relaxed'):
        for sel in ('rsa1', 'ed1', 'big'):
            body = 'Line  with  spaces \r\n\r\nTrailing blank lines\r\n\r\n\r\n'
            rc, out, err = sift_sign(env, conf, msg(body=body, extra=['X-Folded: a\r\n  b']), OURS, sel,
                                     opts=['dkim_canonicalization=' + canon])
            want = canon
            ok = rc == 0 and out.startswith(b'DKIM-Signature:') and ('c=%s;' % want).encode() in out
            check(ok, 'siftctl dkim sign %s %s' % (sel, canon), err)
            check(ok and dkim.verify(out, dnsfunc=dnsf), '  dkimpy verifies %s %s' % (sel, canon))
            okod, text = opendkim_verify(env, out)
            check(ok and okod and 'dkim=pass' in text, '  OpenDKIM verifies %s %s' % (sel, canon), text[-400:])
            rc, vout, verr = sift_verify(env, conf, [out])
            check(rc == 0 and 'dkim=pass' in vout, '  siftctl dkim verify passes %s %s' % (sel, canon),
                  vout + verr)

    # ---- verification ------------------------------------------------------------
    def pysign(data, sel, key=py_key, canon=(b'relaxed', b'relaxed'), alg=b'rsa-sha256', **kw):
        sig = dkim.sign(data, sel.encode(), REMOTE.encode(), key, canonicalize=canon, signature_algorithm=alg,
                        **kw)
        return sig + data

    def verdict(data, opts=()):
        r = siftctl_test(conf, data, 'inbound', sender='x@%s' % REMOTE, opts=opts)
        ar = headers_of(r, 'Authentication-Results')
        return r, ar[0]['value'] if ar else ''

    base = msg(frm='Remote <someone@%s>' % REMOTE)
    r, ar = verdict(pysign(base, 'py'))
    check(re.search(r'^mx\.sift\.test;\s+dkim=pass header\.d=remote\.test header\.i=@remote\.test header\.s=py '
                    r'header\.a=rsa-sha256 header\.b=[A-Za-z0-9+/]{8,}', ar) is not None,
          'dkimpy rsa-sha256 verifies in filterd: dkim=pass with d, i, s, a, b (RFC 8601)', ar)
    syms = {s['name']: s.get('option') for s in r['symbols']}
    check(syms.get('DKIM_VALID') == REMOTE, 'DKIM_VALID symbol with the domain', r['symbols'])
    r, ar = verdict(pysign(base, 'pyed', key=ed_seed, alg=b'ed25519-sha256'))
    check('dkim=pass' in ar and 'header.a=ed25519-sha256' in ar, 'dkimpy ed25519-sha256 verifies in filterd', ar)
    r, ar = verdict(pysign(base, 'pyed', key=ed_seed, alg=b'ed25519-sha256', canon=(b'simple', b'simple')))
    check('dkim=pass' in ar, 'dkimpy ed25519-sha256 simple/simple verifies in filterd', ar)
    for c in ((b'simple', b'simple'), (b'relaxed', b'simple'), (b'simple', b'relaxed')):
        r, ar = verdict(pysign(base, 'py', canon=c))
        check('dkim=pass' in ar, 'dkimpy %s/%s verifies in filterd' % (c[0].decode(), c[1].decode()), ar)
    od_key = env.write('od.key', py_key, 0o600)
    subprocess.run(['openssl', 'genpkey', '-algorithm', 'ed25519', '-out', env.path('oded.key')], check=True)
    os.chmod(env.path('oded.key'), 0o600)
    raw = subprocess.run(['openssl', 'pkey', '-in', env.path('oded.key'), '-pubout', '-outform', 'DER'],
                         check=True, stdout=subprocess.PIPE).stdout[-32:]
    env.records[R('oded')] = 'v=DKIM1; k=ed25519; p=%s' % base64.b64encode(raw).decode()
    env.publish()
    for sel, keyf, alg, canon in (('od', od_key, 'rsa-sha256', 'relaxed/relaxed'),
                                  ('od', od_key, 'rsa-sha256', 'simple/simple'),
                                  ('oded', env.path('oded.key'), 'ed25519-sha256', 'relaxed/relaxed')):
        odm = opendkim_sign(env, base, sel, keyf, alg, canon)
        r, ar = verdict(odm)
        check('dkim=pass' in ar and 'header.s=%s' % sel in ar,
              'OpenDKIM (opendkim -t) %s %s signature verifies in filterd' % (alg, canon), ar)
    p = env.write('od-in.eml', base.replace(b'\r\n', b'\n'))
    with open(p, 'rb') as f:
        od = subprocess.run(['opendkim-testmsg', '-d', REMOTE, '-s', 'od', '-k', od_key, '-C'], stdin=f,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    odm = od.stdout.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
    r, ar = verdict(odm)
    check(od.returncode == 0 and
          'dkim=fail reason="rsa-sha1 is not accepted (RFC 8301)"' in ar and 'header.s=od' in ar,
          'opendkim-testmsg (signs rsa-sha1): fail per RFC 8301', ar)
    good = pysign(base, 'py')
    r, ar = verdict(good.replace(b'See you.', b'See you!'))
    check('dkim=fail reason="body hash did not verify"' in ar, 'tampered body: dkim=fail (body hash)', ar)
    syms = {s['name']: s.get('option') for s in r['symbols']}
    check(syms.get('DKIM_INVALID') == REMOTE, 'DKIM_INVALID symbol with the domain', r['symbols'])
    r, ar = verdict(good.replace(b'Subject: Quarterly report', b'Subject: Quarterly rep0rt'))
    check('dkim=fail' in ar, 'tampered signed header: dkim=fail', ar)
    rr = pysign(base, 'py', canon=(b'relaxed', b'relaxed'))
    rr = rr.replace(b'Subject: Quarterly report', b'Subject:   Quarterly    report  ')
    rr = rr.replace(b'See you.\r\n', b'See   you.   \r\n\r\n\r\n')
    r, ar = verdict(rr)
    check('dkim=pass' in ar, 'relaxed/relaxed tolerates white space changes', ar)
    rs = pysign(base, 'py', canon=(b'simple', b'simple')).replace(b'Subject: Quarterly report',
                                                                   b'Subject:  Quarterly report')
    r, ar = verdict(rs)
    check('dkim=fail' in ar, 'simple/simple does not', ar)
    r, ar = verdict(pysign(base, 'wrong'))
    check('dkim=fail reason="signature verification failed"' in ar, 'wrong key: dkim=fail', ar)
    r, ar = verdict(pysign(base, 'revoked'))
    check(re.search(r'dkim=(fail|permerror) reason="[^"]*revoked', ar) is not None, 'revoked key (p=): not pass', ar)
    r, ar = verdict(pysign(base, 'nokey'))
    check('dkim=permerror' in ar, 'missing key (NXDOMAIN): dkim=permerror', ar)
    r, ar = verdict(pysign(base, 'small', key=small_key))
    check('dkim=fail' in ar and 'header.s=small' in ar, '512-bit RSA key: dkim=fail (RFC 8301)', ar)
    r, ar = verdict(pysign(base, 'py', alg=b'rsa-sha1'))
    check('dkim=fail reason="rsa-sha1 is not accepted (RFC 8301)"' in ar, 'rsa-sha1: dkim=fail (RFC 8301)', ar)
    # An expired x=: signed by us with a 1 s lifetime, verified later with
    # no clock drift allowed.
    rc, expd, err = sift_sign(env, conf, msg(), OURS, 'rsa1', opts=['dkim_signature_ttl=1s'])
    time.sleep(2.2)
    r = siftctl_test(conf, expd, 'inbound', opts=['dkim_clock_drift=0'])
    ar = headers_of(r, 'Authentication-Results')[0]['value']
    check(rc == 0 and 'dkim=fail' in ar and 'expired' in ar, 'expired x=: dkim=fail (expired)', ar)
    r, ar = verdict(pysign(base, 'strict', identity=('@mail.%s' % REMOTE).encode()))
    check('dkim=pass' not in ar and 'dkim=' in ar, 't=s key with i= in a subdomain: not pass', ar)
    r, ar = verdict(pysign(base, 'strict'))
    check('dkim=pass' in ar, 't=s key with i= = d=: pass', ar)
    r, ar = verdict(pysign(base, 'unknownk'))
    check(re.search(r'dkim=(permerror|fail)', ar) is not None, 'unknown key type: not pass', ar)
    bad_alg = pysign(base, 'py').replace(b'a=rsa-sha256', b'a=rsa-sha512')
    r, ar = verdict(bad_alg)
    check('dkim=permerror' in ar, 'unknown algorithm: dkim=permerror', ar)
    for name, hv in (('garbage', b'DKIM-Signature: this is not a signature\r\n'),
                     ('no b=', b'DKIM-Signature: v=1; a=rsa-sha256; d=remote.test; s=py; h=from; bh=AAAA\r\n'),
                     ('huge', b'DKIM-Signature: v=1; ' + b'x' * 20000 + b'\r\n'),
                     ('binary', b'DKIM-Signature: v=1; a=\xff\xfe; d=\x00x; s=;;;===\r\n'),
                     ('bad domain', b'DKIM-Signature: v=1; a=rsa-sha256; d=../..; s=a b; h=from; bh=AA; b=AA\r\n')):
        r, ar = verdict(hv + base)
        check(r['action'] == 'accept' and re.search(r'dkim=(permerror|fail)', ar) is not None,
              'malformed signature (%s): permerror, no crash' % name, ar)
    r, ar = verdict(base)
    syms = {s['name'] for s in r['symbols']}
    check(ar.endswith('; dkim=none') and 'DKIM_NONE' in syms, 'no signature: dkim=none and DKIM_NONE', ar)

    # DNS timeout -> temperror (never a failure, never a lost message).
    t0 = time.time()
    r, ar = verdict(pysign(base, 'slow'), opts=['dns_timeout=300ms'])
    check('dkim=temperror' in ar and r['action'] == 'accept', 'DNS timeout: dkim=temperror, message accepted', ar)
    check(time.time() - t0 < 10, 'DNS timeout is bounded')
    syms = {s['name'] for s in r['symbols']}
    check('DKIM_TEMPFAIL' in syms, 'DKIM_TEMPFAIL symbol', r['symbols'])
    # An expired signature needs no key: dkim=fail at once, not the DNS wait
    # and a temperror.
    expired = re.sub(rb' t=\d+;', b' t=1000; x=2000;', pysign(base, 'slow'), count=1)
    t0 = time.time()
    r, ar = verdict(expired, opts=['dns_timeout=3s'])
    check('dkim=fail reason="signature expired"' in ar and time.time() - t0 < 2.5,
          'expired x= with a key that times out: dkim=fail, no DNS wait', ar)
    r, ar = verdict(pysign(base, 'broken'))
    check('dkim=temperror' in ar, 'SERVFAIL: dkim=temperror', ar)

    # Several signatures, and the limit.
    multi = pysign(pysign(base, 'py'), 'wrong')
    r, ar = verdict(multi)
    check(ar.count('dkim=') == 2 and 'dkim=pass' in ar and 'dkim=fail' in ar, 'two signatures: one result each', ar)
    many = base
    for _ in range(8):
        many = pysign(many, 'py')
    r, ar = verdict(many, opts=['dkim_max_signatures=3'])
    check(ar.count('dkim=') == 3, 'dkim_max_signatures bounds the work', ar)
    # The most results there can be (dkim_max_signatures = 64, long d= and
    # s=, a reason each): every resinfo whole, in order, quotes balanced,
    # each on its own line, the header well within Postfix's limits.
    d = ('a' * 60 + '.') * 4 + 'test'
    sigs = b''.join(('DKIM-Signature: v=1; a=rsa-sha256; d=%s; s=%s%02d; h=from; bh=x; b=%02dAAAAAAAA\r\n'
                     % (d, 's' * 120, i, i)).encode() for i in range(64))
    r, ar = verdict(sigs + base, opts=['dkim_max_signatures=64'])
    resinfos = ar.split(';\r\n\t')
    resinfos[0] = resinfos[0].split('; ', 1)[-1] if resinfos[0].startswith('mx.sift.test;') else ''
    one = re.compile(r'dkim=permerror reason="[^"\\]*" header\.d=%s header\.s=s{120}(\d\d) header\.a=rsa-sha256 '
                     r'header\.b=(\d\d)A{6}$' % re.escape(d))
    got = [one.match(x) for x in resinfos]
    check(len(resinfos) == 64 and all(got) and [int(g.group(1)) for g in got] == list(range(64)) and
          all(g.group(1) == g.group(2) for g in got),
          '64 signatures: 64 whole resinfos in Authentication-Results, in order (none cut or dropped)',
          (len(ar), len(resinfos), ar[-300:]))
    check(ar.count('"') % 2 == 0 and ar.count('"') == 128, '64 signatures: the quoted reasons are all closed',
          ar.count('"'))
    check(max(len(x) for x in ar.split('\r\n')) < 998 and len(ar) < 48 * 1024,
          '64 signatures: every line under 998 bytes, the value under 48 KiB', (len(ar),))
    check(r['action'] == 'accept', '64 signatures: accepted', r['action'])

    # Forged Authentication-Results with our authserv-id are deleted (highest
    # index first); others are kept.
    forged = (b'Authentication-Results: mx.sift.test; dkim=pass header.d=bank.test\r\n'
              b'Authentication-Results: other.example; dkim=pass\r\n'
              b'Authentication-Results:  mx.sift.test (comment); spf=pass\r\n') + good
    r, ar = verdict(forged)
    dels = [e for e in r['headers'] if e['op'] == 'delete']
    check([(e['name'], e['index']) for e in dels] == [('Authentication-Results', 3), ('Authentication-Results', 1)],
          'forged A-R with our authserv-id deleted, highest index first',
          r['headers'])
    ins = [e for e in r['headers'] if e['op'] == 'insert']
    check(r['headers'][-1]['op'] == 'insert' and ins[0]['index'] == 0,
          'our A-R inserted at index 0, after the deletions', r['headers'])
    r, ar = verdict(good, opts=['dkim_authserv_id=auth.example'])
    check(ar.startswith('auth.example;'), 'dkim_authserv_id overrides authserv_id', ar)

    # siftctl dkim verify: one line per signature, exit status.
    rc, out, err = sift_verify(env, conf, [multi])
    check(rc == 1 and len(out.splitlines()) == 2,
          'siftctl dkim verify: a line per signature, exit 1 on a failure', out + err)
    rc, out, err = sift_verify(env, conf, [good, pysign(base, 'pyed', key=ed_seed, alg=b'ed25519-sha256')])
    check(rc == 0 and out.count('dkim=pass') == 2, 'siftctl dkim verify: all pass -> exit 0', out + err)
    rc, out, err = sift_verify(env, conf, [base])
    check(rc == 1 and 'dkim=none' in out, 'siftctl dkim verify: unsigned -> exit 1', out + err)

    # Key cache: two messages, one DNS query per key.
    env.dns.log.clear()
    rc, out, err = sift_verify(env, conf, [pysign(base, 'od'), pysign(base, 'od'), pysign(base, 'od')])
    q = [x for x in env.dns.log if x[0].lower().startswith('od._domainkey')]
    check(rc == 0 and len(q) == 1, 'keys are cached with their TTL (1 query for 3 messages)', env.dns.log)
    cache_rotation(env, conf, base, pysign, py_key, other_key, pubrec, R)


def cache_rotation(env, conf, base, pysign, key_a, key_b, pubrec, R):
    """One `siftctl dkim verify` process (one key cache) reads its messages
    from FIFOs, so DNS changes between messages: a key record with a TTL of
    3 s is served from the cache while it lasts (a rotated record is not
    seen yet, no query), the rotated key is used after the TTL, a revoked
    record (p=) fails after the next TTL, and many messages cost one query
    per TTL."""
    name = R('rot')
    env.records[name] = pubrec(env.path('py.pem'))
    env.ttls[name] = 3  # cached for 2 to 3 s (whole seconds)
    env.publish()
    env.dns.log.clear()
    fifos = []
    for i in range(4):
        f = env.path('rot%d.eml' % i)
        if os.path.exists(f):
            os.unlink(f)
        os.mkfifo(f)
        fifos.append(f)
    first = [env.write('rot-first%d.eml' % i, pysign(base, 'rot', key=key_a)) for i in range(20)]
    proc = subprocess.Popen([SIFTCTL, '-c', conf, 'dkim', 'verify'] + first + fifos, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def feed(i, data):
        with open(fifos[i], 'wb') as f:
            f.write(data)

    try:
        # the 20 messages are read before the first FIFO blocks
        feed(0, pysign(base, 'rot', key=key_a))
        env.records[name] = pubrec(env.path('other.pem'))  # rotated to key B
        env.publish()
        feed(1, pysign(base, 'rot', key=key_a))             # cached key A still serves
        time.sleep(5)  # past our TTL and the resolver's (whole seconds)
        feed(2, pysign(base, 'rot', key=key_b))             # TTL over: key B
        t0 = time.time()  # the FIFO is written before it is verified: wait for its query
        while len([x for x in env.dns.log if x[0].lower() == name.lower()]) < 2 and time.time() - t0 < 20:
            time.sleep(0.05)
        time.sleep(0.5)
        env.records[name] = 'v=DKIM1; k=rsa; p='
        env.publish()
        time.sleep(5)  # past our TTL and the resolver's (whole seconds)
        feed(3, pysign(base, 'rot', key=key_b))             # revoked
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = out.splitlines()
    res = {l.split(':', 1)[0]: l for l in lines}
    q = [x for x in env.dns.log if x[0].lower() == name.lower()]
    check(all('dkim=pass' in res.get(f, '') for f in first) and 'dkim=pass' in res.get(fifos[0], ''),
          'key cache: 21 messages verified with one key record', out + err)
    check('dkim=pass' in res.get(fifos[1], ''), 'key cache: a rotated record is not seen before the TTL ends',
          out + err)
    check('dkim=pass' in res.get(fifos[2], ''), 'key cache: the rotated key is used after the TTL', out + err)
    check(re.search(r'dkim=fail.*revoked', res.get(fifos[3], '')) is not None,
          'key cache: a revoked record (p=) fails after the TTL', out + err)
    check(len(q) == 3, 'key cache: one DNS query per TTL (3 for 24 messages)', q)


if __name__ == '__main__':
    sys.exit(main())
