"""Headless Chromium driven over the DevTools protocol, for the status page
tests: standard library only.

Chromium (Debian package `chromium`) is started with
--remote-debugging-pipe: the protocol's JSON messages, each ended by a NUL
octet, are read from its fd 4 and written to its fd 3, so no port and no
WebSocket client are needed. The browser runs in its own process group,
stopped by its PID (Browser.close, then SIGKILL to that group if it
lingers).

    with Chromium(tmp, log) as b:
        b.open('http://127.0.0.1:PORT/', width=1200, height=900)
        b.wait_for('document.body.dataset.state === "ok"')
        n = b.evaluate('document.querySelectorAll("#history .point").length')
        b.screenshot('page.png')
        b.errors()   # console errors, uncaught exceptions, failed loads

Chromium runs as root here (the tests do), hence --no-sandbox; it loads
only pages on 127.0.0.1.
"""

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time


class BrowserError(RuntimeError):
    pass


def find_chromium():
    """Path of the chromium binary, or None."""
    return shutil.which('chromium') or shutil.which('chromium-browser')


class Chromium:
    def __init__(self, tmp, log):
        self.tmp = tmp
        self.log = log
        self.proc = None
        self.session = None
        self.credentials = None
        self.events = []
        self._buf = b''
        self._id = 0

    # -- process -------------------------------------------------------------------
    def start(self, timeout=30.0):
        exe = find_chromium()
        if not exe:
            raise BrowserError('chromium not found (Debian package chromium)')
        profile = tempfile.mkdtemp(prefix='chromium-', dir=self.tmp)
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()

        def pipes():
            # Chromium's end of the pipes must be fds 3 and 4, inheritable
            # (close_fds=False: subprocess would close them after this;
            # Python's own descriptors are not inheritable anyway).
            a, b = os.dup(to_r), os.dup(from_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        argv = [exe, '--headless', '--no-sandbox', '--remote-debugging-pipe',
                '--user-data-dir=' + profile, '--disable-gpu', '--no-first-run',
                '--no-default-browser-check', '--disable-extensions', '--disable-sync',
                '--disable-background-networking', '--disable-component-update',
                '--disable-default-apps', '--mute-audio', '--hide-scrollbars',
                '--password-store=basic', '--use-mock-keychain',
                # containers often have a small /dev/shm; no crash reports
                '--disable-dev-shm-usage', '--disable-breakpad', '--disable-crash-reporter',
                'about:blank']
        self.logf = open(self.log, 'wb')
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, preexec_fn=pipes, close_fds=False,
                                     start_new_session=True)
        os.close(to_r)
        os.close(from_w)
        self.call('Browser.getVersion', timeout=timeout)
        return self

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            try:
                self._send('Browser.close', {})
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        for fd in (self._to_w, self._from_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.logf.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- protocol ------------------------------------------------------------------
    def _send(self, method, params, session=None):
        self._id += 1
        msg = {'id': self._id, 'method': method, 'params': params}
        if session:
            msg['sessionId'] = session
        os.write(self._to_w, json.dumps(msg).encode() + b'\0')
        return self._id

    def _recv(self, deadline):
        while b'\0' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self._from_r], [], [], left)
            if not r:
                return None
            data = os.read(self._from_r, 1 << 20)
            if not data:
                raise BrowserError('chromium closed the pipe (exit %s); see %s' % (
                    self.proc.poll(), self.log))
            self._buf += data
        raw, self._buf = self._buf.split(b'\0', 1)
        return json.loads(raw)

    def call(self, method, params=None, session=None, timeout=30.0):
        """Sends a command and waits for its reply (events that arrive
        meanwhile are kept in self.events); returns its result."""
        want = self._send(method, params or {}, session)
        deadline = time.monotonic() + timeout
        while True:
            m = self._recv(deadline)
            if m is None:
                raise BrowserError('%s: no reply in %.0f s' % (method, timeout))
            if m.get('id') == want:
                if 'error' in m:
                    raise BrowserError('%s: %s' % (method, m['error']))
                return m.get('result', {})
            if 'method' in m:
                self._event(m)

    def pump(self, seconds):
        """Reads events for a while."""
        deadline = time.monotonic() + seconds
        while (m := self._recv(deadline)) is not None:
            if 'method' in m:
                self._event(m)

    def _event(self, m):
        self.events.append(m)
        # With credentials (open()), every request is paused by the Fetch
        # domain: let it go on, and answer an authentication challenge as
        # a user typing the password into the browser's dialog would.
        p = m.get('params', {})
        if m['method'] == 'Fetch.requestPaused':
            self._send('Fetch.continueRequest', {'requestId': p['requestId']}, self.session)
        elif m['method'] == 'Fetch.authRequired':
            user, password = self.credentials
            self._send('Fetch.continueWithAuth', {'requestId': p['requestId'], 'authChallengeResponse': {
                'response': 'ProvideCredentials', 'username': user, 'password': password}}, self.session)

    def page(self, method, params=None, timeout=30.0):
        return self.call(method, params, self.session, timeout)

    # -- page ----------------------------------------------------------------------
    def open(self, url, width=1200, height=900, scale=1, mobile=False, credentials=None, timeout=30.0):
        """A new tab of width x height CSS pixels showing url (waits for its
        load event). credentials=(user, password): given when the server
        asks (HTTP authentication); without, the browser gives up as a user
        cancelling the dialog."""
        target = self.call('Target.createTarget', {'url': 'about:blank'})['targetId']
        self.session = self.call('Target.attachToTarget', {'targetId': target, 'flatten': True})['sessionId']
        for domain in ('Page', 'Runtime', 'Log'):
            self.page(domain + '.enable')
        self.credentials = credentials
        if credentials:
            self.page('Fetch.enable', {'handleAuthRequests': True, 'patterns': [{'urlPattern': '*'}]})
        self.page('Emulation.setDeviceMetricsOverride', {'width': width, 'height': height,
                                                         'deviceScaleFactor': scale, 'mobile': mobile})
        self.events = []
        r = self.page('Page.navigate', {'url': url})
        if r.get('errorText'):
            raise BrowserError('%s: %s' % (url, r['errorText']))
        deadline = time.monotonic() + timeout
        while not any(e['method'] == 'Page.loadEventFired' for e in self.page_events()):
            if time.monotonic() > deadline:
                raise BrowserError('%s: no load event in %.0f s' % (url, timeout))
            self.pump(0.1)

    def evaluate(self, expr):
        """Value of a JavaScript expression in the page (JSON-able)."""
        r = self.page('Runtime.evaluate', {'expression': expr, 'returnByValue': True,
                                           'awaitPromise': True})
        if 'exceptionDetails' in r:
            raise BrowserError('%s: %s' % (expr, r['exceptionDetails'].get('exception', {}).get(
                'description', r['exceptionDetails'].get('text'))))
        return r['result'].get('value')

    def wait_for(self, expr, timeout=20.0):
        """Waits until expr is truthy in the page; returns its value or None."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.evaluate(expr)
            if v or time.monotonic() > deadline:
                return v
            self.pump(0.1)

    def screenshot(self, path, full_page=True):
        """PNG of the page (the whole page, not only the viewport); returns
        its size in octets."""
        params = {'format': 'png'}
        if full_page:
            m = self.page('Page.getLayoutMetrics')['cssContentSize']
            params.update({'captureBeyondViewport': True,
                           'clip': {'x': 0, 'y': 0, 'width': m['width'], 'height': m['height'], 'scale': 1}})
        data = base64.b64decode(self.page('Page.captureScreenshot', params)['data'])
        with open(path, 'wb') as f:
            f.write(data)
        return len(data)

    def page_events(self):
        """Events of the tab open() made (not of earlier tabs)."""
        return [e for e in self.events if e.get('sessionId') == self.session]

    def errors(self):
        """Console errors and assertions, uncaught exceptions and error
        entries of the browser's log (failed loads, blocked content) seen
        in the tab since open(), as text."""
        self.pump(0.2)
        out = []
        for e in self.page_events():
            p = e.get('params', {})
            if e['method'] == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'assert'):
                out.append('console.%s: %s' % (p['type'], ' '.join(
                    str(a.get('value', a.get('description', ''))) for a in p.get('args', []))))
            elif e['method'] == 'Runtime.exceptionThrown':
                d = p.get('exceptionDetails', {})
                out.append('exception: %s' % d.get('exception', {}).get('description', d.get('text')))
            elif e['method'] == 'Log.entryAdded' and p.get('entry', {}).get('level') == 'error':
                ent = p['entry']
                out.append('log: %s %s' % (ent.get('text'), ent.get('url', '')))
        return out
