/**
 * The storage a server uses, from its configuration: the workdir itself (STORAGE_URL unset or
 * `local`), another folder (`file:///path`), or an S3 bucket (`s3://bucket/prefix`).
 */
import type { Config } from '../core/config.js';
import { LocalStorage } from './local.js';
import { S3Storage } from './s3.js';
import type { Storage } from './types.js';

export type { LinkOptions, Storage, StoredObject } from './types.js';
export { storageKey } from './types.js';
export { LocalStorage } from './local.js';
export { S3Storage, type S3Options } from './s3.js';

export function createStorage(config: Config): Storage {
  const s = config.storage;
  if (s.kind === 'local') return new LocalStorage(s.path ?? config.workdir, s.path !== undefined);
  return new S3Storage({
    bucket: s.bucket,
    prefix: s.prefix,
    endpoint: s.endpoint,
    region: s.region,
    forcePathStyle: s.forcePathStyle,
    checksums: s.checksums,
    credentials: s.credentials,
    public: s.public,
  });
}
