#!/usr/bin/python3
"""Throughput of virus scanning through a private Postfix, side by side in
one run: Postfix alone; filterd with the clamav plugin in library mode and
in clamd mode (milter socket inet and unix); clamav-milter + clamd (Debian
packages, milter socket inet and unix). Every scanner uses the same small
database (plugins/clamav/tests/cvlib.py: EICAR + clamav-testfiles hashes)
and the same clamd.

Load: bench/corpus.py messages (70% ~2 KB text, 25% ~15 KB HTML, 5% ~200 KB
attachment) over persistent SMTP sessions, concurrency 1 and 8 (measure()
and RssSampler from bench/postfix-bench.py); Postfix delivers to discard(8).
Reported per setup and level: msg/s, p50/p99 latency, errors, RSS of the
scanning daemon (filterd, or clamav-milter; clamd's own RSS on its lines).

Run as root:  /usr/bin/python3 bench/clamav/bench.py [--count 1000]
              [--concurrency 1,8] [--only alone,lib-inet,...] [--json FILE]
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'clamav', 'tests'))
import sifttest  # noqa: E402
import corpus  # noqa: E402
import cvlib  # noqa: E402

_spec = importlib.util.spec_from_file_location('postfix_bench', os.path.join(HERE, '..', 'postfix-bench.py'))
pb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pb)

SETUPS = ['alone', 'lib-inet', 'lib-unix', 'clamd-inet', 'clamd-unix', 'milter-inet', 'milter-unix']


def start_filterd(root, name, socket_kind, extra):
    if socket_kind == 'unix':
        sock = os.path.join(root, name + '.sock')
        listen, wait = 'unix:' + sock, {'unix': sock}
    else:
        port = sifttest.free_port()
        listen, wait = 'inet:127.0.0.1:%d' % port, {'port': port}
    conf = os.path.join(root, name + '.conf')
    with open(conf, 'w') as f:
        f.write('\n'.join(['filterd_listen = ' + listen, 'filterd_user =',
                           'filterd_pid_file = %s/%s.pid' % (root, name),
                           'filterd_socket_group = postfix',
                           'plugin_directory = %s/plugins' % sifttest.builddir(),
                           'inbound_plugins = clamav', 'originating_plugins = clamav',
                           'myhostname = mx.sift.test'] + extra) + '\n')
    p = sifttest.Proc([os.path.join(sifttest.builddir(), 'filterd', 'filterd'), '-f', '-c', conf],
                      log=os.path.join(root, name + '.log'), umask=0, name=name, **wait)
    p.start()
    return p, listen


def start_milter(root, name, socket_kind, clamd):
    if socket_kind == 'unix':
        sock = os.path.join(root, name + '.sock')
        listen_m, listen_pf, wait = 'unix:' + sock, 'unix:' + sock, {'unix': sock}
    else:
        port = sifttest.free_port()
        listen_m, listen_pf = 'inet:%d@127.0.0.1' % port, 'inet:127.0.0.1:%d' % port
        wait = {'port': port}
    conf = os.path.join(root, name + '.conf')
    with open(conf, 'w') as f:
        f.write('\n'.join(['MilterSocket ' + listen_m, 'MilterSocketMode 666', 'Foreground yes',
                           'User root',
                           'ClamdSocket unix:' + clamd.sock, 'OnInfected Reject', 'OnFail Defer',
                           'AddHeader Replace', 'MaxFileSize 25M', 'ReadTimeout 120',
                           'LogFile %s/%s-own.log' % (root, name), 'LogInfected Basic',
                           'PidFile %s/%s.pid' % (root, name)]) + '\n')
    p = sifttest.Proc(['/usr/sbin/clamav-milter', '-c', conf], log=os.path.join(root, name + '.log'),
                      umask=0, name=name, **wait)
    p.start()
    return p, listen_pf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--count', type=int, default=1000)
    ap.add_argument('--warmup', type=int, default=40)
    ap.add_argument('--concurrency', default='1,8')
    ap.add_argument('--only', default=','.join(SETUPS))
    ap.add_argument('--json')
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--tmpdir', help='clamav_tmpdir for library mode (default: the run directory)')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('run as root')
    levels = [int(x) for x in a.concurrency.split(',')]
    setups = [s for s in a.only.split(',') if s]
    msgs = corpus.generate(max(200, min(a.count, 2000)), seed=1)
    root = tempfile.mkdtemp(prefix='sift-bench-clamav-')
    os.chmod(root, 0o755)
    dbdir = os.path.join(root, 'db')
    cvlib.make_db(dbdir)
    clamd = cvlib.Clamd(os.path.join(root, 'clamd'), dbdir, max_threads=16).start()
    pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), delivery='discard', keep=True)
    pf.start()
    rows = []
    try:
        for setup in setups:
            proc, milter = None, None
            kind, _, sock = setup.partition('-')
            if kind == 'lib':
                proc, milter = start_filterd(root, setup, sock, [
                    'clamav_database_directory = ' + dbdir, 'clamav_ready_wait = 30s',
                    'clamav_tmpdir = ' + (a.tmpdir or root)])
            elif kind == 'clamd':
                proc, milter = start_filterd(root, setup, sock, [
                    'clamav_mode = clamd', 'clamav_clamd_servers = unix:' + clamd.sock])
            elif kind == 'milter':
                proc, milter = start_milter(root, setup, sock, clamd)
            pf.set_main(smtpd_milters=milter or '')
            pf.reload()
            try:
                for conc in levels:
                    pb.measure(pf.port, msgs, conc, max(a.warmup, conc), 'thread')
                    pb.wait_drained(pf)
                    with pb.RssSampler(proc.pid if proc else None) as rs:
                        row = pb.measure(pf.port, msgs, conc, a.count, 'thread')
                    pb.wait_drained(pf)
                    row['setup'] = setup
                    row['rss_max_kb'] = rs.max_rss or None
                    row['clamd_rss_kb'] = sifttest.proc_rss(clamd.proc.pid)[0]
                    rows.append(row)
                    print('%-12s c%-2d %7.1f msg/s  p50 %6.1f ms  p99 %7.1f ms  errors %d' % (
                        setup, conc, row['msg_per_s'], row['p50_ms'], row['p99_ms'], row['errors']),
                        file=sys.stderr)
            finally:
                if proc:
                    proc.stop()
    finally:
        pf.stop()
        clamd.stop()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print('clamav benchmark: %d msgs per level, corpus seed 1, %d CPUs, delivery discard' % (
        a.count, os.cpu_count()))
    hdr = '%-12s %4s %8s %8s %8s %6s %10s %10s %8s' % ('setup', 'conc', 'msg/s', 'p50 ms', 'p99 ms',
                                                     'errors', 'RSSmax MB', 'clamd MB', '% alone')
    print(hdr)
    print('-' * len(hdr))
    alone = {r['concurrency']: r['msg_per_s'] for r in rows if r['setup'] == 'alone'}
    for r in rows:
        pct = 100.0 * r['msg_per_s'] / alone[r['concurrency']] if r['concurrency'] in alone else float('nan')
        print('%-12s %4d %8.1f %8.1f %8.1f %6d %10s %10s %7.0f%%' % (
            r['setup'], r['concurrency'], r['msg_per_s'], r['p50_ms'], r['p99_ms'], r['errors'],
            '%.1f' % (r['rss_max_kb'] / 1024.0) if r['rss_max_kb'] else '-',
            '%.1f' % (r['clamd_rss_kb'] / 1024.0) if r['clamd_rss_kb'] else '-', pct))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return 1 if any(r['errors'] for r in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
