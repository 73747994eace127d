export * from './entities';
export * from './migrations';
export * from './catalog.data-source';
export * from './catalog.bootstrap';
export * from './secret.box';
export * from './restore-point.records';
export * from './remote.records';
