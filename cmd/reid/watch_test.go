package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/stream"
)

// checkWatchAlerts runs the lookup server as reid builds it over a data dir that `reid run` filled,
// with the real model and index: a watch made from a crop of one track alerts, through a long
// poll, when that person's crops appear on another camera after it was made, and the watch is
// kept under the data dir.
func checkWatchAlerts(t *testing.T, options config.Options, vectors index.Index, store cropStore, version string, trackCrops map[int64][]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	track := trackCrops[longestTrack(trackCrops)]
	model, err := openModel(ctx, options, version)
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	options.Lookup.WatchInterval = 100 * time.Millisecond
	base, stop := serveLookup(t, options, lookup.Config{Index: vectors, IndexVersion: version, Store: store, Embedder: model.network})
	defer stop()

	query := track[len(track)/2]
	response, err := http.Post(base+"/v1/watches", "application/json", strings.NewReader(fmt.Sprintf(`{"crop_id":%q,"name":"e2e"}`, query)))
	if err != nil {
		t.Fatal(err)
	}
	var watch lookup.Watch
	json.NewDecoder(response.Body).Decode(&watch)
	response.Body.Close()
	if response.StatusCode != http.StatusCreated || watch.QueryTrack == nil {
		t.Fatalf("POST /v1/watches: status %d, %+v", response.StatusCode, watch)
	}
	if _, err := os.Stat(filepath.Join(options.DataDir, "watches", watch.ID+".json")); err != nil {
		t.Errorf("the watch is not kept under the data dir: %v", err)
	}

	// The same person seen again, now, on another camera: that track's crops as a new track of
	// "door" (their stored vectors, new ids and times).
	items, err := vectors.Get(ctx, version, track)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	doorTrack := cropstore.TrackID(now, 1)
	var seen []index.Item
	for i, item := range items {
		at := now.Add(time.Duration(i) * 200 * time.Millisecond)
		item.ID = cropstore.NewID("door", at, int64(i), 0)
		item.Metadata.Camera, item.Metadata.Time, item.Metadata.Track = "door", at, doorTrack
		seen = append(seen, item)
	}
	if err := vectors.Upsert(ctx, version, seen); err != nil {
		t.Fatal(err)
	}

	poll, err := http.Get(base + "/v1/alerts?after=0&wait=20s")
	if err != nil {
		t.Fatal(err)
	}
	var alerts lookup.AlertsResponse
	json.NewDecoder(poll.Body).Decode(&alerts)
	poll.Body.Close()
	if poll.StatusCode != http.StatusOK || len(alerts.Alerts) != 1 {
		t.Fatalf("GET /v1/alerts: status %d, %+v; want one alert", poll.StatusCode, alerts)
	}
	alert := alerts.Alerts[0]
	if alert.Camera != "door" || alert.Track != doorTrack || alert.Crops != len(seen) || alert.Score < 0.9 || alert.Model != version {
		t.Errorf("alert %+v: want door's track %d with its %d crops, scored >= 0.9 by %s", alert, doorTrack, len(seen), version)
	}
}

// checkErasure erases the track the watch of checkWatchAlerts was made from, through the lookup
// server as reid builds it over the data dir `reid run` filled: its crops leave the crop store
// and the gallery, the watch goes with its image, and the audit log keeps the erasure's reason.
func checkErasure(t *testing.T, options config.Options, vectors index.Index, store cropStore, trackCrops map[int64][]string) (erased []string) {
	t.Helper()
	ctx := context.Background()
	track := longestTrack(trackCrops)
	erased = slices.Sorted(slices.Values(trackCrops[track]))
	watchFiles, _ := filepath.Glob(filepath.Join(options.DataDir, "watches", "w*.json"))
	if len(watchFiles) != 1 {
		t.Fatalf("%d watches kept, want checkWatchAlerts's one", len(watchFiles))
	}
	watchID := strings.TrimSuffix(filepath.Base(watchFiles[0]), ".json")

	options.Lookup.AuditLog = filepath.Join(t.TempDir(), "audit.log")
	server, auditLog, err := newLookupServer(options, lookup.Config{Index: vectors, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer auditLog.Close()
	api := httptest.NewServer(server) // loopback, and no keys configured: it may erase
	defer api.Close()
	body := fmt.Sprintf(`{"tracks":[{"camera":"gate","track":%d}],"reason":"e2e erasure"}`, track)
	response, err := http.Post(api.URL+"/v1/erasures", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var result lookup.ErasureResponse
	json.NewDecoder(response.Body).Decode(&result)
	response.Body.Close()
	if response.StatusCode != http.StatusOK || !slices.Equal(result.CropIDs, erased) || result.Crops != len(erased) ||
		result.Vectors != len(erased) || !slices.Equal(result.Watches, []string{watchID}) || !result.IndexCompacted {
		t.Fatalf("POST /v1/erasures: status %d, %+v; want track %d's %d crops and vectors and watch %s", response.StatusCode, result, track, len(erased), watchID)
	}
	if items, err := vectors.Get(ctx, "", erased); err != nil || len(items) != 0 {
		t.Errorf("%d erased crops still in the gallery (%v)", len(items), err)
	}
	for _, id := range erased {
		if _, err := store.Metadata(ctx, id); !errors.Is(err, cropstore.ErrNotFound) {
			t.Errorf("erased crop %s: %v; want not found", id, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(options.DataDir, "watches", watchID+".*")); len(left) != 0 {
		t.Errorf("the erased track's watch left %v", left)
	}
	// Nothing under the data dir names an erased crop any more (the index's log and older
	// snapshot included), but the broker's topics, which keep their records until
	// stream.topic_retention (docs/OPERATIONS.md, "Erasure requests").
	err = filepath.WalkDir(options.DataDir, func(path string, entry os.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			if entry != nil && entry.IsDir() && entry.Name() == "broker" {
				return filepath.SkipDir
			}
			return err
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, id := range erased {
			if bytes.Contains(content, []byte(id)) {
				t.Errorf("%s still names erased crop %s", path, id)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	audit, err := os.ReadFile(options.Lookup.AuditLog)
	if err != nil || !strings.Contains(string(audit), `"route":"POST /v1/erasures"`) || !strings.Contains(string(audit), "e2e erasure") {
		t.Errorf("audit log %q (%v) has no erasure", audit, err)
	}
	return erased
}

// checkErasureSticks reads the whole crops topic again after checkErasure, as a consumer group
// rewound (or a replayed dead letter, or a track still in view) brings erased crops back to the
// archiver and the embedder: they store and index every crop again but the erased ones.
func checkErasureSticks(t *testing.T, options config.Options, vectors index.Index, store cropStore, erased []string, crops int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, closeBroker, err := openStream(ctx, options, true)
	if err != nil {
		t.Fatal(err)
	}
	defer closeBroker()
	options.Stream.ArchiveGroup, options.Stream.EmbedGroup = "rewound-archiver", "rewound-embedder"
	archiveConsumer, archive, err := newArchiveStage(options, conn, store)
	if err != nil {
		t.Fatal(err)
	}
	model, err := openModel(ctx, options, "")
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	embed, err := newEmbedStage(ctx, options, conn, model, vectors, store)
	if err != nil {
		t.Fatal(err)
	}
	var consumers sync.WaitGroup
	defer func() { // before the broker closes
		cancel()
		consumers.Wait()
	}()
	for _, consumer := range []*stream.Consumer{archiveConsumer, embed.consumer} {
		consumers.Go(func() { consumer.Run(ctx) })
	}
	deadline := time.Now().Add(2 * time.Minute)
	for archiveConsumer.Stats().Handled < int64(crops) || embed.consumer.Stats().Handled < int64(crops) {
		if time.Now().After(deadline) {
			t.Fatalf("the rewound groups handled %d and %d of %d records", archiveConsumer.Stats().Handled, embed.consumer.Stats().Handled, crops)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if archive.Archived() != int64(crops-len(erased)) || archive.Erased() != int64(len(erased)) {
		t.Errorf("the archiver stored %d and dropped %d; want %d and the %d erased", archive.Archived(), archive.Erased(), crops-len(erased), len(erased))
	}
	if stats := embed.embedder.Stats(); stats.Embedded != int64(crops-len(erased)) || stats.Erased != int64(len(erased)) {
		t.Errorf("the embedder indexed %d and dropped %d; want %d and the %d erased", stats.Embedded, stats.Erased, crops-len(erased), len(erased))
	}
	if items, err := vectors.Get(ctx, "", erased); err != nil || len(items) != 0 {
		t.Errorf("%d erased crops indexed again (%v)", len(items), err)
	}
	for _, id := range erased {
		if _, err := store.Metadata(ctx, id); !errors.Is(err, cropstore.ErrNotFound) {
			t.Errorf("erased crop %s stored again: %v", id, err)
		}
	}
}

// checkRestoreEnforcesErasures restores the backup taken before checkErasure's erasure, as
// docs/OPERATIONS.md says: the backup as the data dir. The lookup server that erased copied the
// erasure into that backup's record (the newest backup's), so a lookup server over it erases the
// track's crops again as it starts.
func checkRestoreEnforcesErasures(t *testing.T, dataDir, backupDir string, erased []string) {
	t.Helper()
	ctx := context.Background()
	records, err := filepath.Glob(filepath.Join(dataDir, "crops", "@erasures", "*.json"))
	if err != nil || len(records) == 0 {
		t.Fatalf("the data dir's record of erasures: %v, %v", records, err)
	}
	for _, record := range records {
		content, err := os.ReadFile(record)
		if err != nil {
			t.Fatal(err)
		}
		if copied, err := os.ReadFile(filepath.Join(backupDir, "crops", "@erasures", filepath.Base(record))); err != nil || !bytes.Equal(copied, content) {
			t.Fatalf("erasure %s is not in the newest backup's record (%v)", filepath.Base(record), err)
		}
	}
	if result, _ := checkBackup(dataDir, filepath.Join(dataDir, "crops"), time.Now()); result.err != nil {
		t.Errorf("reid check's backup line after the erasure: %v", result.err)
	}
	store, vectors := openStoreAndIndex(t, loadOptions(t, backupDir))
	defer vectors.Close()
	if items, err := vectors.Get(ctx, "", erased); err != nil || len(items) != len(erased) {
		t.Fatalf("the backup holds %d of the %d erased crops' vectors (%v); want all, as taken before the erasure", len(items), len(erased), err)
	}
	_, stop := serveLookup(t, loadOptions(t, backupDir), lookup.Config{Index: vectors, Store: store})
	defer stop()
	deadline := time.Now().Add(time.Minute)
	for {
		items, err := vectors.Get(ctx, "", erased)
		if err == nil && len(items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d erased crops still indexed in the restored data dir (%v)", len(items), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range erased {
		if _, err := store.Metadata(ctx, id); !errors.Is(err, cropstore.ErrNotFound) {
			t.Errorf("erased crop %s is still in the restored crop store: %v", id, err)
		}
	}
}

// serveLookup serves the lookup server reid builds from options and config on a loopback port,
// with an audit log of its own, and returns its base URL and the function that stops it: call
// that before closing what config holds.
func serveLookup(t *testing.T, options config.Options, config lookup.Config) (base string, stop func()) {
	t.Helper()
	options.Lookup.AuditLog = filepath.Join(t.TempDir(), "audit.log")
	server, auditLog, err := newLookupServer(options, config)
	if err != nil {
		t.Fatal(err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		auditLog.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.ServeListener(ctx, listener) }()
	return "http://" + listener.Addr().String(), func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		auditLog.Close()
	}
}

// openStoreAndIndex opens the crop store and the index options name; the caller closes the index.
func openStoreAndIndex(t *testing.T, options config.Options) (cropStore, index.Index) {
	t.Helper()
	store, err := openCropStore(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	vectors, err := openIndex(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	return store, vectors
}

// longestTrack is the track with the most crops (the lowest id of those with as many), the one
// the end-to-end checks watch and erase.
func longestTrack(tracks map[int64][]string) int64 {
	var longest int64
	for id, crops := range tracks {
		if len(crops) > len(tracks[longest]) || (len(crops) == len(tracks[longest]) && id < longest) {
			longest = id
		}
	}
	return longest
}
