import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/** An organisation whose pools, remotes, jobs and backups are isolated from every other's. */
@Entity('tenants')
export class TenantEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  /** The system tenant's admins manage tenants; it exists from the first start. */
  @Column('boolean', { name: 'is_system', default: false }) isSystem!: boolean;
  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
}
