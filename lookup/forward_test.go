package lookup

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/index"
)

// TestForwardToWatchServer: a lookup server with a watch server answers every watch and alert
// route as the watch server does (the key's scope included), including a long poll that an alert
// raised there ends, and says so plainly when the watch server is down.
func TestForwardToWatchServer(t *testing.T) {
	primary, clock := scopedFixture(t, t.TempDir(), "cam-a", "cam-b")
	replica := newFixture(t, func(c *Config) {
		c.WatchServer = primary.http.URL
		c.Index, c.Store = primary.gallery.Index, primary.gallery.Store
		c.ScopedAPIKeys = []KeyScope{{Name: "tenant", Cameras: []string{"cam-a", "cam-b"}, Keys: []string{tenantKey}}}
	})
	query := cropOf(t, primary.gallery, "cam-a", 0)

	siteWatch := createWatch(t, replica, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9,"name":"via the replica"}`, query))
	tenantWatch := createWatch(t, replica, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, query), asTenant...)
	if status, data, _ := primary.do(t, "GET", "/v1/watches/"+siteWatch.ID, "", nil); status != http.StatusOK || !strings.Contains(string(data), "via the replica") {
		t.Fatalf("the watch made through the replica, on the watch server: %d %s", status, data)
	}
	if tenantWatch.Scope != "tenant" {
		t.Errorf("the tenant's watch made through the replica has scope %q", tenantWatch.Scope)
	}
	_, primaryImage, _ := primary.do(t, "GET", "/v1/watches/"+siteWatch.ID+"/image", "", nil)
	status, replicaImage, headers := replica.do(t, "GET", "/v1/watches/"+siteWatch.ID+"/image", "", nil)
	if status != http.StatusOK || !bytes.Equal(replicaImage, primaryImage) || headers.Get("Content-Type") != "image/jpeg" {
		t.Errorf("the watch's image through the replica: %d, %s, %d bytes (the watch server's: %d)", status, headers.Get("Content-Type"), len(replicaImage), len(primaryImage))
	}

	// A long poll through the replica ends when the watch server raises an alert.
	polled := make(chan AlertsResponse, 1)
	go func() {
		_, data, _ := replica.do(t, "GET", "/v1/alerts?after=0&wait=10s", "", nil, asTenant...)
		polled <- decode[AlertsResponse](t, data)
	}()
	time.Sleep(300 * time.Millisecond)
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, primary); raised != 3 {
		t.Fatalf("raised %d alerts, want 3", raised)
	}
	select {
	case response := <-polled:
		if len(response.Alerts) != 1 || response.Alerts[0].WatchID != tenantWatch.ID {
			t.Errorf("the tenant's long poll through the replica got %+v, want its one alert", response.Alerts)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the long poll through the replica did not end")
	}
	_, data, _ := replica.do(t, "GET", "/v1/alerts", "", nil)
	if alerts := decode[AlertsResponse](t, data).Alerts; len(alerts) != 3 {
		t.Errorf("the site's key sees %d alerts through the replica, want 3", len(alerts))
	}

	for _, request := range []struct {
		name, method, path string
		headers            []string
		want               int
	}{
		{"a bad key stops at the replica", "GET", "/v1/watches", []string{"Authorization", "Bearer not-a-key-0123456789"}, http.StatusUnauthorized},
		{"the tenant cannot delete the site's watch", "DELETE", "/v1/watches/" + siteWatch.ID, asTenant, http.StatusNotFound},
		{"the site's key can", "DELETE", "/v1/watches/" + siteWatch.ID, nil, http.StatusNoContent},
		{"and it is gone from the watch server", "GET", "/v1/watches/" + siteWatch.ID, nil, http.StatusNotFound},
	} {
		if status, data, _ := replica.do(t, request.method, request.path, "", nil, request.headers...); status != request.want {
			t.Errorf("%s: %d %s, want %d", request.name, status, data, request.want)
		}
	}
	forwarded := 0
	for _, record := range replica.audit.lines(t) {
		if record.Params["forwarded_to"] != nil {
			forwarded++
		}
	}
	if forwarded < 8 {
		t.Errorf("%d of the replica's audit records say they were forwarded", forwarded)
	}

	primary.http.Close()
	status, data, headers = replica.do(t, "GET", "/v1/watches", "", nil)
	if status != http.StatusBadGateway || !strings.Contains(string(data), "cannot be reached") || headers.Get("Retry-After") == "" {
		t.Errorf("with the watch server down: %d %s", status, data)
	}
	// Searches do not need the watch server.
	if status, _, _ := replica.do(t, "GET", "/v1/cameras", "", nil); status != http.StatusOK {
		t.Errorf("cameras with the watch server down: %d", status)
	}
}

// TestErasureThroughAReplicaReachesTheWatches: an erasure made through a server that forwards its
// watch routes cannot touch the watches, which the watch server keeps; the watch server's next
// check applies it from the record of erasures: the watch made from an erased track goes, and so
// does the alert that showed one, before anything else is checked.
func TestErasureThroughAReplicaReachesTheWatches(t *testing.T) {
	clock := &testClock{now: testStart.Add(time.Minute)}
	primary := newFixture(t, func(c *Config) {
		c.WatchDir, c.Now, c.AdminAPIKeys = t.TempDir(), clock.Now, []string{adminKey}
	})
	replica := newFixture(t, func(c *Config) {
		c.WatchServer, c.AdminAPIKeys = primary.http.URL, []string{adminKey}
		c.Index, c.Store = primary.gallery.Index, primary.gallery.Store
	})
	watched := createWatch(t, replica, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, cropOf(t, primary.gallery, "cam-a", 0)))
	otherQuery := cropOf(t, primary.gallery, "cam-a", 1)
	other := createWatch(t, replica, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, otherQuery))
	clock.Set(testStart.Add(10 * time.Minute))
	check(t, primary)
	alerts := watchAlerts(t, primary, watched.ID)
	if len(alerts) != 2 {
		t.Fatalf("the watch raised %d alerts, want 2 (cam-b and cam-c)", len(alerts))
	}
	erasedSighting := index.TrackRef{Camera: alerts[0].Camera, Track: alerts[0].Track}
	replica.erase(t, ErasureRequest{Tracks: []index.TrackRef{erasedSighting, trackOf(t, primary, otherQuery)}, Reason: "request 7"})
	if len(watchAlerts(t, primary, watched.ID)) != 2 {
		t.Fatal("the replica's erasure changed the watch server's watches itself; this test no longer shows the check doing it")
	}

	check(t, primary)
	kept := watchAlerts(t, primary, watched.ID)
	if len(kept) != 1 || (index.TrackRef{Camera: kept[0].Camera, Track: kept[0].Track}) == erasedSighting {
		t.Errorf("after the check the watch keeps %+v, want only the alert of the sighting not erased", kept)
	}
	if status, data, _ := primary.do(t, "GET", "/v1/watches/"+other.ID, "", nil); status != http.StatusNotFound {
		t.Errorf("the watch made from an erased track: %d %s, want 404", status, data)
	}
	applied := 0
	for _, record := range primary.audit.lines(t) {
		if record.Route == "erasures applied to the watches from the record" {
			applied++
		}
	}
	if applied != 1 {
		t.Errorf("the watch server audited %d applications of the record, want 1", applied)
	}
	// Nothing new: the next check leaves the watches alone.
	check(t, primary)
	if len(watchAlerts(t, primary, watched.ID)) != 1 {
		t.Error("a later check changed the watch again")
	}
}
