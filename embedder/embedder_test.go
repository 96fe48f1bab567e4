package embedder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/jpegturbo"
	"github.com/reid-project/reid/stream"
)

// meanColourModel embeds an image as its normalised mean colour: enough to check that each vector
// belongs to its own crop.
type meanColourModel struct{ fail error }

func (m meanColourModel) Dim() int { return 3 }

func (m meanColourModel) Embed(_ context.Context, images []image.Image) ([][]float32, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	out := make([][]float32, len(images))
	for i, picture := range images {
		r, g, b, _ := picture.At(picture.Bounds().Dx()/2, picture.Bounds().Dy()/2).RGBA()
		out[i] = []float32{float32(r), float32(g), float32(b)}
	}
	return out, nil
}

type memoryIndex struct {
	items   map[string]index.Item
	fail    error
	created map[string]int
}

func (ix *memoryIndex) CreateVersion(_ context.Context, version string, dim int) error {
	ix.created[version] = dim
	return nil
}

func (ix *memoryIndex) Upsert(_ context.Context, version string, items []index.Item) error {
	if ix.fail != nil {
		return ix.fail
	}
	for _, item := range items {
		if item.Metadata.Model != version {
			return fmt.Errorf("item %s of model %s upserted into gallery %s", item.ID, item.Metadata.Model, version)
		}
		ix.items[item.ID] = item
	}
	return nil
}

func jpegOf(t *testing.T, shade uint8) []byte {
	t.Helper()
	picture := image.NewRGBA(image.Rect(0, 0, 32, 64))
	for y := range 64 {
		for x := range 32 {
			picture.Set(x, y, color.RGBA{shade, 255 - shade, 40, 255})
		}
	}
	var buffer bytes.Buffer
	if err := jpeg.Encode(&buffer, picture, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buffer.Bytes()
}

func message(t *testing.T, frame int64, image []byte) stream.Message {
	when := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC).Add(time.Duration(frame) * 100 * time.Millisecond)
	return stream.Message{Record: cropstore.CropRecord{
		ID: cropstore.NewID("gate", when, frame, 0), Camera: "gate", Time: when, Frame: frame, Track: frame % 3,
		Box: cropstore.Box{X: 1, Y: 2, Width: 30, Height: 60}, JPEG: image,
	}}
}

// erasedTracks plays the crop store's erasure record: tracks are erased from the fromCheck-th
// time a crop is asked about (1: from the start; 2: once the model has run).
type erasedTracks struct {
	tracks    map[int64]bool
	fromCheck int
	fail      error
	checks    map[string]int
}

func (e *erasedTracks) Erased(_ context.Context, record cropstore.CropRecord) (bool, error) {
	if e.fail != nil {
		return false, e.fail
	}
	e.checks[record.ID]++
	return e.tracks[record.Track] && e.checks[record.ID] >= e.fromCheck, nil
}

// handleCase is one batch for Handle and what must come of it.
type handleCase struct {
	name         string
	batch        func(t *testing.T) []stream.Message
	modelErr     error
	indexErr     error
	erasures     *erasedTracks
	wantRejected []int
	wantIndexed  int
	wantErased   int
	wantRetry    bool
}

func TestHandle(t *testing.T) {
	cases := []handleCase{
		{
			name: "all good",
			batch: func(t *testing.T) []stream.Message {
				return []stream.Message{message(t, 1, jpegOf(t, 10)), message(t, 2, jpegOf(t, 200))}
			},
			wantIndexed: 2,
		},
		{
			name: "broken and truncated JPEGs are rejected, the rest indexed",
			batch: func(t *testing.T) []stream.Message {
				good := jpegOf(t, 90)
				return []stream.Message{message(t, 1, []byte("garbage")), message(t, 2, good), message(t, 3, good[:len(good)/2])}
			},
			wantRejected: []int{0, 2},
			wantIndexed:  1,
		},
		{
			name: "a failing index fails the batch so it is retried",
			batch: func(t *testing.T) []stream.Message {
				return []stream.Message{message(t, 1, jpegOf(t, 10))}
			},
			indexErr:  errors.New("disk full"),
			wantRetry: true,
		},
		{
			name: "a failing model fails the batch so it is retried",
			batch: func(t *testing.T) []stream.Message {
				return []stream.Message{message(t, 1, jpegOf(t, 10))}
			},
			modelErr:  errors.New("out of memory"),
			wantRetry: true,
		},
		{
			name: "erased crops are neither indexed nor dead-lettered, broken or not",
			batch: func(t *testing.T) []stream.Message {
				// Tracks are frame % 3: frames 1 and 4 are of erased track 1.
				return []stream.Message{message(t, 1, jpegOf(t, 10)), message(t, 2, jpegOf(t, 60)), message(t, 4, []byte("garbage")), message(t, 5, jpegOf(t, 90))}
			},
			erasures:    &erasedTracks{tracks: map[int64]bool{1: true}, fromCheck: 1},
			wantIndexed: 2,
			wantErased:  2,
		},
		{
			name: "a crop erased while the model runs is not indexed",
			batch: func(t *testing.T) []stream.Message {
				return []stream.Message{message(t, 1, jpegOf(t, 10)), message(t, 2, jpegOf(t, 60))}
			},
			erasures:    &erasedTracks{tracks: map[int64]bool{2: true}, fromCheck: 2},
			wantIndexed: 1,
			wantErased:  1,
		},
		{
			name: "an erasure record that cannot be read fails the batch so it is retried",
			batch: func(t *testing.T) []stream.Message {
				return []stream.Message{message(t, 1, jpegOf(t, 10))}
			},
			erasures:  &erasedTracks{fail: errors.New("bucket unreachable")},
			wantRetry: true,
		},
	}
	// Each case runs as the consumer calls it (Prepare on the batch, then Handle) and with Handle
	// alone.
	for _, tc := range cases {
		for _, prepared := range []bool{true, false} {
			name := tc.name
			if !prepared {
				name += ", not prepared"
			}
			t.Run(name, func(t *testing.T) {
				checkHandle(t, tc, prepared)
			})
		}
	}
}

func checkHandle(t *testing.T, tc handleCase, prepared bool) {
	batch := tc.batch(t)
	ix := &memoryIndex{items: map[string]index.Item{}, created: map[string]int{}, fail: tc.indexErr}
	options := Options{Model: meanColourModel{fail: tc.modelErr}, Version: "v7", Index: ix}
	if tc.erasures != nil {
		erasures := *tc.erasures
		erasures.checks = map[string]int{}
		options.Erasures = &erasures
	}
	embed, err := New(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	if ix.created["v7"] != 3 {
		t.Fatalf("gallery not created with the model's dimension: %v", ix.created)
	}
	if prepared {
		embed.Prepare(batch)
	}
	err = embed.Handle(context.Background(), batch)
	var rejected *stream.RejectedError
	switch {
	case tc.wantRetry:
		if err == nil || errors.As(err, &rejected) {
			t.Fatalf("want a plain error (retry), got %v", err)
		}
		return
	case len(tc.wantRejected) > 0:
		if !errors.As(err, &rejected) || len(rejected.Records) != len(tc.wantRejected) {
			t.Fatalf("want %d rejected records, got %v", len(tc.wantRejected), err)
		}
		for _, i := range tc.wantRejected {
			if !errors.Is(rejected.Records[i], stream.ErrBadJPEG) || stream.Reason(rejected.Records[i]) != "bad-jpeg" {
				t.Errorf("record %d rejected with %v, want bad-jpeg", i, rejected.Records[i])
			}
		}
	case err != nil:
		t.Fatal(err)
	}
	if len(ix.items) != tc.wantIndexed {
		t.Fatalf("indexed %d items, want %d", len(ix.items), tc.wantIndexed)
	}
	for _, message := range batch {
		item, ok := ix.items[message.Record.ID]
		if !ok {
			continue
		}
		record := message.Record
		want := index.Metadata{Camera: "gate", Time: record.Time, Track: record.Track, Frame: record.Frame, Box: [4]int32{1, 2, 30, 60}, Model: "v7"}
		if item.Metadata != want {
			t.Errorf("metadata %+v, want %+v", item.Metadata, want)
		}
		// The vector must be this crop's: its red channel tracks the shade.
		decoded, _ := jpegturbo.Decode(record.JPEG)
		r, _, _, _ := decoded.At(16, 32).RGBA()
		if item.Vector[0] != float32(r) {
			t.Errorf("vector %v does not belong to crop %s", item.Vector, record.ID)
		}
	}
	if stats := embed.Stats(); stats.Embedded != int64(tc.wantIndexed) || stats.Rejected != int64(len(tc.wantRejected)) || stats.Erased != int64(tc.wantErased) {
		t.Errorf("stats %+v", stats)
	}
}

// TestPrepareDecodesAhead: crops Prepare decoded are used as they are, and only the first try
// of a batch counts them.
func TestPrepareDecodesAhead(t *testing.T) {
	ix := &memoryIndex{items: map[string]index.Item{}, created: map[string]int{}}
	embed, err := New(context.Background(), Options{Model: meanColourModel{}, Version: "v7", Index: ix, PrepareWorkers: 2})
	if err != nil {
		t.Fatal(err)
	}
	var batch []stream.Message
	for frame := range int64(20) {
		batch = append(batch, message(t, frame, jpegOf(t, uint8(10*frame))))
	}
	embed.Prepare(batch)
	job, ok := batch[0].Prepared.(*decodeJob)
	if !ok {
		t.Fatalf("Prepare left %T on the batch", batch[0].Prepared)
	}
	for deadline := time.Now().Add(10 * time.Second); job.ready() < len(batch); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Prepare decoded %d of %d crops in 10 s", job.ready(), len(batch))
		}
	}
	for range 2 { // the second Handle is a retry of the same batch
		if err := embed.Handle(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if stats := embed.Stats(); stats.DecodedAhead != int64(len(batch)) || stats.Embedded != int64(2*len(batch)) {
		t.Fatalf("stats %+v, want all %d crops decoded ahead once", stats, len(batch))
	}
	for _, message := range batch {
		decoded, _ := jpegturbo.Decode(message.Record.JPEG)
		r, _, _, _ := decoded.At(16, 32).RGBA()
		if vector := ix.items[message.Record.ID].Vector; vector[0] != float32(r) {
			t.Errorf("vector %v does not belong to crop %s", vector, message.Record.ID)
		}
	}
	// A batch that is not the one prepared (a copy, as after a redelivery) is decoded afresh.
	again := append([]stream.Message(nil), batch...)
	if jobFor(again) == job {
		t.Fatal("a copied batch reused the prepared job")
	}
}

func TestNewRejectsIncompleteOptions(t *testing.T) {
	ix := &memoryIndex{items: map[string]index.Item{}, created: map[string]int{}}
	for _, options := range []Options{{Index: ix, Version: "v1"}, {Model: meanColourModel{}, Version: "v1"}, {Model: meanColourModel{}, Index: ix}} {
		if _, err := New(context.Background(), options); err == nil {
			t.Errorf("New(%+v) accepted", options)
		}
	}
}

// gatedModel holds each Embed until its gate opens, saying when one has started.
type gatedModel struct {
	meanColourModel
	started chan<- struct{}
	gate    <-chan struct{}
}

func (m gatedModel) Embed(ctx context.Context, images []image.Image) ([][]float32, error) {
	m.started <- struct{}{}
	<-m.gate
	return m.meanColourModel.Embed(ctx, images)
}

// paddedModel is another model: four values, the mean colour and a marker.
type paddedModel struct{}

func (paddedModel) Dim() int { return 4 }

func (paddedModel) Embed(ctx context.Context, images []image.Image) ([][]float32, error) {
	vectors, err := meanColourModel{}.Embed(ctx, images)
	for i := range vectors {
		vectors[i] = append(vectors[i], 1)
	}
	return vectors, err
}

// TestSwitchModel switches models while a batch is being embedded: the switch waits for that
// batch, which goes to the old gallery with the old model's vectors, and the next batch goes
// through the new model into the new gallery.
func TestSwitchModel(t *testing.T) {
	ctx := context.Background()
	ix := &memoryIndex{items: map[string]index.Item{}, created: map[string]int{}}
	started, gate := make(chan struct{}, 1), make(chan struct{})
	embed, err := New(ctx, Options{Model: gatedModel{started: started, gate: gate}, Version: "v1", Index: ix})
	if err != nil {
		t.Fatal(err)
	}
	before := []stream.Message{message(t, 1, jpegOf(t, 10)), message(t, 2, jpegOf(t, 60))}
	handled := make(chan error, 1)
	go func() { handled <- embed.Handle(ctx, before) }()
	<-started
	switched := make(chan error, 1)
	go func() { switched <- embed.SwitchModel(ctx, paddedModel{}, "v2") }()
	select {
	case err := <-switched:
		t.Fatalf("SwitchModel returned (%v) while the old model was embedding a batch", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	if err := <-handled; err != nil {
		t.Fatal(err)
	}
	if err := <-switched; err != nil {
		t.Fatal(err)
	}
	if embed.Version() != "v2" || ix.created["v2"] != 4 {
		t.Fatalf("after the switch: version %s, galleries %v; want v2 created with 4 dimensions", embed.Version(), ix.created)
	}
	after := []stream.Message{message(t, 3, jpegOf(t, 120))}
	if err := embed.Handle(ctx, after); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		batch   []stream.Message
		version string
		dim     int
	}{{before, "v1", 3}, {after, "v2", 4}} {
		for _, message := range tc.batch {
			item := ix.items[message.Record.ID]
			if item.Metadata.Model != tc.version || len(item.Vector) != tc.dim {
				t.Errorf("crop %s went to %q with %d values; want %s with %d", message.Record.ID, item.Metadata.Model, len(item.Vector), tc.version, tc.dim)
			}
		}
	}
	if err := embed.SwitchModel(ctx, nil, "v3"); err == nil {
		t.Error("a switch to no model was accepted")
	}
}
