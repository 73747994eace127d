import { exitCleanlyOnSignals, exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { MirrorModule } from '@haven/service-mirror';

startHavenProcess({ roles: ['mirror'], modules: [MirrorModule] })
  .then(exitCleanlyOnSignals)
  .catch(exitOnBootFailure);
