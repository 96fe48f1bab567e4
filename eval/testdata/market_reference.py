#!/usr/bin/python3
"""Independent numpy/sklearn reference for the Go eval package's tests (run with Debian's python3).

    market_reference.py metrics DIST.npy LABELS.json       -> JSON metrics on stdout
    market_reference.py distances QF.npy GF.npy OUT.npy     -> squared Euclidean of unit features
    market_reference.py rerank QF.npy GF.npy K1 K2 LAMBDA OUT.npy

Market protocol: gallery items with the query's identity and camera are removed, as are junk
items (identity < 0); identity 0 stays as a negative; queries with identity <= 0 or without a
true match in another camera are skipped. The ranking is a stable argsort (ties by gallery index).
"""
import json
import sys

import numpy as np
from sklearn.metrics import average_precision_score


def market_metrics(dist, q_pids, q_cams, g_pids, g_cams, max_rank=50):
    aps, inps, cmcs, aps_sklearn = [], [], [], []
    for q in range(dist.shape[0]):
        if q_pids[q] <= 0:
            continue
        order = np.argsort(dist[q], kind="stable")
        pids, cams = g_pids[order], g_cams[order]
        keep = ~(((pids == q_pids[q]) & (cams == q_cams[q])) | (pids < 0))
        hits = (pids[keep] == q_pids[q]).astype(np.float64)
        if not hits.any():
            continue
        positions = np.flatnonzero(hits)  # 0-based ranks of the true matches
        cumulative = np.cumsum(hits)
        aps.append(np.mean(cumulative[positions] / (positions + 1.0)))
        inps.append(cumulative[positions[-1]] / (positions[-1] + 1.0))
        cmc = np.zeros(max_rank)
        if positions[0] < max_rank:
            cmc[positions[0]:] = 1
        cmcs.append(cmc)
        # sklearn's AP treats equal scores as one block, so it equals the rank-based AP only
        # without ties; the test uses it where distances are continuous.
        scores = -dist[q][order][keep]
        aps_sklearn.append(average_precision_score(hits, scores))
    cmc = np.mean(cmcs, axis=0)
    return {
        "mAP": float(np.mean(aps)), "rank1": float(cmc[0]), "rank5": float(cmc[4]),
        "rank10": float(cmc[9]), "mINP": float(np.mean(inps)),
        "mAP_sklearn": float(np.mean(aps_sklearn)), "queries": len(aps),
    }


def unit(x):
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def squared_distances(qf, gf):
    return 2.0 - 2.0 * unit(qf) @ unit(gf).T


def k_reciprocal(rank, i, size):
    forward = rank[i, :size]
    backward = rank[forward, :size]
    return forward[np.any(backward == i, axis=1)]


def rerank(qf, gf, k1, k2, lam):
    """Dense re-ranking (Zhong et al. 2017) as Cluster Contrast's evaluator calls it: input distances
    are 2 - 2cos, squared, each row divided by its maximum; full argsort of each row."""
    feats = unit(np.concatenate([qf, gf]))
    n, nq = len(feats), len(qf)
    original = (2.0 - 2.0 * feats @ feats.T) ** 2
    original = original / original.max(axis=1, keepdims=True)
    rank = np.argsort(original, axis=1, kind="stable")
    half = int(np.around(k1 / 2.0)) + 1
    V = np.zeros((n, n))
    for i in range(n):
        R = k_reciprocal(rank, i, k1 + 1)
        expanded = list(R)
        for c in R:
            Rc = k_reciprocal(rank, c, half)
            if len(np.intersect1d(Rc, R)) > 2.0 / 3 * len(Rc):
                expanded.extend(Rc)
        expanded = np.unique(expanded)
        weights = np.exp(-original[i, expanded])
        V[i, expanded] = weights / weights.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((nq, n))
    for i in range(nq):
        s = np.minimum(V[i][None, :], V).sum(axis=1)
        jaccard[i] = 1 - s / (2 - s)
    final = jaccard * (1 - lam) + original[:nq] * lam
    return final[:, nq:]


def main():
    mode = sys.argv[1]
    if mode == "metrics":
        dist = np.load(sys.argv[2]).astype(np.float64)
        with open(sys.argv[3]) as f:
            labels = json.load(f)
        arrays = [np.asarray(labels[k]) for k in ("q_pids", "q_cams", "g_pids", "g_cams")]
        json.dump(market_metrics(dist, *arrays), sys.stdout)
    elif mode == "distances":
        np.save(sys.argv[4], squared_distances(np.load(sys.argv[2]), np.load(sys.argv[3])).astype(np.float32))
    elif mode == "rerank":
        qf, gf = np.load(sys.argv[2]), np.load(sys.argv[3])
        k1, k2, lam = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
        np.save(sys.argv[7], rerank(qf, gf, k1, k2, lam))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
