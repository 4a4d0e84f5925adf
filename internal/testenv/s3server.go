package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
)

// Credentials and region of the versitygw root user that [S3] starts.
const (
	AccessKeyID     = "walsynctest"
	SecretAccessKey = "walsynctestsecret"
	Region          = "us-east-1"
)

// server is the one versitygw process of a test binary.
type server struct {
	endpoint string
	dir      string // data and log directory, removed by stop
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has exited
	api      *s3api.Client
}

var (
	mainCalled atomic.Bool
	bucketSeq  atomic.Uint64

	srvOnce sync.Once
	srv     *server
	srvErr  error
	// srvMissing is set when the versitygw binary is absent, which skips
	// rather than fails (subject to RequireEnv).
	srvMissing bool
)

// Main runs the tests of a package, then stops the S3 server if a test
// started one and exits. Call it from TestMain in every package that uses
// [S3] or [Bucket].
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has its own cleanup to do before it
// exits: it runs the tests, stops the S3 server and returns the exit code.
func Run(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if srv != nil {
		srv.stop()
	}
	return code
}

// S3 returns the endpoint of the test binary's versitygw server, starting
// it on first use, and the name of a new, empty bucket in it. It sets
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
// AWS_EC2_METADATA_DISABLED for the test (and clears the AWS_ variables that
// would point the SDK elsewhere), so the SDK's default chain finds the
// server's credentials; like [testing.T.Setenv], it cannot be used in
// parallel tests: use [Bucket] there.
//
// Clients must use path-style addressing (the endpoint is an IP address, so
// the SDK does this by itself).
func S3(t testing.TB) (endpoint, bucket string) {
	t.Helper()
	endpoint, bucket = Bucket(t)
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       SecretAccessKey,
		"AWS_REGION":                  Region,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
		"AWS_CA_BUNDLE":               "",
		"AWS_CONFIG_FILE":             filepath.Join(os.TempDir(), "walsync-testenv-no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(os.TempDir(), "walsync-testenv-no-aws-credentials"),
	} {
		t.Setenv(k, v)
	}
	return endpoint, bucket
}

// Bucket is [S3] without the environment variables, for parallel tests:
// clients must use [AccessKeyID], [SecretAccessKey] and [Region]
// explicitly, and should disable the EC2 metadata lookup.
func Bucket(t testing.TB) (endpoint, bucket string) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("testenv: call testenv.Main(m) from TestMain to use the S3 server")
	}
	srvOnce.Do(func() { srv, srvErr = start() })
	if srvMissing {
		RequireIntegration(t, srvErr.Error())
	}
	if srvErr != nil {
		t.Fatalf("testenv: %v", srvErr)
	}
	bucket = bucketName(t.Name())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := srv.api.CreateBucket(ctx, &s3api.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("testenv: create bucket %s: %v", bucket, err)
	}
	return srv.endpoint, bucket
}

// bucketName returns a valid, unique bucket name that hints at the test.
func bucketName(test string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(test) {
		if b.Len() >= 30 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else if s := b.String(); s != "" && !strings.HasSuffix(s, "-") {
			b.WriteByte('-')
		}
	}
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("t-%s-%d-%s", strings.Trim(b.String(), "-"), bucketSeq.Add(1), hex.EncodeToString(r[:]))
}

// start starts versitygw on a free port of 127.0.0.1 and waits until it
// answers its health check. A port taken between choosing and binding it
// is retried.
func start() (*server, error) {
	bin := os.Getenv("WALSYNC_VERSITYGW")
	env := "WALSYNC_VERSITYGW"
	if bin == "" {
		p, err := toolPath("versitygw", VersitygwVersion)
		if err != nil {
			srvMissing = true
			return nil, fmt.Errorf("versitygw %s: %w (set %s to its path)", VersitygwVersion, err, env)
		}
		bin = p
	}
	if err := checkExecutable(bin); err != nil {
		srvMissing = true
		return nil, fmt.Errorf("versitygw %s: %w (set %s to its path)", VersitygwVersion, err, env)
	}
	dir, err := os.MkdirTemp("", "walsync-versitygw-")
	if err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	for attempt := 1; ; attempt++ {
		s, err := startOn(bin, dir, root)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

var errPortTaken = errors.New("port already in use")

// startOn starts one versitygw process on a free port.
func startOn(bin, dir, root string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	log, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(bin, "--port", addr, "--health", "/health", "--quiet", "posix", root)
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY="+AccessKeyID, "ROOT_SECRET_KEY="+SecretAccessKey, "VGW_REGION="+Region)
	cmd.Stdout, cmd.Stderr = log, log
	killWithParent(cmd)

	s := &server{endpoint: "http://" + addr, dir: dir, cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The process is tied to this OS thread's life (see
		// killWithParent), so the thread stays locked, and alive, until the
		// process has exited.
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			cmd.Wait()
		}
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	if err := s.waitReady(10 * time.Second); err != nil {
		s.kill()
		out, _ := os.ReadFile(log.Name())
		if bytes.Contains(out, []byte("address already in use")) {
			return nil, errPortTaken
		}
		return nil, fmt.Errorf("start versitygw: %w; its log:\n%s", err, out)
	}
	s.api = s3api.New(s3api.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	})
	return s, nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// waitReady polls the health endpoint until it answers 200, the process
// exits or timeout passes.
func (s *server) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(s.endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return errors.New("versitygw exited")
		case <-deadline:
			return fmt.Errorf("versitygw not ready after %v", timeout)
		case <-tick.C:
		}
	}
}

// kill kills the server and waits for it to exit.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// stop kills the server and removes its data.
func (s *server) stop() {
	s.kill()
	os.RemoveAll(s.dir)
}

// ObjectPath returns the file in which the test server stores an object,
// so that tests can damage it behind the S3 API. The server must have been
// started by [S3] or [Bucket].
func ObjectPath(t testing.TB, bucket, key string) string {
	t.Helper()
	if srv == nil {
		t.Fatal("testenv: no S3 server started")
	}
	return filepath.Join(srv.dir, "root", bucket, filepath.FromSlash(key))
}
