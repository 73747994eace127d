export * from './integration';
export * from './scratch';
export * from './postgres.database';
