import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/** When a job runs (cron in a time zone) and what that schedule keeps. */
@Entity('schedules')
export class ScheduleEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('uuid', { name: 'job_id' }) jobId!: string;
  @Column('text') name!: string;
  @Column('text') cron!: string;
  @Column('text') timezone!: string;
  @Column('boolean', { default: true }) enabled!: boolean;
  @Column('jsonb') retention!: Record<string, unknown>;
  @Column('timestamptz', { name: 'last_fired_at', nullable: true }) lastFiredAt!: Date | null;
  @Column('timestamptz', { name: 'next_fire_at', nullable: true }) nextFireAt!: Date | null;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' }) updatedAt!: Date;
}
