export * from './retention.policy';
