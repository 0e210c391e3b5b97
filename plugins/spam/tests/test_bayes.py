#!/usr/bin/env python3
"""spam plugin Bayes through siftctl: learn from a directory, an mbox and a
Maildir, stats, forget, BAYES_99 / BAYES_00 with set 2 scores once enough
spam and ham are learned, an LMDB database that persists across runs (each
siftctl is a new process), the import of an sa-learn --backup dump (one
that fails changes nothing), several processes learning the same messages
at once, each counted once; a Message-ID longer than LMDB's keys learned
once; a filterd reload keeps filterd's one LMDB environment (and its
lock)."""
import fcntl
import os
import pwd
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402

SIFTCTL = sifttest.program('siftctl')
BUILD = sifttest.builddir()
SPAMW = 'viagra cheap pills offer casino winner lottery unsubscribe prize bonus'.split()
HAMW = 'meeting agenda project report review schedule minutes budget draft release'.split()


def msg(i, words, kind):
    rnd = random.Random(i * 7 + len(kind))
    body = ' '.join(rnd.choice(words) for _ in range(40))
    return (f'From: {kind}{i}@{kind}.example\nTo: user@sift.test\nSubject: {kind} {i}\n'
            f'Message-ID: <{kind}{i}@{kind}.example>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n{body}\n')


def run(conf, *args):
    p = subprocess.run([SIFTCTL, '-c', conf] + list(args), capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def learn_together(conf, path, procs=4):
    """procs `siftctl spam learn --spam path` at once: the sum of what they
    say they learned, and their outputs."""
    ps = [subprocess.Popen([SIFTCTL, '-c', conf, 'spam', 'learn', '--spam', path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True) for _ in range(procs)]
    outs = [p.communicate(timeout=120)[0] for p in ps]
    learned = sum(int(m.group(1)) for o in outs for m in [re.search(r'learned (\d+) message', o)] if m)
    return learned, outs


def spam_dir(tmp, name, n, first=1000):
    d = os.path.join(tmp, name)
    os.mkdir(d)
    for i in range(first, first + n):
        with open(os.path.join(d, f'{i}.eml'), 'w') as f:
            f.write(msg(i, SPAMW, 'spam'))
    return d


def lock_holders(path):
    """The pids with a POSIX lock from byte 0 of file path (/proc/locks):
    for lock.mdb, the shared lock of the processes that have the LMDB
    environment open."""
    st = os.stat(path)
    pids = set()
    with open('/proc/locks') as f:
        for line in f:
            x = line.split()
            # ID: POSIX ADVISORY READ|WRITE PID MAJ:MIN:INODE START END
            if (len(x) >= 7 and x[1] == 'POSIX' and x[5].rsplit(':', 1)[-1] == str(st.st_ino)
                    and x[6] == '0'):
                pids.add(int(x[4]))
    return pids


def excl_free(path):
    """Whether LMDB's exclusive lock (byte 0 of lock.mdb) could be taken
    now, as an opener that initialises the reader table takes it."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the probe's lock, if taken


def reload_keeps_environment(tmp, rules):
    """filterd with an LMDB store reloads (the new configuration opens the
    store while the old one has it open): it keeps one environment, whose
    lock on lock.mdb stays held, and siftctl and filterd go on learning."""
    from test_bayes_redis import milter_send
    db = os.path.join(tmp, 'db-reload')
    os.mkdir(db)
    sifttest.daemon_writable(db)
    lock = os.path.join(db, 'lock.mdb')
    fd = None
    try:
        fd = sifttest.start_daemon('filterd', tmp, {
            'inbound_plugins': 'spam', 'spam_rules': rules, 'spam_cache_directory': '',
            'spam_bayes_store': 'lmdb:' + db, 'spam_bayes_min_spam_num': '20', 'spam_bayes_min_ham_num': '20',
            'spam_bayes_auto_learn': 'yes', 'spam_tag_level': '-inf', 'spam_kill_level': 'none',
            'myhostname': 'mx.sift.test',
            'tmpdir': tmp}, name='filterd-reload')
        check(fd.pid in lock_holders(lock) and not excl_free(lock), 'filterd holds its lock on lock.mdb',
              open('/proc/locks').read())
        for n in (1, 2):
            mark = len(fd.log())
            fd.signal(signal.SIGUSR1)
            ok = fd.wait_log(r'configuration reloaded', timeout=30, start=mark)
            check(ok and fd.pid in lock_holders(lock) and not excl_free(lock),
                  'reload %d: filterd still holds its lock on lock.mdb' % n,
                  fd.log()[mark:] + open('/proc/locks').read())
        rc, out = run(fd.conf, 'spam', 'learn', '--spam', spam_dir(tmp, 'after-reload', 30, first=3000))
        check(rc == 0 and 'learned 30 message(s)' in out, 'siftctl learns after the reload', out)
        text = msg(3999, SPAMW, 'spam').replace('Subject: spam 3999', 'Subject: autolearn-me') + 'autolearnbody\n'
        verdict, added = milter_send(fd.port, text, b'QR1')
        check('autolearn=spam' in added, 'filterd autolearns after the reload', repr(added))
        rc, out = run(fd.conf, 'spam', 'stats')
        check(rc == 0 and 'spam: 31' in out, 'both counted', out)
        check(fd.alive() and fd.pid in lock_holders(lock) and not excl_free(lock),
              'filterd runs and holds its lock after siftctl', open('/proc/locks').read())
        # the atimes its scans refreshed: written by its worker, at the
        # latest when it stops (the learned mail and the autolearned spam
        # are dated 2024, the probe 2025)
        hdir = os.path.join(tmp, 'ham-reload')
        os.mkdir(hdir)
        for i in range(25):
            with open(os.path.join(hdir, f'{i}.eml'), 'w') as f:
                f.write(msg(i, HAMW, 'ham'))
        rc, out = run(fd.conf, 'spam', 'learn', '--ham', hdir)
        probe = msg(3998, SPAMW, 'spam').replace('Mon, 1 Jan 2024', 'Sun, 1 Jun 2025')
        verdict, added = milter_send(fd.port, probe, b'QR2')
        sifttest.stop_all([fd])
        rc, dump = run(fd.conf, 'spam', 'dump')
        atimes = [ln.split('\t')[3] for ln in dump.splitlines() if ln.startswith('t\t')]
        touched = atimes.count('1748736000')
        newer = [a for a in atimes if int(a) > 1748736000]
        check('BAYES_99' in added and touched >= 5 and not newer,
              'filterd writes the atimes its scans refreshed; what it autolearned has the receive date of '
              'its mail, not the time of learning',
              '%d touched; %s; %s' % (touched, added, sorted(set((a, atimes.count(a)) for a in atimes))))
    finally:
        sifttest.stop_all([fd])


def long_message_id(tmp, conf):
    """A Message-ID longer than LMDB's keys (511 octets): remembered under
    its hash, so it is learned once and forgotten, and the messages
    learned with it count once each, however often the learn runs."""
    d = spam_dir(tmp, 'longid', 2, first=4000)
    with open(os.path.join(d, '4000.eml')) as f:
        text = f.read()
    with open(os.path.join(d, '4000.eml'), 'w') as f:
        f.write(text.replace('Message-ID: <spam4000@spam.example>', 'Message-ID: <%s@spam.example>' % ('x' * 600)))
    conf4 = conf + '4'
    with open(conf) as a, open(conf4, 'w') as b:
        b.write(a.read().replace(f'{tmp}/db', f'{tmp}/db4'))
    rc, out = run(conf4, 'spam', 'learn', '--spam', d)
    check(rc == 0 and 'learned 2 message(s) as spam, 0 skipped' in out and '0 failed' in out,
          'a 600-octet Message-ID is learned', out)
    for n in (2, 3):
        rc, out = run(conf4, 'spam', 'learn', '--spam', d)
        check(rc == 0 and 'learned 0 message(s) as spam, 2 skipped' in out and '0 failed' in out,
              'learn %d: the 600-octet Message-ID is skipped' % n, out)
        rc, out = run(conf4, 'spam', 'stats')
        check(rc == 0 and re.search(r'spam: 2\s', out) is not None, 'learn %d: still 2 spam counted' % n, out)
    rc, out = run(conf4, 'spam', 'forget', os.path.join(d, '4000.eml'))
    check(rc == 0 and 'forgot 1 message(s)' in out, 'the 600-octet Message-ID is forgotten', out)
    rc, out = run(conf4, 'spam', 'stats')
    check(rc == 0 and re.search(r'spam: 1\s', out) is not None, 'forgetting it counts', out)


def seen_ttl(tmp, conf):
    """spam_bayes_seen_ttl reaches the LMDB store: a message learned more
    than the TTL ago is learned (counted) again."""
    d = spam_dir(tmp, 'seenttl', 2, first=5000)
    d2 = spam_dir(tmp, 'seenttl2', 1, first=5100)
    conf5 = conf + '5'
    with open(conf) as a, open(conf5, 'w') as b:
        b.write(a.read().replace(f'{tmp}/db', f'{tmp}/db5') + 'spam_bayes_seen_ttl = 1s\n')
    rc, out = run(conf5, 'spam', 'learn', '--spam', d)
    check(rc == 0 and 'learned 2 message(s) as spam' in out, 'seen TTL: learned', out)
    rc, out = run(conf5, 'spam', 'learn', '--spam', d)
    check(rc == 0 and 'learned 0 message(s) as spam, 2 skipped' in out, 'seen TTL: skipped while seen', out)
    time.sleep(2.5)
    # the next learn's expiry pass drops the seen entries older than 1 s
    rc, out = run(conf5, 'spam', 'learn', '--spam', d2)
    check(rc == 0 and 'learned 1 message(s) as spam' in out, 'seen TTL: another message learned', out)
    rc, out = run(conf5, 'spam', 'learn', '--spam', d)
    check(rc == 0 and 'learned 2 message(s) as spam, 0 skipped' in out,
          'seen TTL: past spam_bayes_seen_ttl, learned again', out)


def learned_as_root(tmp, conf):
    """An administrator runs siftctl spam learn as root: a new store under
    the daemon's state directory (owned by the daemon user) belongs to that
    user, so the daemon can open it (not root's 0750)."""
    if os.geteuid() != 0:
        return
    user = sifttest.daemon_user()
    state = os.path.join(tmp, 'state')
    os.mkdir(state, 0o750)
    pw = pwd.getpwnam(user)
    os.chown(state, pw.pw_uid, pw.pw_gid)
    os.chmod(tmp, 0o755)
    d = spam_dir(tmp, 'asroot', 2, first=6000)
    conf6 = conf + '6'
    with open(conf) as a, open(conf6, 'w') as b:
        b.write(a.read().replace(f'lmdb:{tmp}/db', f'lmdb:{state}/bayes'))
    os.chmod(conf6, 0o644)
    rc, out = run(conf6, 'spam', 'learn', '--spam', d)
    check(rc == 0 and 'learned 2 message(s) as spam' in out, 'learned as root', out)
    owners = {n: pwd.getpwuid(os.lstat(os.path.join(state, 'bayes', n)).st_uid).pw_name
              for n in ('.', 'data.mdb', 'lock.mdb')}
    check(set(owners.values()) == {user}, 'a store made by root belongs to the daemon user', owners)
    p = subprocess.run(['runuser', '-u', user, '--', SIFTCTL, '-c', conf6, 'spam', 'stats'],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0 and re.search(r'spam: 2\s', p.stdout) is not None,
          'the daemon user reads the store root made', p.stdout + p.stderr)


def main():
    tmp = sifttest.scratch('sift-bayes-')
    rules = os.path.join(tmp, 'rules.cf')
    with open(rules, 'w') as f:
        f.write('loadplugin Mail::SpamAssassin::Plugin::Bayes\n')
        for name, lo, hi, sc in (('BAYES_00', '0', '0.01', -1.9), ('BAYES_50', '0.4', '0.6', 0.8),
                                 ('BAYES_99', '0.99', '1.00', 3.5)):
            f.write(f"body {name} eval:check_bayes('{lo}', '{hi}')\ntflags {name} learn\n"
                    f"score {name} 0 0 {sc} {sc}\n")
        # 12.5 points without Bayes, 6 of them header and 6.5 body points
        f.write('header AL_HDR Subject =~ /autolearn-me/\nscore AL_HDR 6\n'
                'body AL_BODY /autolearnbody/\nscore AL_BODY 6.5\n'
                'header AL_NO Subject =~ /noautolearn/\nscore AL_NO 20\ntflags AL_NO noautolearn\n')
        # scored in the Bayes sets only: run while Bayes is usable, else not
        # run at all (false in metas), as SpamAssassin does
        f.write('header SET2_ONLY Subject =~ /set2-probe/\nscore SET2_ONLY 0 0 1.25 1.25\n'
                'meta SET2_META SET2_ONLY\nscore SET2_META 0.5\n')
    conf = os.path.join(tmp, 'f.conf')
    with open(conf, 'w') as f:
        f.write(f'inbound_plugins = spam\nplugin_directory = {BUILD}/plugins\nspam_rules = {rules}\n'
                f'spam_cache_directory =\nspam_bayes_store = lmdb:{tmp}/db\nspam_bayes_min_spam_num = 20\n'
                'spam_bayes_min_ham_num = 20\nspam_bayes_auto_learn = no\n')
    # spam: a directory of files; ham: an mbox and a Maildir
    sdir = os.path.join(tmp, 'spam')
    os.mkdir(sdir)
    for i in range(25):
        with open(os.path.join(sdir, f'{i}.eml'), 'w') as f:
            f.write(msg(i, SPAMW, 'spam'))
    mbox = os.path.join(tmp, 'ham.mbox')
    with open(mbox, 'w') as f:
        for i in range(12):
            f.write(f'From ham{i}@ham.example Mon Jan  1 00:00:00 2024\n' + msg(i, HAMW, 'ham') + '\n')
    md = os.path.join(tmp, 'Maildir')
    for d in ('cur', 'new', 'tmp'):
        os.makedirs(os.path.join(md, d))
    for i in range(12, 24):
        with open(os.path.join(md, 'new' if i % 2 else 'cur', f'{i}.host'), 'w') as f:
            f.write(msg(i, HAMW, 'ham'))
    rc, out = run(conf, 'spam', 'learn', '--spam', sdir)
    check(rc == 0 and 'learned 25 message(s) as spam' in out, 'learn a directory', out)
    rc, out = run(conf, 'spam', 'learn', '--ham', mbox, md)
    check(rc == 0 and 'learned 24 message(s) as ham' in out, 'learn an mbox and a Maildir', out)
    rc, out = run(conf, 'spam', 'learn', '--ham', mbox)
    check('learned 0 message(s)' in out and '12 skipped' in out, 'a message is learned once', out)
    rc, out = run(conf, 'spam', 'stats')
    check(rc == 0 and 'spam: 25' in out and 'ham: 24' in out and 'ready: yes' in out, 'stats', out)
    probe = os.path.join(tmp, 'probe.eml')
    with open(probe, 'w') as f:
        f.write(msg(99, SPAMW, 'spam'))
    rc, out = run(conf, 'spam', 'check', probe)
    check('BAYES_99=3.5' in out, 'BAYES_99 with its set 2 score on spam', out)
    # the scan touched the tokens that decided it (SpamAssassin's
    # tok_touch_all): their atime is now the probe's date, the others'
    # still the learned mail's; written when siftctl ends
    with open(probe, 'w') as f:
        f.write(msg(99, SPAMW, 'spam').replace('Mon, 1 Jan 2024', 'Sun, 1 Jun 2025'))
    rc, out = run(conf, 'spam', 'check', probe)
    rc, dump = run(conf, 'spam', 'dump')
    atimes = [int(ln.split('\t')[3]) for ln in dump.splitlines() if ln.startswith('t\t')]
    touched = atimes.count(1748736000)
    check(rc == 0 and 'BAYES_99' in out and touched >= 5 and atimes.count(1704067200) >= 5 and
          touched + atimes.count(1704067200) == len(atimes),
          'a scan refreshes the atime of the tokens it used', f'{touched} of {len(atimes)} touched; {out}')
    with open(probe, 'w') as f:
        f.write(msg(99, HAMW, 'ham'))
    rc, out = run(conf, 'spam', 'check', probe)
    check('BAYES_00=-1.9' in out, 'BAYES_00 on ham', out)
    set2 = os.path.join(tmp, 'set2.eml')
    with open(set2, 'w') as f:
        f.write(msg(97, HAMW, 'ham').replace('Subject: ham 97', 'Subject: set2-probe'))
    rc, out = run(conf, 'spam', 'check', set2)
    check('SET2_ONLY=1.25' in out and 'SET2_META=0.5' in out, 'a rule scored in set 2 only runs with Bayes', out)
    # forget the mbox: below bayes_min_ham_num, Bayes stops scoring
    rc, out = run(conf, 'spam', 'forget', mbox)
    check(rc == 0 and 'forgot 12 message(s)' in out, 'forget an mbox', out)
    rc, out = run(conf, 'spam', 'check', probe)
    check('BAYES_' not in out.split('X-Spam-Status')[1], 'no Bayes below bayes_min_ham_num', out)
    rc, out = run(conf, 'spam', 'check', set2)
    check('SET2_' not in out.split('X-Spam-Status')[1],
          'without Bayes (set 0) a rule scored 0 there is not run: false in metas', out)
    # autolearn (SpamAssassin's thresholds) shows in X-Spam-Status
    conf_al = conf + '-al'
    with open(conf) as a, open(conf_al, 'w') as b:
        b.write(a.read().replace('spam_bayes_auto_learn = no', 'spam_bayes_auto_learn = yes'))
    with open(probe, 'w') as f:
        f.write(msg(98, SPAMW, 'spam').replace('Subject: spam 98', 'Subject: autolearn-me')
                + 'autolearnbody\n')
    rc, out = run(conf_al, 'spam', 'check', probe)
    check(re.search(r'autolearn=spam autolearn_force=no', out) is not None, 'autolearn=spam', out)
    rc, out = run(conf, 'spam', 'stats')
    check('spam: 26' in out, 'autolearn learned the spam', out)
    with open(probe, 'w') as f:
        f.write(msg(97, SPAMW, 'spam').replace('Subject: spam 97', 'Subject: noautolearn autolearn-me'))
    rc, out = run(conf_al, 'spam', 'check', probe)
    check('autolearn=no ' in out, 'noautolearn rules and too few body points: autolearn=no', out)
    with open(probe, 'w') as f:
        f.write(msg(96, HAMW, 'ham'))
    rc, out = run(conf_al, 'spam', 'check', probe)
    check('autolearn=ham ' in out, 'autolearn=ham below 0.1 points', out)
    rc, out = run(conf, 'spam', 'check', probe)
    check('autolearn=disabled ' in out, 'autolearn=disabled when off', out)
    # a dump as sa-learn --backup writes it, into a new database
    dump = os.path.join(tmp, 'backup.txt')
    with open(dump, 'w') as f:
        f.write('v\t3\tdb_version # this must be the first line!!!\nv\t30\tnum_spam\nv\t30\tnum_nonspam\n')
        f.write('t\t30\t0\t1700000000\t0123456789\ns\th\tx@y\n')
    conf2 = conf + '2'
    with open(conf) as a, open(conf2, 'w') as b:
        b.write(a.read().replace(f'{tmp}/db', f'{tmp}/db2'))
    rc, out = run(conf2, 'spam', 'import', dump)
    check(rc == 0 and 'imported 1 token' in out, 'import a backup dump', out)
    rc, out = run(conf2, 'spam', 'stats')
    check(re.search(r'spam: 30\s+ham: 30\s+tokens: 1', out) is not None, 'imported totals', out)
    # a dump that fails after three batches of tokens (4096 each) and a
    # seen line: nothing of it is imported
    bad = os.path.join(tmp, 'bad-backup.txt')
    with open(bad, 'w') as f:
        f.write('v\t3\tdb_version # this must be the first line!!!\nv\t99\tnum_spam\nv\t99\tnum_nonspam\n')
        f.write(''.join('t\t1\t2\t1700000000\t%010x\n' % (0x1000000 + i) for i in range(3 * 4096 + 5)))
        f.write('s\ts\tbad@import\nthis is not a dump line\n')
    rc, out = run(conf2, 'spam', 'import', bad)
    check(rc == 1 and 'line 12298: not an sa-learn --backup line' in out and 'nothing imported' in out,
          'a failed import says so', out)
    rc, out = run(conf2, 'spam', 'stats')
    check(re.search(r'spam: 30\s+ham: 30\s+tokens: 1\s', out) is not None, 'a failed import changes nothing', out)
    # counts that the store cannot hold (over 2^32 - 1) or that are not
    # numbers are refused, not wrapped
    for line, what in (('t\t4294967296\t0\t1700000000\t0abcdef012\n', 'a token count of 2^32'),
                       ('t\t-1\t0\t1700000000\t0abcdef012\n', 'a negative token count'),
                       ('v\t99999999999\tnum_spam\n', 'a message count of 10^11')):
        with open(bad, 'w') as f:
            f.write('v\t3\tdb_version # this must be the first line!!!\n' + line)
        rc, out = run(conf2, 'spam', 'import', bad)
        check(rc == 1 and 'line 2: not an sa-learn --backup line' in out, 'import refuses %s' % what, out)
    # four processes learning the same 300 messages into one LMDB database:
    # each message once (the seen entry is checked again in the write)
    conf3 = conf + '3'
    with open(conf) as a, open(conf3, 'w') as b:
        b.write(a.read().replace(f'{tmp}/db', f'{tmp}/db3'))
    learned, outs = learn_together(conf3, spam_dir(tmp, 'together', 300))
    rc, out = run(conf3, 'spam', 'stats')
    check(learned == 300 and re.search(r'spam: 300\s', out) is not None,
          'four learners at once: each message learned once (LMDB)', 'learned %d; %s' % (learned, out))
    long_message_id(tmp, conf)
    seen_ttl(tmp, conf)
    learned_as_root(tmp, conf)
    reload_keeps_environment(tmp, rules)
    return done()


if __name__ == '__main__':
    sys.exit(main())
