export * from './remote.contract';
export * from './remote.errors';
export * from './remote.driver';
export * from './remote.base';
export * from './remote-key';
export * from './remote.lease';
export * from './remote.self-test';
export * from './retry.policy';
// The contract test suite is in ./testing (alias @haven/remote-sdk/testing): test code only.
export * from './remote-body';
export * from './page-aligned.buffer';
