import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

export type RunStatus = 'pending' | 'running' | 'success' | 'partial' | 'failure' | 'cancelled';
export const RUN_STATUSES: readonly RunStatus[] = [
  'pending',
  'running',
  'success',
  'partial',
  'failure',
  'cancelled',
];

/**
 * backup: a run of a job; restore: a restore point restored as a new VM; gc and verify: maintenance
 * of one remote's repository (garbage collection, integrity check); delete-restore-point: one
 * restore point deleted by hand.
 */
export type RunKind = 'backup' | 'restore' | 'gc' | 'verify' | 'delete-restore-point';

/** One execution of a job (manual or scheduled), or a restore. */
@Entity('runs')
export class RunEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  /** Null for restore runs, which belong to no job. */
  @Column('uuid', { name: 'job_id', nullable: true }) jobId!: string | null;
  @Column('text', { default: 'backup' }) kind!: RunKind;
  @Column('uuid', { name: 'schedule_id', nullable: true }) scheduleId!: string | null;
  @Column('text') trigger!: 'manual' | 'schedule';
  @Column('text') status!: RunStatus;
  @Column('jsonb') progress!: Record<string, unknown>;
  @Column('text', { nullable: true }) error!: string | null;
  /** Most tasks of this run executing at once (the job type's `taskConcurrency`); null = no cap. */
  @Column('integer', { name: 'task_concurrency', nullable: true }) taskConcurrency!: number | null;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @Column('timestamptz', { name: 'started_at', nullable: true }) startedAt!: Date | null;
  @Column('timestamptz', { name: 'finished_at', nullable: true }) finishedAt!: Date | null;
}
