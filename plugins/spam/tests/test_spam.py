#!/usr/bin/python3
"""spam plugin without an MTA, through siftctl (the same chain filterd runs):

- Sift's own rules (rules/sift.cf) lint clean; GTUBE is rejected with
  554 5.7.1 and the amavisd-style headers; a clean message gets
  `X-Spam-Status: No, score=... tagged_above=... required=6.2 tests=[...]
  autolearn=no autolearn_force=no`; a spammy message below the kill level
  gets X-Spam-Flag: YES and the ***SPAM*** subject prefix; kill actions
  discard / quarantine / tempfail; incoming X-Spam-* headers are removed;
- rule syntax: header (named, ALL, ToCc, MESSAGEID by its third name,
  :addr/:name/:raw, exists:, [if-unset:], !~), body, rawbody, full, uri,
  mimeheader, meta (boolean and arithmetic), score (four-score form: set 0
  is used), tflags multiple and maxhits, if/ifplugin/else/endif, include,
  replace_tag, required_score, default scores (1.0, T_ 0.01, __ not
  scored), check_sift_symbol and symbol_score with another plugin's symbol
  (the test plugin);
- one score: another plugin's symbol weighed by symbol_score counts once
  with that weight, one no rule weighs with its own score; siftctl test's
  score, the symbols, X-Spam-Score and X-Spam-Status agree; the load log
  shows required= as the headers do;
- rule errors (a regex that does not compile, an unknown directive, an if
  without endif, a bad score) make `filterd -t` and `siftctl spam lint` fail
  with file:line for each (at most 20 listed); an empty ruleset and
  spam_kill_level = abc are refused; unknown evals are listed but are not
  errors (their rules never score);
- the stock SpamAssassin ruleset (Debian's /usr/share/spamassassin) loads
  without errors; `siftctl spam compile` fills the Hyperscan cache, which
  the next load uses.
"""

import json
import os
import re
import shutil
import subprocess
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402

SRC = sifttest.srcdir()
BUILD = sifttest.builddir()
SIFTCTL = sifttest.program('siftctl')


def conf(root, name, settings, plugins='spam'):
    path = os.path.join(root, name + '.conf')
    base = {'plugin_directory': os.path.join(BUILD, 'plugins'), 'inbound_plugins': plugins,
            'originating_plugins': plugins, 'myhostname': 'mx.sift.test',
            'quarantine_directory': os.path.join(root, 'quarantine'),
            'filterd_user': sifttest.daemon_user()}
    base.update(settings)
    return sifttest.write_conf(path, base)


def siftctl(cfg, *args, timeout=600):
    return subprocess.run([SIFTCTL, '-c', cfg] + list(args), capture_output=True, text=True, timeout=timeout)


def run_test(cfg, msg, *extra):
    return sifttest.siftctl_test(cfg, msgfile=msg, timeout=600, args=[
        '--helo', 'client.example.test', '--client', '192.0.2.10', '--from', 'sender@example.test',
        '--to', 'user@sift.test'] + list(extra))


# __FILL_THIS_FORM_SHORT2 with its nested tags left as text: a prefilter
# automaton of 1.2 MB with no top-level prefix that Hyperscan takes.
HUGE_RULE = r'''(?:(?:a?\s?copy\sof\s)?(?:(?:your|din|seu|twoje)[\s,:]{1,5})?(?:present\s|c[uo]rrent\s|full(?:st[\xe4]ndigt)?\s?|complete\s|direct\s|private?\s|valid\s|personal\s|nuvarande\s|vollst[\xe4]ndige\s|aktuelle\s|pe\s(?:ne\s)?){0,3}(?:<FF_A1>|<FF_A2>|<FF_N1>|<FF_P1>|<FF_M1>|<FF_F1>|<FF_F2>|<FF_F3>|<FF_F4>|<FF_F5>|<FF_L1>)(?:\sin\s(?:full|words)|\scompleto)?:?(?:\s?[({][^)}]{1,30}[)}])?(?:(?:[^-=_.,:;*\w]{0,3}(?:[-=_.,:;*\s\x85]|&\#\d{1,3};|[\xe2][\x80][\xa6]){1,100})|(?:\s?[\/&+,]\s?|\sor\s|\sand?\s))){3}'''


def write(root, name, text):
    p = os.path.join(root, name)
    with open(p, 'wb') as f:
        f.write(text.encode() if isinstance(text, str) else text)
    return p


GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
CLEAN = ('From: Alice <alice@example.test>\nTo: user@sift.test\nSubject: lunch\n'
         'Date: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <a1@example.test>\n\nLunch tomorrow at noon?\n')

SYNTAX_RULES = r'''
required_score 4.5
loadplugin Mail::SpamAssassin::Plugin::Test
header   T_SUBJ_CAPS   Subject =~ /\bFREE\b/
header   T_FROM_ADDR   From:addr =~ /^promo\@bulk\.example$/
header   T_FROM_NAME   From:name =~ /^Best Deals$/
header   T_TOCC        ToCc =~ /carol\@/
header   T_MSGID_3RD   MESSAGEID =~ /<xid\@/
header   T_ALL         ALL =~ /^X-Mailer: Blaster/m
header   T_RAW         Subject:raw =~ /=\?utf-8\?B\?/i
header   T_ENC         Subject =~ /Caf\xc3\xa9/
header   T_EXISTS      exists:X-Mailer
header   T_NOTEXISTS   exists:X-Nothing
header   T_UNSET       X-Nothing =~ /^fallback$/ [if-unset: fallback]
header   T_NEG         Subject !~ /hello/
header   T_NEG_MISS    X-Nothing !~ /x/
body     T_BODY        /click here now/i
body     T_HTMLTXT     /visible words/
body     T_SCRIPT      /hidden script/
rawbody  T_RAWHTML     /<b>visible/
full     T_FULL        /^Received: from bulk/m
uri      T_URI         /^https?:\/\/spam\.example\//
mimeheader T_MIMEH     Content-Type =~ /text\/html/
body     T_MULTI       /buy/
tflags   T_MULTI       multiple maxhits=3
meta     T_META_BOOL   T_BODY && !T_NEG_MISS_NEVER
meta     T_META_ARITH  (T_MULTI + T_BODY) >= 4
meta     T_META_NOT    !T_BODY
meta     __SUB         T_BODY
meta     T_META_SUB    __SUB && T_URI
score    T_SUBJ_CAPS   2.0 2.5 3.0 3.5
score    T_BODY        1.5
if (version >= 3.004000)
header   T_IF_TRUE     Subject =~ /FREE/
endif
if (version < 3.000000)
header   T_IF_FALSE    Subject =~ /FREE/
else
header   T_ELSE        Subject =~ /FREE/
endif
ifplugin Mail::SpamAssassin::Plugin::Test
header   T_IFPLUGIN    Subject =~ /FREE/
endif
ifplugin Mail::SpamAssassin::Plugin::NotLoaded
header   T_IFPLUGIN_NO Subject =~ /FREE/
endif
replace_tag  CLICK   c[l1]ick
body     T_REPLACE     /<CLICK> here/i
replace_rules T_REPLACE
header   T_SYM         eval:check_sift_symbol('TEST_SYMBOL')
symbol_score TEST_SYMBOL 0.5
header   T_COUNT       eval:check_header_count_range('Received', 2, 3)
include  inc.cf
header   DEF_SCORE     Subject =~ /FREE/
'''
INC_RULES = 'header T_INCLUDED Subject =~ /FREE/\n'

SYNTAX_MSG = (
    'Received: from bulk.example (bulk.example [198.51.100.7])\n\tby mx.sift.test; Mon, 1 Jan 2024 10:00:00 +0000\n'
    'Received: from x by y; Mon, 1 Jan 2024 09:59:00 +0000\n'
    'From: Best Deals <promo@bulk.example>\nTo: bob@sift.test\nCc: carol@sift.test\n'
    'Subject: FREE =?utf-8?B?Q2Fmw6k=?= offer\nX-Mailer: Blaster 3\nX-Spam-Status: Yes, forged\n'
    'X-Message-Id: <xid@bulk.example>\n'
    'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b1"\n\n'
    '--b1\nContent-Type: text/plain; charset=us-ascii\n\nClick here now!\nbuy buy buy buy buy\n'
    'http://spam.example/offer\n'
    '--b1\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n'
    '<html><script>hidden script</script><b>visible words</b> <a href=3D"https://spam.example/x">c1ick here</a></html>\n'
    '--b1--\n')


def main():
    root = tempfile.mkdtemp(prefix='sift-spam-')
    os.chmod(root, 0o755)  # filterd -t runs the plugins' init as the daemon user
    os.makedirs(os.path.join(root, 'quarantine'))
    own = os.path.join(SRC, 'rules')
    try:
        base = {'spam_rules': own}
        cfg = conf(root, 'own', base)
        # lint of our own rules
        r = siftctl(cfg, 'spam', 'lint')
        check(r.returncode == 0 and '0 error(s)' in r.stdout, 'own rules lint clean', r.stdout + r.stderr)

        gt = write(root, 'gtube.eml', 'From: a@example.test\nTo: user@sift.test\nSubject: test\n\n%s\n' % GTUBE)
        res = run_test(cfg, gt)
        check('error' not in res, 'siftctl test --json works', res)
        if 'error' not in res:
            check(res.get('action') == 'reject', 'GTUBE rejected', res)
            check('554' in json.dumps(res) and '5.7.1' in json.dumps(res), 'GTUBE reply 554 5.7.1', res)
        r = siftctl(cfg, 'spam', 'check', gt)
        check('GTUBE' in r.stdout and re.search(r'SPAM, score=100\d', r.stdout), 'spam check GTUBE', r.stdout)

        # clean message, tagged always (tag_level -inf) to see the header
        cl = write(root, 'clean.eml', CLEAN)
        cfg2 = conf(root, 'tagall', dict(base, spam_tag_level='-inf'))
        r = siftctl(cfg2, 'test', '--helo', 'client.example.test', '--client', '192.0.2.10', cl)
        out = r.stdout
        check(r.returncode == 0 and re.search(r'(?m)^action: accept$', out) is not None,
              'clean accepted', out + r.stderr)
        st = re.search(r'X-Spam-Status: (.*(?:\n .*)*)', out)
        unfolded = st.group(1).replace('\n ', ' ') if st else ''
        check(re.fullmatch(r'No, score=-?[0-9.]+ tagged_above=-?[0-9.]+ required=6\.2 tests=\[[^\]]*\] '
                           r'autolearn=no autolearn_force=no', unfolded) is not None,
              'clean X-Spam-Status in the seed format', out)
        check('X-Spam-Flag' not in out and 'X-Spam-Score: 0' in out and 'X-Spam-Level:' in out,
              'clean: score and level headers, no flag', out)

        # tag2 without kill: flag and subject prefix
        spammy = write(root, 'spammy.eml', 'From: a@example.test\nTo: user@sift.test\nSubject: offer\n'
                       'X-Spam-Flag: YES\nX-Spam-Status: No, forged\n\n%s\n' % GTUBE)
        cfg3 = conf(root, 'nokill', dict(base, spam_kill_level='none'))
        r = siftctl(cfg3, 'test', '--helo', 'localhost', '--client', '192.0.2.10', spammy)
        out = r.stdout
        check('header add: X-Spam-Flag: YES' in out, 'tag2: X-Spam-Flag added', out)
        check('header change #1: Subject: ***SPAM*** offer' in out, 'tag2: subject prefixed', out)
        # a tag written without its trailing space gets one, as in SpamAssassin
        cfg3b = conf(root, 'nokill-tag', dict(base, spam_kill_level='none', spam_subject_tag='[SPAM]'))
        r = siftctl(cfg3b, 'test', '--helo', 'localhost', '--client', '192.0.2.10', spammy)
        check('header change #1: Subject: [SPAM] offer' in r.stdout,
              'spam_subject_tag = [SPAM]: "[SPAM] offer"', r.stdout)
        check('SIFT_HELO_LOCALHOST' in out and 'MISSING_DATE' in out and 'MISSING_MID' in out,
              'HELO localhost, missing Date and Message-ID scored', out)
        check('header delete #1: X-Spam-Status' in out and 'header delete #1: X-Spam-Flag' in out,
              'incoming X-Spam-Status and X-Spam-Flag removed', out)
        check('reject' not in out.split('action:')[1].split('\n')[0] if 'action:' in out else False,
              'kill_level none: not rejected', out)

        # kill actions
        for action, expect in (('discard', 'discard'), ('tempfail', 'tempfail'), ('quarantine', 'discard')):
            c = conf(root, 'kill-' + action, dict(base, spam_kill_action=action))
            res = run_test(c, gt)
            check(res.get('action') == expect, 'kill_action %s -> %s' % (action, expect), res)
        qfiles = os.listdir(os.path.join(root, 'quarantine'))
        check(len(qfiles) >= 1, 'quarantine: message stored', qfiles)

        # originating profile levels
        c = conf(root, 'orig', dict(base, spam_originating_kill_level='none'))
        res = run_test(c, gt, '--profile', 'originating')
        check('error' not in res and res.get('action') != 'reject', 'originating kill level none', res)

        # rule syntax
        rdir = os.path.join(root, 'syntax')
        os.makedirs(rdir)
        write(rdir, 'test.cf', SYNTAX_RULES)
        write(rdir, 'inc.cf', INC_RULES)
        sm = write(root, 'syntax.eml', SYNTAX_MSG)
        cfg4 = conf(root, 'syntax', {'spam_rules': os.path.join(rdir, 'test.cf')},
                    plugins='testplug spam')
        # the test plugin adds symbols when told; fall back to spam alone
        r = siftctl(cfg4, 'spam', 'check', '--json', sm)
        if r.returncode != 0 or not r.stdout.strip():
            cfg4 = conf(root, 'syntax', {'spam_rules': os.path.join(rdir, 'test.cf')})
            r = siftctl(cfg4, 'spam', 'check', '--json', sm)
        try:
            res = json.loads(r.stdout.splitlines()[0])
        except (ValueError, IndexError):
            res = {}
        hits = {t['name']: t['score'] for t in res.get('tests', [])}
        expect_hit = ['T_SUBJ_CAPS', 'T_FROM_ADDR', 'T_FROM_NAME', 'T_TOCC', 'T_MSGID_3RD', 'T_ALL', 'T_RAW', 'T_ENC', 'T_EXISTS',
                      'T_UNSET', 'T_NEG', 'T_BODY', 'T_HTMLTXT', 'T_RAWHTML', 'T_FULL', 'T_URI', 'T_MIMEH', 'T_MULTI',
                      'T_META_BOOL', 'T_META_ARITH', 'T_META_SUB', 'T_IF_TRUE', 'T_ELSE', 'T_IFPLUGIN', 'T_REPLACE',
                      'T_COUNT', 'T_INCLUDED', 'T_NEG_MISS', 'DEF_SCORE']
        expect_miss = ['T_NOTEXISTS', 'T_SCRIPT', 'T_META_NOT', 'T_IF_FALSE', 'T_IFPLUGIN_NO',
                       '__SUB', 'T_SYM']
        for n in expect_hit:
            check(n in hits, 'syntax: %s hits' % n, sorted(hits))
        for n in expect_miss:
            check(n not in hits, 'syntax: %s does not hit' % n, sorted(hits))
        check(hits.get('T_SUBJ_CAPS') == 2.0, 'four-score form uses set 0', hits.get('T_SUBJ_CAPS'))
        check(hits.get('T_BODY') == 1.5 and hits.get('DEF_SCORE') == 1, 'explicit and default scores', hits)
        check(hits.get('T_IF_TRUE') == 0.01 if 'T_IF_TRUE' in hits else False, 'T_ rules default 0.01', hits)
        r = siftctl(cfg4, 'spam', 'check', sm)
        check('required=6.2' in r.stdout, 'check prints the tag2 level', r.stdout)
        # PCRE2 alone (no Hyperscan prefilter) finds exactly the same rules
        r = subprocess.run([SIFTCTL, '-c', cfg4, '-o', 'spam_hyperscan=no', 'spam', 'check', '--json', sm],
                           capture_output=True, text=True, timeout=600)
        try:
            res2 = json.loads(r.stdout.splitlines()[0])
        except (ValueError, IndexError):
            res2 = {}
        check({t['name'] for t in res2.get('tests', [])} == set(hits), 'same hits with spam_hyperscan = no',
              (sorted(hits), res2))

        # another plugin's symbol: symbol_score and check_sift_symbol
        pdir = os.path.join(root, 'plugins')
        os.makedirs(pdir)
        shutil.copy(os.path.join(BUILD, 'plugins', 'spam.so'), pdir)
        shutil.copy(os.path.join(BUILD, 'tests', 'testplug.so'), pdir)
        cfg6 = conf(root, 'sym', {'spam_rules': os.path.join(rdir, 'test.cf'),
                                  'plugin_directory': pdir, 'testplug_symbol': 'TEST_SYMBOL:0.3'},
                    plugins='testplug spam')
        res = run_test(cfg6, sm)
        syms = {s['name']: s['score'] for s in res.get('symbols', [])}
        check('T_SYM' in syms and syms.get('TEST_SYMBOL') in (0.5, 0.3),
              'check_sift_symbol and symbol_score see another plugin\'s symbol', res)
        check(list(syms.values()).count(0.5) >= 1, 'symbol_score weight 0.5 applied', syms)

        # one score: a symbol weighed by symbol_score counts once (with the
        # rules' weight), one no rule weighs counts with its own score; the
        # summary score, X-Spam-Score and X-Spam-Status agree
        for sym, weight, listed in (('SPF_softfail:1', 0.972, 'SPF_SOFTFAIL=0.972'),
                                    ('OTHER_SYM:0.25', 0.25, 'OTHER_SYM=0.25')):
            c = conf(root, 'one', {'spam_rules': own, 'plugin_directory': pdir, 'testplug_symbol': sym,
                                   'spam_tag_level': '-inf'}, plugins='testplug spam')
            res = run_test(c, cl)
            hdr = {h['name']: h['value'] for h in res.get('headers', [])}
            st = re.sub(r'\r?\n', '', hdr.get('X-Spam-Status', ''))
            name = sym.split(':')[0]
            syms = [x for x in res.get('symbols', []) if x['name'].lower() == name.lower()]
            m = re.search(r'score=(-?[0-9.]+) ', st)
            check(len(syms) == 1 and abs(syms[0]['score'] - weight) < 1e-9 and listed in st and
                  m is not None and float(m.group(1)) == res.get('score') and
                  float(hdr.get('X-Spam-Score', 'nan')) == res.get('score') and
                  abs(sum(x['score'] for x in res.get('symbols', [])) - res.get('score', 0)) < 1e-9,
                  'one score with %s: summary = X-Spam-Score = X-Spam-Status' % name, (res, st))
        c = conf(root, 'req', {'spam_rules': own})
        r = subprocess.run([sifttest.program('filterd'), '-c', c, '-t'], capture_output=True, text=True,
                           timeout=120)
        check('required=6.2' in r.stderr and 'required_score' not in r.stderr,
              'the load log shows the required= of the headers', r.stderr[-600:])

        # rule errors: filterd -t and siftctl spam lint refuse the rules with
        # file:line for each error (the same list)
        bad = os.path.join(root, 'bad.cf')
        write(root, 'bad.cf', 'body BAD_RE /foo(/\nheader BAD_EVAL eval:no_such_function()\n'
              'meta BAD_META (A &&\nbody OK_RULE /fine/\nscore OK_RULE x\nbogus_directive 1\n'
              'if (1)\nbody IN_IF /x/\n')
        cfg5 = conf(root, 'bad', {'spam_rules': bad})
        r = siftctl(cfg5, 'spam', 'lint')
        check(r.returncode == 1, 'lint exits 1 on errors', r.returncode)
        for where, what in (('bad.cf:1:', 'BAD_RE'), ('bad.cf:3:', 'BAD_META'), ('bad.cf:5:', 'OK_RULE'),
                            ('bad.cf:6:', "unknown directive 'bogus_directive'"), ('bad.cf:8:', 'without endif')):
            check(re.search(re.escape(where) + '.*' + re.escape(what), r.stdout + r.stderr) is not None,
                  'lint names %s %s' % (where, what), r.stdout + r.stderr)
        check('BAD_EVAL' not in r.stdout + r.stderr, 'an unknown eval is not an error', r.stdout + r.stderr)
        t = subprocess.run([sifttest.program('filterd'), '-c', cfg5, '-t'], capture_output=True, text=True,
                           timeout=120)
        check(t.returncode == 1 and '5 error(s) in the rules' in t.stderr and
              all(w in t.stderr for w in ('bad.cf:1:', 'bad.cf:3:', 'bad.cf:5:', 'bad.cf:6:', 'bad.cf:8:')),
              'filterd -t fails with file:line for every error', (t.returncode, t.stderr))
        # many errors: listed up to a bound
        write(root, 'many.cf', ''.join('body MANY_%d /(/\n' % i for i in range(40)))
        t = subprocess.run([sifttest.program('filterd'), '-c', conf(root, 'many', {
            'spam_rules': os.path.join(root, 'many.cf')}), '-t'], capture_output=True, text=True, timeout=120)
        check(t.returncode == 1 and 'many.cf:20:' in t.stderr and 'many.cf:21:' not in t.stderr and
              '... and 20 more' in t.stderr, 'errors listed up to 20', t.stderr[-600:])
        # an empty ruleset is an error
        empty = os.path.join(root, 'empty')
        os.makedirs(empty)
        t = subprocess.run([sifttest.program('filterd'), '-c', conf(root, 'empty', {'spam_rules': empty}), '-t'],
                           capture_output=True, text=True, timeout=120)
        check(t.returncode == 1 and 'no active rules in ' + empty in t.stderr, 'empty ruleset refused',
              (t.returncode, t.stderr))
        # a plugin value error is refused and names the parameter
        t = subprocess.run([sifttest.program('filterd'), '-c', conf(root, 'kill', dict(base, spam_kill_level='abc')),
                            '-t'], capture_output=True, text=True, timeout=120)
        check(t.returncode == 1 and 'spam_kill_level' in t.stderr and 'abc' in t.stderr,
              'spam_kill_level = abc refused', (t.returncode, t.stderr))
        # rules SpamAssassin skips load: unknown evals never score
        write(root, 'skip.cf', 'header BAD_EVAL eval:no_such_function()\nbody OK_RULE /fine/\n'
              'ifplugin Mail::SpamAssassin::Plugin::NoSuchThing\nno_such_plugin_directive x\nendif\n')
        cfg7 = conf(root, 'skip', {'spam_rules': os.path.join(root, 'skip.cf')})
        r = siftctl(cfg7, 'spam', 'lint')
        check(r.returncode == 0 and 'unknown-eval' in r.stdout and 'BAD_EVAL' in r.stdout,
              'unknown evals listed, not errors', (r.returncode, r.stdout, r.stderr))
        bm = write(root, 'bad.eml', 'Subject: x\n\nfine foo( stuff\n')
        r = siftctl(cfg7, 'spam', 'check', '--json', bm)
        check('BAD_EVAL' not in r.stdout and 'OK_RULE' in r.stdout, 'unknown eval never scores', r.stdout)

        # the stock ruleset, when installed
        if os.path.isdir('/usr/share/spamassassin'):
            # shared with test_postfix.py: the second user loads the cache;
            # ./check's sanitizer stage gives the normal build's (SIFT_SPAM_CACHE)
            cache = os.environ.get('SIFT_SPAM_CACHE') or os.path.join(BUILD, 'spam-hscache')
            os.makedirs(cache, exist_ok=True)
            # test_postfix.py hands the cache to the daemons' user; this test
            # runs siftctl as the user running the tests: take it back
            for d, _, files in os.walk(cache):
                for path in [d] + [os.path.join(d, f) for f in files]:
                    if os.lstat(path).st_uid != os.getuid():
                        os.lchown(path, os.getuid(), os.getgid())
            stock = conf(root, 'stock', {'spam_rules': '/usr/share/spamassassin /etc/spamassassin %s' % own,
                                         'spam_cache_directory': cache})
            r = siftctl(stock, 'spam', 'lint', timeout=900)
            m = re.search(r'rules: (\d+) active', r.stdout)
            check(m is not None and int(m.group(1)) > 2000, 'stock ruleset loads (> 2000 active rules)',
                  r.stdout[-2000:] + r.stderr[-2000:])
            # every eval of the stock ruleset is implemented
            check(r.returncode == 0 and 'unknown-eval' not in r.stdout and '(0 unknown evals)' in r.stdout,
                  'stock ruleset: no errors, no unknown eval', (r.returncode, r.stdout[-500:], r.stderr[-1500:]))
            r = siftctl(stock, 'spam', 'compile', timeout=900)
            check(r.returncode == 0 and len(os.listdir(cache)) > 0, 'siftctl spam compile fills the cache',
                  (r.returncode, r.stdout, r.stderr, os.listdir(cache)))
            r = siftctl(stock, 'spam', 'lint', timeout=900)
            check('through Hyperscan prefilters' in r.stdout, 'cached databases in use', r.stdout[-500:])
            # a rule whose prefilter automaton alone is over 1 MB is prefiltered
            # by a top-level prefix that fits (__FILL_THIS_FORM_LOAN1: 2.7 MB
            # whole, 35 KB up to its first item that must match; the fuzzy
            # rules by a short prefix, FUZZY_OBLIGATION: 1.5 MB whole) or, for
            # most look-alike rules, checked in C instead (native.c's
            # sequences: FUZZY_CREDIT)
            r = siftctl(stock, 'spam', 'lint', '-v', timeout=900)
            fallback = re.findall(r'^pcre2-fallback: [^:]+:\d+: (\w+):', r.stdout, re.M)
            native = re.findall(r'^native: [^:]+:\d+: (\w+):', r.stdout, re.M)
            check('__FILL_THIS_FORM_LOAN1' not in fallback and 'FUZZY_OBLIGATION' not in fallback and
                  'FUZZY_CREDIT' not in fallback,
                  'stock ruleset: rules over 1 MB of Hyperscan prefiltered by a prefix that fits', fallback)
            check('FUZZY_CREDIT' in native and '__LONGWORDS_A' in native and '__HEXHASHWORD_S2EU' in native
                  and '__LONGLINE' in native and '__E_LIKE_LETTER' in native and '__LOWER_E' in native
                  and len(native) >= 80 and not set(native) & set(fallback),
                  'stock ruleset: lint -v lists the rules with a native check apart', native)
            # ... and stays out of the database, matched by PCRE2 alone, when none
            # fits (T_HUGE: HUGE_RULE behind a negative lookahead, 1.2 MB, one
            # item, not relaxed). The same regex without the lookahead fits an
            # exact database once its large repeats are unbounded (T_RELAXED):
            # a prefilter still, PCRE2 confirms what it finds.
            hdir = os.path.join(root, 'huge')
            os.makedirs(hdir)
            write(hdir, '10_huge.cf', 'body T_HUGE /(?!zzz)%s/i\nbody T_RELAXED /%s/i\nbody T_SMALL /lunch/\n'
                  'body T_REPEAT /buy now/\ntflags T_REPEAT multiple maxhits=1000\n'
                  'meta T_COUNTED (T_REPEAT == 300)\n' % (HUGE_RULE, HUGE_RULE))
            huge = conf(root, 'huge', {'spam_rules': hdir, 'spam_cache_directory': os.path.join(root, 'huge-cache')})
            os.makedirs(os.path.join(root, 'huge-cache'))
            siftctl(huge, 'spam', 'compile', timeout=900)
            r = siftctl(huge, 'spam', 'lint', '-v', timeout=900)
            fallback = re.findall(r'^pcre2-fallback: [^:]+:\d+: (\w+):', r.stdout, re.M)
            check('through Hyperscan prefilters' in r.stdout and 'T_HUGE' in fallback and 'T_SMALL' not in fallback,
                  'a rule over 1 MB of Hyperscan with no prefix that fits is left to PCRE2', r.stdout[-1500:])
            check('(1 of them with large repeats relaxed, 0 tried at start offsets, ' in r.stdout and
                  'T_RELAXED' not in fallback,
                  'a long rule too large for Hyperscan is prefiltered with its large repeats relaxed',
                  r.stdout[-1500:])
            form = write(root, 'form.eml', 'Subject: form\n\nPlease send <FF_N1> ____ <FF_A1>: ____ '
                         '<FF_P1> ...... today.\n')
            noform = write(root, 'noform.eml', 'Subject: lunch\n\nlunch: <FF_N1> ____ <FF_A1> at noon\n')
            r = siftctl(huge, 'spam', 'check', '--json', form, noform, timeout=900)
            hits = [sorted(t['name'] for t in json.loads(x)['tests']) for x in r.stdout.splitlines()]
            check(hits == [['T_HUGE', 'T_RELAXED'], ['T_SMALL']],
                  'the relaxed prefilter finds the form, PCRE2 turns down two fields', hits)
            # a body pattern of 3 octets or more reports every match it finds
            # (no HS_FLAG_SINGLEMATCH): a rule is a line's candidate once,
            # and its matches are counted once, here 300 over two lines
            rep = write(root, 'repeat.eml', 'Subject: offer\n\n%s\n' % ('buy now ' * 300))
            huge_nohs = conf(root, 'huge-nohs', {'spam_rules': hdir, 'spam_hyperscan': 'no'})
            for name, c in (('hyperscan', huge), ('pcre2', huge_nohs)):
                r = siftctl(c, 'spam', 'check', '--json', rep, timeout=900)
                hits = [sorted(t['name'] for t in json.loads(x)['tests']) for x in r.stdout.splitlines()]
                check(hits == [['T_COUNTED', 'T_REPEAT']],
                      '%s: a rule matching 300 times in the body counts 300' % name, (hits, r.stderr[-500:]))
            # a damaged cache file is compiled again, never used: cut short,
            # a database length past the end, a rule's flags out of range
            hcache = os.path.join(root, 'huge-cache')
            body = [os.path.join(hcache, f) for f in os.listdir(hcache) if f.startswith('spam-body-')]
            check(len(body) == 1, 'one body database file in the cache', os.listdir(hcache))
            with open(body[0], 'rb') as f:
                good = f.read()
            n = struct.unpack('<I', good[8:12])[0]
            # a rule of the prefilter database (flag 1) that another shares
            indb = [i for i in range(n) if good[12 + i] == 1]
            check(len(indb) >= 2, 'two rules in the body prefilter database', good[12:12 + n])
            for what, bad in (('cut short', good[:30]),
                              ('a length past the end', good[:12 + n] + struct.pack('<Q', len(good)) +
                               good[20 + n:]),
                              ('a rule flag out of range', good[:12] + b'\x07' + good[13:]),
                              # in range: PCRE2 alone would run the rule too
                              ('a rule flag cleared', good[:12 + indb[0]] + b'\x00' + good[13 + indb[0]:]),
                              ('an octet of the database changed',
                               good[:len(good) - 40] + bytes([good[len(good) - 40] ^ 0x10]) + good[len(good) - 39:])):
                with open(body[0], 'wb') as f:
                    f.write(bad)
                r = siftctl(huge, 'spam', 'check', '--json', rep, form, timeout=900)
                hits = [sorted(t['name'] for t in json.loads(x)['tests']) for x in r.stdout.splitlines()]
                check('unreadable or stale: compiled again' in r.stderr and
                      hits == [['T_COUNTED', 'T_REPEAT'], ['T_HUGE', 'T_RELAXED']],
                      'a cache file with %s is compiled again' % what, (hits, r.stderr[-800:]))
            with open(body[0], 'wb') as f:
                f.write(good)
            # the cache keeps itself: a database file or a leftover temporary
            # file unused for 30 days is removed when the databases are next
            # loaded or compiled; a recent one stays, and so does what is
            # not the cache's; every load touches the files it reads
            old = time.time() - 40 * 86400
            stale = {'spam-body-00000000000000aa.hsdb': old, '.spam-body.AbC123': old,
                     'spam-body-00000000000000bb.hsdb': time.time() - 2 * 86400, 'notes.txt': old}
            for name, t in stale.items():
                write(hcache, name, 'x')
                os.utime(os.path.join(hcache, name), (t, t))
            os.utime(body[0], (old, old))
            r = siftctl(huge, 'spam', 'lint', timeout=900)
            left = sorted(os.listdir(hcache))
            check('spam-body-00000000000000aa.hsdb' not in left and '.spam-body.AbC123' not in left and
                  'spam-body-00000000000000bb.hsdb' in left and 'notes.txt' in left and
                  os.path.basename(body[0]) in left,
                  'cache files unused for 30 days removed, recent ones and other files kept',
                  (left, r.stderr[-800:]))
            check(os.path.exists(body[0]) and time.time() - os.stat(body[0]).st_mtime < 600,
                  'a cache file loaded is marked as used (modification time)',
                  os.stat(body[0]).st_mtime if os.path.exists(body[0]) else None)
            r = siftctl(stock, 'spam', 'check', gt, timeout=900)
            check('GTUBE' in r.stdout, 'stock ruleset: GTUBE', r.stdout[-1500:])
            # the form rules too large for PCRE2 as written (__FILL_THIS_FORM_
            # LONG1/2, SHORT1/2) are tried at the offsets where the starts
            # database says a match may start: the same hits as PCRE2 alone
            r = siftctl(stock, 'spam', 'lint', timeout=900)
            m = re.search(r'(\d+) tried at start offsets', r.stdout)
            check(m is not None and int(m.group(1)) >= 2, 'stock ruleset: the form rules have start offsets',
                  r.stdout[-600:])
            form = write(root, 'stock-form.eml', 'From: a@example.test\nTo: b@example.test\nSubject: your claim\n'
                         'Date: Wed, 01 Jan 2025 12:00:00 +0000\nMessage-ID: <f1@example.test>\n\n'
                         'Dear winner, to receive your prize send us the following.\n\n'
                         'Your full name: ________ address: ________ phone number: ________ age: ________ '
                         'occupation: ________ country: ________\n\nRegards\n')
            noform = write(root, 'stock-noform.eml', 'From: a@example.test\nTo: b@example.test\nSubject: minutes\n'
                           'Date: Wed, 01 Jan 2025 12:00:00 +0000\nMessage-ID: <f2@example.test>\n\n'
                           'The name of the project is on the address list, and the phone of the office is at '
                           'the age of the country.\n')
            # five one-word fields: the starts database reports exactly the
            # five repetitions' offsets, so a chain count one too high
            # (prefilter_chain) would lose the match
            form5 = write(root, 'stock-form5.eml', 'From: a@example.test\nTo: b@example.test\nSubject: claim\n'
                          'Date: Wed, 01 Jan 2025 12:00:00 +0000\nMessage-ID: <f3@example.test>\n\n'
                          'Dear winner, send us the following.\n\n'
                          'Age: ________ sex: ________ city: ________ gender: ________ religion: ________\n\n'
                          'Regards\n')
            nohs = conf(root, 'stock-nohs', {'spam_rules': '/usr/share/spamassassin /etc/spamassassin %s' % own,
                                             'spam_cache_directory': cache, 'spam_hyperscan': 'no'})
            got = {}
            for name, c in (('hyperscan', stock), ('pcre2', nohs)):
                r = siftctl(c, 'spam', 'check', '--json', form, noform, form5, timeout=900)
                got[name] = [sorted(t['name'] for t in json.loads(x)['tests']) for x in r.stdout.splitlines()]
            hs_hits = got['hyperscan']
            check(len(hs_hits) == 3 and 'FILL_THIS_FORM_LONG' in hs_hits[0] and
                  not any(t.startswith('FILL_THIS_FORM') for t in hs_hits[1]) and 'FILL_THIS_FORM_LONG' in hs_hits[2],
                  'stock ruleset: forms of six and of five fields hit FILL_THIS_FORM_LONG, the same words in prose '
                  'do not', hs_hits)
            check(got['hyperscan'] == got['pcre2'], 'stock ruleset: form rules at start offsets hit as PCRE2 alone',
                  got)
            r = siftctl(stock, 'spam', 'check', '--json', sm, timeout=900)
            check(r.returncode == 0 and '"score"' in r.stdout, 'stock ruleset scores a message', r.stdout[-500:])
    finally:
        if not os.environ.get('SIFT_KEEP_TMP'):
            shutil.rmtree(root, ignore_errors=True)
    return done()


if __name__ == '__main__':
    sys.exit(main())
