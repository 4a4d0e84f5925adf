// Package s3 stores walsync objects in an S3 bucket, or any S3-compatible
// service, with aws-sdk-go-v2. [Client] implements [replicate.Storage].
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
// carrying its SHA-256 both as the S3 checksum, which the server verifies,
// and as the user metadata "sha256", which whole-object reads verify.
// Objects are never overwritten.
//
// Caveats: the never-overwrite guarantee needs a server that honours
// If-None-Match on PutObject (AWS S3 and versitygw do; check others).
// Credentials come from Config or the SDK's default chain; set
// AWS_EC2_METADATA_DISABLED=true where no instance metadata service exists,
// or the chain probes it when no other credentials are found. Reads of
// objects without "sha256" metadata (as Litestream writes them) rely on the
// S3 checksum alone, if the object has one.
package s3

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"

	"github.com/walsync/walsync/replicate"
)

var _ replicate.Storage = (*Client)(nil)

// Client is a [replicate.Storage] in one bucket, below one prefix. Keys
// passed to its methods are relative to the prefix. It is safe for
// concurrent use.
type Client struct {
	api      *s3api.Client
	bucket   string
	prefix   string // "" or ends in "/"
	endpoint string // for error messages; "" for AWS S3
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
	attempts := cfg.MaxAttempts
	if attempts == 0 {
		attempts = DefaultMaxAttempts
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = newHTTPClient()
	}
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithLogger(logging.Nop{}),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				// No client-side retry quota: a long-running replicator
				// must keep retrying after an outage.
				o.RateLimiter = ratelimit.None
			})
		}),
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
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}
	api := s3api.NewFromConfig(awsCfg, func(o *s3api.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	c := &Client{api: api, bucket: cfg.Bucket, endpoint: endpoint}
	if cfg.Prefix != "" {
		c.prefix = cfg.Prefix + "/"
	}
	return c, nil
}

// newHTTPClient returns the client all requests of a Client share. It is an
// *awshttp.BuildableClient, so that the SDK can add AWS_CA_BUNDLE to it.
func newHTTPClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = DefaultDialTimeout }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
			tr.IdleConnTimeout = DefaultIdleConnTimeout
			tr.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
			tr.MaxIdleConns = 4 * DefaultMaxIdleConnsPerHost
		})
}

// key returns the object key of a caller's key.
func (c *Client) key(key string) *string { return aws.String(c.prefix + key) }

// Check lists at most one key under the prefix, to fail fast with a clear
// error on a wrong endpoint, bucket or credentials. Unlike HeadBucket, the
// answer carries the error code, so a wrong secret
// (SignatureDoesNotMatch) is told from an unknown key
// (InvalidAccessKeyId), and it needs only the permission List needs.
func (c *Client) Check(ctx context.Context) error {
	_, err := c.api.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{
		Bucket:  &c.bucket,
		Prefix:  aws.String(c.prefix),
		MaxKeys: aws.Int32(1),
	})
	return c.wrap(ctx, "check", fmt.Sprintf("bucket %q", c.bucket), err)
}

// Put stores size bytes read from the start of r under key, with meta plus
// the content's SHA-256 in [replicate.MetaSHA256] (replacing any value the
// caller passed). It reads r once to hash it, then sends it in one
// conditional PutObject (If-None-Match: *) with the SHA-256 as the S3
// checksum; the SDK rewinds r for retries. When the key exists (HTTP 412,
// also on a retry after an attempt that the server did store), Put compares
// SHA-256s: equal is success, different is an error matching
// [replicate.ErrExists]. Objects over [MaxObjectSize] are refused.
func (c *Client) Put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	return c.wrap(ctx, "put", key, c.put(ctx, key, r, size, meta))
}

func (c *Client) put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if size < 0 || size > MaxObjectSize {
		return fmt.Errorf("size %d outside 0..%d", size, int64(MaxObjectSize))
	}
	if err := checkMeta(meta); err != nil {
		return err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind content: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(ctxReader{ctx, r}, size))
	if err != nil {
		return fmt.Errorf("read content: %w", err)
	}
	if n < size {
		return fmt.Errorf("read %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	sum := h.Sum(nil)
	hexSum := hex.EncodeToString(sum)
	m := maps.Clone(meta)
	if m == nil {
		m = make(map[string]string, 1)
	}
	m[replicate.MetaSHA256] = hexSum
	body := &section{r: r, size: size}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind content: %w", err)
	}
	_, err = c.api.PutObject(ctx, &s3api.PutObjectInput{
		Bucket:         &c.bucket,
		Key:            c.key(key),
		Body:           body,
		ContentLength:  aws.Int64(size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum)),
		Metadata:       m,
		IfNoneMatch:    aws.String("*"),
	})
	if code, status := errCode(err), httpStatus(err); code == "PreconditionFailed" || status == http.StatusPreconditionFailed ||
		code == "ConditionalRequestConflict" {
		return c.sameContent(ctx, key, hexSum, size)
	}
	return err
}

// sameContent decides a Put refused because key exists: nil if the stored
// object has the SHA-256 hexSum, else an error matching
// [replicate.ErrExists]. An object without "sha256" metadata is hashed.
func (c *Client) sameContent(ctx context.Context, key, hexSum string, size int64) error {
	info, err := c.head(ctx, key)
	if isNotFound(err) {
		return errors.New("conditional put refused, but the object is gone (deleted concurrently?)")
	}
	if err != nil {
		return err
	}
	if info.Size != size {
		return fmt.Errorf("%w: stored size %d, new size %d", replicate.ErrExists, info.Size, size)
	}
	stored := info.Metadata[replicate.MetaSHA256]
	if stored == "" {
		if stored, err = c.hashObject(ctx, key); err != nil {
			return err
		}
	}
	if stored != hexSum {
		return fmt.Errorf("%w: stored sha256 %s, new sha256 %s", replicate.ErrExists, stored, hexSum)
	}
	return nil
}

// hashObject returns the hex SHA-256 of the content stored under key.
func (c *Client) hashObject(ctx context.Context, key string) (string, error) {
	rc, err := c.get(ctx, key, 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
	out, err := c.api.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &c.bucket, Key: c.key(key)})
	if err != nil {
		return replicate.ObjectInfo{}, err
	}
	return replicate.ObjectInfo{
		Key:      key,
		Size:     aws.ToInt64(out.ContentLength),
		ModTime:  aws.ToTime(out.LastModified),
		Metadata: lowerKeys(out.Metadata),
	}, nil
}

// lowerKeys returns m with lower-case keys.
func lowerKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// List yields the objects whose keys (relative to the prefix) start with
// prefix and sort after startAfter, in ascending order, one
// ListObjectsV2 page of up to 1000 keys at a time.
func (c *Client) List(ctx context.Context, prefix, startAfter string) iter.Seq2[replicate.ObjectInfo, error] {
	return func(yield func(replicate.ObjectInfo, error) bool) {
		in := &s3api.ListObjectsV2Input{Bucket: &c.bucket, Prefix: c.key(prefix)}
		if startAfter != "" {
			in.StartAfter = c.key(startAfter)
		}
		pages := s3api.NewListObjectsV2Paginator(c.api, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(replicate.ObjectInfo{}, c.wrap(ctx, "list", prefix, err))
				return
			}
			for _, obj := range page.Contents {
				info := replicate.ObjectInfo{
					Key:     strings.TrimPrefix(aws.ToString(obj.Key), c.prefix),
					Size:    aws.ToInt64(obj.Size),
					ModTime: aws.ToTime(obj.LastModified),
				}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}

// maxDeleteKeys is the most keys one DeleteObjects request takes.
const maxDeleteKeys = 1000

// Delete removes keys with DeleteObjects, up to 1000 per request. Missing
// keys are not an error; the first key the server failed to delete is.
func (c *Client) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if key == "" {
			return c.wrap(ctx, "delete", "", errors.New("empty key"))
		}
	}
	for batch := range slices.Chunk(keys, maxDeleteKeys) {
		objs := make([]types.ObjectIdentifier, len(batch))
		for i, key := range batch {
			objs[i] = types.ObjectIdentifier{Key: c.key(key)}
		}
		out, err := c.api.DeleteObjects(ctx, &s3api.DeleteObjectsInput{
			Bucket: &c.bucket,
			Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return c.wrap(ctx, "delete", batch[0], err)
		}
		for _, e := range out.Errors {
			code := aws.ToString(e.Code)
			if code == "NoSuchKey" {
				continue
			}
			key := strings.TrimPrefix(aws.ToString(e.Key), c.prefix)
			msg := fmt.Sprintf("s3: delete %s: %s: %s", key, code, oneLine(aws.ToString(e.Message)))
			if n := len(out.Errors); n > 1 {
				msg += fmt.Sprintf(" (and %d more)", n-1)
			}
			var kind error
			if authCodes[code] {
				kind = ErrAccessDenied
			}
			return &opError{msg: msg, kind: kind, err: errors.New(code)}
		}
	}
	return nil
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

// section is the first size bytes of r: a body the SDK can measure, rewind
// for retries, and never read past.
type section struct {
	r    io.ReadSeeker
	size int64
	off  int64
}

func (s *section) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if left := s.size - s.off; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := s.r.Read(p)
	s.off += int64(n)
	if err == io.EOF && s.off < s.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (s *section) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.size
	}
	if offset < 0 || offset > s.size {
		return s.off, fmt.Errorf("seek to %d outside 0..%d", offset, s.size)
	}
	if _, err := s.r.Seek(offset, io.SeekStart); err != nil {
		return s.off, err
	}
	s.off = offset
	return offset, nil
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
