package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/stream"
)

// deadLetterFilter selects dead letters by the flags the dlq subcommands share.
type deadLetterFilter struct {
	reasons, groups, crops []string
	since, until           string
	from, to               time.Time
}

func (f *deadLetterFilter) register(command *cobra.Command) {
	flags := command.Flags()
	flags.StringSliceVar(&f.reasons, "reason", nil, "only these reasons (bad-jpeg, rejected, unknown-version, truncated, corrupt, invalid-record, not-crop-record); repeatable")
	flags.StringSliceVar(&f.groups, "group", nil, "only what this consumer group gave up on (reid-embedder, reid-archiver); repeatable")
	flags.StringSliceVar(&f.crops, "crop", nil, "only this crop id; repeatable")
	flags.StringVar(&f.since, "since", "", "only what was dead-lettered from this time on (RFC 3339, or a duration ago: 24h)")
	flags.StringVar(&f.until, "until", "", "only what was dead-lettered before this time (RFC 3339, or a duration ago)")
}

func (f *deadLetterFilter) parse() (err error) {
	f.from, f.to, err = parseTimeRange("dlq", f.since, f.until)
	return err
}

func (f *deadLetterFilter) matches(letter deadLetterEntry) bool {
	switch {
	case len(f.reasons) > 0 && !slices.Contains(f.reasons, letter.Reason),
		len(f.groups) > 0 && !slices.Contains(f.groups, letter.Group),
		len(f.crops) > 0 && !slices.Contains(f.crops, letter.CropID),
		!f.from.IsZero() && letter.Time.Before(f.from),
		!f.to.IsZero() && !letter.Time.Before(f.to):
		return false
	}
	return true
}

// deadLetterEntry is one DLQ record as the dlq subcommands show it.
type deadLetterEntry struct {
	letter stream.DeadLetter
	// Parsed is false for a record in the DLQ topic without the DLQ headers (written by
	// something other than reid); such records cannot be replayed.
	Parsed bool `json:"parsed"`
	// CropID and Camera come from the record itself when it still decodes, and with it the
	// record, for the record of erasures.
	record       *cropstore.CropRecord
	CropID       string    `json:"crop_id,omitempty"`
	Camera       string    `json:"camera,omitempty"`
	Reason       string    `json:"reason"`
	ErrorText    string    `json:"error,omitempty"`
	Group        string    `json:"group,omitempty"`
	Time         time.Time `json:"time"`
	Source       string    `json:"source,omitempty"` // topic/partition/offset it was read from
	Position     string    `json:"dlq"`              // its own place in the DLQ
	ReplayedFrom string    `json:"replayed_from,omitempty"`
}

func newDeadLetterEntry(letter stream.DeadLetter, parseErr error) deadLetterEntry {
	entry := deadLetterEntry{letter: letter, Parsed: parseErr == nil, Reason: letter.Reason, ErrorText: letter.Error,
		Group: letter.Group, Time: letter.Time, Camera: string(letter.Key),
		Position: letter.DLQTopic + "/" + strconv.Itoa(letter.DLQPartition) + "/" + strconv.FormatInt(letter.DLQOffset, 10)}
	if parseErr != nil {
		entry.Reason, entry.ErrorText = "no-dlq-headers", parseErr.Error()
		return entry
	}
	if letter.Topic != "" {
		entry.Source = letter.Topic + "/" + strconv.Itoa(letter.Partition) + "/" + strconv.FormatInt(letter.Offset, 10)
	}
	if record, err := stream.Decode(letter.Value); err == nil {
		entry.CropID, entry.Camera = record.ID, record.Camera
		record.JPEG = nil
		entry.record = &record
	}
	for _, header := range letter.Headers {
		if header.Key == stream.HeaderReplayedFrom {
			entry.ReplayedFrom = string(header.Value)
		}
	}
	return entry
}

// loadDeadLetters reads the whole DLQ, through the configured brokers or the embedded broker
// (the running one, or one started on the data dir), and returns the entries the filter keeps.
func loadDeadLetters(ctx context.Context, options config.Options, filter *deadLetterFilter) ([]deadLetterEntry, stream.Connection, func(), error) {
	if err := filter.parse(); err != nil {
		return nil, stream.Connection{}, nil, err
	}
	cluster, err := stream.Attach(ctx, options.Stream, options.DataDir, nil)
	if err != nil {
		return nil, stream.Connection{}, nil, err
	}
	var entries []deadLetterEntry
	err = stream.ReadDeadLetters(ctx, cluster.Conn, options.Stream.DLQTopic, func(letter stream.DeadLetter, parseErr error) error {
		if entry := newDeadLetterEntry(letter, parseErr); filter.matches(entry) {
			entries = append(entries, entry)
		}
		return nil
	})
	if err != nil {
		cluster.Close()
		return nil, stream.Connection{}, nil, err
	}
	return entries, cluster.Conn, cluster.Close, nil
}

// newDLQCommand lets an operator see what went to the dead-letter topic and send it back once
// the cause is fixed (a newer build that reads a newer record version, a handler bug).
func newDLQCommand(g *globals) *cobra.Command {
	command := &cobra.Command{
		Use:   "dlq",
		Short: "List the dead-letter topic's records, replay them into the crops topic, or purge them",
		Long: `Records that a consumer could not process go to stream.dlq_topic with the reason in headers
(docs/WIRE.md). These commands read that topic through stream.brokers, or through the embedded
broker: the one a running reid run or reid broker serves on stream.embedded_addr, or, with the
pipeline stopped, one started on the data dir.`,
	}
	command.AddCommand(newDLQListCommand(g), newDLQReplayCommand(g), newDLQPurgeCommand(g))
	return command
}

func newDLQListCommand(g *globals) *cobra.Command {
	var filter deadLetterFilter
	var asJSON bool
	command := &cobra.Command{
		Use:   "list [--reason R] [--group G] [--since T] [--until T] [--json]",
		Short: "Show the dead letters, oldest first, and how many there are by reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			entries, _, closeCluster, err := loadDeadLetters(cmd.Context(), options, &filter)
			if err != nil {
				return err
			}
			defer closeCluster()
			out := cmd.OutOrStdout()
			if asJSON {
				encoder := json.NewEncoder(out)
				for _, entry := range entries {
					if err := encoder.Encode(entry); err != nil {
						return err
					}
				}
				return nil
			}
			return printDeadLetters(out, entries)
		},
	}
	filter.register(command)
	command.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line instead of a table")
	return command
}

func printDeadLetters(out io.Writer, entries []deadLetterEntry) error {
	table := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "TIME\tGROUP\tREASON\tCAMERA\tCROP\tSOURCE\tERROR")
	counts := map[string]int{}
	for _, entry := range entries {
		counts[entry.Reason]++
		when := "-"
		if !entry.Time.IsZero() {
			when = entry.Time.UTC().Format(time.RFC3339)
		}
		text := entry.ErrorText
		if len(text) > 80 {
			text = text[:77] + "..."
		}
		if entry.ReplayedFrom != "" {
			text = "(after a replay) " + text
		}
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", when, orDash(entry.Group), entry.Reason, orDash(entry.Camera),
			orDash(entry.CropID), orDash(entry.Source), text)
	}
	if err := table.Flush(); err != nil {
		return err
	}
	reasons := make([]string, 0, len(counts))
	for reason := range counts {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	parts := make([]string, len(reasons))
	for i, reason := range reasons {
		parts[i] = fmt.Sprintf("%s %d", reason, counts[reason])
	}
	_, err := fmt.Fprintf(out, "%d dead letters", len(entries))
	if len(parts) > 0 {
		_, err = fmt.Fprintf(out, ": %s", strings.Join(parts, ", "))
	}
	fmt.Fprintln(out)
	return err
}

func orDash(value string) string {
	if value == "" {
		return "-"
	}
	return value
}

func newDLQReplayCommand(g *globals) *cobra.Command {
	var filter deadLetterFilter
	var dryRun bool
	command := &cobra.Command{
		Use:   "replay [--reason R] [--group G] [--crop ID] [--since T] [--until T] [--dry-run]",
		Short: "Write the selected dead letters back to the topic they came from, for every consumer to try again",
		Long: `Replay sends the selected dead letters back to their source topic (normally the crops topic)
with their original key, value and headers, once per original record even where both the
embedder and the archiver gave up on it. Run it after fixing the cause: a record that still
fails goes to the DLQ again, marked as replayed. Consumers write by crop id, so a record that
one of them had handled is only handled again. The DLQ keeps its records (until the topic's
retention), so select with --since to avoid replaying the same ones twice. Dead letters of crops
erased on request since (the crop store's record of erasures) are not sent back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			// The crop store's record of erasures: a dead letter of a crop erased since is not
			// sent back (the stages would drop it anyway).
			store, err := openCropStore(ctx, options)
			if err != nil {
				return err
			}
			entries, conn, closeCluster, err := loadDeadLetters(ctx, options, &filter)
			if err != nil {
				return err
			}
			defer closeCluster()
			seen := map[string]bool{}
			var letters []stream.DeadLetter
			skipped, erased := 0, 0
			for _, entry := range entries {
				if !entry.Parsed || entry.Source == "" {
					skipped++
					continue
				}
				if seen[entry.Source] {
					continue // dead-lettered by more than one group: one replay reaches them all
				}
				seen[entry.Source] = true
				if entry.record != nil {
					gone, err := store.Erased(ctx, *entry.record)
					if err != nil {
						return err
					}
					if gone {
						erased++
						continue
					}
				}
				letters = append(letters, entry.letter)
			}
			out := cmd.OutOrStdout()
			summary := fmt.Sprintf("%d records (%d dead letters selected, %d without a source to replay to, %d erased on request)", len(letters), len(entries), skipped, erased)
			if dryRun {
				_, err := fmt.Fprintln(out, "would replay "+summary)
				return err
			}
			if err := stream.Replay(ctx, conn, letters); err != nil {
				return err
			}
			_, err = fmt.Fprintln(out, "replayed "+summary)
			return err
		},
	}
	filter.register(command)
	command.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be replayed and write nothing")
	return command
}

// newDLQPurgeCommand deletes dead letters from the broker. Nothing consumes the DLQ, so nothing
// deletes what it holds before the topic's retention: not a dead letter that was replayed, nor
// one of a crop erased on request since.
func newDLQPurgeCommand(g *globals) *cobra.Command {
	var until string
	var dryRun bool
	command := &cobra.Command{
		Use:   "purge --until T [--dry-run]",
		Short: "Delete the dead letters written before a time from the broker",
		Long: `Purge deletes from the broker every dead letter written to stream.dlq_topic before --until
(RFC 3339, or a duration ago), with Kafka's DeleteRecords: replayed ones, ones whose cause will not
be fixed, and, after an erasure request, the dead letters of crops erased on request, which the
crops topic's purge cannot reach (docs/OPERATIONS.md, "Erasure requests"). --dry-run counts them,
and how many are of erased crops, and deletes nothing. What goes cannot be replayed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if until == "" {
				return fmt.Errorf("name --until: the dead letters written before it are deleted (--dry-run first says how many)")
			}
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			filter := deadLetterFilter{until: until}
			entries, conn, closeCluster, err := loadDeadLetters(ctx, options, &filter)
			if err != nil {
				return err
			}
			defer closeCluster()
			store, err := openCropStore(ctx, options)
			if err != nil {
				return err
			}
			erased := 0
			for _, entry := range entries {
				if entry.record == nil {
					continue
				}
				gone, err := store.Erased(ctx, *entry.record)
				if err != nil {
					return err
				}
				if gone {
					erased++
				}
			}
			out := cmd.OutOrStdout()
			at := filter.to.UTC().Format(time.RFC3339)
			if dryRun {
				_, err := fmt.Fprintf(out, "would delete the %d dead letters written before %s (%d of crops erased on request)\n", len(entries), at, erased)
				return err
			}
			purger, err := stream.NewPurger(conn, options.Stream.DLQTopic)
			if err != nil {
				return err
			}
			defer purger.Close()
			deleted, err := purger.DeleteBefore(ctx, filter.to)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(out, "deleted %d dead letters written before %s (%d of crops erased on request)\n", deleted, at, erased)
			return err
		},
	}
	command.Flags().StringVar(&until, "until", "", "delete what was dead-lettered before this time (RFC 3339, or a duration ago: 24h)")
	command.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be deleted and delete nothing")
	return command
}
