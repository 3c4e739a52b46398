import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { errorTableMarkdown } from '../../scripts/lib/error-table.ts';
import { brokerPermissions } from '../../shared/topology/broker-users.ts';
import { PROPERTY_DEFAULTS } from '../support/property-requests.ts';

const readme = readFileSync('README.md', 'utf8');
/** The manual: README plus every markdown file of docs/ and bench/. */
const manual = ['README.md', 'docs/api.md', 'docs/configuration.md', 'docs/security.md', 'docs/operations.md', 'docs/guarantees.md', 'bench/README.md'];

describe('README', () => {
  it('is a landing page of at most 300 lines', () => {
    expect(readme.split('\n').length).toBeLessThanOrEqual(300);
  });

  it('lists exactly the error registry (regenerate with `node scripts/print-error-table.ts`)', () => {
    const start = readme.indexOf('<!-- errors:start -->');
    const end = readme.indexOf('<!-- errors:end -->');
    expect(start).toBeGreaterThan(0);
    expect(readme.slice(start + '<!-- errors:start -->'.length, end).trim()).toBe(errorTableMarkdown());
  });

  it("quotes the property-based test's case counts and seed as the test runs them", () => {
    const security = readme.slice(readme.indexOf('## Security'));
    expect(security).toContain(`${PROPERTY_DEFAULTS.runs.toLocaleString('en')} generated requests (seed ${PROPERTY_DEFAULTS.seed}`);
    expect(security).toContain(`${PROPERTY_DEFAULTS.rawRuns} malformed raw request`);
    const doc = readFileSync('docs/security.md', 'utf8').replace(/\s+/g, ' ');
    expect(doc).toContain(`**${PROPERTY_DEFAULTS.runs.toLocaleString('en')} generated requests**`);
    expect(doc).toContain(`**${PROPERTY_DEFAULTS.rawRuns} generated raw request heads**`);
    expect(doc).toContain(`**seed ${PROPERTY_DEFAULTS.seed}**`);
  });

  it('names the two set-up commands and the Node major the project runs on', () => {
    expect(readme).toMatch(/npm ci && npm start/);
    expect(readme).toMatch(/npm ci && npm test/);
    const engines = (JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines).toMatch(/24/);
    expect(readme).toMatch(/Node(\.js)? 24/);
  });

  it('lists every folder of the repository in its structure table', () => {
    const table = readme.slice(readme.indexOf('## Repository'));
    const folders = new Set(
      execFileSync('git', ['ls-files'], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map((f) => dirname(f))
        .filter((d) => d !== '.')
        // two levels deep is the table's grain (monitoring/grafana/provisioning/… are grafana's own layout)
        .map((d) => d.split('/').slice(0, 2).join('/')),
    );
    const missing = [...folders].filter((d) => !table.includes(`\`${d}/\``));
    expect(missing).toEqual([]);
  });
});

describe('the manual', () => {
  it('links only to files that exist in the repository', () => {
    const broken: string[] = [];
    for (const file of manual) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        if (!existsSync(join(dirname(file), target))) broken.push(`${file}: ${target}`);
      }
      // documents outside the repository (design notes kept next to it) must not be cited
      if (/\.\.\/shared|DESIGN\.md|STYLE\.md|RELIABILITY\.md|RABBITMQ-NOTES|design notes/.test(text)) broken.push(`${file}: cites an outside document`);
    }
    expect(broken).toEqual([]);
  });

  it('shows the broker users with the permissions definitions.json gives them (docs/security.md)', () => {
    const security = readFileSync('docs/security.md', 'utf8');
    const cell = (re: string): string => `\`${re.replaceAll('[a-z0-9][a-z0-9-]*', '<svc>').replaceAll('|', '\\|')}\``;
    for (const p of brokerPermissions('gw')) {
      const row = security.split('\n').find((line) => line.startsWith(`| \`${p.user}\``));
      expect(row, p.user).toBeDefined();
      expect(row).toContain(`| ${cell(p.configure)} | ${cell(p.write)} | ${cell(p.read)} |`);
    }
  });
});
