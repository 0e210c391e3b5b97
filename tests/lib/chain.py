"""chain.py - Sift's whole chain on the shipped configuration, behind a
private Postfix on 127.0.0.1, with the local data a demo (./quickstart) or a
benchmark supplies and nothing else.

filterd runs conf/filterd.conf and policyd conf/policyd.conf from the source
tree. What is overridden on their command lines (-o) is of two kinds:

  local data       what the shipped conf marks "Local data" and every site
                   fills in: the DKIM key and signing tables (a key made
                   here with `siftctl dkim genkey`), who may send as whom
                   (senderlogin_login_maps), the rate limit rules, who gets
                   virus alerts;
  this machine     where things are on a throw-away run: listen ports, pid
                   files, plugin_directory (the build tree), *_user (root),
                   the DNS server (a local one, no query leaves 127.0.0.1),
                   the ClamAV database, the quarantine and spam cache
                   directories, the Bayes database (an empty LMDB
                   database in ROOT/bayes), Sift's own rules from the source tree
                   instead of /usr/share/sift/rules, myhostname.

The demo world (DEMO_* below): our domain sift.test (mailboxes, DKIM
signing with selector "mail"); remote senders friend.test (SPF pass for
127.0.0.1, signs its mail with selector "sel"), forger.test (SPF fail) and
sloppy.test (SPF softfail), the first two with a DMARC p=reject policy;
every record is served by tests/lib/dnsserver.py on a free loopback port.
ClamAV uses the system database (/var/lib/clamav with main and daily) when
one is installed, else a small database made on the spot that detects EICAR
(plugins/clamav/tests/cvlib.py). Submission
users authenticate against a private Dovecot (tests/lib/dovecotsasl.py).

    c = Chain(root)                  # root: a directory of its own
    c.start()                        # DNS, SASL, filterd, policyd, Postfix
    c.pf.send(...); c.siftctl('quarantine', 'list'); c.sign_inbound(data)
    c.stop()                         # stops exactly what start() started
"""

import os
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dnsserver  # noqa: E402
import sifttest  # noqa: E402
from dovecotsasl import DovecotSASL  # noqa: E402

DEMO_OURS = 'sift.test'
DEMO_FRIEND = 'friend.test'    # SPF pass, DKIM-signed
DEMO_FORGER = 'forger.test'    # SPF fail
DEMO_SLOPPY = 'sloppy.test'    # SPF softfail
DEMO_LOCAL_DOMAINS = (DEMO_OURS, 'example.test')
DEMO_USERS = {'bob': 'bob-secret', 'dave': 'dave-secret'}
DEMO_ADMIN = 'virusalert@' + DEMO_OURS
# the seed's login_maps.pcre form: user@sift.test belongs to the login user
DEMO_LOGIN_MAP = '/^(.*)@sift\\.test$/    ${1}\n'
DEMO_RATE = 2  # messages per hour and SASL user: low enough to be seen
DEMO_RATELIMIT_RULES = '{ name=user key=sasl_username messages=%d/1h action=defer_if_permit }' % DEMO_RATE

SYSTEM_CLAMAV = '/var/lib/clamav'


def system_clamav_db(d=SYSTEM_CLAMAV):
    """True when d holds freshclam's main and daily databases."""
    try:
        names = os.listdir(d)
    except OSError:
        return False
    return any(re.match(r'main\.c[vl]d$', n) for n in names) and \
        any(re.match(r'daily\.c[vl]d$', n) for n in names)


def conf_value(path, name):
    """Value of `name` in a main.cf-syntax file (no $expansion), or None."""
    val, cur = None, None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith('#') or not line.strip():
            cur = None
            continue
        if line[0] in ' \t' and cur == name:
            val += ' ' + line.strip()
            continue
        m = re.match(r'([A-Za-z0-9_]+)\s*=\s*(.*)$', line)
        cur = m.group(1) if m else None
        if cur == name:
            val = m.group(2).strip()
    return val


class Chain:
    """The shipped chain with demo local data; see the module docstring.
    Ports left None are picked free; spam_cache None: $SIFT_SPAM_CACHE or
    BUILD/spam-hscache (shared with the spam suite)."""

    def __init__(self, root, builddir=None, srcdir=None, spam_cache=None, filterd_port=None,
                 policyd_port=None, smtp_port=None, submission_port=None, clamav_db=None,
                 ratelimit_rules=DEMO_RATELIMIT_RULES, metrics_ports=None):
        self.root = os.path.abspath(root)
        self.src = os.path.abspath(srcdir or sifttest.srcdir())
        self.build = os.path.abspath(builddir or sifttest.builddir())
        self.spam_cache = spam_cache or os.environ.get('SIFT_SPAM_CACHE') or \
            os.path.join(self.build, 'spam-hscache')
        self.ports = {'filterd': filterd_port or sifttest.free_port(),
                      'policyd': policyd_port or sifttest.free_port(),
                      'smtp': smtp_port or sifttest.free_port(),
                      'submission': submission_port or sifttest.free_port()}
        # The metrics listeners (/metrics, /status.json, the status page).
        mp = metrics_ports or {}
        for d in ('filterd', 'policyd'):
            self.ports[d + '-metrics'] = mp.get(d) or sifttest.free_port()
        self.clamav_db = clamav_db
        self.bayes_dir = os.path.join(self.root, 'bayes')  # the spam plugin's LMDB database
        self.ratelimit_rules = ratelimit_rules
        self.conf = {d: os.path.join(self.src, 'conf', d + '.conf') for d in ('filterd', 'policyd')}
        self.dns = self.sasl = self.pf = None
        self.procs = {}
        self.notes = []      # what the demo supplied, one line each
        self.records = {}    # DNS records served, name -> text

    # -- local data ---------------------------------------------------------

    def siftctl_argv(self, *args, conf='filterd', settings=True):
        argv = [os.path.join(self.build, 'tools', 'siftctl'), '-c', self.conf[conf]]
        if settings:
            for k, v in self.settings(conf).items():
                argv += ['-o', '%s=%s' % (k, v)]
        return argv + list(args)

    def siftctl(self, *args, conf='filterd', timeout=120):
        """siftctl with the daemon's configuration and overrides."""
        return subprocess.run(self.siftctl_argv(*args, conf=conf), capture_output=True, text=True,
                              timeout=timeout)

    def write_siftctl(self):
        """ROOT/siftctl: siftctl with filterd's configuration and overrides,
        for a person at the shell (`ROOT/siftctl quarantine list`)."""
        path = os.path.join(self.root, 'siftctl')
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n# siftctl on this chain\'s filterd configuration (tests/lib/chain.py)\n'
                    'exec %s "$@"\n' % ' '.join(shlex.quote(a) for a in self.siftctl_argv()))
        os.chmod(path, 0o755)
        return path

    def _genkey(self, domain, selector):
        d = os.path.join(self.root, 'dkim')
        os.makedirs(d, exist_ok=True)
        r = subprocess.run([os.path.join(self.build, 'tools', 'siftctl'), 'dkim', 'genkey', '-d', domain,
                            '-s', selector, '-D', d], capture_output=True, text=True, check=True)
        record = ''.join(re.findall(r'"([^"]*)"', r.stdout.strip().splitlines()[-1]))
        return os.path.join(d, '%s.%s.key' % (domain, selector)), record

    def _write(self, name, text):
        path = os.path.join(self.root, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def prepare(self):
        """Keys, tables, maps, DNS zones, the ClamAV database choice."""
        os.makedirs(self.root, exist_ok=True)
        os.chmod(self.root, 0o755)
        key, rec = self._genkey(DEMO_OURS, 'mail')
        fkey, frec = self._genkey(DEMO_FRIEND, 'sel')
        self.keytable = self._write('dkim/keytable', 'mail._domainkey.%s  %s:mail:%s\n' % (DEMO_OURS, DEMO_OURS, key))
        self.signingtable = self._write('dkim/signingtable', '%s  mail._domainkey.%s\n' % (DEMO_OURS, DEMO_OURS))
        # the remote sender's own signer: its key table, for siftctl dkim sign
        ftable = self._write('dkim/friend-keytable', 'sel._domainkey.%s  %s:sel:%s\n' % (DEMO_FRIEND, DEMO_FRIEND,
                                                                                          fkey))
        self.friend_conf = self._write('friend-signer.conf', 'plugin_directory = %s\ninbound_plugins =\n'
                                       'originating_plugins = dkim\ndkim_key_table = texthash:%s\n'
                                       % (os.path.join(self.build, 'plugins'), ftable))
        self.login_map = self._write('login_maps.pcre', DEMO_LOGIN_MAP)
        spf = 'v=spf1 ip4:127.0.0.1 -all'
        self.records = {
            DEMO_OURS: spf, 'mail._domainkey.' + DEMO_OURS: rec,
            DEMO_FRIEND: spf, 'sel._domainkey.' + DEMO_FRIEND: frec,
            DEMO_FORGER: 'v=spf1 -all', DEMO_SLOPPY: 'v=spf1 ~all',
            # DMARC: both remote senders publish p=reject (friend.test's
            # mail passes by its aligned SPF and DKIM)
            '_dmarc.' + DEMO_FRIEND: 'v=DMARC1; p=reject', '_dmarc.' + DEMO_FORGER: 'v=DMARC1; p=reject'}
        zones = {}
        for dom in (DEMO_OURS, DEMO_FRIEND, DEMO_FORGER, DEMO_SLOPPY):
            zones[dom] = [{'name': n + '.', 'type': 'TXT', 'data': t} for n, t in self.records.items()
                          if n == dom or n.endswith('.' + dom)]
        self.zones = zones
        if self.clamav_db is None:
            if system_clamav_db():
                self.clamav_db = SYSTEM_CLAMAV
                self.clamav_what = 'the system database (%s: main, daily)' % SYSTEM_CLAMAV
            else:
                sys.path.insert(0, os.path.join(self.src, 'plugins', 'clamav', 'tests'))
                import cvlib
                self.clamav_db = os.path.join(self.root, 'clamav-db')
                cvlib.make_db(self.clamav_db)
                os.chmod(self.clamav_db, 0o755)
                self.clamav_what = ('a small database made on the spot that detects EICAR (%s; no '
                                    'database in %s: install clamav-freshclam for the real one)'
                                    % (self.clamav_db, SYSTEM_CLAMAV))
        else:
            self.clamav_what = self.clamav_db
        self.quarantine = os.path.join(self.root, 'quarantine')
        os.makedirs(self.quarantine, exist_ok=True)
        os.chmod(self.quarantine, 0o750)  # filterd refuses one writable by group or others (any umask)
        os.makedirs(self.bayes_dir, exist_ok=True)
        os.makedirs(self.spam_cache, exist_ok=True)

    def local_data(self, daemon):
        """The shipped conf's "Local data" block, filled in for the demo."""
        if daemon == 'filterd':
            return {'dkim_key_table': 'texthash:' + self.keytable,
                    'dkim_signing_table': 'texthash:' + self.signingtable,
                    'clamav_notify_recipient': DEMO_ADMIN}
        return {'senderlogin_login_maps': 'pcre:' + self.login_map,
                'ratelimit_rules': self.ratelimit_rules}

    def machine(self, daemon):
        """Where things are on this run (not policy)."""
        s = {'plugin_directory': os.path.join(self.build, 'plugins'),
             '%s_listen' % daemon: 'inet:127.0.0.1:%d' % self.ports[daemon],
             '%s_pid_file' % daemon: os.path.join(self.root, daemon + '.pid'),
             '%s_user' % daemon: 'root',
             'metrics_listen': 'inet:127.0.0.1:%d' % self.ports[daemon + '-metrics'],
             'dns_servers': '127.0.0.1:%d' % (self.dns.port if self.dns else 1),
             'myhostname': 'mx.sift.test'}
        if daemon == 'filterd':
            rules = conf_value(self.conf['filterd'], 'spam_rules') or ''
            s.update({
                'spam_rules': ' '.join(os.path.join(self.src, 'rules') if r == '/usr/share/sift/rules' else r
                                       for r in rules.split()),
                'spam_cache_directory': self.spam_cache,
                'spam_bayes_store': 'lmdb:' + self.bayes_dir,
                'clamav_database_directory': self.clamav_db,
                'clamav_notify_relay': '127.0.0.1:%d' % self.ports['smtp'],
                'quarantine_directory': self.quarantine})
        return s

    def settings(self, daemon):
        s = self.machine(daemon)
        s.update(self.local_data(daemon))
        return s

    # -- life cycle -----------------------------------------------------------

    def start_daemon(self, daemon, start_timeout=180.0):
        exe = os.path.join(self.build, daemon, daemon)
        argv = [exe, '-f', '-c', self.conf[daemon]]
        for k, v in self.settings(daemon).items():
            argv += ['-o', '%s=%s' % (k, v)]
        p = sifttest.Proc(argv, log=os.path.join(self.root, daemon + '.log'), port=self.ports[daemon],
                          name=daemon, start_timeout=start_timeout)
        p.start()
        self.procs[daemon] = p
        return p

    def postfix_main(self):
        """main.cf beyond sifttest's defaults: SASL on the submission service
        and policyd asked at the end of data too (where ratelimit counts)."""
        m = self.sasl.postfix_main()
        m['smtpd_end_of_data_restrictions'] = 'check_policy_service inet:127.0.0.1:%d' % self.ports['policyd']
        return m

    def start(self, postfix_root=None):
        self.prepare()
        self.dns = dnsserver.DNSServer(self.zones)
        self.dns.start()
        self.sasl = DovecotSASL(os.path.join(self.root, 'dovecot'), DEMO_USERS).start()
        self.start_daemon('filterd')
        self.start_daemon('policyd')
        self.pf = sifttest.Postfix(port=self.ports['smtp'], submission_port=self.ports['submission'],
                                   root=postfix_root or os.path.join(self.root, 'postfix'), keep=True,
                                   domains=DEMO_LOCAL_DOMAINS, hostname='mx.sift.test',
                                   milters=['inet:127.0.0.1:%d' % self.ports['filterd']],
                                   policy='inet:127.0.0.1:%d' % self.ports['policyd'],
                                   main=self.postfix_main())
        self.pf.start()
        self.write_siftctl()
        return self

    def stop(self):
        """Stops what start() started, last first; returns {name: exit status}."""
        out = {}
        if self.pf is not None:
            self.pf.stop()
            self.pf = None
        for name in ('policyd', 'filterd'):
            p = self.procs.pop(name, None)
            if p is not None:
                out[name] = p.stop()
        if self.sasl is not None:
            self.sasl.stop()
            self.sasl = None
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        return out

    # -- helpers ------------------------------------------------------------------

    def sign_inbound(self, data):
        """data signed by friend.test's key (selector sel), as that domain's
        own mail server would: `siftctl dkim sign` with its key table."""
        path = os.path.join(self.root, 'to-sign.eml')
        with open(path, 'wb') as f:
            f.write(data)
        r = subprocess.run([os.path.join(self.build, 'tools', 'siftctl'), '-c', self.friend_conf, 'dkim', 'sign',
                            '-d', DEMO_FRIEND, '-s', 'sel', path], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError('siftctl dkim sign: %s' % r.stderr.decode(errors='replace'))
        return r.stdout
