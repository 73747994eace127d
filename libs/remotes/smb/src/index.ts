export * from './md4.hash';
export * from './ntlm.auth';
export * from './smb2.status';
export * from './smb2.connection';
export * from './smb2.client';
export * from './smb.driver';
export * from './smb.plugin';
export { default } from './smb.plugin';
