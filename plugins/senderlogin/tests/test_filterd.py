"""senderlogin in filterd's chain, through `siftctl test` (the same code as
filterd, no MTA): the seed's login_maps.pcre as-is, then a texthash map with
aliases; header From/Sender forgery with display names, comments, quoted
local parts, groups and RFC 2047 display names; every header_action."""

import os
import sys

from common import SEED_MAP, ALIAS_MAP
import sifttest  # noqa: E402
from sifttest import check, check_eq as eq, done, siftctl_test, write_conf, plugin_directory

tmp = sifttest.scratch('sift-sl-')
conf = write_conf(os.path.join(tmp, 'filterd.conf'), {
    'plugin_directory': plugin_directory(),
    'originating_plugins': 'senderlogin',
    'inbound_plugins': 'senderlogin',
    'senderlogin_login_maps': 'pcre:' + SEED_MAP,
    'senderlogin_recipient_delimiter': '+'})


def run(from_hdr, env_from='alice@example.net', auth='alice', extra_hdrs='', opts=()):
    hdr = 'From:%s\n' % from_hdr if from_hdr is not None else ''
    args = ['--from', env_from, '--to', 'x@example.com'] + (['--auth', auth] if auth else [])
    r = siftctl_test(conf, '%sTo: x@example.com\nSubject: test\n%s\nbody\n' % (hdr, extra_hdrs), args,
                     opts=opts, timeout=30)
    if 'error' in r:
        print('siftctl output:', r['error'])
    return r


# Seed map: /^(.*)@example\.net$/ ${1}
R = run(' Alice <alice@example.net>')
eq(R['action'], 'accept', 'own From')
R = run(' "Bob" <bob@example.net>')
eq(R['action'], 'reject', 'From bob')
eq(R['reply'], '553 5.7.1 <bob@example.net>: From header address rejected: not owned by user alice',
   'From bob reply')
R = run(' alice@other.example')
eq(R['action'], 'reject', 'From of another domain (no owner)')
R = run(' alice@other.example', opts=['senderlogin_unknown_sender=dunno'])
eq(R['action'], 'accept', 'From of another domain with unknown_sender=dunno')
R = run(' Alice <alice@example.net>', extra_hdrs='Sender: bob@example.net\n')
eq(R['action'], 'reject', 'Sender header bob')
R = run(' Alice <alice@example.net>', extra_hdrs='Sender: bob@example.net\n',
        opts=['senderlogin_header_fields=From'])
eq(R['action'], 'accept', 'Sender not checked when header_fields=From')
R = run(' alice@example.net (Bob Smith <bob@example.net>)')
eq(R['action'], 'accept', 'comment is not an address')
R = run(' "bob@example.net" <alice@example.net>')
eq(R['action'], 'reject', 'display name showing bob@example.net')
R = run(' "bob@example.net" <alice@example.net>', opts=['senderlogin_display_name_check=no'])
eq(R['action'], 'accept', 'display name check off')
R = run(' "Friend bob@gmail.com" <alice@example.net>')
eq(R['action'], 'accept', 'display name with an outside address nobody owns')
R = run(' =?UTF-8?B?Qm9iIDxib2JAZXhhbXBsZS5uZXQ+?= <alice@example.net>')
eq(R['action'], 'reject', 'RFC 2047 display name hiding bob@example.net')
R = run(' =?UTF-8?Q?Al=C3=AFce?= <alice@example.net>')
eq(R['action'], 'accept', 'RFC 2047 display name, own address')
R = run(' "alice"@example.net')
eq(R['action'], 'accept', 'quoted local part')
R = run(' "bob"@example.net')
eq(R['action'], 'reject', 'quoted local part of bob')
R = run(' Us: alice@example.net, bob@example.net;')
eq(R['action'], 'reject', 'group with bob')
R = run(' Us: alice@example.net;')
eq(R['action'], 'accept', 'group with alice only')
R = run(' alice@example.net, bob@example.net')
eq(R['action'], 'reject', 'two authors, one not owned')
R = run(' <alice@example.net')
eq(R['action'], 'reject', 'unparseable From')
R = run(' "Bob" <bob@example.net>', auth=None)
eq(R['action'], 'accept', 'unauthenticated: no header check')
R = run(' "Bob" <bob@example.net>', opts=['senderlogin_header_action=log'])
eq(R['action'], 'accept', 'header_action=log')
R = run(' "Bob" <bob@example.net>', opts=['senderlogin_header_action=tempfail'])
eq(R['action'], 'tempfail', 'header_action=tempfail')
R = run(' "Bob" <bob@example.net>', opts=['senderlogin_header_action=hold'])
eq(R['action'], 'hold', 'header_action=hold')
R = run(' "Bob" <bob@example.net>', opts=['senderlogin_header_action=header'])
eq(R['action'], 'accept', 'header_action=header')
check(any(h.get('name') == 'X-Sift-Sender-Login' and 'login=alice' in h.get('value', '')
          and 'bob@example.net' in h.get('value', '') for h in R.get('headers', [])),
      'X-Sift-Sender-Login header added: %r' % R.get('headers'))
R = run(None)
eq(R['action'], 'accept', 'no From header')
# Envelope check in filterd at MAIL.
R = run(' Bob <bob@example.net>', env_from='bob@example.net')
eq(R['reply'], '553 5.7.1 <bob@example.net>: Sender address rejected: not owned by user alice',
   'envelope bob at MAIL')
R = run(' Alice <alice+tag@example.net>', env_from='alice@example.net')
eq(R['action'], 'reject', 'seed pcre map: alice+tag owner is "alice+tag" (as Postfix)')
# A milter sees the MAIL FROM argument as the client wrote it; Postfix
# checks and queues its internal form: a quoted local part or a source
# route is still bob@example.net (an owner the map knows, also with
# unknown_sender = dunno).
known = ['senderlogin_login_maps=inline:{bob@example.net=bob, alice@example.net=alice}',
         'senderlogin_unknown_sender=dunno']
for env in ('"bob"@example.net', '@relay.example,@relay2.example:bob@example.net', '"b\\ob"@example.net',
            '@relay.example:"bob"@example.net'):
    R = run(' Alice <alice@example.net>', env_from=env, opts=known)
    eq(R['reply'], '553 5.7.1 <bob@example.net>: Sender address rejected: not owned by user alice',
       'envelope %s is bob@example.net' % env)
R = run(' Alice <alice@example.net>', env_from='"alice"@example.net', opts=known)
eq(R['action'], 'accept', 'envelope "alice"@example.net is alice\'s')
R = run(' Alice <alice@example.net>', env_from='someone@example.com', opts=known)
eq(R['action'], 'accept', 'unknown_sender=dunno: an address nobody owns')

# Texthash map with aliases and extensions.
alias = ['senderlogin_login_maps=texthash:%s' % ALIAS_MAP]
R = run(' Sales <sales@example.org>', env_from='alice@example.org', opts=alias)
eq(R['action'], 'accept', 'alias sales@ owned by alice and bob')
R = run(' <alice+news@example.org>', env_from='alice+news@example.org', opts=alias)
eq(R['action'], 'accept', 'extension stripped with recipient_delimiter')
R = run(' <alice+news@example.org>', env_from='alice@example.org',
        opts=alias + ['senderlogin_recipient_delimiter='])
eq(R['action'], 'reject', 'no delimiter: alice+news@ falls to @example.org (carol)')
R = run(' <postmaster@example.org>', env_from='alice@example.org', opts=alias)
eq(R['action'], 'reject', 'postmaster owned by carol')
R = run(' <anything@example.org>', env_from='anything@example.org', auth='carol', opts=alias)
eq(R['action'], 'accept', '@domain lookup gives carol')
R = run(' <sales@example.org>', env_from='sales@example.org', auth='BOB', opts=alias)
eq(R['action'], 'accept', 'login compared case-insensitively')
sys.exit(done())
