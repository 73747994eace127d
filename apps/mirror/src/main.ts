import { exitOnBootFailure, startHavenProcess } from '@haven/service-core';
import { MirrorModule } from '@haven/service-mirror';

startHavenProcess({ roles: ['mirror'], modules: [MirrorModule] }).catch(exitOnBootFailure);
