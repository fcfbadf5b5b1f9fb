// The log-in form: the admin token goes in the body of POST /api/session (never in a URL);
// the answer sets the session cookie.
const form = document.getElementById('login');
const error = document.getElementById('login-error');

function next() {
  const to = new URLSearchParams(location.search).get('next') || '';
  return to.startsWith('/console/') && !to.startsWith('//') ? to : '/console/';
}

async function logIn(event) {
  event.preventDefault();
  error.hidden = true;
  const button = document.getElementById('login-button');
  button.disabled = true;
  try {
    const res = await fetch('/api/session', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: document.getElementById('token').value }),
    });
    if (res.ok) { location.assign(next()); return; }
    let message = 'the token is wrong';
    if (res.status === 429) message = `too many wrong tokens; retry in ${res.headers.get('Retry-After') || 60} s`;
    else if (res.status !== 401) { try { message = (await res.json()).message; } catch { message = res.statusText; } }
    error.textContent = message;
    error.hidden = false;
  } catch (e) {
    error.textContent = `the server cannot be reached: ${e.message}`;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

form.addEventListener('submit', logIn);
fetch('/api/session', { credentials: 'same-origin' }).then((res) => { if (res.ok) location.assign(next()); });
