package summaries

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
)

// credentialDoc is the JSON both metadata endpoints answer with.
func credentialDoc(extra map[string]string) []byte {
	doc := map[string]string{
		"AccessKeyId": s3fake.AccessKey, "SecretAccessKey": s3fake.SecretKey, "Token": "session-token",
		"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	}
	for k, v := range extra {
		doc[k] = v
	}
	b, _ := json.Marshal(doc)
	return b
}

// imdsFake answers as EC2's instance metadata service does for a role
// (IMDSv2: a token first), counting every request.
func imdsFake(t *testing.T) (string, *atomic.Int64) {
	var calls atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
			_, _ = io.WriteString(w, "imds-token")
		case r.Header.Get("X-Aws-Ec2-Metadata-Token") != "imds-token":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			_, _ = io.WriteString(w, "ccrelay-role")
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/ccrelay-role":
			_, _ = w.Write(credentialDoc(map[string]string{"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": time.Now().UTC().Format(time.RFC3339)}))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(hs.Close)
	return hs.URL, &calls
}

// containerFake answers as the ECS container credentials endpoint does.
func containerFake(t *testing.T) (string, *atomic.Int64) {
	var calls atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = w.Write(credentialDoc(nil))
	}))
	t.Cleanup(hs.Close)
	return hs.URL + "/v2/credentials/task", &calls
}

// noAWSEnvironment clears every credential source of the SDK's chain, so
// a test sees only what it sets.
func noAWSEnvironment(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_DEFAULT_PROFILE": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "",
		"AWS_EC2_METADATA_DISABLED": "", "AWS_EC2_METADATA_SERVICE_ENDPOINT": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
	} {
		t.Setenv(k, v)
	}
}

func checked(t *testing.T, mode, endpoint string) (*Processor, error) {
	t.Helper()
	p, err := New(Config{Bucket: testBucket, S3Endpoint: endpoint, AWSCredentials: mode, MaxFileBytes: 1 << 20},
		processors.Env{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p, p.Check(ctx)
}

func source(t *testing.T, p *Processor) string {
	t.Helper()
	src, err := p.CredentialSource(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestCredentialsOnPurpose: the instance metadata endpoint is never called
// unless CCRELAY_AWS_CREDENTIALS=instance, the container endpoint is used
// only with =container, and the configured sources are read in any mode;
// the check names the source that gave the credentials.
func TestCredentialsOnPurpose(t *testing.T) {
	s3 := s3fake.New(t, testBucket)

	t.Run("nothing configured: a clear error, no metadata call", func(t *testing.T) {
		noAWSEnvironment(t)
		imds, calls := imdsFake(t)
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
		_, err := checked(t, CredentialsConfigured, s3.URL)
		if err == nil || !strings.Contains(err.Error(), "no AWS credentials configured") {
			t.Errorf("check: %v, want the no-credentials error", err)
		}
		if n := calls.Load(); n != 0 {
			t.Errorf("the instance metadata endpoint got %d requests, want none", n)
		}
	})
	t.Run("instance role when asked for", func(t *testing.T) {
		noAWSEnvironment(t)
		imds, calls := imdsFake(t)
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
		p, err := checked(t, CredentialsInstance, s3.URL)
		if err != nil {
			t.Fatal(err)
		}
		if calls.Load() == 0 {
			t.Error("the instance metadata endpoint was not asked")
		}
		if got := source(t, p); !strings.Contains(got, "EC2 instance role") {
			t.Errorf("source %q, want the EC2 instance role", got)
		}
	})
	t.Run("container endpoint set but not asked for: refused at start", func(t *testing.T) {
		noAWSEnvironment(t)
		uri, calls := containerFake(t)
		t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
		_, err := checked(t, CredentialsConfigured, s3.URL)
		if err == nil || !strings.Contains(err.Error(), "CCRELAY_AWS_CREDENTIALS=container") {
			t.Errorf("start: %v, want a refusal naming CCRELAY_AWS_CREDENTIALS=container", err)
		}
		if n := calls.Load(); n != 0 {
			t.Errorf("the container endpoint got %d requests, want none", n)
		}
	})
	t.Run("container endpoint when asked for", func(t *testing.T) {
		noAWSEnvironment(t)
		uri, calls := containerFake(t)
		t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
		p, err := checked(t, CredentialsContainer, s3.URL)
		if err != nil {
			t.Fatal(err)
		}
		if calls.Load() == 0 {
			t.Error("the container endpoint was not asked")
		}
		if got := source(t, p); !strings.Contains(got, "container endpoint") {
			t.Errorf("source %q, want the container endpoint", got)
		}
	})
	t.Run("static keys, in any mode", func(t *testing.T) {
		noAWSEnvironment(t)
		imds, calls := imdsFake(t)
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
		t.Setenv("AWS_ACCESS_KEY_ID", s3fake.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", s3fake.SecretKey)
		for _, mode := range []string{CredentialsConfigured, CredentialsInstance} {
			p, err := checked(t, mode, s3.URL)
			if err != nil {
				t.Fatal(err)
			}
			if got := source(t, p); !strings.Contains(got, "environment") {
				t.Errorf("%s: source %q, want the environment", mode, got)
			}
		}
		if n := calls.Load(); n != 0 {
			t.Errorf("the instance metadata endpoint got %d requests with keys set, want none", n)
		}
	})
	t.Run("a profile", func(t *testing.T) {
		noAWSEnvironment(t)
		file := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
		if err := os.WriteFile(file, []byte("[ccrelay]\naws_access_key_id = "+s3fake.AccessKey+"\naws_secret_access_key = "+s3fake.SecretKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_PROFILE", "ccrelay")
		p, err := checked(t, CredentialsConfigured, s3.URL)
		if err != nil {
			t.Fatal(err)
		}
		if got := source(t, p); !strings.Contains(got, "profile") {
			t.Errorf("source %q, want the profile", got)
		}
	})
	t.Run("an unknown mode", func(t *testing.T) {
		err := Config{AWSCredentials: "imds", Reconcile: ReconcileConfig{Window: time.Hour, Lease: time.Second, StatusTTL: 48 * time.Hour}}.Validate()
		if err == nil || !strings.Contains(err.Error(), "CCRELAY_AWS_CREDENTIALS") {
			t.Errorf("validate: %v, want an error naming CCRELAY_AWS_CREDENTIALS", err)
		}
	})
}
