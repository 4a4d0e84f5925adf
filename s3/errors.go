package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/walsync/walsync/replicate"
)

// Errors returned by the s3 package besides the [replicate.Storage]
// sentinels. Errors from the server also match the SDK's error types
// (smithy.APIError) with errors.As.
var (
	// ErrAccessDenied is returned when the server rejects the credentials
	// (InvalidAccessKeyId, SignatureDoesNotMatch, ...) or denies the request.
	ErrAccessDenied = errors.New("access denied")

	// ErrBucketNotExist is returned when the bucket does not exist.
	ErrBucketNotExist = errors.New("bucket does not exist")

	// ErrUnreachable is returned when a request could not be sent or its
	// response not received: connection refused, DNS failure, timeout.
	ErrUnreachable = errors.New("endpoint unreachable")

	// ErrNoCredentials is returned when the SDK's credential chain found no
	// usable credentials.
	ErrNoCredentials = errors.New("no AWS credentials")
)

// authCodes are the S3 error codes that mean the credentials or the
// permissions are wrong.
var authCodes = map[string]bool{
	"AccessDenied":                 true,
	"AllAccessDisabled":            true,
	"ExpiredToken":                 true,
	"Forbidden":                    true, // a HEAD answered 403, which has no body
	"InvalidAccessKeyId":           true,
	"InvalidToken":                 true,
	"SignatureDoesNotMatch":        true,
	"TokenRefreshRequired":         true,
	"InvalidSecurity":              true,
	"AccountProblem":               true,
	"RequestTimeTooSkewed":         true,
	"AuthorizationQueryParameters": true,
	"XAdminUserNotFound":           true, // versitygw's InvalidAccessKeyId, with HTTP 404
}

// opError is an error with a short, one-line message that still unwraps to
// the full SDK error and to a sentinel.
type opError struct {
	msg  string
	kind error // a sentinel, or nil
	err  error // the SDK error
}

func (e *opError) Error() string { return e.msg }

func (e *opError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// errCode returns the S3 error code of err, or "".
func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus returns the HTTP status of the response that caused err, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isNotFound reports whether err says that an object does not exist.
func isNotFound(err error) bool {
	code := errCode(err)
	return code == "NoSuchKey" || code == "NotFound"
}

// wrap gives err, returned by operation op ("put", "get", ...) on what
// (a key, or a description), context once: "s3: put KEY: ...". Errors the
// callers act on get short messages and match a sentinel: missing object
// ([replicate.ErrNotExist]), missing bucket, access denied, unreachable
// endpoint. Context errors are passed through, wrapped.
func (c *Client) wrap(ctx context.Context, op, what string, err error) error {
	if err == nil {
		return nil
	}
	var oe *opError
	if errors.As(err, &oe) {
		return err // already wrapped
	}
	prefix := "s3: " + op
	if what != "" {
		prefix += " " + what
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, replicate.ErrExists) && !errors.Is(err, replicate.ErrChecksum) {
		// The SDK's error for a canceled request is long and may not
		// match ctxErr; this says what happened.
		return fmt.Errorf("%s: %w", prefix, ctxErr)
	}
	code, status := errCode(err), httpStatus(err)
	switch {
	case code == "NoSuchBucket":
		return &opError{msg: fmt.Sprintf("s3: bucket %q does not exist", c.bucket), kind: ErrBucketNotExist, err: err}
	case isNotFound(err):
		return &opError{msg: prefix + ": " + replicate.ErrNotExist.Error(), kind: replicate.ErrNotExist, err: err}
	case authCodes[code] || status == http.StatusForbidden:
		if code == "" {
			code = http.StatusText(status)
		}
		return &opError{msg: fmt.Sprintf("%s: access denied (%s)", prefix, code), kind: ErrAccessDenied, err: err}
	}
	// The SDK reports a failed credential chain only in the message.
	if _, detail, ok := strings.Cut(err.Error(), "get identity: "); ok {
		return &opError{
			msg:  fmt.Sprintf("%s: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): %s", prefix, oneLine(detail)),
			kind: ErrNoCredentials,
			err:  err,
		}
	}
	var se *smithyhttp.RequestSendError
	if errors.As(err, &se) {
		return &opError{msg: prefix + ": " + c.sendFailure(se.Err), kind: ErrUnreachable, err: err}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// sendFailure describes a failure to send a request, naming the endpoint.
func (c *Client) sendFailure(err error) string {
	endpoint := c.endpoint
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" && endpoint == "" {
			endpoint = u.Scheme + "://" + u.Host // AWS: the host the SDK chose
		}
		err = ue.Err
	}
	if endpoint == "" {
		endpoint = "AWS S3"
	}
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(err, &dns):
		return fmt.Sprintf("endpoint %s unreachable: %s", endpoint, oneLine(dns.Error()))
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Sprintf("endpoint %s unreachable: %s", endpoint, oneLine(op.Error()))
	}
	return fmt.Sprintf("endpoint %s: %s", endpoint, oneLine(err.Error()))
}

// oneLine joins the lines of s.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
