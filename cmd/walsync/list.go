package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/walsync/walsync/replicate"
)

func newListCmd(g *globals) *cobra.Command {
	var target string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list -b URL",
		Short: "List the databases in a target with their restorable range",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runList(cmd.Context(), g, target, asJSON)
		},
	}
	cmd.Flags().StringVarP(&target, "bucket", "b", "", "target URL: s3://bucket[/prefix] or file:///dir")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per database (snake_case keys: docs/json.md)")
	return cmd
}

func runList(ctx context.Context, g *globals, target string, asJSON bool) error {
	store, err := openExistingStorage(ctx, target)
	if err != nil {
		return err
	}
	dbs, err := replicate.ListDatabases(ctx, store)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		for _, d := range dbs {
			if err := enc.Encode(newListJSON(d)); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tFROM TXID\tFROM TIME\tTO TXID\tTO TIME\tSNAPSHOTS\tSEGMENTS\tBYTES")
	for _, d := range dbs {
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\t%d\t%d\t%d\n", d.Name, d.FirstTXID, fmtTime(d.FirstTime),
			d.LastTXID, fmtTime(d.LastTime), d.Snapshots, d.Segments, d.Bytes)
	}
	return w.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}
