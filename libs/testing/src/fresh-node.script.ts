import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(__dirname, '..', '..', '..');

/**
 * Runs a CommonJS script in a new Node process at the repository root, with TypeScript sources
 * loadable (swc, the project's tsconfig) and nothing else preloaded, and returns what it wrote to
 * stdout: for checks of process-wide state (what a module loads, how the garbage collector behaves)
 * that the test process itself has already disturbed.
 */
export async function runScriptInFreshNode(script: string): Promise<string> {
  const { stdout } = await run(process.execPath, ['-r', '@swc-node/register', '-e', script], {
    cwd: root,
    env: { ...process.env, SWC_NODE_PROJECT: join(root, 'tsconfig.json') },
  });
  return stdout;
}
