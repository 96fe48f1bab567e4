package embedded

import "golang.org/x/sys/cpu"

// useAVX2 is fixed at start-up: it describes the CPU, not any state of the program.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func dotAVX2(a, b *float32, n int) float32

// dot is the inner product of two vectors of equal length.
func dot(a, b []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	if useAVX2 {
		b = b[:len(a)]
		return dotAVX2(&a[0], &b[0], len(a))
	}
	return dotGeneric(a, b)
}
