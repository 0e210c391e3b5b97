#!/usr/bin/env python3
"""spam plugin Bayes on Redis: two filterd on one redis-server share one
database. siftctl learns into it (the state_store), filterd A autolearns a
spam (autolearn=spam in its X-Spam-Status), the totals show it, and
filterd B scores a spam with BAYES_99 from what was learned elsewhere;
four siftctl learning the same messages at once count each once.
A learn is all or nothing: through a proxy that cuts the link after N bytes
from siftctl, for N all along one learn, Redis holds either the whole learn
(tokens, total, seen entry) or none of it. Seen entries expire
(spam_bayes_seen_ttl, 8 days by default). A state_store naming a host
is resolved by the shared resolver (dns_servers: the test DNS server)
within connect_timeout: a name that resolves works, `localhost` works, a
name whose DNS server never answers fails in time instead of hanging, with
dns_servers and (as root, in a mount namespace of its own whose
/etc/resolv.conf names such a server) with the system's resolver."""
import os
import random
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'ratelimit', 'tests'))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'bench', 'message'))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'faults'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402
from redisproc import Redis  # noqa: E402
from bench import send_message  # noqa: E402
from test_bayes import HAMW, SIFTCTL, SPAMW, learn_together, msg, run, spam_dir  # noqa: E402
from faultlib import DelayProxy  # noqa: E402
from dnsserver import DNSServer  # noqa: E402


def milter_send(port, text, qid):
    head, body = text.split('\n\n', 1)
    headers = [tuple(x.encode() for x in line.split(': ', 1)) for line in head.split('\n')]
    verdict, added = send_message(port, headers, body.replace('\n', '\r\n').encode(), qid)
    return verdict, b'\n'.join(added).decode('utf-8', 'replace').replace('\r\n ', ' ')


def learn_state(redis):
    """What one learned spam left in Redis: nspam, the seen entries, the
    spam token counts."""
    ns = redis.cli('GET', 'sift:bayes:nspam')
    seen = [k for k in redis.cli('KEYS', 'sift:bayes:seen:*').split('\n') if k]
    toks = [k for k in redis.cli('KEYS', 'sift:bayes:s:*').split('\n') if k]
    vals = redis.cli('MGET', *toks).split('\n') if toks else []
    return int(ns or 0), seen, vals


def named_store(tmp, settings, redis):
    """state_store = redis:NAME:PORT, NAME resolved through dns_servers."""
    dns = DNSServer({'sift.test': [{'name': 'redis', 'type': 'A', 'data': '127.0.0.1'},
                                   {'name': 'gone', 'type': 'TIMEOUT'}]}).start()
    try:
        want = 'spam: %s' % redis.cli('GET', 'sift:bayes:nspam')
        for host in ('redis.sift.test', 'localhost'):
            conf = sifttest.write_conf(os.path.join(tmp, 'named.conf'), dict(
                settings, plugin_directory=sifttest.plugin_directory(), dns_servers='127.0.0.1:%d' % dns.port,
                state_store='redis:%s:%d,connect_timeout=1s' % (host, redis.port)))
            rc, out = run(conf, 'spam', 'stats')
            check(rc == 0 and want in out, 'state_store = redis:%s:PORT (resolved by the resolver)' % host, out)
        conf = sifttest.write_conf(os.path.join(tmp, 'named.conf'), dict(
            settings, plugin_directory=sifttest.plugin_directory(), dns_servers='127.0.0.1:%d' % dns.port,
            dns_timeout='20s', state_store='redis:gone.sift.test:%d,connect_timeout=400ms' % redis.port))
        t0 = time.monotonic()
        try:
            rc, out = run(conf, 'spam', 'stats')
        except subprocess.TimeoutExpired:
            rc, out = -1, 'still waiting after 60 s'
        took = time.monotonic() - t0
        asked = any(q[0].rstrip('.') == 'gone.sift.test' for q in dns.log)
        check(rc != 0 and took < 3 and asked and 'resolving gone.sift.test' in out,
              'a name whose DNS never answers fails within connect_timeout (%.1f s)' % took, out[-400:])
    finally:
        dns.stop()
    if os.geteuid() == 0 and shutil.which('unshare'):
        system_resolver_hangs(tmp, settings, redis)


def system_resolver_hangs(tmp, settings, redis):
    """No dns_servers: the system's resolver, whose /etc/resolv.conf (in a
    mount namespace of siftctl's own) names a server that never answers.
    getaddrinfo would wait for the libc resolver's retries (10 s and more)."""
    addr = '127.%d.%d.%d' % (random.randint(1, 254), random.randint(0, 255), random.randint(1, 254))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((addr, 53))
        tcp.bind((addr, 53))
        tcp.listen(8)  # never accepted, never answered
        resolv = os.path.join(tmp, 'resolv.conf')
        with open(resolv, 'w') as f:
            f.write('nameserver %s\noptions timeout:5 attempts:2\n' % addr)
        conf = sifttest.write_conf(os.path.join(tmp, 'named.conf'), dict(
            settings, plugin_directory=sifttest.plugin_directory(),
            state_store='redis:gone.sift.test:%d,connect_timeout=400ms' % redis.port))
        t0 = time.monotonic()
        p = subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c',
                            'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv,
                            SIFTCTL, '-c', conf, 'spam', 'stats'], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
        out = p.stdout + p.stderr
        check(p.returncode != 0 and took < 3 and 'resolving gone.sift.test' in out,
              'the system resolver\'s server never answers: fails within connect_timeout (%.1f s)' % took,
              out[-400:])
    finally:
        udp.close()
        tcp.close()


def cut_learns(tmp, settings, redis):
    """siftctl learns one spam through a proxy that cuts the connection
    after N bytes, for N from 0 to the whole learn: afterwards Redis holds
    all of the learn or none of it."""
    proxy = DelayProxy(redis.port).start()
    try:
        conf = sifttest.write_conf(os.path.join(tmp, 'cut.conf'), dict(
            settings, plugin_directory=sifttest.plugin_directory(),
            state_store='redis:127.0.0.1:%d,timeout=500ms,connect_timeout=500ms' % proxy.port,
            spam_bayes_seen_ttl='90m'))
        d = os.path.join(tmp, 'cut')
        os.mkdir(d)
        with open(os.path.join(d, 'one.eml'), 'w') as f:
            f.write(msg(4242, SPAMW, 'spam'))
        redis.cli('FLUSHALL')
        before = proxy.sent
        rc, out = run(conf, 'spam', 'learn', '--spam', d)
        total = proxy.sent - before
        ns, seen, vals = learn_state(redis)
        check(rc == 0 and 'learned 1' in out and ns == 1 and len(seen) == 1 and vals and
              set(vals) == {'1'}, 'one learn through the proxy (%d bytes)' % total, out)
        ntok = len(vals)
        ttl = int(redis.cli('PTTL', seen[0])) if seen else -2
        check(5400000 - 60000 < ttl <= 5400000, 'spam_bayes_seen_ttl = 90m: the seen entry expires in 90 min',
              'PTTL %d' % ttl)
        whole = none = 0
        bad = []
        for n in list(range(0, total, 23)) + [total - 1]:
            redis.cli('FLUSHALL')
            proxy.set_cut(n)
            rc, out = run(conf, 'spam', 'learn', '--spam', d)
            proxy.set_cut(None)
            ns, seen, vals = learn_state(redis)
            if ns == 1 and len(seen) == 1 and len(vals) == ntok and set(vals) == {'1'}:
                whole += 1
            elif ns == 0 and not seen and not vals:
                none += 1
            else:
                bad.append('cut at %d: nspam %d, seen %d, %d tokens %s' % (n, ns, len(seen), len(vals),
                                                                          sorted(set(vals))))
        check(not bad and none > 0,
              'a learn cut anywhere lands whole or not at all (%d cuts: %d none, %d whole)' % (
                  whole + none + len(bad), none, whole), '; '.join(bad[:5]))
        # A write that Redis would refuse at run time (a total that holds
        # no integer) is found before anything is written.
        redis.cli('FLUSHALL')
        redis.cli('SET', 'sift:bayes:nspam', 'x')
        rc, out = run(conf, 'spam', 'learn', '--spam', d)
        keys = redis.cli('KEYS', 'sift:bayes:*').split('\n')
        check(rc != 0 and keys == ['sift:bayes:nspam'] and redis.cli('GET', 'sift:bayes:nspam') == 'x',
              'a learn that Redis cannot finish writes nothing', '%r; %s' % (keys, out[-300:]))
    finally:
        proxy.stop()
        redis.cli('FLUSHALL')


def touched_ttl(tmp, conf, redis):
    """With spam_bayes_token_ttl, a scan sets the TTL of the tokens that
    decided it again (SpamAssassin's Redis store does the same on scans):
    a token used by mail keeps living; one no scan uses expires."""
    conf_ttl = conf + '-ttl'
    with open(conf) as a, open(conf_ttl, 'w') as b:
        b.write(a.read() + 'spam_bayes_token_ttl = 21d\n')
    each = ("local r = {} for _, k in ipairs(redis.call('KEYS', 'sift:bayes:s:*')) do "
            "r[#r + 1] = redis.call(ARGV[1], k, ARGV[2]) end return r")
    redis.cli('EVAL', each.replace(', ARGV[2]', ', 600000'), '0', 'PEXPIRE', '')
    probe = os.path.join(tmp, 'ttl-probe.eml')
    with open(probe, 'w') as f:
        f.write(msg(95, SPAMW, 'spam'))
    rc, out = run(conf_ttl, 'spam', 'check', probe)
    ttls = [int(t) for t in redis.cli('EVAL', each.replace(', ARGV[2]', ''), '0', 'PTTL').split()]
    keys = ttls
    day = 86400000
    renewed = sum(21 * day - 120000 < t <= 21 * day for t in ttls)
    left = sum(0 < t <= 600000 for t in ttls)
    check('BAYES_99' in out and renewed >= 5 and left >= 1 and renewed + left == len(keys),
          'spam_bayes_token_ttl: a scan renews the TTL of the tokens it used, no other',
          '%d renewed, %d left of %d; %s' % (renewed, left, len(keys), out[-300:]))
    redis.cli('EVAL', each.replace(', ARGV[2]', ''), '0', 'PERSIST')


def main():
    tmp = sifttest.scratch('sift-bayes-redis-')
    sifttest.daemon_readable(tmp)
    redis = Redis(tmp).start()
    procs = []
    try:
        rules = os.path.join(tmp, 'rules.cf')
        with open(rules, 'w') as f:
            f.write('loadplugin Mail::SpamAssassin::Plugin::Bayes\n'
                    "body BAYES_99 eval:check_bayes('0.99', '1.00')\ntflags BAYES_99 learn\n"
                    'score BAYES_99 0 0 3.5 3.5\n'
                    'header AL_HDR Subject =~ /autolearn-me/\nscore AL_HDR 6\n'
                    'body AL_BODY /autolearnbody/\nscore AL_BODY 6.5\n')
        settings = {
            'inbound_plugins': 'spam', 'spam_rules': rules, 'spam_cache_directory': '',
            'state_store': 'redis:127.0.0.1:%d' % redis.port, 'spam_bayes_store': 'redis',
            'spam_bayes_min_spam_num': '20', 'spam_bayes_min_ham_num': '20', 'spam_tag_level': '-inf',
            'spam_kill_level': 'none', 'myhostname': 'mx.sift.test', 'tmpdir': tmp,
        }
        conf = sifttest.write_conf(os.path.join(tmp, 'siftctl.conf'),
                                   dict(settings, plugin_directory=sifttest.plugin_directory()))
        sdir = os.path.join(tmp, 'spam')
        os.mkdir(sdir)
        for i in range(25):
            with open(os.path.join(sdir, f'{i}.eml'), 'w') as f:
                f.write(msg(i, SPAMW, 'spam'))
        hdir = os.path.join(tmp, 'ham')
        os.mkdir(hdir)
        for i in range(25):
            with open(os.path.join(hdir, f'{i}.eml'), 'w') as f:
                f.write(msg(i, HAMW, 'ham'))
        rc, out = run(conf, 'spam', 'learn', '--spam', sdir)
        check(rc == 0 and 'learned 25' in out, 'learn into redis', out)
        rc, out = run(conf, 'spam', 'learn', '--ham', hdir)
        check(rc == 0 and 'learned 25' in out, 'learn ham into redis', out)
        check(redis.cli('GET', 'sift:bayes:nspam').strip() == '25', 'the documented keys',
              redis.cli('KEYS', 'sift:bayes:n*'))
        seen = [k for k in redis.cli('KEYS', 'sift:bayes:seen:*').split('\n') if k]
        ttls = [int(redis.cli('PTTL', k)) for k in seen]
        day = 86400000
        check(len(seen) == 50 and all(8 * day - 120000 < t <= 8 * day for t in ttls),
              'seen entries expire in 8 days (spam_bayes_seen_ttl default)', '%d keys, PTTL %s' % (
                  len(seen), sorted(set(ttls))[:5]))
        a = sifttest.start_daemon('filterd', tmp, dict(settings, spam_bayes_auto_learn='yes'), name='filterd-a')
        procs.append(a)
        b = sifttest.start_daemon('filterd', tmp, dict(settings, spam_bayes_auto_learn='no'), name='filterd-b')
        procs.append(b)
        text = msg(98, SPAMW, 'spam').replace('Subject: spam 98', 'Subject: autolearn-me') + 'autolearnbody\n'
        verdict, added = milter_send(a.port, text, b'QA1')
        check('autolearn=spam' in added, 'filterd A autolearns a spam', added)
        rc, out = run(conf, 'spam', 'stats')
        check('spam: 26' in out, 'the shared totals count it', out)
        verdict, added = milter_send(b.port, msg(77, SPAMW, 'spam'), b'QB1')
        check('BAYES_99=3.5' in added and 'autolearn=disabled' in added,
              'filterd B scores from the shared database', added)
        before = int(redis.cli('GET', 'sift:bayes:nspam').strip())
        learned, outs = learn_together(conf, spam_dir(tmp, 'together', 300))
        after = int(redis.cli('GET', 'sift:bayes:nspam').strip())
        check(learned == 300 and after - before == 300, 'four learners at once: each message learned once (Redis)',
              'learned %d, nspam %d -> %d; %s' % (learned, before, after, outs[0][-300:]))
        check(redis.cli('KEYS', 'sift:bayes:learning:*').strip() == '', 'no claim left behind',
              redis.cli('KEYS', 'sift:bayes:learning:*'))
        touched_ttl(tmp, conf, redis)
        named_store(tmp, settings, redis)
        cut_learns(tmp, settings, redis)
    finally:
        sifttest.stop_all([redis] + procs)
    return done()


if __name__ == '__main__':
    sys.exit(main())
