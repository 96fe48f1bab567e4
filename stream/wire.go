package stream

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	_ "image/jpeg" // registers the JPEG decoder that ValidateJPEG relies on

	"github.com/reid-project/reid/cropstore"
)

// Wire format of one CropRecord as a Kafka message value (see docs/WIRE.md):
//
//	offset  size  field
//	0       4     magic "RCRD"
//	4       1     version (WireVersion = 1)
//	5       4     metadata length M, uint32 big endian, 1..MaxMetadataBytes
//	9       M     metadata: the CropRecord as JSON without the image (cropstore's JSON tags)
//	9+M     4     image length J, uint32 big endian
//	13+M    J     the JPEG bytes, unchanged
//	13+M+J  4     CRC-32C (Castagnoli) of every byte before it, big endian
//
// The message key is the camera id, so one camera's crops stay in one partition, in order.
// JSON keeps the metadata readable by any Kafka tool and lets later versions add fields that
// version-1 readers ignore; the length prefixes make truncation detectable before parsing, and the
// checksum catches corruption that Kafka's own batch CRC cannot (bytes damaged before producing).
const (
	// WireVersion is the version Encode writes and the only one Decode accepts.
	WireVersion = 1
	// MaxMetadataBytes bounds the JSON metadata so a corrupt length cannot make Decode allocate.
	MaxMetadataBytes = 64 << 10
	// MaxRecordBytes bounds a whole encoded record. It stays under Kafka's default
	// message.max.bytes (1 MiB, also kfake's) with room for the batch and record headers.
	MaxRecordBytes = 900 << 10

	headerBytes  = 4 + 1 + 4
	trailerBytes = 4
)

var wireMagic = [4]byte{'R', 'C', 'R', 'D'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Decode errors. Each is wrapped with detail; test with errors.Is. Reason maps them to the short
// code written into the DLQ's reason header.
var (
	// ErrNotCropRecord: the value does not start with the magic bytes (garbage, another producer).
	ErrNotCropRecord = errors.New("not a crop record")
	// ErrUnknownVersion: the magic matches but the version byte is not one this build reads.
	ErrUnknownVersion = errors.New("unknown crop record version")
	// ErrTruncated: the value ends before the lengths it declares.
	ErrTruncated = errors.New("truncated crop record")
	// ErrCorrupt: checksum mismatch, trailing bytes, or metadata that is not valid JSON.
	ErrCorrupt = errors.New("corrupt crop record")
	// ErrInvalidRecord: the record decodes but its fields are unusable (bad id, camera mismatch,
	// no image), or it cannot be encoded (too large).
	ErrInvalidRecord = errors.New("invalid crop record")
	// ErrBadJPEG: the image bytes are not a decodable JPEG (see ValidateJPEG).
	ErrBadJPEG = errors.New("bad crop JPEG")
)

// Encode serialises record in the current wire format. It checks what Decode would reject, so a
// record that encodes also decodes; records over MaxRecordBytes are refused (ErrInvalidRecord)
// because the broker would refuse them anyway.
func Encode(record cropstore.CropRecord) ([]byte, error) {
	if err := checkRecord(record); err != nil {
		return nil, err
	}
	metadata, err := json.Marshal(record)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", ErrInvalidRecord, err)
	}
	if len(metadata) > MaxMetadataBytes {
		return nil, fmt.Errorf("%w %s: metadata is %d bytes, over %d", ErrInvalidRecord, record.ID, len(metadata), MaxMetadataBytes)
	}
	total := headerBytes + len(metadata) + 4 + len(record.JPEG) + trailerBytes
	if total > MaxRecordBytes {
		return nil, fmt.Errorf("%w %s: %d bytes encoded, over %d", ErrInvalidRecord, record.ID, total, MaxRecordBytes)
	}
	out := make([]byte, 0, total)
	out = append(out, wireMagic[:]...)
	out = append(out, WireVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(len(metadata)))
	out = append(out, metadata...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(record.JPEG)))
	out = append(out, record.JPEG...)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
	return out, nil
}

// Decode parses a value written by Encode. The returned record's JPEG aliases value. Errors wrap
// ErrNotCropRecord, ErrUnknownVersion, ErrTruncated, ErrCorrupt or ErrInvalidRecord. The JPEG
// itself is not decoded here: consumers that need pixels call ValidateJPEG (or decode it anyway).
func Decode(value []byte) (cropstore.CropRecord, error) {
	if len(value) < len(wireMagic) {
		if bytes.HasPrefix(wireMagic[:], value) && len(value) > 0 {
			return cropstore.CropRecord{}, fmt.Errorf("%w: %d bytes, shorter than the header", ErrTruncated, len(value))
		}
		return cropstore.CropRecord{}, fmt.Errorf("%w: %d bytes", ErrNotCropRecord, len(value))
	}
	if !bytes.Equal(value[:4], wireMagic[:]) {
		return cropstore.CropRecord{}, fmt.Errorf("%w: magic %q", ErrNotCropRecord, value[:4])
	}
	if len(value) < headerBytes {
		return cropstore.CropRecord{}, fmt.Errorf("%w: %d bytes, shorter than the header", ErrTruncated, len(value))
	}
	if version := value[4]; version != WireVersion {
		return cropstore.CropRecord{}, fmt.Errorf("%w %d (this build reads %d)", ErrUnknownVersion, version, WireVersion)
	}
	metadataLength := int(binary.BigEndian.Uint32(value[5:9]))
	if metadataLength == 0 || metadataLength > MaxMetadataBytes {
		return cropstore.CropRecord{}, fmt.Errorf("%w: metadata length %d", ErrCorrupt, metadataLength)
	}
	rest := value[headerBytes:]
	if len(rest) < metadataLength+4 {
		return cropstore.CropRecord{}, fmt.Errorf("%w: metadata needs %d bytes, %d left", ErrTruncated, metadataLength+4, len(rest))
	}
	metadata := rest[:metadataLength]
	rest = rest[metadataLength:]
	imageLength := uint64(binary.BigEndian.Uint32(rest[:4]))
	rest = rest[4:]
	if uint64(len(rest)) < imageLength+trailerBytes {
		return cropstore.CropRecord{}, fmt.Errorf("%w: image needs %d bytes and checksum, %d left", ErrTruncated, imageLength, len(rest))
	}
	if uint64(len(rest)) > imageLength+trailerBytes {
		return cropstore.CropRecord{}, fmt.Errorf("%w: %d bytes after the checksum", ErrCorrupt, uint64(len(rest))-imageLength-trailerBytes)
	}
	image := rest[:imageLength]
	end := len(value) - trailerBytes
	if want, got := binary.BigEndian.Uint32(value[end:]), crc32.Checksum(value[:end], castagnoli); want != got {
		return cropstore.CropRecord{}, fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorrupt, want, got)
	}
	var record cropstore.CropRecord
	if err := json.Unmarshal(metadata, &record); err != nil {
		return cropstore.CropRecord{}, fmt.Errorf("%w: metadata: %v", ErrCorrupt, err)
	}
	record.JPEG = image
	if err := checkRecord(record); err != nil {
		return cropstore.CropRecord{}, err
	}
	return record, nil
}

// checkRecord rejects records that downstream stores could not key or file safely.
func checkRecord(record cropstore.CropRecord) error {
	parsed, err := cropstore.ParseID(record.ID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	if parsed.Camera != record.Camera {
		return fmt.Errorf("%w %s: id names camera %q, record says %q", ErrInvalidRecord, record.ID, parsed.Camera, record.Camera)
	}
	if len(record.JPEG) == 0 {
		return fmt.Errorf("%w %s: no image", ErrInvalidRecord, record.ID)
	}
	return nil
}

// ValidateJPEG checks that data is a whole JPEG: it starts with SOI (FF D8), ends with EOI (FF D9),
// and its header decodes (image.DecodeConfig) to a non-empty image. It catches the usual damage
// (truncated writes, other formats) without the cost of a full decode; errors wrap ErrBadJPEG.
func ValidateJPEG(data []byte) error {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return fmt.Errorf("%w: no start-of-image marker", ErrBadJPEG)
	}
	if data[len(data)-2] != 0xFF || data[len(data)-1] != 0xD9 {
		return fmt.Errorf("%w: no end-of-image marker (truncated?)", ErrBadJPEG)
	}
	config, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadJPEG, err)
	}
	if format != "jpeg" || config.Width <= 0 || config.Height <= 0 {
		return fmt.Errorf("%w: %s image of %dx%d", ErrBadJPEG, format, config.Width, config.Height)
	}
	return nil
}

// Reason is the short, stable code for why a record is poison, as written in the DLQ's reason
// header: not-crop-record, unknown-version, truncated, corrupt, invalid-record, bad-jpeg, or
// rejected for any other error a handler gave.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrNotCropRecord):
		return "not-crop-record"
	case errors.Is(err, ErrUnknownVersion):
		return "unknown-version"
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrCorrupt):
		return "corrupt"
	case errors.Is(err, ErrInvalidRecord):
		return "invalid-record"
	case errors.Is(err, ErrBadJPEG):
		return "bad-jpeg"
	default:
		return "rejected"
	}
}
