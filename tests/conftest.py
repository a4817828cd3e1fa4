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


@pytest.fixture(scope="session")
def pg_url():
    """A PostgreSQL server for the store's conformance suite and the memory service: ``LLMREC_TEST_POSTGRES``
    (a ``postgresql://`` URL; .ci/run starts a throwaway cluster and sets it), else a throwaway cluster made
    here. CI fails without one; elsewhere the PostgreSQL tests are skipped."""
    url = os.environ.get("LLMREC_TEST_POSTGRES")
    if url:
        yield url
        return
    from llmrec.store.pgcluster import ThrowawayCluster, pg_bin

    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL 15 server binaries not found (.ci/run installs postgresql-15)")
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql-15)")
    with ThrowawayCluster() as pg:
        yield pg.url


class StoreBackend:
    """Opens stores of one backend by name: the same name is the same store (reopen, a second process)."""

    def __init__(self, kind: str, tmp_path: Path, pg: str | None) -> None:
        import uuid

        self.kind, self.tmp, self.pg = kind, tmp_path, pg
        self.prefix = "t" + uuid.uuid4().hex[:12]

    def location(self, name: str = "s") -> str:
        if self.kind == "sqlite":
            return str(self.tmp / name)
        return f"{self.pg}&schema={self.prefix}_{name}"

    def open(self, name: str = "s", config=None):
        from llmrec.store import open_store

        return open_store(self.location(name), config,
                          snapshot_dir=self.tmp / f"snap-{name}" if self.kind == "postgres" else None)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """Each store backend in turn (the conformance suite runs every test on both)."""
    pg = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return StoreBackend(request.param, tmp_path, pg)
