#!/usr/bin/python3
"""DMARC aggregate reports: rows recorded by the dmarc plugin (filterd's
chain run by `siftctl test`, against records on the local DNS server), then
`siftctl dmarc report`:

  * the file store (dmarc_report_store = file:DIR): the XML printed, written
    gzip-compressed with --dir under receiver!domain!begin!end.xml.gz, every
    report valid against the RFC 7489 Appendix C schema (xmllint --schema),
    identical messages counted in one row, an IPv6 client in full form;
  * a message answered with a temporary failure by a later plugin of the
    chain (the test plugin) adds no row, twice; its accepted attempt one;
  * --send through a fake sendmail (dmarc_report_sendmail) that keeps its
    arguments and input: the 7.2.1.1 message (Subject, the gzip attachment);
    an external rua= domain with its _report._dmarc record is mailed, one
    without it is skipped and named (7.1); the rows are gone afterwards;
  * today (UTC) is not over: --send, and --dir without --keep, of it are
    refused and its rows left alone, later rows joining them; the reports
    are sent of the rows as yesterday's;
  * --send with a sendmail that exits without reading a large report for
    one domain: no death by SIGPIPE, the other domain still mailed, the
    failure named, exit status 1; only the failed domain's rows kept, so
    that the next run does not mail the other domain again;
  * a size limit on a rua= URI (!N, !1m) is on the report mail as sent:
    an address whose limit the mail exceeds is skipped and named;
  * a percent-encoded rua= address (dmarc%2Breports@...) is mailed
    decoded; one that decodes to a control character is not;
  * a sendmail that neither reads nor exits is killed after
    dmarc_report_sendmail_timeout, named, the rows kept;
  * a day's file of rows over 128 MiB, or endless (/dev/zero): refused
    with its name and the limit, left alone, the other days reported;
  * a record changed during the day: policy_published and the rua= of
    the newer one, the rows of both;
  * the state store on a real redis-server (state_store = redis:...): the
    same rows through the core's key-value store, deleted after --dir;
  * the state store in memory (state_store = memory:): test_dmarcreport,
    which records and reports in one process.

Run with SIFT_SRCDIR / SIFT_BUILDDIR set (meson test does); the path of
test_dmarcreport is the first argument.
"""

import base64
import email
import glob
import gzip
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'ratelimit', 'tests'))
import dnsserver  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check, check_eq  # noqa: E402
from redisproc import Redis  # noqa: E402

SIFTCTL = sifttest.program('siftctl')
XSD = os.path.join(HERE, 'dmarc-rua.xsd')
SOA = {"name": ".", "type": "SOA", "data": "ns.root.test. hostmaster.root.test. 1 3600 600 86400 60"}
TODAY = time.strftime('%Y-%m-%d', time.gmtime())
YESTERDAY = time.strftime('%Y-%m-%d', time.gmtime(time.time() - 86400))


def txt(name, data):
    return {"name": name, "type": "TXT", "data": data}


ZONE = {".": [SOA,
              txt('reject.test', 'v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all'),
              txt('_dmarc.reject.test', 'v=DMARC1; p=reject; rua=mailto:dmarc@reject.test'),
              txt('ext.test', 'v=spf1 ip4:192.0.2.0/24 -all'),
              txt('_dmarc.ext.test', 'v=DMARC1; p=none; adkim=s; rua=mailto:agg@reports.test,mailto:x@bad.test'),
              txt('ext.test._report._dmarc.reports.test', 'v=DMARC1'),
              txt('_dmarc.norua.test', 'v=DMARC1; p=reject'),
              txt('other.test', 'v=spf1 ip4:192.0.2.0/24 -all')]}


def message(frm, n):
    return ('From: <%s>\r\nTo: <bob@sift.test>\r\nSubject: report %d\r\n'
            'Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%d@client.test>\r\n\r\nHi.\r\n'
            % (frm, n, n)).encode()


def record_mail(conf, opts=()):
    """Six messages: reject.test aligned twice from one client (one row,
    count 2), from an IPv6 client, unaligned; ext.test; norua.test (no rua=:
    not recorded)."""
    sends = [('192.0.2.10', 'bounce@reject.test', 'alice@reject.test'),
             ('192.0.2.10', 'bounce@reject.test', 'alice@reject.test'),
             ('2001:db8::5', 'bounce@reject.test', 'alice@reject.test'),
             ('192.0.2.11', 'bounce@other.test', 'alice@reject.test'),
             ('192.0.2.12', 'bounce@ext.test', 'carol@ext.test'),
             ('192.0.2.13', 'bounce@other.test', 'dave@norua.test')]
    for i, (ip, sender, frm) in enumerate(sends):
        r = sifttest.siftctl_test(conf, message(frm, i), ['--client', ip, '--helo', 'client.test', '--from', sender,
                                                         '--to', 'bob@sift.test'], opts=opts)
        check(r.get('action') in ('accept', 'reject'), 'message %d through the chain' % i, r)


def report(conf, *args, opts=()):
    argv = [SIFTCTL, '-c', conf]
    for o in opts:
        argv += ['-o', o]
    r = subprocess.run(argv + ['dmarc', 'report'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def valid(xml, d, what):
    path = os.path.join(d, 'check.xml')
    with open(path, 'wb') as f:
        f.write(xml if isinstance(xml, bytes) else xml.encode())
    r = subprocess.run(['xmllint', '--noout', '--schema', XSD, path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    check(r.returncode == 0, what + ': valid against the RFC 7489 schema', r.stdout.decode() + '\n' + str(xml)[:600])


def docs(out):
    return ['<?xml' + x for x in out.split('<?xml')[1:]]


def check_reject_report(xml, what):
    check('<domain>reject.test</domain>' in xml and '<p>reject</p>' in xml, what + ': policy_published', xml)
    rows = re.findall(r'<record>.*?</record>', xml, re.S)
    check_eq(len(rows), 3, what + ': three rows (two identical messages counted together)')
    two = [r for r in rows if '<count>2</count>' in r]
    check(len(two) == 1 and '<source_ip>192.0.2.10</source_ip>' in two[0] and '<dkim>fail</dkim>' in two[0]
          and '<spf>pass</spf>' in two[0] and '<disposition>none</disposition>' in two[0],
          what + ': aligned SPF row, count 2', two)
    check(any('<source_ip>2001:db8:0:0:0:0:0:5</source_ip>' in r for r in rows), what + ': IPv6 in full form', rows)
    bad = [r for r in rows if '192.0.2.11' in r]
    check(bad and '<disposition>reject</disposition>' in bad[0] and '<envelope_from>other.test</envelope_from>'
          in bad[0] and '<scope>mfrom</scope>' in bad[0], what + ': the unaligned row, rejected', bad)


def file_store(env, conf):
    store = os.path.join(env, 'rows')
    opts = ['dmarc_report_store=file:' + store]
    record_mail(conf, opts)
    check(os.path.exists(os.path.join(store, TODAY + '.rows')), 'file store: the day file')
    # printed, rows kept
    rc, out, err = report(conf, '--date', TODAY, opts=opts)
    xmls = docs(out)
    check(rc == 0 and len(xmls) == 2, 'report printed: two reports (reject.test, ext.test; norua.test none)',
          out + err)
    for x in xmls:
        valid(x, env, 'printed report')
    check_reject_report(next((x for x in xmls if 'reject.test</domain>' in x), ''), 'file store')
    # no day before today has rows: a plain run reports nothing
    rc, out, err = report(conf, opts=opts)
    check(rc == 0 and out == '', 'without --date: only complete days (none yet)', out + err)
    # --dir --keep: the files, rows kept
    outdir = os.path.join(env, 'out')
    os.mkdir(outdir)
    rc, out, err = report(conf, '--date', TODAY, '--dir', outdir, '--keep', opts=opts)
    files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(outdir, '*.xml.gz')))
    begin = int(time.time()) // 86400 * 86400
    want = ['mx.sift.test!%s!%d!%d.xml.gz' % (d, begin, begin + 86399) for d in ('ext.test', 'reject.test')]
    check(rc == 0 and files == want, 'report --dir: one file per domain, named as RFC 7489 7.2.1.1', (files, out, err))
    for f in files:
        with gzip.open(os.path.join(outdir, f)) as g:
            valid(g.read(), env, 'gzip report ' + f)
    check(os.path.exists(os.path.join(store, TODAY + '.rows')), '--keep: rows kept')
    today_not_over(env, conf, opts, store, outdir)
    # the rows as yesterday's: a complete day, sent by a plain --send
    os.rename(os.path.join(store, TODAY + '.rows'), os.path.join(store, YESTERDAY + '.rows'))
    send(env, conf, opts)
    check(not os.path.exists(os.path.join(store, YESTERDAY + '.rows')), '--send: the rows deleted afterwards')
    rc, out, err = report(conf, '--date', YESTERDAY, opts=opts)
    check(rc == 0 and out == '', 'after --send: nothing left to report', out + err)


def today_not_over(env, conf, opts, store, outdir):
    """--send, or --dir without --keep, of today: refused, named, the rows
    left alone; a message recorded afterwards joins them."""
    path = os.path.join(store, TODAY + '.rows')

    def text():
        try:
            with open(path, 'rb') as f:
                return f.read()
        except FileNotFoundError:
            return b''

    before = text()
    sm, sent = fake_sendmail(env, 'sent-today')
    for args in (['--send'], ['--dir', outdir], ['--send', '--keep']):
        rc, out, err = report(conf, '--date', TODAY, *args, opts=opts + ['dmarc_report_sendmail=' + sm])
        check(rc == 2 and TODAY in err and 'not over' in err and out == '',
              'report --date TODAY %s: refused with exit status 2, the reason named' % ' '.join(args), (rc, out, err))
    check(os.listdir(sent) == [], 'nothing mailed for today', os.listdir(sent))
    check(text() == before, 'today\'s rows untouched')
    record_mail(conf, opts)
    after = text()
    check(before and after.startswith(before) and after.count(b'\n') == 2 * before.count(b'\n'),
          'rows recorded afterwards added to the earlier ones, none lost', (len(before), len(after)))
    # back to the first six messages for the reports below
    with open(path, 'wb') as f:
        f.write(before)


def fake_sendmail(env, name='sent'):
    sent = os.path.join(env, name)
    os.mkdir(sent)
    path = os.path.join(env, 'sendmail')
    with open(path, 'w') as f:
        f.write('#!/bin/sh\nprintf "%%s\\n" "$@" > %s/$$.args\ncat > %s/$$.msg\n' % (sent, sent))
    os.chmod(path, 0o755)
    return path, sent


def send(env, conf, opts):
    path, sent = fake_sendmail(env)
    rc, out, err = report(conf, '--send', opts=opts + ['dmarc_report_sendmail=' + path])
    check(rc == 0, 'report --send (yesterday\'s rows): exit 0', out + err)
    check('bad.test' in err and '7.1' in err and 'ext.test._report._dmarc.bad.test' in err,
          'an external rua= without its _report._dmarc record: skipped and named', err)
    msgs = {}
    for a in glob.glob(os.path.join(sent, '*.args')):
        with open(a) as f:
            args = f.read().split('\n')[:-1]
        with open(a[:-5] + '.msg', 'rb') as f:
            msgs[args[-1]] = (args, email.message_from_bytes(f.read()))
    check_eq(sorted(msgs), ['agg@reports.test', 'dmarc@reject.test'], 'mailed to the verified rua= addresses')
    args, m = msgs.get('dmarc@reject.test', ([], email.message_from_string('')))
    check(args[:4] == ['-i', '-f', 'postmaster@mx.sift.test', '--'], 'sendmail -i -f REPORT_EMAIL --', args)
    subj = ' '.join((m['Subject'] or '').split())
    check(re.fullmatch(r'Report Domain: reject\.test Submitter: mx\.sift\.test Report-ID: <\d+\.reject\.test>', subj),
          'Subject as RFC 7489 7.2.1.1', subj)
    parts = [p for p in m.walk() if p.get_content_type() == 'application/gzip']
    check(len(parts) == 1 and parts[0].get_filename().startswith('mx.sift.test!reject.test!'),
          'one application/gzip attachment with the report file name', m.as_string()[:800])
    if parts:
        xml = gzip.decompress(base64.b64decode(parts[0].get_payload()))
        valid(xml, env, 'mailed report')
        check_reject_report(xml.decode(), 'mailed report')


def big_rows(path, domains, n=4000):
    """n distinct rows per domain (random clients and DKIM domains): a
    report of each well over the 64 KiB of a pipe."""
    rnd = random.Random(1)
    with open(path, 'w') as f:
        for dom in domains:
            for _ in range(n):
                ip = '10.%d.%d.%d' % (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
                dkim = ''.join(rnd.choice('abcdefghijklmnopqrstuvwxyz0123456789') for _ in range(40)) + '.test:pass'
                f.write('\t'.join(['1', dom, 'r', 'r', 'reject', 'reject', '100', '0', 'mailto:dmarc@' + dom, ip,
                                   'none', 'pass', 'fail', '', dom, dom, dom, 'mfrom', 'pass', dkim]) + '\n')


def bounded_report(conf, *args, opts=(), limit_s=60, rss_kb=1_000_000):
    """report(), but siftctl is stopped (and the output says so) when it runs
    longer than limit_s or holds more than rss_kb of memory."""
    argv = [SIFTCTL, '-c', conf]
    for o in opts:
        argv += ['-o', o]
    return sifttest.bounded_run(argv + ['dmarc', 'report'] + list(args), limit_s, rss_kb)


def oversized(env, conf):
    """A day's file of rows over 128 MiB, or endless (/dev/zero), is refused
    with its name and the limit and left as it is; the other days are still
    reported."""
    store = os.path.join(env, 'rows-big')
    os.mkdir(store)
    endless, big, small = (os.path.join(store, d + '.rows') for d in ('2024-04-01', '2024-04-02', '2024-04-03'))
    os.symlink('/dev/zero', endless)
    with open(big, 'wb') as f:  # sparse
        f.truncate((128 << 20) + 1)
    big_rows(small, ('a.example',), n=3)
    outdir = os.path.join(env, 'out-big')
    os.mkdir(outdir)
    opts = ['dmarc_report_store=file:' + store]
    too_big = 'larger than 128 MiB, the largest file of rows siftctl reads; not read, left as it is'
    rc, out, err = bounded_report(conf, '--date', '2024-04-01', opts=opts)
    check(rc == 1 and 'siftctl dmarc report: %s: %s' % (endless, too_big) in err and out == '',
          'a day file of endless input (/dev/zero): refused at the limit, named', (rc, out, err))
    rc, out, err = bounded_report(conf, '--dir', outdir, opts=opts)
    check(rc == 1 and 'siftctl dmarc report: %s: %s' % (endless, too_big) in err
          and 'siftctl dmarc report: %s: %s' % (big, too_big) in err,
          'day files of endless input and over 128 MiB: refused, named, exit status 1', (rc, out, err))
    files = glob.glob(os.path.join(outdir, '*!a.example!*.xml.gz'))
    check(len(files) == 1 and not os.path.exists(small), 'the other day still reported (--dir), its rows deleted',
          (files, err))
    check(os.path.islink(endless) and os.path.getsize(big) == (128 << 20) + 1, 'the refused day files left alone')


def send_failure(env, conf):
    store = os.path.join(env, 'rows-fail')
    os.mkdir(store)
    day = '2024-03-05'
    rows = os.path.join(store, day + '.rows')
    big_rows(rows, ('a.example', 'b.example'))
    sent = os.path.join(env, 'sent-fail')
    os.mkdir(sent)
    path = os.path.join(env, 'sendmail-refusing')
    with open(path, 'w') as f:
        f.write('#!/bin/sh\nfor a; do last=$a; done\n'
                'case "$last" in *@a.example) [ -e %s/accept ] || { echo "sendmail: refusing $last" >&2; exit 75; };;'
                ' esac\ncat > %s/$$.msg; echo "$last" >> %s/to\n' % (sent, sent, sent))
    os.chmod(path, 0o755)
    opts = ['dmarc_report_store=file:' + store, 'dmarc_report_sendmail=' + path]

    def mailed():
        try:
            with open(os.path.join(sent, 'to')) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def domains_left():
        if not os.path.exists(rows):
            return []
        with open(rows) as f:
            return sorted(set(line.split('\t')[1] for line in f))

    rc, out, err = report(conf, '--date', day, '--send', opts=opts)
    check_eq(rc, 1, 'sendmail exiting without reading a big report: exit status 1, not death by SIGPIPE')
    check_eq(mailed(), ['dmarc@b.example'], 'the other domain (sorted after the failed one) still mailed')
    check('sent mx.sift.test!b.example!' in out and 'to dmarc@b.example' in out, 'its sending printed', out + err)
    check('a.example' in err and 'dmarc@a.example' in err and 'exit status 75' in err,
          'the failed domain, address and sendmail status named', err)
    check_eq(domains_left(), ['a.example'], 'only the failed domain\'s rows kept')
    with open(rows) as f:
        check_eq(sum(1 for _ in f), 4000, 'every row of the failed domain kept')
    rc, out, err = report(conf, '--date', day, '--send', opts=opts)
    check(rc == 1 and mailed() == ['dmarc@b.example'], 'a second run: the sent domain not mailed again',
          (rc, mailed(), out, err))
    open(os.path.join(sent, 'accept'), 'w').close()
    rc, out, err = report(conf, '--send', opts=opts)
    check(rc == 0 and mailed() == ['dmarc@b.example', 'dmarc@a.example'],
          'sendmail accepting again: the failed domain mailed by the next run', (rc, mailed(), out, err))
    check(not os.path.exists(rows), 'then the day\'s rows deleted')
    msgs = glob.glob(os.path.join(sent, '*.msg'))
    check(len(msgs) == 2 and all(os.path.getsize(m) > 65536 for m in msgs), 'the reports over 64 KiB',
          [os.path.getsize(m) for m in msgs])


def size_limit(env, conf):
    """A size limit on a rua= URI (RFC 7489 6.2) is on the report mail as
    sent: base64 of the compressed report, its line ends and the header.
    A limit the compressed size times 4/3 plus 2 KiB fits, but the mail
    does not, is not mailed to; one the mail fits (in MiB) is."""
    store = os.path.join(env, 'rows-limit')
    os.mkdir(store)
    day = '2024-03-06'
    rows = os.path.join(store, day + '.rows')
    big_rows(rows, ('a.example',), n=3000)
    outdir = os.path.join(env, 'out-limit')
    os.mkdir(outdir)
    opts = ['dmarc_report_store=file:' + store]
    rc, out, err = report(conf, '--date', day, '--dir', outdir, '--keep', opts=opts)
    gz = sum(os.path.getsize(f) for f in glob.glob(os.path.join(outdir, '*.xml.gz')))
    check(rc == 0 and gz > 65536, 'size limit: the report written, over 64 KiB compressed', (rc, gz, out, err))
    tight = gz * 4 // 3 + 2048 + 16
    with open(rows) as f:
        text = f.read()
    with open(rows, 'w') as f:
        f.write(text.replace('mailto:dmarc@a.example',
                             'mailto:small@a.example!%d,mailto:big@a.example!1m' % tight))
    sm, sent = fake_sendmail(env, 'sent-limit')
    rc, out, err = report(conf, '--date', day, '--send', opts=opts + ['dmarc_report_sendmail=' + sm])
    mailed = {}
    for a in glob.glob(os.path.join(sent, '*.args')):
        with open(a) as f:
            to = f.read().split('\n')[-2]
        with open(a[:-5] + '.msg', 'rb') as f:
            data = f.read()
        mailed[to] = len(data) + data.count(b'\n')  # as sent: CRLF line ends
    check_eq(sorted(mailed), ['big@a.example'], 'size limit: mailed only where the report mail fits')
    check(all(size <= 1 << 20 for size in mailed.values()), 'size limit: the mail within 1m', mailed)
    check(rc == 0 and 'small@a.example' in err and 'size limit' in err and str(tight) in err,
          'size limit: the address whose limit the mail exceeds named, with the limit', (rc, err))


def encoded_uri(env, conf):
    """rua= URIs are URIs: a mailto: address with percent-encoded octets
    (RFC 7489 6.2: ',' and '!' must be; RFC 6068) is mailed decoded. An
    encoding that decodes to a control character or a space is not
    mailed."""
    store = os.path.join(env, 'rows-enc')
    os.mkdir(store)
    day = '2024-03-07'
    with open(os.path.join(store, day + '.rows'), 'w') as f:
        f.write('\t'.join(['1', 'a.example', 'r', 'r', 'reject', 'reject', '100', '0',
                           'mailto:dmarc%2Breports@a.example!1m,mailto:Agg%2bX%21Y@A.example,'
                           'mailto:bad%0Aline@a.example,mailto:bad%2@a.example',
                           '192.0.2.1', 'none', 'pass', 'fail', '', 'a.example', 'a.example', 'a.example', 'mfrom',
                           'pass', 'a.example:pass']) + '\n')
    sm, sent = fake_sendmail(env, 'sent-enc')
    rc, out, err = report(conf, '--date', day, '--send',
                          opts=['dmarc_report_store=file:' + store, 'dmarc_report_sendmail=' + sm])
    to = {}
    for a in glob.glob(os.path.join(sent, '*.args')):
        with open(a) as f:
            args = f.read().split('\n')[:-1]
        with open(a[:-5] + '.msg', 'rb') as f:
            to[args[-1]] = email.message_from_bytes(f.read())['To']
    check_eq(sorted(to), ['Agg+X!Y@A.example', 'dmarc+reports@a.example'],
             'percent-encoded rua= addresses mailed decoded')
    check(all(k == v for k, v in to.items()), 'the To: header is the decoded address', to)
    check('bad%0Aline@a.example' in err and 'bad%2@a.example' in err,
          'an address that does not decode to one is named, not mailed', (rc, err))


def sendmail_hangs(env, conf):
    """A sendmail that neither reads nor exits: killed (by its pid) after
    dmarc_report_sendmail_timeout, whether siftctl waits to write the
    report (over 64 KiB, more than the pipe holds) or for its exit (a
    small one); both named, exit status 1, the rows kept."""
    store = os.path.join(env, 'rows-hang')
    os.mkdir(store)
    day = '2024-03-08'
    rows = os.path.join(store, day + '.rows')
    big_rows(rows, ('a.example',), n=4000)
    with open(rows) as f:
        text = f.read()
    with open(rows, 'a') as f:
        f.write(''.join(line.replace('a.example', 'b.example') + '\n' for line in text.split('\n')[:3]))
    sm = os.path.join(env, 'sendmail-hangs')
    with open(sm, 'w') as f:
        f.write('#!/bin/sh\necho $$ >> %s.pids\nexec sleep 30\n' % sm)
    os.chmod(sm, 0o755)
    start = time.monotonic()
    rc, out, err = report(conf, '--date', day, '--send', opts=['dmarc_report_store=file:' + store,
                                                               'dmarc_report_sendmail=' + sm,
                                                               'dmarc_report_sendmail_timeout=2s'])
    took = time.monotonic() - start
    check(rc == 1 and took < 20, 'a hanging sendmail: siftctl ends, exit status 1', (rc, took, out, err))
    for addr in ('dmarc@a.example', 'dmarc@b.example'):
        check(re.search(r'%s: .*still running after 2s, killed' % re.escape(addr), err) is not None,
              'a hanging sendmail for %s: named, killed' % addr, err)
    with open(rows) as f:
        check_eq(sum(1 for _ in f), 4003, 'a hanging sendmail: every row kept for the next run')
    with open(sm + '.pids') as f:
        pids = [int(x) for x in f.read().split()]
    check(len(pids) == 2 and not any(os.path.exists('/proc/%d' % pid) for pid in pids),
          'both sendmails ended, none left running', pids)


def record_changed(env, conf):
    """A domain that changed its record during the day (p=none with one
    rua= in the morning, p=reject with another later): the report gives
    the newer record as policy_published and goes to its rua=, with the
    rows of both."""
    store = os.path.join(env, 'rows-changed')
    os.mkdir(store)
    day = '2024-03-09'

    def row(p, rua, ip):
        return '\t'.join(['1', 'a.example', 'r', 'r', p, p, '100', '0', rua, ip, 'none', 'pass', 'fail', '',
                          'a.example', 'a.example', 'a.example', 'mfrom', 'pass', '']) + '\n'
    with open(os.path.join(store, day + '.rows'), 'w') as f:
        f.write(row('none', 'mailto:old@a.example', '192.0.2.1') + row('none', 'mailto:old@a.example', '192.0.2.1')
                + row('reject', 'mailto:new@a.example', '192.0.2.2') + row('none', 'mailto:old@a.example', '192.0.2.3')
                + row('reject', 'mailto:new@a.example', '192.0.2.4'))
    opts = ['dmarc_report_store=file:' + store]
    rc, out, err = report(conf, '--date', day, opts=opts)
    check(rc == 0 and '<p>reject</p>' in out and '<p>none</p>' not in out,
          'a changed record: policy_published is the newer one', out + err)
    check_eq(sorted(re.findall(r'<count>(\d+)</count>', out)), ['1', '1', '1', '2'],
             'a changed record: the rows of both records counted')
    sm, sent = fake_sendmail(env, 'sent-changed')
    rc, out, err = report(conf, '--date', day, '--send', opts=opts + ['dmarc_report_sendmail=' + sm])
    to = []
    for a in glob.glob(os.path.join(sent, '*.args')):
        with open(a) as f:
            to.append(f.read().split('\n')[-2])
    check(rc == 0 and to == ['new@a.example'], 'a changed record: mailed to the newer rua=', (rc, to, err))


def redis_store(env, conf):
    red = Redis(env, name='redis').start()
    try:
        opts = ['dmarc_report_store=state', 'state_store=redis:127.0.0.1:%d' % red.port]
        record_mail(conf, opts)
        outdir = os.path.join(env, 'out-redis')
        os.mkdir(outdir)
        rc, out, err = report(conf, '--date', TODAY, '--dir', outdir, opts=opts)
        check(rc == 2 and 'not over' in err and os.listdir(outdir) == [] and red.cli('EXISTS', 'sift:dmarc:n:' + TODAY)
              == '1', 'redis store: --dir of today refused, its rows kept', (rc, out, err))
        # the rows as yesterday's: a complete day (the core's keys are
        # sift:KEY)
        for k in red.cli('--scan', '--pattern', 'sift:dmarc:*:%s*' % TODAY).split():
            red.cli('RENAME', k, k.replace(TODAY, YESTERDAY))
        rc, out, err = report(conf, '--date', YESTERDAY, '--dir', outdir, opts=opts)
        files = sorted(glob.glob(os.path.join(outdir, '*reject.test*.xml.gz')))
        check(rc == 0 and len(files) == 1, 'redis store: report written', out + err)
        for f in files:
            with gzip.open(f) as g:
                xml = g.read()
            valid(xml, env, 'redis store report')
            check_reject_report(xml.decode(), 'redis store')
        keys = red.cli('--scan', '--pattern', 'sift:dmarc:*').split()
        check(keys == [], 'redis store: keys deleted after the report', keys)
    finally:
        red.stop()


def memory_store(env, unit):
    out = subprocess.run([unit, os.path.join(env, 'mem')], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=60)
    text = out.stdout.decode()
    check(out.returncode == 0, 'memory store: test_dmarcreport', out.stderr.decode())
    for x in docs(text):
        valid(x, env, 'memory store report')
    check(len(docs(text)) == 2, 'memory store: two reports', text)


def tempfail_not_recorded(env, conf):
    """A message answered with a temporary failure by a later plugin of
    the chain (the test plugin, at end of message) is not recorded: the
    sender tries again, and the row is written for the try that gets a
    final answer, once."""
    pdir = os.path.join(env, 'plugins-tempfail')
    os.mkdir(pdir)
    for so in ('spf.so', 'dkim.so', 'dmarc.so'):
        os.symlink(os.path.join(sifttest.plugin_directory(), so), os.path.join(pdir, so))
    os.symlink(os.path.join(sifttest.builddir(), 'tests', 'testplug.so'), os.path.join(pdir, 'testplug.so'))
    store = os.path.join(env, 'rows-tempfail')
    opts = ['dmarc_report_store=file:' + store, 'plugin_directory=' + pdir,
            'inbound_plugins=spf dkim dmarc testplug']
    args = ['--client', '192.0.2.20', '--helo', 'client.test', '--from', 'bounce@reject.test',
            '--to', 'bob@sift.test']
    for attempt in range(2):
        r = sifttest.siftctl_test(conf, message('alice@reject.test', 50), args,
                                  opts=opts + ['testplug_verdict=tempfail'])
        check_eq(r.get('action'), 'tempfail', 'tempfail at end of message, attempt %d' % (attempt + 1))
    rows = os.path.join(store, TODAY + '.rows')
    check(not os.path.exists(rows) or os.path.getsize(rows) == 0,
          'a message answered with a temporary failure: no report row',
          open(rows).read() if os.path.exists(rows) else '')
    r = sifttest.siftctl_test(conf, message('alice@reject.test', 50), args, opts=opts + ['testplug_verdict=dunno'])
    check_eq(r.get('action'), 'accept', 'the same message accepted at the next attempt')
    rc, out, err = report(conf, '--date', TODAY, opts=opts)
    xmls = docs(out)
    rec = [x for x in re.findall(r'<record>.*?</record>', ''.join(xmls), re.S) if '192.0.2.20' in x]
    check(rc == 0 and len(rec) == 1 and '<count>1</count>' in rec[0],
          'the accepted attempt recorded once (count 1), the two deferred ones not', out + err)


def main():
    env = tempfile.mkdtemp(prefix='sift-dmarc-rep-')
    os.chmod(env, 0o755)
    srv = dnsserver.DNSServer(ZONE)
    srv.start()
    conf = sifttest.write_conf(os.path.join(env, 'filterd.conf'), {
        'plugin_directory': sifttest.plugin_directory(), 'inbound_plugins': 'spf dkim dmarc',
        'originating_plugins': '', 'dns_servers': '127.0.0.1:%d' % srv.port, 'dns_timeout': '1s',
        'myhostname': 'mx.sift.test', 'authserv_id': 'mx.sift.test', 'spf_filterd_mode': 'check',
        'dkim_sign': 'no', 'tmpdir': env})
    try:
        file_store(env, conf)
        tempfail_not_recorded(env, conf)
        oversized(env, conf)
        send_failure(env, conf)
        size_limit(env, conf)
        encoded_uri(env, conf)
        sendmail_hangs(env, conf)
        record_changed(env, conf)
        redis_store(env, conf)
        if len(sys.argv) > 1:
            memory_store(env, sys.argv[1])
    finally:
        srv.stop()
        if sifttest.checks.failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(env, ignore_errors=True)
        else:
            print('kept', env)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
