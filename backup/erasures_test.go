package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
)

// TestErasuresKeptCurrentInTheNewestBackup: an erasure made after a backup is copied into the
// newest backup's record (the one the data dir's status names, so a rotation moves it along), a
// later backup into the same directory keeps what the record there holds, and a newest backup
// whose disk is gone is an error that says so.
func TestErasuresKeptCurrentInTheNewestBackup(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	cropsDir := filepath.Join(dataDir, "crops")
	store, err := cropstore.OpenLocal(cropsDir)
	if err != nil {
		t.Fatal(err)
	}
	crops := []cropstore.CropRecord{putCrop(t, store, 1), putCrop(t, store, 2), putCrop(t, store, 3)}
	erase := func(record cropstore.CropRecord) {
		t.Helper()
		if err := store.RecordErasure(ctx, cropstore.Erasure{CropIDs: []string{record.ID}}); err != nil {
			t.Fatal(err)
		}
	}
	backUp := func(dest string) {
		t.Helper()
		parts, err := Run(ctx, Sources{Crops: cropsDir}, dest)
		if err != nil {
			t.Fatal(err)
		}
		if err := RecordStatus(dataDir, dest, time.Now(), parts, nil); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(step string, wantCopied int, wantDest string) {
		t.Helper()
		copied, dest, err := CopyErasures(dataDir, cropsDir)
		if err != nil || copied != wantCopied || dest != wantDest {
			t.Fatalf("%s: copied %d into %q (%v), want %d into %q", step, copied, dest, err, wantCopied, wantDest)
		}
		if missing, _, err := MissingErasures(dataDir, cropsDir); err != nil || missing != 0 {
			t.Fatalf("%s: then %d missing (%v)", step, missing, err)
		}
	}
	recordIn := func(dest string) []cropstore.Erasure {
		t.Helper()
		copy, err := cropstore.OpenLocal(filepath.Join(dest, "crops"))
		if err != nil {
			t.Fatal(err)
		}
		erasures, err := copy.Erasures(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return erasures
	}

	erase(crops[0])
	expect("no backup yet", 0, "")
	monday, tuesday := filepath.Join(t.TempDir(), "mon"), filepath.Join(t.TempDir(), "tue")
	backUp(monday)
	expect("right after a backup", 0, monday)

	erase(crops[1])
	if missing, dest, err := MissingErasures(dataDir, cropsDir); err != nil || missing != 1 || dest != monday {
		t.Fatalf("after an erasure: %d missing from %q (%v), want 1 from monday", missing, dest, err)
	}
	expect("an erasure after the backup", 1, monday)
	if erasures := recordIn(monday); len(erasures) != 2 || erasures[1].CropIDs[0] != crops[1].ID {
		t.Fatalf("monday's record: %+v, want both erasures", erasures)
	}

	// The next backup into the same directory keeps the record there, even a file its source
	// lacks (the record only grows).
	ahead := filepath.Join(monday, "crops", cropstore.ErasuresFolder, "20261129T000000.000000000Z-ahead.json")
	write(t, ahead, `{"time":"2026-11-29T00:00:00Z","crop_ids":["`+crops[2].ID+`"]}`)
	backUp(monday)
	if isMissing(ahead) || len(recordIn(monday)) != 3 {
		t.Error("a backup removed a record file from the backup's record of erasures")
	}

	// A backup into another directory becomes the newest; later erasures go there.
	backUp(tuesday)
	erase(crops[2])
	expect("after a rotation", 1, tuesday)
	if got := len(recordIn(tuesday)); got != 3 {
		t.Errorf("tuesday's record holds %d erasures, want 3", got)
	}

	// Its disk unmounted: the erasure is in no backup, and the error says why.
	if err := os.RemoveAll(filepath.Join(tuesday, "crops")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := CopyErasures(dataDir, cropsDir); err == nil || !strings.Contains(err.Error(), "is its disk mounted?") {
		t.Errorf("with the newest backup gone: %v", err)
	}
}
