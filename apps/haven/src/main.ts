import { exitOnBootFailure } from '@haven/service-core';
import { startAllInOne } from './haven.app';

startAllInOne().catch(exitOnBootFailure);
