#!/usr/bin/python3
"""Throughput of virus scanning through a private Postfix, side by side in
one run:

    alone        Postfix alone
    floor-unix   filterd with no plugin (every stage negotiated away but
    floor-inet   end of message): Postfix's own per-message cost of a milter
    body-unix    filterd with bench/clamav/bodyread.c (built at run time):
    body-inet    takes the whole message and adds a header, scans nothing:
                 the floor of any content scanner
    lib-unix     filterd + clamav, library mode (default settings: temporary
    lib-inet     files in the plugin's private directory on /dev/shm)
    clamd-unix   filterd + clamav, clamd mode (zINSTREAM over clamd's unix
    clamd-inet   socket)
    milter-unix  clamav-milter + the same clamd (Debian packages)
    milter-inet

and, only when named in --only, libdisk-unix and libdisk-inet: library mode
with clamav_tmpdir = /tmp (--disk-tmpdir), i.e. ClamAV's temporary files on
the disk file system /tmp usually is, as before the tmpfs default.

unix/inet is the milter socket between Postfix and the milter. Every scanner
uses the same small database (plugins/clamav/tests/cvlib.py: EICAR +
clamav-testfiles hashes) and the same clamd configuration, whose
TemporaryDirectory is a private directory on /dev/shm like the plugin's
default (--clamd-tmp disk: under the run directory instead). clamd is
restarted for each clamd/milter setup, so that every scanner starts with a
cold ClamAV cache (the corpus repeats MIME parts: within a setup the c=1
level warms the cache for the c=8 level alike for all scanners).

Load: bench/corpus.py messages (70% ~2 KB text, 25% ~15 KB HTML, 5% ~200 KB
attachment; each message gets its own Received/queue id, so ClamAV's cache
never hits the whole message) over persistent SMTP sessions, concurrency 1
and 8 (measure() and RssSampler from bench/postfix-bench.py); Postfix
delivers to discard(8). --rounds N runs every setup N times, interleaved
(round 1: all setups, round 2: all setups, ...), and reports the median
msg/s with the spread (min-max) of the rounds, so that drift and other load
on the machine hit every setup alike. Reported per setup and level: msg/s,
p50/p99 latency (medians over rounds), errors, RSS of the daemon (filterd or
clamav-milter; clamd's own RSS on its lines), and msg/s relative to Postfix
alone and to the floor row of the same socket.

Run as root:  /usr/bin/python3 bench/clamav/bench.py [--count 1000]
              [--rounds 3] [--concurrency 1,8] [--only alone,lib-inet,...]
              [--engine libmilter|native] [--tmpdir DIR] [--clamd-tmp tmpfs|disk]
              [--json FILE]
"""

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
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

SETUPS = ['alone', 'floor-unix', 'floor-inet', 'body-unix', 'body-inet', 'lib-unix', 'lib-inet',
          'clamd-unix', 'clamd-inet', 'milter-unix', 'milter-inet']
EXTRA_SETUPS = ['libdisk-unix', 'libdisk-inet']


def build_bodyread(root):
    """Compiles bodyread.c into <root>/bodyread-plugins/bodyread.so."""
    d = os.path.join(root, 'bodyread-plugins')
    os.makedirs(d, exist_ok=True)
    inc = os.path.join(HERE, '..', '..', 'include')
    subprocess.run(['cc', '-std=gnu11', '-O2', '-shared', '-fPIC', '-fvisibility=hidden', '-I', inc,
                    '-o', os.path.join(d, 'bodyread.so'), os.path.join(HERE, 'bodyread.c')], check=True)
    return d


def start_filterd(root, name, socket_kind, extra, plugins='clamav', plugin_dir=None, engine=None):
    if socket_kind == 'unix':
        sock = os.path.join(root, name + '.sock')
        listen, wait = 'unix:' + sock, {'unix': sock}
    else:
        port = sifttest.free_port()
        listen, wait = 'inet:127.0.0.1:%d' % port, {'port': port}
    conf = os.path.join(root, name + '.conf')
    with open(conf, 'w') as f:
        f.write('\n'.join(['filterd_listen = ' + listen, 'filterd_user = root',
                           'filterd_pid_file = %s/%s.pid' % (root, name),
                           'filterd_socket_group = postfix',
                           'plugin_directory = %s' % (plugin_dir or sifttest.builddir() + '/plugins'),
                           'inbound_plugins = ' + plugins, 'originating_plugins = ' + plugins,
                           'myhostname = mx.sift.test'] +
                          (['filterd_engine = ' + engine] if engine else []) + extra) + '\n')
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


def summarise(runs):
    """Rows of one (setup, concurrency) over rounds -> one row with medians."""
    rates = [r['msg_per_s'] for r in runs]
    row = dict(runs[0])
    row.update({
        'rounds': len(runs), 'msg_per_s': statistics.median(rates), 'all_msg_per_s': rates,
        'p50_ms': statistics.median(r['p50_ms'] for r in runs),
        'p99_ms': statistics.median(r['p99_ms'] for r in runs),
        'errors': sum(r['errors'] for r in runs),
        'rss_max_kb': max((r['rss_max_kb'] or 0) for r in runs) or None,
        'clamd_rss_kb': max((r['clamd_rss_kb'] or 0) for r in runs) or None,
    })
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--count', type=int, default=1000)
    ap.add_argument('--warmup', type=int, default=40)
    ap.add_argument('--rounds', type=int, default=1, help='interleaved rounds (median reported)')
    ap.add_argument('--concurrency', default='1,8')
    ap.add_argument('--only', default=','.join(SETUPS))
    ap.add_argument('--engine', choices=('libmilter', 'native'),
                    help='filterd_engine for the filterd rows (default: filterd\'s default)')
    ap.add_argument('--json')
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--tmpdir', help='clamav_tmpdir for library mode (default: the plugin\'s default)')
    ap.add_argument('--disk-tmpdir', default='/tmp', help='clamav_tmpdir of the libdisk rows')
    ap.add_argument('--clamd-tmp', choices=('tmpfs', 'disk'), default='tmpfs',
                    help='clamd TemporaryDirectory: a private dir on /dev/shm, or in the run directory')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('run as root')
    levels = [int(x) for x in a.concurrency.split(',')]
    setups = [s for s in a.only.split(',') if s]
    for s_ in setups:
        if s_ not in SETUPS + EXTRA_SETUPS:
            sys.exit('unknown setup %s' % s_)
    msgs = corpus.generate(max(200, min(a.count, 2000)), seed=1)
    root = tempfile.mkdtemp(prefix='sift-bench-clamav-')
    os.chmod(root, 0o755)
    dbdir = os.path.join(root, 'db')
    cvlib.make_db(dbdir)
    clamd_tmp = tempfile.mkdtemp(prefix='sift-bench-clamd-', dir='/dev/shm') if a.clamd_tmp == 'tmpfs' \
        else None
    clamd = cvlib.Clamd(os.path.join(root, 'clamd'), dbdir, max_threads=16, tmpdir=clamd_tmp).start()
    bodyread_dir = build_bodyread(root) if any(x.startswith('body-') for x in setups) else None
    pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), delivery='discard', keep=True)
    pf.start()
    runs = {}
    try:
        for rnd in range(a.rounds):
            for setup in setups:
                proc, milter = None, None
                kind, _, sock = setup.partition('-')
                name = '%s-r%d' % (setup, rnd)
                if kind == 'floor':
                    proc, milter = start_filterd(root, name, sock, [], plugins='', engine=a.engine)
                elif kind == 'body':
                    proc, milter = start_filterd(root, name, sock, [], plugins='bodyread',
                                                 plugin_dir=bodyread_dir, engine=a.engine)
                elif kind == 'libdisk':
                    proc, milter = start_filterd(root, name, sock, [
                        'clamav_database_directory = ' + dbdir, 'clamav_ready_wait = 30s',
                        'clamav_tmpdir = ' + a.disk_tmpdir], engine=a.engine)
                elif kind == 'lib':
                    proc, milter = start_filterd(root, name, sock, [
                        'clamav_database_directory = ' + dbdir, 'clamav_ready_wait = 30s'] +
                        (['clamav_tmpdir = ' + a.tmpdir] if a.tmpdir else []), engine=a.engine)
                if kind in ('clamd', 'milter'):
                    # A fresh clamd for each setup: its cache starts cold,
                    # like the library engine of a filterd started for the
                    # setup (the corpus repeats its MIME parts).
                    clamd.restart()
                if kind == 'clamd':
                    proc, milter = start_filterd(root, name, sock, [
                        'clamav_mode = clamd', 'clamav_clamd_servers = unix:' + clamd.sock],
                        engine=a.engine)
                elif kind == 'milter':
                    proc, milter = start_milter(root, name, sock, clamd)
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
                        row['round'] = rnd
                        row['rss_max_kb'] = rs.max_rss or None
                        row['clamd_rss_kb'] = sifttest.proc_rss(clamd.proc.pid)[0]
                        runs.setdefault((setup, conc), []).append(row)
                        print('r%d %-12s c%-2d %7.1f msg/s  p50 %6.1f ms  p99 %7.1f ms  errors %d' % (
                            rnd, setup, conc, row['msg_per_s'], row['p50_ms'], row['p99_ms'],
                            row['errors']), file=sys.stderr)
                finally:
                    if proc:
                        proc.stop()
    finally:
        pf.stop()
        clamd.stop()
        if clamd_tmp:
            shutil.rmtree(clamd_tmp, ignore_errors=True)
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    rows = [summarise(runs[(s_, c)]) for s_ in setups for c in levels if (s_, c) in runs]
    print()
    print('clamav benchmark: %d msgs per level, %d round(s) (median; spread = min-max over rounds), '
          'corpus seed 1, %d CPUs, delivery discard, filterd engine %s, clamd tmp %s' % (
              a.count, a.rounds, os.cpu_count(), a.engine or 'default', a.clamd_tmp))
    hdr = '%-12s %4s %8s %15s %7s %7s %6s %9s %8s %7s %7s' % (
        'setup', 'conc', 'msg/s', 'spread', 'p50 ms', 'p99 ms', 'errors', 'RSS MB', 'clamd MB',
        '%alone', '%floor')
    print(hdr)
    print('-' * len(hdr))
    alone = {r['concurrency']: r['msg_per_s'] for r in rows if r['setup'] == 'alone'}
    floor = {(r['setup'].split('-')[1], r['concurrency']): r['msg_per_s']
             for r in rows if r['setup'].startswith('floor-')}

    def pct(v, base):
        return '%6.0f%%' % (100.0 * v / base) if base else '%7s' % '-'
    for r in rows:
        sock = r['setup'].partition('-')[2]
        print('%-12s %4d %8.1f %15s %7.1f %7.1f %6d %9s %8s %7s %7s' % (
            r['setup'], r['concurrency'], r['msg_per_s'],
            '%.0f-%.0f' % (min(r['all_msg_per_s']), max(r['all_msg_per_s'])),
            r['p50_ms'], r['p99_ms'], r['errors'],
            '%.1f' % (r['rss_max_kb'] / 1024.0) if r['rss_max_kb'] else '-',
            '%.1f' % (r['clamd_rss_kb'] / 1024.0) if r['clamd_rss_kb'] else '-',
            pct(r['msg_per_s'], alone.get(r['concurrency'])),
            pct(r['msg_per_s'], floor.get((sock, r['concurrency']))) if sock else '%7s' % '-'))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'rounds': runs and [x for v in runs.values() for x in v], 'rows': rows}, f,
                      indent=2)
    return 1 if any(r['errors'] for r in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
