package s3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// containerHost is where $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI points:
// the ECS credentials endpoint.
const containerHost = "http://169.254.170.2"

// Refresh credentials this long before they expire.
const (
	expiryWindow        = 5 * time.Minute // STS and container credentials, which last an hour or more
	processExpiryWindow = time.Minute     // credential_process, which may hand out credentials close to expiry
)

// finder returns the credentials provider of one source of the chain and a
// name for it, or a nil provider when the source is not configured.
type finder func() (aws.CredentialsProvider, string, error)

// newCredentials returns the provider of the first configured source of
// the chain described in the package doc, in an [aws.CredentialsCache]. A
// source that is configured but unusable (a key ID without a secret, an
// SSO profile) is an error, not a reason to try the next one. If no source
// is configured, the provider fails with an error naming the sources tried.
// client sends the requests of the STS, container and EC2 sources; region
// is the region of STS.
func newCredentials(ctx context.Context, cfg Config, prof *profile, region string, client aws.HTTPClient) (aws.CredentialsProvider, error) {
	steps := []struct {
		tried string
		find  finder
	}{
		{"Config.AccessKeyID", func() (aws.CredentialsProvider, string, error) {
			if cfg.AccessKeyID == "" {
				return nil, "", nil
			}
			return staticCredentials(cfg.AccessKeyID, cfg.SecretAccessKey, ""), "Config.AccessKeyID", nil
		}},
		{"$AWS_ACCESS_KEY_ID", envCredentials},
		{"$AWS_WEB_IDENTITY_TOKEN_FILE", func() (aws.CredentialsProvider, string, error) {
			return webIdentityCredentials(region, client)
		}},
		{prof.String(), prof.credentials},
		{"$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI", func() (aws.CredentialsProvider, string, error) {
			return containerCredentials(ctx, client)
		}},
	}
	var tried []string
	for _, s := range steps {
		p, name, err := s.find()
		if err != nil {
			return nil, err
		}
		if p != nil {
			return source{p, name}, nil
		}
		tried = append(tried, s.tried)
	}
	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		tried = append(tried, "EC2 instance metadata (AWS_EC2_METADATA_DISABLED=true)")
		return noCredentials{strings.Join(tried, ", ")}, nil
	}
	return source{imdsCredentials(client), "EC2 instance metadata (after " + strings.Join(tried, ", ") + ")"}, nil
}

// source gives the errors of a credentials provider the name of where its
// credentials come from.
type source struct {
	aws.CredentialsProvider
	name string
}

func (s source) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := s.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		// The cache's words add nothing to the provider's.
		if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), cacheErrorPrefix) {
			err = inner
		}
		return aws.Credentials{}, fmt.Errorf("%s: %w", s.name, err)
	}
	return creds, nil
}

// cacheErrorPrefix starts the errors of an [aws.CredentialsCache].
const cacheErrorPrefix = "failed to refresh cached credentials, "

// noCredentials is the provider when no source of the chain is configured.
type noCredentials struct{ tried string }

func (n noCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; tried " + n.tried)
}

// staticCredentials returns a provider of fixed credentials.
func staticCredentials(id, secret, token string) aws.CredentialsProvider {
	return aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(id, secret, token))
}

// envCredentials reads $AWS_ACCESS_KEY_ID (or $AWS_ACCESS_KEY),
// $AWS_SECRET_ACCESS_KEY (or $AWS_SECRET_KEY) and $AWS_SESSION_TOKEN.
func envCredentials() (aws.CredentialsProvider, string, error) {
	id := cmp.Or(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_ACCESS_KEY"))
	secret := cmp.Or(os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SECRET_KEY"))
	switch {
	case id == "" && secret == "":
		return nil, "", nil
	case secret == "":
		return nil, "", errors.New("$AWS_ACCESS_KEY_ID is set but not $AWS_SECRET_ACCESS_KEY")
	case id == "":
		return nil, "", errors.New("$AWS_SECRET_ACCESS_KEY is set but not $AWS_ACCESS_KEY_ID")
	}
	return staticCredentials(id, secret, os.Getenv("AWS_SESSION_TOKEN")), "$AWS_ACCESS_KEY_ID", nil
}

// containerCredentials reads the credentials endpoint of an ECS task or an
// EKS pod identity: $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on the ECS
// host) or $AWS_CONTAINER_CREDENTIALS_FULL_URI, with the token of
// $AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, read for each request, or
// $AWS_CONTAINER_AUTHORIZATION_TOKEN.
func containerCredentials(ctx context.Context, client aws.HTTPClient) (aws.CredentialsProvider, string, error) {
	var endpoint, name string
	if rel := os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		endpoint, name = containerHost+rel, "container credentials ($AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
	} else if full := os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI"); full != "" {
		if err := checkContainerEndpoint(ctx, full); err != nil {
			return nil, "", fmt.Errorf("$AWS_CONTAINER_CREDENTIALS_FULL_URI: %w", err)
		}
		endpoint, name = full, "container credentials ($AWS_CONTAINER_CREDENTIALS_FULL_URI)"
	} else {
		return nil, "", nil
	}
	token, tokenFile := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"), os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
	p := endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.HTTPClient = client
		o.AuthorizationToken = token
		if tokenFile != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return "", fmt.Errorf("$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %w", err)
				}
				return strings.TrimSpace(string(b)), nil
			})
		}
	})
	return aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = expiryWindow }), name, nil
}

// checkContainerEndpoint accepts, as the SDK does, an https URL, or an http
// URL on a loopback address or the ECS or EKS credentials address: the
// authorization token must not leave the host in clear.
func checkContainerEndpoint(ctx context.Context, endpoint string) error {
	if err := validEndpoint(endpoint); err != nil {
		return err
	}
	u, _ := url.Parse(endpoint)
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	addrs := []string{host}
	if net.ParseIP(host) == nil {
		var err error
		if addrs, err = net.DefaultResolver.LookupHost(ctx, host); err != nil {
			return err
		}
	}
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil || !ip.IsLoopback() && !ip.Equal(net.IPv4(169, 254, 170, 2)) &&
			!ip.Equal(net.IPv4(169, 254, 170, 23)) && !ip.Equal(net.ParseIP("fd00:ec2::23")) {
			return fmt.Errorf("host %q: want https, or http on a loopback or the ECS or EKS credentials address", host)
		}
	}
	return nil
}

// imdsCredentials reads the role credentials of an EC2 instance from its
// metadata service, IMDSv2 (IMDSv1 as a fallback, unless
// $AWS_EC2_METADATA_V1_DISABLED is true), at
// $AWS_EC2_METADATA_SERVICE_ENDPOINT if set.
func imdsCredentials(client aws.HTTPClient) aws.CredentialsProvider {
	o := imds.Options{HTTPClient: client}
	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_V1_DISABLED"), "true") {
		o.EnableFallback = aws.FalseTernary
	}
	return aws.NewCredentialsCache(ec2rolecreds.New(func(p *ec2rolecreds.Options) { p.Client = imds.New(o) }))
}
