import { DELAY_LEVELS, type Lane } from './names.ts';
import { delayRoutingKey, MAX_DELAY_UNITS, type Topology } from './topology.ts';

/** Where to publish a job so that it reaches a work lane of `<prefix>.<service>.work` after a delay. */
export interface DelayTarget {
  readonly exchange: string;
  readonly routingKey: string;
  /** The delay the message will actually get: `units · delayUnitMs` (≥ the asked delay). */
  readonly delayMs: number;
  /** Delay units; 0 means straight to the work exchange. */
  readonly units: number;
}

/** Longest delay the binary levels can hold (ms): (2^levels − 1) units. */
export function maxDelayMs(topology: Pick<Topology, 'delayUnitMs'>): number {
  return MAX_DELAY_UNITS * topology.delayUnitMs;
}

/**
 * Exchange and routing key that deliver a job to `service`'s work lane (default lane 0) after `delayMs`, rounded
 * *up* to the delay unit so a job never runs early. 0 (or less) → the work exchange itself.
 * Every hop goes through the highest level's exchange: levels whose bit is 0 pass it on at once.
 * @throws RangeError when the delay exceeds {@link maxDelayMs} (callers clamp or answer 400).
 */
export function delayTarget(topology: Pick<Topology, 'names' | 'delayUnitMs'>, service: string, delayMs: number, lane: Lane = 0): DelayTarget {
  if (!Number.isFinite(delayMs)) throw new RangeError(`delay ${delayMs} is not a finite number`);
  const units = Math.max(0, Math.ceil(delayMs / topology.delayUnitMs));
  if (units > MAX_DELAY_UNITS) throw new RangeError(`delay ${delayMs} ms exceeds the maximum of ${maxDelayMs(topology)} ms`);
  const n = topology.names;
  if (units === 0) return { exchange: n.workExchange, routingKey: n.workRoutingKey(service, lane), delayMs: 0, units };
  return { exchange: n.delayLevel(DELAY_LEVELS - 1), routingKey: delayRoutingKey(units, service, lane), delayMs: units * topology.delayUnitMs, units };
}
