export * from './mirror.module';
