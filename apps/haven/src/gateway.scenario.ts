import { existsSync, statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { createTenantAdmin } from '@haven/testing';
import { buildCli } from '../../cli/src/haven.cli';
import { GatewayClient } from '../../cli/src/gateway.client';

/**
 * The gateway behaviour every deployment must show (embedded and distributed): run by both
 * end-to-end suites against a base URL and the data folder where the admin key was written.
 */
export function gatewayScenario(
  context: () => { baseUrl: string; dataDir: string; remoteFolder: string },
): void {
  let admin: string;
  const api = () => request(context().baseUrl);
  const ids: Record<string, string> = {};
  const keys: Record<string, string> = {};

  beforeAll(() => {
    const file = join(context().dataDir, 'admin-key');
    admin = readFileSync(file, 'utf8').trim();
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('answers /health and /metrics without a key and requires one for the API', async () => {
    const health = await api().get('/health').expect(200);
    expect(health.body).toMatchObject({
      status: 'ok',
      checks: { database: { ok: true }, bus: { ok: true } },
    });
    const metrics = await api().get('/metrics').expect(200);
    expect(metrics.text).toContain('haven_http_requests_total');
    const denied = await api().get('/api/v1/pools').expect(401);
    expect(denied.headers['content-type']).toContain('application/problem+json');
    expect(denied.body.detail).toMatch(/Authorization: Bearer/);
    await api().get('/api/v1/pools').set('authorization', 'Bearer hvn_nonsense').expect(401);
  });

  it('publishes an OpenAPI document of the v1 resources', async () => {
    const doc = await api().get('/api/docs-json').expect(200);
    for (const path of [
      '/api/v1/tenants',
      '/api/v1/api-keys',
      '/api/v1/pools',
      '/api/v1/remotes',
      '/api/v1/jobs',
      '/api/v1/schedules',
      '/api/v1/runs',
      '/api/v1/tasks',
      '/api/v1/restore-points',
    ])
      expect(Object.keys(doc.body.paths)).toContain(path);
    // Every process's own routes are not part of the API.
    expect(Object.keys(doc.body.paths)).not.toContain('/health');
    expect(Object.keys(doc.body.paths)).not.toContain('/metrics');
    expect(
      doc.body.paths['/api/v1/pools'].post.requestBody.content['application/json'].schema.required,
    ).toEqual(['name', 'url', 'username', 'password']);
  });

  it('lets the system admin create tenants and their admin keys', async () => {
    for (const name of ['acme', 'globex']) {
      const created = await createTenantAdmin(context().baseUrl, admin, name);
      ids[name] = created.tenantId;
      expect(created.key).toMatch(/^hvn_/);
      keys[name] = created.key;
    }
    await api()
      .post('/api/v1/tenants')
      .set('authorization', `Bearer ${admin}`)
      .send({ name: 'acme' })
      .expect(409);
    // A tenant admin is not a system admin.
    await api().get('/api/v1/tenants').set('authorization', `Bearer ${keys['acme']}`).expect(403);
  });

  it('creates pool, remote, job and schedule in a tenant, never returning secrets', async () => {
    const acme = (req: request.Test) => req.set('authorization', `Bearer ${keys['acme']}`);
    const pool = await acme(api().post('/api/v1/pools'))
      .send({ name: 'lab', url: 'http://127.0.0.1:9', username: 'root', password: 'pool-s3cret-pw' })
      .expect(201);
    ids['pool'] = pool.body.id;
    expect(pool.body).toMatchObject({ name: 'lab', hasPassword: true });
    const remote = await acme(api().post('/api/v1/remotes'))
      .send({
        name: 'nas',
        type: 'local',
        settings: { path: context().remoteFolder },
        encryption: { passphrase: 'repo-passphrase-123' },
      })
      .expect(201);
    ids['remote'] = remote.body.id;
    expect(remote.body).toMatchObject({
      type: 'local',
      encrypted: true,
      settings: { path: context().remoteFolder },
    });
    const job = await acme(api().post('/api/v1/jobs'))
      .send({
        name: 'nightly',
        type: 'example.echo',
        selection: { poolId: ids['pool'], mode: 'explicit', vms: ['vm-1', 'vm-2'] },
        remoteIds: [ids['remote']],
        // Steps long enough that a follower connecting after the start still sees a task running.
        settings: { message: 'hello', stepMs: 250 },
      })
      .expect(201);
    ids['job'] = job.body.id;
    const schedule = await acme(api().post('/api/v1/schedules'))
      .send({
        jobId: ids['job'],
        name: 'every night',
        cron: '0 2 * * *',
        timezone: 'Europe/Paris',
        retention: { keep: 7 },
      })
      .expect(201);
    expect(new Date(schedule.body.nextFireAt).getTime()).toBeGreaterThan(Date.now());

    const everything = [
      await acme(api().get('/api/v1/pools')).expect(200),
      await acme(api().get(`/api/v1/pools/${ids['pool']}`)).expect(200),
      await acme(api().get('/api/v1/remotes')).expect(200),
      await acme(api().get('/api/v1/jobs')).expect(200),
      await acme(api().get('/api/v1/api-keys')).expect(200),
    ]
      .map((r) => r.text)
      .join('\n');
    for (const secret of ['pool-s3cret-pw', 'repo-passphrase-123', keys['acme'].slice(40)])
      expect(everything).not.toContain(secret);
  });

  it('updates a remote: the fields given change, the rest (encryption, repository id) stays', async () => {
    const acme = (req: request.Test) => req.set('authorization', `Bearer ${keys['acme']}`);
    const before = await acme(api().get(`/api/v1/remotes/${ids['remote']}`)).expect(200);
    const renamed = await acme(api().patch(`/api/v1/remotes/${ids['remote']}`))
      .send({ name: 'nas-renamed', settings: { path: context().remoteFolder } })
      .expect(200);
    expect(renamed.body).toMatchObject({
      name: 'nas-renamed',
      encrypted: true,
      enabled: true,
      settings: { path: context().remoteFolder },
      repositoryId: before.body.repositoryId,
    });
    const disabled = await acme(api().patch(`/api/v1/remotes/${ids['remote']}`))
      .send({ enabled: false, name: 'nas' })
      .expect(200);
    expect(disabled.body).toMatchObject({ name: 'nas', enabled: false, encrypted: true });
    await acme(api().patch(`/api/v1/remotes/${ids['remote']}`))
      .send({ enabled: true })
      .expect(200);
  });

  it('hides one tenant from another: 404, never 403', async () => {
    const globex = (req: request.Test) => req.set('authorization', `Bearer ${keys['globex']}`);
    for (const path of [
      `/api/v1/pools/${ids['pool']}`,
      `/api/v1/remotes/${ids['remote']}`,
      `/api/v1/jobs/${ids['job']}`,
    ]) {
      const response = await globex(api().get(path)).expect(404);
      expect(response.headers['content-type']).toContain('application/problem+json');
    }
    await globex(api().delete(`/api/v1/pools/${ids['pool']}`)).expect(404);
    expect((await globex(api().get('/api/v1/pools')).expect(200)).body.items).toEqual([]);
    // A job in globex cannot point at acme's pool or remote.
    const response = await globex(api().post('/api/v1/jobs'))
      .send({
        name: 'steal',
        type: 'example.echo',
        settings: { message: 'x' },
        selection: { poolId: ids['pool'], mode: 'explicit', vms: ['x'] },
        remoteIds: [ids['remote']],
      })
      .expect(400);
    expect(response.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'remoteIds',
      'selection.poolId',
    ]);
  });

  it('answers bad bodies with a 400 naming every bad field', async () => {
    const acme = (req: request.Test) => req.set('authorization', `Bearer ${keys['acme']}`);
    const pool = await acme(api().post('/api/v1/pools')).send({ url: 'ftp://x', extra: 1 }).expect(400);
    expect(pool.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'extra',
      'name',
      'password',
      'url',
      'username',
    ]);
    const schedule = await acme(api().post('/api/v1/schedules'))
      .send({
        jobId: ids['job'],
        name: 's',
        cron: 'every tuesday',
        timezone: 'Mars/Olympus',
        retention: { keep: 0 },
      })
      .expect(400);
    expect(schedule.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['retention.keep']);
    const timing = await acme(api().post('/api/v1/schedules'))
      .send({
        jobId: ids['job'],
        name: 's',
        cron: 'every tuesday',
        timezone: 'Mars/Olympus',
        retention: { keep: 3, gfs: { daily: 7 } },
      })
      .expect(400);
    expect(timing.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'cron',
      'retention',
      'timezone',
    ]);
    const job = await acme(api().post('/api/v1/jobs'))
      .send({
        name: 'j',
        type: 'example.echo',
        selection: { poolId: ids['pool'], mode: 'explicit', vms: [] },
        remoteIds: [ids['remote']],
        settings: { steps: 0, colour: 'red' },
      })
      .expect(400);
    expect(job.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'selection.vms',
      'settings.colour',
      'settings.message',
      'settings.steps',
    ]);
    const remote = await acme(api().post('/api/v1/remotes'))
      .send({ name: 'r', type: 'tape', settings: {} })
      .expect(400);
    expect(remote.body.errors).toEqual([
      { field: 'type', message: expect.stringContaining('is not an installed remote type') },
    ]);
    const missing = await acme(api().post('/api/v1/remotes'))
      .send({ name: 'r', type: 'local', settings: {} })
      .expect(400);
    expect(missing.body.errors).toEqual([{ field: 'settings.path', message: 'is required' }]);
    const unreachable = await acme(api().post('/api/v1/remotes')).send({
      name: 'r',
      type: 'local',
      settings: { path: '/dev/null/not-a-folder' },
    });
    expect(unreachable.status).toBe(422);
    expect(unreachable.body.detail).toContain('Remote "r"');
    // A folder that does not exist yet is refused, not created (it may be a share not mounted).
    const notYet = join(context().remoteFolder, 'not-yet', 'haven');
    const absent = await acme(api().post('/api/v1/remotes')).send({
      name: 'r',
      type: 'local',
      settings: { path: notYet },
    });
    expect(absent.status).toBe(422);
    expect(absent.body.detail).toContain(`the remote's folder ${notYet} does not exist`);
    expect(existsSync(join(context().remoteFolder, 'not-yet'))).toBe(false);
    await acme(api().post('/api/v1/pools'))
      .set('content-type', 'application/json')
      .send('{"name":')
      .expect(400);
  });

  it('enforces roles: a viewer reads but cannot change anything', async () => {
    const created = await api()
      .post('/api/v1/api-keys')
      .set('authorization', `Bearer ${keys['acme']}`)
      .send({ name: 'auditor', role: 'viewer' })
      .expect(201);
    const viewer = (req: request.Test) => req.set('authorization', `Bearer ${created.body.key}`);
    await viewer(api().get('/api/v1/jobs')).expect(200);
    const denied = await viewer(api().post('/api/v1/jobs')).send({}).expect(403);
    expect(denied.body.detail).toContain('operator');
    await viewer(api().delete(`/api/v1/pools/${ids['pool']}`)).expect(403);
    // Deleting a restore point is an operator's act too (checked before the restore point is looked up).
    await viewer(api().delete('/api/v1/restore-points/00000000-0000-4000-8000-000000000000')).expect(403);
    // Revoked keys stop working at once.
    await api()
      .delete(`/api/v1/api-keys/${created.body.id}`)
      .set('authorization', `Bearer ${keys['acme']}`)
      .expect(204);
    await viewer(api().get('/api/v1/jobs')).expect(401);
  });

  it('pages through runs newest first with a cursor and filters', async () => {
    const acme = (req: request.Test) => req.set('authorization', `Bearer ${keys['acme']}`);
    const first = await acme(api().get('/api/v1/runs?limit=2')).expect(200);
    expect(first.body.items).toEqual([]);
    expect(first.body.nextCursor).toBeUndefined();
    const bad = await acme(api().get('/api/v1/runs?limit=0&status=exploded&cursor=zzz')).expect(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'cursor',
      'limit',
      'status',
    ]);
  });

  it('drives the same API from the haven CLI, as tables or --json', async () => {
    const lines: string[] = [];
    const cli = () =>
      buildCli((text) => lines.push(text), {
        HAVEN_URL: context().baseUrl,
        HAVEN_KEY: keys['acme'],
      }).exitOverride();
    await cli().parseAsync(['node', 'haven', 'pools', 'list', '--json']);
    expect(JSON.parse(lines.pop()!).items.map((p: { name: string }) => p.name)).toEqual(['lab']);
    await cli().parseAsync(['node', 'haven', 'pools', 'list']);
    expect(lines.pop()).toMatch(/^ID\s+NAME\s+URL\s+USERNAME\n\S+\s+lab\s+http:\/\/127\.0\.0\.1:9\s+root$/);
    await cli().parseAsync([
      'node',
      'haven',
      'pools',
      'add',
      '--data',
      JSON.stringify({ name: 'lab2', url: 'http://127.0.0.1:10', username: 'root', password: 'pw' }),
    ]);
    const added = JSON.parse(lines.pop()!);
    await cli().parseAsync(['node', 'haven', 'pools', 'rm', added.id]);
    expect(lines.pop()).toBe(`Removed pool ${added.id}`);
    await expect(
      cli().parseAsync(['node', 'haven', 'pools', 'add', '--data', '{"name":"x"}']),
    ).rejects.toThrow(/400 Invalid request.*\n  - password: is required/s);
  });

  it('runs a job: tasks go through the durable queue to a worker, progress streams over SSE, results land in the catalog', async () => {
    const acme = (req: request.Test) => req.set('authorization', `Bearer ${keys['acme']}`);
    const started = await acme(api().post(`/api/v1/jobs/${ids['job']}/run`)).expect(202);
    expect(started.body.tasks).toBe(2);
    const events: { event: string; data: any }[] = [];
    for await (const event of new GatewayClient({ url: context().baseUrl, key: keys['acme'] }).events(
      started.body.events,
    ))
      events.push(event);
    expect(events[0]).toMatchObject({ event: 'run', data: { id: started.body.runId } });
    const progress = events
      .filter((e) => e.event === 'progress' && e.data.taskId !== undefined)
      .map((e) => e.data);
    expect(progress.some((p) => p.status === 'running' && p.progress.bytesDone > 0)).toBe(true);
    expect(events.at(-1)).toMatchObject({
      event: 'progress',
      data: { runId: started.body.runId, status: 'success' },
    });
    const run = await acme(api().get(`/api/v1/runs/${started.body.runId}`)).expect(200);
    expect(run.body).toMatchObject({ status: 'success', trigger: 'manual', error: null });
    expect(run.body.tasks.map((t: any) => [t.subject, t.status, t.result.echoed, t.attempts]).sort()).toEqual(
      [
        ['vm-1', 'success', 'hello', 1],
        ['vm-2', 'success', 'hello', 1],
      ],
    );
    expect(run.body.tasks.every((t: any) => typeof t.worker === 'string' && t.finishedAt !== null)).toBe(
      true,
    );
    const listed = await acme(api().get(`/api/v1/runs?jobId=${ids['job']}&status=success`)).expect(200);
    expect(listed.body.items.map((r: any) => r.id)).toContain(started.body.runId);
    // Another tenant can neither start nor watch it.
    await api()
      .post(`/api/v1/jobs/${ids['job']}/run`)
      .set('authorization', `Bearer ${keys['globex']}`)
      .expect(404);
    await api()
      .get(`/api/v1/runs/${started.body.runId}/events`)
      .set('authorization', `Bearer ${keys['globex']}`)
      .expect(404);
  });

  it('retries a failing task, then records the failure: the run is partial and says why', async () => {
    const acme = (req: request.Test) => req.set('authorization', `Bearer ${keys['acme']}`);
    await acme(api().patch(`/api/v1/jobs/${ids['job']}`))
      .send({ settings: { message: 'hello', stepMs: 250, failVm: 'vm-2' } })
      .expect(200);
    const lines: string[] = [];
    const cli = buildCli((text) => lines.push(text), {
      HAVEN_URL: context().baseUrl,
      HAVEN_KEY: keys['acme'],
    }).exitOverride();
    // --schedule names the schedule whose retention the run applies; the gateway checks it is the job's.
    await expect(
      cli.parseAsync(['node', 'haven', 'jobs', 'run', ids['job'], '--schedule', ids['job']]),
    ).rejects.toThrow(/400 Invalid request.*scheduleId: is not a schedule of job/s);
    await expect(cli.parseAsync(['node', 'haven', 'jobs', 'run', ids['job'], '--follow'])).rejects.toThrow(
      /ended with status partial/,
    );
    expect(lines[0]).toMatch(/^Run \S+ started with 2 task\(s\)$/);
    expect(lines.some((l) => /^vm-1\s+running\s+\[#+\.*\]\s+\d+%.*\sstep \d\/4$/.test(l))).toBe(true);
    expect(
      lines.some((l) => l.includes('attempt 1 of 3 failed: echo refused VM vm-2 (failVm); retrying')),
    ).toBe(true);
    expect(lines.at(-1)).toMatch(/^Run \S+: partial \(1 of 2 tasks failed\)$/);
    const runId = /^Run (\S+) started/.exec(lines[0])![1];
    const run = await acme(api().get(`/api/v1/runs/${runId}`)).expect(200);
    const failed = run.body.tasks.find((t: any) => t.subject === 'vm-2');
    expect(failed).toMatchObject({ status: 'failure', attempts: 3, error: 'echo refused VM vm-2 (failVm)' });
    expect(run.body.status).toBe('partial');
  }, 60_000);

  it('tests a remote: write, read back, list, delete, with speed and latency, kept with the remote', async () => {
    const lines: string[] = [];
    const cli = buildCli((text) => lines.push(text), {
      HAVEN_URL: context().baseUrl,
      HAVEN_KEY: keys['acme'],
    }).exitOverride();
    await cli.parseAsync(['node', 'haven', 'remotes', 'test', ids['remote']]);
    expect(lines.join('\n')).toMatch(
      /^Remote nas: OK\n  write \d+\.\d MB\/s, read \d+\.\d MB\/s\n  latency p50/,
    );
    const remote = await api()
      .get(`/api/v1/remotes/${ids['remote']}`)
      .set('authorization', `Bearer ${keys['acme']}`)
      .expect(200);
    expect(remote.body.lastTest).toMatchObject({ ok: true, remote: 'nas', problems: [] });
    expect(remote.body.lastTest.writeMBps).toBeGreaterThan(0);
    await api()
      .post(`/api/v1/remotes/${ids['remote']}/test`)
      .set('authorization', `Bearer ${keys['globex']}`)
      .expect(404);
  });

  it('pages through every run with the cursor, newest first, none twice', async () => {
    const acme = (req: request.Test) => req.set('authorization', `Bearer ${keys['acme']}`);
    const all = (await acme(api().get('/api/v1/runs?limit=50')).expect(200)).body.items as {
      id: string;
      createdAt: string;
    }[];
    expect(all.length).toBeGreaterThanOrEqual(2);
    const times = all.map((r) => new Date(r.createdAt).getTime());
    expect(times).toEqual([...times].sort((a, b) => b - a));
    const paged: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await acme(api().get(`/api/v1/runs?limit=1${cursor ? `&cursor=${cursor}` : ''}`)).expect(
        200,
      );
      expect(page.body.items.length).toBeLessThanOrEqual(1);
      paged.push(...page.body.items.map((r: { id: string }) => r.id));
      cursor = page.body.nextCursor;
    } while (cursor !== undefined);
    expect(paged).toEqual(all.map((r) => r.id));
    // Another tenant's listing stays empty.
    expect(
      (await api().get('/api/v1/runs').set('authorization', `Bearer ${keys['globex']}`).expect(200)).body
        .items,
    ).toEqual([]);
  });
}
