package main

import (
	"testing"

	"github.com/superfly/ltx"
)

// errBadTXIDText is parseTXID's error for every malformed TXID.
const errBadTXIDText = "want a positive decimal number or 16 hex digits (TXIDs start at 1)"

// TestParseTXID: decimal or 16 hex digits; zero refused in every form,
// with the same error.
func TestParseTXID(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		for s, want := range map[string]ltx.TXID{
			"1":                1,
			"255":              255,
			"00000000000000ff": 255,
			"00000000000000FF": 255,
			"ffffffffffffffff": ^ltx.TXID(0),
		} {
			if got, err := parseTXID(s); err != nil || got != want {
				t.Errorf("parseTXID(%q)=%v, %v; want %v", s, got, err, want)
			}
		}
	})
	t.Run("ErrBadTXID", func(t *testing.T) {
		for _, s := range []string{
			"0", "00", "0000000000000000", "-1", "+1", "0x1", " 1", "1 ", "",
			"000000000000000g", "18446744073709551616",
		} {
			if got, err := parseTXID(s); err == nil || err.Error() != errBadTXIDText {
				t.Errorf("parseTXID(%q)=%v, %v; want %q", s, got, err, errBadTXIDText)
			}
		}
	})
}
