import { execFile } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeEach, describe, expect, it } from 'vitest';
import { hashKey, keysFileSchema } from '../../enqueuer/security/api-keys.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * `npm run -s key -- ...args` as a user types it: the machine's npm, whose `node` on PATH may be
 * older than 24; npm puts node_modules/.bin (the project's Node 24) first for the script.
 */
function npmKey(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = execFile('npm', ['run', '-s', 'key', '--', ...args], { cwd: root, timeout: 50_000 }, (err, stdout, stderr) => {
      resolvePromise({ code: err ? Number((err as NodeJS.ErrnoException & { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end(stdin ?? '');
  });
}

function entryOf(stdout: string): unknown {
  const line = stdout.split('\n').find((l) => l.startsWith('keys file entry: '));
  if (!line) throw new Error(`no entry line in: ${stdout}`);
  return JSON.parse(line.slice('keys file entry: '.length)) as unknown;
}

// Each test starts npm and a Node 24 process: seconds on a loaded 2-core machine, beyond the unit
// project's 10 s default.
describe('npm run key (scripts/hash-key.ts)', { timeout: 60_000 }, () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('generates a key and a keys-file entry holding only its sha256, for the given services', async () => {
    const { code, stdout } = await npmKey(['billing-prod', 'acme', 'echo,pdf-render']);
    expect(code).toBe(0);
    const key = /^key \(give this to the client, it is not stored anywhere\): (gwk_[A-Za-z0-9_-]{43})$/m.exec(stdout)?.[1];
    expect(key).toBeDefined();
    const entry = entryOf(stdout);
    expect(entry).toEqual({ id: 'billing-prod', sha256: hashKey(key!), tenant: 'acme', services: ['echo', 'pdf-render'] });
    expect(keysFileSchema.parse({ keys: [entry] }).keys).toHaveLength(1);
    expect(JSON.stringify(entry)).not.toContain(key!);
  });

  it('hashes an existing key from stdin without printing it', async () => {
    const existing = 'an-existing-key-of-enough-length';
    const { code, stdout } = await npmKey(['--stdin', 'legacy', 'ops'], existing);
    expect(code).toBe(0);
    expect(stdout).not.toContain(existing);
    expect(entryOf(stdout)).toEqual({ id: 'legacy', sha256: hashKey(existing), tenant: 'ops' });
  });

  it('refuses a missing tenant with the usage line and exit code 2', async () => {
    const { code, stderr, stdout } = await npmKey(['only-an-id']);
    expect(code).toBe(2);
    expect(stderr).toContain('usage: npm run key -- [--stdin] <key-id> <tenant> [service,service...]');
    expect(stdout).not.toContain('keys file entry');
  });
});
