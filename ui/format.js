// Small helpers shared by the views: escaping, times, durations, state badges.
export const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

export const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) + '.' + String(new Date(iso).getMilliseconds()).padStart(3, '0') : '—');
export const dateTime = (iso) => (iso ? `${new Date(iso).toLocaleDateString()} ${time(iso)}` : '—');

export function duration(ms) {
  if (ms === undefined || ms === null || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

export const badge = (state) => `<span class="state state-${esc(state)}">${esc(state)}</span>`;

export const STATES = ['queued', 'running', 'retrying', 'succeeded', 'failed', 'dead', 'cancelled'];
