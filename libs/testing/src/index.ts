export * from './integration';
export * from './scratch';
