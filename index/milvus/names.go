package milvus

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"unicode/utf8"
)

// maxNameLength is Milvus's limit on collection and alias names.
const maxNameLength = 255

// versionMarker starts the description of every collection this backend creates; the rest of
// the description is the model version's exact name, which the collection name can only
// approximate (Milvus names allow letters, digits and underscores only).
const versionMarker = "reid model version: "

func nameChar(r rune, first bool) bool {
	return r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || !first && r >= '0' && r <= '9'
}

// validName applies Milvus's rules for collection and alias names.
func validName(name string) error {
	if name == "" {
		return errors.New("must not be empty")
	}
	if len(name) > maxNameLength {
		return fmt.Errorf("must be at most %d characters", maxNameLength)
	}
	for i, r := range name {
		if !nameChar(r, i == 0) {
			return errors.New("must start with a letter or underscore and hold only letters, digits and underscores")
		}
	}
	return nil
}

// validPrefix checks a collection prefix: a valid name, short enough to leave room for versions.
func validPrefix(prefix string) error {
	if err := validName(prefix); err != nil {
		return err
	}
	if len(prefix) > 64 {
		return errors.New("must be at most 64 characters")
	}
	return nil
}

// validVersion checks a model version name before it becomes part of a collection name.
func validVersion(version string) error {
	if version == "" {
		return errors.New("milvus: model version name must not be empty")
	}
	if len(version) > 128 || !utf8.ValidString(version) {
		return fmt.Errorf("milvus: model version name %q must be at most 128 bytes of UTF-8", truncate(version, 40))
	}
	for _, r := range version {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("milvus: model version name %q has a control character", truncate(version, 40))
		}
	}
	return nil
}

// collectionName maps a model version to its collection: the prefix, then the version with
// every character Milvus does not allow replaced by '_'. When anything was replaced, or the
// plain name would equal the alias, a hash of the exact version is appended so that versions
// differing only in those characters ("osnet-v1", "osnet.v1") get different collections.
func collectionName(prefix, alias, version string) string {
	var b strings.Builder
	b.WriteString(prefix)
	changed := false
	for _, r := range version {
		if nameChar(r, false) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
			changed = true
		}
	}
	name := b.String()
	if !changed && name != alias && len(name) <= maxNameLength {
		return name
	}
	hash := fnv.New32a()
	hash.Write([]byte(version))
	suffix := fmt.Sprintf("_%08x", hash.Sum32())
	if len(name)+len(suffix) > maxNameLength {
		name = name[:maxNameLength-len(suffix)]
	}
	return name + suffix
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
