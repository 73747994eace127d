import { exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { CatalogModule } from '@haven/service-catalog';

startHavenProcess({ roles: ['catalog'], modules: [CatalogModule] }).catch(exitOnBootFailure);
