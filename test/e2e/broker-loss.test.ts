import { beforeEach, describe, expect, it } from 'vitest';
import { stackOnPrivateNode } from '../support/stack.ts';

/** These tests stop and kill a broker, so they run on a private node, never the shared one. */
describe('broker loss while sync requests wait', () => {
  const env = stackOnPrivateNode();
  beforeEach(() => {
    expect.hasAssertions();
  });

  async function waitForOk(timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      const res = await fetch(`${env.stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'again' }).catch(() => undefined);
      if (res?.status === 200 && (await res.text()) === 'again') return Date.now() - t0;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`no 200 within ${timeoutMs} ms`);
  }

  for (const how of ['stop', 'kill'] as const) {
    it(`fails waiting requests with 503 at once when the broker goes away (${how}), and serves again on its own once it is back`, async () => {
      expect((await fetch(`${env.stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x' })).status).toBe(200);
      const t0 = Date.now();
      const waiting = Array.from({ length: 20 }, () =>
        fetch(`${env.stack.baseUrl}/v1/services/echo/delay/5000`, { method: 'POST', body: 'w', headers: { prefer: 'wait=20' } }).then(async (r) => ({
          status: r.status,
          code: ((await r.json()) as { code?: string }).code,
          ms: Date.now() - t0,
        })),
      );
      await new Promise((r) => setTimeout(r, 500));
      const cutAt = Date.now() - t0;
      if (how === 'stop') await env.node.stop();
      else await env.node.kill();
      const answers = await Promise.all(waiting);
      for (const a of answers) {
        expect(a.status).toBe(503);
        expect(a.code).toBe('GW_ERR_BROKER_UNAVAILABLE');
        // Well before the 20 s wait and the 5 s downstream delay: the close is noticed at once.
        expect(a.ms - cutAt).toBeLessThan(2000);
      }
      expect(env.stack.enqueuer.replies.inflight).toBe(0);
      const ready = await fetch(`${env.stack.baseUrl}/readyz`);
      expect(ready.status).toBe(503);
      const down = await fetch(`${env.stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x' });
      expect(down.status).toBe(503);
      expect(down.headers.get('retry-after')).toBeTruthy();
      await env.node.start();
      const recoveredMs = await waitForOk(30_000);
      expect(recoveredMs).toBeLessThan(30_000);
      expect((await fetch(`${env.stack.baseUrl}/readyz`)).status).toBe(200);
    });
  }
});
