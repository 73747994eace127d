import { join } from 'node:path';
import { scratchDir } from '../scratch';
import { ChildProcessServer } from './child-process.server';

/** What the simulator's CLI prints once it listens (tools/xapi-sim/src/cli.ts), with the port. */
const SIMULATOR_LISTENING = /xapi-sim listening on http:\/\/[^\s/]+:(\d+)[\s/]/;
/** The slave host's line, printed just before SIMULATOR_LISTENING when it has one. */
const SLAVE_LISTENING = /xapi-sim slave host listening on (http:\/\/[^\s/]+:\d+)[\s/]/g;

export interface XapiSimServerOptions {
  vms?: number;
  /** e.g. `64MiB`, `10G`, or bytes. */
  diskSize?: string;
  seed?: string;
  /** Fraction of seeded disk blocks holding data (the simulator's default when absent). */
  allocation?: number;
  user?: string;
  password?: string;
  /**
   * Also serve a slave host of the pool on this loopback address (e.g. `127.0.0.2`), at the
   * master's port: logins there answer HOST_IS_SLAVE naming the master (`slaveUrl`).
   */
  slaveAddress?: string;
}

/**
 * The XAPI simulator (tools/xapi-sim) as its own process on 127.0.0.1, for suites that need a pool
 * outside the test process: distributed-mode end-to-end runs, or a pool that crashes (SIGKILL) and
 * comes back with the same state. In-process suites can call `startXapiSimulator` from
 * `@haven/xapi-sim` instead. The workload API is reached over HTTP (`workload`).
 */
export class XapiSimTestServer {
  private announcedSlaveUrl: string | undefined;

  private constructor(
    private readonly server: ChildProcessServer,
    readonly stateDir: string,
    readonly user: string,
    readonly password: string,
    private readonly removeState: () => Promise<void>,
  ) {
    this.readAnnouncedSlaveUrl();
  }

  static async start(options: XapiSimServerOptions = {}): Promise<XapiSimTestServer> {
    const state = await scratchDir('haven-xapi-sim-');
    const user = options.user ?? 'root';
    const password = options.password ?? 'password';
    const root = join(__dirname, '..', '..', '..', '..');
    // Port 0: the simulator binds a free port itself and names it (SIMULATOR_LISTENING); a port
    // picked here and bound seconds later by the child could be taken by another process meanwhile.
    const server = new ChildProcessServer(
      'xapi-sim',
      0,
      process.execPath,
      (port) => [
        join(root, 'bin', 'run.js'),
        join(root, 'tools', 'xapi-sim', 'src', 'cli.ts'),
        '--port',
        String(port),
        '--state',
        state.path,
        '--vms',
        String(options.vms ?? 2),
        '--disk-size',
        options.diskSize ?? '64MiB',
        '--seed',
        options.seed ?? 'haven',
        ...(options.allocation === undefined ? [] : ['--allocation', String(options.allocation)]),
        '--user',
        user,
        '--password',
        password,
        ...(options.slaveAddress === undefined ? [] : ['--slave-address', options.slaveAddress]),
      ],
      { listeningLine: SIMULATOR_LISTENING },
    );
    await server.start(120_000);
    return new XapiSimTestServer(server, state.path, user, password, state.cleanup);
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.port}`;
  }

  /** The slave host's URL as the simulator announced it (started with `slaveAddress`). */
  get slaveUrl(): string {
    if (this.announcedSlaveUrl === undefined)
      throw new Error('this simulator serves no slave host (start it with slaveAddress)');
    return this.announcedSlaveUrl;
  }

  /** Read once started, before later output can push the line out of `recentOutput`. */
  private readAnnouncedSlaveUrl(): void {
    this.announcedSlaveUrl = [...this.server.recentOutput.matchAll(SLAVE_LISTENING)].at(-1)?.[1];
  }

  get pid(): number | undefined {
    return this.server.pid;
  }

  /** What the simulator printed lately (its port, why it closed…), across restarts. */
  get output(): string {
    return this.server.recentOutput;
  }

  /** Calls the simulator's workload API (`/_sim/...`) and returns its JSON answer. */
  async workload<T = unknown>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.url}/_sim/${path.replace(/^\//, '')}`, {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const answer = (await response.json()) as T;
    if (!response.ok)
      throw new Error(
        `xapi-sim ${method} /_sim/${path} answered ${response.status}: ${JSON.stringify(answer)}`,
      );
    return answer;
  }

  /**
   * Sets the simulated pool's time (what its snapshots record as snapshot_time) to run on from
   * `at`, or to stand still there when `frozen`; null goes back to the real time.
   */
  async setClock(
    at: Date | null,
    options: { frozen?: boolean } = {},
  ): Promise<{ now: string; offsetMs: number; frozen: boolean }> {
    return this.workload('POST', 'clock', { now: at === null ? null : at.toISOString(), ...options });
  }

  /** SIGKILL (a crash) or SIGTERM (state written first), then the same port and state again. */
  async restart(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.server.stop(signal);
    await this.server.start(120_000);
    this.readAnnouncedSlaveUrl();
  }

  async stop(): Promise<void> {
    await this.server.stop();
    await this.removeState();
  }
}
