export * from './subject';
export * from './runs.contract';
export * from './jobs.contract';
