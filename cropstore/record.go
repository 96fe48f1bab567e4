// Package cropstore defines the CropRecord that flows through the pipeline and keeps crops in a
// directory or an S3 bucket.
//
// Layout under the root (or the bucket):
//
//	<root>/<camera>/<YYYYMMDD>/<id>.jpg   the crop image, its metadata (CropRecord without the
//	                                      JPEG, as JSON) in a JPEG comment segment (format.go)
//
// A file is written to a temporary name, synced and renamed, so a crop is visible only once it is
// whole. The id encodes camera and day, so Get needs no separate index. Stores written before
// the metadata moved into the image keep it in <id>.json beside it; those crops are still read,
// walked and deleted.
package cropstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Box is a rectangle in frame pixels.
type Box struct {
	X      int `json:"x"`
	Y      int `json:"y"`
	Width  int `json:"w"`
	Height int `json:"h"`
}

// CropRecord is one kept person detection: where and when it was seen, and its image.
type CropRecord struct {
	// ID is stable for the same detection of the same source: see NewID.
	ID     string    `json:"id"`
	Camera string    `json:"camera"`
	Time   time.Time `json:"time"`
	Frame  int64     `json:"frame"`
	Box    Box       `json:"box"`
	Score  float32   `json:"score"`
	// Track is the person's track in this camera (TrackID), unique over the camera's life; -1 or 0
	// when the crop was not tracked.
	Track    int64  `json:"track"`
	Detector string `json:"detector"`
	// JPEG is the crop image; empty in metadata-only reads.
	JPEG []byte `json:"-"`
}

// TrackSession spaces the track ids of a camera's sessions. A tracker numbers its tracks 1, 2, 3...
// from each start, and a restarted pipeline must not give a new person an old track's id: track
// consensus would average the two people into one track, and a search by crop id would take the
// merged track's span for the query's and leave out every other track of the camera in between.
const TrackSession = 1_000_000

// TrackID names the tracker's track number of the session that saw its first frame at
// sessionStart: the start's Unix second times TrackSession plus the number. Ids stay below 2^53 (exact
// in JavaScript) until the year 2255, and the same source replayed with the same start times
// gets the same ids, as its crops get the same crop ids. Two sessions of one camera starting
// within the same second would share ids.
func TrackID(sessionStart time.Time, number int64) int64 {
	return max(sessionStart.Unix(), 0)*TrackSession + number
}

// TrackNumber is the tracker's own number of a track within its session: short enough to print
// beside a crop, unique among a session's first million tracks.
func TrackNumber(track int64) int64 {
	if track < 0 {
		return track
	}
	return track % TrackSession
}

// ErrNotFound is returned for an id the store does not hold.
var ErrNotFound = errors.New("crop not found")

// ErrInvalidID is returned for an id that NewID could not have made (and so cannot name a file).
var ErrInvalidID = errors.New("invalid crop id")

const idTimeLayout = "20060102T150405.000000"

// NewID makes the id of the detection-th kept detection in frame of camera at time t:
// "<camera>_<UTC time to the microsecond>_<frame>_<detection>". It is deterministic, so a frame
// processed twice yields the same ids and writes stay idempotent.
func NewID(camera string, t time.Time, frame int64, detection int) string {
	return fmt.Sprintf("%s_%d_%d", idPrefix(camera, t), frame, detection)
}

// idPrefix is the start of the ids of camera's crops at t: "<camera>_<UTC time to the
// microsecond>". Within a camera and day, ids in name order are in time order.
func idPrefix(camera string, t time.Time) string {
	return camera + "_" + strings.Replace(t.UTC().Format(idTimeLayout), ".", "", 1)
}

// ParsedID is what an id says about its crop.
type ParsedID struct {
	Camera    string
	Time      time.Time
	Frame     int64
	Detection int
}

// ParseID checks id and splits it into its parts. It rejects anything that could escape the store's
// directory ("..", "/", "\\") because the camera part must be a plain identifier.
func ParseID(id string) (ParsedID, error) {
	fail := func(why string) (ParsedID, error) {
		return ParsedID{}, fmt.Errorf("%w %q: %s", ErrInvalidID, truncate(id, 80), why)
	}
	if len(id) > 200 {
		return fail("too long")
	}
	parts := strings.Split(id, "_")
	if len(parts) < 4 {
		return fail("want <camera>_<time>_<frame>_<detection>")
	}
	n := len(parts)
	camera := strings.Join(parts[:n-3], "_")
	if !validCamera(camera) {
		return fail("bad camera part")
	}
	stamp := parts[n-3]
	if len(stamp) != len("20060102T150405000000") {
		return fail("bad time part")
	}
	t, err := time.Parse(idTimeLayout, stamp[:15]+"."+stamp[15:])
	if err != nil {
		return fail("bad time part")
	}
	frame, err := strconv.ParseInt(parts[n-2], 10, 64)
	if err != nil || frame < 0 || strconv.FormatInt(frame, 10) != parts[n-2] {
		return fail("bad frame part")
	}
	detection, err := strconv.Atoi(parts[n-1])
	if err != nil || detection < 0 || strconv.Itoa(detection) != parts[n-1] {
		return fail("bad detection part")
	}
	return ParsedID{Camera: camera, Time: t.UTC(), Frame: frame, Detection: detection}, nil
}

func validCamera(camera string) bool {
	if camera == "" || len(camera) > 64 || camera == "." || camera == ".." {
		return false
	}
	for _, r := range camera {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
