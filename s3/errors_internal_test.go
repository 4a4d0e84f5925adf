package s3

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/walsync/walsync/replicate"
)

// TestWrapRefused: answers that the same request can never get past match
// replicate.ErrRefused (the engine then drops what it cannot upload
// instead of spooling it); transient ones do not.
func TestWrapRefused(t *testing.T) {
	c := &Client{bucket: "b"}
	for _, tc := range []struct {
		status  int
		code    string
		refused bool
	}{
		{http.StatusForbidden, "AccessDenied", true},
		{http.StatusForbidden, "InvalidAccessKeyId", true},
		{http.StatusForbidden, "SignatureDoesNotMatch", true},
		{http.StatusForbidden, "RequestTimeTooSkewed", false},
		{http.StatusBadRequest, "ExpiredToken", false},
		{http.StatusNotFound, "NoSuchBucket", true},
		{http.StatusBadRequest, "KeyTooLongError", true},
		{http.StatusBadRequest, "EntityTooLarge", true},
		{http.StatusBadRequest, "InvalidArgument", true},
		{http.StatusNotFound, "NoSuchKey", false},
		{http.StatusPreconditionFailed, "PreconditionFailed", false},
		{http.StatusConflict, "OperationAborted", false},
		{http.StatusRequestTimeout, "RequestTimeout", false},
		{http.StatusTooManyRequests, "SlowDown", false},
		{http.StatusServiceUnavailable, "SlowDown", false},
		{http.StatusInternalServerError, "InternalError", false},
	} {
		err := c.wrap(context.Background(), "put", "k", &apiError{status: tc.status, code: tc.code})
		if got := errors.Is(err, replicate.ErrRefused); got != tc.refused {
			t.Errorf("%d %s: refused=%v (%v), want %v", tc.status, tc.code, got, err, tc.refused)
		}
	}
}
