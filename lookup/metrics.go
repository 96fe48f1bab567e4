package lookup

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics lives in its own registry per Server, so two servers (tests, `reid run`) never collide
// over a global registry.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	matches  prometheus.Histogram
	// Watches: how many there are, the alerts they raised, and how long a check of them all takes.
	watches    prometheus.Gauge
	alerts     prometheus.Counter
	watchCheck prometheus.Histogram
	webhook    *prometheus.CounterVec
	// watchServer is 1 while this server keeps the watches; registered only where watches are on.
	watchServer prometheus.Gauge
	// erasedCrops counts the crops deleted from the store on request (POST /v1/erasures).
	erasedCrops prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reid_lookup_requests_total",
			Help: "HTTP requests served by the lookup API, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "reid_lookup_request_duration_seconds",
			Help:    "Time to serve a lookup request, by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		matches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "reid_lookup_search_matches",
			Help:    "Matches returned per search.",
			Buckets: []float64{0, 1, 5, 10, 20, 50, 100, 200, 500},
		}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reid_lookup_watches",
			Help: "Watches kept by the lookup server (POST /v1/watches), expired ones included.",
		}),
		alerts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reid_lookup_alerts_total",
			Help: "Alerts raised by watches: new sightings of a watched person.",
		}),
		watchCheck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "reid_lookup_watch_check_seconds",
			Help:    "Time to check every live watch once.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		webhook: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reid_lookup_alert_webhook_total",
			Help: "Alert webhook outcomes: alerts delivered, and failed deliveries (each retried); scope is a key scope's own webhook, empty for lookup.alert_webhook.",
		}, []string{"outcome", "scope"}),
		watchServer: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reid_lookup_watch_server",
			Help: "1 while this lookup server keeps the site's watches (checks them, raises and delivers their alerts); 0 while it forwards them to the one that does.",
		}),
		erasedCrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reid_lookup_erased_crops_total",
			Help: "Crops erased on request (POST /v1/erasures), deleted from the crop store with their vectors.",
		}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.matches, m.watches, m.alerts, m.watchCheck, m.webhook, m.erasedCrops,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(data []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(data)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument counts and times every request by the mux pattern that served it (set on the request
// by ServeMux), so ids in paths never become label values.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		recorder, ok := w.(*statusRecorder)
		if !ok {
			recorder = &statusRecorder{ResponseWriter: w}
		}
		next.ServeHTTP(recorder, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		status := recorder.status
		if status == 0 {
			status = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}
