package main

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/lookup"
)

// TestAuditCommand reads a rotated, compressed audit log and the live one, as a data-protection
// officer would ask them: everything, one key, the erasures, the requests that named one crop, a
// time range; a damaged line is skipped, not fatal.
func TestAuditCommand(t *testing.T) {
	dataDir := t.TempDir()
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	crop := "gate_20261120T085900000000_12_0"
	records := []lookup.AuditRecord{
		{Time: at, Key: "key-aaaa", Remote: "10.0.0.5:4000", Method: "POST", Route: "POST /v1/search", Status: 200,
			Params: map[string]any{"crop_id": crop, "k": 20}, Results: 20},
		{Time: at.Add(time.Hour), Key: "key-bbbb", Scope: "north", Remote: "10.0.0.6:4000", Method: "GET", Route: "GET /v1/cameras", Status: 200, Results: -1},
		{Time: at.Add(48 * time.Hour), Key: "key-admin", Remote: "10.0.0.7:4000", Method: "POST", Route: "POST /v1/erasures", Status: 200,
			Params: map[string]any{"reason": "DSR-2026-117", "erased_crop_ids": []string{crop, "gate_20261120T085900100000_13_0"}}, Results: 2},
		{Time: at.Add(72 * time.Hour), Key: "key-aaaa", Remote: "10.0.0.5:4000", Method: "POST", Route: "POST /v1/watches", Status: 201,
			Params: map[string]any{"crop_id": "hall_20261123T090000000000_4_0"}, Results: -1},
	}
	lines := func(records []lookup.AuditRecord) string {
		var text strings.Builder
		for _, record := range records {
			line, _ := json.Marshal(record)
			text.Write(append(line, '\n'))
		}
		return text.String()
	}
	// The first two went to a rotated, compressed file; the rest to the live one, after a line a
	// crash cut short.
	rotated := filepath.Join(dataDir, "audit.log.1.gz")
	file, err := os.Create(rotated)
	if err != nil {
		t.Fatal(err)
	}
	zipped := gzip.NewWriter(file)
	zipped.Write([]byte(lines(records[:2])))
	zipped.Close()
	file.Close()
	live := filepath.Join(dataDir, "audit.log")
	if err := os.WriteFile(live, []byte(`{"time":"2026-11-21T`+"\n"+lines(records[2:])), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string // routes of the records printed, in order
	}{
		{"the live log by default", nil, []string{"POST /v1/erasures", "POST /v1/watches"}},
		{"both files", []string{rotated, live}, []string{"POST /v1/search", "GET /v1/cameras", "POST /v1/erasures", "POST /v1/watches"}},
		{"one key", []string{rotated, live, "--key", "key-aaaa"}, []string{"POST /v1/search", "POST /v1/watches"}},
		{"one key scope", []string{rotated, live, "--scope", "north"}, []string{"GET /v1/cameras"}},
		{"the erasures", []string{rotated, live, "--route", "erasures"}, []string{"POST /v1/erasures"}},
		{"who named a crop", []string{rotated, live, "--crop", crop}, []string{"POST /v1/search", "POST /v1/erasures"}},
		{"a time range", []string{rotated, live, "--since", "2026-11-20T09:30:00Z", "--until", "2026-11-22T12:00:00Z"}, []string{"GET /v1/cameras", "POST /v1/erasures"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			out, err := runReid(t, append([]string{"--data-dir", dataDir, "audit"}, test.args...)...)
			if err != nil {
				t.Fatalf("reid audit: %v\n%s", err, out)
			}
			var routes []string
			for _, line := range strings.Split(out, "\n") {
				fields := strings.Fields(line)
				if len(fields) > 4 && strings.HasPrefix(fields[0], "2026-") {
					routes = append(routes, fields[3]+" "+fields[4])
				}
			}
			if strings.Join(routes, "|") != strings.Join(test.want, "|") || !strings.Contains(out, "records") {
				t.Errorf("printed %q, want %q:\n%s", routes, test.want, out)
			}
		})
	}
	if out, _ := runReid(t, "--data-dir", dataDir, "audit", rotated); !strings.Contains(out, " key-bbbb/north ") {
		t.Errorf("a scoped key's record does not show its scope:\n%s", out)
	}
	out, err := runReid(t, "--data-dir", dataDir, "audit", live, "--route", "erasures", "--json")
	if err != nil || !strings.Contains(out, `"reason":"DSR-2026-117"`) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("--json: %v\n%s", err, out)
	}
	if out, err := runReid(t, "--data-dir", dataDir, "audit", filepath.Join(dataDir, "missing.log")); err == nil {
		t.Errorf("a missing file: no error\n%s", out)
	}
}
