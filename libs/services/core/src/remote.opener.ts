import { Inject, Injectable } from '@nestjs/common';
import type { RemoteEntity, SecretBox } from '@haven/db';
import type { PluginRegistry, RemotePlugin } from '@haven/plugin-sdk';
import type { RemoteStore } from '@haven/remote-sdk';
import { HAVEN_PLUGINS, HAVEN_SECRETS } from './core.tokens';

/** Splits a remote's settings into what is stored in clear and the plugin's secret fields. */
export function splitSecrets(
  plugin: RemotePlugin,
  settings: Record<string, unknown>,
): { visible: Record<string, unknown>; secret: Record<string, unknown> } {
  const secretFields = new Set(plugin.secretFields ?? []);
  const visible: Record<string, unknown> = {};
  const secret: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(settings))
    (secretFields.has(field) ? secret : visible)[field] = value;
  return { visible, secret };
}

/** Opens the RemoteStore of a catalog row: plugin lookup, secrets unsealed in memory only. */
@Injectable()
export class RemoteOpener {
  constructor(
    @Inject(HAVEN_PLUGINS) private readonly plugins: PluginRegistry,
    @Inject(HAVEN_SECRETS) private readonly secrets: SecretBox,
  ) {}

  sealSecrets(remoteId: string, secret: Record<string, unknown>): string | null {
    return Object.keys(secret).length === 0
      ? null
      : this.secrets.seal(JSON.stringify(secret), `remote:${remoteId}:settings`);
  }

  settingsOf(remote: Pick<RemoteEntity, 'id' | 'settings' | 'secretsSealed'>): Record<string, unknown> {
    const secret =
      remote.secretsSealed === null
        ? {}
        : (JSON.parse(this.secrets.open(remote.secretsSealed, `remote:${remote.id}:settings`)) as Record<
            string,
            unknown
          >);
    return { ...remote.settings, ...secret };
  }

  async open(
    remote: Pick<RemoteEntity, 'id' | 'name' | 'type' | 'settings' | 'secretsSealed'>,
  ): Promise<RemoteStore> {
    return this.openWith(remote.type, remote.name, this.settingsOf(remote));
  }

  async openWith(type: string, name: string, settings: Record<string, unknown>): Promise<RemoteStore> {
    return this.plugins.remote(type).create(settings, { name });
  }
}
