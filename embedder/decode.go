package embedder

import (
	"fmt"
	"image"
	"sync"
	"sync/atomic"

	"github.com/reid-project/reid/internal/jpegturbo"
	"github.com/reid-project/reid/stream"
)

// decodeJob decodes one batch's JPEGs. Prepare starts it while the model still runs the batch
// before, so that on a machine whose cores the model fills the decoding uses the gaps between its
// kernels instead of adding to every batch; Handle then finishes what is left on all CPUs.
//
// Workers claim crops in batch order and the first to finish a crop stores it. Handle never waits
// for a worker started ahead: a crop such a worker holds is decoded again, because the scheduler
// may have put that worker off behind the model's threads.
type decodeJob struct {
	batch   []stream.Message
	next    atomic.Int64
	results []atomic.Pointer[decodedCrop]
	// seen is set by Handle's first look at the job.
	seen bool
}

type decodedCrop struct {
	image image.Image
	err   error // wraps stream.ErrBadJPEG
}

func newDecodeJob(batch []stream.Message) *decodeJob {
	return &decodeJob{batch: batch, results: make([]atomic.Pointer[decodedCrop], len(batch))}
}

// jobFor returns the job Prepare started for exactly this batch, or a new one.
func jobFor(batch []stream.Message) *decodeJob {
	if job, ok := batch[0].Prepared.(*decodeJob); ok && len(job.batch) == len(batch) && &job.batch[0] == &batch[0] {
		return job
	}
	return newDecodeJob(batch)
}

// start decodes ahead on workers goroutines that end when every crop is claimed.
func (j *decodeJob) start(workers int) {
	for range workers {
		go j.claimAll()
	}
}

// claimAll decodes unclaimed crops until none is left.
func (j *decodeJob) claimAll() {
	for i := int(j.next.Add(1) - 1); i < len(j.batch); i = int(j.next.Add(1) - 1) {
		j.decode(i)
	}
}

func (j *decodeJob) decode(i int) {
	if j.results[i].Load() == nil {
		j.results[i].CompareAndSwap(nil, decodeCrop(j.batch[i].Record.JPEG))
	}
}

// ready counts the crops already decoded.
func (j *decodeJob) ready() int {
	n := 0
	for i := range j.results {
		if j.results[i].Load() != nil {
			n++
		}
	}
	return n
}

// finish decodes what is left on workers goroutines and returns the images by batch index and
// the failures, wrapped in stream.ErrBadJPEG so the dead-letter record says why.
func (j *decodeJob) finish(workers int) ([]image.Image, map[int]error) {
	parallel(min(workers, len(j.batch)), j.claimAll)
	// Crops still missing are held by workers started ahead; decode them here as well.
	var missing []int
	for i := range j.results {
		if j.results[i].Load() == nil {
			missing = append(missing, i)
		}
	}
	var next atomic.Int64
	parallel(min(workers, len(missing)), func() {
		for k := int(next.Add(1) - 1); k < len(missing); k = int(next.Add(1) - 1) {
			j.decode(missing[k])
		}
	})
	images := make([]image.Image, len(j.batch))
	rejected := map[int]error{}
	for i := range j.results {
		result := j.results[i].Load()
		if result.err != nil {
			rejected[i] = result.err
			continue
		}
		images[i] = result.image
	}
	return images, rejected
}

// parallel runs fn on n goroutines and waits for them.
func parallel(n int, fn func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	wg.Wait()
}

func decodeCrop(data []byte) *decodedCrop {
	picture, err := jpegturbo.Decode(data)
	if err == nil && (picture.Bounds().Dx() < 8 || picture.Bounds().Dy() < 8) {
		err = fmt.Errorf("image %dx%d is too small", picture.Bounds().Dx(), picture.Bounds().Dy())
	}
	if err != nil {
		return &decodedCrop{err: fmt.Errorf("%w: %v", stream.ErrBadJPEG, err)}
	}
	return &decodedCrop{image: picture}
}
