#!/usr/bin/python3
"""The status page as filterd and policyd serve it, in headless Chromium,
after a batch of mail through a private Postfix (tests/lib/sifttest.py).

filterd (milter: inbound access, then spam with Sift's rules/ plus two
test rules; originating access, then clamav with a small signature
database, quarantining) and policyd (policy service: access) run with
metrics_listen on free ports of 127.0.0.1. The batch: 12 clean messages
(10 inbound, 2 on the submission port: originating; 3 inbound ones match
a low-scoring test rule), 3 refused at the end of data by spam (GTUBE
once, a test rule above the kill level twice), one held by an access map
(Postfix's hold queue), EICAR on the submission port (quarantined) and
one recipient refused by policyd. Then, for each daemon, GET / is loaded
in Chromium and the rendered page must show:

- filterd: accept 12, reject 3, hold 1, quarantine 1; profiles inbound
  14 and originating 3; the last-hour graph with at least one point,
  whose bars add up to the same per action; in the recent list every
  queue id Postfix gave or logged for the batch, each with its action,
  sender and profile; the test rules and GTUBE among the top symbols
  with their hit counts; latency rows for access, spam and clamav; the
  health section (generation 1, no plugin error); the quarantined
  message in the quarantine list with the virus name;
- policyd (no trusted network: every client needs a credential of
  metrics_auth_file): without one the browser gets no page; with the
  Basic user and password given when asked, the page and the status.json
  it reads both load; then requests, one per RCPT (18), one of them
  refused, the graph adding up to the same, the refused recipient in the
  recent list;
- the same numbers as status.json, and no console error.

Full-page screenshots go to BUILD/tests/status/ (filterd.png, policyd.png,
filterd-phone.png; paths printed).

    /usr/bin/python3 tests/status/page_daemons.py
"""

import base64
import json
import os
import pwd
import re
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'clamav', 'tests'))
import sifttest  # noqa: E402
from sifttest import check, check_eq, done, message  # noqa: E402
from chromium import BrowserError, Chromium, find_chromium  # noqa: E402
import statuspage  # noqa: E402
import cvlib  # noqa: E402

GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
TEST_RULES = ('body SIFT_TEST_NEWSLETTER /status-page-newsletter/\nscore SIFT_TEST_NEWSLETTER 0.5\n'
              'describe SIFT_TEST_NEWSLETTER test rule: a newsletter\n'
              'body SIFT_TEST_KILL /status-page-kill/\nscore SIFT_TEST_KILL 12\n'
              'describe SIFT_TEST_KILL test rule: above the kill level\n')
REFUSED_RCPT = 'refused@sift.test'
HELD_SENDER = 'review@example.net'
# What the batch must show (send_batch): filterd's actions and profiles,
# policyd's requests.
FILTERD_ACTIONS = {'accept': 12, 'reject': 3, 'hold': 1, 'quarantine': 1}
FILTERD_PROFILES = {'inbound': 14, 'originating': 3}
POLICYD_REQUESTS = 18
BASIC = ('admin', 'status page secret')


def get_json(port, path='/status.json', basic=None):
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (port, path))
    if basic:
        req.add_header('Authorization', 'Basic ' + base64.b64encode(('%s:%s' % basic).encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_status(port, want, basic=None, timeout=15.0):
    """status.json once the sum of its actions reaches `want` (the last
    document after the timeout)."""
    end = time.monotonic() + timeout
    while True:
        try:
            s = get_json(port, basic=basic)
        except OSError:
            s = None
        if s and sum((s.get('actions') or {}).values()) >= want or time.monotonic() > end:
            return s
        time.sleep(0.2)


def start(tmp):
    rules = os.path.join(tmp, 'rules')
    os.makedirs(rules)
    with open(os.path.join(rules, 'test.cf'), 'w') as f:
        f.write(TEST_RULES)
    with open(os.path.join(tmp, 'p_rcpt'), 'w') as f:
        f.write('%s\tREJECT test: recipient refused by policyd\n' % REFUSED_RCPT)
    with open(os.path.join(tmp, 'f_sender'), 'w') as f:
        f.write('%s\tHOLD kept for review\n' % HELD_SENDER)
    dbdir = os.path.join(tmp, 'clamdb')
    cvlib.make_db(dbdir)
    authfile = os.path.join(tmp, 'metrics.auth')
    with open(authfile, 'w') as f:
        f.write('basic = %s:%s\n' % BASIC)
    if sifttest.daemon_user():
        os.chown(authfile, pwd.getpwnam(sifttest.daemon_user()).pw_uid, -1)
    os.chmod(authfile, 0o600)
    qdir = os.path.join(tmp, 'quarantine')
    os.makedirs(qdir)
    sifttest.daemon_writable(qdir)
    fport, pport = sifttest.free_port(), sifttest.free_port()
    filterd = sifttest.start_daemon('filterd', tmp, {
        'filterd_pid_file': os.path.join(tmp, 'filterd.pid'),
        'inbound_plugins': 'access spam', 'originating_plugins': 'access clamav',
        'originating_daemons': 'ORIGINATING', 'myhostname': 'mx.sift.test',
        'access_sender_map': 'texthash:' + os.path.join(tmp, 'f_sender'),
        'spam_rules': '%s %s' % (os.path.join(sifttest.srcdir(), 'rules'), rules),
        'clamav_database_directory': dbdir, 'clamav_ready_wait': '30s',
        'clamav_originating_action': 'quarantine',
        'quarantine_directory': qdir,
        'metrics_listen': 'inet:127.0.0.1:%d' % fport}, start_timeout=30.0)
    filterd.metrics = fport
    policyd = sifttest.start_daemon('policyd', tmp, {
        'policyd_pid_file': os.path.join(tmp, 'policyd.pid'),
        'inbound_plugins': 'access', 'originating_plugins': 'access',
        'access_recipient_map': 'texthash:' + os.path.join(tmp, 'p_rcpt'),
        'metrics_listen': 'inet:127.0.0.1:%d' % pport,
        'metrics_trusted_networks': '', 'metrics_auth_file': authfile})
    policyd.metrics = pport
    return filterd, policyd


def send_batch(pf):
    """Sends the batch; returns [(queue_id, action, sender, profile)] and
    the number of policy requests (one per RCPT)."""
    sent = []
    for i in range(12):
        sender = 'clean%d@example.test' % i
        body = 'Hello, message %d.\n%s\n' % (i, 'status-page-newsletter' if i % 3 == 0 else '')
        msg = message('clean %d' % i, sender=sender, body=body)
        if i in (4, 9):
            sender = 'user%d@sift.test' % i
            r = pf.send_submission(sender, ['friend@example.test'], message('out %d' % i, sender=sender))
            sent.append((r.queue_id, 'accept', sender, 'originating'))
        else:
            r = pf.send(sender, ['user@sift.test'], msg)
            sent.append((r.queue_id, 'accept', sender, 'inbound'))
        check(r.accepted and r.queue_id, 'clean %d accepted' % i, r)
    for i, body in enumerate([GTUBE, 'buy now status-page-kill', 'status-page-kill again']):
        sender = 'spam%d@example.net' % i
        mark = pf.log_mark()
        r = pf.send(sender, ['user@sift.test'], message('spam %d' % i, sender=sender, body=body + '\n'))
        check(r.rejected_at() == 'eom' and r.eom[0] == 554, 'spam %d refused at the end of data' % i, r)
        m = pf.wait_log(r'(\w+): milter-reject: END-OF-MESSAGE .*from=<%s>' % re.escape(sender), 10, start=mark)
        check(m is not None, 'Postfix logs the refusal of spam %d with its queue id' % i, pf.log()[mark:])
        sent.append((m.group(1) if m else None, 'reject', sender, 'inbound'))
    r = pf.send(HELD_SENDER, ['user@sift.test'], message('for review', sender=HELD_SENDER))
    check(r.accepted and r.queue_id, 'held message accepted', r)
    sent.append((r.queue_id, 'hold', HELD_SENDER, 'inbound'))
    data, _ = cvlib.infected_messages()['plain']
    r = pf.send_submission('user@sift.test', ['friend@example.test'], data)
    check(r.accepted and r.queue_id, 'EICAR on submission accepted (quarantined)', r)
    sent.append((r.queue_id, 'quarantine', 'user@sift.test', 'originating'))
    r = pf.send('someone@example.test', [REFUSED_RCPT], message('refused', to=REFUSED_RCPT))
    check(r.rejected_at() == 'rcpt' and r.rcpts[0][0] == 554 and 'refused by policyd' in r.rcpts[0][1],
          'recipient refused by policyd', r)
    return sent, POLICYD_REQUESTS


def check_filterd_page(b, doc, sent):
    s = statuspage.snapshot(b)
    check_eq(s['state'], 'ok', 'filterd: page state ok')
    check_eq(s['daemon'], 'filterd', 'filterd: page names filterd')
    acts = {a: v['count'] for a, v in s['actions'].items() if v['count']}
    check_eq(acts, FILTERD_ACTIONS, 'filterd: action counts are what was sent')
    check_eq({a: s['actions'].get(a, {}).get('text') for a in FILTERD_ACTIONS},
             {a: str(n) for a, n in FILTERD_ACTIONS.items()}, 'filterd: the counts as text')
    check_eq(s['profiles'], FILTERD_PROFILES, 'filterd: profiles')
    total = sum(FILTERD_ACTIONS.values())
    check('%d messages' % total in (s['unitText'] or ''), 'filterd: %d messages since start' % total,
          s['unitText'])
    pts = [p for p in s['points'] if p['total']]
    check(len(pts) >= 1, 'filterd: the graph has points', s['points'])
    check_eq(sum(p['total'] for p in s['points']), total, 'filterd: the graph adds up to %d' % total)
    per = {}
    for p in s['points']:
        for a, n in p['actions'].items():
            per[a] = per.get(a, 0) + n
    check_eq(per, FILTERD_ACTIONS, 'filterd: the graph\'s bars by action')
    check(all(sum(p['heights']) > 0 for p in pts), 'filterd: the points are drawn', pts)
    rows = {r['queue_id']: r for r in s['recent']}
    for qid, action, sender, profile in sent:
        r = rows.get(qid)
        check(r is not None and r['action'] == action and r['from'] == sender and r['profile'] == profile,
              'filterd: recent shows %s (%s, %s, %s)' % (qid, action, sender, profile), r)
    syms = {x['name']: x['hits'] for x in s['symbols']}
    check(syms.get('GTUBE') == 1, 'filterd: GTUBE among the top symbols, 1 hit', syms)
    check(syms.get('SIFT_TEST_KILL') == 2, 'filterd: SIFT_TEST_KILL, 2 hits', syms)
    check(syms.get('SIFT_TEST_NEWSLETTER') == 3, 'filterd: SIFT_TEST_NEWSLETTER, 3 hits', syms)
    gtube = [r for r in s['recent'] if 'GTUBE' in r.get('symbols', '')]
    check(len(gtube) == 1 and gtube[0]['action'] == 'reject' and float(gtube[0]['score'] or 0) >= 1000,
          'filterd: the GTUBE message with its score and symbols', gtube)
    plugins = {p['name']: p for p in s['plugins']}
    check({'access', 'spam', 'clamav'} <= set(plugins), 'filterd: plugin rows for access, spam and clamav',
          s['plugins'])
    spam = plugins.get('spam', {})
    check(spam.get('p99') not in (None, '') and float(spam['p99']) > 0 and spam.get('errors') == '0',
          'filterd: spam latency shown, no error', spam)
    check('reject 3' in spam.get('verdicts', ''), 'filterd: spam verdicts', spam)
    check('whole message' in (s['wholeRow'] or ''), 'filterd: whole-message latency', s['wholeRow'])
    h = s['health']
    check(h['generation'] and h['generation']['value'] == str(doc.get('generation')),
          'filterd: configuration generation', (h['generation'], doc.get('generation')))
    check(h['plugin_errors'] and h['plugin_errors']['value'] == '0', 'filterd: no plugin errors', h['plugin_errors'])
    check(s['quarantineShown'] and s['quarantineCount'] == 1, 'filterd: one message in quarantine',
          (s['quarantineShown'], s['quarantineCount']))
    qrows = s['quarantine']
    check(len(qrows) == 1 and cvlib.EICAR_NAME in qrows[0].get('reason', '') and
          qrows[0].get('from') == 'user@sift.test' and qrows[0].get('to') == 'friend@example.test',
          'filterd: the quarantined message with its virus name', qrows)
    same_as_json(s, doc, 'filterd')


def check_policyd_page(b, doc, requests):
    s = statuspage.snapshot(b)
    check_eq(s['state'], 'ok', 'policyd: page state ok')
    check_eq(s['unit'], 'requests', 'policyd: unit requests')
    total = sum(v['count'] for v in s['actions'].values())
    check_eq(total, requests, 'policyd: one request per RCPT')
    check_eq(s['actions'].get('reject', {}).get('count'), 1, 'policyd: one refused')
    check_eq(sum(p['total'] for p in s['points']), requests, 'policyd: the graph adds up')
    refused = [r for r in s['recent'] if r.get('to') == REFUSED_RCPT]
    check(len(refused) == 1 and refused[0]['action'] == 'reject', 'policyd: recent shows the refused recipient',
          s['recent'])
    check(not s['quarantineShown'] or s['quarantineCount'] == 0, 'policyd: no quarantine items')
    same_as_json(s, doc, 'policyd')


def same_as_json(s, doc, tag):
    """What the page shows against the status.json read just before."""
    check_eq({a: v['count'] for a, v in s['actions'].items()}, doc.get('actions') or {},
             '%s: actions as in status.json' % tag)
    # The minutes with traffic (the window itself moves on with the clock).
    check_eq({p['t']: p['actions'] for p in s['points'] if p['total']},
             {p['t']: {a: n for a, n in p['actions'].items() if n}
              for p in (doc.get('history') or {}).get('points', []) if any(p['actions'].values())},
             '%s: graph points as in status.json' % tag)
    check_eq([r['queue_id'] for r in s['recent']], [r.get('queue_id') or None for r in doc.get('recent') or []],
             '%s: recent list as in status.json' % tag)


def main():
    if os.geteuid() != 0:
        check(False, 'needs root (private Postfix)')
        return done()
    if not find_chromium():
        check(False, 'chromium is installed (Debian package chromium)')
        return done()
    tmp = tempfile.mkdtemp(prefix='sift-status-', dir=os.environ.get('SIFT_TEST_TMP'))
    os.chmod(tmp, 0o755)
    out = statuspage.out_dir()
    things = []
    try:
        filterd, policyd = start(tmp)
        things += [filterd, policyd]
        pf = sifttest.Postfix(root=os.path.join(tmp, 'postfix'), submission=True,
                              milters=['inet:127.0.0.1:%d' % filterd.port],
                              policy='inet:127.0.0.1:%d' % policyd.port)
        things.append(pf)
        pf.start()
        sent, requests = send_batch(pf)
        fdoc = wait_status(filterd.metrics, sum(FILTERD_ACTIONS.values()))
        pdoc = wait_status(policyd.metrics, requests, basic=BASIC)
        check(fdoc is not None and pdoc is not None, 'both daemons serve status.json')
        with Chromium(tmp, os.path.join(out, 'chromium.log')) as b:
            try:
                b.open('http://127.0.0.1:%d/' % policyd.metrics, width=1200, height=900)
                got = b.evaluate('document.body.dataset.state || document.body.textContent.slice(0, 200)')
            except BrowserError as e:
                got = str(e)
            check('ERR_INVALID_AUTH_CREDENTIALS' in got or 'nauthorized' in got,
                  'policyd: no page without a credential', got)
            for name, proc, doc, fn, arg, cred in (
                    ('filterd', filterd, fdoc, check_filterd_page, sent, None),
                    ('policyd', policyd, pdoc, check_policyd_page, requests, BASIC)):
                b.open('http://127.0.0.1:%d/' % proc.metrics, width=1200, height=900, credentials=cred)
                check(b.wait_for('document.body.dataset.state !== "loading"'), '%s: page loaded' % name)
                fn(b, doc, arg)
                if cred:
                    # One challenge, for the page: the browser sends the
                    # same credentials with the page's status.json requests.
                    b.wait_for('Number(document.body.dataset.updates) >= 2', 12)
                    asked = [e for e in b.page_events() if e['method'] == 'Fetch.authRequired']
                    check(len(asked) == 1 and statuspage.snapshot(b)['updates'] >= 2,
                          '%s: asked once, status.json read with the same credentials' % name,
                          [e['params']['request']['url'] for e in asked])
                check_eq(b.errors(), [], '%s: no console error' % name)
                shot = os.path.join(out, name + '.png')
                print('# screenshot %s (%d octets)' % (shot, b.screenshot(shot)), flush=True)
            b.open('http://127.0.0.1:%d/' % filterd.metrics, width=390, height=844, scale=2, mobile=True)
            b.wait_for('document.body.dataset.state !== "loading"')
            s = statuspage.snapshot(b)
            check(s['state'] == 'ok' and s['scrollWidth'] <= s['innerWidth'], 'phone: no horizontal scrolling',
                  (s['state'], s['scrollWidth'], s['innerWidth']))
            check_eq(b.errors(), [], 'phone: no console error')
            shot = os.path.join(out, 'filterd-phone.png')
            print('# screenshot %s (%d octets)' % (shot, b.screenshot(shot)), flush=True)
    except Exception as e:  # noqa: BLE001 - report and fail
        import traceback
        traceback.print_exc()
        check(False, 'status page test ran', '%s: %s' % (type(e).__name__, e))
        for t in things:
            if isinstance(t, sifttest.Proc):
                print('# %s log:\n%s' % (t.name, t.log_tail(40)), flush=True)
    finally:
        sifttest.stop_all(things)
        if not os.environ.get('SIFT_KEEP_TMP'):
            sifttest.shutil.rmtree(tmp, ignore_errors=True)
    return done()


if __name__ == '__main__':
    sys.exit(main())
