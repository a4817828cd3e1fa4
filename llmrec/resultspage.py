"""The results page, generated from the result JSONs (``llmrec docs results`` -> docs/results.md): every result
file with the command that made it, its commit, seeds, data and date, and its headline figures; real data
before synthetic worlds. A result is marked **stale** when its experiment config changed after the commit
it ran at (or it records no commit): its figures describe settings the repository no longer has."""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYNTHETIC = ("synthetic", "synthetic_sequences", "world")


@dataclass
class Entry:
    """One result file, as the page shows it."""
    path: Path
    name: str
    command: str
    commit: str
    created: str
    seeds: str
    data: list[str]
    stale: str  # "" when current, else why not
    rows: list[tuple[str, str]]  # (what, figure)

    @property
    def synthetic(self) -> bool:
        """Whether every data source of the result is a synthetic world."""
        return bool(self.data) and all(any(s in d for s in SYNTHETIC) for d in self.data)


def _git(root: Path, *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else ""


def _sources(config: Any) -> list[str]:
    """The data sources a result's config names (``source`` values anywhere in it)."""
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("source"), str):
                found.append(x["source"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(config)
    return sorted(set(found))


def headline(d: dict) -> list[tuple[str, str]]:
    """The figures a reader looks for: per data set and variant the primary metric (mean ± std), the
    peers', the parity rows; else a flat ``summary`` of numbers."""
    rows: list[tuple[str, str]] = []
    for ds, res in (d.get("datasets") or {}).items():
        if not isinstance(res, dict):
            continue
        for group, prefix in (("variants", ""), ("peers", "peer ")):
            for key, s in (res.get(group) or {}).items():
                if not isinstance(s, dict):
                    continue
                m = s.get("primary_metric")
                shown = [x for x in (m, "ndcg@20" if m == "ndcg@10" else None) if x and f"{x}_mean" in s]
                if shown:
                    figs = ", ".join(f"{x} {s[f'{x}_mean']:.4f} ± {s.get(f'{x}_std', 0.0):.4f}" for x in shown)
                    rows.append((f"{ds} / {prefix}{key}", figs))
    for p in d.get("parity") or []:
        rows.append((f"parity {p['variant']} vs {p['peer']} ({p['metric']})",
                     f"{p['diff_mean']:+.4f} ± {p['diff_std']:.4f} over {p['pairs']} pairs"
                     + (" (parity)" if p.get("parity") else " (no parity)")))
    if not rows and isinstance(d.get("summary"), dict):
        for k, v in list(d["summary"].items())[:12]:
            if isinstance(v, (int, float)):
                rows.append((k, f"{v:.4g}"))
            elif isinstance(v, dict):
                nums = [(a, b) for a, b in v.items() if isinstance(b, (int, float))][:4]
                if nums:
                    rows.append((k, ", ".join(f"{a} {b:.4g}" for a, b in nums)))
    return rows


def entries(root: Path) -> list[Entry]:
    """Every result JSON under ``root/eval/results`` as an ``Entry`` (partial resume files skipped)."""
    out = []
    for path in sorted((root / "eval" / "results").glob("*.json")):
        if path.name.endswith(".partial.json"):
            continue
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(d, dict):
            continue
        command = str(d.get("command", ""))
        commit = str(d.get("git_commit", "")).replace("+dirty", "")
        m = re.search(r"experiment (\S+)", command)
        config = None
        if m:
            name = Path(m.group(1)).stem
            cand = root / "configs" / "experiments" / f"{name}.yaml"
            config = cand if cand.exists() else None
        stale = ""
        if not commit:
            stale = "no commit recorded"
        elif config is not None:
            changed = _git(root, "log", "--format=%h", f"{commit}..HEAD", "--", str(config.relative_to(root)))
            if changed:
                stale = f"{config.name} changed since (first: {changed.splitlines()[-1]})"
        out.append(Entry(path, path.stem, command, commit[:7], str(d.get("created", ""))[:10],
                         str(d.get("seeds", "")), _sources(d.get("config")), stale, headline(d)))
    return out


def page(root: Path) -> str:
    """The results page as Markdown."""
    es = entries(root)
    lines = ["# Results", "",
             "Generated from `eval/results/*.json` by `llmrec docs results` (do not edit by hand). Each entry: the "
             "command that made it, the commit it ran at, its seeds, data and date, and its headline figures. Real "
             "data first, synthetic worlds after (they plant their own signal: informative, never the proof). "
             "**stale**: the experiment's config changed after the run; rerun the command to refresh it.", "",
             f"{len(es)} result files; {sum(1 for e in es if e.stale)} stale.", ""]
    for title, group in (("Real data", [e for e in es if not e.synthetic]),
                         ("Synthetic worlds", [e for e in es if e.synthetic])):
        lines += [f"## {title}", ""]
        for e in group:
            lines += [f"### {e.name}" + (" (stale)" if e.stale else ""), "",
                      f"`{e.command or '(no command recorded)'}` · commit {e.commit or '-'} · "
                      f"seeds {e.seeds or '-'} · data {', '.join(e.data) or '-'} · {e.created or '-'}"
                      + (f" · stale: {e.stale}" if e.stale else ""),
                      ""]
            if e.rows:
                lines += ["| what | figure |", "|---|---|"] + [f"| {a} | {b} |" for a, b in e.rows[:24]]
                if len(e.rows) > 24:
                    lines.append(f"| ... | {len(e.rows) - 24} more rows in `{e.path.name}` |")
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"
