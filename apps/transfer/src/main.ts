import { exitCleanlyOnSignals, exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { TransferModule } from '@haven/service-transfer';

startHavenProcess({ roles: ['transfer'], modules: [TransferModule] })
  .then(exitCleanlyOnSignals)
  .catch(exitOnBootFailure);
