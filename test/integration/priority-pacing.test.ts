import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/jobs.ts';
import { PacedDownstream, publishBacklog, submitJobs } from '../support/paced-downstream.ts';
import { Stack } from '../support/stack.ts';

const key = (t: string): string => `gwk_priority-${t}-0123456789abcdefghijklmn`;
const keysDoc = {
  keys: [
    { id: 'n-key', sha256: hashKey(key('n')), tenant: 'n' },
    { id: 'h-key', sha256: hashKey(key('h')), tenant: 'h', maxPriority: 'high' },
  ],
};

/**
 * Priority lanes and adaptive downstream pacing on a real broker (docs/adr/1700-fair-lanes-priority-pacing.md).
 * Three services on one stack, each with its own capacity-limited downstream.
 */
describe('priority, AIMD concurrency and Retry-After pauses', () => {
  const url = brokerUrl();
  const prio = new PacedDownstream({ latencyMs: 50 });
  // 200 ms calls: a capacity of 50 jobs/s, which a dequeuer on a loaded 2-core machine still reaches.
  const pace = new PacedDownstream({ latencyMs: 200, rejectAbove: 10 });
  const polite = new PacedDownstream({ latencyMs: 50 });
  let stack: Stack;

  beforeAll(async () => {
    await Promise.all([prio.listen(), pace.listen(), polite.listen()]);
    const env = { API_KEYS_JSON: JSON.stringify(keysDoc) };
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('priority pacing'),
      services: {
        prio: { url: prio.url, work: { prefetch: 20 } },
        pace: { url: pace.url, work: { prefetch: 32 } },
        polite: { url: polite.url, work: { prefetch: 20 } },
      },
      enqueuerEnv: env,
      dequeuerEnv: env,
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
    await Promise.all([prio.close(), pace.close(), polite.close()]);
  });

  it('Gw-Priority: high only for keys allowed it, async only; 400 for anything but high/normal', async () => {
    const post = (k: string, priority: string, async = true) =>
      fetch(`${stack.baseUrl}/v1/services/prio/job`, { method: 'POST', headers: { authorization: `Bearer ${key(k)}`, 'gw-priority': priority, ...(async ? { prefer: 'respond-async' } : {}) }, body: `${k} check` });
    const forbidden = await post('n', 'high');
    expect(forbidden.status).toBe(403);
    expect(((await forbidden.json()) as { code: string }).code).toBe('GW_ERR_PRIORITY_FORBIDDEN');
    const invalid = await post('h', 'urgent');
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as { code: string }).code).toBe('GW_ERR_PRIORITY_INVALID');
    expect((await post('h', 'high', false)).status).toBe(400);
    expect((await post('n', 'normal')).status).toBe(202);
    await until(() => prio.succeeded((c) => c.tag === 'check').length >= 1, 10_000, 'normal check job done');
  });

  it('2,000 normal jobs queued, then 20 high: all 20 start before the next 200 normal ones, and normal jobs keep progressing', async () => {
    const from = prio.calls.length;
    await publishBacklog({ url, topology: stack.topology, service: 'prio', tenant: 'n', count: 2000 });
    await until(() => prio.calls.length - from >= 100, 10_000, 'normal jobs running');
    const highAt = Date.now();
    await submitJobs({ baseUrl: stack.baseUrl, service: 'prio', key: key('h'), tenant: 'h', count: 20, clients: 4, headers: { 'gw-priority': 'high' } });
    await until(() => prio.succeeded((c) => c.tenant === 'h').length >= 20, 15_000, 'high jobs done');
    const calls = prio.calls.slice(from);
    const lastHigh = Math.max(...calls.filter((c) => c.tenant === 'h').map((c) => c.arrivedAt));
    const normalBetween = calls.filter((c) => c.tenant === 'n' && c.arrivedAt >= highAt && c.arrivedAt <= lastHigh).length;
    const normalLeft = 2000 - calls.filter((c) => c.tenant === 'n' && c.arrivedAt <= lastHigh).length;
    console.log(`priority: 20 high started within ${lastHigh - highAt} ms of their submission; ${normalBetween} normal started meanwhile, ${normalLeft} still queued`);
    expect(normalLeft).toBeGreaterThan(500);
    expect(normalBetween).toBeLessThan(200);
    // The minimum share: normal jobs started while the high ones were being submitted and run.
    expect(normalBetween).toBeGreaterThan(0);
    await until(() => new Set(prio.succeeded((c) => c.tenant === 'n').map((c) => c.tag)).size >= 2001, 60_000, 'every normal job done');
  }, 120_000);

  it('a downstream answering 503 above 10 concurrent calls: the limit converges to ≤ 12 within 10 s, ≥ 80% of its capacity is used, nothing dead-lettered', async () => {
    const limitGauge = async (): Promise<number> => {
      const text = await stack.dequeuer!.registry.getSingleMetricAsString('gw_downstream_concurrency_limit');
      return Number(/service="pace"[^}]*\} (\d+)/.exec(text)?.[1]);
    };
    const samples: Array<{ at: number; limit: number }> = [];
    const t0 = Date.now();
    await publishBacklog({ url, topology: stack.topology, service: 'pace', tenant: 'n', count: 700 });
    while (Date.now() - t0 < 12_000) {
      samples.push({ at: Date.now() - t0, limit: await limitGauge() });
      await new Promise((r) => setTimeout(r, 100));
    }
    await until(() => new Set(pace.succeeded().map((c) => c.tag)).size >= 700, 60_000, 'every paced job done');
    // Converged: from some moment within 10 s on, every sample is ≤ 12.
    const lastHigh = samples.filter((s) => s.limit > 12).at(-1)?.at ?? 0;
    const ok = pace.succeeded();
    const meanLatencyMs = ok.reduce((sum, c) => sum + (c.endedAt - c.arrivedAt), 0) / ok.length;
    const capacityPerS = 10 / (meanLatencyMs / 1000);
    const window = ok.filter((c) => c.endedAt - t0 >= 2000 && c.endedAt - t0 < 12_000);
    const throughputPerS = window.length / 10;
    const rejected = pace.calls.filter((c) => c.status === 503).length;
    const dlq = await (async () => {
      const conn = await connect(url);
      try {
        return (await (await conn.createChannel()).checkQueue(stack.topology.names.deadLetterQueue('pace'))).messageCount;
      } finally {
        await conn.close();
      }
    })();
    console.log(`aimd: limit last above 12 at ${lastHigh} ms, samples ${samples.map((s) => s.limit).join(' ')}; throughput ${throughputPerS.toFixed(0)}/s of a capacity of ${capacityPerS.toFixed(0)}/s (mean latency ${meanLatencyMs.toFixed(0)} ms); 503s ${rejected} of ${pace.calls.length} calls; DLQ ${dlq}`);
    expect(lastHigh).toBeLessThanOrEqual(10_000);
    expect(samples.at(-1)!.limit).toBeLessThanOrEqual(12);
    expect(throughputPerS).toBeGreaterThanOrEqual(0.8 * capacityPerS);
    expect(dlq).toBe(0);
    expect(await stack.dequeuer!.registry.getSingleMetricAsString('gw_dead_letters_total')).not.toMatch(/service="pace"[^}]*\} [1-9]/);
  }, 120_000);

  it('a 429 with Retry-After: 2 pauses the whole service: no call reaches the downstream for 2 s', async () => {
    await publishBacklog({ url, topology: stack.topology, service: 'polite', tenant: 'n', count: 400 });
    await until(() => polite.calls.length >= 50, 10_000, 'polite jobs running');
    polite.answerNext(429, { 'retry-after': '2' });
    const limited = await until(() => polite.calls.find((c) => c.status === 429), 5000, 'the 429 answered');
    await until(() => new Set(polite.succeeded().map((c) => c.tag)).size >= 400, 60_000, 'every polite job done');
    const after = polite.calls.filter((c) => c.arrivedAt > limited.arrivedAt).sort((x, y) => x.arrivedAt - y.arrivedAt);
    // Calls the dequeuer started before the 429 reached it (a few ms) may still arrive; then nothing for 2 s.
    const inFlight = after.filter((c) => c.arrivedAt - limited.arrivedAt < 100);
    const firstPaused = after.find((c) => c.arrivedAt - limited.arrivedAt >= 100)!;
    const gapMs = firstPaused.arrivedAt - limited.arrivedAt;
    console.log(`retry-after: ${inFlight.length} calls within 100 ms of the 429 (sent before it was seen), next call after ${gapMs} ms`);
    expect(inFlight.length).toBeLessThanOrEqual(20);
    expect(gapMs).toBeGreaterThanOrEqual(2000);
    expect(gapMs).toBeLessThan(3500);
    expect(await stack.dequeuer!.registry.getSingleMetricAsString('gw_downstream_pauses_total')).toMatch(/service="polite"[^}]*\} 1\b/);
  }, 90_000);
});
