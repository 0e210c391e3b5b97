#!/usr/bin/python3
"""The dmarc plugin's cost: filterd's CPU per message with the inbound chain
`spf dkim` and with `spf dkim dmarc`, side by side, warm DNS caches.

Two filterd processes from the build under test ($SIFT_BUILDDIR) run at the
same time against one local DNS server (tests/lib/dnsserver.py) publishing
example.test's SPF record, DKIM key and DMARC policy (p=reject). Each gets
the same messages over the milter protocol (bench/message/bench.py's
client, no MTA): small messages from alice@example.test signed by dkimpy
with an RSA-2048 key, client 127.0.0.1, one connection per message. After
a warm-up (DNS answers cached), rounds alternate between the two processes
(first one, then the other first) so that other load on the machine hits
both alike. Reported: user+system
CPU seconds per message of each process (/proc/PID/stat) and the
difference, the cost dmarc adds; every message must be accepted, and the
warm-up messages must pass DMARC (filterd's log).

    bench/dmarc/dmarc-bench.py [--rounds 10] [--count 200]

A benchmark, not a test: ./check does not run it. Everything it starts is
stopped by PID; only 127.0.0.1 is used.
"""

import argparse
import base64
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'lib'))
import dnsserver  # noqa: E402
import sifttest  # noqa: E402
import dkim  # noqa: E402

spec = importlib.util.spec_from_file_location('msgbench', os.path.join(HERE, '..', 'message', 'bench.py'))
msgbench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(msgbench)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=10)
    ap.add_argument('--count', type=int, default=200, help='messages per round and chain')
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix='sift-dmarc-bench-')
    os.chmod(d, 0o755)
    key_path = os.path.join(d, 'k.pem')
    subprocess.run(['openssl', 'genrsa', '-out', key_path, '2048'], check=True, stderr=subprocess.DEVNULL)
    der = subprocess.run(['openssl', 'pkey', '-in', key_path, '-pubout', '-outform', 'DER'], check=True,
                         stdout=subprocess.PIPE).stdout
    key = open(key_path, 'rb').read()
    zones = {'example.test': [
        {'name': '@', 'type': 'TXT', 'data': 'v=spf1 ip4:127.0.0.1 -all'},
        {'name': 's1._domainkey', 'type': 'TXT', 'data': 'v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode()},
        {'name': '_dmarc', 'type': 'TXT', 'data': 'v=DMARC1; p=reject'}]}
    srv = dnsserver.DNSServer(zones)
    srv.start()
    procs = {}
    try:
        for name, chain in (('spf dkim', 'spf dkim'), ('spf dkim dmarc', 'spf dkim dmarc')):
            procs[name] = sifttest.start_daemon('filterd', d, {
                'inbound_plugins': chain, 'originating_plugins': '', 'dns_servers': '127.0.0.1:%d' % srv.port,
                'authserv_id': 'mx.sift.test', 'spf_filterd_mode': 'check', 'dkim_sign': 'no',
                'tmpdir': d}, name=name.replace(' ', '-'))
        body = b'Hello,\r\n\r\nthe figures follow next week.\r\n\r\nAlice\r\n'
        hdrs = b'From: Alice <alice@example.test>\r\nTo: user@sift.test\r\nSubject: figures\r\n' \
               b'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <b@example.test>\r\n\r\n'
        sig = dkim.sign(hdrs + body, b's1', b'example.test', key, include_headers=[b'from', b'to', b'subject'])
        sigv = sig.split(b':', 1)[1].replace(b'\r\n', b'\n').rstrip(b'\n')
        headers = [(b'DKIM-Signature', sigv)] + [
            (h.split(b':', 1)[0], h.split(b':', 1)[1]) for h in hdrs.rstrip(b'\r\n').split(b'\r\n')]

        def batch(p, n):
            for i in range(n):
                r, _ = msgbench.send_message(p.port, headers, body, b'Q%d' % i)
                if r != 'accept' and r != 'continue':
                    raise RuntimeError('%s: verdict %s' % (p, r))
        for name, p in procs.items():
            batch(p, 20)
        passes = len([x for x in procs['spf dkim dmarc'].log().splitlines() if 'dmarc=pass from=example.test' in x])
        if passes != 20:
            raise RuntimeError('warm-up: %d of 20 messages logged dmarc=pass' % passes)
        cpu = {n: 0.0 for n in procs}
        for k in range(a.rounds):
            order = list(procs.items())
            for name, p in (order if k % 2 == 0 else order[::-1]):
                t0 = msgbench.cpu_seconds(p.pid)
                batch(p, a.count)
                cpu[name] += msgbench.cpu_seconds(p.pid) - t0
        n = a.rounds * a.count
        for name in procs:
            print('%-16s %8.1f us CPU per message' % (name, cpu[name] / n * 1e6))
        print('%-16s %8.1f us CPU per message' % ('dmarc adds', (cpu['spf dkim dmarc'] - cpu['spf dkim']) / n * 1e6))
    finally:
        sifttest.stop_all([srv] + list(procs.values()))
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
