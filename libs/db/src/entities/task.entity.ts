import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

export type TaskStatus = 'pending' | 'running' | 'success' | 'failure' | 'cancelled';
export const TASK_STATUSES: readonly TaskStatus[] = ['pending', 'running', 'success', 'failure', 'cancelled'];

/** One unit of durable work of a run (for a backup: one VM), executed by any worker. */
@Entity('tasks')
export class TaskEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('uuid', { name: 'run_id' }) runId!: string;
  @Column('text') type!: string;
  /** What the task works on, for people: a VM name, a remote, … */
  @Column('text') subject!: string;
  /** What the job type's planner gave the executor. */
  @Column('jsonb') input!: Record<string, unknown>;
  @Column('text') status!: TaskStatus;
  @Column('jsonb') progress!: Record<string, unknown>;
  @Column('integer', { default: 0 }) attempts!: number;
  @Column('text', { nullable: true }) worker!: string | null;
  @Column('jsonb', { nullable: true }) result!: Record<string, unknown> | null;
  @Column('text', { nullable: true }) error!: string | null;
  /** When it went on the work queue; null while it waits for a free slot of its run. */
  @Column('timestamptz', { name: 'queued_at', nullable: true }) queuedAt!: Date | null;
  /** What the task holds alone while it is open (PlannedTask.lockKey), e.g. `vm:<uuid>`. */
  @Column('text', { name: 'lock_key', nullable: true }) lockKey!: string | null;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @Column('timestamptz', { name: 'started_at', nullable: true }) startedAt!: Date | null;
  @Column('timestamptz', { name: 'finished_at', nullable: true }) finishedAt!: Date | null;
}
