import type { LoggerService, LogLevel } from '@nestjs/common';
import { currentLogContext } from './log-context';

const RANK = { debug: 10, info: 20, warn: 30, error: 40 } as const;
type Level = keyof typeof RANK;

/** Structured JSON logs, one object per line, with the request / run ids of the current context. */
export class JsonLogger implements LoggerService {
  constructor(
    private readonly service: string,
    private readonly minLevel: Level = 'info',
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {}

  log(message: unknown, ...rest: unknown[]): void {
    this.write('info', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.write('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('error', message, rest);
  }
  setLogLevels(_levels: LogLevel[]): void {
    // The level comes from LOG_LEVEL once at start; Nest's own level list is not used.
  }

  private write(level: Level, message: unknown, rest: unknown[]): void {
    if (RANK[level] < RANK[this.minLevel]) return;
    // Nest passes the context (class name) last, and an error stack before it for errors.
    const context = typeof rest[rest.length - 1] === 'string' ? (rest.pop() as string) : undefined;
    const entry: Record<string, unknown> = {
      time: new Date().toISOString(),
      level,
      service: this.service,
      ...(context === undefined ? {} : { context }),
      ...currentLogContext(),
    };
    if (message instanceof Error) {
      entry['msg'] = message.message;
      entry['stack'] = message.stack;
    } else if (typeof message === 'object' && message !== null) {
      Object.assign(entry, message);
    } else {
      entry['msg'] = String(message);
    }
    const stack = rest.find((r): r is string => typeof r === 'string' && r.includes('\n    at '));
    if (stack !== undefined) entry['stack'] = stack;
    this.out.write(`${JSON.stringify(entry)}\n`);
  }
}
