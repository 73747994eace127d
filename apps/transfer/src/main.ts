import { exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { TransferModule } from '@haven/service-transfer';

startHavenProcess({ roles: ['transfer'], modules: [TransferModule] }).catch(exitOnBootFailure);
