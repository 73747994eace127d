export * from './scheduler.module';
export * from './run.launcher';
