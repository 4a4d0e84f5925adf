package dirstore_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/walsync/walsync/internal/dirstore"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "dirstore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := dirstore.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx := context.Background()
	body := "hello"
	if err := s.Put(ctx, "app.db/0000/1.ltx", strings.NewReader(body), int64(len(body)), nil); err != nil {
		log.Fatal(err)
	}
	for info, err := range s.List(ctx, "app.db/", "") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.Key, info.Size)
	}
	rc, err := s.Get(ctx, "app.db/0000/1.ltx", 1, 3)
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	// Output:
	// app.db/0000/1.ltx 5
	// ell
}
