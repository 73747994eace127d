import { createServer, type Server } from 'node:net';
import { describeIntegration } from '../integration';
import { ChildProcessServer } from './child-process.server';
import { loopbackPortOpen } from './loopback-port';

/** A child that listens on 127.0.0.1:PORT (argv), says so with the port bound, or dies naming the error. */
const LISTENER = `
const server = require('node:net').createServer((socket) => { socket.on('error', () => {}); socket.end('child\\n'); });
server.once('error', (error) => { console.error('listen failed: ' + error.code); process.exit(1); });
server.listen(Number(process.argv[1]), '127.0.0.1', () => console.log('listening on port ' + server.address().port));
`;
const LISTENING = /listening on port (\d+)/;

function listener(port: number): ChildProcessServer {
  return new ChildProcessServer('probe', port, process.execPath, (asked) => ['-e', LISTENER, String(asked)], {
    listeningLine: LISTENING,
  });
}

async function holdPort(): Promise<{ port: number; server: Server }> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined); // the readiness probes connect and reset
    socket.end('another process\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port bound');
  return { port: address.port, server };
}

describeIntegration('ChildProcessServer', [], () => {
  it('does not call a child started because another process answers on its port', async () => {
    // The race of a port picked by freeLoopbackPort and bound seconds later by the child: here the
    // port is taken before the child starts, so the child dies of EADDRINUSE while the port answers.
    const other = await holdPort();
    const server = listener(other.port);
    try {
      await expect(server.start(20_000)).rejects.toThrow(/exited \(code 1\) before listening.*EADDRINUSE/s);
      expect(server.pid).toBeUndefined();
    } finally {
      await server.stop();
      await new Promise((resolve) => other.server.close(resolve));
    }
  });

  it('on port 0 takes the port the child names, and restarts on that same port', async () => {
    const server = listener(0);
    try {
      await server.start(20_000);
      const port = server.port;
      expect(port).toBeGreaterThan(0);
      expect(await loopbackPortOpen(port)).toBe(true);
      const firstPid = server.pid;
      await server.restart();
      expect(server.pid).not.toBe(firstPid);
      expect(server.port).toBe(port);
      expect(await loopbackPortOpen(port)).toBe(true);
    } finally {
      await server.stop();
    }
  });

  it('refuses port 0 without a line naming the port bound', () => {
    expect(() => new ChildProcessServer('probe', 0, process.execPath, ['-e', ''])).toThrow(/listeningLine/);
  });
});
