import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The id of the repository each remote holds, recorded at the remote's first use (a backup task
 * opening or initialising it, or a sync): a remote whose storage later holds no repository, or
 * another one, is refused instead of getting a new one. Existing remotes start with NULL (the
 * catalog cannot know the id); their next successful open records it, and until then their
 * restore points in the catalog guard them as before.
 */
export class RemoteRepositoryId1764190000000 implements MigrationInterface {
  name = 'RemoteRepositoryId1764190000000';

  async up(q: QueryRunner): Promise<void> {
    // repository.json's repositoryId is a UUID in practice, but the format only requires a string.
    await q.query(`ALTER TABLE remotes ADD COLUMN repository_id text NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE remotes DROP COLUMN repository_id`);
  }
}
