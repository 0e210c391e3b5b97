#!/usr/bin/python3
"""clamav plugin: two filterd in separate PID namespaces (containers)
sharing one temporary base directory (as containers share /dev/shm).

filterd A runs in a new PID namespace (`unshare --pid --fork --mount-proc`)
with a PID no process has in B's namespace, and scans a message through a
private Postfix, which creates its private directory
<base>/sift-clamav.<A's PID>.<random>. filterd B then starts in another new
PID namespace on the same base: its start-up clean-up must leave A's live
directory alone (a PID check would find A's PID absent in B's namespace and
remove it). Mail through A is then scanned as before, in the same
directory, with no "had vanished" retry. Finally A is killed (SIGKILL, its
directory left behind) and a third filterd removes the directory at start:
the clean-up still works across namespaces.

Needs root (Postfix, unshare) and the Debian package util-linux.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cvlib  # noqa: E402,F401 - puts tests/lib on the path
import sifttest  # noqa: E402
from sifttest import check  # noqa: E402

# A's PID in its namespace: far above what B's namespace reaches (its
# filterd is PID 1 there, its threads a few more).
A_NSPID = 4001


def children(pid):
    out = []
    try:
        for tid in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/children' % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def find_filterd(top, timeout=15):
    """The PID (in our namespace) of the filterd below process `top`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        todo = [top]
        while todo:
            p = todo.pop()
            try:
                with open('/proc/%d/comm' % p) as f:
                    if f.read().strip() == 'filterd':
                        return p
            except OSError:
                pass
            todo += children(p)
        time.sleep(0.05)
    return None


def nspid(pid):
    """The PIDs of `pid` from the outermost namespace inwards (NSpid)."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('NSpid:'):
                return [int(x) for x in line.split()[1:]]
    return []


def ns_pids(pid):
    """Every PID and thread id, as seen inside the PID namespace of `pid`."""
    ns = os.readlink('/proc/%d/ns/pid' % pid)
    out = set()
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            for tid in os.listdir('/proc/%s/task' % d):
                if os.readlink('/proc/%s/task/%s/ns/pid' % (d, tid)) == ns:
                    out.add(nspid(int(tid))[-1])
        except (OSError, IndexError):
            pass
    return out


class NsFilterd:
    """filterd in a new PID namespace, as a Proc running unshare. `pid` in
    the namespace: None for filterd as the namespace's init (PID 1), or a
    PID set through ns_last_pid before a shell starts filterd."""

    def __init__(self, root, name, settings, pid=None):
        self.port = sifttest.free_port()
        conf = {'filterd_listen': 'inet:127.0.0.1:%d' % self.port,
                'plugin_directory': sifttest.plugin_directory()}
        if sifttest.daemon_user():
            conf['filterd_user'] = sifttest.daemon_user()
        conf.update(settings)
        self.conf = sifttest.write_conf(os.path.join(root, name + '.conf'), conf)
        argv = ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child']
        fd = [sifttest.program('filterd'), '-f', '-c', self.conf]
        if pid is None:
            argv += fd
        else:
            # The shell stays PID 1 (no exec of its last command: "exit"
            # follows), so filterd gets the PID after ns_last_pid.
            argv += ['/bin/sh', '-c', 'echo %d > /proc/sys/kernel/ns_last_pid && "$0" "$@"; exit $?'
                     % (pid - 1)] + fd
        self.proc = sifttest.Proc(argv, log=os.path.join(root, name + '.log'), port=self.port,
                                  name=name, notify=sifttest.daemon_notifies('filterd'),
                                  start_timeout=60)
        self.filterd = None

    def start(self):
        self.proc.start()
        self.filterd = find_filterd(self.proc.pid)
        if self.filterd is None:
            raise RuntimeError('no filterd below unshare %d' % self.proc.pid)
        return self

    def log(self):
        return self.proc.log()

    def kill(self, sig):
        os.kill(self.filterd, sig)
        self.proc.popen.wait(30)

    def stop(self):
        """SIGTERM to filterd itself (unshare does not pass it on); the
        namespace ends with it."""
        if self.proc.alive() and self.filterd:
            try:
                os.kill(self.filterd, signal.SIGTERM)
                self.proc.popen.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.proc.stop()


def main():
    if os.geteuid() != 0 or not shutil.which('unshare'):
        print('needs root and unshare (util-linux)')
        print('0 passed, 1 failed')
        return 1
    root = tempfile.mkdtemp(prefix='sift-clamav-ns-')
    os.chmod(root, 0o755)
    dbdir = os.path.join(root, 'db')
    cvlib.make_db(dbdir)
    base = os.path.join(root, 'shm')  # the shared /dev/shm of the containers
    os.makedirs(base)
    os.chmod(base, 0o1777)
    settings = {'inbound_plugins': 'clamav', 'myhostname': 'mx.sift.test',
                'clamav_database_directory': dbdir, 'clamav_ready_wait': '30s',
                'clamav_tmpdir': base}
    clean = cvlib.clean_messages()['attachment']
    pf = a = b = c = None
    try:
        a = NsFilterd(root, 'filterd-a', settings, pid=A_NSPID).start()
        pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), keep=True,
                              milters=['inet:127.0.0.1:%d' % a.port])
        pf.start()
        check(nspid(a.filterd)[-1] == A_NSPID and len(nspid(a.filterd)) >= 2,
              'filterd A runs in its own PID namespace as PID %d' % A_NSPID, nspid(a.filterd))
        r = pf.send('sender@example.test', ['user@sift.test'], clean)
        check(r.accepted, 'A: mail accepted', r)
        m = re.search(r'clamav: temporary files in (\S+) \(mode 0700\)', a.log())
        adir = m.group(1) if m else None
        check(adir is not None and re.match(r'^%s/sift-clamav\.%d\.[0-9a-f]{16}$' %
                                            (re.escape(base), A_NSPID), adir) is not None,
              'A: private directory named with its PID in its namespace', a.log()[-2000:])
        ino = os.stat(adir).st_ino if adir else None

        b = NsFilterd(root, 'filterd-b', settings).start()
        check(nspid(b.filterd)[-1] == 1, 'filterd B is PID 1 of another PID namespace',
              nspid(b.filterd))
        check(A_NSPID not in ns_pids(b.filterd),
              "A's PID is no process in B's namespace (a PID check would call A dead)",
              sorted(ns_pids(b.filterd)))
        check(adir is not None and os.path.isdir(adir) and os.stat(adir).st_ino == ino and
              'removing' not in b.log(),
              "B's start-up clean-up left A's live directory alone", b.log()[-2000:])
        mark = len(a.log())
        for i in range(3):
            r = pf.send('sender@example.test', ['user@sift.test'], clean)
            check(r.accepted, 'A: mail %d accepted after B started' % i, r)
            if r.accepted:
                got = pf.delivered_by_queue_id(r.queue_id)
                check(re.match(r'\s*ClamAV [\d.]+ at mx\.sift\.test$',
                               got.header('X-Virus-Scanned') or '') is not None,
                      'A: mail %d scanned (X-Virus-Scanned)' % i, got.header_block())
        tail = a.log()[mark:]
        check('had vanished' not in tail and "Can't create temporary" not in tail and
              'libclamav' not in tail, 'A: no scan lost its temporary directory', tail[-2000:])
        check(adir is not None and os.path.isdir(adir) and os.stat(adir).st_ino == ino,
              'A: the same private directory still exists', adir)

        # A crash leaves A's directory; a filterd in a third namespace
        # removes it at start (its lock is held by nobody any more).
        a.kill(signal.SIGKILL)
        check(adir is not None and os.path.isdir(adir), 'A killed: its directory is left behind')
        c = NsFilterd(root, 'filterd-c', settings).start()
        check(adir is not None and not os.path.exists(adir) and
              'clamav: removing %s (its owner is gone)' % adir in c.log(),
              "C removed the directory of the killed A", c.log()[-2000:])
        bdirs = [n for n in os.listdir(base)]
        check(all(n.startswith('sift-clamav.1.') for n in bdirs),
              'only the directories of live filterd are left', bdirs)
    finally:
        sifttest.stop_all([a, b, c, pf])
        if sifttest.checks.failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print('kept %s' % root)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
