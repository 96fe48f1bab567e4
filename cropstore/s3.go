package cropstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options says where an S3-compatible bucket is (AWS S3, MinIO, Ceph, ...).
type S3Options struct {
	Endpoint  string // host:port, or a URL whose scheme says whether to use TLS
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
	UseTLS    bool
}

// S3 keeps crops as objects in one bucket, under the same names the local store gives its files
// (<camera>/<YYYYMMDD>/<id>.jpg), so a site can move from one to the other by copying.
// An object appears whole or not at all, so no write needs a temporary name. It is safe for
// concurrent use.
type S3 struct {
	client   *minio.Client
	bucket   string
	erasures *erasures
}

// OpenS3 connects to the bucket and checks that it exists: a wrong endpoint, key or bucket name
// is an error at start, not at the first crop. Without an access key it takes credentials the
// standard way: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, MINIO_ROOT_USER and
// MINIO_ROOT_PASSWORD, then the instance's IAM role.
func OpenS3(ctx context.Context, options S3Options) (*S3, error) {
	endpoint, secure := options.Endpoint, options.UseTLS
	// An endpoint written as a URL says itself whether it is TLS.
	if parsed, err := url.Parse(endpoint); err == nil && (parsed.Scheme == "http" || parsed.Scheme == "https") {
		endpoint, secure = parsed.Host, parsed.Scheme == "https"
	}
	creds := credentials.NewStaticV4(options.AccessKey, options.SecretKey, "")
	if options.AccessKey == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.IAM{}})
	}
	client, err := minio.New(endpoint, &minio.Options{Creds: creds, Secure: secure, Region: options.Region})
	if err != nil {
		return nil, fmt.Errorf("crop store: s3 %s: %w", options.Endpoint, err)
	}
	// The client retries with backoff for a long while; a start-up check should not.
	checkCtx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	exists, err := client.BucketExists(checkCtx, options.Bucket)
	if err != nil {
		return nil, fmt.Errorf("crop store: s3 %s bucket %s: %w", options.Endpoint, options.Bucket, err)
	}
	if !exists {
		return nil, fmt.Errorf("crop store: s3 %s has no bucket %q (create it first, or check that the endpoint is the S3 service)", options.Endpoint, options.Bucket)
	}
	store := &S3{client: client, bucket: options.Bucket}
	store.erasures = newErasures(store)
	return store, nil
}

// openTimeout bounds OpenS3's check of the bucket.
const openTimeout = 20 * time.Second

// Location names the bucket, for logs.
func (s *S3) Location() string { return "s3://" + s.bucket }

// Put stores record as one object (its metadata inside the JPEG), which appears whole or not at
// all. Putting the same id again replaces it.
func (s *S3) Put(ctx context.Context, record CropRecord) error {
	key, content, err := checkPut(record)
	if err != nil {
		return err
	}
	if err := s.erasures.checkErased(ctx, record); err != nil {
		return err
	}
	_, err = s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{ContentType: "image/jpeg"})
	if err != nil {
		return fmt.Errorf("crop store: put %s: %w", key, err)
	}
	return nil
}

// RecordErasure records erasure, so that Put refuses its crops from now on, in this process and,
// within ErasureRefresh, in every other process that opens this bucket.
func (s *S3) RecordErasure(ctx context.Context, erasure Erasure) error {
	return s.erasures.record(ctx, erasure)
}

// Erased says whether record's crop or track was erased (see RecordErasure).
func (s *S3) Erased(ctx context.Context, record CropRecord) (bool, error) {
	return s.erasures.erased(ctx, record)
}

// Erasures returns every erasure recorded (see RecordErasure), oldest first: what a lookup server
// enforces again at start.
func (s *S3) Erasures(ctx context.Context) ([]Erasure, error) { return s.erasures.all(ctx) }

func (s *S3) listErasures(ctx context.Context, startAfter string) ([]string, error) {
	prefix := erasuresDir + "/"
	if startAfter != "" {
		startAfter = prefix + startAfter
	}
	keys, err := s.listAfter(ctx, prefix, false, startAfter)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(keys))
	for _, key := range keys {
		names = append(names, strings.TrimPrefix(key, prefix))
	}
	return names, nil
}

func (s *S3) writeErasure(ctx context.Context, name string, content []byte) error {
	key := erasuresDir + "/" + name
	_, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{ContentType: "application/json"})
	return err
}

// head reads the first headBytes of an object with a ranged GET; whole says it ended within them.
func (s *S3) head(ctx context.Context, key string) (data []byte, whole bool, err error) {
	options := minio.GetObjectOptions{}
	if err := options.SetRange(0, headBytes-1); err != nil {
		return nil, false, fmt.Errorf("crop store: %w", err)
	}
	data, err = s.get(ctx, key, options)
	return data, len(data) < headBytes, err
}

func (s *S3) read(ctx context.Context, key string) ([]byte, error) {
	return s.get(ctx, key, minio.GetObjectOptions{})
}

func (s *S3) get(ctx context.Context, key string, options minio.GetObjectOptions) ([]byte, error) {
	object, err := s.client.GetObject(ctx, s.bucket, key, options)
	if err != nil {
		return nil, fmt.Errorf("crop store: get %s: %w", key, err)
	}
	defer object.Close()
	data, err := io.ReadAll(object)
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path.Base(key))
	}
	if err != nil {
		return nil, fmt.Errorf("crop store: get %s: %w", key, err)
	}
	return data, nil
}

// Metadata reads a record without its image (the head of its object).
func (s *S3) Metadata(ctx context.Context, id string) (CropRecord, error) {
	return readMetadata(ctx, s, id)
}

// Image reads only the JPEG bytes of a crop.
func (s *S3) Image(ctx context.Context, id string) ([]byte, error) {
	record, err := readCrop(ctx, s, id)
	return record.JPEG, err
}

// Get reads a record with its image.
func (s *S3) Get(ctx context.Context, id string) (CropRecord, error) { return readCrop(ctx, s, id) }

// Delete removes a crop (an older store's metadata object first, so a half-deleted crop is
// invisible rather than imageless); deleting a missing crop is not an error.
func (s *S3) Delete(ctx context.Context, id string) error {
	imageKey, legacyKey, err := objectNames(id)
	if err != nil {
		return err
	}
	for _, key := range []string{legacyKey, imageKey} {
		if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchKey {
			return fmt.Errorf("crop store: delete %s: %w", key, err)
		}
	}
	return nil
}

// list returns the names directly under prefix: objects, and "folders" ending in "/".
func (s *S3) list(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	return s.listAfter(ctx, prefix, recursive, "")
}

// listAfter lists the keys under prefix that come after startAfter in name order ("" for all).
func (s *S3) listAfter(ctx context.Context, prefix string, recursive bool, startAfter string) ([]string, error) {
	var keys []string
	options := minio.ListObjectsOptions{Prefix: prefix, Recursive: recursive, StartAfter: startAfter}
	for object := range s.client.ListObjects(ctx, s.bucket, options) {
		if object.Err != nil {
			return nil, fmt.Errorf("crop store: list %s: %w", prefix, object.Err)
		}
		keys = append(keys, object.Key)
	}
	sort.Strings(keys)
	return keys, ctx.Err()
}

// Cameras lists the cameras that have crops, sorted.
func (s *S3) Cameras(ctx context.Context) ([]string, error) {
	folders, err := s.list(ctx, "", false)
	if err != nil {
		return nil, err
	}
	var cameras []string
	for _, folder := range folders {
		if camera, ok := strings.CutSuffix(folder, "/"); ok && validCamera(camera) {
			cameras = append(cameras, camera)
		}
	}
	return cameras, nil
}

// days lists a camera's day folders (YYYYMMDD), sorted.
func (s *S3) days(ctx context.Context, camera string) ([]string, error) {
	folders, err := s.list(ctx, camera+"/", false)
	if err != nil {
		return nil, err
	}
	var days []string
	for _, folder := range folders {
		day := path.Base(strings.TrimSuffix(folder, "/"))
		if _, err := time.Parse("20060102", day); err == nil && strings.HasSuffix(folder, "/") {
			days = append(days, day)
		}
	}
	return days, nil
}

// dayObjects lists one camera's day: the crops' ids (one per .jpg object) and every key, older
// stores' .json objects included.
func (s *S3) dayObjects(ctx context.Context, camera, day string, from time.Time) (ids, keys []string, err error) {
	prefix := camera + "/" + day + "/"
	startAfter := ""
	if !from.IsZero() {
		// The day's keys are in time order, so a walk from a time in the day lists from there
		// (with the second's margin that visitDay reads with).
		if from = from.UTC().Add(-time.Second); from.Format("20060102") == day {
			startAfter = prefix + idPrefix(camera, from)
		}
	}
	keys, err = s.listAfter(ctx, prefix, true, startAfter)
	if err != nil {
		return nil, nil, err
	}
	for _, key := range keys {
		if id, ok := strings.CutSuffix(path.Base(key), ".jpg"); ok {
			ids = append(ids, id)
		}
	}
	return ids, keys, nil
}

// Walk calls fn with the metadata of every complete record matching filter, in camera, then time
// (newest first with filter.Newest), then id order. fn returning an error stops the walk with
// that error.
func (s *S3) Walk(ctx context.Context, filter Filter, fn func(CropRecord) error) error {
	cameras, err := walkCameras(ctx, filter, s.Cameras)
	if err != nil {
		return err
	}
	for _, camera := range cameras {
		days, err := s.days(ctx, camera)
		if err != nil {
			return err
		}
		for _, day := range walkDays(days, filter) {
			ids, _, err := s.dayObjects(ctx, camera, day, filter.From)
			if err != nil {
				return err
			}
			if err := visitDay(ctx, camera, ids, filter, s.readMetadata, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// metadataReaders is how many objects' metadata Walk reads at once: each is a round trip, and a
// day of a busy camera holds tens of thousands.
const metadataReaders = 16

// readMetadata reads the records of crops, several at a time; records deleted since the listing
// (and an older store's crops whose metadata object is not there yet) are left out.
func (s *S3) readMetadata(ctx context.Context, ids []string) ([]CropRecord, error) {
	records := make([]CropRecord, len(ids))
	found := make([]bool, len(ids))
	errs := make([]error, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(metadataReaders, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				record, err := readMetadata(ctx, s, ids[i])
				if errors.Is(err, ErrNotFound) {
					continue
				}
				records[i], found[i], errs[i] = record, err == nil, err
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	kept := records[:0]
	for i, record := range records {
		if found[i] {
			kept = append(kept, record)
		}
	}
	return kept, nil
}

// removeAll deletes keys with multi-object deletes (up to 1,000 keys a request).
func (s *S3) removeAll(ctx context.Context, keys []string) error {
	objects := make(chan minio.ObjectInfo, len(keys))
	for _, key := range keys {
		objects <- minio.ObjectInfo{Key: key}
	}
	close(objects)
	for result := range s.client.RemoveObjects(ctx, s.bucket, objects, minio.RemoveObjectsOptions{}) {
		if result.Err != nil && minio.ToErrorResponse(result.Err).Code != minio.NoSuchKey {
			return fmt.Errorf("crop store: delete %s: %w", result.ObjectName, result.Err)
		}
	}
	return ctx.Err()
}

// DeleteBefore removes every crop whose time is before t and returns how many there were: every
// crop of the days before t's, and those of t's own day by the time in their ids.
func (s *S3) DeleteBefore(ctx context.Context, t time.Time) (int, error) {
	cameras, err := s.Cameras(ctx)
	if err != nil {
		return 0, err
	}
	return s.deleteBefore(ctx, cameras, t)
}

// DeleteCameraBefore is DeleteBefore for one camera's crops (a camera kept for less time than the
// others: retention.per_camera).
func (s *S3) DeleteCameraBefore(ctx context.Context, camera string, t time.Time) (int, error) {
	if !validCamera(camera) {
		return 0, fmt.Errorf("%w: camera %q", ErrInvalidID, camera)
	}
	return s.deleteBefore(ctx, []string{camera}, t)
}

func (s *S3) deleteBefore(ctx context.Context, cameras []string, t time.Time) (int, error) {
	t = t.UTC()
	cutoffDay := t.Format("20060102")
	deleted := 0
	for _, camera := range cameras {
		days, err := s.days(ctx, camera)
		if err != nil {
			return deleted, err
		}
		for _, day := range days {
			if day > cutoffDay {
				continue
			}
			_, keys, err := s.dayObjects(ctx, camera, day, time.Time{})
			if err != nil {
				return deleted, err
			}
			var legacy, images []string
			for _, key := range keys {
				name := path.Base(key)
				id := strings.TrimSuffix(strings.TrimSuffix(name, ".jpg"), ".json")
				if parsed, err := ParseID(id); err != nil || (day == cutoffDay && !parsed.Time.Before(t)) {
					continue
				}
				switch path.Ext(name) {
				case ".json":
					legacy = append(legacy, key)
				case ".jpg":
					images = append(images, key)
				}
			}
			// An older store's metadata first, as in Delete: an interrupted pass leaves crops
			// invisible, never imageless.
			if err := s.removeAll(ctx, legacy); err != nil {
				return deleted, err
			}
			if err := s.removeAll(ctx, images); err != nil {
				return deleted, err
			}
			deleted += len(images)
		}
	}
	return deleted, nil
}
