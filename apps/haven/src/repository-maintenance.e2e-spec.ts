import { createHash } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type request from 'supertest';
import { plugin as localRemote } from '@haven/remote-local';
import { openRepository } from '@haven/repository';
import { buildCli } from '../../cli/src/haven.cli';
import { type BackupLab, type RunBody, startBackupLab } from './backup-lab.fixture';

const PASSPHRASE = 'maintenance passphrase';

/** Every chunk file of a local remote: id -> size. */
async function chunkFiles(root: string): Promise<Map<string, number>> {
  const files = new Map<string, number>();
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else files.set(entry.name, (await stat(path)).size);
    }
  };
  await walk(join(root, 'chunks'));
  return files;
}

/** Chunk ids the committed restore points of the remote reference, read from their indexes. */
async function referencedChunks(root: string): Promise<Set<string>> {
  const store = await localRemote.create({ path: root }, { name: 'check' });
  try {
    const repository = await openRepository(store, { key: PASSPHRASE });
    const referenced = new Set<string>();
    for (const { manifest } of await repository.listRestorePoints())
      for (const disk of manifest.disks)
        for (const id of (await repository.readDiskIndex(manifest, disk.key)).chunkIds())
          referenced.add(id.toString('hex'));
    return referenced;
  } finally {
    await store.close();
  }
}

describe('repository maintenance runs: gc after prune, gc and verify on demand', () => {
  let lab: BackupLab;
  let remoteRoot = '';
  const api = () => lab.api();
  const auth = (req: request.Test) => lab.auth(req);

  beforeAll(async () => {
    lab = await startBackupLab({ seed: 'maintenance', passphrase: PASSPHRASE });
    const remote = await auth(api().get(`/api/v1/remotes/${lab.remoteId}`)).expect(200);
    remoteRoot = remote.body.settings.path as string;
  }, 120_000);

  afterAll(async () => {
    await lab.close();
  });

  async function runsOfKind(
    kind: string,
  ): Promise<{ id: string; status: string; progress: { note?: string } }[]> {
    const runs = await auth(api().get('/api/v1/runs?limit=100')).expect(200);
    return (
      runs.body.items as { id: string; kind: string; status: string; progress: { note?: string } }[]
    ).filter((r) => r.kind === kind);
  }

  async function startAndWait(path: string, body: Record<string, unknown>): Promise<RunBody> {
    const started = await auth(api().post(path)).send(body).expect(202);
    return lab.waitForRun(started.body.runId as string);
  }

  it('prunes by keep-N retention, starts a gc run for the pruned remote, and an on-demand gc frees exactly the unreferenced chunks', async () => {
    const schedule = await auth(api().post('/api/v1/schedules'))
      .send({
        jobId: lab.jobId,
        name: 'keep one',
        cron: '0 3 * * *',
        timezone: 'UTC',
        retention: { keep: 1 },
      })
      .expect(201);
    // XAPI's snapshot times are to the second and a run against the simulator may take less: each
    // run gets its own minute on the simulator's clock (in the past: later backups stay newer).
    const start = Date.now() - 3 * 60_000;
    lab.simulator.setClock(new Date(start));
    const first = await lab.runJob({ scheduleId: schedule.body.id });
    expect(first.status).toBe('success');
    // Overwrite blocks, so the first restore point holds chunks the second does not.
    await lab.simulator.writeRandom(lab.vm.uuid, { blocks: 3, seed: 'prune' });
    const diskHash = (await lab.simulator.diskHash(lab.vm.uuid)).sha256;
    lab.simulator.setClock(new Date(start + 60_000));
    const second = await lab.runJob({ scheduleId: schedule.body.id });
    lab.simulator.setClock(null);
    expect(second.status).toBe('success');
    const points = await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200);
    expect(points.body.items.map((p: { runId: string }) => p.runId)).toEqual([second.id]);

    // The prune started a gc run of the remote; its 24 h safety window spares today's chunks.
    let gcRuns: Awaited<ReturnType<typeof runsOfKind>> = [];
    for (let i = 0; i < 100 && gcRuns.length === 0; i++) {
      gcRuns = await runsOfKind('gc');
      if (gcRuns.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(gcRuns).toHaveLength(1);
    const automatic = await lab.waitForRun(gcRuns[0]?.id ?? '');
    expect(automatic.status).toBe('success');
    expect(gcRuns[0]?.progress.note).toBe(`retention of run ${second.id} deleted restore points`);
    expect(automatic.tasks[0]?.result).toMatchObject({
      remoteId: lab.remoteId,
      freedChunks: 0,
      trashedChunks: 0,
    });

    const before = await chunkFiles(remoteRoot);
    const referenced = await referencedChunks(remoteRoot);
    const garbage = [...before.keys()].filter((id) => !referenced.has(id));
    expect(garbage.length).toBeGreaterThan(0);
    const garbageBytes = garbage.reduce((sum, id) => sum + (before.get(id) ?? 0), 0);

    const gc = await startAndWait(`/api/v1/remotes/${lab.remoteId}/gc`, { safetyWindowMinutes: 0 });
    expect(gc).toMatchObject({ status: 'success', kind: 'gc' });
    expect(gc.tasks[0]?.result).toMatchObject({ freedChunks: garbage.length, freedBytes: garbageBytes });
    const after = await chunkFiles(remoteRoot);
    expect([...after.keys()].sort()).toEqual([...referenced].sort());

    // What is left still restores: the raw disk equals the VM disk at the second backup.
    const pointId = points.body.items[0].id as string;
    const disks = await auth(api().get(`/api/v1/restore-points/${pointId}/disks`)).expect(200);
    const raw = await auth(
      api().get(`/api/v1/restore-points/${pointId}/disks/${disks.body.items[0].key}?format=raw`),
    )
      .buffer(true)
      .parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      })
      .expect(200);
    expect(
      createHash('sha256')
        .update(raw.body as Buffer)
        .digest('hex'),
    ).toBe(diskHash);

    // The gc's log says what it did.
    const logs = await auth(api().get(`/api/v1/runs/${gc.id}/logs`)).expect(200);
    const summary = `garbage collection on remote nas: ${garbage.length} chunk(s) freed (${garbageBytes} bytes), ${garbage.length} moved to trash`;
    expect(logs.body.items.map((l: { message: string }) => l.message)).toContain(summary);
    // The CLI prints the same log; --follow on an ended run stops after the stored lines.
    const printed: string[] = [];
    await buildCli((text) => printed.push(text), { HAVEN_URL: lab.baseUrl, HAVEN_KEY: lab.admin })
      .exitOverride()
      .parseAsync(['node', 'haven', 'runs', 'logs', gc.id, '--follow']);
    expect(printed).toHaveLength(logs.body.items.length);
    expect(printed.some((line) => line.endsWith(`INFO  remote nas: ${summary}`))).toBe(true);
  }, 180_000);

  it('verify names a chunk with a flipped byte and the restore point it breaks, marks it damaged, and clears the mark once repaired', async () => {
    const [point] = (await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200)).body
      .items as {
      id: string;
    }[];
    const referenced = [...(await referencedChunks(remoteRoot))].sort();
    const victim = referenced[0] ?? '';
    const file = join(remoteRoot, 'chunks', victim.slice(0, 2), victim.slice(2, 4), victim);
    const original = await readFile(file);
    const flipped = Buffer.from(original);
    const at = Math.floor(flipped.length / 2);
    flipped[at] = (flipped[at] ?? 0) ^ 0x01;
    await writeFile(file, flipped);

    // Through the CLI, following the run: the errors come under the progress lines.
    const lines: string[] = [];
    const cli = buildCli((text) => lines.push(text), {
      HAVEN_URL: lab.baseUrl,
      HAVEN_KEY: lab.admin,
    }).exitOverride();
    await cli.parseAsync(['node', 'haven', 'remotes', 'verify', lab.remoteId, '--follow']);
    const runId = /^Run (\S+) started/.exec(lines[0] ?? '')?.[1] ?? '';
    expect(lines.at(-1)).toBe(`Run ${runId}: success`);
    expect(lines.some((l) => l.includes('ERROR') && l.includes(`chunk ${victim} on remote nas is`))).toBe(
      true,
    );

    const verify = await lab.waitForRun(runId);
    expect(verify.kind).toBe('verify');
    const result = verify.tasks[0]?.result as {
      ok: boolean;
      damagedChunks: { chunkId: string }[];
      damagedRestorePoints: { label: string; chunks: { chunkId: string }[] }[];
    };
    expect(result.ok).toBe(false);
    expect(result.damagedChunks.map((c) => c.chunkId)).toEqual([victim]);
    expect(result.damagedRestorePoints).toHaveLength(1);
    expect(result.damagedRestorePoints[0]?.label).toContain(lab.vm.name);
    expect(result.damagedRestorePoints[0]?.chunks.map((c) => c.chunkId)).toEqual([victim]);

    // The remote itself records it, for the next backup to read.
    const record = JSON.parse(await readFile(join(remoteRoot, 'damage.json'), 'utf8')) as {
      restorePoints: string[];
      chunks: string[];
    };
    expect(record.chunks).toEqual([victim]);
    expect(record.restorePoints).toHaveLength(1);

    const marked = await auth(api().get(`/api/v1/restore-points/${point.id}`)).expect(200);
    expect(marked.body.damagedAt).not.toBeNull();
    expect(marked.body.damage).toMatchObject({ runId, chunks: [{ chunkId: victim }] });

    await writeFile(file, original);
    // Followed from its start with `haven runs logs --follow`: every line once, none lost between
    // the stored pages and the live stream.
    const again = await auth(api().post(`/api/v1/remotes/${lab.remoteId}/verify`))
      .send({})
      .expect(202);
    const followed: string[] = [];
    await buildCli((text) => followed.push(text), { HAVEN_URL: lab.baseUrl, HAVEN_KEY: lab.admin })
      .exitOverride()
      .parseAsync(['node', 'haven', 'runs', 'logs', again.body.runId, '--follow', '--json']);
    const clean = await lab.waitForRun(again.body.runId as string);
    let stored: string[] = [];
    for (let i = 0; i < 50 && stored.length < followed.length; i++) {
      const page = await auth(api().get(`/api/v1/runs/${clean.id}/logs`)).expect(200);
      stored = page.body.items.map((line: { message: string }) => line.message);
      if (stored.length < followed.length) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(followed.map((line) => (JSON.parse(line) as { message: string }).message)).toEqual(stored);
    expect(stored.at(-1)).toMatch(/^task finished in/);
    expect(clean.tasks[0]?.result).toMatchObject({ ok: true, damagedRestorePoints: [] });
    const cleared = await auth(api().get(`/api/v1/restore-points/${point.id}`)).expect(200);
    expect(cleared.body).toMatchObject({ damagedAt: null, damage: null });
    await expect(stat(join(remoteRoot, 'damage.json'))).rejects.toThrow(/ENOENT/);
  }, 120_000);

  it('refuses bad maintenance requests naming each field, and unknown remotes', async () => {
    const gc = await auth(api().post(`/api/v1/remotes/${lab.remoteId}/gc`))
      .send({ safetyWindowMinutes: -1, extra: true })
      .expect(400);
    expect(gc.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'extra',
      'safetyWindowMinutes',
    ]);
    const verify = await auth(api().post(`/api/v1/remotes/${lab.remoteId}/verify`))
      .send({ sample: 0 })
      .expect(400);
    expect(verify.body.errors.map((e: { field: string }) => e.field)).toEqual(['sample']);
    await auth(api().post('/api/v1/remotes/00000000-0000-4000-8000-000000000000/gc')).send({}).expect(404);
  });
});
