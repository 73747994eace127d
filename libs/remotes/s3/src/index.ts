export * from './s3.driver';
export * from './s3.plugin';
export { default } from './s3.plugin';
