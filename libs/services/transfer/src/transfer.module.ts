import { Module } from '@nestjs/common';

/**
 * The transfer role: workers that move backup and restore data between XAPI and remotes.
 * Its processes join the bus and report health and metrics; the work itself is added by the job
 * types' executors.
 */
@Module({})
export class TransferModule {}
