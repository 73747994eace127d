import { spawn, type ChildProcess } from 'node:child_process';
import { freeLoopbackPort, loopbackPortOpen } from './loopback-port';

export { freeLoopbackPort };

export interface ChildProcessServerOptions {
  /**
   * A line the child prints once it listens, its first capture group the port it bound. With it,
   * the server counts as started on that line from this child only, never because something
   * answers on the port (another process may have taken a port picked by freeLoopbackPort before
   * the child bound it, and the child then died of EADDRINUSE), and the port may be 0: the child
   * picks one and names it; restarts ask for that same port.
   */
  listeningLine?: RegExp;
}

/**
 * A test server running as a child process on 127.0.0.1:port: started, killed (SIGKILL, as a
 * crash) and restarted with the same port and data, by its pid.
 */
export class ChildProcessServer {
  private child: ChildProcess | undefined;
  private output = '';
  private boundPort: number | undefined;

  /** `args` as a function receives the port to ask for: the bound one once known (restarts). */
  constructor(
    readonly label: string,
    private readonly requestedPort: number,
    private readonly command: string,
    private readonly args: readonly string[] | ((port: number) => readonly string[]),
    private readonly options: ChildProcessServerOptions = {},
  ) {
    if (requestedPort === 0 && options.listeningLine === undefined)
      throw new Error(`${label}: port 0 needs a listeningLine naming the port the child bound`);
  }

  /** The port the server listens on (known once started when it was asked for port 0). */
  get port(): number {
    return this.boundPort ?? this.requestedPort;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The last 4000 characters the server printed (stdout and stderr), across restarts. */
  get recentOutput(): string {
    return this.output;
  }

  async start(timeoutMs = 30_000): Promise<void> {
    if (this.child !== undefined) throw new Error(`${this.label} is already running (pid ${this.child.pid})`);
    const port = this.port;
    const args = typeof this.args === 'function' ? this.args(port) : this.args;
    const child = spawn(this.command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    // Kept across restarts: why the previous run ended can matter as much as this start.
    this.output = `${this.output}[${this.label} pid ${child.pid}]\n`.slice(-4000);
    const keep = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString()).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const listeningLine = this.options.listeningLine;
    if (listeningLine === undefined) await this.waitForPort(child, port, timeoutMs);
    else this.boundPort = await this.waitForLine(child, port, listeningLine, timeoutMs);
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

  private async waitForPort(child: ChildProcess, port: number, timeoutMs: number): Promise<void> {
    const state = { exited: false };
    child.once('exit', () => {
      state.exited = true;
    });
    const deadline = Date.now() + timeoutMs;
    while (!(await loopbackPortOpen(port))) {
      if (state.exited) {
        this.child = undefined;
        throw new Error(`${this.label} exited before listening on port ${port}: ${this.output}`);
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(
          `${this.label} did not listen on port ${port} within ${timeoutMs} ms: ${this.output}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (state.exited) {
      this.child = undefined;
      throw new Error(`${this.label} exited; port ${port} is held by another process: ${this.output}`);
    }
  }

  private async waitForLine(
    child: ChildProcess,
    port: number,
    listeningLine: RegExp,
    timeoutMs: number,
  ): Promise<number> {
    let seen = '';
    const bound = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${this.label} did not say it listens within ${timeoutMs} ms: ${this.output}`));
      }, timeoutMs);
      const onData = (chunk: Buffer): void => {
        seen += chunk.toString();
        const match = listeningLine.exec(seen);
        if (match === null) return;
        finish();
        resolve(Number(match[1]));
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        finish();
        reject(
          new Error(
            `${this.label} exited (${signal ?? `code ${code}`}) before listening on port ${port === 0 ? 'any' : port}: ${this.output}`,
          ),
        );
      };
      const finish = (): void => {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.off('exit', onExit);
      };
      child.stdout?.on('data', onData);
      child.once('exit', onExit);
    }).catch(async (error: unknown) => {
      await this.stop('SIGKILL');
      throw error;
    });
    if (!Number.isInteger(bound) || bound <= 0 || (port !== 0 && bound !== port)) {
      await this.stop('SIGKILL');
      throw new Error(`${this.label} says it listens on port ${bound}, asked for ${port}: ${this.output}`);
    }
    return bound;
  }
}
