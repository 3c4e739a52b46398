import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorTableMarkdown } from '../../scripts/lib/error-table.ts';

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
});
