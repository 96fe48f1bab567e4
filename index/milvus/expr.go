package milvus

import (
	"strconv"
	"strings"
	"time"

	"github.com/reid-project/reid/index"
)

// Field names of every gallery collection.
const (
	fieldID     = "crop_id"
	fieldVector = "vector"
	fieldCamera = "camera"
	fieldTime   = "time"
	fieldTrack  = "track"
	fieldFrame  = "frame"
	fieldBoxX   = "box_x"
	fieldBoxY   = "box_y"
	fieldBoxW   = "box_w"
	fieldBoxH   = "box_h"
	fieldModel  = "model"
)

// metadataFields are returned with every match.
var metadataFields = []string{fieldCamera, fieldTime, fieldTrack, fieldFrame, fieldBoxX, fieldBoxY, fieldBoxW, fieldBoxH, fieldModel}

// quote makes a Milvus string literal. Milvus's expression parser reads double-quoted strings
// with C escapes and decodes them with Go's strconv.Unquote, so strconv.Quote is its exact
// inverse: a camera id holding quotes, backslashes or control characters cannot break out of
// the literal.
func quote(value string) string { return strconv.Quote(value) }

// inExpr is `field in ["a", "b"]`, or `field not in [...]` when negated.
func inExpr(field string, values []string, negate bool) string {
	var b strings.Builder
	b.WriteString(field)
	if negate {
		b.WriteString(" not in [")
	} else {
		b.WriteString(" in [")
	}
	for i, value := range values {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(value))
	}
	b.WriteString("]")
	return b.String()
}

// tracksExpr selects the items of these tracks, one term per camera:
// `(camera == "a" and track in [1, 2]) or (camera == "b" and track in [7])`. Negative (untracked)
// ids are left out; "" when nothing is left.
func tracksExpr(tracks []index.TrackRef) string {
	byCamera := map[string][]int64{}
	var cameras []string
	for _, ref := range tracks {
		if ref.Track < 0 {
			continue
		}
		if _, seen := byCamera[ref.Camera]; !seen {
			cameras = append(cameras, ref.Camera)
		}
		byCamera[ref.Camera] = append(byCamera[ref.Camera], ref.Track)
	}
	terms := make([]string, 0, len(cameras))
	for _, camera := range cameras {
		ids := make([]string, len(byCamera[camera]))
		for i, track := range byCamera[camera] {
			ids[i] = strconv.FormatInt(track, 10)
		}
		terms = append(terms, "("+fieldCamera+" == "+quote(camera)+" and "+fieldTrack+" in ["+strings.Join(ids, ", ")+"])")
	}
	return strings.Join(terms, " or ")
}

// microFloor and microCeil convert a time to the unix microseconds stored in the time field,
// rounding down or up. Stored times are truncated to microseconds, so "time >= microCeil(t)"
// and "time <= microFloor(t)" select exactly the items whose stored time is >= t and <= t.
func microFloor(t time.Time) int64 { return t.UnixMicro() }

func microCeil(t time.Time) int64 {
	if t.Nanosecond()%1000 != 0 {
		return t.UnixMicro() + 1
	}
	return t.UnixMicro()
}

// filterExpr is the Milvus boolean expression for a filter's cameras and time range; "" when
// they select everything. MinScore is not part of it: scores are filtered after the search.
func filterExpr(filter index.Filter) string {
	var terms []string
	if len(filter.Cameras) > 0 {
		terms = append(terms, inExpr(fieldCamera, filter.Cameras, false))
	}
	if len(filter.ExcludeCameras) > 0 {
		terms = append(terms, inExpr(fieldCamera, filter.ExcludeCameras, true))
	}
	if !filter.From.IsZero() {
		terms = append(terms, fieldTime+" >= "+strconv.FormatInt(microCeil(filter.From), 10))
	}
	if !filter.To.IsZero() {
		terms = append(terms, fieldTime+" <= "+strconv.FormatInt(microFloor(filter.To), 10))
	}
	return strings.Join(terms, " and ")
}

// olderThanExpr selects items stored with a time before t.
func olderThanExpr(t time.Time) string {
	return fieldTime + " < " + strconv.FormatInt(microCeil(t), 10)
}
