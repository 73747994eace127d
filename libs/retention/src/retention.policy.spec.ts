import { DateTime } from 'luxon';
import {
  checkRetentionPolicy,
  decideRetention,
  gfsBucket,
  type RetentionCandidate,
} from './retention.policy';

const ZONE = 'Europe/Paris';

/** One backup a day at 02:30 Paris time, from `from` to `to` inclusive (ISO dates). */
function dailyBackups(from: string, to: string): RetentionCandidate[] {
  const points: RetentionCandidate[] = [];
  for (
    let day = DateTime.fromISO(from, { zone: ZONE });
    day <= DateTime.fromISO(to, { zone: ZONE });
    day = day.plus({ days: 1 })
  ) {
    const at = day.set({ hour: 2, minute: 30 });
    points.push({
      id: at.toISODate() ?? '',
      takenAt: at.toJSDate(),
      committedAt: at.plus({ minutes: 5 }).toJSDate(),
    });
  }
  return points;
}

describe('GFS retention', () => {
  it('keeps exactly the expected set after a year of daily backups pruned after every run', () => {
    const policy = { gfs: { daily: 7, weekly: 4, monthly: 12, yearly: 2 } };
    // Prune after each run, as the scheduler does: what was expired never comes back.
    let kept: RetentionCandidate[] = [];
    for (const point of dailyBackups('2025-01-01', '2025-12-31')) {
      kept.push(point);
      const decision = decideRetention(kept, policy, ZONE);
      kept = kept.filter((p) => decision.keep.has(p.id));
    }
    const decision = decideRetention(kept, policy, ZONE);
    const firsts = Array.from({ length: 12 }, (_, m) => `2025-${String(m + 1).padStart(2, '0')}-01`);
    expect(kept.map((p) => p.id).sort()).toEqual(
      [
        ...firsts,
        '2025-12-08',
        '2025-12-15',
        '2025-12-22',
        '2025-12-25',
        '2025-12-26',
        '2025-12-27',
        '2025-12-28',
        '2025-12-29',
        '2025-12-30',
        '2025-12-31',
      ].sort(),
    );
    expect(decision.keep.get('2025-01-01')).toEqual(['monthly', 'yearly']);
    expect(decision.keep.get('2025-12-29')).toEqual(['daily', 'weekly']); // Monday of ISO week 2026-W01
    expect(decision.keep.get('2025-12-01')).toEqual(['monthly']); // its ISO week (W49) is older than the last four
    expect(decision.keep.get('2025-12-31')).toEqual(['latest', 'daily']);
    expect(decision.expire).toEqual([]);
  });

  it('counts days in the policy time zone, not in UTC', () => {
    // 23:30 UTC on 31 December is already 1 January in Paris.
    const late = new Date('2025-12-31T23:30:00Z');
    expect(gfsBucket('daily', late, ZONE)).toBe('2026-01-01');
    expect(gfsBucket('yearly', late, ZONE)).toBe('2026');
    expect(gfsBucket('daily', late, 'UTC')).toBe('2025-12-31');
    expect(gfsBucket('weekly', new Date('2021-01-03T12:00:00Z'), ZONE)).toBe('2020-W53');
  });

  it('keeps the oldest restore point of a bucket, and always the newest one', () => {
    const points = [
      { id: 'a', takenAt: new Date('2025-06-02T01:00:00Z'), committedAt: new Date('2025-06-02T01:10:00Z') },
      { id: 'b', takenAt: new Date('2025-06-02T09:00:00Z'), committedAt: new Date('2025-06-02T09:10:00Z') },
      { id: 'c', takenAt: new Date('2025-06-02T17:00:00Z'), committedAt: new Date('2025-06-02T17:10:00Z') },
    ];
    const decision = decideRetention(points, { gfs: { daily: 3 } }, ZONE);
    expect([...decision.keep.entries()]).toEqual([
      ['c', ['latest']],
      ['a', ['daily']],
    ]);
    expect(decision.expire).toEqual(['b']);
  });

  it('orders restore points taken in the same second by their commit: the later one is the latest', () => {
    // XAPI gives snapshot times to the second; the ids are written so that ordering by id is wrong.
    const second = new Date('2025-06-02T17:00:00Z');
    const points = [
      { id: 'z-first', takenAt: second, committedAt: new Date('2025-06-02T17:00:00.400Z') },
      { id: 'a-second', takenAt: second, committedAt: new Date('2025-06-02T17:00:00.900Z') },
    ];
    const keepOne = decideRetention(points, { keep: 1 }, ZONE);
    expect([...keepOne.keep.keys()]).toEqual(['a-second']);
    expect(keepOne.expire).toEqual(['z-first']);
    // The oldest of the day is the one committed first.
    const daily = decideRetention([...points].reverse(), { gfs: { daily: 1 } }, ZONE);
    expect(daily.keep.get('z-first')).toEqual(['daily']);
    expect(daily.keep.get('a-second')).toEqual(['latest']);
  });

  it('keeps the newest N with keep', () => {
    const points = dailyBackups('2025-03-01', '2025-03-10');
    const decision = decideRetention(points, { keep: 3 }, ZONE);
    expect([...decision.keep.keys()].sort()).toEqual(['2025-03-08', '2025-03-09', '2025-03-10']);
    expect(decision.expire).toHaveLength(7);
    expect(decision.expire[0]).toBe('2025-03-01');
  });

  it('refuses policies that cannot be applied, naming why', () => {
    expect(() => checkRetentionPolicy({ keep: 3, gfs: { daily: 7 } }, ZONE)).toThrow(
      /keep the same restore points twice/,
    );
    expect(() => checkRetentionPolicy({ keep: 0 }, ZONE)).toThrow(
      /keep must be a whole number of at least 1/,
    );
    expect(() => checkRetentionPolicy({ gfs: { weekly: 0 } }, ZONE)).toThrow(/gfs.weekly must be/);
    expect(() => checkRetentionPolicy({}, ZONE)).toThrow(/needs keep or at least one gfs level/);
    expect(() => checkRetentionPolicy({ keep: 1 }, 'Mars/Olympus')).toThrow(/not a known time zone/);
  });
});
