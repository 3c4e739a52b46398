import { enableLocalPlugins, localManagementUrl, managementAnswers, redact } from '../../scripts/lib/management.ts';
import { brokerUrl, managementUrl } from './broker.ts';

let ready: Promise<string> | undefined;

/**
 * The test broker's management API base URL (with credentials), answering. The global setup's
 * (RABBITMQ_MANAGEMENT_URL, a container's, a private node's), else the machine's own broker on
 * 127.0.0.1:15672; when its plugin is off, it is enabled here with rabbitmq-plugins (as .ci/run does).
 * Fails, never skips, when no management API can be had.
 */
export function testManagementUrl(): Promise<string> {
  ready ??= (async () => {
    const given = managementUrl();
    const url = given ?? localManagementUrl(brokerUrl());
    if (!url) {
      throw new Error(`the test broker ${brokerUrl().replace(/:[^:@/]*@/, ':***@')} is not this machine's, and RABBITMQ_MANAGEMENT_URL is not set: set it`);
    }
    const probe = await managementAnswers(url);
    if (probe.ok) return url;
    if (given) throw new Error(`RABBITMQ_MANAGEMENT_URL ${redact(url)} does not answer: ${probe.reason}`);
    await enableLocalPlugins(url);
    return url;
  })();
  return ready;
}
