package main

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true},
		{"1048576", 1 << 20, true},
		{"512MiB", 512 << 20, true},
		{"2GiB", 2 << 30, true},
		{"3 GB", 3e9, true},
		{"10KB", 10e3, true},
		{"7B", 7, true},
		{"0", 0, false},
		{"-1GiB", 0, false},
		{"1.5GiB", 0, false},
		{"GiB", 0, false},
		{"12XB", 0, false},
		{"9000000TiB", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"", "1", "512MiB", "3 GB", "-1", "9223372036854775807B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && s != "" && n <= 0 {
			t.Fatalf("parseSize(%q) = %d with no error", s, n)
		}
	})
}
