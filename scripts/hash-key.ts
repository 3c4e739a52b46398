// Generates a new API key (256 random bits, base64url) and prints the entry for the keys file.
// Run: npm run key -- <key-id> <tenant> [service,service...]   (Node 24: the project's `node` devDependency)
// The key is printed once, to stdout, for you to hand to the client; only its sha256 goes in the file.
// To hash an existing key instead: echo -n "$KEY" | npm run -s key -- --stdin <key-id> <tenant>
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hashKey, TENANT_PATTERN } from '../enqueuer/security/api-keys.ts';

const args = process.argv.slice(2);
const fromStdin = args[0] === '--stdin';
if (fromStdin) args.shift();
const [id, tenant, services] = args;
if (!id || !tenant || !/^[A-Za-z0-9._-]{1,64}$/.test(id) || !TENANT_PATTERN.test(tenant)) {
  process.stderr.write('usage: npm run key -- [--stdin] <key-id> <tenant> [service,service...]\n');
  process.exit(2);
}
const key = fromStdin ? readFileSync(0, 'utf8').trim() : `gwk_${randomBytes(32).toString('base64url')}`;
if (key.length < 16) {
  process.stderr.write('a key must be at least 16 characters\n');
  process.exit(2);
}
const entry = { id, sha256: hashKey(key), tenant, ...(services ? { services: services.split(',').filter(Boolean) } : {}) };
if (!fromStdin) process.stdout.write(`key (give this to the client, it is not stored anywhere): ${key}\n`);
process.stdout.write(`keys file entry: ${JSON.stringify(entry)}\n`);
