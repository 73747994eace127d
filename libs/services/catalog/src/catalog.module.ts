import { Module } from '@nestjs/common';
import { RunLogRecorder } from './run-log.recorder';
import { RunProgressRecorder } from './run-progress.recorder';
import { WaitingTaskSweep } from './waiting-task.sweep';

/**
 * The catalog role: owns the schema (migrations run at its start), records what workers report
 * (progress, results, log lines) and queues the tasks of a run as its concurrency frees slots.
 */
@Module({ providers: [RunProgressRecorder, RunLogRecorder, WaitingTaskSweep] })
export class CatalogModule {}
