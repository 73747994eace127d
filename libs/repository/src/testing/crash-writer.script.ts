// Child process of restore-point.crash.spec.ts: writes restore points in a loop until killed.
// argv: <remote folder> <key> <seed prefix>
import { openRepository } from '../repository';
import { blocksOf, localRemote, patternedDisk } from './disk-pattern.fixture';

async function main(): Promise<void> {
  const [path, key, prefix] = process.argv.slice(2) as [string, string, string];
  const repo = await openRepository(localRemote(path), { key });
  for (let round = 0; ; round++) {
    const seed = `${prefix}-${round}`;
    const disk = patternedDisk(seed, 12);
    const writer = await repo.createRestorePointWriter(
      { vm: { uuid: 'crash-vm', name: 'crash' }, attributes: { seed } },
      { sessionTtlMs: 400, concurrency: 3 },
    );
    process.stdout.write(`started ${writer.id}\n`);
    await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    const manifest = await writer.commit();
    process.stdout.write(`committed ${manifest.id}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
});
