import { allocatePageAligned, isPageAligned } from '@haven/remote-sdk';
import { BufferPool, sharedPageAlignedPool } from './buffer.pool';

describe('BufferPool', () => {
  it('lends buffers of its size and reuses released ones', () => {
    const pool = new BufferPool(1024, 2);
    const first = pool.acquire();
    expect(first.length).toBe(1024);
    expect(pool.inUse).toBe(1);
    pool.release(first);
    expect(pool.inUse).toBe(0);
    expect(pool.idle).toBe(1);
    const again = pool.acquire();
    expect(again.buffer).toBe(first.buffer);
    expect(pool.idle).toBe(0);
  });

  it('takes back a view of the start of a lent buffer (an object sealed into it)', () => {
    const pool = new BufferPool(1024, 1);
    const lent = pool.acquire();
    pool.release(lent.subarray(0, 100));
    const again = pool.acquire();
    expect(again.buffer).toBe(lent.buffer);
    expect(again.length).toBe(1024);
  });

  it('keeps at most `capacity` idle buffers', () => {
    const pool = new BufferPool(64, 2);
    const lent = [pool.acquire(), pool.acquire(), pool.acquire()];
    expect(new Set(lent.map((buffer) => buffer.buffer)).size).toBe(3);
    for (const buffer of lent) pool.release(buffer);
    expect(pool.idle).toBe(2);
    expect(pool.inUse).toBe(0);
  });

  it('refuses buffers it did not lend and double releases', () => {
    const pool = new BufferPool(64, 2);
    expect(() => pool.release(Buffer.allocUnsafeSlow(128))).toThrow(/not lent by this pool of 64-byte/);
    const lent = pool.acquire();
    expect(() => pool.release(lent.subarray(8))).toThrow(/at offset 8/);
    pool.release(lent);
    expect(() => pool.release(lent)).toThrow(/released twice/);
  });

  it('rejects a size or capacity that is not a positive integer', () => {
    expect(() => new BufferPool(0, 1)).toThrow(/size must be a positive integer, got 0/);
    expect(() => new BufferPool(16, 1.5)).toThrow(/capacity must be a positive integer, got 1.5/);
  });
});

describe('BufferPool with an allocator', () => {
  it('lends what the allocator makes, and takes back views of their start', () => {
    const made: Buffer[] = [];
    const pool = new BufferPool(1000, 1, (size) => {
      const buffer = allocatePageAligned(size);
      made.push(buffer);
      return buffer;
    });
    const lent = pool.acquire();
    expect(lent).toBe(made[0]);
    pool.release(lent.subarray(0, 10));
    expect(pool.acquire().buffer).toBe(lent.buffer);
    expect(made).toHaveLength(1);
  });

  it('refuses an allocator whose buffers are not the start of their memory', () => {
    const pool = new BufferPool(64, 1, (size) => Buffer.allocUnsafeSlow(size + 8).subarray(8));
    expect(() => pool.acquire()).toThrow(/made 64 bytes at offset 8/);
  });
});

describe('sharedPageAlignedPool', () => {
  it('is one pool per size for the whole process, of buffers a direct write can take', () => {
    const pool = sharedPageAlignedPool(3000);
    expect(sharedPageAlignedPool(3000)).toBe(pool);
    expect(sharedPageAlignedPool(3001)).not.toBe(pool);
    const buffer = pool.acquire();
    expect(isPageAligned(buffer.subarray(0, 100))).toBe(true);
    pool.release(buffer);
  });
});
