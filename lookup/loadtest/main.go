// Command loadtest measures the lookup API under concurrent clients: it builds a gallery of random
// unit vectors in the embedded index (index/embedded, exact or HNSW), serves it with
// lookup.Server on loopback, and runs N clients issuing POST /v1/search by crop id over real HTTP
// until a request count or a time limit, then prints p50/p90/p99 latency and requests/s. With
// -watches N it then makes N watches and times the server's check of them all (what the lookup
// server does every lookup.watch_interval) over the gallery's last -watch-window.
//
//	go run ./lookup/loadtest -vectors 100000 -clients 50 -requests 3000 -duration 60s
//	go run ./lookup/loadtest -vectors 100000 -requests 100 -watches 50
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/index/embedded"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/lookup/lookuptest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run() error {
	vectors := flag.Int("vectors", 100_000, "gallery size")
	dim := flag.Int("dim", 512, "vector dimension (OSNet: 512)")
	clients := flag.Int("clients", 50, "concurrent clients")
	requests := flag.Int("requests", 3000, "stop after this many requests")
	duration := flag.Duration("duration", 60*time.Second, "stop after this long")
	k := flag.Int("k", 20, "matches per search")
	mode := flag.String("mode", "exact", "embedded index mode: exact or hnsw")
	precision := flag.String("precision", "float16", "embedded index vectors in memory: float16 (reid's default) or float32")
	rerank := flag.Bool("rerank", false, "ask for k-reciprocal re-ranking")
	trackConsensus := flag.Bool("track-consensus", true, "order by track consensus (the API's default)")
	watches := flag.Int("watches", 0, "then make this many watches and time checks of them all")
	watchWindow := flag.Duration("watch-window", 10*time.Minute, "how far back a watch check looks (lookup.watch_window)")
	flag.Parse()

	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	random := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	items := make([]index.Item, *vectors)
	ids := make([]string, *vectors)
	for i := range items {
		// Tracks of 10 crops, a quarter of a second apart, on 8 cameras in turn.
		camera := fmt.Sprintf("cam-%d", (i/10)%8)
		t := start.Add(time.Duration(i) * 250 * time.Millisecond)
		vector := make([]float32, *dim)
		for j := range vector {
			vector[j] = float32(random.NormFloat64())
		}
		ids[i] = cropstore.NewID(camera, t, int64(i), 0)
		items[i] = index.Item{ID: ids[i], Vector: lookuptest.Normalize(vector), Metadata: index.Metadata{
			Camera: camera, Time: t, Track: int64(i / 10), Frame: int64(i), Model: "load",
		}}
	}

	buildStart := time.Now()
	dir, err := os.MkdirTemp("", "reid-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	idx, err := embedded.Open(dir, embedded.Options{Mode: *mode, Precision: *precision, Logger: logger})
	if err != nil {
		return err
	}
	defer idx.Close()
	if err := idx.CreateVersion(ctx, "load", *dim); err != nil {
		return err
	}
	if err := idx.Activate(ctx, "load"); err != nil {
		return err
	}
	for from := 0; from < len(items); from += 5000 {
		if err := idx.Upsert(ctx, "load", items[from:min(from+5000, len(items))]); err != nil {
			return err
		}
	}
	items = nil
	buildTime := time.Since(buildStart)

	audit, err := os.CreateTemp("", "reid-loadtest-audit-")
	if err != nil {
		return err
	}
	defer os.Remove(audit.Name())
	defer audit.Close()
	// The watches are made when the gallery's last -watch-window began and checked at its end.
	var clock atomic.Int64
	now := func() time.Time {
		if fixed := clock.Load(); fixed != 0 {
			return time.Unix(0, fixed).UTC()
		}
		return time.Now()
	}
	store := lookuptest.NewStore()
	watchDir := ""
	if *watches > 0 {
		if watchDir, err = os.MkdirTemp("", "reid-loadtest-watches-"); err != nil {
			return err
		}
		defer os.RemoveAll(watchDir)
	}
	server, err := lookup.New(lookup.Config{Index: idx, Store: store, Audit: audit, Logger: logger, WatchDir: watchDir, WatchWindow: *watchWindow, Now: now})
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- server.ServeListener(serveCtx, listener) }()
	url := "http://" + listener.Addr().String() + "/v1/search"

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients, MaxConnsPerHost: *clients}, Timeout: 60 * time.Second}
	var issued, failed atomic.Int64
	var mu sync.Mutex
	latencies := make([]time.Duration, 0, *requests)
	deadline := time.Now().Add(*duration)
	var wait sync.WaitGroup
	runStart := time.Now()
	for c := range *clients {
		wait.Add(1)
		go func() {
			defer wait.Done()
			clientRandom := rand.New(rand.NewPCG(uint64(c), 9))
			for time.Now().Before(deadline) && issued.Add(1) <= int64(*requests) {
				body, _ := json.Marshal(map[string]any{"crop_id": ids[clientRandom.IntN(len(ids))], "k": *k, "rerank": *rerank, "track_consensus": *trackConsensus})
				began := time.Now()
				response, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err == nil {
					var decoded lookup.SearchResponse
					err = json.NewDecoder(response.Body).Decode(&decoded)
					response.Body.Close()
					if err == nil && (response.StatusCode != 200 || len(decoded.Matches) != *k) {
						err = fmt.Errorf("status %d with %d matches", response.StatusCode, len(decoded.Matches))
					}
				}
				elapsed := time.Since(began)
				if err != nil {
					if failed.Add(1) <= 3 {
						fmt.Fprintln(os.Stderr, "request failed:", err)
					}
					continue
				}
				mu.Lock()
				latencies = append(latencies, elapsed)
				mu.Unlock()
			}
		}()
	}
	wait.Wait()
	elapsed := time.Since(runStart)
	var checks []time.Duration
	if *watches > 0 {
		end := start.Add(time.Duration(len(ids)) * 250 * time.Millisecond)
		clock.Store(end.Add(-*watchWindow).UnixNano())
		if checks, err = timeWatchChecks(ctx, server, store, client, "http://"+listener.Addr().String(), ids, *watches, func() { clock.Store(end.UnixNano()) }); err != nil {
			stop()
			<-served
			return err
		}
	}
	stop()
	if err := <-served; err != nil {
		return err
	}
	if len(latencies) == 0 {
		return fmt.Errorf("no request succeeded (%d failed)", failed.Load())
	}
	slices.Sort(latencies)
	quantile := func(q float64) time.Duration {
		return latencies[min(len(latencies)-1, int(math.Ceil(q*float64(len(latencies))))-1)]
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	fmt.Printf("lookup load: %d vectors x %d, index/embedded %s, %d clients, k=%d, rerank=%v, track consensus=%v, GOMAXPROCS=%d, gallery built in %s\n",
		*vectors, *dim, *mode, *clients, *k, *rerank, *trackConsensus, runtime.GOMAXPROCS(0), buildTime.Round(time.Millisecond))
	fmt.Printf("| requests | failed | seconds | requests/s | p50 ms | p90 ms | p99 ms | max ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	fmt.Printf("| %d | %d | %.1f | %.1f | %s | %s | %s | %s |\n", len(latencies), failed.Load(), elapsed.Seconds(),
		float64(len(latencies))/elapsed.Seconds(), ms(quantile(0.5)), ms(quantile(0.9)), ms(quantile(0.99)), ms(latencies[len(latencies)-1]))
	if len(checks) > 0 {
		slices.Sort(checks)
		inWindow := min(len(ids), int(*watchWindow/(250*time.Millisecond)))
		fmt.Printf("\nwatch checks: %d watches over the last %s (%d of %d crops), %d checks\n", *watches, *watchWindow, inWindow, len(ids), len(checks))
		fmt.Printf("| p50 ms | max ms | per watch p50 ms |\n| --- | --- | --- |\n| %s | %s | %.2f |\n",
			ms(checks[len(checks)/2]), ms(checks[len(checks)-1]), float64(checks[len(checks)/2].Microseconds())/1000/float64(*watches))
	}
	if failed.Load() > 0 {
		return fmt.Errorf("%d requests failed", failed.Load())
	}
	return nil
}

// timeWatchChecks makes n watches from random crops of the gallery through the API, moves the
// clock on (advance), then times ten checks of them all.
func timeWatchChecks(ctx context.Context, server *lookup.Server, store *lookuptest.Store, client *http.Client, base string, ids []string, n int, advance func()) ([]time.Duration, error) {
	random := rand.New(rand.NewPCG(3, 4))
	person := lookuptest.Identities(1, 1)[0]
	for range n {
		id := ids[random.IntN(len(ids))]
		parsed, err := cropstore.ParseID(id)
		if err != nil {
			return nil, err
		}
		store.Put(cropstore.CropRecord{ID: id, Camera: parsed.Camera, Time: parsed.Time, Track: -1, JPEG: lookuptest.Crop(person, uint64(len(id)), false)})
		response, err := client.Post(base+"/v1/watches", "application/json", bytes.NewReader(fmt.Appendf(nil, `{"crop_id":%q}`, id)))
		if err != nil {
			return nil, err
		}
		response.Body.Close()
		if response.StatusCode != http.StatusCreated {
			return nil, fmt.Errorf("POST /v1/watches: status %d", response.StatusCode)
		}
	}
	advance()
	var checks []time.Duration
	for range 10 {
		began := time.Now()
		if _, err := server.CheckWatches(ctx); err != nil {
			return nil, err
		}
		checks = append(checks, time.Since(began))
	}
	return checks, nil
}
