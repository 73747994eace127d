export * from './xapi.error';
export * from './xapi-inventory.model';
export * from './xapi-export.stream';
export * from './vm-marker.codec';
export * from './vm-network.record';
export {
  XapiPool,
  type XapiPoolOptions,
  type XvaCompression,
  type OtherConfigClass,
  type VdiNbdInfo,
} from './xapi-pool';
export { VdiNbdConnection } from './vdi-nbd.connection';
export {
  withPoolConnection,
  XapiPoolCache,
  type CachedPoolAccess,
  type XapiPoolCacheOptions,
} from './xapi-pool.cache';
