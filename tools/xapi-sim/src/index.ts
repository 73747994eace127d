export { startXapiSimulator, type XapiSimulator, type XapiSimulatorOptions } from './xapi-simulator';
export { XapiFailure, SimulatorError } from './xapi.failure';
export type { PoolFaults } from './model/simulated-pool';
export type { VdiExportRecord } from './model/export.log';
export type { ClockState } from './model/simulator.clock';
export { NBD_TLS_SUBJECT, type VdiNbdStatus } from './nbd/vdi-nbd.server';
export type { DiskHash, RandomWrite, VmSummary, WriteResult } from './workload/disk.workload';
export { BLOCK_SIZE, CBT_CHUNK_SIZE } from './storage/block.constants';
export { seededBlock, seededBlockKind, type SeededBlockKind } from './seed/pool.seed';
export { ABSENT_SECTOR_FILL, createVdiExportStream, type VdiExport } from './http/export-raw-vdi.handler';
export {
  XenApiClientDriver,
  XenApiCallError,
  type XapiObject,
  type ResourceDownload,
  type Settled,
} from './testing/xen-api-client.driver';
