export * from './plugin.manifest';
export * from './config-validation';
export * from './plugin.registry';
