import { spawn, type ChildProcess } from 'node:child_process';
import { freeLoopbackPort, loopbackPortOpen } from './loopback-port';

export { freeLoopbackPort };

/**
 * A test server running as a child process on 127.0.0.1:port: started, killed (SIGKILL, as a
 * crash) and restarted with the same port and data, by its pid.
 */
export class ChildProcessServer {
  private child: ChildProcess | undefined;
  private output = '';

  constructor(
    readonly label: string,
    readonly port: number,
    private readonly command: string,
    private readonly args: readonly string[],
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(timeoutMs = 30_000): Promise<void> {
    if (this.child !== undefined) throw new Error(`${this.label} is already running (pid ${this.child.pid})`);
    this.output = '';
    const child = spawn(this.command, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const keep = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString()).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const state = { exited: false };
    child.once('exit', () => {
      state.exited = true;
    });
    const deadline = Date.now() + timeoutMs;
    while (!(await loopbackPortOpen(this.port))) {
      if (state.exited) {
        this.child = undefined;
        throw new Error(`${this.label} exited before listening on port ${this.port}: ${this.output}`);
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(
          `${this.label} did not listen on port ${this.port} within ${timeoutMs} ms: ${this.output}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Stops the server by its pid (SIGTERM, or SIGKILL to simulate a crash) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}
