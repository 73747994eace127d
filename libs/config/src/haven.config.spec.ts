import { ConfigError, loadConfig } from './haven.config';

describe('loadConfig: HAVEN_TASK_ACK_WAIT_MS', () => {
  it('defaults to 60 s and takes a value in milliseconds', () => {
    expect(loadConfig({}).taskAckWaitMs).toBe(60_000);
    expect(loadConfig({ HAVEN_TASK_ACK_WAIT_MS: '3000' }).taskAckWaitMs).toBe(3_000);
  });

  it.each(['999', '3600001', '2.5', 'soon'])('refuses %s, naming the variable', (value) => {
    let error: unknown;
    try {
      loadConfig({ HAVEN_TASK_ACK_WAIT_MS: value });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      {
        variable: 'HAVEN_TASK_ACK_WAIT_MS',
        message: `must be an integer from 1000 to 3600000 milliseconds (got "${value}")`,
      },
    ]);
  });
});
