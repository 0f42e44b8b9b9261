"""transformers engine token counter: `run(spec, rt)` counts the tokens of texts with a base model
folder's own tokenizer (POST /api/v1/datasets/{id}/validate at level strict).

Spec (src/server.ts): {base_model: abs path of a save_pretrained folder under HF_MODELS_DIR, texts:
[str]}. Answers `done` with counts: one number per text, special tokens included (what training
adds). Nothing is downloaded: a folder without a tokenizer fails with MODEL_DOWNLOAD_FAILED.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                   "TOKENIZERS_PARALLELISM": "false"})

from runtime import JobFailure  # noqa: E402

BATCH = 512


def run(spec: dict[str, Any], rt: Any) -> None:
    from transformers import AutoTokenizer

    folder = spec["base_model"]
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any loading failure means the folder has no usable tokenizer
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"no tokenizer could be loaded from {os.path.basename(folder)}: {e}",
                         {"base_model": os.path.basename(folder)}) from e
    texts: list[str] = spec["texts"]
    counts: list[int] = []
    for i in range(0, len(texts), BATCH):
        counts.extend(len(ids) for ids in tok(texts[i:i + BATCH], add_special_tokens=True)["input_ids"])
    rt.emit("done", counts=counts)
