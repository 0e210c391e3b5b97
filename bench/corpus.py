#!/usr/bin/python3
"""Deterministic benchmark corpus: the same seed gives byte-identical
messages on every machine and Python >= 3.9 (random.Random is specified to be
reproducible for a given seed; no clock, host name or locale is used).

Three kinds, in fixed proportions in every block of 20 messages (the order
inside a block is shuffled with the seed):

    text    14/20 (70%)  plain text, ~2 KB
    html     5/20 (25%)  multipart/alternative text + HTML, ~15 KB
    attach   1/20  (5%)  text + a ~200 KB base64 application/octet-stream part
                         (150 KiB of random bytes)

Average message size is ~15 KB. mx_corpus(n, seed) gives the mix an MX
sees, from the same generators:

    text    10/20 (50%)  plain text, ~2.6 KB
    html     7/20 (35%)  multipart/alternative text + HTML, ~20 KB
    attach   3/20 (15%)  text + a base64 attachment of 90-190 KiB
                         (~200 KB encoded on average)

with two Received headers; ~38 KB per message on average. Envelope: senders from example.test
(not a test-instance domain, so nothing is ever sent back), recipients
user0..user9@sift.test.

    import corpus; msgs = corpus.generate(1000, seed=1)
    # -> list of Msg(kind, mail_from, rcpt, data: bytes)
    msgs = corpus.mx_corpus(1000, seed=1)
    for m in corpus.mx_iter(100000, seed=1): ...   # the same, one at a time
    m = corpus.big_attachment(7, seed=1)   # a 1.4-5 MB attachment (bench/soak.py)

CLI: corpus.py [--count N] [--seed S] [--mx] [--out DIR]  prints a summary and a
digest of the whole corpus (to check determinism); --out writes NNNNN-kind.eml.
"""

import argparse
import base64
import collections
import hashlib
import os
import random
import sys

Msg = collections.namedtuple('Msg', 'kind mail_from rcpt data')

BLOCK = ['text'] * 14 + ['html'] * 5 + ['attach']
EPOCH = 1735732800  # 2025-01-01T12:00:00Z, fixed: no wall clock in the corpus

_WORDS = ('the of and to in is that for it as was with be by on not he this are or his '
          'from at which but have an they you were her she there been one all we their '
          'has would when if so no will can more about out up what some them into than '
          'only other new then its also two time like very our after first well way even '
          'because any these give day most us mail server filter message policy queue '
          'delivery invoice meeting report quarterly schedule update project budget '
          'customer account password review attached document please regards thanks '
          'tomorrow office team release version network storage backup security').split()

_DAYS = ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')
_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')


def _date(ts):
    import time
    t = time.gmtime(ts)
    return '%s, %02d %s %04d %02d:%02d:%02d +0000' % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour,
        t.tm_min, t.tm_sec)


def _sentence(rng):
    n = rng.randint(6, 16)
    w = [rng.choice(_WORDS) for _ in range(n)]
    w[0] = w[0].capitalize()
    return ' '.join(w) + rng.choice('...!?')


def _paragraph(rng, size):
    """Text of about `size` bytes wrapped at 72 columns."""
    out, line, total = [], '', 0
    while total < size:
        s = _sentence(rng)
        for word in s.split(' '):
            if len(line) + len(word) + 1 > 72:
                out.append(line)
                total += len(line) + 2
                line = word
            else:
                line = word if not line else line + ' ' + word
    if line:
        out.append(line)
    return '\r\n'.join(out)


def _headers(rng, i, mail_from, rcpt, subject, extra, hops=1):
    h = [
        'Received: from relay.example.test (relay.example.test [198.51.100.%d])\r\n'
        '\tby gw%d.example.test with ESMTP id %08X; %s' % (
            1 + k, k, rng.getrandbits(32), _date(EPOCH + i - k)) for k in range(1, hops)]
    h += [
        'Received: from client%d.example.test (client%d.example.test [192.0.2.%d])\r\n'
        '\tby relay.example.test with ESMTPS id %08X\r\n\tfor <%s>; %s' % (
            i % 7, i % 7, 1 + i % 250, rng.getrandbits(32), rcpt, _date(EPOCH + i)),
        'From: "Sender %d" <%s>' % (i % 50, mail_from),
        'To: <%s>' % rcpt,
        'Subject: %s' % subject,
        'Date: %s' % _date(EPOCH + i),
        'Message-ID: <%016x.%d@example.test>' % (rng.getrandbits(64), i),
        'MIME-Version: 1.0',
    ]
    return '\r\n'.join(h + extra) + '\r\n'


def _text(rng, i, mail_from, rcpt, size=1700, hops=1):
    body = _paragraph(rng, size)
    return (_headers(rng, i, mail_from, rcpt, _sentence(rng)[:60],
                     ['Content-Type: text/plain; charset=us-ascii',
                      'Content-Transfer-Encoding: 7bit'], hops)
            + '\r\n' + body + '\r\n')


def _html(rng, i, mail_from, rcpt, size=(4500, 20), hops=1):
    b = '=_b%016x' % rng.getrandbits(64)
    text = _paragraph(rng, size[0])
    paras = [_paragraph(rng, 400) for _ in range(size[1])]
    html = ('<!DOCTYPE html>\r\n<html><head><meta charset="us-ascii"><title>Newsletter</title>'
            '</head>\r\n<body style="font-family: sans-serif">\r\n<table width="600">\r\n'
            + ''.join('<tr><td class="p%d"><p>%s</p>\r\n<a href="https://www.example.test/'
                      'item/%d?utm_source=mail">more</a></td></tr>\r\n' % (k, p, k)
                      for k, p in enumerate(paras))
            + '</table>\r\n</body></html>')
    return (_headers(rng, i, mail_from, rcpt, 'Newsletter: ' + _sentence(rng)[:50],
                     ['Content-Type: multipart/alternative; boundary="%s"' % b], hops)
            + '\r\nThis is a multi-part message in MIME format.\r\n'
            + '\r\n--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n'
              'Content-Transfer-Encoding: 7bit\r\n\r\n%s\r\n' % (b, text)
            + '\r\n--%s\r\nContent-Type: text/html; charset=us-ascii\r\n'
              'Content-Transfer-Encoding: 7bit\r\n\r\n%s\r\n' % (b, html)
            + '\r\n--%s--\r\n' % b)


def _attach(rng, i, mail_from, rcpt, size=(150, 150), hops=1):
    b = '=_m%016x' % rng.getrandbits(64)
    kib = size[0] if size[0] == size[1] else rng.randint(*size)
    blob = rng.randbytes(kib * 1024)
    enc = base64.b64encode(blob).decode('ascii')
    enc = '\r\n'.join(enc[k:k + 76] for k in range(0, len(enc), 76))
    return (_headers(rng, i, mail_from, rcpt, 'Report ' + _sentence(rng)[:40],
                     ['Content-Type: multipart/mixed; boundary="%s"' % b], hops)
            + '\r\n--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n%s\r\n' % (
                b, _paragraph(rng, 600))
            + '\r\n--%s\r\nContent-Type: application/octet-stream; name="report-%d.bin"\r\n'
              'Content-Disposition: attachment; filename="report-%d.bin"\r\n'
              'Content-Transfer-Encoding: base64\r\n\r\n%s\r\n' % (b, i, i, enc)
            + '\r\n--%s--\r\n' % b)


_MAKERS = {'text': _text, 'html': _html, 'attach': _attach}


# The mix an MX sees (mx_corpus): 10/20 text ~2.6 KB, 7/20 HTML ~20 KB,
# 3/20 attachments of 90-190 KiB (~200 KB base64 on average); two
# Received headers; ~38 KB per message on average.
MX_BLOCK = ['text'] * 10 + ['html'] * 7 + ['attach'] * 3
MX_SIZES = {'text': 2000, 'html': (5000, 25), 'attach': (90, 190)}


def generate(count, seed=1, rcpt_domain='sift.test'):
    """`count` messages (list of Msg), deterministic for a seed."""
    return _build(count, seed, BLOCK, {}, 1, rcpt_domain)


def mx_corpus(n, seed=1, rcpt_domain='sift.test'):
    """`n` messages in the MX mix (MX_BLOCK, MX_SIZES), deterministic for a seed."""
    return _build(n, seed, MX_BLOCK, MX_SIZES, 2, rcpt_domain)


def mx_iter(n, seed=1, rcpt_domain='sift.test'):
    """mx_corpus's messages one at a time (the same bytes), for runs too
    long to hold every message in memory."""
    return _iter(n, seed, MX_BLOCK, MX_SIZES, 2, rcpt_domain)


# Large attachments (big_attachment): 1-3.7 MiB of random bytes, base64:
# 1.4-5 MB on the wire, the size of a scanned document or a small video.
BIG_KIB = (1024, 3700)


def big_attachment(i, seed=1, rcpt_domain='sift.test', kib=BIG_KIB):
    """One message in the "attach" form of the corpus with a large
    attachment (kib: range of its size in KiB), deterministic for (i, seed)."""
    mrng = random.Random('%d/big/%d' % (seed, i))
    mail_from = 'sender%d@example.test' % (i % 50)
    rcpt = 'user%d@%s' % (i % 10, rcpt_domain)
    data = _attach(mrng, i, mail_from, rcpt, size=kib, hops=2).encode('ascii')
    return Msg('big', mail_from, rcpt, data)


def _build(count, seed, blockdef, sizes, hops, rcpt_domain):
    return list(_iter(count, seed, blockdef, sizes, hops, rcpt_domain))


def _iter(count, seed, blockdef, sizes, hops, rcpt_domain):
    rng = random.Random(seed)
    kinds = []
    while len(kinds) < count:
        block = list(blockdef)
        rng.shuffle(block)
        kinds.extend(block)
    for i, kind in enumerate(kinds[:count]):
        mrng = random.Random('%d/%d' % (seed, i))
        mail_from = 'sender%d@example.test' % (i % 50)
        rcpt = 'user%d@%s' % (i % 10, rcpt_domain)
        kw = {'size': sizes[kind], 'hops': hops} if kind in sizes else {}
        data = _MAKERS[kind](mrng, i, mail_from, rcpt, **kw).encode('ascii')
        yield Msg(kind, mail_from, rcpt, data)


def summary(msgs):
    by = collections.OrderedDict((k, []) for k in ('text', 'html', 'attach'))
    for m in msgs:
        by[m.kind].append(len(m.data))
    h = hashlib.sha256()
    for m in msgs:
        h.update(m.data)
    lines = []
    for k, sizes in by.items():
        if sizes:
            lines.append('%-7s %5d msgs  avg %7.1f KB  min %7.1f KB  max %7.1f KB' % (
                k, len(sizes), sum(sizes) / len(sizes) / 1024, min(sizes) / 1024,
                max(sizes) / 1024))
    total = sum(len(m.data) for m in msgs)
    lines.append('total   %5d msgs  avg %7.1f KB  %0.1f MB  sha256 %s' % (
        len(msgs), total / max(1, len(msgs)) / 1024, total / 1048576, h.hexdigest()[:16]))
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description='Generate the Sift benchmark corpus.')
    ap.add_argument('--count', type=int, default=200)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--mx', action='store_true', help='the MX mix (mx_corpus)')
    ap.add_argument('--out', help='write NNNNN-kind.eml files into this directory')
    a = ap.parse_args(argv)
    msgs = (mx_corpus if a.mx else generate)(a.count, a.seed)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        for i, m in enumerate(msgs):
            with open(os.path.join(a.out, '%05d-%s.eml' % (i, m.kind)), 'wb') as f:
                f.write(m.data)
    print(summary(msgs))
    return 0


if __name__ == '__main__':
    sys.exit(main())
