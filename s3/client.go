// Package s3 stores walsync objects in an S3 bucket, or any S3-compatible
// service. [Client] implements [replicate.Storage] by speaking the S3 REST
// API with net/http, signing requests with aws-sdk-go-v2's SigV4 signer.
//
// Usage:
//
//	cfg, err := s3.ParseURL("s3://bucket/prefix?endpoint=http://127.0.0.1:7070")
//	if err != nil { ... }
//	c, err := s3.New(ctx, cfg)
//	if err != nil { ... }
//	if err := c.Check(ctx); err != nil { ... } // fail fast on bad settings
//
// Every object is written with one conditional PutObject (If-None-Match: *)
// carrying its SHA-256 three times: as the signed payload hash and as the S3
// checksum, which the server verifies, and as the user metadata "sha256",
// which whole-object reads verify. Objects larger than Config.PartSize go
// up as a multipart upload instead, each part streamed and checksummed the
// same way, completed with If-None-Match: * and aborted on failure. Objects
// are never overwritten. A request during which no byte moves for
// Config.IdleTimeout is retried, and a read that fails mid-body resumes.
//
// # Credentials
//
// [New] takes the credentials from the first of these sources that is set
// up; one that is set up but fails is an error, not a reason to try the
// next:
//
//  1. Config.AccessKeyID and Config.SecretAccessKey.
//  2. $AWS_ACCESS_KEY_ID (or $AWS_ACCESS_KEY), $AWS_SECRET_ACCESS_KEY (or
//     $AWS_SECRET_KEY) and $AWS_SESSION_TOKEN.
//  3. Web identity, as EKS IAM roles for service accounts set it up: the
//     token in $AWS_WEB_IDENTITY_TOKEN_FILE exchanged for the role
//     $AWS_ROLE_ARN (session $AWS_ROLE_SESSION_NAME, default
//     "walsync-UNIXTIME") with STS AssumeRoleWithWebIdentity at the
//     regional endpoint, or $AWS_ENDPOINT_URL_STS.
//  4. The profile $AWS_PROFILE (default "default") of the shared files
//     $AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials) and
//     $AWS_CONFIG_FILE (default ~/.aws/config): its credential_process, or
//     its aws_access_key_id, aws_secret_access_key and aws_session_token.
//     Profiles using SSO, aws login or an assumed role (sso_*,
//     login_session, role_arn, source_profile, credential_source) are
//     refused: give walsync a profile with "credential_process = aws
//     configure export-credentials --profile NAME --format process"
//     instead.
//  5. The container credentials endpoint of ECS tasks and EKS pod
//     identities: $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or
//     $AWS_CONTAINER_CREDENTIALS_FULL_URI, with
//     $AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or
//     $AWS_CONTAINER_AUTHORIZATION_TOKEN.
//  6. The EC2 instance metadata service (IMDSv2), unless
//     $AWS_EC2_METADATA_DISABLED is true; $AWS_EC2_METADATA_SERVICE_ENDPOINT
//     moves it.
//
// Credentials that expire are refreshed before they do. When no source is
// set up, requests fail with an error that matches [ErrNoCredentials] and
// names the sources tried. The region is Config.Region, else $AWS_REGION,
// $AWS_DEFAULT_REGION, the profile's region, or [DefaultRegion]; the
// certificates of $AWS_CA_BUNDLE (or the profile's ca_bundle) replace the
// system's.
//
// Caveats: the never-overwrite guarantee needs a server that honours
// If-None-Match on PutObject (AWS S3 and versitygw do; check others). Set
// AWS_EC2_METADATA_DISABLED=true where no instance metadata service exists,
// or requests wait for it when no other credentials are found. Reads of
// objects without "sha256" metadata (as Litestream writes them) rely on the
// S3 checksum alone, if the object has one. Only the settings named here
// and in [Config] are read: not the SDK's FIPS, dual-stack or S3
// accelerate options.
//
// See https://docs.aws.amazon.com/AmazonS3/latest/API/Welcome.html.
package s3

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"

	"github.com/walsync/walsync/replicate"
)

var _ replicate.Storage = (*Client)(nil)

// Client is a [replicate.Storage] in one bucket, below one prefix. Keys
// passed to its methods are relative to the prefix. It is safe for
// concurrent use.
type Client struct {
	http     aws.HTTPClient
	creds    aws.CredentialsProvider // a source around an *aws.CredentialsCache, or noCredentials
	signer   *v4.Signer
	region   string
	attempts int
	idle     time.Duration // see Config.IdleTimeout
	partSize int64         // see Config.PartSize

	// Requests go to scheme://host/path, where path (rawPath escaped)
	// ends in "/bucket" with path-style addressing; else host starts
	// with "bucket.".
	scheme, host, path, rawPath string
	pathStyle                   bool

	bucket   string
	prefix   string // "" or ends in "/"
	endpoint string // for error messages
}

// New returns a Client for cfg. It reads the environment and the shared
// AWS configuration files for what cfg leaves out (see the package doc),
// but sends no request; [Client.Check] does. A credential source that is
// set up but unusable is an error that matches [ErrNoCredentials].
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	endpoint := cfg.Endpoint
	for _, env := range []string{EnvEndpointS3, EnvEndpoint} {
		if endpoint != "" {
			break
		}
		if endpoint = os.Getenv(env); endpoint != "" {
			if err := validEndpoint(endpoint); err != nil {
				return nil, fmt.Errorf("s3: $%s: %w", env, err)
			}
		}
	}
	prof, err := loadProfile()
	if err != nil {
		return nil, fmt.Errorf("s3: read AWS configuration: %w", err)
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = newHTTPClient()
	}
	if bundle := cmp.Or(os.Getenv("AWS_CA_BUNDLE"), prof.get("ca_bundle")); bundle != "" {
		if httpClient, err = withCABundle(httpClient, bundle); err != nil {
			return nil, fmt.Errorf("s3: %w", err)
		}
	}
	region := cmp.Or(cfg.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"), prof.get("region"), DefaultRegion)
	if err := validRegion(region); err != nil {
		return nil, fmt.Errorf("s3: region %q: %w", region, err)
	}
	creds, err := newCredentials(ctx, cfg, prof, region, httpClient)
	if err != nil {
		return nil, fmt.Errorf("s3: %w: %w", ErrNoCredentials, err)
	}
	c := &Client{
		http:     httpClient,
		creds:    creds,
		signer:   v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }),
		region:   region,
		attempts: cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts),
		idle:     cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout),
		partSize: cmp.Or(cfg.PartSize, DefaultPartSize),
		bucket:   cfg.Bucket,
	}
	if cfg.Prefix != "" {
		c.prefix = cfg.Prefix + "/"
	}
	if endpoint == "" {
		endpoint = awsEndpoint(c.region)
	}
	if err := c.setEndpoint(endpoint, cfg.PathStyle); err != nil {
		return nil, err
	}
	return c, nil
}

// awsEndpoint returns the AWS S3 endpoint of region.
func awsEndpoint(region string) string {
	if strings.HasPrefix(region, "cn-") {
		return "https://s3." + region + ".amazonaws.com.cn"
	}
	return "https://s3." + region + ".amazonaws.com"
}

// setEndpoint sets where c sends requests: path-style if pathStyle is set,
// the endpoint's host is an IP address or localhost, or the bucket name is
// not a valid host name label; else virtual-hosted style (bucket.host).
func (c *Client) setEndpoint(endpoint string, pathStyle bool) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("s3: endpoint: %w", validEndpoint(endpoint))
	}
	c.endpoint = strings.TrimSuffix(u.Redacted(), "/")
	c.scheme, c.host = u.Scheme, u.Host
	c.path, c.rawPath = strings.TrimSuffix(u.Path, "/"), strings.TrimSuffix(u.EscapedPath(), "/")
	host := u.Hostname()
	c.pathStyle = pathStyle || net.ParseIP(host) != nil || host == "localhost" ||
		!hostLabel(c.bucket, u.Scheme == "https")
	if c.pathStyle {
		c.path += "/" + c.bucket
		c.rawPath += "/" + c.bucket
	} else {
		c.host = c.bucket + "." + c.host
	}
	return nil
}

// hostLabel reports whether bucket can prefix a host name: lower-case
// letters, digits, '-' and (except over TLS, where the certificate would
// not match) '.', 3 to 63 of them.
func hostLabel(bucket string, tls bool) bool {
	if len(bucket) < 3 || len(bucket) > 63 || bucket[0] == '-' || bucket[len(bucket)-1] == '-' {
		return false
	}
	for _, c := range []byte(bucket) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && (c != '.' || tls) {
			return false
		}
	}
	return !strings.Contains(bucket, "..")
}

// newHTTPClient returns the client all requests of a Client share: few idle
// connections, no HTTP/2, no transparent decompression. It is an
// *awshttp.BuildableClient, so that [withCABundle] can add to it.
func newHTTPClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = DefaultDialTimeout }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
			tr.IdleConnTimeout = DefaultIdleConnTimeout
			tr.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
			tr.MaxIdleConns = 4 * DefaultMaxIdleConnsPerHost
			tr.ForceAttemptHTTP2 = false
			tr.DisableCompression = true
		})
}

// withCABundle returns client trusting only the certificates in the PEM
// file named by $AWS_CA_BUNDLE or the profile's ca_bundle, as the SDK
// does. client must be an *awshttp.BuildableClient.
func withCABundle(client aws.HTTPClient, file string) (aws.HTTPClient, error) {
	bc, ok := client.(*awshttp.BuildableClient)
	if !ok {
		return nil, fmt.Errorf("CA bundle %s: Config.HTTPClient is a %T, not an *awshttp.BuildableClient", file, client)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate", file)
	}
	return bc.WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		} else {
			tr.TLSClientConfig = tr.TLSClientConfig.Clone()
		}
		tr.TLSClientConfig.RootCAs = roots
	}), nil
}

// key returns the object key of a caller's key.
func (c *Client) key(key string) string { return c.prefix + key }

// Check lists at most one key under the prefix, to fail fast with a clear
// error on a wrong endpoint, bucket or credentials. Unlike HeadBucket, the
// answer carries the error code, so a wrong secret
// (SignatureDoesNotMatch) is told from an unknown key
// (InvalidAccessKeyId), and it needs only the permission List needs.
func (c *Client) Check(ctx context.Context) error {
	_, err := c.listPage(ctx, c.prefix, "", "", 1)
	return c.wrap(ctx, "check", fmt.Sprintf("bucket %q", c.bucket), err)
}

// Head returns the size, modification time and user metadata (lower-case
// keys) of key, or an error matching [replicate.ErrNotExist].
func (c *Client) Head(ctx context.Context, key string) (replicate.ObjectInfo, error) {
	info, err := c.head(ctx, key)
	if err != nil {
		return replicate.ObjectInfo{}, c.wrap(ctx, "head", key, err)
	}
	return info, nil
}

func (c *Client) head(ctx context.Context, key string) (replicate.ObjectInfo, error) {
	if key == "" {
		return replicate.ObjectInfo{}, errors.New("empty key")
	}
	resp, err := c.do(ctx, &request{method: http.MethodHead, key: c.key(key), payload: emptySHA256})
	if err != nil {
		return replicate.ObjectInfo{}, err
	}
	discard(resp)
	size, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	if err != nil {
		return replicate.ObjectInfo{}, fmt.Errorf("HEAD response: Content-Length %q", resp.Header.Get("Content-Length"))
	}
	modTime, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return replicate.ObjectInfo{Key: key, Size: size, ModTime: modTime, Metadata: userMetadata(resp.Header)}, nil
}

// metaHeader is the prefix of user-metadata headers, canonicalized.
const metaHeader = "X-Amz-Meta-"

// userMetadata returns the user metadata in h, with lower-case keys.
func userMetadata(h http.Header) map[string]string {
	m := make(map[string]string, 2)
	for k, v := range h {
		if len(v) > 0 && len(k) > len(metaHeader) && strings.EqualFold(k[:len(metaHeader)], metaHeader) {
			m[strings.ToLower(k[len(metaHeader):])] = v[0]
		}
	}
	return m
}

// checkMeta enforces the [replicate.Storage] metadata rules: lower-case keys
// made of letters, digits, '-' and '_', and printable ASCII values.
func checkMeta(meta map[string]string) error {
	for k, v := range meta {
		if k == "" || strings.ContainsFunc(k, func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_'
		}) {
			return fmt.Errorf("metadata key %q: want lower-case letters, digits, '-' or '_'", k)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return fmt.Errorf("metadata %q: value is not printable ASCII", k)
		}
	}
	return nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
