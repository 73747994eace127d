export * from './remote.contract';
export * from './remote.errors';
