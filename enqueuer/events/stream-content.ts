import type { ConsumeMessage } from 'amqplib';
import { decodeEvents, type DecodedEvents, type JobEvent } from '../../shared/events.ts';
import { deliveryLimitDeath } from '../dlq-entry.ts';
import type { LoggedEvent } from './replay-log.ts';

/** Where the events stream takes dead letters from, and each service's work-queue delivery limit. */
export interface DeadLetterSource {
  exchange: string;
  deliveryLimits: Readonly<Record<string, number>>;
}

/** What one events-stream message carries. */
export type StreamContent =
  | { kind: 'dead-letter'; dead: JobEvent | undefined }
  | { kind: 'events'; decoded: DecodedEvents }
  | { kind: 'undecodable' };

/**
 * Decodes one events-stream message: a dead letter routed from `gw.dlx` (a delivery-limit death,
 * or nothing new), a v1 event / v2 batch / marker, or neither. Pure: the live reader and the SSE
 * catch-up readers read a message the same way, so they number its transitions the same way.
 */
export function streamContent(msg: Pick<ConsumeMessage, 'content' | 'fields' | 'properties'>, dl: DeadLetterSource | undefined): StreamContent {
  if (dl && msg.fields.exchange === dl.exchange) {
    const limit = dl.deliveryLimits[msg.fields.routingKey];
    const at = typeof msg.properties.timestamp === 'number' ? msg.properties.timestamp : Date.now();
    return { kind: 'dead-letter', dead: limit === undefined ? undefined : deliveryLimitDeath(msg, msg.fields.routingKey, limit, at) };
  }
  const decoded = decodeEvents(msg.content);
  return decoded ? { kind: 'events', decoded } : { kind: 'undecodable' };
}

/** The job transitions of a message with their ids (`<offset>-<index>`, index among its expanded events). */
export function jobTransitions(content: StreamContent, offset: number): LoggedEvent[] {
  if (content.kind === 'dead-letter') return content.dead ? [{ id: { offset, index: 0 }, event: content.dead }] : [];
  if (content.kind === 'undecodable') return [];
  const out: LoggedEvent[] = [];
  content.decoded.events.forEach((e, index) => {
    if (e.kind === 'job') out.push({ id: { offset, index }, event: e });
  });
  return out;
}
