//go:build !amd64

package vecmath

// Dot is the float32 inner product of two equally long vectors.
func Dot(a, b []float32) float32 { return dotGeneric(a, b) }
