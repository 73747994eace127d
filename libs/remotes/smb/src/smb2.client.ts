import { randomBytes } from 'node:crypto';

import { ntlmAuthenticateMessage, ntlmNegotiateMessage, parseNtlmChallenge } from './ntlm.auth';
import { HEADER_SIZE, Smb2Connection, type Smb2CommandName, type Smb2Response } from './smb2.connection';
import { NtStatus, Smb2ConnectionError, Smb2Error } from './smb2.status';

export interface Smb2ClientOptions {
  host: string;
  port: number;
  share: string;
  domain: string;
  username: string;
  password: string;
  timeoutMs: number;
}

/** What a CREATE answers about the opened file. */
export interface Smb2OpenFile {
  fileId: Buffer;
  size: number;
  modifiedAt: Date;
  directory: boolean;
  /** Path inside the share, for error messages. */
  path: string;
}

export interface Smb2DirEntry {
  name: string;
  size: number;
  modifiedAt: Date;
  directory: boolean;
}

export const Access = {
  READ_DATA: 0x1,
  WRITE_DATA: 0x2,
  READ_ATTRIBUTES: 0x80,
  WRITE_ATTRIBUTES: 0x100,
  DELETE: 0x10000,
  SYNCHRONIZE: 0x100000,
} as const;

export const Disposition = { OPEN: 1, CREATE: 2, OPEN_IF: 3, OVERWRITE_IF: 5 } as const;

const SHARE_ALL = 0x7;
const OPTION_DIRECTORY = 0x1;
const OPTION_NON_DIRECTORY = 0x40;
const OPTION_DELETE_ON_CLOSE = 0x1000;
const ATTRIBUTE_DIRECTORY = 0x10;
const ATTRIBUTE_NORMAL = 0x80;
const DIALECTS = [0x0202, 0x0210];
const CAP_LARGE_MTU = 0x4;
const SIGNING_REQUIRED = 0x2;
const FILE_DIRECTORY_INFORMATION = 1;
const FILE_RENAME_INFORMATION = 10;
const FILE_LINK_INFORMATION = 11;
const FILE_DISPOSITION_INFORMATION = 13;
const FILE_FS_FULL_SIZE_INFORMATION = 7;

/** Windows FILETIME (100 ns ticks since 1601) to a Date. */
function fromFileTime(ticks: bigint): Date {
  return new Date(Number(ticks / 10000n - 11644473600000n));
}

/**
 * A minimal SMB 2.0.2 / 2.1 client: one session and one tree over one connection. SMB 3 is not
 * offered, so no encryption; signing is used when the server requires it.
 */
export class Smb2Client {
  private treeId = 0;
  maxReadSize = 65536;
  maxWriteSize = 65536;

  private constructor(
    private readonly connection: Smb2Connection,
    private readonly options: Smb2ClientOptions,
  ) {}

  get alive(): boolean {
    return this.connection.alive;
  }

  static async connect(options: Smb2ClientOptions, signal?: AbortSignal): Promise<Smb2Client> {
    const connection = new Smb2Connection({
      host: options.host,
      port: options.port,
      timeoutMs: options.timeoutMs,
      connectTimeoutMs: options.timeoutMs,
    });
    await connection.connect();
    const client = new Smb2Client(connection, options);
    try {
      const signingRequired = await client.negotiate(signal);
      await client.sessionSetup(signingRequired, signal);
      await client.treeConnect(signal);
    } catch (error) {
      connection.close();
      throw error;
    }
    return client;
  }

  async open(
    path: string,
    options: { access: number; disposition: number; directory?: boolean; deleteOnClose?: boolean },
    signal?: AbortSignal,
  ): Promise<Smb2OpenFile> {
    const name = Buffer.from(path.replace(/\//g, '\\'), 'utf16le');
    const body = Buffer.alloc(56 + Math.max(name.length, 1));
    body.writeUInt16LE(57, 0);
    body.writeUInt32LE(2, 4); // impersonation level: Impersonation
    body.writeUInt32LE((options.access | Access.SYNCHRONIZE | Access.READ_ATTRIBUTES) >>> 0, 24);
    body.writeUInt32LE(options.directory ? ATTRIBUTE_DIRECTORY : ATTRIBUTE_NORMAL, 28);
    body.writeUInt32LE(SHARE_ALL, 32);
    body.writeUInt32LE(options.disposition, 36);
    let createOptions =
      options.directory === undefined ? 0 : options.directory ? OPTION_DIRECTORY : OPTION_NON_DIRECTORY;
    if (options.deleteOnClose) createOptions |= OPTION_DELETE_ON_CLOSE;
    body.writeUInt32LE(createOptions, 40);
    body.writeUInt16LE(HEADER_SIZE + 56, 44);
    body.writeUInt16LE(name.length, 46);
    name.copy(body, 56);
    const response = await this.call('CREATE', body, path, signal);
    const reply = response.message.subarray(HEADER_SIZE);
    return {
      fileId: Buffer.from(reply.subarray(64, 80)),
      modifiedAt: fromFileTime(reply.readBigUInt64LE(24)),
      size: Number(reply.readBigUInt64LE(48)),
      directory: (reply.readUInt32LE(56) & ATTRIBUTE_DIRECTORY) !== 0,
      path,
    };
  }

  async close(file: Smb2OpenFile): Promise<void> {
    const body = Buffer.alloc(24);
    body.writeUInt16LE(24, 0);
    file.fileId.copy(body, 8);
    await this.call('CLOSE', body, file.path);
  }

  /** Reads up to `length` bytes; an empty buffer at or past the end of the file. */
  async read(file: Smb2OpenFile, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const body = Buffer.alloc(49);
    body.writeUInt16LE(49, 0);
    body.writeUInt8(0x50, 2);
    body.writeUInt32LE(length, 4);
    body.writeBigUInt64LE(BigInt(offset), 8);
    file.fileId.copy(body, 16);
    const response = await this.connection.request('READ', body, {
      treeId: this.treeId,
      responseSize: length,
      ...(signal ? { signal } : {}),
    });
    if (response.status === NtStatus.END_OF_FILE) return Buffer.alloc(0);
    this.check(response, 'READ', file.path);
    const dataOffset = response.message.readUInt8(HEADER_SIZE + 2);
    const dataLength = response.message.readUInt32LE(HEADER_SIZE + 4);
    return response.message.subarray(dataOffset, dataOffset + dataLength);
  }

  async write(file: Smb2OpenFile, offset: number, data: Buffer, signal?: AbortSignal): Promise<number> {
    const body = Buffer.alloc(48);
    body.writeUInt16LE(49, 0);
    body.writeUInt16LE(HEADER_SIZE + 48, 2);
    body.writeUInt32LE(data.length, 4);
    body.writeBigUInt64LE(BigInt(offset), 8);
    file.fileId.copy(body, 16);
    const response = await this.connection.request('WRITE', body, {
      treeId: this.treeId,
      payload: data,
      ...(signal ? { signal } : {}),
    });
    this.check(response, 'WRITE', file.path);
    return response.message.readUInt32LE(HEADER_SIZE + 4);
  }

  async flush(file: Smb2OpenFile, signal?: AbortSignal): Promise<void> {
    const body = Buffer.alloc(24);
    body.writeUInt16LE(24, 0);
    file.fileId.copy(body, 8);
    await this.call('FLUSH', body, file.path, signal);
  }

  /** One batch of entries of an open folder; null once the listing is exhausted. */
  async queryDirectory(
    dir: Smb2OpenFile,
    restart: boolean,
    signal?: AbortSignal,
  ): Promise<Smb2DirEntry[] | null> {
    const pattern = Buffer.from('*', 'utf16le');
    const body = Buffer.alloc(32 + pattern.length);
    body.writeUInt16LE(33, 0);
    body.writeUInt8(FILE_DIRECTORY_INFORMATION, 2);
    body.writeUInt8(restart ? 0x1 : 0, 3);
    dir.fileId.copy(body, 8);
    body.writeUInt16LE(HEADER_SIZE + 32, 24);
    body.writeUInt16LE(pattern.length, 26);
    body.writeUInt32LE(Math.min(this.maxReadSize, 1024 * 1024), 28);
    pattern.copy(body, 32);
    const response = await this.connection.request('QUERY_DIRECTORY', body, {
      treeId: this.treeId,
      responseSize: Math.min(this.maxReadSize, 1024 * 1024),
      ...(signal ? { signal } : {}),
    });
    if (response.status === NtStatus.NO_MORE_FILES) return null;
    this.check(response, 'QUERY_DIRECTORY', dir.path);
    const offset = response.message.readUInt16LE(HEADER_SIZE + 2);
    const length = response.message.readUInt32LE(HEADER_SIZE + 4);
    const buffer = response.message.subarray(offset, offset + length);
    const entries: Smb2DirEntry[] = [];
    let at = 0;
    for (;;) {
      const next = buffer.readUInt32LE(at);
      const nameLength = buffer.readUInt32LE(at + 60);
      entries.push({
        name: buffer.toString('utf16le', at + 64, at + 64 + nameLength),
        modifiedAt: fromFileTime(buffer.readBigUInt64LE(at + 24)),
        size: Number(buffer.readBigUInt64LE(at + 40)),
        directory: (buffer.readUInt32LE(at + 56) & ATTRIBUTE_DIRECTORY) !== 0,
      });
      if (next === 0) break;
      at += next;
    }
    return entries;
  }

  /** Renames an open file (opened with DELETE access) to `target`, a path inside the share. */
  rename(file: Smb2OpenFile, target: string, replace: boolean, signal?: AbortSignal): Promise<void> {
    return this.setName(file, FILE_RENAME_INFORMATION, target, replace, signal);
  }

  /** Hard link: fails with OBJECT_NAME_COLLISION when `target` exists and replace is false. */
  link(file: Smb2OpenFile, target: string, replace: boolean, signal?: AbortSignal): Promise<void> {
    return this.setName(file, FILE_LINK_INFORMATION, target, replace, signal);
  }

  /** Marks an open file for deletion once every handle on it is closed (other readers too). */
  async deleteOnClose(file: Smb2OpenFile, signal?: AbortSignal): Promise<void> {
    await this.setInfo(file, FILE_DISPOSITION_INFORMATION, Buffer.from([1]), signal);
  }

  /** Total and caller-available bytes of the share's file system. */
  async fsSize(dir: Smb2OpenFile, signal?: AbortSignal): Promise<{ totalBytes: number; freeBytes: number }> {
    const body = Buffer.alloc(41);
    body.writeUInt16LE(41, 0);
    body.writeUInt8(2, 2); // SMB2_0_INFO_FILESYSTEM
    body.writeUInt8(FILE_FS_FULL_SIZE_INFORMATION, 3);
    body.writeUInt32LE(64, 4);
    dir.fileId.copy(body, 24);
    const response = await this.call('QUERY_INFO', body, dir.path, signal);
    const offset = response.message.readUInt16LE(HEADER_SIZE + 2);
    const info = response.message.subarray(offset);
    const unit = info.readUInt32LE(24) * info.readUInt32LE(28);
    return {
      totalBytes: Number(info.readBigUInt64LE(0)) * unit,
      freeBytes: Number(info.readBigUInt64LE(8)) * unit,
    };
  }

  async disconnect(): Promise<void> {
    try {
      const body = Buffer.alloc(4);
      body.writeUInt16LE(4, 0);
      await this.connection.request('TREE_DISCONNECT', body, { treeId: this.treeId });
      await this.connection.request('LOGOFF', body);
    } finally {
      this.connection.close();
    }
  }

  private async setName(
    file: Smb2OpenFile,
    infoClass: number,
    target: string,
    replace: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    const name = Buffer.from(target.replace(/\//g, '\\'), 'utf16le');
    const info = Buffer.alloc(20 + name.length);
    info.writeUInt8(replace ? 1 : 0, 0);
    info.writeUInt32LE(name.length, 16);
    name.copy(info, 20);
    await this.setInfo(file, infoClass, info, signal);
  }

  private async setInfo(
    file: Smb2OpenFile,
    infoClass: number,
    info: Buffer,
    signal?: AbortSignal,
  ): Promise<void> {
    const body = Buffer.alloc(32);
    body.writeUInt16LE(33, 0);
    body.writeUInt8(1, 2); // SMB2_0_INFO_FILE
    body.writeUInt8(infoClass, 3);
    body.writeUInt32LE(info.length, 4);
    body.writeUInt16LE(HEADER_SIZE + 32, 8);
    file.fileId.copy(body, 16);
    await this.call('SET_INFO', body, file.path, signal, info);
  }

  private async negotiate(signal?: AbortSignal): Promise<boolean> {
    const body = Buffer.alloc(36 + DIALECTS.length * 2);
    body.writeUInt16LE(36, 0);
    body.writeUInt16LE(DIALECTS.length, 2);
    body.writeUInt16LE(1, 4); // signing enabled
    body.writeUInt32LE(CAP_LARGE_MTU, 8);
    randomBytes(16).copy(body, 12);
    DIALECTS.forEach((dialect, index) => body.writeUInt16LE(dialect, 36 + index * 2));
    const response = await this.call('NEGOTIATE', body, '', signal);
    const reply = response.message.subarray(HEADER_SIZE);
    const dialect = reply.readUInt16LE(4);
    if (!DIALECTS.includes(dialect)) {
      throw new Smb2ConnectionError(
        'SMB_PROTOCOL_ERROR',
        `the SMB server chose dialect 0x${dialect.toString(16)}, which Haven does not speak`,
      );
    }
    const capabilities = reply.readUInt32LE(24);
    this.connection.largeMtu = dialect >= 0x0210 && (capabilities & CAP_LARGE_MTU) !== 0;
    const limit = this.connection.largeMtu ? 8 * 1024 * 1024 : 65536;
    this.maxReadSize = Math.min(reply.readUInt32LE(32), limit);
    this.maxWriteSize = Math.min(reply.readUInt32LE(36), limit);
    return (reply.readUInt16LE(2) & SIGNING_REQUIRED) !== 0;
  }

  private async sessionSetup(signingRequired: boolean, signal?: AbortSignal): Promise<void> {
    const first = await this.connection.request(
      'SESSION_SETUP',
      sessionSetupBody(ntlmNegotiateMessage()),
      signal ? { signal } : {},
    );
    if (first.status !== NtStatus.MORE_PROCESSING_REQUIRED) this.check(first, 'SESSION_SETUP', '');
    this.connection.sessionId = first.sessionId;
    const offset = first.message.readUInt16LE(HEADER_SIZE + 4);
    const length = first.message.readUInt16LE(HEADER_SIZE + 6);
    const challenge = parseNtlmChallenge(first.message.subarray(offset, offset + length));
    const { message, sessionKey } = ntlmAuthenticateMessage(challenge, {
      username: this.options.username,
      password: this.options.password,
      domain: this.options.domain,
    });
    const second = await this.connection.request(
      'SESSION_SETUP',
      sessionSetupBody(message),
      signal ? { signal } : {},
    );
    this.check(second, 'SESSION_SETUP', '');
    if (signingRequired) this.connection.signingKey = sessionKey;
  }

  private async treeConnect(signal?: AbortSignal): Promise<void> {
    const path = Buffer.from(`\\\\${this.options.host}\\${this.options.share}`, 'utf16le');
    const body = Buffer.alloc(8 + path.length);
    body.writeUInt16LE(9, 0);
    body.writeUInt16LE(HEADER_SIZE + 8, 4);
    body.writeUInt16LE(path.length, 6);
    path.copy(body, 8);
    const response = await this.call(
      'TREE_CONNECT',
      body,
      `\\\\${this.options.host}\\${this.options.share}`,
      signal,
    );
    this.treeId = response.treeId;
  }

  private async call(
    command: Smb2CommandName,
    body: Buffer,
    path: string,
    signal?: AbortSignal,
    payload?: Buffer,
  ): Promise<Smb2Response> {
    const response = await this.connection.request(command, body, {
      treeId: this.treeId,
      ...(payload ? { payload } : {}),
      ...(signal ? { signal } : {}),
    });
    this.check(response, command, path);
    return response;
  }

  private check(response: Smb2Response, command: string, path: string): void {
    if (response.status !== NtStatus.SUCCESS) throw new Smb2Error(response.status, command, path);
  }
}

function sessionSetupBody(blob: Buffer): Buffer {
  const body = Buffer.alloc(24 + blob.length);
  body.writeUInt16LE(25, 0);
  body.writeUInt8(1, 3); // signing enabled
  body.writeUInt16LE(HEADER_SIZE + 24, 12);
  body.writeUInt16LE(blob.length, 14);
  blob.copy(body, 24);
  return body;
}
