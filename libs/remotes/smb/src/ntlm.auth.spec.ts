import { md4 } from './md4.hash';
import {
  NtlmProtocolError,
  ntHash,
  ntlmAuthenticateMessage,
  ntlmNegotiateMessage,
  parseNtlmChallenge,
} from './ntlm.auth';

/** AV pair list: MsvAvNbDomainName "Domain", MsvAvNbComputerName "Server", MsvAvEOL (MS-NLMP 4.2.4). */
function specTargetInfo(): Buffer {
  const pair = (id: number, value: string): Buffer => {
    const data = Buffer.from(value, 'utf16le');
    const head = Buffer.alloc(4);
    head.writeUInt16LE(id, 0);
    head.writeUInt16LE(data.length, 2);
    return Buffer.concat([head, data]);
  };
  return Buffer.concat([pair(2, 'Domain'), pair(1, 'Server'), Buffer.alloc(4)]);
}

function challengeMessage(targetInfo: Buffer, serverChallenge: Buffer, flags = 0xe28a8233): Buffer {
  const header = Buffer.alloc(56);
  header.write('NTLMSSP\0', 0, 'latin1');
  header.writeUInt32LE(2, 8);
  header.writeUInt32LE(flags, 20);
  serverChallenge.copy(header, 24);
  header.writeUInt16LE(targetInfo.length, 40);
  header.writeUInt16LE(targetInfo.length, 42);
  header.writeUInt32LE(56, 44);
  return Buffer.concat([header, targetInfo]);
}

describe('MD4', () => {
  it.each([
    ['', '31d6cfe0d16ae931b73c59d7e0c089c0'],
    ['a', 'bde52cb31de33e46245e05fbdbd6fb24'],
    ['abc', 'a448017aaf21d8525fc10ae87aa6729d'],
    ['message digest', 'd9130a8164549fe818874806e1c7014b'],
    [
      '12345678901234567890123456789012345678901234567890123456789012345678901234567890',
      'e33b4ddc9c38f2199c3e7b164fcc0536',
    ],
  ])('hashes %j as RFC 1320 says', (input, digest) => {
    expect(md4(Buffer.from(input, 'latin1')).toString('hex')).toBe(digest);
  });
});

describe('NTLM', () => {
  it('computes the NT hash of a password (MS-NLMP 4.2.2.1.2)', () => {
    expect(ntHash('Password').toString('hex')).toBe('a4f49c406510bdcab6824ee7c30fd852');
  });

  it('produces the NTLMv2 response and session key of the MS-NLMP 4.2.4 example', () => {
    const challenge = parseNtlmChallenge(
      challengeMessage(specTargetInfo(), Buffer.from('0123456789abcdef', 'hex')),
    );
    const { message, sessionKey } = ntlmAuthenticateMessage(
      challenge,
      { username: 'User', password: 'Password', domain: 'Domain' },
      Buffer.from('aaaaaaaaaaaaaaaa', 'hex'),
      Buffer.alloc(8),
    );
    expect(message.subarray(0, 8).toString('latin1')).toBe('NTLMSSP\0');
    expect(message.readUInt32LE(8)).toBe(3);
    const field = (index: number): Buffer => {
      const at = 12 + index * 8;
      const length = message.readUInt16LE(at);
      const offset = message.readUInt32LE(at + 4);
      return message.subarray(offset, offset + length);
    };
    expect(field(0).toString('hex')).toBe('86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa');
    expect(field(1).subarray(0, 16).toString('hex')).toBe('68cd0ab851e51c96aabc927bebef6a1c');
    expect(field(2).toString('utf16le')).toBe('Domain');
    expect(field(3).toString('utf16le')).toBe('User');
    expect(sessionKey.toString('hex')).toBe('8de40ccadbc14a82f15cb0ad0de95ca3');
  });

  it('sends an all-zero LMv2 response when the server gave a timestamp', () => {
    const stamp = Buffer.concat([Buffer.from([7, 0, 8, 0]), Buffer.alloc(8, 1)]);
    const info = Buffer.concat([specTargetInfo().subarray(0, -4), stamp, Buffer.alloc(4)]);
    const challenge = parseNtlmChallenge(challengeMessage(info, Buffer.alloc(8, 2)));
    expect(challenge.timestamp?.equals(Buffer.alloc(8, 1))).toBe(true);
    const { message } = ntlmAuthenticateMessage(challenge, { username: 'u', password: 'p', domain: '' });
    const offset = message.readUInt32LE(16);
    expect(message.subarray(offset, offset + message.readUInt16LE(12)).equals(Buffer.alloc(24))).toBe(true);
  });

  it('finds the challenge inside a SPNEGO wrapper and refuses a blob without one', () => {
    const wrapped = Buffer.concat([
      Buffer.from('a181c03081bda0030a0101', 'hex'),
      challengeMessage(specTargetInfo(), Buffer.alloc(8)),
    ]);
    expect(parseNtlmChallenge(wrapped).targetInfo.equals(specTargetInfo())).toBe(true);
    expect(() => parseNtlmChallenge(Buffer.from('not ntlm at all, nothing here to see'))).toThrow(
      NtlmProtocolError,
    );
    expect(() => parseNtlmChallenge(Buffer.concat([ntlmNegotiateMessage(), Buffer.alloc(16)]))).toThrow(
      /expected an NTLM challenge/,
    );
  });

  it('negotiates without key exchange (which would need RC4)', () => {
    const flags = ntlmNegotiateMessage().readUInt32LE(12);
    expect(flags & 0x40000000).toBe(0);
    expect(flags & 0x1).toBe(1);
  });
});
