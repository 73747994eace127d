import { InitialCatalog1764140000000 } from './1764140000000-initial-catalog.migration';
import { RestoreRuns1764150000000 } from './1764150000000-restore-runs.migration';
import { RunExecution1764160000000 } from './1764160000000-run-execution.migration';
import { TaskLocks1764170000000 } from './1764170000000-task-locks.migration';
import { RestorePointsByRemote1764180000000 } from './1764180000000-restore-points-by-remote.migration';
import { RemoteRepositoryId1764190000000 } from './1764190000000-remote-repository-id.migration';
import { RestorePointDeleteRuns1764200000000 } from './1764200000000-restore-point-delete-runs.migration';
import { RestorePointCommitOrder1764210000000 } from './1764210000000-restore-point-commit-order.migration';

/** Every migration, in order. Add new ones at the end; never edit one that has shipped. */
export const CATALOG_MIGRATIONS = [
  InitialCatalog1764140000000,
  RestoreRuns1764150000000,
  RunExecution1764160000000,
  TaskLocks1764170000000,
  RestorePointsByRemote1764180000000,
  RemoteRepositoryId1764190000000,
  RestorePointDeleteRuns1764200000000,
  RestorePointCommitOrder1764210000000,
];
