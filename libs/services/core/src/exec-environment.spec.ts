import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DATA_PATH_EXEC_ENVIRONMENT,
  DATA_PATH_NODE_FLAGS,
  execEnvironmentWarning,
  missingExecEnvironment,
  missingNodeFlags,
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
    const flags = [...DATA_PATH_NODE_FLAGS];
    expect(execEnvironmentWarning(['transfer'], {}, flags)).toEqual({
      msg: expect.stringMatching(
        /^MALLOC_ARENA_MAX not set: .* set MALLOC_ARENA_MAX=2 in the environment that starts it/,
      ),
      missing: { MALLOC_ARENA_MAX: '2' },
      missingFlags: [],
    });
    expect(
      execEnvironmentWarning(['gateway', 'catalog', 'transfer'], { MALLOC_ARENA_MAX: '' }, flags),
    ).toBeDefined();
    expect(execEnvironmentWarning(['transfer'], { MALLOC_ARENA_MAX: '2' }, flags)).toBeUndefined();
    expect(execEnvironmentWarning(['gateway', 'catalog'], {}, [])).toBeUndefined();
  });
});

describe('DATA_PATH_NODE_FLAGS', () => {
  it('caps the semi-spaces of the young generation at 1 MiB', () => {
    expect(DATA_PATH_NODE_FLAGS).toEqual(['--max-semi-space-size=1']);
  });

  it('is on the node command line of the image and of the npm scripts starting a transfer worker or the all-in-one', () => {
    const cmd = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
      .split('\n')
      .find((line) => line.startsWith('CMD '));
    for (const flag of DATA_PATH_NODE_FLAGS) expect(cmd).toContain(`exec node ${flag} `);
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    for (const script of ['start', 'start:transfer', 'demo'])
      for (const flag of DATA_PATH_NODE_FLAGS)
        expect(scripts[script]).toMatch(new RegExp(` node (\\S+ )*${flag} `));
  });

  it("reports the flags a process lacks; the operator's own value, on the command line or in NODE_OPTIONS, counts", () => {
    expect(missingNodeFlags([], {})).toEqual(['--max-semi-space-size=1']);
    expect(missingNodeFlags(['--enable-source-maps'], { NODE_OPTIONS: '--trace-warnings' })).toEqual([
      '--max-semi-space-size=1',
    ]);
    expect(missingNodeFlags(['--max-semi-space-size=4'], {})).toEqual([]);
    expect(missingNodeFlags(['--max_semi_space_size=2'], {})).toEqual([]);
    expect(missingNodeFlags([], { NODE_OPTIONS: '--enable-source-maps --max-semi-space-size=8' })).toEqual(
      [],
    );
  });

  it('makes a transfer process started without them say so at boot, naming the flag', () => {
    const warning = execEnvironmentWarning(['transfer'], { MALLOC_ARENA_MAX: '2' }, []);
    expect(warning).toEqual({
      msg: expect.stringMatching(
        /^--max-semi-space-size not set: .* start node with --max-semi-space-size=1, as the image/,
      ),
      missing: {},
      missingFlags: ['--max-semi-space-size=1'],
    });
  });
});
