// The page's only way to the gateway: the documented /v1 API, with the API key of this tab.
const KEY = 'gw.apiKey';

export const session = {
  get key() { return sessionStorage.getItem(KEY) ?? ''; },
  set(key) { if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? problem?.title ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra = {}) {
  const h = { accept: 'application/json', ...extra };
  if (session.key) h.authorization = `Bearer ${session.key}`;
  return h;
}

/** Calls a route; resolves with the JSON body (undefined for 204), rejects with an ApiError. */
export async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : undefined;
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

/**
 * Reads a server-sent event stream with fetch (so the key travels in the Authorization header,
 * which EventSource cannot send) and reconnects after a drop. Returns a close function.
 */
export function stream(path, onEvent, onState = () => {}) {
  const ac = new AbortController();
  let closed = false;
  const run = async () => {
    while (!closed) {
      try {
        const res = await fetch(path, { headers: headers({ accept: 'text/event-stream' }), signal: ac.signal });
        if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => undefined));
        onState('live');
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event && data) onEvent(event, JSON.parse(data));
          }
        }
        if (closed) return;
        onState('ended');
        return;
      } catch (err) {
        if (closed) return;
        onState('reconnecting', err);
        if (err instanceof ApiError && err.status < 500 && err.status !== 429) return;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  };
  void run();
  return () => { closed = true; ac.abort(); };
}
