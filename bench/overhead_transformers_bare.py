"""The bare side of `bench/overhead.ts --engine transformers`: the training loop a user would write
with transformers + peft alone, on the same tiny model, data, arguments and seed as the trainhook
job (its worker spec's args), without trainhook's runtime: no events, no stop checks, no last.pt.

    python overhead_transformers_bare.py '<args json>' <data dir (train.jsonl + val.jsonl)> <base model dir> <out dir>

Per epoch: a seeded shuffle, AdamW steps under a linear schedule, a validation pass (loss and
token accuracy), the adapter saved with save_pretrained when val_loss improves, a metrics.csv row.
Prints one JSON line: steps, seconds of the loop, steps per second, the last epoch's metrics.
"""

import csv
import json
import math
import os
import sys
import time

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup  # noqa: E402

a = json.loads(sys.argv[1])
data_dir, base, out = sys.argv[2], sys.argv[3], sys.argv[4]
start = time.perf_counter()
torch.manual_seed(a["seed"])
tok = AutoTokenizer.from_pretrained(base)


def encode(s):
    prompt = tok(s["prompt"], add_special_tokens=False)["input_ids"]
    completion = tok(s["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = [tok.bos_token_id] + prompt + completion
    labels = [-100] * (1 + len(prompt)) + completion
    return ids[: a["max_length"]], labels[: a["max_length"]]


def read(name):
    with open(os.path.join(data_dir, name), encoding="utf-8") as f:
        return [encode(json.loads(line)) for line in f if line.strip()]


def batch(items):
    width = max(len(i) for i, _ in items)
    ids = torch.full((len(items), width), tok.pad_token_id)
    labels = torch.full((len(items), width), -100)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for r, (i, lab) in enumerate(items):
        ids[r, : len(i)], labels[r, : len(lab)], mask[r, : len(i)] = torch.tensor(i), torch.tensor(lab), 1
    return ids, mask, labels


def losses(model, ids, mask, labels):
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum")
    keep = target != -100
    return loss, int(keep.sum()), int(((logits.argmax(-1) == target) & keep).sum())


train, val = read("train.jsonl"), read("val.jsonl")
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
model.config.use_cache = False
model = get_peft_model(model, LoraConfig(r=a["lora_r"], lora_alpha=a["lora_alpha"], lora_dropout=a["lora_dropout"],
                                         target_modules=a["target_modules"], task_type="CAUSAL_LM"))
model.train()
bs, epochs = a["batch_size"], a["epochs"]
steps = math.ceil(len(train) / bs) * epochs
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a["learning_rate"], weight_decay=a["weight_decay"])
sched = get_linear_schedule_with_warmup(opt, math.ceil(steps * a["warmup_ratio"]), steps)
best = None
os.makedirs(out, exist_ok=True)
loop_start = time.perf_counter()
with open(os.path.join(out, "metrics.csv"), "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["epoch", "train_loss", "val_loss", "val_token_accuracy", "learning_rate"])
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(a["seed"] * 100_003 + epoch)).tolist()
        loss_sum, tokens = 0.0, 0
        for i in range(0, len(order), bs):
            ids, mask, labels = batch([train[j] for j in order[i: i + bs]])
            s, n, _ = losses(model, ids, mask, labels)
            (s / max(1, n)).backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            loss_sum, tokens = loss_sum + float(s), tokens + n
        model.eval()
        vs, vn, vc = 0.0, 0, 0
        with torch.no_grad():
            for i in range(0, len(val), bs):
                s, n, c = losses(model, *batch(val[i: i + bs]))
                vs, vn, vc = vs + float(s), vn + n, vc + c
        model.train()
        row = [epoch, loss_sum / max(1, tokens), vs / max(1, vn), vc / max(1, vn), sched.get_last_lr()[0]]
        w.writerow(row)
        if best is None or row[2] < best:
            best = row[2]
            model.save_pretrained(os.path.join(out, "adapter"), save_embedding_layers=False)
loop = time.perf_counter() - loop_start
print(json.dumps({"steps": steps, "loop_seconds": loop, "steps_per_second": steps / loop,
                  "seconds": time.perf_counter() - start, "last": dict(zip(["epoch", "train_loss", "val_loss", "val_token_accuracy", "learning_rate"], row))}))
