import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/** A place where backups live, of a plugin-provided type; secret settings are sealed apart. */
@Entity('remotes')
export class RemoteEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('text') name!: string;
  @Column('text') type!: string;
  /** Settings without the plugin's secret fields. */
  @Column('jsonb') settings!: Record<string, unknown>;
  /** The secret fields, as sealed JSON, or null when the type has none. */
  @Column('text', { name: 'secrets_sealed', nullable: true }) secretsSealed!: string | null;
  /** Repository encryption passphrase, sealed; null for an unencrypted repository. */
  @Column('text', { name: 'repository_key_sealed', nullable: true }) repositoryKeySealed!: string | null;
  /**
   * Id of the repository the remote holds (its repository.json), recorded at its first use; null
   * until then. Its storage holding no repository, or another one, is refused from then on.
   */
  @Column('text', { name: 'repository_id', nullable: true }) repositoryId!: string | null;
  @Column('boolean', { default: true }) enabled!: boolean;
  @Column('jsonb', { name: 'last_test', nullable: true }) lastTest!: Record<string, unknown> | null;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' }) updatedAt!: Date;
}
