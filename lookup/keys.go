package lookup

// Keys are configured as lists and as files of one key per line. The audit log names a key only by
// an id (a prefix of its SHA-256), so that the log itself gives no one access; KeyEntries lets an
// operator, who holds the keys, put a name to the ids: the comment above a key in its file is
// shown with it.

import (
	"fmt"
	"os"
	"strings"

	"github.com/reid-project/reid/config"
)

// minKeyLength is the shortest key accepted: shorter ones could be guessed.
const minKeyLength = 16

// configuredKey is one key and where it was configured.
type configuredKey struct {
	key string
	// source is "config" for a key in a list, or FILE:LINE; file and line say the same.
	source string
	file   string
	line   int
	// note is the comment just above a key in its file ("# alice, investigations").
	note string
}

// readKeys reads keys and the keys of file (one per line; blank lines and lines starting with '#'
// ignored) and checks each is long enough.
func readKeys(keys []string, file string) ([]configuredKey, error) {
	var all []configuredKey
	for _, key := range keys {
		all = append(all, configuredKey{key: strings.TrimSpace(key), source: "config"})
	}
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("lookup: api key file: %w", err)
		}
		note := ""
		for number, line := range strings.Split(string(raw), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "":
				note = ""
			case strings.HasPrefix(line, "#"):
				note = strings.TrimSpace(strings.TrimLeft(line, "#"))
			default:
				all = append(all, configuredKey{key: line, source: fmt.Sprintf("%s:%d", file, number+1), file: file, line: number + 1, note: note})
				note = ""
			}
		}
	}
	for i, key := range all {
		if len(key.key) < minKeyLength {
			where := fmt.Sprintf("api key %d", i+1)
			if key.source != "config" {
				where = "the api key at " + key.source
			}
			return nil, fmt.Errorf("lookup: %s is %d characters; use at least %d random characters (reid keys new)", where, len(key.key), minKeyLength)
		}
	}
	return all, nil
}

// LoadAPIKeys merges keys with those in file (one per line; blank lines and lines starting with
// '#' ignored). Keys shorter than 16 characters are rejected: they would be guessable.
func LoadAPIKeys(keys []string, file string) ([]string, error) {
	read, err := readKeys(keys, file)
	if err != nil {
		return nil, err
	}
	all := make([]string, len(read))
	for i, key := range read {
		all[i] = key.key
	}
	return all, nil
}

// KeyID is the id the audit log names key by.
func KeyID(key string) string { return keyID(hashKey(key)) }

// KeyEntry is one configured key as an operator is shown it: never the key itself.
type KeyEntry struct {
	// ID is how the audit log names the key.
	ID string `json:"id"`
	// Kind is "api", "admin" or "scope NAME".
	Kind string `json:"kind"`
	// Source is "config" for a key written in the configuration, or FILE:LINE.
	Source string `json:"source"`
	// File and Line are where a key of a keys file is.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Note is the comment just above the key in its file, which says whose it is.
	Note string `json:"note,omitempty"`
}

// KeyEntries lists every key the lookup section configures, in the order of its settings.
func KeyEntries(options config.Lookup) ([]KeyEntry, error) {
	type list struct {
		kind string
		keys []string
		file string
	}
	lists := []list{{"api", options.APIKeys, options.APIKeysFile}, {"admin", options.AdminAPIKeys, options.AdminAPIKeysFile}}
	for _, scope := range options.ScopedAPIKeys {
		lists = append(lists, list{"scope " + scope.Name, scope.Keys, scope.KeysFile})
	}
	var entries []KeyEntry
	for _, list := range lists {
		keys, err := readKeys(list.keys, list.file)
		if err != nil {
			return nil, fmt.Errorf("%s keys: %w", list.kind, err)
		}
		for _, key := range keys {
			entries = append(entries, KeyEntry{ID: KeyID(key.key), Kind: list.kind, Source: key.source, File: key.file, Line: key.line, Note: key.note})
		}
	}
	return entries, nil
}
