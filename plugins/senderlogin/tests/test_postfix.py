"""senderlogin end to end through a private Postfix with real SASL (a
private Dovecot auth service, `smtpd_sasl_type = dovecot`), filterd as
the milter (header From/Sender check at end of header) and policyd as the
policy service (envelope check at RCPT), with the seed's login_maps.pcre
as-is:

  - alice authenticated, envelope and From alice@example.net: delivered;
  - alice sending as bob@example.net (envelope): 553 5.7.1 ... not owned
    by user alice, from policyd;
  - alice with envelope alice but header From bob (display name forgery):
    553 at end of data from filterd, nothing delivered;
  - alice with From of another domain: refused;
  - unauthenticated mail is not affected by the header check;
  - the envelope check in filterd (a second filterd, an inline map with
    unknown_sender = dunno): "bob"@example.net and a source route to
    bob@example.net are refused at MAIL, "alice"@example.net is accepted.
"""

import os
import sys

from common import SEED_MAP
import sifttest
from sifttest import check, check_eq as eq, done
from dovecotsasl import DovecotSASL

tmp = sifttest.scratch('sift-slpf-')
os.chmod(tmp, 0o755)
procs = []


def msg(from_hdr, subject):
    return ('From: %s\r\nTo: <user@sift.test>\r\nSubject: %s\r\nMessage-ID: <%s@client.sift.test>'
            '\r\n\r\nbody\r\n' % (from_hdr, subject, subject.replace(' ', '-'))).encode()


try:
    dov = DovecotSASL(os.path.join(tmp, 'dovecot'), {'alice': 'alicepw', 'bob': 'bobpw'}).start()
    procs.append(dov)

    fd = sifttest.start_daemon('filterd', tmp, {
        'originating_plugins': 'senderlogin', 'inbound_plugins': '',
        'senderlogin_login_maps': 'pcre:' + SEED_MAP, 'senderlogin_envelope_check': 'no'})
    procs.append(fd)

    pd = sifttest.start_daemon('policyd', tmp, {
        'originating_plugins': 'senderlogin', 'inbound_plugins': 'senderlogin',
        'senderlogin_login_maps': 'pcre:' + SEED_MAP})
    procs.append(pd)

    main = dov.postfix_main()
    # As the seed's reject_authenticated_sender_login_mismatch: in
    # smtpd_sender_restrictions (evaluated at RCPT with smtpd_delay_reject).
    main['smtpd_sender_restrictions'] = 'check_policy_service inet:127.0.0.1:%d' % pd.port
    pf = sifttest.Postfix(root=os.path.join(tmp, 'pf'), milters=['inet:127.0.0.1:%d' % fd.port],
                          recipient_restrictions='permit_sasl_authenticated, '
                          'reject_unauth_destination', main=main)
    procs.append(pf)
    pf.start()

    ALICE = ('alice', 'alicepw')
    r = pf.send('alice@example.net', ['user@sift.test'], msg('Alice <alice@example.net>', 'ok one'),
                auth=ALICE)
    eq(r.auth[0] if r.auth else None, 235, 'SASL authentication through Dovecot')
    check(r.accepted, 'alice as alice accepted: %r' % r)
    delivered = pf.wait_delivered(1)
    eq(len(delivered), 1, 'one delivered')

    r = pf.send('bob@example.net', ['user@sift.test'], msg('Bob <bob@example.net>', 'env bob'),
                auth=ALICE)
    check(not r.accepted and r.rcpts and r.rcpts[0][0] == 553 and
          r.rcpts[0][1] == '5.7.1 <bob@example.net>: Sender address rejected: not owned by user alice',
          'envelope bob refused at RCPT with 553: %r' % r)

    r = pf.send('alice@example.net', ['user@sift.test'],
                msg('"bob@example.net" <alice@example.net>', 'display forgery'), auth=ALICE)
    check(not r.accepted and r.eom and r.eom[0] == 553, 'display-name forgery refused: %r' % r)
    r = pf.send('alice@example.net', ['user@sift.test'], msg('Bob <bob@example.net>', 'hdr forgery'),
                auth=ALICE)
    check(not r.accepted and r.eom and r.eom[0] == 553 and
          'From header address rejected: not owned by user alice' in r.eom[1],
          'From bob refused at end of data: %r' % r)
    r = pf.send('alice@example.net', ['user@sift.test'],
                msg('Alice <alice@example.net>', 'sender forgery').replace(
                    b'Subject:', b'Sender: bob@example.net\r\nSubject:'), auth=ALICE)
    check(not r.accepted and r.eom and r.eom[0] == 553, 'Sender header bob refused: %r' % r)
    r = pf.send('alice@example.net', ['user@sift.test'],
                msg('=?UTF-8?Q?Al=C3=AFce?= <alice@example.net>', 'ok two'), auth=ALICE)
    check(r.accepted, 'RFC 2047 display name, own address, accepted: %r' % r)

    # Not authenticated (from mynetworks): no header check, delivered.
    r = pf.send('someone@example.com', ['user@sift.test'], msg('Bob <bob@example.net>', 'unauth'))
    check(r.accepted, 'unauthenticated mail not affected: %r' % r)
    delivered = pf.wait_delivered(3)
    eq(sorted(m.header('Subject') for m in delivered), ['ok one', 'ok two', 'unauth'],
       'exactly the three good messages delivered')
    check(pf.log_lines(r'reject: RCPT from .*553 5\.7\.1 <bob@example\.net>: Sender address '
                       r'rejected: not owned by user alice'), 'Postfix logged the policy reject')
    check(pf.log_lines(r'milter-reject: END-OF-MESSAGE .*From header address rejected'),
          'Postfix logged the milter reject')
    check('login=alice header=From address=<bob@example.net>: not owned; action=reject' in fd.log(),
          'filterd log line: %s' % fd.log_tail(5))

    # The envelope check in filterd: the milter gets the MAIL FROM argument
    # as the client wrote it, Postfix queues its internal form. A quoted
    # local part or a source route is bob@example.net, known to the map
    # (also with unknown_sender = dunno, which lets unknown addresses by).
    fd2 = sifttest.start_daemon('filterd', tmp, {
        'originating_plugins': 'senderlogin', 'inbound_plugins': '',
        'senderlogin_login_maps': 'inline:{alice@example.net=alice, bob@example.net=bob}',
        'senderlogin_unknown_sender': 'dunno', 'senderlogin_header_check': 'no'}, name='filterd2')
    procs.append(fd2)
    pf.set_main(milters=['inet:127.0.0.1:%d' % fd2.port], smtpd_sender_restrictions='')
    pf.reload()
    for snd in ('"bob"@example.net', '@relay.example:bob@example.net'):
        r = pf.send(snd, ['user@sift.test'], msg('Alice <alice@example.net>', 'route'), auth=ALICE)
        check(not r.accepted and r.mail and r.mail == (
            553, '5.7.1 <bob@example.net>: Sender address rejected: not owned by user alice'),
            'milter envelope check: %s refused at MAIL: %r' % (snd, r))
    r = pf.send('"alice"@example.net', ['user@sift.test'], msg('Alice <alice@example.net>', 'ok three'),
                auth=ALICE)
    check(r.accepted, 'milter envelope check: "alice"@example.net accepted: %r' % r)
    eq(len(pf.wait_delivered(4)), 4, 'and delivered')
finally:
    sifttest.stop_all(procs)
sys.exit(done())
