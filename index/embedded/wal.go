package embedded

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// The write-ahead log is a sequence of frames: payload length (uint32 LE), CRC-32C of the payload
// (uint32 LE), payload. A frame cut short by a crash, or whose CRC does not match, ends the log:
// replay stops there and the file is truncated so that new frames follow the last good one.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	frameHeader  = 8
	maxFrameSize = 1 << 30
)

// wal appends frames to one log file. Appends are serialised by mu; durability is a separate
// step (syncTo) so that writers who appended while an fsync ran share the next one (group commit).
type wal struct {
	mu      sync.Mutex
	file    logFile
	written int64
	frame   []byte

	syncMu sync.Mutex
	synced atomic.Int64
	doSync bool
}

// logFile is what the log needs of its *os.File (a test fills the disk under it).
type logFile interface {
	io.Writer
	io.Seeker
	Truncate(size int64) error
	Sync() error
	Close() error
}

func openWAL(path string, doSync bool) (*wal, error) {
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("open log: %w", err)
	}
	if _, err := file.Seek(0, io.SeekEnd); err != nil {
		file.Close()
		return nil, fmt.Errorf("open log: %w", err)
	}
	w := &wal{file: file, written: info.Size(), doSync: doSync}
	w.synced.Store(info.Size())
	return w, nil
}

// append writes one frame and returns the log offset at its end.
func (w *wal) append(payload []byte) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil {
		return 0, errors.New("log is closed")
	}
	w.frame = binary.LittleEndian.AppendUint32(w.frame[:0], uint32(len(payload)))
	w.frame = binary.LittleEndian.AppendUint32(w.frame, crc32.Checksum(payload, castagnoli))
	w.frame = append(w.frame, payload...)
	n, err := w.file.Write(w.frame)
	if err != nil {
		// A full disk fails a write part way. Cutting the partial frame off leaves the log as
		// it was, and later appends safe once there is room again.
		if undoErr := w.undo(w.written, n); undoErr != nil {
			w.written += int64(n)
			return 0, fmt.Errorf("append to log: %w (and cutting off the partial frame: %v)", err, undoErr)
		}
		return 0, fmt.Errorf("append to log: %w (%w)", err, errAppendUndone)
	}
	w.written += int64(n)
	return w.written, nil
}

// errAppendUndone marks a failed append that left the log as it was before it.
var errAppendUndone = errors.New("the log is unchanged")

// undo cuts n bytes written past end off the file and puts the write position back at end.
func (w *wal) undo(end int64, n int) error {
	if n > 0 {
		if err := w.file.Truncate(end); err != nil {
			return err
		}
	}
	_, err := w.file.Seek(end, io.SeekStart)
	return err
}

// syncTo makes the log durable up to offset end. One fsync covers every frame appended before it
// started, so concurrent writers mostly find their frame already synced.
func (w *wal) syncTo(end int64) error {
	if !w.doSync || w.synced.Load() >= end {
		return nil
	}
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if w.synced.Load() >= end {
		return nil
	}
	w.mu.Lock()
	target, file := w.written, w.file
	w.mu.Unlock()
	if file == nil {
		return errors.New("log is closed")
	}
	if err := file.Sync(); err != nil {
		return fmt.Errorf("sync log: %w", err)
	}
	w.synced.Store(target)
	return nil
}

func (w *wal) size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}

func (w *wal) close() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil {
		return nil
	}
	err := w.file.Sync()
	if closeErr := w.file.Close(); err == nil {
		err = closeErr
	}
	w.file = nil
	w.synced.Store(w.written)
	return err
}

// replayWAL calls apply for each good frame of the log at path, then truncates a torn or corrupt
// tail. It returns the number of frames applied and the bytes dropped from the tail.
func replayWAL(path string, apply func(payload []byte) error) (frames int, dropped int64, err error) {
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("open log: %w", err)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return 0, 0, err
	}
	reader := bufio.NewReaderSize(file, 1<<20)
	var offset int64
	var header [frameHeader]byte
	var payload []byte
	for {
		if _, err := io.ReadFull(reader, header[:]); err != nil {
			break // clean end, or a header cut short
		}
		length := binary.LittleEndian.Uint32(header[:4])
		sum := binary.LittleEndian.Uint32(header[4:])
		if length > maxFrameSize || int64(length) > info.Size()-offset-frameHeader {
			break
		}
		if cap(payload) < int(length) {
			payload = make([]byte, length)
		}
		payload = payload[:length]
		if _, err := io.ReadFull(reader, payload); err != nil {
			break
		}
		if crc32.Checksum(payload, castagnoli) != sum {
			break
		}
		if err := apply(payload); err != nil {
			return frames, 0, fmt.Errorf("log %s at offset %d: %w", path, offset, err)
		}
		frames++
		offset += frameHeader + int64(length)
	}
	if dropped = info.Size() - offset; dropped > 0 {
		if err := file.Truncate(offset); err != nil {
			return frames, dropped, fmt.Errorf("truncate torn log tail: %w", err)
		}
		if err := file.Sync(); err != nil {
			return frames, dropped, fmt.Errorf("truncate torn log tail: %w", err)
		}
	}
	return frames, dropped, nil
}
