// What every console page shares: building elements (never from HTML strings), calling the
// management API with the session cookie (and the CSRF token on every state-changing call),
// and formatting times, sizes and statuses.

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let csrfToken = null;

/** An element: `attrs` are properties (`class`, `text`, `on`, `data`, anything else as an attribute). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'on') for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (key === 'data') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces what `#main` shows. */
export function show(...nodes) {
  const main = document.getElementById('main');
  main.replaceChildren(...nodes.flat().filter((n) => n !== '' && n !== null && n !== undefined));
  return main;
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign('/console/login?next=' + encodeURIComponent(next));
}

/** The session's CSRF token (asked once per page). */
export async function csrf() {
  if (!csrfToken) {
    const res = await fetch('/api/session', { credentials: 'same-origin' });
    if (res.status === 401) { toLogin(); throw new ApiError(401, 'the session has ended'); }
    csrfToken = (await res.json()).csrf_token;
  }
  return csrfToken;
}

/** Calls the management API; JSON in and out (text for text answers). */
export async function api(path, { method = 'GET', body, raw = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = await csrf();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401 && !path.includes('/reveal')) { toLogin(); throw new ApiError(401, 'the session has ended'); }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try { message = (await res.json()).message || message; } catch { /* not JSON */ }
    throw new ApiError(res.status, message);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return (res.headers.get('content-type') || '').includes('json') ? res.json() : res.text();
}

export async function logOut() {
  try { await api('/api/session', { method: 'DELETE' }); } catch { /* already over */ }
  location.assign('/console/login');
}

/** A query string from the non-empty fields of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}

const pad = (n) => String(n).padStart(2, '0');

/** `2026-12-01 11:32:05` in local time. */
export function time(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `3 min ago`. */
export function ago(ms) {
  if (!ms) return '';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export function short(text, n = 14) {
  if (!text) return '';
  return text.length > n ? text.slice(0, n - 1) + '…' : text;
}

export function badge(status, text) {
  return el('span', { class: `badge ${status}`, text: text || status });
}

/** A scrolling table: `columns` are `[title, fn(row) → node or text, class?]`. */
export function table(columns, rows, { onRow, id } = {}) {
  const head = el('tr', {}, columns.map(([title, , cls]) => el('th', { class: cls, text: title })));
  const body = el('tbody');
  const add = (row, first = false) => {
    const tr = el('tr', { class: onRow ? 'link' : undefined },
      columns.map(([, cell, cls]) => el('td', { class: cls }, cell(row))));
    if (onRow) tr.addEventListener('click', (e) => { if (!e.target.closest('a,button')) onRow(row); });
    if (first) body.prepend(tr); else body.append(tr);
    return tr;
  };
  rows.forEach((r) => add(r));
  const wrap = el('div', { class: 'table-wrap', id }, el('table', {}, el('thead', {}, head), body));
  wrap.add = add;
  wrap.body = body;
  return wrap;
}

export function notice(text, kind = '') {
  return el('div', { class: `notice ${kind}`, role: kind === 'bad' ? 'alert' : undefined, text });
}

export function failure(e) {
  return notice(e instanceof Error ? e.message : String(e), 'bad');
}

/** Chart colours from the style sheet, so plots follow light and dark. */
export function colour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** Epoch milliseconds from an `<input type=datetime-local>` value (or ''). */
export function fromLocal(value) {
  if (!value) return '';
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? '' : String(ms);
}

/** An `<input type=datetime-local>` value from epoch milliseconds (or ''). */
export function toLocal(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
