import type { OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import type { Bus, BusSubscription } from '@haven/bus';
import type { RequestSubject } from '@haven/contracts';

/**
 * A scheduler service that answers one bus request with `start`: it takes requests once the
 * application has booted (and says it is ready only once the server has its responder) and stops
 * taking them as the module stops.
 */
export abstract class BusResponder<Req, Res> implements OnApplicationBootstrap, OnModuleDestroy {
  private subscription?: BusSubscription;

  protected constructor(
    protected readonly bus: Bus,
    private readonly subject: RequestSubject<Req, Res>,
  ) {}

  abstract start(request: Req): Promise<Res>;

  async onApplicationBootstrap(): Promise<void> {
    this.subscription = this.bus.respond(this.subject, (request) => this.start(request));
    await this.subscription.ready();
  }

  async onModuleDestroy(): Promise<void> {
    await this.subscription?.unsubscribe();
  }
}
