#!/usr/bin/python3
"""The spam plugin's network tests against the test DNS lists
(tests/lib/dnsbl.py), with the stock SpamAssassin ruleset (skipped when it
is not installed) plus a few local rules, through `siftctl test` (the
plugin's connect, end-of-header and end-of-message hooks):

  - relayed through 192.0.2.66 (a private client, so the Received hop is
    the last external one): RCVD_IN_SBL (check_rbl_sub of set zen),
    RCVD_IN_XBL (zen-lastexternal, 127.0.0.4), RCVD_IN_BL_SPAMCOP_NET
    (check_rbl_txt with a regex subtest); its URIs: URIBL_DBL_SPAM
    (urirhssub, notrim), URIBL_BLACK (bit mask 2), URIBL_SBL (uridnssub
    through the domain's name server address) and URIBL_SBL_A (tflags a),
    with the scores of score set 1; uridnsbl_skip_domain hosts not looked up;
  - a public SMTP client (198.51.100.7, --client) is the last external
    relay: RCVD_IN_PBL hits and XBL does not;
  - local rules on the slow list (answers after spam_dns_timeout) and the
    dead list (SERVFAIL) never hit, and the message waits the deadline, not
    the slow answer; check_rbl_envfrom / check_rbl_from_domain hit from the
    sender addresses, and check_rbl_from_host from the envelope sender too
    (SpamAssassin's all_from_addrs: From, Envelope-Sender, Resent-Sender,
    X-Envelope-From, the envelope; Resent-From instead when present);
  - a public client in trusted_networks is trusted, as the MTA's own
    Received line would say: it is not looked up, and the relay below it
    (192.0.2.66) is the last external one (XBL hits, PBL does not);
  - e-mail addresses in the body (mailto: links, bare user@host) are not
    looked up in the URI lists (SpamAssassin 4's uridnsbl_skip_mailto 1)
    unless uridnsbl_skip_mailto 0; a domain named without a scheme is,
    when its TLD is valid (util_rb_tld); skip_uribl_checks 1 turns them off;
  - spam_dns_available = no: no network rule hits, no query is made;
  - through filterd (miltertest plays the MTA): a public client that waits
    longer than spam_dns_timeout between connect and its message still
    gets its header and URI lookups waited for (the deadline counts from
    the last query started, not from the connect).
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get('SIFT_SRCDIR', os.path.join(os.path.dirname(__file__), '..', '..', '..')),
                                'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402
from dnsbl import ListServer  # noqa: E402

STOCK = ['/usr/share/spamassassin', '/etc/spamassassin']

LOCAL = r"""
header T_SIFT_SLOW    eval:check_rbl('slowset', 'slow.dnsbl.test.')
score  T_SIFT_SLOW    5
header T_SIFT_DEAD    eval:check_rbl('deadset', 'dead.dnsbl.test.')
score  T_SIFT_DEAD    5
header T_SIFT_ENVFROM eval:check_rbl_envfrom('envset', 'dbl.spamhaus.org.')
score  T_SIFT_ENVFROM 0.01
header T_SIFT_FROMDOM eval:check_rbl_from_domain('fromset', 'multi.uribl.com.', '127.0.0.2')
score  T_SIFT_FROMDOM 0.01
header T_SIFT_FROMHOST eval:check_rbl_from_host('fromhost', 'dbl.spamhaus.org.')
score  T_SIFT_FROMHOST 0.01
uridnsbl_skip_domain skipped-listed.example
urirhssub T_SIFT_SKIPPED dbl.spamhaus.org. A 127.0.1.3
body T_SIFT_SKIPPED eval:check_uridnsbl('T_SIFT_SKIPPED')
score T_SIFT_SKIPPED 0.01
"""


def message(received, body, sender='a@example.test'):
    return ('Received: %s\r\nFrom: Someone <%s>\r\nTo: user@sift.test\r\nSubject: hello there\r\n'
            'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1234567890@example.test>\r\n\r\n%s\r\n'
            % (received, sender, body)).encode()


RCVD = ('from mail.spammer.test (mail.spammer.test [192.0.2.66])\r\n\tby relay.example.net with ESMTP id 1A2B3C'
        '\r\n\tfor <user@sift.test>; Mon, 1 Jan 2024 09:59:00 +0000')
URIS = ('see http://dbl-listed.example/x and http://uribl-listed.example/ and http://www.ns-listed.example/ '
        'and http://www.skipped-listed.example/')


# A client that connects, waits `delay` seconds, then sends RCVD and URIS.
SLOW_CLIENT = r"""
local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.25)
assert(conn, "cannot connect to filterd")
assert(mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", "mx.sift.test", "j", "mx.sift.test") == nil)
assert(mt.conninfo(conn, "client.example", "198.51.100.7") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE)
mt.sleep(tonumber(delay))
assert(mt.helo(conn, "client.example") == nil)
mt.getreply(conn)
assert(mt.mailfrom(conn, "x@example.test") == nil)
mt.getreply(conn)
assert(mt.rcptto(conn, "user@sift.test") == nil)
mt.getreply(conn)
local hs = {{"Received", "%s"}, {"From", "Someone <a@example.test>"}, {"To", "user@sift.test"},
  {"Subject", "hello there"}, {"Date", "Mon, 1 Jan 2024 10:00:00 +0000"},
  {"Message-ID", "<1234567890@example.test>"}}
for _, h in ipairs(hs) do assert(mt.header(conn, h[1], h[2]) == nil) end
assert(mt.eoh(conn) == nil)
mt.getreply(conn)
assert(mt.bodystring(conn, "%s\r\n") == nil)
mt.getreply(conn)
assert(mt.macro(conn, string.byte("E"), "i", "4ABCDEF123") == nil)
assert(mt.eom(conn) == nil)
mt.getreply(conn)
mt.disconnect(conn)
"""


def symbols(res):
    return {s['name']: s['score'] for s in res.get('symbols', [])}


def main():
    if not all(os.path.isdir(d) for d in STOCK):
        print('the stock SpamAssassin ruleset is not installed: skipped')
        return done()
    tmp = sifttest.scratch('sift-dnsbl-')
    os.chmod(tmp, 0o755)
    local = os.path.join(tmp, 'local.cf')
    with open(local, 'w') as f:
        f.write(LOCAL)
    dns = ListServer()
    dns.delay = 3.0
    dns.start()
    try:
        conf = sifttest.write_conf(os.path.join(tmp, 'filterd.conf'), {
            'plugin_directory': sifttest.plugin_directory(), 'inbound_plugins': 'spam',
            'spam_rules': ' '.join(STOCK + [local]), 'spam_hyperscan': 'no', 'spam_cache_directory': '',
            'spam_dns_available': 'yes', 'spam_dns_timeout': '1s',
            'dns_servers': '127.0.0.1:%d' % dns.port, 'filterd_user': sifttest.daemon_user() or 'root'})

        # a message from a listed relay, with listed URIs; the slow and dead lists
        t0 = time.monotonic()
        res = sifttest.siftctl_test(conf, message(RCVD, URIS, sender='x@uribl-listed.example'),
                                    args=['--from', 'x@dbl-listed.example'])
        took = time.monotonic() - t0
        s = symbols(res)
        for rule in ('RCVD_IN_SBL', 'RCVD_IN_XBL', 'RCVD_IN_BL_SPAMCOP_NET', 'URIBL_DBL_SPAM', 'URIBL_BLACK',
                     'URIBL_SBL', 'URIBL_SBL_A', 'T_SIFT_ENVFROM', 'T_SIFT_FROMDOM', 'T_SIFT_FROMHOST'):
            check(rule in s, '%s hits from the local lists: %s' % (rule, sorted(s)))
        check(s.get('RCVD_IN_XBL') == 0.724 and s.get('URIBL_BLACK') == 1.7,
              'network rules score with score set 1: %r' % s)
        for rule in ('RCVD_IN_PBL', 'T_SIFT_SLOW', 'T_SIFT_DEAD', 'T_SIFT_SKIPPED', 'RCVD_IN_DNSWL_MED'):
            check(rule not in s, '%s does not hit' % rule)
        check(1.0 <= took < 2.9, 'the slow list costs the deadline (1 s), not its 3 s: %.2f s' % took)
        check(res.get('action') == 'reject', 'the message is spam: %s' % res.get('action'))
        names = {str(q[0]).lower().rstrip('.') for q in dns.log}
        check('www.skipped-listed.example.dbl.spamhaus.org' not in names and
              'skipped-listed.example.dbl.spamhaus.org' not in names, 'uridnsbl_skip_domain not looked up')

        # a public client: the last external relay
        res = sifttest.siftctl_test(conf, message(RCVD, 'nothing here'), args=['--client', '198.51.100.7'])
        s = symbols(res)
        check('RCVD_IN_PBL' in s and 'RCVD_IN_XBL' not in s and 'RCVD_IN_SBL' in s,
              'public client: PBL from the client, SBL from the relay, no XBL: %s' % sorted(s))

        # the client in trusted_networks
        trusted = os.path.join(tmp, 'trusted.cf')
        with open(trusted, 'w') as f:
            f.write('trusted_networks 198.51.100.0/24\n')
        tconf = sifttest.write_conf(os.path.join(tmp, 'filterd-trusted.conf'), {
            'plugin_directory': sifttest.plugin_directory(), 'inbound_plugins': 'spam',
            'spam_rules': ' '.join(STOCK + [local, trusted]), 'spam_hyperscan': 'no', 'spam_cache_directory': '',
            'spam_dns_available': 'yes', 'spam_dns_timeout': '1s',
            'dns_servers': '127.0.0.1:%d' % dns.port, 'filterd_user': sifttest.daemon_user() or 'root'})
        before = len(dns.log)
        res = sifttest.siftctl_test(tconf, message(RCVD, 'nothing here'), args=['--client', '198.51.100.7'])
        s = symbols(res)
        check('RCVD_IN_XBL' in s and 'RCVD_IN_PBL' not in s and 'RCVD_IN_SBL' in s,
              'client in trusted_networks: the relay below it is the last external: %s' % sorted(s))
        asked = [str(q[0]).lower() for q in dns.log[before:]]
        check(not any(n.startswith('7.100.51.198.') for n in asked),
              'the trusted client is not looked up: %s' % sorted(n for n in asked if '198' in n))

        # e-mail addresses are not URIs to look up (uridnsbl_skip_mailto)
        mail_body = ('write to x@dbl-listed.example or <a href="mailto:y@uribl-listed.example">here</a>')
        before = len(dns.log)
        res = sifttest.siftctl_test(conf, message(RCVD, mail_body))
        s = symbols(res)
        asked = [str(q[0]).lower().rstrip('.') for q in dns.log[before:]]
        check(res.get('action') != 'error' and 'URIBL_DBL_SPAM' not in s and 'URIBL_BLACK' not in s and
              not any(n.startswith(('dbl-listed.example.', 'uribl-listed.example.')) for n in asked),
              'addresses in the body are not looked up in the URI lists: %s %s' % (sorted(s), sorted(asked)))
        mailto = os.path.join(tmp, 'mailto.cf')
        with open(mailto, 'w') as f:
            f.write('uridnsbl_skip_mailto 0\n')
        res = sifttest.siftctl_test(conf, message(RCVD, mail_body),
                                    opts=['spam_rules=' + ' '.join(STOCK + [local, mailto])])
        s = symbols(res)
        check('URIBL_DBL_SPAM' in s and 'URIBL_BLACK' in s, 'with uridnsbl_skip_mailto 0 they are: %s' % sorted(s))
        # a domain the text names without a scheme is looked up when its
        # TLD is valid (util_rb_tld), as SpamAssassin 4 does
        bare_body = 'cheap stuff at dbl-listed.example today'
        before = len(dns.log)
        res = sifttest.siftctl_test(conf, message(RCVD, bare_body))
        s = symbols(res)
        asked = [str(q[0]).lower().rstrip('.') for q in dns.log[before:]]
        check(res.get('action') != 'error' and 'URIBL_DBL_SPAM' not in s and
              'dbl-listed.example.dbl.spamhaus.org' not in asked,
              'a bare name of no valid TLD is no URI: %s %s' % (sorted(s), sorted(asked)))
        tlds = os.path.join(tmp, 'tlds.cf')
        with open(tlds, 'w') as f:
            f.write('util_rb_tld example\n'
                    # the body and its bare URIs that the lookups rendered
                    # are what scoring reads too
                    'body T_SIFT_BODY_WORDS /cheap stuff at/\nscore T_SIFT_BODY_WORDS 0.01\n'
                    'body T_SIFT_BODY_SUBJ /^hello there$/\nscore T_SIFT_BODY_SUBJ 0.01\n'
                    'uri T_SIFT_BARE_URI /^http:\\/\\/dbl-listed\\.example$/\nscore T_SIFT_BARE_URI 0.01\n')
        before = len(dns.log)
        res = sifttest.siftctl_test(conf, message(RCVD, bare_body),
                                    opts=['spam_rules=' + ' '.join(STOCK + [local, tlds])])
        s = symbols(res)
        asked = [str(q[0]).lower().rstrip('.') for q in dns.log[before:]]
        check('URIBL_DBL_SPAM' in s and 'dbl-listed.example.dbl.spamhaus.org' in asked,
              'a bare name of a valid TLD is looked up and hits: %s %s' % (sorted(s), sorted(asked)))
        check({'T_SIFT_BODY_WORDS', 'T_SIFT_BODY_SUBJ', 'T_SIFT_BARE_URI'} <= set(s),
              'the body rules and uri rules see the text the lookups rendered: %s' % sorted(s))
        skip = os.path.join(tmp, 'skip_uribl.cf')
        with open(skip, 'w') as f:
            f.write('skip_uribl_checks 1\n')
        before = len(dns.log)
        res = sifttest.siftctl_test(conf, message(RCVD, URIS), opts=['spam_rules=' + ' '.join(STOCK + [local, skip])])
        s = symbols(res)
        asked = [str(q[0]).lower().rstrip('.') for q in dns.log[before:]]
        check(res.get('action') != 'error' and 'RCVD_IN_SBL' in s and not any(n.startswith('URIBL_') for n in s) and
              not any('listed.example' in n for n in asked),
              'skip_uribl_checks 1: no URI list rule, no URI query, the relays still: %s' % sorted(s))

        # no network tests
        before = len(dns.log)
        res = sifttest.siftctl_test(conf, message(RCVD, URIS), opts=['spam_dns_available=no'])
        s = symbols(res)
        check(res.get('action') != 'error' and not any(n.startswith(('RCVD_IN_', 'URIBL_')) for n in s),
              'spam_dns_available = no: no network rule hits: %s' % sorted(s))
        check(len(dns.log) == before, 'and no query was made')

        # through filterd: the client waits 1.5 s (past spam_dns_timeout)
        # between connect and its message
        script = os.path.join(tmp, 'slow_client.lua')
        with open(script, 'w') as f:
            f.write(SLOW_CLIENT % (RCVD.replace('\r\n', '\\r\\n').replace('\t', '\\t'), URIS))
        fd = sifttest.start_daemon('filterd', tmp, {
            'inbound_plugins': 'spam', 'spam_rules': ' '.join(STOCK + [local]), 'spam_hyperscan': 'no',
            'spam_cache_directory': '', 'spam_dns_available': 'yes', 'spam_dns_timeout': '1s',
            'dns_servers': '127.0.0.1:%d' % dns.port})
        try:
            r = subprocess.run(['miltertest', '-D', 'port=%d' % fd.port, '-D', 'delay=1.5', '-s', script],
                               capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, 'miltertest session: %s' % (r.stdout + r.stderr).strip())
            line = next((ln for ln in reversed(fd.log().splitlines()) if 'tests=[' in ln), '')
            for rule in ('RCVD_IN_SBL', 'RCVD_IN_PBL', 'URIBL_DBL_SPAM', 'URIBL_BLACK', 'URIBL_SBL'):
                check(rule + '=' in line, 'slow client: %s still hits: %s' % (rule, line))
            check('Blocked SPAM' in line, 'slow client: the message is still spam')
        finally:
            fd.stop()
    finally:
        dns.stop()
    return done()


if __name__ == '__main__':
    sys.exit(main())
