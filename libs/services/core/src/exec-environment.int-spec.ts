import {
  DATA_PATH_EXEC_ENVIRONMENT,
  DATA_PATH_NODE_FLAGS,
  rerunWithExecEnvironment,
} from './exec-environment';

/**
 * Exits 7 when the child's environment holds every launcher variable with its value and it was
 * started with every launcher flag, else 1.
 */
const CHECK = `process.exit(Object.entries(${JSON.stringify(DATA_PATH_EXEC_ENVIRONMENT)}).every(([n, v]) => process.env[n] === v) && ${JSON.stringify(DATA_PATH_NODE_FLAGS)}.every((f) => process.execArgv.includes(f)) ? 7 : 1)`;

describe('rerunWithExecEnvironment', () => {
  const withoutLauncher = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !(name in DATA_PATH_EXEC_ENVIRONMENT)),
  );

  it("runs the command again with the launcher's environment and gives back its exit code", async () => {
    const announced: unknown[] = [];
    await expect(
      rerunWithExecEnvironment(
        ['-e', CHECK],
        (added, flags) => announced.push({ added, flags }),
        withoutLauncher,
        [],
      ),
    ).resolves.toBe(7);
    expect(announced).toEqual([{ added: DATA_PATH_EXEC_ENVIRONMENT, flags: DATA_PATH_NODE_FLAGS }]);
  });

  it('runs nothing when the environment already has it, whatever value the operator chose', async () => {
    const announced: unknown[] = [];
    const chosen = Object.fromEntries(Object.keys(DATA_PATH_EXEC_ENVIRONMENT).map((name) => [name, '8']));
    await expect(
      rerunWithExecEnvironment(
        ['-e', 'process.exit(9)'],
        (added) => announced.push(added),
        { ...withoutLauncher, ...chosen },
        ['--max-semi-space-size=4'],
      ),
    ).resolves.toBeUndefined();
    expect(announced).toEqual([]);
  });
});
