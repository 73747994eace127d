import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AuditEntryEntity } from '@haven/db';
import { currentLogContext } from '@haven/observability';

/** Appends who-did-what entries; the acting key comes from the request's log context. */
@Injectable()
export class AuditTrail {
  constructor(private readonly dataSource: DataSource) {}

  async record(
    tenantId: string,
    action: string,
    objectType: string,
    objectId: string | null,
    detail: Record<string, unknown> = {},
    actorKeyId?: string,
  ): Promise<void> {
    await this.dataSource.getRepository(AuditEntryEntity).insert({
      tenantId,
      actorKeyId: actorKeyId ?? null,
      action,
      objectType,
      objectId,
      detail: { ...detail, requestId: currentLogContext().requestId },
    });
  }
}
