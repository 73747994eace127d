export * from './scheduler.module';
export * from './run.launcher';
export * from './schedule.ticker';
export * from './restore.launcher';
export * from './restore-point-delete.launcher';
export * from './maintenance.launcher';
