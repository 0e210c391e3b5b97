#!/usr/bin/python3
"""The shipped configuration and ./quickstart (suite quickstart).

    run.py conf   conf/filterd.conf and conf/policyd.conf from the source
                  tree, with only where things are on this machine
                  overridden (the build tree's plugins and rules, a ClamAV
                  database): `filterd -t` refuses to start without the DKIM
                  tables and names the setting and file, `policyd -t`
                  likewise without the senderlogin map; with the local data
                  of tests/lib/chain.py filled in, both pass.
    run.py run    ./quickstart --once on free ports with the build tree
                  (SIFT_BUILDDIR; its files in BUILD/quickstart; install-deps
                  and ninja find nothing to do): exit status 0 and every row
                  of its summary table as expected; its whole output is
                  printed for the log.

Run as root (a private Postfix) with SIFT_SRCDIR / SIFT_BUILDDIR set (meson
test does). Prints "N passed, N failed".
"""

import os
import re
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import chain  # noqa: E402
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402


def dash_t(c, daemon, settings):
    argv = [sifttest.program(daemon), '-c', c.conf[daemon]]
    for k, v in settings.items():
        argv += ['-o', '%s=%s' % (k, v)]
    r = subprocess.run(argv + ['-t'], capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout + r.stderr


def conf_checks():
    root = tempfile.mkdtemp(prefix='sift-qsconf-')
    try:
        c = chain.Chain(root)
        c.prepare()
        fm, pm = c.machine('filterd'), c.machine('policyd')
        rc, out = dash_t(c, 'filterd', fm)
        check(rc == 1 and 'dkim_signing_table' in out and '/etc/sift/dkim/signingtable' in out,
              'filterd -t, shipped conf without local data: names dkim_signing_table and its file', out)
        rc, out = dash_t(c, 'filterd', dict(fm, dkim_signing_table='texthash:' + c.signingtable))
        check(rc == 1 and 'dkim_key_table' in out and '/etc/sift/dkim/keytable' in out,
              'filterd -t without the key table: names dkim_key_table and its file', out)
        rc, out = dash_t(c, 'policyd', pm)
        check(rc == 1 and 'senderlogin_login_maps' in out and '/etc/sift/login_maps.pcre' in out,
              'policyd -t, shipped conf without local data: names senderlogin_login_maps and its file', out)
        rc, out = dash_t(c, 'filterd', c.settings('filterd'))
        check(rc == 0 and 'configuration OK' in out, 'filterd -t passes with the local data filled in', out)
        rc, out = dash_t(c, 'policyd', c.settings('policyd'))
        check(rc == 0 and 'configuration OK' in out, 'policyd -t passes with the local data filled in', out)
        for daemon, want in (('filterd', 'access spf dkim arc dmarc clamav spam'), ('policyd', 'access spf')):
            check(chain.conf_value(c.conf[daemon], 'inbound_plugins') == want,
                  '%s.conf: inbound_plugins = %s' % (daemon, want))
        for daemon, want in (('filterd', 'access dkim clamav'), ('policyd', 'senderlogin ratelimit')):
            check(chain.conf_value(c.conf[daemon], 'originating_plugins') == want,
                  '%s.conf: originating_plugins = %s' % (daemon, want))
        levels = [chain.conf_value(c.conf['filterd'], 'spam_%s_level' % n) for n in ('tag', 'tag2', 'kill')]
        check(levels == ['2', '6.2', '6.9'], 'filterd.conf: the seed\'s levels 2, 6.2, 6.9 explicit', levels)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def quickstart_run():
    src, build = sifttest.srcdir(), sifttest.builddir()
    d = os.path.join(build, 'quickstart')
    # ./quickstart itself: install-deps and ninja have nothing left to do
    r = subprocess.run([os.path.join(src, 'quickstart'), '--once', '--free-ports', '--dir', d],
                       env=dict(os.environ, SIFT_BUILDDIR=build), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=1500)
    print(r.stdout)
    check(r.returncode == 0, './quickstart --once exits 0', r.returncode)
    rows = re.findall(r'^  (\d[.\d]*) .*\| (yes|NO|\x1b\[1mNO\x1b\[0m)$', r.stdout, re.M)
    want = 8 + chain.DEMO_RATE + 1 + 1  # + the metrics row
    check(len(rows) == want, 'summary table: %d rows' % want, rows)
    check(all(ok == 'yes' for _, ok in rows), 'summary table: every row as expected',
          [n for n, ok in rows if ok != 'yes'])
    check('%d of %d rows as expected' % (want, want) in r.stdout, 'summary line: all rows as expected',
          r.stdout[-600:])
    for what in ('Received-SPF: pass', 'dkim=pass', 'X-Virus-Scanned:', 'X-Spam-Status: No, score=',
                 'X-Spam-Flag: YES', 'DKIM-Signature:', 'clamav virus', 'Rate limit exceeded',
                 'promtool check metrics: passes'):
        check(what in r.stdout, 'output shows %s' % what)


def main():
    if os.geteuid() != 0:
        check(False, 'needs root (private Postfix)')
        return done()
    what = sys.argv[1] if len(sys.argv) > 1 else 'run'
    if what == 'conf':
        conf_checks()
    else:
        quickstart_run()
    return done()


if __name__ == '__main__':
    sys.exit(main())
