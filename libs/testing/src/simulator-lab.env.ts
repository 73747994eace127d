/**
 * The pause between two `event.from` calls for connections to the XAPI simulator. A task's end is
 * learnt only from the client's event loop, whose pause (Haven's default 50 ms, for real hosts)
 * still makes up most of a tiny backup run. The simulator is local and cheap to ask: its labs
 * pause briefly.
 */
export const SIMULATOR_EVENT_DEBOUNCE_MS = 10;

/** Environment a Haven process started against the simulator adds to its own (see loadConfig). */
export const SIMULATOR_LAB_ENV: Readonly<Record<string, string>> = {
  HAVEN_XAPI_EVENT_DEBOUNCE_MS: String(SIMULATOR_EVENT_DEBOUNCE_MS),
};

/**
 * The environment of an all-in-one Haven on embedded defaults in `dataFolder`, against the
 * simulator, on a free loopback port, with these plugins.
 */
export function simulatorLabAppEnv(dataFolder: string, plugins: readonly string[]): Record<string, string> {
  return {
    ...SIMULATOR_LAB_ENV,
    HAVEN_PORT: '0',
    HAVEN_HOST: '127.0.0.1',
    HAVEN_DATA: dataFolder,
    LOG_LEVEL: 'error',
    HAVEN_PLUGINS: plugins.join(','),
  };
}
