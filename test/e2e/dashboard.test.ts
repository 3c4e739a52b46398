import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/sse.ts';
import { Stack } from '../support/stack.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const KEY_A = 'gwk_ui-tenant-a-0123456789abcdefghijklmn';
const KEY_B = 'gwk_ui-tenant-b-0123456789abcdefghijklmn';
const keys = { keys: [{ id: 'a-ops', sha256: hashKey(KEY_A), tenant: 'a' }, { id: 'b-ops', sha256: hashKey(KEY_B), tenant: 'b' }] };
/** Generous but bounded: the machine is shared and loaded. */
const UI_TIMEOUT = 20_000;

/**
 * The dashboard at /ui/ in real headless Chromium (Debian's, driven by playwright-core), against a
 * real broker and the demo downstream: live job list, a failing job's attempts, the DLQ workbench
 * (group dry run, replay, discard with a reason, the audit trail), tenant isolation in the page, and
 * cancel. Screenshots of each view go to docs/ (shown in the README).
 */
describe('dashboard (/ui/) in headless Chromium', () => {
  const url = brokerUrl();
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  const foreign: string[] = [];
  const consoleErrors: string[] = [];
  let navigations = 0;

  const submit = async (key: string, path: string, headers: Record<string, string> = {}): Promise<string> => {
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/${path}`, { method: 'POST', body: 'job', headers: { authorization: `Bearer ${key}`, prefer: 'respond-async', 'content-type': 'text/plain', ...headers } });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const stateOf = async (key: string, id: string): Promise<string> => ((await (await fetch(`${stack.baseUrl}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { state: string }).state;
  /** Waits for one of `states`; the error names the state the job was left in. */
  const waitState = async (key: string, id: string, states: string[], ms = 20_000): Promise<void> => {
    let last = '';
    await until(async () => (states.includes((last = await stateOf(key, id))) ? true : undefined), ms).catch(() => {
      throw new Error(`job ${id} is ${last}, not ${states.join(' or ')}, after ${ms} ms`);
    });
  };
  const callsOf = (id: string): number => stack.demo.calls.filter((c) => c.idempotencyKey === id).length;
  const signIn = async (key: string): Promise<void> => {
    await page.fill('#apikey', key);
    await page.click('#signin button[type=submit]');
    await page.waitForSelector(`#who:text("…${key.slice(-4)}")`, { timeout: UI_TIMEOUT });
  };
  const shot = (name: string): Promise<Buffer> => page.screenshot({ path: `docs/ui-${name}.png`, fullPage: true });

  beforeAll(async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} (apt-get install chromium)`).toBe(true);
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('dashboard'),
      // The breaker stays out of it: this test fails jobs on purpose, and a breaker opened by them
      // would hand jobs back instead of dead-lettering them (a breaker test's business, not this one's).
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 2, baseMs: 200, capMs: 400 }, breaker: { volumeThreshold: 1000 } }, billing: { url: '{DEMO}' } },
      enqueuerEnv: { API_KEYS_JSON: JSON.stringify(keys) },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(UI_TIMEOUT);
    page.on('request', (r) => {
      if (!r.url().startsWith(stack.baseUrl) && !r.url().startsWith('data:')) foreign.push(r.url());
    });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) navigations++;
    });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await stack?.stop(url);
  });

  it('signs in; a job submitted by curl appears live in the list and reaches succeeded without a reload', async () => {
    await page.goto(`${stack.baseUrl}/ui/#/jobs`);
    // Without a key the API answers 401 and the page asks for one.
    await page.waitForSelector('#status:text("Sign in")');
    await signIn(KEY_A);
    await page.waitForSelector('#jobs-live:text("live")');
    const before = navigations;
    const id = await submit(KEY_A, 'delay/700');
    await page.waitForSelector(`tr[data-job-id="${id}"]`);
    await page.waitForSelector(`tr[data-job-id="${id}"] .state-succeeded`);
    expect(navigations).toBe(before);
    expect(await stateOf(KEY_A, id)).toBe('succeeded');
  });

  it("shows a failing job's every attempt in its detail", async () => {
    const id = await submit(KEY_A, 'status/500');
    await waitState(KEY_A, id, ['dead']);
    await page.goto(`${stack.baseUrl}/ui/#/job/${id}`);
    await page.waitForSelector('#jd-timeline tr[data-state="dead"]');
    const rows = await page.$$eval('#jd-timeline tbody tr', (trs) => trs.map((tr) => `${tr.getAttribute('data-state')}@${tr.getAttribute('data-attempt')}`));
    expect(rows).toEqual(['queued@1', 'running@1', 'retrying@1', 'running@2', 'dead@2']);
    expect(await page.textContent('#jd-timeline')).toContain('HTTP 500');
    // The request as forwarded: method and path (the body is not kept, only its size).
    expect(await page.textContent('[data-field="request"]')).toContain('POST /status/500');
    await page.waitForSelector('#jd-retry');
    await shot('job-detail');
  });

  it('DLQ workbench: a group dry run lists exactly its ids, its replay empties it and every job succeeds; a discard with a reason is in the audit trail', async () => {
    // Three jobs that fail twice (503, attempts spent) and then succeed: "fixed" when replayed.
    const flaky = await Promise.all([1, 2, 3].map(() => submit(KEY_A, 'fail-until/2')));
    const refused = await submit(KEY_A, 'status/400');
    for (const id of [...flaky, refused]) await waitState(KEY_A, id, ['dead', 'failed']);
    // The dead letters are in the DLQ (dead-lettering follows the dead event by a moment), with the
    // previous test's 500.
    await until(async () => {
      const r = (await (await fetch(`${stack.baseUrl}/v1/dlq/echo`, { headers: { authorization: `Bearer ${KEY_A}` } })).json()) as { total: number };
      return r.total === 5 ? true : undefined;
    }, 20_000, 300);
    await page.goto(`${stack.baseUrl}/ui/#/dlq/echo`);
    const group503 = page.locator('.group', { hasText: 'HTTP 503' });
    expect(await group503.locator('[data-field="count"]').textContent()).toBe('3');
    await group503.locator('input[name="group"]').check();
    await page.click('#dlq-dry');
    await page.waitForSelector('#dlq-result [data-field="summary"]:has-text("Dry run")');
    const listed = await page.$$eval('#dlq-result [data-field="ids"] li', (lis) => lis.map((li) => li.textContent));
    expect(listed.sort()).toEqual([...flaky].sort());
    await shot('dlq');
    await page.click('#dlq-replay');
    await page.waitForSelector('#dlq-result [data-field="summary"]:has-text("Replayed 3")');
    await page.waitForSelector('.group:has-text("HTTP 503")', { state: 'detached' });
    // Lost 0: every replayed job succeeds, each called exactly once more (3 calls each in all).
    for (const id of flaky) await waitState(KEY_A, id, ['succeeded']);
    expect(flaky.map(callsOf)).toEqual([3, 3, 3]);

    const group400 = page.locator('.group', { hasText: 'HTTP 400' });
    await group400.locator('input[name="group"]').check();
    await page.click('#dlq-discard');
    await page.waitForSelector('#status:text("needs a reason")');
    await page.fill('#dlq-reason', 'malformed input, client told');
    await page.click('#dlq-discard');
    await page.waitForSelector('#dlq-result [data-field="summary"]:has-text("Discarded 1")');
    await page.waitForSelector('.group:has-text("HTTP 400")', { state: 'detached' });
    expect(await page.locator('.group').count()).toBe(1);
    await page.waitForSelector('#dlq-audit tr[data-action="discard"] [data-field="reason"]:text("malformed input, client told")');
    await page.goto(`${stack.baseUrl}/ui/#/audit`);
    await page.waitForSelector('tr[data-action="discard"]:has-text("malformed input, client told")');
    expect(await page.locator('tr[data-action="replay"]').count()).toBe(1);
    await shot('audit');
  });

  it('cancel from the job page: a delayed job never reaches the downstream', async () => {
    const id = await submit(KEY_A, 'echo', { 'gw-delay-ms': '2500' });
    await page.goto(`${stack.baseUrl}/ui/#/job/${id}`);
    await page.fill('#jd-reason', 'sent by mistake');
    await page.click('#jd-cancel');
    await page.waitForSelector('h2 .state-cancelled');
    // Well past the due time: nothing called, still cancelled.
    await new Promise((resolve) => setTimeout(resolve, 3500));
    expect(callsOf(id)).toBe(0);
    expect(await stateOf(KEY_A, id)).toBe('cancelled');
    await page.waitForSelector('#jd-timeline tr[data-state="cancelled"]');
  });

  it('overview and jobs views with real data (screenshots at 1280 and 390 px)', async () => {
    await page.goto(`${stack.baseUrl}/ui/#/overview`);
    await page.waitForSelector('[data-service="echo"] .uplot');
    // The last 15 minutes' counts (succeeded / failed / dead) show the jobs of the tests above.
    await page.waitForSelector('[data-service="echo"] [data-field="window"]:text-matches("^[1-9]")');
    await shot('overview');
    await page.goto(`${stack.baseUrl}/ui/#/jobs`);
    await page.waitForSelector('tr[data-job-id] .state-succeeded');
    await shot('jobs');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${stack.baseUrl}/ui/#/overview`);
    await page.waitForSelector('[data-service="echo"] .uplot');
    // Nothing wider than the screen at 390 px.
    expect(await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await shot('overview-390');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("tenant B's key never sees tenant A's jobs, groups or audit entries in the page", async () => {
    const aJobs = (await (await fetch(`${stack.baseUrl}/v1/jobs?limit=100`, { headers: { authorization: `Bearer ${KEY_A}` } })).json()) as { items: Array<{ id: string }> };
    expect(aJobs.items.length).toBeGreaterThan(4);
    const bJob = await submit(KEY_B, 'status/400');
    await waitState(KEY_B, bJob, ['failed']);
    await page.goto(`${stack.baseUrl}/ui/#/jobs`);
    await signIn(KEY_B);
    await page.waitForSelector(`tr[data-job-id="${bJob}"]`);
    const listed = await page.$$eval('tr[data-job-id]', (trs) => trs.map((tr) => tr.getAttribute('data-job-id')));
    expect(listed).toEqual([bJob]);
    // A's job by id: not found for B.
    await page.fill('#jobs-search input[name="q"]', aJobs.items[0]!.id);
    await page.click('#jobs-search button');
    await page.waitForSelector('#status:text("No job with id")');
    await page.goto(`${stack.baseUrl}/ui/#/dlq/echo`);
    await page.waitForSelector('.group');
    const ids = await page.$$eval('.group input[name="id"]', (inputs) => inputs.map((i) => (i as unknown as { value: string }).value));
    expect(ids).toEqual([bJob]);
    await page.waitForSelector('#dlq-audit [data-empty]');
    await page.goto(`${stack.baseUrl}/ui/#/audit`);
    await page.waitForSelector('#audit-list [data-empty]');
    expect(await page.locator('tr[data-audit-id]').count()).toBe(0);
    expect(foreign).toEqual([]);
    expect(consoleErrors.filter((e) => !/401|404|Failed to load resource/.test(e))).toEqual([]);
  });
});
