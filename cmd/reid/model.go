package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/model"
	"github.com/reid-project/reid/torch"
)

func newModelCommand(g *globals) *cobra.Command {
	command := &cobra.Command{Use: "model", Short: "Import, list, inspect and promote re-id model versions"}
	command.AddCommand(newModelImportCommand(g), newModelListCommand(g), newModelShowCommand(g), newModelPromoteCommand(g))
	return command
}

func openRegistry(options config.Options) (*model.Registry, error) {
	return model.Open(filepath.Join(options.DataDir, "models"))
}

// registry loads the configuration of cmd and opens the model registry under its data dir.
func (g *globals) registry(cmd *cobra.Command) (*model.Registry, error) {
	options, err := g.load(cmd)
	if err != nil {
		return nil, err
	}
	return openRegistry(options)
}

// openDevice starts the torch worker the configuration asks for.
func openDevice(options config.Options) (*torch.Device, error) {
	return torch.Open(torch.Params{Device: options.Torch.Device, Threads: options.Torch.Threads})
}

func newModelImportCommand(g *globals) *cobra.Command {
	var arch, weights, name, pooling, neck string
	var lastStride int
	var promote bool
	command := &cobra.Command{
		Use:   "import --arch ARCH --weights FILE [--name NAME]",
		Short: "Register PyTorch weights (torchvision or torchreid .pth) as a new model version",
		Long: "Reads a PyTorch checkpoint (an OrderedDict or dict, with or without a state_dict wrapper\n" +
			"or module. prefixes), loads it into the network, lists missing and unexpected keys\n" +
			"(classifier heads are ignored), registers a model version and prints its id.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			options, err := g.load(cmd)
			if err != nil {
				return err
			}
			parsedArch, err := torch.ParseArch(arch)
			if err != nil {
				return err
			}
			modelOptions, err := torch.ModelOptions{Arch: parsedArch, LastStride: lastStride, Pooling: pooling, Neck: neck}.WithDefaults()
			if err != nil {
				return err
			}
			device, err := openDevice(options)
			if err != nil {
				return err
			}
			defer device.Close()
			network, err := device.NewModel(cmd.Context(), modelOptions)
			if err != nil {
				return err
			}
			defer network.Close()
			report, err := network.LoadWeights(cmd.Context(), weights)
			if err != nil {
				return fmt.Errorf("import %s: %w", weights, err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "loaded %d tensors, ignored %d classifier tensors\n", len(report.Loaded), len(report.Ignored))
			listKeys(out, "missing (left at their initial values)", report.Missing)
			listKeys(out, "unexpected (not used)", report.Unexpected)
			if len(report.Loaded) == 0 {
				return fmt.Errorf("import %s: no tensor matched a %s network", weights, arch)
			}
			registry, err := openRegistry(options)
			if err != nil {
				return err
			}
			metadata := model.MetadataFor(network.Options())
			metadata.Name = name
			if metadata.Name == "" {
				metadata.Name = strings.TrimSuffix(filepath.Base(weights), filepath.Ext(weights))
			}
			metadata.Source = "imported from " + weights
			metadata.WeightsFormat = model.FormatPyTorch
			metadata.MissingKeys = report.Missing
			metadata.UnexpectedKeys = report.Unexpected
			version, err := registry.Register(cmd.Context(), metadata, weights)
			if err != nil {
				return err
			}
			if promote && !version.Active {
				if err := registry.Promote(version.ID); err != nil {
					return err
				}
				version.Active = true
			}
			fmt.Fprintf(out, "registered %s (%s, %d-d)%s\n", version.ID, version.Arch, version.Dim, activeMark(version.Active))
			return nil
		},
	}
	flags := command.Flags()
	flags.StringVar(&arch, "arch", "", "network: "+strings.Join(archNames(), ", "))
	flags.StringVar(&weights, "weights", "", "PyTorch checkpoint (.pth/.pt)")
	flags.StringVar(&name, "name", "", "human-readable name (default: the file name)")
	flags.IntVar(&lastStride, "last-stride", 0, "resnet50: last stage stride, 1 (default) or 2")
	flags.StringVar(&pooling, "pooling", "", "resnet50: avg (default) or gem")
	flags.StringVar(&neck, "neck", "", "resnet50: bn (default) or none")
	flags.BoolVar(&promote, "promote", false, "make the new version active")
	_ = command.MarkFlagRequired("arch")
	_ = command.MarkFlagRequired("weights")
	return command
}

func archNames() []string {
	var names []string
	for _, arch := range torch.Archs() {
		names = append(names, string(arch))
	}
	return names
}

func listKeys(out interface{ Write([]byte) (int, error) }, title string, keys []string) {
	if len(keys) == 0 {
		return
	}
	fmt.Fprintf(out, "%d %s:\n", len(keys), title)
	for _, key := range keys {
		fmt.Fprintf(out, "  %s\n", key)
	}
}

func activeMark(active bool) string {
	if active {
		return ", active"
	}
	return ""
}

func newModelListCommand(g *globals) *cobra.Command {
	var asJSON bool
	command := &cobra.Command{
		Use:   "list",
		Short: "List model versions; * marks the active one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			registry, err := g.registry(cmd)
			if err != nil {
				return err
			}
			versions, err := registry.List()
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(versions)
			}
			table := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(table, "\tID\tNAME\tARCH\tDIM\tPARENT\tCREATED")
			for _, version := range versions {
				mark := ""
				if version.Active {
					mark = "*"
				}
				fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", mark, version.ID, version.Name, version.Arch,
					version.Dim, version.Parent, version.Created.Format("2006-01-02 15:04:05"))
			}
			return table.Flush()
		},
	}
	command.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return command
}

func newModelShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show [VERSION]",
		Short: "Print a version's metadata as JSON (default: the active version)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			registry, err := g.registry(cmd)
			if err != nil {
				return err
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			version, err := registry.Get(id)
			if err != nil {
				return err
			}
			encoder := json.NewEncoder(cmd.OutOrStdout())
			encoder.SetIndent("", "  ")
			return encoder.Encode(version)
		},
	}
}

func newModelPromoteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "promote VERSION",
		Short: "Make VERSION the active model version (a running reid run takes it up, fills its gallery from the crop store, then moves lookups to it)",
		Long: "A running reid run or reid embed takes the promoted version up within embedder.follow_interval\n" +
			"(30s), or at once on SIGHUP: new crops are embedded with it from the next batch on. reid run\n" +
			"then embeds every stored crop into its gallery and moves lookups to it once that is complete;\n" +
			"at scale, `reid index backfill VERSION --activate` does that part (docs/OPERATIONS.md).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			registry, err := g.registry(cmd)
			if err != nil {
				return err
			}
			if err := registry.Promote(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is active; a running reid run or reid embed takes it up within embedder.follow_interval, or at once on SIGHUP\n", args[0])
			return nil
		},
	}
}
