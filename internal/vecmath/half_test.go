package vecmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestHalfRoundTripsEveryValue(t *testing.T) {
	for bits := range 1 << 16 {
		half := uint16(bits)
		value := float32FromHalf(half)
		if math.IsNaN(float64(value)) {
			if half&0x7c00 != 0x7c00 || half&0x3ff == 0 {
				t.Fatalf("%#04x widened to NaN", half)
			}
			continue
		}
		if back := halfFromFloat32(value); back != half {
			t.Fatalf("%#04x -> %v -> %#04x", half, value, back)
		}
	}
}

func TestHalfRounding(t *testing.T) {
	cases := []struct {
		value float32
		want  uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},                         // the largest finite
		{65519, 0x7bff},                         // rounds down to it
		{65520, 0x7c00},                         // halfway to the next power: ties to even, infinite
		{float32(math.Inf(-1)), 0xfc00},         // stays infinite
		{0x1p-24, 0x0001},                       // the smallest subnormal
		{0x1p-25, 0x0000},                       // halfway to it: ties to even, zero
		{0x3p-26, 0x0001},                       // past halfway
		{0x1p-14, 0x0400},                       // the smallest normal
		{1 + 0x1p-11, 0x3c00},                   // halfway between 1 and the next: even is 1
		{1 + 0x3p-11, 0x3c02},                   // halfway between the next two: even is up
		{float32(math.Copysign(0, -1)), 0x8000}, // negative zero
	}
	for _, c := range cases {
		if got := halfFromFloat32(c.value); got != c.want {
			t.Errorf("half(%v) = %#04x, want %#04x", c.value, got, c.want)
		}
	}
	if got := halfFromFloat32(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("half(NaN) = %#04x, not a NaN", got)
	}
	// Random values: no other binary16 value is nearer, and a tie went to the even one.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		value := float32(rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-30)))
		half := halfFromFloat32(value)
		distance := math.Abs(float64(float32FromHalf(half)) - float64(value))
		for _, neighbour := range []uint16{half - 1, half + 1} {
			if neighbour&0x7fff >= 0x7c00 || neighbour&0x8000 != half&0x8000 {
				continue
			}
			other := math.Abs(float64(float32FromHalf(neighbour)) - float64(value))
			if other < distance || (other == distance && half&1 == 1) {
				t.Fatalf("half(%v) = %#04x (off by %g), but %#04x is off by %g", value, half, distance, neighbour, other)
			}
		}
	}
}

func TestDotHalfMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 40, 100, 511, 512, 2048} {
		a := make([]float32, n)
		b := make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		halves := make([]uint16, n)
		ToHalf(halves, b)
		widened := make([]float32, n)
		FromHalf(widened, halves)
		var want float64
		for i := range a {
			want += float64(a[i]) * float64(widened[i])
		}
		for name, got := range map[string]float32{"dot": DotHalf(a, halves), "generic": dotHalfGeneric(a, halves)} {
			if math.Abs(float64(got)-want) > 1e-4*math.Max(1, math.Sqrt(float64(n))) {
				t.Errorf("%s n=%d = %v, want %v", name, n, got, want)
			}
		}
	}
}

func BenchmarkDotHalf512(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 512)
	y := make([]float32, 512)
	for i := range x {
		x[i], y[i] = rng.Float32(), rng.Float32()
	}
	halves := make([]uint16, 512)
	ToHalf(halves, y)
	b.Run("float32", func(b *testing.B) {
		for b.Loop() {
			Dot(x, y)
		}
	})
	b.Run("half", func(b *testing.B) {
		for b.Loop() {
			DotHalf(x, halves)
		}
	})
	b.Run("half-generic", func(b *testing.B) {
		for b.Loop() {
			dotHalfGeneric(x, halves)
		}
	})
}
