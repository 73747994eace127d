import { ApiKeyEntity } from './api-key.entity';
import { AuditEntryEntity } from './audit-entry.entity';
import { JobEntity } from './job.entity';
import { PoolEntity } from './pool.entity';
import { RemoteEntity } from './remote.entity';
import { RestorePointEntity } from './restore-point.entity';
import { RunEntity } from './run.entity';
import { RunLogEntity } from './run-log.entity';
import { ScheduleEntity } from './schedule.entity';
import { TaskEntity } from './task.entity';
import { TenantEntity } from './tenant.entity';

export * from './api-key.entity';
export * from './audit-entry.entity';
export * from './job.entity';
export * from './pool.entity';
export * from './remote.entity';
export * from './restore-point.entity';
export * from './run.entity';
export * from './run-log.entity';
export * from './schedule.entity';
export * from './task.entity';
export * from './tenant.entity';

export const CATALOG_ENTITIES = [
  TenantEntity,
  ApiKeyEntity,
  PoolEntity,
  RemoteEntity,
  JobEntity,
  ScheduleEntity,
  RunEntity,
  TaskEntity,
  RunLogEntity,
  RestorePointEntity,
  AuditEntryEntity,
];
