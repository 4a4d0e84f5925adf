package replicate

import (
	"github.com/ncruces/go-sqlite3"
)

// SQLiteVersion returns the version of the SQLite library linked into
// walsync (used for checkpoints and integrity checks), e.g. "3.54.1".
func SQLiteVersion() (string, error) {
	conn, err := sqlite3.Open(":memory:")
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stmt, _, err := conn.Prepare("SELECT sqlite_version()")
	if err != nil {
		return "", err
	}
	defer stmt.Close()
	if !stmt.Step() {
		return "", stmt.Err()
	}
	return stmt.ColumnText(0), nil
}
