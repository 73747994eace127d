export * from './haven.config';
