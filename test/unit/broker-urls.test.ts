import { describe, expect, it } from 'vitest';
import { loadDequeuerConfig } from '../../dequeuer/config.ts';
import { splitBrokerUrls } from '../../shared/amqp/broker-connection.ts';

const services = JSON.stringify({ services: { echo: { url: 'http://127.0.0.1:1' } } });

describe('RABBITMQ_URL: one broker or a cluster list', () => {
  it('splits a comma-separated list of nodes, trimming blanks; a single URL stays one', () => {
    expect(splitBrokerUrls('amqp://a:5672')).toEqual(['amqp://a:5672']);
    expect(splitBrokerUrls('amqp://u:p@a:5672, amqp://u:p@b:5672 ,amqps://u:p@c:5671')).toEqual(['amqp://u:p@a:5672', 'amqp://u:p@b:5672', 'amqps://u:p@c:5671']);
  });

  it('accepts a list of amqp(s) URLs and refuses a list with anything else in it, naming the setting', () => {
    expect(loadDequeuerConfig({ SERVICES_JSON: services, RABBITMQ_URL: 'amqp://a:5672,amqp://b:5672' }).rabbitmqUrl).toBe('amqp://a:5672,amqp://b:5672');
    expect(() => loadDequeuerConfig({ SERVICES_JSON: services, RABBITMQ_URL: 'amqp://a:5672,http://b' })).toThrow(/RABBITMQ_URL/);
    expect(() => loadDequeuerConfig({ SERVICES_JSON: services, RABBITMQ_URL: 'amqp://a:5672,' })).toThrow(/RABBITMQ_URL/);
  });
});
