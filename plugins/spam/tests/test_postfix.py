#!/usr/bin/python3
"""spam plugin through a private Postfix (tests/lib/sifttest.py) with filterd
as its milter and Sift's own rules (rules/sift.cf plus a test rule):

- GTUBE is rejected at end of data with 554 5.7.1, and filterd logs
  "Blocked SPAM ... Hits: 100x ... tests=[...GTUBE=1000...]";
- a clean message is delivered with the seed-format headers
  (tag_level -inf so that clean mail is tagged too):
  X-Spam-Score, X-Spam-Level and `X-Spam-Status: No, score=N
  tagged_above=... required=6.2 tests=[...] autolearn=no autolearn_force=no`
  (folded lines unfold to exactly that), and "Passed CLEAN" is logged;
- a message between tag2 and kill is delivered with X-Spam-Flag: YES, the
  `***SPAM*** ` subject prefix and `X-Spam-Status: Yes, ...`, forged
  incoming X-Spam-* headers are gone, and "Passed SPAM" is logged;
- a reload with a broken rule file fails naming file:line for each error
  and the running rules stay in use;
- with the stock SpamAssassin ruleset (when installed) GTUBE is rejected
  too.
"""

import os
import re
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ.get('SIFT_SRCDIR', os.path.join(os.path.dirname(__file__), '..', '..', '..')),
                                'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402


GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'


def msg(subject, body, extra=''):
    return ('From: Sender <sender@example.test>\r\nTo: user@sift.test\r\nSubject: %s\r\n'
            'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%s@example.test>\r\n%s\r\n%s\r\n'
            % (subject, abs(hash(subject + body)), extra, body)).encode()


def start_filterd(root, name, settings, start_timeout=30.0):
    conf = {'filterd_pid_file': os.path.join(root, name + '.pid'),
            'inbound_plugins': 'spam', 'myhostname': 'mx.sift.test'}
    conf.update(settings)
    return sifttest.start_daemon('filterd', root, conf, name=name, start_timeout=start_timeout)


def main():
    if os.geteuid() != 0:
        check(False, 'needs root (private Postfix)')
        return done()
    root = tempfile.mkdtemp(prefix='sift-spam-pf-')
    os.chmod(root, 0o755)
    rules = os.path.join(root, 'rules')
    os.makedirs(rules)
    with open(os.path.join(rules, 'test.cf'), 'w') as f:
        f.write('body SIFT_TEST_SPAMMY /spammy-marker/\nscore SIFT_TEST_SPAMMY 7\n'
                'describe SIFT_TEST_SPAMMY test rule\n')
    own = os.path.join(sifttest.srcdir(), 'rules')
    procs = []
    pf = None
    try:
        fd = start_filterd(root, 'filterd', {
            'spam_rules': '%s %s' % (own, rules),
            'spam_tag_level': '-inf',
            'spam_kill_level': '20',
        })
        procs.append(fd)
        pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), milters=['inet:127.0.0.1:%d' % fd.port])
        pf.start()

        # GTUBE: rejected
        r = pf.send('sender@example.test', ['user@sift.test'], msg('gtube', GTUBE))
        check(r.rejected_at() == 'eom' and r.eom[0] == 554 and '5.7.1' in r.eom[1],
              'GTUBE rejected with 554 5.7.1', r)
        check(re.search(r'spam: Blocked SPAM, \[127\.0\.0\.1\] <sender@example\.test> -> <user@sift\.test>.*'
                        r'Hits: 100\d.*GTUBE=1000', fd.log()) is not None, 'Blocked SPAM logged', fd.log_tail())

        # clean: delivered with the seed-format header
        r = pf.send('sender@example.test', ['user@sift.test'], msg('lunch', 'Lunch tomorrow at noon?'))
        check(r.accepted, 'clean accepted', r)
        if r.accepted:
            m = pf.delivered_by_queue_id(r.queue_id)
            st = (m.header('X-Spam-Status') or '')
            unfolded = re.sub(r'\r?\n', '', st).strip()
            check(re.fullmatch(r'No, score=-?[0-9.]+ tagged_above=-?[0-9.]+ required=6\.2 tests=\[[^\]]*\] '
                               r'autolearn=no autolearn_force=no', unfolded) is not None,
                  'clean delivered with X-Spam-Status in the seed format', m.header_block())
            check(m.header('X-Spam-Score') is not None and m.header('X-Spam-Level') is not None and
                  m.header('X-Spam-Flag') is None, 'clean: X-Spam-Score and -Level, no flag', m.header_block())
        check(re.search(r'spam: Passed CLEAN, .*Hits: ', fd.log()) is not None, 'Passed CLEAN logged',
              fd.log_tail())

        # spammy (tag2 < score < kill): flagged and subject-tagged, forged headers removed
        r = pf.send('sender@example.test', ['user@sift.test'],
                    msg('offer', 'a spammy-marker here', 'X-Spam-Flag: NO\r\nX-Spam-Status: No, forged\r\n'))
        check(r.accepted, 'spammy accepted', r)
        if r.accepted:
            m = pf.delivered_by_queue_id(r.queue_id)
            check((m.header('Subject') or '').strip() == '***SPAM*** offer', 'subject prefixed',
                  m.header_block())
            check([v.strip() for v in m.headers('X-Spam-Flag')] == ['YES'], 'X-Spam-Flag: YES only',
                  m.header_block())
            sts = m.headers('X-Spam-Status')
            check(len(sts) == 1 and re.sub(r'\r?\n', '', sts[0]).strip().startswith('Yes, score=7') and
                  'SIFT_TEST_SPAMMY=7' in re.sub(r'\r?\n', '', sts[0]), 'X-Spam-Status: Yes with the test',
                  m.header_block())
            check('forged' not in m.header_block(), 'forged X-Spam-Status removed', m.header_block())
        check(re.search(r'spam: Passed SPAM, .*Hits: 7', fd.log()) is not None, 'Passed SPAM logged',
              fd.log_tail())

        # a broken rule file: the reload fails with file:line, the running
        # rules stay (GTUBE still rejected, the test rule still scores)
        with open(os.path.join(rules, 'test.cf'), 'a') as f:
            f.write('body SIFT_BROKEN /unclosed(/\nbogus_directive x\n')
        mark = len(fd.log())
        fd.signal(signal.SIGUSR1)
        ok = fd.wait_log(r'reload failed, keeping the running configuration: .*2 error\(s\) in the rules',
                         timeout=60, start=mark)
        tail = fd.log()[mark:]
        check(ok and 'test.cf:4: SIFT_BROKEN' in tail and "test.cf:5: unknown directive 'bogus_directive'" in tail,
              'reload with broken rules fails naming file:line', tail)
        r = pf.send('sender@example.test', ['user@sift.test'], msg('gtube3', GTUBE))
        check(r.rejected_at() == 'eom' and r.eom[0] == 554, 'after the failed reload GTUBE is still rejected', r)
        r = pf.send('sender@example.test', ['user@sift.test'], msg('offer2', 'a spammy-marker again'))
        check(r.accepted and re.search(r'Passed SPAM, .*Hits: 7', fd.log()[mark:]) is not None,
              'after the failed reload the running rules still score', (r, fd.log_tail()))

        # the stock ruleset
        if os.path.isdir('/usr/share/spamassassin'):
            cache = os.environ.get('SIFT_SPAM_CACHE') or os.path.join(sifttest.builddir(), 'spam-hscache')
            os.makedirs(cache, exist_ok=True)
            sifttest.daemon_writable(cache)
            fd2 = start_filterd(root, 'filterd-stock', {
                'spam_rules': '/usr/share/spamassassin /etc/spamassassin %s' % own,
                'spam_cache_directory': cache,
            }, start_timeout=600.0)
            procs.append(fd2)
            pf.set_main(smtpd_milters='inet:127.0.0.1:%d' % fd2.port)
            pf.reload()
            r = pf.send('sender@example.test', ['user@sift.test'], msg('gtube2', GTUBE))
            check(r.rejected_at() == 'eom' and r.eom[0] == 554, 'stock ruleset: GTUBE rejected', r)
            r = pf.send('sender@example.test', ['user@sift.test'], msg('hello', 'Hello, see you tomorrow.'))
            check(r.accepted, 'stock ruleset: clean accepted', r)
    finally:
        sifttest.stop_all([pf] + procs)
        if not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(root, ignore_errors=True)
    return done()


if __name__ == '__main__':
    sys.exit(main())
