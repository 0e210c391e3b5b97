#!/usr/bin/python3
"""policyd throughput: starts policyd from the build tree (no plugins, then
the access plugin with three maps), drives it with bench/policy-load (C,
one persistent connection per client thread, one request at a time, as
Postfix does) at the given concurrency levels, and reports requests/s,
p50/p99 latency, policyd's CPU time per request and its RSS.

    /usr/bin/python3 bench/policyd-bench.py [--builddir build] [--seconds 5] [--concurrency 1,8]
"""
import argparse, os, re, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
import sifttest  # noqa: E402

REQUEST = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
           "client_address=198.51.100.7\nclient_name=mail.example.net\n"
           "reverse_client_name=mail.example.net\nhelo_name=mail.example.net\n"
           "sender=alice@example.net\nrecipient=bob@example.org\nrecipient_count=0\n"
           "queue_id=\ninstance=1a2b.5f000000.0\nsize=1234\n"
           "sasl_method=\nsasl_username=\nsasl_sender=\n\n")


def cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--builddir', default=os.environ.get('SIFT_BUILDDIR', os.path.join(HERE, '..', 'build')))
    ap.add_argument('--seconds', type=float, default=5)
    ap.add_argument('--concurrency', default='1,8')
    a = ap.parse_args()
    build = os.path.abspath(a.builddir)
    tmp = tempfile.mkdtemp(prefix='sift-policyd-bench-')
    with open(os.path.join(tmp, 'req'), 'w') as f:
        f.write(REQUEST)
    maps = {'senders': 'spam@example.com REJECT\nexample.com REJECT\n',
            'clients': '192.0.2 REJECT\n',
            'rcpts': 'nobody@example.org REJECT\n'}
    for k, v in maps.items():
        with open(os.path.join(tmp, k), 'w') as f:
            f.write(v)
    setups = [('no plugins', []),
              ('access (3 maps)', ['inbound_plugins=access', 'access_sender_map=texthash:%s/senders' % tmp,
                                   'access_client_map=texthash:%s/clients' % tmp,
                                   'access_recipient_map=texthash:%s/rcpts' % tmp])]
    hz = os.sysconf('SC_CLK_TCK')
    print('policyd benchmark: %d s per level, %d CPUs' % (a.seconds, os.cpu_count()))
    print('%-18s %5s %10s %8s %8s %10s %8s' % ('setup', 'conc', 'req/s', 'p50 ms', 'p99 ms', 'CPU us/req', 'RSS MB'))
    for name, opts in setups:
        port = sifttest.free_port()
        conf = os.path.join(tmp, 'policyd.conf')
        with open(conf, 'w') as f:
            f.write('plugin_directory = %s/plugins\npolicyd_user = root\n' % build)
        argv = [os.path.join(build, 'policyd', 'policyd'), '-f', '-c', conf,
                '-o', 'policyd_listen=inet:127.0.0.1:%d' % port]
        for o in opts:
            argv += ['-o', o]
        with sifttest.Proc(argv, log=os.path.join(tmp, 'policyd.log'), port=port) as p:
            for c in [int(x) for x in a.concurrency.split(',')]:
                t0 = cpu_ticks(p.pid)
                out = subprocess.run([os.path.join(build, 'bench', 'policy-load'), '-c', str(c), '-d',
                                      str(a.seconds), '-f', os.path.join(tmp, 'req'),
                                      'inet:127.0.0.1:%d' % port], capture_output=True, text=True).stdout
                cpu = (cpu_ticks(p.pid) - t0) / hz
                rate = float(re.search(r'([\d.]+) req(uests)?/s', out).group(1))
                p50 = re.search(r'p50[ =:]+([\d.]+)', out).group(1)
                p99 = re.search(r'p99[ =:]+([\d.]+)', out).group(1)
                n = rate * a.seconds
                rss = p.rss()[0] / 1024.0
                print('%-18s %5d %10.0f %8s %8s %10.1f %8.1f' % (name, c, rate, p50, p99,
                                                                 cpu / n * 1e6 if n else 0, rss))
    return 0


if __name__ == '__main__':
    sys.exit(main())
