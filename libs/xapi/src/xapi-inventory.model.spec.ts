import { parseXapiDate, positionOf, stringField, numberField } from './xapi-inventory.model';

describe('XAPI record fields', () => {
  it('parses XAPI datetimes in their compact and ISO forms', () => {
    expect(parseXapiDate('20261126T07:48:00Z').toISOString()).toBe('2026-11-26T07:48:00.000Z');
    expect(parseXapiDate('20261126T074800Z').toISOString()).toBe('2026-11-26T07:48:00.000Z');
    expect(parseXapiDate('20261126T07:48:00').toISOString()).toBe('2026-11-26T07:48:00.000Z');
    expect(parseXapiDate('2026-11-26T07:48:00.000Z').toISOString()).toBe('2026-11-26T07:48:00.000Z');
    expect(parseXapiDate(new Date('2026-11-26T07:48:00.000Z')).toISOString()).toBe(
      '2026-11-26T07:48:00.000Z',
    );
    expect(Number.isNaN(parseXapiDate(undefined).getTime())).toBe(true);
  });

  it('reads userdevice positions, numeric or xvd letters', () => {
    expect(positionOf('0')).toBe(0);
    expect(positionOf('3')).toBe(3);
    expect(positionOf('xvdb')).toBe(1);
  });

  it('reads int64 fields sent as strings (XML-RPC) or numbers (JSON-RPC)', () => {
    expect(numberField({ virtual_size: '25168384' }, 'virtual_size')).toBe(25168384);
    expect(numberField({ virtual_size: 25168384 }, 'virtual_size')).toBe(25168384);
    expect(stringField({ userdevice: 2 }, 'userdevice')).toBe('2');
    expect(stringField({}, 'missing')).toBe('');
  });
});
