/**
 * Cost of Haven's hypervisor client on exports, against baselines measured in the same run:
 * the simulator runs as its own process (its CLI); the baseline is curl downloading the same
 * export URL into /dev/null (a plain C client, no task bookkeeping). Figures:
 * - XapiPool.exportVhd / exportRaw read to the end and discarded, as a ratio to curl;
 * - XapiPool.exportVhd parsed block by block with @haven/vhd (what a backup worker does);
 * - peak RSS of this process while exporting (streams must stay bounded).
 *
 *   node bin/run.js bench/xapi/export.bench.ts          # 2 GiB disk, ~60 % allocated, 3 runs
 *   node bin/run.js bench/xapi/export.bench.ts --full   # 16 GiB disk, 1 run
 */
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { parseVhdStream } from '@haven/vhd';
import { XapiPool } from '@haven/xapi';
import { XapiSimTestServer } from '@haven/testing';

const full = process.argv.includes('--full');
const GiB = 1024 ** 3;
const diskSize = full ? 16 * GiB : 2 * GiB;
const runs = full ? 1 : 3;
const run = promisify(execFile);

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

async function curl(url: string): Promise<{ bytes: number; seconds: number }> {
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
  if (figures.length !== 2 || figures.some(Number.isNaN)) throw new Error(`curl printed "${stdout}"`);
  const [bytes = 0, seconds = 0] = figures;
  return { bytes, seconds };
}

let peakRss = 0;
function sampleRss(): void {
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
}

async function timed(work: () => Promise<number>): Promise<{ bytes: number; seconds: number }> {
  const started = performance.now();
  const bytes = await work();
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

async function drain(stream: AsyncIterable<Buffer>): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream) {
    bytes += chunk.length;
    sampleRss();
  }
  return bytes;
}

function best(results: { bytes: number; seconds: number }[]): { bytes: number; seconds: number } {
  return results.reduce((a, b) => (b.bytes / b.seconds > a.bytes / a.seconds ? b : a));
}

const mbps = (r: { bytes: number; seconds: number }): string =>
  `${(r.bytes / r.seconds / 1e6).toFixed(0)} MB/s`;

async function main(): Promise<void> {
  const sim = await XapiSimTestServer.start({ vms: 1, diskSize: String(diskSize), seed: 'bench-xapi' });
  try {
    const session = (await rpc(sim.url, 'session.login_with_password', ['root', 'password'])) as string;
    const pool = await XapiPool.connect({ url: sim.url, username: 'root', password: 'password' });
    const vms = await pool.listVms();
    if (vms.length === 0) throw new Error('the simulator has no VM');
    const vm = vms[0];
    const snapshot = await pool.snapshotVm(vm, { name: 'bench' });
    const rssBefore = process.memoryUsage.rss();
    const vdi = snapshot.disks[0]?.vdiRef ?? '';
    const exportUrl = (format: string): string =>
      `${sim.url}/export_raw_vdi/?session_id=${session}&vdi=${encodeURIComponent(vdi)}&format=${format}`;

    const rows: [string, { bytes: number; seconds: number }, number][] = [];
    for (const format of ['vhd', 'raw'] as const) {
      const baseline: { bytes: number; seconds: number }[] = [];
      const client: { bytes: number; seconds: number }[] = [];
      for (let index = 0; index < runs; index++) {
        baseline.push(await curl(exportUrl(format)));
        client.push(
          await timed(async () =>
            drain(format === 'vhd' ? await pool.exportVhd(vdi) : await pool.exportRaw(vdi)),
          ),
        );
      }
      const base = best(baseline);
      rows.push([`curl ${format} export (baseline)`, base, 1]);
      const mine = best(client);
      rows.push([
        `XapiPool.export${format === 'vhd' ? 'Vhd' : 'Raw'} read to the end`,
        mine,
        mine.bytes / mine.seconds / (base.bytes / base.seconds),
      ]);
      if (format === 'vhd') {
        const parsed: { bytes: number; seconds: number }[] = [];
        for (let index = 0; index < runs; index++) {
          parsed.push(
            await timed(async () => {
              let bytes = 0;
              for await (const item of parseVhdStream(await pool.exportVhd(vdi))) {
                if (item.type === 'block') bytes += item.data.length + item.bitmap.length;
                sampleRss();
              }
              return bytes;
            }),
          );
        }
        const p = best(parsed);
        rows.push([
          'XapiPool.exportVhd + parseVhdStream (block payload)',
          p,
          p.bytes / p.seconds / (base.bytes / base.seconds),
        ]);
      }
    }
    await pool.destroySnapshot(snapshot);
    await pool.close();

    console.log(`disk ${diskSize / GiB} GiB, best of ${runs}, simulator in its own process, 2 cores`);
    for (const [name, result, ratio] of rows) {
      console.log(
        `${name.padEnd(55)} ${(result.bytes / 2 ** 20).toFixed(0).padStart(7)} MiB  ${mbps(result).padStart(10)}  ratio ${ratio.toFixed(2)}`,
      );
    }
    console.log(
      `RSS of the client process: ${(rssBefore / 2 ** 20).toFixed(0)} MiB before the exports, peak ${(peakRss / 2 ** 20).toFixed(0)} MiB during`,
    );
  } finally {
    await sim.stop();
  }
}

void main();
