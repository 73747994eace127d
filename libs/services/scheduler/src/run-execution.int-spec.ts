import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { loadConfig } from '@haven/config';
import { CatalogModule, WaitingTaskSweep } from '@haven/service-catalog';
import { startHavenProcess } from '@haven/service-core';
import { GatewayModule, mountOpenApi } from '@haven/service-gateway';
import { TransferModule } from '@haven/service-transfer';
import { createTestDatabase, describeIntegration, scratchDir, uniqueName } from '@haven/testing';
import { RunLauncher } from './run.launcher';
import { SchedulerModule } from './scheduler.module';
import { gates } from './testing/gated-job.plugin';

/** Polls `check` until it holds (state changes across processes and the bus take a moment). */
async function until(what: string, check: () => boolean | Promise<boolean>, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(50);
  }
}

describeIntegration('run execution over NATS JetStream and Postgres', ['postgres', 'nats'], () => {
  let database: { url: string; drop: () => Promise<void> };
  let data: { path: string; cleanup: () => Promise<void> };
  let app: INestApplication;
  let db: DataSource;
  let baseUrl = '';
  let admin = '';
  let tenantId = '';
  const api = () => request(baseUrl);
  const auth = (req: request.Test, key = admin) => req.set('authorization', `Bearer ${key}`);

  beforeAll(async () => {
    database = await createTestDatabase('haven_exec');
    data = await scratchDir('haven-exec-');
    app = await startHavenProcess({
      roles: ['catalog', 'gateway', 'scheduler', 'transfer'],
      modules: [CatalogModule, GatewayModule, SchedulerModule, TransferModule],
      configure: mountOpenApi,
      config: loadConfig({
        HAVEN_PORT: '0',
        HAVEN_HOST: '127.0.0.1',
        HAVEN_DATA: data.path,
        DATABASE_URL: database.url,
        NATS_URL: process.env['HAVEN_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222',
        HAVEN_NATS_PREFIX: uniqueName('haven_exec'),
        HAVEN_MASTER_KEY: randomBytes(32).toString('hex'),
        // More worker slots than the run may use: the cap under test is the run's, not the worker's.
        HAVEN_WORKER_CONCURRENCY: '6',
        HAVEN_PLUGINS: join(__dirname, 'testing/gated-job.plugin.ts'),
        LOG_LEVEL: 'error',
      }),
    });
    baseUrl = await app.getUrl();
    admin = readFileSync(join(data.path, 'admin-key'), 'utf8').trim();
    db = app.get(DataSource);
    const tenants: { id: string }[] = await db.query('SELECT id FROM tenants WHERE is_system');
    tenantId = tenants[0]?.id ?? '';
  }, 120_000);

  afterAll(async () => {
    await app.close();
    await database.drop();
    await data.cleanup();
  });

  beforeEach(() => gates.reset());

  async function createJob(vms: string[], settings: Record<string, unknown>): Promise<string> {
    const id = randomUUID();
    await db.query(
      `INSERT INTO jobs (id, tenant_id, name, type, selection, remote_ids, settings)
       VALUES ($1, $2, $3, 'test.gated', $4, '{}', $5)`,
      [id, tenantId, uniqueName('job'), JSON.stringify({ mode: 'explicit', vms }), JSON.stringify(settings)],
    );
    return id;
  }

  async function startRun(jobId: string): Promise<string> {
    const started = await auth(api().post(`/api/v1/jobs/${jobId}/run`))
      .send({})
      .expect(202);
    return started.body.runId as string;
  }

  async function run(runId: string) {
    return (await auth(api().get(`/api/v1/runs/${runId}`)).expect(200)).body as {
      status: string;
      taskConcurrency: number | null;
      tasks: { id: string; subject: string; status: string; queuedAt: string | null }[];
    };
  }

  it('keeps at most taskConcurrency tasks of a run executing, queues the next as one ends, and completes all', async () => {
    const vms = ['vm-a', 'vm-b', 'vm-c', 'vm-d'];
    const runId = await startRun(await createJob(vms, { parallel: 2 }));
    await until('two tasks running', () => gates.running.size === 2);
    let state = await run(runId);
    expect(state.taskConcurrency).toBe(2);
    expect(state.tasks.filter((t) => t.queuedAt === null)).toHaveLength(2);

    // Each time one ends, exactly one more starts; never more than two at once.
    for (let ended = 0; ended < vms.length; ended++) {
      const next = gates.started.at(ended);
      if (next === undefined) throw new Error(`task ${ended + 1} never started`);
      gates.open(next);
      const expectedStarted = Math.min(vms.length, ended + 3);
      await until(`${expectedStarted} tasks started`, () => gates.started.length === expectedStarted);
      expect(gates.running.size).toBeLessThanOrEqual(2);
    }
    await until('the run ends', async () => (await run(runId)).status !== 'running');
    state = await run(runId);
    expect(state.status).toBe('success');
    expect(state.tasks.map((t) => t.status)).toEqual(['success', 'success', 'success', 'success']);
    expect(gates.maxRunning).toBe(2);
    expect([...gates.started].sort()).toEqual(vms);
  });

  it('queues every task at once when the job type sets no cap', async () => {
    const vms = ['vm-1', 'vm-2', 'vm-3'];
    const runId = await startRun(await createJob(vms, {}));
    await until('three tasks running', () => gates.running.size === 3);
    expect((await run(runId)).taskConcurrency).toBeNull();
    for (const vm of vms) gates.open(vm);
    await until('the run ends', async () => (await run(runId)).status === 'success');
  });

  it('has the sweep queue a task left waiting with a free slot (a dispatch lost in a crash)', async () => {
    const runId = await startRun(await createJob(['vm-x', 'vm-y'], { parallel: 1 }));
    await until('one task running', () => gates.running.size === 1);
    // What a catalog that died between a task's end and the next dispatch leaves behind: a run
    // whose one slot is free (its running task is marked ended) and a task still waiting.
    const first = gates.started[0] ?? '';
    const tasks = (await run(runId)).tasks;
    const running = tasks.find((t) => t.subject === first);
    await db.query(`UPDATE tasks SET status = 'success', finished_at = now() WHERE id = $1`, [running?.id]);
    const sweep = app.get(WaitingTaskSweep);
    // The app's own 10 s sweep may get there first: either way exactly one sweep queues the task,
    // and without a working sweep the task below never starts.
    expect([0, 1]).toContain(await sweep.sweep());
    await until('the waiting task started', () => gates.started.length === 2);
    expect(await sweep.sweep()).toBe(0);
    gates.open('vm-x');
    gates.open('vm-y');
    await until('the run ends', async () => (await run(runId)).status === 'success');
  });

  it('refuses a VM that another running run is backing up, naming that run, and frees it when that run ends', async () => {
    const holderJob = await createJob(['vm-shared', 'vm-own'], { lock: true });
    const holder = await startRun(holderJob);
    await until('the holding run runs both', () => gates.running.size === 2);

    // Every VM of the run is taken: the run fails at once, its task never queued.
    const refused = await startRun(await createJob(['vm-shared'], { lock: true }));
    await until('the refused run ends', async () => (await run(refused)).status !== 'running');
    const refusedState = (await auth(api().get(`/api/v1/runs/${refused}`)).expect(200)).body as {
      status: string;
      error: string | null;
      tasks: { status: string; error: string | null; queuedAt: string | null }[];
    };
    expect(refusedState.status).toBe('failure');
    expect(refusedState.tasks).toHaveLength(1);
    expect(refusedState.tasks[0]?.status).toBe('failure');
    expect(refusedState.tasks[0]?.error).toContain(`vm-shared is already being backed up by run ${holder}`);
    expect(refusedState.error).toContain(holder);
    expect(gates.started.filter((vm) => vm === 'vm-shared')).toHaveLength(1);

    // One VM taken, one free: the free one is backed up, the run ends partial.
    const mixed = await startRun(await createJob(['vm-shared', 'vm-free'], { lock: true }));
    await until('the free VM started', () => gates.started.includes('vm-free'));
    gates.open('vm-free');
    await until('the mixed run ends', async () => (await run(mixed)).status !== 'running');
    const mixedState = await run(mixed);
    expect(mixedState.status).toBe('partial');
    expect(mixedState.tasks.find((t) => t.subject === 'vm-shared')?.status).toBe('failure');

    // Once the holding run ends, the VM is free again.
    gates.open('vm-shared');
    gates.open('vm-own');
    await until('the holding run ends', async () => (await run(holder)).status === 'success');
    const after = await startRun(await createJob(['vm-shared'], { lock: true }));
    await until('the VM is backed up again', async () => (await run(after)).status === 'success');
  });

  it("takes every VM's lock in sorted order while it writes a run, waiting for one another launch holds", async () => {
    const [first, second] = [uniqueName('vm-a'), uniqueName('vm-b')];
    const keyOf = async (vm: string): Promise<string> => {
      const rows = await db.query<{ key: string }[]>(`SELECT hashtextextended($1, 0)::text AS key`, [
        `vm:${vm}`,
      ]);
      return rows[0]?.key ?? '';
    };
    const [firstKey, secondKey] = [await keyOf(first), await keyOf(second)];
    /** Advisory locks on these keys, as `key granted|waiting`, from every session but this test's. */
    const advisory = async (): Promise<string[]> => {
      const rows: { key: string; granted: boolean }[] = await db.query(
        `SELECT ((classid::bigint << 32) | objid::bigint)::text AS key, granted FROM pg_locks
         WHERE locktype = 'advisory' AND objsubid = 1 AND pid <> pg_backend_pid()`,
      );
      return rows
        .filter((row) => row.key === firstKey || row.key === secondKey)
        .map((row) => `${row.key === firstKey ? first : second} ${row.granted ? 'granted' : 'waiting'}`)
        .sort();
    };
    // Another launch's transaction holds the second VM's lock.
    const holder = db.createQueryRunner();
    await holder.connect();
    await holder.startTransaction();
    try {
      await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`vm:${second}`]);
      const launch = startRun(await createJob([second, first], { lock: true }));
      // The launch took the first VM's lock (sorted first) and waits for the second: every key, in order.
      await until('the launch waits for the held lock', async () => (await advisory()).length === 3);
      expect(await advisory()).toEqual([`${first} granted`, `${second} granted`, `${second} waiting`]);
      await holder.commitTransaction();
      const runId = await launch;
      await until(
        'both tasks started',
        () => gates.started.includes(first) && gates.started.includes(second),
      );
      // The locks end with the launch's transaction; the tasks hold the VMs from now on.
      expect(await advisory()).toEqual([]);
      gates.open(first);
      gates.open(second);
      await until('the run ends', async () => (await run(runId)).status === 'success');
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }
  });

  it('stores what executors and workers log, pages it, filters it and keeps it to its tenant', async () => {
    const vms = ['vm-l1', 'vm-l2'];
    for (const vm of vms) gates.open(vm);
    const runId = await startRun(await createJob(vms, { chatter: 3 }));
    await until('the run ends', async () => (await run(runId)).status === 'success');
    const { tasks } = await run(runId);
    // Lines may reach the catalog a moment after the run's end.
    const all = async () =>
      (await auth(api().get(`/api/v1/runs/${runId}/logs?limit=500`)).expect(200)).body as {
        items: {
          id: string;
          taskId: string | null;
          level: string;
          message: string;
          fields: Record<string, unknown>;
        }[];
        nextCursor?: string;
      };
    await until('every line stored', async () => (await all()).items.length === 1 + 2 * 7);
    const lines = (await all()).items;
    // The run's own line (no task), then each task's.
    expect(lines.filter((l) => l.taskId === null).map((l) => l.message)).toEqual([
      expect.stringMatching(/^run of job "job_\S+" started \(manual\): 2 task\(s\), all at once$/),
    ]);
    expect(lines.map((l) => l.id)).toEqual([...lines.map((l) => l.id)].sort((a, b) => Number(a) - Number(b)));
    for (const task of tasks) {
      const own = lines.filter((l) => l.taskId === task.id).map((l) => l.message);
      expect(own[0]).toMatch(/^attempt 1 of 3 started on worker /);
      expect(own.slice(1, 5)).toEqual([`backing up ${task.subject}`, 'chatter 0', 'chatter 1', 'chatter 2']);
      expect(own[5]).toBe(`${task.subject} has a disk bigger than its SR's free space`);
      expect(own[6]).toMatch(/^task finished in \d+\.\d s$/);
    }
    expect(lines.find((l) => l.message === 'backing up vm-l1')?.fields).toEqual({
      vm: 'vm-l1',
      mode: 'full',
      reason: 'no-base-snapshot',
    });

    const warnings = await auth(api().get(`/api/v1/runs/${runId}/logs?level=warn`)).expect(200);
    expect(warnings.body.items.map((l: { level: string }) => l.level)).toEqual(['warn', 'warn']);

    // Pages of 5 cover every line once, in order.
    const paged: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await auth(
        api().get(`/api/v1/runs/${runId}/logs?limit=5${cursor ? `&cursor=${cursor}` : ''}`),
      ).expect(200);
      paged.push(...page.body.items.map((l: { id: string }) => l.id));
      cursor = page.body.nextCursor as string | undefined;
    } while (cursor);
    expect(paged).toEqual(lines.map((l) => l.id));

    const bad = await auth(api().get(`/api/v1/runs/${runId}/logs?limit=0&level=loud&cursor=%%`)).expect(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'cursor',
      'level',
      'limit',
    ]);

    const other = await auth(api().post('/api/v1/tenants'))
      .send({ name: uniqueName('other') })
      .expect(201);
    const otherKey = await auth(api().post('/api/v1/api-keys'))
      .send({ name: 'reader', role: 'viewer', tenantId: other.body.id })
      .expect(201);
    await auth(api().get(`/api/v1/runs/${runId}/logs`), otherKey.body.key as string).expect(404);

    const openApi = await api().get('/api/docs-json').expect(200);
    expect(Object.keys(openApi.body.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/runs/{id}/logs',
        '/api/v1/remotes/{id}/gc',
        '/api/v1/remotes/{id}/verify',
      ]),
    );

    // Deleting the run deletes its log.
    await db.query('DELETE FROM runs WHERE id = $1', [runId]);
    expect(await db.query('SELECT count(*)::int AS n FROM run_logs WHERE run_id = $1', [runId])).toEqual([
      { n: 0 },
    ]);
  });

  it("streams log lines on the run's SSE stream as `log` events", async () => {
    const runId = await startRun(await createJob(['vm-s'], {}));
    await until('the task running', () => gates.running.size === 1);
    // The lines said before the stream opens are stored; the stream carries the ones after.
    await until('the first lines stored', async () => {
      const stored = await auth(api().get(`/api/v1/runs/${runId}/logs`)).expect(200);
      return stored.body.items.length === 3;
    });
    const events: { event: string; data: { level?: string; message?: string; status?: string } }[] = [];
    const response = await fetch(`${baseUrl}/api/v1/runs/${runId}/events`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    const reading = (async () => {
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
      }
    })();
    await until('the stream opened', () => events.some((e) => e.event === 'run'));
    gates.open('vm-s');
    await reading;
    const logs = events.filter((e) => e.event === 'log').map((e) => e.data.message);
    expect(logs).toEqual([
      "vm-s has a disk bigger than its SR's free space",
      expect.stringMatching(/^task finished in/),
    ]);
  });

  describe('planning failures', () => {
    type RunRow = {
      id: string;
      trigger: string;
      status: string;
      error: string | null;
      progress: Record<string, unknown>;
    };
    const runsOf = async (jobId: string): Promise<RunRow[]> =>
      (await auth(api().get(`/api/v1/runs?jobId=${jobId}&limit=20`)).expect(200)).body.items as RunRow[];
    const logsOf = async (
      runId: string,
    ): Promise<{ level: string; message: string; taskId: string | null }[]> =>
      (await auth(api().get(`/api/v1/runs/${runId}/logs?limit=100`)).expect(200)).body.items;

    it("plans again, per the job's retries, when the pool does not answer, and logs each failed attempt", async () => {
      gates.open('vm-p1');
      const jobId = await createJob(['vm-p1'], { silentPlans: 2, retries: 2 });
      const runId = await startRun(jobId);
      expect(gates.plans.get(jobId)).toBe(3);
      await until('the run ends', async () => (await run(runId)).status === 'success');
      await until('the attempts logged', async () => (await logsOf(runId)).length >= 3);
      expect((await logsOf(runId)).slice(0, 3).map((line) => [line.level, line.message])).toEqual([
        ['warn', 'planning attempt 1 failed, retrying: pool "gated-pool" did not answer (plan 1)'],
        ['warn', 'planning attempt 2 failed, retrying: pool "gated-pool" did not answer (plan 2)'],
        ['info', expect.stringMatching(/^run of job "job_\S+" started \(manual\)/)],
      ]);
    });

    it('fails a manual start after its retries, answering 502 naming the pool, and lists the failed run with every attempt', async () => {
      const jobId = await createJob(['vm-p2'], { silentPlans: 5, retries: 1 });
      const refused = await auth(api().post(`/api/v1/jobs/${jobId}/run`))
        .send({})
        .expect(502);
      expect(gates.plans.get(jobId)).toBe(2);
      expect(refused.body.detail).toContain('pool "gated-pool" did not answer (plan 2)');
      const runs = await runsOf(jobId);
      expect(runs).toHaveLength(1);
      expect(runs[0]).toMatchObject({ trigger: 'manual', status: 'failure' });
      expect(runs[0]?.error).toContain('pool "gated-pool" did not answer (plan 2) (after 2 attempts)');
      expect(refused.body.detail).toContain(`run ${runs[0]?.id ?? ''} records it`);
      await until('the attempts logged', async () => (await logsOf(runs[0]?.id ?? '')).length === 2);
      expect((await logsOf(runs[0]?.id ?? '')).map((line) => [line.level, line.message])).toEqual([
        ['warn', 'planning attempt 1 failed, retrying: pool "gated-pool" did not answer (plan 1)'],
        ['error', expect.stringContaining('did not answer (plan 2) (after 2 attempts)')],
      ]);
      expect(
        await db.query(
          'SELECT count(*)::int AS n FROM tasks t JOIN runs r ON r.id = t.run_id WHERE r.job_id = $1',
          [jobId],
        ),
      ).toEqual([{ n: 0 }]);
    });

    it("answers 409 for a plan the job's own configuration fails (no pool involved), listing the failed run", async () => {
      const jobId = await createJob(['vm-p6'], {
        refusedPlan: 'job selection pools "prod-*" matches no pool',
      });
      const refused = await auth(api().post(`/api/v1/jobs/${jobId}/run`))
        .send({})
        .expect(409);
      expect(refused.body.detail).toContain('matches no pool');
      expect(await runsOf(jobId)).toMatchObject([{ trigger: 'manual', status: 'failure' }]);
    });

    it('records a task the planner failed, runs the others, and ends a run whose every task failed at planning', async () => {
      gates.open('vm-p3');
      const mixed = await startRun(await createJob(['vm-p3', 'vm-p4'], { failedAtPlan: ['vm-p4'] }));
      await until('the run ends', async () => (await run(mixed)).status !== 'running');
      const state = await run(mixed);
      expect(state.status).toBe('partial');
      expect(state.tasks.map((task) => [task.subject, task.status]).sort()).toEqual([
        ['vm-p3', 'success'],
        ['vm-p4', 'failure'],
      ]);
      expect(gates.started).toEqual(['vm-p3']);
      const none = await startRun(await createJob(['vm-p5'], { failedAtPlan: ['vm-p5'] }));
      await until('the run ends', async () => (await run(none)).status !== 'running');
      const ended = (await auth(api().get(`/api/v1/runs/${none}`)).expect(200)).body as RunRow;
      expect(ended).toMatchObject({ status: 'failure', error: 'pool "gated-pool" of vm-p5 did not answer' });
    });

    it('lists a scheduled run whose selection matches no VM, as a success warning that it selects none', async () => {
      const jobId = await createJob([], {});
      await expect(app.get(RunLauncher).start({ tenantId, jobId, trigger: 'schedule' })).rejects.toThrow(
        'selects no VM right now',
      );
      const runs = await runsOf(jobId);
      expect(runs).toHaveLength(1);
      expect(runs[0]).toMatchObject({ trigger: 'schedule', status: 'success', error: null });
      expect(runs[0]?.progress).toMatchObject({
        tasks: 0,
        warning: expect.stringContaining('selects no VM'),
      });
      await until('the warning logged', async () => (await logsOf(runs[0]?.id ?? '')).length === 1);
      expect((await logsOf(runs[0]?.id ?? ''))[0]).toMatchObject({
        level: 'warn',
        message: expect.stringContaining('selects no VM right now; nothing was backed up'),
      });
      // By hand, the caller is told instead; no run is listed.
      await auth(api().post(`/api/v1/jobs/${jobId}/run`))
        .send({})
        .expect(409);
      expect(await runsOf(jobId)).toHaveLength(1);
    });
  });
});
