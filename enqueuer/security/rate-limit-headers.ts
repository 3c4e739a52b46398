import type { BucketPolicy, TakeResult } from './token-bucket.ts';

/**
 * `RateLimit-Policy` member for a token bucket (draft-ietf-httpapi-ratelimit-headers-10, a
 * Structured Fields List): quota `q` = the burst, window `w` = seconds a drained bucket needs to
 * refill completely. Example: `"tenant";q=200;w=2`.
 */
export function policyMember(policy: BucketPolicy): string {
  return `"${policy.name}";q=${policy.burst};w=${Math.max(1, Math.ceil(policy.burst / policy.ratePerS))}`;
}

/**
 * `RateLimit` member: `r` = whole requests left now, `t` = seconds until the bucket is full again.
 * Example: `"tenant";r=0;t=2`.
 */
export function limitMember(policy: BucketPolicy, result: TakeResult): string {
  return `"${policy.name}";r=${result.remaining};t=${Math.max(0, Math.ceil(result.resetMs / 1000))}`;
}
