import { exitCleanlyOnSignals, exitOnBootFailure, sizeThreadPoolForDataPath } from '@haven/service-core';
import { startAllInOne } from './haven.app';

// All-in-one runs transfer work: size libuv's pool before anything starts an asynchronous call.
sizeThreadPoolForDataPath();
startAllInOne().then(exitCleanlyOnSignals).catch(exitOnBootFailure);
