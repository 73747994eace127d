/** Injection tokens of the providers every Haven process shares. */
export const HAVEN_CONFIG = Symbol('HAVEN_CONFIG');
export const HAVEN_BUS = Symbol('HAVEN_BUS');
export const HAVEN_LOGGER = Symbol('HAVEN_LOGGER');
export const HAVEN_METRICS = Symbol('HAVEN_METRICS');
export const HAVEN_PLUGINS = Symbol('HAVEN_PLUGINS');
export const HAVEN_SECRETS = Symbol('HAVEN_SECRETS');
export const HAVEN_PROCESS = Symbol('HAVEN_PROCESS');

/** The roles one process can play; the all-in-one process plays them all. */
export type ProcessRole = 'gateway' | 'catalog' | 'scheduler' | 'transfer' | 'replication' | 'mirror';
export const PROCESS_ROLES: readonly ProcessRole[] = [
  'gateway',
  'catalog',
  'scheduler',
  'transfer',
  'replication',
  'mirror',
];

export interface HavenProcessInfo {
  roles: readonly ProcessRole[];
  instanceName: string;
  startedAt: Date;
  /** The system tenant (manages tenants); known once the catalog is bootstrapped. */
  systemTenantId: string;
}
