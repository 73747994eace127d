/**
 * XAPI simulator figures, each against baselines measured in the same run:
 * - VHD export of allocated data over HTTP (the simulator as its own process, its CLI; curl reading
 *   into /dev/null, and Node's http client discarding), as a ratio to reading the same bytes from a
 *   file, and to the loopback ceiling (a bare Node http server sending a constant buffer to the
 *   same client);
 * - the simulator's own cost: generating the same VHD stream in process, without a socket;
 * - the peak RSS of the simulator process while it exports.
 *
 *   node bin/run.js bench/xapi-sim/export.bench.ts            # 4 GiB disk, ~2.4 GiB allocated
 *   node bin/run.js bench/xapi-sim/export.bench.ts --full     # 50 GiB disk, 10 GiB allocated
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { open, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startXapiSimulator, createVdiExportStream } from '@haven/xapi-sim';
import { performance } from 'node:perf_hooks';

const full = process.argv.includes('--full');
const GiB = 1024 ** 3;
const diskSize = full ? 50 * GiB : 4 * GiB;
const allocation = full ? 0.2 : 0.6;
const runs = full ? 1 : 3;
const run = promisify(execFile);

function startSimulator(stateDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      join(__dirname, '../../bin/run.js'),
      'tools/xapi-sim/src/cli.ts',
      '--state',
      stateDir,
      '--vms',
      '1',
      '--disk-size',
      String(diskSize),
      '--allocation',
      String(allocation),
      '--seed',
      'bench',
    ],
    { cwd: join(__dirname, '../..'), stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match?.[1] !== undefined) resolve({ child, url: match[1] });
    });
    child.once('exit', (code) => reject(new Error(`simulator exited with ${code}: ${output}`)));
  });
}

/** A bare Node http server in its own process sending `bytes` bytes of a constant 2 MiB buffer. */
function startLoopbackServer(): Promise<{ child: ChildProcess; url: string }> {
  const script = `
    const http = require('node:http');
    const block = Buffer.alloc(2 * 1024 * 1024, 7);
    const server = http.createServer((req, res) => {
      const bytes = Number(new URL(req.url, 'http://x').searchParams.get('bytes'));
      res.writeHead(200, { 'content-length': bytes });
      let sent = 0;
      const write = () => {
        while (sent < bytes) {
          const piece = Math.min(block.length, bytes - sent);
          sent += piece;
          if (!res.write(piece === block.length ? block : block.subarray(0, piece))) return res.once('drain', write);
        }
        res.end();
      };
      write();
    });
    server.listen(0, '127.0.0.1', () => process.stdout.write('listening on http://127.0.0.1:' + server.address().port + '\\n'));
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match?.[1] !== undefined) resolve({ child, url: match[1] });
    });
    child.once('exit', (code) => reject(new Error(`loopback server exited with ${code}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

async function rpc(url: string, method: string, params: unknown[]): Promise<unknown> {
  const response = await fetch(`${url}/jsonrpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = (await response.json()) as { result?: unknown; error?: { message: string } };
  if (body.error !== undefined) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? 0) * 1024;
}

/** Downloads with curl (a plain C http client) into /dev/null; returns bytes and seconds. */
async function curlDownload(url: string): Promise<{ bytes: number; seconds: number }> {
  const { stdout } = await run('curl', [
    '-s',
    '-f',
    '-o',
    '/dev/null',
    '-w',
    '%{size_download} %{time_total}',
    url,
  ]);
  const figures = stdout.trim().split(' ').map(Number);
  const bytes = figures.at(0);
  const seconds = figures.at(1);
  if (bytes === undefined || seconds === undefined) throw new Error(`curl printed "${stdout}"`);
  return { bytes, seconds };
}

/** Downloads with Node's http client, discarding the body; returns bytes and seconds. */
function download(url: string): Promise<{ bytes: number; seconds: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    get(url, (response) => {
      if (response.statusCode !== 200) {
        reject(new Error(`export answered ${response.statusCode}`));
        return;
      }
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      response.on('end', () => resolve({ bytes, seconds: (performance.now() - started) / 1000 }));
      response.on('error', reject);
    }).on('error', reject);
  });
}

/** The baseline: sequential 2 MiB reads of `bytes` bytes of a file, discarded. */
async function readFileBytes(path: string, bytes: number): Promise<{ bytes: number; seconds: number }> {
  const file = await open(path, 'r');
  const buffer = Buffer.allocUnsafe(2 * 1024 * 1024);
  const started = performance.now();
  let done = 0;
  while (done < bytes) {
    const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, bytes - done), done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  await file.close();
  return { bytes: done, seconds: (performance.now() - started) / 1000 };
}

async function main(): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), 'haven-bench-xapi-sim-'));
  const loopback = await startLoopbackServer();
  try {
    const seeding = performance.now();
    const { child, url } = await startSimulator(stateDir);
    const seedSeconds = (performance.now() - seeding) / 1000;
    const session = (await rpc(url, 'session.login_with_password', ['root', 'password'])) as string;
    const vms = (await (await fetch(`${url}/_sim/vms`)).json()) as {
      name: string;
      disks: { vdi: string }[];
    }[];
    const vdi = vms.find((vm) => vm.name === 'sim-vm-0')?.disks[0]?.vdi ?? '';
    const allocated = (await rpc(url, 'VDI.get_physical_utilisation', [session, vdi])) as number;
    const blocksFile = join(stateDir, 'blocks.dat');
    const exportUrl = `${url}/export_raw_vdi/?session_id=${encodeURIComponent(session)}&vdi=${encodeURIComponent(vdi)}&format=vhd`;

    // Warm-up: the page cache holds the blocks for every measurement.
    await readFileBytes(blocksFile, (await stat(blocksFile)).size);
    let peakRss = await rssOf(child.pid ?? 0);
    const idleRss = peakRss;
    const sampler = setInterval(() => {
      rssOf(child.pid ?? 0).then(
        (rss) => {
          peakRss = Math.max(peakRss, rss);
        },
        () => undefined,
      );
    }, 50);
    const exports: number[] = [];
    const nodeExports: number[] = [];
    const files: number[] = [];
    const ceilings: number[] = [];
    const nodeCeilings: number[] = [];
    let exportedBytes = 0;
    for (let round = 0; round < runs; round++) {
      const exported = await curlDownload(exportUrl);
      exportedBytes = exported.bytes;
      exports.push(exported.bytes / exported.seconds);
      const baseline = await readFileBytes(blocksFile, allocated);
      files.push(baseline.bytes / baseline.seconds);
      const ceiling = await curlDownload(`${loopback.url}/?bytes=${exportedBytes}`);
      ceilings.push(ceiling.bytes / ceiling.seconds);
      const nodeExported = await download(exportUrl);
      nodeExports.push(nodeExported.bytes / nodeExported.seconds);
      const nodeCeiling = await download(`${loopback.url}/?bytes=${exportedBytes}`);
      nodeCeilings.push(nodeCeiling.bytes / nodeCeiling.seconds);
    }
    clearInterval(sampler);
    await stop(child);

    // The simulator's own work, without a socket: the same VHD stream generated in process.
    const local = await startXapiSimulator({ stateDir });
    const generated: number[] = [];
    try {
      for (let round = 0; round < runs; round++) {
        const started = performance.now();
        let bytes = 0;
        for await (const chunk of createVdiExportStream(local.pool, vdi, { format: 'vhd' }).stream)
          bytes += (chunk as Buffer).length;
        generated.push(bytes / ((performance.now() - started) / 1000));
      }
    } finally {
      await local.close();
    }

    const best = (values: number[]): number => Math.max(...values);
    const gb = (value: number): string => (value / 1e9).toFixed(2);
    const mib = (value: number): string => (value / 1024 / 1024).toFixed(0);
    const ratio = (a: number, b: number): string => (a / b).toFixed(2);
    process.stdout.write(
      [
        `disk ${diskSize / GiB} GiB, ${gb(allocated)} GB allocated (seeded in ${seedSeconds.toFixed(1)} s), VHD export ${gb(exportedBytes)} GB, ${runs} run(s), best of each`,
        `file read of the same bytes (baseline):         ${gb(best(files))} GB/s`,
        `loopback ceiling, bare Node server -> curl:     ${gb(best(ceilings))} GB/s`,
        `simulator VHD export over HTTP -> curl:         ${gb(best(exports))} GB/s  = ${ratio(best(exports), best(files))} x file read, ${ratio(best(exports), best(ceilings))} x loopback ceiling`,
        `loopback ceiling, bare Node server -> Node:     ${gb(best(nodeCeilings))} GB/s`,
        `simulator VHD export over HTTP -> Node client:  ${gb(best(nodeExports))} GB/s  = ${ratio(best(nodeExports), best(files))} x file read, ${ratio(best(nodeExports), best(nodeCeilings))} x loopback ceiling`,
        `simulator VHD stream generated in process:      ${gb(best(generated))} GB/s  = ${ratio(best(generated), best(files))} x file read`,
        `simulator process RSS: idle ${mib(idleRss)} MiB, peak during exports ${mib(peakRss)} MiB`,
        '',
      ].join('\n'),
    );
  } finally {
    await stop(loopback.child);
    await rm(stateDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
});
