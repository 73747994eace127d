import { Readable } from 'node:stream';
import {
  BlockBufferPool,
  openVhdStream,
  isBitmapFull,
  isSectorPresent,
  VHD_SECTOR_SIZE,
  VHD_SECTORS_PER_BLOCK,
  VhdFormatError,
} from '@haven/vhd';
import type { SimulatedPool } from '../model/simulated-pool';
import { BLOCK_SIZE } from '../storage/block.constants';
import type { VirtualDisk } from '../storage/virtual-disk';
import { XapiFailure } from '../xapi.failure';
import { declaredLength, requestBody } from './http-request.body';
import type { HttpTransfer } from './http-transfer';
import { createTransferFaults } from './transfer-faults';

/** Block buffers an import keeps for reuse (one block is written at a time). */
const IMPORT_BUFFERS_KEPT = 2;

/** Writes a raw image from offset 0, a block at a time (zero blocks stay unallocated). */
async function importRaw(
  disk: VirtualDisk,
  source: AsyncIterable<Buffer>,
  onProgress: (bytes: number) => void,
): Promise<void> {
  const block = Buffer.allocUnsafe(BLOCK_SIZE);
  let filled = 0;
  let offset = 0;
  const flush = async (): Promise<void> => {
    if (filled === 0) return;
    if (offset + filled > disk.virtualSize) {
      throw new XapiFailure('VDI_IO_ERROR', [`raw image is larger than the VDI's ${disk.virtualSize} bytes`]);
    }
    await disk.write(offset, block.subarray(0, filled));
    offset += filled;
    filled = 0;
    onProgress(offset);
  };
  for await (const chunk of source) {
    let position = 0;
    while (position < chunk.length) {
      const take = Math.min(BLOCK_SIZE - filled, chunk.length - position);
      chunk.copy(block, filled, position, position + take);
      filled += take;
      position += take;
      if (filled === BLOCK_SIZE) await flush();
    }
  }
  await flush();
}

/** Applies a dynamic or differencing VHD: present blocks (and, within them, present sectors) only. */
async function importVhd(
  disk: VirtualDisk,
  source: AsyncIterable<Buffer>,
  onProgress: (bytes: number) => void,
): Promise<void> {
  // Blocks read into a few reused buffers: a fresh 2 MiB buffer per block made V8 collect often.
  const { metadata, blocks } = await openVhdStream(Readable.from(source), {
    blockBuffers: new BlockBufferPool(BLOCK_SIZE, IMPORT_BUFFERS_KEPT),
  });
  if (metadata.footer.currentSize > disk.virtualSize) {
    throw new XapiFailure('VDI_IO_ERROR', [
      `VHD virtual size ${metadata.footer.currentSize} exceeds the VDI's ${disk.virtualSize} bytes; resize the VDI first`,
    ]);
  }
  let done = 0;
  for await (const { index, bitmap, data, release } of blocks) {
    const offset = index * BLOCK_SIZE;
    const limit = Math.min(BLOCK_SIZE, disk.virtualSize - offset);
    if (isBitmapFull(bitmap)) {
      await disk.write(offset, data.subarray(0, limit));
    } else {
      let sector = 0;
      while (sector < VHD_SECTORS_PER_BLOCK) {
        if (!isSectorPresent(bitmap, sector)) {
          sector++;
          continue;
        }
        const start = sector;
        while (sector < VHD_SECTORS_PER_BLOCK && isSectorPresent(bitmap, sector)) sector++;
        const from = start * VHD_SECTOR_SIZE;
        const to = Math.min(sector * VHD_SECTOR_SIZE, limit);
        if (from < to) await disk.write(offset + from, data.subarray(from, to));
      }
    }
    release?.();
    done++;
    onProgress(Math.round((done / Math.max(metadata.allocatedBlocks.length, 1)) * disk.virtualSize));
  }
}

/**
 * PUT /import_raw_vdi/?vdi=&format=raw|vhd. The xen-api client first sends an empty probe PUT
 * without task_id (answered 200 untouched); a body of unknown length arrives with a 1 PiB
 * content-length and ends when the client closes the socket.
 */
export async function importRawVdi(pool: SimulatedPool, transfer: HttpTransfer): Promise<void> {
  const { request, response } = transfer;
  if (transfer.task === undefined && declaredLength(request) === 0) {
    transfer.begin();
    response.writeHead(200, { 'content-length': 0 });
    response.end();
    return;
  }
  transfer.begin();
  const vdiParam = transfer.query('vdi');
  if (vdiParam === undefined) throw new XapiFailure('FIELD_TYPE_ERROR', ['vdi']);
  const vdi = pool.store.resolve('VDI', vdiParam);
  if (pool.runningUserOf(vdi) !== undefined) throw new XapiFailure('VDI_IN_USE', [vdi, 'import']);
  if (pool.store.get('VDI', vdi)['type'] === 'cbt_metadata')
    throw new XapiFailure('VDI_INCOMPATIBLE_TYPE', [vdi, 'cbt_metadata']);
  const format = transfer.query('format') ?? 'raw';
  if (format !== 'raw' && format !== 'vhd') throw new XapiFailure('FIELD_TYPE_ERROR', [`format=${format}`]);
  const disk = pool.disks.get(vdi);
  // XAPI answers the headers at once and the task carries the outcome: the xen-api client waits
  // for these headers before it finishes sending a body of unknown length.
  response.writeHead(200, { 'content-type': 'application/octet-stream' });
  response.flushHeaders();
  const throttle = createTransferFaults(pool.faults, 'import');
  const body: AsyncIterable<Buffer> =
    throttle === undefined ? requestBody(request) : Readable.from(requestBody(request)).pipe(throttle);
  const progress = (bytes: number): void => transfer.progress(bytes, disk.virtualSize);
  try {
    if (format === 'raw') await importRaw(disk, body, progress);
    else await importVhd(disk, body, progress);
  } catch (error) {
    // What XAPI reports for a stream that is not a valid VHD or ends early. The xen-api client
    // ignores it after an upload of unknown length, where its own close may cut the last bytes.
    if (error instanceof VhdFormatError) throw new XapiFailure('VDI_IO_ERROR', [`${vdi}: ${error.message}`]);
    throw error;
  }
  transfer.succeed();
  if (!response.destroyed) response.end();
}
