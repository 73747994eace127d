import type { VhdStreamBlock } from '@haven/vhd';
import { exclusiveFrame } from './disk.transfer';

describe('exclusiveFrame', () => {
  const frame = Buffer.alloc(32);
  const block: VhdStreamBlock = {
    type: 'block',
    index: 3,
    bitmap: Buffer.alloc(512, 0xff),
    data: frame.subarray(16),
    frame,
    release: () => undefined,
  };

  it('leaves a block its frame when one writer takes it', () => {
    expect(exclusiveFrame(block, 1)).toBe(block);
  });

  it('takes the frame away when several writers share the block (they only read it)', () => {
    const shared = exclusiveFrame(block, 2);
    expect(shared.frame).toBeUndefined();
    expect('frame' in shared).toBe(false);
    expect(shared).toMatchObject({
      index: 3,
      data: block.data,
      release: block.release,
      bitmap: block.bitmap,
    });
    // The block itself is left as it was.
    expect(block.frame).toBe(frame);
  });
});
