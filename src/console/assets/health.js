// Health: accepted, rejected and failed requests per protocol over the last hour or day,
// when each source was last seen (stale ones marked), the outputs' deliveries and the journal.
import { el, show, api, table, badge, time, ago, bytes, failure, colour } from './common.js';

function statsChart(node, p) {
  const xs = p.buckets.map((b) => b.start_ms / 1000);
  const line = (label, key, c) => ({ label, stroke: colour(c), width: 2, points: { show: false }, value: (u, v) => v ?? '–', _k: key });
  const series = [line('accepted', 'accepted', '--ok'), line('rejected', 'rejected', '--warn'), line('failed', 'failed', '--bad')];
  const data = [xs, ...series.map((s) => p.buckets.map((b) => b[s._k]))];
  return new uPlot({
    width: Math.max(260, Math.min(node.clientWidth || 500, 560) - 4), height: 170, scales: { x: { time: true } },
    axes: [{ stroke: colour('--muted'), grid: { stroke: colour('--line') } }, { stroke: colour('--muted'), grid: { stroke: colour('--line') } }],
    series: [{}, ...series],
  }, data, node);
}

async function stats(box, window) {
  const s = await api(`/api/stats?window=${window}`);
  box.replaceChildren(...s.protocols.map((p) => {
    const node = el('div', { class: 'chart stats-chart' });
    const card = el('div', { class: 'card' }, el('h3', {}, p.protocol, ' ',
      el('span', { class: 'muted', text: `${p.totals.accepted} accepted · ${p.totals.rejected} rejected · ${p.totals.failed} failed` })), node);
    requestAnimationFrame(() => statsChart(node, p));
    return card;
  }));
  if (!s.protocols.length) box.append(el('p', { class: 'muted', text: 'No requests in this window.' }));
}

function sourcesTable(sources) {
  return table([['Protocol', (s) => s.protocol], ['Source', (s) => s.source || '–'],
    ['Last seen', (s) => `${time(s.last_seen_ms)} (${ago(s.last_seen_ms)})`],
    ['Interval', (s) => (s.interval_s ? `${Math.round(s.interval_s)} s` : '–'), 'num'],
    ['', (s) => badge(s.stale ? 'stale' : 'ok', s.stale ? 'stale' : 'ok')]], sources, { id: 'sources' });
}

function outputsTable(outputs) {
  return table([['Output', (o) => o.name], ['Kind', (o) => o.kind], ['Delivered', (o) => String(o.delivered), 'num'],
    ['Failed', (o) => String(o.failed), 'num'], ['Last error', (o) => (o.last_error ? `${o.last_error} (${o.last_error_at || ''})` : '–'), 'wrap']], outputs, { id: 'outputs' });
}

function journalFacts(j) {
  const retention = Object.entries(j.retention || {}).map(([k, v]) => `${k} = ${v}`).join(', ');
  const rows = [['Size', bytes(j.bytes)], ['Requests', j.requests], ['Events', j.events], ['Rejected requests', j.rejected],
    ['Oldest', j.oldest_at || '–'], ['Retention', retention || '–']];
  return el('dl', { class: 'facts', id: 'journal' }, rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v) })]));
}

async function section(node, fn) {
  try { node.replaceChildren(await fn()); } catch (e) { node.replaceChildren(failure(e)); }
}

export async function healthPage() {
  let window = 'hour';
  const charts = el('div', { class: 'grid', id: 'stats' });
  const sources = el('div');
  const outputs = el('div');
  const journal = el('div');
  const tabs = el('div', { class: 'tabs' }, ['hour', 'day'].map((w) => el('button', { type: 'button', text: `Last ${w}`, class: w === window ? 'active' : undefined,
    on: { click: (e) => { window = w; [...tabs.children].forEach((b) => b.classList.toggle('active', b === e.target)); refresh(); } } })));
  const refresh = () => Promise.all([
    stats(charts, window).catch((e) => charts.replaceChildren(failure(e))),
    section(sources, async () => sourcesTable(await api('/api/sources'))),
    section(outputs, async () => outputsTable(await api('/api/outputs'))),
    section(journal, async () => el('div', { class: 'card' }, journalFacts(await api('/api/journal')))),
  ]);
  show(el('h1', { text: 'Health' }), el('h2', { text: 'Requests' }), tabs, charts,
    el('h2', { text: 'Sources' }), sources, el('h2', { text: 'Outputs' }), outputs, el('h2', { text: 'Journal' }), journal);
  await refresh();
  setInterval(refresh, 30000);
}
