"""Shared set-up for the senderlogin tests: tests/lib on the import path
(sifttest: check counter, daemons, siftctl, policy client) and the test
maps."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'lib'))

SEED_MAP = os.path.join(HERE, 'login_maps.pcre')
ALIAS_MAP = os.path.join(HERE, 'aliases.texthash')
PATTERN_MAP = os.path.join(HERE, 'owners.pcre')
