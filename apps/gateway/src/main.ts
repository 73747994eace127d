import { exitCleanlyOnSignals, exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { GatewayModule, mountOpenApi } from '@haven/service-gateway';

startHavenProcess({ roles: ['gateway'], modules: [GatewayModule], configure: mountOpenApi })
  .then(exitCleanlyOnSignals)
  .catch(exitOnBootFailure);
