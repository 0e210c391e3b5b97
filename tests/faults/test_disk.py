#!/usr/bin/python3
"""Fault matrix: the quarantine on a full file system.

filterd (clamav in library mode, clamav_inbound_action = quarantine) gets a
flow where every other message carries EICAR; its quarantine_directory is
a 2 MiB tmpfs the test mounts. While the flow runs, a filler file takes
all the space for 2 s, then is removed. Every clean message is delivered
exactly once (scanned); every infected one is in the quarantine exactly
once and never delivered; the messages met while the disk was full got a
4xx and were stored on the retry; filterd (same process) logged the
failed quarantine and recovered by itself.

Needs root and a kernel that lets it mount a tmpfs (the test fails, with
that reason, where it cannot).
"""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'clamav', 'tests'))
import cvlib  # noqa: E402
import faultlib  # noqa: E402
from faultlib import check, Flow, verify  # noqa: E402

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


def fill(path):
    """Fills the file system of path; returns the filler's path."""
    filler = os.path.join(path, 'filler')
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b'\0' * 4096)
    except OSError:
        pass
    os.close(fd)
    return filler


def main():
    env = faultlib.Env('disk', plugins=('clamav',))
    qdir = env.path('quarantine')
    os.makedirs(qdir)
    mounted = False
    try:
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m,mode=0755', 'tmpfs', qdir],
                           capture_output=True, text=True)
        mounted = r.returncode == 0
        if not check(mounted, 'a 2 MiB tmpfs mounted for the quarantine', r.stderr):
            return faultlib.sifttest.done()
        faultlib.sifttest.daemon_writable(qdir)
        dbdir = env.path('db')
        cvlib.make_db(dbdir)
        fd = env.daemon('filterd', 'filterd', {
            'inbound_plugins': 'clamav',
            'clamav_database_directory': dbdir,
            'clamav_ready_wait': '30s',
            'clamav_inbound_action': 'quarantine',
            'quarantine_directory': qdir,
        })
        pf = env.postfix(milter=fd.port)
        what = 'quarantine disk full'
        mark = len(fd.log())
        flow = Flow(pf, 'disk', body=body).start()
        flow.wait_done(flow.n // 4)
        filler = fill(qdir)
        time.sleep(2)
        os.unlink(filler)
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
    finally:
        faultlib.sifttest.stop_all(env.things)
        env.things = []
        if mounted:
            subprocess.run(['umount', qdir])
        env.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
