import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_BESIDE = Path(__file__).resolve().parents[2] / "shared" / "data"
if "LLMREC_DATA" not in os.environ and _BESIDE.is_dir():  # CI: shared/ lies beside the clone
    os.environ["LLMREC_DATA"] = str(_BESIDE)

from llmrec.config import data_root  # noqa: E402

SHARED_DATA = data_root()  # $LLMREC_DATA, else shared/data beside the checkout


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data set {name} is not present at {path}")
    return path


@pytest.fixture(scope="session")
def llm():
    from llmrec.llm.transformers import TransformersLLM

    return TransformersLLM()


@pytest.fixture(scope="session")
def embedder():
    from llmrec.embed import default_embedder

    return default_embedder()
