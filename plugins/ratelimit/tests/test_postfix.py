"""ratelimit end to end through a private Postfix with real SASL (private
Dovecot auth) and policyd hooked in both places the README documents:

    smtpd_recipient_restrictions = ..., check_policy_service inet:...   (check)
    smtpd_end_of_data_restrictions = check_policy_service inet:...     (count)

Per SASL user: 3 messages and 5 recipients per hour. alice sends 5
single-recipient messages from two parallel sessions: exactly 3 are
delivered, the others get 450 4.7.1 at RCPT. bob sends one message to 4
recipients (counted as 4 at END-OF-MESSAGE from Postfix's recipient_count),
then a 2-recipient one: its second recipient is deferred.
"""

import os
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'senderlogin', 'tests'))

import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402
from dovecotsasl import DovecotSASL  # noqa: E402


def msg(subject):
    return ('From: <x@example.net>\r\nTo: <user@sift.test>\r\nSubject: %s\r\n\r\nbody\r\n'
            % subject).encode()


tmp = tempfile.mkdtemp(prefix='sift-rlpf-')
os.chmod(tmp, 0o755)
procs = []
try:
    dov = DovecotSASL(os.path.join(tmp, 'dovecot'), {'alice': 'apw', 'bob': 'bpw'}).start()
    procs.append(dov)
    pd = sifttest.start_daemon('policyd', tmp, {
        'originating_plugins': 'ratelimit', 'inbound_plugins': 'ratelimit',
        'ratelimit_rules': '{ name=user key=sasl_username messages=3/1h recipients=5/1h '
                           'action=defer text="Too much mail from you" }'})
    procs.append(pd)
    policy = 'check_policy_service inet:127.0.0.1:%d' % pd.port
    main = dov.postfix_main()
    main['smtpd_end_of_data_restrictions'] = policy
    pf = sifttest.Postfix(root=os.path.join(tmp, 'pf'), main=main,
                          recipient_restrictions='reject_unauth_destination, ' + policy)
    procs.append(pf)
    pf.start()

    results = []
    lock = threading.Lock()

    def sender(n, tag):
        with pf.session(auth=('alice', 'apw')) as s:
            for i in range(n):
                r = s.send('alice@example.net', ['user@sift.test'], msg('%s-%d' % (tag, i)))
                with lock:
                    results.append(r)
    ts = [threading.Thread(target=sender, args=(3, 'a')), threading.Thread(target=sender,
                                                                          args=(2, 'b'))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    acc = [r for r in results if r.accepted]
    check(len(acc) == 3, 'alice: exactly 3 of 5 accepted: %r' % results)
    deferred = [r for r in results if not r.accepted]
    check(all((r.rcpts and r.rcpts[0][0] == 450 and 'Too much mail from you' in r.rcpts[0][1]) or
              (r.eom and r.eom[0] == 450) for r in deferred) and len(deferred) == 2,
          'alice: the other 2 deferred with 450 4.7.1: %r' % deferred)
    r = pf.send('bob@example.net', ['u1@sift.test', 'u2@sift.test', 'u3@sift.test', 'u4@sift.test'],
                msg('bob-4'), auth=('bob', 'bpw'))
    check(r.accepted, 'bob: 4 recipients accepted: %r' % r)
    r = pf.send('bob@example.net', ['u5@sift.test', 'u6@sift.test'], msg('bob-2'), auth=('bob', 'bpw'))
    check(r.accepted and r.rcpts[0][0] == 250 and r.rcpts[1][0] == 450,
          'bob: 5th recipient accepted, 6th deferred: %r' % r)
    delivered = pf.wait_delivered(3 + 4 + 1)
    check(len(delivered) == 8, 'delivered copies: %d' % len(delivered))
    rc = sifttest.subprocess.run([sifttest.program('siftctl'), '-c', pd.conf,
                                  'ratelimit', 'show', 'user:bob'], stdout=sifttest.subprocess.PIPE,
                                 text=True, timeout=30).stdout
    check('messages bob: current=2 ' in rc and 'recipients bob: current=5 ' in rc,
          'counted from recipient_count at END-OF-MESSAGE: %s' % rc)
finally:
    sifttest.stop_all(procs)
sys.exit(done())
