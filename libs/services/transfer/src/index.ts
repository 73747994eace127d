export * from './transfer.module';
export * from './task.worker';
export * from './restore-vm.executor';
