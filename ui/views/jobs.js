// Jobs: filters (service, state, time range), search by job id or request id, newest first with
// paging, live over GET /v1/events (new jobs appear, states change in place).
import { api, ApiError, stream } from '../api.js';
import { badge, esc, STATES, time } from '../format.js';

const PAGE = 20;

function row(j) {
  return `<tr data-job-id="${esc(j.id)}">
    <td><a class="mono" href="#/job/${encodeURIComponent(j.id)}">${esc(j.id)}</a></td>
    <td>${esc(j.service)}</td>
    <td data-field="state">${badge(j.state)}</td>
    <td data-field="attempts">${j.attempts}</td>
    <td>${time(j.createdAt)}</td>
    <td data-field="updated">${time(j.updatedAt)}</td>
    <td class="mono">${esc(j.requestId ?? '')}</td>
  </tr>`;
}

const toIso = (local) => (local ? new Date(local).toISOString() : undefined);

export async function enter({ main, setStatus, describe, listServices }) {
  const services = await listServices();
  main.innerHTML = `<h2>Jobs <span class="live" id="jobs-live"></span></h2>
  <form class="filters" id="jobs-filters">
    <label>Service <select name="service"><option value="">all</option>${services.map((s) => `<option>${esc(s)}</option>`).join('')}</select></label>
    <label>State <select name="state"><option value="">any</option>${STATES.map((s) => `<option>${s}</option>`).join('')}</select></label>
    <label>Created from <input type="datetime-local" name="since" step="1"></label>
    <label>Created before <input type="datetime-local" name="until" step="1"></label>
    <button type="submit" class="primary">Apply</button>
  </form>
  <form class="filters" id="jobs-search" role="search">
    <label>Job id or request id <input name="q" size="40" spellcheck="false"></label>
    <button type="submit">Search</button>
  </form>
  <div class="table-wrap"><table aria-describedby="jobs-live">
    <thead><tr><th scope="col">job</th><th scope="col">service</th><th scope="col">state</th><th scope="col">attempts</th><th scope="col">created</th><th scope="col">updated</th><th scope="col">request id</th></tr></thead>
    <tbody id="jobs-rows"></tbody>
  </table></div>
  <div class="pager"><button type="button" id="jobs-first">Newest</button><button type="button" id="jobs-next">Next page</button></div>`;
  const rows = main.querySelector('#jobs-rows');
  const filters = main.querySelector('#jobs-filters');
  const live = main.querySelector('#jobs-live');
  let next = null;
  let cursor;
  let query = {};

  const params = () => {
    const p = new URLSearchParams({ limit: String(PAGE) });
    for (const [k, v] of Object.entries(query)) if (v) p.set(k, v);
    if (cursor) p.set('cursor', cursor);
    return p;
  };
  const load = async () => {
    try {
      const page = await api('GET', `/v1/jobs?${params()}`);
      rows.innerHTML = page.items.map(row).join('') || '<tr><td colspan="7" class="muted">No jobs.</td></tr>';
      next = page.next;
      main.querySelector('#jobs-next').disabled = !next;
      setStatus('');
    } catch (err) {
      setStatus(describe(err));
    }
  };
  const matches = (e) => !cursor && (!query.service || e.service === query.service) && (!query.state || e.state === query.state) && !query.requestId && !query.until;

  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new FormData(filters);
    query = { service: f.get('service'), state: f.get('state'), since: toIso(f.get('since')), until: toIso(f.get('until')) };
    cursor = undefined;
    void load();
  });
  main.querySelector('#jobs-search').addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = new FormData(e.target).get('q').trim();
    if (!q) return;
    try {
      const j = await api('GET', `/v1/jobs/${encodeURIComponent(q)}`);
      location.hash = `#/job/${encodeURIComponent(j.id)}`;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) return setStatus(describe(err));
      query = { requestId: q };
      cursor = undefined;
      await load();
      if (!rows.querySelector('[data-job-id]')) setStatus(`No job with id or request id ${q}.`);
    }
  });
  main.querySelector('#jobs-first').addEventListener('click', () => { cursor = undefined; void load(); });
  main.querySelector('#jobs-next').addEventListener('click', () => { if (next) { cursor = next; void load(); } });

  await load();
  // Live: one stream of the tenant's transitions (only the services this key may use).
  const close = stream('/v1/events', (state, e) => {
    const tr = rows.querySelector(`[data-job-id="${CSS.escape(e.id)}"]`);
    if (tr) {
      if (query.state && e.state !== query.state) return tr.remove();
      tr.querySelector('[data-field="state"]').innerHTML = badge(e.state);
      tr.querySelector('[data-field="attempts"]').textContent = String(e.attempts);
      tr.querySelector('[data-field="updated"]').textContent = time(e.at);
    } else if (matches(e)) {
      // Any first transition adds the row, not only `queued`: the dequeuer's `running` can reach the
      // stream before the enqueuer's `queued`, and the stream then skips the late `queued`.
      rows.querySelector('td.muted')?.parentElement.remove();
      rows.insertAdjacentHTML('afterbegin', row({ id: e.id, service: e.service, state: e.state, attempts: e.attempts, createdAt: e.at, updatedAt: e.at, requestId: e.requestId }));
      while (rows.children.length > PAGE) rows.lastElementChild.remove();
    }
  }, (s) => { live.textContent = s === 'live' ? '● live' : s; });
  return { leave: close };
}
