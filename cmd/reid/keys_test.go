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

// reid keys revoke takes a key out of its file by its audit id, leaving a dated comment and the
// rest of the file as it was; a key written in the configuration itself is only pointed at.
func TestKeysRevoke(t *testing.T) {
	dir := t.TempDir()
	keysFile, configPath := filepath.Join(dir, "site.keys"), filepath.Join(dir, "site.yaml")
	const alice, bob, inline = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "inline-key-0123456789abcdef"
	if err := os.WriteFile(keysFile, []byte("# alice\n"+alice+"\n# bob\n"+bob+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(configPath, []byte("lookup:\n  api_keys_file: "+keysFile+"\n  admin_api_keys: ["+inline+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runReid(t, "--config", configPath, "keys", "revoke", lookup.KeyID(bob))
	if err != nil || !strings.Contains(out, "revoked "+lookup.KeyID(bob)+" (api) at "+keysFile+":4") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(keysFile)
	lines := strings.Split(string(raw), "\n")
	if len(lines) != 5 || lines[1] != alice || lines[2] != "# bob" || !strings.HasPrefix(lines[3], "# "+lookup.KeyID(bob)+" revoked 20") || strings.Contains(string(raw), bob) {
		t.Errorf("the keys file after the revocation:\n%s", raw)
	}
	if info, err := os.Stat(keysFile); err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("the keys file's mode: %v, %v", info.Mode(), err)
	}
	keys, err := lookup.LoadAPIKeys(nil, keysFile)
	if err != nil || len(keys) != 1 || keys[0] != alice {
		t.Errorf("the keys file now holds %d keys (%v)", len(keys), err)
	}
	for _, test := range []struct{ id, want string }{
		{lookup.KeyID(bob), "no configured key has the id"},
		{lookup.KeyID(inline), "is written in the configuration itself"},
	} {
		if out, err := runReid(t, "--config", configPath, "keys", "revoke", test.id); err == nil || !strings.Contains(err.Error(), test.want) {
			t.Errorf("revoke %s: %v\n%s", test.id, err, out)
		}
	}
}
