import { runMain } from '../shared/lifecycle.ts';
import { loadDequeuerConfig } from './config.ts';
import { Dequeuer } from './dequeuer.ts';

await runMain({ app: 'dequeuer', load: loadDequeuerConfig, create: (config, options) => new Dequeuer(config, options) });
