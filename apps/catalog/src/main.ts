import { exitCleanlyOnSignals, exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { CatalogModule } from '@haven/service-catalog';

startHavenProcess({ roles: ['catalog'], modules: [CatalogModule] })
  .then(exitCleanlyOnSignals)
  .catch(exitOnBootFailure);
