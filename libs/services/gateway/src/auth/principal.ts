import { createParamDecorator, type ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Role } from '@haven/db';

/** Who is calling: resolved from the API key by ApiKeyGuard. */
export interface Principal {
  keyId: string;
  tenantId: string;
  role: Role;
  /** Admins of the system tenant manage tenants. */
  isSystemAdmin: boolean;
}

const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

export function roleAllows(role: Role, required: Role): boolean {
  return RANK[role] >= RANK[required];
}

export const REQUIRED_ROLE = 'haven:required-role';

/** The least role a route needs; routes without it need `viewer` for reads, `operator` otherwise. */
export const RequireRole = (role: Role | 'system-admin') => SetMetadata(REQUIRED_ROLE, role);

export const CurrentPrincipal = createParamDecorator(
  (_data: unknown, context: ExecutionContext): Principal => {
    const request = context.switchToHttp().getRequest<{ principal?: Principal }>();
    if (!request.principal) throw new Error('CurrentPrincipal used on a route without ApiKeyGuard');
    return request.principal;
  },
);
