import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import {
  CliError,
  type Credentials,
  GatewayClient,
  loadCredentials,
  saveCredentials,
} from './gateway.client';
import { formatTable } from './table.format';

interface Resource {
  command: string;
  path: string;
  columns: string[];
  /** Which verbs the resource has: listings of runs and restore points are read-only. */
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
    columns: ['id', 'jobId', 'trigger', 'status', 'createdAt', 'finishedAt'],
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
    columns: ['id', 'vmName', 'kind', 'takenAt', 'logicalBytes', 'storedBytes'],
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

/** Builds the `haven` command line; `out` receives what would be printed (tests capture it). */
export function buildCli(out: (text: string) => void, env: NodeJS.ProcessEnv = process.env): Command {
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

export async function runCli(argv: string[]): Promise<number> {
  const program = buildCli((text) => process.stdout.write(`${text}\n`));
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    process.stderr.write(`haven: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}
