/**
 * S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Cloudflare R2…) through the official
 * AWS SDK v3: `@aws-sdk/client-s3` for the calls, `@aws-sdk/lib-storage` for multipart uploads
 * of large checkpoints and of streams (parts sent in parallel, a failed upload aborted so no
 * part is left billed), `@aws-sdk/s3-request-presigner` for download links.
 *
 * The endpoint comes from the operator's configuration (S3_ENDPOINT), never from a request, so
 * it does not go through the SSRF guard of net/ (a MinIO on 10.x or 127.0.0.1 is the usual
 * case).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3Checksums } from '../core/config.js';
import { storageKey, type LinkOptions, type Storage, type StoredObject } from './types.js';

export interface S3Options {
  bucket: string;
  /** Prepended to every key ('' or 'a/b'). */
  prefix: string;
  endpoint: string | undefined;
  region: string;
  forcePathStyle: boolean;
  /** Default: the SDK's (WHEN_SUPPORTED). */
  checksums?: S3Checksums;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string | undefined } | undefined;
  /** Presigned links for clients (true), or downloads streamed through trainhook (false). */
  public: boolean;
  /** Files larger than this go up in parts (default 64 MiB; tests lower it). */
  singlePutMaxBytes?: number;
}

/** Files up to this size go up in one PUT; larger ones (and streams) in parts. */
const SINGLE_PUT_MAX_BYTES = 64 * 1024 * 1024;
/** Large checkpoints go up in 16 MiB parts, four at a time. */
const PART_BYTES = 16 * 1024 * 1024;
const PART_CONCURRENCY = 4;

function isMissing(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

export class S3Storage implements Storage {
  readonly kind = 's3' as const;
  readonly remote = true;
  readonly location: string;
  private readonly client: S3Client;

  constructor(private readonly opts: S3Options) {
    const config: S3ClientConfig = {
      region: opts.region,
      forcePathStyle: opts.forcePathStyle,
      // Uploads retry on their own schedule (jobs/file-sync.ts); the SDK's three tries stay for reads.
      maxAttempts: 3,
    };
    if (opts.checksums) {
      config.requestChecksumCalculation = opts.checksums.request;
      config.responseChecksumValidation = opts.checksums.response;
    }
    if (opts.endpoint) config.endpoint = opts.endpoint;
    // A copy: the SDK writes into the credentials it is given, and the config's are frozen.
    if (opts.credentials) config.credentials = { ...opts.credentials };
    this.client = new S3Client(config);
    this.location = `s3://${opts.bucket}${opts.prefix ? `/${opts.prefix}` : ''}${opts.endpoint ? ` at ${opts.endpoint}` : ''}`;
  }

  private objectKey(key: string): string {
    const k = storageKey(key);
    return this.opts.prefix ? `${this.opts.prefix}/${k}` : k;
  }

  private fromObjectKey(objectKey: string): string {
    return this.opts.prefix ? objectKey.slice(this.opts.prefix.length + 1) : objectKey;
  }

  async putFile(key: string, file: string, opts: { contentType?: string } = {}): Promise<void> {
    const size = (await fs.promises.stat(file)).size;
    if (size > (this.opts.singlePutMaxBytes ?? SINGLE_PUT_MAX_BYTES)) return this.putStream(key, fs.createReadStream(file), opts);
    // One PUT streamed from the file, its length known: a third of the CPU of lib-storage's
    // Upload, which reads a body of unknown length into memory first (bench/storage.ts).
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.opts.bucket,
        Key: this.objectKey(key),
        Body: fs.createReadStream(file, { start: 0, end: Math.max(0, size - 1) }),
        ContentLength: size,
        ContentType: opts.contentType ?? 'application/octet-stream',
      }),
    );
  }

  async putStream(key: string, body: Readable, opts: { contentType?: string } = {}): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.opts.bucket,
        Key: this.objectKey(key),
        Body: body,
        ContentType: opts.contentType ?? 'application/octet-stream',
      },
      partSize: PART_BYTES,
      queueSize: PART_CONCURRENCY,
      leavePartsOnError: false,
    });
    await upload.done();
  }

  async getToFile(key: string, file: string): Promise<boolean> {
    const got = await this.getStream(key);
    if (!got) return false;
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${crypto.randomBytes(6).toString('hex')}.tmp`;
    try {
      await pipeline(got.body, fs.createWriteStream(tmp));
      await fs.promises.rename(tmp, file);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
    return true;
  }

  async getStream(key: string, range?: { start: number; end: number }): Promise<{ body: Readable; size: number } | null> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.opts.bucket,
          Key: this.objectKey(key),
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      const body = res.Body instanceof Readable ? res.Body : Readable.from([]);
      return { body, size: res.ContentLength ?? 0 };
    } catch (err) {
      if (isMissing(err)) return null;
      // A range past the end of the object: nothing there.
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) {
        return { body: Readable.from([]), size: 0 };
      }
      throw err;
    }
  }

  async head(key: string): Promise<StoredObject | null> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key: this.objectKey(key) }));
      return { key: storageKey(key), size: res.ContentLength ?? 0, modifiedAt: res.LastModified ?? new Date(0) };
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const full = this.opts.prefix ? `${this.opts.prefix}/${prefix}` : prefix;
    let token: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: full, ...(token ? { ContinuationToken: token } : {}) }),
      );
      for (const o of res.Contents ?? []) {
        if (!o.Key) continue;
        out.push({ key: this.fromObjectKey(o.Key), size: o.Size ?? 0, modifiedAt: o.LastModified ?? new Date(0) });
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async deletePrefix(prefix: string): Promise<number> {
    const objects = await this.list(prefix);
    // DeleteObjects takes at most 1000 keys a call.
    for (let i = 0; i < objects.length; i += 1000) {
      const batch = objects.slice(i, i + 1000);
      await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.opts.bucket,
          Delete: { Objects: batch.map((o) => ({ Key: this.objectKey(o.key) })), Quiet: true },
        }),
      );
    }
    return objects.length;
  }

  async link(key: string, opts: LinkOptions): Promise<string | null> {
    if (!this.opts.public) return null;
    const command = new GetObjectCommand({
      Bucket: this.opts.bucket,
      Key: this.objectKey(key),
      ResponseContentDisposition: `attachment; filename="${opts.fileName.replace(/["\\\r\n]/g, '_')}"`,
      ResponseContentType: opts.contentType,
    });
    // SigV4 presigned URLs live at most 7 days.
    return getSignedUrl(this.client, command, { expiresIn: Math.min(opts.ttlSeconds, 7 * 24 * 3600) });
  }

  /** Creates the bucket when it does not exist (tests, a fresh MinIO); the operator owns it otherwise. */
  async ensureBucket(): Promise<void> {
    const { CreateBucketCommand, HeadBucketCommand } = await import('@aws-sdk/client-s3');
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.opts.bucket }));
    } catch (err) {
      if (!isMissing(err)) throw err;
      await this.client.send(new CreateBucketCommand({ Bucket: this.opts.bucket }));
    }
  }

  destroy(): void {
    this.client.destroy();
  }
}
