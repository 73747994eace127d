import { Column, Entity, PrimaryColumn } from 'typeorm';

/** What a verify found wrong with a restore point. */
export interface RestorePointDamage {
  reasons: string[];
  chunks: { chunkId: string; reason: string }[];
  /** Run of the verify that found it. */
  runId: string;
}

/** A committed backup of one VM on one remote; the remote's manifest is the source of truth. */
@Entity('restore_points')
export class RestorePointEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('uuid', { name: 'remote_id' }) remoteId!: string;
  @Column('uuid', { name: 'job_id', nullable: true }) jobId!: string | null;
  @Column('uuid', { name: 'run_id', nullable: true }) runId!: string | null;
  @Column('text', { name: 'vm_uuid' }) vmUuid!: string;
  @Column('text', { name: 'vm_name' }) vmName!: string;
  @Column('text') kind!: 'full' | 'incremental';
  /** Key of the manifest on the remote. */
  @Column('text', { name: 'manifest_key' }) manifestKey!: string;
  @Column('bigint', {
    name: 'logical_bytes',
    transformer: { to: (v: number) => v, from: (v: string) => Number(v) },
  })
  logicalBytes!: number;
  @Column('bigint', {
    name: 'stored_bytes',
    transformer: { to: (v: number) => v, from: (v: string) => Number(v) },
  })
  storedBytes!: number;
  @Column('text', { array: true, name: 'gfs_tags', default: '{}' }) gfsTags!: string[];
  /** When the VM's snapshot was taken; XAPI gives it to the second. */
  @Column('timestamptz', { name: 'taken_at' }) takenAt!: Date;
  /** When the restore point was committed on the remote: orders those taken in the same second. */
  @Column('timestamptz', { name: 'committed_at' }) committedAt!: Date;
  /** Set by a verify of the remote that found chunks of this restore point missing or corrupt. */
  @Column('timestamptz', { name: 'damaged_at', nullable: true }) damagedAt!: Date | null;
  /** What that verify found: the bad chunks and why. */
  @Column('jsonb', { nullable: true }) damage!: RestorePointDamage | null;
}
