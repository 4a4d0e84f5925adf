// Package redact removes secrets from URLs, and from text that quotes URLs,
// before they reach an error message or a log.
//
//	redact.URL("s3://AKIA…:SECRET@bucket/p")             // "s3://REDACTED@bucket/p"
//	redact.URL("https://h/k?X-Amz-Signature=abc")       // "https://h/k?X-Amz-Signature=REDACTED"
//	redact.Text(`Put "http://u:p@h/k": EOF`)            // `Put "http://REDACTED@h/k": EOF`
//
// Both work on input that is not a valid URL (a bad percent-escape, a
// password holding '/' or '#'), which Go's url.Parse would quote whole in
// its error. They err on the side of hiding too much: user information,
// anything that may be user information, fragments, and the values of
// query parameters not known to be harmless are replaced by [Mark].
package redact

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Mark replaces what is redacted.
const Mark = "REDACTED"

// shownParams are the query parameters whose values are shown, each with
// the form its value must have to be shown: walsync's own target
// parameters and the S3 API's that carry no secret. An endpoint value is
// itself redacted as a URL.
var shownParams = map[string]func(string) bool{
	"endpoint":       func(string) bool { return true },
	"region":         regexp.MustCompile(`^[a-z0-9-]{1,32}$`).MatchString,
	"path-style":     isBool,
	"forcePathStyle": isBool,
	"partNumber":     isDigits,
	"max-keys":       isDigits,
	"list-type":      isDigits,
	"uploads":        isEmpty,
	"delete":         isEmpty,
}

func isBool(s string) bool {
	_, err := strconv.ParseBool(s)
	return err == nil
}

func isDigits(s string) bool { return s != "" && len(s) <= 10 && strings.Trim(s, "0123456789") == "" }

func isEmpty(s string) bool { return s == "" }

// URL returns raw, a URL or what was meant to be one, in a form safe to
// show. A string without "scheme://" is shown only if it is an absolute
// path without ':', '@', '?' or '#'; otherwise it is [Mark].
func URL(raw string) string {
	scheme, rest, ok := cutScheme(raw)
	if !ok {
		if strings.HasPrefix(raw, "/") && !strings.ContainsAny(raw, ":@?#") && !hasControl(raw) {
			return raw
		}
		return Mark
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if at := userinfoEnd(rest); at >= 0 {
		b.WriteString(Mark)
		b.WriteString("@")
		rest = rest[at+1:]
	}
	hier, query, frag := rest, "", ""
	hasQuery, hasFrag := false, false
	if i := strings.IndexAny(hier, "?#"); i >= 0 {
		hier, query = hier[:i], hier[i:]
		if query[0] == '#' {
			query, frag, hasFrag = "", query[1:], true
		} else if j := strings.IndexByte(query, '#'); j >= 0 {
			query, frag, hasFrag = query[1:j], query[j+1:], true
			hasQuery = true
		} else {
			query, hasQuery = query[1:], true
		}
	}
	if hasControl(hier) {
		hier = Mark
	}
	b.WriteString(hier)
	if hasQuery {
		b.WriteString("?")
		b.WriteString(redactQuery(query))
	}
	if hasFrag && frag != "" {
		b.WriteString("#" + Mark)
	}
	return b.String()
}

// HasUserinfo reports whether raw, a URL or what was meant to be one, holds
// user information (a user name or password before the host), or something
// that may be one: "scheme://user:pa/ss@host" is not a URL with user
// information to url.Parse, but it is to the person who typed it.
func HasUserinfo(raw string) bool {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return true
	}
	_, rest, ok := cutScheme(raw)
	if !ok {
		return false
	}
	return userinfoEnd(rest) >= 0
}

// userinfoEnd returns the index of the '@' ending what may be user
// information in rest, the URL after "scheme://", or -1: the last '@' whose
// preceding text may be user information.
func userinfoEnd(rest string) int {
	for at := len(rest); ; {
		at = strings.LastIndexByte(rest[:at], '@')
		if at < 0 || userinfo(rest[:at]) {
			return at
		}
	}
}

// userinfo reports whether pre, the text between "scheme://" and an '@',
// may be user information: it has no '/' (the host's part of the
// URL), or a ':' before its first '/' that does not end a host name
// with a dot, "localhost" or an IP literal followed by a port number
// ("user:pass/word@host", "AKIA…:123/word@host", but not
// "127.0.0.1:9000/key@x").
func userinfo(pre string) bool {
	slash := strings.IndexByte(pre, '/')
	if slash < 0 {
		return true
	}
	colon := strings.LastIndexByte(pre[:slash], ':')
	if colon < 0 {
		return false
	}
	host, port := pre[:colon], pre[colon+1:slash]
	isHost := host == "localhost" || strings.HasPrefix(host, "[") ||
		strings.Contains(host, ".") && !strings.ContainsAny(host, ":?#")
	return !isHost || port == "" || strings.Trim(port, "0123456789") != ""
}

// cutScheme splits "scheme://rest".
func cutScheme(raw string) (scheme, rest string, ok bool) {
	scheme, rest, ok = strings.Cut(raw, "://")
	if !ok || scheme == "" || !isScheme(scheme) {
		return "", "", false
	}
	return scheme, rest, true
}

func isScheme(s string) bool {
	for i, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// redactQuery redacts a raw query, parameter by parameter, without
// requiring it to parse.
func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, v, eq := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		valid, shown := shownParams[name]
		switch {
		case !eq && shown:
		case !eq:
			parts[i] = Mark
		case shown && name == "endpoint":
			parts[i] = k + "=" + redactValue(v)
		case shown && valid(v):
		case plainName(name):
			parts[i] = k + "=" + Mark
		default:
			parts[i] = Mark + "=" + Mark
		}
	}
	return strings.Join(parts, "&")
}

// redactValue redacts the raw value of an endpoint parameter: a URL in it
// is redacted as a URL, anything else with an '@' is hidden.
func redactValue(v string) string {
	uv, err := url.QueryUnescape(v)
	if err != nil {
		uv = v
	}
	switch {
	case strings.Contains(uv, "://"):
		return URL(uv)
	case strings.ContainsAny(uv, "@") || hasControl(uv):
		return Mark
	}
	return v
}

// plainName reports whether a parameter name looks like a name (and so is
// not a secret pasted where a name goes).
func plainName(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

var (
	// quoted matches a double-quoted Go string (as %q and strconv.Quote
	// write it).
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// bareURL matches a URL in text, up to a space or a quote.
	bareURL = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'<>`]+")
	// cleanedURL matches a URL whose "//" became "/", as
	// filepath.Clean("s3://bucket/p") does.
	cleanedURL = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*:/[^/\\s\"'<>`][^\\s\"'<>`]*")
	// token matches a run of text without spaces or quotes.
	token = regexp.MustCompile("[^\\s\"'<>`]+")
	// loneUserinfo matches "user:password@" outside a URL, as in a URL
	// turned into a path ("/cwd/s3:/AKIA…:SECRET@bucket") or one without
	// "//" ("s3:AKIA…:SECRET@bucket").
	loneUserinfo = regexp.MustCompile(`[A-Za-z0-9._~%!$&()*+,;=-]+:[^@]*@`)
	// secretParam matches name=value pairs whose value is a secret:
	// SigV4 query and header parts, the AWS configuration keys, tokens,
	// passwords.
	secretParam = regexp.MustCompile(`(?i)((?:x-amz-)?(?:signature|credential|security-token)|aws_secret_access_key|aws_session_token|secret[a-z_-]*|[a-z_-]*token|password|passwd)=[^\s&"',;]+`)
)

// Text returns s with every URL in it redacted as [URL] does, quoted URLs
// included (as url.Error and %q print them), and with the values of
// name=value pairs that look secret (Signature=, X-Amz-Credential=,
// aws_secret_access_key=, ...token=, password=) replaced by [Mark]. A
// "user:password@" outside a URL, as a URL mangled into a path becomes, is
// replaced by "REDACTED@".
func Text(s string) string {
	if !strings.ContainsAny(s, "=@") && !strings.Contains(s, ":/") {
		return s
	}
	s = quoted.ReplaceAllStringFunc(s, func(q string) string {
		u, err := strconv.Unquote(q)
		if err != nil || !strings.Contains(u, "://") {
			return q
		}
		if _, _, ok := cutScheme(u); ok && !strings.ContainsAny(u, " \t\n") {
			return strconv.Quote(URL(u)) // a quoted URL, as url.Error prints it
		}
		return strconv.Quote(textURLs(u))
	})
	s = textURLs(s)
	s = token.ReplaceAllStringFunc(s, func(t string) string {
		if !strings.Contains(t, "@") || strings.Contains(t, "://") {
			return t
		}
		return loneUserinfo.ReplaceAllString(t, Mark+"@")
	})
	return secretParam.ReplaceAllString(s, "${1}="+Mark)
}

// textURLs redacts the bare URLs in s, those whose "//" a path cleaning
// turned into "/" included.
func textURLs(s string) string {
	s = bareURL.ReplaceAllStringFunc(s, trailing(URL))
	return cleanedURL.ReplaceAllStringFunc(s, trailing(func(m string) string {
		scheme, rest, _ := strings.Cut(m, ":/")
		return strings.Replace(URL(scheme+"://"+rest), "://", ":/", 1)
	}))
}

// trailing returns f applied to a match without its trailing punctuation
// (the ':' of "open URL: ..."), which it keeps.
func trailing(f func(string) string) func(string) string {
	return func(m string) string {
		t := strings.TrimRight(m, ":,;.)")
		return f(t) + m[len(t):]
	}
}
