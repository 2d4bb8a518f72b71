"""Contrastive pre-training of the shared encoder (SimCSE; Gao, Yao & Chen, EMNLP 2021).

An optional stage that :func:`mtsearch.train.trainer.train` runs right after the model is
built, before anything else reads the encoder's weights (freezing, the activation
cache's key, the multitask optimizer). It updates the encoder only, with an AdamW of its
own (peak ``simcse_lr``; ``simcse_schedule`` linear: warm-up over ``warmup_ratio`` of the stage's steps then
linear decay to 0, or constant; ``weight_decay`` and ``max_grad_norm`` as in training), built and
stepped by the same functions as the multitask loop's (:mod:`mtsearch.train.optim`).
The stage is ``simcse_steps`` long, or ``simcse_epochs`` passes over its sentences (unsup)
or positive pairs (sup) (:func:`stage_steps`).

Objective (both modes): a batch of N (anchor, positive) sentence pairs is embedded into
h_i, h+_i; the loss is the cross-entropy of picking h+_i among all h+_j of the batch,
with logits cos(h_i, h+_j) / ``simcse_temperature`` (in-batch negatives, paper Eq. 1/5).

- ``unsup``: the positive of a sentence is the same sentence passed again through the
  encoder in training mode, i.e. under another dropout mask. Sentences are every text
  of the configured tasks' training data (SST sentences, both sides of QQP and STS pairs,
  CFIMDB reviews, extra_data rows), deduplicated.
- ``sup``: positives are QQP duplicate pairs (para label 1) and STS pairs scored at least
  ``simcse_sup_threshold`` (strictly above it with ``simcse_sup_strict``: 001 took STS
  pairs "whose similarity score was greater than 4"; 346 training pairs sit at exactly
  4.0, so the two readings differ; the default stays "at least", as before issue 11). The paper's supervised recipe also adds NLI contradictions as
  hard negatives (Eq. 5); no such data exists here, so the negatives are the other
  positives of the batch only (the paper's "w/o hard neg" row). A candidate that is the
  same sentence as the positive (QQP repeats questions) is masked out rather than
  counted as a negative.

Sentence vector (``simcse_pooling``): ``cls`` is the [CLS] state through a Linear+Tanh
layer that exists only during this stage and is then discarded (the paper's
unsupervised setting, "w/ MLP (train)", its best in Table 6); ``mean`` is the masked mean
of the token states without an extra layer. Only the encoder is kept either way: the
multitask model's own pooling and heads start from their usual init afterwards.

Sentences are encoded by the data layer (``encode_split`` with ``pair_mode='separate'``
gives each sentence of a pair alone; single-sentence tasks give 'a'), truncated to
``simcse_max_length`` and cached on disk like every encoding. Deduplication is on the
token ids: two texts the tokenizer cannot tell apart (case, spacing, truncation) are one
input to the encoder, hence one sentence.

Randomness: batches come from ``rng_for(seed, "simcse")``; dropout masks and the
projection's init from a torch seed derived from ``rng_for(seed, "simcse_torch")``
inside a forked torch RNG, so the stage is repeatable and leaves the global torch
generator, hence the multitask run's dropout stream, exactly where it found it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtsearch.config import RunConfig
from mtsearch.errors import DataError
from mtsearch.train.optim import OptimHandle, adamw, finite_loss, param_groups, schedule_factor
from mtsearch.train.runtime import autocast, progress_bar, rng_for

log = logging.getLogger("mtsearch.train")

#: a metrics row (kind "simcse") every this many steps, and one at the last step
LOG_EVERY = 25


# ------------------------------------------------------------------------ the loss
def contrastive_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    temperature: float,
    same: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE with in-batch negatives: row i's positive is ``positives[i]``.

    ``-mean_i log softmax_j(cos(anchors_i, positives_j) / temperature)[i]``. ``same``
    (bool [N, N], optional) marks off-diagonal candidates that are the same sentence as
    row i's positive: they are left out of the softmax instead of counting as negatives.
    """
    a = F.normalize(anchors.float(), dim=-1)
    p = F.normalize(positives.float(), dim=-1)
    logits = a @ p.T / temperature
    if same is not None:
        eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(len(a), device=a.device)
    return F.cross_entropy(logits, target)


class _Embed(nn.Module):
    """Token states -> one vector per sentence, as ``simcse_pooling`` says."""

    def __init__(self, hidden_size: int, pooling: str):
        super().__init__()
        self.pooling = pooling
        # cls: the paper's projection (BERT's pooler shape), trained here and then dropped
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh()) if pooling == "cls" else None

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.mlp is not None:
            return self.mlp(states[:, 0])
        if self.pooling == "cls_raw":
            return states[:, 0]
        m = mask.unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


# ------------------------------------------------------------------------ the data
@dataclass
class SentencePool:
    """Deduplicated sentences as one encoded split (segment 'a') and where each came from.

    ``index[k][seg]`` is the pool row of every example of the k-th input split's segment
    'a' or 'b', so a pair (example i of a pair split) is ``(index[k]['a'][i], index[k]['b'][i])``.
    """

    sentences: Any  # mtsearch.data.EncodedSplit
    index: list[dict[str, np.ndarray]]

    def __len__(self) -> int:
        return len(self.sentences)


def sentence_pool(splits, tokenizer, max_length: int, cache_dir=None) -> SentencePool:
    """Every sentence of ``splits`` (Splits of any task), each once, token ids truncated to ``max_length``."""
    from mtsearch.data import EncodedSplit, concat_segments, encode_split

    seen: dict[bytes, int] = {}
    parts = []  # segments holding the pool's new rows, in pool order
    index: list[dict[str, np.ndarray]] = []
    for split in splits:
        enc = encode_split(split, tokenizer, max_length, "separate", cache_dir=cache_dir)
        rows: dict[str, np.ndarray] = {}
        for name, seg in enc.segments.items():
            where = np.empty(len(seg), dtype=np.int64)
            new = []
            off = seg.offsets
            for i in range(len(seg)):
                key = seg.input_ids[off[i] : off[i + 1]].tobytes()
                k = seen.get(key)
                if k is None:
                    k = seen[key] = len(seen)
                    new.append(i)
                where[i] = k
            rows[name] = where
            if new:
                parts.append(seg.select(np.asarray(new, dtype=np.int64)))
        index.append(rows)
    if not parts:
        raise DataError("simcse: the training data holds no sentence")
    pool = EncodedSplit(
        task="simcse",
        split="train",
        ids=[str(i) for i in range(len(seen))],
        labels=None,
        segments={"a": concat_segments(*parts)},
        pair_mode="separate",
        max_length=max_length,
    )
    return SentencePool(pool, index)


def positive_examples(split, threshold: float, strict: bool = False) -> np.ndarray:
    """Indices of ``split``'s examples that are supervised positives.

    para: duplicate questions (label 1); sts: similarity >= ``threshold`` (> with
    ``strict``); any other task (or an unlabelled split) has none.
    """
    labels = np.array([np.nan if e.label is None else e.label for e in split.examples], dtype=np.float64)
    if split.task == "para":
        keep = labels == 1.0
    elif split.task == "sts":
        keep = labels > threshold if strict else labels >= threshold
    else:
        keep = np.zeros(len(labels), dtype=bool)
    return np.flatnonzero(keep)


def positive_pairs(splits, pool: SentencePool, threshold: float, strict: bool = False) -> np.ndarray:
    """[P, 2] pool rows (anchor, positive) of every supervised positive, duplicates dropped, in data order."""
    pairs: list[np.ndarray] = []
    for split, rows in zip(splits, pool.index, strict=True):
        if "b" not in rows:
            continue
        idx = positive_examples(split, threshold, strict)
        pairs.append(np.stack([rows["a"][idx], rows["b"][idx]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    allp = np.concatenate(pairs)
    _, first = np.unique(allp, axis=0, return_index=True)
    return allp[np.sort(first)]


def _batches(n: int, size: int, rng: np.random.Generator):
    """Endless batches of ``size`` distinct rows out of ``n``: a fresh permutation per pass.

    A pass's tail shorter than ``size`` is dropped (a batch never repeats a row, and the
    next pass reshuffles, so no row is favoured over time).
    """
    size = min(size, n)
    while True:
        perm = rng.permutation(n)
        for start in range(0, n - size + 1, size):
            yield perm[start : start + size]


# ------------------------------------------------------------------------ the stage
@dataclass
class SimcseResult:
    """What the stage did; ``record`` writes it into the run directory and MLflow."""

    mode: str
    steps: int
    sentences: int
    pairs: int
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def record(self, rd, mirror=None) -> None:
        """Append the stage's metrics rows (kind 'simcse') and mirror ``simcse_loss`` to MLflow."""
        for row in self.rows:
            rd.append_metrics(row)
            if mirror is not None:
                mirror.log_metrics(row["step"], {"simcse_loss": row["loss"]})


def _encoder_forward(encoder: nn.Module, seg: dict[str, torch.Tensor]) -> torch.Tensor:
    out = encoder(
        input_ids=seg["input_ids"], attention_mask=seg["attention_mask"], token_type_ids=seg["token_type_ids"]
    )
    return out.last_hidden_state


@dataclass
class _Examples:
    """What the stage draws its batches from: the sentence pool and, for 'sup', the positive pairs."""

    pool: SentencePool
    pairs: np.ndarray | None  # [P, 2] pool rows (anchor, positive); None: unsup
    pad_id: int
    device: torch.device
    precision: str

    def __len__(self) -> int:
        """Items a batch is drawn from: sentences (unsup) or positive pairs (sup)."""
        return len(self.pool) if self.pairs is None else len(self.pairs)

    def inputs(self, pool_rows: np.ndarray) -> dict[str, torch.Tensor]:
        from mtsearch.data import collate

        seg = collate(self.pool.sentences, pool_rows, pad_id=self.pad_id)["inputs"][0]
        return {k: v.to(self.device, non_blocking=True) for k, v in seg.items()}

    def views(self, encoder: nn.Module, embed: _Embed, idx: np.ndarray):
        """Anchors, positives and the same-sentence mask (None for unsup) of batch ``idx``."""
        with autocast(self.device, self.precision):
            if self.pairs is None:
                seg = self.inputs(idx)
                # one forward on [x; x]: every element gets its own dropout draw
                both = {k: torch.cat([v, v]) for k, v in seg.items()}
                z = embed(_encoder_forward(encoder, both), both["attention_mask"])
                return z[: len(idx)], z[len(idx) :], None
            a_rows, b_rows = self.pairs[idx, 0], self.pairs[idx, 1]
            sa, sb = self.inputs(a_rows), self.inputs(b_rows)
            anchors = embed(_encoder_forward(encoder, sa), sa["attention_mask"])
            positives = embed(_encoder_forward(encoder, sb), sb["attention_mask"])
        # candidate j is not a negative of row i if it is row i's positive sentence (or its
        # anchor) again
        bt, at = torch.from_numpy(b_rows), torch.from_numpy(a_rows)
        same = ((bt[None, :] == bt[:, None]) | (bt[None, :] == at[:, None])).to(self.device)
        return anchors, positives, same


def _examples(config: RunConfig, splits: list, tokenizer, device, precision, cache_dir) -> _Examples:
    """The stage's sentences (and positives for 'sup'); a DataError when there are too few."""
    pool = sentence_pool(splits, tokenizer, config.simcse_max_length, cache_dir=cache_dir)
    pairs = None
    if config.simcse == "sup":
        pairs = positive_pairs(splits, pool, config.simcse_sup_threshold, config.simcse_sup_strict)
        if len(pairs) < 2:
            raise DataError(
                f"simcse 'sup' found {len(pairs)} positive pair(s) (para label 1, sts "
                f"{'>' if config.simcse_sup_strict else '>='} "
                f"simcse_sup_threshold {config.simcse_sup_threshold}) in the training data; in-batch "
                "negatives need at least 2: use more data (train_limit), a lower threshold or simcse 'unsup'"
            )
    elif len(pool) < 2:
        raise DataError("simcse 'unsup' needs at least 2 distinct training sentences")
    examples = _Examples(pool, pairs, tokenizer.pad_token_id or 0, device, precision)
    log.info(
        "simcse %s: %d sentences, %d positive pairs, %d steps of %d",
        config.simcse,
        len(pool),
        0 if pairs is None else len(pairs),
        stage_steps(config, len(examples)),
        min(config.simcse_batch_size, len(examples)),
    )
    return examples


def stage_steps(config: RunConfig, items: int) -> int:
    """The stage's steps: simcse_steps, or simcse_epochs passes over its ``items`` (sentences or pairs).

    A pass is floor(items / batch) steps (:func:`_batches` drops a pass's short tail), at
    least one; epochs are rounded to the nearest step.
    """
    if config.simcse_epochs is None:
        return config.simcse_steps
    per_pass = max(1, items // min(config.simcse_batch_size, items))
    return max(1, int(config.simcse_epochs * per_pass + 0.5))


def run_simcse(
    config: RunConfig,
    encoder: nn.Module,
    splits,
    tokenizer,
    device: torch.device,
    precision: str = "fp32",
    *,
    cache_dir=None,
) -> SimcseResult | None:
    """Pre-train ``encoder`` in place as ``config.simcse`` says; None when it is 'none'.

    ``splits``: the run's training Splits (every task, extra_data included). Rows for
    metrics.jsonl are returned in the result (the run directory may not exist yet).
    """
    if config.simcse == "none":
        return None
    t0 = time.perf_counter()
    examples = _examples(config, list(splits), tokenizer, device, precision, cache_dir)
    batches = _batches(len(examples), config.simcse_batch_size, rng_for(config.seed, "simcse"))
    torch_seed = int(rng_for(config.seed, "simcse_torch").integers(2**62))
    cuda = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    steps = stage_steps(config, len(examples))
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(torch_seed)
        rows = _pretrain(config, encoder, examples, batches, t0, steps)
    pairs = 0 if examples.pairs is None else len(examples.pairs)
    rows[-1].update(sentences=len(examples.pool), pairs=pairs, final=True)
    return SimcseResult(
        mode=config.simcse,
        steps=steps,
        sentences=len(examples.pool),
        pairs=pairs,
        seconds=round(time.perf_counter() - t0, 3),
        rows=rows,
    )


def _pretrain(
    config: RunConfig, encoder: nn.Module, examples: _Examples, batches, t0: float, steps: int
) -> list[dict]:
    """The stage's steps, with the multitask loop's optimizer and step; its metrics rows.

    Runs inside the stage's own torch generator: the projection's init and the dropout
    masks come from it.
    """
    was_training = encoder.training
    embed = _Embed(encoder.config.hidden_size, config.simcse_pooling).to(examples.device)
    named = list(encoder.named_parameters()) + [(f"simcse.{n}", p) for n, p in embed.named_parameters()]
    # fused=False: the implementation the stage's recorded results were made with (the
    # fused kernel rounds differently in the last bits)
    optimizer, scheduler = adamw(
        param_groups(named, config.simcse_lr, config.weight_decay, "simcse"),
        schedule_factor(config.simcse_schedule, steps, config.warmup_ratio),
        fused=False,
    )
    optim = OptimHandle(optimizer, scheduler, [p for _, p in named if p.requires_grad], config.max_grad_norm)
    encoder.train()  # dropout on: it is what makes the two views differ (unsup)
    embed.train()
    bar = progress_bar(steps, f"simcse {config.simcse}", config.progress)
    rows: list[dict[str, Any]] = []
    window: list[float] = []
    try:
        for step in range(1, steps + 1):
            anchors, positives, same = examples.views(encoder, embed, next(batches))
            loss = contrastive_loss(anchors, positives, config.simcse_temperature, same)
            advice = "lower simcse_lr or raise simcse_temperature"
            value = finite_loss(loss, "simcse", f"simcse step {step}", advice)
            loss.backward()
            lr = optim.lr  # the rate this step is taken at
            optim.step()
            window.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
            if step % LOG_EVERY == 0 or step == steps:
                rows.append(_row(config, step, window, value, lr, t0))
                window = []
    finally:
        bar.close()
        encoder.train(was_training)
        encoder.zero_grad(set_to_none=True)
    return rows


def _row(
    config: RunConfig, step: int, window: list[float], last: float, lr: float, t0: float
) -> dict[str, Any]:
    """A metrics.jsonl row of kind 'simcse'."""
    return {
        "kind": "simcse",
        "mode": config.simcse,
        "step": step,
        "loss": float(np.mean(window)),  # mean over the steps since the last row
        "last_loss": last,
        "lr": lr,
        "seconds": round(time.perf_counter() - t0, 3),
    }
