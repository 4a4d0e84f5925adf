package s3

import (
	"maps"
	"strings"
	"testing"
)

func TestParseINI(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     iniFile
	}{
		{"Empty", "", iniFile{}},
		{"Comments", "# a\n; b\n\n[default]\n# key = x\n", iniFile{"default": {}}},
		{"Keys", "[default]\nKey = v\nspaced   =   a b  \nempty =\nno=space\n",
			iniFile{"default": {"key": "v", "spaced": "a b", "empty": "", "no": "space"}}},
		{"ValueWithSeparators", "[p]\nk = a=b#c;d\n", iniFile{"p": {"k": "a=b#c;d"}}},
		{"SectionNames", "[profile   dev ]\na = 1\n[ default ] # main\nb = 2\n",
			iniFile{"profile dev": {"a": "1"}, "default": {"b": "2"}}},
		{"RepeatedSection", "[p]\na = 1\nb = 1\n[q]\n[p]\nb = 2\n", iniFile{"p": {"a": "1", "b": "2"}, "q": {}}},
		{"Nested", "[p]\ns3 =\n  region = nested\n\tmax = 1\nregion = top\n  indented = kept\n",
			iniFile{"p": {"s3": "", "region": "top", "indented": "kept"}}},
		{"CRLFAndBOM", "\ufeff[p]\r\na = 1\r\n", iniFile{"p": {"a": "1"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseINI(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.EqualFunc(got, tt.want, maps.Equal) {
				t.Fatalf("parseINI(%q)=%v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseINI_Err(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"key = secretvalue\n", "line 1: key outside a section"},
		{"[p]\nsecretvalue\n", "line 2: want key = value"},
		{"[p]\n= secretvalue\n", "line 2: want key = value"},
		{"[p\n", "line 1: section header without ']'"},
		{"[p] secretvalue\n", "line 1: text after the section header"},
		{"[ ]\n", "line 1: empty section name"},
	} {
		_, err := parseINI(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Fatalf("parseINI(%q) err=%v, want %q", tt.in, err, tt.want)
		}
	}
}

func FuzzParseINI(f *testing.F) {
	for _, s := range []string{
		"[default]\naws_access_key_id = A\naws_secret_access_key = s\n",
		"# c\n[profile p]\ns3 =\n  x = y\nregion=r\r\n", "[p", "k=v", "[p]\n\tk = v\n", "\ufeff[ a  b ] ;c\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseINI(in)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "line ") {
				t.Fatalf("parseINI(%q) err=%q, want one line starting \"line \"", in, msg)
			}
			return
		}
		for name, keys := range got {
			if name == "" || name != strings.Join(strings.Fields(name), " ") {
				t.Fatalf("parseINI(%q): section %q not trimmed", in, name)
			}
			for k, v := range keys {
				if k == "" || k != strings.ToLower(strings.TrimSpace(k)) || v != strings.TrimSpace(v) {
					t.Fatalf("parseINI(%q): key %q = %q not normalized", in, k, v)
				}
			}
		}
	})
}

func TestSTSEndpoint(t *testing.T) {
	for region, want := range map[string]string{
		"us-east-1":  "https://sts.us-east-1.amazonaws.com/",
		"eu-west-3":  "https://sts.eu-west-3.amazonaws.com/",
		"cn-north-1": "https://sts.cn-north-1.amazonaws.com.cn/",
	} {
		if got := stsEndpoint(region); got != want {
			t.Fatalf("stsEndpoint(%q)=%q, want %q", region, got, want)
		}
	}
}
