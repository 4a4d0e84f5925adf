package s3

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/walsync/walsync/internal/redact"
	"github.com/walsync/walsync/replicate"
)

// Errors returned by the s3 package besides the [replicate.Storage]
// sentinels. Errors from the server also match smithy.APIError
// (github.com/aws/smithy-go) with errors.As, for their S3 error code.
var (
	// ErrAccessDenied is returned when the server rejects the credentials
	// (InvalidAccessKeyId, SignatureDoesNotMatch, ...) or denies the request.
	ErrAccessDenied = errors.New("access denied")

	// ErrBucketNotExist is returned when the bucket does not exist.
	ErrBucketNotExist = errors.New("bucket does not exist")

	// ErrUnreachable is returned when a request could not be sent or its
	// response not received: connection refused, DNS failure, timeout.
	ErrUnreachable = errors.New("endpoint unreachable")

	// ErrNoCredentials is returned when no credential source (see the
	// package doc) is set up, or the one set up is unusable or fails.
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

// apiError is an error response of the server: its HTTP status and the Code
// and Message of its XML body. Bodiless responses (to HEAD) get a code
// made from the status, as the SDK does.
type apiError struct {
	status  int
	code    string
	message string
}

var _ smithy.APIError = (*apiError)(nil)

func (e *apiError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.code, e.status)
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", e.code, oneLine(e.message), e.status)
}

// ErrorCode, ErrorMessage and ErrorFault implement smithy.APIError.
func (e *apiError) ErrorCode() string    { return e.code }
func (e *apiError) ErrorMessage() string { return e.message }
func (e *apiError) ErrorFault() smithy.ErrorFault {
	if e.status >= 500 {
		return smithy.FaultServer
	}
	return smithy.FaultClient
}

// notFound reports whether e says that an object does not exist.
func (e *apiError) notFound() bool {
	return e.code == "NoSuchKey" || e.code == "NotFound" || e.status == http.StatusNotFound
}

// retryable reports whether a request that got e may succeed if sent again.
func (e *apiError) retryable() bool {
	switch e.status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	switch e.code {
	case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling", "ThrottlingException":
		return true
	}
	return false
}

// maxErrorBody is the most of an error response's body that is read.
const maxErrorBody = 64 << 10

// readError turns an error response into an *apiError and closes its body.
func readError(resp *http.Response) *apiError {
	defer resp.Body.Close()
	e := &apiError{status: resp.StatusCode}
	var body struct {
		Code    string
		Message string
	}
	if b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody)); err == nil && len(b) > 0 {
		xml.Unmarshal(b, &body) // a body that is not S3 XML leaves Code empty
	}
	e.code, e.message = body.Code, body.Message
	if e.code == "" {
		switch e.status {
		case http.StatusNotFound:
			e.code = "NotFound"
		case http.StatusPreconditionFailed:
			e.code = "PreconditionFailed"
		default:
			e.code = strings.ReplaceAll(http.StatusText(e.status), " ", "")
		}
		if e.code == "" {
			e.code = fmt.Sprintf("HTTP%d", e.status)
		}
	}
	return e
}

// sendError is a request that could not be sent or whose response was not
// received. Its message has the request's URL (which url.Error quotes)
// redacted.
type sendError struct{ err error }

func (e *sendError) Error() string { return "send request: " + redact.Text(e.err.Error()) }
func (e *sendError) Unwrap() error { return e.err }

// credentialsError is a failure of the credential provider.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return "get credentials: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// opError is an error with a short, one-line message that still unwraps to
// the underlying error and to a sentinel.
type opError struct {
	msg     string
	kind    error // a sentinel, or nil
	err     error // the underlying error
	refused bool  // also matches replicate.ErrRefused
}

func (e *opError) Error() string { return e.msg }

func (e *opError) Unwrap() []error {
	errs := []error{e.err}
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.refused {
		errs = append(errs, replicate.ErrRefused)
	}
	return errs
}

// refusedFor reports whether an answer of the server means that the same
// request will never succeed (see [replicate.ErrRefused]): a client error
// other than not found, a timeout, a conflict, a failed precondition or
// throttling.
func refusedFor(ae *apiError) bool {
	if ae.retryable() || ae.notFound() && ae.code != "NoSuchBucket" {
		return false
	}
	switch ae.status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusPreconditionFailed, http.StatusTooManyRequests:
		return false
	}
	return ae.status >= 400 && ae.status < 500
}

// errCode returns the S3 error code of err, or "".
func errCode(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.code
	}
	return ""
}

// isNotFound reports whether err says that an object does not exist.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.notFound() && !authCodes[ae.code] && ae.code != "NoSuchBucket"
}

// wrap gives err, returned by operation op ("put", "get", ...) on what
// (a key, or a description), context once: "s3: put KEY: ...". Errors the
// callers act on get short messages and match a sentinel: missing object
// ([replicate.ErrNotExist]), missing bucket, access denied, unreachable
// endpoint, no credentials. Context errors are passed through, wrapped.
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
		// A canceled request fails in many ways (a closed connection, an
		// aborted backoff); this says what happened.
		return fmt.Errorf("%s: %w", prefix, ctxErr)
	}
	var (
		ae *apiError
		ce *credentialsError
		se *sendError
	)
	switch {
	case errors.As(err, &ae) && ae.code == "NoSuchBucket":
		return &opError{msg: fmt.Sprintf("s3: bucket %q does not exist", c.bucket), kind: ErrBucketNotExist, err: err, refused: true}
	case errors.As(err, &ae) && (authCodes[ae.code] || ae.status == http.StatusForbidden):
		return &opError{msg: fmt.Sprintf("%s: access denied (%s)", prefix, ae.code), kind: ErrAccessDenied, err: err, refused: ae.code != "RequestTimeTooSkewed" && ae.code != "ExpiredToken" && ae.code != "TokenRefreshRequired"}
	case errors.As(err, &ae) && ae.notFound():
		return &opError{msg: prefix + ": " + replicate.ErrNotExist.Error(), kind: replicate.ErrNotExist, err: err}
	case errors.As(err, &ce):
		return &opError{
			msg:  fmt.Sprintf("%s: no AWS credentials: %s", prefix, oneLine(ce.err.Error())),
			kind: ErrNoCredentials,
			err:  err,
		}
	case errors.As(err, &se):
		return &opError{msg: prefix + ": " + c.sendFailure(se.err), kind: ErrUnreachable, err: err}
	case errors.As(err, &ae) && refusedFor(ae):
		return &opError{msg: fmt.Sprintf("%s: %v", prefix, err), err: err, refused: true}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// sendFailure describes a failure to send a request, naming the endpoint.
func (c *Client) sendFailure(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // without the URL, which names the bucket and key
	}
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(err, &dns):
		return fmt.Sprintf("endpoint %s unreachable: %s", c.endpoint, oneLine(dns.Error()))
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Sprintf("endpoint %s unreachable: %s", c.endpoint, oneLine(op.Error()))
	}
	return fmt.Sprintf("endpoint %s: %s", c.endpoint, oneLine(err.Error()))
}

// oneLine joins the lines of s.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
