"""RecBole 1.2.1 sequential models (SASRec, GRU4Rec) on llmrec's exact sequences, and general recommenders
(BPR, LightGCN, NGCF) on llmrec's exact graph split, in the peers' environment.

    .venv-peers/bin/python eval/peers/peer_recbole.py INPUT.json OUTPUT.json

INPUT (written by llmrec's recommender harness): the model name, hyperparameters, seed and every user's item
sequence in llmrec's time order (ties already broken). The runner writes them as a RecBole atomic file whose
timestamps are each interaction's index in its user's sequence, so RecBole's time ordering reproduces llmrec's
exactly; RecBole's standard sequential protocol then applies: leave-one-out by time (`LS: valid_and_test`),
full ranking over every item, histories of at most MAX_ITEM_LIST_LENGTH, CE loss, no negative sampling.
OUTPUT: valid and test metrics (RecBole's own evaluator), epochs, and training throughput = training pairs
(RecBole's augmented prefix rows) per second of `_train_epoch` time (validation excluded).

Graph mode (INPUT ``family: graph``): llmrec's train / valid / test (user, item) rows are written as RecBole
benchmark files (``benchmark_filename``), so RecBole trains and evaluates on exactly that split: uniform
negative sampling (one per positive, the user's training items excluded), full ranking with training items
(and for test, valid items) excluded, Recall / NDCG / Hit / MRR @10 and @20, model selection on NDCG@10.

Shims for RecBole's version quirks live here, never in RecBole: NumPy 2's removed `np.float_` /
`np.complex_` / `np.unicode_` are restored for RecBole's alias settings; the best checkpoint is loaded by the
runner with `weights_only=False` (torch >= 2.6 refuses RecBole's pickled checkpoint otherwise); training
time is read by wrapping the trainer's `_train_epoch`; SciPy >= 1.13 removed `dok_matrix._update`, which
LightGCN / NGCF call to build their adjacency: it is put back as an update of the dict the matrix wraps; RecBole 1.2.1 pins ray<=2.6.3 for hyper-tuning only,
and runs with the newer ray FuxiCTR needs (see the Makefile)."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def train_and_test(config, cls, name: str) -> dict:
    """RecBole's own quick-start steps (seed, dataset, split, model, fit with early stopping, best checkpoint,
    test) with training time read per `_train_epoch`; the result dict the harness reads."""
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"] + 1, config["reproducibility"])  # RecBole's own quick-start reseeds here too
    model = cls(config, train.dataset).to(config["device"])
    trainer = Trainer(config, model)
    spent = {"seconds": 0.0, "epochs": 0}
    inner = trainer._train_epoch

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        spent["seconds"] += time.perf_counter() - t
        spent["epochs"] += 1
        return out

    trainer._train_epoch = timed
    curve: list[dict] = []  # the per-epoch validation results, as RecBole's fit saw them (rounded by RecBole)
    judge = trainer._valid_epoch

    def recorded(*args, **kwargs):
        score, result = judge(*args, **kwargs)
        curve.append({"epoch": spent["epochs"], **{k.lower(): float(v) for k, v in result.items()}})
        return score, result

    trainer._valid_epoch = recorded
    _, best_valid = trainer.fit(train, valid, saved=True, show_progress=False)
    # the best checkpoint, loaded here: torch >= 2.6 refuses RecBole's pickled checkpoint (it holds the config)
    # under torch.load's new weights_only default; the file is the one this run just wrote. Its "other
    # parameters" (LightGCN's cached full-sort embeddings) come back with it, as RecBole's own loading does
    saved = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(saved["state_dict"])
    model.load_other_parameter(saved.get("other_parameter"))
    result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    pairs = len(train.dataset)
    return {"library": "recbole", "version": __import__("recbole").__version__, "model": name,
            "test": {k.lower(): float(v) for k, v in result.items()},
            "valid": {k.lower(): float(v) for k, v in best_valid.items()},
            "epochs": spent["epochs"], "train_seconds": spent["seconds"], "train_pairs": pairs, "history": curve,
            "train_pairs_per_second": pairs * spent["epochs"] / spent["seconds"] if spent["seconds"] else None,
            "users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1),
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "torch_threads": torch.get_num_threads()}  # inherited from llmrec's OMP_NUM_THREADS


def main() -> None:
    inp, outp = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(inp).read_text())
    import numpy as np

    # RecBole 1.2.1's Config.compatibility_settings aliases np.float = np.float_ etc.; NumPy 2 removed the
    # underscored names, so they are put back (as the types they stood for) before RecBole looks for them
    for alias, real in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if alias not in np.__dict__:
            setattr(np, alias, real)
    from recbole.config import Config
    from recbole.model.sequential_recommender import GRU4Rec, SASRec

    if spec.get("family") == "graph":
        run_graph(spec, outp)
        return
    models = {"sasrec": ("SASRec", SASRec), "gru4rec": ("GRU4Rec", GRU4Rec)}
    name, cls = models[spec["model"]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "seq"
        folder.mkdir()
        with open(folder / "seq.inter", "w", encoding="utf-8") as f:
            f.write("user_id:token\titem_id:token\ttimestamp:float\n")
            for user, items in spec["sequences"].items():
                for t, item in enumerate(items):
                    f.write(f"{user}\t{item}\t{t}\n")
        config = Config(model=name, dataset="seq", config_dict={
            "data_path": tmp, "checkpoint_dir": str(Path(tmp) / "ckpt"), "use_gpu": False, "device": "cpu",
            "seed": spec["seed"], "reproducibility": True, "show_progress": False, "state": "ERROR",
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": spec["max_len"], "loss_type": "CE", "train_neg_sample_args": None,
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
            "metrics": ["Recall", "NDCG", "MRR", "Hit"], "topk": [5, 10, 20], "valid_metric": "NDCG@10",
            "epochs": spec["epochs"], "stopping_step": spec["patience"], "train_batch_size": spec["batch_size"],
            "eval_batch_size": 4096, "learning_rate": spec["learning_rate"], "weight_decay": 0.0,
            **spec["hyperparameters"]})
        out = train_and_test(config, cls, name)
    Path(outp).write_text(json.dumps(out, indent=1))


def run_graph(spec: dict, outp: str) -> None:
    """BPR / LightGCN / NGCF on the fixed split of ``spec["split"]``."""
    from recbole.config import Config
    from recbole.model.general_recommender import BPR, NGCF, LightGCN

    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):  # LightGCN / NGCF build their adjacency with dok._update, which
        def _update(self, entries):  # SciPy >= 1.13 removed; the entries go into the dict it wraps, as before
            self._dict.update(entries)
        sp.dok_matrix._update = _update
    name, cls = {"bpr": ("BPR", BPR), "lightgcn": ("LightGCN", LightGCN), "ngcf": ("NGCF", NGCF)}[spec["model"]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "graph"
        folder.mkdir()
        for part, rows in spec["split"].items():
            with open(folder / f"graph.{part}.inter", "w", encoding="utf-8") as f:
                f.write("user_id:token\titem_id:token\n")
                f.writelines(f"{u}\t{i}\n" for u, i in rows)
        config = Config(model=name, dataset="graph", config_dict={
            "data_path": tmp, "checkpoint_dir": str(Path(tmp) / "ckpt"), "use_gpu": False, "device": "cpu",
            "seed": spec["seed"], "reproducibility": True, "show_progress": False, "state": "ERROR",
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "load_col": {"inter": ["user_id", "item_id"]},
            "benchmark_filename": ["train", "valid", "test"],
            "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
            "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
            "metrics": ["Recall", "NDCG", "Hit", "MRR"], "topk": [10, 20], "valid_metric": "NDCG@10",
            "epochs": spec["epochs"], "stopping_step": spec["patience"], "train_batch_size": spec["batch_size"],
            "eval_batch_size": 4096, "learning_rate": spec["learning_rate"], "weight_decay": 0.0,
            **spec["hyperparameters"]})
        out = train_and_test(config, cls, name)
    Path(outp).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
