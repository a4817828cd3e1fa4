"""Generate the personalized research task set from ../shared/data (PrefEval explicit preferences + LoCoMo
development conversations) into results/research_tasks.jsonl. Nothing is copied into the repository.

    python eval/make_research_tasks.py [--prefeval-per-topic 1] [--locomo-per-conversation 2]"""
from __future__ import annotations

import argparse


from llmrec.config import data_root
from llmrec.research.tasks import locomo_tasks, prefeval_tasks, write_tasks

SHARED = data_root()  # $LLMREC_DATA, else shared/data beside the checkout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefeval-per-topic", type=int, default=1)
    ap.add_argument("--locomo-per-conversation", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/research_tasks.jsonl")
    a = ap.parse_args()
    tasks = prefeval_tasks(SHARED / "prefeval", a.prefeval_per_topic, a.seed)
    tasks += locomo_tasks(SHARED / "locomo", a.locomo_per_conversation, a.seed)
    print(f"{len(tasks)} tasks ->", write_tasks(a.out, tasks))


if __name__ == "__main__":
    main()
