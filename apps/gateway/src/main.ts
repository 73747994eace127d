import { exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { GatewayModule, mountOpenApi } from '@haven/service-gateway';

startHavenProcess({ roles: ['gateway'], modules: [GatewayModule], configure: mountOpenApi }).catch(
  exitOnBootFailure,
);
