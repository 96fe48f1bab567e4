package cropstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/reid-project/reid/internal/jpegturbo"
)

// realJPEG encodes a small picture, with the APPn segments given inserted after its SOI as a
// camera's encoder would write them (JFIF, Exif).
func realJPEG(t *testing.T, appSegments ...[]byte) []byte {
	t.Helper()
	picture := image.NewRGBA(image.Rect(0, 0, 16, 32))
	for i := range picture.Pix {
		picture.Pix[i] = byte(i * 7)
	}
	var encoded bytes.Buffer
	if err := jpeg.Encode(&encoded, picture, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	data := encoded.Bytes()
	out := append([]byte(nil), data[:2]...)
	for _, segment := range appSegments {
		out = append(out, segment...)
	}
	return append(out, data[2:]...)
}

// appSegment is an APPn marker segment with size bytes of payload.
func appSegment(n byte, size int) []byte {
	length := size + 2
	segment := []byte{0xff, 0xe0 + n, byte(length >> 8), byte(length)}
	return append(segment, bytes.Repeat([]byte{'x'}, size)...)
}

// TestCropFile checks the one-file format: the stored file is still a JPEG that decodes to the
// same pixels, the metadata sits after the APPn segments, and reading gives back exactly the
// bytes put, with the metadata alone read from the file's head.
func TestCropFile(t *testing.T) {
	when := time.Date(2026, 11, 27, 8, 30, 15, 123456000, time.UTC)
	cases := []struct {
		name     string
		segments [][]byte
	}{
		{"no APPn", nil},
		{"JFIF", [][]byte{appSegment(0, 14)}},
		{"JFIF and a large Exif", [][]byte{appSegment(0, 14), appSegment(1, 3*headBytes)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			record := CropRecord{ID: NewID("gate", when, 12, 1), Camera: "gate", Time: when, Frame: 12,
				Box: Box{X: 5, Y: 6, Width: 16, Height: 32}, Score: 0.75, Track: 3, Detector: "yolox-nano", JPEG: realJPEG(t, c.segments...)}
			store, err := OpenLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Put(ctx, record); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(store.Root(), "gate", "20261127", "*"))
			if len(files) != 1 || filepath.Base(files[0]) != record.ID+".jpg" {
				t.Fatalf("files %v, want %s.jpg alone", files, record.ID)
			}
			stored, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			at := 2
			for _, segment := range c.segments {
				at += len(segment)
			}
			if !bytes.Equal(stored[:at], record.JPEG[:at]) || stored[at] != 0xff || stored[at+1] != 0xfe {
				t.Fatalf("metadata comment not right after the APPn segments (at %d: % x)", at, stored[at:at+2])
			}
			// Another decoder, not ours, still reads the stored file as the same image.
			want, err := jpegturbo.Decode(record.JPEG)
			if err != nil {
				t.Fatal(err)
			}
			got, err := jpegturbo.Decode(stored)
			if err != nil || !bytes.Equal(got.Pix, want.Pix) {
				t.Fatalf("stored file decodes differently (%v)", err)
			}
			if _, err := jpeg.Decode(bytes.NewReader(stored)); err != nil {
				t.Fatalf("image/jpeg cannot read the stored file: %v", err)
			}
			read, err := store.Get(ctx, record.ID)
			if err != nil || !bytes.Equal(read.JPEG, record.JPEG) {
				t.Fatalf("Get gave %d bytes (%v), want the %d put", len(read.JPEG), err, len(record.JPEG))
			}
			metadata, err := store.Metadata(ctx, record.ID)
			record.JPEG, read.JPEG = nil, nil
			if err != nil || !reflect.DeepEqual(metadata, record) || !reflect.DeepEqual(read, record) {
				t.Fatalf("Metadata %+v, Get %+v (%v); want %+v", metadata, read, err, record)
			}
		})
	}
}

// TestDecodeCropRejects reads damaged and foreign files: no metadata is invented, and broken
// metadata is an error naming it.
func TestDecodeCropRejects(t *testing.T) {
	comment := func(text string) []byte {
		length := len(text) + 2
		return append([]byte{0xff, 0xd8, 0xff, 0xfe, byte(length >> 8), byte(length)}, text...)
	}
	cases := []struct {
		name    string
		data    []byte
		whole   bool
		wantErr error
	}{
		{"empty", nil, true, nil},
		{"not a JPEG", []byte("GIF89a..."), true, nil},
		{"someone else's comment", append(comment("made by a camera"), 0xff, 0xd9), true, nil},
		{"segment past the end", []byte{0xff, 0xd8, 0xff, 0xe0, 0x40, 0x00, 1, 2}, true, nil},
		{"segment past the head", []byte{0xff, 0xd8, 0xff, 0xe0, 0x40, 0x00, 1, 2}, false, errShortHead},
		{"broken metadata", append(comment(metadataTag+`{"id": 12`), 0xff, 0xd9), true, errors.New("metadata")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, found, err := decodeCrop(c.data, c.whole)
			if found {
				t.Fatal("found metadata")
			}
			switch {
			case c.wantErr == nil && err != nil:
				t.Fatalf("error %v", err)
			case c.wantErr == errShortHead && !errors.Is(err, errShortHead):
				t.Fatalf("error %v, want errShortHead", err)
			case c.wantErr != nil && (err == nil || !strings.Contains(err.Error(), c.wantErr.Error())):
				t.Fatalf("error %v, want one about %v", err, c.wantErr)
			}
		})
	}
}

// TestOlderStoreLayout reads a store written before the metadata moved into the image (an image
// beside a .json): its crops are found, walked, read and deleted like new ones, beside new ones.
func TestOlderStoreLayout(t *testing.T) { backends(t, testOlderStoreLayout) }

func testOlderStoreLayout(t *testing.T, store store) {
	ctx := context.Background()
	day := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	var old []CropRecord
	for i := range 3 {
		when := day.Add(time.Duration(i) * time.Minute)
		old = append(old, CropRecord{ID: NewID("gate", when, int64(i), 0), Camera: "gate", Time: when, Frame: int64(i), Track: 4, JPEG: realJPEG(t)})
	}
	// An older build wrote the image, then the metadata; a crop with its image alone was not yet
	// complete.
	incomplete := CropRecord{ID: NewID("gate", day.Add(time.Hour), 9, 0), Camera: "gate", Time: day.Add(time.Hour), JPEG: realJPEG(t)}
	for _, record := range append(old, incomplete) {
		imageName, legacyName, err := objectNames(record.ID)
		if err != nil {
			t.Fatal(err)
		}
		writeObject(t, store, imageName, record.JPEG)
		if record.ID != incomplete.ID {
			metadata, _ := json.Marshal(record)
			writeObject(t, store, legacyName, metadata)
		}
	}
	fresh := CropRecord{ID: NewID("gate", day.Add(90*time.Second), 5, 0), Camera: "gate", Time: day.Add(90 * time.Second), Frame: 5, JPEG: realJPEG(t)}
	if err := store.Put(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	walked := walkIDs(t, store, Filter{Camera: "gate"})
	if want := []string{old[0].ID, old[1].ID, fresh.ID, old[2].ID}; strings.Join(walked, " ") != strings.Join(want, " ") {
		t.Fatalf("walked %v, want %v", walked, want)
	}
	got, err := store.Get(ctx, old[1].ID)
	if err != nil || got.Track != 4 || !bytes.Equal(got.JPEG, old[1].JPEG) {
		t.Fatalf("Get(older crop) = track %d, %d bytes, %v", got.Track, len(got.JPEG), err)
	}
	if _, err := store.Get(ctx, incomplete.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(incomplete older crop) = %v, want ErrNotFound", err)
	}
	if err := store.Delete(ctx, old[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Metadata(ctx, old[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Metadata after Delete = %v", err)
	}
	// The day's deletion counts crops (images), whichever layout they are in.
	deleted, err := store.DeleteBefore(ctx, day.Add(24*time.Hour))
	if err != nil || deleted != 4 {
		t.Fatalf("DeleteBefore = %d, %v; want 4 (two older crops, the incomplete one, the new one)", deleted, err)
	}
	if left := walkIDs(t, store, Filter{}); len(left) != 0 {
		t.Fatalf("left %v", left)
	}
	if local, ok := store.(*Local); ok {
		if files, _ := filepath.Glob(filepath.Join(local.Root(), "gate", "*", "*")); len(files) != 0 {
			t.Fatalf("files left: %v", files)
		}
	}
}

// writeObject writes a file or object of a store directly, as an older build did.
func writeObject(t *testing.T, store store, name string, data []byte) {
	t.Helper()
	switch backend := store.(type) {
	case *Local:
		path := backend.path(name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	case *S3:
		if _, err := backend.client.PutObject(context.Background(), backend.bucket, name, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown store %T", store)
	}
}
