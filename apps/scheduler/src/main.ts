import { exitCleanlyOnSignals, exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { SchedulerModule } from '@haven/service-scheduler';

startHavenProcess({ roles: ['scheduler'], modules: [SchedulerModule] })
  .then(exitCleanlyOnSignals)
  .catch(exitOnBootFailure);
