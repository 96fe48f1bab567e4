package embedded

import (
	"slices"

	"github.com/reid-project/reid/internal/vecmath"
)

// Vectors live in fixed-size blocks of contiguous values so that a million 512-d vectors never
// need one 2 GB allocation (or a copy of one while growing), and a scan reads memory in order.
const (
	blockShift = 12
	blockSize  = 1 << blockShift
)

// vectorStore keeps a gallery's vectors in blocks, as float32 or, with half, as binary16 (half
// the memory; the nearest neighbours of unit vectors come out the same, see docs/BENCHMARKS.md).
// Files hold float32 either way, so the precision can change between two opens; a snapshot of a
// binary16 store holds the rounded values.
type vectorStore struct {
	dim    int
	half   bool
	full   [][]float32
	halves [][]uint16
}

func (v *vectorStore) blocks() int {
	if v.half {
		return len(v.halves)
	}
	return len(v.full)
}

func (v *vectorStore) grow() {
	if v.half {
		v.halves = append(v.halves, make([]uint16, blockSize*v.dim))
	} else {
		v.full = append(v.full, make([]float32, blockSize*v.dim))
	}
}

// share returns a store reading the same blocks, for a snapshot's frozen view; a write into a
// shared block must copy it first (copyBlock).
func (v *vectorStore) share() vectorStore {
	return vectorStore{dim: v.dim, half: v.half, full: slices.Clone(v.full), halves: slices.Clone(v.halves)}
}

// copyBlock gives the store its own copy of block i.
func (v *vectorStore) copyBlock(i int) {
	if v.half {
		v.halves[i] = slices.Clone(v.halves[i])
	} else {
		v.full[i] = slices.Clone(v.full[i])
	}
}

func (v *vectorStore) offset(slot uint32) int { return int(slot&(blockSize-1)) * v.dim }

// set stores vector (dim values) in slot.
func (v *vectorStore) set(slot uint32, vector []float32) {
	at := v.offset(slot)
	if v.half {
		vecmath.ToHalf(v.halves[slot>>blockShift][at:at+v.dim], vector)
	} else {
		copy(v.full[slot>>blockShift][at:at+v.dim], vector)
	}
}

// dot is the inner product of query with slot's vector.
func (v *vectorStore) dot(query []float32, slot uint32) float32 {
	at := v.offset(slot)
	if v.half {
		return vecmath.DotHalf(query, v.halves[slot>>blockShift][at:at+v.dim])
	}
	return vecmath.Dot(query, v.full[slot>>blockShift][at:at+v.dim])
}

// read returns slot's vector as float32: in float32 the stored values themselves (not to be
// written to), in binary16 widened into scratch (reused when large enough, else a new slice).
func (v *vectorStore) read(slot uint32, scratch []float32) []float32 {
	at := v.offset(slot)
	if !v.half {
		return v.full[slot>>blockShift][at : at+v.dim : at+v.dim]
	}
	if cap(scratch) < v.dim {
		scratch = make([]float32, v.dim)
	}
	scratch = scratch[:v.dim]
	vecmath.FromHalf(scratch, v.halves[slot>>blockShift][at:at+v.dim])
	return scratch
}
