#!/usr/bin/python3
"""Fault matrix: full file systems (each a small tmpfs the test mounts).

The quarantine:
filterd (clamav in library mode, clamav_inbound_action = quarantine) gets a
flow where every other message carries EICAR; its quarantine_directory is
a 2 MiB tmpfs the test mounts. While the flow runs, a filler file takes
all the space for 2 s, then is removed. Every clean message is delivered
exactly once (scanned); every infected one is in the quarantine exactly
once and never delivered; the messages met while the disk was full got a
4xx and were stored on the retry; filterd (same process) logged the
failed quarantine and recovered by itself.

The spool: tmpdir (message_memory_limit = 0, so that every body is
spooled) full for 2 s: the messages met get 451 4.3.0 at the end of data
(filterd logs "storing message body: writing the spool file: No space
left on device") and are delivered on the retry.

ClamAV's temporary directory (clamav_tmpdir; messages with an 8 KB
attachment, which libclamav writes to a temporary file) full for 1 s:
libclamav logs its write errors and answers "clean"; the plugin makes
that a failed scan: 451 4.7.1, delivered scanned on the retry.

Needs root and a kernel that lets it mount a tmpfs (the test fails, with
that reason, where it cannot).
"""

import base64
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'clamav', 'tests'))
import cvlib  # noqa: E402
import faultlib  # noqa: E402
from faultlib import check, Flow, verify  # noqa: E402

MIME = {'MIME-Version': '1.0', 'Content-Type': 'multipart/mixed; boundary="b"'}
MARK = rb'^X-Virus-Scanned: ClamAV [\d.]+ at mx\.sift\.test$'


def infected(token):
    return int(token.rsplit('-', 1)[1]) % 2 == 1


def body(token):
    if infected(token):
        return 'Infected %s:\r\n%s\r\n' % (token, cvlib.EICAR.decode())
    return 'Clean message %s.\r\n' % token


def quarantined(qdir):
    counts = {}
    for n in os.listdir(qdir):
        if not n.endswith('.msg'):
            continue
        with open(os.path.join(qdir, n), 'rb') as f:
            m = faultlib.TOKEN_RX.search(f.read(65536))
        if m:
            t = m.group(1).decode()
            counts[t] = counts.get(t, 0) + 1
    return counts


def attachment_body(token):
    """A message with an 8 KB base64 attachment: libclamav writes each MIME
    part to a temporary file while it scans."""
    data = base64.encodebytes(os.urandom(6000)).decode().replace('\n', '\r\n')
    return ('--b\r\nContent-Type: text/plain\r\n\r\nSee the attachment, %s.\r\n'
            '--b\r\nContent-Type: application/octet-stream\r\n'
            'Content-Transfer-Encoding: base64\r\n'
            'Content-Disposition: attachment; filename="%s.bin"\r\n\r\n%s--b--\r\n'
            % (token, token, data))


def quarantine_full(pf, fd, qdir):
    what = 'quarantine disk full'
    mark = len(fd.log())
    flow = Flow(pf, 'disk', body=body).start()
    flow.wait_done(flow.n // 4)
    full = faultlib.Full(qdir)
    full.fault()
    faultlib.hold_until_met(flow, 2)
    full.recover()
    flow.join()
    clean = [t for t in flow.accepted if not infected(t)]
    bad = [t for t in flow.accepted if infected(t)]
    counts = faultlib.delivered_tokens(pf, flow.prefix)
    q = quarantined(qdir)
    check(not [t for t in bad if counts.get(t)], '%s: no infected message delivered' % what,
          [t for t in bad if counts.get(t)][:5])
    check(all(q.get(t) == 1 for t in bad) and not [t for t in q if not infected(t)],
          '%s: every infected message quarantined exactly once, no clean one' % what,
          {t: q.get(t) for t in bad if q.get(t) != 1})
    verify(flow, what, mark=MARK, delivered=clean)
    log = fd.log()[mark:]
    check(re.search(r'quarantine failed: .*No space left on device', log) is not None and
          re.search(r'clamav: .*tempfail|action=tempfail', log) is not None,
          '%s: filterd logged the failed quarantine and the tempfail' % what,
          '\n'.join(l for l in log.splitlines() if 'quarantine' in l)[-1500:])
    check(fd.alive(), '%s: filterd still running (recovered by itself)' % what)


def spool_full(pf, fd, spool):
    """tmpdir (message_memory_limit = 0: every body spooled) full for 2 s."""
    what = 'spool tmpdir full'
    full = faultlib.Full(spool)
    flow, log = faultlib.fault_case(pf, fd, 'spool', full.fault, full.recover, 2, MARK, what)
    faultlib.check_replies(flow, what, 'eom', 451, '4.3.0')
    check(re.search(r'storing message body: writing the spool file: No space left on device', log)
          is not None, '%s: filterd logged the failed spool write' % what,
          '\n'.join(log.splitlines()[-8:]))
    check(fd.alive(), '%s: filterd still running (recovered by itself)' % what)


def clamtmp_full(pf, fd, ctmp):
    """clamav_tmpdir full for 1 s: libclamav cannot write the parts it
    extracts, says so and answers clean; the plugin makes it a failed scan."""
    what = 'ClamAV tmpdir full'
    full = faultlib.Full(ctmp)
    flow, log = faultlib.fault_case(pf, fd, 'clamtmp', full.fault, full.recover, 1, MARK, what,
                                    body=attachment_body, headers=MIME)
    faultlib.check_replies(flow, what, 'eom', 451, '4.7.1')
    check(re.search(r'clamav: libclamav: ', log) is not None and
          re.search(r'clamav: scan failed \(scan error: [^)]*\): tempfail', log) is not None,
          '%s: filterd logged libclamav\'s error and the failed scan' % what,
          '\n'.join(l for l in log.splitlines() if 'clamav' in l)[-1500:])
    check(fd.alive(), '%s: filterd still running (recovered by itself)' % what)


def main():
    env = faultlib.Env('disk', plugins=('clamav',))
    qdir, spool, ctmp = env.path('quarantine'), env.path('spool'), env.path('clamtmp')
    mounted = []
    try:
        for path, size in ((qdir, '2m'), (spool, '2m'), (ctmp, '4m')):
            if not faultlib.mount_tmpfs(path, size):
                return faultlib.sifttest.done()
            mounted.append(path)
        dbdir = env.path('db')
        cvlib.make_db(dbdir)
        fd = env.daemon('filterd', 'filterd', {
            'inbound_plugins': 'clamav',
            'clamav_database_directory': dbdir,
            'clamav_ready_wait': '30s',
            'clamav_inbound_action': 'quarantine',
            'clamav_tmpdir': ctmp,
            'quarantine_directory': qdir,
            'tmpdir': spool,
            'message_memory_limit': '0',
        })
        pf = env.postfix(milter=fd.port)
        quarantine_full(pf, fd, qdir)
        spool_full(pf, fd, spool)
        clamtmp_full(pf, fd, ctmp)
    finally:
        faultlib.sifttest.stop_all(env.things)
        env.things = []
        for path in mounted:
            faultlib.umount(path)
        env.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
