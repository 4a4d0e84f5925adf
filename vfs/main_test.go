package vfs_test

import (
	"os"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(appEnv) != "" {
		os.Exit(appMain())
	}
	testenv.Main(m)
}
