package s3

import (
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// envEndpointSTS overrides the STS endpoint of web identity credentials,
// which is otherwise https://sts.REGION.amazonaws.com/.
const envEndpointSTS = "AWS_ENDPOINT_URL_STS"

// stsAttempts is the number of attempts of an STS request.
const stsAttempts = 3

// maxSTSBody is the most of an STS response that is read.
const maxSTSBody = 64 << 10

// webIdentity gets temporary credentials from STS AssumeRoleWithWebIdentity
// for an OpenID Connect token in a file, which EKS (IAM roles for service
// accounts) keeps fresh. The request is not signed: the token is the proof.
//
// See https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html.
type webIdentity struct {
	client    aws.HTTPClient
	endpoint  string
	tokenFile string
	roleARN   string
	session   string
}

// webIdentityCredentials reads $AWS_WEB_IDENTITY_TOKEN_FILE, $AWS_ROLE_ARN
// and $AWS_ROLE_SESSION_NAME (default "walsync-UNIXTIME").
func webIdentityCredentials(region string, client aws.HTTPClient) (aws.CredentialsProvider, string, error) {
	file := os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE")
	if file == "" {
		return nil, "", nil
	}
	role := os.Getenv("AWS_ROLE_ARN")
	if role == "" {
		return nil, "", errors.New("$AWS_WEB_IDENTITY_TOKEN_FILE is set but not $AWS_ROLE_ARN")
	}
	endpoint := stsEndpoint(region)
	if e := os.Getenv(envEndpointSTS); e != "" {
		if err := validEndpoint(e); err != nil {
			return nil, "", fmt.Errorf("$%s: %w", envEndpointSTS, err)
		}
		endpoint = e
	}
	p := &webIdentity{
		client:    client,
		endpoint:  endpoint,
		tokenFile: file,
		roleARN:   role,
		session:   cmp.Or(os.Getenv("AWS_ROLE_SESSION_NAME"), "walsync-"+strconv.FormatInt(time.Now().Unix(), 10)),
	}
	cache := aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = expiryWindow })
	return cache, fmt.Sprintf("web identity (role %s)", role), nil
}

// stsEndpoint returns the regional STS endpoint of region.
func stsEndpoint(region string) string {
	if strings.HasPrefix(region, "cn-") {
		return "https://sts." + region + ".amazonaws.com.cn/"
	}
	return "https://sts." + region + ".amazonaws.com/"
}

// Retrieve reads the token and exchanges it for credentials, retrying
// network errors, 5xx and throttling.
func (p *webIdentity) Retrieve(ctx context.Context) (aws.Credentials, error) {
	token, err := os.ReadFile(p.tokenFile)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("read token: %w", err)
	}
	form := url.Values{
		"Action":           {"AssumeRoleWithWebIdentity"},
		"Version":          {"2011-06-15"},
		"RoleArn":          {p.roleARN},
		"RoleSessionName":  {p.session},
		"WebIdentityToken": {strings.TrimSpace(string(token))},
	}.Encode()
	for attempt := 1; ; attempt++ {
		creds, err := p.assumeRole(ctx, form)
		if err == nil || attempt >= stsAttempts || !stsRetryable(err) || ctx.Err() != nil {
			return creds, err
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return aws.Credentials{}, err
		}
	}
}

// assumeRole sends one AssumeRoleWithWebIdentity request with form.
func (p *webIdentity) assumeRole(ctx context.Context, form string) (aws.Credentials, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, strings.NewReader(form))
	if err != nil {
		return aws.Credentials{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("User-Agent", userAgent)
	resp, err := p.client.Do(req)
	if err != nil {
		return aws.Credentials{}, &stsSendError{err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSTSBody))
	if err != nil {
		return aws.Credentials{}, &stsSendError{err}
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string }
		}
		xml.Unmarshal(body, &e) // a body that is not STS XML leaves Code empty
		return aws.Credentials{}, &stsError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
	}
	var out struct {
		Creds struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string
			SessionToken    string
			Expiration      string
		} `xml:"AssumeRoleWithWebIdentityResult>Credentials"`
	}
	if err := xml.Unmarshal(body, &out); err != nil {
		// Not the error itself, which may quote the credentials.
		return aws.Credentials{}, errors.New("AssumeRoleWithWebIdentity response: not XML")
	}
	c := out.Creds
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return aws.Credentials{}, errors.New("AssumeRoleWithWebIdentity response: no credentials")
	}
	creds := aws.Credentials{
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		SessionToken:    c.SessionToken,
		Source:          "walsync:WebIdentity",
	}
	if c.Expiration != "" {
		exp, err := time.Parse(time.RFC3339, strings.TrimSpace(c.Expiration))
		if err != nil {
			return aws.Credentials{}, fmt.Errorf("AssumeRoleWithWebIdentity response: Expiration %q: not an RFC 3339 time", c.Expiration)
		}
		creds.CanExpire, creds.Expires = true, exp
	}
	return creds, nil
}

// stsError is an error response of STS.
type stsError struct {
	status        int
	code, message string
}

func (e *stsError) Error() string {
	code := cmp.Or(e.code, strings.ReplaceAll(http.StatusText(e.status), " ", ""), "HTTP"+strconv.Itoa(e.status))
	if e.message == "" {
		return fmt.Sprintf("AssumeRoleWithWebIdentity: %s (HTTP %d)", code, e.status)
	}
	return fmt.Sprintf("AssumeRoleWithWebIdentity: %s: %s (HTTP %d)", code, oneLine(e.message), e.status)
}

// stsSendError is an STS request that could not be sent or whose response
// was not received.
type stsSendError struct{ err error }

func (e *stsSendError) Error() string { return "AssumeRoleWithWebIdentity: " + e.err.Error() }
func (e *stsSendError) Unwrap() error { return e.err }

// stsRetryable reports whether an STS request that failed with err may
// succeed if sent again: network errors, 5xx, throttling, and the
// identity provider failing to answer STS.
func stsRetryable(err error) bool {
	var se *stsSendError
	if errors.As(err, &se) {
		return true
	}
	var e *stsError
	if !errors.As(err, &e) {
		return false
	}
	switch e.code {
	case "IDPCommunicationError", "Throttling", "ThrottlingException", "RequestLimitExceeded":
		return true
	}
	return e.status >= 500 || e.status == http.StatusTooManyRequests
}
