#!/usr/bin/python3
"""Sift quickstart: the whole chain on the shipped conf/filterd.conf and
conf/policyd.conf, wired to a private Postfix on 127.0.0.1 (inbound smtpd on
2525, an ORIGINATING submission service with SASL on 2587), mail delivered
into a Maildir under ./.quickstart/. Sends one message for each thing the
chain does, shows what happened to each (SMTP replies, the daemons' log
lines, the delivered headers), ends with a table (message, expected, got)
and exits 1 if any row differs. Then keeps everything running until Ctrl-C
(not with --once) and stops exactly what it started.

Started by ./quickstart (which installs dependencies and builds first).
Run as root:  /usr/bin/python3 tools/quickstart.py [--builddir build] [--once]

The daemons run the shipped configuration; what a demo must supply is
tests/lib/chain.py's: the "Local data" of the conf files (a DKIM key made
with `siftctl dkim genkey` and its tables, a login map, rate limit rules,
the virus alert address) and where things are on this machine (ports, the
build tree's plugins and rules, a local DNS server serving the demo
domains' SPF and DKIM records, the ClamAV database, the spam cache).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
import sifttest  # noqa: E402
import chain  # noqa: E402
from chain import DEMO_ADMIN, DEMO_FORGER, DEMO_FRIEND, DEMO_OURS, DEMO_RATE, DEMO_SLOPPY  # noqa: E402

GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
# assembled at run time: the repository itself holds no test virus
EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-' + 'ANTIVIRUS-TEST-FILE!$H+H*'
TAG, TAG2, KILL = 2.0, 6.2, 6.9


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


def pick_port(want, what):
    if want == 0:
        return sifttest.free_port()
    if not port_busy(want):
        return want
    p = sifttest.free_port()
    print('  note: 127.0.0.1:%d (%s) is busy, using %d instead' % (want, what, p))
    return p


def mail(subject, sender, to, body, extra=''):
    """A message as a mail program writes it (CRLF, Date, Message-ID)."""
    local = re.sub(r'[^a-z0-9]+', '-', subject.lower()).strip('-')
    return ('From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s.%d@%s>\r\n'
            'MIME-Version: 1.0\r\n%s\r\n%s' % (
                sender, to, subject, time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime()),
                local, time.time_ns() // 1000, sender.rsplit('@', 1)[-1].rstrip('>'),
                extra or 'Content-Type: text/plain; charset=utf-8\r\n',
                body.replace('\n', '\r\n'))).encode()


def rel(path, start=SRC):
    """path relative to the source tree when it is inside it."""
    r = os.path.relpath(path, start)
    return path if r.startswith('..') else r


def unfold(v):
    return re.sub(r'\r?\n[ \t]*', ' ', v or '').strip()


def spam_score(m):
    st = unfold(m.header('X-Spam-Status'))
    x = re.search(r'score=(-?[0-9.]+)', st)
    return float(x.group(1)) if x else None


class Case:
    """One message: what is sent, what must happen (want: short text for
    the table), and the checker that says what happened."""

    def __init__(self, title, why, want, mail_from, rcpts, data, port='smtp', auth=None):
        self.title, self.why, self.want = title, why, want
        self.mail_from, self.rcpts, self.data = mail_from, rcpts, data
        self.port, self.auth = port, auth
        self.got, self.ok = '', False


class Quickstart:
    def __init__(self, a):
        self.a = a
        self.builddir = os.path.abspath(a.builddir)
        self.dir = os.path.abspath(a.dir)
        self.chain = None
        self.rows = []

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
                sys.exit('quickstart: a previous quickstart %s (PID %d) is still running' % (name, pid))

    def setup(self):
        self.check_previous()
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        for name in ('filterd', 'policyd'):
            if not sifttest.daemon_is_real(os.path.join(self.builddir, name, name)):
                sys.exit('quickstart: %s is not built in %s' % (name, self.builddir))
        print(bold('Starting'))
        a = self.a
        c = self.chain = chain.Chain(
            self.dir, builddir=self.builddir, srcdir=SRC, spam_cache=a.spam_cache,
            filterd_port=pick_port(a.filterd_port, 'filterd'), policyd_port=pick_port(a.policyd_port, 'policyd'),
            smtp_port=self.service_port(a.port, '--port'),
            submission_port=self.service_port(a.submission_port, '--submission-port'),
            metrics_ports={'filterd': pick_port(a.filterd_metrics_port, 'filterd metrics'),
                           'policyd': pick_port(a.policyd_metrics_port, 'policyd metrics')})
        c.start()
        for name in ('filterd', 'policyd'):
            conf = c.conf[name]
            print('  %s: PID %d on 127.0.0.1:%d, conf %s: inbound_plugins = %s; originating_plugins = %s' % (
                name, c.procs[name].pid, c.ports[name], rel(conf, SRC),
                chain.conf_value(conf, 'inbound_plugins'), chain.conf_value(conf, 'originating_plugins')))
            print('    local data: ' + '  '.join('-o %s=%s' % kv for kv in c.local_data(name).items()))
        print('  DNS server: 127.0.0.1:%d (tests/lib/dnsserver.py) serving' % c.dns.port)
        for n, t in c.records.items():
            print('    %-26s TXT "%s"' % (n, t if len(t) < 60 else t[:57] + '...'))
        print('  DKIM key: %s (siftctl dkim genkey -d %s -s mail)' % (
            rel(os.path.join(c.root, 'dkim', '%s.mail.key' % DEMO_OURS), SRC), DEMO_OURS))
        print('  ClamAV: %s' % c.clamav_what)
        print('  spam rules: %s (compiled cache %s)' % (c.settings('filterd')['spam_rules'], c.spam_cache))
        for name in ('filterd', 'policyd'):
            print('  %s metrics and status page: http://127.0.0.1:%d/ (metrics_listen)' % (
                name, c.ports[name + '-metrics']))
        print('  Dovecot SASL for the submission service: users %s' % ', '.join(chain.DEMO_USERS))
        print('  Postfix: master PID %d; smtpd 127.0.0.1:%d (inbound), 127.0.0.1:%d (submission, ORIGINATING)' % (
            c.pf.master_pid, c.ports['smtp'], c.ports['submission']))
        for k in ('smtpd_milters', 'smtpd_recipient_restrictions', 'smtpd_end_of_data_restrictions'):
            print('    %s = %s' % (k, c.pf.main_params()[k]))
        self.wait_spam_engine()

    def service_port(self, want, opt):
        if want == 0:
            return sifttest.free_port()
        if port_busy(want):
            sys.exit('quickstart: 127.0.0.1:%d is busy (%s)' % (want, opt))
        return want

    def wait_spam_engine(self):
        """filterd scores from its first second: on Hyperscan with the
        compiled cache, else on PCRE2 while it compiles; say which."""
        fd = self.chain.procs['filterd']
        fd.wait_log(r'rules: \d+ active', timeout=30)
        log = fd.log()
        m = re.search(r'rules: (\d+) active.*', log)
        if m:
            print('  spam: ' + m.group(0))
        if 'Hyperscan: compiling' in log:
            print('  spam: PCRE2 while the stock rules compile for Hyperscan in the background (minutes '
                  'the first time; cached in %s afterwards)' % self.chain.spam_cache)

    # -- one message -------------------------------------------------------------

    def offsets(self):
        o = {'postfix': self.chain.pf.log_mark()}
        for name, p in self.chain.procs.items():
            o[name] = len(p.log())
        return o

    def new_lines(self, since):
        out = {'postfix': self.chain.pf.log()[since['postfix']:].splitlines()}
        for name, p in self.chain.procs.items():
            out[name] = p.log()[since[name]:].splitlines()
        return out

    def wait_done(self, r, since):
        """Until Postfix is done with an accepted message (removed from the
        queue, discarded, or held); returns its delivered copies."""
        pf = self.chain.pf
        end = time.monotonic() + 30
        while time.monotonic() < end:
            text = pf.log()[since['postfix']:]
            if re.search(r'%s: (removed|milter-discard)' % r.queue_id, text) or \
                    re.search(r'%s: .*\bhold\b' % r.queue_id, text):
                break
            time.sleep(0.1)
        return [m for m in pf.maildir_messages()
                if any(re.search(r'\bid %s\b' % r.queue_id, h) for h in m.headers('Received'))]

    def send(self, case):
        """Sends one case's message, prints what happened; returns (result,
        delivered copies, new log lines)."""
        pf = self.chain.pf
        port = self.chain.ports[case.port]
        print()
        print(bold('== %s' % case.title))
        print('   %s' % case.why)
        print('   Expected: %s' % case.want)
        since = self.offsets()
        r = pf.send(case.mail_from, case.rcpts, case.data, port=port, auth=case.auth,
                    helo='client.%s' % (case.mail_from.rsplit('@', 1)[-1] or 'example.test'))
        print('   SMTP  (port %d%s) MAIL FROM:<%s> -> %s' % (
            port, ', AUTH %s' % case.auth[0] if case.auth else '', case.mail_from, r.mail))
        for rc, rep in zip(case.rcpts, r.rcpts):
            print('         RCPT TO:<%s> -> %s' % (rc, rep))
        if r.data:
            print('         DATA -> %s' % (r.data,))
        if r.eom:
            print('         end of data -> %s' % (r.eom,))
        if r.error:
            print('         error: %s' % r.error)
        delivered = self.wait_done(r, since) if r.accepted else []
        time.sleep(0.3)  # the daemons' summary lines
        lines = self.new_lines(since)
        for name in ('policyd', 'filterd'):
            print('   %s log:' % name)
            for line in lines[name] or ['(nothing)']:
                print('     ' + line)
        print('   Postfix log:')
        for line in lines['postfix']:
            if not re.search(r'(connect from|disconnect from|postfix-script)', line):
                print('     ' + line)
        for m in delivered:
            print('   Delivered to %s (%s):' % (m.rcpt, rel(m.path, SRC)))
            for line in m.header_block().splitlines():
                print('     ' + line)
        return r, delivered, lines

    def verdict(self, case, ok, got):
        case.ok, case.got = bool(ok), got
        self.rows.append(case)
        print('   Got: %s  %s' % (got, bold('OK') if ok else bold('DIFFERS')))

    # -- the cases ---------------------------------------------------------------

    def run(self):
        c = self.chain
        softfail = chain.conf_value(c.conf['policyd'], 'spf_softfail_action') or 'prepend'
        virus = chain.conf_value(c.conf['filterd'], 'clamav_inbound_action') or 'reject'
        self.clean()
        self.spf_fail()
        self.spf_softfail(softfail)
        self.eicar(virus)
        self.gtube()
        self.spammy()
        self.outgoing()
        self.forged()
        self.ratelimit()
        self.metrics()

    def clean(self):
        body = ('Dear friend,\n\nshall we go running on Saturday morning, as last year? Same place,\n'
                'nine o\'clock.\n\nAlice\n')
        data = self.chain.sign_inbound(mail('Running on Saturday', 'Alice <alice@%s>' % DEMO_FRIEND,
                                            'Bob <bob@%s>' % DEMO_OURS, body))
        case = Case('1. clean inbound, DKIM-signed',
                    'alice@%s (SPF: 127.0.0.1 allowed; signed with %s\'s key, selector sel) to bob@%s; '
                    'a friendly note that still scores above tag level %g, so it carries the spam '
                    'headers' % (DEMO_FRIEND, DEMO_FRIEND, DEMO_OURS, TAG),
                    'delivered; Received-SPF: pass; Authentication-Results spf=pass, dkim=pass; '
                    'X-Virus-Scanned; X-Spam-Status: No, score %g..%g tagged_above=2 required=6.2' % (TAG, TAG2),
                    'alice@' + DEMO_FRIEND, ['bob@' + DEMO_OURS], data)
        r, dl, _ = self.send(case)
        if not dl:
            return self.verdict(case, False, self.outcome(r, dl))
        m = dl[0]
        ar = ' '.join(unfold(h) for h in m.headers('Authentication-Results'))
        st = unfold(m.header('X-Spam-Status'))
        sc = spam_score(m)
        got = {'Received-SPF': unfold(m.header('Received-SPF')).split(' ', 1)[0] or '-',
               'spf': (re.search(r'spf=(\w+)', ar) or [None, '-'])[1],
               'dkim': (re.search(r'dkim=(\w+)', ar) or [None, '-'])[1],
               'X-Virus-Scanned': 'yes' if m.header('X-Virus-Scanned') else 'no',
               'X-Spam-Status': st.split(',', 1)[0] or '-', 'score': sc}
        ok = (got['Received-SPF'] == 'pass' and got['spf'] == 'pass' and got['dkim'] == 'pass' and
              got['X-Virus-Scanned'] == 'yes' and
              re.match(r'No, score=-?[0-9.]+ tagged_above=2 required=6\.2 tests=\[[^\]]*\]', st) is not None and
              sc is not None and TAG <= sc < TAG2)
        self.verdict(case, ok, 'delivered; Received-SPF: %(Received-SPF)s; spf=%(spf)s, dkim=%(dkim)s; '
                     'X-Virus-Scanned: %(X-Virus-Scanned)s; X-Spam-Status: %(X-Spam-Status)s, score %(score)s' % got)

    def outcome(self, r, delivered):
        """What happened, short: the reply code and enhanced status code
        (the whole replies are printed above)."""
        def short(reply):
            return '%d %s' % (reply[0], reply[1].split(' ', 1)[0]) if reply else '-'
        if delivered:
            return 'delivered'
        rej = r.rejected_at()
        if rej == 'rcpt':
            return 'refused at RCPT: ' + short(r.rcpts[0])
        if rej:
            return 'refused at %s: %s' % ('end of data' if rej == 'eom' else rej.upper(),
                                          short(getattr(r, rej)))
        if r.accepted:
            return 'accepted (%d), not delivered' % r.eom[0]
        return 'failed (%s)' % (r.error or r.last())

    def spf_fail(self):
        case = Case('2. SPF fail', 'mallory@%s, whose SPF record (v=spf1 -all) allows no host' % DEMO_FORGER,
                    'refused at RCPT: 550 5.7.23', 'mallory@' + DEMO_FORGER, ['bob@' + DEMO_OURS],
                    mail('Invoice', 'mallory@' + DEMO_FORGER, 'bob@' + DEMO_OURS, 'Please pay.\n'))
        r, dl, _ = self.send(case)
        got = self.outcome(r, dl)
        ok = r.rejected_at() == 'rcpt' and r.rcpts[0][0] == 550 and '5.7.23' in r.rcpts[0][1]
        self.verdict(case, ok, got)

    def spf_softfail(self, action):
        want = {'prepend': 'delivered with Received-SPF: softfail', 'reject': 'refused at RCPT: 550 5.7.23',
                'defer': 'refused at RCPT: 450 4.7.23'}.get(action, 'as spf_softfail_action = ' + action)
        case = Case('3. SPF softfail', 'eve@%s (v=spf1 ~all); policyd.conf: spf_softfail_action = %s' % (
            DEMO_SLOPPY, action), want, 'eve@' + DEMO_SLOPPY, ['bob@' + DEMO_OURS],
            mail('Hello', 'eve@' + DEMO_SLOPPY, 'bob@' + DEMO_OURS, 'Hi Bob.\n'))
        r, dl, _ = self.send(case)
        got = self.outcome(r, dl)
        if action == 'prepend':
            rspf = unfold(dl[0].header('Received-SPF')) if dl else ''
            ok = bool(dl) and rspf.startswith('softfail')
            got = 'delivered with Received-SPF: %s' % (rspf.split(' ', 1)[0] or '-') if dl else got
        else:
            code = 550 if action == 'reject' else 450
            ok = r.rejected_at() == 'rcpt' and r.rcpts[0][0] == code and '7.23' in r.rcpts[0][1]
        self.verdict(case, ok, got)

    def eicar(self, action):
        c = self.chain
        qwant = action == 'quarantine'
        case = Case('4. virus (EICAR) inbound',
                    'an attachment holding the EICAR test string; filterd.conf: clamav_inbound_action = %s, '
                    'clamav_notify_recipient (local data)' % action,
                    ('accepted into the quarantine, not delivered; alert to %s' % DEMO_ADMIN) if qwant else
                    'refused at end of data: 554 5.7.1; alert to %s' % DEMO_ADMIN,
                    'alice@' + DEMO_FRIEND, ['bob@' + DEMO_OURS],
                    mail('Document', 'alice@' + DEMO_FRIEND, 'bob@' + DEMO_OURS,
                         '--b1\nContent-Type: text/plain\n\nThe document you asked for.\n\n--b1\n'
                         'Content-Type: application/octet-stream; name="eicar.com"\n'
                         'Content-Disposition: attachment; filename="eicar.com"\n\n' + EICAR + '\n--b1--\n',
                         extra='Content-Type: multipart/mixed; boundary="b1"\r\n'))
        before = len(self.quarantine_ids())
        r, dl, lines = self.send(case)
        alert = self.wait_alert()
        q = c.siftctl('quarantine', 'list')
        print('   siftctl quarantine list:')
        for line in (q.stdout + q.stderr).splitlines() or ['(empty)']:
            print('     ' + line)
        blocked = any('Blocked INFECTED' in x for x in lines['filterd'])
        quarantined = len(self.quarantine_ids()) > before
        if alert is not None:
            print('   Alert delivered to %s: Subject: %s' % (DEMO_ADMIN, unfold(alert.header('Subject'))))
        got = '%s; %s; %s; alert %s' % (
            self.outcome(r, dl), 'Blocked INFECTED' if blocked else 'not blocked',
            'quarantined' if quarantined else 'not quarantined', 'delivered' if alert else 'missing')
        if qwant:
            ok = r.accepted and not dl and blocked and quarantined and alert is not None
        else:
            ok = r.rejected_at() == 'eom' and r.eom[0] == 554 and blocked and alert is not None
        self.verdict(case, ok, got)

    def quarantine_ids(self):
        q = self.chain.quarantine
        return [n for n in os.listdir(q) if not n.startswith('.')] if os.path.isdir(q) else []

    def wait_alert(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = [m for m in self.chain.pf.maildir_messages() if m.rcpt == DEMO_ADMIN]
            if got:
                return got[-1]
            time.sleep(0.2)
        return None

    def gtube(self):
        case = Case('5. GTUBE (spam test)', 'the GTUBE string in the body: score 1000',
                    'refused at end of data: 554 5.7.1', 'alice@' + DEMO_FRIEND, ['bob@' + DEMO_OURS],
                    mail('Test', 'alice@' + DEMO_FRIEND, 'bob@' + DEMO_OURS, GTUBE + '\n'))
        r, dl, _ = self.send(case)
        ok = r.rejected_at() == 'eom' and r.eom[0] == 554 and '5.7.1' in r.eom[1]
        self.verdict(case, ok, self.outcome(r, dl))

    def spammy(self):
        body = ('Dear Friend,\n\nthis is a one-time offer: a million dollars for you, and we repair bad\n'
                'credit too.\n\nYours\n')
        case = Case('6. spam below kill level',
                    'stock SpamAssassin rules DEAR_FRIEND, ONE_TIME, MONEY_NOHTML, BAD_CREDIT and Sift\'s '
                    'SIFT_RDNS_NONE: a score between tag2 %g and kill %g' % (TAG2, KILL),
                    'delivered; Subject: ***SPAM*** ...; X-Spam-Flag: YES; score %g..%g' % (TAG2, KILL),
                    'promo@' + DEMO_FRIEND, ['bob@' + DEMO_OURS],
                    mail('Offer for you', 'promo@' + DEMO_FRIEND, 'bob@' + DEMO_OURS, body))
        r, dl, _ = self.send(case)
        if not dl:
            return self.verdict(case, False, self.outcome(r, dl))
        m = dl[0]
        subj, flag, sc = unfold(m.header('Subject')), unfold(m.header('X-Spam-Flag')), spam_score(m)
        ok = subj.startswith('***SPAM*** ') and flag == 'YES' and sc is not None and TAG2 <= sc < KILL
        self.verdict(case, ok, 'delivered; Subject: %s; X-Spam-Flag: %s; score %s' % (subj[:24], flag or '-', sc))

    def outgoing(self):
        c = self.chain
        case = Case('7. outgoing, submission',
                    'bob authenticates (SASL) and sends as bob@%s to carol@example.test: the originating '
                    'profile signs with the key of the local data' % DEMO_OURS,
                    'delivered; DKIM-Signature d=%s s=mail; siftctl dkim verify: pass' % DEMO_OURS,
                    'bob@' + DEMO_OURS, ['carol@example.test'],
                    mail('Minutes', 'Bob <bob@%s>' % DEMO_OURS, 'carol@example.test',
                         'Hi Carol,\n\nthe minutes of today\'s meeting follow tomorrow.\n\nBob\n'),
                    port='submission', auth=('bob', chain.DEMO_USERS['bob']))
        r, dl, _ = self.send(case)
        if not dl:
            return self.verdict(case, False, self.outcome(r, dl))
        m = dl[0]
        sig = unfold(m.header('DKIM-Signature'))
        path = os.path.join(c.root, 'signed.eml')
        with open(path, 'wb') as f:
            f.write(m.raw)
        v = c.siftctl('dkim', 'verify', path)
        print('   siftctl dkim verify %s:' % rel(path, SRC))
        for line in (v.stdout + v.stderr).splitlines():
            print('     ' + line)
        d = re.search(r'\bd=([^;\s]+)', sig)
        s = re.search(r'\bs=([^;\s]+)', sig)
        ok = d is not None and d.group(1) == DEMO_OURS and s is not None and s.group(1) == 'mail' and \
            v.returncode == 0 and 'pass' in v.stdout
        self.verdict(case, ok, 'delivered; DKIM-Signature d=%s s=%s; verify: %s' % (
            d.group(1) if d else '-', s.group(1) if s else '-', 'pass' if v.returncode == 0 else 'FAILED'))

    def forged(self):
        case = Case('8. forged sender, submission',
                    'bob authenticates but sends as alice@%s: senderlogin (policyd, senderlogin_login_maps) '
                    'refuses it' % DEMO_OURS, 'refused at RCPT: 553 5.7.1 ... not owned by user bob',
                    'alice@' + DEMO_OURS, ['carol@example.test'],
                    mail('From Alice', 'Alice <alice@%s>' % DEMO_OURS, 'carol@example.test', 'Trust me.\n'),
                    port='submission', auth=('bob', chain.DEMO_USERS['bob']))
        r, dl, _ = self.send(case)
        ok = r.rejected_at() == 'rcpt' and r.rcpts[0][0] == 553 and 'not owned by user bob' in r.rcpts[0][1]
        got = self.outcome(r, dl)
        if r.rcpts and 'not owned by user bob' in r.rcpts[0][1]:
            got += ' ... not owned by user bob'
        self.verdict(case, ok, got)

    def ratelimit(self):
        n = DEMO_RATE + 1
        auth = ('dave', chain.DEMO_USERS['dave'])
        for i in range(1, n + 1):
            last = i == n
            case = Case('9.%d rate limit: dave %d/%d' % (i, i, n),
                        'ratelimit_rules (local data): %d messages an hour per SASL user' % DEMO_RATE,
                        'refused at RCPT: 450 4.7.1' if last else 'delivered',
                        'dave@' + DEMO_OURS, ['carol@example.test'],
                        mail('Note %d' % i, 'dave@' + DEMO_OURS, 'carol@example.test', 'Note number %d.\n' % i),
                        port='submission', auth=auth)
            r, dl, _ = self.send(case)
            if last:
                ok = r.rejected_at() == 'rcpt' and r.rcpts[0][0] == 450 and '4.7.1' in r.rcpts[0][1]
            else:
                ok = bool(dl)
            self.verdict(case, ok, self.outcome(r, dl))

    def metrics(self):
        """What the daemons counted: /metrics in the Prometheus format
        (promtool's check) and status.json, on the metrics listeners."""
        c = self.chain
        case = Case('10. metrics and status page',
                    'metrics_listen: /metrics and /status.json of both daemons after the messages above',
                    'promtool check metrics passes on both; filterd counted 1 reject (GTUBE) and '
                    '1 quarantine (EICAR); status.json agrees', None, [], None)
        print()
        print(bold('== %s' % case.title))
        print('   %s' % case.why)
        got, ok = [], True
        counts = {}
        for d in ('filterd', 'policyd'):
            base = 'http://127.0.0.1:%d' % c.ports[d + '-metrics']
            try:
                text = urllib.request.urlopen(base + '/metrics', timeout=10).read().decode()
                status = json.loads(urllib.request.urlopen(base + '/status.json', timeout=10).read())
            except (OSError, ValueError) as e:
                got.append('%s: %s' % (d, e))
                ok = False
                continue
            try:
                pc = subprocess.run(['promtool', 'check', 'metrics'], input=text, text=True,
                                    capture_output=True, timeout=30)
                lint = pc.returncode == 0
                print('   %s: promtool check metrics: %s' % (
                    d, 'passes' if lint else (pc.stdout + pc.stderr).strip()))
            except OSError as e:
                lint = False
                print('   %s: promtool: %s (package prometheus)' % (d, e))
            ok = ok and lint
            got.append('%s: promtool %s' % (d, 'ok' if lint else 'FAILS'))
            unit = 'messages' if d == 'filterd' else 'requests'
            for line in text.splitlines():
                m = re.match(r'sift_%s_%s_total\{(.*)\} (\S+)$' % (d, unit), line)
                if m:
                    if float(m.group(2)):
                        print('     ' + line)
                    act = re.search(r'action="([^"]*)"', m.group(1)).group(1)
                    counts.setdefault(d, {})
                    counts[d][act] = counts[d].get(act, 0) + int(float(m.group(2)))
            agree = {k: v for k, v in (status.get('actions') or {}).items() if v} == \
                {k: v for k, v in counts.get(d, {}).items() if v}
            print('   %s: status.json actions %s (%s /metrics)' % (
                d, json.dumps(status.get('actions')), 'same as' if agree else 'DIFFERENT FROM'))
            ok = ok and agree
            print('   %s status page: %s/' % (d, base))
        fd = counts.get('filterd', {})
        got.append('filterd: reject %d, quarantine %d' % (fd.get('reject', 0), fd.get('quarantine', 0)))
        ok = ok and fd.get('reject') == 1 and fd.get('quarantine') == 1
        self.verdict(case, ok, '; '.join(got))

    # -- the end -------------------------------------------------------------------

    def summary(self):
        """The table: message, expected, got (wrapped), and whether they
        agree; 1 if any row differs."""
        cols = (('message', 26), ('expected', 36), ('got', 36))
        print()
        print(bold('Summary'))
        print('  ' + ' | '.join(n.ljust(w) for n, w in cols) + ' | ok')
        print('  ' + '-+-'.join('-' * w for _, w in cols) + '-+-----')
        for c in self.rows:
            cells = [textwrap.wrap(t, w) or [''] for t, (_, w) in zip((c.title, c.want, c.got), cols)]
            for i in range(max(len(x) for x in cells)):
                line = ' | '.join((x[i] if i < len(x) else '').ljust(w) for x, (_, w) in zip(cells, cols))
                print('  %s | %s' % (line, ('yes' if c.ok else bold('NO')) if i == 0 else ''))
        bad = [c for c in self.rows if not c.ok]
        print('%d of %d rows as expected%s' % (len(self.rows) - len(bad), len(self.rows),
                                               '' if not bad else '; differ: ' + ', '.join(
                                                   c.title.split(' ', 1)[0] for c in bad)))
        return 1 if bad or not self.rows else 0

    def where(self):
        c = self.chain
        print()
        print(bold('Running'))
        print('  Maildir:        %s/' % rel(os.path.join(c.pf.mail_dir, 'all'), SRC))
        print('  Postfix log:    %s' % rel(c.pf.maillog, SRC))
        for name, p in c.procs.items():
            print('  %s log:    %s' % (name, rel(p.log_path, SRC)))
        print('  Postfix config: %s/main.cf, master.cf' % rel(c.pf.config_dir, SRC))
        print('  Send more:      swaks --server 127.0.0.1:%d --from alice@%s --to bob@%s' % (
            c.ports['smtp'], DEMO_FRIEND, DEMO_OURS))
        print('                  swaks --server 127.0.0.1:%d --auth-user bob --auth-password %s '
              '--from bob@%s --to carol@example.test' % (c.ports['submission'], chain.DEMO_USERS['bob'],
                                                         DEMO_OURS))
        for d in ('filterd', 'policyd'):
            print('  %s status:  http://127.0.0.1:%d/  (metrics: /metrics, JSON: /status.json)' % (
                d, c.ports[d + '-metrics']))
        print('  siftctl:        %s quarantine list   (siftctl with filterd\'s conf and overrides)' %
              rel(os.path.join(c.root, 'siftctl')))
        print('Press Ctrl-C to stop everything.')

    def stop(self):
        print()
        print(bold('Stopping'))
        if self.chain is not None:
            for name, rc in self.chain.stop().items():
                print('  %s stopped, exit status %s' % (name, rc))
            print('  Postfix, Dovecot and the DNS server stopped')
        print('  Files are kept in %s' % rel(self.dir, SRC))


def main():
    ap = argparse.ArgumentParser(description='Sift quickstart (see ./quickstart)')
    ap.add_argument('--builddir', default=os.environ.get('SIFT_BUILDDIR', os.path.join(SRC, 'build')))
    ap.add_argument('--dir', default=os.path.join(SRC, '.quickstart'))
    ap.add_argument('--port', type=int, default=2525, help='inbound smtpd (0: any free port)')
    ap.add_argument('--submission-port', type=int, default=2587, help='submission smtpd (0: any free port)')
    ap.add_argument('--filterd-port', type=int, default=8891, help='0: any free port')
    ap.add_argument('--policyd-port', type=int, default=8892, help='0: any free port')
    ap.add_argument('--filterd-metrics-port', type=int, default=9891, help='0: any free port')
    ap.add_argument('--policyd-metrics-port', type=int, default=9892, help='0: any free port')
    ap.add_argument('--free-ports', action='store_true', help='every port free-picked (as all set to 0)')
    ap.add_argument('--spam-cache', default=None,
                    help='compiled spam rules (default $SIFT_SPAM_CACHE or BUILDDIR/spam-hscache)')
    ap.add_argument('--once', action='store_true', help='stop after the test messages instead of waiting for Ctrl-C')
    a = ap.parse_args()
    if a.free_ports:
        a.port = a.submission_port = a.filterd_port = a.policyd_port = 0
        a.filterd_metrics_port = a.policyd_metrics_port = 0
    if os.geteuid() != 0:
        sys.exit('quickstart: run as root (it runs a private Postfix instance)')
    q = Quickstart(a)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored
    status = 1
    try:
        q.setup()
        q.run()
        status = q.summary()
        if not a.once:
            q.where()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        q.stop()
    return status


if __name__ == '__main__':
    sys.exit(main())
