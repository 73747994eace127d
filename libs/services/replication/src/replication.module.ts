import { Module } from '@nestjs/common';

/**
 * The replication role: workers that copy VMs from pool to pool or SR.
 * Its processes join the bus and report health and metrics; the work itself is added by the job
 * types' executors.
 */
@Module({})
export class ReplicationModule {}
