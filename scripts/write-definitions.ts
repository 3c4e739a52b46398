// Regenerates rabbitmq/definitions.json from the topology module and config/services.json.
// Run: npm run definitions
import { writeFileSync } from 'node:fs';
import { expectedDefinitions } from './lib/definitions-source.ts';

writeFileSync('rabbitmq/definitions.json', expectedDefinitions());
process.stdout.write('wrote rabbitmq/definitions.json\n');
