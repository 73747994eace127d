import { backupIncrementalPlugin } from './backup-incremental.plugin';

export * from './backup-incremental.errors';
export * from './backup-incremental.settings';
export * from './backup-incremental.plugin';
export * from './vm.selection';
export * from './vm-tasks.planner';
export * from './vm-backup.session';
export { retainOnEveryRemote, type RetentionOutcome, type RetentionReport } from './restore-point.retention';
export * from './block.fanout';
export * from './vm-backup.executor';
export * from './remote-repository';

export const plugin = backupIncrementalPlugin;
export default backupIncrementalPlugin;
