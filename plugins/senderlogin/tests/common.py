"""Shared set-up for the senderlogin tests: paths, a small check() counter
that keeps going after a failure and reports at the end."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get('SIFT_SRCDIR') or os.path.abspath(os.path.join(HERE, '..', '..', '..'))
BUILD = os.environ.get('SIFT_BUILDDIR') or os.path.join(SRC, 'build')
sys.path.insert(0, os.path.join(SRC, 'tests', 'lib'))
sys.path.insert(0, os.path.join(SRC, 'plugins', 'ratelimit', 'tests'))

SEED_MAP = os.path.join(HERE, 'login_maps.pcre')
ALIAS_MAP = os.path.join(HERE, 'aliases.texthash')

_passed = 0
_failed = 0


def check(cond, what):
    global _passed, _failed
    if cond:
        _passed += 1
    else:
        _failed += 1
        print('FAILED: %s' % what, flush=True)


def eq(got, want, what):
    check(got == want, '%s: got %r, want %r' % (what, got, want))


def done():
    print('%d passed, %d failed' % (_passed, _failed))
    sys.exit(1 if _failed or not _passed else 0)
