package milvusfake

import (
	"context"
	"errors"
	"testing"

	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/index"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// These tests drive the fake through the real Milvus client and check that it answers the way
// Milvus does where a client depends on it: status codes, load and index preconditions, and
// request validation.

func connect(t *testing.T) (*Server, *milvusclient.Client) {
	t.Helper()
	server, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Close)
	client, err := milvusclient.New(context.Background(), &milvusclient.ClientConfig{Address: server.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(context.Background()) })
	return server, client
}

func createTestCollection(t *testing.T, client *milvusclient.Client, name string, indexed bool) {
	t.Helper()
	ctx := context.Background()
	schema := entity.NewSchema().WithName(name).
		WithField(entity.NewField().WithName("pk").WithDataType(entity.FieldTypeInt64).WithIsPrimaryKey(true)).
		WithField(entity.NewField().WithName("tag").WithDataType(entity.FieldTypeVarChar).WithMaxLength(8)).
		WithField(entity.NewField().WithName("v").WithDataType(entity.FieldTypeFloatVector).WithDim(2))
	if err := client.CreateCollection(ctx, milvusclient.NewCreateCollectionOption(name, schema)); err != nil {
		t.Fatal(err)
	}
	if !indexed {
		return
	}
	if _, err := client.CreateIndex(ctx, milvusclient.NewCreateIndexOption(name, "v", index.NewHNSWIndex(entity.IP, 8, 64))); err != nil {
		t.Fatal(err)
	}
	if _, err := client.LoadCollection(ctx, milvusclient.NewLoadCollectionOption(name)); err != nil {
		t.Fatal(err)
	}
}

func rows(name string, pks []int64, tags []string, vectors [][]float32) milvusclient.UpsertOption {
	return milvusclient.NewColumnBasedInsertOption(name,
		column.NewColumnInt64("pk", pks), column.NewColumnVarChar("tag", tags), column.NewColumnFloatVector("v", 2, vectors))
}

func TestCollectionLifecycle(t *testing.T) {
	ctx := context.Background()
	_, client := connect(t)
	if has, err := client.HasCollection(ctx, milvusclient.NewHasCollectionOption("c")); err != nil || has {
		t.Fatalf("HasCollection of a missing collection = %v, %v", has, err)
	}
	if _, err := client.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption("c")); !errors.Is(err, merr.ErrCollectionNotFound) {
		t.Fatalf("DescribeCollection of a missing collection: %v, want code 100", err)
	}
	createTestCollection(t, client, "c", false)
	if _, err := client.LoadCollection(ctx, milvusclient.NewLoadCollectionOption("c")); err == nil {
		t.Error("LoadCollection without a vector index succeeded")
	}
	if _, err := client.Search(ctx, milvusclient.NewSearchOption("c", 1, []entity.Vector{entity.FloatVector{1, 0}})); !errors.Is(err, merr.ErrCollectionNotLoaded) {
		t.Errorf("Search before load: %v, want collection not loaded", err)
	}
	if _, err := client.CreateIndex(ctx, milvusclient.NewCreateIndexOption("c", "v", index.NewHNSWIndex(entity.IP, 8, 64))); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateIndex(ctx, milvusclient.NewCreateIndexOption("c", "v", index.NewIvfFlatIndex(entity.IP, 8))); err == nil {
		t.Error("a second, different index on one field succeeded")
	}
	if _, err := client.LoadCollection(ctx, milvusclient.NewLoadCollectionOption("c")); err != nil {
		t.Fatal(err)
	}
	state, err := client.GetLoadState(ctx, milvusclient.NewGetLoadStateOption("c"))
	if err != nil || state.State != entity.LoadStateLoaded {
		t.Errorf("GetLoadState = %+v, %v", state, err)
	}
	if err := client.CreateAlias(ctx, milvusclient.NewCreateAliasOption("c", "a")); err != nil {
		t.Fatal(err)
	}
	if err := client.DropCollection(ctx, milvusclient.NewDropCollectionOption("c")); err == nil {
		t.Error("dropping a collection that has an alias succeeded")
	}
	if err := client.DropCollection(ctx, milvusclient.NewDropCollectionOption("a")); err == nil {
		t.Error("dropping a collection through its alias succeeded")
	}
	if err := client.DropAlias(ctx, milvusclient.NewDropAliasOption("a")); err != nil {
		t.Fatal(err)
	}
	if err := client.DropCollection(ctx, milvusclient.NewDropCollectionOption("c")); err != nil {
		t.Fatal(err)
	}
	names, err := client.ListCollections(ctx, milvusclient.NewListCollectionOption())
	if err != nil || len(names) != 0 {
		t.Errorf("ListCollections after drop = %v, %v", names, err)
	}
}

func TestWritesAndReads(t *testing.T) {
	ctx := context.Background()
	_, client := connect(t)
	createTestCollection(t, client, "c", true)
	if _, err := client.Upsert(ctx, rows("c", []int64{1, 2, 3}, []string{"x", "y", "x"}, [][]float32{{1, 0}, {0, 1}, {0.6, 0.8}})); err != nil {
		t.Fatal(err)
	}
	_, err := client.Upsert(ctx, rows("c", []int64{4, 4}, []string{"x", "y"}, [][]float32{{1, 0}, {0, 1}}))
	if !errors.Is(err, merr.ErrParameterInvalid) {
		t.Errorf("upsert repeating a primary key: %v, want invalid parameter (Milvus 2.6 rejects it)", err)
	}
	if _, err := client.Upsert(ctx, rows("c", []int64{5}, []string{"too-long-tag"}, [][]float32{{1, 0}})); err == nil {
		t.Error("upsert of a varchar above max_length succeeded")
	}
	// Search through an alias, with a filter, by inner product.
	if err := client.CreateAlias(ctx, milvusclient.NewCreateAliasOption("c", "live")); err != nil {
		t.Fatal(err)
	}
	results, err := client.Search(ctx, milvusclient.NewSearchOption("live", 2, []entity.Vector{entity.FloatVector{1, 0}}).
		WithFilter(`tag in ["x"]`).WithOutputFields("tag").WithAnnParam(index.NewHNSWAnnParam(16)))
	if err != nil {
		t.Fatal(err)
	}
	ids := results[0].IDs.(*column.ColumnInt64).Data()
	if len(ids) != 2 || ids[0] != 1 || ids[1] != 3 || results[0].Scores[0] != 1 || results[0].Scores[1] != 0.6 {
		t.Errorf("search = ids %v scores %v, want [1 3] [1 0.6]", ids, results[0].Scores)
	}
	if tags := results[0].GetColumn("tag"); tags == nil || tags.Len() != 2 {
		t.Errorf("search output field tag = %v", tags)
	}
	if _, err := client.Search(ctx, milvusclient.NewSearchOption("c", 10, []entity.Vector{entity.FloatVector{1, 0}}).WithAnnParam(index.NewHNSWAnnParam(5))); err == nil {
		t.Error("HNSW search with ef below topk succeeded")
	}
	if _, err := client.Search(ctx, milvusclient.NewSearchOption("c", 1, []entity.Vector{entity.FloatVector{1, 0}}).WithSearchParam("metric_type", "L2")); err == nil {
		t.Error("search with a metric other than the index's succeeded")
	}
	if _, err := client.Search(ctx, milvusclient.NewSearchOption("c", 1, []entity.Vector{entity.FloatVector{1, 0, 0}})); err == nil {
		t.Error("search with a 3-value vector in a 2-dim field succeeded")
	}
	if _, err := client.Query(ctx, milvusclient.NewQueryOption("c")); err == nil {
		t.Error("query with neither expression nor limit succeeded")
	}
	count, err := client.Query(ctx, milvusclient.NewQueryOption("c").WithFilter("pk >= 2").WithOutputFields("count(*)"))
	if err != nil {
		t.Fatal(err)
	}
	if n := count.GetColumn("count(*)").(*column.ColumnInt64).Data()[0]; n != 2 {
		t.Errorf("count(*) where pk >= 2 = %d, want 2", n)
	}
	deleted, err := client.Delete(ctx, milvusclient.NewDeleteOption("c").WithExpr(`tag == "x"`))
	if err != nil || deleted.DeleteCount != 2 {
		t.Errorf("Delete = %+v, %v", deleted, err)
	}
	rest, err := client.Query(ctx, milvusclient.NewQueryOption("c").WithLimit(10).WithOutputFields("tag", "v"))
	if err != nil || rest.ResultCount != 1 || rest.GetColumn("pk").(*column.ColumnInt64).Data()[0] != 2 {
		t.Errorf("query after delete = %+v, %v", rest, err)
	}
}

func TestUnimplementedCallsSayso(t *testing.T) {
	_, client := connect(t)
	_, err := client.ListDatabase(context.Background(), milvusclient.NewListDatabaseOption())
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ListDatabase: %v, want codes.Unimplemented", err)
	}
}
