"""ratelimit end to end through a private Postfix with real SASL (private
Dovecot auth) and policyd hooked in both places the README documents:

    smtpd_recipient_restrictions = ..., check_policy_service inet:...   (check)
    smtpd_end_of_data_restrictions = check_policy_service inet:...     (count)

Per SASL user: 3 messages and 5 recipients per hour. alice sends 5
single-recipient messages from two parallel sessions: exactly 3 are
delivered, the others get 450 4.7.1 at RCPT. bob sends one message to 4
recipients (counted as 4 at END-OF-MESSAGE from Postfix's recipient_count),
then a 2-recipient one: its second recipient is deferred.

Then the exact configuration for counting accepted mail only: ratelimit as
the last plugin of filterd's chain (after senderlogin), beside a policyd
counting at smtpd_end_of_data_restrictions. A message with a forged From:
refused by senderlogin in filterd (553 at the end of data) is not counted
by filterd; policyd, whose END-OF-MESSAGE comes before filterd's end of
message (Postfix's order), has counted it, as README says.
"""

import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'lib'))

import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402
from dovecotsasl import DovecotSASL  # noqa: E402


def msg(subject):
    return ('From: <x@example.net>\r\nTo: <user@sift.test>\r\nSubject: %s\r\n\r\nbody\r\n'
            % subject).encode()


tmp = sifttest.scratch('sift-rlpf-')
os.chmod(tmp, 0o755)
procs = []
try:
    dov = DovecotSASL(os.path.join(tmp, 'dovecot'), {'alice': 'apw', 'bob': 'bpw'}).start()
    procs.append(dov)
    pd = sifttest.start_daemon('policyd', tmp, {
        'originating_plugins': 'ratelimit', 'inbound_plugins': 'ratelimit',
        'ratelimit_control': 'yes', 'ratelimit_control_socket': os.path.join(tmp, 'pd.ctl'),
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

    # ---- counting in filterd, after senderlogin --------------------------------
    logins = os.path.join(tmp, 'logins')
    with open(logins, 'w') as f:
        f.write('carol@example.net carol\n')
    rule = '{ name=user key=sasl_username messages=10/1h action=defer }'
    fd = sifttest.start_daemon('filterd', tmp, {
        'originating_plugins': 'senderlogin ratelimit', 'inbound_plugins': '',
        'senderlogin_login_maps': 'texthash:' + logins, 'ratelimit_rules': rule,
        'ratelimit_control': 'yes', 'ratelimit_control_socket': os.path.join(tmp, 'fd.ctl')})
    procs.append(fd)
    pd2 = sifttest.start_daemon('policyd', tmp, {
        'originating_plugins': 'ratelimit', 'inbound_plugins': '', 'ratelimit_rules': rule,
        'ratelimit_control': 'yes', 'ratelimit_control_socket': os.path.join(tmp, 'pd2.ctl')},
        name='policyd2')
    procs.append(pd2)
    policy = 'check_policy_service inet:127.0.0.1:%d' % pd2.port
    main = dov2 = None
    dov2 = DovecotSASL(os.path.join(tmp, 'dovecot2'), {'carol': 'cpw'}).start()
    procs.append(dov2)
    main = dov2.postfix_main()
    main['smtpd_end_of_data_restrictions'] = policy
    pf2 = sifttest.Postfix(root=os.path.join(tmp, 'pf2'), main=main,
                           milters=['inet:127.0.0.1:%d' % fd.port],
                           recipient_restrictions='reject_unauth_destination, ' + policy)
    procs.append(pf2)
    pf2.start()

    def shown(conf):
        return sifttest.subprocess.run([sifttest.program('siftctl'), '-c', conf, 'ratelimit', 'show',
                                        'user:carol'], stdout=sifttest.subprocess.PIPE,
                                       stderr=sifttest.subprocess.STDOUT, text=True,
                                       timeout=30).stdout
    forged = ('From: <boss@example.net>\r\nTo: <user@sift.test>\r\nSubject: forged\r\n\r\n'
              'body\r\n').encode()
    r = pf2.send('carol@example.net', ['user@sift.test'], forged, auth=('carol', 'cpw'))
    check(r.eom is not None and r.eom[0] == 553, 'forged From: refused with 553 at the end of data: %r'
          % r)
    out = shown(fd.conf)
    check('messages carol: current=0 ' in out, 'filterd: the refused message is not counted: %s' % out)
    out = shown(pd2.conf)
    check('messages carol: current=1 ' in out,
          'policyd at end-of-data: counted before filterd refused it (documented): %s' % out)
    good = ('From: <carol@example.net>\r\nTo: <user@sift.test>\r\nSubject: fine\r\n\r\n'
            'body\r\n').encode()
    r = pf2.send('carol@example.net', ['user@sift.test'], good, auth=('carol', 'cpw'))
    check(r.accepted, 'a message with her own From: accepted: %r' % r)
    out = shown(fd.conf)
    check('messages carol: current=1 ' in out, 'filterd: the accepted message is counted: %s' % out)
finally:
    sifttest.stop_all(procs)
sys.exit(done())
