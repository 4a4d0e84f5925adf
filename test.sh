#!/usr/bin/env bash
# Runs walsync's whole test suite. On a fresh machine it first installs what
# the tests need, pinned and cached outside the repository:
#   versitygw v1.8.0 (S3 server), Litestream v0.5.18 (interop tests): go install
#   sqlite3 CLI (external writer): Debian package, if not on PATH
#   systemd-analyze (checks the systemd unit): Debian package systemd, if not on PATH
# Integration tests must not skip here: WALSYNC_REQUIRE_INTEGRATION=1 turns a
# missing prerequisite into a failure, and any skipped test fails the run.
set -euo pipefail
cd "$(dirname "$0")"

TOOLS="${WALSYNC_TOOLS:-$HOME/.cache/walsync/tools}"
VERSITYGW_VERSION=v1.8.0
LITESTREAM_VERSION=v0.5.18

install_go_tool() { # name version package
	local dir="$TOOLS/$1-$2"
	if [ ! -x "$dir/$1" ]; then
		echo "test.sh: installing $1 $2 into $dir" >&2
		mkdir -p "$dir"
		GOBIN="$dir" go install "$3@$2"
	fi
	echo "$dir/$1"
}

export WALSYNC_VERSITYGW
WALSYNC_VERSITYGW=$(install_go_tool versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw)
export WALSYNC_LITESTREAM
WALSYNC_LITESTREAM=$(install_go_tool litestream "$LITESTREAM_VERSION" github.com/benbjohnson/litestream/cmd/litestream)

if ! command -v sqlite3 >/dev/null 2>&1; then
	echo "test.sh: installing the sqlite3 CLI (Debian package)" >&2
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null
fi
export WALSYNC_SQLITE3
WALSYNC_SQLITE3=$(command -v sqlite3)

if ! command -v systemd-analyze >/dev/null 2>&1; then # TestSystemdUnit verifies the unit
	echo "test.sh: installing systemd-analyze (Debian package systemd)" >&2
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

export WALSYNC_REQUIRE_INTEGRATION=1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_CA_BUNDLE AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3

echo "== gofmt, go vet" >&2
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed: $unformatted" >&2
	exit 1
fi
go vet ./...

echo "== go test -race" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
go test -race -count=1 -timeout 30m -v ./... >"$log" 2>&1
status=$?
set -e
grep -E '^(ok|FAIL|---|panic:|\s+--- FAIL)' "$log" | grep -v -- '--- PASS' || true
if [ "$status" != 0 ]; then
	grep -B2 -A30 -E -- '--- FAIL|^panic:' "$log" | head -300 >&2 || true
	# The messages of a failed test, wherever they are in the log.
	grep -n -E -- 'MODEL FAILURE|WARNING: DATA RACE|race detected|_test\.go:[0-9]+: .*(want|fail|exit|differ|refus)' "$log" | head -40 >&2 || true
	keep="${TMPDIR:-/tmp}/walsync-test-failed.log"
	cp "$log" "$keep" && echo "test.sh: the whole log is in $keep" >&2
	echo "test.sh: go test failed" >&2
	exit 1
fi
if grep -q -- '--- SKIP' "$log"; then
	grep -A3 -- '--- SKIP' "$log" >&2
	echo "test.sh: tests were skipped; every test must run here" >&2
	exit 1
fi

echo "== benchmarks, once each" >&2
go test -run '^$' -bench . -benchtime=1x ./... >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
grep -E '^(Benchmark|ok|FAIL)' "$log"

echo "== ncruces' VFS suites through the walsync VFS, then restores (internal/peersuite)" >&2; go run ./internal/peersuite

echo "== walsync bench --dbs 5 (restores verified)" >&2
go run ./cmd/walsync bench --dbs 5 --duration 5s --warmup 2s

echo "test.sh: all passed" >&2
