import { describeIntegration, XapiSimTestServer } from '@haven/testing';
import { XenApiClientDriver, type XapiObject } from './testing/xen-api-client.driver';

/** `20250301T02:30:00Z` (XAPI's JSON-RPC datetime) as a Date. */
function parseXapiTime(value: unknown): Date {
  const text = String(value).replace(/^(\d{4})(\d{2})(\d{2})T/, '$1-$2-$3T');
  return new Date(text);
}

describeIntegration('xapi-sim clock: the time snapshots record', [], () => {
  let server: XapiSimTestServer;
  let client: XenApiClientDriver;

  beforeAll(async () => {
    server = await XapiSimTestServer.start({ vms: 1, diskSize: '4MiB', seed: 'clock' });
    client = new XenApiClientDriver();
    await client.connect(server.url, server.user, server.password);
  }, 120_000);

  afterAll(async () => {
    await client.close();
    await server.stop();
  });

  async function snapshotTimes(name: string): Promise<Date[]> {
    const vm = (await client.objects('VM')).find((object) => object['name_label'] === 'sim-vm-0');
    if (vm === undefined) throw new Error('sim-vm-0 is missing');
    const snapshot = await client.callAsync<string>('VM.snapshot', vm.$ref, name, []);
    await client.barrier();
    const objects = await client.objects();
    const record = objects.find((object) => object.$ref === snapshot) as XapiObject;
    const vdis = (record['VBDs'] as string[])
      .map((vbd) => objects.find((object) => object.$ref === vbd))
      .filter((vbd) => vbd?.['type'] === 'Disk')
      .map((vbd) => objects.find((object) => object.$ref === vbd?.['VDI']));
    return [record, ...vdis].map((object) => parseXapiTime(object?.['snapshot_time']));
  }

  it('stamps VM and VDI snapshots with the set time, which runs on from there', async () => {
    const at = new Date('2025-03-01T01:30:00Z');
    const state = await server.setClock(at);
    expect(new Date(state.now).getTime() - at.getTime()).toBeGreaterThanOrEqual(0);
    expect(state.offsetMs).toBeLessThan(0);
    const times = await snapshotTimes('in march');
    expect(times).toHaveLength(2);
    for (const time of times) {
      // XAPI datetimes have whole seconds; the clock ran on a little since it was set
      expect(time.getTime()).toBeGreaterThanOrEqual(at.getTime());
      expect(time.getTime()).toBeLessThan(at.getTime() + 60_000);
    }
    const read = await server.workload<{ now: string }>('GET', 'clock');
    expect(new Date(read.now).getTime()).toBeLessThan(at.getTime() + 60_000);
  });

  it('stands still at the set time when frozen: snapshots a while apart record the same second', async () => {
    const at = new Date('2025-03-02T01:30:00Z');
    expect(await server.setClock(at, { frozen: true })).toMatchObject({
      now: at.toISOString(),
      frozen: true,
    });
    const first = await snapshotTimes('frozen one');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const second = await snapshotTimes('frozen two');
    expect([...first, ...second].map((time) => time.toISOString())).toEqual(Array(4).fill(at.toISOString()));
    // Set again without frozen, it runs on.
    expect((await server.setClock(at)).frozen).toBe(false);
  });

  it('goes back to the real time with null', async () => {
    const before = Date.now();
    expect((await server.setClock(null)).offsetMs).toBe(0);
    const [time] = await snapshotTimes('today');
    expect(time.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(time.getTime()).toBeLessThanOrEqual(Date.now());
  });

  it('refuses a time it cannot read, saying what it expects', async () => {
    await expect(server.workload('POST', 'clock', { now: 'next tuesday' })).rejects.toThrow(
      /answered 400.*valid instant/,
    );
    await expect(server.workload('POST', 'clock', { now: 42 })).rejects.toThrow(
      /answered 400.*ISO 8601 instant/,
    );
    await expect(
      server.workload('POST', 'clock', { now: '2025-03-01T01:30:00Z', frozen: 'yes' }),
    ).rejects.toThrow(/answered 400.*frozen.*true\|false/);
  });
});
