export * from './subject';
export * from './runs.contract';
