import { SetMetadata } from '@nestjs/common';

export const PUBLIC_ROUTE = 'haven:public-route';

/** A route that answers without an API key (health, metrics, the API root). */
export const PublicRoute = () => SetMetadata(PUBLIC_ROUTE, true);
