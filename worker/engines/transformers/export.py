"""transformers engine export: `run(spec, rt)` writes one ZIP, a model card and a deployment package.

Spec (src/registry/service.ts): {model: abs path of the registered adapter.zip or model.zip, format:
adapter | merged | int8, out_dir, base_model: abs path of the base model folder | null, card: {name,
model_id, source_job_id, base_model, dataset: {source, sha256, samples}, train_args, metrics, engine,
engine_version, license}, data: the source job's dataset folder | null}.

The ZIP (`<out_dir>/export-<format>.zip`) holds:
- model/: adapter — the LoRA adapter as training delivered it (adapter_model.safetensors +
  adapter_config.json) and the base model's tokenizer; merged — the adapter merged into the base
  (peft merge_and_unload) saved with save_pretrained as safetensors, with config and tokenizer (a
  model trained in full is re-saved as it is). A qlora job's adapter is exported the same way: the
  base is loaded again in full precision (float32, not the 4-bit weights it trained on) and the
  adapter merged into it, so the merged model is a plain full-precision model; int8 — the merged model with every Linear layer
  dynamically quantized to qint8 (torch.ao.quantization.quantize_dynamic, CPU), its state dict in
  model_int8.pt (torch.save; quantized packed weights have no safetensors form), with config.json
  and the tokenizer to rebuild it (inference.py shows how);
- README.md: the model card (base model, dataset name/sha256/samples, training config, final
  metrics, license note, how to load);
- inference.py (this engine's own worker/engines/transformers/inference.py) and requirements.txt.

The check compares the exported model's next-token logits on one prompt (the first validation
sample's prompt, else a fixed one) with the model as trained (the adapter on its base, or the full
model): max |Δ| must be <= 1e-3 for adapter and merged; the int8 model passes when its greedy
next-token choice agrees on >= 80 % of the prompt's positions (its max |Δ| is reported). The
exported folder then generates a few tokens through inference.py.

Task vision-lm (a vision-language model, vlm_inference.py): the same three formats, with the
base model's processor (tokenizer + image processor) instead of its tokenizer, AutoModelForImage-
TextToText instead of AutoModelForCausalLM, and vlm_inference.py as the package's inference.py
(--image, --prompt). The check runs on the first validation sample's image and prompt (else a grey
image and a fixed prompt).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"})

from runtime import JobFailure  # noqa: E402

from engines.transformers.model_zip import extract_into  # noqa: E402

FORMATS = ("adapter", "merged", "int8")
MAX_ABS_DIFF = 1e-3
MIN_INT8_AGREEMENT = 0.8
FALLBACK_PROMPT = "Hello, "
FALLBACK_VLM_PROMPT = "Describe the image."
HERE = Path(__file__).resolve().parent


def extract(zip_path: str | Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    return extract_into(zip_path, dest)


def first_sample(data: Any, with_image: bool) -> dict[str, Any] | None:
    """The first dataset line with a prompt (and an image inside the dataset folder, with_image),
    validation files first; None when there is none."""
    if not (isinstance(data, str) and data):
        return None
    root = Path(data).resolve()
    for name in ("val.jsonl", "valid.jsonl", "validation.jsonl", "train.jsonl", "data.jsonl"):
        f = Path(data) / name
        if not f.is_file():
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not (isinstance(row, dict) and isinstance(row.get("prompt"), str) and row["prompt"]):
                continue
            if not with_image:
                return row
            if isinstance(row.get("image"), str):
                image = (root / row["image"]).resolve()
                if image.is_file() and str(image).startswith(str(root) + os.sep):
                    return {**row, "image": str(image)}
    return None


def check_prompt(data: Any) -> str:
    row = first_sample(data, with_image=False)
    return row["prompt"] if row else FALLBACK_PROMPT


def check_sample(data: Any) -> tuple[str, Any]:
    """The prompt and image (PIL) of the first sample with both (vision-lm), else a fixed one."""
    from engines.transformers import vlm_inference

    row = first_sample(data, with_image=True)
    if row:
        return row["prompt"], vlm_inference.read_image(row["image"])
    from PIL import Image

    return FALLBACK_VLM_PROMPT, Image.new("RGB", (64, 64), (128, 128, 128))


def logits_of(model: Any, tok: Any, prompt: str) -> Any:
    import torch

    from engines.transformers.inference import prompt_ids

    with torch.no_grad():
        return model(input_ids=torch.tensor([prompt_ids(tok, prompt)])).logits[0].float()


def requirements_text(vision: bool = False) -> str:
    import importlib.metadata as md

    names = ["torch", "transformers", "tokenizers", "safetensors", "peft", "accelerate", *(["pillow"] if vision else [])]
    return "".join(f"{n}=={md.version(n)}\n" for n in names)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "—" if v is None else str(v)


def model_card(card: dict[str, Any], fmt_name: str, check: dict[str, Any], method: str) -> str:
    vision = card.get("task") == "vision-lm"
    auto = "AutoModelForImageTextToText" if vision else "AutoModelForCausalLM"
    run_args = "--image photo.jpg --prompt \"<prompt>\"" if vision else "\"<prompt>\""
    ds = card.get("dataset") or {}
    samples = ds.get("samples")
    # train, val first (the stored JSON may hold them in any order), then any other split.
    ordered = sorted(samples.items(), key=lambda kv: ({"train": 0, "val": 1}.get(kv[0], 2), kv[0])) if isinstance(samples, dict) else []
    samples_text = ", ".join(f"{k}: {v}" for k, v in ordered) if isinstance(samples, dict) else fmt(samples)
    metrics = card.get("metrics") or {}
    how = {
        "adapter": "a LoRA adapter (peft): `model/` holds adapter_model.safetensors and adapter_config.json, plus the base model's "
                   f"{'processor' if vision else 'tokenizer'}. It needs its base model: `python inference.py {run_args} --base /path/to/base-model`. In Python: "
                   f"`PeftModel.from_pretrained({auto}.from_pretrained(base), \"model\")`.",
        "merged": "a plain transformers model (the adapter merged into the base with peft's merge_and_unload, safetensors): "
                  f"`{auto}.from_pretrained(\"model\")`, or `python inference.py {run_args}`.",
        "int8": "the merged model with its Linear layers dynamically quantized to int8 for the CPU "
                "(torch.ao.quantization.quantize_dynamic, qint8). Quantized packed weights have no safetensors form: "
                "model/model_int8.pt is the quantized model's state dict (torch.save). To load it: build the model from "
                f"model/config.json (`{auto}.from_config`), quantize it the same way "
                "(`quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)`), then "
                "`model.load_state_dict(torch.load(\"model/model_int8.pt\", weights_only=True))` — inference.py's `load()` does "
                "exactly that. CPU only.",
    }[fmt_name]
    lines = [
        f"# {card.get('name') or 'model'} ({fmt_name})",
        "",
        f"Exported by trainhook's transformers engine from registered model `{card.get('model_id')}` "
        f"(source job `{card.get('source_job_id')}`), trained with method `{method}`.",
        "",
        "## Model",
        "",
        f"- Format: {fmt_name} — {how}",
        f"- Base model: `{card.get('base_model')}`",
        "- Task: vision-lm (image + text → text)" if vision else "- Task: causal-lm (text → text)",
        "",
        "## Dataset",
        "",
        f"- Name: {fmt(ds.get('name'))}",
        f"- sha256: {fmt(ds.get('sha256'))}",
        f"- Samples: {samples_text}",
        "",
        "## Training config",
        "",
        "```json",
        json.dumps(card.get("train_args") or {}, indent=2, sort_keys=True),
        "```",
        "",
        "## Final metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {fmt(v)} |" for k, v in sorted(metrics.items())],
        "",
        "## Export check",
        "",
        "```json",
        json.dumps(check, indent=2, sort_keys=True),
        "```",
        "",
        "## Use",
        "",
        "```",
        "pip install -r requirements.txt",
        f"python inference.py {run_args}" + (" --base /path/to/base-model" if fmt_name == "adapter" else "")
        + " --max-new-tokens 32",
        "```",
        "",
        "## License",
        "",
        f"These weights derive from the base model `{card.get('base_model')}`: its license and terms apply to this export "
        "and to anything generated with it. The training library (Hugging Face transformers) and peft are Apache-2.0; "
        "the dataset's own license applies to what it contributed.",
        "",
    ]
    return "\n".join(lines)


def run(spec: dict[str, Any], rt: Any) -> None:
    fmt_name = spec.get("format")
    if fmt_name not in FORMATS:
        raise JobFailure("UNKNOWN_ERROR", f"format {fmt_name!r} is not one of {', '.join(FORMATS)}")
    path = spec.get("model")
    if not isinstance(path, str) or not os.path.isabs(path) or not Path(path).is_file():
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"model file {path!r} not found", {"path": path})
    out_dir = Path(spec["out_dir"])
    work = out_dir / f".export-{fmt_name}"
    src = extract(path, work / "src")
    trained_kind = "adapter" if (src / "adapter_config.json").is_file() else "model"
    method = "lora" if trained_kind == "adapter" else "full"
    if trained_kind == "adapter" and ((spec.get("card") or {}).get("train_args") or {}).get("method") == "qlora":
        # A qlora adapter is a plain LoRA adapter (trained on the 4-bit base): exported as one, and
        # merged into the base reloaded in full precision (not into its 4-bit weights).
        method = "qlora"
    base = spec.get("base_model")
    if trained_kind == "adapter" and not (isinstance(base, str) and (Path(base) / "config.json").is_file()):
        raise JobFailure("MODEL_DOWNLOAD_FAILED",
                         f"the adapter's base model folder {base!r} is not on this server (HF_MODELS_DIR): it is needed to export",
                         {"base_model": base})
    if fmt_name == "adapter" and trained_kind != "adapter":
        raise JobFailure("EXPORT_UNSUPPORTED", "a model trained in full has no adapter: export merged or int8")

    import torch

    from engines.transformers import inference, vlm_inference

    vision = spec.get("task") == "vision-lm"
    inf: Any = vlm_inference if vision else inference
    torch.manual_seed(0)
    reference, tok, _ = inf.load(src, base)
    pkg = work / "package"
    shutil.rmtree(pkg, ignore_errors=True)
    model_dir = pkg / "model"
    model_dir.mkdir(parents=True)
    if fmt_name == "adapter":
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, model_dir / f.name)
        tok.save_pretrained(model_dir)
    else:
        merged = reference.merge_and_unload() if trained_kind == "adapter" else reference
        # merge_and_unload changes the reference in place: reload it for the check.
        if fmt_name == "merged":
            merged.save_pretrained(model_dir, safe_serialization=True)
        else:
            merged.config.save_pretrained(model_dir)
            torch.save(inf.quantize(merged.eval()).state_dict(), model_dir / inf.INT8_WEIGHTS)
        tok.save_pretrained(model_dir)
        reference, tok, _ = inf.load(src, base)

    exported, exported_tok, kind = inf.load(model_dir, base)
    if vision:
        prompt, image = check_sample(spec.get("data"))
        a, b = vlm_inference.logits(reference, tok, image, prompt), vlm_inference.logits(exported, exported_tok, image, prompt)
        sample = vlm_inference.generate(exported, exported_tok, image, prompt, max_new_tokens=8)
    else:
        prompt = check_prompt(spec.get("data"))
        a, b = logits_of(reference, tok, prompt), logits_of(exported, exported_tok, prompt)
        sample = inference.generate(exported, exported_tok, prompt, max_new_tokens=8)
    diff = float((a - b).abs().max())
    agreement = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    passed = agreement >= MIN_INT8_AGREEMENT if fmt_name == "int8" else diff <= MAX_ABS_DIFF
    check = {
        "prompt": prompt,
        "compared_to": "adapter on its base model" if trained_kind == "adapter" else "the fully trained model",
        "max_abs_logit_diff": diff,
        "argmax_agreement": agreement,
        "positions": int(a.shape[0]),
        "generated": sample["text"],
        "loaded_as": kind,
        "thresholds": {"max_abs_logit_diff": MAX_ABS_DIFF} if fmt_name != "int8" else {"argmax_agreement": MIN_INT8_AGREEMENT},
        "passed": bool(passed),
    }
    card = dict(spec.get("card") or {})
    (pkg / "README.md").write_text(model_card(card, fmt_name, check, method), encoding="utf-8")
    shutil.copy2(HERE / ("vlm_inference.py" if vision else "inference.py"), pkg / "inference.py")
    (pkg / "requirements.txt").write_text(requirements_text(vision), encoding="utf-8")

    dest = out_dir / f"export-{fmt_name}.zip"
    tmp = out_dir / f".export-{fmt_name}.zip.tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(pkg.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(pkg).as_posix())
    os.replace(tmp, dest)
    shutil.rmtree(work, ignore_errors=True)
    rt.emit("done", file=str(dest), format=fmt_name, size=dest.stat().st_size, check=check)
