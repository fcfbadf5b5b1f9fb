// The live log: the newest requests and events first, filtered by what the URL says, with
// new entries streamed in (Server-Sent Events) and "older" pages that stay put while they do.
import { el, show, api, query, table, badge, time, bytes, short, failure, fromLocal, toLocal } from './common.js';

const FIELDS = ['protocol', 'source', 'status', 'since', 'until', 'q'];
const STATUSES = ['', 'processed', 'failed', 'duplicate', 'superseded', 'rejected'];

export function entryUrl(entry) {
  return entry.kind === 'rejected' ? `/console/rejected/${entry.id}` : `/console/requests/${entry.id}`;
}

function columns() {
  return [
    ['Time', (e) => el('a', { href: entryUrl(e), text: time(e.received_ms) })],
    ['Protocol', (e) => e.protocol],
    ['Operation', (e) => e.operation],
    ['Source', (e) => e.source || '–'],
    ['Event / key', (e) => el('span', { class: 'mono', title: e.key || '' }, `#${e.id}`, e.key ? ` ${short(e.key, 18)}` : '')],
    ['Status', (e) => badge(e.status)],
    ['Reply', (e) => String(e.reply_status ?? ''), 'num'],
    ['Size', (e) => bytes(e.size), 'num'],
    ['Error', (e) => short(e.error || '', 60), 'wrap'],
  ];
}

function filters() {
  const params = new URLSearchParams(location.search);
  const f = {};
  for (const k of FIELDS) f[k] = params.get(k) || '';
  return f;
}

function filterForm(f, onChange) {
  const input = (name, label, attrs = {}) => el('div', {}, el('label', { for: `f-${name}`, text: label }),
    el('input', { id: `f-${name}`, name, value: f[name], ...attrs }));
  const status = el('select', { id: 'f-status', name: 'status' },
    STATUSES.map((s) => el('option', { value: s, text: s || 'any', selected: s === f.status })));
  const form = el('form', { class: 'filters', id: 'log-filters' },
    input('protocol', 'Protocol', { placeholder: 'any', size: 12 }),
    input('source', 'Source', { placeholder: 'any', size: 14 }),
    el('div', {}, el('label', { for: 'f-status', text: 'Status' }), status),
    input('since', 'Since', { type: 'datetime-local', value: toLocal(f.since) }),
    input('until', 'Until', { type: 'datetime-local', value: toLocal(f.until) }),
    input('q', 'Id or key', { placeholder: 'event id, request id, key prefix', size: 22 }),
    el('button', { type: 'submit', text: 'Filter' }),
    el('a', { href: '/console/replay' + query({ ...f, q: '' }), text: 'Replay these…' }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const k of FIELDS) next[k] = data.get(k) || '';
    next.since = fromLocal(next.since);
    next.until = fromLocal(next.until);
    history.pushState(null, '', location.pathname + query(next));
    onChange();
  });
  return form;
}

/** The stream's state as a badge: live, connecting or offline. */
function indicator() {
  const node = el('span', { id: 'live-indicator', class: 'badge connecting', text: 'connecting' });
  node.set = (state) => { node.className = `badge ${state}`; node.textContent = state; };
  return node;
}

/** A row in place of entries the stream left out (more than a message holds). */
function skippedRow(rows, count) {
  const cell = el('td', { colspan: rows.querySelectorAll('th').length, class: 'muted',
    text: `${count} more entries arrived here; reload to list them all` });
  rows.body.prepend(el('tr', { class: 'skipped' }, cell));
}

function follow(f, rows, light, reload) {
  const source = new EventSource('/api/log/stream' + query({ protocol: f.protocol, source: f.source, status: f.status }));
  source.addEventListener('open', () => light.set('live'));
  source.addEventListener('error', () => light.set(source.readyState === EventSource.CLOSED ? 'offline' : 'connecting'));
  // One message per interval: the newest entries first, and how many older ones it left out.
  source.addEventListener('entries', (message) => {
    try {
      const { entries, skipped } = JSON.parse(message.data);
      if (skipped > 0) skippedRow(rows, skipped);
      for (let i = entries.length - 1; i >= 0; i--) rows.add(entries[i], true).classList.add('fresh');
      document.getElementById('log-empty')?.remove();
    } catch { /* a malformed message is skipped */ }
  });
  source.addEventListener('lagged', () => { source.close(); reload(); });
  return source;
}

export async function logPage() {
  let stream = null;
  const load = async () => {
    stream?.close();
    const f = filters();
    const light = indicator();
    const rows = table(columns(), [], { onRow: (e) => location.assign(entryUrl(e)), id: 'log-table' });
    const older = el('button', { class: 'secondary', id: 'older', type: 'button', text: 'Older', hidden: true });
    show(el('h1', {}, 'Live log ', light), filterForm(f, load), rows, el('div', { class: 'actions' }, older));
    let next = null;
    const page = async () => {
      try {
        const answer = await api('/api/log' + query({ ...f, before: next, limit: 50 }));
        answer.entries.forEach((e) => rows.add(e));
        next = answer.next;
        older.hidden = !next;
        if (!rows.body.children.length) rows.after(el('p', { class: 'muted', id: 'log-empty', text: 'Nothing yet.' }));
      } catch (e) {
        rows.after(failure(e));
      }
    };
    older.addEventListener('click', page);
    await page();
    // Entries before `until` or for one id do not arrive later: no stream for those views.
    if (f.until || f.q) light.set('offline'); else stream = follow(f, rows, light, load);
  };
  window.addEventListener('popstate', load);
  await load();
}
