import { Router, type Request, type Response } from 'express';
import { GatewayError } from '../../shared/errors.ts';
import { JOB_STATES, TERMINAL_STATES, type JobEvent, type JobState } from '../../shared/events.ts';
import { SERVICE_NAME_PATTERN } from '../../shared/topology/names.ts';
import type { EnqueuerConfig } from '../config.ts';
import type { JobEventHub } from '../events/job-event-hub.ts';
import { decodeCursor, rankOf, type ListQuery } from '../jobs/job-record.ts';
import { z } from 'zod';
import { bearer, json, linkHeader, pathParams, problems, sse, V1_PROBLEMS, type RouteDoc } from '../http/route-docs.ts';
import { currentStateEvent, JobEventSchema, jobEventView, JobPageSchema, JobSchema, JobStateSchema, jobView, sendPage } from '../http/views.ts';
import type { JobStore } from '../jobs/job-store.ts';
import type { Guard } from '../security/guard.ts';
import { StreamSlots } from '../events/stream-slots.ts';
import { compareEventIds, formatEventId, parseEventId, type EventId, type ReplayLog } from '../events/replay-log.ts';
import type { CatchUps } from '../events/catch-up.ts';
import { oldestKey } from '../../shared/oldest-key.ts';

/** What the SSE routes replay from on a `Last-Event-ID` (the enqueuer's events stream reader). */
export interface EventReplay {
  readonly log: ReplayLog;
  /** Position of the last transition read (undefined before the first). */
  readonly position: EventId | undefined;
  /** Reads the stream itself for an id older than {@link log}. */
  readonly catchUp: Pick<CatchUps, 'reserve' | 'read'>;
}

/** Live transitions a stream buffers while it catches up from the events stream; beyond it the stream ends (the client resumes from its last id). */
export const CATCH_UP_BUFFER_MAX = 10_000;

export interface JobsRouteDeps {
  config: Pick<EnqueuerConfig, 'jobsListMaxLimit' | 'sseMaxConnections' | 'sseMaxPerTenant' | 'sseHeartbeatMs'>;
  jobs: JobStore;
  hub: JobEventHub;
  replay: EventReplay;
  /** The key's service allow-list: other services' jobs are not listed, read (404) or streamed. */
  guard: Guard;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Default page size of `GET /v1/jobs`. */
export const DEFAULT_LIST_LIMIT = 20;

/** Parses `GET /v1/jobs` query parameters; anything malformed is a 400, `limit` is capped. */
export function parseListQuery(q: Record<string, unknown>, maxLimit: number): ListQuery {
  const one = (name: string): string | undefined => {
    const v = q[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new GatewayError('GW_ERR_BAD_REQUEST', `${name} must be given once`);
    return v;
  };
  const out: ListQuery = { limit: DEFAULT_LIST_LIMIT };
  const service = one('service');
  if (service !== undefined) {
    if (!SERVICE_NAME_PATTERN.test(service)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'invalid service');
    out.service = service;
  }
  const state = one('state');
  if (state !== undefined) {
    if (!(JOB_STATES as readonly string[]).includes(state)) throw new GatewayError('GW_ERR_BAD_REQUEST', `state must be one of ${JOB_STATES.join(', ')}`);
    out.state = state as JobState;
  }
  for (const name of ['since', 'until'] as const) {
    const v = one(name);
    if (v === undefined) continue;
    const ms = Date.parse(v);
    if (!/^\d{4}-\d\d-\d\dT/.test(v) || Number.isNaN(ms)) throw new GatewayError('GW_ERR_BAD_REQUEST', `${name} must be an ISO-8601 time`);
    out[name] = ms;
  }
  const requestId = one('requestId');
  if (requestId !== undefined) {
    if (!/^[\x21-\x7e]{1,200}$/.test(requestId)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'invalid requestId');
    out.requestId = requestId;
  }
  const limit = one('limit');
  if (limit !== undefined) {
    if (!/^\d{1,6}$/.test(limit) || Number(limit) < 1) throw new GatewayError('GW_ERR_BAD_REQUEST', 'limit must be a whole number ≥ 1');
    out.limit = Math.min(Number(limit), maxLimit);
  } else out.limit = Math.min(out.limit, maxLimit);
  const cursor = one('cursor');
  if (cursor !== undefined) out.after = decodeCursor(cursor);
  return out;
}

/**
 * A job's transitions can reach the stream out of order (the dequeuer sends `retrying` once the
 * retry copy is confirmed, which may be after the next attempt already ran). A stream shows each
 * job monotonically, like the store: a transition that does not move its job forward is skipped
 * (a DLQ replay always passes).
 */
class Monotonic {
  #ranks = new Map<string, number>();

  /** True when `e` moves its job forward (and records that). */
  advance(e: JobEvent): boolean {
    const rank = rankOf(e.state, e.attempt);
    const prev = this.#ranks.get(e.jobId);
    if (!e.replay && prev !== undefined && rank <= prev) return false;
    this.#ranks.delete(e.jobId);
    this.#ranks.set(e.jobId, rank);
    // Bounded: the oldest jobs are forgotten first.
    if (this.#ranks.size > 10_000) this.#ranks.delete(oldestKey(this.#ranks)!);
    return true;
  }
}

/**
 * What a resume after `cursor` sends: the transitions after it that `filter` accepts, with the
 * per-job ranks the client already saw (from the log's transitions up to the cursor); reset when
 * the cursor is older than the log.
 */
function resumeAfter(log: ReplayLog, cursor: EventId, filter: (e: JobEvent) => boolean): { reset: true } | { reset: false; seen: Monotonic; events: Array<{ id: EventId; event: JobEvent }> } {
  const first = log.firstOffset;
  if (first === undefined || cursor.offset < first) return { reset: true };
  const all = log.after({ offset: first, index: -1 }, filter);
  if (all.reset) return { reset: true };
  const seen = new Monotonic();
  const events: Array<{ id: EventId; event: JobEvent }> = [];
  for (const logged of all.events) {
    if (compareEventIds(logged.id, cursor) <= 0) seen.advance(logged.event);
    else events.push(logged);
  }
  return { reset: false, seen, events };
}

/** `GET /v1/jobs/:id`, `GET /v1/jobs`, and the server-sent event streams. */
export function jobsRouter(deps: JobsRouteDeps): Router {
  const router = Router();
  const { config, jobs, hub } = deps;
  const slots = new StreamSlots(config.sseMaxConnections, config.sseMaxPerTenant);
  const { guard } = deps;

  router.get('/v1/jobs', async (req, res) => {
    const query = parseListQuery(req.query as Record<string, unknown>, config.jobsListMaxLimit);
    if (query.service !== undefined) guard.authorizeService(req.principal, query.service);
    else if (req.principal.services) query.services = req.principal.services;
    const page = await jobs.list(req.principal.tenant, query);
    sendPage(res, { items: page.jobs.map(jobView), next: page.next ?? null }, { path: '/v1/jobs', query: { service: query.service, state: query.state, since: str(req.query.since), until: str(req.query.until), requestId: query.requestId, limit: String(query.limit) } });
  });

  router.get('/v1/jobs/:id', async (req, res) => {
    const job = await jobs.get(req.principal.tenant, req.params.id);
    // A job of a service the key may not use does not exist for it (no existence leak).
    if (!job || !guard.mayUse(req.principal, job.service)) throw new GatewayError('GW_ERR_JOB_NOT_FOUND');
    res.setHeader('cache-control', 'no-store');
    res.json(jobView(job));
  });

  /** Opens an SSE response with heartbeats; returns a writer and registers cleanup (and the slot's release) on close. */
  function openStream(req: Request, res: Response, cleanup: () => void, release: () => void): (event: string, data: unknown, id?: EventId) => void {
    res.status(200);
    res.setHeader('content-type', 'text/event-stream');
    res.setHeader('cache-control', 'no-store');
    res.setHeader('x-accel-buffering', 'no');
    res.flushHeaders();
    res.write(`retry: 2000\n\n`);
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), config.sseHeartbeatMs);
    let closed = false;
    res.once('close', () => {
      if (closed) return;
      closed = true;
      release();
      clearInterval(heartbeat);
      cleanup();
    });
    return (event, data, id) => {
      if (!res.writableEnded) res.write(`${id === undefined ? '' : `id: ${formatEventId(id)}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
  }


  /** One job: its current state first, then each later transition in order, closed after the final one. */
  router.get('/v1/jobs/:id/events', async (req, res) => {
    const tenant = req.principal.tenant;
    // Reserved before the first await: concurrent opens cannot all pass the check.
    const release = slots.reserve(tenant);
    try {
      await streamJob(req, res, tenant, release);
    } catch (err) {
      release();
      throw err;
    }
  });

  /**
   * Reads the events stream for a resume id older than the replay log ({@link CatchUps}), handing
   * `filter`'s transitions to `deliver` (those up to the id only teach `seen` what the client has),
   * then calls `handOver` with the outcome: the route then sends what it buffered from the live
   * feed meanwhile (`done`), or `event: reset` (`gap`). Ends the response when the catch-up fails:
   * the client reconnects with the last id it got.
   */
  function catchUp(req: Request, res: Response, o: {
    endSlot: () => void; after: EventId; through: number; signal: AbortSignal; filter: (e: JobEvent) => boolean;
    seen: Monotonic; deliver: (e: JobEvent, id: EventId) => void; handOver: (outcome: 'done' | 'gap') => void;
  }): void {
    deps.replay.catchUp.read({
      after: o.after,
      through: o.through,
      signal: o.signal,
      onEvent: (e, id, seen) => {
        if (!o.filter(e)) return;
        if (seen) o.seen.advance(e);
        else o.deliver(e, id);
      },
      ready: () => !res.writableNeedDrain,
      onReady: (fn) => res.once('drain', fn),
      log: { requestId: req.id, tenant: req.principal.tenant, path: req.path },
    }).then((outcome) => {
      if (outcome !== 'ended') o.handOver(outcome);
    }, () => res.end()).finally(o.endSlot);
  }

  /** Buffers live transitions while a catch-up runs; ends the response past {@link CATCH_UP_BUFFER_MAX}. */
  function liveBuffer(res: Response): { push: (e: JobEvent, id: EventId) => void; drain: (send: (e: JobEvent, id: EventId) => void) => void } {
    let buffered: Array<[JobEvent, EventId]> | undefined = [];
    return {
      push: (e, id) => {
        if (!buffered) return;
        buffered.push([e, id]);
        if (buffered.length > CATCH_UP_BUFFER_MAX) {
          buffered = undefined;
          res.end();
        }
      },
      drain: (send) => {
        for (const [e, id] of buffered?.splice(0) ?? []) send(e, id);
      },
    };
  }

  /**
   * One job. Fresh: its current state (id: this replica's stream position), then each later
   * transition. With `Last-Event-ID`: every transition of the job after that id, exactly once and
   * in order, then the live ones, from the replay log or, for an older id, from the events stream
   * itself; `event: reset` with the current state when the stream no longer retains the id. Ends
   * after the final transition.
   */
  async function streamJob(req: Request, res: Response, tenant: string, release: () => void): Promise<void> {
    const id = req.params.id as string;
    const resumeFrom = parseEventId(req.get('last-event-id'));
    const early: Array<[JobEvent, EventId]> = [];
    // Subscribe before reading the store: a transition between the two is buffered, not lost.
    let send = (e: JobEvent, eid: EventId): void => void early.push([e, eid]);
    const unsubscribe = hub.onJob(tenant, id, (e, eid) => send(e, eid));
    const position = deps.replay.position;
    let job;
    try {
      job = await jobs.get(tenant, id);
    } catch (err) {
      unsubscribe();
      throw err;
    }
    if (!job || !guard.mayUse(req.principal, job.service)) {
      unsubscribe();
      throw new GatewayError('GW_ERR_JOB_NOT_FOUND');
    }
    const mine = (e: JobEvent): boolean => e.tenant === tenant && e.jobId === id;
    const replay = resumeFrom && resumeAfter(deps.replay.log, resumeFrom, mine);
    const fromStream = resumeFrom !== undefined && replay !== undefined && replay.reset && position !== undefined && resumeFrom.offset < position.offset;
    let endSlot: (() => void) | undefined;
    if (fromStream) {
      try {
        endSlot = deps.replay.catchUp.reserve();
      } catch (err) {
        unsubscribe();
        throw err;
      }
    }
    const ac = new AbortController();
    const write = openStream(req, res, () => {
      unsubscribe();
      ac.abort();
    }, release);
    let done = false;
    const finish = (): void => {
      done = true;
      res.end();
    };
    /** Exactly once, in order, monotonic per job; ends after the final transition. */
    const resumed = (seen: Monotonic): ((e: JobEvent, eid: EventId) => void) => {
      let last = resumeFrom!;
      return (e, eid) => {
        if (done || compareEventIds(eid, last) <= 0) return;
        last = eid;
        if (!seen.advance(e)) return;
        write(e.state, jobEventView(e), eid);
        if (TERMINAL_STATES.has(e.state)) finish();
      };
    };
    /** `reset` (or a fresh stream): the current state, then the live transitions that move the job forward. */
    const fromCurrentState = (): void => {
      let lastRank = job.rank;
      done = job.terminal;
      write(resumeFrom ? 'reset' : job.state, currentStateEvent(job), position);
      send = (e, eid) => {
        const rank = rankOf(e.state, e.attempt);
        if (!e.replay && (done || rank <= lastRank)) return;
        lastRank = rank;
        write(e.state, jobEventView(e), eid);
        if (TERMINAL_STATES.has(e.state)) finish();
      };
      if (done) {
        res.end();
        return;
      }
      for (const [e, eid] of early.splice(0)) send(e, eid);
    };
    if (resumeFrom && replay && !replay.reset) {
      send = resumed(replay.seen);
      for (const { id: eid, event } of replay.events) send(event, eid);
      for (const [e, eid] of early.splice(0)) send(e, eid);
      // Final in the store and nothing after the id: the client already has the final transition.
      if (!done && job.terminal) finish();
      return;
    }
    if (fromStream) {
      const seen = new Monotonic();
      const deliver = resumed(seen);
      const buffer = liveBuffer(res);
      for (const [e, eid] of early.splice(0)) buffer.push(e, eid);
      send = buffer.push;
      catchUp(req, res, {
        endSlot: endSlot!, after: resumeFrom, through: position.offset, signal: ac.signal, filter: mine, seen, deliver,
        handOver: (outcome) => {
          if (outcome === 'gap') {
            buffer.drain((e, eid) => early.push([e, eid]));
            fromCurrentState();
            return;
          }
          send = deliver;
          buffer.drain(send);
          if (!done && job.terminal) finish();
        },
      });
      return;
    }
    fromCurrentState();
  }

  /**
   * Every job transition of the caller's tenant (optionally `?service=`), as it happens. With
   * `Last-Event-ID`: first every transition after that id, exactly once and in order, from the
   * replay log or, for an older id, from the events stream itself; `event: reset` when the stream
   * no longer retains the id.
   */
  router.get('/v1/events', (req, res) => {
    const service = req.query.service;
    if (service !== undefined && (typeof service !== 'string' || !SERVICE_NAME_PATTERN.test(service))) throw new GatewayError('GW_ERR_BAD_REQUEST', 'invalid service');
    if (service !== undefined) guard.authorizeService(req.principal, service);
    const tenant = req.principal.tenant;
    const release = slots.reserve(tenant);
    const principal = req.principal;
    const mine = (e: JobEvent): boolean => e.tenant === tenant && (service === undefined ? guard.mayUse(principal, e.service) : e.service === service);
    const resumeFrom = parseEventId(req.get('last-event-id'));
    let last = resumeFrom;
    let seen = new Monotonic();
    let write = (_event: string, _data: unknown, _id?: EventId): void => {};
    const send = (e: JobEvent, eid: EventId): void => {
      if (last && compareEventIds(eid, last) <= 0) return;
      last = eid;
      if (seen.advance(e)) write(e.state, jobEventView(e), eid);
    };
    let live = send;
    // All synchronous: nothing the hub emits can fall between the replay and the subscription.
    const unsubscribe = hub.onTenant(tenant, (e, eid) => {
      if (mine(e)) live(e, eid);
    });
    const replay = resumeFrom && resumeAfter(deps.replay.log, resumeFrom, mine);
    const position = deps.replay.position;
    const reset = (): void => {
      write('reset', { at: new Date().toISOString(), message: 'transitions after Last-Event-ID are no longer retained; GET /v1/jobs has the current states' }, position);
      if (position) last = position;
    };
    if (resumeFrom && replay && replay.reset && position !== undefined && resumeFrom.offset < position.offset) {
      let endSlot: () => void;
      try {
        endSlot = deps.replay.catchUp.reserve();
      } catch (err) {
        unsubscribe();
        release();
        throw err;
      }
      const ac = new AbortController();
      write = openStream(req, res, () => {
        unsubscribe();
        ac.abort();
      }, release);
      const buffer = liveBuffer(res);
      live = buffer.push;
      catchUp(req, res, {
        endSlot, after: resumeFrom, through: position.offset, signal: ac.signal, filter: mine, seen, deliver: send,
        handOver: (outcome) => {
          if (outcome === 'gap') {
            seen = new Monotonic();
            reset();
          }
          live = send;
          buffer.drain(send);
        },
      });
      return;
    }
    write = openStream(req, res, unsubscribe, release);
    if (resumeFrom && replay) {
      if (!replay.reset) {
        seen = replay.seen;
        for (const { id: eid, event } of replay.events) send(event, eid);
      } else reset();
    }
  });

  return router;
}

const jobIdParam = pathParams({ id: z.string().describe('job id') });

/** OpenAPI entries of this router (collected by enqueuer/http/openapi.ts). */
export const jobsRouteDocs: RouteDoc[] = [
  {
    method: 'get', path: '/v1/jobs', tags: ['jobs'], summary: "The tenant's jobs, newest first", security: bearer,
    request: {
      query: z.object({
        service: z.string().optional(),
        state: JobStateSchema.optional(),
        since: z.string().optional().describe('only jobs created at or after this ISO-8601 time'),
        until: z.string().optional().describe('only jobs created before this ISO-8601 time'),
        requestId: z.string().optional().describe('only the job of this request id'),
        limit: z.string().regex(/^\d+$/).optional().describe(`page size, default ${DEFAULT_LIST_LIMIT}, capped at JOBS_LIST_MAX_LIMIT`),
        cursor: z.string().optional().describe('`next` of the previous page'),
      }),
    },
    responses: { 200: json(JobPageSchema, 'a page of jobs', linkHeader), ...problems(...V1_PROBLEMS) },
  },
  {
    method: 'get', path: '/v1/jobs/{id}', tags: ['jobs'], summary: "A job's state, attempts, times, error and result", security: bearer,
    request: { params: jobIdParam },
    responses: { 200: json(JobSchema, 'the job'), ...problems(...V1_PROBLEMS, 404) },
  },
  {
    method: 'get', path: '/v1/jobs/{id}/events', tags: ['jobs'], summary: "A job's transitions: its current state, then each transition; ends after the final one", security: bearer,
    request: { params: jobIdParam },
    responses: { 200: sse(JobEventSchema, 'the stream'), ...problems(...V1_PROBLEMS, 404) },
  },
  {
    method: 'get', path: '/v1/events', tags: ['jobs'], summary: "Every job transition of the caller's tenant", security: bearer,
    request: { query: z.object({ service: z.string().optional() }) },
    responses: { 200: sse(JobEventSchema, 'the stream'), ...problems(...V1_PROBLEMS) },
  },
];
