#!/usr/bin/python3
"""Fault matrix: reloads while messages are in flight.

  - reload storm: filterd gets SIGUSR1 and SIGHUP (both reload it with the
    native engine), policyd SIGHUP, ten times a second each, for as long
    as the flow runs (10 s: 200 messages at 20 a second; with
    --storm-seconds 30, in suite long, 30 s and 600 messages, the storm
    alone);
  - broken configuration: during the flow, both configuration files are
    replaced by broken ones and both daemons are told to reload; they keep
    running on the configuration they have (and log why), then get the
    good files back and reload again.

Nobody reads the daemons' readiness notifications here (NOTIFY_SOCKET):
each reload sends two, the socket's queue holds ten, so a daemon that
waited for room would stall its reloads (and policyd its event loop);
they drop what does not fit and say so once.

For each: no message gets a 4xx or is lost or duplicated (a reload never
costs a message), every message went through both daemons (filterd's
header and policyd's PREPEND), each daemon is the same process
throughout and logged its reloads.
"""

import argparse
import os
import re
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import check, Flow, verify  # noqa: E402

MARK = [rb'^X-Fault-Policy: seen$', rb'^X-Fault-Filter: seen$']


def storm(env, pf, fd, pd, seconds):
    what = 'reload storm (%d s)' % seconds
    fmark, pmark = len(fd.log()), len(pd.log())
    # 20 messages a second: the storm lasts the flow's `seconds`.
    flow = Flow(pf, 'reload-storm', n=faultlib.MESSAGES * seconds // 10, pace=0.2,
                deadline=180 + 3 * seconds).start()
    stop = threading.Event()
    sent = [0]

    def signals():
        while not stop.is_set():
            fd.signal(signal.SIGUSR1 if sent[0] % 2 else signal.SIGHUP)
            pd.signal(signal.SIGHUP)
            sent[0] += 1
            time.sleep(0.1)
    t = threading.Thread(target=signals)
    t.start()
    flow.join()
    stop.set()
    t.join()
    verify(flow, what, mark=MARK, min_tempfails=0)
    check(not flow.tempfails, '%s: no message answered 4xx' % what,
          list(flow.tempfails.items())[:3])
    nf = len(re.findall(r'configuration reloaded', fd.log()[fmark:]))
    npd = len(re.findall(r'reloaded the configuration from', pd.log()[pmark:]))
    check(nf >= sent[0] // 4 and npd >= sent[0] // 4 and sent[0] >= 10,
          '%s: %d signals each; filterd logged %d reloads, policyd %d' % (what, sent[0], nf, npd))
    check(fd.alive() and pd.alive(), '%s: both daemons still running' % what)
    for p in (fd, pd):
        check(re.search(r'systemd notification .* dropped: .*reads no more', p.log()),
              '%s: %s dropped the notifications nobody read, and said so' % (what, p.name),
              p.log()[-600:])


def broken(env, pf, fd, pd):
    what = 'broken configuration reload'
    fmark, pmark = len(fd.log()), len(pd.log())
    flow = Flow(pf, 'reload-broken').start()
    flow.wait_done(flow.n // 4)
    saved = []
    for p in (fd, pd):
        shutil.copy(p.conf, p.conf + '.good')
        with open(p.conf, 'a') as f:
            f.write('no_such_parameter_here = 1\n')
        saved.append(p.conf)
    fd.signal(signal.SIGUSR1)
    pd.signal(signal.SIGHUP)
    ok_f = faultlib.wait_text(fd.log, r'reload failed, keeping the running configuration', 10, fmark)
    ok_p = faultlib.wait_text(pd.log, r'reload failed: .*; keeping the current configuration', 10,
                              pmark)
    flow.wait_done(flow.n * 3 // 4)
    for c in saved:
        os.replace(c + '.good', c)
    fd.signal(signal.SIGUSR1)
    pd.signal(signal.SIGHUP)
    flow.join()
    verify(flow, what, mark=MARK, min_tempfails=0)
    check(not flow.tempfails, '%s: no message answered 4xx' % what, list(flow.tempfails.items())[:3])
    check(ok_f is not None and ok_p is not None,
          '%s: both daemons logged the failed reload and kept running' % what,
          fd.log()[fmark:][-800:] + pd.log()[pmark:][-800:])
    check(faultlib.wait_text(fd.log, r'configuration reloaded', 10, ok_f.end() if ok_f else 0)
          is not None and
          faultlib.wait_text(pd.log, r'reloaded the configuration', 10, ok_p.end() if ok_p else 0)
          is not None, '%s: the good configuration reloaded afterwards' % what)
    check(fd.alive() and pd.alive(), '%s: both daemons still running' % what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--storm-seconds', type=int, default=10,
                    help='how long the storm lasts (20 messages a second); 10: the broken '
                    'configuration case too; more: the storm alone')
    a = ap.parse_args()
    env = faultlib.Env('reload', plugins=('testplug', 'access'))
    try:
        rcpts = env.path('policy-rcpts')
        with open(rcpts, 'w') as f:
            f.write('user@sift.test\tPREPEND X-Fault-Policy: seen\n')
        fd = env.daemon('filterd', 'filterd', {'inbound_plugins': 'testplug',
                                               'testplug_header': 'X-Fault-Filter: seen'},
                        drain=False)
        pd = env.daemon('policyd', 'policyd', {'inbound_plugins': 'access',
                                               'access_recipient_map': 'texthash:' + rcpts},
                        drain=False)
        pf = env.postfix(milter=fd.port, policy=pd.port)
        storm(env, pf, fd, pd, a.storm_seconds)
        if a.storm_seconds == 10:
            broken(env, pf, fd, pd)
    finally:
        env.stop()
    return faultlib.sifttest.done()


if __name__ == '__main__':
    sys.exit(main())
