import { redactUrl } from './nats.driver';

describe('redactUrl', () => {
  it('hides credentials of every server in a NATS URL list', () => {
    expect(redactUrl('nats://admin:s3cret@10.0.0.1:4222,nats://token@10.0.0.2:4222')).toBe(
      'nats://***@10.0.0.1:4222,nats://***@10.0.0.2:4222',
    );
  });

  it('leaves a URL without credentials alone', () => {
    expect(redactUrl('nats://127.0.0.1:4222')).toBe('nats://127.0.0.1:4222');
  });
});
