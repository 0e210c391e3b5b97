#!/usr/bin/python3
"""Real-Postfix integration tests: a private Postfix on 127.0.0.1
(tests/lib/sifttest.py) with filterd in smtpd_milters and policyd in
check_policy_service, both started from the build tree with a test
configuration, and a DNS server on 127.0.0.1 (tests/lib/dnsserver.py) that
the daemons' shared resolver uses. Asserts on SMTP replies, delivered
messages, the queue and the log lines of Postfix and of the daemons; checks
that killing filterd (SIGKILL) loses no mail. The filterd cases run once
per milter engine (filterd_engine: native, then libmilter), each with its
own Postfix and daemons; the other cases run with the first engine only.

    /usr/bin/python3 tests/postfix/run.py [-v] [-k SUBSTRING]
    env: SIFT_BUILDDIR (default SRC/build), SIFT_KEEP_TMP=1 keeps temp dirs,
         SIFT_FILTERD_ENGINES (default "native libmilter").
"""

import os
import shutil
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
import sifttest  # noqa: E402
from sifttest import message  # noqa: E402

VERBOSE = '-v' in sys.argv
ONLY = sys.argv[sys.argv.index('-k') + 1] if '-k' in sys.argv else None
BUILD = sifttest.builddir()
from dnsserver import DNSServer  # noqa: E402

DNS_ZONES = {'sift.test': [
    {'name': 'probe.sift.test', 'type': 'TXT', 'data': 'resolver works'}]}

failures = []
counts = {'ok': 0, 'fail': 0, 'skip': 0}


def check(cond, what, detail=''):
    print('    %s - %s' % ('ok' if cond else 'not ok', what))
    if cond:
        return True
    failures.append(what)
    if detail:
        print('      # ' + str(detail).replace('\n', '\n      # '))
    return False


# -- environment: one Postfix, one filterd, one policyd for all cases -------------

FILTERD_SENDERS = {
    'reject@example.net': 'REJECT test: sender blocked by filterd',
    'defer@example.net': 'DEFER test: try filterd later',
    'hold@example.net': 'HOLD test: held by filterd',
    'discard@example.net': 'DISCARD test: discarded by filterd',
    'prepend@example.net': 'PREPEND X-Sift-Test: prepended by filterd',
    'ok@example.net': 'OK',
}
FILTERD_RCPTS = {'blocked@sift.test': 'REJECT test: recipient blocked by filterd'}
POLICYD_RCPTS = {
    'polreject@sift.test': 'REJECT test: recipient refused by policyd',
    'poldefer@sift.test': 'DEFER test: policyd says later',
    'polprepend@sift.test': 'PREPEND X-Sift-Policy: prepended by policyd',
}
POLICYD_SENDERS = {'polhold@example.net': 'HOLD test: held by policyd'}


class Env:
    def __init__(self, engine='native'):
        self.engine = engine
        self.tmp = tempfile.mkdtemp(prefix='sift-postfix-test-',
                                    dir=os.environ.get('SIFT_TEST_TMP'))
        os.chmod(self.tmp, 0o755)
        self.filterd = self.policyd = self.pf = None
        self.dns = DNSServer(DNS_ZONES)
        self.dns.start()
        self.plugdir = os.path.join(self.tmp, 'plugins')
        os.mkdir(self.plugdir)
        for so in ('plugins/access.so', 'tests/testplug.so'):
            os.symlink(os.path.join(BUILD, so), os.path.join(self.plugdir, os.path.basename(so)))
        self.filterd_port = sifttest.free_port()
        self.policyd_port = sifttest.free_port()

    def write_map(self, name, entries):
        path = os.path.join(self.tmp, name)
        with open(path, 'w') as f:
            for k, v in entries.items():
                f.write('%s\t%s\n' % (k, v))
        return 'texthash:' + path

    def start_daemon(self, daemon, name, listen, extra):
        settings = {'plugin_directory': self.plugdir,
                    'inbound_plugins': 'access testplug', 'originating_plugins': 'access',
                    'dns_servers': '127.0.0.1:%d' % self.dns.port,
                    'testplug_dns_txt': 'probe.sift.test',
                    'originating_daemons': 'ORIGINATING',
                    '%s_pid_file' % daemon: '%s/%s.pid' % (self.tmp, name)}
        settings.update(extra)
        return sifttest.start_daemon(daemon, self.tmp, settings, name=name, listen=listen)

    def start_filterd(self, listen=None, name='filterd'):
        listen = listen or 'inet:127.0.0.1:%d' % self.filterd_port
        extra = {'access_sender_map': self.write_map('f_sender', FILTERD_SENDERS),
                 'access_recipient_map': self.write_map('f_rcpt', FILTERD_RCPTS),
                 'filterd_engine': self.engine}
        if listen.startswith('unix:'):
            # smtpd runs as postfix: socket mode 0660, group postfix
            extra['filterd_socket_group'] = 'postfix'
        return self.start_daemon('filterd', name, listen, extra)

    def start_policyd(self):
        return self.start_daemon('policyd', 'policyd', 'inet:127.0.0.1:%d' % self.policyd_port, {
            'access_sender_map': self.write_map('p_sender', POLICYD_SENDERS),
            'access_recipient_map': self.write_map('p_rcpt', POLICYD_RCPTS)})

    def start(self):
        self.filterd = self.start_filterd()
        self.policyd = self.start_policyd()
        self.pf = sifttest.Postfix(
            root=os.path.join(self.tmp, 'postfix'), submission=True, keep=True,
            milters=['inet:127.0.0.1:%d' % self.filterd_port],
            policy='inet:127.0.0.1:%d' % self.policyd_port)
        self.pf.start()

    def stop(self):
        if self.pf:
            self.pf.stop()
        for p in (self.filterd, self.policyd):
            if p:
                p.stop()
        self.dns.stop()
        if not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print('# kept %s' % self.tmp)


def filterd_summary(env, queue_id, timeout=5):
    m = env.filterd.wait_log(r'^.*\b%s: filterd: action=.*$' % queue_id, timeout)
    return m.group(0) if m else None


# -- cases ----------------------------------------------------------------------------

CASES = []


def case(needs=()):
    def deco(fn):
        CASES.append((fn, needs))
        return fn
    return deco


@case()
def postfix_alone_delivers(env):
    r = env.pf.send('someone@example.net', ['plain@sift.test'], message('plain'))
    check(r.accepted, 'accepted', r)
    m = env.pf.delivered_by_queue_id(r.queue_id)
    check(m.rcpt == 'plain@sift.test', 'delivered to the Maildir', m)


@case(needs=('filterd',))
def filterd_inbound_summary(env):
    r = env.pf.send('someone@example.net', ['user@sift.test'], message('inbound'))
    check(r.accepted, 'accepted', r)
    line = filterd_summary(env, r.queue_id)
    check(line is not None, 'one summary line with the queue id', env.filterd.log_tail())
    if line:
        check('action=accept' in line and 'profile=inbound' in line,
              'action=accept, profile=inbound', line)
        check(len(env.filterd.log().split('%s: filterd: action=' % r.queue_id)) == 2,
              'exactly one summary line')
    env.pf.delivered_by_queue_id(r.queue_id)


@case(needs=('filterd',))
def filterd_many_mail_parameters(env):
    # smtpd passes every MAIL FROM parameter to the milter, repeated ones too
    r = env.pf.send('someone@example.net', ['user@sift.test'], message('many parameters'),
                    mail_options=['BODY=7BIT'] * 64)
    check(r.accepted, 'MAIL FROM with 64 parameters accepted', r)
    line = filterd_summary(env, r.queue_id) if r.accepted else None
    check(line is not None and 'action=accept' in line, 'scanned by filterd', env.filterd.log_tail())
    check('closing it' not in env.filterd.log(), 'filterd kept the milter connection',
          env.filterd.log_tail())


@case(needs=('filterd',))
def filterd_originating_profile(env):
    r = env.pf.send_submission('user@sift.test', ['friend@example.test'], message('out'))
    check(r.accepted, 'accepted on the submission port', r)
    line = filterd_summary(env, r.queue_id)
    check(line is not None and 'profile=originating' in line,
          'profile=originating from {daemon_name}=ORIGINATING', line)


@case(needs=('filterd',))
def filterd_reject_sender(env):
    mark = env.pf.log_mark()
    r = env.pf.send('reject@example.net', ['user@sift.test'], message('x'))
    check(r.rejected_at() == 'mail' and r.mail[0] == 554 and
          'sender blocked by filterd' in r.mail[1], '5xx with the map text at MAIL', r)
    check(env.pf.wait_log(r'milter-reject: MAIL from .*sender blocked by filterd', 5,
                          start=mark) is not None, 'Postfix logs milter-reject at MAIL')


@case(needs=('filterd',))
def filterd_defer_sender(env):
    r = env.pf.send('defer@example.net', ['user@sift.test'], message('x'))
    check(r.rejected_at() == 'mail' and 400 <= r.mail[0] < 500 and
          'try filterd later' in r.mail[1], '4xx with the map text at MAIL', r)


@case(needs=('filterd',))
def filterd_reject_one_recipient(env):
    r = env.pf.send('someone@example.net', ['blocked@sift.test', 'fine@sift.test'],
                    message('two rcpts'))
    check(r.rcpts[0][0] == 554 and 'recipient blocked by filterd' in r.rcpts[0][1],
          'blocked recipient gets 554', r)
    check(r.rcpts[1][0] == 250 and r.accepted, 'other recipient accepted, message queued', r)
    if r.accepted:
        m = env.pf.delivered_by_queue_id(r.queue_id)
        check(m.rcpt == 'fine@sift.test', 'delivered only to the accepted recipient', m)


@case(needs=('filterd',))
def filterd_hold(env):
    r = env.pf.send('hold@example.net', ['user@sift.test'], message('hold me'))
    check(r.accepted, 'accepted', r)
    end = time.monotonic() + 10
    q = []
    while time.monotonic() < end:
        q = [e for e in env.pf.queue() if e.get('queue_id') == r.queue_id]
        if q and q[0].get('queue_name') == 'hold':
            break
        time.sleep(0.1)
    check(q and q[0].get('queue_name') == 'hold', 'message is in the hold queue', q)
    env.pf.postsuper('-d', r.queue_id)


@case(needs=('filterd',))
def filterd_discard(env):
    mark = env.pf.log_mark()
    r = env.pf.send('discard@example.net', ['user@sift.test'], message('discard me'))
    check(r.accepted, 'client sees 250', r)
    # a DISCARD at MAIL FROM: smtpd logs it (NOQUEUE) and cleanup drops the message
    check(env.pf.wait_log(r'milter-discard: MAIL from .*from=<discard@example.net>', 5,
                          start=mark) is not None, 'Postfix logs milter-discard at MAIL',
          env.pf.log()[mark:])
    time.sleep(1)
    check(not any(e.get('queue_id') == r.queue_id for e in env.pf.queue()) and
          not any(r.queue_id in h for m in env.pf.maildir_messages()
                  for h in m.headers('Received')), 'not delivered',
          '\n'.join(env.pf.log_for(r.queue_id)))


@case(needs=('filterd',))
def filterd_prepend(env):
    r = env.pf.send('prepend@example.net', ['user@sift.test'], message('prepend'))
    check(r.accepted, 'accepted', r)
    m = env.pf.delivered_by_queue_id(r.queue_id)
    check(m.header('X-Sift-Test') == 'prepended by filterd', 'header added', m.header_block())


@case(needs=('filterd',))
def filterd_unix_socket(env):
    sock = os.path.join(env.tmp, 'filterd-unix.sock')
    p = env.start_filterd(listen='unix:' + sock, name='filterd-unix')
    try:
        pf = sifttest.Postfix(root=os.path.join(env.tmp, 'postfix-unix'), keep=True,
                              milters=['unix:' + sock])
        with pf:
            r = pf.send('someone@example.net', ['user@sift.test'], message('unix'))
            check(r.accepted, 'accepted through a unix-socket milter', r)
            check(p.wait_log(r'%s: filterd: action=accept' % r.queue_id, 5) is not None,
                  'filterd summary line', p.log_tail())
    finally:
        p.stop()


@case(needs=('filterd',))
def filterd_down_tempfails(env):
    port = sifttest.free_port()  # nothing listens there
    pf = sifttest.Postfix(root=os.path.join(env.tmp, 'postfix-down'), keep=True,
                          milters=['inet:127.0.0.1:%d' % port])
    with pf:
        r = pf.send('someone@example.net', ['user@sift.test'], message('down'))
        check(not r.accepted and r.rejected_at() is not None and 400 <= r.code < 500,
              'milter_default_action=tempfail gives 4xx', r)


@case(needs=('policyd',))
def policyd_reject_recipient(env):
    r = env.pf.send('someone@example.net', ['polreject@sift.test'], message('x'))
    check(r.rejected_at() == 'rcpt' and r.rcpts[0][0] == 554 and
          'refused by policyd' in r.rcpts[0][1], '554 at RCPT with the map text', r)


@case(needs=('policyd',))
def policyd_defer_recipient(env):
    r = env.pf.send('someone@example.net', ['poldefer@sift.test'], message('x'))
    check(r.rejected_at() == 'rcpt' and 400 <= r.rcpts[0][0] < 500, '4xx at RCPT', r)


@case(needs=('policyd',))
def policyd_prepend(env):
    r = env.pf.send('someone@example.net', ['polprepend@sift.test'], message('x'))
    check(r.accepted, 'accepted', r)
    m = env.pf.delivered_by_queue_id(r.queue_id)
    check(m.header('X-Sift-Policy') == 'prepended by policyd', 'PREPEND header delivered',
          m.header_block())


@case(needs=('policyd',))
def policyd_hold(env):
    r = env.pf.send('polhold@example.net', ['user@sift.test'], message('x'))
    check(r.accepted, 'accepted', r)
    time.sleep(0.5)
    q = [e for e in env.pf.queue() if e.get('queue_id') == r.queue_id]
    check(q and q[0].get('queue_name') == 'hold', 'held', q)
    if q:
        env.pf.postsuper('-d', r.queue_id)


@case(needs=('policyd',))
def policyd_down_defers(env):
    port = sifttest.free_port()
    pf = sifttest.Postfix(root=os.path.join(env.tmp, 'postfix-pdown'), keep=True,
                          policy='inet:127.0.0.1:%d' % port)
    with pf:
        r = pf.send('someone@example.net', ['user@sift.test'], message('x'))
        check(r.rejected_at() == 'rcpt' and r.rcpts[0][0] == 451, '451 4.3.5 at RCPT', r)


@case(needs=('filterd',))
def filterd_uses_the_test_dns(env):
    r = env.pf.send('someone@example.net', ['dns@sift.test'], message('dns'))
    check(r.accepted, 'accepted', r)
    m = env.pf.delivered_by_queue_id(r.queue_id)
    check(m.header('X-Testplug-DNS') == 'resolver works',
          'the plugin got the TXT record from the test DNS server', m.header_block())
    check(any(q[0].rstrip('.') == 'probe.sift.test' for q in env.dns.log),
          'the query reached the DNS server on 127.0.0.1', env.dns.log[-5:])


@case(needs=('filterd',))
def filterd_killed_loses_no_mail(env):
    """SIGKILL filterd while mail flows: every message either got 250 and is
    delivered, or got a 4xx (the client keeps it); after a restart the
    deferred ones are sent again and every message arrives exactly once."""
    import threading
    port = sifttest.free_port()
    saved = (env.filterd_port, env.filterd)
    env.filterd_port = port
    fd = env.start_filterd(name='filterd-kill')
    pf = sifttest.Postfix(root=os.path.join(env.tmp, 'postfix-kill'), keep=True,
                          milters=['inet:127.0.0.1:%d' % port])
    results = {}
    try:
        pf.start()

        def sender(i):
            body = message('kill test %d' % i, headers={'X-Kill-Test': str(i)},
                           body=('line %d\n' % i) * (200 if i % 3 else 20000))
            results[i] = pf.send('someone@example.net', ['kill@sift.test'], body)

        threads = []
        for i in range(30):
            t = threading.Thread(target=sender, args=(i,))
            t.start()
            threads.append(t)
            if i == 12:
                os.kill(fd.pid, 9)
                fd.popen.wait()
            time.sleep(0.01)
        for t in threads:
            t.join(120)
        deferred = [i for i, r in results.items() if not r.accepted]
        check(all(400 <= r.code < 500 for r in results.values() if not r.accepted),
              'every refused message got a 4xx (tempfail), none a 5xx',
              {i: (r.code, r.last) for i, r in results.items() if not r.accepted})
        check(len(deferred) > 0, 'messages sent while filterd was down were deferred', len(deferred))
        fd = env.start_filterd(name='filterd-kill')
        for i in deferred:
            sender(i)
        check(all(r.accepted for r in results.values()), 'all accepted after the restart',
              [i for i, r in results.items() if not r.accepted])
        got = pf.wait_delivered(30, 60, rcpt='kill@sift.test')
        ids = sorted(int(m.header('X-Kill-Test')) for m in pf.maildir_messages(rcpt='kill@sift.test'))
        check(ids == list(range(30)), 'each of the 30 messages delivered exactly once', ids)
        check(not pf.queue(), 'nothing left in the queue', pf.queue())
    finally:
        pf.stop()
        fd.stop()
        env.filterd_port, env.filterd = saved


def main():
    if os.geteuid() != 0:
        print('the Postfix tests need root (Postfix\'s master starts as root)')
        print('0 passed, 1 failed')
        return 1
    engines = os.environ.get('SIFT_FILTERD_ENGINES', 'native libmilter').split()
    for n, engine in enumerate(engines):
        run_cases(engine, first=(n == 0))
    print('%d passed, %d failed' % (counts['ok'], counts['fail']))
    return 1 if failures else 0


def run_cases(engine, first):
    env = Env(engine)
    try:
        env.start()
        for fn, needs in CASES:
            if ONLY and ONLY not in fn.__name__:
                continue
            if not first and 'filterd' not in needs:
                continue
            before = len(failures)
            print('%s [filterd_engine=%s]' % (fn.__name__, engine))
            try:
                fn(env)
            except Exception:  # noqa: BLE001 - a crashing case is a failure
                failures.append(fn.__name__)
                print('    not ok - exception\n      # ' +
                      traceback.format_exc().replace('\n', '\n      # '))
            counts['ok' if len(failures) == before else 'fail'] += 1
        if VERBOSE:
            print(env.pf.log())
            for p in (env.filterd, env.policyd):
                if p:
                    print(p.log())
    finally:
        env.stop()


if __name__ == '__main__':
    sys.exit(main())
