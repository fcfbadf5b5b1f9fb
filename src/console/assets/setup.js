// Setup: per protocol, what to enter in the device or platform (URL, header names, which
// credential), the credential itself only after the admin token is given again, and a test
// request through the real route that then shows in the live log.
import { el, show, api, table, badge, failure, notice } from './common.js';

function revealForm(protocol, out) {
  const input = el('input', { type: 'password', name: 'token', placeholder: 'admin token', autocomplete: 'off', 'aria-label': 'admin token' });
  const form = el('form', { class: 'filters reveal-form' }, input, el('button', { type: 'submit', text: 'Reveal credential' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const r = await api(`/api/setup/${encodeURIComponent(protocol)}/reveal`, { method: 'POST', body: { token: input.value } });
      input.value = '';
      out.replaceChildren(el('div', { class: 'revealed' }, table([['Name', (c) => c.name], ['Value', (c) => el('span', { class: 'mono', text: c.value }), 'wrap']], r.credentials)));
    } catch (err) { out.replaceChildren(failure(err.status === 401 ? 'the admin token is wrong' : err)); }
  });
  return form;
}

async function sendTest(protocol, out) {
  out.replaceChildren(el('p', { class: 'muted', text: 'Sending…' }));
  try {
    const r = await api(`/api/setup/${encodeURIComponent(protocol)}/test`, { method: 'POST' });
    out.replaceChildren(el('p', {}, 'Answered ', badge(r.status < 300 ? 'ok' : 'error', String(r.status)), ' ', el('span', { class: 'mono', text: r.reply || '' })),
      r.request_id ? el('a', { class: 'test-log-link', href: `/console/log?q=${r.request_id}`, text: 'See it in the live log' }) : '');
  } catch (e) { out.replaceChildren(failure(e)); }
}

function protocolCard(p) {
  const revealed = el('div');
  const tested = el('div');
  return el('section', { class: 'card setup-protocol', data: { protocol: p.protocol } },
    el('h2', {}, p.title || p.protocol, ' ', el('span', { class: 'muted', text: p.protocol })),
    table([['Operation', (o) => o.operation], ['Method', (o) => o.method], ['URL', (o) => el('span', { class: 'mono', text: o.url }), 'wrap'],
      ['Headers', (o) => (o.headers || []).join(', ') || '–', 'wrap'],
      ['Credential', (o) => (o.credential ? el('span', {}, `${o.credential.kind} `, el('code', { text: o.credential.config_key }), ' ', badge(o.credential.configured ? 'configured' : 'info', o.credential.configured ? 'configured' : 'generated')) : '–')]], p.operations || []),
    (p.notes || []).map((n) => el('p', { class: 'hint', text: n })),
    el('div', { class: 'actions' }, revealForm(p.protocol, revealed),
      el('button', { type: 'button', class: 'secondary send-test', text: 'Send test request', on: { click: () => sendTest(p.protocol, tested) } })),
    revealed, tested);
}

export async function setupPage() {
  const protocols = await api('/api/setup');
  show(el('h1', { text: 'Setup' }),
    notice('What to enter in each device or platform. Credentials are shown only after the admin token is entered again.'),
    protocols.map(protocolCard));
}
