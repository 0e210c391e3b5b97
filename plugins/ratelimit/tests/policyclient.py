"""The Postfix policy-protocol client of the ratelimit tests and benchmark:
sifttest.PolicyClient (one persistent connection, one request at a time,
as smtpd does) plus whole transactions.

    c = PolicyClient(port)            # or PolicyClient(unix='/path')
    c.ask(protocol_state='RCPT', sender='a@b', ...)  -> 'DUNNO'
    c.transaction(client_address=..., sasl_username=..., sender=...,
                  rcpts=[...], size=N) -> (rcpt_actions, eom_action)

Every read is bounded by a timeout; the caller closes the client. Needs
tests/lib on sys.path."""

import itertools

import sifttest

_seq = itertools.count(1)


class PolicyClient(sifttest.PolicyClient):
    def transaction(self, rcpts=('rcpt@example.org',), size=1000, sender='alice@example.net',
                    client_address='192.0.2.10', sasl_username='', **extra):
        """One message: a RCPT request per recipient, then END-OF-MESSAGE
        (with recipient_count) if any recipient was accepted. Returns
        (list of RCPT actions, EOM action or None)."""
        inst = 'test.%d' % next(_seq)
        base = dict(client_address=client_address, client_name='unknown',
                    reverse_client_name='unknown', helo_name='client.example',
                    sender=sender, sasl_username=sasl_username, instance=inst)
        base.update(extra)
        out = []
        for r in rcpts:
            out.append(self.ask(protocol_state='RCPT', recipient=r, recipient_count='0',
                                size=str(size), **base))
        ok = [r for r, a in zip(rcpts, out) if not refused(a)]
        if not ok:
            return out, None
        eom = self.ask(protocol_state='END-OF-MESSAGE',
                       recipient=ok[0] if len(ok) == 1 else '',
                       recipient_count=str(len(ok)), size=str(size), **base)
        return out, eom


def refused(action):
    """True for a 4xx/5xx, REJECT or DEFER action."""
    a = action.upper()
    return a[:1] in ('4', '5') or a.startswith(('REJECT', 'DEFER'))
