// Job detail: state, timeline of transitions (attempts, times, errors, retry gaps), result preview,
// actions: retry (a failed or dead job, from the DLQ) and cancel (a queued or retrying job).
import { api, stream } from '../api.js';
import { badge, dateTime, duration, esc, time } from '../format.js';

const PREVIEW_BYTES = 2048;

function decode(b64) {
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin.slice(0, PREVIEW_BYTES), (c) => c.charCodeAt(0));
  return { text: new TextDecoder('utf-8', { fatal: false }).decode(bytes), bytes: bin.length };
}

function timelineRows(items) {
  let prev;
  return items.map((e) => {
    const gap = prev ? Date.parse(e.at) - Date.parse(prev.at) : undefined;
    prev = e;
    const err = e.error ? `${esc(e.error.code)}${e.error.status ? ` (HTTP ${e.error.status})` : ''}: ${esc(e.error.message)}` : '';
    const next = e.nextAttemptAt ? `next attempt ${time(e.nextAttemptAt)} (in ${duration(Date.parse(e.nextAttemptAt) - Date.parse(e.at))})` : '';
    return `<tr data-state="${esc(e.state)}" data-attempt="${e.attempts}">
      <td>${badge(e.state)}${e.replay ? ' <span class="muted">replay</span>' : ''}</td><td>${e.attempts}</td><td>${time(e.at)}</td>
      <td>${gap === undefined ? '—' : `+${duration(gap)}`}</td><td class="wrap">${err} ${esc(next)}</td></tr>`;
  }).join('');
}

function requestBlock(q) {
  if (!q) return '<p class="muted">The forwarded request was not kept (accepted by another replica without Redis, or expired).</p>';
  const headers = Object.entries(q.headers).map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td class="wrap mono">${esc(v)}</td></tr>`).join('');
  return `<p data-field="request"><code>${esc(q.method)} ${esc(q.path)}${q.query ? `?${esc(q.query)}` : ''}</code> · body ${q.bodyBytes} bytes
    <span class="muted">(bodies are not stored)</span>${q.notBefore ? ` · due ${dateTime(q.notBefore)}` : ''}</p>
    <details><summary>Forwarded headers (${Object.keys(q.headers).length})</summary><div class="table-wrap"><table><tbody>${headers || '<tr><td class="muted">none</td></tr>'}</tbody></table></div></details>`;
}

function resultBlock(r) {
  if (!r) return '<p class="muted">No downstream answer yet.</p>';
  const body = decode(r.bodyBase64);
  const headers = Object.entries(r.headers).map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td class="wrap mono">${esc(v)}</td></tr>`).join('');
  return `<p>HTTP <strong data-field="result-status">${r.status}</strong>${r.bodyTruncated ? ' (body cut by the dequeuer)' : ''}</p>
    <div class="table-wrap"><table><tbody>${headers || '<tr><td class="muted">no headers kept</td></tr>'}</tbody></table></div>
    <details><summary>Body preview (${body.bytes} bytes${body.bytes > PREVIEW_BYTES ? `, first ${PREVIEW_BYTES}` : ''})</summary><pre class="body">${esc(body.text)}</pre></details>`;
}

export async function enter({ main, setStatus, describe }, [id]) {
  let closeStream = () => {};
  const render = async () => {
    const [j, tl] = await Promise.all([api('GET', `/v1/jobs/${encodeURIComponent(id)}`), api('GET', `/v1/jobs/${encodeURIComponent(id)}/timeline`)]);
    const canRetry = j.state === 'failed' || j.state === 'dead';
    const canCancel = j.state === 'queued' || j.state === 'retrying';
    main.innerHTML = `<h2>Job <code>${esc(j.id)}</code> <span data-field="state">${badge(j.state)}</span></h2>
      <div class="grid">
        <section class="card" aria-labelledby="jd-meta"><h3 id="jd-meta">Request</h3>
          <dl class="kv">
            <div><dt>service</dt><dd>${esc(j.service)}</dd></div>
            <div><dt>attempts</dt><dd data-field="attempts">${j.attempts}</dd></div>
            <div><dt>created</dt><dd class="t">${time(j.createdAt)}</dd></div>
            <div><dt>finished</dt><dd class="t">${time(j.finishedAt)}</dd></div>
          </dl>
          <p>Request id <code>${esc(j.requestId ?? '—')}</code>. Updated ${dateTime(j.updatedAt)}.</p>
          ${requestBlock(tl.request)}
          ${j.error ? `<p>Last error: <strong>${esc(j.error.code)}</strong>${j.error.status ? ` (HTTP ${j.error.status})` : ''} ${esc(j.error.message)}</p>` : ''}
          <div class="actions">
            ${canRetry ? '<button type="button" class="primary" id="jd-retry">Retry from the DLQ</button>' : ''}
            ${canCancel ? '<label class="field">Cancel reason <input id="jd-reason" placeholder="optional"></label><button type="button" class="danger" id="jd-cancel">Cancel job</button>' : ''}
          </div>
        </section>
        <section class="card" aria-labelledby="jd-result"><h3 id="jd-result">Result</h3>${resultBlock(j.result)}</section>
      </div>
      <h3 style="margin-top:14px">Timeline</h3>
      <div class="table-wrap"><table id="jd-timeline"><thead><tr><th scope="col">state</th><th scope="col">attempt</th><th scope="col">at</th><th scope="col">gap</th><th scope="col">error / next attempt</th></tr></thead>
      <tbody>${timelineRows(tl.items)}</tbody></table></div>`;
    main.querySelector('#jd-retry')?.addEventListener('click', async () => {
      try {
        const r = await api('POST', `/v1/dlq/${encodeURIComponent(j.service)}/replays`, { ids: [j.id], resetAttempts: true, note: 'retried from the job page' });
        setStatus(r.ids.length ? 'Replayed from the DLQ.' : 'Not in the DLQ (already replayed or discarded).');
      } catch (err) { setStatus(describe(err)); }
      await render().catch((err) => setStatus(describe(err)));
    });
    main.querySelector('#jd-cancel')?.addEventListener('click', async () => {
      const reason = main.querySelector('#jd-reason').value.trim();
      try {
        await api('POST', `/v1/jobs/${encodeURIComponent(j.id)}/cancel`, reason ? { reason } : {});
        setStatus('Cancelled: no dequeuer will send it downstream.');
      } catch (err) { setStatus(describe(err)); }
      await render().catch((err) => setStatus(describe(err)));
    });
    return j;
  };
  const j = await render();
  // Re-render on each transition of this job (the stream ends after its final one).
  if (!['succeeded', 'cancelled'].includes(j.state)) {
    closeStream = stream(`/v1/jobs/${encodeURIComponent(id)}/events`, () => void render().catch((err) => setStatus(describe(err))));
  }
  return { leave: () => closeStream() };
}
