import { readFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { Command, InvalidArgumentError } from 'commander';
import { parseSize } from './size.parser';
import { startXapiSimulator } from './xapi-simulator';

function size(value: string): number {
  try {
    return parseSize(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function integer(value: string): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number)) throw new InvalidArgumentError(`${value} is not an integer`);
  return number;
}

/** Calls the workload API of a running simulator and prints its JSON answer. */
async function workloadCall(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  raw?: Readable,
): Promise<void> {
  const response = await fetch(new URL(path, url), {
    method,
    ...(raw !== undefined
      ? { body: Readable.toWeb(raw), duplex: 'half' }
      : body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  const text = await response.text();
  process.stdout.write(`${text}\n`);
  if (!response.ok) process.exitCode = 1;
}

function nbdMode(value: string): 'insecure' | 'tls' | 'off' {
  if (value === 'insecure' || value === 'tls' || value === 'off') return value;
  throw new InvalidArgumentError(`${value} is not one of insecure, tls, off`);
}

const program = new Command('xapi-sim').description(
  'A simulated XAPI pool (XCP-ng / XenServer) for tests, benchmarks and demos',
);

program
  .command('serve', { isDefault: true })
  .description('run the simulator until interrupted')
  .requiredOption('--state <dir>', 'state folder (created and seeded on first start, reopened afterwards)')
  .option('--port <port>', 'TCP port (0 = any free port)', integer, 0)
  .option('--host <host>', 'address to bind', '127.0.0.1')
  .option('--vms <n>', 'VMs created on first start', integer, 2)
  .option('--disk-size <size>', 'disk size of those VMs (e.g. 64MiB, 10G)', size, 64 * 1024 * 1024)
  .option('--allocation <ratio>', 'fraction of seeded disk blocks holding data', Number, 0.6)
  .option('--sr-size <size>', 'capacity of each SR', size, 4 * 1024 ** 4)
  .option('--seed <seed>', 'seed of identities and disk content', 'haven')
  .option('--user <user>', 'login user', 'root')
  .option('--password <password>', 'login password', 'password')
  .option('--nbd <mode>', 'NBD on first start: insecure (plain), tls, or off', nbdMode, 'insecure')
  .option('--nbd-port <port>', 'TCP port of the NBD listener (0 = any free port)', integer, 0)
  .option(
    '--slave-address <address>',
    "also serve a slave host of the pool on this address (e.g. 127.0.0.2) at the master's port; its logins answer HOST_IS_SLAVE",
  )
  .action(
    async (options: {
      state: string;
      port: number;
      host: string;
      vms: number;
      diskSize: number;
      allocation: number;
      srSize: number;
      seed: string;
      user: string;
      password: string;
      nbd: 'insecure' | 'tls' | 'off';
      nbdPort: number;
      slaveAddress?: string;
    }) => {
      const simulator = await startXapiSimulator({
        stateDir: options.state,
        port: options.port,
        host: options.host,
        vms: options.vms,
        diskSize: options.diskSize,
        allocation: options.allocation,
        srSize: options.srSize,
        seed: options.seed,
        user: options.user,
        password: options.password,
        nbd: options.nbd,
        nbdPort: options.nbdPort,
        ...(options.slaveAddress === undefined ? {} : { slaveAddress: options.slaveAddress }),
      });
      const nbd = simulator.nbd.status();
      const slave = simulator.slave?.status();
      // The slave's line comes first: whoever waits for the master's line has both then.
      process.stdout.write(
        (slave === undefined
          ? ''
          : `xapi-sim slave host listening on ${slave.url} (logins answer HOST_IS_SLAVE ${slave.masterAddress})\n`) +
          `xapi-sim listening on ${simulator.url} (user ${simulator.user}, state ${simulator.stateDir}); ` +
          `NBD on port ${nbd.port}${nbd.tls ? ' with TLS' : ''}${nbd.enabled ? '' : ' (no network has the NBD purpose)'}\n`,
      );
      const stop = (signal: NodeJS.Signals): void => {
        // Says why the pool went away, for whoever sees an export cut and the port refusing.
        process.stderr.write(
          `xapi-sim: ${signal} received (pid ${process.pid}); closing: new connections are refused, open transfers are cut\n`,
        );
        simulator.close().then(
          () => process.exit(0),
          (error: unknown) => {
            process.stderr.write(`xapi-sim: closing failed: ${String(error)}\n`);
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
  );

const urlOption = '--url <url>';
const urlHelp = 'simulator URL (http://127.0.0.1:PORT)';

program
  .command('vms')
  .description('list VMs and their disks')
  .requiredOption(urlOption, urlHelp)
  .action((options: { url: string }) => workloadCall(options.url, 'GET', '/_sim/vms'));

program
  .command('write <target>')
  .description('write random data into a disk (target: VDI ref/uuid, or VM name/ref/uuid with --position)')
  .requiredOption(urlOption, urlHelp)
  .option('--position <n>', 'disk position within the VM', integer, 0)
  .option('--blocks <n>', 'number of random 2 MiB blocks to overwrite', integer)
  .option('--bytes <size>', 'number of random bytes to write at --offset', size)
  .option('--offset <size>', 'byte offset for --bytes', size, 0)
  .option('--seed <seed>', 'reproducible positions and content')
  .action(
    (
      target: string,
      options: {
        url: string;
        position: number;
        blocks?: number;
        bytes?: number;
        offset: number;
        seed?: string;
      },
    ) =>
      workloadCall(
        options.url,
        'POST',
        `/_sim/disks/${encodeURIComponent(target)}/write?position=${options.position}`,
        {
          blocks: options.blocks,
          bytes: options.bytes,
          offset: options.offset,
          seed: options.seed,
        },
      ),
  );

program
  .command('overwrite <target> <image>')
  .description("replace a disk's content with a raw image file")
  .requiredOption(urlOption, urlHelp)
  .option('--position <n>', 'disk position within the VM', integer, 0)
  .action((target: string, image: string, options: { url: string; position: number }) =>
    workloadCall(
      options.url,
      'PUT',
      `/_sim/disks/${encodeURIComponent(target)}/content?position=${options.position}`,
      undefined,
      createReadStream(image),
    ),
  );

program
  .command('hash <target>')
  .description("SHA-256 of a disk's raw content (and per-block hashes with --blocks)")
  .requiredOption(urlOption, urlHelp)
  .option('--position <n>', 'disk position within the VM', integer, 0)
  .option('--blocks', 'include the per-block hash list')
  .action((target: string, options: { url: string; position: number; blocks?: boolean }) =>
    workloadCall(
      options.url,
      'GET',
      `/_sim/disks/${encodeURIComponent(target)}/hash?position=${options.position}${options.blocks === true ? '&blocks=1' : ''}`,
    ),
  );

program
  .command('faults')
  .description('show or change injected faults')
  .requiredOption(urlOption, urlHelp)
  .option('--unreachable <bool>', 'drop RPC and transfer connections (true/false)')
  .option('--latency <ms>', 'delay before every answer', integer)
  .option('--export-fail-after <size>', 'break exports after this many bytes ("off" to clear)')
  .option('--export-fail-times <n>', 'how many exports break', integer)
  .option('--bandwidth <size>', 'transfer throughput cap per second ("off" to clear)')
  .option('--from-json <file>', 'read the faults from a JSON file')
  .action(
    async (options: {
      url: string;
      unreachable?: string;
      latency?: number;
      exportFailAfter?: string;
      exportFailTimes?: number;
      bandwidth?: string;
      fromJson?: string;
    }) => {
      const faults: Record<string, unknown> =
        options.fromJson === undefined
          ? {}
          : (JSON.parse(await readFile(options.fromJson, 'utf8')) as Record<string, unknown>);
      if (options.unreachable !== undefined) faults['unreachable'] = options.unreachable === 'true';
      if (options.latency !== undefined) faults['latencyMs'] = options.latency;
      if (options.exportFailAfter !== undefined)
        faults['exportFailAfterBytes'] =
          options.exportFailAfter === 'off' ? null : size(options.exportFailAfter);
      if (options.exportFailTimes !== undefined) faults['exportFailTimes'] = options.exportFailTimes;
      if (options.bandwidth !== undefined)
        faults['bandwidthBytesPerSecond'] = options.bandwidth === 'off' ? null : size(options.bandwidth);
      await workloadCall(
        options.url,
        Object.keys(faults).length === 0 ? 'GET' : 'POST',
        '/_sim/faults',
        Object.keys(faults).length === 0 ? undefined : faults,
      );
    },
  );

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`xapi-sim: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
