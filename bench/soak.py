#!/usr/bin/python3
"""soak.py - N messages through the whole chain, every one accounted for.

The private Postfix with filterd and policyd on the shipped configuration and
the demo's local data (tests/lib/chain.py: local DNS with SPF, DKIM and
DMARC records, a DKIM key, ClamAV, the stock SpamAssassin rules, Dovecot
SASL on the submission service), a Bayes database trained before the
first message with 200 spam and 200 ham, the rate limit raised so that
it never defers the soak. Eight senders (--concurrency) share the messages of two streams:

    inbound      smtpd, envelope senders of friend.test (SPF pass); the MX
                 mix of bench/corpus.py (mx_iter: text, HTML, attachments
                 of 90-190 KiB), and in every block of 100 messages:
                   2 GTUBE       refused at end of data, 554 5.7.1
                   2 EICAR       accepted and quarantined (the shipped
                                 clamav_inbound_action), never delivered
                   2 SPF fail    from forger.test, 550 5.7.23 at RCPT
                   1 big         a 1.4-5 MB attachment (corpus.big_attachment)
    originating  20 of every 100: submission with SASL (user bob), From
                 bob@sift.test, signed by the dkim plugin (DKIM-Signature
                 d=sift.test checked on every delivered copy)

Each message carries a unique token (header X-Soak-Token). A 4xx answer or
a broken connection is retried like an MTA queue would (backing off up to
10 s, for up to --retry-for seconds). At the end every token must be
delivered exactly once (a scan of the Maildir) or refused with the reply
its content calls for (the quarantine directory holds each EICAR token, and
`siftctl quarantine list` lists as many items). The daemons'
/status.json (metrics_listen) must agree: filterd's reject, quarantine and
accept counts, policyd's reject count.

Every 10 s (and at start and end) it samples filterd's and policyd's RSS,
open fds, threads and CPU time (utime+stime), prints them, and says whether
RSS, fds and threads stayed within +-10% of their value after warm-up (the
first quarter of the run, at least 30 s). Also: throughput per 10 s window,
every error/warning line of the daemons' logs.

    bench/soak.py [--builddir DIR] --messages N [--concurrency 8] [--seed 1]
                  [--max-seconds S] [--dir DIR | --keep] [--warm]
                  [--spam-cache DIR]

--warm waits, before the first message, until filterd matches with
Hyperscan: a spam_cache_directory without the stock rules' databases (or
one filterd may not trust: owned by another user) is compiled in the
background, minutes during which filterd matches with PCRE2 only, at
another CPU and memory cost; the resource figures of a report run should
not span that change.

--max-seconds (or SIGINT/SIGTERM once) stops taking new messages; those in
flight are finished and the report covers the messages sent.

Exit 0 when nothing is lost, duplicated or answered otherwise than its
content calls for, and the metrics agree; the last line is exactly
`N messages: N delivered, N refused, N lost, N duplicated`. Needs root (a
private Postfix instance). --lose-one / --duplicate-one remove / copy one
delivered file before the count (to see that the accounting notices).
"""

import argparse
import collections
import glob
import json
import os
import queue
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
sys.path.insert(0, os.path.join(SRC, 'bench'))
import chain  # noqa: E402
import corpus  # noqa: E402
import sifttest  # noqa: E402

GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
# assembled at run time: the repository itself holds no test virus
EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-' + 'ANTIVIRUS-TEST-FILE!$H+H*'
# kinds in every block of 100 (the rest: the corpus' mx mix, inbound)
BLOCK = {'out': 20, 'gtube': 2, 'eicar': 2, 'spf': 2, 'big': 1}
EXPECT = {'gtube': 'refused at end of data: 554 5.7.1', 'spf': 'refused at RCPT: 550 5.7.23',
          'eicar': 'quarantined', 'out': 'delivered, DKIM-signed', 'big': 'delivered', 'mx': 'delivered'}
RATE_RULES = '{ name=user key=sasl_username messages=100000000/1h action=defer_if_permit }'
TOKEN_RX = re.compile(rb'^X-Soak-Token: (\S+)', re.M)
SAMPLE = 10.0


def log_form(line):
    """A log line without its time, pid, queue id, addresses and numbers."""
    line = re.sub(r'^(\S+): \w{3} [ \d]\d \d\d:\d\d:\d\d (\w+)\[\d+\]:', r'\1:', line)
    line = re.sub(r'\b[0-9A-F]{6,}\b', '_', line)
    line = re.sub(r'<[^>]*>', '<_>', line)
    return re.sub(r'\d+', '_', line)


SPAM_WORDS = ('viagra cheap pills offer casino winner lottery unsubscribe prize bonus discount '
              'pharmacy replica loan credit guaranteed limited urgent click').split()


def kinds(n, seed):
    rng = random.Random('soak/%d' % seed)
    out = []
    while len(out) < n:
        block = [k for k, c in BLOCK.items() for _ in range(c)]
        block += ['mx'] * (100 - len(block))
        rng.shuffle(block)
        out.extend(block)
    return out[:n]


def with_header(data, token, sender_from=None):
    """The message with X-Soak-Token first and, for the originating stream,
    its From: header replaced."""
    if sender_from:
        data = re.sub(rb'(?m)^From: [^\r\n]*', b'From: ' + sender_from.encode(), data, count=1)
    return b'X-Soak-Token: ' + token.encode() + b'\r\n' + data


def text_message(i, token, subject, body, sender):
    return ('X-Soak-Token: %s\r\nFrom: <%s>\r\nTo: <user%d@%s>\r\nSubject: %s %d\r\n'
            'Date: Wed, 01 Jan 2025 12:00:00 +0000\r\nMessage-ID: <%s@soak.test>\r\nMIME-Version: 1.0\r\n'
            '%s' % (token, sender, i % 10, chain.DEMO_OURS, subject, i, token, body)).encode()


class Item:
    """One message: what it is, how it is sent, what happened."""
    __slots__ = ('i', 'kind', 'token', 'attempts', 'outcome', 'reply', 'done_at', 'tempfails')

    def __init__(self, i, kind, token):
        self.i, self.kind, self.token = i, kind, token
        self.attempts = self.tempfails = 0
        self.outcome = self.reply = self.done_at = None


class Soak:
    def __init__(self, a):
        self.a = a
        self.builddir = os.path.abspath(a.builddir)
        self.run_id = '%x' % (time.time_ns() // 1000000)
        self.items = [Item(i, k, 'soak-%s-%06d' % (self.run_id, i)) for i, k in enumerate(kinds(a.messages, a.seed))]
        self.mx = corpus.mx_iter(a.messages, a.seed)
        self.mx_lock = threading.Lock()
        self.todo = queue.Queue()
        self.samples = []   # (t, {daemon: {rss, fds, threads, cpu}})
        self.stop_sampling = threading.Event()
        self.stop_sending = threading.Event()   # --max-seconds, SIGINT, SIGTERM
        self.chain = None
        self.t0 = None
        self.status0 = {}

    # -- messages -----------------------------------------------------------------

    def message(self, it, m):
        """(port name, auth, envelope sender, recipients, data) of an item;
        m: the corpus message of the same index."""
        i = it.i
        if it.kind == 'out':
            frm = 'bob@' + chain.DEMO_OURS
            return ('submission', ('bob', chain.DEMO_USERS['bob']), frm, ['user%d@example.test' % (i % 10)],
                    with_header(m.data, it.token, 'Bob <%s>' % frm))
        friend = 'sender%d@%s' % (i % 50, chain.DEMO_FRIEND)
        if it.kind == 'mx':
            return 'smtp', None, friend, [m.rcpt], with_header(m.data, it.token)
        if it.kind == 'big':
            b = corpus.big_attachment(i, self.a.seed)
            return 'smtp', None, friend, [b.rcpt], with_header(b.data, it.token)
        if it.kind == 'spf':
            frm = 'mallory%d@%s' % (i % 50, chain.DEMO_FORGER)
            return 'smtp', None, frm, [m.rcpt], with_header(m.data, it.token)
        if it.kind == 'gtube':
            body = 'Content-Type: text/plain\r\n\r\nA test of the spam filter.\r\n\r\n%s\r\n' % GTUBE
            return 'smtp', None, friend, [m.rcpt], text_message(i, it.token, 'Test', body, friend)
        body = ('Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
                'The document you asked for.\r\n\r\n--b1\r\nContent-Type: application/octet-stream; '
                'name="eicar.com"\r\nContent-Disposition: attachment; filename="eicar.com"\r\n\r\n%s\r\n'
                '--b1--\r\n' % EICAR)
        return 'smtp', None, friend, [m.rcpt], text_message(i, it.token, 'Document', body, friend)

    def send(self, it, m):
        """Sends one item until it gets a final answer (or --retry-for passes)."""
        port, auth, frm, rcpts, data = self.message(it, m)
        helo = 'client.' + frm.rsplit('@', 1)[1]
        deadline = time.monotonic() + self.a.retry_for
        delay = 0.5
        while True:
            it.attempts += 1
            r = self.chain.pf.send(frm, rcpts, data, port=self.chain.ports[port], auth=auth, helo=helo,
                                   timeout=300)
            last = r.last()
            if r.accepted:
                it.outcome, it.reply = 'accepted', last
                break
            if r.error is None and last is not None and last[0] >= 500:
                it.outcome, it.reply = 'refused', last
                it.reply = (last[0], last[1], r.rejected_at())
                break
            it.tempfails += 1
            it.reply = last or (0, r.error or '?')
            if time.monotonic() > deadline:
                it.outcome = 'gave-up'
                break
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        it.done_at = time.monotonic()

    def worker(self):
        while not self.stop_sending.is_set():
            with self.mx_lock:   # item i gets the corpus' message i
                try:
                    it = self.todo.get_nowait()
                except queue.Empty:
                    return
                m = next(self.mx)
            try:
                self.send(it, m)
            except Exception as e:   # a sender bug must not hide a message
                it.outcome, it.reply = 'gave-up', (0, 'sender: %r' % e)
                it.done_at = time.monotonic()

    # -- resources ------------------------------------------------------------------

    def sample(self):
        row = {}
        tck = os.sysconf('SC_CLK_TCK')
        for name, p in self.chain.procs.items():
            pid = p.pid
            try:
                with open('/proc/%d/status' % pid) as f:
                    st = dict(line.split(':', 1) for line in f if ':' in line)
                with open('/proc/%d/stat' % pid) as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                row[name] = {'rss': int(st['VmRSS'].split()[0]) * 1024, 'threads': int(st['Threads']),
                             'fds': len(os.listdir('/proc/%d/fd' % pid)),
                             'cpu': (int(fields[11]) + int(fields[12])) / tck}
            except (OSError, KeyError, ValueError, IndexError):
                row[name] = None
        self.samples.append((time.monotonic() - self.t0, row))

    def sampler(self):
        while not self.stop_sampling.wait(SAMPLE):
            self.sample()
            self.print_sample(self.samples[-1])

    def print_sample(self, s):
        t, row = s
        done = sum(1 for it in self.items if it.done_at is not None)
        parts = ['%6.0fs %6d done' % (t, done)]
        for name in ('filterd', 'policyd'):
            v = row.get(name)
            if v:
                parts.append('%s rss %6.1f MB fds %4d thr %3d cpu %7.1fs' % (
                    name, v['rss'] / 1048576, v['fds'], v['threads'], v['cpu']))
        print('  ' + '  '.join(parts), flush=True)

    def flatness(self):
        """({daemon: {what: (median, min, max, drift, flat)}}, warm-up end)
        over the samples after warm-up (the first quarter of the run, at
        least 30 s; the final sample, taken idle, left out): flat when every
        sample is within +-10% of the median. drift: the mean of the last
        half of those samples over the mean of the first half, in %.
        Open fds follow the connections in flight (two per SMTP session:
        Postfix's milter and policy connections), so they are flat when
        they stay within 2 x concurrency + 10% of the median."""
        end = self.samples[-1][0]
        warm = max(30.0, end / 4)
        after = [s for s in self.samples[:-1] if s[0] >= warm] or self.samples[-1:]
        out = {}
        for name in ('filterd', 'policyd'):
            vals = [s[1].get(name) for s in after if s[1].get(name)]
            if not vals:
                continue
            out[name] = {}
            for what in ('rss', 'fds', 'threads'):
                xs = [v[what] for v in vals]
                med = sorted(xs)[len(xs) // 2]
                slack = 0.10 * med + (2 * self.a.concurrency if what == 'fds' else 0)
                h = max(1, len(xs) // 2)
                drift = (sum(xs[-h:]) / h) / (sum(xs[:h]) / h) * 100 - 100
                out[name][what] = (med, min(xs), max(xs), drift, all(abs(x - med) <= slack for x in xs))
        return out, warm

    # -- the chain ------------------------------------------------------------------

    def start(self):
        root = self.a.dir or tempfile.mkdtemp(prefix='sift-soak-')
        if os.path.isdir(root) and self.a.dir:
            shutil.rmtree(root)
        os.makedirs(root, exist_ok=True)
        self.root = root
        for name in ('filterd', 'policyd'):
            if not sifttest.daemon_is_real(os.path.join(self.builddir, name, name)):
                sys.exit('soak: %s is not built in %s' % (name, self.builddir))
        c = self.chain = chain.Chain(root, builddir=self.builddir, srcdir=SRC, ratelimit_rules=RATE_RULES,
                                     spam_cache=self.a.spam_cache)
        c.start()
        f = c.procs['filterd']
        f.wait_log(r'rules: \d+ active', timeout=60)
        self.warm(f)
        self.train(c)
        print('soak: chain in %s; filterd PID %d, policyd PID %d, Postfix smtpd 127.0.0.1:%d, submission %d' % (
            root, c.procs['filterd'].pid, c.procs['policyd'].pid, c.ports['smtp'], c.ports['submission']))
        print('soak: ClamAV %s' % c.clamav_what)
        for d in ('filterd', 'policyd'):
            self.status0[d] = self.status(d)

    def warm(self, f):
        """--warm: no message before the Hyperscan databases are in use (a
        cold spam_cache_directory is compiled in the background while
        filterd matches with PCRE2 only, which a soak would take for a
        change of load half-way)."""
        m = re.search(r'regexes: ([^,\n]*)', f.log())
        print('soak: filterd regexes: %s' % (m.group(1) if m else 'no Hyperscan'), flush=True)
        if not self.a.warm or not m or 'until the Hyperscan databases are ready' not in m.group(1):
            return
        t = time.monotonic()
        if f.wait_log(r'Hyperscan databases compiled .* now in use|matching stays on PCRE2', timeout=1800) is None:
            sys.exit('soak: --warm: the Hyperscan databases were not ready after 30 minutes')
        print('soak: --warm: waited %.0f s for the Hyperscan databases' % (time.monotonic() - t), flush=True)

    def train(self, c):
        """Bayes in use from the first message: the chain's empty LMDB
        database learns 200 ham (the corpus' mix, another seed) and 200
        spam (word salad of spam words) with `siftctl spam learn`, so that
        filterd classifies every message and autolearns (writes) under
        load."""
        dirs = {k: os.path.join(self.root, 'learn-' + k) for k in ('ham', 'spam')}
        for d in dirs.values():
            os.makedirs(d, exist_ok=True)
        for i, m in enumerate(corpus.mx_corpus(200, seed=self.a.seed + 1000)):
            with open(os.path.join(dirs['ham'], '%d.eml' % i), 'wb') as fh:
                fh.write(m.data)
        rng = random.Random('soak/spam/%d' % self.a.seed)
        for i in range(200):
            body = ' '.join(rng.choice(SPAM_WORDS) for _ in range(120))
            with open(os.path.join(dirs['spam'], '%d.eml' % i), 'w') as fh:
                fh.write('From: offers%d@promo%d.example\nTo: user%d@%s\nSubject: %s\n'
                         'Message-ID: <spam%d@promo.example>\nDate: Wed, 01 Jan 2025 12:00:00 +0000\n\n%s\n'
                         % (i, i % 7, i % 10, chain.DEMO_OURS, ' '.join(rng.sample(SPAM_WORDS, 4)), i, body))
        for kind, d in dirs.items():
            r = c.siftctl('spam', 'learn', '--' + kind, d)
            if r.returncode != 0 or 'learned 200' not in r.stdout + r.stderr:
                sys.exit('soak: siftctl spam learn --%s: %s' % (kind, (r.stdout + r.stderr).strip()))
        r = c.siftctl('spam', 'stats')
        print('soak: Bayes (%s): %s' % (c.bayes_dir, ' '.join(r.stdout.split())), flush=True)

    def status(self, d):
        url = 'http://127.0.0.1:%d/status.json' % self.chain.ports[d + '-metrics']
        return json.loads(urllib.request.urlopen(url, timeout=30).read())

    def run(self):
        for it in self.items:
            self.todo.put(it)
        self.t0 = time.monotonic()
        self.sample()
        self.print_sample(self.samples[-1])
        th = threading.Thread(target=self.sampler, daemon=True)
        th.start()
        workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.a.concurrency)]
        for w in workers:
            w.start()
        end = self.t0 + self.a.max_seconds if self.a.max_seconds else None
        while any(w.is_alive() for w in workers):
            if end and time.monotonic() > end and not self.stop_sending.is_set():
                print('soak: --max-seconds %g reached: no new messages, finishing those in flight' %
                      self.a.max_seconds, flush=True)
                self.stop_sending.set()
            workers[0].join(1.0) if workers[0].is_alive() else time.sleep(0.2)
        self.sent_at = time.monotonic()
        taken = [it for it in self.items if it.attempts]
        if len(taken) < len(self.items):
            print('soak: stopped early: %d of %d messages sent' % (len(taken), len(self.items)), flush=True)
            self.items = taken
        self.wait_queue()
        self.stop_sampling.set()
        th.join()
        self.sample()
        self.print_sample(self.samples[-1])

    def wait_queue(self, timeout=600):
        """Until Postfix's queue is empty (every accepted message delivered)."""
        pf = self.chain.pf
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not pf.queue():
                return True
            time.sleep(1)
        print('soak: Postfix queue not empty after %d s: %r' % (timeout, pf.queue()[:10]))
        return False

    def stop(self):
        if self.chain is not None:
            self.chain.stop()
        if not self.a.dir and not self.a.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- the accounting ---------------------------------------------------------------

    def scan(self, directory, head=65536):
        """{token: [paths]} of the files under directory (their first `head`
        bytes), and how many were delivered to the virus alert address
        (alerts quote the message: not deliveries of it)."""
        found = collections.defaultdict(list)
        alerts = 0
        admin = ('Delivered-To: %s' % chain.DEMO_ADMIN).encode()
        for dirpath, _, files in os.walk(directory):
            for n in files:
                path = os.path.join(dirpath, n)
                try:
                    with open(path, 'rb') as f:
                        text = f.read(head)
                except OSError:
                    continue
                if re.search(rb'(?m)^' + re.escape(admin) + rb'\r?$', text):
                    alerts += 1
                    continue
                m = TOKEN_RX.search(text)
                if m:
                    found[m.group(1).decode()].append(path)
        return found, alerts

    def tamper(self, delivered):
        """--lose-one / --duplicate-one: the accounting must notice."""
        paths = sorted(p for ps in delivered.values() for p in ps)
        if self.a.lose_one and paths:
            print('soak: --lose-one: removing %s' % paths[0])
            os.unlink(paths[0])
        if self.a.duplicate_one and len(paths) > 1:
            dst = paths[-1] + '.copy'
            print('soak: --duplicate-one: copying %s' % paths[-1])
            shutil.copyfile(paths[-1], dst)

    def account(self):
        """Returns (counts, problems)."""
        pf = self.chain.pf
        maildir = os.path.join(pf.mail_dir)
        delivered, self.alerts = self.scan(maildir)
        if self.a.lose_one or self.a.duplicate_one:
            self.tamper(delivered)
            delivered, self.alerts = self.scan(maildir)
        quarantined, _ = self.scan(self.chain.quarantine)
        n = collections.Counter()
        problems = []
        for it in self.items:
            copies = len(delivered.get(it.token, ()))
            q = len(quarantined.get(it.token, ()))
            got = self.verdict(it, copies, q)
            if copies > 1 or (it.kind == 'eicar' and q > 1):
                n['duplicated'] += 1
                problems.append((it, 'duplicated: %d copies delivered, %d quarantined' % (copies, q)))
            elif copies == 1:
                n['delivered'] += 1
            elif it.outcome == 'refused' or (it.kind == 'eicar' and q == 1 and it.outcome == 'accepted'):
                n['refused'] += 1
            else:
                n['lost'] += 1
                problems.append((it, 'lost: %s after %d attempts, last reply %r' % (
                    it.outcome, it.attempts, it.reply)))
                continue
            if got is not None:
                n['wrong'] += 1
                problems.append((it, got))
        r = self.chain.siftctl('spam', 'stats')
        self.bayes_end = ' '.join(r.stdout.split()) if r.returncode == 0 else r.stderr.strip()
        qlist = self.chain.siftctl('quarantine', 'list')
        self.qlisted = len([x for x in qlist.stdout.splitlines() if re.match(r'\s*\d{8}-\d{6}-', x)])
        self.qfiles = len(glob.glob(os.path.join(self.chain.quarantine, '*.msg')))
        return n, problems

    def verdict(self, it, copies, q):
        """None when the item's fate is what its content calls for, else why not."""
        want = EXPECT[it.kind]
        if it.kind == 'gtube':
            ok = it.outcome == 'refused' and it.reply[0] == 554 and '5.7.1' in it.reply[1] and it.reply[2] == 'eom'
        elif it.kind == 'spf':
            ok = it.outcome == 'refused' and it.reply[0] == 550 and '5.7.23' in it.reply[1] and \
                it.reply[2] == 'rcpt'
        elif it.kind == 'eicar':
            ok = it.outcome == 'accepted' and copies == 0 and q == 1
        else:
            ok = it.outcome == 'accepted' and copies == 1
            if ok and it.kind == 'out':
                ok = self.signed(it)
        if ok:
            return None
        return 'wanted %s; got %s (reply %r), %d delivered, %d quarantined' % (want, it.outcome, it.reply, copies, q)

    def signed(self, it):
        return it.token in self.signed_tokens

    def check_signed(self):
        """Tokens of delivered copies with a DKIM-Signature of d=sift.test."""
        out = set()
        rx = re.compile(rb'(?mi)^DKIM-Signature:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*')
        for dirpath, _, files in os.walk(self.chain.pf.mail_dir):
            for n in files:
                try:
                    with open(os.path.join(dirpath, n), 'rb') as f:
                        head = f.read(65536)
                except OSError:
                    continue
                t = TOKEN_RX.search(head)
                sig = rx.search(head)
                if t and sig and re.search(rb'\bd=sift\.test;', re.sub(rb'\s+', b'', sig.group(0)) + b';'):
                    out.add(t.group(1).decode())
        self.signed_tokens = out

    # -- the report -------------------------------------------------------------------

    def metrics(self):
        """(lines, ok): what /status.json counted during the run vs what was sent."""
        by = collections.Counter()
        for it in self.items:
            by[(it.kind, it.outcome)] += 1
        end = {d: self.status(d) for d in ('filterd', 'policyd')}

        def delta(d, act):
            return (end[d].get('actions') or {}).get(act, 0) - (self.status0[d].get('actions') or {}).get(act, 0)
        accepted = sum(v for (k, o), v in by.items() if o == 'accepted' and k != 'eicar')
        want = {('filterd', 'reject'): by[('gtube', 'refused')], ('filterd', 'quarantine'): by[('eicar', 'accepted')],
                ('filterd', 'accept'): accepted + self.alerts, ('policyd', 'reject'): by[('spf', 'refused')]}
        lines, ok = [], True
        for (d, act), w in want.items():
            g = delta(d, act)
            lines.append('  %-8s %-11s %7d counted, %7d expected  %s' % (d, act, g, w, 'ok' if g == w else 'DIFFERS'))
            ok = ok and g == w
        for d in ('filterd', 'policyd'):
            acts = {k: v - (self.status0[d].get('actions') or {}).get(k, 0) for k, v in
                    (end[d].get('actions') or {}).items()}
            lines.append('  %s actions during the run: %s' % (d, json.dumps({k: v for k, v in acts.items() if v})))
        return lines, ok

    def log_lines(self):
        out = []
        for name, p in self.chain.procs.items():
            for line in p.log().splitlines():
                if re.search(r'\b(warning|error|fatal|panic):', line):
                    out.append('%s: %s' % (name, line))
        return out

    def report(self):
        a = self.a
        self.check_signed()
        n, problems = self.account()
        dur = self.sent_at - self.t0
        print()
        print('soak: %d messages in %.0f s (%.1f/s), concurrency %d, seed %d' % (
            len(self.items), dur, len(self.items) / max(dur, 0.001), a.concurrency, a.seed))
        kinds_n = collections.Counter(it.kind for it in self.items)
        print('  mix: ' + ', '.join('%s %d' % kv for kv in sorted(kinds_n.items())))
        tf = sum(it.tempfails for it in self.items)
        print('  4xx or broken connections retried: %d (in %d messages)' % (
            tf, sum(1 for it in self.items if it.tempfails)))
        print('  quarantine: %d files, `siftctl quarantine list` %d items; virus alerts delivered: %d' % (
            self.qfiles, self.qlisted, self.alerts))
        print('  Bayes at the end (200 spam, 200 ham learned before the run; more if autolearned): '
              + self.bayes_end)
        self.print_throughput()
        self.print_resources()
        mlines, mok = self.metrics()
        print('metrics (/status.json, during the run):')
        for line in mlines:
            print(line)
        logs = self.log_lines()
        print('daemon log lines with warning/error: %d, by form (queue ids, addresses and numbers as _):' % len(logs))
        for form, k in collections.Counter(log_form(x) for x in logs).most_common(40):
            print('  %6d  %s' % (k, form))
        eicar_n = sum(1 for it in self.items if it.kind == 'eicar')
        qok = self.qfiles == self.qlisted == eicar_n
        if not qok:
            print('soak: quarantine holds %d files, lists %d, %d EICAR sent' % (self.qfiles, self.qlisted, eicar_n))
        for it, why in problems[:50]:
            print('  #%d %s %s: %s' % (it.i, it.kind, it.token, why))
        if n['wrong']:
            print('soak: %d messages answered otherwise than their content calls for' % n['wrong'])
        total = len(self.items)
        print('%d messages: %d delivered, %d refused, %d lost, %d duplicated' % (
            total, n['delivered'], n['refused'], n['lost'], n['duplicated']))
        return 0 if not (n['lost'] or n['duplicated'] or n['wrong'] or not mok or not qok) else 1

    def print_throughput(self):
        win = collections.Counter(int((it.done_at - self.t0) // SAMPLE) for it in self.items if it.done_at)
        print('throughput (messages finished per 10 s window, per second):')
        row = []
        for w in range(0, max(win) + 1 if win else 0):
            row.append('%d' % (win[w] / SAMPLE) if win[w] % SAMPLE == 0 else '%.1f' % (win[w] / SAMPLE))
        for k in range(0, len(row), 15):
            print('  %5ds: %s' % (k * SAMPLE, ' '.join('%5s' % x for x in row[k:k + 15])))

    def print_resources(self):
        first, last = self.samples[0][1], self.samples[-1][1]
        fl, warm = self.flatness()
        print('resources (start -> end, both idle; after warm-up at %.0f s: median, min..max, drift last half '
              'vs first half):' % warm)
        for name in ('filterd', 'policyd'):
            f, l = first.get(name), last.get(name)
            if not f or not l:
                continue
            msgs = len(self.items)
            print('  %s: RSS %.1f -> %.1f MB, fds %d -> %d, threads %d -> %d, CPU %.1f s (%.2f ms/message)' % (
                name, f['rss'] / 1048576, l['rss'] / 1048576, f['fds'], l['fds'], f['threads'], l['threads'],
                l['cpu'] - f['cpu'], (l['cpu'] - f['cpu']) * 1000 / max(msgs, 1)))
            for what, (med, lo, hi, drift, flat) in fl.get(name, {}).items():
                scale = 1048576 if what == 'rss' else 1
                unit = ' MB' if what == 'rss' else ''
                print('    %-7s %8.1f%s, %.1f..%.1f%s, drift %+.1f%%: %s' % (
                    what, med / scale, unit, lo / scale, hi / scale, unit, drift, 'flat' if flat else 'NOT flat'))


def main():
    ap = argparse.ArgumentParser(description='Sift soak: every message accounted for (bench/soak.py)')
    ap.add_argument('--builddir', default=os.environ.get('SIFT_BUILDDIR', os.path.join(SRC, 'build')))
    ap.add_argument('--messages', type=int, default=2000)
    ap.add_argument('--concurrency', type=int, default=8)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--retry-for', type=float, default=600.0, help='seconds a sender retries a 4xx')
    ap.add_argument('--dir', help='run directory (default: a temporary one, removed at the end)')
    ap.add_argument('--keep', action='store_true', help='keep the temporary run directory')
    ap.add_argument('--max-seconds', type=float, default=0,
                    help='stop sending new messages after this long and report on those sent')
    ap.add_argument('--warm', action='store_true',
                    help='send nothing until filterd matches with Hyperscan (after a background compile)')
    ap.add_argument('--spam-cache', help='spam_cache_directory (default: $SIFT_SPAM_CACHE or BUILD/spam-hscache)')
    ap.add_argument('--lose-one', action='store_true', help='remove one delivered file before the count')
    ap.add_argument('--duplicate-one', action='store_true', help='copy one delivered file before the count')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('soak: run as root (it runs a private Postfix instance)')
    s = Soak(a)

    def on_signal(signum, frame):   # stop sending, finish, report
        if s.stop_sending.is_set():
            raise KeyboardInterrupt
        print('soak: signal %d: no new messages, finishing those in flight' % signum, flush=True)
        s.stop_sending.set()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = 1
    try:
        s.start()
        s.run()
        status = s.report()
    finally:
        s.stop()
    return status


if __name__ == '__main__':
    sys.exit(main())
