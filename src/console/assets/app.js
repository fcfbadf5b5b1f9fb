// The console's pages: which one the URL names, the active navigation entry, log-out.
import { show, failure, logOut } from './common.js';
import { logPage } from './log.js';
import { eventPage, rejectedPage } from './inspector.js';
import { replayPage } from './replay.js';
import { metersPage, meterPage } from './meters.js';
import { healthPage } from './health.js';
import { setupPage } from './setup.js';

const routes = [
  [/^\/console\/(log)?$/, 'log', logPage],
  [/^\/console\/requests\/(\d+)$/, 'log', eventPage],
  [/^\/console\/rejected\/(\d+)$/, 'log', rejectedPage],
  [/^\/console\/replay$/, 'replay', replayPage],
  [/^\/console\/meters$/, 'meters', metersPage],
  [/^\/console\/meters\/([^/]+)$/, 'meters', meterPage],
  [/^\/console\/health$/, 'health', healthPage],
  [/^\/console\/setup$/, 'setup', setupPage],
];

async function start() {
  document.getElementById('logout').addEventListener('click', logOut);
  const path = location.pathname;
  for (const [pattern, nav, page] of routes) {
    const match = path.match(pattern);
    if (!match) continue;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === nav);
    try {
      await page(decodeURIComponent(match[1] || ''));
    } catch (e) {
      show(failure(e));
    }
    return;
  }
  show(failure('no such page'));
}

start();
