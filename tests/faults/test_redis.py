#!/usr/bin/python3
"""Fault matrix: the Redis state store of policyd's ratelimit plugin fails
while mail flows (ratelimit_store_failure = tempfail, a rule every
message is counted against).

  - Redis restarted: SIGKILLed, started again 1.5 s later on the same port
    (its counters are gone, as after a crash without persistence);
  - Redis slow: its answers delayed 1 s (past the store's timeout=200ms)
    by a proxy, for 3 s.

For each: the messages counted while the store failed got 451 4.3.0 and
arrived on the retry, every message was delivered exactly once and went
through policyd (its PREPEND), policyd recovered by itself (same process)
and logged the store failure and, for the restart, the reconnection.
"""

import os
import re
import sys

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


def main():
    env = faultlib.Env('redis', plugins=('access', 'ratelimit'))
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
                 [r'error: state store redis 127\.0\.0\.1:\d+: .*Resource temporarily unavailable'])
    finally:
        env.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
