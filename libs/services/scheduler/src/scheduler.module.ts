import { Module } from '@nestjs/common';
import { RunLauncher } from './run.launcher';

/** The scheduler role: starts runs (manual or on schedule), splitting them into queued tasks. */
@Module({ providers: [RunLauncher] })
export class SchedulerModule {}
