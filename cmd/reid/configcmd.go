package main

import (
	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
)

func newConfigCommand(g *globals) *cobra.Command {
	command := &cobra.Command{Use: "config", Short: "Inspect the effective configuration"}
	command.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (file, then REID_* environment, then flags), secrets masked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			out, err := config.YAML(config.Masked(options))
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	return command
}
