import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { dequeuerEnvShape } from '../../dequeuer/config.ts';
import { enqueuerEnvShape } from '../../enqueuer/config.ts';
import { KEYS_ENV_KEYS } from '../../enqueuer/security/api-keys.ts';
import { SERVICES_ENV_KEYS } from '../../shared/config/services.ts';
import { TENANTS_ENV_KEYS } from '../../shared/config/tenants.ts';

/** The rows of docs/configuration.md's table: variable, service (both/enqueuer/dequeuer), default cell. */
function documentedRows(): { name: string; service: string; defaultCell: string }[] {
  const doc = readFileSync('docs/configuration.md', 'utf8');
  const start = doc.indexOf('<!-- config:start -->');
  const end = doc.indexOf('<!-- config:end -->');
  expect(start).toBeGreaterThan(0);
  return doc
    .slice(start, end)
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => {
      const cells = l.split(' | ').map((c) => c.replace(/^\| /, '').trim());
      return { name: cells[0]!.replaceAll('`', ''), service: cells[1]!, defaultCell: cells[2]! };
    });
}

/** Every variable a service reads, with the default its schema applies (undefined = none). */
function schemaVars(): { name: string; service: 'enqueuer' | 'dequeuer'; fallback: unknown }[] {
  const out: { name: string; service: 'enqueuer' | 'dequeuer'; fallback: unknown }[] = [];
  const add = (service: 'enqueuer' | 'dequeuer', shape: Record<string, z.ZodType>, extra: readonly string[]) => {
    for (const [name, schema] of Object.entries(shape)) {
      const parsed = schema.safeParse(undefined);
      out.push({ name, service, fallback: parsed.success ? parsed.data : undefined });
    }
    for (const name of extra) out.push({ name, service, fallback: undefined });
  };
  add('enqueuer', enqueuerEnvShape, [...SERVICES_ENV_KEYS, ...KEYS_ENV_KEYS]);
  add('dequeuer', dequeuerEnvShape, [...SERVICES_ENV_KEYS, ...TENANTS_ENV_KEYS]);
  return out;
}

describe('docs/configuration.md', () => {
  const rows = documentedRows();
  const vars = schemaVars();
  const rowFor = (name: string, service: string) => rows.find((r) => r.name === name && (r.service === service || r.service === 'both'));
  const schemaDefault = (name: string): unknown => vars.find((v) => v.name === name && v.service === 'enqueuer')?.fallback;

  it('documents every variable of the schemas, for the service that reads it, with its default', () => {
    const missing = vars.filter((v) => !rowFor(v.name, v.service)).map((v) => `${v.service} ${v.name}`);
    expect(missing).toEqual([]);
    const wrongDefault = vars
      .filter((v) => v.fallback !== undefined && !rowFor(v.name, v.service)!.defaultCell.includes(`\`${String(v.fallback)}\``))
      .map((v) => `${v.service} ${v.name}: schema default ${String(v.fallback)}`);
    expect(wrongDefault).toEqual([]);
  });

  it("README's limits table (issue 12 items 1, 2, 8, 9) gives each limit the schema's default and the row docs/configuration.md has", () => {
    const readme = readFileSync('README.md', 'utf8');
    const table = readme.slice(readme.indexOf('<!-- limits:start -->'), readme.indexOf('<!-- limits:end -->'));
    const rowsOfReadme = table.split('\n').filter((l) => l.startsWith('| `'));
    const names: string[] = [];
    for (const line of rowsOfReadme) {
      const [nameCell, defaultCell] = line.split(' | ').map((c) => c.replace(/^\| /, '').trim());
      const vars = [...nameCell!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
      const defaults = [...defaultCell!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
      expect(defaults, line).toHaveLength(vars.length);
      for (const [i, name] of vars.entries()) {
        names.push(name);
        if (name.includes('.')) {
          // A services-file key: the same default as the services table of docs/configuration.md.
          expect(readFileSync('docs/configuration.md', 'utf8'), name).toContain(`| \`${name}\` | \`${defaults[i]}\` |`);
          continue;
        }
        expect(rowFor(name, 'enqueuer'), name).toBeDefined();
        expect(String(schemaDefault(name)), name).toBe(defaults[i]);
      }
    }
    expect(names).toEqual(expect.arrayContaining(['work.delayedMaxLength', 'MAX_DELAYED_PER_TENANT', 'IDEMPOTENCY_MAX_BYTES', 'JOB_STORE_MAX_BYTES', 'SSE_MAX_CONNECTIONS', 'SSE_MAX_PER_TENANT', 'DLQ_MAX_WAITING', 'DLQ_MAX_WAITING_PER_TENANT']));
  });

  it('documents no variable the schemas do not read', () => {
    const read = (name: string, service: string) =>
      vars.some((v) => v.name === name && (service === 'both' ? true : v.service === service));
    const extra = rows.filter((r) => !read(r.name, r.service)).map((r) => `${r.service} ${r.name}`);
    expect(extra).toEqual([]);
    const bothButOne = rows
      .filter((r) => r.service === 'both')
      .filter((r) => !(vars.some((v) => v.name === r.name && v.service === 'enqueuer') && vars.some((v) => v.name === r.name && v.service === 'dequeuer')))
      .map((r) => r.name);
    expect(bothButOne).toEqual([]);
    expect(rows.every((r) => ['both', 'enqueuer', 'dequeuer'].includes(r.service))).toBe(true);
  });
});
