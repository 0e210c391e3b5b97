#!/usr/bin/python3
"""Fault matrix: a daemon killed (SIGKILL) in the middle of a message.

filterd, under a supervisor loop, is killed twice per case while a flow of
messages runs, each time while one message is held at a known milter
stage: connect, MAIL, RCPT, header, body, end of message (the test plugin
stalls there: testplug_stall_phase, armed by a file). Then policyd, killed
in the middle of a policy request (RCPT), with Postfix asking once per
request (smtpd_policy_service_try_limit = 1; with the default, 2, Postfix
asks the restarted policyd again and nothing reaches the client). For each case: every message is
delivered exactly once, with the filter's header (none let through
unfiltered), the messages in flight got a 4xx and arrived on the retry,
the supervisor had the daemon running again, and Postfix logged the
failure it turned into the 4xx.
"""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import check, Flow, verify, wait_text  # noqa: E402

PHASES = {'connect': 0, 'mail': 2, 'rcpt': 3, 'header': 5, 'body': 7, 'eom': 8}
MARK = rb'^X-Fault-Filter: seen$'


def kill_at(env, fd, flow, stall, phase_no, what):
    """Twice: arm the stall, wait until a message is held there, SIGKILL."""
    for at in (flow.n // 4, flow.n * 3 // 5):
        flow.wait_done(at)
        mark = len(fd.log())
        open(stall, 'w').close()
        held = wait_text(fd.log, r'stalled at phase %d\b' % phase_no, 30, mark)
        check(held is not None, '%s: a message is held at the stage' % what, fd.log()[-1500:])
        check(fd.kill(signal.SIGKILL), '%s: the supervisor started it again' % what)
        if os.path.exists(stall):
            os.unlink(stall)


def filterd_cases(env):
    pf = None
    for name, no in PHASES.items():
        stall = os.path.join(env.shared, 'stall-' + name)
        fd = env.daemon('filterd', 'filterd-' + name, {
            'inbound_plugins': 'testplug',
            'testplug_header': 'X-Fault-Filter: seen',
            'testplug_stall_phase': name,
            'testplug_stall_file': stall,
        }, supervised=True)
        if pf is None:
            pf = env.postfix(milter=fd.port)
        else:
            pf.set_main(milters=['inet:127.0.0.1:%d' % fd.port])
            pf.reload()
        what = 'filterd SIGKILL at %s' % name
        logmark = pf.log_mark()
        flow = Flow(pf, 'kill-' + name, new_session=(name == 'connect')).start()
        kill_at(env, fd, flow, stall, no, what)
        flow.join()
        verify(flow, what, mark=MARK)
        check(fd.starts == 3, '%s: killed twice, started again twice' % what, fd.starts)
        log = pf.log()[logmark:]
        check('milter inet:127.0.0.1:%d' % fd.port in log and
              '451 4.7.1 Service unavailable - try again later' in log,
              '%s: Postfix logged the milter failure and its 451 4.7.1' % what,
              '\n'.join(pf.log_lines(r'warning|milter', logmark)[-10:]))
        fd.stop()
    return pf


def policyd_case(env, pf):
    stall = os.path.join(env.shared, 'stall-policy')
    rcpts = env.path('policy-rcpts')
    with open(rcpts, 'w') as f:
        f.write('user@sift.test\tPREPEND X-Fault-Policy: seen\n')
    pd = env.daemon('policyd', 'policyd', {
        'inbound_plugins': 'access testplug',
        'access_recipient_map': 'texthash:' + rcpts,
        'testplug_stall_phase': 'policy',
        'testplug_stall_file': stall,
    }, supervised=True)
    # One try per request (Postfix's default, 2, asks the restarted
    # policyd again and the client never sees the failure): the request
    # in flight then gets Postfix's 451 4.3.5 and the client retries.
    pf.set_main(milters=[], policy='inet:127.0.0.1:%d' % pd.port,
                smtpd_policy_service_try_limit='1')
    pf.reload()
    what = 'policyd SIGKILL mid-request'
    logmark = pf.log_mark()
    flow = Flow(pf, 'kill-policy').start()
    kill_at(env, pd, flow, stall, 9, what)
    flow.join()
    verify(flow, what, mark=rb'^X-Fault-Policy: seen$')
    check(pd.starts == 3, '%s: killed twice, started again twice' % what, pd.starts)
    log = pf.log()[logmark:]
    check('problem talking to server 127.0.0.1:%d' % pd.port in log and
          re.search(r'451 4\.3\.5 <user@sift\.test>: [^;]*Server configuration problem', log),
          '%s: Postfix logged the broken policy request and its 451 4.3.5' % what,
          '\n'.join(pf.log_lines(r'warning', logmark)[-10:]))


def main():
    env = faultlib.Env('kill', plugins=('testplug', 'access'))
    try:
        pf = filterd_cases(env)
        policyd_case(env, pf)
    finally:
        env.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
