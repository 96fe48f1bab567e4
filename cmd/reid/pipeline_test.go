package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/embedder"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/testassets"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/stream"
)

// TestMain lets a test run this binary as `reid` in a child process (the crash test kills it).
func TestMain(m *testing.M) {
	if args := os.Getenv("REIDTEST_MAIN_ARGS"); args != "" {
		var parsed []string
		if err := json.Unmarshal([]byte(args), &parsed); err != nil {
			panic(err)
		}
		os.Args = append([]string{"reid"}, parsed...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// importOSNet registers the shared OSNet x0.25 weights as a new model version of dataDir.
func importOSNet(t testing.TB, dataDir string, flags ...string) {
	t.Helper()
	weights := testassets.Path(t, "models/reid/osnet_x0_25_msmt17.pth")
	args := append([]string{"--data-dir", dataDir, "model", "import", "--arch", "osnet_x0_25", "--weights", weights}, flags...)
	if out, err := runReid(t, args...); err != nil {
		t.Fatalf("model import: %v\n%s", err, out)
	}
}

// pipelineFixture is a data dir with the shared OSNet model imported and active.
func pipelineFixture(t testing.TB) (dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	importOSNet(t, dataDir)
	// Each test gets its own broker port and detector assets from ../shared.
	t.Setenv("REID_STREAM_EMBEDDED_ADDR", "127.0.0.1:0")
	t.Setenv("REID_LOOKUP_ADDR", "127.0.0.1:0")
	t.Setenv("REID_SHARED_DIR", testassets.SharedDir())
	return dataDir
}

func loadOptions(t testing.TB, dataDir string) config.Options {
	t.Helper()
	options, err := config.Load("", os.Environ(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	options.DataDir = dataDir
	return options
}

// TestRunEndToEnd sends real video through ingest, the embedded broker, the embedder and the
// embedded index, and checks that every crop ingest produced is indexed once and archived.
func TestRunEndToEnd(t *testing.T) {
	dataDir := pipelineFixture(t)
	// Before anything is embedded, a search says how to fill a gallery.
	if out, err := runReid(t, "--data-dir", dataDir, "search", "--image", foreignJPEG(t)); err == nil || !strings.Contains(err.Error(), "nothing is searchable yet") {
		t.Errorf("search of an empty index: %v\n%s", err, out)
	}
	out, err := runReid(t, "--data-dir", dataDir, "run", "--source", testassets.Path(t, "video/vtest.avi"),
		"--camera", "gate", "--max-frames", "80", "--exit-when-done", "--json")
	if err != nil {
		t.Fatalf("reid run: %v\n%s", err, out)
	}
	var summary runSummary
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &summary); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	t.Logf("summary: %+v", summary)
	if summary.Frames != 80 || summary.Crops < 50 {
		t.Fatalf("ingest processed %d frames into %d crops; want 80 frames and >= 50 crops", summary.Frames, summary.Crops)
	}
	if summary.Produced != summary.Crops || summary.Embedded != summary.Crops || summary.Archived != summary.Crops {
		t.Fatalf("crops %d, produced %d, embedded %d, archived %d: all must be equal", summary.Crops, summary.Produced, summary.Embedded, summary.Archived)
	}
	if int64(summary.Indexed) != summary.Crops {
		t.Fatalf("indexed %d vectors for %d crops", summary.Indexed, summary.Crops)
	}

	// The archived crops and the indexed vectors are the same set of ids.
	options := loadOptions(t, dataDir)
	store, err := openCropStore(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	var archived []string
	trackCrops := map[int64][]string{}
	if err := store.Walk(context.Background(), cropstore.Filter{}, func(record cropstore.CropRecord) error {
		archived = append(archived, record.ID)
		if record.Track >= 0 {
			trackCrops[record.Track] = append(trackCrops[record.Track], record.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkSearchCommand(t, dataDir, store, trackCrops)
	backupDir := checkBackupAndSearchCopy(t, dataDir, store, archived[len(archived)/3])
	vectors, err := openIndex(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	items, err := vectors.Get(context.Background(), "", archived)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(archived) || int64(len(archived)) != summary.Crops {
		t.Fatalf("%d archived crops, %d of them indexed, %d crops produced", len(archived), len(items), summary.Crops)
	}
	for _, item := range items {
		if item.Metadata.Camera != "gate" || item.Metadata.Model != summary.Model || len(item.Vector) != 512 {
			t.Fatalf("item %s has metadata %+v and %d values", item.ID, item.Metadata, len(item.Vector))
		}
	}
	checkSearchUpload(t, options, vectors, store, summary.Model, archived[len(archived)/2])
	checkWatchAlerts(t, options, vectors, store, summary.Model, trackCrops)
	erased := checkErasure(t, options, vectors, store, trackCrops)
	checkErasureSticks(t, options, vectors, store, erased, int(summary.Crops))
	checkRestoreEnforcesErasures(t, dataDir, backupDir, erased)
}

// checkSearchUpload posts a stored crop's JPEG to the lookup API, which decodes uploads itself:
// the crop must come back first with its stored vector's score, as through `reid search`.
func checkSearchUpload(t *testing.T, options config.Options, vectors index.Index, store cropStore, version, queryID string) {
	t.Helper()
	ctx := context.Background()
	model, err := openModel(ctx, options, version)
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	options.Lookup.AuditLog = filepath.Join(t.TempDir(), "audit.log")
	server, auditLog, err := newLookupServer(options, lookup.Config{Index: vectors, IndexVersion: version, Store: store, Embedder: model.network})
	if err != nil {
		t.Fatal(err)
	}
	defer auditLog.Close()
	api := httptest.NewServer(server)
	defer api.Close()
	jpegBytes, err := store.Image(ctx, queryID)
	if err != nil {
		t.Fatal(err)
	}
	response, err := http.Post(api.URL+"/v1/search?k=3&track_consensus=false", "image/jpeg", bytes.NewReader(jpegBytes))
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	var decoded struct {
		Query   lookup.QueryJSON   `json:"query"`
		Matches []lookup.MatchJSON `json:"matches"`
	}
	if err := json.NewDecoder(response.Body).Decode(&decoded); err != nil || response.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/search: status %d, %v", response.StatusCode, err)
	}
	if decoded.Query.VectorFrom != "upload" || len(decoded.Matches) == 0 || decoded.Matches[0].CropID != queryID || decoded.Matches[0].Score < 0.9999 {
		t.Fatalf("upload of crop %s: query %+v, matches %+v", queryID, decoded.Query, decoded.Matches)
	}
}

// TestRunCameraDetector runs two cameras through `reid run` from a config file, one with its own
// detector, and checks that each camera's crops name the detector that found them.
func TestRunCameraDetector(t *testing.T) {
	dataDir := pipelineFixture(t)
	video := testassets.Path(t, "video/vtest.avi")
	configPath := filepath.Join(t.TempDir(), "cameras.yaml")
	configText := fmt.Sprintf(`cameras:
  - id: near
    source: %s
  - id: far
    source: %s
    detector:
      model: yolox-nano
`, video, video)
	if err := os.WriteFile(configPath, []byte(configText), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runReid(t, "--config", configPath, "--data-dir", dataDir, "run", "--max-frames", "12", "--exit-when-done", "--serve=false", "--json")
	if err != nil {
		t.Fatalf("reid run: %v\n%s", err, out)
	}
	store, err := openCropStore(context.Background(), loadOptions(t, dataDir))
	if err != nil {
		t.Fatal(err)
	}
	detectors := map[string]map[string]int{}
	if err := store.Walk(context.Background(), cropstore.Filter{}, func(record cropstore.CropRecord) error {
		if detectors[record.Camera] == nil {
			detectors[record.Camera] = map[string]int{}
		}
		detectors[record.Camera][record.Detector]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"near": "yolo-fastest", "far": "yolox-nano"}
	for camera, detector := range want {
		if counts := detectors[camera]; len(counts) != 1 || counts[detector] == 0 {
			t.Errorf("camera %s: crops by detector %v, want all by %s", camera, counts, detector)
		}
	}
}

// checkSearchCommand runs `reid search` with the stored image of a crop of the longest track: the
// crop itself comes first, ordered by track consensus (rank_score), and with --by-crop by cosine.
func checkSearchCommand(t *testing.T, dataDir string, store cropStore, trackCrops map[int64][]string) {
	t.Helper()
	var longest []string
	for _, crops := range trackCrops {
		if len(crops) > len(longest) {
			longest = crops
		}
	}
	if len(longest) < 3 {
		t.Fatalf("no track of at least 3 crops: %v", trackCrops)
	}
	queryID := longest[len(longest)/2]
	queryPath := cropImageFile(t, store, queryID)
	search := func(extra ...string) []lookup.MatchJSON {
		t.Helper()
		decoded := searchJSON(t, append([]string{"--data-dir", dataDir, "search", "--image", queryPath, "--k", "8", "--json"}, extra...)...)
		// The stored vector and the query's come from the same pixels (one JPEG decoder on both
		// paths) through the same model: only batch composition may move the last digits.
		if len(decoded.Matches) != 8 || decoded.Matches[0].CropID != queryID || decoded.Matches[0].Score < 0.9999 {
			t.Fatalf("reid search %v for crop %s: %+v", extra, queryID, decoded.Matches)
		}
		return decoded.Matches
	}
	withTracks := 0
	matches := search()
	for i, match := range matches {
		if match.RankScore == nil || (i > 0 && *match.RankScore > *matches[i-1].RankScore) {
			t.Fatalf("reid search: match %d not ordered by rank_score: %+v", i, matches)
		}
		if match.TrackScore != nil {
			withTracks++
		}
	}
	if withTracks == 0 {
		t.Errorf("reid search: no match was scored with its track: %+v", matches)
	}
	matches = search("--by-crop")
	for i, match := range matches {
		if match.TrackScore != nil || match.RankScore != nil || (i > 0 && match.Score > matches[i-1].Score) {
			t.Fatalf("reid search --by-crop: match %d not ordered by score alone: %+v", i, matches)
		}
	}
}

// produceCrops ingests the first frames of vtest.avi into the crops topic and returns the ids.
func produceCrops(t *testing.T, options config.Options, conn stream.Connection, camera string, frames int64) []string {
	t.Helper()
	producer, err := stream.NewProducer(conn, stream.ProducerOptionsFrom(options.Stream))
	if err != nil {
		t.Fatal(err)
	}
	recorder := &recordingSink{next: producer}
	ingester, err := newIngester(options, recorder, frames)
	if err != nil {
		t.Fatal(err)
	}
	source := config.Camera{ID: camera, Source: testassets.Path(t, "video/vtest.avi")}
	if err := ingester.Run(context.Background(), []config.Camera{source}); err != nil {
		t.Fatal(err)
	}
	if err := producer.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stats := producer.Stats(); stats.Produced != int64(len(recorder.ids)) || stats.Dropped != 0 {
		t.Fatalf("producer stats %+v for %d crops", stats, len(recorder.ids))
	}
	return recorder.ids
}

// startLoopbackBroker starts a broker on the data dir on a loopback port of its own, as `reid
// broker` does for stages in other processes, with the topics made; it stops when the test ends.
func startLoopbackBroker(t *testing.T, dataDir string, options config.Options) (*stream.Broker, stream.Connection) {
	t.Helper()
	broker, err := stream.StartBroker(stream.BrokerOptions{Addr: freeAddr(t), DataDir: filepath.Join(dataDir, "broker")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	conn := stream.ConnectionFrom(options.Stream, broker.Addrs())
	if err := stream.EnsureTopics(context.Background(), conn, stream.TopicsFrom(options.Stream)...); err != nil {
		t.Fatal(err)
	}
	return broker, conn
}

// startTestBroker starts the embedded broker on options' data dir until the test ends.
func startTestBroker(t testing.TB, ctx context.Context, options config.Options) stream.Connection {
	t.Helper()
	conn, closeBroker, err := openStream(ctx, options, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeBroker)
	return conn
}

// openTestIndex opens the index options configure until the test ends.
func openTestIndex(t testing.TB, ctx context.Context, options config.Options) index.Index {
	t.Helper()
	vectors, err := openIndex(ctx, options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vectors.Close() })
	return vectors
}

type recordingSink struct {
	next interface {
		Put(context.Context, cropstore.CropRecord) error
	}
	ids []string
}

func (s *recordingSink) Put(ctx context.Context, record cropstore.CropRecord) error {
	if err := s.next.Put(ctx, record); err != nil {
		return err
	}
	s.ids = append(s.ids, record.ID) // one camera: Put is called from one goroutine
	return nil
}

// committed sums the embedder group's committed offsets over the crops topic's partitions.
func committed(t *testing.T, broker string, options config.Options) int64 {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 5 * time.Second}
	partitions := make([]int, options.Stream.Partitions)
	for i := range partitions {
		partitions[i] = i
	}
	response, err := client.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{
		GroupID: options.Stream.EmbedGroup,
		Topics:  map[string][]int{options.Stream.CropsTopic: partitions},
	})
	if err != nil {
		return 0
	}
	var total int64
	for _, partition := range response.Topics[options.Stream.CropsTopic] {
		if partition.CommittedOffset > 0 {
			total += partition.CommittedOffset
		}
	}
	return total
}

// startChild runs reid with args in a process of its own (the test binary, through TestMain).
func startChild(t *testing.T, dataDir string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	return startChildOutput(t, dataDir, env, os.Stderr, args...)
}

// startChildOutput is startChild with the child's standard output going to stdout.
func startChildOutput(t *testing.T, dataDir string, env []string, stdout io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	encoded, _ := json.Marshal(append([]string{"--data-dir", dataDir, "--log-level", "warn"}, args...))
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(append(os.Environ(), env...), "REIDTEST_MAIN_ARGS="+string(encoded))
	child.Stdout, child.Stderr = stdout, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	return child
}

func freeAddr(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().String()
}

// TestRunDrainsOnSignal stops `reid run` with SIGTERM while ingest is producing, and checks that
// every crop ingest had handed over is embedded, archived and indexed before it exits. The
// producer holds its records until it flushes (long batches), so they all reach the broker after
// the signal: consumers that stopped at the signal would take in none of them.
func TestRunDrainsOnSignal(t *testing.T) {
	dataDir := pipelineFixture(t)
	opsAddr := freeAddr(t)
	env := []string{"REID_OPS_ADDR=" + opsAddr, "REID_STREAM_BATCH_SIZE=1024", "REID_STREAM_BATCH_TIMEOUT=1m"}
	var stdout bytes.Buffer
	child := startChildOutput(t, dataDir, env, &stdout, "run", "--source", testassets.Path(t, "video/vtest.avi"), "--camera", "gate", "--json")
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	waitForMetric(t, child, opsAddr, `reid_ingest_crops_total{camera="gate"}`, 40, 2*time.Minute)
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("reid run after SIGTERM: %v", err)
		}
	case <-time.After(time.Minute):
		child.Process.Kill()
		t.Fatal("reid run did not stop within a minute of SIGTERM")
	}
	var summary runSummary
	if err := json.Unmarshal(stdout.Bytes(), &summary); err != nil {
		t.Fatalf("summary %q: %v", stdout.String(), err)
	}
	t.Logf("summary: %+v", summary)
	if summary.Produced < 40 || summary.Produced != summary.Crops {
		t.Fatalf("ingest made %d crops, the producer flushed %d: want all of at least 40", summary.Crops, summary.Produced)
	}
	if summary.Embedded != summary.Produced || summary.Archived != summary.Produced || int64(summary.Indexed) != summary.Produced {
		t.Fatalf("produced %d, embedded %d, archived %d, indexed %d: a signal must not leave crops behind", summary.Produced, summary.Embedded, summary.Archived, summary.Indexed)
	}
}

// scrapeMetric reads one series, named with its labels as /metrics writes it, from the ops
// server at addr; ok is false while the server or the series is not there.
func scrapeMetric(addr, series string) (value float64, ok bool) {
	response, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(response.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if raw, found := strings.CutPrefix(line, series+" "); found {
			value, err = strconv.ParseFloat(raw, 64)
			return value, err == nil
		}
	}
	return 0, false
}

// waitForMetric waits until the series reaches at least want; the child is killed on failure.
func waitForMetric(t *testing.T, child *exec.Cmd, addr, series string, want float64, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		if value, ok := scrapeMetric(addr, series); ok && value >= want {
			return
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatalf("%s did not reach %g within %s", series, want, within)
		}
	}
}

// TestEmbedderCrashResume runs `reid embed` as its own process against a broker on loopback,
// SIGKILLs it mid-stream, restarts it, and checks that the index holds every crop exactly once.
func TestEmbedderCrashResume(t *testing.T) {
	dataDir := pipelineFixture(t)
	options := loadOptions(t, dataDir)
	broker, conn := startLoopbackBroker(t, dataDir, options)
	ids := produceCrops(t, options, conn, "lobby", 60)
	total := int64(len(ids))
	if total < 60 {
		t.Fatalf("only %d crops from 60 frames", total)
	}
	// Small batches make the kill land between commits.
	env := []string{"REID_STREAM_BROKERS=" + broker.Addrs()[0], "REID_EMBEDDER_BATCH_SIZE=4", "REID_EMBEDDER_MAX_WAIT=10ms"}
	child := startChild(t, dataDir, env, "embed")
	deadline := time.Now().Add(3 * time.Minute)
	for committed(t, broker.Addrs()[0], options) < 8 {
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("embedder made no progress")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	killedAt := committed(t, broker.Addrs()[0], options)
	t.Logf("killed the embedder at %d of %d committed", killedAt, total)
	if killedAt >= total {
		t.Fatalf("the embedder finished (%d/%d) before it was killed: the test proves nothing", killedAt, total)
	}

	// The restarted one is watched as an operator would, on its ops listener.
	opsAddr := freeAddr(t)
	child = startChild(t, dataDir, append(env, "REID_OPS_ADDR="+opsAddr), "embed")
	for committed(t, broker.Addrs()[0], options) < total {
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatalf("restarted embedder stuck at %d of %d", committed(t, broker.Addrs()[0], options), total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, scraped := get(t, "http://"+opsAddr+"/metrics")
	for _, want := range []string{
		fmt.Sprintf(`reid_index_items{active="1",version="v1"} %d`, total),
		`reid_consumer_lag_records{group="reid-embedder"} 0`,
		`reid_consumer_dead_lettered_total{group="reid-embedder"} 0`,
	} {
		if !strings.Contains(scraped, want) {
			t.Errorf("the embedder's /metrics lacks %q", want)
		}
	}
	if !strings.Contains(scraped, "reid_embedder_crops_total ") || strings.Contains(scraped, "reid_embedder_crops_total 0\n") {
		t.Error("the embedder's /metrics does not count the crops it embedded")
	}
	child.Process.Signal(syscall.SIGTERM)
	if err := child.Wait(); err != nil {
		t.Fatalf("embedder did not shut down cleanly: %v", err)
	}

	vectors, err := openIndex(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	count, err := vectors.Count(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	items, err := vectors.Get(context.Background(), "v1", ids)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(items))
	for i, item := range items {
		got[i] = item.ID
	}
	want := slices.Clone(ids)
	sort.Strings(got)
	sort.Strings(want)
	if count != len(ids) || !slices.Equal(got, want) {
		t.Fatalf("index holds %d items (%d of the %d produced ids); want each exactly once", count, len(got), len(ids))
	}
}

// slowModel is a deliberately slow embedder model.
type slowModel struct {
	embedder.Model
	delay time.Duration
}

func (m slowModel) Embed(ctx context.Context, images []image.Image) ([][]float32, error) {
	time.Sleep(m.delay)
	return m.Model.Embed(ctx, images)
}

// TestPoisonRecordsAndSlowEmbedder sends garbage bytes, a truncated JPEG and an unknown wire
// version among real crops to a deliberately slow embedder: the poison lands in the DLQ with its
// reason, and every real crop is indexed.
func TestPoisonRecordsAndSlowEmbedder(t *testing.T) {
	dataDir := pipelineFixture(t)
	options := loadOptions(t, dataDir)
	options.Stream.Buffer = 2 // ingest must block on the producer, never drop
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	conn := startTestBroker(t, ctx, options)

	good := produceCrops(t, options, conn, "lobby", 30)
	record := cropstore.CropRecord{ID: cropstore.NewID("lobby", time.Now(), 1, 0), Camera: "lobby", Time: time.Now(), JPEG: realJPEG(t)}
	truncated := record
	truncated.ID = cropstore.NewID("lobby", time.Now(), 2, 0)
	truncated.JPEG = truncated.JPEG[:len(truncated.JPEG)/2]
	truncatedBytes, err := stream.Encode(truncated)
	if err != nil {
		t.Fatal(err)
	}
	futureBytes, err := stream.Encode(record)
	if err != nil {
		t.Fatal(err)
	}
	futureBytes = bytes.Clone(futureBytes)
	futureBytes[4] = 99 // the version byte follows the 4-byte magic
	writer := &kafka.Writer{Addr: kafka.TCP(conn.Brokers...), Topic: options.Stream.CropsTopic, RequiredAcks: kafka.RequireAll}
	defer writer.Close()
	poison := []kafka.Message{
		{Key: []byte("lobby"), Value: []byte("definitely not a crop record")},
		{Key: []byte("lobby"), Value: truncatedBytes},
		{Key: []byte("lobby"), Value: futureBytes},
	}
	if err := writer.WriteMessages(ctx, poison...); err != nil {
		t.Fatal(err)
	}

	vectors := openTestIndex(t, ctx, options)
	loaded, err := openModel(ctx, options, "")
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	slow, err := embedder.New(ctx, embedder.Options{Model: slowModel{Model: loaded.network, delay: 200 * time.Millisecond}, Version: loaded.version.ID, Index: vectors})
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := stream.NewConsumer(conn, stream.ConsumerOptions{
		Topic: options.Stream.CropsTopic, Group: "slow-embedder", DLQTopic: options.Stream.DLQTopic, BatchSize: 8,
	}, slow.Handle)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	waitCaughtUp(ctx, consumer)
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if stats := consumer.Stats(); stats.DeadLettered != 3 || stats.Handled != int64(len(good)) {
		t.Fatalf("consumer stats %+v: want %d handled and 3 dead-lettered", stats, len(good))
	}
	count, err := vectors.Count(ctx, loaded.version.ID)
	if err != nil || count != len(good) {
		t.Fatalf("indexed %d of %d good crops (%v)", count, len(good), err)
	}

	reasons := readDeadLetters(t, ctx, conn, options.Stream.DLQTopic, 3)
	sort.Strings(reasons)
	for _, want := range []string{"bad-jpeg", "not-crop-record", "unknown-version"} {
		if !slices.ContainsFunc(reasons, func(reason string) bool { return strings.Contains(reason, want) }) {
			t.Errorf("dead letters %q lack reason %q", reasons, want)
		}
	}
}

func readDeadLetters(t *testing.T, ctx context.Context, conn stream.Connection, topic string, n int) []string {
	t.Helper()
	reader := kafka.NewReader(kafka.ReaderConfig{Brokers: conn.Brokers, Topic: topic, GroupID: "dlq-reader-test", MaxWait: 100 * time.Millisecond})
	defer reader.Close()
	var reasons []string
	for len(reasons) < n {
		readCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		message, err := reader.ReadMessage(readCtx)
		cancel()
		if err != nil {
			t.Fatalf("after %d dead letters: %v", len(reasons), err)
		}
		letter, err := stream.ParseDeadLetter(message)
		if err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, letter.Reason)
	}
	return reasons
}

func realJPEG(t *testing.T) []byte {
	t.Helper()
	picture := image.NewRGBA(image.Rect(0, 0, 64, 128))
	for i := range picture.Pix {
		picture.Pix[i] = byte(i * 7)
	}
	var buffer bytes.Buffer
	if err := jpeg.Encode(&buffer, picture, nil); err != nil {
		t.Fatal(err)
	}
	return buffer.Bytes()
}

// TestRunWaitsForBacklog leaves crops in the broker that no embedder has seen (as a killed run
// would), then starts `reid run --exit-when-done` on the same data dir: it must not exit until
// the backlog is indexed as well as what it ingests itself.
func TestRunWaitsForBacklog(t *testing.T) {
	dataDir := pipelineFixture(t)
	options := loadOptions(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	conn, closeBroker, err := openStream(ctx, options, true)
	if err != nil {
		t.Fatal(err)
	}
	backlog := produceCrops(t, options, conn, "lobby", 60)
	closeBroker()
	if len(backlog) < 50 {
		t.Fatalf("only %d crops in the backlog", len(backlog))
	}

	out, err := runReid(t, "--data-dir", dataDir, "run", "--source", testassets.Path(t, "video/vtest.avi"),
		"--camera", "gate", "--max-frames", "20", "--exit-when-done", "--serve=false", "--json")
	if err != nil {
		t.Fatalf("reid run: %v\n%s", err, out)
	}
	summary := decodeRunSummary(t, out)
	if summary.Produced == 0 {
		t.Fatalf("the run produced nothing: %s", out)
	}
	if want := int64(len(backlog)) + summary.Produced; int64(summary.Indexed) != want {
		t.Errorf("indexed %d at exit, want the %d of the backlog + the %d this run produced", summary.Indexed, len(backlog), summary.Produced)
	}
	vectors := openTestIndex(t, ctx, options)
	items, err := vectors.Get(ctx, "", backlog)
	if err != nil || len(items) != len(backlog) {
		t.Errorf("%d of the %d backlog crops are indexed (%v)", len(items), len(backlog), err)
	}
}

// TestModelSwitchBackfills promotes a second model version over a data dir already indexed with the
// first, and checks that the next reid run embeds every stored crop into the new gallery (the
// old crops from the crop store, the new ones live) and only then makes it the active one.
func TestModelSwitchBackfills(t *testing.T) {
	dataDir := pipelineFixture(t)
	run := func(camera string, frames int) runSummary {
		t.Helper()
		out, err := runReid(t, "--data-dir", dataDir, "run", "--source", testassets.Path(t, "video/vtest.avi"),
			"--camera", camera, "--max-frames", strconv.Itoa(frames), "--exit-when-done", "--serve=false", "--json")
		if err != nil {
			t.Fatalf("reid run: %v\n%s", err, out)
		}
		return decodeRunSummary(t, out)
	}
	first := run("gate", 40)
	if first.Model != "v1" || first.Backfilled != 0 || int64(first.Indexed) != first.Crops {
		t.Fatalf("first run: %+v", first)
	}
	importOSNet(t, dataDir, "--promote")
	second := run("hall", 30)
	// The backfill may also take new crops the archiver stored before the live embedder reached
	// them (both write the same vector), so it can count more than the first run's crops.
	if second.Model != "v2" || second.Backfilled < first.Crops || int64(second.Indexed) != first.Crops+second.Crops {
		t.Fatalf("after promoting v2: %+v; want the %d crops of the first run backfilled and %d indexed in v2",
			second, first.Crops, first.Crops+second.Crops)
	}
	vectors, err := openIndex(context.Background(), loadOptions(t, dataDir))
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	active, err := vectors.Active(context.Background())
	if err != nil || active.Name != "v2" {
		t.Fatalf("active gallery %+v, %v; want v2", active, err)
	}
	if old, err := vectors.Count(context.Background(), "v1"); err != nil || int64(old) != first.Crops {
		t.Errorf("v1 gallery has %d items (%v), want its %d untouched", old, err, first.Crops)
	}
}

// TestRunFollowsPromotedModel promotes a second model version while `reid run` ingests, and checks
// that it switches without a restart: the crops after the switch are embedded live into the new
// gallery, every crop embedded before it is backfilled from the crop store (none lost between
// the two), and then the index and the lookup server move to the new gallery.
func TestRunFollowsPromotedModel(t *testing.T) {
	dataDir := pipelineFixture(t)
	importOSNet(t, dataDir, "--name", "adapted")
	opsAddr, lookupAddr := freeAddr(t), freeAddr(t)
	env := []string{"REID_OPS_ADDR=" + opsAddr, "REID_LOOKUP_ADDR=" + lookupAddr, "REID_EMBEDDER_FOLLOW_INTERVAL=200ms"}
	var stdout bytes.Buffer
	child := startChildOutput(t, dataDir, env, &stdout, "run", "--source", testassets.Path(t, "video/vtest.avi"), "--camera", "gate",
		"--max-frames", "150", "--json")
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	defer child.Process.Kill()

	waitForMetric(t, child, opsAddr, `reid_embedder_crops_total`, 20, 2*time.Minute)
	if out, err := runReid(t, "--data-dir", dataDir, "model", "promote", "v2"); err != nil {
		child.Process.Kill()
		t.Fatalf("model promote: %v\n%s", err, out)
	}
	waitForMetric(t, child, opsAddr, `reid_index_items{active="1",version="v2"}`, 1, 2*time.Minute)
	// Ingest ran on after the promote, so the newest crop is in v2's gallery alone: the lookup
	// server finds its vector there only once it reads v2.
	waitForMetric(t, child, opsAddr, `reid_ingest_frames_total{camera="gate"}`, 150, 2*time.Minute)
	crops, _ := scrapeMetric(opsAddr, `reid_ingest_crops_total{camera="gate"}`)
	waitForMetric(t, child, opsAddr, `reid_embedder_crops_total`, crops, time.Minute)
	waitForMetric(t, child, opsAddr, `reid_archiver_crops_total`, crops, time.Minute)
	newest := newestCrop(t, lookupAddr)
	response, err := http.Post("http://"+lookupAddr+"/v1/search", "application/json", strings.NewReader(`{"crop_id":"`+newest+`","k":1,"track_consensus":false}`))
	if err != nil {
		t.Fatal(err)
	}
	var found struct {
		Query   lookup.QueryJSON   `json:"query"`
		Matches []lookup.MatchJSON `json:"matches"`
	}
	err = json.NewDecoder(response.Body).Decode(&found)
	response.Body.Close()
	if err != nil || found.Query.VectorFrom != "index" || found.Query.Model != "v2" || len(found.Matches) == 0 || found.Matches[0].CropID != newest {
		t.Errorf("search for the newest crop %s after the switch: %v, query %+v, matches %+v; want its own vector from v2's gallery", newest, err, found.Query, found.Matches)
	}

	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("reid run: %v", err)
	}
	summary := decodeRunSummary(t, stdout.String())
	t.Logf("summary: %+v", summary)
	vectors, err := openIndex(context.Background(), loadOptions(t, dataDir))
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	before, err := vectors.Count(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	active, err := vectors.Active(context.Background())
	switch {
	case err != nil || active.Name != "v2":
		t.Errorf("active gallery %+v (%v), want v2", active, err)
	case summary.Model != "v2" || summary.SwitchPending || summary.Embedded != summary.Crops:
		t.Errorf("summary %+v: want every crop embedded, by v2 at the end, with no switch pending", summary)
	case int64(summary.Indexed) != summary.Crops:
		t.Errorf("v2's gallery holds %d of the %d crops", summary.Indexed, summary.Crops)
	case before == 0 || int64(before) >= summary.Crops || summary.Backfilled < int64(before):
		// The backfill may also take crops the archiver stored before the live embedder reached
		// them (both then write the same vector), so it can exceed v1's count.
		t.Errorf("v1 embedded %d crops, %d were backfilled into v2, of %d: want the crops before the switch, all backfilled, and some after it",
			before, summary.Backfilled, summary.Crops)
	}
}

// newestCrop lists the stored crops through the lookup API and returns the newest one's id.
func newestCrop(t *testing.T, lookupAddr string) string {
	t.Helper()
	response, err := http.Get("http://" + lookupAddr + "/v1/crops?limit=500")
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	var listed lookup.CropsResponse
	if err := json.NewDecoder(response.Body).Decode(&listed); err != nil || len(listed.Crops) == 0 {
		t.Fatalf("GET /v1/crops: status %d, %v, %d crops", response.StatusCode, err, len(listed.Crops))
	}
	newest := listed.Crops[0]
	for _, crop := range listed.Crops {
		if crop.Time.After(newest.Time) {
			newest = crop
		}
	}
	return newest.ID
}

// TestIndexBackfillCommand fills a new model version's gallery from the crop store with
// `reid index backfill`, resumably, and switches lookups to it with --activate.
func TestIndexBackfillCommand(t *testing.T) {
	dataDir := pipelineFixture(t)
	out, err := runReid(t, "--data-dir", dataDir, "run", "--source", testassets.Path(t, "video/vtest.avi"),
		"--camera", "gate", "--max-frames", "30", "--exit-when-done", "--serve=false", "--json")
	if err != nil {
		t.Fatalf("reid run: %v\n%s", err, out)
	}
	crops := decodeRunSummary(t, out).Crops
	importOSNet(t, dataDir)
	out, err = runReid(t, "--data-dir", dataDir, "index", "backfill", "v2")
	if want := fmt.Sprintf("v2: %d stored crops, 0 already in the gallery, %d embedded", crops, crops); err != nil || !strings.Contains(out, want) {
		t.Fatalf("index backfill v2: %v\n%s\nwant %q", err, out, want)
	}
	out, err = runReid(t, "--data-dir", dataDir, "index", "backfill", "v2", "--activate")
	if want := fmt.Sprintf("v2: %d stored crops, %d already in the gallery, 0 embedded", crops, crops); err != nil || !strings.Contains(out, want) || !strings.Contains(out, "v2 is the active gallery") {
		t.Fatalf("second index backfill v2 --activate: %v\n%s\nwant %q", err, out, want)
	}
	out, err = runReid(t, "--data-dir", dataDir, "index", "versions")
	if err != nil || !regexp.MustCompile(`v2\s+512\s+`+strconv.FormatInt(crops, 10)+`\s+yes`).MatchString(out) {
		t.Fatalf("index versions after the backfill: %v\n%s", err, out)
	}
	if _, err := runReid(t, "--data-dir", dataDir, "index", "backfill", "v9"); err == nil {
		t.Error("backfill of an unknown model version succeeded")
	}
}

// TestPruneCommand indexes crops stamped in January, then prunes what is older than a day: every
// crop goes from the crop store and from every gallery, and a second prune finds nothing.
func TestPruneCommand(t *testing.T) {
	dataDir := pipelineFixture(t)
	configPath := filepath.Join(t.TempDir(), "site.yaml")
	site := fmt.Sprintf("cameras:\n  - id: gate\n    source: %s\n    start_time: \"2026-01-05T08:00:00Z\"\n", testassets.Path(t, "video/vtest.avi"))
	if err := os.WriteFile(configPath, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runReid(t, "--config", configPath, "--data-dir", dataDir, "run", "--max-frames", "25", "--exit-when-done", "--serve=false", "--json")
	if err != nil {
		t.Fatalf("reid run: %v\n%s", err, out)
	}
	crops := decodeRunSummary(t, out).Crops
	if crops == 0 {
		t.Fatal("no crops to prune")
	}
	if out, err := runReid(t, "--data-dir", dataDir, "prune"); err == nil || !strings.Contains(err.Error(), "nothing to prune") {
		t.Errorf("prune without a retention period: %v\n%s", err, out)
	}
	// A camera's own shorter period (retention.per_camera) prunes that camera alone.
	perCamera := func(camera string) string {
		path := filepath.Join(t.TempDir(), "retention.yaml")
		text := "retention:\n  per_camera:\n    - camera: " + camera + "\n      max_age: 24h\n"
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	out, err = runReid(t, "--config", perCamera("hall"), "--data-dir", dataDir, "prune")
	if err != nil || !strings.Contains(out, "deleted 0 crops and 0 vectors: hall's from before") {
		t.Fatalf("prune of another camera: %v\n%s", err, out)
	}
	out, err = runReid(t, "--config", perCamera("gate"), "--data-dir", dataDir, "prune")
	if want := fmt.Sprintf("deleted %d crops and %d vectors: gate's from before", crops, crops); err != nil || !strings.Contains(out, want) {
		t.Fatalf("prune: %v\n%s\nwant %q", err, out, want)
	}
	out, err = runReid(t, "--data-dir", dataDir, "prune", "--older-than", "24h")
	if err != nil || !strings.Contains(out, "deleted 0 crops and 0 vectors") {
		t.Errorf("second prune: %v\n%s", err, out)
	}
	options := loadOptions(t, dataDir)
	store, err := openCropStore(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	store.Walk(context.Background(), cropstore.Filter{}, func(cropstore.CropRecord) error { left++; return nil })
	vectors, err := openIndex(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	if indexed, err := vectors.Count(context.Background(), "v1"); left != 0 || err != nil || indexed != 0 {
		t.Errorf("after pruning: %d crops stored, %d indexed (%v)", left, indexed, err)
	}
}

// TestServeFollowsActiveGallery activates another model version's gallery under a running lookup
// server: within its follow interval the server searches the new gallery, with that version's
// model for uploads, without a restart.
func TestServeFollowsActiveGallery(t *testing.T) {
	dataDir := pipelineFixture(t)
	importOSNet(t, dataDir)
	options := loadOptions(t, dataDir)
	ctx := context.Background()
	vectors, err := openIndex(ctx, options)
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	vector := make([]float32, 512)
	vector[0] = 1
	at := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	only := map[string]string{"v1": cropstore.NewID("gate", at, 1, 0), "v2": cropstore.NewID("gate", at, 2, 0)}
	for version, id := range only {
		if err := vectors.CreateVersion(ctx, version, 512); err != nil {
			t.Fatal(err)
		}
		if err := vectors.Upsert(ctx, version, []index.Item{{ID: id, Vector: vector, Metadata: index.Metadata{Camera: "gate", Time: at}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := vectors.Activate(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	store, err := openCropStore(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	options.Lookup.AuditLog = filepath.Join(t.TempDir(), "audit.log")
	server, auditLog, err := newLookupServer(options, lookup.Config{Index: vectors, IndexVersion: "v1", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer auditLog.Close()
	api := httptest.NewServer(server)
	defer api.Close()
	status := func(cropID string) int {
		response, err := http.Post(api.URL+"/v1/search", "application/json", strings.NewReader(`{"crop_id":"`+cropID+`","k":1}`))
		if err != nil {
			t.Fatal(err)
		}
		response.Body.Close()
		return response.StatusCode
	}
	if status(only["v1"]) != http.StatusOK || status(only["v2"]) != http.StatusNotFound {
		t.Fatal("before the switch the server does not search v1 alone")
	}

	followCtx, stop := context.WithCancel(ctx)
	followed := make(chan []*loadedModel, 1)
	go func() {
		followed <- followActiveGallery(followCtx, options, vectors, server, "v1", 20*time.Millisecond)
	}()
	if err := vectors.Activate(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for status(only["v2"]) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the server did not move to the newly active gallery")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status(only["v1"]) != http.StatusNotFound {
		t.Error("after the switch the server still finds v1's crop")
	}
	stop()
	models := <-followed
	if len(models) != 1 || models[0].version.ID != "v2" {
		t.Errorf("followed models %v, want v2's", models)
	}
	for _, model := range models {
		model.Close()
	}
}

// searchJSON runs `reid search ... --json` and decodes its answer.
func searchJSON(t *testing.T, args ...string) (decoded struct {
	Matches []lookup.MatchJSON `json:"matches"`
}) {
	t.Helper()
	out, err := runReid(t, args...)
	if err != nil {
		t.Fatalf("reid %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := json.Unmarshal([]byte(out[max(strings.Index(out, "{"), 0):]), &decoded); err != nil {
		t.Fatalf("reid search output: %v\n%s", err, out)
	}
	return decoded
}

// cropImageFile writes a stored crop's JPEG to a file for `reid search --image` and returns its path.
func cropImageFile(t *testing.T, store cropStore, id string) string {
	t.Helper()
	jpegBytes, err := store.Image(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "query.jpg")
	if err := os.WriteFile(path, jpegBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
