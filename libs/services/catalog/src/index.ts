export * from './catalog.module';
export * from './run-progress.recorder';
