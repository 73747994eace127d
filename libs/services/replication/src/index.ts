export * from './replication.module';
