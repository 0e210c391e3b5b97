#!/usr/bin/python3
"""Fault matrix: clamd (the clamav plugin in clamd mode) fails while mail
flows.

  - clamd dead: SIGKILLed, started again a second later;
  - clamd hanging: SIGSTOPped for 3 s (clamav_clamd_timeout = 1s), then
    SIGCONT;
  - clamd slow: its answers delayed 2 s (past clamav_clamd_timeout) by a
    proxy between filterd and clamd, for 3 s.

For each: the messages scanned while clamd failed got 451 4.7.1 and
arrived on the retry, every message was delivered exactly once and
scanned (X-Virus-Scanned names ClamAV: none passed with "failed"), filterd
recovered by itself (same process, never restarted) and logged the failed
scan with its reason.

Then library mode: the database directory gets a corrupt signature file
while mail flows; the reload fails (logged) and the old engine keeps
scanning: no message gets a 4xx; the good database back, the new engine
is swapped in. And more scans at once than clamav_max_scans (1, with
clamav_scan_wait = 0; messages with a 512 KB attachment): the scans that
find no free turn get 451 4.7.1 (logged) and arrive on the retry.
"""

import base64

import os
import re
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'plugins', 'clamav', 'tests'))
import cvlib  # noqa: E402
import faultlib  # noqa: E402
from faultlib import check, Flow, verify  # noqa: E402

MARK = rb'^X-Virus-Scanned: ClamAV [\d.]+ at mx\.sift\.test$'


def run_case(env, pf, fd, name, fault, recover, reason):
    what = 'clamd ' + name
    hold = 3 if name != 'dead' else 1
    flow, log = faultlib.fault_case(pf, fd, 'clamd-' + name, fault, recover, hold, MARK, what)
    check(re.search(r'clamav: scan failed \([^)]*%s[^)]*\): tempfail' % reason, log) is not None,
          '%s: filterd logged the failed scan (%s)' % (what, reason),
          '\n'.join(l for l in log.splitlines() if 'clamav' in l)[-1500:])
    check(fd.alive(), '%s: filterd still running (recovered by itself)' % what)


def first_scans(pf, proxy):
    """The first messages after filterd's start, scanned at once while
    clamd answers slowly (0.3 s): the scan that ends first asks clamd for
    its version; the others wait for that answer, so each header names the
    version (none says "ClamAV (clamd)")."""
    what = 'first scans after the start'
    proxy.set_delay(0.3)
    results = [None] * 4

    def send(i):
        results[i] = pf.send('first%d@example.test' % i, ['user@sift.test'],
                             'From: first%d@example.test\r\nTo: user@sift.test\r\n'
                             'Subject: first %d\r\n\r\nhello\r\n' % (i, i))
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    proxy.set_delay(0)
    check(all(r is not None and r.accepted for r in results), '%s: all accepted' % what, results)
    heads = [pf.delivered_by_queue_id(r.queue_id).header_block()
             for r in results if r is not None and r.accepted]
    rx = re.compile(MARK.decode(), re.M | re.I)
    check(len(heads) == len(results) and all(rx.search(h) for h in heads),
          '%s: every X-Virus-Scanned names the clamd version' % what,
          [h for h in heads if not rx.search(h)][:2])


def corrupt_db(env, dbdir):
    what = 'ClamAV database corrupt during traffic'
    fd = env.daemon('filterd', 'filterd-lib', {
        'inbound_plugins': 'clamav',
        'clamav_database_directory': dbdir,
        'clamav_database_check_interval': '300ms',
        'clamav_ready_wait': '30s',
    })
    pf = env.pf
    pf.set_main(milters=['inet:127.0.0.1:%d' % fd.port])
    pf.reload()
    mark = len(fd.log())
    flow = Flow(pf, 'clamdb', pace=0.05).start()
    flow.wait_done(flow.n // 4)
    bad = os.path.join(dbdir, 'broken.ndb')
    with open(bad, 'w') as f:
        f.write('Sift.Test.Broken:0:*:this is not hex\n')
    failed = faultlib.wait_text(fd.log, r'clamav: loading the database .*: ', 20, mark)
    flow.wait_done(flow.n * 3 // 4)
    os.unlink(bad)
    cvlib.make_db(dbdir)
    swapped = faultlib.wait_text(fd.log, r'clamav: new engine in use', 20, failed.end() if failed else mark)
    flow.join()
    verify(flow, what, mark=MARK, min_tempfails=0)
    # Only filterd's answers count here: a session to Postfix that broke
    # (seen once, right after Postfix's reload) is the client's to retry.
    replies = [(t, x) for t, v in flow.tempfails.items() for x in v if isinstance(x, tuple)]
    check(not replies, '%s: no message answered 4xx (the old engine kept scanning)' % what,
          replies[:3])
    check(failed is not None, '%s: the failed load logged' % what, fd.log()[mark:][-1500:])
    check(swapped is not None, '%s: the good database loaded afterwards' % what,
          fd.log()[mark:][-1500:])
    check(fd.alive(), '%s: filterd still running' % what)


def attachment_body(token):
    data = base64.encodebytes(os.urandom(384 * 1024)).decode().replace('\n', '\r\n')
    return ('--b\r\nContent-Type: text/plain\r\n\r\nSee the attachment, %s.\r\n'
            '--b\r\nContent-Type: application/octet-stream\r\n'
            'Content-Transfer-Encoding: base64\r\n'
            'Content-Disposition: attachment; filename="%s.bin"\r\n\r\n%s--b--\r\n'
            % (token, token, data))


def busy_scans(env, dbdir):
    """Library mode: more concurrent scans than clamav_max_scans."""
    what = 'more scans at once than clamav_max_scans'
    fd = env.daemon('filterd', 'filterd-busy', {
        'inbound_plugins': 'clamav',
        'clamav_database_directory': dbdir,
        'clamav_ready_wait': '30s',
        'clamav_max_scans': '1',
        'clamav_scan_wait': '0',
    })
    pf = env.pf
    pf.set_main(milters=['inet:127.0.0.1:%d' % fd.port])
    pf.reload()
    mark = len(fd.log())
    flow = Flow(pf, 'busy', body=attachment_body,
                headers={'MIME-Version': '1.0', 'Content-Type': 'multipart/mixed; boundary="b"'}).start()
    flow.join()
    verify(flow, what, mark=MARK)
    faultlib.check_replies(flow, what, 'eom', 451, '4.7.1')
    log = fd.log()[mark:]
    check(re.search(r'clamav: scan failed \(too many concurrent scans \(clamav_max_scans 1\)\): tempfail',
                    log) is not None, '%s: filterd logged the scan without a turn' % what,
          '\n'.join(l for l in log.splitlines() if 'clamav' in l)[-1500:])
    check(fd.alive(), '%s: filterd still running' % what)


def main():
    env = faultlib.Env('clamd', plugins=('clamav',))
    try:
        dbdir = env.path('db')
        cvlib.make_db(dbdir)
        clamd = env.add(cvlib.Clamd(env.path('clamd'), dbdir).start())
        proxy = env.add(faultlib.DelayProxy(clamd.port).start())
        fd = env.daemon('filterd', 'filterd', {
            'inbound_plugins': 'clamav',
            'clamav_mode': 'clamd',
            'clamav_clamd_servers': 'inet:127.0.0.1:%d' % proxy.port,
            'clamav_clamd_connect_timeout': '1s',
            'clamav_clamd_timeout': '1s',
        })
        pf = env.postfix(milter=fd.port)

        first_scans(pf, proxy)

        def restart():
            clamd.start()
        run_case(env, pf, fd, 'dead', clamd.kill, restart, 'Connection re(?:fused|set)')
        run_case(env, pf, fd, 'hanging', lambda: os.kill(clamd.proc.pid, signal.SIGSTOP),
                 lambda: os.kill(clamd.proc.pid, signal.SIGCONT), 'time')
        run_case(env, pf, fd, 'slow', lambda: proxy.set_delay(2.0), lambda: proxy.set_delay(0),
                 'time')
        corrupt_db(env, dbdir)
        busy_scans(env, dbdir)
    finally:
        env.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
