#!/usr/bin/python3
"""The dmarc and arc plugins' cost: filterd's CPU per message with the
inbound chains `spf dkim`, `spf dkim dmarc` and `spf dkim arc dmarc`, side
by side, warm DNS caches.

Three filterd processes from the build under test ($SIFT_BUILDDIR) run at the
same time against one local DNS server (tests/lib/dnsserver.py) publishing
example.test's SPF record, DKIM key and DMARC policy (p=reject). Each gets
the same messages over the milter protocol (bench/message/bench.py's
client, no MTA): small messages from alice@example.test signed by dkimpy
with an RSA-2048 key and, with --arc-sets N (default 1), carrying N ARC
sets sealed by dkimpy (RSA-2048), client 127.0.0.1, one connection per
message. After a warm-up (DNS answers cached), rounds alternate between
the processes (in turn forwards and backwards) so that other load on the
machine hits all alike. Reported: user+system CPU seconds per message of
each process (/proc/PID/stat), the differences (the cost dmarc adds, and
arc on top of it), messages per second of CPU and each process's RSS at
the end, and the hook time of each plugin of the full chain (filterd's
/metrics: sift_filterd_plugin_duration_seconds, mean per message), the
plugin's own share without the whole process's noise; every message must
be accepted, and the warm-up messages must
pass DMARC and, with ARC sets, ARC (filterd's log).

    bench/dmarc/dmarc-bench.py [--rounds 10] [--count 200] [--arc-sets 1]

A benchmark, not a test: ./check does not run it. Everything it starts is
stopped by PID; only 127.0.0.1 is used.
"""

import argparse
import base64
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

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
    ap.add_argument('--arc-sets', type=int, default=1, help='ARC sets on each message (0: none)')
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
        mport = None
        for name, chain in (('spf dkim', 'spf dkim'), ('spf dkim dmarc', 'spf dkim dmarc'),
                            ('spf dkim arc dmarc', 'spf dkim arc dmarc')):
            conf = {'inbound_plugins': chain, 'originating_plugins': '', 'dns_servers': '127.0.0.1:%d' % srv.port,
                    'authserv_id': 'mx.sift.test', 'spf_filterd_mode': 'check', 'dkim_sign': 'no', 'tmpdir': d}
            if 'arc' in chain:
                mport = sifttest.free_port()
                conf['metrics_listen'] = 'inet:127.0.0.1:%d' % mport
            procs[name] = sifttest.start_daemon('filterd', d, conf, name=name.replace(' ', '-'))
        body = b'Hello,\r\n\r\nthe figures follow next week.\r\n\r\nAlice\r\n'
        hdrs = b'From: Alice <alice@example.test>\r\nTo: user@sift.test\r\nSubject: figures\r\n' \
               b'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <b@example.test>\r\n\r\n'
        msg = dkim.sign(hdrs + body, b's1', b'example.test', key, include_headers=[b'from', b'to', b'subject']) \
            + hdrs + body
        for i in range(a.arc_sets):
            ar = b'Authentication-Results: example.test; spf=pass smtp.mailfrom=alice@example.test%s\r\n' \
                % (b'; arc=pass' if i else b'')
            msg = b''.join(dkim.arc_sign(ar + msg, b's1', b'example.test', key, b'example.test')) + ar + msg
        block = msg.split(b'\r\n\r\n', 1)[0]
        headers = [(f.split(b':', 1)[0], f.split(b':', 1)[1].replace(b'\r\n', b'\n'))
                   for f in re.split(rb'\r\n(?![ \t])', block)]

        def batch(p, n):
            for i in range(n):
                r, _ = msgbench.send_message(p.port, headers, body, b'Q%d' % i)
                if r != 'accept' and r != 'continue':
                    raise RuntimeError('%s: verdict %s' % (p, r))
        for name, p in procs.items():
            batch(p, 20)
        for name in ('spf dkim dmarc', 'spf dkim arc dmarc'):
            passes = len([x for x in procs[name].log().splitlines() if 'dmarc=pass from=example.test' in x])
            if passes != 20:
                raise RuntimeError('warm-up: %d of 20 messages logged dmarc=pass' % passes)
        arc = len([x for x in procs['spf dkim arc dmarc'].log().splitlines()
                   if ('arc=pass (sets=%d)' % a.arc_sets if a.arc_sets else 'arc=none') in x])
        if arc != 20:
            raise RuntimeError('warm-up: %d of 20 messages logged the ARC result expected' % arc)
        cpu = {n: 0.0 for n in procs}
        for k in range(a.rounds):
            order = list(procs.items())
            for name, p in (order if k % 2 == 0 else order[::-1]):
                t0 = msgbench.cpu_seconds(p.pid)
                batch(p, a.count)
                cpu[name] += msgbench.cpu_seconds(p.pid) - t0
        n = a.rounds * a.count
        print('messages with %d ARC set(s), %d per chain' % (a.arc_sets, n))
        for name in procs:
            print('%-20s %8.1f us CPU per message, %8.0f msgs per CPU second, RSS %6.1f MiB'
                  % (name, cpu[name] / n * 1e6, n / cpu[name], (sifttest.proc_rss(procs[name].pid)[0] or 0) / 1024))
        print('%-20s %8.1f us CPU per message' % ('dmarc adds', (cpu['spf dkim dmarc'] - cpu['spf dkim']) / n * 1e6))
        print('%-20s %8.1f us CPU per message' % ('arc adds (to dmarc)',
                                                  (cpu['spf dkim arc dmarc'] - cpu['spf dkim dmarc']) / n * 1e6))
        print('%-20s %8.1f us CPU per message' % ('dmarc and arc add',
                                                  (cpu['spf dkim arc dmarc'] - cpu['spf dkim']) / n * 1e6))
        # The hook time of each plugin in the full chain (filterd's
        # sift_filterd_plugin_duration_seconds): the plugins' own share,
        # free of the process-wide noise of the differences above.
        text = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=10).read().decode()
        for plugin in ('spf', 'dkim', 'arc', 'dmarc'):
            tot = re.search(r'sift_filterd_plugin_duration_seconds_sum\{plugin="%s"\} (\S+)' % plugin, text)
            cnt = re.search(r'sift_filterd_plugin_duration_seconds_count\{plugin="%s"\} (\S+)' % plugin, text)
            if tot and cnt and float(cnt.group(1)):
                print('%-20s %8.1f us hook time per message (%d messages)'
                      % (plugin, float(tot.group(1)) / float(cnt.group(1)) * 1e6, int(float(cnt.group(1)))))
    finally:
        sifttest.stop_all([srv] + list(procs.values()))
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
