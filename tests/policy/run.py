#!/usr/bin/python3
"""tests/policy/run.py - end-to-end tests of policyd.

Starts build/policyd/policyd in the foreground (-f) with a temporary
configuration listening on a free 127.0.0.1 port and a unix socket, and:

  * runs every tests/policy/cases/NAME.in against NAME.ref: the .in file
    holds one or more requests separated by blank lines, sent one at a time
    on one persistent connection; the .ref file holds the exact reply lines
    (one "action=..." per request). An optional NAME.conf adds settings to
    the daemon's configuration for that case (a daemon is started per
    distinct .conf; "@DATA@" in it is replaced by the cases directory,
    which also holds the map files the cases use);
  * a persistent connection with many requests, on TCP and on the unix
    socket, and 50 concurrent connections;
  * 20,000 long recipients in one transaction: at most 256 KB kept;
  * a client sending garbage and one sending a 1 MB line are disconnected
    without a reply while a well-behaved client keeps getting answers;
  * request and idle timeouts, the connection limit;
  * clients sending requests without reading the replies hold no worker
    and are closed;
  * SIGHUP reload: a changed configuration changes answers for new
    connections while an old connection keeps its generation; a broken
    configuration keeps the old one;
  * policyd -t with a bad configuration exits 1 and names file:line; -n/-p;
  * SIGTERM: the daemon finishes and exits 0.

Environment: SIFT_SRCDIR, SIFT_BUILDDIR (default: the source tree and its
build/). Only talks to 127.0.0.1 and stops exactly the processes it started
(by PID). Prints "N passed, N failed" and exits non-zero on failure.
"""

import glob
import os
import signal
import socket
import subprocess
import sys
import threading
import time

SRCDIR = os.environ.get("SIFT_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILDDIR = os.environ.get("SIFT_BUILDDIR") or os.path.join(SRCDIR, "build")
POLICYD = os.path.join(BUILDDIR, "policyd", "policyd")
PLUGINDIR = os.path.join(BUILDDIR, "plugins")
CASEDIR = os.path.join(SRCDIR, "tests", "policy", "cases")
DATADIR = CASEDIR  # map files of the cases live next to them
sys.path.insert(0, os.path.join(SRCDIR, "tests", "lib"))
import sifttest  # noqa: E402
from sifttest import check, checks, daemon_user, daemon_writable, done, free_port  # noqa: E402

# The daemons' user owns TMP, so that policyd can remove its pid file and
# socket at stop after dropping its privileges.
TMP = daemon_writable(sifttest.scratch("sift-policy-"))
started = []  # Daemon objects, stopped at the end


REQ = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
       "client_address=192.0.2.10\nclient_name=mail.example.net\n"
       "reverse_client_name=mail.example.net\nhelo_name=mail.example.net\n"
       "sender=alice@example.net\nrecipient=bob@example.org\nrecipient_count=0\n"
       "queue_id=\ninstance=1a2b.65f0c1d2.3e4f5.0\nsize=0\nsasl_username=\n"
       "policy_context=\n\n")


class Daemon:
    count = 0

    def __init__(self, extra="", name=None):
        Daemon.count += 1
        self.name = name or "d%d" % Daemon.count
        self.port = free_port()
        self.sock = os.path.join(TMP, self.name + ".sock")
        self.conf = os.path.join(TMP, self.name + ".conf")
        self.log = os.path.join(TMP, self.name + ".log")
        self.pidfile = os.path.join(TMP, self.name + ".pid")
        self.write_conf(extra)
        self.proc = None

    def write_conf(self, extra):
        with open(self.conf, "w") as f:
            f.write("policyd_listen = inet:127.0.0.1:%d, unix:%s\n" % (self.port, self.sock))
            f.write("policyd_pid_file = %s\n" % self.pidfile)
            f.write("policyd_workers = 4\n")
            f.write("policyd_user = %s\n" % daemon_user())
            f.write("plugin_directory = %s\n" % PLUGINDIR)
            f.write(extra.replace("@DATA@", DATADIR))
            if extra and not extra.endswith("\n"):
                f.write("\n")

    def start(self, nofile=None, env=None):
        self.logf = open(self.log, "w")
        pre = None
        if nofile:
            import resource

            def pre():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen([POLICYD, "-f", "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT, preexec_fn=pre, env=env)
        started.append(self)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                # the socket file exists from bind(), before listen()
                u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    u.connect(self.sock)
                finally:
                    u.close()
                return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.logtext():
                return True
            time.sleep(0.05)
        return False

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout=15):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None

    def connect(self, unix=False, timeout=10):
        if unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.sock)
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return Client(s)


class Client:
    def __init__(self, s):
        self.s = s
        self.buf = b""

    def request(self, text):
        """Sends one request (text ends with an empty line); returns the
        reply lines (without the final empty line), or None on EOF."""
        self.s.sendall(text.encode() if isinstance(text, str) else text)
        return self.reply()

    def reply(self):
        while b"\n\n" not in self.buf:
            try:
                d = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not d:
                return None
            self.buf += d
        r, self.buf = self.buf.split(b"\n\n", 1)
        return r.decode(errors="replace").split("\n")

    def closed_by_peer(self, timeout=5):
        """True if the server closes the connection without sending data."""
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
            return d == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def split_requests(text):
    """Splits a .in file into requests: blank-line separated blocks."""
    reqs, cur = [], []
    for line in text.split("\n"):
        if line.strip() == "":
            if cur:
                reqs.append("\n".join(cur) + "\n\n")
                cur = []
        elif not line.startswith("#"):
            cur.append(line)
    if cur:
        reqs.append("\n".join(cur) + "\n\n")
    return reqs


# ---------------------------------------------------------------------------

def test_cases():
    ins = sorted(glob.glob(os.path.join(CASEDIR, "*.in")))
    check(len(ins) > 0, "case files present")
    daemons = {}
    for path in ins:
        name = os.path.basename(path)[:-3]
        conf = path[:-3] + ".conf"
        extra = open(conf).read() if os.path.exists(conf) else ""
        if extra not in daemons:
            d = Daemon(extra, name="case-" + name)
            ok = d.start()
            check(ok, "daemon for case %s starts" % name, d.logtext() if not ok else "")
            daemons[extra] = d if ok else None
        d = daemons[extra]
        if not d:
            continue
        want = [l for l in open(path[:-3] + ".ref").read().split("\n") if l != ""]
        got = []
        for unix in (False, True):
            c = d.connect(unix=unix)
            got = []
            for req in split_requests(open(path).read()):
                r = c.request(req)
                got.extend(r if r is not None else ["<closed>"])
            c.close()
            check(got == want, "case %s (%s)" % (name, "unix" if unix else "inet"),
                  "got %r want %r" % (got, want))
    for d in daemons.values():
        if d:
            rc = d.stop()
            check(rc == 0, "case daemon %s exits 0 on SIGTERM" % d.name, "rc %r" % rc)


def test_persistent(d):
    for unix in (False, True):
        c = d.connect(unix=unix)
        ok = True
        for i in range(200):
            r = c.request(REQ.replace("instance=1a2b", "instance=%x" % (i // 3)))
            if r != ["action=DUNNO"]:
                ok = False
                break
        c.close()
        check(ok, "200 requests on one %s connection" % ("unix" if unix else "inet"))
    # CRLF requests and a request split into tiny pieces
    c = d.connect()
    check(c.request(REQ.replace("\n", "\r\n")) == ["action=DUNNO"], "CRLF request")
    data = REQ.encode()
    for i in range(0, len(data), 7):
        c.s.sendall(data[i:i + 7])
        time.sleep(0.001)
    check(c.reply() == ["action=DUNNO"], "request sent in small pieces")
    # two requests in one write (pipelined): two replies, in order
    c.s.sendall((REQ + REQ).encode())
    check(c.reply() == ["action=DUNNO"] and c.reply() == ["action=DUNNO"],
          "two pipelined requests get two replies")
    c.close()


def test_recipient_cap():
    """One transaction's instance sent for ever, each request with a new
    recipient (what no Postfix does: smtpd_recipient_limit): the message
    keeps at most 10,000 recipients and 256 KB of them, says so once, and
    memory stops growing. Its own daemon: under AddressSanitizer without the
    quarantine of freed memory, which alone grows RSS by every request's
    garbage."""
    d = Daemon("", name="rcptcap")
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    if not check(d.start(env=env), "policyd for the recipient cap starts", d.logtext()):
        return
    c = d.connect()
    req = REQ.replace("instance=1a2b.65f0c1d2.3e4f5.0", "instance=cap.1")
    # From 1,000 requests on (the cap is reached after some 320), memory
    # stays flat; 10,000 recipients of 820 bytes, the count limit alone,
    # would add 8 MB. AddressSanitizer's allocator drifts by itself (some
    # 165 bytes a request, spread over the worker threads): there the
    # second half is compared, as a check for growth without bound.
    first = 10000 if sifttest.asan_built(POLICYD) else 1000
    ok = True
    rss = {}
    for i in range(20000):
        r = c.request(req.replace("recipient=bob@example.org", "recipient=%s%d@example.org" % ("r" * 800, i)))
        ok = ok and r == ["action=DUNNO"]
        if i + 1 in (first, 20000):
            rss[i + 1] = sifttest.proc_rss(d.proc.pid)[0]
    c.close()
    warned = d.logtext().count("more than 10000 recipients (or 256 KB of them) in one message")
    check(ok and warned == 1, "20,000 long recipients in one transaction: answered, the cap logged once",
          (ok, warned))
    check(rss[20000] - rss[first] < 4096, "past 256 KB of recipients the memory does not grow",
          "RSS %d KiB after %d, %d KiB after 20,000" % (rss[first], first, rss[20000]))
    d.stop()


def test_concurrent(d, n=50, per=20):
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        try:
            c = d.connect(unix=(i % 2 == 1))
            barrier.wait(10)
            ok = 0
            for _ in range(per):
                if c.request(REQ) == ["action=DUNNO"]:
                    ok += 1
            c.close()
            results[i] = ok
        except Exception as e:  # noqa
            results[i] = repr(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check(all(r == per for r in results), "%d concurrent connections x %d requests" % (n, per),
          repr([r for r in results if r != per][:5]))


def test_garbage(d):
    good = d.connect()
    check(good.request(REQ) == ["action=DUNNO"], "good client before garbage")

    g = d.connect()
    g.s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    check(g.closed_by_peer(), "garbage client disconnected without reply")
    g.close()
    check(d.wait_log("protocol error: line without '='"), "garbage logged as protocol error")
    log = d.logtext()
    check("policy client inet:127.0.0.1:" in log, "error names the client connection")
    check(good.request(REQ) == ["action=DUNNO"], "good client after garbage")

    n = d.connect()
    n.s.sendall(b"request=smtpd_access_policy\nsender=a\x00b\n\n")
    check(n.closed_by_peer(), "NUL byte: disconnected without reply")
    n.close()

    e = d.connect(unix=True)
    e.s.sendall(b"\n")
    check(e.closed_by_peer(), "empty request: disconnected without reply")
    e.close()

    big = d.connect()
    sent = [0]

    def blast():
        chunk = b"x" * 65536
        try:
            big.s.sendall(b"sender=")
            for _ in range(16):
                big.s.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            pass

    t = threading.Thread(target=blast)
    t.start()
    check(big.closed_by_peer(10), "1 MB line: disconnected without reply")
    t.join(10)
    check(d.wait_log("line too long"), "1 MB line logged")
    big.close()
    check(good.request(REQ) == ["action=DUNNO"], "good client after the 1 MB line")
    good.close()


def test_not_reading():
    """Clients that send requests and never read the replies hold no
    worker: with more of them than workers, a normal client is answered at
    once, and each of them is closed once its reply has waited 10 s."""
    d = Daemon("policyd_workers = 2\n", name="nr")
    if not check(d.start(), "not-reading daemon starts", d.logtext()):
        return
    blob = b"x=1\n\n" * 200
    hogs = []
    # On the unix socket: its buffers fill after a few hundred replies (a
    # TCP socket takes some 100,000 first, which only makes this slower).
    for _ in range(4):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.connect(d.sock)
        s.setblocking(False)
        hogs.append(s)
    # Send until policyd stops taking requests from all four (its replies
    # fill the sockets): then every reply it makes for them waits.
    last = [time.time()] * len(hogs)
    deadline = time.time() + 60
    while time.time() < deadline and min(time.time() - t for t in last) < 2:
        for i, s in enumerate(hogs):
            try:
                if s.send(blob) > 0:
                    last[i] = time.time()
            except BlockingIOError:
                pass
            except OSError:
                last[i] = 0
        time.sleep(0.005)
    t_full = time.time()
    worst = 0.0
    ok = True
    for _ in range(3):
        c = d.connect(timeout=30)
        t0 = time.time()
        ok = c.request(REQ) == ["action=DUNNO"] and ok
        worst = max(worst, time.time() - t0)
        c.close()
    check(ok and worst < 2, "a client is answered at once while 4 clients do not read (2 workers)",
          "slowest answer %.2fs" % worst)
    # Reading them now would let their replies go out: policyd alone must
    # close them, 10 s after their reply stopped going out.
    deadline = time.time() + 20
    while time.time() < deadline and d.logtext().count("not reading its replies") < len(hogs):
        time.sleep(0.2)
    el = time.time() - t_full
    closed = 0
    for s in hogs:
        try:
            s.send(b"x=1\n\n")
        except (BrokenPipeError, ConnectionResetError):
            closed += 1
        except BlockingIOError:
            pass
        s.close()
    check(closed == len(hogs) and d.logtext().count("not reading its replies") == len(hogs),
          "clients not reading their replies are closed and logged",
          "%d of %d closed after %.1fs" % (closed, len(hogs), el))
    c = d.connect()
    check(c.request(REQ) == ["action=DUNNO"], "served after the clients not reading are gone")
    c.close()
    check(d.stop() == 0, "not-reading daemon exits 0")


def test_gone():
    """A client that closes its unix connection while its request waits for
    a worker gets the request dropped, not run (logged): one worker, held
    by a request that stalls in the test plugin for 1.5 s."""
    pdir = sifttest.scratch("sift-policy-plugins-")  # root's, as policyd wants it
    os.chmod(pdir, 0o755)
    os.symlink(os.path.join(BUILDDIR, "tests", "testplug.so"), os.path.join(pdir, "testplug.so"))
    stall = os.path.join(TMP, "gone.stall")
    d = Daemon("policyd_workers = 1\ninbound_plugins = testplug\ntestplug_phase = policy\n"
               "testplug_verdict = reject\ntestplug_stall_phase = policy\ntestplug_stall_file = %s\n"
               "testplug_stall_time = 1500ms\n" % stall, name="gone")
    with open(d.conf) as f:
        text = f.read().replace("plugin_directory = %s\n" % PLUGINDIR, "plugin_directory = %s\n" % pdir)
    with open(d.conf, "w") as f:
        f.write(text)
    if not check(d.start(), "gone: policyd starts", d.logtext()):
        return
    try:
        open(stall, "w").close()
        a = d.connect(unix=True)
        a.s.sendall(REQ.replace("sender=alice@", "sender=held@").encode())
        check(d.wait_log("stalled at phase"), "gone: the one worker is held", d.logtext())
        b = d.connect(unix=True)
        b.s.sendall(REQ.replace("sender=alice@", "sender=gone@").encode())
        time.sleep(0.2)
        b.close()
        got = a.reply()
        check(got and got[0].startswith("action=REJECT"), "gone: the held request is answered", got)
        check(d.wait_log("gone before its request could run"), "gone: the closed client's request is dropped",
              d.logtext()[-1500:])
        c = d.connect(unix=True)
        got = c.request(REQ.replace("sender=alice@", "sender=next@"))
        check(got and got[0].startswith("action=REJECT"), "gone: the next client is answered", got)
        # the request's log line may follow its answer
        d.wait_log("from=<next@example.net>")
        text = d.logtext()
        check("from=<held@example.net>" in text and "from=<next@example.net>" in text and
              "from=<gone@example.net>" not in text, "gone: only the requests of clients still there ran",
              text[-1500:])
        a.close()
        c.close()
    finally:
        d.stop()


def test_limits():
    d = Daemon("policyd_request_timeout = 1s\npolicyd_idle_timeout = 2s\n"
               "policyd_max_connections = 3\n", name="limits")
    if not check(d.start(), "limits daemon starts", ""):
        return
    # partial request: closed after the request timeout, without a reply
    p = d.connect()
    p.s.sendall(b"request=smtpd_access_policy\nsender=")
    t0 = time.time()
    closed = p.closed_by_peer(6)
    check(closed and time.time() - t0 < 5, "partial request closed by request timeout")
    p.close()
    check(d.wait_log("request not complete"), "request timeout logged")
    # idle connection: closed after the idle timeout
    i = d.connect()
    check(i.request(REQ) == ["action=DUNNO"], "request before idling")
    t0 = time.time()
    closed = i.closed_by_peer(8)
    el = time.time() - t0
    check(closed and 1.5 < el < 6, "idle connection closed by idle timeout", "after %.1fs" % el)
    i.close()
    # connection limit
    cs = [d.connect() for _ in range(3)]
    for c in cs:
        c.request(REQ)
    extra = d.connect()
    check(extra.closed_by_peer(3), "connection over policyd_max_connections closed")
    extra.close()
    check(d.wait_log("too many connections"), "connection limit logged")
    check(all(c.request(REQ) == ["action=DUNNO"] for c in cs), "connections under the limit served")
    for c in cs:
        c.close()
    check(d.stop() == 0, "limits daemon exits 0")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_emfile():
    """Out of file descriptors: new connections are closed, the event loop
    does not spin, and service resumes once descriptors are free."""
    d = Daemon("policyd_workers = 2\n", name="emfile")
    if not check(d.start(nofile=40), "emfile daemon starts", d.logtext()):
        return
    cs = []
    for _ in range(60):
        try:
            cs.append(d.connect(timeout=3))
        except OSError:
            break
    served = 0
    for c in cs:
        if c.request(REQ) == ["action=DUNNO"]:
            served += 1
    check(0 < served < len(cs), "some connections refused at the descriptor limit",
          "%d of %d served" % (served, len(cs)))
    check(d.wait_log("Too many open files"), "descriptor shortage logged")
    c0 = cpu_seconds(d.proc.pid)
    time.sleep(1.0)
    c1 = cpu_seconds(d.proc.pid)
    check(c1 - c0 < 0.5, "no busy loop at the descriptor limit", "%.2fs CPU in 1s" % (c1 - c0))
    for c in cs:
        c.close()
    time.sleep(0.5)
    c = d.connect()
    check(c.request(REQ) == ["action=DUNNO"], "served again after descriptors are freed")
    c.close()
    check(d.stop() == 0, "emfile daemon exits 0")


def test_reload(d, access):
    """With the access plugin: a sender rejected by the first configuration
    is accepted after a reload, on new connections only."""
    if access:
        rule = "inbound_plugins = access\naccess_sender_map = inline:{ { reload@example.net = REJECT before reload } }\n"
        d2 = Daemon(rule, name="reload")
    else:
        d2 = Daemon("", name="reload")
    if not check(d2.start(), "reload daemon starts", d2.logtext()):
        return
    req = REQ.replace("sender=alice@example.net", "sender=reload@example.net")
    old = d2.connect()
    first = old.request(req)
    if access:
        check(first == ["action=554 5.7.1 before reload"] or
              (first and first[0].startswith("action=REJECT")) or
              (first and first[0].startswith("action=5")),
              "reject before reload", repr(first))
        d2.write_conf("inbound_plugins = access\naccess_sender_map = inline:{ reload@example.net=OK }\n")
    else:
        check(first == ["action=DUNNO"], "request before reload")
        d2.write_conf("policyd_request_deadline = 5s\n")
    d2.signal(signal.SIGHUP)
    check(d2.wait_log("reloaded the configuration"), "SIGHUP reload logged")
    new = d2.connect()
    got = new.request(req)
    if access:
        check(got == ["action=OK"], "new connection uses the new configuration", repr(got))
        check(old.request(req) == first, "old connection keeps its generation")
    else:
        check(got == ["action=DUNNO"], "new connection after reload")
        check(old.request(req) == ["action=DUNNO"], "old connection after reload")
    # a broken configuration: the reload fails, the old one stays
    with open(d2.conf, "a") as f:
        f.write("inbound_plugins = no_such_plugin\n")
    d2.signal(signal.SIGHUP)
    check(d2.wait_log("reload failed"), "failed reload logged")
    third = d2.connect()
    check(third.request(req) == got, "failed reload keeps the previous generation")
    for c in (old, new, third):
        c.close()
    check(d2.stop() == 0, "reload daemon exits 0")


def test_check_config():
    bad = os.path.join(TMP, "bad.conf")
    with open(bad, "w") as f:
        f.write("# comment\npolicyd_workers = 4\nthis line is not a setting\n")
    r = subprocess.run([POLICYD, "-t", "-c", bad], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1, "policyd -t with a bad config exits 1", "rc %d" % r.returncode)
    check(bad + ":3" in r.stderr, "policyd -t names file:line", r.stderr.strip())

    bad2 = os.path.join(TMP, "bad2.conf")
    with open(bad2, "w") as f:
        f.write("plugin_directory = %s\npolicyd_workers = lots\n" % PLUGINDIR)
    r = subprocess.run([POLICYD, "-t", "-c", bad2], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "policyd_workers" in r.stderr,
          "policyd -t with a bad value exits 1 and names the parameter", r.stderr.strip())

    good = os.path.join(TMP, "good.conf")
    with open(good, "w") as f:
        f.write("plugin_directory = %s\npolicyd_workers = 3\npolicyd_user = %s\n" % (PLUGINDIR, daemon_user()))
    r = subprocess.run([POLICYD, "-t", "-c", good], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "policyd -t with a good config exits 0", r.stderr.strip())
    r = subprocess.run([POLICYD, "-n", "-c", good, "-o", "policyd_idle_timeout=900s"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "policyd_workers = 3" in r.stdout
          and "policyd_idle_timeout = 900s" in r.stdout
          and "policyd_max_connections" not in r.stdout, "policyd -n", r.stdout + r.stderr)
    r = subprocess.run([POLICYD, "-p", "-c", good], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "policyd_max_connections = 1000" in r.stdout
          and "policyd_listen = inet:127.0.0.1:8892" in r.stdout
          and "plugin_directory = " in r.stdout, "policyd -p", r.stdout + r.stderr)
    r = subprocess.run([POLICYD, "-h"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "usage" in r.stdout, "policyd -h")


def main():
    if not os.access(POLICYD, os.X_OK):
        check(False, "policyd binary at " + POLICYD)
        return done()
    # The cases with a .conf need the plugins built with policyd (access,
    # senderlogin); a build without them runs the others only. A plugin
    # that is built but that policyd refuses is a failure, not a skip.
    access = os.path.exists(os.path.join(PLUGINDIR, "access.so"))
    if access:
        r = subprocess.run([POLICYD, "-t", "-o", "plugin_directory=" + PLUGINDIR, "-o", "policyd_user=" + daemon_user(),
                            "-o", "inbound_plugins=access", "-c", "/dev/null"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, "policyd -t takes the access plugin", r.stdout + r.stderr)
    else:
        print("access plugin not built: the cases with a configuration are skipped")
    try:
        test_check_config()
        d = Daemon("", name="main")
        if check(d.start(), "policyd starts", d.logtext()):
            test_persistent(d)
            test_concurrent(d)
            test_garbage(d)
            pid = d.proc.pid
            check(open(d.pidfile).read().strip() == str(pid), "pid file written")
            rc = d.stop()
            check(rc == 0, "policyd exits 0 on SIGTERM", "rc %r" % rc)
            check("stopped" in d.logtext(), "stop logged")
            check(not os.path.exists(d.pidfile), "pid file removed")
            check(not os.path.exists(d.sock), "unix socket removed")
        test_recipient_cap()
        test_limits()
        test_not_reading()
        test_gone()
        test_emfile()
        test_reload(d, access)
        if access:
            test_cases()
        else:
            # the no-plugin cases still run
            global CASEDIR
            test_cases_noplugin()
        for dd in started:
            if dd.proc and dd.proc.poll() is not None:
                text = dd.logtext()
                check("Sanitizer" not in text and "runtime error" not in text,
                      "no sanitizer reports from daemon %s" % dd.name)
    finally:
        for dd in started:
            if dd.proc and dd.proc.poll() is None:
                os.kill(dd.proc.pid, signal.SIGKILL)
                dd.proc.wait()
        if checks.failed:
            print("logs kept in " + TMP)
        else:
            subprocess.run(["rm", "-rf", TMP])
    return done()


def test_cases_noplugin():
    """Without the access plugin only the cases without a .conf run."""
    global CASEDIR
    keep = CASEDIR
    tmpcases = os.path.join(TMP, "cases")
    os.makedirs(tmpcases, exist_ok=True)
    for p in glob.glob(os.path.join(keep, "*.in")):
        if not os.path.exists(p[:-3] + ".conf"):
            for ext in (".in", ".ref"):
                with open(p[:-3] + ext) as src, \
                        open(os.path.join(tmpcases, os.path.basename(p[:-3]) + ext), "w") as dst:
                    dst.write(src.read())
    CASEDIR = tmpcases
    test_cases()
    CASEDIR = keep


if __name__ == "__main__":
    sys.exit(main())
