package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/backup"
	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/index/embedded"
	"github.com/reid-project/reid/ingest"
	"github.com/reid-project/reid/internal/lease"
	"github.com/reid-project/reid/lookup"
	"github.com/reid-project/reid/retention"
	"github.com/reid-project/reid/stream"
)

// newCheckCommand checks a site's configuration against the world before (or while) reid runs:
// what `reid run` would need, each part on its own line, without changing anything.
func newCheckCommand(g *globals) *cobra.Command {
	var timeout time.Duration
	command := &cobra.Command{
		Use:   "check",
		Short: "Check that the configuration works here: data dir, detector models, cameras, model, index, broker, lookup",
		Long: "Opens what reid run would open and reports each part on a line, ok or FAIL with the reason:\n" +
			"the data dir (writable, free space), the crop store, the detector models of every camera,\n" +
			"every camera (its first frame, within --timeout), the active model, the index, the broker and\n" +
			"the lookup server's API keys and address.\n" +
			"It changes nothing: no topic is created, no crop written. It exits 1 when a part fails.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			results := runChecks(cmd.Context(), options, timeout)
			if !printChecks(cmd.OutOrStdout(), results) {
				return errSilent
			}
			return nil
		},
	}
	command.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "how long a camera may take to deliver its first frame")
	return command
}

// checkResult is one line of `reid check`.
type checkResult struct {
	part   string
	detail string
	err    error
}

func printChecks(out io.Writer, results []checkResult) (allOK bool) {
	allOK = true
	for _, result := range results {
		if result.err != nil {
			allOK = false
			fmt.Fprintf(out, "FAIL  %-22s %v\n", result.part, result.err)
			continue
		}
		fmt.Fprintf(out, "ok    %-22s %s\n", result.part, result.detail)
	}
	return allOK
}

func runChecks(ctx context.Context, options config.Options, timeout time.Duration) []checkResult {
	results := []checkResult{checkDataDir(options.DataDir)}
	store, err := openCropStore(ctx, options)
	if err != nil {
		results = append(results, checkResult{part: "crop store", err: err})
	} else if _, err := store.Erased(ctx, cropstore.CropRecord{}); err != nil {
		// A record of erasures that cannot be read stops the archiver and the embedder.
		results = append(results, checkResult{part: "crop store", err: err})
	} else {
		results = append(results, checkResult{part: "crop store", detail: store.Location() + ", record of erasures readable"})
	}
	if len(options.Cameras) == 0 {
		results = append(results, checkResult{part: "cameras", err: errors.New("none configured (cameras: in the file)")})
	}
	results = append(results, checkDetectors(options)...)
	results = append(results, checkCameras(ctx, options.Cameras, options.Ingest.StallTimeout, timeout)...)
	results = append(results, checkModel(ctx, options), checkIndex(ctx, options), checkBroker(ctx, options))
	if store != nil {
		if result, found := checkBrokerPurge(ctx, options, store, time.Now()); found {
			results = append(results, result)
		}
	}
	results = append(results, checkLookup(options))
	switch {
	case options.Lookup.WatchServer == lookup.WatchServerElect:
		results = append(results, checkAdvertiseURL(ctx, options))
		if store != nil {
			results = append(results, checkElectedWatchServer(ctx, options, store, time.Now()))
		}
		// Any of the servers may be elected, and then delivers the webhooks.
		results = append(results, checkAlertWebhooks(ctx, options)...)
	case options.Lookup.WatchServer != "":
		// The watch server raises the alerts and delivers the webhooks.
		results = append(results, checkWatchServer(ctx, options.Lookup.WatchServer))
	default:
		results = append(results, checkAlertWebhooks(ctx, options)...)
	}
	if options.Ingest.FailoverGroup != "" && store != nil {
		results = append(results, checkFailoverGroup(ctx, options, store, time.Now()))
	}
	if options.Trainer.ValidationDir != "" {
		results = append(results, checkValidation(options.Trainer.ValidationDir))
	}
	if result, found := checkBackup(options.DataDir, backupSources(options).Crops, time.Now()); found {
		results = append(results, result)
	}
	return results
}

// checkBackup reports the data dir's last backup, once one has run: a failed one fails the check,
// and so does a newest backup whose record of erasures lacks some of the local crop store's in
// cropsDir ("" for a bucket, which keeps its own).
func checkBackup(dataDir, cropsDir string, now time.Time) (checkResult, bool) {
	result := checkResult{part: "backup"}
	status, found, err := backup.ReadStatus(dataDir)
	switch {
	case err != nil:
		result.err = err
		return result, true
	case !found:
		return result, false
	}
	last := "no backup has succeeded"
	if !status.LastSuccess.IsZero() {
		last = fmt.Sprintf("last success %s into %s (%s ago)", status.LastSuccess.Format(time.DateTime), status.LastSuccessDest,
			now.Sub(status.LastSuccess).Round(time.Minute))
	}
	if status.Error != "" {
		result.err = fmt.Errorf("the backup into %s at %s failed: %s; %s", status.Dest, status.Finished.Format(time.DateTime), status.Error, last)
		return result, true
	}
	result.detail = last
	if cropsDir == "" || status.LastSuccessDest == "" {
		return result, true
	}
	missing, _, err := backup.MissingErasures(dataDir, cropsDir)
	switch {
	case err != nil:
		result.detail += fmt.Sprintf("; its record of erasures cannot be compared: %v", err)
	case missing > 0:
		result.err = fmt.Errorf("the newest backup's record of erasures lacks %d made since (a restore from it would bring their crops back): run reid backup; %s", missing, last)
	}
	return result, true
}

// checkValidation reads the validation set that reid train --validate would, and counts the
// queries that can score a model: those with a match of their person in another camera.
func checkValidation(dir string) checkResult {
	result := checkResult{part: "validation set"}
	set, err := eval.Load(dir)
	if err != nil {
		result.err = err
		return result
	}
	cameras := map[int]map[int]bool{} // person -> cameras in the gallery
	for _, item := range set.Gallery {
		if cameras[item.PID] == nil {
			cameras[item.PID] = map[int]bool{}
		}
		cameras[item.PID][item.Camera] = true
	}
	usable, people := 0, map[int]bool{}
	for _, query := range set.Query {
		people[query.PID] = true
		for camera := range cameras[query.PID] {
			if camera != query.Camera {
				usable++
				break
			}
		}
	}
	if usable == 0 {
		result.err = fmt.Errorf("%s: no query has a match of its person in another camera, so it cannot score a model", dir)
		return result
	}
	result.detail = fmt.Sprintf("%s: %d people, %d queries with a match in another camera", dir, len(people), usable)
	return result
}

// checkAlertWebhook connects to the webhook's host without sending anything: a test alert would
// reach the application as a real one.
func checkAlertWebhook(ctx context.Context, part, webhook string) checkResult {
	result := checkResult{part: part}
	parsed, err := url.Parse(webhook)
	if err != nil {
		result.err = err
		return result
	}
	host := parsed.Host
	if parsed.Port() == "" {
		host = net.JoinHostPort(parsed.Hostname(), map[string]string{"http": "80", "https": "443"}[parsed.Scheme])
	}
	dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	connection, err := (&net.Dialer{}).DialContext(dialCtx, "tcp", host)
	if err != nil {
		result.err = fmt.Errorf("%s: cannot connect, alerts would wait: %w", config.MaskURLCredentials(webhook), err)
		return result
	}
	connection.Close()
	result.detail = config.MaskURLCredentials(webhook) + ": reachable"
	return result
}

// brokerPurgeOverdue is how long after an erasure its crops may still be readable in the broker
// before reid check calls it a failure: the purge waits retention.PurgeSettle, then for the
// consumer groups, which at a healthy site have long taken them.
const brokerPurgeOverdue = 15 * time.Minute

// checkBrokerPurge says whether the broker still serves crops from before the newest erasure
// (retention.PurgeBroker deletes them once every consumer group has taken them). It has nothing
// to say without erasures, or when the broker cannot be reached (the broker line says why).
func checkBrokerPurge(ctx context.Context, options config.Options, record retention.ErasureRecord, now time.Time) (checkResult, bool) {
	erasures, err := record.Erasures(ctx)
	if err != nil || len(erasures) == 0 {
		return checkResult{}, false
	}
	var newest time.Time
	for _, erasure := range erasures {
		if erasure.Time.After(newest) {
			newest = erasure.Time
		}
	}
	conn, _ := checkedBrokers(options)
	purger, err := stream.NewPurger(conn, options.Stream.CropsTopic)
	if err != nil {
		return checkResult{}, false
	}
	defer purger.Close()
	askCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	readable, behind, err := purger.Readable(askCtx, newest.Add(retention.PurgeSettle))
	if err != nil {
		return checkResult{}, false
	}
	result := checkResult{part: "broker after erasures"}
	waitingFor := "no consumer group has taken them yet"
	if len(behind) > 0 {
		waitingFor = "waiting for consumer groups " + strings.Join(behind, ", ")
	}
	at := newest.UTC().Format(time.RFC3339)
	switch {
	case readable == 0:
		result.detail = "nothing from before the newest erasure (" + at + ") is readable"
	case now.Sub(newest) < brokerPurgeOverdue:
		result.detail = fmt.Sprintf("%d records from before the erasure of %s are still readable, %s; reid run or reid archive deletes them once taken", readable, at, waitingFor)
	default:
		result.err = fmt.Errorf("%d records from before the erasure of %s are still readable %s later, %s: is reid run or reid archive running?",
			readable, at, now.Sub(newest).Round(time.Minute), waitingFor)
	}
	return result, true
}

// checkAdvertiseURL resolves the host of the URL this lookup server gives the others to forward
// watch requests to, should it be elected: a name that does not resolve here is unlikely to on
// the other machines.
func checkAdvertiseURL(ctx context.Context, options config.Options) checkResult {
	result := checkResult{part: "advertise url"}
	lookupConfig, err := lookup.ConfigFrom(options.Lookup)
	if err != nil {
		result.err = err
		return result
	}
	parsed, err := url.Parse(lookupConfig.AdvertiseURL)
	if err != nil {
		result.err = err
		return result
	}
	resolveCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(resolveCtx, parsed.Hostname()); err != nil {
		result.err = fmt.Errorf("%s: %v; the other lookup servers could not forward to this one if it were elected: set lookup.advertise_url", lookupConfig.AdvertiseURL, err)
		return result
	}
	result.detail = lookupConfig.AdvertiseURL + ": where the others forward the watches should this server be elected"
	return result
}

// checkAlertWebhooks asks each configured alert webhook whether it is up.
func checkAlertWebhooks(ctx context.Context, options config.Options) []checkResult {
	var results []checkResult
	if options.Lookup.AlertWebhook != "" {
		results = append(results, checkAlertWebhook(ctx, "alert webhook", options.Lookup.AlertWebhook))
	}
	for _, scope := range options.Lookup.ScopedAPIKeys {
		if scope.AlertWebhook != "" {
			results = append(results, checkAlertWebhook(ctx, "alert webhook "+scope.Name, scope.AlertWebhook))
		}
	}
	return results
}

// staleLease is how long ago a lease may have been renewed before `reid check` says nobody holds
// it: the lease's period, and room for the holder's clock to differ from ours.
const staleLease = time.Minute

// checkElectedWatchServer reads the lease of the elected watch server (lookup.watch_server: elect)
// and asks the server it names whether it is up.
func checkElectedWatchServer(ctx context.Context, options config.Options, store lookup.CropStore, now time.Time) checkResult {
	result := checkResult{part: "watch server"}
	local, folder, err := watchStores(options, store)
	if err != nil {
		result.err = err
		return result
	}
	var watches lookup.WatchStore = local
	if folder != nil {
		watches = folder
	}
	claim, err := lookup.ReadWatchLease(ctx, watches)
	if result.err = leaseHeld(claim, err, now, "none elected yet in "+watches.Location(), "the watches",
		"is a lookup server with lookup.watch_server: elect running?"); result.err != nil {
		return result
	}
	result = checkWatchServer(ctx, claim.URL)
	if result.err == nil {
		result.detail = fmt.Sprintf("%s, elected (lease renewed %s ago): up", claim.URL, max(0, now.Sub(claim.Renewed)).Round(time.Second))
	}
	return result
}

// checkFailoverGroup reads the lease of this ingest process's failover group
// (ingest.failover_group) and names the process that runs the group's cameras.
func checkFailoverGroup(ctx context.Context, options config.Options, store lookup.CropStore, now time.Time) checkResult {
	group := options.Ingest.FailoverGroup
	result := checkResult{part: "failover group " + group}
	leases, err := leaseStore(options, store)
	if err != nil {
		result.err = err
		return result
	}
	claim, err := lease.Read(ctx, leases, ingestFailoverLease(group))
	if result.err = leaseHeld(claim, err, now, "no process of the group has run the cameras yet", "the cameras",
		"is a reid ingest with ingest.failover_group: "+group+" running?"); result.err == nil {
		result.detail = fmt.Sprintf("the cameras run in %s (lease renewed %s ago)", claim.URL, max(0, now.Sub(claim.Renewed)).Round(time.Second))
	}
	return result
}

// leaseHeld says why claim (read with err) has no live holder at now, or nil when it has one:
// none is what to say when nobody ever held it, what the holder keeps, and hint what to look at.
func leaseHeld(claim lease.Claim, err error, now time.Time, none, what, hint string) error {
	age := now.Sub(claim.Renewed).Round(time.Second)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %s", none, hint)
	case err != nil:
		return err
	case claim.Released:
		return fmt.Errorf("%s gave %s up %s ago and nobody has taken them over: %s", claim.URL, what, age, hint)
	case age > staleLease:
		return fmt.Errorf("%s last renewed its lease %s ago: it has stopped, and nobody has taken %s over", claim.URL, age, what)
	}
	return nil
}

// checkWatchServer asks the lookup server that keeps the watches (lookup.watch_server) whether it
// is up: this one forwards every watch and alert request to it.
func checkWatchServer(ctx context.Context, watchServer string) checkResult {
	result := checkResult{part: "watch server"}
	askCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	base := strings.TrimSuffix(watchServer, "/")
	request, err := http.NewRequestWithContext(askCtx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		result.err = err
		return result
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		result.err = fmt.Errorf("%s: cannot be reached, so watches and alerts are unavailable here: %w", config.MaskURLCredentials(base), err)
		return result
	}
	response.Body.Close()
	if response.StatusCode != http.StatusOK {
		result.err = fmt.Errorf("%s/healthz answered %s: is it a reid lookup server?", config.MaskURLCredentials(base), response.Status)
		return result
	}
	result.detail = config.MaskURLCredentials(base) + ": up; this server forwards watches and alerts to it"
	return result
}

// checkLookup applies the lookup server's own rules for API keys and exposure to its address.
func checkLookup(options config.Options) checkResult {
	result := checkResult{part: "lookup " + options.Lookup.Addr}
	lookupConfig, err := lookup.ConfigFrom(options.Lookup)
	if err == nil {
		err = lookup.ExposureError(options.Lookup.Addr, lookupConfig)
	}
	switch {
	case err != nil:
		result.err = err
	case len(lookupConfig.APIKeys)+len(lookupConfig.AdminAPIKeys)+len(lookupConfig.ScopedAPIKeys) > 0:
		result.detail = fmt.Sprintf("%d API keys, %d admin keys", len(lookupConfig.APIKeys), len(lookupConfig.AdminAPIKeys))
		result.detail += describeScopes(lookupConfig.ScopedAPIKeys, options.Cameras)
	case lookup.IsLoopback(options.Lookup.Addr):
		result.detail = "no API keys: this machine only"
	default:
		result.detail = "no API keys and allow_unauthenticated: anyone who reaches it can search"
	}
	return result
}

// describeScopes says what each key scope sees, and which of its cameras this configuration does
// not run (a typo, or a camera another machine's reid ingest runs).
func describeScopes(scopes []lookup.KeyScope, cameras []config.Camera) string {
	var text strings.Builder
	for _, scope := range scopes {
		fmt.Fprintf(&text, "; scope %s: %d keys, cameras %s", scope.Name, len(scope.Keys), strings.Join(scope.Cameras, ", "))
		if len(cameras) == 0 {
			continue
		}
		var unknown []string
		for _, camera := range scope.Cameras {
			if !slices.ContainsFunc(cameras, func(configured config.Camera) bool { return configured.ID == camera }) {
				unknown = append(unknown, camera)
			}
		}
		if len(unknown) > 0 {
			fmt.Fprintf(&text, " (not in cameras: %s)", strings.Join(unknown, ", "))
		}
	}
	return text.String()
}

func checkDataDir(dir string) checkResult {
	result := checkResult{part: "data dir"}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		result.err = err
		return result
	}
	probe, err := os.CreateTemp(dir, ".reid-check-*")
	if err != nil {
		result.err = fmt.Errorf("not writable: %w", err)
		return result
	}
	probe.Close()
	os.Remove(probe.Name())
	free, err := freeBytes(dir)
	if err != nil {
		result.detail = dir + ": writable"
		return result
	}
	result.detail = fmt.Sprintf("%s: writable, %.1f GB free", dir, float64(free)/1e9)
	return result
}

// freeBytes is the space an unprivileged process may still write on dir's file system.
func freeBytes(dir string) (uint64, error) {
	var stat syscall.Statfs_t
	if err := syscall.Statfs(dir, &stat); err != nil {
		return 0, err
	}
	return stat.Bavail * uint64(stat.Bsize), nil
}

// checkDetectors loads each distinct detector the cameras use (the global one, with each
// camera's overrides).
func checkDetectors(options config.Options) []checkResult {
	modelsDir := detectorModelsDir(options)
	seen := map[config.Detector]bool{}
	var results []checkResult
	for _, camera := range options.Cameras {
		settings := options.Detector.WithOverrides(camera.Detector)
		if seen[settings] {
			continue
		}
		seen[settings] = true
		result := checkResult{part: "detector " + settings.Model, detail: "loads from " + modelsDir}
		loaded, err := newDetector(settings, modelsDir)
		if err != nil {
			result.err = err
		} else {
			loaded.Close()
		}
		results = append(results, result)
	}
	return results
}

// checkCameras probes every camera at once, so a site of many cameras takes one timeout at most.
func checkCameras(ctx context.Context, cameras []config.Camera, stallTimeout, timeout time.Duration) []checkResult {
	results := make([]checkResult, len(cameras))
	var probes sync.WaitGroup
	for i, camera := range cameras {
		probes.Go(func() {
			probeCtx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			result := checkResult{part: "camera " + camera.ID}
			probed, err := ingest.Probe(probeCtx, camera, stallTimeout)
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%s: no frame within %s", config.MaskURLCredentials(camera.Source), timeout)
			}
			result.err = err
			result.detail = fmt.Sprintf("%s, %dx%d, first frame after %.1fs", probed.Kind, probed.Width, probed.Height, probed.FirstFrame.Seconds())
			// The masks in pixels of this camera's frames: what the operator can hold against a
			// snapshot of the view.
			for _, region := range camera.PrivacyMasks {
				area := region.Pixels(probed.Width, probed.Height)
				result.detail += fmt.Sprintf(", masked %d,%d-%d,%d", area.Min.X, area.Min.Y, area.Max.X, area.Max.Y)
			}
			results[i] = result
		})
	}
	probes.Wait()
	return results
}

func checkModel(ctx context.Context, options config.Options) checkResult {
	result := checkResult{part: "model"}
	loaded, err := openModel(ctx, options, options.Embedder.Model)
	if err != nil {
		result.err = err
		return result
	}
	defer loaded.Close()
	result.detail = fmt.Sprintf("%s (%s, %d-d) on %s", loaded.version.ID, loaded.version.Arch, loaded.version.Dim, loaded.device.Name())
	return result
}

func checkIndex(ctx context.Context, options config.Options) checkResult {
	result := checkResult{part: "index " + options.Index.Backend}
	vectors, err := openIndex(ctx, options)
	if errors.Is(err, embedded.ErrLocked) {
		result.detail = "open in a running reid process"
		return result
	}
	if err != nil {
		result.err = err
		return result
	}
	defer vectors.Close()
	active, err := vectors.Active(ctx)
	if err != nil {
		result.detail = "no active gallery yet (reid run fills one)"
		return result
	}
	count, err := vectors.Count(ctx, active.Name)
	if err != nil {
		result.err = err
		return result
	}
	result.detail = fmt.Sprintf("active gallery %s, %d vectors", active.Name, count)
	return result
}

// checkedBrokers is the connection reid check asks: the configured brokers, or, with none, the
// embedded broker a running reid serves on stream.embedded_addr (embedded says which).
func checkedBrokers(options config.Options) (conn stream.Connection, embedded bool) {
	brokers := options.Stream.Brokers
	if len(brokers) == 0 {
		brokers, embedded = []string{options.Stream.EmbeddedAddr}, true
	}
	return stream.ConnectionFrom(options.Stream, brokers), embedded
}

// checkBroker asks the configured brokers, or an embedded broker a running reid serves, for the
// crops topics, creating nothing.
func checkBroker(ctx context.Context, options config.Options) checkResult {
	result := checkResult{part: "broker"}
	conn, embeddedBroker := checkedBrokers(options)
	brokers := conn.Brokers
	if embeddedBroker {
		result.part = "broker embedded"
	}
	askCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	partitions, err := stream.TopicPartitions(askCtx, conn, options.Stream.CropsTopic, options.Stream.DLQTopic)
	switch {
	case err != nil && embeddedBroker:
		result.detail = "not running; reid run starts it, data under " + filepath.Join(options.DataDir, "broker")
	case err != nil:
		result.err = err
	default:
		result.detail = fmt.Sprintf("%v: %s %d partitions, %s %d", brokers, options.Stream.CropsTopic, partitions[options.Stream.CropsTopic],
			options.Stream.DLQTopic, partitions[options.Stream.DLQTopic])
		if partitions[options.Stream.CropsTopic] == 0 {
			result.detail += " (the topics are created at the first start)"
		}
	}
	return result
}
