package dirstore

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"

	"github.com/walsync/walsync/internal/redact"
)

// ParseURL returns the directory of a file:// target URL,
// file:///absolute/dir (or file://localhost/absolute/dir). Percent-escapes
// in the path are decoded. User information is refused, as are a query, a
// fragment and any other host. Errors show the URL redacted ([redact.URL])
// and never repeat user information.
func ParseURL(s string) (string, error) {
	bad := func(why string) (string, error) {
		shown := ""
		if r := redact.URL(s); r != redact.Mark {
			shown = " " + strconv.Quote(r)
		}
		return "", fmt.Errorf("dirstore: invalid URL%s: %s", shown, why)
	}
	if redact.HasUserinfo(s) {
		return bad("credentials in the URL are not accepted (a file:// target takes none)")
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		// Not the error's own words, which quote the bad escape.
		var ee url.EscapeError
		if errors.As(err, &ee) {
			return bad("invalid percent-escape")
		}
		return bad("not a URL")
	}
	switch {
	case u.Scheme != "file":
		return bad("want scheme file://")
	case u.Opaque != "" || u.Host != "" && u.Host != "localhost":
		return bad("file URLs take an absolute path: file:///dir")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("file URLs take no query or fragment: file:///dir")
	case !filepath.IsAbs(u.Path):
		return bad("file URLs take an absolute path: file:///dir")
	}
	return u.Path, nil
}
