package embedded

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
)

// A snapshot is every slot of a gallery at one moment, and the HNSW graph when there is one, so a
// restart reads one sequential file instead of replaying the whole log and rebuilding the graph:
//
//	magic "REIDSNP1", dim uint32, slots uint64,
//	per slot: 1 + uvarint length + encoded item (alive) or 0 + raw vector (a graph tombstone),
//	graph flag byte; with a graph: m uint32, entry int64, max level uint32, per slot: level byte,
//	layer-0 list (count + 2m uint32), upper lists (level * (count + m) uint32),
//	CRC-32C of everything before (uint32).
//
// It is written to a temporary name, synced, and renamed, so a crash leaves the old one whole.

const snapshotMagic = "REIDSNP1"

type crcWriter struct {
	writer *bufio.Writer
	crc    hash.Hash32
}

func (w *crcWriter) Write(p []byte) (int, error) {
	w.crc.Write(p)
	return w.writer.Write(p)
}

func writeSnapshot(path string, g *gallery) error {
	temporary := path + ".tmp"
	file, err := os.Create(temporary)
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	defer os.Remove(temporary) // a no-op once renamed
	out := &crcWriter{writer: bufio.NewWriterSize(file, 4<<20), crc: crc32.New(castagnoli)}
	if err := encodeSnapshot(out, g); err != nil {
		file.Close()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := binary.Write(out.writer, binary.LittleEndian, out.crc.Sum32()); err != nil {
		file.Close()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := out.writer.Flush(); err != nil {
		file.Close()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := os.Rename(temporary, path); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func encodeSnapshot(out io.Writer, g *gallery) error {
	buf := make([]byte, 0, 64+4*g.dim)
	buf = append(buf, snapshotMagic...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(g.dim))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(g.records)))
	if _, err := out.Write(buf); err != nil {
		return err
	}
	var item []byte
	var scratch []float32
	for slot := range g.records {
		buf = buf[:0]
		if g.alive[slot] {
			r := &g.records[slot]
			value := g.itemView(uint32(slot), scratch)
			scratch = value.Vector
			item = appendItem(item[:0], &value, r.nanos)
			buf = append(buf, 1)
			buf = binary.AppendUvarint(buf, uint64(len(item)))
			buf = append(buf, item...)
		} else {
			buf = append(buf, 0)
			scratch = g.vectors.read(uint32(slot), scratch)
			for _, value := range scratch {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(value))
			}
		}
		if _, err := out.Write(buf); err != nil {
			return err
		}
	}
	h := g.graph
	if h == nil || h.entry < 0 {
		_, err := out.Write([]byte{0})
		return err
	}
	buf = append(buf[:0], 1)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(h.m))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(h.entry))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(h.maxLevel))
	if _, err := out.Write(buf); err != nil {
		return err
	}
	for slot := range g.records {
		buf = append(buf[:0], h.levels[slot])
		for _, value := range h.links(uint32(slot), 0) {
			buf = binary.LittleEndian.AppendUint32(buf, value)
		}
		for _, value := range h.upper[slot] {
			buf = binary.LittleEndian.AppendUint32(buf, value)
		}
		if _, err := out.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

type crcReader struct {
	reader *bufio.Reader
	crc    hash.Hash32
}

func (r *crcReader) Read(p []byte) (int, error) {
	n, err := r.reader.Read(p)
	r.crc.Write(p[:n])
	return n, err
}

// readSnapshot loads a snapshot into g (empty, with the snapshot's dim). A graph in the file is
// kept only when g has a graph with the same m; otherwise the caller rebuilds it.
func readSnapshot(path string, g *gallery) (graphLoaded bool, err error) {
	file, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("read snapshot: %w", err)
	}
	defer file.Close()
	in := &crcReader{reader: bufio.NewReaderSize(file, 4<<20), crc: crc32.New(castagnoli)}
	fail := func(format string, args ...any) (bool, error) {
		return false, fmt.Errorf("read snapshot %s: %s", path, fmt.Sprintf(format, args...))
	}
	header := make([]byte, len(snapshotMagic)+12)
	if _, err := io.ReadFull(in, header); err != nil {
		return fail("header: %v", err)
	}
	if string(header[:len(snapshotMagic)]) != snapshotMagic {
		return fail("not a snapshot (bad magic)")
	}
	dim := int(binary.LittleEndian.Uint32(header[len(snapshotMagic):]))
	slots := binary.LittleEndian.Uint64(header[len(snapshotMagic)+4:])
	if dim != g.dim {
		return fail("dimension %d, version has %d", dim, g.dim)
	}
	if slots > 1<<31 {
		return fail("implausible slot count %d", slots)
	}
	vector := make([]float32, dim)
	raw := make([]byte, 4*dim)
	var payload []byte
	var item decodedItem
	for slot := uint64(0); slot < slots; slot++ {
		flag, err := in.reader.ReadByte()
		if err != nil {
			return fail("slot %d: %v", slot, err)
		}
		in.crc.Write([]byte{flag})
		assigned := g.newSlot()
		switch flag {
		case 1:
			length, err := binary.ReadUvarint(byteCRC{in})
			if err != nil || length > 1<<24 {
				return fail("slot %d: bad length", slot)
			}
			if uint64(cap(payload)) < length {
				payload = make([]byte, length)
			}
			payload = payload[:length]
			if _, err := io.ReadFull(in, payload); err != nil {
				return fail("slot %d: %v", slot, err)
			}
			d := decoder{buf: payload}
			d.item(&item, vector)
			if d.err != nil {
				return fail("slot %d: %v", slot, d.err)
			}
			if _, exists := g.slots[item.id]; exists {
				return fail("slot %d: id %q twice", slot, item.id)
			}
			g.slots[item.id] = assigned
			g.live++
			g.vectors.set(assigned, vector)
			g.records[assigned] = record{
				id: item.id, camera: g.intern(item.camera), model: g.intern(item.model),
				nanos: item.nanos, track: item.track, frame: item.frame, box: item.box,
			}
			g.alive[assigned] = true
			g.link(assigned)
		case 0:
			if _, err := io.ReadFull(in, raw); err != nil {
				return fail("slot %d: %v", slot, err)
			}
			for i := range vector {
				vector[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			g.vectors.set(assigned, vector)
		default:
			return fail("slot %d: bad flag %d", slot, flag)
		}
	}
	// Free slots are rebuilt from the dead ones (with a graph, tombstones until reused).
	for slot := range g.records {
		if !g.alive[slot] {
			g.free = append(g.free, uint32(slot))
		}
	}
	hasGraph, err := in.reader.ReadByte()
	if err != nil {
		return fail("graph flag: %v", err)
	}
	in.crc.Write([]byte{hasGraph})
	var fileGraph *hnsw
	if hasGraph == 1 {
		head := make([]byte, 16)
		if _, err := io.ReadFull(in, head); err != nil {
			return fail("graph header: %v", err)
		}
		m := int(binary.LittleEndian.Uint32(head))
		if m < 1 || m > 1024 {
			return fail("graph m %d", m)
		}
		fileGraph = newHNSW(hnswOptions{m: m}, &g.vectors)
		fileGraph.entry = int64(binary.LittleEndian.Uint64(head[4:]))
		fileGraph.maxLevel = int(binary.LittleEndian.Uint32(head[12:]))
		fileGraph.grow(int(slots))
		if fileGraph.entry < 0 || fileGraph.entry >= int64(slots) || fileGraph.maxLevel > 15 {
			return fail("graph entry %d level %d", fileGraph.entry, fileGraph.maxLevel)
		}
		list := make([]byte, 4*(fileGraph.m0+1))
		for slot := 0; slot < int(slots); slot++ {
			level, err := in.reader.ReadByte()
			if err != nil || level > 15 {
				return fail("graph slot %d level", slot)
			}
			in.crc.Write([]byte{level})
			fileGraph.levels[slot] = level
			if _, err := io.ReadFull(in, list); err != nil {
				return fail("graph slot %d: %v", slot, err)
			}
			links := fileGraph.links(uint32(slot), 0)
			for i := range links {
				links[i] = binary.LittleEndian.Uint32(list[4*i:])
			}
			if level > 0 {
				upper := make([]byte, 4*int(level)*(m+1))
				if _, err := io.ReadFull(in, upper); err != nil {
					return fail("graph slot %d: %v", slot, err)
				}
				fileGraph.upper[slot] = make([]uint32, int(level)*(m+1))
				for i := range fileGraph.upper[slot] {
					fileGraph.upper[slot][i] = binary.LittleEndian.Uint32(upper[4*i:])
				}
			}
		}
	} else if hasGraph != 0 {
		return fail("bad graph flag %d", hasGraph)
	}
	sum := in.crc.Sum32()
	var stored [4]byte
	if _, err := io.ReadFull(in.reader, stored[:]); err != nil {
		return fail("checksum: %v", err)
	}
	if binary.LittleEndian.Uint32(stored[:]) != sum {
		return fail("checksum mismatch: the file is damaged")
	}
	if fileGraph != nil && fileGraph.validLinks(int(slots)) && g.graph != nil && g.graph.m == fileGraph.m {
		fileGraph.hnswOptions = g.graph.hnswOptions
		g.graph = fileGraph
		return true, nil
	}
	return false, nil
}

// byteCRC lets binary.ReadUvarint read through the checksum.
type byteCRC struct{ r *crcReader }

func (b byteCRC) ReadByte() (byte, error) {
	c, err := b.r.reader.ReadByte()
	if err == nil {
		b.r.crc.Write([]byte{c})
	}
	return c, err
}

// validLinks checks that every stored link names a slot that exists, so that a damaged graph that
// slipped past the checksum can not make a search index out of range.
func (h *hnsw) validLinks(n int) bool {
	for slot := 0; slot < n; slot++ {
		lists := [][]uint32{h.links(uint32(slot), 0)}
		for level := 1; level <= int(h.levels[slot]); level++ {
			lists = append(lists, h.links(uint32(slot), level))
		}
		for i, list := range lists {
			capacity := h.m
			if i == 0 {
				capacity = h.m0
			}
			if int(list[0]) > capacity {
				return false
			}
			for _, neighbour := range list[1 : 1+list[0]] {
				if int(neighbour) >= n {
					return false
				}
			}
		}
	}
	return true
}

func syncDir(dir string) error {
	handle, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer handle.Close()
	if err := handle.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
