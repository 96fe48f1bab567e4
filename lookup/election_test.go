package lookup

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/cropstore/s3test"
	"github.com/reid-project/reid/internal/lease"
	"github.com/reid-project/reid/lookup/lookuptest"
)

// swapStores are the stores an election runs on: a directory, and a bucket's folder (on the fake,
// and on a real S3-compatible server when REIDTEST_S3_ENDPOINT names one).
func swapStores(t *testing.T) map[string]swapStore {
	t.Helper()
	dir, err := DirWatchStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]swapStore{"directory": dir.(swapStore)}
	for _, bucket := range s3test.Buckets(t, "elections") {
		store, err := cropstore.OpenS3(context.Background(), cropstore.S3Options{Endpoint: bucket.Endpoint, Bucket: bucket.Name, Region: bucket.Region, AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		folder, err := store.Folder("@watches")
		if err != nil {
			t.Fatal(err)
		}
		stores["bucket-"+bucket.Kind] = folder
	}
	return stores
}

// TestElectedWatchServer runs three lookup servers that elect their watch server over one watch
// directory: exactly one keeps the watches, the others forward to it, and when it stops another
// takes over at once with every watch and alert, raising none twice; the alert webhook, which
// every server has configured, gets every alert, whichever server raised it.
func TestElectedWatchServer(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: testStart.Add(time.Minute)}
	receiver := &webhookReceiver{t: t, secret: "shh", got: make(chan struct{}, 1)}
	endpoint := httptest.NewServer(receiver)
	defer endpoint.Close()
	type member struct {
		fixture *fixture
		url     string
		stop    context.CancelFunc
		done    chan struct{} // closed when Serve has returned err
		err     error
	}
	var members []*member
	var first *fixture
	for range 3 {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + listener.Addr().String()
		f := newFixture(t, func(c *Config) {
			c.WatchDir, c.Now, c.WatchServer, c.AdvertiseURL = dir, clock.Now, WatchServerElect, url
			c.WatchInterval, c.watchLeaseTTL = 50*time.Millisecond, 3*time.Second
			c.AlertWebhook, c.AlertWebhookSecret = endpoint.URL+"/alerts", receiver.secret
			if first != nil {
				c.Index, c.Store = first.gallery.Index, first.gallery.Store
			}
		})
		if first == nil {
			first = f
		}
		f.http.URL = url // requests go to the server Serve runs
		ctx, stop := context.WithCancel(context.Background())
		m := &member{fixture: f, url: url, stop: stop, done: make(chan struct{})}
		go func() {
			defer close(m.done)
			m.err = f.server.ServeListener(ctx, listener)
		}()
		t.Cleanup(func() { stop(); <-m.done })
		members = append(members, m)
	}
	holders := func() []*member {
		var held []*member
		for _, m := range members {
			if m.fixture.server.watches.Load() != nil {
				held = append(held, m)
			}
		}
		return held
	}
	waitForOneHolder := func() *member {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if held := holders(); len(held) == 1 {
				return held[0]
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%d servers keep the watches, want 1", len(holders()))
		return nil
	}
	holder := waitForOneHolder()
	var follower *member
	for _, m := range members {
		if m != holder {
			follower = m
			break
		}
	}
	// Followers may still be reading the lease for the first time: retry while they say 503.
	var watch Watch
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, data, _ := follower.fixture.do(t, "POST", "/v1/watches", "application/json",
			strings.NewReader(fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, cropOf(t, first.gallery, "cam-a", 0))))
		if status == http.StatusCreated {
			watch = decode[Watch](t, data)
			break
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("a watch made through a follower: %d %s", status, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
	clock.Set(testStart.Add(10 * time.Minute))
	var alerts []Alert
	for deadline := time.Now().Add(5 * time.Second); len(alerts) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		alerts = watchAlerts(t, follower.fixture, watch.ID)
	}
	if len(alerts) != 2 {
		t.Fatalf("the elected server raised %d alerts, want 2", len(alerts))
	}
	for m, want := range map[*member]string{holder: "reid_lookup_watch_server 1", follower: "reid_lookup_watch_server 0"} {
		if _, data, _ := m.fixture.do(t, "GET", "/metrics", "", nil); !strings.Contains(string(data), want+"\n") {
			t.Errorf("%s's metrics lack %q", m.url, want)
		}
	}

	// The holder stops: it gives the lease up, and another takes it well within the TTL.
	stopped := time.Now()
	holder.stop()
	if <-holder.done; holder.err != nil {
		t.Fatal(holder.err)
	}
	members = slices.DeleteFunc(members, func(m *member) bool { return m == holder })
	successor := waitForOneHolder()
	if took := time.Since(stopped); took > 1500*time.Millisecond {
		t.Errorf("the next server took over after %v; a released lease is taken at the next renewal", took)
	}
	// A follower forwards to the stopped server (502, Retry-After) until its next look at the
	// lease, a fifth of the TTL at most.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		learnt := true
		for _, m := range members {
			elected := m.fixture.server.electedURL.Load()
			learnt = learnt && elected != nil && *elected == successor.url
		}
		if learnt {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the followers did not learn the new watch server")
		}
	}
	time.Sleep(300 * time.Millisecond) // several checks by the successor
	for _, m := range members {
		again := watchAlerts(t, m.fixture, watch.ID)
		if len(again) != 2 || again[0].Seq != alerts[0].Seq || again[1].Seq != alerts[1].Seq {
			t.Errorf("after the handover %s has alerts %+v, want the same two", m.url, again)
		}
	}
	if raised := testutil.ToFloat64(successor.fixture.server.metrics.alerts); raised != 0 {
		t.Errorf("the successor raised %v alerts again", raised)
	}

	// A watch made after the handover alerts through the successor's webhook delivery, which
	// goes on from the cursor the first server left in the store.
	second := createWatch(t, members[0].fixture, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, cropOf(t, first.gallery, "cam-a", 1)))
	addSighting(t, first.gallery, 1, "cam-c", testStart.Add(10*time.Minute+30*time.Second), 900, 900)
	clock.Set(testStart.Add(11 * time.Minute))
	var more []Alert
	for deadline := time.Now().Add(5 * time.Second); len(more) < 1 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		more = watchAlerts(t, members[0].fixture, second.ID)
	}
	if len(more) != 1 {
		t.Fatalf("the watch made after the handover raised %d alerts, want 1", len(more))
	}
	delivered := map[int64]bool{}
	for _, seq := range receiver.waitReceived(t, 3) {
		delivered[seq] = true
	}
	for _, alert := range slices.Concat(alerts, more) {
		if !delivered[alert.Seq] {
			t.Errorf("alert %d was never delivered to the webhook", alert.Seq)
		}
	}
}

// carelessStore is an S3-compatible server that ignores conditional writes.
type carelessStore struct{ swapStore }

func (c carelessStore) Swap(ctx context.Context, name string, data []byte, _ string) (string, error) {
	if err := c.swapStore.Write(ctx, name, data); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", data), nil
}

// A store that ignores the conditions of a swap is refused at start: on it two servers could both
// take the lease. The stores reid uses pass, and the check leaves no file behind.
func TestElectionRefusesAStoreWithoutConditionalWrites(t *testing.T) {
	for name, store := range swapStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if err := lease.CheckStore(ctx, store); err != nil {
				t.Fatal(err)
			}
			if names, err := store.List(ctx); err != nil || len(names) != 0 {
				t.Errorf("the check left %v (%v)", names, err)
			}
			_, err := New(Config{Store: lookuptest.NewStore(), WatchStore: carelessStore{store}, WatchServer: WatchServerElect, AdvertiseURL: "http://10.0.0.1:8080"})
			if err == nil || !strings.Contains(err.Error(), "ignores conditional writes (If-None-Match)") {
				t.Errorf("a store that ignores conditions: %v", err)
			}
		})
	}
}

func TestDefaultAdvertiseURL(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct{ addr, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"lookup-2.site:8080", "http://lookup-2.site:8080"},
		{"[fd00::5]:8080", "http://[fd00::5]:8080"},
		{":8080", "http://" + net.JoinHostPort(hostname, "8080")},
		{"0.0.0.0:8080", "http://" + net.JoinHostPort(hostname, "8080")},
		{"[::]:8080", "http://" + net.JoinHostPort(hostname, "8080")},
		{"8080", ""},
	} {
		got, err := defaultAdvertiseURL(test.addr)
		if got != test.want || (err != nil) != (test.want == "") {
			t.Errorf("%q: %q (%v), want %q", test.addr, got, err, test.want)
		}
	}
}
