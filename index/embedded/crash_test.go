package embedded

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reid-project/reid/index"
)

const (
	crashChildEnv = "REID_INDEX_CRASH_CHILD"
	crashDim      = 64
)

// crashItem is the item a writer makes for id: the parent regenerates it to check exact vectors.
func crashItem(id string) index.Item {
	hash := fnv.New64a()
	hash.Write([]byte(id))
	rng := rand.New(rand.NewPCG(hash.Sum64(), 7))
	vector := make([]float32, crashDim)
	for i := range vector {
		vector[i] = float32(rng.NormFloat64())
	}
	return index.Item{ID: id, Vector: vector, Metadata: index.Metadata{
		Camera: fmt.Sprintf("cam-%d", rng.IntN(5)),
		Time:   time.Unix(1_700_000_000+int64(rng.IntN(1000)), 0).UTC(),
		Track:  rng.Int64N(1000), Frame: rng.Int64N(100000), Model: "crash",
	}}
}

// crashOptions snapshot often, so kills also land during snapshots and between log switches.
func crashOptions(mode string) Options {
	return Options{Mode: mode, HNSWM: 8, EfConstruction: 32, SyncWrites: true, SnapshotBytes: 256 << 10}
}

// TestCrashChild is not a test of its own: TestCrashRecovery runs the test binary again with this
// test selected and crashChildEnv set, and the child upserts until it is killed.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		t.Skip("runs only as TestCrashRecovery's child process")
	}
	parts := strings.SplitN(spec, "|", 3) // dir|mode|round
	ix, err := Open(parts[0], func() Options { o := crashOptions(parts[1]); o.Logger = quietLogger(); return o }())
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ctx := context.Background()
	if err := ix.CreateVersion(ctx, "crash", crashDim); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	var wg sync.WaitGroup
	// Four writers at once exercise group commit: each line is printed only after Upsert returned.
	for writer := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := 0; ; batch++ {
				items := make([]index.Item, 1+batch%5)
				for i := range items {
					items[i] = crashItem(fmt.Sprintf("r%s-w%d-b%d-%d", parts[2], writer, batch, i))
				}
				if err := ix.Upsert(ctx, "crash", items); err != nil {
					outMu.Lock()
					fmt.Fprintln(out, "error", err)
					out.Flush()
					outMu.Unlock()
					os.Exit(2)
				}
				outMu.Lock()
				for _, item := range items {
					fmt.Fprintln(out, "ack", item.ID)
				}
				out.Flush()
				outMu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("child")
	}
	for _, mode := range []string{"exact", "hnsw"} {
		t.Run(mode, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "index")
			var acknowledged []string
			for round := range 3 {
				acknowledged = append(acknowledged, runAndKill(t, dir, mode, round, 1500)...)
				ix := openFor(t, dir, crashOptions(mode))
				checkAcknowledged(t, ix, acknowledged)
				if err := ix.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
		})
	}
}

// runAndKill starts a writer child, SIGKILLs it once it has acknowledged at least want ids, and
// returns every id it acknowledged.
func runAndKill(t *testing.T, dir, mode string, round, want int) []string {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d", crashChildEnv, dir, mode, round))
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var acknowledged []string
	lines := bufio.NewScanner(stdout)
	killed := false
	deadline := time.AfterFunc(2*time.Minute, func() { child.Process.Kill() })
	defer deadline.Stop()
	for lines.Scan() {
		line := lines.Text()
		if id, ok := strings.CutPrefix(line, "ack "); ok {
			acknowledged = append(acknowledged, id)
		} else if strings.HasPrefix(line, "error") {
			t.Errorf("child: %s", line)
		}
		if !killed && len(acknowledged) >= want {
			// Lines already in the pipe were acknowledged before the kill and are still read.
			if err := child.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = child.Wait()
	if !killed {
		t.Fatalf("child ended before it was killed (%d acknowledged): %v", len(acknowledged), err)
	}
	t.Logf("round %d: killed after %d acknowledged ids", round, len(acknowledged))
	return acknowledged
}

func checkAcknowledged(t *testing.T, ix *Index, acknowledged []string) {
	t.Helper()
	ctx := context.Background()
	got, err := ix.Get(ctx, "crash", acknowledged)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	present := make(map[string]index.Item, len(got))
	for _, item := range got {
		present[item.ID] = item
	}
	missing := 0
	for _, id := range acknowledged {
		item, ok := present[id]
		if !ok {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged id %s is missing after kill -9", id)
			}
			continue
		}
		want := crashItem(id)
		if !slices.Equal(item.Vector, want.Vector) || item.Metadata.Camera != want.Metadata.Camera || !item.Metadata.Time.Equal(want.Metadata.Time) {
			t.Errorf("acknowledged id %s came back different", id)
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged ids missing", missing, len(acknowledged))
	}
	count, err := ix.Count(ctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	// Writes in flight at the kill may or may not have landed, but never fewer than acknowledged.
	if count < len(acknowledged) {
		t.Fatalf("count %d below %d acknowledged", count, len(acknowledged))
	}
	// The recovered gallery answers searches: each probe finds itself first.
	for _, id := range acknowledged[:min(20, len(acknowledged))] {
		results, err := ix.Search(ctx, "crash", index.Query{Vectors: [][]float32{normalised(crashItem(id).Vector)}, K: 1})
		if err != nil || len(results[0]) != 1 {
			t.Fatalf("Search after recovery: %v %v", results, err)
		}
	}
}

func normalised(vector []float32) []float32 {
	out := slices.Clone(vector)
	var norm float32
	for _, v := range out {
		norm += v * v
	}
	for i := range out {
		out[i] /= float32(sqrt(float64(norm)))
	}
	return out
}
