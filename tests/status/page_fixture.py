#!/usr/bin/python3
"""The status page (lib/status.html) in headless Chromium against fixed
status documents, served by a small HTTP server on 127.0.0.1 as the daemons
serve it (/ = the page with lib/http.c's Content-Security-Policy,
/status.json = the data):

- the file is self-contained (no URL to another origin, no external
  script, style, font or image) and small;
- tests/status/fixture.json (filterd, a busy hour; some strings hold
  markup): every counter, history point, plugin, symbol, recent message
  and quarantine item is shown with the fixture's values; strings are shown
  as text, never run or parsed as markup; no console error;
- tests/status/fixture-policyd.json (policyd: unit "requests", no
  quarantine, no ClamAV, no reload yet): shown as such;
- sections that are missing or null in the document leave the page working;
- the server failing after a good load turns the state line into an error
  and keeps the last data;
- a 390-pixel-wide (phone) window has no horizontal scrolling.

Screenshots go to BUILD/tests/status/ (paths printed).

    /usr/bin/python3 tests/status/page_fixture.py
"""

import http.server
import json
import os
import re
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
sys.path.insert(0, HERE)
import sifttest  # noqa: E402
from sifttest import check, check_eq, done  # noqa: E402
from chromium import Chromium, find_chromium  # noqa: E402
import statuspage  # noqa: E402


# The policy lib/http.c sends with the page: anything the page would load
# from elsewhere, or any inline handler, is refused and shows up as a
# console error.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       "connect-src 'self'")


class Server:
    """/ -> lib/status.html, /status.json -> self.doc (a dict, or an int:
    that HTTP status)."""

    def __init__(self, page):
        self.page = page
        self.doc = None
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                path = self.path.split('?', 1)[0]
                if path == '/':
                    self.reply(200, 'text/html; charset=utf-8', server.page)
                elif path == '/status.json' and isinstance(server.doc, int):
                    self.reply(server.doc, 'text/plain', b'error\n')
                elif path == '/status.json':
                    self.reply(200, 'application/json', json.dumps(server.doc).encode())
                else:
                    self.reply(404, 'text/plain', b'not found\n')

            def reply(self, code, ctype, body):
                self.send_response(code)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(body)))
                self.send_header('Cache-Control', 'no-store')
                if ctype.startswith('text/html'):
                    self.send_header('Content-Security-Policy', CSP)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def check_static(page):
    text = page.decode('utf-8')
    check(len(page) < 30 * 1024, 'lib/status.html is under 30 KB (%d octets)' % len(page))
    urls = [u for u in re.findall(r'(?:https?:)?//[\w.-]+[^\s"\'<>)]*', text)
            if u != 'http://www.w3.org/2000/svg']
    check(urls == [], 'no URL to another origin in the page', urls)
    check(re.search(r'<(?:script|img|link|iframe)[^>]+\b(?:src|href)\s*=\s*"(?!data:)', text) is None,
          'no external script, style, image or frame')
    check(re.search(r'@import|@font-face|url\(', text) is None, 'no external style or font')
    check('innerHTML' not in text and 'insertAdjacentHTML' not in text and 'document.write' not in text,
          'the page never parses data as HTML')


def history_sums(doc):
    pts = doc['history']['points']
    return [sum(v for v in p['actions'].values()) for p in pts]


def check_filterd(b, doc, tag):
    s = statuspage.snapshot(b)
    check_eq(s['state'], 'ok', '%s: state ok' % tag)
    check_eq(s['daemon'], 'filterd', '%s: daemon' % tag)
    check('filterd' in s['title'], '%s: title names the daemon' % tag, s['title'])
    for a, n in doc['actions'].items():
        got = s['actions'].get(a, {})
        check(got.get('count') == n and re.sub(r'\D', '', got.get('text') or '') == str(n),
              '%s: action %s shows %d' % (tag, a, n), got)
    check_eq(s['actionsTotal'], sum(doc['actions'].values()), '%s: total of the actions' % tag)
    check('messages' in s['unitText'], '%s: unit is messages' % tag, s['unitText'])
    check_eq(s['profiles'], doc['profiles'], '%s: profiles' % tag)
    sums = history_sums(doc)
    check_eq(len(s['points']), len(doc['history']['points']), '%s: one graph point per minute' % tag)
    check_eq(s['svgPoints'], len(s['points']), '%s: the graph counts its points' % tag)
    check_eq([p['total'] for p in s['points']], sums, '%s: each point\'s total' % tag)
    check_eq([p['t'] for p in s['points']], [p['t'] for p in doc['history']['points']],
             '%s: points in time order' % tag)
    check_eq([p['actions'] for p in s['points']],
             [{a: v for a, v in p['actions'].items() if v} for p in doc['history']['points']],
             '%s: the bars of every point' % tag)
    tallest = max(range(len(sums)), key=lambda i: sums[i])
    check(all(sum(p['heights']) <= sum(s['points'][tallest]['heights']) + 1e-6 for p in s['points']) and
          sum(s['points'][tallest]['heights']) > 50, '%s: the busiest minute is the highest bar' % tag)
    check_eq(sorted(s['legend']), sorted({a for p in doc['history']['points'] for a in p['actions']}),
             '%s: legend lists the actions of the hour' % tag)
    check_eq([p['name'] for p in s['plugins']], [p['name'] for p in doc['plugins']], '%s: plugins in order' % tag)
    lat = doc['latency']['plugins']
    check(all(float(p['p50']) == lat[p['name']]['p50'] and float(p['p99']) == lat[p['name']]['p99']
              for p in s['plugins']), '%s: p50/p99 of every plugin' % tag, s['plugins'])
    spam = next(p for p in s['plugins'] if p['name'] == 'spam')
    check_eq(spam['p99Text'], '71.0 ms', '%s: p99 in milliseconds' % tag)
    clam = next(p for p in s['plugins'] if p['name'] == 'clamav')
    check(clam['errors'] == '1' and 'quarantine 41' in clam['verdicts'], '%s: plugin errors and verdicts' % tag,
          clam)
    check('whole message' in (s['wholeRow'] or '') and '21.3 ms' in s['wholeRow'],
          '%s: whole-message latency row' % tag, s['wholeRow'])
    check_eq([(x['name'], x['hits']) for x in s['symbols']], [(x['name'], x['hits']) for x in doc['symbols']],
             '%s: top symbols' % tag)
    rec = doc['recent']
    check_eq([r['queue_id'] for r in s['recent']], [r['queue_id'] for r in rec], '%s: recent queue ids' % tag)
    check_eq([r['action'] for r in s['recent']], [r['action'] for r in rec], '%s: recent actions' % tag)
    check_eq([r['from'] for r in s['recent']], [r['from'] or '<>' for r in rec], '%s: senders as text' % tag)
    check_eq([r['to'] for r in s['recent']],
             [', '.join(r['to']) + (' +%d more' % (r['to_count'] - len(r['to'])) if r['to_count'] > len(r['to']) else '')
              for r in rec], '%s: recipients (and how many more)' % tag)
    check_eq([r['symbols'] for r in s['recent']], [' '.join(r['symbols']) for r in rec], '%s: symbols' % tag)
    check_eq(s['scoreShown'], True, '%s: score column' % tag)
    check_eq([r['score'] for r in s['recent']],
             ['' if r['score'] is None else ('%.2f' % r['score'] if r['score'] % 1 else '%.0f' % r['score'])
              for r in rec], '%s: scores' % tag)
    q = doc['quarantine']
    check(s['quarantineShown'] and s['quarantineCount'] == q['count'], '%s: quarantine shown' % tag)
    check_eq([(i['id'], i['reason'], i['from']) for i in s['quarantine']],
             [(i['id'], '%s (%s)' % (i['reason'], i['plugin']), i['from'] or '<>') for i in q['items']],
             '%s: quarantine items' % tag)
    h = s['health']
    check(h['generation'] and h['generation']['value'] == str(doc['generation']), '%s: generation' % tag, h)
    check(h['last_reload'] and h['last_reload']['value'] == 'ok' and 'generation 3 loaded' in h['last_reload']['text'],
          '%s: last reload ok with its text' % tag, h['last_reload'])
    check(h['uptime'] and h['uptime']['text'].startswith('3d 5h'), '%s: uptime' % tag, h['uptime'])
    check(h['clamav'] and h['clamav']['text'] == 'version 27479, 7h 13m old', '%s: ClamAV database age' % tag,
          h['clamav'])
    check(h['plugin_errors'] and h['plugin_errors']['value'] == '1' and 'bad' in h['plugin_errors']['cls'],
          '%s: plugin errors flagged' % tag, h['plugin_errors'])
    check(h['rss'] and h['rss']['text'].startswith('46 MiB'), '%s: memory' % tag, h['rss'])
    check(h['connections'] and h['connections']['text'] == '2 open, 12,874 since start', '%s: connections' % tag,
          h['connections'])
    check(s['foreign'] == [] and s['pwned'] is None, '%s: markup in the data stays text' % tag,
          (s['foreign'], s['pwned']))
    return s


def check_policyd(b, doc, tag):
    s = statuspage.snapshot(b)
    check_eq(s['state'], 'ok', '%s: state ok' % tag)
    check_eq(s['unit'], 'requests', '%s: unit' % tag)
    check('requests' in s['unitText'], '%s: counters say requests' % tag, s['unitText'])
    check_eq({a: v['count'] for a, v in s['actions'].items()}, doc['actions'], '%s: actions' % tag)
    check_eq([p['total'] for p in s['points']], history_sums(doc), '%s: history points' % tag)
    check(not s['quarantineShown'], '%s: no quarantine section' % tag)
    check(s['health']['clamav'] is None, '%s: no ClamAV line' % tag, s['health']['clamav'])
    check_eq(s['scoreShown'], False, '%s: no score column' % tag)
    check(s['health']['last_reload'] and s['health']['last_reload']['value'] == 'none', '%s: no reload yet' % tag,
          s['health']['last_reload'])
    check_eq([r['queue_id'] for r in s['recent']], [None] * len(doc['recent']), '%s: requests have no queue id' % tag)
    check('whole request' in (s['wholeRow'] or ''), '%s: whole-request latency' % tag, s['wholeRow'])
    check_eq(s['symbols'], [], '%s: no symbols' % tag)


def main():
    if not find_chromium():
        check(False, 'chromium is installed (Debian package chromium)')
        return done()
    with open(statuspage.page_path(), 'rb') as f:
        page = f.read()
    check_static(page)
    fixture = statuspage.load_json(os.path.join(HERE, 'fixture.json'))
    policyd = statuspage.load_json(os.path.join(HERE, 'fixture-policyd.json'))
    out = statuspage.out_dir()
    tmp = tempfile.mkdtemp(prefix='sift-status-page-', dir=os.environ.get('SIFT_TEST_TMP'))
    srv = Server(page)
    url = 'http://127.0.0.1:%d/' % srv.port
    try:
        with Chromium(tmp, os.path.join(out, 'chromium-fixture.log')) as b:
            srv.doc = fixture
            b.open(url, width=1200, height=900)
            check(b.wait_for('document.body.dataset.state !== "loading"') and True, 'page loaded')
            check_filterd(b, fixture, 'filterd')
            check_eq(b.errors(), [], 'filterd: no console error')
            check('/status.json' in srv.requests, 'the page reads /status.json', srv.requests)
            shot = os.path.join(out, 'fixture-filterd.png')
            print('# screenshot %s (%d octets)' % (shot, b.screenshot(shot)), flush=True)

            # The server fails: the error is shown, the data stays.
            srv.doc = 503
            check(b.wait_for('document.body.dataset.state === "error"', 12), 'a failed refresh is shown')
            s = statuspage.snapshot(b)
            check('HTTP 503' in s['status'] and len(s['recent']) == len(fixture['recent']),
                  'error text, last data kept', s['status'])
            srv.doc = fixture
            check(b.wait_for('document.body.dataset.state === "ok"', 12), 'the next refresh recovers')

            # Sections missing or null.
            sparse = {k: fixture[k] for k in ('daemon', 'version', 'now', 'unit')}
            sparse.update({'actions': None, 'clamav': None, 'history': {'step': 60, 'points': []}, 'recent': None,
                           'latency': {'whole': None}, 'quarantine': {'count': 0, 'bytes': 0}})
            srv.doc = sparse
            b.open(url, width=1200, height=900)
            b.wait_for('document.body.dataset.state !== "loading"')
            s = statuspage.snapshot(b)
            check(s['state'] == 'ok' and s['points'] == [] and s['recent'] == [] and s['quarantineShown'] and
                  s['health']['clamav']['text'] == 'not loaded', 'sparse document: shown without error', s)
            check_eq(b.errors(), [], 'sparse document: no console error')

            # policyd on a phone.
            srv.doc = policyd
            b.open(url, width=390, height=844, scale=2, mobile=True)
            b.wait_for('document.body.dataset.state !== "loading"')
            check_policyd(b, policyd, 'policyd')
            s = statuspage.snapshot(b)
            check(s['scrollWidth'] <= s['innerWidth'], 'phone: no horizontal scrolling',
                  (s['scrollWidth'], s['innerWidth']))
            check_eq(b.errors(), [], 'policyd: no console error')
            shot = os.path.join(out, 'fixture-policyd-phone.png')
            print('# screenshot %s (%d octets)' % (shot, b.screenshot(shot)), flush=True)
            srv.doc = fixture
            b.open(url, width=390, height=844, scale=1, mobile=True)
            b.wait_for('document.body.dataset.state !== "loading"')
            s = statuspage.snapshot(b)
            check(s['state'] == 'ok' and s['scrollWidth'] <= s['innerWidth'],
                  'phone: filterd without horizontal scrolling', (s['scrollWidth'], s['innerWidth']))
            shot = os.path.join(out, 'fixture-filterd-phone.png')
            print('# screenshot %s (%d octets)' % (shot, b.screenshot(shot)), flush=True)
    except Exception as e:  # noqa: BLE001 - report and fail
        check(False, 'browser session', '%s: %s' % (type(e).__name__, e))
    finally:
        srv.stop()
        sifttest.shutil.rmtree(tmp, ignore_errors=True)
    return done()


if __name__ == '__main__':
    sys.exit(main())
