#!/usr/bin/python3
"""clamav plugin through a private Postfix (tests/lib/sifttest.py) with
filterd as its milter:

library mode
  - clean mail is delivered with X-Virus-Scanned;
  - infected mail is rejected at end of data (554 5.7.1 with the name), the
    log has "<queue id>: clamav: Blocked INFECTED (...) from=<..> to=<..>";
  - the administrator (virusalert@sift.test) gets a notification by SMTP
    through the same Postfix, rate-limited (clamav_notify_limit);
  - originating profile (submission port) quarantines: the client sees 250,
    the message is in the store, `siftctl quarantine release` re-injects it
    with the instance's sendmail and it is delivered to the original
    recipient with the original sender;
  - the database is replaced while mail flows on 4 sessions: the new engine
    is swapped in, no message is tempfailed or lost, and the new signature
    is used afterwards;
clamd mode (a second filterd; Postfix reloaded to use it)
  - clean delivered, infected rejected; clamd killed: 451 tempfail and
    filterd stays up; clamd restarted: scanning resumes.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cvlib  # noqa: E402
import sifttest  # noqa: E402

passed = failed = 0


def check(cond, what, detail=''):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print('FAIL: %s %s' % (what, str(detail)[-3000:] if detail else ''), file=sys.stderr)


def write_conf(root, name, port, lines):
    conf = os.path.join(root, name + '.conf')
    with open(conf, 'w') as f:
        f.write('\n'.join([
            'filterd_listen = inet:127.0.0.1:%d' % port,
            'filterd_user = %s' % sifttest.daemon_user(),
            'filterd_pid_file = %s' % os.path.join(root, name + '.pid'),
            'plugin_directory = %s' % os.path.join(sifttest.builddir(), 'plugins'),
            'inbound_plugins = clamav',
            'originating_plugins = clamav',
            'originating_daemons = ORIGINATING',
            'myhostname = mx.sift.test',
        ] + lines) + '\n')
    return conf


def start_filterd(root, name, lines):
    port = sifttest.free_port()
    conf = write_conf(root, name, port, lines)
    p = sifttest.Proc([os.path.join(sifttest.builddir(), 'filterd', 'filterd'), '-f', '-c', conf],
                      log=os.path.join(root, name + '.log'), port=port, name=name)
    p.start()
    return p, port


def main():
    if os.geteuid() != 0:
        print('needs root (private Postfix)', file=sys.stderr)
        return 1
    root = tempfile.mkdtemp(prefix='sift-clamav-pf-')
    os.chmod(root, 0o755)
    dbdir = os.path.join(root, 'db')
    cvlib.make_db(dbdir)
    qdir = os.path.join(root, 'quarantine')
    os.makedirs(qdir)
    sifttest.daemon_writable(qdir)
    infected = cvlib.infected_messages()
    clean = cvlib.clean_messages()
    procs = []
    pf = None
    clamd = None
    privdir = None
    try:
        pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), submission=True, keep=True,
                              milters=['inet:127.0.0.1:1'])  # set below
        fd, fport = start_filterd(root, 'filterd-lib', [
            'clamav_database_directory = %s' % dbdir,
            'clamav_database_check_interval = 500ms',
            'clamav_ready_wait = 30s',
            'quarantine_directory = %s' % qdir,
            'clamav_originating_action = quarantine',
            'clamav_notify_recipient = virusalert@sift.test',
            'clamav_notify_relay = 127.0.0.1:%d' % pf.port,
            'clamav_notify_limit = 2',
            'clamav_notify_timeout = 10s',
        ])
        procs.append(fd)
        pf.set_main(smtpd_milters='inet:127.0.0.1:%d' % fport)
        pf.start()

        # Clean mail.
        for case, data in clean.items():
            r = pf.send('sender@example.test', ['user@sift.test'], data)
            check(r.accepted, 'library: clean %s accepted' % case, r)
            if r.accepted:
                m = pf.delivered_by_queue_id(r.queue_id)
                v = m.header('X-Virus-Scanned') or ''
                check(re.match(r'\s*ClamAV \d+\.\d+\.\d+ at mx\.sift\.test$', v) is not None,
                      'library: clean %s delivered with X-Virus-Scanned' % case, m.header_block())
        # Infected mail: rejected.
        for case in ('plain', 'base64', 'zipzip', 'rfc822', 'testfile-clam.zip'):
            data, name = infected[case]
            r = pf.send('bad@example.test', ['user@sift.test'], data)
            check(r.rejected_at() == 'eom' and r.eom[0] == 554 and
                  (name or 'Sift.Test.') in r.eom[1] and '5.7.1' in r.eom[1],
                  'library: %s rejected with 554 5.7.1 and the name' % case, r)
        lines = re.findall(r'(\S+): clamav: Blocked INFECTED \(([^)]*)\) from=<([^>]*)> to=<([^>]*)>',
                           fd.log())
        check(len(lines) == 5 and all(l[2] == 'bad@example.test' and l[3] == 'user@sift.test' and
                                      re.match(r'^[0-9A-F]{6,}$', l[0]) for l in lines),
              'library: Blocked INFECTED lines with queue id, from and to', lines)
        # Notifications: 2 (the limit) reach virusalert, the rest are suppressed.
        notes = pf.wait_delivered(len(clean) + 2, timeout=30)
        alerts = [m for m in notes if (m.rcpt or '') == 'virusalert@sift.test']
        check(len(alerts) == 2, 'two notifications delivered to virusalert', [m.header('Subject')
                                                                             for m in notes])
        check(all('VIRUS (' in (m.header('Subject') or '') and b'bad@example.test' in m.raw and
                  b'Sift.Test.EICAR.UNOFFICIAL' in m.raw for m in alerts),
              'notification names the virus and the envelope', [m.raw[:600] for m in alerts])
        time.sleep(1)
        check(len([m for m in pf.maildir_messages() if m.rcpt == 'virusalert@sift.test']) == 2,
              'rate limit: no third notification')
        check('notification rate limit reached' in fd.log(), 'rate limit logged', fd.log_tail())

        # Originating profile: quarantine, then release.
        data, _ = infected['base64']
        before = len(pf.maildir_messages())
        r = pf.send_submission('user@sift.test', ['friend@example.test'], data)
        check(r.accepted, 'originating: infected accepted by SMTP (discarded to quarantine)', r)
        lst = subprocess.run([os.path.join(sifttest.builddir(), 'tools', 'siftctl'), '-c',
                              os.path.join(root, 'filterd-lib.conf'), 'quarantine', 'list'],
                             capture_output=True, text=True)
        ids = [l.split()[0] for l in lst.stdout.splitlines()]
        check(len(ids) == 1 and '<user@sift.test> <friend@example.test> clamav virus' in lst.stdout,
              'originating: one quarantined message with its envelope', lst.stdout + lst.stderr)
        time.sleep(1)
        check(len(pf.maildir_messages()) == before, 'quarantined message not delivered')
        if ids:
            rel = subprocess.run([os.path.join(sifttest.builddir(), 'tools', 'siftctl'), '-c',
                                  os.path.join(root, 'filterd-lib.conf'), 'quarantine', 'release',
                                  ids[0], '--sendmail', 'sendmail -C %s -G -i' % pf.config_dir],
                                 capture_output=True, text=True, timeout=60)
            check(rel.returncode == 0, 'release exit 0', rel.stdout + rel.stderr)
            msgs = pf.wait_delivered(before + 1, timeout=30)
            got = [m for m in msgs if m.rcpt == 'friend@example.test']
            check(len(got) == 1 and got[0].raw.startswith(b'Return-Path: <user@sift.test>') and
                  cvlib.EICAR not in got[0].raw and b'eicar.com' in got[0].raw,
                  'released message delivered to the original recipient and sender',
                  [m.raw[:300] for m in got])
            check(os.listdir(qdir) == [], 'released message removed from the store', os.listdir(qdir))

        # Database replaced while mail flows.
        stop = threading.Event()
        results = []
        lock = threading.Lock()

        def flow(w):
            with pf.session() as s:
                i = 0
                while not stop.is_set():
                    bad = (i % 3 == 0)
                    data = infected['zip'][0] if bad else clean['text']
                    r = s.send('flow%d@example.test' % w, ['user@sift.test'], data)
                    with lock:
                        results.append((bad, r))
                    i += 1
        mark = len(fd.log())
        threads = [threading.Thread(target=flow, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        cvlib.make_db(dbdir, extra_ndb={'Sift.Test.Reload': 'SIFT-RELOAD-MARKER-7f3a'})
        ok = sifttest._wait_text(fd.log, r'clamav: new engine in use', 20, mark)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(60)
        check(ok is not None, 'reload: new engine swapped in', fd.log_tail())
        n_clean = sum(1 for b, r in results if not b)
        n_bad = sum(1 for b, r in results if b)
        check(n_clean > 10 and n_bad > 5, 'reload: mail flowed (%d clean, %d infected)' % (n_clean, n_bad))
        check(all(r.accepted for b, r in results if not b), 'reload: every clean message accepted',
              [r for b, r in results if not b and not r.accepted][:3])
        check(all(r.rejected_at() == 'eom' and r.eom[0] == 554 for b, r in results if b),
              'reload: every infected message rejected',
              [r for b, r in results if b and not (r.eom and r.eom[0] == 554)][:3])
        r = pf.send('sender@example.test', ['user@sift.test'],
                    cvlib._plain(b'hello SIFT-RELOAD-MARKER-7f3a', 'marker'))
        check(r.eom and r.eom[0] == 554 and 'Sift.Test.Reload.UNOFFICIAL' in r.eom[1],
              'reload: the new signature is used', r)
        check(fd.alive(), 'filterd (library) alive')

        # ClamAV's temporary files: the plugin's private directory (default
        # base: /dev/shm when it is a tmpfs), mode 0700, ours, empty between
        # scans; removed behind filterd's back, it is created again and the
        # next message is scanned (not tempfailed).
        m = re.search(r'clamav: temporary files in (\S+) \(mode 0700\)', fd.log())
        privdir = m.group(1) if m else None
        check(privdir is not None, 'library: private temporary directory logged', fd.log()[-2000:])
        if privdir:
            shm = os.path.isdir('/dev/shm') and \
                subprocess.run(['stat', '-f', '-c', '%T', '/dev/shm'], capture_output=True,
                               text=True).stdout.strip() == 'tmpfs'
            want_base = '/dev/shm' if shm else (os.environ.get('TMPDIR') or '/tmp')
            check(re.match(r'^%s/sift-clamav\.%d\.[0-9a-f]{16}$' % (re.escape(want_base), fd.pid),
                           privdir) is not None, 'library: private directory in %s' % want_base,
                  privdir)
            st = os.lstat(privdir)
            check(stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and
                  st.st_uid == sifttest.proc_uids(fd.pid)[1],
                  'library: private directory is 0700 and owned by filterd_user',
                  oct(st.st_mode))
            check(os.listdir(privdir) == ['.lock'],
                  'library: no temporary file left after the scans (only the lock file)',
                  repr(os.listdir(privdir)))
            shutil.rmtree(privdir)
            r = pf.send('sender@example.test', ['user@sift.test'], clean['attachment'])
            check(r.accepted and os.path.isdir(privdir) and 'had vanished: created again' in fd.log(),
                  'library: vanished private directory created again, mail scanned', r)

        # ---- clamd mode ------------------------------------------------------
        clamd = cvlib.Clamd(os.path.join(root, 'clamd'), dbdir).start()
        fc, cport = start_filterd(root, 'filterd-clamd', [
            'clamav_mode = clamd',
            'clamav_clamd_servers = unix:%s inet:127.0.0.1:%d' % (clamd.sock, clamd.port),
            'clamav_clamd_connect_timeout = 2s',
            'clamav_clamd_timeout = 30s',
        ])
        procs.append(fc)
        pf.set_main(smtpd_milters='inet:127.0.0.1:%d' % cport)
        pf.reload()
        r = pf.send('sender@example.test', ['user@sift.test'], clean['zip'])
        check(r.accepted, 'clamd: clean accepted', r)
        if r.accepted:
            m = pf.delivered_by_queue_id(r.queue_id)
            check(re.match(r'\s*ClamAV \d+\.\d+\.\d+ at mx\.sift\.test$',
                           m.header('X-Virus-Scanned') or '') is not None,
                  'clamd: X-Virus-Scanned with the clamd version', m.header_block())
        for case in ('qp', 'targz', 'zip'):
            r = pf.send('bad@example.test', ['user@sift.test'], infected[case][0])
            check(r.eom and r.eom[0] == 554 and cvlib.EICAR_NAME in r.eom[1],
                  'clamd: %s rejected' % case, r)
        clamd.kill()
        r = pf.send('sender@example.test', ['user@sift.test'], infected['base64'][0])
        check(r.eom and r.eom[0] == 451 and '4.7.1' in r.eom[1], 'clamd killed: 451 4.7.1', r)
        r = pf.send('sender@example.test', ['user@sift.test'], clean['text'])
        check(r.eom and r.eom[0] == 451, 'clamd killed: clean mail tempfailed too, not accepted', r)
        check(fc.alive(), 'filterd survives clamd crash')
        clamd.start()
        r = pf.send('sender@example.test', ['user@sift.test'], infected['base64'][0])
        check(r.eom and r.eom[0] == 554, 'clamd restarted: scanning again', r)
        r = pf.send('sender@example.test', ['user@sift.test'], clean['text'])
        check(r.accepted, 'clamd restarted: clean accepted', r)
        rss = sifttest.proc_rss(fd.pid)
        print('filterd (library mode) RSS %s KiB, HWM %s KiB' % rss, file=sys.stderr)
    finally:
        if pf is not None:
            pf.stop()
        for p in reversed(procs):
            p.stop()
        if clamd:
            clamd.stop()
        if privdir:
            check(not os.path.exists(privdir), 'library: private directory removed at exit', privdir)
        if failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print('kept %s' % root, file=sys.stderr)
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
