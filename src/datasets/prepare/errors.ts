/**
 * A refused data-preparation request: what the caller sent cannot be converted, validated or
 * split as asked. The API answers 400 with the code and details (SAM2_INVALID names the file
 * and the field).
 */
export type PrepareErrorCode = 'SAM2_INVALID' | 'SPLIT_IMPOSSIBLE' | 'DATASET_NOT_JSONL' | 'BASE_MODEL_NOT_FOUND';

export class PrepareError extends Error {
  override readonly name = 'PrepareError';
  constructor(
    readonly code: PrepareErrorCode,
    message: string,
    readonly details: Record<string, unknown> | null = null,
  ) {
    super(message);
  }
}
