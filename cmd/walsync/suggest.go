package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walsync/walsync/replicate"
)

// maxSuggestions is how many names a "no backup found" error suggests.
const maxSuggestions = 5

// hintTimeout bounds the listing behind a "no backup found" error's hint.
const hintTimeout = 10 * time.Second

// noBackupHint returns what to add to a "no backup found" error for name:
// the nearest names in the target, or how many databases it holds. It
// lists the target once, reading no object; "" if that fails or takes
// longer than hintTimeout (a target of millions of objects).
func noBackupHint(ctx context.Context, store replicate.Storage, name string) string {
	ctx, cancel := context.WithTimeout(ctx, hintTimeout)
	defer cancel()
	names, err := replicate.ListNames(ctx, store)
	if err != nil {
		return ""
	}
	if len(names) == 0 {
		return "the target holds no database"
	}
	near := nearestNames(name, names, maxSuggestions)
	if len(near) == 0 {
		noun := "databases"
		if len(names) == 1 {
			noun = "database"
		}
		return fmt.Sprintf("no name in the target is close (it holds %d %s; `walsync list -b URL` lists them)", len(names), noun)
	}
	quoted := make([]string, len(near))
	for i, n := range near {
		quoted[i] = strconv.Quote(n)
	}
	return "nearest names in the target: " + strings.Join(quoted, ", ")
}

// nearestNames returns up to n of names closest to want, closest first,
// then by name: first the names that are want's path with directories
// added or removed in front (tenant1/app.db for var/lib/app/tenant1/app.db
// or for app.db: a database named relative to a --dir, or restored by its
// file name), then those within a small edit distance, ignoring case. The
// work is bounded: O(len(want) × distanceLimit) per name.
func nearestNames(want string, names []string, n int) []string {
	type scored struct {
		name  string
		score int
	}
	w := []rune(strings.ToLower(want))
	limit := distanceLimit(len(w))
	var found []scored
	for _, name := range names {
		if strings.HasSuffix(want, "/"+name) || strings.HasSuffix(name, "/"+want) {
			found = append(found, scored{name, 0})
			continue
		}
		if d := boundedDistance(w, []rune(strings.ToLower(name)), limit); d <= limit {
			found = append(found, scored{name, d})
		}
	}
	slices.SortFunc(found, func(a, b scored) int {
		return cmp.Or(cmp.Compare(a.score, b.score), strings.Compare(a.name, b.name))
	})
	out := make([]string, 0, min(n, len(found)))
	for _, s := range found[:min(n, len(found))] {
		out = append(out, s.name)
	}
	return out
}

// distanceLimit is the largest edit distance at which a name of n runes
// is suggested for another: a quarter of it, at least 2 and at most 6.
func distanceLimit(n int) int { return min(max(n/4, 2), 6) }

// boundedDistance returns the Levenshtein distance between a and b if it
// is at most k, else k+1. It fills only the band of cells within k of the
// diagonal and stops at the first row whose cells all exceed k.
func boundedDistance(a, b []rune, k int) int {
	if d := len(a) - len(b); d > k || -d > k {
		return k + 1
	}
	prev := make([]int, len(b)+2)
	cur := make([]int, len(b)+2)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		lo, hi := max(1, i-k), min(len(b), i+k)
		cur[lo-1] = k + 1 // left of the band
		if lo == 1 {
			cur[0] = i
		}
		rowMin := cur[lo-1]
		for j := lo; j <= hi; j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j-1]+cost, prev[j]+1, cur[j-1]+1)
			rowMin = min(rowMin, cur[j])
		}
		cur[hi+1] = k + 1 // right of the band, read by the next row
		if rowMin > k {
			return k + 1
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], k+1)
}
