// Regenerates deploy/k8s/prometheusrule.yaml from monitoring/alerts.yml (the one source of the rules).
// Run: npm run prometheus-rule
import { readFileSync, writeFileSync } from 'node:fs';
import { ALERTS_PATH, PROMETHEUS_RULE_PATH, prometheusRuleYaml } from './lib/prometheus-rule.ts';

writeFileSync(PROMETHEUS_RULE_PATH, prometheusRuleYaml(readFileSync(ALERTS_PATH, 'utf8')));
process.stdout.write(`wrote ${PROMETHEUS_RULE_PATH}\n`);
