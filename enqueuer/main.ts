import { runMain } from '../shared/lifecycle.ts';
import { loadEnqueuerConfig } from './config.ts';
import { Enqueuer } from './enqueuer.ts';

await runMain({ app: 'enqueuer', load: loadEnqueuerConfig, create: (config, options) => new Enqueuer(config, options) });
