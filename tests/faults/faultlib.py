"""Shared helpers of the fault-matrix tests (tests/faults/test_*.py).

Each test sends a flow of uniquely marked messages through a private
Postfix (tests/lib/sifttest.py) wired to filterd and/or policyd, injects
one fault while the flow runs, and then accounts for every message:

  - the sender (Flow) is an MTA's queue in small: 4 concurrent SMTP
    sessions; a message answered 2xx is done, one answered 4xx (or whose
    session broke before the final reply) is sent again after a short
    delay, in a new session, as a queue retries a deferred message; a
    5xx is a permanent refusal, recorded and never expected here;
  - verify() then waits until Postfix has delivered every accepted
    message into its Maildir and checks that each token arrived exactly
    once (none lost, none duplicated), that each carries the mark the
    filter adds (so none went through unfiltered: Postfix's
    milter_default_action or policy default_action did not let it pass),
    and that nothing is left in Postfix's queue.

A daemon that a test kills runs under Supervised, a supervisor loop (what
systemd's Restart= does) that starts it again on the same port when it dies.
Every process is started and stopped by its PID.
"""

import os
import queue
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
import sifttest  # noqa: E402
from sifttest import check  # noqa: E402

# Messages per case and concurrent SMTP sessions (SIFT_FAULT_MESSAGES
# changes the count for a quick run; the suite uses the default).
MESSAGES = int(os.environ.get('SIFT_FAULT_MESSAGES', '200'))
CONCURRENCY = 4
TOKEN_RX = re.compile(rb'^X-Fault-Token: (\S+)', re.M | re.I)


class Env:
    """The temporary directory of one test file, its plugin directory (the
    built plugins it names, and tests/testplug.so) and the things it
    started, stopped last first by stop()."""

    def __init__(self, name, plugins=('testplug',)):
        if os.geteuid() != 0:
            print('the fault tests need root (a private Postfix)')
            print('0 passed, 1 failed')
            sys.exit(1)
        self.tmp = tempfile.mkdtemp(prefix='sift-faults-%s-' % name,
                                    dir=os.environ.get('SIFT_TEST_TMP'))
        os.chmod(self.tmp, 0o755)
        self.plugdir = os.path.join(self.tmp, 'plugins')
        os.mkdir(self.plugdir)
        os.mkdir(self.path('shared'))
        for p in plugins:
            so = os.path.join(sifttest.builddir(), 'tests' if p == 'testplug' else 'plugins',
                              p + '.so')
            os.symlink(so, os.path.join(self.plugdir, p + '.so'))
        self.things = []
        self.pf = None
        # Files the daemons remove after dropping their privileges.
        self.shared = sifttest.daemon_writable(self.path('shared'))

    def add(self, thing):
        self.things.append(thing)
        return thing

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def daemon(self, daemon, name, settings, supervised=False, drain=True):
        """filterd or policyd on a free port with plugin_directory set to
        this Env's; Supervised (restarted when it dies) or a plain Proc.
        drain=False: nobody reads its readiness notifications (a service
        manager that has stopped reading)."""
        s = {'plugin_directory': self.plugdir, 'myhostname': 'mx.sift.test'}
        s.update(settings)
        if supervised:
            return self.add(Supervised(self, daemon, name, s).start())
        p = sifttest.start_daemon(daemon, self.tmp, s, name=name)
        return self.add(drain_notify(p) if drain else p)

    def postfix(self, milter=None, policy=None, **main):
        """Starts the private Postfix (milter: a port, policy: a port)."""
        params = {'in_flow_delay': '0', 'smtpd_client_connection_count_limit': '0'}
        params.update(main)
        self.pf = sifttest.Postfix(root=self.path('postfix'), keep=True,
                                   milters=['inet:127.0.0.1:%d' % milter] if milter else [],
                                   policy='inet:127.0.0.1:%d' % policy if policy else None,
                                   main=params)
        self.add(self.pf)
        self.pf.start()
        return self.pf

    def stop(self):
        sifttest.stop_all(self.things)
        if sifttest.checks.failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print('kept %s' % self.tmp, flush=True)


def drain_notify(p):
    """Keeps reading the readiness notifications of Proc p (started with
    notify) as systemd does: unread, they fill the socket's queue (10
    datagrams) and the daemon's next sd_notify() blocks - after a few
    reloads, each of which sends RELOADING=1 and READY=1. Returns p."""
    def loop():
        while p.alive():
            try:
                p.wait_notify('-never-', 0.5)
            except (OSError, AttributeError):
                return
    if p.notify_sock is not None:
        threading.Thread(target=loop, daemon=True).start()
    return p


class Supervised:
    """A daemon restarted by a supervisor loop: a thread that starts it
    again (same configuration, same port) as soon as it has died."""

    def __init__(self, env, daemon, name, settings):
        self.env = env
        self.daemon = daemon
        self.name = name
        self.settings = settings
        self.port = sifttest.free_port()
        self.listen = 'inet:127.0.0.1:%d' % self.port
        self.proc = None
        self.starts = 0
        self.stopping = False
        self.thread = None
        self.lock = threading.Lock()

    def _start_one(self):
        p = drain_notify(sifttest.start_daemon(self.daemon, self.env.tmp, dict(self.settings),
                                               name=self.name, listen=self.listen))
        with self.lock:
            self.proc = p
            self.starts += 1

    def start(self):
        self._start_one()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self):
        while not self.stopping:
            p = self.proc
            if p.popen.poll() is not None and not self.stopping:
                try:
                    self._start_one()
                except sifttest.ProcError as e:
                    print('supervisor: %s did not start again: %s' % (self.name, e), flush=True)
                    time.sleep(0.5)
                continue
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        return self.proc.log()

    def kill(self, sig):
        """Sends sig to the running daemon; with SIGKILL waits until the
        supervisor has it running again."""
        import signal
        with self.lock:
            p, n = self.proc, self.starts
        os.kill(p.pid, sig)
        if sig == signal.SIGKILL:
            end = time.monotonic() + 30
            while self.starts == n and time.monotonic() < end:
                time.sleep(0.02)
            return self.starts > n
        return True

    def stop(self):
        self.stopping = True
        if self.thread:
            self.thread.join(30)
        if self.proc:
            self.proc.stop()


class Flow:
    """`n` messages, tokens PREFIX-0..n-1 (in Message-ID, Subject and
    X-Fault-Token), sent by `concurrency` sessions that re-send after a 4xx
    (see the module's docstring). start(), then join()."""

    def __init__(self, pf, prefix, n=None, concurrency=CONCURRENCY, sender='sender@example.test',
                 rcpt='user@sift.test', retry_delay=0.3, deadline=180, body=None, port=None,
                 new_session=False, pace=0.0, headers=None):
        self.pf = pf
        self.prefix = prefix
        self.n = MESSAGES if n is None else n
        self.concurrency = concurrency
        self.sender = sender
        self.rcpt = rcpt
        self.retry_delay = retry_delay
        self.deadline = deadline
        self.body = body
        self.port = port or pf.port
        self.new_session = new_session  # one SMTP session per message
        self.pace = pace  # seconds each session waits between messages
        self.headers = headers or {}  # more header fields in every message
        self.tokens = ['%s-%d' % (prefix, i) for i in range(self.n)]
        self.accepted = {}     # token -> queue id
        self.tempfails = {}    # token -> [reply or error, ...]
        self.permanent = {}    # token -> reply
        self.lock = threading.Lock()
        self.q = queue.Queue()
        self.threads = []
        self.stop_flag = False

    def message(self, token):
        body = self.body(token) if self.body else 'Fault test message %s.\n' % token
        return sifttest.message(subject=token, sender=self.sender, to=self.rcpt, body=body,
                                msgid='<%s@client.sift.test>' % token,
                                headers=dict(self.headers, **{'X-Fault-Token': token}))

    def done_count(self):
        with self.lock:
            return len(self.accepted) + len(self.permanent)

    def wait_done(self, k, timeout=60):
        """Waits until k messages are accepted (or refused for good)."""
        end = time.monotonic() + timeout
        while self.done_count() < k and time.monotonic() < end:
            time.sleep(0.02)
        return self.done_count() >= k

    def start(self):
        self.t0 = time.monotonic()
        for t in self.tokens:
            self.q.put((0.0, t))
        for _ in range(self.concurrency):
            th = threading.Thread(target=self._worker, daemon=True)
            th.start()
            self.threads.append(th)
        return self

    def _worker(self):
        sess = None
        end = self.t0 + self.deadline
        while time.monotonic() < end and not self.stop_flag:
            with self.lock:
                if len(self.accepted) + len(self.permanent) >= self.n:
                    break
            try:
                not_before, token = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            wait = not_before - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if sess is None:
                try:
                    sess = sifttest.Session(self.port, timeout=20)
                except (smtplib.SMTPException, OSError) as e:
                    self._temp(token, 'connect: %s' % e)
                    continue
            r = sess.send(self.sender, [self.rcpt], self.message(token))
            if self.pace:
                time.sleep(self.pace)
            if self.new_session or not r.accepted:
                sess.close()
                sess = None
            if r.accepted:
                with self.lock:
                    self.accepted[token] = r.queue_id
                continue
            code = r.code if r.error is None else None
            if code is not None and 500 <= code < 600 and r.rejected_at() is not None:
                with self.lock:
                    self.permanent[token] = (r.stage, r.last())
                continue
            # 4xx anywhere, or a broken session: a queue keeps the message
            # and tries again later, in a new session.
            self._temp(token, (r.stage, r.last(), r.error))
        if sess is not None:
            sess.close()

    def _temp(self, token, why):
        with self.lock:
            self.tempfails.setdefault(token, []).append(why)
        self.q.put((time.monotonic() + self.retry_delay, token))

    def join(self):
        for th in self.threads:
            th.join(self.deadline + 30)
        self.elapsed = time.monotonic() - self.t0
        return self


def delivered_tokens(pf, prefix, cache={}):
    """{token: copies} for the tokens PREFIX-* in the instance's Maildirs
    (each file read once: the header section is enough)."""
    counts = {}
    for dirpath, _, files in os.walk(pf.mail_dir):
        if os.path.basename(dirpath) not in ('new', 'cur'):
            continue
        for n in files:
            path = os.path.join(dirpath, n)
            key = (pf.mail_dir, n)
            if key not in cache:
                try:
                    with open(path, 'rb') as f:
                        head = f.read(65536).split(b'\n\n', 1)[0]
                except OSError:
                    continue
                m = TOKEN_RX.search(head)
                cache[key] = (m.group(1).decode() if m else None, head)
            tok, _ = cache[key]
            if tok and tok.startswith(prefix + '-'):
                counts[tok] = counts.get(tok, 0) + 1
    return counts


def delivered_heads(pf, prefix):
    """{token: header section (bytes)} of the delivered PREFIX-* messages."""
    delivered_tokens(pf, prefix)
    cache = delivered_tokens.__defaults__[0]
    return {tok: head for (md, _), (tok, head) in cache.items()
            if md == pf.mail_dir and tok and tok.startswith(prefix + '-')}


def verify(flow, what, mark=None, min_tempfails=1, timeout=90, delivered=None):
    """The guarantees of one case: every message accepted (none refused
    for good, none still unsent), each delivered exactly once, each with
    the header `mark` (bytes, a regular expression on the header section,
    or a list of them),
    Postfix's queue empty; and at least `min_tempfails` messages answered
    4xx (the fault happened while mail flowed). `delivered`: the tokens
    that are to reach the Maildir when not all accepted ones are (the
    others are the caller's to account for). Returns the counts."""
    pf = flow.pf
    check(not flow.permanent, '%s: no message refused for good (5xx)' % what,
          dict(list(flow.permanent.items())[:5]))
    unsent = [t for t in flow.tokens if t not in flow.accepted and t not in flow.permanent]
    check(not unsent, '%s: every message accepted in the end (after retries)' % what,
          '%d unsent, e.g. %s: %s' % (len(unsent), unsent[:3],
                                      [flow.tempfails.get(t, [])[-1:] for t in unsent[:3]]))
    want = set(flow.accepted if delivered is None else delivered)
    end = time.monotonic() + timeout
    while True:
        counts = delivered_tokens(pf, flow.prefix)
        if all(counts.get(t) for t in want) or time.monotonic() > end:
            break
        time.sleep(0.2)
    lost = [t for t in want if not counts.get(t)]
    dups = {t: c for t, c in counts.items() if c > 1}
    strays = [t for t in counts if t not in want]
    check(not lost, '%s: every accepted message delivered (none lost)' % what,
          '%d lost, e.g. %s; queue %r' % (len(lost), lost[:5], pf.queue()[:3]))
    check(not dups, '%s: no message delivered twice' % what, dict(list(dups.items())[:5]))
    check(not strays, '%s: nothing delivered that was not accepted' % what, strays[:5])
    for mk in ([mark] if isinstance(mark, bytes) else mark or []):
        heads = delivered_heads(pf, flow.prefix)
        rx = re.compile(mk, re.M | re.I)
        unmarked = [t for t, h in heads.items() if not rx.search(h)]
        check(not unmarked and heads, '%s: every delivered message went through the filter (%s)'
              % (what, mk.decode()), unmarked[:5])
    q = pf.queue()
    check(not q, '%s: nothing left in the queue' % what, q[:3])
    n_temp = len(flow.tempfails)
    check(n_temp >= min_tempfails, '%s: the fault was met: %d message(s) answered 4xx, then '
          'delivered on retry' % (what, n_temp), n_temp)
    print('# %s: %d messages in %.1fs, %d accepted, %d deferred at least once (%d 4xx in all)' % (
        what, flow.n, flow.elapsed, len(flow.accepted), n_temp,
        sum(len(v) for v in flow.tempfails.values())), flush=True)
    return counts


def hold_until_met(flow, hold, met=None):
    """Sleeps `hold` seconds, then on until a message of the flow met the
    fault (met(), by default a 4xx), the flow is done, or 20 s more: a
    machine that stalls the flow for the whole hold (a loaded CI host)
    would let a fault pass unmet."""
    met = met or (lambda: flow.tempfails)
    time.sleep(hold)
    end = time.monotonic() + 20
    while not met() and flow.done_count() < flow.n and time.monotonic() < end:
        time.sleep(0.05)


def fault_case(pf, daemon, prefix, fault, recover, hold, mark, what=None, met=None, min_tempfails=1,
               **flow_args):
    """The common shape of a dependency's fault: a flow of messages
    PREFIX-* (Flow(pf, prefix, **flow_args)); a quarter of them done,
    fault(), `hold` seconds (more until a message met the fault:
    hold_until_met), recover(); then every message accounted for (verify,
    with the filter's `mark` and `min_tempfails`). Returns the flow and
    what `daemon` logged meanwhile."""
    logmark = len(daemon.log())
    flow = Flow(pf, prefix, **flow_args).start()
    flow.wait_done(flow.n // 4)
    fault()
    hold_until_met(flow, hold, met)
    recover()
    flow.join()
    verify(flow, what or prefix, mark=mark, min_tempfails=min_tempfails)
    return flow, daemon.log()[logmark:]


def check_replies(flow, what, stage, code, status):
    """Every 4xx the flow met was `code` (an int, or None: any 4xx) with
    the enhanced status `status` at SMTP stage `stage` (none a broken
    session)."""
    replies = [x for v in flow.tempfails.values() for x in v]

    def ok(x):
        return (isinstance(x, tuple) and x[0] == stage and x[1] and 400 <= x[1][0] < 500 and
                (code is None or x[1][0] == code) and status in x[1][1])
    return check(all(ok(x) for x in replies), '%s: the 4xx were %s %s at %s' % (
        what, code or '4xx', status, stage.upper()), [x for x in replies if not ok(x)][:3])


def mount_tmpfs(path, size):
    """Mounts a tmpfs of `size` (mount's form: 2m) on path (made if
    missing), writable by the daemons. Returns True, or False after a
    failed check (a kernel or container that does not let root mount)."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size, 'tmpfs', path],
                       capture_output=True, text=True)
    if not check(r.returncode == 0, 'a %s tmpfs mounted on %s' % (size, os.path.basename(path)),
                 r.stderr):
        return False
    sifttest.daemon_writable(path)
    return True


def umount(path):
    subprocess.run(['umount', path])


class Full:
    """fault() fills the file system of `path`, recover() frees it. Until
    then a thread takes whatever space comes free: a daemon that removes
    its temporary files (libclamav does after each scan) must not give the
    next message room to pass the fault unmet."""

    def __init__(self, path):
        self.path = path
        self.filler = None
        self.stop = threading.Event()
        self.thread = None

    def fault(self):
        self.filler = fill(self.path)
        self.stop.clear()
        self.thread = threading.Thread(target=self._keep_full, daemon=True)
        self.thread.start()

    def _keep_full(self):
        fd = os.open(self.filler, os.O_WRONLY | os.O_APPEND)
        try:
            while not self.stop.is_set():
                try:
                    os.write(fd, b'\0' * 4096)
                except OSError:
                    self.stop.wait(0.002)
        finally:
            os.close(fd)

    def recover(self):
        self.stop.set()
        self.thread.join()
        os.unlink(self.filler)


def fill(path):
    """Fills the file system of path with one file; returns its path."""
    filler = os.path.join(path, 'filler')
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b'\0' * 4096)
    except OSError:
        pass
    os.close(fd)
    return filler


def codes(flow):
    """The distinct (stage, code) pairs of the 4xx answers the flow met."""
    out = set()
    for v in flow.tempfails.values():
        for stage, reply, err in (x for x in v if isinstance(x, tuple)):
            out.add((stage, reply[0] if reply else None))
    return out


def wait_text(reader, regex, timeout=20, start=0):
    """Waits until regex matches reader()[start:]; the match or None."""
    return sifttest._wait_text(reader, regex, timeout, start)


class DelayProxy:
    """A TCP proxy on 127.0.0.1 to a local port that can delay what the
    server sends back (set_delay(seconds)) or trickle it a byte at a time
    (set_drip(seconds)): a slow dependency (clamd, Redis) without touching
    it; or cut the link after the client sent some bytes (set_cut(n)): a
    connection lost in the middle of a command. Stopped by stop()."""

    def __init__(self, target_port):
        import socket
        self.target = target_port
        self.delay = 0.0
        self.drip = 0.0
        self.cut = None  # client bytes still let through; None: no limit
        self.sent = 0  # client bytes passed to the server, in all
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.conns = []

    def set_delay(self, seconds):
        self.delay = seconds

    def set_drip(self, seconds):
        """Send what the server sends back one byte every `seconds`."""
        self.drip = seconds

    def set_cut(self, nbytes):
        """Let the next nbytes the clients send through (counted over all
        connections), then close every connection, the first byte past it
        not sent, and close new ones at once: the link is down until
        set_cut(None)."""
        with self.lock:
            self.cut = nbytes

    def _take(self, data):
        """The part of what a client sent that goes through."""
        with self.lock:
            if self.cut is not None:
                data = data[:self.cut]
                self.cut -= len(data)
            self.sent += len(data)
            return data

    def _down(self):
        with self.lock:
            return self.cut == 0

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        import socket
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self._down():
                c.close()
                continue
            try:
                u = socket.create_connection(('127.0.0.1', self.target), timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            self.conns += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, True), daemon=True).start()

    def _pipe(self, src, dst, back):
        import socket
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not back:
                    data = self._take(data)
                    if data:
                        dst.sendall(data)
                    if self._down():
                        break
                    continue
                if back and self.delay:
                    time.sleep(self.delay)
                if back and self.drip:
                    for i in range(len(data)):
                        dst.sendall(data[i:i + 1])
                        time.sleep(self.drip)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
