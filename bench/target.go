package bench

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/walsync/walsync/replicate"
	"github.com/walsync/walsync/s3"
)

// targets hands out a fresh location for each run (one tool/mode at one
// database count), all under one base: a file:// directory or an s3://
// prefix. Every tool gets the same kind of target.
type targets struct {
	open func(ctx context.Context, url string) (replicate.Storage, error)

	file      string // file: the directory holding one subdirectory per run
	temporary bool   // file is the bench's own temporary directory

	s3       s3.Config      // s3: bucket, base prefix, real endpoint
	region   string         // s3: signing region given to Litestream
	proxy    *countingProxy // s3 with an endpoint: counts requests
	endpoint string         // s3: the endpoint the tools are given (the proxy's)
}

// newTargets resolves cfg.Target: a temporary directory under work when
// empty, else a new "bench-<time>" directory or prefix under the URL.
func newTargets(cfg Config, work string) (*targets, error) {
	t := &targets{open: cfg.Open}
	stamp := "bench-" + time.Now().UTC().Format("20060102T150405")
	switch {
	case cfg.Target == "":
		t.file, t.temporary = filepath.Join(work, "target"), true
	case strings.HasPrefix(cfg.Target, "file://"):
		u, err := url.Parse(cfg.Target)
		if err != nil || !filepath.IsAbs(u.Path) || (u.Host != "" && u.Host != "localhost") {
			return nil, fmt.Errorf("target %q: want file:///absolute/dir", cfg.Target)
		}
		t.file = filepath.Join(u.Path, stamp)
	case strings.HasPrefix(cfg.Target, "s3://"):
		c, err := s3.ParseURL(cfg.Target)
		if err != nil {
			return nil, err
		}
		if c.Endpoint == "" {
			c.Endpoint = cmp.Or(os.Getenv(s3.EnvEndpointS3), os.Getenv(s3.EnvEndpoint))
		}
		t.region = cmp.Or(c.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"), s3.DefaultRegion)
		c.Prefix = strings.Trim(c.Prefix+"/"+stamp, "/")
		t.s3 = c
		if c.Endpoint != "" {
			if t.proxy, err = startProxy(c.Endpoint); err != nil {
				return nil, err
			}
			t.endpoint = t.proxy.url
		}
	default:
		return nil, fmt.Errorf("target %q: want s3:// or file://", cfg.Target)
	}
	return t, nil
}

// Close stops the proxy, if any.
func (t *targets) Close() error {
	if t.proxy != nil {
		return t.proxy.Close()
	}
	return nil
}

// describe returns the base location, for progress lines.
func (t *targets) describe() string {
	if t.file != "" {
		return "file://" + t.file
	}
	s := t.s3
	s.Region = t.region
	if t.proxy != nil {
		return s.String() + " (requests counted by a proxy at " + t.proxy.url + ")"
	}
	return s.String()
}

// runTarget is where one run replicates to.
type runTarget struct {
	walsync    string                 // URL given to walsync (through the proxy, if any)
	direct     string                 // the same location without the proxy, for verification
	litestream func(db string) string // Litestream's replica URL for database file db
	count      counter
	// startClock starts observing when objects become durable in the
	// run's location; nil if the bench cannot see that.
	startClock func() (durableClock, error)
}

// durableClock tells when each object of a run became durable in its
// target, from its start until stop.
type durableClock interface {
	// name says how the times are taken: "proxy" or "inotify".
	name() string
	// stop ends the observation and returns when each object was first
	// durable, by its key relative to the run's location.
	stop() (map[string]time.Time, error)
}

// proxyClock is the durability clock of an S3 target behind the counting
// proxy: an object is durable when the server's successful response to its
// PUT reaches the proxy.
type proxyClock struct {
	p      *countingProxy
	prefix string // "bucket/prefix/" of the run
}

func (c proxyClock) name() string { return "proxy" }

func (c proxyClock) stop() (map[string]time.Time, error) { return c.p.takeStored(c.prefix), nil }

// forRun returns a location of its own for the run named label.
func (t *targets) forRun(label string) runTarget {
	if t.file != "" {
		dir := filepath.Join(t.file, label)
		return runTarget{
			walsync:    "file://" + dir,
			direct:     "file://" + dir,
			litestream: func(db string) string { return "file://" + filepath.Join(dir, db) },
			count:      fileCounter{root: dir},
			startClock: func() (durableClock, error) { return startPublishWatcher(dir) },
		}
	}
	c := t.s3
	c.Prefix = strings.Trim(c.Prefix+"/"+label, "/")
	c.Region = t.region
	c.PathStyle = c.PathStyle || c.Endpoint != ""
	direct := c.String()
	if t.proxy != nil {
		c.Endpoint = t.endpoint
	}
	rt := runTarget{
		walsync: c.String(),
		direct:  direct,
		litestream: func(db string) string {
			q := url.Values{"region": {c.Region}}
			if c.Endpoint != "" {
				q.Set("endpoint", c.Endpoint)
				q.Set("forcePathStyle", "true")
			}
			return "s3://" + c.Bucket + "/" + c.Prefix + "/" + db + "?" + q.Encode()
		},
	}
	if t.proxy != nil {
		rt.count = proxyCounter{t.proxy}
		prefix := c.Bucket + "/" + c.Prefix + "/"
		rt.startClock = func() (durableClock, error) {
			t.proxy.takeStored(prefix) // nothing from before the start
			return proxyClock{t.proxy, prefix}, nil
		}
	} else {
		rt.count = listCounter{open: t.open, url: direct}
	}
	return rt
}

// fileCounter counts the objects (files) under a file:// target, leaving
// out temporary files and dot-directories (walsync's metadata sidecars).
type fileCounter struct{ root string }

func (c fileCounter) unit() string { return "objects" }

func (c fileCounter) snapshot(ctx context.Context) (map[string]int64, error) {
	n := int64(0)
	err := filepath.WalkDir(c.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		name := d.Name()
		switch {
		case d.IsDir() && p != c.root && strings.HasPrefix(name, "."):
			return filepath.SkipDir
		case d.Type().IsRegular() && !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, ".tmp"):
			n++
		}
		return ctx.Err()
	})
	return map[string]int64{ReqPut: n}, err
}

// listCounter counts the objects under an s3:// target without an
// endpoint, where no proxy can see the requests.
type listCounter struct {
	open func(ctx context.Context, url string) (replicate.Storage, error)
	url  string
}

func (c listCounter) unit() string { return "objects" }

func (c listCounter) snapshot(ctx context.Context) (map[string]int64, error) {
	store, err := c.open(ctx, c.url)
	if err != nil {
		return nil, err
	}
	n := int64(0)
	for _, err := range store.List(ctx, "", "") {
		if err != nil {
			return nil, err
		}
		n++
	}
	return map[string]int64{ReqPut: n}, nil
}

// childEnv returns the environment of a child process. Litestream reads
// its own credential variables and fails to start when AWS_CA_BUNDLE is set
// (it passes the SDK an HTTP client the bundle cannot be applied to).
func childEnv(litestream bool) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "AWS_EC2_METADATA_DISABLED=") ||
			(litestream && strings.HasPrefix(kv, "AWS_CA_BUNDLE="))
	})
	env = append(env, "AWS_EC2_METADATA_DISABLED=true")
	if litestream {
		for _, k := range []string{"ACCESS_KEY_ID", "SECRET_ACCESS_KEY"} {
			if v, ok := os.LookupEnv("AWS_" + k); ok && os.Getenv("LITESTREAM_"+k) == "" {
				env = append(env, "LITESTREAM_"+k+"="+v)
			}
		}
	}
	return env
}
