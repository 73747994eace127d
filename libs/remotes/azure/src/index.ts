export * from './azure.driver';
export * from './azure.plugin';
export { default } from './azure.plugin';
