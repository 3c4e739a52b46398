import type { Lane } from './names.ts';

/** A job's priority (`Gw-Priority`): high jobs go to their service's high lane. */
export type Priority = 'normal' | 'high';

/** Every lane of a service with `lanes` normal lanes: the normal ones in order, then the high one. */
export function serviceLanes(lanes: number): Lane[] {
  return [...Array.from({ length: lanes }, (_, i) => i), 'high'];
}

/** FNV-1a over the UTF-16 code units: stable across processes and versions, cheap, well spread. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The lane a job goes to, pure: high priority → the high lane; otherwise a hash of the tenant over
 * the service's normal lanes, so one tenant's jobs always share a lane (FIFO among themselves) and a
 * burst of one tenant stays out of the lanes of most others (docs/adr/1700-fair-lanes-priority-pacing.md).
 */
export function laneFor(tenant: string, priority: Priority | undefined, lanes: number): Lane {
  if (priority === 'high') return 'high';
  return lanes <= 1 ? 0 : fnv1a(tenant) % lanes;
}
