// The bench's lean downstream: a plain node:http echo (any path answers 200 with the request's body
// and content type). No ledger, no URL parsing, no routing: so the throughput scenarios measure the
// gateway, not the downstream (the correctness tests keep the recording demo). Env: PORT.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 8081);
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' });
    res.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
  });
});
server.keepAliveTimeout = 30_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`{"ready":true,"port":${port}}\n`));
const stop = (): void => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
