export * from './gateway.module';
export * from './auth/principal';
