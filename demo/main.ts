import { DemoDownstream } from './demo-downstream.ts';

const port = Number(process.env.DEMO_PORT ?? process.env.PORT ?? 8081);
const host = process.env.HOST ?? '0.0.0.0';
const demo = new DemoDownstream(process.env.DEMO_LEDGER_FILE ? { ledgerFile: process.env.DEMO_LEDGER_FILE } : {});
await demo.listen(port, host);
process.stdout.write(`${JSON.stringify({ level: 'info', app: 'demo', port: demo.port, msg: 'demo downstream listening' })}\n`);
let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  // Calls in flight get their answer (bounded): the services in front may still be finishing.
  void demo.close(10_000).then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
