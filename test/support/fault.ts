import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import type { Stack } from './stack.ts';

/** One HTTP answer as the fault tests record it: when it was sent, how long it took, status, the problem's code. */
export interface CallOutcome {
  at: number;
  ms: number;
  status: number;
  /** `code` of a problem answer (4xx/5xx); undefined otherwise. */
  code: string | undefined;
  retryAfter: string | null;
  requestId: string;
}

/** Sends a request and records its answer; a failed fetch is status 0. */
export async function call(url: string, init: RequestInit): Promise<CallOutcome> {
  const at = Date.now();
  const r = await fetch(url, init).catch(() => undefined);
  const text = (await r?.text()) ?? '';
  const status = r?.status ?? 0;
  return {
    at,
    ms: Date.now() - at,
    status,
    code: status >= 400 ? (JSON.parse(text) as { code?: string }).code : undefined,
    retryAfter: r?.headers.get('retry-after') ?? null,
    requestId: r?.headers.get('x-request-id') ?? '',
  };
}

/** `{ "503 GW_ERR_…": n, "200 ": n }`: the answers by status and code, for the run's summary line. */
export function answerCounts(outcomes: Iterable<{ status: number; code: string | undefined }>): Record<string, number> {
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(`${o.status} ${o.code ?? ''}`, (counts.get(`${o.status} ${o.code ?? ''}`) ?? 0) + 1);
  return Object.fromEntries(counts);
}

/**
 * The hooks of a fault suite around one stack: `start` before all tests, then `beforeStop` (the
 * suite's own extra parts), the stack's stop (deleting its topology on `url`) and `afterStop` after
 * all; every test must assert something.
 */
export function faultSuite(o: { url: string; start: () => Promise<Stack>; beforeStop?: () => Promise<void>; afterStop?: () => Promise<void> }): { readonly stack: Stack } {
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await o.start();
  });
  afterAll(async () => {
    await o.beforeStop?.();
    await stack?.stop(o.url).catch(() => {});
    await o.afterStop?.();
  });
  beforeEach(() => {
    expect.hasAssertions();
  });
  return {
    get stack(): Stack {
      if (!stack) throw new Error('the suite stack is not started');
      return stack;
    },
  };
}
