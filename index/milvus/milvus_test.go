package milvus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/index/indextest"
	"github.com/reid-project/reid/index/milvus/milvusfake"
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func startFake(t testing.TB, options milvusfake.Options) *milvusfake.Server {
	t.Helper()
	server, err := milvusfake.Start(options)
	if err != nil {
		t.Fatalf("start fake: %v", err)
	}
	t.Cleanup(server.Close)
	return server
}

func openIndex(t testing.TB, options Options) *Index {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if options.Logger == nil {
		options.Logger = quietLogger
	}
	ix, err := Open(ctx, options)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return ix
}

// TestSuiteFake runs the shared behavioural suite through the real Milvus client against the
// in-process fake of the Milvus gRPC service, once per index type. Each subtest gets its own
// fake server; OpenAt keeps one server per state so the persistence test reconnects to it.
func TestSuiteFake(t *testing.T) {
	for _, indexType := range []string{"HNSW", "IVF_FLAT"} {
		t.Run(indexType, func(t *testing.T) {
			var mu sync.Mutex
			servers := map[string]*milvusfake.Server{}
			options := func(server *milvusfake.Server) Options {
				return Options{Address: server.Addr(), IndexType: indexType, NList: 16, NProbe: 4}
			}
			indextest.RunBackend(t, indextest.Backend{
				Open: func(t testing.TB) index.Index {
					return openIndex(t, options(startFake(t, milvusfake.Options{})))
				},
				OpenAt: func(t testing.TB, state string) index.Index {
					mu.Lock()
					server, ok := servers[state]
					if !ok {
						server = startFake(t, milvusfake.Options{})
						servers[state] = server
					}
					mu.Unlock()
					return openIndex(t, options(server))
				},
				// The fake searches by brute force, so even "approximate" searches are exact.
				Approximate: false,
			})
		})
	}
}

// TestSuiteRealMilvus runs the same suite against a real Milvus at REID_MILVUS_ADDR (see
// deploy/README.md). Every opened index gets its own collection prefix and alias, and drops
// what it made when the subtest ends.
func TestSuiteRealMilvus(t *testing.T) {
	address := os.Getenv("REID_MILVUS_ADDR")
	if address == "" {
		t.Skip("REID_MILVUS_ADDR is not set: no real Milvus configured (start one with deploy/docker-compose.yml)")
	}
	base := Options{
		Address:  address,
		Token:    os.Getenv("REID_MILVUS_TOKEN"),
		Database: os.Getenv("REID_MILVUS_DATABASE"),
	}
	namespace := func(t testing.TB) Options {
		suffix := make([]byte, 4)
		if _, err := rand.Read(suffix); err != nil {
			t.Fatal(err)
		}
		options := base
		options.CollectionPrefix = "reidtest_" + hex.EncodeToString(suffix) + "_"
		options.Alias = options.CollectionPrefix + "active"
		return options
	}
	cleanup := func(t testing.TB, options Options) {
		t.Cleanup(func() { dropNamespace(t, options) })
	}
	var mu sync.Mutex
	states := map[string]Options{}
	indextest.RunBackend(t, indextest.Backend{
		Open: func(t testing.TB) index.Index {
			options := namespace(t)
			cleanup(t, options)
			return openIndex(t, options)
		},
		OpenAt: func(t testing.TB, state string) index.Index {
			mu.Lock()
			options, ok := states[state]
			if !ok {
				options = namespace(t)
				states[state] = options
				cleanup(t, options)
			}
			mu.Unlock()
			return openIndex(t, options)
		},
		Approximate: true,
	})
}

// dropNamespace removes the alias and collections a real-server test made.
func dropNamespace(t testing.TB, options Options) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: options.Address, APIKey: options.Token, DBName: options.Database})
	if err != nil {
		t.Errorf("cleanup: connect: %v", err)
		return
	}
	defer client.Close(ctx)
	if err := client.DropAlias(ctx, milvusclient.NewDropAliasOption(options.Alias)); err != nil {
		t.Logf("cleanup: drop alias %s: %v", options.Alias, err)
	}
	names, err := client.ListCollections(ctx, milvusclient.NewListCollectionOption())
	if err != nil {
		t.Errorf("cleanup: list collections: %v", err)
		return
	}
	for _, name := range names {
		if strings.HasPrefix(name, options.CollectionPrefix) {
			if err := client.DropCollection(ctx, milvusclient.NewDropCollectionOption(name)); err != nil {
				t.Errorf("cleanup: drop %s: %v", name, err)
			}
		}
	}
}

// TestActivateUsesAlias checks the protocol side of activation: the first activation creates
// the alias, later ones re-point it with AlterAlias, and the alias is what Milvus resolves.
func TestActivateUsesAlias(t *testing.T) {
	ctx := context.Background()
	server := startFake(t, milvusfake.Options{})
	ix := openIndex(t, Options{Address: server.Addr(), Alias: "lookups"})
	defer ix.Close()
	for _, version := range []string{"a", "b"} {
		if err := ix.CreateVersion(ctx, version, 4); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.Activate(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := ix.Activate(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	calls := server.Calls()
	if calls["CreateAlias"] != 1 || calls["AlterAlias"] != 1 {
		t.Errorf("CreateAlias %d and AlterAlias %d calls, want 1 and 1", calls["CreateAlias"], calls["AlterAlias"])
	}
	client, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: server.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(ctx)
	alias, err := client.DescribeAlias(ctx, milvusclient.NewDescribeAliasOption("lookups"))
	if err != nil {
		t.Fatal(err)
	}
	if alias.CollectionName != "reid_b" {
		t.Errorf("alias points at %s, want reid_b", alias.CollectionName)
	}
	// A second index on the same Milvus with another alias has its own active version.
	other := openIndex(t, Options{Address: server.Addr(), Alias: "other_lookups"})
	defer other.Close()
	if _, err := other.Active(ctx); !errors.Is(err, index.ErrNoActiveVersion) {
		t.Errorf("Active with an unused alias: %v, want ErrNoActiveVersion", err)
	}
}

// TestVersionNames checks that versions whose names differ only in characters Milvus does not
// allow get separate collections, and that Versions reports the exact names.
func TestVersionNames(t *testing.T) {
	ctx := context.Background()
	server := startFake(t, milvusfake.Options{})
	ix := openIndex(t, Options{Address: server.Addr()})
	defer ix.Close()
	names := []string{"osnet-x0.25", "osnet_x0_25", "osnet.x0-25", "ünïcode v2", "active"}
	for i, name := range names {
		if err := ix.CreateVersion(ctx, name, 4+i); err != nil {
			t.Fatalf("CreateVersion(%q): %v", name, err)
		}
	}
	versions, err := ix.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != len(names) {
		t.Fatalf("Versions = %+v, want %d", versions, len(names))
	}
	for i, name := range names {
		found := false
		for _, version := range versions {
			if version.Name == name {
				found = true
				if version.Dim != 4+i {
					t.Errorf("version %q has dim %d, want %d", name, version.Dim, 4+i)
				}
			}
		}
		if !found {
			t.Errorf("version %q missing from %+v", name, versions)
		}
	}
	// "active" maps to reid_active, the default alias, so it must have been given a hash.
	if err := ix.Activate(ctx, "active"); err != nil {
		t.Fatalf("Activate(active): %v", err)
	}
	active, err := ix.Active(ctx)
	if err != nil || active.Name != "active" {
		t.Errorf("Active = %+v, %v", active, err)
	}
}

// TestForeignCollections checks that collections sharing the prefix but not made by the backend
// are left out of Versions.
func TestForeignCollections(t *testing.T) {
	ctx := context.Background()
	server := startFake(t, milvusfake.Options{})
	client, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: server.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(ctx)
	if err := client.CreateCollection(ctx, milvusclient.SimpleCreateCollectionOptions("reid_someone_else", 8).WithDynamicSchema(false).WithAutoID(false)); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, Options{Address: server.Addr()})
	defer ix.Close()
	versions, err := ix.Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 0 {
		t.Errorf("Versions = %+v, want none", versions)
	}
	// The version whose collection name it occupies is reported as someone else's, not reused.
	if err := ix.CreateVersion(ctx, "someone_else", 8); err == nil || errors.Is(err, index.ErrNoVersion) {
		t.Errorf("CreateVersion over a foreign collection: %v, want an error", err)
	}
}

// TestConnectionSettings checks that credentials, database and TLS reach the server.
func TestConnectionSettings(t *testing.T) {
	ctx := context.Background()
	t.Run("user and password", func(t *testing.T) {
		server := startFake(t, milvusfake.Options{Credentials: []string{"reid:secret"}})
		ix := openIndex(t, Options{Address: server.Addr(), User: "reid", Password: "secret"})
		defer ix.Close()
		if err := ix.CreateVersion(ctx, "v1", 4); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("token", func(t *testing.T) {
		server := startFake(t, milvusfake.Options{Credentials: []string{"api-key-123"}})
		ix := openIndex(t, Options{Address: server.Addr(), Token: "api-key-123", User: "ignored", Password: "ignored"})
		defer ix.Close()
		if _, err := ix.Versions(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		server := startFake(t, milvusfake.Options{Credentials: []string{"reid:secret"}})
		_, err := Open(ctx, Options{Address: server.Addr(), User: "reid", Password: "wrong", Logger: quietLogger})
		if err == nil || !strings.Contains(err.Error(), "auth") {
			t.Errorf("Open with a wrong password: %v, want an auth error", err)
		}
	})
	t.Run("database", func(t *testing.T) {
		server := startFake(t, milvusfake.Options{Databases: []string{"reid"}})
		ix := openIndex(t, Options{Address: server.Addr(), Database: "reid"})
		defer ix.Close()
		if err := ix.CreateVersion(ctx, "v1", 4); err != nil {
			t.Fatal(err)
		}
		other := openIndex(t, Options{Address: server.Addr()})
		defer other.Close()
		versions, err := other.Versions(ctx)
		if err != nil || len(versions) != 0 {
			t.Errorf("database default sees %+v, %v; want nothing (v1 is in database reid)", versions, err)
		}
		_, err = Open(ctx, Options{Address: server.Addr(), Database: "missing", Logger: quietLogger})
		if err == nil || !strings.Contains(err.Error(), "database") {
			t.Errorf("Open of a missing database: %v, want a database error", err)
		}
	})
	t.Run("tls", func(t *testing.T) {
		serverTLS, clientTLS := testTLS(t)
		server := startFake(t, milvusfake.Options{TLS: serverTLS})
		ix := openIndex(t, Options{Address: server.Addr(), TLSConfig: clientTLS})
		defer ix.Close()
		if err := ix.CreateVersion(ctx, "v1", 4); err != nil {
			t.Fatal(err)
		}
		// Without TLS the handshake never completes; Open gives up after ConnectTimeout.
		_, err := Open(ctx, Options{Address: server.Addr(), ConnectTimeout: 300 * time.Millisecond, Logger: quietLogger})
		if err == nil {
			t.Error("plaintext Open against a TLS server succeeded")
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		server := startFake(t, milvusfake.Options{})
		address := server.Addr()
		server.Close()
		start := time.Now()
		_, err := Open(ctx, Options{Address: address, ConnectTimeout: 300 * time.Millisecond, Logger: quietLogger})
		if err == nil || !strings.Contains(err.Error(), address) {
			t.Errorf("Open of a closed port: %v, want an error naming %s", err, address)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("Open took %v to give up", elapsed)
		}
	})
}

// TestMinScoreAndFilterExpressions checks the filters against camera ids that need escaping.
func TestFilterEscaping(t *testing.T) {
	ctx := context.Background()
	server := startFake(t, milvusfake.Options{})
	ix := openIndex(t, Options{Address: server.Addr()})
	defer ix.Close()
	if err := ix.CreateVersion(ctx, "v1", 2); err != nil {
		t.Fatal(err)
	}
	cameras := []string{`plain`, `with "quotes"`, `back\slash`, `it's`, "new\nline", `] or camera != "`}
	var items []index.Item
	for i, camera := range cameras {
		items = append(items, index.Item{ID: camera + "-id", Vector: []float32{1, float32(i) / 10}, Metadata: index.Metadata{Camera: camera, Time: time.UnixMilli(int64(i))}})
	}
	if err := ix.Upsert(ctx, "v1", items); err != nil {
		t.Fatal(err)
	}
	for _, camera := range cameras {
		results, err := ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{{1, 0}}, K: 10, Filter: index.Filter{Cameras: []string{camera}}})
		if err != nil {
			t.Fatalf("Search for camera %q: %v", camera, err)
		}
		if len(results[0]) != 1 || results[0][0].Metadata.Camera != camera {
			t.Errorf("camera %q: matches %+v", camera, results[0])
		}
		results, err = ix.Search(ctx, "v1", index.Query{Vectors: [][]float32{{1, 0}}, K: 10, Filter: index.Filter{ExcludeCameras: []string{camera}}})
		if err != nil {
			t.Fatalf("Search excluding camera %q: %v", camera, err)
		}
		if len(results[0]) != len(cameras)-1 {
			t.Errorf("excluding camera %q left %d matches", camera, len(results[0]))
		}
	}
	got, err := ix.Get(ctx, "v1", []string{`with "quotes"-id`, `back\slash-id`})
	if err != nil || len(got) != 2 {
		t.Errorf("Get of ids needing escapes = %+v, %v", got, err)
	}
}

// TestUpsertLargeBatch checks that a batch above batchRows is split and fully stored.
func TestUpsertLargeBatch(t *testing.T) {
	ctx := context.Background()
	server := startFake(t, milvusfake.Options{})
	ix := openIndex(t, Options{Address: server.Addr()})
	defer ix.Close()
	if err := ix.CreateVersion(ctx, "v1", 2); err != nil {
		t.Fatal(err)
	}
	items := make([]index.Item, batchRows*2+10)
	ids := make([]string, len(items))
	for i := range items {
		ids[i] = "id-" + strings.Repeat("x", i%7) + "-" + time.Duration(i).String()
		items[i] = index.Item{ID: ids[i], Vector: []float32{1, 0}}
	}
	if err := ix.Upsert(ctx, "v1", items); err != nil {
		t.Fatal(err)
	}
	if calls := server.Calls()["Upsert"]; calls != 3 {
		t.Errorf("%d Upsert calls for %d items, want 3", calls, len(items))
	}
	if n, err := ix.Count(ctx, "v1"); err != nil || n != len(items) {
		t.Errorf("Count = %d, %v; want %d", n, err, len(items))
	}
	got, err := ix.Get(ctx, "v1", ids)
	if err != nil || len(got) != len(items) {
		t.Errorf("Get of %d ids returned %d, %v", len(ids), len(got), err)
	}
	n, err := ix.Delete(ctx, "v1", ids)
	if err != nil || n != len(items) {
		t.Errorf("Delete = %d, %v; want %d", n, err, len(items))
	}
}

// TestCompact asks Milvus to compact each gallery's collection, and no other collection.
func TestCompact(t *testing.T) {
	ctx := context.Background()
	server := startFake(t, milvusfake.Options{})
	ix := openIndex(t, Options{Address: server.Addr()})
	defer ix.Close()
	for _, version := range []string{"a", "b"} {
		if err := ix.CreateVersion(ctx, version, 4); err != nil {
			t.Fatal(err)
		}
	}
	other := openIndex(t, Options{Address: server.Addr(), CollectionPrefix: "theirs_"})
	defer other.Close()
	if err := other.CreateVersion(ctx, "c", 4); err != nil {
		t.Fatal(err)
	}
	if err := ix.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if calls := server.Calls()["ManualCompaction"]; calls != 2 {
		t.Errorf("%d compactions requested, want 2 (one per gallery)", calls)
	}
}
