import { Transform, type TransformCallback } from 'node:stream';
import type { PoolFaults } from '../model/simulated-pool';
import { XapiFailure } from '../xapi.failure';

/**
 * The injected misbehaviour of one transfer, as a pass-through stage: break after N bytes (an
 * export cut short) and/or cap the throughput (a slow pool). Undefined when nothing is injected.
 */
export function createTransferFaults(
  faults: PoolFaults,
  direction: 'export' | 'import',
): Transform | undefined {
  let failAfter: number | null = null;
  if (direction === 'export' && faults.exportFailAfterBytes !== null && faults.exportFailTimes !== 0) {
    failAfter = faults.exportFailAfterBytes;
    if (faults.exportFailTimes !== null) faults.exportFailTimes--;
  }
  const rate = faults.bandwidthBytesPerSecond;
  if (failAfter === null && rate === null) return undefined;
  let passed = 0;
  const started = Date.now();
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      let data = chunk;
      let failure: XapiFailure | undefined;
      if (failAfter !== null && passed + data.length > failAfter) {
        data = data.subarray(0, Math.max(failAfter - passed, 0));
        failure = new XapiFailure('VDI_IO_ERROR', [
          `export interrupted after ${failAfter} bytes (injected fault)`,
        ]);
      }
      passed += data.length;
      const wait = rate === null ? 0 : Math.max(0, (passed / rate) * 1000 - (Date.now() - started));
      setTimeout(() => {
        if (data.length > 0) this.push(data);
        callback(failure);
      }, wait);
    },
  });
}
