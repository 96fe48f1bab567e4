// Command indexbench measures the embedded index on clustered 512-d vectors (build time, RSS,
// single-query latency, HNSW recall@10, restart time) and, in the same run on the same vectors
// and queries, Debian's python3-faiss IndexFlatIP and IndexHNSWFlat, then prints the ratios.
//
//	go run ./index/embedded/cmd/indexbench -n 100000 -work build/indexbench
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/index/embedded"
)

type settings struct {
	n, dim, queries, clusters, m, efConstruction, efSearch, threads int
	spread                                                          float64
	work, python                                                    string
	skipFaiss, skipHNSW                                             bool
}

func main() {
	var s settings
	flag.IntVar(&s.n, "n", 100000, "gallery size")
	flag.IntVar(&s.dim, "dim", 512, "vector dimension")
	flag.IntVar(&s.queries, "queries", 500, "single queries timed (and recall queries)")
	flag.IntVar(&s.clusters, "clusters", 0, "Gaussian clusters (default n/100: 100 crops per identity)")
	flag.Float64Var(&s.spread, "spread", 0.035, "per-value standard deviation around a cluster centre (cosine to the centre about 0.8)")
	flag.IntVar(&s.m, "m", 16, "HNSW M")
	flag.IntVar(&s.efConstruction, "ef-construction", 200, "HNSW efConstruction")
	flag.IntVar(&s.efSearch, "ef-search", 128, "HNSW efSearch")
	flag.IntVar(&s.threads, "threads", runtime.NumCPU(), "threads for both Go and faiss")
	flag.StringVar(&s.work, "work", "build/indexbench", "scratch directory (vectors, index files)")
	flag.StringVar(&s.python, "python", "/usr/bin/python3", "python with faiss")
	flag.BoolVar(&s.skipFaiss, "skip-faiss", false, "measure only the Go index")
	flag.BoolVar(&s.skipHNSW, "skip-hnsw", false, "measure only exact search (an HNSW build of 1M takes most of an hour on 2 cores)")
	flag.Parse()
	if s.clusters == 0 {
		s.clusters = max(1, s.n/100)
	}
	runtime.GOMAXPROCS(s.threads)
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(s); err != nil {
		fmt.Fprintln(os.Stderr, "indexbench:", err)
		os.Exit(1)
	}
}

// generate makes n gallery and q query vectors around shared cluster centres, normalised, from a
// fixed seed: the same flags always give the same vectors.
func generate(s settings) (base, queries []float32) {
	rng := rand.New(rand.NewPCG(2026, uint64(s.n)))
	centres := make([]float32, s.clusters*s.dim)
	for c := 0; c < s.clusters; c++ {
		normalise(fill(rng, centres[c*s.dim:(c+1)*s.dim], nil, 1))
	}
	point := func(out []float32) {
		c := rng.IntN(s.clusters)
		normalise(fill(rng, out, centres[c*s.dim:(c+1)*s.dim], s.spread))
	}
	base = make([]float32, s.n*s.dim)
	for i := 0; i < s.n; i++ {
		point(base[i*s.dim : (i+1)*s.dim])
	}
	queries = make([]float32, s.queries*s.dim)
	for i := 0; i < s.queries; i++ {
		point(queries[i*s.dim : (i+1)*s.dim])
	}
	return base, queries
}

func fill(rng *rand.Rand, out, centre []float32, sigma float64) []float32 {
	for i := range out {
		out[i] = float32(rng.NormFloat64() * sigma)
		if centre != nil {
			out[i] += centre[i]
		}
	}
	return out
}

func normalise(v []float32) {
	var norm float64
	for _, x := range v {
		norm += float64(x) * float64(x)
	}
	scale := float32(1 / math.Sqrt(norm))
	for i := range v {
		v[i] *= scale
	}
}

// writeNPY writes a float32 matrix in NumPy's .npy format (version 1.0).
func writeNPY(path string, data []float32, rows, cols int) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	defer file.Close()
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols)
	total := 10 + len(header) + 1
	header += strings.Repeat(" ", (64-total%64)%64) + "\n"
	out := bufio.NewWriterSize(file, 1<<20)
	out.WriteString("\x93NUMPY\x01\x00")
	binary.Write(out, binary.LittleEndian, uint16(len(header)))
	out.WriteString(header)
	buf := make([]byte, 4*cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			binary.LittleEndian.PutUint32(buf[4*c:], math.Float32bits(data[r*cols+c]))
		}
		out.Write(buf)
	}
	if err := out.Flush(); err != nil {
		return err
	}
	return file.Close()
}

type result struct {
	BuildSeconds   float64 `json:"build_s"`
	BuildCPU       float64 `json:"build_cpu_s"`
	RSSMiB         float64 `json:"rss_mib"`
	P50Millis      float64 `json:"p50_ms"`
	P99Millis      float64 `json:"p99_ms"`
	Recall         float64 `json:"recall_at_10"`
	RestartSeconds float64 `json:"restart_s"`
	SnapshotSecs   float64 `json:"snapshot_s"`
}

type sweepPoint struct {
	EfSearch  int     `json:"ef_search"`
	P50Millis float64 `json:"p50_ms"`
	Recall    float64 `json:"recall_at_10"`
}

type faissResult struct {
	Flat      result       `json:"flat"`
	HNSW      result       `json:"hnsw"`
	Sweep     []sweepPoint `json:"sweep"`
	Threads   int          `json:"threads"`
	BaseRSSMB float64      `json:"base_rss_mib"`
}

func rssMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuSeconds is the process's user+system CPU time: on a shared machine it shows the work done
// where wall time shows mostly the wait for a core.
func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
}

func percentile(durations []time.Duration, p float64) float64 {
	sorted := slices.Clone(durations)
	slices.Sort(sorted)
	return float64(sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Microseconds()) / 1000
}

func run(s settings) error {
	ctx := context.Background()
	if err := os.MkdirAll(s.work, 0o755); err != nil {
		return err
	}
	start := time.Now()
	base, queries := generate(s)
	fmt.Printf("generated %d x %d clustered vectors (%d clusters, spread %.3f) and %d queries in %.1fs\n",
		s.n, s.dim, s.clusters, s.spread, s.queries, time.Since(start).Seconds())
	basePath, queryPath := filepath.Join(s.work, "base.npy"), filepath.Join(s.work, "queries.npy")
	if err := writeNPY(basePath, base, s.n, s.dim); err != nil {
		return err
	}
	if err := writeNPY(queryPath, queries, s.queries, s.dim); err != nil {
		return err
	}
	queryVector := func(q int) []float32 { return queries[q*s.dim : (q+1)*s.dim] }

	measure := func(mode, precision string, truth [][]string) (result, [][]string, error) {
		var r result
		dir := filepath.Join(s.work, "index-"+mode+"-"+precision)
		os.RemoveAll(dir)
		options := embedded.Options{Mode: mode, Precision: precision, HNSWM: s.m, EfConstruction: s.efConstruction, EfSearch: s.efSearch, SyncWrites: true}
		runtime.GC()
		before := rssMiB()
		ix, err := embedded.Open(dir, options)
		if err != nil {
			return r, nil, err
		}
		if err := ix.CreateVersion(ctx, "bench", s.dim); err != nil {
			return r, nil, err
		}
		begin, cpuBegin := time.Now(), cpuSeconds()
		const batch = 1000
		items := make([]index.Item, 0, batch)
		t0 := time.Unix(1_700_000_000, 0)
		for i := 0; i < s.n; i++ {
			items = append(items, index.Item{ID: "crop-" + strconv.Itoa(i), Vector: base[i*s.dim : (i+1)*s.dim],
				Metadata: index.Metadata{Camera: "cam-" + strconv.Itoa(i%8), Time: t0.Add(time.Duration(i) * time.Second), Model: "bench"}})
			if len(items) == batch || i == s.n-1 {
				if err := ix.Upsert(ctx, "bench", items); err != nil {
					return r, nil, err
				}
				items = items[:0]
			}
		}
		r.BuildSeconds, r.BuildCPU = time.Since(begin).Seconds(), cpuSeconds()-cpuBegin
		runtime.GC()
		debug.FreeOSMemory()
		r.RSSMiB = rssMiB() - before
		// Warm up, then time single queries.
		for q := 0; q < min(20, s.queries); q++ {
			ix.Search(ctx, "bench", index.Query{Vectors: [][]float32{queryVector(q)}, K: 10})
		}
		latencies := make([]time.Duration, s.queries)
		found := make([][]string, s.queries)
		for q := 0; q < s.queries; q++ {
			t := time.Now()
			results, err := ix.Search(ctx, "bench", index.Query{Vectors: [][]float32{queryVector(q)}, K: 10})
			latencies[q] = time.Since(t)
			if err != nil {
				return r, nil, err
			}
			for _, match := range results[0] {
				found[q] = append(found[q], match.ID)
			}
		}
		r.P50Millis, r.P99Millis = percentile(latencies, 0.5), percentile(latencies, 0.99)
		if truth != nil {
			hits := 0
			for q := range found {
				for _, id := range found[q] {
					if slices.Contains(truth[q], id) {
						hits++
					}
				}
			}
			r.Recall = float64(hits) / float64(10*s.queries)
		} else {
			r.Recall = 1
		}
		begin = time.Now()
		if err := ix.Snapshot(ctx); err != nil {
			return r, nil, err
		}
		r.SnapshotSecs = time.Since(begin).Seconds()
		if err := ix.Close(); err != nil {
			return r, nil, err
		}
		ix = nil
		runtime.GC()
		begin = time.Now()
		reopened, err := embedded.Open(dir, options)
		if err != nil {
			return r, nil, err
		}
		r.RestartSeconds = time.Since(begin).Seconds()
		count, _ := reopened.Count(ctx, "bench")
		reopened.Close()
		if count != s.n {
			return r, nil, fmt.Errorf("%s: %d items after restart, want %d", mode, count, s.n)
		}
		if mode == "exact" || precision != "float32" {
			os.RemoveAll(dir)
		}
		runtime.GC()
		debug.FreeOSMemory()
		return r, found, nil
	}

	exact, truth, err := measure("exact", "float32", nil)
	if err != nil {
		return err
	}
	fmt.Printf("go exact: build %.1fs (cpu %.1fs)  rss %.0f MiB  p50 %.2f ms  p99 %.2f ms  snapshot %.1fs  restart %.1fs\n",
		exact.BuildSeconds, exact.BuildCPU, exact.RSSMiB, exact.P50Millis, exact.P99Millis, exact.SnapshotSecs, exact.RestartSeconds)
	// The same exact search over vectors kept in binary16, its top 10 against float32's.
	half, _, err := measure("exact", "float16", truth)
	if err != nil {
		return err
	}
	fmt.Printf("go exact float16: build %.1fs (cpu %.1fs)  rss %.0f MiB (%.2fx float32's)  p50 %.2f ms  p99 %.2f ms  recall@10 vs float32 %.4f  snapshot %.1fs  restart %.1fs\n",
		half.BuildSeconds, half.BuildCPU, half.RSSMiB, half.RSSMiB/exact.RSSMiB, half.P50Millis, half.P99Millis, half.Recall, half.SnapshotSecs, half.RestartSeconds)
	if s.skipHNSW {
		return compareExactOnly(s, exact, basePath, queryPath)
	}
	approx, _, err := measure("hnsw", "float32", truth)
	if err != nil {
		return err
	}
	fmt.Printf("go hnsw:  build %.1fs (cpu %.1fs)  rss %.0f MiB  p50 %.3f ms  p99 %.3f ms  recall@10 %.4f  snapshot %.1fs  restart %.1fs\n",
		approx.BuildSeconds, approx.BuildCPU, approx.RSSMiB, approx.P50Millis, approx.P99Millis, approx.Recall, approx.SnapshotSecs, approx.RestartSeconds)
	approxHalf, _, err := measure("hnsw", "float16", truth)
	if err != nil {
		return err
	}
	fmt.Printf("go hnsw float16:  build %.1fs (cpu %.1fs)  rss %.0f MiB (%.2fx float32's)  p50 %.3f ms  p99 %.3f ms  recall@10 %.4f  snapshot %.1fs  restart %.1fs\n",
		approxHalf.BuildSeconds, approxHalf.BuildCPU, approxHalf.RSSMiB, approxHalf.RSSMiB/approx.RSSMiB, approxHalf.P50Millis, approxHalf.P99Millis, approxHalf.Recall, approxHalf.SnapshotSecs, approxHalf.RestartSeconds)
	sweep, err := goSweep(s, filepath.Join(s.work, "index-hnsw-float32"), queries, truth)
	if err != nil {
		return err
	}
	if s.skipFaiss {
		for _, point := range sweep {
			fmt.Printf("go hnsw efSearch %d: p50 %.3f ms  recall@10 %.4f\n", point.EfSearch, point.P50Millis, point.Recall)
		}
		return nil
	}
	faiss, err := runFaiss(s, basePath, queryPath, false)
	if err != nil {
		return err
	}
	fmt.Printf("faiss flat: build %.1fs  rss %.0f MiB  p50 %.2f ms  p99 %.2f ms  (threads %d)\n",
		faiss.Flat.BuildSeconds, faiss.Flat.RSSMiB, faiss.Flat.P50Millis, faiss.Flat.P99Millis, faiss.Threads)
	fmt.Printf("faiss hnsw: build %.1fs (cpu %.1fs)  rss %.0f MiB  p50 %.3f ms  p99 %.3f ms  recall@10 %.4f\n",
		faiss.HNSW.BuildSeconds, faiss.HNSW.BuildCPU, faiss.HNSW.RSSMiB, faiss.HNSW.P50Millis, faiss.HNSW.P99Millis, faiss.HNSW.Recall)
	fmt.Println()
	fmt.Printf("| n=%d dim=%d threads=%d | go | faiss | go/faiss |\n|---|---|---|---|\n", s.n, s.dim, s.threads)
	row := func(name string, g, f float64, format string) {
		fmt.Printf("| %s | "+format+" | "+format+" | %.2f |\n", name, g, f, g/f)
	}
	row("exact build s", exact.BuildSeconds, faiss.Flat.BuildSeconds, "%.2f")
	row("exact p50 ms", exact.P50Millis, faiss.Flat.P50Millis, "%.2f")
	row("exact p99 ms", exact.P99Millis, faiss.Flat.P99Millis, "%.2f")
	row("hnsw build s", approx.BuildSeconds, faiss.HNSW.BuildSeconds, "%.1f")
	row("hnsw build CPU s", approx.BuildCPU, faiss.HNSW.BuildCPU, "%.1f")
	row("hnsw p50 ms", approx.P50Millis, faiss.HNSW.P50Millis, "%.3f")
	row("hnsw p99 ms", approx.P99Millis, faiss.HNSW.P99Millis, "%.3f")
	row("hnsw recall@10", approx.Recall, faiss.HNSW.Recall, "%.4f")
	fmt.Printf("| exact RSS MiB | %.0f | %.0f | |\n| hnsw RSS MiB | %.0f | %.0f | |\n", exact.RSSMiB, faiss.Flat.RSSMiB, approx.RSSMiB, faiss.HNSW.RSSMiB)
	fmt.Printf("| restart s (exact / hnsw) | %.1f / %.1f | | |\n", exact.RestartSeconds, approx.RestartSeconds)
	fmt.Println()
	fmt.Println("| efSearch | go p50 ms | go recall@10 | faiss p50 ms | faiss recall@10 |\n|---|---|---|---|---|")
	for i, point := range sweep {
		if i < len(faiss.Sweep) {
			fmt.Printf("| %d | %.3f | %.4f | %.3f | %.4f |\n", point.EfSearch, point.P50Millis, point.Recall, faiss.Sweep[i].P50Millis, faiss.Sweep[i].Recall)
		}
	}
	fmt.Printf("\ntargets: hnsw recall@10 %.4f (>= 0.98: %v); exact p50 %.2fx faiss flat (<= 2: %v); hnsw p50 %.2fx faiss hnsw at ef %d (<= 2: %v)\n",
		approx.Recall, approx.Recall >= 0.98, exact.P50Millis/faiss.Flat.P50Millis, exact.P50Millis/faiss.Flat.P50Millis <= 2,
		approx.P50Millis/faiss.HNSW.P50Millis, s.efSearch, approx.P50Millis/faiss.HNSW.P50Millis <= 2)
	return nil
}

// goSweep reopens the HNSW index measured above (its graph is in the snapshot, so nothing is
// rebuilt) with each efSearch and measures latency and recall@10.
func goSweep(s settings, dir string, queries []float32, truth [][]string) ([]sweepPoint, error) {
	ctx := context.Background()
	var points []sweepPoint
	defer os.RemoveAll(dir)
	build := func(ef int) (*embedded.Index, error) {
		return embedded.Open(dir, embedded.Options{Mode: "hnsw", HNSWM: s.m, EfConstruction: s.efConstruction, EfSearch: ef})
	}
	for _, ef := range sweepValues {
		ix, err := build(ef)
		if err != nil {
			return nil, err
		}
		latencies := make([]time.Duration, s.queries)
		hits := 0
		for q := 0; q < s.queries; q++ {
			t := time.Now()
			results, err := ix.Search(ctx, "bench", index.Query{Vectors: [][]float32{queries[q*s.dim : (q+1)*s.dim]}, K: 10})
			latencies[q] = time.Since(t)
			if err != nil {
				return nil, err
			}
			for _, match := range results[0] {
				if slices.Contains(truth[q], match.ID) {
					hits++
				}
			}
		}
		ix.Close()
		points = append(points, sweepPoint{EfSearch: ef, P50Millis: percentile(latencies, 0.5), Recall: float64(hits) / float64(10*s.queries)})
	}
	return points, nil
}

var sweepValues = []int{32, 64, 128, 256}

func runFaiss(s settings, basePath, queryPath string, flatOnly bool) (faissResult, error) {
	var faiss faissResult
	script := "index/embedded/cmd/indexbench/faiss_bench.py"
	flat := "0"
	if flatOnly {
		flat = "1"
	}
	command := exec.Command(s.python, script, basePath, queryPath, strconv.Itoa(s.m), strconv.Itoa(s.efConstruction),
		strconv.Itoa(s.efSearch), strconv.Itoa(s.threads), flat)
	command.Stderr = os.Stderr
	// OpenMP threads spin while they wait by default; on a shared 2-core machine that starves
	// everything else (a 20k HNSW build took 6 minutes instead of seconds under load).
	command.Env = append(os.Environ(), "OMP_WAIT_POLICY=PASSIVE")
	output, err := command.Output()
	if err != nil {
		return faiss, fmt.Errorf("faiss (run from the repository root): %w", err)
	}
	if err := json.Unmarshal(output, &faiss); err != nil {
		return faiss, fmt.Errorf("faiss output %q: %w", output, err)
	}
	return faiss, nil
}

func compareExactOnly(s settings, exact result, basePath, queryPath string) error {
	if s.skipFaiss {
		return nil
	}
	faiss, err := runFaiss(s, basePath, queryPath, true)
	if err != nil {
		return err
	}
	fmt.Printf("faiss flat: build %.1fs  rss %.0f MiB  p50 %.2f ms  p99 %.2f ms  (threads %d)\n",
		faiss.Flat.BuildSeconds, faiss.Flat.RSSMiB, faiss.Flat.P50Millis, faiss.Flat.P99Millis, faiss.Threads)
	fmt.Printf("\n| n=%d dim=%d threads=%d | go | faiss | go/faiss |\n|---|---|---|---|\n", s.n, s.dim, s.threads)
	fmt.Printf("| exact build s | %.2f | %.2f | %.2f |\n", exact.BuildSeconds, faiss.Flat.BuildSeconds, exact.BuildSeconds/faiss.Flat.BuildSeconds)
	fmt.Printf("| exact p50 ms | %.2f | %.2f | %.2f |\n", exact.P50Millis, faiss.Flat.P50Millis, exact.P50Millis/faiss.Flat.P50Millis)
	fmt.Printf("| exact p99 ms | %.2f | %.2f | %.2f |\n", exact.P99Millis, faiss.Flat.P99Millis, exact.P99Millis/faiss.Flat.P99Millis)
	fmt.Printf("| exact RSS MiB | %.0f | %.0f | |\n| restart s | %.1f | | |\n", exact.RSSMiB, faiss.Flat.RSSMiB, exact.RestartSeconds)
	return nil
}
