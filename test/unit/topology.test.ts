import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { expectedDefinitions } from '../../scripts/lib/definitions-source.ts';
import { parseServices } from '../../shared/config/services.ts';
import { buildTopology, delayRoutingKey, MAX_DELAY_UNITS } from '../../shared/topology/topology.ts';

const services = parseServices({ services: { echo: { url: 'http://127.0.0.1:8081' }, 'pdf-render': { url: 'http://127.0.0.1:9000', work: { maxLength: 10 } } } });

describe('topology', () => {
  it('rabbitmq/definitions.json is generated from the topology module (run `npm run definitions` when this fails)', () => {
    expect(readFileSync('rabbitmq/definitions.json', 'utf8')).toBe(expectedDefinitions());
  });

  it('declares per service a classic rpc queue without DLX and quorum work and dead-letter queues with reject-publish', () => {
    const t = buildTopology(services);
    const q = (name: string) => t.queues.find((x) => x.name === name)?.arguments;
    expect(q('gw.echo.rpc')).toEqual({ 'x-queue-type': 'classic', 'x-max-length': 1000, 'x-overflow': 'reject-publish' });
    expect(q('gw.pdf-render.work')).toMatchObject({
      'x-queue-type': 'quorum',
      'x-max-length': 10,
      'x-overflow': 'reject-publish',
      'x-dead-letter-exchange': 'gw.dlx',
      'x-dead-letter-routing-key': 'pdf-render',
      'x-dead-letter-strategy': 'at-least-once',
      'x-delivery-limit': 10,
    });
    expect(q('gw.echo.dlq')).toMatchObject({ 'x-queue-type': 'quorum', 'x-overflow': 'reject-publish' });
    expect(Object.isFrozen(t.queues)).toBe(true);
  });

  it('gives the dead-letter and delay-deliver exchanges an alternate exchange so nothing unroutable is dropped', () => {
    const t = buildTopology(services, { prefix: 'x' });
    for (const name of ['x.dlx', 'x.delay.deliver', 'x.delay.L00', 'x.delay.L24']) {
      expect(t.exchanges.find((e) => e.name === name)?.arguments).toEqual({ 'alternate-exchange': 'x.unroutable' });
    }
  });

  it('encodes delays as one routing-key word per binary level, highest first', () => {
    expect(delayRoutingKey(5, 'echo')).toBe(`${'0.'.repeat(22)}1.0.1.work.echo`);
    expect(delayRoutingKey(MAX_DELAY_UNITS, 'a').split('.').slice(0, 25).every((w) => w === '1')).toBe(true);
  });

  it('delay level n holds a message 2^n units and dead-letters into level n-1', () => {
    const t = buildTopology(services, { delayUnitMs: 100 });
    const l3 = t.queues.find((q) => q.name === 'gw.delay.L03')!.arguments;
    expect(l3['x-message-ttl']).toBe(800);
    expect(l3['x-dead-letter-exchange']).toBe('gw.delay.L02');
    expect(t.queues.find((q) => q.name === 'gw.delay.L00')!.arguments['x-dead-letter-exchange']).toBe('gw.delay.deliver');
  });
});
