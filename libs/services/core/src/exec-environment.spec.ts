import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DATA_PATH_EXEC_ENVIRONMENT,
  execEnvironmentWarning,
  missingExecEnvironment,
} from './exec-environment';

const ROOT = join(__dirname, '..', '..', '..', '..');

describe('DATA_PATH_EXEC_ENVIRONMENT', () => {
  const variables = Object.entries(DATA_PATH_EXEC_ENVIRONMENT);

  it('sets MALLOC_ARENA_MAX', () => {
    expect(DATA_PATH_EXEC_ENVIRONMENT).toMatchObject({ MALLOC_ARENA_MAX: '2' });
  });

  it('is what the image gives every process', () => {
    const env = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('ENV '))
      .flatMap((line) => line.slice(4).trim().split(/\s+/));
    for (const [name, value] of variables) expect(env).toContain(`${name}=${value}`);
  });

  it("is what the npm scripts starting a transfer worker or the all-in-one set, keeping an operator's value", () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    for (const script of ['start', 'start:transfer', 'demo'])
      for (const [name, value] of variables)
        expect(scripts[script]).toMatch(new RegExp(`^(\\S+=\\S+ )*${name}=\\$\\{${name}:-${value}\\} `));
  });

  it('reports what an environment lacks; a value the operator set counts as set', () => {
    expect(missingExecEnvironment({})).toEqual(DATA_PATH_EXEC_ENVIRONMENT);
    expect(missingExecEnvironment({ MALLOC_ARENA_MAX: ' ' })).toEqual(DATA_PATH_EXEC_ENVIRONMENT);
    expect(missingExecEnvironment({ MALLOC_ARENA_MAX: '4' })).toEqual({});
  });

  it('makes a transfer process launched without it say so at boot, naming the variable and its value', () => {
    expect(execEnvironmentWarning(['transfer'], {})).toEqual({
      msg: expect.stringMatching(
        /^MALLOC_ARENA_MAX not set: .* set MALLOC_ARENA_MAX=2 in the environment that starts it/,
      ),
      missing: { MALLOC_ARENA_MAX: '2' },
    });
    expect(
      execEnvironmentWarning(['gateway', 'catalog', 'transfer'], { MALLOC_ARENA_MAX: '' }),
    ).toBeDefined();
    expect(execEnvironmentWarning(['transfer'], { MALLOC_ARENA_MAX: '2' })).toBeUndefined();
    expect(execEnvironmentWarning(['gateway', 'catalog'], {})).toBeUndefined();
  });
});
