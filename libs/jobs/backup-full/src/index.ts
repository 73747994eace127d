import { backupFullPlugin } from './backup-full.plugin';

export * from './archive';
export * from './archive.fanout';
export * from './archive.retention';
export * from './backup-full.errors';
export * from './backup-full.settings';
export * from './backup-full.plugin';
export * from './vm-archive.executor';

export const plugin = backupFullPlugin;
export default backupFullPlugin;
