package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/reid-project/reid/lookup"
)

// TestKeysCommand: reid keys new makes distinct random keys with their audit ids, and reid keys
// list puts a name to every configured key's id without printing a key.
func TestKeysCommand(t *testing.T) {
	out, err := runReid(t, "keys", "new", "--count", "3")
	if err != nil {
		t.Fatalf("keys new: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`^([0-9a-f]{48})  (key-[0-9a-f]{12})$`)
	seen := map[string]bool{}
	var made []string
	for _, text := range strings.Split(strings.TrimSpace(out), "\n") {
		parts := line.FindStringSubmatch(text)
		if parts == nil || parts[2] != lookup.KeyID(parts[1]) || seen[parts[1]] {
			t.Fatalf("keys new printed %q", text)
		}
		seen[parts[1]] = true
		made = append(made, parts[1])
	}
	if len(made) != 3 {
		t.Fatalf("keys new --count 3 printed %d keys", len(made))
	}

	dir := t.TempDir()
	keysFile, configPath := filepath.Join(dir, "tenant.keys"), filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(keysFile, []byte("# carol, car park\n"+made[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	configText := "lookup:\n  api_keys: [" + made[0] + "]\n  scoped_api_keys:\n    - name: car-park\n      cameras: [car-park-1]\n      keys_file: " + keysFile + "\n"
	if err := os.WriteFile(configPath, []byte(configText), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runReid(t, "--config", configPath, "keys", "list")
	if err != nil {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	for _, want := range []string{lookup.KeyID(made[0]) + "  api", lookup.KeyID(made[1]) + "  scope car-park  " + keysFile + ":2  carol, car park"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys list lacks %q:\n%s", want, out)
		}
	}
	for _, key := range made[:2] {
		if strings.Contains(out, key) {
			t.Errorf("keys list printed a key:\n%s", out)
		}
	}
	out, err = runReid(t, "--config", configPath, "keys", "list", "--json")
	var entries []lookup.KeyEntry
	if err != nil || json.Unmarshal([]byte(out), &entries) != nil || len(entries) != 2 || entries[1].Note != "carol, car park" {
		t.Errorf("keys list --json: %v\n%s", err, out)
	}
	if out, err := runReid(t, "keys", "new", "--count", "0"); err == nil {
		t.Errorf("keys new --count 0: no error\n%s", out)
	}
}
