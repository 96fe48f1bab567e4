package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// newIndexCommand inspects the configured vector index (embedded or Milvus).
func newIndexCommand(g *globals) *cobra.Command {
	command := &cobra.Command{Use: "index", Short: "Inspect the vector index: model-version galleries and their sizes"}
	command.AddCommand(&cobra.Command{
		Use:   "versions",
		Short: "List every model version's gallery: name, dimension, item count, which one is active",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			ix, err := openIndex(cmd.Context(), options)
			if err != nil {
				return err
			}
			defer ix.Close()
			versions, err := ix.Versions(cmd.Context())
			if err != nil {
				return err
			}
			out := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(out, "VERSION\tDIM\tCOUNT\tACTIVE")
			for _, version := range versions {
				active := ""
				if version.Active {
					active = "yes"
				}
				fmt.Fprintf(out, "%s\t%d\t%d\t%s\n", version.Name, version.Dim, version.Count, active)
			}
			return out.Flush()
		},
	})
	command.AddCommand(&cobra.Command{
		Use:   "count [version]",
		Short: "Print the number of items in a version's gallery (default: the active one)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			ix, err := openIndex(cmd.Context(), options)
			if err != nil {
				return err
			}
			defer ix.Close()
			version := ""
			if len(args) == 1 {
				version = args[0]
			}
			count, err := ix.Count(cmd.Context(), version)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), count)
			return err
		},
	})
	return command
}
