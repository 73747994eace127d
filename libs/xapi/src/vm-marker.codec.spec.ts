import { decodeVmMarker, encodeVmMarker, markerKey } from './vm-marker.codec';

describe('VM marker codec', () => {
  it('round-trips owner and expiry', () => {
    const marker = { owner: 'haven@site-a run 3', until: new Date('2026-11-26T10:00:00.000Z') };
    expect(decodeVmMarker(encodeVmMarker(marker))).toEqual(marker);
  });

  it('treats absent, foreign or damaged values as no marker', () => {
    for (const value of [
      undefined,
      '',
      'true',
      '{',
      '{"owner":1,"until":"x"}',
      '{"owner":"a","until":"not a date"}',
      'null',
    ])
      expect(decodeVmMarker(value)).toBeUndefined();
  });

  it('prefixes keys with haven: and refuses keys that would collide with other fields', () => {
    expect(markerKey('backup')).toBe('haven:backup');
    expect(() => markerKey('')).toThrow(TypeError);
    expect(() => markerKey('a:b')).toThrow(/marker key "a:b"/);
  });
});
