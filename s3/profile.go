package s3

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// profile is one profile of the shared AWS configuration files: its keys
// in the config file, overridden by those in the credentials file.
type profile struct {
	name     string
	explicit bool     // named by $AWS_PROFILE
	files    []string // the files looked in
	found    bool     // in at least one of them
	keys     map[string]string
}

// loadProfile reads the profile named by $AWS_PROFILE, else "default",
// from $AWS_CONFIG_FILE (default ~/.aws/config, sections "[profile NAME]"
// and "[default]") and $AWS_SHARED_CREDENTIALS_FILE (default
// ~/.aws/credentials, sections "[NAME]"). A missing file is empty.
func loadProfile() (*profile, error) {
	name := os.Getenv("AWS_PROFILE")
	p := &profile{name: cmp.Or(name, "default"), explicit: name != "", keys: map[string]string{}}
	home, _ := os.UserHomeDir()
	for _, f := range []struct {
		env, base string
		sections  []string
	}{
		{"AWS_CONFIG_FILE", "config", configSections(p.name)},
		{"AWS_SHARED_CREDENTIALS_FILE", "credentials", []string{p.name}},
	} {
		path := os.Getenv(f.env)
		if path == "" {
			if home == "" {
				continue
			}
			path = filepath.Join(home, ".aws", f.base)
		}
		p.files = append(p.files, path)
		ini, err := readINI(path)
		if err != nil {
			return nil, err
		}
		for _, s := range f.sections {
			if keys, ok := ini[s]; ok {
				p.found = true
				maps.Copy(p.keys, keys)
			}
		}
	}
	return p, nil
}

// configSections returns the names of the sections of a profile in the
// config file, the one that wins last.
func configSections(name string) []string {
	if name == "default" {
		return []string{"default", "profile default"}
	}
	return []string{"profile " + name}
}

// String names p and where it was looked for, as in error messages.
func (p *profile) String() string {
	switch {
	case len(p.files) == 0:
		return fmt.Sprintf("profile %q (no home directory)", p.name)
	case !p.found:
		return fmt.Sprintf("profile %q (not in %s)", p.name, strings.Join(p.files, " or "))
	}
	return fmt.Sprintf("profile %q (no credentials in %s)", p.name, strings.Join(p.files, " or "))
}

// get returns the value of key in p, or "".
func (p *profile) get(key string) string { return p.keys[key] }

// unsupported are the profile keys of credential sources that walsync does
// not implement, and what they are.
var unsupported = []struct{ key, what string }{
	{"sso_session", "SSO"},
	{"sso_start_url", "SSO"},
	{"sso_account_id", "SSO"},
	{"sso_role_name", "SSO"},
	{"role_arn", "an assumed role"},
	{"source_profile", "an assumed role"},
	{"credential_source", "an assumed role"},
	{"web_identity_token_file", "an assumed role"},
	{"login_session", "aws login"},
}

// credentials returns the provider of p's credential_process, or of its
// static keys: aws_access_key_id, aws_secret_access_key and
// aws_session_token. A profile that does not exist is no source, unless
// $AWS_PROFILE names it.
func (p *profile) credentials() (aws.CredentialsProvider, string, error) {
	if !p.found {
		if p.explicit {
			return nil, "", fmt.Errorf("$AWS_PROFILE: profile %q not in %s", p.name, strings.Join(p.files, " or "))
		}
		return nil, "", nil
	}
	for _, u := range unsupported {
		if p.keys[u.key] != "" {
			return nil, "", fmt.Errorf("profile %q uses %s (%s), which walsync does not support: "+
				"point AWS_PROFILE at a profile with credential_process = aws configure export-credentials --profile %s --format process",
				p.name, u.what, u.key, p.name)
		}
	}
	if command := p.keys["credential_process"]; command != "" {
		return processCredentials(command), fmt.Sprintf("profile %q credential_process", p.name), nil
	}
	id, secret := p.keys["aws_access_key_id"], p.keys["aws_secret_access_key"]
	switch {
	case id == "" && secret == "":
		return nil, "", nil
	case secret == "":
		return nil, "", fmt.Errorf("profile %q has aws_access_key_id but no aws_secret_access_key", p.name)
	case id == "":
		return nil, "", fmt.Errorf("profile %q has aws_secret_access_key but no aws_access_key_id", p.name)
	}
	return staticCredentials(id, secret, p.keys["aws_session_token"]), fmt.Sprintf("profile %q", p.name), nil
}

// iniFile is the sections of an INI file, by name (inner spaces collapsed),
// each a map of lower-case keys to values.
type iniFile map[string]map[string]string

// readINI reads and parses the INI file at path; a missing file is empty.
func readINI(path string) (iniFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f, err := parseINI(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// parseINI parses the INI dialect of the AWS configuration files:
// "[section]" headers, "key = value" lines, comment lines starting with '#'
// or ';', and blank lines. Indented lines below a key without a value are
// its sub-keys ("s3 =\n  addressing_style = path"), which are skipped.
// Values are not unquoted and may contain '#'. Errors give the line
// number, never its text, which may be a secret.
func parseINI(data string) (iniFile, error) {
	f := iniFile{}
	var section map[string]string
	nested := false // the last key had no value: indented lines are its sub-keys
	for i, line := range strings.Split(strings.TrimPrefix(data, "\ufeff"), "\n") {
		indented := line != "" && (line[0] == ' ' || line[0] == '\t')
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: section header without ']'", i+1)
			}
			if rest := strings.TrimSpace(line[end+1:]); rest != "" && rest[0] != '#' && rest[0] != ';' {
				return nil, fmt.Errorf("line %d: text after the section header", i+1)
			}
			name := strings.Join(strings.Fields(line[1:end]), " ")
			if name == "" {
				return nil, fmt.Errorf("line %d: empty section name", i+1)
			}
			if section = f[name]; section == nil {
				section = map[string]string{}
				f[name] = section
			}
			nested = false
		case indented && nested:
			continue
		default:
			if section == nil {
				return nil, fmt.Errorf("line %d: key outside a section", i+1)
			}
			k, v, ok := strings.Cut(line, "=")
			k = strings.ToLower(strings.TrimSpace(k))
			if !ok || k == "" {
				return nil, fmt.Errorf("line %d: want key = value", i+1)
			}
			v = strings.TrimSpace(v)
			section[k] = v
			nested = v == ""
		}
	}
	return f, nil
}
