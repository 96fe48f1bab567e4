package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/lookup"
)

// startOps serves a long-running process's operations endpoints on ops.addr: /metrics (the
// stage's own collectors beside Go's and the process's), /healthz, and with ops.profiling Go's
// profiles under /debug/pprof/. At scale `reid ingest`, `reid embed` and `reid archive` run
// without a lookup server, and this is the only way to watch them. With no ops.addr it serves
// nothing. The returned function stops the listener.
func startOps(ctx context.Context, options config.Ops, stage ...prometheus.Collector) (stop func(), err error) {
	if options.Addr == "" {
		return func() {}, nil
	}
	// Profiles show goroutine stacks, the command line and where memory goes: for local eyes only.
	if options.Profiling && !lookup.IsLoopback(options.Addr) {
		return nil, fmt.Errorf("ops.profiling: refusing to serve profiles on %s, which is not loopback", options.Addr)
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, collector := range stage {
		if err := registry.Register(collector); err != nil {
			return nil, fmt.Errorf("ops metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	if options.Profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	listener, err := (&net.ListenConfig{}).Listen(ctx, "tcp", options.Addr)
	if err != nil {
		return nil, fmt.Errorf("ops.addr: %w", err)
	}
	// No write timeout: a CPU profile or trace streams for as long as its ?seconds= asks.
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("ops listener", "addr", listener.Addr().String(), "err", err)
		}
	}()
	slog.Info("ops endpoints", "addr", listener.Addr().String(), "profiling", options.Profiling)
	return func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := server.Shutdown(shutdownCtx); err != nil {
			server.Close()
		}
		<-done
	}, nil
}
