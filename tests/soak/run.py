#!/usr/bin/python3
"""The soak, short (suite soak): bench/soak.py with SOAK_MESSAGES messages
(5000 by default) through the whole chain must end with exit status 0 and
the line "N messages: D delivered, R refused, 0 lost, 0 duplicated" with
D + R = N; then a run of 100 messages with one delivered file removed and
another copied (--lose-one --duplicate-one) must exit 1 and count exactly
1 lost and 1 duplicated, so that the accounting is seen to notice.

Run as root (a private Postfix) with SIFT_SRCDIR / SIFT_BUILDDIR set (meson
test does). Prints "N passed, N failed".
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, check_eq, done  # noqa: E402

LINE = re.compile(r'^(\d+) messages: (\d+) delivered, (\d+) refused, (\d+) lost, (\d+) duplicated$')


def soak(n, *extra):
    argv = [os.path.join(sifttest.srcdir(), 'bench', 'soak.py'), '--builddir', sifttest.builddir(),
            '--messages', str(n)] + list(extra)
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
    print('$ %s  (%.0f s, exit %d)' % (' '.join(argv[1:]), time.monotonic() - t, r.returncode))
    print(r.stdout + r.stderr, flush=True)
    lines = r.stdout.rstrip('\n').splitlines()
    m = LINE.match(lines[-1]) if lines else None
    return r.returncode, m and tuple(int(x) for x in m.groups())


def main():
    n = int(os.environ.get('SOAK_MESSAGES', '5000'))
    rc, got = soak(n)
    check_eq(rc, 0, 'soak --messages %d: exit status' % n)
    if check(got is not None, 'soak --messages %d: last line "N messages: ..."' % n):
        total, dl, ref, lost, dup = got
        check_eq((total, lost, dup), (n, 0, 0), 'soak --messages %d: all %d, none lost, none duplicated' % (n, n))
        check_eq(dl + ref, n, 'soak --messages %d: delivered + refused = messages' % n)
        check(ref >= n * 6 // 100, 'soak --messages %d: the GTUBE, EICAR and SPF-fail messages refused' % n,
              '%d refused' % ref)
    rc, got = soak(100, '--lose-one', '--duplicate-one')
    check_eq(rc, 1, 'soak with one delivered file removed and one copied: exit status')
    if check(got is not None, 'soak --lose-one --duplicate-one: last line'):
        check_eq(got[3:], (1, 1), 'soak --lose-one --duplicate-one: 1 lost, 1 duplicated')
    return done()


if __name__ == '__main__':
    sys.exit(main())
