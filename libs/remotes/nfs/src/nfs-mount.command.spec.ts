import { NfsMountOptionError, buildNfsMountCommand, validateNfsMountOptions } from './nfs-mount.command';

describe('NFS kernel mount command', () => {
  it('builds mount -t nfs with the validated options, defaulting to NFSv3, TCP and hard mounts', () => {
    const command = buildNfsMountCommand({
      host: 'nas.example.org',
      export: '/srv/backups',
      options: ['rsize=1048576', 'wsize=1048576', 'noatime'],
      mountRoot: '/var/lib/haven/mounts',
    });
    expect(command.mount.file).toBe('mount');
    expect(command.mount.args.slice(0, 3)).toEqual(['-t', 'nfs', '-o']);
    expect(command.mount.args[3]).toBe('rsize=1048576,wsize=1048576,noatime,vers=3,hard,proto=tcp');
    expect(command.mount.args[4]).toBe('nas.example.org:/srv/backups');
    expect(command.mount.args[5]).toMatch(/^\/var\/lib\/haven\/mounts\/nfs-[0-9a-f]{16}$/);
    expect(command.mountPoint).toBe(command.mount.args[5]);
    expect(command.unmount).toEqual({ file: 'umount', args: [command.mountPoint] });
  });

  it('keeps explicit choices instead of the defaults, and gives each export its own mount point', () => {
    const a = buildNfsMountCommand({
      host: '10.0.0.5',
      export: '/a',
      options: ['vers=4.1', 'soft', 'proto=tcp6'],
      mountRoot: '/m',
    });
    const b = buildNfsMountCommand({ host: '10.0.0.5', export: '/b', mountRoot: '/m' });
    expect(a.mount.args[3]).toBe('vers=4.1,soft,proto=tcp6');
    expect(a.mountPoint).not.toBe(b.mountPoint);
    expect(buildNfsMountCommand({ host: '[fd00::5]', export: '/a', mountRoot: '/m' }).mount.args[4]).toBe(
      '[fd00::5]:/a',
    );
  });

  it.each([
    ['hard;reboot', /not allowed/],
    ['hard,soft', /not allowed/],
    ['rsize=1 ', /not allowed/],
    ['rsize=$(id)', /not allowed/],
    ['vers=3 -o exec', /not allowed/],
    ['suid', /"suid" is not supported/],
    ['exec', /not supported/],
    ['fsc=evil', /"fsc=" is not supported/],
    ['vers=5', /invalid value "5"/],
    ['rsize=abc', /invalid value "abc"/],
    ['nconnect=99', /invalid value "99"/],
    ['', /empty/],
  ])('refuses the option %j', (option, message) => {
    expect(() => validateNfsMountOptions([option])).toThrow(NfsMountOptionError);
    expect(() => validateNfsMountOptions([option])).toThrow(message);
  });

  it('names the offending option field', () => {
    try {
      validateNfsMountOptions(['hard', 'bogus']);
      throw new Error('not refused');
    } catch (error) {
      expect(error).toBeInstanceOf(NfsMountOptionError);
      expect((error as NfsMountOptionError).field).toBe('options[1]');
      expect((error as NfsMountOptionError).code).toBe('NFS_MOUNT_OPTION_INVALID');
    }
  });

  it.each([
    ['nas;rm -rf /', '/srv'],
    ['nas example', '/srv'],
    ['-o', '/srv'],
    ['nas', 'srv'],
    ['nas', '/srv/../etc'],
    ['nas', '/srv backups'],
    ['nas', '/srv;reboot'],
    ['nas', '/srv,ro'],
  ])('refuses host %j with export %j', (host, exportPath) => {
    expect(() => buildNfsMountCommand({ host, export: exportPath, mountRoot: '/m' })).toThrow(
      NfsMountOptionError,
    );
  });

  it('refuses a relative mount folder', () => {
    expect(() => buildNfsMountCommand({ host: 'nas', export: '/srv', mountRoot: 'mounts' })).toThrow(
      /absolute/,
    );
  });
});
