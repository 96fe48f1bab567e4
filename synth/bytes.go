package synth

import "unsafe"

// float32Bytes views values as bytes for gocv.NewMatFromBytes, which shares (does not copy)
// them: the Mat must not outlive values.
func float32Bytes(values []float32) []byte {
	if len(values) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&values[0])), len(values)*4)
}
