import { secondsLeft } from '@haven/plugin-sdk';

/** A task as the run's summary needs it: its status and latest progress (as the worker published it). */
export interface TaskProgressState {
  status: string;
  progress: Record<string, unknown>;
}

/**
 * A run's bytes, summed over its tasks' latest progress (docs/run-progress.md). Only tasks that
 * reported bytes count (`tasksCounted`): a task not started yet adds nothing, so while some wait,
 * `bytesTotal` and the ETA cover the started ones. The rate is the sum of the running tasks' rates
 * (each over the worker's recent window); the ETA comes from the same function the worker uses.
 */
export interface RunTransfer {
  tasksCounted: number;
  bytesDone: number;
  /** Absent when a counted task has no total (an export whose size is not known ahead). */
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
}

const GAVE_UP = new Set(['failure', 'cancelled']);

function bytesField(progress: Record<string, unknown>, name: string): number | undefined {
  const value = progress[name];
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

export function runTransferOf(tasks: Iterable<TaskProgressState>): RunTransfer {
  let tasksCounted = 0;
  let bytesDone = 0;
  let bytesTotal: number | undefined = 0;
  let bytesPerSecond: number | undefined;
  for (const task of tasks) {
    const done = bytesField(task.progress, 'bytesDone');
    if (done === undefined) continue;
    tasksCounted++;
    bytesDone += done;
    // A task that gave up has nothing left to move: what it moved is its total.
    const total = GAVE_UP.has(task.status) ? done : bytesField(task.progress, 'bytesTotal');
    bytesTotal = bytesTotal === undefined || total === undefined ? undefined : bytesTotal + total;
    const rate = bytesField(task.progress, 'bytesPerSecond');
    // A finished task's last rate is history, not speed now.
    if (task.status === 'running' && rate !== undefined) bytesPerSecond = (bytesPerSecond ?? 0) + rate;
  }
  if (tasksCounted === 0) return { tasksCounted, bytesDone };
  const etaSeconds = secondsLeft(bytesDone, bytesTotal, bytesPerSecond);
  return {
    tasksCounted,
    bytesDone,
    ...(bytesTotal === undefined ? {} : { bytesTotal }),
    ...(bytesPerSecond === undefined ? {} : { bytesPerSecond }),
    ...(etaSeconds === undefined ? {} : { etaSeconds }),
  };
}
