import { startS3rver, type S3rverHandle } from '@haven/testing';
import { startLatencyProxy } from './latency.proxy';

export interface DistantS3 {
  s3: S3rverHandle;
  /** The S3 endpoint a round trip away (through the latency proxy). */
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

/** s3rver with `buckets`, behind a proxy that adds `roundTripMs` to every round trip. */
export async function startDistantS3(roundTripMs: number, buckets: readonly string[]): Promise<DistantS3> {
  const s3 = await startS3rver({ buckets });
  try {
    const proxy = await startLatencyProxy(s3.port, roundTripMs / 2);
    return {
      s3,
      endpoint: proxy.endpoint,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      stop: async () => {
        await proxy.close();
        await s3.stop();
      },
    };
  } catch (error) {
    await s3.stop();
    throw error;
  }
}
