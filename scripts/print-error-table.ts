// Prints the README's error table from the registry in shared/errors.ts.
import { errorTableMarkdown } from './lib/error-table.ts';

process.stdout.write(`${errorTableMarkdown()}\n`);
