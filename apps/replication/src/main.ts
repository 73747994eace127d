import { exitCleanlyOnSignals, exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { ReplicationModule } from '@haven/service-replication';

startHavenProcess({ roles: ['replication'], modules: [ReplicationModule] })
  .then(exitCleanlyOnSignals)
  .catch(exitOnBootFailure);
