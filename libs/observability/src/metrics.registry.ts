import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The Prometheus metrics of one process; `/metrics` renders this registry. */
export class HavenMetrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  readonly tasksInFlight: Gauge<'queue'>;
  readonly tasksCompleted: Counter<'queue' | 'outcome'>;

  constructor(service: string) {
    this.registry.setDefaultLabels({ service });
    collectDefaultMetrics({ register: this.registry, prefix: 'haven_' });
    this.httpRequests = new Counter({
      name: 'haven_http_requests_total',
      help: 'HTTP requests served',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.httpDuration = new Histogram({
      name: 'haven_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.tasksInFlight = new Gauge({
      name: 'haven_tasks_in_flight',
      help: 'Work items being processed by this process',
      labelNames: ['queue'],
      registers: [this.registry],
    });
    this.tasksCompleted = new Counter({
      name: 'haven_tasks_completed_total',
      help: 'Work items finished by this process',
      labelNames: ['queue', 'outcome'],
      registers: [this.registry],
    });
  }
}
