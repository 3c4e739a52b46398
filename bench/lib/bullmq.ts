import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

/**
 * The bench's handle on the BullMQ baseline's queue (its own Redis connection, outside the measured
 * processes): whether Redis answers, what is still waiting after a run, and emptying it between runs
 * and at the end, as the RabbitMQ baselines' queues are purged.
 */
export class BullmqControl {
  readonly #connection: Redis;
  readonly #queue: Queue;

  private constructor(connection: Redis, queue: Queue) {
    this.#connection = connection;
    this.#queue = queue;
  }

  /** Connects, or says why not (Redis not reachable within 3 s). */
  static async open(redisUrl: string, name: string): Promise<BullmqControl | string> {
    const connection = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true, connectTimeout: 3000, retryStrategy: () => null });
    connection.on('error', () => undefined);
    try {
      await connection.connect();
      await connection.ping();
    } catch (err) {
      connection.disconnect();
      return `Redis at ${redisUrl} is not reachable (${(err as Error).message})`;
    }
    const queue = new Queue(name, { connection });
    await queue.waitUntilReady();
    return new BullmqControl(connection, queue);
  }

  /** Jobs added and not yet taken by the worker. */
  waiting(): Promise<number> {
    return this.#queue.getWaitingCount();
  }

  /** Removes the waiting jobs; those in progress finish. */
  async drain(): Promise<void> {
    await this.#queue.drain();
  }

  /** Deletes every key of the queue, then disconnects. */
  async destroy(): Promise<void> {
    try {
      await this.#queue.obliterate({ force: true });
    } finally {
      await this.#queue.close();
      this.#connection.disconnect();
    }
  }
}
