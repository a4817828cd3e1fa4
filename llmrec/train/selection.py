"""Field selection for CTR models (ERASE, Jia et al., KDD 2024; papers.md §15): eleven ways to rank a data
set's fields behind one protocol. The retrain-on-the-top-k evaluation and its AUKC curve are the
``ctr_select`` experiment kind (``llmrec select``).

A selector maps a ``SelectionInput`` (the fitted encoder, the train / validation batches, a factory of fresh
backbones, the trainer) to one importance score per embedded field, higher = kept first
(``FeatureEncoder.embedded_fields`` order). ``rank_fields`` turns scores into a ranking (ties keep field order).

| family      | name          | a field's score                                                                   |
|-------------|---------------|-----------------------------------------------------------------------------------|
| shallow     | `lasso`       | L1 logistic-regression path over 12 strengths: at how many the field's coefficient is nonzero (ties: abs coef at the weakest) |
|             | `gbdt`        | scikit-learn gradient-boosted trees, impurity importance                          |
|             | `rf`          | scikit-learn random forest, impurity importance                                   |
|             | `xgboost`     | XGBoost total gain                                                                |
| gate        | `autofield`   | a keep / drop Gumbel-softmax gate per field, trained with the backbone: keep probability |
|             | `adafs`       | a controller MLP over the field embeddings re-weights the fields of each row (softmax x F): mean weight on validation |
|             | `optfs`       | a gate per feature value (per embedding row; per field for other types), sigmoid(beta c) with beta annealed up, L1 on the gates: mean gate on validation |
|             | `lpfs`        | a smoothed-l0 gate x^2 / (x^2 + eps) per field, eps annealed down, L1 on the gates: abs x |
| sensitivity | `permutation` | validation AUC drop when the field's column is shuffled across rows (trained backbone) |
|             | `shark`       | abs(sum over rows and dims of dL/de_f * (mean(e_f) - e_f)) on training rows (trained backbone) |
|             | `sfs`         | sum over batches of abs(dL/dm_f) for an all-ones field mask m at initialization (SNIP) |
| control     | `random`      | a seeded random order                                                             |

Shallow methods see one column per field, from a sample of the training rows: a categorical field is its
value's out-of-fold target encoding (``folds`` folds, smoothed towards the click rate with weight
``smoothing``), a multi-hot field the mean encoding of its tokens, a numerical field its standardized value,
a dense vector the out-of-fold prediction of a logistic regression on it.

Gates act on the output of the backbone's field-embedding layers of width > 1 (a first-order term, as in
DeepFM, is not gated; the default backbone is a DNN). Gate parameters train jointly with the backbone
(single-level, one optimizer; AutoField's and AdaFS's bi-level schemes are not reproduced) and are scaled by
``gate_scale`` so that Adam moves them ``gate_scale`` times faster than the backbone."""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import l1_min_c

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import FieldEmbedding
from llmrec.errors import ConfigError
from llmrec.metrics import auc
from llmrec.registry import Registry
from llmrec.train.loop import Trainer


class SelectorConfig(StrictConfig):
    """Knobs of the selectors (each reads its own)."""
    shallow_rows: int = Field(50_000, ge=100)  # shallow: training rows sampled for the tabular view
    folds: int = Field(5, ge=2)  # shallow: out-of-fold target encoding
    smoothing: float = Field(20.0, ge=0)  # shallow: weight of the prior click rate in a value's encoding
    trees: int = Field(100, ge=1)  # gbdt / rf / xgboost
    gate_scale: float = Field(10.0, gt=0)  # gates: learning-rate multiplier of the gate parameters
    gate_penalty: float = Field(1e-3, ge=0)  # optfs / lpfs: L1 weight on the gates
    anneal_steps: int = Field(400, ge=1)  # optfs / lpfs: steps over which beta grows / eps shrinks
    sample_rows: int = Field(20_000, ge=100)  # shark / sfs: training rows the gradients are taken on
    repeats: int = Field(2, ge=1)  # permutation: shuffles per field


class FieldSelection(StrictConfig):
    """Field selection as an option of a training job (``selection:``): ``selector`` ranks the job's embedded
    fields with ``backbone`` (a model trained on every field, for the selectors that need one), and the job
    then trains on the ``k`` best (fields that are not embedded, such as behaviour sequences, stay)."""
    selector: str
    k: int = Field(ge=1)
    backbone: dict = {"name": "dnn", "embedding_dim": 8}
    config: SelectorConfig = SelectorConfig()


class SelectionInput:
    """What a selector may use. ``trained`` (a backbone fitted with early stopping) is computed once and shared
    by the selectors that need it."""

    def __init__(self, encoder: FeatureEncoder, train: Batch, valid: Batch, build: Callable[[], nn.Module],
                 trainer: Trainer, seed: int) -> None:
        if train.label is None or valid.label is None:
            raise ConfigError("train.label / valid.label: field selection needs labels")
        self.encoder, self.train, self.valid = encoder, train, valid
        self.build, self.trainer, self.seed = build, trainer, seed
        self.fields = encoder.embedded_fields
        if not self.fields:
            raise ConfigError("features: no embedded field to select from")

    @functools.cached_property
    def trained(self) -> nn.Module:
        """A backbone trained on all fields (early stopping on validation)."""
        model = self.build()
        self.trainer.fit(model, self.train, self.valid)
        return model

    def rng(self, salt: int) -> np.random.Generator:
        """A generator seeded by the input's seed and ``salt`` (each selector its own stream)."""
        return np.random.default_rng([self.seed, salt])


Selector = Callable[[SelectionInput, SelectorConfig], np.ndarray]
SELECTORS: Registry[Selector] = Registry("field selector")


def rank_fields(fields: list[str], scores: np.ndarray) -> list[str]:
    """Fields by descending score (ties keep the given order)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(fields),) or not np.all(np.isfinite(scores)):
        raise ValueError(f"scores: need {len(fields)} finite scores, got {scores.tolist()}")
    return [fields[i] for i in np.argsort(-scores, kind="stable")]


def top_k(ranking: list[str], k: int) -> list[str]:
    """The first ``k`` fields of a ranking; asking for more fields than exist is a named error."""
    if not 1 <= k <= len(ranking):
        raise ConfigError(f"k: asked for {k} fields, the data has {len(ranking)} ({ranking})")
    return ranking[:k]


def select(name: str, data: SelectionInput, config: SelectorConfig | None = None) -> dict:
    """Run the selector ``name``: {"scores": {field: score}, "ranking": [fields]}."""
    scores = np.asarray(SELECTORS.get(name)(data, config or SelectorConfig()), dtype=np.float64)
    return {"scores": dict(zip(data.fields, scores.tolist())), "ranking": rank_fields(data.fields, scores)}


# ---------------------------------------------------------------- field columns of a batch

def field_slot(encoder: FeatureEncoder, name: str) -> tuple[str, int | str]:
    """Where field ``name`` lives in a ``Batch``: ("cat", column), ("num", column), ("seq", name) or
    ("dense", name)."""
    for kind, attr in (("categorical", "cat"), ("numerical", "num")):
        names = [s.name for s in encoder.of_type(kind)]
        if name in names:
            return attr, names.index(name)
    if name in [s.name for s in encoder.multi_hot]:
        return "seq", name
    if name in [s.name for s in encoder.dense]:
        return "dense", name
    raise ConfigError(f"field {name!r}: not an embedded field (have {encoder.embedded_fields})")


def permute_field(batch: Batch, encoder: FeatureEncoder, name: str, perm: torch.Tensor) -> Batch:
    """A copy of ``batch`` with field ``name``'s values moved between rows by ``perm`` (everything else kept)."""
    where, key = field_slot(encoder, name)
    out = Batch(cat=batch.cat.clone(), num=batch.num.clone(), num_bucket=batch.num_bucket.clone(),
                seq=dict(batch.seq), dense=dict(batch.dense), label=batch.label)
    if where == "cat":
        out.cat[:, key] = batch.cat[perm, key]
    elif where == "num":
        out.num[:, key] = batch.num[perm, key]
        out.num_bucket[:, key] = batch.num_bucket[perm, key]
    elif where == "seq":
        out.seq[key] = batch.seq[key][perm]
    else:
        out.dense[key] = batch.dense[key][perm]
    return out


def _target_encoding(ids: np.ndarray, y: np.ndarray, folds: np.ndarray, n_folds: int, m: float) -> np.ndarray:
    """Out-of-fold smoothed click rate of each row's id (ids: [N] or [N, L] with 0 = padding)."""
    prior = float(y.mean())
    flat = ids.reshape(len(ids), -1)
    size = int(flat.max()) + 1
    out = np.zeros(len(ids))
    for f in range(n_folds):
        fit, hold = folds != f, folds == f
        ids_fit, y_fit = flat[fit], np.repeat(y[fit], flat.shape[1])
        valid = ids_fit.ravel() > 0 if ids.ndim > 1 else np.ones(ids_fit.size, bool)
        s = np.bincount(ids_fit.ravel()[valid], weights=y_fit[valid], minlength=size)
        c = np.bincount(ids_fit.ravel()[valid], minlength=size)
        enc = np.where(c > 0, (s + m * prior) / np.maximum(c + m, 1e-12), prior)  # unseen in the fit folds: prior
        held = flat[hold]
        if ids.ndim > 1:  # mean over a row's tokens (padding excluded; a row without tokens gets the prior)
            mask = held > 0
            out[hold] = np.where(mask.any(1), (enc[held] * mask).sum(1) / np.maximum(mask.sum(1), 1), prior)
        else:
            out[hold] = enc[held[:, 0]]
    return out


def tabular(data: SelectionInput, config: SelectorConfig, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """(X [n, F] one column per field, y) from a sample of the training rows (see the module docstring)."""
    rng = data.rng(salt)
    n = len(data.train)
    rows = np.sort(rng.choice(n, size=min(n, config.shallow_rows), replace=False))
    b = data.train.slice(torch.from_numpy(rows))
    y = b.label.numpy().astype(np.float64)
    folds = rng.integers(0, config.folds, size=len(rows))
    cols = []
    for name in data.fields:
        where, key = field_slot(data.encoder, name)
        if where == "cat":
            cols.append(_target_encoding(b.cat[:, key].numpy(), y, folds, config.folds, config.smoothing))
        elif where == "num":
            cols.append(b.num[:, key].numpy().astype(np.float64))
        elif where == "seq":
            cols.append(_target_encoding(b.seq[key].numpy(), y, folds, config.folds, config.smoothing))
        else:
            x, col = b.dense[key].numpy(), np.zeros(len(rows))
            for f in range(config.folds):
                fit = folds != f
                lr = LogisticRegression(max_iter=200).fit(x[fit], y[fit])
                col[~fit] = lr.predict_proba(x[~fit])[:, 1]
            cols.append(col)
    return np.stack(cols, 1), y


# ---------------------------------------------------------------- shallow selectors

@SELECTORS.register("lasso")
def lasso(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """L1 logistic-regression path on standardized field columns."""
    x, y = tabular(data, config, salt=1)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    nonzero, last = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for c in l1_min_c(x, y, loss="log") * np.logspace(0, 3, 12):
        coef = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=float(c), random_state=data.seed,
                                  max_iter=500).fit(x, y).coef_[0]
        nonzero += np.abs(coef) > 1e-10
        last = np.abs(coef)
    return nonzero + last / (1.0 + last.max())


@SELECTORS.register("gbdt")
def gbdt(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Impurity importance of scikit-learn's gradient-boosted trees (depth 3, subsample 0.8)."""
    x, y = tabular(data, config, salt=2)
    model = GradientBoostingClassifier(n_estimators=config.trees, max_depth=3, subsample=0.8,
                                       random_state=data.seed).fit(x, y)
    return model.feature_importances_


@SELECTORS.register("rf")
def random_forest(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Impurity importance of a scikit-learn random forest (depth 10, leaves of >= 20 rows)."""
    x, y = tabular(data, config, salt=3)
    model = RandomForestClassifier(n_estimators=config.trees, max_depth=10, min_samples_leaf=20,
                                   random_state=data.seed, n_jobs=1).fit(x, y)
    return model.feature_importances_


@SELECTORS.register("xgboost")
def xgboost_gain(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Total split gain per field of an XGBoost model (depth 4, learning rate 0.1, hist)."""
    import xgboost  # an optional dependency until used

    x, y = tabular(data, config, salt=4)
    model = xgboost.XGBClassifier(n_estimators=config.trees, max_depth=4, learning_rate=0.1, tree_method="hist",
                                  n_jobs=1, random_state=data.seed).fit(x, y)
    gain = model.get_booster().get_score(importance_type="total_gain")
    return np.array([gain.get(f"f{i}", 0.0) for i in range(x.shape[1])])


# ---------------------------------------------------------------- gates

class FieldGate(nn.Module):
    """A gate over the stacked field embeddings: ``forward(emb [B, F, d], batch) -> weights [B, F]``; ``penalty``
    is its regularizer on the last forward; ``steps`` counts training forwards (for annealing)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        self.last: torch.Tensor | None = None

    def tick(self) -> None:
        """Count a training forward."""
        if self.training:
            self.steps += 1

    def penalty(self) -> torch.Tensor:
        """The gate's regularizer (none by default)."""
        return torch.zeros(())


def field_layers(model: nn.Module) -> list[FieldEmbedding]:
    """The model's stacked field-embedding layers of width > 1 (a first-order term's width-1 layer left out);
    a model without one is a named error."""
    layers = [m for m in model.modules() if isinstance(m, FieldEmbedding) and m.dim > 1]
    if not layers:
        raise ConfigError("backbone: the model has no field-embedding layer")
    return layers


class GatedModel(nn.Module):
    """A backbone whose field embeddings (layers of width > 1) are multiplied by a gate's weights; the trainer
    adds the gate's penalty (``auxiliary_loss``)."""

    def __init__(self, backbone: nn.Module, gate: FieldGate) -> None:
        super().__init__()
        self.backbone, self.gate = backbone, gate
        self.record: list[torch.Tensor] | None = None  # set to a list to collect the weights of eval forwards
        for m in field_layers(backbone):
            m.register_forward_hook(self._gate_hook)

    def _gate_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        w = self.gate(output, inputs[0])
        if w.ndim == 1:
            w = w.expand(output.shape[0], -1)
        if self.record is not None:
            self.record.append(w.detach())
        return output * w.unsqueeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.backbone(batch)

    def embedding_tables(self) -> list[torch.Tensor]:
        """The backbone's embedding tables (the trainer's L2 applies to them)."""
        return self.backbone.embedding_tables() if hasattr(self.backbone, "embedding_tables") else []

    def auxiliary_loss(self) -> torch.Tensor:
        """The gate's penalty on the last forward."""
        return self.gate.penalty()

    @torch.no_grad()
    def mean_weights(self, data: Batch, batch_size: int = 4096) -> np.ndarray:
        """Each field's gate weight averaged over the rows of ``data`` (eval mode)."""
        self.eval()
        self.record = []
        try:
            for i in range(0, len(data), batch_size):
                self.backbone(data.slice(torch.arange(i, min(len(data), i + batch_size))))
            return torch.cat(self.record).mean(0).cpu().numpy().astype(np.float64)
        finally:
            self.record = None


class AutoFieldGate(FieldGate):
    """A (keep, drop) logit pair per field; training samples a Gumbel-softmax keep weight per row."""

    def __init__(self, n_fields: int, scale: float, tau: float = 1.0) -> None:
        super().__init__()
        self.raw, self.scale, self.tau = nn.Parameter(torch.zeros(n_fields, 2)), scale, tau

    def keep(self) -> torch.Tensor:
        """Each field's keep probability."""
        return torch.softmax(self.raw * self.scale, -1)[:, 0]

    def forward(self, emb: torch.Tensor, batch: Batch) -> torch.Tensor:
        self.tick()
        if not self.training:
            return self.keep()
        logits = (self.raw * self.scale).expand(emb.shape[0], -1, -1)
        return F.gumbel_softmax(logits, tau=self.tau, hard=False)[..., 0]


class AdaFSGate(FieldGate):
    """A controller MLP over the row's field embeddings: softmax weights over fields, times F (mean 1). Its
    output layer starts at zero, so every field starts at weight 1 (a field weighted near 0 from the start
    would get no gradient and could never prove useful)."""

    def __init__(self, n_fields: int, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(n_fields * dim), nn.Linear(n_fields * dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_fields))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, emb: torch.Tensor, batch: Batch) -> torch.Tensor:
        self.tick()
        return torch.softmax(self.net(emb.flatten(1)), -1) * emb.shape[1]


class OptFSGate(FieldGate):
    """A gate per categorical embedding row (per field for the other field types): sigmoid(beta c), beta
    growing from 1 to ``beta_max`` over ``anneal`` steps; L1 on the gates of the batch."""

    def __init__(self, encoder: FeatureEncoder, scale: float, penalty: float, anneal: int,
                 beta_max: float = 100.0, init: float = 0.5) -> None:
        super().__init__()
        n_cat, n_all = len(encoder.categorical), len(encoder.embedded_fields)
        self.row = nn.Parameter(torch.full((max(1, encoder.n_categorical_rows()),), init / scale))
        self.field = nn.Parameter(torch.full((n_all - n_cat,), init / scale))
        self.scale, self.weight, self.anneal, self.beta_max, self.n_cat = scale, penalty, anneal, beta_max, n_cat

    def beta(self) -> float:
        """The temperature now: beta_max ** (steps / anneal), capped."""
        return self.beta_max ** min(1.0, self.steps / self.anneal)

    def forward(self, emb: torch.Tensor, batch: Batch) -> torch.Tensor:
        self.tick()
        b = self.beta()
        parts = [torch.sigmoid(b * self.row[batch.cat] * self.scale)] if self.n_cat else []
        if len(self.field):
            parts.append(torch.sigmoid(b * self.field * self.scale).expand(emb.shape[0], -1))
        self.last = torch.cat(parts, 1)
        return self.last

    def penalty(self) -> torch.Tensor:
        """L1 on the gates of the last training batch (mean over rows of their sum over fields)."""
        return self.weight * self.last.sum(1).mean() if self.training and self.last is not None else torch.zeros(())


class LPFSGate(FieldGate):
    """Smoothed l0 gate per field, x^2 / (x^2 + eps), eps from 0.1 down to 1e-5 over ``anneal`` steps; L1 on
    the gates."""

    def __init__(self, n_fields: int, scale: float, penalty: float, anneal: int) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.full((n_fields,), 1.0 / scale))
        self.scale, self.weight, self.anneal = scale, penalty, anneal

    def x(self) -> torch.Tensor:
        """The gate parameters."""
        return self.raw * self.scale

    def forward(self, emb: torch.Tensor, batch: Batch) -> torch.Tensor:
        self.tick()
        eps = 0.1 * (1e-4 ** min(1.0, self.steps / self.anneal))
        x2 = self.x().pow(2)
        self.last = x2 / (x2 + eps)
        return self.last

    def penalty(self) -> torch.Tensor:
        """L1 on the field gates of the last training forward."""
        return self.weight * self.last.sum() if self.training and self.last is not None else torch.zeros(())


def _gated(data: SelectionInput, gate: FieldGate) -> GatedModel:
    model = GatedModel(data.build(), gate)
    data.trainer.fit(model, data.train, data.valid)
    return model


def _dim(data: SelectionInput) -> int:
    return field_layers(data.build())[0].dim


@SELECTORS.register("autofield")
def autofield(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Keep probability of a Gumbel-softmax gate per field."""
    model = _gated(data, AutoFieldGate(len(data.fields), config.gate_scale))
    return model.gate.keep().detach().cpu().numpy().astype(np.float64)


@SELECTORS.register("adafs")
def adafs(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Mean controller weight per field on the validation rows."""
    model = _gated(data, AdaFSGate(len(data.fields), _dim(data)))
    return model.mean_weights(data.valid)


@SELECTORS.register("optfs")
def optfs(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Mean feature-value gate per field on the validation rows."""
    gate = OptFSGate(data.encoder, config.gate_scale, config.gate_penalty, config.anneal_steps)
    return _gated(data, gate).mean_weights(data.valid)


@SELECTORS.register("lpfs")
def lpfs(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Absolute smoothed-l0 gate parameter per field."""
    model = _gated(data, LPFSGate(len(data.fields), config.gate_scale, config.gate_penalty, config.anneal_steps))
    return model.gate.x().abs().detach().cpu().numpy().astype(np.float64)


# ---------------------------------------------------------------- sensitivity

@SELECTORS.register("permutation")
def permutation(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Validation AUC drop when a field is shuffled across rows (mean over ``repeats`` shuffles)."""
    model, y = data.trained, data.valid.label.numpy()
    base = auc(y, data.trainer.predict(model, data.valid))
    gen = torch.Generator().manual_seed(data.seed)
    drops = np.zeros(len(data.fields))
    for i, name in enumerate(data.fields):
        for _ in range(config.repeats):
            perm = torch.randperm(len(data.valid), generator=gen)
            shuffled = permute_field(data.valid, data.encoder, name, perm)
            drops[i] += (base - auc(y, data.trainer.predict(model, shuffled))) / config.repeats
    return drops


class _Capture:
    """Forward hook keeping the stacked field embeddings (with their gradient) of the last forward, optionally
    multiplied by a mask."""

    def __init__(self, model: nn.Module, mask: torch.Tensor | None = None) -> None:
        self.mask, self.out = mask, []
        self.handles = [m.register_forward_hook(self) for m in field_layers(model)]

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            output = output * self.mask.view(1, -1, 1)
        if output.requires_grad:
            output.retain_grad()
        self.out.append(output)
        return output

    def remove(self) -> None:
        """Detach the hooks."""
        for h in self.handles:
            h.remove()


def _sample_batches(data: SelectionInput, config: SelectorConfig, salt: int, size: int = 1024):
    rows = torch.from_numpy(data.rng(salt).permutation(len(data.train))[:config.sample_rows])
    return [data.train.slice(rows[i: i + size]) for i in range(0, len(rows), size)]


@SELECTORS.register("shark")
def shark(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """First-order Taylor estimate of the loss change when a field's embedding is replaced by its mean."""
    model = data.trained
    model.eval()
    batches = _sample_batches(data, config, salt=5)
    cap = _Capture(model)
    try:
        with torch.no_grad():  # each embedding layer's mean field vectors over the sampled rows
            sums: list[torch.Tensor] = []
            for b in batches:
                cap.out.clear()
                model(b)
                sums = [e.sum(0) + (sums[j] if sums else 0) for j, e in enumerate(cap.out)]
            means = [t / sum(len(b) for b in batches) for t in sums]
        score = torch.zeros(len(data.fields), dtype=torch.float64)
        for b in batches:
            cap.out.clear()
            loss = F.binary_cross_entropy_with_logits(model(b).float(), b.label, reduction="sum")
            model.zero_grad(set_to_none=True)
            loss.backward()
            for e, mean in zip(cap.out, means):
                score += (e.grad * (mean - e.detach())).sum((0, 2)).double()
    finally:
        cap.remove()
        model.zero_grad(set_to_none=True)
    return score.abs().numpy()


@SELECTORS.register("sfs")
def sfs(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """Connection sensitivity of an all-ones field mask at initialization, summed over batches."""
    model = data.build()
    model.train()
    mask = torch.ones(len(data.fields), requires_grad=True)
    cap = _Capture(model, mask)
    score = np.zeros(len(data.fields))
    try:
        for b in _sample_batches(data, config, salt=6):
            loss = F.binary_cross_entropy_with_logits(model(b).float(), b.label)
            mask.grad = None
            loss.backward()
            score += mask.grad.abs().double().numpy()
            cap.out.clear()
    finally:
        cap.remove()
    return score


@SELECTORS.register("random")
def random_order(data: SelectionInput, config: SelectorConfig) -> np.ndarray:
    """A seeded random order (the control every selector must beat)."""
    return data.rng(7).permutation(len(data.fields)).astype(np.float64)
