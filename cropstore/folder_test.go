package cropstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore/s3test"
	"github.com/reid-project/reid/internal/lease"
)

// A folder of the bucket keeps its files apart from the crops: listing cameras and retention do
// not see it, and it reads back what was written.
func TestFolder(t *testing.T) {
	for _, bucket := range s3test.Buckets(t, "folders") {
		t.Run(bucket.Kind, func(t *testing.T) {
			ctx := context.Background()
			store := openBucket(t, bucketOptions(bucket))
			for _, bad := range []string{"watches", "@", "@a/b", "@../x", erasuresDir} {
				if _, err := store.Folder(bad); err == nil {
					t.Errorf("folder %q accepted", bad)
				}
			}
			folder, err := store.Folder("@watches")
			if err != nil {
				t.Fatal(err)
			}
			if err := putCrops(ctx, store, "gate", time.Now().Add(-48*time.Hour), time.Second, 3); err != nil {
				t.Fatal(err)
			}
			for name, content := range map[string]string{"w1.json": "{}", "w1.img": "jpeg", "webhook.cursor": "7"} {
				if err := folder.Write(ctx, name, []byte(content)); err != nil {
					t.Fatal(err)
				}
			}
			if err := folder.Write(ctx, "w1.json", []byte(`{"id":"w1"}`)); err != nil {
				t.Fatal(err)
			}
			names, err := folder.List(ctx)
			if err != nil || !slices.Equal(names, []string{"w1.img", "w1.json", "webhook.cursor"}) {
				t.Errorf("listed %v, %v", names, err)
			}
			if data, err := folder.Read(ctx, "w1.json"); err != nil || string(data) != `{"id":"w1"}` {
				t.Errorf("read back %q, %v", data, err)
			}
			if _, err := folder.Read(ctx, "w2.json"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a missing file: %v, want fs.ErrNotExist", err)
			}
			for _, name := range []string{"w1.img", "w1.img", "never-written"} {
				if err := folder.Remove(ctx, name); err != nil {
					t.Errorf("remove %s: %v", name, err)
				}
			}
			if _, err := folder.Read(ctx, "w1.img"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a removed file: %v", err)
			}
			if err := folder.Write(ctx, "../escape", nil); err == nil {
				t.Error("a name with a path was written")
			}
			cameras, err := store.Cameras(ctx)
			if err != nil || !slices.Equal(cameras, []string{"gate"}) {
				t.Errorf("cameras %v, %v; want the crops' alone", cameras, err)
			}
			if _, err := store.DeleteBefore(ctx, time.Now()); err != nil {
				t.Fatal(err)
			}
			if names, err := folder.List(ctx); err != nil || len(names) != 2 {
				t.Errorf("after retention pruned everything: %v, %v; want the folder's two files kept", names, err)
			}
		})
	}
}

// Swap replaces a file only at the version read, whichever writer tries first: of eight writers
// that read one version and swap at once, one wins. A lease on the bucket depends on it.
func TestFolderSwap(t *testing.T) {
	for _, bucket := range s3test.Buckets(t, "swaps") {
		t.Run(bucket.Kind, func(t *testing.T) {
			ctx := context.Background()
			folder, err := openBucket(t, bucketOptions(bucket)).Folder("@watches")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := folder.ReadVersion(ctx, "lease"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a missing file: %v, want fs.ErrNotExist", err)
			}
			first, err := folder.Swap(ctx, "lease", []byte("one"), "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := folder.Swap(ctx, "lease", []byte("two"), ""); !errors.Is(err, lease.ErrChanged) {
				t.Errorf("creating a file that exists: %v, want ErrChanged", err)
			}
			data, version, err := folder.ReadVersion(ctx, "lease")
			if err != nil || string(data) != "one" || version != first {
				t.Fatalf("read %q at %q, %v; want \"one\" at %q", data, version, err, first)
			}
			second, err := folder.Swap(ctx, "lease", []byte("two"), version)
			if err != nil || second == first {
				t.Fatalf("swap at the version read: %q, %v", second, err)
			}
			if _, err := folder.Swap(ctx, "lease", []byte("three"), first); !errors.Is(err, lease.ErrChanged) {
				t.Errorf("swap at an old version: %v, want ErrChanged", err)
			}

			won := make(chan string, 8)
			var writers sync.WaitGroup
			for writer := range 8 {
				writers.Go(func() {
					content := fmt.Sprintf("writer %d", writer)
					if _, err := folder.Swap(ctx, "lease", []byte(content), second); err == nil {
						won <- content
					} else if !errors.Is(err, lease.ErrChanged) {
						t.Error(err)
					}
				})
			}
			writers.Wait()
			close(won)
			var winners []string
			for content := range won {
				winners = append(winners, content)
			}
			if data, _, err := folder.ReadVersion(ctx, "lease"); len(winners) != 1 || err != nil || string(data) != winners[0] {
				t.Errorf("winners %v, file %q (%v); want one winner, whose file it is", winners, data, err)
			}
		})
	}
}
