import { Module } from '@nestjs/common';
import { MaintenanceLauncher } from './maintenance.launcher';
import { RestoreLauncher } from './restore.launcher';
import { RestorePointDeleteLauncher } from './restore-point-delete.launcher';
import { RunLauncher } from './run.launcher';
import { ScheduleTicker } from './schedule.ticker';

/**
 * The scheduler role: starts runs, manual or on schedule (several schedulers may run: each tick
 * fires once), splitting them into queued tasks; restores, deletions of a restore point and
 * repository maintenance (gc, verify) are runs too.
 */
@Module({
  providers: [RunLauncher, RestoreLauncher, RestorePointDeleteLauncher, MaintenanceLauncher, ScheduleTicker],
})
export class SchedulerModule {}
