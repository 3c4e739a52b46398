import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../../shared/errors.ts';
import type { Priority } from '../../shared/topology/lanes.ts';
import type { Principal } from '../security/api-keys.ts';

/** Request header: `high` or `normal` (the default) for an async job (docs/fairness.md). */
export const PRIORITY_HEADER = 'gw-priority';

/**
 * The priority a request asks for, pure: absent or `normal` → normal; `high` → high if the key may
 * send it (`maxPriority: "high"` in the keys file), else 403 `GW_ERR_PRIORITY_FORBIDDEN`; anything
 * else, or on a sync request, 400 `GW_ERR_PRIORITY_INVALID`.
 */
export function parsePriority(headers: IncomingHttpHeaders, principal: Pick<Principal, 'maxPriority'>, mode: 'sync' | 'async'): Priority {
  const raw = headers[PRIORITY_HEADER];
  if (raw === undefined) return 'normal';
  const value = (Array.isArray(raw) ? raw.join(',') : raw).trim().toLowerCase();
  if (value !== 'high' && value !== 'normal') throw new GatewayError('GW_ERR_PRIORITY_INVALID', `${PRIORITY_HEADER} must be high or normal`);
  if (mode === 'sync') throw new GatewayError('GW_ERR_PRIORITY_INVALID', `${PRIORITY_HEADER} applies to async jobs only (send Prefer: respond-async)`);
  if (value === 'high' && principal.maxPriority !== 'high') throw new GatewayError('GW_ERR_PRIORITY_FORBIDDEN', 'this API key may not send high-priority jobs');
  return value;
}
