#!/usr/bin/python3
"""Over-long SMTP input through the whole shipped chain (tests/lib/chain.py:
filterd and policyd with conf/*.conf behind a private Postfix on 127.0.0.1):
a MAIL FROM, a HELO and a recipient of 900 octets, a header line of 20 KB, a
header folded over 3,000 lines, 3,000 headers, long address headers, a
DKIM-Signature with 3 KB tags, a 2 KB MIME boundary with a 5 KB file name,
a 300 KB body line, 30 Received headers of 2.7 KB.

Every message gets a final answer that is not a temporary failure (a 4xx
here means a daemon failed: Postfix answers 451 4.3.5 when policyd does
not), every accepted recipient gets one delivery, filterd and policyd are still
running at the end, and the over-long sender's SPF result is "none" with
the reason in Received-SPF (its identity does not fit an address; a
truncated one crashed policyd).

    /usr/bin/python3 tests/postfix/test_hostile.py
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402
import chain  # noqa: E402

LONG = 'a' * 900


def message(sender='a@sloppy.test', extra='', body='hello\r\n'):
    return ('From: %s\r\nTo: alice@sift.test\r\nSubject: hostile\r\nDate: Fri, 4 Dec 2026 10:00:00 +0000\r\n'
            'Message-ID: <%d.%f@sloppy.test>\r\n%s\r\n%s' % (sender, os.getpid(), time.time(), extra, body)).encode()


def cases():
    """(name, MAIL FROM, recipients, HELO, message)"""
    out = [
        ('MAIL FROM of 900 octets', LONG + '@sloppy.test', ['alice@sift.test'], None,
         message(LONG + '@sloppy.test')),
        ('HELO of 900 octets', 'x@sloppy.test', ['alice@sift.test'], ('h' * 59 + '.') * 15 + 'test', message()),
        ('recipient of 900 octets', 'x@sloppy.test', [LONG + '@sift.test', 'alice@sift.test'], None, message()),
    ]
    hdrs = {
        'header line of 20 KB': 'X-Long: ' + 'b' * 20000 + '\r\n',
        'header folded over 3,000 lines': 'X-Fold: ' + '\r\n '.join(['c' * 70] * 3000) + '\r\n',
        '3,000 headers': ''.join('X-H%d: v\r\n' % i for i in range(3000)),
        'long address headers': 'Reply-To: ' + LONG + '@x.test\r\nSender: "' + 'n' * 5000 + '" <' + LONG +
                                '@sloppy.test>\r\n',
        'DKIM-Signature with 3 KB tags': 'DKIM-Signature: v=1; a=rsa-sha256; d=' + 'd' * 3000 + '.test; s=' +
                                         's' * 3000 + '; h=from; bh=' + 'A' * 5000 + '; b=' + 'B' * 5000 + '\r\n',
        '30 Received headers of 2.7 KB': ''.join(
            'Received: from %s (%s [192.0.2.%d]) by %s with SMTP id x; Thu, 3 Dec 2026 10:00:00 +0000\r\n' % (
                'r' * 900, 'r' * 900, i, 'm' * 900) for i in range(30)),
    }
    for name, extra in hdrs.items():
        out.append((name, 'x@sloppy.test', ['alice@sift.test'], None, message(extra=extra)))
    b = 'q' * 2000
    out.append(('MIME boundary of 2 KB, file name of 5 KB', 'x@sloppy.test', ['alice@sift.test'], None,
                message(extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="%s"\r\n' % b,
                        body='--%s\r\nContent-Type: text/plain; name="%s"\r\n\r\nx\r\n--%s--\r\n' % (
                            b, 'f' * 5000, b))))
    out.append(('body line of 300 KB', 'x@sloppy.test', ['alice@sift.test'], None,
                message(body='z' * 300000 + '\r\n')))
    return out


def main():
    root = sifttest.scratch('sift-hostile-chain-')
    c = chain.Chain(root)
    c.start()
    try:
        accepted = 0  # deliveries expected: one per accepted recipient of an accepted message
        for name, mail_from, rcpts, helo, data in cases():
            kw = {'helo': helo} if helo else {}
            r = c.pf.send(mail_from, rcpts, data, **kw)
            replies = [r.mail] + list(r.rcpts) + [r.data, r.eom]
            temp = [x for x in replies if x and 400 <= x[0] < 500]
            check(not temp and r.eom is not None, '%s: a final answer, no temporary failure' % name,
                  'stage %s, replies %r, error %r' % (r.stage, [x for x in replies if x], r.error))
            if r.accepted:
                accepted += sum(1 for x in r.rcpts if x and 200 <= x[0] < 300)
        # 1.2 MB of headers: more than message_header_limit (1m): refused
        # with 552 5.3.4 (and the headers not held past the limit)
        r = c.pf.send('x@sloppy.test', ['alice@sift.test'],
                      message(extra=''.join('X-Big%d: %s\r\n' % (i, 'h' * 3000) for i in range(400))))
        check(r.eom is not None and r.eom[0] == 552 and '5.3.4' in r.eom[1],
              'a header section over message_header_limit: 552 5.3.4', 'stage %s, eom %r, error %r' % (
                  r.stage, r.eom, r.error))
        for d in ('filterd', 'policyd'):
            check(c.procs[d].alive(), '%s still running' % d, c.procs[d].log_tail(20))
        msgs = c.pf.wait_delivered(accepted, timeout=60)
        time.sleep(0.5)  # a delivery beyond the expected ones would show as a mismatch
        msgs = c.pf.maildir_messages()
        check(len(msgs) == accepted, 'every accepted recipient delivered once (%d)' % accepted, len(msgs))
        blocks = [m.header_block().replace('\n ', ' ').replace('\n\t', ' ') for m in msgs]
        first = [b for b in blocks if '\nFrom: ' + LONG + '@sloppy.test' in b]
        spf = [line for line in first[0].split('\n') if line.startswith('Received-SPF:')] if first else []
        check(len(spf) == 1 and spf[0].startswith('Received-SPF: none ') and
              'identity too long to be an address' in spf[0],
              'over-long MAIL FROM: Received-SPF none, saying why', [x[:200] for x in spf] or len(first))
    finally:
        c.stop()
    return done()


if __name__ == '__main__':
    sys.exit(main())
