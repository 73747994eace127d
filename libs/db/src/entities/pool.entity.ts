import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/** A Xen / XCP-ng pool reached through XAPI on its master. */
@Entity('pools')
export class PoolEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'tenant_id' }) tenantId!: string;
  @Column('text') name!: string;
  @Column('text') url!: string;
  @Column('text') username!: string;
  /** Encrypted with the master key (see SecretBox). */
  @Column('text', { name: 'password_sealed' }) passwordSealed!: string;
  @Column('boolean', { name: 'allow_unauthorized', default: false }) allowUnauthorized!: boolean;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' }) updatedAt!: Date;
}
