import 'vitest';

declare module 'vitest' {
  /** Values `test/support/global-setup.ts` provides to every test file. */
  export interface ProvidedContext {
    /** AMQP URL of the test broker; empty when only the unit project runs. */
    rabbitmqUrl: string;
    /** Management API base URL with credentials; empty when the broker has none. */
    rabbitmqManagementUrl: string;
  }
}
