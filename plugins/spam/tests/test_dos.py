#!/usr/bin/python3
"""spam plugin: hostile messages cost bounded time (siftctl and filterd).

- multipart_alternative_difference: 60000 words chosen so that their FNV-1a
  hashes share the low 17 bits (one probe chain of a table hashed with a
  fixed FNV-1a) score in well under a second of CPU;
- check_freemail_replyto's body parse (a freemail From, body lines of
  `a@b.b.b.b.`) costs a small fraction of what the email regex with a flat
  TLD alternation took;
- redirector_pattern (the stock `URL=` one, quadratic on a URI of `/?`)
  over 500 URIs of 2000 octets stays bounded;
- the scoring deadline holds during the evals: filterd with a short
  filterd_content_deadline answers a message whose evals run past it with
  a tempfail ("scoring ran out of time"), not an accept with the score.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402

BUILD = sifttest.builddir()
SIFTCTL = sifttest.program('siftctl')
STOCK = '/usr/share/spamassassin'

HDR = ('From: Sender <%s>\nTo: b@example.org\nSubject: test\nMessage-ID: <abc123def@example.com>\n'
       'Date: Sat, 05 Dec 2026 03:00:00 +0000\nMIME-Version: 1.0\n')

# SpamAssassin's URL= redirector pattern (20_uri_tests.cf)
REDIR_URL = r"redirector_pattern m'/(?:index.php)?\?.*(?<=[?&])URL=(.*?)(?:$|[&\#])'i"


def stock_lines(fname, prefix):
    try:
        with open(os.path.join(STOCK, fname)) as f:
            return [ln for ln in f if ln.startswith(prefix)]
    except OSError:
        return []


def tld_lines():
    got = stock_lines('20_aux_tlds.cf', 'util_rb_tld')
    if got:
        return ''.join(got)
    # without the stock files: about as many names
    al = 'abcdefghijklmnopqrstuvwxyz'
    names = ['com', 'net', 'org', 'info', 'biz'] + [a + b for a in al for b in al] + \
        ['x' + a + b + c for a in al[:4] for b in al for c in al]
    return ''.join('util_rb_tld %s\n' % ' '.join(names[i:i + 20]) for i in range(0, len(names), 20))


RULES = ('freemail_domains gmail.com\n'
         "header T_FMRT eval:check_freemail_replyto('replyto')\n"
         "header T_FMR eval:check_freemail_replyto('reply')\n"
         "body T_MAD eval:multipart_alternative_difference('99', '100')\n"
         "body T_MADC eval:multipart_alternative_difference_count('3', '1')\n"
         'uri T_GOV /\\.gov/\n' + REDIR_URL + '\n')


def fnv_colliding(n, k=17):
    """n distinct words whose FNV-1a 64 hashes agree in their low k bits:
    a chain of 3-character blocks that each take one state to another
    (mod 2^k), several blocks per step (Joux's multicollisions)."""
    mask, P = (1 << k) - 1, 1099511628211
    al = [ord(c) for c in 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789']
    s = 14695981039346656037 & mask
    steps = []
    total = 1
    while total < n:
        buckets = {}
        for a in al:
            sa = ((s ^ a) * P) & mask
            for b in al:
                sb = ((sa ^ b) * P) & mask
                for c in al:
                    buckets.setdefault(((sb ^ c) * P) & mask, []).append(bytes((a, b, c)))
        best = max(buckets.values(), key=len)
        steps.append(best)
        total *= len(best)
        s = ((((s ^ best[0][0]) * P & mask) ^ best[0][1]) * P & mask ^ best[0][2]) * P & mask
    words = [b'']
    for st in steps:
        words = [w + blk for w in words for blk in st][:n]
    return [w.decode() for w in words]


def madiff_msg(words, depth=1):
    text = '\n'.join(' '.join(words[i:i + 8]) for i in range(0, len(words), 8))
    body = ('--B0\nContent-Type: text/plain\n\n' + text +
            '\n--B0\nContent-Type: text/html\n\n<p>hello</p>\n--B0--\n')
    for i in range(1, depth):
        body = ('--B%d\nContent-Type: multipart/alternative; boundary="B%d"\n\n' % (i, i - 1) + body +
                '\n--B%d--\n' % i)
    return (HDR % 'a@example.com' + 'Content-Type: multipart/alternative; boundary="B%d"\n\n' % (depth - 1) +
            body)


def freemail_msg(parts):
    line = ('a@b.b.b.b.' * 204)[:2040] + '\n'
    s = HDR % 'a@gmail.com' + 'Content-Type: multipart/mixed; boundary="BOUND"\n\n'
    for _ in range(parts):
        s += '--BOUND\nContent-Type: text/plain\n\n' + line * 24 + '\n'
    return s + '--BOUND--\n'


def redir_msg(n, length=2000):
    path = ('/?' * length)[:length - 1] + '='
    return (HDR % 'a@example.com' + 'Content-Type: text/html\n\n<html><body>\n' +
            ''.join('<a href="http://h%d.a.gov%s">x</a>\n' % (i, path) for i in range(n)) + '</body></html>\n')


def write(root, name, text):
    p = os.path.join(root, name)
    with open(p, 'w') as f:
        f.write(text)
    return p


def score(cfg, path):
    r = subprocess.run([SIFTCTL, '-c', cfg, 'spam', 'check', '--json', path], capture_output=True, text=True,
                       timeout=300)
    try:
        return json.loads(r.stdout.splitlines()[0])
    except (ValueError, IndexError):
        return {'error': r.stdout + r.stderr, 'cpu_us': 10 ** 12, 'tests': []}


def names(res):
    return sorted(t['name'] for t in res.get('tests', []))


# ---- a minimal milter MTA side (filterd's native engine) ----

def pkt(cmd, data=b''):
    return struct.pack('>I', len(data) + 1) + cmd + data


def parse(data):
    out = []
    while len(data) >= 5:
        n = struct.unpack('>I', data[:4])[0]
        if len(data) < 4 + n:
            break
        out.append((data[4:5], data[5:4 + n]))
        data = data[4 + n:]
    return out


def milter_eom(port, raw):
    """Sends one message; returns (the EOM replies, seconds from EOM to the answer)."""
    hdr, _, body = raw.partition(b'\n\n')
    headers = []
    for line in hdr.split(b'\n'):
        if line[:1] in (b' ', b'\t') and headers:
            headers[-1][1] += b'\r\n' + line
        else:
            n, _, v = line.partition(b':')
            headers.append([n, v.lstrip()])
    s = socket.create_connection(('127.0.0.1', port), timeout=120)
    s.sendall(pkt(b'O', struct.pack('>III', 6, 0x1ff, 0x1fffff)))
    got = b''
    while not parse(got):
        d = s.recv(65536)
        if not d:
            return [], 0.0
        got += d
    seq = [pkt(b'D', b'Cj\0mx.test\0{daemon_name}\0mx.test\0'),
           pkt(b'C', b'client.example\0' + b'4' + struct.pack('>H', 25) + b'198.51.100.7\0'),
           pkt(b'H', b'client.example\0'), pkt(b'M', b'<alice@example.com>\0'), pkt(b'R', b'<bob@example.org>\0')]
    seq += [pkt(b'L', n + b'\0' + v + b'\0') for n, v in headers]
    seq += [pkt(b'N')]
    b = body.replace(b'\n', b'\r\n')
    seq += [pkt(b'B', b[i:i + 65535]) for i in range(0, len(b), 65535)]
    s.sendall(b''.join(seq))
    # the answers before EOM (those the negotiation asks for)
    s.settimeout(1.0)
    try:
        while s.recv(65536):
            pass
    except socket.timeout:
        pass
    s.settimeout(60)
    t0 = time.monotonic()
    s.sendall(pkt(b'E'))
    got = b''
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        got += d
        cmds = [c for c, _ in parse(got)]
        if cmds and cmds[-1] in (b'a', b'c', b't', b'r', b'd', b'y', b'q'):
            break
    el = time.monotonic() - t0
    s.close()
    return parse(got), el


def main():
    root = tempfile.mkdtemp(prefix='sift-spam-dos-')
    os.chmod(root, 0o755)
    procs = []
    try:
        rules = os.path.join(root, 'rules')
        os.makedirs(rules)
        write(rules, 'dos.cf', RULES + tld_lines())
        settings = {'plugin_directory': os.path.join(BUILD, 'plugins'), 'inbound_plugins': 'spam',
                    'spam_rules': rules, 'spam_hyperscan': 'no', 'spam_cache_directory': '',
                    'spam_max_size': '10m'}
        cfg = sifttest.write_conf(os.path.join(root, 'dos.conf'), settings)

        # the evals still answer as before on small messages
        small = write(root, 'small.eml', madiff_msg(['world', 'foo', 'bar']))
        res = score(cfg, small)
        check(names(res) == ['T_MAD'], 'multipart_alternative_difference hits a text/plain unlike its html',
              res)
        res = score(cfg, write(root, 'same.eml', madiff_msg(['hello'])))
        check(names(res) == [], 'multipart_alternative_difference: not a text/plain with the html words', res)
        fm = write(root, 'fm-small.eml', HDR % 'a@gmail.com' + '\nwrite to bob@gmail.com or carol@example.com\n')
        res = score(cfg, fm)
        check('T_FMR' in names(res), "check_freemail_replyto('reply'): a freemail address in the body", res)

        # colliding words: one probe chain for a fixed FNV-1a (about 7 s)
        words = fnv_colliding(60000)
        check(len(set(words)) == 60000, '60000 distinct colliding words', len(set(words)))
        res = score(cfg, write(root, 'collide.eml', madiff_msg(words)))
        check(res['cpu_us'] < 3000000 and 'T_MAD' in names(res),
              'multipart_alternative_difference over 60000 FNV-colliding words: under 3 s of CPU (4.7 s before): %.2f s' % (res['cpu_us'] / 1e6),
              '%s %s' % (res['cpu_us'], names(res)))

        # a freemail From and 20 parts of `a@b.b.b.b.` lines (about 7 s with
        # a flat TLD alternation)
        res = score(cfg, write(root, 'freemail.eml', freemail_msg(20)))
        check(res['cpu_us'] < 3000000, 'FreeMail body parse of 1 MB of a@b.b.b.b.: under 3 s of CPU (5 s before): %.2f s' % (res['cpu_us'] / 1e6),
              res['cpu_us'])

        # the URL= redirector pattern on 500 URIs of /?/?/?...= (about 10 s
        # without JIT and a match limit)
        res = score(cfg, write(root, 'redir.eml', redir_msg(500)))
        check(res['cpu_us'] < 6000000 and 'T_GOV' in names(res),
              'redirector patterns on 500 URIs of 2000 octets: under 6 s of CPU (11 s before): %.2f s' % (res['cpu_us'] / 1e6),
              '%s %s' % (res['cpu_us'], names(res)))

        # the deadline during the evals: 19 nested multipart/alternative
        # around 200000 words take 0.3-1 s of evals, depending on the
        # machine (the scans, with these few rules, a few ms)
        import random
        r = random.Random(1)
        al = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
        many = list({''.join(r.choice(al) for _ in range(8)) for _ in range(200000)})
        nest = madiff_msg(many, depth=19).encode()
        fd = sifttest.start_daemon('filterd', root, dict(settings, filterd_content_deadline='100ms',
                                                         myhostname='mx.sift.test'))
        procs.append(fd)
        replies, el = milter_eom(fd.port, nest)
        last = replies[-1] if replies else (b'', b'')
        check(last[0] == b't' or (last[0] == b'y' and last[1][:1] == b'4'),
              'filterd: evals past the content deadline: tempfail', replies)
        check(el < 6, 'filterd: answered soon after the 100 ms deadline (%.2f s)' % el, el)
        time.sleep(0.2)
        check('scoring ran out of time' in fd.log(), 'filterd logs "scoring ran out of time"', fd.log_tail())

        # the deadline gone before the scoring starts (a plugin before spam
        # spent it): no scoring, a tempfail all the same
        pdir = os.path.join(root, 'plugins-deadline')
        os.mkdir(pdir)
        for so in (os.path.join(BUILD, 'plugins', 'spam.so'), os.path.join(BUILD, 'tests', 'testplug.so')):
            os.symlink(so, os.path.join(pdir, os.path.basename(so)))
        sdir = os.path.join(root, 'stall.d')
        os.mkdir(sdir)
        sifttest.daemon_writable(sdir)
        stall = os.path.join(sdir, 'stall')  # removed by the daemon's user
        fd = sifttest.start_daemon('filterd', root, dict(settings, plugin_directory=pdir,
                                                         inbound_plugins='testplug spam',
                                                         testplug_stall_phase='eom', testplug_stall_file=stall,
                                                         testplug_stall_time='300ms',
                                                         filterd_content_deadline='100ms',
                                                         myhostname='mx.sift.test'), name='filterd-spent')
        procs.append(fd)
        open(stall, 'w').close()
        replies, el = milter_eom(fd.port, open(small).read().encode())
        last = replies[-1] if replies else (b'', b'')
        time.sleep(0.2)
        check('stalled at phase' in fd.log() and (last[0] == b't' or (last[0] == b'y' and last[1][:1] == b'4')),
              'filterd: the content deadline spent before spam: tempfail', (replies, fd.log_tail()))
        check('scoring ran out of time' in fd.log(), 'filterd logs "scoring ran out of time" (deadline spent)',
              fd.log_tail())
    finally:
        sifttest.stop_all(procs)
        if not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(root, ignore_errors=True)
    return done()


if __name__ == '__main__':
    sys.exit(main())
