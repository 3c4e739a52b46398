// Summarizes `.cpuprofile` files (from `npm run bench -- --profile`): top self-time functions and
// self time by package. Usage: node bench/profile-summary.ts <file.cpuprofile>... [--top N] [--inclusive]
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { selfTimeByArea, topSelfTime, topTotalTime, type CpuProfile } from './lib/cpu-profile.ts';

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' }, inclusive: { type: 'boolean', default: false } }, allowPositionals: true });
if (positionals.length === 0) {
  process.stderr.write('usage: node bench/profile-summary.ts <file.cpuprofile>... [--top N] [--inclusive]\n');
  process.exit(2);
}
for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const wallMs = (profile.endTime - profile.startTime) / 1000;
  const out = [`## ${basename(file)} (${(wallMs / 1000).toFixed(1)} s profiled)`, '', '| self % | self ms | function | where |', '|---:|---:|---|---|'];
  for (const t of topSelfTime(profile, Number(values.top))) out.push(`| ${t.percent.toFixed(1)} | ${t.selfMs.toFixed(0)} | ${t.fn} | ${t.where} |`);
  out.push('', '| area | self % |', '|---|---:|');
  for (const a of selfTimeByArea(profile).slice(0, 15)) out.push(`| ${a.area} | ${a.percent.toFixed(1)} |`);
  if (values.inclusive) {
    out.push('', '| total % of busy | total ms | function | where |', '|---:|---:|---|---|');
    for (const t of topTotalTime(profile, Number(values.top) * 2)) out.push(`| ${t.busyPercent.toFixed(1)} | ${t.totalMs.toFixed(0)} | ${t.fn} | ${t.where} |`);
  }
  process.stdout.write(`${out.join('\n')}\n\n`);
}
