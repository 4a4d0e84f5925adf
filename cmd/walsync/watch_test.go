package main

import (
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/walsync/walsync/replicate"
)

// TestWatchSyncInterval: --sync-interval 0 keeps meaning "upload at once"
// for CLI users, although a zero replicate.Options.SyncInterval selects the
// default.
func TestWatchSyncInterval(t *testing.T) {
	for _, c := range []struct {
		flag string
		want time.Duration
	}{
		{"0", replicate.SyncImmediately},
		{"0s", replicate.SyncImmediately},
		{"250ms", 250 * time.Millisecond},
		{"", replicate.DefaultSyncInterval}, // flag not given
	} {
		t.Run("Flag="+c.flag, func(t *testing.T) {
			o := &watchOptions{}
			fs := pflag.NewFlagSet("watch", pflag.ContinueOnError)
			o.AddFlags(fs)
			args := []string{"x.db"}
			if c.flag != "" {
				args = append(args, "--sync-interval", c.flag)
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			if err := o.validate(fs.Args()); err != nil {
				t.Fatal(err)
			}
			if got, want := o.replicateOptions(nil).SyncInterval, c.want; got != want {
				t.Fatalf("--sync-interval %q: SyncInterval=%v, want %v", c.flag, got, want)
			}
		})
	}
}
