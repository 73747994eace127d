import { readRecordedVifs, recordVifs } from './vm-network.record';

describe('recorded network interfaces', () => {
  const vifs = [
    {
      ref: 'OpaqueRef:1',
      device: '0',
      mac: '02:00:00:00:00:01',
      mtu: 1500,
      networkUuid: 'u',
      networkName: 'n',
    },
    {
      ref: 'OpaqueRef:2',
      device: '1',
      mac: 'aa:bb:cc:dd:ee:ff',
      mtu: 9000,
      networkUuid: 'v',
      networkName: 'm',
    },
  ];

  it('records what a restore needs and reads it back', () => {
    const recorded = recordVifs({ vifs });
    expect(recorded).toEqual([
      { device: '0', mac: '02:00:00:00:00:01', mtu: 1500, networkUuid: 'u', networkName: 'n' },
      { device: '1', mac: 'aa:bb:cc:dd:ee:ff', mtu: 9000, networkUuid: 'v', networkName: 'm' },
    ]);
    // a manifest stores it as JSON
    expect(readRecordedVifs(JSON.parse(JSON.stringify(recorded)))).toEqual({ vifs: recorded, malformed: 0 });
  });

  it('tells a manifest without interfaces from one with none', () => {
    expect(readRecordedVifs(undefined)).toBeUndefined();
    expect(readRecordedVifs([])).toEqual({ vifs: [], malformed: 0 });
  });

  it('counts malformed entries instead of guessing', () => {
    const good = { device: '0', mac: '', mtu: 1500, networkUuid: 'u', networkName: 'n' };
    expect(
      readRecordedVifs([
        good,
        null,
        { ...good, device: 'eth0' },
        { ...good, mtu: '1500' },
        { ...good, mac: 1 },
      ]),
    ).toEqual({ vifs: [good], malformed: 4 });
    expect(readRecordedVifs('vifs')).toEqual({ vifs: [], malformed: 1 });
  });
});
