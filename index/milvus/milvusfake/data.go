package milvusfake

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"

	"github.com/milvus-io/milvus-proto/go-api/v2/commonpb"
	"github.com/milvus-io/milvus-proto/go-api/v2/milvuspb"
	"github.com/milvus-io/milvus-proto/go-api/v2/schemapb"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
	"google.golang.org/protobuf/proto"
)

// maxTopK is Milvus's limit on topk and on offset+limit of a query.
const maxTopK = 16384

func sortStrings(values []string) { slices.Sort(values) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

// decodeRows turns column-based field data into rows, checking them against the schema the way
// Milvus's proxy does.
func (c *collection) decodeRows(fieldsData []*schemapb.FieldData, numRows int) ([]map[string]any, error) {
	rows := make([]map[string]any, numRows)
	for i := range rows {
		rows[i] = make(map[string]any, len(c.fields))
	}
	seen := map[string]bool{}
	for _, data := range fieldsData {
		if data.GetIsDynamic() {
			return nil, merr.WrapErrParameterInvalidMsg("dynamic field data passed but the collection has no dynamic field")
		}
		field, ok := c.fields[data.GetFieldName()]
		if !ok {
			return nil, merr.WrapErrParameterInvalidMsg("field %s does not exist in collection %s", data.GetFieldName(), c.name)
		}
		if seen[field.GetName()] {
			return nil, merr.WrapErrParameterInvalidMsg("duplicated field %s in insert data", field.GetName())
		}
		seen[field.GetName()] = true
		if data.GetType() != field.GetDataType() {
			return nil, merr.WrapErrParameterInvalidMsg("field %s: data type %s does not match schema type %s", field.GetName(), data.GetType(), field.GetDataType())
		}
		values, err := decodeColumn(field, data)
		if err != nil {
			return nil, err
		}
		if len(values) != numRows {
			return nil, merr.WrapErrParameterInvalidMsg("the num_rows (%d) of field (%s) is not equal to passed num_rows (%d)", len(values), field.GetName(), numRows)
		}
		for i, value := range values {
			rows[i][field.GetName()] = value
		}
	}
	for _, field := range c.schema.GetFields() {
		if !seen[field.GetName()] {
			return nil, merr.WrapErrParameterInvalidMsg("Insert missed an field `%s` to collection without set nullable==true or set default_value", field.GetName())
		}
	}
	return rows, nil
}

func decodeColumn(field *schemapb.FieldSchema, data *schemapb.FieldData) ([]any, error) {
	var values []any
	scalars := data.GetScalars()
	switch field.GetDataType() {
	case schemapb.DataType_Bool:
		for _, v := range scalars.GetBoolData().GetData() {
			values = append(values, v)
		}
	case schemapb.DataType_Int8, schemapb.DataType_Int16, schemapb.DataType_Int32:
		bits := map[schemapb.DataType]int{schemapb.DataType_Int8: 8, schemapb.DataType_Int16: 16, schemapb.DataType_Int32: 32}[field.GetDataType()]
		for _, v := range scalars.GetIntData().GetData() {
			if int64(v) < -(int64(1)<<(bits-1)) || int64(v) >= int64(1)<<(bits-1) {
				return nil, merr.WrapErrParameterInvalidMsg("value %d out of range for field %s of type %s", v, field.GetName(), field.GetDataType())
			}
			values = append(values, int64(v))
		}
	case schemapb.DataType_Int64:
		for _, v := range scalars.GetLongData().GetData() {
			values = append(values, v)
		}
	case schemapb.DataType_Float:
		for _, v := range scalars.GetFloatData().GetData() {
			values = append(values, float64(v))
		}
	case schemapb.DataType_Double:
		for _, v := range scalars.GetDoubleData().GetData() {
			values = append(values, v)
		}
	case schemapb.DataType_VarChar:
		limit := maxLength(field)
		for _, v := range scalars.GetStringData().GetData() {
			if len(v) > limit {
				return nil, merr.WrapErrParameterInvalidMsg("length of varchar field %s exceeds max length, row length: %d, max length: %d", field.GetName(), len(v), limit)
			}
			values = append(values, v)
		}
	case schemapb.DataType_FloatVector:
		vectors := data.GetVectors()
		d := dim(field)
		if int(vectors.GetDim()) != d {
			return nil, merr.WrapErrParameterInvalidMsg("the dim (%d) of field data(%s) is not equal to schema dim (%d)", vectors.GetDim(), field.GetName(), d)
		}
		flat := vectors.GetFloatVector().GetData()
		if len(flat)%d != 0 {
			return nil, merr.WrapErrParameterInvalidMsg("the length (%d) of float data should divide the dim(%d)", len(flat), d)
		}
		for start := 0; start < len(flat); start += d {
			vector := slices.Clone(flat[start : start+d])
			for _, x := range vector {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return nil, merr.WrapErrParameterInvalidMsg("float vector of field %s contains NaN or Inf", field.GetName())
				}
			}
			values = append(values, vector)
		}
	}
	return values, nil
}

func (c *collection) idsOf(rows []map[string]any) *schemapb.IDs {
	name := c.primary.GetName()
	if c.primary.GetDataType() == schemapb.DataType_VarChar {
		ids := make([]string, len(rows))
		for i, row := range rows {
			ids[i] = row[name].(string)
		}
		return &schemapb.IDs{IdField: &schemapb.IDs_StrId{StrId: &schemapb.StringArray{Data: ids}}}
	}
	ids := make([]int64, len(rows))
	for i, row := range rows {
		ids[i] = row[name].(int64)
	}
	return &schemapb.IDs{IdField: &schemapb.IDs_IntId{IntId: &schemapb.LongArray{Data: ids}}}
}

// write decodes and stores insert or upsert data; the caller holds s.mu.
func (s *Server) write(db *database, name string, fieldsData []*schemapb.FieldData, numRows uint32, schemaTimestamp uint64, upsert bool, result *milvuspb.MutationResult) error {
	c, err := db.resolve(name)
	if err != nil {
		return err
	}
	// The client sends the schema version it built the request from; Milvus rejects a request
	// built from an older schema so the client refreshes its cache and retries.
	if schemaTimestamp != 0 && schemaTimestamp < c.created {
		return merr.WrapErrCollectionSchemaMisMatch(c.name)
	}
	rows, err := c.decodeRows(fieldsData, int(numRows))
	if err != nil {
		return err
	}
	batch := make(map[any]bool, len(rows))
	for _, row := range rows {
		key := row[c.primary.GetName()]
		if batch[key] {
			if upsert {
				return merr.WrapErrParameterInvalidMsg("duplicate primary keys are not allowed in the same batch")
			}
			return fmt.Errorf("duplicate primary keys in one insert are %w (Milvus would keep both)", errNotEmulated)
		}
		batch[key] = true
		if _, exists := c.rows[key]; exists && !upsert {
			return fmt.Errorf("inserting an existing primary key is %w (Milvus would keep both); use upsert", errNotEmulated)
		}
	}
	for _, row := range rows {
		c.rows[row[c.primary.GetName()]] = row
	}
	result.IDs = c.idsOf(rows)
	for i := range rows {
		result.SuccIndex = append(result.SuccIndex, uint32(i))
	}
	result.Timestamp = s.tick()
	if upsert {
		result.UpsertCnt = int64(len(rows))
	} else {
		result.InsertCnt = int64(len(rows))
	}
	return nil
}

// Insert adds new entities.
func (s *Server) Insert(ctx context.Context, request *milvuspb.InsertRequest) (*milvuspb.MutationResult, error) {
	result := &milvuspb.MutationResult{}
	result.Status = s.do(ctx, func(db *database) error {
		return s.write(db, request.GetCollectionName(), request.GetFieldsData(), request.GetNumRows(), request.GetSchemaTimestamp(), false, result)
	})
	return result, nil
}

// Upsert inserts or replaces entities by primary key.
func (s *Server) Upsert(ctx context.Context, request *milvuspb.UpsertRequest) (*milvuspb.MutationResult, error) {
	result := &milvuspb.MutationResult{}
	result.Status = s.do(ctx, func(db *database) error {
		if request.GetPartialUpdate() || len(request.GetFieldOps()) > 0 {
			return fmt.Errorf("partial upsert is %w", errNotEmulated)
		}
		return s.write(db, request.GetCollectionName(), request.GetFieldsData(), request.GetNumRows(), request.GetSchemaTimestamp(), true, result)
	})
	return result, nil
}

// Delete removes the entities matching an expression and reports how many there were.
func (s *Server) Delete(ctx context.Context, request *milvuspb.DeleteRequest) (*milvuspb.MutationResult, error) {
	result := &milvuspb.MutationResult{}
	result.Status = s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		if len(request.GetExprTemplateValues()) > 0 {
			return fmt.Errorf("expression templates are %w", errNotEmulated)
		}
		if request.GetExpr() == "" {
			return merr.WrapErrParameterInvalidMsg("expr cannot be empty")
		}
		keep, err := parseExpr(request.GetExpr(), c.fields)
		if err != nil {
			return merr.WrapErrParameterInvalidMsg("%v", err)
		}
		var deleted []map[string]any
		for key, row := range c.rows {
			if keep(row) {
				deleted = append(deleted, row)
				delete(c.rows, key)
			}
		}
		result.IDs = c.idsOf(deleted)
		result.DeleteCnt = int64(len(deleted))
		result.Timestamp = s.tick()
		return nil
	})
	return result, nil
}

// outputFields expands and checks requested output fields; the primary key is always included.
func (c *collection) outputFields(requested []string) ([]*schemapb.FieldSchema, error) {
	names := []string{c.primary.GetName()}
	for _, name := range requested {
		if name == "*" {
			for _, field := range c.schema.GetFields() {
				names = append(names, field.GetName())
			}
			continue
		}
		if _, ok := c.fields[name]; !ok {
			return nil, merr.WrapErrParameterInvalidMsg("field %s not exist", name)
		}
		names = append(names, name)
	}
	var fields []*schemapb.FieldSchema
	seen := map[string]bool{}
	for _, name := range names {
		if !seen[name] {
			seen[name] = true
			fields = append(fields, c.fields[name])
		}
	}
	return fields, nil
}

// encodeColumn turns one field of rows back into column-based field data.
func encodeColumn(field *schemapb.FieldSchema, rows []map[string]any) *schemapb.FieldData {
	data := &schemapb.FieldData{Type: field.GetDataType(), FieldName: field.GetName(), FieldId: field.GetFieldID()}
	name := field.GetName()
	scalar := func(s *schemapb.ScalarField) { data.Field = &schemapb.FieldData_Scalars{Scalars: s} }
	switch field.GetDataType() {
	case schemapb.DataType_Bool:
		values := make([]bool, len(rows))
		for i, row := range rows {
			values[i] = row[name].(bool)
		}
		scalar(&schemapb.ScalarField{Data: &schemapb.ScalarField_BoolData{BoolData: &schemapb.BoolArray{Data: values}}})
	case schemapb.DataType_Int8, schemapb.DataType_Int16, schemapb.DataType_Int32:
		values := make([]int32, len(rows))
		for i, row := range rows {
			values[i] = int32(row[name].(int64))
		}
		scalar(&schemapb.ScalarField{Data: &schemapb.ScalarField_IntData{IntData: &schemapb.IntArray{Data: values}}})
	case schemapb.DataType_Int64:
		values := make([]int64, len(rows))
		for i, row := range rows {
			values[i] = row[name].(int64)
		}
		scalar(&schemapb.ScalarField{Data: &schemapb.ScalarField_LongData{LongData: &schemapb.LongArray{Data: values}}})
	case schemapb.DataType_Float:
		values := make([]float32, len(rows))
		for i, row := range rows {
			values[i] = float32(row[name].(float64))
		}
		scalar(&schemapb.ScalarField{Data: &schemapb.ScalarField_FloatData{FloatData: &schemapb.FloatArray{Data: values}}})
	case schemapb.DataType_Double:
		values := make([]float64, len(rows))
		for i, row := range rows {
			values[i] = row[name].(float64)
		}
		scalar(&schemapb.ScalarField{Data: &schemapb.ScalarField_DoubleData{DoubleData: &schemapb.DoubleArray{Data: values}}})
	case schemapb.DataType_VarChar:
		values := make([]string, len(rows))
		for i, row := range rows {
			values[i] = row[name].(string)
		}
		scalar(&schemapb.ScalarField{Data: &schemapb.ScalarField_StringData{StringData: &schemapb.StringArray{Data: values}}})
	case schemapb.DataType_FloatVector:
		d := dim(field)
		flat := make([]float32, 0, len(rows)*d)
		for _, row := range rows {
			flat = append(flat, row[name].([]float32)...)
		}
		data.Field = &schemapb.FieldData_Vectors{Vectors: &schemapb.VectorField{Dim: int64(d), Data: &schemapb.VectorField_FloatVector{FloatVector: &schemapb.FloatArray{Data: flat}}}}
	}
	return data
}

func params(pairs []*commonpb.KeyValuePair) map[string]string {
	m := make(map[string]string, len(pairs))
	for _, pair := range pairs {
		m[pair.GetKey()] = pair.GetValue()
	}
	return m
}

// sortedRows returns rows in primary key order, so results are deterministic.
func (c *collection) sortedRows(keep predicate) []map[string]any {
	var rows []map[string]any
	for _, row := range c.rows {
		if keep(row) {
			rows = append(rows, row)
		}
	}
	name := c.primary.GetName()
	sort.Slice(rows, func(i, j int) bool { return compareValues(rows[i][name], rows[j][name]) < 0 })
	return rows
}

// Query returns the entities matching an expression, or their count for output "count(*)".
func (s *Server) Query(ctx context.Context, request *milvuspb.QueryRequest) (*milvuspb.QueryResults, error) {
	response := &milvuspb.QueryResults{CollectionName: request.GetCollectionName()}
	response.Status = s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		if !c.loaded {
			return merr.WrapErrCollectionNotLoaded(c.name)
		}
		if len(request.GetExprTemplateValues()) > 0 {
			return fmt.Errorf("expression templates are %w", errNotEmulated)
		}
		keep, err := parseExpr(request.GetExpr(), c.fields)
		if err != nil {
			return merr.WrapErrParameterInvalidMsg("%v", err)
		}
		response.PrimaryFieldName = c.primary.GetName()
		if slices.Contains(request.GetOutputFields(), "count(*)") {
			if len(request.GetOutputFields()) != 1 {
				return merr.WrapErrParameterInvalidMsg("count entities with pagination or other output fields is not allowed")
			}
			count := int64(len(c.sortedRows(keep)))
			response.OutputFields = []string{"count(*)"}
			response.FieldsData = []*schemapb.FieldData{{
				Type: schemapb.DataType_Int64, FieldName: "count(*)",
				Field: &schemapb.FieldData_Scalars{Scalars: &schemapb.ScalarField{Data: &schemapb.ScalarField_LongData{LongData: &schemapb.LongArray{Data: []int64{count}}}}},
			}}
			return nil
		}
		queryParams := params(request.GetQueryParams())
		limit, offset := -1, 0
		if value, ok := queryParams["limit"]; ok {
			if limit, err = strconv.Atoi(value); err != nil || limit < 1 {
				return merr.WrapErrParameterInvalidMsg("limit [%s] is invalid", value)
			}
		}
		if value, ok := queryParams["offset"]; ok {
			if offset, err = strconv.Atoi(value); err != nil || offset < 0 {
				return merr.WrapErrParameterInvalidMsg("offset [%s] is invalid", value)
			}
		}
		if limit > 0 && limit+offset > maxTopK {
			return merr.WrapErrParameterInvalidMsg("invalid max query result window, (offset+limit) should be in range [1, %d]", maxTopK)
		}
		if request.GetExpr() == "" && limit < 0 {
			return merr.WrapErrParameterInvalidMsg("empty expression should be used with limit")
		}
		fields, err := c.outputFields(request.GetOutputFields())
		if err != nil {
			return err
		}
		rows := c.sortedRows(keep)
		rows = rows[min(offset, len(rows)):]
		if limit >= 0 {
			rows = rows[:min(limit, len(rows))]
		}
		for _, field := range fields {
			response.OutputFields = append(response.OutputFields, field.GetName())
			response.FieldsData = append(response.FieldsData, encodeColumn(field, rows))
		}
		return nil
	})
	return response, nil
}

type hit struct {
	row   map[string]any
	score float32
}

// Search answers a vector search by brute force over the rows that pass the filter.
func (s *Server) Search(ctx context.Context, request *milvuspb.SearchRequest) (*milvuspb.SearchResults, error) {
	response := &milvuspb.SearchResults{CollectionName: request.GetCollectionName()}
	response.Status = s.do(ctx, func(db *database) error {
		c, err := db.resolve(request.GetCollectionName())
		if err != nil {
			return err
		}
		if !c.loaded {
			return merr.WrapErrCollectionNotLoaded(c.name)
		}
		if len(request.GetSubReqs()) > 0 || request.GetFunctionScore() != nil || request.GetSearchByPrimaryKeys() {
			return fmt.Errorf("hybrid search, rerankers and search by primary key are %w", errNotEmulated)
		}
		if len(request.GetExprTemplateValues()) > 0 {
			return fmt.Errorf("expression templates are %w", errNotEmulated)
		}
		searchParams := params(request.GetSearchParams())
		field, err := c.annsField(searchParams["anns_field"])
		if err != nil {
			return err
		}
		ix := c.indexes[field.GetName()]
		queries, err := decodePlaceholders(request.GetPlaceholderGroup(), dim(field))
		if err != nil {
			return err
		}
		if request.GetNq() != 0 && int(request.GetNq()) != len(queries) {
			return merr.WrapErrParameterInvalidMsg("nq (%d) does not match the number of query vectors (%d)", request.GetNq(), len(queries))
		}
		topK, err := strconv.Atoi(searchParams["topk"])
		if err != nil || topK < 1 || topK > maxTopK {
			return merr.WrapErrParameterInvalidMsg("topk [%s] is invalid, it should be in range [1, %d]", searchParams["topk"], maxTopK)
		}
		offset := 0
		if value := searchParams["offset"]; value != "" {
			if offset, err = strconv.Atoi(value); err != nil || offset < 0 || offset+topK > maxTopK {
				return merr.WrapErrParameterInvalidMsg("offset [%s] is invalid", value)
			}
		}
		metric := searchParams["metric_type"]
		if metric == "" {
			metric = ix.metric()
		}
		if metric != ix.metric() {
			return merr.WrapErrParameterInvalidMsg("metric type not match: invalid parameter[expected=%s][actual=%s]", ix.metric(), metric)
		}
		if searchParams["group_by_field"] != "" {
			return fmt.Errorf("grouping search is %w", errNotEmulated)
		}
		ranged, err := checkAnnParams(ix, searchParams["params"], topK)
		if err != nil {
			return err
		}
		keep, err := parseExpr(request.GetDsl(), c.fields)
		if err != nil {
			return merr.WrapErrParameterInvalidMsg("%v", err)
		}
		fields, err := c.outputFields(request.GetOutputFields())
		if err != nil {
			return err
		}
		candidates := c.sortedRows(keep)
		result := &schemapb.SearchResultData{NumQueries: int64(len(queries)), TopK: int64(topK), PrimaryFieldName: c.primary.GetName()}
		var all []map[string]any
		for _, query := range queries {
			hits := make([]hit, 0, len(candidates))
			for _, row := range candidates {
				score := similarity(metric, query, row[field.GetName()].([]float32))
				if ranged.keeps(metric, score) {
					hits = append(hits, hit{row: row, score: score})
				}
			}
			// Stable sort keeps primary-key order among equal scores.
			slices.SortStableFunc(hits, func(a, b hit) int {
				if metric == "L2" {
					return cmp.Compare(a.score, b.score)
				}
				return cmp.Compare(b.score, a.score)
			})
			hits = hits[min(offset, len(hits)):]
			hits = hits[:min(topK, len(hits))]
			result.Topks = append(result.Topks, int64(len(hits)))
			for _, h := range hits {
				result.Scores = append(result.Scores, h.score)
				all = append(all, h.row)
			}
		}
		result.Ids = c.idsOf(all)
		for _, f := range fields {
			if f == c.primary && !slices.Contains(request.GetOutputFields(), f.GetName()) && !slices.Contains(request.GetOutputFields(), "*") {
				continue // Milvus returns the primary key in Ids, not as an output field, unless asked
			}
			result.OutputFields = append(result.OutputFields, f.GetName())
			result.FieldsData = append(result.FieldsData, encodeColumn(f, all))
		}
		response.Results = result
		return nil
	})
	return response, nil
}

func (c *collection) annsField(name string) (*schemapb.FieldSchema, error) {
	if name != "" {
		field, ok := c.fields[name]
		if !ok || field.GetDataType() != schemapb.DataType_FloatVector {
			return nil, merr.WrapErrParameterInvalidMsg("failed to get field schema by name: fieldName(%s) not found or not a float vector", name)
		}
		return field, nil
	}
	var found *schemapb.FieldSchema
	for _, field := range c.schema.GetFields() {
		if field.GetDataType() == schemapb.DataType_FloatVector {
			if found != nil {
				return nil, merr.WrapErrParameterInvalidMsg("multiple anns_fields exist, please specify a anns_field in search_params")
			}
			found = c.fields[field.GetName()]
		}
	}
	return found, nil
}

func decodePlaceholders(encoded []byte, d int) ([][]float32, error) {
	var group commonpb.PlaceholderGroup
	if err := proto.Unmarshal(encoded, &group); err != nil {
		return nil, merr.WrapErrParameterInvalidMsg("cannot decode placeholder group: %v", err)
	}
	if len(group.GetPlaceholders()) != 1 {
		return nil, merr.WrapErrParameterInvalidMsg("expected one placeholder, got %d", len(group.GetPlaceholders()))
	}
	placeholder := group.GetPlaceholders()[0]
	if placeholder.GetType() != commonpb.PlaceholderType_FloatVector {
		return nil, fmt.Errorf("search with %s vectors is %w", placeholder.GetType(), errNotEmulated)
	}
	if len(placeholder.GetValues()) == 0 {
		return nil, merr.WrapErrParameterInvalidMsg("nq [0] is invalid, nq should be in range [1, 16384]")
	}
	queries := make([][]float32, 0, len(placeholder.GetValues()))
	for _, value := range placeholder.GetValues() {
		if len(value) != d*4 {
			return nil, merr.WrapErrParameterInvalidMsg("the dimension of the query vector (%d) does not match the vector field dimension (%d)", len(value)/4, d)
		}
		vector := make([]float32, d)
		for i := range vector {
			vector[i] = math.Float32frombits(binary.LittleEndian.Uint32(value[i*4:]))
		}
		queries = append(queries, vector)
	}
	return queries, nil
}

// scoreRange is a range search's bounds; the zero value keeps everything.
type scoreRange struct {
	radius, rangeFilter *float64
}

func (r scoreRange) keeps(metric string, score float32) bool {
	s := float64(score)
	if metric == "L2" {
		return (r.radius == nil || s < *r.radius) && (r.rangeFilter == nil || s >= *r.rangeFilter)
	}
	return (r.radius == nil || s > *r.radius) && (r.rangeFilter == nil || s <= *r.rangeFilter)
}

// checkAnnParams validates the index-specific search parameters as Milvus does.
func checkAnnParams(ix *fieldIndex, encoded string, topK int) (scoreRange, error) {
	var annParams map[string]any
	if encoded != "" {
		if err := json.Unmarshal([]byte(encoded), &annParams); err != nil {
			return scoreRange{}, merr.WrapErrParameterInvalidMsg("search params %q are not JSON: %v", encoded, err)
		}
	}
	number := func(key string) (float64, bool, error) {
		value, ok := annParams[key]
		if !ok {
			return 0, false, nil
		}
		switch v := value.(type) {
		case float64:
			return v, true, nil
		case string:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, true, merr.WrapErrParameterInvalidMsg("param %s (%q) is not a number", key, v)
			}
			return f, true, nil
		default:
			return 0, true, merr.WrapErrParameterInvalidMsg("param %s has type %T", key, value)
		}
	}
	switch ix.indexType() {
	case "HNSW":
		ef, ok, err := number("ef")
		if err != nil {
			return scoreRange{}, err
		}
		if ok && (ef < float64(topK) || ef > 32768) {
			return scoreRange{}, merr.WrapErrParameterInvalidMsg("ef(%v) should be larger than k(%d) and at most 32768", ef, topK)
		}
	case "IVF_FLAT":
		nprobe, ok, err := number("nprobe")
		if err != nil {
			return scoreRange{}, err
		}
		if ok && (nprobe < 1 || nprobe > 65536) {
			return scoreRange{}, merr.WrapErrParameterInvalidMsg("param 'nprobe' (%v) should be in range [1, 65536]", nprobe)
		}
	}
	var r scoreRange
	if radius, ok, err := number("radius"); err != nil {
		return r, err
	} else if ok {
		r.radius = &radius
	}
	if rangeFilter, ok, err := number("range_filter"); err != nil {
		return r, err
	} else if ok {
		if r.radius == nil {
			return r, merr.WrapErrParameterInvalidMsg("range_filter needs radius")
		}
		r.rangeFilter = &rangeFilter
	}
	return r, nil
}

// similarity scores a stored vector against a query: cosine similarity or inner product
// (higher is closer), or squared Euclidean distance for L2 (lower is closer), as Milvus reports.
func similarity(metric string, query, stored []float32) float32 {
	var dot, qq, ss, l2 float64
	for i, q := range query {
		x := float64(stored[i])
		dot += float64(q) * x
		qq += float64(q) * float64(q)
		ss += x * x
		d := float64(q) - x
		l2 += d * d
	}
	switch metric {
	case "COSINE":
		if qq == 0 || ss == 0 {
			return 0
		}
		return float32(dot / math.Sqrt(qq*ss))
	case "IP":
		return float32(dot)
	default:
		return float32(l2)
	}
}
