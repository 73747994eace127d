import { keyProblem, prefixProblem } from './remote-key';

describe('object keys', () => {
  it('accepts relative, clean keys', () => {
    for (const key of [
      'a',
      'chunks/ab/cd/abcdef',
      'restore-points/2026-01-01T00:00:00Z/manifest.json',
      'a.b/c-d_e',
    ])
      expect(keyProblem(key)).toBeUndefined();
  });

  it('names what is wrong with a bad key', () => {
    expect(keyProblem('')).toMatch(/empty/);
    expect(keyProblem('/a')).toMatch(/relative/);
    expect(keyProblem('a//b')).toMatch(/empty segment/);
    expect(keyProblem('a/../b')).toMatch(/"\.\."/);
    expect(keyProblem('./a')).toMatch(/"\."/);
    expect(keyProblem('a/')).toMatch(/folders/);
    expect(keyProblem('a\\b')).toMatch(/backslash/);
    expect(keyProblem('a\nb')).toMatch(/control/);
    expect(keyProblem('x/.haven-tmp-1')).toMatch(/reserved/);
    expect(keyProblem('a'.repeat(1001))).toMatch(/longer/);
  });

  it('accepts list prefixes ending in "/" or mid-segment, and the empty prefix', () => {
    expect(prefixProblem('')).toBeUndefined();
    expect(prefixProblem('chunks/')).toBeUndefined();
    expect(prefixProblem('chunks/ab')).toBeUndefined();
    expect(prefixProblem('/')).toMatch(/not relative/);
    expect(prefixProblem('a//')).toMatch(/empty segment/);
  });
});
