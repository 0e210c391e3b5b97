#!/usr/bin/python3
"""clamav plugin: scans that did not look at the whole message never pass
as clean (`siftctl test`; library mode with the test's own database, clamd
mode against cvlib.FakeClamd, a clamd stand-in that gives the answers a
real clamd gives only under conditions a test cannot easily make).

- a scan that runs out of time: library mode with clamav_max_scantime = 1ms
  on a zip of many files with EICAR last (with clamav_alert_exceeds_max yes
  and no), clamd answering Heuristics.Limits.Exceeded.MaxScanTime: the
  fail action (tempfail, or the failed header), never the limit action;
  the other limits keep clamav_limit_action (or clean with
  alert_exceeds_max = no).
- clamd answering "OK" before it had the whole message (the send failed):
  the next server, else the fail action; its size limit error and a virus
  found in the part it read stand.
- clamd answering FOUND without a name: the next server, else the fail
  action; never "virus found ()".
- an X-Virus-Scanned (clamav_header_name) already in the message is
  removed, whatever the result that adds ours: only ours is left.
- a unix socket whose listen backlog is full (connect() gets EAGAIN):
  tried again until the connect timeout, scanned once the server has room.
- a clamd that accepts and then hangs: the next server still gets its
  share of clamav_clamd_timeout and scans the message; "trying the next
  server" is logged only when one is tried.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cvlib  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check  # noqa: E402


class Ctl:
    def __init__(self, root, conf):
        self.root = root
        self.conf = conf
        self.siftctl = os.path.join(sifttest.builddir(), 'tools', 'siftctl')

    def test(self, data, opts=()):
        path = os.path.join(self.root, 'msg.eml')
        with open(path, 'wb') as f:
            f.write(data)
        argv = [self.siftctl, '-d', '-c', self.conf]
        for o in opts:
            argv += ['-o', o]
        argv += ['test', '--from', 'sender@example.test', '--to', 'user@sift.test', path]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        out = {'raw': r.stdout + r.stderr, 'rc': r.returncode, 'headers': []}
        for line in r.stdout.splitlines():
            k, _, v = line.partition(': ')
            out.setdefault(k, v)
            if k.startswith('header add'):
                out['headers'].append(v)
        return out


def edited_header(data, raw):
    """The message's header fields after the edits `siftctl test` printed
    ("header delete #N: Name: ", "header add: Name: value"), applied as the
    MTA does: N counts the fields of that name from 1, in the message."""
    head = data.split(b'\r\n\r\n', 1)[0].decode()
    fields = [tuple(x.strip() for x in ln.split(':', 1)) for ln in head.split('\r\n')]
    gone = set()
    for m in re.finditer(r'(?m)^header delete #(\d+): ([^:]+): ', raw):
        same = [i for i, (n, _) in enumerate(fields) if n.lower() == m.group(2).lower()]
        if int(m.group(1)) <= len(same):
            gone.add(same[int(m.group(1)) - 1])
    out = [f for i, f in enumerate(fields) if i not in gone]
    out += [tuple(x.strip() for x in m.group(1).split(':', 1))
            for m in re.finditer(r'(?m)^header add: (.*)$', raw)]
    return out


def failed_scan(r, fail_accept=False):
    """The fail action, nothing of the clean or limit results."""
    if fail_accept:
        ok = r.get('action') == 'accept' and r['headers'] == ['X-Virus-Scanned: failed']
    else:
        ok = (r.get('action') == 'tempfail' and r.get('reply', '').startswith('451 4.7.1') and
              not r['headers'])
    return ok and 'scan failed (' in r['raw'] and 'not fully scanned' not in r['raw']


def clamd(srv, *more):
    return ('clamav_mode=clamd', 'clamav_clamd_servers=' + srv) + more


def main():
    root = tempfile.mkdtemp(prefix='sift-clamav-fail-')
    os.chmod(root, 0o755)
    dbdir = os.path.join(root, 'db')
    cvlib.make_db(dbdir)
    conf = os.path.join(root, 'filterd.conf')
    with open(conf, 'w') as f:
        f.write('\n'.join([
            'plugin_directory = %s' % os.path.join(sifttest.builddir(), 'plugins'),
            'inbound_plugins = clamav',
            'quarantine_directory = %s' % os.path.join(root, 'quarantine'),
            'myhostname = mx.sift.test',
            'clamav_database_directory = %s' % dbdir,
            'clamav_ready_wait = 30s',
            'clamav_tmpdir = %s' % root,
            '']))
    ctl = Ctl(root, conf)
    clean = cvlib.clean_messages()['text']
    fakes = []
    try:
        # ---- scan timeout, library mode --------------------------------
        # Many files, EICAR last: with a 1 ms limit libclamav stops long
        # before it (and with alert_exceeds_max = no it says "clean").
        files = {'f%03d.txt' % i: os.urandom(20000) for i in range(300)}
        files['zz.com'] = cvlib.EICAR
        many = cvlib._attach('many files', cvlib._zip(files), 'many.zip', 'application', 'zip')
        r = ctl.test(many, ())
        check(r.get('action') == 'reject' and cvlib.EICAR_NAME in r.get('reply', ''),
              'library: EICAR last in a big zip, time enough: found', r['raw'])
        for extra in ((), ('clamav_alert_exceeds_max=no',)):
            lab = 'library timeout%s' % (' (alert_exceeds_max=no)' if extra else '')
            r = ctl.test(many, ('clamav_max_scantime=1ms',) + extra)
            check(failed_scan(r) and 'scan timeout' in r['raw'], '%s: tempfail, not passed' % lab,
                  r['raw'])
            r = ctl.test(many, ('clamav_max_scantime=1ms', 'clamav_fail_action=accept') + extra)
            check(failed_scan(r, True), '%s + fail_action=accept: the failed header' % lab, r['raw'])
        # The other limits are unchanged: a note (or clean when not asked for).
        deep = cvlib._zip({'e.txt': b'hello'})
        for i in range(6):
            deep = cvlib._zip({'l%d.zip' % i: deep})
        deepmsg = cvlib._attach('deep', deep, 'deep.zip', 'application', 'zip')
        r = ctl.test(deepmsg, ('clamav_max_recursion=3',))
        check(r.get('action') == 'accept' and
              any('not fully scanned: Heuristics.Limits.Exceeded.MaxRecursion' in h for h in r['headers']),
              'library: recursion limit still the limit action', r['raw'])
        r = ctl.test(deepmsg, ('clamav_max_recursion=3', 'clamav_alert_exceeds_max=no'))
        check(r.get('action') == 'accept' and
              any(re.match(r'X-Virus-Scanned: ClamAV [\d.]+ at mx\.sift\.test$', h) for h in r['headers']),
              'library: recursion limit, alert_exceeds_max=no: clean header as before', r['raw'])
        deepv = cvlib._attach('deep', cvlib._zip({'a.zip': deep, 'zz.com': cvlib.EICAR}), 'd.zip',
                              'application', 'zip')
        for extra in ((), ('clamav_alert_exceeds_max=no',)):
            r = ctl.test(deepv, ('clamav_max_recursion=3',) + extra)
            check(r.get('action') == 'reject' and cvlib.EICAR_NAME in r.get('reply', ''),
                  'library: a virus after a limit is still found %r' % (extra,), r['raw'])

        # ---- scan timeout, clamd mode ----------------------------------
        f = cvlib.FakeClamd(b'stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND\0')
        fakes.append(f)
        r = ctl.test(clean, clamd(f.addr))
        check(failed_scan(r) and 'scan timeout' in r['raw'], 'clamd MaxScanTime: tempfail, not passed',
              r['raw'])
        r = ctl.test(clean, clamd(f.addr, 'clamav_fail_action=accept'))
        check(failed_scan(r, True), 'clamd MaxScanTime + fail_action=accept: the failed header', r['raw'])
        f = cvlib.FakeClamd(b'stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0')
        fakes.append(f)
        r = ctl.test(clean, clamd(f.addr))
        check(r.get('action') == 'accept' and
              any('not fully scanned: Heuristics.Limits.Exceeded.MaxFileSize' in h for h in r['headers']),
              'clamd MaxFileSize: still the limit action', r['raw'])

        # ---- clamd answers before it has the whole message --------------
        # It read 300000 bytes of a 16 MB message (more than the socket
        # buffers of both ends hold), answered and closed: the send fails.
        # Its "OK" is about a part; its size limit stands.
        big = cvlib.big_message(16000000)
        early_ok = cvlib.FakeClamd(early=(300000, b'stream: OK\0'))
        fakes.append(early_ok)
        r = ctl.test(big, clamd(early_ok.addr))
        check(failed_scan(r) and 'before it had the whole message' in r['raw'],
              'clamd "OK" before the whole message: tempfail, not clean', r['raw'])
        r = ctl.test(big, clamd(early_ok.addr, 'clamav_fail_action=accept'))
        check(failed_scan(r, True), 'clamd early "OK" + fail_action=accept: the failed header', r['raw'])
        ok = cvlib.FakeClamd(b'stream: OK\0')
        fakes.append(ok)
        r = ctl.test(big, clamd(early_ok.addr + ' ' + ok.addr))
        check(r.get('action') == 'accept' and ok.streams == 1 and 'trying the next server' in r['raw'] and
              any(re.match(r'X-Virus-Scanned: ClamAV 9\.9\.9 at mx\.sift\.test$', h) for h in r['headers']),
              'clamd early "OK": the next server scans the message', r['raw'])
        early_lim = cvlib.FakeClamd(early=(300000, b'INSTREAM size limit exceeded. ERROR\0'))
        fakes.append(early_lim)
        r = ctl.test(big, clamd(early_lim.addr))
        check(r.get('action') == 'accept' and
              any('not fully scanned: clamd: INSTREAM size limit exceeded' in h for h in r['headers']),
              "clamd's size limit before the whole message: still the limit action", r['raw'])
        early_found = cvlib.FakeClamd(early=(300000, b'stream: Eicar-Test FOUND\0'))
        fakes.append(early_found)
        r = ctl.test(big, clamd(early_found.addr))
        check(r.get('action') == 'reject' and 'Eicar-Test' in r.get('reply', ''),
              'clamd virus found before the whole message: rejected', r['raw'])

        # ---- a FOUND without a name ----------------------------------------
        for ans in (b'stream:  FOUND\0', b'stream: FOUND\0',
                    b'stream: (44d88612fea8a8f36de82e1278abb02f:68) FOUND\0'):
            noname = cvlib.FakeClamd(ans)
            fakes.append(noname)
            r = ctl.test(clean, clamd(noname.addr))
            check(failed_scan(r) and 'FOUND without a name' in r['raw'] and 'virus found' not in r['raw'] and
                  'Blocked INFECTED' not in r['raw'], 'clamd %r: tempfail, not a virus' % ans, r['raw'])
            r = ctl.test(clean, clamd(noname.addr + ' ' + ok.addr))
            check(r.get('action') == 'accept' and 'trying the next server' in r['raw'] and
                  any(re.match(r'X-Virus-Scanned: ClamAV 9\.9\.9 at mx\.sift\.test$', h)
                      for h in r['headers']),
                  'clamd %r: the next server scans the message' % ans, r['raw'])

        # ---- a forged X-Virus-Scanned in the message ---------------------
        # Ours replaces every field of the name (any case), on each result
        # that adds one: clean, failed with fail_action = accept, a limit.
        forged = (b'From: sender@example.test\r\nTo: user@sift.test\r\n'
                  b'X-Virus-Scanned: ClamAV 1.4.6 at mx.sift.test\r\nSubject: forged\r\n'
                  b'x-virus-scanned: clean\r\nX-Other: 1\r\n\r\nhello\r\n')
        dead = 'inet:127.0.0.1:%d' % sifttest.free_port()
        lim = cvlib.FakeClamd(b'stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0')
        fakes.append(lim)
        for lab, opts, want in (
                ('clamd clean', clamd(ok.addr), r'ClamAV 9\.9\.9 at mx\.sift\.test'),
                ('library clean', (), r'ClamAV [\d.]+ at mx\.sift\.test'),
                ('failed, accepted', clamd(dead, 'clamav_fail_action=accept'), r'failed'),
                ('limit, passed', clamd(lim.addr), r'ClamAV 9\.9\.9 at mx\.sift\.test \(not fully scanned: .*\)')):
            r = ctl.test(forged, opts)
            h = edited_header(forged, r['raw'])
            ours = [v for n, v in h if n.lower() == 'x-virus-scanned']
            check(r.get('action') == 'accept' and len(ours) == 1 and re.match(want + '$', ours[0]) and
                  ('X-Other', '1') in h and ('Subject', 'forged') in h,
                  'forged X-Virus-Scanned (%s): only ours is left' % lab,
                  repr(h) + r['raw'])
        r = ctl.test(forged, clamd(ok.addr, 'clamav_header_name=X-Scanned-By'))
        h = edited_header(forged, r['raw'])
        check(r.get('action') == 'accept' and len([1 for n, _ in h if n.lower() == 'x-virus-scanned']) == 2 and
              len([1 for n, _ in h if n == 'X-Scanned-By']) == 1,
              'another header name: X-Virus-Scanned left alone', repr(h) + r['raw'])

        # ---- a unix socket whose listen backlog is full -------------------
        # connect() gets EAGAIN: nothing started, tried again until the
        # connect timeout; the server takes the waiting ones after 1 s.
        path = os.path.join(root, 'full.sock')
        go = threading.Event()
        full = cvlib.FakeClamd(b'stream: OK\0', unix=path, backlog=0, accept_after=go)
        fakes.append(full)
        fillers = sifttest.fill_backlog(path)
        threading.Timer(1.0, go.set).start()
        t = time.monotonic()
        r = ctl.test(clean, clamd(full.addr, 'clamav_clamd_connect_timeout=5s'))
        took = time.monotonic() - t
        check(r.get('action') == 'accept' and full.streams == 1 and took >= 0.9 and
              any(re.match(r'X-Virus-Scanned: ClamAV 9\.9\.9 at mx\.sift\.test$', h) for h in r['headers']),
              'unix socket, backlog full for 1 s: connected once it has room, scanned (%.1fs)' % took,
              r['raw'])
        for c in fillers:
            c.close()
        path2 = os.path.join(root, 'full2.sock')
        never = threading.Event()
        full2 = cvlib.FakeClamd(b'stream: OK\0', unix=path2, backlog=0, accept_after=never)
        fakes.append(full2)
        fillers = sifttest.fill_backlog(path2)
        t = time.monotonic()
        r = ctl.test(clean, clamd(full2.addr, 'clamav_clamd_connect_timeout=1s'))
        took = time.monotonic() - t
        check(failed_scan(r) and 'connect: Resource temporarily unavailable' in r['raw'] and took >= 0.9,
              'unix socket, backlog full: tempfail after the connect timeout (%.1fs)' % took, r['raw'])
        never.set()
        for c in fillers:
            c.close()

        # ---- a clamd that accepts and then hangs -------------------------
        # With two servers the first gets half of clamav_clamd_timeout:
        # the second still scans the message, long before the timeout.
        stall = cvlib.FakeClamd(stall=True)
        fakes.append(stall)
        ok2 = cvlib.FakeClamd(b'stream: OK\0')
        fakes.append(ok2)
        t = time.monotonic()
        r = ctl.test(clean, clamd(stall.addr + ' ' + ok2.addr, 'clamav_clamd_timeout=6s'))
        took = time.monotonic() - t
        check(r.get('action') == 'accept' and ok2.streams == 1 and took < 5 and
              r['raw'].count('trying the next server') == 1 and
              any(re.match(r'X-Virus-Scanned: ClamAV 9\.9\.9 at mx\.sift\.test$', h) for h in r['headers']),
              'first clamd hangs: the second scans the message (%.1fs of 6s)' % took, r['raw'])
        stall2 = cvlib.FakeClamd(stall=True)
        fakes.append(stall2)
        before = len(stall.conns)
        t = time.monotonic()
        r = ctl.test(clean, clamd(stall.addr + ' ' + stall2.addr, 'clamav_clamd_timeout=2s'))
        took = time.monotonic() - t
        check(failed_scan(r) and r['raw'].count('trying the next server') == 1 and took < 4 and
              len(stall.conns) == before + 1 and len(stall2.conns) == 1,
              'both hang: tempfail at the timeout, "trying the next server" only before the second (%.1fs)'
              % took, r['raw'])
        r = ctl.test(clean, clamd(stall.addr, 'clamav_clamd_timeout=1s'))
        check(failed_scan(r) and 'trying the next server' not in r['raw'],
              'one server hangs: tempfail, no next server named', r['raw'])
    finally:
        for f in fakes:
            f.stop()
        if sifttest.checks.failed == 0 and not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print('kept %s' % root)
    return sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
