import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type RunLogLevel = 'info' | 'warn' | 'error';
export const RUN_LOG_LEVELS: readonly RunLogLevel[] = ['info', 'warn', 'error'];

/** One line of a run's log: what an executor or the worker running it said, in order. */
@Entity('run_logs')
export class RunLogEntity {
  /** bigint: the driver hands it over as a string. */
  @PrimaryGeneratedColumn({ type: 'bigint' }) id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('uuid', { name: 'run_id' }) runId!: string;
  /** Null for lines about the run as a whole. */
  @Column('uuid', { name: 'task_id', nullable: true }) taskId!: string | null;
  @Column('timestamptz') at!: Date;
  @Column('text') level!: RunLogLevel;
  @Column('text') message!: string;
  @Column('jsonb') fields!: Record<string, unknown>;
}
