"""Helpers for Sift's integration tests and benchmarks: free ports, daemons
started and stopped by PID, and private Postfix instances on 127.0.0.1.

Runs under Debian's /usr/bin/python3 with the standard library only (tests
that need DNS bring tests/lib/dnsserver.py). Must run as root: Postfix's
master starts as root and drops to mail_owner (postfix) itself.

A private Postfix instance lives entirely under one temporary directory:

    ROOT/etc      config_directory (main.cf and master.cf written from scratch)
    ROOT/spool    queue_directory (created and owned by postfix via
                  `postfix -c ROOT/etc check`/`start`)
    ROOT/data     data_directory
    ROOT/mail     virtual_mailbox_base: ROOT/mail/all/ is the catch-all Maildir
    ROOT/maillog  maillog_file, written by postlogd (service `postlog`)

Nothing in /etc/postfix is read except meta_directory files Postfix needs
(postfix-files, dynamicmaps.cf) and nothing there is changed: `postfix -c DIR`
is accepted for root without `alternate_config_directories` because the
postfix command is not set-gid; the set-gid postqueue is run with its real
gid set to postdrop so that it, too, trusts MAIL_CONFIG (see Postfix.queue()).

Nothing here talks to any address other than 127.0.0.1: the instance has no
DNS (smtp_dns_support_level = disabled), mail for other domains goes to the
error(8) transport, and only test domains are delivered (virtual(8)).

Ownership: every process is stopped by the PID this module recorded; Postfix
is stopped with `postfix -c DIR stop`, then the master PID from
ROOT/spool/pid/master.pid (and only processes whose environment names this
instance's MAIL_CONFIG) are killed if they linger.

For test scripts (see each docstring):

    check(cond, what, detail)   counts a check, prints "ok   ..." / "FAIL ...";
    check_eq(got, want, what)   done() prints "N passed, N failed" and returns
    done()                      the exit status (1 on a failure or no check)
    program(name)               BUILD path of filterd, policyd or siftctl
    start_daemon(daemon, tmp, settings, ...)
                                filterd/policyd -f on a configuration written
                                from a dict, listening on a free port (or a
                                unix socket), as daemon_user(); returns the
                                started Proc
    daemon_user()               the unprivileged user daemons run as when the
                                tests run as root ($SIFT_TEST_DAEMON_USER,
                                default nobody)
    stop_all(things)            stops Procs and Postfix instances, last first
    siftctl_test(conf, message, args, opts)
                                `siftctl test --json` on a message -> dict
    PolicyClient(port)          policy-delegation client: ask(**attrs) -> action
"""

import atexit
import email
import email.policy
import json
import os
import pwd
import grp
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

__all__ = ['free_port', 'wait_port', 'wait_unix', 'Proc', 'Postfix', 'SendResult',
           'Delivered', 'srcdir', 'builddir', 'daemon_is_real', 'proc_rss',
           'pids_with_env', 'TEST_DOMAINS', 'Checks', 'checks', 'check', 'check_eq', 'done',
           'program', 'plugin_directory', 'write_conf', 'start_daemon', 'stop_all',
           'daemon_user', 'daemon_notifies', 'daemon_readable', 'daemon_writable', 'proc_uids', 'proc_gids',
           'siftctl_test', 'PolicyClient']

TEST_DOMAINS = ('sift.test', 'example.test', 'example.net.test')

# Sanitizer reports (ASan, LSan, UBSan) found in the logs of stopped Procs.
# A daemon's leak report appears when it exits, after the test's checks, and
# goes to its log, which no check reads: the test script's exit status
# turns into a failure instead (see _sanitizer_exit).
SANITIZER_RE = re.compile(r'ERROR: (?:LeakSanitizer|AddressSanitizer)|SUMMARY: UndefinedBehaviorSanitizer|'
                          r': runtime error: ')
_sanitizer_reports = []


def _sanitizer_exit():
    if not _sanitizer_reports:
        return
    print('FAIL sanitizer reports from %d stopped process(es): %s' % (
        len(_sanitizer_reports), ', '.join(_sanitizer_reports)), flush=True)
    print('0 passed, %d failed' % len(_sanitizer_reports), flush=True)
    os._exit(1)


atexit.register(_sanitizer_exit)

_handed_out = set()


def srcdir():
    """Source tree root: $SIFT_SRCDIR or two levels above this file."""
    d = os.environ.get('SIFT_SRCDIR')
    if d:
        return os.path.abspath(d)
    return os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def builddir():
    """Build tree: $SIFT_BUILDDIR or SRCDIR/build."""
    d = os.environ.get('SIFT_BUILDDIR')
    if d:
        return os.path.abspath(d)
    return os.path.join(srcdir(), 'build')


def asan_built(path):
    """True if the program at path is built with AddressSanitizer (its
    allocator, not the system's, serves it). ASAN_OPTIONS is set for
    every build's tests, so it says nothing."""
    with open(path, 'rb') as f:
        return b'__asan_init' in f.read()


def scratch(prefix='sift-'):
    """A new temporary directory for a test's files, removed when the test
    exits unless $SIFT_KEEP_TMP is set (to read its logs afterwards)."""
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get('SIFT_KEEP_TMP'):
        atexit.register(shutil.rmtree, d, True)
    return d


def free_port():
    """A TCP port on 127.0.0.1 that is free now (and not handed out before by
    this process)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError('no free port')


def _tcp_accepts(port, host='127.0.0.1'):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _unix_accepts(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def tcp_listening(port, host='127.0.0.1'):
    """True if a socket listens on host:port (from /proc/net/tcp: no probe
    connection, so daemons do not log 'lost connection')."""
    want = '%s:%04X' % (''.join('%02X' % int(b) for b in reversed(host.split('.'))), port)
    try:
        with open('/proc/net/tcp') as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == '0A' and parts[1] in (want, '00000000:%04X' % port):
                    return True
    except OSError:
        return _tcp_accepts(port, host)
    return False


def stuck_unix_listener(path):
    """A unix stream socket at path that listens and never accepts, its
    backlog full, so that the next connect() waits. Returns the sockets
    to close (the listener first)."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(0)
    return [srv] + fill_backlog(path)


def fill_backlog(path, most=64):
    """Connects to the unix socket at path, without being accepted, until
    its listen backlog is full (a connect() would wait). Returns the
    connected sockets, to close."""
    held = []
    for _ in range(most):
        c = socket.socket(socket.AF_UNIX)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        held.append(c)
    return held


def unix_listening(path):
    """True if a stream socket listens on path (from /proc/net/unix)."""
    try:
        with open('/proc/net/unix') as f:
            next(f)
            for line in f:
                parts = line.split(None, 7)
                # flags 00010000 = __SO_ACCEPTCON (listening)
                if len(parts) == 8 and parts[7].strip() == path and \
                        int(parts[3], 16) & 0x10000:
                    return True
    except OSError:
        return _unix_accepts(path)
    return False


def wait_port(port, timeout=10.0, alive=None):
    """Wait until something listens on 127.0.0.1:port. `alive` is an optional
    callable; when it returns False the wait ends early with False."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if tcp_listening(port):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.05)
    return False


def wait_unix(path, timeout=10.0, alive=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path) and unix_listening(path):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.05)
    return False


def proc_rss(pid):
    """(VmRSS, VmHWM) of a process in KiB from /proc/PID/status, or (None, None)."""
    rss = hwm = None
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    rss = int(line.split()[1])
                elif line.startswith('VmHWM:'):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open('/proc/%d/stat' % pid) as f:
            st = f.read()
        return st[st.rindex(')') + 2] != 'Z'
    except (OSError, ValueError):
        return False


def _proc_comm(pid):
    """The command name of process pid ('' when it is gone)."""
    try:
        with open('/proc/%d/comm' % pid) as f:
            return f.read().strip()
    except OSError:
        return ''


def pids_with_env(name, value):
    """PIDs of processes whose environment has name=value exactly."""
    want = ('%s=%s' % (name, value)).encode()
    out = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/environ' % d, 'rb') as f:
                env = f.read().split(b'\0')
        except OSError:
            continue
        if want in env:
            out.append(int(d))
    return out


def daemon_is_real(path):
    """True if `path` is an executable that behaves like a Sift daemon: it
    prints its settings with `-p` (a stub that exits silently is not real)."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return False
    with tempfile.NamedTemporaryFile('w', suffix='.conf') as cf:
        cf.write('# empty\n')
        cf.flush()
        try:
            r = subprocess.run([path, '-c', cf.name, '-p'], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return b'_listen' in r.stdout


class ProcError(RuntimeError):
    pass


class Proc:
    """One child process: started with stdout+stderr appended to `log`,
    optionally waited for until it accepts on a TCP port or unix socket,
    stopped by its PID (SIGTERM, then SIGKILL after `stop_timeout`).

        with Proc([exe, '-f', '-c', conf], log='/tmp/x.log', port=8891) as p:
            ...
    """

    def __init__(self, argv, log, port=None, unix=None, env=None, cwd=None,
                 start_timeout=15.0, stop_timeout=10.0, umask=None, name=None, notify=False):
        self.argv = [str(a) for a in argv]
        self.notify = notify
        self.notify_sock = None
        self.notifications = []
        self.log_path = log
        self.port = port
        self.unix = unix
        self.env = env
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.umask = umask
        self.name = name or os.path.basename(self.argv[0])
        self.popen = None
        self.returncode = None

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def start(self):
        if self.popen is not None:
            raise ProcError('%s already started' % self.name)
        logf = open(self.log_path, 'ab', buffering=0)
        self.log_start = logf.tell()
        env = dict(os.environ)
        env.pop('NOTIFY_SOCKET', None)
        if self.env:
            env.update(self.env)
        if self.notify:
            # systemd's readiness protocol: an abstract datagram socket,
            # reachable whatever user the child becomes.
            self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            name = 'sift-notify-%d-%d-%d' % (os.getpid(), id(self), time.monotonic_ns())
            self.notify_sock.bind('\0' + name)
            env['NOTIFY_SOCKET'] = '@' + name
        umask = self.umask

        def pre():
            if umask is not None:
                os.umask(umask)
        try:
            # A new session: Ctrl-C in a terminal reaches only the Python
            # driver, which then stops its children in order.
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                          stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                          start_new_session=True, preexec_fn=pre)
        finally:
            logf.close()
        ok = self.wait_notify('READY=1', self.start_timeout) if self.notify else True
        if ok and self.port is not None:
            ok = wait_port(self.port, self.start_timeout, self.alive)
        elif ok and self.unix is not None:
            ok = wait_unix(self.unix, self.start_timeout, self.alive)
        if not ok:
            rc = self.popen.poll()
            self.stop()
            what = 'exited with status %s' % rc if rc is not None else \
                'sent no READY=1 within %.0fs' % self.start_timeout if self.notify else \
                'did not accept on %s within %.0fs' % (
                    self.port if self.port is not None else self.unix, self.start_timeout)
            raise ProcError('%s %s; log %s:\n%s' % (self.name, what, self.log_path,
                                                     self.log_tail()))
        return self

    def wait_notify(self, state, timeout=10.0):
        """With notify=True: waits until the child sends a notification
        containing the line `state` (e.g. 'READY=1'); every message received
        is appended to .notifications (each a list of lines). False if the
        child dies or the time runs out."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.notify_sock.settimeout(min(left, 0.1))
            try:
                msg = self.notify_sock.recv(4096).decode('utf-8', 'replace').split('\n')
            except socket.timeout:
                if not self.alive():
                    return False
                continue
            self.notifications.append(msg)
            if state in msg:
                return True

    def stop(self):
        """SIGTERM to our PID, SIGKILL after stop_timeout. Returns exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait()
        self.returncode = self.popen.returncode
        if self.notify_sock is not None:
            self.notify_sock.close()
            self.notify_sock = None
        self.check_sanitizers()
        return self.returncode

    def check_sanitizers(self):
        """Looks for a sanitizer report in what this process wrote to its
        log; a report is printed and makes the test script exit 1."""
        if getattr(self, 'sanitizers_checked', False):
            return
        self.sanitizers_checked = True
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(getattr(self, 'log_start', 0))
                text = f.read().decode('utf-8', 'replace')
        except OSError:
            return
        m = SANITIZER_RE.search(text)
        if m:
            what = '%s (pid %d, log %s)' % (self.name, self.popen.pid, self.log_path)
            _sanitizer_reports.append(what)
            print('FAIL sanitizer report from %s:\n%s' % (what, text[max(0, m.start() - 200):][:6000]),
                  flush=True)

    def signal(self, sig):
        if self.alive():
            os.kill(self.popen.pid, sig)

    def rss(self):
        """(VmRSS, VmHWM) in KiB."""
        return proc_rss(self.popen.pid) if self.alive() else (None, None)

    def log(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def log_tail(self, n=30):
        return '\n'.join(self.log().splitlines()[-n:])

    def wait_log(self, regex, timeout=10.0, start=0):
        return _wait_text(self.log, regex, timeout, start)

    def __enter__(self):
        if self.popen is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def _wait_text(reader, regex, timeout, start=0):
    rx = re.compile(regex, re.M) if isinstance(regex, str) else regex
    end = time.monotonic() + timeout
    while True:
        text = reader()
        m = rx.search(text, start)
        if m:
            return m
        if time.monotonic() >= end:
            return None
        time.sleep(0.05)


class SendResult:
    """What happened to one message, stage by stage. Every reply is a
    (code, text) tuple; a stage that was not reached is None.

    greeting, ehlo, auth, mail: replies; rcpts: list of replies in RCPT order;
    data: the reply to the DATA command (354 normally); eom: the reply after
    the final dot. `stage` is where the transaction ended ('connect', 'ehlo',
    'auth', 'mail', 'rcpt', 'data', 'eom'; 'eom' with accepted=True means
    queued). `queue_id` is parsed from "250 2.0.0 Ok: queued as ID".
    `latency` is seconds from sending DATA to the reply after the dot.
    """

    def __init__(self):
        self.greeting = self.ehlo = self.auth = self.mail = self.data = self.eom = None
        self.rcpts = []
        self.stage = None
        self.accepted = False
        self.queue_id = None
        self.latency = None
        self.error = None

    @property
    def code(self):
        """The last reply code received."""
        r = self.last()
        return r[0] if r else None

    def last(self):
        for r in (self.eom, self.data):
            if r is not None:
                return r
        if self.rcpts:
            return self.rcpts[-1]
        for r in (self.mail, self.auth, self.ehlo, self.greeting):
            if r is not None:
                return r
        return None

    def rejected_at(self):
        """Stage of the first 4xx/5xx reply, or None."""
        for name in ('greeting', 'ehlo', 'auth', 'mail'):
            r = getattr(self, name)
            if r is not None and r[0] >= 400:
                return name
        if self.rcpts and all(r[0] >= 400 for r in self.rcpts):
            return 'rcpt'
        for name in ('data', 'eom'):
            r = getattr(self, name)
            if r is not None and r[0] >= 400:
                return name
        return None

    def __repr__(self):
        return ('SendResult(stage=%r, accepted=%r, queue_id=%r, mail=%r, rcpts=%r, data=%r, '
                'eom=%r%s)' % (self.stage, self.accepted, self.queue_id, self.mail, self.rcpts,
                               self.data, self.eom,
                               ', error=%r' % self.error if self.error else ''))


_QID_RX = re.compile(r'queued as ([0-9A-Za-z]+)')


def _reply(code, msg):
    if isinstance(msg, bytes):
        msg = msg.decode('utf-8', 'replace')
    return (code, msg)


def dot_stuff(data):
    """Message bytes as sent after DATA: CRLF line ends, leading dots doubled,
    ending in CRLF (the caller adds the final '.\\r\\n')."""
    q = re.sub(rb'(?:\r\n|\n|\r(?!\n))', b'\r\n', data)
    q = re.sub(rb'(?m)^\.', b'..', q)
    if not q.endswith(b'\r\n'):
        q += b'\r\n'
    return q


class _Closing:
    """Context manager support for classes with a close() method."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Session(_Closing):
    """One SMTP session (persistent across messages) built on smtplib, which
    reports each stage's reply instead of raising."""

    def __init__(self, port, host='127.0.0.1', helo='client.sift.test', timeout=60,
                 auth=None, starttls=False):
        self.res_connect = None
        self.smtp = smtplib.SMTP(timeout=timeout)
        code, msg = self.smtp.connect(host, port)
        self.greeting = _reply(code, msg)
        self.ehlo = None
        self.auth = None
        if code >= 400:
            return
        self.ehlo = _reply(*self.smtp.ehlo(helo))
        if self.ehlo[0] >= 400:
            self.ehlo = _reply(*self.smtp.helo(helo))
        if starttls:
            self.smtp.starttls()
            self.ehlo = _reply(*self.smtp.ehlo(helo))
        if auth is not None:
            user, password = auth
            try:
                self.auth = _reply(*self.smtp.login(user, password))
            except smtplib.SMTPAuthenticationError as e:
                self.auth = _reply(e.smtp_code, e.smtp_error)
            except smtplib.SMTPException as e:
                self.auth = (0, str(e))

    def send(self, mail_from, rcpts, data, mail_options=(), rcpt_options=()):
        r = SendResult()
        r.greeting, r.ehlo, r.auth = self.greeting, self.ehlo, self.auth
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        if isinstance(data, str):
            data = data.encode('utf-8')
        try:
            if self.greeting[0] >= 400:
                r.stage = 'connect'
                return r
            if self.ehlo is None or self.ehlo[0] >= 400:
                r.stage = 'ehlo'
                return r
            if self.auth is not None and self.auth[0] != 235:
                r.stage = 'auth'
                return r
            r.mail = _reply(*self.smtp.mail(mail_from, list(mail_options)))
            if r.mail[0] >= 400:
                r.stage = 'mail'
                self._rset()
                return r
            for rc in rcpts:
                r.rcpts.append(_reply(*self.smtp.rcpt(rc, list(rcpt_options))))
            if not any(c < 400 for c, _ in r.rcpts):
                r.stage = 'rcpt'
                self._rset()
                return r
            t0 = time.monotonic()
            self.smtp.putcmd('data')
            r.data = _reply(*self.smtp.getreply())
            if r.data[0] != 354:
                r.stage = 'data'
                self._rset()
                return r
            self.smtp.send(dot_stuff(data) + b'.\r\n')
            r.eom = _reply(*self.smtp.getreply())
            r.latency = time.monotonic() - t0
            r.stage = 'eom'
            if r.eom[0] == 250:
                r.accepted = True
                m = _QID_RX.search(r.eom[1])
                if m:
                    r.queue_id = m.group(1)
            else:
                # Postfix keeps the transaction after some end-of-data
                # refusals (a later MAIL gets "503 nested MAIL"): reset.
                self._rset()
        except (smtplib.SMTPException, OSError) as e:
            r.error = '%s: %s' % (type(e).__name__, e)
            if isinstance(e, smtplib.SMTPResponseException) and r.stage is None:
                pass
        return r

    def _rset(self):
        try:
            self.smtp.rset()
        except (smtplib.SMTPException, OSError):
            pass

    def close(self):
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        try:
            self.smtp.close()
        except OSError:
            pass


class Delivered:
    """A message found in the instance's Maildirs."""

    def __init__(self, path, rcpt):
        self.path = path
        self.rcpt = rcpt            # 'local@domain' from the Maildir location
        with open(path, 'rb') as f:
            self.raw = f.read()
        self.msg = email.message_from_bytes(self.raw, policy=email.policy.default)

    def header(self, name):
        """First value of a header (str) or None."""
        v = self.msg.get(name)
        return None if v is None else str(v)

    def headers(self, name):
        return [str(v) for v in (self.msg.get_all(name) or [])]

    def header_block(self):
        """The raw header section as text (before the first empty line)."""
        raw = self.raw.replace(b'\r\n', b'\n')
        return raw.split(b'\n\n', 1)[0].decode('utf-8', 'replace')

    def __repr__(self):
        return 'Delivered(%r, subject=%r)' % (self.rcpt, self.header('Subject'))


def _postfix_ids():
    pw = pwd.getpwnam('postfix')
    return pw.pw_uid, pw.pw_gid


class PostfixError(RuntimeError):
    pass


class Postfix:
    """A private Postfix instance on 127.0.0.1.

    Postfix(port=None, submission=False, submission_port=None, milters=(),
            policy=None, recipient_restrictions=None, delivery='maildir',
            domains=TEST_DOMAINS, main=None, master_extra='', root=None,
            keep=None, sasl=None)

    - port / submission_port: picked with free_port() when None; the
      submission service (submission=True) adds `-o syslog_name=postfix/submission
      -o milter_macro_daemon_name=ORIGINATING
      -o smtpd_policy_service_policy_context=ORIGINATING` (conf/postfix/master.cf.snippet).
    - milters: list of Postfix-side endpoints for smtpd_milters
      ('inet:127.0.0.1:8891', 'unix:/path'); milter_default_action=tempfail,
      milter_protocol=6.
    - policy: endpoint for check_policy_service, appended to the default
      recipient restrictions after reject_unauth_destination.
    - recipient_restrictions: full smtpd_recipient_restrictions value
      (overrides the default built from `policy`).
    - delivery: 'maildir' (virtual(8): every address in `domains` is
      delivered into the Maildir ROOT/mail/all/, one copy per recipient with
      its Delivered-To header; with mailboxes=['u@dom', ...] only those
      exist (others: 550 at RCPT), each in ROOT/mail/<dom>/<u>/),
      'discard' (discard(8)), or 'relay:PORT' (smtp(8) to 127.0.0.1:PORT,
      e.g. an smtp-sink).
    - main: dict of extra/overriding main.cf parameters; master_extra: text
      appended to master.cf. set_main() changes parameters later (then reload()).
    - sasl: reserved for a later SASL option (e.g. {'type': 'dovecot', ...});
      raises NotImplementedError for now.
    - keep: keep ROOT after cleanup() (default: $SIFT_KEEP_TMP set).
    """

    def __init__(self, port=None, submission=False, submission_port=None, milters=(),
                 policy=None, recipient_restrictions=None, delivery='maildir',
                 domains=TEST_DOMAINS, main=None, master_extra='', root=None, keep=None,
                 sasl=None, hostname='mx.sift.test', mailboxes=None):
        if os.geteuid() != 0:
            raise PostfixError('a private Postfix instance needs root')
        if sasl is not None:
            raise NotImplementedError('SASL is not wired yet (see Postfix._sasl_params)')
        self.port = port or free_port()
        self.submission = submission or submission_port is not None
        self.submission_port = (submission_port or free_port()) if self.submission else None
        self.milters = list(milters)
        self.policy = policy
        self.recipient_restrictions = recipient_restrictions
        self.delivery = delivery
        self.domains = list(domains)
        self.hostname = hostname
        self.mailboxes = list(mailboxes or [])
        self.sasl = sasl
        self.extra_main = dict(main or {})
        self.master_extra = master_extra
        self.keep = bool(os.environ.get('SIFT_KEEP_TMP')) if keep is None else keep
        base = os.environ.get('SIFT_TEST_TMP') or None
        if root is None:
            self.root = tempfile.mkdtemp(prefix='sift-pf-', dir=base)
            self._own_root = True
        else:
            self.root = os.path.abspath(root)
            os.makedirs(self.root, exist_ok=True)
            self._own_root = False
        # postfix must traverse ROOT (maillog, Maildirs, unix milter sockets).
        os.chmod(self.root, 0o755)
        self.config_dir = os.path.join(self.root, 'etc')
        self.queue_dir = os.path.join(self.root, 'spool')
        self.data_dir = os.path.join(self.root, 'data')
        self.mail_dir = os.path.join(self.root, 'mail')
        self.maillog = os.path.join(self.root, 'maillog')
        self.master_pid = None
        self.started = False
        self._write_config()

    # -- configuration ------------------------------------------------------

    def _delivery_params(self):
        p = {}
        if self.delivery == 'maildir':
            nobody = pwd.getpwnam('nobody')
            p.update({
                'virtual_mailbox_domains': ', '.join(self.domains),
                'virtual_mailbox_base': self.mail_dir,
                # static: every address of the test domains exists and
                # lands in ROOT/mail/all/ (a Maildir: trailing slash); with
                # mailboxes=[...] only those exist, in ROOT/mail/<dom>/<local>/
                'virtual_mailbox_maps': ('texthash:%s/vmailbox' % self.config_dir
                                         if self.mailboxes else 'static:all/'),
                'virtual_uid_maps': 'static:%d' % nobody.pw_uid,
                'virtual_gid_maps': 'static:%d' % nobody.pw_gid,
                'virtual_minimum_uid': '1',
                'virtual_transport': 'virtual',
            })
        elif self.delivery == 'discard':
            p.update({
                'virtual_mailbox_domains': ', '.join(self.domains),
                'virtual_mailbox_maps': 'static:discard',
                'virtual_transport': 'discard:',
            })
        elif self.delivery.startswith('relay:'):
            port = int(self.delivery.split(':', 1)[1])
            p.update({
                'relay_domains': ', '.join(self.domains),
                'relay_recipient_maps': '',
                'relay_transport': 'smtp:[127.0.0.1]:%d' % port,
            })
        else:
            raise ValueError('delivery: maildir, discard or relay:PORT')
        return p

    def _sasl_params(self):
        # Placeholder for a later option: smtpd_sasl_auth_enable = yes,
        # smtpd_sasl_type = dovecot, smtpd_sasl_path = ROOT/auth ... on the
        # submission service only.
        return {}

    def _restrictions(self):
        if self.recipient_restrictions is not None:
            return self.recipient_restrictions
        r = ['reject_unauth_destination']
        if self.policy:
            r.append('check_policy_service %s' % self.policy)
        return ', '.join(r)

    def main_params(self):
        uid, gid = _postfix_ids()
        p = {
            'compatibility_level': '3.6',
            'config_directory': self.config_dir,
            'queue_directory': self.queue_dir,
            'data_directory': self.data_dir,
            'meta_directory': '/etc/postfix',
            'mail_owner': 'postfix',
            'setgid_group': 'postdrop',
            'myhostname': self.hostname,
            'mydomain': 'sift.test',
            'myorigin': '$myhostname',
            'mydestination': '',
            'mynetworks': '127.0.0.0/8',
            'inet_interfaces': '127.0.0.1',
            'inet_protocols': 'ipv4',
            'smtp_bind_address': '127.0.0.1',
            'maillog_file': self.maillog,
            'maillog_file_prefixes': self.root,
            'alias_maps': '',
            'alias_database': '',
            'local_recipient_maps': '',
            'local_transport': 'error:local delivery is disabled in this test instance',
            'default_transport': 'error:outbound mail is disabled in this test instance',
            'relay_transport': 'error:relaying is disabled in this test instance',
            'relayhost': '',
            'smtp_dns_support_level': 'disabled',
            'lmtp_dns_support_level': 'disabled',
            'smtp_host_lookup': 'native',
            'lmtp_host_lookup': 'native',
            'smtpd_peername_lookup': 'no',
            'append_dot_mydomain': 'no',
            'biff': 'no',
            'smtpd_banner': '$myhostname ESMTP',
            'smtpd_delay_reject': 'yes',
            'smtpd_helo_required': 'no',
            'smtpd_relay_restrictions': 'reject_unauth_destination',
            'smtpd_recipient_restrictions': self._restrictions(),
            'smtpd_milters': ', '.join(self.milters),
            'milter_default_action': 'tempfail',
            'milter_protocol': '6',
            'smtpd_tls_security_level': 'none',
            'smtp_tls_security_level': 'none',
            'notify_classes': '',
            'bounce_queue_lifetime': '0',
            'maximal_queue_lifetime': '1h',
            'queue_run_delay': '10s',
            'minimal_backoff_time': '10s',
            'maximal_backoff_time': '60s',
            'smtputf8_enable': 'no',
            'shlib_directory': '/usr/lib/postfix',
            'daemon_directory': '/usr/lib/postfix/sbin',
            'command_directory': '/usr/sbin',
            'default_database_type': 'hash',
            'import_environment': 'MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C',
        }
        p.update(self._delivery_params())
        p.update(self._sasl_params())
        p.update(self.extra_main)
        return p

    def master_cf(self):
        svc = ('127.0.0.1:%d      inet  n       -       n       -       -       smtpd\n'
               % self.port)
        if self.submission:
            svc += ('127.0.0.1:%d      inet  n       -       n       -       -       smtpd\n'
                    '  -o syslog_name=postfix/submission\n'
                    '  -o milter_macro_daemon_name=ORIGINATING\n'
                    '  -o smtpd_policy_service_policy_context=ORIGINATING\n'
                    % self.submission_port)
        return (
            '# private Sift test instance (written by tests/lib/sifttest.py)\n'
            '# service type  private unpriv  chroot  wakeup  maxproc command\n'
            + svc +
            'pickup    unix  n       -       n       60      1       pickup\n'
            'cleanup   unix  n       -       n       -       0       cleanup\n'
            'qmgr      unix  n       -       n       300     1       qmgr\n'
            'rewrite   unix  -       -       n       -       -       trivial-rewrite\n'
            'bounce    unix  -       -       n       -       0       bounce\n'
            'defer     unix  -       -       n       -       0       bounce\n'
            'trace     unix  -       -       n       -       0       bounce\n'
            'verify    unix  -       -       n       -       1       verify\n'
            'flush     unix  n       -       n       1000?   0       flush\n'
            'proxymap  unix  -       -       n       -       -       proxymap\n'
            'proxywrite unix -       -       n       -       1       proxymap\n'
            'smtp      unix  -       -       n       -       -       smtp\n'
            'relay     unix  -       -       n       -       -       smtp\n'
            'showq     unix  n       -       n       -       -       showq\n'
            'error     unix  -       -       n       -       -       error\n'
            'retry     unix  -       -       n       -       -       error\n'
            'discard   unix  -       -       n       -       -       discard\n'
            'local     unix  -       n       n       -       -       local\n'
            'virtual   unix  -       n       n       -       -       virtual\n'
            'lmtp      unix  -       -       n       -       -       lmtp\n'
            'anvil     unix  -       -       n       -       1       anvil\n'
            'scache    unix  -       -       n       -       1       scache\n'
            'postlog   unix-dgram n  -       n       -       1       postlogd\n'
            + self.master_extra)

    def _write_config(self):
        os.makedirs(self.config_dir, exist_ok=True)
        os.makedirs(self.data_dir, exist_ok=True)
        os.makedirs(self.queue_dir, exist_ok=True)
        uid, gid = _postfix_ids()
        os.chown(self.data_dir, uid, gid)
        os.chmod(self.data_dir, 0o700)
        if self.delivery == 'maildir':
            nobody = pwd.getpwnam('nobody')
            os.makedirs(self.mail_dir, exist_ok=True)
            os.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
            os.chmod(self.mail_dir, 0o755)
            if self.mailboxes:
                with open(os.path.join(self.config_dir, 'vmailbox'), 'w') as f:
                    for a in self.mailboxes:
                        local, dom = a.rsplit('@', 1)
                        f.write('%s\t%s/%s/\n' % (a, dom, local))
        self._write_main()
        with open(os.path.join(self.config_dir, 'master.cf'), 'w') as f:
            f.write(self.master_cf())

    def _write_main(self):
        lines = ['# private Sift test instance (written by tests/lib/sifttest.py)']
        for k, v in self.main_params().items():
            lines.append('%s = %s' % (k, v))
        with open(os.path.join(self.config_dir, 'main.cf'), 'w') as f:
            f.write('\n'.join(lines) + '\n')

    def set_main(self, **params):
        """Change main.cf parameters (rewrites main.cf; call reload() when
        running). milters=[...] / policy=... / recipient_restrictions=...
        are understood too."""
        for k in ('milters', 'policy', 'recipient_restrictions'):
            if k in params:
                v = params.pop(k)
                setattr(self, k, list(v) if k == 'milters' else v)
        self.extra_main.update(params)
        self._write_main()

    def postconf(self, *names):
        """Effective values from `postconf -c DIR -h NAME` (dict)."""
        out = {}
        for n in names:
            out[n] = self._run(['postconf', '-c', self.config_dir, '-h', n]).stdout.strip()
        return out

    # -- life cycle ----------------------------------------------------------

    def _env(self):
        env = dict(os.environ)
        env['MAIL_CONFIG'] = self.config_dir
        env.setdefault('LANG', 'C')
        return env

    def _run(self, argv, check=True, timeout=60, **kw):
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self._env(), timeout=timeout, text=True, **kw)
        if check and r.returncode != 0:
            raise PostfixError('%s: exit %d\n%s%s' % (' '.join(argv), r.returncode,
                                                      r.stdout, r.stderr))
        return r

    def _read_master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, 'pid', 'master.pid')) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def status(self):
        """True if `postfix -c DIR status` says the instance runs."""
        try:
            return self._run(['postfix', '-c', self.config_dir, 'status'], check=False,
                             timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self, timeout=20):
        # set-permissions creates the queue tree owned by postfix; start
        # runs `postfix check` first, which would do the same.
        self._run(['postfix', '-c', self.config_dir, 'check'], check=False)
        r = self._run(['postfix', '-c', self.config_dir, 'start'], check=False)
        if r.returncode != 0:
            raise PostfixError('postfix start failed (%d):\n%s%s\n%s' % (
                r.returncode, r.stdout, r.stderr, self.log()[-3000:]))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.master_pid = self._read_master_pid()
            if self.master_pid and self.status():
                break
            time.sleep(0.1)
        else:
            raise PostfixError('postfix did not come up:\n' + self.log()[-3000:])
        self.started = True
        ports = [self.port] + ([self.submission_port] if self.submission else [])
        for p in ports:
            if not wait_port(p, timeout):
                self.stop()
                raise PostfixError('smtpd not listening on %d:\n%s' % (p, self.log()[-3000:]))
        self.wait_log(r'postfix/master\[\d+\]: daemon started', timeout=timeout)
        return self

    def reload(self, timeout=10):
        """`postfix reload`, returning once the smtpd processes of before
        the reload are gone: until then an idle one may still accept a
        connection and serve it with the old settings."""
        old = [p for p in self.instance_pids() if p != self.master_pid and _proc_comm(p) == 'smtpd']
        mark = self.log_mark()
        self._run(['postfix', '-c', self.config_dir, 'reload'])
        self.wait_log(r'postfix/master\[\d+\]: reload', timeout=timeout, start=mark)
        end = time.monotonic() + timeout
        while any(_pid_alive(p) and _proc_comm(p) == 'smtpd' for p in old):
            if time.monotonic() > end:
                raise PostfixError('smtpd processes %r still running %ds after the reload' % (
                    [p for p in old if _pid_alive(p)], timeout))
            time.sleep(0.05)

    def instance_pids(self):
        """PIDs of all processes of this instance (by MAIL_CONFIG in their
        environment, plus the master PID)."""
        pids = set(pids_with_env('MAIL_CONFIG', self.config_dir))
        pids.discard(os.getpid())
        if self.master_pid and _pid_alive(self.master_pid):
            pids.add(self.master_pid)
        return sorted(p for p in pids if _pid_alive(p))

    def stop(self, timeout=20):
        """`postfix -c DIR stop`, then make sure the master PID (and any
        process of this instance) is gone, killing exactly those PIDs if not.
        Returns the list of PIDs that had to be killed."""
        pid = self._read_master_pid() or self.master_pid
        if pid is None and not self.started:
            return []
        try:
            self._run(['postfix', '-c', self.config_dir, 'stop'], check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            pass  # the PIDs below are killed
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.instance_pids() and not (pid and _pid_alive(pid)):
                break
            time.sleep(0.1)
        killed = []
        for p in ([pid] if pid else []) + self.instance_pids():
            if p and _pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                    killed.append(p)
                except ProcessLookupError:
                    pass
        self.started = False
        return killed

    def cleanup(self):
        if self.started:
            self.stop()
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # -- mail ------------------------------------------------------------------

    def session(self, port=None, helo='client.sift.test', auth=None, timeout=60):
        """A persistent SMTP Session to this instance (context manager)."""
        return Session(port or self.port, helo=helo, auth=auth, timeout=timeout)

    def send(self, mail_from, rcpts, data, port=None, helo='client.sift.test', auth=None,
             timeout=60, mail_options=(), rcpt_options=()):
        """Send one message in its own session; returns a SendResult with the
        reply of every stage (.mail, .rcpts, .data, .eom, .rejected_at())."""
        try:
            s = Session(port or self.port, helo=helo, auth=auth, timeout=timeout)
        except (smtplib.SMTPException, OSError) as e:
            r = SendResult()
            r.stage = 'connect'
            r.error = '%s: %s' % (type(e).__name__, e)
            return r
        with s:
            return s.send(mail_from, rcpts, data, mail_options, rcpt_options)

    def send_submission(self, *a, **kw):
        if not self.submission:
            raise PostfixError('instance has no submission service')
        kw['port'] = self.submission_port
        return self.send(*a, **kw)

    def maildir_messages(self, rcpt=None):
        """Delivered messages (oldest first) from all Maildirs under ROOT/mail;
        with rcpt='user@domain' only those whose Delivered-To is that
        address (virtual(8) writes one copy per recipient)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.mail_dir):
            if os.path.basename(dirpath) not in ('new', 'cur'):
                continue
            for n in filenames:
                path = os.path.join(dirpath, n)
                try:
                    mt = os.stat(path).st_mtime_ns
                except OSError:
                    continue
                found.append((mt, n, path))
        found.sort()
        out = []
        for _, _, path in found:
            try:
                m = Delivered(path, None)
            except OSError:
                continue
            dt = m.header('Delivered-To')
            m.rcpt = dt.strip() if dt else None
            if rcpt is not None and (m.rcpt or '').lower() != rcpt.lower():
                continue
            out.append(m)
        return out

    def wait_delivered(self, n, timeout=20.0, rcpt=None):
        """Wait until at least n messages are in the Maildirs; returns them
        (oldest first). Raises PostfixError on timeout (with the log tail)."""
        end = time.monotonic() + timeout
        while True:
            msgs = self.maildir_messages(rcpt)
            if len(msgs) >= n:
                return msgs
            if time.monotonic() >= end:
                raise PostfixError('%d of %d messages delivered after %.0fs; queue=%r\n%s' % (
                    len(msgs), n, timeout, self.queue(), self.log()[-3000:]))
            time.sleep(0.05)

    def delivered_by_queue_id(self, queue_id, timeout=20.0):
        """Wait for the delivery of the message with Postfix queue id
        `queue_id` (from its Received: header) and return it."""
        rx = re.compile(r'\bid %s\b' % re.escape(queue_id))
        end = time.monotonic() + timeout
        while True:
            for m in self.maildir_messages():
                if any(rx.search(h) for h in m.headers('Received')):
                    return m
            if time.monotonic() >= end:
                raise PostfixError('message %s not delivered after %.0fs\n%s' % (
                    queue_id, timeout, self.log_for(queue_id)))
            time.sleep(0.05)

    # -- logs and queue ------------------------------------------------------------

    def log(self):
        try:
            with open(self.maillog, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def log_mark(self):
        """Current end of the log; pass as start= to wait_log()/log_lines()."""
        try:
            return len(self.log())
        except OSError:
            return 0

    def log_lines(self, regex=None, start=0):
        text = self.log()[start:]
        lines = text.splitlines()
        if regex is None:
            return lines
        rx = re.compile(regex)
        return [l for l in lines if rx.search(l)]

    def log_for(self, queue_id):
        """Log lines that mention a queue id."""
        return self.log_lines(r'\b%s\b' % re.escape(queue_id))

    def wait_log(self, regex, timeout=10.0, start=0):
        """Wait until regex (multiline) matches the log from offset start;
        returns the match object or None on timeout."""
        return _wait_text(self.log, regex, timeout, start)

    def queue(self):
        """Queue listing: list of dicts from `postqueue -j` (keys queue_name,
        queue_id, sender, recipients, ...)."""
        # postqueue is set-gid postdrop: with a real gid of postdrop it is not
        # "unsafe" and accepts -c without alternate_config_directories.
        r = self._run(['postqueue', '-c', self.config_dir, '-j'], check=False,
                      group=grp.getgrnam('postdrop').gr_gid)
        if r.returncode != 0:
            raise PostfixError('postqueue -j failed: %s' % r.stderr)
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def flush(self):
        """Attempt delivery of all queued mail (`postfix flush`)."""
        self._run(['postfix', '-c', self.config_dir, 'flush'], check=False)

    def postsuper(self, *args):
        return self._run(['postsuper', '-c', self.config_dir] + list(args), check=False)

    def postcat(self, queue_id):
        return self._run(['postcat', '-c', self.config_dir, '-q', queue_id], check=False).stdout

    def info(self):
        s = 'Postfix instance %s: smtpd 127.0.0.1:%d' % (self.root, self.port)
        if self.submission:
            s += ', submission (ORIGINATING) 127.0.0.1:%d' % self.submission_port
        return s


def message(subject='test', sender='sender@example.test', to='user@sift.test', body=None,
            headers=None, msgid=None):
    """A small RFC 5322 message (bytes) for tests."""
    from email.utils import formatdate, make_msgid
    lines = ['From: <%s>' % sender, 'To: <%s>' % to, 'Subject: %s' % subject,
             'Date: %s' % formatdate(localtime=False),
             'Message-ID: %s' % (msgid or make_msgid(domain='client.sift.test'))]
    for k, v in (headers or {}).items():
        lines.append('%s: %s' % (k, v))
    lines.append('')
    lines.append(body if body is not None else 'Hello from the Sift test harness.\n')
    return '\r\n'.join(lines).encode('utf-8')


# -- test scripts: check counter, Sift programs, daemons, siftctl, policy client ---

class Checks:
    """The checks of one test script: it keeps going after a failure and
    reports at the end.

        check(cond, what, detail='')  prints "ok   WHAT" or "FAIL WHAT: DETAIL"
                                      (DETAIL's last `detail_max` characters)
                                      and returns cond unchanged
        check_eq(got, want, what)     check(got == want, ...) with both values
        done()                        prints "N passed, N failed"; returns the
                                      exit status: 1 if a check failed or if
                                      none ran, else 0

    Scripts use the module-level instance through sifttest.check,
    sifttest.check_eq and sifttest.done (sifttest.checks holds the counts).
    Output is flushed after every line so that it interleaves with daemon
    output in meson's log."""

    def __init__(self, detail_max=4000):
        self.passed = 0
        self.failed = 0
        self.detail_max = detail_max

    def check(self, cond, what, detail=''):
        if cond:
            self.passed += 1
            print('ok   ' + what, flush=True)
        else:
            self.failed += 1
            d = str(detail) if detail not in ('', None) else ''
            if len(d) > self.detail_max:
                d = '...' + d[-self.detail_max:]
            print('FAIL ' + what + (': ' + d if d else ''), flush=True)
        return cond

    def check_eq(self, got, want, what):
        return self.check(got == want, what, 'got %r, want %r' % (got, want))

    def done(self):
        print('%d passed, %d failed' % (self.passed, self.failed), flush=True)
        return 1 if self.failed or not self.passed else 0


checks = Checks()
check = checks.check
check_eq = checks.check_eq
done = checks.done


def bounded_run(argv, limit_s=60, rss_kb=1_000_000):
    """run(), but the program is stopped (and the output says so) when it runs
    longer than limit_s or holds more than rss_kb of memory."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0, why = time.monotonic(), ''
    while p.poll() is None:
        try:
            with open('/proc/%d/status' % p.pid) as f:
                rss = int(re.search(r'VmRSS:\s+(\d+)', f.read()).group(1))
        except (OSError, AttributeError):
            rss = 0
        if rss > rss_kb or time.monotonic() - t0 > limit_s:
            why = 'stopped: %d kB, %.1fs' % (rss, time.monotonic() - t0)
            p.kill()
            break
        time.sleep(0.05)
    out, err = p.communicate()
    return p.returncode, out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace') + why


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine since boot, from
    /proc/stat: busy is all but idle and iowait (guest time is already in
    user and nice)."""
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf('SC_CLK_TCK')
    total = sum(v[:8])
    return (total - v[3] - v[4]) / tick, total / tick


def program(name):
    """Path of a Sift program in the build tree: 'filterd', 'policyd' or
    'siftctl'."""
    sub = {'filterd': 'filterd', 'policyd': 'policyd', 'siftctl': 'tools'}[name]
    return os.path.join(builddir(), sub, name)


def plugin_directory():
    """BUILD/plugins, where the plugins' .so files are built."""
    return os.path.join(builddir(), 'plugins')


def write_conf(path, settings):
    """Writes a Sift configuration file: one `name = value` line per item of
    the dict `settings`, in its order. Returns path."""
    with open(path, 'w') as f:
        for k, v in settings.items():
            f.write('%s = %s\n' % (k, v))
    return path


_notifies = {}


def daemon_notifies(daemon):
    """True if the built `daemon` (filterd or policyd) sends systemd's
    READY=1 (the meson feature `systemd`, on unless disabled); then
    start_daemon waits for READY=1 (listeners open, plugins initialised)
    rather than only for the socket."""
    if daemon not in _notifies:
        with open(program(daemon), 'rb') as f:
            _notifies[daemon] = b'NOTIFY_SOCKET' in f.read()
    return _notifies[daemon]


def daemon_user():
    """The user filterd and policyd run as in the tests (their DAEMON_user
    setting): when the tests run as root, $SIFT_TEST_DAEMON_USER or
    'nobody', so that the daemons drop their privileges as the shipped
    configuration makes them (with 'root' they stay root); '' when the
    tests do not run as root (the daemons run as the caller)."""
    if os.geteuid() != 0:
        return ''
    return os.environ.get('SIFT_TEST_DAEMON_USER', 'nobody')


def daemon_readable(path):
    """Makes directory `path` (a test's mkdtemp directory, 0700) traversable
    by daemon_user(), which reads its configuration and maps there after
    the privilege drop (at reloads). Returns path."""
    st = os.stat(path)
    if os.geteuid() == 0 and not st.st_mode & 0o001:
        os.chmod(path, (st.st_mode & 0o7777) | 0o711)
    return path


def daemon_writable(path):
    """Gives directory `path` to daemon_user() (quarantine, cache and spool
    directories the daemons write to after the privilege drop). Returns
    path."""
    user = daemon_user()
    if user and user != 'root':
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def start_daemon(daemon, tmp, settings, name=None, listen=None, argv=(), **proc_args):
    """Starts filterd or policyd (`daemon`) in the foreground with a
    configuration written from a dict.

    TMP/NAME.conf (NAME defaults to the daemon's name) holds
    DAEMON_listen, plugin_directory (BUILD/plugins) and then `settings` (a
    dict; an entry of it overrides the first two), and DAEMON_user =
    daemon_user() unless `settings` has it; TMP is made traversable for
    that user (daemon_readable). DAEMON_listen is
    `listen` ('inet:127.0.0.1:PORT' or 'unix:/path') or, by default, a free
    port on 127.0.0.1. `DAEMON -f -c CONF ARGV...` runs as a Proc logging
    to TMP/NAME.log, started and waited for until it sends READY=1 (when
    daemon_notifies()) and accepts on that port or socket (proc_args go to
    Proc: start_timeout, env, notify, ...). Returns the
    started Proc, with .conf (the file) and .port (None on a unix socket).
    Raises ProcError if it does not come up."""
    name = name or daemon
    port = unix = None
    if listen is None:
        port = free_port()
        listen = 'inet:127.0.0.1:%d' % port
    elif listen.startswith('unix:'):
        unix = listen[len('unix:'):]
    else:
        port = int(listen.rsplit(':', 1)[1])
    conf = {'%s_listen' % daemon: listen, 'plugin_directory': plugin_directory()}
    if daemon_user():
        conf['%s_user' % daemon] = daemon_user()
    conf.update(settings)
    daemon_readable(tmp)
    path = write_conf(os.path.join(tmp, name + '.conf'), conf)
    proc_args.setdefault('notify', daemon_notifies(daemon))
    p = Proc([program(daemon), '-f', '-c', path] + list(argv), log=os.path.join(tmp, name + '.log'),
             port=port, unix=unix, name=name, **proc_args)
    p.conf = path
    p.start()
    user = conf.get('%s_user' % daemon)
    if user and os.geteuid() == 0:
        # The socket accepts before the drop: give the drop a moment.
        want = pwd.getpwnam(user).pw_uid
        end = time.monotonic() + p.start_timeout
        while (got := proc_uids(p.pid)) != (want,) * 4 and p.alive() and time.monotonic() < end:
            time.sleep(0.02)
        if got != (want,) * 4:
            p.stop()
            raise ProcError('%s runs with uids %s, not as %s_user = %s (uid %d)' % (
                name, got, daemon, user, want))
    return p


def proc_uids(pid):
    """(real, effective, saved, filesystem) uids of a process, from
    /proc/PID/status; None if it is gone."""
    return _proc_ids(pid, 'Uid:')


def proc_gids(pid):
    """The same for the group ids."""
    return _proc_ids(pid, 'Gid:')


def _proc_ids(pid, key):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(key):
                    return tuple(int(x) for x in line.split()[1:5])
    except OSError:
        pass
    return None


def stop_all(things):
    """Stops Procs, Postfix instances (cleanup()) and anything else with a
    stop() method, last started first; None entries are skipped (not
    started); an error stopping one is printed and the others are still
    stopped."""
    for t in reversed(list(things)):
        if t is None:
            continue
        try:
            if isinstance(t, Postfix):
                t.cleanup()
            else:
                t.stop()
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            print('stopping %s: %s' % (getattr(t, 'name', t), e), flush=True)


def siftctl_test(conf, message=None, args=(), opts=(), msgfile=None, timeout=60):
    """Runs a message through filterd's chain without an MTA:
    `siftctl -c CONF [-o SETTING]... test ARGS... --json FILE`.

    `message` (str or bytes) is written to FILE (`msgfile`, default
    siftctl-test.eml next to CONF); with message=None, `msgfile` must name
    an existing file. `opts` are 'name=value' settings (-o), `args` the
    test options (--from, --to, --profile, --auth, ...). Returns the JSON
    result as a dict (action, profile, reply, symbols, headers, ...). When
    siftctl prints no JSON the dict has action 'error', no symbols nor
    headers, and 'error' (siftctl's output) and 'returncode', so that checks
    on the result fail."""
    if msgfile is None:
        msgfile = os.path.join(os.path.dirname(os.path.abspath(conf)), 'siftctl-test.eml')
    if message is not None:
        with open(msgfile, 'wb') as f:
            f.write(message.encode('utf-8') if isinstance(message, str) else message)
    argv = [program('siftctl'), '-c', conf]
    for o in opts:
        argv += ['-o', o]
    argv += ['test'] + list(args) + ['--json', msgfile]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    out = r.stdout.decode('utf-8', 'replace')
    try:
        res = json.loads(out)
        if isinstance(res, dict):
            return res
    except ValueError:
        pass
    return {'action': 'error', 'reply': None, 'symbols': [], 'headers': [], 'returncode': r.returncode,
            'error': out + r.stderr.decode('utf-8', 'replace')}


class PolicyClient(_Closing):
    """A Postfix policy-delegation client (what smtpd does): one persistent
    connection to 127.0.0.1:port or a unix socket, one request at a time.

        c = PolicyClient(port, defaults={'protocol_state': 'RCPT'})
        c.ask(sender='a@b', recipient='c@d', ...)  -> 'DUNNO'

    A request is request=smtpd_access_policy, protocol_name=ESMTP, then
    `defaults`, then the attributes given to ask() (later ones win). Every
    read is bounded by `timeout`; the caller closes the client (or uses it
    as a context manager)."""

    def __init__(self, port=None, unix=None, timeout=10, defaults=None):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.defaults = dict(defaults or {})
        self.buf = b''

    def ask(self, **attrs):
        """Sends one request; returns the action (the value of action=).
        Raises ConnectionError if the server closes the connection and
        ValueError if the reply has no action."""
        req = {'request': 'smtpd_access_policy', 'protocol_name': 'ESMTP'}
        req.update(self.defaults)
        req.update(attrs)
        data = ''.join('%s=%s\n' % (k, v) for k, v in req.items()) + '\n'
        self.sock.sendall(data.encode('utf-8', 'surrogateescape'))
        while b'\n\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError('policy server closed the connection')
            self.buf += chunk
        reply, self.buf = self.buf.split(b'\n\n', 1)
        for line in reply.decode('utf-8', 'replace').split('\n'):
            if line.startswith('action='):
                return line[len('action='):]
        raise ValueError('no action in %r' % reply)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
