import { describe, expect, it } from 'vitest';
import type { JobEvent } from '../../shared/events.ts';
import { ActivityBoard } from '../../enqueuer/workbench/activity.ts';

const t0 = Date.UTC(2026, 11, 3, 10, 0, 0);
const job = (jobId: string, state: JobEvent['state'], at: number, extra: Partial<JobEvent> = {}): JobEvent => ({ v: 1, kind: 'job', jobId, tenant: 't', service: 'echo', state, attempt: 1, at, ...extra });

describe('ActivityBoard (pure)', () => {
  it("a queued that reaches the stream after the job's running or final state neither stops it running nor reopens it", () => {
    const board = new ActivityBoard({ now: () => t0 + 1_000 });
    board.apply(job('a', 'running', t0 + 2));
    board.apply(job('a', 'queued', t0 + 1));
    expect(board.view('t', 'echo')).toMatchObject({ active: 1, running: 1 });
    board.apply(job('a', 'succeeded', t0 + 3));
    board.apply(job('b', 'running', t0 + 2));
    board.apply(job('b', 'succeeded', t0 + 3));
    board.apply(job('b', 'queued', t0 + 1));
    const view = board.view('t', 'echo');
    expect(view).toMatchObject({ active: 0, running: 0 });
    // Each job was still accepted once.
    expect(view.counts.accepted.at(-1)).toBe(2);
    expect(view.counts.succeeded.at(-1)).toBe(2);
  });

  it('an operator replay reopens a finished job', () => {
    const board = new ActivityBoard({ now: () => t0 + 1_000 });
    board.apply(job('a', 'queued', t0));
    board.apply(job('a', 'dead', t0 + 1));
    board.apply(job('a', 'queued', t0 + 2, { replay: true }));
    expect(board.view('t', 'echo')).toMatchObject({ active: 1, running: 0 });
  });
});
