import { Nfs3Error } from './nfs3.status';
import { RpcConnection, type RpcConnectionOptions } from './rpc.transport';
import { XdrReader, XdrWriter } from './xdr.codec';

export const NFS_PROGRAM = 100003;
export const NFS_VERSION = 3;

const Proc = {
  GETATTR: 1,
  LOOKUP: 3,
  READ: 6,
  WRITE: 7,
  CREATE: 8,
  MKDIR: 9,
  REMOVE: 12,
  RMDIR: 13,
  RENAME: 14,
  LINK: 15,
  READDIRPLUS: 17,
  FSSTAT: 18,
  FSINFO: 19,
  COMMIT: 21,
} as const;

type ProcName = keyof typeof Proc;

/** ftype3 */
export const Nfs3FileType = {
  Regular: 1,
  Directory: 2,
  BlockDevice: 3,
  CharDevice: 4,
  Symlink: 5,
  Socket: 6,
  Fifo: 7,
} as const;

export interface Nfs3Attributes {
  type: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  fileId: bigint;
  modifiedAt: Date;
}

export type Nfs3Stable = 'unstable' | 'data-sync' | 'file-sync';
const STABLE: Record<Nfs3Stable, number> = { unstable: 0, 'data-sync': 1, 'file-sync': 2 };

export type Nfs3CreateMode = 'unchecked' | 'guarded';

export interface Nfs3DirEntry {
  name: string;
  cookie: bigint;
  attributes?: Nfs3Attributes;
  handle?: Buffer;
}

export interface Nfs3DirPage {
  entries: Nfs3DirEntry[];
  cookieVerifier: Buffer;
  eof: boolean;
}

export interface Nfs3FsStat {
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
}

export interface Nfs3FsInfo {
  readMax: number;
  readPreferred: number;
  writeMax: number;
  writePreferred: number;
  dirPreferred: number;
}

/**
 * NFS version 3 (RFC 1813) procedures over one pipelined RPC connection. Handles are opaque
 * buffers; names are single path components. Every non-OK status becomes an Nfs3Error naming the
 * procedure and the path given by the caller (handles alone mean nothing to an operator).
 */
export class Nfs3Client {
  private readonly connection: RpcConnection;

  constructor(options: RpcConnectionOptions) {
    this.connection = new RpcConnection(options);
  }

  async getattr(handle: Buffer, path: string, signal?: AbortSignal): Promise<Nfs3Attributes> {
    const reply = await this.call('GETATTR', new XdrWriter().opaque(handle), path, signal);
    return readFattr(reply);
  }

  async lookup(
    dir: Buffer,
    name: string,
    path: string,
    signal?: AbortSignal,
  ): Promise<{ handle: Buffer; attributes?: Nfs3Attributes }> {
    const reply = await this.call('LOOKUP', dirop(dir, name), path, signal);
    const handle = Buffer.from(reply.opaque(64));
    const attributes = readPostOpAttr(reply);
    return { handle, ...(attributes ? { attributes } : {}) };
  }

  /** CREATE; `guarded` fails with NFS3ERR_EXIST when the name is taken. */
  async create(
    dir: Buffer,
    name: string,
    how: Nfs3CreateMode,
    path: string,
    mode = 0o644,
    signal?: AbortSignal,
  ): Promise<{ handle?: Buffer; attributes?: Nfs3Attributes }> {
    const args = dirop(dir, name).uint32(how === 'guarded' ? 1 : 0);
    writeSattr(args, { mode, size: 0 });
    const reply = await this.call('CREATE', args, path, signal);
    return readCreated(reply);
  }

  async mkdir(
    dir: Buffer,
    name: string,
    path: string,
    mode = 0o755,
    signal?: AbortSignal,
  ): Promise<{ handle?: Buffer; attributes?: Nfs3Attributes }> {
    const args = dirop(dir, name);
    writeSattr(args, { mode });
    const reply = await this.call('MKDIR', args, path, signal);
    return readCreated(reply);
  }

  async write(
    handle: Buffer,
    offset: number,
    data: Buffer,
    stable: Nfs3Stable,
    path: string,
    signal?: AbortSignal,
  ): Promise<{ count: number; committed: Nfs3Stable; verifier: Buffer }> {
    const args = new XdrWriter()
      .opaque(handle)
      .uint64(offset)
      .uint32(data.length)
      .uint32(STABLE[stable])
      .opaque(data);
    const reply = await this.call('WRITE', args, path, signal);
    skipWccData(reply);
    const count = reply.uint32();
    const committedValue = reply.uint32();
    const committed: Nfs3Stable =
      committedValue === 2 ? 'file-sync' : committedValue === 1 ? 'data-sync' : 'unstable';
    return { count, committed, verifier: Buffer.from(reply.fixedOpaque(8)) };
  }

  /** COMMIT of the whole file (offset 0, count 0); returns the write verifier. */
  async commit(handle: Buffer, path: string, signal?: AbortSignal): Promise<Buffer> {
    const args = new XdrWriter().opaque(handle).uint64(0).uint32(0);
    const reply = await this.call('COMMIT', args, path, signal);
    skipWccData(reply);
    return Buffer.from(reply.fixedOpaque(8));
  }

  async read(
    handle: Buffer,
    offset: number,
    count: number,
    path: string,
    signal?: AbortSignal,
  ): Promise<{ data: Buffer; eof: boolean }> {
    const args = new XdrWriter().opaque(handle).uint64(offset).uint32(count);
    const reply = await this.call('READ', args, path, signal);
    readPostOpAttr(reply);
    reply.uint32(); // count, repeated as the opaque length
    const eof = reply.bool();
    return { data: reply.opaque(), eof };
  }

  async remove(dir: Buffer, name: string, path: string, signal?: AbortSignal): Promise<void> {
    await this.call('REMOVE', dirop(dir, name), path, signal);
  }

  async rmdir(dir: Buffer, name: string, path: string, signal?: AbortSignal): Promise<void> {
    await this.call('RMDIR', dirop(dir, name), path, signal);
  }

  async rename(
    fromDir: Buffer,
    fromName: string,
    toDir: Buffer,
    toName: string,
    path: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const args = dirop(fromDir, fromName).opaque(toDir).string(toName);
    await this.call('RENAME', args, path, signal);
  }

  /** Hard link: fails with NFS3ERR_EXIST when `name` is taken, which makes it a create-if-absent. */
  async link(file: Buffer, dir: Buffer, name: string, path: string, signal?: AbortSignal): Promise<void> {
    const args = new XdrWriter().opaque(file).opaque(dir).string(name);
    await this.call('LINK', args, path, signal);
  }

  async readdirplus(
    dir: Buffer,
    cookie: bigint,
    cookieVerifier: Buffer,
    path: string,
    signal?: AbortSignal,
    maxBytes = 64 * 1024,
  ): Promise<Nfs3DirPage> {
    const args = new XdrWriter()
      .opaque(dir)
      .uint64(cookie)
      .fixedOpaque(cookieVerifier)
      .uint32(maxBytes / 4)
      .uint32(maxBytes);
    const reply = await this.call('READDIRPLUS', args, path, signal);
    readPostOpAttr(reply);
    const verifier = Buffer.from(reply.fixedOpaque(8));
    const entries: Nfs3DirEntry[] = [];
    while (reply.bool()) {
      reply.uint64Big(); // fileid
      const name = reply.string(255 * 4);
      const entryCookie = reply.uint64Big();
      const attributes = readPostOpAttr(reply);
      const handle = reply.bool() ? Buffer.from(reply.opaque(64)) : undefined;
      entries.push({
        name,
        cookie: entryCookie,
        ...(attributes ? { attributes } : {}),
        ...(handle ? { handle } : {}),
      });
    }
    return { entries, cookieVerifier: verifier, eof: reply.bool() };
  }

  async fsstat(root: Buffer, path: string, signal?: AbortSignal): Promise<Nfs3FsStat> {
    const reply = await this.call('FSSTAT', new XdrWriter().opaque(root), path, signal);
    readPostOpAttr(reply);
    return { totalBytes: reply.uint64(), freeBytes: reply.uint64(), availableBytes: reply.uint64() };
  }

  async fsinfo(root: Buffer, path: string, signal?: AbortSignal): Promise<Nfs3FsInfo> {
    const reply = await this.call('FSINFO', new XdrWriter().opaque(root), path, signal);
    readPostOpAttr(reply);
    const readMax = reply.uint32();
    const readPreferred = reply.uint32();
    reply.uint32(); // rtmult
    const writeMax = reply.uint32();
    const writePreferred = reply.uint32();
    reply.uint32(); // wtmult
    const dirPreferred = reply.uint32();
    return { readMax, readPreferred, writeMax, writePreferred, dirPreferred };
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  private async call(
    procedure: ProcName,
    args: XdrWriter,
    path: string,
    signal: AbortSignal | undefined,
  ): Promise<XdrReader> {
    const reply = await this.connection.call(NFS_PROGRAM, NFS_VERSION, Proc[procedure], args, signal);
    const status = reply.uint32();
    if (status !== 0) throw new Nfs3Error(status, procedure, path);
    return reply;
  }
}

function dirop(dir: Buffer, name: string): XdrWriter {
  return new XdrWriter().opaque(dir).string(name);
}

function writeSattr(writer: XdrWriter, attributes: { mode?: number; size?: number }): void {
  if (attributes.mode === undefined) writer.bool(false);
  else writer.bool(true).uint32(attributes.mode);
  writer.bool(false); // uid
  writer.bool(false); // gid
  if (attributes.size === undefined) writer.bool(false);
  else writer.bool(true).uint64(attributes.size);
  writer.uint32(1); // atime: set to server time
  writer.uint32(1); // mtime: set to server time
}

export function readFattr(reader: XdrReader): Nfs3Attributes {
  const type = reader.uint32();
  const mode = reader.uint32();
  reader.uint32(); // nlink
  const uid = reader.uint32();
  const gid = reader.uint32();
  const size = reader.uint64();
  reader.uint64(); // used
  reader.skip(8); // rdev
  reader.skip(8); // fsid
  const fileId = reader.uint64Big();
  reader.skip(8); // atime
  const seconds = reader.uint32();
  const nanoseconds = reader.uint32();
  reader.skip(8); // ctime
  return {
    type,
    mode,
    uid,
    gid,
    size,
    fileId,
    modifiedAt: new Date(seconds * 1000 + Math.floor(nanoseconds / 1e6)),
  };
}

function readPostOpAttr(reader: XdrReader): Nfs3Attributes | undefined {
  return reader.bool() ? readFattr(reader) : undefined;
}

function skipWccData(reader: XdrReader): void {
  if (reader.bool()) reader.skip(24); // pre_op_attr: size, mtime, ctime
  readPostOpAttr(reader);
}

function readCreated(reply: XdrReader): { handle?: Buffer; attributes?: Nfs3Attributes } {
  const handle = reply.bool() ? Buffer.from(reply.opaque(64)) : undefined;
  const attributes = readPostOpAttr(reply);
  return { ...(handle ? { handle } : {}), ...(attributes ? { attributes } : {}) };
}
