package torch

/*
#include "reidtorch.h"
*/
import "C"

import (
	"context"
	"fmt"
	"unsafe"
)

// NearestNeighbors returns, for each row of features (rows of one length), the indices of its k
// most similar rows by inner product, most similar first; rows equally similar come in no
// particular order. It is one exact float32 matrix product per block of rows on the device (TF32
// off on a GPU), the k-nearest-neighbour step of clustering, which a BLAS or a GPU does many times
// faster than Go's loops. Each row is normally its own first neighbour.
func (d *Device) NearestNeighbors(ctx context.Context, features [][]float32, k int) ([][]int32, error) {
	n := len(features)
	if n == 0 {
		return [][]int32{}, nil
	}
	dim := len(features[0])
	if k < 1 || k > n || dim == 0 {
		return nil, fmt.Errorf("torch: nearest neighbours: k = %d for %d rows of %d values", k, n, dim)
	}
	flat := make([]float32, 0, n*dim)
	for i, row := range features {
		if len(row) != dim {
			return nil, fmt.Errorf("torch: nearest neighbours: row %d has %d values, row 0 has %d", i, len(row), dim)
		}
		flat = append(flat, row...)
	}
	indices := make([]int32, n*k)
	err := d.do(ctx, func() error {
		var message *C.char
		code := C.rt_knn(C.int(d.deviceType), C.int(d.deviceIndex), (*C.float)(unsafe.Pointer(&flat[0])),
			C.int64_t(n), C.int64_t(dim), C.int64_t(k), (*C.int32_t)(unsafe.Pointer(&indices[0])), &message)
		return statusError(code, message, "nearest neighbours")
	})
	if err != nil {
		return nil, err
	}
	ranks := make([][]int32, n)
	for i := range ranks {
		ranks[i] = indices[i*k : (i+1)*k : (i+1)*k]
	}
	return ranks, nil
}
