import { ERRORS, problemSlug, type ErrorCode } from '../../shared/errors.ts';

/** The README's error table, rendered from the registry (a test keeps them equal). */
export function errorTableMarkdown(): string {
  const rows = (Object.keys(ERRORS) as ErrorCode[]).map((code) => `| \`${code}\` | ${ERRORS[code].status} | \`${problemSlug(code)}\` | ${ERRORS[code].title} |`);
  return ['| code | status | problem type (suffix) | title |', '|---|---|---|---|', ...rows].join('\n');
}
