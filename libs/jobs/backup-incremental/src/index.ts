export * from './backup-incremental.plugin';
export { default } from './backup-incremental.plugin';
