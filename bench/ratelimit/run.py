#!/usr/bin/python3
"""policyd throughput and latency with senderlogin + ratelimit, memory: and
redis: stores, side by side with postfwd (Debian's postfwd1, Perl: the single-process
multiplexer, which its docs call the faster one for rate limits; postfwd2
always forks into the background) running
the same rate rule, measured in the same run with the same load client
(bench/policy-load: each of C threads keeps one persistent connection and
sends one RCPT-stage request at a time, as each smtpd process does).

    SIFT_BUILDDIR=build-x bench/ratelimit/run.py [--seconds 5] [--levels 1,8,64]

The request is an authenticated RCPT request (sasl_username=alice, sender
alice@example.net). Sift checks the sender against the seed's
login_maps.pcre and one rate rule per SASL user (limit 10^9 per hour, so
nothing is refused and every request does the full work: two counter reads
per request). postfwd gets `sasl_username=~.` with
`action=rate(sasl_username/1000000000/3600/450 4.7.1 too much mail)`
and its request cache off (-c 0), so that every request is evaluated.
Reported per level: requests/s, p50/p99/max latency (ms), errors, and the
server's RSS (VmHWM, KiB). Servers and redis-server are started on free
loopback ports and stopped by PID.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get('SIFT_SRCDIR') or os.path.abspath(os.path.join(HERE, '..', '..'))
BUILD = os.environ.get('SIFT_BUILDDIR') or os.path.join(SRC, 'build')
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
sys.path.insert(0, os.path.join(SRC, 'plugins', 'ratelimit', 'tests'))
import sifttest  # noqa: E402
from redisproc import Redis  # noqa: E402

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
sasl_method=PLAIN
sasl_username=alice
sasl_sender=
policy_context=

'''


def load(port, conc, seconds, reqfile):
    r = subprocess.run([os.path.join(BUILD, 'bench', 'policy-load'), '-c', str(conc), '-d',
                        str(seconds), '-f', reqfile, 'inet:127.0.0.1:%d' % port],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=seconds + 60)
    return r.stdout.strip()


def parse(out):
    d = {}
    for k, rx in (('requests/s', r'([0-9.]+) requests/s'), ('p50', r'p50 ([0-9.]+) ms'),
                  ('p99', r'p99 ([0-9.]+) ms'), ('max', r'max ([0-9.]+) ms'),
                  ('errors', r'errors (\d+)')):
        m = re.search(rx, out)
        d[k] = m.group(1) if m else '?'
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=int, default=5)
    ap.add_argument('--levels', default='1,8,64')
    ap.add_argument('--workers', type=int, default=16)
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(',')]
    tmp = tempfile.mkdtemp(prefix='sift-rlbench-')
    os.chmod(tmp, 0o755)
    reqfile = os.path.join(tmp, 'request')
    with open(reqfile, 'w') as f:
        f.write(REQUEST)
    seed = os.path.join(SRC, 'plugins', 'senderlogin', 'tests', 'login_maps.pcre')
    rows = []
    procs = []
    try:
        red = Redis(tmp, 'redis').start()
        procs.append(red)
        stores = [('sift memory:', 'memory:'),
                  ('sift redis:', 'redis:127.0.0.1:%d,pool=64' % red.port)]
        for label, store in stores:
            port = sifttest.free_port()
            conf = os.path.join(tmp, 'policyd-%d.conf' % port)
            with open(conf, 'w') as f:
                f.write('policyd_listen = inet:127.0.0.1:%d\npolicyd_user = root\nplugin_directory = %s/plugins\n'
                        'policyd_workers = %d\n'
                        'originating_plugins = senderlogin ratelimit\ninbound_plugins = ratelimit\n'
                        'senderlogin_login_maps = pcre:%s\nstate_store = %s\n'
                        'ratelimit_rules = { name=user key=sasl_username messages=1000000000/1h '
                        'action=defer }\n' % (port, BUILD, a.workers, seed, store))
            p = sifttest.Proc([os.path.join(BUILD, 'policyd', 'policyd'), '-f', '-c', conf],
                              log=os.path.join(tmp, 'policyd-%d.log' % port), port=port,
                              name='policyd').start()
            procs.append(p)
            for c in levels:
                out = load(port, c, a.seconds, reqfile)
                rows.append((label, c, parse(out), p.rss()[1]))
            p.stop()
        # postfwd2 with the same rule.
        port = sifttest.free_port()
        cport = sifttest.free_port()
        rules = os.path.join(tmp, 'postfwd.cf')
        with open(rules, 'w') as f:
            f.write('id=RATE01; sasl_username=~.; '
                    'action=rate(sasl_username/1000000000/3600/450 4.7.1 too much mail)\n')
        # postfwd1 serves TCP only as a daemon (-d: Net::Server forks into
        # the background); it is stopped by the PID from its pid file.
        pidfile = os.path.join(tmp, 'postfwd.pid')
        subprocess.run(['/usr/sbin/postfwd1', '-d', '-f', rules, '-i', '127.0.0.1',
                        '-p', str(port), '-u', 'nobody', '-g', 'nogroup', '-c', '0',
                        '--pidfile', pidfile, '--nodns', '--norulelog', '--noidlestats'],
                       timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pfw_pid = None
        try:
            if not sifttest.wait_port(port, 15):
                raise sifttest.ProcError('postfwd1 did not listen on %d' % port)
            for _ in range(50):
                if os.path.exists(pidfile):
                    break
                time.sleep(0.1)
            with open(pidfile) as f:
                pfw_pid = int(f.read().strip())
            from policyclient import PolicyClient
            with PolicyClient(port) as pc:
                ans = [pc.ask(**dict(l.split('=', 1) for l in REQUEST.strip().split('\n')))
                       for _ in range(3)]
            print('postfwd1 answers: %r' % ans)
            for c in levels:
                out = load(port, c, a.seconds, reqfile)
                rows.append(('postfwd1', c, parse(out), sifttest.proc_rss(pfw_pid)[1]))
        except (sifttest.ProcError, OSError, ValueError) as e:
            print('postfwd1 could not be run: %s' % e)
        finally:
            if pfw_pid:
                import signal
                try:
                    os.kill(pfw_pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
    finally:
        for p in procs:
            try:
                p.stop()
            except Exception:
                pass
    print('%-14s %5s %12s %9s %9s %9s %7s %10s' % ('server', 'conc', 'requests/s', 'p50 ms',
                                                   'p99 ms', 'max ms', 'errors', 'HWM KiB'))
    for label, c, d, hwm in rows:
        print('%-14s %5d %12s %9s %9s %9s %7s %10s' % (label, c, d['requests/s'], d['p50'],
                                                       d['p99'], d['max'], d['errors'], hwm))


if __name__ == '__main__':
    main()
