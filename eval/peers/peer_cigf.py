"""The CIGF authors' released code (MC-CV/CIGF, TensorFlow 1.14) as a peer on llmrec's multi-behaviour split
(issue 37; docs/methods/cigf.md). Runs in `.venv-cigf` (Python 3.7, `make peers-code`); their checkout is
never edited.

    peer_cigf.py SPLIT.npz OUT.npz CHECKOUT SEED MODEL MAX_EPOCHS

SPLIT.npz (written by ``llmrec.experiments.harness.run_graph_paper_code``): every training edge (user row,
item index >= 1, behaviour index; the last behaviour is the target), the validation users with their gold
and excluded items, and one test item per user (their ``tst_int``: their own 1 + 99 log reads it; the
figures compared are computed by llmrec from the scores this writes).

The shims, all on this side:
- data: their loader reads hard-coded data set names from ``./Datasets/<name>/``; three behaviours are
  written as their ``beibei`` (pv, cart, buy), four as ``tmall`` (pv, fav, cart, buy), each ``trn_<beh>``
  a pickled user x item CSR matrix (items shifted to start at 0), in a scratch working directory that holds
  links to their code;
- schedule: their ``run()`` trains a fixed number of epochs and logs the test set every 3; here their
  ``trainEpoch()`` runs up to MAX_EPOCHS and every ``EVAL_EVERY`` epochs the full ranking of the validation
  users is scored (NDCG@10, the training target items excluded) and the best epoch's scores kept, stopping
  after ``PATIENCE`` evaluations without a gain (llmrec's graph models are selected on validation too);
- seeds: ``numpy.random.seed`` and ``tf.set_random_seed`` (their code sets none); threads: the session's
  intra-op pool is ``LLMREC_THREADS`` (their session takes every core).
MODEL ``cigf``: their defaults (multi-graph LightGCN encoder, SESG decoder, x300 logits, L2 1e-2, 40 sampled
pairs per user and behaviour, lr 1e-3 decayed 0.96 every trnNum // batch steps). MODEL ``lightgcn``: their
framework on the target behaviour alone (every behaviour file is the target's matrix, ``--multi_graph ''``
(their argparse reads any non-empty string as True), ``--decoder bilinear``).
OUT.npz: ``scores`` [users, items] (column 0, padding, is -inf), ``best_epoch``, ``epochs``,
``train_seconds``, ``valid_ndcg10`` (per evaluation), ``their_test_hr``/``their_test_ndcg`` (their own
testEpoch on the best model: 1 + 99, negatives their sampler draws)."""
import os
import pickle
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

EVAL_EVERY = 10
PATIENCE = 5
NAMES = {3: ("beibei", "beibei", ["pv", "cart", "buy"]), 4: ("tmall", "Tmall", ["pv", "fav", "cart", "buy"])}
CODE = ["DataHandler.py", "Params.py", "Utils", "print_hook.py", "base_framework_origin_final.py"]


def write_data(split, model, folder):
    """Their ``Datasets/<name>/`` files for the split; returns their data set name."""
    n_beh = int(split["behaviours"])
    if n_beh not in NAMES:
        raise SystemExit("peer cigf: their loader knows 3 behaviours (beibei) or 4 (tmall), not %d" % n_beh)
    name, sub, behs = NAMES[n_beh]
    users, items, beh = split["train_users"], split["train_items"] - 1, split["train_behaviours"]
    shape = (int(split["n_users"]), int(split["n_items"]) - 1)
    path = os.path.join(folder, "Datasets", sub)
    os.makedirs(path)
    target = beh == n_beh - 1
    for b, bname in enumerate(behs):
        rows = target if model == "lightgcn" else beh == b
        mat = sp.csr_matrix((np.ones(int(rows.sum()), np.float32), (users[rows], items[rows])), shape=shape)
        with open(os.path.join(path, "trn_" + bname), "wb") as f:
            pickle.dump(mat, f)
    tst = np.array([None] * shape[0], dtype=object)
    first = split["test_first"]
    for u in np.flatnonzero(first > 0):
        tst[u] = int(first[u]) - 1
    with open(os.path.join(path, "tst_int"), "wb") as f:
        pickle.dump(tst, f)
    return name


def ndcg10(scores, gold_ptr, gold, seen_ptr, seen, users):
    """Mean NDCG@10 of the full ranking (the excluded items and padding removed) over ``users``."""
    total = 0.0
    for r, u in enumerate(users):
        s = scores[u].copy()
        s[0] = -np.inf
        s[seen[seen_ptr[r]:seen_ptr[r + 1]]] = -np.inf
        g = set(gold[gold_ptr[r]:gold_ptr[r + 1]].tolist())
        top = np.argsort(-s, kind="stable")[:10]
        dcg = sum(1.0 / np.log2(i + 2) for i, x in enumerate(top) if int(x) in g)
        idcg = sum(1.0 / np.log2(i + 2) for i in range(min(10, len(g))))
        total += dcg / idcg
    return total / max(1, len(users))


def all_scores(sess, recom, n_users, n_items, tf_outputs):
    """Every user's score for every item through their target prediction (item 0 of ours = padding)."""
    out = np.full((n_users, n_items), -np.inf, dtype=np.float32)
    items = np.arange(n_items - 1)
    for st in range(0, n_users, 64):
        us = np.arange(st, min(n_users, st + 64))
        feed = {recom.uids[-1]: np.repeat(us, len(items)), recom.iids[-1]: np.tile(items, len(us))}
        out[us, 1:] = sess.run(tf_outputs, feed_dict=feed).reshape(len(us), len(items))
    return out


def main():
    split_path, out_path, checkout, seed, model, max_epochs = sys.argv[1:7]
    seed, max_epochs = int(seed), int(max_epochs)
    if model not in ("cigf", "lightgcn"):
        raise SystemExit("peer cigf: model is cigf or lightgcn, not %r" % model)
    split = dict(np.load(split_path))
    work = tempfile.mkdtemp(prefix="cigf_")
    name = write_data(split, model, work)
    for f in CODE:
        os.symlink(os.path.join(os.path.abspath(checkout), f), os.path.join(work, f))
    for d in ("History", "Models"):
        os.makedirs(os.path.join(work, d))
    os.chdir(work)
    sys.path.insert(0, work)
    sys.argv = ["base_framework_origin_final.py", "--data", name]
    if model == "lightgcn":
        sys.argv += ["--multi_graph", "", "--decoder", "bilinear"]
    import tensorflow as tf
    np.random.seed(seed)
    tf.set_random_seed(seed)
    import base_framework_origin_final as their  # their Params parses sys.argv on import
    args = their.args
    handler = their.DataHandler()
    handler.LoadData()
    threads = int(os.environ.get("LLMREC_THREADS", "1"))
    config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    n_users, n_items = int(split["n_users"]), int(split["n_items"])
    vu, gp, g, sptr, s = (split["valid_users"], split["valid_gold_ptr"], split["valid_gold"],
                          split["valid_seen_ptr"], split["valid_seen"])
    with tf.Session(config=config) as sess:
        recom = their.Recommender(sess, handler)
        recom.prepareModel()
        sess.run(tf.global_variables_initializer())
        best, best_scores, best_epoch, since, history, train_seconds, ep = -1.0, None, 0, 0, [], 0.0, 0
        for ep in range(1, max_epochs + 1):
            t0 = time.time()
            recom.trainEpoch()
            train_seconds += time.time() - t0
            if ep % EVAL_EVERY and ep != max_epochs:
                continue
            scores = all_scores(sess, recom, n_users, n_items, recom.targetPreds)
            v = ndcg10(scores, gp, g, sptr, s, vu)
            history.append(v)
            print("epoch %d valid ndcg@10 %.4f (%.1f s training)" % (ep, v, train_seconds), flush=True)
            if v > best:
                best, best_scores, best_epoch, since = v, scores, ep, 0
                their_test = recom.testEpoch() if len(handler.tstUsrs) else {"HR": float("nan"), "NDCG": float("nan")}
            else:
                since += 1
                if since >= PATIENCE:
                    break
    np.savez(out_path, scores=best_scores, best_epoch=best_epoch, epochs=ep, train_seconds=train_seconds,
             valid_ndcg10=np.array(history), their_test_hr=their_test["HR"], their_test_ndcg=their_test["NDCG"],
             latdim=args.latdim, layers=args.gnn_layer)


if __name__ == "__main__":
    main()
