export * from './transfer.module';
export * from './task.worker';
