import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/** What to back up (VM selection), where (remotes), how (a job-type plugin and its settings). */
@Entity('jobs')
export class JobEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('text') name!: string;
  @Column('text') type!: string;
  @Column('jsonb') selection!: Record<string, unknown>;
  @Column('uuid', { name: 'remote_ids', array: true }) remoteIds!: string[];
  @Column('jsonb') settings!: Record<string, unknown>;
  @Column('boolean', { default: true }) enabled!: boolean;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' }) updatedAt!: Date;
}
