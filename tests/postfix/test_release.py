#!/usr/bin/python3
"""Quarantine release through a private Postfix wired as README says
(`non_smtpd_milters = $smtpd_milters`, so a released message passes filterd
again; and 127.0.0.1 in originating_networks, as README suggests for mail
from sendmail, so that without a release token it would be quarantined
again):

  - an EICAR message from the submission service is quarantined by the
    clamav plugin (clamav_originating_action = quarantine) and the admin
    alerted once;
  - `siftctl quarantine release ID` delivers it to its recipient exactly
    once; it is not quarantined again, no second alert is sent, the
    X-Sift-Release header does not reach the mailbox, and the message keeps
    a Received: line with the client's IP address and HELO name; it is
    DKIM-signed on the way out (the signing plugins run on a release, the
    scanners do not), as the quarantined copy, stored before signing, is
    not;
  - the release keeps the envelope: a null sender and three recipients in
    two domains get one copy each with Return-Path: <>, nothing goes to the
    header To:, and lines of dots and 8-bit text arrive as sent;
  - a message that carries a forged or already used X-Sift-Release header is
    scanned as usual (EICAR from outside: 554);
  - a release interrupted by SIGTERM, SIGINT or SIGHUP while sendmail hangs,
    or while it waits for filterd, removes its release token and keeps the
    message in the quarantine, which a later release delivers.

    /usr/bin/python3 tests/postfix/test_release.py
"""

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'clamav', 'tests'))
import sifttest  # noqa: E402
from sifttest import check  # noqa: E402
import cvlib  # noqa: E402

SIFTCTL = sifttest.program('siftctl')


def siftctl(conf, *args):
    r = subprocess.run([SIFTCTL, '-c', conf] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return r.returncode, r.stdout


def main():
    if os.geteuid() != 0:
        print('needs root (a private Postfix)')
        return 1
    tmp = tempfile.mkdtemp(prefix='sift-release-', dir=os.environ.get('SIFT_TEST_TMP'))
    os.chmod(tmp, 0o755)
    procs = []
    try:
        dbdir = os.path.join(tmp, 'db')
        cvlib.make_db(dbdir)
        qdir = os.path.join(tmp, 'quarantine')
        os.makedirs(qdir, mode=0o750)
        # the store belongs to the daemon user, as /var/lib/sift/quarantine
        # belongs to sift in the package
        user = sifttest.daemon_user()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(qdir, pw.pw_uid, pw.pw_gid)
        fport = sifttest.free_port()
        pf = sifttest.Postfix(root=os.path.join(tmp, 'pf'), submission=True, keep=True,
                              milters=['inet:127.0.0.1:%d' % fport],
                              main={'non_smtpd_milters': '$smtpd_milters'})
        orig = os.path.join(tmp, 'originating.cidr')
        with open(orig, 'w') as f:
            f.write('127.0.0.1/32 yes\n')
        plugdir = os.path.join(tmp, 'plugins')
        os.mkdir(plugdir)
        for so in ('clamav.so', 'dkim.so'):
            os.symlink(os.path.join(sifttest.builddir(), 'plugins', so), os.path.join(plugdir, so))
        # the messages' From domain is signed in the originating profile
        out = subprocess.run([SIFTCTL, 'dkim', 'genkey', '-d', 'example.test', '-s', 'rel', '-t', 'rsa',
                              '-D', tmp], check=True, stdout=subprocess.PIPE, text=True).stdout
        with open(os.path.join(tmp, 'keytable'), 'w') as f:
            f.write('rel example.test:rel:%s\n' % os.path.join(tmp, 'example.test.rel.key'))
        with open(os.path.join(tmp, 'signingtable'), 'w') as f:
            f.write('example.test rel\nsift.test rel\n')
        fd = sifttest.start_daemon('filterd', tmp, {
            'plugin_directory': plugdir,
            'inbound_plugins': 'clamav', 'originating_plugins': 'clamav dkim',
            'dkim_key_table': 'texthash:%s/keytable' % tmp, 'dkim_signing_table': 'texthash:%s/signingtable' % tmp,
            'myhostname': 'mx.sift.test', 'originating_networks': 'cidr:' + orig,
            'clamav_database_directory': dbdir, 'clamav_ready_wait': '30s',
            'quarantine_directory': qdir,
            'clamav_originating_action': 'quarantine',
            'clamav_notify_recipient': 'virusalert@sift.test',
            'clamav_notify_relay': '127.0.0.1:%d' % pf.port,
            'clamav_notify_limit': '10', 'clamav_notify_timeout': '10s',
        }, listen='inet:127.0.0.1:%d' % fport, start_timeout=60)
        procs.append(fd)
        pf.start()
        procs.append(pf)
        conf = fd.conf

        def alerts():
            return [m for m in pf.maildir_messages() if m.rcpt == 'virusalert@sift.test']

        def to_friend():
            return [m for m in pf.maildir_messages() if m.rcpt == 'friend@sift.test']

        def quarantine_one(rcpt, what):
            """Submits the infected message to rcpt: the ids quarantined for it."""
            r = pf.send_submission('user@sift.test', [rcpt], data)
            rc, out = siftctl(conf, 'quarantine', 'list')
            ids = [l.split()[0] for l in out.splitlines() if rcpt in l]
            check(r.accepted and len(ids) == 1, what, out)
            return ids

        def sendmail_script(name, body):
            """An executable stand-in for sendmail in tmp."""
            path = os.path.join(tmp, name)
            with open(path, 'w') as f:
                f.write('#!/bin/sh\n' + body)
            os.chmod(path, 0o755)
            return path

        def interrupted_release(qid):
            """siftctl quarantine release of qid interrupted by a signal while
            sendmail hangs (its token exists then), or while it waits for
            filterd to use the token: the token is removed, the message kept
            (--keep in the second case: sendmail took it), siftctl dies of
            the signal."""
            rdir = os.path.join(qdir, '.release')
            pidfile = os.path.join(tmp, 'sendmail.pid')
            stuck = sendmail_script('stuck-sendmail', 'echo $$ > %s\nexec sleep 3600\n' % pidfile)
            taken = sendmail_script('taking-sendmail', 'cat > /dev/null\necho $$ > %s\n' % pidfile)
            for sig, fake, extra, phase in (
                    (signal.SIGTERM, stuck, [], 'while sendmail hangs'),
                    (signal.SIGINT, stuck, [], 'while sendmail hangs'),
                    (signal.SIGHUP, stuck, [], 'while sendmail hangs'),
                    (signal.SIGINT, taken, ['--keep', '--wait', '60s'], 'while it waits for filterd')):
                what = 'release interrupted by %s %s' % (sig.name, phase)
                if os.path.exists(pidfile):
                    os.unlink(pidfile)
                # the output in a file: a sendmail left running would hold a pipe open
                outfile = os.path.join(tmp, 'release.out')
                with open(outfile, 'w') as outf:
                    p = subprocess.Popen([SIFTCTL, '-c', conf, 'quarantine', 'release', qid, '--sendmail', fake,
                                          '--sendmail-timeout', '60s'] + extra, stdout=outf, stderr=subprocess.STDOUT)
                sendmail = None
                try:
                    end = time.time() + 20
                    # the pid file whole (the shell creates it, then writes)
                    while time.time() < end and not (os.path.exists(pidfile) and
                                                      open(pidfile).read().endswith('\n') and
                                                      os.path.isdir(rdir) and os.listdir(rdir)):
                        time.sleep(0.05)
                    if os.path.exists(pidfile):
                        with open(pidfile) as f:
                            text = f.read().split()
                            sendmail = int(text[0]) if text else None
                    tokens = os.listdir(rdir) if os.path.isdir(rdir) else []
                    check(sendmail is not None and len(tokens) == 1, '%s: its token exists then' % what, tokens)
                    p.send_signal(sig)
                    try:
                        rc = p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        rc = None
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                with open(outfile) as f:
                    out = f.read()
                left = os.listdir(rdir) if os.path.isdir(rdir) else []
                _, listing = siftctl(conf, 'quarantine', 'list')
                alive = False
                if sendmail is not None and fake == stuck:
                    try:
                        with open('/proc/%d/cmdline' % sendmail, 'rb') as f:
                            alive = b'sleep' in f.read()
                    except OSError:
                        pass
                    if alive:  # left running by siftctl: stopped here
                        os.kill(sendmail, signal.SIGKILL)
                check(rc == -sig and 'interrupted by %s' % sig.name in out,
                      '%s: siftctl reports it and dies of the signal' % what, (rc, out))
                check(left == [], '%s: its release token is removed' % what, left)
                check(qid in listing, '%s: the message stays in the quarantine' % what, listing)
                if fake == stuck:
                    check(not alive, '%s: the hanging sendmail is killed' % what)

        data, _ = cvlib.infected_messages()['base64']
        r = pf.send_submission('user@sift.test', ['friend@sift.test'], data)
        check(r.accepted, 'submission: infected message accepted into quarantine', r)
        rc, out = siftctl(conf, 'quarantine', 'list')
        ids = [l.split()[0] for l in out.splitlines() if l.strip()]
        check(rc == 0 and len(ids) == 1, 'one quarantined message', out)
        pf.wait_delivered(1, timeout=30, rcpt='virusalert@sift.test')
        check(len(alerts()) == 1, 'the admin is alerted once')
        check(to_friend() == [], 'the quarantined message is not delivered')
        if not ids:
            return sifttest.done()
        rc, out = siftctl(conf, 'quarantine', 'show', ids[0], '--raw')
        check(re.search(r'^Received: from client\.sift\.test \(\S+ \[127\.0\.0\.1\]\)\r?$', out,
                        re.M) is not None, 'the stored copy starts with a Received: line',
              out[:400])

        mark = fd.log().count('\n')
        rc, out = siftctl(conf, 'quarantine', 'release', ids[0],
                          '--sendmail', 'sendmail -C %s -G -i' % pf.config_dir)
        check(rc == 0, 'siftctl quarantine release: exit 0', out)
        try:
            pf.wait_delivered(1, timeout=30, rcpt='friend@sift.test')
        except sifttest.PostfixError as e:
            check(False, 'released message delivered', e)
        time.sleep(3)  # a second copy or a second alert would come by now
        got = to_friend()
        check(len(got) == 1, 'delivered exactly once (%d)' % len(got))
        check(len(alerts()) == 1, 'no second alert (%d)' % len(alerts()))
        rc, out = siftctl(conf, 'quarantine', 'list')
        check(rc == 0 and out.strip() == '', 'not quarantined again', out)
        newlog = '\n'.join(fd.log().splitlines()[mark:])
        check('quarantine release %s: delivered without scanning' % ids[0] in newlog,
              'filterd logs the release', newlog[-2000:])
        check('quarantined as' not in newlog, 'filterd did not quarantine it again', newlog[-2000:])
        if got:
            m = got[0]
            rec = m.headers('Received')
            check(any(re.match(r'from client\.sift\.test \(\S+ \[127\.0\.0\.1\]\)\s+by mx\.sift\.test '
                               r'\(Postfix\) with ESMTPA? id [0-9A-F]+', ' '.join(h.split()))
                      for h in rec),
                  'a Received: line with the client IP address and HELO', rec)
            check(m.header('X-Sift-Release') is None, 'X-Sift-Release removed before delivery',
                  m.header_block())
            check(b'eicar.com' in m.raw, 'the released message is the quarantined one')
            sig = m.header('DKIM-Signature') or ''
            check('d=example.test' in sig and 's=rel' in sig,
                  'the released message is DKIM-signed on its way out', m.header_block())
        rdir = os.path.join(qdir, '.release')
        check(not os.path.exists(rdir) and os.listdir(qdir) == [],
              'the release token was used up and the store is empty', os.listdir(qdir))

        # The envelope is kept: the null sender and every recipient (two
        # domains), not the header To:; lines of one dot, two dots and a
        # leading dot, and 8-bit text, arrive as they were sent.
        rcpts = ['env1@sift.test', 'env2@sift.test', 'env3@example.test']
        body_lines = b'caf\xe9 8-bit\r\n.\r\n..\r\n.dot\r\n'
        env_msg = (b'From: someone@example.test\r\nTo: header-only@sift.test\r\nSubject: envelope\r\n'
                   b'Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n'
                   b'\r\n' + body_lines + cvlib.EICAR + b'\r\n')
        r = pf.send('', rcpts, env_msg)
        rc, out = siftctl(conf, 'quarantine', 'list')
        env_ids = [ln.split()[0] for ln in out.splitlines() if 'env1@sift.test' in ln]
        check(r.accepted and len(env_ids) == 1 and '<> <env1@sift.test>,<env2@sift.test>,<env3@example.test>' in out,
              'null sender, three recipients: quarantined with the envelope', (r, out))
        if env_ids:
            rc, out = siftctl(conf, 'quarantine', 'release', env_ids[0],
                              '--sendmail', 'sendmail -C %s -G -i' % pf.config_dir)
            check(rc == 0, 'release of the null-sender message: exit 0', out)
            try:
                pf.wait_delivered(1, timeout=30, rcpt='env3@example.test')
            except sifttest.PostfixError as e:
                check(False, 'the null-sender message is delivered', e)
            time.sleep(2)
            for rcpt in rcpts:
                got = pf.maildir_messages(rcpt)
                check(len(got) == 1 and got[0].header('Return-Path') == '<>',
                      'released to %s once, with the null sender' % rcpt,
                      [(m.header('Return-Path'), m.rcpt) for m in got])
                if got:
                    raw = got[0].raw.replace(b'\r\n', b'\n')
                    check(body_lines.replace(b'\r\n', b'\n') + cvlib.EICAR in raw,
                          'released to %s: dot lines and 8-bit text as sent' % rcpt, raw[-300:])
            check(pf.maildir_messages('header-only@sift.test') == [], 'nothing to the header To: address')

        # A forged token does not pass.
        for what, tok in (('forged', secrets.token_hex(16)), ('garbage', 'let me in')):
            forged = b'X-Sift-Release: ' + tok.encode() + b'\r\n' + data
            r = pf.send('user@sift.test', ['victim@sift.test'], forged)
            rc, out = siftctl(conf, 'quarantine', 'list')
            check(r.accepted and 'victim@sift.test' in out,
                  '%s X-Sift-Release: the message is scanned and quarantined' % what, (r, out))
            siftctl(conf, 'quarantine', 'purge', '--older-than', '0s')
        time.sleep(2)
        check([m for m in pf.maildir_messages() if m.rcpt == 'victim@sift.test'] == [],
              'nothing with a forged token is delivered')
        check('header without a valid release token' in fd.log(), 'the forged header is logged')

        # A token filterd never used is withdrawn: a copy that went out
        # without passing filterd cannot be replayed.
        ids = quarantine_one('other@sift.test', 'a second message quarantined')
        if ids:
            copy = os.path.join(tmp, 'sent-elsewhere.eml')
            fake = sendmail_script('fake-sendmail', 'cat > %s\n' % copy)
            rc, out = siftctl(conf, 'quarantine', 'release', ids[0], '--keep', '--wait', '1s',
                              '--sendmail', fake)
            check(rc == 0 and 'did not see the released message' in out and
                  'token was withdrawn' in out, 'unused token withdrawn, with a warning', out)
            with open(copy, 'rb') as f:
                sent = f.read()
            m = re.match(rb'X-Sift-Release: ([0-9a-f]{32})\r\n', sent)
            check(m is not None, 'the copy carried a token', sent[:200])
            check(not os.path.exists(os.path.join(qdir, '.release')),
                  'no token left in the store', os.listdir(qdir))
            r = pf.send('user@sift.test', ['replay@sift.test'], sent)
            rc, out = siftctl(conf, 'quarantine', 'list')
            check(r.accepted and 'replay@sift.test' in out,
                  'the copy sent in again is scanned and quarantined', (r, out))
            # Two releases of one message at the same moment: one delivery.
            calls = os.path.join(tmp, 'sendmail-calls')
            slow = sendmail_script('slow-sendmail', 'echo call >> %s\ncat > /dev/null\nsleep 1\n' % calls)
            rel = [subprocess.Popen([SIFTCTL, '-c', conf, 'quarantine', 'release', ids[0], '--wait', '1s',
                                     '--sendmail', slow], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True) for _ in range(2)]
            outs = [(p.wait(timeout=60), p.stdout.read()) for p in rel]
            for p in rel:
                p.stdout.close()
            with open(calls) as f:
                n = len(f.read().split())
            check(n == 1 and sorted(rc for rc, _ in outs) == [0, 1] and
                  any('being released by another siftctl' in o or 'released meanwhile' in o for _, o in outs),
                  'two releases at once: one sendmail, the other refused', (n, outs))
            # A sendmail that hangs is killed after --sendmail-timeout: the
            # message stays in the store and its token is withdrawn.
            late = quarantine_one('late@sift.test', 'a third message quarantined')
            if late:
                hang = sendmail_script('hanging-sendmail', 'exec sleep 3600\n')
                t0 = time.time()
                rc, out = siftctl(conf, 'quarantine', 'release', late[0], '--sendmail', hang,
                                  '--sendmail-timeout', '1s')
                took = time.time() - t0
                rc2, listing = siftctl(conf, 'quarantine', 'list')
                rdir = os.path.join(qdir, '.release')
                tokens = os.listdir(rdir) if os.path.isdir(rdir) else []
                check(rc == 1 and took < 10 and 'killed' in out and late[0] in listing and tokens == [],
                      'a hanging sendmail: killed after --sendmail-timeout, the message kept, no token left',
                      (rc, took, out, listing, tokens))
                interrupted_release(late[0])
                # the message kept through all that is released for good
                rc, out = siftctl(conf, 'quarantine', 'release', late[0],
                                  '--sendmail', 'sendmail -C %s -G -i' % pf.config_dir)
                check(rc == 0, 'the message kept by the interrupted releases is released', out)
                try:
                    pf.wait_delivered(1, timeout=30, rcpt='late@sift.test')
                    check(True, 'and delivered')
                except sifttest.PostfixError as e:
                    check(False, 'and delivered', e)
    finally:
        sifttest.stop_all(procs)
        if not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print('# kept %s' % tmp)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
