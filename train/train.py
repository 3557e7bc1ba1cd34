"""Trains the demo model: a small FastConformer-TDT on synthetic espeak-ng speech.

    python -m train.train --minutes 8.5 --state runs/state.pt --out runs/model

One command makes the model from nothing (a GPU machine with PyTorch, espeak-ng or a bundle
from train/espeak_bundle.sh in ESPEAK_BUNDLE, and this repository's `asr` for the features).
Run it again with the same --state to train on: the learning-rate schedule spans
--total-minutes across runs. The result is written in the mlx-community layout by
`python -m train.export_model`.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from train.speech_data import Example, make_example
from train.tdt_loss import tdt_loss
from train.torch_model import ModelSize, TDTModel
from train.vocabulary import VOCABULARY, decode

DEV_SEED_BASE = 1_000_000_000  # training seeds count up from 0; these never meet them


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--minutes", type=float, default=8.5, help="training time of this run")
    p.add_argument("--total-minutes", type=float, default=17.0, help="of all runs together")
    p.add_argument("--initial-hours", type=float, default=12.0, help="speech made before training")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--batch-frames", type=int, default=120_000, help="mel frames per batch")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--d-model", type=int, default=144)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--state", type=Path, default=Path("train/runs/state.pt"))
    p.add_argument("--weights", type=Path, default=Path("train/runs/weights.pt"))
    p.add_argument("--seed-offset", type=int, default=0, help="first training seed")
    p.add_argument("--dev", type=int, default=60, help="held-out clips for the WER printed")
    return p.parse_args(argv)


class SpeechPool:
    """Examples made by worker processes: a first batch before training, then more in the
    background while the GPU trains, so that later steps hear new sentences."""

    def __init__(self, workers: int, first_seed: int):
        # One thread per worker: many processes each running a thread per core starve one
        # another and the training loop (set before spawning, the children inherit it).
        for name in (
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MLX_NUM_THREADS",
        ):
            os.environ[name] = "1"
        self.examples: list[Example] = []
        self.audio_seconds = 0.0
        self._pool = multiprocessing.get_context("spawn").Pool(workers)
        seeds = iter(range(first_seed, 2**62))
        self._results = self._pool.imap_unordered(make_example, seeds, chunksize=8)
        self._lock = threading.Lock()

    def fill(self, hours: float) -> None:
        while self.audio_seconds < hours * 3600:
            self._take(next(self._results))

    def _take(self, example: Example) -> None:
        with self._lock:
            self.examples.append(example)
            self.audio_seconds += example.features.shape[0] / 100

    def keep_filling(self) -> None:
        def run():
            for example in self._results:
                self._take(example)

        threading.Thread(target=run, daemon=True).start()

    def terminate(self) -> None:
        self._pool.terminate()

    def snapshot(self) -> list[Example]:
        with self._lock:
            return list(self.examples)


def batches(examples: list[Example], batch_frames: int, rng: random.Random):
    """Items of similar length together, about `batch_frames` padded frames a batch."""
    order = sorted(range(len(examples)), key=lambda i: examples[i].features.shape[0])
    out, current, longest = [], [], 0
    for i in order:
        frames = examples[i].features.shape[0]
        if current and max(longest, frames) * (len(current) + 1) > batch_frames:
            out.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, frames)
    if current:
        out.append(current)
    rng.shuffle(out)
    return out


def collate(examples: list[Example], device):
    frames = [e.features.shape[0] for e in examples]
    tokens = [len(e.tokens) for e in examples]
    mel = np.zeros((len(examples), max(frames), 80), dtype=np.float16)
    labels = np.zeros((len(examples), max(tokens)), dtype=np.int64)
    for i, e in enumerate(examples):
        mel[i, : frames[i]] = e.features
        labels[i, : tokens[i]] = e.tokens
    return (
        torch.from_numpy(mel).to(device).float(),
        torch.tensor(frames, device=device),
        torch.from_numpy(labels).to(device),
        torch.tensor(tokens, device=device),
    )


def spec_augment(mel: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator):
    """Per item, two frequency bands (up to 15 of 80) and four time spans (each up to 5% of
    the item) set to the normalized mean, zero."""
    b, t, f = mel.shape
    device = mel.device

    def spans(count: int, limit: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
        width = (torch.rand(b, count, generator=generator) * limit[:, None]).long()
        start = (torch.rand(b, count, generator=generator) * (extent[:, None] - width)).long()
        return start.to(device), (start + width).to(device)

    lengths_cpu = lengths.cpu().float()
    f_start, f_stop = spans(2, torch.full((b,), 15.0), torch.full((b,), float(f)))
    t_start, t_stop = spans(4, lengths_cpu * 0.05, lengths_cpu)
    bins = torch.arange(f, device=device)[None, None]
    frames = torch.arange(t, device=device)[None, None]
    masked_bins = ((bins >= f_start[..., None]) & (bins < f_stop[..., None])).any(1)  # (B, F)
    masked_frames = ((frames >= t_start[..., None]) & (frames < t_stop[..., None])).any(1)
    keep = ~(masked_bins[:, None, :] | masked_frames[:, :, None])
    return mel * keep


def random_context(rng: random.Random) -> tuple[int, int] | None:
    """Full attention for some batches, a random local window for the rest, so that the
    model works with the local attention of long files and of streaming."""
    if rng.random() < 0.4:
        return None
    return rng.randint(16, 128), rng.randint(2, 64)


@torch.no_grad()
def greedy(model: TDTModel, mel: torch.Tensor, context=None, max_symbols: int = 10) -> list[int]:
    """TDT greedy decoding of one utterance, for the progress printout."""
    enc, _ = model.encoder(mel[None], torch.tensor([mel.shape[0]], device=mel.device), context)
    enc = model.joint.enc(enc[0])
    durations = model.size.durations
    blank = model.vocab_size
    tokens: list[int] = []
    state = None
    last = torch.tensor([[blank]], device=mel.device)
    g, state = model.prediction.lstm(model.prediction.embed(last), state)
    t, emitted = 0, 0
    while t < enc.shape[0]:
        logits = model.joint.joint_net(enc[t] + model.joint.pred(g[0, -1]))
        token = int(logits[: blank + 1].argmax())
        duration = durations[int(logits[blank + 1 :].argmax())]
        if token != blank:
            tokens.append(token)
            emitted += 1
            g, state = model.prediction.lstm(
                model.prediction.embed(torch.tensor([[token]], device=mel.device)), state
            )
        if token == blank and duration == 0:
            duration = 1
        if emitted >= max_symbols and duration == 0:
            duration = 1
        if duration > 0:
            emitted = 0
        t += duration
    return tokens


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    def words(text: str) -> list[str]:
        return "".join(c for c in text.lower() if c.isalpha() or c in " '").split()

    errors = total = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        r, h = words(ref), words(hyp)
        row = list(range(len(h) + 1))
        for i in range(1, len(r) + 1):
            prev, row[0] = row[0], i
            for j in range(1, len(h) + 1):
                prev, row[j] = (
                    row[j],
                    min(row[j] + 1, row[j - 1] + 1, prev + (r[i - 1] != h[j - 1])),
                )
        errors += row[len(h)]
        total += len(r)
    return errors / max(1, total)


def evaluate(model: TDTModel, dev: list[Example], device, context=None) -> float:
    model.eval()
    hyps = [
        decode(greedy(model, torch.from_numpy(e.features).to(device).float(), context)) for e in dev
    ]
    model.train()
    return word_error_rate([e.text for e in dev], hyps)


def learning_rate(step: int, total_steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(2)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    started = time.monotonic()

    state = torch.load(args.state, weights_only=False) if args.state.exists() else None
    size = ModelSize(d_model=args.d_model, n_layers=args.layers)
    if state is not None:
        size = state["size"]
    model = TDTModel(size, len(VOCABULARY)).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=1e-3
    )
    step, total_steps, next_seed = 0, None, args.seed_offset
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, total_steps, next_seed = state["step"], state["total_steps"], state["next_seed"]
        print(f"resumed at step {step} of {total_steps}", flush=True)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters on {device}", flush=True)

    pool = SpeechPool(args.workers, next_seed)
    with multiprocessing.get_context("spawn").Pool(args.workers) as dev_pool:
        dev = dev_pool.map(
            _held_out_example, range(DEV_SEED_BASE, DEV_SEED_BASE + args.dev), chunksize=2
        )
    pool.fill(args.initial_hours)
    print(
        f"{len(pool.examples)} examples, {pool.audio_seconds / 3600:.1f} h of speech "
        f"in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    pool.keep_filling()

    rng = random.Random(step)
    generator = torch.Generator().manual_seed(step)
    deadline = started + args.minutes * 60
    train_started, steps_this_run = time.monotonic(), 0
    model.train()
    while time.monotonic() < deadline and (total_steps is None or step < total_steps):
        examples = pool.snapshot()
        for indices in batches(examples, args.batch_frames, rng):
            if time.monotonic() >= deadline or (total_steps is not None and step >= total_steps):
                break
            mel, frames, labels, label_lengths = collate([examples[i] for i in indices], device)
            mel = spec_augment(mel, frames, generator)
            context = random_context(rng)
            lr = learning_rate(step, total_steps or 10**9, args.lr, args.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                enc, enc_lengths = model.encoder(mel, frames, context)
                pred = model.prediction(labels)
                logits = model.joint(enc, pred)
            nll = tdt_loss(logits, labels, enc_lengths, label_lengths, size.durations, sigma=0.02)
            loss = (nll / label_lengths.clamp(min=1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            steps_this_run += 1
            if total_steps is None and steps_this_run == 200:
                rate = steps_this_run / (time.monotonic() - train_started)
                train_seconds = args.total_minutes * 60 - (train_started - started) * 2
                total_steps = int(rate * train_seconds)
                print(f"{rate:.2f} steps/s: planning {total_steps} steps", flush=True)
            if step % 100 == 0 or steps_this_run in (5, 20, 50):
                print(
                    f"step {step} loss {loss.item():.3f} lr {lr:.2e} "
                    f"pool {pool.audio_seconds / 3600:.1f} h "
                    f"{time.monotonic() - started:.0f} s",
                    flush=True,
                )
            if step % 1000 == 0:
                print(f"  held-out WER {evaluate(model, dev[:20], device):.3f}", flush=True)
                save_weights(model, size, step, args.weights)

    print(f"held-out WER, full attention: {evaluate(model, dev, device):.4f}", flush=True)
    args.state.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "total_steps": total_steps,
            "next_seed": next_seed + 10_000_000,
            "size": size,
        },
        args.state,
    )
    save_weights(model, size, step, args.weights)
    print(f"saved step {step} in {time.monotonic() - started:.0f} s", flush=True)
    pool.terminate()
    os._exit(0)  # the thread reading the workers' results needs no orderly shutdown


def save_weights(model: TDTModel, size: ModelSize, step: int, path: Path) -> None:
    """float16 (BatchNorm statistics excepted): small enough to bring back from the GPU."""
    path.parent.mkdir(parents=True, exist_ok=True)
    half = {
        k: v.half() if v.is_floating_point() and "running" not in k else v
        for k, v in model.state_dict().items()
    }
    torch.save({"model": half, "size": size, "step": step}, path)


def _held_out_example(seed: int) -> Example:
    return make_example(seed, held_out=True, noisy=False)


if __name__ == "__main__":
    sys.exit(main())
