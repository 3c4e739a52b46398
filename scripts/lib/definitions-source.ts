import { loadServices } from '../../shared/config/services.ts';
import { brokerAccess } from '../../shared/topology/broker-users.ts';
import { renderDefinitions, toDefinitions } from '../../shared/topology/definitions.ts';
import { buildTopology } from '../../shared/topology/topology.ts';

/**
 * The exact content `rabbitmq/definitions.json` must have: the default topology for
 * config/services.json, plus the least-privilege users (without passwords) and their permissions.
 */
export function expectedDefinitions(): string {
  const services = loadServices({}, 'config/services.json');
  return renderDefinitions(toDefinitions(buildTopology(services), brokerAccess('gw')));
}
