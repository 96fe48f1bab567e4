#!/usr/bin/python3
"""Side-by-side timing of `reid eval` / `reid cluster` against Python references on the same input.

    bench_eval.py REID_BINARY WORK_DIR [--quick]

Generates seeded random features with identity structure (Market-1501 sizes: 3,368 queries x
15,913 gallery, 12,936 training crops; 512-d like OSNet), then times:
  - metrics: distances (one BLAS matmul) + torchreid-style eval_market1501 in numpy vs
    `reid eval --features-*` (its logged compute time: distances + metrics);
  - re-ranking: the dense reference re_ranking (numpy) vs `reid eval --rerank` at 1,000 x 5,000;
  - clustering: the reference compute_jaccard_distance algorithm (faiss CPU k-NN, dense float32
    V, inverted index) + sklearn DBSCAN vs `reid cluster`, and checks the labels agree.
Go timings are medians of 3 runs of the command's own logged compute time (the whole command,
with process start-up and .npy reading, is shown too). Python timings are single runs.
Prints one table.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import time

import faiss
import numpy as np
from sklearn.cluster import DBSCAN


def features(rng, n, dim, ids, signal):
    centres = np.random.default_rng(1234).normal(size=(ids + 1, dim))
    pids = rng.integers(1, ids + 1, size=n)
    cams = rng.integers(1, 7, size=n)
    x = rng.normal(size=(n, dim)) + signal * centres[pids]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), pids, cams


def save(work, name, x, pids, cams):
    np.save(os.path.join(work, name + ".npy"), x)
    with open(os.path.join(work, name + ".txt"), "w") as f:
        for i, (p, c) in enumerate(zip(pids, cams)):
            f.write("%04d_c%ds1_%06d_00.jpg\n" % (p, c, i))


def eval_market(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(distmat.shape[0]):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q]))
        raw = matches[q][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.where(raw == 1)[0].max()
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = raw.cumsum() / (np.arange(len(raw)) + 1.0)
        all_ap.append((precision * raw).sum() / raw.sum())
    cmc = np.asarray(all_cmc).astype(np.float32).mean(0)
    return {"mAP": float(np.mean(all_ap)), "rank1": float(cmc[0]), "mINP": float(np.mean(all_inp))}


def k_reciprocal(rank, i, k):
    forward = rank[i, :k + 1]
    backward = rank[forward, :k + 1]
    return forward[np.where(backward == i)[0]]


def reference_jaccard(x, k1=30, k2=6):
    n = len(x)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, rank = index.search(x, k1)
    nn_k1 = [k_reciprocal(rank, i, k1) for i in range(n)]
    nn_half = [k_reciprocal(rank, i, int(np.around(k1 / 2))) for i in range(n)]
    V = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        R = nn_k1[i]
        expanded = R
        for c in R:
            Rc = nn_half[c]
            if len(np.intersect1d(Rc, R)) > 2 / 3 * len(Rc):
                expanded = np.append(expanded, Rc)
        expanded = np.unique(expanded)
        logits = -(2 - 2 * x[i] @ x[expanded].T)
        w = np.exp(logits - logits.max())
        V[i, expanded] = w / w.sum()
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            V_qe[i] = V[rank[i, :k2]].mean(axis=0)
        V = V_qe
    inv = [np.where(V[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        temp = np.zeros(n, dtype=np.float32)
        nonzero = np.where(V[i] != 0)[0]
        for j in nonzero:
            temp[inv[j]] += np.minimum(V[i, j], V[inv[j], j])
        jaccard[i] = 1 - temp / (2 - temp)
    jaccard[jaccard < 0] = 0
    return jaccard


def rerank(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    original = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)], 0)
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(original / np.max(original, axis=0))
    V = np.zeros_like(original)
    rank = np.argsort(original).astype(np.int32)
    nq, n = q_g.shape[0], original.shape[0]
    for i in range(n):
        R = k_reciprocal(rank, i, k1)
        expanded = R
        for c in R:
            Rc = k_reciprocal(rank, c, int(np.around(k1 / 2)))
            if len(np.intersect1d(Rc, R)) > 2 / 3 * len(Rc):
                expanded = np.append(expanded, Rc)
        expanded = np.unique(expanded)
        w = np.exp(-original[i, expanded])
        V[i, expanded] = w / w.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(0) for i in range(n)])
    inv = [np.where(V[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros((nq, n), dtype=np.float32)
    for i in range(nq):
        temp = np.zeros(n, dtype=np.float32)
        for j in np.where(V[i] != 0)[0]:
            temp[inv[j]] += np.minimum(V[i, j], V[inv[j], j])
        jaccard[i] = 1 - temp / (2 - temp)
    return (jaccard * (1 - lam) + original[:nq] * lam)[:, nq:]


def go_duration(text):
    """Seconds of a Go time.Duration string such as 1m2.5s, 850ms or 12.3µs."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(v) * units[u] for v, u in re.findall(r"([0-9.]+)(h|ms|us|µs|ns|m|s)", text))


def go_median(cmd, runs=3):
    """Median wall time of the whole command and median of its own logged compute time (the
    last took= of its log, which leaves out process start-up and file reading)."""
    walls, computes, out = [], [], None
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(cmd + ["--log-level", "info"], check=True, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        computes.append(go_duration(re.findall(r"took=(\S+)", done.stderr)[-1]))
        out = done.stdout
    return statistics.median(computes), statistics.median(walls), out


def main():
    binary, work = sys.argv[1], sys.argv[2]
    quick = "--quick" in sys.argv
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(7)
    nq, ng, nt = (500, 3000, 3000) if quick else (3368, 15913, 12936)
    rows = []

    q, q_pids, q_cams = features(rng, nq, 512, 750, 0.35)
    g, g_pids, g_cams = features(rng, ng, 512, 750, 0.35)
    save(work, "Q", q, q_pids, q_cams)
    save(work, "G", g, g_pids, g_cams)
    start = time.perf_counter()
    dist = 2 - 2 * q @ g.T
    py_metrics = eval_market(dist, q_pids, g_pids, q_cams, g_cams)
    py_time = time.perf_counter() - start
    go_time, go_wall, out = go_median([binary, "eval", "--json",
                              "--features-query", os.path.join(work, "Q.npy"), "--features-gallery", os.path.join(work, "G.npy")])
    go_metrics = json.loads(out)
    agree = all(abs(go_metrics[k] - py_metrics[k]) < 1e-5 for k in py_metrics)
    rows.append(("metrics %dx%d" % (nq, ng), py_time, go_time, go_wall, "mAP %.4f, agree=%s" % (go_metrics["mAP"], agree)))

    rq, rg = (200, 1000) if quick else (1000, 5000)
    save(work, "RQ", q[:rq], q_pids[:rq], q_cams[:rq])
    save(work, "RG", g[:rg], g_pids[:rg], g_cams[:rg])
    start = time.perf_counter()
    qq, gg, qg = 2 - 2 * q[:rq] @ q[:rq].T, 2 - 2 * g[:rg] @ g[:rg].T, 2 - 2 * q[:rq] @ g[:rg].T
    reranked = rerank(qg, qq, gg)
    py_time = time.perf_counter() - start
    py_metrics = eval_market(reranked, q_pids[:rq], g_pids[:rg], q_cams[:rq], g_cams[:rg])
    go_time, go_wall, out = go_median([binary, "eval", "--json", "--rerank",
                              "--features-query", os.path.join(work, "RQ.npy"), "--features-gallery", os.path.join(work, "RG.npy")])
    go_metrics = json.loads(out)
    agree = all(abs(go_metrics[k] - py_metrics[k]) < 1e-4 for k in py_metrics)
    rows.append(("re-ranking %dx%d" % (rq, rg), py_time, go_time, go_wall, "mAP %.4f, agree=%s" % (go_metrics["mAP"], agree)))

    t, _, _ = features(rng, nt, 512, 750, 0.5)
    np.save(os.path.join(work, "T.npy"), t)
    start = time.perf_counter()
    jaccard = reference_jaccard(t)
    py_labels = DBSCAN(eps=0.6, min_samples=4, metric="precomputed", n_jobs=-1).fit_predict(jaccard)
    py_time = time.perf_counter() - start
    del jaccard
    labels_path = os.path.join(work, "labels.txt")
    go_time, go_wall, out = go_median([binary, "cluster", "--features", os.path.join(work, "T.npy"), "--out", labels_path])
    go_labels = np.loadtxt(labels_path, dtype=int)
    pairs = set(zip(go_labels.tolist(), py_labels.tolist()))
    same = len(pairs) == len(set(go_labels.tolist())) == len(set(py_labels.tolist()))
    clusters = len(set(go_labels.tolist()) - {-1})
    rows.append(("cluster N=%d" % nt, py_time, go_time, go_wall, "%d clusters, %.1f%% outliers, same partition=%s" % (
        clusters, 100 * np.mean(go_labels == -1), same)))

    print("| case | python reference s | reid compute s | python / reid | reid whole command s | check |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, py, go, wall, note in rows:
        print("| %s | %.2f | %.2f | %.1fx | %.2f | %s |" % (name, py, go, py / go, wall, note))


if __name__ == "__main__":
    main()
