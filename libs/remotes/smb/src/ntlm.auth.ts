import { createHmac, randomBytes } from 'node:crypto';

import { md4 } from './md4.hash';

/** NTLMSSP negotiate flags (MS-NLMP 2.2.2.5) Haven asks for. No KEY_EXCH: it would need RC4. */
export const NtlmFlags = {
  UNICODE: 0x00000001,
  REQUEST_TARGET: 0x00000004,
  SIGN: 0x00000010,
  NTLM: 0x00000200,
  ALWAYS_SIGN: 0x00008000,
  EXTENDED_SESSION_SECURITY: 0x00080000,
  TARGET_INFO: 0x00800000,
  NEGOTIATE_128: 0x20000000,
  NEGOTIATE_56: 0x80000000,
} as const;

const SIGNATURE = Buffer.from('NTLMSSP\0', 'latin1');
const CLIENT_FLAGS =
  (NtlmFlags.UNICODE |
    NtlmFlags.REQUEST_TARGET |
    NtlmFlags.SIGN |
    NtlmFlags.NTLM |
    NtlmFlags.ALWAYS_SIGN |
    NtlmFlags.EXTENDED_SESSION_SECURITY |
    NtlmFlags.TARGET_INFO |
    NtlmFlags.NEGOTIATE_128 |
    NtlmFlags.NEGOTIATE_56) >>>
  0;

/** A security blob that is not the NTLM message expected at this step. */
export class NtlmProtocolError extends Error {
  override readonly name = 'NtlmProtocolError';
  readonly code = 'NTLM_PROTOCOL';
}

export interface NtlmChallenge {
  flags: number;
  serverChallenge: Buffer;
  targetInfo: Buffer;
  /** MsvAvTimestamp from the target info, when the server sent one. */
  timestamp?: Buffer;
}

export interface NtlmCredentials {
  username: string;
  password: string;
  domain: string;
  workstation?: string;
}

export function ntlmNegotiateMessage(): Buffer {
  const message = Buffer.alloc(32);
  SIGNATURE.copy(message, 0);
  message.writeUInt32LE(1, 8);
  message.writeUInt32LE(CLIENT_FLAGS, 12);
  // Domain and workstation fields stay empty (length 0, offset 32).
  message.writeUInt32LE(32, 20);
  message.writeUInt32LE(32, 28);
  return message;
}

/** Finds and parses the CHALLENGE_MESSAGE in a blob (raw, or wrapped in SPNEGO). */
export function parseNtlmChallenge(blob: Buffer): NtlmChallenge {
  const start = blob.indexOf(SIGNATURE);
  if (start < 0 || blob.length < start + 48) {
    throw new NtlmProtocolError('the server answered the NTLM negotiation without an NTLM challenge message');
  }
  const message = blob.subarray(start);
  if (message.readUInt32LE(8) !== 2) {
    throw new NtlmProtocolError(`expected an NTLM challenge (type 2), got type ${message.readUInt32LE(8)}`);
  }
  const flags = message.readUInt32LE(20);
  const serverChallenge = Buffer.from(message.subarray(24, 32));
  const infoLength = message.readUInt16LE(40);
  const infoOffset = message.readUInt32LE(44);
  if (infoOffset + infoLength > message.length) {
    throw new NtlmProtocolError('the NTLM challenge target info runs past the end of the message');
  }
  const targetInfo = Buffer.from(message.subarray(infoOffset, infoOffset + infoLength));
  const timestamp = findAvPair(targetInfo, 7);
  return { flags, serverChallenge, targetInfo, ...(timestamp ? { timestamp } : {}) };
}

function findAvPair(targetInfo: Buffer, id: number): Buffer | undefined {
  let offset = 0;
  while (offset + 4 <= targetInfo.length) {
    const avId = targetInfo.readUInt16LE(offset);
    const length = targetInfo.readUInt16LE(offset + 2);
    if (avId === 0) return undefined;
    if (avId === id) return Buffer.from(targetInfo.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return undefined;
}

export function ntHash(password: string): Buffer {
  return md4(Buffer.from(password, 'utf16le'));
}

/** Windows FILETIME (100 ns since 1601) of now, little-endian. */
function fileTimeNow(): Buffer {
  const time = Buffer.alloc(8);
  time.writeBigUInt64LE((BigInt(Date.now()) + 11644473600000n) * 10000n);
  return time;
}

/**
 * AUTHENTICATE_MESSAGE with an NTLMv2 response (MS-NLMP 3.3.2) and the session key that signs
 * SMB messages. `clientChallenge` and `time` are parameters for known-answer tests only.
 */
export function ntlmAuthenticateMessage(
  challenge: NtlmChallenge,
  credentials: NtlmCredentials,
  clientChallenge: Buffer = randomBytes(8),
  time?: Buffer,
): { message: Buffer; sessionKey: Buffer } {
  const responseKey = createHmac('md5', ntHash(credentials.password))
    .update(Buffer.from(credentials.username.toUpperCase() + credentials.domain, 'utf16le'))
    .digest();
  const timestamp = time ?? challenge.timestamp ?? fileTimeNow();
  const blob = Buffer.concat([
    Buffer.from([1, 1, 0, 0, 0, 0, 0, 0]),
    timestamp,
    clientChallenge,
    Buffer.alloc(4),
    challenge.targetInfo,
    Buffer.alloc(4),
  ]);
  const proof = createHmac('md5', responseKey).update(challenge.serverChallenge).update(blob).digest();
  const ntResponse = Buffer.concat([proof, blob]);
  // With a server timestamp the LMv2 response must be all zeros (MS-NLMP 3.1.5.1.2).
  const lmResponse = challenge.timestamp
    ? Buffer.alloc(24)
    : Buffer.concat([
        createHmac('md5', responseKey).update(challenge.serverChallenge).update(clientChallenge).digest(),
        clientChallenge,
      ]);
  const sessionKey = createHmac('md5', responseKey).update(proof).digest();

  const domain = Buffer.from(credentials.domain, 'utf16le');
  const user = Buffer.from(credentials.username, 'utf16le');
  const workstation = Buffer.from(credentials.workstation ?? '', 'utf16le');
  const fields = [lmResponse, ntResponse, domain, user, workstation, Buffer.alloc(0)];
  const header = Buffer.alloc(64);
  SIGNATURE.copy(header, 0);
  header.writeUInt32LE(3, 8);
  let offset = 64;
  fields.forEach((field, index) => {
    const at = 12 + index * 8;
    header.writeUInt16LE(field.length, at);
    header.writeUInt16LE(field.length, at + 2);
    header.writeUInt32LE(offset, at + 4);
    offset += field.length;
  });
  header.writeUInt32LE((CLIENT_FLAGS & challenge.flags) >>> 0 || CLIENT_FLAGS, 60);
  return { message: Buffer.concat([header, ...fields]), sessionKey };
}
