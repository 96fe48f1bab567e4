package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/lookup"
)

func newAuditCommand(g *globals) *cobra.Command {
	var (
		since, until, key, scope, route, crop string
		asJSON                                bool
	)
	command := &cobra.Command{
		Use:   "audit [FILE...] [--since T] [--until T] [--key ID] [--scope NAME] [--route TEXT] [--crop ID] [--json]",
		Short: "Answer who asked the lookup API what: read the audit log, filtered",
		Long: `Reads the lookup server's audit log (lookup.audit_log, default <data_dir>/audit.log), or the
files named (rotated ones too, .gz included), and prints the records that match every filter:
--key (a key id as the log writes it), --scope (the requests of a scoped key's scope, from
lookup.scoped_api_keys; the KEY column shows a scoped key as key-.../SCOPE), --route (a part of the route, such as erasures or watches),
--crop (every request that named the crop: a search from it, a watch, an erasure, a label), and the
time range. It answers a data-protection officer's questions: who searched from this person's crop,
what did this key do last month, which erasures were made and why.`,
		RunE: func(cmd *cobra.Command, files []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			from, to, err := parseTimeRange("audit", since, until)
			if err != nil {
				return err
			}
			if len(files) == 0 {
				files = []string{auditLogPath(options)}
			}
			filter := func(record lookup.AuditRecord, line string) bool {
				switch {
				case !from.IsZero() && record.Time.Before(from), !to.IsZero() && record.Time.After(to):
					return false
				case key != "" && record.Key != key:
					return false
				case scope != "" && record.Scope != scope:
					return false
				case route != "" && !strings.Contains(record.Route, route):
					return false
				case crop != "" && !strings.Contains(line, `"`+crop+`"`):
					return false
				}
				return true
			}
			out := cmd.OutOrStdout()
			table := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(table, "TIME\tKEY\tREMOTE\tROUTE\tSTATUS\tRESULTS\tPARAMETERS")
			}
			matched := 0
			for _, file := range files {
				err := readAudit(file, func(record lookup.AuditRecord, line string) {
					if !filter(record, line) {
						return
					}
					matched++
					if asJSON {
						fmt.Fprintln(out, line)
						return
					}
					results := "-"
					if record.Results >= 0 {
						results = fmt.Sprint(record.Results)
					}
					parameters, _ := json.Marshal(record.Params)
					who := record.Key
					if record.Scope != "" {
						who += "/" + record.Scope
					}
					fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", record.Time.UTC().Format(time.RFC3339), who, record.Remote,
						record.Route, record.Status, results, truncateText(string(parameters), 160))
				})
				if err != nil {
					return err
				}
			}
			if asJSON {
				return nil
			}
			if err := table.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(out, "%d records\n", matched)
			return nil
		},
	}
	flags := command.Flags()
	flags.StringVar(&since, "since", "", "records from this time on (RFC 3339, or a duration ago: 720h)")
	flags.StringVar(&until, "until", "", "records before this time (RFC 3339, or a duration ago)")
	flags.StringVar(&key, "key", "", "only this key id (as the log writes it, key-...)")
	flags.StringVar(&scope, "scope", "", "only the requests of this key scope's keys (lookup.scoped_api_keys)")
	flags.StringVar(&route, "route", "", "only routes containing this text (erasures, watches, search)")
	flags.StringVar(&crop, "crop", "", "only requests that named this crop id")
	flags.BoolVar(&asJSON, "json", false, "print the matching records as the log holds them (JSON lines)")
	return command
}

// readAudit calls fn with every record of an audit log file, gzip-compressed or not. A line that
// is not a record (a crash mid-write) is reported and skipped: the rest of the log still counts.
func readAudit(path string, fn func(record lookup.AuditRecord, line string)) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer file.Close()
	var reader io.Reader = file
	if strings.HasSuffix(path, ".gz") {
		unzipped, err := gzip.NewReader(file)
		if err != nil {
			return fmt.Errorf("audit: %s: %w", path, err)
		}
		defer unzipped.Close()
		reader = unzipped
	}
	scanner := bufio.NewScanner(reader)
	scanner.Buffer(make([]byte, 64<<10), 4<<20) // an erasure's record lists its crop ids
	for number := 1; scanner.Scan(); number++ {
		line := scanner.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		var record lookup.AuditRecord
		if err := json.Unmarshal([]byte(line), &record); err != nil {
			slog.Warn("audit: a line that is not a record is skipped", "file", path, "line", number, "err", err)
			continue
		}
		fn(record, line)
	}
	if err := scanner.Err(); err != nil {
		return fmt.Errorf("audit: %s: %w", path, err)
	}
	return nil
}

func truncateText(text string, n int) string {
	if len(text) <= n {
		return text
	}
	return text[:n-3] + "..."
}
