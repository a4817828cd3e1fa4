"""The data sets llmrec can read, where each comes from, its licence, and where a copy lives on this machine.

The data root is ``llmrec.config.data_root``: an explicit ``data_path`` argument (``--data-path``),
``$LLMREC_DATA``, the ``data_path`` saved by ``llmrec data use DIR`` in ``$LLMREC_HOME/config.yaml``, else
``$LLMREC_HOME/data`` (where ``llmrec data fetch`` downloads to). A data set is the folder ``<root>/<folder>``;
when it is absent there, a fetched copy under ``$LLMREC_HOME/data`` is used.

``llmrec data fetch NAME`` downloads every file of a data set, resumes a half-downloaded file (HTTP Range),
checks every checksum before anything is moved into place (a mismatch deletes the download and is an error),
and shows the licence first: research-only and non-commercial sets need ``--accept-licence``."""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from llmrec.config import data_root, llmrec_home, read_settings, settings_path
from llmrec.errors import BackendError, DataError, MissingFileError, UnknownNameError
from llmrec.io import write_text_atomic

@dataclass(frozen=True)
class Download:
    """One file to download: ``url`` -> ``target`` (relative to the data set folder).

    ``checksum`` is ``"sha256:<hex>"`` or ``"md5:<hex>"`` of the downloaded bytes (GroupLens publishes MD5s);
    ``unzip`` extracts the archive into the folder, dropping the leading ``strip`` folder of every member, and
    ``verify`` lists ``(relative path, sha256)`` of files the extraction must produce."""

    url: str
    target: str
    checksum: str | None = None
    unzip: bool = False
    strip: str = ""
    verify: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A catalog entry: folder name, description, licence and its terms, whether the licence must be accepted,
    the downloads and the file layouts that mean the data set is present."""
    name: str
    folder: str
    description: str
    licence: str
    terms: str  # shown before a download
    needs_acceptance: bool
    downloads: tuple[Download, ...]
    present_if: tuple[tuple[str, ...], ...]  # alternative layouts: every file of one of them means "present"
    homepage: str = ""
    notes: str = ""
    extra: dict = field(default_factory=dict)


_ML_TERMS = ("GroupLens Research (University of Minnesota) grants use of the MovieLens data sets for research "
             "purposes only: no commercial use, no redistribution without permission, cite Harper & Konstan (2015) "
             "in publications. Full terms: the README inside the archive.")
_CC_BY_NC = ("Creative Commons Attribution-NonCommercial 4.0 International (CC BY-NC 4.0): share and adapt with "
             "attribution, no commercial use. https://creativecommons.org/licenses/by-nc/4.0/")
_GH = "https://raw.githubusercontent.com"
_PREFEVAL_COMMIT = "50795054b5ff5f418d2b768a331d71e480f93331"
_PREFEVAL_FILES = (
    ("education_learning_styles", "fb27ac51b643e55bae4eddf5c390676798871afc6355c33b4e37e0cc65e9c598"),
    ("education_resources", "31003f4ff78059bab13647ac07c22abca13465244c455381ef76da6799f2c678"),
    ("entertain_games", "05578079fdedcf13a93d015bacf3123b3aaf34cf364a4339d7fdfbfcd9ad36e7"),
    ("entertain_music_book", "5a3ba8a47ba6a0b7b6601840e88871a24ce3a7cdd22213d9ca1a6e6709cca7b4"),
    ("entertain_shows", "c8bcfe51b8e6bdbb4d53e67bf6ccbd82dad3a84b7ed3c58bd0e7290aadb28935"),
    ("entertain_sports", "a4f0ea9de29ec93974c4af451965c1c09d6e4939c61700bf357cd33549ab3991"),
    ("lifestyle_beauty", "1b0332992a3a09e27c87e76d8c5f7227bcbad22e33ae931e6edc3560201f4e9a"),
    ("lifestyle_dietary", "05ad1b4fdfb91b8a628a6eecc256d6118775b8860c8a5444a02ad2e3b1fd4880"),
    ("lifestyle_fit", "c2ebae96b4f20fdc194f45999f84ef3bd27af2a77bfedbdb59a97d63bad7fb3a"),
    ("lifestyle_health", "262d223b592a2def1937870605de051e3ba252821837d1df66c24116d6436594"),
    ("pet_ownership", "d8576794ac196297548118fa6c4f38800f8494eae8fe18d70c99916c4d3da567"),
    ("professional_work_location_style", "520eafd5e876d04784b40d5c1631dde783c85e2c8b32a65b18fa64e8ea5923c2"),
    ("shop_fashion", "6b6bd4799b87207888320467caef6a84b0e2d9c568982c073e7460f50477f883"),
    ("shop_home", "6ba88e7ff7e3d2022187cdaaa9a344fdead5ae221c3f93d5d147928647973602"),
    ("shop_motors", "46cfcb41323be74a87ae3db6a01964d380607e0c9ae98497c592be9133ffbc34"),
    ("shop_technology", "346ed91e69ecf5b7a741e20876f00bb20fbeff9cf1ed9d7318e7174845865653"),
    ("travel_activities", "021cd1b1dc500f32bbdd46273f4dc1fdb9c3300e847e407d621ea27cd14ff081"),
    ("travel_hotel", "743c975a6de64ea06c8538d1043457c691d9bdfbe668ec737f55a50f0ce558f7"),
    ("travel_restaurant", "6079f577c7113fdc974192634eb11dd57aea85458be995e0393ca957ff551833"),
    ("travel_transportation", "3496a8986fb240e97ae9e3c5d9fefbfd86b80433313ee2ee6c0b4def4b34a138"),
)

def _movielens(name: str, folder: str, page: str, description: str, md5: str,
               present_if: tuple[tuple[str, ...], ...], notes: str = "") -> DatasetSpec:
    """A GroupLens MovieLens archive (research-only terms; GroupLens publishes MD5 checksums)."""
    return DatasetSpec(name=name, folder=folder, description=description, licence="GroupLens research-only terms",
                       terms=_ML_TERMS, needs_acceptance=True, homepage=f"https://grouplens.org/datasets/movielens/{page}/",
                       downloads=(Download(f"https://files.grouplens.org/datasets/movielens/{folder}.zip", f"{folder}.zip",
                                           checksum=f"md5:{md5}", unzip=True, strip=f"{folder}/"),),
                       present_if=present_if, notes=notes)


CATALOG: dict[str, DatasetSpec] = {s.name: s for s in (
    _movielens("movielens100k", "ml-100k", "100k",
               "MovieLens 100K: 100,000 ratings (1-5) by 943 users of 1,682 movies, with user and movie data",
               "0e33842e24a9c977be4e0107933c0723",
               (("u.data", "u.item", "u.user"), ("ml-100k.inter", "ml-100k.item", "ml-100k.user")),
               notes="read in MovieLens' own format (u.data / u.item / u.user) or RecBole's atomic files"),
    _movielens("movielens1m", "ml-1m", "1m",
               "MovieLens 1M: 1,000,209 ratings by 6,040 users of 3,706 movies (ratings.dat / users.dat / movies.dat)",
               "c4d9eecfca2ab87c1945afe126590906", (("ratings.dat", "users.dat", "movies.dat"),)),
    DatasetSpec(
        name="locomo", folder="locomo",
        description="LoCoMo: 10 long conversations (272 sessions) with 1,986 QA over them (Maharana et al., ACL 2024)",
        licence="CC BY-NC 4.0", terms=_CC_BY_NC, needs_acceptance=True,
        homepage="https://github.com/snap-research/locomo",
        downloads=(Download(f"{_GH}/snap-research/LoCoMo/3eb6f2c585f5e1699204e3c3bdf7adc5c28cb376/data/locomo10.json",
                            "locomo10.json",
                            checksum="sha256:79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4"),),
        present_if=(("locomo10.json",),),
        notes="conversations conv-44, 47, 48, 49, 50 are this project's held-out acceptance set"),
    DatasetSpec(
        name="mtrag_human_eval", folder="mtrag_human_eval",
        description="MT-RAG reference subset: 159 multi-turn RAG tasks, 477 responses with 3-annotator human ratings",
        licence="Apache-2.0 (repository); passages CC BY-SA and others",
        terms="Apache License 2.0 for the repository (https://www.apache.org/licenses/LICENSE-2.0); the passages "
              "come from ClapNQ (Wikipedia, CC BY-SA), FiQA, Govt and IBM Cloud docs: check their terms before "
              "redistributing.", needs_acceptance=False,
        homepage="https://github.com/IBM/mt-rag-benchmark",
        downloads=(Download(f"{_GH}/IBM/mt-rag-benchmark/cc5b1d481b391181b89f7ced860308482e785463/mtrag-human/"
                            "evaluations/reference_subset_with_human_evaluations.json",
                            "reference_subset_with_human_evaluations.json",
                            checksum="sha256:ba8518617eca8dd31cadfcbbec1e3b38464e3c6cea33d902865e4acd05e8673e"),),
        present_if=(("reference_subset_with_human_evaluations.json",),)),
    DatasetSpec(
        name="ares_nq_synthetic", folder="ares_nq_synthetic",
        description="ARES NQ synthetic queries: 3,000 query-passage pairs with relevance / faithfulness labels",
        licence="Apache-2.0 (repository); Natural Questions CC BY-SA 3.0",
        terms="Apache License 2.0 for the repository; the documents are Natural Questions / Wikipedia passages "
              "(CC BY-SA 3.0: attribution, share-alike).", needs_acceptance=False,
        homepage="https://github.com/stanford-futuredata/ARES",
        downloads=(Download("https://github.com/stanford-futuredata/ARES/raw/c7c9018a755faf8347c4da415632bae1593ef104/"
                            "datasets/synthetic_queries/nq_synthetic_queries.zip", "nq_synthetic_queries.zip",
                            unzip=True, verify=(("nq_synthetic_queries.tsv", "2e3552c9fa1837657167d174fe8d2faeb6fe5af8"
                                                 "96191444a8c45993e436bc5b"),)),),
        present_if=(("nq_synthetic_queries.tsv",),)),
    DatasetSpec(
        name="prefeval", folder="prefeval",
        description="PrefEval explicit preferences: 20 topics of stated user preferences (Zhao et al., ICLR 2025)",
        licence="CC BY-NC 4.0", terms=_CC_BY_NC, needs_acceptance=True,
        homepage="https://github.com/amazon-science/PrefEval",
        downloads=tuple(Download(f"{_GH}/amazon-science/PrefEval/{_PREFEVAL_COMMIT}/benchmark_dataset/"
                                 f"explicit_preference/{name}.json", f"explicit_preference/{name}.json",
                                 checksum=f"sha256:{digest}") for name, digest in _PREFEVAL_FILES),
        present_if=(tuple(f"explicit_preference/{n}.json" for n, _ in _PREFEVAL_FILES),),
        notes="only the explicit-preference files the research task set reads"),
)}


def get_spec(name: str) -> DatasetSpec:
    """The catalog entry of ``name``; ``UnknownNameError`` listing the known names otherwise."""
    if name not in CATALOG:
        raise UnknownNameError(f"data set {name!r} is not in the catalog (have {sorted(CATALOG)}); "
                               f"`llmrec data list` shows them")
    return CATALOG[name]


def save_data_path(path: str | Path) -> Path:
    """``llmrec data use DIR``: remember ``DIR`` as this machine's data root (``$LLMREC_HOME/config.yaml``)."""
    target = Path(path).expanduser().resolve()
    if not target.is_dir():
        raise MissingFileError(f"data path {target}: not a folder")
    settings = {**read_settings(), "data_path": str(target)}
    write_text_atomic(settings_path(), yaml.safe_dump(settings, sort_keys=True))
    return target


def cache_root() -> Path:
    """Where ``fetch`` downloads to by default: ``$LLMREC_HOME/data``."""
    return llmrec_home() / "data"


def is_present(spec: DatasetSpec, folder: Path) -> bool:
    """Whether ``folder`` holds every file of one of the data set's layouts."""
    return any(all((folder / f).is_file() for f in layout) for layout in spec.present_if)


def dataset_dir(name: str, data_path: str | Path | None = None) -> Path:
    """Where data set ``name`` is (or would be): ``<root>/<folder>``, else a fetched copy, else the root's."""
    spec = get_spec(name)
    primary = data_root(data_path) / spec.folder
    if is_present(spec, primary):
        return primary
    fetched = cache_root() / spec.folder
    return fetched if is_present(spec, fetched) else primary


def require_dataset(name: str, data_path: str | Path | None = None) -> Path:
    """``dataset_dir`` that must hold the data set; the error says how to get it."""
    path = dataset_dir(name, data_path)
    if not is_present(get_spec(name), path):
        raise MissingFileError(f"data set {name!r} is not at {path}: run `llmrec data fetch {name}`, or point "
                               f"`llmrec data use DIR` / $LLMREC_DATA / --data-path at a folder holding "
                               f"{get_spec(name).folder}/")
    return path


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, checksum: str) -> None:
    """Verify ``path`` against ``"sha256:<hex>"`` or ``"md5:<hex>"``; a mismatch is a ``DataError``."""
    algo, _, want = checksum.partition(":")
    if algo not in ("sha256", "md5") or not want:
        raise DataError(f"checksum {checksum!r}: expected sha256:<hex> or md5:<hex>")
    got = _digest(path, algo)
    if got != want.lower():
        raise DataError(f"{path.name}: {algo} mismatch (expected {want}, got {got}); the download was removed")


def _download(url: str, part: Path, progress: Callable[[int, int | None], None] | None, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size with an HTTP Range request."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "llmrec-data/1", **({"Range": f"bytes={have}-"}
                                                                                 if have else {})})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            return
        raise BackendError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise BackendError(f"{url}: {getattr(e, 'reason', e)} (no network? copy the files and use "
                           f"`llmrec data use DIR`)") from None
    with resp:
        resumed = have and resp.status == 206
        mode = "ab" if resumed else "wb"
        done = have if resumed else 0
        length = resp.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        with open(part, mode) as f:
            try:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    f.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
            except http.client.IncompleteRead as e:  # keep what arrived: the next run resumes from it
                f.write(e.partial)
                raise BackendError(f"{url}: download interrupted after {done + len(e.partial)} bytes; run the "
                                   f"same command again to resume") from None
            except OSError as e:
                raise BackendError(f"{url}: download interrupted after {done} bytes ({e}); run the same "
                                   f"command again to resume") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
    if total is not None and done < total:  # the connection closed early: keep the part, resume next time
        raise BackendError(f"{url}: download interrupted after {done} of {total} bytes; run the same command "
                           f"again to resume")


def _extract(archive: Path, dest: Path, strip: str) -> list[Path]:
    out = []
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            name = info.filename
            if info.is_dir() or name.startswith("__MACOSX/"):
                continue
            rel = name[len(strip):] if strip and name.startswith(strip) else name
            target = (dest / rel).resolve()
            if dest.resolve() not in target.parents:
                raise DataError(f"{archive.name}: member {name!r} would leave the data folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            with z.open(info) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, target)
            out.append(target)
    return out


def fetch(name: str, dest: str | Path | None = None, accept_licence: bool = False,
          progress: Callable[[str, int, int | None], None] | None = None, timeout: float = 60.0,
          catalog: dict[str, DatasetSpec] | None = None) -> Path:
    """Download data set ``name`` into ``dest`` (default ``$LLMREC_HOME/data``)/<folder>; returns the folder.

    Already-present data sets are not downloaded again. Every file lands under a ``.part`` name first and is
    moved into place only after its checksum matched; a rerun after an interruption resumes the ``.part``."""
    spec = (catalog or CATALOG).get(name) or get_spec(name)
    if spec.needs_acceptance and not accept_licence:
        raise PermissionError(f"{name}: licensed under {spec.licence}. {spec.terms} Pass --accept-licence "
                              f"(accept_licence=True) to download it.")
    folder = Path(dest).expanduser() / spec.folder if dest else cache_root() / spec.folder
    if is_present(spec, folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for d in spec.downloads:
        target = folder / d.target
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        _download(d.url, part, (lambda done, total, t=d.target: progress(t, done, total)) if progress else None,
                  timeout)
        if d.checksum:
            try:
                check_file(part, d.checksum)
            except DataError:
                part.unlink(missing_ok=True)
                raise
        if d.unzip:
            try:
                _extract(part, folder, d.strip)
            except zipfile.BadZipFile:
                part.unlink(missing_ok=True)
                raise DataError(f"{d.target}: not a zip archive; the download was removed") from None
            for rel, digest in d.verify:
                try:
                    check_file(folder / rel, f"sha256:{digest}")
                except DataError:
                    (folder / rel).unlink(missing_ok=True)
                    part.unlink(missing_ok=True)
                    raise
            part.unlink()
        else:
            os.replace(part, target)
    if not is_present(spec, folder):
        raise DataError(f"{name}: downloaded, but {folder} lacks {spec.present_if[0]}")
    return folder
