import { timingSafeEqual } from 'node:crypto';
import { type CanActivate, type ExecutionContext, HttpStatus, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { DataSource } from 'typeorm';
import { ApiKeyEntity, apiKeyId, hashApiKey, type Role } from '@haven/db';
import { HAVEN_PROCESS, type HavenProcessInfo, ProblemException, PUBLIC_ROUTE } from '@haven/service-core';
import { addToLogContext } from '@haven/observability';
import { type Principal, REQUIRED_ROLE, roleAllows } from './principal';

const LAST_USED_RESOLUTION_MS = 60_000;

/** Authenticates `Authorization: Bearer <api key>` and enforces the route's role. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  private readonly lastUsedWrites = new Map<string, number>();

  constructor(
    private readonly reflector: Reflector,
    private readonly dataSource: DataSource,
    @Inject(HAVEN_PROCESS) private readonly info: HavenProcessInfo,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean | undefined>(PUBLIC_ROUTE, targets)) return true;
    const request = context.switchToHttp().getRequest<Request & { principal?: Principal }>();
    const principal = await this.authenticate(request.headers.authorization);
    const required =
      this.reflector.getAllAndOverride<Role | 'system-admin' | undefined>(REQUIRED_ROLE, targets) ??
      (request.method === 'GET' || request.method === 'HEAD' ? 'viewer' : 'operator');
    const allowed =
      required === 'system-admin' ? principal.isSystemAdmin : roleAllows(principal.role, required);
    if (!allowed)
      throw new ProblemException(
        HttpStatus.FORBIDDEN,
        'Forbidden',
        `This action needs the ${required} role; the key "${principal.keyId}" has ${principal.role}`,
      );
    request.principal = principal;
    addToLogContext({ tenantId: principal.tenantId });
    return true;
  }

  private async authenticate(header: string | undefined): Promise<Principal> {
    const unauthorized = (detail: string) =>
      new ProblemException(HttpStatus.UNAUTHORIZED, 'Unauthorized', detail);
    const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!match?.[1]) throw unauthorized('Send an API key as "Authorization: Bearer <key>"');
    const key = match[1];
    const id = apiKeyId(key);
    if (id === undefined) throw unauthorized('The API key is malformed');
    const record = await this.dataSource.getRepository(ApiKeyEntity).findOneBy({ id });
    const expected = Buffer.from(record?.keyHash ?? '0'.repeat(64), 'hex');
    const actual = Buffer.from(hashApiKey(key), 'hex');
    if (!record || !timingSafeEqual(expected, actual) || record.revokedAt !== null)
      throw unauthorized('The API key is unknown or revoked');
    this.touch(record.id);
    return {
      keyId: record.id,
      tenantId: record.tenantId,
      role: record.role,
      isSystemAdmin: record.role === 'admin' && record.tenantId === this.info.systemTenantId,
    };
  }

  /** Records last use at most once a minute per key, off the request's critical path. */
  private touch(keyId: string): void {
    const now = Date.now();
    if (now - (this.lastUsedWrites.get(keyId) ?? 0) < LAST_USED_RESOLUTION_MS) return;
    this.lastUsedWrites.set(keyId, now);
    void this.dataSource
      .getRepository(ApiKeyEntity)
      .update({ id: keyId }, { lastUsedAt: new Date(now) })
      .catch(() => undefined);
  }
}
