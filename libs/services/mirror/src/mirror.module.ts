import { Module } from '@nestjs/common';

/**
 * The mirror role: workers that copy restore points between repositories.
 * Its processes join the bus and report health and metrics; the work itself is added by the job
 * types' executors.
 */
@Module({})
export class MirrorModule {}
