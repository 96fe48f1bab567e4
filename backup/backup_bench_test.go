package backup

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
)

// BenchmarkBackupCrops mirrors a crop store (REIDBENCH_BACKUP_CROPS crops, default 20,000, of
// about 9 KB: 64x128 JPEGs of noise, four cameras over five days) into a backup directory and
// again after a day's crops were pruned and new ones added, beside rsync -a --delete doing the same
// into its own directories: plain (nothing synced: a crash right after may lose the copy) and with
// --fsync (rsync 3.2.3+; every file synced, as durable as the backup, which syncs the file system
// once at the end). Reported: the medians of the rounds' seconds, and reid / rsync.
func BenchmarkBackupCrops(b *testing.B) {
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		b.Fatalf("rsync is the reference (apt-get install rsync): %v", err)
	}
	count := 20000
	if value := os.Getenv("REIDBENCH_BACKUP_CROPS"); value != "" {
		if count, err = strconv.Atoi(value); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	data := b.TempDir()
	store, err := cropstore.OpenLocal(filepath.Join(data, "crops"))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func() []byte {
		picture := image.NewRGBA(image.Rect(0, 0, 64, 128))
		for i := range picture.Pix {
			picture.Pix[i] = uint8(rng.IntN(256))
		}
		picture.Set(0, 0, color.White)
		var buffer bytes.Buffer
		jpeg.Encode(&buffer, picture, &jpeg.Options{Quality: 60})
		return buffer.Bytes()
	}
	images := make([][]byte, 64)
	for i := range images {
		images[i] = noise()
	}
	start := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	put := func(n int, day int) {
		camera := []string{"gate", "hall", "lift", "yard"}[n%4]
		at := start.Add(time.Duration(day)*24*time.Hour + time.Duration(n)*time.Second)
		record := cropstore.CropRecord{ID: cropstore.NewID(camera, at, int64(n), 0), Camera: camera, Time: at,
			Box: cropstore.Box{Width: 64, Height: 128}, Track: int64(n / 10), JPEG: images[n%len(images)]}
		if err := store.Put(ctx, record); err != nil {
			b.Fatal(err)
		}
	}
	for n := range count {
		put(n, n%5)
	}
	type side struct {
		name         string
		run          func(target string)
		first, again []float64
	}
	rsyncWith := func(flags ...string) func(string) {
		return func(target string) {
			arguments := append(append([]string{"-a", "--delete"}, flags...), filepath.Join(data, "crops")+"/", target+"/")
			if out, err := exec.Command(rsync, arguments...).CombinedOutput(); err != nil {
				b.Fatalf("rsync: %v\n%s", err, out)
			}
		}
	}
	sides := []*side{
		{name: "reid", run: func(target string) {
			if _, err := Run(ctx, Sources{Crops: filepath.Join(data, "crops")}, target); err != nil {
				b.Fatal(err)
			}
		}},
		{name: "rsync", run: rsyncWith()},
		{name: "rsync-fsync", run: rsyncWith("--fsync")},
	}
	timed := func(run func()) float64 {
		began := time.Now()
		run()
		return time.Since(began).Seconds()
	}
	for round := 0; b.Loop(); round++ {
		targets := map[string]string{}
		for _, side := range sides {
			targets[side.name] = filepath.Join(b.TempDir(), side.name)
		}
		// Rotate which side goes first: the page cache favours later readers.
		order := slices.Clone(sides)
		for range round % len(order) {
			order = append(order[1:], order[0])
		}
		for _, side := range order {
			side.first = append(side.first, timed(func() { side.run(targets[side.name]) }))
		}
		// A day's crops pruned, as many new ones stored.
		if _, err := store.DeleteBefore(ctx, start.Add(time.Duration(round%5+1)*24*time.Hour)); err != nil {
			b.Fatal(err)
		}
		for n := range count / 5 {
			put(count+round*count+n, round%5)
		}
		for _, side := range order {
			side.again = append(side.again, timed(func() { side.run(targets[side.name]) }))
		}
	}
	median := func(values []float64) float64 {
		sorted := slices.Sorted(slices.Values(values))
		return sorted[len(sorted)/2]
	}
	reid := sides[0]
	for _, side := range sides {
		b.ReportMetric(median(side.first), side.name+"-first-s")
		b.ReportMetric(median(side.again), side.name+"-again-s")
		if side != reid {
			b.ReportMetric(median(reid.first)/median(side.first), "first-ratio-vs-"+side.name)
			b.ReportMetric(median(reid.again)/median(side.again), "again-ratio-vs-"+side.name)
		}
	}
}
