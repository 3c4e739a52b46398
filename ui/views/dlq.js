// DLQ workbench: dead letters grouped by failure; for a group or a selection, replay (dry run, pace,
// attempt reset, redirect) or discard (reason required); the service's audit trail below.
import { api } from '../api.js';
import { dateTime, esc } from '../format.js';
import { auditTable } from './audit.js';

function groupCard(g, i) {
  const title = `${g.status ? `HTTP ${g.status}` : 'no HTTP answer'} · ${g.code ?? 'unknown code'} · ${g.reason ?? '—'}`;
  return `<section class="card group" data-group="${esc(g.id)}" aria-labelledby="g-${i}">
    <h3 id="g-${i}"><label><input type="radio" name="group" value="${esc(g.id)}"> ${esc(title)}</label></h3>
    <p><strong data-field="count">${g.count}</strong> jobs · first ${dateTime(g.firstSeenAt)} · last ${dateTime(g.lastSeenAt)}</p>
    <details><summary>Jobs${g.idsTruncated ? ' (first 1000)' : ''}</summary>
      <ul class="mono">${g.ids.map((id) => `<li><label><input type="checkbox" name="id" value="${esc(id)}"> <a href="#/job/${encodeURIComponent(id)}">${esc(id)}</a></label></li>`).join('')}</ul>
    </details>
  </section>`;
}

export async function enter({ main, setStatus, describe, listServices }, [wanted]) {
  const services = await listServices();
  if (!services.length) {
    main.innerHTML = '<h2>DLQ workbench</h2><p class="muted">This key may use no service.</p>';
    return {};
  }
  const service = services.includes(wanted) ? wanted : services[0];
  main.innerHTML = `<h2>DLQ workbench</h2>
  <div class="filters"><label>Service <select id="dlq-service">${services.map((s) => `<option${s === service ? ' selected' : ''}>${esc(s)}</option>`).join('')}</select></label>
  <button type="button" id="dlq-refresh">Refresh</button></div>
  <div class="grid" id="dlq-groups" aria-live="polite"></div>
  <form class="card" id="dlq-op" style="margin-top:14px" aria-labelledby="dlq-op-title">
    <h3 id="dlq-op-title">Act on the selected group, or on the jobs ticked inside groups</h3>
    <div class="actions">
      <label class="field">Pace (jobs/s, empty = at once) <input type="number" name="rate" min="0.1" max="1000" step="0.1" inputmode="decimal"></label>
      <label class="field">Redirect to <select name="redirect"><option value="">${esc(service)} (same)</option>${services.filter((s) => s !== service).map((s) => `<option>${esc(s)}</option>`).join('')}</select></label>
      <label><input type="checkbox" name="reset" checked> reset attempts</label>
      <label class="field">Note <input name="note" placeholder="optional, kept in the audit trail"></label>
      <button type="button" id="dlq-dry">Dry run</button>
      <button type="button" class="primary" id="dlq-replay">Replay</button>
    </div>
    <div class="actions">
      <label class="field">Discard reason (required) <input name="reason" id="dlq-reason" size="40"></label>
      <button type="button" class="danger" id="dlq-discard">Discard</button>
    </div>
    <div class="result" id="dlq-result" aria-live="polite"></div>
  </form>
  <h3 style="margin-top:14px">Audit trail of ${esc(service)}</h3>
  <div id="dlq-audit"></div>`;
  const groupsEl = main.querySelector('#dlq-groups');
  const form = main.querySelector('#dlq-op');
  const result = main.querySelector('#dlq-result');

  const loadAudit = async () => {
    const page = await api('GET', `/v1/audit?service=${encodeURIComponent(service)}&limit=20`);
    main.querySelector('#dlq-audit').innerHTML = auditTable(page.items);
  };
  const load = async () => {
    try {
      const page = await api('GET', `/v1/dlq/${encodeURIComponent(service)}/groups`);
      groupsEl.innerHTML = page.items.map(groupCard).join('') || '<p class="muted" data-empty>The DLQ holds no dead letters of this tenant.</p>';
      await loadAudit();
      setStatus('');
    } catch (err) {
      setStatus(describe(err));
    }
  };
  groupsEl.addEventListener('change', () => {
    for (const c of groupsEl.querySelectorAll('.group')) c.classList.toggle('selected', c.querySelector('input[name="group"]').checked);
  });
  const selection = () => {
    const ids = [...groupsEl.querySelectorAll('input[name="id"]:checked')].map((i) => i.value);
    if (ids.length) return { ids };
    const group = groupsEl.querySelector('input[name="group"]:checked')?.value;
    return group ? { group } : undefined;
  };
  const show = (r, verb) => {
    result.innerHTML = `<p data-field="summary"><strong>${r.dryRun ? `Dry run: would ${verb}` : `${verb === 'replay' ? 'Replayed' : 'Discarded'}`} ${r.ids.length}</strong> job(s)${r.target !== r.service ? ` into ${esc(r.target)}` : ''}${r.notFound.length ? `, ${r.notFound.length} not found` : ''}.</p>
      <ul class="mono" data-field="ids">${r.ids.map((id) => `<li>${esc(id)}</li>`).join('')}</ul>`;
  };
  const replay = async (dryRun) => {
    const sel = selection();
    if (!sel) return setStatus('Select a group, or tick jobs inside a group.');
    const f = new FormData(form);
    const body = { ...sel, dryRun, resetAttempts: f.get('reset') === 'on' };
    if (f.get('rate')) body.ratePerS = Number(f.get('rate'));
    if (f.get('redirect')) body.redirectTo = f.get('redirect');
    if (f.get('note')) body.note = f.get('note');
    try {
      result.textContent = dryRun ? 'Listing…' : 'Replaying…';
      show(await api('POST', `/v1/dlq/${encodeURIComponent(service)}/replays`, body), 'replay');
      if (!dryRun) await load();
    } catch (err) { result.textContent = ''; setStatus(describe(err)); }
  };
  main.querySelector('#dlq-dry').addEventListener('click', () => void replay(true));
  main.querySelector('#dlq-replay').addEventListener('click', () => void replay(false));
  main.querySelector('#dlq-discard').addEventListener('click', async () => {
    const sel = selection();
    const reason = main.querySelector('#dlq-reason').value.trim();
    if (!sel) return setStatus('Select a group, or tick jobs inside a group.');
    if (!reason) { setStatus('A discard needs a reason.'); return main.querySelector('#dlq-reason').focus(); }
    try {
      show(await api('POST', `/v1/dlq/${encodeURIComponent(service)}/discards`, { ...sel, reason }), 'discard');
      main.querySelector('#dlq-reason').value = '';
      await load();
    } catch (err) { setStatus(describe(err)); }
  });
  main.querySelector('#dlq-service').addEventListener('change', (e) => { location.hash = `#/dlq/${encodeURIComponent(e.target.value)}`; });
  main.querySelector('#dlq-refresh').addEventListener('click', () => void load());
  await load();
  return {};
}
