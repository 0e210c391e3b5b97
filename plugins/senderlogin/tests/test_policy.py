"""senderlogin in policyd (answers "553 5.7.1 not owned by user alice";
Postfix adds "<sender>: Sender address rejected: " itself) (the envelope sender, as Postfix's
reject_authenticated_sender_login_mismatch), over the real policy protocol:
the seed's login_maps.pcre as-is, auth as alice sending as alice / bob /
an alias / another domain, MAIL and RCPT stages, the null sender, the
unauthenticated check, the texthash alias map, and logins and owners
with non-ASCII letters compared with Unicode case folding."""

import contextlib
import sys

from common import SEED_MAP, ALIAS_MAP, PATTERN_MAP
import sifttest  # noqa: E402
from sifttest import check, check_eq as eq, done, start_daemon, PolicyClient

tmp = sifttest.scratch('sift-slp-')


@contextlib.contextmanager
def senderlogin_policyd(name, tag, **settings):
    """A policyd with senderlogin and `settings`, stopped on leaving; yields
    ask(sender, login): a RCPT request, each in its own instance."""
    pd = start_daemon('policyd', tmp, dict({'inbound_plugins': 'senderlogin',
                                            'originating_plugins': 'senderlogin'}, **settings), name=name)
    try:
        with PolicyClient(pd.port) as c:
            def ask(sender, login):
                return c.ask(protocol_state='RCPT', sender=sender, sasl_username=login,
                             client_address='192.0.2.10', recipient='x@example.com',
                             instance='%s.%s.%s' % (tag, sender, login))
            yield ask
    finally:
        pd.stop()

REJ = '553 5.7.1 not owned by user %s'

pd = start_daemon('policyd', tmp, {
    'inbound_plugins': 'senderlogin', 'originating_plugins': 'senderlogin',
    'senderlogin_login_maps': 'pcre:' + SEED_MAP,
    'senderlogin_unauthenticated_reject': 'yes',
    'senderlogin_local_domains': 'example.net',
})
try:
    with PolicyClient(pd.port) as c:
        def ask(sender, login, state='RCPT', client='192.0.2.10', rcpt='x@example.com'):
            return c.ask(protocol_state=state, sender=sender, sasl_username=login,
                         client_address=client, recipient=rcpt, instance='i.%s.%s.%s' % (
                             sender, login, state))
        eq(ask('alice@example.net', 'alice'), 'DUNNO', 'alice as alice')
        eq(ask('alice@EXAMPLE.NET', 'alice'), 'DUNNO', 'domain case')
        eq(ask('bob@example.net', 'alice'), REJ % 'alice', 'alice as bob')
        eq(ask('bob@example.net', 'alice', state='MAIL'), REJ % 'alice',
           'alice as bob at MAIL')
        eq(ask('bob@example.net', 'alice', state='DATA'), 'DUNNO', 'not checked at DATA')
        eq(ask('sales@example.net', 'alice'), REJ % 'alice',
           'alice as an alias the seed map gives to "sales"')
        eq(ask('alice@example.org', 'alice'), REJ % 'alice',
           'alice as another domain (no owner)')
        eq(ask('', 'alice'), 'DUNNO', 'null sender is not checked')
        # Postfix removes one dot at the end of the domain (trivial-rewrite)
        # before its own check and before queueing: the same owners
        eq(ask('alice@example.net.', 'alice'), 'DUNNO', 'own address with a trailing dot')
        eq(ask('bob@example.net.', 'alice'), REJ % 'alice', 'bob with a trailing dot')
        eq(ask('a' * 600 + '@example.net', 'alice'), REJ % 'alice',
           'a sender longer than an address can be has no owner')
        eq(ask('a' * 600 + '@example.net', ''), 'DUNNO', 'unauthenticated: too long to look up')
        # a login longer than a reply may quote: quoted in part, the
        # reply stays valid (not replaced by the default)
        eq(ask('bob@example.net', 'x' * 900), REJ % ('x' * 100), 'over-long login quoted in part')
        eq(ask('bob@example.net', ''),
           '553 5.7.1 not logged in',
           'unauthenticated outsider using our domain')
        eq(ask('someone@example.com', ''), 'DUNNO', 'unauthenticated, foreign sender')
        eq(ask('bob@example.net.', ''), '553 5.7.1 not logged in',
           'unauthenticated outsider using our domain with a trailing dot')
        # without a domain, Postfix completes the address (myorigin,
        # swap_bangpath, allow_percent_hack) into what policyd cannot see
        eq(ask('alice', 'alice'), REJ % 'alice', 'a bare local part cannot be verified')
        eq(ask('example.net!bob', ''), '553 5.7.1 not logged in',
           'unauthenticated outsider with a bang path')
        # Same transaction, second recipient: same answer, looked up once.
        inst = 'same-instance'
        a1 = c.ask(protocol_state='RCPT', sender='bob@example.net', sasl_username='alice',
                   client_address='192.0.2.10', recipient='a@example.com', instance=inst)
        a2 = c.ask(protocol_state='RCPT', sender='bob@example.net', sasl_username='alice',
                   client_address='192.0.2.10', recipient='b@example.com', instance=inst)
        eq((a1, a2), (REJ % 'alice',) * 2, 'every RCPT of the transaction')
    check('login=alice sender=<bob@example.net> owners=bob: not owned; action=reject' in pd.log(),
          'clear log line: %s' % pd.log_tail(5))
    check('invalid SMTP reply' not in pd.log(), 'no invalid reply: %s' % pd.log_tail(5))
finally:
    pd.stop()

with senderlogin_policyd('policyd2', 'j',
                         senderlogin_login_maps='texthash:' + ALIAS_MAP,
                         senderlogin_recipient_delimiter='+',
                         senderlogin_envelope_action='tempfail') as ask2:
    eq(ask2('sales@example.org', 'alice'), 'DUNNO', 'alias owned by alice')
    eq(ask2('sales@example.org', 'bob'), 'DUNNO', 'alias owned by bob too')
    eq(ask2('alice+x@example.org', 'alice'), 'DUNNO', 'extension')
    eq(ask2('postmaster@example.org', 'alice'),
       '450 4.7.1 not owned by user alice',
       'envelope_action=tempfail')
    eq(ask2('bob@example.net', ''), 'DUNNO', 'unauthenticated check off by default')
    eq(ask2('sales@example.org.', 'bob'), 'DUNNO', 'alias with a trailing dot')

# senderlogin_unknown_sender = dunno (reject_known_sender_login_mismatch):
# only addresses with an owner are checked
with senderlogin_policyd('policyd3', 'k',
                         senderlogin_login_maps='pcre:' + SEED_MAP,
                         senderlogin_unknown_sender='dunno') as ask3:
    eq(ask3('someone@example.com', 'alice'), 'DUNNO', 'dunno: an address without owner')
    eq(ask3('bob@example.net', 'alice'), REJ % 'alice', 'dunno: bob is known')
    eq(ask3('bob@example.net.', 'alice'), REJ % 'alice',
       'dunno: bob with a trailing dot is bob (Postfix queues bob@example.net)')
    for snd in ('bob', 'example.net!bob', 'bob%example.net'):
        eq(ask3(snd, 'alice'), REJ % 'alice',
           'dunno: %s has no domain (Postfix queues bob@example.net)' % snd)
# A pattern map answers for the whole address only, as in Postfix: with
# recipient_delimiter set, alice+x@example.org is not alice@example.org,
# and "@example.com" is never asked
with senderlogin_policyd('policyd4', 'm',
                         senderlogin_login_maps='pcre:' + PATTERN_MAP,
                         senderlogin_recipient_delimiter='+') as ask4:
    eq(ask4('alice@example.org', 'alice'), 'DUNNO', 'pattern map: the whole address')
    eq(ask4('alice+x@example.org', 'alice'), REJ % 'alice',
       'pattern map: no lookup without the extension')
    eq(ask4('zed@example.com', 'carol'), REJ % 'carol', 'pattern map: no @domain lookup')
# Logins and owners compared as Postfix compares them (strcasecmp_utf8):
# Unicode case folding when either is not ASCII
with senderlogin_policyd('policyd5', 'n', senderlogin_login_maps=(
        'inline:{ { jörg@example.de = JÖRG, Ægir } { ana@example.de = ANA } }')) as ask5:
    eq(ask5('jörg@example.de', 'jörg'), 'DUNNO', 'non-ASCII: jörg owns what JÖRG owns')
    eq(ask5('JÖRG@example.de', 'ægir'), 'DUNNO', 'non-ASCII: the second owner, Ægir, as ægir')
    eq(ask5('jörg@example.de', 'jorg'), REJ % 'jorg', 'non-ASCII: jorg is not jörg')
    eq(ask5('ana@example.de', 'ana'), 'DUNNO', 'ASCII: ana owns what ANA owns')
sys.exit(done())
