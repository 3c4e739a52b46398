import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorTableMarkdown } from '../../scripts/lib/error-table.ts';
import { brokerPermissions } from '../../shared/topology/broker-users.ts';

const readme = readFileSync('README.md', 'utf8');

describe('README', () => {
  it('lists exactly the error registry (regenerate with `node scripts/print-error-table.ts`)', () => {
    const start = readme.indexOf('<!-- errors:start -->');
    const end = readme.indexOf('<!-- errors:end -->');
    expect(start).toBeGreaterThan(0);
    expect(readme.slice(start + '<!-- errors:start -->'.length, end).trim()).toBe(errorTableMarkdown());
  });

  it('names the two set-up commands and the Node major the project runs on', () => {
    expect(readme).toMatch(/npm ci && npm start/);
    expect(readme).toMatch(/npm ci && npm test/);
    const engines = (JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines).toMatch(/24/);
    expect(readme).toMatch(/Node(\.js)? 24/);
  });

  it('shows the broker users with the permissions definitions.json gives them', () => {
    const cell = (re: string): string => `\`${re.replaceAll('[a-z0-9][a-z0-9-]*', '<svc>').replaceAll('|', '\\|')}\``;
    for (const p of brokerPermissions('gw')) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${p.user}\``));
      expect(row, p.user).toBeDefined();
      expect(row).toContain(`| ${cell(p.configure)} | ${cell(p.write)} | ${cell(p.read)} |`);
    }
  });
});
