"""RecBole 1.2.1 sequential models (SASRec, GRU4Rec) on llmrec's exact sequences, in the peers' environment.

    .venv-peers/bin/python eval/peers/peer_recbole.py INPUT.json OUTPUT.json

INPUT (written by llmrec's recommender harness): the model name, hyperparameters, seed and every user's item
sequence in llmrec's time order (ties already broken). The runner writes them as a RecBole atomic file whose
timestamps are each interaction's index in its user's sequence, so RecBole's time ordering reproduces llmrec's
exactly; RecBole's standard sequential protocol then applies: leave-one-out by time (`LS: valid_and_test`),
full ranking over every item, histories of at most MAX_ITEM_LIST_LENGTH, CE loss, no negative sampling.
OUTPUT: valid and test metrics (RecBole's own evaluator), epochs, and training throughput = training pairs
(RecBole's augmented prefix rows) per second of `_train_epoch` time (validation excluded).

Shims for RecBole's version quirks live here, never in RecBole: NumPy 2's removed `np.float_` /
`np.complex_` / `np.unicode_` are restored for RecBole's alias settings; the best checkpoint is loaded by the
runner with `weights_only=False` (torch >= 2.6 refuses RecBole's pickled checkpoint otherwise); training
time is read by wrapping the trainer's `_train_epoch`; RecBole 1.2.1 pins ray<=2.6.3 for hyper-tuning only,
and runs with the newer ray FuxiCTR needs (see the Makefile)."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


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
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import GRU4Rec, SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

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
        best, best_valid = trainer.fit(train, valid, saved=True, show_progress=False)
        # the best checkpoint, loaded here: torch >= 2.6 refuses RecBole's pickled checkpoint (it holds the config)
        # under torch.load's new weights_only default; the file is the one this run just wrote
        import torch

        saved = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["state_dict"])
        result = trainer.evaluate(test, load_best_model=False, show_progress=False)
        pairs = len(train.dataset)
        out = {"library": "recbole", "version": __import__("recbole").__version__, "model": name,
               "test": {k.lower(): float(v) for k, v in result.items()},
               "valid": {k.lower(): float(v) for k, v in best_valid.items()},
               "epochs": spent["epochs"], "train_seconds": spent["seconds"], "train_pairs": pairs,
               "train_pairs_per_second": pairs * spent["epochs"] / spent["seconds"] if spent["seconds"] else None,
               "users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1),
               "parameters": int(sum(p.numel() for p in model.parameters())),
               "torch_threads": torch.get_num_threads()}  # inherited from llmrec's OMP_NUM_THREADS
    Path(outp).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
