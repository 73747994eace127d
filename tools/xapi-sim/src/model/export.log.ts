/** One disk export the pool served (`GET /export_raw_vdi`), recorded when it started. */
export interface VdiExportRecord {
  /** Increases by one per export since the simulator started. */
  sequence: number;
  vdi: string;
  uuid: string;
  /** UUID of the VDI this one is a snapshot of (a backup exports snapshots); null otherwise. */
  snapshotOf: string | null;
  format: 'raw' | 'vhd';
  /** UUID of the base VDI of a differencing export. */
  base: string | null;
  /** Blocks the export sends (VHD) or reads (raw with a block list, or the whole disk). */
  blocks: number;
  /** Blocks sent with a partial sector bitmap (differencing VHD only). */
  partialBlocks: number;
}

/** The most recent exports, for tests to tell how often a disk was read. */
export class ExportLog {
  private readonly records: VdiExportRecord[] = [];
  private sequence = 0;

  constructor(private readonly kept = 10_000) {}

  record(entry: Omit<VdiExportRecord, 'sequence'>): VdiExportRecord {
    const record = { sequence: ++this.sequence, ...entry };
    this.records.push(record);
    if (this.records.length > this.kept) this.records.splice(0, this.records.length - this.kept);
    return record;
  }

  /** The sequence number of the last export (0 before the first). */
  get last(): number {
    return this.sequence;
  }

  /** Exports after sequence number `since`, oldest first. */
  since(since = 0): VdiExportRecord[] {
    return this.records.filter((record) => record.sequence > since).map((record) => ({ ...record }));
  }
}
