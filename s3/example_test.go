package s3_test

import (
	"context"
	"log"
	"strings"

	"github.com/walsync/walsync/s3"
)

func ExampleNew() {
	ctx := context.Background()
	cfg, err := s3.ParseURL("s3://backups/prod?endpoint=http://127.0.0.1:7070&path-style=true")
	if err != nil {
		log.Fatal(err)
	}
	c, err := s3.New(ctx, cfg) // credentials from the environment, see the package doc
	if err != nil {
		log.Fatal(err)
	}
	// Fail fast, with a one-line error, on a wrong endpoint, bucket or
	// credentials.
	if err := c.Check(ctx); err != nil {
		log.Fatal(err)
	}
	body := "segment bytes"
	if err := c.Put(ctx, "app.db/0000/1.ltx", strings.NewReader(body), int64(len(body)), nil); err != nil {
		log.Fatal(err)
	}
}
