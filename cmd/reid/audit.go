package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/reid-project/reid/config"
)

// auditFile is the lookup server's audit log: append-only, private, each record synced by the
// server before it answers. Reopen starts a new file at the same path, so that logrotate (or an
// operator) can move the old one away and send SIGHUP, as with any long-running daemon's log.
type auditFile struct {
	path string
	mu   sync.Mutex
	file *os.File
}

func openAuditFile(path string) (*auditFile, error) {
	file, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &auditFile{path: path, file: file}, nil
}

func openAppend(path string) (*os.File, error) {
	// Append-only and private: it records who searched for which person.
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return file, nil
}

func (a *auditFile) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.file.Write(p)
}

func (a *auditFile) Sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.file.Sync()
}

// Reopen continues the log in a new file at its path, the old one synced and closed. When the path
// cannot be opened the log stays where it was.
func (a *auditFile) Reopen() error {
	file, err := openAppend(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.file
	a.file = file
	if err := old.Sync(); err != nil {
		old.Close()
		return fmt.Errorf("audit log: syncing the old file: %w", err)
	}
	return old.Close()
}

func (a *auditFile) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.file.Close()
}

// reopen is Reopen for a SIGHUP: the outcome is logged.
func (a *auditFile) reopen(context.Context) {
	if err := a.Reopen(); err != nil {
		slog.Error("audit log not reopened; records go on to the old file", "path", a.path, "err", err)
		return
	}
	slog.Info("audit log reopened", "path", a.path)
}

// onHangup calls fn on every SIGHUP until ctx ends or the returned function is called, which
// stops listening, cancels the context fn gets and waits for a call in progress.
func onHangup(ctx context.Context, fn func(ctx context.Context)) (stop func()) {
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hangups:
				fn(ctx)
			}
		}
	}()
	return func() {
		signal.Stop(hangups)
		cancel()
		<-done
	}
}

// auditLogPath is lookup.audit_log, by default <data_dir>/audit.log.
func auditLogPath(options config.Options) string {
	if options.Lookup.AuditLog != "" {
		return options.Lookup.AuditLog
	}
	return filepath.Join(options.DataDir, "audit.log")
}
