"""ratelimit through a real policyd, over the policy protocol, with the
memory: store and with a real redis-server:

  - a limit is hit exactly at the configured count under 8 concurrent
    clients (END-OF-MESSAGE increments are atomic; refused messages are
    taken back);
  - in filterd before a plugin that refuses the message at its end (the
    test plugin: reject, tempfail): the message is taken back; with that
    plugin accepting, it counts;
  - recipients and bytes limits, client_address /24 and IPv6 /64 buckets,
    sender_domain and recipient keys, exemption maps, each action;
  - siftctl ratelimit show / reset / stats over the control socket
    (ratelimit_control_socket, with its mode and group); control requests
    on the policy socket are refused, and with the defaults there is no
    control at all;
  - two policyd instances sharing one redis-server enforce one limit
    together, exactly, under concurrency;
  - redis-server killed mid-test: fail-open (DUNNO, counted in the
    store_failures metric and logged) or tempfail per configuration; it
    comes back on the same port and policyd recovers without a restart;
  - a full memory: store (max_keys) evicts rather than fails: a new user
    is still limited after an outside sender filled it (the eviction is
    logged once and counted in the metrics);
  - redis: spec options: unix socket, password, db, prefix; a wrong
    password fails open.
"""

import grp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'milter'))
sys.path.insert(0, HERE)

import sifttest  # noqa: E402
from sifttest import check, check_eq as eq, done  # noqa: E402
from policyclient import PolicyClient, refused  # noqa: E402
from redisproc import Redis  # noqa: E402
from run import CONNECT, Milter, pkt  # noqa: E402

SIFTCTL = sifttest.program('siftctl')
tmp = sifttest.scratch('sift-rl-')
procs = []


def start_policyd(name, settings, control=True):
    if control:
        settings = dict(settings, ratelimit_control='yes',
                        ratelimit_control_socket=os.path.join(tmp, name + '.ctl'))
    return sifttest.start_daemon('policyd', tmp, settings, name=name)


def siftctl(conf, *args):
    r = subprocess.run([SIFTCTL, '-c', conf, 'ratelimit'] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def hammer(ports, attempts_per_client, clients, **tx):
    """`clients` threads, each with its own connection (round-robin over
    ports), each trying `attempts_per_client` transactions. Returns
    (accepted, refused_at_rcpt, refused_at_eom, other)."""
    res = {'acc': 0, 'rcpt': 0, 'eom': 0, 'other': []}
    lock = threading.Lock()

    def worker(i):
        with PolicyClient(ports[i % len(ports)]) as c:
            for _ in range(attempts_per_client):
                rc, eom = c.transaction(**tx)
                with lock:
                    if eom is None:
                        res['rcpt'] += 1
                    elif eom == 'DUNNO':
                        res['acc'] += 1
                    elif refused(eom):
                        res['eom'] += 1
                    else:
                        res['other'].append(eom)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return res['acc'], res['rcpt'], res['eom'], res['other']


BASE = {'inbound_plugins': 'ratelimit', 'originating_plugins': 'ratelimit'}
EXEMPT = os.path.join(tmp, 'exempt.cidr')
with open(EXEMPT, 'w') as f:
    f.write('198.51.100.0/24 OK\n')

RULES = ('{ name=user key=sasl_username messages=20/1h action=defer text="Too much mail" }\n'
         '  { name=net key=client_address messages=5/1h ipv4_prefix=24 action=reject '
         'exempt=cidr:%s profile=inbound }\n'
         '  { name=rcpts key=sender_domain recipients=6/1h bytes=10k/1h action=defer_if_permit profile=inbound }\n'
         '  { name=watch key=global messages=1000000/1h action=log }' % EXEMPT)

try:
    # ---- memory: store -----------------------------------------------------------
    pd = start_policyd('mem', dict(BASE, ratelimit_rules=RULES))
    procs.append(pd)
    acc, r_rcpt, r_eom, other = hammer([pd.port], 10, 8, sasl_username='u1', client_address='10.1.1.1',
                                       sender='u1@a.example', rcpts=['r@x.example'], size=10)
    eq(acc, 20, 'memory: exactly 20 of 80 concurrent messages accepted')
    eq(r_rcpt + r_eom, 60, 'memory: the other 60 refused')
    eq(other, [], 'memory: no unexpected answers')
    rc, out = siftctl(pd.conf, 'show', 'user:u1')
    check(rc == 0 and 'current=20 ' in out, 'siftctl show user:u1 = 20: %s' % out)
    with PolicyClient(pd.port) as c:
        rc_, eom = c.transaction(sasl_username='u1', client_address='10.1.1.2', sender='u1@b.example')
        eq(rc_, ['450 4.7.1 Too much mail'], 'user over the limit: defer with the rule text')
    # The policy socket never serves control requests, even with control on.
    with PolicyClient(pd.port) as c:
        for cmd in ('reset', 'show', 'stats'):
            eq(c.ask(request='sift_ratelimit', command=cmd, key='user:u1', protocol_state='CONTROL',
                     instance='ctl.%s' % cmd), 'DUNNO',
               'control request "%s" on the policy socket refused (DUNNO)' % cmd)
    rc, out = siftctl(pd.conf, 'show', 'user:u1')
    check(rc == 0 and 'current=20 ' in out, 'still 20 after the refused reset: %s' % out)
    rc, out = siftctl(pd.conf, 'reset', 'user:u1')
    check(rc == 0 and 'reset' in out, 'siftctl reset: %s' % out)
    rc, out = siftctl(pd.conf, 'show', 'user:u1')
    check('current=0 ' in out, 'after reset: %s' % out)
    with PolicyClient(pd.port) as c:
        eq(c.transaction(sasl_username='u1', client_address='10.1.1.2', sender='u1@b.example')[1],
           'DUNNO', 'accepted again after reset')

        # client_address /24, inbound only, with an exemption map.
        ans = [c.transaction(client_address='192.0.2.%d' % (i + 1), sender='s%d@c.example' % i)[1]
               for i in range(6)]
        eq(ans[:5], ['DUNNO'] * 5, '/24 bucket: 5 messages from 5 addresses')
        eq(ans[5], None, '/24 bucket: 6th refused at RCPT')
        rc_, eom = c.transaction(client_address='192.0.2.200', sender='z@c2.example')
        eq(rc_, ['550 5.7.1 Rate limit exceeded: 5 messages per 1h'], 'reject text')
        eq(c.transaction(client_address='192.0.3.1', sender='z@c3.example')[1], 'DUNNO',
           'other /24 not limited')
        ex = [c.transaction(client_address='198.51.100.7', sender='e@c4-%d.example' % i)[1]
              for i in range(8)]
        eq(ex, ['DUNNO'] * 8, 'exempt network never limited')
        eq(c.transaction(client_address='192.0.2.9', sasl_username='u9', sender='u9@c5.example')[1],
           'DUNNO', 'profile=inbound rule skips authenticated (originating) mail')

        # Recipients and bytes per sender domain, DEFER_IF_PERMIT.
        r1 = c.transaction(client_address='10.2.0.1', sender='a@rd.example',
                           rcpts=['1@x', '2@x', '3@x', '4@x'], size=100)
        eq(r1, (['DUNNO'] * 4, 'DUNNO'), '4 recipients accepted')
        r2 = c.transaction(client_address='10.2.0.2', sender='b@rd.example',
                           rcpts=['5@x', '6@x', '7@x'], size=100)
        eq(r2[0][:2], ['DUNNO', 'DUNNO'], 'recipients 5 and 6 fit')
        check(r2[0][2].startswith('DEFER_IF_PERMIT 4.7.1 Rate limit exceeded: 6 recipients'),
              '7th recipient: DEFER_IF_PERMIT: %r' % r2[0][2])
        eq(r2[1], 'DUNNO', 'two-recipient message counted at END-OF-MESSAGE')
        big = c.transaction(client_address='10.2.0.3', sender='c@bytes.example', size=20000)
        check(big[0][0].startswith('DEFER_IF_PERMIT') and 'bytes' in big[0][0],
              'bytes limit at RCPT from SIZE: %r' % (big,))

        rc, out = siftctl(pd.conf, 'stats')
        check(rc == 0 and 'store_failures=0' in out and 'over_limit=' in out, 'stats: %s' % out)
        rc, out = siftctl(pd.conf, 'show', 'net:192.0.2.0/24')
        check('current=5 ' in out, 'show /24 bucket: %s' % out)
    check('rule net: key 192.0.2.0/24 over 5 messages per 1h' in pd.log(), 'log line for net rule')
    pd.stop()

    # Defaults: no control anywhere.
    pd = start_policyd('memdef', dict(BASE, ratelimit_rules=RULES), control=False)
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        eq(c.transaction(sasl_username='u1', client_address='10.1.1.1', sender='u1@a.example')[1],
           'DUNNO', 'defaults: a message counted')
        eq(c.ask(request='sift_ratelimit', command='show', key='user:u1', protocol_state='CONTROL',
                 instance='ctl.def'), 'DUNNO', 'defaults: control request on the policy socket refused')
    rc, out = siftctl(pd.conf, 'show', 'user:u1')
    check(rc == 1 and 'ratelimit_control is off' in out and 'current=' not in out,
          'defaults: siftctl ratelimit says control is off: %s' % out)
    pd.stop()

    # The control socket's mode and group.
    ctl = os.path.join(tmp, 'memmode.ctl')
    pd = sifttest.start_daemon('policyd', tmp, dict(
        BASE, ratelimit_rules=RULES, ratelimit_control='yes', ratelimit_control_socket=ctl,
        ratelimit_control_socket_mode='0640', ratelimit_control_socket_group='postfix'),
        name='memmode')
    procs.append(pd)
    st = os.stat(ctl)
    eq((oct(st.st_mode & 0o7777), grp.getgrgid(st.st_gid).gr_name), ('0o640', 'postfix'),
       'control socket: mode 0640, group postfix')
    rc, out = siftctl(pd.conf, 'stats')
    check(rc == 0 and 'rules=4' in out, 'siftctl stats over the control socket: %s' % out)
    rc, out = subprocess.run([SIFTCTL, '-c', pd.conf, 'ratelimit', 'stats', '--socket', ctl],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=30).returncode, None
    eq(rc, 0, 'siftctl ratelimit --socket PATH')
    pd.stop()
    # bound as root before the privilege drop, the socket may outlive the
    # daemon (its user cannot unlink it); nobody answers on it any more, and
    # the next start replaces it
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(ctl)
        alive = True
    except OSError:
        alive = False
    finally:
        probe.close()
    check(not alive, 'control socket no longer answers after exit')
    pd = sifttest.start_daemon('policyd', tmp, dict(
        BASE, ratelimit_rules=RULES, ratelimit_control='yes', ratelimit_control_socket=ctl),
        name='memmode2')
    procs.append(pd)
    rc, out = siftctl(pd.conf, 'stats')
    check(rc == 0 and 'rules=4' in out, 'a restart replaces the old control socket: %s' % out)
    pd.stop()

    # A reload that a later plugin refuses keeps the running generation,
    # and its control socket keeps answering (the refused generation's
    # release once left the socket answering "disabled").
    pdir = os.path.join(tmp, 'plugins-reload')
    os.makedirs(pdir)
    for so in (os.path.join(sifttest.builddir(), 'plugins', 'ratelimit.so'),
               os.path.join(sifttest.builddir(), 'tests', 'testplug.so')):
        os.symlink(so, os.path.join(pdir, os.path.basename(so)))
    settings = dict(BASE, inbound_plugins='ratelimit testplug', plugin_directory=pdir, ratelimit_rules=RULES)
    pd = start_policyd('memreload', settings)
    procs.append(pd)
    rc, out = siftctl(pd.conf, 'stats')
    check(rc == 0 and 'rules=4' in out, 'before the reload: stats answer: %s' % out)
    with open(pd.conf, 'a') as f:
        f.write('testplug_init_fail = refused by the test\n')
    os.kill(pd.pid, signal.SIGHUP)
    check(pd.wait_log(r'reload failed.*refused by the test', timeout=20) is not None,
          'reload refused by a later plugin: logged', pd.log_tail(10))
    rc, out = siftctl(pd.conf, 'stats')
    check(rc == 0 and 'rules=4' in out, 'after the refused reload: stats still answer: %s' % out)
    pd.stop()

    # HOLD per recipient (the action does not refuse: the count stays).
    pd = start_policyd('memhold', dict(BASE, ratelimit_rules=(
        '{ name=hold key=recipient messages=2/1d action=hold } '
        '{ name=v6 key=client_address messages=2/1h ipv6_prefix=64 action=reject }')))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        h = [c.transaction(client_address='10.3.0.%d' % i, sender='h%d@h.example' % i,
                           rcpts=['vip@h.example'])[1] for i in range(1, 4)]
        eq(h[:2], ['DUNNO', 'DUNNO'], 'hold rule: 2 pass')
        check(h[2] is not None and h[2].startswith('HOLD'), 'hold rule: 3rd held: %r' % h[2])
        eq(c.transaction(client_address='10.3.0.9', sender='h@h.example',
                         rcpts=['other@h.example'])[1], 'DUNNO', 'hold rule: other recipient')
        # IPv6 /64.
        v6 = [c.transaction(client_address='2001:db8:1:2::%x' % (i + 1), sender='v%d@v6.example' % i,
                            rcpts=['v%d@x.example' % i]) for i in range(3)]
        eq([x[1] for x in v6], ['DUNNO', 'DUNNO', None], 'IPv6 /64 bucket shared by 3 addresses')
        eq(c.transaction(client_address='2001:db8:1:3::1', sender='w@v6.example',
                         rcpts=['w@x.example'])[1], 'DUNNO', 'other /64')

    rc, out = siftctl(pd.conf, 'show', 'hold:vip@h.example')
    check('current=3 ' in out, 'held message counted: %s' % out)
    pd.stop()

    # A message with more recipients than a per-recipient rule has ever
    # had room for (512 increments once): the rules after it still count.
    pd = start_policyd('memmany', dict(BASE, ratelimit_rules=(
        '{ name=rd key=recipient_domain messages=100000/1h } '
        '{ name=user key=sasl_username messages=1/1h action=defer }')))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        rcpts = ['r%d@d%d.example' % (i, i) for i in range(600)]
        first = c.transaction(sasl_username='many', sender='m@m.example', rcpts=rcpts)
        eq(first[1], 'DUNNO', '600 recipients, 600 recipient_domain buckets: accepted')
        second = c.transaction(sasl_username='many', sender='m@m.example', rcpts=rcpts[:1])
        check(second[1] is None or refused(second[1]), 'the rule after them counted the first: the second '
              'message is refused: %r' % (second,))
    rc, out = siftctl(pd.conf, 'show', 'user:many')
    check('current=1 ' in out, 'user:many counted once: %s' % out)
    pd.stop()

    # A recipient refused at RCPT is not counted at END-OF-MESSAGE, and
    # does not refuse the recipients that were accepted.
    pd = start_policyd('memrefused', dict(BASE, ratelimit_rules=(
        '{ name=rd key=recipient_domain messages=2/1h action=defer }')))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        fill = [c.transaction(sender='f%d@f.example' % i, rcpts=['u@full.example'])[1] for i in range(2)]
        eq(fill, ['DUNNO', 'DUNNO'], 'full.example: 2 messages, the limit')
        rc_, eom = c.transaction(sender='g@f.example', rcpts=['u@full.example', 'v@other.example'])
        check(refused(rc_[0]) and rc_[1] == 'DUNNO' and eom == 'DUNNO',
              'over the limit for one recipient: that one refused at RCPT, the message accepted for '
              'the other: %r' % ((rc_, eom),))
    rc, out = siftctl(pd.conf, 'show', 'rd:full.example')
    check('current=2 ' in out, 'the refused recipient is not counted: %s' % out)
    rc, out = siftctl(pd.conf, 'show', 'rd:other.example')
    check('current=1 ' in out, 'the accepted one is: %s' % out)
    pd.stop()

    # A plugin after ratelimit that refuses at END-OF-MESSAGE: the message
    # was counted, and is taken back (a client whose mail is refused, or
    # retried, does not use up its limit)
    tpdir = os.path.join(tmp, 'plugins-late')
    os.makedirs(tpdir, exist_ok=True)
    for so in ('plugins/ratelimit.so', 'tests/testplug.so'):
        os.symlink(os.path.join(sifttest.builddir(), so), os.path.join(tpdir, os.path.basename(so)))
    pd = start_policyd('memlate', dict(
        BASE, plugin_directory=tpdir, inbound_plugins='ratelimit testplug',
        originating_plugins='ratelimit testplug', testplug_phase='policy', testplug_verdict='reject',
        testplug_protocol_state='END-OF-MESSAGE',
        ratelimit_rules='{ name=late key=sasl_username messages=3/1h action=defer }'))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        got = [c.transaction(sasl_username='late', sender='l@l.example') for _ in range(5)]
    check(all(r == ['DUNNO'] and e == 'REJECT' for r, e in got),
          'refused at END-OF-MESSAGE after ratelimit, 5 times: never over the limit of 3: %r' % got)
    rc, out = siftctl(pd.conf, 'show', 'late:late')
    check(rc == 0 and 'current=0 ' in out, 'the refused messages are taken back: %s' % out)
    pd.stop()

    # A message to several recipients of one domain is one message in that
    # domain's bucket, at RCPT as at END-OF-MESSAGE; recipients count one
    # each, and the RCPT check counts the message's earlier ones.
    pd = start_policyd('memdomain', dict(BASE, ratelimit_rules=(
        '{ name=dom key=recipient_domain messages=1/1h action=defer } '
        '{ name=dr key=recipient_domain recipients=2/1h action=defer }')))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        rc_, eom = c.transaction(sender='a@d.example', rcpts=['a@x.example', 'b@x.example'])
        eq((rc_, eom), (['DUNNO', 'DUNNO'], 'DUNNO'), 'two recipients in one domain, limit 1 message: accepted')
        rc_, eom = c.transaction(sender='a@d.example', rcpts=['a@y.example', 'b@y.example', 'c@y.example'])
        check(rc_[:2] == ['DUNNO', 'DUNNO'] and refused(rc_[2]) and eom == 'DUNNO',
              'limit 2 recipients per domain: the third refused at RCPT, the message accepted: %r'
              % ((rc_, eom),))
        rc_, eom = c.transaction(sender='a@d.example', rcpts=['c@x.example'])
        check(refused(rc_[0]), 'x.example has had its message: %r' % ((rc_, eom),))
    rc, out = siftctl(pd.conf, 'show', 'dom:x.example')
    check('current=1 ' in out, 'x.example: the message counted once: %s' % out)
    rc, out = siftctl(pd.conf, 'show', 'dr:x.example')
    check('current=2 ' in out, 'x.example: both recipients counted: %s' % out)
    rc, out = siftctl(pd.conf, 'show', 'dr:y.example')
    check('current=2 ' in out, 'y.example: the two accepted recipients counted: %s' % out)
    pd.stop()

    # Long values: a rule applies whatever the length of its parts; values
    # too long for a key get a bucket of their own (a hash of the whole).
    pd = start_policyd('memlong', dict(BASE, ratelimit_rules=(
        '{ name=three key=sender+recipient_domain+client_address messages=1/1h action=reject } '
        '{ name=snd key=sender messages=1/1h action=reject profile=originating }')))
    procs.append(pd)
    longs = 'a' * 330 + '@s.example'
    longd = 'c' * 330 + '.example'
    with PolicyClient(pd.port) as c:
        res = [c.transaction(rcpts=['r@' + longd], sender=longs, client_address='192.0.2.50')
               for _ in range(2)]
        check(res[0] == (['DUNNO'], 'DUNNO') and refused(res[1][0][0]),
              'long sender and recipient domain: the limit applies: %r' % res)
        res = [c.transaction(sender='b' * 400 + str(i) + '@s.example', sasl_username='u',
                             client_address='10.9.9.9') for i in range(2)]
        eq(res, [(['DUNNO'], 'DUNNO')] * 2, 'senders differing after 400 bytes: two buckets')
    pd.stop()

    # siftctl on a combined key with a SASL login: the login keeps its
    # case, the other parts are lowercased, as the counters' keys are; a
    # key with no counter is "not found", with a non-zero exit.
    pd = start_policyd('memctlkey', dict(BASE, ratelimit_rules=(
        '{ name=su key=sasl_username+recipient_domain messages=5/1h action=log }')))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        c.transaction(rcpts=['r@z.example'], sasl_username='Alice', sender='alice@s.example')
    rc, out = siftctl(pd.conf, 'show', 'su:Alice|Z.example')
    check(rc == 0 and 'current=1 ' in out, 'show su:Alice|Z.example: %s' % out)
    rc, out = siftctl(pd.conf, 'reset', 'su:Alice|z.example')
    check(rc == 0 and 'reset' in out and 'not found' not in out, 'reset su:Alice|z.example: %s' % out)
    rc, out = siftctl(pd.conf, 'show', 'su:Alice|z.example')
    check(rc == 1 and 'current=0 ' in out and 'not found' in out, 'show after the reset: %s' % out)
    rc, out = siftctl(pd.conf, 'reset', 'su:Alice|z.example')
    check(rc == 1 and 'not found' in out and ': reset' not in out, 'reset again: not found: %s' % out)
    pd.stop()

    # siftctl show: every rule's lines, however many (the answer grows).
    pd = start_policyd('memmanyrules', dict(BASE, ratelimit_rules=' '.join(
        '{ name=rule%02d key=sender messages=1/1h bytes=1m/1d }' % i for i in range(40))))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        c.transaction(sender='someone@example.com')
    rc, out = siftctl(pd.conf, 'show', 'someone@example.com')
    lines = [ln for ln in out.splitlines() if ln.startswith('rule')]
    check(rc == 0 and len(lines) == 80 and lines[-1].startswith('rule39 bytes someone@example.com: current='),
          'show over 40 rules: 80 lines: %d, last %r' % (len(lines), lines[-1:]))
    pd.stop()

    # Address extensions (ratelimit_recipient_delimiter) and a domain's
    # trailing dot do not make buckets of their own.
    pd = start_policyd('memdelim', dict(BASE, ratelimit_recipient_delimiter='+-', ratelimit_rules=(
        '{ name=snd key=sender messages=1/1h action=reject profile=originating } '
        '{ name=sd key=sender_domain messages=1/1h action=reject profile=inbound } '
        '{ name=rc key=recipient messages=2/1h action=reject profile=inbound }')))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        res = [c.transaction(rcpts=['r@y.example'], sender=snd, sasl_username='alice', client_address='10.0.0.1')
               for snd in ('alice@example.com', 'Alice+1@example.com', 'alice-2@example.com.')]
        check(res[0] == (['DUNNO'], 'DUNNO') and refused(res[1][0][0]) and refused(res[2][0][0]),
              'alice+1@, alice-2@ (delimiters +-) count as alice@: %r' % res)
        res = [c.transaction(rcpts=['x%d@z.example' % i], sender=snd, client_address='192.0.2.77')
               for i, snd in enumerate(('bob@dom.example', 'bob@dom.example.'))]
        check(res[0] == (['DUNNO'], 'DUNNO') and refused(res[1][0][0]),
              'dom.example. counts as dom.example: %r' % res)
        res = [c.transaction(rcpts=[rc], sender='s%d@other%d.example' % (i, i), client_address='192.0.2.78')
               for i, rc in enumerate(('carol+a@r.example', 'carol+b@r.example', 'carol@r.example.'))]
        check(res[0][1] == res[1][1] == 'DUNNO' and refused(res[2][0][0]),
              'carol+a@, carol+b@, carol@r.example.: one recipient bucket: %r' % res)
        eq(c.transaction(rcpts=['+x@r.example'], sender='t@t.example', client_address='192.0.2.79')[1], 'DUNNO',
           'a local part that begins with a delimiter is not cut')
    rc, out = siftctl(pd.conf, 'show', 'snd:alice+9@example.com.')
    check(rc == 0 and 'snd messages alice@example.com: current=1 ' in out, 'siftctl show, the same key: %s' % out)
    pd.stop()

    # Recipients Postfix refuses after the policy check (END-OF-MESSAGE's
    # recipient_count below the recipients passed at RCPT) are not counted.
    pd = start_policyd('memunlisted', dict(BASE, ratelimit_rules=(
        '{ name=rcpt key=recipient messages=5/1h action=defer } '
        '{ name=snd key=sender messages=5/1h recipients=10/1h action=defer }')))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        base = dict(client_address='192.0.2.9', sender='s2@s.example', helo_name='h')
        for inst, rcpts, final in (('U.1', ['nobody@y.example', 'good@y.example'], 'good@y.example'),
                                   ('U.2', ['nobody2@y.example', 'a@y.example', 'b@y.example'], '')):
            for r in rcpts:
                c.ask(protocol_state='RCPT', recipient=r, recipient_count='0', instance=inst, **base)
            eq(c.ask(protocol_state='END-OF-MESSAGE', recipient=final, recipient_count=str(len(rcpts) - 1),
                     size='100', instance=inst, **base), 'DUNNO', 'message %s accepted' % inst)
    for key, want in (('rcpt:nobody@y.example', 'not found'), ('rcpt:good@y.example', 'current=1 '),
                      ('rcpt:nobody2@y.example', 'not found'), ('rcpt:a@y.example', 'not found'),
                      ('snd:s2@s.example', 'snd messages s2@s.example: current=2 '),
                      ('snd:s2@s.example', 'snd recipients s2@s.example: current=3 ')):
        rc, out = siftctl(pd.conf, 'show', key)
        check(want in out, '%s: %s: %s' % (key, want, out))
    check('recipient_count=2 but 3 recipients passed at RCPT' in pd.log(), 'unmatched recipients logged')
    pd.stop()

    # Recipients Postfix refuses after the policy check (END-OF-MESSAGE's
    # recipient_count below the recipients passed at RCPT) are not counted.
    pd = start_policyd('memunlisted', dict(BASE, ratelimit_rules=(
        '{ name=rcpt key=recipient messages=5/1h action=defer } '
        '{ name=snd key=sender messages=5/1h recipients=10/1h action=defer }')))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        base = dict(client_address='192.0.2.9', sender='s2@s.example', helo_name='h')
        for inst, rcpts, final in (('U.1', ['nobody@y.example', 'good@y.example'], 'good@y.example'),
                                   ('U.2', ['nobody2@y.example', 'a@y.example', 'b@y.example'], '')):
            for r in rcpts:
                c.ask(protocol_state='RCPT', recipient=r, recipient_count='0', instance=inst, **base)
            eq(c.ask(protocol_state='END-OF-MESSAGE', recipient=final, recipient_count=str(len(rcpts) - 1),
                     size='100', instance=inst, **base), 'DUNNO', 'message %s accepted' % inst)
    for key, want in (('rcpt:nobody@y.example', 'not found'), ('rcpt:good@y.example', 'current=1 '),
                      ('rcpt:nobody2@y.example', 'not found'), ('rcpt:a@y.example', 'not found'),
                      ('snd:s2@s.example', 'snd messages s2@s.example: current=2 '),
                      ('snd:s2@s.example', 'snd recipients s2@s.example: current=3 ')):
        rc, out = siftctl(pd.conf, 'show', key)
        check(want in out, '%s: %s: %s' % (key, want, out))
    check('recipient_count=2 but 3 recipients passed at RCPT' in pd.log(), 'unmatched recipients logged')
    pd.stop()

    # filterd: the RCPT check counts the current recipient (filterd puts it
    # in the message's list only after the chain has run).
    fd = sifttest.start_daemon('filterd', tmp, dict(BASE, ratelimit_rules=(
        '{ name=g key=global recipients=2/1h action=defer }')), name='fdrcpt')
    procs.append(fd)

    def z(v):
        return v.encode() + b'\0'
    m = Milter(fd.port)
    m.steps(CONNECT)
    m.steps(pkt(b'M', z('<a@example.net>')))
    got = [m.steps(pkt(b'R', z('<r%d@x.example>' % i))) for i in range(3)]
    check(got[0] == got[1] == [(b'c', b'')] and got[2] and got[2][0][0] == b'y'
          and got[2][0][1].startswith(b'450 4.7.1'),
          'filterd, limit 2 recipients: the third refused at RCPT: %r' % got)
    eom = m.steps(pkt(b'T'), pkt(b'L', z('Subject') + z('t')), pkt(b'N'), pkt(b'B', b'hello\r\n'), pkt(b'E'))[-1:]
    eq(eom, [(b'c', b'')], 'filterd: the message with the two accepted recipients accepted')
    m.close()
    fd.stop()

    # filterd, ratelimit before a plugin that refuses at the end of the
    # message (the test plugin): the refused message is taken back, so
    # the next one from the same sender passes the RCPT check; with that
    # plugin accepting, the first message counts and the second is
    # refused at RCPT.
    pdir = os.path.join(tmp, 'plugins-chain')
    os.mkdir(pdir)
    os.symlink(os.path.join(sifttest.plugin_directory(), 'ratelimit.so'), os.path.join(pdir, 'ratelimit.so'))
    os.symlink(os.path.join(sifttest.builddir(), 'tests', 'testplug.so'), os.path.join(pdir, 'testplug.so'))

    def chain_message(port, sender):
        m = Milter(port)
        m.steps(CONNECT)
        m.steps(pkt(b'M', z('<%s>' % sender)))
        rcpt = m.steps(pkt(b'R', z('<r@x.example>')))
        if rcpt != [(b'c', b'')]:
            m.close()
            return rcpt, None
        eom = m.steps(pkt(b'T'), pkt(b'L', z('Subject') + z('t')), pkt(b'N'), pkt(b'B', b'hello\r\n'),
                      pkt(b'E'))[-1:]
        m.close()
        return rcpt, eom
    for verdict, name in (('reject', 'fdlater'), ('tempfail', 'fdlatertf'), ('dunno', 'fdlaterok')):
        fd = sifttest.start_daemon('filterd', tmp, dict(
            BASE, plugin_directory=pdir, inbound_plugins='ratelimit testplug', testplug_verdict=verdict,
            ratelimit_rules='{ name=snd key=sender messages=1/1h action=defer }'), name=name)
        procs.append(fd)
        first = chain_message(fd.port, 'later@s.example')
        second = chain_message(fd.port, 'later@s.example')
        if verdict == 'dunno':
            check(first == ([(b'c', b'')], [(b'c', b'')]) and second[0] and second[0][0][0] == b'y'
                  and second[0][0][1].startswith(b'450 4.7.1'),
                  'filterd, a later plugin accepting: the first message counts, the second refused at '
                  'RCPT: %r' % ((first, second),))
        else:
            code = b'5' if verdict == 'reject' else b'4'
            check(first[1] and first[1][0][0] == b'y' and first[1][0][1][:1] == code,
                  'filterd: the test plugin refuses (%s) at the end of the message: %r' % (verdict, first))
            check(second[0] == [(b'c', b'')] and second[1] == first[1],
                  'filterd, a later plugin refusing (%s): the refused message taken back, the next '
                  'one passes the RCPT check: %r' % (verdict, second))
        fd.stop()

    # One action per reply: ratelimit's DEFER_IF_PERMIT is not hidden by an
    # earlier plugin's PREPEND (Postfix would apply the PREPEND and accept).
    pd = start_policyd('memprepend', dict(BASE, inbound_plugins='access ratelimit',
                                          access_client_map='inline:{ { 192.0.2.77 = PREPEND X-Known: yes } }',
                                          ratelimit_rules='{ name=snd key=sender messages=1/1h }'))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        first = c.transaction(client_address='192.0.2.77', sender='p@p.example')
        eq(first, (['PREPEND X-Known: yes'], 'PREPEND X-Known: yes'), 'under the limit: the PREPEND')
        second = c.transaction(client_address='192.0.2.77', sender='p@p.example')
        check(second[0][0].startswith('DEFER_IF_PERMIT'), 'over the limit: DEFER_IF_PERMIT, not the PREPEND: %r'
              % (second,))
    rc, out = siftctl(pd.conf, 'show', 'snd:p@p.example')
    check('current=1 ' in out, 'the refused message is not counted: %s' % out)
    pd.stop()

    # A full memory: store evicts instead of failing: after an outside sender
    # filled it with recipient counters, a new user is still limited (a
    # store error would answer DUNNO under the default store_failure=dunno).
    mport = sifttest.free_port()
    pd = start_policyd('memfull', dict(
        BASE, state_store='memory:max_keys=200', metrics_listen='inet:127.0.0.1:%d' % mport,
        ratelimit_rules='{ name=rc key=recipient messages=50/1d profile=inbound } '
                        '{ name=u key=sasl_username messages=1/1h action=reject profile=originating }'))
    procs.append(pd)
    with PolicyClient(pd.port) as c:
        for i in range(3):
            rc_, eom = c.transaction(rcpts=['u%d.%d@victim.example' % (i, j) for j in range(100)],
                                     sender='spam@bad.example', client_address='203.0.113.5')
            eq(eom, 'DUNNO', 'full store: inbound message %d with 100 new recipients accepted' % i)
        answers = [c.transaction(rcpts=['r@y.example'], sasl_username='bob', client_address='10.0.0.2')
                   for _ in range(3)]
    eq(answers[0], (['DUNNO'], 'DUNNO'), 'full store: a new user\'s first message accepted')
    for i in (1, 2):
        check(answers[i][0][0].startswith('550 5.7.1 Rate limit exceeded'),
              'full store: the new user is still limited, message %d: %r' % (i + 1, answers[i]))
    check('state store error' not in pd.log(), 'full store: no store errors')
    full = [ln for ln in pd.log().splitlines() if 'state store full' in ln]
    eq(len(full), 1, 'full store: one warning (at most one a minute)')
    check(full and 'max_keys=200' in full[0] and 'raise it' in full[0], 'the warning names max_keys: %r' % full)
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=20) as r:
        text = r.read().decode()
    ev = [ln for ln in text.splitlines() if ln.startswith('sift_policyd_state_store_evictions_total ')]
    check(ev and float(ev[0].split()[1]) >= 100, 'evictions counted in the metrics: %r' % ev)
    keys = [ln for ln in text.splitlines() if ln.startswith('sift_policyd_state_store_keys ')]
    check(keys and 0 < float(keys[0].split()[1]) <= 200, 'keys held stay within max_keys: %r' % keys)
    pd.stop()

    # ---- redis: two policyd instances, one redis-server --------------------------
    red = Redis(tmp, 'redis').start()
    procs.append(red)
    spec = 'redis:127.0.0.1:%d,timeout=300ms,connect_timeout=300ms,retry_interval=500ms' % red.port
    rules = '{ name=user key=sasl_username messages=25/1h action=defer }'
    pa = start_policyd('pda', dict(BASE, state_store=spec, ratelimit_rules=rules))
    pb = start_policyd('pdb', dict(BASE, state_store=spec, ratelimit_rules=rules,
                                   ratelimit_store_failure='tempfail'))
    procs += [pa, pb]
    acc, r_rcpt, r_eom, other = hammer([pa.port, pb.port], 12, 8, sasl_username='shared',
                                       sender='s@a.example', rcpts=['r@x.example'], size=10)
    eq(acc, 25, 'redis, two policyd: exactly 25 of 96 accepted')
    eq(other, [], 'redis: no unexpected answers')
    keys = red.cli('--scan', '--pattern', 'sift:rl:user:m:*')
    check(keys.count('shared') == 1, 'one counter key in redis: %r' % keys)
    val = red.cli('GET', keys.split('\n')[0]) if keys else ''
    eq(val, '25', 'redis counter value')
    ttl = int(red.cli('PTTL', keys.split('\n')[0]) or '-9') if keys else -9
    check(7200000 < ttl <= 7260000, 'counter expires after two windows: %d' % ttl)
    rc, out = siftctl(pb.conf, 'show', 'shared')
    check('current=25 ' in out, 'siftctl show through the other instance: %s' % out)

    # A counter below zero (a take-back that landed after its key expired
    # or was evicted) counts as 0 and is repaired: still 25 pass.
    idx = int(time.time() * 1000) // 3600000
    red.cli('SET', 'sift:rl:user:m:3600:%d:negative' % idx, '-5')
    red.cli('SET', 'sift:rl:user:m:3600:%d:negative' % (idx - 1), '-1000')
    acc, r_rcpt, r_eom, other = hammer([pa.port], 30, 1, sasl_username='negative',
                                       sender='s@a.example', rcpts=['r@x.example'], size=10)
    eq(acc, 25, 'a counter left below zero: still exactly 25 of 30 accepted')
    eq(red.cli('GET', 'sift:rl:user:m:3600:%d:negative' % idx), '25', 'the counter repaired')

    # Redis stalls (SIGSTOP) while END-OF-MESSAGE counts: the increment
    # times out, unanswered, and runs when Redis resumes. The tempfail
    # instance defers the message and takes its increment back, so the
    # client's retry is the one counted; the fail-open one accepts the
    # message, counted once.
    for port, name, want in ((pb.port, 'stalled-tf', '451 4.3.0 Rate limit state unavailable, try again later'),
                             (pa.port, 'stalled-fo', 'DUNNO')):
        base = dict(client_address='192.0.2.10', client_name='unknown', reverse_client_name='unknown',
                    helo_name='c.example', sender='s@a.example', sasl_username=name, size='10')
        with PolicyClient(port) as c:
            eq(c.ask(protocol_state='RCPT', recipient='r@x.example', recipient_count='0', instance=name + '.1',
                     **base), 'DUNNO', '%s: RCPT passes' % name)
            red.proc.signal(signal.SIGSTOP)
            try:
                got = c.ask(protocol_state='END-OF-MESSAGE', recipient='r@x.example', recipient_count='1',
                            instance=name + '.1', **base)
            finally:
                red.proc.signal(signal.SIGCONT)
            eq(got, want, '%s: redis stalled at END-OF-MESSAGE: the store failure action' % name)
            time.sleep(0.7)  # retry_interval
            if want != 'DUNNO':  # the client sends the message again
                eq(c.transaction(sasl_username=name, sender='s@a.example', rcpts=['r@x.example'], size=10),
                   (['DUNNO'], 'DUNNO'), '%s: the retry passes' % name)
            else:  # a check, which sends what was left to take back
                eq(c.ask(protocol_state='RCPT', recipient='r@x.example', recipient_count='0',
                         instance=name + '.2', **base), 'DUNNO', '%s: next RCPT passes' % name)
        key = red.cli('--scan', '--pattern', 'sift:rl:user:m:*:' + name).split()
        eq([red.cli('GET', k) for k in key], ['1'], '%s: the message is counted once' % name)

    # policyd and filterd on one store, wired as README.md does (policyd at
    # RCPT and END-OF-MESSAGE, filterd as a milter): with
    # ratelimit_count = no in policyd, a message is counted once, by filterd.
    both = dict(BASE, state_store=spec, ratelimit_rules='{ name=both key=global messages=100/1h action=defer }')
    pc = start_policyd('pdcheck', dict(both, ratelimit_count='no'))
    fb = sifttest.start_daemon('filterd', tmp, both, name='fdcount')
    procs += [pc, fb]

    def zs(v):
        return v.encode() + b'\0'
    m = Milter(fb.port)
    m.steps(CONNECT)
    m.steps(pkt(b'M', zs('<a@example.net>')))
    with PolicyClient(pc.port) as c:
        eq(c.transaction(rcpts=['r@x.example'], sender='a@example.net'), (['DUNNO'], 'DUNNO'),
           'policyd with ratelimit_count = no: checks, passes')
    m.steps(pkt(b'R', zs('<r@x.example>')))
    m.steps(pkt(b'T'), pkt(b'L', zs('Subject') + zs('t')), pkt(b'N'), pkt(b'B', b'hi\r\n'))
    eq(m.steps(pkt(b'E')), [(b'c', b'')], 'filterd counts and accepts')
    m.close()
    keys = red.cli('--scan', '--pattern', 'sift:rl:both:m:*').split()
    eq([red.cli('GET', k) for k in keys], ['1'], 'one message through both daemons: counted once')
    pc.stop()
    fb.stop()

    # Kill redis mid-test.
    red.kill()
    with PolicyClient(pa.port) as ca, PolicyClient(pb.port) as cb:
        ea = ca.transaction(sasl_username='other', sender='o@a.example')
        eb = cb.transaction(sasl_username='other', sender='o@a.example')
        eq(ea, (['DUNNO'], 'DUNNO'), 'redis down: fail-open instance answers DUNNO')
        eq(eb[0], ['451 4.3.0 Rate limit state unavailable, try again later'],
           'redis down: tempfail instance answers 451')
        t0 = time.monotonic()
        for _ in range(20):
            ca.transaction(sasl_username='other', sender='o@a.example')
        el = time.monotonic() - t0
        check(el < 3.0, 'redis down: requests fail fast (20 in %.2fs)' % el)
    rc, out = siftctl(pa.conf, 'stats')
    m = [x for x in out.split() if x.startswith('store_failures=')]
    check(m and int(m[0].split('=')[1]) > 0, 'store_failures metric counts: %s' % out)
    check('state store redis 127.0.0.1:%d' % red.port in pa.log(), 'redis failure logged')
    check('store failures so far' in pa.log(), 'ratelimit failure metric logged')

    # Restart on the same port: both recover without a restart.
    red.start()
    time.sleep(0.7)
    with PolicyClient(pa.port) as ca, PolicyClient(pb.port) as cb:
        got = [ca.transaction(sasl_username='back', sender='b@a.example')[1] for _ in range(15)]
        got += [cb.transaction(sasl_username='back', sender='b@a.example')[1] for _ in range(15)]
        eq(got.count('DUNNO'), 25, 'after redis restart: limit enforced again (25 of 30)')
    eq(red.cli('--scan', '--pattern', 'sift:rl:user:m:*back').count('back'), 1,
       'counter written to the new redis')
    check('connected again' in pa.log(), 'recovery logged')
    # Redis restarted while the pool holds idle connections to the old
    # server: they are seen closed before use and replaced, so the next
    # call is answered (a counting script is never sent twice, so one sent
    # into a dead connection would fail the call: 451 here)
    red.kill()
    red.start()
    with PolicyClient(pb.port) as cb:
        eq(cb.transaction(sasl_username='fresh', sender='f@a.example'), (['DUNNO'], 'DUNNO'),
           'idle connections to a restarted Redis: the next call is answered')
    for p in (pa, pb):
        eq(p.alive(), True, '%s still running' % p.name)
        p.stop()
    red.stop()

    # ---- redis: unix socket, password, db, prefix; wrong password ----------------
    red2 = Redis(tmp, 'redis2', password='s3cret pass'.replace(' ', ''), unix=True).start()
    procs.append(red2)
    spec = 'redis:unix:%s,password=s3cretpass,db=3,prefix=tst:' % red2.sock
    pc = start_policyd('pdc', dict(BASE, state_store=spec, ratelimit_rules=rules))
    procs.append(pc)
    with PolicyClient(pc.port) as c:
        eq(c.transaction(sasl_username='ux', sender='u@a.example')[1], 'DUNNO', 'unix socket store')
    keys = red2.cli('-n', '3', '--scan', '--pattern', 'tst:rl:user:m:*')
    check('ux' in keys, 'key in db 3 with prefix tst:: %r' % keys)
    pc.stop()
    spec = 'redis:unix:%s,password=wrong' % red2.sock
    pw = start_policyd('pdw', dict(BASE, state_store=spec, ratelimit_rules=rules))
    procs.append(pw)
    with PolicyClient(pw.port) as c:
        eq(c.transaction(sasl_username='ux', sender='u@a.example')[1], 'DUNNO',
           'wrong password: fail-open')
    check('WRONGPASS' in pw.log() or 'invalid' in pw.log().lower(), 'auth failure logged')
    check('wrong' not in pw.log(), 'password not logged')
    pw.stop()
    red2.stop()

    # ---- configuration errors ---------------------------------------------------
    for bad, what in [('{ name=x key=foo messages=1/1h }', 'bad key'),
                      ('{ name=x key=sender messages=1/0s }', 'bad window'),
                      ('{ name=x key=sender }', 'no limit'),
                      ('{ key=sender messages=1/1h }', 'no name'),
                      ('{ name=x key=sender messages=1/1h action=explode }', 'bad action'),
                      ('{ name=x key=sender messages=1/1h', 'missing brace'),
                      ('{ name=x key=sender messages=10/ }', 'window without a unit'),
                      ('{ name=x key=sender messages=10/5 }', 'window number without a unit'),
                      ('{ name=x key=sender messages=99999999999999999999/1h }', 'count out of range'),
                      ('{ name=x key=sender bytes=1k/99999999999999999999s }', 'window out of range'),
                      ('{ name=x key=sender messages=1/1h messages=2/1h }', 'messages= given twice'),
                      ('{ name=x key=sender key=recipient messages=1/1h }', 'key= given twice'),
                      ('{ name=x key=sender messages=1/1h text="Too\x7fmany" }', 'rule x: text='),
                      ('{ name=x key=sender messages=1/1h action=reject text="%s" }' % ('x' * 1000),
                       'rule x: text=')]:
        r = subprocess.run([sifttest.program('policyd'), '-c', '/dev/null', '-t',
                            '-o', 'policyd_user=' + sifttest.daemon_user(),
                            '-o', 'plugin_directory=' + sifttest.plugin_directory(),
                            '-o', 'inbound_plugins=ratelimit', '-o', 'ratelimit_rules=' + bad],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        check(r.returncode == 1 and 'ratelimit_rules' in r.stderr and
              (not (what.startswith('rule ') or 'twice' in what) or what in r.stderr),
              'config error: %s: %s' % (what, r.stderr.strip()))
    r = subprocess.run([sifttest.program('policyd'), '-c', '/dev/null', '-t',
                        '-o', 'policyd_user=' + sifttest.daemon_user(),
                        '-o', 'plugin_directory=' + sifttest.plugin_directory(),
                        '-o', 'inbound_plugins=ratelimit',
                        '-o', 'ratelimit_rules={ name=x key=sender messages=1/h bytes=1m/2d }'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    check(r.returncode == 0, 'a window of a unit alone (1/h): %s' % r.stderr.strip())
    for bad in ['redis:', 'redis:localhost', 'redis:127.0.0.1:0', 'redis:unix:rel/path',
                'redis:127.0.0.1:6379,db=x', 'redis:127.0.0.1:6379,bogus=1']:
        r = subprocess.run([sifttest.program('policyd'), '-c', '/dev/null', '-t',
                            '-o', 'policyd_user=' + sifttest.daemon_user(),
                            '-o', 'state_store=' + bad], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        check(r.returncode == 1 and 'redis' in r.stderr, 'bad redis spec %s: %s' % (
            bad, r.stderr.strip()))
finally:
    sifttest.stop_all(procs)

sys.exit(done())
