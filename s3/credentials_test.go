package s3_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/s3"
)

// awsEnv are the environment variables the credential chain reads, which
// isolate clears.
var awsEnv = []string{
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY", "AWS_SECRET_KEY",
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_ENDPOINT_URL_STS",
	"AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_V1_DISABLED",
	"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE",
}

// isolate clears the AWS environment, disables the EC2 metadata service
// and points $HOME at an empty directory, then writes files (paths
// relative to that home) and sets env. In both, "~/" stands for the home.
func isolate(t *testing.T, env, files map[string]string) {
	t.Helper()
	home := t.TempDir()
	expand := func(s string) string { return strings.ReplaceAll(s, "~/", home+"/") }
	for _, k := range awsEnv {
		t.Setenv(k, "")
	}
	t.Setenv("HOME", home)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for name, content := range files {
		path := filepath.Join(home, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(expand(content)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range env {
		t.Setenv(k, expand(v))
	}
}

// signature is who signed a request, from its headers.
type signature struct{ id, region, token string }

// fakeS3 returns the endpoint of a server that answers every request with
// an empty listing, and the signature of the last request.
func fakeS3(t *testing.T) (endpoint string, last func() signature) {
	t.Helper()
	var (
		mu  sync.Mutex
		sig signature
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// AWS4-HMAC-SHA256 Credential=ID/DATE/REGION/s3/aws4_request, ...
		_, cred, _ := strings.Cut(r.Header.Get("Authorization"), "Credential=")
		cred, _, _ = strings.Cut(cred, ",")
		parts := strings.Split(cred, "/")
		mu.Lock()
		sig = signature{id: parts[0], token: r.Header.Get("X-Amz-Security-Token")}
		if len(parts) == 5 {
			sig.region = parts[2]
		}
		mu.Unlock()
		io.WriteString(w, `<ListBucketResult></ListBucketResult>`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() signature {
		mu.Lock()
		defer mu.Unlock()
		return sig
	}
}

// check makes a Client for cfg on a fake S3 server, and returns the
// signature of its Check.
func check(t *testing.T, cfg s3.Config) signature {
	t.Helper()
	endpoint, last := fakeS3(t)
	cfg.Bucket, cfg.Endpoint, cfg.MaxAttempts = "b", endpoint, 1
	c, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := c.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	return last()
}

// stsServer is a fake STS. Its handler gets the parsed form of each
// AssumeRoleWithWebIdentity request, after the server checked that it is
// one and is not signed.
type stsServer struct {
	URL   string
	calls atomic.Int32

	mu   sync.Mutex
	form url.Values // of the last request
}

func newSTS(t *testing.T, respond func(w http.ResponseWriter, form url.Values)) *stsServer {
	t.Helper()
	s := &stsServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "" ||
			!strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			http.Error(w, "want an unsigned form POST", http.StatusBadRequest)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.form = r.PostForm
		s.mu.Unlock()
		if r.PostForm.Get("Action") != "AssumeRoleWithWebIdentity" || r.PostForm.Get("Version") != "2011-06-15" {
			http.Error(w, "unknown action", http.StatusBadRequest)
			return
		}
		respond(w, r.PostForm)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *stsServer) lastForm() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.form
}

// stsCredentials answers with credentials that expire after ttl.
func stsCredentials(ttl time.Duration) func(http.ResponseWriter, url.Values) {
	return func(w http.ResponseWriter, _ url.Values) {
		fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>AKIDSTS</AccessKeyId>
      <SecretAccessKey>sts-secret</SecretAccessKey>
      <SessionToken>sts-session</SessionToken>
      <Expiration>%s</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>`, time.Now().Add(ttl).UTC().Format(time.RFC3339))
	}
}

// containerServer is a fake container credentials endpoint that wants the
// authorization token.
func containerServer(t *testing.T, token string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != token {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"code":"Unauthorized","message":"wrong token"}`)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId": "AKIDCONTAINER", "SecretAccessKey": "container-secret", "Token": "container-session",
			"Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// imdsServer is a fake EC2 instance metadata service that only speaks
// IMDSv2 and has the instance role role ("": none).
func imdsServer(t *testing.T, role string) string {
	t.Helper()
	const token = "imds-api-token"
	const credsPath = "/latest/meta-data/iam/security-credentials/"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			if r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "" {
				http.Error(w, "no TTL", http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			io.WriteString(w, token)
		case r.Header.Get("X-Aws-Ec2-Metadata-Token") != token:
			http.Error(w, "IMDSv2 token required", http.StatusUnauthorized)
		case role != "" && strings.TrimSuffix(r.URL.Path, "/")+"/" == credsPath:
			io.WriteString(w, role+"\n")
		case role != "" && r.URL.Path == credsPath+role:
			json.NewEncoder(w).Encode(map[string]string{
				"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": time.Now().UTC().Format(time.RFC3339),
				"AccessKeyId": "AKIDIMDS", "SecretAccessKey": "imds-secret", "Token": "imds-session",
				"Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
			})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// merge returns the union of ms, later ones winning.
func merge(ms ...map[string]string) map[string]string {
	m := map[string]string{}
	for _, x := range ms {
		maps.Copy(m, x)
	}
	return m
}

// processScript is a credential_process script that prints out.
func processScript(out string) string {
	return "#!/bin/sh\ncat <<'EOF'\n" + out + "\nEOF\n"
}

func TestNew_Credentials(t *testing.T) {
	sts := newSTS(t, stsCredentials(time.Hour))
	var (
		static = s3.Config{AccessKeyID: "AKIDCONFIG", SecretAccessKey: "config-secret"}
		env    = map[string]string{"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "env-secret"}
		webID  = map[string]string{
			"AWS_WEB_IDENTITY_TOKEN_FILE": "~/token", "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/walsync",
			"AWS_ENDPOINT_URL_STS": sts.URL,
		}
		container = map[string]string{
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": containerServer(t, "container-token") + "/creds",
			"AWS_CONTAINER_AUTHORIZATION_TOKEN":  "container-token",
		}
		imds = map[string]string{
			"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imdsServer(t, "walsync-role"),
		}
		profile = map[string]string{
			"token":            "web-identity-jwt",
			".aws/credentials": "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n",
		}
		all = merge(env, webID, container, imds)
	)
	for _, tt := range []struct {
		name  string
		cfg   s3.Config
		env   map[string]string
		files map[string]string
		want  signature
	}{
		// Each source on its own.
		{"Config", static, nil, nil, signature{"AKIDCONFIG", "us-east-1", ""}},
		{"Env", s3.Config{}, env, nil, signature{"AKIDENV", "us-east-1", ""}},
		{"EnvSessionToken", s3.Config{}, merge(env, map[string]string{"AWS_SESSION_TOKEN": "env-session"}), nil,
			signature{"AKIDENV", "us-east-1", "env-session"}},
		{"EnvOldNames", s3.Config{}, map[string]string{"AWS_ACCESS_KEY": "AKIDOLD", "AWS_SECRET_KEY": "old-secret"}, nil,
			signature{"AKIDOLD", "us-east-1", ""}},
		{"WebIdentity", s3.Config{}, webID, profile, signature{"AKIDSTS", "us-east-1", "sts-session"}},
		{"Profile", s3.Config{}, nil, profile, signature{"AKIDPROFILE", "us-east-1", ""}},
		{"ProfileNamed", s3.Config{}, map[string]string{"AWS_PROFILE": "backup"}, merge(profile, map[string]string{
			".aws/config": "[default]\nregion = eu-west-1\n[profile backup]\nregion = eu-west-3\n",
			".aws/credentials": "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n" +
				"[backup]\naws_access_key_id = AKIDBACKUP\naws_secret_access_key = s\naws_session_token = backup-session\n",
		}), signature{"AKIDBACKUP", "eu-west-3", "backup-session"}},
		{"ProfileConfigFile", s3.Config{}, nil, map[string]string{
			".aws/config": "[profile default]\naws_access_key_id = AKIDCONFIGFILE\naws_secret_access_key = s\n",
		}, signature{"AKIDCONFIGFILE", "us-east-1", ""}},
		{"ProfileCredentialsFileWins", s3.Config{}, nil, merge(profile, map[string]string{
			".aws/config": "[default]\naws_access_key_id = AKIDCONFIGFILE\naws_secret_access_key = s\nregion = ca-central-1\n",
		}), signature{"AKIDPROFILE", "ca-central-1", ""}},
		{"ProfileFilesFromEnv", s3.Config{}, map[string]string{
			"AWS_CONFIG_FILE": "~/etc/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "~/etc/aws-credentials",
		}, merge(profile, map[string]string{
			"etc/aws-config":      "[default]\nregion = ap-northeast-1\n",
			"etc/aws-credentials": "[default]\naws_access_key_id = AKIDETC\naws_secret_access_key = s\n",
		}), signature{"AKIDETC", "ap-northeast-1", ""}},
		{"ProfileINISyntax", s3.Config{}, nil, map[string]string{
			".aws/config": "# comment\r\n; comment\r\n\r\n[ default ] ; the default\r\ns3 =\r\n  region = xx-nested-1\r\n" +
				"REGION=us-west-2\r\n[profile other]\r\nregion = eu-west-1\r\n",
			".aws/credentials": "\ufeff[default]\n  aws_access_key_id =  AKIDINI \naws_secret_access_key=a#b;c\n",
		}, signature{"AKIDINI", "us-west-2", ""}},
		{"ProfileProcess", s3.Config{}, nil, map[string]string{
			".aws/config": "[default]\ncredential_process = sh ~/creds.sh --profile x\n",
			"creds.sh": processScript(`{"Version": 1, "AccessKeyId": "AKIDPROCESS", "SecretAccessKey": "process-secret",` +
				` "SessionToken": "process-session", "Expiration": "` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`),
		}, signature{"AKIDPROCESS", "us-east-1", "process-session"}},
		{"Container", s3.Config{}, container, nil, signature{"AKIDCONTAINER", "us-east-1", "container-session"}},
		{"ContainerTokenFile", s3.Config{}, merge(container, map[string]string{
			"AWS_CONTAINER_AUTHORIZATION_TOKEN": "stale", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "~/container-token",
		}), map[string]string{"container-token": "container-token\n"}, signature{"AKIDCONTAINER", "us-east-1", "container-session"}},
		{"IMDS", s3.Config{}, imds, nil, signature{"AKIDIMDS", "us-east-1", "imds-session"}},

		// Precedence: every source but the ones above the winner.
		{"ConfigFirst", static, all, profile, signature{"AKIDCONFIG", "us-east-1", ""}},
		{"EnvBeforeWebIdentity", s3.Config{}, all, profile, signature{"AKIDENV", "us-east-1", ""}},
		{"WebIdentityBeforeProfile", s3.Config{}, merge(webID, container, imds), profile, signature{"AKIDSTS", "us-east-1", "sts-session"}},
		{"ProfileBeforeContainer", s3.Config{}, merge(container, imds), profile, signature{"AKIDPROFILE", "us-east-1", ""}},
		{"ProfileWithoutCredentials", s3.Config{}, merge(container, imds), map[string]string{
			".aws/config": "[default]\nregion = eu-central-1\n",
		}, signature{"AKIDCONTAINER", "eu-central-1", "container-session"}},
		{"ContainerBeforeIMDS", s3.Config{}, merge(container, imds), nil, signature{"AKIDCONTAINER", "us-east-1", "container-session"}},

		// Region.
		{"RegionDefaultEnv", static, map[string]string{"AWS_DEFAULT_REGION": "ap-south-1"}, map[string]string{
			".aws/config": "[default]\nregion = eu-central-1\n",
		}, signature{"AKIDCONFIG", "ap-south-1", ""}},
		{"RegionEnv", static, map[string]string{"AWS_REGION": "eu-north-1", "AWS_DEFAULT_REGION": "ap-south-1"}, nil,
			signature{"AKIDCONFIG", "eu-north-1", ""}},
		{"RegionConfig", s3.Config{Region: "sa-east-1", AccessKeyID: "AKIDCONFIG", SecretAccessKey: "s"},
			map[string]string{"AWS_REGION": "eu-north-1"}, nil, signature{"AKIDCONFIG", "sa-east-1", ""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t, tt.env, tt.files)
			if got := check(t, tt.cfg); got != tt.want {
				t.Fatalf("request signed by %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNew_WebIdentity(t *testing.T) {
	const role = "arn:aws:iam::123456789012:role/walsync"
	setup := func(t *testing.T, ttl time.Duration, env map[string]string) *stsServer {
		sts := newSTS(t, stsCredentials(ttl))
		isolate(t, merge(map[string]string{
			"AWS_WEB_IDENTITY_TOKEN_FILE": "~/token", "AWS_ROLE_ARN": role, "AWS_ENDPOINT_URL_STS": sts.URL,
		}, env), map[string]string{"token": "jwt-1\n"})
		return sts
	}
	newClient := func(t *testing.T) *s3.Client {
		endpoint, _ := fakeS3(t)
		c, err := s3.New(t.Context(), s3.Config{Bucket: "b", Endpoint: endpoint})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	checkN := func(t *testing.T, c *s3.Client, n int) {
		for range n {
			if err := c.Check(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("OK", func(t *testing.T) {
		sts := setup(t, time.Hour, nil)
		checkN(t, newClient(t), 1)
		form := sts.lastForm()
		for k, want := range map[string]string{"RoleArn": role, "WebIdentityToken": "jwt-1"} {
			if got := form.Get(k); got != want {
				t.Fatalf("%s=%q, want %q", k, got, want)
			}
		}
		if got := form.Get("RoleSessionName"); !strings.HasPrefix(got, "walsync-") {
			t.Fatalf("RoleSessionName=%q, want walsync-UNIXTIME", got)
		}
	})

	t.Run("SessionName", func(t *testing.T) {
		sts := setup(t, time.Hour, map[string]string{"AWS_ROLE_SESSION_NAME": "pod-1"})
		checkN(t, newClient(t), 1)
		if got, want := sts.lastForm().Get("RoleSessionName"), "pod-1"; got != want {
			t.Fatalf("RoleSessionName=%q, want %q", got, want)
		}
	})

	t.Run("Cached", func(t *testing.T) {
		sts := setup(t, time.Hour, nil)
		checkN(t, newClient(t), 3)
		if got, want := sts.calls.Load(), int32(1); got != want {
			t.Fatalf("STS calls=%d, want %d", got, want)
		}
	})

	t.Run("Refreshed", func(t *testing.T) {
		// Credentials that expire within the refresh window are fetched
		// again for each request, with the token as it is then.
		sts := setup(t, time.Minute, nil)
		c := newClient(t)
		checkN(t, c, 2)
		if got, want := sts.calls.Load(), int32(2); got != want {
			t.Fatalf("STS calls=%d, want %d", got, want)
		}
		if err := os.WriteFile(os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), []byte("jwt-2"), 0o600); err != nil {
			t.Fatal(err)
		}
		checkN(t, c, 1)
		if got, want := sts.lastForm().Get("WebIdentityToken"), "jwt-2"; got != want {
			t.Fatalf("WebIdentityToken=%q after rotation, want %q", got, want)
		}
	})

	t.Run("Retry", func(t *testing.T) {
		var n atomic.Int32
		ok := stsCredentials(time.Hour)
		sts := newSTS(t, func(w http.ResponseWriter, form url.Values) {
			if n.Add(1) == 1 {
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `<ErrorResponse><Error><Type>Sender</Type><Code>IDPCommunicationError</Code>`+
					`<Message>try again</Message></Error></ErrorResponse>`)
				return
			}
			ok(w, form)
		})
		isolate(t, map[string]string{
			"AWS_WEB_IDENTITY_TOKEN_FILE": "~/token", "AWS_ROLE_ARN": role, "AWS_ENDPOINT_URL_STS": sts.URL,
		}, map[string]string{"token": "jwt"})
		checkN(t, newClient(t), 1)
		if got, want := sts.calls.Load(), int32(2); got != want {
			t.Fatalf("STS calls=%d, want %d", got, want)
		}
	})
}

// secret is in every credential of the error tests; no error may show it.
const secret = "hunter2secret"

func TestNew_ErrCredentials(t *testing.T) {
	for _, tt := range []struct {
		name  string
		env   map[string]string
		files map[string]string
		want  string // after "s3: no AWS credentials: "
	}{
		{"EnvWithoutSecret", map[string]string{"AWS_ACCESS_KEY_ID": "AKID"}, nil,
			"$AWS_ACCESS_KEY_ID is set but not $AWS_SECRET_ACCESS_KEY"},
		{"EnvWithoutKeyID", map[string]string{"AWS_SECRET_ACCESS_KEY": secret}, nil,
			"$AWS_SECRET_ACCESS_KEY is set but not $AWS_ACCESS_KEY_ID"},
		{"WebIdentityWithoutRole", map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "~/token"}, map[string]string{"token": secret},
			"$AWS_WEB_IDENTITY_TOKEN_FILE is set but not $AWS_ROLE_ARN"},
		{"WebIdentityBadEndpoint", map[string]string{
			"AWS_WEB_IDENTITY_TOKEN_FILE": "~/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_ENDPOINT_URL_STS": "sts.example.com",
		}, map[string]string{"token": secret}, `$AWS_ENDPOINT_URL_STS: want an http or https URL`},
		{"ProfileMissing", map[string]string{"AWS_PROFILE": "prod"}, map[string]string{
			".aws/credentials": "[default]\naws_access_key_id = AKID\naws_secret_access_key = " + secret + "\n",
		}, `$AWS_PROFILE: profile "prod" not in `},
		{"ProfileWithoutSecret", nil, map[string]string{".aws/credentials": "[default]\naws_access_key_id = AKID\n"},
			`profile "default" has aws_access_key_id but no aws_secret_access_key`},
		{"ProfileSSO", map[string]string{"AWS_PROFILE": "dev"}, map[string]string{
			".aws/config": "[profile dev]\nsso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n" +
				"sso_account_id = 123456789012\nsso_role_name = Admin\n",
			".aws/credentials": "[dev]\naws_access_key_id = AKID\naws_secret_access_key = " + secret + "\n",
		}, `profile "dev" uses SSO (sso_start_url), which walsync does not support: ` +
			`point AWS_PROFILE at a profile with credential_process = aws configure export-credentials --profile dev --format process`},
		{"ProfileSSOSession", nil, map[string]string{
			".aws/config": "[default]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = r\n[sso-session corp]\nsso_region = us-east-1\n",
		}, `profile "default" uses SSO (sso_session), which walsync does not support`},
		{"ProfileAssumeRole", nil, map[string]string{
			".aws/config":      "[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n",
			".aws/credentials": "[default]\naws_access_key_id = AKID\naws_secret_access_key = " + secret + "\n",
		}, `profile "default" uses an assumed role (role_arn), which walsync does not support: ` +
			`point AWS_PROFILE at a profile with credential_process = aws configure export-credentials --profile default --format process`},
		{"ProfileCredentialSource", nil, map[string]string{".aws/config": "[default]\ncredential_source = Ec2InstanceMetadata\n"},
			`profile "default" uses an assumed role (credential_source)`},
		{"ProfileLogin", nil, map[string]string{".aws/config": "[default]\nlogin_session = arn:aws:iam::1:user/u\n"},
			`profile "default" uses aws login (login_session)`},
		{"ContainerHost", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://192.0.2.1/creds"}, nil,
			`$AWS_CONTAINER_CREDENTIALS_FULL_URI: host "192.0.2.1": want https, or http on a loopback or the ECS or EKS credentials address`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t, tt.env, tt.files)
			_, err := s3.New(t.Context(), s3.Config{Bucket: "b", Endpoint: "http://127.0.0.1:1"})
			checkOneLine(t, err, []string{"s3: no AWS credentials: " + tt.want}, secret)
			if !errors.Is(err, s3.ErrNoCredentials) {
				t.Fatalf("New err=%v, want ErrNoCredentials", err)
			}
		})
	}
}

func TestNew_ErrEnvironment(t *testing.T) {
	cfg := s3.Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "s"}
	t.Run("ConfigFile", func(t *testing.T) {
		isolate(t, nil, map[string]string{".aws/credentials": "aws_secret_access_key = " + secret + "\n[default]\n"})
		_, err := s3.New(t.Context(), cfg)
		checkOneLine(t, err, []string{"s3: read AWS configuration: ", ".aws/credentials: line 1: key outside a section"}, secret)
	})
	t.Run("Region", func(t *testing.T) {
		isolate(t, nil, map[string]string{".aws/config": "[default]\nregion = evil.com/x\n"})
		_, err := s3.New(t.Context(), cfg)
		checkOneLine(t, err, []string{`s3: region "evil.com/x": want letters, digits`})
	})
}

func TestClient_ErrCredentials(t *testing.T) {
	rejecting := newSTS(t, func(w http.ResponseWriter, form url.Values) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>`+
			`<Code>InvalidIdentityToken</Code><Message>Incorrect token audience</Message></Error><RequestId>x</RequestId></ErrorResponse>`)
	})
	webID := map[string]string{
		"AWS_WEB_IDENTITY_TOKEN_FILE": "~/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_ENDPOINT_URL_STS": rejecting.URL,
	}
	process := map[string]string{".aws/config": "[default]\ncredential_process = sh ~/creds.sh\n"}
	for _, tt := range []struct {
		name  string
		env   map[string]string
		files map[string]string
		want  []string
	}{
		{"None", nil, nil, []string{
			"no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; tried Config.AccessKeyID, " +
				`$AWS_ACCESS_KEY_ID, $AWS_WEB_IDENTITY_TOKEN_FILE, profile "default" (not in `,
			"$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, EC2 instance metadata (AWS_EC2_METADATA_DISABLED=true)",
		}},
		{"NoneInProfile", nil, map[string]string{".aws/config": "[default]\nregion = eu-west-1\n"}, []string{
			`profile "default" (no credentials in `,
		}},
		{"WebIdentityRejected", webID, map[string]string{"token": secret}, []string{
			"no AWS credentials: web identity (role arn:aws:iam::1:role/r): AssumeRoleWithWebIdentity: " +
				"InvalidIdentityToken: Incorrect token audience (HTTP 400)",
		}},
		{"WebIdentityNoToken", webID, nil, []string{"no AWS credentials: web identity (role arn:aws:iam::1:role/r): read token: "}},
		{"ProcessFails", nil, merge(process, map[string]string{"creds.sh": "exit 3"}), []string{
			`no AWS credentials: profile "default" credential_process: run: exit status 3`,
		}},
		{"ProcessFailsSecretOnStderr", nil, merge(process, map[string]string{"creds.sh": "echo " + secret + " >&2; exit 3"}), []string{
			`credential_process: run: exit status 3 (its standard error, 14 bytes, is not shown because it may hold a secret`,
		}},
		{"ProcessNotJSON", nil, merge(process, map[string]string{
			"creds.sh": processScript(`{"Version": 1, "AccessKeyId": "AKID", "SecretAccessKey": "` + secret + `"`),
		}), []string{`profile "default" credential_process: output: not JSON`}},
		{"ProcessVersion", nil, merge(process, map[string]string{
			"creds.sh": processScript(`{"Version": 2, "AccessKeyId": "AKID", "SecretAccessKey": "` + secret + `"}`),
		}), []string{`profile "default" credential_process: output: Version 2, want 1`}},
		{"ProcessNoSecret", nil, merge(process, map[string]string{
			"creds.sh": processScript(`{"Version": 1, "AccessKeyId": "AKID", "SessionToken": "` + secret + `"}`),
		}), []string{`profile "default" credential_process: output: no SecretAccessKey`}},
		{"ContainerWrongToken", map[string]string{
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": containerServer(t, "right-token"),
			"AWS_CONTAINER_AUTHORIZATION_TOKEN":  secret,
		}, nil, []string{"no AWS credentials: container credentials ($AWS_CONTAINER_CREDENTIALS_FULL_URI): ", "wrong token"}},
		{"IMDSNoRole", map[string]string{
			"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imdsServer(t, ""),
		}, nil, []string{`no AWS credentials: EC2 instance metadata (after Config.AccessKeyID, $AWS_ACCESS_KEY_ID, `}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t, tt.env, tt.files)
			endpoint, _ := fakeS3(t)
			c, err := s3.New(t.Context(), s3.Config{Bucket: "b", Endpoint: endpoint, MaxAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Check(t.Context())
			checkOneLine(t, err, append([]string{`s3: check bucket "b": no AWS credentials: `}, tt.want...), secret)
			if !errors.Is(err, s3.ErrNoCredentials) {
				t.Fatalf("Check err=%v, want ErrNoCredentials", err)
			}
		})
	}
}
