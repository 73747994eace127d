import {
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type BaseBusSettings,
} from './bus.base';
import { BusConfigurationError } from './bus.errors';
import type { BusConfig, BusLogger } from './bus.interface';
import { MemoryBroker } from './drivers/memory.broker';
import { MemoryBus } from './drivers/memory.driver';
import { NatsBus } from './drivers/nats.driver';

/** Picks the driver: NATS in distributed mode, in-process in the all-in-one mode. */
export function createBus(config: { driver: 'nats' } & BusConfig): Promise<NatsBus>;
export function createBus(config: { driver: 'memory' } & BusConfig): Promise<MemoryBus>;
export function createBus(config: BusConfig): Promise<NatsBus | MemoryBus>;
export async function createBus(config: BusConfig): Promise<NatsBus | MemoryBus> {
  const settings = commonSettings(config);
  switch (config.driver) {
    case 'nats':
      return NatsBus.connect(config, settings);
    case 'memory': {
      const payloadLimitBytes = settings.maxPayloadBytes;
      return Promise.resolve(
        new MemoryBus(
          { ...settings, payloadLimitBytes, deadLetterLimitBytes: payloadLimitBytes + 64 * 1024 },
          config.broker ?? new MemoryBroker(),
        ),
      );
    }
  }
}

function commonSettings(
  config: BusConfig,
): Omit<BaseBusSettings, 'payloadLimitBytes' | 'deadLetterLimitBytes'> & { maxPayloadBytes: number } {
  const positive = (field: string, value: number | undefined, fallback: number): number => {
    const chosen = value ?? fallback;
    if (!Number.isFinite(chosen) || chosen <= 0) {
      throw new BusConfigurationError(
        `bus "${config.name}"`,
        `${field} must be a positive number, got ${chosen}`,
      );
    }
    return chosen;
  };
  if (config.name.trim() === '') {
    throw new BusConfigurationError(
      'bus',
      'name must not be empty: it identifies the client in logs and on the server',
    );
  }
  return {
    name: config.name,
    prefix: config.prefix,
    maxPayloadBytes: positive('maxPayloadBytes', config.maxPayloadBytes, DEFAULT_MAX_PAYLOAD_BYTES),
    requestTimeoutMs: positive('requestTimeoutMs', config.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS),
    drainTimeoutMs: positive('drainTimeoutMs', config.drainTimeoutMs, DEFAULT_DRAIN_TIMEOUT_MS),
    logger: config.logger ?? stderrLogger(config.name),
    observer: config.observer ?? {},
  };
}

/** One JSON line per event on stderr, when the caller gives no logger. */
function stderrLogger(bus: string): BusLogger {
  const write = (level: string, message: string, context?: Record<string, unknown>): void => {
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level, bus, msg: message, ...context })}\n`,
    );
  };
  return {
    warn: (message, context) => write('warn', message, context),
    error: (message, context) => write('error', message, context),
  };
}
