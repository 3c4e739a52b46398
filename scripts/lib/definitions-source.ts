import { loadServices } from '../../shared/config/services.ts';
import { renderDefinitions, toDefinitions } from '../../shared/topology/definitions.ts';
import { buildTopology } from '../../shared/topology/topology.ts';

/** The exact content `rabbitmq/definitions.json` must have: the default topology for config/services.json. */
export function expectedDefinitions(): string {
  const services = loadServices({}, 'config/services.json');
  return renderDefinitions(toDefinitions(buildTopology(services)));
}
