import { DATA_PATH_EXEC_ENVIRONMENT, rerunWithExecEnvironment } from './exec-environment';

/** Exits 7 when the child's environment holds every launcher variable with its value, else 1. */
const CHECK = `process.exit(Object.entries(${JSON.stringify(DATA_PATH_EXEC_ENVIRONMENT)}).every(([n, v]) => process.env[n] === v) ? 7 : 1)`;

describe('rerunWithExecEnvironment', () => {
  const withoutLauncher = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !(name in DATA_PATH_EXEC_ENVIRONMENT)),
  );

  it("runs the command again with the launcher's environment and gives back its exit code", async () => {
    const announced: Record<string, string>[] = [];
    await expect(
      rerunWithExecEnvironment(['-e', CHECK], (added) => announced.push(added), withoutLauncher),
    ).resolves.toBe(7);
    expect(announced).toEqual([DATA_PATH_EXEC_ENVIRONMENT]);
  });

  it('runs nothing when the environment already has it, whatever value the operator chose', async () => {
    const announced: unknown[] = [];
    const chosen = Object.fromEntries(Object.keys(DATA_PATH_EXEC_ENVIRONMENT).map((name) => [name, '8']));
    await expect(
      rerunWithExecEnvironment(['-e', 'process.exit(9)'], (added) => announced.push(added), {
        ...withoutLauncher,
        ...chosen,
      }),
    ).resolves.toBeUndefined();
    expect(announced).toEqual([]);
  });
});
