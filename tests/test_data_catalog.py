"""`llmrec data`: fetch from a local HTTP server (checksums, licences, resume of a half-downloaded file),
data-root resolution, and MovieLens' native formats (a tiny made-up fixture, and parity with the RecBole
atomic copy of ML-100K when the shared data is present)."""
import hashlib
import io
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import catalog
from llmrec.data.catalog import DatasetSpec, Download, fetch
from llmrec.data.movielens import ML100K_GENRES, load_movielens, movielens_format
from llmrec.errors import BackendError, DataError, MissingFileError

from conftest import shared

USERS = [("1", "24", "M", "technician", "85711"), ("2", "53", "F", "other", "94043"), ("3", "23", "M", "writer", "32067")]
MOVIES = [("1", "Toy Story (1995)", "01-Jan-1995", {"Animation", "Children's", "Comedy"}),
          ("2", "GoldenEye (1995)", "01-Jan-1995", {"Action", "Adventure", "Thriller"}),
          ("3", "Unknown Film", "", set())]
RATINGS = [("1", "1", "5", "881250949"), ("1", "2", "3", "881250950"), ("2", "1", "4", "881250951"),
           ("3", "3", "2", "881250952"), ("2", "3", "5", "881250953"), ("3", "2", "4", "881250954")]


def native_100k_files() -> dict[str, bytes]:
    items = []
    for mid, title, date, genres in MOVIES:
        flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
        items.append(f"{mid}|{title}|{date}||http://example.org/{mid}|{flags}")
    return {"u.data": "".join("\t".join(r) + "\n" for r in RATINGS).encode(),
            "u.user": "".join("|".join(u) + "\n" for u in USERS).encode(),
            "u.item": ("\n".join(items) + "\n").encode("latin-1")}


def zip_bytes(files: dict[str, bytes], prefix: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(prefix + name, data)
    return buf.getvalue()


class Server:
    """127.0.0.1 HTTP server over a dict of paths -> bytes, with Range support; ``cut[path] = n`` makes the
    next response for path stop after n bytes (a dropped connection)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.cut, self.requests = files, {}, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                n = outer.cut.pop(self.path, None)
                self.wfile.write(body[start:] if n is None else body[start:start + n])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = Server({})
    yield s
    s.close()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMREC_DATA", raising=False)
    return tmp_path / "home"


def tiny_spec(server: Server, checksum: str | None = None) -> DatasetSpec:
    archive = zip_bytes(native_100k_files(), "ml-tiny/")
    server.files["/ml-tiny.zip"] = archive
    digest = checksum or "md5:" + hashlib.md5(archive).hexdigest()
    return DatasetSpec(name="ml_tiny", folder="ml-tiny", description="tiny MovieLens-format fixture",
                       licence="research only (test)", terms="test terms", needs_acceptance=True,
                       downloads=(Download(f"{server.url}/ml-tiny.zip", "ml-tiny.zip", checksum=digest, unzip=True,
                                           strip="ml-tiny/"),),
                       present_if=(("u.data", "u.item", "u.user"),))


def test_fetch_checks_licence_checksum_and_loads(server, tmp_path):
    spec = tiny_spec(server)
    cat = {spec.name: spec}
    with pytest.raises(PermissionError, match="accept-licence"):
        fetch("ml_tiny", tmp_path / "d", catalog=cat)
    assert server.requests == []  # nothing downloaded before the licence was accepted
    folder = fetch("ml_tiny", tmp_path / "d", accept_licence=True, catalog=cat)
    assert sorted(p.name for p in folder.iterdir()) == ["u.data", "u.item", "u.user"]  # archive removed
    data = load_movielens(folder)
    assert movielens_format(folder) == "native-100k" and len(data) == len(RATINGS)
    assert data.item_info["1"]["title"] == "Toy Story" and "Children's" in data.item_info["1"]["category"]
    assert data.columns["release_year"][0] == "1995" and data.item_info["3"]["category"] == "unknown"
    np.testing.assert_array_equal(data.columns["label"], [1, 0, 1, 0, 1, 1])
    n = len(server.requests)
    fetch("ml_tiny", tmp_path / "d", accept_licence=True, catalog=cat)  # present: no second download
    assert len(server.requests) == n


def test_checksum_mismatch_is_an_error_and_leaves_nothing(server, tmp_path):
    spec = tiny_spec(server, checksum="sha256:" + "0" * 64)
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch("ml_tiny", tmp_path / "d", accept_licence=True, catalog={spec.name: spec})
    assert list((tmp_path / "d" / "ml-tiny").iterdir()) == []


def test_half_downloaded_file_resumes_with_a_range_request(server, tmp_path):
    spec = tiny_spec(server)
    size = len(server.files["/ml-tiny.zip"])
    server.cut["/ml-tiny.zip"] = size // 2
    with pytest.raises(BackendError, match="interrupted"):
        fetch("ml_tiny", tmp_path / "d", accept_licence=True, catalog={spec.name: spec})
    part = tmp_path / "d" / "ml-tiny" / "ml-tiny.zip.part"
    assert part.stat().st_size == size // 2 and not (tmp_path / "d" / "ml-tiny" / "u.data").exists()
    folder = fetch("ml_tiny", tmp_path / "d", accept_licence=True, catalog={spec.name: spec})
    assert server.requests[-1][1] == f"bytes={size // 2}-"  # resumed, not restarted
    assert len(load_movielens(folder)) == len(RATINGS) and not part.exists()


def test_unreachable_host_and_404_are_named(server, tmp_path):
    spec = tiny_spec(server)
    gone = replace(spec, downloads=(replace(spec.downloads[0], url=f"{server.url}/missing.zip"),))
    with pytest.raises(BackendError, match="HTTP 404"):
        fetch("ml_tiny", tmp_path / "d", accept_licence=True, catalog={gone.name: gone})


def test_data_root_resolution_order(tmp_path, monkeypatch, home):
    (tmp_path / "a" / "locomo").mkdir(parents=True)
    (tmp_path / "a" / "locomo" / "locomo10.json").write_text("[]")
    assert catalog.data_root() == home / "data"  # nothing configured: the fetch cache
    catalog.save_data_path(tmp_path / "a")
    assert catalog.data_root() == (tmp_path / "a").resolve()
    assert catalog.require_dataset("locomo") == (tmp_path / "a" / "locomo").resolve()
    monkeypatch.setenv("LLMREC_DATA", str(tmp_path / "b"))
    assert catalog.data_root() == tmp_path / "b"
    assert catalog.data_root(tmp_path / "c") == tmp_path / "c"
    with pytest.raises(MissingFileError, match="llmrec data fetch locomo"):
        catalog.require_dataset("locomo")


def test_catalog_entries_are_complete():
    for spec in catalog.CATALOG.values():
        assert spec.downloads and spec.licence and spec.terms and spec.present_if
        for d in spec.downloads:  # every byte that lands is checked
            assert d.checksum or d.verify, (spec.name, d.target)
            assert d.url.startswith("https://")


@pytest.mark.parametrize("name", ["locomo", "mtrag_human_eval", "ares_nq_synthetic", "prefeval"])
def test_catalog_checksums_match_the_shared_copies(name):
    """The registered sha256s are those of the files the project develops on (copied unchanged upstream)."""
    folder = shared(catalog.CATALOG[name].folder)
    for d in catalog.CATALOG[name].downloads:
        checks = d.verify or ((d.target, d.checksum.split(":", 1)[1]),)
        for rel, digest in checks:
            catalog.check_file(folder / rel, f"sha256:{digest}")


@pytest.mark.slow
def test_native_format_parity_with_recbole_atomic(tmp_path):
    """ML-100K written back in GroupLens' own format loads to the same table as RecBole's atomic files."""
    src = shared("ml-100k")
    atomic = load_movielens(src)
    info = {}
    with open(src / "ml-100k.item", encoding="utf-8") as f:
        next(f)
        for line in f:
            iid, title, year, genres = line.rstrip("\n").split("\t")
            info[iid] = (title, year, set(genres.split()))
    items = []
    for iid, (title, year, genres) in info.items():
        flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
        items.append(f"{iid}|{title} ({year})|01-Jan-{year}||http://x|{flags}" if year
                     else f"{iid}|{title}|||http://x|{flags}")
    (tmp_path / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1", errors="replace")
    inter = (src / "ml-100k.inter").read_text().splitlines()[1:]
    (tmp_path / "u.data").write_text("\n".join(inter) + "\n")
    users = [ln.split("\t") for ln in (src / "ml-100k.user").read_text().splitlines()[1:]]
    (tmp_path / "u.user").write_text("\n".join("|".join(u) for u in users) + "\n")
    native = load_movielens(tmp_path)
    assert len(native) == len(atomic) == 100_000
    for col in ("user_id", "item_id", "label", "timestamp", "gender", "occupation", "release_year", "scenario"):
        np.testing.assert_array_equal(native.columns[col], atomic.columns[col], err_msg=col)
    assert [set(g) for g in native.columns["genres"][:500]] == [set(g) for g in atomic.columns["genres"][:500]]


def test_native_1m_format(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n2::10::2::978302109\n")
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (tmp_path / "movies.dat").write_bytes("10::Amélie (2001)::Comedy|Romance\n".encode("latin-1"))
    d = load_movielens(tmp_path)
    assert d.name == "ml-1m" and list(d.columns["occupation"]) == ["K-12 student", "self-employed"]
    assert d.item_info["10"]["title"] == "Amélie" and d.columns["release_year"][0] == "2001"
    (tmp_path / "users.dat").write_text("1::F::1::99::48067\n2::M::56::16::70072\n")
    with pytest.raises(DataError, match="users.dat:1 field 'occupation'"):
        load_movielens(tmp_path)


def test_missing_movielens_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(MissingFileError, match="llmrec data fetch movielens100k"):
        load_movielens(tmp_path)


def test_cli_data_commands(tmp_path, capsys):
    from llmrec.cli import main

    assert main(["data", "path", "locomo"]) == 1
    assert "llmrec data fetch locomo" in capsys.readouterr().err
    assert main(["data", "fetch", "locomo"]) == 2  # licence not accepted: a usage error, nothing downloaded
    assert "--accept-licence" in capsys.readouterr().err
    assert main(["data", "use", str(tmp_path)]) == 0
    assert main(["data", "list", "--json"]) == 0
    rows = __import__("json").loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"movielens100k", "locomo"} and all(not r["present"] for r in rows)
    assert all(Path(r["path"]).parent == tmp_path.resolve() for r in rows)
