import type { NetworkInfo, RecordedVif } from '@haven/xapi';
import { planRestoredVifs } from './restored-vif.plan';

const network = (fields: Partial<NetworkInfo> & { uuid: string; name: string }): NetworkInfo => ({
  ref: `OpaqueRef:${fields.uuid}`,
  bridge: 'xenbr0',
  mtu: 1500,
  isManagement: false,
  isHostInternal: false,
  ...fields,
});

const vif = (fields: Partial<RecordedVif>): RecordedVif => ({
  device: '0',
  mac: '02:00:00:00:00:01',
  mtu: 9000,
  networkUuid: 'net-a',
  networkName: 'storage',
  ...fields,
});

describe('planRestoredVifs', () => {
  const management = network({
    uuid: 'net-mgmt',
    name: 'Pool-wide network associated with eth0',
    isManagement: true,
  });
  const internal = network({ uuid: 'net-himn', name: 'storage', isHostInternal: true });

  it('puts an interface on the network of the same uuid, with the recorded MTU and a new MAC', () => {
    const same = network({ uuid: 'net-a', name: 'renamed', mtu: 1500 });
    const { plans, skipped } = planRestoredVifs([vif({})], [management, same], { keepMacs: false });
    expect(skipped).toEqual([]);
    expect(plans).toHaveLength(1);
    expect(plans[0]).toMatchObject({ device: '0', matchedBy: 'uuid', mtu: 9000 });
    expect(plans[0]?.network.uuid).toBe('net-a');
    expect(plans[0]?.mac).toBeUndefined();
  });

  it('keeps the recorded MAC when asked', () => {
    const same = network({ uuid: 'net-a', name: 'storage' });
    const { plans } = planRestoredVifs([vif({})], [same], { keepMacs: true });
    expect(plans[0]?.mac).toBe('02:00:00:00:00:01');
  });

  it('falls back to a network of the same name (another pool), taking that network MTU', () => {
    const byName = network({ uuid: 'net-b', name: 'storage', mtu: 1400 });
    const { plans } = planRestoredVifs([vif({})], [management, byName], { keepMacs: false });
    expect(plans[0]).toMatchObject({ matchedBy: 'name', mtu: 1400 });
    expect(plans[0]?.network.uuid).toBe('net-b');
  });

  it('uses the management network when neither uuid nor name exists, never the host-internal one', () => {
    const { plans } = planRestoredVifs(
      [vif({}), vif({ device: '1', networkUuid: '', networkName: '' })],
      [internal, management],
      { keepMacs: false },
    );
    expect(plans.map((plan) => [plan.device, plan.matchedBy, plan.network.uuid, plan.mtu])).toEqual([
      ['0', 'management', 'net-mgmt', 1500],
      ['1', 'management', 'net-mgmt', 1500],
    ]);
  });

  it('skips interfaces when the pool has no matching and no management network', () => {
    const other = network({ uuid: 'net-c', name: 'other' });
    const { plans, skipped } = planRestoredVifs([vif({})], [other, internal], { keepMacs: false });
    expect(plans).toEqual([]);
    expect(skipped).toEqual([vif({})]);
  });
});
