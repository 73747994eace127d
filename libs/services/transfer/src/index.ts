export * from './transfer.module';
