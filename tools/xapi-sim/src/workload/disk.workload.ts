import { fieldText } from '../rpc/xapi-value';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { PoolFaults, SimulatedPool } from '../model/simulated-pool';
import { seededBytes, SeededRandom } from '../seed/seeded-random';
import { BLOCK_SIZE } from '../storage/block.constants';
import { SimulatorError } from '../xapi.failure';

export interface RandomWrite {
  /** Number of whole 2 MiB blocks to overwrite at random positions (distinct blocks). */
  blocks?: number;
  /** Number of random bytes to write at `offset` (default 0). */
  bytes?: number;
  offset?: number;
  /** Makes positions and content reproducible. */
  seed?: string;
}

export interface WriteResult {
  vdi: string;
  /** Byte ranges written, in increasing offset order. */
  ranges: { offset: number; length: number }[];
}

export interface DiskHash {
  vdi: string;
  virtualSize: number;
  /** SHA-256 (hex) of the full raw content, zeros included. */
  sha256: string;
  /** SHA-256 of each 2 MiB block (the last one may be shorter), when requested. */
  blocks?: string[];
}

export interface VmSummary {
  ref: string;
  uuid: string;
  name: string;
  powerState: string;
  isTemplate: boolean;
  isSnapshot: boolean;
  disks: { vbd: string; userdevice: string; vdi: string; uuid: string; name: string; virtualSize: number }[];
}

/**
 * Drives the guests of the simulated pool between backups: writes into disks, replaces their
 * content with an image, reads their content back as hashes, and injects faults.
 */
export class DiskWorkload {
  constructor(private readonly pool: SimulatedPool) {}

  listVms(): VmSummary[] {
    const { store } = this.pool;
    return store
      .all('VM')
      .filter((object) => object.record['is_control_domain'] !== true)
      .map(({ ref, record }) => ({
        ref,
        uuid: fieldText(record, 'uuid'),
        name: fieldText(record, 'name_label'),
        powerState: fieldText(record, 'power_state'),
        isTemplate: record['is_a_template'] === true,
        isSnapshot: record['is_a_snapshot'] === true,
        disks: (record['VBDs'] as string[])
          .map((vbd) => ({ vbd, fields: store.find(vbd)?.record }))
          .filter(({ fields }) => fields?.['type'] === 'Disk' && fields['empty'] !== true)
          .map(({ vbd, fields }) => {
            const vdi = fieldText(fields, 'VDI');
            const vdiRecord = store.find(vdi)?.record ?? {};
            return {
              vbd,
              userdevice: fieldText(fields, 'userdevice'),
              vdi,
              uuid: fieldText(vdiRecord, 'uuid'),
              name: fieldText(vdiRecord, 'name_label'),
              virtualSize: Number(vdiRecord['virtual_size']),
            };
          })
          .sort((a, b) => Number(a.userdevice) - Number(b.userdevice)),
      }));
  }

  /** A VDI ref from a VDI ref/uuid, or `<vm name|ref|uuid>` plus the disk's position (default 0). */
  resolveVdi(target: string, position = 0): string {
    const { store } = this.pool;
    const direct = store.find(target);
    if (direct?.cls === 'VDI') return target;
    try {
      return store.byUuidOf('VDI', target);
    } catch {
      // not a VDI uuid: try a VM
    }
    const vm = this.listVms().find(
      (summary) => summary.ref === target || summary.uuid === target || summary.name === target,
    );
    if (vm === undefined)
      throw new SimulatorError(
        'SIM_NO_SUCH_DISK',
        `no VDI nor VM named ${target}; list them with GET /_sim/vms`,
      );
    const disk = vm.disks.at(position);
    if (disk === undefined)
      throw new SimulatorError(
        'SIM_NO_SUCH_DISK',
        `VM ${vm.name} has no disk at position ${position} (it has ${vm.disks.length})`,
      );
    return disk.vdi;
  }

  async writeRandom(target: string, request: RandomWrite, position = 0): Promise<WriteResult> {
    const vdi = this.resolveVdi(target, position);
    const disk = this.pool.disks.get(vdi);
    const random = request.seed === undefined ? undefined : new SeededRandom(request.seed, 'workload', vdi);
    const content = (length: number, salt: number): Buffer =>
      request.seed === undefined
        ? randomBytes(length)
        : seededBytes(request.seed, `workload:${vdi}`, salt, length);
    const ranges: { offset: number; length: number }[] = [];
    if (request.blocks !== undefined) {
      const count = disk.blockCount;
      if (!Number.isSafeInteger(request.blocks) || request.blocks < 0 || request.blocks > count) {
        throw new SimulatorError('SIM_BAD_WRITE', `blocks must be between 0 and ${count} for ${vdi}`);
      }
      const chosen = new Set<number>();
      while (chosen.size < request.blocks)
        chosen.add(random === undefined ? Math.floor(Math.random() * count) : random.integer(count));
      for (const block of [...chosen].sort((a, b) => a - b)) {
        const offset = block * BLOCK_SIZE;
        const length = Math.min(BLOCK_SIZE, disk.virtualSize - offset);
        await disk.write(offset, content(length, block * (BLOCK_SIZE / 16)));
        ranges.push({ offset, length });
      }
    }
    if (request.bytes !== undefined) {
      const offset = request.offset ?? 0;
      if (
        !Number.isSafeInteger(request.bytes) ||
        request.bytes < 0 ||
        !Number.isSafeInteger(offset) ||
        offset < 0 ||
        offset + request.bytes > disk.virtualSize
      ) {
        throw new SimulatorError(
          'SIM_BAD_WRITE',
          `bytes=${request.bytes} at offset=${offset} does not fit in ${vdi} (${disk.virtualSize} bytes)`,
        );
      }
      // Written in 2 MiB pieces: memory stays bounded whatever the size.
      for (let done = 0; done < request.bytes; done += BLOCK_SIZE) {
        const length = Math.min(BLOCK_SIZE, request.bytes - done);
        await disk.write(offset + done, content(length, Math.floor((offset + done) / 16)));
      }
      if (request.bytes > 0) ranges.push({ offset, length: request.bytes });
    }
    this.pool.scheduleSave();
    return { vdi, ranges: ranges.sort((a, b) => a.offset - b.offset) };
  }

  /** Replaces a disk's whole content with a raw image (shorter images leave the rest zero). */
  async overwrite(
    target: string,
    image: AsyncIterable<Buffer> | Buffer | string,
    position = 0,
  ): Promise<{ vdi: string; bytes: number }> {
    const vdi = this.resolveVdi(target, position);
    const disk = this.pool.disks.get(vdi);
    const source: AsyncIterable<Buffer> | Iterable<Buffer> =
      typeof image === 'string'
        ? createReadStream(image, { highWaterMark: BLOCK_SIZE })
        : Buffer.isBuffer(image)
          ? [image]
          : image;
    await disk.discardAll();
    const block = Buffer.allocUnsafe(BLOCK_SIZE);
    let filled = 0;
    let offset = 0;
    const flush = async (): Promise<void> => {
      if (offset + filled > disk.virtualSize) {
        throw new SimulatorError(
          'SIM_IMAGE_TOO_LARGE',
          `image is larger than ${vdi} (${disk.virtualSize} bytes); resize the VDI first`,
        );
      }
      await disk.write(offset, block.subarray(0, filled));
      offset += filled;
      filled = 0;
    };
    for await (const chunk of source) {
      let at = 0;
      while (at < chunk.length) {
        const take = Math.min(BLOCK_SIZE - filled, chunk.length - at);
        chunk.copy(block, filled, at, at + take);
        filled += take;
        at += take;
        if (filled === BLOCK_SIZE) await flush();
      }
    }
    if (filled > 0) await flush();
    this.pool.scheduleSave();
    return { vdi, bytes: offset };
  }

  async hash(target: string, options: { blocks?: boolean } = {}, position = 0): Promise<DiskHash> {
    const vdi = this.resolveVdi(target, position);
    const disk = this.pool.disks.get(vdi);
    const whole = createHash('sha256');
    const blockHashes: string[] = [];
    const buffer = Buffer.allocUnsafe(BLOCK_SIZE);
    const zero = Buffer.alloc(BLOCK_SIZE);
    const zeroHash = createHash('sha256').update(zero).digest('hex');
    for (let block = 0; block < disk.blockCount; block++) {
      const length = Math.min(BLOCK_SIZE, disk.virtualSize - block * BLOCK_SIZE);
      const allocated = disk.slotOf(block) !== undefined;
      const data = allocated ? buffer : zero;
      if (allocated) await disk.readBlockInto(block, buffer);
      const piece = data.subarray(0, length);
      whole.update(piece);
      if (options.blocks === true) {
        blockHashes.push(
          !allocated && length === BLOCK_SIZE ? zeroHash : createHash('sha256').update(piece).digest('hex'),
        );
      }
    }
    return {
      vdi,
      virtualSize: disk.virtualSize,
      sha256: whole.digest('hex'),
      ...(options.blocks === true ? { blocks: blockHashes } : {}),
    };
  }

  setFaults(faults: Partial<PoolFaults>): PoolFaults {
    const current = this.pool.faults;
    if (faults.unreachable !== undefined) current.unreachable = faults.unreachable;
    if (faults.latencyMs !== undefined) current.latencyMs = Math.max(0, faults.latencyMs);
    if (faults.exportFailAfterBytes !== undefined) current.exportFailAfterBytes = faults.exportFailAfterBytes;
    if (faults.exportFailTimes !== undefined) current.exportFailTimes = faults.exportFailTimes;
    if (faults.bandwidthBytesPerSecond !== undefined)
      current.bandwidthBytesPerSecond = faults.bandwidthBytesPerSecond;
    return { ...current };
  }

  /** Changes a SR's capacity (to provoke SR_FULL). */
  setSrSize(sr: string, bytes: number): void {
    const ref =
      this.pool.store.find(sr)?.cls === 'SR'
        ? sr
        : this.pool.store
            .all('SR')
            .find((object) => object.record['name_label'] === sr || object.record['uuid'] === sr)?.ref;
    if (ref === undefined) throw new SimulatorError('SIM_NO_SUCH_SR', `no SR ${sr}`);
    this.pool.store.setField('SR', ref, 'physical_size', bytes);
  }
}
