"""One shared encoder, one pooling and one head per task; pair tasks read one or two paths.

Which token inputs a task needs is decided here and only here: :func:`segment_layout`
names the segments ``model(task, inputs)`` expects, in order, and :func:`encode_for_model`
produces exactly those (the trainer, evaluation and prediction all call it), so a config
can never be trained on one layout and scored on another.

Layouts: a single-sentence task reads ``[a]``. A pair task reads ``[ab]`` with
``pair_mode: concat`` ([CLS] a [SEP] b [SEP]), ``[a, b]`` with ``separate`` (each
sentence alone; Sentence-BERT, Reimers & Gurevych 2019) and ``[ab, a, b]`` with
``ensemble``. ``task_pair_mode`` gives one pair task its own mode (004: QQP
concatenated, STS by the cosine of the sentences encoded alone).

Paths of a pair task: the *concat* path pools ``ab`` into r (with ``concat_pooling`` if
set, else the task's pooling); the *separate* path pools ``a`` and ``b`` into u and v and
builds the ``pair_features`` ([u; v; |u - v|] by default, [u; v], or [u; v; |u - v|; u*v])
or, for STS with ``sts_head: cosine``, scores 5 * cos(u, v) (cos(W u, W v) with
``sts_cosine_weight``). With ``shared_pair_layer`` one dropout-linear-ReLU layer is
shared: per path, on the pair representation (r, or the pair features) of para and sts
(``shared_layer_scope: pair``), or on every pooled vector of every task (``all``).
``ensemble`` runs both paths, each with its own head, and combines their outputs
(``ensemble_combine``): their mean (logits for para, scores for sts), or their sum, where
an STS cosine path adds its raw cos(u, v) to the concat path's score (001). The loss is
taken on the combination, so both heads are trained jointly through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from mtsearch.config import RunConfig
from mtsearch.errors import ConfigError
from mtsearch.heads import HEADS, PAIR_FEATURE_WIDTH, STS_SCALE, CosineHead, SharedPairLayer, pair_features
from mtsearch.pooling import POOLING
from mtsearch.tasks import TASKS

#: pair_mode -> the segments a pair task reads, in the order ``collate`` returns them
PAIR_SEGMENTS = {"concat": ("ab",), "separate": ("a", "b"), "ensemble": ("ab", "a", "b")}
#: pair_mode -> the data layer's encodings (``encode_split`` pair modes) that produce them
PAIR_ENCODINGS = {"concat": ("concat",), "separate": ("separate",), "ensemble": ("concat", "separate")}
#: pair_mode -> the paths of a pair task, in the order their heads are built
PAIR_PATHS = {"concat": ("concat",), "separate": ("separate",), "ensemble": ("concat", "separate")}


def segment_layout(config: RunConfig, task: str) -> tuple[str, ...]:
    """The segments ``model(task, inputs)`` expects for this config, in order."""
    if TASKS[task].inputs == "single":
        return ("a",)
    return PAIR_SEGMENTS[config.pair_mode_of(task)]


def encode_for_model(split, tokenizer, config: RunConfig, cache_dir=None):
    """The :class:`~mtsearch.data.EncodedSplit` the model reads for ``split`` under ``config``.

    For ``ensemble`` the concat and the separate encodings (each cached on disk by the
    data layer) are merged into one split with segments ``ab, a, b``, so ``collate``
    returns the three inputs the model expects.
    """
    from mtsearch.data import encode_split

    mode = config.pair_mode_of(split.task)
    modes = PAIR_ENCODINGS[mode] if TASKS[split.task].inputs == "pair" else ("concat",)
    encs = [encode_split(split, tokenizer, config.max_length, m, cache_dir=cache_dir) for m in modes]
    enc = encs[0]
    if len(encs) > 1:
        segments = {name: seg for e in encs for name, seg in e.segments.items()}
        enc = dataclasses.replace(
            enc, segments=segments, pair_mode=mode, from_cache=all(e.from_cache for e in encs)
        )
    layout = segment_layout(config, split.task)
    if tuple(enc.segments) != layout:  # the data layer's naming changed under us
        raise RuntimeError(f"{split.task}: encoded segments {tuple(enc.segments)}, the model reads {layout}")
    return enc


def task_dropout(config: RunConfig, task: str) -> float:
    """Dropout before ``task``'s head: task_dropout[task] if set, else head_dropout."""
    return config.task_dropout.get(task, config.head_dropout)


def needs_pooler(config: RunConfig) -> bool:
    """Whether a pooling of this run reads the encoder's pooler (load the encoder with it)."""
    wanted = POOLING.get(config.pooling).needs_pooler(config.args("pooling"))
    if config.concat_pooling is not None:
        cls = POOLING.get(config.concat_pooling)
        wanted = wanted or cls.needs_pooler(cls.Args())
    return wanted


@dataclass(frozen=True)
class LossOptions:
    """What :func:`task_loss` needs to know beyond the task: how STS is trained."""

    sts_loss: str = "mse"
    sts_margin: float = 0.0
    sts_targets: str = "graded"

    @classmethod
    def from_config(cls, config: RunConfig) -> LossOptions:
        return cls(
            sts_loss=config.sts_loss, sts_margin=config.sts_margin, sts_targets=config.sts_cosine_targets
        )


class MultitaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, config: RunConfig):
        super().__init__()
        self.encoder = encoder
        self.tasks = list(config.tasks)
        self.pair_mode = config.pair_mode
        self.pair_modes = {t: config.pair_mode_of(t) for t in self.tasks}
        self.pair_feature_kind = config.pair_features
        self.ensemble_combine = config.ensemble_combine
        self.loss_options = LossOptions.from_config(config)
        self.layouts = {t: segment_layout(config, t) for t in self.tasks}
        hidden = encoder.config.hidden_size
        try:
            self.pooling = nn.ModuleDict(
                {
                    t: POOLING.create(
                        config.pooling, config.args("pooling"), hidden_size=hidden, encoder=encoder
                    )
                    for t in self.tasks
                }
            )
            # The concat path's own pooling (concat_pooling), for the pair tasks that have one.
            self.concat_pooling = nn.ModuleDict()
            if config.concat_pooling is not None:
                cls = POOLING.get(config.concat_pooling)
                for t in self.tasks:
                    if "concat" in self.paths(t):
                        self.concat_pooling[t] = POOLING.create(
                            config.concat_pooling, cls.Args(), hidden_size=hidden, encoder=encoder
                        )
        except ValueError as err:  # e.g. the pooler a pooling reads is missing
            raise ConfigError(f"pooling: {err}") from None
        # The pair representation's width on each path: r on concat, the pair features on separate.
        features = PAIR_FEATURE_WIDTH[config.pair_features]
        width = {"single": {}, "concat": {}, "separate": {}}
        for t in self.tasks:
            dim = self.pooling[t].out_dim
            concat_dim = self.concat_pooling[t].out_dim if t in self.concat_pooling else dim
            width["single"][t], width["concat"][t], width["separate"][t] = dim, concat_dim, features * dim
        self.cosine_sts = config.sts_head == "cosine"

        # One shared layer per path that some pair head reads (the cosine head reads u, v),
        # or (scope 'all') one on every pooled vector, under the key 'all'.
        self.shared_pair = nn.ModuleDict()
        if config.shared_pair_layer and config.shared_layer_scope == "all":
            dims = {width["single"][t] for t in self.tasks} | {
                width["concat"][t] for t in self.concat_pooling
            }
            if len(dims) != 1:
                raise ConfigError(
                    "shared_layer_scope 'all' shares one layer over every pooled vector, but the poolings give "
                    f"vectors of widths {sorted(dims)}: use poolings of one width (pooling, concat_pooling)"
                )
            self.shared_pair["all"] = SharedPairLayer(dims.pop(), config.head_dropout)
        elif config.shared_pair_layer:
            for t in self.tasks:
                for path in self.paths(t):
                    if path != "single" and not self._is_cosine(t, path) and path not in self.shared_pair:
                        self.shared_pair[path] = SharedPairLayer(width[path][t], config.head_dropout)

        # heads[t]: the head of the task's first path; separate_heads[t]: the separate
        # path's head in 'ensemble' (the concat path keeps heads[t]).
        self.heads = nn.ModuleDict()
        self.separate_heads = nn.ModuleDict()
        for t in self.tasks:
            drop = task_dropout(config, t)
            for i, path in enumerate(self.paths(t)):
                if self._is_cosine(t, path):
                    head: nn.Module = CosineHead(
                        drop, dim=width["single"][t], weight=config.sts_cosine_weight
                    )
                else:
                    head = HEADS.create(
                        config.head,
                        config.args("head"),
                        in_dim=width[path][t],
                        out_dim=TASKS[t].num_labels,
                        dropout=drop,
                    )
                (self.heads if i == 0 else self.separate_heads)[t] = head

    # ------------------------------------------------------------------ structure
    def paths(self, task: str) -> tuple[str, ...]:
        """'single' for a one-sentence task; a pair task's paths under its pair mode."""
        return ("single",) if TASKS[task].inputs == "single" else PAIR_PATHS[self.pair_modes[task]]

    def _is_cosine(self, task: str, path: str) -> bool:
        return task == "sts" and path == "separate" and self.cosine_sts

    def head_of(self, task: str, path: str) -> nn.Module:
        paths = self.paths(task)
        if path not in paths:
            raise KeyError(f"task {task} has no '{path}' path (it has {', '.join(paths)})")
        return self.separate_heads[task] if paths.index(path) == 1 else self.heads[task]

    def pair_layer(self, task: str, path: str) -> nn.Module | None:
        """The shared pair layer ``task`` applies on ``path``; the same object for para and sts."""
        if path == "single" or self._is_cosine(task, path) or path not in self.paths(task):
            return None
        return self.shared_pair[path] if path in self.shared_pair else None

    def task_modules(self, task: str) -> Iterator[nn.Module]:
        """The modules only ``task`` uses (its pooling(s) and heads)."""
        yield self.pooling[task]
        if task in self.concat_pooling:
            yield self.concat_pooling[task]
        yield self.heads[task]
        if task in self.separate_heads:
            yield self.separate_heads[task]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for m in self.task_modules(task) for p in m.parameters()]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters several tasks use: the encoder (its pooler included, when loaded), and the shared layers."""
        return list(self.encoder.parameters()) + list(self.shared_pair.parameters())

    # -------------------------------------------------------------------- forward
    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if "cached_hidden" in inputs:
            # Activation cache (mtsearch/train/activation_cache.py): the input carries the
            # frozen lower layers' output; only the layers above them run.
            from mtsearch.models.layers import forward_from

            return forward_from(
                self.encoder, inputs["cached_hidden"], inputs["attention_mask"], int(inputs["cached_layer"])
            )
        out = self.encoder(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            token_type_ids=inputs["token_type_ids"],
        )
        return out.last_hidden_state

    def pool(self, task: str, seg: dict[str, torch.Tensor], path: str = "single") -> torch.Tensor:
        """One vector per input of ``seg``: the path's pooling, then (scope 'all') the shared layer."""
        pooling = (
            self.concat_pooling[task]
            if path == "concat" and task in self.concat_pooling
            else self.pooling[task]
        )
        vec = pooling(self.encode(seg), seg["attention_mask"])
        shared = self.shared_pair["all"] if "all" in self.shared_pair else None
        return shared(vec) if shared is not None else vec

    def forward(self, task: str, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Raw task output: [B, C] logits for classes, [B] logit or score otherwise."""
        layout = self.layouts[task]
        if len(inputs) != len(layout):
            raise ValueError(
                f"task {task} with pair_mode '{self.pair_modes[task]}' reads {len(layout)} inputs "
                f"({', '.join(layout)}), got {len(inputs)}: encode the data with encode_for_model"
            )
        seg = dict(zip(layout, inputs, strict=True))
        outs = []
        for path in self.paths(task):
            head = self.head_of(task, path)
            layer = self.pair_layer(task, path)
            if path in ("single", "concat"):
                feats = self.pool(task, seg["a" if path == "single" else "ab"], path)
                out = head(layer(feats) if layer is not None else feats)
            else:
                u, v = self.pool(task, seg["a"], path), self.pool(task, seg["b"], path)
                if isinstance(head, CosineHead):
                    out = head(u, v)
                    if len(self.paths(task)) > 1 and self.ensemble_combine == "sum":
                        out = out / STS_SCALE  # 001 adds the raw cosine to the concat path's score
                else:
                    feats = pair_features(u, v, self.pair_feature_kind)
                    out = head(layer(feats) if layer is not None else feats)
            outs.append(out.squeeze(-1) if out.dim() == 2 and out.shape[-1] == 1 else out)
        if len(outs) == 1:
            return outs[0]
        # The ensemble: the mean (or the sum) of the paths' logits (para) or scores (sts).
        stacked = torch.stack([o.float() for o in outs])
        return stacked.sum(dim=0) if self.ensemble_combine == "sum" else stacked.mean(dim=0)


#: sts_cosine_targets 'sign': a gold score at or above this (the middle of 0..5) is "similar" (+1)
STS_SIGN_THRESHOLD = 2.5


def sts_cosine_embedding_loss(
    cos: torch.Tensor, labels: torch.Tensor, margin: float, targets: str = "graded"
) -> torch.Tensor:
    """Cosine-embedding loss on STS's 0..5 labels.

    'graded': mean of s(1 - cos) + (1 - s) max(0, cos - margin), s = label / 5 in [0, 1].
    At s = 1 (label 5) and s = 0 (label 0) this is exactly torch's ``cosine_embedding_loss``
    with target +1 and -1; in between, the two terms are weighted by how similar the gold
    says the pair is. 'sign': torch's ``cosine_embedding_loss`` itself, with target +1 for a
    label >= 2.5 (1 - cos) and -1 below (max(0, cos - margin)): 004 trains its cosine with
    this loss and does not say how its labels became targets, so both readings are here.
    """
    if targets == "sign":
        similar = labels.float() >= STS_SIGN_THRESHOLD
        return torch.where(similar, 1.0 - cos, torch.relu(cos - margin)).mean()
    s = (labels.float() / STS_SCALE).clamp(0.0, 1.0)
    return (s * (1.0 - cos) + (1.0 - s) * torch.relu(cos - margin)).mean()


def task_loss(
    task: str, output: torch.Tensor, labels: torch.Tensor, options: LossOptions | None = None
) -> torch.Tensor:
    kind = TASKS[task].kind
    output = output.float()
    if kind == "class":
        return nn.functional.cross_entropy(output, labels.long())
    if kind == "binary":
        return nn.functional.binary_cross_entropy_with_logits(output, labels.float())
    if task == "sts" and options is not None and options.sts_loss == "cosine_embedding":
        # The cosine head outputs 5 * cos (validation allows this loss only with it).
        return sts_cosine_embedding_loss(output / STS_SCALE, labels, options.sts_margin, options.sts_targets)
    return nn.functional.mse_loss(output, labels.float())


def predictions(task: str, output: torch.Tensor) -> torch.Tensor:
    """Labels for classification tasks, scores for regression (what the metric compares).

    Every STS head outputs on the label's 0..5 scale (the cosine head 5 * cos, in
    [-5, 5]), so scores need no STS-mode-specific mapping.
    """
    kind = TASKS[task].kind
    output = output.float()
    if kind == "class":
        return output.argmax(-1)
    if kind == "binary":
        return (output > 0).long()
    return output
