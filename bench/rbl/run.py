#!/usr/bin/python3
"""DNS block lists at RCPT: policyd's rbl plugin side by side with postfwd
(Debian's postfwd1, Perl, `rbl=` items), same lists, same load, warm caches.

    SIFT_BUILDDIR=build bench/rbl/run.py [--seconds 5] [--levels 1,8]

Lists: tests/lib/dnsbl.py's zones (zen.spamhaus.org, bl.spamcop.net,
list.dnswl.org) served by the test DNS server on port 53 of a free
127.0.0.N (postfwd reads /etc/resolv.conf, which cannot name a port: it
runs under `unshare -m` with a bind-mounted resolv.conf naming the server;
the real file is not touched). policyd asks the same server through
dns_servers. Load: bench/policy-load, each of C threads with one persistent
connection sending one RCPT request at a time (as each smtpd process does),
every request from client 192.0.2.10, listed nowhere: three lookups per
request, all answered from the servers' caches after the warm-up (policyd:
the shared resolver's TTL cache; postfwd: its RBL cache, on by default;
its request cache is off, -c 0, so that every request is evaluated).
Reported: requests/s, p50/p99 latency, CPU ms per request of the server
process (utime+stime from /proc/PID/stat over the run) and its peak RSS.
Needs root (port 53, unshare -m). On a shared machine compare CPU per
request within one run.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get('SIFT_SRCDIR') or os.path.abspath(os.path.join(HERE, '..', '..'))
BUILD = os.environ.get('SIFT_BUILDDIR') or os.path.join(SRC, 'build')
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
import sifttest  # noqa: E402
import dnsbl  # noqa: E402
import dnsserver  # noqa: E402

REQUEST = '''request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=192.0.2.10
client_name=mail.example.net
reverse_client_name=mail.example.net
helo_name=mail.example.net
sender=alice@example.net
recipient=bob@example.org
recipient_count=0
queue_id=
instance=1a2b.65f0c1d2.3e4f5.0
size=1234
policy_context=

'''
SITES = 'zen.spamhaus.org=127.0.0.[2..11]*3 bl.spamcop.net*2 list.dnswl.org=127.0.[0..255].[1..3]*-2'
POSTFWD_RULES = 'id=RBL01; rbl=zen.spamhaus.org,bl.spamcop.net,list.dnswl.org; action=REJECT listed\n'


def cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def load(port, conc, seconds, reqfile, n=None):
    argv = [os.path.join(BUILD, 'bench', 'policy-load'), '-c', str(conc)]
    argv += ['-n', str(n)] if n else ['-d', str(seconds)]
    r = subprocess.run(argv + ['-f', reqfile, 'inet:127.0.0.1:%d' % port], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=seconds + 120)
    return r.stdout.strip()


def sanity(label, port):
    """The answers for a listed (127.0.0.2) and an unlisted client, printed."""
    req = dict(line.split('=', 1) for line in REQUEST.strip().split('\n'))
    with sifttest.PolicyClient(port) as pc:
        got = [pc.ask(**dict(req, client_address=ip)) for ip in ('127.0.0.2', '192.0.2.10')]
    print('%s answers: listed %r, unlisted %r' % (label, got[0], got[1]))


def measure(label, pid, port, levels, seconds, reqfile, rows):
    sanity(label, port)
    load(port, 1, seconds, reqfile, n=200)  # warm the caches
    hz = os.sysconf('SC_CLK_TCK')
    for c in levels:
        t0 = cpu_ticks(pid)
        out = load(port, c, seconds, reqfile)
        ticks = cpu_ticks(pid) - t0
        d = {}
        for k, rx in (('rps', r'([0-9.]+) requests/s'), ('p50', r'p50 ([0-9.]+) ms'),
                      ('p99', r'p99 ([0-9.]+) ms'), ('n', r'(\d+) requests'), ('errors', r'errors (\d+)')):
            m = re.search(rx, out)
            d[k] = m.group(1) if m else '?'
        try:
            cpu = '%.4f' % (ticks * 1000.0 / hz / max(1, int(d['n'])))
        except ValueError:
            cpu = '?'
        rows.append((label, c, d, cpu, sifttest.proc_rss(pid)[1]))


def dns_on_free_loopback():
    for n in range(53, 254):
        ip = '127.0.0.%d' % n
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind)
                s.bind((ip, 53))
                s.close()
            return dnsserver.DNSServer(dnsbl.zones(), host=ip, port=53).start(), ip
        except OSError:
            continue
    raise RuntimeError('no free loopback address for port 53')


def run_postfwd(tmp, dns_ip, levels, seconds, reqfile, rows):
    if not os.path.exists('/usr/sbin/postfwd1'):
        print('postfwd is not installed (apt-get install postfwd): its rows are missing')
        return
    rules = os.path.join(tmp, 'postfwd.cf')
    with open(rules, 'w') as f:
        f.write(POSTFWD_RULES)
    resolv = os.path.join(tmp, 'resolv.conf')
    with open(resolv, 'w') as f:
        f.write('nameserver %s\noptions timeout:2 attempts:2\n' % dns_ip)
    port = sifttest.free_port()
    pidfile = os.path.join(tmp, 'postfwd.pid')
    cmd = ('mount --bind %s /etc/resolv.conf && /usr/sbin/postfwd1 -d -f %s -i 127.0.0.1 -p %d -u nobody '
           '-g nogroup -c 0 --pidfile %s --norulelog --noidlestats' % (resolv, rules, port, pidfile))
    subprocess.run(['unshare', '-m', 'sh', '-c', cmd], timeout=30, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    pid = None
    try:
        if not sifttest.wait_port(port, 15):
            print('postfwd1 did not listen on %d' % port)
            return
        for _ in range(50):
            if os.path.exists(pidfile):
                break
            time.sleep(0.1)
        with open(pidfile) as f:
            pid = int(f.read().strip())
        measure('postfwd1', pid, port, levels, seconds, reqfile, rows)
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=int, default=5)
    ap.add_argument('--levels', default='1,8')
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(',')]
    tmp = tempfile.mkdtemp(prefix='sift-rblbench-')
    os.chmod(tmp, 0o755)
    reqfile = os.path.join(tmp, 'request')
    with open(reqfile, 'w') as f:
        f.write(REQUEST)
    dns, dns_ip = dns_on_free_loopback()
    rows = []
    try:
        port = sifttest.free_port()
        conf = os.path.join(tmp, 'policyd.conf')
        with open(conf, 'w') as f:
            f.write('policyd_listen = inet:127.0.0.1:%d\npolicyd_user = root\nplugin_directory = %s/plugins\n'
                    'inbound_plugins = rbl\nrbl_sites = %s\nrbl_threshold = 3\ndns_servers = %s:53\n'
                    % (port, BUILD, SITES, dns_ip))
        p = sifttest.Proc([os.path.join(BUILD, 'policyd', 'policyd'), '-f', '-c', conf],
                          log=os.path.join(tmp, 'policyd.log'), port=port, name='policyd').start()
        try:
            measure('sift rbl', p.pid, port, levels, a.seconds, reqfile, rows)
        finally:
            p.stop()
        run_postfwd(tmp, dns_ip, levels, a.seconds, reqfile, rows)
    finally:
        dns.stop()
    print('%-10s %5s %11s %8s %8s %11s %8s %9s' % ('server', 'conc', 'requests/s', 'p50 ms', 'p99 ms',
                                                  'CPU ms/req', 'errors', 'RSS KiB'))
    for label, c, d, cpu, rss in rows:
        print('%-10s %5d %11s %8s %8s %11s %8s %9s' % (label, c, d['rps'], d['p50'], d['p99'], cpu,
                                                      d['errors'], rss))


if __name__ == '__main__':
    main()
