"""Helpers for the clamav plugin's tests and benchmark: a small signature
database, the test messages, and a private clamd.

The database (make_db) detects:
  - the EICAR test string, by an .ndb body signature on part of it
    (Sift.Test.EICAR.UNOFFICIAL);
  - the files of Debian's clamav-testfiles package, by an .hdb hash of each
    file and of clam.exe (what the archives and mails there contain)
    (Sift.Test.<file>.UNOFFICIAL).
The EICAR string is assembled at run time from two halves, so that the
repository itself holds no test virus.

Clamd (class Clamd) is Debian's /usr/sbin/clamd started in the foreground
with its own configuration (unix socket + TCP on a free port, the test's
database directory), stopped by its PID.
"""

import base64
import email.message
import email.policy
import hashlib
import io
import os
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'lib'))
import sifttest  # noqa: E402

EICAR = ('X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-' + 'ANTIVIRUS-TEST-FILE!$H+H*').encode()
EICAR_NAME = 'Sift.Test.EICAR.UNOFFICIAL'
TESTFILES = '/usr/share/clamav-testfiles'


def make_db(dbdir, extra_ndb=None):
    """Writes sift.ndb and sift.hdb into dbdir (atomically: temp + rename)."""
    os.makedirs(dbdir, exist_ok=True)
    ndb = ['Sift.Test.EICAR:0:*:%s' % b'EICAR-STANDARD-ANTIVIRUS-TEST-FILE'.hex()]
    for name, text in (extra_ndb or {}).items():
        ndb.append('%s:0:*:%s' % (name, text.encode().hex()))
    hdb = []
    if os.path.isdir(TESTFILES):
        for f in sorted(os.listdir(TESTFILES)):
            p = os.path.join(TESTFILES, f)
            if os.path.isfile(p):
                data = open(p, 'rb').read()
                hdb.append('%s:%d:Sift.Test.%s' % (hashlib.md5(data).hexdigest(), len(data), f))
    for name, lines in (('sift.ndb', ndb), ('sift.hdb', hdb)):
        tmp = os.path.join(dbdir, '.' + name + '.tmp')
        with open(tmp, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        os.rename(tmp, os.path.join(dbdir, name))


def _msg(subject, sender='sender@example.test', to='user@sift.test'):
    m = email.message.EmailMessage(policy=email.policy.SMTP)
    m['From'] = sender
    m['To'] = to
    m['Subject'] = subject
    m['Message-ID'] = '<%s@client.sift.test>' % hashlib.md5(subject.encode()).hexdigest()
    return m


def _zip(files):
    b = io.BytesIO()
    with zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return b.getvalue()


def _targz(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode='w:gz') as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1735732800
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


def _attach(subject, data, filename, maintype='application', subtype='octet-stream'):
    m = _msg(subject)
    m.set_content('See the attachment.\n')
    m.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return m.as_bytes()


def infected_messages():
    """{case: (bytes, expected virus name)}."""
    out = {}
    out['plain'] = (_plain(EICAR), EICAR_NAME)
    out['base64'] = (_attach('eicar base64', EICAR, 'eicar.com'), EICAR_NAME)
    # Quoted-printable with a soft line break inside the string: only a
    # decoder sees it whole.
    half = len(EICAR) // 2
    qp = (b'From: sender@example.test\r\nTo: user@sift.test\r\nSubject: eicar qp\r\n'
          b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
          b'--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n'
          b'--b1\r\nContent-Type: application/octet-stream\r\n'
          b'Content-Transfer-Encoding: quoted-printable\r\n'
          b'Content-Disposition: attachment; filename="e.txt"\r\n\r\n' +
          EICAR[:half].replace(b'=', b'=3D') + b'=\r\n' + EICAR[half:].replace(b'=', b'=3D') +
          b'\r\n--b1--\r\n')
    assert EICAR not in qp
    out['qp'] = (qp, EICAR_NAME)
    z = _zip({'eicar.com': EICAR})
    out['zip'] = (_attach('eicar zip', z, 'eicar.zip', 'application', 'zip'), EICAR_NAME)
    zz = _zip({'inner.zip': z, 'readme.txt': b'nothing here\n'})
    out['zipzip'] = (_attach('eicar zip in zip', zz, 'outer.zip', 'application', 'zip'), EICAR_NAME)
    out['targz'] = (_attach('eicar tar.gz', _targz({'dir/eicar.com': EICAR}), 'e.tar.gz',
                            'application', 'gzip'), EICAR_NAME)
    inner = email.message_from_bytes(_attach('inner', EICAR, 'eicar.com'), policy=email.policy.SMTP)
    fw = _msg('Fwd: eicar in rfc822')
    fw.set_content('Forwarded message below.\n')
    fw.add_attachment(inner)
    raw = fw.as_bytes()
    assert EICAR not in raw
    out['rfc822'] = (raw, EICAR_NAME)
    if os.path.isdir(TESTFILES):
        for f in ('clam.exe', 'clam.zip', 'clam.tar.gz', 'clam.7z'):
            data = open(os.path.join(TESTFILES, f), 'rb').read()
            out['testfile-' + f] = (_attach('testfile ' + f, data, f), None)
        out['testfile-clam.mail'] = (open(os.path.join(TESTFILES, 'clam.mail'), 'rb').read(), None)
    return out


def _plain(body_bytes, subject='eicar plain body'):
    return (b'From: sender@example.test\r\nTo: user@sift.test\r\nSubject: ' + subject.encode() +
            b'\r\nMessage-ID: <plain-%d@client.sift.test>\r\n\r\n' % len(body_bytes) +
            body_bytes + b'\r\n')


def clean_messages():
    out = {}
    out['text'] = _plain(b'Just some text, nothing to see.', 'clean text')
    out['attachment'] = _attach('clean attachment', bytes(range(256)) * 64, 'data.bin')
    out['zip'] = _attach('clean zip', _zip({'a.txt': b'hello\n' * 100, 'b.txt': b'world\n'}),
                         'clean.zip', 'application', 'zip')
    out['targz'] = _attach('clean tar.gz', _targz({'x/y.txt': b'clean file\n' * 50}), 'c.tgz',
                           'application', 'gzip')
    m = _msg('clean html')
    m.set_content('plain part\n')
    m.add_alternative('<html><body><p>html part</p></body></html>\n', subtype='html')
    out['html'] = m.as_bytes()
    return out


def big_message(size):
    blob = base64.encodebytes(os.urandom(size * 3 // 4 + 10))
    return _plain(blob[:size], 'big message')


class Clamd:
    """A private clamd (Debian's) on a unix socket and a free TCP port."""

    def __init__(self, root, dbdir, max_threads=16, tmpdir=None):
        self.root = root
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o755)
        self.dbdir = dbdir
        self.sock = os.path.join(root, 'clamd.sock')
        self.port = sifttest.free_port()
        # TemporaryDirectory: tmpdir (a private directory the caller made,
        # e.g. on a tmpfs) or <root>/tmp.
        self.tmp = tmpdir or os.path.join(root, 'tmp')
        os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        self.conf = os.path.join(root, 'clamd.conf')
        with open(self.conf, 'w') as f:
            f.write('\n'.join([
                'LocalSocket %s' % self.sock,
                'LocalSocketMode 666',
                'TCPSocket %d' % self.port,
                'TCPAddr 127.0.0.1',
                'DatabaseDirectory %s' % dbdir,
                'TemporaryDirectory %s' % self.tmp,
                'Foreground yes',
                'LogFile %s' % os.path.join(root, 'clamd-own.log'),
                'LogTime yes',
                'MaxThreads %d' % max_threads,
                'MaxQueue 200',
                'StreamMaxLength 50M',
                'SelfCheck 3600',
                'AlertEncrypted yes',
                'User root',
                '']))
        self.proc = None

    def start(self):
        self.proc = sifttest.Proc(['/usr/sbin/clamd', '-c', self.conf],
                                  log=os.path.join(self.root, 'clamd.log'), unix=self.sock,
                                  start_timeout=60, name='clamd')
        self.proc.start()
        if not sifttest.wait_port(self.port, 30, self.proc.alive):
            raise RuntimeError('clamd TCP port not listening')
        return self

    def kill(self):
        """SIGKILL (a crash), by PID."""
        import signal
        if self.proc and self.proc.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.popen.wait()

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def restart(self):
        self.stop()
        return self.start()


class FakeClamd:
    """A clamd stand-in on 127.0.0.1 (a free port) or a unix socket, run in
    a thread of the test: it reads zINSTREAM as clamd does and answers
    what its `answer` says, for the replies a real clamd gives only under
    conditions a test cannot easily make (a scan timeout, a broken reply).

    answer: bytes sent after the whole stream (the end marker); or a
    callable(conn, total) called instead, for anything else; `early` =
    (n, bytes): after n bytes of stream, send the bytes and close without
    reading the rest. `stall`: accept, read nothing, never answer.
    `backlog`: of listen(); `accept_after`: a threading.Event set when it
    may start accepting (a full backlog until then). Counts the streams it
    saw whole in `streams`."""

    def __init__(self, answer=b'stream: OK\0', early=None, stall=False, unix=None, backlog=16,
                 accept_after=None):
        import socket
        import threading
        self.answer, self.early, self.stall = answer, early, stall
        self.accept_after = accept_after
        self.streams = 0
        self.conns = []
        self.stopped = False
        if unix:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(unix)
            self.addr = 'unix:' + unix
        else:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(('127.0.0.1', 0))
            self.addr = 'inet:127.0.0.1:%d' % self.sock.getsockname()[1]
        self.sock.listen(backlog)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import threading
        if self.accept_after:
            self.accept_after.wait()
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    @staticmethod
    def _readn(c, n):
        b = b''
        while len(b) < n:
            x = c.recv(n - len(b))
            if not x:
                raise EOFError
            b += x
        return b

    def _handle(self, c):
        import struct
        import time
        try:
            if self.stall:
                while not self.stopped:
                    time.sleep(0.1)
                return
            cmd = b''
            while not cmd.endswith(b'\0'):
                x = c.recv(1)
                if not x:
                    return
                cmd += x
            if cmd == b'zVERSION\0':
                c.sendall(b'ClamAV 9.9.9/27000/Tue Dec  1 09:00:00 2026\0')
                return
            total = 0
            while True:
                if self.early and total >= self.early[0]:
                    c.sendall(self.early[1])
                    return
                n = struct.unpack('>I', self._readn(c, 4))[0]
                if n == 0:
                    break
                self._readn(c, n)
                total += n
            self.streams += 1
            if callable(self.answer):
                self.answer(c, total)
            else:
                c.sendall(self.answer)
        except (OSError, EOFError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        import socket
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.thread.join(5)
