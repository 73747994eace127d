import { Module } from '@nestjs/common';
import { RunProgressRecorder } from './run-progress.recorder';

/** The catalog role: owns the schema (migrations run at its start) and records what workers report. */
@Module({ providers: [RunProgressRecorder] })
export class CatalogModule {}
