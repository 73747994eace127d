import {
  exitCleanlyOnSignals,
  exitOnBootFailure,
  sizeThreadPoolForDataPath,
  startHavenProcess,
} from '@haven/service-core';
import { TransferModule } from '@haven/service-transfer';

// Before anything starts an asynchronous file call (libuv sizes its pool then).
sizeThreadPoolForDataPath();
startHavenProcess({ roles: ['transfer'], modules: [TransferModule] })
  .then(exitCleanlyOnSignals)
  .catch(exitOnBootFailure);
