#!/usr/bin/python3
"""Self-test of the real-Postfix harness (tests/lib/sifttest.py), no Sift
daemons involved: a private Postfix instance with no milters receives three
messages (two on the inbound port, one on the ORIGINATING submission port),
delivers them into its Maildir, logs them in its own maillog; a relay attempt
is rejected at RCPT; after stop() no process of the instance is left.

Run as root: /usr/bin/python3 tests/postfix/selftest.py [-v] (meson test
postfix-harness). Prints "N passed, N failed".
"""

import os
import signal
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import sifttest  # noqa: E402

from sifttest import check, done  # noqa: E402

VERBOSE = '-v' in sys.argv


def main():
    if os.geteuid() != 0:
        check(False, 'selftest: needs root for a private Postfix')
        return done()
    pf = sifttest.Postfix(submission=True)
    config_dir = pf.config_dir
    try:
        pf.start()
        check(pf.status(), 'postfix -c DIR status reports running')
        check(pf.master_pid is not None and sifttest._pid_alive(pf.master_pid),
              'master PID %s alive' % pf.master_pid)
        check(pf.postconf('mail_version')['mail_version'].startswith('3.'),
              'postconf -c DIR works')

        results = []
        for i in range(2):
            results.append(pf.send('sender@example.test', ['rcpt%d@sift.test' % i],
                                   sifttest.message('selftest %d' % i,
                                                    to='rcpt%d@sift.test' % i)))
        results.append(pf.send_submission('user@sift.test', ['friend@example.test'],
                                          sifttest.message('selftest submission',
                                                           sender='user@sift.test',
                                                           to='friend@example.test')))
        for i, r in enumerate(results):
            check(r.accepted and r.queue_id and r.eom[0] == 250,
                  'message %d accepted with a queue id' % i, r)

        relay = pf.send('sender@example.test', ['someone@elsewhere.invalid'],
                        sifttest.message('relay'))
        check(relay.rejected_at() == 'rcpt' and relay.rcpts[0][0] == 554,
              'relay attempt rejected at RCPT with 554', relay)

        msgs = pf.wait_delivered(3, timeout=20)
        check(len(msgs) == 3, '3 messages in the Maildir', msgs)
        subjects = sorted(m.header('Subject') for m in msgs)
        check(subjects == ['selftest 0', 'selftest 1', 'selftest submission'],
              'delivered subjects', subjects)
        m = pf.delivered_by_queue_id(results[2].queue_id)
        check(m.rcpt == 'friend@example.test', 'Delivered-To of the submission message',
              m.header_block())
        check(m.raw.startswith(b'Return-Path: <user@sift.test>'), 'Return-Path first',
              m.raw[:200])
        check(m.msg.get_content().strip() == 'Hello from the Sift test harness.', 'body intact',
              m.raw)

        for r in results:
            ok = pf.wait_log(r'%s: to=<[^>]+>, relay=virtual, .*status=sent' % r.queue_id, 10)
            check(ok is not None, 'maillog: %s delivered' % r.queue_id,
                  '\n'.join(pf.log_for(r.queue_id)))
        check(pf.wait_log(r'postfix/submission/smtpd\[\d+\]: %s: client=' %
                          results[2].queue_id, 5) is not None,
              'maillog: submission service logs as postfix/submission')
        check(pf.wait_log(r'NOQUEUE: reject: RCPT from .*Relay access denied', 5) is not None,
              'maillog: relay reject logged')
        check(pf.queue() == [], 'queue empty (postqueue -j)', pf.queue())

        # persistent session: several messages in one SMTP session
        with pf.session() as s:
            rs = [s.send('sender@example.test', 'multi@sift.test',
                         sifttest.message('multi %d' % i)) for i in range(3)]
        check(all(r.accepted for r in rs), '3 messages over one session', rs)
        pf.wait_delivered(6, timeout=20)
        check(len(pf.maildir_messages(rcpt='multi@sift.test')) == 3,
              'maildir_messages(rcpt=) filters by Delivered-To')

        # reload() returns only once the smtpd processes of before it are
        # gone (an idle one could still take the next connection with the
        # old settings): one of them is held stopped during the reload.
        mark = pf.log_mark()
        idle = [p for p in pf.instance_pids() if sifttest._proc_comm(p) == 'smtpd']
        check(idle, 'idle smtpd processes before the reload', pf.instance_pids())
        if idle:
            os.kill(idle[0], signal.SIGSTOP)
        t = threading.Thread(target=pf.reload)
        t.start()
        t.join(1.5)
        check(t.is_alive(), 'reload() waits while an smtpd of before it is still there')
        if idle:
            os.kill(idle[0], signal.SIGCONT)
        t.join(15)
        check(not t.is_alive() and not [p for p in idle if sifttest._pid_alive(p)],
              'reload() returns once the smtpd processes of before it are gone', idle)
        check(pf.wait_log(r'master\[\d+\]: reload', 5, start=mark) is not None, 'reload')
        r = pf.send('sender@example.test', 'after-reload@sift.test', sifttest.message('x'))
        check(r.accepted, 'accepts after reload', r)
        if VERBOSE:
            print(pf.log())
    finally:
        killed = pf.stop()
        check(killed == [], 'stop() needed no SIGKILL', killed)
        left = sifttest.pids_with_env('MAIL_CONFIG', config_dir)
        check(left == [], 'no process of the instance left', left)
        check(not pf.status(), 'postfix status reports stopped')
        pf.cleanup()
    return done()


if __name__ == '__main__':
    sys.exit(main())
