import type { Channel, ChannelModel } from 'amqplib';
import { GatewayError } from '../../shared/errors.ts';

export interface QueueDepth {
  /** Messages ready for delivery (the declare-ok count; unacked ones are not in it). */
  ready: number;
  consumers: number;
}

/**
 * Queue depths without the management plugin: a passive declare per queue (declare-ok carries the
 * ready count and the consumers), on a channel of a connection the enqueuer already holds, each
 * answer cached `cacheMs` so a page polling every second costs one declare per queue per second
 * whatever the number of viewers.
 */
export class QueueDepths {
  #connection: () => ChannelModel | undefined;
  #cacheMs: number;
  #channel: Promise<Channel> | undefined;
  #cache = new Map<string, { at: number; depth: Promise<QueueDepth> }>();
  #now: () => number;

  constructor(connection: () => ChannelModel | undefined, options: { cacheMs?: number; now?: () => number } = {}) {
    this.#connection = connection;
    this.#cacheMs = options.cacheMs ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  depth(queue: string): Promise<QueueDepth> {
    const now = this.#now();
    const hit = this.#cache.get(queue);
    if (hit && now - hit.at < this.#cacheMs) return hit.depth;
    const depth = this.#check(queue);
    this.#cache.set(queue, { at: now, depth });
    depth.catch(() => this.#cache.delete(queue));
    return depth;
  }

  /**
   * Several queues read as one (a service's work lanes): ready messages summed, consumers the fewest
   * any of them has (every dequeuer consumes every lane, so fewer on one lane is the one to see).
   */
  async depthOf(queues: readonly string[]): Promise<QueueDepth> {
    const depths = await Promise.all(queues.map((q) => this.depth(q)));
    return { ready: depths.reduce((n, d) => n + d.ready, 0), consumers: Math.min(...depths.map((d) => d.consumers)) };
  }

  async #check(queue: string): Promise<QueueDepth> {
    const channel = await this.#open();
    try {
      const ok = await channel.checkQueue(queue);
      return { ready: ok.messageCount, consumers: ok.consumerCount };
    } catch (err) {
      throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', `queue depth of ${queue} not read: ${(err as Error).message}`, { retryAfterS: 1, cause: err });
    }
  }

  #open(): Promise<Channel> {
    if (this.#channel) return this.#channel;
    const connection = this.#connection();
    if (!connection) return Promise.reject(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'not connected to the broker', { retryAfterS: 1 }));
    const opened = connection.createChannel().then((ch) => {
      ch.on('error', () => {}); // a failed declare closes it; that call's promise carries the error
      ch.on('close', () => {
        if (this.#channel === opened) this.#channel = undefined;
      });
      return ch;
    });
    opened.catch(() => {
      if (this.#channel === opened) this.#channel = undefined;
    });
    this.#channel = opened;
    return opened;
  }
}
