import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import {
  CliError,
  type Credentials,
  GatewayClient,
  loadCredentials,
  saveCredentials,
} from './gateway.client';
import {
  PlainRunProgress,
  type ProgressTerminal,
  type RunProgressDisplay,
  type RunTransferEvent,
  type TaskProgressEvent,
  TerminalRunProgress,
} from './run-progress.view';
import { formatTable } from './table.format';

interface Resource {
  command: string;
  path: string;
  columns: string[];
  /** Whether it has add and rm: runs and restore points do not (a restore point is deleted by a run). */
  writable: boolean;
}

const RESOURCES: Resource[] = [
  { command: 'tenants', path: 'tenants', columns: ['id', 'name', 'isSystem', 'createdAt'], writable: true },
  { command: 'api-keys', path: 'api-keys', columns: ['id', 'name', 'role', 'lastUsedAt'], writable: true },
  { command: 'pools', path: 'pools', columns: ['id', 'name', 'url', 'username'], writable: true },
  {
    command: 'remotes',
    path: 'remotes',
    columns: ['id', 'name', 'type', 'encrypted', 'enabled'],
    writable: true,
  },
  { command: 'jobs', path: 'jobs', columns: ['id', 'name', 'type', 'enabled'], writable: true },
  {
    command: 'schedules',
    path: 'schedules',
    columns: ['id', 'name', 'jobId', 'cron', 'timezone', 'enabled', 'nextFireAt'],
    writable: true,
  },
  {
    command: 'runs',
    path: 'runs',
    columns: ['id', 'kind', 'jobId', 'trigger', 'status', 'createdAt', 'finishedAt'],
    writable: false,
  },
  {
    command: 'tasks',
    path: 'tasks',
    columns: ['id', 'runId', 'subject', 'status', 'attempts', 'worker'],
    writable: false,
  },
  {
    command: 'restore-points',
    path: 'restore-points',
    columns: ['id', 'vmName', 'kind', 'takenAt', 'logicalBytes', 'storedBytes', 'damagedAt'],
    writable: false,
  },
];

function readBody(options: { data?: string; file?: string }): unknown {
  const text =
    options.data ??
    (options.file === undefined ? undefined : readFileSync(options.file === '-' ? 0 : options.file, 'utf8'));
  if (text === undefined)
    throw new CliError('Give the object as --data JSON or --file FILE (- for standard input)');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new CliError(`The body is not valid JSON: ${(error as Error).message}`);
  }
}

/** Where a command prints: lines, and how `--follow` shows a run's progress. */
interface CliOutput {
  line: (text: string) => void;
  followDisplay: (subjectOf: (taskId: string) => string) => RunProgressDisplay;
}

/**
 * Builds the `haven` command line; `out` receives what would be printed (tests capture it). With a
 * `terminal`, `--follow` redraws its progress bars in place; without, it prints plain lines.
 */
export function buildCli(
  out: (text: string) => void,
  env: NodeJS.ProcessEnv = process.env,
  terminal?: ProgressTerminal,
): Command {
  const output: CliOutput = {
    line: out,
    followDisplay: (subjectOf) =>
      terminal === undefined
        ? new PlainRunProgress(out, subjectOf)
        : new TerminalRunProgress(terminal, subjectOf),
  };
  const program = new Command('haven')
    .description('Haven: backup and replication for Xen / XCP-ng')
    .showHelpAfterError();
  const client = () => new GatewayClient(loadCredentials(env));
  const print = (value: unknown, json: boolean | undefined, columns?: string[]) => {
    if (json || columns === undefined) out(JSON.stringify(value, null, 2));
    else {
      const page = value as { items: Record<string, unknown>[]; nextCursor?: string };
      out(formatTable(page.items, columns));
      if (page.nextCursor) out(`(more: --cursor ${page.nextCursor})`);
    }
  };

  program
    .command('login')
    .description('Check a gateway URL and API key, then remember them')
    .requiredOption('--url <url>', 'gateway URL, e.g. http://localhost:3000')
    .requiredOption('--key <key>', 'API key')
    .action(async (options: Credentials) => {
      await new GatewayClient(options).call('GET', '/api/v1/pools');
      out(`Logged in to ${options.url}; credentials saved to ${saveCredentials(options, env)}`);
    });

  program
    .command('run')
    .description('Alias of `haven jobs run`')
    .argument('<job-id>')
    .option('--follow', 'stream progress until the run ends; exit 1 unless it succeeded')
    .option('--schedule <schedule-id>', SCHEDULE_OPTION_HELP)
    .action((jobId: string, options: { follow?: boolean; schedule?: string }) =>
      runJob(client(), jobId, options, output),
    );

  for (const resource of RESOURCES) {
    const group = program
      .command(resource.command)
      .description(`${resource.command}: list, show${resource.writable ? ', add, rm' : ''}`);
    group
      .command('list')
      .option('--json', 'print JSON')
      .option('--limit <n>', 'page size')
      .option('--cursor <cursor>', 'next page')
      .option('--filter <key=value...>', 'filters such as jobId=… or status=failure')
      .action(async (options: { json?: boolean; limit?: string; cursor?: string; filter?: string[] }) => {
        const query = new URLSearchParams();
        if (options.limit) query.set('limit', options.limit);
        if (options.cursor) query.set('cursor', options.cursor);
        for (const pair of options.filter ?? []) {
          const [key, ...value] = pair.split('=');
          if (!key || value.length === 0) throw new CliError(`--filter takes key=value (got "${pair}")`);
          query.set(key, value.join('='));
        }
        const suffix = query.size > 0 ? `?${query.toString()}` : '';
        print(
          await client().call('GET', `/api/v1/${resource.path}${suffix}`),
          options.json,
          resource.columns,
        );
      });
    group
      .command('show <id>')
      .option('--json', 'print JSON (the default for one object)')
      .action(async (id: string) =>
        print(await client().call('GET', `/api/v1/${resource.path}/${encodeURIComponent(id)}`), true),
      );
    if (resource.command === 'jobs')
      group
        .command('run <id>')
        .description('Run a job now')
        .option('--follow', 'stream progress until the run ends; exit 1 unless it succeeded')
        .option('--json', 'print events as JSON lines')
        .option('--schedule <schedule-id>', SCHEDULE_OPTION_HELP)
        .action((id: string, options: { follow?: boolean; json?: boolean; schedule?: string }) =>
          runJob(client(), id, options, output),
        );
    if (resource.command === 'remotes')
      group
        .command('test <id>')
        .description('Write, read back, list and delete test objects; report speed and problems')
        .option('--json', 'print JSON')
        .action(async (id: string, options: { json?: boolean }) => {
          const result = await client().call<RemoteTestReport>(
            'POST',
            `/api/v1/remotes/${encodeURIComponent(id)}/test`,
          );
          if (options.json) out(JSON.stringify(result, null, 2));
          else out(describeRemoteTest(result));
          if (!result.ok) throw new CliError(`remote ${result.remote} failed its test`);
        });
    if (resource.command === 'remotes')
      for (const kind of ['gc', 'verify'] as const)
        group
          .command(`${kind} <id>`)
          .description(
            kind === 'gc'
              ? 'Free the chunks no restore point references (a run of kind gc)'
              : 'Re-hash the chunks and mark the restore points a bad chunk breaks (a run of kind verify)',
          )
          .option(
            kind === 'gc' ? '--safety-window-minutes <n>' : '--sample <n>',
            kind === 'gc'
              ? 'keep chunks younger than this (default 1440); 0 only when no backup writes to the remote'
              : 're-hash only a fraction (0..1) or a count of the chunks',
          )
          .option('--follow', 'stream progress until the run ends; exit 1 unless it succeeded')
          .option('--json', 'print events as JSON lines')
          .action(
            (
              id: string,
              options: { safetyWindowMinutes?: string; sample?: string; follow?: boolean; json?: boolean },
            ) => {
              const body: Record<string, number> = {};
              if (options.safetyWindowMinutes !== undefined)
                body['safetyWindowMinutes'] = Number(options.safetyWindowMinutes);
              if (options.sample !== undefined) body['sample'] = Number(options.sample);
              return startRun(
                client(),
                `/api/v1/remotes/${encodeURIComponent(id)}/${kind}`,
                body,
                options,
                output,
              );
            },
          );
    if (resource.command === 'runs')
      group
        .command('logs <id>')
        .description("Print a run's log; with --follow, keep printing until the run ends")
        .option('--follow', 'keep printing new lines until the run ends')
        .option('--json', 'print lines as JSON')
        .action((id: string, options: { follow?: boolean; json?: boolean }) =>
          printRunLogs(client(), id, options, out),
        );
    if (resource.command === 'remotes')
      group
        .command('sync <id>')
        .description("Rebuild the catalog's restore points of this remote from its manifests")
        .action(async (id: string) => {
          const result = await client().call<{ remote: string; found: number; added: number }>(
            'POST',
            `/api/v1/remotes/${encodeURIComponent(id)}/sync`,
          );
          out(
            `Remote ${result.remote}: ${result.found} restore point(s) found, ${result.added} added to the catalog`,
          );
        });
    if (resource.command === 'restore-points')
      group
        .command('restore <id>')
        .description('Restore a restore point as a new VM (a run; see `haven runs show`)')
        .requiredOption('--pool <pool-id>', 'pool to create the VM on')
        .option('--sr <sr-uuid>', "SR of the new disks (default: the pool's default SR)")
        .option('--name <name>', 'name of the new VM (default: "<vm> (restored <date>)")')
        .option('--keep-macs', 'give the network interfaces their backed-up MACs (default: new ones)')
        .option('--follow', 'stream progress until the run ends; exit 1 unless it succeeded')
        .option('--json', 'print events as JSON lines')
        .action(
          (
            id: string,
            options: {
              pool: string;
              sr?: string;
              name?: string;
              keepMacs?: boolean;
              follow?: boolean;
              json?: boolean;
            },
          ) =>
            startRun(
              client(),
              `/api/v1/restore-points/${encodeURIComponent(id)}/restore`,
              {
                poolId: options.pool,
                ...(options.sr === undefined ? {} : { srUuid: options.sr }),
                ...(options.name === undefined ? {} : { name: options.name }),
                ...(options.keepMacs === true ? { keepMacs: true } : {}),
              },
              options,
              output,
            ),
        );
    if (resource.command === 'restore-points')
      group
        .command('delete <id>')
        .description(
          "Delete a restore point from its remote and the catalog, then collect the remote's garbage (a run)",
        )
        .option('--follow', 'stream progress until the run ends; exit 1 unless it succeeded')
        .option('--json', 'print events as JSON lines')
        .action((id: string, options: { follow?: boolean; json?: boolean }) =>
          startRun(
            client(),
            `/api/v1/restore-points/${encodeURIComponent(id)}`,
            undefined,
            options,
            output,
            'DELETE',
          ),
        );
    if (resource.command === 'restore-points')
      group
        .command('download <id>')
        .description('Download a disk of a restore point (raw resumes an interrupted download)')
        .requiredOption('--disk <key>', 'disk key, see `restore-points show` / GET …/disks')
        .option('--format <format>', 'raw or vhd', 'raw')
        .requiredOption('-o, --output <file>', 'where to write it')
        .action(async (id: string, options: { disk: string; format: string; output: string }) => {
          const bytes = await client().download(
            `/api/v1/restore-points/${encodeURIComponent(id)}/disks/${encodeURIComponent(options.disk)}?format=${encodeURIComponent(options.format)}`,
            options.output,
            { resume: options.format === 'raw' },
          );
          out(`Wrote ${bytes} bytes to ${options.output}`);
        });
    if (!resource.writable) continue;
    group
      .command('add')
      .description('Create from a JSON object')
      .option('--data <json>', 'the object as JSON')
      .option('--file <file>', 'read the JSON object from a file (- for standard input)')
      .option('--json', 'print JSON')
      .action(async (options: { data?: string; file?: string }) =>
        print(await client().call('POST', `/api/v1/${resource.path}`, readBody(options)), true),
      );
    group.command('rm <id>').action(async (id: string) => {
      await client().call('DELETE', `/api/v1/${resource.path}/${encodeURIComponent(id)}`);
      out(`Removed ${resource.command.replace(/s$/, '')} ${id}`);
    });
  }
  return program;
}

interface RemoteTestReport {
  remote: string;
  ok: boolean;
  writeMBps?: number;
  readMBps?: number;
  latencyMs?: { p50: number; p99: number };
  capacity?: { freeBytes?: number; totalBytes?: number };
  problems: string[];
}

function describeRemoteTest(result: RemoteTestReport): string {
  const lines = [`Remote ${result.remote}: ${result.ok ? 'OK' : 'FAILED'}`];
  if (result.writeMBps !== undefined)
    lines.push(`  write ${result.writeMBps.toFixed(1)} MB/s, read ${(result.readMBps ?? 0).toFixed(1)} MB/s`);
  if (result.latencyMs)
    lines.push(
      `  latency p50 ${result.latencyMs.p50.toFixed(1)} ms, p99 ${result.latencyMs.p99.toFixed(1)} ms`,
    );
  if (result.capacity?.freeBytes !== undefined)
    lines.push(`  free ${(result.capacity.freeBytes / 1e9).toFixed(1)} GB`);
  for (const problem of result.problems) lines.push(`  problem: ${problem}`);
  return lines.join('\n');
}

interface LogLine {
  taskId?: string | null;
  at: string;
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

const TERMINAL = ['success', 'partial', 'failure', 'cancelled'];

function formatLogLine(line: LogLine, subjects: Map<string, string>): string {
  const subject = line.taskId ? (subjects.get(line.taskId) ?? line.taskId) : 'run';
  return `${line.at} ${line.level.toUpperCase().padEnd(5)} ${subject}: ${line.message}`;
}

/**
 * Prints a run's stored log; with --follow, the live stream is opened first and its lines that
 * the stored pages already held are skipped, so nothing is lost or printed twice in between.
 */
async function printRunLogs(
  client: GatewayClient,
  runId: string,
  options: { follow?: boolean; json?: boolean },
  out: (text: string) => void,
): Promise<void> {
  const id = encodeURIComponent(runId);
  const run = await client.call<{ status: string; tasks: { id: string; subject: string }[] }>(
    'GET',
    `/api/v1/runs/${id}`,
  );
  const subjects = new Map(run.tasks.map((t) => [t.id, t.subject]));
  const print = (line: LogLine) => out(options.json ? JSON.stringify(line) : formatLogLine(line, subjects));
  const stream = options.follow ? client.events(`/api/v1/runs/${id}/events`) : undefined;
  // The first event (the run's state) arrives once the server listens for new lines.
  const first = await stream?.next();
  const seen = new Set<string>();
  let cursor: string | undefined;
  do {
    const page = await client.call<{ items: LogLine[]; nextCursor?: string }>(
      'GET',
      `/api/v1/runs/${id}/logs?limit=500${cursor ? `&cursor=${cursor}` : ''}`,
    );
    for (const line of page.items) {
      seen.add(`${line.taskId ?? ''}|${new Date(line.at).toISOString()}|${line.message}`);
      print(line);
    }
    cursor = page.nextCursor;
  } while (cursor);
  if (!stream || first?.done) return;
  for await (const { event, data } of stream) {
    if (event !== 'log') continue;
    const line = data as LogLine;
    if (seen.has(`${line.taskId ?? ''}|${new Date(line.at).toISOString()}|${line.message}`)) continue;
    print(line);
  }
}

interface ProgressEvent {
  taskId?: string;
  status: string;
  progress: Record<string, unknown>;
  message?: string;
}

/** Starts a run and, with --follow, renders its progress until it ends (exit status follows the run). */
function runJob(
  client: GatewayClient,
  jobId: string,
  options: { follow?: boolean; json?: boolean; schedule?: string },
  output: CliOutput,
): Promise<void> {
  const body = options.schedule === undefined ? undefined : { scheduleId: options.schedule };
  return startRun(client, `/api/v1/jobs/${encodeURIComponent(jobId)}/run`, body, options, output);
}

const SCHEDULE_OPTION_HELP =
  'run as this schedule of the job: its retention applies to the new restore points (a run without one keeps them until they are deleted)';

/** POSTs to an endpoint that starts a run (job run, restore) and, with --follow, follows it. */
async function startRun(
  client: GatewayClient,
  path: string,
  body: unknown,
  options: { follow?: boolean; json?: boolean },
  output: CliOutput,
  method: 'POST' | 'DELETE' = 'POST',
): Promise<void> {
  const out = output.line;
  const started = await client.call<{ runId: string; tasks: number }>(method, path, body);
  out(options.json ? JSON.stringify(started) : `Run ${started.runId} started with ${started.tasks} task(s)`);
  if (!options.follow) return;
  const run = await client.call<{ tasks: { id: string; subject: string }[] }>(
    'GET',
    `/api/v1/runs/${started.runId}`,
  );
  const subjects = new Map(run.tasks.map((t) => [t.id, t.subject]));
  const display = options.json ? undefined : output.followDisplay((taskId) => subjects.get(taskId) ?? taskId);
  let final: ProgressEvent | undefined;
  try {
    for await (const { event, data } of client.events(`/api/v1/runs/${started.runId}/events`)) {
      if (options.json) out(JSON.stringify({ event, data }));
      // Warnings and errors of the run's log go under the progress lines.
      if (event === 'log') {
        const line = data as LogLine;
        if (line.level === 'warn' || line.level === 'error')
          display?.logLine(`  ${formatLogLine(line, subjects)}`);
        continue;
      }
      if (event === 'transfer') {
        display?.transfer(data as RunTransferEvent);
        continue;
      }
      const update = data as ProgressEvent;
      // The run's state (first event, or the server's poll seeing the end) says why in `error`.
      if (event === 'run' && TERMINAL.includes(update.status)) {
        const error = (data as { error?: string | null }).error;
        final = { ...update, ...(error ? { message: error } : {}) };
      }
      if (event !== 'progress') continue;
      if (update.taskId === undefined) {
        if (TERMINAL.includes(update.status)) final = update;
        continue;
      }
      display?.progress(update as TaskProgressEvent);
    }
  } finally {
    display?.close();
  }
  if (!final) throw new CliError(`The progress stream of run ${started.runId} ended before the run did`);
  if (!options.json)
    out(`Run ${started.runId}: ${final.status}${final.message ? ` (${final.message})` : ''}`);
  if (final.status !== 'success')
    throw new CliError(`run ${started.runId} ended with status ${final.status}`);
}

export async function runCli(argv: string[]): Promise<number> {
  const stdout = process.stdout;
  const terminal: ProgressTerminal | undefined = stdout.isTTY
    ? { write: (text) => stdout.write(text), rows: () => stdout.rows, columns: () => stdout.columns }
    : undefined;
  const program = buildCli((text) => stdout.write(`${text}\n`), process.env, terminal);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    process.stderr.write(`haven: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}
