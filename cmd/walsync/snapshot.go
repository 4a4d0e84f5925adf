package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/walsync/walsync/replicate"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	var target, name string
	cmd := &cobra.Command{
		Use:   "snapshot DB -b URL",
		Short: "Upload a full snapshot of a database now",
		Long: `snapshot uploads what is committed and not yet replicated, then a full snapshot
of DB. Do not run it against a database that a walsync watch process is
replicating into the same target: both would write the next transaction ID.`,
		Args: argsNamed([]string{"DB"}, []string{"the path of the database file"}),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshot(cmd.Context(), g, target, name, args[0])
		},
	}
	cmd.Flags().StringVarP(&target, "bucket", "b", "", "target URL: s3://bucket[/prefix] or file:///dir")
	cmd.Flags().StringVar(&name, "name", "", "name of the database in the target (default: its absolute path without the leading /)")
	return cmd
}

func runSnapshot(ctx context.Context, g *globals, target, name, path string) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	store, err := openStorage(ctx, target)
	if err != nil {
		return err
	}
	r := replicate.New(store, replicate.Options{Logger: log})
	defer r.Close()
	d, err := r.Add(ctx, path, name)
	if err != nil {
		return err
	}
	if err := d.Snapshot(ctx); err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	fmt.Fprintf(g.stdout, "snapshot of %s uploaded as %s at txid %d\n", d.Path(), d.Name(), d.TXID())
	return nil
}
