export * from './core.tokens';
export * from './haven-core.module';
export * from './haven.bootstrap';
export * from './problem.filter';
export * from './master-key.source';
export * from './remote.opener';
export * from './public-route.decorator';
export * from './boot-failure';
