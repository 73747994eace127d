export * from './backup-full.plugin';
export { default } from './backup-full.plugin';
