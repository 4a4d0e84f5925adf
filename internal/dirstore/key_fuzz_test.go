package dirstore

import (
	"path/filepath"
	"strings"
	"testing"
)

func FuzzCheckKey(f *testing.F) {
	for _, key := range []string{
		"a", "a/b/c.ltx", "", "/a", "a/../b", "..", ".meta/x", "a//b", "a/", "a\\b",
		"a\x00", "ünï/cødé", "with space/+plus", "C:/x", "a/./b", "...", ".a", "a.",
	} {
		f.Add(key)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if checkKey(key) != nil {
			return
		}
		name := path(key)
		if !filepath.IsLocal(name) {
			t.Fatalf("valid key %q maps to non-local path %q", key, name)
		}
		if filepath.Clean(name) != name {
			t.Fatalf("valid key %q maps to unclean path %q", key, name)
		}
		if got := filepath.ToSlash(name); got != key {
			t.Fatalf("valid key %q maps to %q, which is another key", key, got)
		}
		for elem := range strings.SplitSeq(key, "/") {
			if !validName(elem) {
				t.Fatalf("valid key %q has element %q that List would skip", key, elem)
			}
		}
	})
}
