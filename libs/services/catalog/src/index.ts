export * from './catalog.module';
export * from './run-progress.recorder';
export * from './run-log.recorder';
export * from './task.dispatcher';
export * from './waiting-task.sweep';
