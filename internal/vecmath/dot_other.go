//go:build !amd64

package vecmath

// Dot is the float32 inner product of two equally long vectors.
func Dot(a, b []float32) float32 { return dotGeneric(a, b) }

// DotHalf is the inner product of a float32 vector and an equally long binary16 one (ToHalf),
// accumulated in float32.
func DotHalf(a []float32, b []uint16) float32 { return dotHalfGeneric(a, b) }
