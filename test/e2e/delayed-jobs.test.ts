import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { Stack } from '../support/stack.ts';

describe('delayed jobs over HTTP', () => {
  const url = brokerUrl();
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('delayed jobs') });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('runs a job sent with Gw-Delay-Ms no earlier than asked, and not much later', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'later', headers: { prefer: 'respond-async', 'gw-delay-ms': '1500' } });
    const acceptedAt = Date.now();
    expect(res.status).toBe(202);
    const { id: jobId } = (await res.json()) as { id: string };
    let call;
    for (let i = 0; i < 200 && !call; i++) {
      call = stack.demo.calls.find((c) => c.idempotencyKey === jobId);
      if (!call) await new Promise((r) => setTimeout(r, 25));
    }
    expect(call).toBeDefined();
    expect(call!.at - acceptedAt).toBeGreaterThanOrEqual(1500 - 50);
    // One delay unit (100 ms) of rounding plus processing slack.
    expect(call!.at - acceptedAt).toBeLessThan(1500 + 100 + 1000);
  });

  it('refuses a delay on a sync request, and a malformed delay, with 400', async () => {
    const sync = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x', headers: { 'gw-delay-ms': '100' } });
    expect(sync.status).toBe(400);
    expect(((await sync.json()) as { code: string }).code).toBe('GW_ERR_DELAY_INVALID');
    const bad = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', 'gw-delay-ms': 'soon' } });
    expect(bad.status).toBe(400);
  });
});
