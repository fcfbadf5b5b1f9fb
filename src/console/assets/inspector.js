// The inspector: one request as received (headers masked by the server, the raw body and a
// readable view of it), how it was verified, each event's outcome, the script's log lines
// and effects; replay, a dry run shown as a diff against what was written, curl, fixture.
import { el, show, api, table, badge, time, bytes, failure, notice } from './common.js';

function decode(base64) {
  if (!base64) return new Uint8Array();
  const bin = atob(base64);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function text(bytesIn) {
  try { return new TextDecoder('utf-8', { fatal: true }).decode(bytesIn); } catch { return null; }
}

function csvRows(body) {
  const lines = body.split(/\r?\n/).filter((l) => l.length);
  const sep = (lines[0] || '').includes(';') && !(lines[0] || '').includes(',') ? ';' : ',';
  return lines.map((l) => cells(l, sep));
}

/** One CSV line's cells: quoted cells may hold the separator, `""` is a quote. */
function cells(line, sep) {
  const out = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted && c === '"' && line[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = !quoted;
    else if (c === sep && !quoted) { out.push(cell); cell = ''; } else cell += c;
  }
  out.push(cell);
  return out;
}

function gridOf(rows) {
  const [head, ...rest] = rows;
  return table(head.map((h, i) => [h, (r) => r[i] ?? '']), rest);
}

/** The readable views of a body: raw always, and JSON, form or CSV when it parses as one. */
function views(body, contentType) {
  const out = [['Raw', () => el('pre', { id: 'raw-body', text: body })]];
  try { const v = JSON.parse(body); out.push(['JSON', () => el('pre', { text: JSON.stringify(v, null, 2) })]); } catch { /* not JSON */ }
  let fields = [];
  if (/urlencoded/.test(contentType) || (/^[^{[<\s][^\s]*=/.test(body) && body.includes('='))) {
    fields = [...new URLSearchParams(body)];
    if (fields.length) out.push(['Form', () => table([['Field', (f) => f[0]], ['Value', (f) => f[1], 'wrap']], fields)]);
  }
  // A CSV body, or a form field holding CSV lines (Wattmon's `data`).
  const csvField = fields.map((f) => f[1]).find((v) => v.includes('\n') && /[,;]/.test(v));
  const csvText = /csv/.test(contentType) ? body : (csvField || null);
  if (csvText && csvText.includes('\n')) out.push(['CSV', () => gridOf(csvRows(csvText))]);
  return out;
}

function bodyCard(base64, bodyText, contentType, truncated) {
  const raw = decode(base64);
  const body = bodyText ?? text(raw);
  const card = el('section', { class: 'card', id: 'body' }, el('h2', {}, 'Body ', el('span', { class: 'muted', text: bytes(raw.length) })));
  if (truncated) card.append(notice('only the first part of this body was kept'));
  if (body === null) {
    card.append(el('p', { class: 'muted', text: 'binary; shown as base64' }), el('pre', { id: 'raw-body', text: base64 }));
    return card;
  }
  const list = views(body, contentType);
  const pane = el('div');
  const tabs = el('div', { class: 'tabs' });
  const pick = (i) => {
    [...tabs.children].forEach((b, j) => b.classList.toggle('active', i === j));
    pane.replaceChildren(list[i][1]());
  };
  list.forEach(([name], i) => tabs.append(el('button', { type: 'button', text: name, on: { click: () => pick(i) } })));
  card.append(tabs, pane);
  pick(0);
  return card;
}

function headersCard(headers) {
  return el('section', { class: 'card' }, el('h2', { text: 'Headers' }),
    table([['Name', (h) => el('span', { class: 'mono', text: h.name })], ['Value', (h) => el('span', { class: 'mono', text: h.value }), 'wrap']],
      headers || [], { id: 'headers' }));
}

/** A line diff (longest common subsequence) of `before` and `after`. */
export function lineDiff(before, after) {
  const a = (before || '').split('\n');
  const b = (after || '').split('\n');
  if (a.length * b.length > 4e6) return [...a.map((l) => ['del', l]), ...b.map((l) => ['add', l])];
  const dp = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    }
  }
  const out = [];
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) { out.push(['same', a[i]]); i++; j++; }
    else if (dp[i + 1][j] >= dp[i][j + 1]) out.push(['del', a[i++]]);
    else out.push(['add', b[j++]]);
  }
  while (i < a.length) out.push(['del', a[i++]]);
  while (j < b.length) out.push(['add', b[j++]]);
  return out;
}

function diffView(effect) {
  const lines = lineDiff(effect.before, effect.after);
  const changed = lines.some(([k]) => k !== 'same');
  return el('div', { class: 'dry-effect' },
    el('h3', {}, el('span', { class: 'mono', text: effect.path }), ' ', badge(changed ? 'info' : 'ok', changed ? 'changes' : 'unchanged')),
    el('div', { class: 'diff' }, lines.map(([kind, line]) => el('div', { class: kind, text: line }))));
}

async function dryRun(id, out) {
  out.replaceChildren(el('p', { class: 'muted', text: 'Running the current scripts…' }));
  try {
    const r = await api(`/api/events/${id}/dry-run`, { method: 'POST' });
    out.replaceChildren(el('div', {}, el('h2', {}, 'Dry run ', badge(r.outcome)),
      r.error ? notice(r.error, 'bad') : '',
      r.logs?.length ? el('pre', { text: r.logs.join('\n') }) : '',
      (r.effects || []).length ? r.effects.map(diffView) : el('p', { class: 'muted', text: 'The scripts would write nothing.' })));
  } catch (e) { out.replaceChildren(failure(e)); }
}

async function replay(id, out) {
  try {
    const r = await api(`/api/events/${id}/replay`, { method: 'POST' });
    out.replaceChildren(el('h2', {}, 'Replay ', badge(r.outcome)), r.detail ? notice(r.detail) : '');
  } catch (e) { out.replaceChildren(failure(e)); }
}

async function curl(id, out) {
  try {
    const command = await api(`/api/events/${id}/curl`);
    out.replaceChildren(el('h2', { text: 'As curl' }), el('pre', { id: 'curl', text: command }));
    await navigator.clipboard?.writeText(command).then(() => out.append(el('p', { class: 'muted', text: 'Copied.' })), () => {});
  } catch (e) { out.replaceChildren(failure(e)); }
}

function actions(id) {
  const out = el('section', { class: 'card', id: 'action-result', hidden: true });
  const run = (fn) => () => { out.hidden = false; fn(id, out); };
  const bar = el('div', { class: 'actions' },
    el('button', { type: 'button', id: 'replay', text: 'Replay', on: { click: run(replay) } }),
    el('button', { type: 'button', id: 'dry-run', text: 'Dry-run diff', on: { click: run(dryRun) } }),
    el('button', { type: 'button', class: 'secondary', id: 'curl-button', text: 'Copy as curl', on: { click: run(curl) } }),
    el('a', { href: `/api/events/${id}/fixture`, download: '', id: 'fixture', text: 'Download fixture' }));
  return [bar, out];
}

function effectsCard(effects) {
  const list = (effects || []).map((e) => (typeof e === 'string' ? { path: e, kind: '', text: null } : e));
  return el('section', { class: 'card', id: 'effects' }, el('h2', { text: 'What the script wrote' }),
    list.length ? list.map((e) => el('div', {}, el('p', {}, el('span', { class: 'mono', text: e.path }), ' ', e.kind ? badge('info', e.kind) : '', e.size !== undefined ? ` ${bytes(e.size)}` : ''),
      e.text ? el('pre', { text: e.text }) : ''))
      : el('p', { class: 'muted', text: 'Nothing.' }));
}

function siblingsCard(siblings) {
  if (!siblings?.length) return '';
  return el('section', { class: 'card' }, el('h2', { text: 'Events of this request' }),
    table([['#', (s) => el('a', { href: `/console/requests/${s.id}`, text: String(s.id) })], ['Index', (s) => String(s.index)],
      ['Status', (s) => badge(s.status)], ['Error', (s) => s.error || '', 'wrap']], siblings));
}

export async function eventPage(id) {
  const d = await api(`/api/events/${id}`);
  const e = d.event;
  const contentType = (d.headers || []).find((h) => h.name.toLowerCase() === 'content-type')?.value || '';
  const facts = el('dl', { class: 'facts' }, [
    ['Received', time(Date.parse(e.received_at))], ['Protocol', e.protocol], ['Operation', e.operation],
    ['Source', e.source || '–'], ['Request', `#${e.request_id} (event ${e.index + 1})`], ['Client', d.client],
    ['Verification', d.verification], ['Reply status', d.reply_status ?? '–'],
    ['Duplicate of', d.duplicate_of ? el('a', { href: `/console/requests/${d.duplicate_of}`, text: `#${d.duplicate_of}` }) : null],
  ].filter(([, v]) => v !== null).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));
  show(el('h1', {}, `Event #${e.id} `, badge(e.status)),
    e.error ? notice(e.error, 'bad') : '',
    el('section', { class: 'card' }, facts), ...actions(id),
    headersCard(d.headers), bodyCard(d.body_base64, d.body_text, contentType),
    el('section', { class: 'card' }, el('h2', { text: 'Event data' }), el('pre', { text: JSON.stringify(d.data, null, 2) })),
    siblingsCard(d.siblings),
    el('section', { class: 'card' }, el('h2', { text: 'Script log' }), d.logs?.length ? el('pre', { id: 'logs', text: d.logs.join('\n') }) : el('p', { class: 'muted', text: 'No lines.' })),
    effectsCard(d.effects));
}

export async function rejectedPage(id) {
  const r = await api(`/api/rejected/${id}`);
  const contentType = (r.headers || []).find((h) => h.name.toLowerCase() === 'content-type')?.value || '';
  show(el('h1', {}, `Rejected request #${id} `, badge('rejected')),
    el('div', { class: 'notice bad', id: 'reason' }, el('strong', { text: `${r.check}: ` }), r.reason),
    el('section', { class: 'card' }, el('dl', { class: 'facts' },
      el('dt', { text: 'Received' }), el('dd', { text: time(r.entry?.received_ms) }),
      el('dt', { text: 'Protocol' }), el('dd', { text: `${r.entry?.protocol || '–'} ${r.entry?.operation || ''}` }),
      el('dt', { text: 'Client' }), el('dd', { text: r.client }),
      el('dt', { text: 'Path' }), el('dd', { class: 'mono', text: r.path }),
      el('dt', { text: 'Reply status' }), el('dd', { text: String(r.entry?.reply_status ?? '–') }))),
    headersCard(r.headers),
    r.body_base64 !== null && r.body_base64 !== undefined ? bodyCard(r.body_base64, null, contentType, r.body_truncated) : el('p', { class: 'muted', text: 'No body was kept.' }));
}
