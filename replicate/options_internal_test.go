package replicate

import (
	"testing"
	"time"

	"github.com/walsync/walsync/internal/memstore"
)

// TestOptionsSyncInterval: the zero value selects DefaultSyncInterval, as
// for every other field; uploading at once must be asked for.
func TestOptionsSyncInterval(t *testing.T) {
	for _, c := range []struct {
		name     string
		interval time.Duration
		want     time.Duration // the scheduler's interval
	}{
		{"ZeroIsDefault", 0, DefaultSyncInterval},
		{"Explicit", 250 * time.Millisecond, 250 * time.Millisecond},
		{"SyncImmediately", SyncImmediately, 0},
		{"Negative", -time.Second, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := New(memstore.New(), Options{SyncInterval: c.interval})
			defer r.Close()
			if got, want := r.sched.interval, c.want; got != want {
				t.Fatalf("Options{SyncInterval: %v}: scheduler interval=%v, want %v", c.interval, got, want)
			}
		})
	}
}
