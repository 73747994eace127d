import { X509Certificate, randomBytes } from 'node:crypto';
import { NbdClient, NbdServer, createSelfSignedCertificate, type SelfSignedCertificate } from './index';
import { nbdRejection } from './testing';

const data = randomBytes(3 * 1024 * 1024 + 512);
const NAME = '/a0c1b1e2-0000-4000-8000-000000000002?session_id=OpaqueRef:tls';

describe('NBD over TLS (NBD_OPT_STARTTLS)', () => {
  let certificate: SelfSignedCertificate;
  let other: SelfSignedCertificate;
  let tlsServer: NbdServer;
  let plainServer: NbdServer;
  let tlsPort: number;
  let plainPort: number;

  beforeAll(async () => {
    [certificate, other] = await Promise.all([
      createSelfSignedCertificate('host1.pool.test'),
      createSelfSignedCertificate('host2.pool.test'),
    ]);
    const openExport = () => ({
      size: data.length,
      read: (offset: number, length: number) =>
        Promise.resolve(Buffer.from(data.subarray(offset, offset + length))),
    });
    tlsServer = new NbdServer({ openExport, tls: { key: certificate.key, cert: certificate.cert } });
    plainServer = new NbdServer({ openExport });
    tlsPort = (await tlsServer.listen(0, '127.0.0.1')).port;
    plainPort = (await plainServer.listen(0, '127.0.0.1')).port;
  });

  afterAll(async () => {
    await tlsServer.close();
    await plainServer.close();
  });

  it('reads over TLS with the certificate and subject XAPI gives', async () => {
    const client = await NbdClient.connect({
      host: '127.0.0.1',
      port: tlsPort,
      exportName: NAME,
      tls: { cert: certificate.cert, servername: certificate.subject },
    });
    try {
      const reads = [0, 1024 * 1024, 2 * 1024 * 1024].map((offset) => client.read(offset, 1024 * 1024));
      const tail = client.read(3 * 1024 * 1024, 512);
      expect(Buffer.concat([...(await Promise.all(reads)), await tail]).equals(data)).toBe(true);
    } finally {
      await client.close();
    }
  });

  it('refuses a server whose certificate is not the one given (pinned, not merely a valid chain)', async () => {
    const error = await nbdRejection(
      NbdClient.connect({
        host: '127.0.0.1',
        port: tlsPort,
        exportName: NAME,
        tls: { cert: other.cert, servername: other.subject },
      }),
    );
    expect(error.code).toBe('NBD_TLS_FAILED');
    expect(error.message).toContain(
      `not the one XAPI gave (${new X509Certificate(other.cert).fingerprint256})`,
    );
  });

  it('refuses a certificate issued for another name', async () => {
    const error = await nbdRejection(
      NbdClient.connect({
        host: '127.0.0.1',
        port: tlsPort,
        exportName: NAME,
        tls: { cert: certificate.cert, servername: 'host9.pool.test' },
      }),
    );
    expect(error.code).toBe('NBD_TLS_FAILED');
    expect(error.message).toContain('host9.pool.test');
  });

  it('says NBD_TLS_FAILED when a TLS-only server is asked for plain NBD', async () => {
    const error = await nbdRejection(
      NbdClient.connect({ host: '127.0.0.1', port: tlsPort, exportName: NAME }),
    );
    expect(error.code).toBe('NBD_TLS_FAILED');
    expect(error.message).toContain('NBD_REP_ERR_TLS_REQD');
  });

  it('does not fall back to plain NBD when the server refuses TLS', async () => {
    const error = await nbdRejection(
      NbdClient.connect({
        host: '127.0.0.1',
        port: plainPort,
        exportName: NAME,
        tls: { cert: certificate.cert, servername: certificate.subject },
      }),
    );
    expect(error.code).toBe('NBD_TLS_FAILED');
    expect(error.message).toContain('NBD_REP_ERR_POLICY');
  });
});
