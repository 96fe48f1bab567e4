package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/lookup"
)

func newKeysCommand(g *globals) *cobra.Command {
	command := &cobra.Command{
		Use:   "keys",
		Short: "Make lookup API keys, and list the configured ones by the ids the audit log names them by",
	}
	var count int
	newKeys := &cobra.Command{
		Use:   "new [--count N]",
		Short: "Print new random API keys, each with its audit log id",
		Long: `Prints new API keys (192 random bits each, 48 hex digits), one per line with the id
that the audit log will name it by. Add a key to lookup.api_keys_file (or an admin or scoped list),
with a comment line above it saying whose it is, and send reid serve or reid run a SIGHUP.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 1 || count > 1000 {
				return fmt.Errorf("--count must be from 1 to 1000, not %d", count)
			}
			out := cmd.OutOrStdout()
			for range count {
				key, err := newAPIKey()
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s  %s\n", key, lookup.KeyID(key))
			}
			return nil
		},
	}
	newKeys.Flags().IntVar(&count, "count", 1, "how many keys")
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the configured API keys by id, kind and where each is configured, never the keys",
		Long: `Lists every key of lookup.api_keys, lookup.admin_api_keys and lookup.scoped_api_keys (and their
files): the id the audit log names it by, its kind (api, admin, or its scope), where it is
configured (FILE:LINE), and the comment just above it in its file. It puts a name to the ids in
reid audit's KEY column. The keys themselves are never printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			entries, err := lookup.KeyEntries(options.Lookup)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if entries == nil {
					entries = []lookup.KeyEntry{}
				}
				encoder := json.NewEncoder(out)
				encoder.SetIndent("", "  ")
				return encoder.Encode(entries)
			}
			if len(entries) == 0 {
				fmt.Fprintln(out, "no API keys: the lookup serves only this machine (or anyone, with lookup.allow_unauthenticated)")
				return nil
			}
			table := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(table, "ID\tKIND\tSOURCE\tNOTE")
			for _, entry := range entries {
				fmt.Fprintf(table, "%s\t%s\t%s\t%s\n", entry.ID, entry.Kind, entry.Source, entry.Note)
			}
			return table.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	command.AddCommand(newKeys, list)
	return command
}

// newAPIKey is 24 bytes from the system's random source in hex: no character that a shell, a
// header or a YAML list would need quoted, and none that reads as a command-line flag.
func newAPIKey() (string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("no random source: %w", err)
	}
	return hex.EncodeToString(raw), nil
}
