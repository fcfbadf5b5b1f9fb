// Meters: every reading series by name, and one page per series with the current value, its
// status, the last image, a zoomable plot (downsampled by the server), consumption per day
// and the CSV export.
import { el, show, api, query, table, badge, time, ago, failure, colour } from './common.js';

const RANGES = [['Day', 86400e3], ['Week', 7 * 86400e3], ['Month', 31 * 86400e3], ['Year', 366 * 86400e3], ['All', 0]];

function value(s) {
  if (s.last_value === null || s.last_value === undefined) return '–';
  return `${s.last_value}${s.unit ? ' ' + s.unit : ''}`;
}

function statusBadge(s) {
  return badge(s.status, s.status === 'error' && s.status_text ? s.status_text : s.status);
}

export async function metersPage() {
  const series = await api('/api/series');
  show(el('h1', { text: 'Meters' }),
    series.length ? table([
      ['Name', (s) => el('a', { href: `/console/meters/${encodeURIComponent(s.id)}`, text: s.name })],
      ['Protocol', (s) => s.protocol], ['Value', (s) => value(s), 'num'], ['Last reading', (s) => `${time(s.last_ms)} (${ago(s.last_ms)})`],
      ['Status', statusBadge], ['Readings', (s) => String(s.count), 'num'],
    ], series, { onRow: (s) => location.assign(`/console/meters/${encodeURIComponent(s.id)}`), id: 'series-table' })
      : el('p', { class: 'muted', text: 'No readings yet. Series appear here when devices send them.' }));
}

function chartWidth(node) {
  return Math.max(280, Math.min(node.clientWidth || 800, 1150) - 4);
}

function plot(node, s, points, onZoom) {
  const xs = points.map((p) => p[0] / 1000);
  const ys = points.map((p) => p[1]);
  const opts = {
    width: chartWidth(node), height: 280,
    scales: { x: { time: true } },
    axes: [{ stroke: colour('--muted'), grid: { stroke: colour('--line') } }, { stroke: colour('--muted'), grid: { stroke: colour('--line') } }],
    series: [{}, { label: s.unit ? `${s.name} (${s.unit})` : s.name, stroke: colour('--accent'), width: 2, points: { show: points.length < 200 } }],
    cursor: { drag: { x: true, y: false } },
    hooks: { setSelect: [(u) => { if (u.select.width > 4) onZoom(u.posToVal(u.select.left, 'x') * 1000, u.posToVal(u.select.left + u.select.width, 'x') * 1000); }] },
  };
  node.replaceChildren();
  return new uPlot(opts, [xs, ys], node);
}

function bars(node, days) {
  const xs = days.map((d) => Date.parse(d.day + 'T00:00:00Z') / 1000);
  const ys = days.map((d) => d.consumption);
  node.replaceChildren();
  if (!days.length) { node.append(el('p', { class: 'muted', text: 'No whole days in this range.' })); return null; }
  return new uPlot({
    width: chartWidth(node), height: 200,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{ stroke: colour('--muted'), grid: { show: false } }, { stroke: colour('--muted'), grid: { stroke: colour('--line') } }],
    series: [{}, { label: 'consumption per day', stroke: colour('--accent'), fill: colour('--accent'), paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } }],
  }, [xs, ys], node);
}

export async function meterPage(id) {
  const base = `/api/series/${encodeURIComponent(id)}`;
  const s = await api(base);
  const plotNode = el('div', { class: 'chart', id: 'plot' });
  const daysNode = el('div', { class: 'chart', id: 'daily' });
  const dayTable = el('div');
  const note = el('p', { class: 'muted', id: 'plot-note' });
  const csv = el('a', { id: 'csv', href: base + '/csv', download: '', text: 'Export CSV' });
  const rangeBar = el('div', { class: 'tabs', id: 'ranges' });
  const head = el('section', { class: 'card meter-head' },
    el('div', {}, el('div', { class: 'value-big', id: 'current-value', text: value(s) }),
      el('p', {}, statusBadge(s), ' ', el('span', { class: 'muted', text: `${time(s.last_ms)} · ${ago(s.last_ms)}` })),
      el('p', { class: 'muted', text: `${s.protocol} · ${s.kind} · ${s.count} readings${s.interval_s ? ` · every ~${Math.round(s.interval_s)} s` : ''}` })),
    s.has_image ? el('img', { id: 'last-image', src: `${base}/image?t=${s.last_ms || 0}`, alt: `last image of ${s.name}` }) : '');
  show(el('h1', { text: s.name }), head, el('section', { class: 'card' }, el('h2', { text: 'Readings' }), rangeBar, plotNode, note, el('div', { class: 'actions' }, csv)),
    s.kind === 'counter' ? el('section', { class: 'card' }, el('h2', { text: 'Consumption per day' }), daysNode, dayTable) : '');

  const load = async (since, until) => {
    const range = { since: since ? Math.round(since) : '', until: until ? Math.round(until) : '' };
    csv.href = base + '/csv' + query(range);
    try {
      const pts = await api(base + '/points' + query({ ...range, max_points: Math.min(2 * chartWidth(plotNode), 5000) }));
      plot(plotNode, s, pts.points, (a, b) => load(a, b));
      note.textContent = `${pts.points.length} of ${pts.total} readings${pts.downsampled ? ' (downsampled; drag to zoom in)' : ' (drag to zoom)'}`;
      if (s.kind === 'counter') {
        const daily = await api(base + '/daily' + query(range));
        bars(daysNode, daily.days);
        dayTable.replaceChildren(table([['Day', (d) => d.day], ['Consumption', (d) => `${+d.consumption.toFixed(3)}${s.unit ? ' ' + s.unit : ''}`, 'num'], ['Readings', (d) => String(d.readings), 'num']], daily.days.slice().reverse(), { id: 'daily-table' }));
      }
    } catch (e) { plotNode.replaceChildren(failure(e)); }
  };
  RANGES.forEach(([name, span], i) => rangeBar.append(el('button', { type: 'button', text: name, class: i === 1 ? 'active' : undefined, on: { click: (e) => {
    [...rangeBar.children].forEach((b) => b.classList.toggle('active', b === e.target));
    load(span ? Date.now() - span : 0, 0);
  } } })));
  await load(Date.now() - RANGES[1][1], 0);
}
