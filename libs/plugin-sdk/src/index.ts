export * from './plugin.manifest';
export * from './config-validation';
export * from './plugin.registry';
export * from './disk-stream.slots';
export * from './transfer.rate';
export * from './name.glob';
