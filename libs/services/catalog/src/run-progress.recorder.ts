import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import type { Bus, BusSubscription } from '@haven/bus';
import {
  type DamagedRestorePointReport,
  REPOSITORY_VERIFY_TASK,
  RUN_PROGRESS,
  type RunProgressEvent,
  START_MAINTENANCE,
} from '@haven/contracts';
import { insertRestorePoint } from '@haven/db';
import type { JsonLogger } from '@haven/observability';
import type { CommittedRestorePoint, RestorePointReference, RetainedRestorePoint } from '@haven/plugin-sdk';
import { HAVEN_BUS, HAVEN_LOGGER } from '@haven/service-core';
import { dispatchWaitingTasks } from './task.dispatcher';

const TERMINAL_SQL = `('success', 'partial', 'failure', 'cancelled')`;
const TERMINAL_TASK = new Set(['success', 'failure', 'cancelled']);

/**
 * Stores what workers publish. Catalog replicas share one queue group, so each event is written
 * once; a finished task or run is never reopened by a late event. A task's end frees a slot of its
 * run: the next waiting task is queued. When a run's last task ends, the run ends too (success,
 * partial or failure), decided in one statement so two replicas cannot both decide it, and the
 * decision is published for live followers (SSE, CLI); a backup run whose retention expired restore
 * points, or a run that deleted one by hand, then starts a garbage collection of each remote it pruned.
 */
@Injectable()
export class RunProgressRecorder implements OnApplicationBootstrap, OnModuleDestroy {
  private subscription?: BusSubscription;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.subscription = this.bus.subscribe(RUN_PROGRESS, (event) => this.record(event), { queue: 'catalog' });
    await this.subscription.ready();
  }

  async onModuleDestroy(): Promise<void> {
    await this.subscription?.unsubscribe();
  }

  async record(event: RunProgressEvent): Promise<void> {
    try {
      if (event.taskId === undefined) return; // run-level events are decided here or by the launcher
      const taskId = event.taskId;
      const finished = await this.dataSource.transaction(async (tx) => {
        // Events of one run are recorded one at a time: otherwise two tasks ending together would
        // each see the other still open, and nobody would end the run.
        await tx.query('SELECT 1 FROM runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE', [
          event.runId,
          event.tenantId,
        ]);
        const type = await this.recordTask(tx, { ...event, taskId });
        if (event.status === 'success') await this.recordRestorePoints(tx, event);
        if (event.status === 'success' && type === REPOSITORY_VERIFY_TASK)
          await this.recordDamage(tx, { ...event, taskId });
        if (type !== undefined && TERMINAL_TASK.has(event.status))
          await dispatchWaitingTasks(tx, this.bus, event.tenantId, event.runId);
        return this.finishRunIfDone(tx, event.tenantId, event.runId);
      });
      if (finished) {
        await this.bus.publish(RUN_PROGRESS, finished);
        // Not awaited: asking the scheduler must not hold up the recording of other events.
        this.collectGarbageAfterPrune(event.tenantId, event.runId).catch((error: unknown) =>
          this.logger.error(
            { msg: 'could not look for pruned remotes', runId: event.runId, error: String(error) },
            'RunProgressRecorder',
          ),
        );
      }
    } catch (error) {
      this.logger.error(
        {
          msg: 'could not record run progress',
          runId: event.runId,
          taskId: event.taskId,
          error: String(error),
        },
        'RunProgressRecorder',
      );
    }
  }

  /** Returns the task's type when this event changed it (an ended task is never reopened). */
  private async recordTask(
    tx: EntityManager,
    event: RunProgressEvent & { taskId: string },
  ): Promise<string | undefined> {
    const terminal = TERMINAL_TASK.has(event.status);
    const rows: { type: string }[] = await tx.query(
      `WITH changed AS (UPDATE tasks SET
         status = $3,
         progress = CASE WHEN $4::jsonb = '{}'::jsonb THEN progress ELSE $4::jsonb END,
         attempts = GREATEST(attempts, COALESCE($5::int, attempts)),
         worker = COALESCE($6, worker),
         started_at = CASE WHEN $3 = 'running' THEN COALESCE(started_at, $7::timestamptz) ELSE started_at END,
         finished_at = CASE WHEN $8 THEN $7::timestamptz ELSE finished_at END,
         error = CASE WHEN $3 = 'success' THEN NULL ELSE COALESCE($9, error) END,
         result = COALESCE($10::jsonb, result)
       WHERE id = $1 AND tenant_id = $2 AND status NOT IN ${TERMINAL_SQL}
       RETURNING type)
       SELECT type FROM changed`,
      [
        event.taskId,
        event.tenantId,
        event.status,
        JSON.stringify(event.progress),
        event.attempt ?? null,
        event.worker ?? null,
        event.at,
        terminal,
        event.message ?? null,
        event.result === undefined ? null : JSON.stringify(event.result),
      ],
    );
    return rows.at(0)?.type;
  }

  /**
   * A verify's findings: the restore points it names are marked damaged (shown by the API, and a
   * smart backup takes a full instead of building on them); after a complete verify, the others of
   * the remote are marked sound again.
   */
  private async recordDamage(tx: EntityManager, event: RunProgressEvent & { taskId: string }): Promise<void> {
    const tasks: { input: { remoteId?: string } }[] = await tx.query(
      'SELECT input FROM tasks WHERE id = $1 AND tenant_id = $2',
      [event.taskId, event.tenantId],
    );
    const remoteId = tasks.at(0)?.input.remoteId;
    if (remoteId === undefined) return;
    const damaged = (event.result?.['damagedRestorePoints'] ?? []) as DamagedRestorePointReport[];
    for (const point of damaged)
      await tx.query(
        `UPDATE restore_points SET damaged_at = $4, damage = $5
         WHERE tenant_id = $1 AND remote_id = $2 AND manifest_key = $3`,
        [
          event.tenantId,
          remoteId,
          point.manifestKey,
          event.at,
          JSON.stringify({ reasons: point.reasons, chunks: point.chunks, runId: event.runId }),
        ],
      );
    if (event.result?.['complete'] === true)
      await tx.query(
        `UPDATE restore_points SET damaged_at = NULL, damage = NULL
         WHERE tenant_id = $1 AND remote_id = $2 AND damaged_at IS NOT NULL AND NOT (manifest_key = ANY($3::text[]))`,
        [event.tenantId, remoteId, damaged.map((point) => point.manifestKey)],
      );
  }

  /**
   * Retention (of a backup run) or an operator (a delete-restore-point run) deleted restore points,
   * so chunks only they used are garbage now: one `gc` run per remote this ended run pruned. The
   * collector's safety window still spares young chunks.
   */
  private async collectGarbageAfterPrune(tenantId: string, runId: string): Promise<void> {
    const rows: { remote_id: string; trigger: 'manual' | 'schedule'; kind: string }[] =
      await this.dataSource.query(
        `SELECT DISTINCT e->>'remoteId' AS remote_id, r.trigger, r.kind
         FROM runs r
         JOIN tasks t ON t.run_id = r.id
         CROSS JOIN jsonb_array_elements(COALESCE(t.result->'expiredRestorePoints', '[]'::jsonb)) e
         WHERE r.id = $1 AND r.tenant_id = $2 AND r.kind IN ('backup', 'delete-restore-point')
           AND t.status = 'success'`,
        [runId, tenantId],
      );
    for (const row of rows) {
      try {
        const started = await this.bus.request(
          START_MAINTENANCE,
          {
            tenantId,
            remoteId: row.remote_id,
            kind: 'gc',
            trigger: row.trigger,
            note:
              row.kind === 'backup'
                ? `retention of run ${runId} deleted restore points`
                : `run ${runId} deleted a restore point`,
          },
          { timeoutMs: 30_000 },
        );
        this.logger.log(
          {
            msg: 'garbage collection started after prune',
            runId,
            gcRunId: started.runId,
            remoteId: row.remote_id,
          },
          'RunProgressRecorder',
        );
      } catch (error) {
        this.logger.error(
          {
            msg: 'could not start the garbage collection after a prune; run POST /remotes/:id/gc',
            runId,
            remoteId: row.remote_id,
            error: String(error),
          },
          'RunProgressRecorder',
        );
      }
    }
  }

  /**
   * Restore points a task committed (listed in its result) become catalog rows; the manifest on the
   * remote stays the source of truth, and a redelivered result adds nothing twice.
   */
  private async recordRestorePoints(tx: EntityManager, event: RunProgressEvent): Promise<void> {
    // Retention: what the task deleted from its remotes leaves the catalog; kept ones get their GFS tags.
    for (const gone of (event.result?.['expiredRestorePoints'] ?? []) as RestorePointReference[])
      await tx.query(
        `DELETE FROM restore_points WHERE tenant_id = $1 AND remote_id = $2 AND manifest_key = $3`,
        [event.tenantId, gone.remoteId, gone.manifestKey],
      );
    for (const kept of (event.result?.['retainedRestorePoints'] ?? []) as RetainedRestorePoint[])
      await tx.query(
        `UPDATE restore_points SET gfs_tags = $4 WHERE tenant_id = $1 AND remote_id = $2 AND manifest_key = $3`,
        [event.tenantId, kept.remoteId, kept.manifestKey, kept.gfsTags],
      );
    const points = event.result?.['restorePoints'];
    if (!Array.isArray(points)) return;
    const runs: { job_id: string }[] = await tx.query(
      'SELECT job_id FROM runs WHERE id = $1 AND tenant_id = $2',
      [event.runId, event.tenantId],
    );
    const jobId = runs.at(0)?.job_id ?? null;
    for (const point of points as CommittedRestorePoint[])
      await insertRestorePoint(tx, {
        tenantId: event.tenantId,
        remoteId: point.remoteId,
        jobId,
        runId: event.runId,
        vmUuid: point.vmUuid,
        vmName: point.vmName,
        kind: point.kind,
        manifestKey: point.manifestKey,
        logicalBytes: point.logicalBytes,
        storedBytes: point.storedBytes,
        gfsTags: point.gfsTags ?? [],
        takenAt: point.takenAt,
        // A result without it (a worker of an older release) was committed just before it was reported.
        committedAt: point.committedAt ?? new Date(),
      });
  }

  /** Ends the run when none of its tasks is still open; returns the event to publish, if it ended now. */
  private async finishRunIfDone(
    tx: EntityManager,
    tenantId: string,
    runId: string,
  ): Promise<RunProgressEvent | undefined> {
    const rows: {
      status: RunProgressEvent['status'];
      progress: Record<string, unknown>;
      error: string | null;
    }[] = await tx.query(
      // Wrapped in a SELECT so the driver returns the rows (an UPDATE answers [rows, count]).
      `WITH counts AS (
         SELECT count(*) FILTER (WHERE status = 'success') AS ok,
                count(*) FILTER (WHERE status IN ('failure', 'cancelled')) AS failed,
                count(*) FILTER (WHERE status NOT IN ${TERMINAL_SQL}) AS open
         FROM tasks WHERE run_id = $1 AND tenant_id = $2)
       , finished AS (UPDATE runs SET
         status = CASE WHEN counts.failed = 0 THEN 'success' WHEN counts.ok = 0 THEN 'failure' ELSE 'partial' END,
         finished_at = now(),
         progress = runs.progress || jsonb_build_object('succeeded', counts.ok, 'failed', counts.failed),
         error = CASE WHEN counts.failed = 0 THEN NULL ELSE counts.failed || ' of ' || (counts.ok + counts.failed) || ' tasks failed' END
       FROM counts
       WHERE runs.id = $1 AND runs.tenant_id = $2 AND counts.open = 0 AND runs.status NOT IN ${TERMINAL_SQL}
       RETURNING runs.status, runs.progress, runs.error)
       SELECT status, progress, error FROM finished`,
      [runId, tenantId],
    );
    const run = rows.at(0);
    if (!run) return undefined;
    return {
      tenantId,
      runId,
      status: run.status,
      progress: run.progress,
      message: run.error ?? undefined,
      at: new Date().toISOString(),
    };
  }
}
