#!/usr/bin/python3
"""Privileges and start-up of filterd and policyd, started as root as the
service manager starts them:

  - with DAEMON_user set, every uid and gid of the process is the user's
    (/proc/PID/status), the pid file (written as root before the drop) holds
    the pid, the unix sockets have the configured mode and group and belong
    to the user (the control socket too, mode 0600), and the plugins'
    preinit ran as root and their init as the user (testplug_uid_file
    records both), also at a reload (init only);
  - systemd readiness: READY=1 comes once the socket accepts and the plugins
    are initialised; RELOADING=1/READY=1 around a reload (STATUS= says when
    it failed); STOPPING=1;
  - a socket left at the control path that no live daemon listens on (its
    listener takes no connection, or is the daemon user's) is replaced
    within a second, not waited on; at stop the daemon removes its control
    socket from a directory of its user's (one of root's keeps it);
  - DAEMON_user empty as root is refused (start and -t) naming the setting;
    = root runs with a warning; an unknown user, a bad socket mode or group
    are refused naming the setting;
  - a plugin_directory writable by group or others, or owned by another
    user, is refused, and so is one below such a directory (other than a
    sticky one of root's such as /tmp) or reached through a symbolic link
    of another user's (a link of root's to a trusted directory is
    followed); so is (filterd) a quarantine_directory writable by
    group or others, or owned by anyone but root and filterd_user, at
    start and by -t.

The daemons run as $SIFT_TEST_DAEMON_USER or nobody (sifttest.daemon_user)."""

import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.environ.get('SIFT_SRCDIR', os.path.join(os.path.dirname(__file__), '..', '..')),
                                'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, check_eq, done  # noqa: E402

TESTPLUG = os.path.join(sifttest.builddir(), 'tests', 'testplug.so')


def run(argv, timeout=30):
    """(exit status, output); (None, ...) if it still runs after `timeout`
    (a start that should have been refused: it is killed)."""
    try:
        r = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, 'still running after %ds: %s' % (timeout, e.output)
    return r.returncode, r.stdout


def uid_lines(path):
    try:
        with open(path) as f:
            return [line.split()[0] + ' ' + line.split()[1] for line in f if line.strip()]
    except OSError:
        return []


def plugin_dir(tmp, name, mode=0o755):
    d = os.path.join(tmp, name)
    os.mkdir(d)
    os.symlink(TESTPLUG, os.path.join(d, 'testplug.so'))
    os.chmod(d, mode)
    return d


def conf(tmp, daemon, name, user, extra=None):
    settings = {'%s_listen' % daemon: 'unix:%s/%s.sock' % (tmp, name),
                '%s_user' % daemon: user,
                '%s_pid_file' % daemon: '%s/%s.pid' % (tmp, name),
                '%s_control_socket' % daemon: '%s/%s.ctl' % (tmp, name),
                '%s_socket_group' % daemon: 'postfix',
                '%s_socket_mode' % daemon: '0660',
                'plugin_directory': os.path.join(tmp, 'plugins'),
                'inbound_plugins': 'testplug',
                'testplug_uid_file': '%s/%s.uids' % (tmp, name),
                # READY=1 sent before init ends would be seen without init's line
                'testplug_init_delay': '300ms'}
    settings.update(extra or {})
    return sifttest.write_conf(os.path.join(tmp, name + '.conf'), settings)


def start(tmp, daemon, name, user, extra=None):
    """DAEMON -f as root with NOTIFY_SOCKET; returns the Proc once READY=1
    came (Proc.start raises if it does not)."""
    path = conf(tmp, daemon, name, user, extra)
    p = sifttest.Proc([sifttest.program(daemon), '-f', '-c', path], log=os.path.join(tmp, name + '.log'),
                      name=name, notify=True)
    p.conf_path = path
    p.sock = '%s/%s.sock' % (tmp, name)
    p.uid_file = '%s/%s.uids' % (tmp, name)
    p.pid_file = '%s/%s.pid' % (tmp, name)
    p.ctl = '%s/%s.ctl' % (tmp, name)
    return p.start()


def check_running(p, daemon, pw):
    # READY=1 has just arrived (Proc.start returned on it).
    check(sifttest.unix_listening(p.sock), '%s: the socket accepts when READY=1 arrives' % daemon)
    check_eq(uid_lines(p.uid_file), ['preinit euid=0', 'init euid=%d' % pw.pw_uid],
             '%s: preinit ran as root, init as %s, both before READY=1' % (daemon, pw.pw_name))
    check_eq(sifttest.proc_uids(p.pid), (pw.pw_uid,) * 4, '%s: every uid is %s\'s' % (daemon, pw.pw_name))
    check_eq(sifttest.proc_gids(p.pid), (pw.pw_gid,) * 4, '%s: every gid is %s\'s' % (daemon, pw.pw_name))
    try:
        with open(p.pid_file) as f:
            pid = f.read().strip()
        st = os.stat(p.pid_file)
    except OSError as e:
        pid, st = str(e), None
    check_eq(pid, str(p.pid), '%s: the pid file holds the pid' % daemon)
    check(st is not None and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o644,
          '%s: the pid file is root\'s, mode 0644 (written before the drop)' % daemon,
          st and (st.st_uid, oct(st.st_mode)))
    st = os.stat(p.sock)
    check_eq((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
             (pw.pw_uid, grp.getgrnam('postfix').gr_gid, 0o660),
             '%s: the socket is %s:postfix, mode 0660' % (daemon, pw.pw_name))
    # the control socket: the user's too (siftctl run as the user may use
    # it), mode 0600 from its creation
    try:
        st = os.stat(p.ctl)
        got = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    except OSError as e:
        got = str(e)
    check_eq(got, (pw.pw_uid, pw.pw_gid, 0o600),
             '%s: the control socket is %s\'s (owner and group), mode 0600' % (daemon, pw.pw_name))


def check_reload_stop(p, daemon, pw, sig):
    n = len(p.notifications)
    p.signal(sig)
    ok = p.wait_notify('READY=1', 30)
    got = [m for msgs in p.notifications[n:] for m in msgs]
    check(ok and 'RELOADING=1' in got and got.index('RELOADING=1') < len(got) - 1 - got[::-1].index('READY=1'),
          '%s: a reload sends RELOADING=1 then READY=1' % daemon, got)
    check(any(m.startswith('MONOTONIC_USEC=') for m in got), '%s: RELOADING=1 with MONOTONIC_USEC' % daemon, got)
    check_eq(uid_lines(p.uid_file)[2:], ['init euid=%d' % pw.pw_uid],
             '%s: a reload runs init as %s, not preinit' % (daemon, pw.pw_name))
    # a reload that fails: READY=1 again, with the reason in STATUS=
    with open(p.conf_path) as f:
        good = f.read()
    with open(p.conf_path, 'a') as f:
        f.write('testplug_verdict = no-such-verdict\n')
    n = len(p.notifications)
    p.signal(sig)
    ok = p.wait_notify('READY=1', 30)
    got = [m for msgs in p.notifications[n:] for m in msgs]
    check(ok and 'STATUS=reload failed, running the previous configuration' in got and p.alive(),
          '%s: a failed reload sends READY=1 with STATUS=reload failed' % daemon, got)
    with open(p.conf_path, 'w') as f:
        f.write(good)
    n = len(p.notifications)
    os.kill(p.pid, signal.SIGTERM)
    check(p.wait_notify('STOPPING=1', 15), '%s: SIGTERM sends STOPPING=1' % daemon, p.notifications[n:])
    check_eq(p.stop(), 0, '%s: exits 0' % daemon)
    # a directory of root's: the daemon user may not remove it; the next
    # start replaces it
    check(os.path.lexists(p.ctl), '%s: the control socket stays in a directory of root\'s' % daemon)


HOLDER = r"""
import socket, sys, time
srv = socket.socket(socket.AF_UNIX)
srv.bind(sys.argv[1])
srv.listen(8)
print("listening", flush=True)
time.sleep(600)
"""


def control_socket_takeover(tmp, daemon, user, pw):
    """A socket left at the control path that is not a live daemon's does
    not hold up the start: one whose listener takes no connection (its
    backlog full; connect() would wait for ever) is given up on after 1 s,
    one that a process of the daemon user's listens on is not taken for
    another daemon. Either way the daemon replaces it, says so, and
    siftctl reaches the daemon there."""
    for kind in ('stuck', 'foreign'):
        name = '%s-%s' % (kind, daemon)
        run_dir = os.path.join(tmp, 'run-' + name)
        os.mkdir(run_dir, 0o755)
        os.chown(run_dir, pw.pw_uid, pw.pw_gid)  # the run directory is the daemon user's
        ctl = os.path.join(run_dir, daemon + '.ctl')
        held, holder, p = [], None, None
        try:
            if kind == 'stuck':
                held += sifttest.stuck_unix_listener(ctl)
                want = 'took no connection within 1 s; replacing it'
            else:
                holder = subprocess.Popen([sys.executable, '-c', HOLDER, ctl], stdout=subprocess.PIPE, text=True,
                                          user=user)
                holder.stdout.readline()
                want = 'a process of uid %d listens there, not a daemon; replacing it' % pw.pw_uid
            t0 = time.monotonic()
            try:
                p = start(tmp, daemon, name, user, {'%s_control_socket' % daemon: ctl})
                started = None
            except sifttest.ProcError as e:
                started = str(e)
            took = time.monotonic() - t0
            check(started is None and took < 10, '%s: a %s socket at the control path does not hold up the start '
                  '(%.1f s)' % (daemon, kind, took), started)
            if p is None:
                continue
            check(want in p.log(), '%s: the %s socket is replaced, and the log says so' % (daemon, kind),
                  p.log_tail())
            rc, out = run([sifttest.program('siftctl'), '-c', p.conf_path, 'status', daemon, '--timeout', '10'],
                          timeout=30)
            check(rc == 0 and out.startswith(daemon + ' '), '%s: siftctl status reaches the daemon after it '
                  'replaced a %s socket' % (daemon, kind), out)
            # at stop, in a directory of the daemon user's, the daemon
            # removes its control socket (and its pid file)
            check_eq(p.stop(), 0, '%s: exits 0' % daemon)
            p = None
            check(not os.path.lexists(ctl), '%s: the control socket is removed at stop (the directory is %s\'s)'
                  % (daemon, user), os.listdir(run_dir))
        finally:
            if p is not None:
                p.stop()
            if holder is not None:
                holder.kill()
                holder.wait()
            for c in held:
                c.close()


def refusals(tmp, daemon, user):
    prog = sifttest.program(daemon)
    # an empty user as root: the start and -t refuse, naming the setting
    path = conf(tmp, daemon, 'empty-' + daemon, '')
    for args, what in ((['-f'], 'the start'), (['-t'], '-t')):
        rc, out = run([prog, '-c', path] + args, timeout=10)
        check(rc == 1 and '%s_user is empty' % daemon in out and '%s_user = sift' % daemon in out,
              '%s: %s refuses an empty %s_user as root, naming it' % (daemon, what, daemon), out)
    check(not os.path.exists('%s/empty-%s.sock' % (tmp, daemon)), '%s: nothing created when refused' % daemon)
    # explicit root: runs, with a warning
    rc, out = run([prog, '-c', path, '-o', '%s_user=root' % daemon, '-t'])
    check(rc == 0 and 'running as root' in out, '%s: %s_user = root runs, with a warning' % (daemon, daemon),
          out)
    for setting, value, want in (('user', 'no-such-user-x', '%s_user: unknown user' % daemon),
                                 ('socket_mode', '0999', '%s_socket_mode' % daemon),
                                 ('socket_mode', '660x', '%s_socket_mode' % daemon),
                                 ('socket_group', 'no-such-group-x', '%s_socket_group: unknown group' % daemon)):
        rc, out = run([prog, '-c', path, '-o', '%s_user=%s' % (daemon, user), '-o',
                       '%s_%s=%s' % (daemon, setting, value), '-t'])
        check(rc == 1 and want in out, '%s: %s_%s = %s refused' % (daemon, daemon, setting, value), out)
    # plugin_directory: not writable by group or others, owned by root
    for name, mode, owner, want in (('plugins-g', 0o775, 0, 'writable by group or others (mode 0775)'),
                                    ('plugins-o', 0o757, 0, 'writable by group or others (mode 0757)'),
                                    ('plugins-u', 0o755, pwd.getpwnam(user).pw_uid, 'owned by uid')):
        d = plugin_dir(tmp, name + '-' + daemon, mode)
        os.lchown(d, owner, -1)
        for args in (['-t'], ['-f']):
            rc, out = run([prog, '-c', path, '-o', '%s_user=%s' % (daemon, user), '-o', 'plugin_directory=' + d]
                          + args, timeout=10)
            check(rc == 1 and ('plugin_directory %s: refusing' % d) in out and want in out,
                  '%s %s: plugin_directory %s refused' % (daemon, args[0], name), out)
    # every directory on the way to plugin_directory is held to the same
    # rules (whoever can change one can swap what is below), except that a
    # sticky one of root's (/tmp) may be writable by others: they cannot
    # replace what they do not own there, and the next part's owner is
    # checked. Symbolic links are followed, their targets checked alike.
    ww = os.path.join(tmp, 'ww-' + daemon)
    os.mkdir(ww)
    os.chmod(ww, 0o777)
    d = plugin_dir(ww, 'plugins')
    sticky = os.path.join(tmp, 'sticky-' + daemon)
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    good = plugin_dir(tmp, 'plugins-good-' + daemon)
    theirs = os.path.join(sticky, 'theirs')
    os.symlink(good, theirs)
    nobody = pwd.getpwnam('nobody')
    os.lchown(theirs, nobody.pw_uid, -1)
    ours = os.path.join(sticky, 'ours')
    os.symlink(good, ours)
    for pdir, want in ((d, 'plugin_directory %s: refusing the directory %s on its path, writable by group or '
                        'others (mode 0777); fix it with chmod go-w %s' % (d, ww, ww)),
                       (theirs, 'plugin_directory %s: refusing a symbolic link owned by uid %d (nobody), not by '
                        'root; fix it with chown -h root %s' % (theirs, nobody.pw_uid, theirs)),
                       (os.path.join(theirs, '.'), 'refusing the symbolic link %s on its path' % theirs)):
        for args in (['-t'], ['-f']):
            rc, out = run([prog, '-c', path, '-o', '%s_user=%s' % (daemon, user), '-o', 'plugin_directory=' + pdir]
                          + args, timeout=10)
            check(rc == 1 and want in out, '%s %s: plugin_directory %s refused, naming the part and the fix'
                  % (daemon, args[0], pdir[len(tmp) + 1:]), out)
    for pdir, what in ((good, 'a root-owned directory under /tmp'),
                       (ours, "root's symbolic link in a sticky directory to a trusted one")):
        rc, out = run([prog, '-c', path, '-o', '%s_user=%s' % (daemon, user), '-o', 'plugin_directory=' + pdir,
                       '-t'], timeout=10)
        check(rc == 0, '%s -t: plugin_directory %s accepted (%s)' % (daemon, os.path.relpath(pdir, tmp), what), out)
    if daemon != 'filterd':
        return
    # quarantine_directory (filterd): not writable by group or others, who
    # could plant release tokens; the daemon user owns it
    pw = pwd.getpwnam(user)
    for name, mode in (('quarantine-g', 0o770), ('quarantine-o', 0o757), ('quarantine-ok', 0o750)):
        q = os.path.join(tmp, name)
        os.mkdir(q)
        os.chmod(q, mode)
        os.chown(q, pw.pw_uid, pw.pw_gid)
        for args in (['-t'], ['-f']) if mode != 0o750 else (['-t'],):
            rc, out = run([prog, '-c', path, '-o', '%s_user=%s' % (daemon, user), '-o', 'quarantine_directory=' + q]
                          + args, timeout=10)
            if mode == 0o750:
                check(rc == 0, '%s %s: quarantine_directory mode 0750, owned by %s, accepted' % (daemon, args[0], user),
                      out)
            else:
                want = ('quarantine_directory %s: refusing a directory writable by group or others (mode %04o); '
                        'fix it with chmod go-w %s' % (q, mode, q))
                check(rc == 1 and want in out, '%s %s: quarantine_directory mode %04o refused, naming it and the fix'
                      % (daemon, args[0], mode), out)
    # owned by another unprivileged user, who could replace messages and
    # tokens: refused unless it is filterd_user (root is always accepted)
    q = os.path.join(tmp, 'quarantine-nobody')
    os.mkdir(q, 0o750)
    nobody = pwd.getpwnam('nobody')
    os.chown(q, nobody.pw_uid, nobody.pw_gid)
    q_other = os.path.join(tmp, 'quarantine-other')
    os.mkdir(q_other, 0o750)
    os.chown(q_other, 54321, 54321)  # a uid with no user
    for run_as, qdir, owner in (('root', q, 'nobody'), (user, q_other, 'uid 54321')):
        for args in (['-t'], ['-f']):
            rc, out = run([prog, '-c', path, '-o', '%s_user=%s' % (daemon, run_as), '-o', 'quarantine_directory='
                           + qdir] + args, timeout=10)
            may = '' if run_as == 'root' else ' or ' + run_as
            want = ('quarantine_directory %s: refusing a directory owned by uid %d (%s), not by root%s; '
                    'fix it with chown %s %s' % (qdir, os.stat(qdir).st_uid, owner, may, run_as, qdir))
            check(rc == 1 and want in out, '%s %s: quarantine_directory owned by %s refused with %s_user = %s, '
                  'naming the owner and the fix' % (daemon, args[0], owner, daemon, run_as), out)
    q_root = os.path.join(tmp, 'quarantine-root')
    os.mkdir(q_root, 0o750)
    rc, out = run([prog, '-c', path, '-o', '%s_user=%s' % (daemon, user), '-o', 'quarantine_directory=' + q_root,
                   '-t'], timeout=10)
    check(rc == 0, '%s -t: quarantine_directory owned by root accepted' % daemon, out)
    # without filterd_user (as root) the daemon's user is unknown: -p shows
    # the configuration (the package's /var/lib/sift/quarantine is sift's)
    rc, out = run([prog, '-c', '/dev/null', '-o', 'quarantine_directory=' + q, '-p'], timeout=10)
    check(rc == 0 and 'quarantine_directory = %s' % q in out,
          '%s -p without %s_user: a quarantine_directory owned by nobody is not held against it' % (daemon, daemon),
          out)


def main():
    if os.geteuid() != 0:
        check(False, 'needs root (the daemons start as root and drop their privileges)')
        return done()
    if not sifttest.daemon_notifies('filterd'):
        print('note: built with -Dsystemd=disabled: readiness not tested', flush=True)
    user = sifttest.daemon_user()
    if user in ('', 'root'):
        user = 'nobody'
    pw = pwd.getpwnam(user)
    tmp = tempfile.mkdtemp(prefix='sift-priv-')
    os.chmod(tmp, 0o755)  # root's, as /run/sift; the daemons read their configuration here
    plugin_dir(tmp, 'plugins')
    procs = []
    try:
        # filterd's engines reload on SIGHUP (native) or SIGUSR1 (libmilter owns SIGHUP)
        # (a build without libmilter, -Dlibmilter=disabled, has the native engine alone)
        engines = os.environ.get('SIFT_FILTERD_ENGINES', 'native libmilter').split()
        for daemon, name, extra, reload_sig in (
                ('filterd', 'filterd', {'filterd_engine': 'native'}, signal.SIGHUP),
                ('filterd', 'filterd-libmilter', {'filterd_engine': 'libmilter'}, signal.SIGUSR1),
                ('policyd', 'policyd', {}, signal.SIGHUP)):
            if extra.get('filterd_engine', 'native') not in engines:
                continue
            what = '%s (%s)' % (daemon, name)
            # what the daemon user, who may write to the pid file's
            # directory, could leave at a fixed temporary name: the pid
            # file is written through a name nobody can guess
            os.mkdir('%s/%s.pid.tmp' % (tmp, name))
            try:
                p = start(tmp, daemon, name, user, extra)
            except sifttest.ProcError as e:
                check(False, '%s starts as root with %s_user = %s' % (what, daemon, user), e)
                continue
            procs.append(p)
            check(True, '%s starts as root with %s_user = %s' % (what, daemon, user))
            check_running(p, what, pw)
            if sifttest.daemon_notifies(daemon):
                check_reload_stop(p, what, pw, reload_sig)
        for daemon in ('filterd', 'policyd'):
            control_socket_takeover(tmp, daemon, user, pw)
        for daemon in ('filterd', 'policyd'):
            refusals(tmp, daemon, user)
    finally:
        sifttest.stop_all(procs)
        if not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(tmp, ignore_errors=True)
    return done()


if __name__ == '__main__':
    sys.exit(main())
