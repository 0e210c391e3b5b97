#!/usr/bin/python3
"""Bounded memory: what the daemons hold with many connections at once.

filterd: --messages (100) concurrent messages of --size (10 MB) through
clamav and spam, one milter connection each, all in flight together (the
MTA's side of the protocol, the messages and filterd's configuration are
bench/message/bench.py's: a short text part and a random base64
attachment, clamav with its test database, spam with the project's rules
and spam_max_size raised so that it parses them too; message_memory_limit
at its default, 1m, the rest spooled to the run's directory). Reports
filterd's idle RSS after a warm-up message, its peak (VmHWM) and what the
messages added, then, idle again, its RSS, glibc's heap (malloc_stats,
through gdb: the bytes it holds and those in use) and its RSS after
malloc_trim(0) (what the allocator kept, given back), against the bound

    idle RSS + message_memory_limit x connections + a fixed amount

and prints the fixed amount this run needed (peak - idle - 1 MiB x
connections). --clamav-mode clamd has a private clamd scan (filterd's RSS
is then Sift's own); library mode (the default) adds libclamav's own
memory per scan in progress (about twice the message), which
message_memory_limit does not bound but clamav_max_scans does (at most
that many scans at once, 8 by default).

policyd: --policy-connections (1000) connections at once to a policyd
running spf (answered by a local DNS server) and access: its idle RSS,
its RSS with every connection open, after every connection sent one
request at the same moment (all answered), and after they are closed;
the fds it held.

    bench/memory.py [--builddir DIR] [--messages 100] [--size 10000000]
                    [--clamav-mode library|clamd] [--policy-connections 1000]
                    [--skip-filterd] [--skip-policyd]

A benchmark, not a test: ./check does not run it. Run it niced on a
shared machine (`nice -n 10 bench/memory.py`): the figures are memory,
not speed. Everything it starts is stopped by PID; it uses only
127.0.0.1. Ends with "N passed, N failed" over its checks (every message
accepted and scanned, every policy request answered).
"""

import argparse
import importlib.util
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..'))
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
sys.path.insert(0, os.path.join(SRC, 'plugins', 'clamav', 'tests'))
import sifttest  # noqa: E402
import cvlib  # noqa: E402
from dnsserver import DNSServer  # noqa: E402

_spec = importlib.util.spec_from_file_location('msgbench', os.path.join(HERE, 'message', 'bench.py'))
msgbench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(msgbench)

MIB = 1024 * 1024


def kb(pid):
    return sifttest.proc_rss(pid)


def gdb_call(pid, expr):
    """Calls a function in a running process (gdb, attached for a moment);
    False when gdb is missing or fails."""
    if not shutil.which('gdb'):
        return False
    r = subprocess.run(['gdb', '-batch', '-p', str(pid), '-ex', 'call ' + expr],
                       capture_output=True, text=True, timeout=120)
    return r.returncode == 0


def heap(proc):
    """glibc's view of proc's heap, (system bytes, in-use bytes) over all
    arenas and mmapped chunks: malloc_stats() writes them to the
    process's stderr, its log. (None, None) without gdb."""
    if not gdb_call(proc.pid, '(void)malloc_stats()'):
        return None, None
    time.sleep(0.2)
    m = re.findall(r'Total \(incl\. mmap\):\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)',
                   proc.log())
    return (int(m[-1][0]), int(m[-1][1])) if m else (None, None)


def after_trim(proc):
    """RSS (KiB) after malloc_trim(0): what the allocator kept of the
    memory freed, given back."""
    gdb_call(proc.pid, '(int)malloc_trim(0)')
    time.sleep(0.2)
    return kb(proc.pid)[0]


def mb(n):
    return '-' if n is None else '%.1f MB' % (n / MIB)


def fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def filterd_run(a, root, checks):
    """The concurrent large messages; returns the report's lines."""
    dbdir = os.path.join(root, 'db')
    cvlib.make_db(dbdir)
    clamd = None
    a.clamd_sock = None
    a.concurrency, a.rounds = a.messages, 1
    if a.clamav_mode == 'clamd':
        clamd = cvlib.Clamd(os.path.join(root, 'clamd'), dbdir).start()
        a.clamd_sock = clamd.sock
    b = msgbench.Build('this', os.path.abspath(a.builddir), root, dbdir, a, checks)
    peak_threads = [0]
    try:
        b.ready()
        msgs = [msgbench.make_message(i + 1, a.size) for i in range(a.messages)]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    with open('/proc/%d/status' % b.p.pid) as f:
                        for line in f:
                            if line.startswith('Threads:'):
                                peak_threads[0] = max(peak_threads[0], int(line.split()[1]))
                except OSError:
                    pass
                stop.wait(0.2)
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        b.round(msgs, 1)
        stop.set()
        t.join()
        del msgs
        r = b.result()
        time.sleep(2)
        after = kb(b.p.pid)[0]
        system, in_use = heap(b.p)
        trimmed = after_trim(b.p)
        failed = re.findall(r'clamav: scan failed \(.*', b.p.log())
    finally:
        b.p.stop()
        if clamd:
            clamd.stop()
    ok = sum(1 for v in b.verdicts if v == ('continue', True))
    grown = r['peak_rss_kb'] - r['idle_rss_kb']
    fixed = grown * 1024 - a.messages * MIB
    return [
        'filterd: %d concurrent messages of %.1f MB, clamav (%s mode) + spam, message_memory_limit 1m'
        % (a.messages, a.size / 1e6, a.clamav_mode),
        '  idle RSS %.1f MB; peak RSS %.1f MB (%d threads at most); grown by %.1f MB = %.2f MB a '
        'connection' % (r['idle_rss_kb'] / 1024, r['peak_rss_kb'] / 1024, peak_threads[0],
                        grown / 1024, grown / 1024 / a.messages),
        '  %d of %d accepted and scanned%s' % (ok, len(b.verdicts), ' (%d scans failed, e.g. %s)' % (
            len(failed), failed[0]) if failed else ''),
        '  bound: idle + 1 MiB x %d + fixed: fixed = %.1f MB in this run' % (a.messages, fixed / MIB),
        '  RSS 2 s after the last message: %.1f MB; %.1f s for all, %.2f s CPU a message'
        % (after / 1024, b.wall, r['cpu_s_per_msg'] or 0),
        '  then: malloc heap %s, of which in use %s; RSS after malloc_trim(0) %.1f MB'
        % (mb(system), mb(in_use), trimmed / 1024),
    ]


def open_policy(port, n):
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection(('127.0.0.1', port), timeout=30))
    return socks


def ask_all(socks, checks):
    """Every connection sends one request at once; all replies read."""
    req = ('request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n'
           'client_address=127.0.0.1\nhelo_name=mail.example.test\n'
           'sender=alice@example.test\nrecipient=user@sift.test\n\n').encode()
    for s in socks:
        s.sendall(req)
    answered = 0
    for s in socks:
        buf = b''
        try:
            while b'\n\n' not in buf:
                got = s.recv(4096)
                if not got:
                    break
                buf += got
        except OSError:
            pass
        answered += buf.startswith(b'action=')
    checks.check(answered == len(socks), 'policyd: all %d requests answered' % len(socks),
                 answered)


def policyd_run(a, root, checks):
    zones = {'example.test': [{'name': '@', 'type': 'TXT', 'ttl': 300,
                               'data': 'v=spf1 ip4:127.0.0.0/8 -all'}]}
    dns = DNSServer(zones).start()
    n = a.policy_connections
    p = None
    try:
        p = sifttest.start_daemon('policyd', root, {
            'inbound_plugins': 'spf', 'dns_servers': '127.0.0.1:%d' % dns.port,
            'policyd_max_connections': str(n + 100), 'policyd_user': 'root'})
        time.sleep(1)
        idle = kb(p.pid)[0]
        socks = open_policy(p.port, n)
        time.sleep(1)
        opened, fd_open = kb(p.pid)[0], fds(p.pid)
        t0 = time.monotonic()
        ask_all(socks, checks)
        took = time.monotonic() - t0
        time.sleep(1)
        asked = kb(p.pid)[0]
        for s in socks:
            s.close()
        time.sleep(2)
        closed, fd_closed = kb(p.pid)[0], fds(p.pid)
        hwm = kb(p.pid)[1]
        system, in_use = heap(p)
        trimmed = after_trim(p)
    finally:
        if p:
            p.stop()
        dns.stop()
    return [
        'policyd: %d connections at once (spf)' % n,
        '  RSS idle %.1f MB; %d open %.1f MB (%.1f KB a connection); after one request each at '
        'once (%.2f s for all) %.1f MB; closed again %.1f MB; peak %.1f MB'
        % (idle / 1024, n, opened / 1024, (opened - idle) / n, took, asked / 1024, closed / 1024,
           hwm / 1024),
        '  fds: %d open, %d after closing; then malloc heap %s, of which in use %s; RSS after '
        'malloc_trim(0) %.1f MB' % (fd_open, fd_closed, mb(system), mb(in_use), trimmed / 1024),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--builddir', default=sifttest.builddir())
    ap.add_argument('--messages', type=int, default=100)
    ap.add_argument('--size', type=int, default=10000000)
    ap.add_argument('--plugins', default='clamav spam')
    ap.add_argument('--clamav-mode', default='library', choices=('library', 'clamd'))
    ap.add_argument('--policy-connections', type=int, default=1000)
    ap.add_argument('--skip-filterd', action='store_true')
    ap.add_argument('--skip-policyd', action='store_true')
    a = ap.parse_args()
    os.environ['SIFT_BUILDDIR'] = os.path.abspath(a.builddir)
    want = a.policy_connections + a.messages + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    root = tempfile.mkdtemp(prefix='sift-memory-')
    os.chmod(root, 0o755)
    checks = sifttest.Checks()
    lines = []
    try:
        if not a.skip_filterd:
            lines += filterd_run(a, root, checks)
        if not a.skip_policyd:
            lines += policyd_run(a, root, checks)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print('\n'.join(lines))
    return checks.done()


if __name__ == '__main__':
    sys.exit(main())
