// The dashboard's shell: sign-in (the key stays in this tab's session storage), hash routing, status line.
import { api, ApiError, session } from './api.js';
import * as overview from './views/overview.js';
import * as jobs from './views/jobs.js';
import * as job from './views/job.js';
import * as dlq from './views/dlq.js';
import * as audit from './views/audit.js';

const views = { overview, jobs, job, dlq, audit };
const main = document.getElementById('main');
const statusLine = document.getElementById('status');
const who = document.getElementById('who');
let current;
let services;

function setStatus(message) {
  statusLine.textContent = message ?? '';
}

/** The services this key may use (the overview lists exactly those). */
async function listServices() {
  services ??= api('GET', '/v1/overview').then((o) => o.services.map((s) => s.service));
  try {
    return await services;
  } catch (err) {
    services = undefined;
    throw err;
  }
}

function describe(err) {
  if (err instanceof ApiError && err.status === 401) return 'Sign in with an API key (this gateway requires one).';
  if (err instanceof ApiError) return `${err.problem?.code ?? err.status}: ${err.message}`;
  return String(err?.message ?? err);
}

async function route() {
  current?.leave?.();
  current = undefined;
  const [name = 'overview', ...rest] = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  const view = views[name] ?? overview;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === (name === 'job' ? 'jobs' : name)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  setStatus('');
  main.innerHTML = '';
  try {
    current = await view.enter({ main, setStatus, describe, listServices }, rest.map(decodeURIComponent));
  } catch (err) {
    setStatus(describe(err));
  }
}

async function signIn(key) {
  session.set(key);
  services = undefined;
  try {
    await listServices();
    who.textContent = key ? `signed in (key …${key.slice(-4)})` : 'development mode (no key)';
  } catch (err) {
    who.textContent = '';
    setStatus(describe(err));
  }
  await route();
}

document.getElementById('signin').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = document.getElementById('apikey');
  void signIn(input.value.trim());
  input.value = '';
});
document.getElementById('signout').addEventListener('click', () => {
  session.set('');
  services = undefined;
  who.textContent = 'signed out';
  void route();
});
window.addEventListener('hashchange', () => void route());
void signIn(session.key);
