// Bulk replay: the current scripts over every event the filter matches, counted by a dry run
// first and run only after a confirmation.
import { el, show, api, table, badge, failure, notice, fromLocal, toLocal } from './common.js';

const FIELDS = ['protocol', 'source', 'status', 'since', 'until'];

function current() {
  const params = new URLSearchParams(location.search);
  return Object.fromEntries(FIELDS.map((k) => [k, params.get(k) || '']));
}

function request(form, dryRun) {
  const data = new FormData(form);
  const body = { dry_run: dryRun };
  for (const k of FIELDS) if (data.get(k)) body[k] = data.get(k);
  if (body.since) body.since = fromLocal(body.since);
  if (body.until) body.until = fromLocal(body.until);
  if (body.status === 'failed') body.failed = true;
  return body;
}

function results(r) {
  return [el('p', { id: 'replay-summary' }, badge('processed', `${r.processed} processed`), ' ', badge('failed', `${r.failed} failed`), ' ', badge('skipped', `${r.skipped} skipped`)),
    table([['Event', (x) => x.event_id ? el('a', { href: `/console/requests/${x.event_id}`, text: `#${x.event_id}` }) : (x.ledger_id ? `ledger #${x.ledger_id}` : '–')],
      ['Outcome', (x) => badge(x.outcome)], ['Detail', (x) => x.detail || '', 'wrap']], r.results || [])];
}

export async function replayPage() {
  const f = current();
  const field = (name, label, attrs = {}) => el('div', {}, el('label', { for: `r-${name}`, text: label }), el('input', { id: `r-${name}`, name, value: f[name], ...attrs }));
  const form = el('form', { class: 'filters', id: 'replay-form' },
    field('protocol', 'Protocol', { placeholder: 'any', size: 12 }), field('source', 'Source', { placeholder: 'any', size: 14 }),
    el('div', {}, el('label', { for: 'r-status', text: 'Status' }), el('select', { id: 'r-status', name: 'status' },
      ['', 'processed', 'failed'].map((s) => el('option', { value: s, text: s || 'processed or failed', selected: s === f.status })))),
    field('since', 'Since', { type: 'datetime-local', value: toLocal(f.since) }), field('until', 'Until', { type: 'datetime-local', value: toLocal(f.until) }),
    el('button', { type: 'submit', id: 'count', text: 'Count (dry run)' }));
  const out = el('div', { id: 'replay-out' });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    out.replaceChildren(el('p', { class: 'muted', text: 'Counting…' }));
    try {
      const body = request(form, true);
      const dry = await api('/api/replay', { method: 'POST', body });
      const count = dry.count ?? (dry.processed + dry.failed + dry.skipped);
      const confirm = el('button', { type: 'button', id: 'confirm-replay', text: `Replay ${count} events`, disabled: count === 0 });
      confirm.addEventListener('click', async () => {
        confirm.disabled = true;
        out.replaceChildren(el('p', { class: 'muted', text: 'Replaying…' }));
        try { out.replaceChildren(el('h2', { text: 'Replayed' }), ...results(await api('/api/replay', { method: 'POST', body: { ...body, dry_run: false } }))); }
        catch (err) { out.replaceChildren(failure(err)); }
      });
      out.replaceChildren(notice(`${count} events match; a dry run through the current scripts:`), ...results(dry), el('div', { class: 'actions' }, confirm));
    } catch (err) { out.replaceChildren(failure(err)); }
  });
  show(el('h1', { text: 'Bulk replay' }),
    el('p', { class: 'muted', text: 'Runs the current scripts again over the journaled events the filter matches. Count them first; nothing is written until you confirm.' }),
    form, out);
}
