import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { constants as osConstants } from 'node:os';

/**
 * What the launchers of data-moving processes (transfer workers, all-in-one) put in the
 * environment at exec: the Docker image (`ENV`), the `start` and `start:transfer` npm scripts. These
 * are read by the C library or the runtime as the process starts, so a process cannot set them for
 * itself. The backup bench re-executes itself with them, so it measures the worker production runs.
 *
 * MALLOC_ARENA_MAX=2: glibc gives each thread that allocates its own malloc arena (up to 8 per
 * core); with libuv's 16 threads compressing and hashing 2 MiB chunks they held 12-28 MiB that the
 * main arena would have reused (docs/benchmarks/jobs.md, "Worker memory: key cache, malloc
 * arenas, restore").
 */
export const DATA_PATH_EXEC_ENVIRONMENT: Readonly<Record<string, string>> = Object.freeze({
  MALLOC_ARENA_MAX: '2',
});

/**
 * Node flags the same launchers put on the command line (V8 reads them as the heap is set up).
 *
 * --max-semi-space-size=1 (MiB): V8 grows the young generation to 16 MiB per semi-space under
 * allocation and keeps it, ~20-40 MiB of committed heap the data path does not need (its bytes
 * live in Buffers, outside the heap); with 1 MiB a transfer worker rests ~17 MiB lower and peaks
 * ~17-32 MiB lower at the same throughput (docs/benchmarks/jobs.md, "Worker memory in a real
 * worker process").
 */
export const DATA_PATH_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=1']);

/** The variables of DATA_PATH_EXEC_ENVIRONMENT this environment lacks (an operator's own value counts). */
export function missingExecEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return Object.fromEntries(
    Object.entries(DATA_PATH_EXEC_ENVIRONMENT).filter(([name]) => (env[name] ?? '').trim() === ''),
  );
}

/** The name of a flag (`--max-semi-space-size` of `--max-semi-space-size=1`). */
function flagName(flag: string): string {
  const [name = flag] = flag.split('=');
  return name.replace(/_/g, '-');
}

/**
 * The flags of DATA_PATH_NODE_FLAGS a process started with `execArgv` and `NODE_OPTIONS` lacks
 * (the operator's own value of a flag counts).
 */
export function missingNodeFlags(
  execArgv: readonly string[] = process.execArgv,
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  const given = [...execArgv, ...(env['NODE_OPTIONS'] ?? '').split(/\s+/)].map(flagName);
  return DATA_PATH_NODE_FLAGS.filter((flag) => !given.includes(flagName(flag)));
}

/**
 * What a process that moves disk data (the `transfer` role, alone or in the all-in-one) logs at
 * boot when its launcher left out part of DATA_PATH_EXEC_ENVIRONMENT or DATA_PATH_NODE_FLAGS
 * (started by hand from `dist/`, a unit file of the operator's own); undefined when nothing is
 * missing or the process moves no data.
 */
export function execEnvironmentWarning(
  roles: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  execArgv: readonly string[] = process.execArgv,
): { msg: string; missing: Record<string, string>; missingFlags: string[] } | undefined {
  if (!roles.includes('transfer')) return undefined;
  const missing = missingExecEnvironment(env);
  const missingFlags = missingNodeFlags(execArgv, env);
  const names = Object.keys(missing);
  if (names.length === 0 && missingFlags.length === 0) return undefined;
  const assignments = Object.entries(missing)
    .map(([name, value]) => `${name}=${value}`)
    .join(' ');
  const parts = [
    ...(names.length === 0
      ? []
      : [`set ${assignments} in the environment that starts it (glibc reads it only at exec)`]),
    ...(missingFlags.length === 0 ? [] : [`start node with ${missingFlags.join(' ')}`]),
  ];
  return {
    msg:
      `${[...names, ...missingFlags.map(flagName)].join(', ')} not set: this transfer process's memory will ` +
      `run higher than measured; ${parts.join(', and ')}, as the image and the npm start scripts do`,
    missing,
    missingFlags,
  };
}

/**
 * For a benchmark that stands in for a worker: when this process lacks part of
 * DATA_PATH_EXEC_ENVIRONMENT or DATA_PATH_NODE_FLAGS, runs `node <flags> <args>` again with them
 * (stdio shared, SIGINT and SIGTERM passed on) and resolves with the child's exit code; resolves
 * undefined, running nothing, when nothing is missing and the caller should go on itself.
 * `announce` is told what is added.
 */
export async function rerunWithExecEnvironment(
  args: readonly string[],
  announce: (added: Record<string, string>, flags: string[]) => void = () => undefined,
  env: NodeJS.ProcessEnv = process.env,
  execArgv: readonly string[] = process.execArgv,
): Promise<number | undefined> {
  const added = missingExecEnvironment(env);
  const flags = missingNodeFlags(execArgv, env);
  if (Object.keys(added).length === 0 && flags.length === 0) return undefined;
  announce(added, flags);
  const child = spawn(process.execPath, [...flags, ...args], { stdio: 'inherit', env: { ...env, ...added } });
  const passOn = (signal: NodeJS.Signals): void => void child.kill(signal);
  process.on('SIGINT', passOn).on('SIGTERM', passOn);
  try {
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    return code ?? (signal === null ? 1 : 128 + osConstants.signals[signal]);
  } finally {
    process.off('SIGINT', passOn).off('SIGTERM', passOn);
  }
}
