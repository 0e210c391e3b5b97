#!/usr/bin/python3
"""The documented Postfix wiring works as pasted.

Takes every Postfix snippet the documents give (fenced blocks marked
```main.cf or ```master.cf in README.md, docs/*.md and
plugins/*/README.md, and the files conf/postfix/main.cf.snippet and
master.cf.snippet), appends each, verbatim, to the main.cf or master.cf of
a private Postfix (tests/lib/sifttest.py) wired to a real filterd and
policyd, and sends mail through it:

  - inbound, unauthenticated, to a local mailbox: delivered, seen by filterd
    (its summary line with the queue id) and by policyd (a PREPEND of
    policyd's access plugin is in the delivered message);
  - an unauthenticated client relaying to a domain that is not ours, for a
    recipient policyd answers OK: refused (no open relay);
  - an unknown local recipient, for which policyd would answer DEFER:
    refused with 550 by Postfix (reject_unlisted_recipient before policyd);
  - authenticated (Dovecot SASL) over STARTTLS on the master.cf snippet's
    `submission` service and over TLS on `submissions`: accepted, filterd
    says profile=originating and policyd's originating profile ran.

A fenced block that looks like Postfix configuration but is not marked
fails the test (```main.cf-before / ```master.cf-before mark what a site
had before Sift, shown for comparison and not loaded).

Substitutions, the only changes made to a snippet:

  inet:127.0.0.1:8891      -> inet:127.0.0.1:<filterd's test port>
  inet:127.0.0.1:8892      -> inet:127.0.0.1:<policyd's test port>
  service `submission`     -> 127.0.0.1:<free port>   (master.cf)
  service `submissions`    -> 127.0.0.1:<free port>   (master.cf)

What a site adds around the snippets (SASL, the certificate, mynetworks)
is set by the test before the snippet, so the snippet's lines win. Last,
the old one-line `check_policy_service { ..., default_action=451 4.3.5 ... }`
is run through the same steps once and must be caught.

    /usr/bin/python3 tests/postfix/test_snippets.py [-v]
"""

import glob
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, message  # noqa: E402
from dovecotsasl import DovecotSASL  # noqa: E402

SRC = sifttest.srcdir()
BUILD = sifttest.builddir()
USERS = {'authuser': 'secret-pw'}
MAILBOXES = ['polprepend@sift.test', 'user@sift.test']

DOCS = ['README.md'] + sorted(
    os.path.relpath(p, SRC) for p in glob.glob(os.path.join(SRC, 'plugins', '*', 'README.md')) +
    glob.glob(os.path.join(SRC, 'docs', '*.md')))
FILES = {'conf/postfix/main.cf.snippet': 'main.cf', 'conf/postfix/master.cf.snippet': 'master.cf'}

# Lines that only Postfix configuration has.
POSTFIX_LOOKING = re.compile(
    r'^\s*(smtpd_|non_smtpd_|milter_|smtp_|virtual_|relay_|mynetworks)\w*\s*=|check_policy_service|'
    r'^\S+\s+(inet|unix|unix-dgram|fifo|pass)\s+[-ny]\s+[-ny]\s+[-ny]\s|^\s+-o\s+\w+=', re.M)
FENCE = re.compile(r'^( *)```(.*)$')

OLD_BROKEN = ('smtpd_recipient_restrictions =\n    permit_mynetworks,\n    permit_sasl_authenticated,\n'
              '    reject_unauth_destination,\n    check_policy_service { inet:127.0.0.1:8892, '
              'timeout=10s, default_action=451 4.3.5 Policy service unavailable }\n')


def extract():
    """[(kind, text, where)] of every snippet; unclassified blocks are
    reported as failed checks."""
    out = []
    for rel, kind in FILES.items():
        with open(os.path.join(SRC, rel)) as f:
            out.append((kind, f.read(), rel))
    for rel in DOCS:
        with open(os.path.join(SRC, rel)) as f:
            lines = f.read().split('\n')
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            # a block inside a list item is indented: that indentation is
            # Markdown's, not the snippet's
            indent, info, start = len(m.group(1)), m.group(2).strip(), i + 1
            j = start
            while j < len(lines) and not lines[j].lstrip(' ').startswith('```'):
                j += 1
            text = ''.join(l[indent:] if l[:indent].strip() == '' else l
                           for l in (x + '\n' for x in lines[start:j]))
            where = '%s:%d' % (rel, i + 1)
            if info in ('main.cf', 'master.cf'):
                out.append((info, text, where))
            elif info in ('main.cf-before', 'master.cf-before'):
                pass  # a site's configuration before Sift, shown for comparison
            else:
                check(not POSTFIX_LOOKING.search(text),
                      '%s: a block that looks like Postfix configuration is marked main.cf or '
                      'master.cf' % where, text)
            i = j + 1
    return out


def substitute(text, ports):
    t = text.replace('inet:127.0.0.1:8891', 'inet:127.0.0.1:%d' % ports['filterd'])
    t = t.replace('inet:127.0.0.1:8892', 'inet:127.0.0.1:%d' % ports['policyd'])
    t = re.sub(r'^submission(?=\s)', '127.0.0.1:%d' % ports['submission'], t, flags=re.M)
    t = re.sub(r'^submissions(?=\s)', '127.0.0.1:%d' % ports['submissions'], t, flags=re.M)
    return t


class Harness:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        plugdir = os.path.join(tmp, 'plugins')
        os.mkdir(plugdir)
        os.symlink(os.path.join(BUILD, 'plugins', 'access.so'), os.path.join(plugdir, 'access.so'))
        self.ports = {k: sifttest.free_port() for k in ('filterd', 'policyd', 'submission',
                                                        'submissions')}
        common = {'plugin_directory': plugdir, 'inbound_plugins': 'access',
                  'originating_plugins': 'access'}
        self.filterd = sifttest.start_daemon('filterd', tmp, dict(common),
                                             listen='inet:127.0.0.1:%d' % self.ports['filterd'])
        self.procs.append(self.filterd)
        rmap = self.write_map('p_rcpt', {'polprepend@sift.test': 'PREPEND X-Sift-Policy: inbound',
                                         'outside@relay.example': 'OK',
                                         'nosuchuser@sift.test': 'DEFER 4.7.1 policyd was asked'})
        smap = self.write_map('p_sender', {'authuser@sift.test':
                                           'PREPEND X-Sift-Policy-Auth: originating'})
        pol = dict(common, access_recipient_map=rmap, access_sender_map=smap)
        self.policyd = sifttest.start_daemon('policyd', tmp, pol,
                                             listen='inet:127.0.0.1:%d' % self.ports['policyd'])
        self.procs.append(self.policyd)
        self.cert = os.path.join(tmp, 'cert.pem')
        self.key = os.path.join(tmp, 'key.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                        '-subj', '/CN=mx.sift.test', '-keyout', self.key, '-out', self.cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(self.key, 0o600)
        with sifttest.PolicyClient(self.ports['policyd'],
                                   defaults={'protocol_state': 'RCPT'}) as c:
            check(c.ask(sender='x@example.net', recipient='outside@relay.example',
                        client_address='127.0.0.1') == 'OK',
                  'policyd answers OK for outside@relay.example (the relay probe)')

    def write_map(self, name, entries):
        path = os.path.join(self.tmp, name)
        with open(path, 'w') as f:
            for k, v in entries.items():
                f.write('%s\t%s\n' % (k, v))
        return 'texthash:' + path

    def postfix(self, name, main_text, master_text):
        """A private Postfix with the site settings, then main_text appended
        to main.cf and master_text to master.cf (both already
        substituted)."""
        root = os.path.join(self.tmp, name)
        site = {
            # the test client (127.0.0.1) is not in mynetworks: it is an
            # ordinary Internet client for relay control
            'mynetworks': '127.0.0.2/32',
            'smtpd_tls_cert_file': self.cert, 'smtpd_tls_key_file': self.key,
            'smtpd_sasl_type': 'dovecot', 'smtpd_sasl_path': 'sasl/auth',
            'smtpd_tls_auth_only': 'yes',
            # relayed mail goes nowhere (no network here)
            'default_transport': 'discard:relayed mail is discarded in this test instance',
        }
        # only these mailboxes exist: other recipients are unknown
        pf = sifttest.Postfix(root=root, main=site, keep=True, mailboxes=MAILBOXES,
                              master_extra='tlsmgr    unix  -       -       n       1000?   1       '
                                           'tlsmgr\n' + master_text)
        path = os.path.join(pf.config_dir, 'main.cf')
        with open(path) as f:
            text = f.read()
        with open(path, 'w') as f:
            f.write(merge_main_cf(text + '\n# --- snippet under test ---\n' + main_text))
        dov = DovecotSASL(os.path.join(pf.queue_dir, 'sasl'), USERS)
        # Dovecot's socket must be reachable from smtpd's chroot (the queue
        # directory): sasl/auth relative to it.
        dov.start()
        self.procs.append(dov)
        self.procs.append(pf)
        try:
            pf.start(timeout=60)
        except (sifttest.PostfixError, subprocess.TimeoutExpired) as e:
            # `postfix status` was seen to hang for a minute on a busy
            # machine, and a master to take over 20 s to come up while the
            # sanitizer suites run beside it: a minute each, one more try
            # before failing.
            print('# postfix start: %s; trying once more' % str(e).splitlines()[0], flush=True)
            pf.stop()
            pf.start(timeout=60)
        return pf

    def stop(self):
        sifttest.stop_all(self.procs)
        self.procs = []


def merge_main_cf(text):
    """main.cf with each parameter defined once, where it was defined last
    (Postfix's meaning of a repeated one), as an administrator pastes a
    snippet over the settings it replaces. Every repeated parameter makes
    each Postfix process log "overriding earlier entry" at start, through
    postlogd (maillog_file); postlogd logs its own warnings to the socket
    it reads, so enough of them at once fill that socket and deadlock it,
    and with it the master's start."""
    entries, cur = [], None
    for line in text.splitlines(keepends=True):
        if line[:1] in (' ', '\t') and cur is not None and line.strip() and not line.lstrip().startswith('#'):
            cur[1].append(line)  # a continuation line
            continue
        m = re.match(r'([A-Za-z0-9_]+)\s*=', line)
        cur = [m.group(1) if m else None, [line]]
        entries.append(cur)
    last = {name: i for i, (name, _) in enumerate(entries) if name}
    return ''.join(''.join(lines) for i, (name, lines) in enumerate(entries)
                   if not name or last[name] == i)


def filterd_line(h, qid):
    m = h.filterd.wait_log(r'^.*\b%s: filterd: action=.*$' % re.escape(qid), 5)
    return m.group(0) if m else None


def send_tls(port, wrapper, sender, rcpt, data):
    """Authenticated submission: STARTTLS (or TLS from the start), AUTH,
    one message. Returns (accepted, queue id or error)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        if wrapper:
            s = smtplib.SMTP_SSL('127.0.0.1', port, timeout=30, context=ctx)
        else:
            s = smtplib.SMTP('127.0.0.1', port, timeout=30)
        with s:
            s.ehlo('client.sift.test')
            if not wrapper:
                s.starttls(context=ctx)
                s.ehlo('client.sift.test')
            s.login('authuser', USERS['authuser'])
            s.mail(sender)
            code, text = s.rcpt(rcpt)
            if code >= 400:
                return False, '%d %s' % (code, text)
            code, text = s.data(data)
            m = re.search(r'queued as ([0-9A-Za-z]+)', text.decode())
            return code == 250, m.group(1) if m else text.decode()
    except (smtplib.SMTPException, OSError) as e:
        return False, '%s: %s' % (type(e).__name__, e)


def exercise(h, pf, what, main_text, master_text):
    """Mail through one configuration, every step a check."""
    def chk(cond, name, detail=''):
        return check(cond, '%s: %s' % (what, name), detail)

    mark = pf.log_mark()
    uses_filterd = 'smtpd_milters' in main_text
    uses_policyd = 'check_policy_service' in main_text
    r = pf.send('someone@example.net', ['polprepend@sift.test'], message('inbound'))
    if chk(r.accepted, 'inbound mail to a local mailbox accepted', r):
        m = None
        try:
            m = pf.delivered_by_queue_id(r.queue_id, timeout=15)
        except sifttest.PostfixError as e:
            chk(False, 'inbound mail delivered', e)
        if m is not None and uses_policyd:
            chk(m.header('X-Sift-Policy') == 'inbound', 'policyd ran (its PREPEND is there)',
                m.header_block())
        if uses_filterd:
            line = filterd_line(h, r.queue_id)
            chk(line and 'action=accept' in line and 'profile=inbound' in line,
                'filterd ran (summary line, profile=inbound)', line or h.filterd.log_tail())
    if uses_policyd:
        # an unknown recipient is refused before policyd is asked (policyd
        # would answer DEFER for it)
        r = pf.send('someone@example.net', ['nosuchuser@sift.test'], message('unknown'))
        chk(r.rejected_at() == 'rcpt' and r.rcpts and r.rcpts[0][0] == 550 and
            'policyd' not in r.rcpts[0][1],
            'an unknown recipient refused by Postfix before policyd', r)
    r = pf.send('someone@example.net', ['outside@relay.example'], message('relay'))
    chk(r.rejected_at() == 'rcpt' and r.rcpts and r.rcpts[0][0] == 554 and
        'Relay access denied' in r.rcpts[0][1],
        'unauthenticated relay refused although policyd says OK', r)

    if 'submission' in master_text and 'smtpd_sasl_auth_enable=yes' in master_text:
        for wrapper, port in ((False, h.ports['submission']), (True, h.ports['submissions'])):
            svc = 'submissions' if wrapper else 'submission'
            if not re.search(r'^127\.0\.0\.1:%d\s' % port, master_text, re.M):
                continue
            acc, qid = send_tls(port, wrapper, 'authuser@sift.test', 'user@sift.test',
                                message('auth ' + svc, sender='authuser@sift.test'))
            if not chk(acc, '%s: authenticated submission accepted' % svc, qid):
                continue
            try:
                m = pf.delivered_by_queue_id(qid, timeout=15)
            except sifttest.PostfixError as e:
                chk(False, '%s: delivered' % svc, e)
                continue
            if uses_policyd:
                chk(m.header('X-Sift-Policy-Auth') == 'originating',
                    '%s: the authenticated user reached policyd (originating)' % svc,
                    m.header_block())
            if uses_filterd:
                line = filterd_line(h, qid)
                chk(line and 'profile=originating' in line,
                    '%s: filterd ran with profile=originating' % svc, line)
            acc, qid = send_tls(port, wrapper, 'authuser@sift.test', 'outside@relay.example',
                                message('auth relay', sender='authuser@sift.test'))
            chk(acc, '%s: an authenticated user may relay' % svc, qid)
    bad = pf.log_lines(r'(fatal|panic|malformed|error):', start=mark)
    chk(not bad, 'no fatal, panic or error line in the Postfix log', '\n'.join(bad[-5:]))


def main():
    if os.geteuid() != 0:
        print('needs root (a private Postfix)')
        return 1
    tmp = tempfile.mkdtemp(prefix='sift-snippets-', dir=os.environ.get('SIFT_TEST_TMP'))
    os.chmod(tmp, 0o755)
    h = None
    try:
        snippets = extract()
        mains = [(t, w) for k, t, w in snippets if k == 'main.cf']
        masters = [(t, w) for k, t, w in snippets if k == 'master.cf']
        check(len(mains) >= 2 and len(masters) >= 2, 'snippets found (main.cf %d, master.cf %d)' %
              (len(mains), len(masters)))
        conf_main = next(t for t, w in mains if w.startswith('conf/'))
        conf_master = next(t for t, w in masters if w.startswith('conf/'))
        readme = [t for t, w in mains + masters if w.startswith('README.md')]
        check(conf_main in readme and conf_master in readme,
              'README.md shows conf/postfix/*.snippet as they are')
        h = Harness(tmp)
        # The shipped main.cf and master.cf snippets together; then every
        # other main.cf snippet added to them (they add settings: one
        # instance for all of them), and every other master.cf snippet with
        # the shipped main.cf.
        combos = [('conf/postfix/*.snippet', conf_main, conf_master)]
        extra, seen = [], {conf_main}
        for t, w in mains:
            if t not in seen:
                seen.add(t)
                extra.append((w, t))
        if extra:
            combos.append((', '.join(w for w, _ in extra),
                           '\n'.join([conf_main] + [t for _, t in extra]), conf_master))
        seen = {conf_master}
        for t, w in masters:
            if t not in seen:
                seen.add(t)
                combos.append((w, conf_main, t))
        for n, (where, main_text, master_text) in enumerate(combos):
            mt, ms = substitute(main_text, h.ports), substitute(master_text, h.ports)
            pf = h.postfix('pf%d' % n, mt, ms)
            exercise(h, pf, where, mt, ms)
            h.procs.remove(pf)
            pf.cleanup()
        # The harness catches a snippet that breaks Postfix: the old form.
        broken = substitute(conf_main.replace(conf_main[conf_main.index('smtpd_relay_restrictions'):],
                                              OLD_BROKEN), h.ports)
        pf = h.postfix('pf-broken', broken, substitute(conf_master, h.ports))
        # (one message: a master that throttles a dying smtpd leaves the
        # client waiting for a greeting)
        r = pf.send('someone@example.net', ['polprepend@sift.test'], message('broken'), timeout=15)
        check(not r.accepted and pf.log_lines(r"fatal: .*malformed option"),
              "the old `default_action=451 4.3.5 ...` form fails this test "
              "(smtpd: fatal: malformed option)", pf.log()[-1500:])
    finally:
        if h:
            h.stop()
        if not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print('# kept %s' % tmp)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
