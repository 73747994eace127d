import { Module } from '@nestjs/common';
import { RestoreLauncher } from './restore.launcher';
import { RunLauncher } from './run.launcher';
import { ScheduleTicker } from './schedule.ticker';

/**
 * The scheduler role: starts runs, manual or on schedule (several schedulers may run: each tick
 * fires once), splitting them into queued tasks.
 */
@Module({ providers: [RunLauncher, RestoreLauncher, ScheduleTicker] })
export class SchedulerModule {}
