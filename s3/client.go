// Package s3 stores walsync objects in an S3 bucket, or any S3-compatible
// service. [Client] implements [replicate.Storage] by speaking the S3 REST
// API with net/http, signing requests with aws-sdk-go-v2's SigV4 signer;
// the SDK also supplies the credentials.
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
// which whole-object reads verify. Objects are never overwritten.
//
// Caveats: the never-overwrite guarantee needs a server that honours
// If-None-Match on PutObject (AWS S3 and versitygw do; check others).
// Credentials come from Config or the SDK's default chain; set
// AWS_EC2_METADATA_DISABLED=true where no instance metadata service exists,
// or the chain probes it when no other credentials are found. Reads of
// objects without "sha256" metadata (as Litestream writes them) rely on the
// S3 checksum alone, if the object has one. Only the endpoint settings
// named in [Config] are read: not the SDK's FIPS, dual-stack or S3
// accelerate options.
//
// See https://docs.aws.amazon.com/AmazonS3/latest/API/Welcome.html.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/logging"

	"github.com/walsync/walsync/replicate"
)

var _ replicate.Storage = (*Client)(nil)

// Client is a [replicate.Storage] in one bucket, below one prefix. Keys
// passed to its methods are relative to the prefix. It is safe for
// concurrent use.
type Client struct {
	http     aws.HTTPClient
	creds    aws.CredentialsProvider // an *aws.CredentialsCache
	signer   *v4.Signer
	region   string
	attempts int

	// Requests go to scheme://host/path, where path (rawPath escaped)
	// ends in "/bucket" with path-style addressing; else host starts
	// with "bucket.".
	scheme, host, path, rawPath string
	pathStyle                   bool

	bucket   string
	prefix   string // "" or ends in "/"
	endpoint string // for error messages
}

// New returns a Client for cfg. It reads the SDK's shared configuration but
// sends no request; [Client.Check] does.
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
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = newHTTPClient()
	}
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient), // which gets AWS_CA_BUNDLE
		config.WithLogger(logging.Nop{}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	c := &Client{
		http:     awsCfg.HTTPClient,
		creds:    awsCfg.Credentials,
		signer:   v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }),
		region:   awsCfg.Region,
		attempts: cfg.MaxAttempts,
		bucket:   cfg.Bucket,
	}
	if c.region == "" {
		c.region = DefaultRegion
	}
	if c.attempts == 0 {
		c.attempts = DefaultMaxAttempts
	}
	if c.creds == nil {
		c.creds = aws.NewCredentialsCache(noCredentials{})
	} else if _, ok := c.creds.(*aws.CredentialsCache); !ok {
		c.creds = aws.NewCredentialsCache(c.creds)
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

// noCredentials is the provider of a configuration without one.
type noCredentials struct{}

func (noCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("no credential provider")
}

// newHTTPClient returns the client all requests of a Client share: few idle
// connections, no HTTP/2, no transparent decompression. It is an
// *awshttp.BuildableClient, so that the SDK can add AWS_CA_BUNDLE to it.
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
