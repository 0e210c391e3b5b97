#!/usr/bin/python3
"""Sift quickstart: filterd and policyd with the shipped conf/filterd.conf and
conf/policyd.conf, wired to a private Postfix on 127.0.0.1 (inbound smtpd on
2525, an ORIGINATING submission service on 2587), mail delivered into a
Maildir under ./.quickstart/. Sends a few test messages, shows what happened
to each, then keeps everything running until Ctrl-C and stops exactly what it
started.

Started by ./quickstart (which installs dependencies and builds first).
Run as root:  /usr/bin/python3 tools/quickstart.py [--builddir build] [--once]

Only the settings a throw-away run needs are overridden on the daemons'
command lines (-o): where they listen, plugin_directory (the build tree),
the pid file, *_user (root: no `sift` user exists before the package
installs; the daemons log that they run as root), and
dns_servers (a closed loopback port: no query leaves the machine). Unless
--no-demo-maps, one demo access map per daemon (a blocked sender for
filterd, a blocked recipient for policyd) is added when the shipped conf
enables `access` and leaves that map unset, so that each daemon shows a
reject.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import sys
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
import sifttest  # noqa: E402

GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
EICAR = r'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'


def bold(s):
    return '\033[1m%s\033[0m' % s if sys.stdout.isatty() else s


def port_busy(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def pick_port(want):
    if not port_busy(want):
        return want
    p = sifttest.free_port()
    print('  note: 127.0.0.1:%d is busy, using %d instead' % (want, p))
    return p


def conf_value(path, name):
    """Value of `name` in a main.cf-syntax file (no $expansion), or None."""
    val = None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    cur = None
    for line in lines:
        if line.startswith('#') or not line.strip():
            cur = None
            continue
        if line[0] in ' \t' and cur == name:
            val += ' ' + line.strip()
            continue
        m = re.match(r'([A-Za-z0-9_]+)\s*=\s*(.*)$', line)
        cur = m.group(1) if m else None
        if cur == name:
            val = m.group(2).strip()
    return val


def conf_mentions(path, name):
    try:
        with open(path) as f:
            return re.search(r'^#?\s*%s\s*=' % re.escape(name), f.read(), re.M) is not None
    except OSError:
        return False


class Quickstart:
    def __init__(self, a):
        self.a = a
        self.builddir = os.path.abspath(a.builddir)
        self.dir = os.path.abspath(a.dir)
        self.procs = {}
        self.pf = None
        self.demo_notes = []

    # -- setup ---------------------------------------------------------------

    def check_previous(self):
        pidf = os.path.join(self.dir, 'postfix', 'spool', 'pid', 'master.pid')
        try:
            pid = int(open(pidf).read().strip())
        except (OSError, ValueError):
            pid = None
        if pid and sifttest._pid_alive(pid):
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                cmd = f.read()
            if b'master' in cmd:
                sys.exit('quickstart: a previous quickstart Postfix (PID %d) is still running; '
                         'stop that quickstart (Ctrl-C) first' % pid)
        for name in ('filterd', 'policyd'):
            try:
                pid = int(open(os.path.join(self.dir, name + '.pid')).read().strip())
            except (OSError, ValueError):
                continue
            if sifttest._pid_alive(pid):
                sys.exit('quickstart: a previous quickstart %s (PID %d) is still running' % (
                    name, pid))

    def start_daemon(self, name, port):
        exe = os.path.join(self.builddir, name, name)
        conf = os.path.join(SRC, 'conf', name + '.conf')
        if not sifttest.daemon_is_real(exe):
            print('  %s: %s' % (name, bold('MISSING')) +
                  ' (%s is not built yet or is a stub); Postfix runs without it' % exe)
            return None
        if not os.path.exists(conf):
            print('  %s: %s missing; Postfix runs without it' % (name, conf))
            return None
        argv = [exe, '-f', '-c', conf,
                '-o', 'plugin_directory=%s' % os.path.join(self.builddir, 'plugins'),
                '-o', '%s_listen=inet:127.0.0.1:%d' % (name, port),
                '-o', '%s_pid_file=%s' % (name, os.path.join(self.dir, name + '.pid')),
                '-o', '%s_user=root' % name]
        # Keep DNS on the loopback: a port where nothing answers, so that no
        # query leaves the machine (the shipped conf uses the system resolver).
        argv += ['-o', 'dns_servers=127.0.0.1:%d' % self.dns_port]
        demo = self.demo_maps(name, conf)
        demo.update(self.demo_spam(name, conf))
        for k, v in demo.items():
            argv += ['-o', '%s=%s' % (k, v)]
        p = sifttest.Proc(argv, log=os.path.join(self.dir, name + '.log'), port=port,
                          name=name)
        try:
            p.start()
        except sifttest.ProcError as e:
            print('  %s: %s: %s' % (name, bold('FAILED TO START'), e))
            print('  Postfix runs without it')
            return None
        self.procs[name] = p
        print('  %s: PID %d on 127.0.0.1:%d (conf %s; inbound_plugins = %s; '
              'originating_plugins = %s)' % (
                  name, p.pid, port, os.path.relpath(conf, SRC),
                  (getattr(self, 'effective_inbound', None) if name == 'filterd' else None)
                  or conf_value(conf, 'inbound_plugins') or '', conf_value(conf, 'originating_plugins')
                  or ''))
        return p

    # Demo access maps, so that the quickstart shows a reject from each daemon.
    # Added only where the shipped conf enables the access plugin and leaves
    # the map unset; --no-demo-maps turns them off.
    DEMO = {
        'filterd': ('access_sender_map', 'sender_access',
                    'spammer@example.net\tREJECT quickstart demo: sender blocked by filterd\n'),
        'policyd': ('access_recipient_map', 'recipient_access',
                    'blocked@sift.test\tREJECT quickstart demo: recipient blocked by policyd\n'),
    }

    def demo_maps(self, name, conf):
        if self.a.no_demo_maps or name not in self.DEMO:
            return {}
        plugins = (conf_value(conf, 'inbound_plugins') or '').replace(',', ' ').split()
        param, fname, content = self.DEMO[name]
        if 'access' not in plugins or conf_value(conf, param):
            return {}
        path = os.path.join(self.dir, fname)
        with open(path, 'w') as f:
            f.write(content)
        self.demo_notes.append('%s: -o %s=texthash:%s  (%s)' % (
            name, param, os.path.relpath(path, SRC), content.strip().replace('\t', ' ')))
        return {param: 'texthash:' + path}

    def demo_spam(self, name, conf):
        """filterd: the shipped conf runs the whole chain, whose DKIM keys,
        ClamAV database and DNS records are local data this demo does not
        have: it runs access and spam (Sift's own rules: GTUBE, missing
        headers, ...) inbound and access originating."""
        if self.a.no_demo_maps or name != 'filterd':
            return {}
        if not os.path.exists(os.path.join(self.builddir, 'plugins', 'spam.so')):
            return {'inbound_plugins': 'access', 'originating_plugins': 'access'}
        self.demo_notes.append('filterd: -o inbound_plugins="access spam" -o originating_plugins=access '
                               '-o spam_rules=rules  (the shipped chain without its local data: '
                               'spam scoring with Sift\'s own rules)')
        self.effective_inbound = 'access spam'
        return {'inbound_plugins': 'access spam', 'originating_plugins': 'access',
                'spam_rules': os.path.join(SRC, 'rules')}

    def setup(self):
        self.check_previous()
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.dns_port = sifttest.free_port()
        print(bold('Starting'))
        fport = pick_port(self.a.filterd_port)
        pport = pick_port(self.a.policyd_port)
        filterd = self.start_daemon('filterd', fport)
        policyd = self.start_daemon('policyd', pport)
        smtp = self.a.port
        sub = self.a.submission_port
        for p in (smtp, sub):
            if port_busy(p):
                sys.exit('quickstart: 127.0.0.1:%d is busy (--port / --submission-port)' % p)
        kw = {}
        if filterd:
            kw['milters'] = ['inet:127.0.0.1:%d' % fport]
        if policyd:
            kw['policy'] = 'inet:127.0.0.1:%d' % pport
        self.pf = sifttest.Postfix(port=smtp, submission_port=sub, root=os.path.join(self.dir,
                                                                                      'postfix'),
                                   keep=True, domains=('sift.test', 'example.test'),
                                   hostname='mx.sift.test', **kw)
        self.pf.start()
        print('  Postfix: master PID %d; smtpd 127.0.0.1:%d (inbound), 127.0.0.1:%d '
              '(submission, ORIGINATING)' % (self.pf.master_pid, smtp, sub))
        for n in self.demo_notes:
            print('  demo map added: ' + n)
        print('    smtpd_milters = %s' % (', '.join(self.pf.milters) or '(none)'))
        print('    smtpd_recipient_restrictions = %s' % self.pf._restrictions())

    # -- test messages -------------------------------------------------------------

    def offsets(self):
        o = {'postfix': self.pf.log_mark()}
        for name, p in self.procs.items():
            o[name] = len(p.log())
        return o

    def new_lines(self, since):
        out = {}
        out['postfix'] = self.pf.log()[since['postfix']:].splitlines()
        for name, p in self.procs.items():
            out[name] = p.log()[since[name]:].splitlines()
        return out

    def case(self, title, why, mail_from, rcpts, data, port):
        print()
        print(bold('== %s' % title))
        print('   %s' % why)
        since = self.offsets()
        r = self.pf.send(mail_from, rcpts, data, port=port, helo='client.example.test')
        print('   SMTP  (port %d) MAIL FROM:<%s> -> %s' % (port, mail_from, r.mail))
        for rc, rep in zip(rcpts, r.rcpts):
            print('         RCPT TO:<%s> -> %s' % (rc, rep))
        if r.data:
            print('         DATA -> %s' % (r.data,))
        if r.eom:
            print('         end of data -> %s' % (r.eom,))
        if r.error:
            print('         error: %s' % r.error)
        delivered = []
        if r.accepted:
            # wait until Postfix is done with it: delivered, held, or bounced
            end = time.monotonic() + 15
            qid = r.queue_id
            while time.monotonic() < end:
                text = self.pf.log()[since['postfix']:]
                if re.search(r'%s: removed' % qid, text) or \
                        re.search(r'%s: .*(HOLD|hold)' % qid, text):
                    break
                time.sleep(0.1)
            delivered = [m for m in self.pf.maildir_messages()
                         if any(re.search(r'\bid %s\b' % qid, h) for h in m.headers('Received'))]
        time.sleep(0.2)  # let the daemons' summary lines land
        lines = self.new_lines(since)
        rej = r.rejected_at()
        if delivered:
            outcome = 'DELIVERED to %s' % ', '.join(m.rcpt for m in delivered)
        elif r.accepted:
            held = [q for q in self.pf.queue() if q.get('queue_id') == r.queue_id]
            outcome = ('ACCEPTED, now in the %s queue' % held[0].get('queue_name')
                       if held else 'ACCEPTED (not delivered: see the maillog)')
        elif rej:
            outcome = 'REJECTED at %s' % rej.upper()
        else:
            outcome = 'FAILED (%s)' % (r.error or r.last())
        nrej = sum(1 for c, _ in r.rcpts if c >= 400)
        if r.accepted and nrej:
            outcome += ' (%d of %d recipients rejected at RCPT)' % (nrej, len(r.rcpts))
        print('   Result: %s' % bold(outcome))
        for name in ('filterd', 'policyd'):
            if name in lines:
                print('   %s log:' % name)
                for l in lines[name] or ['(nothing)']:
                    print('     ' + l)
        print('   Postfix log:')
        for l in lines['postfix']:
            if re.search(r'(connect from|disconnect from|postfix-script)', l):
                continue
            print('     ' + l)
        if delivered:
            print('   Delivered headers (%s):' % os.path.relpath(delivered[0].path, SRC))
            for l in delivered[0].header_block().splitlines():
                print('     ' + l)
        return r

    def send_all(self):
        p, sub = self.pf.port, self.pf.submission_port
        self.case('1. A normal inbound message',
                  'from a remote sender to a local user, on the inbound port',
                  'alice@example.net', ['bob@sift.test'],
                  sifttest.message('Quickstart: hello', sender='alice@example.net',
                                   to='bob@sift.test',
                                   body='Hi Bob,\r\n\r\nthis is an ordinary message.\r\n'),
                  p)
        self.case('2. A sender the demo access map blocks (filterd, access_sender_map)',
                  'filterd rejects at MAIL FROM (without the demo map: delivered)',
                  'spammer@example.net', ['bob@sift.test'],
                  sifttest.message('Quickstart: from a blocked sender',
                                   sender='spammer@example.net', to='bob@sift.test'), p)
        self.case('3. A recipient the demo access map blocks (policyd, access_recipient_map)',
                  'policyd rejects that RCPT TO; the other recipient gets the message',
                  'alice@example.net', ['blocked@sift.test', 'bob@sift.test'],
                  sifttest.message('Quickstart: to a blocked recipient',
                                   sender='alice@example.net', to='blocked@sift.test'), p)
        self.case('4. Inbound spam test message (GTUBE)',
                  'rejected by the spam plugin (the shipped conf, or the quickstart demo with Sift\'s rules)',
                  'alice@example.net', ['bob@sift.test'],
                  sifttest.message('Quickstart: GTUBE', sender='alice@example.net',
                                   to='bob@sift.test', body='%s\r\n' % GTUBE), p)
        self.case('5. Inbound virus test file (EICAR)',
                  'rejected if the shipped configuration enables an antivirus plugin',
                  'alice@example.net', ['bob@sift.test'],
                  sifttest.message('Quickstart: EICAR', sender='alice@example.net',
                                   to='bob@sift.test', body='%s\r\n' % EICAR), p)
        self.case('6. Outgoing mail through the submission service (ORIGINATING)',
                  'a local user sends out; filterd/policyd choose the originating profile',
                  'bob@sift.test', ['carol@example.test'],
                  sifttest.message('Quickstart: outgoing', sender='bob@sift.test',
                                   to='carol@example.test',
                                   body='Hi Carol,\r\n\r\nsent through the submission '
                                        'service.\r\n'), sub)

    def where(self):
        print()
        print(bold('Running'))
        print('  Maildir:        %s/' % os.path.relpath(os.path.join(self.pf.mail_dir, 'all'),
                                                         SRC))
        print('  Postfix log:    %s' % os.path.relpath(self.pf.maillog, SRC))
        for name, p in self.procs.items():
            print('  %s log:    %s' % (name, os.path.relpath(p.log_path, SRC)))
        print('  Postfix config: %s/main.cf, master.cf' % os.path.relpath(self.pf.config_dir,
                                                                            SRC))
        print('  Send more:      swaks --server 127.0.0.1:%d --to bob@sift.test' % self.pf.port)
        print('                  swaks --server 127.0.0.1:%d --from bob@sift.test '
              '--to carol@example.test' % self.pf.submission_port)
        print('  Queue:          postqueue -c %s -p' % self.pf.config_dir)
        print('Press Ctrl-C to stop everything.')

    # -- teardown --------------------------------------------------------------------

    def stop(self):
        print()
        print(bold('Stopping'))
        if self.pf is not None:
            killed = self.pf.stop()
            print('  Postfix stopped%s' % (' (killed %s)' % killed if killed else ''))
        for name in ('policyd', 'filterd'):
            p = self.procs.get(name)
            if p is not None:
                rc = p.stop()
                print('  %s (PID %d) stopped, exit status %s' % (name, p.pid, rc))
        print('  Files are kept in %s' % os.path.relpath(self.dir, SRC))


def main():
    ap = argparse.ArgumentParser(description='Sift quickstart (see ./quickstart)')
    ap.add_argument('--builddir', default=os.environ.get('SIFT_BUILDDIR',
                                                         os.path.join(SRC, 'build')))
    ap.add_argument('--dir', default=os.path.join(SRC, '.quickstart'))
    ap.add_argument('--port', type=int, default=2525)
    ap.add_argument('--submission-port', type=int, default=2587)
    ap.add_argument('--filterd-port', type=int, default=8891)
    ap.add_argument('--policyd-port', type=int, default=8892)
    ap.add_argument('--no-demo-maps', action='store_true',
                    help='run the shipped configuration exactly (no demo access maps)')
    ap.add_argument('--once', action='store_true',
                    help='stop after the test messages instead of waiting for Ctrl-C')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('quickstart: run as root (it runs a private Postfix instance)')
    q = Quickstart(a)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored
    try:
        q.setup()
        q.send_all()
        if not a.once:
            q.where()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        q.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
