#!/usr/bin/python3
"""Throughput and latency of a private Postfix, alone or with filterd (or
policyd) attached, over persistent SMTP sessions on 127.0.0.1.

For every concurrency level (default 1 and 8) each worker opens ONE SMTP
session (--per-message: one session per message, optionally with XCLIENT;
bench/mx-bench.py uses that mode) and sends its share of the deterministic corpus (bench/corpus.py:
70% ~2 KB text, 25% ~15 KB HTML, 5% ~200 KB attachment) message after
message. Reported per level:

    msg/s     accepted messages / wall time (first DATA to last 250 reply)
    p50/p99   latency from sending DATA to the reply after the final dot
    errors    transactions that did not end in 250
    RSS       VmRSS of filterd/policyd before the level and its maximum
              during it, and VmHWM at the end (from /proc/PID/status)

Modes:
    --mode alone     Postfix only (no milter, no policy service)
    --mode filterd   smtpd_milters = filterd (--filterd-socket inet|unix,
                     --plugins "" | "access" | "...")
    --mode policyd   check_policy_service = policyd (--plugins as above)
    --mode sink      no Postfix: the client against smtp-sink directly, i.e.
                     the ceiling of this load generator

Postfix hands accepted mail to discard(8) by default (--delivery discard);
--delivery sink relays to a local smtp-sink instead (adds the smtp client);
--delivery maildir writes real files via virtual(8). Acceptance rate is what
is measured; the queue is drained (and the drain time reported) before the
next level so levels do not disturb each other.

The client is Python (smtplib) in threads by default; --workers process
runs one process per session instead (use it if the sink mode shows the
client near the measured rate).

Run as root:  /usr/bin/python3 bench/postfix-bench.py --mode alone
              /usr/bin/python3 bench/postfix-bench.py --mode filterd --plugins access
"""

import argparse
import functools
import json
import multiprocessing
import os
import platform
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, HERE)
import sifttest  # noqa: E402
import corpus  # noqa: E402


def percentile(values, p):
    if not values:
        return float('nan')
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class RssSampler:
    """Samples VmRSS every `interval` seconds in a thread: of one PID, or the
    sum over a list of PIDs (a filter made of several processes)."""

    def __init__(self, pid, interval=0.1):
        self.pids = [] if not pid else ([pid] if isinstance(pid, int) else list(pid))
        self.pid = self.pids[0] if self.pids else None
        self.interval = interval
        self.max_rss = 0
        self._stop = threading.Event()
        self._t = None

    def _rss(self, which=0):
        vals = [sifttest.proc_rss(p)[which] for p in self.pids]
        return sum(v for v in vals if v) or None

    def __enter__(self):
        self.start_rss = self._rss() if self.pids else None

        def run():
            while not self._stop.is_set():
                rss = self._rss()
                if rss:
                    self.max_rss = max(self.max_rss, rss)
                self._stop.wait(self.interval)
        if self.pids:
            self._t = threading.Thread(target=run, daemon=True)
            self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._t:
            self._t.join()
        self.hwm = self._rss(1) if self.pids else None
        return False


def cpu_seconds(pids):
    """utime+stime (all threads) of the live processes in `pids`, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            with open('/proc/%d/stat' % pid) as f:
                parts = f.read().rsplit(')', 1)[1].split()
            ticks += int(parts[11]) + int(parts[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf('SC_CLK_TCK')


def pss_kb(pids):
    """Sum of Pss (kB) over `pids` from /proc/PID/smaps_rollup (None if unreadable)."""
    total = 0
    for pid in pids:
        try:
            with open('/proc/%d/smaps_rollup' % pid) as f:
                for line in f:
                    if line.startswith('Pss:'):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
    return total or None


# -- load generation -------------------------------------------------------------

def _worker_share(msgs, w, conc, per_worker):
    # round robin over the corpus so every worker gets the same mix
    return [msgs[(w + k * conc) % len(msgs)] for k in range(per_worker)]


def _session_run(port, share, ready, go):
    """Runs one SMTP session over `share`; returns (latencies, errors, first_error, t_end)."""
    lat, errors, first_error = [], 0, None
    s = sifttest.Session(port, helo='bench.example.test', timeout=120)
    ready()
    go()
    for m in share:
        r = s.send(m.mail_from, [m.rcpt], m.data)
        if r.accepted:
            lat.append(r.latency)
        else:
            errors += 1
            if first_error is None:
                first_error = repr(r)
    t_end = time.monotonic()
    s.close()
    return lat, errors, first_error, t_end


def xclient_addr(w, k):
    """The client address presented for message k of worker w (192.0.2.0/24)."""
    return '192.0.2.%d' % (1 + (w * 31 + k) % 250)


def _permsg_run(port, share, ready, go, xclient=True, w=0):
    """One SMTP session per message (connect, EHLO, [XCLIENT, EHLO], MAIL,
    RCPT, DATA, QUIT); latency is the whole session, connect to the reply
    to QUIT. Returns (latencies, errors, first_error, t_end)."""
    lat, errors, first_error = [], 0, None
    ready()
    go()
    for k, m in enumerate(share):
        helo = 'client%d.example.test' % (k % 50)
        t0 = time.monotonic()
        err = None
        s = smtplib.SMTP(timeout=120)
        try:
            code, msg = s.connect('127.0.0.1', port)
            if code == 220:
                code, msg = s.ehlo(helo)
            if code == 250 and xclient:
                code, msg = s.docmd('XCLIENT', 'ADDR=%s NAME=[UNAVAILABLE] HELO=%s' % (
                    xclient_addr(w, k), helo))
                if code == 220:
                    code, msg = s.ehlo(helo)
            if code == 250:
                code, msg = s.mail(m.mail_from)
            if code == 250:
                code, msg = s.rcpt(m.rcpt)
            if code == 250:
                code, msg = s.data(m.data)
            if code != 250:
                err = '%d %s' % (code, msg.decode('utf-8', 'replace'))
            s.quit()
        except (smtplib.SMTPException, OSError) as e:
            err = '%s: %s' % (type(e).__name__, e)
            s.close()
        if err is None:
            lat.append(time.monotonic() - t0)
        else:
            errors += 1
            first_error = first_error or err
    return lat, errors, first_error, time.monotonic()


def session_fn(per_message=False, xclient=False):
    """The session runner measure() uses: persistent, or one per message."""
    if per_message:
        return functools.partial(_permsg_run, xclient=xclient)
    return _session_run


def run_threads(port, msgs, conc, per_worker, run=_session_run):
    barrier = threading.Barrier(conc + 1)
    results = [None] * conc
    errors_raised = []

    def work(w):
        try:
            results[w] = _call_run(run, w, port, _worker_share(msgs, w, conc, per_worker),
                                   lambda: None, barrier.wait)
        except Exception as e:  # noqa: BLE001 - reported below
            errors_raised.append(repr(e))
            try:
                barrier.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=work, args=(w,)) for w in range(conc)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.monotonic()
    for t in threads:
        t.join()
    if errors_raised:
        raise RuntimeError('worker failed: %s' % errors_raised[0])
    return t0, results


def _call_run(run, w, port, share, ready, go):
    if run is _session_run:
        return run(port, share, ready, go)
    return run(port, share, ready, go, w=w)


def _proc_main(port, share, ready_q, go_ev, out_q, run=_session_run, w=0):
    try:
        res = _call_run(run, w, port, share, lambda: ready_q.put(1), go_ev.wait)
        out_q.put(res)
    except Exception as e:  # noqa: BLE001
        ready_q.put(1)
        out_q.put(('error', repr(e)))


def run_processes(port, msgs, conc, per_worker, run=_session_run):
    ctx = multiprocessing.get_context('fork')
    ready_q, out_q, go_ev = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_proc_main,
                         args=(port, _worker_share(msgs, w, conc, per_worker), ready_q, go_ev,
                               out_q, run, w)) for w in range(conc)]
    for p in procs:
        p.start()
    for _ in procs:
        ready_q.get(timeout=60)
    t0 = time.monotonic()
    go_ev.set()
    results = [out_q.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
    for r in results:
        if r and r[0] == 'error':
            raise RuntimeError('worker failed: %s' % r[1])
    return t0, results


def measure(port, msgs, conc, count, workers, run=_session_run):
    """`count` messages at concurrency `conc`; `run` is the session runner
    (session_fn(): one persistent session per worker by default)."""
    per_worker = max(1, count // conc)
    runner = run_processes if workers == 'process' else run_threads
    t0, results = runner(port, msgs, conc, per_worker, run)
    lat = [x for r in results for x in r[0]]
    errors = sum(r[1] for r in results)
    first_error = next((r[2] for r in results if r[2]), None)
    t_end = max(r[3] for r in results)
    elapsed = t_end - t0
    return {
        'concurrency': conc, 'messages': per_worker * conc, 'accepted': len(lat),
        'errors': errors, 'first_error': first_error, 'seconds': elapsed,
        'msg_per_s': len(lat) / elapsed if elapsed > 0 else float('nan'),
        'p50_ms': percentile(lat, 50) * 1000, 'p99_ms': percentile(lat, 99) * 1000,
        'mean_ms': (statistics.mean(lat) * 1000) if lat else float('nan'),
    }


# -- setup ---------------------------------------------------------------------------

def write_access_maps(root):
    maps = {}
    for kind, content in (('client', '192.0.2.66\tREJECT bench: listed client\n'),
                          ('sender', 'spammer@bad.example\tREJECT bench: listed sender\n'),
                          ('recipient', 'blocked@sift.test\tREJECT bench: listed rcpt\n')):
        path = os.path.join(root, 'access_%s' % kind)
        with open(path, 'w') as f:
            f.write(content)
        maps['access_%s_map' % kind] = 'texthash:' + path
    return maps


def daemon_conf(root, daemon, listen, builddir, plugins):
    lines = ['# written by bench/postfix-bench.py',
             '%s_listen = %s' % (daemon, listen),
             'plugin_directory = %s' % os.path.join(builddir, 'plugins'),
             'inbound_plugins = %s' % plugins,
             'originating_plugins = %s' % plugins,
             'originating_daemons = ORIGINATING',
             '%s_user = root' % daemon,
             '%s_pid_file = %s' % (daemon, os.path.join(root, daemon + '.pid'))]
    if listen.startswith('unix:'):
        lines.append('%s_socket_group = postfix' % daemon)
    if 'access' in plugins.split():
        for k, v in write_access_maps(root).items():
            lines.append('%s = %s' % (k, v))
    path = os.path.join(root, daemon + '.conf')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def start_daemon(a, root, builddir, start_timeout=15.0):
    """Starts filterd/policyd as the mode needs (a: mode, filterd_socket,
    plugins, daemon_opt); returns (Proc, postfix kwargs)."""
    daemon = a.mode
    exe = os.path.join(builddir, daemon, daemon)
    if not sifttest.daemon_is_real(exe):
        sys.exit('postfix-bench: %s is missing or not a real daemon yet (%s -p prints no '
                 '*_listen setting); build it first' % (daemon, exe))
    if daemon == 'filterd' and a.filterd_socket == 'unix':
        sock = os.path.join(root, 'filterd.sock')
        listen_d, listen_pf, wait = 'unix:' + sock, 'unix:' + sock, {'unix': sock}
    else:
        port = sifttest.free_port()
        listen_d = listen_pf = 'inet:127.0.0.1:%d' % port
        wait = {'port': port}
    conf = daemon_conf(root, daemon, listen_d, builddir, a.plugins)
    argv = [exe, '-f', '-c', conf]
    for o in a.daemon_opt:
        argv += ['-o', o]
    # umask 0: a unix socket created by root must be connectable by smtpd (postfix)
    p = sifttest.Proc(argv, log=os.path.join(root, daemon + '.log'), umask=0,
                      start_timeout=start_timeout, **wait)
    p.start()
    if daemon == 'filterd':
        return p, {'milters': [listen_pf]}
    return p, {'policy': listen_pf}


def summary_lines(proc):
    if proc is None:
        return None
    return sum(1 for l in proc.log().splitlines() if ': filterd: action=' in l)


def wait_drained(pf, timeout=120):
    if pf is None:
        return 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not pf.queue():
            return time.monotonic() - t0
        time.sleep(0.2)
    return float('nan')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--mode', choices=['alone', 'filterd', 'policyd', 'sink'], default='alone')
    ap.add_argument('--filterd-socket', choices=['inet', 'unix'], default='inet')
    ap.add_argument('--plugins', default='', help='plugin list for both profiles ("" = none)')
    ap.add_argument('--daemon-opt', action='append', default=[], metavar='NAME=VALUE',
                    help='extra -o for filterd/policyd (repeatable)')
    ap.add_argument('--delivery', choices=['discard', 'sink', 'maildir'], default='discard')
    ap.add_argument('--count', type=int, default=2000, help='messages per concurrency level')
    ap.add_argument('--concurrency', default='1,8', help='comma-separated levels')
    ap.add_argument('--warmup', type=int, default=50, help='warm-up messages per level')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--corpus', choices=['default', 'mx'], default='default',
                    help='mx: corpus.mx_corpus (50%% ~2.6 KB text, 35%% ~20 KB HTML, 15%% ~200 KB '
                    'attachment)')
    ap.add_argument('--repeat', type=int, default=1,
                    help='runs per level; the run with the median rate is shown')
    ap.add_argument('--workers', choices=['thread', 'process'], default='thread')
    ap.add_argument('--per-message', action='store_true',
                    help='one SMTP session per message (as an MX receives mail) instead of one '
                    'persistent session per worker')
    ap.add_argument('--xclient', action='store_true',
                    help='with --per-message: present a client address in 192.0.2.0/24 with '
                    'XCLIENT (smtpd_authorized_xclient_hosts = 127.0.0.0/8)')
    ap.add_argument('--main', action='append', default=[], metavar='NAME=VALUE',
                    help='extra Postfix main.cf parameter (repeatable)')
    ap.add_argument('--builddir', default=sifttest.builddir())
    ap.add_argument('--json', metavar='FILE', help='also write the results as JSON')
    ap.add_argument('--keep', action='store_true', help='keep the temp directory')
    a = ap.parse_args()
    if os.geteuid() != 0 and a.mode != 'sink':
        sys.exit('postfix-bench: run as root (private Postfix instance)')
    levels = [int(x) for x in a.concurrency.split(',') if x.strip()]
    run = session_fn(a.per_message, a.xclient)
    if a.xclient:
        a.main.append('smtpd_authorized_xclient_hosts=127.0.0.0/8')

    make = corpus.mx_corpus if a.corpus == 'mx' else corpus.generate
    msgs = make(max(200, min(a.count, 2000)), seed=a.seed)
    root = tempfile.mkdtemp(prefix='sift-bench-', dir=os.environ.get('SIFT_TEST_TMP'))
    os.chmod(root, 0o755)
    procs, pf, daemon = [], None, None
    rows = []
    try:
        sink_port = None
        if a.mode == 'sink' or a.delivery == 'sink':
            sink_port = sifttest.free_port()
            sink = sifttest.Proc(['smtp-sink', '-u', 'nobody', '127.0.0.1:%d' % sink_port,
                                  '1024'], log=os.path.join(root, 'smtp-sink.log'),
                                 port=sink_port)
            sink.start()
            procs.append(sink)
        if a.mode in ('filterd', 'policyd'):
            daemon, pfkw = start_daemon(a, root, a.builddir)
            procs.append(daemon)
        else:
            pfkw = {}
        if a.mode != 'sink':
            delivery = {'discard': 'discard', 'maildir': 'maildir',
                        'sink': 'relay:%d' % (sink_port or 0)}[a.delivery]
            extra = dict(kv.split('=', 1) for kv in a.main)
            extra = {k.strip(): v.strip() for k, v in extra.items()}
            pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), delivery=delivery,
                                  main=extra, keep=True, **pfkw)
            pf.start()
            port = pf.port
        else:
            port = sink_port

        for conc in levels:
            if a.warmup:
                measure(port, msgs, conc, max(a.warmup, conc), a.workers, run)
                wait_drained(pf)
            runs = []
            for _ in range(a.repeat):
                before = summary_lines(daemon)
                with RssSampler(daemon.pid if daemon else None) as rs:
                    row = measure(port, msgs, conc, a.count, a.workers, run)
                row['drain_s'] = wait_drained(pf)
                row['rss_before_kb'] = rs.start_rss
                row['rss_max_kb'] = rs.max_rss or None
                row['hwm_kb'] = rs.hwm
                if daemon is not None:
                    row['daemon_summary_lines'] = summary_lines(daemon) - before
                runs.append(row)
                print('  concurrency %d: %.1f msg/s, p50 %.1f ms, p99 %.1f ms, %d errors' % (
                    conc, row['msg_per_s'], row['p50_ms'], row['p99_ms'], row['errors']),
                    file=sys.stderr)
            # the run with the median rate represents the level
            runs.sort(key=lambda r: r['msg_per_s'])
            row = dict(runs[len(runs) // 2])
            row['all_msg_per_s'] = [round(r['msg_per_s'], 1) for r in runs]
            row['errors'] = sum(r['errors'] for r in runs)
            rows.append(row)
            if row['first_error']:
                print('  first error: %s' % row['first_error'], file=sys.stderr)
        if pf is not None:
            errs = pf.log_lines(r'(warning|error|fatal|panic):')
            if errs:
                print('Postfix warnings (%d), first: %s' % (len(errs), errs[0]), file=sys.stderr)
    finally:
        if pf is not None:
            pf.stop()
        for p in reversed(procs):
            p.stop()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print('kept %s' % root, file=sys.stderr)

    desc = a.mode
    if a.mode == 'filterd':
        desc += ' (%s, plugins=%s)' % (a.filterd_socket, a.plugins or 'none')
    elif a.mode == 'policyd':
        desc += ' (plugins=%s)' % (a.plugins or 'none')
    if a.mode != 'sink':
        desc += ', delivery=%s' % a.delivery
    print()
    print('Sift Postfix benchmark: %s' % desc)
    print('corpus seed %d (%s), %s workers, %s; %d CPUs; Postfix %s' % (
              a.seed, '50% ~2.6KB text, 35% ~20KB HTML, 15% ~200KB attachment' if a.corpus == 'mx'
              else '70% ~2KB text, 25% ~15KB HTML, 5% ~200KB attachment', a.workers,
              'one SMTP session per message' + (' with XCLIENT' if a.xclient else '')
              if a.per_message else 'one SMTP session per worker', os.cpu_count(),
              subprocess.run(['postconf', '-dh', 'mail_version'], capture_output=True,
                             text=True).stdout.strip()))
    hdr = '%-5s %7s %6s %9s %8s %8s %8s %9s %9s %9s' % (
        'conc', 'msgs', 'errors', 'msg/s', 'p50 ms', 'p99 ms', 'drain s', 'RSS0 MB',
        'RSSmax MB', 'HWM MB')
    print(hdr)
    print('-' * len(hdr))

    def mb(kb):
        return '%9.1f' % (kb / 1024.0) if kb else '%9s' % '-'
    for r in rows:
        print('%-5d %7d %6d %9.1f %8.1f %8.1f %8.1f %s %s %s' % (
            r['concurrency'], r['messages'], r['errors'], r['msg_per_s'], r['p50_ms'],
            r['p99_ms'], r['drain_s'], mb(r['rss_before_kb']), mb(r['rss_max_kb']),
            mb(r['hwm_kb'])))
    if a.repeat > 1:
        print('msg/s of all runs: %s' % '; '.join(
            'c%d: %s' % (r['concurrency'], ', '.join(map(str, r['all_msg_per_s']))) for r in rows))
    if daemon is not None and a.mode == 'filterd':
        print('%s summary lines per level: %s' % (
            a.mode, ', '.join(str(r.get('daemon_summary_lines')) for r in rows)))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'mode': a.mode, 'filterd_socket': a.filterd_socket,
                       'plugins': a.plugins, 'delivery': a.delivery, 'seed': a.seed,
                       'workers': a.workers, 'cpus': os.cpu_count(),
                       'python': platform.python_version(), 'rows': rows}, f, indent=2)
    return 1 if any(r['errors'] for r in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
