package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
)

// testJPEG encodes a small gradient so tests carry a real, decodable image.
func testJPEG(t testing.TB, width, height int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	for y := range height {
		for x := range width {
			img.Set(x, y, color.RGBA{R: uint8(x * 255 / width), G: uint8(y * 255 / height), B: 128, A: 255})
		}
	}
	var out bytes.Buffer
	if err := jpeg.Encode(&out, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func testRecord(t testing.TB, camera string, frame int64, detection int) cropstore.CropRecord {
	t.Helper()
	at := time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC).Add(time.Duration(frame) * 40 * time.Millisecond)
	return cropstore.CropRecord{
		ID:       cropstore.NewID(camera, at, frame, detection),
		Camera:   camera,
		Time:     at,
		Frame:    frame,
		Box:      cropstore.Box{X: 10, Y: 20, Width: 48, Height: 120},
		Score:    0.87,
		Track:    frame % 7,
		Detector: "yolo-fastest",
		JPEG:     testJPEG(t, 16, 32),
	}
}

// frame assembles a wire value by hand, with a correct checksum, so tests can reach the checks
// that come after the checksum.
func frame(version byte, metadata, jpegBytes []byte) []byte {
	out := append([]byte("RCRD"), version)
	out = binary.BigEndian.AppendUint32(out, uint32(len(metadata)))
	out = append(out, metadata...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(jpegBytes)))
	out = append(out, jpegBytes...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crc32.MakeTable(crc32.Castagnoli)))
}

func sameRecord(a, b cropstore.CropRecord) bool {
	return a.ID == b.ID && a.Camera == b.Camera && a.Time.Equal(b.Time) && a.Frame == b.Frame &&
		a.Box == b.Box && a.Score == b.Score && a.Track == b.Track && a.Detector == b.Detector &&
		bytes.Equal(a.JPEG, b.JPEG)
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	record := testRecord(t, "cam-1", 42, 3)
	value, err := Encode(record)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(value, []byte("RCRD\x01")) {
		t.Fatalf("value starts %q, want magic and version 1", value[:5])
	}
	decoded, err := Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	if !sameRecord(record, decoded) {
		t.Fatalf("decoded %+v, want %+v", decoded, record)
	}
}

func TestDecodeErrors(t *testing.T) {
	record := testRecord(t, "cam-1", 1, 0)
	valid, err := Encode(record)
	if err != nil {
		t.Fatal(err)
	}
	withVersion := func(version byte) []byte {
		value := bytes.Clone(valid)
		value[4] = version
		return value
	}
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-10] ^= 0x40
	cases := []struct {
		name  string
		value []byte
		want  error
	}{
		{"empty", nil, ErrNotCropRecord},
		{"garbage", []byte("this is not a crop record at all"), ErrNotCropRecord},
		{"json", []byte(`{"id":"cam-1_x"}`), ErrNotCropRecord},
		{"magic only", []byte("RCRD"), ErrTruncated},
		{"version 0", withVersion(0), ErrUnknownVersion},
		{"version 2", withVersion(2), ErrUnknownVersion},
		{"cut in the image", valid[:len(valid)/2], ErrTruncated},
		{"checksum missing", valid[:len(valid)-4], ErrTruncated},
		{"flipped bit", flipped, ErrCorrupt},
		{"trailing bytes", append(bytes.Clone(valid), 0), ErrCorrupt},
		{"zero metadata length", frame(1, nil, record.JPEG), ErrCorrupt},
		{"metadata not JSON", frame(1, []byte("{not json"), record.JPEG), ErrCorrupt},
		{"id escapes the store", frame(1, []byte(`{"id":"../../etc_20261127T170000000000_1_0","camera":"../../etc"}`), record.JPEG), ErrInvalidRecord},
		{"camera differs from id", frame(1, []byte(`{"id":"`+record.ID+`","camera":"cam-2"}`), record.JPEG), ErrInvalidRecord},
		{"no image", frame(1, []byte(`{"id":"`+record.ID+`","camera":"cam-1"}`), nil), ErrInvalidRecord},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.value)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeEveryTruncation(t *testing.T) {
	valid, err := Encode(testRecord(t, "cam-1", 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n < len(valid); n++ {
		if _, err := Decode(valid[:n]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Decode of the first %d of %d bytes: %v, want ErrTruncated", n, len(valid), err)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	tooLarge := testRecord(t, "cam-1", 1, 0)
	tooLarge.JPEG = make([]byte, MaxRecordBytes)
	noImage := testRecord(t, "cam-1", 1, 0)
	noImage.JPEG = nil
	badID := testRecord(t, "cam-1", 1, 0)
	badID.ID = "not-an-id"
	otherCamera := testRecord(t, "cam-1", 1, 0)
	otherCamera.Camera = "cam-2"
	for name, record := range map[string]cropstore.CropRecord{
		"too large": tooLarge, "no image": noImage, "bad id": badID, "camera differs": otherCamera,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Encode(record); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("Encode: %v, want ErrInvalidRecord", err)
			}
		})
	}
}

func TestValidateJPEG(t *testing.T) {
	good := testJPEG(t, 32, 64)
	var pngBytes bytes.Buffer
	if err := png.Encode(&pngBytes, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"good", good, true},
		{"empty", nil, false},
		{"truncated", good[:len(good)/2], false},
		{"png", pngBytes.Bytes(), false},
		{"markers around garbage", append([]byte{0xFF, 0xD8}, append(bytes.Repeat([]byte{7}, 64), 0xFF, 0xD9)...), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateJPEG(tc.data)
			if tc.ok && err != nil {
				t.Fatalf("ValidateJPEG: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrBadJPEG) {
				t.Fatalf("ValidateJPEG: %v, want ErrBadJPEG", err)
			}
		})
	}
}

func TestReason(t *testing.T) {
	cases := map[error]string{
		ErrNotCropRecord:            "not-crop-record",
		ErrUnknownVersion:           "unknown-version",
		ErrTruncated:                "truncated",
		ErrCorrupt:                  "corrupt",
		ErrInvalidRecord:            "invalid-record",
		ErrBadJPEG:                  "bad-jpeg",
		errors.New("index refused"): "rejected",
	}
	for err, want := range cases {
		wrapped := errors.Join(errors.New("context"), err)
		if got := Reason(wrapped); got != want {
			t.Errorf("Reason(%v) = %q, want %q", err, got, want)
		}
	}
}

// FuzzDecode checks that Decode never panics, fails only with its documented errors, and that what
// it accepts encodes back to an equal record.
func FuzzDecode(f *testing.F) {
	record := testRecord(f, "cam-1", 7, 1)
	valid, err := Encode(record)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte("RCRD\x02"))
	f.Add([]byte("garbage"))
	f.Add(frame(1, []byte(`{"id":"`+record.ID+`","camera":"cam-1"}`), []byte{0xFF, 0xD8, 0xFF, 0xD9}))
	sentinels := []error{ErrNotCropRecord, ErrUnknownVersion, ErrTruncated, ErrCorrupt, ErrInvalidRecord}
	f.Fuzz(func(t *testing.T, value []byte) {
		decoded, err := Decode(value)
		if err != nil {
			for _, sentinel := range sentinels {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("Decode error %v wraps no documented sentinel", err)
		}
		again, err := Encode(decoded)
		if err != nil {
			if strings.Contains(err.Error(), "over") {
				return // metadata re-encoded larger than the limit (escaping); not a decode bug
			}
			t.Fatalf("Encode of a decoded record: %v", err)
		}
		redecoded, err := Decode(again)
		if err != nil || !sameRecord(decoded, redecoded) {
			t.Fatalf("re-encoded record decodes to %+v, %v; want %+v", redecoded, err, decoded)
		}
	})
}
