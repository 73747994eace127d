import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freeLoopbackPort, loopbackPortOpen } from './loopback-port';
import { setTimeout as sleep } from 'node:timers/promises';
import { scratchDir } from '../scratch';

/**
 * A private nats-server with JetStream (binary `nats-server`), for tests that must stop and
 * restart the server (reconnects) without disturbing the shared one. State lives in a temp
 * folder that survives restarts; stop() ends it by pid.
 */
export class NatsTestServer {
  private child: ChildProcess | undefined;
  private log = '';

  private constructor(
    readonly port: number,
    readonly storeDir: string,
    private readonly removeStore: () => Promise<void>,
  ) {}

  static async start(): Promise<NatsTestServer> {
    const store = await scratchDir('haven-nats-');
    const server = new NatsTestServer(await freeLoopbackPort(), store.path, store.cleanup);
    await server.restart();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts (again) on the same port and store folder; resolves once it accepts connections. */
  async restart(timeoutMs = 15_000): Promise<void> {
    if (this.child !== undefined)
      throw new Error(`nats-server on port ${this.port} already runs (pid ${this.child.pid})`);
    const child = spawn(
      'nats-server',
      ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.child = child;
    this.log = '';
    const keep = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString()).slice(-4_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const deadline = Date.now() + timeoutMs;
    while (!(await loopbackPortOpen(this.port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await this.stop();
        throw new Error(`nats-server did not start on port ${this.port} within ${timeoutMs} ms: ${this.log}`);
      }
      await sleep(50);
    }
    // JetStream comes up just after the listener; its log line says so.
    while (!this.log.includes('Server is ready') && Date.now() < deadline) await sleep(20);
  }

  /** Stops the server by pid (SIGTERM, SIGKILL after 5 s) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killer);
  }

  /** Stops the server and removes its store folder. */
  async dispose(): Promise<void> {
    await this.stop();
    await this.removeStore();
  }
}
