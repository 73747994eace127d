import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Credentials {
  url: string;
  key: string;
}

/** Where `haven login` keeps the gateway URL and key (mode 600); HAVEN_URL / HAVEN_KEY override it. */
export function credentialsFile(env: NodeJS.ProcessEnv = process.env): string {
  return (
    env['HAVEN_CREDENTIALS'] ??
    join(env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'haven', 'credentials.json')
  );
}

export function saveCredentials(credentials: Credentials, env: NodeJS.ProcessEnv = process.env): string {
  const file = credentialsFile(env);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  return file;
}

export function loadCredentials(env: NodeJS.ProcessEnv = process.env): Credentials {
  const url = env['HAVEN_URL'];
  const key = env['HAVEN_KEY'];
  if (url && key) return { url, key };
  try {
    return JSON.parse(readFileSync(credentialsFile(env), 'utf8')) as Credentials;
  } catch {
    throw new CliError(
      'Not logged in: run `haven login --url URL --key KEY` (or set HAVEN_URL and HAVEN_KEY)',
    );
  }
}

/** A failure the CLI reports in one line and exits 1 with. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

interface Problem {
  title?: string;
  detail?: string;
  errors?: { field: string; message: string }[];
}

/** Thin HTTP client of the gateway; problem+json answers become readable CliErrors. */
export class GatewayClient {
  constructor(private readonly credentials: Credentials) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(new URL(path, this.credentials.url), {
        method,
        headers: {
          authorization: `Bearer ${this.credentials.key}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new CliError(
        `Cannot reach the Haven gateway at ${this.credentials.url}: ${(error as Error).message}`,
      );
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    if (!response.ok) {
      let problem: Problem = {};
      try {
        problem = JSON.parse(text) as Problem;
      } catch {
        problem = { detail: text };
      }
      const fields = (problem.errors ?? []).map((e) => `\n  - ${e.field || '(body)'}: ${e.message}`).join('');
      throw new CliError(
        `${response.status} ${problem.title ?? response.statusText}: ${problem.detail ?? ''}${fields}`,
      );
    }
    return JSON.parse(text) as T;
  }

  /**
   * Streams a download to a file; with `resume`, continues a partial file with an HTTP range.
   * Returns the file's final size.
   */
  async download(path: string, file: string, options: { resume: boolean }): Promise<number> {
    const already = options.resume
      ? await stat(file).then(
          (s) => s.size,
          () => 0,
        )
      : 0;
    const response = await fetch(new URL(path, this.credentials.url), {
      headers: {
        authorization: `Bearer ${this.credentials.key}`,
        ...(already > 0 ? { range: `bytes=${already}-` } : {}),
      },
    });
    if (response.status === 416 && already > 0) return already; // already complete
    if (!response.ok || !response.body)
      throw new CliError(`${response.status} ${response.statusText} for ${path}`);
    const append = response.status === 206;
    await pipeline(Readable.fromWeb(response.body), createWriteStream(file, { flags: append ? 'a' : 'w' }));
    return (await stat(file)).size;
  }

  /** Server-Sent Events of a path, one parsed `{event, data}` at a time. */
  async *events(path: string): AsyncGenerator<{ event: string; data: unknown }> {
    const response = await fetch(new URL(path, this.credentials.url), {
      headers: { authorization: `Bearer ${this.credentials.key}`, accept: 'text/event-stream' },
    });
    if (!response.ok || !response.body)
      throw new CliError(`${response.status} ${response.statusText} for ${path}`);
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== undefined && data !== undefined) yield { event, data: JSON.parse(data) as unknown };
      }
    }
  }
}
