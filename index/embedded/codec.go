package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/reid-project/reid/index"
)

// Log operations. Each log record holds one whole call, so a batch is replayed all or nothing.
const (
	opUpsert       byte = 1
	opDelete       byte = 2
	opDeleteBefore byte = 3
	// opDeleteCameraBefore is opDeleteBefore for one camera: the time, then the camera's name.
	opDeleteCameraBefore byte = 4
)

// noTime stands for the zero time.Time, which has no Unix nanosecond value.
const noTime = math.MinInt64

// maxIDLength bounds crop ids so that a corrupt length can not make the decoder allocate wildly.
const maxIDLength = 4096

var errCorrupt = errors.New("corrupt record")

func timeToNanos(t time.Time) (int64, error) {
	if t.IsZero() {
		return noTime, nil
	}
	// UnixNano is defined for years 1678-2262 only.
	if t.Year() < 1678 || t.Year() > 2261 {
		return 0, fmt.Errorf("time %v out of range (years 1678-2261)", t)
	}
	return t.UnixNano(), nil
}

func nanosToTime(nanos int64) time.Time {
	if nanos == noTime {
		return time.Time{}
	}
	return time.Unix(0, nanos).UTC()
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// appendItem encodes one item; time is given in nanos, already validated.
func appendItem(buf []byte, item *index.Item, nanos int64) []byte {
	buf = appendString(buf, item.ID)
	buf = appendString(buf, item.Metadata.Camera)
	buf = appendString(buf, item.Metadata.Model)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(nanos))
	buf = binary.AppendVarint(buf, item.Metadata.Track)
	buf = binary.AppendVarint(buf, item.Metadata.Frame)
	for _, value := range item.Metadata.Box {
		buf = binary.AppendVarint(buf, int64(value))
	}
	for _, value := range item.Vector {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(value))
	}
	return buf
}

// decoder reads the encoding above from a byte slice; the first error sticks.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if len(d.buf) < 1 {
		d.fail()
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	value, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return value
}

func (d *decoder) varint() int64 {
	value, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return value
}

func (d *decoder) uint64() uint64 {
	if len(d.buf) < 8 {
		d.fail()
		return 0
	}
	value := binary.LittleEndian.Uint64(d.buf)
	d.buf = d.buf[8:]
	return value
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > maxIDLength || uint64(len(d.buf)) < n {
		d.fail()
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

// item decodes one item; its vector is written into vector (len dim).
func (d *decoder) item(item *decodedItem, vector []float32) {
	item.id = d.string()
	item.camera = d.string()
	item.model = d.string()
	item.nanos = int64(d.uint64())
	item.track = d.varint()
	item.frame = d.varint()
	for i := range item.box {
		value := d.varint()
		if value < math.MinInt32 || value > math.MaxInt32 {
			d.fail()
		}
		item.box[i] = int32(value)
	}
	if len(d.buf) < 4*len(vector) {
		d.fail()
		return
	}
	for i := range vector {
		vector[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.buf[4*i:]))
	}
	d.buf = d.buf[4*len(vector):]
}

type decodedItem struct {
	id, camera, model string
	nanos             int64
	track, frame      int64
	box               [4]int32
}
