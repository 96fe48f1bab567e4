package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/internal/atomicfile"
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
			entries, err := configuredKeys(g, cmd)
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
	revoke := &cobra.Command{
		Use:   "revoke KEY-ID",
		Short: "Take a key out of its keys file by the id the audit log names it by",
		Long: `Finds the configured key whose id (as reid audit and reid keys list show it, key-...) is KEY-ID
and replaces its line in its keys file with a comment saying it was revoked, and when; the key
itself is not kept. Send reid serve or reid run a SIGHUP afterwards (systemctl reload): the key is
refused from the next request on. A key written in the configuration file itself is not edited:
the command says where it is.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			entries, err := configuredKeys(g, cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			found := false
			for _, entry := range entries {
				if entry.ID != args[0] {
					continue
				}
				found = true
				if entry.File == "" {
					return fmt.Errorf("%s (%s) is written in the configuration itself, not in a keys file: delete it from %s's %s list and send a SIGHUP",
						entry.ID, entry.Kind, configName(g), keysSetting(entry.Kind))
				}
				if err := revokeKeyLine(entry, time.Now()); err != nil {
					return err
				}
				fmt.Fprintf(out, "revoked %s (%s) at %s\n", entry.ID, entry.Kind, entry.Source)
			}
			if !found {
				return fmt.Errorf("no configured key has the id %s (reid keys list shows them)", args[0])
			}
			fmt.Fprintln(out, "send reid serve or reid run a SIGHUP (systemctl reload) to refuse it from the next request on")
			return nil
		},
	}
	command.AddCommand(newKeys, list, revoke)
	return command
}

// configuredKeys lists the keys of the configuration cmd loads.
func configuredKeys(g *globals, cmd *cobra.Command) ([]lookup.KeyEntry, error) {
	options, err := g.load(cmd)
	if err != nil {
		return nil, err
	}
	return lookup.KeyEntries(options.Lookup)
}

// revokeKeyLine replaces the key at entry's line of its file with a comment, after checking the
// line still holds that key (the file may have changed since it was read). The file is replaced
// whole, with its permissions.
func revokeKeyLine(entry lookup.KeyEntry, now time.Time) error {
	info, err := os.Stat(entry.File)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(entry.File)
	if err != nil {
		return err
	}
	lines := strings.Split(string(raw), "\n")
	if entry.Line < 1 || entry.Line > len(lines) || lookup.KeyID(strings.TrimSpace(lines[entry.Line-1])) != entry.ID {
		return fmt.Errorf("%s changed since it was read: line %d no longer holds %s; run reid keys revoke again", entry.File, entry.Line, entry.ID)
	}
	lines[entry.Line-1] = "# " + entry.ID + " revoked " + now.UTC().Format(time.RFC3339)
	if err := atomicfile.Write(entry.File, []byte(strings.Join(lines, "\n"))); err != nil {
		return err
	}
	return os.Chmod(entry.File, info.Mode().Perm())
}

// keysSetting names the configuration list that holds keys of kind.
func keysSetting(kind string) string {
	switch {
	case kind == "admin":
		return "lookup.admin_api_keys"
	case strings.HasPrefix(kind, "scope "):
		return "lookup.scoped_api_keys[].keys"
	}
	return "lookup.api_keys"
}

// configName is the configuration file's name for messages.
func configName(g *globals) string {
	if g.configFile == "" {
		return "the configuration"
	}
	return g.configFile
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
