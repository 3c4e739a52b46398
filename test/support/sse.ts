import { expect } from 'vitest';

/** One server-sent event as a test reads it. */
export interface SseEvent {
  event: string;
  id?: string;
  data: Record<string, unknown>;
}

/**
 * Reads a server-sent event stream until it ends (or `timeoutMs`), returning the events (comments
 * and `retry:` lines skipped).
 */
export async function readSse(url: string, timeoutMs: number, onEvent?: (e: SseEvent) => void, signal?: AbortSignal, headers: Record<string, string> = {}): Promise<{ status: number; contentType: string | null; events: SseEvent[] }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  signal?.addEventListener('abort', () => ac.abort(), { once: true });
  const events: SseEvent[] = [];
  try {
    const res = await fetch(url, { signal: ac.signal, headers: { accept: 'text/event-stream', ...headers } });
    if (!res.body || res.status !== 200) return { status: res.status, contentType: res.headers.get('content-type'), events };
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const e: Partial<SseEvent> = {};
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) e.event = line.slice(7);
            else if (line.startsWith('id: ')) e.id = line.slice(4);
            else if (line.startsWith('data: ')) e.data = JSON.parse(line.slice(6)) as Record<string, unknown>;
          }
          if (e.event && e.data) {
            events.push(e as SseEvent);
            onEvent?.(e as SseEvent);
          }
        }
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    }
    return { status: res.status, contentType: res.headers.get('content-type'), events };
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `fn` until it returns a value other than undefined. */
export async function until<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000, stepMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** `<offset>-<index>` SSE ids compared as the events stream orders them. */
export function idKey(id: string | undefined): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(id ?? '');
  if (!m) throw new Error(`not a stream event id: ${id}`);
  return [Number(m[1]), Number(m[2])];
}

/** Whether the events' stream ids strictly increase. */
export function ascending(events: readonly SseEvent[]): boolean {
  return events.every((e, i) => {
    if (i === 0) return true;
    const [a, b] = [idKey(events[i - 1]!.id), idKey(e.id)];
    return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  });
}

/**
 * Asserts a job's transitions as a stream shows them: the full sequence, except that a `retrying` the
 * dequeuer confirmed only after the next attempt had started may be skipped (streams are monotonic per
 * job, like the store).
 */
export function expectProgress(seen: readonly string[], full: readonly string[]): void {
  expect(seen.filter((s) => !s.startsWith('retrying:'))).toEqual(full.filter((s) => !s.startsWith('retrying:')));
  let i = 0;
  for (const s of seen) {
    while (i < full.length && full[i] !== s) i++;
    expect(i, `${s} out of order in ${seen.join(', ')}`).toBeLessThan(full.length);
  }
}

/** `<job id>:<event>:<attempts>` of a job event, for comparing sequences. */
export const label = (e: SseEvent): string => `${String(e.data.id)}:${e.event}:${String(e.data.attempts)}`;
