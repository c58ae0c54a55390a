package summaries

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// Values of CCRELAY_AWS_CREDENTIALS. The sources a person configures
// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE
// with AWS_ROLE_ARN, AWS_PROFILE and the shared files) are always read, in
// the SDK's order. The metadata endpoints are not: off AWS, the SDK's chain
// would end by calling the EC2 instance metadata address on every attempt,
// which is noise and delay, and a link-local request ccrelay otherwise never
// makes. They are used only when named here.
const (
	// CredentialsConfigured reads only the configured sources.
	CredentialsConfigured = "configured"
	// CredentialsContainer also uses the ECS or EKS Pod Identity container
	// endpoint named by AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI.
	CredentialsContainer = "container"
	// CredentialsInstance also uses the EC2 instance role (IMDSv2).
	CredentialsInstance = "instance"
)

// errNoCredentials is what S3 calls fail with when nothing is configured:
// said once here rather than as the SDK's chain of attempts.
var errNoCredentials = errors.New("no AWS credentials configured: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, " +
	"AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, or AWS_PROFILE; or CCRELAY_AWS_CREDENTIALS=instance for the EC2 instance role, " +
	"=container for the ECS or EKS container endpoint")

func validCredentialsMode(mode string) error {
	switch mode {
	case CredentialsConfigured, CredentialsContainer, CredentialsInstance:
		return nil
	}
	return fmt.Errorf("CCRELAY_AWS_CREDENTIALS: %q is not one of %s, %s, %s", mode, CredentialsConfigured, CredentialsContainer, CredentialsInstance)
}

// loadAWS loads the SDK's configuration with the metadata endpoints mode
// allows. It reads the environment and the shared files and calls nothing.
func loadAWS(ctx context.Context, mode, region string) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	if mode != CredentialsInstance {
		// Also covers a profile whose credential_source is
		// Ec2InstanceMetadata: the client refuses without dialling.
		opts = append(opts, awsconfig.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws configuration: %w", err)
	}
	cache, _ := cfg.Credentials.(*aws.CredentialsCache)
	switch {
	case cache == nil:
	case cache.IsCredentialsProvider(&endpointcreds.Provider{}) && mode != CredentialsContainer:
		return aws.Config{}, errors.New("CCRELAY_AWS_CREDENTIALS: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI is set, " +
			"so the only AWS credentials are the container endpoint's: set CCRELAY_AWS_CREDENTIALS=container to use it")
	case cache.IsCredentialsProvider(&ec2rolecreds.Provider{}) && mode != CredentialsInstance:
		// The SDK fell through to the instance role: nothing is configured.
		cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errNoCredentials
		})
	}
	return cfg, nil
}

// credentialSource names where credentials came from, in the words of the
// settings a person made, from the SDK's aws.Credentials.Source.
func credentialSource(source string) string {
	switch {
	case source == awsconfig.CredentialsSourceName:
		return "environment (AWS_ACCESS_KEY_ID)"
	case strings.HasPrefix(source, "SharedConfigCredentials"):
		return "profile (" + strings.TrimSpace(strings.TrimPrefix(source, "SharedConfigCredentials:")) + ")"
	case source == "WebIdentityCredentials":
		return "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
	case source == endpointcreds.ProviderName:
		return "container endpoint (CCRELAY_AWS_CREDENTIALS=container)"
	case source == ec2rolecreds.ProviderName:
		return "EC2 instance role (CCRELAY_AWS_CREDENTIALS=instance)"
	case source == "":
		return "an unnamed provider"
	}
	return source // SSO, a credential process, an assumed role: the SDK's name
}
