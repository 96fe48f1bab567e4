package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/lookup"
)

// checkWatchAlerts runs the lookup server as reid builds it over a data dir that `reid run` filled,
// with the real model and index: a watch made from a crop of one track alerts, through a long
// poll, when that person's crops appear on another camera after it was made, and the watch is
// kept under the data dir.
func checkWatchAlerts(t *testing.T, options config.Options, vectors index.Index, store cropStore, version string, trackCrops map[int64][]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var track []string
	for _, crops := range trackCrops {
		if len(crops) > len(track) {
			track = crops
		}
	}
	model, err := openModel(ctx, options, version)
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	options.Lookup.AuditLog = filepath.Join(t.TempDir(), "audit.log")
	options.Lookup.WatchInterval = 100 * time.Millisecond
	server, auditLog, err := newLookupServer(options, lookup.Config{Index: vectors, IndexVersion: version, Store: store, Embedder: model.network})
	if err != nil {
		t.Fatal(err)
	}
	defer auditLog.Close()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- server.ServeListener(ctx, listener) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	base := "http://" + listener.Addr().String()

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
