#!/usr/bin/python3
"""test_interop.py - the dmarc plugin's decisions against an independent
implementation: the DMARC evaluation of the `authheaders` Python package
(Debian python3-authheaders, its check_dmarc()).

A table of messages (From domains, envelope senders, DKIM signatures made
with dkimpy) runs through filterd's chain spf dkim dmarc (`siftctl test`)
against records on the local DNS server; authheaders evaluates the same
message with the SPF and DKIM results our chain reported and the same DNS
records (its dnsfunc asks the same server). The dmarc= result and, where
both say, the policy must agree.

Domains are under real public suffixes (com, co.uk), served only by the
local DNS server: authheaders' suffix list (publicsuffix2) takes an
unlisted top-level domain such as .test as everybody's organizational
domain, where libpsl applies the implicit "*" rule; and they have no
hyphen, which authheaders 0.15 cuts From domains at. Cases left out because
authheaders does not model them: several DKIM signatures (it takes one
result), several DMARC records (its dnsfunc returns one string), and the
policy (not the result) when the record found at the From domain has sp=
(authheaders applies sp there too).
Prints "N passed, N failed".
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
from sifttest import check  # noqa: E402
import dkim  # noqa: E402
import dns.resolver  # noqa: E402
import authheaders  # noqa: E402

CLIENT = '192.0.2.10'
SOA = {"name": ".", "type": "SOA", "data": "ns.root.test. hostmaster.root.test. 1 3600 600 86400 60"}
SPF_OK = 'v=spf1 ip4:%s -all' % CLIENT

# name -> TXT
RECORDS = {
    'siftdmarca.com': SPF_OK, 'mail.siftdmarca.com': SPF_OK, 'siftother.com': SPF_OK,
    'siftdmarcs.com': SPF_OK, 'mail.siftdmarcs.com': SPF_OK, 'siftdmarcn.com': '',
    '_dmarc.siftdmarca.com': 'v=DMARC1; p=reject',
    '_dmarc.siftdmarcs.com': 'v=DMARC1; p=quarantine; adkim=s; aspf=s',
    '_dmarc.siftdmarc.co.uk': 'v=DMARC1; p=reject; sp=quarantine',
    '_dmarc.siftdmarcp.com': 'v=DMARC1; p=none',
    '_dmarc.siftdmarcx.com': 'v=spf1 -all',
}
SIGNERS = ('siftdmarca.com', 'mail.siftdmarca.com', 'siftdmarcs.com', 'mail.siftdmarcs.com',
           'sub.siftdmarc.co.uk', 'siftdmarc.co.uk', 'siftother.com', 'siftdmarcp.com')

# (From domain, envelope sender domain, DKIM signing domain or None)
CASES = [
    ('siftdmarca.com', 'siftother.com', None),
    ('siftdmarca.com', 'siftdmarca.com', None),
    ('siftdmarca.com', 'mail.siftdmarca.com', None),
    ('siftdmarca.com', 'siftother.com', 'mail.siftdmarca.com'),
    ('siftdmarca.com', 'siftother.com', 'siftother.com'),
    ('mail.siftdmarca.com', 'siftother.com', 'siftdmarca.com'),
    ('siftdmarcs.com', 'mail.siftdmarcs.com', None),
    ('siftdmarcs.com', 'siftdmarcs.com', None),
    ('siftdmarcs.com', 'siftother.com', 'mail.siftdmarcs.com'),
    ('siftdmarcs.com', 'siftother.com', 'siftdmarcs.com'),
    ('sub.siftdmarc.co.uk', 'siftother.com', None),
    ('sub.siftdmarc.co.uk', 'siftother.com', 'sub.siftdmarc.co.uk'),
    ('sub.siftdmarc.co.uk', 'siftother.com', 'siftdmarc.co.uk'),
    ('siftdmarc.co.uk', 'siftother.com', None),
    ('siftdmarcp.com', 'siftother.com', None),
    ('siftdmarcp.com', 'siftother.com', 'siftdmarcp.com'),
    ('siftdmarcn.com', 'siftother.com', None),
    ('siftdmarcx.com', 'siftother.com', None),
]


def genkey(d, domain):
    out = subprocess.run([sifttest.program('siftctl'), 'dkim', 'genkey', '-d', domain, '-s', 's1', '-t', 'rsa',
                          '-b', '1024', '-D', d], check=True, stdout=subprocess.PIPE, text=True).stdout
    with open(os.path.join(d, '%s.s1.key' % domain), 'rb') as f:
        return f.read(), ''.join(re.findall(r'"([^"]*)"', out.splitlines()[-1]))


def main():
    d = tempfile.mkdtemp(prefix='sift-dmarc-interop-')
    os.chmod(d, 0o755)
    keys = {}
    recs = [SOA] + [{'name': n, 'type': 'TXT', 'data': t} for n, t in RECORDS.items() if t]
    for s in SIGNERS:
        keys[s], rec = genkey(d, s)
        recs.append({'name': 's1._domainkey.' + s, 'type': 'TXT', 'data': rec})
    srv = dnsserver.DNSServer({'.': recs})
    srv.start()
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ['127.0.0.1']
    res.port = srv.port
    res.lifetime = 3

    def dnsfunc(name, *a, **kw):
        try:
            for r in res.resolve(name.rstrip('.'), 'TXT'):
                return b''.join(r.strings).decode()
        except Exception:
            return None
        return None

    conf = sifttest.write_conf(os.path.join(d, 'filterd.conf'), {
        'plugin_directory': sifttest.plugin_directory(), 'inbound_plugins': 'spf dkim dmarc',
        'originating_plugins': '', 'dns_servers': '127.0.0.1:%d' % srv.port, 'dns_timeout': '1s',
        'myhostname': 'mx.sift.test', 'authserv_id': 'mx.sift.test', 'spf_filterd_mode': 'check',
        'dkim_sign': 'no', 'tmpdir': d})
    try:
        for frm, sender, signer in CASES:
            data = ('From: a@%s\r\nTo: b@sift.test\r\nSubject: interop\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n'
                    'Message-ID: <1@client.test>\r\n\r\nHello.\r\n' % frm).encode()
            if signer:
                data = dkim.sign(data, b's1', signer.encode(), keys[signer],
                                 include_headers=[b'from', b'to', b'subject']) + data
            r = sifttest.siftctl_test(conf, data, ['--client', CLIENT, '--helo', 'client.test', '--from',
                                                   'bounce@' + sender, '--to', 'b@sift.test'])
            ar = ' '.join(h['value'] for h in r.get('headers') or [] if h['name'] == 'Authentication-Results')
            ours = re.search(r'dmarc=(\w+)(?: \(p=(\w+) sp=(\w+))?', ar)
            spf = re.search(r'spf=(\w+)', ar)
            dk = re.search(r'dkim=(\w+)(?: header\.d=(\S+))?', ar)
            spf_r = authheaders.SPFAuthenticationResult(result=spf.group(1) if spf else 'none',
                                                        smtp_mailfrom='bounce@' + sender)
            dkim_r = authheaders.DKIMAuthenticationResult(result=dk.group(1) if dk else 'none',
                                                          header_d=dk.group(2) if dk else None)
            theirs = authheaders.check_dmarc(data, spf_result=spf_r, dkim_result=dkim_r, dnsfunc=dnsfunc)
            what = 'From %s, MAIL FROM %s, DKIM %s' % (frm, sender, signer or '-')
            got = ours.group(1) if ours else None
            check(got == theirs.result, what + ': dmarc=%s, authheaders %s' % (got, theirs.result), ar)
            # policy: p= for a record at the From domain, sp= at the
            # organizational domain; authheaders applies sp= to both, so a
            # From domain whose own record has sp= is compared on the result only
            if ours and ours.group(2) and theirs.policy and frm != 'siftdmarc.co.uk':
                policy = ours.group(2) if frm in ('siftdmarca.com', 'siftdmarcs.com', 'siftdmarcp.com') \
                    else ours.group(3)
                # a failing message: the policy applied, from the symbol
                syms = [x['name'] for x in r.get('symbols') or []]
                for sym, pol in (('DMARC_REJECT', 'reject'), ('DMARC_QUARANTINE', 'quarantine'),
                                 ('DMARC_SOFTFAIL', 'none')):
                    if sym in syms:
                        policy = pol
                check(policy.lower() == theirs.policy.lower(),
                      what + ': policy %s, authheaders %s' % (policy.lower(), theirs.policy), ar)
    finally:
        srv.stop()
        if sifttest.checks.failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(d, ignore_errors=True)
        else:
            print('kept', d)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
