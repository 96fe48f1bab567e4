// Package milvus is the index.Index backend that keeps galleries in Milvus, through the official
// Go client (github.com/milvus-io/milvus/client/v2).
//
// Each model version is one collection, named <prefix><version> (sanitised to Milvus's naming
// rules, see collectionName) with the exact version name in its description. Its schema is
// crop_id (VarChar primary key), vector (FloatVector of the model's dimension), camera, time
// (Int64 unix microseconds), track, frame, box_x/box_y/box_w/box_h (Int32) and model, with an
// HNSW or IVF_FLAT index under the COSINE or IP metric. The active version is the collection the
// alias (default reid_active) points at; Activate re-points it with one AlterAlias, which Milvus
// applies atomically, so a lookup sees either the old gallery or the new one.
//
// Reads use Strong consistency, so an acknowledged Upsert is visible to the next Search, Get or
// Count, as the index.Index contract requires. Milvus acknowledges an upsert once it is in its
// write-ahead log, which is what makes it durable.
//
// No Milvus server runs in this project's CI; the package is tested through the real client
// against index/milvus/milvusfake, an in-process fake of the Milvus gRPC service, and against a
// real Milvus when REID_MILVUS_ADDR is set (deploy/docker-compose.yml starts one).
package milvus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/milvus-io/milvus-proto/go-api/v2/commonpb"
	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/entity"
	milvusindex "github.com/milvus-io/milvus/client/v2/index"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"

	"github.com/reid-project/reid/index"
)

// Limits of the gallery schema, in bytes.
const (
	maxIDLength     = 256
	maxStringLength = 256
	minDim, maxDim  = 2, 32768 // Milvus's limits on a float vector's dimension
	maxEf           = 32768    // Milvus's limit on HNSW's search ef
	// batchRows bounds the rows of one upsert or the ids of one query, keeping each request well
	// under Milvus's default 64 MiB message limit (2000 x 2048-d float32 = 16 MiB).
	batchRows = 2000
)

// Index is a Milvus-backed index.Index. It is safe for concurrent use.
type Index struct {
	client  *milvusclient.Client
	options Options
}

var _ index.Index = (*Index)(nil)

// Open connects to Milvus. It creates nothing until CreateVersion is called.
func Open(ctx context.Context, options Options) (*Index, error) {
	options, err := options.withDefaults()
	if err != nil {
		return nil, err
	}
	clientConfig := &milvusclient.ClientConfig{
		Address:       options.Address,
		Username:      options.User,
		Password:      options.Password,
		APIKey:        options.Token,
		DBName:        options.Database,
		EnableTLSAuth: options.TLS,
	}
	if options.TLSConfig != nil {
		clientConfig.WithTLSConfig(options.TLSConfig)
	}
	connectCtx, cancel := context.WithTimeout(ctx, options.ConnectTimeout)
	defer cancel()
	client, err := milvusclient.New(connectCtx, clientConfig)
	if err != nil {
		return nil, fmt.Errorf("milvus: connect to %s (database %s): %w", options.Address, options.Database, err)
	}
	options.Logger.Debug("milvus: connected", "address", options.Address, "database", options.Database, "alias", options.Alias)
	return &Index{client: client, options: options}, nil
}

// Close closes the connection.
func (ix *Index) Close() error {
	if err := ix.client.Close(context.Background()); err != nil {
		return fmt.Errorf("milvus: close: %w", err)
	}
	return nil
}

// gallery is one version's collection.
type gallery struct {
	version    string
	collection string
	dim        int
}

// describe loads a version's collection; ErrNoVersion when there is none.
func (ix *Index) describe(ctx context.Context, version string) (gallery, error) {
	name := collectionName(ix.options.CollectionPrefix, ix.options.Alias, version)
	collection, err := ix.client.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(name))
	if errors.Is(err, merr.ErrCollectionNotFound) {
		return gallery{}, fmt.Errorf("%w: %q", index.ErrNoVersion, version)
	}
	if err != nil {
		return gallery{}, fmt.Errorf("milvus: describe collection %s: %w", name, err)
	}
	g, ok := galleryOf(collection)
	if !ok || g.version != version {
		return gallery{}, fmt.Errorf("milvus: collection %s exists but is not the gallery of model version %q (description %q)", name, version, collection.Schema.Description)
	}
	return g, nil
}

// galleryOf reads a collection made by CreateVersion; ok is false for any other collection.
func galleryOf(collection *entity.Collection) (gallery, bool) {
	version, ok := strings.CutPrefix(collection.Schema.Description, versionMarker)
	if !ok {
		return gallery{}, false
	}
	for _, field := range collection.Schema.Fields {
		if field.Name == fieldVector && field.DataType == entity.FieldTypeFloatVector {
			dim, err := field.GetDim()
			if err != nil {
				return gallery{}, false
			}
			return gallery{version: version, collection: collection.Name, dim: int(dim)}, true
		}
	}
	return gallery{}, false
}

// resolve finds the gallery of version, or of the active version for "".
func (ix *Index) resolve(ctx context.Context, version string) (gallery, error) {
	if version != "" {
		return ix.describe(ctx, version)
	}
	collection, err := ix.activeCollection(ctx)
	if err != nil {
		return gallery{}, err
	}
	described, err := ix.client.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(collection))
	if err != nil {
		return gallery{}, fmt.Errorf("milvus: describe active collection %s: %w", collection, err)
	}
	g, ok := galleryOf(described)
	if !ok {
		return gallery{}, fmt.Errorf("milvus: alias %s points at %s, which is not a reid gallery", ix.options.Alias, collection)
	}
	return g, nil
}

// activeCollection is the collection the alias points at; ErrNoActiveVersion when no alias.
func (ix *Index) activeCollection(ctx context.Context) (string, error) {
	alias, err := ix.client.DescribeAlias(ctx, milvusclient.NewDescribeAliasOption(ix.options.Alias))
	if err == nil {
		return alias.CollectionName, nil
	}
	if errors.Is(err, merr.ErrAliasNotFound) {
		return "", index.ErrNoActiveVersion
	}
	// Older servers report a missing alias with other codes; the alias list is authoritative.
	aliases, listErr := ix.client.ListAliases(ctx, milvusclient.NewListAliasesOption(""))
	if listErr == nil && !slices.Contains(aliases, ix.options.Alias) {
		return "", index.ErrNoActiveVersion
	}
	return "", fmt.Errorf("milvus: describe alias %s: %w", ix.options.Alias, err)
}

// CreateVersion creates, indexes and loads a version's collection. It also finishes a creation
// that an earlier call left half done (collection without index, or not loaded).
func (ix *Index) CreateVersion(ctx context.Context, version string, dim int) error {
	if err := validVersion(version); err != nil {
		return err
	}
	if dim < minDim || dim > maxDim {
		return fmt.Errorf("milvus: dimension of %q must be %d-%d, not %d", version, minDim, maxDim, dim)
	}
	name := collectionName(ix.options.CollectionPrefix, ix.options.Alias, version)
	existing, err := ix.describe(ctx, version)
	switch {
	case err == nil:
		if existing.dim != dim {
			return fmt.Errorf("%w: version %q exists with dimension %d, not %d", index.ErrDimension, version, existing.dim, dim)
		}
	case errors.Is(err, index.ErrNoVersion):
		schema := entity.NewSchema().WithName(name).WithDescription(versionMarker + version).WithAutoID(false).
			WithField(entity.NewField().WithName(fieldID).WithDataType(entity.FieldTypeVarChar).WithIsPrimaryKey(true).WithMaxLength(maxIDLength)).
			WithField(entity.NewField().WithName(fieldVector).WithDataType(entity.FieldTypeFloatVector).WithDim(int64(dim))).
			WithField(entity.NewField().WithName(fieldCamera).WithDataType(entity.FieldTypeVarChar).WithMaxLength(maxStringLength)).
			WithField(entity.NewField().WithName(fieldTime).WithDataType(entity.FieldTypeInt64)).
			WithField(entity.NewField().WithName(fieldTrack).WithDataType(entity.FieldTypeInt64)).
			WithField(entity.NewField().WithName(fieldFrame).WithDataType(entity.FieldTypeInt64)).
			WithField(entity.NewField().WithName(fieldBoxX).WithDataType(entity.FieldTypeInt32)).
			WithField(entity.NewField().WithName(fieldBoxY).WithDataType(entity.FieldTypeInt32)).
			WithField(entity.NewField().WithName(fieldBoxW).WithDataType(entity.FieldTypeInt32)).
			WithField(entity.NewField().WithName(fieldBoxH).WithDataType(entity.FieldTypeInt32)).
			WithField(entity.NewField().WithName(fieldModel).WithDataType(entity.FieldTypeVarChar).WithMaxLength(maxStringLength))
		option := milvusclient.NewCreateCollectionOption(name, schema).WithConsistencyLevel(entity.ClStrong)
		if err := ix.client.CreateCollection(ctx, option); err != nil {
			return fmt.Errorf("milvus: create collection %s for version %q: %w", name, version, err)
		}
		ix.options.Logger.Info("milvus: created gallery", "version", version, "collection", name, "dim", dim)
	default:
		return err
	}
	if err := ix.ensureIndex(ctx, name); err != nil {
		return err
	}
	return ix.load(ctx, name)
}

func (ix *Index) vectorIndex() milvusindex.Index {
	metric := milvusindex.MetricType(ix.options.Metric)
	if ix.options.IndexType == "IVF_FLAT" {
		return milvusindex.NewIvfFlatIndex(metric, ix.options.NList)
	}
	return milvusindex.NewHNSWIndex(metric, ix.options.HNSWM, ix.options.EfConstruction)
}

// ensureIndex creates the vector index unless the collection has one, and waits until it is
// built. It polls itself rather than using the client's task, whose fixed 100ms interval would
// dominate against a fast server.
func (ix *Index) ensureIndex(ctx context.Context, collection string) error {
	_, err := ix.client.DescribeIndex(ctx, milvusclient.NewDescribeIndexOption(collection, fieldVector))
	if err == nil {
		return nil
	}
	if !errors.Is(err, merr.ErrIndexNotFound) {
		return fmt.Errorf("milvus: describe index of %s: %w", collection, err)
	}
	option := milvusclient.NewCreateIndexOption(collection, fieldVector, ix.vectorIndex()).WithIndexName(fieldVector)
	if _, err := ix.client.CreateIndex(ctx, option); err != nil {
		return fmt.Errorf("milvus: create %s index on %s: %w", ix.options.IndexType, collection, err)
	}
	return ix.poll(ctx, "index build of "+collection, func() (bool, error) {
		description, err := ix.client.DescribeIndex(ctx, milvusclient.NewDescribeIndexOption(collection, fieldVector))
		if err != nil {
			return false, err
		}
		switch commonpb.IndexState(description.State) {
		case commonpb.IndexState_Finished:
			return true, nil
		case commonpb.IndexState_Failed:
			return false, errors.New("index build failed")
		}
		return false, nil
	})
}

// load loads a collection into memory and waits until it is searchable.
func (ix *Index) load(ctx context.Context, collection string) error {
	state, err := ix.client.GetLoadState(ctx, milvusclient.NewGetLoadStateOption(collection))
	if err != nil {
		return fmt.Errorf("milvus: load state of %s: %w", collection, err)
	}
	if state.State == entity.LoadStateLoaded {
		return nil
	}
	if _, err := ix.client.LoadCollection(ctx, milvusclient.NewLoadCollectionOption(collection)); err != nil {
		return fmt.Errorf("milvus: load %s: %w", collection, err)
	}
	return ix.poll(ctx, "load of "+collection, func() (bool, error) {
		state, err := ix.client.GetLoadState(ctx, milvusclient.NewGetLoadStateOption(collection))
		return state.State == entity.LoadStateLoaded, err
	})
}

// poll calls done with growing pauses (1ms to 200ms) until it reports true, fails, or
// LoadTimeout passes.
func (ix *Index) poll(ctx context.Context, what string, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, ix.options.LoadTimeout)
	defer cancel()
	pause := time.Millisecond
	for {
		finished, err := done()
		if err != nil {
			return fmt.Errorf("milvus: %s: %w", what, err)
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("milvus: waiting for %s: %w", what, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// Activate points the alias at version's collection. AlterAlias switches every later lookup in
// one step; CreateAlias is used only the first time, when there is no alias yet.
func (ix *Index) Activate(ctx context.Context, version string) error {
	g, err := ix.describe(ctx, version)
	if err != nil {
		return err
	}
	// Lookups go to the alias the moment it moves, so the collection must be searchable first.
	if err := ix.ensureIndex(ctx, g.collection); err != nil {
		return err
	}
	if err := ix.load(ctx, g.collection); err != nil {
		return err
	}
	alias := ix.options.Alias
	current, err := ix.activeCollection(ctx)
	switch {
	case err == nil && current == g.collection:
		return nil // already active
	case errors.Is(err, index.ErrNoActiveVersion):
		if err = ix.client.CreateAlias(ctx, milvusclient.NewCreateAliasOption(g.collection, alias)); err != nil {
			// Another process may have created it since we looked; then moving it is right.
			if alterErr := ix.client.AlterAlias(ctx, milvusclient.NewAlterAliasOption(alias, g.collection)); alterErr == nil {
				err = nil
			}
		}
	case err == nil:
		err = ix.client.AlterAlias(ctx, milvusclient.NewAlterAliasOption(alias, g.collection))
	}
	if err != nil {
		return fmt.Errorf("milvus: point alias %s at %s: %w", alias, g.collection, err)
	}
	ix.options.Logger.Info("milvus: activated version", "version", version, "collection", g.collection, "alias", alias)
	return nil
}

// Active describes the version the alias points at.
func (ix *Index) Active(ctx context.Context) (index.Version, error) {
	g, err := ix.resolve(ctx, "")
	if err != nil {
		return index.Version{}, err
	}
	count, err := ix.count(ctx, g.collection)
	if err != nil {
		return index.Version{}, err
	}
	return index.Version{Name: g.version, Dim: g.dim, Count: count, Active: true}, nil
}

// Versions lists the galleries: collections with the prefix that CreateVersion made.
func (ix *Index) Versions(ctx context.Context) ([]index.Version, error) {
	names, err := ix.client.ListCollections(ctx, milvusclient.NewListCollectionOption())
	if err != nil {
		return nil, fmt.Errorf("milvus: list collections: %w", err)
	}
	active, err := ix.activeCollection(ctx)
	if err != nil && !errors.Is(err, index.ErrNoActiveVersion) {
		return nil, err
	}
	versions := []index.Version{}
	for _, name := range names {
		if !strings.HasPrefix(name, ix.options.CollectionPrefix) {
			continue
		}
		collection, err := ix.client.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(name))
		if errors.Is(err, merr.ErrCollectionNotFound) {
			continue // dropped since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("milvus: describe collection %s: %w", name, err)
		}
		g, ok := galleryOf(collection)
		if !ok || collectionName(ix.options.CollectionPrefix, ix.options.Alias, g.version) != name {
			continue // someone else's collection that shares the prefix
		}
		count, err := ix.count(ctx, name)
		if err != nil {
			return nil, err
		}
		versions = append(versions, index.Version{Name: g.version, Dim: g.dim, Count: count, Active: name == active})
	}
	slices.SortFunc(versions, func(a, b index.Version) int { return strings.Compare(a.Name, b.Name) })
	return versions, nil
}

// DropVersion drops a version's collection unless the alias points at it.
func (ix *Index) DropVersion(ctx context.Context, version string) error {
	g, err := ix.describe(ctx, version)
	if err != nil {
		return err
	}
	active, err := ix.activeCollection(ctx)
	if err != nil && !errors.Is(err, index.ErrNoActiveVersion) {
		return err
	}
	if active == g.collection {
		return fmt.Errorf("%w: %q is active; activate another version first", index.ErrActiveVersion, version)
	}
	if err := ix.client.DropCollection(ctx, milvusclient.NewDropCollectionOption(g.collection)); err != nil {
		return fmt.Errorf("milvus: drop collection %s: %w", g.collection, err)
	}
	ix.options.Logger.Info("milvus: dropped gallery", "version", version, "collection", g.collection)
	return nil
}

// checkItems rejects a batch before anything is sent, so a bad batch stores nothing.
func checkItems(items []index.Item, dim int) error {
	for i, item := range items {
		if item.ID == "" || len(item.ID) > maxIDLength {
			return fmt.Errorf("milvus: item %d: id must be 1-%d bytes, not %d", i, maxIDLength, len(item.ID))
		}
		if len(item.Vector) != dim {
			return fmt.Errorf("%w: item %s has %d values, gallery has %d", index.ErrDimension, item.ID, len(item.Vector), dim)
		}
		for _, value := range item.Vector {
			if math.IsNaN(float64(value)) || math.IsInf(float64(value), 0) {
				return fmt.Errorf("milvus: item %s: vector holds NaN or Inf", item.ID)
			}
		}
		if len(item.Metadata.Camera) > maxStringLength || len(item.Metadata.Model) > maxStringLength {
			return fmt.Errorf("milvus: item %s: camera and model must be at most %d bytes", item.ID, maxStringLength)
		}
	}
	return nil
}

// Upsert inserts or replaces items. Within one batch the last item with an id wins (Milvus
// itself rejects a batch that repeats a primary key). Milvus has acknowledged every row when it
// returns nil; a batch larger than batchRows goes in several requests, and an error part way
// leaves the earlier requests applied.
func (ix *Index) Upsert(ctx context.Context, version string, items []index.Item) error {
	g, err := ix.resolve(ctx, version)
	if err != nil {
		return err
	}
	if err := checkItems(items, g.dim); err != nil {
		return err
	}
	last := make(map[string]int, len(items))
	for i, item := range items {
		last[item.ID] = i
	}
	unique := make([]index.Item, 0, len(last))
	for i, item := range items {
		if last[item.ID] == i {
			unique = append(unique, item)
		}
	}
	for start := 0; start < len(unique); start += batchRows {
		batch := unique[start:min(start+batchRows, len(unique))]
		if _, err := ix.client.Upsert(ctx, upsertOption(g, batch)); err != nil {
			return fmt.Errorf("milvus: upsert %d items into %s: %w", len(batch), g.collection, err)
		}
	}
	return nil
}

func upsertOption(g gallery, items []index.Item) milvusclient.UpsertOption {
	n := len(items)
	ids, cameras, models := make([]string, n), make([]string, n), make([]string, n)
	vectors := make([][]float32, n)
	times, tracks, frames := make([]int64, n), make([]int64, n), make([]int64, n)
	var boxes [4][]int32
	for b := range boxes {
		boxes[b] = make([]int32, n)
	}
	for i, item := range items {
		ids[i], vectors[i] = item.ID, item.Vector
		cameras[i], models[i] = item.Metadata.Camera, item.Metadata.Model
		times[i] = microFloor(item.Metadata.Time)
		tracks[i], frames[i] = item.Metadata.Track, item.Metadata.Frame
		for b := range boxes {
			boxes[b][i] = item.Metadata.Box[b]
		}
	}
	return milvusclient.NewColumnBasedInsertOption(g.collection,
		column.NewColumnVarChar(fieldID, ids),
		column.NewColumnFloatVector(fieldVector, g.dim, vectors),
		column.NewColumnVarChar(fieldCamera, cameras),
		column.NewColumnInt64(fieldTime, times),
		column.NewColumnInt64(fieldTrack, tracks),
		column.NewColumnInt64(fieldFrame, frames),
		column.NewColumnInt32(fieldBoxX, boxes[0]),
		column.NewColumnInt32(fieldBoxY, boxes[1]),
		column.NewColumnInt32(fieldBoxW, boxes[2]),
		column.NewColumnInt32(fieldBoxH, boxes[3]),
		column.NewColumnVarChar(fieldModel, models),
	)
}

// searchParams are the index-specific parameters of one search.
func (ix *Index) searchParams(k int, exact bool) milvusindex.AnnParam {
	if ix.options.IndexType == "IVF_FLAT" {
		if exact {
			// Visiting every cluster makes IVF_FLAT an exhaustive search.
			return milvusindex.NewIvfAnnParam(ix.options.NList)
		}
		return milvusindex.NewIvfAnnParam(ix.options.NProbe)
	}
	ef := max(ix.options.EfSearch, k)
	if exact {
		// Milvus has no exhaustive search over an HNSW index; a wide ef makes a miss unlikely
		// (on galleries of up to a few thousand items the graph walk visits nearly everything).
		ef = max(ef, 4*ix.options.EfSearch, 1024)
	}
	return milvusindex.NewHNSWAnnParam(min(ef, maxEf))
}

// Search runs each query vector against the gallery with the filter's cameras and time range
// evaluated by Milvus and its minimum score applied to the returned scores.
func (ix *Index) Search(ctx context.Context, version string, query index.Query) ([][]index.Match, error) {
	g, err := ix.resolve(ctx, version)
	if err != nil {
		return nil, err
	}
	if err := query.Validate(g.dim); err != nil {
		return nil, err
	}
	vectors := make([]entity.Vector, len(query.Vectors))
	for i, vector := range query.Vectors {
		vectors[i] = entity.FloatVector(vector)
	}
	option := milvusclient.NewSearchOption(g.collection, query.K, vectors).
		WithANNSField(fieldVector).
		WithFilter(filterExpr(query.Filter)).
		WithOutputFields(metadataFields...).
		WithAnnParam(ix.searchParams(query.K, query.Exact)).
		WithConsistencyLevel(entity.ClStrong)
	resultSets, err := ix.client.Search(ctx, option)
	if err != nil {
		return nil, fmt.Errorf("milvus: search %s: %w", g.collection, err)
	}
	if len(resultSets) == 0 {
		// A server may answer a search of an empty collection with no result sets at all.
		results := make([][]index.Match, len(query.Vectors))
		for i := range results {
			results[i] = []index.Match{}
		}
		return results, nil
	}
	if len(resultSets) != len(query.Vectors) {
		return nil, fmt.Errorf("milvus: search %s: %d result sets for %d query vectors", g.collection, len(resultSets), len(query.Vectors))
	}
	results := make([][]index.Match, len(resultSets))
	for q, resultSet := range resultSets {
		if resultSet.Err != nil {
			return nil, fmt.Errorf("milvus: search %s, query %d: %w", g.collection, q, resultSet.Err)
		}
		ids, err := stringColumn(resultSet.IDs, fieldID)
		if err != nil {
			return nil, err
		}
		metadata, err := readMetadata(&resultSet, len(ids))
		if err != nil {
			return nil, err
		}
		matches := make([]index.Match, 0, len(ids))
		for i, id := range ids {
			score := resultSet.Scores[i]
			// Milvus already applied cameras and times; Keep repeats them cheaply and adds the
			// minimum score, which a top-k search cannot express.
			if query.Filter.Keep(metadata[i], score) {
				matches = append(matches, index.Match{ID: id, Score: score, Metadata: metadata[i]})
			}
		}
		results[q] = matches
	}
	return results, nil
}

// Get returns the stored items with these ids, in the order asked.
func (ix *Index) Get(ctx context.Context, version string, ids []string) ([]index.Item, error) {
	g, err := ix.resolve(ctx, version)
	if err != nil {
		return nil, err
	}
	found := map[string]index.Item{}
	for start := 0; start < len(ids); start += batchRows {
		batch := ids[start:min(start+batchRows, len(ids))]
		option := milvusclient.NewQueryOption(g.collection).
			WithFilter(inExpr(fieldID, batch, false)).
			WithOutputFields(append([]string{fieldID, fieldVector}, metadataFields...)...).
			WithConsistencyLevel(entity.ClStrong)
		resultSet, err := ix.client.Query(ctx, option)
		if err != nil {
			return nil, fmt.Errorf("milvus: get from %s: %w", g.collection, err)
		}
		items, err := readItems(&resultSet)
		if err != nil {
			return nil, err
		}
		for _, item := range items {
			found[item.ID] = item
		}
	}
	items := make([]index.Item, 0, len(found))
	for _, id := range ids {
		if item, ok := found[id]; ok {
			item.Vector = slices.Clone(item.Vector) // each returned item owns its vector
			items = append(items, item)
		}
	}
	return items, nil
}

// maxQueryLimit is the most rows one Milvus query returns (its max_query_result_window).
const maxQueryLimit = 16384

// TrackItems returns the items of these tracks, stopping at limit items (at most 16,384, the
// most one Milvus query returns).
func (ix *Index) TrackItems(ctx context.Context, version string, tracks []index.TrackRef, limit int) ([]index.Item, error) {
	if limit < 0 {
		return nil, fmt.Errorf("index: negative limit %d", limit)
	}
	g, err := ix.resolve(ctx, version)
	if err != nil {
		return nil, err
	}
	expr := tracksExpr(tracks)
	if expr == "" || limit == 0 {
		return nil, nil
	}
	option := milvusclient.NewQueryOption(g.collection).
		WithFilter(expr).
		WithLimit(min(limit, maxQueryLimit)).
		WithOutputFields(append([]string{fieldID, fieldVector}, metadataFields...)...).
		WithConsistencyLevel(entity.ClStrong)
	resultSet, err := ix.client.Query(ctx, option)
	if err != nil {
		return nil, fmt.Errorf("milvus: track items from %s: %w", g.collection, err)
	}
	items, err := readItems(&resultSet)
	if err != nil {
		return nil, err
	}
	for i := range items {
		items[i].Vector = slices.Clone(items[i].Vector)
	}
	return items, nil
}

// Compact asks Milvus to compact every gallery's collection, which removes the entities deleted
// from it from storage (Milvus only marks them deleted until a compaction). Milvus compacts in the
// background; Compact returns once every request is accepted.
func (ix *Index) Compact(ctx context.Context) error {
	versions, err := ix.Versions(ctx)
	if err != nil {
		return err
	}
	for _, version := range versions {
		name := collectionName(ix.options.CollectionPrefix, ix.options.Alias, version.Name)
		if _, err := ix.client.Compact(ctx, milvusclient.NewCompactOption(name)); err != nil {
			return fmt.Errorf("milvus: compact %s: %w", name, err)
		}
	}
	return nil
}

// Delete removes items by id and returns how many existed. Milvus's delete count is the number
// of ids asked for, existing or not, so the existing ones are looked up first.
func (ix *Index) Delete(ctx context.Context, version string, ids []string) (int, error) {
	g, err := ix.resolve(ctx, version)
	if err != nil {
		return 0, err
	}
	unique := slices.Compact(slices.Sorted(slices.Values(ids)))
	deleted := 0
	for start := 0; start < len(unique); start += batchRows {
		batch := unique[start:min(start+batchRows, len(unique))]
		option := milvusclient.NewQueryOption(g.collection).
			WithFilter(inExpr(fieldID, batch, false)).
			WithOutputFields(fieldID).
			WithConsistencyLevel(entity.ClStrong)
		resultSet, err := ix.client.Query(ctx, option)
		if err != nil {
			return deleted, fmt.Errorf("milvus: look up ids to delete in %s: %w", g.collection, err)
		}
		existing, err := stringColumn(resultSet.GetColumn(fieldID), fieldID)
		if err != nil {
			return deleted, err
		}
		if len(existing) == 0 {
			continue
		}
		if _, err := ix.client.Delete(ctx, milvusclient.NewDeleteOption(g.collection).WithExpr(inExpr(fieldID, existing, false))); err != nil {
			return deleted, fmt.Errorf("milvus: delete from %s: %w", g.collection, err)
		}
		deleted += len(existing)
	}
	return deleted, nil
}

// DeleteBefore removes items older than t and returns how many there were when it counted them
// (items written older than t while it runs may be deleted without being counted).
func (ix *Index) DeleteBefore(ctx context.Context, version string, t time.Time) (int, error) {
	return ix.deleteWhere(ctx, version, olderThanExpr(t))
}

// DeleteCameraBefore removes one camera's items older than t, as DeleteBefore counts them.
func (ix *Index) DeleteCameraBefore(ctx context.Context, version, camera string, t time.Time) (int, error) {
	return ix.deleteWhere(ctx, version, fieldCamera+" == "+quote(camera)+" and "+olderThanExpr(t))
}

func (ix *Index) deleteWhere(ctx context.Context, version, expr string) (int, error) {
	g, err := ix.resolve(ctx, version)
	if err != nil {
		return 0, err
	}
	count, err := ix.countWhere(ctx, g.collection, expr)
	if err != nil {
		return 0, err
	}
	if count == 0 {
		return 0, nil
	}
	if _, err := ix.client.Delete(ctx, milvusclient.NewDeleteOption(g.collection).WithExpr(expr)); err != nil {
		return 0, fmt.Errorf("milvus: delete %s from %s: %w", expr, g.collection, err)
	}
	return count, nil
}

// Count is the number of items in a gallery.
func (ix *Index) Count(ctx context.Context, version string) (int, error) {
	g, err := ix.resolve(ctx, version)
	if err != nil {
		return 0, err
	}
	return ix.count(ctx, g.collection)
}

func (ix *Index) count(ctx context.Context, collection string) (int, error) {
	return ix.countWhere(ctx, collection, "")
}

// countWhere runs a count(*) query, which Milvus answers without returning rows.
func (ix *Index) countWhere(ctx context.Context, collection, expr string) (int, error) {
	option := milvusclient.NewQueryOption(collection).
		WithFilter(expr).
		WithOutputFields("count(*)").
		WithConsistencyLevel(entity.ClStrong)
	resultSet, err := ix.client.Query(ctx, option)
	if err != nil {
		return 0, fmt.Errorf("milvus: count %s: %w", collection, err)
	}
	counts, ok := resultSet.GetColumn("count(*)").(*column.ColumnInt64)
	if !ok || counts.Len() != 1 {
		return 0, fmt.Errorf("milvus: count %s: no count(*) in the reply", collection)
	}
	return int(counts.Data()[0]), nil
}

func stringColumn(col column.Column, name string) ([]string, error) {
	if col == nil {
		return nil, fmt.Errorf("milvus: reply has no %s column", name)
	}
	values, ok := col.(*column.ColumnVarChar)
	if !ok {
		return nil, fmt.Errorf("milvus: column %s is %T, not VarChar", name, col)
	}
	return values.Data(), nil
}

func int64Column(resultSet *milvusclient.ResultSet, name string, n int) ([]int64, error) {
	values, ok := resultSet.GetColumn(name).(*column.ColumnInt64)
	if !ok || values.Len() != n {
		return nil, fmt.Errorf("milvus: reply has no Int64 column %s of %d values", name, n)
	}
	return values.Data(), nil
}

func int32Column(resultSet *milvusclient.ResultSet, name string, n int) ([]int32, error) {
	values, ok := resultSet.GetColumn(name).(*column.ColumnInt32)
	if !ok || values.Len() != n {
		return nil, fmt.Errorf("milvus: reply has no Int32 column %s of %d values", name, n)
	}
	return values.Data(), nil
}

// readMetadata decodes the metadata columns of n rows.
func readMetadata(resultSet *milvusclient.ResultSet, n int) ([]index.Metadata, error) {
	cameras, err := stringColumn(resultSet.GetColumn(fieldCamera), fieldCamera)
	if err != nil {
		return nil, err
	}
	models, err := stringColumn(resultSet.GetColumn(fieldModel), fieldModel)
	if err != nil {
		return nil, err
	}
	if len(cameras) != n || len(models) != n {
		return nil, fmt.Errorf("milvus: reply has %d cameras and %d models for %d rows", len(cameras), len(models), n)
	}
	var ints [3][]int64
	for i, name := range []string{fieldTime, fieldTrack, fieldFrame} {
		if ints[i], err = int64Column(resultSet, name, n); err != nil {
			return nil, err
		}
	}
	var boxes [4][]int32
	for i, name := range []string{fieldBoxX, fieldBoxY, fieldBoxW, fieldBoxH} {
		if boxes[i], err = int32Column(resultSet, name, n); err != nil {
			return nil, err
		}
	}
	metadata := make([]index.Metadata, n)
	for i := range metadata {
		metadata[i] = index.Metadata{
			Camera: cameras[i],
			Time:   time.UnixMicro(ints[0][i]).UTC(),
			Track:  ints[1][i],
			Frame:  ints[2][i],
			Box:    [4]int32{boxes[0][i], boxes[1][i], boxes[2][i], boxes[3][i]},
			Model:  models[i],
		}
	}
	return metadata, nil
}

// readItems decodes whole items from a query reply.
func readItems(resultSet *milvusclient.ResultSet) ([]index.Item, error) {
	ids, err := stringColumn(resultSet.GetColumn(fieldID), fieldID)
	if err != nil {
		return nil, err
	}
	vectors, ok := resultSet.GetColumn(fieldVector).(*column.ColumnFloatVector)
	if !ok || vectors.Len() != len(ids) {
		return nil, fmt.Errorf("milvus: reply has no vector column of %d rows", len(ids))
	}
	metadata, err := readMetadata(resultSet, len(ids))
	if err != nil {
		return nil, err
	}
	items := make([]index.Item, len(ids))
	for i, id := range ids {
		items[i] = index.Item{ID: id, Vector: []float32(vectors.Data()[i]), Metadata: metadata[i]}
	}
	return items, nil
}

// String names the backend for logs.
func (ix *Index) String() string {
	return "milvus " + ix.options.Address + "/" + ix.options.Database + " alias " + ix.options.Alias + " (" +
		ix.options.IndexType + ", " + ix.options.Metric + ", ef " + strconv.Itoa(ix.options.EfSearch) + ")"
}
