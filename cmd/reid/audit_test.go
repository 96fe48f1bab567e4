package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeReopensAuditLogOnHangup rotates a running `reid serve`'s audit log as logrotate does:
// the file is moved away, SIGHUP, and the next requests are recorded in a new file at the path
// while the moved one keeps the earlier ones. The server keeps serving throughout.
func TestServeReopensAuditLogOnHangup(t *testing.T) {
	dataDir := pipelineFixture(t)
	addr := freeAddr(t)
	child := startChild(t, dataDir, []string{"REID_LOOKUP_ADDR=" + addr}, "serve")
	defer child.Process.Kill()
	get := func(path string) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			response, err := http.Get("http://" + addr + path)
			if err == nil {
				response.Body.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
	}
	auditPath := filepath.Join(dataDir, "audit.log")
	get("/v1/cameras?before=rotation")
	rotated := auditPath + ".1"
	if err := os.Rename(auditPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := child.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(auditPath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new audit log 30 s after SIGHUP")
		}
	}
	get("/v1/cameras?after=rotation")
	old, _ := os.ReadFile(rotated)
	current, _ := os.ReadFile(auditPath)
	if !strings.Contains(string(old), "before") || strings.Contains(string(old), "after") {
		t.Errorf("the moved audit log holds:\n%s", old)
	}
	if !strings.Contains(string(current), "after") || strings.Contains(string(current), "before") {
		t.Errorf("the new audit log holds:\n%s", current)
	}
	if info, err := os.Stat(auditPath); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("new audit log: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := child.Wait(); err != nil {
		t.Errorf("reid serve after SIGHUP and SIGTERM: %v", err)
	}
}
