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

/** One execution of a job, manual or scheduled. */
@Entity('runs')
export class RunEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('uuid', { name: 'job_id' }) jobId!: string;
  @Column('uuid', { name: 'schedule_id', nullable: true }) scheduleId!: string | null;
  @Column('text') trigger!: 'manual' | 'schedule';
  @Column('text') status!: RunStatus;
  @Column('jsonb') progress!: Record<string, unknown>;
  @Column('text', { nullable: true }) error!: string | null;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @Column('timestamptz', { name: 'started_at', nullable: true }) startedAt!: Date | null;
  @Column('timestamptz', { name: 'finished_at', nullable: true }) finishedAt!: Date | null;
}
