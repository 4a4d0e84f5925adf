package replicate_test

import (
	"context"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// s3Store returns a client for a fresh bucket on the test S3 server.
func s3Store(t *testing.T) replicate.Storage {
	t.Helper()
	endpoint, bucket := testenv.S3(t)
	c, err := s3.New(context.Background(), s3.Config{Bucket: bucket, Prefix: "test", Endpoint: endpoint, Region: testenv.Region, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
