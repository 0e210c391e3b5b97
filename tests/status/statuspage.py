"""What the status page (lib/status.html) shows, read from the rendered DOM
of a headless Chromium (chromium.py), and helpers shared by its tests."""

import json
import os

# One JSON object with everything the page rendered, by the stable ids and
# data attributes of lib/status.html.
SNAPSHOT_JS = r'''(() => {
  const q = (s, r) => Array.from((r || document).querySelectorAll(s));
  const txt = e => e ? e.textContent : null;
  const field = k => { const e = document.querySelector('#health [data-field="' + k + '"] dd');
                       return e ? {text: e.textContent, value: e.getAttribute('data-value'),
                                   cls: e.className} : null; };
  const svg = document.querySelector('#history svg');
  return {
    state: document.body.dataset.state, updates: Number(document.body.dataset.updates),
    daemon: document.body.dataset.daemon || null, unit: document.body.dataset.unit || null,
    title: document.title, heading: txt(document.querySelector('h1')), status: txt(document.getElementById('state')),
    unitText: txt(document.getElementById('unit')),
    actions: Object.fromEntries(q('#actions li[data-action]').map(e =>
      [e.dataset.action, {count: Number(e.dataset.count), text: txt(e.querySelector('.count'))}])),
    actionsTotal: Number(document.getElementById('actions').dataset.total),
    profiles: Object.fromEntries(q('#profiles li[data-profile]').map(e => [e.dataset.profile, Number(e.dataset.count)])),
    svgPoints: svg ? Number(svg.dataset.points) : null, svgTotal: svg ? Number(svg.dataset.total) : null,
    points: q('#history .point').map(g => ({t: Number(g.dataset.t), total: Number(g.dataset.total),
      actions: Object.fromEntries(q('rect', g).map(r => [r.dataset.action, Number(r.dataset.count)])),
      heights: q('rect', g).map(r => Number(r.getAttribute('height'))),
      title: txt(g.querySelector('title'))})),
    legend: q('#legend li').map(e => e.dataset.action),
    plugins: q('#plugins tbody tr[data-plugin]').map(r => ({name: r.dataset.plugin,
      count: txt(r.querySelector('[data-field=count]')),
      p50: r.querySelector('[data-field=p50]').dataset.value, p99: r.querySelector('[data-field=p99]').dataset.value,
      p99Text: txt(r.querySelector('[data-field=p99]')), errors: txt(r.querySelector('[data-field=errors]')),
      verdicts: txt(r.querySelector('[data-field=verdicts]'))})),
    wholeRow: txt(document.querySelector('#plugins tr.whole')),
    symbols: q('#symbols li[data-symbol]').map(e => ({name: e.dataset.symbol, hits: Number(e.dataset.hits),
      nameText: txt(e.querySelector('.name'))})),
    recent: q('#recent tbody tr[data-action]').map(r => ({
      ...Object.fromEntries(q('td[data-field]', r).map(td => [td.dataset.field, td.textContent])),
      queue_id: r.dataset.queueId || null, action: r.dataset.action})),
    scoreShown: getComputedStyle(document.querySelector('#recent th.score')).display !== 'none',
    quarantineShown: !document.getElementById('quarantine-card').hidden,
    quarantineCount: Number(document.getElementById('quarantine').dataset.count || -1),
    quarantine: q('#quarantine tbody tr[data-id]').map(r => ({id: r.dataset.id,
      ...Object.fromEntries(q('td[data-field]', r).map(td => [td.dataset.field, td.textContent]))})),
    health: Object.fromEntries(['daemon', 'pid', 'uptime', 'generation', 'last_reload', 'reloads', 'plugin_errors',
      'clamav', 'rss', 'connections', 'dns'].map(k => [k, field(k)])),
    // anything the data could have smuggled in as markup
    foreign: q('main img, main script, main iframe, main b, main object, main embed, main [onerror], main [onload]')
      .map(e => e.outerHTML),
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    pwned: window.pwned === undefined ? null : window.pwned,
  };
})()'''


def snapshot(browser):
    return browser.evaluate(SNAPSHOT_JS)


def page_path():
    src = os.environ.get('SIFT_SRCDIR') or os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
    return os.path.join(src, 'lib', 'status.html')


def out_dir():
    """BUILD/tests/status: where the screenshots are kept."""
    build = os.environ.get('SIFT_BUILDDIR') or os.path.join(os.path.dirname(page_path()), '..', 'build')
    d = os.path.join(build, 'tests', 'status')
    os.makedirs(d, exist_ok=True)
    return d


def load_json(path):
    with open(path) as f:
        return json.load(f)
