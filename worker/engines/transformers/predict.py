"""transformers engine prediction: text generation, `serve_request(request, state)` in the registry's
long-lived prediction worker (src/worker/serve.ts), `run(spec, rt)` for one request.

Request (src/registry/service.ts generate): {op: "generate", model: abs path of the registered
adapter.zip or model.zip, base_model: abs path of the base model folder | null, prompt,
max_new_tokens, temperature, do_sample, seed, cache_dir}. Answer: {text, tokens, token_ids,
prompt_tokens, finish_reason, seconds} — inference.py's generate(), the same code the exported
deployment package runs. The registered ZIP is extracted once under cache_dir (by its sha of path
and mtime); loaded models stay cached (the last few), so only the first request pays for loading.
Image prediction requests are refused: this engine's models take text.

A vision-lm model's request adds `task: "vision-lm"` and `image` (abs path of the uploaded image,
which the registry removes after the answer): vlm_inference.py's load() and generate(), the code of
that model's deployment package.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"})

from runtime import JobFailure  # noqa: E402

from engines.transformers.model_zip import extract_into  # noqa: E402

MODEL_CACHE_SIZE = 2
_cache: dict[tuple[str, float, str], tuple[Any, Any]] = {}


def run(spec: dict[str, Any], rt: Any) -> None:
    rt.emit("done", **handle(spec))


def serve_request(request: dict[str, Any], _state: dict[str, Any]) -> dict[str, Any]:
    return handle(request)


def handle(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("op") != "generate":
        raise JobFailure("PREDICT_UNSUPPORTED", "transformers models generate text: use POST /api/v1/models/{id}/generate")
    prompt = request.get("prompt")
    if not isinstance(prompt, str):
        raise JobFailure("UNKNOWN_ERROR", "request.prompt missing or not a string")
    vision = request.get("task") == "vision-lm"
    model, tok = _model_for(request, vision)
    seed = request.get("seed")
    if vision:
        from engines.transformers import vlm_inference

        image = request.get("image")
        if not isinstance(image, str) or not os.path.isabs(image):
            raise JobFailure("UNKNOWN_ERROR", "request.image missing: a vision-lm model answers about an image")
        try:
            picture = vlm_inference.read_image(image)
        except OSError as e:
            raise JobFailure("INVALID_IMAGE", f"the image does not open: {e}") from e
        return vlm_inference.generate(model, tok, picture, prompt, int(request.get("max_new_tokens") or 32),
                                      float(request.get("temperature") or 1.0), bool(request.get("do_sample")),
                                      int(seed) if seed is not None else None)
    from engines.transformers.inference import generate

    return generate(model, tok, prompt, int(request.get("max_new_tokens") or 32), float(request.get("temperature") or 1.0),
                    bool(request.get("do_sample")), int(seed) if seed is not None else None)


def _model_for(request: dict[str, Any], vision: bool = False) -> tuple[Any, Any]:
    path = request.get("model")
    if not isinstance(path, str) or not os.path.isabs(path) or not Path(path).is_file():
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"model file {path!r} not found", {"path": path})
    base = request.get("base_model")
    key = (path, Path(path).stat().st_mtime, str(base))
    cached = _cache.pop(key, None)
    if cached is None:
        from engines.transformers import inference, vlm_inference

        kind_of, load = (vlm_inference.kind_of, vlm_inference.load) if vision else (inference.kind_of, inference.load)

        cache_dir = Path(request.get("cache_dir") or Path(path).parent)
        folder = cache_dir / "generate" / hashlib.sha256(f"{path}:{key[1]}".encode()).hexdigest()[:16]
        if not folder.is_dir():
            tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
            tmp.mkdir(parents=True, exist_ok=True)
            extract_into(path, tmp)
            os.replace(tmp, folder)
        if kind_of(folder) == "adapter" and not (isinstance(base, str) and (Path(base) / "config.json").is_file()):
            raise JobFailure("MODEL_DOWNLOAD_FAILED",
                             f"the adapter's base model folder {base!r} is not on this server (HF_MODELS_DIR)", {"base_model": base})
        model, tok, _ = load(folder, base)
        cached = (model, tok)
    _cache[key] = cached
    while len(_cache) > MODEL_CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    return cached
