#!/usr/bin/python3
"""Plain dense reference for the Go cluster package's tests (run with Debian's python3).

    jaccard_reference.py FEATURES.npy K1 K2 EPS MIN_SAMPLES DIST_OUT.npy LABELS_OUT.txt

Jaccard distance written from the formula of Cluster Contrast's compute_jaccard_distance
(faiss IndexFlatL2 k-NN with k = k1, k-reciprocal sets, expansion with round(k1/2) sets that
overlap more than 2/3, softmax of -(2 - 2cos) over the expanded set, local query expansion over
the first k2 neighbours, d = 1 - s/(2 - s), negatives clipped to 0) as a dense N x N matrix, then
sklearn DBSCAN(metric="precomputed").
"""
import sys

import faiss
import numpy as np
from sklearn.cluster import DBSCAN


def k_reciprocal(rank, i, k):
    forward = rank[i, :k + 1]
    backward = rank[forward, :k + 1]
    return forward[np.any(backward == i, axis=1)]


def jaccard(features, k1, k2):
    x = features.astype(np.float32)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, rank = index.search(x, k1)
    half = int(np.around(k1 / 2))
    x64 = x.astype(np.float64)
    V = np.zeros((n, n))
    for i in range(n):
        R = k_reciprocal(rank, i, k1)
        expanded = list(R)
        for c in R:
            Rc = k_reciprocal(rank, c, half)
            if len(np.intersect1d(Rc, R)) > 2 / 3 * len(Rc):
                expanded.extend(Rc)
        expanded = np.unique(expanded)
        logits = -(2 - 2 * x64[i] @ x64[expanded].T)
        weights = np.exp(logits - logits.max())
        V[i, expanded] = weights / weights.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    dist = np.zeros((n, n))
    for i in range(n):
        s = np.minimum(V[i][None, :], V).sum(axis=1)
        dist[i] = 1 - s / (2 - s)
    dist[dist < 0] = 0
    return dist


def main():
    features = np.load(sys.argv[1])
    k1, k2, eps, min_samples = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    dist = jaccard(features, k1, k2)
    np.save(sys.argv[6], dist)
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed", n_jobs=1).fit_predict(dist)
    np.savetxt(sys.argv[7], labels, fmt="%d")
    # How close the decision came: pairs within 1e-6 of eps could flip on rounding alone.
    print(int(np.sum(np.abs(dist - eps) < 1e-6)))


if __name__ == "__main__":
    main()
