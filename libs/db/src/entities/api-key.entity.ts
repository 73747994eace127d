import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

export type Role = 'admin' | 'operator' | 'viewer';

/** An API key: stored as a SHA-256 hash of its secret part; the key itself is shown once. */
@Entity('api_keys')
export class ApiKeyEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('text') name!: string;
  @Column('text') role!: Role;
  @Column('text', { name: 'key_hash' }) keyHash!: string;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @Column('timestamptz', { name: 'last_used_at', nullable: true }) lastUsedAt!: Date | null;
  @Column('timestamptz', { name: 'revoked_at', nullable: true }) revokedAt!: Date | null;
}
