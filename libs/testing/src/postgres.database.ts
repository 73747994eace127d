import { Client } from 'pg';
import { testDatabaseUrl } from './integration';
import { uniqueName } from './scratch';

/** A fresh Postgres database for one suite, dropped (with its connections) by `drop()`. */
export async function createTestDatabase(
  prefix = 'haven_test',
): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const adminUrl = testDatabaseUrl();
  const name = uniqueName(prefix);
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      const client = new Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
