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
