package vecmath

import "math"

// Half-precision (IEEE 754 binary16) storage for vectors that are searched, not computed on: a
// unit vector's values lose nothing that changes which neighbours are nearest (11 significant
// bits against 24), and a 512-d vector takes 1 KiB instead of 2.

// ToHalf rounds src to the nearest binary16 values (ties to even) into dst, which must be as long.
// Values beyond binary16's range become infinities; NaNs stay NaNs.
func ToHalf(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, value := range src {
		dst[i] = halfFromFloat32(value)
	}
}

// FromHalf widens src into dst, which must be as long; every binary16 value is exact in float32.
func FromHalf(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, half := range src {
		dst[i] = float32FromHalf(half)
	}
}

func halfFromFloat32(value float32) uint16 {
	bits := math.Float32bits(value)
	sign := uint16(bits>>16) & 0x8000
	exponent := int((bits >> 23) & 0xff)
	mantissa := bits & 0x7fffff
	switch {
	case exponent == 0xff: // infinity or NaN (keeping NaNs quiet and non-zero)
		if mantissa != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exponent-127 > 15: // too large even before rounding
		return sign | 0x7c00
	case exponent-127 >= -14: // normal in binary16
		half := uint32(exponent-127+15)<<10 | mantissa>>13
		// Round to nearest, ties to even, on the 13 bits dropped; a carry into the exponent is
		// right (and makes 65520 and above infinite).
		rest := mantissa & 0x1fff
		if rest > 0x1000 || (rest == 0x1000 && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	case exponent-127 >= -25: // subnormal in binary16 (or rounds up to the smallest one)
		full := mantissa | 0x800000 // the implicit leading bit
		shift := uint(-14-(exponent-127)) + 13
		half := full >> shift
		rest := full & (1<<shift - 1)
		halfway := uint32(1) << (shift - 1)
		if rest > halfway || (rest == halfway && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	default: // underflows to zero
		return sign
	}
}

func float32FromHalf(half uint16) float32 {
	sign := uint32(half&0x8000) << 16
	exponent := uint32(half>>10) & 0x1f
	mantissa := uint32(half & 0x3ff)
	switch {
	case exponent == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mantissa<<13)
	case exponent != 0:
		return math.Float32frombits(sign | (exponent+127-15)<<23 | mantissa<<13)
	case mantissa == 0:
		return math.Float32frombits(sign)
	default: // subnormal: a multiple of 2^-24
		value := float32(mantissa) * 0x1p-24
		if sign != 0 {
			value = -value
		}
		return value
	}
}

// widened holds every binary16 value as float32 (256 KiB, computed once, never written again):
// the portable loop looks values up instead of decoding them (183-238 ns per 512 values against
// 918-925 ns decoding, and 224-225 ns for the portable float32 loop).
var widened = func() *[1 << 16]float32 {
	var table [1 << 16]float32
	for bits := range table {
		table[bits] = float32FromHalf(uint16(bits))
	}
	return &table
}()

// dotHalfGeneric is DotHalf's portable loop.
func dotHalfGeneric(x []float32, y []uint16) float32 {
	y = y[:len(x)]
	table := widened
	var s0, s1, s2, s3 float32
	k := 0
	for ; k+4 <= len(x); k += 4 {
		s0 += x[k] * table[y[k]]
		s1 += x[k+1] * table[y[k+1]]
		s2 += x[k+2] * table[y[k+2]]
		s3 += x[k+3] * table[y[k+3]]
	}
	for ; k < len(x); k++ {
		s0 += x[k] * table[y[k]]
	}
	return (s0 + s1) + (s2 + s3)
}
