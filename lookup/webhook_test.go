package lookup

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// webhookReceiver is an application's alert endpoint: it refuses the first fail deliveries, then
// records the alerts it accepts, checking each delivery's signature.
type webhookReceiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	fail   int
	calls  int
	seqs   []int64
	got    chan struct{}
}

func (r *webhookReceiver) ServeHTTP(w http.ResponseWriter, request *http.Request) {
	body, _ := io.ReadAll(request.Body)
	if got, want := request.Header.Get("X-Reid-Signature"), WebhookSignature(r.secret, body); got != want {
		r.t.Errorf("signature %q, want %q", got, want)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls <= r.fail {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	var delivery WebhookDelivery
	if err := json.Unmarshal(body, &delivery); err != nil {
		r.t.Errorf("delivery %s: %v", body, err)
	}
	for _, alert := range delivery.Alerts {
		r.seqs = append(r.seqs, alert.Seq)
	}
	select {
	case r.got <- struct{}{}:
	default:
	}
}

func (r *webhookReceiver) received() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.seqs...)
}

// waitReceived waits until the receiver holds n alerts.
func (r *webhookReceiver) waitReceived(t *testing.T, n int) []int64 {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		if seqs := r.received(); len(seqs) >= n {
			return seqs
		}
		select {
		case <-r.got:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("the receiver has %d alerts after 15 s, want %d", len(r.received()), n)
		}
	}
}

// serveWatches runs ServeListener for server until the returned stop is called (at the latest
// when the test ends).
func serveWatches(t *testing.T, server *Server) (stop func()) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.ServeListener(ctx, listener) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(stop)
	return stop
}

func (r *webhookReceiver) setFailures(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = r.calls + n
}

func (r *webhookReceiver) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// TestAlertWebhook: alerts reach the receiver signed and in order, despite its failures and
// across a restart, and none twice.
func TestAlertWebhook(t *testing.T) {
	receiver := &webhookReceiver{t: t, secret: "webhook-secret-0123", got: make(chan struct{}, 1)}
	receiver.setFailures(1000)
	endpoint := httptest.NewServer(receiver)
	defer endpoint.Close()
	dir := t.TempDir()
	clock := &testClock{now: testStart.Add(time.Minute)}
	f := newFixture(t, func(c *Config) {
		c.WatchDir, c.Now, c.AlertWebhook, c.AlertWebhookSecret = dir, clock.Now, endpoint.URL+"/alerts", receiver.secret
	})
	stop := serveWatches(t, f.server)
	query := f.gallery.Crops[1]
	createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, query))
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 2 {
		t.Fatalf("raised %d alerts, want 2", raised)
	}
	// The receiver is down: the server tries, and is stopped before it succeeds.
	for receiver.callCount() < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	stop()

	// Restarted with the receiver back: both alerts arrive, after two more refusals.
	receiver.setFailures(2)
	restarted := newFixture(t, func(c *Config) {
		c.WatchDir, c.Now, c.AlertWebhook, c.AlertWebhookSecret = dir, clock.Now, endpoint.URL+"/alerts", receiver.secret
		c.Index, c.Store = f.gallery.Index, f.gallery.Store
	})
	serveWatches(t, restarted.server)
	seqs := receiver.waitReceived(t, 2)
	if len(seqs) != 2 || seqs[0] >= seqs[1] {
		t.Fatalf("received seqs %v, want the 2 alerts in order", seqs)
	}
	addSighting(t, f.gallery, f.gallery.Identity[query], "cam-b", testStart.Add(9*time.Minute), 777, 3)
	if raised := check(t, restarted); raised != 1 {
		t.Fatalf("raised %d alerts, want 1", raised)
	}
	receiver.waitReceived(t, 3)
	time.Sleep(200 * time.Millisecond) // anything sent twice would arrive by now
	if seqs = receiver.received(); len(seqs) != 3 || seqs[2] <= seqs[1] {
		t.Errorf("received seqs %v, want the third alert once, after the first two", seqs)
	}
}

func TestWebhookNeedsWatches(t *testing.T) {
	gallery := newFixture(t, nil).gallery
	if _, err := New(Config{Store: gallery.Store, AlertWebhook: "http://127.0.0.1:1/alerts"}); err == nil {
		t.Error("a webhook without a watch dir was accepted")
	}
}

// A key scope's webhook receives its own watches' alerts and no others, beside the site's, which
// receives every alert; each is signed with its own secret.
func TestScopedAlertWebhook(t *testing.T) {
	site := &webhookReceiver{t: t, secret: "site-secret-0123", got: make(chan struct{}, 1)}
	tenant := &webhookReceiver{t: t, secret: "tenant-secret-0123", got: make(chan struct{}, 1)}
	siteEndpoint, tenantEndpoint := httptest.NewServer(site), httptest.NewServer(tenant)
	defer siteEndpoint.Close()
	defer tenantEndpoint.Close()
	clock := &testClock{now: testStart.Add(time.Minute)}
	f := newFixture(t, func(c *Config) {
		c.WatchDir, c.Now = t.TempDir(), clock.Now
		c.AlertWebhook, c.AlertWebhookSecret = siteEndpoint.URL, site.secret
		c.ScopedAPIKeys = []KeyScope{{Name: "tenant", Cameras: []string{"cam-a", "cam-b"}, Keys: []string{tenantKey},
			AlertWebhook: tenantEndpoint.URL, AlertWebhookSecret: tenant.secret}}
	})
	serveWatches(t, f.server)
	query := cropOf(t, f.gallery, "cam-a", 0)
	tenantWatch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, query), asTenant...)
	createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, query))
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 3 {
		t.Fatalf("raised %d alerts, want 3", raised)
	}
	site.waitReceived(t, 3)
	tenantSeqs := tenant.waitReceived(t, 1)
	time.Sleep(200 * time.Millisecond) // anything more would arrive by now
	alerts := watchAlerts(t, f, tenantWatch.ID)
	if got := tenant.received(); len(got) != 1 || len(alerts) != 1 || got[0] != alerts[0].Seq {
		t.Errorf("the tenant's webhook received %v (first %v), want only its watch's alert %+v", got, tenantSeqs, alerts)
	}
	if got := site.received(); len(got) != 3 {
		t.Errorf("the site's webhook received %v, want all 3 alerts", got)
	}
}
