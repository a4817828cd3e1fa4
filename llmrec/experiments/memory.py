"""The LoCoMo memory experiment (kind ``memory``; ``configs/experiments/memory_locomo.yaml``): session retrieval
by every method of the config, each a registered retriever (``llmrec.retrieval``) with its settings, scored
against the sessions named in each question's evidence. Also the helpers eval/bench_memory.py and
eval/memory_filter.py use (``build_retrievers``, ``rank_sessions``).

Each conversation is one user; each session is added as its turns (speaker: text, image captions appended)
with a session unit, timestamped with the session's date; with ``digest``, ``Memory.consolidate`` has ``llm``
(generations cached in LLMREC_HOME/generations.sqlite) write each session's summary and keywords units, which
the methods marked ``digest`` use. Gold = the sessions named in a question's evidence ids (malformed ids are
counted and reported, questions left with no gold session are excluded and counted). Metrics: session-level
recall_all@k (every gold session in the top k, as MemGAS scores it), recall_any@k and NDCG@k, overall and per
category (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial), with the random floor on the
same questions. Tune on the dev conversations only; the held-out ones are reported as is. Add throughput and
latencies come from a warm embedding cache and rank every session of a conversation; eval/bench_memory.py
measures cold adds and top-10 searches over 10,000 units."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from llmrec.config import StrictConfig, llmrec_home, repo_root
from llmrec.data.locomo import CATEGORIES, DEV_CONVERSATIONS, HELDOUT_CONVERSATIONS, load_locomo
from llmrec.embed import default_embedder
from llmrec.errors import BackendError, ConfigError
from llmrec.experiments.kinds import ExperimentKind, load_kind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.llm import LLMConfig, make_llm
from llmrec.llm.cache import CachedLLM
from llmrec.llm.server import LLMServer
from llmrec.memory import retrievers  # noqa: F401  (registers the memory retrievers)
from llmrec.memory.api import Memory, namespace
from llmrec.memory.memgas import MemGAS, MemGASConfig, fit_view_prior
from llmrec.memory.locomo import add_conversation
from llmrec.memory.units import ExtractiveDigester, SessionDigester
from llmrec.metrics import ndcg_at, recall_all_at, recall_any_at
from llmrec.results import pyplot
from llmrec.retrieval import Hit, Retriever, make_retriever, sessions_in_order
from llmrec.store import VectorStore

KS = (1, 3, 5, 10)


class MemoryMethod(StrictConfig):
    """One retrieval method of the memory experiment: a registered retriever, its config, k and backfill."""
    retriever: str
    config: dict[str, Any] = {}
    k: int | None = None  # None: every unit of the user (so every session is ranked)
    digest: bool = False  # needs the summary / keywords units (LLM-made or extractive: the experiment's digester)
    fit_view_prior: bool = False  # memgas only: its view prior fitted on the dev conversations before the run
    backfill: str | None = None  # another method whose ranking fills the sessions this one did not return


class MemoryPeer(StrictConfig):
    """A peer library run side by side on the same conversations and questions (its own environment)."""
    library: Literal["mem0"] = "mem0"
    infer: bool = False  # mem0's own LLM fact extraction (slow on CPU) instead of storing each turn as is
    conversations: list[str] | None = None  # a subset of the experiment's conversations (None: all)


class MemoryExperiment(StrictConfig):
    """The LoCoMo memory experiment: data, split, methods, digest settings and peers."""
    name: str
    output: str | None = None  # default eval/results/<name>_<split>[_nodigest].json
    data: str = "locomo"  # the LoCoMo folder (locomo10.json)
    split: Literal["dev", "heldout", "all"] = "dev"
    conversations: list[str] | None = None  # a subset of the split's conversations (None: all of them)
    digest: bool = True  # run Memory.consolidate (summary / keywords units) and the digest methods
    digester: Literal["llm", "extractive"] = "llm"  # LLM summaries and keywords, or key turns chosen by the
    # embedder and frequent content words (no LLM)
    llm: LLMConfig = LLMConfig(dtype="bfloat16")  # the LLM digester
    random_trials: int = 50
    only: list[str] | None = None  # just these methods (and what they backfill from)
    methods: dict[str, MemoryMethod]
    peers: list[MemoryPeer] = []
    peer_python: str = ".venv-peers/bin/python"  # relative to the checkout (`make peers`)


def _load(raw: dict, path: Path) -> MemoryExperiment:
    exp = validate(MemoryExperiment, raw, path)
    for label, m in exp.methods.items():
        if m.backfill is not None and m.backfill not in exp.methods:
            raise ConfigError(f"{path}: methods.{label}.backfill: unknown method {m.backfill!r}")
        if m.fit_view_prior and m.retriever != "memgas":
            raise ConfigError(f"{path}: methods.{label}.fit_view_prior: only the memgas retriever has view priors")
    split_ids = {"dev": DEV_CONVERSATIONS, "heldout": HELDOUT_CONVERSATIONS, "all": None}[exp.split]
    outside = sorted(set(exp.conversations or []) - set(split_ids or exp.conversations or []))
    if outside:
        raise ConfigError(f"{path}: conversations: {outside} are not {exp.split} conversations")
    unknown = sorted(set(exp.only or []) - set(exp.methods))
    if unknown:
        raise ConfigError(f"{path}: only: unknown methods {unknown} (have {sorted(exp.methods)})")
    return exp


def load_memory_experiment(name: str = "memory_locomo", overrides: list[str] | None = None) -> MemoryExperiment:
    """The memory experiment config ``name`` with ``--set`` overrides."""
    return load_kind(name, "memory", overrides)


def build_retrievers(memory: Memory, exp: MemoryExperiment, digest: bool = True,
                     only: list[str] | None = None) -> dict[str, Retriever]:
    """The experiment's retrievers over ``memory`` (digest methods only with ``digest``; ``only`` a subset)."""
    return {label: make_retriever(m.retriever, memory, m.config) for label, m in exp.methods.items()
            if (digest or not m.digest) and (only is None or label in only)}


def rank_sessions(hits: list[Hit], sessions: list[str], backfill: list[str] | None = None) -> list[str]:
    """Every session of the user, ranked: the hits' sessions by their best hit, then ``backfill``'s order,
    then session order."""
    ranked = sessions_in_order(hits)
    seen = set(ranked)
    for s in [*(backfill or []), *sessions]:
        if s not in seen:
            ranked.append(s)
            seen.add(s)
    return ranked


def score(ranked: list[str], gold: set[str]) -> dict[str, float]:
    """Session-level recall_all@k, recall_any@k and NDCG@k of one ranking against the gold sessions."""
    out = {}
    for k in KS:
        out[f"recall_all@{k}"] = recall_all_at(ranked, gold, k)
        out[f"recall_any@{k}"] = recall_any_at(ranked, gold, k)
    for k in (5, 10):
        out[f"ndcg@{k}"] = ndcg_at(ranked, gold, k)
    return out


def aggregate(rows: list[dict]) -> dict:
    """Mean of every score overall and per LoCoMo question category."""
    keys = [k for k in rows[0] if k not in ("category",)]
    overall = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    per_cat = {}
    for c, name in CATEGORIES.items():
        sub = [r for r in rows if r["category"] == c]
        if sub:
            per_cat[name] = {"n": len(sub), **{k: float(np.mean([r[k] for r in sub])) for k in keys}}
    return {"n": len(rows), "overall": overall, "per_category": per_cat}


def run_memory(exp: MemoryExperiment, out: str | Path | None = None) -> dict:
    """Run the memory experiment (and its peers) and write the result JSON and plot."""
    ids = {"dev": DEV_CONVERSATIONS, "heldout": HELDOUT_CONVERSATIONS, "all": None}[exp.split]
    if exp.conversations:
        ids = tuple(exp.conversations)
    convs = load_locomo(exp.data, ids)
    embedder = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    only = None
    if exp.only:
        only = sorted(set(exp.only) | {exp.methods[m].backfill for m in exp.only if exp.methods[m].backfill})
    rng = np.random.default_rng(0)
    malformed, no_gold = 0, 0
    add_units, add_seconds, latencies = 0, 0.0, []
    digest_seconds, digested = 0.0, 0
    digester = None
    if exp.digest and any(m.digest for m in exp.methods.values()):
        digester = (ExtractiveDigester(embedder) if exp.digester == "extractive" else
                    SessionDigester(CachedLLM(make_llm(exp.llm), llmrec_home() / "generations.sqlite")))
    fitted = fit_view_priors(exp, embedder, digester, only)
    for label, f in fitted.items():  # the fitted prior replaces the method's own for this run
        exp.methods[label] = exp.methods[label].model_copy(
            update={"config": {**exp.methods[label].config, "view_prior": f["view_prior"]}})
    with tempfile.TemporaryDirectory() as tmp:
        memory = Memory(VectorStore(Path(tmp) / "store"), embedder, digester=digester)
        retrievers = build_retrievers(memory, exp, digest=digester is not None, only=only)
        # a method is ranked after the one it backfills from
        order = sorted(retrievers, key=lambda m: exp.methods[m].backfill is not None)
        rows = {m: [] for m in [*order, "random"]}
        paths = {m: {} for m in order if exp.methods[m].retriever == "rfmem"}
        for conv in tqdm(convs, desc="conversations"):
            user = conv.sample_id
            t = time.perf_counter()
            add_units += add_conversation(memory, conv)
            add_seconds += time.perf_counter() - t
            if digester is not None:  # LLM calls: timed apart from adds and searches
                t = time.perf_counter()
                digested += memory.consolidate(user, progress=True)
                digest_seconds += time.perf_counter() - t
            sessions = [str(s.index) for s in conv.sessions]
            for qa in conv.qa:
                malformed += len(qa.bad_evidence)
                gold = {str(s) for s in qa.gold_sessions}
                if not gold:
                    no_gold += 1
                    continue
                ranked_by: dict[str, list[str]] = {}
                for name in order:
                    method = exp.methods[name]
                    t = time.perf_counter()
                    k = method.k or max(1, memory.store.count(namespace(user)))
                    hits = retrievers[name].retrieve(user, qa.question, k)
                    latencies.append(time.perf_counter() - t)
                    if name in paths and hits:
                        p = hits[0].metadata["rfmem_path"]
                        paths[name][p] = paths[name].get(p, 0) + 1
                    ranked_by[name] = rank_sessions(hits, sessions, ranked_by.get(method.backfill))
                    rows[name].append({"category": qa.category, **score(ranked_by[name], gold)})
                trials = [score(list(rng.permutation(sessions)), gold) for _ in range(exp.random_trials)]
                rows["random"].append({"category": qa.category,
                                       **{k: float(np.mean([t_[k] for t_ in trials])) for k in trials[0]}})
    peer_stats = {}
    if exp.peers:
        peer_rows, peer_stats = run_memory_peers(exp, convs, embedder)
        rows.update(peer_rows)
    results = {m: aggregate(r) for m, r in rows.items() if r}
    for m, r in results.items():
        o = r["overall"]
        print(f"{m:15s} n={r['n']} recall_all@5={o['recall_all@5']:.3f} recall_any@5={o['recall_any@5']:.3f} "
              f"ndcg@5={o['ndcg@5']:.3f} recall_all@10={o['recall_all@10']:.3f}")
    tag = "_nodigest" if not exp.digest else ("_extractive" if exp.digester == "extractive" else "")
    default = f"eval/results/{exp.name}_{exp.split}{tag}.json"
    # one pass over conversations that share a store: written through the runner, with no per-item resume
    runner = Runner(exp, settings_key(exp, exclude=("name", "output")), out or exp.output or default)
    path = runner.write({
        "split": exp.split, "conversations": [c.sample_id for c in convs], "embedder": embedder.model_id,
        "malformed_evidence_ids": malformed, "questions_without_gold_session_excluded": no_gold,
        "add_units_per_second": add_units / add_seconds,
        "digest": None if digester is None else {
            "digester": exp.digester, "made_by": digester.model_id, "sessions": digested, "seconds": digest_seconds,
            **({"dtype": exp.llm.dtype, "cache_hits": digester.llm.hits, "cache_misses": digester.llm.misses}
               if exp.digester == "llm" else {})},
        "fitted_view_prior": fitted,
        "rfmem_paths": paths, "methods": {m: exp.methods[m].model_dump() for m in order},
        "peers": peer_stats,
        "search_latency_ms_p50": float(np.percentile(np.array(latencies) * 1000, 50)),
        "search_latency_ms_p95": float(np.percentile(np.array(latencies) * 1000, 95)),
        "results": results,
    }, plot=lambda png: plot(results, exp.split, png), seeds=[0], config=exp.model_dump(mode="json"))
    return {"output": str(path), "results": results}


def fit_view_priors(exp: MemoryExperiment, embedder, digester, only: list[str] | None) -> dict[str, dict]:
    """For every memgas method with ``fit_view_prior``: its view prior chosen on the DEV conversations (whatever
    the split; held-out conversations are never looked at), by ``fit_view_prior``'s coordinate search on
    recall_all@5. Returns method -> {view_prior, dev recall_all@5 before / after, questions}."""
    wanted = [label for label, m in exp.methods.items() if m.fit_view_prior and (only is None or label in only)
              and (digester is not None or not m.digest)]
    if not wanted:
        return {}
    convs = load_locomo(exp.data, DEV_CONVERSATIONS)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        memory = Memory(VectorStore(Path(tmp) / "store"), embedder, digester=digester)
        questions = []
        for conv in tqdm(convs, desc="dev conversations (view prior)"):
            add_conversation(memory, conv)
            if digester is not None:
                memory.consolidate(conv.sample_id, progress=False)
            questions += [(conv.sample_id, qa.question, {str(s) for s in qa.gold_sessions})
                          for qa in conv.qa if qa.gold_sessions]
        for label in wanted:
            raw = exp.methods[label].config
            config = MemGASConfig.model_validate({k: v for k, v in raw.items() if k in MemGASConfig.model_fields})
            prior, before, after = fit_view_prior(MemGAS(memory, config), questions, k=5, progress=True)
            print(f"{label}: view prior fitted on dev {prior} (dev recall_all@5 {before:.3f} -> {after:.3f})",
                  flush=True)
            out[label] = {"view_prior": prior, "dev_recall_all@5_before": before, "dev_recall_all@5_after": after,
                          "dev_questions": len(questions), "dev_conversations": list(DEV_CONVERSATIONS)}
    return out


def run_memory_peers(exp: MemoryExperiment, convs: list, embedder) -> tuple[dict[str, list], dict]:
    """Each peer in its own environment, its LLM and embeddings served by ``llmrec serve`` (the same bundled
    SmolLM2 and MiniLM), scored on the same questions with the same ``rank_sessions`` / ``score``."""
    import json
    import subprocess

    root = repo_root() or Path.cwd()
    python = Path(exp.peer_python) if Path(exp.peer_python).is_absolute() else root / exp.peer_python
    if not python.exists():
        print(f"memory peers skipped: {python} not found (run `make peers`)", flush=True)
        return {}, {"skipped": f"{python} not found"}
    server = LLMServer(make_llm(exp.llm), port=0, embedder=embedder).start()
    rows: dict[str, list] = {}
    stats: dict[str, Any] = {}
    try:
        for peer in exp.peers:
            label = f"peer:{peer.library}" + (":infer" if peer.infer else "")
            chosen = [c for c in convs if peer.conversations is None or c.sample_id in peer.conversations]
            payload = {"conversations": [{
                "user": c.sample_id, "top_k": sum(len(s.turns) for s in c.sessions),
                "sessions": [{"session_id": str(s.index),
                              "turns": [f"{t.speaker}: {t.text}" for t in s.turns]} for s in c.sessions],
                "questions": [{"id": str(i), "question": qa.question} for i, qa in enumerate(c.qa)
                              if qa.gold_sessions]} for c in chosen]}
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "in.json").write_text(json.dumps(payload))
                args = [str(python), str(root / "eval" / "peers" / f"peer_{peer.library}.py"), f"{tmp}/in.json",
                        f"{tmp}/out.json", server.url] + (["--infer"] if peer.infer else [])
                t = time.perf_counter()
                res = subprocess.run(args, capture_output=True, text=True)
                if res.returncode:
                    raise BackendError(f"peer {label} failed:\n{res.stderr[-3000:]}")
                got = json.loads((Path(tmp) / "out.json").read_text())
            stats[label] = {k: got[k] for k in ("library", "version", "infer", "memories", "add_seconds",
                                                "search_seconds", "searches")}
            stats[label].update(conversations=[c.sample_id for c in chosen], seconds=time.perf_counter() - t,
                                errors=len(got["errors"]), error_examples=got["errors"][:5])
            print(f"{label}: {stats[label]['memories']} memories, {len(got['errors'])} add errors", flush=True)
            if not got["memories"]:  # nothing stored: a score would only be the session order's
                stats[label]["result"] = "n/a: the peer stored no memories (see error_examples)"
                continue
            rows[label] = []
            for c in chosen:
                sessions = [str(s.index) for s in c.sessions]
                for i, qa in enumerate(c.qa):
                    if not qa.gold_sessions:
                        continue
                    hit_sessions = [s for s in got["conversations"][c.sample_id][str(i)] if s is not None]
                    ranked = list(dict.fromkeys(hit_sessions)) + [s for s in sessions if s not in set(hit_sessions)]
                    rows[label].append({"category": qa.category, **score(ranked, {str(x) for x in qa.gold_sessions})})
    finally:
        server.stop()
    return rows, stats


def plot(results: dict, split: str, path: Path) -> None:
    """recall_all@5 and recall_any@5 of every method, best first."""
    plt = pyplot()
    names = sorted(results, key=lambda m: results[m]["overall"]["recall_all@5"])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * len(names) + 1.4))
    ax.barh(y - 0.2, [results[m]["overall"]["recall_all@5"] for m in names], 0.4, label="recall_all@5")
    ax.barh(y + 0.2, [results[m]["overall"]["recall_any@5"] for m in names], 0.4, label="recall_any@5")
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of questions (0-1)")
    ax.set_title(f"LoCoMo session retrieval ({split} conversations, MiniLM)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # beside the bars, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


KIND = ExperimentKind(load=_load, run=run_memory)
