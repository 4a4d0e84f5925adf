package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// Canary secrets: every one contains canaryMark, which nothing else the
// tests pass to walsync contains. secretKey holds a '/' and a '+', as AWS
// secret keys do.
const (
	canaryMark  = "CANARY"
	canaryKeyID = "AKIACANARY7Q2XJ4LMNO"
	canaryKey   = "CANARYSECRET123+wJalr/XUtnFEMIK7MDENG"
	canaryToken = "CANARYTOKEN456"
	canaryPass  = "CANARYPASS789"
	canarySig   = "CANARYSIGabcdef0123"
)

// secretRun is one walsync invocation of the canary test: its arguments
// and the environment variables it adds.
type secretRun struct {
	args []string
	env  []string
}

// runEnv runs walsync with env added to the test's environment, in dir.
// A run that has not exited after a minute is killed and fails the test:
// every run of the canary test is one that must end by itself (a watch
// that keeps running accepted a target it had to refuse).
func runEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("walsync %v still running after a minute: it accepted what it had to refuse; stderr: %s", args, errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run walsync %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// TestSecretsNeverEchoed feeds canary secrets to every command through
// target URLs (user information, also with '/', '#' or a bad
// percent-escape after it, endpoint= URLs with user information, secret
// query values), through the environment (static keys, a session token,
// an endpoint, container and web identity credentials) and through the
// shared AWS files (static keys, a credential_process that prints a
// canary on standard error and fails, one that does so and succeeds),
// through config files given to watch -c (Litestream keys, ${VAR}
// expansion, URLs with user information, YAML broken on a secret's line),
// with debug logging, and requires that no canary appears in any output,
// in any file walsync writes (the targets, the output directory, its
// temporary directory) or in any object it stores. Every failure must be
// a non-zero exit with one error line; a URL holding user information
// must be refused as such, and never accepted.
func TestSecretsNeverEchoed(t *testing.T) {
	endpoint, bucket := testenv.S3(t)
	good := s3URL(endpoint, bucket, "secrets")
	unreachable := s3URL("http://127.0.0.1:1", bucket, "secrets")
	work := t.TempDir()    // everything walsync may write
	private := t.TempDir() // the secrets the test writes itself
	tmp := filepath.Join(work, "tmp")
	target := filepath.Join(work, "target")
	refusedDir := filepath.Join(work, "refused") // named by a refused URL
	out := filepath.Join(work, "out", "restored.db")
	for _, d := range []string{tmp, target, filepath.Dir(out)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(work, "db", "app.db")
	createDB(t, db)
	sqlite(t, db, "INSERT INTO t(n, v) VALUES (1, randomblob(100));\n")
	mustRun(t, "snapshot", db, "-b", good, "--name", "app")
	mustRun(t, "snapshot", db, "-b", "file://"+target, "--name", "app")

	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(private, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noKeys := []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}
	canaryEnv := []string{"AWS_ACCESS_KEY_ID=" + canaryKeyID, "AWS_SECRET_ACCESS_KEY=" + canaryKey, "AWS_SESSION_TOKEN=" + canaryToken}
	leakyProcess := write("fail.sh", "echo 'token expired for "+canaryKeyID+" "+canaryKey+"' >&2\n"+
		"echo '{\"Version\": 1, \"AccessKeyId\": \""+canaryKeyID+"\", \"SecretAccessKey\": \""+canaryKey+"\"'\nexit 1\n", 0o700)
	notJSONProcess := write("notjson.sh", "echo '{\"Version\": 1, \"SecretAccessKey\": \""+canaryKey+"\"'\n", 0o700)
	chattyProcess := write("ok.sh", "echo 'warning: "+canaryKey+"' >&2\n"+
		"echo '{\"Version\": 1, \"AccessKeyId\": \""+testenv.AccessKeyID+"\", \"SecretAccessKey\": \""+testenv.SecretAccessKey+"\"}'\n", 0o700)
	profile := func(name, config string) []string {
		return append([]string{"AWS_CONFIG_FILE=" + write(name+".config", config, 0o600),
			"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(private, "none")}, noKeys...)
	}
	staticProfile := append([]string{"AWS_CONFIG_FILE=" + filepath.Join(private, "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + write("credentials", "[default]\naws_access_key_id = "+canaryKeyID+
			"\naws_secret_access_key = "+canaryKey+"\naws_session_token = "+canaryToken+"\n", 0o600)}, noKeys...)
	brokenProfile := profile("broken", "[default]\naws_secret_access_key "+canaryKey+"\n")
	tokenFile := write("token", canaryToken, 0o600)

	// Target URLs that must be refused: the user information is the
	// secret. want is what the error must say.
	refused := []struct{ name, url, want string }{
		{"S3Userinfo", "s3://" + canaryKeyID + ":" + canaryKey + "@" + bucket + "/p", "credentials in the URL are not accepted"},
		{"S3UserinfoBadEscape", "s3://" + canaryKeyID + ":" + canaryKey + "@" + bucket + "/%zz", "credentials in the URL are not accepted"},
		{"S3UserinfoHash", "s3://" + canaryKeyID + ":ab#" + canaryPass + "@" + bucket + "/p", "credentials in the URL are not accepted"},
		{"S3UserinfoDigits", "s3://" + canaryKeyID + ":123/" + canaryPass + "@" + bucket + "/p", "credentials in the URL are not accepted"},
		{"S3UserOnly", "s3://" + canaryKeyID + "@" + bucket + "/p", "credentials in the URL are not accepted"},
		{"S3UserinfoValidRest", strings.Replace(good, "s3://", "s3://"+canaryKeyID+":"+canaryKey+"@", 1), "credentials in the URL are not accepted"},
		{"HTTPS", "https://u:" + canaryPass + "@example.com/x", "credentials in the URL are not accepted"},
		{"FileHost", "file://u:" + canaryPass + "@host/dir", "credentials in the URL are not accepted"},
		{"FileLocalhost", "file://u:" + canaryPass + "@localhost" + refusedDir, "credentials in the URL are not accepted"},
		{"FileBadEscape", "file://u:" + canaryPass + "@localhost/%zz", "credentials in the URL are not accepted"},
		{"Endpoint", "s3://" + bucket + "/p?endpoint=http://u:" + canaryPass + "@127.0.0.1:1&path-style=true", "credentials in the URL are not accepted"},
		{"EndpointEncoded", "s3://" + bucket + "/p?endpoint=http%3A%2F%2Fu%3A" + canaryPass + "%40127.0.0.1%3A1", "credentials in the URL are not accepted"},
		{"EndpointSlash", "s3://" + bucket + "/p?endpoint=http://u:ab/" + canaryPass + "@127.0.0.1:1", "credentials in the URL are not accepted"},
		{"EndpointBadEscape", "s3://" + bucket + "/p?endpoint=http://u:" + canaryPass + "@127.0.0.1:1/%zz", "credentials in the URL are not accepted"},
		{"Signature", "s3://" + bucket + "/p?endpoint=" + endpoint + "&X-Amz-Signature=" + canarySig, "X-Amz-Signature"},
		{"Credential", "s3://" + bucket + "/p?X-Amz-Credential=" + canaryKeyID + "%2F20260101%2Fus-east-1&X-Amz-Security-Token=" + canaryToken, "unknown parameter"},
		{"BareQuery", "s3://" + bucket + "/p?" + canaryKey, "unknown parameter"},
		{"PathStyleValue", "s3://" + bucket + "/p?path-style=" + canaryToken, "path-style"},
		{"FileQuery", "file://" + target + "?token=" + canaryToken, "no query"},
		{"FileQueryBadEscape", "file:///%zz?sessiontoken=" + canaryToken, "percent-escape"},
		{"NoScheme", canaryKeyID + ":" + canaryKey + "@" + bucket, "scheme"},
	}
	// Environments with a target that fails: unreachable, wrong bucket,
	// wrong credentials. want is what the error must say.
	failing := []struct {
		name, url string
		env       []string
		want      string
	}{
		{"EnvKeysUnreachable", unreachable, canaryEnv, "unreachable"},
		{"EnvKeysDenied", good, canaryEnv, "denied"},
		{"EnvKeysWrongBucket", s3URL(endpoint, "no-such-bucket-walsync", "x"), canaryEnv, "no-such-bucket-walsync"},
		{"EnvEndpointUserinfo", "s3://" + bucket + "/p", []string{"AWS_ENDPOINT_URL_S3=http://u:" + canaryPass + "@127.0.0.1:1"}, "credentials in the URL are not accepted"},
		{"EnvEndpointQuery", "s3://" + bucket + "/p", []string{"AWS_ENDPOINT_URL=http://127.0.0.1:1/?X-Amz-Signature=" + canarySig}, "query"},
		{"ProfileStaticDenied", good, staticProfile, "denied"},
		{"ProfileBroken", good, brokenProfile, "line 2"},
		{"ProcessFailsLeaky", good, profile("leaky", "[default]\ncredential_process = "+leakyProcess+"\n"), "credential_process"},
		{"ProcessNotJSON", good, profile("notjson", "[default]\ncredential_process = "+notJSONProcess+"\n"), "not JSON"},
		{"ContainerUserinfo", good, append([]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://u:" + canaryPass + "@127.0.0.1:1/creds",
			"AWS_CONTAINER_AUTHORIZATION_TOKEN=" + canaryToken}, noKeys...), "credentials in the URL are not accepted"},
		{"ContainerQuery", good, append([]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:1/creds?token=" + canaryToken,
			"AWS_CONTAINER_AUTHORIZATION_TOKEN=" + canaryToken}, noKeys...), "AWS_CONTAINER_CREDENTIALS_FULL_URI"},
		{"ContainerUnreachable", good, append([]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:1/creds",
			"AWS_CONTAINER_AUTHORIZATION_TOKEN=" + canaryToken}, noKeys...), "container credentials"},
		{"WebIdentityQuery", good, append([]string{"AWS_WEB_IDENTITY_TOKEN_FILE=" + tokenFile,
			"AWS_ROLE_ARN=arn:aws:iam::1:role/r", "AWS_ENDPOINT_URL_STS=http://127.0.0.1:1/?X-Amz-Security-Token=" + canaryToken}, noKeys...), "STS"},
		{"WebIdentityUnreachable", good, append([]string{"AWS_WEB_IDENTITY_TOKEN_FILE=" + tokenFile,
			"AWS_ROLE_ARN=arn:aws:iam::1:role/r", "AWS_ENDPOINT_URL_STS=http://127.0.0.1:1"}, noKeys...), "web identity"},
	}
	// Config files (`watch -c`) that must fail without showing a secret:
	// credentials in a Litestream config (also through ${VAR}), URLs with
	// user information, YAML that does not parse on a secret's line.
	lsURL := litestreamURL(endpoint, bucket, "secrets/app")
	lsDB := "dbs:\n  - path: " + db + "\n    replica:\n      url: " + lsURL + "\n"
	configs := []struct {
		name, text string
		env        []string
		want       string
	}{
		{"LitestreamKeysDenied", "access-key-id: " + canaryKeyID + "\nsecret-access-key: " + canaryKey + "\n" + lsDB, nil, "denied"},
		{"LitestreamKeysExpanded", "access-key-id: ${CANARY_ID}\nsecret-access-key: ${CANARY_KEY}\n" + lsDB,
			[]string{"CANARY_ID=" + canaryKeyID, "CANARY_KEY=" + canaryKey}, "denied"},
		{"LitestreamKeyExpandFails", "access-key-id: " + canaryKeyID + "\nsecret-access-key: ${CANARY_KEY}${NOT_SET_VAR}\n" + lsDB,
			[]string{"CANARY_KEY=" + canaryKey}, "not shown"},
		{"LitestreamHalfKeys", "secret-access-key: " + canaryKey + "\n" + lsDB, nil, "give both"},
		{"LitestreamKeysDiffer", "dbs:\n  - path: " + db + "\n    replica: {url: '" + lsURL + "', access-key-id: " + canaryKeyID + ", secret-access-key: " + canaryKey + "}\n" +
			"  - path: " + db + "2\n    replica: {url: '" + litestreamURL(endpoint, bucket, "secrets/app2") + "', access-key-id: " + canaryKeyID + ", secret-access-key: " + canaryPass + "}\n", nil, "credentials differ"},
		{"LitestreamOtherSecretsIgnored", "access-key-id: " + canaryKeyID + "\nsecret-access-key: " + canaryKey + "\npassword: " + canaryPass +
			"\naccount-key: " + canaryPass + "\ntoken: " + canaryToken + "\n" + lsDB, nil, "denied"},
		{"LitestreamURLUserinfo", "dbs:\n  - path: " + db + "\n    replica:\n      url: s3://" + canaryKeyID + ":" + canaryKey + "@" + bucket + "/a\n", nil, "credentials in the URL are not accepted"},
		{"TargetUserinfo", "target: s3://" + canaryKeyID + ":" + canaryKey + "@" + bucket + "/p\ndatabases: [{path: " + db + "}]\n", nil, "credentials in the URL are not accepted"},
		{"TargetEndpointUserinfo", "target: s3://" + bucket + "/p?endpoint=http://u:" + canaryPass + "@127.0.0.1:1\ndatabases: [{path: " + db + "}]\n", nil, "credentials in the URL are not accepted"},
		{"BadYAML", "access-key-id: " + canaryKeyID + "\nsecret-access-key: \"" + canaryKey + "\n" + lsDB, nil, "not valid YAML"},
	}
	// commands returns a run of every command with target url.
	commands := func(url string) map[string][]string {
		return map[string][]string{
			"List":         {"list", "-b", url},
			"ListJSON":     {"list", "--json", "--bucket=" + url},
			"Restore":      {"restore", "app", "-b", url, "-o", out},
			"RestoreTXID":  {"restore", "app", "-b", url, "-o", out, "--txid", "1", "--force"},
			"Snapshot":     {"snapshot", db, "-b", url, "--name", "app"},
			"Watch":        {"watch", db, "-b", url, "--sync-interval", "0"},
			"WatchDir":     {"watch", "--dir", filepath.Dir(db), "-b", url, "--spool-dir", tmp},
			"Bench":        {"bench", "--dbs", "1", "--duration", "1s", "--warmup", "0s", "-b", url},
			"BenchJSON":    {"bench", "--dbs", "1", "--duration", "1s", "--warmup", "0s", "-b", url, "--json"},
			"JSONLogs":     {"list", "-b", url, "--log-format", "json"},
			"PositionalDB": {"watch", url, "-b", "file://" + target},
			"PositionalNm": {"restore", url, "-b", "file://" + target, "-o", out},
			"PositionalLs": {"list", url},
			"Version":      {"version", "-b", url},
		}
	}
	check := func(t *testing.T, r result, want string) {
		t.Helper()
		if strings.Contains(r.stdout+r.stderr, canaryMark) {
			t.Errorf("output holds a canary secret:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
		}
		if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
			t.Errorf("panic: %s", r.stderr)
		}
		if r.code == 0 {
			t.Fatalf("exit 0, want failure; stdout: %s", r.stdout)
		}
		if got := countLines(r.stderr, "walsync: "); got != 1 {
			t.Fatalf("%d error lines, want 1:\n%s", got, r.stderr)
		}
		if want != "" && !strings.Contains(r.stderr, want) {
			t.Errorf("error does not say %q:\n%s", want, r.stderr)
		}
	}
	env := func(extra []string) []string {
		return append([]string{"TMPDIR=" + tmp}, extra...)
	}
	debug := func(args []string) []string { return append(append([]string(nil), args...), "--log-level", "debug") }

	for _, c := range configs {
		t.Run("Config"+c.name, func(t *testing.T) {
			file := write(c.name+".yml", c.text, 0o600)
			check(t, runEnv(t, work, env(c.env), debug([]string{"watch", "-c", file})...), c.want)
		})
	}

	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			for name, args := range commands(c.url) {
				t.Run(name, func(t *testing.T) {
					want := c.want
					if strings.HasPrefix(name, "Positional") || name == "Version" {
						want = "" // the URL is not the target: another error
					}
					check(t, runEnv(t, work, env(nil), debug(args)...), want)
				})
			}
		})
	}
	for _, c := range failing {
		t.Run(c.name, func(t *testing.T) {
			for name, args := range commands(c.url) {
				if strings.HasPrefix(name, "Positional") || name == "Version" {
					continue
				}
				t.Run(name, func(t *testing.T) {
					check(t, runEnv(t, work, env(c.env), debug(args)...), c.want)
				})
			}
		})
	}
	// Runs that succeed: the canaries are in the environment (unused
	// there: the target is a directory) or on a working
	// credential_process's standard error.
	t.Run("Succeed", func(t *testing.T) {
		chatty := profile("chatty", "[default]\ncredential_process = "+chattyProcess+"\n")
		for _, c := range []struct {
			name string
			args []string
			env  []string
		}{
			{"VersionEnv", []string{"version"}, canaryEnv},
			{"ListFileEnv", []string{"list", "-b", "file://" + target}, canaryEnv},
			{"SnapshotFileEnv", []string{"snapshot", db, "-b", "file://" + target, "--name", "app"}, canaryEnv},
			{"RestoreFileEnv", []string{"restore", "app", "-b", "file://" + target, "-o", out, "--force"}, canaryEnv},
			{"ListProcess", []string{"list", "-b", good}, chatty},
			{"SnapshotProcess", []string{"snapshot", db, "-b", good, "--name", "app"}, chatty},
			{"RestoreProcess", []string{"restore", "app", "-b", good, "-o", out, "--force"}, chatty},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := runEnv(t, work, env(c.env), debug(c.args)...)
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				if strings.Contains(r.stdout+r.stderr, canaryMark) {
					t.Errorf("output holds a canary secret:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
				}
			})
		}
	})

	// Nothing walsync wrote holds a canary: not the targets, the restored
	// output, the temporary directory, nor the objects in the bucket. A
	// refused file:// URL created nothing.
	for _, root := range []string{work, testenv.ObjectPath(t, bucket, "secrets")} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(canaryMark)) {
				t.Errorf("%s holds a canary secret", p)
			}
			return nil
		})
	}
	if _, err := os.Lstat(refusedDir); err == nil {
		t.Errorf("%s, named by a refused URL, was created", refusedDir)
	}
}
