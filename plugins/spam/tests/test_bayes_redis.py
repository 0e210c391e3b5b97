#!/usr/bin/env python3
"""spam plugin Bayes on Redis: two filterd on one redis-server share one
database. siftctl learns into it (the state_store), filterd A autolearns a
spam (autolearn=spam in its X-Spam-Status), the totals show it, and
filterd B scores a spam with BAYES_99 from what was learned elsewhere;
four siftctl learning the same messages at once count each once."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'ratelimit', 'tests'))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'bench', 'message'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402
from redisproc import Redis  # noqa: E402
from bench import send_message  # noqa: E402
from test_bayes import HAMW, SPAMW, learn_together, msg, run, spam_dir  # noqa: E402


def milter_send(port, text, qid):
    head, body = text.split('\n\n', 1)
    headers = [tuple(x.encode() for x in line.split(': ', 1)) for line in head.split('\n')]
    verdict, added = send_message(port, headers, body.replace('\n', '\r\n').encode(), qid)
    return verdict, b'\n'.join(added).decode('utf-8', 'replace').replace('\r\n ', ' ')


def main():
    tmp = sifttest.scratch('sift-bayes-redis-')
    sifttest.daemon_readable(tmp)
    redis = Redis(tmp).start()
    procs = []
    try:
        rules = os.path.join(tmp, 'rules.cf')
        with open(rules, 'w') as f:
            f.write('loadplugin Mail::SpamAssassin::Plugin::Bayes\n'
                    "body BAYES_99 eval:check_bayes('0.99', '1.00')\ntflags BAYES_99 learn\n"
                    'score BAYES_99 0 0 3.5 3.5\n'
                    'header AL_HDR Subject =~ /autolearn-me/\nscore AL_HDR 6\n'
                    'body AL_BODY /autolearnbody/\nscore AL_BODY 6.5\n')
        settings = {
            'inbound_plugins': 'spam', 'spam_rules': rules, 'spam_cache_directory': '',
            'state_store': 'redis:127.0.0.1:%d' % redis.port, 'spam_bayes_store': 'redis',
            'spam_bayes_min_spam_num': '20', 'spam_bayes_min_ham_num': '20', 'spam_tag_level': '-inf',
            'spam_kill_level': 'none', 'myhostname': 'mx.sift.test', 'tmpdir': tmp,
        }
        conf = sifttest.write_conf(os.path.join(tmp, 'siftctl.conf'),
                                   dict(settings, plugin_directory=sifttest.plugin_directory()))
        sdir = os.path.join(tmp, 'spam')
        os.mkdir(sdir)
        for i in range(25):
            with open(os.path.join(sdir, f'{i}.eml'), 'w') as f:
                f.write(msg(i, SPAMW, 'spam'))
        hdir = os.path.join(tmp, 'ham')
        os.mkdir(hdir)
        for i in range(25):
            with open(os.path.join(hdir, f'{i}.eml'), 'w') as f:
                f.write(msg(i, HAMW, 'ham'))
        rc, out = run(conf, 'spam', 'learn', '--spam', sdir)
        check(rc == 0 and 'learned 25' in out, 'learn into redis', out)
        rc, out = run(conf, 'spam', 'learn', '--ham', hdir)
        check(rc == 0 and 'learned 25' in out, 'learn ham into redis', out)
        check(redis.cli('GET', 'sift:bayes:nspam').strip() == '25', 'the documented keys',
              redis.cli('KEYS', 'sift:bayes:n*'))
        a = sifttest.start_daemon('filterd', tmp, dict(settings, spam_bayes_auto_learn='yes'), name='filterd-a')
        procs.append(a)
        b = sifttest.start_daemon('filterd', tmp, dict(settings, spam_bayes_auto_learn='no'), name='filterd-b')
        procs.append(b)
        text = msg(98, SPAMW, 'spam').replace('Subject: spam 98', 'Subject: autolearn-me') + 'autolearnbody\n'
        verdict, added = milter_send(a.port, text, b'QA1')
        check('autolearn=spam' in added, 'filterd A autolearns a spam', added)
        rc, out = run(conf, 'spam', 'stats')
        check('spam: 26' in out, 'the shared totals count it', out)
        verdict, added = milter_send(b.port, msg(77, SPAMW, 'spam'), b'QB1')
        check('BAYES_99=3.5' in added and 'autolearn=disabled' in added,
              'filterd B scores from the shared database', added)
        before = int(redis.cli('GET', 'sift:bayes:nspam').strip())
        learned, outs = learn_together(conf, spam_dir(tmp, 'together', 300))
        after = int(redis.cli('GET', 'sift:bayes:nspam').strip())
        check(learned == 300 and after - before == 300, 'four learners at once: each message learned once (Redis)',
              'learned %d, nspam %d -> %d; %s' % (learned, before, after, outs[0][-300:]))
        check(redis.cli('KEYS', 'sift:bayes:learning:*').strip() == '', 'no claim left behind',
              redis.cli('KEYS', 'sift:bayes:learning:*'))
    finally:
        sifttest.stop_all([redis] + procs)
    return done()


if __name__ == '__main__':
    sys.exit(main())
