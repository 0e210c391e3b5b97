#!/usr/bin/python3
"""rbl plugin: policyd against the test DNS lists (tests/lib/dnsbl.py).

Through the policy protocol (one policyd, several request kinds):
  - a client listed in zen (127.0.0.2, weight 3 >= threshold 3) is refused
    at RCPT with "554 5.7.1 Service unavailable; Client host [127.0.0.2]
    blocked using zen.spamhaus.org";
  - only at RCPT: the same client at CONNECT or DATA gets DUNNO;
  - an IPv6 client (2001:db8::66, written in upper case and shortened
    differently) is looked up by its 32 reversed nibbles and refused;
  - a client listed under the threshold (spamcop only, weight 2) passes;
  - weights add up: 127.0.0.5 is in zen's PBL range (weight 3) and in
    list.dnswl.org (weight -2): 1 < 3, DUNNO; the allow list counts;
  - a client in rbl_client_allow (cidr map) is never looked up;
  - an answer outside 127.0.0.0/8 (a hijacked list) never counts, filter
    or not, and a filter whose first octet leaves out 127 is refused at
    start;
  - the dead list (SERVFAIL) never rejects; the slow list (answers after
    the 0.5 s deadline) costs the deadline, not more; with
    rbl_dns_error_action = tempfail a failed list under the threshold
    defers (451 4.7.1), while a listed client is still refused;
  - an allow list that fails (dead.dnsbl.test*-5) while the others reach
    the threshold: rbl_dns_error_action (451 4.7.1 with tempfail, DUNNO
    with dunno), not a refusal, unless its weight could not bring the sum
    under the threshold (then still 554);
  - under the threshold, a failed list defers (tempfail) only when its
    weight could have brought the sum to the threshold: a dead allow list
    or a dead block list too light defers nobody;
  - a bad rbl_sites value is refused at start (policyd -t) with the site
    and what is wrong: a bad filter, a weight that is not an integer or
    out of range, a label over 63 octets or empty, a character no domain
    has, no domain, a domain over 189 octets (an IPv6 client's query name
    would exceed 253: it could never be looked up).
Through a private Postfix with check_policy_service (argument "postfix";
"policy" runs the cases above, no argument both; as root):
  the listed client 127.0.0.1 is refused at RCPT with Postfix logging the
  554 5.7.1 reply, an unlisted client (127.0.0.9, bound as the source
  address) is accepted.
"""

import os
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, check_eq as eq, done  # noqa: E402
from dnsbl import ListServer  # noqa: E402

SITES = 'zen.spamhaus.org=127.0.0.[2..11]*3 bl.spamcop.net*2 list.dnswl.org=127.0.[0..255].[1..3]*-2 dead.dnsbl.test*3'
REJECT = '554 5.7.1 Service unavailable; Client host [%s] blocked using %s'


def ask(pc, ip, state='RCPT'):
    return pc.ask(client_address=ip, client_name='unknown', protocol_state=state, sender='a@example.test',
                  recipient='user@sift.test', instance='%s-%s-%f' % (ip, state, time.time()))


def policy_cases(tmp, dns):
    base = {'inbound_plugins': 'rbl', 'dns_servers': '127.0.0.1:%d' % dns.port,
            'rbl_sites': SITES, 'rbl_threshold': '3', 'rbl_timeout': '500ms'}
    allow = os.path.join(tmp, 'allow.cidr')
    with open(allow, 'w') as f:
        f.write('127.0.0.2/32 OK\n')
    pd = sifttest.start_daemon('policyd', tmp, base)
    try:
        with sifttest.PolicyClient(pd.port) as pc:
            eq(ask(pc, '127.0.0.2'), '554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.spamhaus.org',
               'listed client refused at RCPT naming the list')
            eq(ask(pc, '127.0.0.2', 'CONNECT'), 'DUNNO', 'not at CONNECT')
            eq(ask(pc, '127.0.0.2', 'DATA'), 'DUNNO', 'not at DATA')
            eq(ask(pc, '192.0.2.66'), REJECT % ('192.0.2.66', 'zen.spamhaus.org'),
               'zen 127.0.0.2 + spamcop: the list of greatest weight named')
            eq(ask(pc, '127.0.0.5'), 'DUNNO', 'PBL (3) with dnswl (-2): 1 < 3, accepted')
            eq(ask(pc, '127.0.0.1'), REJECT % ('127.0.0.1', 'zen.spamhaus.org'), 'XBL answer 127.0.0.4 counts')
            eq(ask(pc, '2001:DB8:0::66'), REJECT % ('2001:DB8:0::66', 'zen.spamhaus.org'),
               'an IPv6 client is looked up by its 32 reversed nibbles')
            eq(ask(pc, '2001:db8::67'), 'DUNNO', 'an unlisted IPv6 client passes')
            eq(ask(pc, '127.0.0.9'), 'DUNNO', 'unlisted client: the dead list (SERVFAIL) does not reject')
            eq(ask(pc, '10.1.2.3'), 'DUNNO', 'private address not looked up')
        check('client [127.0.0.9]: a DNS list did not answer' in pd.log(), 'failed lists logged')
        check('reject: client [127.0.0.2] score 6 >= 3 (listed in zen.spamhaus.org=127.0.0.[2..11]*3)'
              in pd.log() or 'reject: client [127.0.0.2] score' in pd.log(), 'reject logged with the score')
    finally:
        pd.stop()

    # allow map, threshold 2 (spamcop alone reaches it), tempfail on DNS errors
    conf = dict(base, rbl_client_allow='cidr:' + allow, rbl_threshold='2', rbl_dns_error_action='tempfail',
                rbl_sites='zen.spamhaus.org=127.0.0.[2..11]*3 bl.spamcop.net*2 slow.dnsbl.test*2')
    pd = sifttest.start_daemon('policyd', tmp, conf, name='policyd2')
    try:
        with sifttest.PolicyClient(pd.port) as pc:
            eq(ask(pc, '127.0.0.2'), 'DUNNO', 'client in rbl_client_allow not looked up')
            eq(ask(pc, '192.0.2.66'), REJECT % ('192.0.2.66', 'zen.spamhaus.org'),
               'listed client refused although a list failed')
            t0 = time.monotonic()
            act = ask(pc, '127.0.0.9')
            took = time.monotonic() - t0
            check(act.startswith('451 4.7.1'), 'slow list under the threshold: tempfail when asked to: %s' % act)
            check(0.4 < took < 2.5, 'the slow list costs the deadline (0.5 s), not its 3 s: %.2f s' % took)
    finally:
        pd.stop()

    # An allow list (negative weight) that fails could have brought the sum
    # under the threshold: the DNS error action decides, never a reject on
    # the lists that answered alone. One too weak to matter changes nothing.
    conf = dict(base, rbl_dns_error_action='tempfail',
                rbl_sites='zen.spamhaus.org=127.0.0.[2..11]*3 dead.dnsbl.test*-5')
    pd = sifttest.start_daemon('policyd', tmp, conf, name='policyd-allowfail')
    try:
        with sifttest.PolicyClient(pd.port) as pc:
            act = ask(pc, '127.0.0.2')
            check(act.startswith('451 4.7.1'), 'failed allow list (-5), zen (3): tempfail, not 554: %s' % act)
            act = ask(pc, '127.0.0.1')
            check(act.startswith('451 4.7.1'), 'failed allow list, zen XBL (3): tempfail: %s' % act)
        check('client [127.0.0.2]: score 3 >= 3, but an allow list did not answer' in pd.log(),
              'failed allow list logged')
    finally:
        pd.stop()
    # Under the threshold, a failed list defers only when its weight could
    # have brought the sum to the threshold: a dead allow list, or a dead
    # block list too light, defers nobody
    for sites, want in (('zen.spamhaus.org*3 dead.dnsbl.test*-5', 'DUNNO'),
                        ('zen.spamhaus.org*3 dead.dnsbl.test*2', 'DUNNO'),
                        ('zen.spamhaus.org*3 dead.dnsbl.test*3', '451 4.7.1')):
        conf = dict(base, rbl_dns_error_action='tempfail', rbl_sites=sites)
        pd = sifttest.start_daemon('policyd', tmp, conf, name='policyd-deadweight')
        try:
            with sifttest.PolicyClient(pd.port) as pc:
                act = ask(pc, '127.0.0.9')
                check(act.startswith(want), 'unlisted client, %s, tempfail on DNS errors: %s (%s)' % (sites, want, act))
        finally:
            pd.stop()
        if want == 'DUNNO':
            check('client [127.0.0.9]: a DNS list did not answer (score 0; its weight' in pd.log(),
                  'the failed list that could not matter is logged')

    conf = dict(base, rbl_dns_error_action='dunno',
                rbl_sites='zen.spamhaus.org=127.0.0.[2..11]*3 bl.spamcop.net*4 dead.dnsbl.test*-2')
    pd = sifttest.start_daemon('policyd', tmp, conf, name='policyd-allowfail2')
    try:
        with sifttest.PolicyClient(pd.port) as pc:
            eq(ask(pc, '127.0.0.1'), 'DUNNO', 'failed allow list (-2), zen (3), dunno on DNS errors: accepted')
            eq(ask(pc, '127.0.0.2'), REJECT % ('127.0.0.2', 'bl.spamcop.net'),
               'zen + spamcop (7) minus a failed allow list (-2) still >= 3: refused')
    finally:
        pd.stop()

    # A list answering outside 127.0.0.0/8 (parked.dnsbl.test answers
    # 198.51.100.80 for 127.0.0.9) never refuses, even through a filter
    # that lets any address pass
    conf = dict(base, rbl_threshold='1',
                rbl_sites='parked.dnsbl.test parked.dnsbl.test=[0..255].[0..255].[0..255].[0..255]*5')
    pd = sifttest.start_daemon('policyd', tmp, conf, name='policyd-parked')
    try:
        with sifttest.PolicyClient(pd.port) as pc:
            eq(ask(pc, '127.0.0.9'), 'DUNNO', 'an answer outside 127/8 never counts, filter or not')
    finally:
        pd.stop()

    # A plugin before rbl used up the request's deadline (policyd_request_deadline):
    # rbl does not wait its own rbl_timeout on top (Postfix has given up by then)
    pdir = os.path.join(tmp, 'plugins-deadline')
    os.makedirs(pdir)
    for so in (os.path.join(sifttest.builddir(), 'plugins', 'rbl.so'),
               os.path.join(sifttest.builddir(), 'tests', 'testplug.so')):
        os.symlink(so, os.path.join(pdir, os.path.basename(so)))
    sdir = os.path.join(tmp, 'stall.d')
    os.mkdir(sdir)
    sifttest.daemon_writable(sdir)
    stall = os.path.join(sdir, 'stall')  # removed by the daemon's user
    conf = dict(base, inbound_plugins='testplug rbl', plugin_directory=pdir, policyd_request_deadline='1s',
                rbl_timeout='4s', rbl_sites='slow.dnsbl.test', testplug_phase='policy',
                testplug_stall_phase='policy', testplug_stall_file=stall, testplug_stall_time='1500ms')
    pd = sifttest.start_daemon('policyd', tmp, conf, name='policyd-deadline')
    try:
        with sifttest.PolicyClient(pd.port) as pc:
            open(stall, 'w').close()
            t0 = time.monotonic()
            act = ask(pc, '127.0.0.9')
            took = time.monotonic() - t0
            check(took < 2.5, 'the deadline spent before rbl: no wait for the lists (%.2f s, %s)' % (took, act))
    finally:
        pd.stop()

    # rbl_sites checked at start: each error names the site and what is wrong
    long_ok = '.'.join(['a' * 62, 'b' * 62, 'c' * 61])  # 187 octets: with an IPv6 name, 251
    long_bad = long_ok + '.dd'  # 190: an IPv6 client's query name would be 254 octets
    for sites, why in (('zen.spamhaus.org=127.0.0.[11..2]', 'bad reply filter'),
                       ('zen.spamhaus.org=10.0.0.2', 'the reply filter never matches'),
                       ('zen.spamhaus.org=[0..126;128..255].0.0.2', 'the reply filter never matches'),
                       ('zen.spamhaus.org*200000', "the weight after '*' is out of range (-100000..100000)"),
                       ('zen.spamhaus.org*-99999999999999999999', 'out of range'),
                       ('zen.spamhaus.org*3x', "the weight after '*' is not an integer"),
                       ('%s.org' % ('x' * 64), 'a label is longer than 63 octets'),
                       ('zen..spamhaus.org', 'an empty label'),
                       ('zen.spam!haus.org', "letters, digits, '-' and '_'"),
                       ('=127.0.0.2', "no domain before '=' or '*'"),
                       (long_bad, 'longer than 189 octets'),
                       (long_ok, None)):
        bad = dict(base, rbl_sites=sites)
        bad.update(plugin_directory=sifttest.plugin_directory(), policyd_user=sifttest.daemon_user() or 'root')
        path = sifttest.write_conf(os.path.join(tmp, 'bad.conf'), bad)
        r = subprocess.run([sifttest.program('policyd'), '-t', '-c', path], capture_output=True, text=True,
                           timeout=30)
        out = (r.stderr + r.stdout).strip()
        if why is None:
            check(r.returncode == 0, 'a 187-octet domain is accepted: %s' % out)
        else:
            check(r.returncode != 0 and why in out and ('"%s"' % sites) in out,
                  'rbl_sites = %s refused by policyd -t (%s): %s' % (sites[:40], why, out))


def postfix_case(tmp, dns):
    pd = sifttest.start_daemon('policyd', tmp, {
        'inbound_plugins': 'rbl', 'dns_servers': '127.0.0.1:%d' % dns.port,
        'rbl_sites': 'zen.spamhaus.org', 'rbl_timeout': '2s'}, name='policyd-pf')
    pf = None
    try:
        pf = sifttest.Postfix(root=os.path.join(tmp, 'pf'), policy='inet:127.0.0.1:%d' % pd.port)
        pf.start()
        msg = b'From: a@example.test\r\nTo: user@sift.test\r\nSubject: t\r\n\r\nbody\r\n'
        r = pf.send('a@example.test', ['user@sift.test'], msg)
        check(not r.accepted and r.rcpts and r.rcpts[0][0] == 554 and
              'Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org' in r.rcpts[0][1],
              'Postfix refuses the listed client at RCPT: %r' % r)
        s = smtplib.SMTP(timeout=30, source_address=('127.0.0.9', 0))
        s.connect('127.0.0.1', pf.port)
        s.ehlo('client.sift.test')
        s.mail('a@example.test')
        code, text = s.rcpt('user@sift.test')
        eq(code, 250, 'an unlisted client (127.0.0.9) is accepted: %s' % text)
        s.quit()
        check(pf.log_lines(r'reject: RCPT from .*\[127\.0\.0\.1\].*554 5\.7\.1 .*blocked using zen\.spamhaus\.org'),
              'Postfix logged the reject')
    finally:
        if pf:
            pf.stop()
            pf.cleanup()
        pd.stop()


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else 'all'
    tmp = sifttest.scratch('sift-rbl-')
    os.chmod(tmp, 0o755)
    dns = ListServer()
    dns.start()
    try:
        if which in ('all', 'policy'):
            policy_cases(tmp, dns)
        if which in ('all', 'postfix'):
            if os.geteuid() == 0:
                postfix_case(tmp, dns)
            else:
                print('not root: the Postfix case is skipped')
    finally:
        dns.stop()
    return done()


if __name__ == '__main__':
    sys.exit(main())
