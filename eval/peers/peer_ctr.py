"""DeepFM and DIN (and FuxiCTR's DCNv2) from the peer libraries on an exported llmrec split (run with the peers' Python).

    python eval/peers/peer_ctr.py SPLIT.npz SPEC.json {fuxictr|deepctr} SEED [deepfm|dcnv2|din]

SPLIT.npz holds the encoded train/valid/test arrays (identical ids for every library), SPEC.json the
feature list and hyperparameters. Prints one JSON line: test AUC/logloss, training samples/s, epochs
and the per-epoch validation curve (`history`).
The FuxiCTR DeepFM is assembled from the wheel's own layers the way its model zoo does (the zoo is not
in the wheel); the protocol (Adam, embedding L2, lr x0.1 on plateau, early stop on valid AUC with
patience 2, best weights restored) is each library's own where it has one."""
from __future__ import annotations

import copy
import json
import logging
import os
import sys
import tempfile
import time

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM; ru_maxrss would carry the parent's RSS across fork + exec)."""
    return int(next(x for x in open("/proc/self/status") if x.startswith("VmHWM:")).split()[1]) / 1024


def load(split_path: str):
    z = np.load(split_path, allow_pickle=False)
    parts = {}
    for part in ("train", "valid", "test"):
        parts[part] = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(part + "/")}
    return parts


def run_fuxictr(parts, spec, seed, model_name="deepfm"):
    from collections import OrderedDict

    from fuxictr.features import FeatureMap
    from fuxictr.pytorch.layers import CrossNetV2, DIN_Attention, FactorizationMachine, FeatureEmbedding, MLP_Block
    from fuxictr.pytorch.models import BaseModel
    from fuxictr.utils import set_logger  # noqa: F401  (imported for parity with the zoo scripts)

    logging.disable(logging.INFO)
    fmap = FeatureMap("llmrec_bench", tempfile.mkdtemp())
    fmap.features = OrderedDict()
    behaviors = [f for f in spec["features"] if f["type"] == "behavior"] if model_name == "din" else []
    shifted = {f["target"] for f in behaviors}  # their ids + 1: index 0 is the sequences' padding
    for name in shifted:
        for part in parts.values():
            part[name] = part[name] + 1
    for f in spec["features"]:
        if f["type"] == "behavior":
            if f in behaviors:  # FuxiCTR's DIN: a sequence feature sharing its target's embedding table
                fmap.features[f["name"]] = {"type": "sequence", "source": "", "share_embedding": f["target"],
                                            "vocab_size": f["vocab"], "padding_idx": 0, "max_len": f["max_len"]}
            else:  # models without attention do not read behaviour sequences (as llmrec's)
                for part in parts.values():
                    part.pop(f["name"], None)
        elif f["type"] == "categorical":
            fmap.features[f["name"]] = {"type": "categorical", "source": "", "vocab_size": f["vocab"]}
            if f["name"] in shifted:
                fmap.features[f["name"]].update(vocab_size=f["vocab"] + 1, padding_idx=0)
        elif f["type"] == "numerical":
            fmap.features[f["name"]] = {"type": "numeric", "source": ""}
        else:
            fmap.features[f["name"]] = {"type": "sequence", "source": "", "vocab_size": f["vocab"], "padding_idx": 0,
                                        "max_len": f["max_len"], "feature_encoder": "layers.MaskedAveragePooling()"}
    fmap.labels = ["label"]
    fmap.default_emb_dim = spec["hp"]["embedding_dim"]
    fmap.num_fields = fmap.get_num_fields()
    fmap.set_column_index()
    hp = spec["hp"]

    class ZooModel(BaseModel):
        """What every zoo model's constructor does around its layers: BaseModel settings, then compile."""

        def __init__(self, feature_map, model_id):
            super().__init__(feature_map, model_id=model_id, gpu=-1, embedding_regularizer=hp["embedding_l2"],
                             net_regularizer=0, model_root=tempfile.mkdtemp(), metrics=["AUC", "logloss"],
                             verbose=0, early_stop_patience=hp["patience"])
            self.embedding_layer = FeatureEmbedding(feature_map, hp["embedding_dim"])

        def finish(self):
            os.makedirs(self.model_dir, exist_ok=True)
            self.compile("adam", "binary_crossentropy", hp["learning_rate"])
            self.reset_parameters()
            self.model_to_device()

    class DeepFM(ZooModel):
        def __init__(self, feature_map):
            super().__init__(feature_map, "DeepFM")
            self.fm = FactorizationMachine(feature_map)
            self.mlp = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                                 hidden_units=hp["hidden_units"], hidden_activations="ReLU", output_activation=None,
                                 dropout_rates=hp["dropout"], batch_norm=False)
            self.finish()

        def forward(self, inputs):
            X = self.get_inputs(inputs)
            emb = self.embedding_layer(X)
            y = self.fm(X, emb) + self.mlp(emb.flatten(start_dim=1))
            return {"y_pred": self.output_activation(y)}

    class DCNv2(ZooModel):
        """The zoo's DCNv2 (parallel structure, full-rank cross layers) from the wheel's layers."""

        def __init__(self, feature_map):
            super().__init__(feature_map, "DCNv2")
            dim = feature_map.sum_emb_out_dim()
            self.crossnet = CrossNetV2(dim, hp.get("cross_layers", 3))
            self.parallel_dnn = MLP_Block(input_dim=dim, output_dim=None, hidden_units=hp["hidden_units"],
                                          hidden_activations="ReLU", output_activation=None,
                                          dropout_rates=hp["dropout"], batch_norm=False)
            self.fc = torch.nn.Linear(dim + hp["hidden_units"][-1], 1)
            self.finish()

        def forward(self, inputs):
            X = self.get_inputs(inputs)
            x0 = self.embedding_layer(X, flatten_emb=True)
            y = self.fc(torch.cat([self.crossnet(x0), self.parallel_dnn(x0)], dim=-1))
            return {"y_pred": self.output_activation(y)}

    class DIN(ZooModel):
        """The zoo's DIN from the wheel's layers: DIN_Attention pools each behaviour sequence against its
        target's embedding; the pooled vector takes the sequence's place among the fields; an MLP on top."""

        def __init__(self, feature_map):
            super().__init__(feature_map, "DIN")
            act = "Dice" if hp.get("activation", "dice") == "dice" else "ReLU"
            self.attention = torch.nn.ModuleList(
                DIN_Attention(hp["embedding_dim"], attention_units=hp.get("attention_units", [80, 40]),
                              hidden_activations=act, use_softmax=hp.get("attention_softmax", False))
                for _ in behaviors)
            self.dnn = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                                 hidden_units=hp["hidden_units"], hidden_activations=act, output_activation=None,
                                 dropout_rates=hp["dropout"], batch_norm=False)
            self.finish()

        def forward(self, inputs):
            X = self.get_inputs(inputs)
            emb = self.embedding_layer.embedding_layer(X)
            for f, att in zip(behaviors, self.attention):
                emb[f["name"]] = att(emb[f["target"]], emb[f["name"]], X[f["name"]].long() != 0)
            y = self.dnn(self.embedding_layer.embedding_layer.dict2tensor(emb, flatten_emb=True))
            return {"y_pred": self.output_activation(y)}

    class Loader:
        def __init__(self, data, bs, shuffle):
            self.data, self.bs, self.shuffle = data, bs, shuffle
            self.n = len(data["label"])
            self.tensors = {k: torch.from_numpy(v) for k, v in data.items()}

        def __len__(self):
            return (self.n + self.bs - 1) // self.bs

        def __iter__(self):
            idx = torch.randperm(self.n) if self.shuffle else torch.arange(self.n)
            for i in range(0, self.n, self.bs):
                j = idx[i : i + self.bs]
                yield {k: v[j] for k, v in self.tensors.items()}

    torch.manual_seed(seed)
    np.random.seed(seed)
    model = {"dcnv2": DCNv2, "din": DIN}.get(model_name, DeepFM)(fmap)
    eval_time = [0.0]
    orig_eval = model.eval_step

    def timed_eval():
        t = time.perf_counter()
        orig_eval()
        eval_time[0] += time.perf_counter() - t

    model.eval_step = timed_eval
    history: list[dict] = []  # FuxiCTR's own validation logs, one per evaluation (once an epoch here)
    judge = model.evaluate

    def recorded(*args, **kwargs):
        logs = judge(*args, **kwargs)
        history.append({"epoch": model._epoch_index + 1, **{k.lower(): float(v) for k, v in logs.items()}})
        return logs

    model.evaluate = recorded
    train = Loader(parts["train"], hp["batch_size"], True)
    valid = Loader(parts["valid"], 8192, False)
    t = time.perf_counter()
    model.fit(train, epochs=hp["epochs"], validation_data=valid, max_gradient_norm=10.0)
    total = time.perf_counter() - t
    epochs = model._epoch_index + 1
    model.evaluate = judge
    p = model.predict(Loader(parts["test"], 8192, False)).reshape(-1)
    return p, epochs, train.n * epochs / max(1e-9, total - eval_time[0]), history


def run_deepctr(parts, spec, seed, model_name="deepfm"):
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIN, DeepFM

    hp = spec["hp"]
    cols = []
    behaviors = [f for f in spec["features"] if f["type"] == "behavior"] if model_name == "din" else []
    shifted = {f["target"] for f in behaviors}  # their ids + 1: index 0 is the sequences' padding
    features = [f for f in spec["features"] if f["type"] != "behavior"]  # DeepFM does not read sequences
    for f in features:
        if f["type"] == "categorical":
            cols.append(SparseFeat(f["name"], f["vocab"] + (f["name"] in shifted), embedding_dim=hp["embedding_dim"]))
        elif f["type"] == "numerical":
            cols.append(DenseFeat(f["name"], 1))
        else:
            cols.append(VarLenSparseFeat(SparseFeat(f["name"], f["vocab"], embedding_dim=hp["embedding_dim"]),
                                         maxlen=f["max_len"], combiner="mean"))
    names = [f["name"] for f in features]
    x = {part: {n: parts[part][n] for n in names} for part in parts}
    for f in behaviors:
        # DeepCTR's DIN finds a target's history by the name "hist_<target>" and masks by a length column:
        # the sequence's items first, then its padding (a stable sort keeps their order)
        hist, length = "hist_" + f["target"], "hist_len_" + f["target"]
        cols.append(VarLenSparseFeat(SparseFeat(hist, f["vocab"], embedding_dim=hp["embedding_dim"],
                                                embedding_name=f["target"]), maxlen=f["max_len"], length_name=length))
        for part in parts:
            seq = parts[part][f["name"]]
            x[part][hist] = np.take_along_axis(seq, np.argsort(seq == 0, axis=1, kind="stable"), axis=1)
            x[part][length] = (seq != 0).sum(axis=1).astype(np.int64)
            x[part][f["target"]] = x[part][f["target"]] + 1
    names = list(x["train"])
    torch.manual_seed(seed)
    if model_name == "din":
        # DeepCTR-Torch's own DIN: Dice in the attention unit; its top MLP keeps the library's ReLU (its Dice
        # layer there is built for 3-D inputs)
        model = DIN(cols, [f["target"] for f in behaviors], dnn_hidden_units=tuple(hp["hidden_units"]),
                    att_hidden_size=tuple(hp.get("attention_units", [80, 40])),
                    att_weight_normalization=hp.get("attention_softmax", False),
                    l2_reg_embedding=hp["embedding_l2"] / 2, l2_reg_dnn=0, init_std=1e-4, seed=seed,
                    dnn_dropout=hp["dropout"], task="binary", device="cpu")
    else:
        model = DeepFM(cols, cols, dnn_hidden_units=tuple(hp["hidden_units"]), l2_reg_linear=hp["embedding_l2"] / 2,
                       l2_reg_embedding=hp["embedding_l2"] / 2, l2_reg_dnn=0, init_std=1e-4, seed=seed,
                       dnn_dropout=hp["dropout"], task="binary", device="cpu")
    model.compile("adam", "binary_crossentropy", metrics=["auc"])
    for g in model.optim.param_groups:
        g["lr"] = hp["learning_rate"]
    best, best_state, bad, train_time, epochs, history = -1.0, None, 0, 0.0, 0, []
    for _ in range(hp["epochs"]):
        t = time.perf_counter()
        model.fit(x["train"], parts["train"]["label"], batch_size=hp["batch_size"], epochs=1, verbose=0)
        train_time += time.perf_counter() - t
        epochs += 1
        auc = roc_auc_score(parts["valid"]["label"], model.predict(x["valid"], 8192).reshape(-1))
        history.append({"epoch": epochs, "auc": float(auc)})
        if auc > best + 1e-6:
            best, best_state, bad = auc, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            for g in model.optim.param_groups:
                g["lr"] = max(1e-6, g["lr"] * 0.1)
            if bad >= hp["patience"]:
                break
    model.load_state_dict(best_state)
    p = model.predict(x["test"], 8192).reshape(-1)
    return p, epochs, len(parts["train"]["label"]) * epochs / train_time, history


def main() -> None:
    split, spec_path, lib, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    model_name = sys.argv[5] if len(sys.argv) > 5 else "deepfm"
    if lib == "deepctr" and model_name not in ("deepfm", "din"):
        raise SystemExit(f"deepctr: only deepfm and din are wired here, not {model_name}")
    spec = json.loads(open(spec_path).read())
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    parts = load(split)
    p, epochs, sps, history = (run_fuxictr if lib == "fuxictr" else run_deepctr)(parts, spec, seed, model_name)
    y = parts["test"]["label"]
    print(json.dumps({"library": lib, "model": model_name, "seed": seed, "auc": float(roc_auc_score(y, p)),
                      "logloss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7))), "epochs": epochs,
                      "train_samples_per_second": sps, "history": history,
                      "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
