#!/usr/bin/python3
"""policyd benchmark: policyd with no plugin, with the access plugin (three
maps) and with the spf plugin, side by side with postfix-policyd-spf-python
(Debian package postfix-policyd-spf-python), in one run.

    /usr/bin/python3 bench/policyd-bench.py [--builds build-base,build]
        [--seconds 5] [--concurrency 1,8] [--domains 1000] [--no-python]

Load: bench/policy-load (C, from the last build directory; a Python client
tops out near 6,000 requests/s at concurrency 1).
Each client thread keeps one persistent connection and sends one request at
a time, waiting for the reply, as each Postfix smtpd process does.
  * "none" and "access": the same RCPT-stage request over and over
    (policy-load -f).
  * "spf" and "python spf": policy-load -D DOMAINS, every request a new
    transaction (its own instance) from u<k>@d<k>.bench.test, k cycling over
    DOMAINS, client 192.0.2.10; every domain was looked up once before the
    measured runs (warm: policyd answers from its DNS cache, the Python
    server asks DNS again, having no cache across requests). Each passes
    after the mx and a terms; the "pass" column counts the replies carrying
    Received-SPF: pass, which must equal the requests.
DNS: tests/lib/dnsserver.py on 127.0.0.N:53 (a free loopback address: the
Python server reads /etc/resolv.conf, which cannot name a port), serving
TXT "v=spf1 mx a:mail.d<k>.bench.test ip4:192.0.2.0/24 -all", an MX and an
A record per domain. policyd asks it through dns_servers; the Python server
runs behind `socat TCP-LISTEN,fork EXEC:policyd-spf` (one process per
connection, as Postfix's spawn(8)) in a private mount namespace whose
/etc/resolv.conf names it (unshare -m; the real file is not touched).

Columns: requests/s, p50/p99 latency (ms), CPU ms per request of the
server's processes (utime+stime from /proc/PID/stat over the run; for the
Python server socat's and its children's, counted once socat has reaped
them after the run: this includes the start of one Python process per
client connection, about a second of CPU each, which Postfix's spawn(8)
also pays once per max_use requests; hence --python-seconds, 20 by
default, to spread it), peak RSS (policyd's; for the Python server the sum of
its per-connection processes). For each setup one policyd per build
directory given runs (--builds build-base,build compares two commits in the
same run); they are measured in turn, --repeat times, and the medians are
printed. Needs root (port 53, unshare -m). On a shared machine compare
within one run; CPU per request is steadier than requests/s.

Figures: one run, --seconds 4 --repeat 3, 2 cores shared with other work
(load average 13-17 during the run, so the concurrency-1 rows mostly measure
scheduling delay; compare CPU ms/req within the run). build-base: policyd
before the DNS answer cache and the worker re-arming; build: after.

    setup                       c    req/s  p50 ms  p99 ms CPU ms/req  RSS MB
    none (build-base)           1      613   0.140  19.719    0.1018     6.3
    none (build)                1     1158   0.148  12.835    0.0983     6.4
    none (build-base)           8    10140   0.314  10.407    0.0449     8.2
    none (build)                8    27353   0.240   1.089    0.0396    10.8
    access (build-base)         1     1382   0.065  12.113    0.0849     6.5
    access (build)              1      816   0.167  15.817    0.1039     6.3
    access (build-base)         8     8633   0.324  13.941    0.0460     8.3
    access (build)              8    27419   0.244   1.125    0.0404    10.4
    spf (build-base)            1     1108   0.245  10.000    0.2481    10.7
    spf (build)                 1     3470   0.049   6.175    0.0587    11.2
    spf (build-base)            8     6778   0.641  10.939    0.1367    10.8
    spf (build)                 8    12714   0.406   7.427    0.0658    11.4
    python spf                  1       74  11.186  40.652    2.6344    29.9
    python spf                  8       59  80.550 271.825    0.9716   199.6

(every SPF reply was a pass; the Python c8 CPU figure is low because not all
of its processes had been reaped when it was read.)
"""
import argparse
import contextlib
import os
import shutil
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, '..'))
sys.path.insert(0, os.path.join(SRCDIR, 'tests', 'lib'))
import dnsserver  # noqa: E402
import sifttest  # noqa: E402

TICK = os.sysconf('SC_CLK_TCK')
REQUEST = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
           "client_address=198.51.100.7\nclient_name=mail.example.net\n"
           "reverse_client_name=mail.example.net\nhelo_name=mail.example.net\n"
           "sender=alice@example.net\nrecipient=bob@example.org\nrecipient_count=0\n"
           "queue_id=\ninstance=1a2b.5f000000.0\nsize=1234\n"
           "sasl_method=\nsasl_username=\nsasl_sender=\n\n")


def proc_stat(pid):
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()


def cpu_seconds(pid, children=False):
    st = proc_stat(pid)
    t = int(st[11]) + int(st[12])
    if children:
        t += int(st[13]) + int(st[14])
    return t / TICK


def rss_kb(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(root):
    """RSS of root plus its descendants."""
    kids = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                kids.setdefault(int(proc_stat(int(d))[1]), []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss_kb(p)
        todo += kids.get(p, [])
    return total


def zone(n):
    recs = [{'name': '.', 'type': 'SOA', 'data': 'ns.root.test. hostmaster.root.test. 1 3600 600 86400 60'}]
    for k in range(n):
        d = 'd%d.bench.test' % k
        recs += [{'name': d, 'type': 'TXT', 'data': 'v=spf1 mx a:mail.%s ip4:192.0.2.0/24 -all' % d},
                 {'name': d, 'type': 'MX', 'data': '10 mail.%s.' % d},
                 {'name': 'mail.' + d, 'type': 'A', 'data': '198.51.100.%d' % (k % 250 + 1)}]
    return {'.': recs}


def dns_on_free_loopback(zones):
    """The DNS server on port 53 of the first free 127.0.0.N (N >= 53)."""
    for n in range(53, 254):
        ip = '127.0.0.%d' % n
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind)
                s.bind((ip, 53))
                s.close()
            return dnsserver.DNSServer(zones, host=ip, port=53).start(), ip
        except OSError:
            continue
    raise RuntimeError('no free loopback address for port 53')


class Runner:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.loader = os.path.join(args.builds[-1], 'bench', 'policy-load')
        self.rows = []

    def load(self, port, conc, extra, seconds):
        res = subprocess.run([self.loader, '-c', str(conc), '-d', str(seconds)] + extra +
                             ['inet:127.0.0.1:%d' % port], capture_output=True, text=True, timeout=600)
        out = res.stdout + res.stderr + ' (exit %d)' % res.returncode
        m = re.search(r': (\d+) requests in .*?([\d.]+) requests/s, latency p50 ([\d.]+) ms, p99 ([\d.]+) ms.*'
                      r'errors (\d+)(?:, pass (\d+))?', out)
        if not m:
            raise RuntimeError('policy-load failed: %r' % (out,))
        n, rps, p50, p99, err = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4), int(m.group(5))
        return n, rps, p50, p99, err, m.group(6)

    def measure_once(self, pid, port, conc, extra, children=False, seconds=None):
        """One run: (requests/s, p50, p99, CPU ms/req, peak RSS MB, errors, passes, requests)."""
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], tree_rss_kb(pid) if children else rss_kb(pid))
                stop.wait(0.2)
        th = threading.Thread(target=sample)
        th.start()
        c0 = cpu_seconds(pid, children)
        n, rps, p50, p99, err, passes = self.load(port, conc, extra, seconds or self.args.seconds)
        if children:
            time.sleep(0.5)  # socat reaps the per-connection processes
        c1 = cpu_seconds(pid, children)
        stop.set()
        th.join()
        return (rps, float(p50), float(p99), (c1 - c0) * 1000.0 / max(n, 1), peak[0] / 1024.0, err,
                int(passes) if passes is not None else None, n)

    def measure(self, servers, extra, children=False, seconds=None):
        """servers: [(name, pid, port)], measured in turn, --repeat times,
        at each concurrency; prints the medians."""
        for conc in self.args.concurrency:
            runs = {name: [] for name, _, _ in servers}
            for _ in range(self.args.repeat):
                for name, pid, port in servers:
                    runs[name].append(self.measure_once(pid, port, conc, extra, children, seconds))
            for name, _, _ in servers:
                rs = runs[name]
                med = [statistics.median(r[i] for r in rs) for i in range(5)]
                err = sum(r[5] for r in rs)
                n = sum(r[7] for r in rs)
                passes = '%d/%d' % (sum(r[6] for r in rs), n) if rs[0][6] is not None else ''
                row = (name, conc, med[0], med[1], med[2], med[3], med[4], err, passes)
                self.rows.append(row)
                print('%-26s %2d %8.0f %7.3f %7.3f %9.4f %7.1f %6d %s' % row, flush=True)

    def policyd(self, label, opts, extra, dns_ip=None):
        """One policyd per build directory, all started, measured in turn."""
        with contextlib.ExitStack() as stack:
            servers = []
            for build in self.args.builds:
                p, port = self.start_policyd(stack, build, opts, dns_ip)
                servers.append(('%s (%s)' % (label, os.path.basename(build)), p.pid, port))
            self.measure(servers, extra)

    def start_policyd(self, stack, build, opts, dns_ip):
        port = sifttest.free_port()
        conf = os.path.join(self.tmp, 'policyd-%d.conf' % port)
        with open(conf, 'w') as f:
            f.write('plugin_directory = %s/plugins\npolicyd_user = root\npolicyd_control_socket =\n'
                    'myhostname = mx.bench.test\n' % build)
            if dns_ip:
                f.write('dns_servers = %s:53\ndns_timeout = 5s\n' % dns_ip)
        argv = [os.path.join(build, 'policyd', 'policyd'), '-f', '-c', conf,
                '-o', 'policyd_listen=inet:127.0.0.1:%d' % port]
        for o in opts:
            argv += ['-o', o]
        p = stack.enter_context(sifttest.Proc(argv, log=os.path.join(self.tmp, 'policyd-%d.log' % port),
                                              port=port))
        if dns_ip:  # warm the cache: every domain once
            self.loader_warm(port)
        return p, port

    def loader_warm(self, port):
        subprocess.run([self.loader, '-c', '8', '-n', str(self.args.domains), '-D', str(self.args.domains),
                        'inet:127.0.0.1:%d' % port], capture_output=True, timeout=600)

    def python(self, dns_ip, extra):
        resolv = os.path.join(self.tmp, 'resolv.conf')
        with open(resolv, 'w') as f:
            f.write('nameserver %s\noptions timeout:2 attempts:2\n' % dns_ip)
        port = sifttest.free_port()
        cmd = ('mount --bind %s /etc/resolv.conf && exec socat TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr '
               'EXEC:/usr/bin/policyd-spf' % (resolv, port))
        with sifttest.Proc(['unshare', '-m', 'sh', '-c', cmd], log=os.path.join(self.tmp, 'python.log'),
                           port=port) as p:
            self.loader_warm(port)
            self.measure([('python spf', p.pid, port)], extra, children=True, seconds=self.args.python_seconds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--builds', default=os.environ.get('SIFT_BUILDDIR', os.path.join(SRCDIR, 'build')),
                    help='comma-separated build directories; the last one provides policy-load')
    ap.add_argument('--seconds', type=float, default=5)
    ap.add_argument('--concurrency', default='1,8')
    ap.add_argument('--domains', type=int, default=1000)
    ap.add_argument('--repeat', type=int, default=3, help='runs per row (medians are printed)')
    ap.add_argument('--python-seconds', type=float, default=20,
                    help='per run for the Python server (its processes start on each run\'s connections)')
    ap.add_argument('--no-python', action='store_true')
    a = ap.parse_args()
    a.builds = [os.path.abspath(b) for b in a.builds.split(',')]
    a.concurrency = [int(x) for x in a.concurrency.split(',')]
    tmp = tempfile.mkdtemp(prefix='sift-policyd-bench-')
    with open(os.path.join(tmp, 'req'), 'w') as f:
        f.write(REQUEST)
    maps = {'senders': 'spam@example.com REJECT\nexample.com REJECT\n',
            'clients': '192.0.2 REJECT\n',
            'rcpts': 'nobody@example.org REJECT\n'}
    for k, v in maps.items():
        with open(os.path.join(tmp, k), 'w') as f:
            f.write(v)
    access = ['inbound_plugins=access', 'access_sender_map=texthash:%s/senders' % tmp,
              'access_client_map=texthash:%s/clients' % tmp, 'access_recipient_map=texthash:%s/rcpts' % tmp]
    fixed = ['-f', os.path.join(tmp, 'req')]
    spf = ['-D', str(a.domains)]
    r = Runner(a, tmp)
    srv, dns_ip = dns_on_free_loopback(zone(a.domains))
    print('policyd benchmark: %g s per run, medians of %d, %d CPUs, DNS on %s:53, %d SPF domains' % (
        a.seconds, a.repeat, os.cpu_count(), dns_ip, a.domains))
    print('%-26s %2s %8s %7s %7s %9s %7s %6s %s' % ('setup', 'c', 'req/s', 'p50 ms', 'p99 ms', 'CPU ms/req',
                                                    'RSS MB', 'errors', 'pass'))
    try:
        for label, opts, extra, dns in (('none', [], fixed, None), ('access', access, fixed, None),
                                        ('spf', ['inbound_plugins=spf'], spf, dns_ip)):
            r.policyd(label, opts, extra, dns)
        if not a.no_python:
            r.python(dns_ip, spf)
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    bad = [row for row in r.rows if row[7] or (row[8] and row[8].split('/')[0] != row[8].split('/')[1])]
    if bad:
        print('errors or SPF results other than pass in: %s' % ', '.join('%s c%d' % x[:2] for x in bad))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
