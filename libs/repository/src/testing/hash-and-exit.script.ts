// Run by chunk-id.hasher.spec.ts in a process of its own: one id from the hashing thread, printed,
// and nothing else to keep the process alive. It must print the id and then exit by itself.
import { sharedChunkIdHasher } from '../chunk-id.hasher';

void sharedChunkIdHasher(2 * 1024 * 1024)
  .idOf(Buffer.alloc(1000, 7))
  .then((id) => process.stdout.write(`${id.toString('hex')}\n`));
