package s3

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/walsync/walsync/internal/redact"
)

// Defaults for [Config] fields and the HTTP client [New] builds.
const (
	// DefaultRegion is used when neither Config.Region nor the
	// environment (AWS_REGION, AWS_DEFAULT_REGION, the shared config
	// file) names a region.
	DefaultRegion = "us-east-1"

	// DefaultMaxAttempts is the number of attempts per request, the first
	// included, when Config.MaxAttempts is 0.
	DefaultMaxAttempts = 5

	// DefaultDialTimeout, DefaultResponseHeaderTimeout and
	// DefaultIdleConnTimeout bound connecting, waiting for a response and
	// keeping an idle connection; DefaultMaxIdleConnsPerHost bounds the idle
	// connections kept.
	DefaultDialTimeout           = 10 * time.Second
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultMaxIdleConnsPerHost   = 4

	// DefaultIdleTimeout is how long a request may go without moving a
	// byte, when Config.IdleTimeout is 0.
	DefaultIdleTimeout = 30 * time.Second

	// DefaultPartSize is the part size of multipart uploads when
	// Config.PartSize is 0: objects larger than this go up in parts.
	DefaultPartSize = 64 << 20

	// MinPartSize and MaxPartSize bound Config.PartSize: S3's limits on
	// the parts of a multipart upload but the last.
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30

	// MaxParts is the most parts of a multipart upload. Put uses parts
	// larger than Config.PartSize when an object needs more.
	MaxParts = 10000

	// MaxObjectSize is the largest object Put stores: the limit of a
	// multipart upload.
	MaxObjectSize = 5 << 40
)

// Environment variables [New] reads, in order, when Config.Endpoint is
// empty; they are the SDK's own.
const (
	EnvEndpointS3 = "AWS_ENDPOINT_URL_S3"
	EnvEndpoint   = "AWS_ENDPOINT_URL"
)

// Config says where a [Client] stores objects and how it connects. The zero
// value is not valid: Bucket is required. Printing a Config never shows the
// secret access key.
type Config struct {
	// Bucket is the bucket holding the objects.
	Bucket string

	// Prefix is prepended, with a "/", to every key, so that several
	// replicas can share a bucket. It has no leading or trailing slash;
	// "" stores keys at the top of the bucket.
	Prefix string

	// Endpoint is the base URL of an S3-compatible service, such as
	// "http://127.0.0.1:7070". If empty, New uses $AWS_ENDPOINT_URL_S3,
	// then $AWS_ENDPOINT_URL, then AWS S3 itself
	// (https://s3.REGION.amazonaws.com).
	Endpoint string

	// Region is the signing region. If empty, New uses $AWS_REGION,
	// $AWS_DEFAULT_REGION, the shared config file's profile, then
	// [DefaultRegion].
	Region string

	// PathStyle addresses the bucket in the URL path
	// (endpoint/bucket/key) rather than the host name
	// (bucket.endpoint/key), as most S3-compatible servers need. New
	// uses path style by itself for an endpoint that is an IP address or
	// localhost, and for a bucket name that cannot start a host name.
	PathStyle bool

	// AccessKeyID and SecretAccessKey are static credentials. If both are
	// empty, New looks for credentials in the environment, the shared
	// files, and the container and instance roles, as the package doc
	// says.
	AccessKeyID     string
	SecretAccessKey string

	// MaxAttempts is the number of attempts per request, the first
	// included, with exponential backoff in between (100 ms doubling up
	// to 5 s, jittered); 0 means [DefaultMaxAttempts]. Only network
	// errors, 5xx, throttling and request timeouts are retried.
	MaxAttempts int

	// IdleTimeout fails an attempt at a request when no byte of it moves
	// for this long: none of the request body is sent, no response
	// arrives, none of the response body is received. The attempt is then
	// retried like a network error, and a read of an object resumes where
	// it stopped. 0 means [DefaultIdleTimeout].
	IdleTimeout time.Duration

	// PartSize is the size of the parts of a multipart upload, which Put
	// uses for objects larger than PartSize: between [MinPartSize] and
	// [MaxPartSize], or 0 for [DefaultPartSize]. A Put holds no part in
	// memory, whatever the size.
	PartSize int64

	// HTTPClient sends the requests. If nil, New builds one with the
	// Default* timeouts. It also fetches credentials from STS and the
	// container and instance metadata endpoints. A custom client must be
	// an *awshttp.BuildableClient (aws/transport/http) for AWS_CA_BUNDLE
	// to work.
	HTTPClient aws.HTTPClient
}

// Validate reports the first invalid field of c, by name.
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("s3: invalid config: %w", err)
	}
	return nil
}

func (c Config) validate() error {
	if err := validBucket(c.Bucket); err != nil {
		return fmt.Errorf("Bucket %q: %w", c.Bucket, err)
	}
	if err := validPrefix(c.Prefix); err != nil {
		return fmt.Errorf("Prefix %q: %w", c.Prefix, err)
	}
	if c.Endpoint != "" {
		if err := validEndpoint(c.Endpoint); err != nil {
			return fmt.Errorf("Endpoint: %w", err)
		}
	}
	if err := validRegion(c.Region); err != nil {
		return fmt.Errorf("Region %q: %w", c.Region, err)
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return errors.New("AccessKeyID and SecretAccessKey: set both or neither")
	}
	if c.MaxAttempts < 0 {
		return fmt.Errorf("MaxAttempts %d: negative", c.MaxAttempts)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("IdleTimeout %v: negative", c.IdleTimeout)
	}
	if c.PartSize != 0 && (c.PartSize < MinPartSize || c.PartSize > MaxPartSize) {
		return fmt.Errorf("PartSize %d: want %d (5 MiB) to %d (5 GiB), or 0 for the default", c.PartSize, MinPartSize, MaxPartSize)
	}
	return nil
}

// validRegion checks a region name, which goes into host names.
func validRegion(r string) error {
	if strings.ContainsFunc(r, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' && r != '.'
	}) {
		return errors.New("want letters, digits, '-', '_' and '.'")
	}
	return nil
}

func validBucket(b string) error {
	if b == "" {
		return errors.New("required")
	}
	if len(b) > 255 {
		return errors.New("longer than 255 bytes")
	}
	for _, c := range []byte(b) {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '-' && c != '_' {
			return errors.New("want letters, digits, '.', '-' and '_'")
		}
	}
	return nil
}

func validPrefix(p string) error {
	switch {
	case p == "":
		return nil
	case !utf8.ValidString(p):
		return errors.New("not UTF-8")
	case strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/"):
		return errors.New("leading or trailing slash")
	case strings.Contains(p, "//"):
		return errors.New("empty path element")
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("control character")
	}
	return nil
}

// validEndpoint checks an endpoint URL. Its errors never repeat the URL's
// user information, nor anything that may be part of it.
func validEndpoint(e string) error {
	if redact.HasUserinfo(e) {
		return errCredentialsInURL
	}
	u, err := url.Parse(e)
	if err != nil {
		return fmt.Errorf("not a URL (want http(s)://host[:port]): %s", parseProblem(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%swant an http or https URL", quoteURL(e, ": "))
	case u.Host == "":
		return fmt.Errorf("%sno host", quoteURL(e, ": "))
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%shas a query or fragment", quoteURL(e, ": "))
	}
	return nil
}

// errCredentialsInURL refuses user information in a URL, without
// repeating it.
var errCredentialsInURL = errors.New("credentials in the URL are not accepted; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile")

// quoteURL returns a URL redacted and quoted for an error message,
// followed by sep, or "" if nothing of it can be shown.
func quoteURL(s, sep string) string {
	r := redact.URL(s)
	if r == redact.Mark {
		return ""
	}
	return strconv.Quote(r) + sep
}

// parseProblem describes an error of url.Parse or url.ParseQuery without
// the URL it quotes and without the quoted text it points at (a bad
// escape, a bad port), either of which may be part of a password.
func parseProblem(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg, _, _ := strings.Cut(err.Error(), "\"")
	if msg = strings.TrimSpace(msg); msg == "" {
		return "not a URL"
	}
	return msg
}

// shownName returns a query parameter name quoted for an error message,
// or "" if it does not look like a name (it may be a secret pasted where
// a name goes).
func shownName(k string) string {
	if k == "" || len(k) > 40 || strings.ContainsFunc(k, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && r != '-' && r != '_' && r != '.'
	}) {
		return ""
	}
	return strconv.Quote(k) + " "
}

// ParseURL parses a replica URL of the form
//
//	s3://bucket[/prefix][?endpoint=URL&region=R&path-style=true&idle-timeout=D&part-size=N]
//
// into a validated Config. idle-timeout is a Go duration ("30s"); part-size
// is a number of bytes with an optional suffix KiB, MiB or GiB ("64MiB").
// Slashes around the prefix are dropped. Credentials are not accepted in
// the URL, neither the target's nor the endpoint's. Errors show the URL
// redacted: without anything that may be user information and without its
// query.
func ParseURL(s string) (Config, error) {
	// Errors show the URL without its query, which could hold an
	// endpoint with a password.
	shown := ""
	if r := redact.URL(s); r != redact.Mark {
		if i := strings.IndexAny(r, "?#"); i >= 0 {
			r = r[:i]
		}
		shown = " " + strconv.Quote(r)
	}
	bad := func(err error) (Config, error) {
		return Config{}, fmt.Errorf("s3: invalid URL%s: %w", shown, err)
	}
	if redact.HasUserinfo(s) {
		return bad(errCredentialsInURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad(errors.New(parseProblem(err)))
	}
	switch {
	case u.Scheme != "s3":
		return bad(errors.New("want scheme s3://"))
	case u.Opaque != "":
		return bad(errors.New("want s3://bucket/prefix"))
	case u.Host == "":
		return bad(errors.New("no bucket"))
	case u.Port() != "" && strings.Contains(u.Path, "@"):
		// s3://AKIA…:123/rest-of-secret@bucket: a password holding '/'.
		return bad(errCredentialsInURL)
	case u.Port() != "" || strings.HasSuffix(u.Host, ":"):
		return bad(errors.New("a bucket has no port; put the server in ?endpoint="))
	case u.Fragment != "" || strings.HasSuffix(s, "#"):
		return bad(errors.New("unexpected fragment"))
	}
	// An endpoint with credentials is refused as such even when the
	// query does not parse.
	for _, kv := range strings.Split(u.RawQuery, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == "endpoint" {
			if uv, err := url.QueryUnescape(v); err == nil {
				v = uv
			}
			if redact.HasUserinfo(v) {
				return bad(fmt.Errorf("Endpoint: %w", errCredentialsInURL))
			}
		}
	}
	c := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad(fmt.Errorf("query: %s", parseProblem(err)))
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return bad(fmt.Errorf("parameter %sgiven %d times", shownName(k), len(vs)))
		}
		switch v := vs[0]; k {
		case "endpoint":
			c.Endpoint = v
		case "region":
			c.Region = v
		case "path-style":
			if c.PathStyle, err = strconv.ParseBool(v); err != nil {
				return bad(errors.New("path-style: want true or false"))
			}
		case "idle-timeout":
			if c.IdleTimeout, err = time.ParseDuration(v); err != nil || c.IdleTimeout <= 0 {
				return bad(errors.New("idle-timeout: want a positive duration such as 30s"))
			}
		case "part-size":
			if c.PartSize, err = parseSize(v); err != nil {
				return bad(errors.New("part-size: want a number of bytes, optionally with KiB, MiB or GiB, such as 64MiB"))
			}
		default:
			return bad(fmt.Errorf("unknown parameter %s(want endpoint, region, path-style, idle-timeout or part-size)", shownName(k)))
		}
	}
	if err := c.validate(); err != nil {
		return bad(err)
	}
	return c, nil
}

// String returns c as a URL that [ParseURL] turns back into c, without the
// credentials, HTTP client and attempts.
func (c Config) String() string {
	u := url.URL{Scheme: "s3", Host: c.Bucket}
	if c.Prefix != "" {
		u.Path = "/" + c.Prefix
	}
	q := url.Values{}
	if c.Endpoint != "" {
		q.Set("endpoint", c.Endpoint)
	}
	if c.Region != "" {
		q.Set("region", c.Region)
	}
	if c.PathStyle {
		q.Set("path-style", "true")
	}
	if c.IdleTimeout != 0 {
		q.Set("idle-timeout", c.IdleTimeout.String())
	}
	if c.PartSize != 0 {
		q.Set("part-size", formatSize(c.PartSize))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// GoString is String, so that %#v does not print the secret access key.
func (c Config) GoString() string { return c.String() }

// sizeUnits are the suffixes of part-size, largest first.
var sizeUnits = []struct {
	suffix string
	n      int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// parseSize parses a positive number of bytes with an optional binary unit.
func parseSize(s string) (int64, error) {
	unit := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, unit = num, u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > MaxPartSize/unit {
		return 0, errors.New("want a size such as 64MiB")
	}
	return n * unit, nil
}

// formatSize formats n for parseSize, in the largest unit that divides it.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
