"""faiss side of indexbench: the same vectors, queries and HNSW parameters, timed the same way.

usage: faiss_bench.py base.npy queries.npy M efConstruction efSearch threads [flat_only=1]
Prints one JSON object on stdout.
"""
import json
import resource
import sys
import time

import faiss
import numpy as np


def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def timed_single(index, queries, k=10):
    for q in queries[:20]:
        index.search(q[None, :], k)
    latencies, found = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = index.search(q[None, :], k)
        latencies.append(time.perf_counter() - start)
        found.append(ids[0])
    latencies = np.sort(np.array(latencies)) * 1000
    p = lambda f: float(latencies[min(len(latencies) - 1, int(f * len(latencies)))])
    return p(0.5), p(0.99), np.array(found)


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def main():
    base_path, query_path, m, ef_construction, ef_search, threads = sys.argv[1:7]
    flat_only = len(sys.argv) > 7 and sys.argv[7] == "1"
    m, ef_construction, ef_search, threads = int(m), int(ef_construction), int(ef_search), int(threads)
    faiss.omp_set_num_threads(threads)
    base = np.load(base_path, mmap_mode="r")
    queries = np.ascontiguousarray(np.load(query_path))
    dim = base.shape[1]
    out = {"threads": threads}

    before = rss_mib()
    flat = faiss.IndexFlatIP(dim)
    start = time.perf_counter()
    for i in range(0, base.shape[0], 100000):
        flat.add(np.ascontiguousarray(base[i:i + 100000]))
    build = time.perf_counter() - start
    p50, p99, truth = timed_single(flat, queries)
    out["flat"] = {"build_s": build, "rss_mib": rss_mib() - before, "p50_ms": p50, "p99_ms": p99, "recall_at_10": 1.0}
    del flat
    if flat_only:
        json.dump(out, sys.stdout)
        return

    before = rss_mib()
    hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(0, base.shape[0], 100000):
        hnsw.add(np.ascontiguousarray(base[i:i + 100000]))
    build, build_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    hnsw.hnsw.efSearch = ef_search
    p50, p99, found = timed_single(hnsw, queries)
    out["hnsw"] = {"build_s": build, "build_cpu_s": build_cpu, "rss_mib": rss_mib() - before, "p50_ms": p50, "p99_ms": p99, "recall_at_10": recall(found, truth)}
    out["sweep"] = []
    for ef in (32, 64, 128, 256):
        hnsw.hnsw.efSearch = ef
        p50, _, found = timed_single(hnsw, queries)
        out["sweep"].append({"ef_search": ef, "p50_ms": p50, "recall_at_10": recall(found, truth)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
