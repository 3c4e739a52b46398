// Overview: per service queue depths, activity per minute (uPlot chart, 15 minutes), breaker, oldest job.
import uPlot from '/ui/vendor/uplot/uPlot.esm.js';
import { api } from '../api.js';
import { duration, esc } from '../format.js';

const SERIES = [
  { key: 'accepted', label: 'accepted', stroke: '#0b62c4' },
  { key: 'succeeded', label: 'succeeded', stroke: '#1a7f37' },
  { key: 'failed', label: 'failed', stroke: '#9a6700' },
  { key: 'dead', label: 'dead', stroke: '#c0262d' },
];

function card(s) {
  const q = s.queues;
  const sum = (k) => s.perMinute[k].reduce((a, b) => a + b, 0);
  const age = s.oldestCreatedAt ? duration(Date.now() - Date.parse(s.oldestCreatedAt)) : '—';
  const breaker = s.breaker.state === 'open' && s.breaker.retryAfterS !== null ? `open, half-open in ${s.breaker.retryAfterS} s`
    : s.breaker.state === 'unknown' ? 'closed (no transition seen)' : s.breaker.state;
  return `<section class="card" data-service="${esc(s.service)}" aria-labelledby="svc-${esc(s.service)}">
    <h3 id="svc-${esc(s.service)}">${esc(s.service)} <span class="breaker-${esc(s.breaker.state === 'unknown' ? 'closed' : s.breaker.state)}" data-field="breaker">breaker ${esc(breaker)}</span></h3>
    <dl class="kv">
      <div><dt>work ready</dt><dd data-field="work">${q.work.ready}</dd></div>
      <div><dt>running (unacked)</dt><dd data-field="running">${s.running}</dd></div>
      <div><dt>delayed</dt><dd data-field="delayed">${q.delayed}</dd></div>
      <div><dt>DLQ</dt><dd data-field="dlq"><a href="#/dlq/${esc(s.service)}">${q.dlq.ready}</a></dd></div>
      <div><dt>rpc ready</dt><dd>${q.rpc.ready}</dd></div>
      <div><dt>consumers (work/rpc)</dt><dd>${q.work.consumers} / ${q.rpc.consumers}</dd></div>
      <div><dt>oldest unfinished</dt><dd data-field="oldest">${esc(age)}</dd></div>
      <div><dt>15 min: succeeded / failed / dead</dt><dd data-field="window">${sum('succeeded')} / ${sum('failed')} / ${sum('dead')}</dd></div>
    </dl>
    <div class="chart" role="img" aria-label="${esc(s.service)}: jobs accepted, succeeded, failed and dead per minute, last 15 minutes"></div>
  </section>`;
}

function chartData(s) {
  return [s.perMinute.minutes.map((m) => Date.parse(m) / 1000), ...SERIES.map((x) => s.perMinute[x.key])];
}

export async function enter({ main, setStatus, describe }) {
  main.innerHTML = '<h2>Overview <span class="live" id="ov-live"></span></h2><div class="grid" id="ov-grid"></div>';
  const grid = main.querySelector('#ov-grid');
  const charts = new Map();
  let timer;
  let stopped = false;
  const refresh = async () => {
    try {
      const o = await api('GET', '/v1/overview');
      if (stopped) return;
      grid.innerHTML = o.services.map(card).join('') || '<p class="muted">This key may use no service.</p>';
      for (const c of charts.values()) c.destroy();
      charts.clear();
      for (const s of o.services) {
        const el = grid.querySelector(`[data-service="${CSS.escape(s.service)}"] .chart`);
        const width = Math.max(260, el.clientWidth || 360);
        charts.set(s.service, new uPlot({
          width, height: 150,
          scales: { x: { time: true } },
          axes: [{}, { size: 36 }],
          series: [{}, ...SERIES.map((x) => ({ label: x.label, stroke: x.stroke, width: 2, points: { show: true, size: 4 } }))],
          legend: { live: false },
        }, chartData(s), el));
      }
      main.querySelector('#ov-live').textContent = `updated ${new Date(o.at).toLocaleTimeString([], { hour12: false })}`;
      setStatus('');
    } catch (err) {
      setStatus(describe(err));
    }
    if (!stopped) timer = setTimeout(refresh, 2000);
  };
  await refresh();
  return { leave() { stopped = true; clearTimeout(timer); for (const c of charts.values()) c.destroy(); } };
}
