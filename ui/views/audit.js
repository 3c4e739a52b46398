// Audit trail: every replay, discard and cancel of this tenant (who, what, when, why), newest first.
import { api } from '../api.js';
import { dateTime, esc } from '../format.js';

export function auditTable(items) {
  if (!items.length) return '<p class="muted" data-empty>No audit entries.</p>';
  return `<div class="table-wrap"><table class="audit"><thead><tr><th scope="col">when</th><th scope="col">action</th><th scope="col">service</th><th scope="col">jobs</th><th scope="col">key</th><th scope="col">why</th><th scope="col">details</th></tr></thead><tbody>
  ${items.map((e) => `<tr data-audit-id="${esc(e.id)}" data-action="${esc(e.action)}">
    <td>${dateTime(e.at)}</td><td><strong>${esc(e.action)}</strong></td><td>${esc(e.service)}${e.target ? ` → ${esc(e.target)}` : ''}</td>
    <td class="wrap"><details><summary>${e.count}</summary><span class="mono">${e.ids.map(esc).join(' ')}</span></details></td>
    <td class="mono">${esc(e.keyId)}</td><td class="wrap" data-field="reason">${esc(e.reason ?? '')}</td>
    <td class="wrap muted">${[e.ratePerS ? `${e.ratePerS}/s` : '', e.resetAttempts ? 'attempts reset' : '', e.notFound ? `${e.notFound} not found` : '', e.group ? 'by group' : ''].filter(Boolean).join(', ')}</td></tr>`).join('')}
  </tbody></table></div>`;
}

export async function enter({ main, setStatus, describe }) {
  main.innerHTML = '<h2>Audit trail</h2><div id="audit-list"></div><div class="pager"><button type="button" id="audit-first">Newest</button><button type="button" id="audit-next">Older</button></div>';
  let next = null;
  const load = async (cursor) => {
    try {
      const page = await api('GET', `/v1/audit?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      main.querySelector('#audit-list').innerHTML = auditTable(page.items);
      next = page.next;
      main.querySelector('#audit-next').disabled = !next;
    } catch (err) {
      setStatus(describe(err));
    }
  };
  main.querySelector('#audit-first').addEventListener('click', () => void load());
  main.querySelector('#audit-next').addEventListener('click', () => { if (next) void load(next); });
  await load();
  return {};
}
