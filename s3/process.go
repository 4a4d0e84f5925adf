package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// processTimeout bounds one run of a credential_process command, and
// maxProcessOutput what is read of its output.
const (
	processTimeout   = time.Minute
	maxProcessOutput = 64 << 10
)

// process runs the credential_process command of a profile through the
// shell, with an empty standard input, and reads credentials from its
// output:
//
//	{"Version": 1, "AccessKeyId": "...", "SecretAccessKey": "...",
//	 "SessionToken": "...", "Expiration": "2006-01-02T15:04:05Z"}
//
// SessionToken and Expiration are optional. Neither its output nor its
// standard error is ever shown: a failing command may print a secret on
// either (the SDK's processcreds quotes output it cannot parse, secrets
// included, in its errors), and walsync cannot tell what is one. Errors
// say how it failed and how many bytes of standard error it wrote.
//
// See https://docs.aws.amazon.com/sdkref/latest/guide/feature-process-credentials.html.
type process struct{ command string }

// processCredentials returns the provider of the credential_process
// command.
func processCredentials(command string) aws.CredentialsProvider {
	return aws.NewCredentialsCache(process{command}, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = processExpiryWindow })
}

func (p process) Retrieve(ctx context.Context) (aws.Credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, processTimeout)
	defer cancel()
	var cmd *exec.Cmd
	if runtime.GOOS == "windows" {
		cmd = exec.CommandContext(ctx, "cmd.exe", "/C", p.command)
	} else {
		cmd = exec.CommandContext(ctx, "sh", "-c", p.command)
	}
	var out, stderr cappedBuffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return aws.Credentials{}, fmt.Errorf("run: %w", ctx.Err())
		}
		if n := stderr.Len(); n > 0 {
			size := fmt.Sprintf("%d bytes", n)
			if stderr.over {
				size = "over " + size
			}
			return aws.Credentials{}, fmt.Errorf("run: %w (its standard error, %s, is not shown "+
				"because it may hold a secret: run the command yourself to see it)", err, size)
		}
		return aws.Credentials{}, fmt.Errorf("run: %w", err)
	}
	if out.over {
		return aws.Credentials{}, fmt.Errorf("output: longer than %d bytes", maxProcessOutput)
	}
	var resp struct {
		Version         int
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		SessionToken    string
		Expiration      *time.Time
	}
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil {
		// Not the error itself, which may quote the output.
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return aws.Credentials{}, fmt.Errorf("output: not JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return aws.Credentials{}, fmt.Errorf("output: %s is not a JSON %s", te.Field, te.Type)
		}
		return aws.Credentials{}, errors.New("output: not the credentials JSON")
	}
	switch {
	case resp.Version != 1:
		return aws.Credentials{}, fmt.Errorf("output: Version %d, want 1", resp.Version)
	case resp.AccessKeyID == "":
		return aws.Credentials{}, errors.New("output: no AccessKeyId")
	case resp.SecretAccessKey == "":
		return aws.Credentials{}, errors.New("output: no SecretAccessKey")
	}
	creds := aws.Credentials{
		AccessKeyID:     resp.AccessKeyID,
		SecretAccessKey: resp.SecretAccessKey,
		SessionToken:    resp.SessionToken,
		Source:          "walsync:Process",
	}
	if resp.Expiration != nil {
		creds.CanExpire, creds.Expires = true, *resp.Expiration
	}
	return creds, nil
}

// cappedBuffer keeps the first maxProcessOutput bytes written to it.
type cappedBuffer struct {
	bytes.Buffer
	over bool // more was written
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxProcessOutput {
		b.over = true
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
