package milvusfake

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/milvus-io/milvus-proto/go-api/v2/commonpb"
	"github.com/milvus-io/milvus-proto/go-api/v2/milvuspb"
	"github.com/milvus-io/milvus-proto/go-api/v2/schemapb"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
	"google.golang.org/protobuf/proto"
)

type collection struct {
	id          int64
	name        string
	schema      *schemapb.CollectionSchema
	fields      map[string]*schemapb.FieldSchema
	primary     *schemapb.FieldSchema
	properties  []*commonpb.KeyValuePair
	consistency commonpb.ConsistencyLevel
	shards      int32
	created     uint64
	// indexes holds the vector index of each field that has one, by field name.
	indexes map[string]*fieldIndex
	loaded  bool
	// rows holds each entity's field values by primary key (string or int64). Integers are
	// stored as int64, floating point as float64, float vectors as []float32.
	rows map[any]map[string]any
}

type fieldIndex struct {
	id     int64
	name   string
	field  string
	params map[string]string
}

func (ix *fieldIndex) metric() string    { return ix.params["metric_type"] }
func (ix *fieldIndex) indexType() string { return ix.params["index_type"] }

// dim is a vector field's dimension.
func dim(field *schemapb.FieldSchema) int {
	for _, param := range field.GetTypeParams() {
		if param.GetKey() == "dim" {
			value, _ := strconv.Atoi(param.GetValue())
			return value
		}
	}
	return 0
}

// maxLength is a VarChar field's maximum length in bytes.
func maxLength(field *schemapb.FieldSchema) int {
	for _, param := range field.GetTypeParams() {
		if param.GetKey() == "max_length" {
			value, _ := strconv.Atoi(param.GetValue())
			return value
		}
	}
	return 0
}

func isVector(t schemapb.DataType) bool {
	switch t {
	case schemapb.DataType_FloatVector, schemapb.DataType_BinaryVector, schemapb.DataType_Float16Vector,
		schemapb.DataType_BFloat16Vector, schemapb.DataType_SparseFloatVector, schemapb.DataType_Int8Vector:
		return true
	}
	return false
}

// supported reports whether the fake can store values of this type.
func supported(t schemapb.DataType) bool {
	switch t {
	case schemapb.DataType_Bool, schemapb.DataType_Int8, schemapb.DataType_Int16, schemapb.DataType_Int32,
		schemapb.DataType_Int64, schemapb.DataType_Float, schemapb.DataType_Double, schemapb.DataType_VarChar,
		schemapb.DataType_FloatVector:
		return true
	}
	return false
}

// newCollection checks a schema the way Milvus's CreateCollection does, as far as the fake
// supports it.
func newCollection(name string, schema *schemapb.CollectionSchema) (*collection, error) {
	if schema.GetName() != name {
		return nil, merr.WrapErrParameterInvalidMsg("collection name [%s] does not match schema name [%s]", name, schema.GetName())
	}
	if schema.GetEnableDynamicField() {
		return nil, fmt.Errorf("dynamic fields are %w", errNotEmulated)
	}
	if len(schema.GetFunctions()) > 0 || len(schema.GetStructArrayFields()) > 0 {
		return nil, fmt.Errorf("functions and struct array fields are %w", errNotEmulated)
	}
	c := &collection{
		name:    name,
		schema:  proto.Clone(schema).(*schemapb.CollectionSchema),
		fields:  map[string]*schemapb.FieldSchema{},
		indexes: map[string]*fieldIndex{},
		rows:    map[any]map[string]any{},
	}
	vectors := 0
	for i, field := range c.schema.GetFields() {
		if err := validName(field.GetName(), "field"); err != nil {
			return nil, err
		}
		if _, dup := c.fields[field.GetName()]; dup {
			return nil, merr.WrapErrParameterInvalidMsg("duplicated field name %s", field.GetName())
		}
		if !supported(field.GetDataType()) {
			return nil, fmt.Errorf("field %s: data type %s is %w", field.GetName(), field.GetDataType(), errNotEmulated)
		}
		if field.GetNullable() || field.GetDefaultValue() != nil || field.GetIsPartitionKey() || field.GetIsClusteringKey() {
			return nil, fmt.Errorf("field %s: nullable, default, partition and clustering keys are %w", field.GetName(), errNotEmulated)
		}
		field.FieldID = int64(100 + i) // Milvus numbers user fields from 100
		c.fields[field.GetName()] = field
		if field.GetIsPrimaryKey() {
			if c.primary != nil {
				return nil, merr.WrapErrParameterInvalidMsg("there are more than one primary key, field name = %s, %s", c.primary.GetName(), field.GetName())
			}
			if field.GetDataType() != schemapb.DataType_Int64 && field.GetDataType() != schemapb.DataType_VarChar {
				return nil, merr.WrapErrParameterInvalidMsg("the data type of primary key should be Int64 or VarChar")
			}
			if field.GetAutoID() || c.schema.GetAutoID() {
				return nil, fmt.Errorf("autoID primary keys are %w", errNotEmulated)
			}
			c.primary = field
		}
		switch field.GetDataType() {
		case schemapb.DataType_VarChar:
			if n := maxLength(field); n <= 0 || n > 65535 {
				return nil, merr.WrapErrParameterInvalidMsg("the maximum length specified for field %s should be in (0, 65535]", field.GetName())
			}
		case schemapb.DataType_FloatVector:
			vectors++
			if d := dim(field); d < 2 || d > 32768 {
				return nil, merr.WrapErrParameterInvalidMsg("invalid dimension: %d of field %s. should be in range 2 ~ 32768", d, field.GetName())
			}
		}
	}
	if c.primary == nil {
		return nil, merr.WrapErrParameterInvalidMsg("primary key is not specified")
	}
	if vectors == 0 {
		return nil, merr.WrapErrParameterInvalidMsg("schema does not contain vector field")
	}
	return c, nil
}

// sameSchema reports whether two schemas define the same fields, which is when Milvus accepts a
// repeated CreateCollection.
func sameSchema(a, b *schemapb.CollectionSchema) bool {
	if len(a.GetFields()) != len(b.GetFields()) {
		return false
	}
	for i, fa := range a.GetFields() {
		fb := b.GetFields()[i]
		if fa.GetName() != fb.GetName() || fa.GetDataType() != fb.GetDataType() || fa.GetIsPrimaryKey() != fb.GetIsPrimaryKey() ||
			dim(fa) != dim(fb) || maxLength(fa) != maxLength(fb) {
			return false
		}
	}
	return true
}

// CreateCollection creates a collection from a serialised schema.
func (s *Server) CreateCollection(ctx context.Context, request *milvuspb.CreateCollectionRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		name := request.GetCollectionName()
		if err := validName(name, "collection"); err != nil {
			return err
		}
		var schema schemapb.CollectionSchema
		if err := proto.Unmarshal(request.GetSchema(), &schema); err != nil {
			return merr.WrapErrParameterInvalidMsg("unmarshal schema: %v", err)
		}
		if existing, ok := db.collections[name]; ok {
			if sameSchema(existing.schema, &schema) {
				return nil
			}
			return merr.WrapErrParameterInvalidMsg("create duplicate collection with different parameters, collection: %s", name)
		}
		if _, ok := db.aliases[name]; ok {
			return merr.WrapErrAliasCollectionNameConflict(request.GetDbName(), name)
		}
		c, err := newCollection(name, &schema)
		if err != nil {
			return err
		}
		c.id = s.newID()
		c.created = s.tick()
		c.properties = request.GetProperties()
		c.consistency = request.GetConsistencyLevel()
		c.shards = request.GetShardsNum()
		db.collections[name] = c
		return nil
	}), nil
}

// DescribeCollection describes a collection by name, alias or id; an unknown one is status code
// 100 (collection not found), which the client's HasCollection relies on.
func (s *Server) DescribeCollection(ctx context.Context, request *milvuspb.DescribeCollectionRequest) (*milvuspb.DescribeCollectionResponse, error) {
	response := &milvuspb.DescribeCollectionResponse{}
	response.Status = s.do(ctx, func(db *database) error {
		var c *collection
		if request.GetCollectionName() == "" && request.GetCollectionID() != 0 {
			for _, candidate := range db.collections {
				if candidate.id == request.GetCollectionID() {
					c = candidate
				}
			}
			if c == nil {
				return merr.WrapErrCollectionNotFound(request.GetCollectionID())
			}
		} else {
			var err error
			if c, err = db.resolve(request.GetCollectionName()); err != nil {
				return err
			}
		}
		response.Schema = proto.Clone(c.schema).(*schemapb.CollectionSchema)
		response.CollectionID = c.id
		response.CollectionName = c.name
		response.DbName = request.GetDbName()
		response.ShardsNum = c.shards
		response.ConsistencyLevel = c.consistency
		response.Properties = c.properties
		response.Aliases = db.aliasesOf(c.name)
		response.CreatedTimestamp = c.created
		response.UpdateTimestamp = c.created
		response.NumPartitions = 1
		for i := range c.shards {
			response.VirtualChannelNames = append(response.VirtualChannelNames, fmt.Sprintf("fake-dml_%d_%dv0", i, c.id))
			response.PhysicalChannelNames = append(response.PhysicalChannelNames, fmt.Sprintf("fake-dml_%d", i))
		}
		return nil
	})
	return response, nil
}

// HasCollection is the pre-2.4 existence check; the v2 client uses DescribeCollection instead.
func (s *Server) HasCollection(ctx context.Context, request *milvuspb.HasCollectionRequest) (*milvuspb.BoolResponse, error) {
	response := &milvuspb.BoolResponse{}
	response.Status = s.do(ctx, func(db *database) error {
		_, err := db.resolve(request.GetCollectionName())
		response.Value = err == nil
		return nil
	})
	return response, nil
}

// ShowCollections lists the collections of the database.
func (s *Server) ShowCollections(ctx context.Context, request *milvuspb.ShowCollectionsRequest) (*milvuspb.ShowCollectionsResponse, error) {
	response := &milvuspb.ShowCollectionsResponse{}
	response.Status = s.do(ctx, func(db *database) error {
		names := make([]string, 0, len(db.collections))
		for name := range db.collections {
			names = append(names, name)
		}
		sortStrings(names)
		for _, name := range names {
			c := db.collections[name]
			loaded := int64(0)
			if c.loaded {
				loaded = 100
			}
			response.CollectionNames = append(response.CollectionNames, name)
			response.CollectionIds = append(response.CollectionIds, c.id)
			response.CreatedTimestamps = append(response.CreatedTimestamps, c.created)
			response.CreatedUtcTimestamps = append(response.CreatedUtcTimestamps, c.created)
			response.InMemoryPercentages = append(response.InMemoryPercentages, loaded)
			response.QueryServiceAvailable = append(response.QueryServiceAvailable, c.loaded)
			response.ShardsNum = append(response.ShardsNum, c.shards)
		}
		return nil
	})
	return response, nil
}

// DropCollection drops a collection by its own name (not an alias). Dropping a missing
// collection succeeds, and one with aliases fails, as in Milvus.
func (s *Server) DropCollection(ctx context.Context, request *milvuspb.DropCollectionRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		name := request.GetCollectionName()
		if _, ok := db.aliases[name]; ok {
			return merr.WrapErrParameterInvalidMsg("cannot drop the collection via alias = %s", name)
		}
		if _, ok := db.collections[name]; !ok {
			return nil
		}
		if aliases := db.aliasesOf(name); len(aliases) > 0 {
			return merr.WrapErrParameterInvalidMsg("unable to drop the collection [%s] because it has associated aliases %v, please remove all aliases before dropping the collection", name, aliases)
		}
		delete(db.collections, name)
		return nil
	}), nil
}

// GetCollectionStatistics reports the row count.
func (s *Server) GetCollectionStatistics(ctx context.Context, request *milvuspb.GetCollectionStatisticsRequest) (*milvuspb.GetCollectionStatisticsResponse, error) {
	response := &milvuspb.GetCollectionStatisticsResponse{}
	response.Status = s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		response.Stats = []*commonpb.KeyValuePair{{Key: "row_count", Value: strconv.Itoa(len(c.rows))}}
		return nil
	})
	return response, nil
}

var (
	indexTypes = []string{"FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX"}
	metrics    = []string{"COSINE", "IP", "L2"}
)

// CreateIndex records a vector index. The fake searches by brute force whatever the index type,
// but checks the parameters Milvus checks so that a bad index definition fails here too.
func (s *Server) CreateIndex(ctx context.Context, request *milvuspb.CreateIndexRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		field, ok := c.fields[request.GetFieldName()]
		if !ok {
			return merr.WrapErrParameterInvalidMsg("cannot create index on non-exist field: %s", request.GetFieldName())
		}
		if !isVector(field.GetDataType()) {
			return fmt.Errorf("scalar indexes are %w", errNotEmulated)
		}
		params := map[string]string{}
		for _, pair := range request.GetExtraParams() {
			params[pair.GetKey()] = pair.GetValue()
		}
		if params["index_type"] == "" {
			params["index_type"] = "AUTOINDEX" // what Milvus builds when no type is given
		}
		if !slices.Contains(indexTypes, params["index_type"]) {
			return merr.WrapErrParameterInvalidMsg("invalid index type: %s", params["index_type"])
		}
		if params["index_type"] == "AUTOINDEX" && params["metric_type"] == "" {
			params["metric_type"] = "COSINE"
		}
		if !slices.Contains(metrics, params["metric_type"]) {
			return merr.WrapErrParameterInvalidMsg("float vector index does not support metric type: %s", params["metric_type"])
		}
		checkInt := func(key string, low, high int) error {
			value, err := strconv.Atoi(params[key])
			if err != nil || value < low || value > high {
				return merr.WrapErrParameterInvalidMsg("param '%s' (%s) should be in range [%d, %d]", key, params[key], low, high)
			}
			return nil
		}
		switch params["index_type"] {
		case "HNSW":
			if err := checkInt("M", 2, 2048); err != nil {
				return err
			}
			if err := checkInt("efConstruction", 1, 2147483647); err != nil {
				return err
			}
		case "IVF_FLAT":
			if err := checkInt("nlist", 1, 65536); err != nil {
				return err
			}
		}
		name := request.GetIndexName()
		if name == "" {
			name = field.GetName()
		}
		if existing, ok := c.indexes[field.GetName()]; ok {
			if existing.name == name && mapsEqual(existing.params, params) {
				return nil
			}
			return merr.WrapErrParameterInvalidMsg("at most one distinct index is allowed per field")
		}
		c.indexes[field.GetName()] = &fieldIndex{id: s.newID(), name: name, field: field.GetName(), params: params}
		return nil
	}), nil
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for key, value := range a {
		if other, ok := b[key]; !ok || other != value {
			return false
		}
	}
	return true
}

// DescribeIndex reports a collection's indexes, all finished (the fake builds nothing).
func (s *Server) DescribeIndex(ctx context.Context, request *milvuspb.DescribeIndexRequest) (*milvuspb.DescribeIndexResponse, error) {
	response := &milvuspb.DescribeIndexResponse{}
	response.Status = s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		for _, ix := range c.sortedIndexes() {
			if request.GetFieldName() != "" && ix.field != request.GetFieldName() || request.GetIndexName() != "" && ix.name != request.GetIndexName() {
				continue
			}
			params := make([]*commonpb.KeyValuePair, 0, len(ix.params))
			for _, key := range sortedKeys(ix.params) {
				params = append(params, &commonpb.KeyValuePair{Key: key, Value: ix.params[key]})
			}
			response.IndexDescriptions = append(response.IndexDescriptions, &milvuspb.IndexDescription{
				IndexName:   ix.name,
				IndexID:     ix.id,
				Params:      params,
				FieldName:   ix.field,
				IndexedRows: int64(len(c.rows)),
				TotalRows:   int64(len(c.rows)),
				State:       commonpb.IndexState_Finished,
			})
		}
		if len(response.IndexDescriptions) == 0 {
			return merr.WrapErrIndexNotFound(request.GetIndexName())
		}
		return nil
	})
	return response, nil
}

// DropIndex removes an index from a released collection.
func (s *Server) DropIndex(ctx context.Context, request *milvuspb.DropIndexRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		if c.loaded {
			return merr.WrapErrParameterInvalidMsg("index cannot be dropped, collection is loaded, please release it first")
		}
		for field, ix := range c.indexes {
			if request.GetIndexName() == "" && field == request.GetFieldName() || ix.name == request.GetIndexName() {
				delete(c.indexes, field)
			}
		}
		return nil
	}), nil
}

func (c *collection) sortedIndexes() []*fieldIndex {
	indexes := make([]*fieldIndex, 0, len(c.indexes))
	for _, field := range sortedKeys(c.indexes) {
		indexes = append(indexes, c.indexes[field])
	}
	return indexes
}

// LoadCollection loads a collection; every vector field needs an index first, as in Milvus.
func (s *Server) LoadCollection(ctx context.Context, request *milvuspb.LoadCollectionRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		for _, field := range c.schema.GetFields() {
			if _, ok := c.indexes[field.GetName()]; isVector(field.GetDataType()) && !ok {
				return merr.WrapErrIndexNotFound(field.GetName(), fmt.Sprintf("there is no vector index on field: [%s], please create index firstly", field.GetName()))
			}
		}
		c.loaded = true
		return nil
	}), nil
}

// ReleaseCollection unloads a collection.
func (s *Server) ReleaseCollection(ctx context.Context, request *milvuspb.ReleaseCollectionRequest) (*commonpb.Status, error) {
	return s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		c.loaded = false
		return nil
	}), nil
}

// GetLoadState reports whether a collection is loaded; loading is instant in the fake.
func (s *Server) GetLoadState(ctx context.Context, request *milvuspb.GetLoadStateRequest) (*milvuspb.GetLoadStateResponse, error) {
	response := &milvuspb.GetLoadStateResponse{}
	response.Status = s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		response.State = commonpb.LoadState_LoadStateNotLoad
		if c.loaded {
			response.State = commonpb.LoadState_LoadStateLoaded
		}
		return nil
	})
	return response, nil
}

// GetLoadingProgress is 100 for a loaded collection and an error for one not loaded.
func (s *Server) GetLoadingProgress(ctx context.Context, request *milvuspb.GetLoadingProgressRequest) (*milvuspb.GetLoadingProgressResponse, error) {
	response := &milvuspb.GetLoadingProgressResponse{}
	response.Status = s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		if !c.loaded {
			return merr.WrapErrCollectionNotLoaded(c.name)
		}
		response.Progress, response.RefreshProgress = 100, 100
		return nil
	})
	return response, nil
}

// Flush is a no-op: the fake keeps nothing in growing segments.
func (s *Server) Flush(ctx context.Context, request *milvuspb.FlushRequest) (*milvuspb.FlushResponse, error) {
	response := &milvuspb.FlushResponse{
		DbName:          request.GetDbName(),
		CollSegIDs:      map[string]*schemapb.LongArray{},
		FlushCollSegIDs: map[string]*schemapb.LongArray{},
		CollSealTimes:   map[string]int64{},
		CollFlushTs:     map[string]uint64{},
	}
	response.Status = s.do(ctx, func(db *database) error {
		for _, name := range request.GetCollectionNames() {
			if _, err := db.resolve(name); err != nil {
				return err
			}
			response.CollSegIDs[name] = &schemapb.LongArray{}
			response.FlushCollSegIDs[name] = &schemapb.LongArray{}
			response.CollFlushTs[name] = s.tick()
		}
		return nil
	})
	return response, nil
}

// ManualCompaction accepts a compaction of an existing collection. The fake stores no segments,
// so there is nothing to compact; Calls counts the requests.
func (s *Server) ManualCompaction(ctx context.Context, request *milvuspb.ManualCompactionRequest) (*milvuspb.ManualCompactionResponse, error) {
	response := &milvuspb.ManualCompactionResponse{}
	response.Status = s.do(ctx, func(db *database) error {
		if _, err := db.resolve(request.GetCollectionName()); err != nil {
			return err
		}
		response.CompactionID = s.newID()
		return nil
	})
	return response, nil
}

// GetFlushState reports every flush as done.
func (s *Server) GetFlushState(ctx context.Context, request *milvuspb.GetFlushStateRequest) (*milvuspb.GetFlushStateResponse, error) {
	response := &milvuspb.GetFlushStateResponse{Flushed: true}
	response.Status = s.do(ctx, func(*database) error { return nil })
	return response, nil
}
