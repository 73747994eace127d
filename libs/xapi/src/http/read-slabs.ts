import type { ChunkLender } from '@haven/vhd';

/** One slab: `used` bytes filled by reads, `out` chunks of it handed on and not given back. */
interface Slab {
  readonly memory: Buffer;
  used: number;
  out: number;
}

/** Slabs whose chunks all came back, kept to be filled again (beyond the one being filled). */
const SPARE_SLABS = 4;

/**
 * The memory a download's socket reads into: slabs of `slabBytes`, each read into the part not yet
 * filled, the body handed on as views of them. A slab whose every chunk the consumer has given
 * back (lent-chunks.ts: it copied them out) is filled again. A slab with chunks still out when a
 * read needs room is left to them (and to the garbage collector), and another taken.
 *
 * Without that reuse a 1 MiB slab per MiB received was garbage, freed only when V8 next collected:
 * tens of MiB per download at a time, more under CPU load (docs/benchmarks/jobs.md).
 */
export class ReadSlabs implements ChunkLender {
  private current: Slab;
  private readonly spare: Slab[] = [];
  /**
   * Every slab that may have chunks out, by its memory. Weak: a consumer that never gives chunks
   * back (it knows nothing of lending) holds its slabs alone, and they go when it drops them.
   */
  private readonly byMemory = new WeakMap<ArrayBufferLike, Slab>();

  constructor(
    private readonly slabBytes: number,
    /** A read is given at least this much room. */
    private readonly readRoom: number,
  ) {
    this.current = this.newSlab();
  }

  /** Where the next read lands: the unfilled part of the current slab. */
  nextReadBuffer(): Buffer {
    if (this.slabBytes - this.current.used < this.readRoom) {
      if (this.current.out === 0) this.current.used = 0;
      else this.current = this.spare.pop() ?? this.newSlab();
    }
    return this.current.memory.subarray(this.current.used);
  }

  /** A read of `length` bytes landed where nextReadBuffer said; returns them as a view. */
  filled(length: number): Buffer {
    const view = this.current.memory.subarray(this.current.used, this.current.used + length);
    this.current.used += length;
    return view;
  }

  /** `chunk`, a view of a slab, goes to the consumer: that slab is not filled again before it comes back. */
  lend(chunk: Buffer): void {
    const slab = this.byMemory.get(chunk.buffer);
    if (slab !== undefined) slab.out++;
  }

  giveBack(chunk: Buffer): void {
    const slab = this.byMemory.get(chunk.buffer);
    if (slab === undefined || slab.out === 0) return;
    slab.out--;
    if (slab.out > 0 || slab === this.current) return;
    slab.used = 0;
    if (this.spare.length < SPARE_SLABS) this.spare.push(slab);
    else this.byMemory.delete(slab.memory.buffer);
  }

  private newSlab(): Slab {
    const slab = { memory: Buffer.allocUnsafeSlow(this.slabBytes), used: 0, out: 0 };
    this.byMemory.set(slab.memory.buffer, slab);
    return slab;
  }
}
