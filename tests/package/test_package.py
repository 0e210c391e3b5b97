#!/usr/bin/python3
"""The Debian package, end to end, on this machine (as root):

1. builds it: the source tree (git's tracked and untracked, not ignored,
   files) copied into a temporary directory, `dpkg-buildpackage -b -us -uc`;
2. `apt-get install -y ./sift_*.deb` (which brings the dependencies);
3. checks the installed layout: the user sift (system, no shell, home
   /var/lib/sift), programs, plugins, conffiles, .conf.d directories, rules,
   man pages, units, tmpfiles.d, the sift directories' owners and modes;
   `systemd-analyze verify` and `systemd-analyze security --offline=yes` on
   the installed units;
4. writes drop-ins in /etc/sift/*.conf.d/ (listen ports, the plugins, the
   local DNS server of tests/lib/dnsserver.py, a ClamAV test database), makes
   /run/sift as systemd-tmpfiles does at boot (systemd is not PID 1 here),
   and starts both daemons with the command lines of the units' ExecStart=,
   as root, with a NOTIFY_SOCKET as systemd gives a Type=notify service: each
   must send READY=1, listen, and run as user sift (`ps -o user=`);
5. wires a private Postfix (tests/lib/sifttest.py) to them and sends mail: a
   clean message is delivered, GTUBE is refused at end of data, EICAR is
   quarantined (not delivered, listed by `siftctl quarantine list`), an SPF
   fail is refused at RCPT;
6. `apt-get purge -y sift`: nothing of the package is left; the user sift
   stays (debian/README.Debian).

SIFT_PACKAGE_DEB=/path/sift_VERSION_ARCH.deb skips the build and installs
that file (while working on the test itself). Skipped (exit 77, with a
message) where dpkg-buildpackage or apt-get is
missing. Prints the build and install times, the units' exposure, and
"N passed, N failed".
"""
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'clamav', 'tests'))
import dnsserver  # noqa: E402
sys.path.insert(0, os.path.join(HERE, '..', 'postfix'))
import test_snippets  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check, check_eq, done, free_port  # noqa: E402

MULTIARCH = None
PLUGINS = ('access', 'dkim', 'spf', 'clamav', 'spam', 'senderlogin', 'ratelimit')
GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
EICAR = r'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
ZONE = {'.': [{'name': '.', 'type': 'SOA', 'data': 'ns.root.test. hostmaster.root.test. 1 3600 600 86400 60'},
              {'name': 'pass.example.test', 'type': 'TXT', 'data': 'v=spf1 ip4:127.0.0.1 -all'},
              {'name': 'fail.example.test', 'type': 'TXT', 'data': 'v=spf1 -all'}]}
UNITS = ('sift-filterd.service', 'sift-policyd.service')
# What the package owns or makes: none of it may be left after purge.
PURGED = ['/etc/sift', '/var/lib/sift', '/var/cache/sift', '/run/sift', '/usr/sbin/filterd',
          '/usr/sbin/policyd', '/usr/sbin/siftctl', '/usr/share/sift', '/usr/share/doc/sift',
          '/usr/lib/tmpfiles.d/sift.conf', '/usr/lib/sysusers.d/sift.conf',
          '/usr/share/man/man5/sift.conf.5.gz', '/usr/share/man/man8/filterd.8.gz',
          '/usr/share/man/man8/policyd.8.gz', '/usr/share/man/man8/siftctl.8.gz'] + \
    ['/lib/systemd/system/' + u for u in UNITS]


def run(argv, timeout=600, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def tail(text, n=40):
    return '\n'.join(text.splitlines()[-n:])


def installed(pkg='sift'):
    r = run(['dpkg-query', '-W', '-f=${Status}', pkg])
    return r.returncode == 0 and 'installed' in r.stdout.split()


def copy_tree(src, dst):
    """The source tree as git sees it (tracked and untracked, not ignored)."""
    r = run(['git', '-C', src, 'ls-files', '-z', '-co', '--exclude-standard'])
    if r.returncode != 0:
        return False
    for rel in sorted(set(filter(None, r.stdout.split('\0')))):
        s = os.path.join(src, rel)
        if not os.path.lexists(s) or os.path.isdir(s):
            continue
        d = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        shutil.copy2(s, d, follow_symlinks=False)
    return True


def build(tmp):
    src = os.path.join(tmp, 'sift')
    if not check(copy_tree(sifttest.srcdir(), src), 'source tree copied (git ls-files)'):
        return None
    env = dict(os.environ, DEB_BUILD_OPTIONS='nocheck parallel=%d' % (os.cpu_count() or 1))
    t0 = time.monotonic()
    r = run(['nice', 'dpkg-buildpackage', '-b', '-us', '-uc'], cwd=src, env=env, timeout=1800)
    secs = time.monotonic() - t0
    with open(os.path.join(tmp, 'build.log'), 'w') as f:
        f.write(r.stdout + r.stderr)
    print('package build: %.0f s' % secs)
    debs = sorted(f for f in os.listdir(tmp) if re.match(r'sift_.*\.deb$', f))
    check(r.returncode == 0 and len(debs) == 1, 'dpkg-buildpackage -b -us -uc builds sift_*.deb',
          tail(r.stdout + r.stderr))
    return os.path.join(tmp, debs[0]) if debs else None


def install(deb):
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    t0 = time.monotonic()
    # without Recommends, as servers install: the Depends alone must give a
    # filterd that starts with the shipped configuration
    r = run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', os.path.join('.', os.path.basename(deb))],
            cwd=os.path.dirname(deb), env=env, timeout=900)
    print('package install: %.0f s' % (time.monotonic() - t0))
    check(r.returncode == 0 and installed(), 'apt-get install ./sift_*.deb', tail(r.stdout + r.stderr))
    return r.stdout + r.stderr


def owner_mode(path):
    st = os.stat(path)
    return (pwd.getpwuid(st.st_uid).pw_name, st.st_gid, stat.S_IMODE(st.st_mode))


def check_layout(install_log):
    try:
        pw = pwd.getpwnam('sift')
    except KeyError:
        check(False, 'user sift exists')
        return
    # postinst compiled the stock ruleset into the cache, as sift
    cache = '/var/cache/sift/spam'
    files = os.listdir(cache) if os.path.isdir(cache) else []
    check(files and all(os.stat(os.path.join(cache, f)).st_uid == pw.pw_uid for f in files),
          'the installation filled %s (siftctl spam compile, as sift)' % cache,
          (files, tail(install_log, 10)))
    check(pw.pw_uid < 1000 and pw.pw_dir == '/var/lib/sift' and pw.pw_shell in
          ('/usr/sbin/nologin', '/bin/false'), 'user sift: system user, home /var/lib/sift, no shell',
          (pw.pw_uid, pw.pw_dir, pw.pw_shell))
    for p in ('filterd', 'policyd', 'siftctl'):
        check(os.access('/usr/sbin/' + p, os.X_OK), '/usr/sbin/%s installed' % p)
    plugdir = '/usr/lib/%s/sift/plugins' % MULTIARCH
    missing = [p for p in PLUGINS if not os.path.isfile(os.path.join(plugdir, p + '.so'))]
    check(not missing, 'every plugin in %s' % plugdir, missing)
    conffiles = run(['dpkg-query', '-W', '-f=${Conffiles}', 'sift']).stdout
    for c in ('/etc/sift/filterd.conf', '/etc/sift/policyd.conf'):
        check(os.path.isfile(c) and c in conffiles, '%s installed as a conffile' % c, conffiles)
    for d in ('/etc/sift/filterd.conf.d', '/etc/sift/policyd.conf.d', '/etc/sift/dkim'):
        check(os.path.isdir(d) and not os.listdir(d), '%s: an empty directory' % d)
    check(owner_mode('/etc/sift/dkim') == ('root', 0, 0o755), '/etc/sift/dkim: root 0755',
          owner_mode('/etc/sift/dkim'))
    # the configuration may hold a Redis password: readable by sift, not by all
    for c in ('/etc/sift/filterd.conf', '/etc/sift/policyd.conf'):
        got = owner_mode(c) if os.path.isfile(c) else None
        check(got == ('root', pw.pw_gid, 0o640), '%s: root:sift 0640' % c, got)
    # filterd and policyd enabled; the DMARC report timer left off
    wants = '/etc/systemd/system/%s.wants/%s'
    check(os.path.lexists(wants % ('multi-user.target', 'sift-filterd.service')) and
          os.path.lexists(wants % ('multi-user.target', 'sift-policyd.service')),
          'sift-filterd and sift-policyd enabled')
    check(not os.path.lexists(wants % ('timers.target', 'sift-dmarc-report.timer')),
          'sift-dmarc-report.timer not enabled (README: enable --now turns it on)')
    check(os.path.isfile('/usr/share/sift/rules/sift.cf'), 'rules in /usr/share/sift/rules')
    for m in ('man5/sift.conf.5.gz', 'man8/filterd.8.gz', 'man8/policyd.8.gz', 'man8/siftctl.8.gz'):
        check(os.path.isfile('/usr/share/man/' + m), 'man page %s' % m)
    r = run(['man', '-P', 'cat', '5', 'sift.conf'], env=dict(os.environ, MANWIDTH='100'))
    check(r.returncode == 0 and 'spf_softfail_action' in r.stdout and 'filterd_listen' in r.stdout,
          'man 5 sift.conf lists the parameters', tail(r.stdout + r.stderr, 10))
    r = run(['/usr/sbin/filterd', '-p', '-c', '/dev/null'])
    check('plugin_directory = %s\n' % plugdir in r.stdout, 'compiled-in plugin_directory is %s' % plugdir,
          tail(r.stdout + r.stderr, 5))
    for u in UNITS:
        check(os.path.isfile('/lib/systemd/system/' + u), 'unit %s installed' % u)
    for d in ('/var/lib/sift', '/var/lib/sift/quarantine', '/var/cache/sift', '/var/cache/sift/spam',
              '/run/sift'):
        got = owner_mode(d) if os.path.isdir(d) else None
        check(got == ('sift', pw.pw_gid, 0o750), '%s: sift:sift 0750' % d, got)
    r = run(['systemd-analyze', 'verify'] + ['/lib/systemd/system/' + u for u in UNITS])
    check(r.returncode == 0 and not r.stderr.strip(), 'systemd-analyze verify: the installed units',
          r.stdout + r.stderr)
    for u in UNITS:
        r = run(['systemd-analyze', 'security', '--offline=yes', '/lib/systemd/system/' + u])
        m = re.search(r'Overall exposure level for \S+: ([0-9.]+) (\S+)', r.stdout)
        print('%s: exposure %s' % (u, '%s %s' % m.groups() if m else '?'))
        check(m is not None and float(m.group(1)) <= 3.0, '%s: exposure at most 3.0 (OK)' % u,
              tail(r.stdout + r.stderr, 5))


def exec_start(unit):
    """The unit's ExecStart= command line, split as systemd does (no
    prefixes such as '-' or '+' are expected)."""
    with open('/lib/systemd/system/' + unit) as f:
        for line in f:
            m = re.match(r'ExecStart=(.+)$', line.strip())
            if m:
                return shlex.split(m.group(1))
    return None


class Daemon:
    """A daemon started from its unit's ExecStart=, with a NOTIFY_SOCKET."""

    def __init__(self, unit, tmp, port):
        self.unit, self.port = unit, port
        self.argv = exec_start(unit)
        self.logpath = os.path.join(tmp, unit + '.log')
        # abstract, as the daemon sends READY=1 after it became sift, which
        # cannot enter the test's private directory
        self.notify_name = 'sift-package-test-%d-%s' % (os.getpid(), unit)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind('\0' + self.notify_name)
        self.proc = None
        self.ready_after = None

    def start(self, timeout):
        env = {k: v for k, v in os.environ.items() if not k.startswith(('SIFT_', 'ASAN', 'UBSAN'))}
        env['NOTIFY_SOCKET'] = '@' + self.notify_name
        t0 = time.monotonic()
        with open(self.logpath, 'w') as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)
        # READY=1 is due once the listeners are open and the plugins are
        # ready: wait for it up to the timeout, or 30 s after the port opened
        ready = False
        listen_at = None
        self.notify.settimeout(0.2)
        while time.monotonic() - t0 < timeout and self.proc.poll() is None and not ready:
            try:
                msg = self.notify.recv(4096).decode(errors='replace')
                ready = 'READY=1' in msg.split('\n')
            except socket.timeout:
                pass
            if listen_at is None and sifttest.tcp_listening(self.port):
                listen_at = time.monotonic()
            if listen_at is not None and time.monotonic() - listen_at > 30:
                break
        if ready:
            self.ready_after = time.monotonic() - t0
        listening = sifttest.wait_port(self.port, timeout=max(1.0, timeout - (time.monotonic() - t0)),
                                       alive=lambda: self.proc.poll() is None)
        return ready, listening

    def log(self):
        try:
            with open(self.logpath, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.notify.close()


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def msg(subject, body, sender):
    return ('From: %s\r\nTo: user@sift.test\r\nSubject: %s\r\nMessage-ID: <%s.%d@example.test>\r\n\r\n%s\r\n'
            % (sender, subject, subject.replace(' ', '-'), time.time_ns(), body))


def reconfigure_symlink(tmp):
    """postinst runs again on every upgrade and reinstall as root, while the
    parents of its directories belong to sift: a symlink sift planted in
    place of the quarantine must not hand its target to sift."""
    victim = os.path.join(tmp, 'victim')
    os.mkdir(victim, 0o755)
    q = '/var/lib/sift/quarantine'
    os.rename(q, q + '.real')
    os.symlink(victim, q)
    try:
        version = run(['dpkg-query', '-W', '-f=${Version}', 'sift']).stdout
        r = run(['/var/lib/dpkg/info/sift.postinst', 'configure', version])
        got = owner_mode(victim)
        check(r.returncode == 0 and got == ('root', 0, 0o755),
              'postinst configure with a symlink in place of %s: its target untouched, postinst '
              'completes' % q, (r.returncode, got, tail(r.stdout + r.stderr, 8)))
    finally:
        os.unlink(q)
        os.rename(q + '.real', q)


def readme_snippets(ports):
    """README.md's main.cf and master.cf blocks, as tests/postfix/test_snippets.py
    extracts and substitutes them (only the daemons' and the submission
    services' ports change)."""
    main, master = [], []
    for kind, text, where in test_snippets.extract():
        if where.startswith('README.md:'):
            (main if kind == 'main.cf' else master).append(test_snippets.substitute(text, ports))
    return '\n'.join(main), '\n'.join(master)


def local_data(dns_zone):
    """What an administrator edits: the DKIM key and the two tables at the
    paths the shipped filterd.conf names (siftctl dkim genkey, as README and
    plugins/dkim/README.md say), and the domain's DNS record."""
    r = run(['/usr/sbin/siftctl', 'dkim', 'genkey', '-d', 'sift.test', '-s', 'mail', '-D', '/etc/sift/dkim'])
    check(r.returncode == 0, 'siftctl dkim genkey -d sift.test -s mail -D /etc/sift/dkim', r.stderr)
    txt = ''.join(re.findall(r'"([^"]*)"', r.stdout))
    dns_zone['.'].append({'name': 'mail._domainkey.sift.test', 'type': 'TXT', 'data': txt})
    key = '/etc/sift/dkim/sift.test.mail.key'
    write('/etc/sift/dkim/keytable', 'mail._domainkey.sift.test  sift.test:mail:%s\n' % key)
    write('/etc/sift/dkim/signingtable', 'sift.test  mail._domainkey.sift.test\n')
    # who may send as whom (senderlogin, policyd.conf)
    write('/etc/sift/login_maps.pcre', '/^(.*)@sift\\.test$/  ${1}\n')


def mail_flow(tmp):
    import cvlib  # plugins/clamav/tests: a ClamAV database that finds EICAR
    dbdir = os.path.join(tmp, 'clamav-db')
    cvlib.make_db(dbdir)
    for d in (tmp, dbdir):
        os.chmod(d, 0o755)
    zone = {k: list(v) for k, v in ZONE.items()}
    fport, pport = free_port(), free_port()
    # the shipped configuration refuses to start without its local data
    r = run(['/usr/sbin/filterd', '-t'])
    check(r.returncode == 1 and 'dkim_signing_table' in r.stderr and '/etc/sift/dkim/signingtable' in r.stderr,
          'filterd -t on the shipped configuration names the missing DKIM table', r.stdout + r.stderr)
    r = run(['/usr/sbin/policyd', '-t'])
    check(r.returncode == 1 and 'senderlogin_login_maps' in r.stderr and '/etc/sift/login_maps.pcre' in r.stderr,
          'policyd -t on the shipped configuration names the missing login map', r.stdout + r.stderr)
    local_data(zone)
    dns = dnsserver.DNSServer(zone).start()
    # What differs in this test lab from a real server, and nothing else:
    # free ports instead of 8891/8892, the test DNS server, a test ClamAV
    # database instead of freshclam's.
    common = ('dns_servers = 127.0.0.1:%d\nmyhostname = mx.sift.test\n' % dns.port)
    write('/etc/sift/filterd.conf.d/50-package-test.conf', common + (
        'filterd_listen = inet:127.0.0.1:%d\n'
        'clamav_database_directory = %s\n' % (fport, dbdir)))
    write('/etc/sift/policyd.conf.d/50-package-test.conf', common + (
        'policyd_listen = inet:127.0.0.1:%d\n' % pport))
    # /run/sift as systemd-tmpfiles makes it at boot
    r = run(['systemd-tmpfiles', '--create', 'sift.conf'])
    check(r.returncode == 0 and os.path.isdir('/run/sift'), 'systemd-tmpfiles --create sift.conf',
          r.stdout + r.stderr)
    daemons = [Daemon('sift-policyd.service', tmp, pport), Daemon('sift-filterd.service', tmp, fport)]
    h = None
    try:
        for d in daemons:
            check(d.argv is not None and d.argv[0].startswith('/usr/sbin/'), '%s: ExecStart= found' % d.unit,
                  d.argv)
            if not d.argv:
                return
            ready, listening = d.start(timeout=120)
            check(ready, '%s: %s sent READY=1 (Type=notify)' % (d.unit, ' '.join(d.argv)),
                  tail(d.log(), 15))
            check(listening, '%s: listening on 127.0.0.1:%d' % (d.unit, d.port), tail(d.log(), 15))
            if d.ready_after is not None:
                print('%s: ready after %.1f s' % (d.unit, d.ready_after))
            user = run(['ps', '-o', 'user=', '-p', str(d.proc.pid)]).stdout.strip()
            check_eq(user, 'sift', '%s: ps -o user= shows sift' % d.unit)
            if not listening:
                return
        # README's Postfix snippets, verbatim but for the ports
        h = test_snippets.Harness.__new__(test_snippets.Harness)
        h.tmp, h.procs = tmp, []
        h.ports = {'filterd': fport, 'policyd': pport, 'submission': free_port(), 'submissions': free_port()}
        h.cert, h.key = os.path.join(tmp, 'cert.pem'), os.path.join(tmp, 'key.pem')
        run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=mx.sift.test',
             '-keyout', h.key, '-out', h.cert])
        main_text, master_text = readme_snippets(h.ports)
        check('check_policy_service' in main_text and 'smtpd_milters' in main_text and
              'submission' in master_text, "README's main.cf and master.cf snippets found", main_text)
        pf = h.postfix('pf', main_text, master_text)
        sender = 'alice@pass.example.test'
        r = pf.send(sender, ['user@sift.test'], msg('clean', 'Hello, see you tomorrow.', sender))
        check(r.accepted, 'a clean message is accepted', r)
        got = None
        try:
            got = pf.delivered_by_queue_id(r.queue_id, timeout=30)
        except (sifttest.PostfixError, AttributeError) as e:
            print(e)
        check(got is not None, 'the clean message is delivered')
        if got is not None:
            hdrs = got.header_block()
            check((got.header('Received-SPF') or '').startswith('pass'), 'delivered: Received-SPF: pass', hdrs)
            check('X-Virus-Scanned' in hdrs, 'delivered: X-Virus-Scanned (clamav)', hdrs)
            # scored below spam_tag_level (2): no X-Spam-* headers, as with
            # amavisd-new; GTUBE below shows the scoring
            check('X-Spam-Flag' not in hdrs, 'delivered: not flagged as spam', hdrs)
            check('Authentication-Results' in hdrs and 'dkim=' in hdrs, 'delivered: dkim= in Authentication-Results',
                  hdrs)
        # clamav_inbound_action = quarantine: accepted, kept, not delivered
        r = pf.send(sender, ['user@sift.test'], msg('eicar', EICAR, sender))
        check(r.accepted, 'EICAR accepted into the quarantine', r)
        q = run(['/usr/sbin/siftctl', 'quarantine', 'list'])
        check(q.returncode == 0 and sender in q.stdout, 'siftctl quarantine list shows the EICAR message',
              q.stdout + q.stderr)
        r = pf.send(sender, ['user@sift.test'], msg('gtube', GTUBE, sender))
        check(r.rejected_at() == 'eom' and r.eom[0] == 554, 'GTUBE refused at end of data (554)', r)
        r = pf.send('mallory@fail.example.test', ['user@sift.test'],
                    msg('spf fail', 'hello', 'mallory@fail.example.test'))
        check(r.rejected_at() == 'rcpt' and r.rcpts and r.rcpts[0][0] == 550, 'SPF fail refused at RCPT (550)',
              r)
        # originating: an authenticated user on README's submission service;
        # filterd signs with the key of the local data
        acc, qid = test_snippets.send_tls(h.ports['submission'], False, 'authuser@sift.test', 'user@sift.test',
                                          msg('signed', 'Signed by filterd.', 'authuser@sift.test'))
        check(acc, 'authenticated submission accepted', qid)
        if acc:
            try:
                m = pf.delivered_by_queue_id(qid, timeout=30)
            except sifttest.PostfixError as e:
                m = None
                print(e)
            check(m is not None and 'd=sift.test' in (m.header('DKIM-Signature') or ''),
                  'submitted mail delivered with a DKIM-Signature of d=sift.test', m and m.header_block())
            if m is not None:
                path = os.path.join(tmp, 'signed.eml')
                with open(path, 'wb') as f:
                    f.write(m.raw if isinstance(m.raw, bytes) else m.raw.encode())
                v = run(['/usr/sbin/siftctl', '-o', 'dns_servers=127.0.0.1:%d' % dns.port, 'dkim', 'verify', path])
                check(v.returncode == 0, 'siftctl dkim verify passes on the delivered copy', v.stdout + v.stderr)
    finally:
        if h:
            h.stop()
        for d in daemons:
            d.stop()
        dns.stop()
        for f in ('/etc/sift/filterd.conf.d/50-package-test.conf', '/etc/sift/policyd.conf.d/50-package-test.conf'):
            if os.path.exists(f):
                os.unlink(f)
        for d in daemons:
            if d.proc and d.proc.returncode not in (0, -signal.SIGTERM):
                print('%s exited with %s; log:\n%s' % (d.unit, d.proc.returncode, tail(d.log())))


def purge():
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    r = run(['apt-get', 'purge', '-y', '-q', 'sift'], env=env, timeout=600)
    check(r.returncode == 0 and not installed(), 'apt-get purge -y sift', tail(r.stdout + r.stderr))
    st = run(['dpkg-query', '-W', '-f=${Status}', 'sift']).stdout
    check(st == '' or 'not-installed' in st, 'dpkg no longer knows sift (not even its conffiles)', st)
    plugdir = '/usr/lib/%s/sift' % MULTIARCH
    left = [p for p in PURGED + [plugdir] if os.path.lexists(p)]
    check(not left, 'nothing of the package is left after purge', left)
    try:
        pwd.getpwnam('sift')
        check(True, 'the user sift is kept after purge (debian/README.Debian)')
    except KeyError:
        check(False, 'the user sift is kept after purge (debian/README.Debian)')


def main():
    global MULTIARCH
    for tool in ('dpkg-buildpackage', 'apt-get', 'dpkg-query'):
        if not shutil.which(tool):
            print('SKIP: %s not found: the package test needs a Debian system with dpkg-dev' % tool)
            return 77
    if os.geteuid() != 0:
        check(False, 'the package test runs as root (it installs the package)')
        return done()
    MULTIARCH = run(['dpkg-architecture', '-qDEB_HOST_MULTIARCH']).stdout.strip()
    if installed():
        print('sift is installed already: purging it first')
        run(['apt-get', 'purge', '-y', '-q', 'sift'], env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))
    tmp = tempfile.mkdtemp(prefix='sift-pkg-', dir=os.environ.get('SIFT_TEST_TMP') or None)
    try:
        deb = os.environ.get('SIFT_PACKAGE_DEB') or build(tmp)
        if not deb:
            return done()
        log = install(deb)
        if installed():
            try:
                check_layout(log)
                reconfigure_symlink(tmp)
                mail_flow(tmp)
            finally:
                purge()
    finally:
        if os.environ.get('SIFT_KEEP_TMP'):
            print('kept', tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return done()


if __name__ == '__main__':
    sys.exit(main())
