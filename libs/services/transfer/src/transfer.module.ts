import { Module } from '@nestjs/common';
import { TaskWorker } from './task.worker';

/**
 * The transfer role: workers that take job tasks from the durable queue and run them (moving
 * backup and restore data between XAPI and remotes, through the job types' executors). Start as
 * many as you like, anywhere: the queue spreads the work.
 */
@Module({ providers: [TaskWorker] })
export class TransferModule {}
