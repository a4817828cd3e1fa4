"""The Helen authors' own code (github.com/NUS-HPC-AI-Lab/Helen: their models, training loop and optimizer)
on an exported llmrec split, run with the peers' Python and Hydra, their code untouched.

    python eval/peers/peer_helen.py SPLIT.npz SPEC.json CHECKOUT SEED {dnn|deepfm} {helen|adam}

The shim (here, never in their code) writes the split in the format their loader reads (``train.h5`` /
``valid.h5`` / ``test.h5``: one float row per sample, the fields in order and the label last, and a
``feature_map.json``), a data config for their Hydra tree (``--config-dir``), and runs their ``main.py``
with the split's hyperparameters as overrides (through ``LAUNCH``, a torch-version shim): their optimizer config as released (``optim=Helen``:
rho 0.05, bound 0.3, net_pert False; ``optim=Adam``), their schedule (lr x0.1 on a validation plateau,
early stop with patience 2, best checkpoint restored). Multi-value fields become their ``sequence``
fields (padding at the last row, as their embedding layer expects). Prints one JSON line: test AUC /
logloss from their log, epochs, their per-epoch training time, the validation curve and their process's
peak RSS."""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def load(split_path: str) -> dict[str, dict[str, np.ndarray]]:
    z = np.load(split_path, allow_pickle=False)
    return {part: {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(part + "/")}
            for part in ("train", "valid", "test")}


def encode(parts: dict, spec: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Their feature specs and one float array per part (the fields in order, the label last)."""
    specs, columns, index = {}, [], 0
    for k, f in enumerate(x for x in spec["features"] if x["type"] != "behavior"):  # DNN / DeepFM read no behaviours
        name = f"f{k:02d}"  # their parameter lookup matches feature names as substrings: fixed-width names
        if f["type"] == "categorical":
            specs[name] = {"source": "", "type": "categorical", "vocab_size": int(f["vocab"]), "index": index}
            columns.append((f["name"], None))
            index += 1
        elif f["type"] == "numerical":
            # their loader sums every field's vocab_size for a log line: a numeric field counts as one
            specs[name] = {"source": "", "type": "numeric", "vocab_size": 1, "index": index}
            columns.append((f["name"], None))
            index += 1
        else:  # multi-value: ids 1.. -> 0.., padding 0 -> the last row (their padding_idx = vocab_size - 1)
            L = int(f["max_len"])
            specs[name] = {"source": "", "type": "sequence", "vocab_size": int(f["vocab"]), "max_len": L,
                           "encoder": "MaskedAveragePooling", "index": list(range(index, index + L))}
            columns.append((f["name"], int(f["vocab"])))
            index += L
    arrays = {}
    for part, data in parts.items():
        blocks = []
        for col, vocab in columns:
            v = data[col]
            if vocab is not None:
                v = np.where(v > 0, v - 1, vocab - 1)
            blocks.append(v.reshape(len(v), -1).astype(np.float64))
        blocks.append(data["label"].reshape(-1, 1).astype(np.float64))
        arrays[part] = np.concatenate(blocks, axis=1)
    return {"dataset_id": "llmrec", "num_fields": len(specs), "num_features": None, "input_length": index,
            "feature_specs": specs}, arrays


def write_data(parts: dict, spec: dict, folder: Path) -> int:
    """Their h5 files and feature map under ``folder``; returns the number of training rows."""
    import h5py  # the peers' environment has it

    fmap, arrays = encode(parts, spec)
    for part, rows in arrays.items():
        with h5py.File(folder / f"{part}.h5", "w") as hf:
            hf.create_dataset("data", data=rows)
    (folder / "feature_map.json").write_text(json.dumps(fmap))
    return len(parts["train"]["label"])


# Their code was written for torch 1.10 and scikit-learn 1.0, whose ReduceLROnPlateau took ``verbose`` and
# log_loss ``eps`` (both removed since); this runs their main.py unchanged after giving both back (eps as
# the clipping it was). Their Adam baseline calls ``optim.Adam`` on their own ``optim`` package (which
# shadows torch.optim there and has no Adam): the name is pointed at torch's Adam, the optimizer it means.
LAUNCH = """
import runpy, sys
import numpy as np
import sklearn.metrics as sk_metrics
import torch.optim.lr_scheduler as schedulers

sk_log_loss = sk_metrics.log_loss

def log_loss(y_true, y_pred, eps=1e-15, **options):
    return sk_log_loss(y_true, np.clip(y_pred, eps, 1 - eps), **options)

sk_metrics.log_loss = log_loss
sys.path.insert(0, ".")
import torch
import optim as their_optim  # their package; its train.py calls optim.Adam, a name the package never defines
their_optim.Adam = torch.optim.Adam

class ReduceLROnPlateau(schedulers.ReduceLROnPlateau):
    def __init__(self, *args, verbose=False, **options):
        super().__init__(*args, **options)
        self.verbose = verbose

schedulers.ReduceLROnPlateau = ReduceLROnPlateau
sys.argv = ["main.py"] + sys.argv[1:]
runpy.run_path("main.py", run_name="__main__")
"""


def main() -> None:
    split, spec_path, checkout, seed = sys.argv[1], sys.argv[2], Path(sys.argv[3]).resolve(), int(sys.argv[4])
    model, optim = sys.argv[5], sys.argv[6]
    if model not in ("dnn", "deepfm") or optim not in ("helen", "adam"):
        raise SystemExit(f"peer_helen: model dnn|deepfm and optimizer helen|adam, not {model} {optim}")
    if not (checkout / "optim" / "Helen.py").exists():
        raise SystemExit(f"peer_helen: {checkout} is not a checkout of NUS-HPC-AI-Lab/Helen (optim/Helen.py missing)")
    spec = json.loads(Path(spec_path).read_text())
    hp = spec["hp"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data" / "llmrec"
        data.mkdir(parents=True)
        n_train = write_data(load(split), spec, data)
        conf = tmp / "conf" / "data"
        conf.mkdir(parents=True)
        (conf / "llmrec.yaml").write_text(
            "defaults:\n  - common\n  - _self_\n"
            f"name: llmrec\ndata_format: h5\ndata_root: {tmp / 'data'}\n"
            f"train_data: {data / 'train.h5'}\nvalid_data: {data / 'valid.h5'}\ntest_data: {data / 'test.h5'}\n")
        hidden = "[" + ",".join(str(h) for h in hp["hidden_units"]) + "]"
        args = [sys.executable, "-c", LAUNCH, "--config-dir", str(tmp / "conf"), "data=llmrec",
                f"model={'DNN' if model == 'dnn' else 'DeepFM'}", f"optim={'Helen' if optim == 'helen' else 'Adam'}",
                f"seed={seed}", "gpu=[-1]", f"epoch={hp['epochs']}", f"patience={hp['patience']}",
                f"data.batch_size={hp['batch_size']}", "data.eval_batch_size=8192", "data.workers=0",
                f"model.embedding_dim={hp['embedding_dim']}", f"model.hidden_units={hidden}",
                f"model.net_dropout={hp['dropout']}", f"model.embedding_regularizer={hp['embedding_l2']}",
                f"optim.lr_net={hp['learning_rate']}", f"optim.lr_embed={hp['learning_rate']}",
                f"hydra.run.dir={tmp / 'run'}"]
        t = time.perf_counter()
        res = subprocess.run(args, cwd=checkout, capture_output=True, text=True,
                             env={**os.environ, "HYDRA_FULL_ERROR": "1"})
        wall = time.perf_counter() - t
        log = res.stdout + res.stderr
        run_log = tmp / "run" / "main.log"
        if run_log.exists():
            log += run_log.read_text()
        if res.returncode:
            raise SystemExit(f"their main.py failed ({res.returncode}):\n{log[-4000:]}")
    test = re.findall(r"\[Best Test Metrics\] logloss: ([0-9.]+) - auc: ([0-9.]+)", log, re.I)
    if not test:
        raise SystemExit(f"no test metrics in their log:\n{log[-4000:]}")
    curve = [{"epoch": int(e) + 1, "logloss": float(ll), "auc": float(a)}
             for e, ll, a in re.findall(r"\[Epoch (\d+) Val Metrics\] logloss: ([0-9.]+) - auc: ([0-9.]+)", log, re.I)]
    minutes = [float(m) for m in re.findall(r"\[Epoch \d+ loss\]: [0-9.e+-]+, time: ([0-9.]+) min", log)]
    seen = {c["epoch"]: c for c in curve}  # their log reaches the console and main.log: one entry per epoch
    curve = [seen[e] for e in sorted(seen)]
    epochs = len(curve)
    train_s = sum(minutes[:epochs]) * 60
    print(json.dumps({"library": "helen", "model": model, "optimizer": optim, "seed": seed,
                      "auc": float(test[-1][1]), "logloss": float(test[-1][0]), "epochs": epochs,
                      "train_samples_per_second": n_train * epochs / train_s if train_s > 0 else None,
                      "wall_seconds": wall, "history": curve,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
