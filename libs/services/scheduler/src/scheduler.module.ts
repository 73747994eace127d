import { Module } from '@nestjs/common';
import { JobResourceProvider, RemoteOpener } from '@haven/service-core';
import { RunLauncher } from './run.launcher';

/** The scheduler role: starts runs (manual or on schedule), splitting them into queued tasks. */
@Module({ providers: [RunLauncher, JobResourceProvider, RemoteOpener] })
export class SchedulerModule {}
