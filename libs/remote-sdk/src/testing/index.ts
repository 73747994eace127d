// Test-only code (uses Jest globals): import from '@haven/remote-sdk/testing' in specs only.
export * from './remote-contract.suite';
export * from './test-pattern';
export * from './object-store.expectations';
