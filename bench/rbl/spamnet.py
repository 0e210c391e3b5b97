#!/usr/bin/python3
"""The CPU the spam plugin's network tests cost per message
(bench/rbl/spam-netcost.c) with the stock SpamAssassin ruleset, against
tests/lib/dnsbl.py's lists plus empty zones for every other list the stock
rules ask (so that those answer NXDOMAIN, cached, as real lists do).

    SIFT_BUILDDIR=build bench/rbl/spamnet.py [-n 300]

Two messages: one relayed through a listed address with listed URIs (the
network rules hit) and one from an unlisted relay with unlisted URIs.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get('SIFT_SRCDIR') or os.path.abspath(os.path.join(HERE, '..', '..'))
BUILD = os.environ.get('SIFT_BUILDDIR') or os.path.join(SRC, 'build')
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
import dnsbl  # noqa: E402
from dnsserver import DNSServer  # noqa: E402

EXTRA = ['activationcode.r.mail-abuse.com', 'nonconfirm.mail-abuse.com', 'iadb.isipp.com',
         'sa-trusted.bondedsender.org', 'sa-accredit.habeas.com', 'bl.score.senderscore.com',
         'bl.mailspike.net', 'wl.mailspike.net', 'psbl.surriel.com', 'multi.surbl.org',
         'dob.sibl.support-intelligence.net', 'example', 'example.net', 'example.test']

MSG = ('Received: from mail.sender.test (mail.sender.test [%s])\r\n\tby relay.example.net with ESMTP id 1A2B3C'
       '\r\n\tfor <user@sift.test>; Mon, 1 Jan 2024 09:59:00 +0000\r\nFrom: Someone <a@example.net>\r\n'
       'To: user@sift.test\r\nSubject: hello there\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n'
       'Message-ID: <1234567890@example.net>\r\n\r\n%s\r\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('-n', type=int, default=300)
    a = ap.parse_args()
    zones = dnsbl.zones()
    for z in EXTRA:
        zones.setdefault(z, [])
    tmp = tempfile.mkdtemp(prefix='sift-spamnet-')
    msgs = {'listed': MSG % ('192.0.2.66', 'see http://dbl-listed.example/x http://uribl-listed.example/ '
                                           'http://www.ns-listed.example/'),
            'unlisted': MSG % ('192.0.2.10', 'see http://www.example.net/a http://shop.example.test/b')}
    rules = ['/usr/share/spamassassin', '/etc/spamassassin']
    srv = DNSServer(zones).start()
    try:
        for name, text in msgs.items():
            path = os.path.join(tmp, name + '.eml')
            with open(path, 'w') as f:
                f.write(text)
            r = subprocess.run([os.path.join(BUILD, 'bench', 'spam-netcost'), '-s', '127.0.0.1:%d' % srv.port,
                                '-n', str(a.n), path] + rules, capture_output=True, text=True, timeout=600)
            print('== %s message\n%s%s' % (name, r.stdout, r.stderr))
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
