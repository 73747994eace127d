export * from './log-context';
export * from './json.logger';
export * from './metrics.registry';
