package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// statusOptions are the flags of `walsync status`.
type statusOptions struct {
	addr   string
	asJSON bool
}

func newStatusCmd(g *globals) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [--addr HOST:PORT] [--json]",
		Short: "Show the replication status of a running watch, per database",
		Long: `status asks a running "walsync watch --metrics-addr HOST:PORT" for the status
of its databases and prints, for each, its state, the last TXID known to be in
the target, its lag (how long its oldest change not yet in the target has
waited), its last upload, whether its WAL is pinned, and the error of its last
sync if it failed. It makes no request to the target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", DefaultMetricsAddr, "address of the watch's --metrics-addr")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object per database")
	return cmd
}

func runStatus(ctx context.Context, g *globals, o *statusOptions) error {
	dbs, err := fetchStatus(ctx, o.addr)
	if err != nil {
		return err
	}
	if o.asJSON {
		enc := json.NewEncoder(g.stdout)
		for _, d := range dbs {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	now := time.Now()
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSTATE\tTXID\tLAG\tLAST UPLOAD\tPINNED\tLAST ERROR")
	for _, d := range dbs {
		last := "-"
		if d.LastUpload != nil {
			last = fmt.Sprintf("%s (%s ago)", d.LastUpload.Format(time.RFC3339), now.Sub(*d.LastUpload).Round(time.Second))
		}
		pinned := "no"
		if d.Pinned {
			pinned = "yes"
		}
		state := d.State
		if d.Degraded {
			state += ",degraded"
		}
		lastErr := "-"
		if d.LastError != "" {
			lastErr = d.LastError
		}
		lag := (time.Duration(d.LagSeconds * float64(time.Second))).Round(time.Millisecond)
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.Name, state, d.ReplicatedTXID, lag, last, pinned, lastErr)
	}
	return w.Flush()
}

// fetchStatus asks the watch at addr for the status of its databases.
func fetchStatus(ctx context.Context, addr string) ([]statusJSON, error) {
	if strings.Contains(addr, "/") {
		return nil, fmt.Errorf("status: --addr %q: want HOST:PORT", addr)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, fmt.Errorf("status: --addr %q: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("status: no walsync watch answers on %s (start it with --metrics-addr %s): %w", addr, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("status: %s answered %s: %s", addr, resp.Status, strings.TrimSpace(string(b)))
	}
	var dbs []statusJSON
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	for {
		var d statusJSON
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return dbs, nil
		} else if err != nil {
			return nil, fmt.Errorf("status: %s: %w", addr, err)
		}
		dbs = append(dbs, d)
	}
}
