/** What the API says about a registered model and its exports. */
import type { ModelExportRow, ModelRow } from '../db/schema.js';
import { signModelLink } from './links.js';

export interface LinkSigner {
  key: string;
  baseUrl: string;
  ttlSeconds: number;
}

function link(signer: LinkSigner, modelId: string, fileName: string) {
  return signModelLink({ key: signer.key, baseUrl: signer.baseUrl, modelId, fileName, ttlSeconds: signer.ttlSeconds });
}

export function exportView(row: ModelExportRow, signer: LinkSigner) {
  return {
    model_id: row.modelId,
    format: row.format,
    file_name: row.fileName,
    size_bytes: row.sizeBytes,
    sha256: row.sha256,
    created_at: row.createdAt.toISOString(),
    check: row.check ?? null,
    download: link(signer, row.modelId, row.fileName),
  };
}

export function modelView(row: ModelRow, exports: ModelExportRow[], signer: LinkSigner) {
  const base = `${signer.baseUrl}/api/v1/models/${row.id}`;
  return {
    model_id: row.id,
    name: row.name,
    framework: row.framework,
    task: row.task,
    format: row.format,
    classes: row.classes,
    num_classes: row.classes.length,
    imgsz: row.imgsz,
    metrics: row.metrics ?? null,
    size_bytes: row.sizeBytes,
    size_mb: Math.round((row.sizeBytes / 1024 / 1024) * 100) / 100,
    sha256: row.sha256,
    source_job_id: row.sourceJobId,
    base_model: row.baseModel,
    /** What to put in base_model (or config.model) to fine-tune from this model. */
    base_model_ref: `model:${row.id}`,
    created_at: row.createdAt.toISOString(),
    download: link(signer, row.id, row.fileName),
    exports: exports.filter((e) => e.modelId === row.id).map((e) => exportView(e, signer)),
    links: {
      self: base,
      export: `${base}/export`,
      predict: `${base}/predict`,
      source_job: row.sourceJobId ? `${signer.baseUrl}/api/v1/jobs/${row.sourceJobId}` : null,
    },
  };
}
