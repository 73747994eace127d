export { NbdClient, type NbdConnectOptions, type NbdTlsOptions } from './nbd.client';
export { NbdError, isNbdError, redactExportName, type NbdErrorCode, type NbdErrorContext } from './nbd.error';
export {
  NbdServer,
  NbdExportRefusal,
  NbdReadFailure,
  NbdConnectionDrop,
  type NbdExport,
  type NbdServerOptions,
  type NbdServerStats,
} from './nbd.server';
export * from './nbd.protocol';
export { createSelfSignedCertificate, type SelfSignedCertificate } from './self-signed.certificate';
