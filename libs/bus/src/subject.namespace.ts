import type { WorkQueue } from '@haven/contracts';
import { BusConfigurationError } from './bus.errors';

const PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/**
 * Where a bus puts things: a prefix namespaces every subject (`<prefix>.haven.v1.…`) and every
 * stream name, so several installs or test runs share one NATS without seeing each other.
 */
export class BusNamespace {
  private readonly subjectPrefix: string;
  private readonly streamBase: string;

  constructor(readonly prefix: string | undefined) {
    if (prefix !== undefined && prefix !== '' && !PREFIX.test(prefix)) {
      throw new BusConfigurationError(
        `prefix "${prefix}"`,
        'a prefix is dot-separated tokens of letters, digits, "-" and "_"',
      );
    }
    this.subjectPrefix = prefix ? `${prefix}.` : '';
    this.streamBase = prefix ? `${prefix.replace(/\./g, '_')}_haven` : 'haven';
  }

  subject(name: string): string {
    return `${this.subjectPrefix}${name}`;
  }

  workSubject(queue: WorkQueue<unknown>): string {
    return this.subject(queue.subject);
  }

  deadLetterSubject(queue: WorkQueue<unknown>): string {
    return this.subject(queue.deadLetterSubject);
  }

  workStream(queue: WorkQueue<unknown>): string {
    return `${this.streamBase}_work_${queue.name}`;
  }

  deadLetterStream(queue: WorkQueue<unknown>): string {
    return `${this.streamBase}_dlq_${queue.name}`;
  }

  /** Every stream name this namespace may create starts with this (for clean-up in tests). */
  get streamNamePrefix(): string {
    return `${this.streamBase}_`;
  }
}
