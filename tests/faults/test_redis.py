#!/usr/bin/python3
"""Fault matrix: the Redis state store of policyd's ratelimit plugin fails
while mail flows (ratelimit_store_failure = tempfail, a rule every
message is counted against).

  - Redis restarted: SIGKILLed, started again 1.5 s later on the same port
    (its counters are gone, as after a crash without persistence);
  - Redis slow: its answers delayed 1 s (past the store's timeout=200ms)
    by a proxy, for 3 s;
  - Redis dripping: its answers sent a byte every 150 ms by the proxy,
    for 3 s (each read in time, no whole answer within 200 ms).

For each: the messages counted while the store failed got 451 4.3.0 and
arrived on the retry, every message was delivered exactly once and went
through policyd (its PREPEND), policyd recovered by itself (same process)
and logged the store failure and, for the restart, the reconnection.

Then the same two faults for the spam plugin's Bayes database on Redis
(spam_bayes_store = redis, a state_store of its own; trained with
`siftctl spam learn`, saved with SAVE so that a restarted Redis loads it
again), each held until a message's Bayes call failed. A Bayes store that
fails is not a reason to defer mail: as SpamAssassin does, the message is
scored without the BAYES_* rules. So:
no 4xx, every message delivered exactly once with its X-Spam-Status,
some scored without BAYES_99 while Redis failed, the failure logged by
filterd; afterwards filterd (same process) uses Bayes again: every
message of a second flow has BAYES_99.
"""

import os
import random
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'ratelimit', 'tests'))
import faultlib  # noqa: E402
from faultlib import check  # noqa: E402
from redisproc import Redis  # noqa: E402

MARK = rb'^X-Fault-Policy: seen$'


def run_case(pd, pf, name, fault, recover, hold, logged):
    what = 'Redis ' + name
    flow, log = faultlib.fault_case(pf, pd, 'redis-' + name, fault, recover, hold, MARK, what)
    faultlib.check_replies(flow, what, 'rcpt', 451, '4.3.0')
    for rx in logged:
        check(re.search(rx, log) is not None, '%s: policyd logged /%s/' % (what, rx),
              '\n'.join(log.splitlines()[-8:]))
    # A failing store is said once per 10 s, not once per call.
    n_replies = sum(len(v) for v in flow.tempfails.values())
    errs = re.findall(r'error: state store redis \S+: [A-Z]+: ', log)
    check(n_replies > 3 and len(errs) <= 2,
          '%s: %d failed calls, %d error lines (bounded)' % (what, n_replies, len(errs)))
    check(pd.alive(), '%s: policyd still running (recovered by itself)' % what)


SPAMW = 'viagra cheap pills offer casino winner lottery unsubscribe prize bonus'.split()
HAMW = 'meeting agenda project report review schedule minutes budget draft release'.split()
BAYES_RULES = ('loadplugin Mail::SpamAssassin::Plugin::Bayes\n'
               "body BAYES_00 eval:check_bayes('0.00', '0.01')\nscore BAYES_00 0 0 -1.9 -1.9\n"
               "body BAYES_99 eval:check_bayes('0.99', '1.00')\nscore BAYES_99 0 0 3.5 3.5\n")


def words(seed, ws):
    rnd = random.Random(seed)
    return ' '.join(rnd.choice(ws) for _ in range(40))


def train(env, redis):
    """25 spam and 25 ham learned into Redis with siftctl, then SAVEd."""
    for kind, ws in (('spam', SPAMW), ('ham', HAMW)):
        d = env.path('learn-' + kind)
        os.mkdir(d)
        for i in range(25):
            with open(os.path.join(d, '%d.eml' % i), 'w') as f:
                f.write('From: %s%d@%s.example\nTo: user@sift.test\nSubject: %s %d\n'
                        'Message-ID: <%s%d@%s.example>\n\n%s\n'
                        % (kind, i, kind, kind, i, kind, i, kind, words(i * 3 + len(kind), ws)))
    conf = faultlib.sifttest.write_conf(env.path('siftctl.conf'), {
        'plugin_directory': env.plugdir, 'inbound_plugins': 'spam',
        'spam_rules': env.path('bayes.cf'), 'spam_cache_directory': '',
        'state_store': 'redis:127.0.0.1:%d' % redis.port, 'spam_bayes_store': 'redis'})
    siftctl = os.path.join(faultlib.sifttest.builddir(), 'tools', 'siftctl')
    for kind in ('spam', 'ham'):
        r = subprocess.run([siftctl, '-c', conf, 'spam', 'learn', '--' + kind, env.path('learn-' + kind)],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and 'learned 25' in r.stdout + r.stderr,
              'Bayes: 25 %s learned into Redis' % kind, r.stdout + r.stderr)
    check(redis.cli('SAVE') == 'OK', 'Bayes: Redis saved its database (dump.rdb)')


def bayes_case(env, pf, fd, name, fault, recover, hold, logged):
    what = 'Bayes on Redis ' + name
    prefix = 'bayes' + name
    body = lambda token: words(token, SPAMW) + '\r\n'  # noqa: E731
    logmark = len(fd.log())
    # met: a message's Bayes call failed (filterd logs the failure)
    flow, _ = faultlib.fault_case(pf, fd, prefix, fault, recover, hold, rb'^X-Spam-Status: ', what,
                                  met=lambda: re.search(logged[0], fd.log()[logmark:]),
                                  min_tempfails=0, body=body)
    check(not flow.tempfails, '%s: no message deferred (scored without Bayes instead)' % what,
          dict(list(flow.tempfails.items())[:3]))
    heads = faultlib.delivered_heads(pf, prefix)
    without = [t for t, h in heads.items() if b'BAYES_99' not in h]
    check(0 < len(without) < len(heads), '%s: %d of %d messages scored without Bayes while Redis '
          'failed, the others with BAYES_99' % (what, len(without), len(heads)))
    # The store tries again at the first call after its back-off (1 s at
    # most since the last failure): that call is the first of this flow.
    time.sleep(1.2)
    after = faultlib.Flow(pf, prefix + 'after', n=20, body=body).start()
    after.join()
    faultlib.verify(after, what + ', afterwards', mark=rb'BAYES_99', min_tempfails=0)
    log = fd.log()[logmark:]
    for rx in logged:
        check(re.search(rx, log) is not None, '%s: filterd logged /%s/' % (what, rx),
              '\n'.join(l for l in log.splitlines() if 'state store' in l)[-1500:])
    check(fd.alive(), '%s: filterd still running (recovered by itself)' % what)


def bayes(env, pf):
    with open(env.path('bayes.cf'), 'w') as f:
        f.write(BAYES_RULES)
    redis = env.add(Redis(env.tmp, name='redis-bayes').start())
    proxy = env.add(faultlib.DelayProxy(redis.port).start())
    train(env, redis)
    fd = env.daemon('filterd', 'filterd', {
        'inbound_plugins': 'spam',
        'spam_rules': env.path('bayes.cf'), 'spam_cache_directory': '',
        'state_store': 'redis:127.0.0.1:%d,timeout=200ms' % proxy.port,
        'spam_bayes_store': 'redis', 'spam_bayes_auto_learn': 'no',
        'spam_bayes_min_spam_num': '20', 'spam_bayes_min_ham_num': '20',
        'spam_tag_level': '-inf', 'spam_kill_level': 'none',
    })
    pf.set_main(milters=['inet:127.0.0.1:%d' % fd.port])
    pf.reload()
    bayes_case(env, pf, fd, 'restarted', redis.kill, redis.start, 1.5,
               [r'state store redis .*: .*calls fail until it is back', r'connected again'])
    bayes_case(env, pf, fd, 'slow', lambda: proxy.set_delay(1.0), lambda: proxy.set_delay(0), 3,
               [r'state store redis 127\.0\.0\.1:\d+: .*no whole answer within the timeout', r'connected again'])


def main():
    env = faultlib.Env('redis', plugins=('access', 'ratelimit', 'spam'))
    try:
        redis = env.add(Redis(env.tmp).start())
        proxy = env.add(faultlib.DelayProxy(redis.port).start())
        rcpts = env.path('policy-rcpts')
        with open(rcpts, 'w') as f:
            f.write('user@sift.test\tPREPEND X-Fault-Policy: seen\n')
        pd = env.daemon('policyd', 'policyd', {
            'inbound_plugins': 'ratelimit access',
            'access_recipient_map': 'texthash:' + rcpts,
            'state_store': 'redis:127.0.0.1:%d,timeout=200ms' % proxy.port,
            'ratelimit_store_failure': 'tempfail',
            'ratelimit_rules': '{ name=all key=client_address messages=1000000/1h action=defer }',
        })
        pf = env.postfix(policy=pd.port)

        def crash():
            redis.kill()

        def back():
            redis.start()
        run_case(pd, pf, 'restarted', crash, back, 1.5,
                 [r'state store redis .*: .*calls fail until it is back', r'connected again'])
        run_case(pd, pf, 'slow', lambda: proxy.set_delay(1.0), lambda: proxy.set_delay(0), 3,
                 [r'error: state store redis 127\.0\.0\.1:\d+: .*no whole answer within the timeout'])
        # each byte in time for a read, the whole answer not: timeout=200ms
        # bounds the command, not each read
        run_case(pd, pf, 'dripping', lambda: proxy.set_drip(0.15), lambda: proxy.set_drip(0), 3,
                 [r'error: state store redis 127\.0\.0\.1:\d+: .*no whole answer within the timeout'])
        bayes(env, pf)
    finally:
        env.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
