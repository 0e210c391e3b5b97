#!/usr/bin/python3
"""Memory of large messages: filterd with clamav (library mode) and spam,
8 concurrent 20 MB messages through the milter protocol (no MTA: the
client below plays it), reporting per build:

    peak RSS   filterd's VmHWM (/proc/PID/status) at the end, and what it
               grew by over its idle RSS after start-up (the messages' share)
    msg/s      messages over the wall time of the rounds
    latency    per message, connect to the end-of-message reply (p50, max)
    CPU        filterd's user+system CPU time per message (/proc/PID/stat)

Each message is multipart: a short text part and a ~14.6 MB attachment of
random bytes in base64 (so ~20 MB on the wire, and no two messages or
attachments alike: ClamAV's cache never hits). The clamav database is made
on the spot (plugins/clamav/tests/cvlib.py: EICAR + clamav-testfiles
hashes); spam uses the project's rules/ with spam_max_size raised to 32m so
that the spam plugin parses these messages too (host->mime); filterd keeps
message_memory_limit at its default (1m) and spools the rest to the run's
directory. --rounds rounds of --concurrency messages each, one milter
connection per message; every message must be accepted with its
X-Virus-Scanned header, or the run fails.

Side by side: --before BUILDDIR runs a second filterd from another build of
Sift (say, of an older commit) at the same time, idle while the other
works: the rounds alternate between the two (before, this, before, ...) so
that other load on the machine hits both alike, and each process's peak
RSS is its own. The build under test is $SIFT_BUILDDIR (or --builddir).
--plugins and --clamav-mode clamd (a private clamd scans, so filterd's RSS
is Sift's own without libclamav's) show where the memory goes.

    bench/message/bench.py [--before DIR] [--rounds 2] [--concurrency 8]
                           [--size 20000000] [--json FILE]

A benchmark, not a test: ./check does not run it. Everything it starts
is stopped by PID; it uses only 127.0.0.1. Prints "N passed, N failed"
over its checks (the messages' verdicts).
"""

import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
sys.path.insert(0, os.path.join(SRC, 'plugins', 'clamav', 'tests'))
import sifttest  # noqa: E402
import cvlib  # noqa: E402

# ---- a milter client (the MTA's side of the protocol, version 6) -----------

SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOMAIL, SMFIP_NORCPT = 0x1, 0x2, 0x4, 0x8
SMFIP_NOBODY, SMFIP_NOHDRS, SMFIP_NOEOH, SMFIP_NR_HDR = 0x10, 0x20, 0x40, 0x80
SMFIP_NODATA = 0x200
SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_MAIL, SMFIP_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
SMFIP_NR_DATA, SMFIP_NR_EOH, SMFIP_NR_BODY = 0x10000, 0x40000, 0x80000
FINAL = {b'a': 'accept', b'c': 'continue', b'r': 'reject', b't': 'tempfail', b'd': 'discard',
         b'y': 'replycode'}


class Milter:
    """One milter connection. send() sends a command and, unless the filter
    negotiated no reply for it, reads replies up to a final one."""

    def __init__(self, port, timeout=300):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.buf = b''
        self.headers_added = []
        self.pkt(b'O', struct.pack('>III', 6, 0x1ff, 0x1fffff))
        cmd, data = self.read()
        if cmd != b'O' or len(data) < 12:
            raise RuntimeError('bad option negotiation reply %r' % cmd)
        self.proto = struct.unpack('>III', data[:12])[2]

    def pkt(self, cmd, data=b''):
        self.s.sendall(struct.pack('>I', len(data) + 1) + cmd + data)

    def read(self):
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack('>I', self.buf[:4])[0]:
            got = self.s.recv(65536)
            if not got:
                raise RuntimeError('filter closed the connection')
            self.buf += got
        n = struct.unpack('>I', self.buf[:4])[0]
        p, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return p[:1], p[1:]

    def send(self, cmd, data, skip_flag, nr_flag):
        """Returns the final reply's name, 'skipped' or 'noreply'."""
        if self.proto & skip_flag:
            return 'skipped'
        self.pkt(cmd, data)
        if self.proto & nr_flag:
            return 'noreply'
        while True:
            c, d = self.read()
            if c == b'h':
                self.headers_added.append(d)
            if c in FINAL:
                return FINAL[c]

    def macro(self, stage, pairs):
        self.pkt(b'D', stage + b''.join(k + b'\0' + v + b'\0' for k, v in pairs))

    def close(self):
        try:
            self.pkt(b'Q')
        except OSError:
            pass
        self.s.close()


def send_message(port, headers, body, qid):
    """One message over its own connection: the verdict and the headers the
    filter added."""
    m = Milter(port)
    try:
        m.macro(b'C', [(b'j', b'mx.sift.test'), (b'{daemon_name}', b'bench')])
        steps = [
            (b'C', b'client.example\0' + b'4' + struct.pack('>H', 40000) + b'127.0.0.1\0', SMFIP_NOCONNECT,
             SMFIP_NR_CONN),
            (b'H', b'client.example\0', SMFIP_NOHELO, SMFIP_NR_HELO),
            (b'M', b'<sender@example.test>\0', SMFIP_NOMAIL, SMFIP_NR_MAIL),
            (b'R', b'<user@sift.test>\0', SMFIP_NORCPT, SMFIP_NR_RCPT),
            (b'T', b'', SMFIP_NODATA, SMFIP_NR_DATA),
        ]
        for cmd, data, skip, nr in steps:
            if cmd == b'M':
                m.macro(b'M', [(b'i', qid)])
            r = m.send(cmd, data, skip, nr)
            if r not in ('continue', 'skipped', 'noreply'):
                return r, []
        for name, value in headers:
            r = m.send(b'L', name + b'\0' + value + b'\0', SMFIP_NOHDRS, SMFIP_NR_HDR)
            if r not in ('continue', 'skipped', 'noreply'):
                return r, []
        m.send(b'N', b'', SMFIP_NOEOH, SMFIP_NR_EOH)
        for off in range(0, len(body), 65535):
            r = m.send(b'B', body[off:off + 65535], SMFIP_NOBODY, SMFIP_NR_BODY)
            if r not in ('continue', 'skipped', 'noreply'):
                return r, []
        r = m.send(b'E', b'', 0, 0)
        return r, m.headers_added
    finally:
        m.close()


# ---- the load ---------------------------------------------------------------

def make_message(i, size):
    """(headers, CRLF body) of about `size` bytes, unique."""
    raw = os.urandom(max(1000, (size - 2000) * 57 // 78))
    b64 = base64.encodebytes(raw).replace(b'\n', b'\r\n')
    text = (b'Hello,\r\n\r\nthe quarterly figures are attached, see http://www.example.com/q%d\r\n'
            b'Regards,\r\nAlice\r\n' % i)
    body = (b'--b-%d\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n' % i + text +
            b'--b-%d\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n'
            b'Content-Disposition: attachment; filename="figures-%d.bin"\r\n\r\n' % (i, i) + b64 +
            b'--b-%d--\r\n' % i)
    headers = [(b'From', b' Alice <alice@example.test>'), (b'To', b' user@sift.test'),
               (b'Subject', b' figures %d' % i), (b'Date', b' Mon, 1 Jan 2024 10:00:00 +0000'),
               (b'Message-ID', b' <bench-%d-%d@example.test>' % (i, time.time_ns())),
               (b'MIME-Version', b' 1.0'),
               (b'Content-Type', b' multipart/mixed;\n\tboundary="b-%d"' % i)]
    return headers, body


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def start_filterd(builddir, root, name, dbdir, a):
    port = sifttest.free_port()
    spool = os.path.join(root, name + '-spool')
    os.makedirs(spool, exist_ok=True)
    conf = os.path.join(root, name + '.conf')
    settings = {
        'filterd_listen': 'inet:127.0.0.1:%d' % port, 'filterd_user': 'root',
        'filterd_pid_file': os.path.join(root, name + '.pid'),
        'plugin_directory': os.path.join(builddir, 'plugins'),
        'inbound_plugins': a.plugins, 'originating_plugins': a.plugins,
        'myhostname': 'mx.sift.test', 'tmpdir': spool,
        'quarantine_directory': os.path.join(root, name + '-quarantine'),
        'clamav_database_directory': dbdir, 'clamav_ready_wait': '60s',
        'clamav_max_size': '32m', 'clamav_mode': a.clamav_mode,
        # clamd mode: a message waits for one of clamd's streams, and for
        # its scan, as long as a round may take on a busy machine
        'clamav_clamd_stream_wait': '600s', 'clamav_clamd_timeout': '600s',
        'clamav_clamd_connect_timeout': '600s',
        'spam_rules': os.path.join(SRC, 'rules'), 'spam_max_size': '32m',
        'spam_cache_directory': os.path.join(root, name + '-spamcache'),
    }
    if a.clamd_sock:
        settings['clamav_clamd_servers'] = 'unix:' + a.clamd_sock
    with open(conf, 'w') as f:
        f.write(''.join('%s = %s\n' % kv for kv in settings.items()))
    p = sifttest.Proc([os.path.join(builddir, 'filterd', 'filterd'), '-f', '-c', conf],
                      log=os.path.join(root, name + '.log'), port=port, name=name, start_timeout=60)
    p.start()
    return p, port


def warm_up(port, checks, label):
    """One small message, so that the engine is loaded before measuring."""
    h, b = make_message(0, 20000)
    end = time.monotonic() + 120
    while True:
        r, added = send_message(port, h, b, b'WARMUP')
        if r == 'continue' or time.monotonic() > end:
            break
        time.sleep(0.5)
    checks.check(r == 'continue', '%s: warm-up message accepted' % label, r)


class Build:
    """One filterd of one build under load: its messages' latencies and
    verdicts, its wall and CPU time over its rounds."""

    def __init__(self, label, builddir, root, dbdir, a, checks):
        self.label, self.builddir, self.a, self.checks = label, builddir, a, checks
        self.p, self.port = start_filterd(builddir, root, label, dbdir, a)
        self.lat, self.verdicts, self.wall, self.cpu = [], [], 0.0, 0.0
        self.lock = threading.Lock()

    def ready(self):
        warm_up(self.port, self.checks, self.label)
        time.sleep(1)
        self.idle_rss = sifttest.proc_rss(self.p.pid)[0]

    def one(self, i, msg):
        t0 = time.monotonic()
        try:
            r, added = send_message(self.port, msg[0], msg[1], b'Q%05d' % i)
        except (OSError, RuntimeError) as e:
            r, added = 'error: %s' % e, []
        scanned = 'clamav' not in self.a.plugins.split() or any(
            h.startswith(b'X-Virus-Scanned\0ClamAV') or h.startswith(b'X-Virus-Scanned\0 ClamAV')
            for h in added)
        with self.lock:
            self.lat.append(time.monotonic() - t0)
            self.verdicts.append((r, scanned))

    def round(self, msgs, first):
        """The messages at once, one connection each."""
        cpu0 = cpu_seconds(self.p.pid)
        ts = [threading.Thread(target=self.one, args=(first + k, m)) for k, m in enumerate(msgs)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.wall += time.monotonic() - t0
        self.cpu += cpu_seconds(self.p.pid) - cpu0

    def result(self):
        hwm = sifttest.proc_rss(self.p.pid)[1] or 0
        n = len(self.lat)
        ok = sum(1 for r, scanned in self.verdicts if r == 'continue' and scanned)
        self.checks.check(n and ok == n, '%s: %d messages accepted%s' % (
            self.label, n, ' and scanned' if 'clamav' in self.a.plugins.split() else ''),
            repr([v for v in self.verdicts if v != ('continue', True)][:3]))
        return {
            'build': self.label, 'builddir': self.builddir, 'messages': n, 'size': self.a.size,
            'concurrency': self.a.concurrency, 'rounds': self.a.rounds, 'plugins': self.a.plugins,
            'clamav_mode': self.a.clamav_mode,
            'idle_rss_kb': self.idle_rss, 'peak_rss_kb': hwm, 'grown_kb': hwm - (self.idle_rss or 0),
            'msg_per_s': n / self.wall if self.wall else 0.0,
            'p50_s': statistics.median(self.lat) if self.lat else None,
            'max_s': max(self.lat) if self.lat else None,
            'cpu_s_per_msg': self.cpu / n if n else None,
        }


def run(builds, a):
    """Round r goes to every build in turn (interleaved, so that other load
    on the machine hits them alike), each with messages of its own."""
    for b in builds:
        b.ready()
    for rnd in range(a.rounds):
        for k, b in enumerate(builds):
            first = (rnd * len(builds) + k) * a.concurrency + 1
            msgs = [make_message(first + i, a.size) for i in range(a.concurrency)]
            b.round(msgs, first)
            del msgs
    return [b.result() for b in builds]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--builddir', default=sifttest.builddir())
    ap.add_argument('--before', help='another build directory, run side by side')
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--concurrency', type=int, default=8)
    ap.add_argument('--size', type=int, default=20000000)
    ap.add_argument('--plugins', default='clamav spam', help='the plugins filterd runs')
    ap.add_argument('--clamav-mode', default='library', choices=('library', 'clamd'),
                    help='clamd: a private clamd (Debian\'s) scans, so that filterd\'s RSS is Sift\'s own')
    ap.add_argument('--json')
    a = ap.parse_args()
    a.clamd_sock = None
    root = tempfile.mkdtemp(prefix='sift-msgbench-')
    checks = sifttest.Checks()
    rows, builds = [], []
    clamd = None
    try:
        dbdir = os.path.join(root, 'db')
        cvlib.make_db(dbdir)
        if a.clamav_mode == 'clamd':
            clamd = cvlib.Clamd(os.path.join(root, 'clamd'), dbdir).start()
            a.clamd_sock = clamd.sock
        dirs = ([('before', os.path.abspath(a.before))] if a.before else []) + \
            [('this', os.path.abspath(a.builddir))]
        for label, bdir in dirs:
            builds.append(Build(label, bdir, root, dbdir, a, checks))
        rows = run(builds, a)
    finally:
        for b in builds:
            b.p.stop()
        if clamd:
            clamd.stop()
        shutil.rmtree(root, ignore_errors=True)
    print('%d x %d concurrent messages of %.1f MB, %s (clamav_mode %s), message_memory_limit 1m'
          % (a.rounds, a.concurrency, a.size / 1e6, a.plugins, a.clamav_mode))
    print('%-8s %12s %12s %12s %8s %9s %9s %11s' % ('build', 'idle RSS', 'peak RSS', 'grown by', 'msg/s',
                                                    'p50', 'max', 'CPU/msg'))
    for r in rows:
        print('%-8s %9.1f MB %9.1f MB %9.1f MB %8.2f %8.2fs %8.2fs %10.3fs' % (
            r['build'], (r['idle_rss_kb'] or 0) / 1024, (r['peak_rss_kb'] or 0) / 1024,
            r['grown_kb'] / 1024, r['msg_per_s'], r['p50_s'] or 0, r['max_s'] or 0,
            r['cpu_s_per_msg'] or 0))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return checks.done()


if __name__ == '__main__':
    sys.exit(main())
