import { Module } from '@nestjs/common';

/**
 * The scheduler role: cron schedules, sequences, expanding runs into tasks, retention decisions.
 * Its processes join the bus and report health and metrics; the work itself is added by the job
 * types' executors.
 */
@Module({})
export class SchedulerModule {}
