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
