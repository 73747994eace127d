import type { INestApplication } from '@nestjs/common';
import type { HavenConfig } from '@haven/config';
import { CatalogModule } from '@haven/service-catalog';
import { PROCESS_ROLES, startHavenProcess } from '@haven/service-core';
import { GatewayModule, mountOpenApi } from '@haven/service-gateway';
import { MirrorModule } from '@haven/service-mirror';
import { ReplicationModule } from '@haven/service-replication';
import { SchedulerModule } from '@haven/service-scheduler';
import { TransferModule } from '@haven/service-transfer';

/** Every role in one process, composed from the same modules the separate apps run. */
export function startAllInOne(config?: HavenConfig): Promise<INestApplication> {
  return startHavenProcess({
    roles: PROCESS_ROLES,
    modules: [CatalogModule, GatewayModule, SchedulerModule, TransferModule, ReplicationModule, MirrorModule],
    config,
    configure: mountOpenApi,
  });
}
