package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/backup"
	"github.com/reid-project/reid/config"
)

func newBackupCommand(g *globals) *cobra.Command {
	var asJSON bool
	command := &cobra.Command{
		Use:   "backup DIR [--json]",
		Short: "Copy the index, crops, models, watches, validation set and audit log into DIR while reid runs",
		Long: `Backup copies what this machine keeps into DIR, laid out as a data dir: restoring is stopping reid
and pointing data_dir at DIR (or copying DIR's contents back). reid may go on running meanwhile:
the embedded index is copied as of one moment (its newest snapshot and the logs after it), the
index before the crops so the copied vectors' crops are copied too, and the validation set under its
lock. Run again into the same DIR, it copies only new or changed files and removes what is gone
from the source (pruned or erased crops, deleted watches), so DIR stays a mirror; keep several
DIRs (one per weekday, say) for older states. The lookup server copies each erasure into the
record of erasures of the newest backup as it is made, so that restoring that backup erases the
person's crops again, and no backup removes a file from that record. A Milvus index and an S3 crop store are left to
their own backups (reid index backfill rebuilds a gallery from the crops); the broker's crops in
flight are not copied.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			parts, err := backup.Run(cmd.Context(), backupSources(options), args[0])
			dest, _ := filepath.Abs(args[0])
			// Recorded in the data dir either way, for /metrics and reid check to report.
			if recordErr := backup.RecordStatus(options.DataDir, dest, time.Now(), parts, err); recordErr != nil {
				slog.Warn("backup: status not recorded; /metrics and reid check will not show this backup", "err", recordErr)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{"dir": args[0], "parts": parts})
			}
			table := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(table, "PART\tCOPIED\tMB\tUNCHANGED\tREMOVED\tNOTE")
			for _, part := range parts {
				fmt.Fprintf(table, "%s\t%d\t%.1f\t%d\t%d\t%s\n", part.Name, part.Copied, float64(part.Bytes)/1e6, part.Unchanged, part.Removed, part.Skipped)
			}
			return table.Flush()
		},
	}
	command.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return command
}

// backupSources says where each part of a backup lives under this configuration.
func backupSources(options config.Options) backup.Sources {
	sources := backup.Sources{
		Models:     filepath.Join(options.DataDir, "models"),
		Watches:    filepath.Join(options.DataDir, "watches"),
		Validation: validationDir(options, ""),
		AuditLog:   auditLogPath(options),
		Skipped:    map[string]string{},
	}
	if options.Index.Backend == "embedded" {
		sources.Index = filepath.Join(options.DataDir, "index")
	} else {
		sources.Skipped["index"] = "Milvus: back it up with Milvus's own tools, or rebuild with reid index backfill"
	}
	if options.CropStore.Backend == "local" {
		sources.Crops = filepath.Join(options.DataDir, "crops")
	} else {
		sources.Skipped["crops"] = "S3: use the bucket's versioning or replication"
	}
	return sources
}
