import { validateAgainstSchema } from '@haven/plugin-sdk';
import {
  BACKUP_INCREMENTAL_SETTINGS_SCHEMA,
  backupSettings,
  checkSnapshotNameTemplate,
  snapshotName,
  unknownSnapshotNamePlaceholders,
} from './backup-incremental.settings';
import { backupIncrementalPlugin } from './backup-incremental.plugin';

const values = { vm: 'web-01', job: 'nightly', date: new Date('2026-12-07T03:04:05.678Z') };

describe('snapshot name template', () => {
  it('replaces {vm}, {job} and {date} (ISO 8601, UTC), every occurrence', () => {
    expect(snapshotName('[Haven] {vm} {date}', values)).toBe('[Haven] web-01 2026-12-07T03:04:05.678Z');
    expect(snapshotName('{job}/{vm}/{vm}', values)).toBe('nightly/web-01/web-01');
    expect(snapshotName('plain name', values)).toBe('plain name');
  });

  it('inserts names as they are, braces included, without expanding them again', () => {
    expect(snapshotName('{vm}: {job}', { ...values, vm: 'a {job} b', job: 'j' })).toBe('a {job} b: j');
  });

  it('lists each unknown placeholder once, and none for known ones or lone braces', () => {
    expect(unknownSnapshotNamePlaceholders('{vm} {job} {date}')).toEqual([]);
    expect(unknownSnapshotNamePlaceholders('{vmname} {Date} {vmname} {}')).toEqual([
      '{vmname}',
      '{Date}',
      '{}',
    ]);
    expect(unknownSnapshotNamePlaceholders('a { b } c {vm')).toEqual(['{ b }']);
    expect(unknownSnapshotNamePlaceholders('no braces { at all')).toEqual([]);
  });

  it('is refused at job creation naming the field and the placeholder (JobPlugin.checkSettings)', () => {
    expect(checkSnapshotNameTemplate({ snapshotNameTemplate: '[Haven] {vm} {host}' })).toEqual([
      {
        field: 'settings.snapshotNameTemplate',
        message: 'has unknown placeholder(s) {host}; known: {vm}, {job}, {date}',
      },
    ]);
    expect(checkSnapshotNameTemplate({ snapshotNameTemplate: '{job} {vm} {date}' })).toEqual([]);
    expect(backupIncrementalPlugin.checkSettings?.({ snapshotNameTemplate: '{tag}' })).toHaveLength(1);
  });
});

describe('vmTimeoutSeconds', () => {
  const fieldsOf = (settings: Record<string, unknown>) =>
    validateAgainstSchema(BACKUP_INCREMENTAL_SETTINGS_SCHEMA, settings, 'settings').map((e) => e.field);

  it('is optional: absent means no limit', () => {
    expect(fieldsOf({})).toEqual([]);
    expect(backupSettings({}).vmTimeoutSeconds).toBeUndefined();
    expect(backupSettings({ vmTimeoutSeconds: 90 }).vmTimeoutSeconds).toBe(90);
  });

  it.each([0, -5, 1.5, '60'])('refuses %p naming the field', (value) => {
    expect(fieldsOf({ vmTimeoutSeconds: value })).toEqual(['settings.vmTimeoutSeconds']);
  });
});
