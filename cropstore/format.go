package cropstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
)

// A crop is kept as one JPEG whose metadata (the CropRecord as JSON) rides in a comment segment
// (COM, FF FE) placed after the image's APPn segments, where JFIF readers expect nothing in
// particular. Every viewer and decoder skips the comment, so the file is still the crop's image;
// and one file per crop, instead of an image beside a small JSON file, halves the writes, fsyncs
// and S3 requests per crop and saves the filesystem block each small file took (a third of the
// store on a 4 KiB-block disk). Stores written before (.jpg beside .json) are still read.

// metadataTag starts the comment's text, so a comment some other tool wrote is never taken for
// metadata.
const metadataTag = "reid.CropRecord/1\n"

// headBytes is how much of a file is read for its metadata alone: the SOI, a JFIF APP0 segment
// and the comment fit many times over.
const headBytes = 4 << 10

// maxMetadataBytes bounds the comment so that it always fits in headBytes with room for APP0.
const maxMetadataBytes = headBytes - 512

// ErrInvalidImage is returned by Put for a record whose image is empty or does not start like a
// JPEG: it cannot carry its metadata, and no retry will change that.
var ErrInvalidImage = errors.New("invalid crop image")

// errShortHead says that the metadata lies beyond the bytes read (large APPn segments): read the
// whole file instead.
var errShortHead = errors.New("crop metadata beyond the head read")

// encodeCrop returns the file content for record: its JPEG with the metadata comment inserted.
func encodeCrop(record CropRecord) ([]byte, error) {
	image := record.JPEG
	if len(image) < 4 || image[0] != 0xFF || image[1] != 0xD8 {
		return nil, fmt.Errorf("%w: %s: no JPEG start-of-image marker", ErrInvalidImage, record.ID)
	}
	metadata, err := json.Marshal(record)
	if err != nil {
		return nil, fmt.Errorf("crop store: %w", err)
	}
	if len(metadataTag)+len(metadata) > maxMetadataBytes {
		return nil, fmt.Errorf("%w: %s: metadata of %d bytes", ErrInvalidImage, record.ID, len(metadata))
	}
	at := afterAppSegments(image)
	segmentLength := 2 + len(metadataTag) + len(metadata)
	out := make([]byte, 0, len(image)+2+segmentLength)
	out = append(out, image[:at]...)
	out = append(out, 0xFF, 0xFE, byte(segmentLength>>8), byte(segmentLength))
	out = append(out, metadataTag...)
	out = append(out, metadata...)
	return append(out, image[at:]...), nil
}

// afterAppSegments is the offset just past the SOI and the APPn segments that follow it (JFIF
// wants APP0 first), or just past the SOI where the segments do not parse.
func afterAppSegments(image []byte) int {
	at := 2
	for at+4 <= len(image) && image[at] == 0xFF && image[at+1] >= 0xE0 && image[at+1] <= 0xEF {
		next := segmentEnd(image, at)
		if next > len(image) {
			return 2
		}
		at = next
	}
	return at
}

// segmentEnd is the offset after the marker segment at offset at (its length counts itself).
func segmentEnd(data []byte, at int) int {
	return at + 2 + (int(data[at+2])<<8 | int(data[at+3]))
}

// decodeCrop finds the metadata comment in data, the start of a crop file or all of it (whole).
// found is false for a file without one (written before, or not by reid). With whole, image is
// the JPEG as it was put, the comment taken out again.
func decodeCrop(data []byte, whole bool) (record CropRecord, image []byte, found bool, err error) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return CropRecord{}, nil, false, nil
	}
	at := 2
	for {
		if at+4 > len(data) {
			if !whole {
				return CropRecord{}, nil, false, errShortHead
			}
			return CropRecord{}, nil, false, nil
		}
		marker := data[at+1]
		if data[at] != 0xFF || !(marker == 0xFE || marker >= 0xE0 && marker <= 0xEF) {
			return CropRecord{}, nil, false, nil // the image itself begins: no metadata comment
		}
		end := segmentEnd(data, at)
		if end > len(data) {
			if !whole {
				return CropRecord{}, nil, false, errShortHead
			}
			return CropRecord{}, nil, false, nil
		}
		if text, ours := bytes.CutPrefix(data[at+4:end], []byte(metadataTag)); marker == 0xFE && ours {
			if err := json.Unmarshal(text, &record); err != nil {
				return CropRecord{}, nil, false, fmt.Errorf("crop store: metadata: %w", err)
			}
			if whole {
				image = append(append(make([]byte, 0, len(data)-(end-at)), data[:at]...), data[end:]...)
			}
			return record, image, true, nil
		}
		at = end
	}
}

// cropFiles is how a backend reads the files (objects) named by objectNames; both return
// ErrNotFound for a missing one.
type cropFiles interface {
	head(ctx context.Context, name string) (data []byte, whole bool, err error)
	read(ctx context.Context, name string) ([]byte, error)
}

// readMetadata reads a crop's record without its image: from the head of its file, or from the
// .json beside it where an older store keeps it.
func readMetadata(ctx context.Context, files cropFiles, id string) (CropRecord, error) {
	imageName, legacyName, err := objectNames(id)
	if err != nil {
		return CropRecord{}, err
	}
	head, whole, err := files.head(ctx, imageName)
	if err != nil {
		return CropRecord{}, err
	}
	record, _, found, err := decodeCrop(head, whole)
	if errors.Is(err, errShortHead) {
		if head, err = files.read(ctx, imageName); err != nil {
			return CropRecord{}, err
		}
		record, _, found, err = decodeCrop(head, true)
	}
	if err != nil {
		return CropRecord{}, fmt.Errorf("%w (%s)", err, id)
	}
	if found {
		return record, nil
	}
	return readLegacyMetadata(ctx, files, legacyName)
}

// readCrop reads a crop's record with its image.
func readCrop(ctx context.Context, files cropFiles, id string) (CropRecord, error) {
	imageName, legacyName, err := objectNames(id)
	if err != nil {
		return CropRecord{}, err
	}
	data, err := files.read(ctx, imageName)
	if err != nil {
		return CropRecord{}, err
	}
	record, image, found, err := decodeCrop(data, true)
	if err != nil {
		return CropRecord{}, fmt.Errorf("%w (%s)", err, id)
	}
	if !found {
		if record, err = readLegacyMetadata(ctx, files, legacyName); err != nil {
			return CropRecord{}, err
		}
		image = data
	}
	record.JPEG = image
	return record, nil
}

func readLegacyMetadata(ctx context.Context, files cropFiles, name string) (CropRecord, error) {
	raw, err := files.read(ctx, name)
	if err != nil {
		return CropRecord{}, err
	}
	var record CropRecord
	if err := json.Unmarshal(raw, &record); err != nil {
		return CropRecord{}, fmt.Errorf("crop store: metadata %s: %w", path.Base(name), err)
	}
	return record, nil
}

// ErrNoMetadata is returned by DecodeFile for a file that carries no crop record.
var ErrNoMetadata = errors.New("no crop metadata in the file")

// DecodeFile reads the record a stored crop file carries, its JPEG as it was put, for tools handed
// a file (a crop copied out of the store) rather than an id.
func DecodeFile(data []byte) (CropRecord, error) {
	record, image, found, err := decodeCrop(data, true)
	if err != nil {
		return CropRecord{}, err
	}
	if !found {
		return CropRecord{}, ErrNoMetadata
	}
	record.JPEG = image
	return record, nil
}
