package milvus

import (
	"strconv"
	"testing"
	"time"

	"github.com/reid-project/reid/index"
)

func TestQuote(t *testing.T) {
	cases := []struct{ in, want string }{
		{"cam-1", `"cam-1"`},
		{`say "hi"`, `"say \"hi\""`},
		{`back\slash`, `"back\\slash"`},
		{"it's", `"it's"`},
		{"line\nbreak", `"line\nbreak"`},
		{`"] or camera != "`, `"\"] or camera != \""`},
		{"ünï", `"ünï"`},
		{"nul\x00", `"nul\x00"`},
	}
	for _, c := range cases {
		got := quote(c.in)
		if got != c.want {
			t.Errorf("quote(%q) = %s, want %s", c.in, got, c.want)
		}
		// Milvus decodes literals with strconv.Unquote; the round trip must be exact.
		if back, err := strconv.Unquote(got); err != nil || back != c.in {
			t.Errorf("quote(%q) does not decode back: %q, %v", c.in, back, err)
		}
	}
}

func TestFilterExpr(t *testing.T) {
	from := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		filter index.Filter
		want   string
	}{
		{"empty", index.Filter{}, ""},
		{"min score only", index.Filter{MinScore: 0.5}, ""},
		{"cameras", index.Filter{Cameras: []string{"a", "b"}}, `camera in ["a", "b"]`},
		{"exclude", index.Filter{ExcludeCameras: []string{`x"y`}}, `camera not in ["x\"y"]`},
		{"range", index.Filter{From: from, To: from.Add(time.Second)}, "time >= 1772366400000000 and time <= 1772366401000000"},
		{"everything", index.Filter{Cameras: []string{"a"}, ExcludeCameras: []string{"b"}, From: from},
			`camera in ["a"] and camera not in ["b"] and time >= 1772366400000000`},
		// Stored times are whole microseconds: a bound between two rounds inward.
		{"sub-microsecond bounds", index.Filter{From: from.Add(1500), To: from.Add(2500)},
			"time >= 1772366400000002 and time <= 1772366400000002"},
	}
	for _, c := range cases {
		if got := filterExpr(c.filter); got != c.want {
			t.Errorf("%s: filterExpr = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestOlderThanExpr(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if got, want := olderThanExpr(at), "time < 1772366400000000"; got != want {
		t.Errorf("olderThanExpr = %s, want %s", got, want)
	}
	// An item stored at 1772366400000000µs is older than at+1ns, so the bound rounds up.
	if got, want := olderThanExpr(at.Add(1)), "time < 1772366400000001"; got != want {
		t.Errorf("olderThanExpr(+1ns) = %s, want %s", got, want)
	}
	// Before 1970 too: UnixMicro floors, and the ceiling is one above it.
	old := time.Date(1960, 1, 1, 0, 0, 0, 500, time.UTC)
	if microCeil(old) != microFloor(old)+1 || microFloor(old) != old.Truncate(time.Microsecond).UnixMicro() {
		t.Errorf("microFloor/microCeil of %v = %d/%d", old, microFloor(old), microCeil(old))
	}
}

func TestCollectionName(t *testing.T) {
	cases := []struct{ prefix, alias, version, want string }{
		{"reid_", "reid_active", "v1", "reid_v1"},
		{"reid_", "reid_active", "osnet_x1_0", "reid_osnet_x1_0"},
		// FNV-1a of the exact version (checked with Python), so "-" and "." do not collide.
		{"reid_", "reid_active", "osnet-x1.0", "reid_osnet_x1_0_ab81807c"},
		{"reid_", "reid_active", "osnet.x1-0", "reid_osnet_x1_0_558dd3fa"},
		{"reid_", "reid_active", "active", "reid_active_d975992f"},
	}
	for _, c := range cases {
		got := collectionName(c.prefix, c.alias, c.version)
		if got != c.want {
			t.Errorf("collectionName(%q) = %s, want %s", c.version, got, c.want)
		}
		if err := validName(got); err != nil {
			t.Errorf("collectionName(%q) = %s is not a valid Milvus name: %v", c.version, got, err)
		}
	}
	long := collectionName("reid_", "reid_active", string(make([]byte, 300)))
	if len(long) != maxNameLength || validName(long) != nil {
		t.Errorf("a 300-byte version maps to %d bytes, valid: %v", len(long), validName(long))
	}
}

func TestValidVersion(t *testing.T) {
	for _, bad := range []string{"", "tab\there", string(make([]byte, 129)), "\xff"} {
		if validVersion(bad) == nil {
			t.Errorf("validVersion(%q) accepted", bad)
		}
	}
	for _, good := range []string{"v1", "osnet-x0.25 (2026-03)", "ünïcode"} {
		if err := validVersion(good); err != nil {
			t.Errorf("validVersion(%q): %v", good, err)
		}
	}
}

func TestTracksExpr(t *testing.T) {
	cases := []struct {
		name   string
		tracks []index.TrackRef
		want   string
	}{
		{"none", nil, ""},
		{"untracked only", []index.TrackRef{{Camera: "a", Track: -1}}, ""},
		{"one", []index.TrackRef{{Camera: "a", Track: 3}}, `(camera == "a" and track in [3])`},
		{"grouped by camera, in first-seen order",
			[]index.TrackRef{{Camera: "b", Track: 7}, {Camera: "a", Track: 1}, {Camera: "b", Track: 9}, {Camera: "a", Track: -1}},
			`(camera == "b" and track in [7, 9]) or (camera == "a" and track in [1])`},
		{"quoted camera", []index.TrackRef{{Camera: `x" or camera != "`, Track: 1}},
			`(camera == "x\" or camera != \"" and track in [1])`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := tracksExpr(c.tracks); got != c.want {
				t.Errorf("tracksExpr = %s, want %s", got, c.want)
			}
		})
	}
}
