import { exitCleanlyOnSignals, exitOnBootFailure } from '@haven/service-core';
import { startAllInOne } from './haven.app';

startAllInOne().then(exitCleanlyOnSignals).catch(exitOnBootFailure);
