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

/** The variables of DATA_PATH_EXEC_ENVIRONMENT this environment lacks (an operator's own value counts). */
export function missingExecEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return Object.fromEntries(
    Object.entries(DATA_PATH_EXEC_ENVIRONMENT).filter(([name]) => (env[name] ?? '').trim() === ''),
  );
}

/**
 * What a process that moves disk data (the `transfer` role, alone or in the all-in-one) logs at
 * boot when its launcher left out part of DATA_PATH_EXEC_ENVIRONMENT (started by hand from
 * `dist/`, a unit file of the operator's own); undefined when nothing is missing or the process
 * moves no data.
 */
export function execEnvironmentWarning(
  roles: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { msg: string; missing: Record<string, string> } | undefined {
  if (!roles.includes('transfer')) return undefined;
  const missing = missingExecEnvironment(env);
  const names = Object.keys(missing);
  if (names.length === 0) return undefined;
  const assignments = Object.entries(missing)
    .map(([name, value]) => `${name}=${value}`)
    .join(' ');
  return {
    msg:
      `${names.join(', ')} not set: this transfer process's memory will run higher than measured ` +
      `(glibc reads it only at exec); set ${assignments} in the environment that starts it, as the ` +
      'image and the npm start scripts do',
    missing,
  };
}

/**
 * For a benchmark that stands in for a worker: when this process lacks part of
 * DATA_PATH_EXEC_ENVIRONMENT, runs `node <args>` again with it (stdio shared, SIGINT and SIGTERM
 * passed on) and resolves with the child's exit code; resolves undefined, running nothing, when the
 * environment is complete and the caller should go on itself. `announce` is told what is added.
 */
export async function rerunWithExecEnvironment(
  args: readonly string[],
  announce: (added: Record<string, string>) => void = () => undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number | undefined> {
  const added = missingExecEnvironment(env);
  if (Object.keys(added).length === 0) return undefined;
  announce(added);
  const child = spawn(process.execPath, args, { stdio: 'inherit', env: { ...env, ...added } });
  const passOn = (signal: NodeJS.Signals): void => void child.kill(signal);
  process.on('SIGINT', passOn).on('SIGTERM', passOn);
  try {
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    return code ?? (signal === null ? 1 : 128 + osConstants.signals[signal]);
  } finally {
    process.off('SIGINT', passOn).off('SIGTERM', passOn);
  }
}
