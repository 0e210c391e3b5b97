#!/usr/bin/python3
"""spam plugin start-up with Debian's stock SpamAssassin ruleset, through a
private Postfix with filterd as its milter:

- `filterd -t` takes seconds (rules are checked and compiled for PCRE2-JIT,
  Hyperscan is not waited for);
- with an empty Hyperscan cache, filterd scores mail at once (PCRE2-JIT) while
  the databases compile in the background; the seconds from the start of
  filterd to the first 250 reply are printed; once the log says the
  Hyperscan databases are in use, the same messages get exactly the same
  X-Spam-Status (score and tests) as before the switch;
- filterd's summary line gives the same score as X-Spam-Score (a symbol
  of another plugin weighed by the rules is counted once);
- the cache written by that compile is used by the next start (no compile,
  Hyperscan from the first message); seconds to the first 250 printed;
- the cache is trusted only when safe: a cache file writable by others or
  owned by another user, or a world-writable cache directory, is ignored
  with a warning; a symlink in place of a cache file is not followed (not
  read, and replaced by `siftctl spam compile` without touching its
  target); no temporary file is left; `siftctl spam compile` exits 1 when
  it cannot cache, and stops a compile that takes longer than
  spam_compile_timeout (no process or temporary file left).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.environ.get('SIFT_SRCDIR', os.path.join(os.path.dirname(__file__), '..', '..', '..')),
                                'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402

STOCK = '/usr/share/spamassassin'


def msg(n, subject, body, extra=''):
    return ('From: Sender <sender@example.test>\r\nTo: user@sift.test\r\nSubject: %s\r\n'
            'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <start%d@example.test>\r\n%s\r\n%s\r\n'
            % (subject, n, extra, body)).encode()


MESSAGES = [
    ('lunch', 'Lunch tomorrow at noon?', ''),
    ('FREE MONEY!!! Act now', '<html><body><a href="http://bit.example/x">CLICK HERE</a> to claim your '
     'FREE prize, 100% GUARANTEED, no credit check, lose weight fast, viagra cialis</body></html>',
     'Content-Type: text/html\r\n'),
    ('Your account', 'Dear valued customer, your bank account has been suspended. Verify your password at '
     'http://198.51.100.7/login now or it will be closed. Unsubscribe here.', ''),
    ('softfail', 'Meeting notes attached, see you on Monday.', ''),
]


def unfold(v):
    return re.sub(r'\r?\n', '', v or '').strip()


def start_filterd(root, name, settings, **kw):
    # root: the cache checks below use uid 65534 (nobody) as a foreign owner
    conf = {'filterd_user': 'root', 'filterd_pid_file': os.path.join(root, name + '.pid'),
            'myhostname': 'mx.sift.test', 'inbound_plugins': 'testplug spam', 'spam_tag_level': '-inf',
            'spam_kill_level': 'none', 'plugin_directory': os.path.join(root, 'plugins')}
    conf.update(settings)
    return sifttest.start_daemon('filterd', root, conf, name=name, **kw)


def send_all(pf, fd, label):
    """Sends MESSAGES; returns [(X-Spam-Status, X-Spam-Score, summary score)]."""
    out = []
    for i, (subj, body, extra) in enumerate(MESSAGES):
        r = pf.send('sender@example.test', ['user@sift.test'], msg(i, subj, body, extra))
        check(r.accepted, '%s: message %d accepted' % (label, i), r)
        if not r.accepted:
            out.append(None)
            continue
        m = pf.delivered_by_queue_id(r.queue_id)
        qid = r.queue_id
        summ = fd.wait_log(r'%s: filterd: action=\S+, .*?score=(-?[0-9.]+)' % re.escape(qid), timeout=10)
        out.append((unfold(m.header('X-Spam-Status')), (m.header('X-Spam-Score') or '').strip(),
                    summ.group(1) if summ else None))
    return out


def first_250(pf, fd_start, root, name, settings):
    """Starts filterd and sends until the first 250; returns (Proc, seconds)."""
    t0 = time.monotonic()
    fd = fd_start(root, name, settings)
    deadline = t0 + 600
    while time.monotonic() < deadline:
        r = pf.send('sender@example.test', ['user@sift.test'], msg(99, 'first', 'hello'))
        if r.accepted:
            return fd, time.monotonic() - t0
        time.sleep(0.2)
    return fd, None


def filterd_t(conf):
    t0 = time.monotonic()
    r = subprocess.run([sifttest.program('filterd'), '-c', conf, '-t'], capture_output=True, text=True,
                       timeout=600)
    return r, time.monotonic() - t0


def main():
    if os.geteuid() != 0:
        check(False, 'needs root (private Postfix, cache ownership)')
        return done()
    if not os.path.isdir(STOCK):
        check(False, 'needs the stock ruleset in %s (package spamassassin)' % STOCK)
        return done()
    root = tempfile.mkdtemp(prefix='sift-spam-start-')
    os.chmod(root, 0o755)
    cache = os.path.join(root, 'cache')
    os.makedirs(cache, mode=0o755)
    pdir = os.path.join(root, 'plugins')
    os.makedirs(pdir)
    build = sifttest.builddir()
    shutil.copy(os.path.join(build, 'plugins', 'spam.so'), pdir)
    shutil.copy(os.path.join(build, 'tests', 'testplug.so'), pdir)
    own = os.path.join(sifttest.srcdir(), 'rules')
    settings = {'spam_rules': '%s /etc/spamassassin %s' % (STOCK, own), 'spam_cache_directory': cache}
    procs = []
    pf = None
    try:
        # -t: seconds, not minutes
        conf = sifttest.write_conf(os.path.join(root, 't.conf'), dict(
            settings, plugin_directory=pdir, inbound_plugins='spam', myhostname='mx.sift.test',
            filterd_user='root'))
        r, secs = filterd_t(conf)
        print('filterd -t with the stock ruleset: %.1f s' % secs)
        check(r.returncode == 0 and secs < 20, 'filterd -t: OK within 20 s', (r.returncode, secs, r.stderr[-800:]))

        # a compile that takes longer than spam_compile_timeout is stopped:
        # the stock ruleset takes a minute or more, here it gets 1 s
        slow = os.path.join(root, 'slow-cache')
        os.makedirs(slow, mode=0o755)
        sconf = sifttest.write_conf(os.path.join(root, 'slow.conf'), dict(
            settings, plugin_directory=pdir, inbound_plugins='spam', spam_cache_directory=slow,
            spam_compile_timeout='1s'))
        tag = 'sift-compile-timeout-%d' % os.getpid()
        t0 = time.monotonic()
        r = subprocess.run([sifttest.program('siftctl'), '-c', sconf, 'spam', 'compile'], capture_output=True,
                           text=True, timeout=300, env=dict(os.environ, SIFT_TEST_TAG=tag))
        secs = time.monotonic() - t0
        check(r.returncode == 1 and 'did not finish within spam_compile_timeout (1 s)' in r.stderr and secs < 60,
              'siftctl spam compile stops a compile longer than spam_compile_timeout',
              (r.returncode, '%.1f s' % secs, r.stderr[-800:]))
        # the groups compiled before the stop are cached (the next compile
        # keeps them); nothing half-written is
        check(not sifttest.pids_with_env('SIFT_TEST_TAG', tag) and
              all(f.endswith('.hsdb') and not f.startswith('.') for f in os.listdir(slow)),
              'the stopped compiler leaves no process and no temporary file', os.listdir(slow))

        port = sifttest.free_port()
        pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), milters=['inet:127.0.0.1:%d' % port])
        pf.start()

        def fd_start(root_, name, s):
            st = dict(settings, testplug_symbol='SPF_softfail:1')
            st.update(s)
            return start_filterd(root_, name, st, listen='inet:127.0.0.1:%d' % port, start_timeout=600.0)

        # no cache: PCRE2-JIT at once, Hyperscan later
        fd, secs = first_250(pf, fd_start, root, 'nocache', {})
        procs.append(fd)
        print('no cache: %s s from filterd start to the first 250' % ('%.1f' % secs if secs else 'never'))
        check(secs is not None and secs < 30, 'no cache: first 250 within 30 s', secs)
        before = send_all(pf, fd, 'PCRE2-JIT')
        check(re.search(r'Hyperscan: compiling \d+ rule group', fd.log()) is not None and
              'now in use' not in fd.log(), 'scored on PCRE2-JIT while Hyperscan compiles', fd.log_tail())
        t0 = time.monotonic()
        ok = fd.wait_log(r'Hyperscan databases compiled in \d+ ms, now in use', timeout=900)
        print('Hyperscan compile finished %.0f s after the first messages' % (time.monotonic() - t0))
        check(ok, 'the background compile finishes and switches to Hyperscan', fd.log_tail())
        after = send_all(pf, fd, 'Hyperscan')
        for i, (b, a) in enumerate(zip(before, after)):
            check(b is not None and b == a, 'message %d: same X-Spam-Status and score before and after the '
                  'switch' % i, (b, a))
            if b:
                check(b[2] is not None and abs(float(b[2]) - float(b[1])) < 0.0005,
                      'message %d: summary score = X-Spam-Score' % i, b)
        check('SPF_SOFTFAIL=0.972' in before[3][0] and 'SPF_softfail(0.972)' in fd.log(),
              'SPF symbol weighed by symbol_score, counted once', (before[3], fd.log_tail(5)))
        check(re.search(r'loaded in \d+ ms', fd.log()) and 'required=6.2' in fd.log() and
              'required_score 5' not in fd.log(), 'the log shows the required score of the headers',
              fd.log_tail())
        fd.stop()
        check(len([f for f in os.listdir(cache) if f.endswith('.hsdb')]) > 0, 'the compile filled the cache',
              os.listdir(cache))

        # with the cache: Hyperscan from the first message
        fd, secs = first_250(pf, fd_start, root, 'cache', {})
        procs.append(fd)
        print('with the cache: %s s from filterd start to the first 250' % ('%.1f' % secs if secs else 'never'))
        check(secs is not None and secs < 30, 'cache: first 250 within 30 s', secs)
        check('Hyperscan: compiling' not in fd.log() and 'through Hyperscan prefilters' in fd.log(),
              'cache: no compile, Hyperscan at once', fd.log_tail())
        again = send_all(pf, fd, 'cache')
        check(again == before, 'cache: the same results', (before, again))
        fd.stop()

        # cache trust
        files = sorted((os.path.getsize(os.path.join(cache, f)), f) for f in os.listdir(cache))
        small = os.path.join(cache, files[0][1])
        check(not [f for f in os.listdir(cache) if f.startswith('.')], 'no temporary file left', os.listdir(cache))
        r, _ = filterd_t(conf)
        check('through Hyperscan prefilters' in r.stderr and 'ignored' not in r.stderr, 'trusted cache loads',
              r.stderr[-800:])
        os.chmod(small, 0o666)
        r, _ = filterd_t(conf)
        check(re.search(re.escape(small) + r': writable by group or others .*ignored', r.stderr) is not None and
              'through Hyperscan prefilters' not in r.stderr, 'world-writable cache file refused', r.stderr[-800:])
        os.chmod(small, 0o644)
        os.chown(small, 65534, 65534)
        r, _ = filterd_t(conf)
        check(re.search(re.escape(small) + r': owned by another user .*ignored', r.stderr) is not None,
              'cache file of another user refused', r.stderr[-800:])
        os.chown(small, 0, 0)
        os.chmod(cache, 0o777)
        r, _ = filterd_t(conf)
        check('spam_cache_directory %s: writable by group or others' % cache in r.stderr and
              'through Hyperscan prefilters' not in r.stderr, 'world-writable cache directory refused',
              r.stderr[-800:])
        r = subprocess.run([sifttest.program('siftctl'), '-c', conf, 'spam', 'compile'], capture_output=True,
                           text=True, timeout=900)
        check(r.returncode == 1 and 'not usable' in r.stderr, 'siftctl spam compile exits 1 when it cannot cache',
              (r.returncode, r.stdout, r.stderr))
        os.chmod(cache, 0o755)
        # a symlink in place of a cache file: not read, not written through
        victim = os.path.join(root, 'victim')
        with open(victim, 'w') as f:
            f.write('victim\n')
        os.unlink(small)
        os.symlink(victim, small)
        r, _ = filterd_t(conf)
        check(re.search(re.escape(small) + r': .*ignored', r.stderr) is not None, 'symlinked cache file not read',
              r.stderr[-800:])
        r = subprocess.run([sifttest.program('siftctl'), '-c', conf, 'spam', 'compile'], capture_output=True,
                           text=True, timeout=900)
        with open(victim) as f:
            vtext = f.read()
        check(r.returncode == 0 and not os.path.islink(small) and os.path.isfile(small) and vtext == 'victim\n',
              'siftctl spam compile replaces the symlink, its target untouched',
              (r.returncode, r.stdout, r.stderr, os.path.islink(small), vtext[:40]))
        check(not [f for f in os.listdir(cache) if f.startswith('.')], 'no temporary file left after compile',
              os.listdir(cache))
        r, _ = filterd_t(conf)
        check('through Hyperscan prefilters' in r.stderr, 'the cache is complete again', r.stderr[-800:])
    finally:
        sifttest.stop_all([pf] + procs)
        if not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(root, ignore_errors=True)
    return done()


if __name__ == '__main__':
    sys.exit(main())
