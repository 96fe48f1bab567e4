package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
)

// errSilent ends the program with exit status 1 after the command has already reported why.
var errSilent = errors.New("reported")

// globals are the flags every subcommand shares; load turns them into config.Options.
type globals struct {
	configFile string
	dataDir    string
	sharedDir  string
	logLevel   string
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "reid",
		Short:         "Streaming person re-identification across many cameras",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	flags := root.PersistentFlags()
	flags.StringVar(&g.configFile, "config", "", "YAML config file (then REID_* environment, then flags)")
	flags.StringVar(&g.dataDir, "data-dir", "", "where the crop store, index, broker data and models live (default ./data)")
	flags.StringVar(&g.sharedDir, "shared-dir", "", "where the shared detector models and videos live (default ../shared)")
	flags.StringVar(&g.logLevel, "log-level", "", "debug, info, warn or error")

	root.AddCommand(
		newConfigCommand(g),
		newCheckCommand(g),
		newModelCommand(g),
		newFeaturesCommand(g),
		newRunCommand(g),
		newEmbedCommand(g),
		newArchiveCommand(g),
		newSearchCommand(g),
		newTrainCommand(g),
		newIngestCommand(g),
		newCropsCommand(g),
		newBrokerCommand(g),
		newEvalCommand(g),
		newClusterCommand(g),
		newServeCommand(g),
		newIndexCommand(g),
		newPruneCommand(g),
		newDLQCommand(g),
		newSynthCommand(g),
		newValidationCommand(g),
		newAuditCommand(g),
		newBackupCommand(g),
		newKeysCommand(g),
	)
	return root
}

// load builds the effective configuration for cmd and sets up logging from it.
func (g *globals) load(cmd *cobra.Command) (config.Options, error) {
	options, err := config.Load(g.configFile, os.Environ(), cmd.Flags(), map[string]string{
		"data-dir":   "data_dir",
		"shared-dir": "shared_dir",
		"log-level":  "log_level",
	})
	if err != nil {
		return config.Options{}, err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(options.LogLevel)); err != nil {
		return config.Options{}, fmt.Errorf("log_level: %w", err)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	return options, nil
}
