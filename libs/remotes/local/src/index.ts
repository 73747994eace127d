export * from './local.driver';
export * from './local.plugin';
export { default } from './local.plugin';
