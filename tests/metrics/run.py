#!/usr/bin/python3
"""The metrics listener and the status of both daemons (suite metrics).

filterd (inbound: clamav then spam; originating: clamav with
clamav_originating_action = quarantine) behind a private Postfix
(tests/lib/sifttest.py), and policyd (access with a sender map), each with
metrics_listen on a free port of 127.0.0.1 and a control socket. After real
traffic (clean, GTUBE, EICAR and tagged messages on port 25, clean and
EICAR on the submission port; policy requests answered DUNNO and REJECT):

  - /metrics passes `promtool check metrics` and its counters equal what
    was sent (messages or requests by profile and action, plugin verdicts,
    the latency histograms' counts, symbol hits, quarantine, connections,
    generation, reloads);
  - /status.json parses and its numbers match (actions, profiles, history,
    recent messages with their queue ids, symbols, quarantine, clamav);
  - access: the listener runs on 127.0.0.1, a loopback address, which is
    trusted by default; a reload with metrics_trusted_networks empty makes
    every client a remote one (no second, non-loopback address is
    available to a test: only 127.0.0.0/8 may be used, all of it loopback),
    so the credential path is what a remote client meets: no or a wrong
    credential 401, the token or the basic password 200, an auth file
    readable by others refused;
  - oversized and malformed requests get 4xx (an HTTP/1.1 request
    without Host 400), a ninth concurrent connection 503, a silent client
    408, and the daemon keeps serving; an error answer to HEAD (401, 404,
    400, 421) has the Content-Length of the GET's and no body;
  - DNS rebinding: a request whose Host names another host
    (attacker.example) gets 421 on every path, GET and HEAD, and so does
    one whose Origin does; IP literals and localhost are served, a name
    only once listed in metrics_allowed_hosts (case and a trailing dot
    ignored), and not after a reload empties it;
  - `siftctl status` and `siftctl status --json` for both daemons;
  - while filterd's plugins initialise (testplug_init_delay), before any
    configuration runs, every path answers 503 with Retry-After and no
    Basic challenge, to a trusted client too, then 200 once they are ready;
    its last reload time in /metrics equals /status.json's within a
    millisecond, its process start time the kernel's within 50 ms (they
    were rounded to 10 s).
"""

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'clamav', 'tests'))
import sifttest  # noqa: E402

passed = failed = 0
GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
TOKEN = 'tok-3f9a1c2e7b'
BASIC = ('prom', 'pa:ss w0rd')


def check(cond, what, detail=''):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print('FAIL: %s %s' % (what, str(detail)[-3000:] if detail else ''), file=sys.stderr)


def msg(subject, body, sender='sender@example.test', to='user@sift.test'):
    return ('From: Sender <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n'
            'Message-ID: <%s.%f@example.test>\r\n\r\n%s\r\n'
            % (sender, to, subject, abs(hash(subject)), time.time(), body)).encode()


def http(port, path, headers=None):
    """(status, body bytes, headers) of GET path."""
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (port, path), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def raw(port, data, timeout=15):
    """The status of the answer to raw request bytes (0: none)."""
    m = re.match(rb'HTTP/1\.1 (\d{3}) ', raw_answer(port, data, timeout))
    return int(m.group(1)) if m else 0


def check_head_error(port, data, want, what):
    """A HEAD request answered with error status `want`: the head says the
    Content-Length a GET's body would have, and no body follows."""
    got = raw_answer(port, data)
    head, _, body = got.partition(b'\r\n\r\n')
    m = re.match(rb'HTTP/1\.1 (\d{3}) (.*?)\r\n', head)
    length = re.search(rb'\r\nContent-Length: (\d+)\r\n', head + b'\r\n')
    check(m is not None and int(m.group(1)) == want and length is not None
          and int(length.group(1)) == len(b'%d %s\n' % (want, m.group(2))) and body == b'',
          'HEAD, %s -> %d: the Content-Length of the GET, no body' % (what, want), got[-300:])


def raw_answer(port, data, timeout=15):
    """The whole answer to raw request bytes."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        got = b''
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except OSError:
            pass
    return got


def parse_metrics(text):
    """{'name{labels}': value} of the samples, labels as written."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith('#'):
            key, val = line.rsplit(' ', 1)
            out[key] = float(val)
    return out


def promtool(text, what):
    r = subprocess.run(['promtool', 'check', 'metrics'], input=text.encode(), capture_output=True,
                       timeout=60)
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          '%s: promtool check metrics passes' % what, (r.stdout + r.stderr).decode())


def siftctl(conf, *args):
    return subprocess.run([sifttest.program('siftctl'), '-c', conf] + list(args), capture_output=True,
                          text=True, timeout=60)


def metric(m, name, **labels):
    key = name + ('{' + ','.join('%s="%s"' % kv for kv in labels.items()) + '}' if labels else '')
    return m.get(key)


def send_all(pf, eicar):
    """Sends the traffic; returns the queue ids of the accepted messages."""
    qids = []
    plan = [('clean %d' % i, 'a clean message number %d' % i, None) for i in range(5)]
    plan += [('gtube %d' % i, GTUBE, 'reject') for i in range(2)]
    plan += [('eicar', eicar, 'reject'), ('tagged', 'metrics-spammy-marker', None)]
    for subject, body, want in plan:
        r = pf.send('sender@example.test', ['user@sift.test'], msg(subject, body))
        check(r.accepted if want is None else r.rejected_at() == 'eom', 'inbound %s: %s' % (subject, want or 'accepted'), r)
        if r.accepted:
            qids.append(r.queue_id)
    for subject, body in (('out clean', 'an outgoing message'), ('out eicar', eicar)):
        r = pf.send('local@sift.test', ['someone@example.test'], msg(subject, body, 'local@sift.test'),
                    port=pf.submission_port)
        check(r.accepted, 'originating %s accepted' % subject, r)
        if r.accepted:
            qids.append(r.queue_id)
    return qids


def check_filterd_metrics(port, clam):
    st, body, hdr = http(port, '/metrics')
    check(st == 200 and hdr.get('Content-Type', '').startswith('text/plain; version=0.0.4'),
          'filterd /metrics 200 text/plain 0.0.4', (st, dict(hdr)))
    text = body.decode()
    promtool(text, 'filterd /metrics')
    m = parse_metrics(text)
    want = {('inbound', 'accept'): 6, ('inbound', 'reject'): 3, ('originating', 'accept'): 1,
            ('originating', 'quarantine'): 1}
    for (pr, a), n in want.items():
        got = metric(m, 'sift_filterd_messages_total', profile=pr, action=a)
        check(got == n, 'messages_total{%s,%s} = %d' % (pr, a, n), got)
    total = sum(v for k, v in m.items() if k.startswith('sift_filterd_messages_total{'))
    check(total == 11, 'messages_total sums to the 11 messages sent', total)
    check(metric(m, 'sift_filterd_message_duration_seconds_count') == 11, 'message histogram counts 11',
          metric(m, 'sift_filterd_message_duration_seconds_count'))
    check(metric(m, 'sift_filterd_message_duration_seconds_bucket', le='+Inf') == 11, '+Inf bucket = 11')
    check(metric(m, 'sift_filterd_plugin_verdicts_total', plugin='spam', verdict='reject') == 2,
          'spam rejected 2', metric(m, 'sift_filterd_plugin_verdicts_total', plugin='spam', verdict='reject'))
    clam_runs = sum(v for k, v in m.items()
                    if k.startswith('sift_filterd_plugin_verdicts_total{plugin="clamav"'))
    check(clam_runs == 11, 'clamav has a verdict for each of the 11 messages', clam_runs)
    check(metric(m, 'sift_filterd_plugin_verdicts_total', plugin='clamav', verdict='reject') == 1,
          'clamav rejected 1')
    check(metric(m, 'sift_filterd_plugin_duration_seconds_count', plugin='clamav') == 11,
          'clamav latency histogram counts 11')
    check(metric(m, 'sift_filterd_plugin_errors_total', plugin='spam') == 0, 'spam: no errors')
    check(metric(m, 'sift_filterd_symbol_hits_total', symbol='GTUBE') == 2, 'GTUBE hits 2',
          metric(m, 'sift_filterd_symbol_hits_total', symbol='GTUBE'))
    check(metric(m, 'sift_filterd_symbol_hits_total', symbol='SIFT_TEST_METRICS') == 1,
          'SIFT_TEST_METRICS hits 1')
    check(metric(m, 'sift_filterd_quarantine_messages') == 1, 'quarantine_messages 1')
    check((metric(m, 'sift_filterd_quarantine_bytes') or 0) > 100, 'quarantine_bytes > 100')
    check(metric(m, 'sift_filterd_connections_total') == 11, 'connections_total 11 (one per session)',
          metric(m, 'sift_filterd_connections_total'))
    check(metric(m, 'sift_filterd_config_generation') == 1, 'config_generation 1')
    check(metric(m, 'sift_filterd_reloads_total') == 0, 'reloads_total 0')
    check((metric(m, 'process_resident_memory_bytes') or 0) > 1e6, 'process_resident_memory_bytes')
    check((metric(m, 'process_open_fds') or 0) > 3, 'process_open_fds')
    check((metric(m, 'sift_filterd_threads') or 0) >= 3, 'threads')
    check(metric(m, 'sift_filterd_dns_queries_total') is not None, 'dns_queries_total present')
    if clam:
        check(metric(m, 'sift_filterd_clamav_database_version') is not None, 'clamav database version')
    return m


def check_filterd_status(port, qids, clam):
    st, body, hdr = http(port, '/status.json')
    check(st == 200 and hdr.get('Content-Type') == 'application/json', 'status.json 200 application/json')
    s = json.loads(body)
    check(s['daemon'] == 'filterd' and s['unit'] == 'messages' and s['generation'] == 1,
          'status: daemon, unit, generation', s)
    check(s['actions'] == {'accept': 7, 'reject': 3, 'quarantine': 1}, 'status: actions', s['actions'])
    check(s['profiles'] == {'inbound': 9, 'originating': 2}, 'status: profiles', s['profiles'])
    check(s['latency']['whole']['count'] == 11 and s['latency']['plugins']['clamav']['count'] == 11,
          'status: latency counts', s['latency'])
    pts = s['history']['points']
    check(s['history']['step'] == 60 and len(pts) == 60 and all(pts[i]['t'] < pts[i + 1]['t'] for i in range(59)),
          'status: 60 history points, oldest first')
    hist = {}
    for p in pts:
        for a, n in p['actions'].items():
            hist[a] = hist.get(a, 0) + n
    check(hist == s['actions'], 'status: history sums to the actions', (hist, s['actions']))
    check(pts[-1]['t'] <= s['now'] < pts[-1]['t'] + 60, 'status: the last point is the current minute')
    rec = s['recent']
    check(len(rec) == 11, 'status: 11 recent messages', len(rec))
    check([r['time'] for r in rec] == sorted((r['time'] for r in rec), reverse=True), 'status: recent newest first')
    check(set(qids) <= {r['queue_id'] for r in rec}, 'status: the accepted queue ids are in recent', (qids, rec))
    check(rec[0]['action'] == 'quarantine' and rec[0]['profile'] == 'originating'
          and rec[0]['from'] == 'local@sift.test' and rec[0]['to'] == ['someone@example.test'],
          'status: newest is the quarantined one', rec[0])
    gt = [r for r in rec if 'GTUBE' in r['symbols']]
    check(len(gt) == 2 and all(r['action'] == 'reject' and r['score'] >= 1000 for r in gt),
          'status: GTUBE messages with score and symbols', gt)
    syms = {x['name']: x['hits'] for x in s['symbols']}
    check(syms.get('GTUBE') == 2 and len(s['symbols']) <= 20, 'status: symbols', s['symbols'])
    q = s['quarantine']
    check(q and q['count'] == 1 and q['items'][0]['from'] == 'local@sift.test'
          and q['items'][0]['to'] == ['someone@example.test'], 'status: quarantine', q)
    check(s['connections']['total'] == 11, 'status: connections', s['connections'])
    check(s['rss_bytes'] > 1e6 and s['threads'] >= 3 and s['fds'] > 3, 'status: process figures')
    check(set(s['dns']) == {'queries', 'timeouts', 'cache_hits'}, 'status: dns')
    if clam:
        check(s['clamav'] is not None and isinstance(s['clamav']['version'], int), 'status: clamav', s['clamav'])
    plug = {p['name']: p for p in s['plugins']}
    check(plug['spam']['verdicts'].get('reject') == 2 and plug['spam']['errors'] == 0,
          'status: spam plugin verdicts', plug.get('spam'))
    return s


def check_siftctl(conf, which, unit_line):
    r = siftctl(conf, 'status', which)
    text = r.stdout
    check(r.returncode == 0 and re.search(r'^%s 0\.\d+\.\d+, pid \d+, up \S+, generation \d+' % which, r.stdout, re.M)
          and re.search(unit_line, r.stdout, re.M), 'siftctl status %s' % which, r.stdout + r.stderr)
    r = siftctl(conf, 'status', which, '--json')
    try:
        js = json.loads(r.stdout)
    except ValueError:
        js = {}
    check(r.returncode == 0 and js.get('daemon') == which, 'siftctl status %s --json' % which, r.stdout + r.stderr)
    return text, js


def check_auth(fd, port, authfile):
    base = open(fd.conf).read()
    with open(fd.conf, 'a') as f:
        f.write('metrics_trusted_networks =\nmetrics_auth_file = %s\n' % authfile)
    r = siftctl(fd.conf, 'reload')
    check(r.returncode == 0, 'reload with no trusted network', r.stdout + r.stderr)
    st, body, hdr = http(port, '/metrics')
    check(st == 401 and 'Basic' in hdr.get('WWW-Authenticate', ''), 'no credential: 401', st)
    check_head_error(port, b'HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 401, 'no credential')
    check(http(port, '/status.json', {'Authorization': 'Bearer wrong'})[0] == 401, 'wrong token: 401')
    check(http(port, '/status.json', {'Authorization': 'Bearer ' + TOKEN[:-1]})[0] == 401, 'token prefix: 401')
    st, body, _ = http(port, '/status.json', {'Authorization': 'Bearer ' + TOKEN})
    check(st == 200 and json.loads(body)['generation'] == 2, 'token: 200 (generation 2)', (st, body[:200]))
    b64 = base64.b64encode(('%s:%s' % BASIC).encode()).decode()
    check(http(port, '/metrics', {'Authorization': 'Basic ' + b64})[0] == 200, 'basic: 200')
    bad = base64.b64encode(b'prom:nope').decode()
    check(http(port, '/metrics', {'Authorization': 'Basic ' + bad})[0] == 401, 'wrong password: 401')
    os.chmod(authfile, 0o644)
    check(http(port, '/metrics', {'Authorization': 'Bearer ' + TOKEN})[0] == 401,
          'auth file readable by others: refused')
    check(fd.wait_log(r'metrics_auth_file .*readable or writable by group or others', timeout=5),
          'the refused auth file is logged', fd.log_tail())
    check(TOKEN not in fd.log() and BASIC[1] not in fd.log(), 'no credential in the log')
    os.chmod(authfile, 0o600)
    with open(fd.conf, 'w') as f:
        f.write(base)
    r = siftctl(fd.conf, 'reload')
    check(r.returncode == 0 and http(port, '/metrics')[0] == 200, 'loopback trusted again after reload')
    m = parse_metrics(http(port, '/metrics')[1].decode())
    check(metric(m, 'sift_filterd_reloads_total') == 2 and metric(m, 'sift_filterd_last_reload_success') == 1
          and metric(m, 'sift_filterd_config_generation') == 3, 'reloads counted', m.get('sift_filterd_reloads_total'))


def check_bad_requests(fd, port):
    silent = socket.create_connection(('127.0.0.1', port), timeout=30)
    t0 = time.monotonic()
    cases = [
        (b'GET /metrics HTTP/1.1\r\nHost: x\r\n' + b'X-Pad: ' + b'a' * 9000 + b'\r\n\r\n', 431, 'oversized head'),
        (b'GET /metrics HTTP/1.1\r\n' + b''.join(b'X-H%d: v\r\n' % i for i in range(70)) + b'\r\n', 431,
         'too many header lines'),
        (b'\x00\x01\x02garbage\r\n\r\n', 400, 'garbage'),
        (b'GET metrics HTTP/1.1\r\n\r\n', 400, 'target without /'),
        (b'GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n', 400, 'obs-fold line'),
        (b'GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n', 400, 'header without colon'),
        (b'GET /' + b'a' * 300 + b' HTTP/1.1\r\n\r\n', 414, 'long target'),
        (b'POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc', 405, 'POST'),
        (b'GET /metrics HTTP/2.0\r\n\r\n', 505, 'HTTP/2.0'),
        (b'GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 404, 'unknown path'),
        (b'GET /metrics HTTP/1.1\r\n\r\n', 400, 'HTTP/1.1 without Host'),
        (b'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n\r\n', 400, 'two Host headers'),
        (b'GET /metrics HTTP/1.0\n\n', 200, 'bare LF, HTTP/1.0'),
        (b'HEAD /status.json HTTP/1.1\r\nHost: localhost\r\n\r\n', 200, 'HEAD'),
    ]
    for data, want, what in cases:
        got = raw(port, data)
        check(got == want, 'bad request: %s -> %d' % (what, want), got)
    for data, want, what in (
            (b'HEAD /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 404, 'unknown path'),
            (b'HEAD /metrics HTTP/1.1\r\n\r\n', 400, 'HTTP/1.1 without Host'),
            (b'HEAD /metrics HTTP/1.1\r\nHost: attacker.example\r\n\r\n', 421, 'a foreign Host')):
        check_head_error(port, data, want, what)
    idle = [socket.create_connection(('127.0.0.1', port), timeout=10) for _ in range(7)]
    time.sleep(0.3)
    got = raw(port, b'')
    check(got == 503, 'ninth concurrent connection: 503', '%r after %.1f s' % (got, time.monotonic() - t0))
    for s in idle:
        s.close()
    time.sleep(0.3)
    silent.settimeout(max(1, 20 - (time.monotonic() - t0)))
    try:
        got = silent.recv(4096)
    except OSError:
        got = b''
    silent.close()
    check(got.startswith(b'HTTP/1.1 408 '), 'silent client: 408 after the timeout', got[:60])
    st, body, _ = http(port, '/metrics')
    check(st == 200 and fd.alive(), 'still serving after bad requests')


def get(port, path, host, origin=None, method='GET'):
    """(status, answer bytes) of a request naming host (and origin)."""
    req = '%s %s HTTP/1.1\r\nHost: %s\r\n' % (method, path, host)
    if origin is not None:
        req += 'Origin: %s\r\n' % origin
    with socket.create_connection(('127.0.0.1', port), timeout=15) as s:
        s.sendall((req + '\r\n').encode())
        got = b''
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    m = re.match(rb'HTTP/1\.1 (\d{3}) ', got)
    return (int(m.group(1)) if m else 0), got


def check_rebinding(fd, port):
    """DNS rebinding: a browser on a page of attacker.example, once that
    name resolves to 127.0.0.1, connects from the (trusted) loopback and
    names attacker.example in Host (and Origin). Every path answers 421
    with none of the data; IP literals and localhost are served, a name of
    metrics_allowed_hosts once listed; an Origin naming another host is
    refused whatever the Host."""
    bad = 'attacker.example:%d' % port
    for path in ('/', '/index.html', '/status.json', '/metrics', '/nothing-here'):
        for method in ('GET', 'HEAD'):
            st, got = get(port, path, bad, method=method)
            check(st == 421 and b'sift_' not in got and b'"recent"' not in got and b'<html' not in got.lower(),
                  'rebinding: %s %s with Host %s -> 421' % (method, path, bad), got[:300])
    st, got = get(port, '/status.json', 'attacker.example')
    check(st == 421, 'rebinding: Host without a port -> 421', got[:100])
    r = subprocess.run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: ' + bad,
                        'http://127.0.0.1:%d/status.json' % port], capture_output=True, text=True)
    check(r.stdout == '421', 'rebinding: curl with Host %s -> 421' % bad, r.stdout + r.stderr)
    for host in ('127.0.0.1:%d' % port, '127.0.0.1', 'localhost:%d' % port, 'LOCALHOST.', '[::1]:%d' % port,
                 '192.0.2.1'):
        for path in ('/', '/status.json', '/metrics'):
            st, got = get(port, path, host)
            check(st == 200, 'Host %s: %s served' % (host, path), got[:100])
    st, got = get(port, '/status.json', 'metrics.example.test:%d' % port)
    check(st == 421, 'a name not in metrics_allowed_hosts -> 421', got[:100])
    for origin in ('http://%s' % bad, 'null', 'https://attacker.example'):
        st, got = get(port, '/status.json', '127.0.0.1:%d' % port, origin)
        check(st == 421, 'Origin %s -> 421' % origin, got[:100])
    for origin in ('http://127.0.0.1:%d' % port, 'http://localhost:%d' % port):
        st, got = get(port, '/status.json', '127.0.0.1:%d' % port, origin)
        check(st == 200, 'Origin %s served' % origin, got[:100])
    base = open(fd.conf).read()
    with open(fd.conf, 'a') as f:
        f.write('metrics_allowed_hosts = Metrics.Example.TEST. other.example.test\n')
    r = siftctl(fd.conf, 'reload')
    check(r.returncode == 0, 'reload: metrics_allowed_hosts set', r.stdout + r.stderr)
    for host in ('metrics.example.test:%d' % port, 'METRICS.example.test.', 'other.example.test'):
        st, got = get(port, '/status.json', host)
        check(st == 200 and b'"recent"' in got, 'Host %s (allowed) served' % host, got[:100])
    st, got = get(port, '/status.json', 'metrics.example.test', 'http://metrics.example.test:%d' % port)
    check(st == 200, 'an allowed name as Origin served', got[:100])
    st, got = get(port, '/status.json', 'metrics.example.test', 'http://%s' % bad)
    check(st == 421, 'an allowed Host with a foreign Origin -> 421', got[:100])
    st, got = get(port, '/metrics', bad)
    check(st == 421, 'rebinding still refused with metrics_allowed_hosts set', got[:100])
    with open(fd.conf, 'w') as f:
        f.write(base)
    r = siftctl(fd.conf, 'reload')
    check(r.returncode == 0, 'reload: metrics_allowed_hosts back to empty', r.stdout + r.stderr)
    check(get(port, '/status.json', 'metrics.example.test')[0] == 421, 'the name refused again after reload')


def check_untrusted_slots(fd, port):
    """Idle connections of clients outside metrics_trusted_networks take
    their own slots, not the trusted scrapers': with 127.0.0.1 alone
    trusted, 8 idle connections from 127.0.0.2 leave 127.0.0.1 its 200, and
    a ninth from 127.0.0.2 gets 503."""
    base = open(fd.conf).read()
    with open(fd.conf, 'a') as f:
        f.write('metrics_trusted_networks = 127.0.0.1/32\n')
    r = siftctl(fd.conf, 'reload')
    check(r.returncode == 0, 'reload: 127.0.0.1 alone trusted', r.stdout + r.stderr)
    idle = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        s.bind(('127.0.0.2', 0))
        s.connect(('127.0.0.1', port))
        idle.append(s)
    time.sleep(0.3)
    check(http(port, '/metrics')[0] == 200, 'a trusted client served while 8 others hold idle connections')
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind(('127.0.0.2', 0))
    s.connect(('127.0.0.1', port))
    s.sendall(b'GET /metrics HTTP/1.1\r\n\r\n')
    got = s.recv(64)
    s.close()
    check(got.startswith(b'HTTP/1.1 503 '), 'the ninth untrusted connection: 503', got)
    for s in idle:
        s.close()
    with open(fd.conf, 'w') as f:
        f.write(base)
    r = siftctl(fd.conf, 'reload')
    check(r.returncode == 0, 'reload: back to the default trusted networks', r.stdout + r.stderr)


def policy_request(port, sender, state='RCPT', instance='i1'):
    req = ('request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\nclient_address=192.0.2.1\n'
           'client_name=client.example\nhelo_name=client.example\nsender=%s\nrecipient=user@sift.test\n'
           'queue_id=\ninstance=%s\nsize=0\n\n' % (state, sender, instance))
    with socket.create_connection(('127.0.0.1', port), timeout=10) as s:
        s.sendall(req.encode())
        got = b''
        while not got.endswith(b'\n\n'):
            b = s.recv(4096)
            if not b:
                break
            got += b
    return got.decode()


def run_policyd(root):
    mport = sifttest.free_port()
    pd = sifttest.start_daemon('policyd', root, {
        'policyd_control_socket': os.path.join(root, 'policyd.ctl'),
        'inbound_plugins': 'access', 'originating_plugins': 'access',
        'access_sender_map': 'inline:{ blocked@example.test=REJECT }',
        'metrics_listen': 'inet:127.0.0.1:%d' % mport,
    })
    try:
        for i in range(3):
            a = policy_request(pd.port, 'ok%d@example.test' % i, instance='ok%d' % i)
            check(a == 'action=DUNNO\n\n', 'policy: DUNNO', a)
        for i in range(2):
            a = policy_request(pd.port, 'blocked@example.test', instance='bl%d' % i)
            check(a.startswith('action=') and 'REJECT' in a or a.startswith('action=5'), 'policy: REJECT', a)
        st, body, _ = http(mport, '/metrics')
        text = body.decode()
        promtool(text, 'policyd /metrics')
        m = parse_metrics(text)
        check(metric(m, 'sift_policyd_requests_total', profile='inbound', action='dunno') == 3, 'policyd dunno 3',
              metric(m, 'sift_policyd_requests_total', profile='inbound', action='dunno'))
        check(metric(m, 'sift_policyd_requests_total', profile='inbound', action='reject') == 2, 'policyd reject 2')
        check(metric(m, 'sift_policyd_request_duration_seconds_count') == 5, 'policyd histogram counts 5')
        check(metric(m, 'sift_policyd_plugin_verdicts_total', plugin='access', verdict='reject') == 2,
              'policyd access rejected 2')
        check(metric(m, 'sift_policyd_connections_total') == 5, 'policyd connections 5')
        s = json.loads(http(mport, '/status.json')[1])
        check(s['daemon'] == 'policyd' and s['unit'] == 'requests'
              and s['actions'] == {'reject': 2, 'dunno': 3}, 'policyd status.json actions', s.get('actions'))
        check(len(s['recent']) == 5 and s['recent'][0]['from'] == 'blocked@example.test'
              and s['recent'][0]['to'] == ['user@sift.test'], 'policyd recent', s['recent'][:1])
        out, js = check_siftctl(pd.conf, 'policyd', r'^requests:\s+5, reject 2, dunno 3$')
        check(js.get('actions') == s['actions'], 'siftctl status --json = /status.json (policyd)')
    finally:
        pd.stop()
        pd.check_sanitizers()


def check_config_errors(root):
    for line, want in (('metrics_listen = unix:%s/m.sock' % root, r'metrics_listen: bad endpoint'),
                       ('metrics_trusted_networks = 127.0.0.0/8 nonsense', r'metrics_trusted_networks: bad network "nonsense"')):
        conf = os.path.join(root, 'bad.conf')
        with open(conf, 'w') as f:
            f.write('plugin_directory = %s\nfilterd_user = %s\n%s\n' % (sifttest.plugin_directory(),
                                                                        sifttest.daemon_user() or 'root', line))
        r = subprocess.run([sifttest.program('filterd'), '-t', '-c', conf], capture_output=True, text=True, timeout=60)
        check(r.returncode == 1 and re.search(want, r.stderr), 'filterd -t refuses: %s' % line, r.stderr)


def proc_start_time(pid):
    """The process's start as a Unix time, as the daemon computes it (the
    kernel gives it in clock ticks since boot)."""
    with open('/proc/%d/stat' % pid) as f:
        st = f.read()
    ticks = int(st[st.rindex(')') + 2:].split()[19])
    with open('/proc/uptime') as f:
        up = float(f.read().split()[0])
    return time.time() - up + ticks / os.sysconf('SC_CLK_TCK')


def check_timestamps(port, conf, pid):
    """The Unix times in /metrics keep their fraction (they were rounded
    to 10 s): the last reload's equals /status.json's (6 decimals) within
    a millisecond; the process start time the kernel's within 50 ms (its
    ticks and /proc/uptime have 10 ms steps)."""
    r = siftctl(conf, 'reload')
    check(r.returncode == 0, 'timestamps: siftctl reload', r.stdout + r.stderr)
    text = http(port, '/metrics')[1].decode()
    promtool(text, 'timestamps: /metrics')
    m = parse_metrics(text)
    s = json.loads(http(port, '/status.json')[1])
    for name, real, within in (('sift_filterd_last_reload_timestamp_seconds', s['last_reload']['time'], 0.001),
                               ('process_start_time_seconds', proc_start_time(pid), 0.05)):
        got = metric(m, name)
        check(got is not None and real and abs(got - real) < within,
              'timestamps: %s is right within %g s' % (name, within), (got, real))


def check_starting(root):
    d = os.path.join(root, 'starting')
    plugins = os.path.join(d, 'plugins')
    os.makedirs(plugins)
    os.symlink(os.path.join(sifttest.builddir(), 'tests', 'testplug.so'), os.path.join(plugins, 'testplug.so'))
    os.chmod(d, 0o755)
    mport = sifttest.free_port()
    conf = sifttest.write_conf(os.path.join(d, 'filterd.conf'), {
        'filterd_listen': 'inet:127.0.0.1:%d' % sifttest.free_port(), 'plugin_directory': plugins,
        'filterd_user': sifttest.daemon_user() or 'root', 'filterd_engine': 'native',
        'filterd_control_socket': os.path.join(d, 'filterd.ctl'), 'filterd_pid_file': '',
        'metrics_listen': 'inet:127.0.0.1:%d' % mport,
        'inbound_plugins': 'testplug', 'originating_plugins': 'testplug', 'testplug_init_delay': '5s'})
    p = sifttest.Proc([sifttest.program('filterd'), '-f', '-c', conf], log=os.path.join(d, 'filterd.log'),
                      name='filterd-starting')
    p.start()
    try:
        check(sifttest.wait_port(mport, 10, p.alive), 'starting: the metrics listener accepts during init')
        for path in ('/metrics', '/status.json', '/'):
            st, body, hdr = http(mport, path)
            check(st == 503 and hdr.get('Retry-After') == '5' and 'WWW-Authenticate' not in hdr
                  and b'starting' in body,
                  'starting: %s answers 503 with Retry-After, no Basic challenge, while the plugins '
                  'initialise' % path, (st, body, dict(hdr)))
        st, _, hdr = http(mport, '/metrics', {'Authorization': 'Bearer ' + TOKEN})
        check(st == 503 and 'WWW-Authenticate' not in hdr, 'starting: 503 with a credential too', st)
        st, got = get(mport, '/status.json', 'attacker.example:%d' % mport)
        check(st == 421, 'starting: a rebinding Host gets 421', got[:100])
        end = time.monotonic() + 30
        while (st := http(mport, '/metrics')[0]) != 200 and p.alive() and time.monotonic() < end:
            time.sleep(0.2)
        check(st == 200, 'starting: /metrics answers 200 once the plugins are ready', st)
        check_timestamps(mport, conf, p.pid)
    finally:
        p.stop()
        p.check_sanitizers()


def main():
    if os.geteuid() != 0:
        print('needs root (private Postfix)', file=sys.stderr)
        return 1
    root = sifttest.scratch('sift-metrics-')
    os.chmod(root, 0o755)
    clam = os.path.exists(os.path.join(sifttest.plugin_directory(), 'clamav.so'))
    rules = os.path.join(root, 'rules')
    os.makedirs(rules)
    with open(os.path.join(rules, 'test.cf'), 'w') as f:
        f.write('body SIFT_TEST_METRICS /metrics-spammy-marker/\nscore SIFT_TEST_METRICS 3\n')
    qdir = os.path.join(root, 'quarantine')
    os.makedirs(qdir)
    sifttest.daemon_writable(qdir)
    authfile = os.path.join(root, 'metrics.auth')
    with open(authfile, 'w') as f:
        f.write('# credentials\ntoken = %s\nbasic = %s:%s\n' % (TOKEN, BASIC[0], BASIC[1]))
    user = sifttest.daemon_user()
    if user:
        import pwd
        os.chown(authfile, pwd.getpwnam(user).pw_uid, -1)
    os.chmod(authfile, 0o600)
    mport = sifttest.free_port()
    settings = {
        'filterd_control_socket': os.path.join(root, 'filterd.ctl'),
        'inbound_plugins': ('clamav ' if clam else '') + 'spam',
        'originating_plugins': 'clamav' if clam else '',
        'spam_rules': '%s %s' % (os.path.join(sifttest.srcdir(), 'rules'), rules),
        'quarantine_directory': qdir, 'myhostname': 'mx.sift.test',
        'metrics_listen': 'inet:127.0.0.1:%d' % mport,
    }
    eicar = 'plain text'
    if clam:
        import cvlib
        cvlib.make_db(os.path.join(root, 'db'))
        settings.update({'clamav_database_directory': os.path.join(root, 'db'), 'clamav_ready_wait': '30s',
                         'clamav_originating_action': 'quarantine'})
        eicar = cvlib.EICAR.decode()
    fd = pf = None
    try:
        fd = sifttest.start_daemon('filterd', root, settings, start_timeout=30.0)
        pf = sifttest.Postfix(root=os.path.join(root, 'postfix'), submission=True,
                              milters=['inet:127.0.0.1:%d' % fd.port])
        pf.start()
        qids = send_all(pf, eicar)
        pf.stop()
        if clam:
            check_filterd_metrics(mport, clam)
            s = check_filterd_status(mport, qids, clam)
            out, js = check_siftctl(fd.conf, 'filterd', r'^messages:\s+11, accept 7, reject 3, quarantine 1$')
            check(js.get('actions') == s['actions'] and js.get('recent') == s['recent'],
                  'siftctl status --json = /status.json (filterd)')
            check(re.search(r'^clamav:\s+database version \d+', out, re.M), 'siftctl status: clamav', out)
            check(re.search(r'^top symbols:.* GTUBE 2(,|$)', out, re.M), 'siftctl status: top symbols', out)
        else:
            print('clamav plugin not built: the filterd counts are not checked', file=sys.stderr)
        st, body, hdr = http(mport, '/')
        check(st == 200 and b'<html' in body and 'text/html' in hdr.get('Content-Type', ''), 'the status page')
        check_auth(fd, mport, authfile)
        check_bad_requests(fd, mport)
        check_rebinding(fd, mport)
        check_untrusted_slots(fd, mport)
        run_policyd(root)
        check_config_errors(root)
        check_starting(root)
    finally:
        if pf:
            pf.cleanup()
        if fd:
            fd.stop()
            fd.check_sanitizers()
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
