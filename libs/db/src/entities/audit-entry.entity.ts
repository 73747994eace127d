import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** Who changed what, when: every mutating API call leaves one. */
@Entity('audit_log')
export class AuditEntryEntity {
  @PrimaryGeneratedColumn('increment', { type: 'bigint' }) id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('uuid', { name: 'actor_key_id', nullable: true }) actorKeyId!: string | null;
  @Column('text') action!: string;
  @Column('text', { name: 'object_type' }) objectType!: string;
  @Column('text', { name: 'object_id', nullable: true }) objectId!: string | null;
  @Column('jsonb') detail!: Record<string, unknown>;
  @Column('timestamptz', { default: () => 'now()' }) at!: Date;
}
